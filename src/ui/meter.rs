//! The peak meter: the engine publishes each block's peak (an atomic); the
//! window adds the ballistics a meter needs to be read — fast attack, slow
//! release, a peak hold, and a clip light that stays on until clicked.

use egui::{Color32, Pos2, Rect, Response, Sense, Stroke, Ui, Vec2};

/// The meter's range, in dBFS.
pub const FLOOR_DB: f32 = -60.0;
pub const TOP_DB: f32 = 6.0;
/// How fast the bar falls after a peak.
pub const RELEASE_DB_PER_SEC: f32 = 20.0;
/// How long the peak-hold mark waits before it falls too.
pub const HOLD_SECS: f32 = 1.5;
/// A sample at or above full scale lights the clip light.
pub const CLIP_LEVEL: f32 = 1.0;

/// One meter's ballistics, advanced once a frame. Pure: time comes in as
/// `dt_secs`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ballistics {
    pub level_db: f32,
    pub hold_db: f32,
    hold_left_secs: f32,
    pub clipped: bool,
}

impl Default for Ballistics {
    fn default() -> Self {
        Ballistics {
            level_db: FLOOR_DB,
            hold_db: FLOOR_DB,
            hold_left_secs: 0.0,
            clipped: false,
        }
    }
}

/// A linear peak in dBFS, floored at the meter's bottom.
pub fn peak_db(peak: f32) -> f32 {
    if peak.is_nan() || peak <= 0.0 {
        FLOOR_DB
    } else {
        (20.0 * peak.log10()).max(FLOOR_DB)
    }
}

impl Ballistics {
    /// Takes the latest block peak (linear) after `dt_secs` more time.
    pub fn update(&mut self, peak: f32, dt_secs: f32) {
        let dt = dt_secs.clamp(0.0, 1.0);
        let db = peak_db(peak);
        let fallen = self.level_db - RELEASE_DB_PER_SEC * dt;
        // Attack at once, release slowly.
        self.level_db = db.max(fallen).max(FLOOR_DB);
        if db >= self.hold_db {
            self.hold_db = db;
            self.hold_left_secs = HOLD_SECS;
        } else if self.hold_left_secs > 0.0 {
            self.hold_left_secs -= dt;
        } else {
            self.hold_db = (self.hold_db - RELEASE_DB_PER_SEC * dt).max(self.level_db);
        }
        if peak >= CLIP_LEVEL {
            self.clipped = true;
        }
    }

    pub fn reset_clip(&mut self) {
        self.clipped = false;
    }
}

/// Where `db` sits on a meter of height 1 (0 = floor, 1 = top).
fn fraction(db: f32) -> f32 {
    ((db - FLOOR_DB) / (TOP_DB - FLOOR_DB)).clamp(0.0, 1.0)
}

/// Draws the meter bar and its clip light; a click on the light (or the
/// bar) resets the clip. Returns the bar's response.
pub fn meter_ui(ui: &mut Ui, m: &mut Ballistics, size: Vec2) -> Response {
    let (rect, response) = ui.allocate_exact_size(size, Sense::click());
    let clip = Rect::from_min_size(rect.min, Vec2::new(rect.width(), 8.0));
    let bar = Rect::from_min_max(Pos2::new(rect.left(), clip.bottom() + 3.0), rect.max);
    if response.clicked() {
        m.reset_clip();
    }
    if ui.is_rect_visible(rect) {
        let painter = ui.painter();
        painter.rect_filled(
            clip,
            2.0,
            if m.clipped {
                Color32::from_rgb(235, 40, 40)
            } else {
                Color32::from_gray(50)
            },
        );
        painter.rect_filled(bar, 1.0, Color32::from_gray(24));
        let y_of = |db: f32| bar.bottom() - fraction(db) * bar.height();
        // Green up to −12 dBFS, yellow to −3, red above.
        for (from, to, color) in [
            (FLOOR_DB, -12.0, Color32::from_rgb(60, 200, 90)),
            (-12.0, -3.0, Color32::from_rgb(220, 200, 50)),
            (-3.0, TOP_DB, Color32::from_rgb(235, 60, 40)),
        ] {
            if m.level_db > from {
                let top = y_of(m.level_db.min(to));
                painter.rect_filled(
                    Rect::from_min_max(
                        Pos2::new(bar.left(), top),
                        Pos2::new(bar.right(), y_of(from)),
                    ),
                    0.0,
                    color,
                );
            }
        }
        if m.hold_db > FLOOR_DB {
            let y = y_of(m.hold_db);
            painter.line_segment(
                [Pos2::new(bar.left(), y), Pos2::new(bar.right(), y)],
                Stroke::new(2.0, Color32::WHITE),
            );
        }
        let zero = y_of(0.0);
        painter.line_segment(
            [Pos2::new(bar.left(), zero), Pos2::new(bar.right(), zero)],
            Stroke::new(1.0, Color32::from_gray(120)),
        );
    }
    response.on_hover_text("peak meter; click to reset the clip light")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peak shows at once; then the bar falls at the release rate, the
    /// hold mark waits `HOLD_SECS` before falling, and a full-scale sample
    /// latches the clip light until it is reset.
    #[test]
    fn attack_is_instant_release_is_slow_and_clip_latches() {
        let mut m = Ballistics::default();
        m.update(0.5, 0.016);
        let peak = peak_db(0.5);
        assert!((m.level_db - peak).abs() < 1e-4);
        assert!(!m.clipped);
        m.update(0.0, 0.5);
        assert!((m.level_db - (peak - RELEASE_DB_PER_SEC * 0.5)).abs() < 1e-3);
        assert_eq!(m.hold_db, peak, "the hold waits");
        m.update(0.0, 1.1);
        m.update(0.0, 0.5);
        assert!(m.hold_db < peak, "then falls");
        assert!(m.hold_db >= m.level_db, "never below the bar");
        m.update(1.0, 0.016);
        assert!(m.clipped);
        for _ in 0..100 {
            m.update(0.1, 0.1);
        }
        assert!(m.clipped, "the clip light stays on");
        m.reset_clip();
        assert!(!m.clipped);
    }

    /// Silence, NaN and negative peaks read as the floor.
    #[test]
    fn odd_peaks_read_as_the_floor() {
        assert_eq!(peak_db(0.0), FLOOR_DB);
        assert_eq!(peak_db(f32::NAN), FLOOR_DB);
        assert_eq!(peak_db(-1.0), FLOOR_DB);
        assert!((peak_db(1.0)).abs() < 1e-6);
    }
}
