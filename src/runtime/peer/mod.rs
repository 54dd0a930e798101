//! The peer: a thin async shell (tokio, one thread) around the sans-IO
//! [`Session`] and the audio engine.
//!
//! ```text
//!  accept loop ─► handshake task ─┐                       ┌─► link writer task ─► socket
//!  dial tasks ─────────────────────┤                       │   (one per link, bounded queue)
//!  link reader tasks ──────────────┼─► inputs ─► core ─────┼─► engine (schedule, set_map)
//!  stdin lines, signals ───────────┤   (bounded;  (Session,├─► events (JSON lines / window)
//!  the window's PeerHandle::send ──┤    one task)  Links,  └─► worker thread (hashing, cache,
//!  worker results ─────────────────┘               room)        chunk reads) ─► inputs
//! ```
//!
//! - this file: the handle ([`PeerHandle`], [`run_headless`]) and starting a
//!   peer (listening, the engine and output, the core's parts);
//! - `core.rs`: the core task's dispatch;
//! - `links.rs`: which connections are links, and whom to dial (sans-IO, unit
//!   tested);
//! - `slots.rs`: which accepted connections get a handshake slot (pure);
//! - `queues.rs`: how many bytes may wait for the links' writers (pure);
//! - `tasks.rs`: the input sources (accept, dial, read, write, stdin, signals);
//! - `worker.rs`: the blocking thread for slow file work.

mod core;
mod discovery;
mod links;
mod queues;
mod slots;
mod tasks;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::audio::output::{self, OutputConfig, OutputError, OutputKind};
use crate::audio::{
    ENGINE_RATE_HZ, Engine, EngineStats, LocalStem, Meters, Solo, StemAudio, Streamer,
};
use crate::host_clock::LocalClock;
use crate::protocol::library::SongId;
use crate::protocol::message::PeerInfo;
use crate::protocol::{self, Session, SessionState, SongRef, Start, frames_to_ns};

use self::core::{Core, Input};
use self::discovery::Lan;
pub use self::discovery::{AutoJoin, Discovery};
use self::links::Links;
use self::worker::Worker;
use super::auth::Secret;
use super::control::Command;
use super::events::{PeerEvent, Ready};
use super::handshake::LinkKeys;
use super::library::{self, LibraryShell};
use super::net::{self, Identity};
use super::room::{self, Describer, RoomShell};

/// Inputs waiting for the core (readers wait when it is full; the window's
/// commands are refused as busy).
const INPUT_QUEUE: usize = 4096;

/// Everything a peer is started with (the CLI's options, parsed and loaded).
pub struct PeerOptions {
    pub listen: SocketAddr,
    pub advertise: Option<SocketAddr>,
    /// `--join` addresses, as given (host names are resolved when dialled).
    pub joins: Vec<String>,
    pub name: String,
    pub secret: Option<Secret>,
    /// This peer's notion of time (skewed by the test-only options).
    pub clock: LocalClock,
    pub session: protocol::Config,
    pub stems: Vec<LocalStem>,
    pub output: OutputKind,
    pub output_cfg: OutputConfig,
    /// Where fetched stems are kept (`None`: not kept).
    pub cache_dir: Option<std::path::PathBuf>,
    /// How far ahead of the playhead remote stems are fetched and decoded.
    pub prefetch_ns: i64,
    /// Where the library is kept between runs (`None`: not kept).
    pub data_dir: Option<std::path::PathBuf>,
    /// The library song `stems` are (default: the first stem's name).
    pub song_name: Option<String>,
    /// Files given at start that did not load, and why: `skipped` events.
    pub skipped: Vec<(std::path::PathBuf, String)>,
    /// LAN discovery: the session's name, announcing it, `--join auto`.
    pub discovery: Discovery,
    /// No stems were given (the demo song plays otherwise): a new session
    /// resumes the current song kept in `data_dir` (see
    /// `crate::library::setlist`).
    pub resume: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot listen on {addr}: {cause}")]
    Listen {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("cannot start the network runtime: {0}")]
    Runtime(std::io::Error),
    #[error("no OS randomness for a peer id: {0}")]
    Randomness(String),
    #[error("the peer stopped unexpectedly")]
    Stopped,
    #[error("cannot start the I/O worker thread: {0}")]
    Worker(std::io::Error),
}

/// Where a peer's events go, with the stem names to print them with.
pub type EventSink = Box<dyn FnMut(PeerEvent, &[String]) + Send>;

/// Where a peer's commands come from.
enum Control {
    /// Lines of stdin (headless); SIGINT and SIGTERM quit.
    Stdin,
    /// The window's [`PeerHandle`], which sends straight to the core's
    /// inputs; a status event every tick; the peer quits when `gone`
    /// resolves (the handle was dropped).
    Handle { gone: oneshot::Receiver<()> },
}

/// Runs a headless peer until `quit`, SIGINT or SIGTERM: commands from stdin,
/// events as JSON objects to `events`.
pub fn run_headless(
    opts: PeerOptions,
    mut events: Box<dyn FnMut(Value) + Send>,
) -> Result<(), PeerError> {
    let sink: EventSink = Box::new(move |e, stems| events(e.to_json(stems)));
    let rt = runtime()?;
    let inputs = mpsc::channel(INPUT_QUEUE);
    let describe = room::describe_file();
    let result = rt.block_on(run(opts, Control::Stdin, sink, None, inputs, describe));
    // tokio reads stdin with a blocking read that cannot be cancelled: do not
    // wait for it, or `quit` with stdin still open would never exit.
    rt.shutdown_timeout(Duration::from_millis(100));
    result
}

fn runtime() -> Result<tokio::runtime::Runtime, PeerError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PeerError::Runtime)
}

/// A peer running on its own thread, for the mixer window: commands in,
/// typed events out, and the engine's meters and counters to read at frame
/// rate. Nothing here blocks: [`PeerHandle::send`] never waits, and events
/// are taken with [`PeerHandle::try_event`].
pub struct PeerHandle {
    commands: Commands,
    /// Dropped with the handle: the peer then quits.
    _alive: Option<oneshot::Sender<()>>,
    events: std::sync::mpsc::Receiver<PeerEvent>,
    pub meters: Arc<Meters>,
    pub stats: Arc<EngineStats>,
    pub solo: Arc<Solo>,
    thread: Option<std::thread::JoinHandle<Result<(), PeerError>>>,
}

/// Commands a detached handle queues for its test.
const COMMAND_QUEUE: usize = 256;

/// Where a handle's commands go.
enum Commands {
    /// Straight into the core's inputs.
    Core(mpsc::Sender<Input>),
    /// To a test ([`PeerHandle::detached`]).
    Detached(mpsc::Sender<Command>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("the peer is busy (too many commands queued)")]
    Busy,
    #[error("the peer has stopped")]
    Stopped,
}

impl PeerHandle {
    /// Starts a peer on a thread of its own. Returns once it listens (so a
    /// port in use or a missing sound device is an error here), with its
    /// `Ready` event as the first event. `wake` is called after every event
    /// (the window's `request_repaint`).
    pub fn spawn(opts: PeerOptions, wake: Box<dyn Fn() + Send>) -> Result<PeerHandle, PeerError> {
        PeerHandle::spawn_with(opts, wake, room::describe_file())
    }

    /// [`PeerHandle::spawn`] with its own way of describing files (tests
    /// slow it down).
    fn spawn_with(
        opts: PeerOptions,
        wake: Box<dyn Fn() + Send>,
        describe: Describer,
    ) -> Result<PeerHandle, PeerError> {
        let (input_tx, input_rx) = mpsc::channel(INPUT_QUEUE);
        let (alive, gone) = oneshot::channel();
        let (ev_tx, ev_rx) = std::sync::mpsc::channel();
        let (started_tx, started_rx) = std::sync::mpsc::sync_channel(1);
        let inputs = (input_tx.clone(), input_rx);
        let thread = std::thread::Builder::new()
            .name("synfony-peer".into())
            .spawn(move || {
                let rt = runtime()?;
                let sink: EventSink = Box::new(move |e, _stems| {
                    let _ = ev_tx.send(e);
                    wake();
                });
                // A failure before listening drops `started_tx` unused, which
                // tells `spawn` to look at this thread's result.
                let control = Control::Handle { gone };
                let result =
                    rt.block_on(run(opts, control, sink, Some(started_tx), inputs, describe));
                rt.shutdown_timeout(Duration::from_millis(100));
                result
            })
            .map_err(PeerError::Runtime)?;
        match started_rx.recv() {
            Ok(parts) => Ok(PeerHandle {
                commands: Commands::Core(input_tx),
                _alive: Some(alive),
                events: ev_rx,
                meters: parts.meters,
                stats: parts.stats,
                solo: parts.solo,
                thread: Some(thread),
            }),
            // The thread failed before it listened: its own error says why.
            Err(_) => Err(match thread.join() {
                Ok(Err(e)) => e,
                Ok(Ok(())) | Err(_) => PeerError::Stopped,
            }),
        }
    }

    /// A handle wired to nothing: the test's ends of its channels stand in
    /// for a peer (the window's tests drive the UI without a network).
    pub fn detached(stems: usize) -> (PeerHandle, DetachedPeer) {
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (ev_tx, ev_rx) = std::sync::mpsc::channel();
        let (_engine, engine, _retired) = Engine::new(
            (0..stems)
                .map(|i| Streamer::local(&StemAudio::silence(&format!("stem{i}"), 0)))
                .collect(),
            ENGINE_RATE_HZ,
        );
        let handle = PeerHandle {
            commands: Commands::Detached(cmd_tx),
            _alive: None,
            events: ev_rx,
            meters: engine.meters.clone(),
            stats: engine.stats.clone(),
            solo: engine.solo.clone(),
            thread: None,
        };
        (
            handle,
            DetachedPeer {
                commands: cmd_rx,
                events: ev_tx,
            },
        )
    }

    /// Queues a command for the peer; never blocks.
    pub fn send(&self, command: Command) -> Result<(), SendError> {
        self.commands.send(command)
    }

    /// The next event, if one is waiting.
    pub fn try_event(&self) -> Option<PeerEvent> {
        self.events.try_recv().ok()
    }

    /// Whether the peer's thread has ended (it quit, or failed).
    pub fn is_stopped(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| t.is_finished())
    }

    /// Asks the peer to leave the session and waits for its thread (it says
    /// goodbye to its links and stops its output: well under a second).
    pub fn shutdown(self) -> Result<(), PeerError> {
        let PeerHandle {
            commands,
            _alive,
            thread,
            ..
        } = self;
        let _ = commands.send(Command::Quit);
        // If the queue was full, the dropped `_alive` makes the peer quit.
        drop(_alive);
        drop(commands);
        match thread {
            Some(t) => t.join().unwrap_or(Err(PeerError::Stopped)),
            None => Ok(()),
        }
    }
}

impl Commands {
    fn send(&self, command: Command) -> Result<(), SendError> {
        fn refused<T>(e: mpsc::error::TrySendError<T>) -> SendError {
            match e {
                mpsc::error::TrySendError::Full(_) => SendError::Busy,
                mpsc::error::TrySendError::Closed(_) => SendError::Stopped,
            }
        }
        match self {
            Commands::Core(tx) => tx.try_send(Input::Command(command)).map_err(refused),
            Commands::Detached(tx) => tx.try_send(command).map_err(refused),
        }
    }
}

/// The far ends of a [`PeerHandle::detached`]'s channels.
pub struct DetachedPeer {
    pub commands: mpsc::Receiver<Command>,
    pub events: std::sync::mpsc::Sender<PeerEvent>,
}

/// What a spawned peer hands its [`PeerHandle`] once it listens.
struct Started {
    meters: Arc<Meters>,
    stats: Arc<EngineStats>,
    solo: Arc<Solo>,
}

/// Runs a peer until it quits. `started` (the window's) learns the engine's
/// shared parts once the peer listens and plays.
async fn run(
    opts: PeerOptions,
    control: Control,
    mut events: EventSink,
    started: Option<std::sync::mpsc::SyncSender<Started>>,
    (tx, rx): (mpsc::Sender<Input>, mpsc::Receiver<Input>),
    describe: Describer,
) -> Result<(), PeerError> {
    // A session is created unless one is joined, by address or found.
    let creating = opts.joins.is_empty() && opts.discovery.auto_join == AutoJoin::Off;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|cause| PeerError::Listen {
            addr: opts.listen,
            cause,
        })?;
    let bound = listener.local_addr().map_err(|cause| PeerError::Listen {
        addr: opts.listen,
        cause,
    })?;
    let me = Identity {
        keys: Arc::new(LinkKeys::generate().map_err(|e| PeerError::Randomness(e.to_string()))?),
        name: opts.name.clone(),
        advertise: opts.advertise.unwrap_or(bound),
    };
    let clock = opts.clock;
    let stem_names: Vec<String> = opts.stems.iter().map(|s| s.name().to_string()).collect();
    let duration_ns = opts
        .stems
        .iter()
        .map(|s| frames_to_ns(s.frames() as i64, ENGINE_RATE_HZ))
        .max()
        .unwrap_or(0);
    let stats = Arc::new(EngineStats::default());
    let wake_tx = tx.clone();
    let mut room = RoomShell::new(
        &opts.stems,
        creating,
        opts.cache_dir.clone(),
        opts.prefetch_ns,
        stats.clone(),
        Arc::new(move || {
            // Dropped when the queue is full: the next tick refocuses anyway.
            let _ = wake_tx.try_send(Input::RoomWake);
        }),
    );
    let start_song = (opts.song_name.clone())
        .or_else(|| stem_names.first().cloned())
        .unwrap_or_else(|| "untitled".into());
    // The start song, in the version its creator's room describes.
    let start_ref = SongRef {
        song: SongId::of_name(&start_song),
        ..SongRef::anonymous(duration_ns, stem_names.len())
    };
    let (engine, engine_handle, retired) =
        Engine::with_stats(room.own_streamers(), ENGINE_RATE_HZ, stats);
    let engine = engine.with_song(start_ref.song.0);
    drop(opts.stems);
    let output::Opened {
        running,
        described,
        fallback,
    } = output::open(&opts.output, engine, &opts.output_cfg)?;
    if let Some(started) = started {
        let _ = started.try_send(Started {
            meters: engine_handle.meters.clone(),
            stats: engine_handle.stats.clone(),
            solo: engine_handle.solo.clone(),
        });
    }

    // A new session takes up the set list kept here (a joiner takes the
    // session's): its queue, and its current song too when no stems were
    // given.
    let mut resumed = false;
    let mut kept_error = None;
    let start = if creating {
        let mut state = SessionState::of_song(start_ref);
        let kept = opts.data_dir.as_deref().map(crate::library::setlist::load);
        match kept {
            Some(Ok(Some(kept))) => {
                if opts.resume && kept.song.is_valid() {
                    state = SessionState::of_song(kept.song);
                    resumed = true;
                }
                state.queue = kept.queue;
                state.played = kept.played;
            }
            Some(Err(e)) => kept_error = Some(e),
            _ => {}
        }
        Start::Create {
            state: state.founded(&opts.discovery.session, me.peer_id()),
        }
    } else {
        Start::Join
    };
    let now = clock.now_ns();
    let info = PeerInfo {
        peer_id: me.peer_id(),
        name: me.name.clone(),
        addr: me.advertise,
    };
    let session = Session::new(opts.session, info, me.keys.signer.clone(), now, start);

    events(
        PeerEvent::Ready(Ready {
            peer_id: me.peer_id(),
            name: me.name.clone(),
            listen: bound,
            advertise: me.advertise,
            share: net::share_address(me.advertise),
            stems: stem_names.clone(),
            output: described,
            joining: !creating,
        }),
        &stem_names,
    );
    info!(peer_id = %me.peer_id(), listen = %bound, advertise = %me.advertise, "ready");
    for (path, reason) in opts.skipped {
        events(PeerEvent::Skipped { path, reason }, &stem_names);
    }
    if let Some(e) = kept_error {
        warn!("{e}");
        events(PeerEvent::Error(e), &stem_names);
    }
    if let Some(e) = fallback {
        let e = format!("{e}; playing on the null device instead (in time, silent)");
        warn!("{e}");
        events(PeerEvent::Error(e), &stem_names);
    }

    let secret = opts.secret.map(Arc::new);
    tokio::spawn(tasks::accept_loop(
        listener,
        me.clone(),
        secret.clone(),
        tx.clone(),
    ));
    let (push_status, handle_gone) = match control {
        Control::Stdin => {
            tokio::spawn(tasks::stdin_loop(tx.clone()));
            tokio::spawn(tasks::signal_loop(tx.clone()));
            (false, None)
        }
        Control::Handle { gone } => (true, Some(gone)),
    };
    let worker = Worker::start(tx.clone()).map_err(PeerError::Worker)?;
    // The library kept between runs is read first: jobs run in order.
    let load = library::load_job(opts.data_dir.clone(), opts.cache_dir.clone());
    worker.run(move || Input::LibraryLoaded(load()));
    // This peer's files are hashed on the worker: the exchange starts (and
    // announces them) when it is done; the session runs meanwhile.
    let describe_job = room.describe_job(describe);
    worker.run(move || Input::Described(describe_job()));

    let lan = Lan::new(opts.discovery, me.peer_id(), bound);
    let mut core = Core {
        clock,
        session,
        links: Links::new(me.peer_id(), opts.joins, now),
        me,
        secret,
        engine: engine_handle,
        retired,
        running: Some(running),
        render_ahead_ns: Default::default(),
        last_scheduled_at_ns: None,
        stems: stem_names,
        conns: Default::default(),
        next_conn: 0,
        inputs: tx,
        worker,
        last_map: None,
        last_scheduled: None,
        events,
        writers: Vec::new(),
        quit: false,
        malformed_frames: 0,
        push_status,
        handle_gone,
        room,
        library: LibraryShell::new(opts.data_dir.clone()),
        start_song,
        last_setlist: None,
        unplayable: None,
        // The creator's engine starts with its own stems, the start song
        // (unless it resumed another, which plays once its stems are known).
        playing: (creating && !resumed).then_some(start_ref),
        data_dir: opts.data_dir.clone(),
        go_live_at: None,
        seek_hint_until_ns: None,
        offenders: Default::default(),
        lan,
    };
    if let Some((_, state)) = core.session.latest() {
        // A new session: play its (paused) state from now on.
        let state = state.clone();
        core.schedule(0, &state);
    }
    core.lan_start();
    core.run(rx).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;
    use crate::room::StemInfo;

    /// The next event the test wants, within 20 s (the peer runs in real time).
    #[track_caller]
    fn wait_for<T>(handle: &PeerHandle, mut want: impl FnMut(PeerEvent) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match handle.try_event() {
                Some(e) => {
                    if let Some(x) = want(e) {
                        return x;
                    }
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        panic!("the event never came");
    }

    /// While this peer's file is being hashed (a fake hasher that waits
    /// for the test), the core task runs: status arrives every tick and the
    /// session decides round after round; the stem is announced only once
    /// its hash is known.
    #[test]
    fn the_core_runs_rounds_while_a_file_is_hashed() {
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let describe: Describer = Arc::new(move |_path, name, frames| {
            let _ = gate.lock().expect("gate").recv();
            Ok(StemInfo::of_bytes(name, "wav", b"a large file", frames))
        });
        let mut stem = StemAudio::silence("slow", 4800);
        stem.path = Some("/nonexistent/slow.wav".into());
        let opts = PeerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            joins: vec![],
            discovery: Discovery::off("test"),
            name: "hashing".into(),
            secret: None,
            clock: LocalClock::REAL,
            session: protocol::Config::default(),
            stems: vec![stem.into()],
            output: OutputKind::Null,
            output_cfg: OutputConfig::default(),
            cache_dir: None,
            prefetch_ns: 0,
            data_dir: None,
            song_name: None,
            resume: false,
            skipped: vec![],
        };
        let handle = PeerHandle::spawn_with(opts, Box::new(|| {}), describe).unwrap();
        let mut rounds = Vec::new();
        while rounds.len() < 5 {
            let status = wait_for(&handle, |e| match e {
                PeerEvent::Status(s) => Some(s),
                PeerEvent::Song(_) => panic!("a song before its hash"),
                _ => None,
            });
            assert!(status.song.is_empty(), "{:?}", status.song);
            rounds.push(status.round.map_or(0, |r| r.0));
        }
        assert!(
            rounds[4] > rounds[0],
            "no round was decided while hashing: {rounds:?}"
        );

        release.send(()).unwrap();
        let song = wait_for(&handle, |e| match e {
            PeerEvent::Song(s) => Some(s),
            _ => None,
        });
        let hash = StemInfo::of_bytes("slow", "wav", b"a large file", 4800).hash;
        assert_eq!(song.len(), 1);
        assert_eq!(song[0].hash, hash);
        handle.shutdown().unwrap();
    }

    /// The window's commands reach the core without a forwarding task, and
    /// dropping the handle makes the peer quit.
    #[test]
    fn commands_go_straight_to_the_core_and_a_dropped_handle_quits() {
        let opts = PeerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            joins: vec![],
            discovery: Discovery::off("test"),
            name: "direct".into(),
            secret: None,
            clock: LocalClock::REAL,
            session: protocol::Config::default(),
            stems: vec![StemAudio::silence("gen", 4800).into()],
            output: OutputKind::Null,
            output_cfg: OutputConfig::default(),
            cache_dir: None,
            prefetch_ns: 0,
            data_dir: None,
            song_name: None,
            resume: false,
            skipped: vec![],
        };
        let handle = PeerHandle::spawn(opts, Box::new(|| {})).unwrap();
        handle.send(Command::Peers).unwrap();
        wait_for(&handle, |e| matches!(e, PeerEvent::Peers(_)).then_some(()));
        // Dropped as the window would, without `shutdown`.
        let PeerHandle {
            thread,
            _alive,
            commands,
            ..
        } = handle;
        drop((_alive, commands));
        let thread = thread.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "the peer did not quit");
            std::thread::sleep(Duration::from_millis(10));
        }
        thread.join().unwrap().unwrap();
    }
}
