//! A hostile member over real TCP: a client that speaks the protocol by hand,
//! as a buggy or malicious peer would (issue 19).
//!
//! It completes the handshake of an open session, then behaves like a
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
    ClockEcho, ClockPing, ClockPong, ClockStamps, Heartbeat, Hello, Message,
};
use synfony::protocol::{Event, PeerId, Round, SessionMap, Vote};
use synfony::wire::{FrameBuffer, Next, PROTOCOL_VERSION, encode_frame};

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
fn on_message(writer: &Mutex<TcpStream>, heard: &Mutex<Heard>, m: Message) {
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
            let mut frame = Vec::new();
            if encode_frame(&pong, &mut frame).is_ok() {
                let _ = writer.lock().expect("no panic holds it").write_all(&frame);
            }
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
    writer: Arc<Mutex<TcpStream>>,
    heard: Arc<Mutex<Heard>>,
    reader: Option<JoinHandle<()>>,
    keepalive: Option<JoinHandle<()>>,
    gone: Arc<std::sync::atomic::AtomicBool>,
}

impl Hostile {
    /// Connects to `addr` as `peer_id` (advertising `listen`), completes the
    /// handshake of an open session, and starts answering pings.
    pub fn connect(
        addr: SocketAddr,
        peer_id: PeerId,
        listen: SocketAddr,
    ) -> std::io::Result<Hostile> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        let mut reader = stream.try_clone()?;
        let writer = Arc::new(Mutex::new(stream));
        let heard = Arc::new(Mutex::new(Heard::default()));
        let me = Hostile {
            writer: writer.clone(),
            heard: heard.clone(),
            reader: None,
            keepalive: None,
            gone: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        me.send(&Message::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            peer_id,
            name: "hostile".into(),
            listen_addr: listen,
            nonce: [7; synfony::protocol::message::AUTH_LEN],
            proof: None,
        }))?;
        // Its hello, then everything else.
        reader.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut frames = FrameBuffer::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let hello = loop {
            match frames.next_frame::<Message>() {
                Ok(Next::Frame(Message::Hello(h))) => break h,
                Ok(Next::Frame(other)) => {
                    return Err(std::io::Error::other(format!(
                        "expected a hello, got {:?}",
                        other.code()
                    )));
                }
                Ok(Next::Dropped(e)) | Err(e) => return Err(std::io::Error::other(e.to_string())),
                Ok(Next::NeedMore) => {}
            }
            let n = reader.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::other("closed during the handshake"));
            }
            frames.extend(&chunk[..n]);
        };
        heard.lock().expect("no panic holds it").peer_id = Some(hello.peer_id);
        reader.set_read_timeout(None)?;
        let (w, h) = (writer.clone(), heard.clone());
        let thread = std::thread::spawn(move || {
            loop {
                loop {
                    match frames.next_frame::<Message>() {
                        Ok(Next::Frame(m)) => on_message(&w, &h, m),
                        Ok(Next::Dropped(_)) => {}
                        Ok(Next::NeedMore) => break,
                        Err(_) => return,
                    }
                }
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => frames.extend(&chunk[..n]),
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
                let mut frame = Vec::new();
                if encode_frame(&ping, &mut frame).is_err()
                    || w.lock()
                        .expect("no panic holds it")
                        .write_all(&frame)
                        .is_err()
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
        Ok(me)
    }

    /// Sends one message (any message the wire can carry).
    pub fn send(&self, m: &Message) -> std::io::Result<()> {
        let mut frame = Vec::new();
        encode_frame(m, &mut frame).map_err(|e| std::io::Error::other(e.to_string()))?;
        self.writer
            .lock()
            .expect("no panic holds it")
            .write_all(&frame)
    }

    /// A heartbeat with credible clock stamps (sent now, echoing the
    /// victim's last heartbeat) carrying whatever claims the test wants.
    pub fn heartbeat(
        &self,
        round: Round,
        vote: Event,
        relayed: Vec<Vote>,
        map: Option<SessionMap>,
        synced_at_session_ns: i64,
    ) -> Message {
        Message::Heartbeat(Heartbeat {
            round,
            vote,
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
            .shutdown(Shutdown::Both);
        for t in [self.reader.take(), self.keepalive.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
    }
}
