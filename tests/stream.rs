//! A remote stem's decoder: it plays the same samples at the same frames as
//! the whole-file decoder, decodes around the playhead or a seek target, and
//! pulls the chunks it needs through the store.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use synfony::audio::engine::EngineStats;
use synfony::audio::streamer::CHUNK_FRAMES;
use synfony::audio::{CHANNELS, ENGINE_RATE_HZ, StreamedStem, decode_file};
use synfony::room::StemInfo;
use synfony::room::store::StemStore;
use synfony::room::stream::{self, Playhead};

fn assets() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

struct Rig {
    store: Arc<StemStore>,
    pcm: Arc<StreamedStem>,
    playhead: Arc<Playhead>,
    expected: Vec<f32>,
    bytes: Vec<u8>,
    info: StemInfo,
}

fn rig(path: &std::path::Path, complete: bool) -> Rig {
    let bytes = std::fs::read(path).unwrap();
    let audio = decode_file(path, ENGINE_RATE_HZ).unwrap();
    let ext = path.extension().unwrap().to_str().unwrap();
    let info = StemInfo::of_bytes("s", ext, &bytes, audio.frames() as u64);
    let store = Arc::new(if complete {
        StemStore::complete(info.clone(), &bytes).unwrap()
    } else {
        StemStore::new(info.clone(), None, Box::new(|| {})).unwrap()
    });
    Rig {
        store,
        // Room for every chunk: these tests compare whole stems.
        pcm: Arc::new(StreamedStem::with_slots(audio.frames(), usize::MAX)),
        playhead: Arc::new(Playhead::new(Arc::new(EngineStats::default()))),
        expected: audio.samples.to_vec(),
        bytes,
        info,
    }
}

/// Waits (supplying whatever chunk the decoder blocks on) until `done`.
fn wait(r: &Rig, supply: bool, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the decoder made no progress"
        );
        if supply && let Some(k) = r.store.waiting_on() {
            let range = r.info.chunk_range(k);
            r.store
                .put(k, &r.bytes[range.start as usize..range.end as usize])
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Starts a decoder over `r`'s store.
fn spawn(r: &Rig, window_frames: i64) -> std::thread::JoinHandle<()> {
    let input = stream::Input::Store(r.store.clone());
    stream::spawn(input, "s", r.pcm.clone(), r.playhead.clone(), window_frames).unwrap()
}

/// Runs a decoder over `r` with `window_frames` until `done`, then stops it.
fn decode_until(r: &Rig, window_frames: i64, done: impl Fn() -> bool) {
    let t = spawn(r, window_frames);
    wait(r, false, done);
    r.store.close();
    t.join().unwrap();
}

fn chunk_matches(r: &Rig, c: usize) -> bool {
    let at = c * CHUNK_FRAMES * CHANNELS;
    let len = r.pcm.chunk_frames(c) * CHANNELS;
    let want = &r.expected[at..at + len];
    (0..len / CHANNELS).all(|i| {
        let (l, rr) = r.pcm.frame_at((c * CHUNK_FRAMES + i) as i64);
        l.to_bits() == want[2 * i].to_bits() && rr.to_bits() == want[2 * i + 1].to_bits()
    })
}

#[test]
fn a_streamed_flac_is_sample_identical_to_the_whole_decode() {
    let r = rig(&assets().join("demo/bass.flac"), true);
    decode_until(&r, r.pcm.frames() as i64, || {
        r.pcm.ready_chunks() == r.pcm.chunks()
    });
    for c in 0..r.pcm.chunks() {
        assert!(chunk_matches(&r, c), "chunk {c} differs");
    }
}

#[test]
fn a_seek_target_is_decoded_first_pulling_only_the_chunks_it_needs() {
    let r = rig(&assets().join("demo/drums.flac"), false);
    let window = 2 * ENGINE_RATE_HZ as i64;
    let target_frames = 30 * ENGINE_RATE_HZ as i64;
    r.playhead.set_seek_hint(Some(target_frames));
    let t = spawn(&r, window);
    let first = target_frames as usize / CHUNK_FRAMES;
    wait(&r, true, || (first..first + 20).all(|c| r.pcm.is_ready(c)));
    for c in first..first + 20 {
        assert!(chunk_matches(&r, c), "chunk {c} differs");
    }
    // Both windows (after the target and after the playhead) fill; what
    // lies between was never read.
    assert!(
        !r.store.is_complete(),
        "only what the windows needed was read"
    );
    assert!(!r.pcm.is_ready(first - 50));
    // The hint is applied: the playhead is there now, and plays on.
    r.playhead.set_seek_hint(None);
    r.playhead
        .stats
        .pos_frames
        .store(target_frames + ENGINE_RATE_HZ as i64, Ordering::Relaxed);
    let later = first + 20 + 5;
    wait(&r, true, || r.pcm.is_ready(later));
    assert!(chunk_matches(&r, later));
    r.store.close();
    t.join().unwrap();
}

/// A file at another rate streams through the whole-file decoder's
/// resampler: from its beginning, the same samples at the same frames.
#[test]
fn a_file_at_another_rate_streams_as_the_whole_decode_gives() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let r = rig(&dir.join("sine.ogg"), true);
    decode_until(&r, r.pcm.frames() as i64, || {
        r.pcm.ready_chunks() == r.pcm.chunks()
    });
    for c in 0..r.pcm.chunks() {
        assert!(chunk_matches(&r, c), "chunk {c} differs");
    }
}

/// A WAV (the format whose seeks are computed, not searched), from the
/// start and from a seek: the whole-file decoder's samples at the same frames.
#[test]
fn a_streamed_wav_is_sample_identical_from_the_start_and_after_a_seek() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.wav");
    synfony_testkit::impulse::write_wav(&path, 40 * 48_000).unwrap();
    for (hint, first) in [(None, 0), (Some(25 * ENGINE_RATE_HZ as i64), 250)] {
        let r = rig(&path, true);
        r.playhead.set_seek_hint(hint);
        decode_until(&r, 48_000, || {
            (first..first + 10).all(|c| r.pcm.is_ready(c))
        });
        for c in first..first + 10 {
            assert!(chunk_matches(&r, c), "from {hint:?}: chunk {c} differs");
        }
    }
}

/// Chunks arriving one by one as the decoder asks, then the playhead jumping
/// ahead: the same samples at the same frames.
#[test]
fn a_wav_pulled_chunk_by_chunk_then_jumped_into_streams_identically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.wav");
    synfony_testkit::impulse::write_wav(&path, 40 * 48_000).unwrap();
    let r = rig(&path, false);
    let t = spawn(&r, 96_000);
    wait(&r, true, || (0..20).all(|c| r.pcm.is_ready(c)));
    r.playhead
        .stats
        .pos_frames
        .store(10 * 48_000, Ordering::Relaxed);
    wait(&r, true, || (100..120).all(|c| r.pcm.is_ready(c)));
    r.store.close();
    t.join().unwrap();
    for c in (0..20).chain(100..120) {
        assert!(chunk_matches(&r, c), "chunk {c} differs");
    }
}

/// A short file in a song that claims the longest length a stem may have:
/// once decoded to its end, the stem holds its own samples only, the rest is
/// silence without samples (it once padded all fifteen minutes, 345 MB a
/// stem), at the engine rate (a WAV) or through the resampler (an OGG).
#[test]
fn a_short_file_claiming_the_longest_length_holds_only_its_own_samples() {
    use synfony::protocol::stem::MAX_STEM_SECS;
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("train.wav");
    synfony_testkit::impulse::write_wav(&wav, 48_000).unwrap();
    let ogg = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sine.ogg");
    for path in [wav, ogg] {
        let mut r = rig(&path, true);
        let own_chunks = r.pcm.chunks();
        r.pcm = Arc::new(StreamedStem::with_slots(
            MAX_STEM_SECS as usize * 48_000,
            usize::MAX,
        ));
        let claimed = r.pcm.frames() as i64;
        decode_until(&r, claimed, || r.pcm.ready_chunks() == r.pcm.chunks());
        for c in 0..own_chunks - 1 {
            assert!(chunk_matches(&r, c), "{path:?}: chunk {c} differs");
        }
        let most = own_chunks * CHUNK_FRAMES * CHANNELS * 4;
        assert!(
            r.pcm.sample_bytes() <= most,
            "{path:?}: {} bytes of samples for a file of {most}",
            r.pcm.sample_bytes()
        );
        assert_eq!(r.pcm.frame_at(claimed - 1), (0.0, 0.0));
    }
}

/// A streamed M4A (AAC, 48 kHz) skips its encoder priming as the whole
/// decode does, so both play the same samples at the same frames.
#[test]
fn a_streamed_m4a_skips_its_priming_like_the_whole_decode() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/burst.m4a");
    let r = rig(&path, true);
    decode_until(&r, r.pcm.frames() as i64, || {
        r.pcm.ready_chunks() == r.pcm.chunks()
    });
    for c in 0..r.pcm.chunks() {
        assert!(chunk_matches(&r, c), "chunk {c} differs");
    }
}

/// A 24-bit WAV at 44.1 kHz, as musicians export stems: `secs` of a tone
/// whose pitch rises, so a frame misplaced shows.
fn write_44k1(path: &std::path::Path, secs: u32) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let mut phase = 0.0f64;
    for i in 0..secs as u64 * 44_100 {
        let hz = 200.0 + i as f64 / 44_100.0 * 20.0;
        phase += hz * std::f64::consts::TAU / 44_100.0;
        let x = (phase.sin() * 0.5 * 8_388_607.0) as i32;
        w.write_sample(x).unwrap();
        w.write_sample(-x).unwrap();
    }
    w.finalize().unwrap();
}

/// This peer's own file at 44.1 kHz, streamed from disk through the
/// resampler into a pool of a few seconds: played through and sought about,
/// every chunk it gives is the whole decode's (to float rounding), and the
/// pool never holds more than its slots.
#[test]
fn a_local_file_at_another_rate_streams_in_bounded_memory_and_seeks_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("take.wav");
    write_44k1(&path, 60);
    let whole = decode_file(&path, ENGINE_RATE_HZ).unwrap();
    let window = 2 * ENGINE_RATE_HZ as usize;
    let pcm = Arc::new(StreamedStem::for_window(whole.frames(), window));
    let playhead = Arc::new(Playhead::new(Arc::new(EngineStats::default())));
    let t = stream::spawn(
        stream::Input::file(&path),
        "take",
        pcm.clone(),
        playhead.clone(),
        window as i64,
    )
    .unwrap();
    let close = |c: usize| {
        (0..pcm.chunk_frames(c)).all(|i| {
            let at = c * CHUNK_FRAMES + i;
            let (l, r) = pcm.frame_at(at as i64);
            (l - whole.samples[2 * at]).abs() < 1e-4 && (r - whole.samples[2 * at + 1]).abs() < 1e-4
        })
    };
    let chunks = pcm.chunks();
    // Played through, then a seek back, a seek to the last seconds and one
    // into the middle (each announced by its hint first).
    let mut stops: Vec<(i64, Option<i64>)> =
        (0..60).step_by(4).map(|s| (s * 48_000, None)).collect();
    stops.extend([(59, 7), (7, 57), (57, 31)].map(|(p, h)| (p * 48_000, Some(h * 48_000))));
    for (pos, hint) in stops {
        playhead.stats.pos_frames.store(pos, Ordering::Relaxed);
        playhead.set_seek_hint(hint);
        let first = hint.unwrap_or(pos) as usize / CHUNK_FRAMES;
        let wanted = first..(first + 15).min(chunks);
        let start = Instant::now();
        while !wanted.clone().all(|c| pcm.is_ready(c)) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no progress at {pos} {hint:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        for c in wanted {
            assert!(close(c), "chunk {c} differs (at {pos}, hint {hint:?})");
        }
        assert!(pcm.sample_bytes() <= pcm.slots() * CHUNK_FRAMES * CHANNELS * 4);
    }
    assert!(
        pcm.slots() < chunks / 4,
        "{} slots for {chunks} chunks",
        pcm.slots()
    );
    // Nobody plays it any more: the decoder ends.
    drop(pcm);
    t.join().unwrap();
}

/// A local file longer than its window, played to its end: its last chunk
/// is there when the playhead reaches it (every chunk is, in turn).
#[test]
fn a_file_longer_than_its_window_is_there_to_its_last_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eight.wav");
    synfony_testkit::impulse::write_wav(&path, 8 * 48_000).unwrap();
    let frames = 8 * 48_000;
    let window = 5 * 48_000;
    let pcm = Arc::new(StreamedStem::for_window(frames, window));
    let playhead = Arc::new(Playhead::new(Arc::new(EngineStats::default())));
    let t = stream::spawn(
        stream::Input::file(&path),
        "eight",
        pcm.clone(),
        playhead.clone(),
        window as i64,
    )
    .unwrap();
    let chunks = pcm.chunks();
    for pos in (0..frames as i64).step_by(2_400) {
        playhead.stats.pos_frames.store(pos, Ordering::Relaxed);
        let c = pos as usize / CHUNK_FRAMES;
        let start = Instant::now();
        while !pcm.is_ready(c) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "chunk {c} of {chunks} never came (at {pos})"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    drop(pcm);
    t.join().unwrap();
}
