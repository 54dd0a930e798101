//! How well one link's clock estimate tracks the truth under jittered delays.
//!
//! `cargo run --release --example clock_accuracy -- [SEEDS] [INTERVAL_MS] [WINDOW] [JITTER_MS] [FIFO]`
//!
//! For each seed: a remote clock offset by up to ±10 s and drifting up to
//! ±1000 ppm relative to ours, exchanges every INTERVAL_MS (100), each one-way
//! delay 20 ms + uniform [0, JITTER_MS] (40), independently per message; with
//! FIFO = 1 a message never overtakes the one before it, as on a TCP link. Prints
//! the offset error percentiles after N exchanges, and how the true rate error
//! compares with the estimate's `rate_uncertainty` (p50, p90 of their ratio),
//! then one JSON line. This is the floor the session clock sits on.

use synfony::protocol::LinkClock;

/// SplitMix64: a seeded, dependency-free generator for reproducible runs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let seeds = arg(1, 200);
    let interval_ms = arg(2, 100) as i64;
    let window = arg(3, synfony::protocol::clock::WINDOW_SAMPLES as u64) as usize;
    let jitter_ns = arg(4, 40) as f64 * 1e6;
    let fifo = arg(5, 0) != 0;
    let checkpoints = [10usize, 30, 100, 300, 1000, 3000];
    let mut errors_us: Vec<Vec<f64>> = vec![Vec::new(); checkpoints.len()];
    let mut rate_ratio: Vec<Vec<f64>> = vec![Vec::new(); checkpoints.len()];
    let mut offset_ratio: Vec<Vec<f64>> = vec![Vec::new(); checkpoints.len()];
    for seed in 0..seeds {
        let mut rng = Rng(seed);
        let offset_ns = rng.uniform(-10e9, 10e9);
        let rate = rng.uniform(-1000e-6, 1000e-6);
        let remote = |local: i64| (offset_ns + (1.0 + rate) * local as f64).round() as i64;
        let local_of = |r: i64| ((r as f64 - offset_ns) / (1.0 + rate)).round() as i64;
        let mut clock = LinkClock::with_window(window);
        let start = 5_000_000_000_000i64;
        // Local arrival instants of the last message each way (FIFO clamping).
        let (mut last_there, mut last_back) = (i64::MIN, i64::MIN);
        for i in 0..*checkpoints.last().unwrap() {
            let t1 = start + i as i64 * interval_ms * 1_000_000;
            let mut there = t1 + rng.uniform(20e6, 20e6 + jitter_ns) as i64;
            if fifo {
                there = there.max(last_there);
                last_there = there;
            }
            let t2 = remote(there);
            let t3 = t2 + 1_000_000;
            let mut t4 = local_of(t3) + rng.uniform(20e6, 20e6 + jitter_ns) as i64;
            if fifo {
                t4 = t4.max(last_back);
                last_back = t4;
            }
            let _ = clock.add_exchange(t1, t2, t3, t4);
            if let Some(k) = checkpoints.iter().position(|&c| c == i + 1) {
                let est = clock.estimate().expect("both directions sampled");
                let truth = offset_ns + rate * t4 as f64;
                errors_us[k].push((est.offset_ns_at(t4) - truth).abs() / 1e3);
                rate_ratio[k].push((est.rate - rate).abs() / est.rate_uncertainty);
                offset_ratio[k].push(
                    (est.offset_ns_at(t4) - truth).abs() / est.offset_uncertainty_ns.max(1.0),
                );
            }
        }
    }
    let mut json = Vec::new();
    for (k, n) in checkpoints.iter().enumerate() {
        let e = &mut errors_us[k];
        e.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(e, 0.5), percentile(e, 0.99));
        let r = &mut rate_ratio[k];
        r.sort_by(f64::total_cmp);
        let o = &mut offset_ratio[k];
        o.sort_by(f64::total_cmp);
        println!(
            "after {n:5} exchanges ({:5.1} s): |offset error| p50 {p50:9.1} µs  p99 {p99:9.1} µs  \
             rate error/uncertainty p50 {:.2} p90 {:.2}  offset error/uncertainty p50 {:.2} p90 {:.2}",
            (*n as i64 * interval_ms) as f64 / 1e3,
            percentile(r, 0.5),
            percentile(r, 0.9),
            percentile(o, 0.5),
            percentile(o, 0.9),
        );
        json.push(format!("\"p50_us_{n}\":{p50:.1},\"p99_us_{n}\":{p99:.1}"));
    }
    println!("{{\"seeds\":{seeds},{}}}", json.join(","));
}
