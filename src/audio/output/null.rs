//! The null device: a virtual device paced by `CLOCK_MONOTONIC`, handing each
//! block to its sink when it plays.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use super::sink::Sink;
use super::{
    Context, MAX_DEVICE_DRIFT_PPM, Output, OutputError, PERIOD_FRAMES_RANGE, RENDER_LEAD_NS,
    Refused, Worker,
};
use crate::audio::{CHANNELS, ENGINE_RATE_HZ};
use crate::host_clock::monotonic_ns;

/// Where the null device's blocks go when they play.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NullSink {
    Discard,
    Wav(PathBuf),
    Raw(PathBuf),
}

/// A virtual device paced by the monotonic clock.
#[derive(Debug)]
pub struct NullDevice {
    period_frames: usize,
    /// Device nanoseconds per frame (drift included).
    ns_per_frame: f64,
    sink: NullSink,
}

impl NullDevice {
    pub fn new(
        period_frames: usize,
        device_drift_ppm: f64,
        sink: NullSink,
    ) -> Result<NullDevice, OutputError> {
        if !PERIOD_FRAMES_RANGE.contains(&period_frames) {
            return Err(OutputError::Period(period_frames));
        }
        if !device_drift_ppm.is_finite() || device_drift_ppm.abs() > MAX_DEVICE_DRIFT_PPM {
            return Err(OutputError::Drift(device_drift_ppm));
        }
        Ok(NullDevice {
            period_frames,
            ns_per_frame: 1e9 / (ENGINE_RATE_HZ as f64 * (1.0 + device_drift_ppm * 1e-6)),
            sink,
        })
    }

    /// The monotonic instant block `k` plays, for a device started at `t0`.
    pub fn play_at(&self, t0_mono_ns: i64, k: u64) -> i64 {
        t0_mono_ns + (k as f64 * self.period_frames as f64 * self.ns_per_frame).round() as i64
    }
}

/// Sleeps until monotonic instant `t_ns` (absolute, so sleeps never add up;
/// a signal that interrupts the sleep does not end it early).
fn sleep_until(t_ns: i64) {
    let ts = libc::timespec {
        tv_sec: t_ns.div_euclid(1_000_000_000) as libc::time_t,
        tv_nsec: t_ns.rem_euclid(1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec; a null remainder is allowed with TIMER_ABSTIME.
    // clock_nanosleep returns its error code (EINTR) rather than setting errno.
    while unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    } == libc::EINTR
    {}
}

impl Output for NullDevice {
    fn describe(&self) -> String {
        match &self.sink {
            NullSink::Discard => "null".into(),
            NullSink::Wav(p) => format!("wav:{}", p.display()),
            NullSink::Raw(p) => format!("raw:{}", p.display()),
        }
    }

    fn start(self: Box<Self>, ctx: Context) -> Result<Worker, Refused> {
        let Context {
            mut player,
            stop,
            errors,
        } = ctx;
        let stats = player.stats.clone();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let worker = Worker::spawn("synfony-null-device", move || {
            // Wake within a few µs of the asked instant, not the default
            // 50 µs timer slack.
            // SAFETY: PR_SET_TIMERSLACK takes a plain integer.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
            // Started once the sink is open, or once it waits for a FIFO's
            // reader (which may come much later, or never).
            let mut ready = Some(ready_tx);
            let mut started = |r: Result<(), OutputError>| {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(r.map_err(Refused::from));
                }
            };
            let mut sink = match Sink::open(&self.sink, &stop, || started(Ok(()))) {
                Ok(Some(s)) => {
                    started(Ok(()));
                    s
                }
                Ok(None) => return,
                Err(e) => {
                    started(Err(e));
                    return;
                }
            };
            let mut block = vec![0.0f32; self.period_frames * CHANNELS];
            let period_ns = self.period_frames as f64 * self.ns_per_frame;
            let t0 = monotonic_ns() + RENDER_LEAD_NS;
            let mut k: u64 = 0;
            let fail = |sink: &mut Sink, e| {
                // A broken sink (a FIFO's reader gone, a full disk) stops the
                // sink, not the music.
                let _ = errors.send(e);
                *sink = Sink::Discard;
            };
            while !stop.load(Ordering::Relaxed) {
                let t_k = self.play_at(t0, k);
                sleep_until(t_k - RENDER_LEAD_NS);
                let now = monotonic_ns();
                if now > t_k {
                    // The thread stalled past a block's play instant: the
                    // device played silence meanwhile. Skip to the next block
                    // that can still be rendered in time.
                    let behind = ((now - t0) as f64 / period_ns).ceil() as u64;
                    let next = behind.max(k + 1);
                    stats.xruns.fetch_add(next - k, Ordering::Relaxed);
                    let skipped = (next - k) as usize * self.period_frames;
                    if let Err(e) = sink.skipped(skipped) {
                        fail(&mut sink, e);
                    }
                    k = next;
                    continue;
                }
                player.play_block(&mut block, t_k);
                sleep_until(t_k);
                if let Err(e) = sink.write(&block) {
                    fail(&mut sink, e);
                }
                k += 1;
            }
            if let Err(e) = sink.finish() {
                let _ = errors.send(e);
            }
        })?;
        worker.started(ready_rx, "the null device")
    }
}
