//! Links: one TCP connection to one peer, its framing, and the handshake that
//! opens it.
//!
//! [`Connection`] is the only thing that touches a `TcpStream` (as in
//! mini-redis): it reads into a [`FrameBuffer`] and takes whole frames out, and
//! writes whole frames. After the handshake it splits into a [`LinkReader`] and a
//! [`LinkWriter`], each owned by one task of the peer runtime.
//!
//! # Handshake
//!
//! [`super::handshake`] opens every link: SPAKE2 over the passphrase (in a
//! session that has one), then Noise XX, which gives each direction its key
//! and carries each side's id, name and address encrypted. From then on every
//! frame is sealed ([`crate::wire::seal`]): one that was changed, replayed,
//! reordered or injected closes the link. Nothing but the handshake's frames is
//! read or sent before it completes, a refusal is a frame that says why, and
//! the whole exchange has [`HANDSHAKE_TIMEOUT`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::host_clock::{LocalClock, monotonic_ns};
use crate::protocol::PeerId;
use crate::protocol::message::{Message, PeerInfo};
use crate::wire::seal::{Opened, Opener, SealError, Sealer};
use crate::wire::{FrameBuffer, Next, PROTOCOL_VERSION, WireError};

use super::auth::Secret;
use super::handshake::{Handshake, HandshakeError, HandshakeFrame, Intro, LinkKeys, Refusal};

/// A connection that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// A connect attempt gives up after this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes read from the socket at once.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("broken stream: {0}")]
    Wire(#[from] WireError),
    #[error("the connection closed")]
    Closed,
    #[error("no handshake within {0:?}")]
    Timeout(Duration),
    #[error("it speaks protocol version {found}; this build speaks {PROTOCOL_VERSION}")]
    Version { found: u16 },
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    Sealed(SealError),
}

impl LinkError {
    /// Maps a wire error to the clearest link error (another version is common
    /// enough to deserve its own words).
    fn from_wire(e: WireError) -> LinkError {
        match e {
            WireError::VersionMismatch { found, .. } => LinkError::Version { found },
            e => LinkError::Wire(e),
        }
    }

    fn from_seal(e: SealError) -> LinkError {
        match e {
            SealError::Wire(w) => LinkError::from_wire(w),
            e => LinkError::Sealed(e),
        }
    }

    /// A refusal that trying again will not change (a passphrase that does
    /// not match, another protocol version): worth telling the user once.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            LinkError::Version { .. }
                | LinkError::Handshake(
                    HandshakeError::WrongPassphrase
                        | HandshakeError::NeedsPassphrase
                        | HandshakeError::PeerHasNoPassphrase
                        | HandshakeError::NoPassphraseThere
                        | HandshakeError::PeerHasPassphrase
                )
        )
    }
}

/// Who this peer is, as it introduces itself on every link.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Its keys; its id is theirs ([`LinkKeys::peer_id`]).
    pub keys: std::sync::Arc<LinkKeys>,
    pub name: String,
    /// The address others should dial (`--advertise`, else the bound address).
    pub advertise: SocketAddr,
}

/// One framed TCP connection (before it is split).
pub struct Connection {
    stream: TcpStream,
    frames: FrameBuffer,
    chunk: Vec<u8>,
    out: Vec<u8>,
    remote: SocketAddr,
    /// `CLOCK_MONOTONIC` of the last read: stamps frames still buffered when
    /// the handshake ends.
    last_read_mono_ns: i64,
    /// The link's keys, once the handshake gave them.
    keys: Option<Box<(Sealer, [u8; 32])>>,
}

impl Connection {
    pub fn new(stream: TcpStream) -> std::io::Result<Connection> {
        stream.set_nodelay(true)?;
        let remote = stream.peer_addr()?;
        Ok(Connection {
            stream,
            frames: FrameBuffer::new(),
            chunk: vec![0; READ_CHUNK],
            out: Vec::new(),
            remote,
            last_read_mono_ns: monotonic_ns(),
            keys: None,
        })
    }

    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// The next handshake frame; a malformed frame fails the handshake.
    async fn read_frame(&mut self) -> Result<HandshakeFrame, LinkError> {
        loop {
            match self.frames.next_frame::<HandshakeFrame>() {
                Ok(Next::Frame(m)) => return Ok(m),
                Ok(Next::Dropped(e)) => return Err(LinkError::Wire(e)),
                Ok(Next::NeedMore) => {}
                Err(e) => return Err(LinkError::from_wire(e)),
            }
            let n = self.stream.read(&mut self.chunk).await?;
            self.last_read_mono_ns = monotonic_ns();
            if n == 0 {
                return Err(LinkError::Closed);
            }
            self.frames.extend(&self.chunk[..n]);
        }
    }

    /// Sends what the handshake has queued, in one write.
    async fn flush(&mut self, hs: &mut Handshake) -> Result<(), LinkError> {
        self.out.clear();
        while hs.poll_transmit_bytes(&mut self.out) {}
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
        }
        Ok(())
    }

    /// Runs a handshake to its end: its frames out, the other side's in. A
    /// refusal is sent (best effort) before the error returns.
    async fn handshake(&mut self, mut hs: Handshake) -> Result<Intro, LinkError> {
        loop {
            self.flush(&mut hs).await?;
            let frame = match self.read_frame().await {
                Ok(f) => f,
                Err(LinkError::Version { found }) => {
                    // Any frame of ours tells the other side our version.
                    let mut out = Vec::new();
                    let _ = crate::wire::encode_frame(
                        &HandshakeFrame::Refuse(Refusal::Broken),
                        &mut out,
                    );
                    let _ = tokio::time::timeout(
                        Duration::from_millis(200),
                        self.stream.write_all(&out),
                    )
                    .await;
                    return Err(LinkError::Version { found });
                }
                Err(e) => return Err(e),
            };
            match hs.handle(frame) {
                Ok(None) => {}
                Ok(Some(done)) => {
                    // The dialer's last message goes after it is done.
                    self.flush(&mut hs).await?;
                    self.keys = Some(Box::new((done.sealer, done.open_key)));
                    return Ok(done.peer);
                }
                Err(e) => {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(200), self.flush(&mut hs)).await;
                    return Err(e.into());
                }
            }
        }
    }

    /// Keys as if a handshake had run (unit tests of what comes after).
    #[cfg(test)]
    pub(crate) fn with_test_keys(mut self) -> Connection {
        self.keys = Some(Box::new((Sealer::new(&[1; 32]), [1; 32])));
        self
    }

    /// Splits an established connection into its two owners; `None` before
    /// its handshake gave it keys.
    pub fn split(self, clock: LocalClock) -> Option<(LinkReader, LinkWriter)> {
        let (sealer, open_key) = *self.keys?;
        let (rd, wr) = self.stream.into_split();
        let mut rest = Vec::new();
        self.frames.take_rest(&mut rest);
        Some((
            LinkReader {
                rd,
                opener: Opener::new(&open_key, &rest),
                chunk: self.chunk,
                clock,
                buffered_at_ns: clock.local_at(self.last_read_mono_ns),
            },
            LinkWriter {
                wr,
                sealer,
                out: self.out,
                clock,
            },
        ))
    }
}

/// What a link's reader got.
#[derive(Debug)]
// The common case is the large one: boxing it would allocate per message to
// save bytes on the rare dropped frame.
#[allow(clippy::large_enum_variant)]
pub enum Read {
    /// A message, with the local time its bytes were read.
    Message { message: Message, at_ns: i64 },
    /// A well-delimited frame that failed to decode: skipped, the link goes on.
    Dropped(WireError),
}

/// The receive half of a link.
pub struct LinkReader {
    rd: OwnedReadHalf,
    opener: Opener,
    chunk: Vec<u8>,
    clock: LocalClock,
    /// When the frames buffered at the split were read.
    buffered_at_ns: i64,
}

impl LinkReader {
    /// Reads until at least one frame is out, and hands every whole frame
    /// buffered to `each`, stamped with the local time of the read (taken right
    /// after the read returns, for the clock samples). `Err` ends the link.
    pub async fn read(&mut self, mut each: impl FnMut(Read)) -> Result<(), LinkError> {
        // Frames already buffered (left over from the handshake's last read)
        // carry the time they were read.
        let mut at_ns = self.buffered_at_ns;
        loop {
            let mut any = false;
            loop {
                match self.opener.next_frame::<Message>() {
                    Ok(Opened::Frame(message)) => each(Read::Message { message, at_ns }),
                    Ok(Opened::Dropped(e)) => each(Read::Dropped(e)),
                    Ok(Opened::NeedMore) => break,
                    Err(e) => return Err(LinkError::from_seal(e)),
                }
                any = true;
            }
            if any {
                return Ok(());
            }
            let n = self.rd.read(&mut self.chunk).await?;
            at_ns = self.clock.now_ns();
            self.buffered_at_ns = at_ns;
            if n == 0 {
                return Err(LinkError::Closed);
            }
            self.opener.extend(&self.chunk[..n]);
        }
    }
}

/// The send half of a link.
pub struct LinkWriter {
    wr: OwnedWriteHalf,
    sealer: Sealer,
    out: Vec<u8>,
    clock: LocalClock,
}

impl LinkWriter {
    /// Frames and sends a batch of messages in one write. The clock stamps
    /// of pings, pongs and heartbeats are taken here, as the bytes go: the
    /// time they waited for the core and this task would otherwise count as
    /// network delay, on one side of an exchange only (a pong's wait is the
    /// far side's work; NOTEBOOK.md, issue 22).
    pub async fn send(&mut self, messages: &mut [Message]) -> Result<(), LinkError> {
        self.out.clear();
        let now_ns = self.clock.now_ns();
        for m in messages.iter_mut() {
            stamp_sent(m, now_ns);
            self.sealer
                .seal(m, &mut self.out)
                .map_err(LinkError::from_seal)?;
        }
        self.wr.write_all(&self.out).await?;
        Ok(())
    }

    pub async fn shutdown(mut self) {
        let _ = self.wr.shutdown().await;
    }
}

/// Sets a clock message's "sent" stamp to `now_ns` (never earlier than the
/// stamp the core gave it: a pong is not sent before its ping arrived).
fn stamp_sent(m: &mut Message, now_ns: i64) {
    match m {
        Message::ClockPing(p) => p.origin_ns = p.origin_ns.max(now_ns),
        Message::ClockPong(p) => p.sent_ns = p.sent_ns.max(now_ns),
        Message::Heartbeat(hb) => hb.clock.sent_ns = hb.clock.sent_ns.max(now_ns),
        _ => {}
    }
}

/// The peer at the other end of a completed handshake.
#[derive(Clone, Debug)]
pub struct Handshaken {
    pub info: PeerInfo,
    /// The peer that dialled this connection (decides which of two
    /// simultaneous connections survives).
    pub dialer: PeerId,
}

/// An advertised address with an unspecified IP (`0.0.0.0:7878`) is reached
/// at the IP this connection came from or went to.
fn reachable(advertised: SocketAddr, seen: SocketAddr) -> SocketAddr {
    if advertised.ip().is_unspecified() {
        SocketAddr::new(seen.ip(), advertised.port())
    } else {
        advertised
    }
}

impl Identity {
    pub fn peer_id(&self) -> PeerId {
        self.keys.peer_id()
    }

    fn intro(&self) -> Intro {
        self.keys.intro(&self.name, self.advertise)
    }
}

fn info(theirs: Intro, conn: &Connection) -> PeerInfo {
    PeerInfo {
        peer_id: theirs.peer_id(),
        name: theirs.name,
        addr: reachable(theirs.listen_addr, conn.remote()),
    }
}

/// The dialling side of the handshake, with its timeout.
pub async fn handshake_dialer(
    conn: &mut Connection,
    me: &Identity,
    secret: Option<&Secret>,
) -> Result<Handshaken, LinkError> {
    let run = async {
        let hs = Handshake::dial(&me.keys, me.intro(), secret.map(Secret::as_bytes))?;
        let theirs = conn.handshake(hs).await?;
        Ok(Handshaken {
            info: info(theirs, conn),
            dialer: me.peer_id(),
        })
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, run)
        .await
        .map_err(|_| LinkError::Timeout(HANDSHAKE_TIMEOUT))?
}

/// The accepting side of the handshake, with its timeout.
pub async fn handshake_acceptor(
    conn: &mut Connection,
    me: &Identity,
    secret: Option<&Secret>,
) -> Result<Handshaken, LinkError> {
    let run = async {
        let hs = Handshake::accept(&me.keys, me.intro(), secret.map(Secret::as_bytes));
        let theirs = conn.handshake(hs).await?;
        let dialer = theirs.peer_id();
        Ok(Handshaken {
            info: info(theirs, conn),
            dialer,
        })
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, run)
        .await
        .map_err(|_| LinkError::Timeout(HANDSHAKE_TIMEOUT))?
}

/// Connects to `addr` with [`CONNECT_TIMEOUT`].
/// The address to give others: the advertised one, with this machine's
/// outbound address in place of an unspecified one (`0.0.0.0`).
pub fn share_address(advertise: SocketAddr) -> SocketAddr {
    if !advertise.ip().is_unspecified() {
        return advertise;
    }
    // Connecting a UDP socket sends nothing; it only picks the interface
    // the route to a (documentation) address would use.
    let ip = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    SocketAddr::new(ip, advertise.port())
}

/// A `--join` address as given: `HOST:PORT` with a port above 0 (the host is
/// resolved when dialled, so a name may be down at start).
pub fn check_join_spec(s: &str) -> Result<String, String> {
    let s = s.trim();
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(s.to_string())
        }
        _ => Err(format!("{s:?} is not HOST:PORT (e.g. 192.168.1.20:7878)")),
    }
}

pub async fn connect(addr: SocketAddr) -> Result<Connection, LinkError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            LinkError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {CONNECT_TIMEOUT:?}"),
            ))
        })??;
    Ok(Connection::new(stream)?)
}

/// A link's outgoing messages, in the order they should leave: session
/// messages (heartbeats, clock probes, snapshots…) before stem data, so a
/// heartbeat never waits behind more than one write's worth of chunks.
///
/// Within each kind, order is kept. Only [`crate::protocol::message::Operation::ChunkData`] is held
/// back; everything else about the room (requests, refusals, the song, haves)
/// goes with the session messages.
#[derive(Default)]
pub struct Outbox {
    urgent: Vec<Message>,
    bulk: std::collections::VecDeque<Message>,
}

/// Stem data sent in one write at most (at 10 Mbit/s, about 100 ms).
pub const BULK_BYTES_PER_WRITE: usize = 128 * 1024;
/// Chunks held back at most; beyond, the writer stops taking messages (and
/// a requester that asks faster than it reads sees its link's queue fill).
pub const MAX_BULK_MESSAGES: usize = 64;

impl Outbox {
    pub fn push(&mut self, m: Message) {
        if is_bulk(&m) {
            self.bulk.push_back(m);
        } else {
            self.urgent.push(m);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.bulk.is_empty()
    }

    /// Whether the writer should take more messages before it writes.
    pub fn has_room(&self) -> bool {
        self.bulk.len() < MAX_BULK_MESSAGES
    }

    /// The next write: every session message, then stem data up to
    /// [`BULK_BYTES_PER_WRITE`] (at least one chunk).
    pub fn next_batch(&mut self, batch: &mut Vec<Message>) {
        batch.clear();
        batch.append(&mut self.urgent);
        let mut bytes = 0;
        while let Some(m) = self.bulk.front() {
            let len = bulk_len(m);
            if bytes > 0 && bytes + len > BULK_BYTES_PER_WRITE {
                break;
            }
            bytes += len;
            batch.extend(self.bulk.pop_front());
        }
    }
}

/// About how many bytes `m` takes on the wire (and in memory, queued): exact
/// enough for the queue limits, without encoding it twice.
pub fn approx_wire_bytes(m: &Message) -> usize {
    use crate::protocol::message::{Operation, Room};
    const SMALL: usize = 128;
    // A vote naming a song (load, queue) is the largest: 17 + 42 bytes.
    const VOTE: usize = 64;
    const SONG: usize = 42;
    match m {
        Message::Heartbeat(hb) => SMALL + hb.relayed.len() * VOTE,
        Message::Snapshot(s) => {
            SMALL
                + s.pending.len() * VOTE
                + s.state.channels.len() * 5
                + (s.state.queue.len() + s.state.played.len()) * SONG
        }
        Message::PeerList(l) => SMALL + l.peers.len() * 96,
        Message::Room(Room { op, .. }) => match op {
            Operation::ChunkData { data, .. } => SMALL + data.len(),
            Operation::SongStem { info, .. } | Operation::Info { info } => {
                SMALL + 256 + info.chunk_hashes.len() * 32
            }
            Operation::Have { stems } => SMALL + stems.len() * 32,
            Operation::LibraryRecords { songs, stems } => {
                SMALL + songs.len() * 96 + stems.len() * 176
            }
            _ => SMALL + 256,
        },
        _ => SMALL + 256,
    }
}

fn is_bulk(m: &Message) -> bool {
    matches!(
        m,
        Message::Room(crate::protocol::message::Room {
            op: crate::protocol::message::Operation::ChunkData { .. },
            ..
        })
    )
}

fn bulk_len(m: &Message) -> usize {
    match m {
        Message::Room(crate::protocol::message::Room {
            op: crate::protocol::message::Operation::ChunkData { data, .. },
            ..
        }) => data.len(),
        _ => 0,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::protocol::message::{ClockPing, Operation, Room};

    /// A 64 KiB chunk of stem data (bulk), as a room message.
    pub(crate) fn chunk(id: u32) -> Message {
        Message::Room(Room {
            request_id: id,
            op: Operation::ChunkData {
                stem: [0; 32],
                offset: 0,
                data: vec![0; 64 * 1024],
            },
        })
    }

    fn ping(seq: u32) -> Message {
        Message::ClockPing(ClockPing { seq, origin_ns: 0 })
    }

    #[test]
    fn session_messages_leave_before_stem_data_and_data_is_paced() {
        let mut o = Outbox::default();
        for id in 1..=5 {
            o.push(chunk(id));
        }
        o.push(ping(1));
        o.push(ping(2));
        let mut batch = Vec::new();
        o.next_batch(&mut batch);
        let ids: Vec<String> = batch
            .iter()
            .map(|m| match m {
                Message::ClockPing(p) => format!("ping{}", p.seq),
                Message::Room(r) => format!("chunk{}", r.request_id),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(ids, ["ping1", "ping2", "chunk1", "chunk2"]);
        o.push(ping(3));
        o.next_batch(&mut batch);
        assert!(matches!(&batch[0], Message::ClockPing(p) if p.seq == 3));
        assert_eq!(batch.len(), 3, "the ping, then two chunks (128 KiB)");
        o.next_batch(&mut batch);
        assert_eq!(batch.len(), 1);
        assert!(o.is_empty());
        for id in 0..MAX_BULK_MESSAGES as u32 {
            assert!(o.has_room());
            o.push(chunk(id));
        }
        assert!(!o.has_room());
    }

    use super::*;
    use tokio::net::TcpListener;

    /// The address to share keeps a specified address as it is, and never
    /// hands out an unspecified one (0.0.0.0), whatever the machine's routes.
    #[test]
    fn clock_stamps_are_taken_as_the_bytes_go_never_earlier() {
        use crate::protocol::message::ClockPong;
        let mut m = ping(1);
        super::stamp_sent(&mut m, 5_000);
        assert!(matches!(m, Message::ClockPing(p) if p.origin_ns == 5_000));
        let mut pong = Message::ClockPong(ClockPong {
            seq: 1,
            origin_ns: 10,
            received_ns: 9_000,
            sent_ns: 9_000,
        });
        super::stamp_sent(&mut pong, 5_000); // a clock read before the pong's
        assert!(matches!(pong, Message::ClockPong(p) if p.sent_ns == 9_000));
        super::stamp_sent(&mut pong, 12_000);
        assert!(
            matches!(pong, Message::ClockPong(p) if p.sent_ns == 12_000 && p.received_ns == 9_000)
        );
        let mut data = chunk(3);
        let before = data.clone();
        super::stamp_sent(&mut data, 12_000);
        assert_eq!(data, before);
    }

    #[test]
    fn the_shared_address_is_dialable() {
        let given: SocketAddr = "192.168.1.20:7878".parse().unwrap();
        assert_eq!(share_address(given), given);
        let any: SocketAddr = "0.0.0.0:7878".parse().unwrap();
        let shared = share_address(any);
        assert!(!shared.ip().is_unspecified());
        assert_eq!(shared.port(), 7878);
    }

    /// `--join` wants HOST:PORT with a port above 0.
    #[test]
    fn join_specs() {
        assert_eq!(check_join_spec(" host:7878 "), Ok("host:7878".into()));
        for bad in ["host", ":7878", "host:0", "host:x", "host:70000"] {
            assert!(check_join_spec(bad).is_err(), "{bad}");
        }
    }

    fn id(n: u64, addr: SocketAddr) -> Identity {
        Identity {
            keys: std::sync::Arc::new(LinkKeys::generate().unwrap()),
            name: format!("p{n}"),
            advertise: addr,
        }
    }

    /// Runs both sides of a handshake over loopback.
    async fn pair(
        dialer: &Identity,
        dialer_secret: Option<&str>,
        acceptor_secret: Option<&str>,
    ) -> (Result<Handshaken, LinkError>, Result<Handshaken, LinkError>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let a_secret = acceptor_secret.map(Secret::new);
        let acceptor = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut c = Connection::new(s).unwrap();
            handshake_acceptor(&mut c, &id(1, addr), a_secret.as_ref()).await
        });
        let mut c = connect(addr).await.unwrap();
        let d_secret = dialer_secret.map(Secret::new);
        let d = handshake_dialer(&mut c, dialer, d_secret.as_ref()).await;
        drop(c);
        (d, acceptor.await.unwrap())
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn open_and_protected_handshakes_succeed() {
        rt().block_on(async {
            for secret in [None, Some("s3cret")] {
                let me = id(2, "0.0.0.0:9".parse().unwrap());
                let (d, a) = pair(&me, secret, secret).await;
                let (d, a) = (d.unwrap(), a.unwrap());
                assert_eq!(a.info.peer_id, me.peer_id());
                assert_ne!(d.info.peer_id, me.peer_id());
                assert_eq!((d.dialer, a.dialer), (me.peer_id(), me.peer_id()));
                // An unspecified advertised IP is replaced by the one seen.
                assert_eq!(a.info.addr.ip().to_string(), "127.0.0.1");
                assert_eq!(a.info.addr.port(), 9);
            }
        });
    }

    #[test]
    fn a_wrong_or_missing_passphrase_is_refused_on_both_sides() {
        use HandshakeError as H;
        rt().block_on(async {
            for (dp, ap, de, ae) in [
                (
                    Some("right"),
                    Some("wrong"),
                    H::WrongPassphrase,
                    H::WrongPassphrase,
                ),
                (None, Some("s"), H::NeedsPassphrase, H::PeerHasNoPassphrase),
                (Some("s"), None, H::NoPassphraseThere, H::PeerHasPassphrase),
            ] {
                let (d, a) = pair(&id(2, "0.0.0.0:9".parse().unwrap()), dp, ap).await;
                assert!(
                    matches!(&d, Err(LinkError::Handshake(e)) if *e == de),
                    "{d:?}"
                );
                assert!(
                    matches!(&a, Err(LinkError::Handshake(e)) if *e == ae),
                    "{a:?}"
                );
                assert!(d.unwrap_err().is_refusal());
            }
        });
    }

    #[test]
    fn garbage_another_version_and_silence_fail_the_handshake() {
        rt().block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            async fn accept_one(
                listener: &TcpListener,
                bytes: Vec<u8>,
            ) -> (Result<Handshaken, LinkError>, TcpStream) {
                let addr = listener.local_addr().unwrap();
                let mut raw = TcpStream::connect(addr).await.unwrap();
                raw.write_all(&bytes).await.unwrap();
                let (s, _) = listener.accept().await.unwrap();
                let mut c = Connection::new(s).unwrap();
                let r = handshake_acceptor(&mut c, &id(1, addr), None).await;
                (r, raw)
            }
            let (r, _raw) = accept_one(&listener, b"GET / HTTP/1.1\r\n\r\n".to_vec()).await;
            assert!(
                matches!(r, Err(LinkError::Wire(WireError::BadMagic { .. }))),
                "{r:?}"
            );
            let mut next = b"SYNF".to_vec();
            next.extend_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
            next.extend_from_slice(&4u32.to_be_bytes());
            let (r, _raw) = accept_one(&listener, next).await;
            let want = PROTOCOL_VERSION + 1;
            assert!(
                matches!(r, Err(LinkError::Version { found }) if found == want),
                "{r:?}"
            );
            let mut huge = b"SYNF".to_vec();
            huge.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
            huge.extend_from_slice(&u32::MAX.to_be_bytes());
            let (r, _raw) = accept_one(&listener, huge).await;
            assert!(
                matches!(r, Err(LinkError::Wire(WireError::FrameTooLong { .. }))),
                "{r:?}"
            );
        });
        // Silence (the handshake timeout) is tested on a real peer in
        // tests/peers.rs.
    }
}
