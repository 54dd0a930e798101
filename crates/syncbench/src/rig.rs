//! A session of synfony peers for the bench: each a real process behind its
//! own delaying proxy (which it advertises, so every link to it crosses the
//! proxy), each with its own clock offset, clock drift and device drift.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use synfony::host_clock::monotonic_ns;
use synfony_testkit::harness::{PeerProcess, cpu_secs, free_port, mkfifo, release_fifo};
use synfony_testkit::impulse::{Capture, capture};
use synfony_testkit::proxy::{Delay, Proxy};
use synfony_testkit::report::{Report, Summary, skew_ms};

pub const SEC: Duration = Duration::from_secs(1);
/// The virtual device's block (the default 2400 frames at 48 kHz).
pub const PERIOD_NS: i64 = 50_000_000;

/// One peer's clock errors.
#[derive(Clone, Debug)]
pub struct Clocks {
    pub offset_ms: f64,
    pub drift_ppm: f64,
    pub device_drift_ppm: f64,
}

impl Clocks {
    /// Peer `i`'s errors: the first runs true; the others are drawn from the
    /// seed (offsets within ±5 s, clock drift within ±150 ppm, device drift
    /// within ±100 ppm), as separate machines' would be.
    pub fn draw(seed: u64, i: usize) -> Clocks {
        if i == 0 {
            return Clocks {
                offset_ms: 0.0,
                drift_ppm: 0.0,
                device_drift_ppm: 0.0,
            };
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1000).wrapping_add(i as u64));
        Clocks {
            offset_ms: (rng.random_range(-5000.0..5000.0f64)).round(),
            drift_ppm: (rng.random_range(-150.0..150.0f64)).round(),
            device_drift_ppm: (rng.random_range(-100.0..100.0f64)).round(),
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--clock-offset-ms".into(),
            self.offset_ms.to_string(),
            "--clock-drift-ppm".into(),
            self.drift_ppm.to_string(),
            "--device-drift-ppm".into(),
            self.device_drift_ppm.to_string(),
        ]
    }

    pub fn json(&self) -> Value {
        json!({
            "clock_offset_ms": self.offset_ms,
            "clock_drift_ppm": self.drift_ppm,
            "device_drift_ppm": self.device_drift_ppm,
        })
    }
}

/// One peer of the rig.
pub struct Node {
    pub peer: PeerProcess,
    pub proxy: Proxy,
    pub clocks: Clocks,
    /// The raw output being read, when asked for: the FIFO and its reader.
    capture: Option<(PathBuf, JoinHandle<std::io::Result<Capture>>)>,
}

/// A session of peers.
pub struct Rig {
    bin: PathBuf,
    pub dir: PathBuf,
    pub delay: Delay,
    pub stem: PathBuf,
    seed: u64,
    /// Whether peers get drawn clock errors (else all run on the machine's
    /// own clock, as Snapcast's clients must).
    pub clock_errors: bool,
    /// Peers spawned from this index on start with no stem: they fetch it.
    pub remote_from: usize,
    /// The virtual device's block (`--period-frames`), if not its default.
    pub period_frames: Option<usize>,
    /// Peers spawned so far (names and clock draws never repeat).
    spawned: usize,
    pub nodes: Vec<Node>,
}

impl Rig {
    pub fn new(bin: &Path, dir: &Path, delay: Delay, stem: &Path, seed: u64) -> Rig {
        Rig {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            delay,
            stem: stem.to_path_buf(),
            seed,
            clock_errors: true,
            remote_from: usize::MAX,
            period_frames: None,
            spawned: 0,
            nodes: Vec::new(),
        }
    }

    /// Starts `n` peers: the first creates the session, the others join it.
    pub fn start(&mut self, n: usize, raw: bool) -> anyhow::Result<()> {
        for _ in 0..n {
            self.spawn(raw, None)?;
        }
        Ok(())
    }

    /// Spawns one more peer (joining the first node, if any), with the next
    /// clock draw or `clocks`; returns its index.
    pub fn spawn(&mut self, raw: bool, clocks: Option<Clocks>) -> anyhow::Result<usize> {
        let k = self.spawned;
        self.spawned += 1;
        let name = format!("p{k}");
        let clocks = clocks
            .unwrap_or_else(|| Clocks::draw(self.seed, if self.clock_errors { k } else { 0 }));
        let listen = free_port()?;
        let proxy = Proxy::start(listen, self.seed.wrapping_mul(7919).wrapping_add(k as u64))?;
        proxy.set_delay(self.delay, self.delay);
        let mut args = vec![
            "--listen".to_string(),
            listen.to_string(),
            "--advertise".into(),
            proxy.addr().to_string(),
        ];
        if let Some(first) = self.nodes.first() {
            args.push("--join".into());
            args.push(first.proxy.addr().to_string());
        }
        args.extend(clocks.args());
        let capture = if raw {
            let fifo = self.dir.join(format!("{name}.raw"));
            mkfifo(&fifo).with_context(|| format!("mkfifo {}", fifo.display()))?;
            args.push("--output".into());
            args.push(format!("raw:{}", fifo.display()));
            let path = fifo.clone();
            Some((
                fifo,
                std::thread::spawn(move || {
                    // Opening blocks until the peer opens its end.
                    capture(std::fs::File::open(&path)?)
                }),
            ))
        } else {
            args.push("--output".into());
            args.push("null".into());
            None
        };
        if let Some(frames) = self.period_frames {
            args.push("--period-frames".into());
            args.push(frames.to_string());
        }
        if k < self.remote_from {
            args.push(self.stem.display().to_string());
        }
        // Info logging: debug lines would count in the peers' CPU time
        // (`SYNCBENCH_PEER_LOG` sets another filter, to look into a run).
        let filter =
            std::env::var("SYNCBENCH_PEER_LOG").unwrap_or_else(|_| "synfony=info".to_string());
        let peer = match PeerProcess::spawn_logging(&self.bin, &name, &self.dir, &args, &filter) {
            Ok(p) => p,
            Err(e) => {
                if let Some((fifo, _)) = &capture {
                    release_fifo(fifo);
                }
                return Err(e.into());
            }
        };
        self.nodes.push(Node {
            peer,
            proxy,
            clocks,
            capture,
        });
        Ok(self.nodes.len() - 1)
    }

    /// Waits until every peer is linked to every other and synced, all
    /// within `timeout`.
    pub fn wait_mesh(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let n = self.nodes.len();
        let deadline = std::time::Instant::now() + timeout;
        for node in &mut self.nodes {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            node.peer.wait_linked(n - 1, left)?;
        }
        Ok(())
    }

    /// Casts `line` on node `voter` and waits until every running peer decided it:
    /// the time from the command to the last peer's apply instant, and the
    /// spread of the apply instants.
    pub fn vote(&mut self, voter: usize, line: &str, action: &str) -> anyhow::Result<Control> {
        let voter_id = self.nodes[voter].peer.peer_id.clone();
        // Only decisions after this command count: the same voter may have
        // cast the same action before.
        let marks: Vec<usize> = self.nodes.iter_mut().map(|n| n.peer.mark()).collect();
        let sent_mono_ns = monotonic_ns();
        self.nodes[voter].peer.send(line)?;
        let mut applied = Vec::new();
        let mut round = None;
        for (node, &mark) in self.nodes.iter_mut().zip(&marks) {
            if !node.peer.is_running() {
                continue; // killed by the scenario
            }
            let d = node.peer.wait_decision(mark, &voter_id, action, 10 * SEC)?;
            if round.is_some_and(|r| r != d["round"]) {
                bail!("peers decided {line:?} in different rounds");
            }
            round = Some(d["round"].clone());
            applied.push(d["apply_at_mono_ns"].as_i64().context("apply_at_mono_ns")?);
        }
        let last = *applied.iter().max().context("no peers")?;
        let first = *applied.iter().min().context("no peers")?;
        Ok(Control {
            latency_ms: (last - sent_mono_ns) as f64 / 1e6,
            spread_ms: (last - first) as f64 / 1e6,
        })
    }

    pub fn reports(&self, since_mono_ns: i64) -> Vec<Report> {
        self.nodes
            .iter()
            .map(|n| n.peer.read_report().since(since_mono_ns))
            .collect()
    }

    /// Every peer's status, summed where it counts.
    pub fn statuses(&mut self) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        for n in &mut self.nodes {
            if n.peer.is_running() {
                out.push(n.peer.status()?);
            }
        }
        Ok(out)
    }

    /// CPU seconds each peer has used so far.
    pub fn cpu_secs(&self) -> Vec<f64> {
        self.nodes
            .iter()
            .map(|n| cpu_secs(n.peer.pid()).unwrap_or(f64::NAN))
            .collect()
    }

    /// Bytes every proxy forwarded (both ways): all the links' traffic.
    pub fn link_bytes(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        self.nodes
            .iter()
            .map(|n| {
                n.proxy.stats.to_upstream_bytes.load(Relaxed)
                    + n.proxy.stats.from_upstream_bytes.load(Relaxed)
            })
            .sum()
    }

    /// Stops every peer (`quit`) and returns the raw captures, in node order
    /// (`None` where there was none).
    pub fn stop(self) -> anyhow::Result<Vec<Option<Capture>>> {
        let mut caps = Vec::new();
        for node in self.nodes {
            let Node { peer, capture, .. } = node;
            let mut peer = peer;
            if peer.is_running() {
                let _ = peer.quit();
            }
            caps.push(match capture {
                Some((fifo, h)) => Some({
                    // In case the peer never opened its end.
                    release_fifo(&fifo);
                    h.join()
                        .map_err(|_| anyhow::anyhow!("a capture thread panicked"))??
                }),
                None => None,
            });
        }
        Ok(caps)
    }
}

/// One vote's control figures.
#[derive(Clone, Copy, Debug)]
pub struct Control {
    pub latency_ms: f64,
    pub spread_ms: f64,
}

/// Skew between every pair of players (`skew(a, b)`: how far b plays ahead
/// of a, `(mono_ns, ms)`), pooled (sorted by time) and per pair.
pub fn pairwise<T>(
    names: &[String],
    players: &[T],
    skew: impl Fn(&T, &T) -> Vec<(i64, f64)>,
) -> (Summary, Vec<Value>, Vec<(i64, f64)>) {
    let mut all = Vec::new();
    let mut pairs = Vec::new();
    for i in 0..players.len() {
        for j in i + 1..players.len() {
            let s = skew(&players[i], &players[j]);
            pairs.push(json!({
                "a": names[i],
                "b": names[j],
                "skew_ms": summary_json(&Summary::of_abs(s.iter().map(|x| x.1))),
            }));
            all.extend(s);
        }
    }
    all.sort_by_key(|x| x.0);
    (Summary::of_abs(all.iter().map(|x| x.1)), pairs, all)
}

/// Skew from the peers' reports, every pair.
pub fn pair_skews(names: &[String], reports: &[Report]) -> (Summary, Vec<Value>, Vec<(i64, f64)>) {
    pairwise(names, reports, skew_ms)
}

pub fn summary_json(s: &Summary) -> Value {
    json!({ "n": s.n, "p50": s.p50, "p95": s.p95, "p99": s.p99, "max": s.max })
}

/// Percentiles of plain values (not absolute), for latencies.
pub fn summary_of(values: &[f64]) -> Value {
    summary_json(&Summary::of(values.iter().copied()))
}

/// `after[key] − before[key]` summed over the peers present in both (matched
/// by peer id), never below zero: a peer that died drops out instead of
/// making the sum wrap.
pub fn counter_delta(before: &[Value], after: &[Value], key: &str) -> u64 {
    after
        .iter()
        .filter_map(|a| {
            let b = before.iter().find(|b| b["peer_id"] == a["peer_id"])?;
            Some(a[key].as_u64()?.saturating_sub(b[key].as_u64()?))
        })
        .sum()
}

/// Every counter of interest as deltas between two rounds of statuses.
pub fn counters_between(before: &[Value], after: &[Value]) -> Value {
    let d = |k: &str| counter_delta(before, after, k);
    json!({
        "underruns": d("underruns"),
        "xruns": d("xruns"),
        "heartbeats_on_time": d("heartbeats_on_time"),
        "heartbeats_late": d("heartbeats_late"),
        "malformed_frames": d("malformed_frames"),
    })
}
