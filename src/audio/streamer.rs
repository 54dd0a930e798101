//! Streamer channels: what the engine reads each stem from.
//!
//! - A **local** streamer holds a file's whole decoded audio, immutable.
//! - A **remote** streamer ([`RemoteStem`]) is filled chunk by chunk as data
//!   arrives from another peer (issue "remote stems"); a chunk the engine
//!   needs that has not arrived plays as silence for that stem alone, and the
//!   stem reports *buffering*. The engine never waits for data.
//! - The **All** view is not a stem: it is the aggregate the engine publishes
//!   ([`super::engine::AllStatus`]): the shared playhead, the master level and
//!   gain, and how many stems are buffering.
//!
//! **Invariant:** a remote chunk is set once, whole, in a `OnceLock` by its
//! filler (which allocates it, never the audio thread); the callback reads it
//! with one Acquire load, so it never sees a chunk being written, and a chunk
//! never changes once set.
//! **Invariant:** a remote stem holds samples only for chunks whose data
//! arrived: a stem claiming a length costs a pointer per chunk, and the part
//! past the end of its file is silence without samples.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::CHANNELS;
use super::decode::StemAudio;

/// Frames per chunk of a remote stem (100 ms at 48 kHz).
pub const CHUNK_FRAMES: usize = 4800;

/// A stem as the engine reads it.
#[derive(Clone, Debug)]
pub struct Streamer {
    pub name: String,
    pub(crate) source: Source,
}

#[derive(Clone, Debug)]
pub(crate) enum Source {
    Local(Arc<[f32]>),
    Remote(Arc<RemoteStem>),
}

impl Streamer {
    /// A stem decoded from a file on this peer.
    pub fn local(audio: &StemAudio) -> Streamer {
        Streamer {
            name: audio.name.clone(),
            source: Source::Local(audio.samples.clone()),
        }
    }

    /// A stem whose data arrives over time, through `stem`.
    pub fn remote(name: &str, stem: Arc<RemoteStem>) -> Streamer {
        Streamer {
            name: name.to_string(),
            source: Source::Remote(stem),
        }
    }

    /// Length in frames (known up front for a remote stem too).
    pub fn frames(&self) -> i64 {
        match &self.source {
            Source::Local(s) => (s.len() / CHANNELS) as i64,
            Source::Remote(r) => r.frames as i64,
        }
    }
}

/// Reading frames, for the mixer's inner loop (monomorphised per source).
pub(crate) trait Frames {
    /// Frame `i` (silence outside the stem).
    fn frame(&self, i: i64) -> (f32, f32);
}

/// A local stem's samples.
pub(crate) struct LocalFrames<'a>(pub &'a [f32]);

impl Frames for LocalFrames<'_> {
    #[inline]
    fn frame(&self, i: i64) -> (f32, f32) {
        if i < 0 {
            return (0.0, 0.0);
        }
        let at = i as usize * CHANNELS;
        match self.0.get(at..at + CHANNELS) {
            Some(s) => (s[0], s[1]),
            None => (0.0, 0.0),
        }
    }
}

/// A stem filled chunk by chunk while it plays. A chunk's samples are
/// allocated when it arrives (by the filler, never the audio thread), so a
/// stem that merely claims to be long costs a pointer per chunk, not its
/// decoded size (issue 19: three stems claiming the longest length once made
/// a joiner allocate about 1 GB before any data existed). The audio thread
/// reads a chunk through a `OnceLock` (one atomic load) and never blocks.
#[derive(Debug)]
pub struct RemoteStem {
    frames: usize,
    /// Per chunk: its interleaved samples once they arrived (set once).
    chunks: Box<[OnceLock<Box<[f32]>>]>,
    /// The first chunk past the end of the file's data: it and every later
    /// chunk are silence, ready without samples (the file fell short of the
    /// length the song claims). `chunks.len()` until the end is found.
    silent_from: AtomicUsize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RemoteStemError {
    #[error("chunk {0} is outside the stem")]
    OutOfRange(usize),
    #[error("chunk {chunk} has {got} samples, expected {expected}")]
    Length {
        chunk: usize,
        got: usize,
        expected: usize,
    },
    #[error("chunk {0} has already arrived")]
    AlreadyFilled(usize),
}

impl RemoteStem {
    /// An empty stem of `frames` frames: every chunk missing.
    pub fn new(frames: usize) -> RemoteStem {
        let chunks = frames.div_ceil(CHUNK_FRAMES);
        RemoteStem {
            frames,
            chunks: (0..chunks).map(|_| OnceLock::new()).collect(),
            silent_from: AtomicUsize::new(chunks),
        }
    }

    /// The file's data ends at frame `end_frames`: the chunks wholly after it
    /// are silence, ready without samples (a chunk it ends inside is still
    /// filled, padded with silence, by the decoder).
    pub fn end_data(&self, end_frames: usize) {
        self.silent_from
            .fetch_min(end_frames.div_ceil(CHUNK_FRAMES), Ordering::Release);
    }

    fn chunk_ready(&self, chunk: usize) -> bool {
        chunk >= self.silent_from.load(Ordering::Acquire)
            || self.chunks.get(chunk).is_some_and(|c| c.get().is_some())
    }

    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Sample bytes held (the chunks that have arrived).
    pub fn sample_bytes(&self) -> usize {
        (self.chunks.iter())
            .filter_map(OnceLock::get)
            .map(|c| std::mem::size_of_val(&**c))
            .sum()
    }

    /// Length in frames.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Frame `i` as the engine would read it (silence where missing).
    pub fn frame_at(&self, i: i64) -> (f32, f32) {
        Frames::frame(self, i)
    }

    /// Frames in chunk `chunk` (`CHUNK_FRAMES`, fewer for the last).
    pub fn chunk_frames(&self, chunk: usize) -> usize {
        self.frames
            .saturating_sub(chunk * CHUNK_FRAMES)
            .min(CHUNK_FRAMES)
    }

    /// Whether chunk `chunk` can be played: its samples arrived, or it lies
    /// past the end of the file's data.
    pub fn is_ready(&self, chunk: usize) -> bool {
        chunk < self.chunks() && self.chunk_ready(chunk)
    }

    /// Chunks that can be played.
    pub fn ready_chunks(&self) -> usize {
        (0..self.chunks()).filter(|&c| self.is_ready(c)).count()
    }

    /// Stores chunk `chunk` (interleaved stereo, `CHUNK_FRAMES` frames, fewer
    /// for the last) and marks it ready. A chunk arrives once: of two fillers
    /// racing for it, one claims it and the other is refused.
    pub fn fill(&self, chunk: usize, samples: &[f32]) -> Result<(), RemoteStemError> {
        if chunk >= self.chunks() {
            return Err(RemoteStemError::OutOfRange(chunk));
        }
        let first = chunk * CHUNK_FRAMES;
        let expected = (self.frames - first).min(CHUNK_FRAMES) * CHANNELS;
        if samples.len() != expected {
            return Err(RemoteStemError::Length {
                chunk,
                got: samples.len(),
                expected,
            });
        }
        if self.chunks[chunk].get().is_some() {
            return Err(RemoteStemError::AlreadyFilled(chunk));
        }
        self.chunks[chunk]
            .set(samples.into())
            .map_err(|_| RemoteStemError::AlreadyFilled(chunk))
    }

    /// Whether every frame in `first..=last` is readable (frames outside the
    /// stem count as present: they are silence by definition).
    #[inline]
    pub(crate) fn covers(&self, first: i64, last: i64) -> bool {
        let clamp = |f: i64| f.clamp(0, self.frames as i64 - 1) as usize / CHUNK_FRAMES;
        if self.frames == 0 || last < 0 || first >= self.frames as i64 {
            return true;
        }
        (clamp(first)..=clamp(last)).all(|c| self.chunk_ready(c))
    }
}

impl Frames for RemoteStem {
    #[inline]
    fn frame(&self, i: i64) -> (f32, f32) {
        if i < 0 {
            return (0.0, 0.0);
        }
        let i = i as usize;
        let Some(chunk) = self.chunks.get(i / CHUNK_FRAMES).and_then(OnceLock::get) else {
            return (0.0, 0.0);
        };
        let at = (i % CHUNK_FRAMES) * CHANNELS;
        match chunk.get(at..at + CHANNELS) {
            Some(s) => (s[0], s[1]),
            None => (0.0, 0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stem that claims the longest length allowed holds nothing but a
    /// pointer per chunk until its chunks arrive; then exactly their samples.
    #[test]
    fn a_claimed_length_allocates_nothing_until_data_arrives() {
        let frames = crate::protocol::stem::MAX_STEM_SECS as usize * 48_000;
        let r = RemoteStem::new(frames);
        assert_eq!(r.sample_bytes(), 0);
        let table = std::mem::size_of_val(&*r.chunks);
        assert!(
            table * 100 < frames * CHANNELS * 4,
            "{table} bytes of table for a stem of {frames} frames"
        );
        r.fill(3, &vec![0.5; CHUNK_FRAMES * CHANNELS]).unwrap();
        assert_eq!(r.sample_bytes(), CHUNK_FRAMES * CHANNELS * 4);
        assert_eq!(r.frame_at(3 * CHUNK_FRAMES as i64 + 1), (0.5, 0.5));
        assert_eq!(r.frame_at(0), (0.0, 0.0), "missing is silence");
    }

    /// A file that ends long before the length its stem claims: the chunks
    /// past its end are ready, as silence, without any samples; the chunk
    /// it ends inside still waits for its (padded) samples.
    #[test]
    fn past_the_end_of_the_data_is_silence_without_samples() {
        let frames = crate::protocol::stem::MAX_STEM_SECS as usize * 48_000;
        let r = RemoteStem::new(frames);
        r.fill(0, &vec![0.5; CHUNK_FRAMES * CHANNELS]).unwrap();
        r.end_data(CHUNK_FRAMES + 10);
        assert!(!r.is_ready(1), "the file ends inside chunk 1");
        assert!(r.is_ready(2) && r.is_ready(r.chunks() - 1));
        assert!(!r.is_ready(r.chunks()), "outside the stem");
        assert_eq!(r.ready_chunks(), r.chunks() - 1);
        assert!(!r.covers(0, frames as i64 - 1));
        assert!(r.covers(2 * CHUNK_FRAMES as i64, frames as i64 - 1));
        r.fill(1, &vec![0.0; CHUNK_FRAMES * CHANNELS]).unwrap();
        assert!(r.covers(0, frames as i64 - 1));
        assert_eq!(r.sample_bytes(), 2 * CHUNK_FRAMES * CHANNELS * 4);
        assert_eq!(r.frame_at(frames as i64 - 1), (0.0, 0.0));
        r.end_data(frames);
        assert!(r.is_ready(2), "an end found later does not undo one found");
    }

    #[test]
    fn chunks_arrive_once_with_the_right_length() {
        let r = RemoteStem::new(CHUNK_FRAMES * 2 + 10);
        assert_eq!(r.chunks(), 3);
        assert!(!r.covers(0, 0));
        assert!(r.covers(-50, -1), "before the stem is silence");
        assert!(
            r.covers(r.frames as i64, r.frames as i64 + 100),
            "after too"
        );
        let full = vec![0.25; CHUNK_FRAMES * CHANNELS];
        assert_eq!(r.fill(1, &full), Ok(()));
        assert_eq!(r.fill(1, &full), Err(RemoteStemError::AlreadyFilled(1)));
        assert_eq!(r.fill(3, &full), Err(RemoteStemError::OutOfRange(3)));
        assert_eq!(
            r.fill(2, &full),
            Err(RemoteStemError::Length {
                chunk: 2,
                got: full.len(),
                expected: 20
            })
        );
        let c1 = CHUNK_FRAMES as i64;
        assert!(r.covers(c1, 2 * c1 - 1));
        assert!(!r.covers(c1 - 1, c1));
        assert_eq!(r.frame(c1), (0.25, 0.25));
        assert_eq!(r.ready_chunks(), 1);
    }
}
