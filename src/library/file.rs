//! The library kept between runs: `<data dir>/library.bin`, the library's
//! records and the files this peer hosts, in the wire encoding behind a
//! magic and a version, written whole through a temporary file and a rename
//! (a crash leaves the old file or the new one, never half of one).
//!
//! ```text
//! | "SYNFLIB\0" | version u16 | songs u32 | SongRecord… | stems u32 | StemRecord… |
//! | hosted u32 | Hosted… |
//! ```
//!
//! A file that cannot be read as this is set aside (renamed
//! `library.bin.bad-<unix seconds>`) by [`load`], which says so: the peer
//! starts with an empty library rather than not at all.

use std::path::{Path, PathBuf};

use super::{Library, MAX_STEM_RECORDS};
use crate::protocol::library::{SongRecord, StemRecord};
use crate::protocol::stem::StemInfo;
use crate::wire::{Model, Reader, WireError, Writer};

pub const FILE_NAME: &str = "library.bin";
const MAGIC: &[u8; 8] = b"SYNFLIB\0";
const VERSION: u16 = 1;
/// Longest path kept for a hosted file.
const MAX_PATH_BYTES: usize = 4096;

/// A file this peer hosts: where it is, what it was when described (a file
/// whose size or time changed is described again), and its description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hosted {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub modified_ns: i64,
    pub info: StemInfo,
}

/// What a peer keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    pub library: Library,
    pub hosted: Vec<Hosted>,
}

/// Why a library file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LibraryFileError {
    #[error("cannot read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path} is not a synfony library ({why}); it was set aside as {aside}")]
    Corrupt {
        path: PathBuf,
        why: String,
        aside: String,
    },
}

impl Model for Hosted {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        let path = self.path.to_str().ok_or(WireError::Invalid {
            field: "hosted.path",
            reason: "a path that is not UTF-8",
        })?;
        w.put_text(path, MAX_PATH_BYTES, "hosted.path")?;
        w.put_u64(self.size_bytes);
        w.put_i64(self.modified_ns);
        self.info.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Hosted {
            path: PathBuf::from(r.text(MAX_PATH_BYTES, "hosted.path")?),
            size_bytes: r.u64("hosted.size_bytes")?,
            modified_ns: r.i64("hosted.modified_ns")?,
            info: r.get()?,
        })
    }
}

/// The file's bytes for `saved` (hosted files whose path is not UTF-8 are
/// left out: they are described again next time).
pub fn encode(saved: &Saved) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = Writer::new(&mut buf);
    w.put_array(MAGIC);
    w.put_u16(VERSION);
    let records = saved.library.records();
    w.put_u32(records.songs.len() as u32);
    for r in &records.songs {
        // Records in a library passed their checks: they encode.
        let _ = r.encode(&mut w);
    }
    w.put_u32(records.stems.len() as u32);
    for r in &records.stems {
        let _ = r.encode(&mut w);
    }
    let hosted: Vec<Vec<u8>> = (saved.hosted.iter())
        .filter_map(|h| crate::wire::encode_to_vec(h).ok())
        .collect();
    w.put_u32(hosted.len() as u32);
    for h in hosted {
        buf.extend_from_slice(&h);
    }
    buf
}

/// Reads a library file's bytes; every record is checked as if a peer sent it.
pub fn decode(bytes: &[u8]) -> Result<Saved, String> {
    let mut r = Reader::new(bytes);
    let e = |e: WireError| e.to_string();
    if r.array::<8>("magic").map_err(e)? != *MAGIC {
        return Err("no library header".into());
    }
    let version = r.u16("version").map_err(e)?;
    if version != VERSION {
        return Err(format!("version {version}, this synfony reads {VERSION}"));
    }
    let mut library = Library::new();
    let songs = r.u32("songs").map_err(e)? as usize;
    if songs > super::MAX_SONGS {
        return Err(format!("{songs} songs"));
    }
    for _ in 0..songs {
        let rec: SongRecord = r.get().map_err(e)?;
        library.merge_song(rec).map_err(|e| e.to_string())?;
    }
    let stems = r.u32("stems").map_err(e)? as usize;
    if stems > MAX_STEM_RECORDS {
        return Err(format!("{stems} stems"));
    }
    for _ in 0..stems {
        let rec: StemRecord = r.get().map_err(e)?;
        library.merge_stem(rec).map_err(|e| e.to_string())?;
    }
    let n = r.u32("hosted").map_err(e)? as usize;
    if n > MAX_STEM_RECORDS {
        return Err(format!("{n} hosted files"));
    }
    let mut hosted = Vec::new();
    for _ in 0..n {
        hosted.push(r.get().map_err(e)?);
    }
    r.finish("library").map_err(e)?;
    Ok(Saved { library, hosted })
}

/// Where the library lives in `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Reads the library kept in `dir`: nothing yet is an empty one; a corrupt
/// file is set aside (and the error says where).
pub fn load(dir: &Path) -> Result<Saved, LibraryFileError> {
    let path = path_in(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
        Err(cause) => return Err(LibraryFileError::Read { path, cause }),
    };
    decode(&bytes).map_err(|why| {
        let aside = set_aside(&path, FILE_NAME);
        LibraryFileError::Corrupt { path, why, aside }
    })
}

/// Renames a file that cannot be read (`<name>.bad-<unix seconds>`);
/// returns where it went, or why it did not.
pub(super) fn set_aside(path: &Path, name: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let aside = path.with_file_name(format!("{name}.bad-{secs}"));
    match std::fs::rename(path, &aside) {
        Ok(()) => aside.display().to_string(),
        Err(e) => format!("(not: {e})"),
    }
}

/// Writes `bytes` (from [`encode`]) as the library kept in `dir`.
pub fn save(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    save_as(dir, FILE_NAME, bytes)
}

/// Writes `bytes` as `dir/name`, whole, through a temporary file and a
/// rename (a crash leaves the old file or the new one).
pub(super) fn save_as(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let tmp = path.with_file_name(format!("{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> Saved {
        let mut library = Library::new();
        let info = StemInfo::of_bytes("bass", "wav", b"0123456789", 480);
        library
            .add("Blue in Green", std::slice::from_ref(&info))
            .unwrap();
        library.add("So What", &[]).unwrap();
        library
            .remove_song(crate::protocol::library::SongId::of_name("so what"))
            .unwrap();
        Saved {
            library,
            hosted: vec![Hosted {
                path: "/music/bass.wav".into(),
                size_bytes: 10,
                modified_ns: 1_700_000_000_000_000_000,
                info,
            }],
        }
    }

    #[test]
    fn a_library_comes_back_as_it_was_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = saved();
        save(dir.path(), &encode(&s)).unwrap();
        assert_eq!(load(dir.path()).unwrap(), s);
        assert_eq!(load(&dir.path().join("none")).unwrap(), Saved::default());
    }

    #[test]
    fn a_corrupt_library_is_set_aside_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = encode(&saved());
        for bad in [&bytes[..bytes.len() - 3], b"hello".as_slice(), &[]] {
            std::fs::write(path_in(dir.path()), bad).unwrap();
            let e = load(dir.path()).unwrap_err().to_string();
            assert!(e.contains("library.bin") && e.contains("set aside"), "{e}");
            assert!(!path_in(dir.path()).exists());
            // Starting again finds no library, not the bad one.
            assert_eq!(load(dir.path()).unwrap(), Saved::default());
        }
    }
}
