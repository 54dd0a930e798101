//! Measuring when each sample of a paced raw stream was played, from outside
//! the player: the sync bench's method for synfony and Snapcast alike.
//!
//! The test signal is an impulse train (`assets/click/impulses.flac`, or
//! [`train`] of any length): every [`IMPULSE_SPACING_FRAMES`] one frame whose
//! left sample is [`IMPULSE_MARKER`] and whose right sample is the impulse's
//! index (from 1). A player writes its output as raw s16le stereo, paced in
//! real time (synfony's `--output raw:FIFO`, snapclient's `--player file`).
//! [`capture`] reads that stream, stamping every read with `CLOCK_MONOTONIC`,
//! and finds the impulses in it; [`play_times`] turns each impulse's frame in
//! the stream into the instant it was played; [`skew_by_index`] compares two
//! players impulse by impulse.
//!
//! **Reconstructing play time.** A paced player writes block `k` at
//! `t0 + k·period`; its reader sees it a little later (scheduling, never
//! earlier). So the stream's frame → time map is a line, and each read lies on
//! or above it. The slope is the median of block-to-block rates over ~1 s
//! spans, refined by the least late blocks across the run; the offset near a
//! block is the least late block within ±1 s; a lasting jump (a block the
//! player skipped) starts a new segment.
//!
//! **Finding impulses.** A resampling player (synfony's drift loop reads at a
//! rate off unity with cubic interpolation) spreads an impulse over a few
//! frames with the same weights on both channels; the impulse's position is the
//! left channel's centroid and its index the ratio of the channels' sums,
//! checked against the spacing from the impulse before.

use std::path::Path;

pub use synfony::assets::{IMPULSE_MARKER, IMPULSE_SPACING_FRAMES};

/// Stereo s16 frames' byte size.
const FRAME_BYTES: usize = 4;
/// A left sample above this (in magnitude) belongs to an impulse.
const THRESHOLD: i32 = 256;
/// Quiet frames that end an impulse's cluster.
const CLUSTER_GAP_FRAMES: u64 = 8;
/// Reads on each side of a read whose least late one gives the schedule
/// there (±1 s of 50 ms blocks).
const ENVELOPE_READS: usize = 20;
/// Reads spanned by one slope estimate.
const SLOPE_SPAN_READS: usize = 20;
/// Impulses one run apart stray at most this far (in spacings) from a whole
/// number of spacings: 48 frames, far above the drift loop's 2000 ppm (10
/// frames), far below a jump.
const RUN_TOLERANCE: f64 = 0.01;
/// A lasting jump of the residuals beyond this starts a new segment.
const SEGMENT_JUMP_NS: f64 = 10e6;

/// The impulse train, `frames` long, as interleaved s16 stereo.
pub fn train(frames: usize) -> Vec<i16> {
    let mut s = vec![0i16; frames * 2];
    for (k, at) in (0..frames).step_by(IMPULSE_SPACING_FRAMES).enumerate() {
        s[at * 2] = IMPULSE_MARKER;
        s[at * 2 + 1] = i16::try_from(k + 1).unwrap_or(i16::MAX);
    }
    s
}

/// Writes [`train`] as a 48 kHz 16-bit stereo WAV (for synfony).
pub fn write_wav(path: &Path, frames: usize) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    let mut w16 = w.get_i16_writer((frames * 2) as u32);
    for s in train(frames) {
        w16.write_sample(s);
    }
    w16.flush()?;
    w.finalize()
}

/// Writes [`train`] as raw s16le stereo (for snapserver's file source).
pub fn write_raw(path: &Path, frames: usize) -> std::io::Result<()> {
    let bytes: Vec<u8> = train(frames).iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(path, bytes)
}

/// One read from the stream: when it returned and which frames it held.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamRead {
    pub mono_ns: i64,
    pub start_frame: u64,
    pub frames: u64,
}

/// An impulse found in the stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impulse {
    pub index: u32,
    /// Its position in the stream, in (fractional) frames from the first.
    pub frame: f64,
}

/// Everything read from one player's stream.
#[derive(Clone, Debug, Default)]
pub struct Capture {
    pub reads: Vec<StreamRead>,
    pub impulses: Vec<Impulse>,
    pub frames: u64,
}

/// Reads `stream` to its end, stamping each read, and finds the impulses.
pub fn capture(mut stream: impl std::io::Read) -> std::io::Result<Capture> {
    let mut cap = Capture::default();
    let mut det = Detector::default();
    let mut buf = vec![0u8; 1 << 16];
    let mut carry = 0usize; // bytes of a partial frame at the buffer's start
    loop {
        let n = match stream.read(&mut buf[carry..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mono_ns = synfony::host_clock::monotonic_ns();
        let have = carry + n;
        let whole = have / FRAME_BYTES;
        if whole > 0 {
            cap.reads.push(StreamRead {
                mono_ns,
                start_frame: cap.frames,
                frames: whole as u64,
            });
            for f in buf[..whole * FRAME_BYTES].chunks_exact(FRAME_BYTES) {
                let l = i16::from_le_bytes([f[0], f[1]]);
                let r = i16::from_le_bytes([f[2], f[3]]);
                det.push(cap.frames, l, r);
                cap.frames += 1;
            }
        }
        carry = have - whole * FRAME_BYTES;
        buf.copy_within(whole * FRAME_BYTES..have, 0);
    }
    cap.impulses = det.finish();
    Ok(cap)
}

/// Finds impulses frame by frame.
#[derive(Debug, Default)]
pub struct Detector {
    cluster: Option<Cluster>,
    found: Vec<Candidate>,
}

#[derive(Debug, Default)]
struct Cluster {
    last_loud_frame: u64,
    sum_l: f64,
    sum_ll: f64,
    sum_lr: f64,
    sum_lf: f64,
    origin: u64,
}

impl Detector {
    pub fn push(&mut self, frame: u64, l: i16, r: i16) {
        if let Some(c) = &self.cluster
            && frame > c.last_loud_frame + CLUSTER_GAP_FRAMES
        {
            let c = self.cluster.take().expect("checked");
            self.close(c);
        }
        let loud = i32::from(l).abs() > THRESHOLD;
        if !loud && self.cluster.is_none() {
            return;
        }
        let c = self.cluster.get_or_insert_with(|| Cluster {
            origin: frame,
            ..Cluster::default()
        });
        if loud {
            c.last_loud_frame = frame;
        }
        let (l, r) = (f64::from(l), f64::from(r));
        c.sum_l += l;
        c.sum_ll += l * l;
        c.sum_lr += l * r;
        c.sum_lf += l * (frame - c.origin) as f64;
    }

    fn close(&mut self, c: Cluster) {
        // A real impulse carries most of the marker (a −20 dB mix still
        // does); a lone spike of something else does not.
        if c.sum_l < 0.05 * f64::from(IMPULSE_MARKER) {
            return;
        }
        self.found.push(Candidate {
            frame: c.origin as f64 + c.sum_lf / c.sum_l,
            // Least squares of right against left: the loud frames, whose
            // rounding matters least, count most.
            index_estimate: f64::from(IMPULSE_MARKER) * c.sum_lr / c.sum_ll,
        });
    }

    /// The impulses found. Interpolation and rounding can leave one
    /// impulse's channel ratio a unit or two off its index, so indices are
    /// settled per *run* (impulses evenly spaced, as played without a jump):
    /// the run's first index is the median of what its impulses say.
    pub fn finish(mut self) -> Vec<Impulse> {
        if let Some(c) = self.cluster.take() {
            self.close(c);
        }
        let mut out = Vec::with_capacity(self.found.len());
        let mut run: Vec<(Candidate, f64)> = Vec::new(); // with steps from the run's start
        let flush = |run: &mut Vec<(Candidate, f64)>, out: &mut Vec<Impulse>| {
            let mut offsets: Vec<f64> = run.iter().map(|(c, k)| c.index_estimate - k).collect();
            offsets.sort_by(f64::total_cmp);
            if let Some(mid) = offsets.get(offsets.len() / 2) {
                let base = mid.round();
                out.extend(run.iter().filter_map(|(c, k)| {
                    let index = base + k;
                    (index >= 1.0 && index <= f64::from(u32::MAX)).then_some(Impulse {
                        index: index as u32,
                        frame: c.frame,
                    })
                }));
            }
            run.clear();
        };
        for c in self.found {
            let step = run.last().and_then(|(prev, k)| {
                let steps = (c.frame - prev.frame) / IMPULSE_SPACING_FRAMES as f64;
                (steps >= 0.5 && (steps - steps.round()).abs() <= RUN_TOLERANCE)
                    .then(|| k + steps.round())
            });
            match step {
                Some(k) => run.push((c, k)),
                None => {
                    flush(&mut run, &mut out);
                    run.push((c, 0.0));
                }
            }
        }
        flush(&mut run, &mut out);
        out
    }
}

/// An impulse before its index is settled.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    frame: f64,
    index_estimate: f64,
}

/// The instant (real `CLOCK_MONOTONIC` ns) each impulse was played:
/// `(index, mono_ns)`, in stream order. `block_frames` is the player's write
/// size (both synfony's virtual device and snapclient's file player write
/// 2400 frames every 50 ms).
///
/// A read is stamped to the block holding its *last* frame: the newest data
/// it carries was written last. (snapclient writes through stdio, which hands
/// the pipe 4096-byte pieces, so a read may begin with the tail of the block
/// before.)
pub fn play_times(cap: &Capture, block_frames: u64) -> Vec<(u32, f64)> {
    let block_frames = block_frames.max(1);
    // (block's first frame, earliest read that reached into it)
    let mut points: Vec<(f64, f64)> = Vec::with_capacity(cap.reads.len());
    for r in cap.reads.iter().filter(|r| r.frames > 0) {
        let block = (r.start_frame + r.frames - 1) / block_frames * block_frames;
        let (f, t) = (block as f64, r.mono_ns as f64);
        match points.last_mut() {
            Some(last) if last.0 == f => last.1 = last.1.min(t),
            Some(last) if last.0 > f => {}
            _ => points.push((f, t)),
        }
    }
    let Some(rough) = slope_ns_per_frame(&points) else {
        return Vec::new();
    };
    let residual = |slope: f64| -> Vec<f64> { points.iter().map(|p| p.1 - slope * p.0).collect() };
    let segment = segments(&residual(rough));
    let slope = rough + slope_correction(&points, &residual(rough), &segment);
    let residual = residual(slope);
    cap.impulses
        .iter()
        .filter_map(|imp| {
            // The block that held the impulse; the least late block near it
            // in the same segment is the schedule.
            let j = points
                .partition_point(|p| p.0 <= imp.frame)
                .checked_sub(1)?;
            let lo = j.saturating_sub(ENVELOPE_READS);
            let hi = (j + ENVELOPE_READS + 1).min(points.len());
            let under = (lo..hi)
                .filter(|&k| segment[k] == segment[j])
                .map(|k| residual[k])
                .fold(f64::INFINITY, f64::min);
            Some((imp.index, slope * imp.frame + under))
        })
        .collect()
}

/// How far the rough pace is off, from the least late block in each tenth of
/// the longest segment (Theil–Sen: the median of their pairwise slopes), so
/// neither late reads nor a burst at the start bend it.
fn slope_correction(points: &[(f64, f64)], residual: &[f64], segment: &[usize]) -> f64 {
    let mut best = (0, 0); // (length, start) of the longest segment
    let mut start = 0;
    for j in 1..=segment.len() {
        if j == segment.len() || segment[j] != segment[start] {
            if j - start > best.0 {
                best = (j - start, start);
            }
            start = j;
        }
    }
    let (len, start) = best;
    const PARTS: usize = 10;
    if len < PARTS * 2 {
        return 0.0;
    }
    let lows: Vec<usize> = (0..PARTS)
        .map(|k| {
            let part = start + k * len / PARTS..start + (k + 1) * len / PARTS;
            part.min_by(|&a, &b| residual[a].total_cmp(&residual[b]))
                .expect("non-empty part")
        })
        .collect();
    let mut slopes = Vec::new();
    for (i, &a) in lows.iter().enumerate() {
        for &b in &lows[i + 1..] {
            let frames = points[b].0 - points[a].0;
            if frames > 0.0 {
                slopes.push((residual[b] - residual[a]) / frames);
            }
        }
    }
    slopes.sort_by(f64::total_cmp);
    slopes.get(slopes.len() / 2).copied().unwrap_or(0.0)
}

/// The stream's pace: the median over ~1 s spans of block-to-block ns per
/// frame.
fn slope_ns_per_frame(points: &[(f64, f64)]) -> Option<f64> {
    let span = SLOPE_SPAN_READS.min(points.len().checked_sub(1)?);
    if span == 0 {
        return None;
    }
    let mut rates: Vec<f64> = points
        .windows(span + 1)
        .filter_map(|w| {
            let (a, b) = (w[0], w[span]);
            (b.0 > a.0).then(|| (b.1 - a.1) / (b.0 - a.0))
        })
        .collect();
    if rates.is_empty() {
        return None;
    }
    rates.sort_by(f64::total_cmp);
    Some(rates[rates.len() / 2])
}

/// Segment numbers: a new segment starts where the residuals jump by more than
/// [`SEGMENT_JUMP_NS`] and stay there (a skipped block), not where one read
/// was merely late.
fn segments(residual: &[f64]) -> Vec<usize> {
    const LOOK: usize = 5;
    let mut seg = vec![0usize; residual.len()];
    let mut current = 0;
    for j in 1..residual.len() {
        let before = &residual[j.saturating_sub(LOOK)..j];
        let after = &residual[j..(j + LOOK).min(residual.len())];
        let before_hi = before.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let before_lo = before.iter().copied().fold(f64::INFINITY, f64::min);
        let after_hi = after.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let after_lo = after.iter().copied().fold(f64::INFINITY, f64::min);
        if after_lo > before_hi + SEGMENT_JUMP_NS || after_hi < before_lo - SEGMENT_JUMP_NS {
            current += 1;
        }
        seg[j] = current;
    }
    seg
}

/// How far `b` plays ahead of `a`, in ms, for each impulse both played: `a`'s
/// play time minus `b`'s, at `a`'s instant: `(mono_ns, skew_ms)` (the sign of
/// [`crate::report::skew_ms`]). An index played more than once (a seek back)
/// is paired with the nearest play of it within 1 s.
pub fn skew_by_index(a: &[(u32, f64)], b: &[(u32, f64)]) -> Vec<(i64, f64)> {
    let mut by_index: std::collections::HashMap<u32, Vec<f64>> = Default::default();
    for &(i, t) in b {
        by_index.entry(i).or_default().push(t);
    }
    a.iter()
        .filter_map(|&(i, ta)| {
            let tb = by_index
                .get(&i)?
                .iter()
                .copied()
                .min_by(|x, y| (x - ta).abs().total_cmp(&(y - ta).abs()))?;
            ((tb - ta).abs() < 1e9).then(|| (ta as i64, (ta - tb) / 1e6))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn detect(samples: &[i16]) -> Vec<Impulse> {
        let mut d = Detector::default();
        for (f, fr) in samples.chunks_exact(2).enumerate() {
            d.push(f as u64, fr[0], fr[1]);
        }
        d.finish()
    }

    #[test]
    fn an_exact_train_is_found_impulse_by_impulse() {
        let t = train(IMPULSE_SPACING_FRAMES * 10 + 7);
        let found = detect(&t);
        assert_eq!(found.len(), 11);
        for (k, imp) in found.iter().enumerate() {
            assert_eq!(imp.index, k as u32 + 1);
            assert_eq!(imp.frame, (k * IMPULSE_SPACING_FRAMES) as f64);
        }
        // Through `capture`, in reads that split frames.
        struct Chunky(Vec<u8>, usize);
        impl std::io::Read for Chunky {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = 4099.min(self.0.len() - self.1).min(out.len());
                out[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let cap = capture(Chunky(bytes(&t), 0)).unwrap();
        assert_eq!(cap.impulses, found);
        assert_eq!(cap.frames as usize, t.len() / 2);
        assert!(
            cap.reads
                .windows(2)
                .all(|w| w[1].start_frame > w[0].start_frame)
        );
    }

    /// Resampled with cubic weights (as the drift loop does), impulses are
    /// found at their fractional positions with their indices.
    #[test]
    fn resampled_impulses_keep_their_index_and_sub_frame_position() {
        for first in [1u32, 17, 300, 2990] {
            for t0 in [0.0f64, 0.25, 0.5, 0.9] {
                // Ten impulses, each read at a fraction `t` past a frame that
                // moves on from impulse to impulse (as a drifting read rate's
                // does); output frame i reads around source position i + t,
                // so the impulse at source frame `at` weighs w[j] (the
                // Catmull-Rom weights) in output frame at + 1 − j.
                let frac = |k: u32| (t0 + 0.37 * f64::from(k)).fract();
                let mut s = vec![0i16; 2 * (10 * IMPULSE_SPACING_FRAMES + 200)];
                for k in 0..10u32 {
                    let t = frac(k);
                    let w = [
                        -0.5 * t.powi(3) + t * t - 0.5 * t,
                        1.5 * t.powi(3) - 2.5 * t * t + 1.0,
                        -1.5 * t.powi(3) + 2.0 * t * t + 0.5 * t,
                        0.5 * t.powi(3) - 0.5 * t * t,
                    ];
                    let at = 100 + k as usize * IMPULSE_SPACING_FRAMES;
                    for (j, wj) in w.iter().enumerate() {
                        let f = at + 1 - j;
                        s[f * 2] = (f64::from(IMPULSE_MARKER) * wj).round() as i16;
                        s[f * 2 + 1] = (f64::from(first + k) * wj).round() as i16;
                    }
                }
                let found = detect(&s);
                assert_eq!(found.len(), 10, "{first} {t0}");
                for (k, imp) in found.iter().enumerate() {
                    assert_eq!(imp.index, first + k as u32, "t0 = {t0}: {found:?}");
                    let at = (100 + k * IMPULSE_SPACING_FRAMES) as f64;
                    let t = frac(k as u32);
                    assert!((imp.frame - (at - t)).abs() < 0.05, "{imp:?} t = {t}");
                }
            }
        }
    }

    /// A jump (a seek, a resync) starts a new run with its own indices.
    #[test]
    fn a_jump_starts_a_new_run() {
        let mut s = train(IMPULSE_SPACING_FRAMES * 5);
        let later = train(IMPULSE_SPACING_FRAMES * 60);
        s.extend_from_slice(&later[2 * (IMPULSE_SPACING_FRAMES * 50 + 1000)..]);
        let found = detect(&s);
        let indices: Vec<u32> = found.iter().map(|i| i.index).collect();
        assert_eq!(indices, [1, 2, 3, 4, 5, 52, 53, 54, 55, 56, 57, 58, 59, 60]);
    }

    fn reads(period_ns: f64, lags_ns: &[f64]) -> Vec<StreamRead> {
        lags_ns
            .iter()
            .enumerate()
            .map(|(k, lag)| StreamRead {
                mono_ns: (1e9 + k as f64 * period_ns + lag) as i64,
                start_frame: 2400 * k as u64,
                frames: 2400,
            })
            .collect()
    }

    /// Play time is the schedule under the reads, whatever their lateness;
    /// a skipped block starts a new segment instead of bending the line.
    #[test]
    fn play_time_is_the_lower_envelope_of_the_reads() {
        // 50 ms blocks, a drifting device (+100 ppm), reads late by 0–3 ms,
        // mostly by little (as a scheduler's wake-ups are): the least late
        // reads nearby bound the error.
        let period = 50e6 * (1.0 + 100e-6);
        let lags: Vec<f64> = (0..200)
            .map(|k| 3e6 * (((k * 7919) % 101) as f64 / 101.0).powi(3))
            .collect();
        let mut cap = Capture {
            reads: reads(period, &lags),
            ..Capture::default()
        };
        cap.impulses = (0..90)
            .map(|k| Impulse {
                index: k + 1,
                frame: (k as usize * IMPULSE_SPACING_FRAMES) as f64 + 0.5,
            })
            .collect();
        let times = play_times(&cap, 2400);
        assert_eq!(times.len(), 90);
        for (i, t) in &times {
            let f = ((i - 1) as usize * IMPULSE_SPACING_FRAMES) as f64 + 0.5;
            let truth = 1e9 + f / 2400.0 * period;
            assert!(
                (t - truth).abs() < 0.1e6 / 4.0,
                "impulse {i}: {} ns off",
                t - truth
            );
        }
        // Block 100 skipped: every read from it on is 50 ms later.
        for r in cap.reads.iter_mut().skip(100) {
            r.mono_ns += period as i64;
        }
        let times = play_times(&cap, 2400);
        for (i, t) in &times {
            let f = ((i - 1) as usize * IMPULSE_SPACING_FRAMES) as f64 + 0.5;
            let late = if f >= 240_000.0 { period } else { 0.0 };
            let truth = 1e9 + f / 2400.0 * period + late;
            assert!(
                (t - truth).abs() < 0.1e6 / 4.0,
                "impulse {i}: {} ns off",
                t - truth
            );
        }
    }

    /// A writer behind stdio's 4096-byte buffer (snapclient): each 2400-frame
    /// block reaches the reader as whole 1024-frame pieces, the tail held
    /// back until the next block, and the first second is a burst.
    #[test]
    fn play_time_survives_stdio_chunking_and_a_starting_burst() {
        let period = 50e6;
        let mut reads = Vec::new();
        let mut flushed = 0u64; // frames handed to the pipe so far
        for k in 0..400u64 {
            let written = (k + 1) * 2400;
            let pieces = written * 4 / 4096 * 4096 / 4;
            // The first 20 blocks are written in a burst at 1.0 s.
            let at = if k < 20 { 1e9 } else { 1e9 + k as f64 * period };
            let lag = ((k * 7919) % 13) as f64 * 20e3;
            if pieces > flushed {
                reads.push(StreamRead {
                    mono_ns: (at + lag) as i64,
                    start_frame: flushed,
                    frames: pieces - flushed,
                });
                flushed = pieces;
            }
        }
        let impulses = (0..190)
            .map(|k| Impulse {
                index: k + 1,
                frame: (k as usize * IMPULSE_SPACING_FRAMES) as f64 + 100.0,
            })
            .collect();
        let cap = Capture {
            reads,
            impulses,
            frames: 0,
        };
        for (i, t) in play_times(&cap, 2400) {
            let f = ((i - 1) as usize * IMPULSE_SPACING_FRAMES) as f64 + 100.0;
            if f < 40.0 * 2400.0 {
                continue; // within the burst and the envelope's reach of it
            }
            let truth = 1e9 + f / 2400.0 * period;
            assert!(
                (t - truth).abs() < 50e3,
                "impulse {i}: {} ns off",
                t - truth
            );
        }
    }

    #[test]
    fn skew_pairs_the_same_impulse() {
        let a = [(1, 1e9), (2, 1.1e9), (3, 1.2e9)];
        let b = [(2, 1.1e9 + 2e5), (3, 1.2e9 - 1e5), (4, 1.3e9)];
        let s = skew_by_index(&a, &b);
        assert_eq!(s.len(), 2);
        // b played impulse 2 later (behind) and impulse 3 earlier (ahead).
        assert!(
            (s[0].1 + 0.2).abs() < 1e-9 && (s[1].1 - 0.1).abs() < 1e-9,
            "{s:?}"
        );
    }
}
