//! The sound card, through cpal's default host and device, supervised.
//!
//! cpal calls two closures on its audio thread: the data callback, which
//! plays the [`Player`], and the error callback, which only touches atomics
//! ([`on_stream_error`]: it counts an xrun or records that the stream failed;
//! no allocation, no lock, no send). The `synfony-cpal` thread builds, owns
//! and drops the stream and supervises it, as kira's stream manager does:
//! every 100 ms it reads what the error callback recorded, every second it
//! asks which device is the default, and a [`Supervisor`] (pure, tested
//! without a sound card) says when to rebuild the stream — the device is
//! gone or the stream failed, or the default device changed — and when to
//! try again after a failure (backing off from 250 ms to 8 s). Each restart
//! and each outage is reported once on the output's error channel, and
//! counted in [`OutputStats::restarts`].
//!
//! The player survives restarts: it reaches the data callback through a
//! one-slot ring, and comes back through another when cpal drops the
//! callback (which it does, on ALSA, before dropping the stream returns).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

use super::device_clock::DeviceClock;
use super::server_latency::ServerLatency;
use super::{
    Context, DEVICE_BUFFER_FRAMES, Output, OutputError, OutputStats, Player, Refused, Worker,
};
use crate::audio::engine::MAX_BLOCK_FRAMES;
use crate::audio::{CHANNELS, ENGINE_RATE_HZ};
use crate::host_clock::monotonic_ns;

/// How often the device thread looks at the stream's health.
const CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// How often it asks which output device is the default.
const DEFAULT_POLL_NS: i64 = 1_000_000_000;
/// Retrying to open a device after a failure backs off between these.
const FIRST_RETRY_NS: i64 = 250_000_000;
const MAX_RETRY_NS: i64 = 8_000_000_000;
/// How long a dropped stream may take to hand the player back.
const HANDBACK_TIMEOUT: Duration = Duration::from_secs(1);

/// What went wrong with a running stream, as its error callback saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// The device (or its host) is gone or busy.
    DeviceGone = 1,
    /// The stream's configuration is no longer valid.
    Invalidated = 2,
    /// Any other stream error.
    Failed = 3,
}

impl Fault {
    fn describe(self) -> &'static str {
        match self {
            Fault::DeviceGone => "the device went away",
            Fault::Invalidated => "the stream was invalidated",
            Fault::Failed => "the stream failed",
        }
    }
}

/// What the error callback tells the device thread: atomics only.
#[derive(Debug, Default)]
pub struct StreamHealth {
    fault: AtomicU8,
}

impl StreamHealth {
    /// The first fault recorded since the last `take`, cleared.
    fn take(&self) -> Option<Fault> {
        match self.fault.swap(0, Ordering::AcqRel) {
            1 => Some(Fault::DeviceGone),
            2 => Some(Fault::Invalidated),
            3 => Some(Fault::Failed),
            _ => None,
        }
    }

    fn record(&self, fault: Fault) {
        // The first fault since the device thread last looked is the cause.
        let _ = self
            .fault
            .compare_exchange(0, fault as u8, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// The error callback's body. Runs on cpal's audio thread: it touches atomics
/// only (no allocation, no lock, no send, no log), so it is as real-time safe
/// as the data callback (`tests/audio_rt.rs` runs it under `assert_no_alloc`).
pub fn on_stream_error(kind: cpal::ErrorKind, stats: &OutputStats, health: &StreamHealth) {
    use cpal::ErrorKind as K;
    match kind {
        K::Xrun => {
            stats.xruns.fetch_add(1, Ordering::Relaxed);
        }
        // The stream was rerouted and plays on; or real-time priority was
        // refused, which only costs glitches (counted as xruns if they come).
        K::DeviceChanged | K::RealtimeDenied => {}
        K::DeviceNotAvailable | K::HostUnavailable | K::DeviceBusy => {
            health.record(Fault::DeviceGone)
        }
        K::StreamInvalidated => health.record(Fault::Invalidated),
        _ => health.record(Fault::Failed),
    }
}

/// Why the stream is being rebuilt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restart {
    Fault(Fault),
    /// The default output device is another one now.
    DefaultChanged,
    /// The last attempt failed; its backoff is over.
    Retry,
}

impl Restart {
    fn describe(&self) -> &'static str {
        match self {
            Restart::Fault(f) => f.describe(),
            Restart::DefaultChanged => "the default output device changed",
            Restart::Retry => "the device is back",
        }
    }
}

/// When to rebuild the stream, as a pure state machine over the device
/// thread's observations (`Id` is cpal's `DeviceId`; tests use strings).
#[derive(Clone, Debug, PartialEq)]
pub struct Supervisor<Id> {
    state: State<Id>,
    retry_ns: i64,
}

#[derive(Clone, Debug, PartialEq)]
enum State<Id> {
    /// A stream plays on this device (its id, when cpal could tell).
    Playing { device: Option<Id> },
    /// No stream: the next attempt is due at `retry_at_ns`.
    Down { retry_at_ns: i64 },
}

impl<Id: PartialEq> Supervisor<Id> {
    /// A stream was opened on `device`.
    pub fn playing(device: Option<Id>) -> Supervisor<Id> {
        Supervisor {
            state: State::Playing { device },
            retry_ns: FIRST_RETRY_NS,
        }
    }

    /// The error callback recorded `fault`.
    pub fn on_fault(&mut self, fault: Fault) -> Option<Restart> {
        match self.state {
            State::Playing { .. } => Some(Restart::Fault(fault)),
            State::Down { .. } => None,
        }
    }

    /// The default output device is now `default` (`None`: there is none, or
    /// cpal cannot name it, which is no reason to leave a working stream).
    pub fn on_default_device(&mut self, default: Option<Id>) -> Option<Restart> {
        match (&self.state, default) {
            (State::Playing { device: Some(d) }, Some(now)) if *d != now => {
                Some(Restart::DefaultChanged)
            }
            _ => None,
        }
    }

    /// Time passed: a failed device is tried again once its backoff is over.
    pub fn on_tick(&mut self, now_ns: i64) -> Option<Restart> {
        match self.state {
            State::Down { retry_at_ns } if now_ns >= retry_at_ns => Some(Restart::Retry),
            _ => None,
        }
    }

    /// A stream was opened on `device`: playing again, backoff reset.
    pub fn restarted(&mut self, device: Option<Id>) {
        self.state = State::Playing { device };
        self.retry_ns = FIRST_RETRY_NS;
    }

    /// Opening failed: try again later, each time a little later. Whether
    /// this begins an outage (the first failure since playing).
    pub fn failed(&mut self, now_ns: i64) -> bool {
        let began = matches!(self.state, State::Playing { .. });
        self.state = State::Down {
            retry_at_ns: now_ns.saturating_add(self.retry_ns),
        };
        self.retry_ns = (self.retry_ns * 2).min(MAX_RETRY_NS);
        began
    }

    pub fn is_playing(&self) -> bool {
        matches!(self.state, State::Playing { .. })
    }
}

/// The sound card, through cpal's default host and device.
pub struct CpalDevice {
    host: cpal::Host,
    device: cpal::Device,
    name: String,
}

impl CpalDevice {
    pub fn default_device() -> Result<CpalDevice, OutputError> {
        quiet_alsa();
        let host = cpal::default_host();
        let device = default_output(&host)?;
        let name = device_name(&device);
        Ok(CpalDevice { host, device, name })
    }
}

/// libasound prints its own errors to stderr (a dozen lines when a machine
/// has no sound card) besides returning them, which cpal turns into the
/// errors this module reports once. Its lines go to the debug log instead.
/// The handler may run on cpal's stream thread (an xrun's message): unless
/// debug logging is on, `tracing` evaluates and writes nothing there.
fn quiet_alsa() {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::{c_char, c_int};
        static ONCE: std::sync::Once = std::sync::Once::new();
        unsafe extern "C" fn to_debug_log(
            file: *const c_char,
            line: c_int,
            function: *const c_char,
            err: c_int,
            fmt: *const c_char,
        ) {
            let text = |p: *const c_char| {
                if p.is_null() {
                    String::new()
                } else {
                    // SAFETY: libasound passes NUL-terminated strings (or null).
                    unsafe { std::ffi::CStr::from_ptr(p) }
                        .to_string_lossy()
                        .into_owned()
                }
            };
            // The message's arguments are not read: its format says enough.
            tracing::debug!(
                file = text(file),
                line,
                function = text(function),
                err,
                format = text(fmt),
                "libasound reported an error"
            );
        }
        ONCE.call_once(|| {
            type Fixed =
                unsafe extern "C" fn(*const c_char, c_int, *const c_char, c_int, *const c_char);
            // SAFETY: libasound calls the handler through a variadic pointer;
            // ours declares the five fixed arguments only. Strictly, calling
            // a non-variadic function through a variadic type is undefined
            // in C; on the System V x86-64 and AAPCS64 conventions of Linux
            // the fixed arguments (integers and pointers) arrive in the same
            // registers either way and the extra ones are simply not read.
            // (Stable Rust cannot define a variadic function.)
            let handler = unsafe {
                std::mem::transmute::<Fixed, alsa_sys::snd_lib_error_handler_t>(to_debug_log)
            };
            // SAFETY: a static function pointer, valid for the process.
            unsafe { alsa_sys::snd_lib_error_set_handler(handler) };
        });
    }
}

fn default_output(host: &cpal::Host) -> Result<cpal::Device, OutputError> {
    host.default_output_device()
        .ok_or_else(|| OutputError::NoDevice("the audio host has no output device".into()))
}

fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_string())
        .unwrap_or_else(|_| "default".into())
}

/// A short fixed buffer when the device allows one: the default (ALSA's
/// whole ring, ~0.7 s through a plug device) would exceed the session's
/// lead, so changes would land late.
fn buffer_size(device: &cpal::Device) -> cpal::BufferSize {
    let Ok(configs) = device.supported_output_configs() else {
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

/// What the data callback owns. Dropped with the callback (when cpal drops
/// the stream), it hands the player back.
struct CallbackState {
    player: Option<Player>,
    arrival: rtrb::Consumer<Player>,
    back: rtrb::Producer<Player>,
    /// The device's time, smoothed over its callbacks.
    clock: DeviceClock,
}

impl Drop for CallbackState {
    fn drop(&mut self) {
        if let Some(p) = self.player.take().or_else(|| self.arrival.pop().ok()) {
            // A fresh one-slot ring, pushed to once: it cannot be full.
            let _ = self.back.push(p);
        }
    }
}

/// A stream that plays, what its error callback records (one per stream, so
/// a dying stream's last errors never restart the next one), and the ring
/// its player comes back on.
struct Playing {
    stream: cpal::Stream,
    health: Arc<StreamHealth>,
    back: rtrb::Consumer<Player>,
}

/// Opens a stream on `device` and hands it the player from `slot`; on
/// failure the player is back in `slot` (unless the backend kept the
/// callback of a stream that would not start, which leaves it empty).
fn open(
    device: &cpal::Device,
    name: &str,
    slot: &mut Option<Player>,
    stats: &Arc<OutputStats>,
) -> Result<Playing, OutputError> {
    let health = Arc::new(StreamHealth::default());
    let device_err = |cause: String| OutputError::Device {
        device: name.to_string(),
        cause,
    };
    // The player reaches the callback through a one-slot ring once a stream
    // is built, so a failed attempt (a buffer size the device refuses) does
    // not take it down, and the callback stays wait-free.
    let build = |buffer_size| {
        let config = cpal::StreamConfig {
            channels: CHANNELS as u16,
            sample_rate: ENGINE_RATE_HZ,
            buffer_size,
        };
        let (handoff, arrival) = rtrb::RingBuffer::<Player>::new(1);
        let (back_tx, back) = rtrb::RingBuffer::<Player>::new(1);
        let mut state = CallbackState {
            player: None,
            arrival,
            back: back_tx,
            clock: DeviceClock::new(ENGINE_RATE_HZ),
        };
        let cb_stats = stats.clone();
        let data = move |out: &mut [f32], info: &cpal::OutputCallbackInfo| {
            if state.player.is_none() {
                state.player = state.arrival.pop().ok();
            }
            let Some(player) = state.player.as_mut() else {
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
            // The sound server's latency when the device reports none
            // (`server_latency`). Added after the loop: it changes in steps
            // (once a second, as the server answers), which the loop would
            // smooth over seconds.
            let server_ns = cb_stats.server_latency_ns.load(Ordering::Relaxed);
            let at = state
                .clock
                .on_callback(monotonic_ns() + delay_ns, out.len() / CHANNELS);
            play_device_buffer(player, out, at + server_ns);
        };
        let err_stats = stats.clone();
        let err_health = health.clone();
        let on_error = move |e: cpal::Error| on_stream_error(e.kind(), &err_stats, &err_health);
        device
            .build_output_stream(config, data, on_error, None)
            .map(|stream| (stream, handoff, back))
    };
    let preferred = buffer_size(device);
    let built = match build(preferred) {
        Err(_) if preferred != cpal::BufferSize::Default => build(cpal::BufferSize::Default),
        other => other,
    };
    let (stream, mut handoff, back) = match built {
        Ok(b) => b,
        Err(e) => {
            let err = match e.kind() {
                cpal::ErrorKind::DeviceNotAvailable | cpal::ErrorKind::HostUnavailable => {
                    OutputError::NoDevice(e.to_string())
                }
                _ => device_err(format!("cannot open 48 kHz stereo f32 output: {e}")),
            };
            return Err(err);
        }
    };
    if let Some(player) = slot.take() {
        // A fresh one-slot ring: the push cannot fail.
        let _ = handoff.push(player);
    }
    let playing = Playing {
        stream,
        health,
        back,
    };
    if let Err(e) = playing.stream.play() {
        *slot = playing.stop();
        return Err(device_err(format!("cannot start: {e}")));
    }
    Ok(playing)
}

impl Playing {
    /// Drops the stream and takes the player back from its callback.
    fn stop(self) -> Option<Player> {
        let Playing {
            stream, mut back, ..
        } = self;
        drop(stream);
        let deadline = std::time::Instant::now() + HANDBACK_TIMEOUT;
        loop {
            if let Ok(p) = back.pop() {
                return Some(p);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn device_id(device: &cpal::Device) -> Option<cpal::DeviceId> {
    device.id().ok()
}

impl Output for CpalDevice {
    fn describe(&self) -> String {
        format!("device '{}'", self.name)
    }

    fn start(self: Box<Self>, ctx: Context) -> Result<Worker, Refused> {
        let Context {
            player,
            stop,
            errors,
        } = ctx;
        let stats = player.stats.clone();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        // cpal's stream is not Send on every platform: one thread builds, owns,
        // supervises and drops it.
        let worker = Worker::spawn("synfony-cpal", move || {
            let CpalDevice { host, device, name } = *self;
            // The player while no stream holds it.
            let mut idle = Some(player);
            let mut live = match open(&device, &name, &mut idle, &stats) {
                Ok(p) => Some(p),
                Err(error) => {
                    // The player back, for another output to play it.
                    let ctx = idle.take().map(|player| {
                        Box::new(Context {
                            player,
                            stop,
                            errors,
                        })
                    });
                    let _ = ready_tx.send(Err(Refused { error, ctx }));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let mut sup = Supervisor::playing(device_id(&device));
            let mut name = name;
            let mut next_default_poll_ns = monotonic_ns() + DEFAULT_POLL_NS;
            let mut server = ServerLatency::default();
            let mut device_says = false;
            let gave_up = |name: &str, why: &str| OutputError::Device {
                device: name.to_string(),
                cause: format!(
                    "{why}, and the stream did not give the engine back: output stopped"
                ),
            };
            while !stop.load(Ordering::Relaxed) {
                std::thread::park_timeout(CHECK_INTERVAL);
                let now = monotonic_ns();
                let mut restart = (live.as_ref())
                    .and_then(|p| p.health.take())
                    .and_then(|f| sup.on_fault(f));
                if restart.is_none() && now >= next_default_poll_ns {
                    next_default_poll_ns = now + DEFAULT_POLL_NS;
                    // A device that reports its delay reports all of it
                    // (`server_latency`); for one that reports none, ask the
                    // sound server.
                    if live.is_some() {
                        // Once the device has reported a delay, one zero
                        // reading does not make it a device that reports none.
                        device_says |= stats.device_latency_ns.load(Ordering::Relaxed) != 0;
                        // No answer (no stream of ours there: another device
                        // after a restart): nothing is added.
                        let ns = if device_says {
                            0
                        } else {
                            server.poll().unwrap_or(0)
                        };
                        let was = stats.server_latency_ns.swap(ns, Ordering::Relaxed);
                        if was == 0 && ns != 0 {
                            tracing::info!(
                                "the device reports no output latency: the sound server says {:.1} ms",
                                ns as f64 / 1e6
                            );
                        }
                    }
                    if sup.is_playing() {
                        let default = host.default_output_device();
                        restart = sup.on_default_device(default.as_ref().and_then(device_id));
                    }
                }
                if restart.is_none() {
                    restart = sup.on_tick(now);
                }
                let Some(why) = restart else { continue };
                if let Some(p) = live.take() {
                    match p.stop() {
                        Some(player) => idle = Some(player),
                        None => {
                            let _ = errors.send(gave_up(&name, why.describe()));
                            return;
                        }
                    }
                }
                if idle.is_none() {
                    return;
                }
                let next = default_output(&host).map(|d| {
                    let n = device_name(&d);
                    (d, n)
                });
                let (device, new_name) = match next {
                    Ok(d) => d,
                    Err(e) => {
                        if sup.failed(now) {
                            let _ = errors.send(OutputError::Lost {
                                device: name.clone(),
                                cause: format!("{}; reopening: {}", why.describe(), cause_of(&e)),
                            });
                        }
                        continue;
                    }
                };
                match open(&device, &new_name, &mut idle, &stats) {
                    Ok(p) => {
                        live = Some(p);
                        name = new_name;
                        sup.restarted(device_id(&device));
                        stats.restarts.fetch_add(1, Ordering::Relaxed);
                        let _ = errors.send(OutputError::Restarted {
                            device: name.clone(),
                            cause: why.describe().to_string(),
                        });
                    }
                    Err(e) if idle.is_none() => {
                        let _ = errors.send(gave_up(&new_name, &e.to_string()));
                        return;
                    }
                    Err(e) => {
                        if sup.failed(now) {
                            let _ = errors.send(OutputError::Lost {
                                device: name.clone(),
                                cause: format!("{}; reopening: {}", why.describe(), cause_of(&e)),
                            });
                        }
                    }
                }
            }
            if let Some(p) = live.take() {
                drop(p.stream);
            }
        })?;
        worker.started(ready_rx, "the device thread")
    }
}

/// What an error says, without the device's name (the message names it once).
fn cause_of(e: &OutputError) -> String {
    match e {
        OutputError::Device { cause, .. } => cause.clone(),
        OutputError::NoDevice(cause) => cause.clone(),
        other => other.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    /// A stream fault restarts a playing stream; a failed restart backs off,
    /// doubling up to the limit, and only the first failure begins an outage;
    /// success resets the backoff.
    #[test]
    fn faults_restart_and_failures_back_off() {
        let mut s = Supervisor::playing(Some("hw:0"));
        assert_eq!(
            s.on_fault(Fault::DeviceGone),
            Some(Restart::Fault(Fault::DeviceGone))
        );
        assert!(s.failed(0), "the first failure begins an outage");
        assert_eq!(
            s.on_fault(Fault::Failed),
            None,
            "no stream, nothing to restart"
        );
        assert_eq!(s.on_tick(249 * MS), None);
        assert_eq!(s.on_tick(250 * MS), Some(Restart::Retry));
        assert!(!s.failed(250 * MS), "still the same outage");
        assert_eq!(s.on_tick(749 * MS), None, "backoff doubled to 500 ms");
        assert_eq!(s.on_tick(750 * MS), Some(Restart::Retry));
        let mut t = 750 * MS;
        for _ in 0..10 {
            s.failed(t);
            t += MAX_RETRY_NS;
        }
        assert_eq!(s.on_tick(t - 1), None);
        assert_eq!(
            s.on_tick(t),
            Some(Restart::Retry),
            "capped at {MAX_RETRY_NS} ns"
        );
        s.restarted(Some("hw:1"));
        assert!(s.is_playing());
        assert_eq!(s.on_tick(t + 10 * MAX_RETRY_NS), None, "nothing to retry");
        s.on_fault(Fault::Invalidated);
        s.failed(t);
        assert_eq!(
            s.on_tick(t + FIRST_RETRY_NS),
            Some(Restart::Retry),
            "backoff reset"
        );
    }

    /// A new default device restarts the stream; the same one, or none that
    /// cpal can name, does not.
    #[test]
    fn a_new_default_device_restarts() {
        let mut s = Supervisor::playing(Some("hw:0"));
        assert_eq!(s.on_default_device(Some("hw:0")), None);
        assert_eq!(s.on_default_device(None), None);
        assert_eq!(
            s.on_default_device(Some("usb")),
            Some(Restart::DefaultChanged)
        );
        let mut unnamed: Supervisor<&str> = Supervisor::playing(None);
        assert_eq!(unnamed.on_default_device(Some("usb")), None);
    }

    /// The error callback counts xruns, ignores reroutes, and keeps the first
    /// fault until the device thread takes it.
    #[test]
    fn the_error_callback_records_the_first_fault() {
        let stats = OutputStats::default();
        let health = StreamHealth::default();
        on_stream_error(cpal::ErrorKind::Xrun, &stats, &health);
        on_stream_error(cpal::ErrorKind::DeviceChanged, &stats, &health);
        assert_eq!(stats.xruns.load(Ordering::Relaxed), 1);
        assert_eq!(health.take(), None);
        on_stream_error(cpal::ErrorKind::DeviceNotAvailable, &stats, &health);
        on_stream_error(cpal::ErrorKind::BackendError, &stats, &health);
        assert_eq!(health.take(), Some(Fault::DeviceGone));
        assert_eq!(health.take(), None);
        on_stream_error(cpal::ErrorKind::StreamInvalidated, &stats, &health);
        assert_eq!(health.take(), Some(Fault::Invalidated));
    }
}
