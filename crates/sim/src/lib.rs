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
//! - *wire*: the core produced a message the wire format refuses;
//! - with `adversary`: an honest peer's outputs for one hostile input or what
//!   it holds grew past a bound, or the honest peers were not in step
//!   [`CONVERGE_NS`] after the adversary left (see `adversary.rs`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr};

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use synfony::protocol::library::SongId;
use synfony::protocol::message::{Message, PeerInfo};
use synfony::protocol::session::verdicts_of;
use synfony::protocol::{
    Channel, Config, Event, PeerId, ROUND_NS, Round, Session, SessionEvent, SessionState, Signer,
    SongRef, Start,
};
use synfony::wire;

mod adversary;
mod checks;
pub mod library;
mod world;

pub use adversary::{CONVERGE_NS, MAX_OUTPUTS_PER_INPUT};
pub use library::{LibrarySimConfig, LibrarySimReport, run_library};

const MS: i64 = 1_000_000;
const SEC: i64 = 1_000_000_000;
/// "In step" for joins and heals: the same decisions, and session time within
/// this of the reference (the audio engine absorbs smaller errors by resampling).
pub const IN_STEP_NS: i64 = 2 * MS;
/// Clock errors and apply skew are measured on peers this long after they start
/// (the estimators need samples; see NOTEBOOK.md).
pub const SETTLED_NS: i64 = 5 * SEC;

/// The songs the simulated peers load and queue: short, so that they end
/// and follow each other during a run (the first is the session's at start,
/// the next two its set list).
const SIM_SONGS: [SongRef; 4] = [
    sim_song(1, 4, 3),
    sim_song(2, 2, 4),
    sim_song(3, 3, 2),
    sim_song(4, 5, 6),
];

const fn sim_song(id: u8, channels: u16, secs: i64) -> SongRef {
    SongRef {
        song: SongId([id; 16]),
        version: [id; 16],
        channels,
        duration_ns: secs * SEC,
    }
}

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
    /// A hostile member joins after the others and leaves halfway (see
    /// `adversary.rs`); the scripted faults are off, so what breaks is its doing.
    pub adversary: bool,
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
            adversary: false,
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
    /// Decisions (summed over peers) whose song differs from the peer's
    /// previous decision's: loads, next, prev and song ends.
    pub song_changes: u64,
    /// With an adversary: from its leaving to the honest peers in step again.
    pub recover_ns_max: i64,
    /// With an adversary: the messages it sent.
    pub hostile_messages: u64,
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
    /// A delay spike: the link's messages take `extra_ns` more, both ways
    /// (a congested path), until `SpikeEnd`.
    Spike {
        a: usize,
        b: usize,
        extra_ns: i64,
    },
    SpikeEnd {
        a: usize,
        b: usize,
    },
    Partition {
        side: Vec<bool>,
    },
    Heal,
    VoteTick,
    Sample,
    AdversaryArrive,
    AdversaryTick,
    AdversaryLeave,
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
    /// Its identity (`info.peer_id` is its id).
    signer: Signer,
    offset_ns: i64,
    drift: f64,
    session: Option<Session>,
    alive: bool,
    generation: u64,
    started_at_ns: i64,
    /// Joined: in step with the others (the creator from the start).
    joined: bool,
    /// When it last decided (our time), and that decision's apply instant.
    last_decided_at_ns: Option<(i64, i64)>,
    /// The song of the last decision (to count song changes).
    last_song: Option<SongRef>,
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
    /// Links under a delay spike, and its extra delay.
    spikes: BTreeMap<(usize, usize), i64>,
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
    adversary: Option<adversary::Adversary>,
    adversary_left_at: Option<i64>,
    adversary_recovered: bool,
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
            spikes: BTreeMap::new(),
            side: None,
            faults: Vec::new(),
            crashes: Vec::new(),
            heals: Vec::new(),
            applied: BTreeMap::new(),
            checked_divergence: BTreeSet::new(),
            report,
            frame: Vec::with_capacity(4096),
            trace: std::env::var_os("SYNFONY_SIM_TRACE").is_some(),
            adversary: None,
            adversary_left_at: None,
            adversary_recovered: false,
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

    fn new_peer(&mut self, signer: Signer, offset_ns: i64, drift: f64) -> usize {
        let slot = self.peers.len();
        let addr = SocketAddr::from((Ipv4Addr::new(10, 0, (slot >> 8) as u8, slot as u8), 7000));
        self.peers.push(Peer {
            info: PeerInfo {
                peer_id: signer.peer_id(),
                name: format!("p{slot}"),
                addr,
            },
            signer,
            offset_ns,
            drift,
            session: None,
            alive: false,
            generation: 0,
            started_at_ns: 0,
            joined: false,
            last_decided_at_ns: None,
            last_song: None,
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

    /// A new identity, from the seeded generator (so a run is repeatable).
    fn random_signer(&mut self) -> Signer {
        Signer::from_seed(self.rng.random())
    }
}
