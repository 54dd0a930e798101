//! The session library: the songs every peer sees, and their stems, replicated
//! between peers with no owner and no server.
//!
//! [`Library`] is a state-based CRDT: a map of records
//! ([`crate::protocol::library`]) keyed by song id, and by (song id, stem
//! hash) for stems, each with a generation (odd: in the library; even:
//! removed). **The rule:** of two records with one key, the one with the
//! higher generation wins; at equal generations, the one whose fields are
//! lower in a fixed order (name, then format, size, frames) wins. This is a
//! join on a total order per key, so merging is commutative, associative and
//! idempotent (`tests/library_props.rs` checks the three laws and that every
//! delivery order of every record converges to one library): two peers that
//! have received the same records hold the same library, whatever the order,
//! duplicates or delays, and a partition heals by exchanging records.
//!
//! What it means for users:
//! - adding an absent song or stem, or one that was removed, adds it (next
//!   generation); adding one present changes nothing;
//! - removing a song removes it and every stem of it this peer knows; a stem
//!   added elsewhere at the same time stays, and comes back with the song if
//!   the song is added again;
//! - a remove and an add of the same record at once: both take it to the same
//!   generation, so the remove wins when the record was present, the add when
//!   it was absent — the record changes state once, never flips back and forth.
//!
//! [`replica::Replica`] replicates a library over links (sans-IO);
//! [`file`] keeps it between runs.
//!
//! **Limits.** At most [`MAX_SONGS`] song records, [`MAX_STEM_RECORDS`] stem
//! records in all and [`MAX_STEMS`] stem records per song, removed ones
//! included; a record for a new key past a limit is refused with the reason
//! (peers agree again once the library is below the limits). Every record is
//! checked ([`SongRecord::check`], [`StemRecord::check`]) before it is
//! merged, so no member can make a peer hold more than these bounds allow.
//! The library holds what a stem *is*, never who hosts it: hosts are the
//! peers linked now that say they serve its hash.

pub mod file;
pub mod replica;
pub mod setlist;

use std::cell::OnceCell;
use std::collections::BTreeMap;

use crate::protocol::library::{
    BadRecord, SongId, SongRecord, StemRecord, is_present, normal_name,
};
use crate::protocol::message::{MAX_NAME_BYTES, StemHash};
use crate::protocol::state::SONG_VERSION_BYTES;
use crate::protocol::stem::{StemInfo, hex};
use crate::protocol::{ENGINE_RATE_HZ, MAX_STEMS, SongRef, frames_to_ns};
use crate::wire::{Model, Writer};

pub use replica::{LibraryEvent, Replica, ReplicaConfig};

/// Song records a library holds (removed ones included).
pub const MAX_SONGS: usize = 1024;
/// Stem records a library holds in all (removed ones included): a band's
/// repertoire many times over, about 1.5 MB.
pub const MAX_STEM_RECORDS: usize = 8192;

/// Why a change to the library is not made.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("{0}")]
    Bad(#[from] BadRecord),
    #[error("the library holds {MAX_SONGS} songs, the most it can")]
    TooManySongs,
    #[error("the library holds {MAX_STEM_RECORDS} stems, the most it can")]
    TooManyStems,
    #[error("song {0:?} has {MAX_STEMS} stems, the most a song can")]
    SongFull(String),
    #[error("no song {0:?} in the library")]
    NoSong(String),
    #[error("{0:?} names more than one song: give more of its id")]
    Ambiguous(String),
    #[error("song {song:?} has no stem {stem:?}")]
    NoStem { song: String, stem: String },
}

/// A song in the library, as shown: its record and its present stems, in
/// the song's order (by name, then hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Song<'a> {
    pub record: &'a SongRecord,
    pub stems: Vec<&'a StemRecord>,
}

impl Song<'_> {
    pub fn id(&self) -> SongId {
        self.record.id
    }

    /// This version of the song, as a vote names it: its id, the digest of
    /// its stem list (BLAKE3 over each stem's hash, name, format, size and
    /// length, in the song's order), its stem count and its length. Peers
    /// whose libraries hold the same stems for it compute the same.
    pub fn version(&self) -> SongRef {
        let mut h = blake3::Hasher::new();
        h.update(b"synfony song version\0");
        for s in &self.stems {
            h.update(&s.hash);
            for text in [&s.name, &s.format] {
                h.update(&(text.len() as u32).to_be_bytes());
                h.update(text.as_bytes());
            }
            h.update(&s.size_bytes.to_be_bytes());
            h.update(&s.frames.to_be_bytes());
        }
        let mut version = [0; SONG_VERSION_BYTES];
        version.copy_from_slice(&h.finalize().as_bytes()[..SONG_VERSION_BYTES]);
        let frames = i64::try_from(self.frames()).unwrap_or(i64::MAX);
        SongRef {
            song: self.id(),
            version,
            channels: self.stems.len().min(MAX_STEMS) as u16,
            duration_ns: frames_to_ns(frames, ENGINE_RATE_HZ).clamp(0, SongRef::MAX_DURATION_NS),
        }
    }

    /// Length of the longest stem, in frames at the engine rate.
    pub fn frames(&self) -> u64 {
        self.stems.iter().map(|s| s.frames).max().unwrap_or(0)
    }
}

/// The records a change made (or a peer must be sent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    pub songs: Vec<SongRecord>,
    pub stems: Vec<StemRecord>,
}

impl Records {
    pub fn is_empty(&self) -> bool {
        self.songs.is_empty() && self.stems.is_empty()
    }

    pub fn len(&self) -> usize {
        self.songs.len() + self.stems.len()
    }
}

/// The library: see the module doc.
#[derive(Clone, Debug, Default)]
pub struct Library {
    songs: BTreeMap<SongId, SongRecord>,
    stems: BTreeMap<(SongId, StemHash), StemRecord>,
    /// Stem records per song (for the per-song limit).
    per_song: BTreeMap<SongId, usize>,
    digest: OnceCell<[u8; 32]>,
}

impl PartialEq for Library {
    fn eq(&self, other: &Library) -> bool {
        self.songs == other.songs && self.stems == other.stems
    }
}

impl Eq for Library {}

/// Whether `new` wins over `old` (same key): the merge rule.
fn song_wins(new: &SongRecord, old: &SongRecord) -> bool {
    (new.generation, std::cmp::Reverse(&new.name)) > (old.generation, std::cmp::Reverse(&old.name))
}

fn stem_fields(r: &StemRecord) -> (&str, &str, u64, u64) {
    (&r.name, &r.format, r.size_bytes, r.frames)
}

fn stem_wins(new: &StemRecord, old: &StemRecord) -> bool {
    (new.generation, std::cmp::Reverse(stem_fields(new)))
        > (old.generation, std::cmp::Reverse(stem_fields(old)))
}

/// `name` cut to what a record can hold.
fn record_name(name: &str) -> String {
    crate::protocol::stem::truncate(name.trim(), MAX_NAME_BYTES)
}

impl Library {
    pub fn new() -> Library {
        Library::default()
    }

    /// Records held (removed ones included).
    pub fn len(&self) -> usize {
        self.songs.len() + self.stems.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Merges one song record; `Ok(true)` if it changed the library.
    pub fn merge_song(&mut self, rec: SongRecord) -> Result<bool, LibraryError> {
        rec.check()?;
        match self.songs.get(&rec.id) {
            Some(old) if !song_wins(&rec, old) => return Ok(false),
            None if self.songs.len() >= MAX_SONGS => return Err(LibraryError::TooManySongs),
            _ => {}
        }
        self.songs.insert(rec.id, rec);
        self.digest.take();
        Ok(true)
    }

    /// Merges one stem record; `Ok(true)` if it changed the library.
    pub fn merge_stem(&mut self, rec: StemRecord) -> Result<bool, LibraryError> {
        rec.check()?;
        match self.stems.get(&rec.key()) {
            Some(old) if !stem_wins(&rec, old) => return Ok(false),
            Some(_) => {}
            None => {
                if self.stems.len() >= MAX_STEM_RECORDS {
                    return Err(LibraryError::TooManyStems);
                }
                let n = self.per_song.get(&rec.song).copied().unwrap_or(0);
                if n >= MAX_STEMS {
                    let name = self.songs.get(&rec.song).map(|s| s.name.clone());
                    return Err(LibraryError::SongFull(name.unwrap_or(rec.song.hex())));
                }
                *self.per_song.entry(rec.song).or_default() += 1;
            }
        }
        self.stems.insert(rec.key(), rec);
        self.digest.take();
        Ok(true)
    }

    /// Merges every record of `other` (within the limits; refused records
    /// are skipped). For tests and loading.
    pub fn merge(&mut self, other: &Library) {
        for r in other.songs.values() {
            let _ = self.merge_song(r.clone());
        }
        for r in other.stems.values() {
            let _ = self.merge_stem(r.clone());
        }
    }

    /// Adds the song `name` (or brings it back) with `stems` (added, or
    /// brought back; those present stay as they are). Returns what changed.
    pub fn add(&mut self, name: &str, stems: &[StemInfo]) -> Result<Records, LibraryError> {
        let name = record_name(name);
        let id = SongId::of_name(&name);
        let mut changed = Records::default();
        let song = match self.songs.get(&id) {
            Some(s) if is_present(s.generation) => None,
            Some(s) => Some(SongRecord {
                generation: s.generation + 1,
                ..s.clone()
            }),
            None => Some(SongRecord {
                id,
                generation: 1,
                name: name.clone(),
            }),
        };
        if let Some(song) = song {
            // Checked before anything changes: a bad name adds nothing.
            song.check()?;
            if self.merge_song(song.clone())? {
                changed.songs.push(song);
            }
        }
        for info in stems {
            let rec = match self.stems.get(&(id, info.hash)) {
                Some(s) if is_present(s.generation) => continue,
                Some(s) => StemRecord {
                    generation: s.generation + 1,
                    ..s.clone()
                },
                None => StemRecord {
                    song: id,
                    hash: info.hash,
                    generation: 1,
                    name: record_name(&info.name),
                    format: info.format.clone(),
                    size_bytes: info.size_bytes,
                    frames: info.frames,
                },
            };
            if self.merge_stem(rec.clone())? {
                changed.stems.push(rec);
            }
        }
        Ok(changed)
    }

    /// Removes song `id` and every stem of it held here.
    pub fn remove_song(&mut self, id: SongId) -> Result<Records, LibraryError> {
        let song = (self.songs.get(&id))
            .filter(|s| is_present(s.generation))
            .ok_or_else(|| LibraryError::NoSong(id.hex()))?;
        let song = SongRecord {
            generation: song.generation + 1,
            ..song.clone()
        };
        let stems: Vec<StemRecord> = (self.stems.range((id, [0; 32])..=(id, [0xff; 32])))
            .map(|(_, s)| s)
            .filter(|s| is_present(s.generation))
            .map(|s| StemRecord {
                generation: s.generation + 1,
                ..s.clone()
            })
            .collect();
        let mut changed = Records::default();
        if self.merge_song(song.clone())? {
            changed.songs.push(song);
        }
        for s in stems {
            if self.merge_stem(s.clone())? {
                changed.stems.push(s);
            }
        }
        Ok(changed)
    }

    /// Removes stem `hash` of song `id`.
    pub fn remove_stem(&mut self, id: SongId, hash: StemHash) -> Result<Records, LibraryError> {
        let stem = (self.stems.get(&(id, hash)))
            .filter(|s| is_present(s.generation))
            .ok_or_else(|| LibraryError::NoStem {
                song: id.hex(),
                stem: hex(&hash),
            })?;
        let stem = StemRecord {
            generation: stem.generation + 1,
            ..stem.clone()
        };
        self.merge_stem(stem.clone())?;
        Ok(Records {
            songs: vec![],
            stems: vec![stem],
        })
    }

    /// The song `query` names: its name (any spelling of it) or at least 6
    /// hex digits of its id, among the songs present.
    pub fn find_song(&self, query: &str) -> Result<SongId, LibraryError> {
        let by_name = SongId::of_name(query);
        if (self.songs.get(&by_name)).is_some_and(|s| is_present(s.generation)) {
            return Ok(by_name);
        }
        let q = query.trim().to_ascii_lowercase();
        if q.len() >= 6 && q.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut found = (self.songs.values())
                .filter(|s| is_present(s.generation) && s.id.hex().starts_with(&q));
            if let Some(first) = found.next() {
                return match found.next() {
                    None => Ok(first.id),
                    Some(_) => Err(LibraryError::Ambiguous(query.into())),
                };
            }
        }
        Err(LibraryError::NoSong(query.into()))
    }

    /// The stem `query` names in song `id`: its name, its index in the
    /// song's order, or at least 6 hex digits of its hash.
    pub fn find_stem(&self, id: SongId, query: &str) -> Result<StemHash, LibraryError> {
        let song = self
            .song(id)
            .ok_or_else(|| LibraryError::NoSong(id.hex()))?;
        let q = query.trim();
        let by_name: Vec<_> = song.stems.iter().filter(|s| s.name == q).collect();
        if let [one] = by_name.as_slice() {
            return Ok(one.hash);
        }
        if let Ok(i) = q.parse::<usize>()
            && let Some(s) = song.stems.get(i)
        {
            return Ok(s.hash);
        }
        let lower = q.to_ascii_lowercase();
        if lower.len() >= 6 && lower.chars().all(|c| c.is_ascii_hexdigit()) {
            let found: Vec<_> = (song.stems.iter())
                .filter(|s| hex(&s.hash).starts_with(&lower))
                .collect();
            if let [one] = found.as_slice() {
                return Ok(one.hash);
            }
        }
        Err(LibraryError::NoStem {
            song: song.record.name.clone(),
            stem: query.into(),
        })
    }

    /// Song `id`, if present.
    pub fn song(&self, id: SongId) -> Option<Song<'_>> {
        let record = self.songs.get(&id).filter(|s| is_present(s.generation))?;
        let mut stems: Vec<&StemRecord> = (self.stems.range((id, [0; 32])..=(id, [0xff; 32])))
            .map(|(_, s)| s)
            .filter(|s| is_present(s.generation))
            .collect();
        stems.sort_by(|a, b| (&a.name, a.hash).cmp(&(&b.name, b.hash)));
        Some(Song { record, stems })
    }

    /// The songs present, by name.
    pub fn songs(&self) -> Vec<Song<'_>> {
        let mut songs: Vec<Song<'_>> = self.songs.keys().filter_map(|id| self.song(*id)).collect();
        songs.sort_by_cached_key(|s| (normal_name(&s.record.name), s.record.id));
        songs
    }

    /// Every record (removed ones included), in key order.
    pub fn records(&self) -> Records {
        Records {
            songs: self.songs.values().cloned().collect(),
            stems: self.stems.values().cloned().collect(),
        }
    }

    /// BLAKE3 of every record in key order: equal libraries, equal digests.
    pub fn digest(&self) -> [u8; 32] {
        *self.digest.get_or_init(|| {
            let mut h = blake3::Hasher::new();
            h.update(&(self.songs.len() as u64).to_be_bytes());
            let mut buf = Vec::with_capacity(256);
            for r in self.songs.values() {
                feed(&mut h, &mut buf, r);
            }
            for r in self.stems.values() {
                feed(&mut h, &mut buf, r);
            }
            *h.finalize().as_bytes()
        })
    }
}

/// Hashes `record`'s encoding (a record in a library passed its checks, so
/// it encodes).
fn feed(h: &mut blake3::Hasher, buf: &mut Vec<u8>, record: &impl Model) {
    buf.clear();
    if record.encode(&mut Writer::new(buf)).is_ok() {
        h.update(buf);
    }
}

#[cfg(test)]
mod tests;
