//! The transport: play/pause, the playhead and the song's length, the
//! keyboard shortcuts, and the clickable overview to seek (`timeline.rs`).
//! Every one of them is a vote.

use egui::{Color32, Key, RichText, Ui, Vec2};

use crate::audio::ENGINE_RATE_HZ;
use crate::protocol::Event;

use super::app::{Action, MixerApp};
use super::panels;
use super::timeline::{Overview, TimelineAction, format_secs, timeline_ui};

/// Arrow keys seek this far (Shift: a fifth of it).
pub const SEEK_STEP_SECS: f64 = 5.0;

/// The vote to move the playhead to `position_secs` (clamped at 0).
pub fn seek_event(position_secs: f64) -> Event {
    Event::Seek {
        position_ns: (position_secs.max(0.0) * 1e9).round() as i64,
    }
}

impl MixerApp {
    pub fn duration_secs(&self) -> f64 {
        if let Some(s) = &self.view.state {
            return s.duration_ns() as f64 / 1e9;
        }
        let frames = self.stems.iter().map(|s| s.file.frames()).max();
        frames.unwrap_or(0) as f64 / f64::from(ENGINE_RATE_HZ)
    }

    /// The playhead: what the engine is playing now.
    ///
    /// Within the song: past its end the session plays on in silence.
    pub fn position_secs(&self) -> f64 {
        let Some(p) = self.peer() else { return 0.0 };
        let frames = p
            .stats
            .pos_frames
            .load(std::sync::atomic::Ordering::Relaxed);
        (frames as f64 / f64::from(ENGINE_RATE_HZ)).clamp(0.0, self.duration_secs())
    }

    /// Whether the session's latest decision is to play.
    pub fn decided_playing(&self) -> bool {
        self.view.state.as_ref().is_some_and(|s| s.timeline.playing)
    }

    pub(super) fn shortcuts(&mut self, ui: &mut Ui, actions: &mut Vec<Action>) {
        if ui.ctx().text_edit_focused() {
            return;
        }
        let (next, prev) = ui.input_mut(|i| {
            (
                i.consume_key(egui::Modifiers::NONE, Key::N),
                i.consume_key(egui::Modifiers::NONE, Key::P),
            )
        });
        if next {
            actions.push(Action::Vote(Event::Next));
        }
        if prev {
            actions.push(Action::Vote(Event::Prev));
        }
        let (space, left, right, home, help, shift) = ui.input_mut(|i| {
            (
                i.consume_key(egui::Modifiers::NONE, Key::Space),
                i.key_pressed(Key::ArrowLeft),
                i.key_pressed(Key::ArrowRight),
                i.consume_key(egui::Modifiers::NONE, Key::Home),
                i.consume_key(egui::Modifiers::NONE, Key::F1)
                    || i.consume_key(egui::Modifiers::SHIFT, Key::Questionmark)
                    || i.consume_key(egui::Modifiers::NONE, Key::Questionmark),
                i.modifiers.shift,
            )
        });
        if space {
            actions.push(Action::Vote(self.toggle_event()));
        }
        if left || right {
            let step = if shift {
                SEEK_STEP_SECS / 5.0
            } else {
                SEEK_STEP_SECS
            };
            let from = self.seek_base_secs();
            let to = if right { from + step } else { from - step };
            actions.push(Action::Vote(seek_event(
                to.clamp(0.0, self.duration_secs()),
            )));
        }
        if home {
            actions.push(Action::Vote(seek_event(0.0)));
        }
        if help {
            actions.push(Action::ToggleHelp);
        }
        if self.show_help && ui.input(|i| i.key_pressed(Key::Escape)) {
            self.show_help = false;
        }
    }

    /// Where a relative seek starts: a pending seek's target (so repeated
    /// presses add up), else the playhead.
    fn seek_base_secs(&self) -> f64 {
        match self.view.pending_like(&seek_event(0.0)) {
            Some(p) => match p.event {
                Event::Seek { position_ns } => position_ns as f64 / 1e9,
                _ => self.position_secs(),
            },
            None => self.position_secs(),
        }
    }

    /// Play if the session is paused (or a pause is pending), else pause.
    fn toggle_event(&self) -> Event {
        let pending = self.view.pending_like(&Event::Play).map(|p| p.event);
        let playing = match pending {
            Some(e) => e == Event::Play,
            None => self.decided_playing(),
        };
        if playing { Event::Pause } else { Event::Play }
    }

    pub(super) fn transport_ui(&mut self, ui: &mut Ui, actions: &mut Vec<Action>) {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            let pending_toggle = self.view.pending_like(&Event::Play).map(|p| p.event);
            let playing = self.decided_playing();
            let label = if playing { "Pause" } else { "Play" };
            let mut button =
                egui::Button::new(RichText::new(label).size(18.0)).min_size(Vec2::new(96.0, 32.0));
            if pending_toggle.is_some() {
                button = button.stroke(egui::Stroke::new(1.5, Color32::from_rgb(230, 170, 60)));
            }
            let r = ui
                .add(button)
                .on_hover_text("play/pause for everyone (Space)");
            if r.clicked() {
                actions.push(Action::Vote(self.toggle_event()));
            }
            if ui
                .button("Prev")
                .on_hover_text("the song before, for everyone (P)")
                .clicked()
            {
                actions.push(Action::Vote(Event::Prev));
            }
            let queued = self
                .view
                .state
                .as_ref()
                .is_some_and(|s| !s.queue.is_empty());
            if ui
                .add_enabled(queued, egui::Button::new("Next"))
                .on_hover_text("the set list's next song, for everyone (N)")
                .clicked()
            {
                actions.push(Action::Vote(Event::Next));
            }
            if let Some(state) = &self.view.state {
                ui.label(
                    RichText::new(super::library::song_name(&self.view, &state.song)).strong(),
                );
                if let Some(next) = state.queue.first() {
                    ui.label(
                        RichText::new(format!(
                            "next: {}",
                            super::library::song_name(&self.view, next)
                        ))
                        .weak(),
                    );
                }
            }
            ui.add_space(8.0);
            ui.label(
                RichText::new(format!(
                    "{} / {}",
                    format_secs(self.position_secs()),
                    format_secs(self.duration_secs())
                ))
                .monospace()
                .size(18.0),
            );
            if let Some(p) = &pending_toggle {
                ui.label(
                    RichText::new(format!(
                        "{} voted, waiting for its round",
                        panels::event_text(p, &[])
                    ))
                    .color(Color32::from_rgb(230, 170, 60)),
                );
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui
                    .button("?")
                    .on_hover_text("keyboard shortcuts (F1)")
                    .clicked()
                {
                    actions.push(Action::ToggleHelp);
                }
                ui.toggle_value(&mut self.settings.hide_votes, "hide votes");
                ui.toggle_value(&mut self.settings.hide_peers, "hide peers");
                panels::sync_badge(ui, &self.view, self.is_launching());
            });
        });
        let pending_seek = self
            .view
            .pending_like(&seek_event(0.0))
            .and_then(|p| match p.event {
                Event::Seek { position_ns } => Some(position_ns as f64 / 1e9),
                _ => None,
            });
        // The overview is of this peer's start stems: another song has none yet.
        let start_song = (self.view.state.as_ref())
            .is_none_or(|s| s.song.version == crate::protocol::START_VERSION);
        let none = Overview::default();
        let overview = if start_song { &self.overview } else { &none };
        if let Some(TimelineAction::Seek { position_secs }) = timeline_ui(
            ui,
            overview,
            self.position_secs(),
            self.duration_secs(),
            pending_seek,
        ) {
            actions.push(Action::Vote(seek_event(position_secs)));
        }
        ui.add_space(4.0);
    }
}
