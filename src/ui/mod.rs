//! The mixer window (egui, eframe): the app a musician opens. It runs the
//! peer on a thread of its own ([`crate::runtime::peer::PeerHandle`]) and
//! never blocks on it: commands go straight into its bounded input queue, events come
//! back through a channel, meters and the playhead are atomics read each
//! frame.
//!
//! - [`app`]: [`MixerApp`], the window: its layout, [`Settings`], and the
//!   [`Action`]s a frame emits, applied after it;
//! - [`strips`]: the channel strips and the master; [`transport`]: play,
//!   the playhead, shortcuts and the overview to seek;
//! - [`controller`]: the peer behind the window: (re)starts, events in,
//!   commands out;
//! - [`solo`]: which stems are soloed here, by hash, not by index;
//! - [`model`]: [`SessionView`], what the window knows, built from events
//!   (pure);
//! - [`fader`], [`meter`], [`timeline`]: the widgets and their pure maths;
//! - `panels.rs`: votes, peers, session, help;
//! - [`launch`]: (re)starting the peer off the UI thread.

pub mod app;
mod browser;
pub mod controller;
pub mod fader;
pub mod launch;
pub mod library;
pub mod meter;
pub mod model;
mod panels;
pub mod solo;
pub mod stats;
pub mod strips;
pub mod timeline;
pub mod transport;

use std::path::PathBuf;

pub use app::{Action, MixerApp, Settings};
pub use launch::{LoadedStem, PeerTemplate};
pub use model::SessionView;
pub use solo::StemKey;

/// The key of [`Settings`] in eframe's storage.
pub const SETTINGS_KEY: &str = "synfony.settings";

impl eframe::App for MixerApp {
    /// Once before every `ui`, and also while the window is hidden (the
    /// peer's events wake it): the one place the peer's events are drained
    /// ([`MixerApp::poll`]), so they never pile up and are never taken twice
    /// in a frame.
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.poll(ctx.input(|i| i.time));
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, SETTINGS_KEY, &self.settings);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        if let Some(p) = self.controller.peer.take()
            && let Err(e) = p.shutdown()
        {
            tracing::warn!("the peer stopped with an error: {e}");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("cannot open the window: {0} (no display? --headless runs a peer without one)")]
    Window(String),
}

/// Opens the mixer window and runs until it is closed.
pub fn run(
    template: PeerTemplate,
    stem_paths: Vec<PathBuf>,
    frame_stats: Option<PathBuf>,
) -> Result<(), UiError> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("synfony")
            .with_inner_size([1200.0, 760.0])
            .with_min_inner_size([640.0, 420.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "synfony",
        options,
        Box::new(move |cc| {
            let settings: Settings = cc
                .storage
                .and_then(|s| eframe::get_value(s, SETTINGS_KEY))
                .unwrap_or_default();
            let mut app = MixerApp::new(&cc.egui_ctx, settings, template, stem_paths);
            if let Some(path) = frame_stats {
                app.frame_stats = Some(stats::FrameStats::create(&path)?);
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| UiError::Window(e.to_string()))
}
