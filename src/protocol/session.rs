//! One peer's side of the session protocol, as a sans-IO state machine.
//!
//! [`Session`] owns everything a peer knows about the session: its links and
//! their clock estimates, the membership, its session map, the votes of the open
//! rounds and the history of decided ones. It never touches a socket or a clock.
//!
//! # Calling contract
//!
//! The shell (the tokio runtime, or the simulator) owns the sockets and the
//! monotonic clock, and passes the local time `now_ns` to every call:
//!
//! - [`Session::handle_link_up`] once a link to a peer is authenticated (its
//!   `Hello` told us who it is), [`Session::handle_link_down`] when it closes;
//! - [`Session::handle_message`] for every message received on a link;
//! - [`Session::handle_timeout`] when the instant given by
//!   [`Session::poll_timeout`] has come (calling it early is harmless);
//! - [`Session::vote`] when the local user acts, [`Session::leave`] to quit.
//!
//! After any of these, drain [`Session::poll_transmit`] (messages to send, in
//! order, per link) and [`Session::poll_event`] (links to open or close, and what
//! happened: decisions to play, adopted states, votes superseded, bad input
//! ignored), then sleep until [`Session::poll_timeout`].
//!
//! # Rounds and agreement
//!
//! Round `r` spans session time `[r·100 ms, (r+1)·100 ms)`. At its start every
//! synced peer sends its heartbeat `r` with its vote, and the votes of round `r−1`
//! it holds (relayed). A peer decides round `r` at `apply_at(r) − guard` from every
//! vote it then holds for `r`, with [`super::choose`], and the decision applies at
//! `apply_at(r) = (r+1)·100 ms + lead`. Nobody waits for anybody: a dead peer's
//! vote is simply absent. Under bounded delay (one-way delay plus clock error
//! below `lead − guard`) every peer decides from the same set, so all apply the
//! same state at the same session time.
//!
//! Beyond that bound (a partition, a lost link, a long delay) states can diverge.
//! Heartbeats carry each peer's latest decision digest; on a mismatch the peer
//! whose state ranks higher (the later `changed_round`, then the lower digest)
//! sends a [`Snapshot`], and the other adopts it, re-decides its later rounds, and
//! reports its own votes that the adopted state superseded. Availability and
//! partition tolerance over consistency: both sides of a partition play on, and
//! converge deterministically when it heals.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::protocol::message::{
    ClockEcho, ClockPing, ClockPong, ClockStamps, DecidedDigest, Goodbye, Heartbeat,
    MAX_PENDING_VOTES, MAX_RELAYED_VOTES, Message, PeerInfo, PeerList, Snapshot,
};

use super::choice::{Decision, Verdict, choose};
use super::clock::{ClockEstimate, LinkClock};
use super::state::{Event, PeerId, ROUND_NS, Round, SessionState, Vote};
use super::time::{SessionMap, Steer, SteerConfig, SteerState, root_target, steer};

/// Tunables of the protocol. The defaults suit the simulator's 20–60 ms links.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// A round's decision applies this long after the round ends. It must exceed
    /// the worst one-way delay plus `decide_guard_ns` (relayed votes are sent when
    /// the round ends and must arrive before the decision): pick the p99.9 one-way
    /// delay + guard + a margin for clock error. Every peer must use the same.
    pub lead_ns: i64,
    /// A round is decided this long before it applies, so the audio engine has
    /// the decision before it renders that instant: it must exceed the output's
    /// render-ahead (the null device's default 50 ms block plus its 10 ms lead;
    /// a sound card's buffer). `lead − guard` must still exceed the worst
    /// one-way delay: 80 ms by default, for links up to 60 ms.
    pub decide_guard_ns: i64,
    /// Votes for rounds more than this far ahead of ours are ignored.
    pub vote_horizon_rounds: u64,
    /// Decided rounds kept (for repair after a partition and for telemetry).
    pub history_rounds: usize,
    /// A link silent this long is declared dead.
    pub dead_after_ns: i64,
    /// How often to redial a member we lost.
    pub redial_interval_ns: i64,
    /// A member unreachable this long is forgotten.
    pub forget_after_ns: i64,
    /// Clock pings to the root and its heir, besides heartbeats.
    pub ping_interval_ns: i64,
    /// Pings sent in a burst when a link comes up, and their spacing.
    pub burst_pings: u32,
    pub burst_interval_ns: i64,
    /// Samples per direction the first sync waits for.
    pub sync_min_samples: usize,
    /// Clock samples kept per link and direction.
    pub clock_window_samples: usize,
    pub steer: SteerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lead_ns: 150_000_000,
            decide_guard_ns: 70_000_000,
            vote_horizon_rounds: 5,
            history_rounds: 600,
            dead_after_ns: 500_000_000,
            redial_interval_ns: 250_000_000,
            forget_after_ns: 60_000_000_000,
            ping_interval_ns: 25_000_000,
            burst_pings: 40,
            burst_interval_ns: 5_000_000,
            sync_min_samples: 20,
            clock_window_samples: 2400,
            steer: SteerConfig::default(),
        }
    }
}

impl Config {
    /// The session time at which round `r`'s decision takes effect.
    pub fn apply_at_session_ns(&self, r: Round) -> i64 {
        ((r.0 as i64).saturating_add(1))
            .saturating_mul(ROUND_NS)
            .saturating_add(self.lead_ns)
    }

    /// The session time at which round `r` is decided.
    pub fn decide_at_session_ns(&self, r: Round) -> i64 {
        self.apply_at_session_ns(r) - self.decide_guard_ns
    }
}

/// How this peer enters the session.
#[derive(Clone, Debug, PartialEq)]
pub enum Start {
    /// A new session, with this peer's clock as its time base.
    Create { state: SessionState },
    /// Join an existing session: the shell dials a member; time and state come
    /// from the links.
    Join,
}

/// A message for the shell to send on the link to `to`.
#[derive(Clone, Debug, PartialEq)]
pub struct Transmit {
    pub to: PeerId,
    pub message: Message,
}

/// What the core tells its shell and its application.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionEvent {
    /// Open a link to this member (the shell ignores it if one is up or opening).
    Dial(PeerInfo),
    /// Close the link to this peer (it went silent).
    Disconnect {
        peer: PeerId,
    },
    PeerUp(PeerInfo),
    PeerDown {
        peer: PeerId,
        reason: DownReason,
    },
    /// Session time is established (the first sync), following `root`.
    Synced {
        root: PeerId,
    },
    /// The peer whose time everybody follows changed.
    RootChanged {
        root: PeerId,
    },
    /// A round was decided: play `decision.state` from
    /// `decision.apply_at_session_ns`. Carries every vote and its verdict.
    Decided(Decision),
    /// A repair replaced our state: play `state` from `apply_at_session_ns`
    /// (or at once, if that is past).
    Adopted {
        round: Round,
        apply_at_session_ns: i64,
        state: SessionState,
        from: PeerId,
    },
    /// One of our votes was applied here, but the state it changed lost to
    /// `by`'s after a divergence: its effect is gone.
    Superseded {
        vote: Vote,
        by: PeerId,
    },
    /// A queued user action was not cast.
    VoteDropped {
        event: Event,
        reason: DropReason,
    },
    /// Input that was ignored (a bad or unexpected message).
    Ignored {
        from: PeerId,
        reason: Ignored,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// It said goodbye.
    Left,
    /// It missed heartbeats for `dead_after_ns`.
    Silent,
    /// The shell reported the link closed.
    LinkClosed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A newer action of the same kind replaced it before its round came.
    Replaced,
    /// Too many actions were waiting.
    QueueFull,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// A message from a peer with no link.
    UnknownPeer,
    /// A message kind the session core does not handle (the shell's business).
    NotForSession,
    /// A vote for a round outside the open window (far past or future).
    VoteOutOfWindow { round: Round },
    /// A vote that arrived after its round was decided here.
    LateVote { round: Round },
    /// Too many votes for one round.
    TooManyVotes { round: Round },
    /// A clock sample implying an impossible delay.
    AbsurdTimestamp,
    /// A snapshot that is malformed (changed after its own round) or useless.
    BadSnapshot { round: Round },
}

/// Why a user action was refused outright.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VoteError {
    #[error("a gain must be a number below +inf (got NaN or +inf)")]
    InvalidGain,
    #[error("\"no event\" is not an action")]
    Nothing,
}

/// What the core knows of one linked peer, for the UI and status events.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerStatus {
    pub info: PeerInfo,
    /// Round-trip time of the last clock exchange.
    pub rtt_ns: Option<i64>,
    /// Its clock minus ours, now.
    pub clock_offset_ns: Option<f64>,
    /// How much faster its clock runs than ours, in ppm.
    pub clock_rate_ppm: Option<f64>,
    /// Since its last message.
    pub heard_ago_ns: i64,
    /// Whether it has session time yet.
    pub synced: bool,
    pub is_root: bool,
    /// Its latest decision, as it announced it.
    pub decided: Option<DecidedDigest>,
    /// Clock samples held (outbound, inbound) and refused as absurd.
    pub clock_samples: (usize, usize),
    pub clock_rejected: u64,
}

/// Votes allowed for one round (every peer's own plus relays, with margin).
const MAX_VOTES_PER_ROUND: usize = 4 * MAX_RELAYED_VOTES;
/// User actions waiting for a round.
const MAX_QUEUED_ACTIONS: usize = 16;

#[derive(Clone, Debug)]
struct Link {
    info: PeerInfo,
    clock: LinkClock,
    last_heard_ns: i64,
    /// Its last heartbeat (sent, received here), echoed in ours.
    echo: Option<ClockEcho>,
    /// Newest `origin_ns` of ours it echoed; older echoes are duplicates.
    last_echo_origin_ns: Option<i64>,
    /// Its announced map, and the `sent_ns` of the heartbeat that carried it.
    map: Option<(SessionMap, i64)>,
    /// When it first synced (session time): seniority picks the root.
    synced_at_session_ns: i64,
    decided: Option<DecidedDigest>,
    next_ping_ns: i64,
    burst_left: u32,
    ping_seq: u32,
}

#[derive(Clone, Debug)]
struct Member {
    info: PeerInfo,
    next_dial_ns: i64,
    lost_since_ns: i64,
    /// The clock samples of the link we lost: a monotonic clock belongs to the
    /// machine, so they stay valid when the link (or the peer) comes back.
    clock: Option<LinkClock>,
}

#[derive(Clone, Debug)]
struct Entry {
    state: SessionState,
    votes: Vec<Vote>,
}

/// One peer's session protocol state machine. See the module docs for the
/// calling contract.
#[derive(Debug)]
pub struct Session {
    cfg: Config,
    me: PeerInfo,
    /// Our local→session map; `None` until synced.
    map: Option<SessionMap>,
    root: Option<PeerId>,
    /// The steering loop's memory, and the root it was steering to.
    steering: SteerState,
    steered_to: Option<PeerId>,
    /// The session time at which we first synced (0 if we created the session).
    synced_at_session_ns: Option<i64>,
    links: BTreeMap<PeerId, Link>,
    /// Members we are not linked to (lost or not yet dialled).
    members: BTreeMap<PeerId, Member>,
    /// Decided rounds, contiguous, newest last.
    decided: BTreeMap<Round, Entry>,
    /// Votes held for undecided rounds.
    pending: BTreeMap<Round, Vec<Vote>>,
    last_beat_round: Option<Round>,
    next_unsynced_beat_ns: i64,
    queued: VecDeque<Event>,
    /// The latest round each peer was seen to agree with us on.
    agreed_with: BTreeMap<PeerId, Round>,
    /// The latest round we sent each peer a repair snapshot for.
    repaired: BTreeMap<PeerId, Round>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SessionEvent>,
    stats: SessionStats,
}

/// Counters of the protocol's health, for telemetry and the sync bench.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Synced heartbeats that arrived while their round was still open here.
    pub heartbeats_on_time: u64,
    /// Synced heartbeats that arrived after this peer had decided their round:
    /// a vote they carried could not count here.
    pub heartbeats_late: u64,
}

impl Session {
    pub fn new(cfg: Config, me: PeerInfo, now_ns: i64, start: Start) -> Session {
        let mut s = Session {
            cfg,
            me,
            map: None,
            root: None,
            steering: SteerState::default(),
            steered_to: None,
            synced_at_session_ns: None,
            links: BTreeMap::new(),
            members: BTreeMap::new(),
            decided: BTreeMap::new(),
            pending: BTreeMap::new(),
            last_beat_round: None,
            next_unsynced_beat_ns: now_ns,
            queued: VecDeque::new(),
            agreed_with: BTreeMap::new(),
            repaired: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: SessionStats::default(),
        };
        if let Start::Create { state } = start {
            let map = SessionMap::starting_at(now_ns);
            // Round 0 starts now; the state is "decided" as of the round before.
            s.decided.insert(
                Round(0),
                Entry {
                    state,
                    votes: vec![],
                },
            );
            s.map = Some(map);
            s.root = Some(s.me.peer_id);
            s.synced_at_session_ns = Some(0);
        }
        s
    }

    pub fn id(&self) -> PeerId {
        self.me.peer_id
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    // ----- inputs -----------------------------------------------------------

    /// A link to `info.peer_id` is up (authenticated). If one already existed
    /// (the shell swapped connections: a simultaneous dial, a redial), it goes
    /// on with what it knew — clock samples, map, seniority — and no second
    /// `PeerUp` is reported.
    pub fn handle_link_up(&mut self, now_ns: i64, info: PeerInfo) {
        let peer = info.peer_id;
        if peer == self.me.peer_id {
            return;
        }
        if let Some(link) = self.links.get_mut(&peer) {
            link.info = info;
            link.last_heard_ns = now_ns;
            return;
        }
        let clock = self
            .members
            .remove(&peer)
            .and_then(|m| m.clock)
            .unwrap_or_else(|| LinkClock::with_window(self.cfg.clock_window_samples));
        self.links.insert(
            peer,
            Link {
                info: info.clone(),
                clock,
                last_heard_ns: now_ns,
                echo: None,
                last_echo_origin_ns: None,
                map: None,
                synced_at_session_ns: i64::MAX,
                decided: None,
                next_ping_ns: now_ns,
                burst_left: self.cfg.burst_pings,
                ping_seq: 0,
            },
        );
        self.repaired.remove(&peer);
        let peers: Vec<PeerInfo> = self
            .links
            .values()
            .filter(|l| l.info.peer_id != peer)
            .map(|l| l.info.clone())
            .take(crate::protocol::message::MAX_PEERS)
            .collect();
        self.send(peer, Message::PeerList(PeerList { peers }));
        if let Some(snapshot) = self.snapshot_after(None) {
            self.send(peer, Message::Snapshot(snapshot));
        }
        self.events.push_back(SessionEvent::PeerUp(info));
    }

    /// The link to `peer` closed.
    pub fn handle_link_down(&mut self, now_ns: i64, peer: PeerId) {
        if self.drop_link(now_ns, peer) {
            self.events.push_back(SessionEvent::PeerDown {
                peer,
                reason: DownReason::LinkClosed,
            });
        }
    }

    /// A message from `from` arrived at local time `now_ns`.
    pub fn handle_message(&mut self, now_ns: i64, from: PeerId, message: Message) {
        match self.links.get_mut(&from) {
            Some(link) => link.last_heard_ns = now_ns,
            None => {
                self.ignore(from, Ignored::UnknownPeer);
                return;
            }
        }
        match message {
            Message::Heartbeat(hb) => self.on_heartbeat(now_ns, from, hb),
            Message::ClockPing(ping) => {
                self.send(
                    from,
                    Message::ClockPong(ClockPong {
                        seq: ping.seq,
                        origin_ns: ping.origin_ns,
                        received_ns: now_ns,
                        sent_ns: now_ns,
                    }),
                );
            }
            Message::ClockPong(pong) => {
                let absurd = self.links.get_mut(&from).is_some_and(|link| {
                    link.clock
                        .add_exchange(pong.origin_ns, pong.received_ns, pong.sent_ns, now_ns)
                        .is_err()
                });
                if absurd {
                    self.ignore(from, Ignored::AbsurdTimestamp);
                }
                if self.map.is_none() {
                    self.try_first_sync(now_ns);
                }
            }
            Message::PeerList(list) => {
                for info in list.peers {
                    let id = info.peer_id;
                    if id != self.me.peer_id && !self.links.contains_key(&id) {
                        self.members.entry(id).or_insert(Member {
                            info,
                            next_dial_ns: now_ns,
                            lost_since_ns: now_ns,
                            clock: None,
                        });
                    }
                }
                self.redial(now_ns);
            }
            Message::Snapshot(snap) => self.on_snapshot(from, snap),
            Message::Goodbye(_) => {
                self.links.remove(&from);
                self.members.remove(&from);
                self.events.push_back(SessionEvent::PeerDown {
                    peer: from,
                    reason: DownReason::Left,
                });
                self.choose_root();
            }
            Message::Hello(_) | Message::Auth(_) | Message::Room(_) => {
                self.ignore(from, Ignored::NotForSession)
            }
        }
    }

    /// Timers: heartbeats, decisions, pings, failure detection, redials.
    pub fn handle_timeout(&mut self, now_ns: i64) {
        self.detect_silence(now_ns);
        self.redial(now_ns);
        self.forget_lost(now_ns);
        if self.map.is_none() {
            self.try_first_sync(now_ns);
        }
        self.send_pings(now_ns);
        self.beat(now_ns);
        self.decide_due(now_ns);
    }

    /// The local user's action: cast in the next round's heartbeat. A queued
    /// action of the same kind (a seek while a seek waits, a gain change for the
    /// same channel) replaces it.
    pub fn vote(&mut self, event: Event) -> Result<(), VoteError> {
        match event {
            Event::None => return Err(VoteError::Nothing),
            Event::Volume { gain_db, .. } if gain_db.is_nan() || gain_db == f32::INFINITY => {
                return Err(VoteError::InvalidGain);
            }
            _ => {}
        }
        let kind = action_kind(&event);
        if let Some(i) = self.queued.iter().position(|e| action_kind(e) == kind) {
            let old = std::mem::replace(&mut self.queued[i], event);
            self.events.push_back(SessionEvent::VoteDropped {
                event: old,
                reason: DropReason::Replaced,
            });
        } else if self.queued.len() >= MAX_QUEUED_ACTIONS {
            if let Some(old) = self.queued.pop_front() {
                self.events.push_back(SessionEvent::VoteDropped {
                    event: old,
                    reason: DropReason::QueueFull,
                });
            }
            self.queued.push_back(event);
        } else {
            self.queued.push_back(event);
        }
        Ok(())
    }

    /// Says goodbye to every linked peer.
    pub fn leave(&mut self, reason: &str) {
        let peers: Vec<PeerId> = self.links.keys().copied().collect();
        for peer in peers {
            self.send(
                peer,
                Message::Goodbye(Goodbye {
                    reason: reason.chars().take(64).collect(),
                }),
            );
        }
        self.links.clear();
        self.members.clear();
    }

    // ----- outputs ----------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// The next local instant `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<i64> {
        let mut next: Option<i64> = None;
        let mut at = |t: i64| next = Some(next.map_or(t, |n| n.min(t)));
        match self.map {
            Some(map) => {
                let beat = self.last_beat_round.map_or(0, |r| r.0 + 1);
                at(map.local_ns_at((beat as i64).saturating_mul(ROUND_NS)));
                if let Some((&last, _)) = self.decided.last_key_value() {
                    at(map.local_ns_at(self.cfg.decide_at_session_ns(Round(last.0 + 1))));
                }
            }
            None => at(self.next_unsynced_beat_ns),
        }
        let targets = self.clock_targets();
        for (id, link) in &self.links {
            if link.burst_left > 0 || targets.contains(id) {
                at(link.next_ping_ns);
            }
            at(link.last_heard_ns.saturating_add(self.cfg.dead_after_ns));
        }
        for m in self.members.values() {
            at(m.next_dial_ns);
        }
        next
    }

    // ----- queries ----------------------------------------------------------

    /// Our session map, once synced.
    pub fn map(&self) -> Option<SessionMap> {
        self.map
    }

    /// Session time at local time `now_ns`, once synced.
    pub fn session_ns_at(&self, now_ns: i64) -> Option<i64> {
        self.map.map(|m| m.session_ns_at(now_ns))
    }

    /// The protocol's health counters so far.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The peer whose time base we follow (ourselves if root).
    pub fn root(&self) -> Option<PeerId> {
        self.root
    }

    /// The latest decided round and its state.
    pub fn latest(&self) -> Option<(Round, &SessionState)> {
        self.decided.last_key_value().map(|(r, e)| (*r, &e.state))
    }

    /// The state decided for round `r`, if still in the history.
    pub fn decided_state(&self, r: Round) -> Option<&SessionState> {
        self.decided.get(&r).map(|e| &e.state)
    }

    /// Peers we have a link to.
    pub fn linked(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.links.keys().copied()
    }

    /// User actions waiting for a round.
    pub fn queued(&self) -> impl Iterator<Item = &Event> {
        self.queued.iter()
    }

    /// Telemetry for every linked peer, in id order.
    pub fn peers(&mut self, now_ns: i64) -> Vec<PeerStatus> {
        let root = self.root;
        self.links
            .values_mut()
            .map(|l| {
                let est = l.clock.estimate();
                PeerStatus {
                    info: l.info.clone(),
                    rtt_ns: l.clock.rtt_ns(),
                    clock_offset_ns: est.map(|e| e.offset_ns_at(now_ns)),
                    clock_rate_ppm: est.map(|e| e.rate * 1e6),
                    heard_ago_ns: now_ns.saturating_sub(l.last_heard_ns),
                    synced: l.map.is_some(),
                    is_root: root == Some(l.info.peer_id),
                    decided: l.decided,
                    clock_samples: l.clock.sample_counts(),
                    clock_rejected: l.clock.rejected(),
                }
            })
            .collect()
    }

    // ----- internals: messages ----------------------------------------------

    fn on_heartbeat(&mut self, now_ns: i64, from: PeerId, hb: Heartbeat) {
        let Some(link) = self.links.get_mut(&from) else {
            return;
        };
        let mut absurd = link.clock.add_inbound(hb.clock.sent_ns, now_ns).is_err();
        if let Some(echo) = hb.clock.echo
            && link.last_echo_origin_ns.is_none_or(|o| echo.origin_ns > o)
        {
            link.last_echo_origin_ns = Some(echo.origin_ns);
            absurd |= link
                .clock
                .add_outbound(echo.origin_ns, echo.received_ns)
                .is_err();
        }
        if link.echo.is_none_or(|e| hb.clock.sent_ns >= e.origin_ns) {
            link.echo = Some(ClockEcho {
                origin_ns: hb.clock.sent_ns,
                received_ns: now_ns,
            });
        }
        if absurd {
            self.ignore(from, Ignored::AbsurdTimestamp);
        }
        let Some(link) = self.links.get_mut(&from) else {
            return;
        };
        let Some(map) = hb.map else {
            return; // not synced: its round and votes mean nothing yet
        };
        let was_synced = link.map.is_some();
        if link.map.is_none_or(|(_, sent)| hb.clock.sent_ns >= sent) {
            link.map = Some((map, hb.clock.sent_ns));
            link.synced_at_session_ns = hb.synced_at_session_ns;
        }
        if hb.decided.is_some() {
            link.decided = hb.decided;
        }
        if !was_synced {
            self.choose_root();
        }
        if let Some((&last, _)) = self.decided.last_key_value() {
            if hb.round > last {
                self.stats.heartbeats_on_time += 1;
            } else {
                self.stats.heartbeats_late += 1;
            }
        }
        self.accept_vote(from, hb.vote_of(from));
        for v in hb.relayed.into_iter().take(MAX_RELAYED_VOTES) {
            self.accept_vote(from, v);
        }
        if let Some(claim) = hb.decided {
            self.compare(from, claim);
        }
    }

    /// Holds a vote for its round if that round is open here.
    fn accept_vote(&mut self, from: PeerId, vote: Vote) {
        let Some((&last, _)) = self.decided.last_key_value() else {
            return; // no state yet: the snapshot will carry what we need
        };
        if vote.round <= last {
            let known = self
                .decided
                .get(&vote.round)
                .is_some_and(|e| e.votes.contains(&vote));
            if !known && vote.event != Event::None {
                let reason = if last.0 - vote.round.0 > self.cfg.history_rounds as u64 {
                    Ignored::VoteOutOfWindow { round: vote.round }
                } else {
                    Ignored::LateVote { round: vote.round }
                };
                self.ignore(from, reason);
            }
            return;
        }
        // Unsynced (a joiner with a snapshot) we cannot tell the current round:
        // hold up to 5 s of rounds past the snapshot.
        let horizon = match self.current_round() {
            Some(cur) => cur.0 + self.cfg.vote_horizon_rounds,
            None => last.0 + 50,
        };
        if vote.round.0 > horizon {
            self.ignore(from, Ignored::VoteOutOfWindow { round: vote.round });
            return;
        }
        let votes = self.pending.entry(vote.round).or_default();
        if votes.contains(&vote) {
            return;
        }
        if votes.len() >= MAX_VOTES_PER_ROUND {
            self.ignore(from, Ignored::TooManyVotes { round: vote.round });
            return;
        }
        votes.push(vote);
    }

    /// Compares a peer's latest decision with ours for the same round, and sends
    /// it our state if ours ranks higher.
    fn compare(&mut self, from: PeerId, claim: DecidedDigest) {
        let Some(ours) = self.decided.get(&claim.round) else {
            return;
        };
        let digest = ours.state.digest();
        if digest == claim.digest {
            self.agreed_with.insert(from, claim.round);
            return;
        }
        if rank(ours.state.changed_round, digest) > rank(claim.changed_round, claim.digest)
            && self.repaired.get(&from).is_none_or(|&r| r < claim.round)
        {
            self.repaired.insert(from, claim.round);
            if let Some(snapshot) = self.snapshot_after(Some(claim.round)) {
                self.send(from, Message::Snapshot(snapshot));
            }
        }
    }

    fn on_snapshot(&mut self, from: PeerId, snap: Snapshot) {
        let k = snap.round;
        if snap.state.changed_round > k {
            self.ignore(from, Ignored::BadSnapshot { round: k });
            return;
        }
        let Some((&last, _)) = self.decided.last_key_value() else {
            // A joiner's first state.
            self.rebase(k, snap, from);
            return;
        };
        let (&first, _) = self.decided.first_key_value().expect("non-empty");
        if k > last {
            if let Some(cur) = self.current_round() {
                // Synced and deciding: a round or two ahead of us is just a
                // peer slightly earlier in time; we decide those rounds ourselves
                // and compare digests. Far beyond our own clock is absurd.
                if k.0 <= last.0 + self.cfg.vote_horizon_rounds
                    || k.0 > cur.0 + self.cfg.vote_horizon_rounds
                {
                    return;
                }
            }
            // We fell behind (we were not deciding): take it as our new base.
            self.rebase(k, snap, from);
            return;
        }
        if k < first {
            self.ignore(from, Ignored::BadSnapshot { round: k });
            return;
        }
        let ours = &self.decided[&k].state;
        if rank(snap.state.changed_round, snap.state.digest())
            <= rank(ours.changed_round, ours.digest())
        {
            return; // ours wins (or is the same): nothing to adopt
        }
        // Our own votes applied since we last agreed with the winner may be gone.
        let since = self.agreed_with.get(&from).copied().unwrap_or(first);
        let lost: Vec<Vote> = self
            .decided
            .iter()
            .filter(|(r, _)| **r > since && **r <= k)
            .flat_map(|(_, e)| e.votes.iter())
            .copied()
            .collect();
        self.supersede_own(lost, from);
        self.decided.get_mut(&k).expect("in range").state = snap.state;
        self.merge_votes(k, snap.pending);
        // Re-decide the rounds after k on top of the adopted state.
        let later: Vec<Round> = self
            .decided
            .range(Round(k.0 + 1)..)
            .map(|(r, _)| *r)
            .collect();
        for r in later {
            let prev = self.decided[&Round(r.0 - 1)].state.clone();
            let apply_at = self.cfg.apply_at_session_ns(r);
            let d = choose(&prev, r, apply_at, &self.decided[&r].votes);
            self.decided.get_mut(&r).expect("in range").state = d.state;
        }
        self.agreed_with.insert(from, k);
        let (&last, entry) = self.decided.last_key_value().expect("non-empty");
        self.events.push_back(SessionEvent::Adopted {
            round: last,
            apply_at_session_ns: self.cfg.apply_at_session_ns(last),
            state: entry.state.clone(),
            from,
        });
    }

    /// Replaces the whole history with `snap` as its base.
    fn rebase(&mut self, k: Round, snap: Snapshot, from: PeerId) {
        let dropped: Vec<Vote> = self
            .pending
            .range(..=k)
            .flat_map(|(_, vs)| vs)
            .copied()
            .collect();
        self.supersede_own(dropped, from);
        self.pending = self.pending.split_off(&Round(k.0 + 1));
        self.decided.clear();
        self.decided.insert(
            k,
            Entry {
                state: snap.state.clone(),
                votes: vec![],
            },
        );
        self.merge_votes(k, snap.pending);
        self.agreed_with.insert(from, k);
        self.events.push_back(SessionEvent::Adopted {
            round: k,
            apply_at_session_ns: self.cfg.apply_at_session_ns(k),
            state: snap.state,
            from,
        });
    }

    /// Tells the user which of their actions among `votes` lost to `by`'s state.
    fn supersede_own(&mut self, votes: Vec<Vote>, by: PeerId) {
        let me = self.me.peer_id;
        for vote in votes
            .into_iter()
            .filter(|v| v.voter == me && v.event != Event::None)
        {
            self.events.push_back(SessionEvent::Superseded { vote, by });
        }
    }

    /// Adds `votes` (for rounds after `k`) to the decided entries and pending sets.
    fn merge_votes(&mut self, k: Round, votes: Vec<Vote>) {
        for v in votes.into_iter().filter(|v| v.round > k) {
            let set = match self.decided.get_mut(&v.round) {
                Some(e) => &mut e.votes,
                None => self.pending.entry(v.round).or_default(),
            };
            if !set.contains(&v) && set.len() < MAX_VOTES_PER_ROUND {
                set.push(v);
            }
        }
    }

    /// Our latest decided state (or the one for `round`), with every vote we hold
    /// for the rounds after it.
    fn snapshot_after(&self, round: Option<Round>) -> Option<Snapshot> {
        let (k, entry) = match round {
            Some(r) => (r, self.decided.get(&r)?),
            None => self.decided.last_key_value().map(|(r, e)| (*r, e))?,
        };
        let mut pending: Vec<Vote> = self
            .decided
            .range(Round(k.0 + 1)..)
            .flat_map(|(_, e)| e.votes.iter())
            .chain(self.pending.values().flatten())
            .filter(|v| v.event != Event::None)
            .copied()
            .collect();
        pending.truncate(MAX_PENDING_VOTES);
        Some(Snapshot {
            round: k,
            state: entry.state.clone(),
            pending,
        })
    }

    // ----- internals: time ----------------------------------------------------

    fn current_round(&self) -> Option<Round> {
        // `now` is not stored; the last beat is the round we are in.
        self.last_beat_round
    }

    /// Synced linked peers, most senior first (the order that picks the root).
    fn by_seniority(&self) -> Vec<PeerId> {
        let mut ids: Vec<(i64, PeerId)> = self
            .links
            .iter()
            .filter(|(_, l)| l.map.is_some())
            .map(|(id, l)| (l.synced_at_session_ns, *id))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// The peers whose clocks we sample often: the root and its heir, or the two
    /// best candidates while we are not synced.
    fn clock_targets(&self) -> BTreeSet<PeerId> {
        let senior = self.by_seniority();
        if self.map.is_none() {
            return senior.into_iter().take(2).collect();
        }
        if self.root == Some(self.me.peer_id) {
            return BTreeSet::new(); // the root follows nobody
        }
        let heir = senior.into_iter().find(|&id| Some(id) != self.root);
        self.root.into_iter().chain(heir).collect()
    }

    /// The time root: the most senior synced peer among us and our links (the
    /// one that synced first; the lowest id among equals). The oldest member's
    /// clock estimates have had the longest to settle, and a restarted or new
    /// peer never takes over the time base.
    fn choose_root(&mut self) {
        let Some(mine) = self.synced_at_session_ns else {
            return;
        };
        let me = self.me.peer_id;
        let root = match self.by_seniority().first() {
            Some(&id) if (self.links[&id].synced_at_session_ns, id) < (mine, me) => id,
            _ => me,
        };
        if self.root != Some(root) {
            self.root = Some(root);
            self.events.push_back(SessionEvent::RootChanged { root });
        }
    }

    /// `peer`'s clock estimate and announced map, once the link holds enough
    /// samples per direction to say something.
    fn usable_estimate(&mut self, peer: PeerId) -> Option<(ClockEstimate, SessionMap)> {
        let link = self.links.get_mut(&peer)?;
        let (o, i) = link.clock.sample_counts();
        if o.min(i) < self.cfg.sync_min_samples {
            return None;
        }
        Some((link.clock.estimate()?, link.map?.0))
    }

    /// The first sync: step onto the most senior synced peer's session time once
    /// its clock estimate has enough samples.
    fn try_first_sync(&mut self, now_ns: i64) {
        let Some(&root) = self.by_seniority().first() else {
            return;
        };
        let Some((est, root_map)) = self.usable_estimate(root) else {
            return;
        };
        let target = root_target(&self.cfg.steer, &root_map, &est, now_ns, false);
        let mut map = SessionMap::starting_at(now_ns);
        self.steering = SteerState::default();
        self.steered_to = Some(root);
        steer(
            &mut map,
            &mut self.steering,
            &self.cfg.steer,
            now_ns,
            target,
            true,
        );
        self.map = Some(map);
        self.root = Some(root);
        self.synced_at_session_ns = Some(map.session_ns_at(now_ns).max(1));
        // Start beating with the current round; earlier rounds are others' past.
        let cur = Round::containing(map.session_ns_at(now_ns));
        self.last_beat_round = Some(Round(cur.0.saturating_sub(1)));
        self.events.push_back(SessionEvent::Synced { root });
        self.choose_root();
    }

    /// Steers our map towards the root's (once per round, before the heartbeat).
    /// Without a usable estimate of the root's clock, the map freewheels.
    fn steer_to_root(&mut self, now_ns: i64) {
        self.choose_root();
        let Some(root) = self.root.filter(|&r| r != self.me.peer_id) else {
            return;
        };
        let Some((est, root_map)) = self.usable_estimate(root) else {
            return;
        };
        let Some(map) = self.map.as_mut() else {
            return;
        };
        // A new root is a new reference: the rate learned against the old one
        // does not carry over.
        let new_root = self.steered_to.replace(root) != Some(root);
        if new_root {
            self.steering = SteerState::default();
        }
        let target = root_target(
            &self.cfg.steer,
            &root_map,
            &est,
            now_ns,
            self.steering.trusted,
        );
        let r = steer(
            map,
            &mut self.steering,
            &self.cfg.steer,
            now_ns,
            target,
            false,
        );
        if let Steer::Stepped { .. } = r {
            // Session time jumped: the beat schedule follows from the new time.
            let cur = Round::containing(map.session_ns_at(now_ns));
            if self.last_beat_round.is_some_and(|r| r > cur) {
                self.last_beat_round = Some(cur);
            }
        }
    }

    // ----- internals: timers --------------------------------------------------

    fn beat(&mut self, now_ns: i64) {
        let Some(map) = self.map else {
            if now_ns >= self.next_unsynced_beat_ns {
                self.next_unsynced_beat_ns = now_ns + ROUND_NS;
                self.send_heartbeats(now_ns, Round(0), Event::None, vec![]);
            }
            return;
        };
        let cur = Round::containing(map.session_ns_at(now_ns));
        if self.last_beat_round.is_some_and(|r| r >= cur) {
            return;
        }
        self.steer_to_root(now_ns);
        let Some(map) = self.map else { return };
        let cur = Round::containing(map.session_ns_at(now_ns));
        if self.last_beat_round.is_some_and(|r| r >= cur) {
            return;
        }
        self.last_beat_round = Some(cur);
        // Only vote once we have a state to vote on and the round is open.
        let open = self
            .decided
            .last_key_value()
            .is_some_and(|(&last, _)| cur > last);
        let vote = if open {
            self.queued.pop_front().unwrap_or(Event::None)
        } else {
            Event::None
        };
        let me = self.me.peer_id;
        if open {
            let v = Vote {
                voter: me,
                round: cur,
                event: vote,
            };
            self.pending.entry(cur).or_default().push(v);
        }
        let relayed: Vec<Vote> = cur
            .0
            .checked_sub(1)
            .and_then(|prev| self.pending.get(&Round(prev)))
            .map(|vs| {
                vs.iter()
                    .filter(|v| v.event != Event::None)
                    .take(MAX_RELAYED_VOTES)
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        self.send_heartbeats(now_ns, cur, vote, relayed);
    }

    fn send_heartbeats(&mut self, now_ns: i64, round: Round, vote: Event, relayed: Vec<Vote>) {
        let decided = self.decided.last_key_value().map(|(r, e)| DecidedDigest {
            round: *r,
            digest: e.state.digest(),
            changed_round: e.state.changed_round,
        });
        let map = self.map;
        let synced_at_session_ns = self.synced_at_session_ns.unwrap_or(i64::MAX);
        let beats: Vec<(PeerId, Option<ClockEcho>)> =
            self.links.iter().map(|(id, l)| (*id, l.echo)).collect();
        for (to, echo) in beats {
            self.send(
                to,
                Message::Heartbeat(Heartbeat {
                    round,
                    vote,
                    relayed: relayed.clone(),
                    decided,
                    map,
                    synced_at_session_ns,
                    clock: ClockStamps {
                        sent_ns: now_ns,
                        echo,
                    },
                }),
            );
        }
    }

    fn decide_due(&mut self, now_ns: i64) {
        let Some(map) = self.map else { return };
        let session_now = map.session_ns_at(now_ns);
        while let Some((&last, entry)) = self.decided.last_key_value() {
            let r = Round(last.0 + 1);
            if self.cfg.decide_at_session_ns(r) > session_now {
                break;
            }
            let prev = entry.state.clone();
            let votes = self.pending.remove(&r).unwrap_or_default();
            let apply_at = self.cfg.apply_at_session_ns(r);
            let decision = choose(&prev, r, apply_at, &votes);
            self.decided.insert(
                r,
                Entry {
                    state: decision.state.clone(),
                    votes,
                },
            );
            while self.decided.len() > self.cfg.history_rounds.max(1) {
                self.decided.pop_first();
            }
            self.events.push_back(SessionEvent::Decided(decision));
        }
        // Votes for rounds already decided can never count now.
        if let Some((&last, _)) = self.decided.last_key_value() {
            self.pending = self.pending.split_off(&Round(last.0 + 1));
        }
    }

    fn send_pings(&mut self, now_ns: i64) {
        let targets = self.clock_targets();
        let mut pings = Vec::new();
        for (id, link) in self.links.iter_mut() {
            if link.next_ping_ns > now_ns {
                continue;
            }
            if link.burst_left > 0 {
                link.burst_left -= 1;
                link.next_ping_ns = now_ns + self.cfg.burst_interval_ns;
            } else if targets.contains(id) {
                link.next_ping_ns = now_ns + self.cfg.ping_interval_ns;
            } else {
                continue;
            }
            link.ping_seq = link.ping_seq.wrapping_add(1);
            pings.push((*id, link.ping_seq));
        }
        for (to, seq) in pings {
            self.send(
                to,
                Message::ClockPing(ClockPing {
                    seq,
                    origin_ns: now_ns,
                }),
            );
        }
    }

    fn detect_silence(&mut self, now_ns: i64) {
        let dead: Vec<PeerId> = self
            .links
            .iter()
            .filter(|(_, l)| now_ns.saturating_sub(l.last_heard_ns) >= self.cfg.dead_after_ns)
            .map(|(id, _)| *id)
            .collect();
        for peer in dead {
            self.drop_link(now_ns, peer);
            self.events.push_back(SessionEvent::Disconnect { peer });
            self.events.push_back(SessionEvent::PeerDown {
                peer,
                reason: DownReason::Silent,
            });
        }
    }

    /// Removes a link, keeping the peer as a member to redial. Whether it existed.
    fn drop_link(&mut self, now_ns: i64, peer: PeerId) -> bool {
        let Some(link) = self.links.remove(&peer) else {
            return false;
        };
        self.members.insert(
            peer,
            Member {
                info: link.info,
                next_dial_ns: now_ns + self.cfg.redial_interval_ns,
                lost_since_ns: now_ns,
                clock: Some(link.clock),
            },
        );
        self.choose_root();
        true
    }

    fn redial(&mut self, now_ns: i64) {
        for m in self.members.values_mut() {
            if m.next_dial_ns <= now_ns {
                m.next_dial_ns = now_ns + self.cfg.redial_interval_ns;
                self.events.push_back(SessionEvent::Dial(m.info.clone()));
            }
        }
    }

    fn forget_lost(&mut self, now_ns: i64) {
        let horizon = self.cfg.forget_after_ns;
        self.members
            .retain(|_, m| now_ns.saturating_sub(m.lost_since_ns) < horizon);
    }

    fn send(&mut self, to: PeerId, message: Message) {
        self.transmits.push_back(Transmit { to, message });
    }

    fn ignore(&mut self, from: PeerId, reason: Ignored) {
        self.events
            .push_back(SessionEvent::Ignored { from, reason });
    }
}

/// Orders diverged states: the later change wins, then the lower digest.
fn rank(changed_round: Round, digest: u64) -> (Round, std::cmp::Reverse<u64>) {
    (changed_round, std::cmp::Reverse(digest))
}

/// Actions of the same kind replace each other while queued.
pub fn action_kind(e: &Event) -> (u8, Option<crate::protocol::Channel>) {
    match *e {
        Event::None => (0, None),
        Event::Play | Event::Pause => (1, None),
        Event::Seek { .. } => (2, None),
        Event::Volume { channel, .. } => (3, Some(channel)),
        Event::Mute { channel, .. } => (4, Some(channel)),
    }
}

/// What a decision did with the votes of `voter`.
pub fn verdicts_of(decision: &Decision, voter: PeerId) -> impl Iterator<Item = (Vote, Verdict)> {
    decision
        .outcomes
        .iter()
        .filter(move |o| o.vote.voter == voter)
        .map(|o| (o.vote, o.verdict))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::ClockStamps;
    use std::net::{Ipv4Addr, SocketAddr};

    fn info(id: u64) -> PeerInfo {
        PeerInfo {
            peer_id: PeerId(id),
            name: format!("p{id}"),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 7000 + id as u16)),
        }
    }

    fn drain(s: &mut Session) -> Vec<SessionEvent> {
        while s.poll_transmit().is_some() {}
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn heartbeat(round: u64, vote: Event, relayed: Vec<Vote>) -> Message {
        Message::Heartbeat(Heartbeat {
            round: Round(round),
            vote,
            relayed,
            decided: None,
            map: Some(SessionMap::starting_at(0)),
            synced_at_session_ns: 0,
            clock: ClockStamps {
                sent_ns: 0,
                echo: None,
            },
        })
    }

    /// Peer 1, which created the session (a 60 s song, 2 stems), linked to
    /// peer 2.
    fn creator_linked_to_2() -> Session {
        let mut s = Session::new(
            Config::default(),
            info(1),
            0,
            Start::Create {
                state: SessionState::new(60_000_000_000, 2),
            },
        );
        s.handle_link_up(0, info(2));
        s
    }

    /// Heartbeats are counted on time while their round is open, late after
    /// it was decided.
    #[test]
    fn heartbeat_timeliness_is_counted() {
        let mut s = creator_linked_to_2();
        let mut t = 0;
        while t < 1_000_000_000 {
            t += 10_000_000;
            s.handle_timeout(t);
            if t % 100_000_000 == 0 {
                // Keep the link alive with a heartbeat for the current round.
                s.handle_message(
                    t,
                    PeerId(2),
                    heartbeat(t as u64 / ROUND_NS as u64, Event::None, vec![]),
                );
            }
        }
        drain(&mut s);
        let on_time = s.stats().heartbeats_on_time;
        assert!(on_time >= 9, "{:?}", s.stats());
        assert_eq!(s.stats().heartbeats_late, 0);
        let (last, _) = s.latest().unwrap();
        s.handle_message(t, PeerId(2), heartbeat(last.0, Event::None, vec![]));
        assert_eq!(s.stats().heartbeats_late, 1);
        assert_eq!(s.stats().heartbeats_on_time, on_time);
    }

    /// A creator decides every round on its own, and bad input from a linked or
    /// unknown peer is ignored with a reason, never changing what is decided.
    #[test]
    fn bad_input_is_ignored_and_never_corrupts_state() {
        let mut s = creator_linked_to_2();
        fn run_to(s: &mut Session, from: i64, until: i64) -> i64 {
            let mut t = from;
            while t < until {
                t += 10_000_000;
                s.handle_timeout(t);
            }
            t
        }
        let t = run_to(&mut s, 0, 1_000_000_000);
        s.handle_link_up(t, info(2)); // it went silent meanwhile and was dropped
        drain(&mut s);
        let before = s.latest().map(|(r, st)| (r, st.digest())).unwrap();

        // From nobody we know.
        s.handle_message(t, PeerId(99), heartbeat(12, Event::Pause, vec![]));
        // Votes far in the future and in the distant past, relayed or direct.
        let far = |round| Vote {
            voter: PeerId(2),
            round: Round(round),
            event: Event::Seek { position_ns: 5 },
        };
        s.handle_message(
            t,
            PeerId(2),
            heartbeat(1_000_000, Event::Play, vec![far(900_000)]),
        );
        // Absurd timestamps.
        s.handle_message(
            t,
            PeerId(2),
            Message::ClockPong(ClockPong {
                seq: 1,
                origin_ns: i64::MIN,
                received_ns: i64::MAX,
                sent_ns: i64::MIN,
            }),
        );
        // A snapshot claiming a change after its own round.
        let mut forged = SessionState::new(1, 0);
        forged.changed_round = Round(u64::MAX);
        s.handle_message(
            t,
            PeerId(2),
            Message::Snapshot(Snapshot {
                round: Round(3),
                state: forged,
                pending: vec![],
            }),
        );
        // Not the session's business.
        s.handle_message(
            t,
            PeerId(2),
            Message::Goodbye(Goodbye { reason: "x".into() }),
        );
        s.handle_message(t, PeerId(2), heartbeat(12, Event::Pause, vec![]));

        let reasons: Vec<Ignored> = drain(&mut s)
            .into_iter()
            .filter_map(|e| match e {
                SessionEvent::Ignored { reason, .. } => Some(reason),
                _ => None,
            })
            .collect();
        assert!(reasons.contains(&Ignored::UnknownPeer), "{reasons:?}");
        assert!(
            reasons
                .iter()
                .any(|r| matches!(r, Ignored::VoteOutOfWindow { .. })),
            "{reasons:?}"
        );
        assert!(reasons.contains(&Ignored::AbsurdTimestamp), "{reasons:?}");
        assert!(
            reasons
                .iter()
                .any(|r| matches!(r, Ignored::BadSnapshot { .. })),
            "{reasons:?}"
        );
        // Nothing above changed the decided history.
        let (r, _) = before;
        assert_eq!(s.decided_state(r).map(SessionState::digest), Some(before.1));
        run_to(&mut s, t, 2_000_000_000);
        assert!(!s.latest().unwrap().1.timeline.playing);
    }

    /// A user action waits for the next round, is decided there, and the voter
    /// sees its verdict; a NaN gain is refused before it is queued.
    #[test]
    fn an_action_is_cast_next_round_and_gets_a_verdict() {
        let mut s = Session::new(
            Config::default(),
            info(1),
            0,
            Start::Create {
                state: SessionState::new(60_000_000_000, 2),
            },
        );
        assert_eq!(
            s.vote(Event::Volume {
                channel: crate::protocol::Channel::Master,
                gain_db: f32::NAN
            }),
            Err(VoteError::InvalidGain)
        );
        s.handle_timeout(150_000_000);
        s.vote(Event::Play).unwrap();
        s.vote(Event::Pause).unwrap(); // replaces the play: same kind
        let mut verdict = None;
        let mut dropped = None;
        for step in 16..60 {
            s.handle_timeout(step * 10_000_000);
            for e in drain(&mut s) {
                match e {
                    SessionEvent::Decided(d) => {
                        if let Some((v, ver)) =
                            verdicts_of(&d, PeerId(1)).find(|(v, _)| v.event == Event::Pause)
                        {
                            verdict = Some((v.round, ver, d.apply_at_session_ns));
                        }
                    }
                    SessionEvent::VoteDropped { event, reason } => dropped = Some((event, reason)),
                    _ => {}
                }
            }
        }
        assert_eq!(dropped, Some((Event::Play, DropReason::Replaced)));
        let (round, ver, apply_at) = verdict.expect("the pause was decided");
        assert_eq!(
            round,
            Round(2),
            "cast at the start of the round after the action"
        );
        assert_eq!(ver, Verdict::Applied);
        assert_eq!(apply_at, 3 * ROUND_NS + Config::default().lead_ns);
    }
}
