//! The output backends, run in real time for about a second each: the null
//! device's pacing and drift, its raw and WAV sinks (what they hold matches
//! the `--report` lines frame for frame), a FIFO reader, the skewed clock and
//! the latency offset. Timing is checked through the report's exact schedule,
//! never through how long the test took.

use std::io::Read;
use std::path::Path;

use synfony::audio::output::{
    self, DEFAULT_PERIOD_FRAMES, OutputConfig, OutputKind, ReportLine, f32_to_s16,
};
use synfony::audio::{CHANNELS, Engine, MixGains, Scheduled, StemAudio, Streamer};
use synfony::host_clock::{LocalClock, monotonic_ns};
use synfony::protocol::{SessionMap, Timeline};

const RATE: f64 = 48_000.0;
const MS: i64 = 1_000_000;

/// A stem whose s16 output names its frame: left = frame mod 32768, right =
/// frame div 32768, each as an exact s16 value.
fn marker_stem(frames: usize) -> StemAudio {
    let mut s = Vec::with_capacity(frames * CHANNELS);
    for i in 0..frames {
        s.push((i % 32768) as f32 / 32768.0);
        s.push((i / 32768) as f32 / 32768.0);
    }
    StemAudio::from_interleaved("marker", 48_000, s)
}

fn frame_of_s16(l: i16, r: i16) -> i64 {
    l as i64 + r as i64 * 32768
}

struct Run {
    report: Vec<ReportLine>,
    /// Blocks the device skipped after a stall of this thread.
    xruns: u64,
    /// Session (= this peer's local clock) instant the play starts.
    play_at_local_ns: i64,
}

/// Plays the marker stem from position 0 at a local instant 150 ms from now,
/// for about `ms` milliseconds, on `kind`.
fn run(kind: OutputKind, cfg: OutputConfig, ms: u64, dir: &Path) -> Run {
    let stem = marker_stem(10 * 48_000);
    let (engine, mut handle, _retired) = Engine::new(vec![Streamer::local(&stem)], 48_000);
    // Session time = this peer's local time.
    handle.set_map(SessionMap::starting_at(0)).unwrap();
    let play_at_local_ns = cfg.clock.now_ns() + 150 * MS;
    handle
        .schedule_raw(Scheduled {
            apply_at_session_ns: play_at_local_ns,
            timeline: Timeline {
                playing: true,
                anchor_position_ns: 0,
                anchor_session_ns: play_at_local_ns,
            },
            gains: MixGains::UNITY,
        })
        .unwrap();
    let report_path = dir.join("report.jsonl");
    let cfg = OutputConfig {
        report: Some(report_path.clone()),
        ..cfg
    };
    let backend = output::backend(&kind, &cfg).unwrap();
    let running = output::start(backend, engine, &cfg).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(ms));
    let errors: Vec<_> = running.errors.try_iter().collect();
    assert!(errors.is_empty(), "{errors:?}");
    let xruns = running
        .stats
        .xruns
        .load(std::sync::atomic::Ordering::Relaxed);
    running.stop();
    Run {
        report: read_report(&report_path),
        xruns,
        play_at_local_ns,
    }
}

fn read_report(path: &Path) -> Vec<ReportLine> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let field = |name: &str| {
                let at = l.find(&format!("\"{name}\":")).unwrap() + name.len() + 3;
                let rest = &l[at..];
                rest[..rest.find([',', '}']).unwrap()].to_string()
            };
            assert_eq!(field("rate"), "48000", "{l}");
            ReportLine {
                mono_ns: field("mono_ns").parse().unwrap(),
                pos_frames: field("pos_frames").parse().unwrap(),
                playing: field("playing").parse().unwrap(),
                song: [0; 16],
                session_ns: l
                    .contains("\"session_ns\"")
                    .then(|| field("session_ns").parse().unwrap()),
                jump: None,
            }
        })
        .collect()
}

/// Report lines are spaced exactly one period of the (drifting) device apart,
/// and each playing line's position is where the timeline is at that instant
/// of the peer's clock (shifted by the speakers' latency), within
/// `tolerance_frames` (a drifting device is followed by the engine's drift
/// loop, which takes about a second to learn the rate).
fn check_schedule(r: &Run, cfg: &OutputConfig, tolerance_frames: f64) {
    assert!(r.report.len() >= 10, "only {} blocks", r.report.len());
    let period_ns = DEFAULT_PERIOD_FRAMES as f64 * 1e9 / RATE / (1.0 + cfg.device_drift_ppm * 1e-6);
    // Consecutive blocks are one period apart; a stalled thread (a loaded
    // machine) skips whole periods, each counted as an xrun.
    let mut skipped = 0;
    for w in r.report.windows(2) {
        let periods = (w[1].mono_ns - w[0].mono_ns) as f64 / period_ns;
        let whole = periods.round();
        assert!(whole >= 1.0, "blocks out of order: {periods}");
        assert!(
            ((periods - whole) * period_ns).abs() <= 1.0 + whole,
            "spacing of {periods} periods"
        );
        skipped += whole as u64 - 1;
    }
    assert_eq!(skipped, r.xruns, "gaps in the report are the counted xruns");
    let playing: Vec<_> = r.report.iter().filter(|l| l.playing).collect();
    assert!(playing.len() >= 5, "{:?}", r.report);
    for l in &playing {
        let heard_local = cfg.clock.local_at(l.mono_ns + cfg.latency_offset_ns);
        let want = (heard_local - r.play_at_local_ns) as f64 * RATE / 1e9;
        assert!(
            (l.pos_frames as f64 - want).abs() <= tolerance_frames,
            "pos {} want {want:.2}",
            l.pos_frames
        );
    }
}

#[test]
fn null_device_paces_blocks_and_positions_them_on_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = OutputConfig::default();
    let r = run(OutputKind::Null, cfg.clone(), 800, dir.path());
    check_schedule(&r, &cfg, 1.0);
}

#[test]
fn device_drift_skewed_clock_and_latency_offset_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = OutputConfig {
        clock: LocalClock::skewed(-1234.5, 300.0, monotonic_ns()).unwrap(),
        latency_offset_ns: 20 * MS,
        device_drift_ppm: 500.0,
        ..OutputConfig::default()
    };
    let r = run(OutputKind::Null, cfg.clone(), 800, dir.path());
    // The device consumes 1.0005/1.0003 as fast as the clock asks: 200 ppm,
    // 0.48 frames a block, which the drift loop's proportional term alone would
    // hold at about 5 frames (≈ 0.1 ms) until the integral has learned it.
    check_schedule(&r, &cfg, 8.0);
}

/// Every block the raw sink wrote is the block the report describes.
fn check_raw_blocks(bytes: &[u8], report: &[ReportLine]) {
    let block_bytes = DEFAULT_PERIOD_FRAMES * CHANNELS * 2;
    assert_eq!(bytes.len() % block_bytes, 0);
    let blocks = bytes.len() / block_bytes;
    // The last rendered block may not have been written before the stop.
    assert!(blocks + 1 >= report.len() && blocks <= report.len());
    let mut checked = 0;
    for (j, line) in report.iter().enumerate().take(blocks) {
        let block = &bytes[j * block_bytes..(j + 1) * block_bytes];
        let s16 = |i: usize| i16::from_le_bytes([block[2 * i], block[2 * i + 1]]);
        if !line.playing {
            // Silent, unless the start falls inside this block.
            let starts_here = report.get(j + 1).is_some_and(|n| n.playing);
            assert!(starts_here || (0..DEFAULT_PERIOD_FRAMES * 2).all(|i| s16(i) == 0));
            continue;
        }
        // Past the fade-in, each frame names its own position.
        for f in [600usize, 1200, DEFAULT_PERIOD_FRAMES - 1] {
            let got = frame_of_s16(s16(2 * f), s16(2 * f + 1));
            assert_eq!(got, line.pos_frames + f as i64, "block {j} frame {f}");
        }
        checked += 1;
    }
    assert!(checked >= 5);
}

#[test]
fn raw_sink_writes_the_reported_blocks_as_s16le() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.raw");
    let r = run(
        OutputKind::Raw(path.clone()),
        OutputConfig::default(),
        800,
        dir.path(),
    );
    check_raw_blocks(&std::fs::read(&path).unwrap(), &r.report);
}

#[test]
fn raw_sink_feeds_a_fifo_reader_block_by_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.fifo");
    synfony_testkit::harness::mkfifo(&path).unwrap();
    let reader = {
        let path = path.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::open(path).unwrap();
            let mut all = Vec::new();
            // Read as a measuring tool would: timestamp each read.
            let mut reads = Vec::new();
            let mut buf = vec![0u8; DEFAULT_PERIOD_FRAMES * CHANNELS * 2];
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                reads.push(monotonic_ns());
                all.extend_from_slice(&buf[..n]);
            }
            (all, reads)
        })
    };
    let r = run(
        OutputKind::Raw(path.clone()),
        OutputConfig::default(),
        800,
        dir.path(),
    );
    let (bytes, reads) = reader.join().unwrap();
    check_raw_blocks(&bytes, &r.report);
    // Not asserted (a loaded machine is late), printed for the curious: how
    // long after its play instant each block reached the reader.
    let lag_us: Vec<i64> = reads
        .iter()
        .zip(&r.report)
        .map(|(t, l)| (t - l.mono_ns) / 1000)
        .collect();
    println!("FIFO read lag after play instant, µs: {lag_us:?}");
}

#[test]
fn wav_sink_holds_the_reported_blocks_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.wav");
    let r = run(
        OutputKind::Wav(path.clone()),
        OutputConfig::default(),
        800,
        dir.path(),
    );
    let mut wav = hound::WavReader::open(&path).unwrap();
    if r.xruns > 0 {
        // The device stalled (a loaded machine): the WAV holds silence for
        // the skipped blocks, which have no report line, so blocks and lines
        // no longer pair by index. Seen once in CI while another build ran.
        eprintln!(
            "{} xruns: the block-by-block comparison is skipped",
            r.xruns
        );
        return;
    }
    assert_eq!(wav.spec().sample_rate, 48_000);
    assert_eq!(wav.spec().channels, 2);
    let samples: Vec<f32> = wav.samples::<f32>().map(Result::unwrap).collect();
    let mut bytes = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        bytes.extend(f32_to_s16(s).to_le_bytes());
    }
    check_raw_blocks(&bytes, &r.report);
}

#[test]
fn output_kinds_parse_and_bad_ones_say_what_is_expected() {
    assert_eq!("null".parse::<OutputKind>().unwrap(), OutputKind::Null);
    assert_eq!("device".parse::<OutputKind>().unwrap(), OutputKind::Device);
    assert_eq!(
        "raw:/tmp/a:b".parse::<OutputKind>().unwrap(),
        OutputKind::Raw("/tmp/a:b".into())
    );
    assert_eq!(
        "wav:x.wav".parse::<OutputKind>().unwrap(),
        OutputKind::Wav("x.wav".into())
    );
    for bad in ["", "nul", "wav:", "raw:", "file:x", "pulse"] {
        let e = bad.parse::<OutputKind>().unwrap_err().to_string();
        assert!(
            e.contains("device, null, wav:PATH or raw:PATH"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn bad_periods_drifts_and_sink_paths_are_refused_clearly() {
    let cfg = |period_frames, device_drift_ppm| OutputConfig {
        period_frames,
        device_drift_ppm,
        ..OutputConfig::default()
    };
    for (p, d) in [(0, 0.0), (1_000_000, 0.0), (2400, f64::NAN), (2400, 1e9)] {
        assert!(output::backend(&OutputKind::Null, &cfg(p, d)).is_err());
    }
    let (engine, _h, _r) = Engine::new(vec![], 48_000);
    let kind = OutputKind::Raw("/nonexistent-dir/x.raw".into());
    let backend = output::backend(&kind, &OutputConfig::default()).unwrap();
    let e = output::start(backend, engine, &OutputConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("/nonexistent-dir/x.raw"), "{e}");
}

/// The sound device plays; on a machine without one, the device backend
/// fails with a clear message, never a panic, and `open` plays on the null
/// device instead, saying why.
#[test]
fn the_device_opens_or_the_null_device_plays_and_says_why() {
    let (engine, _h, _r) = Engine::new(vec![], 48_000);
    let cfg = OutputConfig::default();
    let opened = output::open(&OutputKind::Device, engine, &cfg).unwrap();
    match &opened.fallback {
        None => assert!(!opened.described.contains("no sound device")),
        Some(e) => {
            let msg = e.to_string();
            println!("device backend: {msg}");
            assert!(msg.contains("sound device"), "{msg}");
            assert!(opened.described.contains("null"), "{}", opened.described);
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let blocks = (opened.running.stats.blocks).load(std::sync::atomic::Ordering::Relaxed);
    assert!(blocks > 0, "it plays");
    opened.running.stop();
    // Any other output that fails is an error, not a fallback.
    let (engine, _h, _r) = Engine::new(vec![], 48_000);
    let bad = OutputKind::Raw("/nonexistent-dir/x.raw".into());
    assert!(output::open(&bad, engine, &cfg).is_err());
}

/// A FIFO nobody reads: starting does not wait for a reader, and stopping
/// does not hang (checked from a watchdog, so a regression fails instead of
/// hanging the test run).
#[test]
fn a_fifo_without_a_reader_neither_blocks_start_nor_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nobody.fifo");
    synfony_testkit::harness::mkfifo(&path).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (engine, _h, _r) = Engine::new(vec![], 48_000);
        let cfg = OutputConfig::default();
        let backend = output::backend(&OutputKind::Raw(path), &cfg).unwrap();
        let running = output::start(backend, engine, &cfg).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        running.stop();
        let _ = done_tx.send(());
    });
    assert!(
        done_rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .is_ok(),
        "start or stop hung on a FIFO without a reader"
    );
}
