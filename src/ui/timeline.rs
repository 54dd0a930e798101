//! The shared timeline: a waveform overview of the song computed from the
//! stems, the playhead, and click-or-drag to seek.

use egui::{Align2, Color32, FontId, Pos2, Sense, Stroke, Ui, Vec2};

use crate::audio::{CHANNELS, StemAudio};

/// Overview columns per second of song.
pub const BUCKETS_PER_SEC: usize = 20;

/// One stem's waveform overview: the peak (linear, 0..) of each
/// 1/[`BUCKETS_PER_SEC`] s of the song.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overview {
    pub peaks: Vec<f32>,
}

impl Overview {
    /// The overview of one stem.
    pub fn of(stem: &StemAudio) -> Overview {
        let frames_per_bucket = (stem.rate_hz as usize / BUCKETS_PER_SEC).max(1);
        let peaks = stem
            .samples
            .chunks(frames_per_bucket * CHANNELS)
            .map(|c| c.iter().fold(0f32, |m, &v| m.max(v.abs())))
            .collect();
        Overview { peaks }
    }

    /// The overview of a file streamed from disk, walked through once
    /// without keeping its samples, and what the walk found.
    pub fn of_file(
        path: &std::path::Path,
    ) -> Result<(crate::audio::decode::Probe, Overview), crate::audio::DecodeError> {
        let (probe, peaks) = crate::audio::decode::peaks_file(
            path,
            crate::audio::ENGINE_RATE_HZ,
            BUCKETS_PER_SEC as u32,
        )?;
        Ok((probe, Overview { peaks }))
    }

    /// The song's overview: per column, the stems' peaks added as powers
    /// (what the mix would show at unity gains, without the phase luck).
    pub fn mix<'a>(stems: impl IntoIterator<Item = &'a Overview>) -> Overview {
        let mut sum: Vec<f32> = Vec::new();
        for o in stems {
            if sum.len() < o.peaks.len() {
                sum.resize(o.peaks.len(), 0.0);
            }
            for (s, p) in sum.iter_mut().zip(&o.peaks) {
                *s += p * p;
            }
        }
        Overview {
            peaks: sum.into_iter().map(|s| s.sqrt().min(1.0)).collect(),
        }
    }

    /// The largest peak between `from_secs` and `to_secs` of the song (0
    /// past the end of the stems).
    fn peak_between(&self, from_secs: f64, to_secs: f64) -> f32 {
        let n = self.peaks.len();
        let bucket = |secs: f64| (secs.max(0.0) * BUCKETS_PER_SEC as f64) as usize;
        let a = bucket(from_secs);
        if a >= n {
            return 0.0;
        }
        let b = bucket(to_secs).clamp(a + 1, n);
        self.peaks[a..b].iter().fold(0f32, |m, &v| m.max(v))
    }
}

/// `m:ss.t`, for positions and durations.
pub fn format_secs(secs: f64) -> String {
    let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
    let tenths = (secs * 10.0).floor() as u64;
    format!("{}:{:02}.{}", tenths / 600, (tenths / 10) % 60, tenths % 10)
}

/// What the user asked of the timeline this frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimelineAction {
    /// Released a click or a drag here: seek.
    Seek { position_secs: f64 },
}

/// Draws the timeline over the full width: overview, played part, the
/// playhead at `position_secs`, a ghost at `pending_secs` (a seek voted but
/// not yet applied) and under the pointer while dragging.
pub fn timeline_ui(
    ui: &mut Ui,
    overview: &Overview,
    position_secs: f64,
    duration_secs: f64,
    pending_secs: Option<f64>,
) -> Option<TimelineAction> {
    let size = Vec2::new(ui.available_width(), 56.0);
    let (rect, response) = ui.allocate_exact_size(size, Sense::click_and_drag());
    let response = response.on_hover_text("click or drag to seek");
    let duration = duration_secs.max(1e-3);
    let x_of = |secs: f64| rect.left() + (secs / duration).clamp(0.0, 1.0) as f32 * rect.width();
    let secs_at = |x: f32| ((x - rect.left()) / rect.width()).clamp(0.0, 1.0) as f64 * duration;
    let pointer = response.interact_pointer_pos();
    let mut action = None;
    if (response.clicked() || response.drag_stopped())
        && let Some(p) = pointer
    {
        action = Some(TimelineAction::Seek {
            position_secs: secs_at(p.x),
        });
    }
    if !ui.is_rect_visible(rect) {
        return action;
    }
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 3.0, Color32::from_gray(22));
    let played_x = x_of(position_secs);
    let mid = rect.center().y;
    let half = rect.height() / 2.0 - 4.0;
    let columns = rect.width().max(1.0) as usize;
    for c in 0..columns {
        // By time, so the overview lines up with the playhead even when the
        // stems here are shorter than the session's song.
        let from = c as f64 / columns as f64 * duration;
        let to = (c + 1) as f64 / columns as f64 * duration;
        let h = overview.peak_between(from, to).sqrt() * half;
        let x = rect.left() + c as f32 + 0.5;
        let color = if x <= played_x {
            Color32::from_rgb(90, 170, 230)
        } else {
            Color32::from_gray(110)
        };
        painter.line_segment(
            [
                Pos2::new(x, mid - h.max(0.5)),
                Pos2::new(x, mid + h.max(0.5)),
            ],
            Stroke::new(1.0, color),
        );
    }
    let ghost = if response.dragged() {
        pointer.map(|p| secs_at(p.x))
    } else {
        pending_secs
    };
    if let Some(g) = ghost {
        let x = x_of(g);
        painter.line_segment(
            [Pos2::new(x, rect.top()), Pos2::new(x, rect.bottom())],
            Stroke::new(1.5, Color32::from_rgba_unmultiplied(255, 255, 255, 110)),
        );
        painter.text(
            Pos2::new(x + 4.0, rect.top() + 2.0),
            Align2::LEFT_TOP,
            format_secs(g),
            FontId::monospace(10.0),
            Color32::from_gray(200),
        );
    }
    painter.line_segment(
        [
            Pos2::new(played_x, rect.top()),
            Pos2::new(played_x, rect.bottom()),
        ],
        Stroke::new(2.0, Color32::WHITE),
    );
    if let Some(h) = response.hover_pos()
        && !response.dragged()
    {
        painter.text(
            Pos2::new(h.x, rect.bottom() - 2.0),
            Align2::CENTER_BOTTOM,
            format_secs(secs_at(h.x)),
            FontId::monospace(10.0),
            Color32::from_gray(170),
        );
    }
    action
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stem's overview has one column per 1/20 s holding that span's
    /// peak; the mix adds powers and stays within full scale.
    #[test]
    fn overview_columns_hold_peaks() {
        let rate = 48_000;
        let mut samples = vec![0.0f32; rate * CHANNELS]; // 1 s
        samples[2400 * CHANNELS + 1] = -0.5; // in column 1, right channel
        let stem = StemAudio::from_interleaved("s", rate as u32, samples);
        let o = Overview::of(&stem);
        assert_eq!(o.peaks.len(), BUCKETS_PER_SEC);
        assert_eq!(o.peaks[1], 0.5);
        assert_eq!(o.peaks[0], 0.0);
        let m = Overview::mix([&o, &o]);
        assert!((m.peaks[1] - 0.5f32.hypot(0.5)).abs() < 1e-6);
        let loud = Overview {
            peaks: vec![1.0; 3],
        };
        assert_eq!(Overview::mix([&loud, &loud, &o]).peaks[..3], [1.0; 3]);
        assert_eq!(o.peak_between(0.0, 1.0), 0.5);
        assert_eq!(o.peak_between(0.0, 0.05), 0.0, "column 0 only");
        assert_eq!(o.peak_between(0.05, 0.1), 0.5, "column 1 only");
        assert_eq!(o.peak_between(2.0, 3.0), 0.0, "past the end");
        assert_eq!(Overview::default().peak_between(0.0, 1.0), 0.0);
    }

    #[test]
    fn times_format_as_minutes_seconds_tenths() {
        assert_eq!(format_secs(0.0), "0:00.0");
        assert_eq!(format_secs(83.47), "1:23.4");
        assert_eq!(format_secs(-3.0), "0:00.0");
        assert_eq!(format_secs(f64::NAN), "0:00.0");
    }
}
