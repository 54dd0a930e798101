//! The agreed session state and the votes that change it.
//!
//! Time here is explicit and integer: session time and song positions are
//! nanoseconds (`_ns`, i64), so the state is exact, hashable and identical on
//! every peer. [`Timeline::position_frames_at`] is the one mapping from session
//! time to audio frames.

use crate::wire::{Model, Reader, WireError, Writer};
use std::fmt;

/// Length of one heartbeat round of session time.
pub const ROUND_NS: i64 = 100_000_000;
/// The sample rate every peer's engine runs at; stem lengths and song positions
/// in frames are counted in it.
pub const ENGINE_RATE_HZ: u32 = 48_000;
/// The most stems a session can hold (a `Channel::Stem` index is below this).
pub const MAX_STEMS: usize = 256;
/// The loudest gain a fader can ask for; louder votes are clamped to it.
pub const MAX_GAIN_DB: f32 = 12.0;

const NS_PER_SEC: i128 = 1_000_000_000;

/// A peer's identity: 64 random bits chosen when the peer starts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Model for PeerId {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_u64(self.0);
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(PeerId(r.u64("peer_id")?))
    }
}

/// A heartbeat round: round `r` spans session time `[r·ROUND_NS, (r+1)·ROUND_NS)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Round(pub u64);

impl Round {
    /// The last round the wire accepts: half the rounds whose start fits in an
    /// i64 of nanoseconds (about 14 600 years), so `r + anything` a peer adds
    /// to a round it received (a window, a horizon, the next round) can never
    /// wrap, and every round has a session time.
    pub const MAX: Round = Round((i64::MAX / ROUND_NS / 2) as u64);

    /// The round that contains session time `session_ns` (times before 0 are round 0).
    pub fn containing(session_ns: i64) -> Round {
        Round((session_ns.max(0) / ROUND_NS) as u64)
    }

    /// Session time at which this round starts.
    pub fn start_session_ns(self) -> i64 {
        (self.0 as i128 * ROUND_NS as i128).min(i64::MAX as i128) as i64
    }
}

impl Model for Round {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_u64(self.0);
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let round = Round(r.u64("round")?);
        if round > Round::MAX {
            return Err(WireError::Invalid {
                field: "round",
                reason: "beyond the last round (Round::MAX)",
            });
        }
        Ok(round)
    }
}

/// Which fader a vote moves: the master ("All", every channel at once) or one stem.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Channel {
    Master,
    Stem(u16),
}

impl Channel {
    const MASTER_CODE: u16 = u16::MAX;

    fn code(self) -> u16 {
        match self {
            Channel::Master => Self::MASTER_CODE,
            Channel::Stem(i) => i,
        }
    }
}

/// ```text
/// | channel u16 |   0xFFFF = master ("All"), otherwise a stem index < MAX_STEMS
/// ```
impl Model for Channel {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        if let Channel::Stem(i) = self
            && usize::from(*i) >= MAX_STEMS
        {
            return Err(WireError::Invalid {
                field: "channel",
                reason: "stem index out of range",
            });
        }
        w.put_u16(self.code());
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        match r.u16("channel")? {
            Self::MASTER_CODE => Ok(Channel::Master),
            i if usize::from(i) < MAX_STEMS => Ok(Channel::Stem(i)),
            _ => Err(WireError::Invalid {
                field: "channel",
                reason: "stem index out of range",
            }),
        }
    }
}

/// The code byte that leads every [`Event`] on the wire.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(u8)]
pub enum EventCode {
    None = 0,
    Play = 1,
    Pause = 2,
    Seek = 3,
    Volume = 4,
    Mute = 5,
}

impl EventCode {
    pub fn from_u8(code: u8) -> Option<EventCode> {
        Some(match code {
            0 => EventCode::None,
            1 => EventCode::Play,
            2 => EventCode::Pause,
            3 => EventCode::Seek,
            4 => EventCode::Volume,
            5 => EventCode::Mute,
            _ => return None,
        })
    }
}

/// What one peer asks for in one round. Every event is absolute ("seek to 30 s",
/// "bass at −6 dB"), so applying it twice is the same as applying it once.
///
/// Equality is bitwise, as on the wire: two events are equal when they encode to
/// the same bytes (so a NaN gain equals itself, and −0 dB differs from +0 dB).
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// This peer has nothing to ask this round.
    None,
    Play,
    Pause,
    /// Move the playhead to this song position (clamped into the song when chosen).
    Seek {
        position_ns: i64,
    },
    /// Set a channel's gain in dB; `-inf` is silence. NaN and `+inf` are refused.
    Volume {
        channel: Channel,
        gain_db: f32,
    },
    /// Mute or unmute a channel for everyone.
    Mute {
        channel: Channel,
        muted: bool,
    },
}

impl Event {
    pub fn code(&self) -> EventCode {
        match self {
            Event::None => EventCode::None,
            Event::Play => EventCode::Play,
            Event::Pause => EventCode::Pause,
            Event::Seek { .. } => EventCode::Seek,
            Event::Volume { .. } => EventCode::Volume,
            Event::Mute { .. } => EventCode::Mute,
        }
    }

    /// A total order over events (floats by their bits), used to sort a round's
    /// votes canonically so that no result depends on arrival order.
    pub(crate) fn canonical_key(&self) -> (u8, i64, u16, u32) {
        let code = self.code() as u8;
        match *self {
            Event::None | Event::Play | Event::Pause => (code, 0, 0, 0),
            Event::Seek { position_ns } => (code, position_ns, 0, 0),
            Event::Volume { channel, gain_db } => (code, 0, channel.code(), gain_db.to_bits()),
            Event::Mute { channel, muted } => (code, 0, channel.code(), u32::from(muted)),
        }
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.canonical_key() == other.canonical_key()
    }
}

impl Eq for Event {}

/// A gain in dB: `-inf` or finite. NaN and `+inf` are refused.
fn check_gain_db(gain_db: f32, field: &'static str) -> Result<f32, WireError> {
    if gain_db.is_nan() || gain_db == f32::INFINITY {
        return Err(WireError::not_finite(field, f64::from(gain_db)));
    }
    Ok(gain_db)
}

/// ```text
/// | code u8 | payload by code:
///   0 none, 1 play, 2 pause      (nothing)
///   3 seek                       | position_ns i64 |
///   4 volume                     | channel u16 | gain_db f32 (finite or −∞) |
///   5 mute                       | channel u16 | muted bool |
/// ```
impl Model for Event {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_u8(self.code() as u8);
        match *self {
            Event::None | Event::Play | Event::Pause => {}
            Event::Seek { position_ns } => w.put_i64(position_ns),
            Event::Volume { channel, gain_db } => {
                channel.encode(w)?;
                w.put_f32(check_gain_db(gain_db, "event.volume.gain_db")?);
            }
            Event::Mute { channel, muted } => {
                channel.encode(w)?;
                w.put_bool(muted);
            }
        }
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let code = r.u8("event.code")?;
        let code = EventCode::from_u8(code).ok_or(WireError::UnknownCode {
            field: "event.code",
            code,
        })?;
        Ok(match code {
            EventCode::None => Event::None,
            EventCode::Play => Event::Play,
            EventCode::Pause => Event::Pause,
            EventCode::Seek => Event::Seek {
                position_ns: r.i64("event.seek.position_ns")?,
            },
            EventCode::Volume => Event::Volume {
                channel: r.get_as("event.volume.channel")?,
                gain_db: check_gain_db(r.f32("event.volume.gain_db")?, "event.volume.gain_db")?,
            },
            EventCode::Mute => Event::Mute {
                channel: r.get_as("event.mute.channel")?,
                muted: r.bool("event.mute.muted")?,
            },
        })
    }
}

/// One peer's vote in one round.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Vote {
    pub voter: PeerId,
    pub round: Round,
    pub event: Event,
}

impl Vote {
    /// A total order over votes, for canonical sorting.
    pub(crate) fn canonical_key(&self) -> (PeerId, Round, (u8, i64, u16, u32)) {
        (self.voter, self.round, self.event.canonical_key())
    }
}

/// ```text
/// | voter u64 | round u64 | event (see Event) |
/// ```
impl Model for Vote {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        self.voter.encode(w)?;
        self.round.encode(w)?;
        self.event.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Vote {
            voter: r.get_as("vote.voter")?,
            round: r.get_as("vote.round")?,
            event: r.get()?,
        })
    }
}

/// Where the song is: from session time `anchor_session_ns` on, the playhead is at
/// `anchor_position_ns` and advances one nanosecond per nanosecond while playing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Timeline {
    pub playing: bool,
    pub anchor_position_ns: i64,
    pub anchor_session_ns: i64,
}

impl Timeline {
    /// Song position at session time `session_ns` (not clamped to the song).
    pub fn position_ns_at(&self, session_ns: i64) -> i64 {
        if self.playing {
            let elapsed = session_ns.saturating_sub(self.anchor_session_ns);
            self.anchor_position_ns.saturating_add(elapsed)
        } else {
            self.anchor_position_ns
        }
    }

    /// The mapping from session time to audio frames: the song position, in
    /// frames at `rate_hz`, that must leave the speaker at session time
    /// `session_ns` (both fractional: the engine steers to a fraction of a
    /// frame; `floor` gives the frame index). Not clamped to the song. The
    /// engine and everything that predicts what a peer plays use this one
    /// function.
    pub fn position_frames_at(&self, session_ns: f64, rate_hz: u32) -> f64 {
        let pos_ns = if self.playing {
            self.anchor_position_ns as f64 + (session_ns - self.anchor_session_ns as f64)
        } else {
            self.anchor_position_ns as f64
        };
        pos_ns * f64::from(rate_hz) / 1e9
    }
}

/// Nanoseconds to whole frames at `rate_hz`, rounded toward −∞ (saturating at
/// the ends of i64; a rate of 0 has no frames and gives 0).
pub fn ns_to_frames(ns: i64, rate_hz: u32) -> i64 {
    saturate((i128::from(ns) * i128::from(rate_hz)).div_euclid(NS_PER_SEC))
}

/// The start of frame `frames` at `rate_hz`, in nanoseconds, rounded up so that
/// `ns_to_frames(frames_to_ns(f, r), r) == f` (saturating; a rate of 0 gives 0).
pub fn frames_to_ns(frames: i64, rate_hz: u32) -> i64 {
    if rate_hz == 0 {
        return 0;
    }
    let rate = i128::from(rate_hz);
    saturate((i128::from(frames) * NS_PER_SEC + rate - 1).div_euclid(rate))
}

fn saturate(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// A fader: gain in dB (`-inf` is silence) and a mute switch.
///
/// Equality is bitwise (−0 dB ≠ +0 dB), like [`Event`]'s, so that two states are
/// equal exactly when their digests and encodings are.
#[derive(Clone, Copy, Debug)]
pub struct ChannelState {
    pub gain_db: f32,
    pub muted: bool,
}

impl PartialEq for ChannelState {
    fn eq(&self, other: &Self) -> bool {
        self.gain_db.to_bits() == other.gain_db.to_bits() && self.muted == other.muted
    }
}

impl Default for ChannelState {
    fn default() -> Self {
        ChannelState {
            gain_db: 0.0,
            muted: false,
        }
    }
}

/// ```text
/// | gain_db f32 (finite or −∞) | muted bool |
/// ```
impl Model for ChannelState {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_f32(check_gain_db(self.gain_db, "channel.gain_db")?);
        w.put_bool(self.muted);
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ChannelState {
            gain_db: check_gain_db(r.f32("channel.gain_db")?, "channel.gain_db")?,
            muted: r.bool("channel.muted")?,
        })
    }
}

/// Everything the peers agree on: the timeline and the shared mix.
///
/// Solo is deliberately not here: soloing is how one musician listens, not a
/// change to what the room hears, so it stays local to each peer.
#[derive(Clone, PartialEq, Debug)]
pub struct SessionState {
    pub timeline: Timeline,
    /// Length of the song; seeks are clamped into `[0, duration_ns]`.
    pub duration_ns: i64,
    /// The round whose decision last changed this state (`Round(0)` for a new
    /// session). When peers' states diverge (a partition), the later change wins.
    pub changed_round: Round,
    /// The "All" channel: applies on top of every stem.
    pub master: ChannelState,
    /// One per stem, indexed by `Channel::Stem(i)`.
    pub channels: Vec<ChannelState>,
}

impl SessionState {
    /// A paused session at the start of a song of `duration_ns` with `stems` stems
    /// at unity gain.
    pub fn new(duration_ns: i64, stems: usize) -> SessionState {
        SessionState {
            timeline: Timeline::default(),
            duration_ns: duration_ns.max(0),
            changed_round: Round(0),
            master: ChannelState::default(),
            channels: vec![ChannelState::default(); stems.min(MAX_STEMS)],
        }
    }

    /// Song position at session time `session_ns`, clamped into the song.
    pub fn position_ns_at(&self, session_ns: i64) -> i64 {
        self.timeline
            .position_ns_at(session_ns)
            .clamp(0, self.duration_ns.max(0))
    }

    /// The fader for `channel`, if the session has it.
    pub fn channel(&self, channel: Channel) -> Option<&ChannelState> {
        match channel {
            Channel::Master => Some(&self.master),
            Channel::Stem(i) => self.channels.get(usize::from(i)),
        }
    }

    pub(crate) fn channel_mut(&mut self, channel: Channel) -> Option<&mut ChannelState> {
        match channel {
            Channel::Master => Some(&mut self.master),
            Channel::Stem(i) => self.channels.get_mut(usize::from(i)),
        }
    }

    /// A 64-bit digest of the state (FNV-1a over its fields, big-endian, in wire
    /// order), the same on every peer and platform. Heartbeats carry it so peers
    /// notice when their states diverge.
    pub fn digest(&self) -> u64 {
        let mut h = Fnv1a64::new();
        h.write(&[u8::from(self.timeline.playing)]);
        h.write(&self.timeline.anchor_position_ns.to_be_bytes());
        h.write(&self.timeline.anchor_session_ns.to_be_bytes());
        h.write(&self.duration_ns.to_be_bytes());
        h.write(&self.changed_round.0.to_be_bytes());
        for ch in std::iter::once(&self.master).chain(&self.channels) {
            h.write(&ch.gain_db.to_bits().to_be_bytes());
            h.write(&[u8::from(ch.muted)]);
        }
        h.finish()
    }
}

/// The parts of a state that belong to the song, not to any vote: no decision
/// changes them, so a state from another peer must have the same.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Shape {
    pub duration_ns: i64,
    pub channels: usize,
}

/// Why a state from another peer cannot be this session's.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum InvalidState {
    #[error("the song is {got_ns} ns long, the session's {want_ns} ns")]
    Duration { got_ns: i64, want_ns: i64 },
    #[error("{got} channels, the session has {want}")]
    Channels { got: usize, want: usize },
    #[error("a song longer than the longest stem allowed ({got_ns} ns)")]
    TooLong { got_ns: i64 },
    #[error("a gain above +{MAX_GAIN_DB} dB, which no vote can decide")]
    Gain,
    #[error("the playhead's anchor is outside the song or after the state's round")]
    Anchor,
    #[error("changed in round {changed}, after its own round {round}")]
    ChangedLater { changed: u64, round: u64 },
}

impl SessionState {
    /// The song's part of the state.
    pub fn shape(&self) -> Shape {
        Shape {
            duration_ns: self.duration_ns,
            channels: self.channels.len(),
        }
    }

    /// Checks a state received as decided for `round` (a snapshot): that the
    /// choice function could have produced it — gains no vote can reach, a
    /// change after its own round, an anchor after the round's apply instant
    /// `apply_at_ns` — and that its song is `shape`, when the session knows
    /// it. Decoding has already refused a negative duration and an anchor
    /// outside the song.
    pub fn check(
        &self,
        round: Round,
        apply_at_ns: i64,
        shape: Option<Shape>,
    ) -> Result<(), InvalidState> {
        if self.changed_round > round {
            return Err(InvalidState::ChangedLater {
                changed: self.changed_round.0,
                round: round.0,
            });
        }
        let longest_ns = crate::protocol::stem::MAX_STEM_SECS as i64 * NS_PER_SEC as i64;
        if self.duration_ns > longest_ns {
            return Err(InvalidState::TooLong {
                got_ns: self.duration_ns,
            });
        }
        if let Some(want) = shape {
            if self.duration_ns != want.duration_ns {
                return Err(InvalidState::Duration {
                    got_ns: self.duration_ns,
                    want_ns: want.duration_ns,
                });
            }
            if self.channels.len() != want.channels {
                return Err(InvalidState::Channels {
                    got: self.channels.len(),
                    want: want.channels,
                });
            }
        }
        let loud = |c: &ChannelState| c.gain_db > MAX_GAIN_DB;
        if loud(&self.master) || self.channels.iter().any(loud) {
            return Err(InvalidState::Gain);
        }
        let t = &self.timeline;
        if !(0..=self.duration_ns).contains(&t.anchor_position_ns)
            || !(0..=apply_at_ns).contains(&t.anchor_session_ns)
        {
            return Err(InvalidState::Anchor);
        }
        Ok(())
    }
}

struct Fnv1a64(u64);

impl Fnv1a64 {
    fn new() -> Self {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// ```text
/// | playing bool | anchor_position_ns i64 | anchor_session_ns i64 | duration_ns i64 |
/// | changed_round u64 | master ChannelState | channels list<ChannelState> (≤ MAX_STEMS) |
/// ```
/// Decoding refuses a negative duration and an anchor outside the song.
impl Model for SessionState {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_bool(self.timeline.playing);
        w.put_i64(self.timeline.anchor_position_ns);
        w.put_i64(self.timeline.anchor_session_ns);
        w.put_i64(self.duration_ns);
        self.changed_round.encode(w)?;
        self.master.encode(w)?;
        w.put_list(&self.channels, MAX_STEMS, "state.channels")
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let timeline = Timeline {
            playing: r.bool("state.playing")?,
            anchor_position_ns: r.i64("state.anchor_position_ns")?,
            anchor_session_ns: r.i64("state.anchor_session_ns")?,
        };
        let duration_ns = r.i64("state.duration_ns")?;
        if duration_ns < 0 {
            return Err(WireError::Invalid {
                field: "state.duration_ns",
                reason: "negative duration",
            });
        }
        if !(0..=duration_ns).contains(&timeline.anchor_position_ns) {
            return Err(WireError::Invalid {
                field: "state.anchor_position_ns",
                reason: "anchor outside the song",
            });
        }
        Ok(SessionState {
            timeline,
            duration_ns,
            changed_round: r.get_as("state.changed_round")?,
            master: r.get()?,
            channels: r.list(MAX_STEMS, "state.channels")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Session time maps to frames through the timeline, at any rate, exactly.
    #[test]
    fn session_time_maps_to_frames() {
        let t = Timeline {
            playing: true,
            anchor_position_ns: 1_000_000_000,
            anchor_session_ns: 5_000_000_000,
        };
        let frame = |t: &Timeline, session_ns: i64, rate| {
            t.position_frames_at(session_ns as f64, rate).floor() as i64
        };
        assert_eq!(frame(&t, 5_000_000_000, 48_000), 48_000);
        assert_eq!(frame(&t, 5_500_000_000, 48_000), 72_000);
        assert_eq!(frame(&t, 5_500_000_000, 44_100), 66_150);
        // One nanosecond before a frame boundary is still the previous frame.
        assert_eq!(frame(&t, 5_000_000_000 + 20_833, 48_000), 48_000);
        assert_eq!(frame(&t, 5_000_000_000 + 20_834, 48_000), 48_001);
        // Between nanoseconds, a fraction of a frame.
        let half = t.position_frames_at(5_000_000_000.0 + 1e9 / 96_000.0, 48_000);
        assert!((half - 48_000.5).abs() < 1e-6, "{half}");
        let paused = Timeline {
            playing: false,
            ..t
        };
        assert_eq!(frame(&paused, 9_000_000_000, 48_000), 48_000);
        assert_eq!(ns_to_frames(-1, 48_000), -1);
    }

    /// frames_to_ns is the exact inverse of ns_to_frames on frame boundaries.
    #[test]
    fn frames_and_ns_invert() {
        for rate in [8_000, 44_100, 48_000, 96_000, 192_000] {
            for f in [-48_001i64, -1, 0, 1, 441, 48_000, 1 << 40] {
                assert_eq!(
                    ns_to_frames(frames_to_ns(f, rate), rate),
                    f,
                    "rate {rate} frame {f}"
                );
            }
        }
    }

    /// Rounds tile session time.
    #[test]
    fn rounds_tile_session_time() {
        assert_eq!(Round::containing(0), Round(0));
        assert_eq!(Round::containing(ROUND_NS - 1), Round(0));
        assert_eq!(Round::containing(ROUND_NS), Round(1));
        assert_eq!(Round::containing(-5), Round(0));
        assert_eq!(Round(7).start_session_ns(), 7 * ROUND_NS);
    }

    /// The digest tells states apart and is stable across runs and platforms.
    #[test]
    fn digest_is_stable_and_discriminating() {
        let a = SessionState::new(1_000, 2);
        let mut b = a.clone();
        b.channels[1].muted = true;
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), a.clone().digest());
        // Pinned: a change here changes what peers compare on the wire (it last
        // changed when `changed_round` joined the state, protocol version 2).
        assert_eq!(a.digest(), 0x4e3f_61ad_e3f0_a684);
    }
}
