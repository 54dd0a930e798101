//! The core task: the only owner of the [`Session`], the room shell and the
//! engine handle. It takes [`Input`]s one at a time from one bounded channel,
//! passes the local time to every call, sleeps until the session or the
//! links want it, and turns what the session, the links and the exchange
//! report into link actions, engine schedules, worker jobs and
//! [`PeerEvent`]s. It never blocks: slow work goes to the [`Worker`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{debug, info, warn};

use crate::audio::output::{OutputError, Running};
use crate::audio::{ENGINE_RATE_HZ, EngineHandle, Retired};
use crate::host_clock::{LocalClock, monotonic_ns};
use crate::protocol::message::{Message, Operation, PeerInfo, Room, StemHash};
use crate::protocol::{
    Event, PeerId, ROUND_NS, Round, START_VERSION, Session, SessionEvent, SessionMap, SessionState,
    SongRef, lead, ns_to_frames,
};
use crate::room::ExchangeEvent;
use crate::runtime::auth::Secret;
use crate::runtime::control::{self, Command};
use crate::runtime::events::{PeerEvent, Status};
use crate::runtime::library::{self, Added, LibraryShell, Loaded};
use crate::runtime::net::{self, Connection, Handshaken, Identity, LinkError, Read};
use crate::runtime::room::{CacheChecked, Described, RoomShell, Verified, VersionStem};

use super::EventSink;
use super::links::{Action, ConnId, DialTarget, Links};
use super::queues;
use super::tasks;
use super::worker::Worker;

/// Messages waiting for one link's writer; a peer that lets this many pile up
/// is not reading, and its link is closed.
const LINK_QUEUE: usize = 1024;
/// Housekeeping: freeing retired engine states, output errors, the
/// exchange's timers, the window's status.
const TICK: Duration = Duration::from_millis(100);
/// States reach the engine in time order unless time moved by more than
/// this (see `Core::in_order`): the longest lead and a round.
const MAX_REORDER_NS: i64 = lead::LEAD_MAX_MS as i64 * 1_000_000 + ROUND_NS;
/// The output's render-ahead is kept for this many ticks (10 s).
const RENDER_AHEAD_TICKS: usize = 100;
/// Added to the render-ahead for the session's guard: a decision reaches the
/// engine within this of its instant (the core's wake-up, the ring).
const GUARD_MARGIN_NS: i64 = 5_000_000;
/// How long writers get to flush goodbyes when the peer quits.
const QUIT_FLUSH: Duration = Duration::from_millis(300);
/// How long a quitting peer waits for its library file to be written.
const LIBRARY_FLUSH: Duration = Duration::from_secs(2);
/// A seek target seen in a vote is a fetch priority for this long (it
/// applies within a round and the lead).
const SEEK_HINT_NS: i64 = 1_500_000_000;

/// Something for the core to handle.
pub(super) enum Input {
    /// A connection finished its handshake.
    Connected {
        conn: Connection,
        peer: Handshaken,
        /// The dial that made it (`None`: accepted).
        dialed: Option<DialTarget>,
    },
    /// A dial did not produce a connection.
    DialFailed {
        target: DialTarget,
        error: LinkError,
    },
    /// A message (or a malformed frame) from a connection.
    Read {
        conn: ConnId,
        peer: PeerId,
        read: Read,
    },
    /// A connection closed (its reader ended).
    Closed {
        conn: ConnId,
        peer: PeerId,
        error: LinkError,
    },
    Line(String),
    /// A command from the window ([`super::PeerHandle::send`]).
    Command(Command),
    StdinClosed,
    Signal(&'static str),
    /// A remote stem's decoder is waiting for a chunk.
    RoomWake,
    /// The worker hashed this peer's files.
    Described(Described),
    /// The worker read what the cache holds of a song learned from a peer.
    /// A cached file a song plays from, hashed on the worker.
    CacheChecked(CacheChecked),
    /// The worker wrote the set list file.
    SetListKept(Result<(), String>),
    Verified(Verified),
    /// The worker read the library kept between runs.
    LibraryLoaded(Loaded),
    /// The worker described files to add to the library.
    Added(Added),
    /// The worker wrote the library file.
    LibrarySaved(Result<(), String>),
    /// An mDNS announcement was heard (from `discovery`'s browsing task).
    Sighted {
        instance: String,
        addrs: Vec<std::net::SocketAddr>,
        announcement: Result<crate::runtime::lan::Announcement, crate::runtime::lan::LanError>,
    },
    /// An mDNS announcement was withdrawn or expired.
    Unsighted(String),
    /// The mDNS daemon met a problem (a socket it could not open).
    LanTrouble(String),
    /// The mDNS daemon ended our browsing (we read too slowly).
    BrowseEnded,
    /// The worker read a chunk to serve.
    ChunkRead {
        to: PeerId,
        request_id: u32,
        stem: StemHash,
        offset: u64,
        data: Result<Vec<u8>, String>,
    },
}

/// What the core holds of one connection.
pub(super) enum Conn {
    /// Handshaken, not (yet) a link; or lingering, unread.
    Idle { conn: Connection, info: PeerInfo },
    /// A link's tasks (the writer lives while `tx` does).
    Link {
        tx: mpsc::Sender<Message>,
        reader: AbortHandle,
        /// Bytes queued for its writer and not written yet (about: see
        /// `net::approx_wire_bytes`); the writer takes off what it writes.
        queued: Arc<AtomicUsize>,
    },
}

pub(super) struct Core {
    pub clock: LocalClock,
    pub session: Session,
    pub me: Identity,
    pub secret: Option<std::sync::Arc<Secret>>,
    pub engine: EngineHandle,
    pub retired: Retired,
    pub running: Option<Running>,
    /// The latest instant a state was given to the engine for.
    pub last_scheduled_at_ns: Option<i64>,
    /// The output's render-ahead, one entry a tick (see `follow_render_ahead`).
    pub render_ahead_ns: VecDeque<i64>,
    pub stems: Vec<String>,
    pub links: Links,
    pub conns: HashMap<ConnId, Conn>,
    pub next_conn: ConnId,
    pub inputs: mpsc::Sender<Input>,
    pub worker: Worker,
    pub last_map: Option<SessionMap>,
    pub last_scheduled: Option<SessionState>,
    pub events: EventSink,
    pub writers: Vec<JoinHandle<()>>,
    pub quit: bool,
    pub malformed_frames: u64,
    /// Emit a status event every tick (for the window).
    pub push_status: bool,
    /// Resolves when the window's handle is gone (then the peer quits).
    pub handle_gone: Option<oneshot::Receiver<()>>,
    /// The stem exchange and this peer's channels.
    pub room: RoomShell,
    /// The session library.
    pub library: LibraryShell,
    /// The name of the song this peer's start stems are, in the library.
    pub start_song: String,
    /// A seek target seen in a vote stays a fetch priority until then.
    pub seek_hint_until_ns: Option<i64>,
    /// The current song and set list last reported (a `setlist` event on
    /// each change).
    pub last_setlist: Option<(SongRef, Vec<SongRef>)>,
    /// The last song this peer could not play (said once).
    pub unplayable: Option<SongRef>,
    /// The song whose channels the room has built (the engine switches to
    /// them at the instant it was decided for).
    pub playing: Option<SongRef>,
    /// When the song switched to last starts playing (session ns): its
    /// decoders hold its start until then.
    pub go_live_at: Option<i64>,
    /// Where the set list is kept between runs.
    pub data_dir: Option<std::path::PathBuf>,
    /// Peers and what they sent that no honest peer sends, said once each
    /// (at most [`MAX_OFFENDERS_SAID`]).
    pub offenders: std::collections::BTreeSet<(PeerId, &'static str)>,
    /// LAN discovery: announcing this session, hearing others.
    pub lan: super::discovery::Lan,
}

/// Offences said at warn level (one line each); later ones go to debug only.
const MAX_OFFENDERS_SAID: usize = 256;

impl Core {
    pub async fn run(&mut self, mut rx: mpsc::Receiver<Input>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.quit {
            let wake = (self.session.poll_timeout().into_iter())
                .chain(self.links.poll_timeout())
                .min()
                .map(|t| self.instant_at(t));
            tokio::select! {
                input = rx.recv() => match input {
                    Some(input) => self.handle(input),
                    None => break,
                },
                _ = sleep_until_opt(wake) => {
                    let now = self.clock.now_ns();
                    if self.session.poll_timeout().is_some_and(|t| t <= now) {
                        self.session.handle_timeout(now);
                    }
                    self.links.handle_timeout(now);
                    self.apply_links();
                }
                _ = tick.tick() => self.housekeeping(),
                _ = handle_dropped(&mut self.handle_gone) => {
                    info!("the window's handle is gone: leaving the session");
                    self.handle_gone = None;
                    self.quit = true;
                }
            }
            self.drain();
        }
        self.shutdown(&mut rx).await;
    }

    /// The tokio instant of local time `local_ns`.
    fn instant_at(&self, local_ns: i64) -> tokio::time::Instant {
        let ahead_ns = self.clock.mono_at(local_ns) - monotonic_ns();
        tokio::time::Instant::now() + Duration::from_nanos(ahead_ns.max(0) as u64)
    }

    pub(super) fn emit(&mut self, e: PeerEvent) {
        (self.events)(e, &self.stems);
    }

    pub fn error(&mut self, message: String) {
        warn!("{message}");
        self.emit(PeerEvent::Error(message));
    }

    fn handle(&mut self, input: Input) {
        let now = self.clock.now_ns();
        match input {
            Input::Connected { conn, peer, dialed } => {
                let id = self.next_conn;
                self.next_conn += 1;
                let peer_id = peer.info.peer_id;
                (self.conns).insert(
                    id,
                    Conn::Idle {
                        conn,
                        info: peer.info,
                    },
                );
                self.links.handle_connected(now, id, peer_id, dialed);
                self.apply_links();
            }
            Input::DialFailed { target, error } => {
                debug!(?target, "dial failed: {error}");
                self.links.handle_dial_failed(now, target, &error);
                self.apply_links();
            }
            Input::Read { conn, peer, read } => {
                if !self.links.is_current(peer, conn) {
                    return; // a link we already replaced or closed
                }
                self.on_read(peer, read);
            }
            Input::Closed { conn, peer, error } => {
                if self.links.is_current(peer, conn) {
                    info!(%peer, "link closed: {error}");
                }
                self.links.handle_closed(now, conn);
                self.apply_links();
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
            Input::RoomWake => self.room.refocus(now),
            Input::Described(mut d) => {
                let hosted = d.take_hosted();
                for e in self.room.described(now, d) {
                    self.error(e);
                }
                if !hosted.is_empty() {
                    let song = self.start_song.clone();
                    self.library.add_start(&song, hosted, &mut self.room);
                }
                // The exchange has started: the hosts it heard of meanwhile
                // show in the library now.
                self.library.touch();
            }
            Input::LibraryLoaded(loaded) => {
                for e in self.library.loaded(loaded, &mut self.room) {
                    self.error(e);
                }
            }
            Input::Added(added) => {
                for (path, reason) in added.skipped() {
                    warn!(path = %path.display(), "not added: {reason}");
                    self.emit(PeerEvent::Skipped {
                        path: path.clone(),
                        reason: reason.clone(),
                    });
                }
                for note in added.notes() {
                    self.error(note.clone());
                }
                match self.library.added(&added, &mut self.room) {
                    Ok(Some(id)) => info!(song = added.song(), %id, "added to the library"),
                    Ok(None) => self.error(format!("add: nothing was added to {}", added.song())),
                    Err(e) => self.error(format!("add: {e}")),
                }
            }
            Input::LibrarySaved(result) => {
                if let Err(e) = result {
                    self.error(e);
                }
                self.library.saved();
                self.save_library(); // if it changed meanwhile
            }
            Input::SetListKept(result) => {
                if let Err(e) = result {
                    self.error(e);
                }
            }
            Input::CacheChecked(c) => {
                if let Some(problem) = self.room.cache_checked(c) {
                    self.error(problem);
                }
                self.library.touch();
            }
            Input::Verified(v) => {
                if let Some(problem) = self.room.verified(now, v) {
                    self.error(problem);
                }
                let song = self.room.song_stems();
                self.emit(PeerEvent::Song(song));
                self.library.touch();
            }
            Input::Sighted {
                instance,
                addrs,
                announcement,
            } => self.on_sighted(instance, addrs, announcement),
            Input::Unsighted(instance) => self.on_unsighted(instance),
            Input::LanTrouble(problem) => self.on_lan_trouble(problem),
            Input::BrowseEnded => self.on_browse_ended(),
            Input::ChunkRead {
                to,
                request_id,
                stem,
                offset,
                data,
            } => {
                self.room.handle_served(to);
                let op = match data {
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
        }
    }

    fn on_read(&mut self, peer: PeerId, read: Read) {
        match read {
            Read::Message {
                message: Message::Room(room),
                ..
            } => {
                let now = self.clock.now_ns();
                match room.op {
                    Operation::LibraryDigest { .. } | Operation::LibraryRecords { .. } => {
                        self.library.handle_message(now, peer, room.op)
                    }
                    _ => {
                        if matches!(room.op, Operation::Have { .. }) {
                            self.library.touch(); // hosts changed
                        }
                        self.room.handle_message(now, peer, room)
                    }
                }
            }
            Read::Message { message, at_ns } => {
                // A heartbeat without a map carries no real vote.
                if let Message::Heartbeat(hb) = &message
                    && hb.map.is_some()
                {
                    let votes =
                        std::iter::once(hb.vote).chain(hb.relayed.iter().map(|v| v.vote.event));
                    for event in votes {
                        self.note_seek(event);
                    }
                }
                self.session.handle_message(at_ns, peer, message)
            }
            Read::Dropped(e) => {
                self.malformed_frames += 1;
                self.offence(peer, "malformed frames", &e);
            }
        }
    }

    /// Does what the links decided.
    pub(super) fn apply_links(&mut self) {
        while let Some(action) = self.links.poll_action() {
            let now = self.clock.now_ns();
            match action {
                Action::Dial { target, addr } => tasks::spawn_dial(
                    target,
                    addr,
                    self.me.clone(),
                    self.secret.clone(),
                    self.inputs.clone(),
                ),
                Action::Up { peer, conn } => {
                    let Some(Conn::Idle { conn: c, info }) = self.conns.remove(&conn) else {
                        warn!(%peer, "link up on an unknown connection {conn}");
                        continue;
                    };
                    let Some((reader, writer)) = c.split(self.clock) else {
                        warn!(%peer, "link up on a connection without keys {conn}");
                        continue;
                    };
                    let (tx, rx) = mpsc::channel(LINK_QUEUE);
                    let queued = Arc::new(AtomicUsize::new(0));
                    let reader =
                        tokio::spawn(tasks::read_loop(reader, conn, peer, self.inputs.clone()))
                            .abort_handle();
                    self.writers.retain(|w| !w.is_finished());
                    (self.writers).push(tokio::spawn(tasks::write_loop(
                        writer,
                        rx,
                        peer,
                        queued.clone(),
                    )));
                    self.conns.insert(conn, Conn::Link { tx, reader, queued });
                    info!(%peer, name = %info.name, addr = %info.addr, "link up");
                    self.session.handle_link_up(now, info);
                    self.room.handle_link_up(now, peer);
                    self.library.handle_link_up(now, peer);
                }
                Action::Down { peer, tell_session } => {
                    self.room.handle_link_down(now, peer);
                    self.library.handle_link_down(peer);
                    if tell_session {
                        self.session.handle_link_down(now, peer);
                    }
                }
                Action::Linger(conn) => {
                    debug!(conn, "a connection lingers, unread");
                    // Its reads stop now; its socket stays open (an idle
                    // connection as it is, a link's writer while `tx` lives).
                    if let Some(Conn::Link { reader, .. }) = self.conns.get(&conn) {
                        reader.abort();
                    }
                }
                Action::Close(conn) => {
                    // Dropping `tx` ends the writer, which shuts the socket
                    // down; dropping an idle connection closes it.
                    if let Some(Conn::Link { reader, .. }) = self.conns.remove(&conn) {
                        reader.abort();
                    }
                }
                Action::Report(message) => self.error(message),
            }
        }
    }

    /// A seek voted (here or elsewhere) and not yet applied: its target's
    /// bytes become a fetch priority for a while.
    fn note_seek(&mut self, event: Event) {
        if let Event::Seek { position_ns } = event {
            let now = self.clock.now_ns();
            self.room
                .playhead()
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
            Command::Discover => self.on_discover(),
            Command::Quit => self.quit = true,
            Command::Add { song, paths } => {
                // Decoded and hashed on the worker; announced when done.
                let job = library::add_job(song, paths);
                self.worker.run(move || Input::Added(job()));
            }
            Command::Remove { song, stem } => {
                if let Err(e) = self.library.remove(&song, stem.as_deref()) {
                    self.error(format!("remove: {e}"));
                }
            }
            Command::Songs => {
                let view = self.library.view(self.me.peer_id(), &self.room);
                self.emit(PeerEvent::Library(view));
            }
            Command::Load(song) => match self.song_version("load", &song) {
                Ok(version) => self.on_command(Command::Vote(Event::Load(version))),
                Err(e) => self.error(e),
            },
            Command::Queue(song) => match self.song_version("queue", &song) {
                Ok(version) => self.on_command(Command::Vote(Event::Queue(version))),
                Err(e) => self.error(e),
            },
            Command::Move { from, to } => {
                let queue = (self.session.latest()).map_or(&[][..], |(_, s)| &s.queue[..]);
                match queue.get(from) {
                    Some(entry) => {
                        let event = Event::Move {
                            from: from as u16,
                            to: to.min(queue.len() - 1) as u16,
                            song: entry.song,
                        };
                        self.on_command(Command::Vote(event))
                    }
                    None => self.error(format!(
                        "move: the set list has {} song(s); entry {from} is not one",
                        queue.len()
                    )),
                }
            }
            Command::Unqueue(index) => {
                let queue = (self.session.latest()).map_or(&[][..], |(_, s)| &s.queue[..]);
                match queue.get(index) {
                    Some(entry) => {
                        let event = Event::Unqueue {
                            index: index as u16,
                            song: entry.song,
                        };
                        self.on_command(Command::Vote(event))
                    }
                    None => self.error(format!(
                        "unqueue: the set list has {} song(s); entry {index} is not one",
                        queue.len()
                    )),
                }
            }
        }
    }

    /// The version of the library's song `query` a `load` or `queue` names.
    fn song_version(&self, command: &str, query: &str) -> Result<SongRef, String> {
        let library = self.library.library();
        let id = (library.find_song(query)).map_err(|e| format!("{command}: {e}"))?;
        let song = (library.song(id)).ok_or_else(|| format!("{command}: no song {query:?}"))?;
        if song.stems.is_empty() {
            return Err(format!("{command}: {:?} has no stems", song.record.name));
        }
        Ok(song.version())
    }

    /// Writes the library file on the worker if it changed (one write at a
    /// time).
    fn save_library(&mut self) {
        if let Some(job) = self.library.save_job() {
            self.worker.run(move || Input::LibrarySaved(job()));
        }
    }

    /// The session's guard follows how far ahead the output renders: the
    /// largest of the last 10 s, plus a margin for this task's wake-ups.
    fn follow_render_ahead(&mut self) {
        let Some(r) = &self.running else { return };
        let ahead_ns = r.stats.render_ahead_ns.swap(0, Ordering::Relaxed);
        if ahead_ns <= 0 {
            return; // no block since the last tick
        }
        if self.render_ahead_ns.len() == RENDER_AHEAD_TICKS {
            self.render_ahead_ns.pop_front();
        }
        self.render_ahead_ns.push_back(ahead_ns);
        let max_ns = self.render_ahead_ns.iter().copied().max().unwrap_or(0);
        self.session.set_decide_guard_ns(max_ns + GUARD_MARGIN_NS);
    }

    fn housekeeping(&mut self) {
        self.retired.collect();
        let now = self.clock.now_ns();
        if self.seek_hint_until_ns.is_some_and(|t| now >= t) {
            self.seek_hint_until_ns = None;
            self.room.playhead().set_seek_hint(None);
        }
        self.room.handle_timeout(now);
        self.room.refocus(now);
        self.library.handle_timeout(now);
        self.lan_tick(now);
        self.retry_song();
        if let Some(state) = self.last_scheduled.clone() {
            self.cue_next(&state);
        }
        if let Some(at) = self.go_live_at
            && self.session.session_ns_at(now).is_some_and(|t| t >= at)
        {
            self.go_live_at = None;
            self.room.go();
        }
        if self.push_status {
            let s = self.status();
            self.emit(PeerEvent::Status(Box::new(s)));
        }
        self.follow_render_ahead();
        let errors: Vec<OutputError> = match &self.running {
            Some(r) => r.errors.try_iter().collect(),
            None => vec![],
        };
        for e in errors {
            self.error(format!("output: {e}"));
        }
    }

    /// Sends what the session queued and acts on what it reported.
    pub fn drain(&mut self) {
        while let Some(t) = self.session.poll_transmit() {
            self.send(t.to, t.message);
        }
        while let Some(e) = self.session.poll_event() {
            self.on_session_event(e);
        }
        loop {
            let mut idle = true;
            while let Some(t) = self.room.poll_transmit() {
                idle = false;
                self.send(t.to, Message::Room(t.room));
            }
            while let Some(e) = self.room.poll_event() {
                idle = false;
                self.on_room_event(e);
            }
            if idle {
                break;
            }
        }
        while let Some((to, op)) = self.library.poll_transmit() {
            self.send(to, Message::Room(Room { request_id: 0, op }));
        }
        while let Some(problem) = self.library.poll_problem() {
            self.error(problem);
        }
        self.save_library();
        if let Some(view) = self.library.changed_view(self.me.peer_id(), &self.room) {
            self.emit(PeerEvent::Library(view));
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
        let Some(conn) = self.links.conn_of(peer) else {
            return;
        };
        let Some(Conn::Link { tx, queued, .. }) = self.conns.get(&conn) else {
            return;
        };
        let bytes = net::approx_wire_bytes(&message);
        let queued_now: Vec<(ConnId, usize)> = (self.conns.iter())
            .filter_map(|(&c, link)| match link {
                Conn::Link { queued, .. } => Some((c, queued.load(Ordering::Relaxed))),
                Conn::Idle { .. } => None,
            })
            .collect();
        let cut = queues::cuts(&queued_now, conn, bytes);
        let mut sent = false;
        if !cut.contains(&conn) {
            queued.fetch_add(bytes, Ordering::Relaxed);
            match tx.try_send(message) {
                Ok(()) => sent = true,
                Err(e) => {
                    queued.fetch_sub(bytes, Ordering::Relaxed);
                    match e {
                        mpsc::error::TrySendError::Full(_) => {
                            warn!(%peer, "not reading ({LINK_QUEUE} messages queued): closing the link");
                        }
                        mpsc::error::TrySendError::Closed(_) => debug!(%peer, "writer gone"),
                    }
                }
            }
        }
        for &c in &cut {
            let on_link = queued_now.iter().find(|q| q.0 == c).map_or(0, |q| q.1);
            warn!(
                conn = c,
                "not reading ({on_link} bytes queued): closing the link"
            );
        }
        if sent && cut.is_empty() {
            return;
        }
        let now = self.clock.now_ns();
        let mut closing = cut;
        if !sent && !closing.contains(&conn) {
            closing.push(conn);
        }
        for &c in &closing {
            self.links.handle_closed(now, c);
        }
        self.apply_links();
        // A lingering connection is no link: it goes here.
        for c in closing {
            if let Some(Conn::Link { reader, .. }) = self.conns.remove(&c) {
                reader.abort();
            }
        }
    }

    fn on_room_event(&mut self, e: ExchangeEvent) {
        match e {
            ExchangeEvent::Song { stems, from } => {
                if let Some(from) = from {
                    info!(%from, stems = stems.len(), "learned the session's start song");
                    self.room.learned_start_song(&stems);
                    // Played if it is the current song.
                    self.retry_song();
                } else {
                    // Our own start song, described: its channels are known.
                    let song = self.room.song_stems();
                    self.emit(PeerEvent::Song(song));
                }
            }
            ExchangeEvent::Info(info) => {
                let now = self.clock.now_ns();
                if let Some(problem) = self.room.on_info(now, info) {
                    self.error(problem);
                }
            }
            ExchangeEvent::Serve {
                to,
                request_id,
                stem,
                offset,
                len,
            } => {
                let job = self.room.read_job(&stem, offset, len);
                self.worker.run(move || Input::ChunkRead {
                    to,
                    request_id,
                    stem,
                    offset,
                    data: job(),
                });
            }
            ExchangeEvent::Chunk { stem, chunk, data } => {
                let now = self.clock.now_ns();
                if let Some(problem) = self.room.put_chunk(now, stem, chunk, &data) {
                    self.error(problem);
                }
            }
            ExchangeEvent::Complete { stem } => {
                if let Some(job) = self.room.verify_job(stem) {
                    self.worker.run(move || Input::Verified(job()));
                }
            }
            ExchangeEvent::Refused { from, what } => warn!(%from, "stem exchange: {what}"),
        }
    }

    fn on_session_event(&mut self, e: SessionEvent) {
        let now = self.clock.now_ns();
        match e {
            SessionEvent::Dial(info) => {
                self.links.handle_session_dial(now, &info);
                self.apply_links();
            }
            SessionEvent::Disconnect { peer } => {
                self.links.handle_session_drop(now, peer);
                self.apply_links();
            }
            SessionEvent::PeerUp(info) => self.emit(PeerEvent::PeerUp(info)),
            SessionEvent::PeerDown { peer, reason } => {
                self.links.handle_session_drop(now, peer);
                self.apply_links();
                info!(%peer, ?reason, "peer down");
                self.emit(PeerEvent::PeerDown { peer, reason });
            }
            SessionEvent::Synced { root } => {
                info!(%root, "synced");
                self.emit(PeerEvent::Synced { root });
            }
            SessionEvent::RootChanged { root } => info!(%root, "now following"),
            SessionEvent::Decided(d) => {
                if !(self.last_scheduled.as_ref()).is_some_and(|s| s.plays_as(&d.state)) {
                    self.schedule(d.apply_at_session_ns, &d.state);
                }
                // Every round, changed or not: a song may end before the next.
                self.look_ahead(d.round, d.apply_at_session_ns, &d.state);
                if d.outcomes.iter().any(|o| o.vote.event.is_action()) {
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
                self.look_ahead(round, apply_at_session_ns, &state);
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
            SessionEvent::Ignored { from, reason } => match reason.offence() {
                Some(what) => self.offence(from, what, &format_args!("{reason:?}")),
                None => debug!(%from, ?reason, "ignored"),
            },
        }
    }

    /// `peer` sent `what`, which no honest peer sends: one clear line per
    /// offender and kind of offence, the rest at debug level only (a flood
    /// must not flood the log).
    fn offence(&mut self, peer: PeerId, what: &'static str, detail: &dyn std::fmt::Display) {
        if self.offenders.len() < MAX_OFFENDERS_SAID && self.offenders.insert((peer, what)) {
            warn!(%peer, "it sent {what} ({detail}): ignored (said once for this peer)");
        } else {
            debug!(%peer, "ignored {what}: {detail}");
        }
    }

    /// The real monotonic instant (as `--report`'s `mono_ns`) at which
    /// session time `session_ns` comes on this peer, if synced: lets a bench
    /// time a vote from command to sound.
    fn mono_of_session(&self, session_ns: i64) -> Option<i64> {
        let map = self.session.map()?;
        Some(self.clock.mono_at(map.local_ns_at(session_ns)))
    }

    /// The instant at which the engine gets a state decided for
    /// `apply_at_session_ns`: never before one it already has (unless time
    /// moved by more than any lead). A state adopted from a chain with a
    /// shorter lead, or the decisions after it, would otherwise apply before
    /// states our old chain already scheduled, which would then override it.
    fn in_order(&mut self, apply_at_session_ns: i64) -> i64 {
        let at = match self.last_scheduled_at_ns {
            Some(last)
                if last > apply_at_session_ns && last - apply_at_session_ns <= MAX_REORDER_NS =>
            {
                last
            }
            _ => apply_at_session_ns,
        };
        self.last_scheduled_at_ns = Some(at);
        at
    }

    pub fn schedule(&mut self, apply_at_session_ns: i64, state: &SessionState) {
        let apply_at_session_ns = self.in_order(apply_at_session_ns);
        self.note_set_list(state);
        let mut heard = state.clone();
        if !self.follow_song(apply_at_session_ns, state) {
            // A song whose stems are not known here yet (the start song
            // before its creator's room said it, a version the library has
            // not converged to): silence, never the last song's stems.
            heard.master.muted = true;
            if self.unplayable != Some(state.song) {
                self.unplayable = Some(state.song);
                warn!(song = %state.song.short(), "the current song's stems are not known here yet: silent until they are");
            }
        }
        if self.engine.schedule(apply_at_session_ns, &heard).is_err() {
            self.error("the audio engine's queue is full: a decision was not scheduled".into());
            return;
        }
        self.last_scheduled = Some(state.clone());
    }

    /// Makes the room and the engine play `state`'s song from
    /// `apply_at_session_ns` on, if it is not what they play: its stems
    /// resolved (the start song from the room, any other version from the
    /// library), the channels built (local files, the cache, or fetched),
    /// and the engine told to switch on that instant. Returns whether the
    /// song's stems are known here (false: not yet, silence meanwhile).
    fn follow_song(&mut self, apply_at_session_ns: i64, state: &SessionState) -> bool {
        let song = state.song;
        if self.playing == Some(song) {
            return true;
        }
        let Some(stems) = self.stems_of(song) else {
            return false;
        };
        let now = self.clock.now_ns();
        let names: Vec<String> = stems.iter().map(|s| s.name.clone()).collect();
        let (streamers, errors, to_check) = self.room.play(now, song, stems);
        // Channels are renumbered: solos set before mean nothing.
        self.engine.solo.clear();
        if self
            .engine
            .set_stems_at(apply_at_session_ns, song.song.0, streamers)
            .is_err()
        {
            self.error("the audio engine's queue is full: the song's stems were not set".into());
        }
        info!(song = %song.short(), stems = names.len(), "playing a new song");
        self.stems = names;
        self.playing = Some(song);
        self.unplayable = None;
        self.go_live_at = Some(apply_at_session_ns);
        self.report_room(errors, to_check);
        let stems = self.room.song_stems();
        self.emit(PeerEvent::Song(stems));
        self.library.touch();
        true
    }

    /// The stems of a song version, if known here: the start song from the
    /// room, any other version from the library.
    fn stems_of(&self, song: SongRef) -> Option<Vec<VersionStem>> {
        if song.version == START_VERSION {
            return self.room.start_song();
        }
        let library = self.library.library();
        if let Some(s) = library.song(song.song)
            && s.version() != song
        {
            debug!(want = ?song, have = ?s.version(), "the library holds another version");
        }
        (library.song(song.song))
            .filter(|s| s.version() == song)
            .map(|s| s.stems.iter().map(|r| VersionStem::of_record(r)).collect())
    }

    /// A `setlist` event, and the set list kept, if `state`'s differs from
    /// the last one noted.
    fn note_set_list(&mut self, state: &SessionState) {
        let setlist = (state.song, state.queue.clone());
        if self.last_setlist.as_ref() != Some(&setlist) {
            self.emit(PeerEvent::SetList {
                current: setlist.0,
                queue: setlist.1.clone(),
            });
            self.last_setlist = Some(setlist);
            self.keep_set_list(state);
        }
    }

    /// Writes the set list to the data folder (on the worker). The session's
    /// start song is kept as the library's version of it (a start song means
    /// nothing in another session); one the library cannot name is left out.
    fn keep_set_list(&mut self, state: &SessionState) {
        let Some(dir) = self.data_dir.clone() else {
            return;
        };
        let library = self.library.library();
        let named = |s: &SongRef| -> Option<SongRef> {
            if s.version != START_VERSION {
                return Some(*s);
            }
            library.song(s.song).map(|song| song.version())
        };
        let Some(song) = named(&state.song) else {
            return;
        };
        let kept = crate::library::setlist::SavedSetList {
            song,
            queue: state.queue.iter().filter_map(named).collect(),
            played: state.played.iter().filter_map(named).collect(),
        };
        let Ok(bytes) = crate::library::setlist::encode(&kept) else {
            return;
        };
        self.worker.run(move || {
            let result = crate::library::setlist::save(&dir, &bytes)
                .map_err(|e| format!("cannot keep the set list in {}: {e}", dir.display()));
            Input::SetListKept(result)
        });
    }

    /// The room's problems reported, its cached files checked on the worker.
    fn report_room(
        &mut self,
        errors: Vec<String>,
        to_check: Vec<(VersionStem, std::path::PathBuf)>,
    ) {
        for e in errors {
            self.error(e);
        }
        for (stem, path) in to_check {
            let job = RoomShell::check_cache_job(stem, path);
            self.worker.run(move || Input::CacheChecked(job()));
        }
    }

    /// Looks ahead from a state scheduled for `apply_at_session_ns`: a song
    /// that ends before the next decision applies is followed on its end
    /// instant (the next decision would come too late to switch on it),
    /// and the song that plays next is cued — its channels built and
    /// decoding from its start — so it starts with no gap.
    fn look_ahead(&mut self, round: Round, apply_at_session_ns: i64, state: &SessionState) {
        // The next decision applies a round later, plus the change of lead.
        let next_ns = lead::apply_at_session_ns(Round(round.0 + 1), state.lead.lead_ms);
        if let Some(end_ns) = state.song_end_session_ns()
            && end_ns > apply_at_session_ns
            && end_ns <= next_ns
        {
            let end_ns = self.in_order(end_ns);
            let mut after = state.clone();
            after.advance_to(end_ns);
            let mut heard = after.clone();
            if !self.follow_song(end_ns, &after) {
                heard.master.muted = true;
            }
            if self.engine.schedule(end_ns, &heard).is_err() {
                self.error(
                    "the audio engine's queue is full: a song's end was not scheduled".into(),
                );
            }
            // What the engine was last given: the next decision (the same
            // state, unless votes changed it) and retries compare with it.
            self.note_set_list(&after);
            self.last_scheduled = Some(after);
        }
        self.cue_next(state);
    }

    /// Cues the set list's next song (once its stems are known here).
    fn cue_next(&mut self, state: &SessionState) {
        let Some(&next) = state.queue.first() else {
            return;
        };
        if self.room.cued() == Some(next) || self.playing == Some(next) {
            return;
        }
        let Some(stems) = self.stems_of(next) else {
            return;
        };
        let now = self.clock.now_ns();
        info!(song = %next.short(), "cueing the next song");
        let (errors, to_check) = self.room.cue(now, next, stems);
        self.report_room(errors, to_check);
    }

    /// The current song, silent because its stems were not known: played
    /// from now on if they are.
    fn retry_song(&mut self) {
        let Some(state) = self.last_scheduled.clone() else {
            return;
        };
        if self.playing == Some(state.song) {
            return;
        }
        let now = self.clock.now_ns();
        let Some(at_ns) = self.session.session_ns_at(now) else {
            return;
        };
        if self.follow_song(at_ns, &state) && self.engine.schedule(at_ns, &state).is_err() {
            self.error("the audio engine's queue is full: a decision was not scheduled".into());
        }
    }

    fn status(&mut self) -> Status {
        let now = self.clock.now_ns();
        let all = self.engine.all();
        let buffering = (self.engine.meters.stems.iter().enumerate())
            .filter(|(_, m)| m.buffering())
            .map(|(i, _)| i)
            .collect();
        let (xruns, blocks, output_restarts) = self.running.as_ref().map_or((0, 0, 0), |r| {
            (
                r.stats.xruns.load(Relaxed),
                r.stats.blocks.load(Relaxed),
                r.stats.restarts.load(Relaxed),
            )
        });
        let latest = self.session.latest();
        Status {
            peer_id: self.me.peer_id(),
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
            output_restarts,
            buffering,
            malformed_frames: self.malformed_frames,
            heartbeats_on_time: self.session.stats().heartbeats_on_time,
            heartbeats_late: self.session.stats().heartbeats_late,
            need_ms: self.session.need_ms(),
            guard_ns: self.session.config().decide_guard_ns,
            song: self.room.song_stems(),
            exchange: self.room.stats(),
            bytes_served: self.room.bytes_served,
        }
    }

    async fn shutdown(&mut self, rx: &mut mpsc::Receiver<Input>) {
        self.lan_shutdown().await;
        self.session.leave("quit");
        self.drain();
        self.links.close_all();
        self.apply_links();
        let writers = std::mem::take(&mut self.writers);
        let _ = tokio::time::timeout(QUIT_FLUSH, async {
            for w in writers {
                let _ = w.await;
            }
        })
        .await;
        // The library's last changes reach its file: the write under way
        // ends, then what changed since is written (other inputs are
        // dropped: the peer is leaving).
        let _ = tokio::time::timeout(LIBRARY_FLUSH, async {
            loop {
                self.save_library();
                if !self.library.is_saving() {
                    break;
                }
                match rx.recv().await {
                    Some(Input::LibrarySaved(result)) => {
                        if let Err(e) = result {
                            self.error(e);
                        }
                        self.library.saved();
                    }
                    Some(_) => {}
                    None => break,
                }
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

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves once the handle behind `gone` is dropped (never without one).
async fn handle_dropped(gone: &mut Option<oneshot::Receiver<()>>) {
    match gone {
        Some(rx) => {
            let _ = rx.await;
        }
        None => std::future::pending().await,
    }
}
