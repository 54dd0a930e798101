//! The null device's sinks: where its blocks go when they play — nowhere, a
//! WAV file, or raw s16le to a file or FIFO at the play instant.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{NullSink, OutputError};
use crate::audio::{CHANNELS, ENGINE_RATE_HZ};

/// An open sink.
pub(super) enum Sink {
    Discard,
    Wav {
        path: PathBuf,
        w: hound::WavWriter<BufWriter<File>>,
        /// Frames written since the header was last brought up to date.
        unflushed_frames: usize,
    },
    Raw {
        path: PathBuf,
        f: File,
        bytes: Vec<u8>,
    },
}

/// The WAV sink brings its header up to date about once a second, so a peer
/// killed with SIGKILL still leaves a readable file.
const WAV_FLUSH_FRAMES: usize = ENGINE_RATE_HZ as usize;

impl Sink {
    /// Opens `sink`. A FIFO with no reader yet is waited for (the device's
    /// clock starts after), until `stop` is set; `waiting` is called when the
    /// wait begins.
    pub(super) fn open(
        sink: &NullSink,
        stop: &AtomicBool,
        mut waiting: impl FnMut(),
    ) -> Result<Option<Sink>, OutputError> {
        Ok(Some(match sink {
            NullSink::Discard => Sink::Discard,
            NullSink::Wav(path) => {
                let spec = hound::WavSpec {
                    channels: CHANNELS as u16,
                    sample_rate: ENGINE_RATE_HZ,
                    bits_per_sample: 32,
                    sample_format: hound::SampleFormat::Float,
                };
                let w = hound::WavWriter::create(path, spec).map_err(|e| err(path, &e))?;
                Sink::Wav {
                    path: path.clone(),
                    w,
                    unflushed_frames: 0,
                }
            }
            NullSink::Raw(path) => {
                use std::os::unix::fs::OpenOptionsExt;
                // Non-blocking, so waiting for a FIFO's reader (ENXIO) can be
                // given up when the output stops; then blocking writes, so a
                // block is written whole at its instant.
                let f = loop {
                    match std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(path)
                    {
                        Ok(f) => break f,
                        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                            waiting();
                            if stop.load(Ordering::Relaxed) {
                                return Ok(None);
                            }
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(e) => return Err(err(path, &e)),
                    }
                };
                set_blocking(&f).map_err(|e| err(path, &e))?;
                Sink::Raw {
                    path: path.clone(),
                    f,
                    bytes: Vec::new(),
                }
            }
        }))
    }

    /// Hands a played block to the sink.
    pub(super) fn write(&mut self, block: &[f32]) -> Result<(), OutputError> {
        match self {
            Sink::Discard => Ok(()),
            Sink::Wav {
                path,
                w,
                unflushed_frames,
            } => {
                for &s in block {
                    w.write_sample(s).map_err(|e| err(path, &e))?;
                }
                *unflushed_frames += block.len() / CHANNELS;
                if *unflushed_frames >= WAV_FLUSH_FRAMES {
                    w.flush().map_err(|e| err(path, &e))?;
                    *unflushed_frames = 0;
                }
                Ok(())
            }
            Sink::Raw { path, f, bytes } => {
                bytes.clear();
                bytes.extend(block.iter().flat_map(|&s| f32_to_s16(s).to_le_bytes()));
                f.write_all(bytes).map_err(|e| err(path, &e))
            }
        }
    }

    /// Blocks the device skipped after a stall (`frames` of them): the WAV
    /// file gets silence, so its sample index stays the device's clock; a raw
    /// stream gets nothing (a real-time reader cannot be handed the past).
    pub(super) fn skipped(&mut self, frames: usize) -> Result<(), OutputError> {
        if let Sink::Wav { .. } = self {
            let silence = [0.0f32; 1024 * CHANNELS];
            let mut left = frames * CHANNELS;
            while left > 0 {
                let n = left.min(silence.len());
                self.write(&silence[..n])?;
                left -= n;
            }
        }
        Ok(())
    }

    pub(super) fn finish(self) -> Result<(), OutputError> {
        match self {
            Sink::Wav { path, w, .. } => w.finalize().map_err(|e| OutputError::Sink {
                path,
                cause: e.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

/// A sink's error, naming its file.
fn err(path: &Path, e: &dyn std::fmt::Display) -> OutputError {
    OutputError::Sink {
        path: path.to_path_buf(),
        cause: e.to_string(),
    }
}

/// Clears `O_NONBLOCK` on `f`.
fn set_blocking(f: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with plain integer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A float sample to s16, rounded and clipped, on the scale symphonia decodes
/// s16 with (÷ 32768): a 16-bit stem at unity gain comes out of the raw sink
/// exactly as it is in its file. (No dither: the sync bench reads marker values
/// exactly.)
pub fn f32_to_s16(s: f32) -> i16 {
    (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}
