//! The `--report` writer thread.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::{OutputError, ReportLine, Worker};

/// The `--report` writer: appends the lines the player queues (INTERFACE.md
/// says append), flushing every 20 ms. A write error is reported once and
/// ends the writer; the music plays on.
pub(super) fn spawn_report_writer(
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
