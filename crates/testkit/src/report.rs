//! Reading `--report` files and measuring how far apart peers play: the one
//! method the integration tests and the sync bench share.
//!
//! Peers on one machine stamp their report lines with the same real
//! `CLOCK_MONOTONIC`, so the skew between two peers at an instant `t` is the
//! difference of their song positions at `t`. A position between two report
//! lines is interpolated, but only inside a *continuous* stretch: both lines
//! playing, and the position advancing by the elapsed time (within
//! [`CONTINUITY_FRAMES`]). Across a seek, a pause or a resync there is no
//! sample.

use std::path::Path;

use serde_json::Value;

use synfony::audio::Jump;
use synfony::audio::output::ReportLine;

/// How far a stretch between two lines may stray from real time and still be
/// "continuous" (0.5 ms at 48 kHz: far above drift correction, far below a
/// jump).
pub const CONTINUITY_FRAMES: f64 = 24.0;

/// Parses one report line (`None` for anything else).
pub fn parse_line(line: &str) -> Option<(ReportLine, u32)> {
    let v: Value = serde_json::from_str(line).ok()?;
    Some((
        ReportLine {
            mono_ns: v["mono_ns"].as_i64()?,
            pos_frames: v["pos_frames"].as_i64()?,
            playing: v["playing"].as_bool()?,
            song: v["song"].as_str().and_then(song_bytes).unwrap_or_default(),
            session_ns: v["session_ns"].as_i64(),
            jump: parse_jump(&v["jump"]),
        },
        u32::try_from(v["rate"].as_u64()?).ok()?,
    ))
}

/// A line's `jump` object, if it has one.
fn parse_jump(v: &Value) -> Option<Jump> {
    Some(Jump {
        at_frames: u32::try_from(v["at_frames"].as_u64()?).ok()?,
        pos_frames: v["pos_frames"].as_i64()?,
        playing: v["playing"].as_bool()?,
        song: v["song"].as_str().and_then(song_bytes).unwrap_or_default(),
    })
}

/// A song id's 32 hex digits as its bytes.
pub fn song_bytes(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A peer's report, in order, at one rate. A line whose block holds a jump
/// is followed by two more at the jump's instant: where the block's start
/// had got to, and where the jump landed (each analysis then sees the block
/// before and after the jump as two stretches, none across it).
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub lines: Vec<ReportLine>,
    pub rate_hz: u32,
}

impl Report {
    /// Reads a report file; lines that do not parse (a partial last line
    /// while the peer writes) are skipped.
    pub fn read(path: &Path) -> std::io::Result<Report> {
        let text = std::fs::read_to_string(path)?;
        Ok(Report::parse(&text))
    }

    pub fn parse(text: &str) -> Report {
        let mut r = Report {
            lines: Vec::new(),
            rate_hz: 48_000,
        };
        for (line, rate) in text.lines().filter_map(parse_line) {
            r.rate_hz = rate;
            r.lines.push(line);
            if let Some(j) = line.jump {
                let at_ns = i64::from(j.at_frames) * 1_000_000_000 / i64::from(rate.max(1));
                let advanced = if line.playing {
                    i64::from(j.at_frames)
                } else {
                    0
                };
                // The jump's instant: where the block had got to, then
                // where the jump landed.
                let at = ReportLine {
                    mono_ns: line.mono_ns + at_ns,
                    session_ns: line.session_ns.map(|s| s + at_ns),
                    jump: None,
                    ..line
                };
                r.lines.push(ReportLine {
                    pos_frames: line.pos_frames + advanced,
                    ..at
                });
                r.lines.push(ReportLine {
                    pos_frames: j.pos_frames,
                    playing: j.playing,
                    song: j.song,
                    ..at
                });
            }
        }
        r
    }

    /// The lines from `mono_ns` on.
    pub fn since(&self, mono_ns: i64) -> Report {
        Report {
            lines: self
                .lines
                .iter()
                .copied()
                .filter(|l| l.mono_ns >= mono_ns)
                .collect(),
            rate_hz: self.rate_hz,
        }
    }

    /// The lines before `mono_ns`.
    pub fn until(&self, mono_ns: i64) -> Report {
        Report {
            lines: self
                .lines
                .iter()
                .copied()
                .filter(|l| l.mono_ns < mono_ns)
                .collect(),
            rate_hz: self.rate_hz,
        }
    }

    /// Whether the stretch from line `i` to line `i + 1` is continuous play.
    fn continuous(&self, i: usize) -> bool {
        let (a, b) = (self.lines[i], self.lines[i + 1]);
        if !(a.playing && b.playing) || b.mono_ns <= a.mono_ns {
            return false;
        }
        let elapsed = (b.mono_ns - a.mono_ns) as f64 * f64::from(self.rate_hz) / 1e9;
        ((b.pos_frames - a.pos_frames) as f64 - elapsed).abs() <= CONTINUITY_FRAMES
    }

    /// The song position (fractional frames) at real time `mono_ns`, if that
    /// falls inside a continuous stretch.
    pub fn position_at(&self, mono_ns: i64) -> Option<f64> {
        let i = self.lines.partition_point(|l| l.mono_ns <= mono_ns);
        if i == 0 || i >= self.lines.len() || !self.continuous(i - 1) {
            return None;
        }
        let (a, b) = (self.lines[i - 1], self.lines[i]);
        let slope = (b.pos_frames - a.pos_frames) as f64 / (b.mono_ns - a.mono_ns) as f64;
        Some(a.pos_frames as f64 + (mono_ns - a.mono_ns) as f64 * slope)
    }

    /// Whether play is continuous from `mono_ns − margin_ns` to
    /// `mono_ns + margin_ns`.
    pub fn continuous_around(&self, mono_ns: i64, margin_ns: i64) -> bool {
        let first = self
            .lines
            .partition_point(|l| l.mono_ns <= mono_ns - margin_ns);
        let last = self
            .lines
            .partition_point(|l| l.mono_ns < mono_ns + margin_ns);
        first > 0 && last < self.lines.len() && (first - 1..last).all(|i| self.continuous(i))
    }

    /// The session time (as this peer's map says) at real time `mono_ns`,
    /// interpolated between the lines around it.
    pub fn session_at(&self, mono_ns: i64) -> Option<f64> {
        let i = self.lines.partition_point(|m| m.mono_ns <= mono_ns);
        let (p, q) = (self.lines.get(i.checked_sub(1)?)?, self.lines.get(i)?);
        let (sp, sq) = (p.session_ns?, q.session_ns?);
        if q.mono_ns <= p.mono_ns {
            return None;
        }
        let slope = (sq - sp) as f64 / (q.mono_ns - p.mono_ns) as f64;
        Some(sp as f64 + (mono_ns - p.mono_ns) as f64 * slope)
    }

    /// Gaps in delivery: consecutive lines further apart than `period_ns`
    /// (plus 1 ms of scheduling slack), i.e. blocks the device missed.
    pub fn gaps(&self, period_ns: i64) -> usize {
        self.lines
            .windows(2)
            .filter(|w| w[1].mono_ns - w[0].mono_ns > period_ns + 1_000_000)
            .count()
    }
}

/// How near a discontinuity (a seek, a song change, a start) a skew sample
/// may be: two peers jump at instants a skew apart, and in between they play
/// different material — their positions then differ by the jump, not by
/// the skew.
pub const JUMP_MARGIN_NS: i64 = 5_000_000;

/// `b`'s position minus `a`'s, in ms, at each of `a`'s lines where both play
/// continuously, not within [`JUMP_MARGIN_NS`] of a jump: `(mono_ns, skew_ms)`.
pub fn skew_ms(a: &Report, b: &Report) -> Vec<(i64, f64)> {
    let ms_per_frame = 1e3 / f64::from(a.rate_hz);
    a.lines
        .iter()
        .filter(|l| {
            a.continuous_around(l.mono_ns, JUMP_MARGIN_NS)
                && b.continuous_around(l.mono_ns, JUMP_MARGIN_NS)
        })
        .filter_map(|l| {
            let pb = b.position_at(l.mono_ns)?;
            Some((l.mono_ns, (pb - l.pos_frames as f64) * ms_per_frame))
        })
        .collect()
}

/// How far `b`'s session clock is ahead of `a`'s, in ms, at each of `a`'s
/// lines (`(mono_ns, ms)`): the part of the skew that is the peers' maps
/// disagreeing; what the skew has on top is the engines' error against
/// their own maps. Needs `session_ns` in both reports.
pub fn clock_skew_ms(a: &Report, b: &Report) -> Vec<(i64, f64)> {
    a.lines
        .iter()
        .filter_map(|l| {
            let sb = b.session_at(l.mono_ns)?;
            Some((l.mono_ns, (sb - l.session_ns? as f64) / 1e6))
        })
        .collect()
}

/// Percentiles of absolute values.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// Percentiles of the absolute values (for skew, whichever its sign).
    pub fn of_abs(values: impl IntoIterator<Item = f64>) -> Summary {
        Summary::of(values.into_iter().map(f64::abs))
    }

    /// Percentiles of the values as they are (for latencies).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Summary {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return Summary::default();
        }
        v.sort_by(f64::total_cmp);
        Summary {
            n: v.len(),
            p50: quantile(&v, 0.5),
            p95: quantile(&v, 0.95),
            p99: quantile(&v, 0.99),
            max: v[v.len() - 1],
        }
    }
}

/// The nearest-rank `q`-quantile (0 ≤ q ≤ 1) of sorted, non-empty values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize]
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.3} ms, p95 {:.3} ms, p99 {:.3} ms, max {:.3} ms (n = {})",
            self.p50, self.p95, self.p99, self.max, self.n
        )
    }
}

/// The first instant from which every skew sample stays within `bound_ms`.
pub fn settled_at(samples: &[(i64, f64)], bound_ms: f64) -> Option<i64> {
    let last_bad = samples.iter().rposition(|(_, s)| s.abs() > bound_ms);
    match last_bad {
        None => samples.first().map(|s| s.0),
        Some(i) => samples.get(i + 1).map(|s| s.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(mono_ms: i64, pos_frames: i64, playing: bool) -> String {
        format!(
            "{{\"mono_ns\":{},\"pos_frames\":{pos_frames},\"rate\":48000,\"playing\":{playing}}}\n",
            mono_ms * 1_000_000
        )
    }

    /// Playing from `pos0` at `t0_ms`, one line per 50 ms, `n` lines.
    fn playing(t0_ms: i64, pos0: i64, n: i64) -> String {
        (0..n)
            .map(|k| line(t0_ms + 50 * k, pos0 + 2400 * k, true))
            .collect()
    }

    #[test]
    fn skew_is_measured_inside_continuous_stretches_only() {
        let a = Report::parse(&playing(0, 0, 10));
        // b is 48 frames (1 ms) ahead, and its lines fall between a's.
        let b = Report::parse(&playing(25, 1200 + 48, 10));
        let s = skew_ms(&a, &b);
        assert!(!s.is_empty());
        for (_, ms) in &s {
            assert!((ms - 1.0).abs() < 1e-9, "{s:?}");
        }
        // A seek in b (a jump of 10 s) removes the samples around it.
        let mut text = playing(25, 1200, 5);
        text += &playing(275, 480_000, 5);
        let b = Report::parse(&text);
        let s = skew_ms(&a, &b);
        assert!(
            s.iter().all(|(t, _)| *t < 225_000_000 || *t >= 275_000_000),
            "{s:?}"
        );
        // Paused lines give nothing.
        let p = Report::parse(&(0..10).map(|k| line(50 * k, 0, false)).collect::<String>());
        assert!(skew_ms(&a, &p).is_empty());
    }

    #[test]
    fn a_jump_inside_a_block_splits_its_stretch_where_it_lands() {
        // Both peers seek to 10 s at 120 ms: a's block from 100 ms holds it
        // at frame 960; b's blocks start on the seek.
        let mut a = playing(0, 0, 2);
        a += "{\"mono_ns\":100000000,\"pos_frames\":4800,\"rate\":48000,\"playing\":true,\
              \"session_ns\":100000000,\"jump\":{\"at_frames\":960,\"pos_frames\":480000,\
              \"playing\":true,\"song\":\"00000000000000000000000000000000\"}}\n";
        a += &playing(150, 480_000 + 1440, 4);
        let mut b = playing(20, 960, 2);
        b += &playing(120, 480_000, 4);
        let (a, b) = (Report::parse(&a), Report::parse(&b));
        assert_eq!(a.lines.len(), 3 + 2 + 4);
        assert_eq!(a.position_at(110_000_000), Some(5280.0));
        assert_eq!(a.position_at(130_000_000), Some(480_480.0));
        let s = skew_ms(&b, &a);
        // The first of b's lines after the seek is a sample: a's block that
        // holds the jump is continuous from its jump on.
        assert!(s.iter().any(|(t, _)| *t == 170_000_000), "{s:?}");
        for (_, ms) in &s {
            assert!(ms.abs() < 1e-9, "{s:?}");
        }
        // b seeking 0.5 ms after a (frame 984 of its block at 100 ms): in
        // between they play different music, and no sample says so as a
        // skew of seconds.
        let mut late = playing(0, 0, 2);
        late += "{\"mono_ns\":100000000,\"pos_frames\":4800,\"rate\":48000,\"playing\":true,\
                 \"jump\":{\"at_frames\":984,\"pos_frames\":480000,\"playing\":true,\
                 \"song\":\"00000000000000000000000000000000\"}}\n";
        late += &playing(150, 480_000 + 1416, 4);
        let b = Report::parse(&late);
        for (t, ms) in skew_ms(&a, &b).into_iter().chain(skew_ms(&b, &a)) {
            assert!(ms.abs() < 1.0, "{ms} ms at {t}");
        }
    }

    #[test]
    fn clock_skew_reads_the_other_peers_session_time_at_each_line() {
        let with_session = |t0_ms: i64, session_offset_ns: i64| -> String {
            (0..6)
                .map(|k| {
                    let mono = (t0_ms + 50 * k) * 1_000_000;
                    format!(
                        "{{\"mono_ns\":{mono},\"pos_frames\":{},\"rate\":48000,\"playing\":true,\"session_ns\":{}}}\n",
                        2400 * k,
                        mono + session_offset_ns
                    )
                })
                .collect()
        };
        let a = Report::parse(&with_session(0, 0));
        // b's map is 0.2 ms ahead, and its lines fall between a's.
        let b = Report::parse(&with_session(25, 200_000));
        let s = clock_skew_ms(&a, &b);
        assert_eq!(s.len(), 5, "{s:?}");
        for (_, ms) in &s {
            assert!((ms - 0.2).abs() < 1e-9, "{s:?}");
        }
    }

    #[test]
    fn gaps_settling_and_summaries() {
        let mut text = playing(0, 0, 4);
        text += &playing(300, 2400 * 6, 4); // 100 ms missing after 150 ms
        assert_eq!(Report::parse(&text).gaps(50_000_000), 1);
        let samples = [(0, 5.0), (1, 0.2), (2, 3.0), (3, 0.1), (4, 0.05)];
        assert_eq!(settled_at(&samples, 1.0), Some(3));
        assert_eq!(settled_at(&samples[..3], 1.0), None);
        let s = Summary::of_abs([-3.0, 1.0, 2.0]);
        assert_eq!((s.n, s.p50, s.max), (3, 2.0, 3.0));
        let s = Summary::of([-3.0, 1.0, 2.0, f64::NAN]);
        assert_eq!((s.n, s.p50, s.max), (3, 1.0, 2.0));
        assert!(parse_line("{\"mono_ns\":1").is_none(), "a partial line");
    }
}
