//! Plays stems on an output backend for a few seconds, with no session: a
//! bench for the backends before (and beside) the peer runtime.
//!
//! ```text
//! cargo run --release --example play -- [--output KIND] [--secs S] [--report PATH] [STEMS...]
//! ```
//! With no stems, the bundled demo song. Prints the output's counters at the end.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;

use synfony::audio::load::load_all;
use synfony::audio::output::{self, OutputConfig, OutputKind};
use synfony::audio::{ENGINE_RATE_HZ, Engine, MixGains, Scheduled, Streamer};
use synfony::protocol::{SessionMap, Timeline};

fn main() -> anyhow::Result<()> {
    let mut kind = OutputKind::Null;
    let mut secs = 5.0f64;
    let mut cfg = OutputConfig::default();
    let mut paths = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--output" => kind = value()?.parse()?,
            "--secs" => secs = value()?.parse()?,
            "--report" => cfg.report = Some(PathBuf::from(value()?)),
            "--period-frames" => cfg.period_frames = value()?.parse()?,
            _ => paths.push(PathBuf::from(a)),
        }
    }
    if paths.is_empty() {
        paths.push(synfony::assets::demo_song_dir());
    }
    let stems = load_all(&paths, ENGINE_RATE_HZ)?;
    let (engine, mut handle, mut retired) =
        Engine::new(stems.iter().map(Streamer::local).collect(), ENGINE_RATE_HZ);
    let now = cfg.clock.now_ns();
    handle.set_map(SessionMap::starting_at(now))?;
    let start = 200_000_000;
    handle.schedule_raw(Scheduled {
        apply_at_session_ns: start,
        timeline: Timeline {
            playing: true,
            anchor_position_ns: 0,
            anchor_session_ns: start,
        },
        gains: MixGains::UNITY,
    })?;
    let backend = output::backend(&kind, &cfg)?;
    eprintln!("playing {} stems on {}", stems.len(), backend.describe());
    let running = output::start(backend, engine, &cfg)?;
    std::thread::sleep(std::time::Duration::from_secs_f64(secs));
    retired.collect();
    for e in running.errors.try_iter() {
        eprintln!("output error: {e}");
    }
    let (o, e) = (&running.stats, &handle.stats);
    println!(
        "{{\"blocks\":{},\"xruns\":{},\"device_latency_us\":{},\"engine_underruns\":{},\"resyncs\":{},\"ratio_ppm\":{:.1},\"error_us\":{:.1}}}",
        o.blocks.load(Relaxed),
        o.xruns.load(Relaxed),
        o.device_latency_ns.load(Relaxed) / 1000,
        e.underruns.load(Relaxed),
        e.resyncs.load(Relaxed),
        e.ratio_ppb.load(Relaxed) as f64 / 1000.0,
        e.error_ns.load(Relaxed) as f64 / 1000.0,
    );
    running.stop();
    Ok(())
}
