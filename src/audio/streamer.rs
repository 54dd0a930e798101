//! Streamer channels: what the engine reads each stem from.
//!
//! - A **local** streamer holds a file's whole decoded audio, immutable.
//! - A **remote** streamer ([`StreamedStem`]) is filled chunk by chunk as data
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

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

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
    Streamed(Arc<StreamedStem>),
}

impl Streamer {
    /// A stem decoded from a file on this peer.
    pub fn local(audio: &StemAudio) -> Streamer {
        Streamer {
            name: audio.name.clone(),
            source: Source::Local(audio.samples.clone()),
        }
    }

    /// A stem decoded while it plays, into `stem`.
    pub fn streamed(name: &str, stem: Arc<StreamedStem>) -> Streamer {
        Streamer {
            name: name.to_string(),
            source: Source::Streamed(stem),
        }
    }

    /// Length in frames (known up front for a remote stem too).
    pub fn frames(&self) -> i64 {
        match &self.source {
            Source::Local(s) => (s.len() / CHANNELS) as i64,
            Source::Streamed(r) => r.frames as i64,
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

/// A stem decoded chunk by chunk around the playhead, from a file on this
/// peer or from bytes fetched from others, into a bounded pool of chunk
/// slots: memory does not grow with the stem's length (issue 20: eight
/// five-minute stems decoded whole took 1.1 GB). A slot's samples are
/// allocated when first filled (by the filler, never the audio thread), and
/// so is its index, a page at a time: a stem that merely claims to be long
/// costs a pointer per page (issue 19). When the pool is full, the chunk farthest from where the
/// music is (the playhead and a seek target, [`StreamedStem::set_focus`])
/// makes room; a chunk farther than all of those held is not kept.
///
/// The audio thread reads a chunk through its index entry and its slot's tag
/// (two Acquire loads) and never blocks. Samples are atomics, so a slot
/// rewritten while read (which the focus rule keeps away from the playhead)
/// gives wrong samples at worst, never undefined behaviour.
#[derive(Debug)]
pub struct StreamedStem {
    frames: usize,
    chunks: usize,
    /// Per chunk: 1 + the slot holding it, or 0; in pages of [`PAGE`]
    /// chunks allocated when a chunk in them is first filled, so a stem
    /// claiming the longest length costs a pointer per page.
    index: Box<[OnceLock<Box<[AtomicU32]>>]>,
    slots: Box<[Slot]>,
    /// The first chunk past the end of the file's data: it and every later
    /// chunk are silence, ready without samples (the file fell short of the
    /// length the song claims). `chunks` until the end is found.
    silent_from: AtomicUsize,
    /// Where the music is, in frames: the playhead and a seek target (-1:
    /// none). Chunks near them are kept.
    focus_frames: [AtomicI64; 2],
    /// The filler's side: which chunk each slot holds.
    held: Mutex<Vec<Option<usize>>>,
}

#[derive(Debug, Default)]
struct Slot {
    /// 1 + the chunk whose samples the slot holds; 0 while empty or written.
    tag: AtomicU64,
    samples: OnceLock<Box<[AtomicU32]>>,
}

/// How much farther a chunk behind the playhead counts than one ahead: the
/// music moves forward, and only a seek back needs what it passed.
const BEHIND_WEIGHT: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamedStemError {
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
    #[error("chunk {0} is farther from the playhead than every chunk held")]
    TooFar(usize),
}

impl StreamedStem {
    /// An empty stem of `frames` frames with room for [`DEFAULT_SLOTS`]
    /// chunks.
    pub fn new(frames: usize) -> StreamedStem {
        StreamedStem::with_slots(frames, DEFAULT_SLOTS)
    }

    /// An empty stem decoded `window_frames` ahead of the playhead (and of
    /// a seek target): room for both windows and a little behind each.
    pub fn for_window(frames: usize, window_frames: usize) -> StreamedStem {
        StreamedStem::with_slots(frames, slots_for_window(window_frames))
    }

    /// An empty stem of `frames` frames holding at most `slots` chunks.
    pub fn with_slots(frames: usize, slots: usize) -> StreamedStem {
        let chunks = frames.div_ceil(CHUNK_FRAMES);
        let slots = slots.clamp(1, chunks.max(1));
        StreamedStem {
            frames,
            chunks,
            index: (0..chunks.div_ceil(PAGE))
                .map(|_| OnceLock::new())
                .collect(),
            slots: (0..slots).map(|_| Slot::default()).collect(),
            silent_from: AtomicUsize::new(chunks),
            focus_frames: [AtomicI64::new(0), AtomicI64::new(-1)],
            held: Mutex::new(vec![None; slots]),
        }
    }

    /// Where the music is: the playhead and the target of a seek not yet
    /// applied, in frames. The pool keeps the chunks nearest to them.
    pub fn set_focus(&self, playhead_frames: i64, seek_frames: Option<i64>) {
        self.focus_frames[0].store(playhead_frames.max(0), Ordering::Relaxed);
        (self.focus_frames[1]).store(seek_frames.map_or(-1, |f| f.max(0)), Ordering::Relaxed);
    }

    /// How far chunk `chunk` is from where the music is (lower: keep).
    fn distance(&self, chunk: usize) -> usize {
        (self.focus_frames.iter())
            .map(|f| f.load(Ordering::Relaxed))
            .filter(|&f| f >= 0)
            .map(|f| {
                let at = f as usize / CHUNK_FRAMES;
                if chunk >= at {
                    chunk - at
                } else {
                    (at - chunk) * BEHIND_WEIGHT
                }
            })
            .min()
            .unwrap_or(chunk)
    }

    /// The file's data ends at frame `end_frames`: the chunks wholly after it
    /// are silence, ready without samples (a chunk it ends inside is still
    /// filled, padded with silence, by the decoder).
    pub fn end_data(&self, end_frames: usize) {
        self.silent_from
            .fetch_min(end_frames.div_ceil(CHUNK_FRAMES), Ordering::Release);
    }

    /// Chunk `chunk`'s index entry, if its page exists.
    #[inline]
    fn entry(&self, chunk: usize) -> Option<&AtomicU32> {
        self.index.get(chunk / PAGE)?.get()?.get(chunk % PAGE)
    }

    /// Chunk `chunk`'s samples, if a slot holds them.
    #[inline]
    fn samples_of(&self, chunk: usize) -> Option<&[AtomicU32]> {
        let s = self.entry(chunk)?.load(Ordering::Acquire);
        let slot = self.slots.get((s as usize).checked_sub(1)?)?;
        if slot.tag.load(Ordering::Acquire) != chunk as u64 + 1 {
            return None;
        }
        slot.samples.get().map(|b| &**b)
    }

    fn chunk_ready(&self, chunk: usize) -> bool {
        chunk >= self.silent_from.load(Ordering::Acquire) || self.samples_of(chunk).is_some()
    }

    pub fn chunks(&self) -> usize {
        self.chunks
    }

    /// Chunks the pool can hold at once.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Sample bytes held (the slots filled at least once).
    pub fn sample_bytes(&self) -> usize {
        (self.slots.iter())
            .filter_map(|s| s.samples.get())
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

    /// Whether chunk `chunk` can be played: its samples are held, or it
    /// lies past the end of the file's data.
    pub fn is_ready(&self, chunk: usize) -> bool {
        chunk < self.chunks() && self.chunk_ready(chunk)
    }

    /// Chunks that can be played.
    pub fn ready_chunks(&self) -> usize {
        (0..self.chunks()).filter(|&c| self.is_ready(c)).count()
    }

    /// Stores chunk `chunk` (interleaved stereo, `CHUNK_FRAMES` frames, fewer
    /// for the last) and marks it ready, in a free slot or in place of the
    /// chunk held farthest from the focus; refused when `chunk` is farther
    /// than all of them. A chunk is held once: filling one held is refused.
    pub fn fill(&self, chunk: usize, samples: &[f32]) -> Result<(), StreamedStemError> {
        if chunk >= self.chunks() {
            return Err(StreamedStemError::OutOfRange(chunk));
        }
        let expected = self.chunk_frames(chunk) * CHANNELS;
        if samples.len() != expected {
            return Err(StreamedStemError::Length {
                chunk,
                got: samples.len(),
                expected,
            });
        }
        // Fillers take turns (the audio thread never takes this lock).
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.contains(&Some(chunk)) {
            return Err(StreamedStemError::AlreadyFilled(chunk));
        }
        let slot = match held.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                let (victim, far) = (held.iter().enumerate())
                    .filter_map(|(s, c)| Some((s, self.distance((*c)?))))
                    .max_by_key(|&(_, d)| d)
                    .expect("a full pool holds chunks");
                if far <= self.distance(chunk) {
                    return Err(StreamedStemError::TooFar(chunk));
                }
                victim
            }
        };
        let s = &self.slots[slot];
        if let Some(old) = held[slot].take()
            && let Some(e) = self.entry(old)
        {
            e.store(0, Ordering::Release);
        }
        s.tag.store(0, Ordering::Release);
        let data = s.samples.get_or_init(|| {
            (0..CHUNK_FRAMES * CHANNELS)
                .map(|_| AtomicU32::new(0))
                .collect()
        });
        for (d, x) in data.iter().zip(samples) {
            d.store(x.to_bits(), Ordering::Relaxed);
        }
        s.tag.store(chunk as u64 + 1, Ordering::Release);
        let page =
            self.index[chunk / PAGE].get_or_init(|| (0..PAGE).map(|_| AtomicU32::new(0)).collect());
        page[chunk % PAGE].store(slot as u32 + 1, Ordering::Release);
        held[slot] = Some(chunk);
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
        (clamp(first)..=clamp(last)).all(|c| self.chunk_ready(c))
    }
}

/// Chunks per page of a stem's index (about 7 minutes).
const PAGE: usize = 4096;

/// Chunks held by a stem of no stated window: about 25 s of audio.
pub const DEFAULT_SLOTS: usize = 256;

/// The slots a stem decoded `window_frames` ahead needs: the window after
/// the playhead and after a seek target, and what the weight of the past
/// keeps behind each, so a chunk in either window always has room.
pub fn slots_for_window(window_frames: usize) -> usize {
    let window = window_frames.div_ceil(CHUNK_FRAMES).max(1);
    2 * (window + window.div_ceil(BEHIND_WEIGHT) + 1) + 4
}

impl Frames for StreamedStem {
    #[inline]
    fn frame(&self, i: i64) -> (f32, f32) {
        // Past the end is silence: the last chunk's slot may hold a longer
        // chunk's samples beyond the stem's frames.
        if i < 0 || i as usize >= self.frames {
            return (0.0, 0.0);
        }
        let i = i as usize;
        let Some(chunk) = self.samples_of(i / CHUNK_FRAMES) else {
            return (0.0, 0.0);
        };
        let at = (i % CHUNK_FRAMES) * CHANNELS;
        match chunk.get(at..at + CHANNELS) {
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

    /// A stem that claims the longest length allowed holds nothing but a
    /// pointer per chunk until its chunks arrive; then exactly their samples.
    #[test]
    fn a_claimed_length_allocates_nothing_until_data_arrives() {
        let frames = crate::protocol::stem::MAX_STEM_SECS as usize * 48_000;
        let r = StreamedStem::new(frames);
        assert_eq!(r.sample_bytes(), 0);
        let table = std::mem::size_of_val(&*r.index) + std::mem::size_of_val(&*r.slots);
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
        let r = StreamedStem::new(frames);
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

    /// However long the stem and however much is filled, the pool holds at
    /// most its slots; the chunks kept are those nearest the focus, and a
    /// chunk farther than all of them is refused.
    #[test]
    fn the_pool_is_bounded_and_keeps_what_is_near_the_playhead() {
        let chunks = 1000;
        let r = StreamedStem::with_slots(chunks * CHUNK_FRAMES, 10);
        let full = vec![0.5; CHUNK_FRAMES * CHANNELS];
        r.set_focus(0, None);
        for c in 0..10 {
            r.fill(c, &full).unwrap();
        }
        assert_eq!(r.fill(10, &full), Err(StreamedStemError::TooFar(10)));
        // The playhead moves on: the chunks it passed make room, the
        // oldest first.
        r.set_focus(5 * CHUNK_FRAMES as i64, None);
        r.fill(10, &full).unwrap();
        assert!(!r.is_ready(0) && r.is_ready(1) && r.is_ready(10));
        // A seek target far away: its chunk evicts the farthest behind.
        r.set_focus(5 * CHUNK_FRAMES as i64, Some(900 * CHUNK_FRAMES as i64));
        r.fill(900, &full).unwrap();
        assert!(!r.is_ready(1) && r.is_ready(900));
        assert_eq!(
            r.fill(900, &full),
            Err(StreamedStemError::AlreadyFilled(900))
        );
        assert_eq!(r.ready_chunks(), 10);
        assert_eq!(r.sample_bytes(), 10 * CHUNK_FRAMES * CHANNELS * 4);
        assert_eq!(r.frame_at(900 * CHUNK_FRAMES as i64), (0.5, 0.5));
        assert_eq!(r.frame_at(0), (0.0, 0.0), "evicted is silence");
    }

    /// A short last chunk in a slot that held a full chunk before: the
    /// frames past the stem's end are silence, not the old chunk's tail.
    #[test]
    fn past_the_last_frame_is_silence_whatever_the_slot_held() {
        let r = StreamedStem::with_slots(CHUNK_FRAMES * 3 + 10, 1);
        r.set_focus(0, None);
        r.fill(0, &vec![0.5; CHUNK_FRAMES * CHANNELS]).unwrap();
        r.set_focus(3 * CHUNK_FRAMES as i64, None);
        r.fill(3, &[0.25; 10 * CHANNELS]).unwrap();
        let end = 3 * CHUNK_FRAMES as i64 + 10;
        assert_eq!(r.frame_at(end - 1), (0.25, 0.25));
        assert_eq!(r.frame_at(end), (0.0, 0.0));
        assert_eq!(r.frame_at(end + 100), (0.0, 0.0));
    }

    /// With the slots a window asks for, a chunk in the window after the
    /// playhead or after the seek target always has room, wherever the
    /// rest of the pool was filled.
    #[test]
    fn a_window_always_has_room() {
        let window = 40 * CHUNK_FRAMES;
        let r = StreamedStem::for_window(10_000 * CHUNK_FRAMES, window);
        let full = vec![0.25; CHUNK_FRAMES * CHANNELS];
        let mut filled = 0;
        for (play, seek) in [
            (0, None),
            (3000, Some(7000)),
            (3500, Some(20)),
            (9000, None),
        ] {
            r.set_focus(
                play * CHUNK_FRAMES as i64,
                seek.map(|s| s * CHUNK_FRAMES as i64),
            );
            for at in std::iter::once(play).chain(seek) {
                for c in at as usize..at as usize + 40 {
                    match r.fill(c, &full) {
                        Ok(()) => filled += 1,
                        Err(StreamedStemError::AlreadyFilled(_)) => {}
                        Err(e) => panic!("{e} (focus {play}, {seek:?})"),
                    }
                }
            }
        }
        assert!(filled > r.slots(), "the pool was reused");
    }

    #[test]
    fn chunks_arrive_once_with_the_right_length() {
        let r = StreamedStem::new(CHUNK_FRAMES * 2 + 10);
        assert_eq!(r.chunks(), 3);
        assert!(!r.covers(0, 0));
        assert!(r.covers(-50, -1), "before the stem is silence");
        assert!(
            r.covers(r.frames as i64, r.frames as i64 + 100),
            "after too"
        );
        let full = vec![0.25; CHUNK_FRAMES * CHANNELS];
        assert_eq!(r.fill(1, &full), Ok(()));
        assert_eq!(r.fill(1, &full), Err(StreamedStemError::AlreadyFilled(1)));
        assert_eq!(r.fill(3, &full), Err(StreamedStemError::OutOfRange(3)));
        assert_eq!(
            r.fill(2, &full),
            Err(StreamedStemError::Length {
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
