//! Runs the deterministic simulator over many seeds and reports what it measured.
//!
//! `cargo run --release --example simulate -- --seeds 1000 --peers 8`
//!
//! Options: `--seeds N` (default 100), `--first-seed S` (default 0), `--peers N`
//! (default 8), `--secs S` (simulated seconds per seed, default 30),
//! `--no-faults`, `--adversary` (a hostile member instead of the scripted
//! faults), `--asymmetry-ms A` (per-direction base delay spread),
//! `--jitter-ms J` (default 40, on top of 20 ms), `--threads T` (default: all cores),
//! `--library` (the library's replication instead of the session: see
//! `synfony_sim::library`; uses `--seeds`, `--first-seed`, `--peers`,
//! `--secs`, `--jitter-ms`, `--no-faults`).
//! Prints each violation (a seed whose run panicked is one), then one JSON line;
//! exits with 1 if there was any violation.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use synfony_sim::{self as sim, Report, SimConfig};

struct Args {
    seeds: u64,
    first: u64,
    peers: usize,
    secs: i64,
    faults: bool,
    adversary: bool,
    library: bool,
    asymmetry_ms: i64,
    jitter_ms: i64,
    threads: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        seeds: 100,
        first: 0,
        peers: 8,
        secs: 30,
        faults: true,
        adversary: false,
        library: false,
        asymmetry_ms: 0,
        jitter_ms: 40,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value"))
                .and_then(|v| v.parse::<i64>().map_err(|e| format!("{flag} {v}: {e}")))
        };
        match flag.as_str() {
            "--seeds" => a.seeds = value()?.max(0) as u64,
            "--first-seed" => a.first = value()?.max(0) as u64,
            "--peers" => a.peers = value()?.clamp(1, 64) as usize,
            "--secs" => a.secs = value()?.max(1),
            "--asymmetry-ms" => a.asymmetry_ms = value()?.max(0),
            "--jitter-ms" => a.jitter_ms = value()?.max(0),
            "--threads" => a.threads = value()?.max(1) as usize,
            "--no-faults" => a.faults = false,
            "--adversary" => a.adversary = true,
            "--library" => a.library = true,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("simulate: {e}");
            std::process::exit(2);
        }
    };
    if args.library {
        library(&args);
        return;
    }
    let next = AtomicU64::new(args.first);
    let reports: Mutex<Vec<Report>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..args.threads {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= args.first + args.seeds {
                        break;
                    }
                    let mut cfg = SimConfig::new(seed, args.peers);
                    cfg.duration_ns = args.secs * 1_000_000_000;
                    cfg.faults = args.faults;
                    cfg.asymmetry_ns = args.asymmetry_ms * 1_000_000;
                    cfg.jitter_ns = args.jitter_ms * 1_000_000;
                    cfg.adversary = args.adversary;
                    let r =
                        std::panic::catch_unwind(|| sim::run(&cfg)).unwrap_or_else(|_| Report {
                            seed,
                            violations: vec![format!("seed {seed}: the run panicked")],
                            ..Report::default()
                        });
                    reports.lock().expect("no panics hold it").push(r);
                }
            });
        }
    });
    let mut reports = reports.into_inner().expect("no panics hold it");
    reports.sort_by_key(|r| r.seed);
    let mut offsets: Vec<f64> = Vec::new();
    let mut violations = 0usize;
    let mut misses = 0usize;
    for r in &reports {
        for v in &r.violations {
            println!("violation: {v}");
        }
        for m in &r.target_misses {
            println!("target missed: {m}");
        }
        violations += r.violations.len();
        misses += r.target_misses.len();
        offsets.extend(&r.offset_err_ns);
    }
    offsets.sort_by(f64::total_cmp);
    let max = |f: fn(&Report) -> i64| reports.iter().map(f).max().unwrap_or(0);
    let us = |ns: f64| (ns / 1e3 * 10.0).round() / 10.0;
    let ms = |ns: i64| (ns as f64 / 1e6 * 10.0).round() / 10.0;
    println!(
        "{{\"seeds\":{},\"peers\":{},\"violations\":{},\"target_misses\":{},\"offset_err_us_p50\":{},\"offset_err_us_p99\":{},\"apply_skew_us_max\":{},\"crash_stall_ms_max\":{},\"join_ms_max\":{},\"heal_converge_ms_max\":{},\"joins\":{},\"heals\":{},\"decisions\":{},\"messages\":{},\"votes\":{},\"adversary\":{},\"hostile_messages\":{},\"recover_ms_max\":{}}}",
        reports.len(),
        args.peers,
        violations,
        misses,
        us(percentile(&offsets, 0.5)),
        us(percentile(&offsets, 0.99)),
        us(max(|r| r.apply_skew_ns_max) as f64),
        ms(max(|r| r.crash_stall_ns_max).max(0)),
        ms(max(|r| r.join_ns_max)),
        ms(max(|r| r.heal_ns_max)),
        reports.iter().map(|r| r.joins).sum::<usize>(),
        reports.iter().map(|r| r.heals).sum::<usize>(),
        reports.iter().map(|r| r.decisions).sum::<u64>(),
        reports.iter().map(|r| r.messages).sum::<u64>(),
        reports.iter().map(|r| r.votes_cast).sum::<u64>(),
        args.adversary,
        reports.iter().map(|r| r.hostile_messages).sum::<u64>(),
        ms(max(|r| r.recover_ns_max)),
    );
    if violations > 0 {
        std::process::exit(1);
    }
}

/// `--library`: the library's replication over the seeds, one JSON line.
fn library(args: &Args) {
    let mut violations = 0;
    let (mut worst, mut converge, mut changes, mut messages, mut bytes) = (0, vec![], 0, 0, 0);
    for seed in args.first..args.first + args.seeds {
        let mut cfg = sim::LibrarySimConfig::new(seed, args.peers);
        cfg.duration_ns = (args.secs.max(10) + 20) * 1_000_000_000;
        cfg.jitter_ns = args.jitter_ms * 1_000_000;
        cfg.faults = args.faults;
        let r = sim::run_library(&cfg);
        for v in &r.violations {
            println!("violation: {v}");
        }
        violations += r.violations.len();
        let c = r.converge_ns.unwrap_or(0) as f64 / 1e6;
        worst = worst.max(r.converge_ns.unwrap_or(0));
        converge.push(c);
        changes += r.changes;
        messages += r.messages;
        bytes += r.bytes;
    }
    converge.sort_by(f64::total_cmp);
    println!(
        "{{\"seeds\":{},\"peers\":{},\"violations\":{violations},\"library_converge_ms_p50\":{:.1},\"library_converge_ms_max\":{:.1},\"changes\":{changes},\"messages\":{messages},\"bytes\":{bytes}}}",
        args.seeds,
        args.peers,
        percentile(&converge, 0.5),
        worst as f64 / 1e6,
    );
    if violations > 0 {
        std::process::exit(1);
    }
}
