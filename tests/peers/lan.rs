//! LAN discovery for real: peers in two network namespaces joined by a veth
//! pair (a two-machine network, multicast included), found by mDNS and
//! joined with `--join auto`. Needs root (`ip netns`); a test that cannot
//! make the namespaces says so on stderr (past the test harness's capture)
//! and is skipped.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use synfony_testkit::harness::PeerProcess;

use super::harness::{BIN, Peer};
use super::{SEC, args, setup};

/// Two network namespaces, `a` (10.77.0.1) and `b` (10.77.0.2), on one veth
/// link; removed (with everything in them) when dropped.
struct TwoHosts {
    a: String,
    b: String,
    /// The veth end made in the root namespace (deleted if it stayed there).
    va: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl TwoHosts {
    fn new(tag: &str) -> Result<TwoHosts, String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id());
        // Interface names are at most 15 bytes; they live in their namespace.
        let (va, vb) = (format!("va{id}"), format!("vb{id}"));
        // Made first, so what a failure leaves half-done is removed.
        let hosts = TwoHosts {
            a: format!("synf-{tag}-a-{id}"),
            b: format!("synf-{tag}-b-{id}"),
            va: va.clone(),
        };
        ip(&["netns", "add", &hosts.a])?;
        ip(&["netns", "add", &hosts.b])?;
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
        ip(&["link", "set", &va, "netns", &hosts.a])?;
        ip(&["link", "set", &vb, "netns", &hosts.b])?;
        for (ns, dev, addr) in [
            (&hosts.a, &va, "10.77.0.1/24"),
            (&hosts.b, &vb, "10.77.0.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and so the pair.
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
        let _ = ip(&["link", "del", &self.va]);
    }
}

/// The two hosts, or `None` after saying why on stderr (written to the
/// stream itself, so `cargo test` shows it for a passing test).
fn two_hosts(tag: &str) -> Option<TwoHosts> {
    match TwoHosts::new(tag) {
        Ok(h) => Some(h),
        Err(e) => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED {tag}: cannot make network namespaces ({e}); LAN discovery needs root to test"
            );
            None
        }
    }
}

fn spawn(netns: &str, name: &str, dir: &Path, extra: &[&str]) -> Peer {
    let mut a = args(extra);
    if !extra.contains(&"--listen") {
        a.extend(args(&["--listen", "0.0.0.0:7878"]));
    }
    let p = PeerProcess::spawn_in_netns(netns, Path::new(BIN), name, dir, &a)
        .unwrap_or_else(|e| panic!("{e}"));
    Peer::from(p)
}

/// Sends `discover` until the answer lists a session that `pred` accepts;
/// returns that answer's sessions.
fn discover_until(p: &mut Peer, pred: impl Fn(&[Value]) -> bool, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        p.send("discover");
        let answer = p.wait_for("sessions", |e| e["event"] == "sessions", 5 * SEC);
        let sessions = answer["sessions"].as_array().cloned().unwrap_or_default();
        // Drop what was read, so the next round waits for a new answer.
        p.seen.retain(|e| e["event"] != "sessions");
        if pred(&sessions) || Instant::now() >= deadline {
            return sessions;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A peer on one host starts a session; a peer on the other, started with
/// `--join auto`, finds it by mDNS and links, and they play together. The
/// time from start to linked is printed. `discover` lists the session once,
/// with its members; a session started with `--no-announce` is not found.
#[test]
fn a_peer_on_another_host_finds_the_session_and_joins_it() {
    let (_turn, dir, stems) = setup();
    let Some(hosts) = two_hosts("join") else {
        return;
    };
    let mut host = spawn(
        &hosts.a,
        "host",
        dir.path(),
        &["--session", "Friday jam", &stems],
    );
    let quiet = spawn(
        &hosts.a,
        "quiet",
        dir.path(),
        &[
            "--listen",
            "0.0.0.0:7879",
            "--session",
            "hidden",
            "--no-announce",
            &stems,
        ],
    );
    // A session already running (a second after an mDNS service starts,
    // its first answers can be missed: measured in NOTEBOOK).
    std::thread::sleep(3 * SEC);
    let started = Instant::now();
    let mut joiner = spawn(&hosts.b, "joiner", dir.path(), &["--join", "auto"]);
    let ready = started.elapsed();
    assert_eq!(joiner.seen[0]["joining"], true, "{:?}", joiner.seen[0]);
    let up = joiner.wait_for(
        "peer_up from the host",
        |e| e["event"] == "peer_up" && e["peer_id"] == host.peer_id.as_str(),
        20 * SEC,
    );
    let linked = started.elapsed();
    joiner.wait_linked(1, 20 * SEC);
    let synced = started.elapsed();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "lan: start to ready {:.0} ms, to linked {:.0} ms, to synced {:.0} ms (found by mDNS across a veth pair; host at {})",
        ms(ready),
        ms(linked),
        ms(synced),
        up["addr"]
    );

    // They play together: the joiner's vote is decided on the host.
    let since = host.seen.len();
    joiner.send("play");
    let joiner_id = joiner.peer_id.clone();
    host.wait_decision(since, &joiner_id, "play", 10 * SEC);

    // `discover` from the other host lists the session once, with both
    // members, and not the quiet one.
    let mut probe = spawn(
        &hosts.b,
        "probe",
        dir.path(),
        &["--listen", "0.0.0.0:7880", "--no-announce", &stems],
    );
    let found = discover_until(
        &mut probe,
        |s| {
            s.iter()
                .any(|f| f["name"] == "Friday jam" && f["peers"] == 2)
        },
        15 * SEC,
    );
    let jam: Vec<&Value> = found.iter().filter(|f| f["name"] == "Friday jam").collect();
    assert_eq!(jam.len(), 1, "{found:?}");
    assert_eq!(jam[0]["peers"], 2, "{found:?}");
    assert_eq!(jam[0]["private"], false, "{found:?}");
    let addr = jam[0]["addr"].as_str().unwrap();
    assert!(
        addr == "10.77.0.1:7878" || addr == "10.77.0.2:7878",
        "a member's address on the LAN: {found:?}"
    );
    assert!(
        !found.iter().any(|f| f["name"] == "hidden"),
        "--no-announce: {found:?}"
    );

    // Quitting says goodbye: the host's announcement goes at once.
    let _ = quiet.quit();
    let _ = host.quit();
    let found = discover_until(
        &mut probe,
        |s| {
            s.iter()
                .any(|f| f["name"] == "Friday jam" && f["peers"] == 1)
        },
        15 * SEC,
    );
    assert!(
        found
            .iter()
            .any(|f| f["name"] == "Friday jam" && f["addr"] == "10.77.0.2:7878"),
        "the session goes on through the joiner: {found:?}"
    );
    let _ = joiner.quit();
    let _ = probe.quit();
}

/// `--join auto --session NAME` waits for that session and leaves others
/// alone: another session is found first, and not joined.
#[test]
fn join_auto_with_a_name_joins_that_session_only() {
    let (_turn, dir, stems) = setup();
    let Some(hosts) = two_hosts("named") else {
        return;
    };
    let other = spawn(
        &hosts.a,
        "other",
        dir.path(),
        &["--session", "other", &stems],
    );
    let mut joiner = spawn(
        &hosts.b,
        "joiner",
        dir.path(),
        &["--join", "auto", "--session", "wanted"],
    );
    discover_until(
        &mut joiner,
        |s| s.iter().any(|f| f["name"] == "other"),
        15 * SEC,
    );
    assert!(
        !joiner.seen.iter().any(|e| e["event"] == "peer_up"),
        "joined a session it was not told to"
    );
    let wanted = spawn(
        &hosts.a,
        "wanted",
        dir.path(),
        &["--listen", "0.0.0.0:7879", "--session", "wanted", &stems],
    );
    let up = joiner.wait_for("a peer_up", |e| e["event"] == "peer_up", 20 * SEC);
    assert_eq!(up["peer_id"], wanted.peer_id.as_str(), "{up}");
    std::thread::sleep(SEC);
    assert!(
        !joiner
            .seen
            .iter()
            .any(|e| e["event"] == "peer_up" && e["peer_id"] == other.peer_id.as_str()),
        "joined the other session too"
    );
    for p in [other, wanted, joiner] {
        let _ = p.quit();
    }
}

/// `--join auto` passes over a session it cannot enter (a private one whose
/// passphrase is not ours: every dial is refused) for the next one found,
/// rather than dialling it for ever.
#[test]
fn join_auto_passes_over_a_session_it_cannot_enter() {
    let (_turn, dir, stems) = setup();
    let Some(hosts) = two_hosts("pass") else {
        return;
    };
    let theirs = [
        "--session",
        "theirs",
        "--passphrase",
        "not ours",
        stems.as_str(),
    ];
    let decoy = spawn(&hosts.a, "decoy", dir.path(), &theirs);
    let started = Instant::now();
    let mut joiner = spawn(
        &hosts.b,
        "joiner",
        dir.path(),
        &["--join", "auto", "--passphrase", "ours"],
    );
    discover_until(
        &mut joiner,
        |s| s.iter().any(|f| f["name"] == "theirs"),
        15 * SEC,
    );
    let ours = [
        "--listen",
        "0.0.0.0:7879",
        "--session",
        "ours",
        "--passphrase",
        "ours",
        stems.as_str(),
    ];
    let host = spawn(&hosts.a, "host", dir.path(), &ours);
    let up = joiner.wait_for("a peer_up", |e| e["event"] == "peer_up", 30 * SEC);
    assert_eq!(up["peer_id"], host.peer_id.as_str(), "{up}");
    println!(
        "lan: passed over a session it could not enter, linked {:.1} s after start",
        started.elapsed().as_secs_f64()
    );
    for p in [decoy, host, joiner] {
        let _ = p.quit();
    }
}
