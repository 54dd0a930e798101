//! The `synfony` binary: argument parsing and error reporting at the edge
//! (`anyhow` lives only here). `synfony` opens the mixer window over a peer;
//! `synfony --headless` runs a peer driven on stdin; `synfony render` mixes
//! offline.

use std::path::PathBuf;
use std::process::ExitCode;

use std::net::SocketAddr;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use synfony::audio::load::{LoadError, load_each, open_each};
use synfony::audio::output::OutputConfig;
use synfony::audio::output::{
    DEFAULT_PERIOD_FRAMES, MAX_DEVICE_DRIFT_PPM, OutputKind, PERIOD_FRAMES_RANGE,
};
use synfony::audio::render::{RenderSpec, StemRef, render, write_wav};
use synfony::audio::{ENGINE_RATE_HZ, LocalStem};
use synfony::host_clock::{LocalClock, monotonic_ns};
use synfony::runtime::peer::{AutoJoin, Discovery, run_headless};
use synfony::ui::PeerTemplate;

const DEFAULT_LISTEN: &str = "0.0.0.0:7878";

const EXAMPLES: &str = "\
Examples:
  synfony drums.wav bass.flac          start a session with your stems (none: the demo song)
  synfony --join 192.168.1.20:7878     join a session through any member's address
  synfony --join auto                  join the session found on this network";

#[derive(Parser, Debug)]
#[command(
    name = "synfony",
    version,
    about = "Peer-to-peer multi-stem jam sessions",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    peer: PeerArgs,
}

/// Running a peer (INTERFACE.md).
#[derive(clap::Args, Debug)]
struct PeerArgs {
    /// Stems for the peer (audio files or folders); with none and no --join,
    /// the bundled demo song.
    stems: Vec<PathBuf>,
    /// TCP address to accept peers on; port 0 picks a free port.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// The address other peers should dial to reach this one (NAT, a port
    /// forward, a proxy). Default: the bound listen address.
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// A peer already in the session (repeatable; any member works), or
    /// `auto`: the first session found on the local network (the one
    /// --session names, if given).
    #[arg(long = "join", value_name = "ADDR|auto", value_parser = parse_join)]
    joins: Vec<String>,
    /// The session's name on the local network: the one this peer creates
    /// (default: the host name), or the one `--join auto` looks for.
    #[arg(long, value_name = "NAME", value_parser = parse_session_name)]
    session: Option<String>,
    /// Do not announce this peer's session on the local network (mDNS).
    #[arg(long)]
    no_announce: bool,
    /// Display name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Session secret; peers without it cannot join, vote or fetch stems.
    /// Without one the session is open to anyone who can reach the port.
    #[arg(long, env = "SYNFONY_PASSPHRASE", hide_env_values = true)]
    passphrase: Option<String>,
    /// No window: commands on stdin, JSON events on stdout, logs on stderr.
    #[arg(long)]
    headless: bool,
    /// device, null, wav:PATH or raw:PATH (default: device, with a window or
    /// headless; the null device if no sound device opens).
    #[arg(long, value_parser = parse_output)]
    output: Option<OutputKind>,
    /// Block size of the null/wav/raw virtual device, in frames.
    #[arg(long, default_value_t = DEFAULT_PERIOD_FRAMES, value_parser = parse_period)]
    period_frames: usize,
    /// Append one JSON line per output buffer to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Extra output latency of this peer's speakers (Bluetooth, HDMI), in ms.
    #[arg(long, default_value_t = 0.0, value_parser = parse_latency_ms, allow_negative_numbers = true)]
    latency_offset_ms: f64,
    /// Test only: this peer's clock runs this far off the monotonic clock.
    #[arg(
        long,
        default_value_t = 0.0,
        hide = true,
        allow_negative_numbers = true
    )]
    clock_offset_ms: f64,
    /// Test only: this peer's clock runs this much fast (ppm).
    #[arg(
        long,
        default_value_t = 0.0,
        hide = true,
        allow_negative_numbers = true
    )]
    clock_drift_ppm: f64,
    /// Test only: the null device consumes frames this much fast (ppm).
    #[arg(
        long,
        default_value_t = 0.0,
        hide = true,
        allow_negative_numbers = true
    )]
    device_drift_ppm: f64,
    /// Where stems fetched from other peers are kept (content-addressed,
    /// checked against their hash), so a second play costs no network.
    /// Default: the user's cache directory + synfony/stems.
    #[arg(long, env = "SYNFONY_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Keep no fetched stems on disk.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// Where this peer keeps the session library between runs.
    /// Default: the user's data directory + synfony.
    #[arg(long, env = "SYNFONY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// How far ahead of the playhead a remote stem is fetched and decoded.
    #[arg(long, default_value_t = 10.0, value_parser = parse_prefetch_secs)]
    prefetch_secs: f64,
    /// Measuring the window: one JSON line a second of frame rate and UI
    /// time to this file.
    #[arg(long, hide = true)]
    frame_stats: Option<PathBuf>,
}

/// `--join`: `HOST:PORT`, or `auto`.
fn parse_join(s: &str) -> Result<String, String> {
    if s.trim() == AUTO_JOIN {
        return Ok(AUTO_JOIN.to_string());
    }
    synfony::runtime::net::check_join_spec(s)
}

const AUTO_JOIN: &str = "auto";

/// `--session`: a name the LAN announcement carries as it is.
fn parse_session_name(s: &str) -> Result<String, String> {
    let max = synfony::protocol::message::MAX_NAME_BYTES;
    if s.trim().is_empty() {
        Err("a session's name cannot be empty".into())
    } else if !synfony::runtime::lan::is_announceable(s) {
        Err(format!(
            "a session's name is at most {max} bytes, without control characters"
        ))
    } else {
        Ok(s.to_string())
    }
}

fn parse_output(s: &str) -> Result<OutputKind, String> {
    s.parse()
        .map_err(|e: synfony::audio::output::OutputError| e.to_string())
}

fn parse_period(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if PERIOD_FRAMES_RANGE.contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a block size in frames ({}..={})",
            PERIOD_FRAMES_RANGE.start(),
            PERIOD_FRAMES_RANGE.end()
        )),
    }
}

fn parse_prefetch_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (1.0..=600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a prefetch window in seconds (1 to 600)"
        )),
    }
}

fn parse_latency_ms(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v.abs() <= 10_000.0 => Ok(v),
        _ => Err(format!("{s:?} is not a latency in ms (within ±10 s)")),
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mix stems offline into a 32-bit float stereo WAV, sample-exact, with the
    /// live engine's code.
    Render(RenderArgs),
}

#[derive(clap::Args, Debug)]
struct RenderArgs {
    /// Audio files or folders of audio files, one stem per file.
    #[arg(required = true)]
    stems: Vec<PathBuf>,
    /// The WAV file to write.
    #[arg(long)]
    out: PathBuf,
    /// A stem's gain: STEM=DB, STEM a file stem name or an index; DB may be -inf.
    #[arg(long = "gain", value_parser = parse_gain)]
    gains: Vec<(StemRef, f32)>,
    /// Silence a stem (name or index).
    #[arg(long = "mute")]
    mutes: Vec<String>,
    /// Start of the range, in seconds of the song.
    #[arg(long, default_value_t = 0.0, value_parser = parse_secs)]
    from: f64,
    /// End of the range, in seconds (default: the end of the longest stem).
    #[arg(long, value_parser = parse_secs)]
    to: Option<f64>,
    /// Output sample rate.
    #[arg(long, default_value_t = 48_000, value_parser = clap::value_parser!(u32).range(8_000..=384_000))]
    rate: u32,
}

fn parse_gain(s: &str) -> Result<(StemRef, f32), String> {
    let (stem, db) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("{s:?}: expected STEM=DB"))?;
    let db: f32 = match db.trim().to_ascii_lowercase().as_str() {
        "-inf" | "-infinity" => f32::NEG_INFINITY,
        other => other
            .parse()
            .map_err(|_| format!("{s:?}: {db:?} is not a gain in dB"))?,
    };
    if db.is_nan() || db == f32::INFINITY {
        return Err(format!("{s:?}: the gain must be a number of dB or -inf"));
    }
    Ok((StemRef::parse(stem), db))
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a time in seconds (≥ 0)")),
    }
}

fn run_render(args: RenderArgs) -> anyhow::Result<()> {
    let (stems, _) = load_or_skip(load_each(&args.stems, args.rate), &args.stems)?;
    let spec = RenderSpec {
        gains_db: args.gains,
        muted: args.mutes.iter().map(|m| StemRef::parse(m)).collect(),
        from_secs: args.from,
        to_secs: args.to,
        rate_hz: args.rate,
    };
    let mix = render(&stems, &spec)?;
    write_wav(&args.out, &mix, args.rate)?;
    Ok(())
}

/// Files that did not load, and why.
type Skipped = Vec<(PathBuf, String)>;

/// The stems that loaded (of `paths`); each file that did not is skipped
/// with a line on stderr naming it and why. Nothing loaded is the error (one
/// line, every problem in it).
fn load_or_skip<T>(
    (stems, problems): (Vec<T>, Vec<LoadError>),
    paths: &[PathBuf],
) -> anyhow::Result<(Vec<T>, Skipped)> {
    if stems.is_empty() {
        let all: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        if all.is_empty() {
            let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            anyhow::bail!("no audio files in {}", shown.join(", "));
        }
        anyhow::bail!("{}", all.join("; "));
    }
    for p in &problems {
        eprintln!("synfony: skipped {p}");
    }
    Ok((stems, problems.iter().filter_map(|p| p.skipped()).collect()))
}

/// Checks what clap's parsers cannot see alone; a usage error (exit 2).
fn validate_peer(args: &PeerArgs) -> Result<(), clap::Error> {
    let usage = |msg: String| Cli::command().error(clap::error::ErrorKind::ValueValidation, msg);
    LocalClock::skewed(args.clock_offset_ms, args.clock_drift_ppm, 0)
        .map_err(|e| usage(e.to_string()))?;
    if !args.device_drift_ppm.is_finite() || args.device_drift_ppm.abs() > MAX_DEVICE_DRIFT_PPM {
        return Err(usage(format!(
            "--device-drift-ppm {} is not a number within ±{MAX_DEVICE_DRIFT_PPM}",
            args.device_drift_ppm
        )));
    }
    Ok(())
}

/// The host name, for the default display name.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if ok && !name.is_empty() => name.chars().take(64).collect(),
        _ => "synfony".to_string(),
    }
}

/// The peer's options from the command line, less the stems.
/// `listen_is_default`: `--listen` was not given (the window may then fall
/// back to a free port if 7878 is taken).
fn template(args: &PeerArgs, listen_is_default: bool) -> anyhow::Result<PeerTemplate> {
    let clock = LocalClock::skewed(args.clock_offset_ms, args.clock_drift_ppm, monotonic_ns())?;
    // A headless peer is a speaker too (the null device if none opens).
    let output = args.output.clone().unwrap_or(OutputKind::Device);
    let auto_join = if !args.joins.iter().any(|j| j == AUTO_JOIN) {
        AutoJoin::Off
    } else if let Some(name) = &args.session {
        AutoJoin::Named(name.clone())
    } else {
        AutoJoin::Any
    };
    Ok(PeerTemplate {
        listen: args.listen,
        listen_is_default,
        advertise: args.advertise,
        joins: (args.joins.iter())
            .filter(|j| *j != AUTO_JOIN)
            .cloned()
            .collect(),
        discovery: Discovery {
            session: args.session.clone().unwrap_or_else(host_name),
            announce: !args.no_announce,
            auto_join,
            // The window lists the sessions found.
            browse: !args.headless,
        },
        name: args.name.clone().unwrap_or_else(host_name),
        passphrase: args.passphrase.clone(),
        clock,
        session: synfony::protocol::Config::default(),
        output,
        output_cfg: OutputConfig {
            clock,
            latency_offset_ns: (args.latency_offset_ms * 1e6).round() as i64,
            report: args.report.clone(),
            period_frames: args.period_frames,
            device_drift_ppm: args.device_drift_ppm,
        },
        cache_dir: if args.no_cache {
            None
        } else {
            args.cache_dir
                .clone()
                .or_else(synfony::room::cache::default_dir)
        },
        prefetch_ns: (args.prefetch_secs * 1e9).round() as i64,
        data_dir: args
            .data_dir
            .clone()
            .or_else(|| directories::BaseDirs::new().map(|d| d.data_dir().join("synfony"))),
        song_name: Some(synfony::runtime::library::default_song_name(&stem_paths(
            args,
        ))),
    })
}

/// The stems to start with: those given, else (not joining) the demo song.
fn stem_paths(args: &PeerArgs) -> Vec<PathBuf> {
    if args.stems.is_empty() && args.joins.is_empty() {
        vec![synfony::assets::demo_song_dir()]
    } else {
        args.stems.clone()
    }
}

/// The mixer window over a peer; returns when the window closes.
fn run_window(args: PeerArgs, listen_is_default: bool) -> anyhow::Result<()> {
    let template = template(&args, listen_is_default)?;
    synfony::ui::run(template, stem_paths(&args), args.frame_stats)?;
    Ok(())
}

/// A headless peer: loads the stems, then runs the mesh, the engine and the
/// control on stdin until `quit` or a signal.
fn run_headless_peer(args: PeerArgs) -> anyhow::Result<()> {
    let paths = stem_paths(&args);
    let (stems, skipped) = if paths.is_empty() {
        tracing::info!("no stems: this peer fetches the session's song from the other peers");
        (Vec::new(), Vec::new())
    } else {
        // Streamed from disk: only headers are read before the peer starts.
        let (files, skipped) = load_or_skip(open_each(&paths, ENGINE_RATE_HZ), &paths)?;
        (files.into_iter().map(LocalStem::from).collect(), skipped)
    };
    let mut opts = template(&args, false)?.options(stems);
    opts.skipped = skipped;
    opts.resume = args.stems.is_empty();
    opts.song_name = Some(synfony::runtime::library::default_song_name(&paths));
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    // stdout gets its own thread, so a slow reader never stalls the session.
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let stdout = std::io::stdout();
        for v in rx {
            let mut out = stdout.lock();
            if writeln!(out, "{v}").and_then(|()| out.flush()).is_err() {
                return; // stdout closed: events are dropped, the peer plays on
            }
        }
    });
    let result = run_headless(
        opts,
        Box::new(move |v| {
            let _ = tx.send(v);
        }),
    );
    let _ = writer.join();
    Ok(result?)
}

/// The log filter unless `RUST_LOG` says otherwise.
const DEFAULT_LOG: &str = "warn,synfony=info";

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let listen_is_default =
        matches.value_source("listen") == Some(clap::parser::ValueSource::DefaultValue);
    // Colour only on a terminal: a log written to a file or a pipe carries no
    // escape codes. By default synfony's own INFO lines and the libraries'
    // warnings: decoders' INFO chatter stays out (RUST_LOG overrides).
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG)),
        )
        .init();
    let result = match cli.command {
        Some(Command::Render(args)) => run_render(args),
        None => {
            if let Err(e) = validate_peer(&cli.peer) {
                e.exit();
            }
            if cli.peer.headless {
                run_headless_peer(cli.peer)
            } else {
                run_window(cli.peer, listen_is_default)
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synfony: {e:#}");
            ExitCode::FAILURE
        }
    }
}
