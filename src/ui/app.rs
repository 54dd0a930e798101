//! The mixer window: channel strips, transport and timeline, the vote log,
//! peers and session panels. Drawing only emits [`Action`]s; they are applied
//! after the frame, through the peer's non-blocking command channel.

use std::path::PathBuf;
use std::sync::Arc;

use egui::Ui;
use serde::{Deserialize, Serialize};

use crate::protocol::Event;
use crate::runtime::control::Command;
use crate::runtime::net::check_join_spec;
use crate::runtime::peer::AutoJoin;
use crate::runtime::peer::PeerHandle;

use super::browser::FileBrowser;
use super::controller::Controller;
use super::launch::{LoadedStem, PeerTemplate};
use super::model::SessionView;
use super::panels;
use super::solo::{self, ChannelId, StemKey};
use super::timeline::Overview;

pub use super::strips::{HOLD_LOCAL_SECS, Source, StripUi};
pub use super::transport::{SEEK_STEP_SECS, seek_event};

/// Frames a second while meters or the playhead move.
const FRAME_RATE_HZ: f64 = 60.0;

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
    /// Stems soloed here, by hash (by name until the hash is known), so a
    /// solo follows its stem to whatever channel it lands on.
    pub soloed: Vec<StemKey>,
    /// Solos saved by name by earlier versions: taken into `soloed` when
    /// the window starts.
    #[serde(rename = "solo", skip_serializing)]
    pub legacy_solo: Vec<String>,
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
    /// Add files and folders to the library (no restart).
    AddStems(Vec<PathBuf>),
    RemoveStem(usize),
    /// Vote: the library's song (by id) becomes the current one.
    LoadSong(String),
    /// Vote: append the library's song (by id) to the set list.
    QueueSong(String),
    /// Vote: remove entry N of the set list.
    Unqueue(usize),
    /// Vote: move entry `from` of the set list to position `to`.
    MoveQueued {
        from: usize,
        to: usize,
    },
    /// Take a song (by id) out of the library.
    RemoveSong(String),
    OpenBrowser,
    ToggleHelp,
}

pub struct MixerApp {
    pub settings: Settings,
    /// The peer behind the window: its (re)starts, events and commands.
    pub controller: Controller,
    /// When the next frame is due while something moves.
    next_frame: Option<std::time::Instant>,
    pub stems: Vec<LoadedStem>,
    pub(super) overview: Overview,
    pub view: SessionView,
    pub strips: Vec<StripUi>,
    pub master: StripUi,
    last_time: Option<f64>,
    pub show_help: bool,
    join_text: String,
    passphrase_text: String,
    browser: Option<FileBrowser>,
    /// The channels the remembered solos were last sent for; `None`: not
    /// yet sent to this peer.
    solo_sent_for: Option<Vec<ChannelId>>,
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
        app.controller.stem_paths = stems.iter().map(|s| s.file.path.clone()).collect();
        app.controller.peer = Some(peer);
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
        let mut settings = settings;
        let legacy = std::mem::take(&mut settings.legacy_solo);
        settings
            .soloed
            .extend(legacy.into_iter().map(StemKey::Name));
        MixerApp {
            join_text: settings.join_address.clone(),
            passphrase_text: template.passphrase.clone().unwrap_or_default(),
            settings,
            controller: Controller::new(
                template,
                stem_paths,
                Arc::new(move || ctx.request_repaint()),
            ),
            next_frame: None,
            stems: vec![],
            overview: Overview::default(),
            view: SessionView::default(),
            strips: vec![],
            master: StripUi::default(),
            last_time: None,
            show_help: false,
            browser: None,
            solo_sent_for: None,
            frame_stats: None,
        }
    }

    fn set_stems(&mut self, stems: Vec<LoadedStem>) {
        self.overview = Overview::mix(stems.iter().map(|s| &s.overview));
        self.strips = vec![StripUi::default(); stems.len()];
        self.stems = stems;
    }

    /// Restarts the peer in the background (see [`Controller::relaunch`]).
    fn relaunch(&mut self) {
        self.controller.relaunch(&mut self.view, &self.stems);
    }

    pub fn is_launching(&self) -> bool {
        self.controller.is_launching()
    }

    /// The peer's handle, if it runs.
    pub fn peer(&self) -> Option<&PeerHandle> {
        self.controller.peer.as_ref()
    }

    /// Takes what the peer and the launcher reported since the last frame:
    /// the window's one drain of the peer's events, once a frame, before
    /// [`MixerApp::show`] (eframe calls it from `App::logic`, which also
    /// runs while the window is hidden, so events never pile up; a test
    /// harness calls it before `show`). Drawing never drains.
    pub fn poll(&mut self, now_secs: f64) {
        if let Some(l) = self.controller.take_launch(&mut self.view) {
            let stems = &l.stems;
            self.settings
                .recent_stems
                .retain(|r| r.is_dir() || stems.iter().any(|s| s.file.path == *r));
            self.set_stems(l.stems);
            // A new peer: nothing is soloed on it yet.
            self.solo_sent_for = None;
            if l.again {
                self.relaunch();
            }
        }
        self.controller.poll_peer(&mut self.view, now_secs);
        self.view.expire(now_secs);
        self.restore_solo();
    }

    /// Solos the remembered stems wherever they sit now: on a new peer,
    /// and whenever the channels change (the peer reported the song's
    /// hashes, or learned a song on joining, which clears its solos). By
    /// stem, not by index: the order of the channels may differ from the
    /// order of this peer's files, and from the last run's.
    fn restore_solo(&mut self) {
        if self.controller.peer.is_none() || self.is_launching() {
            return;
        }
        let channels = self.channel_ids();
        if self.solo_sent_for.as_ref() == Some(&channels) {
            return;
        }
        for stem in solo::restore(&mut self.settings.soloed, &channels) {
            self.send(Command::Solo { stem, on: true });
        }
        self.solo_sent_for = Some(channels);
    }

    /// What the window knows of each channel that has a stem: the song's
    /// hash for it (once known), and its name.
    fn channel_ids(&self) -> Vec<ChannelId> {
        (0..self.stems.len().max(self.view.song.len()))
            .map(|i| ChannelId {
                hash: self.view.song.get(i).map(|s| s.hash),
                name: self.stem_name(i),
            })
            .collect()
    }

    fn send(&mut self, command: Command) {
        self.controller.send(&mut self.view, command);
    }

    /// How many strips: the current song's channels as this peer plays
    /// them, once known; before, every local stem and every channel the
    /// session has.
    pub(super) fn channel_count(&self) -> usize {
        if !self.view.song.is_empty() {
            return self.view.song.len();
        }
        let session = self.view.state.as_ref().map_or(0, |s| s.channels.len());
        self.stems.len().max(session)
    }

    pub(super) fn stem_name(&self, i: usize) -> String {
        if let Some(s) = self.view.song.get(i) {
            return s.name.clone();
        }
        self.stems
            .get(i)
            .map_or_else(|| format!("stem {}", i + 1), |s| s.file.name.clone())
    }

    /// The whole window, drawn into `ui` (eframe's root, or a test harness).
    /// Draws what [`MixerApp::poll`] took in; it does not drain the peer.
    pub fn show(&mut self, ui: &mut Ui) {
        let started = std::time::Instant::now();
        let now = ui.input(|i| i.time);
        let dt = self.last_time.map_or(0.0, |t| (now - t) as f32);
        self.last_time = Some(now);
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
                    ui.separator();
                    actions.extend(super::library::library_ui(ui, &self.view));
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
        let Some(peer) = &self.controller.peer else {
            return;
        };
        for (i, strip) in self.strips.iter_mut().enumerate() {
            let peak = peer.meters.stems.get(i).map_or(0.0, |m| m.take_peak());
            strip.meter.update(peak, dt);
        }
        self.master.meter.update(peer.meters.master.take_peak(), dt);
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

    fn session_ui(&mut self, ui: &mut Ui, actions: &mut Vec<Action>) {
        let out = panels::session_ui(
            ui,
            &panels::SessionPanel {
                view: &self.view,
                joined: !self.controller.template.joins.is_empty()
                    || self.controller.template.discovery.auto_join != AutoJoin::Off,
                stems: &self.stems,
                recent: &self.settings.recent_stems,
                share: self.view.me.as_ref().map(|me| me.share),
            },
            &mut self.join_text,
            &mut self.passphrase_text,
        );
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
                if let Some(c) = self.channel_ids().get(stem) {
                    solo::remember(&mut self.settings.soloed, c, on);
                }
            }
            Action::Join(addr) => {
                let addr = match check_join_spec(&addr) {
                    Ok(a) => a,
                    Err(e) => return self.view.push_error(e),
                };
                self.settings.join_address = addr.clone();
                self.controller.template.joins = vec![addr];
                self.controller.template.discovery.auto_join = AutoJoin::Off;
                self.controller.template.passphrase = non_empty(&self.passphrase_text);
                self.relaunch();
            }
            Action::Leave => {
                self.controller.template.joins.clear();
                self.controller.template.discovery.auto_join = AutoJoin::Off;
                self.controller.template.passphrase = non_empty(&self.passphrase_text);
                self.relaunch();
            }
            Action::AddStems(paths) => {
                for p in &paths {
                    self.settings.recent_stems.retain(|r| r != p);
                    self.settings.recent_stems.insert(0, p.clone());
                }
                self.settings.recent_stems.truncate(10);
                self.send(Command::Add { song: None, paths });
            }
            Action::LoadSong(id) => self.send(Command::Load(id)),
            Action::QueueSong(id) => self.send(Command::Queue(id)),
            Action::Unqueue(index) => self.send(Command::Unqueue(index)),
            Action::MoveQueued { from, to } => self.send(Command::Move { from, to }),
            Action::RemoveSong(id) => self.send(Command::Remove {
                song: id,
                stem: None,
            }),
            Action::OpenBrowser => {
                self.browser = Some(FileBrowser::new(
                    self.stems
                        .last()
                        .and_then(|s| s.file.path.parent().map(|p| p.to_path_buf())),
                ));
            }
            Action::RemoveStem(i) => {
                if let Some(s) = self.stems.get(i) {
                    let path = s.file.path.clone();
                    // By file, so a stem from a folder given whole can go.
                    let others: Vec<PathBuf> = self
                        .stems
                        .iter()
                        .map(|s| s.file.path.clone())
                        .filter(|p| *p != path)
                        .collect();
                    self.controller.stem_paths = others;
                    self.controller.stay_in_session(&self.view);
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
