//! Output backends: where the engine's blocks go, and when.
//!
//! Every backend implements [`Output`]: it owns the [`Engine`] once started
//! and calls [`Player::play_block`] for each buffer with the real monotonic
//! instant at which that buffer's first frame leaves the device. `play_block`
//! is the one place that maps device time to the peer's clock (adding the
//! speakers' `--latency-offset-ms`), renders, and queues the `--report` line;
//! it is real-time safe.
//!
//! - [`NullDevice`]: a virtual device paced by `CLOCK_MONOTONIC`. Block `k`
//!   plays at `t0 + k × period / (rate × (1 + drift))`; it is rendered
//!   [`RENDER_LEAD_NS`] ahead and handed to its sink (nothing, a WAV file, or
//!   raw s16le written at the play instant) when it plays.
//! - [`CpalDevice`]: the sound card, through cpal; the play instant is the
//!   callback's monotonic time plus cpal's reported playback delay.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::engine::{BlockInfo, Engine, MAX_BLOCK_FRAMES};
use super::{CHANNELS, ENGINE_RATE_HZ};
use crate::host_clock::{LocalClock, monotonic_ns};

/// The virtual devices render each block this long before it plays: well
/// under the session's decide guard (30 ms), so a decision is always in the
/// engine before the block that must carry it is rendered.
pub const RENDER_LEAD_NS: i64 = 10_000_000;
/// Default block of the virtual devices (50 ms at 48 kHz).
pub const DEFAULT_PERIOD_FRAMES: usize = 2400;
/// Virtual device blocks are between 1 ms and 1 s long.
pub const PERIOD_FRAMES_RANGE: std::ops::RangeInclusive<usize> = 48..=48_000;
/// The largest device drift the null device accepts (1%).
pub const MAX_DEVICE_DRIFT_PPM: f64 = 10_000.0;
/// The sound card's buffer asked for (21 ms at 48 kHz), within what it allows.
pub const DEVICE_BUFFER_FRAMES: u32 = 1024;
/// Report lines waiting for the writer thread.
const REPORT_CAPACITY: usize = 4096;

/// `--output KIND`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// The sound card (cpal).
    Device,
    /// A virtual device paced in real time; the audio goes nowhere.
    Null,
    /// The null device, its output also written to a 32-bit float WAV file.
    Wav(PathBuf),
    /// The null device, each block written as raw s16le 48 kHz stereo to a
    /// file or FIFO at the moment it plays.
    Raw(PathBuf),
}

impl FromStr for OutputKind {
    type Err = OutputError;
    fn from_str(s: &str) -> Result<Self, OutputError> {
        let path = |p: &str| {
            if p.is_empty() {
                Err(OutputError::Kind(s.to_string()))
            } else {
                Ok(PathBuf::from(p))
            }
        };
        match s {
            "device" => Ok(OutputKind::Device),
            "null" => Ok(OutputKind::Null),
            _ => match s.split_once(':') {
                Some(("wav", p)) => Ok(OutputKind::Wav(path(p)?)),
                Some(("raw", p)) => Ok(OutputKind::Raw(path(p)?)),
                _ => Err(OutputError::Kind(s.to_string())),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("unknown output '{0}': expected device, null, wav:PATH or raw:PATH")]
    Kind(String),
    #[error("--period-frames {0} is out of range ({min}..={max})", min = PERIOD_FRAMES_RANGE.start(), max = PERIOD_FRAMES_RANGE.end())]
    Period(usize),
    #[error("--device-drift-ppm {0} is not a number within ±{MAX_DEVICE_DRIFT_PPM}")]
    Drift(f64),
    #[error(
        "no sound device: {0} (a machine without a sound card can use --output null, wav:PATH or raw:PATH)"
    )]
    NoDevice(String),
    #[error("sound device '{device}': {cause}")]
    Device { device: String, cause: String },
    #[error("{path}: {cause}")]
    Sink { path: PathBuf, cause: String },
    #[error("report file {path}: {cause}")]
    Report { path: PathBuf, cause: String },
    #[error("the output thread failed: {0}")]
    Thread(String),
}

/// How the output runs, whatever the backend.
#[derive(Clone, Debug)]
pub struct OutputConfig {
    /// This peer's clock (the engine's session map is relative to it).
    pub clock: LocalClock,
    /// Extra delay of the speakers after the device (Bluetooth, HDMI).
    pub latency_offset_ns: i64,
    /// `--report PATH`.
    pub report: Option<PathBuf>,
    /// Block size of the virtual devices.
    pub period_frames: usize,
    /// The virtual device's rate error (positive consumes frames faster).
    pub device_drift_ppm: f64,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            clock: LocalClock::REAL,
            latency_offset_ns: 0,
            report: None,
            period_frames: DEFAULT_PERIOD_FRAMES,
            device_drift_ppm: 0.0,
        }
    }
}

/// Counters every backend publishes (lock-free).
#[derive(Debug, Default)]
pub struct OutputStats {
    /// Buffers handed to the device.
    pub blocks: AtomicU64,
    /// Buffers the device played late or missed (a stalled thread, an xrun).
    pub xruns: AtomicU64,
    /// Report lines lost because the writer fell behind.
    pub report_dropped: AtomicU64,
    /// The device's latency from callback to playback, as last reported.
    pub device_latency_ns: AtomicI64,
}

/// One `--report` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportLine {
    pub mono_ns: i64,
    pub pos_frames: i64,
    pub playing: bool,
}

impl ReportLine {
    /// The line as INTERFACE.md writes it.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"mono_ns\":{},\"pos_frames\":{},\"rate\":{},\"playing\":{}}}",
            self.mono_ns, self.pos_frames, ENGINE_RATE_HZ, self.playing
        )
    }
}

/// The engine as a backend drives it: renders a buffer for a play instant and
/// reports it. Real-time safe.
pub struct Player {
    engine: Engine,
    clock: LocalClock,
    latency_offset_ns: i64,
    report: Option<rtrb::Producer<ReportLine>>,
    stats: Arc<OutputStats>,
}

impl Player {
    /// The engine, driven with `cfg`'s clock and latency offset, reporting
    /// into `report` (the ring a report writer drains) and `stats`.
    pub fn new(
        engine: Engine,
        cfg: &OutputConfig,
        report: Option<rtrb::Producer<ReportLine>>,
        stats: Arc<OutputStats>,
    ) -> Player {
        Player {
            engine,
            clock: cfg.clock,
            latency_offset_ns: cfg.latency_offset_ns,
            report,
            stats,
        }
    }

    /// Renders interleaved stereo into `out`, whose first frame leaves the
    /// device at monotonic instant `play_mono_ns`, and queues its report line.
    pub fn play_block(&mut self, out: &mut [f32], play_mono_ns: i64) -> BlockInfo {
        let heard_local_ns = self.clock.local_at(play_mono_ns + self.latency_offset_ns);
        let info = self.engine.render(out, heard_local_ns);
        self.stats.blocks.fetch_add(1, Ordering::Relaxed);
        if let Some(report) = &mut self.report {
            let line = ReportLine {
                mono_ns: play_mono_ns,
                pos_frames: info.pos_frames,
                playing: info.playing,
            };
            if report.push(line).is_err() {
                self.stats.report_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        info
    }
}

/// An output backend.
pub trait Output {
    /// What the user would call it, for messages.
    fn describe(&self) -> String;
    /// Starts playing: the backend owns the player from now on.
    fn start(self: Box<Self>, player: Player) -> Result<Running, OutputError>;
}

/// A started output. Dropping it stops the device and flushes its files.
pub struct Running {
    pub stats: Arc<OutputStats>,
    /// Errors the output met while running (a sink that broke, a device lost).
    pub errors: mpsc::Receiver<OutputError>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    report: Option<JoinHandle<()>>,
    report_stop: Arc<AtomicBool>,
}

impl Running {
    /// Stops the device, then the report writer, flushing both.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        self.report_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.report.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The backend `kind` names, configured by `cfg`.
pub fn backend(kind: &OutputKind, cfg: &OutputConfig) -> Result<Box<dyn Output>, OutputError> {
    let null = |sink| -> Result<Box<dyn Output>, OutputError> {
        Ok(Box::new(NullDevice::new(
            cfg.period_frames,
            cfg.device_drift_ppm,
            sink,
        )?))
    };
    match kind {
        OutputKind::Device => Ok(Box::new(CpalDevice::default_device()?)),
        OutputKind::Null => null(NullSink::Discard),
        OutputKind::Wav(p) => null(NullSink::Wav(p.clone())),
        OutputKind::Raw(p) => null(NullSink::Raw(p.clone())),
    }
}

/// Starts `engine` on `output`, with the report writer if asked.
pub fn start(
    output: Box<dyn Output>,
    engine: Engine,
    cfg: &OutputConfig,
) -> Result<Running, OutputError> {
    let stats = Arc::new(OutputStats::default());
    let report_stop = Arc::new(AtomicBool::new(false));
    let (report_tx, report_thread) = match &cfg.report {
        None => (None, None),
        Some(path) => {
            let (tx, rx) = rtrb::RingBuffer::new(REPORT_CAPACITY);
            let t = spawn_report_writer(path, rx, report_stop.clone())?;
            (Some(tx), Some(t))
        }
    };
    let player = Player::new(engine, cfg, report_tx, stats);
    let mut running = output.start(player)?;
    running.report = report_thread;
    running.report_stop = report_stop;
    Ok(running)
}

fn spawn_report_writer(
    path: &Path,
    mut rx: rtrb::Consumer<ReportLine>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, OutputError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| OutputError::Report {
            path: path.to_path_buf(),
            cause: e.to_string(),
        })?;
    let mut w = BufWriter::new(file);
    std::thread::Builder::new()
        .name("synfony-report".into())
        .spawn(move || {
            loop {
                // Read the flag before draining, so the last lines are written.
                let stopping = stop.load(Ordering::Relaxed);
                let mut wrote = false;
                while let Ok(line) = rx.pop() {
                    if writeln!(w, "{}", line.to_json()).is_err() {
                        return;
                    }
                    wrote = true;
                }
                if wrote && w.flush().is_err() {
                    return;
                }
                if stopping {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .map_err(|e| OutputError::Thread(e.to_string()))
}

/// Where the null device's blocks go when they play.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NullSink {
    Discard,
    Wav(PathBuf),
    Raw(PathBuf),
}

/// A virtual device paced by the monotonic clock.
#[derive(Debug)]
pub struct NullDevice {
    period_frames: usize,
    /// Device nanoseconds per frame (drift included).
    ns_per_frame: f64,
    sink: NullSink,
}

impl NullDevice {
    pub fn new(
        period_frames: usize,
        device_drift_ppm: f64,
        sink: NullSink,
    ) -> Result<NullDevice, OutputError> {
        if !PERIOD_FRAMES_RANGE.contains(&period_frames) {
            return Err(OutputError::Period(period_frames));
        }
        if !device_drift_ppm.is_finite() || device_drift_ppm.abs() > MAX_DEVICE_DRIFT_PPM {
            return Err(OutputError::Drift(device_drift_ppm));
        }
        Ok(NullDevice {
            period_frames,
            ns_per_frame: 1e9 / (ENGINE_RATE_HZ as f64 * (1.0 + device_drift_ppm * 1e-6)),
            sink,
        })
    }

    /// The monotonic instant block `k` plays, for a device started at `t0`.
    pub fn play_at(&self, t0_mono_ns: i64, k: u64) -> i64 {
        t0_mono_ns + (k as f64 * self.period_frames as f64 * self.ns_per_frame).round() as i64
    }
}

/// An open sink.
enum Sink {
    Discard,
    Wav {
        path: PathBuf,
        w: hound::WavWriter<BufWriter<File>>,
    },
    Raw {
        path: PathBuf,
        f: File,
        bytes: Vec<u8>,
    },
}

impl Sink {
    fn open(sink: &NullSink) -> Result<Sink, OutputError> {
        let err = |path: &Path, e: &dyn std::fmt::Display| OutputError::Sink {
            path: path.to_path_buf(),
            cause: e.to_string(),
        };
        Ok(match sink {
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
                }
            }
            NullSink::Raw(path) => {
                // A FIFO's open blocks until a reader opens it: the device
                // starts its clock after that.
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(path)
                    .map_err(|e| err(path, &e))?;
                Sink::Raw {
                    path: path.clone(),
                    f,
                    bytes: Vec::new(),
                }
            }
        })
    }

    /// Hands a played block to the sink. `k` is the block's index.
    fn write(&mut self, block: &[f32], k: u64) -> Result<(), OutputError> {
        let err = |path: &Path, e: &dyn std::fmt::Display| OutputError::Sink {
            path: path.to_path_buf(),
            cause: e.to_string(),
        };
        match self {
            Sink::Discard => Ok(()),
            Sink::Wav { path, w } => {
                for &s in block {
                    w.write_sample(s).map_err(|e| err(path, &e))?;
                }
                // Keep the header valid about once a second, so a killed peer
                // still leaves a readable file.
                if k % 20 == 19 {
                    w.flush().map_err(|e| err(path, &e))?;
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

    fn finish(self) -> Result<(), OutputError> {
        match self {
            Sink::Wav { path, w } => w.finalize().map_err(|e| OutputError::Sink {
                path,
                cause: e.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

/// A float sample to s16, rounded and clipped, on the scale symphonia decodes
/// s16 with (÷ 32768): a 16-bit stem at unity gain comes out of the raw sink
/// exactly as it is in its file. (No dither: the sync bench reads marker values
/// exactly.)
pub fn f32_to_s16(s: f32) -> i16 {
    (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Sleeps until monotonic instant `t_ns` (absolute, so sleeps never add up).
fn sleep_until(t_ns: i64) {
    let ts = libc::timespec {
        tv_sec: t_ns.div_euclid(1_000_000_000) as libc::time_t,
        tv_nsec: t_ns.rem_euclid(1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec; a null remainder is allowed with TIMER_ABSTIME.
    // EINTR just ends the sleep early; the caller's loop re-checks the time.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        );
    }
}

impl Output for NullDevice {
    fn describe(&self) -> String {
        match &self.sink {
            NullSink::Discard => "null".into(),
            NullSink::Wav(p) => format!("wav:{}", p.display()),
            NullSink::Raw(p) => format!("raw:{}", p.display()),
        }
    }

    fn start(self: Box<Self>, mut player: Player) -> Result<Running, OutputError> {
        let stats = player.stats.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (err_tx, errors) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread = {
            let stop = stop.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("synfony-null-device".into())
                .spawn(move || {
                    // Wake within a few µs of the asked instant, not the
                    // default 50 µs timer slack.
                    // SAFETY: PR_SET_TIMERSLACK takes a plain integer.
                    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
                    let mut sink = match Sink::open(&self.sink) {
                        Ok(s) => {
                            let _ = ready_tx.send(Ok(()));
                            s
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let mut block = vec![0.0f32; self.period_frames * CHANNELS];
                    let period_ns = (self.period_frames as f64 * self.ns_per_frame) as i64;
                    let t0 = monotonic_ns() + RENDER_LEAD_NS;
                    let mut k: u64 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let t_k = self.play_at(t0, k);
                        sleep_until(t_k - RENDER_LEAD_NS);
                        let now = monotonic_ns();
                        if now > t_k {
                            // The thread stalled past a block's play instant:
                            // the device played silence meanwhile. Skip to the
                            // next block we can still render in time.
                            let behind = ((now - t0) as f64 / period_ns as f64).ceil() as u64;
                            let next = behind.max(k + 1);
                            stats.xruns.fetch_add(next - k, Ordering::Relaxed);
                            k = next;
                            continue;
                        }
                        player.play_block(&mut block, t_k);
                        sleep_until(t_k);
                        if let Err(e) = sink.write(&block, k) {
                            // A broken sink (a FIFO's reader gone, a full disk)
                            // stops the sink, not the music.
                            let _ = err_tx.send(e);
                            sink = Sink::Discard;
                        }
                        k += 1;
                    }
                    if let Err(e) = sink.finish() {
                        let _ = err_tx.send(e);
                    }
                })
                .map_err(|e| OutputError::Thread(e.to_string()))?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => return Err(OutputError::Thread("the null device died".into())),
        }
        Ok(Running {
            stats,
            errors,
            stop,
            thread: Some(thread),
            report: None,
            report_stop: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// The sound card, through cpal's default host and device.
pub struct CpalDevice {
    device: cpal::Device,
    name: String,
}

impl CpalDevice {
    pub fn default_device() -> Result<CpalDevice, OutputError> {
        use cpal::traits::{DeviceTrait, HostTrait};
        let host = cpal::default_host();
        let device = host
            .default_output_device()
            .ok_or_else(|| OutputError::NoDevice("the audio host has no output device".into()))?;
        let name = device
            .description()
            .map(|d| d.name().to_string())
            .unwrap_or_else(|_| "default".into());
        Ok(CpalDevice { device, name })
    }
}

impl Output for CpalDevice {
    fn describe(&self) -> String {
        format!("device '{}'", self.name)
    }

    fn start(self: Box<Self>, mut player: Player) -> Result<Running, OutputError> {
        use cpal::traits::{DeviceTrait, StreamTrait};
        let stats = player.stats.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (err_tx, errors) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let name = self.name.clone();
        let device_err = move |cause: String| OutputError::Device {
            device: name.clone(),
            cause,
        };
        let thread = {
            let stop = stop.clone();
            let stats = stats.clone();
            let device_err = device_err.clone();
            // cpal's stream is not Send on every platform: one thread builds,
            // owns and drops it.
            std::thread::Builder::new()
                .name("synfony-cpal".into())
                .spawn(move || {
                    // A short fixed buffer when the device allows one: the
                    // default (ALSA's whole ring, ~0.7 s through a plug device)
                    // would exceed the session's lead, so changes would land late.
                    let buffer_size = match self.device.default_output_config() {
                        Ok(c) => match c.buffer_size() {
                            cpal::SupportedBufferSize::Range { min, max } => {
                                cpal::BufferSize::Fixed(DEVICE_BUFFER_FRAMES.clamp(*min, *max))
                            }
                            cpal::SupportedBufferSize::Unknown => cpal::BufferSize::Default,
                        },
                        Err(_) => cpal::BufferSize::Default,
                    };
                    let config = cpal::StreamConfig {
                        channels: CHANNELS as u16,
                        sample_rate: ENGINE_RATE_HZ,
                        buffer_size,
                    };
                    let cb_stats = stats.clone();
                    let data = move |out: &mut [f32], info: &cpal::OutputCallbackInfo| {
                        let ts = info.timestamp();
                        let delay_ns = ts
                            .playback
                            .checked_duration_since(ts.callback)
                            .map_or(0, |d| d.as_nanos() as i64);
                        cb_stats
                            .device_latency_ns
                            .store(delay_ns, Ordering::Relaxed);
                        let play = monotonic_ns() + delay_ns;
                        // The engine splits long buffers itself; the frame
                        // count here is whole (CHANNELS-interleaved).
                        let frames = out.len() / CHANNELS;
                        let ns_per_frame = 1e9 / ENGINE_RATE_HZ as f64;
                        let mut done = 0;
                        while done < frames {
                            let n = (frames - done).min(MAX_BLOCK_FRAMES);
                            let at = play + (done as f64 * ns_per_frame) as i64;
                            player.play_block(&mut out[done * CHANNELS..(done + n) * CHANNELS], at);
                            done += n;
                        }
                    };
                    let err_stats = stats.clone();
                    let err_tx2 = err_tx.clone();
                    let on_error = {
                        let device_err = device_err.clone();
                        move |e: cpal::Error| {
                            if e.kind() == cpal::ErrorKind::Xrun {
                                err_stats.xruns.fetch_add(1, Ordering::Relaxed);
                            } else {
                                let _ = err_tx2.send(device_err(e.to_string()));
                            }
                        }
                    };
                    let stream = match self
                        .device
                        .build_output_stream(config, data, on_error, None)
                    {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(match e.kind() {
                                cpal::ErrorKind::DeviceNotAvailable
                                | cpal::ErrorKind::HostUnavailable => {
                                    OutputError::NoDevice(e.to_string())
                                }
                                _ => {
                                    device_err(format!("cannot open 48 kHz stereo f32 output: {e}"))
                                }
                            }));
                            return;
                        }
                    };
                    if let Err(e) = stream.play() {
                        let _ = ready_tx.send(Err(device_err(format!("cannot start: {e}"))));
                        return;
                    }
                    let _ = ready_tx.send(Ok(()));
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::park_timeout(Duration::from_millis(100));
                    }
                    drop(stream);
                })
                .map_err(|e| OutputError::Thread(e.to_string()))?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => return Err(OutputError::Thread("the device thread died".into())),
        }
        Ok(Running {
            stats,
            errors,
            stop,
            thread: Some(thread),
            report: None,
            report_stop: Arc::new(AtomicBool::new(false)),
        })
    }
}
