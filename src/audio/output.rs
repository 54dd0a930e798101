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

/// What a backend is given to run with.
pub struct Context {
    pub player: Player,
    /// Set when the output must stop; the backend's thread polls it.
    pub stop: Arc<AtomicBool>,
    /// Where the backend reports what goes wrong while it runs.
    pub errors: mpsc::Sender<OutputError>,
}

/// An output backend.
pub trait Output {
    /// What the user would call it, for messages.
    fn describe(&self) -> String;
    /// Starts playing on a thread of its own, which owns the player from now
    /// on; returns once the device is open (or failed to open).
    fn start(self: Box<Self>, ctx: Context) -> Result<Worker, OutputError>;
}

/// A thread an output runs on. The thread holds `done`'s sender, so the
/// receiver learns when it has ended without a join that could hang.
pub struct Worker {
    thread: JoinHandle<()>,
    done: mpsc::Receiver<()>,
}

impl Worker {
    /// Spawns `f` as a worker named `name`.
    fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<Worker, OutputError> {
        let (done_tx, done) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _done = done_tx;
                f();
            })
            .map_err(|e| OutputError::Thread(e.to_string()))?;
        Ok(Worker { thread, done })
    }

    /// Waits for the thread to say the device is open (`Ok`) or could not be
    /// (`Err`, after which the thread is finished).
    fn started(
        self,
        ready: mpsc::Receiver<Result<(), OutputError>>,
        what: &str,
    ) -> Result<Worker, OutputError> {
        match ready.recv() {
            Ok(Ok(())) => Ok(self),
            Ok(Err(e)) => {
                self.finish(STOP_TIMEOUT);
                Err(e)
            }
            Err(_) => Err(OutputError::Thread(format!("{what} died"))),
        }
    }

    /// Waits up to `timeout` for the thread to end. A thread stuck in a
    /// blocking write (a FIFO whose reader stopped reading) is left behind
    /// rather than hanging the caller.
    fn finish(self, timeout: Duration) {
        self.thread.thread().unpark();
        if let Err(mpsc::RecvTimeoutError::Disconnected) = self.done.recv_timeout(timeout) {
            let _ = self.thread.join();
        }
    }
}

/// How long stopping waits for an output thread.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// A started output. Dropping it stops the device and flushes its files.
pub struct Running {
    pub stats: Arc<OutputStats>,
    /// Errors the output met while running (a sink that broke, a device lost,
    /// the report file unwritable).
    pub errors: mpsc::Receiver<OutputError>,
    stop: Arc<AtomicBool>,
    device: Option<Worker>,
    report: Option<Worker>,
    report_stop: Arc<AtomicBool>,
}

impl Running {
    /// Stops the device, then the report writer, flushing both.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.device.take() {
            w.finish(STOP_TIMEOUT);
        }
        self.report_stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.report.take() {
            w.finish(STOP_TIMEOUT);
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
    let (err_tx, errors) = mpsc::channel();
    let mut running = Running {
        stats: stats.clone(),
        errors,
        stop: Arc::new(AtomicBool::new(false)),
        device: None,
        report: None,
        report_stop: Arc::new(AtomicBool::new(false)),
    };
    let report_tx = match &cfg.report {
        None => None,
        Some(path) => {
            let (tx, rx) = rtrb::RingBuffer::new(REPORT_CAPACITY);
            running.report = Some(spawn_report_writer(
                path,
                rx,
                running.report_stop.clone(),
                err_tx.clone(),
            )?);
            Some(tx)
        }
    };
    let ctx = Context {
        player: Player::new(engine, cfg, report_tx, stats),
        stop: running.stop.clone(),
        errors: err_tx,
    };
    // On failure, dropping `running` stops the report writer.
    running.device = Some(output.start(ctx)?);
    Ok(running)
}

/// The `--report` writer: appends the lines the player queues (INTERFACE.md
/// says append), flushing every 20 ms. A write error is reported once and
/// ends the writer; the music plays on.
fn spawn_report_writer(
    path: &Path,
    mut rx: rtrb::Consumer<ReportLine>,
    stop: Arc<AtomicBool>,
    errors: mpsc::Sender<OutputError>,
) -> Result<Worker, OutputError> {
    let err = |e: std::io::Error| OutputError::Report {
        path: path.to_path_buf(),
        cause: e.to_string(),
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(err)?;
    let path = path.to_path_buf();
    let mut w = BufWriter::new(file);
    Worker::spawn("synfony-report", move || {
        let mut write = || -> std::io::Result<bool> {
            // Read the flag before draining, so the last lines are written.
            let stopping = stop.load(Ordering::Relaxed) || rx.is_abandoned();
            let mut wrote = false;
            while let Ok(line) = rx.pop() {
                writeln!(w, "{}", line.to_json())?;
                wrote = true;
            }
            if wrote {
                w.flush()?;
            }
            Ok(stopping)
        };
        loop {
            match write() {
                Ok(true) => return,
                Ok(false) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    let _ = errors.send(OutputError::Report {
                        path: path.clone(),
                        cause: e.to_string(),
                    });
                    return;
                }
            }
        }
    })
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
    fn open(
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
    fn write(&mut self, block: &[f32]) -> Result<(), OutputError> {
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
    fn skipped(&mut self, frames: usize) -> Result<(), OutputError> {
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

    fn finish(self) -> Result<(), OutputError> {
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

/// Sleeps until monotonic instant `t_ns` (absolute, so sleeps never add up;
/// a signal that interrupts the sleep does not end it early).
fn sleep_until(t_ns: i64) {
    let ts = libc::timespec {
        tv_sec: t_ns.div_euclid(1_000_000_000) as libc::time_t,
        tv_nsec: t_ns.rem_euclid(1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec; a null remainder is allowed with TIMER_ABSTIME.
    // clock_nanosleep returns its error code (EINTR) rather than setting errno.
    while unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    } == libc::EINTR
    {}
}

impl Output for NullDevice {
    fn describe(&self) -> String {
        match &self.sink {
            NullSink::Discard => "null".into(),
            NullSink::Wav(p) => format!("wav:{}", p.display()),
            NullSink::Raw(p) => format!("raw:{}", p.display()),
        }
    }

    fn start(self: Box<Self>, ctx: Context) -> Result<Worker, OutputError> {
        let Context {
            mut player,
            stop,
            errors,
        } = ctx;
        let stats = player.stats.clone();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let worker = Worker::spawn("synfony-null-device", move || {
            // Wake within a few µs of the asked instant, not the default
            // 50 µs timer slack.
            // SAFETY: PR_SET_TIMERSLACK takes a plain integer.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
            // Started once the sink is open, or once it waits for a FIFO's
            // reader (which may come much later, or never).
            let mut ready = Some(ready_tx);
            let mut started = |r: Result<(), OutputError>| {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(r);
                }
            };
            let mut sink = match Sink::open(&self.sink, &stop, || started(Ok(()))) {
                Ok(Some(s)) => {
                    started(Ok(()));
                    s
                }
                Ok(None) => return,
                Err(e) => {
                    started(Err(e));
                    return;
                }
            };
            let mut block = vec![0.0f32; self.period_frames * CHANNELS];
            let period_ns = self.period_frames as f64 * self.ns_per_frame;
            let t0 = monotonic_ns() + RENDER_LEAD_NS;
            let mut k: u64 = 0;
            let fail = |sink: &mut Sink, e| {
                // A broken sink (a FIFO's reader gone, a full disk) stops the
                // sink, not the music.
                let _ = errors.send(e);
                *sink = Sink::Discard;
            };
            while !stop.load(Ordering::Relaxed) {
                let t_k = self.play_at(t0, k);
                sleep_until(t_k - RENDER_LEAD_NS);
                let now = monotonic_ns();
                if now > t_k {
                    // The thread stalled past a block's play instant: the
                    // device played silence meanwhile. Skip to the next block
                    // that can still be rendered in time.
                    let behind = ((now - t0) as f64 / period_ns).ceil() as u64;
                    let next = behind.max(k + 1);
                    stats.xruns.fetch_add(next - k, Ordering::Relaxed);
                    let skipped = (next - k) as usize * self.period_frames;
                    if let Err(e) = sink.skipped(skipped) {
                        fail(&mut sink, e);
                    }
                    k = next;
                    continue;
                }
                player.play_block(&mut block, t_k);
                sleep_until(t_k);
                if let Err(e) = sink.write(&block) {
                    fail(&mut sink, e);
                }
                k += 1;
            }
            if let Err(e) = sink.finish() {
                let _ = errors.send(e);
            }
        })?;
        worker.started(ready_rx, "the null device")
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

    /// A short fixed buffer when the device allows one: the default (ALSA's
    /// whole ring, ~0.7 s through a plug device) would exceed the session's
    /// lead, so changes would land late.
    fn buffer_size(&self) -> cpal::BufferSize {
        use cpal::traits::DeviceTrait;
        let Ok(configs) = self.device.supported_output_configs() else {
            return cpal::BufferSize::Default;
        };
        configs
            .filter(|c| c.contains_rate(ENGINE_RATE_HZ))
            .find_map(|c| match c.buffer_size() {
                cpal::SupportedBufferSize::Range { min, max } => Some(cpal::BufferSize::Fixed(
                    DEVICE_BUFFER_FRAMES.clamp(*min, *max),
                )),
                cpal::SupportedBufferSize::Unknown => None,
            })
            .unwrap_or(cpal::BufferSize::Default)
    }
}

impl Output for CpalDevice {
    fn describe(&self) -> String {
        format!("device '{}'", self.name)
    }

    fn start(self: Box<Self>, ctx: Context) -> Result<Worker, OutputError> {
        use cpal::traits::{DeviceTrait, StreamTrait};
        let Context {
            player,
            stop,
            errors,
        } = ctx;
        let stats = player.stats.clone();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let name = self.name.clone();
        let device_err = move |cause: String| OutputError::Device {
            device: name.clone(),
            cause,
        };
        let thread_err = device_err.clone();
        // cpal's stream is not Send on every platform: one thread builds, owns
        // and drops it.
        let worker = Worker::spawn("synfony-cpal", move || {
            let device_err = thread_err;
            // The player reaches the callback through a one-slot ring once a
            // stream is built, so a failed attempt (a buffer size the device
            // refuses) does not take it down, and the callback stays wait-free.
            let build = |buffer_size| {
                let config = cpal::StreamConfig {
                    channels: CHANNELS as u16,
                    sample_rate: ENGINE_RATE_HZ,
                    buffer_size,
                };
                let (handoff, mut arrival) = rtrb::RingBuffer::<Player>::new(1);
                let mut player: Option<Player> = None;
                let cb_stats = stats.clone();
                let data = move |out: &mut [f32], info: &cpal::OutputCallbackInfo| {
                    if player.is_none() {
                        player = arrival.pop().ok();
                    }
                    let Some(player) = player.as_mut() else {
                        out.fill(0.0);
                        return;
                    };
                    let ts = info.timestamp();
                    let delay_ns = ts
                        .playback
                        .checked_duration_since(ts.callback)
                        .map_or(0, |d| d.as_nanos() as i64);
                    cb_stats
                        .device_latency_ns
                        .store(delay_ns, Ordering::Relaxed);
                    play_device_buffer(player, out, monotonic_ns() + delay_ns);
                };
                let err_stats = stats.clone();
                let err_tx = errors.clone();
                let device_err = device_err.clone();
                let on_error = move |e: cpal::Error| {
                    if e.kind() == cpal::ErrorKind::Xrun {
                        err_stats.xruns.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let _ = err_tx.send(device_err(e.to_string()));
                    }
                };
                self.device
                    .build_output_stream(config, data, on_error, None)
                    .map(|stream| (stream, handoff))
            };
            let preferred = self.buffer_size();
            let stream = match build(preferred) {
                Err(_) if preferred != cpal::BufferSize::Default => {
                    build(cpal::BufferSize::Default)
                }
                other => other,
            }
            .map(|(stream, mut handoff)| {
                // A fresh one-slot ring: the push cannot fail.
                let _ = handoff.push(player);
                stream
            });
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(match e.kind() {
                        cpal::ErrorKind::DeviceNotAvailable | cpal::ErrorKind::HostUnavailable => {
                            OutputError::NoDevice(e.to_string())
                        }
                        _ => device_err(format!("cannot open 48 kHz stereo f32 output: {e}")),
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
        })?;
        worker.started(ready_rx, "the device thread")
    }
}

/// One device callback: the buffer split into engine blocks, each with its own
/// play instant. Real-time safe.
fn play_device_buffer(player: &mut Player, out: &mut [f32], play_mono_ns: i64) {
    let frames = out.len() / CHANNELS;
    let ns_per_frame = 1e9 / ENGINE_RATE_HZ as f64;
    let mut done = 0;
    while done < frames {
        let n = (frames - done).min(MAX_BLOCK_FRAMES);
        let at = play_mono_ns + (done as f64 * ns_per_frame) as i64;
        player.play_block(&mut out[done * CHANNELS..(done + n) * CHANNELS], at);
        done += n;
    }
}
