//! A streamed stem's decoder: turns a file (this peer's own, or one in the
//! cache) or the encoded bytes arriving in a [`StemStore`] into the engine's
//! samples in a [`StreamedStem`], around the playhead.
//!
//! One thread per streamed stem. It decodes the window ahead of the playhead
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
//! Files not at the engine rate go through the resampler the whole-file
//! decoder uses ([`crate::audio::resample`]); a seek lands on its grid
//! before the target and discards the preroll, so chunks line up with a
//! decode from the beginning.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::formats::{FormatReader, SeekMode, SeekTo, TrackType};
use symphonia::core::io::MediaSource;
use symphonia::core::units::Timestamp;
use tracing::{debug, warn};

use std::path::{Path, PathBuf};

use super::store::{StemStore, StoreReader};
use crate::audio::downmix::Downmix;
use crate::audio::engine::EngineStats;
use crate::audio::resample::StreamResampler;
use crate::audio::streamer::CHUNK_FRAMES;
use crate::audio::{CHANNELS, ENGINE_RATE_HZ, StreamedStem};

/// Where the music is, for the decoders: the engine's playhead and the target
/// of a seek voted but not yet applied.
pub struct Playhead {
    pub stats: Arc<EngineStats>,
    /// Frames; negative: none.
    seek_hint_frames: AtomicI64,
    /// A song not playing yet (the set list's next, or one just chosen):
    /// its decoders hold its start until it plays ([`Playhead::go`]).
    cued: AtomicBool,
}

impl Playhead {
    pub fn new(stats: Arc<EngineStats>) -> Playhead {
        Playhead {
            stats,
            seek_hint_frames: AtomicI64::new(-1),
            cued: AtomicBool::new(false),
        }
    }

    /// The playhead of a song that plays later: at its start until
    /// [`Playhead::go`].
    pub fn cued(stats: Arc<EngineStats>) -> Playhead {
        let p = Playhead::new(stats);
        p.cued.store(true, Ordering::Relaxed);
        p
    }

    /// The song plays: follow the engine from now on.
    pub fn go(&self) {
        self.cued.store(false, Ordering::Relaxed);
    }

    pub fn is_cued(&self) -> bool {
        self.cued.load(Ordering::Relaxed)
    }

    pub fn set_seek_hint(&self, frames: Option<i64>) {
        self.seek_hint_frames
            .store(frames.map_or(-1, |f| f.max(0)), Ordering::Relaxed);
    }

    pub fn seek_hint(&self) -> Option<i64> {
        if self.is_cued() {
            return None;
        }
        let h = self.seek_hint_frames.load(Ordering::Relaxed);
        (h >= 0).then_some(h)
    }

    fn pos_frames(&self) -> i64 {
        if self.is_cued() {
            return 0;
        }
        self.stats.pos_frames.load(Ordering::Relaxed).max(0)
    }
}

/// What a stem's decoder reads.
pub enum Input {
    /// A file on this peer: its own stem, or one in the cache.
    File { path: PathBuf, format: String },
    /// A remote stem's bytes as they arrive.
    Store(Arc<StemStore>),
}

impl Input {
    /// A file, its format hint from its extension.
    pub fn file(path: &Path) -> Input {
        let format = (path.extension())
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        Input::File {
            path: path.to_path_buf(),
            format,
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Input::File { .. } => false,
            Input::Store(s) => s.is_closed(),
        }
    }

    fn format(&self) -> &str {
        match self {
            Input::File { format, .. } => format,
            Input::Store(s) => &s.info.format,
        }
    }

    /// A readable stream from the start; `abort` gives up a read waiting
    /// for bytes that have not arrived.
    fn open(&self, abort: Box<dyn Fn() -> bool + Send + Sync>) -> Result<Source, String> {
        match self {
            Input::File { path, .. } => std::fs::File::open(path)
                .map(Source::File)
                .map_err(|e| format!("{}: {e}", path.display())),
            Input::Store(s) => Ok(Source::Store(StoreReader::new(s.clone(), abort))),
        }
    }
}

/// An open [`Input`].
enum Source {
    File(std::fs::File),
    Store(StoreReader),
}

impl std::io::Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Source::File(f) => f.read(buf),
            Source::Store(r) => r.read(buf),
        }
    }
}

impl std::io::Seek for Source {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        match self {
            Source::File(f) => f.seek(to),
            Source::Store(r) => r.seek(to),
        }
    }
}

impl MediaSource for Source {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        match self {
            Source::File(f) => f.byte_len(),
            Source::Store(r) => r.byte_len(),
        }
    }
}

/// Starts the decoder thread of one streamed stem, named `name` (for the
/// thread's name). It ends when its store is closed, or when nothing but
/// the decoder holds `pcm` any more.
pub fn spawn(
    input: Input,
    name: &str,
    pcm: Arc<StreamedStem>,
    playhead: Arc<Playhead>,
    window_frames: i64,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // A thread name is text without NUL (a stem's name is a peer's text).
    let label: String = (name.chars())
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    std::thread::Builder::new()
        .name(format!("synfony-stem-{label}"))
        .spawn(move || {
            Decoder {
                input,
                pcm,
                playhead,
                window_frames: window_frames.max(CHUNK_FRAMES as i64),
                position: Arc::new(AtomicI64::new(0)),
                slack: Arc::new(AtomicI64::new(MIN_SLACK_FRAMES)),
            }
            .run()
        })
}

struct Decoder {
    input: Input,
    pcm: Arc<StreamedStem>,
    playhead: Arc<Playhead>,
    window_frames: i64,
    /// The frame the open stream decodes next (read by the abort check).
    position: Arc<AtomicI64>,
    /// How far before its target the open stream may be (its preroll).
    slack: Arc<AtomicI64>,
}

/// What to decode next: the first chunk not yet decoded in the window after
/// the seek hint, else after the playhead.
fn next_target(pcm: &StreamedStem, playhead: &Playhead, window_frames: i64) -> Option<usize> {
    let window = (window_frames as usize).div_ceil(CHUNK_FRAMES);
    let from = |frame: i64| {
        // From the frame before: the mixer's cubic taps read it (a seek to
        // a chunk's first frame needs the chunk before too).
        let first = (frame - 1).max(0) as usize / CHUNK_FRAMES;
        let end = frame.max(0) as usize / CHUNK_FRAMES + window;
        (first..end.min(pcm.chunks())).find(|&c| !pcm.is_ready(c))
    };
    playhead
        .seek_hint()
        .and_then(from)
        .or_else(|| from(playhead.pos_frames()))
}

/// How far before its target a stream may start without being reopened:
/// two chunks, or its resampler's preroll and a grid block more.
const MIN_SLACK_FRAMES: i64 = 2 * CHUNK_FRAMES as i64;

/// Whether a stream decoding at frame `position` should drop what it does
/// and go to chunk `target` instead: it has passed the chunk without
/// completing it, or would have to decode through more than `slack` frames
/// to reach it.
fn off_course(position: i64, target: usize, slack: i64) -> bool {
    let start = (target * CHUNK_FRAMES) as i64;
    position > start + CHUNK_FRAMES as i64 || start - position > slack
}

/// How early (in frames) a seek starts, so a lossy decoder is warm at the
/// target (Opus asks 80 ms; AAC and Vorbis blocks are at most 2048 frames).
const CODEC_PREROLL_FRAMES: i64 = 4800;

/// The longest run of missing frames filled with silence (longer: the
/// stream jumped, and decoding follows it).
const MAX_GAP_FRAMES: i64 = 10 * ENGINE_RATE_HZ as i64;

enum Step {
    More,
    End,
}

impl Decoder {
    /// Whether to stop: the input is closed, or nobody plays the stem.
    fn done(&self) -> bool {
        self.input.is_closed() || Arc::strong_count(&self.pcm) == 1
    }

    fn run(self) {
        if self.pcm.frames() == 0 {
            return;
        }
        let mut open: Option<Stream> = None;
        // Consecutive failures (to open, or to decode): each waits twice as
        // long as the last, up to about a second, so a file that cannot be
        // decoded costs little.
        let mut failures = 0u32;
        let backoff = |failures: u32| Duration::from_millis(10 << failures.min(7));
        while !self.done() {
            (self.pcm).set_focus(self.playhead.pos_frames(), self.playhead.seek_hint());
            let Some(target) = next_target(&self.pcm, &self.playhead, self.window_frames) else {
                open = open.filter(|s| !s.ended);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            if open
                .as_ref()
                .is_none_or(|s| s.ended || off_course(s.next_frame, target, s.slack))
            {
                open = match self.open_at(target) {
                    Ok(s) => {
                        self.slack.store(s.slack, Ordering::Relaxed);
                        Some(s)
                    }
                    Err(e) => {
                        if !self.done() {
                            debug!("reopening: {e}");
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
                    // Only a chunk filled ends a run of failures (a file that
                    // fails midway must not be reopened every 10 ms).
                    if s.filled > 0 {
                        failures = 0;
                    }
                    self.position.store(s.next_frame, Ordering::Relaxed)
                }
                Ok(Step::End) => {
                    if let Err(e) = s.finish(&self.pcm) {
                        warn!("{e}");
                    }
                    s.ended = true;
                }
                Err(e) => {
                    debug!("stream interrupted: {e}");
                    open = None;
                    std::thread::sleep(backoff(failures));
                    failures += 1;
                }
            }
        }
    }

    /// Opens the file and positions it at chunk `target`.
    fn open_at(&self, target: usize) -> Result<Stream, String> {
        let target_frame = (target * CHUNK_FRAMES) as i64;
        // Start the abort check from the target, not from the old stream.
        self.position.store(target_frame, Ordering::Relaxed);
        self.slack.store(i64::MAX, Ordering::Relaxed);
        let (pcm, playhead, window, position, slack) = (
            self.pcm.clone(),
            self.playhead.clone(),
            self.window_frames,
            self.position.clone(),
            self.slack.clone(),
        );
        let abort = Box::new(move || {
            next_target(&pcm, &playhead, window).is_some_and(|t| {
                off_course(
                    position.load(Ordering::Relaxed),
                    t,
                    slack.load(Ordering::Relaxed),
                )
            })
        });
        let mut s = Stream::open(self.input.open(abort)?, self.input.format())?;
        if target_frame > 0
            && let Err(e) = s.seek(target_frame)
        {
            // Past the file's real end (the song claims more than it holds):
            // from there on is silence, as a stream reaching the end would
            // have found.
            if let Some(end) = s.past_end(target_frame, &e) {
                self.pcm.end_data(end);
            }
            return Err(e.to_string());
        }
        Ok(s)
    }
}

/// An open, positioned decoding of the stem's file.
struct Stream {
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    /// The first packet's timestamp: frame 0 of the stem.
    origin_ts: i64,
    /// The file's frame (at its own rate) decoded next.
    next_in: i64,
    /// The stem frame (at the engine rate) of the next frame out.
    next_frame: i64,
    /// Frames out before this one are the resampler's preroll: not kept.
    valid_from: i64,
    /// How far before its target this stream may start (its preroll).
    slack: i64,
    /// The file's length at the engine rate, if its header says.
    said_frames: Option<u64>,
    /// Chunks this stream has filled.
    filled: u64,
    ended: bool,
    /// A packet read but not decoded yet.
    pending: Option<symphonia::core::packet::Packet>,
    /// The timestamp of the packet decoded into `stereo` and not fed yet
    /// (the first one, decoded at open).
    held: Option<i64>,
    /// The PCM chunk being assembled and its frames so far; not valid when
    /// the stream started inside it (it cannot be completed).
    stage_chunk: usize,
    stage: Vec<f32>,
    stage_valid: bool,
    packet_buf: Vec<f32>,
    /// Stereo frames of the last packet, at the file's rate.
    stereo: Vec<f32>,
    /// The layout of the last packet, to stereo.
    downmix: Downmix,
    /// From the file's rate to the engine's (`None`: the same).
    resampler: Option<StreamResampler>,
}

impl Stream {
    fn open(source: Source, format_hint: &str) -> Result<Stream, String> {
        let failed = |e: symphonia::core::errors::Error| e.to_string();
        let mut reader = source;
        // An MP4's encoder priming: frame 0 is the first frame it presents
        // (its media time, in the track's timestamps), as for a whole decode.
        let priming_ts = crate::audio::mp4::edit_of(&mut reader).map_or(0, |e| e.media_time as i64);
        let format = crate::audio::decode::open_format(Box::new(reader), Some(format_hint))
            .map_err(failed)?;
        let track = format
            .default_track(TrackType::Audio)
            .ok_or("no audio track")?;
        let track_id = track.id;
        let said_source_frames = track.num_frames;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or("no audio codec parameters")?
            .clone();
        let rate_hz = params.sample_rate.ok_or("no sample rate")?;
        if !crate::audio::decode::SOURCE_RATES_HZ.contains(&rate_hz) {
            return Err(format!("a sample rate of {rate_hz} Hz"));
        }
        let resampler = (rate_hz != ENGINE_RATE_HZ)
            .then(|| StreamResampler::new(rate_hz, ENGINE_RATE_HZ))
            .transpose()?;
        let slack = (resampler.as_ref())
            .map_or(0, |r| {
                (r.preroll_frames() + r.grid().1) as i64
                    + CHUNK_FRAMES as i64
                    + CODEC_PREROLL_FRAMES
            })
            .max(MIN_SLACK_FRAMES);
        let decoder = crate::audio::decode::codecs()
            .make_audio_decoder(&params, &AudioDecoderOptions::default())
            .map_err(failed)?;
        let mut s = Stream {
            format,
            decoder,
            track_id,
            origin_ts: 0,
            next_in: 0,
            next_frame: 0,
            valid_from: 0,
            slack,
            said_frames: said_source_frames
                .map(|f| crate::audio::resample::frames_at(f, rate_hz, ENGINE_RATE_HZ)),
            filled: 0,
            ended: false,
            pending: None,
            held: None,
            stage_chunk: usize::MAX,
            stage: Vec::with_capacity(CHUNK_FRAMES * CHANNELS),
            stage_valid: false,
            packet_buf: Vec::new(),
            stereo: Vec::new(),
            downmix: Downmix::default(),
            resampler,
        };
        // Frame 0 is the first frame the file yields (as for a whole
        // decode): the first packet's, unless it yields none (a Vorbis
        // stream's first packet only primes the decoder). Its frames are
        // the first step's.
        while let Some(pts) = s.next_decoded()? {
            if !s.stereo.is_empty() {
                s.origin_ts = pts + priming_ts;
                s.held = Some(pts);
                break;
            }
        }
        Ok(s)
    }

    /// Positions the stream so the next frames decoded lead up to `frame`:
    /// at the engine rate, `frame` itself; through the resampler, the grid
    /// point a preroll before it.
    fn seek(&mut self, frame: i64) -> Result<(), symphonia::core::errors::Error> {
        // A lossy decoder starts cold after a seek (its first frames fade in
        // or are silence): it starts a codec preroll early, and what comes
        // before the target is not kept.
        let early = (frame - CODEC_PREROLL_FRAMES).max(0);
        let (in_frame, out_frame) = match &self.resampler {
            None => (early, early),
            Some(r) => {
                let (in_block, out_block) = r.grid();
                let (in_block, out_block) = (in_block as i64, out_block as i64);
                let blocks = (early - r.preroll_frames() as i64).max(0) / out_block;
                (blocks * in_block, blocks * out_block)
            }
        };
        let seeked = self.format.seek(
            SeekMode::Accurate,
            SeekTo::Timestamp {
                ts: Timestamp::new(self.origin_ts + in_frame),
                track_id: self.track_id,
            },
        )?;
        self.decoder.reset();
        self.pending = None;
        self.held = None;
        if self.resampler.is_none() {
            let landed = seeked.actual_ts.get() - self.origin_ts;
            self.restart(landed, landed);
        } else {
            // Frames before the grid point are dropped as they come.
            self.restart(in_frame, out_frame);
        }
        if in_frame > 0 {
            self.valid_from = frame;
        }
        Ok(())
    }

    /// Where the file's data ends, when a seek to `frame` failed for lying
    /// past it: its header's length, else `frame`.
    fn past_end(&self, frame: i64, e: &symphonia::core::errors::Error) -> Option<usize> {
        use symphonia::core::errors::{Error, SeekErrorKind};
        matches!(e, Error::SeekError(SeekErrorKind::OutOfRange)).then(|| {
            (self
                .said_frames
                .map_or(frame as u64, |f| f.min(frame as u64))) as usize
        })
    }

    /// The next frame in is the file's `in_frame`, and the next out the
    /// stem's `out_frame`, from nothing.
    fn restart(&mut self, in_frame: i64, out_frame: i64) {
        self.next_in = in_frame;
        self.next_frame = out_frame;
        self.valid_from = out_frame;
        if let Some(r) = &mut self.resampler {
            r.reset();
        }
        self.stage.clear();
        self.stage_chunk = usize::MAX;
        self.stage_valid = false;
    }

    /// Reads and decodes the track's next packet into `stereo` (empty for a
    /// damaged packet): its timestamp, or `None` at the end of the file.
    fn next_decoded(&mut self) -> Result<Option<i64>, String> {
        let packet = loop {
            let next = match self.pending.take() {
                Some(p) => Ok(Some(p)),
                None => self.format.next_packet(),
            };
            match next {
                Ok(Some(p)) if p.track_id == self.track_id => break p,
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(None),
                Err(symphonia::core::errors::Error::IoError(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        self.stereo.clear();
        let buf = match self.decoder.decode(&packet) {
            Ok(b) => b,
            Err(symphonia::core::errors::Error::DecodeError(_)) => {
                return Ok(Some(packet.pts.get()));
            }
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
        for frame in self.packet_buf.chunks_exact(channels) {
            let (left, right) = self.downmix.frame(frame);
            self.stereo.push(left);
            self.stereo.push(right);
        }
        Ok(Some(packet.pts.get()))
    }

    /// Decodes one packet, filling the chunks it completes.
    fn step(&mut self, pcm: &StreamedStem) -> Result<Step, String> {
        let pts = match self.held.take() {
            Some(pts) => pts,
            None => match self.next_decoded()? {
                Some(pts) => pts,
                None => return Ok(Step::End),
            },
        };
        let at = pts - self.origin_ts;
        if at > self.next_in && at - self.next_in <= MAX_GAP_FRAMES {
            // Frames missing from the stream (a damaged packet skipped):
            // silence in their place, so later frames keep their positions.
            let gap = vec![0.0; (at - self.next_in) as usize * CHANNELS];
            self.feed(pcm, &gap)?;
        } else if at > self.next_in || self.next_in - at > MAX_GAP_FRAMES {
            // A jump: follow the packet.
            let out = match &self.resampler {
                None => at,
                Some(r) => {
                    let (in_block, out_block) = r.grid();
                    at * out_block as i64 / in_block as i64
                }
            };
            self.restart(at, out);
            if let Some(r) = &self.resampler {
                self.valid_from = out + r.preroll_frames() as i64;
            }
        }
        // Frames before where the stream is (a seek landed early, an MP4's
        // priming): dropped.
        let skip = (self.next_in - at).clamp(0, i64::MAX) as usize * CHANNELS;
        let stereo = std::mem::take(&mut self.stereo);
        let fed = self.feed(pcm, stereo.get(skip..).unwrap_or_default());
        self.stereo = stereo;
        fed.map(|()| Step::More)
    }

    /// Takes stereo frames at the file's rate, from `next_in` on.
    fn feed(&mut self, pcm: &StreamedStem, stereo: &[f32]) -> Result<(), String> {
        self.next_in += (stereo.len() / CHANNELS) as i64;
        match self.resampler.take() {
            None => {
                for f in stereo.chunks_exact(CHANNELS) {
                    self.push(pcm, f[0], f[1]);
                }
                Ok(())
            }
            Some(mut r) => {
                let done = r.push(stereo, &mut |left, right| self.push(pcm, left, right));
                self.resampler = Some(r);
                done
            }
        }
    }

    fn push(&mut self, pcm: &StreamedStem, left: f32, right: f32) {
        let frame = self.next_frame;
        self.next_frame += 1;
        if frame < self.valid_from.max(0) {
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
            // Already held (from an earlier pass) is fine: same samples; too
            // far from the playhead to keep is fine too.
            if pcm.fill(chunk, &self.stage).is_ok() {
                self.filled += 1;
            }
            self.stage.clear();
            self.stage_valid = false;
        }
    }

    /// At the end of the stream: the resampler's tail out, and a last chunk
    /// the file fell short of completed with silence (the stem's length is
    /// the song's word).
    fn finish(&mut self, pcm: &StreamedStem) -> Result<(), String> {
        if let Some(mut r) = self.resampler.take() {
            let done = r.finish(&mut |left, right| self.push(pcm, left, right));
            self.resampler = Some(r);
            done?;
        }
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_course_only_when_the_target_is_behind_or_far_ahead() {
        let c = CHUNK_FRAMES as i64;
        let slack = MIN_SLACK_FRAMES;
        assert!(!off_course(0, 0, slack));
        assert!(!off_course(c / 2, 0, slack), "inside the target");
        assert!(!off_course(c + 1, 2, slack));
        assert!(off_course(3 * c + 1, 2, slack), "past the target");
        assert!(
            off_course(0, 3, slack),
            "three chunks to decode through: seek"
        );
        assert!(!off_course(c, 3, slack));
        assert!(!off_course(0, 3, 4 * c), "within a resampler's preroll");
    }
}
