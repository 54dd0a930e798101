//! Output backends: where the engine's blocks go, and when.
//!
//! Every backend implements [`Output`]: it owns the [`Engine`] once started
//! and calls [`Player::play_block`] for each buffer with the real monotonic
//! instant at which that buffer's first frame leaves the device. `play_block`
//! is the one place that maps device time to the peer's clock (adding the
//! speakers' `--latency-offset-ms`), renders, and queues the `--report` line;
//! it is real-time safe.
//!
//! One file a backend, as librespot's are: `player.rs` (the engine as a
//! backend drives it), `null.rs` (the virtual device) with its sinks
//! (`sink.rs`), `cpal.rs` (the sound card, supervised), and `report.rs` (the
//! `--report` writer); this file holds what they share and [`start`], which
//! runs one.
//!
//! - [`NullDevice`]: a virtual device paced by `CLOCK_MONOTONIC`. Block `k`
//!   plays at `t0 + k × period / (rate × (1 + drift))`; it is rendered
//!   [`RENDER_LEAD_NS`] ahead and handed to its sink (nothing, a WAV file, or
//!   raw s16le written at the play instant) when it plays.
//! - [`CpalDevice`]: the sound card, through cpal; the play instant is the
//!   callback's monotonic time plus cpal's reported playback delay. A lost
//!   device, or a new default device, restarts the stream (see `cpal.rs`).

mod cpal;
pub mod device_clock;
mod null;
mod player;
mod report;
pub mod server_latency;
mod sink;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::ENGINE_RATE_HZ;
use super::engine::{Engine, Jump};
use crate::host_clock::LocalClock;

pub use self::cpal::{CpalDevice, StreamHealth, on_stream_error};
pub use null::{NullDevice, NullSink};
pub use player::Player;
use report::spawn_report_writer;
pub use sink::f32_to_s16;

/// The virtual devices render each block this long before it plays: well
/// under the session's decide guard (70 ms by default, which must exceed
/// a block plus this lead), so a decision is always in the
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
    #[error("no sound device: {0}")]
    NoDevice(String),
    #[error("sound device '{device}': {cause}")]
    Device { device: String, cause: String },
    #[error("sound device '{device}' lost ({cause}); trying again until it is back")]
    Lost { device: String, cause: String },
    #[error("restarted on sound device '{device}' ({cause})")]
    Restarted { device: String, cause: String },
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
    /// The sound server's latency for our stream, when the device reports
    /// none (`server_latency`): added to the device's play instants.
    pub server_latency_ns: AtomicI64,
    /// Times the sound card's stream was rebuilt (a lost device, a new
    /// default device).
    pub restarts: AtomicU64,
    /// How long after it was rendered a block's last frame is heard, the
    /// largest since the runtime last took it (`swap(0)`): a decision must be
    /// in the engine that long before it applies (the session's guard).
    pub render_ahead_ns: AtomicI64,
}

/// One `--report` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportLine {
    pub mono_ns: i64,
    pub pos_frames: i64,
    pub playing: bool,
    /// The song playing (its id's bytes).
    pub song: [u8; 16],
    /// The session time of the first frame, as this peer maps it.
    pub session_ns: Option<i64>,
    /// The last jump inside the block.
    pub jump: Option<Jump>,
}

impl ReportLine {
    /// The line as INTERFACE.md writes it.
    pub fn to_json(&self) -> String {
        let hex = |id: &[u8; 16]| -> String { id.iter().map(|b| format!("{b:02x}")).collect() };
        let mut line = format!(
            "{{\"mono_ns\":{},\"pos_frames\":{},\"rate\":{},\"playing\":{},\"song\":\"{}\"",
            self.mono_ns,
            self.pos_frames,
            ENGINE_RATE_HZ,
            self.playing,
            hex(&self.song)
        );
        if let Some(s) = self.session_ns {
            line += &format!(",\"session_ns\":{s}");
        }
        if let Some(j) = self.jump {
            line += &format!(
                ",\"jump\":{{\"at_frames\":{},\"pos_frames\":{},\"playing\":{},\"song\":\"{}\"}}",
                j.at_frames,
                j.pos_frames,
                j.playing,
                hex(&j.song)
            );
        }
        line.push('}');
        line
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
    /// on; returns once the device is open (or failed to open, giving the
    /// context back when it can, for another output to start with).
    fn start(self: Box<Self>, ctx: Context) -> Result<Worker, Refused>;
}

/// An output that did not start: why, and what it was given if it could
/// give it back.
pub struct Refused {
    pub error: OutputError,
    pub ctx: Option<Box<Context>>,
}

impl From<OutputError> for Refused {
    fn from(error: OutputError) -> Refused {
        Refused { error, ctx: None }
    }
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
        ready: mpsc::Receiver<Result<(), Refused>>,
        what: &str,
    ) -> Result<Worker, Refused> {
        match ready.recv() {
            Ok(Ok(())) => Ok(self),
            Ok(Err(e)) => {
                self.finish(STOP_TIMEOUT);
                Err(e)
            }
            Err(_) => Err(OutputError::Thread(format!("{what} died")).into()),
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
    let (mut running, ctx) = prepare(engine, cfg)?;
    // On failure, dropping `running` stops the report writer.
    running.device = Some(output.start(ctx).map_err(|r| r.error)?);
    Ok(running)
}

/// What every output starts with: the report writer (if asked) and the
/// player.
fn prepare(engine: Engine, cfg: &OutputConfig) -> Result<(Running, Context), OutputError> {
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
    Ok((running, ctx))
}

/// An output started by [`open`].
pub struct Opened {
    pub running: Running,
    /// What plays, as the backend describes itself.
    pub described: String,
    /// The sound device asked for did not open, and why: the null device
    /// plays instead (to be said once, by the caller).
    pub fallback: Option<OutputError>,
}

/// Starts `engine` on the output `kind`, with the report writer if asked. A
/// sound device that cannot be opened gives way to the null device, so a
/// peer without one still keeps time with its session.
pub fn open(kind: &OutputKind, engine: Engine, cfg: &OutputConfig) -> Result<Opened, OutputError> {
    let (mut running, ctx) = prepare(engine, cfg)?;
    let may_fall_back = *kind == OutputKind::Device;
    // On failure, dropping `running` stops the report writer.
    let (ctx, why) = match backend(kind, cfg) {
        Ok(output) => {
            let described = output.describe();
            match output.start(ctx) {
                Ok(worker) => {
                    running.device = Some(worker);
                    return Ok(Opened {
                        running,
                        described,
                        fallback: None,
                    });
                }
                Err(Refused {
                    error,
                    ctx: Some(ctx),
                }) if may_fall_back => (*ctx, error),
                Err(r) => return Err(r.error),
            }
        }
        Err(error) if may_fall_back => (ctx, error),
        Err(e) => return Err(e),
    };
    let null = backend(&OutputKind::Null, cfg)?;
    let described = format!("{} (no sound device)", null.describe());
    running.device = Some(null.start(ctx).map_err(|r| r.error)?);
    Ok(Opened {
        running,
        described,
        fallback: Some(why),
    })
}
