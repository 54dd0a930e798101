//! Decoding real files (generated here, or the small fixtures in `tests/data/`
//! made by `tests/data/make-fixtures.sh`), bad files, and `synfony render`
//! against an independent computation of the mix.

use std::path::Path;

use synfony::audio::decode::{DecodeError, decode_file};
use synfony::audio::load::{LoadError, MAX_STEMS, load_all, load_each};
use synfony::audio::render::{RenderSpec, StemRef, render};

const RATE: u32 = 48_000;

fn write_wav_i16(
    path: &Path,
    rate: u32,
    channels: u16,
    frames: usize,
    f: impl Fn(usize, u16) -> i16,
) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..frames {
        for c in 0..channels {
            w.write_sample(f(i, c)).unwrap();
        }
    }
    w.finalize().unwrap();
}

fn write_wav_f32(path: &Path, frames: usize, f: impl Fn(usize, u16) -> f32) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..frames {
        for c in 0..2 {
            w.write_sample(f(i, c)).unwrap();
        }
    }
    w.finalize().unwrap();
}

fn noise(i: usize, c: u16) -> i16 {
    let mut x = (i as u32).wrapping_mul(2_654_435_761) ^ (c as u32 * 0x9e37_79b9);
    x ^= x >> 15;
    x = x.wrapping_mul(0x2c1b_3c6d);
    (x >> 16) as i16
}

#[test]
fn wav_at_the_engine_rate_passes_through_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noise.wav");
    write_wav_i16(&path, RATE, 2, 10_000, noise);
    let stem = decode_file(&path, RATE).unwrap();
    assert_eq!(stem.name, "noise");
    assert_eq!(stem.frames(), 10_000);
    for i in 0..10_000 {
        for c in 0..2u16 {
            assert_eq!(
                stem.samples[i * 2 + c as usize],
                noise(i, c) as f32 / 32768.0
            );
        }
    }
}

/// A 1 kHz sine at 44.1 kHz mono comes out as 48 kHz stereo with the same
/// duration and pitch.
#[test]
fn other_rates_and_mono_are_converted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sine.wav");
    let src_rate = 44_100;
    write_wav_i16(&path, src_rate, 1, src_rate as usize, |i, _| {
        ((i as f64 * 1000.0 * std::f64::consts::TAU / src_rate as f64).sin() * 16000.0) as i16
    });
    let stem = decode_file(&path, RATE).unwrap();
    assert_eq!((stem.source_rate_hz, stem.source_channels), (src_rate, 1));
    assert!(
        (stem.frames() as i64 - RATE as i64).abs() <= 1,
        "{}",
        stem.frames()
    );
    let left: Vec<f32> = stem.samples.iter().step_by(2).copied().collect();
    let right: Vec<f32> = stem.samples.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(left, right);
    // Rising zero crossings in the middle half: 1000 per second.
    let mid = &left[12_000..36_000];
    let rising = mid.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
    assert!(
        (499..=501).contains(&rising),
        "{rising} rising crossings in 0.5 s"
    );
}

/// The fixtures: a 0.5 s 440 Hz sine in each compressed format.
#[test]
fn every_format_decodes() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for name in ["sine.flac", "sine.mp3", "sine.ogg"] {
        let stem = decode_file(&data.join(name), RATE).unwrap_or_else(|e| panic!("{e}"));
        let secs = stem.frames() as f64 / RATE as f64;
        assert!((0.45..0.6).contains(&secs), "{name}: {secs} s");
        let peak = stem.samples.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((0.3..0.7).contains(&peak), "{name}: peak {peak}");
    }
}

#[test]
fn bad_files_get_clear_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    let garbage = dir.path().join("garbage.flac");
    std::fs::write(
        &garbage,
        (0..5000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let truncated = dir.path().join("truncated.wav");
    write_wav_i16(&truncated, RATE, 2, 1000, noise);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..30]).unwrap();
    let missing = dir.path().join("missing.ogg");
    for (path, check) in [
        (
            &empty,
            (|e: &DecodeError| {
                matches!(
                    e,
                    DecodeError::Empty { .. } | DecodeError::Unsupported { .. }
                )
            }) as fn(&DecodeError) -> bool,
        ),
        (&garbage, |e| {
            matches!(
                e,
                DecodeError::Unsupported { .. } | DecodeError::Corrupt { .. }
            )
        }),
        (&truncated, |e| !matches!(e, DecodeError::Open { .. })),
        (&missing, |e| matches!(e, DecodeError::Open { .. })),
    ] {
        let err = decode_file(path, RATE).expect_err(&path.display().to_string());
        assert!(check(&err), "{}: {err:?}", path.display());
        let shown = err.to_string();
        assert!(shown.contains(&path.display().to_string()), "{shown}");
    }
}

/// `render` equals the mix computed independently: each stem times its gain,
/// summed in stem order.
#[test]
fn render_matches_an_independent_mix() {
    let dir = tempfile::tempdir().unwrap();
    let a = |i: usize, c: u16| ((i * 31 + c as usize * 7) % 200) as f32 / 400.0 - 0.25;
    let b = |i: usize, c: u16| ((i * 17 + c as usize * 3) % 300) as f32 / 900.0;
    write_wav_f32(&dir.path().join("a.wav"), 30_000, a);
    write_wav_f32(&dir.path().join("b.wav"), 20_000, b);
    write_wav_f32(&dir.path().join("c.wav"), 30_000, |_, _| 0.5);
    let stems = load_all(&[dir.path().to_path_buf()], RATE).unwrap();
    assert_eq!(
        stems.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    let spec = RenderSpec {
        gains_db: vec![(StemRef::Name("b".into()), -6.0)],
        muted: vec![StemRef::Index(2)],
        from_secs: 0.1,
        to_secs: Some(0.6),
        ..RenderSpec::default()
    };
    let mix = render(&stems, &spec).unwrap();
    assert_eq!(mix.len(), 24_000 * 2);
    let gb = 10f32.powf(-6.0 / 20.0);
    for (k, v) in mix.iter().enumerate() {
        let (i, c) = (4_800 + k / 2, (k % 2) as u16);
        let mut expect = 0.0f32;
        expect += a(i, c);
        if i < 20_000 {
            expect += b(i, c) * gb;
        }
        assert_eq!(*v, expect, "sample {k}");
    }
    // Unity gain, one stem: the file's samples, bit for bit.
    let solo = render(&stems[..1], &RenderSpec::default()).unwrap();
    for (k, v) in solo.iter().enumerate() {
        assert_eq!(*v, a(k / 2, (k % 2) as u16));
    }
}

/// The bundled demo song loads: four 40 s stems at 48 kHz, and the impulse
/// track carries its markers exactly (what the sync bench relies on).
#[test]
fn the_bundled_demo_song_and_click_tracks_decode() {
    use synfony::assets::{IMPULSE_MARKER, IMPULSE_SPACING_FRAMES, click_dir, demo_song_dir};
    let stems = load_all(&[demo_song_dir()], 48_000).unwrap();
    let names: Vec<_> = stems.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["bass", "drums", "keys", "lead"]);
    for s in &stems {
        assert_eq!(s.frames(), 40 * 48_000, "{}", s.name);
        assert_eq!(s.source_rate_hz, 48_000);
    }
    let imp = decode_file(&click_dir().join("impulses.flac"), 48_000).unwrap();
    let s16 = |x: f32| (x * 32768.0) as i16;
    let mut found = 0;
    for (f, frame) in imp.samples.chunks(2).enumerate() {
        if f % IMPULSE_SPACING_FRAMES == 0 {
            assert_eq!(s16(frame[0]), IMPULSE_MARKER, "frame {f}");
            assert_eq!(s16(frame[1]) as usize, f / IMPULSE_SPACING_FRAMES + 1);
            found += 1;
        } else {
            assert_eq!(frame, [0.0, 0.0], "frame {f}");
        }
    }
    assert_eq!(found, 400);
}

/// A folder with a good and a bad file: the window's way loads the good one
/// and names the bad one; the command line's way fails naming the bad one.
/// Files other than audio (by extension) and subfolders are not stems.
#[test]
fn one_bad_file_is_one_problem() {
    let dir = tempfile::tempdir().unwrap();
    write_wav_i16(&dir.path().join("a-good.wav"), RATE, 2, 1_000, noise);
    std::fs::write(dir.path().join("b-bad.wav"), b"RIFF, but not really").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"not a stem").unwrap();
    std::fs::create_dir(dir.path().join("sub.wav")).unwrap();
    let paths = [dir.path().to_path_buf()];

    let (stems, problems) = load_each(&paths, RATE);
    assert_eq!(stems.len(), 1);
    assert_eq!(stems[0].name, "a-good");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].to_string().contains("b-bad.wav"),
        "{}",
        problems[0]
    );

    let err = load_all(&paths, RATE).unwrap_err();
    assert!(matches!(err, LoadError::Decode(_)), "{err:?}");
    assert!(err.to_string().contains("b-bad.wav"), "{err}");
}

/// The limits: a file named twice (itself and through its folder) is one
/// stem; past MAX_STEMS each file is refused by name; an unreadable folder
/// and a folder without audio are problems, not silence.
#[test]
fn the_loader_limits() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..=MAX_STEMS {
        write_wav_i16(&dir.path().join(format!("s{i:03}.wav")), RATE, 1, 10, noise);
    }
    let first = dir.path().join("s000.wav");
    let paths = [first.clone(), dir.path().to_path_buf()];
    let (stems, problems) = load_each(&paths, RATE);
    assert_eq!(stems.len(), MAX_STEMS);
    assert_eq!(stems[0].name, "s000");
    assert_eq!(stems.iter().filter(|s| s.name == "s000").count(), 1);
    let last = format!("s{MAX_STEMS:03}.wav");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(matches!(problems[0], LoadError::TooMany { .. }));
    assert!(problems[0].to_string().contains(&last), "{}", problems[0]);
    let err = load_all(&paths, RATE).unwrap_err();
    assert!(err.to_string().contains(&last), "{err}");

    // Exactly the limit, and a file named twice, load.
    std::fs::remove_file(dir.path().join(&last)).unwrap();
    assert_eq!(load_all(&paths, RATE).unwrap().len(), MAX_STEMS);

    let empty = tempfile::tempdir().unwrap();
    let err = load_all(&[empty.path().to_path_buf()], RATE).unwrap_err();
    assert!(matches!(err, LoadError::NoStems { .. }), "{err:?}");
    let (stems, problems) = load_each(&[empty.path().to_path_buf()], RATE);
    assert!(stems.is_empty() && problems.is_empty());

    let missing = dir.path().join("gone.flac");
    let err = load_all(&[missing], RATE).unwrap_err();
    assert!(err.to_string().contains("gone.flac"), "{err}");
}

/// The first frame louder than a quarter of the peak.
fn onset(samples: &[f32]) -> usize {
    let peak = samples.iter().fold(0f32, |m, v| m.max(v.abs()));
    samples.iter().position(|v| v.abs() > peak / 4.0).unwrap() / 2
}

/// AIFF and Opus play (Opus through libopus), at the right length and level.
#[test]
fn aiff_and_opus_decode() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for name in ["sine.aiff", "sine.opus"] {
        let stem = decode_file(&data.join(name), RATE).unwrap_or_else(|e| panic!("{e}"));
        let secs = stem.frames() as f64 / RATE as f64;
        println!("{name}: {secs} s");
        assert!((0.49..0.52).contains(&secs), "{name}: {secs} s");
        let peak = stem.samples.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((0.4..0.6).contains(&peak), "{name}: peak {peak}");
    }
}

/// An AAC file in MP4 starts with the encoder's priming frames, which its
/// edit list says to skip: a burst at 0.5 s in the source is at 0.5 s here
/// (it was 1024 frames, 21 ms, late).
#[test]
fn aac_plays_without_its_encoder_delay() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let stem = decode_file(&data.join("burst.m4a"), RATE).unwrap_or_else(|e| panic!("{e}"));
    let at = onset(&stem.samples) as i64;
    println!(
        "burst at frame {at} (source: 24000), {} frames",
        stem.frames()
    );
    assert!((at - 24_000).abs() < 64, "burst at frame {at}, not 24000");
}

/// A 5.1 file is folded to stereo with the standard coefficients: centre and
/// surrounds at −3 dB into their sides, the LFE left out (it once kept only
/// its front pair).
#[test]
fn a_five_one_file_is_downmixed_with_the_standard_coefficients() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("surround.wav");
    // L, R, C, LFE, Ls, Rs (hound's channel mask for six channels).
    let level = [0.1, 0.2, 0.4, 0.8, 0.05, 0.025];
    write_wav_i16(&path, RATE, 6, 4800, |_, c| {
        (level[c as usize] * 32768.0) as i16
    });
    let stem = decode_file(&path, RATE).unwrap();
    let (l, r) = (stem.samples[200], stem.samples[201]);
    let c = std::f32::consts::FRAC_1_SQRT_2;
    assert!((l - (0.1 + c * 0.4 + c * 0.05)).abs() < 1e-3, "left {l}");
    assert!((r - (0.2 + c * 0.4 + c * 0.025)).abs() < 1e-3, "right {r}");
}

/// A file cut short plays what is there and says it is truncated.
#[test]
fn a_truncated_wav_plays_what_is_there_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.wav");
    write_wav_i16(&path, RATE, 2, 48_000, noise);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let probe = synfony::audio::decode::probe_file(&path, RATE).unwrap();
    let (have, of) = probe.truncated.expect("said truncated");
    assert_eq!(of, 48_000);
    assert!((23_000..25_000).contains(&have), "{have}");
    assert_eq!(probe.frames, have);
    let stem = decode_file(&path, RATE).unwrap();
    assert_eq!(stem.frames() as u64, have);
    // An intact file is not.
    write_wav_i16(&path, RATE, 2, 4800, noise);
    assert_eq!(
        synfony::audio::decode::probe_file(&path, RATE)
            .unwrap()
            .truncated,
        None
    );
}
