//! A hostile member over real TCP: a client that speaks the protocol by hand,
//! as a buggy or malicious peer would (issue 19).
//!
//! It completes the handshake of an open session (the library's own, so its
//! frames are sealed as a peer's are), then behaves like a
//! credible peer on its own — it answers clock pings and echoes heartbeats, so
//! the victim can read its clock — while the test sends whatever well-formed
//! messages it likes. Everything runs on this machine, so its clock is the
//! victim's `CLOCK_MONOTONIC`: a map it sends means what it says.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use synfony::host_clock::monotonic_ns;
use synfony::protocol::message::{
    ClockEcho, ClockPing, ClockPong, ClockStamps, Heartbeat, Message,
};
use synfony::protocol::{Event, PeerId, Round, SessionMap, SignedVote};
use synfony::runtime::handshake::{Handshake, LinkKeys};
use synfony::wire::seal::{Opened, Opener, Sealer};
use synfony::wire::{FrameBuffer, Model, Next, WireError};

/// Bytes sent as a frame's payload as they are.
struct Raw(Vec<u8>);

impl Model for Raw {
    fn encode(&self, w: &mut synfony::wire::Writer<'_>) -> Result<(), WireError> {
        for &b in &self.0 {
            w.put_u8(b);
        }
        Ok(())
    }

    fn decode(_: &mut synfony::wire::Reader<'_>) -> Result<Self, WireError> {
        Err(WireError::Invalid {
            field: "raw",
            reason: "never decoded",
        })
    }
}

/// The socket's sending side and the link's sending key.
type Writer = Mutex<(TcpStream, Sealer)>;

/// Seals `m` and sends it.
fn write_sealed(writer: &Writer, m: &impl Model) -> std::io::Result<()> {
    let mut w = writer.lock().expect("no panic holds it");
    let (stream, sealer) = &mut *w;
    let mut frame = Vec::new();
    sealer
        .seal(m, &mut frame)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    stream.write_all(&frame)
}

/// What the client has heard from its victim.
#[derive(Clone, Debug, Default)]
pub struct Heard {
    /// Its peer id (from its hello).
    pub peer_id: Option<PeerId>,
    /// Its last heartbeat's stamp, to echo (our receive time, its send time).
    pub echo: Option<ClockEcho>,
    /// Its announced session map (in the shared monotonic clock) and round.
    pub map: Option<SessionMap>,
    pub round: Option<Round>,
    /// Messages heard after the handshake.
    pub messages: u64,
}

impl Heard {
    /// The victim's session time now, by its own map.
    pub fn session_ns_now(&self) -> Option<i64> {
        self.map.map(|m| m.session_ns_at(monotonic_ns()))
    }
}

/// Answers a ping at once with our (the shared) clock; remembers a
/// heartbeat's stamp to echo and the victim's map and round.
fn on_message(writer: &Writer, heard: &Mutex<Heard>, m: Message) {
    let now = monotonic_ns();
    let mut heard = heard.lock().expect("no panic holds it");
    heard.messages += 1;
    match m {
        Message::ClockPing(ping) => {
            let pong = Message::ClockPong(ClockPong {
                seq: ping.seq,
                origin_ns: ping.origin_ns,
                received_ns: now,
                sent_ns: now,
            });
            let _ = write_sealed(writer, &pong);
        }
        Message::Heartbeat(hb) => {
            heard.echo = Some(ClockEcho {
                origin_ns: hb.clock.sent_ns,
                received_ns: now,
            });
            if hb.map.is_some() {
                heard.map = hb.map;
                heard.round = Some(hb.round);
            }
        }
        _ => {}
    }
}

/// One hand-driven connection to a peer.
pub struct Hostile {
    keys: LinkKeys,
    writer: Arc<Writer>,
    heard: Arc<Mutex<Heard>>,
    reader: Option<JoinHandle<()>>,
    keepalive: Option<JoinHandle<()>>,
    gone: Arc<std::sync::atomic::AtomicBool>,
}

impl Hostile {
    /// Connects to `addr` with `keys` (its id is theirs; the same keys on
    /// two connections make one member), advertising `listen`, completes
    /// the handshake of an open session, and starts answering pings.
    pub fn connect(
        addr: SocketAddr,
        keys: &LinkKeys,
        listen: SocketAddr,
    ) -> std::io::Result<Hostile> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        let mut reader = stream.try_clone()?;
        // The handshake, driven by hand.
        let mut hs = Handshake::dial(keys, keys.intro("hostile", listen), None)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        reader.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut frames = FrameBuffer::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let established = 'handshake: loop {
            let mut out = Vec::new();
            while hs.poll_transmit_bytes(&mut out) {}
            stream.write_all(&out)?;
            loop {
                match frames.next_frame() {
                    Ok(Next::Frame(f)) => match hs.handle(f) {
                        Ok(Some(done)) => {
                            let mut out = Vec::new();
                            while hs.poll_transmit_bytes(&mut out) {}
                            stream.write_all(&out)?;
                            break 'handshake done;
                        }
                        Ok(None) => continue 'handshake,
                        Err(e) => return Err(std::io::Error::other(e.to_string())),
                    },
                    Ok(Next::Dropped(e)) | Err(e) => {
                        return Err(std::io::Error::other(e.to_string()));
                    }
                    Ok(Next::NeedMore) => {}
                }
                let n = reader.read(&mut chunk)?;
                if n == 0 {
                    return Err(std::io::Error::other("closed during the handshake"));
                }
                frames.extend(&chunk[..n]);
            }
        };
        let mut rest = Vec::new();
        frames.take_rest(&mut rest);
        let mut opener = Opener::new(&established.open_key, &rest);
        let writer = Arc::new(Mutex::new((stream, established.sealer)));
        let heard = Arc::new(Mutex::new(Heard {
            peer_id: Some(established.peer.peer_id()),
            ..Heard::default()
        }));
        let me = Hostile {
            keys: keys.clone(),
            writer: writer.clone(),
            heard: heard.clone(),
            reader: None,
            keepalive: None,
            gone: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        reader.set_read_timeout(None)?;
        let (w, h) = (writer.clone(), heard.clone());
        let thread = std::thread::spawn(move || {
            loop {
                loop {
                    match opener.next_frame::<Message>() {
                        Ok(Opened::Frame(m)) => on_message(&w, &h, m),
                        Ok(Opened::Dropped(_)) => {}
                        Ok(Opened::NeedMore) => break,
                        Err(_) => return,
                    }
                }
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => opener.extend(&chunk[..n]),
                }
            }
        });
        let mut me = me;
        me.reader = Some(thread);
        // A clock ping every 50 ms, so the victim never finds it silent
        // whatever the test sends (or does not).
        let (w, gone) = (writer.clone(), me.gone.clone());
        me.keepalive = Some(std::thread::spawn(move || {
            let mut seq = 0u32;
            while !gone.load(std::sync::atomic::Ordering::Relaxed) {
                seq = seq.wrapping_add(1);
                let ping = Message::ClockPing(ClockPing {
                    seq,
                    origin_ns: monotonic_ns(),
                });
                if write_sealed(&w, &ping).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
        Ok(me)
    }

    /// Sends one message (any message the wire can carry).
    pub fn send(&self, m: &Message) -> std::io::Result<()> {
        write_sealed(&self.writer, m)
    }

    /// Sends `payload` as one sealed frame, whatever it is (garbage that
    /// opens but is no message).
    pub fn send_raw(&self, payload: &[u8]) -> std::io::Result<()> {
        write_sealed(&self.writer, &Raw(payload.to_vec()))
    }

    /// Its id (its keys').
    pub fn peer_id(&self) -> PeerId {
        self.keys.peer_id()
    }

    /// A heartbeat with credible clock stamps (sent now, echoing the
    /// victim's last heartbeat) carrying whatever claims the test wants; its
    /// own vote signed with its keys.
    pub fn heartbeat(
        &self,
        round: Round,
        vote: Event,
        relayed: Vec<SignedVote>,
        map: Option<SessionMap>,
        synced_at_session_ns: i64,
    ) -> Message {
        Message::Heartbeat(Heartbeat {
            round,
            vote,
            proof: (vote != Event::None).then(|| self.keys.signer.sign_vote(round, vote).proof),
            relayed,
            decided: None,
            map,
            synced_at_session_ns,
            clock: ClockStamps {
                sent_ns: monotonic_ns(),
                echo: self.heard().echo,
            },
        })
    }

    /// What it has heard so far.
    pub fn heard(&self) -> Heard {
        self.heard.lock().expect("no panic holds it").clone()
    }

    /// Closes the connection without a goodbye (as a crash would).
    pub fn vanish(mut self) {
        self.gone.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self
            .writer
            .lock()
            .expect("no panic holds it")
            .0
            .shutdown(Shutdown::Both);
        for t in [self.reader.take(), self.keepalive.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
    }
}
