//! Completed stems on disk, content-addressed: `<dir>/<hex of hash>.<format>`,
//! written whole (through a temporary file and a rename) only after the
//! file's hash was checked, and checked again when read.

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

/// The cached file of `info`, if present and intact.
pub fn load(dir: &Path, info: &StemInfo) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path_of(dir, info)).ok()?;
    (bytes.len() as u64 == info.size_bytes && blake3::hash(&bytes).as_bytes() == &info.hash)
        .then_some(bytes)
}

/// Stores a verified file (the caller checked its hash).
pub fn store(dir: &Path, info: &StemInfo, bytes: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = path_of(dir, info);
    let tmp = dir.join(format!(".{}.{}.part", info.hex(), std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_file_loads_and_a_damaged_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = vec![7u8; 1000];
        let info = StemInfo::of_bytes("keys", "flac", &bytes, 1);
        assert_eq!(load(dir.path(), &info), None);
        let path = store(dir.path(), &info, &bytes).unwrap();
        assert!(path.to_string_lossy().ends_with(".flac"));
        assert_eq!(load(dir.path(), &info), Some(bytes.clone()));
        std::fs::write(&path, [7u8; 999]).unwrap();
        assert_eq!(load(dir.path(), &info), None);
    }
}
