//! The stem exchange: one peer's side of sharing the song, as a sans-IO state
//! machine (like [`crate::protocol::Session`]: inputs are messages, link
//! changes, the local player's focus and `now`; outputs are messages to send
//! and events for the shell; no I/O, no clock, no randomness).
//!
//! - **The song.** A peer that knows the song sends every entry
//!   ([`Operation::SongStem`]) when a link comes up; a peer that does not
//!   takes the first complete song it receives. Entries that disagree with the
//!   song already held are counted and ignored.
//! - **Hosting.** Each peer says which stems it serves ([`Operation::Have`]):
//!   files it was given and stems it has completed. It serves only those; a
//!   request for any other hash, or out of the file, is refused, and so is
//!   one past [`MAX_SERVES_PER_PEER`] reads under way for its requester or
//!   [`MAX_SERVES`] in all (busy; the shell reports each read's return).
//! - **Fetching.** For each stem the shell asks for, chunks are requested in
//!   priority order: the chunk the decoder is blocked on, then the chunks
//!   around a seek target not yet applied, then a window ahead of the
//!   decoder's read position, then (a few at a time) the rest of the file, so
//!   it completes and can be cached and hosted. Requests go to the host with
//!   the fewest strikes and the fewest requests in flight (which spreads the
//!   load); a host that leaves, refuses, times out or sends bad data gets its
//!   requests re-queued elsewhere.
//! - **Bad data** — a chunk whose hash is wrong, whose length is wrong, or
//!   that answers nothing we asked — is refused, counted in [`ExchangeStats`],
//!   and costs the sender a strike for that stem.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::protocol::PeerId;
use crate::protocol::message::{MAX_HAVE, Operation, Room, StemHash};
use crate::protocol::stem::{StemInfo, chunk_bytes_for};

/// Timed-out requests remembered for their late answers.
const MAX_LATE: usize = 256;
/// Stem descriptions asked for at once: a song's stems (and the next one's).
pub const MAX_WANTED: usize = 2 * crate::protocol::MAX_STEMS;

/// A stem description asked of its hosts.
struct Wanted {
    asked: BTreeSet<PeerId>,
    since_ns: i64,
}
/// Senders whose song entries are gathered at once (before a song is known).
const MAX_INCOMING_SONGS: usize = 4;
/// Chunk reads under way (asked of the shell and not yet answered) for one
/// requester; past it a request is refused as busy. Twice what an honest
/// fetcher asks of one host at once (`per_host_in_flight`, 8), so only a
/// peer that asks faster than it is answered is refused: each read holds up
/// to a chunk (256 KiB) until it is queued on the link.
pub const MAX_SERVES_PER_PEER: usize = 16;
/// Chunk reads under way for all requesters together: at most 64 MiB of
/// chunks being read or waiting for the core (256 × 256 KiB), whatever the
/// number of links; 32 honest fetchers at their full rate. A refused
/// fetcher asks another host first, then us again.
pub const MAX_SERVES: usize = 256;

/// Tuning of the fetcher.
#[derive(Clone, Copy, Debug)]
pub struct ExchangeConfig {
    /// How far ahead of the decoder's read position to fetch eagerly.
    pub window_ns: i64,
    /// Requests in flight to one host at once.
    pub per_host_in_flight: usize,
    /// Requests in flight per stem for the window ahead.
    pub window_in_flight: usize,
    /// Requests in flight per stem beyond the window (to complete the file).
    pub background_in_flight: usize,
    /// A request unanswered this long is given up and re-queued.
    pub request_timeout_ns: i64,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        ExchangeConfig {
            window_ns: 10_000_000_000,
            per_host_in_flight: 8,
            window_in_flight: 6,
            background_in_flight: 2,
            request_timeout_ns: 2_000_000_000,
        }
    }
}

/// Where the local player needs a stem's bytes, in chunks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Focus {
    /// The chunk holding the decoder's read position.
    pub cursor: usize,
    /// A chunk the decoder is blocked on.
    pub urgent: Option<usize>,
    /// The estimated chunk of a seek target not yet applied.
    pub hint: Option<usize>,
}

/// Counters of what the exchange refused or retried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Chunk bytes accepted.
    pub bytes_fetched: u64,
    pub chunks_fetched: u64,
    /// Chunks whose hash did not match (the chunk is fetched again).
    pub bad_hash: u64,
    /// Chunks of the wrong length.
    pub bad_length: u64,
    /// Data that answered no request of ours (unknown id, stem or offset).
    pub unexpected: u64,
    /// Requests others refused us.
    pub refused_to_us: u64,
    /// Requests we refused (unknown hash, outside the file).
    pub refused_by_us: u64,
    pub timeouts: u64,
    /// Song entries that disagreed with the song we hold.
    pub song_conflicts: u64,
}

/// Something for the shell to do or know.
#[derive(Debug, PartialEq, Eq)]
pub enum ExchangeEvent {
    /// The song is known (learned from `from`, or given at start when `None`).
    Song {
        stems: Vec<StemInfo>,
        from: Option<PeerId>,
    },
    /// Read `len` bytes at `offset` of a served stem and answer `to` with
    /// [`Operation::ChunkData`] and `request_id`.
    Serve {
        to: PeerId,
        request_id: u32,
        stem: StemHash,
        offset: u64,
        len: u32,
    },
    /// A verified chunk of fetched stem `stem`.
    Chunk {
        stem: StemHash,
        chunk: usize,
        data: Vec<u8>,
    },
    /// Every chunk of fetched stem `stem` has arrived.
    Complete { stem: StemHash },
    /// A host described a stem asked for with [`Exchange::want_info`].
    Info(StemInfo),
    /// `from` sent something wrong (already counted).
    Refused { from: PeerId, what: String },
}

/// A message for one peer.
#[derive(Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: PeerId,
    pub room: Room,
}

struct Request {
    peer: PeerId,
    stem: StemHash,
    chunk: usize,
    sent_ns: i64,
}

struct Fetch {
    info: StemInfo,
    have: Vec<bool>,
    in_flight: Vec<bool>,
    missing: usize,
    focus: Focus,
    /// Strikes per host for this stem (refusals, timeouts, bad data).
    strikes: BTreeMap<PeerId, u32>,
}

/// One peer's side of the stem exchange.
pub struct Exchange {
    cfg: ExchangeConfig,
    song: Option<Arc<[StemInfo]>>,
    /// Songs being received, per sender.
    incoming: BTreeMap<PeerId, Vec<Option<StemInfo>>>,
    /// The stems this peer serves, described (their sizes bound requests;
    /// their descriptions answer info requests).
    served: BTreeMap<StemHash, StemInfo>,
    /// Descriptions asked of hosts (see [`Exchange::want_info`]): who was
    /// asked, and when the asking started.
    wanted: BTreeMap<StemHash, Wanted>,
    /// Requests given up after a timeout, whose late answer is still
    /// welcome (the oldest are forgotten past [`MAX_LATE`]).
    late: BTreeMap<u32, Request>,
    links: BTreeSet<PeerId>,
    hosts: BTreeMap<PeerId, BTreeSet<StemHash>>,
    fetches: BTreeMap<StemHash, Fetch>,
    requests: BTreeMap<u32, Request>,
    next_request: u32,
    out: VecDeque<Transmit>,
    events: VecDeque<ExchangeEvent>,
    stats: ExchangeStats,
    /// Chunk reads under way per requester (see [`MAX_SERVES_PER_PEER`]).
    serving: BTreeMap<PeerId, usize>,
}

impl Exchange {
    /// `song`: the song if this peer starts the session (else it is learned).
    /// `served`: the stems this peer has files for, described.
    pub fn new(
        cfg: ExchangeConfig,
        song: Option<Vec<StemInfo>>,
        served: impl IntoIterator<Item = StemInfo>,
    ) -> Exchange {
        let mut x = Exchange {
            cfg,
            song: None,
            incoming: BTreeMap::new(),
            served: served.into_iter().map(|i| (i.hash, i)).collect(),
            wanted: BTreeMap::new(),
            late: BTreeMap::new(),
            links: BTreeSet::new(),
            hosts: BTreeMap::new(),
            fetches: BTreeMap::new(),
            requests: BTreeMap::new(),
            next_request: 1,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: ExchangeStats::default(),
            serving: BTreeMap::new(),
        };
        if let Some(song) = song {
            x.adopt(song, None);
        }
        x
    }

    pub fn song(&self) -> Option<&[StemInfo]> {
        self.song.as_deref()
    }

    pub fn stats(&self) -> ExchangeStats {
        self.stats
    }

    /// Peers that serve `hash`.
    pub fn hosts_of(&self, hash: &StemHash) -> Vec<PeerId> {
        (self.hosts.iter())
            .filter(|(_, h)| h.contains(hash))
            .map(|(p, _)| *p)
            .collect()
    }

    /// Chunks of stem `stem` that have arrived, if it is being fetched.
    pub fn progress(&self, stem: &StemHash) -> Option<(usize, usize)> {
        let f = self.fetches.get(stem)?;
        Some((f.have.len() - f.missing, f.have.len()))
    }

    pub fn handle_link_up(&mut self, now_ns: i64, peer: PeerId) {
        self.links.insert(peer);
        self.send_song(peer);
        self.send_have(peer);
        self.schedule(now_ns);
    }

    /// Tells `peer` what this peer serves (the song's stems first, at most
    /// [`MAX_HAVE`] hashes).
    fn send_have(&mut self, peer: PeerId) {
        let in_song =
            |h: &StemHash| (self.song.iter().flat_map(|s| s.iter())).any(|s| &s.hash == h);
        let mut stems: Vec<StemHash> = self.served.keys().filter(|h| in_song(h)).copied().collect();
        stems.extend(self.served.keys().filter(|h| !in_song(h)).copied());
        stems.truncate(MAX_HAVE);
        self.out.push_back(Transmit {
            to: peer,
            room: Room {
                request_id: 0,
                op: Operation::Have { stems },
            },
        });
    }

    pub fn handle_link_down(&mut self, now_ns: i64, peer: PeerId) {
        self.links.remove(&peer);
        self.hosts.remove(&peer);
        self.incoming.remove(&peer);
        let lost: Vec<u32> = (self.requests.iter())
            .filter(|(_, r)| r.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            self.requeue(id);
        }
        self.late.retain(|_, r| r.peer != peer);
        for w in self.wanted.values_mut() {
            w.asked.remove(&peer);
        }
        self.schedule(now_ns);
    }

    /// Asks the hosts of `hash` for its description (the chunk hashes a
    /// fetch needs): every linked host that says it serves it, and any that
    /// says so later; again after a timeout. The first good answer is an
    /// [`ExchangeEvent::Info`]. At most [`MAX_WANTED`] at once.
    pub fn want_info(&mut self, now_ns: i64, hash: StemHash) {
        if let Some(info) = self.served.get(&hash) {
            self.events.push_back(ExchangeEvent::Info(info.clone()));
            return;
        }
        if self.wanted.len() >= MAX_WANTED && !self.wanted.contains_key(&hash) {
            return;
        }
        self.wanted.entry(hash).or_insert(Wanted {
            asked: BTreeSet::new(),
            since_ns: now_ns,
        });
        self.ask_infos(now_ns);
    }

    /// No longer needs the description of `hash`.
    pub fn unwant_info(&mut self, hash: &StemHash) {
        self.wanted.remove(hash);
    }

    fn ask_infos(&mut self, now_ns: i64) {
        for (hash, w) in &mut self.wanted {
            if now_ns - w.since_ns >= self.cfg.request_timeout_ns {
                // Nobody answered: ask everyone again.
                w.asked.clear();
                w.since_ns = now_ns;
            }
            let hosts = (self.hosts.iter())
                .filter(|(p, h)| h.contains(hash) && self.links.contains(p))
                .map(|(p, _)| *p);
            for peer in hosts.collect::<Vec<_>>() {
                if w.asked.insert(peer) {
                    self.out.push_back(Transmit {
                        to: peer,
                        room: Room {
                            request_id: 0,
                            op: Operation::InfoRequest { stem: *hash },
                        },
                    });
                }
            }
        }
    }

    fn on_info(&mut self, from: PeerId, info: StemInfo) {
        if self.wanted.remove(&info.hash).is_some() {
            self.events.push_back(ExchangeEvent::Info(info));
        } else if !self.fetches.contains_key(&info.hash) {
            // A late second answer is harmless; an unasked one is not.
            self.unexpected(from, "a stem description nobody asked for");
        }
    }

    /// Starts fetching the stem `info` describes (this peer has no file for
    /// it), for a decoder first needing `focus`.
    pub fn fetch(&mut self, now_ns: i64, info: StemInfo, focus: Focus) {
        let stem = info.hash;
        let n = info.chunks();
        self.fetches.entry(stem).or_insert_with(|| Fetch {
            info,
            have: vec![false; n],
            in_flight: vec![false; n],
            missing: n,
            focus,
            strikes: BTreeMap::new(),
        });
        if n == 0 {
            self.events.push_back(ExchangeEvent::Complete { stem });
        }
        self.schedule(now_ns);
    }

    /// Serves the stem `info` describes from now on (a fetched stem
    /// completed and was checked, or was found in the cache, or a file was
    /// added), and tells every linked peer.
    pub fn serve(&mut self, info: &StemInfo) {
        if self.served.insert(info.hash, info.clone()).is_none() {
            let linked: Vec<PeerId> = self.links.iter().copied().collect();
            for peer in linked {
                self.send_have(peer);
            }
        }
    }

    /// The description of a stem this peer serves.
    pub fn served_info(&self, hash: &StemHash) -> Option<&StemInfo> {
        self.served.get(hash)
    }

    /// Whether this peer serves `hash`.
    pub fn serves(&self, hash: &StemHash) -> bool {
        self.served.contains_key(hash)
    }

    /// The shell checked a completed stem's whole file (or gave up on it):
    /// its fetch is over. Until then, [`Exchange::refetch`] may reopen chunks.
    pub fn done(&mut self, stem: &StemHash) {
        self.fetches.remove(stem);
    }

    /// Where the decoder of fetched stem `stem` needs bytes.
    pub fn set_focus(&mut self, now_ns: i64, stem: &StemHash, focus: Focus) {
        if let Some(f) = self.fetches.get_mut(stem)
            && f.focus != focus
        {
            f.focus = focus;
            self.schedule(now_ns);
        }
    }

    /// Marks chunk `chunk` of `stem` missing again (the whole file failed its
    /// hash, or the store lost it): it is fetched again.
    pub fn refetch(&mut self, now_ns: i64, stem: &StemHash, chunk: usize) {
        if let Some(f) = self.fetches.get_mut(stem)
            && f.have.get(chunk) == Some(&true)
        {
            f.have[chunk] = false;
            f.missing += 1;
            self.schedule(now_ns);
        }
    }

    pub fn handle_message(&mut self, now_ns: i64, from: PeerId, room: Room) {
        let Room { request_id, op } = room;
        match op {
            Operation::ChunkRequest { stem, offset, len } => {
                self.on_request(from, request_id, stem, offset, len)
            }
            Operation::ChunkData { stem, offset, data } => {
                self.on_data(from, request_id, stem, offset, data)
            }
            Operation::ChunkRefused {
                stem,
                offset,
                reason,
            } => {
                if let Some(r) = self.requests.get(&request_id)
                    && r.peer == from
                    && self.request_matches(r, &stem, offset)
                {
                    self.stats.refused_to_us += 1;
                    // Ask the others first (it may serve it again later:
                    // a peer that had not learned the song yet refuses).
                    self.give_up(request_id, from, format!("refused our request: {reason}"));
                } else {
                    self.unexpected(from, "a refusal of nothing we asked");
                }
            }
            Operation::SongStem { index, count, info } => {
                self.on_song_stem(from, index, count, info)
            }
            Operation::Have { stems } => {
                self.hosts.insert(from, stems.into_iter().collect());
            }
            Operation::InfoRequest { stem } => {
                // Only for a stem we serve; silence otherwise (the asker
                // asks the other hosts).
                if let Some(info) = self.served.get(&stem) {
                    self.out.push_back(Transmit {
                        to: from,
                        room: Room {
                            request_id,
                            op: Operation::Info { info: info.clone() },
                        },
                    });
                }
            }
            Operation::Info { info } => self.on_info(from, info),
            // The library's: the runtime gives them to `crate::library::Replica`.
            Operation::LibraryDigest { .. } | Operation::LibraryRecords { .. } => {}
        }
        self.schedule(now_ns);
    }

    pub fn handle_timeout(&mut self, now_ns: i64) {
        let late: Vec<u32> = (self.requests.iter())
            .filter(|(_, r)| now_ns - r.sent_ns >= self.cfg.request_timeout_ns)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            self.stats.timeouts += 1;
            self.strike(id);
            // Asked again (likely elsewhere); a late answer is still taken.
            if let Some(r) = self.requests.remove(&id) {
                if let Some(f) = self.fetches.get_mut(&r.stem) {
                    f.in_flight[r.chunk] = false;
                }
                self.late.insert(id, r);
                while self.late.len() > MAX_LATE {
                    self.late.pop_first();
                }
            }
        }
        self.schedule(now_ns);
    }

    /// When [`Exchange::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<i64> {
        (self.requests.values().map(|r| r.sent_ns))
            .chain(self.wanted.values().map(|w| w.since_ns))
            .map(|t| t + self.cfg.request_timeout_ns)
            .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ExchangeEvent> {
        self.events.pop_front()
    }

    fn adopt(&mut self, song: Vec<StemInfo>, from: Option<PeerId>) {
        self.song = Some(song.clone().into());
        self.incoming.clear();
        self.events
            .push_back(ExchangeEvent::Song { stems: song, from });
        // Tell the peers already linked (they may have no song yet).
        let linked: Vec<PeerId> = self.links.iter().copied().collect();
        for peer in linked {
            self.send_song(peer);
            self.send_have(peer);
        }
    }

    fn send_song(&mut self, peer: PeerId) {
        let Some(song) = &self.song else {
            return;
        };
        let count = song.len() as u16;
        for (i, info) in song.iter().enumerate() {
            self.out.push_back(Transmit {
                to: peer,
                room: Room {
                    request_id: 0,
                    op: Operation::SongStem {
                        index: i as u16,
                        count,
                        info: info.clone(),
                    },
                },
            });
        }
    }

    fn on_song_stem(&mut self, from: PeerId, index: u16, count: u16, info: StemInfo) {
        let (index, count) = (usize::from(index), usize::from(count));
        if let Some(song) = &self.song {
            if song.len() != count || song.get(index) != Some(&info) {
                self.stats.song_conflicts += 1;
                self.events.push_back(ExchangeEvent::Refused {
                    from,
                    what: format!("a song entry that differs from ours (stem {index} of {count})"),
                });
            }
            return;
        }
        if !self.incoming.contains_key(&from) && self.incoming.len() >= MAX_INCOMING_SONGS {
            return; // enough senders at once
        }
        let entries = self.incoming.entry(from).or_default();
        if entries.len() != count {
            *entries = vec![None; count];
        }
        entries[index] = Some(info);
        if entries.iter().all(Option::is_some) {
            let song = entries.drain(..).flatten().collect();
            self.adopt(song, Some(from));
        }
    }

    fn on_request(&mut self, from: PeerId, request_id: u32, stem: StemHash, offset: u64, len: u32) {
        // Whole chunks only: a request costs one read and one chunk.
        let chunk_of = |size: u64| {
            let c = u64::from(chunk_bytes_for(size));
            (offset.is_multiple_of(c) && offset < size.max(1)).then(|| (size - offset).min(c))
        };
        let serving = self.serving.get(&from).copied().unwrap_or(0);
        let reason = match self.served.get(&stem).map(|i| i.size_bytes) {
            None => Some("unknown stem: this peer does not serve that hash"),
            Some(size) if chunk_of(size) != Some(u64::from(len)) => Some("not a chunk of the file"),
            Some(_) if serving >= MAX_SERVES_PER_PEER => {
                Some("busy: too many of your requests under way")
            }
            Some(_) if self.serving.values().sum::<usize>() >= MAX_SERVES => {
                Some("busy: too many requests under way")
            }
            Some(_) => None,
        };
        match reason {
            Some(reason) => {
                self.stats.refused_by_us += 1;
                self.out.push_back(Transmit {
                    to: from,
                    room: Room {
                        request_id,
                        op: Operation::ChunkRefused {
                            stem,
                            offset,
                            reason: reason.into(),
                        },
                    },
                });
            }
            None => {
                self.serving.insert(from, serving + 1);
                self.events.push_back(ExchangeEvent::Serve {
                    to: from,
                    request_id,
                    stem,
                    offset,
                    len,
                });
            }
        }
    }

    /// The shell answered (or failed) a [`ExchangeEvent::Serve`] for `to`:
    /// its chunk left the read pipeline.
    pub fn handle_served(&mut self, to: PeerId) {
        if let Some(n) = self.serving.get_mut(&to) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.serving.remove(&to);
            }
        }
    }

    fn request_matches(&self, r: &Request, stem: &StemHash, offset: u64) -> bool {
        let Some(f) = self.fetches.get(&r.stem) else {
            return false;
        };
        &f.info.hash == stem && f.info.chunk_range(r.chunk).start == offset
    }

    fn on_data(
        &mut self,
        from: PeerId,
        request_id: u32,
        stem: StemHash,
        offset: u64,
        data: Vec<u8>,
    ) {
        if !self.requests.contains_key(&request_id)
            && let Some(r) = self.late.remove(&request_id)
        {
            // A late answer: checked as if still asked for; if the chunk
            // came meanwhile, it is dropped quietly.
            self.requests.insert(request_id, r);
        }
        let Some(r) = self.requests.get(&request_id) else {
            return self.unexpected(from, "data for no request of ours");
        };
        if r.peer != from {
            return self.unexpected(from, "data answering another peer's request");
        }
        if !self.request_matches(r, &stem, offset) {
            self.stats.unexpected += 1;
            self.give_up(
                request_id,
                from,
                "data for a stem or offset we did not ask for".into(),
            );
            return;
        }
        let (s, k) = (r.stem, r.chunk);
        let Some((range, intact, name)) = self.fetches.get(&s).map(|f| {
            (
                f.info.chunk_range(k),
                f.info.check_chunk(k, &data),
                f.info.name.clone(),
            )
        }) else {
            return;
        };
        if data.len() as u64 != range.end - range.start {
            self.stats.bad_length += 1;
            let what = format!(
                "a chunk of {} bytes where {} were due",
                data.len(),
                range.end - range.start
            );
            self.give_up(request_id, from, what);
            return;
        }
        if !intact {
            self.stats.bad_hash += 1;
            self.give_up(
                request_id,
                from,
                format!("chunk {k} of {name} failed its hash"),
            );
            return;
        }
        self.requests.remove(&request_id);
        let Some(f) = self.fetches.get_mut(&s) else {
            return;
        };
        f.in_flight[k] = false;
        if f.have[k] {
            return; // asked twice (after a timeout), answered twice: harmless
        }
        f.have[k] = true;
        f.missing -= 1;
        self.stats.bytes_fetched += data.len() as u64;
        self.stats.chunks_fetched += 1;
        self.events.push_back(ExchangeEvent::Chunk {
            stem: s,
            chunk: k,
            data,
        });
        if f.missing == 0 {
            // The fetch stays until the shell has checked the whole file
            // ([`Exchange::done`]); it may reopen chunks meanwhile.
            self.events.push_back(ExchangeEvent::Complete { stem: s });
        }
    }

    fn unexpected(&mut self, from: PeerId, what: &str) {
        self.stats.unexpected += 1;
        self.events.push_back(ExchangeEvent::Refused {
            from,
            what: what.into(),
        });
    }

    /// `from` answered `request_id` wrongly (`what`): a strike, the chunk
    /// back in the queue, and an event saying so.
    fn give_up(&mut self, request_id: u32, from: PeerId, what: String) {
        self.strike(request_id);
        self.requeue(request_id);
        self.events.push_back(ExchangeEvent::Refused { from, what });
    }

    fn strike(&mut self, request_id: u32) {
        if let Some(r) = self.requests.get(&request_id)
            && let Some(f) = self.fetches.get_mut(&r.stem)
        {
            *f.strikes.entry(r.peer).or_default() += 1;
        }
    }

    fn requeue(&mut self, request_id: u32) {
        if let Some(r) = self.requests.remove(&request_id)
            && let Some(f) = self.fetches.get_mut(&r.stem)
        {
            f.in_flight[r.chunk] = false;
        }
    }

    /// Sends as many requests as the limits allow, most urgent first.
    fn schedule(&mut self, now_ns: i64) {
        if !self.wanted.is_empty() {
            self.ask_infos(now_ns);
        }
        if self.fetches.values().all(|f| f.missing == 0) {
            return;
        }
        let mut per_host: BTreeMap<PeerId, usize> = BTreeMap::new();
        let mut per_stem: BTreeMap<StemHash, usize> = BTreeMap::new();
        for r in self.requests.values() {
            *per_host.entry(r.peer).or_default() += 1;
            *per_stem.entry(r.stem).or_default() += 1;
        }
        // Priority classes, each with its per-stem limit on requests in
        // flight: blocked-on, seek target, window, the rest.
        for class in 0..4 {
            let stems: Vec<StemHash> = self.fetches.keys().copied().collect();
            for s in stems {
                let f = &self.fetches[&s];
                let info = f.info.clone();
                let info = &info;
                let n = f.have.len();
                let window = window_chunks(info, self.cfg.window_ns);
                let (limit, order): (usize, Vec<usize>) = match class {
                    0 => (usize::MAX, f.focus.urgent.into_iter().collect()),
                    1 => (
                        self.cfg.window_in_flight,
                        f.focus
                            .hint
                            .map(|h| (h.saturating_sub(1)..(h + 3).min(n)).collect())
                            .unwrap_or_default(),
                    ),
                    2 => (
                        self.cfg.window_in_flight,
                        (f.focus.cursor.min(n)..(f.focus.cursor + window).min(n)).collect(),
                    ),
                    _ => (
                        self.cfg.window_in_flight + self.cfg.background_in_flight,
                        (f.focus.cursor.min(n)..n)
                            .chain(0..f.focus.cursor.min(n))
                            .collect(),
                    ),
                };
                for k in order {
                    if per_stem.get(&s).copied().unwrap_or(0) >= limit {
                        break;
                    }
                    let f = &self.fetches[&s];
                    if k >= n || f.have[k] || f.in_flight[k] {
                        continue;
                    }
                    // A blocked decoder's chunk goes out whatever the hosts' load.
                    // The rest of the file leaves each host two slots for the
                    // window and a seek target.
                    let host_limit = match class {
                        0 => usize::MAX,
                        3 => self.cfg.per_host_in_flight.saturating_sub(2).max(1),
                        _ => self.cfg.per_host_in_flight,
                    };
                    let Some(peer) = self.pick_host(&info.hash, f, &per_host, host_limit, k) else {
                        break; // nobody can take it now
                    };
                    let id = self.next_request;
                    self.next_request = self.next_request.wrapping_add(1).max(1);
                    let range = info.chunk_range(k);
                    self.requests.insert(
                        id,
                        Request {
                            peer,
                            stem: s,
                            chunk: k,
                            sent_ns: now_ns,
                        },
                    );
                    if let Some(f) = self.fetches.get_mut(&s) {
                        f.in_flight[k] = true;
                    }
                    *per_host.entry(peer).or_default() += 1;
                    *per_stem.entry(s).or_default() += 1;
                    self.out.push_back(Transmit {
                        to: peer,
                        room: Room {
                            request_id: id,
                            op: Operation::ChunkRequest {
                                stem: info.hash,
                                offset: range.start,
                                len: (range.end - range.start) as u32,
                            },
                        },
                    });
                }
            }
        }
    }

    /// The linked host of `hash` with the fewest strikes, then the fewest
    /// requests in flight, then (spreading consecutive chunks) by chunk.
    fn pick_host(
        &self,
        hash: &StemHash,
        f: &Fetch,
        per_host: &BTreeMap<PeerId, usize>,
        host_limit: usize,
        chunk: usize,
    ) -> Option<PeerId> {
        let candidates: Vec<(u32, usize, PeerId)> = (self.hosts.iter())
            .filter(|(p, h)| h.contains(hash) && self.links.contains(p))
            .map(|(p, _)| {
                (
                    f.strikes.get(p).copied().unwrap_or(0),
                    per_host.get(p).copied().unwrap_or(0),
                    *p,
                )
            })
            .filter(|&(_, busy, _)| busy < host_limit)
            .collect();
        let best = candidates.iter().map(|&(s, b, _)| (s, b)).min()?;
        let tied: Vec<PeerId> = (candidates.iter())
            .filter(|&&(s, b, _)| (s, b) == best)
            .map(|&(_, _, p)| p)
            .collect();
        Some(tied[chunk % tied.len()])
    }
}

/// How many chunks of `info` hold `window_ns` of audio (at least 2).
fn window_chunks(info: &StemInfo, window_ns: i64) -> usize {
    let duration_ns =
        crate::protocol::frames_to_ns(info.frames as i64, crate::audio::ENGINE_RATE_HZ);
    if duration_ns <= 0 {
        return info.chunks();
    }
    let bytes = info.size_bytes as f64 * window_ns as f64 / duration_ns as f64;
    ((bytes / f64::from(info.chunk_bytes())).ceil() as usize).max(2)
}
