//! The machine's clocks, for the I/O shell (never for the sans-IO core, which
//! is handed `now` as an input).
//!
//! - [`monotonic_ns`]: the real `CLOCK_MONOTONIC`, shared by every process on
//!   the machine. `--report` lines use it, so two peers' reports compare
//!   directly.
//! - [`LocalClock`]: this peer's own notion of time. Normally the monotonic
//!   clock itself; with the test-only `--clock-offset-ms` and
//!   `--clock-drift-ppm` it runs off it, as a second machine's clock would, so
//!   one machine can behave like several. The protocol and the engine use only
//!   this clock.

/// `CLOCK_MONOTONIC` now, in nanoseconds. A vDSO read: no allocation, no
/// lock, no system call, so the audio callback may call it.
pub fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists
    // on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    // time_t and c_long are i64 on the 64-bit Linux targets synfony builds for.
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// A clock that reads `mono + offset + (mono − origin) × drift`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalClock {
    offset_ns: i64,
    /// Rate error as a fraction (1e-6 = 1 ppm fast).
    drift: f64,
    /// The monotonic instant from which drift accumulates.
    origin_mono_ns: i64,
}

/// The largest offset and drift the test options accept (a day; 1%).
pub const MAX_CLOCK_OFFSET_MS: f64 = 86_400_000.0;
pub const MAX_CLOCK_DRIFT_PPM: f64 = 10_000.0;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ClockError {
    #[error("clock offset {0} ms is not a number within ±{MAX_CLOCK_OFFSET_MS} ms")]
    Offset(f64),
    #[error("clock drift {0} ppm is not a number within ±{MAX_CLOCK_DRIFT_PPM} ppm")]
    Drift(f64),
}

impl LocalClock {
    /// The real monotonic clock.
    pub const REAL: LocalClock = LocalClock {
        offset_ns: 0,
        drift: 0.0,
        origin_mono_ns: 0,
    };

    /// A clock `offset_ms` ahead of the monotonic clock now, running
    /// `drift_ppm` fast from `origin_mono_ns` on.
    pub fn skewed(
        offset_ms: f64,
        drift_ppm: f64,
        origin_mono_ns: i64,
    ) -> Result<LocalClock, ClockError> {
        if !offset_ms.is_finite() || offset_ms.abs() > MAX_CLOCK_OFFSET_MS {
            return Err(ClockError::Offset(offset_ms));
        }
        if !drift_ppm.is_finite() || drift_ppm.abs() > MAX_CLOCK_DRIFT_PPM {
            return Err(ClockError::Drift(drift_ppm));
        }
        Ok(LocalClock {
            offset_ns: (offset_ms * 1e6).round() as i64,
            drift: drift_ppm * 1e-6,
            origin_mono_ns,
        })
    }

    /// This clock's reading now.
    pub fn now_ns(&self) -> i64 {
        self.local_at(monotonic_ns())
    }

    /// This clock's reading at monotonic instant `mono_ns`.
    pub fn local_at(&self, mono_ns: i64) -> i64 {
        let since = (mono_ns - self.origin_mono_ns) as f64;
        mono_ns + self.offset_ns + (since * self.drift).round() as i64
    }

    /// The monotonic instant at which this clock reads `local_ns` (the inverse
    /// of [`LocalClock::local_at`], to within a nanosecond).
    pub fn mono_at(&self, local_ns: i64) -> i64 {
        let since_local = (local_ns - self.offset_ns - self.origin_mono_ns) as f64;
        self.origin_mono_ns + (since_local / (1.0 + self.drift)).round() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_is_monotonic() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn real_clock_is_identity() {
        assert_eq!(LocalClock::REAL.local_at(123_456_789), 123_456_789);
        assert_eq!(LocalClock::REAL.mono_at(123_456_789), 123_456_789);
    }

    #[test]
    fn skewed_clock_offsets_drifts_and_inverts() {
        let origin = 1_000_000_000;
        let c = LocalClock::skewed(250.0, 100.0, origin).unwrap();
        assert_eq!(c.local_at(origin), origin + 250_000_000);
        // 10 s later it has gained 1 ms.
        let later = origin + 10_000_000_000;
        assert_eq!(c.local_at(later), later + 250_000_000 + 1_000_000);
        for t in [origin - 5_000_000_000, origin, later, later * 7] {
            assert!((c.mono_at(c.local_at(t)) - t).abs() <= 1, "at {t}");
        }
    }

    #[test]
    fn absurd_skews_are_refused() {
        assert!(LocalClock::skewed(f64::NAN, 0.0, 0).is_err());
        assert!(LocalClock::skewed(0.0, f64::INFINITY, 0).is_err());
        assert!(LocalClock::skewed(1e12, 0.0, 0).is_err());
        assert!(LocalClock::skewed(0.0, 1e6, 0).is_err());
    }
}
