//! The real-time engine: renders the mix of every stem, positioned on the
//! session clock.
//!
//! Split as kira splits its backend: an [`EngineHandle`] on the control side
//! sends [`Command`]s (scheduled mix states, session map updates) through a
//! wait-free SPSC ring (rtrb); the [`Engine`] lives in the output callback and
//! only reads that ring, preallocated buffers, immutable stem samples and
//! atomics.
//!
//! **Invariant (real-time safety):** [`Engine::render`] never allocates, frees,
//! locks, logs or blocks. `tests/audio_rt.rs` runs it under `assert_no_alloc`.
//!
//! **Time.** The caller says at which *local* instant the block's first frame
//! leaves the speaker; the session map turns that into session time, and the
//! timeline ([`Timeline::position_ns_at`]) into the song position the frame
//! should have. [`Timeline::position_frames_at`] is the one mapping from session time
//! to frames. The engine compares that with where it is:
//! - under [`RESYNC_FRAMES`] of error it steers its read rate (a PI loop, at
//!   most [`MAX_RATIO_PPM`] off unity: a sound card's crystal drift, corrected
//!   inaudibly by resampling);
//! - beyond, or on a seek, it jumps with a [`FADE_FRAMES`] crossfade (no click).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use crate::protocol::{MAX_STEMS, SessionMap, SessionState, Timeline};

use super::CHANNELS;
pub use super::meters::{Meter, Meters, Solo};
use super::streamer::{Frames, LocalFrames, Source, Streamer};

/// A position error beyond this (5 ms at 48 kHz) is jumped, not slewed.
pub const RESYNC_FRAMES: f64 = 240.0;
/// Crossfade length of a jump, a seek, a pause or a start (5 ms at 48 kHz).
pub const FADE_FRAMES: u32 = 240;
/// A gain change is ramped over this many frames (5 ms at 48 kHz), whatever
/// the device's block size, so a volume or mute vote never clicks.
pub const GAIN_RAMP_FRAMES: u32 = 240;
/// The largest departure of the read rate from unity, in ppm (about 3.5 cents:
/// inaudible on music).
pub const MAX_RATIO_PPM: f64 = 2000.0;
/// Time constant of the drift loop, in seconds.
const DRIFT_TAU_SECS: f64 = 1.0;
/// An error under this many frames is not corrected proportionally (so a clean
/// null device plays at exactly unity, sample for sample).
const DEADBAND_FRAMES: f64 = 0.5;
/// The longest block rendered in one pass; longer device buffers are split.
pub const MAX_BLOCK_FRAMES: usize = 8192;
/// Old read positions that can fade out at once.
const FADE_SLOTS: usize = 3;
/// Mix states that can wait for their instant at once.
const MAX_PENDING: usize = 32;
/// Ring capacity, control to engine.
const COMMAND_CAPACITY: usize = 256;

/// Gains for one state of the mix, linear, ready for the callback.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MixGains {
    /// Per stem; 0 for muted (or not soloed while another stem is).
    pub stems: [f32; MAX_STEMS],
    /// The "All" channel's gain, on top of every stem.
    pub master: f32,
}

impl MixGains {
    pub const UNITY: MixGains = MixGains {
        stems: [1.0; MAX_STEMS],
        master: 1.0,
    };

    /// The gains a decided state asks for (this peer's solo set applies on
    /// top, in the engine: see [`Solo`]).
    pub fn from_state(state: &SessionState) -> MixGains {
        let mut stems = [0.0; MAX_STEMS];
        for (i, ch) in state.channels.iter().enumerate().take(MAX_STEMS) {
            stems[i] = if ch.muted {
                0.0
            } else {
                db_to_gain(ch.gain_db)
            };
        }
        let master = if state.master.muted {
            0.0
        } else {
            db_to_gain(state.master.gain_db)
        };
        MixGains { stems, master }
    }
}

/// Decibels to a linear gain: −∞ (and anything not a number) is silence.
pub fn db_to_gain(db: f32) -> f32 {
    if db.is_nan() || db == f32::NEG_INFINITY {
        0.0
    } else {
        10f32.powf(db.clamp(-200.0, crate::protocol::MAX_GAIN_DB) / 20.0)
    }
}

/// One state of the mix and the session instant it takes effect.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scheduled {
    /// Session time at which this state starts; `i64::MIN` for "now".
    pub apply_at_session_ns: i64,
    pub timeline: Timeline,
    pub gains: MixGains,
}

/// Control → engine. A scheduled state travels boxed (the ring stays small)
/// and comes back through [`Retired`] to be freed off the audio thread.
#[derive(Debug)]
pub enum Command {
    Schedule(Box<Scheduled>),
    /// This peer's local→session map changed (steering).
    Map(SessionMap),
    /// The song's stems, in channel order (the song became known, or a
    /// stem's source changed). The old list comes back through [`Retired`].
    Stems(Box<Vec<Streamer>>),
    /// Another song's stems, from session instant `apply_at_session_ns` on
    /// (a song change: the state for that instant is scheduled with it).
    /// What was sounding fades out on the old stems; the old list comes back
    /// through [`Retired`] once its fades are over. One is pending at a time:
    /// a newer one replaces it.
    StemsAt {
        apply_at_session_ns: i64,
        /// The song they are (its id), for `--report`.
        song: [u8; 16],
        stems: Box<Vec<Streamer>>,
    },
}

/// What the engine hands back to be freed off the audio thread.
pub enum Garbage {
    Scheduled(#[allow(dead_code)] Box<Scheduled>),
    Stems(#[allow(dead_code)] Box<Vec<Streamer>>),
}

/// What the engine played in one block, for `--report`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// The song position of the block's first frame, in frames at the engine rate.
    pub pos_frames: i64,
    pub playing: bool,
    /// The song playing (its id's bytes; zero until the runtime names it).
    pub song: [u8; 16],
    /// The session time the block's first frame is heard at, as this peer's
    /// map says (`None` until synced): two peers' reports at one real
    /// instant tell their clocks' disagreement from the engine's error.
    pub session_ns: Option<i64>,
    /// The last jump inside the block (a seek, a song change, a start or a
    /// stop after its first frame), if any: a report shows where it lands.
    pub jump: Option<Jump>,
}

/// A discontinuity inside a block: from frame `at_frames` of the block on,
/// the engine plays `song` from `pos_frames` (or is stopped there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Jump {
    pub at_frames: u32,
    pub pos_frames: i64,
    pub playing: bool,
    pub song: [u8; 16],
}

/// Counters the engine publishes (lock-free).
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Blocks rendered.
    pub blocks: AtomicU64,
    /// Jumps made to correct a large error (not counting seeks and starts).
    pub resyncs: AtomicU64,
    /// Segments (about one per block) in which a stem had no data where it
    /// should have played.
    pub underruns: AtomicU64,
    /// Commands refused because the pending list was full.
    pub dropped_commands: AtomicU64,
    /// The read rate's departure from unity, in ppb.
    pub ratio_ppb: AtomicI64,
    /// The last position error before correction, in nanoseconds of audio.
    pub error_ns: AtomicI64,
    pub playing: AtomicBool,
    /// Position of the last block's first frame.
    pub pos_frames: AtomicI64,
}

/// The *All* channel as the engine sees it: the aggregate of every stem.
/// Every stem shares one playhead, so the average position across channels
/// is the playhead itself; the level is the master bus after the master gain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AllStatus {
    pub pos_frames: i64,
    pub playing: bool,
    pub peak: f32,
    pub rms: f32,
    /// Stems playing silence because their data has not arrived.
    pub buffering_stems: usize,
}

/// The control side of an engine.
pub struct EngineHandle {
    commands: rtrb::Producer<Command>,
    pub meters: Arc<Meters>,
    pub stats: Arc<EngineStats>,
    pub solo: Arc<Solo>,
    stem_names: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("the engine's command queue is full (the output has stalled)")]
    QueueFull,
}

impl EngineHandle {
    /// Schedules `state` to take effect at session time `apply_at_session_ns`.
    pub fn schedule(
        &mut self,
        apply_at_session_ns: i64,
        state: &SessionState,
    ) -> Result<(), EngineError> {
        self.send(Command::Schedule(Box::new(Scheduled {
            apply_at_session_ns,
            timeline: state.timeline,
            gains: MixGains::from_state(state),
        })))
    }

    /// Sends a raw scheduled state (tests, the offline renderer).
    pub fn schedule_raw(&mut self, s: Scheduled) -> Result<(), EngineError> {
        self.send(Command::Schedule(Box::new(s)))
    }

    pub fn set_map(&mut self, map: SessionMap) -> Result<(), EngineError> {
        self.send(Command::Map(map))
    }

    /// Replaces the stems, in channel order, from session instant
    /// `apply_at_session_ns` on (see [`Command::StemsAt`]).
    pub fn set_stems_at(
        &mut self,
        apply_at_session_ns: i64,
        song: [u8; 16],
        stems: Vec<Streamer>,
    ) -> Result<(), EngineError> {
        let names = stems.iter().map(|s| s.name.clone()).collect();
        self.send(Command::StemsAt {
            apply_at_session_ns,
            song,
            stems: Box::new(stems),
        })?;
        self.stem_names = names;
        Ok(())
    }

    /// Replaces the stems, in channel order (from the next block on).
    pub fn set_stems(&mut self, stems: Vec<Streamer>) -> Result<(), EngineError> {
        let names = stems.iter().map(|s| s.name.clone()).collect();
        self.send(Command::Stems(Box::new(stems)))?;
        self.stem_names = names;
        Ok(())
    }

    pub fn stem_names(&self) -> &[String] {
        &self.stem_names
    }

    /// The All view: the aggregate of every channel.
    pub fn all(&self) -> AllStatus {
        AllStatus {
            pos_frames: self.stats.pos_frames.load(Ordering::Relaxed),
            playing: self.stats.playing.load(Ordering::Relaxed),
            peak: self.meters.master.peak(),
            rms: self.meters.master.rms(),
            buffering_stems: self.meters.stems.iter().filter(|m| m.buffering()).count(),
        }
    }

    fn send(&mut self, c: Command) -> Result<(), EngineError> {
        self.commands.push(c).map_err(|_| EngineError::QueueFull)
    }
}

/// The engine: lives in the output callback.
pub struct Engine {
    rate_hz: u32,
    stems: Vec<Streamer>,
    /// A song change's stems and the instant they take over (boxed as they
    /// travel and go back: the audio thread moves a pointer, never a list).
    #[allow(clippy::box_collection)]
    pending_stems: Option<(i64, [u8; 16], Box<Vec<Streamer>>)>,
    /// The song the stems are (for `--report`).
    song: [u8; 16],
    /// The stems before the last song change, while positions on them fade out.
    #[allow(clippy::box_collection)]
    old_stems: Option<Box<Vec<Streamer>>>,
    commands: rtrb::Consumer<Command>,
    /// Boxes the engine is done with go back to the control side to be freed.
    retired: rtrb::Producer<Garbage>,
    map: Option<SessionMap>,
    pending: [Option<Box<Scheduled>>; MAX_PENDING],
    /// Arrival order of each pending state: of two states for one instant,
    /// the later-sent one wins.
    pending_seq: [u64; MAX_PENDING],
    next_seq: u64,
    current: Scheduled,
    /// What the gains ramp towards: `current.gains` through the solo set.
    target: MixGains,
    solo: Arc<Solo>,
    solo_seen: u64,
    /// The gains ramping towards `target` (the effective gains when the
    /// target last changed), and how many frames of the ramp have played.
    ramp_from: MixGains,
    ramp_done: u32,
    /// The read position of the next frame, fractional frames.
    pos_frames: f64,
    audible: bool,
    /// Previous read positions fading out (after a jump or a pause). Three,
    /// so even two more jumps within one crossfade fade every older position
    /// out; a fourth within 5 ms cuts the quietest one.
    fade_outs: [Option<FadeOut>; FADE_SLOTS],
    /// Frames left of the fade-in of the current position.
    fade_in_left: u32,
    /// The drift loop's learned read-rate offset.
    ratio_integral: f64,
    /// The position error measured at the start of the current segment.
    error_frames: f64,
    /// Whether the read rate follows the clock and starts fade in (live), or
    /// the rate stays at exactly unity and starts are hard (the offline
    /// renderer).
    drift_correction: bool,
    /// Scratch: per-frame interpolation positions and weights for one block.
    taps: Vec<(i64, [f32; 4])>,
    fade_buf: Vec<f32>,
    meters: Arc<Meters>,
    stats: Arc<EngineStats>,
}

/// The retired-box return path: the control side drains and drops them.
pub struct Retired(rtrb::Consumer<Garbage>);

impl Retired {
    /// Frees what the engine is done with. Call from the control side now and
    /// then (every round is plenty).
    pub fn collect(&mut self) {
        while self.0.pop().is_ok() {}
    }
}

impl Engine {
    /// A paused engine at position 0 with unity gains, and its control handle.
    pub fn new(stems: Vec<Streamer>, rate_hz: u32) -> (Engine, EngineHandle, Retired) {
        Engine::with_stats(stems, rate_hz, Arc::new(EngineStats::default()))
    }

    /// [`Engine::new`] publishing its playhead and counters in `stats`
    /// (shared before the engine exists: the decoders of streamed stems
    /// follow its playhead).
    pub fn with_stats(
        stems: Vec<Streamer>,
        rate_hz: u32,
        stats: Arc<EngineStats>,
    ) -> (Engine, EngineHandle, Retired) {
        let (tx, rx) = rtrb::RingBuffer::new(COMMAND_CAPACITY);
        let (ret_tx, ret_rx) = rtrb::RingBuffer::new(COMMAND_CAPACITY + MAX_PENDING + 1);
        let meters = Arc::new(Meters {
            stems: (0..MAX_STEMS).map(|_| Meter::default()).collect(),
            master: Meter::default(),
        });
        let solo = Arc::new(Solo::new(MAX_STEMS));
        let handle = EngineHandle {
            commands: tx,
            meters: meters.clone(),
            stats: stats.clone(),
            solo: solo.clone(),
            stem_names: stems.iter().map(|s| s.name.clone()).collect(),
        };
        let engine = Engine {
            rate_hz,
            stems,
            pending_stems: None,
            song: [0; 16],
            old_stems: None,
            commands: rx,
            retired: ret_tx,
            map: None,
            pending: [const { None }; MAX_PENDING],
            pending_seq: [0; MAX_PENDING],
            next_seq: 0,
            current: Scheduled {
                apply_at_session_ns: i64::MIN,
                timeline: Timeline {
                    playing: false,
                    anchor_position_ns: 0,
                    anchor_session_ns: 0,
                },
                gains: MixGains::UNITY,
            },
            target: MixGains::UNITY,
            solo,
            solo_seen: 0,
            ramp_from: MixGains::UNITY,
            ramp_done: GAIN_RAMP_FRAMES,
            pos_frames: 0.0,
            audible: false,
            fade_outs: [None; FADE_SLOTS],
            fade_in_left: 0,
            ratio_integral: 0.0,
            error_frames: 0.0,
            drift_correction: true,
            taps: Vec::with_capacity(MAX_BLOCK_FRAMES),
            fade_buf: vec![0.0; MAX_BLOCK_FRAMES * CHANNELS],
            meters,
            stats,
        };
        (engine, handle, Retired(ret_rx))
    }

    /// For offline rendering: the read rate stays at exactly unity (there is
    /// no device clock to follow, and the output must be sample-exact), and a
    /// start is not faded in (an export begins exactly where asked).
    /// Names the song the engine starts with (its id), for `--report`.
    pub fn with_song(mut self, song: [u8; 16]) -> Engine {
        self.song = song;
        self
    }

    pub fn offline(mut self) -> Engine {
        self.drift_correction = false;
        self
    }

    /// Renders interleaved stereo into `out`, whose first frame leaves the
    /// speaker at local time `play_local_ns`. Real-time safe.
    pub fn render(&mut self, out: &mut [f32], play_local_ns: i64) -> BlockInfo {
        self.drain_commands();
        self.follow_solo();
        let frames = out.len() / CHANNELS;
        let Some(map) = self.map else {
            // Not synced yet: nothing has a place on the timeline.
            out.fill(0.0);
            return self.publish(BlockInfo {
                pos_frames: self.pos_frames.round() as i64,
                playing: false,
                song: self.song,
                session_ns: None,
                jump: None,
            });
        };
        // Session ns per device frame, nominally (the drift loop absorbs the
        // device's own rate error).
        let ns_per_frame = 1e9 / self.rate_hz as f64 * (1.0 + map.rate);
        let s0 = map.session_ns_at(play_local_ns) as f64;
        // A change due within a thousandth of a frame after a frame's instant
        // lands on that frame despite rounding (the segment split agrees).
        let slack = 1e-3 * ns_per_frame;
        self.promote(s0 + slack);
        let mut info = self.at_block_start(s0);
        info.session_ns = Some(s0 as i64);
        let mut done = 0;
        while done < frames {
            let s = s0 + done as f64 * ns_per_frame;
            if done > 0 {
                let (before, was_playing, song) = (self.pos_frames, self.audible, self.song);
                self.promote(s + slack);
                let now = self.at_block_start(s);
                // Where the segment before left off, to the frame: anything
                // else is a jump (the drift loop moves by far less).
                if now.playing != was_playing
                    || now.song != song
                    || (now.pos_frames as f64 - before).abs() > 1.0
                {
                    info.jump = Some(Jump {
                        at_frames: done as u32,
                        pos_frames: now.pos_frames,
                        playing: now.playing,
                        song: now.song,
                    });
                }
            }
            // The next pending change inside this block ends the segment.
            let mut end = frames.min(done + MAX_BLOCK_FRAMES);
            if let Some(next) = self.next_pending_at() {
                let at = ((next as f64 - slack - s0) / ns_per_frame).ceil();
                if at > done as f64 && at < end as f64 {
                    end = at as usize;
                }
            }
            self.render_segment(&mut out[done * CHANNELS..end * CHANNELS]);
            done = end;
        }
        self.publish(info)
    }

    /// Counts the block and publishes what it played.
    fn publish(&self, info: BlockInfo) -> BlockInfo {
        self.stats.blocks.fetch_add(1, Ordering::Relaxed);
        self.stats.playing.store(info.playing, Ordering::Relaxed);
        self.stats
            .pos_frames
            .store(info.pos_frames, Ordering::Relaxed);
        info
    }

    fn drain_commands(&mut self) {
        while let Ok(cmd) = self.commands.pop() {
            match cmd {
                Command::Map(m) => self.map = Some(m),
                Command::Schedule(s) => self.insert_pending(s),
                Command::Stems(mut stems) => {
                    std::mem::swap(&mut self.stems, &mut *stems);
                    for m in &self.meters.stems[self.stems.len().min(self.meters.stems.len())..] {
                        m.clear();
                    }
                    self.throw_away(Garbage::Stems(stems));
                }
                Command::StemsAt {
                    apply_at_session_ns,
                    song,
                    stems,
                } => {
                    if let Some((_, _, replaced)) =
                        self.pending_stems
                            .replace((apply_at_session_ns, song, stems))
                    {
                        self.throw_away(Garbage::Stems(replaced));
                    }
                }
            }
        }
    }

    /// A song change: `stems` sound from now on. What sounded fades out on
    /// the old stems (fades still on an older list are cut), and the new
    /// song starts from silence where the timeline says, faded in.
    #[allow(clippy::box_collection)]
    fn swap_stems(&mut self, mut stems: Box<Vec<Streamer>>) {
        if let Some(older) = self.old_stems.take() {
            for slot in &mut self.fade_outs {
                if slot.is_some_and(|f| f.old) {
                    *slot = None;
                }
            }
            self.throw_away(Garbage::Stems(older));
        }
        if self.audible {
            self.fade_out_current();
            self.audible = false;
            self.fade_in_left = 0;
        }
        for fade in self.fade_outs.iter_mut().flatten() {
            fade.old = true;
        }
        std::mem::swap(&mut self.stems, &mut *stems);
        for m in &self.meters.stems[self.stems.len().min(self.meters.stems.len())..] {
            m.clear();
        }
        self.old_stems = Some(stems);
    }

    fn insert_pending(&mut self, s: Box<Scheduled>) {
        // A state for an instant at or before a pending one replaces the later
        // ones' claim only at its own instant; keep all, apply in time order
        // (and in arrival order at one instant).
        if let Some(i) = self.pending.iter().position(Option::is_none) {
            self.pending[i] = Some(s);
            self.pending_seq[i] = self.next_seq;
            self.next_seq += 1;
        } else {
            self.stats.dropped_commands.fetch_add(1, Ordering::Relaxed);
            self.retire(s);
        }
    }

    fn retire(&mut self, s: Box<Scheduled>) {
        // The ring is sized for every box that can be in flight, so this
        // cannot fail; if it ever did, leaking is the real-time-safe choice.
        self.throw_away(Garbage::Scheduled(s));
    }

    fn throw_away(&mut self, g: Garbage) {
        if let Err(rtrb::PushError::Full(b)) = self.retired.push(g) {
            std::mem::forget(b);
        }
    }

    fn next_pending_at(&self) -> Option<i64> {
        self.pending
            .iter()
            .flatten()
            .map(|p| p.apply_at_session_ns)
            .chain(self.pending_stems.as_ref().map(|(at, ..)| *at))
            .min()
    }

    /// Makes the latest pending state due at session time `s` current (a
    /// song change's stems first).
    fn promote(&mut self, s: f64) {
        if self
            .pending_stems
            .as_ref()
            .is_some_and(|(at, ..)| *at as f64 <= s)
            && let Some((_, song, stems)) = self.pending_stems.take()
        {
            self.swap_stems(stems);
            self.song = song;
        }
        loop {
            let due = self
                .pending
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    p.as_ref()
                        .map(|p| (p.apply_at_session_ns, self.pending_seq[i], i))
                })
                .filter(|&(at, _, _)| at as f64 <= s)
                .min();
            let Some((_, _, i)) = due else { break };
            let Some(next) = self.pending[i].take() else {
                break;
            };
            self.current = *next.as_ref();
            self.retire(next);
            self.retarget(self.solo.mask(&self.current.gains));
        }
    }

    /// Ramps from wherever the gains are now to `target`.
    fn retarget(&mut self, target: MixGains) {
        if target != self.target {
            self.ramp_from = effective_gains(&self.ramp_from, &self.target, self.ramp_done);
            self.ramp_done = 0;
            self.target = target;
        }
    }

    /// Takes up a change of the solo set (ramped, like a gain change).
    fn follow_solo(&mut self) {
        let generation = self.solo.generation.load(Ordering::Acquire);
        if generation != self.solo_seen {
            self.solo_seen = generation;
            self.retarget(self.solo.mask(&self.current.gains));
        }
    }

    /// The weight the current position sounds at (below 1 while fading in).
    fn fade_in_weight(&self) -> f32 {
        (FADE_FRAMES - self.fade_in_left.min(FADE_FRAMES)) as f32 / FADE_FRAMES as f32
    }

    /// Starts fading the current read position out from the weight it has
    /// now. With every slot busy, the quietest fade is cut.
    fn fade_out_current(&mut self) {
        let fade = FadeOut {
            pos: self.pos_frames,
            left: FADE_FRAMES,
            weight: self.fade_in_weight(),
            old: false,
        };
        let level = |f: &Option<FadeOut>| f.map_or(0.0, |f| f.weight * f.left as f32);
        let mut slot = 0;
        for i in 1..FADE_SLOTS {
            if level(&self.fade_outs[i]) < level(&self.fade_outs[slot]) {
                slot = i;
            }
        }
        self.fade_outs[slot] = Some(fade);
    }

    /// Compares where we are with where the timeline says we should be at
    /// session time `s`, and decides: follow (steer the rate), jump, start or
    /// stop. Returns the position and playing state the segment starts with.
    fn at_block_start(&mut self, s: f64) -> BlockInfo {
        let target = self.current.timeline.position_frames_at(s, self.rate_hz);
        let playing = self.current.timeline.playing;
        if !playing {
            if self.audible {
                self.fade_out_current();
                self.audible = false;
                self.fade_in_left = 0;
            }
            self.pos_frames = target;
            self.error_frames = 0.0;
            self.stats.error_ns.store(0, Ordering::Relaxed);
            return BlockInfo {
                pos_frames: target.round() as i64,
                playing: false,
                song: self.song,
                session_ns: None,
                jump: None,
            };
        }
        let error = target - self.pos_frames;
        self.error_frames = error;
        self.stats.error_ns.store(
            (error * 1e9 / self.rate_hz as f64) as i64,
            Ordering::Relaxed,
        );
        if !self.audible {
            // Start (or resume) playing where the timeline is, on a whole frame:
            // the sub-frame remainder (≤ 10 µs) stays within the drift loop's
            // deadband, and unity-rate playback stays sample-exact.
            self.pos_frames = target.round();
            self.error_frames = target - self.pos_frames;
            // Nothing was sounding: the new gains apply at once, no ramp.
            self.ramp_from = self.target;
            self.ramp_done = GAIN_RAMP_FRAMES;
            self.audible = true;
            self.fade_in_left = if self.drift_correction {
                FADE_FRAMES
            } else {
                0
            };
        } else if error.abs() > RESYNC_FRAMES || !self.drift_correction && error.abs() >= 0.5 {
            // A seek, or an error too large to slew: jump with a crossfade.
            // A jump more than a second after the timeline last changed is not
            // a seek but a lost sync (a stall): counted as a resync.
            if self.current.timeline.anchor_session_ns as f64 + 1e9 < s {
                self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
            }
            self.fade_out_current();
            self.fade_in_left = FADE_FRAMES;
            self.pos_frames = target.round();
            self.error_frames = target - self.pos_frames;
        }
        BlockInfo {
            pos_frames: self.pos_frames.round() as i64,
            playing: true,
            song: self.song,
            session_ns: None,
            jump: None,
        }
    }

    /// The read rate for a segment of `frames` frames, from the drift loop.
    fn read_ratio(&mut self, frames: usize) -> f64 {
        if !self.drift_correction || !self.audible {
            return 1.0;
        }
        let error_frames = self.error_frames;
        let max = MAX_RATIO_PPM * 1e-6;
        let rate = self.rate_hz as f64;
        let error_secs = error_frames / rate;
        let dt_secs = frames as f64 / rate;
        if error_frames.abs() > DEADBAND_FRAMES {
            self.ratio_integral = (self.ratio_integral
                + error_secs * dt_secs / (DRIFT_TAU_SECS * DRIFT_TAU_SECS))
                .clamp(-max / 2.0, max / 2.0);
        }
        let proportional = if error_frames.abs() > DEADBAND_FRAMES {
            2.0 * error_secs / DRIFT_TAU_SECS
        } else {
            0.0
        };
        let ratio_offset = (self.ratio_integral + proportional).clamp(-max, max);
        self.stats
            .ratio_ppb
            .store((ratio_offset * 1e9) as i64, Ordering::Relaxed);
        1.0 + ratio_offset
    }

    fn render_segment(&mut self, out: &mut [f32]) {
        let frames = out.len() / CHANNELS;
        let ratio = self.read_ratio(frames);
        let ramp_done = self.ramp_done;
        // The current position, faded in if it just started.
        if self.audible {
            fill_taps(&mut self.taps, self.pos_frames, ratio, frames);
            self.pos_frames += ratio * frames as f64;
            let missing = mix_into(
                out,
                &self.stems,
                &self.taps,
                &self.ramp_from,
                &self.target,
                ramp_done,
                Some(&self.meters),
            );
            if missing {
                self.stats.underruns.fetch_add(1, Ordering::Relaxed);
            }
            let fade_in = self.fade_in_left as usize;
            for i in 0..fade_in.min(frames) {
                let w = (FADE_FRAMES as usize - fade_in + i) as f32 / FADE_FRAMES as f32;
                out[i * CHANNELS] *= w;
                out[i * CHANNELS + 1] *= w;
            }
            self.fade_in_left = self.fade_in_left.saturating_sub(frames as u32);
        } else {
            out.fill(0.0);
        }
        // Old positions fading out, with the same gains.
        for slot in 0..self.fade_outs.len() {
            let Some(fade) = self.fade_outs[slot].take() else {
                continue;
            };
            let n = (fade.left as usize).min(frames);
            fill_taps(&mut self.taps, fade.pos, 1.0, n);
            let stems: &[Streamer] = match (fade.old, &self.old_stems) {
                (false, _) => &self.stems,
                (true, Some(old)) => old,
                (true, None) => &[],
            };
            let _ = mix_into(
                &mut self.fade_buf[..n * CHANNELS],
                stems,
                &self.taps,
                &self.ramp_from,
                &self.target,
                ramp_done,
                None,
            );
            for i in 0..n {
                let w = fade.weight * (fade.left as usize - i) as f32 / FADE_FRAMES as f32;
                out[i * CHANNELS] += self.fade_buf[i * CHANNELS] * w;
                out[i * CHANNELS + 1] += self.fade_buf[i * CHANNELS + 1] * w;
            }
            if fade.left as usize > n {
                self.fade_outs[slot] = Some(FadeOut {
                    pos: fade.pos + n as f64,
                    left: fade.left - n as u32,
                    ..fade
                });
            }
        }
        if !self.fade_outs.iter().flatten().any(|f| f.old)
            && let Some(old) = self.old_stems.take()
        {
            self.throw_away(Garbage::Stems(old));
        }
        // Master gain, ramped; master meter.
        let (from, to) = (self.ramp_from.master, self.target.master);
        let (mut peak, mut sum) = (0f32, 0f64);
        for i in 0..frames {
            let g = ramp_at(from, to, ramp_done as usize + i);
            for c in 0..CHANNELS {
                let v = &mut out[i * CHANNELS + c];
                if g != 1.0 {
                    *v *= g;
                }
                peak = peak.max(v.abs());
                sum += (*v as f64) * (*v as f64);
            }
        }
        self.meters.master.store(
            peak,
            (sum / (frames * CHANNELS).max(1) as f64).sqrt() as f32,
        );
        self.ramp_done = (ramp_done as usize + frames).min(GAIN_RAMP_FRAMES as usize) as u32;
        if self.ramp_done == GAIN_RAMP_FRAMES && ramp_done < GAIN_RAMP_FRAMES {
            // The ramp is over: from now on the gains are constant (and a
            // muted stem is skipped, not mixed at zero gain).
            self.ramp_from = self.target;
        }
    }
}

/// A read position fading out: where, frames left, and the weight it started
/// from (below 1 if it was itself fading in).
#[derive(Clone, Copy, Debug)]
struct FadeOut {
    pos: f64,
    left: u32,
    weight: f32,
    /// On the stems before a song change (`Engine::old_stems`).
    old: bool,
}

/// The gain `k` frames into a [`GAIN_RAMP_FRAMES`] ramp from `from` to `to`.
#[inline]
fn ramp_at(from: f32, to: f32, k: usize) -> f32 {
    if from == to || k + 1 >= GAIN_RAMP_FRAMES as usize {
        to
    } else {
        from + (to - from) * (k + 1) as f32 / GAIN_RAMP_FRAMES as f32
    }
}

/// The gains `done` frames into a ramp from `from` to `to`.
fn effective_gains(from: &MixGains, to: &MixGains, done: u32) -> MixGains {
    let mut g = *to;
    if done < GAIN_RAMP_FRAMES {
        // The last frame played had index done − 1 in the ramp.
        let k = done as usize;
        let at = |a: f32, b: f32| if k == 0 { a } else { ramp_at(a, b, k - 1) };
        for (i, v) in g.stems.iter_mut().enumerate() {
            *v = at(from.stems[i], to.stems[i]);
        }
        g.master = at(from.master, to.master);
    }
    g
}

/// Per-frame read positions and cubic (Catmull-Rom) weights for `frames` frames
/// from `pos` at `ratio`. At an integer position the weights are exactly
/// `[0, 1, 0, 0]`, so unity-rate playback is sample-exact.
fn fill_taps(taps: &mut Vec<(i64, [f32; 4])>, pos: f64, ratio: f64, frames: usize) {
    taps.clear();
    for i in 0..frames {
        let p = pos + ratio * i as f64;
        let base = p.floor();
        let t = (p - base) as f32;
        let w = if t == 0.0 {
            [0.0, 1.0, 0.0, 0.0]
        } else {
            let t2 = t * t;
            let t3 = t2 * t;
            [
                -0.5 * t3 + t2 - 0.5 * t,
                1.5 * t3 - 2.5 * t2 + 1.0,
                -1.5 * t3 + 2.0 * t2 + 0.5 * t,
                0.5 * t3 - 0.5 * t2,
            ]
        };
        taps.push((base as i64, w));
    }
}

/// Mixes every stem at the given taps into `out` (overwritten), each with its
/// gain ramped from `from` to `to`, and stores each stem's meter and buffering
/// state. Returns whether a stem's data was missing where it should play.
fn mix_into(
    out: &mut [f32],
    stems: &[Streamer],
    taps: &[(i64, [f32; 4])],
    from: &MixGains,
    to: &MixGains,
    ramp_done: u32,
    meters: Option<&Meters>,
) -> bool {
    let meter = |k: usize| meters.and_then(|m| m.stems.get(k));
    out.fill(0.0);
    let (Some(first), Some(last)) = (taps.first(), taps.last()) else {
        return false;
    };
    // The frames the cubic taps touch.
    let (lo, hi) = (first.0 - 1, last.0 + 2);
    let mut missing = false;
    for (k, stem) in stems.iter().enumerate().take(MAX_STEMS) {
        let (g0, g1) = (from.stems[k], to.stems[k]);
        let present = match &stem.source {
            Source::Local(_) => true,
            Source::Streamed(r) => r.covers(lo, hi),
        };
        if let Some(m) = meter(k) {
            m.buffering.store(!present, Ordering::Relaxed);
        }
        if !present {
            missing |= g0 != 0.0 || g1 != 0.0;
        }
        let (peak, rms) = if (g0 == 0.0 && g1 == 0.0) || !present {
            (0.0, 0.0)
        } else {
            match &stem.source {
                Source::Local(s) => mix_stem(out, &LocalFrames(s), taps, g0, g1, ramp_done),
                Source::Streamed(r) => mix_stem(out, &**r, taps, g0, g1, ramp_done),
            }
        };
        if let Some(m) = meter(k) {
            m.store(peak, rms);
        }
    }
    missing
}

/// Adds one stem at the given taps into `out`, its gain `ramp_done` frames
/// into a ramp from `g0` to `g1`; returns its peak and RMS.
#[inline]
fn mix_stem<F: Frames>(
    out: &mut [f32],
    stem: &F,
    taps: &[(i64, [f32; 4])],
    g0: f32,
    g1: f32,
    ramp_done: u32,
) -> (f32, f32) {
    let n = taps.len();
    let (mut peak, mut sum) = (0f32, 0f64);
    for (i, &(base, w)) in taps.iter().enumerate() {
        let (l, r) = if w == [0.0, 1.0, 0.0, 0.0] {
            stem.frame(base)
        } else {
            let mut acc = (0.0f32, 0.0f32);
            for (j, wj) in w.iter().enumerate() {
                let (a, b) = stem.frame(base - 1 + j as i64);
                acc.0 += wj * a;
                acc.1 += wj * b;
            }
            acc
        };
        let g = ramp_at(g0, g1, ramp_done as usize + i);
        let (l, r) = if g == 1.0 { (l, r) } else { (l * g, r * g) };
        out[i * CHANNELS] += l;
        out[i * CHANNELS + 1] += r;
        peak = peak.max(l.abs()).max(r.abs());
        sum += (l as f64) * (l as f64) + (r as f64) * (r as f64);
    }
    (peak, (sum / (n * CHANNELS).max(1) as f64).sqrt() as f32)
}
