//! The channel fader: a vertical control in dB, laid out as a console fader
//! is (−∞ at the bottom, a quarter of the travel within ±6 dB of unity), with
//! the gestures a musician expects:
//! - drag (Shift: five times finer);
//! - double-click the value to type one (`-6`, `-6 dB`, `-inf`);
//! - Ctrl-, Cmd- or Alt-click: back to 0 dB;
//! - wheel over it: ±1 dB a notch; arrow keys while it has focus: ±0.5 dB
//!   (Shift: ±0.1 dB).

use egui::{Align2, Color32, FontId, Key, Pos2, Rect, Response, Sense, Stroke, Ui, Vec2};

use crate::protocol::MAX_GAIN_DB;

/// Fader positions (0 = bottom, 1 = top) and the gains they stand for;
/// straight lines between them. Below the lowest point the fader is −∞.
const SCALE: [(f32, f32); 10] = [
    (0.02, -80.0),
    (0.08, -60.0),
    (0.20, -40.0),
    (0.30, -30.0),
    (0.42, -20.0),
    (0.54, -12.0),
    (0.66, -6.0),
    (0.78, 0.0),
    (0.90, 6.0),
    (1.00, MAX_GAIN_DB),
];

/// Marks drawn beside the fader.
const TICKS_DB: [f32; 8] = [12.0, 6.0, 0.0, -6.0, -12.0, -20.0, -40.0, -60.0];

/// The fader position of `db` (−∞ and anything below the scale is 0).
pub fn db_to_position(db: f32) -> f32 {
    if db.is_nan() || db < SCALE[0].1 {
        return 0.0;
    }
    for w in SCALE.windows(2) {
        let ((p0, d0), (p1, d1)) = (w[0], w[1]);
        if db <= d1 {
            return p0 + (p1 - p0) * (db - d0) / (d1 - d0);
        }
    }
    1.0
}

/// The gain at fader position `position` (clamped into 0..=1).
pub fn position_to_db(position: f32) -> f32 {
    let p = if position.is_nan() {
        0.0
    } else {
        position.clamp(0.0, 1.0)
    };
    if p < SCALE[0].0 {
        return f32::NEG_INFINITY;
    }
    for w in SCALE.windows(2) {
        let ((p0, d0), (p1, d1)) = (w[0], w[1]);
        if p <= p1 {
            return d0 + (d1 - d0) * (p - p0) / (p1 - p0);
        }
    }
    MAX_GAIN_DB
}

/// `db` moved by `step_db`: from −∞ a step up lands on the scale's bottom,
/// a step below the bottom is −∞, and nothing goes past the top.
pub fn step_db(db: f32, step_db: f32) -> f32 {
    let bottom = SCALE[0].1;
    if db < bottom || db.is_nan() {
        return if step_db > 0.0 {
            bottom
        } else {
            f32::NEG_INFINITY
        };
    }
    let next = db + step_db;
    if next < bottom {
        f32::NEG_INFINITY
    } else {
        // Steps land on whole multiples of themselves (−5.5 → −5.0, not −5.2).
        let q = step_db.abs();
        // `+ 0.0` makes −0 dB plain 0 dB (votes compare bitwise).
        ((next / q).round() * q).min(MAX_GAIN_DB) + 0.0
    }
}

/// A gain as typed: `-6`, `-6dB`, `+3 db`, `-inf`, `-∞`. Louder than the
/// maximum is clamped; `None` for anything else.
pub fn parse_db(text: &str) -> Option<f32> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix("db").unwrap_or(&t).trim();
    if matches!(t, "-inf" | "-infinity" | "-∞" | "−∞" | "−inf") {
        return Some(f32::NEG_INFINITY);
    }
    let v: f32 = t.replace('−', "-").parse().ok()?;
    v.is_finite().then(|| v.min(MAX_GAIN_DB))
}

/// A gain as shown: `-6.0`, `+3.5`, `0.0`, `-∞`.
pub fn format_db(db: f32) -> String {
    if db == f32::NEG_INFINITY || db.is_nan() {
        "-∞".to_string()
    } else if db > 0.05 {
        format!("+{db:.1}")
    } else {
        format!("{:.1}", if db.abs() < 0.05 { 0.0 } else { db })
    }
}

/// What the user did to a fader this frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaderChange {
    pub db: f32,
    /// Still being dragged (more changes will follow).
    pub dragging: bool,
}

/// Draws a fader of `size` showing `db`, named `label` (for screen readers
/// and tests); returns a change the user asked for.
pub fn fader_ui(ui: &mut Ui, label: &str, db: f32, size: Vec2) -> (Response, Option<FaderChange>) {
    let (rect, response) = ui.allocate_exact_size(size, Sense::click_and_drag());
    response
        .widget_info(|| egui::WidgetInfo::slider(true, f64::from(db), format!("{label} fader")));
    let track = Rect::from_center_size(rect.center(), Vec2::new(6.0, rect.height() - 16.0));
    let y_of = |p: f32| track.bottom() - p * track.height();
    let mut change = None;
    let modifiers = ui.input(|i| i.modifiers);
    // Wheel notches, one step each (the smoothed delta would spread one
    // notch over many frames).
    let notches: f32 = if response.hovered() {
        ui.input(|i| {
            i.events
                .iter()
                .filter_map(|e| match e {
                    egui::Event::MouseWheel { delta, .. } if delta.y != 0.0 => {
                        Some(delta.y.signum())
                    }
                    _ => None,
                })
                .sum()
        })
    } else {
        0.0
    };
    // While dragging, the fader's own position (the dB it shows is rounded
    // through the scale, and would pin a slow drag at −∞).
    let drag_id = response.id.with("drag_position");

    if response.clicked() && (modifiers.command || modifiers.alt) {
        change = Some(FaderChange {
            db: 0.0,
            dragging: false,
        });
    } else if response.dragged() {
        // Relative, so grabbing the cap never makes it jump.
        let scale = if modifiers.shift { 0.2 } else { 1.0 };
        let dp = -response.drag_delta().y / track.height() * scale;
        let from = ui
            .data(|d| d.get_temp::<f32>(drag_id))
            .unwrap_or_else(|| db_to_position(db));
        if dp != 0.0 {
            let p = (from + dp).clamp(0.0, 1.0);
            ui.data_mut(|d| d.insert_temp(drag_id, p));
            change = Some(FaderChange {
                db: position_to_db(p),
                dragging: true,
            });
        }
    } else if response.drag_stopped() {
        ui.data_mut(|d| d.remove::<f32>(drag_id));
        change = Some(FaderChange {
            db,
            dragging: false,
        });
    }
    if response.clicked() || response.drag_started() {
        response.request_focus();
    }
    if notches != 0.0 {
        let mut stepped = db;
        for _ in 0..notches.abs() as usize {
            stepped = step_db(stepped, notches.signum());
        }
        change = Some(FaderChange {
            db: stepped,
            dragging: false,
        });
    }
    if response.has_focus() {
        // Up and down step the fader instead of moving the focus.
        ui.memory_mut(|m| {
            m.set_focus_lock_filter(
                response.id,
                egui::EventFilter {
                    vertical_arrows: true,
                    ..Default::default()
                },
            )
        });
        let fine = if modifiers.shift { 0.1 } else { 0.5 };
        let (up, down) = ui.input_mut(|i| {
            (
                i.consume_key(egui::Modifiers::NONE, Key::ArrowUp)
                    | i.consume_key(egui::Modifiers::SHIFT, Key::ArrowUp),
                i.consume_key(egui::Modifiers::NONE, Key::ArrowDown)
                    | i.consume_key(egui::Modifiers::SHIFT, Key::ArrowDown),
            )
        });
        if up || down {
            change = Some(FaderChange {
                db: step_db(db, if up { fine } else { -fine }),
                dragging: false,
            });
        }
    }

    if ui.is_rect_visible(rect) {
        let visuals = ui.style().interact(&response);
        let painter = ui.painter();
        for t in TICKS_DB {
            let y = y_of(db_to_position(t));
            let color = ui.visuals().weak_text_color();
            painter.line_segment(
                [
                    Pos2::new(rect.left() + 2.0, y),
                    Pos2::new(track.left() - 3.0, y),
                ],
                Stroke::new(1.0, color),
            );
            if t == 0.0 {
                painter.line_segment(
                    [
                        Pos2::new(track.right() + 3.0, y),
                        Pos2::new(rect.right() - 2.0, y),
                    ],
                    Stroke::new(1.0, color),
                );
            }
        }
        painter.rect_filled(track, 3.0, ui.visuals().extreme_bg_color);
        let cap_y = y_of(db_to_position(db));
        let cap = Rect::from_center_size(
            Pos2::new(rect.center().x, cap_y),
            Vec2::new(rect.width() - 6.0, 14.0),
        );
        painter.rect_filled(cap, 3.0, visuals.bg_fill);
        painter.rect_stroke(cap, 3.0, visuals.fg_stroke, egui::StrokeKind::Inside);
        painter.line_segment(
            [
                Pos2::new(cap.left() + 3.0, cap_y),
                Pos2::new(cap.right() - 3.0, cap_y),
            ],
            Stroke::new(2.0, visuals.fg_stroke.color),
        );
        if response.has_focus() {
            painter.rect_stroke(
                rect,
                2.0,
                ui.visuals().selection.stroke,
                egui::StrokeKind::Inside,
            );
        }
    }
    (response, change)
}

/// The value under a fader: click shows it; double-click types a new one.
/// Returns a typed value once Enter is pressed.
pub fn db_readout_ui(ui: &mut Ui, id_salt: impl egui::AsIdSalt, db: f32) -> Option<f32> {
    let id = ui.make_persistent_id(id_salt).with("edit");
    let editing: Option<String> = ui.data_mut(|d| d.get_temp(id));
    if let Some(mut text) = editing {
        let r = ui.add(
            egui::TextEdit::singleline(&mut text)
                .id(id.with("text"))
                .hint_text(format_db(db))
                .desired_width(ui.available_width())
                .align(Align2::CENTER_CENTER),
        );
        let done = ui.input(|i| i.key_pressed(Key::Enter));
        let cancel = ui.input(|i| i.key_pressed(Key::Escape));
        if !r.has_focus() && !r.gained_focus() && (r.lost_focus() || done || cancel) {
            ui.data_mut(|d| d.remove::<String>(id));
            if done {
                return parse_db(&text);
            }
            return None;
        }
        ui.data_mut(|d| d.insert_temp(id, text));
        return None;
    }
    let label = format!("{} dB", format_db(db));
    let (rect, r) = ui.allocate_exact_size(Vec2::new(ui.available_width(), 18.0), Sense::click());
    r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, &label));
    ui.painter().text(
        rect.center(),
        Align2::CENTER_CENTER,
        label,
        FontId::monospace(11.0),
        ui.visuals().text_color(),
    );
    if r.double_clicked() {
        // Empty, with the value as a hint: typing replaces it.
        ui.data_mut(|d| d.insert_temp(id, String::new()));
        ui.memory_mut(|m| m.request_focus(id.with("text")));
    }
    r.on_hover_text("double-click to type a gain (e.g. -6, -inf)");
    None
}

/// The colour of a gain readout: louder than unity is warm.
pub fn db_color(db: f32) -> Color32 {
    if db > 0.05 {
        Color32::from_rgb(230, 170, 60)
    } else {
        Color32::GRAY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scale round-trips, is monotonic, and keeps most of its travel near
    /// unity (12 dB around 0 take a quarter of it).
    #[test]
    fn scale_round_trips_and_is_fine_near_unity() {
        for i in 0..=1000 {
            let p = i as f32 / 1000.0;
            let db = position_to_db(p);
            if db.is_finite() {
                assert!((db_to_position(db) - p).abs() < 1e-4, "{p} → {db}");
            } else {
                assert!(p < SCALE[0].0);
            }
            assert!(position_to_db(p) <= position_to_db(p + 0.001));
        }
        assert_eq!(position_to_db(0.0), f32::NEG_INFINITY);
        assert_eq!(db_to_position(f32::NEG_INFINITY), 0.0);
        assert_eq!(position_to_db(1.0), MAX_GAIN_DB);
        assert!((db_to_position(0.0) - 0.78).abs() < 1e-6);
        assert!(db_to_position(6.0) - db_to_position(-6.0) > 0.239);
    }

    /// Typed gains: numbers with or without a unit, minus infinity in its
    /// spellings; nonsense and NaN are refused; too loud is clamped.
    #[test]
    fn typed_gains_parse() {
        let check = |t: &str, want: Option<f32>| assert_eq!(parse_db(t), want, "{t:?}");
        check("-6", Some(-6.0));
        check(" -6 dB ", Some(-6.0));
        check("+3db", Some(3.0));
        check("−4.5", Some(-4.5));
        check("-inf", Some(f32::NEG_INFINITY));
        check("-∞", Some(f32::NEG_INFINITY));
        check("40", Some(MAX_GAIN_DB));
        check("NaN", None);
        check("inf", None);
        check("loud", None);
        check("", None);
    }

    /// Steps: from −∞ up to the bottom of the scale, below it back to −∞,
    /// never past the top, and onto whole steps.
    #[test]
    fn steps_stay_on_the_scale() {
        assert_eq!(step_db(f32::NEG_INFINITY, 1.0), -80.0);
        assert_eq!(step_db(f32::NEG_INFINITY, -1.0), f32::NEG_INFINITY);
        assert_eq!(step_db(-80.0, -0.5), f32::NEG_INFINITY);
        assert_eq!(step_db(11.8, 1.0), MAX_GAIN_DB);
        assert_eq!(step_db(-5.2, 0.5), -4.5);
        assert_eq!(step_db(0.0, -0.1), -0.1);
        assert_eq!(step_db(-90.0, 0.5), -80.0, "from below the scale, up");
        assert_eq!(step_db(-0.5, 0.5).to_bits(), 0f32.to_bits(), "no -0");
    }

    /// Shown gains: signed, one decimal, no "-0.0", and −∞.
    #[test]
    fn gains_format() {
        assert_eq!(format_db(-6.0), "-6.0");
        assert_eq!(format_db(3.25), "+3.2");
        assert_eq!(format_db(-0.01), "0.0");
        assert_eq!(format_db(f32::NEG_INFINITY), "-∞");
    }
}
