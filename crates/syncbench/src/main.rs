//! `syncbench`: the sync bench. Runs headless synfony peers (and, for the
//! comparison, Snapcast) as real processes on loopback, through the
//! fault-injecting proxy, and measures how far apart they play.
//!
//! ```text
//! cargo run --release --bin syncbench -- all        # every scenario, then the paper
//! cargo run --release --bin syncbench -- steady     # one scenario
//! cargo run --release --bin syncbench -- smoke --out target/smoke   # CI
//! ```
//!
//! Each scenario writes `OUT/SCENARIO.json` (default `paper/results/`) and its
//! SVG plots to `FIGURES/` (default `paper/figures/`); `paper` renders
//! `paper/paper.md` from `paper/paper.src.md` and those results.

mod paper;
mod plot;
mod rig;
mod scenarios;
mod snapcast;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "syncbench",
    about = "synfony's sync bench (and Snapcast's, side by side)"
)]
struct Cli {
    /// Scenarios to run, in order (`all` runs every one, then `paper`).
    #[arg(required = true, value_enum)]
    scenarios: Vec<Scenario>,
    #[command(flatten)]
    opts: Options,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Skew between every pair of peers over a long run, 20–60 ms links.
    Steady,
    /// The same with every peer on the machine's own clock (as Snapcast's
    /// clients are), to tell clock estimation from the rest.
    SteadyTrueClocks,
    /// The same with no delay (a quiet LAN).
    SteadyLan,
    /// Snapcast through the same links and the same measurement.
    Snapcast,
    /// Snapcast with no delay.
    SnapcastLan,
    /// Skew over a Wi-Fi-like link: about 2 ms one way, heavy-tailed jitter
    /// (90 % within 3 ms, 9 % within 3–20 ms, 1 % spikes of 20–100 ms), FIFO.
    Wifi,
    /// Snapcast over the same Wi-Fi-like links.
    SnapcastWifi,
    /// Command to apply on every peer, and the spread of the apply instants
    /// (20–30 ms each way).
    Control,
    /// The same with no added delay.
    ControlLan,
    /// A late joiner, and a peer restarted after SIGKILL: time to sync.
    Join,
    /// The same with no added delay.
    JoinLan,
    /// The same over Wi-Fi-like links.
    JoinWifi,
    /// A peer dies: survivors' underruns, gaps and control stall.
    Crash,
    /// Every link cut for 10 s, then restored.
    Partition,
    /// 2 to 32 peers: CPU, bytes per round, heartbeats on time.
    Scale,
    /// A peer without the stem fetches it from two hosts: bytes, seeks into
    /// what it has not fetched, a host killed mid-fetch.
    Remote,
    /// Songs that follow each other: the next song's first frame on every
    /// peer, the gap after the song before, underruns.
    Setlist,
    /// A few seconds, 3 peers: that the bench works (CI).
    Smoke,
    /// Every scenario above but smoke, then `paper`.
    All,
    /// Render paper/paper.md from the results.
    Paper,
}

/// What every scenario may be tuned with; each has its own defaults for
/// what is left unset.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Where the results (one JSON file per scenario) go.
    #[arg(long, default_value = "paper/results")]
    pub out: PathBuf,
    /// Where the SVG plots go.
    #[arg(long, default_value = "paper/figures")]
    pub figures: PathBuf,
    /// Peers (or Snapcast clients).
    #[arg(long)]
    pub peers: Option<usize>,
    /// Length of the measured stretch, in seconds.
    #[arg(long)]
    pub secs: Option<f64>,
    /// One-way link delay: the base, in ms.
    #[arg(long)]
    pub delay_ms: Option<f64>,
    /// One-way link delay: a uniform jitter on top, in ms.
    #[arg(long)]
    pub jitter_ms: Option<f64>,
    /// Wi-Fi-like links (as `wifi`) instead of the scenario's; `--delay-ms`
    /// still sets their base.
    #[arg(long)]
    pub wifi: bool,
    /// Seeds the peers' clock errors and the links' jitter.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The synfony binary to measure (default: the one built beside this).
    #[arg(long)]
    pub peer_bin: Option<PathBuf>,
    /// Keep the scratch directory (reports, logs) and print where it is.
    #[arg(long)]
    pub keep: bool,
}

const EVERY: [Scenario; 17] = [
    Scenario::Steady,
    Scenario::SteadyTrueClocks,
    Scenario::SteadyLan,
    Scenario::Snapcast,
    Scenario::SnapcastLan,
    Scenario::Wifi,
    Scenario::SnapcastWifi,
    Scenario::Control,
    Scenario::ControlLan,
    Scenario::Join,
    Scenario::JoinLan,
    Scenario::JoinWifi,
    Scenario::Crash,
    Scenario::Partition,
    Scenario::Scale,
    Scenario::Remote,
    Scenario::Setlist,
];

impl Scenario {
    pub fn name(self) -> String {
        self.to_possible_value()
            .expect("no skipped variants")
            .get_name()
            .to_string()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("syncbench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut list = Vec::new();
    for s in cli.scenarios {
        if s == Scenario::All {
            list.extend(EVERY);
            list.push(Scenario::Paper);
        } else {
            list.push(s);
        }
    }
    let opts = cli.opts;
    let needs_peers = list.iter().any(|s| *s != Scenario::Paper);
    let bin = if needs_peers {
        peer_binary(opts.peer_bin.as_deref())?
    } else {
        PathBuf::new()
    };
    raise_open_file_limit(needs_peers);
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    std::fs::create_dir_all(&opts.figures)
        .with_context(|| format!("creating {}", opts.figures.display()))?;
    let mut failed = Vec::new();
    for s in list {
        let started = std::time::Instant::now();
        eprintln!("== {}", s.name());
        let result = match s {
            Scenario::Paper => paper::render(&opts.out, Path::new("paper"), &opts.figures),
            Scenario::Snapcast | Scenario::SnapcastLan | Scenario::SnapcastWifi => {
                snapcast::run(s, &opts)
            }
            _ => scenarios::run(s, &bin, &opts),
        };
        match result {
            Ok(()) => eprintln!(
                "== {} done in {:.0} s",
                s.name(),
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                eprintln!("== {} failed: {e:#}", s.name());
                failed.push(s.name());
            }
        }
    }
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}

/// 32 peers in a mesh behind proxies hold about 2·32² sockets in this
/// process: raise the soft limit on open files to the hard one.
fn raise_open_file_limit(needed: bool) {
    if !needed {
        return;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < 4096 {
            eprintln!(
                "syncbench: warning: only {} open files allowed; the 32-peer scale run needs about 4096",
                lim.rlim_cur
            );
        }
    }
}

/// The synfony binary: `--peer-bin`, or the one in this binary's directory —
/// built first when run through `cargo run`, so the bench never measures a
/// stale peer.
fn peer_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let me = std::env::current_exe().context("finding this executable")?;
    let dir = me.parent().context("this executable has no directory")?;
    let bin = dir.join("synfony");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut cmd = std::process::Command::new(cargo);
        // The workspace's root manifest, wherever the bench was started from.
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        cmd.args([
            "build", "--quiet", "--locked", "-p", "synfony", "--bin", "synfony",
        ]);
        cmd.arg("--manifest-path").arg(manifest);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().context("running cargo build for the peer")?;
        if !status.success() {
            bail!("cargo build --bin synfony failed ({status})");
        }
    }
    if !bin.is_file() {
        bail!(
            "no peer binary at {} (build it with `cargo build --release`, or pass --peer-bin)",
            bin.display()
        );
    }
    Ok(bin)
}

/// Both players' write size: synfony's virtual device block (its default
/// `--period-frames`) and snapclient's file player (50 ms).
pub const BLOCK_FRAMES: u64 = 2400;

/// Writes one scenario's results, pretty, and says where.
pub fn write_results(out: &Path, name: &str, v: &serde_json::Value) -> anyhow::Result<()> {
    let path = out.join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(v)? + "\n";
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("   results: {}", path.display());
    Ok(())
}

/// A scratch directory for reports and logs (kept with `--keep`).
pub fn scratch(opts: &Options, name: &str) -> anyhow::Result<Scratch> {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("syncbench-{name}-"))
        .tempdir()
        .context("creating a scratch directory")?;
    if opts.keep {
        let path = tmp.keep();
        eprintln!("   scratch: {}", path.display());
        Ok(Scratch { path, _tmp: None })
    } else {
        Ok(Scratch {
            path: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
        })
    }
}

/// With `--keep`, a capture's reads and impulses go beside the logs, for a
/// look at how its play times were reconstructed.
pub fn keep_capture(
    opts: &Options,
    dir: &Path,
    name: &str,
    cap: &synfony_testkit::impulse::Capture,
) {
    if !opts.keep {
        return;
    }
    let v = serde_json::json!({
        "reads": cap.reads.iter().map(|r| [r.mono_ns, r.start_frame as i64, r.frames as i64]).collect::<Vec<_>>(),
        "impulses": cap.impulses.iter().map(|i| (i.index, i.frame)).collect::<Vec<_>>(),
        "play_times": synfony_testkit::impulse::play_times(cap, BLOCK_FRAMES),
    });
    let _ = std::fs::write(dir.join(format!("{name}.capture.json")), v.to_string());
}

pub struct Scratch {
    pub path: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}
