//! The command line of INTERFACE.md: every option is there, and bad values are
//! usage errors (exit 2) with one clear line naming the option.

use std::process::Command;

fn synfony(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_synfony"))
        .args(args)
        .env_remove("SYNFONY_PASSPHRASE")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_peer_option_of_the_interface() {
    let (code, out, _) = synfony(&["--help"]);
    assert_eq!(code, 0);
    for opt in [
        "--listen",
        "--advertise",
        "--join",
        "--name",
        "--passphrase",
        "--headless",
        "--data-dir",
        "--output",
        "--period-frames",
        "--report",
        "--latency-offset-ms",
        "render",
    ] {
        assert!(out.contains(opt), "--help lacks {opt}");
    }
    assert!(out.contains("SYNFONY_PASSPHRASE"));
}

#[test]
fn bad_peer_options_are_usage_errors_naming_the_option() {
    for (args, says) in [
        (
            &["--output", "speakers"][..],
            "expected device, null, wav:PATH or raw:PATH",
        ),
        (&["--output", "wav:"][..], "wav:PATH"),
        (&["--period-frames", "0"][..], "--period-frames"),
        (&["--listen", "nowhere"][..], "--listen"),
        (&["--join", "10.0.0.5"][..], "is not HOST:PORT"),
        (&["--join", "host:0"][..], "--join"),
        (&["--latency-offset-ms", "NaN"][..], "--latency-offset-ms"),
        (&["--clock-drift-ppm", "1e9"][..], "clock drift"),
        (&["--clock-offset-ms", "inf"][..], "clock offset"),
        (&["--device-drift-ppm", "NaN"][..], "--device-drift-ppm"),
    ] {
        let (code, _, err) = synfony(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn render_writes_a_wav_and_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("tone.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&stem, spec).unwrap();
    for i in 0..4_800 * 2 {
        w.write_sample((i % 1000) as i16).unwrap();
    }
    w.finalize().unwrap();
    let out = dir.path().join("mix.wav");
    let (stem, out) = (stem.to_str().unwrap(), out.to_str().unwrap());
    let (code, _, err) = synfony(&["render", stem, "--gain", "tone=-inf", "--out", out]);
    assert_eq!(code, 0, "{err}");
    let r = hound::WavReader::open(out).unwrap();
    let s = r.spec();
    assert_eq!(
        (s.channels, s.sample_rate, s.bits_per_sample),
        (2, 48_000, 32)
    );
    assert_eq!(r.len(), 4_800 * 2);
    // Usage errors exit 2; a missing file exits 1 naming it, in one line.
    let (code, _, _) = synfony(&["render", stem, "--gain", "tone=NaN", "--out", "x.wav"]);
    assert_eq!(code, 2);
    let (code, _, err) = synfony(&["render", "/nonexistent/drums.flac", "--out", "x.wav"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent/drums.flac") && err.lines().count() == 1,
        "{err}"
    );
    // Its cause once (it was printed twice: once in the message, once as
    // the error's source), and a log to a pipe carries no colour codes.
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    let (_, _, err) = synfony(&["--headless", "/nonexistent/drums.flac"]);
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

/// `synfony render` over a folder with a bad file mixes the others and names
/// the file it skipped (it once stopped at the first bad file, exit 1).
#[test]
fn render_skips_a_bad_file_in_a_folder_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(dir.path().join("good.wav"), spec).unwrap();
    for i in 0..480 {
        w.write_sample(i as i16).unwrap();
    }
    w.finalize().unwrap();
    std::fs::write(dir.path().join("broken.wav"), b"not a wav").unwrap();
    let out = dir.path().join("mix.wav");
    let (code, _, err) = synfony(&[
        "render",
        dir.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("synfony: skipped ") && l.contains("broken.wav")),
        "{err}"
    );
    assert_eq!(hound::WavReader::open(&out).unwrap().len(), 480 * 2);
}
