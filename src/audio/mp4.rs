//! The edit list of an MP4 (M4A) file's audio track: how many decoded
//! frames are the encoder's priming, to be skipped, and how long the audio
//! really is. AAC encoders put about 1024–2112 frames of priming before the
//! music and say so in the edit list (`moov/trak/edts/elst`); symphonia's MP4
//! reader parses the list but does not apply it, so without this an M4A stem
//! plays 21–48 ms late against the others.
//!
//! A hand-written reader of a few boxes, for untrusted files: every size is
//! checked against what contains it, at most [`MAX_MOOV_BYTES`] are read, and
//! anything unexpected means "no edit" (the file then plays as decoded).

use std::io::{Read, Seek, SeekFrom};

/// The most of a `moov` box read (its sample tables grow with the length:
/// about 1 MB for an hour of AAC).
pub const MAX_MOOV_BYTES: u64 = 32 << 20;
/// Top-level boxes looked at before giving up.
const MAX_TOP_BOXES: usize = 64;

/// What the edit list says, in its own time units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edit {
    /// The first presented frame, in the track's media timescale.
    pub media_time: u64,
    pub media_timescale: u32,
    /// How long the presentation is, in the movie timescale (0: unknown).
    pub duration: u64,
    pub movie_timescale: u32,
}

impl Edit {
    /// Frames to skip at the start, at `rate_hz`.
    pub fn skip_frames(&self, rate_hz: u32) -> u64 {
        scale(self.media_time, rate_hz, self.media_timescale)
    }

    /// Frames the presentation lasts, at `rate_hz`, if said.
    pub fn keep_frames(&self, rate_hz: u32) -> Option<u64> {
        (self.duration > 0).then(|| scale(self.duration, rate_hz, self.movie_timescale))
    }
}

fn scale(v: u64, to: u32, from: u32) -> u64 {
    if from == 0 {
        return 0;
    }
    (u128::from(v) * u128::from(to) / u128::from(from)).min(u128::from(u64::MAX)) as u64
}

/// The audio track's edit, if `source` is an MP4 file that has one; the
/// source is left at its start.
pub fn edit_of(source: &mut (impl Read + Seek)) -> Option<Edit> {
    let found = find_moov(source).and_then(|moov| parse_moov(&moov));
    let _ = source.seek(SeekFrom::Start(0));
    found
}

/// Reads a box header at the current position: (type, body length), the
/// body following. `None` at the end or on nonsense.
fn header(r: &mut impl Read, remaining: u64) -> Option<([u8; 4], u64)> {
    let mut h = [0u8; 8];
    r.read_exact(&mut h).ok()?;
    let size = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
    let kind = [h[4], h[5], h[6], h[7]];
    let (size, head) = match size {
        1 => {
            let mut l = [0u8; 8];
            r.read_exact(&mut l).ok()?;
            (u64::from_be_bytes(l), 16)
        }
        0 => (remaining, 8),
        s => (s, 8),
    };
    (size >= head && size <= remaining).then_some((kind, size - head))
}

fn find_moov(source: &mut (impl Read + Seek)) -> Option<Vec<u8>> {
    let end = source.seek(SeekFrom::End(0)).ok()?;
    let mut at = source.seek(SeekFrom::Start(0)).ok()?;
    for i in 0..MAX_TOP_BOXES {
        let (kind, len) = header(source, end - at)?;
        if i == 0 && &kind != b"ftyp" {
            return None; // not an MP4
        }
        if &kind == b"moov" {
            if len > MAX_MOOV_BYTES {
                return None;
            }
            let mut body = vec![0u8; len as usize];
            source.read_exact(&mut body).ok()?;
            return Some(body);
        }
        at = source.seek(SeekFrom::Current(len as i64)).ok()?;
        if at >= end {
            return None;
        }
    }
    None
}

/// The children of a box body: (type, body).
fn children(mut body: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    std::iter::from_fn(move || {
        let remaining = body.len() as u64;
        let mut cursor = body;
        let (kind, len) = header(&mut cursor, remaining)?;
        let head = body.len() - cursor.len();
        let child = &body[head..head + len as usize];
        body = &body[head + len as usize..];
        Some((kind, child))
    })
}

fn child<'a>(body: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    children(body).find(|(k, _)| k == kind).map(|(_, b)| b)
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The timescale of an `mvhd` or `mdhd` body (version 0 or 1).
fn timescale(b: &[u8]) -> Option<u32> {
    match b.first()? {
        0 => be_u32(b, 12),
        1 => be_u32(b, 20),
        _ => None,
    }
}

fn parse_moov(moov: &[u8]) -> Option<Edit> {
    let movie_timescale = timescale(child(moov, b"mvhd")?)?;
    let trak = children(moov)
        .filter(|(k, _)| k == b"trak")
        .find_map(|(_, trak)| {
            let mdia = child(trak, b"mdia")?;
            let hdlr = child(mdia, b"hdlr")?;
            (hdlr.get(8..12)? == b"soun").then_some((trak, mdia))
        });
    let (trak, mdia) = trak?;
    let media_timescale = timescale(child(mdia, b"mdhd")?)?;
    let elst = child(child(trak, b"edts")?, b"elst")?;
    let version = *elst.first()?;
    let count = be_u32(elst, 4)? as usize;
    let entry = if version == 1 { 20 } else { 12 };
    // The first edit that presents media (an empty edit has media time −1).
    (0..count.min(elst.len() / entry)).find_map(|i| {
        let at = 8 + i * entry;
        let (duration, media_time) = if version == 1 {
            (be_u64(elst, at)?, be_u64(elst, at + 8)? as i64)
        } else {
            (
                u64::from(be_u32(elst, at)?),
                i64::from(be_u32(elst, at + 4)? as i32),
            )
        };
        (media_time >= 0).then_some(Edit {
            media_time: media_time as u64,
            media_timescale,
            duration,
            movie_timescale,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A box of `kind` around `body`.
    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    fn file(elst: &[u8]) -> Vec<u8> {
        let mut mvhd = vec![0u8; 100];
        mvhd[12..16].copy_from_slice(&1000u32.to_be_bytes());
        let mut mdhd = vec![0u8; 24];
        mdhd[12..16].copy_from_slice(&44_100u32.to_be_bytes());
        let mut hdlr = vec![0u8; 24];
        hdlr[8..12].copy_from_slice(b"soun");
        let mdia = [mp4_box(b"mdhd", &mdhd), mp4_box(b"hdlr", &hdlr)].concat();
        let trak = [
            mp4_box(b"edts", &mp4_box(b"elst", elst)),
            mp4_box(b"mdia", &mdia),
        ]
        .concat();
        let moov = [mp4_box(b"mvhd", &mvhd), mp4_box(b"trak", &trak)].concat();
        [
            mp4_box(b"ftyp", b"M4A \0\0\0\0"),
            mp4_box(b"mdat", &[0u8; 300]),
            mp4_box(b"moov", &moov),
        ]
        .concat()
    }

    #[test]
    fn the_priming_and_the_length_come_from_the_edit_list() {
        // Version 0: one empty edit, then 10 s presented from media time 2112.
        let mut elst = vec![0, 0, 0, 0, 0, 0, 0, 2];
        elst.extend_from_slice(&500u32.to_be_bytes());
        elst.extend_from_slice(&(-1i32).to_be_bytes());
        elst.extend_from_slice(&[0, 1, 0, 0]);
        elst.extend_from_slice(&10_000u32.to_be_bytes());
        elst.extend_from_slice(&2112u32.to_be_bytes());
        elst.extend_from_slice(&[0, 1, 0, 0]);
        let mut f = std::io::Cursor::new(file(&elst));
        let e = edit_of(&mut f).unwrap();
        assert_eq!(f.position(), 0, "left at the start");
        assert_eq!(e.skip_frames(44_100), 2112);
        assert_eq!(e.skip_frames(48_000), 2298);
        assert_eq!(e.keep_frames(44_100), Some(441_000));
    }

    #[test]
    fn anything_else_is_no_edit_and_never_a_panic() {
        assert_eq!(
            edit_of(&mut std::io::Cursor::new(b"RIFF....WAVEfmt ".to_vec())),
            None
        );
        let good = file(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 4, 0, 0, 1, 0, 0]);
        for cut in 0..good.len() {
            let _ = edit_of(&mut std::io::Cursor::new(good[..cut].to_vec()));
        }
        // A count far past the entries, sizes past their container.
        let _ = edit_of(&mut std::io::Cursor::new(file(&[
            1, 0, 0, 0, 255, 255, 255, 255,
        ])));
        let mut liar = good.clone();
        liar[3] = 255;
        let _ = edit_of(&mut std::io::Cursor::new(liar));
        assert!(edit_of(&mut std::io::Cursor::new(good)).is_some());
    }
}
