//! The deterministic simulation, over many seeds: every run must keep the
//! protocol's invariants (see `synfony_sim`). Timing figures are reported by
//! `cargo run --release --example simulate`, never asserted here.
//!
//! `SYNFONY_SIM_SEEDS=N` sets how many seeds (default 1000, peers cycling 2–5);
//! `SYNFONY_SIM_SEED=S` replays one seed with `cargo test --test sim replay`
//! (`SYNFONY_SIM_ADVERSARY=1`: the hostile-member scenario).
//! `SYNFONY_SIM_ADVERSARY_SEEDS=N` sets the hostile-member seeds (default 64;
//! CI runs 300 more through `cargo run --release --example simulate --
//! --adversary`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use synfony_sim::{self as sim, SimConfig};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The CI scenario for seed `seed`: 2–5 peers, all faults, 20 simulated seconds.
fn scenario(seed: u64) -> SimConfig {
    let mut cfg = SimConfig::new(seed, 2 + (seed % 4) as usize);
    cfg.duration_ns = 20_000_000_000;
    cfg
}

/// The hostile-member scenario for seed `seed`: 2–5 honest peers and one
/// adversary, 20 simulated seconds.
fn hostile(seed: u64) -> SimConfig {
    let mut cfg = scenario(seed);
    cfg.adversary = true;
    cfg
}

fn check(cfg: SimConfig) -> Vec<String> {
    let seed = cfg.seed;
    let report = sim::run(&cfg);
    assert!(report.decisions > 0, "seed {seed}: nothing was decided");
    SONG_CHANGES.fetch_add(report.song_changes, Ordering::Relaxed);
    report.violations
}

/// Song changes (loads, next, prev, song ends) seen over all seeds: the
/// scenarios must exercise them.
static SONG_CHANGES: AtomicU64 = AtomicU64::new(0);

/// Many seeds, spread over the cores; every violation is printed with its seed.
#[test]
fn invariants_hold_over_many_seeds() {
    let seeds = env_u64("SYNFONY_SIM_SEEDS").unwrap_or(1000);
    over_seeds(seeds, scenario);
    assert!(
        SONG_CHANGES.load(Ordering::Relaxed) >= seeds,
        "the set list was barely exercised: {} song changes in {seeds} seeds",
        SONG_CHANGES.load(Ordering::Relaxed)
    );
}

/// A hostile member (issue 19) never makes an honest peer panic, hang, do
/// unbounded work for one message or hold unbounded state, and once it has
/// left the honest peers are in step within 2 s.
#[test]
fn a_hostile_member_cannot_crash_freeze_or_split() {
    over_seeds(
        env_u64("SYNFONY_SIM_ADVERSARY_SEEDS").unwrap_or(64),
        hostile,
    );
}

fn over_seeds(seeds: u64, scenario: fn(u64) -> SimConfig) {
    let next = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds {
                        break;
                    }
                    let v = check(scenario(seed));
                    if !v.is_empty() {
                        failures.lock().expect("no panic holds it").extend(v);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("no panic holds it");
    assert!(
        failures.is_empty(),
        "{} violations (replay one with SYNFONY_SIM_SEED=<seed> cargo test --test sim replay):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Replays the seed in `SYNFONY_SIM_SEED` (default 0) and prints what it measured.
#[test]
fn replay() {
    let seed = env_u64("SYNFONY_SIM_SEED").unwrap_or(0);
    let cfg = if env_u64("SYNFONY_SIM_ADVERSARY") == Some(1) {
        hostile(seed)
    } else {
        scenario(seed)
    };
    let a = sim::run(&cfg);
    let b = sim::run(&cfg);
    println!(
        "seed {seed}: {} peers, {} decisions, {} messages, join max {} ms, violations {:?}",
        cfg.peers,
        a.decisions,
        a.messages,
        a.join_ns_max / 1_000_000,
        a.violations
    );
    // Determinism: the same seed gives the same run, message for message.
    assert_eq!(
        (a.decisions, a.messages, a.votes_cast),
        (b.decisions, b.messages, b.votes_cast)
    );
    assert_eq!(a.offset_err_ns, b.offset_err_ns);
    assert!(a.violations.is_empty(), "{:?}", a.violations);
}

/// The library (issue 20): over many seeds of partitions, a crash and
/// restart from disk, lost messages and users changing the library on every
/// peer at once, all peers end with the same library — the join of every
/// change made. `SYNFONY_SIM_LIBRARY_SEEDS=N` sets the seeds (default 200);
/// the failure message names each seed, replayed with
/// `SYNFONY_SIM_LIBRARY_SEED=S cargo test --test sim library_replay`.
#[test]
fn libraries_converge_under_faults() {
    let seeds = env_u64("SYNFONY_SIM_LIBRARY_SEEDS").unwrap_or(200);
    let mut failures = Vec::new();
    let mut worst_ns = 0;
    for seed in 0..seeds {
        let r = sim::run_library(&sim::LibrarySimConfig::new(seed, 2 + (seed % 6) as usize));
        failures.extend(r.violations);
        worst_ns = worst_ns.max(r.converge_ns.unwrap_or(0));
    }
    println!(
        "{seeds} seeds: agreed at most {} ms after the last change or fault",
        worst_ns / 1_000_000
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn library_replay() {
    let seed = env_u64("SYNFONY_SIM_LIBRARY_SEED").unwrap_or(0);
    let cfg = sim::LibrarySimConfig::new(seed, 2 + (seed % 6) as usize);
    let (a, b) = (sim::run_library(&cfg), sim::run_library(&cfg));
    println!("{a:?}");
    assert_eq!(
        (a.messages, a.bytes, a.converge_ns),
        (b.messages, b.bytes, b.converge_ns)
    );
    assert!(a.violations.is_empty(), "{:?}", a.violations);
}
