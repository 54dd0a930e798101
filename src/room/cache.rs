//! Completed stems on disk, content-addressed: `<dir>/<hex of hash>.<format>`:
//! a fetch's spool file renamed there only after the whole file's hash was
//! checked ([`super::store::StemStore::keep_in`]), and checked again before
//! it plays.

use std::path::{Path, PathBuf};

use crate::protocol::stem::StemInfo;

/// The default cache directory: the user's cache dir (`$XDG_CACHE_HOME`,
/// `~/.cache`) + `synfony/stems`.
pub fn default_dir() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|d| d.cache_dir().join("synfony").join("stems"))
}

/// Where `info`'s file lives in the cache `dir`.
pub fn path_of(dir: &Path, info: &StemInfo) -> PathBuf {
    let ext: String = (info.format.chars())
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let name = if ext.is_empty() {
        info.hex()
    } else {
        format!("{}.{ext}", info.hex())
    };
    dir.join(name)
}

/// The hashes of the files in the cache `dir`, by their names (not
/// checked: [`find`] checks a file before it plays).
pub fn hashes_in(dir: &Path) -> std::collections::HashSet<crate::protocol::message::StemHash> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Default::default();
    };
    (entries.filter_map(Result::ok))
        .filter_map(|e| hash_of_hex(e.file_name().to_str()?.split('.').next()?))
        .collect()
}

/// The name of this process's `n`-th spool file for `info`'s file
/// (`.<hex>.<pid>.<n>.part`, [`super::store::StemStore`]'s; a dot file, so
/// [`hashes_in`] passes over it).
pub fn spool_name(info: &StemInfo, n: u64) -> String {
    format!(".{}.{}.{n}.part", info.hex(), std::process::id())
}

/// The process that made the spool file named `name`, if it is one.
fn spool_pid(name: &str) -> Option<u32> {
    let parts: Vec<&str> = name.split('.').collect();
    let ["", hex, pid, n, "part"] = parts[..] else {
        return None;
    };
    hash_of_hex(hex)?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Removes the spool files ([`spool_name`]) that processes no longer running left in the
/// cache `dir` (a peer killed mid-fetch); returns how many. Spools of live
/// processes (this one, another peer sharing the cache) stay. Only where the
/// process table can be read (`/proc`); elsewhere none is removed.
pub fn sweep_spools(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return 0;
    }
    let mut removed = 0;
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(spool_pid) else {
            continue;
        };
        if pid != std::process::id()
            && !proc.join(pid.to_string()).exists()
            && std::fs::remove_file(e.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// A hash from its 64 hex digits ([`crate::protocol::hex`] backwards).
fn hash_of_hex(hex: &str) -> Option<crate::protocol::message::StemHash> {
    if hex.len() != 64 {
        return None;
    }
    let mut h = [0u8; 32];
    for (i, b) in h.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(h)
}

/// The cached file of `info`, if present and intact (hashed as it is read,
/// in pieces: it is played from disk, never held whole).
pub fn find(dir: &Path, info: &StemInfo) -> Option<PathBuf> {
    let path = path_of(dir, info);
    let file = std::fs::File::open(&path).ok()?;
    if file.metadata().ok()?.len() != info.size_bytes {
        return None;
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file).ok()?;
    (hasher.finalize().as_bytes() == &info.hash).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a file into the cache as a completed fetch leaves it.
    fn store(dir: &Path, info: &StemInfo, bytes: &[u8]) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = path_of(dir, info);
        std::fs::write(&path, bytes)?;
        Ok(path)
    }

    #[test]
    fn a_stored_file_loads_and_a_damaged_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = vec![7u8; 1000];
        let info = StemInfo::of_bytes("keys", "flac", &bytes, 1);
        assert_eq!(find(dir.path(), &info), None);
        let path = store(dir.path(), &info, &bytes).unwrap();
        assert!(path.to_string_lossy().ends_with(".flac"));
        assert_eq!(find(dir.path(), &info), Some(path.clone()));
        std::fs::write(&path, [7u8; 999]).unwrap();
        assert_eq!(find(dir.path(), &info), None);
        std::fs::write(&path, [8u8; 1000]).unwrap();
        assert_eq!(find(dir.path(), &info), None, "same size, other bytes");
    }

    /// A dead process's spool goes; this process's, and files that only
    /// look alike, stay.
    #[test]
    fn spools_of_dead_processes_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let hex = "ab".repeat(32);
        let dead = dir.path().join(format!(".{hex}.{}.0.part", u32::MAX - 1));
        let ours = dir
            .path()
            .join(format!(".{hex}.{}.3.part", std::process::id()));
        let other = dir
            .path()
            .join(format!(".notahash.{}.0.part", u32::MAX - 1));
        for f in [&dead, &ours, &other] {
            std::fs::write(f, b"x").unwrap();
        }
        assert_eq!(sweep_spools(dir.path()), 1);
        assert!(!dead.exists() && ours.exists() && other.exists());
    }

    #[test]
    fn the_cache_lists_the_hashes_it_holds_by_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let info = StemInfo::of_bytes("bass", "flac", b"some bytes", 1);
        store(dir.path(), &info, b"some bytes").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        std::fs::write(dir.path().join(format!("{}z.wav", &info.hex()[..63])), "x").unwrap();
        let hashes = hashes_in(dir.path());
        assert_eq!(hashes.into_iter().collect::<Vec<_>>(), vec![info.hash]);
        assert!(hashes_in(&dir.path().join("none")).is_empty());
    }
}
