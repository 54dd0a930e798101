//! What each stem of the song *is*, by content, as peers describe it to each other.
//!
//! A stem is named by the BLAKE3 hash of its file. Its [`StemInfo`] also
//! carries the BLAKE3 hash of every chunk of the file, so a fetcher can check
//! each chunk as it arrives (and fetch a bad one again) instead of learning
//! at the very end that some byte somewhere was wrong. The whole file is
//! checked against the stem's hash once complete as well.
//!
//! Chunks are [`MIN_CHUNK_BYTES`] (64 KiB) unless the file is so large that
//! it would have more than [`MAX_CHUNKS`]; then the smallest power of two
//! that keeps the count under the limit, up to [`MAX_CHUNK_BYTES`]. The
//! layout is a function of the size alone ([`chunk_bytes_for`]), so every
//! peer agrees on it.

use super::message::{MAX_NAME_BYTES, StemHash};
use super::state::ENGINE_RATE_HZ;
use crate::wire::{Model, Reader, WireError, Writer};

/// The smallest chunk, and the usual one.
pub const MIN_CHUNK_BYTES: u32 = 64 * 1024;
/// The largest chunk (one room message carries one chunk).
pub const MAX_CHUNK_BYTES: u32 = super::message::MAX_CHUNK_BYTES as u32;
/// The most chunks a stem file is cut into.
pub const MAX_CHUNKS: usize = 2048;
/// The largest stem file a peer serves or fetches (2048 chunks of 256 KiB).
pub const MAX_STEM_FILE_BYTES: u64 = MAX_CHUNKS as u64 * MAX_CHUNK_BYTES as u64;
/// Longest format tag (a lower-case file extension).
pub const MAX_FORMAT_BYTES: usize = 16;
/// The longest stem, in seconds (12 hours): a peer refuses a stem that claims
/// to be longer. Stems stream from disk in bounded memory, so this is no cap
/// on real music: a file this long at the lowest bitrate anyone exports
/// (MP3 at 96 kbit/s) is larger than [`MAX_STEM_FILE_BYTES`].
pub const MAX_STEM_SECS: u64 = 12 * 60 * 60;

/// The chunk size of a file of `size_bytes`.
pub fn chunk_bytes_for(size_bytes: u64) -> u32 {
    let mut chunk = MIN_CHUNK_BYTES;
    while size_bytes.div_ceil(u64::from(chunk)) > MAX_CHUNKS as u64 && chunk < MAX_CHUNK_BYTES {
        chunk *= 2;
    }
    chunk
}

/// Hex of a hash, for logs, file names and JSON.
pub fn hex(hash: &StemHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stem of the song as every peer knows it.
///
/// ```text
/// | hash [32] | name text (≤ 64) | format text (≤ 16) | size_bytes u64 | frames u64 |
/// | chunk_hashes list<[32]> (≤ 2048) |
/// ```
///
/// Decoding refuses a size over [`MAX_STEM_FILE_BYTES`] and a chunk list
/// whose length does not match the size.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StemInfo {
    /// BLAKE3 of the whole file: the stem's identity.
    pub hash: StemHash,
    /// Display name ("drums").
    pub name: String,
    /// The file's extension in lower case ("flac"), a hint for the decoder.
    pub format: String,
    pub size_bytes: u64,
    /// Length once decoded, in frames at the engine rate.
    pub frames: u64,
    /// BLAKE3 of each chunk, in order.
    pub chunk_hashes: Vec<StemHash>,
}

impl StemInfo {
    /// Describes a file's bytes.
    pub fn of_bytes(name: &str, format: &str, bytes: &[u8], frames: u64) -> StemInfo {
        let chunk = chunk_bytes_for(bytes.len() as u64) as usize;
        StemInfo {
            hash: *blake3::hash(bytes).as_bytes(),
            name: truncate(name, MAX_NAME_BYTES),
            format: truncate(&format.to_ascii_lowercase(), MAX_FORMAT_BYTES),
            size_bytes: bytes.len() as u64,
            frames,
            chunk_hashes: bytes
                .chunks(chunk)
                .map(|c| *blake3::hash(c).as_bytes())
                .collect(),
        }
    }

    pub fn chunk_bytes(&self) -> u32 {
        chunk_bytes_for(self.size_bytes)
    }

    pub fn chunks(&self) -> usize {
        self.chunk_hashes.len()
    }

    /// Byte range of chunk `k`.
    pub fn chunk_range(&self, k: usize) -> std::ops::Range<u64> {
        let c = u64::from(self.chunk_bytes());
        let start = (k as u64 * c).min(self.size_bytes);
        start..(start + c).min(self.size_bytes)
    }

    /// Whether `data` is chunk `k` of this file.
    pub fn check_chunk(&self, k: usize, data: &[u8]) -> bool {
        let r = self.chunk_range(k);
        data.len() as u64 == r.end - r.start
            && self
                .chunk_hashes
                .get(k)
                .is_some_and(|h| blake3::hash(data).as_bytes() == h)
    }

    pub fn hex(&self) -> String {
        hex(&self.hash)
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl Model for StemInfo {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_array(&self.hash);
        w.put_text(&self.name, MAX_NAME_BYTES, "stem.name")?;
        w.put_text(&self.format, MAX_FORMAT_BYTES, "stem.format")?;
        w.put_u64(self.size_bytes);
        w.put_u64(self.frames);
        w.put_list(&self.chunk_hashes, MAX_CHUNKS, "stem.chunk_hashes")
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let info = StemInfo {
            hash: r.array("stem.hash")?,
            name: r.text(MAX_NAME_BYTES, "stem.name")?,
            format: r.text(MAX_FORMAT_BYTES, "stem.format")?,
            size_bytes: r.u64("stem.size_bytes")?,
            frames: r.u64("stem.frames")?,
            chunk_hashes: r.list(MAX_CHUNKS, "stem.chunk_hashes")?,
        };
        if info.size_bytes > MAX_STEM_FILE_BYTES {
            return Err(WireError::Invalid {
                field: "stem.size_bytes",
                reason: "larger than a stem file may be",
            });
        }
        if info.frames > MAX_STEM_SECS * u64::from(ENGINE_RATE_HZ) {
            return Err(WireError::Invalid {
                field: "stem.frames",
                reason: "longer than a stem may last",
            });
        }
        if info.size_bytes.div_ceil(u64::from(info.chunk_bytes())) != info.chunk_hashes.len() as u64
        {
            return Err(WireError::Invalid {
                field: "stem.chunk_hashes",
                reason: "as many chunk hashes as the size has chunks",
            });
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode_exact, encode_to_vec};

    #[test]
    fn chunk_size_grows_only_for_huge_files() {
        assert_eq!(chunk_bytes_for(0), MIN_CHUNK_BYTES);
        assert_eq!(chunk_bytes_for(128 << 20), MIN_CHUNK_BYTES);
        assert_eq!(chunk_bytes_for((128 << 20) + 1), 2 * MIN_CHUNK_BYTES);
        assert_eq!(chunk_bytes_for(MAX_STEM_FILE_BYTES), MAX_CHUNK_BYTES);
    }

    #[test]
    fn decoding_refuses_an_absurd_length() {
        let info = StemInfo::of_bytes("x", "wav", &[1; 10], u64::MAX / 2);
        let bytes = encode_to_vec(&info).unwrap();
        assert!(matches!(
            decode_exact::<StemInfo>(&bytes, "stem"),
            Err(WireError::Invalid {
                field: "stem.frames",
                ..
            })
        ));
    }

    #[test]
    fn decoding_refuses_a_chunk_list_that_does_not_fit_the_size() {
        let mut info = StemInfo::of_bytes("x", "wav", &[1; 70_000], 1);
        info.chunk_hashes.pop();
        let bytes = encode_to_vec(&info).unwrap();
        assert!(matches!(
            decode_exact::<StemInfo>(&bytes, "stem"),
            Err(WireError::Invalid {
                field: "stem.chunk_hashes",
                ..
            })
        ));
    }
}
