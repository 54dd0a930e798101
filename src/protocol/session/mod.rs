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
//! sends a [`Snapshot`](crate::protocol::message::Snapshot), and the other adopts it, re-decides its later rounds, and
//! reports its own votes that the adopted state superseded. Availability and
//! partition tolerance over consistency: both sides of a partition play on, and
//! converge deterministically when it heals.
//!
//! # Layout
//!
//! One `Session`, its methods grouped by responsibility:
//! - this file: the types, the calling contract's entry points and queries;
//! - `membership.rs`: links and members — link up and down, silence, redials,
//!   forgetting, peer lists, and the choice of the time root;
//! - `sync.rs`: session time — clock pings, the first sync, steering to the root;
//! - `agreement.rs`: the beat, votes, deciding, digests and snapshot repair;
//! - `history.rs`: the decided rounds and held votes, one type with its invariants;
//! - `election.rs`: the choice of the time root (support, then seniority);
//! - `timers.rs`: the local-time timer table behind [`Session::poll_timeout`].

mod agreement;
mod election;
mod history;
mod membership;
mod need;
mod sync;
#[cfg(test)]
mod tests;
mod timers;

use std::collections::{BTreeMap, VecDeque};

use crate::protocol::message::{ClockEcho, DecidedDigest, Goodbye, Message, PeerInfo};

use super::choice::Decision;
use super::clock::LinkClock;
use super::identity::Signer;
use super::state::{Event, PeerId, ROUND_NS, Round, SessionState, Vote};
use super::time::{SessionMap, SteerConfig, SteerState};
use history::History;
use need::VoteDelays;
use timers::{Timer, TimerTable};

pub use agreement::{ActionKind, action_kind, verdicts_of};
pub use membership::MAX_MEMBERS;

/// Tunables of the protocol. The defaults suit the simulator's 20–60 ms links.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// This peer decides a round this long before it applies, so that its
    /// audio engine has the decision before it renders that instant: it must
    /// exceed the output's render-ahead (the null device's block plus its
    /// 10 ms lead; a sound card's buffer). The runtime sets it from the output.
    /// It is this peer's alone: the agreed lead (see [`crate::protocol::lead`])
    /// covers every peer's guard plus the delay of its votes.
    pub decide_guard_ns: i64,
    /// Added to this peer's need for the lead, for clock error and delays
    /// worse than the ones measured.
    pub lead_margin_ns: i64,
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
    /// Two peers' session times this close agree (read through a link, so
    /// with the clock estimate's error). A candidate root is followed only if
    /// the most peers agree with it (see `election.rs`), so one member's claim
    /// can move the others' session time by at most this much.
    pub time_agreement_ns: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            decide_guard_ns: 70_000_000,
            lead_margin_ns: 5_000_000,
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
            time_agreement_ns: 50_000_000,
        }
    }
}

/// How this peer enters the session.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per run, moved once
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
    /// Its round already held the most votes a round can (a flood of votes),
    /// all of them ahead of ours in the canonical order.
    RoundFull,
    /// Session time moved far past (or before) its round: it was never decided.
    TimeMoved,
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
    /// A snapshot that is malformed, for a round far from ours, or whose
    /// state could not be this session's (see `SessionState::check`).
    BadSnapshot { round: Round },
    /// A heartbeat claiming a seniority no peer can have (before the session).
    BadSeniority,
    /// A vote without a valid proof that `voter` cast it: a forgery (or a
    /// vote with no proof at all).
    ForgedVote { voter: PeerId },
}

impl Ignored {
    /// What the sender did, if it is something an honest peer never does
    /// (late votes, unknown senders and the like happen to honest peers:
    /// `None`).
    pub fn offence(&self) -> Option<&'static str> {
        Some(match self {
            Ignored::UnknownPeer | Ignored::NotForSession | Ignored::LateVote { .. } => {
                return None;
            }
            // Honest relays can carry more than a round holds (peers heard
            // a flood in different orders): not an offence.
            Ignored::TooManyVotes { .. } => return None,
            Ignored::VoteOutOfWindow { .. } => "a vote for a round far from the open ones",
            Ignored::AbsurdTimestamp => "clock stamps implying an impossible delay",
            Ignored::BadSnapshot { .. } => "a snapshot that cannot be this session's",
            Ignored::BadSeniority => "a seniority from before the session began",
            Ignored::ForgedVote { .. } => "a vote its voter did not sign (a forgery)",
        })
    }
}

/// Why a user action was refused outright.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VoteError {
    #[error("a gain must be a number below +inf (got NaN or +inf)")]
    InvalidGain,
    #[error("\"no event\" is not an action")]
    Nothing,
    #[error("a need for the lead is said by the session itself, not by a user")]
    NotAnAction,
    #[error("a value out of range (an index past the longest set list)")]
    OutOfRange,
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
    /// How late its heartbeats (and so its votes) reach us.
    vote_delays: VoteDelays,
    /// It sent a vote without a valid proof. An honest peer never does (it
    /// signs its own and relays only votes it checked), so nothing it says
    /// of votes is read again while this link lasts: a forgery costs one
    /// signature check, not one per copy (see `Session::discredit`).
    discredited: bool,
}

#[derive(Clone, Debug)]
struct Member {
    info: PeerInfo,
    /// The clock samples of the link we lost: a monotonic clock belongs to the
    /// machine, so they stay valid when the link (or the peer) comes back.
    clock: Option<LinkClock>,
    /// Dials that did not bring it up since we learnt of it from a peer list
    /// (`None`: a member we were linked to, redialled at the steady rate).
    /// A member only heard of is dialled ever less often (see `redial`).
    unreached_dials: Option<u32>,
}

/// One peer's session protocol state machine. See the module docs for the
/// calling contract.
#[derive(Debug)]
pub struct Session {
    cfg: Config,
    me: PeerInfo,
    /// Signs our votes.
    signer: Signer,

    // Time (see `sync`).
    /// Our local→session map; `None` until synced.
    map: Option<SessionMap>,
    root: Option<PeerId>,
    /// The steering loop's memory, and the root it was steering to.
    steering: SteerState,
    steered_to: Option<PeerId>,
    /// The session time at which we first synced (0 if we created the session).
    synced_at_session_ns: Option<i64>,

    // Membership (see `membership`).
    links: BTreeMap<PeerId, Link>,
    /// Members we are not linked to (lost or not yet dialled).
    members: BTreeMap<PeerId, Member>,
    /// Local-time deadlines: pings, silence, redials, forgetting, the
    /// unsynced beat.
    timers: TimerTable,

    // Agreement (see `agreement`).
    history: History,
    last_beat_round: Option<Round>,
    /// The latest round we cast an action in: one a round, the first as soon
    /// as it is asked for, and never again in a round up to this one.
    acted_round: Option<Round>,
    /// Our last `lead` vote (see `need`): the round and the need.
    need_said: Option<(Round, u16)>,
    /// The round (of our beats) in which we last relayed late votes.
    late_relay_round: Option<Round>,
    queued: VecDeque<Event>,
    /// The votes we cast, newest last (a vote under our id that is not here
    /// is a forgery, which we count like everyone does but never report as
    /// the user's).
    cast: VecDeque<Vote>,
    /// The latest round each peer was seen to agree with us on.
    agreed_with: BTreeMap<PeerId, Round>,
    /// The latest round we sent each peer a repair snapshot for.
    repaired: BTreeMap<PeerId, Round>,
    /// Our round when we last offered each peer our state unasked (it had
    /// none, or refused ours as not this session's): at most once a second.
    offered: BTreeMap<PeerId, Round>,

    transmits: VecDeque<Transmit>,
    events: VecDeque<SessionEvent>,
    stats: SessionStats,
}

/// What a [`Session`] holds (see [`Session::footprint`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    pub links: usize,
    pub members: usize,
    pub decided_rounds: usize,
    pub held_votes: usize,
    pub queued_actions: usize,
    /// Messages and events not drained yet.
    pub outputs: usize,
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
    /// `me.peer_id` is `signer`'s id ([`Signer::peer_id`]): the key signs
    /// our votes, and the id is what every peer checks them against.
    pub fn new(cfg: Config, me: PeerInfo, signer: Signer, now_ns: i64, start: Start) -> Session {
        debug_assert_eq!(me.peer_id, signer.peer_id(), "an id is its key's");
        let history = History::empty(cfg.history_rounds);
        let mut s = Session {
            cfg,
            me,
            signer,
            map: None,
            root: None,
            steering: SteerState::default(),
            steered_to: None,
            synced_at_session_ns: None,
            links: BTreeMap::new(),
            members: BTreeMap::new(),
            timers: TimerTable::default(),
            history,
            last_beat_round: None,
            acted_round: None,
            need_said: None,
            late_relay_round: None,
            queued: VecDeque::new(),
            cast: VecDeque::new(),
            agreed_with: BTreeMap::new(),
            repaired: BTreeMap::new(),
            offered: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: SessionStats::default(),
        };
        match start {
            Start::Create { state } => {
                // Round 0 starts now; the state is "decided" as of the round before.
                s.history = History::starting_at(s.cfg.history_rounds, Round(0), state);
                s.map = Some(SessionMap::starting_at(now_ns));
                s.root = Some(s.me.peer_id);
                s.synced_at_session_ns = Some(0);
            }
            Start::Join => s.timers.set(Timer::UnsyncedBeat, now_ns),
        }
        s
    }

    pub fn id(&self) -> PeerId {
        self.me.peer_id
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// How long before a round applies this peer decides it: the runtime
    /// sets it from how far ahead its output renders (at most the longest
    /// lead less a round and the margin, so that a lead can cover it).
    pub fn set_decide_guard_ns(&mut self, guard_ns: i64) {
        let max_ns = i64::from(crate::protocol::lead::LEAD_MAX_MS) * 1_000_000
            - ROUND_NS
            - self.cfg.lead_margin_ns.max(0);
        self.cfg.decide_guard_ns = guard_ns.clamp(0, max_ns.max(0));
    }

    // ----- inputs -----------------------------------------------------------

    /// A link to `info.peer_id` is up (authenticated). If one already existed
    /// (the shell swapped connections: a simultaneous dial, a redial), it goes
    /// on with what it knew — clock samples, map, seniority — and no second
    /// `PeerUp` is reported.
    pub fn handle_link_up(&mut self, now_ns: i64, info: PeerInfo) {
        self.link_up(now_ns, info);
        self.arm_pings();
    }

    /// The link to `peer` closed.
    pub fn handle_link_down(&mut self, now_ns: i64, peer: PeerId) {
        if self.drop_link(now_ns, peer) {
            self.events.push_back(SessionEvent::PeerDown {
                peer,
                reason: DownReason::LinkClosed,
            });
        }
        self.arm_pings();
    }

    /// A message from `from` arrived at local time `now_ns`.
    pub fn handle_message(&mut self, now_ns: i64, from: PeerId, message: Message) {
        if !self.links.contains_key(&from) {
            self.ignore(from, Ignored::UnknownPeer);
            return;
        }
        self.heard(now_ns, from);
        match message {
            Message::Heartbeat(hb) => self.on_heartbeat(now_ns, from, hb),
            Message::ClockPing(ping) => self.on_clock_ping(now_ns, from, ping),
            Message::ClockPong(pong) => self.on_clock_pong(now_ns, from, pong),
            Message::PeerList(list) => self.on_peer_list(now_ns, list),
            Message::Snapshot(snap) => self.on_snapshot(from, snap),
            Message::Goodbye(_) => self.on_goodbye(now_ns, from),
            Message::Room(_) => self.ignore(from, Ignored::NotForSession),
        }
        self.arm_pings();
    }

    /// Timers: heartbeats, decisions, pings, failure detection, redials.
    pub fn handle_timeout(&mut self, now_ns: i64) {
        self.detect_silence(now_ns);
        self.redial(now_ns);
        self.forget_lost(now_ns);
        if self.map.is_none() {
            self.try_first_sync(now_ns);
        }
        // Who is pinged may have changed above (a root lost, the first sync).
        self.arm_pings();
        self.send_pings(now_ns);
        self.beat(now_ns);
        self.decide_due(now_ns);
        self.arm_pings();
    }

    /// The local user's action: cast at once in the round under way if we
    /// cast none in it yet and are linked to every member we know (the shell
    /// sees `poll_timeout` due), else in the next round's heartbeat. A queued
    /// action of the same kind (a seek while a seek waits, a gain change for the
    /// same channel) replaces it.
    pub fn vote(&mut self, event: Event) -> Result<(), VoteError> {
        match event {
            Event::None => return Err(VoteError::Nothing),
            Event::Lead { .. } => return Err(VoteError::NotAnAction),
            Event::Volume { gain_db, .. } if gain_db.is_nan() || gain_db == f32::INFINITY => {
                return Err(VoteError::InvalidGain);
            }
            _ => {}
        }
        // What the wire cannot carry (a set-list index past the longest
        // list) could be neither sent nor signed.
        if crate::wire::encode_to_vec(&event).is_err() {
            return Err(VoteError::OutOfRange);
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
        let gone: Vec<PeerId> = self
            .links
            .keys()
            .chain(self.members.keys())
            .copied()
            .collect();
        for peer in gone {
            self.timers.stop_peer(peer);
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

    /// The next local instant `handle_timeout` has work to do: the first entry
    /// of the timer table, or the next beat or decision (instants of session
    /// time, so read through the map, which steering moves).
    pub fn poll_timeout(&self) -> Option<i64> {
        let mut next = self.timers.next_ns();
        if let Some(map) = self.map {
            let mut at = |t: i64| next = Some(next.map_or(t, |n| n.min(t)));
            let beat = self.last_beat_round.map_or(0, |r| r.0 + 1);
            at(map.local_ns_at((beat as i64).saturating_mul(ROUND_NS)));
            if let Some(decide_at) = self.next_decide_at() {
                at(map.local_ns_at(decide_at));
            }
            // An action asked for within a round goes out at once.
            if let Some(r) = self.action_due() {
                at(map.local_ns_at(r.start_session_ns()));
            }
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
        self.history.latest()
    }

    /// The state decided for round `r`, if still in the history.
    pub fn decided_state(&self, r: Round) -> Option<&SessionState> {
        self.history.state(r)
    }

    /// How much this peer holds, for checking that no input grows it without
    /// bound (the simulator's hostile member).
    pub fn footprint(&self) -> Footprint {
        Footprint {
            links: self.links.len(),
            members: self.members.len(),
            decided_rounds: self.history.decided_len(),
            held_votes: self.history.held_len(),
            queued_actions: self.queued.len(),
            outputs: self.transmits.len() + self.events.len(),
        }
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

    // ----- output helpers -----------------------------------------------------

    fn send(&mut self, to: PeerId, message: Message) {
        self.transmits.push_back(Transmit { to, message });
    }

    fn ignore(&mut self, from: PeerId, reason: Ignored) {
        self.events
            .push_back(SessionEvent::Ignored { from, reason });
    }
}
