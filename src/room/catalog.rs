//! Describing this peer's files as stems: the BLAKE3 of the whole file and of
//! each chunk ([`crate::protocol::stem`] says what those are), read from disk.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::protocol::message::MAX_NAME_BYTES;
use crate::protocol::stem::{
    MAX_FORMAT_BYTES, MAX_STEM_FILE_BYTES, StemInfo, chunk_bytes_for, truncate,
};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{path}: cannot read: {cause}")]
    Read {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {size} bytes is over the {max} a stem file may have")]
    TooLarge {
        path: std::path::PathBuf,
        size: u64,
        max: u64,
    },
}

/// Describes the file at `path` (read once, chunk by chunk): its hash and chunk
/// hashes, for announcing it as a stem. Slow for a large file: never on a task
/// that must stay responsive.
pub fn describe_file(path: &Path, name: &str, frames: u64) -> Result<StemInfo, CatalogError> {
    let read = |cause| CatalogError::Read {
        path: path.to_path_buf(),
        cause,
    };
    let mut file = File::open(path).map_err(read)?;
    let size = file.metadata().map_err(read)?.len();
    if size > MAX_STEM_FILE_BYTES {
        return Err(CatalogError::TooLarge {
            path: path.to_path_buf(),
            size,
            max: MAX_STEM_FILE_BYTES,
        });
    }
    let chunk = chunk_bytes_for(size) as usize;
    let mut whole = blake3::Hasher::new();
    let mut chunk_hashes = Vec::with_capacity(size.div_ceil(chunk as u64) as usize);
    let mut buf = vec![0u8; chunk];
    let mut total = 0u64;
    loop {
        let n = read_full(&mut file, &mut buf).map_err(read)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        whole.update(&buf[..n]);
        chunk_hashes.push(*blake3::hash(&buf[..n]).as_bytes());
        if n < chunk {
            break;
        }
    }
    if total != size {
        return Err(read(std::io::Error::other("the file changed while read")));
    }
    let format = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    Ok(StemInfo {
        hash: *whole.finalize().as_bytes(),
        name: truncate(name, MAX_NAME_BYTES),
        format: truncate(&format.to_ascii_lowercase(), MAX_FORMAT_BYTES),
        size_bytes: size,
        frames,
        chunk_hashes,
    })
}

/// Reads until `buf` is full or the file ends.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode_exact, encode_to_vec};

    #[test]
    fn file_and_bytes_agree_and_chunks_check() {
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Bass.FLAC");
        std::fs::write(&path, &bytes).unwrap();
        let a = describe_file(&path, "Bass", 10).unwrap();
        let b = StemInfo::of_bytes("Bass", "FLAC", &bytes, 10);
        assert_eq!(a, b);
        assert_eq!(a.format, "flac");
        assert_eq!(a.chunks(), 4);
        assert_eq!(a.chunk_range(3), 196_608..200_000);
        assert!(a.check_chunk(3, &bytes[196_608..]));
        let mut bad = bytes[..65_536].to_vec();
        bad[5] ^= 1;
        assert!(!a.check_chunk(0, &bad));
        assert!(!a.check_chunk(0, &bytes[..65_535]));
        assert!(!a.check_chunk(9, &bytes[..10]));
        let back: StemInfo = decode_exact(&encode_to_vec(&a).unwrap(), "stem").unwrap();
        assert_eq!(back, a);
    }
}
