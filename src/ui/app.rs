//! The mixer window: channel strips, transport and timeline, the vote log,
//! peers and session panels. Drawing only emits [`Action`]s; they are applied
//! after the frame, through the peer's non-blocking command channel.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, TryRecvError};

use egui::{Color32, Key, RichText, Ui, Vec2};
use serde::{Deserialize, Serialize};

use crate::audio::ENGINE_RATE_HZ;
use crate::protocol::{Channel, Event};
use crate::runtime::control::Command;
use crate::runtime::net::check_join_spec;
use crate::runtime::peer::{PeerHandle, SendError};
use crate::runtime::room::StemSource;

use super::browser::FileBrowser;
use super::fader::{FaderChange, db_readout_ui, fader_ui};
use super::launch::{Launched, LoadedStem, PeerTemplate, spawn_launch};
use super::meter::{Ballistics, meter_ui};
use super::model::{Pending, SessionView};
use super::panels;
use super::timeline::{Overview, TimelineAction, format_secs, timeline_ui};

/// Arrow keys seek this far (Shift: a fifth of it).
pub const SEEK_STEP_SECS: f64 = 5.0;
/// A fader the user moved shows the user's value this long before it
/// follows the session's decisions again.
pub const HOLD_LOCAL_SECS: f64 = 1.0;
const STRIP_WIDTH: f32 = 70.0;
/// Frames a second while meters or the playhead move.
const FRAME_RATE_HZ: f64 = 60.0;
/// Faders take the strip's height, within these bounds.
const FADER_HEIGHT: std::ops::RangeInclusive<f32> = 160.0..=420.0;

/// The settings kept between runs (eframe storage), apart from the runtime.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The last address joined from the session panel.
    pub join_address: String,
    /// Stems added from the window, offered again in the session panel.
    pub recent_stems: Vec<PathBuf>,
    pub hide_peers: bool,
    pub hide_votes: bool,
    /// Stems soloed here, by name.
    pub solo: Vec<String>,
}

/// What a frame asked for; applied after it.
#[must_use]
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Vote(Event),
    Solo {
        stem: usize,
        on: bool,
    },
    /// Leave this session and join the one at this address.
    Join(String),
    /// Leave and start a session of our own.
    Leave,
    AddStems(Vec<PathBuf>),
    RemoveStem(usize),
    ToggleHelp,
}

/// A channel strip's state in the window (not the session's).
#[derive(Clone, Copy, Debug, Default)]
pub struct StripUi {
    pub meter: Ballistics,
    /// The gain the user set and when, shown until decisions catch up.
    pub held: Option<(f32, f64)>,
    pub dragging: bool,
}

pub struct MixerApp {
    pub settings: Settings,
    template: PeerTemplate,
    /// The stems asked for (files or folders), in order.
    stem_paths: Vec<PathBuf>,
    pub peer: Option<PeerHandle>,
    launching: Option<mpsc::Receiver<Launched>>,
    relaunch_wanted: bool,
    /// When the next frame is due while something moves.
    next_frame: Option<std::time::Instant>,
    pub stems: Vec<LoadedStem>,
    overview: Overview,
    pub view: SessionView,
    pub strips: Vec<StripUi>,
    pub master: StripUi,
    last_time: Option<f64>,
    pub show_help: bool,
    join_text: String,
    passphrase_text: String,
    browser: Option<FileBrowser>,
    wake: Arc<dyn Fn() + Send + Sync>,
    pub frame_stats: Option<super::stats::FrameStats>,
}

impl MixerApp {
    /// The window over a peer that is started at once (in the background)
    /// with `template` and the stems at `stem_paths`.
    pub fn new(
        ctx: &egui::Context,
        settings: Settings,
        template: PeerTemplate,
        stem_paths: Vec<PathBuf>,
    ) -> MixerApp {
        let mut app = MixerApp::idle(ctx, settings, template, stem_paths);
        app.relaunch();
        app
    }

    /// The window over a peer the caller provides (tests use a detached one).
    pub fn with_peer(
        ctx: &egui::Context,
        settings: Settings,
        template: PeerTemplate,
        peer: PeerHandle,
        stems: Vec<LoadedStem>,
    ) -> MixerApp {
        let mut app = MixerApp::idle(ctx, settings, template, vec![]);
        app.stem_paths = stems.iter().map(|s| s.path.clone()).collect();
        app.peer = Some(peer);
        app.set_stems(stems);
        app
    }

    fn idle(
        ctx: &egui::Context,
        settings: Settings,
        template: PeerTemplate,
        stem_paths: Vec<PathBuf>,
    ) -> MixerApp {
        let ctx = ctx.clone();
        MixerApp {
            join_text: settings.join_address.clone(),
            passphrase_text: template.passphrase.clone().unwrap_or_default(),
            settings,
            template,
            stem_paths,
            peer: None,
            launching: None,
            relaunch_wanted: false,
            next_frame: None,
            stems: vec![],
            overview: Overview::default(),
            view: SessionView::default(),
            strips: vec![],
            master: StripUi::default(),
            last_time: None,
            show_help: false,
            browser: None,
            wake: Arc::new(move || ctx.request_repaint()),
            frame_stats: None,
        }
    }

    fn set_stems(&mut self, stems: Vec<LoadedStem>) {
        self.overview = Overview::mix(stems.iter().map(|s| &s.overview));
        self.strips = vec![StripUi::default(); stems.len()];
        self.stems = stems;
    }

    /// Stops the peer (if any) and starts it again with the current
    /// template and stems, in the background.
    ///
    /// One launch at a time: asked again while one runs, it runs once more
    /// after it (with whatever was asked meanwhile).
    fn relaunch(&mut self) {
        if self.launching.is_some() {
            self.relaunch_wanted = true;
            return;
        }
        self.relaunch_wanted = false;
        // What the old peer still has to say (a refused join, its goodbye).
        self.poll_peer(self.last_time.unwrap_or(0.0));
        let wake = self.wake.clone();
        self.launching = Some(spawn_launch(
            self.template.clone(),
            self.stem_paths.clone(),
            self.stems.clone(),
            self.peer.take(),
            move || wake(),
        ));
        self.view.pending.clear();
    }

    pub fn is_launching(&self) -> bool {
        self.launching.is_some()
    }

    /// Takes what the peer and the launcher reported since the last frame.
    pub fn poll(&mut self, now_secs: f64) {
        if let Some(rx) = &self.launching {
            match rx.try_recv() {
                Ok(l) => {
                    self.launching = None;
                    self.view = SessionView {
                        errors: std::mem::take(&mut self.view.errors),
                        ..SessionView::default()
                    };
                    for e in l.errors {
                        self.view.push_error(e);
                    }
                    self.template = l.template;
                    // Only what loaded: a bad file is not tried again.
                    self.stem_paths = l.stems.iter().map(|s| s.path.clone()).collect();
                    let stems = &l.stems;
                    self.settings
                        .recent_stems
                        .retain(|r| r.is_dir() || stems.iter().any(|s| s.path == *r));
                    self.set_stems(l.stems);
                    self.peer = l.handle;
                    self.restore_solo();
                    if self.relaunch_wanted {
                        self.relaunch();
                    }
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    self.launching = None;
                    self.view.push_error("the peer could not be started".into());
                }
            }
        }
        self.poll_peer(now_secs);
        self.view.expire(now_secs);
    }

    fn poll_peer(&mut self, now_secs: f64) {
        let Some(peer) = &self.peer else { return };
        // Bounded per frame, so a flood of events cannot stall drawing.
        for _ in 0..512 {
            let Some(e) = peer.try_event() else { break };
            self.view.apply(e, now_secs);
        }
        if let Some(me) = &self.view.me {
            // Restarts keep the port others know this peer by.
            if self.template.listen.port() == 0 {
                self.template.listen.set_port(me.listen.port());
            }
        }
        if peer.is_stopped() && !self.view.stopped {
            self.view.stopped = true;
            self.view
                .push_error("the peer stopped; join or leave to start it again".into());
        }
    }

    /// Before a restart that should stay in this session (stems changed):
    /// join it again through the peers linked now.
    fn stay_in_session(&mut self) {
        if !self.template.joins.is_empty() {
            return;
        }
        if let Some(s) = &self.view.status {
            self.template.joins = s.peers.iter().map(|p| p.info.addr.to_string()).collect();
        }
    }

    fn restore_solo(&mut self) {
        let solo: Vec<usize> = (self.stems.iter().enumerate())
            .filter(|(_, s)| self.settings.solo.contains(&s.audio.name))
            .map(|(i, _)| i)
            .collect();
        for stem in solo {
            self.send(Command::Solo { stem, on: true });
        }
    }

    fn send(&mut self, command: Command) {
        let Some(peer) = &self.peer else {
            self.view
                .push_error("no peer is running (see the errors above)".into());
            return;
        };
        match peer.send(command) {
            Ok(()) => {}
            Err(SendError::Busy) => self.view.push_error(SendError::Busy.to_string()),
            Err(SendError::Stopped) => {
                if !self.is_launching() {
                    self.view.push_error(SendError::Stopped.to_string());
                }
            }
        }
    }

    /// How many strips: every local stem, and every channel the session has.
    fn channel_count(&self) -> usize {
        let session = self.view.state.as_ref().map_or(0, |s| s.channels.len());
        self.stems.len().max(session).max(self.view.song.len())
    }

    fn stem_name(&self, i: usize) -> String {
        if let Some(s) = self.view.song.get(i) {
            return s.name.clone();
        }
        self.stems
            .get(i)
            .map_or_else(|| format!("stem {}", i + 1), |s| s.audio.name.clone())
    }

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
            },
            None => match self.stems.get(i) {
                Some(_) if buffering => Source::Buffering,
                Some(_) => Source::Local,
                None => Source::Missing,
            },
        }
    }

    pub fn duration_secs(&self) -> f64 {
        if let Some(s) = &self.view.state {
            return s.duration_ns as f64 / 1e9;
        }
        let frames = self.stems.iter().map(|s| s.audio.frames()).max();
        frames.unwrap_or(0) as f64 / f64::from(ENGINE_RATE_HZ)
    }

    /// The playhead: what the engine is playing now.
    ///
    /// Within the song: past its end the session plays on in silence.
    pub fn position_secs(&self) -> f64 {
        let Some(p) = &self.peer else { return 0.0 };
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

    /// The whole window, drawn into `ui` (eframe's root, or a test harness).
    pub fn show(&mut self, ui: &mut Ui) {
        let started = std::time::Instant::now();
        let now = ui.input(|i| i.time);
        let dt = self.last_time.map_or(0.0, |t| (now - t) as f32);
        self.last_time = Some(now);
        self.poll(now);
        self.update_meters(dt);

        let mut actions = Vec::new();
        self.shortcuts(ui, &mut actions);
        self.dropped_files(ui, &mut actions);

        egui::Panel::top("transport").show(ui, |ui| self.transport_ui(ui, &mut actions));
        if !self.settings.hide_votes {
            egui::Panel::bottom("votes")
                .resizable(true)
                .default_size(130.0)
                .show(ui, |ui| {
                    panels::votes_ui(ui, &self.view, now, &self.stem_names())
                });
        }
        egui::Panel::right("side")
            .resizable(true)
            .default_size(380.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    self.session_ui(ui, &mut actions);
                    if !self.settings.hide_peers {
                        ui.separator();
                        panels::peers_ui(ui, &self.view, now);
                    }
                });
            });
        egui::CentralPanel::default().show(ui, |ui| self.strips_ui(ui, now, &mut actions));
        if self.show_help {
            panels::help_ui(ui.ctx(), &mut self.show_help);
        }
        if let Some(b) = &mut self.browser {
            match b.show(ui.ctx()) {
                super::browser::Outcome::Open => {}
                super::browser::Outcome::Closed => self.browser = None,
                super::browser::Outcome::Picked(paths) => {
                    self.browser = None;
                    actions.push(Action::AddStems(paths));
                }
            }
        }

        for a in actions {
            self.apply(a);
        }
        let busy = self.view.status.as_ref().is_some_and(|s| s.playing)
            || !self.view.pending.is_empty()
            || self
                .strips
                .iter()
                .chain([&self.master])
                .any(|s| s.meter.level_db > super::meter::FLOOR_DB);
        if busy {
            // Meters and the playhead move: 60 frames a second, on a cadence
            // (the wait overlaps the painting of this frame), not "16 ms
            // after this one", which would add the painting to every frame.
            let period = std::time::Duration::from_secs_f64(1.0 / FRAME_RATE_HZ);
            let now = std::time::Instant::now();
            // Early (an event woke this frame before its time): the frame
            // due stays due. Late (painting took longer than a period): the
            // next frame at once, and the cadence goes on from there.
            let slack = std::time::Duration::from_millis(2);
            let next = match self.next_frame {
                Some(t) if t > now + slack => t,
                Some(t) if t + period >= now => t + period,
                _ => now,
            };
            self.next_frame = Some(next);
            ui.ctx().request_repaint_after(next - now);
        } else {
            self.next_frame = None;
        }
        if let Some(stats) = &mut self.frame_stats {
            stats.frame(now, started.elapsed());
        }
    }

    fn stem_names(&self) -> Vec<String> {
        (0..self.channel_count())
            .map(|i| self.stem_name(i))
            .collect()
    }

    fn update_meters(&mut self, dt: f32) {
        let Some(peer) = &self.peer else { return };
        for (i, strip) in self.strips.iter_mut().enumerate() {
            let peak = peer.meters.stems.get(i).map_or(0.0, |m| m.take_peak());
            strip.meter.update(peak, dt);
        }
        self.master.meter.update(peer.meters.master.take_peak(), dt);
    }

    fn shortcuts(&mut self, ui: &mut Ui, actions: &mut Vec<Action>) {
        if ui.ctx().text_edit_focused() {
            return;
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

    fn dropped_files(&mut self, ui: &mut Ui, actions: &mut Vec<Action>) {
        let dropped: Vec<PathBuf> = ui.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        if !dropped.is_empty() {
            actions.push(Action::AddStems(dropped));
        }
    }

    fn transport_ui(&mut self, ui: &mut Ui, actions: &mut Vec<Action>) {
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
        if let Some(TimelineAction::Seek { position_secs }) = timeline_ui(
            ui,
            &self.overview,
            self.position_secs(),
            self.duration_secs(),
            pending_seek,
        ) {
            actions.push(Action::Vote(seek_event(position_secs)));
        }
        ui.add_space(4.0);
    }

    fn strips_ui(&mut self, ui: &mut Ui, now: f64, actions: &mut Vec<Action>) {
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
                        .then(|| self.peer.as_ref().is_some_and(|p| p.solo.is_soloed(i)));
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

    fn session_ui(&mut self, ui: &mut Ui, actions: &mut Vec<Action>) {
        let out = panels::session_ui(
            ui,
            &panels::SessionPanel {
                view: &self.view,
                joined: !self.template.joins.is_empty(),
                stems: &self.stems,
                recent: &self.settings.recent_stems,
                share: self.view.me.as_ref().map(|me| me.share),
            },
            &mut self.join_text,
            &mut self.passphrase_text,
        );
        if out.open_browser {
            self.browser = Some(FileBrowser::new(
                self.stems
                    .last()
                    .and_then(|s| s.path.parent().map(|p| p.to_path_buf())),
            ));
        }
        if let Some(i) = out.dismiss_error
            && i < self.view.errors.len()
        {
            self.view.errors.remove(i);
        }
        actions.extend(out.actions);
    }

    /// Applies one action: a vote or solo through the command channel, a
    /// change of session or stems by restarting the peer in the background.
    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Vote(event) => self.send(Command::Vote(event)),
            Action::Solo { stem, on } => {
                self.send(Command::Solo { stem, on });
                if let Some(s) = self.stems.get(stem) {
                    let name = s.audio.name.clone();
                    self.settings.solo.retain(|n| *n != name);
                    if on {
                        self.settings.solo.push(name);
                    }
                }
            }
            Action::Join(addr) => {
                let addr = match check_join_spec(&addr) {
                    Ok(a) => a,
                    Err(e) => return self.view.push_error(e),
                };
                self.settings.join_address = addr.clone();
                self.template.joins = vec![addr];
                self.template.passphrase = non_empty(&self.passphrase_text);
                self.relaunch();
            }
            Action::Leave => {
                self.template.joins.clear();
                self.template.passphrase = non_empty(&self.passphrase_text);
                self.relaunch();
            }
            Action::AddStems(paths) => {
                for p in &paths {
                    self.settings.recent_stems.retain(|r| r != p);
                    self.settings.recent_stems.insert(0, p.clone());
                }
                self.settings.recent_stems.truncate(10);
                self.stem_paths.extend(paths);
                self.stay_in_session();
                self.relaunch();
            }
            Action::RemoveStem(i) => {
                if let Some(s) = self.stems.get(i) {
                    let path = s.path.clone();
                    // By file, so a stem from a folder given whole can go.
                    let others: Vec<PathBuf> = self
                        .stems
                        .iter()
                        .map(|s| s.path.clone())
                        .filter(|p| *p != path)
                        .collect();
                    self.stem_paths = others;
                    self.stay_in_session();
                    self.relaunch();
                }
            }
            Action::ToggleHelp => self.show_help = !self.show_help,
        }
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

pub fn seek_event(position_secs: f64) -> Event {
    Event::Seek {
        position_ns: (position_secs.max(0.0) * 1e9).round() as i64,
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
