//! The peer: a thin async shell (tokio, one thread) around the sans-IO
//! [`Session`] and the audio engine.
//!
//! ```text
//!  listener ─► handshake task ─┐                      ┌─► link writer task ─► socket
//!  dialer   ─► handshake task ─┼─► inputs ─► core ────┤   (one per link, bounded queue)
//!  link reader tasks ──────────┤   (one task:         ├─► engine (schedule, set_map)
//!  stdin lines ────────────────┘    Session + timers) └─► events (JSON lines)
//! ```
//!
//! The core task is the only owner of the [`Session`]; each socket half has one
//! owner task; they talk over channels. The core passes the local time
//! ([`LocalClock`], skewable for tests) to every session call, sleeps until
//! [`Session::poll_timeout`], sends what [`Session::poll_transmit`] gives, and
//! turns [`SessionEvent`]s into dials, closed links, engine schedules and
//! events.
//!
//! **One link per pair.** When two connections to one peer are up (both dialled
//! at once), both ends keep the one dialled by the lower peer id and close the
//! other; a newer connection from the same dialler replaces an older one (the
//! old one is likely dead).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{debug, info, warn};

use crate::audio::output::{self, OutputConfig, OutputError, OutputKind, Running};
use crate::audio::{
    ENGINE_RATE_HZ, Engine, EngineHandle, EngineStats, Meters, Retired, Solo, StemAudio, Streamer,
};
use crate::host_clock::{LocalClock, monotonic_ns};
use crate::protocol::message::{Message, Operation, PeerInfo, Room};
use crate::protocol::{
    self, Event, PeerId, Session, SessionEvent, SessionMap, SessionState, Start, frames_to_ns,
    ns_to_frames,
};
use crate::room::ExchangeEvent;

use super::auth::Secret;
use super::control::{self, Command};
use super::events::{PeerEvent, Ready, Status};
use super::net::{self, Connection, Handshaken, Identity, LinkError, Read};
use super::room::RoomShell;

/// Messages waiting for one link's writer; a peer that lets this many pile up
/// is not reading, and its link is closed.
const LINK_QUEUE: usize = 1024;
/// Inputs waiting for the core (readers wait when it is full).
const INPUT_QUEUE: usize = 4096;
/// Housekeeping: join retries, freeing retired engine states, output errors.
const TICK: Duration = Duration::from_millis(100);
/// Redials of a peer that refused or could not be reached back off up to this.
const MAX_BACKOFF_NS: i64 = 5_000_000_000;
const FIRST_BACKOFF_NS: i64 = 250_000_000;
/// A write that cannot complete this long means the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections in their handshake at once; more are closed at once (a flood
/// of silent connections must not exhaust memory or descriptors).
const MAX_HANDSHAKES: usize = 64;
/// How long writers get to flush goodbyes when the peer quits.
const QUIT_FLUSH: Duration = Duration::from_millis(300);
/// A seek target seen in a vote is a fetch priority for this long (it
/// applies within a round and the lead).
const SEEK_HINT_NS: i64 = 1_500_000_000;

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
    pub stems: Vec<StemAudio>,
    pub output: OutputKind,
    pub output_cfg: OutputConfig,
    /// Where fetched stems are kept (`None`: not kept).
    pub cache_dir: Option<std::path::PathBuf>,
    /// How far ahead of the playhead remote stems are fetched and decoded.
    pub prefetch_ns: i64,
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
}

/// Where a peer's events go, with the stem names to print them with.
pub type EventSink = Box<dyn FnMut(PeerEvent, &[String]) + Send>;

/// Where a peer's commands come from.
enum Control {
    /// Lines of stdin (headless); SIGINT and SIGTERM quit.
    Stdin,
    /// Typed commands from the window; a status event every tick.
    Channel(mpsc::Receiver<Command>),
}

/// Runs a headless peer until `quit`, SIGINT or SIGTERM: commands from stdin,
/// events as JSON objects to `events`.
pub fn run_headless(
    opts: PeerOptions,
    mut events: Box<dyn FnMut(Value) + Send>,
) -> Result<(), PeerError> {
    let sink: EventSink = Box::new(move |e, stems| events(e.to_json(stems)));
    let rt = runtime()?;
    let result = rt.block_on(run(opts, Control::Stdin, sink, None));
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
    commands: mpsc::Sender<Command>,
    events: std::sync::mpsc::Receiver<PeerEvent>,
    pub meters: Arc<Meters>,
    pub stats: Arc<EngineStats>,
    pub solo: Arc<Solo>,
    thread: Option<std::thread::JoinHandle<Result<(), PeerError>>>,
}

/// Commands the window may queue before the peer takes them.
const COMMAND_QUEUE: usize = 256;

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
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (ev_tx, ev_rx) = std::sync::mpsc::channel();
        let (started_tx, started_rx) = std::sync::mpsc::sync_channel(1);
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
                let result =
                    rt.block_on(run(opts, Control::Channel(cmd_rx), sink, Some(started_tx)));
                rt.shutdown_timeout(Duration::from_millis(100));
                result
            })
            .map_err(PeerError::Runtime)?;
        match started_rx.recv() {
            Ok(parts) => Ok(PeerHandle {
                commands: cmd_tx,
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
            commands: cmd_tx,
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
        self.commands.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Busy,
            mpsc::error::TrySendError::Closed(_) => SendError::Stopped,
        })
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
            commands, thread, ..
        } = self;
        let _ = commands.try_send(Command::Quit);
        // If the queue was full, the closed channel makes the peer quit.
        drop(commands);
        match thread {
            Some(t) => t.join().unwrap_or(Err(PeerError::Stopped)),
            None => Ok(()),
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

fn random_peer_id() -> Result<PeerId, PeerError> {
    use rand::TryRng;
    loop {
        let id = rand::rngs::SysRng
            .try_next_u64()
            .map_err(|e| PeerError::Randomness(e.to_string()))?;
        if id != 0 {
            return Ok(PeerId(id));
        }
    }
}

/// Runs a peer until it quits. `started` (the window's) learns the engine's
/// shared parts once the peer listens and plays.
async fn run(
    opts: PeerOptions,
    control: Control,
    mut events: EventSink,
    started: Option<std::sync::mpsc::SyncSender<Started>>,
) -> Result<(), PeerError> {
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
        peer_id: random_peer_id()?,
        name: opts.name.clone(),
        advertise: opts.advertise.unwrap_or(bound),
    };
    let clock = opts.clock;
    let stem_names: Vec<String> = opts.stems.iter().map(|s| s.name.clone()).collect();
    let duration_ns = opts
        .stems
        .iter()
        .map(|s| frames_to_ns(s.frames() as i64, ENGINE_RATE_HZ))
        .max()
        .unwrap_or(0);
    let (engine, engine_handle, retired) = Engine::new(
        opts.stems.iter().map(Streamer::local).collect(),
        ENGINE_RATE_HZ,
    );
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let wake_tx = tx.clone();
    let (room, room_errors) = RoomShell::new(
        &opts.stems,
        opts.joins.is_empty(),
        opts.cache_dir.clone(),
        opts.prefetch_ns,
        engine_handle.stats.clone(),
        Arc::new(move || {
            // Dropped when the queue is full: the next tick refocuses anyway.
            let _ = wake_tx.try_send(Input::RoomWake);
        }),
    );
    drop(opts.stems);
    let backend = output::backend(&opts.output, &opts.output_cfg)?;
    let described = backend.describe();
    let running = output::start(backend, engine, &opts.output_cfg)?;
    if let Some(started) = started {
        let _ = started.try_send(Started {
            meters: engine_handle.meters.clone(),
            stats: engine_handle.stats.clone(),
            solo: engine_handle.solo.clone(),
        });
    }

    let start = if opts.joins.is_empty() {
        Start::Create {
            state: SessionState::new(duration_ns, stem_names.len()),
        }
    } else {
        Start::Join
    };
    let now = clock.now_ns();
    let info = PeerInfo {
        peer_id: me.peer_id,
        name: me.name.clone(),
        addr: me.advertise,
    };
    let session = Session::new(opts.session, info, now, start);

    events(
        PeerEvent::Ready(Ready {
            peer_id: me.peer_id,
            name: me.name.clone(),
            listen: bound,
            advertise: me.advertise,
            share: net::share_address(me.advertise),
            stems: stem_names.clone(),
            output: described,
            joining: !opts.joins.is_empty(),
        }),
        &stem_names,
    );
    info!(peer_id = %me.peer_id, listen = %bound, advertise = %me.advertise, "ready");

    let secret = opts.secret.map(Arc::new);
    tokio::spawn(accept_loop(
        listener,
        me.clone(),
        secret.clone(),
        tx.clone(),
    ));
    let push_status = match control {
        Control::Stdin => {
            tokio::spawn(stdin_loop(tx.clone()));
            tokio::spawn(signal_loop(tx.clone()));
            false
        }
        Control::Channel(commands) => {
            tokio::spawn(command_loop(commands, tx.clone()));
            true
        }
    };

    let mut core = Core {
        clock,
        session,
        me,
        secret,
        engine: engine_handle,
        retired,
        running: Some(running),
        stems: stem_names,
        links: HashMap::new(),
        next_conn: 0,
        dialing: HashSet::new(),
        backoff: HashMap::new(),
        joins: opts
            .joins
            .into_iter()
            .map(|spec| JoinTarget {
                spec,
                next_try_ns: now,
                backoff_ns: FIRST_BACKOFF_NS,
                in_flight: false,
                last_error: None,
            })
            .collect(),
        inputs: tx,
        last_map: None,
        last_scheduled: None,
        events,
        writers: Vec::new(),
        quit: false,
        malformed_frames: 0,
        push_status,
        room,
        seek_hint_until_ns: None,
    };
    for e in room_errors {
        core.error(e);
    }
    if let Some((_, state)) = core.session.latest() {
        // A new session: play its (paused) state from now on.
        let state = state.clone();
        core.schedule(0, &state);
    }
    core.run(rx).await;
    Ok(())
}

/// Something for the core to handle.
enum Input {
    /// A connection finished its handshake.
    Linked {
        conn: Connection,
        peer: Handshaken,
        /// The dial that made it (`None`: accepted).
        dialed: Option<DialTarget>,
    },
    /// A dial did not produce a link.
    DialFailed {
        target: DialTarget,
        error: LinkError,
    },
    /// A message (or a malformed frame) from an established link.
    Read {
        conn: u64,
        peer: PeerId,
        read: Read,
    },
    /// An established link closed (its reader ended).
    Closed {
        conn: u64,
        peer: PeerId,
        error: LinkError,
    },
    Line(String),
    Command(Command),
    StdinClosed,
    Signal(&'static str),
    /// A remote stem's decoder is waiting for a chunk.
    RoomWake,
}

#[derive(Clone, Debug)]
enum DialTarget {
    /// A member the session asked for.
    Member(PeerId),
    /// The i-th `--join` address.
    Join(usize),
}

struct LinkSlot {
    conn: u64,
    dialer: PeerId,
    tx: mpsc::Sender<Message>,
    reader: AbortHandle,
}

struct JoinTarget {
    spec: String,
    next_try_ns: i64,
    backoff_ns: i64,
    in_flight: bool,
    last_error: Option<String>,
}

struct Core {
    clock: LocalClock,
    session: Session,
    me: Identity,
    secret: Option<Arc<Secret>>,
    engine: EngineHandle,
    retired: Retired,
    running: Option<Running>,
    stems: Vec<String>,
    links: HashMap<PeerId, LinkSlot>,
    next_conn: u64,
    /// Members being dialled.
    dialing: HashSet<PeerId>,
    /// Members whose last dial failed: (not before, current backoff).
    backoff: HashMap<PeerId, (i64, i64)>,
    joins: Vec<JoinTarget>,
    inputs: mpsc::Sender<Input>,
    last_map: Option<SessionMap>,
    last_scheduled: Option<SessionState>,
    events: EventSink,
    writers: Vec<JoinHandle<()>>,
    quit: bool,
    malformed_frames: u64,
    /// Emit a status event every tick (for the window).
    push_status: bool,
    /// The stem exchange and this peer's channels.
    room: RoomShell,
    /// A seek target seen in a vote stays a fetch priority until then.
    seek_hint_until_ns: Option<i64>,
}

impl Core {
    async fn run(&mut self, mut rx: mpsc::Receiver<Input>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.quit {
            let wake = self.session.poll_timeout().map(|t| self.instant_at(t));
            tokio::select! {
                input = rx.recv() => match input {
                    Some(input) => self.handle(input),
                    None => break,
                },
                _ = sleep_until_opt(wake) => {
                    let now = self.clock.now_ns();
                    self.session.handle_timeout(now);
                }
                _ = tick.tick() => self.housekeeping(),
            }
            self.drain();
        }
        self.shutdown().await;
    }

    /// The tokio instant of local time `local_ns`.
    fn instant_at(&self, local_ns: i64) -> tokio::time::Instant {
        let ahead_ns = self.clock.mono_at(local_ns) - monotonic_ns();
        tokio::time::Instant::now() + Duration::from_nanos(ahead_ns.max(0) as u64)
    }

    fn emit(&mut self, e: PeerEvent) {
        (self.events)(e, &self.stems);
    }

    fn error(&mut self, message: String) {
        warn!("{message}");
        self.emit(PeerEvent::Error(message));
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Linked { conn, peer, dialed } => self.on_linked(conn, peer, dialed),
            Input::DialFailed { target, error } => self.on_dial_failed(target, error),
            Input::Read { conn, peer, read } => {
                if self.links.get(&peer).is_none_or(|l| l.conn != conn) {
                    return; // a link we already replaced or closed
                }
                match read {
                    Read::Message {
                        message: Message::Room(room),
                        ..
                    } => {
                        let now = self.clock.now_ns();
                        self.room.exchange.handle_message(now, peer, room);
                    }
                    Read::Message { message, at_ns } => {
                        // A heartbeat without a map carries no real vote.
                        if let Message::Heartbeat(hb) = &message
                            && hb.map.is_some()
                        {
                            let votes =
                                std::iter::once(hb.vote).chain(hb.relayed.iter().map(|v| v.event));
                            for event in votes {
                                self.note_seek(event);
                            }
                        }
                        self.session.handle_message(at_ns, peer, message)
                    }
                    Read::Dropped(e) => {
                        self.malformed_frames += 1;
                        warn!(%peer, "dropped a malformed frame: {e}");
                    }
                }
            }
            Input::Closed { conn, peer, error } => {
                if self.links.get(&peer).is_some_and(|l| l.conn == conn) {
                    info!(%peer, "link closed: {error}");
                    self.close_link(peer);
                    let now = self.clock.now_ns();
                    self.session.handle_link_down(now, peer);
                }
            }
            Input::Line(line) => match control::parse_command(&line, &self.stems) {
                Ok(None) => {}
                Ok(Some(command)) => self.on_command(command),
                Err(e) => self.error(e.to_string()),
            },
            Input::Command(command) => self.on_command(command),
            Input::StdinClosed => {
                info!("stdin closed: running until quit by a signal");
            }
            Input::Signal(name) => {
                info!("{name}: leaving the session");
                self.quit = true;
            }
            Input::RoomWake => {
                let now = self.clock.now_ns();
                self.room.refocus(now);
            }
        }
    }

    /// A seek voted (here or elsewhere) and not yet applied: its target's
    /// bytes become a fetch priority for a while.
    fn note_seek(&mut self, event: Event) {
        if let Event::Seek { position_ns } = event {
            let now = self.clock.now_ns();
            self.room
                .playhead
                .set_seek_hint(Some(ns_to_frames(position_ns, ENGINE_RATE_HZ)));
            self.seek_hint_until_ns = Some(now + SEEK_HINT_NS);
            self.room.refocus(now);
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Vote(event) => match self.session.vote(event) {
                Ok(()) => {
                    self.note_seek(event);
                    self.emit(PeerEvent::Voted(event))
                }
                Err(e) => self.error(e.to_string()),
            },
            Command::Solo { stem, on } => {
                if stem >= self.stems.len() || !self.engine.solo.set(stem, on) {
                    self.error(format!("solo: this peer has no stem {stem}"));
                }
            }
            Command::Status => {
                let s = self.status();
                self.emit(PeerEvent::Status(Box::new(s)));
            }
            Command::Peers => {
                let now = self.clock.now_ns();
                let peers = self.session.peers(now);
                self.emit(PeerEvent::Peers(peers));
            }
            Command::Quit => self.quit = true,
        }
    }

    fn on_linked(&mut self, conn: Connection, hs: Handshaken, dialed: Option<DialTarget>) {
        let peer = hs.info.peer_id;
        match dialed {
            Some(DialTarget::Member(asked)) => {
                self.dialing.remove(&asked);
            }
            Some(DialTarget::Join(i)) => {
                if let Some(j) = self.joins.get_mut(i) {
                    // Ready to be tried again if this peer ends up alone.
                    j.in_flight = false;
                    j.backoff_ns = FIRST_BACKOFF_NS;
                    j.last_error = None;
                }
            }
            None => {}
        }
        self.backoff.remove(&peer);
        if let Some(existing) = self.links.get(&peer) {
            let preferred = self.me.peer_id.min(peer);
            if existing.dialer == preferred && hs.dialer != preferred {
                debug!(%peer, "a second connection lost to the one dialled by {preferred}");
                linger(conn);
                return;
            }
            debug!(%peer, "a newer or preferred connection replaces the link");
            if let Some(old) = self.links.remove(&peer) {
                // Its reads stop now; its socket lingers (its writer lives
                // until `tx` is dropped).
                old.reader.abort();
                linger(old.tx);
                // Requests on the old connection will not be answered here.
                let now = self.clock.now_ns();
                self.room.exchange.handle_link_down(now, peer);
            }
        }
        let id = self.next_conn;
        self.next_conn += 1;
        let (reader, writer) = conn.split(self.clock);
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let inputs = self.inputs.clone();
        let reader = tokio::spawn(read_loop(reader, id, peer, inputs)).abort_handle();
        self.writers.retain(|w| !w.is_finished());
        self.writers
            .push(tokio::spawn(write_loop(writer, rx, peer)));
        self.links.insert(
            peer,
            LinkSlot {
                conn: id,
                dialer: hs.dialer,
                tx,
                reader,
            },
        );
        info!(%peer, name = %hs.info.name, addr = %hs.info.addr, "link up");
        let now = self.clock.now_ns();
        self.session.handle_link_up(now, hs.info);
        self.room.exchange.handle_link_up(now, peer);
    }

    fn on_dial_failed(&mut self, target: DialTarget, error: LinkError) {
        let now = self.clock.now_ns();
        match target {
            DialTarget::Member(peer) => {
                self.dialing.remove(&peer);
                let backoff = self
                    .backoff
                    .get(&peer)
                    .map_or(FIRST_BACKOFF_NS, |&(_, b)| (b * 2).min(MAX_BACKOFF_NS));
                self.backoff.insert(peer, (now + backoff, backoff));
                debug!(%peer, "dial failed: {error}; next try in {} ms", backoff / 1_000_000);
                if matches!(
                    error,
                    LinkError::WrongPassphrase
                        | LinkError::NeedsPassphrase
                        | LinkError::PeerHasNoPassphrase
                        | LinkError::Version { .. }
                ) {
                    self.error(format!("peer {peer} refused: {error}"));
                }
            }
            DialTarget::Join(i) => {
                let Some(j) = self.joins.get_mut(i) else {
                    return;
                };
                j.in_flight = false;
                j.next_try_ns = now + j.backoff_ns;
                let retry_ms = j.backoff_ns / 1_000_000;
                j.backoff_ns = (j.backoff_ns * 2).min(MAX_BACKOFF_NS);
                let text = error.to_string();
                // Say it once per kind of failure, not on every retry.
                if j.last_error.as_deref() != Some(text.as_str()) {
                    j.last_error = Some(text.clone());
                    let spec = j.spec.clone();
                    self.error(format!(
                        "cannot join via {spec}: {text} (retrying every {retry_ms} ms or more)"
                    ));
                }
            }
        }
    }

    /// Closes the link to `peer`, if any, without telling the session.
    fn close_link(&mut self, peer: PeerId) {
        if let Some(slot) = self.links.remove(&peer) {
            slot.reader.abort();
            // Dropping `tx` ends the writer, which shuts the socket down.
            let now = self.clock.now_ns();
            self.room.exchange.handle_link_down(now, peer);
        }
    }

    fn housekeeping(&mut self) {
        self.retired.collect();
        let now = self.clock.now_ns();
        if self.seek_hint_until_ns.is_some_and(|t| now >= t) {
            self.seek_hint_until_ns = None;
            self.room.playhead.set_seek_hint(None);
        }
        self.room.exchange.handle_timeout(now);
        self.room.refocus(now);
        if self.push_status {
            let s = self.status();
            self.emit(PeerEvent::Status(Box::new(s)));
        }
        let errors: Vec<OutputError> = match &self.running {
            Some(r) => r.errors.try_iter().collect(),
            None => vec![],
        };
        for e in errors {
            self.error(format!("output: {e}"));
        }
        // Joins are retried while this peer is linked to nobody.
        if !self.links.is_empty() {
            return;
        }
        let now = self.clock.now_ns();
        for i in 0..self.joins.len() {
            let j = &mut self.joins[i];
            if j.in_flight || now < j.next_try_ns {
                continue;
            }
            j.in_flight = true;
            let spec = j.spec.clone();
            self.spawn_dial(DialTarget::Join(i), DialAddr::Spec(spec));
        }
    }

    fn spawn_dial(&self, target: DialTarget, addr: DialAddr) {
        let me = self.me.clone();
        let secret = self.secret.clone();
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let result = async {
                let addr = match addr {
                    DialAddr::Addr(a) => a,
                    DialAddr::Spec(spec) => resolve(&spec).await?,
                };
                let mut conn = net::connect(addr).await?;
                let peer = net::handshake_dialer(&mut conn, &me, secret.as_deref()).await?;
                Ok::<_, LinkError>((conn, peer))
            }
            .await;
            let input = match result {
                Ok((conn, peer)) => Input::Linked {
                    conn,
                    peer,
                    dialed: Some(target),
                },
                Err(error) => Input::DialFailed { target, error },
            };
            let _ = inputs.send(input).await;
        });
    }

    /// Sends what the session queued and acts on what it reported.
    fn drain(&mut self) {
        while let Some(t) = self.session.poll_transmit() {
            self.send(t.to, t.message);
        }
        while let Some(e) = self.session.poll_event() {
            self.on_session_event(e);
        }
        loop {
            let mut idle = true;
            while let Some(t) = self.room.exchange.poll_transmit() {
                idle = false;
                self.send(t.to, Message::Room(t.room));
            }
            while let Some(e) = self.room.exchange.poll_event() {
                idle = false;
                self.on_room_event(e);
            }
            if idle {
                break;
            }
        }
        // Link changes made while sending may have queued session messages.
        while let Some(t) = self.session.poll_transmit() {
            self.send(t.to, t.message);
        }
        if let Some(map) = self.session.map()
            && self.last_map != Some(map)
        {
            self.last_map = Some(map);
            if self.engine.set_map(map).is_err() {
                warn!("the engine's queue is full: a map update was lost");
            }
        }
    }

    /// Queues `message` for `peer`'s link; a link that cannot take it is
    /// closed.
    fn send(&mut self, peer: PeerId, message: Message) {
        let Some(slot) = self.links.get(&peer) else {
            return;
        };
        if let Err(e) = slot.tx.try_send(message) {
            match e {
                mpsc::error::TrySendError::Full(_) => {
                    warn!(%peer, "not reading ({LINK_QUEUE} messages queued): closing the link");
                }
                mpsc::error::TrySendError::Closed(_) => {
                    debug!(%peer, "writer gone");
                }
            }
            self.close_link(peer);
            let now = self.clock.now_ns();
            self.session.handle_link_down(now, peer);
        }
    }

    fn on_room_event(&mut self, e: ExchangeEvent) {
        let now = self.clock.now_ns();
        match e {
            ExchangeEvent::Song { stems, from } => {
                if let Some(from) = from {
                    info!(%from, stems = stems.len(), "learned the song");
                    let (streamers, errors) = self.room.adopt_song(now, &stems);
                    // Channels are renumbered: solos set before mean nothing.
                    self.engine.solo.clear();
                    if self.engine.set_stems(streamers).is_err() {
                        self.error(
                            "the audio engine's queue is full: the song's stems were not set"
                                .into(),
                        );
                    }
                    self.stems = stems.iter().map(|s| s.name.clone()).collect();
                    for e in errors {
                        self.error(e);
                    }
                }
                let song = self.room.song_stems();
                self.emit(PeerEvent::Song(song));
            }
            ExchangeEvent::Serve {
                to,
                request_id,
                stem,
                offset,
                len,
            } => {
                let op = match self.room.read(&stem, offset, len) {
                    Ok(data) => {
                        self.room.bytes_served += data.len() as u64;
                        Operation::ChunkData { stem, offset, data }
                    }
                    Err(reason) => {
                        warn!(%to, "cannot serve a chunk: {reason}");
                        Operation::ChunkRefused {
                            stem,
                            offset,
                            reason: reason.chars().take(200).collect(),
                        }
                    }
                };
                self.send(to, Message::Room(Room { request_id, op }));
            }
            ExchangeEvent::Chunk { stem, chunk, data } => self.room.put_chunk(stem, chunk, &data),
            ExchangeEvent::Complete { stem } => {
                if let Some(problem) = self.room.complete(now, stem) {
                    self.error(problem);
                }
                let song = self.room.song_stems();
                self.emit(PeerEvent::Song(song));
            }
            ExchangeEvent::Refused { from, what } => warn!(%from, "stem exchange: {what}"),
        }
    }

    fn on_session_event(&mut self, e: SessionEvent) {
        match e {
            SessionEvent::Dial(info) => {
                let peer = info.peer_id;
                let now = self.clock.now_ns();
                let backing_off = self.backoff.get(&peer).is_some_and(|&(t, _)| now < t);
                if !self.links.contains_key(&peer) && !self.dialing.contains(&peer) && !backing_off
                {
                    self.dialing.insert(peer);
                    self.spawn_dial(DialTarget::Member(peer), DialAddr::Addr(info.addr));
                }
            }
            SessionEvent::Disconnect { peer } => self.close_link(peer),
            SessionEvent::PeerUp(info) => self.emit(PeerEvent::PeerUp(info)),
            SessionEvent::PeerDown { peer, reason } => {
                self.close_link(peer);
                info!(%peer, ?reason, "peer down");
                self.emit(PeerEvent::PeerDown { peer, reason });
            }
            SessionEvent::Synced { root } => {
                info!(%root, "synced");
                self.emit(PeerEvent::Synced { root });
            }
            SessionEvent::RootChanged { root } => info!(%root, "now following"),
            SessionEvent::Decided(d) => {
                if self.last_scheduled.as_ref() != Some(&d.state) {
                    self.schedule(d.apply_at_session_ns, &d.state);
                }
                if d.outcomes.iter().any(|o| o.vote.event != Event::None) {
                    let apply_at_mono_ns = self.mono_of_session(d.apply_at_session_ns);
                    self.emit(PeerEvent::Decided {
                        decision: d,
                        apply_at_mono_ns,
                    });
                }
            }
            SessionEvent::Adopted {
                round,
                apply_at_session_ns,
                state,
                from,
            } => {
                self.schedule(apply_at_session_ns, &state);
                let apply_at_mono_ns = self.mono_of_session(apply_at_session_ns);
                self.emit(PeerEvent::Adopted {
                    round,
                    apply_at_session_ns,
                    state,
                    from,
                    apply_at_mono_ns,
                });
            }
            SessionEvent::Superseded { vote, by } => self.emit(PeerEvent::Superseded { vote, by }),
            SessionEvent::VoteDropped { event, reason } => {
                self.emit(PeerEvent::VoteDropped { event, reason })
            }
            SessionEvent::Ignored { from, reason } => debug!(%from, ?reason, "ignored"),
        }
    }

    /// The real monotonic instant (as `--report`'s `mono_ns`) at which
    /// session time `session_ns` comes on this peer, if synced: lets a bench
    /// time a vote from command to sound.
    fn mono_of_session(&self, session_ns: i64) -> Option<i64> {
        let map = self.session.map()?;
        Some(self.clock.mono_at(map.local_ns_at(session_ns)))
    }

    fn schedule(&mut self, apply_at_session_ns: i64, state: &SessionState) {
        if self.engine.schedule(apply_at_session_ns, state).is_err() {
            self.error("the audio engine's queue is full: a decision was not scheduled".into());
            return;
        }
        self.last_scheduled = Some(state.clone());
    }

    fn status(&mut self) -> Status {
        let now = self.clock.now_ns();
        let all = self.engine.all();
        let buffering = (self.engine.meters.stems.iter().enumerate())
            .filter(|(_, m)| m.buffering())
            .map(|(i, _)| i)
            .collect();
        let (xruns, blocks) = self.running.as_ref().map_or((0, 0), |r| {
            (r.stats.xruns.load(Relaxed), r.stats.blocks.load(Relaxed))
        });
        let latest = self.session.latest();
        Status {
            peer_id: self.me.peer_id,
            playing: all.playing,
            pos_frames: all.pos_frames,
            synced: self.session.map().is_some(),
            root: self.session.root(),
            session_ns: self.session.session_ns_at(now),
            round: latest.map(|(r, _)| r),
            state: latest.map(|(_, s)| s.clone()),
            peers: self.session.peers(now),
            blocks,
            xruns,
            underruns: self.engine.stats.underruns.load(Relaxed),
            dropped_decisions: self.engine.stats.dropped_commands.load(Relaxed),
            buffering,
            malformed_frames: self.malformed_frames,
            heartbeats_on_time: self.session.stats().heartbeats_on_time,
            heartbeats_late: self.session.stats().heartbeats_late,
            song: self.room.song_stems(),
            exchange: self.room.exchange.stats(),
            bytes_served: self.room.bytes_served,
        }
    }

    async fn shutdown(&mut self) {
        self.session.leave("quit");
        self.drain();
        let peers: Vec<PeerId> = self.links.keys().copied().collect();
        for p in peers {
            self.close_link(p);
        }
        let writers = std::mem::take(&mut self.writers);
        let _ = tokio::time::timeout(QUIT_FLUSH, async {
            for w in writers {
                let _ = w.await;
            }
        })
        .await;
        if let Some(r) = self.running.take() {
            r.stop();
        }
        self.room.close();
        self.emit(PeerEvent::Bye);
    }
}

/// Keeps the losing one of two connections to a peer open, unread, for a
/// while before closing it (by dropping `held`: the connection itself, or
/// the sender that keeps its writer alive). The other end may not have seen
/// the winner yet, and closing at once would make it report the peer down
/// and up again.
fn linger<T: Send + 'static>(held: T) {
    tokio::spawn(async move {
        tokio::time::sleep(net::HANDSHAKE_TIMEOUT).await;
        drop(held);
    });
}

enum DialAddr {
    Addr(SocketAddr),
    /// A `--join` argument: `host:port`, resolved when dialled.
    Spec(String),
}

async fn resolve(spec: &str) -> Result<SocketAddr, LinkError> {
    let mut addrs = tokio::net::lookup_host(spec).await.map_err(|e| {
        LinkError::Io(std::io::Error::new(
            e.kind(),
            format!("cannot resolve {spec:?} (expected HOST:PORT): {e}"),
        ))
    })?;
    addrs.next().ok_or_else(|| {
        LinkError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{spec:?} resolves to no address"),
        ))
    })
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    me: Identity,
    secret: Option<Arc<Secret>>,
    inputs: mpsc::Sender<Input>,
) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: pause, then go on.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            warn!(%remote, "{MAX_HANDSHAKES} handshakes under way: connection closed");
            continue;
        };
        let me = me.clone();
        let secret = secret.clone();
        let inputs = inputs.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut conn = match Connection::new(stream) {
                Ok(c) => c,
                Err(e) => return debug!(%remote, "connection lost at once: {e}"),
            };
            match net::handshake_acceptor(&mut conn, &me, secret.as_deref()).await {
                Ok(peer) => {
                    let _ = inputs
                        .send(Input::Linked {
                            conn,
                            peer,
                            dialed: None,
                        })
                        .await;
                }
                Err(e) => warn!(%remote, "refused a connection: {e}"),
            }
        });
    }
}

async fn read_loop(
    mut reader: net::LinkReader,
    conn: u64,
    peer: PeerId,
    inputs: mpsc::Sender<Input>,
) {
    let mut batch = Vec::new();
    loop {
        let result = reader.read(|r| batch.push(r)).await;
        for read in batch.drain(..) {
            if inputs.send(Input::Read { conn, peer, read }).await.is_err() {
                return;
            }
        }
        if let Err(error) = result {
            let _ = inputs.send(Input::Closed { conn, peer, error }).await;
            return;
        }
    }
}

async fn write_loop(mut writer: net::LinkWriter, mut rx: mpsc::Receiver<Message>, peer: PeerId) {
    let mut outbox = net::Outbox::default();
    let mut batch = Vec::new();
    let mut open = true;
    loop {
        if outbox.is_empty() {
            match rx.recv().await {
                Some(m) => outbox.push(m),
                None => break,
            }
        }
        while outbox.has_room() {
            match rx.try_recv() {
                Ok(m) => outbox.push(m),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        outbox.next_batch(&mut batch);
        match tokio::time::timeout(WRITE_TIMEOUT, writer.send(&batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return debug!(%peer, "write failed: {e}"),
            // Not reading: drop the socket rather than hold it forever.
            Err(_) => return debug!(%peer, "write stalled for {WRITE_TIMEOUT:?}"),
        }
        if !open && outbox.is_empty() {
            break;
        }
    }
    writer.shutdown().await;
}

/// Forwards the window's commands to the core; when the window is gone, the
/// peer quits.
async fn command_loop(mut commands: mpsc::Receiver<Command>, inputs: mpsc::Sender<Input>) {
    while let Some(c) = commands.recv().await {
        if inputs.send(Input::Command(c)).await.is_err() {
            return;
        }
    }
    let _ = inputs.send(Input::Command(Command::Quit)).await;
}

async fn stdin_loop(inputs: mpsc::Sender<Input>) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        let input = match lines.next_line().await {
            Ok(Some(l)) => Input::Line(l),
            Ok(None) | Err(_) => Input::StdinClosed,
        };
        let closed = matches!(input, Input::StdinClosed);
        if inputs.send(input).await.is_err() || closed {
            return;
        }
    }
}

/// Turns SIGINT and SIGTERM into a graceful quit.
async fn signal_loop(inputs: mpsc::Sender<Input>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        warn!("cannot install signal handlers");
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    let _ = inputs.send(Input::Signal(name)).await;
}
