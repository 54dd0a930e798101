//! synfony's scenarios: each starts a [`Rig`], drives it, measures, and
//! writes its results file and plots.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use synfony::host_clock::monotonic_ns;
use synfony::protocol::ROUND_NS;
use synfony_testkit::impulse::{Capture, play_times, skew_by_index};
use synfony_testkit::proxy::Delay;
use synfony_testkit::report::{Summary, clock_skew_ms, settled_at, skew_ms};

use crate::plot::{Plot, Series, draw, quantiles, thin};
use crate::rig::{
    Control, PERIOD_NS, Rig, SEC, counter_delta, counters_between, pair_skews, pairwise,
    summary_json, summary_of,
};
use crate::{Options, Scenario, Scratch, scratch, write_results};

/// Seconds of play before a steady measurement starts (joins, the first
/// clock estimates), the same for synfony and Snapcast.
pub const WARMUP_SECS: f64 = 10.0;
/// Skew under which a peer counts as in sync (the bound).
const IN_SYNC_MS: f64 = 1.0;
/// A looser bound, above the steady skew at 20–60 ms jitter (whose max is
/// about 1 ms), so that a join's convergence is told from that noise.
const NEAR_SYNC_MS: f64 = 2.0;

pub fn run(s: Scenario, bin: &Path, opts: &Options) -> anyhow::Result<()> {
    match s {
        Scenario::Steady => steady(s, bin, opts, Delay::new(20.0, 40.0), 120.0, true),
        Scenario::SteadyTrueClocks => steady(s, bin, opts, Delay::new(20.0, 40.0), 120.0, false),
        Scenario::SteadyLan => steady(s, bin, opts, Delay::new(0.0, 0.0), 60.0, true),
        Scenario::Wifi => steady(s, bin, opts, Delay::wifi(), 60.0, true),
        Scenario::Smoke => smoke(bin, opts),
        Scenario::Control => control(s, bin, opts, Delay::new(20.0, 10.0)),
        Scenario::ControlLan => control(s, bin, opts, Delay::new(0.0, 0.0)),
        Scenario::Join => join(s, bin, opts, Delay::new(20.0, 40.0)),
        Scenario::JoinLan => join(s, bin, opts, Delay::new(0.0, 0.0)),
        Scenario::JoinWifi => join(s, bin, opts, Delay::wifi()),
        Scenario::Crash => crash(bin, opts),
        Scenario::Partition => partition(bin, opts),
        Scenario::Scale => scale(bin, opts),
        Scenario::Remote => remote(bin, opts),
        Scenario::Setlist => setlist(bin, opts),
        other => bail!("{} is not a synfony scenario", other.name()),
    }
}

/// The links' delay: the options', else the scenario's.
pub fn delay_of(opts: &Options, default: Delay) -> Delay {
    let default = if opts.wifi { Delay::wifi() } else { default };
    Delay {
        base_ms: opts.delay_ms.unwrap_or(default.base_ms),
        jitter_ms: opts.jitter_ms.unwrap_or(default.jitter_ms),
        // A jitter given on the command line replaces the heavy tail.
        heavy_tail: default.heavy_tail && opts.jitter_ms.is_none(),
    }
}

pub fn delay_json(d: Delay) -> Value {
    json!({ "base_ms": d.base_ms, "jitter_ms": d.jitter_ms, "heavy_tail": d.heavy_tail, "each_way": true })
}

/// The impulse-train stem, long enough for `secs` of play from the start.
fn impulse_stem(dir: &Path, secs: f64) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join("impulses.wav");
    let frames = ((secs + 30.0) * 48_000.0) as usize;
    synfony_testkit::impulse::write_wav(&path, frames).context("writing the impulse stem")?;
    Ok(path)
}

/// How a scenario's session starts.
struct Setup<'a> {
    name: &'a str,
    peers: usize,
    delay: Delay,
    /// Seconds of impulse stem to play from the start.
    stem_secs: f64,
    /// Read every peer's raw output (for the impulse measure).
    raw: bool,
    clock_errors: bool,
    /// The virtual device's block, if not its default.
    period_frames: Option<usize>,
}

impl<'a> Setup<'a> {
    /// Peers with drawn clock errors, measured by their reports only.
    fn new(name: &'a str, peers: usize, delay: Delay, stem_secs: f64) -> Setup<'a> {
        Setup {
            name,
            peers,
            delay,
            stem_secs,
            raw: false,
            clock_errors: true,
            period_frames: None,
        }
    }
}

/// A scratch directory, an impulse stem, `peers` peers in a full mesh, and
/// `play` decided on all of them.
fn playing(
    bin: &Path,
    opts: &Options,
    setup: Setup<'_>,
) -> anyhow::Result<(Scratch, Rig, Control)> {
    let dir = scratch(opts, setup.name)?;
    let stem = impulse_stem(&dir.path, setup.stem_secs)?;
    let mut rig = Rig::new(bin, &dir.path, setup.delay, &stem, opts.seed);
    rig.clock_errors = setup.clock_errors;
    rig.period_frames = setup.period_frames;
    rig.start(setup.peers, setup.raw)?;
    rig.wait_mesh(30 * SEC)?;
    let play = rig.vote(0, "play", "play")?;
    Ok((dir, rig, play))
}

fn names(rig: &Rig) -> Vec<String> {
    rig.nodes.iter().map(|n| n.peer.name.clone()).collect()
}

/// Impulse-measured skew between every pair of captures, for impulses played
/// in `[since_mono_ns, until_mono_ns)`.
pub fn impulse_skews(
    names: &[String],
    caps: &[Capture],
    since_mono_ns: i64,
    until_mono_ns: i64,
) -> (Summary, Vec<Value>, Vec<(i64, f64)>) {
    let window = since_mono_ns as f64..until_mono_ns as f64;
    let times: Vec<Vec<(u32, f64)>> = caps
        .iter()
        .map(|c| {
            play_times(c, crate::BLOCK_FRAMES)
                .into_iter()
                .filter(|(_, t)| window.contains(t))
                .collect()
        })
        .collect();
    pairwise(names, &times, |a, b| skew_by_index(a, b))
}

fn sleep_secs(s: f64) {
    std::thread::sleep(Duration::from_secs_f64(s.max(0.0)));
}

/// Skew between every pair over a long run, by both methods.
fn steady(
    s: Scenario,
    bin: &Path,
    opts: &Options,
    default_delay: Delay,
    default_secs: f64,
    clock_errors: bool,
) -> anyhow::Result<()> {
    let name = s.name();
    let n = opts.peers.unwrap_or(3).max(2);
    let secs = opts.secs.unwrap_or(default_secs);
    let delay = delay_of(opts, default_delay);
    let setup = Setup {
        raw: true,
        clock_errors,
        ..Setup::new(&name, n, delay, WARMUP_SECS + secs)
    };
    let (dir, mut rig, _) = playing(bin, opts, setup)?;
    eprintln!("   {n} peers playing; measuring {secs} s after {WARMUP_SECS} s of warm-up");
    sleep_secs(WARMUP_SECS);
    let t_measure = monotonic_ns();
    let before = rig.statuses()?;
    sleep_secs(secs);
    let after = rig.statuses()?;
    let t_end = monotonic_ns();
    let reports: Vec<_> = rig
        .reports(t_measure)
        .into_iter()
        .map(|r| r.until(t_end))
        .collect();
    let names = names(&rig);
    let clocks: Vec<Value> = rig.nodes.iter().map(|n| n.clocks.json()).collect();
    let gaps: usize = reports.iter().map(|r| r.gaps(PERIOD_NS)).sum();
    let caps: Vec<Capture> = rig.stop()?.into_iter().flatten().collect();
    for (name, cap) in names.iter().zip(&caps) {
        crate::keep_capture(opts, &dir.path, name, cap);
    }
    let (report_all, report_pairs, report_samples) = pair_skews(&names, &reports);
    let (imp_all, imp_pairs, imp_samples) = impulse_skews(&names, &caps, t_measure, t_end);
    let (clock_all, clock_pairs, _) = pairwise(&names, &reports, clock_skew_ms);
    eprintln!("   skew (reports):  {report_all}");
    eprintln!("   skew (impulses): {imp_all}");
    eprintln!("   of which clocks: {clock_all}");
    let results = json!({
        "scenario": name,
        "system": "synfony",
        "peers": n,
        "secs": secs,
        "warmup_secs": WARMUP_SECS,
        "delay": delay_json(delay),
        "clock_errors": clock_errors,
        "clocks": clocks,
        "report_skew_ms": { "all": summary_json(&report_all), "pairs": report_pairs },
        "impulse_skew_ms": { "all": summary_json(&imp_all), "pairs": imp_pairs },
        "clock_skew_ms": { "all": summary_json(&clock_all), "pairs": clock_pairs },
        "impulse_cdf_ms": quantiles(imp_samples.iter().map(|x| x.1), 101),
        "report_cdf_ms": quantiles(report_samples.iter().map(|x| x.1), 101),
        "gaps": gaps,
        "counters": counters_between(&before, &after),
    });
    write_results(&opts.out, &name, &results)?;
    // Skew of every peer against the first, over time.
    let series: Vec<Series> = (1..reports.len())
        .map(|j| {
            let s = skew_ms(&reports[0], &reports[j]);
            Series::new(
                format!("{} − {}", names[j], names[0]),
                thin(&s, t_measure, 0.5),
            )
        })
        .collect();
    let title = format!(
        "synfony, {n} peers, {}{}: skew against {}",
        delay.describe(),
        if clock_errors { "" } else { ", true clocks" },
        names[0]
    );
    draw(
        &opts.figures.join(format!("{name}-skew.svg")),
        &Plot::lines(&title, "time (s)", "skew (ms)"),
        &series,
    )
}

/// A few seconds, 3 peers, one vote: that every part of the bench works.
fn smoke(bin: &Path, opts: &Options) -> anyhow::Result<()> {
    let n = opts.peers.unwrap_or(3).max(2);
    let delay = delay_of(opts, Delay::new(20.0, 10.0));
    let secs = opts.secs.unwrap_or(4.0);
    let setup = Setup {
        raw: true,
        ..Setup::new("smoke", n, delay, secs + 5.0)
    };
    let (_dir, mut rig, play) = playing(bin, opts, setup)?;
    let before = rig.statuses()?;
    let t0 = monotonic_ns() + 1_000_000_000;
    sleep_secs(secs / 2.0);
    let volume = rig.vote(n - 1, "volume 0 -1", "volume")?;
    sleep_secs(secs / 2.0);
    let after = rig.statuses()?;
    let t_end = monotonic_ns();
    let reports = rig.reports(t0);
    let names = names(&rig);
    let caps: Vec<Capture> = rig.stop()?.into_iter().flatten().collect();
    let (report_all, _, samples) = pair_skews(&names, &reports);
    let (imp_all, _, _) = impulse_skews(&names, &caps, t0, t_end);
    eprintln!("   skew (reports):  {report_all}");
    eprintln!("   skew (impulses): {imp_all}");
    let results = json!({
        "scenario": "smoke",
        "peers": n,
        "report_skew_ms": summary_json(&report_all),
        "impulse_skew_ms": summary_json(&imp_all),
        "control_ms": [play.latency_ms, volume.latency_ms],
        "counters": counters_between(&before, &after),
    });
    write_results(&opts.out, "smoke", &results)?;
    let series = vec![Series::new(
        "all pairs",
        thin(&samples, t0, 0.25).into_iter().collect(),
    )];
    draw(
        &opts.figures.join("smoke-skew.svg"),
        &Plot::lines("smoke: skew, all pairs", "time (s)", "skew (ms)"),
        &series,
    )?;
    // Correctness bounds far from the figures: the bench measured something,
    // and what it measured is sync.
    if report_all.n < 10 || imp_all.n < 5 {
        bail!("too few samples: reports {report_all}, impulses {imp_all}");
    }
    if report_all.max > 5.0 || imp_all.max > 5.0 {
        bail!("peers out of sync: reports {report_all}, impulses {imp_all}");
    }
    if !(0.0..2000.0).contains(&play.latency_ms) || !(0.0..2000.0).contains(&volume.latency_ms) {
        bail!("implausible control latencies: {play:?}, {volume:?}");
    }
    Ok(())
}

/// Command to apply on every peer, at ~50 ms RTT.
/// Peers' virtual devices in the control scenarios render 10 ms blocks, as a
/// sound card's period is (the null device's default, 50 ms, is a long
/// buffer, and the lead must cover how far ahead a peer renders).
const CONTROL_PERIOD_FRAMES: usize = 480;

fn control(s: Scenario, bin: &Path, opts: &Options, default_delay: Delay) -> anyhow::Result<()> {
    let name = s.name();
    let n = opts.peers.unwrap_or(3).max(2);
    // `control`: 20–30 ms each way, a 50 ms round trip on average.
    let delay = delay_of(opts, default_delay);
    let votes = 40;
    let mut setup = Setup::new(&name, n, delay, 60.0);
    setup.period_frames = Some(CONTROL_PERIOD_FRAMES);
    let (_dir, mut rig, _) = playing(bin, opts, setup)?;
    // The lead comes down from a new session's 150 ms once every link is
    // measured (about a second) at 10 ms a round.
    sleep_secs(5.0);
    let actions = [
        ("volume 0 -3", "volume"),
        ("volume 0 0", "volume"),
        ("seek 10", "seek"),
        ("pause", "pause"),
        ("play", "play"),
    ];
    let mut samples = Vec::new();
    for k in 0..votes {
        let (line, action) = actions[k % actions.len()];
        let voter = k % n;
        let c = rig.vote(voter, line, action)?;
        samples.push(json!({"voter": voter, "command": line, "latency_ms": c.latency_ms, "spread_ms": c.spread_ms}));
        // The wait above ends on the round grid (at a decision), so the pause
        // must move the next command to another phase of the round: 0.5 s
        // plus a golden-ratio step through the 100 ms round.
        sleep_secs(0.5 + 0.1 * (k as f64 * 0.618_034).fract());
    }
    let leads: Vec<Value> = rig
        .statuses()?
        .iter()
        .map(|s| json!({"lead_ms": s["lead_ms"], "need_ms": s["need_ms"]}))
        .collect();
    rig.stop()?;
    let lat: Vec<f64> = samples
        .iter()
        .filter_map(|s| s["latency_ms"].as_f64())
        .collect();
    eprintln!("   lead at the end: {leads:?}");
    let spread: Vec<f64> = samples
        .iter()
        .filter_map(|s| s["spread_ms"].as_f64())
        .collect();
    eprintln!(
        "   command → applied on all: {}",
        Summary::of_abs(lat.iter().copied())
    );
    let results = json!({
        "scenario": name,
        "peers": n,
        "delay": delay_json(delay),
        "period_frames": CONTROL_PERIOD_FRAMES,
        "lead_at_end": leads,
        "latency_ms": summary_of(&lat),
        "latency_mean_ms": lat.iter().sum::<f64>() / lat.len().max(1) as f64,
        "spread_ms": summary_of(&spread),
        "votes": samples,
    });
    write_results(&opts.out, &name, &results)?;
    let pts: Vec<(f64, f64)> = lat
        .iter()
        .enumerate()
        .map(|(k, &l)| (k as f64, l))
        .collect();
    let title = if s == Scenario::ControlLan {
        "synfony: command to applied on every peer (no added delay)"
    } else {
        "synfony: command to applied on every peer (~50 ms RTT)"
    };
    let mut plot = Plot::lines(title, "vote", "latency (ms)");
    plot.marks = true;
    draw(
        &opts.figures.join(format!("{name}-latency.svg")),
        &plot,
        &[Series::new("", pts)],
    )
}

/// Time from a peer's process start until it plays within `IN_SYNC_MS` (and
/// `NEAR_SYNC_MS`) of `reference` and stays there; with the skew samples.
fn time_to_sync(rig: &Rig, reference: usize, peer: usize) -> ([Option<f64>; 2], Vec<(i64, f64)>) {
    let started = rig.nodes[peer].peer.started_mono_ns;
    let a = rig.nodes[reference].peer.read_report().since(started);
    let b = rig.nodes[peer].peer.read_report().since(started);
    let s = skew_ms(&a, &b);
    let at = |bound| settled_at(&s, bound).map(|t| (t - started) as f64 / 1e9);
    ([at(IN_SYNC_MS), at(NEAR_SYNC_MS)], s)
}

/// A late joiner, and a peer restarted after SIGKILL, several times each.
fn join(s: Scenario, bin: &Path, opts: &Options, default_delay: Delay) -> anyhow::Result<()> {
    let name = s.name();
    let delay = delay_of(opts, default_delay);
    let rounds = 4;
    let watch_secs = 15.0;
    let setup = Setup::new(
        &name,
        2,
        delay,
        60.0 + 2.0 * rounds as f64 * (watch_secs + 2.0),
    );
    let (_dir, mut rig, _) = playing(bin, opts, setup)?;
    sleep_secs(3.0);
    let mut late = Vec::new();
    let mut rejoin = Vec::new();
    let mut series = Vec::new();
    for k in 0..rounds {
        // A new peer joins the session, plays for a while, and leaves.
        let j = rig.spawn(false, None)?;
        sleep_secs(watch_secs);
        let (t, s) = time_to_sync(&rig, 0, j);
        eprintln!("   late join {k}: within 1 / 2 ms after {t:?} s");
        late.push(t);
        series.push(Series::new(
            format!("late join {k}"),
            thin(&s, rig.nodes[j].peer.started_mono_ns, 0.05)
                .into_iter()
                .map(|(x, y)| (x, y.abs()))
                .collect(),
        ));
        let node = rig.nodes.remove(j);
        let _ = node.peer.quit();
        sleep_secs(1.0);
    }
    for k in 0..rounds {
        // Peer 1 dies (SIGKILL) and comes back as a new process with the
        // same clocks, as a crashed laptop would.
        let clocks = rig.nodes[1].clocks.clone();
        drop(rig.nodes.remove(1));
        sleep_secs(1.0);
        let j = rig.spawn(false, Some(clocks))?;
        sleep_secs(watch_secs);
        let (t, s) = time_to_sync(&rig, 0, j);
        eprintln!("   rejoin {k}: within 1 / 2 ms after {t:?} s");
        rejoin.push(t);
        series.push(Series::new(
            format!("rejoin {k}"),
            thin(&s, rig.nodes[j].peer.started_mono_ns, 0.05)
                .into_iter()
                .map(|(x, y)| (x, y.abs()))
                .collect(),
        ));
    }
    rig.stop()?;
    let summary = |v: &[[Option<f64>; 2]]| {
        let one = |i: usize| {
            let all: Vec<Option<f64>> = v.iter().map(|t| t[i]).collect();
            let ok: Vec<f64> = all.iter().flatten().copied().collect();
            json!({
                "secs": all,
                "median": median(&ok),
                "max": ok.iter().copied().fold(f64::NAN, f64::max),
                "not_within_watch": all.iter().filter(|x| x.is_none()).count(),
            })
        };
        json!({ "within_1ms": one(0), "within_2ms": one(1) })
    };
    let results = json!({
        "scenario": name,
        "delay": delay_json(delay),
        "watch_secs": watch_secs,
        "late_join": summary(&late),
        "rejoin": summary(&rejoin),
    });
    write_results(&opts.out, &name, &results)?;
    let title = format!(
        "synfony, {}: |skew| of a joining peer from its process start",
        delay.describe()
    );
    let mut plot = Plot::lines(&title, "time since process start (s)", "|skew| (ms)");
    plot.log_y = true;
    draw(
        &opts.figures.join(format!("{name}-skew.svg")),
        &plot,
        &series,
    )
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The root dies: survivors' underruns, gaps, skew and control stall.
fn crash(bin: &Path, opts: &Options) -> anyhow::Result<()> {
    let n = opts.peers.unwrap_or(4).max(3);
    let delay = delay_of(opts, Delay::new(20.0, 40.0));
    let setup = Setup::new("crash", n, delay, 60.0);
    let (_dir, mut rig, _) = playing(bin, opts, setup)?;
    sleep_secs(5.0);
    let before = rig.vote(1, "volume 0 -1", "volume")?;
    let statuses_before = rig.statuses()?;
    sleep_secs(2.0);
    // SIGKILL the creator (the root of session time).
    let t_kill = monotonic_ns();
    drop(rig.nodes.remove(0));
    let mut after = Vec::new();
    for (k, line) in ["volume 0 -2", "volume 0 -3", "volume 0 -4", "volume 0 -5"]
        .iter()
        .enumerate()
    {
        let at_ms = (monotonic_ns() - t_kill) as f64 / 1e6;
        let c = rig.vote(k % rig.nodes.len(), line, "volume")?;
        after.push(json!({"at_ms": at_ms, "latency_ms": c.latency_ms, "spread_ms": c.spread_ms}));
        sleep_secs(0.3);
    }
    sleep_secs(5.0);
    let statuses = rig.statuses()?;
    let reports = rig.reports(t_kill);
    let names = names(&rig);
    let gaps: usize = reports.iter().map(|r| r.gaps(PERIOD_NS)).sum();
    let underruns = counter_delta(&statuses_before, &statuses, "underruns");
    let (skew_all, pairs, samples) = pair_skews(&names, &reports);
    rig.stop()?;
    eprintln!("   survivors: {underruns} underruns, {gaps} gaps; skew after the kill {skew_all}");
    let results = json!({
        "scenario": "crash",
        "peers": n,
        "delay": delay_json(delay),
        "killed": "p0 (the session's creator and root)",
        "survivor_underruns": underruns,
        "survivor_gaps": gaps,
        "survivor_skew_ms": { "all": summary_json(&skew_all), "pairs": pairs },
        "control_before_ms": before.latency_ms,
        "control_after": after,
        "counters": counters_between(&statuses_before, &statuses),
    });
    write_results(&opts.out, "crash", &results)?;
    draw(
        &opts.figures.join("crash-skew.svg"),
        &Plot::lines(
            "synfony: skew between survivors after the root's SIGKILL (at 0 s)",
            "time since the kill (s)",
            "skew (ms)",
        ),
        &[Series::new(
            "all survivor pairs",
            thin(&samples, t_kill, 0.25),
        )],
    )
}

/// Every link cut for 10 s, then restored.
fn partition(bin: &Path, opts: &Options) -> anyhow::Result<()> {
    let n = opts.peers.unwrap_or(3).max(2);
    let delay = delay_of(opts, Delay::new(20.0, 40.0));
    let cut_secs = 10.0;
    let setup = Setup::new("partition", n, delay, 90.0);
    let (_dir, mut rig, _) = playing(bin, opts, setup)?;
    sleep_secs(8.0);
    let t_cut = monotonic_ns();
    for node in &rig.nodes {
        node.proxy.cut();
    }
    sleep_secs(2.0);
    // A vote on one side while cut off: applied there alone, and the states
    // must agree again after the heal.
    rig.nodes[1].peer.send("volume 0 -6")?;
    sleep_secs(cut_secs - 2.0);
    let t_restore = monotonic_ns();
    for node in &rig.nodes {
        node.proxy.restore();
    }
    let relinked = match rig.wait_mesh(30 * SEC) {
        Ok(()) => Some((monotonic_ns() - t_restore) as f64 / 1e9),
        Err(e) => {
            eprintln!("   the mesh did not re-form: {e:#}");
            None
        }
    };
    sleep_secs(12.0);
    let t_end = monotonic_ns();
    let reports = rig.reports(t_cut - 5_000_000_000);
    let names = names(&rig);
    // Skew during the cut, and when each pair is back in sync after it.
    let mut during = Vec::new();
    let mut settle = Vec::new();
    let mut series = Vec::new();
    for i in 0..reports.len() {
        for j in i + 1..reports.len() {
            let s = skew_ms(&reports[i], &reports[j]);
            during.extend(
                s.iter()
                    .filter(|(t, _)| (t_cut..t_restore).contains(t))
                    .map(|x| x.1),
            );
            let after: Vec<(i64, f64)> =
                s.iter().copied().filter(|(t, _)| *t >= t_restore).collect();
            settle.push(
                settled_at(&after, IN_SYNC_MS)
                    .filter(|&t| t < t_end - 2_000_000_000)
                    .map(|t| (t - t_restore) as f64 / 1e9),
            );
            series.push(Series::new(
                format!("{} − {}", names[j], names[i]),
                thin(&s, t_cut, 0.25),
            ));
        }
    }
    // Does every peer end in the same state? The last decision's gains.
    let mut last_gains = Vec::new();
    let mut adopted = 0;
    for node in &mut rig.nodes {
        node.peer.poll();
        adopted += node
            .peer
            .events_named("decision")
            .filter(|d| d.get("adopted_from").is_some())
            .count();
        last_gains.push(
            node.peer
                .events_named("decision")
                .last()
                .map(|d| d["gains_db"].clone())
                .unwrap_or(Value::Null),
        );
    }
    let converged = last_gains.windows(2).all(|w| w[0] == w[1]);
    rig.stop()?;
    let during_s = Summary::of_abs(during);
    eprintln!(
        "   during the cut: {during_s}; relinked after {relinked:?} s; in sync after {settle:?} s; states agree: {converged}"
    );
    let results = json!({
        "scenario": "partition",
        "peers": n,
        "delay": delay_json(delay),
        "cut_secs": cut_secs,
        "skew_during_cut_ms": summary_json(&during_s),
        "relinked_after_secs": relinked,
        "in_sync_after_secs": settle,
        "in_sync_after_max_secs": settle.iter().flatten().copied().fold(f64::NAN, f64::max),
        "states_agree": converged,
        "adopted_decisions": adopted,
    });
    write_results(&opts.out, "partition", &results)?;
    let mut plot = Plot::lines(
        "synfony: skew through a 10 s cut of every link (shaded)",
        "time since the cut (s)",
        "skew (ms)",
    );
    plot.shade = Some((0.0, (t_restore - t_cut) as f64 / 1e9));
    draw(&opts.figures.join("partition-skew.svg"), &plot, &series)
}

/// 2 to 32 peers: CPU per peer (paused and playing), bytes per peer per
/// round, heartbeats on time, skew.
fn scale(bin: &Path, opts: &Options) -> anyhow::Result<()> {
    let sizes: Vec<usize> = match opts.peers {
        Some(n) => vec![n],
        None => vec![2, 4, 8, 16, 32],
    };
    let delay = delay_of(opts, Delay::new(20.0, 40.0));
    let window = opts.secs.unwrap_or(10.0);
    let dir = scratch(opts, "scale")?;
    let stem = impulse_stem(&dir.path, window + 20.0)?;
    let mut rows = Vec::new();
    for &n in &sizes {
        let sub = dir.path.join(format!("n{n}"));
        std::fs::create_dir_all(&sub)?;
        let mut rig = Rig::new(bin, &sub, delay, &stem, opts.seed);
        rig.start(n, false)?;
        let t_start = monotonic_ns();
        rig.wait_mesh(Duration::from_secs(60 + n as u64 * 2))?;
        let mesh_secs = (monotonic_ns() - t_start) as f64 / 1e9;
        sleep_secs(3.0);
        let measure = |rig: &mut Rig| -> anyhow::Result<(f64, f64, Value)> {
            let (c0, b0, s0) = (rig.cpu_secs(), rig.link_bytes(), rig.statuses()?);
            let t0 = monotonic_ns();
            sleep_secs(window);
            let (c1, b1, s1) = (rig.cpu_secs(), rig.link_bytes(), rig.statuses()?);
            let wall = (monotonic_ns() - t0) as f64 / 1e9;
            let cpu: Vec<f64> = c0
                .iter()
                .zip(&c1)
                .map(|(a, b)| (b - a) / wall * 100.0)
                .collect();
            let rounds = wall * 1e9 / ROUND_NS as f64;
            let bytes = b1.saturating_sub(b0) as f64 / n as f64 / rounds;
            let on_time = counter_delta(&s0, &s1, "heartbeats_on_time");
            let late = counter_delta(&s0, &s1, "heartbeats_late");
            let hb = json!({
                "on_time": on_time,
                "late": late,
                "on_time_fraction": on_time as f64 / (on_time + late).max(1) as f64,
            });
            Ok((median(&cpu), bytes, hb))
        };
        let (cpu_paused, bytes_paused, hb_paused) = measure(&mut rig)?;
        rig.vote(0, "play", "play")?;
        sleep_secs(2.0);
        let t_play = monotonic_ns();
        let (cpu_playing, bytes_playing, hb_playing) = measure(&mut rig)?;
        let reports = rig.reports(t_play);
        let names = names(&rig);
        let gaps: usize = reports.iter().map(|r| r.gaps(PERIOD_NS)).sum();
        let (skew, _, _) = pair_skews(&names, &reports);
        let underruns = rig
            .statuses()?
            .iter()
            .filter_map(|s| s["underruns"].as_u64())
            .sum::<u64>();
        rig.stop()?;
        eprintln!(
            "   {n:2} peers: CPU {cpu_paused:.1}% paused, {cpu_playing:.1}% playing; {bytes_playing:.0} B/peer/round; heartbeats on time {}; skew {skew}",
            hb_playing["on_time_fraction"]
        );
        rows.push(json!({
            "peers": n,
            "mesh_secs": mesh_secs,
            "cpu_pct_paused": cpu_paused,
            "cpu_pct_playing": cpu_playing,
            "bytes_per_peer_per_round_paused": bytes_paused,
            "bytes_per_peer_per_round_playing": bytes_playing,
            "heartbeats_paused": hb_paused,
            "heartbeats_playing": hb_playing,
            "skew_ms": summary_json(&skew),
            "gaps": gaps,
            "underruns": underruns,
        }));
    }
    let results = json!({
        "scenario": "scale",
        "delay": delay_json(delay),
        "window_secs": window,
        "cpu_note": "median over peers of (user+system CPU time) / wall time, % of one core",
        "rows": rows,
    });
    write_results(&opts.out, "scale", &results)?;
    let col = |k: &str| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| Some((r["peers"].as_f64()?, r[k].as_f64()?)))
            .collect()
    };
    draw(
        &opts.figures.join("scale-cpu.svg"),
        &Plot::lines("synfony: CPU per peer", "peers", "CPU (% of one core)"),
        &[
            Series::new("paused", col("cpu_pct_paused")),
            Series::new("playing", col("cpu_pct_playing")),
        ],
    )?;
    draw(
        &opts.figures.join("scale-bytes.svg"),
        &Plot::lines("synfony: bytes sent per peer per round", "peers", "bytes"),
        &[Series::new(
            "playing",
            col("bytes_per_peer_per_round_playing"),
        )],
    )?;
    Ok(())
}

/// One seek of the remote scenario: when it applied, where to, and how much
/// of the stem the fetching peer had then.
struct SeekRun {
    target_secs: f64,
    command_ms: f64,
    apply_mono_ns: i64,
    fetched_fraction: f64,
}

/// The impulses `host` played from `from_mono_ns` on for `secs`, and how
/// many of them `fan` did not play (by index).
fn missed_impulses(
    host: &[(u32, f64)],
    fan: &[(u32, f64)],
    from_mono_ns: i64,
    secs: f64,
) -> (usize, usize) {
    let end = from_mono_ns as f64 + secs * 1e9;
    let played: std::collections::HashSet<u32> = fan.iter().map(|x| x.0).collect();
    let due: Vec<u32> = (host.iter())
        .filter(|(_, t)| (from_mono_ns as f64..end).contains(t))
        .map(|x| x.0)
        .collect();
    let missed = due.iter().filter(|i| !played.contains(i)).count();
    (due.len(), missed)
}

/// A peer without the stem (p2) fetches it from two hosts (p0, p1) through
/// 25 ms each way: bytes fetched against the file's size; p0 killed while
/// the fetch is young (the impulses p2 misses are counted); then seeks into
/// parts not yet fetched, timed by how much later than the surviving host p2
/// plays its first impulse after the apply instant.
fn remote(bin: &Path, opts: &Options) -> anyhow::Result<()> {
    let delay = delay_of(opts, Delay::new(25.0, 0.0));
    let stem_secs = opts.secs.unwrap_or(600.0);
    let dir = scratch(opts, "remote")?;
    let stem = impulse_stem(&dir.path, stem_secs)?;
    let size_bytes = std::fs::metadata(&stem)?.len();
    let mut rig = Rig::new(bin, &dir.path, delay, &stem, opts.seed);
    rig.remote_from = 2;
    rig.start(3, true)?;
    rig.wait_mesh(30 * SEC)?;
    rig.nodes[2]
        .peer
        .wait_for("the song", |v| v["event"] == "song", 30 * SEC)?;
    let fan_status = |rig: &mut Rig| -> anyhow::Result<(Value, f64)> {
        let s = rig.nodes[2].peer.status()?;
        let stem = &s["song_stems"][0];
        let frac =
            stem["chunks_have"].as_f64().unwrap_or(0.0) / stem["chunks"].as_f64().unwrap_or(1.0);
        Ok((s, frac))
    };
    let play = rig.vote(0, "play", "play")?;
    let t_play = monotonic_ns();
    // Kill a host while the fetch is young, then seek (through the other).
    sleep_secs(2.0);
    let (before_kill, fetched_at_kill) = fan_status(&mut rig)?;
    let t_kill = monotonic_ns();
    rig.nodes[0].peer.kill();
    sleep_secs(5.0);
    let mut seeks = Vec::new();
    for fraction in [0.95, 0.8, 0.6, 0.4, 0.2] {
        // Off the 100 ms impulse grid: the impulse detector tells runs
        // apart by their spacing, so a seek must break it (a seek by whole
        // tenths would join two runs, and muddle their indices).
        let target_secs = (stem_secs * fraction).round() + 0.0437;
        let (_, fetched_fraction) = fan_status(&mut rig)?;
        let sent = monotonic_ns();
        let c = rig.vote(1, &format!("seek {target_secs}"), "seek")?;
        seeks.push(SeekRun {
            target_secs,
            command_ms: c.latency_ms,
            apply_mono_ns: sent + (c.latency_ms * 1e6) as i64,
            fetched_fraction,
        });
        sleep_secs(2.0);
    }
    let (after, _) = fan_status(&mut rig)?;
    let names = names(&rig);
    let caps: Vec<Capture> = rig.stop()?.into_iter().flatten().collect();
    for (name, cap) in names.iter().zip(&caps) {
        crate::keep_capture(opts, &dir.path, name, cap);
    }
    let times: Vec<Vec<(u32, f64)>> = caps
        .iter()
        .map(|c| play_times(c, crate::BLOCK_FRAMES))
        .collect();
    // Sync of the fetched stem against a host, before the kill.
    let (skew, _, _) = impulse_skews(&names[1..], &caps[1..], t_play + 1_000_000_000, t_kill);
    let mut seek_json = Vec::new();
    let mut late = Vec::new();
    for s in &seeks {
        // The first impulse the surviving host plays after the apply, and
        // how much later the fetching peer plays its first one from there
        // (0: it played that very impulse, at the same instant).
        let host_first = times[1].iter().find(|(_, t)| *t >= s.apply_mono_ns as f64);
        let late_ms = host_first.and_then(|&(k0, t0)| {
            times[2]
                .iter()
                .find(|&&(k, t)| k >= k0 && t >= s.apply_mono_ns as f64)
                .map(|&(_, t)| ((t - t0) / 1e6).max(0.0))
        });
        let (due, missed) = missed_impulses(&times[1], &times[2], s.apply_mono_ns, 1.5);
        if let Some(l) = late_ms {
            late.push(l);
        }
        eprintln!(
            "   seek to {:.2} s ({:.0} % fetched): command → apply {:.0} ms, audible {:?} ms after the host, {missed} of {due} impulses missed",
            s.target_secs,
            100.0 * s.fetched_fraction,
            s.command_ms,
            late_ms.map(|a| a.round())
        );
        seek_json.push(json!({
            "target_secs": s.target_secs,
            "fetched_fraction": s.fetched_fraction,
            "command_to_apply_ms": s.command_ms,
            "audible_after_host_ms": late_ms,
            "command_to_audible_ms": late_ms.map(|l| l + s.command_ms),
            "impulses_due": due,
            "impulses_missed": missed,
        }));
    }
    let (due_kill, missed_kill) = missed_impulses(&times[1], &times[2], t_kill, 4.5);
    let fetched = after["fetch"]["bytes_fetched"].as_u64().unwrap_or(0);
    let served_before_kill = before_kill["fetch"]["bytes_fetched"].as_u64().unwrap_or(0);
    eprintln!("   skew host–fetcher (impulses, before the seeks): {skew}");
    eprintln!(
        "   host killed with {:.0} % fetched: {missed_kill} of {due_kill} impulses missed in 5 s",
        100.0 * fetched_at_kill
    );
    eprintln!(
        "   bytes fetched {fetched} for a {size_bytes}-byte file ({:.4}×)",
        fetched as f64 / size_bytes as f64
    );
    let results = json!({
        "scenario": "remote",
        "delay": delay_json(delay),
        "stem_secs": stem_secs,
        "file_bytes": size_bytes,
        "bytes_fetched": fetched,
        "bytes_fetched_ratio": fetched as f64 / size_bytes as f64,
        "bytes_fetched_before_kill": served_before_kill,
        "play_ms": play.latency_ms,
        "skew_ms": summary_json(&skew),
        "seeks": seek_json,
        "audible_after_host_ms": summary_of(&late),
        "kill": {
            "fetched_fraction": fetched_at_kill,
            "impulses_due": due_kill,
            "impulses_missed": missed_kill,
        },
        "fetch": after["fetch"],
        "underruns": after["underruns"],
    });
    write_results(&opts.out, "remote", &results)
}

/// Where song `song` starts in `report`: the monotonic instant its frame 0
/// left (from its first playing line after `since_mono_ns`), and where the
/// song before it ended (from the last playing line before, `before_frames`
/// long).
fn song_boundary(
    report: &synfony_testkit::report::Report,
    song: [u8; 16],
    before_frames: i64,
) -> Option<(f64, f64, i64)> {
    let lines = &report.lines;
    let first = lines.iter().position(|l| l.song == song && l.playing)?;
    let rate = f64::from(report.rate_hz.max(1));
    let start = lines[first].mono_ns as f64 - lines[first].pos_frames as f64 * 1e9 / rate;
    let last = lines[..first]
        .iter()
        .rev()
        .find(|l| l.song != song && l.playing)?;
    let end = last.mono_ns as f64 + (before_frames - last.pos_frames) as f64 * 1e9 / rate;
    Some((start, end, lines[first].pos_frames))
}

/// Songs that follow each other (issue 21): a song, and the set list's next
/// one hosted by one peer only, both played to the boundary again and again;
/// at each, when the next song's first frame leaves every peer, the gap
/// after the song before, and underruns.
fn setlist(bin: &Path, opts: &Options) -> anyhow::Result<()> {
    let n = opts.peers.unwrap_or(3).max(2);
    let delay = delay_of(opts, Delay::new(20.0, 40.0));
    let boundaries = 6;
    let dir = scratch(opts, "setlist")?;
    // Two impulse stems of different lengths (so, different files).
    // Longer than the 5 s a peer decodes its own files ahead.
    let first_secs = 8.0;
    let first = dir.path.join("first.wav");
    let next = dir.path.join("next.wav");
    synfony_testkit::impulse::write_wav(&first, (first_secs * 48_000.0) as usize)
        .context("writing the first song")?;
    synfony_testkit::impulse::write_wav(&next, 6 * 48_000).context("writing the next song")?;
    let mut rig = Rig::new(bin, &dir.path, delay, &first, opts.seed);
    rig.start(n, false)?;
    rig.wait_mesh(30 * SEC)?;
    // The next song is brought by one peer; every peer sees it.
    let host = 1;
    rig.nodes[host]
        .peer
        .send(&format!("add --song Next \"{}\"", next.display()))?;
    let song_id = |e: &Value, name: &str| -> Option<String> {
        (e["songs"].as_array()?.iter())
            .find(|s| s["name"] == name && s["stems"].as_array().is_some_and(|v| !v.is_empty()))
            .and_then(|s| s["id"].as_str().map(str::to_string))
    };
    let mut next_id = String::new();
    let mut first_id = String::new();
    for node in &mut rig.nodes {
        let lib = node.peer.wait_for(
            "the library with both songs",
            |e| {
                e["event"] == "library"
                    && song_id(e, "Next").is_some()
                    && song_id(e, "first").is_some()
            },
            30 * SEC,
        )?;
        next_id = song_id(&lib, "Next").unwrap_or_default();
        first_id = song_id(&lib, "first").unwrap_or_default();
    }
    let next_song = synfony_testkit::report::song_bytes(&next_id).context("the next song's id")?;
    sleep_secs(WARMUP_SECS);
    let before = rig.statuses()?;
    let t0 = monotonic_ns();
    let mut spreads = Vec::new();
    let mut gaps = Vec::new();
    let mut samples = Vec::new();
    let mut first_lines = Vec::new();
    for k in 0..boundaries {
        // The set list: the next song after this one (queued by another peer).
        let marks: Vec<usize> = rig.nodes.iter_mut().map(|n| n.peer.mark()).collect();
        rig.nodes[n - 1].peer.send("queue Next")?;
        for (node, &mark) in rig.nodes.iter_mut().zip(&marks) {
            node.peer.wait_for_since(
                mark,
                "Next queued",
                |e| e["event"] == "setlist" && e["queue"][0] == next_id.as_str(),
                10 * SEC,
            )?;
        }
        // Play the last 2 s of the song; the next follows with no vote.
        rig.vote(k % n, &format!("seek {}", first_secs - 2.0), "seek")?;
        let since = monotonic_ns();
        rig.vote((k + 1) % n, "play", "play")?;
        let marks: Vec<usize> = rig.nodes.iter_mut().map(|n| n.peer.mark()).collect();
        for (node, &mark) in rig.nodes.iter_mut().zip(&marks) {
            node.peer.wait_for_since(
                mark,
                "the next song",
                |e| e["event"] == "setlist" && e["current"] == next_id.as_str(),
                10 * SEC,
            )?;
        }
        sleep_secs(1.5);
        let edges: Vec<(f64, f64, i64)> = rig
            .reports(since)
            .iter()
            .map(|r| song_boundary(r, next_song, (first_secs * 48_000.0) as i64))
            .collect::<Option<Vec<_>>>()
            .context("a peer's report has no boundary")?;
        let starts: Vec<f64> = edges.iter().map(|e| e.0).collect();
        let max = starts.iter().copied().fold(f64::MIN, f64::max);
        let min = starts.iter().copied().fold(f64::MAX, f64::min);
        let spread_ms = (max - min) / 1e6;
        let peer_gaps: Vec<f64> = edges.iter().map(|(s, e, _)| (s - e) / 1e6).collect();
        // The next song's first report line: within its first block (a
        // line later would mean its start was skipped, not played).
        first_lines.extend(edges.iter().map(|e| e.2));
        let now = rig.statuses()?;
        let under = counter_delta(&before, &now, "underruns");
        eprintln!(
            "   boundary {k}: first frames {spread_ms:.3} ms apart; gaps {peer_gaps:.3?} ms; underruns so far {under}"
        );
        spreads.push(spread_ms);
        gaps.extend(peer_gaps.iter().map(|g| g.abs()));
        samples.push(json!({ "spread_ms": spread_ms, "gaps_ms": peer_gaps }));
        // Back to the first song (by a load), paused.
        rig.vote(k % n, "pause", "pause")?;
        rig.vote((k + 2) % n, &format!("load {first_id}"), "load")?;
    }
    let after = rig.statuses()?;
    let names = names(&rig);
    let (steady, _, _) = pair_skews(&names, &rig.reports(t0));
    let underruns = counter_delta(&before, &after, "underruns");
    rig.stop()?;
    eprintln!(
        "   next song's first frame, spread: {}; steady skew while playing: {steady}; underruns {underruns}",
        Summary::of_abs(spreads.iter().copied())
    );
    let results = json!({
        "scenario": "setlist",
        "peers": n,
        "delay": delay_json(delay),
        "boundaries": boundaries,
        "spread_ms": summary_of(&spreads),
        "gap_ms": summary_of(&gaps),
        "steady_skew_ms": summary_json(&steady),
        "underruns": underruns,
        "first_line_frames_max": first_lines.iter().max(),
        "samples": samples,
    });
    write_results(&opts.out, "setlist", &results)
}
