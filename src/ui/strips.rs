//! The channel strips: one per stem of the session (or local file) and the
//! master ("All"), each a name, where its audio comes from, a fader with
//! its meter, a dB readout, mute (voted) and solo (this peer only).

use egui::{Color32, RichText, Ui, Vec2};

use crate::protocol::{Channel, Event};
use crate::runtime::room::StemSource;

use super::app::{Action, MixerApp};
use super::fader::{FaderChange, db_readout_ui, fader_ui};
use super::meter::{Ballistics, meter_ui};
use super::model::Pending;

/// A fader the user moved shows the user's value this long before it
/// follows the session's decisions again.
pub const HOLD_LOCAL_SECS: f64 = 1.0;
const STRIP_WIDTH: f32 = 70.0;
/// Faders take the strip's height, within these bounds.
const FADER_HEIGHT: std::ops::RangeInclusive<f32> = 160.0..=420.0;

/// A channel strip's state in the window (not the session's).
#[derive(Clone, Copy, Debug, Default)]
pub struct StripUi {
    pub meter: Ballistics,
    /// The gain the user set and when, shown until decisions catch up.
    pub held: Option<(f32, f64)>,
    pub dragging: bool,
}

impl MixerApp {
    /// Where channel `i`'s audio comes from on this peer.
    fn source_of(&self, i: usize, buffering: bool) -> Source {
        match self.view.song.get(i) {
            Some(_) if buffering => Source::Buffering,
            Some(s) => match s.source {
                StemSource::Local => Source::Local,
                StemSource::Cached => Source::Cached,
                StemSource::Remote => Source::Remote {
                    fraction: s.chunks_have as f32 / s.chunks.max(1) as f32,
                },
                StemSource::Missing => Source::Missing,
            },
            None => match self.stems.get(i) {
                Some(_) if buffering => Source::Buffering,
                Some(_) => Source::Local,
                None => Source::Missing,
            },
        }
    }

    /// What a channel's fader shows: the user's value while it is held,
    /// else the session's.
    pub fn shown_gain_db(&self, channel: Channel, now_secs: f64) -> f32 {
        let strip = match channel {
            Channel::Master => &self.master,
            Channel::Stem(i) => match self.strips.get(usize::from(i)) {
                Some(s) => s,
                None => return self.decided_gain_db(channel),
            },
        };
        match strip.held {
            Some((db, at)) if strip.dragging || now_secs - at < HOLD_LOCAL_SECS => db,
            _ => self.decided_gain_db(channel),
        }
    }

    pub fn decided_gain_db(&self, channel: Channel) -> f32 {
        let Some(s) = &self.view.state else {
            return 0.0;
        };
        match channel {
            Channel::Master => s.master.gain_db,
            Channel::Stem(i) => s.channels.get(usize::from(i)).map_or(0.0, |c| c.gain_db),
        }
    }

    pub fn decided_muted(&self, channel: Channel) -> bool {
        let Some(s) = &self.view.state else {
            return false;
        };
        match channel {
            Channel::Master => s.master.muted,
            Channel::Stem(i) => s.channels.get(usize::from(i)).is_some_and(|c| c.muted),
        }
    }

    pub(super) fn strips_ui(&mut self, ui: &mut Ui, now: f64, actions: &mut Vec<Action>) {
        let n = self.channel_count();
        let buffering: Vec<usize> = self
            .view
            .status
            .as_ref()
            .map(|s| s.buffering.clone())
            .unwrap_or_default();
        // The strip's name, source, readout and buttons take ~150 px.
        let fader_height =
            (ui.available_height() - 160.0).clamp(*FADER_HEIGHT.start(), *FADER_HEIGHT.end());
        egui::ScrollArea::horizontal().show(ui, |ui| {
            ui.horizontal_top(|ui| {
                for i in 0..n {
                    let channel = Channel::Stem(i as u16);
                    let source = self.source_of(i, buffering.contains(&i));
                    let soloed = (i < self.stems.len().max(self.view.song.len()))
                        .then(|| self.controller.is_soloed(i));
                    let strip = StripView {
                        name: self.stem_name(i),
                        source,
                        db: self.shown_gain_db(channel, now),
                        muted: self.decided_muted(channel),
                        mute_pending: self
                            .view
                            .pending_like(&Event::Mute {
                                channel,
                                muted: true,
                            })
                            .is_some(),
                        soloed,
                    };
                    if self.strips.len() < n {
                        self.strips.resize(n, StripUi::default());
                    }
                    let out = strip_ui(ui, i, &strip, fader_height, &mut self.strips[i]);
                    self.take_strip_output(out, channel, now, actions);
                }
                ui.separator();
                let all = StripView {
                    name: "All".into(),
                    source: Source::All {
                        stems: n,
                        buffering: buffering.len(),
                    },
                    db: self.shown_gain_db(Channel::Master, now),
                    muted: self.decided_muted(Channel::Master),
                    mute_pending: self
                        .view
                        .pending_like(&Event::Mute {
                            channel: Channel::Master,
                            muted: true,
                        })
                        .is_some(),
                    soloed: None,
                };
                let mut master = self.master;
                let out = strip_ui(ui, usize::MAX, &all, fader_height, &mut master);
                self.master = master;
                self.take_strip_output(out, Channel::Master, now, actions);
            });
        });
    }

    fn take_strip_output(
        &mut self,
        out: StripOutput,
        channel: Channel,
        now: f64,
        actions: &mut Vec<Action>,
    ) {
        if let Some(change) = out.fader {
            let strip = match channel {
                Channel::Master => Some(&mut self.master),
                Channel::Stem(i) => self.strips.get_mut(usize::from(i)),
            };
            // The end of a drag repeats its last value: no second vote.
            let repeat = strip.as_ref().is_some_and(|s| {
                s.dragging
                    && !change.dragging
                    && s.held
                        .is_some_and(|(db, _)| db.to_bits() == change.db.to_bits())
            });
            if let Some(s) = strip {
                s.held = Some((change.db, now));
                s.dragging = change.dragging;
            }
            if !repeat {
                actions.push(Action::Vote(Event::Volume {
                    channel,
                    gain_db: change.db,
                }));
            }
        }
        if out.toggle_mute {
            // Toggle what will be: a pending mute vote, else the decision.
            let muted = match self.view.pending_like(&Event::Mute {
                channel,
                muted: true,
            }) {
                Some(Pending {
                    event: Event::Mute { muted, .. },
                    ..
                }) => *muted,
                _ => self.decided_muted(channel),
            };
            actions.push(Action::Vote(Event::Mute {
                channel,
                muted: !muted,
            }));
        }
        if let (Some(on), Channel::Stem(i)) = (out.solo, channel) {
            actions.push(Action::Solo {
                stem: usize::from(i),
                on,
            });
        }
    }
}

/// Where a strip's audio comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Source {
    Local,
    /// Local, but its data was missing where the playhead needed it.
    Buffering,
    /// The session has this channel; this peer has no file for it.
    Missing,
    /// Fetched before, played from this peer's cache.
    Cached,
    /// Being fetched from other peers: `fraction` of the file is here.
    Remote {
        fraction: f32,
    },
    All {
        stems: usize,
        buffering: usize,
    },
}

struct StripView {
    name: String,
    source: Source,
    db: f32,
    muted: bool,
    mute_pending: bool,
    /// `None` for the master (it has no solo).
    soloed: Option<bool>,
}

#[derive(Default)]
struct StripOutput {
    fader: Option<FaderChange>,
    toggle_mute: bool,
    solo: Option<bool>,
}

fn strip_ui(
    ui: &mut Ui,
    index: usize,
    s: &StripView,
    fader_height: f32,
    state: &mut StripUi,
) -> StripOutput {
    let mut out = StripOutput::default();
    ui.push_id(("strip", index), |ui| {
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_width(STRIP_WIDTH);
            ui.vertical_centered(|ui| {
                ui.label(RichText::new(&s.name).strong());
                let (text, fill, hint) = match s.source {
                    Source::Local => ("local", 1.0, "a file on this peer: all of it is here"),
                    Source::Buffering => (
                        "buffering",
                        0.0,
                        "its data is missing at the playhead: silence until it arrives",
                    ),
                    Source::Missing => (
                        "no file",
                        0.0,
                        "the session has this stem; this peer has no file for it",
                    ),
                    Source::Cached => (
                        "cached",
                        1.0,
                        "fetched from the session before: played from this peer's cache",
                    ),
                    Source::Remote { fraction } => (
                        "remote",
                        fraction,
                        "fetched from other peers ahead of the playhead; the bar is how much of the file is here",
                    ),
                    Source::All { stems, buffering } => (
                        "all channels",
                        if stems == 0 {
                            1.0
                        } else {
                            (stems - buffering) as f32 / stems as f32
                        },
                        "the master: drives every channel at once",
                    ),
                };
                ui.label(RichText::new(text).small().weak())
                    .on_hover_text(hint);
                ui.add(
                    egui::ProgressBar::new(fill)
                        .desired_width(STRIP_WIDTH - 8.0)
                        .desired_height(4.0),
                )
                .on_hover_text("how much of this stem's audio this peer has");
                ui.horizontal(|ui| {
                    ui.add_space(4.0);
                    let (_, change) = fader_ui(ui, &s.name, s.db, Vec2::new(36.0, fader_height));
                    if change.is_some() {
                        out.fader = change;
                    }
                    meter_ui(ui, &mut state.meter, Vec2::new(14.0, fader_height));
                });
                if let Some(db) = db_readout_ui(ui, ("db", index), s.db) {
                    out.fader = Some(FaderChange {
                        db,
                        dragging: false,
                    });
                }
                ui.horizontal(|ui| {
                    let mute = egui::Button::selectable(s.muted, RichText::new("M").strong())
                        .min_size(Vec2::new(26.0, 22.0));
                    let mute = if s.mute_pending {
                        mute.stroke(egui::Stroke::new(1.5, Color32::from_rgb(230, 170, 60)))
                    } else {
                        mute
                    };
                    if ui
                        .add(mute)
                        .on_hover_text(format!("mute {} for everyone (voted)", s.name))
                        .clicked()
                    {
                        out.toggle_mute = true;
                    }
                    if let Some(soloed) = s.soloed {
                        let solo = egui::Button::selectable(soloed, RichText::new("S").strong())
                            .min_size(Vec2::new(26.0, 22.0));
                        if ui
                            .add(solo)
                            .on_hover_text(format!("solo {} on this peer only", s.name))
                            .clicked()
                        {
                            out.solo = Some(!soloed);
                        }
                    }
                });
            });
        });
    });
    out
}
