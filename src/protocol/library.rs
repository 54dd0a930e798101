//! The session library as peers say it: a record per song and per stem of a
//! song, each with a **generation** — odd while it is in the library, even
//! once removed (a causal-length set; Yu and Rostad, 2020). Adding an absent
//! record or removing a present one takes it to the next generation; merging
//! keeps the higher generation. What `crate::library` does with them (the
//! merge, its laws, the limits) is documented there.
//!
//! A song is named by its name: [`SongId`] is a hash of the name in a normal
//! form (trimmed, inner white space collapsed, lower case), so two peers that
//! add "Blue in Green" at once add one song, and each brings its stems to it.
//! A stem of a song is named by the song and its file's BLAKE3 hash, so the
//! same file added twice, by one peer or two, is one stem.

use super::message::{MAX_NAME_BYTES, StemHash};
use super::stem::{MAX_FORMAT_BYTES, MAX_STEM_FILE_BYTES};
use crate::wire::{Model, Reader, WireError, Writer};

/// Bytes of a song id.
pub const SONG_ID_BYTES: usize = 16;
/// Records in one [`super::message::Operation::LibraryRecords`] (of each kind):
/// 256 stem records are about 40 KiB, well under a frame.
pub const MAX_RECORDS_PER_MESSAGE: usize = 256;
/// The highest generation a record may have. An honest library moves one
/// generation per add or remove; a hostile member claiming more is refused.
pub const MAX_GENERATION: u32 = 1 << 20;
/// The longest stem, in frames at the engine rate: a day. The file-size limit
/// ([`MAX_STEM_FILE_BYTES`]) is the real one; this only refuses absurd claims.
pub const MAX_LIBRARY_STEM_FRAMES: u64 = 48_000 * 3600 * 24;

/// A song's identity: derived from its name ([`SongId::of_name`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct SongId(pub [u8; SONG_ID_BYTES]);

impl SongId {
    /// The id of the song named `name` (any spelling with the same
    /// [`normal_name`]).
    pub fn of_name(name: &str) -> SongId {
        let mut h = blake3::Hasher::new();
        h.update(b"synfony song\0");
        h.update(normal_name(name).as_bytes());
        let mut id = [0; SONG_ID_BYTES];
        id.copy_from_slice(&h.finalize().as_bytes()[..SONG_ID_BYTES]);
        SongId(id)
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Display for SongId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

/// A song name's normal form: trimmed, inner white space one space, lower case.
pub fn normal_name(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether a record is in the library at generation `g`.
pub fn is_present(generation: u32) -> bool {
    generation % 2 == 1
}

/// One song of the library.
///
/// ```text
/// | id [16] | generation u32 | name text (≤ 64) |
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SongRecord {
    pub id: SongId,
    pub generation: u32,
    pub name: String,
}

/// One stem of a song of the library: what a peer needs to show it and to
/// know what to fetch (the chunk hashes come from a host when it is played).
///
/// ```text
/// | song [16] | hash [32] | generation u32 | name text (≤ 64) | format text (≤ 16) |
/// | size_bytes u64 | frames u64 |
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StemRecord {
    pub song: SongId,
    pub hash: StemHash,
    pub generation: u32,
    pub name: String,
    pub format: String,
    pub size_bytes: u64,
    /// Length once decoded, in frames at the engine rate.
    pub frames: u64,
}

impl StemRecord {
    pub fn key(&self) -> (SongId, StemHash) {
        (self.song, self.hash)
    }
}

/// Why a record from another peer is not taken.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum BadRecord {
    #[error("generation 0 (a record that was never added)")]
    GenerationZero,
    #[error("generation {0}, above the most an honest library reaches ({MAX_GENERATION})")]
    GenerationTooHigh(u32),
    #[error("an empty or blank name")]
    BlankName,
    #[error("a name with control characters")]
    ControlInName,
    #[error("song id {id} is not the id of its name {name:?}")]
    IdNotName { id: SongId, name: String },
    #[error("an empty file")]
    Empty,
    #[error("a file of {0} bytes, over the {MAX_STEM_FILE_BYTES}-byte limit")]
    TooLarge(u64),
    #[error("a stem of {0} frames, longer than a day")]
    TooLong(u64),
}

fn check_name(name: &str) -> Result<(), BadRecord> {
    if name.trim().is_empty() {
        return Err(BadRecord::BlankName);
    }
    if name.chars().any(char::is_control) {
        return Err(BadRecord::ControlInName);
    }
    Ok(())
}

fn check_generation(g: u32) -> Result<(), BadRecord> {
    match g {
        0 => Err(BadRecord::GenerationZero),
        g if g > MAX_GENERATION => Err(BadRecord::GenerationTooHigh(g)),
        _ => Ok(()),
    }
}

impl SongRecord {
    /// Whether an honest library could hold this record.
    pub fn check(&self) -> Result<(), BadRecord> {
        check_generation(self.generation)?;
        check_name(&self.name)?;
        if SongId::of_name(&self.name) != self.id {
            return Err(BadRecord::IdNotName {
                id: self.id,
                name: self.name.clone(),
            });
        }
        Ok(())
    }
}

impl StemRecord {
    /// Whether an honest library could hold this record.
    pub fn check(&self) -> Result<(), BadRecord> {
        check_generation(self.generation)?;
        check_name(&self.name)?;
        if self.size_bytes == 0 {
            return Err(BadRecord::Empty);
        }
        if self.size_bytes > MAX_STEM_FILE_BYTES {
            return Err(BadRecord::TooLarge(self.size_bytes));
        }
        if self.frames > MAX_LIBRARY_STEM_FRAMES {
            return Err(BadRecord::TooLong(self.frames));
        }
        Ok(())
    }
}

impl Model for SongRecord {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_array(&self.id.0);
        w.put_u32(self.generation);
        w.put_text(&self.name, MAX_NAME_BYTES, "song.name")
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(SongRecord {
            id: SongId(r.array("song.id")?),
            generation: r.u32("song.generation")?,
            name: r.text(MAX_NAME_BYTES, "song.name")?,
        })
    }
}

impl Model for StemRecord {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_array(&self.song.0);
        w.put_array(&self.hash);
        w.put_u32(self.generation);
        w.put_text(&self.name, MAX_NAME_BYTES, "library_stem.name")?;
        w.put_text(&self.format, MAX_FORMAT_BYTES, "library_stem.format")?;
        w.put_u64(self.size_bytes);
        w.put_u64(self.frames);
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(StemRecord {
            song: SongId(r.array("library_stem.song")?),
            hash: r.array("library_stem.hash")?,
            generation: r.u32("library_stem.generation")?,
            name: r.text(MAX_NAME_BYTES, "library_stem.name")?,
            format: r.text(MAX_FORMAT_BYTES, "library_stem.format")?,
            size_bytes: r.u64("library_stem.size_bytes")?,
            frames: r.u64("library_stem.frames")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_name_are_one_song() {
        assert_eq!(
            SongId::of_name("Blue in Green"),
            SongId::of_name("  blue IN\tgreen ")
        );
        assert_ne!(
            SongId::of_name("Blue in Green"),
            SongId::of_name("Blue in Green 2")
        );
    }

    #[test]
    fn records_that_no_honest_library_holds_are_named() {
        let song = SongRecord {
            id: SongId::of_name("So What"),
            generation: 1,
            name: "So What".into(),
        };
        assert_eq!(song.check(), Ok(()));
        let lie = SongRecord {
            name: "Freddie".into(),
            ..song.clone()
        };
        assert!(matches!(lie.check(), Err(BadRecord::IdNotName { .. })));
        let zero = SongRecord {
            generation: 0,
            ..song.clone()
        };
        assert_eq!(zero.check(), Err(BadRecord::GenerationZero));
        let stem = StemRecord {
            song: song.id,
            hash: [7; 32],
            generation: 3,
            name: "bass\n".into(),
            format: "wav".into(),
            size_bytes: 10,
            frames: 10,
        };
        assert_eq!(stem.check(), Err(BadRecord::ControlInName));
        let huge = StemRecord {
            name: "bass".into(),
            size_bytes: u64::MAX,
            ..stem
        };
        assert_eq!(huge.check(), Err(BadRecord::TooLarge(u64::MAX)));
    }
}
