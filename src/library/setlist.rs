//! The set list kept between runs: `<data dir>/setlist.bin`, the current
//! song, the songs queued after it and those played before, as the session
//! last decided them (written after each change, whole, through a temporary
//! file and a rename). A peer that starts a session without stems of its own
//! resumes from it; one given stems plays them and keeps the set list after
//! them; a joiner takes the session's, whatever it kept.
//!
//! ```text
//! | "SYNFSET\0" | version u16 | song SongRef | queue list<SongRef> (≤ 64) |
//! | played list<SongRef> (≤ 16) |
//! ```
//!
//! A file that cannot be read as this is set aside (renamed
//! `setlist.bin.bad-<unix seconds>`) and the peer starts without it.

use std::path::{Path, PathBuf};

use crate::protocol::{MAX_PLAYED, MAX_QUEUE, SongRef};
use crate::wire::{Reader, WireError, Writer};

pub const FILE_NAME: &str = "setlist.bin";
const MAGIC: &[u8; 8] = b"SYNFSET\0";
const VERSION: u16 = 1;

/// What a peer keeps of the session's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedSetList {
    pub song: SongRef,
    pub queue: Vec<SongRef>,
    pub played: Vec<SongRef>,
}

pub fn encode(s: &SavedSetList) -> Result<Vec<u8>, WireError> {
    let mut buf = Vec::new();
    let mut w = Writer::new(&mut buf);
    w.put_array(MAGIC);
    w.put_u16(VERSION);
    crate::wire::Model::encode(&s.song, &mut w)?;
    w.put_list(&s.queue, MAX_QUEUE, "setlist.queue")?;
    w.put_list(&s.played, MAX_PLAYED, "setlist.played")?;
    Ok(buf)
}

pub fn decode(bytes: &[u8]) -> Result<SavedSetList, String> {
    let e = |e: WireError| e.to_string();
    let mut r = Reader::new(bytes);
    if r.array::<8>("magic").map_err(e)? != *MAGIC {
        return Err("no set list header".into());
    }
    let version = r.u16("version").map_err(e)?;
    if version != VERSION {
        return Err(format!("version {version}, this synfony reads {VERSION}"));
    }
    let s = SavedSetList {
        song: r.get().map_err(e)?,
        queue: r.list(MAX_QUEUE, "setlist.queue").map_err(e)?,
        played: r.list(MAX_PLAYED, "setlist.played").map_err(e)?,
    };
    r.finish("setlist").map_err(e)?;
    Ok(s)
}

pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The set list kept in `dir`: `Ok(None)` if there is none; a file that
/// cannot be read is set aside, and the error says so.
pub fn load(dir: &Path) -> Result<Option<SavedSetList>, String> {
    let path = path_in(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    decode(&bytes).map(Some).map_err(|why| {
        let aside = super::file::set_aside(&path, FILE_NAME);
        format!(
            "{} is not a synfony set list ({why}); it was set aside as {aside}",
            path.display()
        )
    })
}

/// Writes `bytes` (from [`encode`]) as the set list kept in `dir`.
pub fn save(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    super::file::save_as(dir, FILE_NAME, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_list_comes_back_and_a_corrupt_one_is_set_aside() {
        let dir = tempfile_dir();
        let song = |n: u8| SongRef {
            song: crate::protocol::library::SongId([n; 16]),
            version: [n; 16],
            channels: 2,
            duration_ns: 60_000_000_000,
        };
        let kept = SavedSetList {
            song: song(1),
            queue: vec![song(2), song(3)],
            played: vec![song(4)],
        };
        assert_eq!(load(&dir).unwrap(), None, "nothing kept yet");
        save(&dir, &encode(&kept).unwrap()).unwrap();
        assert_eq!(load(&dir).unwrap(), Some(kept));
        std::fs::write(path_in(&dir), b"SYNFSET\0garbage").unwrap();
        let e = load(&dir).unwrap_err();
        assert!(e.contains("set aside"), "{e}");
        assert_eq!(load(&dir).unwrap(), None, "set aside, not read again");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "synfony-setlist-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
