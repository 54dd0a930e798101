//! The core's input sources, each a task of its own: the accept loop (a
//! handshake task per connection), dials, a reader and a writer task per
//! link, stdin lines and signals (headless). They own their socket or stream
//! and talk to the core only through its input channel (and, for a writer,
//! its link's bounded queue).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::protocol::PeerId;
use crate::protocol::message::Message;
use crate::runtime::auth::Secret;
use crate::runtime::net::{self, Connection, Identity, LinkError};

use super::core::Input;
use super::links::{ConnId, DialAddr, DialTarget};
use super::slots::{Admit, FIRST_BYTE_TIMEOUT, Slots};

/// A write that cannot complete this long means the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Accepts connections for ever, each handshaken on a task of its own; a
/// finished handshake becomes [`Input::Connected`]. Who gets a handshake slot
/// is [`Slots`]'s business: a connection that loses its slot, or says nothing
/// for [`FIRST_BYTE_TIMEOUT`], is closed.
pub(super) async fn accept_loop(
    listener: tokio::net::TcpListener,
    me: Identity,
    secret: Option<Arc<Secret>>,
    inputs: mpsc::Sender<Input>,
) {
    // A few lookups under a plain mutex from the accept loop and the
    // handshake tasks: never held across an await.
    let slots = Arc::new(Mutex::new(Slots::default()));
    let mut evict: HashMap<u64, oneshot::Sender<()>> = HashMap::new();
    let mut next_id: u64 = 0;
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: pause, then go on.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let id = next_id;
        next_id += 1;
        let admit = slots.lock().expect("no panic holds it").admit(
            id,
            remote.ip(),
            std::time::Instant::now(),
        );
        if admit == Admit::Refuse {
            // Said once, when its allowance ran out (below).
            debug!(%remote, "too many failed handshakes lately: closed unanswered");
            continue;
        }
        evict.retain(|_, tx| !tx.is_closed());
        if let Admit::Evict(old) = admit
            && let Some(tx) = evict.remove(&old)
        {
            debug!(%remote, "handshake slots full: the oldest waiting connection is closed");
            let _ = tx.send(());
        }
        let (tx, evicted) = oneshot::channel();
        evict.insert(id, tx);
        let me = me.clone();
        let secret = secret.clone();
        let inputs = inputs.clone();
        let slots = slots.clone();
        tokio::spawn(async move {
            let handshake = async {
                // Silent sockets lose their place fast.
                let mut byte = [0u8; 1];
                match tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut byte)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return debug!(%remote, "silent for {FIRST_BYTE_TIMEOUT:?}: closed"),
                }
                slots.lock().expect("no panic holds it").spoke(id);
                let mut conn = match Connection::new(stream) {
                    Ok(c) => c,
                    Err(e) => return debug!(%remote, "connection lost at once: {e}"),
                };
                match net::handshake_acceptor(&mut conn, &me, secret.as_deref()).await {
                    Ok(peer) => {
                        slots.lock().expect("no panic holds it").done(id);
                        let _ = inputs
                            .send(Input::Connected {
                                conn,
                                peer,
                                dialed: None,
                            })
                            .await;
                    }
                    Err(e) => {
                        let used_up = slots
                            .lock()
                            .expect("no panic holds it")
                            .failed(remote.ip(), std::time::Instant::now());
                        if used_up {
                            warn!(
                                %remote,
                                "refused a connection: {e}; too many failed handshakes from {}: \
                                 its connections are closed unanswered, one let through a second",
                                remote.ip()
                            );
                        } else {
                            warn!(%remote, "refused a connection: {e}");
                        }
                    }
                }
            };
            tokio::select! {
                () = handshake => {}
                _ = evicted => debug!(%remote, "its handshake slot went to a newer connection"),
            }
            slots.lock().expect("no panic holds it").done(id);
        });
    }
}

/// Dials `addr` on a task of its own and handshakes; the outcome becomes
/// [`Input::Connected`] or [`Input::DialFailed`].
pub(super) fn spawn_dial(
    target: DialTarget,
    addr: DialAddr,
    me: Identity,
    secret: Option<Arc<Secret>>,
    inputs: mpsc::Sender<Input>,
) {
    tokio::spawn(async move {
        let result = async {
            let addr = match addr {
                DialAddr::Addr(a) => a,
                DialAddr::Spec(spec) => resolve(&spec).await?,
            };
            let mut conn = net::connect(addr).await?;
            let peer = net::handshake_dialer(&mut conn, &me, secret.as_deref()).await?;
            Ok::<_, LinkError>((conn, peer))
        }
        .await;
        let input = match result {
            Ok((conn, peer)) => Input::Connected {
                conn,
                peer,
                dialed: Some(target),
            },
            Err(error) => Input::DialFailed { target, error },
        };
        let _ = inputs.send(input).await;
    });
}

async fn resolve(spec: &str) -> Result<SocketAddr, LinkError> {
    let mut addrs = tokio::net::lookup_host(spec).await.map_err(|e| {
        LinkError::Io(std::io::Error::new(
            e.kind(),
            format!("cannot resolve {spec:?} (expected HOST:PORT): {e}"),
        ))
    })?;
    addrs.next().ok_or_else(|| {
        LinkError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{spec:?} resolves to no address"),
        ))
    })
}

/// Reads one link until it closes: [`Input::Read`] per message (in order,
/// waiting when the core's queue is full), then [`Input::Closed`].
pub(super) async fn read_loop(
    mut reader: net::LinkReader,
    conn: ConnId,
    peer: PeerId,
    inputs: mpsc::Sender<Input>,
) {
    let mut batch = Vec::new();
    loop {
        let result = reader.read(|r| batch.push(r)).await;
        for read in batch.drain(..) {
            if inputs.send(Input::Read { conn, peer, read }).await.is_err() {
                return;
            }
        }
        if let Err(error) = result {
            let _ = inputs.send(Input::Closed { conn, peer, error }).await;
            return;
        }
    }
}

/// Writes one link's queued messages (session messages before stem data)
/// until the queue's sender is dropped, then shuts the socket down; a write
/// that fails or stalls ends it at once.
pub(super) async fn write_loop(
    mut writer: net::LinkWriter,
    mut rx: mpsc::Receiver<Message>,
    peer: PeerId,
    queued: Arc<AtomicUsize>,
) {
    let mut outbox = net::Outbox::default();
    let mut batch = Vec::new();
    let mut open = true;
    loop {
        if outbox.is_empty() {
            match rx.recv().await {
                Some(m) => outbox.push(m),
                None => break,
            }
        }
        while outbox.has_room() {
            match rx.try_recv() {
                Ok(m) => outbox.push(m),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        outbox.next_batch(&mut batch);
        match tokio::time::timeout(WRITE_TIMEOUT, writer.send(&mut batch)).await {
            Ok(Ok(())) => {
                let written: usize = batch.iter().map(net::approx_wire_bytes).sum();
                queued.fetch_sub(
                    written.min(queued.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
            }
            Ok(Err(e)) => return debug!(%peer, "write failed: {e}"),
            // Not reading: drop the socket rather than hold it forever.
            Err(_) => return debug!(%peer, "write stalled for {WRITE_TIMEOUT:?}"),
        }
        if !open && outbox.is_empty() {
            break;
        }
    }
    writer.shutdown().await;
}

/// Lines of stdin as [`Input::Line`], then [`Input::StdinClosed`].
pub(super) async fn stdin_loop(inputs: mpsc::Sender<Input>) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        let input = match lines.next_line().await {
            Ok(Some(l)) => Input::Line(l),
            Ok(None) | Err(_) => Input::StdinClosed,
        };
        let closed = matches!(input, Input::StdinClosed);
        if inputs.send(input).await.is_err() || closed {
            return;
        }
    }
}

/// Turns SIGINT and SIGTERM into a graceful quit.
pub(super) async fn signal_loop(inputs: mpsc::Sender<Input>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        warn!("cannot install signal handlers");
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    let _ = inputs.send(Input::Signal(name)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_clock::LocalClock;
    use crate::protocol::message::ClockPing;
    use tokio::io::AsyncReadExt;

    use crate::runtime::net::tests::chunk;

    /// A link's writer takes off the queued count exactly what the core put
    /// on for each message it wrote, so an honest link's count returns to
    /// zero and the queue limits never cut a link that reads.
    #[test]
    fn the_writer_takes_off_what_it_wrote() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let conn = net::connect(addr).await.unwrap();
            let (mut far, _) = listener.accept().await.unwrap();
            let reading = tokio::spawn(async move {
                let mut sink = Vec::new();
                far.read_to_end(&mut sink).await.map(|_| sink.len())
            });
            let (_reader, writer) = conn.with_test_keys().split(LocalClock::REAL).unwrap();
            let (tx, rx) = mpsc::channel(1024);
            let queued = Arc::new(AtomicUsize::new(0));
            let mut sent_bytes = 0;
            for i in 0..200u32 {
                let m = if i % 3 == 0 {
                    chunk(i)
                } else {
                    Message::ClockPing(ClockPing {
                        seq: i,
                        origin_ns: 0,
                    })
                };
                let bytes = net::approx_wire_bytes(&m);
                sent_bytes += bytes;
                queued.fetch_add(bytes, Ordering::Relaxed);
                tx.send(m).await.unwrap();
            }
            assert_eq!(queued.load(Ordering::Relaxed), sent_bytes);
            drop(tx);
            write_loop(writer, rx, PeerId(2), queued.clone()).await;
            assert_eq!(queued.load(Ordering::Relaxed), 0);
            let read = reading.await.unwrap().unwrap();
            assert!(read >= 67 * 64 * 1024, "{read} bytes arrived");
        });
    }
}
