//! A remote stem's decoder: turns the encoded bytes in a [`StemStore`] into
//! the engine's samples in a [`RemoteStem`], around the playhead.
//!
//! One thread per remote stem. It decodes the window ahead of the playhead
//! (or of a seek target not yet applied: the *hint*), chunk by chunk on the
//! timeline, and sleeps when the window is full. When the target jumps
//! elsewhere it reopens the file and seeks (symphonia), reading through the
//! store: a read of a chunk that has not arrived blocks this thread and makes
//! that chunk the fetcher's first, and is abandoned if the target moves
//! again. The audio thread never waits for any of it: a PCM chunk not yet
//! decoded plays as silence and flags the stem *buffering*.
//!
//! Positions follow the whole-file decoder: frame `n` of the stream is the
//! `n`-th frame the decoder yields from the start (packet timestamps are taken
//! relative to the first packet's), so a remote stem and a local copy of the
//! same intact file play the same samples at the same frames. (A damaged
//! packet is silence here, by its timestamp, but is dropped by the whole-file
//! decoder, which joins the audio either side: after damage, the two differ.)
//!
//! Files not at the engine rate are decoded whole once complete (streaming
//! through the resampler is not done yet).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::units::Timestamp;
use tracing::{debug, warn};

use super::store::{StemStore, StoreReader};
use crate::audio::downmix::Downmix;
use crate::audio::engine::EngineStats;
use crate::audio::streamer::CHUNK_FRAMES;
use crate::audio::{CHANNELS, ENGINE_RATE_HZ, RemoteStem};

/// Where the music is, for the decoders: the engine's playhead and the target
/// of a seek voted but not yet applied.
pub struct Playhead {
    pub stats: Arc<EngineStats>,
    /// Frames; negative: none.
    seek_hint_frames: AtomicI64,
}

impl Playhead {
    pub fn new(stats: Arc<EngineStats>) -> Playhead {
        Playhead {
            stats,
            seek_hint_frames: AtomicI64::new(-1),
        }
    }

    pub fn set_seek_hint(&self, frames: Option<i64>) {
        self.seek_hint_frames
            .store(frames.map_or(-1, |f| f.max(0)), Ordering::Relaxed);
    }

    pub fn seek_hint(&self) -> Option<i64> {
        let h = self.seek_hint_frames.load(Ordering::Relaxed);
        (h >= 0).then_some(h)
    }

    fn pos_frames(&self) -> i64 {
        self.stats.pos_frames.load(Ordering::Relaxed).max(0)
    }
}

/// Starts the decoder thread of one remote stem. It ends when the store is
/// closed.
pub fn spawn(
    store: Arc<StemStore>,
    pcm: Arc<RemoteStem>,
    playhead: Arc<Playhead>,
    window_frames: i64,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        // Named by hash: a stem's name is a peer's text (it may hold a NUL).
        .name(format!("synfony-stem-{}", &store.info.hex()[..12]))
        .spawn(move || {
            Decoder {
                store,
                pcm,
                playhead,
                window_frames: window_frames.max(CHUNK_FRAMES as i64),
                position: Arc::new(AtomicI64::new(0)),
            }
            .run()
        })
}

struct Decoder {
    store: Arc<StemStore>,
    pcm: Arc<RemoteStem>,
    playhead: Arc<Playhead>,
    window_frames: i64,
    /// The frame the open stream decodes next (read by the abort check).
    position: Arc<AtomicI64>,
}

/// What to decode next: the first chunk not yet decoded in the window after
/// the seek hint, else after the playhead.
fn next_target(pcm: &RemoteStem, playhead: &Playhead, window_frames: i64) -> Option<usize> {
    let window = (window_frames as usize).div_ceil(CHUNK_FRAMES);
    let from = |frame: i64| {
        let first = frame.max(0) as usize / CHUNK_FRAMES;
        (first..(first + window).min(pcm.chunks())).find(|&c| !pcm.is_ready(c))
    };
    playhead
        .seek_hint()
        .and_then(from)
        .or_else(|| from(playhead.pos_frames()))
}

/// Whether a stream decoding at frame `position` should drop what it does
/// and go to chunk `target` instead: it has passed the chunk without
/// completing it, or would have to decode through more than two chunks to
/// reach it.
fn off_course(position: i64, target: usize) -> bool {
    let start = (target * CHUNK_FRAMES) as i64;
    position > start + CHUNK_FRAMES as i64 || start - position > 2 * CHUNK_FRAMES as i64
}

/// The longest run of missing frames filled with silence (longer: the
/// stream jumped, and decoding follows it).
const MAX_GAP_FRAMES: i64 = 10 * ENGINE_RATE_HZ as i64;

enum Step {
    More,
    End,
}

impl Decoder {
    fn run(self) {
        if self.store.info.frames == 0 {
            return;
        }
        let mut open: Option<Stream> = None;
        // Consecutive failures (to open, or to decode): each waits twice as
        // long as the last, up to about a second, so a file that cannot be
        // decoded costs little.
        let mut failures = 0u32;
        let backoff = |failures: u32| Duration::from_millis(10 << failures.min(7));
        while !self.store.is_closed() {
            let Some(target) = next_target(&self.pcm, &self.playhead, self.window_frames) else {
                open = open.filter(|s| !s.ended);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            if open
                .as_ref()
                .is_none_or(|s| s.ended || off_course(s.next_frame, target))
            {
                open = match self.open_at(target) {
                    Ok(s) => Some(s),
                    Err(OpenError::NotEngineRate) => return self.decode_whole(),
                    Err(OpenError::Failed(e)) => {
                        if !self.store.is_closed() {
                            debug!(stem = %self.store.info.name, "reopening: {e}");
                            std::thread::sleep(backoff(failures));
                            failures += 1;
                        }
                        None
                    }
                };
                continue;
            }
            let Some(s) = open.as_mut() else { continue };
            match s.step(&self.pcm) {
                Ok(Step::More) => {
                    failures = 0;
                    self.position.store(s.next_frame, Ordering::Relaxed)
                }
                Ok(Step::End) => {
                    s.finish(&self.pcm);
                    s.ended = true;
                }
                Err(e) => {
                    debug!(stem = %self.store.info.name, "stream interrupted: {e}");
                    open = None;
                    std::thread::sleep(backoff(failures));
                    failures += 1;
                }
            }
        }
    }

    /// Opens the file and positions it at chunk `target`.
    fn open_at(&self, target: usize) -> Result<Stream, OpenError> {
        let target_frame = (target * CHUNK_FRAMES) as i64;
        // Start the abort check from the target, not from the old stream.
        self.position.store(target_frame, Ordering::Relaxed);
        let (pcm, playhead, window, position) = (
            self.pcm.clone(),
            self.playhead.clone(),
            self.window_frames,
            self.position.clone(),
        );
        let abort = Box::new(move || {
            next_target(&pcm, &playhead, window)
                .is_some_and(|t| off_course(position.load(Ordering::Relaxed), t))
        });
        let reader = StoreReader::new(self.store.clone(), abort);
        let mut s = Stream::open(reader, &self.store.info.format)?;
        if target_frame > 0 {
            s.seek(target_frame).map_err(OpenError::Failed)?;
        }
        Ok(s)
    }

    /// The fallback for files the stream cannot take: wait for the whole
    /// file, decode it at once (resampling), fill every chunk.
    fn decode_whole(&self) {
        while !self.store.is_complete() {
            if self.store.is_closed() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let Ok(bytes) = self.store.verified() else {
            return;
        };
        let info = &self.store.info;
        let name = format!("{}.{}", info.name, info.format);
        let source = Box::new(std::io::Cursor::new(bytes));
        match crate::audio::decode::decode_source(
            std::path::Path::new(&name),
            source,
            ENGINE_RATE_HZ,
        ) {
            Ok(audio) => {
                // Only the chunks the audio reaches hold samples: past its
                // end is silence without any (the song may claim far more).
                self.pcm.end_data(audio.frames());
                for c in 0..self.pcm.chunks() {
                    let at = c * CHUNK_FRAMES * CHANNELS;
                    if at >= audio.samples.len() {
                        break;
                    }
                    let len = self.pcm.chunk_frames(c) * CHANNELS;
                    let mut chunk = vec![0.0; len];
                    let have = audio.samples.len().saturating_sub(at).min(len);
                    chunk[..have].copy_from_slice(&audio.samples[at..at + have]);
                    let _ = self.pcm.fill(c, &chunk);
                }
            }
            Err(e) => warn!("{e}"),
        }
    }
}

enum OpenError {
    NotEngineRate,
    Failed(String),
}

/// An open, positioned decoding of the stem's file.
struct Stream {
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    /// The first packet's timestamp: frame 0 of the stem.
    origin_ts: i64,
    /// The stem frame of the next decoded frame.
    next_frame: i64,
    ended: bool,
    /// A packet read but not decoded yet (the first one, read at open).
    pending: Option<symphonia::core::packet::Packet>,
    /// The PCM chunk being assembled and its frames so far; not valid when
    /// the stream started inside it (it cannot be completed).
    stage_chunk: usize,
    stage: Vec<f32>,
    stage_valid: bool,
    packet_buf: Vec<f32>,
    /// The layout of the last packet, to stereo.
    downmix: Downmix,
}

impl Stream {
    fn open(mut reader: StoreReader, format_hint: &str) -> Result<Stream, OpenError> {
        let failed = |e: symphonia::core::errors::Error| OpenError::Failed(e.to_string());
        let mut hint = Hint::new();
        hint.with_extension(format_hint);
        // An MP4's encoder priming: frame 0 is the first frame it presents
        // (its media time, in the track's timestamps), as for a whole decode.
        let priming_ts = crate::audio::mp4::edit_of(&mut reader).map_or(0, |e| e.media_time as i64);
        let mss = MediaSourceStream::new(Box::new(reader), Default::default());
        let format = symphonia::default::get_probe()
            .probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .map_err(failed)?;
        let track = format
            .default_track(TrackType::Audio)
            .ok_or_else(|| OpenError::Failed("no audio track".into()))?;
        let track_id = track.id;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| OpenError::Failed("no audio codec parameters".into()))?
            .clone();
        if params.sample_rate != Some(ENGINE_RATE_HZ) {
            return Err(OpenError::NotEngineRate);
        }
        let decoder = crate::audio::decode::codecs()
            .make_audio_decoder(&params, &AudioDecoderOptions::default())
            .map_err(failed)?;
        let mut s = Stream {
            format,
            decoder,
            track_id,
            origin_ts: 0,
            next_frame: 0,
            ended: false,
            pending: None,
            stage_chunk: 0,
            stage: Vec::with_capacity(CHUNK_FRAMES * CHANNELS),
            stage_valid: true,
            packet_buf: Vec::new(),
            downmix: Downmix::default(),
        };
        // The first packet's timestamp is frame 0 (reading it costs nothing:
        // the header's chunk holds it); it is decoded first.
        loop {
            match s.format.next_packet().map_err(failed)? {
                Some(p) if p.track_id == track_id => {
                    s.origin_ts = p.pts.get() + priming_ts;
                    s.pending = Some(p);
                    break;
                }
                Some(_) => continue,
                None => break,
            }
        }
        Ok(s)
    }

    /// Positions the stream so the next frames decoded lead up to `frame`.
    fn seek(&mut self, frame: i64) -> Result<(), String> {
        let seeked = self
            .format
            .seek(
                SeekMode::Accurate,
                SeekTo::Timestamp {
                    ts: Timestamp::new(self.origin_ts + frame),
                    track_id: self.track_id,
                },
            )
            .map_err(|e| e.to_string())?;
        self.decoder.reset();
        self.pending = None;
        self.next_frame = seeked.actual_ts.get() - self.origin_ts;
        self.restage();
        Ok(())
    }

    fn restage(&mut self) {
        self.stage.clear();
        self.stage_chunk = self.next_frame.max(0) as usize / CHUNK_FRAMES;
        self.stage_valid = (self.next_frame.max(0) as usize).is_multiple_of(CHUNK_FRAMES);
    }

    /// Decodes one packet into the stage, filling the chunks it completes.
    fn step(&mut self, pcm: &RemoteStem) -> Result<Step, String> {
        let next = match self.pending.take() {
            Some(p) => Ok(Some(p)),
            None => self.format.next_packet(),
        };
        let packet = match next {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(Step::End),
            Err(symphonia::core::errors::Error::IoError(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                return Ok(Step::End);
            }
            Err(e) => return Err(e.to_string()),
        };
        if packet.track_id != self.track_id {
            return Ok(Step::More);
        }
        let at = packet.pts.get() - self.origin_ts;
        if at > self.next_frame && at - self.next_frame <= MAX_GAP_FRAMES {
            // Frames missing from the stream (a damaged packet skipped):
            // silence in their place, so later frames keep their positions.
            for _ in self.next_frame..at {
                self.push(pcm, 0.0, 0.0);
            }
        } else if at != self.next_frame {
            // An overlap (a seek landed early) or a jump: follow the packet.
            self.next_frame = at;
            self.restage();
        }
        let buf = match self.decoder.decode(&packet) {
            Ok(b) => b,
            Err(symphonia::core::errors::Error::DecodeError(_)) => return Ok(Step::More),
            Err(e) => return Err(e.to_string()),
        };
        let channels = buf.spec().channels().count();
        if channels == 0 {
            return Err("zero channels".into());
        }
        if self.downmix.channels() != channels {
            self.downmix = Downmix::new(buf.spec().channels(), channels);
        }
        self.packet_buf.resize(buf.samples_interleaved(), 0.0);
        buf.copy_to_slice_interleaved(&mut self.packet_buf[..]);
        let packet_buf = std::mem::take(&mut self.packet_buf);
        let downmix = std::mem::take(&mut self.downmix);
        for frame in packet_buf.chunks_exact(channels) {
            let (left, right) = downmix.frame(frame);
            self.push(pcm, left, right);
        }
        self.downmix = downmix;
        self.packet_buf = packet_buf;
        Ok(Step::More)
    }

    fn push(&mut self, pcm: &RemoteStem, left: f32, right: f32) {
        let frame = self.next_frame;
        self.next_frame += 1;
        if frame < 0 {
            return;
        }
        let chunk = frame as usize / CHUNK_FRAMES;
        if chunk != self.stage_chunk {
            self.stage_chunk = chunk;
            self.stage.clear();
            self.stage_valid = (frame as usize).is_multiple_of(CHUNK_FRAMES);
        }
        if !self.stage_valid || chunk >= pcm.chunks() {
            return;
        }
        self.stage.push(left);
        self.stage.push(right);
        if self.stage.len() == pcm.chunk_frames(chunk) * CHANNELS {
            // Already decoded (by an earlier pass) is fine: same samples.
            let _ = pcm.fill(chunk, &self.stage);
            self.stage.clear();
            self.stage_valid = false;
        }
    }

    /// At the end of the stream: a last chunk the file fell short of is
    /// completed with silence (the stem's length is the song's word).
    fn finish(&mut self, pcm: &RemoteStem) {
        if self.stage_valid && !self.stage.is_empty() && self.stage_chunk < pcm.chunks() {
            self.stage
                .resize(pcm.chunk_frames(self.stage_chunk) * CHANNELS, 0.0);
            let _ = pcm.fill(self.stage_chunk, &self.stage);
        }
        // Chunks past the end of what the file holds will never decode: they
        // are silence, without samples (a file of a second in a song that
        // claims fifteen minutes once filled them all, 345 MB a stem).
        pcm.end_data(self.next_frame.max(0) as usize);
        self.stage.clear();
        self.stage_valid = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_course_only_when_the_target_is_behind_or_far_ahead() {
        let c = CHUNK_FRAMES as i64;
        assert!(!off_course(0, 0));
        assert!(!off_course(c / 2, 0), "inside the target");
        assert!(!off_course(c + 1, 2));
        assert!(off_course(3 * c + 1, 2), "past the target");
        assert!(off_course(0, 3), "three chunks to decode through: seek");
        assert!(!off_course(c, 3));
    }
}
