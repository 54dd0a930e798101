//! The `synfony` binary: argument parsing and error reporting at the edge
//! (`anyhow` lives only here). `synfony render` mixes offline; the peer runtime
//! (mesh, window, headless control) is issue 5 and not built yet.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use synfony::audio::render::{RenderSpec, StemRef, load_stems, render, write_wav};

#[derive(Parser, Debug)]
#[command(
    name = "synfony",
    version,
    about = "Peer-to-peer multi-stem jam sessions"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Stems for the peer (audio files or folders).
    stems: Vec<PathBuf>,
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
    let stems = load_stems(&args.stems, args.rate)?;
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Render(args)) => run_render(args),
        None => Err(anyhow::anyhow!(
            "the peer runtime is not built yet (issue 5); `synfony render` mixes stems offline"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synfony: {e:#}");
            ExitCode::FAILURE
        }
    }
}
