//! The output callback is real-time safe: `Engine::render` never allocates or
//! frees, whatever it is asked to do (start, seek mid-block, gain ramps, pause,
//! drift, a block longer than its scratch, a full pending list, solo changes).
//! Neither does the sound card's error callback. Runs under `assert_no_alloc`,
//! which aborts on any allocation in the guarded closure.

use assert_no_alloc::{AllocDisabler, assert_no_alloc};
use synfony::audio::engine::MAX_BLOCK_FRAMES;
use synfony::audio::{CHANNELS, Engine, MixGains, Scheduled, StemAudio, Streamer};
use synfony::protocol::{SessionMap, Timeline};

#[global_allocator]
static ALLOC: AllocDisabler = AllocDisabler;

const SEC: i64 = 1_000_000_000;

fn state(at: i64, playing: bool, pos: i64, gain: f32) -> Scheduled {
    let mut gains = MixGains::UNITY;
    gains.stems[1] = gain;
    Scheduled {
        apply_at_session_ns: at,
        timeline: Timeline {
            playing,
            anchor_position_ns: pos,
            anchor_session_ns: at,
        },
        gains,
    }
}

#[test]
fn render_never_allocates() {
    let mut stems: Vec<Streamer> = (0..8)
        .map(|i| {
            let s =
                StemAudio::from_interleaved(&format!("s{i}"), 48_000, vec![0.1; 96_000 * CHANNELS]);
            Streamer::local(&s)
        })
        .collect();
    // A remote stem with every other chunk missing: buffering costs nothing.
    let remote = std::sync::Arc::new(synfony::audio::StreamedStem::new(96_000));
    for c in (0..remote.chunks()).step_by(2) {
        let n = (96_000 - c * 4800).min(4800);
        remote.fill(c, &vec![0.2; n * CHANNELS]).unwrap();
    }
    stems.push(Streamer::streamed("remote", remote));
    let (mut engine, mut handle, mut retired) = Engine::new(stems, 48_000);
    handle
        .set_map(SessionMap {
            anchor_local_ns: 0,
            anchor_session_ns: 0,
            rate: 120e-6,
        })
        .unwrap();
    handle.schedule_raw(state(0, true, 0, 1.0)).unwrap();
    handle
        .schedule_raw(state(SEC / 3 + 77, true, SEC / 2, 0.3))
        .unwrap();
    handle.schedule_raw(state(SEC, false, SEC, 0.0)).unwrap();
    handle
        .schedule_raw(state(SEC + SEC / 4, true, 0, 1.0))
        .unwrap();
    // More than the pending list holds: the overflow is dropped and counted.
    for i in 0..40 {
        handle
            .schedule_raw(state(5 * SEC + i, true, 0, 1.0))
            .unwrap();
    }
    let mut out = vec![0.0f32; (MAX_BLOCK_FRAMES + 1000) * CHANNELS];
    let mut t = 0i64;
    for (b, block) in [256usize, 512, 1024, MAX_BLOCK_FRAMES + 1000, 480]
        .into_iter()
        .enumerate()
    {
        // The window solos and unsolos while it plays (a ramped change).
        handle.solo.set(b % 3, b % 2 == 0);
        for _ in 0..20 {
            let buf = &mut out[..block * CHANNELS];
            // The device runs 300 ppm fast relative to the local clock.
            assert_no_alloc(|| {
                engine.render(buf, t);
            });
            t += (block as f64 * 1e9 / 48_000.0 / 1.0003) as i64;
        }
    }
    retired.collect();
    assert!(
        handle
            .stats
            .dropped_commands
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

/// What a backend calls per buffer (clock mapping, render, the report line
/// pushed to its ring, even when the ring is full) allocates nothing either.
#[test]
fn play_block_never_allocates() {
    use std::sync::Arc;
    use synfony::audio::output::{OutputConfig, OutputStats, Player};
    use synfony::host_clock::LocalClock;

    let s = StemAudio::from_interleaved("s", 48_000, vec![0.1; 48_000 * CHANNELS]);
    let (engine, mut handle, _retired) = Engine::new(vec![Streamer::local(&s)], 48_000);
    handle.set_map(SessionMap::starting_at(0)).unwrap();
    handle.schedule_raw(state(0, true, 0, 1.0)).unwrap();
    let cfg = OutputConfig {
        clock: LocalClock::skewed(12.5, 40.0, 0).unwrap(),
        latency_offset_ns: 3_000_000,
        ..OutputConfig::default()
    };
    let (tx, _rx) = rtrb::RingBuffer::new(4);
    let stats = Arc::new(OutputStats::default());
    let mut player = Player::new(engine, &cfg, Some(tx), stats.clone());
    let mut out = vec![0.0f32; 2400 * CHANNELS];
    // The sound card's callback smooths its instants first.
    let mut device = synfony::audio::output::device_clock::DeviceClock::new(48_000);
    for k in 0..10i64 {
        assert_no_alloc(|| {
            let at = device.on_callback(k * 50_000_000 + (k % 3) * 100_000, 2400);
            player.play_block(&mut out, at);
        });
    }
    // The ring held 4 lines; the other 6 were counted, not blocked on.
    assert_eq!(
        stats
            .report_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        6
    );
}

/// The song's stems replacing the engine's (a joiner learning the song) while
/// it plays: the swap and the remote stems it brings allocate and free
/// nothing on the audio thread (the old list comes back through `Retired`).
#[test]
fn swapping_in_remote_stems_never_allocates() {
    use std::sync::Arc;
    use synfony::audio::StreamedStem;

    let s = StemAudio::from_interleaved("own", 48_000, vec![0.1; 48_000 * CHANNELS]);
    let (mut engine, mut handle, mut retired) = Engine::new(vec![Streamer::local(&s)], 48_000);
    handle.set_map(SessionMap::starting_at(0)).unwrap();
    handle.schedule_raw(state(0, true, 0, 1.0)).unwrap();
    let remote = Arc::new(StreamedStem::new(48_000));
    remote.fill(0, &vec![0.25; 4_800 * CHANNELS]).unwrap();
    let mut out = vec![0.0f32; 480 * CHANNELS];
    let mut t = 0i64;
    for block in 0..40 {
        if block == 5 {
            handle
                .set_stems(vec![
                    Streamer::streamed("bass", remote.clone()),
                    Streamer::local(&s),
                ])
                .unwrap();
        }
        assert_no_alloc(|| {
            engine.render(&mut out, t);
        });
        t += 10_000_000;
    }
    retired.collect();
    assert_eq!(handle.stem_names(), ["bass", "own"]);
    assert!(
        handle.meters.stems[0].buffering(),
        "past the first chunk, the remote stem has no data"
    );
}

/// A song change scheduled at an instant (the stems swap on its frame, the
/// old song fades out on its own stems, which then go back to be freed)
/// allocates and frees nothing on the audio thread; nor does a second one
/// within the fade.
#[test]
fn a_song_change_never_allocates() {
    let a = StemAudio::from_interleaved("a", 48_000, vec![0.1; 48_000 * CHANNELS]);
    let b = StemAudio::from_interleaved("b", 48_000, vec![0.2; 48_000 * CHANNELS]);
    let (mut engine, mut handle, mut retired) = Engine::new(vec![Streamer::local(&a)], 48_000);
    handle.set_map(SessionMap::starting_at(0)).unwrap();
    handle.schedule_raw(state(0, true, 0, 1.0)).unwrap();
    handle
        .set_stems_at(
            SEC / 10,
            [1; 16],
            vec![Streamer::local(&b), Streamer::local(&a)],
        )
        .unwrap();
    handle.schedule_raw(state(SEC / 10, true, 0, 1.0)).unwrap();
    let mut out = vec![0.0f32; 480 * CHANNELS];
    let mut t = 0i64;
    for block in 0..40 {
        if block == 10 {
            // Two changes 1 ms apart: the first one's fade is cut.
            handle
                .set_stems_at(t + SEC / 100, [2; 16], vec![Streamer::local(&a)])
                .unwrap();
            handle
                .schedule_raw(state(t + SEC / 100, true, 0, 1.0))
                .unwrap();
            handle
                .set_stems_at(
                    t + SEC / 100 + 1_000_000,
                    [3; 16],
                    vec![Streamer::local(&b)],
                )
                .unwrap();
            handle
                .schedule_raw(state(t + SEC / 100 + 1_000_000, true, 0, 1.0))
                .unwrap();
        }
        assert_no_alloc(|| {
            engine.render(&mut out, t);
        });
        t += 10_000_000;
    }
    retired.collect();
    assert_eq!(handle.stem_names(), ["b"]);
}

/// The sound card's error callback touches atomics only, whatever the error:
/// an xrun, a lost device, an invalidated stream, anything else.
#[test]
fn the_device_error_callback_never_allocates() {
    use synfony::audio::output::{OutputStats, StreamHealth, on_stream_error};
    let stats = OutputStats::default();
    let health = StreamHealth::default();
    let kinds = [
        cpal::ErrorKind::Xrun,
        cpal::ErrorKind::DeviceChanged,
        cpal::ErrorKind::DeviceNotAvailable,
        cpal::ErrorKind::StreamInvalidated,
        cpal::ErrorKind::BackendError,
        cpal::ErrorKind::Other,
    ];
    assert_no_alloc(|| {
        for _ in 0..3 {
            for &kind in &kinds {
                on_stream_error(kind, &stats, &health);
            }
        }
    });
    assert_eq!(stats.xruns.load(std::sync::atomic::Ordering::Relaxed), 3);
}
