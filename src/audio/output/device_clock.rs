//! A sound card's time, smoothed: a delay-locked loop over its callbacks, as
//! JACK runs one (F. Adriaensen, "Using a DLL to filter time", 2005).
//!
//! A callback's stated play instant is the clock read on entry plus the
//! latency the device reports, so it carries the scheduler's wake-up jitter
//! (hundreds of µs on a busy machine) and the device's latency readings'
//! steps. The frames, though, leave the device at the rate of its crystal,
//! evenly. The loop predicts each callback's instant from the last one and
//! the frames in between, and corrects the prediction and the frame period
//! by a fraction of the error: a second-order loop, critically damped, of
//! bandwidth [`BANDWIDTH_HZ`]. Jitter faster than that is filtered out; a
//! crystal's drift is followed with no steady error. A stated instant more
//! than [`RESET_NS`] from the prediction (an xrun, a restart, a suspend) is
//! taken as it is and the loop starts again. Pure and real-time safe.

/// The loop's bandwidth: jitter faster than this is smoothed away.
pub const BANDWIDTH_HZ: f64 = 0.1;
/// An error beyond this is a discontinuity, not jitter.
pub const RESET_NS: f64 = 10_000_000.0;
/// The frame period stays within this of nominal (a crystal is never
/// further off; a wild estimate is a bug, not a device).
const MAX_RATE_ERROR: f64 = 2e-3;

/// The smoothed play instant of a device's callbacks.
#[derive(Clone, Debug)]
pub struct DeviceClock {
    nominal_ns_per_frame: f64,
    ns_per_frame: f64,
    /// Where the next callback's first frame is predicted to play.
    next_ns: Option<f64>,
}

impl DeviceClock {
    pub fn new(rate_hz: u32) -> DeviceClock {
        let nominal = 1e9 / f64::from(rate_hz.max(1));
        DeviceClock {
            nominal_ns_per_frame: nominal,
            ns_per_frame: nominal,
            next_ns: None,
        }
    }

    /// A callback of `frames` frames whose first frame the device says plays
    /// at `stated_ns`: the instant it plays, smoothed.
    pub fn on_callback(&mut self, stated_ns: i64, frames: usize) -> i64 {
        let stated = stated_ns as f64;
        let smoothed = match self.next_ns {
            Some(predicted) if (stated - predicted).abs() <= RESET_NS => {
                let error = stated - predicted;
                let period_secs = frames as f64 * self.nominal_ns_per_frame / 1e9;
                let omega = 2.0 * std::f64::consts::PI * BANDWIDTH_HZ * period_secs;
                let (b, c) = (std::f64::consts::SQRT_2 * omega, omega * omega);
                if frames > 0 {
                    let max = self.nominal_ns_per_frame * MAX_RATE_ERROR;
                    self.ns_per_frame = (self.ns_per_frame + c * error / frames as f64).clamp(
                        self.nominal_ns_per_frame - max,
                        self.nominal_ns_per_frame + max,
                    );
                }
                predicted + b * error
            }
            _ => {
                self.ns_per_frame = self.nominal_ns_per_frame;
                stated
            }
        };
        self.next_ns = Some(smoothed + frames as f64 * self.ns_per_frame);
        smoothed.round() as i64
    }

    /// The device's rate relative to nominal, as the loop has learned it
    /// (1e-6 = the device plays 1 ppm slow).
    pub fn period_error(&self) -> f64 {
        self.ns_per_frame / self.nominal_ns_per_frame - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64, for a fixed jitter sequence.
    fn noise(seed: u64) -> f64 {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64
    }

    /// A device 80 ppm slow, called back every 1024 frames with up to 1 ms
    /// of wake-up lateness: after the loop settles, its instants are on the
    /// device's true line to a few µs, and it has learned the rate.
    #[test]
    fn smooths_wake_up_jitter_and_learns_the_rate() {
        let mut c = DeviceClock::new(48_000);
        let true_npf = 1e9 / 48_000.0 * (1.0 + 80e-6);
        let start = 5_000_000_000_000i64;
        let (mut sum_sq, mut n, mut worst) = (0.0, 0.0, 0.0f64);
        for k in 0..4000u64 {
            let truth = start as f64 + (k * 1024) as f64 * true_npf;
            let stated = truth + 1_000_000.0 * noise(k);
            let smoothed = c.on_callback(stated as i64, 1024);
            if k > 1000 {
                // The mean lateness (0.5 ms) stays: the loop cannot know it
                // is not latency. What varies call to call is smoothed.
                let e = smoothed as f64 - truth - 500_000.0;
                sum_sq += e * e;
                n += 1.0;
                worst = worst.max(e.abs());
            }
        }
        let rms = (sum_sq / n).sqrt();
        // The stated instants' rms is 289 µs.
        assert!(rms < 40_000.0, "rms {rms} ns");
        assert!(worst < 150_000.0, "worst {worst} ns");
        assert!(
            (c.period_error() - 80e-6).abs() < 10e-6,
            "{}",
            c.period_error()
        );
    }

    /// A jump (an xrun, a restart) is taken at once, not smoothed over.
    #[test]
    fn a_discontinuity_restarts_the_loop() {
        let mut c = DeviceClock::new(48_000);
        let npf = 1e9 / 48_000.0;
        let mut t = 1_000_000_000.0;
        for _ in 0..100 {
            c.on_callback(t as i64, 480);
            t += 480.0 * npf;
        }
        t += 50_000_000.0;
        assert_eq!(c.on_callback(t as i64, 480), t as i64);
        assert_eq!(c.period_error(), 0.0);
    }
}
