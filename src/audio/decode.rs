//! Decoding a stem file into the engine's format: interleaved stereo f32 at the
//! engine rate, whole, in memory.
//!
//! Symphonia decodes (WAV, AIFF, FLAC, MP3, OGG/Vorbis, M4A/AAC; Opus through
//! libopus, [`codecs`]); rubato's FFT
//! resampler ([`super::resample`]) converts the rate when it differs. A file whose rate already
//! matches is not resampled, so its samples reach the mixer untouched. Mono is
//! played on both sides; more channels are downmixed ([`super::downmix`]).
//! This runs on a loader thread, never in the output callback.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use super::CHANNELS;
use super::downmix::Downmix;
use super::resample::frames_at;

/// The longest stem accepted, in seconds (streamed, it costs no more memory
/// than a short one).
pub use crate::protocol::stem::MAX_STEM_SECS;

/// The longest file decoded whole into memory ([`decode_file`]: `render`
/// and tests), in seconds: 15 min of 48 kHz stereo f32 is 346 MB.
pub const MAX_DECODED_SECS: u64 = 15 * 60;

/// A decoded stem, ready for the mixer.
#[derive(Clone, Debug)]
pub struct StemAudio {
    /// The file's stem name ("drums" for `drums.flac`).
    pub name: String,
    /// Interleaved stereo at `rate_hz`.
    pub samples: Arc<[f32]>,
    pub rate_hz: u32,
    /// The file's own rate and channel count, before conversion.
    pub source_rate_hz: u32,
    pub source_channels: usize,
    /// The file it was decoded from (none for generated audio): what this
    /// peer serves to others.
    pub path: Option<PathBuf>,
}

impl StemAudio {
    /// `frames` frames of silence at the engine rate (tests, placeholders).
    pub fn silence(name: &str, frames: usize) -> StemAudio {
        StemAudio::from_interleaved(name, super::ENGINE_RATE_HZ, vec![0.0; frames * CHANNELS])
    }

    pub fn frames(&self) -> usize {
        self.samples.len() / CHANNELS
    }

    /// A stem from samples already in the engine's format (generated audio,
    /// tests).
    pub fn from_interleaved(name: &str, rate_hz: u32, samples: Vec<f32>) -> StemAudio {
        StemAudio {
            name: name.to_string(),
            samples: samples.into(),
            rate_hz,
            source_rate_hz: rate_hz,
            source_channels: CHANNELS,
            path: None,
        }
    }
}

/// Why a file could not become a stem. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{path}: cannot open: {cause}")]
    Open {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: not a supported audio file ({reason})")]
    Unsupported { path: PathBuf, reason: String },
    #[error("{path}: corrupt or truncated audio ({reason})")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: holds no audio")]
    Empty { path: PathBuf },
    #[error("{path}: longer than the {max_secs} s allowed")]
    TooLong { path: PathBuf, max_secs: u64 },
    #[error("{path}: cannot resample from {from_hz} Hz to {to_hz} Hz: {reason}")]
    Resample {
        path: PathBuf,
        from_hz: u32,
        to_hz: u32,
        reason: String,
    },
}

/// File extensions taken as audio when a folder of stems is expanded.
pub const AUDIO_EXTENSIONS: [&str; 12] = [
    "wav", "flac", "mp3", "ogg", "oga", "opus", "m4a", "aac", "mp4", "aif", "aiff", "aifc",
];

/// Whether `path` has an audio file extension.
pub fn is_audio_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Symphonia's decoders, and Opus through libopus (symphonia has none).
pub fn codecs() -> &'static symphonia::core::codecs::registry::CodecRegistry {
    static CODECS: std::sync::OnceLock<symphonia::core::codecs::registry::CodecRegistry> =
        std::sync::OnceLock::new();
    CODECS.get_or_init(|| {
        let mut r = symphonia::core::codecs::registry::CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut r);
        r.register_audio_decoder::<symphonia_adapter_libopus::OpusDecoder>();
        r
    })
}

/// Source sample rates accepted: a rate outside this is a damaged or hostile
/// header, and would make the resampler's buffers or the length cap absurd.
pub const SOURCE_RATES_HZ: std::ops::RangeInclusive<u32> = 8_000..=192_000;

/// The stem name of a file: its file name without the extension.
pub fn stem_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn open(path: &Path) -> Result<File, DecodeError> {
    File::open(path).map_err(|cause| DecodeError::Open {
        path: path.to_path_buf(),
        cause,
    })
}

/// Decodes `path` whole into interleaved stereo f32 at `rate_hz`.
pub fn decode_file(path: &Path, rate_hz: u32) -> Result<StemAudio, DecodeError> {
    let file = open(path)?;
    let mut audio = decode_source(path, Box::new(file), rate_hz)?;
    audio.path = Some(path.to_path_buf());
    Ok(audio)
}

/// Decodes a file's bytes from any source (a fetched stem in memory);
/// `path` names it in errors and gives the format hint.
pub fn decode_source(
    path: &Path,
    source: Box<dyn MediaSource>,
    rate_hz: u32,
) -> Result<StemAudio, DecodeError> {
    let (samples, source_rate_hz, source_channels) = decode_stereo(path, source)?;
    let samples = if source_rate_hz == rate_hz {
        samples
    } else {
        resample(path, &samples, source_rate_hz, rate_hz)?
    };
    Ok(StemAudio {
        name: stem_name(path),
        samples: samples.into(),
        rate_hz,
        source_rate_hz,
        source_channels,
        path: None,
    })
}

/// Decodes to interleaved stereo at the file's own rate.
fn decode_stereo(
    path: &Path,
    source: Box<dyn MediaSource>,
) -> Result<(Vec<f32>, u32, usize), DecodeError> {
    let mut out: Vec<f32> = Vec::new();
    let walked = walk(path, source, |frames, downmix, rate| {
        let channels = downmix.channels();
        if out.len() / CHANNELS + frames.len() / channels
            > MAX_DECODED_SECS as usize * rate as usize
        {
            return Err(DecodeError::TooLong {
                path: path.to_path_buf(),
                max_secs: MAX_DECODED_SECS,
            });
        }
        out.reserve(frames.len() / channels * CHANNELS);
        for frame in frames.chunks_exact(channels) {
            let (left, right) = downmix.frame(frame);
            out.push(left);
            out.push(right);
        }
        Ok(())
    })?;
    if let Some((have, of)) = walked.truncated {
        tracing::warn!("{}", truncation(path, have, of, walked.rate_hz));
    }
    Ok((out, walked.rate_hz, walked.channels))
}

/// What a truncated file says: how much of it plays.
pub fn truncation(path: &Path, have_frames: u64, of_frames: u64, rate_hz: u32) -> String {
    let secs = |f: u64| f as f64 / f64::from(rate_hz.max(1));
    format!(
        "{}: truncated: it plays the {:.2} s there are, of {:.2} s",
        path.display(),
        secs(have_frames),
        secs(of_frames)
    )
}

/// What a file holds, learned by decoding it without keeping its samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub source_rate_hz: u32,
    pub source_channels: usize,
    /// Frames at the file's own rate.
    pub source_frames: u64,
    /// Frames once converted to `rate_hz` (as [`decode_file`] would give).
    pub frames: u64,
    /// The file ends before the length its header says: the frames there
    /// are, of the frames it says (at its own rate). It plays what is there.
    pub truncated: Option<(u64, u64)>,
}

/// Decodes `path` through, keeping nothing: whether it is audio synfony
/// plays, and how long. Memory does not grow with the file's length.
pub fn probe_file(path: &Path, rate_hz: u32) -> Result<Probe, DecodeError> {
    peaks_file(path, rate_hz, 0).map(|(probe, _)| probe)
}

/// [`probe_file`], keeping the peak (of either side, after the downmix) of
/// every `1/peaks_per_sec` s: a waveform overview without the samples
/// (none when `peaks_per_sec` is 0).
pub fn peaks_file(
    path: &Path,
    rate_hz: u32,
    peaks_per_sec: u32,
) -> Result<(Probe, Vec<f32>), DecodeError> {
    let file = open(path)?;
    let mut peaks = Vec::new();
    let (mut peak, mut in_bucket) = (0f32, 0u64);
    let w = walk(path, Box::new(file), |frames, downmix, rate| {
        if peaks_per_sec == 0 {
            return Ok(());
        }
        let bucket = u64::from((rate / peaks_per_sec).max(1));
        for frame in frames.chunks_exact(downmix.channels()) {
            let (l, r) = downmix.frame(frame);
            peak = peak.max(l.abs()).max(r.abs());
            in_bucket += 1;
            if in_bucket == bucket {
                peaks.push(peak);
                (peak, in_bucket) = (0.0, 0);
            }
        }
        Ok(())
    })?;
    if in_bucket > 0 {
        peaks.push(peak);
    }
    let probe = Probe {
        source_rate_hz: w.rate_hz,
        source_channels: w.channels,
        source_frames: w.frames,
        truncated: w.truncated,
        frames: frames_at(w.frames, w.rate_hz, rate_hz),
    };
    Ok((probe, peaks))
}

/// What a file holds, as [`probe_file`] says, without decoding it through
/// where its header says exactly: a PCM file's or a FLAC's length is a
/// count, not an estimate (taken only if its last frame decodes, so a
/// truncated file is walked and found out). Longer than [`MAX_STEM_SECS`] is
/// refused. This is how a stem streamed from disk starts: in milliseconds.
pub fn probe_quick(path: &Path, rate_hz: u32) -> Result<Probe, DecodeError> {
    let probe = match header_probe(path) {
        Some((source_rate_hz, source_channels, source_frames)) => Probe {
            source_rate_hz,
            source_channels,
            source_frames,
            truncated: None,
            frames: frames_at(source_frames, source_rate_hz, rate_hz),
        },
        None => probe_file(path, rate_hz)?,
    };
    if probe.source_frames > MAX_STEM_SECS * u64::from(probe.source_rate_hz) {
        return Err(DecodeError::TooLong {
            path: path.to_path_buf(),
            max_secs: MAX_STEM_SECS,
        });
    }
    Ok(probe)
}

/// The rate, channels and frames a PCM or FLAC file's header gives, if its
/// last frame is there; `None` otherwise (or on any doubt).
fn header_probe(path: &Path) -> Option<(u32, usize, u64)> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    if !["wav", "wave", "aif", "aiff", "aifc", "flac"].contains(&ext.as_str()) {
        return None;
    }
    let mut format = open_format(Box::new(File::open(path).ok()?), Some(&ext)).ok()?;
    let track = format.default_track(TrackType::Audio)?;
    let (track_id, frames) = (track.id, track.num_frames?);
    let params = track.codec_params.as_ref()?.audio()?.clone();
    let rate = params.sample_rate.filter(|r| SOURCE_RATES_HZ.contains(r))?;
    let channels = params.channels.as_ref()?.count();
    if frames == 0 || channels == 0 {
        return None;
    }
    let mut decoder = codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .ok()?;
    format
        .seek(
            symphonia::core::formats::SeekMode::Accurate,
            symphonia::core::formats::SeekTo::Timestamp {
                ts: symphonia::core::units::Timestamp::new(frames as i64 - 1),
                track_id,
            },
        )
        .ok()?;
    loop {
        let packet = format.next_packet().ok()??;
        if packet.track_id == track_id {
            let decoded = decoder.decode(&packet).ok()?;
            return (decoded.frames() > 0).then_some((rate, channels, frames));
        }
    }
}

impl Probe {
    /// What a song's entry says of a stem: its length at the engine rate
    /// (the file's own rate and layout are the decoder's business).
    pub fn of_song(frames: u64) -> Probe {
        Probe {
            source_rate_hz: super::ENGINE_RATE_HZ,
            source_channels: super::CHANNELS,
            source_frames: frames,
            frames,
            truncated: None,
        }
    }
}

/// The container of `source` opened by symphonia, `ext` (a file extension,
/// or a stem's format tag) as its hint.
pub(crate) fn open_format(
    source: Box<dyn MediaSource>,
    ext: Option<&str>,
) -> Result<Box<dyn symphonia::core::formats::FormatReader>, SymphoniaError> {
    let mut hint = Hint::new();
    if let Some(ext) = ext {
        hint.with_extension(ext);
    }
    let mss = MediaSourceStream::new(source, Default::default());
    symphonia::default::get_probe().probe(
        &hint,
        mss,
        FormatOptions::default(),
        MetadataOptions::default(),
    )
}

/// What [`walk`] found: the file's rate and channel count, the frames it
/// gave, and (frames there, frames said) if it ends before its header says.
struct Walked {
    rate_hz: u32,
    channels: usize,
    frames: u64,
    truncated: Option<(u64, u64)>,
}

/// Decodes every packet of `source`'s audio track, giving each block of
/// interleaved samples (with its layout's downmix and rate) to `block`.
/// Damaged packets are
/// skipped, as players do; a file of nothing but damage, with no audio, or
/// whose format changes midway is refused.
fn walk(
    path: &Path,
    source: Box<dyn MediaSource>,
    mut block: impl FnMut(&[f32], &Downmix, u32) -> Result<(), DecodeError>,
) -> Result<Walked, DecodeError> {
    let unsupported = |reason: String| DecodeError::Unsupported {
        path: path.to_path_buf(),
        reason,
    };
    let corrupt = |reason: String| DecodeError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut source = source;
    // An MP4's encoder priming and padding, applied below (symphonia does not).
    let edit = super::mp4::edit_of(&mut source);
    let ext = path.extension().and_then(|e| e.to_str());
    let mut format = open_format(source, ext).map_err(|e| match e {
        SymphoniaError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Empty {
                path: path.to_path_buf(),
            }
        }
        other => unsupported(other.to_string()),
    })?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| unsupported("no audio track".into()))?;
    let track_id = track.id;
    let said_frames = track.num_frames;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| unsupported("no audio codec parameters".into()))?;
    let mut decoder = codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| unsupported(e.to_string()))?;

    let mut packet_buf: Vec<f32> = Vec::new();
    let mut spec: Option<(u32, usize)> = None;
    let mut downmix = Downmix::default(); // set by the first packet
    let mut bad_packets = 0usize;
    let mut good_packets = 0usize;
    let mut frames = 0u64;
    // Frames decoded, before the edit's trimming.
    let mut decoded = 0u64;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // Some demuxers report the end of a stream as an unexpected EOF.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                if good_packets == 0 {
                    return Err(corrupt("the file ends before any audio".into()));
                }
                break;
            }
            Err(SymphoniaError::ResetRequired) => {
                return Err(unsupported("the stream changes format midway".into()));
            }
            Err(SymphoniaError::Unsupported(what)) => return Err(unsupported(what.into())),
            Err(e) => return Err(corrupt(e.to_string())),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            Err(SymphoniaError::DecodeError(_)) => {
                bad_packets += 1;
                continue;
            }
            Err(SymphoniaError::Unsupported(what)) => return Err(unsupported(what.into())),
            Err(e) => return Err(corrupt(e.to_string())),
        };
        let this = (buf.spec().rate(), buf.spec().channels().count());
        match spec {
            None => {
                if this.1 == 0 {
                    return Err(corrupt("zero channels".into()));
                }
                if !SOURCE_RATES_HZ.contains(&this.0) {
                    return Err(unsupported(format!("a sample rate of {} Hz", this.0)));
                }
                spec = Some(this);
                downmix = Downmix::new(buf.spec().channels(), this.1);
            }
            Some(s) if s != this => {
                return Err(unsupported(format!(
                    "the stream changes from {} Hz × {} to {} Hz × {} midway",
                    s.0, s.1, this.0, this.1
                )));
            }
            Some(_) => {}
        }
        good_packets += 1;
        let rate = this.0;
        packet_buf.resize(buf.samples_interleaved(), 0.0);
        buf.copy_to_slice_interleaved(&mut packet_buf[..]);
        // The part of this block the edit presents.
        let n = buf.frames() as u64;
        let (first, last) = match edit {
            Some(e) => {
                let skip = e.skip_frames(rate);
                let end = e
                    .keep_frames(rate)
                    .map_or(u64::MAX, |k| skip.saturating_add(k));
                (
                    skip.clamp(decoded, decoded + n),
                    end.clamp(decoded, decoded + n),
                )
            }
            None => (decoded, decoded + n),
        };
        decoded += n;
        if last > first {
            let ch = this.1;
            let kept = &packet_buf
                [(first - (decoded - n)) as usize * ch..(last - (decoded - n)) as usize * ch];
            frames += last - first;
            block(kept, &downmix, rate)?;
        }
    }
    let Some((rate, channels)) = spec else {
        return Err(if bad_packets > 0 {
            corrupt(format!("all {bad_packets} packets failed to decode"))
        } else {
            DecodeError::Empty {
                path: path.to_path_buf(),
            }
        });
    };
    if frames == 0 {
        return Err(DecodeError::Empty {
            path: path.to_path_buf(),
        });
    }
    // A packet's worth of slack: some headers round the length.
    let truncated = said_frames
        .filter(|&said| edit.is_none() && decoded + 2048 < said)
        .map(|said| (decoded, said));
    Ok(Walked {
        rate_hz: rate,
        channels,
        frames,
        truncated,
    })
}

/// Converts interleaved stereo from `from_hz` to `to_hz` (the whole file
/// at once, through the same resampler a streamed stem uses).
fn resample(path: &Path, input: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>, DecodeError> {
    let err = |reason: String| DecodeError::Resample {
        path: path.to_path_buf(),
        from_hz,
        to_hz,
        reason,
    };
    let mut resampler = super::resample::StreamResampler::new(from_hz, to_hz).map_err(err)?;
    let frames_in = input.len() / CHANNELS;
    let mut output =
        Vec::with_capacity(frames_at(frames_in as u64, from_hz, to_hz) as usize * CHANNELS);
    let mut take = |l: f32, r: f32| {
        output.push(l);
        output.push(r);
    };
    resampler.push(input, &mut take).map_err(err)?;
    resampler.finish(&mut take).map_err(err)?;
    Ok(output)
}
