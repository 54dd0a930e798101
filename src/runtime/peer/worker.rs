//! The core's blocking worker: one thread that runs slow jobs (hashing this
//! peer's files, reading and writing the cache and the library file, adding
//! files to the library, reading served chunks) in
//! the order they were given, each result sent back to the core as an
//! [`Input`]. The core never waits for it, and no lock is held while a job
//! runs, so a 500 MB file being hashed never delays a heartbeat.
//!
//! One thread, not a pool: jobs finish in order (a stem's hash is known
//! before the cache is asked about the song; a chunk read before another is
//! answered first), and a flood of chunk requests costs one thread.

use std::sync::mpsc as std_mpsc;

use tokio::sync::mpsc;
use tracing::warn;

use super::core::Input;

type Job = Box<dyn FnOnce() -> Input + Send>;

pub(super) struct Worker {
    jobs: std_mpsc::Sender<Job>,
}

impl Worker {
    /// Starts the thread; it ends when the `Worker` is dropped (after the
    /// job under way: a quitting peer does not wait for it).
    pub fn start(inputs: mpsc::Sender<Input>) -> std::io::Result<Worker> {
        let (jobs, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("synfony-io".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    // Waits while the core's queue is full; the core gone,
                    // results have nowhere to go.
                    if inputs.blocking_send(job()).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Worker { jobs })
    }

    /// Runs `job` after the jobs given before; its result comes back as an
    /// input.
    pub fn run(&self, job: impl FnOnce() -> Input + Send + 'static) {
        if self.jobs.send(Box::new(job)).is_err() {
            warn!("the I/O worker has stopped: a job was dropped");
        }
    }
}
