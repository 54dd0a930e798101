//! Offline mixdown (`synfony render`): the live engine's code, driven by a
//! virtual clock instead of a device, at exactly unity rate. The user's "export
//! the mix", and how tests check the mixer against an independent computation.
//! Its stems come from [`super::load`], as the peer's do.

use std::path::{Path, PathBuf};

use crate::protocol::{MAX_STEMS, SessionMap, Timeline};

use super::CHANNELS;
use super::decode::StemAudio;
use super::engine::{Engine, MixGains, Scheduled, db_to_gain};
use super::streamer::Streamer;

/// What to render.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderSpec {
    /// Gain in dB per stem index (absent: 0 dB). −∞ allowed, NaN refused.
    pub gains_db: Vec<(StemRef, f32)>,
    pub muted: Vec<StemRef>,
    pub from_secs: f64,
    /// `None`: to the end of the longest stem.
    pub to_secs: Option<f64>,
    pub rate_hz: u32,
}

impl Default for RenderSpec {
    fn default() -> Self {
        RenderSpec {
            gains_db: Vec::new(),
            muted: Vec::new(),
            from_secs: 0.0,
            to_secs: None,
            rate_hz: super::ENGINE_RATE_HZ,
        }
    }
}

/// A stem named on the command line: by file stem name or by index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StemRef {
    Index(usize),
    Name(String),
}

impl StemRef {
    pub fn parse(s: &str) -> StemRef {
        s.parse()
            .map_or_else(|_| StemRef::Name(s.to_string()), StemRef::Index)
    }

    fn resolve(&self, stems: &[StemAudio]) -> Result<usize, RenderError> {
        let found = match self {
            StemRef::Index(i) => (*i < stems.len()).then_some(*i),
            StemRef::Name(n) => stems.iter().position(|s| &s.name == n),
        };
        found.ok_or_else(|| RenderError::NoSuchStem {
            stem: match self {
                StemRef::Index(i) => i.to_string(),
                StemRef::Name(n) => n.clone(),
            },
            known: stems
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("no stems to render")]
    NoStems,
    #[error("more than {MAX_STEMS} stems")]
    TooManyStems,
    #[error("no stem {stem:?} (stems: {known})")]
    NoSuchStem { stem: String, known: String },
    #[error("gain for {stem:?} is not a number")]
    BadGain { stem: String },
    #[error("--from {from} and --to {to} give no audio")]
    EmptyRange { from: f64, to: f64 },
    #[error("{path}: cannot write: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// Mixes `stems` as `spec` says into interleaved stereo f32.
pub fn render(stems: &[StemAudio], spec: &RenderSpec) -> Result<Vec<f32>, RenderError> {
    if stems.is_empty() {
        return Err(RenderError::NoStems);
    }
    if stems.len() > MAX_STEMS {
        return Err(RenderError::TooManyStems);
    }
    let mut gains = MixGains::UNITY;
    for (stem, db) in &spec.gains_db {
        let i = stem.resolve(stems)?;
        if db.is_nan() {
            return Err(RenderError::BadGain {
                stem: stems[i].name.clone(),
            });
        }
        gains.stems[i] = db_to_gain(*db);
    }
    for stem in &spec.muted {
        gains.stems[stem.resolve(stems)?] = 0.0;
    }
    let rate = spec.rate_hz as f64;
    let longest = stems.iter().map(|s| s.frames()).max().unwrap_or(0) as f64 / rate;
    // Past the longest stem there is only silence: the range ends there.
    let to = spec.to_secs.map_or(longest, |t| t.min(longest));
    let from = spec.from_secs.max(0.0);
    let frames = ((to - from) * rate).round();
    if frames.is_nan() || frames < 1.0 {
        return Err(RenderError::EmptyRange { from, to });
    }
    let frames = frames as usize;
    let streamers = stems.iter().map(Streamer::local).collect();
    let (engine, mut handle, mut retired) = Engine::new(streamers, spec.rate_hz);
    let mut engine = engine.offline();
    // Local time is session time; the song plays from `from` at session 0.
    let identity = SessionMap {
        anchor_local_ns: 0,
        anchor_session_ns: 0,
        rate: 0.0,
    };
    let queued = handle.set_map(identity).and_then(|()| {
        handle.schedule_raw(Scheduled {
            apply_at_session_ns: i64::MIN,
            timeline: Timeline {
                playing: true,
                anchor_position_ns: (from * 1e9).round() as i64,
                anchor_session_ns: 0,
            },
            gains,
        })
    });
    debug_assert!(queued.is_ok(), "a fresh engine's queue has room");
    let mut out = vec![0.0f32; frames * CHANNELS];
    const BLOCK: usize = 4096;
    for (k, block) in out.chunks_mut(BLOCK * CHANNELS).enumerate() {
        let t_ns = ((k * BLOCK) as f64 * 1e9 / rate).round() as i64;
        engine.render(block, t_ns);
    }
    retired.collect();
    Ok(out)
}

/// Writes interleaved stereo f32 as a 32-bit float WAV.
pub fn write_wav(path: &Path, samples: &[f32], rate_hz: u32) -> Result<(), RenderError> {
    let err = |e: hound::Error| RenderError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let spec = hound::WavSpec {
        channels: CHANNELS as u16,
        sample_rate: rate_hz,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
    for &s in samples {
        w.write_sample(s).map_err(err)?;
    }
    w.finalize().map_err(err)
}
