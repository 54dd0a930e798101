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
//! **Invariant:** the callback only reads chunks whose state it has seen
//! `READY` (Acquire); a chunk is claimed by exactly one filler (`EMPTY` →
//! `WRITING`, compare-exchange), written, then set `READY` (Release); so reads
//! never see a chunk being written, and a chunk never changes once ready.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

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

/// A stem filled chunk by chunk while it plays.
#[derive(Debug)]
pub struct RemoteStem {
    frames: usize,
    /// Interleaved f32 bits; a chunk is written once, before its flag is set.
    samples: Box<[AtomicU32]>,
    /// Per chunk: [`EMPTY`], [`WRITING`] (claimed by one filler) or [`READY`].
    ready: Box<[AtomicU8]>,
}

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

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
            samples: (0..frames * CHANNELS).map(|_| AtomicU32::new(0)).collect(),
            ready: (0..chunks).map(|_| AtomicU8::new(EMPTY)).collect(),
        }
    }

    pub fn chunks(&self) -> usize {
        self.ready.len()
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

    pub fn is_ready(&self, chunk: usize) -> bool {
        self.ready
            .get(chunk)
            .is_some_and(|r| r.load(Ordering::Acquire) == READY)
    }

    /// Chunks that have arrived.
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
        if self.ready[chunk]
            .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(RemoteStemError::AlreadyFilled(chunk));
        }
        let at = first * CHANNELS;
        for (slot, &s) in self.samples[at..at + expected].iter().zip(samples) {
            slot.store(s.to_bits(), Ordering::Relaxed);
        }
        self.ready[chunk].store(READY, Ordering::Release);
        Ok(())
    }

    /// Whether every frame in `first..=last` is readable (frames outside the
    /// stem count as present: they are silence by definition).
    #[inline]
    pub(crate) fn covers(&self, first: i64, last: i64) -> bool {
        let clamp = |f: i64| f.clamp(0, self.frames as i64 - 1) as usize / CHUNK_FRAMES;
        if self.frames == 0 || last < 0 || first >= self.frames as i64 {
            return true;
        }
        (clamp(first)..=clamp(last)).all(|c| self.ready[c].load(Ordering::Acquire) == READY)
    }
}

impl Frames for RemoteStem {
    #[inline]
    fn frame(&self, i: i64) -> (f32, f32) {
        if i < 0 {
            return (0.0, 0.0);
        }
        let at = i as usize * CHANNELS;
        match self.samples.get(at..at + CHANNELS) {
            Some(s) => (
                f32::from_bits(s[0].load(Ordering::Relaxed)),
                f32::from_bits(s[1].load(Ordering::Relaxed)),
            ),
            None => (0.0, 0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
