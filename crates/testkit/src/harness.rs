//! Headless peers as real processes, for the integration tests and the sync
//! bench: spawn `synfony --headless`, drive it through stdin, read its JSON
//! events and its `--report` file, kill it or ask it to quit.
//!
//! Everything that can wait has a timeout and returns a [`HarnessError`]
//! naming the peer and what it waited for; the tests unwrap, the bench reports.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::report::Report;

/// What went wrong while driving a peer process.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{peer}: cannot start {program}: {cause}")]
    Spawn {
        peer: String,
        program: PathBuf,
        cause: std::io::Error,
    },
    #[error("{peer}: no {what} within {timeout:?} (last events: {last})")]
    Timeout {
        peer: String,
        what: String,
        timeout: Duration,
        last: String,
    },
    #[error("{peer}: exited while waiting for {what} (last events: {last})")]
    Exited {
        peer: String,
        what: String,
        last: String,
    },
    #[error("{peer}: {what}")]
    Io { peer: String, what: String },
    #[error("{peer}: stdout is not JSON lines: {line:?}")]
    NotJson { peer: String, line: String },
}

/// A free loopback port (bound, then released for a peer to take).
pub fn free_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// A test peer's `RUST_LOG`: the caller's, else `synfony=debug`.
fn default_log() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "synfony=debug".into())
}

/// One `synfony --headless` process.
pub struct PeerProcess {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<Result<Value, String>>,
    /// Every event seen so far, in order.
    pub seen: Vec<Value>,
    pub report: PathBuf,
    pub peer_id: String,
    pub listen: SocketAddr,
    /// `CLOCK_MONOTONIC` at spawn, to cut reports and time joins.
    pub started_mono_ns: i64,
}

impl PeerProcess {
    /// Starts `program --headless --name NAME --report DIR/NAME.jsonl ARGS`
    /// (stderr to `DIR/NAME.log`, `RUST_LOG=synfony=debug` unless set), and
    /// waits for its `ready` event. Unless `ARGS` say otherwise, fetched
    /// stems are cached in `DIR/NAME.cache` and the library kept in
    /// `DIR/NAME.data`, never in the user's directories; the output is the
    /// null device and the session is not announced on the network.
    pub fn spawn(
        program: &Path,
        name: &str,
        dir: &Path,
        args: &[String],
    ) -> Result<PeerProcess, HarnessError> {
        PeerProcess::spawn_logging(program, name, dir, args, &default_log())
    }

    /// [`PeerProcess::spawn`] with the peer's `RUST_LOG` filter given (a
    /// measurement keeps the peers' logging out of their CPU time).
    pub fn spawn_logging(
        program: &Path,
        name: &str,
        dir: &Path,
        args: &[String],
        log_filter: &str,
    ) -> Result<PeerProcess, HarnessError> {
        let mut args = args.to_vec();
        if !args.iter().any(|a| a == "--no-announce") {
            args.push("--no-announce".into());
        }
        PeerProcess::spawn_in(None, program, name, dir, &args, log_filter)
    }

    /// A peer on the local network of network namespace `netns` (run
    /// through `ip netns exec`, as root), announcing its session unless
    /// `ARGS` say `--no-announce`: for the LAN discovery tests.
    pub fn spawn_in_netns(
        netns: &str,
        program: &Path,
        name: &str,
        dir: &Path,
        args: &[String],
    ) -> Result<PeerProcess, HarnessError> {
        PeerProcess::spawn_in(Some(netns), program, name, dir, args, &default_log())
    }

    fn spawn_in(
        netns: Option<&str>,
        program: &Path,
        name: &str,
        dir: &Path,
        args: &[String],
        log_filter: &str,
    ) -> Result<PeerProcess, HarnessError> {
        let report = dir.join(format!("{name}.jsonl"));
        let io = |what: String| HarnessError::Io {
            peer: name.to_string(),
            what,
        };
        let log = std::fs::File::create(dir.join(format!("{name}.log")))
            .map_err(|e| io(format!("log file in {}: {e}", dir.display())))?;
        let started_mono_ns = synfony::host_clock::monotonic_ns();
        let mut args = args.to_vec();
        if !args.iter().any(|a| a == "--cache-dir" || a == "--no-cache") {
            args.push("--cache-dir".into());
            args.push(dir.join(format!("{name}.cache")).display().to_string());
        }
        if !args.iter().any(|a| a == "--data-dir") {
            args.push("--data-dir".into());
            args.push(dir.join(format!("{name}.data")).display().to_string());
        }
        if !args.iter().any(|a| a == "--output") {
            args.extend(["--output".into(), "null".into()]);
        }
        let mut command = match netns {
            None => Command::new(program),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
        };
        let mut child = command
            .arg("--headless")
            .arg("--name")
            .arg(name)
            .arg("--report")
            .arg(&report)
            .args(&args)
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|cause| HarnessError::Spawn {
                peer: name.to_string(),
                program: program.to_path_buf(),
                cause,
            })?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let v = serde_json::from_str::<Value>(&line).map_err(|_| line);
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut p = PeerProcess {
            name: name.to_string(),
            child,
            stdin,
            events,
            seen: Vec::new(),
            report,
            peer_id: String::new(),
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            started_mono_ns,
        };
        let ready = p.wait_for("ready", |e| e["event"] == "ready", Duration::from_secs(20))?;
        p.peer_id = ready["peer_id"].as_str().unwrap_or_default().to_string();
        p.listen = ready["listen"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| io(format!("ready without a listen address: {ready}")))?;
        Ok(p)
    }

    /// Writes one command line to the peer's stdin.
    pub fn send(&mut self, line: &str) -> Result<(), HarnessError> {
        let peer = self.name.clone();
        let stdin = self.stdin.as_mut().ok_or_else(|| HarnessError::Io {
            peer: peer.clone(),
            what: "stdin closed".into(),
        })?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| HarnessError::Io {
                peer,
                what: format!("sending {line:?}: {e}"),
            })
    }

    /// Waits for an event matching `pred` (seen earlier or arriving), and
    /// returns it.
    pub fn wait_for(
        &mut self,
        what: &str,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, HarnessError> {
        self.wait_for_since(0, what, pred, timeout)
    }

    /// Every event so far taken in: the mark to wait for newer events from
    /// (see [`PeerProcess::wait_for_since`]).
    pub fn mark(&mut self) -> usize {
        self.poll();
        self.seen.len()
    }

    /// Waits for an event matching `pred` among those from `seen[since]` on
    /// (an earlier, equal event does not count: a repeated command waits for
    /// its own answer).
    pub fn wait_for_since(
        &mut self,
        since: usize,
        what: &str,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, HarnessError> {
        if let Some(e) = self.seen.iter().skip(since).find(|e| pred(e)) {
            return Ok(e.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Ok(e)) => {
                    self.seen.push(e.clone());
                    if pred(&e) {
                        return Ok(e);
                    }
                }
                Ok(Err(line)) => {
                    return Err(HarnessError::NotJson {
                        peer: self.name.clone(),
                        line,
                    });
                }
                Err(e) => {
                    let tail = self.seen.len().saturating_sub(5);
                    let last = Value::from(self.seen[tail..].to_vec()).to_string();
                    let (peer, what) = (self.name.clone(), what.to_string());
                    return Err(match e {
                        mpsc::RecvTimeoutError::Timeout => HarnessError::Timeout {
                            peer,
                            what,
                            timeout,
                            last,
                        },
                        mpsc::RecvTimeoutError::Disconnected => {
                            HarnessError::Exited { peer, what, last }
                        }
                    });
                }
            }
        }
    }

    /// Waits for a decision, among the events from `seen[since]` on, that
    /// carries `voter`'s vote `action` (a vote's `action` field: play, pause,
    /// seek, volume…).
    pub fn wait_decision(
        &mut self,
        since: usize,
        voter: &str,
        action: &str,
        timeout: Duration,
    ) -> Result<Value, HarnessError> {
        self.wait_for_since(
            since,
            &format!("a decision with {voter}'s {action}"),
            |e| {
                e["event"] == "decision"
                    && e["votes"].as_array().is_some_and(|vs| {
                        vs.iter()
                            .any(|v| v["peer_id"] == voter && v["action"] == action)
                    })
            },
            timeout,
        )
    }

    /// Takes every event that has arrived, without waiting. A line that is
    /// not JSON is kept as `{"event":"not_json","line":…}`.
    pub fn poll(&mut self) {
        while let Ok(e) = self.events.try_recv() {
            self.seen.push(
                e.unwrap_or_else(|line| serde_json::json!({"event": "not_json", "line": line})),
            );
        }
    }

    /// Sends `status` and returns the answer.
    pub fn status(&mut self) -> Result<Value, HarnessError> {
        let before = self.seen.len();
        self.send("status")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.poll();
            if let Some(s) = self.seen[before..].iter().find(|e| e["event"] == "status") {
                return Ok(s.clone());
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    peer: self.name.clone(),
                    what: "status".into(),
                    timeout: Duration::from_secs(5),
                    last: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until this peer has `n` peers linked and session time.
    pub fn wait_linked(&mut self, n: usize, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status()?;
            if s["peers"].as_u64() == Some(n as u64) && s["synced"] == true {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    peer: self.name.clone(),
                    what: format!("links to {n} peers"),
                    timeout,
                    last: s.to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The peer's `--report` so far (empty if it wrote none yet).
    pub fn read_report(&self) -> Report {
        Report::read(&self.report).unwrap_or_default()
    }

    /// SIGKILL: no goodbye, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `quit` (stdin stays open, as at a terminal), then the exit status.
    pub fn quit(mut self) -> Result<ExitStatus, HarnessError> {
        self.send("quit")?;
        self.wait_exit(Duration::from_secs(10))
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    return Err(HarnessError::Timeout {
                        peer: self.name.clone(),
                        what: "exit".into(),
                        timeout,
                        last: String::new(),
                    });
                }
                Err(e) => {
                    return Err(HarnessError::Io {
                        peer: self.name.clone(),
                        what: format!("waiting for exit: {e}"),
                    });
                }
            }
        }
    }

    /// Sends SIGTERM (stdin stays open).
    pub fn terminate(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id (for `/proc/PID/stat`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Events named `name` seen so far.
    pub fn events_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Value> {
        self.seen.iter().filter(move |e| e["event"] == name)
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a named FIFO at `path`.
pub fn mkfifo(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a valid NUL-terminated path and a mode.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Lets go of a reader blocked opening the FIFO at `path` whose writer never
/// came (opening a write end and closing it gives the reader an EOF); a no-op
/// when nobody waits.
pub fn release_fifo(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
}

/// CPU time (user + system) a process has used so far, in seconds, from
/// `/proc/PID/stat` (`None` if it is gone).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its ')' are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf with a valid name has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_of_this_process_is_read() {
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let secs = super::cpu_secs(std::process::id()).expect("own /proc stat");
        assert!(secs > 0.0 && x > 0, "{secs}");
        assert!(super::cpu_secs(u32::MAX).is_none());
    }
}
