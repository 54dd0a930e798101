//! Starting (and restarting) the window's peer off the UI thread: decoding
//! stems, stopping the previous peer, and starting the next with what the
//! user chose (a session to join, a passphrase, stems added).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::audio::load;
use crate::audio::output::{OutputConfig, OutputKind};
use crate::audio::{FileStem, LocalStem};
use crate::host_clock::LocalClock;
use crate::protocol;
use crate::runtime::auth::Secret;
use crate::runtime::events::PeerEvent;
use crate::runtime::peer::{Discovery, PeerError, PeerHandle, PeerOptions};

use super::timeline::Overview;

/// How to start the peer, less its stems.
#[derive(Clone, Debug)]
pub struct PeerTemplate {
    pub listen: SocketAddr,
    /// The listen address was not asked for: if its port is taken (another
    /// synfony on this machine), a free port is used instead.
    pub listen_is_default: bool,
    pub advertise: Option<SocketAddr>,
    pub joins: Vec<String>,
    pub name: String,
    pub passphrase: Option<String>,
    pub clock: LocalClock,
    pub session: protocol::Config,
    pub output: OutputKind,
    pub output_cfg: OutputConfig,
    pub cache_dir: Option<PathBuf>,
    pub prefetch_ns: i64,
    /// Where the library is kept between runs (`None`: not kept).
    pub data_dir: Option<PathBuf>,
    /// The library song the stems are (`None`: the first stem's name); kept
    /// when a stem is removed, set when a library song is loaded.
    pub song_name: Option<String>,
    /// LAN discovery (the window lists sessions found).
    pub discovery: Discovery,
}

/// How far ahead remote stems are fetched and decoded, by default.
pub const DEFAULT_PREFETCH_NS: i64 = 10_000_000_000;

impl PeerTemplate {
    /// A peer on loopback (a free port), on the silent virtual device, with
    /// real clocks: for tests and local experiments.
    pub fn loopback(name: &str) -> PeerTemplate {
        PeerTemplate {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            listen_is_default: false,
            advertise: None,
            joins: vec![],
            name: name.to_string(),
            passphrase: None,
            clock: LocalClock::REAL,
            session: protocol::Config::default(),
            output: OutputKind::Null,
            output_cfg: OutputConfig::default(),
            cache_dir: None,
            prefetch_ns: DEFAULT_PREFETCH_NS,
            data_dir: None,
            song_name: None,
            discovery: Discovery::off(name),
        }
    }
}

impl PeerTemplate {
    /// The options to start a peer with these stems.
    pub fn options(&self, stems: Vec<LocalStem>) -> PeerOptions {
        PeerOptions {
            listen: self.listen,
            advertise: self.advertise,
            joins: self.joins.clone(),
            name: self.name.clone(),
            secret: self.passphrase.as_deref().map(Secret::new),
            clock: self.clock,
            session: self.session.clone(),
            stems,
            output: self.output.clone(),
            output_cfg: self.output_cfg.clone(),
            cache_dir: self.cache_dir.clone(),
            prefetch_ns: self.prefetch_ns,
            data_dir: self.data_dir.clone(),
            song_name: self.song_name.clone(),
            skipped: vec![],
            resume: false,
            discovery: self.discovery.clone(),
        }
    }
}

/// A stem file (streamed from disk when it plays) and its overview, kept by
/// the window across restarts.
#[derive(Clone)]
pub struct LoadedStem {
    pub file: FileStem,
    pub overview: Overview,
}

/// The outcome of a launch.
pub struct Launched {
    /// `None` if the peer could not start (the reason is in `errors`).
    pub handle: Option<PeerHandle>,
    pub stems: Vec<LoadedStem>,
    /// What the peer was started with (the port it fell back to, say).
    pub template: PeerTemplate,
    /// Problems to show in the window (a bad file, no sound device).
    pub errors: Vec<String>,
}

/// Decodes the audio files among `paths` (files or folders) with the one
/// stem loader ([`crate::audio::load`]: its order and limits), reusing the
/// ones in `cache`. A bad file is an error in `errors`; the others load.
pub fn load_stems(
    paths: &[PathBuf],
    cache: &[LoadedStem],
    errors: &mut Vec<String>,
) -> Vec<LoadedStem> {
    let decode = |file: &Path| match cache.iter().find(|s| s.file.path == file) {
        Some(s) => Ok(s.clone()),
        None => Overview::of_file(file).map(|(probe, overview)| LoadedStem {
            file: FileStem {
                name: crate::audio::decode::stem_name(file),
                path: file.to_path_buf(),
                probe,
            },
            overview,
        }),
    };
    let mut out = Vec::new();
    for r in load::each(paths, decode) {
        match r {
            Ok(s) => out.push(s),
            Err(e) => errors.push(e.to_string()),
        }
    }
    out
}

/// Stops `previous` (if any), decodes `paths` and starts a peer with them.
/// Blocking (decoding takes a while): the window calls [`spawn_launch`].
pub fn launch(
    template: PeerTemplate,
    paths: Vec<PathBuf>,
    cache: Vec<LoadedStem>,
    previous: Option<PeerHandle>,
    wake: impl Fn() + Send + Clone + 'static,
) -> Launched {
    let mut errors = Vec::new();
    // Decode first: the music plays on meanwhile.
    let stems = load_stems(&paths, &cache, &mut errors);
    if let Some(p) = previous {
        // What it said since the window's last frame (a refused join):
        // the window no longer drains it, so its messages come back here.
        while let Some(e) = p.try_event() {
            if let PeerEvent::Error(message) = e {
                errors.push(message);
            }
        }
        if let Err(e) = p.shutdown() {
            errors.push(format!("the previous peer stopped with an error: {e}"));
        }
    }
    let mut template = template;
    let handle = loop {
        let opts = template.options(stems.iter().map(|s| s.file.clone().into()).collect());
        let w = wake.clone();
        match PeerHandle::spawn(opts, Box::new(w)) {
            Ok(h) => break Some(h),
            Err(PeerError::Listen { addr, cause })
                if cause.kind() == ErrorKind::AddrInUse && template.listen_is_default =>
            {
                errors.push(format!(
                    "{addr} is taken (another synfony?): listening on a free port instead"
                ));
                template.listen.set_port(0);
                template.listen_is_default = false;
            }
            Err(e) => {
                errors.push(format!("cannot start the peer: {e}"));
                break None;
            }
        }
    };
    Launched {
        handle,
        stems,
        template,
        errors,
    }
}

/// Runs [`launch`] on a thread; the result arrives on the returned channel
/// (and `wake` is called).
pub fn spawn_launch(
    template: PeerTemplate,
    paths: Vec<PathBuf>,
    cache: Vec<LoadedStem>,
    previous: Option<PeerHandle>,
    wake: impl Fn() + Send + Sync + Clone + 'static,
) -> mpsc::Receiver<Launched> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("synfony-launch".into())
        .spawn({
            let wake = wake.clone();
            move || {
                let launched = launch(template, paths, cache, previous, wake.clone());
                let _ = tx.send(launched);
                wake();
            }
        });
    if let Err(e) = spawned {
        // No thread: the window shows the launch as failed (the sender is gone).
        tracing::error!("cannot start a launch thread: {e}");
    }
    rx
}
