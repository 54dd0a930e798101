//! Per-link clock estimation: the offset and rate of a remote peer's monotonic
//! clock relative to ours, from one-way timestamp samples.
//!
//! Each message on a link gives a one-way sample. Whatever the jitter, its value is
//! at least the link's minimum delay plus (outbound) or minus (inbound) the clock
//! offset at that instant:
//!
//! ```text
//! outbound  f = remote_received_ns − local_sent_ns  ≥ d_min + θ(local_sent_ns)
//! inbound   b = local_received_ns − remote_sent_ns  ≥ d_min − θ(local_received_ns)
//! θ(t) = θ0 + ρ·t   (remote clock − local clock; ρ the rate difference)
//! ```
//!
//! So each direction's **lower envelope** is a line. For a rate `ρ` the tightest lines
//! are `c_f(ρ) = min(f − ρ·t)` and `c_b(ρ) = min(b + ρ·t)`; their sum is concave in
//! `ρ`, and its maximum is the best fit. A golden-section search finds it. Then
//! `θ(t) = (c_f − c_b)/2 + ρ·t` and the minimum one-way delay is `(c_f + c_b)/2`.
//!
//! The one assumption is that the *minimum* delay is the same both ways. A
//! constant asymmetry `a` biases θ by `a/2`, as it does for every two-way method.
//! Jitter only delays the envelope, and the per-direction minimum converges as 1/N
//! with the number of samples (NOTEBOOK.md, 2026-11-21). Pure and sans-IO: times come
//! in as arguments.

use std::collections::VecDeque;

/// Samples kept per direction.
pub const WINDOW_SAMPLES: usize = 256;
/// Samples older than this (relative to the newest) are dropped.
pub const MAX_SAMPLE_AGE_NS: i64 = 60_000_000_000;
/// The largest rate difference considered, in parts per million: two crystals each
/// ±500 ppm off, with margin.
pub const MAX_RATE_PPM: f64 = 1500.0;
/// A sample implying a one-way delay outside this range is refused as absurd (a
/// hostile peer, or a restarted one reusing a link) once an estimate exists.
const MIN_PLAUSIBLE_DELAY_NS: f64 = -50_000_000.0;
const MAX_PLAUSIBLE_DELAY_NS: f64 = 30_000_000_000.0;
/// The plausibility check refits at most this often (in local time); a slightly
/// stale estimate is ample for its coarse bounds, and adding a sample stays cheap.
const PLAUSIBILITY_REFIT_NS: i64 = 1_000_000_000;

/// The factor from `mean excess / (samples · span)` to a rate error bound.
pub const RATE_UNCERTAINTY_GAIN: f64 = 20.0;

/// The factor from `mean excess / samples per direction` to a scale of the
/// offset's error like a standard deviation: the true error's median is 2.2–3.6
/// times that ratio (`examples/clock_accuracy`, from 0.2 s to 75 s, 1–40 ms of
/// jitter, FIFO or not), so four times it is exceeded roughly a third of the time.
pub const OFFSET_UNCERTAINTY_GAIN: f64 = 4.0;

/// How far below its peak (in units of the envelope's error scale, the mean
/// excess over the samples per direction) the rate search still counts a band as
/// tight; the rate is the middle of that range.
const PLATEAU_WIDTH: f64 = 2.0;

/// Which way a one-way sample travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// Ours to theirs: `f = remote_received − local_sent = delay + θ`.
    Outbound,
    /// Theirs to ours: `b = local_received − remote_sent = delay − θ`.
    Inbound,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    /// Our local time of the sample (send time for outbound, receive for inbound).
    local_ns: i64,
    /// `f` or `b` above, in ns.
    value_ns: i64,
}

impl Sample {
    /// Whether the sample is recent enough to fit, given the newest one.
    fn is_fresh(&self, newest_local_ns: i64) -> bool {
        newest_local_ns.saturating_sub(self.local_ns) <= MAX_SAMPLE_AGE_NS
    }
}

/// The fitted relation between our clock and a remote peer's clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockEstimate {
    /// The local instant the estimate is anchored at (the newest sample).
    pub anchor_local_ns: i64,
    /// Remote clock minus local clock at `anchor_local_ns`, in ns.
    pub offset_ns: f64,
    /// How much faster the remote clock runs than ours (ns per ns; 1e-6 = 1 ppm).
    pub rate: f64,
    /// The fitted minimum one-way delay, in ns (as measured across the two clocks:
    /// `d·(1+ρ)` to first order).
    pub min_delay_ns: f64,
    /// The local time the samples span. The rate is only as good as this is long:
    /// its error falls as `jitter / (samples·span)`.
    pub span_ns: i64,
    /// A scale for the rate's error (ns per ns): the mean queueing delay above the
    /// envelope over the samples per direction and the span. Calibrated so the
    /// true error is below it in about nine fits out of ten (NOTEBOOK.md,
    /// 2026-11-21 "steering"); infinite with a single instant.
    pub rate_uncertainty: f64,
    /// A scale for the offset's error (ns), like a standard deviation: the
    /// mean queueing delay above the envelope over the samples per direction,
    /// times [`OFFSET_UNCERTAINTY_GAIN`]. It weighs links against each other in
    /// the joint estimate of session time (`session/sync.rs`).
    pub offset_uncertainty_ns: f64,
}

impl ClockEstimate {
    /// Remote clock minus local clock at local time `local_ns`.
    pub fn offset_ns_at(&self, local_ns: i64) -> f64 {
        self.offset_ns + self.rate * (local_ns - self.anchor_local_ns) as f64
    }

    /// The remote clock's reading at local time `local_ns`.
    pub fn remote_ns_at(&self, local_ns: i64) -> f64 {
        local_ns as f64 + self.offset_ns_at(local_ns)
    }
}

/// Why a sample was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleRejected {
    /// The implied one-way delay is impossible (negative beyond tolerance, or huge).
    Implausible,
}

/// The clock relation to one remote peer, fed from that link's messages.
#[derive(Clone, Debug)]
pub struct LinkClock {
    window_samples: usize,
    outbound: VecDeque<Sample>,
    inbound: VecDeque<Sample>,
    estimate: Option<ClockEstimate>,
    dirty: bool,
    last_rtt_ns: Option<i64>,
    rejected: u64,
}

impl Default for LinkClock {
    fn default() -> Self {
        Self::with_window(WINDOW_SAMPLES)
    }
}

impl LinkClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// An estimator keeping `window_samples` samples per direction.
    pub fn with_window(window_samples: usize) -> Self {
        LinkClock {
            window_samples: window_samples.max(1),
            outbound: VecDeque::new(),
            inbound: VecDeque::new(),
            estimate: None,
            dirty: false,
            last_rtt_ns: None,
            rejected: 0,
        }
    }

    /// A message we sent at `local_sent_ns` arrived at the remote peer at
    /// `remote_received_ns` (its clock), as the peer's echo tells us.
    pub fn add_outbound(
        &mut self,
        local_sent_ns: i64,
        remote_received_ns: i64,
    ) -> Result<(), SampleRejected> {
        let value_ns = remote_received_ns.saturating_sub(local_sent_ns);
        self.add(Direction::Outbound, local_sent_ns, value_ns)
    }

    /// A message the remote peer sent at `remote_sent_ns` (its clock) arrived here
    /// at `local_received_ns`.
    pub fn add_inbound(
        &mut self,
        remote_sent_ns: i64,
        local_received_ns: i64,
    ) -> Result<(), SampleRejected> {
        let value_ns = local_received_ns.saturating_sub(remote_sent_ns);
        self.add(Direction::Inbound, local_received_ns, value_ns)
    }

    fn add(&mut self, dir: Direction, local_ns: i64, value_ns: i64) -> Result<(), SampleRejected> {
        self.check_plausible(dir, local_ns, value_ns as f64)?;
        let samples = match dir {
            Direction::Outbound => &mut self.outbound,
            Direction::Inbound => &mut self.inbound,
        };
        // Keep each direction sorted by local time (pongs and echoes can arrive
        // out of order), so the fit can walk a convex hull in one pass.
        let at = samples.partition_point(|s| s.local_ns <= local_ns);
        samples.insert(at, Sample { local_ns, value_ns });
        while samples.len() > self.window_samples {
            samples.pop_front();
        }
        self.dirty = true;
        Ok(())
    }

    /// A full four-timestamp exchange: also records the round-trip time
    /// `(t4 − t1) − (t3 − t2)`.
    pub fn add_exchange(
        &mut self,
        t1_local_ns: i64,
        t2_remote_ns: i64,
        t3_remote_ns: i64,
        t4_local_ns: i64,
    ) -> Result<(), SampleRejected> {
        // Whatever the clocks' offset, a round trip is between zero and the
        // longest plausible delay both ways: anything else is a lie, refused
        // whole even before an estimate exists.
        let rtt = t4_local_ns
            .saturating_sub(t1_local_ns)
            .saturating_sub(t3_remote_ns.saturating_sub(t2_remote_ns));
        let local_span = t4_local_ns.saturating_sub(t1_local_ns);
        let max_ns = 2 * MAX_PLAUSIBLE_DELAY_NS as i64;
        if !(-1_000_000..=max_ns).contains(&rtt) || !(0..=max_ns).contains(&local_span) {
            self.rejected += 1;
            return Err(SampleRejected::Implausible);
        }
        let out = self.add_outbound(t1_local_ns, t2_remote_ns);
        let inb = self.add_inbound(t3_remote_ns, t4_local_ns);
        if out.is_ok() && inb.is_ok() && rtt >= 0 {
            self.last_rtt_ns = Some(rtt);
        }
        out.and(inb)
    }

    /// The round-trip time of the last complete exchange.
    pub fn rtt_ns(&self) -> Option<i64> {
        self.last_rtt_ns
    }

    /// Samples refused as implausible so far.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Samples held (outbound, inbound).
    pub fn sample_counts(&self) -> (usize, usize) {
        (self.outbound.len(), self.inbound.len())
    }

    /// Forgets everything (the link went down and the peer may have restarted).
    pub fn reset(&mut self) {
        *self = Self::with_window(self.window_samples);
    }

    /// The current estimate; `None` until both directions have a sample.
    pub fn estimate(&mut self) -> Option<ClockEstimate> {
        if self.dirty {
            self.dirty = false;
            self.estimate = fit(&self.outbound, &self.inbound);
        }
        self.estimate
    }

    fn check_plausible(
        &mut self,
        dir: Direction,
        local_ns: i64,
        value_ns: f64,
    ) -> Result<(), SampleRejected> {
        let stale = self
            .estimate
            .is_none_or(|e| local_ns.saturating_sub(e.anchor_local_ns) > PLAUSIBILITY_REFIT_NS);
        let estimate = if stale {
            self.estimate()
        } else {
            self.estimate
        };
        let Some(est) = estimate else {
            return Ok(());
        };
        let delay_ns = match dir {
            Direction::Outbound => value_ns - est.offset_ns_at(local_ns),
            Direction::Inbound => value_ns + est.offset_ns_at(local_ns),
        };
        if (MIN_PLAUSIBLE_DELAY_NS..=MAX_PLAUSIBLE_DELAY_NS).contains(&delay_ns) {
            Ok(())
        } else {
            self.rejected += 1;
            Err(SampleRejected::Implausible)
        }
    }
}

/// The envelope fit; `None` without a sample in each direction.
fn fit(outbound: &VecDeque<Sample>, inbound: &VecDeque<Sample>) -> Option<ClockEstimate> {
    if outbound.is_empty() || inbound.is_empty() {
        return None;
    }
    let newest = outbound.iter().chain(inbound).map(|s| s.local_ns).max()?;
    // Only the lower convex hull of each direction can hold the minimum of a
    // linear function of the samples, and it has few vertices: the search below
    // costs O(hull) per step instead of O(window).
    let f = lower_hull(outbound, newest);
    let b = lower_hull(inbound, newest);
    let oldest = f
        .first()
        .map_or(0.0, |p| p.0)
        .min(b.first().map_or(0.0, |p| p.0));
    if f.is_empty() || b.is_empty() {
        return None;
    }
    let c_f = |rho: f64| {
        f.iter()
            .map(|&(t, v)| v - rho * t)
            .fold(f64::INFINITY, f64::min)
    };
    let c_b = |rho: f64| {
        b.iter()
            .map(|&(t, v)| v + rho * t)
            .fold(f64::INFINITY, f64::min)
    };
    let h = |rho: f64| c_f(rho) + c_b(rho);
    // The mean height of the samples above the envelope at rate `rho`: how much a
    // sample is typically delayed by queueing, the scale of the envelope's error.
    let fresh = |s: &&Sample| s.is_fresh(newest);
    let n = outbound.iter().filter(fresh).count() + inbound.iter().filter(fresh).count();
    let per_direction = (n as f64 / 2.0).max(1.0);
    let mean_excess = |rho: f64| {
        let (cf, cb) = (c_f(rho), c_b(rho));
        let above = |s: &Sample, sign: f64, c: f64| {
            s.value_ns as f64 - sign * rho * (s.local_ns - newest) as f64 - c
        };
        let sum: f64 = outbound
            .iter()
            .filter(fresh)
            .map(|s| above(s, 1.0, cf))
            .sum::<f64>()
            + inbound
                .iter()
                .filter(fresh)
                .map(|s| above(s, -1.0, cb))
                .sum::<f64>();
        sum / n.max(1) as f64
    };
    // The peak of `h` is decided by the few samples on the hulls, and one lucky
    // sample tilts it. The middle of the rates whose band is nearly as tight
    // (within the envelope's own error scale) is steadier: it cut the p99
    // offset error by about a third in `examples/clock_fit` (NOTEBOOK.md).
    let (lo, hi) = (-MAX_RATE_PPM * 1e-6, MAX_RATE_PPM * 1e-6);
    let peak = golden_section_max(h, lo, hi);
    let level = h(peak) - PLATEAU_WIDTH * mean_excess(peak) / per_direction;
    let rate = (bisect(|r| h(r) >= level, lo, peak) + bisect(|r| h(r) >= level, hi, peak)) / 2.0;
    let (cf, cb) = (c_f(rate), c_b(rate));
    let span_ns = -oldest as i64;
    let excess_ns = mean_excess(rate);
    let rate_uncertainty = if span_ns > 0 {
        RATE_UNCERTAINTY_GAIN * excess_ns / (per_direction * span_ns as f64)
    } else {
        f64::INFINITY
    };
    Some(ClockEstimate {
        anchor_local_ns: newest,
        offset_ns: (cf - cb) / 2.0,
        rate,
        min_delay_ns: (cf + cb) / 2.0,
        span_ns,
        rate_uncertainty,
        offset_uncertainty_ns: OFFSET_UNCERTAINTY_GAIN * excess_ns / per_direction,
    })
}

/// The lower convex hull (Andrew's monotone chain) of the fresh samples, as
/// `(time relative to newest, value)` pairs. Times relative to the anchor keep f64
/// exact to well under a nanosecond. `samples` is sorted by local time.
fn lower_hull(samples: &VecDeque<Sample>, newest: i64) -> Vec<(f64, f64)> {
    let mut hull: Vec<(f64, f64)> = Vec::new();
    for s in samples.iter().filter(|s| s.is_fresh(newest)) {
        let p = ((s.local_ns - newest) as f64, s.value_ns as f64);
        while let [.., a, b] = hull[..] {
            // Drop b unless it lies strictly below the chord from a to p.
            let cross = (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0);
            if cross <= 0.0 {
                hull.pop();
            } else {
                break;
            }
        }
        if let Some(last) = hull.last_mut()
            && last.0 == p.0
        {
            // Same instant: keep the lower value.
            last.1 = last.1.min(p.1);
            continue;
        }
        hull.push(p);
    }
    hull
}

/// The point nearest `outside` between `outside` and `inside` where `inside_at`
/// holds, given it holds at `inside` (a level-set edge of a concave function).
fn bisect(inside_at: impl Fn(f64) -> bool, mut outside: f64, mut inside: f64) -> f64 {
    if inside_at(outside) {
        return outside;
    }
    for _ in 0..40 {
        let mid = (outside + inside) / 2.0;
        if inside_at(mid) {
            inside = mid;
        } else {
            outside = mid;
        }
    }
    inside
}

/// The maximiser of a concave function on `[lo, hi]` (a point of its plateau, if
/// it has one), to ~1e-10 absolute precision.
fn golden_section_max(h: impl Fn(f64) -> f64, mut lo: f64, mut hi: f64) -> f64 {
    const INV_PHI: f64 = 0.618_033_988_749_894_9;
    let mut x1 = hi - INV_PHI * (hi - lo);
    let mut x2 = lo + INV_PHI * (hi - lo);
    let (mut h1, mut h2) = (h(x1), h(x2));
    for _ in 0..48 {
        if h1 < h2 {
            lo = x1;
            x1 = x2;
            h1 = h2;
            x2 = lo + INV_PHI * (hi - lo);
            h2 = h(x2);
        } else {
            hi = x2;
            x2 = x1;
            h2 = h1;
            x1 = hi - INV_PHI * (hi - lo);
            h1 = h(x1);
        }
    }
    (lo + hi) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A remote clock `remote = offset + (1 + rate)·local`, and a link whose delays
    /// come from `delay_ns(i, outbound)`; runs `n` heartbeat exchanges 100 ms apart
    /// and returns the estimator and the true offset at the last local instant.
    fn run(
        offset_ns: f64,
        rate: f64,
        n: usize,
        delay_ns: impl Fn(usize, bool) -> i64,
    ) -> (LinkClock, f64, i64) {
        let remote = |local: i64| (offset_ns + (1.0 + rate) * local as f64).round() as i64;
        let local_of = |remote_ns: f64| ((remote_ns - offset_ns) / (1.0 + rate)).round() as i64;
        let mut c = LinkClock::new();
        let start = 1_000_000_000_000i64;
        let mut last = start;
        for i in 0..n {
            let t1 = start + i as i64 * 100_000_000;
            let t2 = remote(t1 + delay_ns(i, true));
            let t3 = t2 + 5_000_000; // the peer answers 5 ms later
            let t4 = local_of(t3 as f64) + delay_ns(i, false);
            c.add_exchange(t1, t2, t3, t4).unwrap();
            last = t4;
        }
        (c, offset_ns + rate * last as f64, last)
    }

    /// With constant, symmetric delays the fit is exact, drift included.
    #[test]
    fn exact_with_constant_symmetric_delay() {
        for (offset, rate) in [(0.0, 0.0), (7.3e9, 0.0), (-9.9e9, 480e-6), (3e9, -950e-6)] {
            let (mut c, truth, at) = run(offset, rate, 50, |_, _| 25_000_000);
            let est = c.estimate().unwrap();
            let err = est.offset_ns_at(at) - truth;
            assert!(
                err.abs() < 2.0,
                "offset {offset} rate {rate}: error {err} ns"
            );
            assert!(
                (est.rate - rate).abs() < 1e-9,
                "rate {} vs {rate}",
                est.rate
            );
            // Delays are measured across the two clocks: d·(1+ρ) to first order.
            let d = 25e6 * (1.0 + rate);
            assert!(
                (est.min_delay_ns - d).abs() < 2.0,
                "{} vs {d}",
                est.min_delay_ns
            );
        }
    }

    /// A constant asymmetry biases the offset by half of it, and no more.
    #[test]
    fn asymmetry_biases_by_half() {
        let (mut c, truth, at) = run(
            1e9,
            200e-6,
            50,
            |_, out| if out { 30_000_000 } else { 20_000_000 },
        );
        let err = c.estimate().unwrap().offset_ns_at(at) - truth;
        let half = 5e6 * (1.0 + 200e-6);
        assert!((err - half).abs() < 2.0, "error {err}");
    }

    /// Jitter delays the envelope but the estimate converges to the truth.
    #[test]
    fn converges_under_heavy_jitter() {
        // A fixed pseudo-random sequence of delays uniform in [20, 60] ms.
        let jitter = |i: usize, out: bool| {
            let mut x = (i as u64 * 2 + u64::from(out)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            x ^= x >> 31;
            x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x ^= x >> 29;
            20_000_000 + (x % 40_000_000) as i64
        };
        let (mut c, truth, at) = run(-4.2e9, -310e-6, 250, jitter);
        let est = c.estimate().unwrap();
        let err = est.offset_ns_at(at) - truth;
        assert!(
            err.abs() < 1_000_000.0,
            "error {err} ns after 250 exchanges"
        );
        assert!((est.rate + 310e-6).abs() < 20e-6, "rate {}", est.rate);
    }

    /// No estimate until both directions are heard; absurd samples are refused
    /// once there is one, and an absurd exchange (a round trip that cannot be)
    /// always.
    #[test]
    fn needs_both_directions_and_refuses_absurd_samples() {
        let mut c = LinkClock::new();
        c.add_inbound(5_000, 1_000_000).unwrap();
        assert_eq!(c.estimate(), None);
        c.add_outbound(2_000_000, 10_000).unwrap();
        assert!(c.estimate().is_some());
        assert_eq!(
            c.add_inbound(i64::MIN, 3_000_000),
            Err(SampleRejected::Implausible)
        );
        assert_eq!(
            c.add_outbound(3_000_000, i64::MIN),
            Err(SampleRejected::Implausible)
        );
        assert_eq!(c.rejected(), 2);
        assert_eq!(c.sample_counts(), (1, 1));
        let mut fresh = LinkClock::new();
        assert_eq!(
            fresh.add_exchange(i64::MIN, i64::MAX, i64::MIN, 0),
            Err(SampleRejected::Implausible)
        );
        assert_eq!(fresh.sample_counts(), (0, 0));
    }

    /// Old samples fall out of the window, so a changed clock is followed.
    #[test]
    fn window_is_bounded() {
        let (c, _, _) = run(0.0, 0.0, 3 * WINDOW_SAMPLES, |_, _| 1_000_000);
        assert_eq!(c.sample_counts(), (WINDOW_SAMPLES, WINDOW_SAMPLES));
    }
}
