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
        "--session",
        "--no-announce",
        "render",
    ] {
        assert!(out.contains(opt), "--help lacks {opt}");
    }
    assert!(out.contains("SYNFONY_PASSPHRASE"));
    // It ends with three examples: start, join by address, join on the LAN.
    let tail: Vec<&str> = out.trim_end().lines().rev().take(3).collect();
    assert!(tail[2].trim_start().starts_with("synfony "), "{out}");
    assert!(tail[1].contains("--join 192.168."), "{out}");
    assert!(tail[0].contains("--join auto"), "{out}");
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

/// A headless peer is a speaker: with no `--output` it opens the sound
/// device, and where none opens (here: an ALSA without any configuration)
/// it says so once on stderr and once as an `error` event, then plays on
/// the null device.
#[test]
fn a_headless_peer_without_a_sound_device_says_so_once_and_plays_on() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("asound.conf");
    std::fs::write(&empty, "").unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_synfony"))
        .args([
            "--headless",
            "--listen",
            "127.0.0.1:0",
            "--no-announce",
            "--no-cache",
        ])
        .arg("--data-dir")
        .arg(&data)
        .env("ALSA_CONFIG_PATH", &empty)
        .env_remove("RUST_LOG")
        .env_remove("SYNFONY_PASSPHRASE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Once it is ready (and so playing), its status, then quit.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    use std::io::{BufRead, Read, Write};
    while !first.contains("\"ready\"") {
        first.clear();
        assert!(stdout.read_line(&mut first).unwrap() > 0, "no ready event");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    writeln!(stdin, "status").unwrap();
    writeln!(stdin, "quit").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = first + &rest;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events: Vec<serde_json::Value> = (stdout.lines())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ready = events.iter().find(|e| e["event"] == "ready").unwrap();
    assert!(
        ready["output"].as_str().unwrap().contains("null"),
        "{ready}"
    );
    let said: Vec<&serde_json::Value> = (events.iter())
        .filter(|e| e["event"] == "error" && e["message"].as_str().unwrap().contains("null device"))
        .collect();
    assert_eq!(said.len(), 1, "{stdout}");
    assert_eq!(stderr.matches("sound device").count(), 1, "{stderr}");
    assert!(
        !stderr.contains("ALSA lib"),
        "libasound's own lines: {stderr}"
    );
    // It still plays: the status shows blocks handed to the (null) device.
    let status = events.iter().find(|e| e["event"] == "status").unwrap();
    assert!(status["blocks"].as_u64().unwrap() > 0, "{status}");
}
