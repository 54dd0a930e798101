//! Snapcast through the same links and the same measurement: one snapserver
//! playing the impulse train from a raw file, N snapclients each behind its
//! own delaying proxy, writing their paced output to stdout, which the bench
//! reads and stamps exactly as it reads synfony's raw FIFOs.

use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use anyhow::{Context, bail};
use serde_json::json;
use synfony::host_clock::monotonic_ns;
use synfony_testkit::harness::free_port;
use synfony_testkit::impulse::{Capture, capture, write_raw};
use synfony_testkit::proxy::{Delay, Proxy};

use crate::plot::{Plot, Series, draw, quantiles, thin};
use crate::rig::summary_json;
use crate::scenarios::{WARMUP_SECS, delay_json, delay_of, impulse_skews};
use crate::{Options, Scenario, scratch, write_results};

const INSTALL: &str = "apt-get install snapserver snapclient";

/// Kills the child on drop (a failed run leaves no server behind).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn version(program: &str) -> String {
    Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default()
}

pub fn run(s: Scenario, opts: &Options) -> anyhow::Result<()> {
    let name = s.name();
    if !installed("snapserver") || !installed("snapclient") {
        let why = format!("Snapcast is not installed (`{INSTALL}` on Debian)");
        eprintln!("   skipped: {why}; synfony's own scenarios do not need it");
        // A results file that says so, so the paper shows "n/a" rather than
        // an older run's figures.
        return write_results(&opts.out, &name, &json!({"scenario": name, "skipped": why}));
    }
    let (default_delay, default_secs) = match s {
        Scenario::SnapcastLan => (Delay::new(0.0, 0.0), 60.0),
        Scenario::SnapcastWifi => (Delay::wifi(), 60.0),
        _ => (Delay::new(20.0, 40.0), 120.0),
    };
    let n = opts.peers.unwrap_or(3).max(2);
    let secs = opts.secs.unwrap_or(default_secs);
    let delay = delay_of(opts, default_delay);
    let dir = scratch(opts, &name)?;
    let d = &dir.path;

    // The server plays the train from the start once, in real time.
    let signal = d.join("impulses.raw");
    write_raw(&signal, ((WARMUP_SECS + secs + 40.0) * 48_000.0) as usize)?;
    let stream_addr = free_port()?;
    let server = Command::new("snapserver")
        .args(["-c", "/dev/null"])
        .arg(format!("--server.datadir={}", d.display()))
        .args(["--http.enabled=0", "--tcp.enabled=0"])
        .arg("--stream.bind_to_address=127.0.0.1")
        .arg(format!("--stream.port={}", stream_addr.port()))
        .arg(format!(
            "--stream.source=file://{}?name=bench&sampleformat=48000:16:2",
            signal.display()
        ))
        .arg(format!(
            "--logging.sink=file:{}",
            d.join("snapserver.log").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting snapserver")?;
    let mut server = Killed(server);
    wait_listening(stream_addr, &mut server.0)?;

    let mut proxies = Vec::new();
    let mut clients = Vec::new();
    let mut captures: Vec<JoinHandle<std::io::Result<Capture>>> = Vec::new();
    for i in 0..n {
        let proxy = Proxy::start(
            stream_addr,
            opts.seed.wrapping_mul(7919).wrapping_add(i as u64),
        )?;
        proxy.set_delay(delay, delay);
        let mut child = Command::new("snapclient")
            .args(["-h", "127.0.0.1", "-p"])
            .arg(proxy.addr().port().to_string())
            .arg(format!("--hostID=syncbench-{i}"))
            .args(["--player", "file:filename=stdout", "--mixer", "none"])
            .arg(format!(
                "--logsink=file:{}",
                d.join(format!("snapclient-{i}.log")).display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting snapclient")?;
        let out = child.stdout.take().context("snapclient's stdout")?;
        captures.push(std::thread::spawn(move || capture(out)));
        clients.push(Killed(child));
        proxies.push(proxy);
    }
    let t_measure = monotonic_ns() + (WARMUP_SECS * 1e9) as i64;
    eprintln!("   {n} snapclients playing; measuring {secs} s after {WARMUP_SECS} s of warm-up");
    std::thread::sleep(std::time::Duration::from_secs_f64(WARMUP_SECS + secs));
    let t_end = monotonic_ns();
    drop(clients); // their stdout closes: the captures end
    let mut caps: Vec<Capture> = Vec::new();
    for h in captures {
        let cap = h
            .join()
            .map_err(|_| anyhow::anyhow!("a capture thread panicked"))?
            .context("reading a snapclient's output")?;
        caps.push(cap);
    }
    drop(server);
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    for (name, cap) in names.iter().zip(&caps) {
        crate::keep_capture(opts, d, name, cap);
    }
    let (all, pairs, samples) = impulse_skews(&names, &caps, t_measure, t_end);
    eprintln!("   skew (impulses): {all}");
    if all.n == 0 {
        bail!("no impulse was heard by two clients (see the logs with --keep)");
    }
    let results = json!({
        "scenario": name,
        "system": "snapcast",
        "version": version("snapclient"),
        "clients": n,
        "secs": secs,
        "warmup_secs": WARMUP_SECS,
        "delay": delay_json(delay),
        "clocks": "the machine's own (snapclient cannot be given clock errors)",
        "impulse_skew_ms": { "all": summary_json(&all), "pairs": pairs },
        "impulse_cdf_ms": quantiles(samples.iter().map(|x| x.1), 101),
        "frames_read": caps.iter().map(|c| c.frames).collect::<Vec<_>>(),
    });
    write_results(&opts.out, &name, &results)?;
    let series = vec![Series::new(
        "all client pairs",
        thin(&samples, t_measure, 0.5),
    )];
    let title = format!("Snapcast, {n} clients, {}: skew", delay.describe());
    draw(
        &opts.figures.join(format!("{name}-skew.svg")),
        &Plot::lines(&title, "time (s)", "skew (ms)"),
        &series,
    )
}

/// Waits until the server accepts connections (or has died).
fn wait_listening(addr: std::net::SocketAddr, server: &mut Child) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if let Some(status) = server.try_wait()? {
            bail!("snapserver exited ({status})");
        }
        if std::time::Instant::now() > deadline {
            bail!("snapserver does not listen on {addr}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
