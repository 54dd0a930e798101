//! Replicating the library over links, as a sans-IO state machine (like the
//! session and the exchange: link changes, messages and `now` in; messages
//! and events out; no I/O, no clock).
//!
//! - **Changes spread as deltas.** A local add or remove, and any record
//!   that changed this peer's library when it arrived, is sent to every
//!   linked peer (but the one it came from). Merging is idempotent, so a
//!   record that changes nothing goes no further: a change crosses each
//!   link about once.
//! - **Digests repair the rest.** On every link-up, and every
//!   [`ReplicaConfig::anti_entropy_ns`] to every link, a peer sends the
//!   BLAKE3 of its whole library. A peer whose own differs answers with its
//!   whole library (in pages) followed by its own digest; the other merges
//!   the pages, and if it still differs (it held records the first lacked),
//!   answers the same way. Two peers that differ are equal after two
//!   answers, whatever was lost before: a partition, a lost delta, a peer
//!   that was away.
//! - **Bounded.** A whole library is sent to one peer at most once per
//!   [`ReplicaConfig::min_full_interval_ns`] (a digest flood costs digests,
//!   not libraries); records are checked and the library's limits hold
//!   ([`super::Library`]); a refused record is reported once per message,
//!   with its reason.

use std::collections::{BTreeMap, VecDeque};

use super::{Library, LibraryError, Records};
use crate::protocol::PeerId;
use crate::protocol::library::{MAX_RECORDS_PER_MESSAGE, SongId};
use crate::protocol::message::{Operation, StemHash};
use crate::protocol::stem::StemInfo;

/// Tuning of the replica.
#[derive(Clone, Copy, Debug)]
pub struct ReplicaConfig {
    /// How often every link is sent this peer's digest.
    pub anti_entropy_ns: i64,
    /// The least time between two whole libraries sent to one peer.
    pub min_full_interval_ns: i64,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            anti_entropy_ns: 5_000_000_000,
            min_full_interval_ns: 1_000_000_000,
        }
    }
}

/// What the replica tells its shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LibraryEvent {
    /// The library changed (a local change, or records from `from`).
    Changed { from: Option<PeerId> },
    /// Records from `from` were refused: how many, and the first reason.
    Refused {
        from: PeerId,
        count: usize,
        reason: String,
    },
}

#[derive(Debug, Default)]
struct Link {
    /// When this peer was last sent our whole library.
    last_full_ns: Option<i64>,
    /// It differs from us and waits for our whole library.
    owed: bool,
}

/// One peer's copy of the library and its side of the replication.
#[derive(Debug)]
pub struct Replica {
    library: Library,
    cfg: ReplicaConfig,
    links: BTreeMap<PeerId, Link>,
    out: VecDeque<(PeerId, Operation)>,
    events: VecDeque<LibraryEvent>,
    next_digest_ns: Option<i64>,
}

impl Replica {
    pub fn new(library: Library, cfg: ReplicaConfig) -> Replica {
        Replica {
            library,
            cfg,
            links: BTreeMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            next_digest_ns: None,
        }
    }

    pub fn library(&self) -> &Library {
        &self.library
    }

    pub fn handle_link_up(&mut self, now_ns: i64, peer: PeerId) {
        self.links.insert(peer, Link::default());
        self.send_digest(peer);
        self.next_digest_ns
            .get_or_insert(now_ns + self.cfg.anti_entropy_ns);
    }

    pub fn handle_link_down(&mut self, peer: PeerId) {
        self.links.remove(&peer);
    }

    /// A library operation from linked peer `from` (others are ignored).
    pub fn handle_message(&mut self, now_ns: i64, from: PeerId, op: Operation) {
        if !self.links.contains_key(&from) {
            return;
        }
        match op {
            Operation::LibraryDigest { digest, .. } if digest != self.library.digest() => {
                if let Some(link) = self.links.get_mut(&from) {
                    link.owed = true;
                }
                self.send_owed(now_ns);
            }
            Operation::LibraryRecords { songs, stems } => {
                self.merge(from, Records { songs, stems })
            }
            _ => {}
        }
    }

    fn merge(&mut self, from: PeerId, records: Records) {
        let mut changed = Records::default();
        let mut refused: Vec<LibraryError> = Vec::new();
        for r in records.songs {
            match self.library.merge_song(r.clone()) {
                Ok(true) => changed.songs.push(r),
                Ok(false) => {}
                Err(e) => refused.push(e),
            }
        }
        for r in records.stems {
            match self.library.merge_stem(r.clone()) {
                Ok(true) => changed.stems.push(r),
                Ok(false) => {}
                Err(e) => refused.push(e),
            }
        }
        if let Some(first) = refused.first() {
            self.events.push_back(LibraryEvent::Refused {
                from,
                count: refused.len(),
                reason: first.to_string(),
            });
        }
        if !changed.is_empty() {
            self.broadcast(&changed, Some(from));
            self.events
                .push_back(LibraryEvent::Changed { from: Some(from) });
        }
    }

    pub fn handle_timeout(&mut self, now_ns: i64) {
        if self.next_digest_ns.is_some_and(|t| now_ns >= t) {
            let peers: Vec<PeerId> = self.links.keys().copied().collect();
            for peer in peers {
                self.send_digest(peer);
            }
            self.next_digest_ns =
                (!self.links.is_empty()).then_some(now_ns + self.cfg.anti_entropy_ns);
        }
        self.send_owed(now_ns);
    }

    /// When [`Replica::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<i64> {
        let owed = (self.links.values())
            .filter(|l| l.owed)
            .filter_map(|l| l.last_full_ns.map(|t| t + self.cfg.min_full_interval_ns));
        self.next_digest_ns.into_iter().chain(owed).min()
    }

    pub fn poll_transmit(&mut self) -> Option<(PeerId, Operation)> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<LibraryEvent> {
        self.events.pop_front()
    }

    /// Adds song `name` with `stems` here (see [`Library::add`]) and tells
    /// every linked peer.
    pub fn add(&mut self, name: &str, stems: &[StemInfo]) -> Result<SongId, LibraryError> {
        let changed = self.library.add(name, stems)?;
        self.local_change(&changed);
        Ok(SongId::of_name(name))
    }

    /// Removes a song (all its stems), or one stem of it.
    pub fn remove(&mut self, song: SongId, stem: Option<StemHash>) -> Result<(), LibraryError> {
        let changed = match stem {
            None => self.library.remove_song(song)?,
            Some(hash) => self.library.remove_stem(song, hash)?,
        };
        self.local_change(&changed);
        Ok(())
    }

    /// Merges a library kept on disk; what it changes is sent as a local
    /// change would be (links may be up already).
    pub fn load(&mut self, saved: &Library) {
        let mut changed = Records::default();
        let records = saved.records();
        for r in records.songs {
            if self.library.merge_song(r.clone()) == Ok(true) {
                changed.songs.push(r);
            }
        }
        for r in records.stems {
            if self.library.merge_stem(r.clone()) == Ok(true) {
                changed.stems.push(r);
            }
        }
        self.local_change(&changed);
    }

    fn local_change(&mut self, changed: &Records) {
        if !changed.is_empty() {
            self.broadcast(changed, None);
            self.events.push_back(LibraryEvent::Changed { from: None });
        }
    }

    fn send_digest(&mut self, peer: PeerId) {
        self.out.push_back((
            peer,
            Operation::LibraryDigest {
                digest: self.library.digest(),
                records: self.library.len() as u32,
            },
        ));
    }

    /// Sends the whole library, then our digest, to each peer owed it whose
    /// last one is old enough.
    fn send_owed(&mut self, now_ns: i64) {
        let min = self.cfg.min_full_interval_ns;
        let due: Vec<PeerId> = (self.links.iter())
            .filter(|(_, l)| l.owed && l.last_full_ns.is_none_or(|t| now_ns - t >= min))
            .map(|(p, _)| *p)
            .collect();
        if due.is_empty() {
            return;
        }
        let all = self.library.records();
        for peer in due {
            if let Some(link) = self.links.get_mut(&peer) {
                link.owed = false;
                link.last_full_ns = Some(now_ns);
            }
            self.send_records(peer, &all);
            self.send_digest(peer);
        }
    }

    fn broadcast(&mut self, records: &Records, except: Option<PeerId>) {
        let peers: Vec<PeerId> = (self.links.keys())
            .filter(|p| Some(**p) != except)
            .copied()
            .collect();
        for peer in peers {
            self.send_records(peer, records);
        }
    }

    /// `records` to `peer`, in pages of [`MAX_RECORDS_PER_MESSAGE`] of each kind.
    fn send_records(&mut self, peer: PeerId, records: &Records) {
        let mut songs = records.songs.chunks(MAX_RECORDS_PER_MESSAGE);
        let mut stems = records.stems.chunks(MAX_RECORDS_PER_MESSAGE);
        loop {
            let (a, b) = (songs.next(), stems.next());
            if a.is_none() && b.is_none() {
                break;
            }
            self.out.push_back((
                peer,
                Operation::LibraryRecords {
                    songs: a.unwrap_or_default().to_vec(),
                    stems: b.unwrap_or_default().to_vec(),
                },
            ));
        }
    }
}
