//! The `synfony` binary. The peer runtime (mesh, audio, window, headless control)
//! is not built yet; until it is, the binary says so instead of pretending.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("synfony {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "synfony {}: the peer runtime is not built yet; this build holds the wire format, \
         the session state and the choice function (run `cargo test`)",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::FAILURE
}
