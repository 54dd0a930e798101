//! Opening a link (issue 23): every link encrypted and authenticated, and a
//! passphrase nobody can test guesses against offline. Sans-IO: frames in,
//! frames out; [`super::net`] drives it over a socket. Unlike the protocol
//! core it draws randomness (keys must be random), from the OS.
//!
//! ```text
//! dialer                                       acceptor
//!   Knock{pake: A}                        ──►                            (A: SPAKE2, passphrase sessions only)
//!                                         ◄──   Pake(B)
//!   Noise(→ psk, e)                       ──►                            (sent with the knock in an open session)
//!                                         ◄──   Noise(← e, ee, s, es; its intro)
//!   Noise(→ s, se; our intro)             ──►
//! ```
//!
//! - **The passphrase** goes through SPAKE2 (the `spake2` crate, as
//!   magic-wormhole uses it): A and B look random to anyone without the
//!   passphrase, and each side's key is the same only if both used the same
//!   one. That key (hashed) is the Noise handshake's pre-shared key (`psk0`):
//!   the dialer's first Noise message is sealed with it, so the acceptor knows
//!   whether the dialer knows the passphrase before it says anything about
//!   itself. A captured handshake holds nothing to test a guess against; an
//!   active attacker gets one guess a connection (and `net` slows down an
//!   address that keeps failing).
//! - **An open session** (no passphrase) uses a public pre-shared key and skips
//!   SPAKE2: it authenticates nobody, but the link's keys are still secret from
//!   anyone watching, so nothing on it can be read or changed unseen.
//! - **Noise XX** (the `snow` crate) gives each direction a key from fresh
//!   ephemeral keys (forward secrecy) and carries each side's [`Intro`] —
//!   its identity key, name and address — encrypted. The acceptor's comes
//!   only after the dialer proved the passphrase: a dialer learns nothing
//!   before.
//! - **Identity** ([`crate::protocol::identity`]): each peer's id is derived
//!   from its Ed25519 identity key, and its intro carries that key's
//!   certificate over its Noise static key, which Noise proves it holds: the
//!   link proves the id it carries, so nobody can link as another peer.
//! - Everything the handshake exchanged before Noise (the knock, the SPAKE2
//!   messages) is its prologue, so changing any of it fails the handshake.
//! - Afterwards each direction's frames are sealed with its key and counted
//!   ([`crate::wire::seal`]).

use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity as PakeIdentity, Password, Spake2};

use crate::protocol::PeerId;
use crate::protocol::identity::{LinkCert, PeerKey, Signer, verify_link_cert};
use crate::protocol::message::MAX_NAME_BYTES;
use crate::wire::seal::Sealer;
use crate::wire::{Model, Reader, WireError, Writer, encode_frame};

use std::net::SocketAddr;

/// The Noise protocol: XX with a pre-shared key mixed in first.
const NOISE_PARAMS: &str = "Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s";
/// Both ends of a passphrase session run SPAKE2 under this name.
const PAKE_IDENTITY: &[u8] = b"synfony session v6";
/// The pre-shared key of an open session: public, so it proves nothing, but
/// every link is still encrypted.
const OPEN_PSK: [u8; 32] = *b"synfony open session, no secret!";
/// Binds the Noise handshake to synfony and to what came before it.
const PROLOGUE: &[u8] = b"synfony link v6";
/// The largest Noise handshake message (Noise's own limit).
const MAX_NOISE_LEN: usize = 65_535;
/// A SPAKE2 message over Ed25519: a side byte and a point.
const PAKE_LEN: usize = 33;

/// This peer's keys for every link: its identity ([`Signer`], whose key its
/// id is derived from) and a Noise static key the identity certifies. Made
/// once per run.
#[derive(Clone)]
pub struct LinkKeys {
    pub signer: Signer,
    noise_private: [u8; 32],
    cert: LinkCert,
}

impl std::fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LinkKeys({})", self.signer.peer_id())
    }
}

impl LinkKeys {
    /// Fresh keys, from the OS's randomness.
    pub fn generate() -> Result<LinkKeys, HandshakeError> {
        use rand::TryRng;
        let mut seed = [0u8; 32];
        rand::rngs::SysRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| broken(format!("no randomness for a key: {e}")))?;
        let params: snow::params::NoiseParams = NOISE_PARAMS.parse().map_err(broken)?;
        let noise = snow::Builder::new(params)
            .generate_keypair()
            .map_err(broken)?;
        let (noise_private, noise_public): ([u8; 32], [u8; 32]) = (
            noise.private.as_slice().try_into().map_err(broken)?,
            noise.public.as_slice().try_into().map_err(broken)?,
        );
        let signer = Signer::from_seed(seed);
        Ok(LinkKeys {
            cert: signer.certify_link_key(&noise_public),
            signer,
            noise_private,
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.signer.peer_id()
    }

    /// What we say of ourselves on a link.
    pub fn intro(&self, name: &str, listen_addr: SocketAddr) -> Intro {
        Intro {
            key: self.signer.key(),
            cert: self.cert,
            name: name.to_string(),
            listen_addr,
        }
    }
}

/// What one side says of itself, encrypted inside the Noise handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intro {
    /// Its identity key; its id is [`PeerId::of_key`] of it.
    pub key: PeerKey,
    /// The key's signature over its Noise static key.
    pub cert: LinkCert,
    pub name: String,
    /// The address other peers should dial (`--advertise`).
    pub listen_addr: SocketAddr,
}

impl Intro {
    pub fn peer_id(&self) -> PeerId {
        PeerId::of_key(&self.key)
    }
}

/// ```text
/// | key [u8; 32] | cert [u8; 64] | name text | listen_addr SocketAddr |
/// ```
impl Model for Intro {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        self.key.encode(w)?;
        self.cert.encode(w)?;
        w.put_text(&self.name, MAX_NAME_BYTES, "intro.name")?;
        self.listen_addr.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Intro {
            key: r.get()?,
            cert: r.get_as("intro.cert")?,
            name: r.text(MAX_NAME_BYTES, "intro.name")?,
            listen_addr: r.get_as("intro.listen_addr")?,
        })
    }
}

/// Why a side refuses a handshake; said to the other side before it closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// This session has a passphrase and the dialer gave none.
    NeedsPassphrase = 1,
    /// This session is open and the dialer came with a passphrase.
    NoPassphrase = 2,
    /// The dialer's proof does not match this session's passphrase.
    WrongPassphrase = 3,
    /// The link would join a peer to itself.
    SelfLink = 4,
    /// Anything else (a broken handshake).
    Broken = 5,
}

/// The frames of a handshake (before the link has keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeFrame {
    /// The dialer's first frame: its SPAKE2 message, if it has a passphrase.
    Knock { pake: Option<Vec<u8>> },
    /// The acceptor's SPAKE2 message.
    Pake(Vec<u8>),
    /// One Noise handshake message.
    Noise(Vec<u8>),
    /// The end of the handshake, and why.
    Refuse(Refusal),
}

impl Model for HandshakeFrame {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        match self {
            HandshakeFrame::Knock { pake } => {
                w.put_u8(1);
                pake.as_ref().map(|p| Bytes(p.clone())).encode(w)
            }
            HandshakeFrame::Pake(p) => {
                w.put_u8(2);
                w.put_bytes(p, PAKE_LEN, "handshake.pake")
            }
            HandshakeFrame::Noise(m) => {
                w.put_u8(3);
                w.put_bytes(m, MAX_NOISE_LEN, "handshake.noise")
            }
            HandshakeFrame::Refuse(why) => {
                w.put_u8(4);
                w.put_u8(*why as u8);
                Ok(())
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(match r.u8("handshake.kind")? {
            1 => HandshakeFrame::Knock {
                pake: r.get_as::<Option<Bytes>>("handshake.knock")?.map(|b| b.0),
            },
            2 => HandshakeFrame::Pake(r.bytes(PAKE_LEN, "handshake.pake")?),
            3 => HandshakeFrame::Noise(r.bytes(MAX_NOISE_LEN, "handshake.noise")?),
            4 => HandshakeFrame::Refuse(match r.u8("handshake.refusal")? {
                1 => Refusal::NeedsPassphrase,
                2 => Refusal::NoPassphrase,
                3 => Refusal::WrongPassphrase,
                4 => Refusal::SelfLink,
                _ => Refusal::Broken,
            }),
            _ => {
                return Err(WireError::Invalid {
                    field: "handshake.kind",
                    reason: "unknown handshake frame",
                });
            }
        })
    }
}

/// A SPAKE2 message inside an `Option` (the knock of an open session has none).
struct Bytes(Vec<u8>);

impl Model for Bytes {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_bytes(&self.0, PAKE_LEN, "handshake.pake")
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Bytes(r.bytes(PAKE_LEN, "handshake.pake")?))
    }
}

/// Why a handshake failed, on this side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("wrong passphrase (the other side's does not match ours)")]
    WrongPassphrase,
    #[error("the session there needs a passphrase (--passphrase)")]
    NeedsPassphrase,
    #[error("it came without the passphrase this session needs")]
    PeerHasNoPassphrase,
    #[error("the session there is open (no passphrase); ours has one")]
    NoPassphraseThere,
    #[error("it came with a passphrase; this session is open")]
    PeerHasPassphrase,
    #[error("that address is this peer itself")]
    SelfLink,
    #[error("its identity key did not sign its link key (an impostor, or a broken peer)")]
    NotItsKey,
    #[error("it refused the handshake")]
    Refused,
    #[error("expected {expected} during the handshake, got {got}")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    #[error("broken handshake: {0}")]
    Broken(String),
}

impl HandshakeError {
    /// What the other side is told of this failure, if anything.
    fn refusal(&self) -> Option<Refusal> {
        match self {
            HandshakeError::WrongPassphrase => Some(Refusal::WrongPassphrase),
            HandshakeError::PeerHasNoPassphrase => Some(Refusal::NeedsPassphrase),
            HandshakeError::PeerHasPassphrase => Some(Refusal::NoPassphrase),
            HandshakeError::SelfLink => Some(Refusal::SelfLink),
            HandshakeError::Unexpected { .. }
            | HandshakeError::Broken(_)
            | HandshakeError::NotItsKey => Some(Refusal::Broken),
            // Said by the other side already: nothing to answer.
            HandshakeError::NeedsPassphrase
            | HandshakeError::NoPassphraseThere
            | HandshakeError::Refused => None,
        }
    }

    /// This side's error for the other side's refusal.
    fn of_refusal(why: Refusal) -> HandshakeError {
        match why {
            Refusal::NeedsPassphrase => HandshakeError::NeedsPassphrase,
            Refusal::NoPassphrase => HandshakeError::NoPassphraseThere,
            Refusal::WrongPassphrase => HandshakeError::WrongPassphrase,
            Refusal::SelfLink => HandshakeError::SelfLink,
            Refusal::Broken => HandshakeError::Refused,
        }
    }
}

fn broken(e: impl std::fmt::Display) -> HandshakeError {
    HandshakeError::Broken(e.to_string())
}

fn kind(f: &HandshakeFrame) -> &'static str {
    match f {
        HandshakeFrame::Knock { .. } => "a knock",
        HandshakeFrame::Pake(_) => "a passphrase exchange",
        HandshakeFrame::Noise(_) => "a key exchange",
        HandshakeFrame::Refuse(_) => "a refusal",
    }
}

/// A link whose handshake is done: who is at the other end, and its keys.
#[derive(Debug)]
pub struct Established {
    pub peer: Intro,
    pub sealer: Sealer,
    /// The key frames from the other side are opened with (see [`crate::wire::seal::Opener::new`]).
    pub open_key: [u8; 32],
}

#[derive(Debug)]
enum Step {
    /// Dialer: waiting for the acceptor's SPAKE2 message.
    AwaitPake(Spake2<Ed25519Group>, Vec<u8>),
    /// Acceptor: waiting for the knock.
    AwaitKnock,
    /// Waiting for the next Noise message.
    Noise(Box<snow::HandshakeState>),
    Done,
}

/// One side of a link's handshake. Feed it the frames that arrive
/// ([`Handshake::handle`]); send what [`Handshake::poll_transmit`] gives, in
/// order, until it is done (and once more after: the dialer's last message).
#[derive(Debug)]
pub struct Handshake {
    me: Intro,
    /// Our Noise static key (certified in `me`).
    noise_private: [u8; 32],
    passphrase: Option<Vec<u8>>,
    dialer: bool,
    step: Step,
    out: std::collections::VecDeque<HandshakeFrame>,
    noise_buf: Vec<u8>,
    /// The other side's intro, once its Noise message carried it.
    peer: Option<Intro>,
    /// Noise messages read so far.
    noise_read: u32,
}

impl Handshake {
    /// The dialling side; its knock is ready to send.
    pub fn dial(
        keys: &LinkKeys,
        me: Intro,
        passphrase: Option<&[u8]>,
    ) -> Result<Handshake, HandshakeError> {
        let mut h = Handshake::new(keys, me, passphrase, true);
        match passphrase {
            Some(p) => {
                let (pake, msg) = Spake2::<Ed25519Group>::start_symmetric(
                    &Password::new(p),
                    &PakeIdentity::new(PAKE_IDENTITY),
                );
                h.out.push_back(HandshakeFrame::Knock {
                    pake: Some(msg.clone()),
                });
                h.step = Step::AwaitPake(pake, msg);
            }
            None => {
                h.out.push_back(HandshakeFrame::Knock { pake: None });
                h.start_noise(OPEN_PSK, &[])?;
            }
        }
        Ok(h)
    }

    /// The accepting side; it says nothing until the dialer knocks.
    pub fn accept(keys: &LinkKeys, me: Intro, passphrase: Option<&[u8]>) -> Handshake {
        Handshake::new(keys, me, passphrase, false)
    }

    fn new(keys: &LinkKeys, me: Intro, passphrase: Option<&[u8]>, dialer: bool) -> Handshake {
        Handshake {
            me,
            noise_private: keys.noise_private,
            passphrase: passphrase.map(<[u8]>::to_vec),
            dialer,
            step: Step::AwaitKnock,
            out: Default::default(),
            noise_buf: vec![0; MAX_NOISE_LEN],
            peer: None,
            noise_read: 0,
        }
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<HandshakeFrame> {
        self.out.pop_front()
    }

    /// The next frame to send, framed for the wire.
    pub fn poll_transmit_bytes(&mut self, out: &mut Vec<u8>) -> bool {
        match self.out.pop_front() {
            Some(f) => encode_frame(&f, out).is_ok(),
            None => false,
        }
    }

    /// Takes one frame from the other side. `Ok(Some(_))` once the link is
    /// established. On `Err` the handshake is over; what to tell the other
    /// side, if anything, is queued ([`Handshake::poll_transmit`]).
    pub fn handle(&mut self, frame: HandshakeFrame) -> Result<Option<Established>, HandshakeError> {
        // A refusal is not answered, and nothing is once the handshake is over.
        let answer =
            !matches!(frame, HandshakeFrame::Refuse(_)) && !matches!(self.step, Step::Done);
        let r = self.step(frame);
        if let Err(e) = &r {
            self.step = Step::Done;
            self.out.clear();
            if let Some(why) = e.refusal().filter(|_| answer) {
                self.out.push_back(HandshakeFrame::Refuse(why));
            }
        }
        r
    }

    fn step(&mut self, frame: HandshakeFrame) -> Result<Option<Established>, HandshakeError> {
        if let HandshakeFrame::Refuse(why) = frame {
            return Err(HandshakeError::of_refusal(why));
        }
        match (std::mem::replace(&mut self.step, Step::Done), frame) {
            (Step::AwaitKnock, HandshakeFrame::Knock { pake }) => {
                match (pake, self.passphrase.clone()) {
                    (None, None) => self.start_noise(OPEN_PSK, &[])?,
                    (None, Some(_)) => return Err(HandshakeError::PeerHasNoPassphrase),
                    (Some(_), None) => return Err(HandshakeError::PeerHasPassphrase),
                    (Some(theirs), Some(p)) => {
                        let (pake, mine) = Spake2::<Ed25519Group>::start_symmetric(
                            &Password::new(&p),
                            &PakeIdentity::new(PAKE_IDENTITY),
                        );
                        let key = pake.finish(&theirs).map_err(broken)?;
                        self.out.push_back(HandshakeFrame::Pake(mine.clone()));
                        self.start_noise(psk_of(&key), &[theirs, mine].concat())?;
                    }
                }
                Ok(None)
            }
            (Step::AwaitPake(pake, mine), HandshakeFrame::Pake(theirs)) => {
                let key = pake.finish(&theirs).map_err(broken)?;
                self.start_noise(psk_of(&key), &[mine, theirs].concat())?;
                Ok(None)
            }
            (Step::Noise(mut noise), HandshakeFrame::Noise(msg)) => {
                let mut payload = vec![0; MAX_NOISE_LEN];
                let first = self.noise_read == 0;
                self.noise_read += 1;
                let n = match noise.read_message(&msg, &mut payload) {
                    Ok(n) => n,
                    // The dialer's first Noise message is sealed with the
                    // passphrase's key: it does not open when they differ.
                    Err(_) if !self.dialer && self.passphrase.is_some() && first => {
                        return Err(HandshakeError::WrongPassphrase);
                    }
                    Err(e) => return Err(broken(e)),
                };
                if n > 0 {
                    let theirs: Intro =
                        crate::wire::decode_exact(&payload[..n], "intro").map_err(broken)?;
                    // The message that carried the intro carried the static
                    // key it certifies, and proved the sender holds it.
                    let remote_static: [u8; 32] = noise
                        .get_remote_static()
                        .and_then(|k| k.try_into().ok())
                        .ok_or_else(|| broken("no static key"))?;
                    if verify_link_cert(&theirs.key, &remote_static, &theirs.cert).is_err() {
                        return Err(HandshakeError::NotItsKey);
                    }
                    if theirs.key == self.me.key {
                        return Err(HandshakeError::SelfLink);
                    }
                    self.peer = Some(theirs);
                }
                if noise.is_handshake_finished() {
                    return self.finish(*noise).map(Some);
                }
                // Our turn: the acceptor introduces itself now (the dialer has
                // proved the passphrase), the dialer in its last message.
                self.write_noise(&mut noise, true)?;
                if noise.is_handshake_finished() {
                    return self.finish(*noise).map(Some);
                }
                self.step = Step::Noise(noise);
                Ok(None)
            }
            (step, other) => {
                let expected = match step {
                    Step::AwaitKnock => "a knock",
                    Step::AwaitPake(..) => "a passphrase exchange",
                    _ => "a key exchange",
                };
                Err(HandshakeError::Unexpected {
                    expected,
                    got: kind(&other),
                })
            }
        }
    }

    /// Builds this side's Noise state with `psk` and `prologue` (what the
    /// handshake exchanged before); the dialer writes its first message.
    fn start_noise(&mut self, psk: [u8; 32], exchanged: &[u8]) -> Result<(), HandshakeError> {
        let params: snow::params::NoiseParams = NOISE_PARAMS.parse().map_err(broken)?;
        let prologue = [PROLOGUE, exchanged].concat();
        let builder = snow::Builder::new(params)
            .local_private_key(&self.noise_private)
            .map_err(broken)?
            .psk(0, &psk)
            .map_err(broken)?
            .prologue(&prologue)
            .map_err(broken)?;
        let mut noise = if self.dialer {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .map_err(broken)?;
        if self.dialer {
            // `→ psk, e`: no payload; it proves the passphrase by opening.
            self.write_noise(&mut noise, false)?;
        }
        self.step = Step::Noise(Box::new(noise));
        Ok(())
    }

    fn write_noise(
        &mut self,
        noise: &mut snow::HandshakeState,
        introduce: bool,
    ) -> Result<(), HandshakeError> {
        let payload = if introduce {
            crate::wire::encode_to_vec(&self.me).map_err(broken)?
        } else {
            Vec::new()
        };
        let n = noise
            .write_message(&payload, &mut self.noise_buf)
            .map_err(broken)?;
        self.out
            .push_back(HandshakeFrame::Noise(self.noise_buf[..n].to_vec()));
        Ok(())
    }

    fn finish(&mut self, mut noise: snow::HandshakeState) -> Result<Established, HandshakeError> {
        let peer = self.peer.take().ok_or_else(|| broken("no introduction"))?;
        let (initiator_to_responder, responder_to_initiator) = noise.dangerously_get_raw_split();
        let (send, open_key) = if self.dialer {
            (initiator_to_responder, responder_to_initiator)
        } else {
            (responder_to_initiator, initiator_to_responder)
        };
        self.step = Step::Done;
        Ok(Established {
            peer,
            sealer: Sealer::new(&send),
            open_key,
        })
    }
}

/// The Noise pre-shared key from SPAKE2's key.
fn psk_of(spake_key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"synfony psk v6");
    h.update(spake_key);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};

    type Outcome = Result<Established, HandshakeError>;

    /// One side's keys and intro.
    struct Side {
        keys: LinkKeys,
        intro: Intro,
    }

    fn side(n: u16) -> Side {
        let keys = LinkKeys::generate().unwrap();
        let intro = keys.intro(
            &format!("p{n}"),
            SocketAddr::from((Ipv4Addr::LOCALHOST, 7000 + n)),
        );
        Side { keys, intro }
    }

    fn dial(s: &Side, pass: Option<&[u8]>) -> Handshake {
        Handshake::dial(&s.keys, s.intro.clone(), pass).unwrap()
    }

    fn accept(s: &Side, pass: Option<&[u8]>) -> Handshake {
        Handshake::accept(&s.keys, s.intro.clone(), pass)
    }

    /// Passes frames between the two sides (through the wire format, and
    /// through `tap`, which sees what the acceptor says) until both are quiet;
    /// returns each side's first outcome, if it had one.
    fn exchange(
        d: &mut Handshake,
        a: &mut Handshake,
        mut tap: impl FnMut(&HandshakeFrame),
    ) -> (Option<Outcome>, Option<Outcome>) {
        fn feed(h: &mut Handshake, f: HandshakeFrame, done: &mut Option<Outcome>) {
            let f = wire_trip(&f);
            if done.is_none() {
                match h.handle(f) {
                    Ok(None) => {}
                    Ok(Some(e)) => *done = Some(Ok(e)),
                    Err(e) => *done = Some(Err(e)),
                }
            }
        }
        let (mut d_done, mut a_done) = (None, None);
        for _ in 0..10 {
            while let Some(f) = d.poll_transmit() {
                feed(a, f, &mut a_done);
            }
            while let Some(f) = a.poll_transmit() {
                tap(&f);
                feed(d, f, &mut d_done);
            }
        }
        (d_done, a_done)
    }

    /// Runs a dialer (`p1`) and an acceptor (`p2`) to the end.
    fn run(
        dial_pass: Option<&[u8]>,
        accept_pass: Option<&[u8]>,
    ) -> ((Side, Outcome), (Side, Outcome)) {
        let (ds, as_) = (side(1), side(2));
        let (d, a) = exchange(
            &mut dial(&ds, dial_pass),
            &mut accept(&as_, accept_pass),
            |_| {},
        );
        (
            (ds, d.expect("the dialer finished")),
            (as_, a.expect("the acceptor finished")),
        )
    }

    fn wire_trip(f: &HandshakeFrame) -> HandshakeFrame {
        let bytes = crate::wire::encode_to_vec(f).unwrap();
        crate::wire::decode_exact(&bytes, "frame").unwrap()
    }

    /// Both sides learn each other's intro (and so id) and get matching
    /// keys: what one seals, the other opens.
    fn check_linked((ds, d): (Side, Outcome), (as_, a): (Side, Outcome)) {
        let (d, a) = (d.unwrap(), a.unwrap());
        assert_eq!(d.peer, as_.intro);
        assert_eq!(a.peer, ds.intro);
        assert_eq!(a.peer.peer_id(), ds.keys.peer_id());
        let (mut ds, mut as_) = (d.sealer, a.sealer);
        let mut out = Vec::new();
        let bye = crate::protocol::message::Message::Goodbye(crate::protocol::message::Goodbye {
            reason: "hi".into(),
        });
        ds.seal(&bye, &mut out).unwrap();
        let mut ao = crate::wire::seal::Opener::new(&a.open_key, &out);
        assert_eq!(
            ao.next_frame::<crate::protocol::message::Message>(),
            Ok(crate::wire::seal::Opened::Frame(bye.clone()))
        );
        out.clear();
        as_.seal(&bye, &mut out).unwrap();
        let mut doo = crate::wire::seal::Opener::new(&d.open_key, &out);
        assert_eq!(
            doo.next_frame::<crate::protocol::message::Message>(),
            Ok(crate::wire::seal::Opened::Frame(bye))
        );
    }

    #[test]
    fn an_open_session_links_with_secret_keys() {
        let (d, a) = run(None, None);
        check_linked(d, a);
    }

    #[test]
    fn the_same_passphrase_links() {
        let (d, a) = run(Some(b"tuba"), Some(b"tuba"));
        check_linked(d, a);
    }

    /// Every mismatch is said clearly on both sides.
    #[test]
    fn mismatches_are_named_on_both_sides() {
        use HandshakeError as H;
        let (tuba, tubb): (&[u8], &[u8]) = (b"tuba", b"tubb");
        for (dp, ap, de, ae) in [
            (
                Some(tuba),
                Some(tubb),
                H::WrongPassphrase,
                H::WrongPassphrase,
            ),
            (None, Some(tuba), H::NeedsPassphrase, H::PeerHasNoPassphrase),
            (Some(tuba), None, H::NoPassphraseThere, H::PeerHasPassphrase),
        ] {
            let ((_, d), (_, a)) = run(dp, ap);
            assert_eq!(d.unwrap_err(), de);
            assert_eq!(a.unwrap_err(), ae);
        }
    }

    /// Before the dialer proves the passphrase, the acceptor sends nothing
    /// but its SPAKE2 message, and nothing the dialer can read its intro or
    /// name in.
    #[test]
    fn a_wrong_dialer_learns_nothing_of_the_acceptor() {
        let mut said = Vec::new();
        exchange(
            &mut dial(&side(1), Some(b"guess")),
            &mut accept(&side(2), Some(b"secret")),
            |f| said.push(f.clone()),
        );
        assert!(
            matches!(
                &said[..],
                [
                    HandshakeFrame::Pake(_),
                    HandshakeFrame::Refuse(Refusal::WrongPassphrase)
                ]
            ),
            "{said:?}"
        );
    }

    /// A peer cannot link to itself; a frame out of turn ends the handshake.
    #[test]
    fn self_links_and_frames_out_of_turn_are_refused() {
        let me = side(1);
        let (d, a) = exchange(&mut dial(&me, None), &mut accept(&me, None), |_| {});
        // The dialer reads the acceptor's intro first, sees itself, and
        // says so: both ends name it.
        assert_eq!(d.and_then(Result::err), Some(HandshakeError::SelfLink));
        assert_eq!(a.and_then(Result::err), Some(HandshakeError::SelfLink));
        let mut a = accept(&side(2), None);
        assert!(matches!(
            a.handle(HandshakeFrame::Noise(vec![1, 2, 3])),
            Err(HandshakeError::Unexpected { .. })
        ));
        assert_eq!(
            a.poll_transmit(),
            Some(HandshakeFrame::Refuse(Refusal::Broken))
        );
    }

    /// Nobody links as another peer: an intro naming someone else's identity
    /// key (whose certificate is over that peer's Noise key, not the
    /// impostor's) is refused, and so is one with the certificate bent.
    #[test]
    fn an_impostor_cannot_link_as_another() {
        let (victim, mallory, acceptor) = (side(1), side(3), side(2));
        let mut claims_victim = mallory.intro.clone();
        claims_victim.key = victim.intro.key;
        claims_victim.cert = victim.intro.cert;
        let mut bent = mallory.intro.clone();
        bent.cert[0] ^= 1;
        for lie in [claims_victim, bent] {
            let mut d = Handshake::dial(&mallory.keys, lie, None).unwrap();
            let (_, a) = exchange(&mut d, &mut accept(&acceptor, None), |_| {});
            assert_eq!(a.and_then(Result::err), Some(HandshakeError::NotItsKey));
        }
    }
}
