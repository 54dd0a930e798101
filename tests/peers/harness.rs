//! Headless peers as real processes: spawn, drive through stdin, read their
//! JSON events and `--report` files.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use synfony::report::Report;

pub const BIN: &str = env!("CARGO_BIN_EXE_synfony");

/// The stems every test peer plays (two short, synthesised tracks).
pub fn stems() -> PathBuf {
    synfony::assets::click_dir()
}

/// A free loopback port (bound, then released for the peer to take).
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub struct Peer {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<Value>,
    /// Every event seen so far, in order.
    pub seen: Vec<Value>,
    pub report: PathBuf,
    pub peer_id: String,
    pub listen: SocketAddr,
    /// `CLOCK_MONOTONIC` at spawn, to cut reports and time joins.
    pub started_mono_ns: i64,
}

impl Peer {
    /// Starts `synfony --headless` with `args` and a report in `dir`, and
    /// waits for its `ready` event.
    pub fn spawn(name: &str, dir: &Path, args: &[String]) -> Peer {
        let report = dir.join(format!("{name}.jsonl"));
        let started_mono_ns = synfony::host_clock::monotonic_ns();
        let mut child = Command::new(BIN)
            .arg("--headless")
            .arg("--name")
            .arg(name)
            .arg("--report")
            .arg(&report)
            .args(args)
            .env("RUST_LOG", "synfony=debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join(format!("{name}.log"))).unwrap(),
            ))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout is not JSON lines: {line:?}: {e}"));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut p = Peer {
            name: name.to_string(),
            child,
            stdin,
            events,
            seen: Vec::new(),
            report,
            peer_id: String::new(),
            listen: "0.0.0.0:0".parse().unwrap(),
            started_mono_ns,
        };
        let ready = p.wait_for("ready", |e| e["event"] == "ready", Duration::from_secs(20));
        p.peer_id = ready["peer_id"].as_str().unwrap().to_string();
        p.listen = ready["listen"].as_str().unwrap().parse().unwrap();
        p
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for an event matching `pred` (seen earlier or arriving), and
    /// returns it; panics naming `what` after `timeout`.
    pub fn wait_for(
        &mut self,
        what: &str,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return e.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) => {
                    self.seen.push(e.clone());
                    if pred(&e) {
                        return e;
                    }
                }
                Err(_) => panic!(
                    "{}: no {what} within {timeout:?}; events: {:#?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// Takes every event that has arrived, without waiting.
    pub fn poll(&mut self) {
        while let Ok(e) = self.events.try_recv() {
            self.seen.push(e);
        }
    }

    /// Sends `status` and returns the answer.
    pub fn status(&mut self) -> Value {
        let before = self.seen.len();
        self.send("status");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.poll();
            if let Some(s) = self.seen[before..].iter().find(|e| e["event"] == "status") {
                return s.clone();
            }
            assert!(Instant::now() < deadline, "{}: no status", self.name);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until this peer has `n` peers linked and session time.
    pub fn wait_linked(&mut self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status();
            if s["peers"].as_u64() == Some(n as u64) && s["synced"] == true {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: not linked to {n} peers within {timeout:?}: {s}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn read_report(&self) -> Report {
        Report::read(&self.report).unwrap_or_default()
    }

    /// SIGKILL: no goodbye, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `quit` (stdin stays open, as at a terminal), then the exit status.
    pub fn quit(mut self) -> std::process::ExitStatus {
        self.send("quit");
        self.wait_exit(Duration::from_secs(10))
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: still running after {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM (stdin stays open).
    pub fn terminate(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Events named `name` seen by a peer.
pub fn events_named<'a>(p: &'a Peer, name: &'a str) -> impl Iterator<Item = &'a Value> {
    p.seen.iter().filter(move |e| e["event"] == name)
}
