//! The audio engine's speed.
//!
//! - `mix/N`: one 10 ms block (480 frames) of N stems, every stem audible with
//!   its own gain. `unity` reads whole frames (a device in step with the
//!   clock); `drift` reads at a 137 ppm ratio (the cubic interpolation path,
//!   the worst case). The fraction of one core the mix needs is the block's
//!   time over 10 ms: the target is 256 stems under 25% (2.5 ms).
//! - `decode/FORMAT`: decoding a file to 48 kHz stereo f32, throughput in
//!   seconds of audio per second (criterion's "elements" are frames: divide by
//!   48 000 for × real time). The target is ≥ 200× real time.
//!
//! `cargo bench --bench audio`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::path::{Path, PathBuf};
use synfony::audio::decode::decode_file;
use synfony::audio::{CHANNELS, Engine, MixGains, Scheduled, StemAudio, Streamer};
use synfony::protocol::{SessionMap, Timeline};

const RATE: u32 = 48_000;
const BLOCK_FRAMES: usize = 480;

/// N distinct stems of 2 s of noise-like audio (distinct memory per stem, as
/// real stems are, so the cache sees the real traffic).
fn stems(n: usize) -> Vec<Streamer> {
    let frames = 2 * RATE as usize;
    (0..n)
        .map(|k| {
            let mut x = 0x9E37_79B9u32.wrapping_mul(k as u32 + 1);
            let samples = (0..frames * CHANNELS)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    (x as f32 / u32::MAX as f32 - 0.5) * 0.1
                })
                .collect();
            Streamer::local(&StemAudio::from_interleaved(
                &format!("s{k}"),
                RATE,
                samples,
            ))
        })
        .collect()
}

fn bench_mix(c: &mut Criterion) {
    let mut g = c.benchmark_group("mix");
    g.throughput(Throughput::Elements(BLOCK_FRAMES as u64));
    for n in [1usize, 16, 64, 256] {
        let stems = stems(n);
        for (case, map_rate) in [("unity", 0.0), ("drift", 137e-6)] {
            let (mut engine, mut handle, mut retired) = Engine::new(stems.clone(), RATE);
            handle
                .set_map(SessionMap {
                    anchor_local_ns: 0,
                    anchor_session_ns: 0,
                    rate: map_rate,
                })
                .unwrap();
            let mut gains = MixGains::UNITY;
            for (i, g) in gains.stems.iter_mut().enumerate().take(n) {
                *g = 0.5 + (i % 7) as f32 * 0.05;
            }
            handle
                .schedule_raw(Scheduled {
                    apply_at_session_ns: 0,
                    timeline: Timeline {
                        playing: true,
                        anchor_position_ns: 0,
                        anchor_session_ns: 0,
                    },
                    gains,
                })
                .unwrap();
            let mut out = vec![0.0f32; BLOCK_FRAMES * CHANNELS];
            // The device's clock: blocks of 10 ms.
            let mut t = 0i64;
            let block_ns = 10_000_000i64;
            // Warm up past the start fade so the steady path is measured.
            for _ in 0..10 {
                engine.render(&mut out, t);
                t += block_ns;
            }
            retired.collect();
            g.bench_function(BenchmarkId::new(case, n), |b| {
                b.iter(|| {
                    // Loop within the 2 s stems: stepping the clock back makes
                    // the engine jump (one crossfaded block in 140).
                    if t > 1_500_000_000 {
                        t = 100_000_000;
                    }
                    engine.render(&mut out, t);
                    t += block_ns;
                    std::hint::black_box(&out);
                })
            });
        }
    }
    g.finish();
}

fn data(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn bench_decode(c: &mut Criterion) {
    // WAV files are written from the demo's keys stem at bench time (48 kHz
    // passes through; 44.1 kHz goes through the resampler).
    let dir = tempfile::tempdir().unwrap();
    let keys = decode_file(&data("assets/demo/keys.flac"), RATE).unwrap();
    let ten_secs = &keys.samples[..10 * RATE as usize * CHANNELS];
    let mut files = vec![("flac", data("assets/demo/keys.flac"))];
    for (name, rate) in [("wav", 48_000u32), ("wav-44k1-resampled", 44_100)] {
        let path = dir.path().join(format!("{name}.wav"));
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for &s in ten_secs {
            w.write_sample((s * 32768.0) as i16).unwrap();
        }
        w.finalize().unwrap();
        files.push((name, path));
    }
    files.push(("mp3", data("tests/data/music.mp3")));
    files.push(("ogg", data("tests/data/music.ogg")));

    let mut g = c.benchmark_group("decode");
    g.sample_size(10);
    for (name, path) in files {
        let frames = decode_file(&path, RATE).unwrap().frames();
        g.throughput(Throughput::Elements(frames as u64));
        g.bench_function(name, |b| b.iter(|| decode_file(&path, RATE).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, bench_mix, bench_decode);
criterion_main!(benches);
