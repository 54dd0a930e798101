//! A deterministic simulator for the session protocol: many [`Session`]s in
//! virtual time, joined by simulated TCP links, with the faults the protocol must
//! survive, checking its invariants as it runs.
//!
//! Everything comes from one seed (a portable ChaCha8 stream), so a run replays
//! exactly: `SYNFONY_SIM_SEED=1234 cargo test --test sim replay` reruns seed
//! 1234. Each peer has its own clock (offset up to ±10 s, drift up to ±500 ppm);
//! each link its own per-direction base delay and jitter and is FIFO, like TCP;
//! every message goes through the real wire encoding.
//!
//! The scenario: one peer creates the session, the others join through random
//! members; users vote at random; then (with faults on) a crash and a restart, a
//! cut link, a partition and its heal, and a late joiner. The checker measures the
//! session-time error of every peer against a reference peer, the spread of the
//! true instants at which peers apply each decision, the stall after a crash, join
//! and heal times, and flags violations:
//!
//! - *divergence*: in a calm period (no fault for 1.5 s, one component), joined
//!   peers decided different states for the same round;
//! - *stall*: a joined peer went more than 500 ms without deciding a round;
//! - *no join* / *no heal*: not in step 3 s after starting or healing (in
//!   step = the same decisions and session time within [`IN_STEP_NS`]); taking
//!   more than 1 s is reported as a missed target, not a violation;
//! - *lost vote*: a user action got no verdict (no decision outcome, no drop
//!   report) though its peer lived on;
//! - *wire*: the core produced a message the wire format refuses.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr};

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use synfony::protocol::message::{Message, PeerInfo};
use synfony::protocol::session::verdicts_of;
use synfony::protocol::{
    Channel, Config, Event, PeerId, ROUND_NS, Round, Session, SessionEvent, SessionState, Start,
};
use synfony::wire;

const MS: i64 = 1_000_000;
const SEC: i64 = 1_000_000_000;
/// "In step" for joins and heals: the same decisions, and session time within
/// this of the reference (the audio engine absorbs smaller errors by resampling).
pub const IN_STEP_NS: i64 = 2 * MS;
/// Clock errors and apply skew are measured on peers this long after they start
/// (the estimators need samples; see NOTEBOOK.md).
pub const SETTLED_NS: i64 = 5 * SEC;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Peers in the session at the start (the late joiner and restarts add more).
    pub peers: usize,
    pub duration_ns: i64,
    /// One-way delay: a per-direction base in `[delay_min_ns, delay_min_ns +
    /// asymmetry_ns]` plus jitter uniform in `[0, jitter_ns]` per message.
    pub delay_min_ns: i64,
    pub jitter_ns: i64,
    pub asymmetry_ns: i64,
    pub max_clock_offset_ns: i64,
    pub max_drift_ppm: f64,
    /// Crash/restart, a cut link, a partition and a late join.
    pub faults: bool,
    /// Chance that a peer's user acts in a given round.
    pub vote_probability: f64,
    pub session: Config,
}

impl SimConfig {
    /// The reference conditions: 20–60 ms symmetric jitter, offsets up to
    /// ±10 s, drift up to ±500 ppm, all faults, 30 s.
    pub fn new(seed: u64, peers: usize) -> SimConfig {
        SimConfig {
            seed,
            peers: peers.max(1),
            duration_ns: 30 * SEC,
            delay_min_ns: 20 * MS,
            jitter_ns: 40 * MS,
            asymmetry_ns: 0,
            max_clock_offset_ns: 10 * SEC,
            max_drift_ppm: 500.0,
            faults: true,
            vote_probability: 0.03,
            session: Config::default(),
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub seed: u64,
    /// Broken invariants: divergence in calm periods, stalls, lost votes, wire
    /// errors, joins or heals that never complete. Must be empty.
    pub violations: Vec<String>,
    /// Timing targets missed (a join or heal in step after more than 1 s).
    pub target_misses: Vec<String>,
    /// |session time error| of joined peers against the reference, sampled every
    /// 50 ms in calm periods, in ns.
    pub offset_err_ns: Vec<f64>,
    /// Largest spread of the true instants at which joined peers applied one
    /// decision (calm rounds).
    pub apply_skew_ns_max: i64,
    pub crash_stall_ns_max: i64,
    pub join_ns_max: i64,
    pub joins: usize,
    pub heal_ns_max: i64,
    pub heals: usize,
    pub decisions: u64,
    pub messages: u64,
    pub votes_cast: u64,
}

/// Runs one simulation.
pub fn run(cfg: &SimConfig) -> Report {
    let mut sim = Sim::new(cfg.clone());
    sim.script();
    sim.run();
    sim.report
}

#[derive(Debug)]
enum Ev {
    Wake {
        slot: usize,
        generation: u64,
    },
    Deliver {
        from: usize,
        to: usize,
        epoch: u64,
        message: Box<Message>,
    },
    Connect {
        a: usize,
        b: usize,
    },
    LinkDown {
        at: usize,
        peer: PeerId,
    },
    Start {
        slot: usize,
        join_via: Option<usize>,
    },
    /// A joiner with no link yet tries another member (as a user would).
    JoinRetry {
        slot: usize,
    },
    Crash {
        slot: usize,
    },
    Restart {
        slot: usize,
        same_id: bool,
    },
    Cut {
        a: usize,
        b: usize,
    },
    Restore {
        a: usize,
        b: usize,
    },
    Partition {
        side: Vec<bool>,
    },
    Heal,
    VoteTick,
    Sample,
}

struct Scheduled {
    t: i64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        Reverse((self.t, self.seq)).cmp(&Reverse((o.t, o.seq)))
    }
}

struct Peer {
    info: PeerInfo,
    offset_ns: i64,
    drift: f64,
    session: Option<Session>,
    alive: bool,
    generation: u64,
    started_at_ns: i64,
    /// Joined: in step with the others (the creator from the start).
    joined: bool,
    last_decided_at_ns: Option<i64>,
    /// User actions cast and not yet answered.
    awaiting: Vec<(i64, Event)>,
}

impl Peer {
    fn local_ns(&self, t: i64) -> i64 {
        t + self.offset_ns + (t as f64 * self.drift).round() as i64
    }

    fn true_ns(&self, local: i64) -> i64 {
        ((local - self.offset_ns) as f64 / (1.0 + self.drift)).round() as i64
    }

    /// The core answered one of this peer's actions (a verdict, a drop, a
    /// supersession): it is no longer awaiting.
    fn answered(&mut self, event: Event) {
        if let Some(i) = self.awaiting.iter().position(|(_, e)| *e == event) {
            self.awaiting.remove(i);
        }
    }

    fn session_ns(&self, t: i64) -> Option<i64> {
        self.session.as_ref()?.session_ns_at(self.local_ns(t))
    }
}

#[derive(Default)]
struct Link {
    up: bool,
    connecting: bool,
    epoch: u64,
    base_ns: [i64; 2],
    last_arrival_ns: [i64; 2],
}

struct Sim {
    cfg: SimConfig,
    rng: ChaCha8Rng,
    now: i64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    peers: Vec<Peer>,
    links: BTreeMap<(usize, usize), Link>,
    cut: BTreeSet<(usize, usize)>,
    side: Option<Vec<bool>>,
    /// True instants of fault events (crash, restart, cut, restore, partition, heal).
    faults: Vec<i64>,
    crashes: Vec<i64>,
    /// Heals waiting to be measured: (time, kind).
    heals: Vec<i64>,
    /// Per round: (slot, digest, true apply instant) of joined peers' decisions.
    applied: BTreeMap<Round, Vec<(usize, u64, i64)>>,
    checked_divergence: BTreeSet<Round>,
    report: Report,
    frame: Vec<u8>,
    trace: bool,
}

fn key(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Sim {
    fn new(cfg: SimConfig) -> Sim {
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let report = Report {
            seed: cfg.seed,
            ..Report::default()
        };
        Sim {
            cfg,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            peers: Vec::new(),
            links: BTreeMap::new(),
            cut: BTreeSet::new(),
            side: None,
            faults: Vec::new(),
            crashes: Vec::new(),
            heals: Vec::new(),
            applied: BTreeMap::new(),
            checked_divergence: BTreeSet::new(),
            report,
            frame: Vec::with_capacity(4096),
            trace: std::env::var_os("SYNFONY_SIM_TRACE").is_some(),
        }
    }

    fn at(&mut self, t: i64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Scheduled {
            t,
            seq: self.seq,
            ev,
        });
    }

    fn violation(&mut self, what: String) {
        if self.report.violations.len() < 20 {
            let t = self.now as f64 / SEC as f64;
            self.report
                .violations
                .push(format!("seed {} at {t:.3} s: {what}", self.cfg.seed));
        }
    }

    fn target_missed(&mut self, what: String) {
        if self.report.target_misses.len() < 20 {
            let t = self.now as f64 / SEC as f64;
            self.report
                .target_misses
                .push(format!("seed {} at {t:.3} s: {what}", self.cfg.seed));
        }
    }

    fn new_peer(&mut self, id: PeerId, offset_ns: i64, drift: f64) -> usize {
        let slot = self.peers.len();
        let addr = SocketAddr::from((Ipv4Addr::new(10, 0, (slot >> 8) as u8, slot as u8), 7000));
        self.peers.push(Peer {
            info: PeerInfo {
                peer_id: id,
                name: format!("p{slot}"),
                addr,
            },
            offset_ns,
            drift,
            session: None,
            alive: false,
            generation: 0,
            started_at_ns: 0,
            joined: false,
            last_decided_at_ns: None,
            awaiting: Vec::new(),
        });
        slot
    }

    fn random_clock(&mut self) -> (i64, f64) {
        let max_off = self.cfg.max_clock_offset_ns.max(0);
        let offset = self.rng.random_range(-max_off..=max_off) + 20 * SEC;
        let ppm = self.cfg.max_drift_ppm.abs();
        let drift = if ppm > 0.0 {
            self.rng.random_range(-ppm..=ppm) * 1e-6
        } else {
            0.0
        };
        (offset, drift)
    }

    fn random_id(&mut self) -> PeerId {
        PeerId(self.rng.random_range(1..u64::MAX))
    }

    /// Lays out the scenario in the event queue.
    fn script(&mut self) {
        let n = self.cfg.peers;
        // Start times in order, so each joiner joins through a peer already up.
        let mut starts: Vec<i64> = (1..n)
            .map(|_| self.rng.random_range(300 * MS..=2 * SEC))
            .collect();
        starts.sort();
        for i in 0..n {
            let id = self.random_id();
            let (off, drift) = self.random_clock();
            let slot = self.new_peer(id, off, drift);
            if i == 0 {
                self.at(
                    0,
                    Ev::Start {
                        slot,
                        join_via: None,
                    },
                );
            } else {
                let via = self.rng.random_range(0..i);
                self.at(
                    starts[i - 1],
                    Ev::Start {
                        slot,
                        join_via: Some(via),
                    },
                );
            }
        }
        self.at(ROUND_NS / 3, Ev::VoteTick);
        self.at(50 * MS, Ev::Sample);
        if !self.cfg.faults || n < 2 {
            return;
        }
        let d = self.cfg.duration_ns;
        let frac = |s: &mut Self, lo: f64, hi: f64| (s.rng.random_range(lo..hi) * d as f64) as i64;
        // A crash of any peer (the root included), restarted later.
        let victim = self.rng.random_range(0..n);
        let tc = frac(self, 0.22, 0.28);
        self.at(tc, Ev::Crash { slot: victim });
        let down = self.rng.random_range(500 * MS..=2 * SEC);
        let same_id = self.rng.random_bool(0.5);
        self.at(
            tc + down,
            Ev::Restart {
                slot: victim,
                same_id,
            },
        );
        // One cut link between two of the first peers.
        if n >= 3 {
            let a = self.rng.random_range(0..n);
            let b = (a + self.rng.random_range(1..n)) % n;
            let t = frac(self, 0.36, 0.40);
            self.at(t, Ev::Cut { a, b });
            let len = self.rng.random_range(500 * MS..=2 * SEC);
            self.at(t + len, Ev::Restore { a, b });
        }
        // A partition into two non-empty sides, healed later.
        let t = frac(self, 0.50, 0.55);
        let pivot = self.rng.random_range(1..n.max(2));
        let mut side: Vec<bool> = (0..n).map(|i| i < pivot).collect();
        for i in (1..n).rev() {
            let j = self.rng.random_range(0..=i);
            side.swap(i, j);
        }
        self.at(t, Ev::Partition { side });
        let len = self.rng.random_range(SEC..=4 * SEC);
        self.at(t + len, Ev::Heal);
        // A late joiner.
        let id = self.random_id();
        let (off, drift) = self.random_clock();
        let slot = self.new_peer(id, off, drift);
        let t = frac(self, 0.72, 0.78);
        let via = self.rng.random_range(0..n);
        self.at(
            t,
            Ev::Start {
                slot,
                join_via: Some(via),
            },
        );
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        let side_ok = match &self.side {
            Some(side) => {
                side.get(a).copied().unwrap_or(true) == side.get(b).copied().unwrap_or(true)
            }
            None => true,
        };
        a != b
            && self.peers[a].alive
            && self.peers[b].alive
            && side_ok
            && !self.cut.contains(&key(a, b))
    }

    fn slot_of(&self, id: PeerId) -> Option<usize> {
        // The newest live incarnation with that id.
        (0..self.peers.len())
            .rev()
            .find(|&s| self.peers[s].alive && self.peers[s].info.peer_id == id)
    }

    fn run(&mut self) {
        let mut steps: u64 = 0;
        while let Some(Scheduled { t, ev, .. }) = self.queue.pop() {
            if t > self.cfg.duration_ns {
                break;
            }
            self.now = t;
            steps += 1;
            if steps > 50_000_000 {
                self.violation("simulation did not settle (event storm)".into());
                break;
            }
            self.step(ev);
        }
        self.finish();
    }

    fn step(&mut self, ev: Ev) {
        let t = self.now;
        match ev {
            Ev::Wake { slot, generation } => {
                let p = &mut self.peers[slot];
                if !p.alive || p.generation != generation {
                    return;
                }
                let local = p.local_ns(t);
                if let Some(s) = p.session.as_mut() {
                    s.handle_timeout(local);
                }
                self.drain(slot);
            }
            Ev::Deliver {
                from,
                to,
                epoch,
                message,
            } => {
                let k = key(from, to);
                let ok = self.links.get(&k).is_some_and(|l| l.up && l.epoch == epoch)
                    && self.reachable(from, to);
                if !ok {
                    return;
                }
                let from_id = self.peers[from].info.peer_id;
                let p = &mut self.peers[to];
                let local = p.local_ns(t);
                if let Some(s) = p.session.as_mut() {
                    s.handle_message(local, from_id, *message);
                }
                self.drain(to);
            }
            Ev::Connect { a, b } => {
                let k = key(a, b);
                let link = self.links.entry(k).or_default();
                link.connecting = false;
                if link.up || !self.reachable(a, b) {
                    return;
                }
                let base = [self.base_delay(), self.base_delay()];
                let link = self.links.entry(k).or_default();
                link.up = true;
                link.epoch += 1;
                link.base_ns = base;
                link.last_arrival_ns = [t, t];
                let (ia, ib) = (self.peers[a].info.clone(), self.peers[b].info.clone());
                for (x, info) in [(a, ib), (b, ia)] {
                    let p = &mut self.peers[x];
                    let local = p.local_ns(t);
                    if let Some(s) = p.session.as_mut() {
                        s.handle_link_up(local, info);
                    }
                    self.drain(x);
                }
            }
            Ev::LinkDown { at, peer } => {
                let p = &mut self.peers[at];
                if !p.alive {
                    return;
                }
                let local = p.local_ns(t);
                if let Some(s) = p.session.as_mut() {
                    s.handle_link_down(local, peer);
                }
                self.drain(at);
            }
            Ev::Start { slot, join_via } => self.start(slot, join_via),
            Ev::JoinRetry { slot } => {
                let p = &self.peers[slot];
                let lonely = p.alive
                    && p.session
                        .as_ref()
                        .is_some_and(|s| s.linked().next().is_none());
                if lonely {
                    let live: Vec<usize> = (0..self.peers.len())
                        .filter(|&s| self.reachable(slot, s))
                        .collect();
                    if !live.is_empty() {
                        let via = live[self.rng.random_range(0..live.len())];
                        self.dial(slot, via);
                    }
                    self.at(t + SEC, Ev::JoinRetry { slot });
                }
            }
            Ev::Crash { slot } => {
                self.faults.push(t);
                self.crashes.push(t);
                let p = &mut self.peers[slot];
                p.alive = false;
                p.session = None;
                p.awaiting.clear();
                for (k, l) in self.links.iter_mut() {
                    if k.0 == slot || k.1 == slot {
                        l.up = false;
                        l.epoch += 1;
                    }
                }
            }
            Ev::Restart { slot, same_id } => {
                self.faults.push(t);
                let (old_id, off, drift) = {
                    let old = &self.peers[slot];
                    (old.info.peer_id, old.offset_ns, old.drift)
                };
                let id = if same_id { old_id } else { self.random_id() };
                let new = self.new_peer(id, off, drift);
                if let Some(side) = self.side.as_mut() {
                    let s = side.get(slot).copied().unwrap_or(true);
                    side.resize(new + 1, true);
                    side[new] = s;
                }
                let live: Vec<usize> = (0..self.peers.len())
                    .filter(|&s| s != new && self.peers[s].alive)
                    .collect();
                let via = (!live.is_empty()).then(|| live[self.rng.random_range(0..live.len())]);
                self.start(new, via);
            }
            Ev::Cut { a, b } => {
                self.faults.push(t);
                self.cut.insert(key(a, b));
            }
            Ev::Restore { a, b } => {
                self.faults.push(t);
                self.cut.remove(&key(a, b));
                self.heals.push(t);
            }
            Ev::Partition { side } => {
                self.faults.push(t);
                let mut side = side;
                side.resize(self.peers.len(), true);
                self.side = Some(side);
            }
            Ev::Heal => {
                self.faults.push(t);
                self.side = None;
                self.heals.push(t);
            }
            Ev::VoteTick => {
                self.vote_tick();
                self.at(t + ROUND_NS, Ev::VoteTick);
            }
            Ev::Sample => {
                self.sample();
                self.at(t + 50 * MS, Ev::Sample);
            }
        }
    }

    fn base_delay(&mut self) -> i64 {
        let asym = self.cfg.asymmetry_ns.max(0);
        self.cfg.delay_min_ns
            + if asym > 0 {
                self.rng.random_range(0..=asym)
            } else {
                0
            }
    }

    fn start(&mut self, slot: usize, join_via: Option<usize>) {
        let t = self.now;
        // Joining through a peer that died meanwhile: the user picks a live one.
        let join_via = join_via.map(|via| {
            if self.peers[via].alive {
                return via;
            }
            let live: Vec<usize> = (0..self.peers.len())
                .filter(|&s| s != slot && self.peers[s].alive)
                .collect();
            if live.is_empty() {
                via
            } else {
                live[self.rng.random_range(0..live.len())]
            }
        });
        let start = match join_via {
            None => Start::Create {
                state: SessionState::new(600 * SEC, 4),
            },
            Some(_) => Start::Join,
        };
        let p = &mut self.peers[slot];
        p.alive = true;
        p.started_at_ns = t;
        p.joined = join_via.is_none();
        let local = p.local_ns(t);
        p.session = Some(Session::new(
            self.cfg.session.clone(),
            p.info.clone(),
            local,
            start,
        ));
        if let Some(via) = join_via {
            self.dial(slot, via);
            self.at(t + SEC, Ev::JoinRetry { slot });
        }
        self.drain(slot);
    }

    /// The shell connects `a` to `b` (a TCP connect and hello: one round trip).
    fn dial(&mut self, a: usize, b: usize) {
        if !self.reachable(a, b) {
            return;
        }
        let k = key(a, b);
        let link = self.links.entry(k).or_default();
        if link.up || link.connecting {
            return;
        }
        link.connecting = true;
        let rtt = 2 * self.cfg.delay_min_ns + self.rng.random_range(0..=self.cfg.jitter_ns.max(0));
        self.at(self.now + rtt, Ev::Connect { a, b });
    }

    /// Moves a peer's outputs into the world and schedules its next wake-up.
    fn drain(&mut self, slot: usize) {
        let t = self.now;
        loop {
            let Some(s) = self.peers[slot].session.as_mut() else {
                return;
            };
            let Some(tx) = s.poll_transmit() else { break };
            self.transmit(slot, tx.to, tx.message);
        }
        loop {
            let Some(s) = self.peers[slot].session.as_mut() else {
                return;
            };
            let Some(ev) = s.poll_event() else { break };
            self.on_event(slot, ev);
        }
        let p = &mut self.peers[slot];
        let Some(s) = p.session.as_ref() else { return };
        if let Some(local) = s.poll_timeout() {
            p.generation += 1;
            let when = p.true_ns(local).max(t + 1);
            let generation = p.generation;
            self.at(when, Ev::Wake { slot, generation });
        }
    }

    fn transmit(&mut self, from: usize, to_id: PeerId, message: Message) {
        self.report.messages += 1;
        // Through the real wire format, both ways.
        self.frame.clear();
        let message = match wire::encode_frame(&message, &mut self.frame)
            .and_then(|()| wire::parse::<Message>(&self.frame))
        {
            Ok(m) => m,
            Err(e) => {
                self.violation(format!("wire refused {:?}: {e}", message.code()));
                return;
            }
        };
        let Some(to) = self.slot_of(to_id) else {
            return;
        };
        let k = key(from, to);
        if !self.reachable(from, to) {
            return;
        }
        let jitter = self.rng.random_range(0..=self.cfg.jitter_ns.max(0));
        let Some(link) = self.links.get_mut(&k) else {
            return;
        };
        if !link.up {
            return;
        }
        let dir = usize::from(from > to);
        let arrival = (self.now + link.base_ns[dir] + jitter).max(link.last_arrival_ns[dir]);
        link.last_arrival_ns[dir] = arrival;
        let epoch = link.epoch;
        self.at(
            arrival,
            Ev::Deliver {
                from,
                to,
                epoch,
                message: Box::new(message),
            },
        );
    }

    fn on_event(&mut self, slot: usize, ev: SessionEvent) {
        let t = self.now;
        match ev {
            SessionEvent::Dial(info) => {
                if let Some(b) = self.slot_of(info.peer_id) {
                    self.dial(slot, b);
                }
            }
            SessionEvent::Disconnect { peer } => {
                if let Some(b) = self.slot_of(peer) {
                    let k = key(slot, b);
                    if let Some(l) = self.links.get_mut(&k)
                        && l.up
                    {
                        l.up = false;
                        l.epoch += 1;
                        if self.reachable(slot, b) {
                            let me = self.peers[slot].info.peer_id;
                            let d = self.cfg.delay_min_ns;
                            self.at(t + d, Ev::LinkDown { at: b, peer: me });
                        }
                    }
                }
            }
            SessionEvent::Decided(d) => {
                self.report.decisions += 1;
                let p = &mut self.peers[slot];
                if let Some(prev) = p.last_decided_at_ns
                    && p.joined
                {
                    let gap = t - prev;
                    if gap > 500 * MS + ROUND_NS {
                        let name = p.info.name.clone();
                        self.violation(format!("{name} decided nothing for {} ms", gap / MS));
                    }
                    if self.crashes.iter().any(|&c| c <= t && t - c < 2 * SEC) {
                        self.report.crash_stall_ns_max =
                            self.report.crash_stall_ns_max.max(gap - ROUND_NS);
                    }
                }
                let p = &mut self.peers[slot];
                p.last_decided_at_ns = Some(t);
                for (vote, _) in verdicts_of(&d, p.info.peer_id) {
                    p.answered(vote.event);
                }
                if p.joined
                    && t - p.started_at_ns > SETTLED_NS
                    && let Some(map) = p.session.as_ref().and_then(|s| s.map())
                {
                    let t_apply = p.true_ns(map.local_ns_at(d.apply_at_session_ns));
                    self.applied.entry(d.round).or_default().push((
                        slot,
                        d.state.digest(),
                        t_apply,
                    ));
                }
            }
            SessionEvent::VoteDropped { event, .. } => self.peers[slot].answered(event),
            SessionEvent::Superseded { vote, .. } => self.peers[slot].answered(vote.event),
            SessionEvent::PeerUp(_)
            | SessionEvent::PeerDown { .. }
            | SessionEvent::Synced { .. }
            | SessionEvent::RootChanged { .. }
            | SessionEvent::Adopted { .. }
            | SessionEvent::Ignored { .. } => {}
        }
    }

    fn vote_tick(&mut self) {
        let t = self.now;
        for slot in 0..self.peers.len() {
            let p = &self.peers[slot];
            if !p.alive || !p.joined || !self.rng.random_bool(self.cfg.vote_probability) {
                continue;
            }
            let event = match self.rng.random_range(0..5) {
                0 => Event::Play,
                1 => Event::Pause,
                2 => Event::Seek {
                    position_ns: self.rng.random_range(0..600 * SEC),
                },
                3 => Event::Volume {
                    channel: self.random_channel(),
                    gain_db: self.rng.random_range(-40.0f32..6.0),
                },
                _ => Event::Mute {
                    channel: self.random_channel(),
                    muted: self.rng.random_bool(0.5),
                },
            };
            let p = &mut self.peers[slot];
            if let Some(s) = p.session.as_mut()
                && s.vote(event).is_ok()
            {
                p.awaiting.push((t, event));
                self.report.votes_cast += 1;
            }
        }
    }

    fn random_channel(&mut self) -> Channel {
        match self.rng.random_range(0..5u16) {
            4 => Channel::Master,
            i => Channel::Stem(i),
        }
    }

    /// Connected components of the live peers (reachability), as slot lists.
    fn components(&self) -> Vec<Vec<usize>> {
        let live: Vec<usize> = (0..self.peers.len())
            .filter(|&s| self.peers[s].alive)
            .collect();
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for &s in &live {
            if !seen.insert(s) {
                continue;
            }
            let mut comp = vec![s];
            let mut i = 0;
            while i < comp.len() {
                let x = comp[i];
                for &y in &live {
                    if !seen.contains(&y) && self.reachable(x, y) {
                        seen.insert(y);
                        comp.push(y);
                    }
                }
                i += 1;
            }
            comp.sort();
            out.push(comp);
        }
        out
    }

    fn calm(&self, within_ns: i64) -> bool {
        !self
            .faults
            .iter()
            .any(|&f| f <= self.now && self.now - f < within_ns)
    }

    /// Every 50 ms: clock errors, join and heal progress, divergence.
    fn sample(&mut self) {
        let t = self.now;
        let comps = self.components();
        let calm = self.calm(3 * SEC / 2);
        for comp in &comps {
            let Some(reference) = self.reference(comp) else {
                continue;
            };
            let ref_session = self.peers[reference].session_ns(t).expect("synced");
            for &s in comp {
                if s == reference {
                    continue;
                }
                let Some(sess) = self.peers[s].session_ns(t) else {
                    if self.trace && self.peers[s].alive {
                        let local = self.peers[s].local_ns(t);
                        let st: Vec<String> = self.peers[s]
                            .session
                            .as_mut()
                            .map(|x| x.peers(local))
                            .unwrap_or_default()
                            .iter()
                            .map(|p| {
                                format!(
                                    "{:x}:{:?}:{}",
                                    p.info.peer_id.0 >> 48,
                                    p.clock_samples,
                                    p.synced
                                )
                            })
                            .collect();
                        eprintln!(
                            "t={:.2} {} unsynced links {}",
                            t as f64 / 1e9,
                            self.peers[s].info.name,
                            st.join(" ")
                        );
                    }
                    continue;
                };
                let err = (sess - ref_session) as f64;
                if self.trace {
                    let local = self.peers[s].local_ns(t);
                    let root = self.peers[s].session.as_ref().and_then(|x| x.root());
                    let link_err: Vec<String> = self.peers[s]
                        .session
                        .as_mut()
                        .map(|x| x.peers(local))
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|st| {
                            let q = self.slot_of(st.info.peer_id)?;
                            let truth = (self.peers[q].local_ns(t) - local) as f64;
                            Some(format!(
                                "{}:{:?}/{}:{:.0}us/{:.0}ppm",
                                self.peers[q].info.name,
                                st.clock_samples,
                                st.clock_rejected,
                                (st.clock_offset_ns? - truth) / 1e3,
                                st.clock_rate_ppm?
                                    - (self.peers[q].drift - self.peers[s].drift) * 1e6
                            ))
                        })
                        .collect();
                    eprintln!("  links {}", link_err.join(" "));
                    eprintln!(
                        "t={:.2} {} joined={} ref={} root={:?} err_us={:.1}",
                        t as f64 / 1e9,
                        self.peers[s].info.name,
                        self.peers[s].joined,
                        self.peers[reference].info.name,
                        root.and_then(|r| self.slot_of(r))
                            .map(|x| self.peers[x].info.name.clone()),
                        err / 1e3
                    );
                }
                if self.peers[s].joined {
                    if calm && t - self.peers[s].started_at_ns > SETTLED_NS {
                        self.report.offset_err_ns.push(err.abs());
                    }
                } else if err.abs() < IN_STEP_NS as f64 && self.in_step(s, reference) {
                    let join = t - self.peers[s].started_at_ns;
                    self.peers[s].joined = true;
                    self.report.joins += 1;
                    self.report.join_ns_max = self.report.join_ns_max.max(join);
                    if join > SEC && self.calm_between(self.peers[s].started_at_ns, t) {
                        let name = self.peers[s].info.name.clone();
                        self.target_missed(format!("{name} took {} ms to join", join / MS));
                    }
                }
            }
        }
        // Joins that never complete.
        for s in 0..self.peers.len() {
            let p = &self.peers[s];
            if p.alive
                && !p.joined
                && t - p.started_at_ns > 3 * SEC
                && self.calm_between(p.started_at_ns, t)
                && t - p.started_at_ns < 3 * SEC + 50 * MS
            {
                let name = p.info.name.clone();
                self.violation(format!("{name} not in step 3 s after starting"));
            }
        }
        // Heals: converged when one component's joined peers agree and are in time.
        if let Some(&th) = self.heals.first() {
            if comps.len() == 1 && self.converged(&comps[0]) {
                let heal = t - th;
                self.heals.remove(0);
                self.report.heals += 1;
                self.report.heal_ns_max = self.report.heal_ns_max.max(heal);
                if heal > SEC {
                    self.target_missed(format!("converged {} ms after the heal", heal / MS));
                }
            } else if t - th > 3 * SEC || !self.calm_between(th + 1, t) {
                // Only a heal that left one component, with no fault since, must
                // converge (a cut link restored inside a partition heals nothing).
                if self.calm_between(th + 1, t) && comps.len() == 1 {
                    self.violation("did not converge within 3 s of the heal".into());
                }
                self.heals.remove(0);
            }
        }
        // Divergence in calm periods.
        if calm && comps.len() == 1 {
            self.check_divergence(&comps[0]);
        }
        self.settle_applied(calm && comps.len() == 1);
    }

    /// The component's time base: the root most of its joined peers follow (the
    /// lowest id among ties), if it is in the component and synced.
    fn reference(&self, comp: &[usize]) -> Option<usize> {
        let mut votes: BTreeMap<PeerId, usize> = BTreeMap::new();
        for &s in comp.iter().filter(|&&s| self.peers[s].joined) {
            if let Some(root) = self.peers[s].session.as_ref().and_then(|x| x.root()) {
                *votes.entry(root).or_default() += 1;
            }
        }
        let (&root, _) = votes.iter().max_by_key(|(id, n)| (**n, Reverse(**id)))?;
        let slot = self.slot_of(root)?;
        (comp.contains(&slot) && self.peers[slot].session_ns(self.now).is_some()).then_some(slot)
    }

    fn calm_between(&self, from: i64, to: i64) -> bool {
        !self.faults.iter().any(|&f| f > from && f <= to)
    }

    /// Whether `s` decided the same state as `reference` for a recent round.
    fn in_step(&self, s: usize, reference: usize) -> bool {
        let (Some(a), Some(b)) = (
            self.peers[s].session.as_ref(),
            self.peers[reference].session.as_ref(),
        ) else {
            return false;
        };
        let (Some((ra, _)), Some((rb, _))) = (a.latest(), b.latest()) else {
            return false;
        };
        let r = Round(ra.0.min(rb.0).saturating_sub(1));
        match (a.decided_state(r), b.decided_state(r)) {
            (Some(x), Some(y)) => x.digest() == y.digest(),
            _ => false,
        }
    }

    fn converged(&self, comp: &[usize]) -> bool {
        let t = self.now;
        let Some(reference) = self.reference(comp) else {
            return false;
        };
        let Some(ref_session) = self.peers[reference].session_ns(t) else {
            return false;
        };
        comp.iter().filter(|&&s| self.peers[s].joined).all(|&s| {
            self.in_step(s, reference)
                && self.peers[s]
                    .session_ns(t)
                    .is_some_and(|x| (x - ref_session).abs() < IN_STEP_NS)
        })
    }

    fn check_divergence(&mut self, comp: &[usize]) {
        let joined: Vec<usize> = comp
            .iter()
            .copied()
            .filter(|&s| self.peers[s].joined)
            .collect();
        let Some(r) = joined
            .iter()
            .filter_map(|&s| self.peers[s].session.as_ref()?.latest().map(|(r, _)| r))
            .min()
        else {
            return;
        };
        let r = Round(r.0.saturating_sub(1));
        if !self.checked_divergence.insert(r) {
            return;
        }
        let digests: BTreeSet<u64> = joined
            .iter()
            .filter_map(|&s| Some(self.peers[s].session.as_ref()?.decided_state(r)?.digest()))
            .collect();
        if digests.len() > 1 {
            self.violation(format!(
                "joined peers decided {} different states for round {}",
                digests.len(),
                r.0
            ));
        }
    }

    /// Apply skew of rounds old enough that every peer has decided them.
    fn settle_applied(&mut self, calm: bool) {
        let Some((&newest, _)) = self.applied.last_key_value() else {
            return;
        };
        let done: Vec<Round> = self
            .applied
            .range(..Round(newest.0.saturating_sub(3)))
            .map(|(r, _)| *r)
            .collect();
        for r in done {
            let Some(v) = self.applied.remove(&r) else {
                continue;
            };
            if !calm || v.len() < 2 {
                continue;
            }
            let lo = v.iter().map(|x| x.2).min().unwrap_or(0);
            let hi = v.iter().map(|x| x.2).max().unwrap_or(0);
            self.report.apply_skew_ns_max = self.report.apply_skew_ns_max.max(hi - lo);
        }
    }

    fn finish(&mut self) {
        let end = self.cfg.duration_ns;
        let mut lost = Vec::new();
        for p in &self.peers {
            if !p.alive {
                continue;
            }
            for (cast, e) in &p.awaiting {
                if end - cast > SEC {
                    lost.push(format!(
                        "{}'s {e:?} (cast at {} ms) got no verdict",
                        p.info.name,
                        cast / MS
                    ));
                }
            }
        }
        for l in lost {
            self.violation(l);
        }
    }
}
