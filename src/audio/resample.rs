//! Rate conversion, a piece at a time: the one resampler behind a whole-file
//! decode and a stem streamed around the playhead, so both give the same
//! frames at the same positions.
//!
//! rubato's FFT resampler (fixed input chunks) converts; its delay is
//! trimmed, so output frame `k` is the input's time `k · from / to`. It works
//! on a grid: every `in_block` input frames are `out_block` output frames
//! exactly (147 : 160 for 44.1 kHz to 48 kHz), so a stream started at a grid
//! point lines up with one started at the file's beginning. Started anywhere
//! but the beginning, its first frames lack the past the filter needs: a
//! caller discards [`StreamResampler::preroll_frames`] of them.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::CHANNELS;

/// How many frames `frames` at `from_hz` are at `to_hz` (rounded up): the
/// length a file keeps once converted, whether decoded whole or streamed.
pub fn frames_at(frames: u64, from_hz: u32, to_hz: u32) -> u64 {
    (frames * u64::from(to_hz)).div_ceil(u64::from(from_hz.max(1)))
}

/// Input frames per call into rubato (as the whole-file decode always had).
const CHUNK_IN: usize = 1024;

/// A rate converter fed any number of stereo frames at a time.
pub struct StreamResampler {
    fft: Fft<f32>,
    from_hz: u32,
    to_hz: u32,
    /// Input frames waiting for a whole chunk (interleaved).
    pending: Vec<f32>,
    /// rubato's output (interleaved), reused.
    scratch: Vec<f32>,
    /// Output frames of rubato's delay still to drop.
    to_trim: usize,
    /// Input frames taken since the start, and output frames given.
    taken_frames: u64,
    given_frames: u64,
}

impl StreamResampler {
    pub fn new(from_hz: u32, to_hz: u32) -> Result<StreamResampler, String> {
        let fft = Fft::<f32>::new(
            from_hz as usize,
            to_hz as usize,
            CHUNK_IN,
            CHANNELS,
            FixedSync::Input,
        )
        .map_err(|e| e.to_string())?;
        let scratch = vec![0.0; fft.output_frames_max() * CHANNELS];
        let to_trim = fft.output_delay();
        Ok(StreamResampler {
            fft,
            from_hz,
            to_hz,
            pending: Vec::with_capacity(CHUNK_IN * CHANNELS),
            scratch,
            to_trim,
            taken_frames: 0,
            given_frames: 0,
        })
    }

    /// The grid: `in_block` input frames are exactly `out_block` output
    /// frames.
    pub fn grid(&self) -> (u64, u64) {
        let g = gcd(u64::from(self.from_hz), u64::from(self.to_hz));
        (u64::from(self.from_hz) / g, u64::from(self.to_hz) / g)
    }

    /// Output frames to discard after a start past the file's beginning (a
    /// whole number of grid blocks, covering the filter's reach twice).
    pub fn preroll_frames(&self) -> u64 {
        let (_, out_block) = self.grid();
        (2 * self.fft.output_delay() as u64)
            .div_ceil(out_block)
            .max(1)
            * out_block
    }

    /// Starts again from nothing (a new position in the file).
    pub fn reset(&mut self) {
        self.fft.reset();
        self.pending.clear();
        self.to_trim = self.fft.output_delay();
        self.taken_frames = 0;
        self.given_frames = 0;
    }

    /// Takes interleaved stereo `input`; gives each output frame ready.
    pub fn push(&mut self, input: &[f32], out: &mut impl FnMut(f32, f32)) -> Result<(), String> {
        self.taken_frames += (input.len() / CHANNELS) as u64;
        let mut rest = input;
        while !rest.is_empty() {
            let want = self.fft.input_frames_next() * CHANNELS - self.pending.len();
            let n = want.min(rest.len());
            self.pending.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.pending.len() == self.fft.input_frames_next() * CHANNELS {
                self.run(out)?;
            }
        }
        Ok(())
    }

    /// The input has ended: gives the output frames still owed, so that the
    /// output is as long as the input at the new rate (rounded up).
    pub fn finish(&mut self, out: &mut impl FnMut(f32, f32)) -> Result<(), String> {
        let owed = frames_at(self.taken_frames, self.from_hz, self.to_hz);
        while self.given_frames < owed {
            // Pad the chunk with silence (the filter's tail flushes out).
            self.pending
                .resize(self.fft.input_frames_next() * CHANNELS, 0.0);
            let mut given = self.given_frames;
            self.run(&mut |l, r| {
                if given < owed {
                    given += 1;
                    out(l, r);
                }
            })?;
        }
        Ok(())
    }

    /// Converts the pending chunk.
    fn run(&mut self, out: &mut impl FnMut(f32, f32)) -> Result<(), String> {
        let frames_in = self.pending.len() / CHANNELS;
        let frames_out = self.fft.output_frames_next();
        let input = InterleavedSlice::new(&self.pending[..], CHANNELS, frames_in)
            .map_err(|e| e.to_string())?;
        let mut output = InterleavedSlice::new_mut(&mut self.scratch[..], CHANNELS, frames_out)
            .map_err(|e| e.to_string())?;
        let (_, produced) = self
            .fft
            .process_into_buffer(&input, &mut output, None)
            .map_err(|e| e.to_string())?;
        self.pending.clear();
        let skip = self.to_trim.min(produced);
        self.to_trim -= skip;
        for frame in self.scratch[skip * CHANNELS..produced * CHANNELS].chunks_exact(CHANNELS) {
            self.given_frames += 1;
            out(frame[0], frame[1]);
        }
        Ok(())
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(frames: usize, rate: f64) -> Vec<f32> {
        (0..frames)
            .flat_map(|i| {
                let x = (i as f64 * 440.0 * std::f64::consts::TAU / rate).sin() as f32 * 0.5;
                [x, -x]
            })
            .collect()
    }

    fn convert(r: &mut StreamResampler, input: &[f32], piece: usize) -> Vec<f32> {
        let mut out = Vec::new();
        let mut take = |l, r| {
            out.push(l);
            out.push(r)
        };
        for p in input.chunks(piece * CHANNELS) {
            r.push(p, &mut take).unwrap();
        }
        r.finish(&mut take).unwrap();
        out
    }

    /// However the input is cut into pieces, the output is the same, and as
    /// long as the input at the new rate.
    #[test]
    fn pieces_do_not_change_the_output() {
        let input = tone(44_100, 44_100.0);
        let mut r = StreamResampler::new(44_100, 48_000).unwrap();
        let whole = convert(&mut r, &input, input.len());
        r.reset();
        let pieces = convert(&mut r, &input, 333);
        assert_eq!(whole.len(), 48_000 * CHANNELS);
        assert_eq!(whole, pieces);
        assert_eq!(r.grid(), (147, 160));
    }

    /// A stream started at a grid point, its preroll discarded, gives the
    /// frames a stream from the beginning gives there (to float rounding).
    #[test]
    fn a_start_on_the_grid_matches_the_whole() {
        let input = tone(44_100 * 2, 44_100.0);
        let mut r = StreamResampler::new(44_100, 48_000).unwrap();
        let whole = convert(&mut r, &input, 4096);
        let (in_block, out_block) = r.grid();
        let start_out = 200 * out_block;
        let start_in = 200 * in_block;
        r.reset();
        let part = convert(&mut r, &input[start_in as usize * CHANNELS..], 1000);
        let pre = r.preroll_frames() as usize;
        let from = (start_out as usize + pre) * CHANNELS;
        let worst = (whole[from..].iter().zip(&part[pre * CHANNELS..]))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "differs by {worst}");
    }
}
