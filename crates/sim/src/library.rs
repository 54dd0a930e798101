//! The library's replication in virtual time: many [`Replica`]s over a mesh
//! of links with delay, jitter and loss, a partition and its heal, a crash
//! and a restart from what the peer kept on disk, and users adding and
//! removing songs and stems at random everywhere — all from one seed.
//!
//! **Checked:** once the faults are over and the users stop, every peer's
//! library is the same, and it is the join of every change any user made
//! (so no change was lost, not even one made on a side of a partition or
//! by a peer just before it crashed). Every message crosses the real wire
//! encoding. Reported: how long after the last fault and change the peers
//! agreed, and what replication cost in messages and bytes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use synfony::library::{Library, Replica, ReplicaConfig};
use synfony::protocol::PeerId;
use synfony::protocol::library::SongId;
use synfony::protocol::message::{Message, Room};
use synfony::protocol::stem::StemInfo;
use synfony::wire;

const MS: i64 = 1_000_000;
const SEC: i64 = 1_000_000_000;
/// How often each peer's replica gets `handle_timeout` (the core's tick).
const TICK_NS: i64 = 100 * MS;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct LibrarySimConfig {
    pub seed: u64,
    pub peers: usize,
    /// Users change the library until `duration_ns - quiet_ns`; faults are
    /// over by then too.
    pub duration_ns: i64,
    pub quiet_ns: i64,
    pub delay_min_ns: i64,
    pub jitter_ns: i64,
    /// Chance that a message is lost (a link reset the shell did not see).
    pub loss: f64,
    /// Library changes per simulated second, over all peers.
    pub changes_per_sec: f64,
    pub faults: bool,
}

impl LibrarySimConfig {
    pub fn new(seed: u64, peers: usize) -> LibrarySimConfig {
        LibrarySimConfig {
            seed,
            peers: peers.max(2),
            duration_ns: 60 * SEC,
            quiet_ns: 20 * SEC,
            delay_min_ns: MS,
            jitter_ns: 40 * MS,
            loss: 0.05,
            changes_per_sec: 4.0,
            faults: true,
        }
    }
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct LibrarySimReport {
    pub seed: u64,
    pub violations: Vec<String>,
    /// From the last change or fault to every live peer holding the same
    /// library (`None`: never).
    pub converge_ns: Option<i64>,
    pub changes: u64,
    pub messages: u64,
    pub bytes: u64,
    /// Present songs and records (removed ones included) at the end.
    pub songs: usize,
    pub records: usize,
}

enum Ev {
    Deliver {
        from: usize,
        to: usize,
        epoch: u64,
        bytes: Vec<u8>,
    },
    Tick(usize),
    Change,
    Partition(Vec<bool>),
    Heal,
    Crash(usize),
    Restart(usize),
    Sample,
}

struct Node {
    replica: Option<Replica>,
    /// What it last wrote to disk (every change is written at once).
    disk: Library,
}

struct World {
    cfg: LibrarySimConfig,
    rng: ChaCha8Rng,
    now: i64,
    seq: u64,
    queue: BinaryHeap<Reverse<(i64, u64)>>,
    events: BTreeMap<u64, Ev>,
    nodes: Vec<Node>,
    /// Link (a < b) up, and its epoch (messages of an older epoch are lost
    /// with the connection).
    links: BTreeMap<(usize, usize), (bool, u64)>,
    /// The last delivery time per directed link (FIFO, like TCP).
    last_delivery: BTreeMap<(usize, usize), i64>,
    side: Option<Vec<bool>>,
    /// The join of every change any user made.
    truth: Library,
    last_disturbance: i64,
    report: LibrarySimReport,
}

const SONGS: [&str; 6] = [
    "Solar",
    "Nardis",
    "So What",
    "Blue in Green",
    "Freddie",
    "Autumn",
];

/// Runs one simulation.
pub fn run_library(cfg: &LibrarySimConfig) -> LibrarySimReport {
    let mut w = World {
        cfg: cfg.clone(),
        rng: ChaCha8Rng::seed_from_u64(cfg.seed),
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        events: BTreeMap::new(),
        nodes: Vec::new(),
        links: BTreeMap::new(),
        last_delivery: BTreeMap::new(),
        side: None,
        truth: Library::new(),
        last_disturbance: 0,
        report: LibrarySimReport {
            seed: cfg.seed,
            ..Default::default()
        },
    };
    for i in 0..cfg.peers {
        w.nodes.push(Node {
            replica: Some(Replica::new(Library::new(), ReplicaConfig::default())),
            disk: Library::new(),
        });
        let first = w.rng.random_range(0..TICK_NS);
        w.at(first, Ev::Tick(i));
    }
    for a in 0..cfg.peers {
        for b in a + 1..cfg.peers {
            w.links.insert((a, b), (false, 0));
            w.link_up(a, b);
        }
    }
    let active = cfg.duration_ns - cfg.quiet_ns;
    w.at(0, Ev::Change);
    if cfg.faults {
        let side: Vec<bool> = (0..cfg.peers).map(|i| i % 2 == 0).collect();
        let start = w.rng.random_range(active / 10..=active / 3);
        w.at(start, Ev::Partition(side));
        let heal = start + w.rng.random_range(active / 10..=active / 3);
        w.at(heal, Ev::Heal);
        let victim = w.rng.random_range(0..cfg.peers);
        let crash = w.rng.random_range(active / 2..active * 3 / 4);
        w.at(crash, Ev::Crash(victim));
        let restart = crash + w.rng.random_range(SEC..5 * SEC);
        w.at(restart, Ev::Restart(victim));
    }
    w.at(active, Ev::Sample);
    w.run();
    w.finish();
    w.report
}

impl World {
    fn at(&mut self, t: i64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn key(a: usize, b: usize) -> (usize, usize) {
        (a.min(b), a.max(b))
    }

    fn live(&self, i: usize) -> bool {
        self.nodes[i].replica.is_some()
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        self.live(a) && self.live(b) && self.side.as_ref().is_none_or(|s| s[a] == s[b])
    }

    fn link_up(&mut self, a: usize, b: usize) {
        let k = World::key(a, b);
        if !self.reachable(a, b) || self.links[&k].0 {
            return;
        }
        let epoch = self.links[&k].1 + 1;
        self.links.insert(k, (true, epoch));
        let now = self.now;
        for (x, y) in [(a, b), (b, a)] {
            if let Some(r) = self.nodes[x].replica.as_mut() {
                r.handle_link_up(now, PeerId(y as u64));
            }
        }
        self.flush(a);
        self.flush(b);
    }

    fn link_down(&mut self, a: usize, b: usize) {
        let k = World::key(a, b);
        if !self.links[&k].0 {
            return;
        }
        self.links.get_mut(&k).unwrap().0 = false;
        for (x, y) in [(a, b), (b, a)] {
            if let Some(r) = self.nodes[x].replica.as_mut() {
                r.handle_link_down(PeerId(y as u64));
            }
        }
    }

    /// Sends what node `i` queued, through the wire encoding.
    fn flush(&mut self, i: usize) {
        while let Some((to, op)) = self.nodes[i]
            .replica
            .as_mut()
            .and_then(|r| r.poll_transmit())
        {
            let to = to.0 as usize;
            let message = Message::Room(Room { request_id: 0, op });
            let bytes = match wire::encode_to_vec(&message) {
                Ok(b) => b,
                Err(e) => {
                    self.report
                        .violations
                        .push(format!("the wire refused a library message: {e}"));
                    continue;
                }
            };
            self.report.messages += 1;
            self.report.bytes += bytes.len() as u64;
            let k = World::key(i, to);
            let (up, epoch) = self.links[&k];
            if !up || self.rng.random_bool(self.cfg.loss) {
                continue;
            }
            let delay = self.cfg.delay_min_ns + self.rng.random_range(0..=self.cfg.jitter_ns);
            let last = self.last_delivery.get(&(i, to)).copied().unwrap_or(0);
            let t = (self.now + delay).max(last);
            self.last_delivery.insert((i, to), t);
            self.at(
                t,
                Ev::Deliver {
                    from: i,
                    to,
                    epoch,
                    bytes,
                },
            );
        }
        // Every change is written to disk at once.
        if let Some(r) = &self.nodes[i].replica {
            self.nodes[i].disk = r.library().clone();
        }
    }

    fn run(&mut self) {
        while let Some(Reverse((t, seq))) = self.queue.pop() {
            if t > self.cfg.duration_ns {
                break;
            }
            self.now = t;
            let Some(ev) = self.events.remove(&seq) else {
                continue;
            };
            self.step(ev);
        }
    }

    fn step(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Deliver {
                from,
                to,
                epoch,
                bytes,
            } => {
                let (up, current) = self.links[&World::key(from, to)];
                if !up || current != epoch {
                    return;
                }
                let op = match wire::decode_exact::<Message>(&bytes, "message") {
                    Ok(Message::Room(Room { op, .. })) => op,
                    other => {
                        self.report
                            .violations
                            .push(format!("undecodable library message: {other:?}"));
                        return;
                    }
                };
                if let Some(r) = self.nodes[to].replica.as_mut() {
                    r.handle_message(now, PeerId(from as u64), op);
                    while r.poll_event().is_some() {}
                }
                self.flush(to);
            }
            Ev::Tick(i) => {
                if let Some(r) = self.nodes[i].replica.as_mut() {
                    r.handle_timeout(now);
                }
                self.flush(i);
                self.at(now + TICK_NS, Ev::Tick(i));
            }
            Ev::Change => {
                if now >= self.cfg.duration_ns - self.cfg.quiet_ns {
                    return;
                }
                self.change();
                let gap = (SEC as f64 / self.cfg.changes_per_sec) as i64;
                let next = now + self.rng.random_range(1..=2 * gap);
                self.at(next, Ev::Change);
            }
            Ev::Partition(side) => {
                self.last_disturbance = now;
                self.side = Some(side);
                self.cut_unreachable();
            }
            Ev::Heal => {
                self.last_disturbance = now;
                self.side = None;
                self.connect_all();
            }
            Ev::Crash(i) => {
                self.last_disturbance = now;
                let n = self.cfg.peers;
                for j in (0..n).filter(|&j| j != i) {
                    self.link_down(i, j);
                }
                self.nodes[i].replica = None;
            }
            Ev::Restart(i) => {
                self.last_disturbance = now;
                let mut r = Replica::new(Library::new(), ReplicaConfig::default());
                r.load(&self.nodes[i].disk.clone());
                while r.poll_event().is_some() {}
                self.nodes[i].replica = Some(r);
                self.connect_all();
            }
            Ev::Sample => {
                // The users stopped: from the last disturbance on, find when
                // every live peer agreed.
                self.at(now + 50 * MS, Ev::Sample);
                if self.report.converge_ns.is_none() && self.agree() {
                    let since = self
                        .last_disturbance
                        .max(self.cfg.duration_ns - self.cfg.quiet_ns);
                    self.report.converge_ns = Some(now - since);
                }
            }
        }
    }

    fn cut_unreachable(&mut self) {
        let n = self.cfg.peers;
        for a in 0..n {
            for b in a + 1..n {
                if !self.reachable(a, b) {
                    self.link_down(a, b);
                }
            }
        }
    }

    fn connect_all(&mut self) {
        let n = self.cfg.peers;
        for a in 0..n {
            for b in a + 1..n {
                self.link_up(a, b);
            }
        }
    }

    /// One user's change on a random live peer.
    fn change(&mut self) {
        let live: Vec<usize> = (0..self.cfg.peers).filter(|&i| self.live(i)).collect();
        if live.is_empty() {
            return;
        }
        let i = live[self.rng.random_range(0..live.len())];
        let song = SONGS[self.rng.random_range(0..SONGS.len())];
        let kind = self.rng.random_range(0..10);
        let stems: Vec<StemInfo> = (0..self.rng.random_range(0..3))
            .map(|_| {
                let h: u8 = self.rng.random_range(0..12);
                StemInfo::of_bytes(&format!("stem {h}"), "wav", &[h; 4], 48_000)
            })
            .collect();
        let Some(r) = self.nodes[i].replica.as_mut() else {
            return;
        };
        let id = SongId::of_name(song);
        let done = match kind {
            0..6 => r.add(song, &stems).is_ok(),
            6..8 => r.remove(id, None).is_ok(),
            _ => match r
                .library()
                .song(id)
                .and_then(|s| s.stems.first().map(|s| s.hash))
            {
                Some(h) => r.remove(id, Some(h)).is_ok(),
                None => false,
            },
        };
        while r.poll_event().is_some() {}
        if done {
            self.report.changes += 1;
            let lib = r.library().clone();
            self.truth.merge(&lib);
        }
        self.flush(i);
    }

    fn agree(&self) -> bool {
        let mut libs = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .map(|r| r.library());
        let Some(first) = libs.next() else {
            return true;
        };
        libs.all(|l| l == first)
    }

    fn finish(&mut self) {
        let libs: Vec<&Library> = (self.nodes.iter())
            .filter_map(|n| n.replica.as_ref())
            .map(|r| r.library())
            .collect();
        for (i, l) in libs.iter().enumerate() {
            if **l != self.truth {
                self.report.violations.push(format!(
                    "seed {}: peer {i} ends with a library ({} records) other than the join of every change made ({} records)",
                    self.cfg.seed,
                    l.len(),
                    self.truth.len()
                ));
            }
        }
        if self.report.converge_ns.is_none() {
            self.report
                .violations
                .push(format!("seed {}: the peers never agreed", self.cfg.seed));
        }
        self.report.songs = self.truth.songs().len();
        self.report.records = self.truth.len();
    }
}
