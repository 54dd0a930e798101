//! The engine driven by a mock device that pushes blocks of frames: position to
//! the frame after play, seek and pause; sample-exact unity playback; drift
//! correction under ±500 ppm of device drift.

use synfony::audio::engine::{FADE_FRAMES, GAIN_RAMP_FRAMES, MAX_RATIO_PPM};
use synfony::audio::{CHANNELS, Engine, EngineHandle, MixGains, Scheduled, StemAudio, Streamer};
use synfony::protocol::{SessionMap, Timeline};

const RATE: u32 = 48_000;
const SEC: i64 = 1_000_000_000;

/// A stem whose left sample at frame i is i / 2^20 (exact in f32 up to 2^24
/// frames) and whose right sample is its negative: the output says which frame
/// it came from.
fn ramp_stem(frames: usize) -> StemAudio {
    let mut s = Vec::with_capacity(frames * CHANNELS);
    for i in 0..frames {
        let v = i as f32 / (1 << 20) as f32;
        s.push(v);
        s.push(-v);
    }
    StemAudio::from_interleaved("ramp", RATE, s)
}

fn frame_of(sample: f32) -> f64 {
    sample as f64 * (1 << 20) as f64
}

/// An engine on the identity map (local time = session time).
fn engine(stems: &[StemAudio]) -> (Engine, EngineHandle) {
    let (engine, mut handle, _retired) =
        Engine::new(stems.iter().map(Streamer::local).collect(), RATE);
    handle.set_map(SessionMap::starting_at(0)).unwrap();
    (engine, handle)
}

fn play_from(at_session_ns: i64, position_ns: i64) -> Scheduled {
    Scheduled {
        apply_at_session_ns: at_session_ns,
        timeline: Timeline {
            playing: true,
            anchor_position_ns: position_ns,
            anchor_session_ns: at_session_ns,
        },
        gains: MixGains::UNITY,
    }
}

fn pause_at(at_session_ns: i64, position_ns: i64) -> Scheduled {
    Scheduled {
        apply_at_session_ns: at_session_ns,
        timeline: Timeline {
            playing: false,
            anchor_position_ns: position_ns,
            anchor_session_ns: at_session_ns,
        },
        gains: MixGains::UNITY,
    }
}

/// One rendered block: its play instant, position, whether playing, song.
type Block = (i64, i64, bool, [u8; 16]);

/// Renders `blocks` blocks of `frames` frames, block k playing at
/// `start_ns + k·frames/RATE·(1/(1+drift))`; returns the output and each block's
/// report.
fn run(
    engine: &mut Engine,
    start_ns: i64,
    frames: usize,
    blocks: usize,
    drift: f64,
) -> (Vec<f32>, Vec<Block>) {
    let mut out = vec![0.0f32; frames * CHANNELS * blocks];
    let mut reports = Vec::new();
    for (k, block) in out.chunks_mut(frames * CHANNELS).enumerate() {
        let t = start_ns + ((k * frames) as f64 * 1e9 / RATE as f64 / (1.0 + drift)) as i64;
        let info = engine.render(block, t);
        reports.push((t, info.pos_frames, info.playing, info.song));
    }
    (out, reports)
}

#[test]
fn plays_from_the_scheduled_frame_at_the_scheduled_instant() {
    let stem = ramp_stem(10 * RATE as usize);
    let (mut e, mut h) = engine(std::slice::from_ref(&stem));
    // Play from 2.0 s of song at session 1.0 s; render from 0.99 s.
    h.schedule_raw(play_from(SEC, 2 * SEC)).unwrap();
    let (out, reports) = run(&mut e, SEC - 10_000_000, 480, 50, 0.0);
    // The first 480 frames (0.99 s – 1.0 s) are silent, the change lands on
    // frame 480 exactly.
    assert!(out[..480 * CHANNELS].iter().all(|&v| v == 0.0));
    // After the fade-in, every frame is the song frame the timeline names.
    for i in (480 + FADE_FRAMES as usize)..(50 * 480) {
        let expect = (2 * RATE as usize + i - 480) as f64;
        assert_eq!(frame_of(out[i * CHANNELS]), expect, "frame {i}");
        assert_eq!(out[i * CHANNELS + 1], -out[i * CHANNELS]);
    }
    // Reports give the position of each block's first frame.
    for &(t, pos, playing, _) in &reports[2..] {
        let expect = 2 * RATE as i64 + (t - SEC) * RATE as i64 / SEC;
        assert!(playing);
        assert_eq!(pos, expect, "at {t}");
    }
}

#[test]
fn unity_playback_is_sample_exact() {
    // Arbitrary sample values, not a ramp: nothing may touch them.
    let mut x = 0x1234_5678u32;
    let samples: Vec<f32> = (0..RATE as usize * CHANNELS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect();
    let stem = StemAudio::from_interleaved("noise", RATE, samples.clone());
    let (mut e, mut h) = engine(&[stem]);
    h.schedule_raw(play_from(0, 0)).unwrap();
    let (out, _) = run(&mut e, 0, 512, 96, 0.0);
    let skip = FADE_FRAMES as usize * CHANNELS;
    assert_eq!(&out[skip..RATE as usize * CHANNELS], &samples[skip..]);
}

#[test]
fn seek_and_pause_land_on_the_frame() {
    let stem = ramp_stem(20 * RATE as usize);
    let (mut e, mut h) = engine(std::slice::from_ref(&stem));
    h.schedule_raw(play_from(0, 0)).unwrap();
    // Seek to 10 s at session 0.5 s + 123 frames (mid-block), pause at 1 s.
    let seek_at = SEC / 2 + 123 * SEC / RATE as i64;
    h.schedule_raw(play_from(seek_at, 10 * SEC)).unwrap();
    h.schedule_raw(pause_at(SEC, 10 * SEC + SEC / 2 - 123 * SEC / RATE as i64))
        .unwrap();
    let (out, reports) = run(&mut e, 0, 500, 120, 0.0);
    let seek_frame = RATE as usize / 2 + 123;
    let after = seek_frame + FADE_FRAMES as usize;
    for i in after..RATE as usize {
        let expect = (10 * RATE as usize + i - seek_frame) as f64;
        assert_eq!(frame_of(out[i * CHANNELS]), expect, "frame {i}");
    }
    // After the pause and its fade-out: silence, and the report holds still.
    let paused = RATE as usize + FADE_FRAMES as usize;
    assert!(out[paused * CHANNELS..].iter().all(|&v| v == 0.0));
    let last = reports.last().unwrap();
    assert!(!last.2);
    assert_eq!(last.1, 10 * RATE as i64 + RATE as i64 / 2 - 123);
}

#[test]
fn a_jump_inside_a_block_is_reported_where_it_lands() {
    let stem = ramp_stem(20 * RATE as usize);
    let (mut e, mut h) = engine(std::slice::from_ref(&stem));
    h.schedule_raw(play_from(0, 0)).unwrap();
    // A seek to 10 s on frame 123 of the block that starts at 0.5 s, and a
    // pause on frame 7 of the one that starts at 1 s.
    let seek_at = SEC / 2 + 123 * SEC / RATE as i64;
    h.schedule_raw(play_from(seek_at, 10 * SEC)).unwrap();
    h.schedule_raw(pause_at(SEC + 7 * SEC / RATE as i64, 3 * SEC))
        .unwrap();
    let mut out = vec![0.0f32; 480 * CHANNELS];
    let mut jumps = Vec::new();
    for k in 0..150 {
        let t = k * 480 * SEC / RATE as i64;
        let info = e.render(&mut out, t);
        assert_eq!(info.session_ns, Some(t), "the identity map");
        if let Some(j) = info.jump {
            jumps.push((t, j.at_frames, j.pos_frames, j.playing));
        }
    }
    assert_eq!(
        jumps,
        vec![
            (SEC / 2, 123, 10 * RATE as i64, true),
            (SEC, 7, 3 * RATE as i64, false)
        ]
    );
}

#[test]
fn drift_is_corrected_within_bounds_and_without_jumps() {
    for drift_ppm in [-500.0, 500.0] {
        let stem = ramp_stem(40 * RATE as usize);
        let (mut e, mut h) = engine(std::slice::from_ref(&stem));
        h.schedule_raw(play_from(0, 0)).unwrap();
        // The device plays 30 s of 512-frame blocks, its crystal off by drift.
        let blocks = 30 * RATE as usize / 512;
        let (_, reports) = run(&mut e, 0, 512, blocks, drift_ppm * 1e-6);
        // The ratio stays within its bound, and nothing was jumped.
        let stats = h.stats.clone();
        assert_eq!(stats.resyncs.load(std::sync::atomic::Ordering::Relaxed), 0);
        let ppb = stats.ratio_ppb.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            (ppb as f64 / 1e3).abs() <= MAX_RATIO_PPM,
            "ratio {ppb} ppb at {drift_ppm} ppm"
        );
        // After settling (10 s), each block starts within a frame of where the
        // timeline says, although the device consumed frames at the wrong rate.
        for &(t, pos, _, _) in &reports[blocks / 3..] {
            let expect = t as f64 * RATE as f64 / 1e9;
            assert!(
                (pos as f64 - expect).abs() <= 1.0,
                "{drift_ppm} ppm: at {t} ns pos {pos} vs {expect}"
            );
        }
        // The learned ratio undoes the device drift: a slow device (fewer
        // frames per second) needs more song per frame.
        assert!(
            ((ppb as f64 / 1e3) + drift_ppm).abs() < 50.0,
            "learned {ppb} ppb for {drift_ppm} ppm"
        );
    }
}

#[test]
fn gains_mute_and_master_apply() {
    let a = StemAudio::from_interleaved("a", RATE, vec![0.5; 48_000 * CHANNELS]);
    let b = StemAudio::from_interleaved("b", RATE, vec![0.25; 48_000 * CHANNELS]);
    let (mut e, mut h) = engine(&[a, b]);
    let mut s = play_from(0, 0);
    s.gains.stems[0] = 0.5;
    s.gains.stems[1] = 0.0; // muted
    s.gains.master = 2.0;
    h.schedule_raw(s).unwrap();
    let (out, _) = run(&mut e, 0, 1000, 10, 0.0);
    for &v in &out[2000 * CHANNELS..] {
        assert_eq!(v, 0.5 * 0.5 * 2.0);
    }
    let m = &h.meters;
    assert_eq!(m.stems[1].peak(), 0.0);
    assert_eq!(m.stems[0].peak(), 0.25);
    assert_eq!(m.master.peak(), 0.5);
}

/// A decided state becomes linear gains: −∞ dB and mute are silence, and the
/// master applies on top.
#[test]
fn gains_follow_the_decided_state() {
    let mut state = synfony::protocol::SessionState::new(60 * SEC, 4);
    state.channels[0].gain_db = -6.0;
    state.channels[1].gain_db = f32::NEG_INFINITY;
    state.channels[2].muted = true;
    state.master.gain_db = 6.0;
    let g = MixGains::from_state(&state);
    assert!((g.stems[0] - 0.501_187).abs() < 1e-5, "{}", g.stems[0]);
    assert_eq!(&g.stems[1..4], &[0.0, 0.0, 1.0]);
    assert!((g.master - 1.995_262).abs() < 1e-5);
    state.master.muted = true;
    assert_eq!(MixGains::from_state(&state).master, 0.0);
}

/// The local solo set: while any stem is soloed only soloed stems sound
/// (several at once), the change ramps like a gain change, and unsoloing
/// brings every stem back.
#[test]
fn solo_silences_the_other_stems_on_this_peer() {
    let stems = [
        constant_stem("a", 96_000, 0.125),
        constant_stem("b", 96_000, 0.25),
        constant_stem("c", 96_000, 0.5),
    ];
    let (mut e, mut h) = engine(&stems);
    h.schedule_raw(play_from(0, 0)).unwrap();
    let solo = h.solo.clone();
    let (out, _) = run(&mut e, 0, 480, 10, 0.0);
    assert_eq!(out[out.len() - 1], 0.875, "all three");
    assert!(solo.set(1, true) && solo.set(2, true));
    assert!(
        !solo.set(synfony::protocol::MAX_STEMS, true),
        "no such channel"
    );
    let (out, _) = run(&mut e, 4_800 * SEC / 48_000, 480, 2, 0.0);
    assert!(out[0] > 0.75 && out[0] < 0.875, "ramping: {}", out[0]);
    assert_eq!(out[out.len() - 1], 0.75, "b and c only");
    assert!(solo.is_soloed(1) && !solo.is_soloed(0));
    solo.set(1, false);
    solo.set(2, false);
    let (out, _) = run(&mut e, 5_760 * SEC / 48_000, 480, 2, 0.0);
    assert_eq!(out[out.len() - 1], 0.875, "all three again");
}

/// A constant stem (left = right = `v`) of `frames` frames.
fn constant_stem(name: &str, frames: usize, v: f32) -> StemAudio {
    StemAudio::from_interleaved(name, RATE, vec![v; frames * CHANNELS])
}

#[test]
fn a_stem_shorter_than_the_song_falls_silent_and_the_others_play_on() {
    let short = constant_stem("short", RATE as usize, 0.25);
    let long = constant_stem("long", 3 * RATE as usize, 0.5);
    let (mut e, mut h) = engine(&[short, long]);
    h.schedule_raw(play_from(0, 0)).unwrap();
    let (out, reports) = run(&mut e, 0, 480, 350, 0.0);
    let at = |secs_x100: usize| out[secs_x100 * 480 * CHANNELS];
    assert_eq!(at(50), 0.75, "both stems at 0.5 s");
    assert_eq!(at(150), 0.5, "only the long one at 1.5 s");
    assert_eq!(at(340), 0.0, "past both at 3.4 s");
    // The playhead runs on past the end: the song's length is the session's
    // business (it clamps seeks), not the engine's.
    assert!(reports.last().unwrap().2);
    assert_eq!(
        h.stats.underruns.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn a_seek_past_the_end_plays_silence_and_a_seek_back_plays_again() {
    let stem = ramp_stem(2 * RATE as usize);
    let (mut e, mut h) = engine(std::slice::from_ref(&stem));
    h.schedule_raw(play_from(0, 0)).unwrap();
    h.schedule_raw(play_from(SEC / 10, 3600 * SEC)).unwrap();
    h.schedule_raw(play_from(SEC / 5, SEC)).unwrap();
    let (out, reports) = run(&mut e, 0, 480, 40, 0.0);
    // 0.1–0.2 s: an hour in, after the seek's fade-out: silence.
    let past_end = &out[(10 * 480 + FADE_FRAMES as usize) * CHANNELS..20 * 480 * CHANNELS];
    assert!(past_end.iter().all(|&v| v == 0.0));
    assert_eq!(reports[15].1, 3600 * RATE as i64 + 5 * 480);
    // Back at 1 s of song from 0.2 s on.
    let i = 30 * 480;
    assert_eq!(
        frame_of(out[i * CHANNELS]),
        (RATE as usize + i - 20 * 480) as f64
    );
}

#[test]
fn a_remote_stem_plays_what_has_arrived_and_buffers_the_rest() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;
    use synfony::audio::StreamedStem;
    use synfony::audio::streamer::CHUNK_FRAMES;

    let local = ramp_stem(4 * RATE as usize);
    let frames = 4 * RATE as usize;
    let remote = Arc::new(StreamedStem::new(frames));
    let chunk = |c: usize| vec![0.5f32; (frames - c * CHUNK_FRAMES).min(CHUNK_FRAMES) * CHANNELS];
    // Everything but chunks 2 and 3 (0.2–0.4 s) has arrived.
    for c in (0..remote.chunks()).filter(|c| ![2, 3].contains(c)) {
        remote.fill(c, &chunk(c)).unwrap();
    }
    let stems = vec![
        Streamer::local(&local),
        Streamer::streamed("remote", remote.clone()),
    ];
    let (mut e, mut h, _r) = Engine::new(stems, RATE);
    h.set_map(SessionMap::starting_at(0)).unwrap();
    h.schedule_raw(play_from(0, 0)).unwrap();
    // 0–0.25 s: in 0.2–0.25 the remote stem is silent, the local one plays on
    // in step; the stem is buffering and the gap is counted.
    let (out, _) = run(&mut e, 0, 480, 25, 0.0);
    assert_eq!(frame_of(out[1000 * CHANNELS] - 0.5), 1000.0, "both");
    let gap = 2 * CHUNK_FRAMES + 480;
    assert_eq!(frame_of(out[gap * CHANNELS]), gap as f64, "local only");
    assert!(h.meters.stems[1].buffering());
    assert!(!h.meters.stems[0].buffering());
    assert_eq!(h.all().buffering_stems, 1);
    assert!(h.stats.underruns.load(Relaxed) > 0);
    // The missing chunks arrive at 0.25 s: from the next block the stem is
    // back, in step with the timeline.
    remote.fill(2, &chunk(2)).unwrap();
    remote.fill(3, &chunk(3)).unwrap();
    let mut block = vec![0.0f32; 480 * CHANNELS];
    e.render(&mut block, SEC / 4);
    assert_eq!(frame_of(block[0] - 0.5), (RATE / 4) as f64);
    assert!(!h.meters.stems[1].buffering());
    assert_eq!(h.all().buffering_stems, 0);
}

/// The largest step between consecutive output samples (left channel) over
/// `range`: a click shows up as a step far above the signal's own slope.
fn max_step(out: &[f32], range: std::ops::Range<usize>) -> f32 {
    range
        .map(|i| (out[(i + 1) * CHANNELS] - out[i * CHANNELS]).abs())
        .fold(0.0, f32::max)
}

#[test]
fn of_two_states_for_one_instant_the_later_sent_wins() {
    let stem = ramp_stem(40 * RATE as usize);
    let (mut e, mut h) = engine(std::slice::from_ref(&stem));
    h.schedule_raw(play_from(SEC / 20, 0)).unwrap();
    h.schedule_raw(play_from(SEC / 10, SEC)).unwrap();
    // Past 50 ms the first state's slot is free again; the correction for the
    // 100 ms instant lands in it, before the older state in slot order.
    let (_, _) = run(&mut e, 0, 480, 6, 0.0);
    h.schedule_raw(play_from(SEC / 10, 30 * SEC)).unwrap();
    let (out, _) = run(&mut e, 6 * 480 * SEC / RATE as i64, 480, 10, 0.0);
    // At 100 ms + fade: 30 s of song, not 1 s.
    let i = 4 * 480 + FADE_FRAMES as usize;
    assert_eq!(
        frame_of(out[i * CHANNELS]),
        (30 * RATE as usize + i - 4 * 480) as f64
    );
}

#[test]
fn a_gain_change_ramps_over_a_fixed_length_whatever_the_block_split() {
    let stem = constant_stem("c", 2 * RATE as usize, 0.5);
    let (mut e, mut h) = engine(&[stem]);
    h.schedule_raw(play_from(0, 0)).unwrap();
    // Mute one frame before a block boundary: a one-frame segment.
    let at = 10 * 480 + 479;
    let mut muted = play_from(0, 0);
    muted.apply_at_session_ns = at as i64 * SEC / RATE as i64;
    muted.gains.stems[0] = 0.0;
    h.schedule_raw(muted).unwrap();
    let (out, _) = run(&mut e, 0, 480, 20, 0.0);
    let steady = 0.5 / GAIN_RAMP_FRAMES as f32;
    let step = max_step(&out, FADE_FRAMES as usize..19 * 480);
    assert!(
        step <= steady * 1.01,
        "step {step}, a ramp step is {steady}"
    );
    assert_eq!(out[(at + GAIN_RAMP_FRAMES as usize) * CHANNELS], 0.0);
    assert!(out[(at + 100) * CHANNELS] > 0.2, "still ramping down");
}

#[test]
fn a_jump_during_a_crossfade_stays_continuous() {
    let stem = ramp_stem(40 * RATE as usize);
    let (mut e, mut h) = engine(std::slice::from_ref(&stem));
    h.schedule_raw(play_from(0, 0)).unwrap();
    let t1 = SEC / 10;
    h.schedule_raw(play_from(t1, 10 * SEC)).unwrap();
    // A second seek 100 frames into the first crossfade.
    let t2 = t1 + 100 * SEC / RATE as i64;
    h.schedule_raw(play_from(t2, 20 * SEC)).unwrap();
    let (out, _) = run(&mut e, 0, 480, 20, 0.0);
    // The ramp stem climbs 1/2^20 a frame; positions 0, 10 and 20 s sound at
    // 0, 0.46 and 0.92. A crossfade moves at most ~0.92/240 a frame.
    let step = max_step(&out, 0..19 * 480);
    assert!(step < 0.01, "a step of {step}: a click");
    let end = 15 * 480;
    assert_eq!(
        frame_of(out[end * CHANNELS]),
        // The second seek landed on frame 4900 (0.1 s + 100 frames).
        (20 * RATE as usize + end - 4900) as f64
    );
}

#[test]
fn three_jumps_within_one_crossfade_stay_continuous() {
    let stem = ramp_stem(40 * RATE as usize);
    let (mut e, mut h) = engine(std::slice::from_ref(&stem));
    h.schedule_raw(play_from(0, 30 * SEC)).unwrap();
    let t1 = SEC / 10;
    let frame = |n: i64| n * SEC / RATE as i64 + 1;
    h.schedule_raw(play_from(t1, 20 * SEC)).unwrap();
    h.schedule_raw(play_from(t1 + frame(120), 10 * SEC))
        .unwrap();
    h.schedule_raw(play_from(t1 + frame(121), 0)).unwrap();
    let (out, _) = run(&mut e, 0, 480, 20, 0.0);
    let step = max_step(&out, FADE_FRAMES as usize..19 * 480);
    assert!(step < 0.01, "a step of {step}: a click");
}

#[test]
fn a_muted_remote_stem_without_data_is_not_an_underrun() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;
    use synfony::audio::StreamedStem;

    let remote = Arc::new(StreamedStem::new(4 * RATE as usize));
    let (mut e, mut h, _r) = Engine::new(vec![Streamer::streamed("r", remote)], RATE);
    h.set_map(SessionMap::starting_at(0)).unwrap();
    h.schedule_raw(play_from(0, 0)).unwrap();
    let mut muted = play_from(SEC / 10, SEC / 10);
    muted.gains.stems[0] = 0.0;
    h.schedule_raw(muted).unwrap();
    run(&mut e, 0, 480, 20, 0.0);
    let before = h.stats.underruns.load(Relaxed);
    assert!(before > 0, "missing while audible is an underrun");
    run(&mut e, 20 * 480 * SEC / RATE as i64, 480, 20, 0.0);
    assert_eq!(h.stats.underruns.load(Relaxed), before, "muted: not one");
    assert!(h.meters.stems[0].buffering(), "still shown as buffering");
}

/// A song change: the next song's stems take over on the frame of the
/// scheduled instant, from its start; the old song fades out on its own
/// stems (never the new song's at the old position); the old stems come
/// back to be freed once the fade is over.
#[test]
fn a_song_change_swaps_the_stems_on_the_scheduled_frame() {
    let old = ramp_stem(10 * RATE as usize);
    // The next song: the ramp negated (left −i, right +i), so each output
    // frame says which song and which frame it came from.
    let next = {
        let mut s = ramp_stem(10 * RATE as usize);
        let samples: Vec<f32> = s.samples.iter().map(|v| -v).collect();
        s = StemAudio::from_interleaved("next", RATE, samples);
        s
    };
    let (mut e, mut h) = engine(std::slice::from_ref(&old));
    h.schedule_raw(play_from(0, 3 * SEC)).unwrap();
    // At session 1.0 s the next song starts from 0.
    h.set_stems_at(SEC, [2; 16], vec![Streamer::local(&next)])
        .unwrap();
    h.schedule_raw(play_from(SEC, 0)).unwrap();
    let (out, reports) = run(&mut e, 0, 480, 200, 0.0);
    let at = RATE as usize; // the frame of 1.0 s
    // The report names the song: the first block from 1.0 s on is song 2.
    assert_eq!(reports[99].3, [0; 16]);
    assert_eq!(reports[100].3, [2; 16]);
    // Before: the old song at 3 s + t (left positive).
    let left = |i: usize| out[i * CHANNELS];
    let right = |i: usize| out[i * CHANNELS + 1];
    assert_eq!(frame_of(left(at - 1)), (3 * RATE as usize + at - 1) as f64);
    // After the fade: only the next song, from its frame 0 (left negative).
    let settled = at + FADE_FRAMES as usize;
    assert_eq!(frame_of(-left(settled)), (settled - at) as f64);
    assert_eq!(frame_of(right(settled)), (settled - at) as f64);
    // During the fade the old song's part is the old stems at the old
    // position: left = old·w_out − next·w_in, never the next song read at 4 s.
    for i in at..settled {
        let k = (i - at) as f64;
        let w_in = k / FADE_FRAMES as f64;
        let w_out = 1.0 - k / FADE_FRAMES as f64;
        let old_frame = (3 * RATE as usize + i) as f64;
        let want = old_frame * w_out - k * w_in;
        assert!(
            (frame_of(left(i)) - want).abs() < 0.5,
            "frame {i}: {} (want {want})",
            frame_of(left(i))
        );
    }
    assert_eq!(h.stem_names(), ["next"]);
}
