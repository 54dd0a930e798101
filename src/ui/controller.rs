//! The window's side of its peer: starting and restarting it through
//! [`super::launch`], draining its events into the [`SessionView`], and
//! sending it commands. Never blocks: commands are `try_send`, events are
//! `try_recv`, and a restart runs on a launch thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, TryRecvError};

use crate::runtime::control::Command;
use crate::runtime::peer::{PeerHandle, SendError};

use super::launch::{Launched, LoadedStem, PeerTemplate, spawn_launch};
use super::model::SessionView;

/// Events taken from the peer a frame at most, so a flood of them cannot
/// stall drawing (the rest wait for the next frame).
pub const MAX_EVENTS_PER_FRAME: usize = 512;

/// The peer behind the window, and its restarts.
pub struct Controller {
    /// How the peer is (re)started, less its stems.
    pub template: PeerTemplate,
    /// The stems asked for (files or folders), in order.
    pub stem_paths: Vec<PathBuf>,
    pub peer: Option<PeerHandle>,
    launching: Option<mpsc::Receiver<Launched>>,
    relaunch_wanted: bool,
    wake: Arc<dyn Fn() + Send + Sync>,
}

/// A launch that has finished, for the window to take in.
pub struct Relaunched {
    /// The stems the new peer plays (only those that loaded).
    pub stems: Vec<LoadedStem>,
    /// Another restart was asked for meanwhile: the window calls
    /// [`Controller::relaunch`] again once it has taken these stems.
    pub again: bool,
}

impl Controller {
    /// No peer yet; `wake` asks for a frame (a launch finished).
    pub fn new(
        template: PeerTemplate,
        stem_paths: Vec<PathBuf>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Controller {
        Controller {
            template,
            stem_paths,
            peer: None,
            launching: None,
            relaunch_wanted: false,
            wake,
        }
    }

    /// Stops the peer (if any) and starts it again with the current
    /// template and stem paths, in the background; `cache` holds stems
    /// already decoded.
    ///
    /// One launch at a time: asked again while one runs, it runs once more
    /// after it (with whatever was asked meanwhile).
    pub fn relaunch(&mut self, view: &mut SessionView, cache: &[LoadedStem]) {
        if self.launching.is_some() {
            self.relaunch_wanted = true;
            return;
        }
        self.relaunch_wanted = false;
        // The old peer goes to the launcher undrained: what it still has to
        // say (a refused join) comes back in the launch's errors.
        let wake = self.wake.clone();
        self.launching = Some(spawn_launch(
            self.template.clone(),
            self.stem_paths.clone(),
            cache.to_vec(),
            self.peer.take(),
            move || wake(),
        ));
        view.pending.clear();
    }

    pub fn is_launching(&self) -> bool {
        self.launching.is_some()
    }

    /// Takes the outcome of a launch, if one finished: the new peer, its
    /// template and problems; a fresh view (keeping its errors).
    pub fn take_launch(&mut self, view: &mut SessionView) -> Option<Relaunched> {
        let rx = self.launching.as_ref()?;
        match rx.try_recv() {
            Ok(l) => {
                self.launching = None;
                *view = SessionView {
                    errors: std::mem::take(&mut view.errors),
                    ..SessionView::default()
                };
                for e in l.errors {
                    view.push_error(e);
                }
                self.template = l.template;
                // Only what loaded: a bad file is not tried again.
                self.stem_paths = l.stems.iter().map(|s| s.file.path.clone()).collect();
                self.peer = l.handle;
                Some(Relaunched {
                    stems: l.stems,
                    again: self.relaunch_wanted,
                })
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.launching = None;
                view.push_error("the peer could not be started".into());
                None
            }
        }
    }

    /// Drains the peer's events into `view` (at most
    /// [`MAX_EVENTS_PER_FRAME`]) and notices a peer that stopped.
    ///
    /// The window's only drain: [`super::MixerApp::poll`] calls it once a
    /// frame (eframe's `App::logic`, which runs before every `ui` and also
    /// while the window is hidden).
    pub fn poll_peer(&mut self, view: &mut SessionView, now_secs: f64) {
        let Some(peer) = &self.peer else { return };
        for _ in 0..MAX_EVENTS_PER_FRAME {
            let Some(e) = peer.try_event() else { break };
            view.apply(e, now_secs);
        }
        if let Some(me) = &view.me {
            // Restarts keep the port others know this peer by.
            if self.template.listen.port() == 0 {
                self.template.listen.set_port(me.listen.port());
            }
        }
        if peer.is_stopped() && !view.stopped {
            view.stopped = true;
            view.push_error("the peer stopped; join or leave to start it again".into());
        }
    }

    /// Before a restart that should stay in this session (stems changed):
    /// join it again through the peers linked now.
    pub fn stay_in_session(&mut self, view: &SessionView) {
        if !self.template.joins.is_empty() {
            return;
        }
        if let Some(s) = &view.status {
            self.template.joins = s.peers.iter().map(|p| p.info.addr.to_string()).collect();
        }
    }

    /// Sends `command` without blocking; a full queue or a missing peer is
    /// shown in `view`.
    pub fn send(&self, view: &mut SessionView, command: Command) {
        let Some(peer) = &self.peer else {
            view.push_error("no peer is running (see the errors above)".into());
            return;
        };
        match peer.send(command) {
            Ok(()) => {}
            Err(SendError::Busy) => view.push_error(SendError::Busy.to_string()),
            Err(SendError::Stopped) => {
                if !self.is_launching() {
                    view.push_error(SendError::Stopped.to_string());
                }
            }
        }
    }

    /// Whether stem `i` is soloed on this peer now (the engine's own flag).
    pub fn is_soloed(&self, i: usize) -> bool {
        self.peer.as_ref().is_some_and(|p| p.solo.is_soloed(i))
    }
}
