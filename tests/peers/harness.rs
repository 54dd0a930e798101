//! The library's process harness ([`synfony_testkit::harness`]) with the tests'
//! manners: a failure panics, naming the peer and what it waited for.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use synfony_testkit::harness::PeerProcess;

pub const BIN: &str = env!("CARGO_BIN_EXE_synfony");

/// The stems every test peer plays (two short, synthesised tracks).
pub fn stems() -> PathBuf {
    synfony::assets::click_dir()
}

/// A free loopback port (bound, then released for the peer to take).
pub fn free_port() -> SocketAddr {
    synfony_testkit::harness::free_port().unwrap()
}

pub struct Peer(PeerProcess);

impl std::ops::Deref for Peer {
    type Target = PeerProcess;
    fn deref(&self) -> &PeerProcess {
        &self.0
    }
}

impl std::ops::DerefMut for Peer {
    fn deref_mut(&mut self) -> &mut PeerProcess {
        &mut self.0
    }
}

impl From<PeerProcess> for Peer {
    fn from(p: PeerProcess) -> Peer {
        Peer(p)
    }
}

impl Peer {
    /// Starts `synfony --headless` with `args` and a report in `dir`, and
    /// waits for its `ready` event.
    pub fn spawn(name: &str, dir: &Path, args: &[String]) -> Peer {
        Peer(PeerProcess::spawn(Path::new(BIN), name, dir, args).unwrap_or_else(|e| panic!("{e}")))
    }

    pub fn send(&mut self, line: &str) {
        self.0.send(line).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits for an event matching `pred` (seen earlier or arriving).
    pub fn wait_for(
        &mut self,
        what: &str,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        match self.0.wait_for(what, pred, timeout) {
            Ok(v) => v,
            Err(e) => panic!("{e}; all events: {:#?}", self.0.seen),
        }
    }

    /// Waits for a decision from `seen[since]` on that carries `voter`'s
    /// vote `action`.
    pub fn wait_decision(
        &mut self,
        since: usize,
        voter: &str,
        action: &str,
        timeout: Duration,
    ) -> Value {
        match self.0.wait_decision(since, voter, action, timeout) {
            Ok(v) => v,
            Err(e) => panic!("{e}; all events: {:#?}", self.0.seen),
        }
    }

    /// Sends `status` and returns the answer.
    pub fn status(&mut self) -> Value {
        self.0.status().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until this peer has `n` peers linked and session time.
    pub fn wait_linked(&mut self, n: usize, timeout: Duration) {
        self.0
            .wait_linked(n, timeout)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `quit` (stdin stays open, as at a terminal), then the exit status.
    pub fn quit(self) -> std::process::ExitStatus {
        self.0.quit().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.0.wait_exit(timeout).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Events named `name` seen by a peer.
pub fn events_named<'a>(p: &'a Peer, name: &'a str) -> impl Iterator<Item = &'a Value> {
    p.0.events_named(name)
}
