//! A fault-injecting TCP proxy for tests and the sync bench: real delays
//! between real processes on loopback, where the kernel has no `netem`.
//!
//! A [`Proxy`] listens on a loopback port and forwards every connection to one
//! upstream address. Each direction delays every chunk of bytes by a base plus
//! a uniformly random jitter (seeded), keeping TCP's order: a chunk never
//! overtakes the one before it, as on a real FIFO link. [`Proxy::cut`] closes
//! every connection and holds new ones silent (a partition: dials hang until
//! they time out), [`Proxy::restore`] ends the partition.
//!
//! A peer behind a proxy advertises the proxy's address (`--advertise`), so
//! every link *to* that peer passes through it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// One direction's delay: `base_ms` plus a uniform draw in `[0, jitter_ms]`,
/// or (`heavy_tail`) a Wi-Fi-like draw: within `[0, 3]` ms nine times in
/// ten, `[3, 20]` ms nine times in a hundred, and a spike of `[20, 100]` ms
/// once in a hundred.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Delay {
    pub base_ms: f64,
    pub jitter_ms: f64,
    pub heavy_tail: bool,
}

impl Delay {
    pub fn new(base_ms: f64, jitter_ms: f64) -> Delay {
        Delay {
            base_ms,
            jitter_ms,
            heavy_tail: false,
        }
    }

    /// A Wi-Fi link: about 2 ms, with the heavy-tailed jitter above.
    pub fn wifi() -> Delay {
        Delay {
            base_ms: 2.0,
            jitter_ms: 0.0,
            heavy_tail: true,
        }
    }

    /// The links as a figure's title says them.
    pub fn describe(&self) -> String {
        if self.heavy_tail {
            format!(
                "Wi-Fi-like links ({} ms + heavy-tailed jitter)",
                self.base_ms
            )
        } else if self.base_ms + self.jitter_ms > 0.0 {
            format!(
                "links {}–{} ms each way",
                self.base_ms,
                self.base_ms + self.jitter_ms
            )
        } else {
            "no added delay".to_string()
        }
    }

    fn draw(&self, rng: &mut ChaCha8Rng) -> Duration {
        let jitter = if self.heavy_tail {
            let (lo, hi) = match rng.random_range(0.0..1.0) {
                u if u < 0.90 => (0.0, 3.0),
                u if u < 0.99 => (3.0, 20.0),
                _ => (20.0, 100.0),
            };
            rng.random_range(lo..hi)
        } else if self.jitter_ms > 0.0 {
            rng.random_range(0.0..self.jitter_ms)
        } else {
            0.0
        };
        Duration::from_secs_f64(((self.base_ms + jitter) / 1e3).max(0.0))
    }
}

/// Wakes tasks at instants to tens of µs, for one proxy: tokio's timer works
/// in whole milliseconds (it rounds a deadline up to its next tick), which
/// would add up to 1 ms to every delay, and the same amount to every chunk
/// sent in answer to one that has just been delivered on a tick — an
/// artefact of the proxy no network has (NOTEBOOK.md, issue 22). One thread
/// sleeps until the earliest deadline (a condvar's timed wait) and wakes its
/// task; a thread per proxy, not per waiting chunk, keeps the 32-peer bench
/// from drowning in threads.
#[derive(Clone)]
struct PreciseTimer {
    shared: Arc<(Mutex<TimerQueue>, Condvar)>,
}

#[derive(Default)]
struct TimerQueue {
    /// Deadlines (with a sequence number, for a total order) and who waits.
    waiting: BTreeMap<(std::time::Instant, u64), tokio::sync::oneshot::Sender<()>>,
    next: u64,
    closed: bool,
}

impl PreciseTimer {
    fn start() -> std::io::Result<PreciseTimer> {
        let shared = Arc::new((Mutex::new(TimerQueue::default()), Condvar::new()));
        let theirs = shared.clone();
        std::thread::Builder::new()
            .name("synfony-proxy-timer".into())
            .spawn(move || {
                let (queue, wake) = &*theirs;
                let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                while !q.closed {
                    let now = std::time::Instant::now();
                    match q.waiting.first_key_value().map(|(k, _)| k.0) {
                        Some(at) if at <= now => {
                            if let Some((_, tx)) = q.waiting.pop_first() {
                                let _ = tx.send(());
                            }
                        }
                        Some(at) => {
                            q = wake
                                .wait_timeout(q, at - now)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                        None => q = wake.wait(q).unwrap_or_else(|e| e.into_inner()),
                    }
                }
            })?;
        Ok(PreciseTimer { shared })
    }

    /// Resolves at `at`.
    async fn wait_until(&self, at: Instant) {
        let at = at.into_std();
        if at <= std::time::Instant::now() {
            return;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let (queue, wake) = &*self.shared;
            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
            let seq = q.next;
            q.next += 1;
            q.waiting.insert((at, seq), tx);
            wake.notify_one();
        }
        let _ = rx.await;
    }

    /// Ends the timer's thread.
    fn close(&self) {
        let (queue, wake) = &*self.shared;
        queue.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        wake.notify_one();
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    /// Towards the upstream (the peer behind the proxy), and back.
    to_upstream: Delay,
    from_upstream: Delay,
    cut: bool,
    /// Cuts so far: a connection closes when this moves, even if the cut was
    /// restored before it looked.
    cuts: u64,
}

/// Bytes forwarded, each way, and what was forwarded while recording.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub to_upstream_bytes: AtomicU64,
    pub from_upstream_bytes: AtomicU64,
    pub connections: AtomicU64,
    /// Whether forwarded bytes are kept in `recorded` (see [`Proxy::record`]).
    pub recording: std::sync::atomic::AtomicBool,
    /// Every byte forwarded while recording, both ways interleaved, up to
    /// [`RECORD_CAP`]: what someone on the path would see.
    pub recorded: std::sync::Mutex<Vec<u8>>,
}

/// The most a recording proxy keeps.
pub const RECORD_CAP: usize = 64 << 20;

/// A running proxy (its own thread). Dropping it closes every connection.
pub struct Proxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    pub stats: Arc<ProxyStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`; `seed`
    /// makes the jitter replayable (per connection, in accept order, and
    /// direction).
    pub fn start(upstream: SocketAddr, seed: u64) -> std::io::Result<Proxy> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (faults, faults_rx) = watch::channel(Faults::default());
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let stats = Arc::new(ProxyStats::default());
        let thread_stats = stats.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let timer = PreciseTimer::start()?;
        let closer = timer.clone();
        let on_error = timer.clone();
        let thread = std::thread::Builder::new()
            .name("synfony-proxy".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = accept_loop(listener, upstream, faults_rx, seed, thread_stats, timer.clone()) => {}
                        _ = stop_rx => {}
                    }
                });
                closer.close();
            })
            .inspect_err(|_| on_error.close())?;
        Ok(Proxy {
            addr,
            faults,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where to connect (and what the peer behind it should advertise).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets both directions' delay (for new and existing connections).
    pub fn set_delay(&self, to_upstream: Delay, from_upstream: Delay) {
        self.faults.send_modify(|f| {
            f.to_upstream = to_upstream;
            f.from_upstream = from_upstream;
        });
    }

    /// Keeps every byte forwarded from now on (both ways, up to
    /// [`RECORD_CAP`]), as an eavesdropper on the path would.
    pub fn record(&self) {
        self.stats.recording.store(true, Relaxed);
    }

    /// What was recorded so far.
    pub fn recorded(&self) -> Vec<u8> {
        self.stats
            .recorded
            .lock()
            .expect("no panic holds it")
            .clone()
    }

    /// Partitions: closes every connection; new ones are held silent.
    pub fn cut(&self) {
        self.faults.send_modify(|f| {
            f.cut = true;
            f.cuts += 1;
        });
    }

    /// Ends a partition: new connections are forwarded again.
    pub fn restore(&self) {
        self.faults.send_modify(|f| f.cut = false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: watch::Receiver<Faults>,
    seed: u64,
    stats: Arc<ProxyStats>,
    timer: PreciseTimer,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let n = stats.connections.fetch_add(1, Relaxed);
        // Each connection and direction draws from its own stream, so the
        // jitter of one does not depend on the traffic of another.
        let rng = |direction: u64| {
            ChaCha8Rng::seed_from_u64(
                seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (n << 1 | direction),
            )
        };
        tokio::spawn(connection(
            client,
            upstream,
            faults.clone(),
            [rng(0), rng(1)],
            stats.clone(),
            timer.clone(),
        ));
    }
}

/// Resolves when a cut comes after `cuts` cuts.
async fn until_cut(faults: &mut watch::Receiver<Faults>, cuts: u64) {
    let _ = faults.wait_for(|f| f.cuts != cuts).await;
}

async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    mut faults: watch::Receiver<Faults>,
    [rng_up, rng_down]: [ChaCha8Rng; 2],
    stats: Arc<ProxyStats>,
    timer: PreciseTimer,
) {
    let cuts = faults.borrow().cuts;
    if faults.borrow().cut {
        // Held silent until the partition ends, then closed.
        let _ = faults.wait_for(|f| !f.cut).await;
        drop(client);
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (c_rd, c_wr) = client.into_split();
    let (s_rd, s_wr) = server.into_split();
    let up = pipe(
        c_rd,
        s_wr,
        faults.clone(),
        rng_up,
        stats.clone(),
        true,
        timer.clone(),
    );
    let down = pipe(s_rd, c_wr, faults.clone(), rng_down, stats, false, timer);
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = until_cut(&mut faults, cuts) => {}
    }
}

/// One direction: read chunks, stamp each with its delivery time, deliver in
/// order.
async fn pipe(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    faults: watch::Receiver<Faults>,
    mut rng: ChaCha8Rng,
    stats: Arc<ProxyStats>,
    to_upstream: bool,
    timer: PreciseTimer,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut last = Instant::now();
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let delay = {
                let f = *faults.borrow();
                let d = if to_upstream {
                    f.to_upstream
                } else {
                    f.from_upstream
                };
                d.draw(&mut rng)
            };
            // FIFO: never before the chunk ahead of it.
            last = last.max(Instant::now() + delay);
            if tx.send((last, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((at, bytes)) = rx.recv().await {
            timer.wait_until(at).await;
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
            let counter = if to_upstream {
                &stats.to_upstream_bytes
            } else {
                &stats.from_upstream_bytes
            };
            counter.fetch_add(bytes.len() as u64, Relaxed);
            if stats.recording.load(Relaxed) {
                let mut r = stats.recorded.lock().expect("no panic holds it");
                let room = RECORD_CAP.saturating_sub(r.len());
                r.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
        }
        let _ = wr.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// An echo server on loopback.
    fn echo() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn forwards_in_order_with_the_delay_and_cuts() {
        let proxy = Proxy::start(echo(), 7).unwrap();
        proxy.set_delay(Delay::new(30.0, 10.0), Delay::new(30.0, 10.0));
        let mut s = std::net::TcpStream::connect(proxy.addr()).unwrap();
        let t0 = std::time::Instant::now();
        for i in 0..20u8 {
            s.write_all(&[i]).unwrap();
        }
        let mut got = [0u8; 20];
        s.read_exact(&mut got).unwrap();
        let rtt = t0.elapsed();
        assert_eq!(got.to_vec(), (0..20).collect::<Vec<u8>>(), "order kept");
        // Two ways of at least 30 ms each (an order-of-magnitude check, not a
        // timing: the delay is a sleep, and sleeps are never short).
        assert!(rtt >= Duration::from_millis(60), "{rtt:?}");
        assert_eq!(proxy.stats.to_upstream_bytes.load(Relaxed), 20);

        proxy.cut();
        let mut buf = [0u8; 1];
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "a cut closes the link");
        // While cut, a new connection is accepted but nothing comes back.
        let mut held = std::net::TcpStream::connect(proxy.addr()).unwrap();
        held.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        held.write_all(b"x").unwrap();
        assert!(held.read(&mut buf).is_err(), "silence while cut");
        proxy.restore();
        proxy.set_delay(Delay::default(), Delay::default());
        let mut s = std::net::TcpStream::connect(proxy.addr()).unwrap();
        s.write_all(b"y").unwrap();
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"y");
    }
}
