//! The engine as a backend drives it: the one place that maps a device's play
//! instant to this peer's clock, renders, and queues the `--report` line.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{OutputConfig, OutputStats, ReportLine};
use crate::audio::CHANNELS;
use crate::audio::engine::{BlockInfo, Engine};
use crate::host_clock::{LocalClock, monotonic_ns};
use crate::protocol::{ENGINE_RATE_HZ, frames_to_ns};

/// The engine as a backend drives it: renders a buffer for a play instant and
/// reports it. Real-time safe.
pub struct Player {
    engine: Engine,
    clock: LocalClock,
    latency_offset_ns: i64,
    report: Option<rtrb::Producer<ReportLine>>,
    pub(super) stats: Arc<OutputStats>,
}

impl Player {
    /// The engine, driven with `cfg`'s clock and latency offset, reporting
    /// into `report` (the ring a report writer drains) and `stats`.
    pub fn new(
        engine: Engine,
        cfg: &OutputConfig,
        report: Option<rtrb::Producer<ReportLine>>,
        stats: Arc<OutputStats>,
    ) -> Player {
        Player {
            engine,
            clock: cfg.clock,
            latency_offset_ns: cfg.latency_offset_ns,
            report,
            stats,
        }
    }

    /// Renders interleaved stereo into `out`, whose first frame leaves the
    /// device at monotonic instant `play_mono_ns`, and queues its report line.
    pub fn play_block(&mut self, out: &mut [f32], play_mono_ns: i64) -> BlockInfo {
        let heard_local_ns = self.clock.local_at(play_mono_ns + self.latency_offset_ns);
        let block_ns = frames_to_ns((out.len() / CHANNELS) as i64, ENGINE_RATE_HZ);
        let ahead_ns = play_mono_ns + self.latency_offset_ns + block_ns - monotonic_ns();
        self.stats
            .render_ahead_ns
            .fetch_max(ahead_ns, Ordering::Relaxed);
        let info = self.engine.render(out, heard_local_ns);
        self.stats.blocks.fetch_add(1, Ordering::Relaxed);
        if let Some(report) = &mut self.report {
            let line = ReportLine {
                mono_ns: play_mono_ns,
                pos_frames: info.pos_frames,
                playing: info.playing,
                song: info.song,
                session_ns: info.session_ns,
                jump: info.jump,
            };
            if report.push(line).is_err() {
                self.stats.report_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        info
    }
}
