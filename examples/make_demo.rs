//! Generates the bundled demo song's stems and the click tracks as 16-bit,
//! 48 kHz stereo WAV files, deterministically (a seeded noise source, no
//! floating-point state carried across runs). `assets/make-demo.sh` runs this
//! and encodes the results to FLAC.
//!
//! ```text
//! cargo run --release --example make_demo -- OUT_DIR
//! ```
//! writes `OUT_DIR/demo/{drums,bass,keys,lead}.wav` and
//! `OUT_DIR/click/{click,impulses}.wav`.
//!
//! The song: 20 bars of 4/4 at 120 BPM (40 s) in A minor, Am–F–C–G. Drums and
//! bass from bar 1, keys from bar 3, the lead from bar 5 to bar 16, an outro.
//!
//! The click tracks, for sync measurements:
//! - `click`: a 10 ms beep on every beat (higher on the downbeat), audible;
//! - `impulses`: every 100 ms (4800 frames) one frame whose left sample is the
//!   marker 16384 and whose right sample is the impulse's index (from 1),
//!   silence elsewhere. Decoded and played at unity, the raw output carries
//!   these values exactly, so a reader can tell which impulse it sees.

use std::f64::consts::TAU;
use std::path::Path;

use synfony::assets::{IMPULSE_MARKER, IMPULSE_SPACING_FRAMES};

const RATE: u32 = 48_000;
const BPM: f64 = 120.0;
const BARS: usize = 20;
const BEAT_SECS: f64 = 60.0 / BPM;
const BAR_SECS: f64 = 4.0 * BEAT_SECS;
const SONG_SECS: f64 = BARS as f64 * BAR_SECS;

/// Stereo buffer of the whole song.
struct Track {
    l: Vec<f64>,
    r: Vec<f64>,
}

impl Track {
    fn new() -> Track {
        let n = (SONG_SECS * RATE as f64) as usize;
        Track {
            l: vec![0.0; n],
            r: vec![0.0; n],
        }
    }

    /// Adds `voice(t)` (t in seconds from `at_secs`) for `len_secs`, panned
    /// (−1 left … 1 right, equal-power-ish).
    fn add(&mut self, at_secs: f64, len_secs: f64, pan: f64, mut voice: impl FnMut(f64) -> f64) {
        let start = (at_secs * RATE as f64).round() as usize;
        let n = (len_secs * RATE as f64) as usize;
        let (gl, gr) = ((1.0 - pan).min(1.0), (1.0 + pan).min(1.0));
        for i in 0..n {
            let Some(k) = start.checked_add(i).filter(|&k| k < self.l.len()) else {
                break;
            };
            let v = voice(i as f64 / RATE as f64);
            self.l[k] += v * gl;
            self.r[k] += v * gr;
        }
    }

    fn write(&self, path: &Path) {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        let q = |v: f64| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        for (l, r) in self.l.iter().zip(&self.r) {
            w.write_sample(q(*l)).unwrap();
            w.write_sample(q(*r)).unwrap();
        }
        w.finalize().unwrap();
    }
}

/// xorshift64*: the same noise on every machine.
struct Noise(u64);
impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

fn hz(midi: i32) -> f64 {
    440.0 * 2f64.powf((midi - 69) as f64 / 12.0)
}

/// Attack / release envelope of a note `len` seconds long.
fn env(t: f64, len: f64, attack: f64, release: f64) -> f64 {
    let a = (t / attack).min(1.0);
    let r = ((len - t) / release).clamp(0.0, 1.0);
    a * r
}

/// Chord roots (MIDI) per bar: Am F C G.
const ROOTS: [i32; 4] = [57, 53, 60, 55];
const MINOR: [i32; 3] = [0, 3, 7];
const MAJOR: [i32; 3] = [0, 4, 7];

fn chord(bar: usize) -> (i32, [i32; 3]) {
    let i = bar % 4;
    (ROOTS[i], if i == 0 { MINOR } else { MAJOR })
}

/// Overall level per bar: a fade over the last two bars.
fn level(bar: usize) -> f64 {
    if bar + 2 >= BARS {
        0.5 * (BARS - bar) as f64 / 2.0 + 0.25
    } else {
        1.0
    }
}

fn drums() -> Track {
    let mut t = Track::new();
    let mut noise = Noise(0x5EED_D12A);
    for bar in 0..BARS {
        let b0 = bar as f64 * BAR_SECS;
        let lv = level(bar);
        for beat in 0..4 {
            let at = b0 + beat as f64 * BEAT_SECS;
            if beat % 2 == 0 || (bar % 4 == 3 && beat == 3) {
                // Kick: a falling sine.
                let mut phase = 0.0;
                t.add(at, 0.4, 0.0, |s| {
                    phase += TAU * (48.0 + 110.0 * (-s / 0.035).exp()) / RATE as f64;
                    0.5 * lv * phase.sin() * (-s / 0.18).exp()
                });
            } else {
                // Snare: noise and a body tone.
                let n: Vec<f64> = (0..(0.3 * RATE as f64) as usize)
                    .map(|_| noise.next())
                    .collect();
                t.add(at, 0.3, 0.0, |s| {
                    let i = (s * RATE as f64) as usize;
                    lv * (0.22 * n[i.min(n.len() - 1)] * (-s / 0.09).exp()
                        + 0.2 * (TAU * 185.0 * s).sin() * (-s / 0.06).exp())
                });
            }
            // Hats on the eighths, open on the last "and" of the bar.
            for half in 0..2 {
                let open = beat == 3 && half == 1;
                let decay = if open { 0.12 } else { 0.025 };
                let mut prev = 0.0;
                let mut seq: Vec<f64> = (0..(0.25 * RATE as f64) as usize)
                    .map(|_| noise.next())
                    .collect();
                for v in &mut seq {
                    let x = *v;
                    *v = x - prev;
                    prev = x;
                }
                t.add(at + half as f64 * BEAT_SECS / 2.0, 0.25, 0.0, |s| {
                    let i = (s * RATE as f64) as usize;
                    0.07 * lv * seq[i.min(seq.len() - 1)] * (-s / decay).exp()
                });
            }
        }
    }
    t
}

fn bass() -> Track {
    let mut t = Track::new();
    // Root, root, octave, root… in eighths.
    const PATTERN: [i32; 8] = [0, 0, 12, 0, 0, 7, 12, 0];
    for bar in 0..BARS {
        let (root, _) = chord(bar);
        let lv = level(bar);
        for (k, step) in PATTERN.iter().enumerate() {
            let f = hz(root - 24 + step);
            let len = BEAT_SECS / 2.0 * 0.9;
            let mut phase = 0.0;
            let mut lp = 0.0;
            t.add(
                bar as f64 * BAR_SECS + k as f64 * BEAT_SECS / 2.0,
                len,
                0.0,
                |s| {
                    phase = (phase + f / RATE as f64) % 1.0;
                    let saw = 2.0 * phase - 1.0;
                    // One-pole low-pass closing after the attack.
                    let cutoff = 300.0 + 1500.0 * (-s / 0.05).exp();
                    let a = 1.0 - (-TAU * cutoff / RATE as f64).exp();
                    lp += a * (saw - lp);
                    0.3 * lv * lp * env(s, len, 0.004, 0.02)
                },
            );
        }
    }
    t
}

fn keys() -> Track {
    let mut t = Track::new();
    for bar in 2..BARS {
        let (root, shape) = chord(bar);
        let lv = level(bar);
        // Two half-bar stabs per bar, voices spread across the stereo field.
        for half in 0..2 {
            for (v, iv) in shape.iter().enumerate() {
                let f = hz(root + iv);
                let pan = (v as f64 - 1.0) * 0.5;
                let len = BAR_SECS / 2.0 * 0.95;
                t.add(
                    bar as f64 * BAR_SECS + half as f64 * BAR_SECS / 2.0,
                    len,
                    pan,
                    |s| {
                        let w = TAU * f * s;
                        0.09 * lv
                            * (w.sin() + 0.3 * (2.0 * w).sin() + 0.1 * (3.0 * w).sin())
                            * env(s, len, 0.03, 0.2)
                            * (-s / 1.5).exp()
                    },
                );
            }
        }
    }
    t
}

fn lead() -> Track {
    let mut t = Track::new();
    // A minor pentatonic phrase, (semitones above A4, length in eighths);
    // −1 is a rest. Two bars long, repeated with a variation.
    const PHRASE: [(i32, usize); 10] = [
        (0, 2),
        (3, 1),
        (5, 1),
        (7, 3),
        (-1, 1),
        (10, 2),
        (7, 1),
        (5, 1),
        (3, 2),
        (0, 2),
    ];
    for rep in 0..6 {
        let mut at = (4 + 2 * rep) as f64 * BAR_SECS;
        let shift = if rep % 2 == 1 { 12 } else { 0 };
        for &(note, eighths) in &PHRASE {
            let len = eighths as f64 * BEAT_SECS / 2.0;
            if note >= 0 {
                let f = hz(69 + note + shift - 12);
                let mut phase = 0.0;
                t.add(at, len * 0.95, 0.25, |s| {
                    let vib = 1.0 + 0.004 * (TAU * 5.5 * s).sin() * (s / 0.3).min(1.0);
                    phase = (phase + f * vib / RATE as f64) % 1.0;
                    let w = TAU * phase;
                    let sq = w.sin() + (3.0 * w).sin() / 3.0 + (5.0 * w).sin() / 5.0;
                    0.14 * sq * env(s, len * 0.95, 0.01, 0.05)
                });
            }
            at += len;
        }
    }
    t
}

fn click() -> Track {
    let mut t = Track::new();
    for beat in 0..(BARS * 4) {
        let f = if beat % 4 == 0 { 1500.0 } else { 1000.0 };
        t.add(beat as f64 * BEAT_SECS, 0.01, 0.0, |s| {
            0.5 * (TAU * f * s).sin() * env(s, 0.01, 0.0005, 0.003)
        });
    }
    t
}

fn impulses() -> Track {
    let mut t = Track::new();
    let n = t.l.len();
    for (index, at) in (0..n).step_by(IMPULSE_SPACING_FRAMES).enumerate() {
        t.l[at] = IMPULSE_MARKER as f64 / 32768.0;
        t.r[at] = (index + 1) as f64 / 32768.0;
    }
    t
}

fn main() {
    let out = std::env::args()
        .nth(1)
        .expect("usage: make_demo OUT_DIR (writes OUT_DIR/demo/*.wav and OUT_DIR/click/*.wav)");
    let out = Path::new(&out);
    for dir in ["demo", "click"] {
        std::fs::create_dir_all(out.join(dir)).unwrap();
    }
    type Make = fn() -> Track;
    let tracks: [(&str, Make); 6] = [
        ("demo/drums", drums),
        ("demo/bass", bass),
        ("demo/keys", keys),
        ("demo/lead", lead),
        ("click/click", click),
        ("click/impulses", impulses),
    ];
    for (name, make) in tracks {
        let path = out.join(format!("{name}.wav"));
        make().write(&path);
        println!("{}", path.display());
    }
}
