//! Agreement: the beat (our heartbeat with our vote and the votes we relay),
//! holding others' votes, deciding rounds, comparing digests, and repairing a
//! divergence with snapshots.

use crate::protocol::choice::{Decision, Verdict};
use crate::protocol::identity::SignedVote;
use crate::protocol::lead::{LEAD_START_MS, apply_at_session_ns, latest_apply_at_session_ns};
use crate::protocol::library::SongId;
use crate::protocol::message::{
    ClockEcho, ClockStamps, DecidedDigest, Heartbeat, MAX_RELAYED_VOTES, Message, Snapshot,
};
use crate::protocol::state::{Channel, Event, PeerId, ROUND_NS, Round, SongRef, Vote};

use super::history::Hold;
use super::timers::Timer;
use super::{DropReason, Ignored, Session, SessionEvent};

impl Session {
    pub(super) fn on_heartbeat(&mut self, now_ns: i64, from: PeerId, hb: Heartbeat) {
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
        // Nobody synced before the session began (0 is its creator): an
        // earlier claim is a lie, and makes the peer the least senior.
        let seniority = if hb.synced_at_session_ns < 0 {
            i64::MAX
        } else {
            hb.synced_at_session_ns
        };
        if link.map.is_none_or(|(_, sent)| hb.clock.sent_ns >= sent) {
            link.map = Some((map, hb.clock.sent_ns));
            link.synced_at_session_ns = seniority;
        }
        self.note_vote_delay(from, map, hb.clock.sent_ns, now_ns);
        let Some(link) = self.links.get_mut(&from) else {
            return;
        };
        if hb.decided.is_some() {
            link.decided = hb.decided;
        }
        if seniority != hb.synced_at_session_ns {
            self.ignore(from, Ignored::BadSeniority);
        }
        if !was_synced {
            self.choose_root(now_ns);
        }
        if hb.decided.is_none() {
            // Synced but with no state (its history was refused or reset):
            // ours may be what it needs.
            self.offer_snapshot(from);
        }
        if let Some(last) = self.history.last_round() {
            if hb.round > last {
                self.stats.heartbeats_on_time += 1;
            } else {
                self.stats.heartbeats_late += 1;
            }
        }
        // A vote new to us for a round whose relay we already sent (cast
        // late in its round) is relayed at once, so that a peer whose link
        // to its voter is down still has it before deciding.
        let mut late = Vec::new();
        // A vote with no proof is a forgery too: it discredits the link,
        // and then no vote of it is read (see `discredit`).
        let own = hb.signed_vote_of(from);
        if own.is_none() && hb.vote != Event::None {
            self.discredit(from, from);
        }
        for v in own
            .into_iter()
            .chain(hb.relayed.into_iter().take(MAX_RELAYED_VOTES))
        {
            if self.is_discredited(from) {
                break;
            }
            if self.accept_vote(from, v)
                && self.last_beat_round.is_some_and(|b| v.vote.round < b)
                && !late.contains(&v.vote.round)
            {
                late.push(v.vote.round);
            }
        }
        if let Some(claim) = hb.decided {
            self.compare(from, claim);
        }
        self.relay_late(now_ns, &late);
    }

    fn is_discredited(&self, peer: PeerId) -> bool {
        self.links.get(&peer).is_some_and(|l| l.discredited)
    }

    /// `from` sent a vote under `voter`'s id without a valid proof: said once,
    /// and nothing it says of votes (heartbeat votes, relays, snapshots) is
    /// read again while its link lasts.
    fn discredit(&mut self, from: PeerId, voter: PeerId) {
        if let Some(link) = self.links.get_mut(&from) {
            link.discredited = true;
        }
        self.ignore(from, Ignored::ForgedVote { voter });
    }

    /// Sends every vote we hold for `rounds` (votes that arrived after our
    /// heartbeat relaying their round went out) in a heartbeat of its own;
    /// once a round at most, so that a peer sending votes no one had cannot
    /// make every peer send a heartbeat to every other for each message.
    fn relay_late(&mut self, now_ns: i64, rounds: &[Round]) {
        let Some(r) = self.last_beat_round else {
            return;
        };
        if rounds.is_empty() || self.late_relay_round == Some(r) {
            return;
        }
        self.late_relay_round = Some(r);
        let relayed: Vec<SignedVote> = rounds
            .iter()
            .flat_map(|&l| self.history.held(l).to_vec())
            .take(MAX_RELAYED_VOTES)
            .collect();
        self.send_heartbeats(now_ns, r, None, relayed);
    }

    /// Holds a vote for its round if that round is open here. "No event" is
    /// never held: it changes no decision (and is never relayed). A vote new
    /// here is held only if its proof shows it is its voter's (checked last,
    /// so that copies and votes out of the window cost no signature check).
    /// Returns whether the vote is new here.
    fn accept_vote(&mut self, from: PeerId, signed: SignedVote) -> bool {
        let vote = signed.vote;
        if vote.event == Event::None {
            return false;
        }
        let Some(last) = self.history.last_round() else {
            return false; // no state yet: the snapshot will carry what we need
        };
        if vote.round <= last {
            if !self.history.was_counted(&vote) {
                let reason = if last.0 - vote.round.0 > self.cfg.history_rounds as u64 {
                    Ignored::VoteOutOfWindow { round: vote.round }
                } else {
                    Ignored::LateVote { round: vote.round }
                };
                self.ignore(from, reason);
            }
            return false;
        }
        // Unsynced (a joiner with a snapshot) we cannot tell the current round:
        // hold up to 5 s of rounds past the snapshot.
        let horizon = match self.current_round() {
            Some(cur) => cur.0 + self.cfg.vote_horizon_rounds,
            None => last.0 + 50,
        };
        if vote.round.0 > horizon {
            self.ignore(from, Ignored::VoteOutOfWindow { round: vote.round });
            return false;
        }
        if self.history.holds(&vote) {
            return false;
        }
        if !self.history.has_room_for(&vote) {
            self.ignore(from, Ignored::TooManyVotes { round: vote.round });
            return false;
        }
        if signed.verify().is_err() {
            self.discredit(from, vote.voter);
            return false;
        }
        match self.history.hold(signed) {
            Hold::Held => true,
            Hold::Duplicate => false,
            Hold::Full => {
                self.ignore(from, Ignored::TooManyVotes { round: vote.round });
                false
            }
            Hold::Evicted(out) => {
                self.ignore(from, Ignored::TooManyVotes { round: vote.round });
                self.lost_own(out, DropReason::RoundFull);
                true
            }
        }
    }

    /// Tells the user one of their votes will never be decided (a vote under
    /// our id that we did not cast is a forgery: not theirs to hear of).
    fn lost_own(&mut self, vote: Vote, reason: DropReason) {
        if self.cast.contains(&vote) {
            self.events.push_back(SessionEvent::VoteDropped {
                event: vote.event,
                reason,
            });
        }
    }

    /// Sends `to` our latest state unasked, at most once a second: it has
    /// none, or refused ours as not this session's (and if it is the one
    /// that is wrong, once its source is gone it takes ours).
    fn offer_snapshot(&mut self, to: PeerId) {
        let Some(cur) = self.current_round() else {
            return;
        };
        if self.offered.get(&to).is_some_and(|r| cur.0 < r.0 + 10) {
            return;
        }
        if let Some(snapshot) = self.history.snapshot_after(None) {
            self.offered.insert(to, cur);
            self.send(to, Message::Snapshot(snapshot));
        }
    }

    /// Compares a peer's latest decision with ours for the same round, and sends
    /// it our state if ours ranks higher.
    fn compare(&mut self, from: PeerId, claim: DecidedDigest) {
        let Some(ours) = self.history.state(claim.round) else {
            return;
        };
        let digest = ours.digest();
        if digest == claim.digest {
            self.agreed_with.insert(from, claim.round);
            return;
        }
        if rank(ours.changed_round, digest) > rank(claim.changed_round, claim.digest)
            && self.repaired.get(&from).is_none_or(|&r| r < claim.round)
        {
            self.repaired.insert(from, claim.round);
            if let Some(snapshot) = self.history.snapshot_after(Some(claim.round)) {
                self.send(from, Message::Snapshot(snapshot));
            }
        }
    }

    /// A peer's state as decided for round `k`, with the votes it holds for
    /// later rounds: checked against where we are and what the session is
    /// before anything of it is used, then adopted if it ranks higher.
    pub(super) fn on_snapshot(&mut self, from: PeerId, mut snap: Snapshot) {
        let k = snap.round;
        // Only a round near ours: no older than our history reaches, no later
        // than a vote could be (a joiner not synced yet takes any: its first
        // decide re-keys a base far from its time, see `decide_due`).
        if let Some(cur) = self.current_round() {
            let oldest = cur.0.saturating_sub(self.cfg.history_rounds as u64);
            if k.0 < oldest || k.0 > cur.0 + self.cfg.vote_horizon_rounds {
                self.ignore(from, Ignored::BadSnapshot { round: k });
                return;
            }
        }
        if snap.state.check(k, latest_apply_at_session_ns(k)).is_err() {
            self.ignore(from, Ignored::BadSnapshot { round: k });
            return;
        }
        let (Some(first), Some(last)) = (self.history.first_round(), self.history.last_round())
        else {
            // A joiner's first state.
            if self.proven(from, &mut snap) {
                self.rebase(k, snap, from);
            }
            return;
        };
        if k > last {
            if let Some(cur) = self.current_round()
                && last.0 + self.cfg.vote_horizon_rounds >= cur.0
            {
                // Synced and deciding: a round ahead of us is a peer slightly
                // earlier in time (or one that wants to skip our rounds); we
                // decide those rounds ourselves and compare digests.
                return;
            }
            // We fell behind (we were not deciding): take it as our new base.
            if self.proven(from, &mut snap) {
                self.rebase(k, snap, from);
            }
            return;
        }
        if k < first {
            self.ignore(from, Ignored::BadSnapshot { round: k });
            return;
        }
        let Some(ours) = self.history.state(k) else {
            return;
        };
        if rank(snap.state.changed_round, snap.state.digest())
            <= rank(ours.changed_round, ours.digest())
        {
            return; // ours wins (or is the same): nothing to adopt
        }
        if !self.proven(from, &mut snap) {
            return;
        }
        // Our own votes applied since we last agreed with the winner may be gone.
        let since = self.agreed_with.get(&from).copied().unwrap_or(first);
        let lost = self.history.counted_between(since, k);
        self.supersede_own(lost, from);
        let evicted = self.history.adopt(k, snap.state, snap.pending);
        for vote in evicted {
            self.lost_own(vote, DropReason::RoundFull);
        }
        self.agreed_with.insert(from, k);
        if let Some((last, state)) = self.history.latest() {
            self.events.push_back(SessionEvent::Adopted {
                round: last,
                apply_at_session_ns: self.apply_at_of(last),
                state: state.clone(),
                from,
            });
        }
    }

    /// When decided round `r` applies: from the lead of the state before it,
    /// or for a base (whose round before is not here), from its own.
    fn apply_at_of(&self, r: Round) -> i64 {
        self.history.apply_at_session_ns(r).unwrap_or_else(|| {
            let lead_ms = self
                .history
                .state(r)
                .map_or(LEAD_START_MS, |s| s.lead.lead_ms);
            apply_at_session_ns(r, lead_ms)
        })
    }

    /// When this peer decides the next round: its guard before it applies,
    /// but never before the round has ended. A guard longer than the lead
    /// plus a round (a device that renders far ahead, where the session's
    /// lead is small) would otherwise decide rounds before they start: this
    /// peer could never vote in one, not even to say it needs a longer lead.
    /// Until the lead covers it, its decisions reach its engine late.
    pub(super) fn next_decide_at(&self) -> Option<i64> {
        let r = self.history.next_round()?;
        let at = self.history.next_apply_at_session_ns()?;
        let round_end = Round(r.0.saturating_add(1)).start_session_ns();
        Some(at.saturating_sub(self.cfg.decide_guard_ns).max(round_end))
    }

    /// Keeps of a snapshot's votes those a merge could hold (its rounds, at
    /// most a round's worth each: `History::mergeable`) and checks each of
    /// them we do not hold already. An honest peer holds no vote without its
    /// proof, so one forgery refuses the snapshot and discredits its sender.
    /// Checked only once the snapshot would be used: a snapshot we would
    /// drop costs no signature check, one we use at most a check per vote
    /// it can add.
    fn proven(&mut self, from: PeerId, snap: &mut Snapshot) -> bool {
        if self.is_discredited(from) {
            return false;
        }
        snap.pending = self
            .history
            .mergeable(snap.round, std::mem::take(&mut snap.pending));
        let forged = snap.pending.iter().find(|v| {
            !self.history.holds(&v.vote)
                && !self.history.was_counted(&v.vote)
                && v.verify().is_err()
        });
        match forged.map(|v| v.vote.voter) {
            Some(voter) => {
                self.discredit(from, voter);
                false
            }
            None => true,
        }
    }

    /// Replaces the whole history with `snap` as its base.
    fn rebase(&mut self, k: Round, snap: Snapshot, from: PeerId) {
        let (dropped, evicted) = self.history.rebase(k, snap.state.clone(), snap.pending);
        self.supersede_own(dropped, from);
        for vote in evicted {
            self.lost_own(vote, DropReason::RoundFull);
        }
        self.agreed_with.insert(from, k);
        self.events.push_back(SessionEvent::Adopted {
            round: k,
            apply_at_session_ns: self.apply_at_of(k),
            state: snap.state,
            from,
        });
    }

    /// Tells the user which of their actions among `votes` lost to `by`'s state.
    fn supersede_own(&mut self, votes: Vec<Vote>, by: PeerId) {
        for vote in votes.into_iter().filter(|v| self.cast.contains(v)) {
            self.events.push_back(SessionEvent::Superseded { vote, by });
        }
    }

    /// At the start of each round: steer, cast our vote (the next queued
    /// action, else our need for the lead if it is due) and send the
    /// heartbeat. An action asked for later in the round, if we cast none in
    /// it yet, goes out at once in a heartbeat of its own: a vote waits for
    /// nothing but its round's end. Before the first sync, an unsynced
    /// heartbeat every round lets the others sample our clock.
    pub(super) fn beat(&mut self, now_ns: i64) {
        let Some(map) = self.map else {
            if self
                .timers
                .get(Timer::UnsyncedBeat)
                .is_some_and(|at| now_ns >= at)
            {
                self.timers.set(Timer::UnsyncedBeat, now_ns + ROUND_NS);
                self.send_heartbeats(now_ns, Round(0), None, vec![]);
            }
            return;
        };
        let cur = Round::containing(map.session_ns_at(now_ns));
        if self.last_beat_round.is_some_and(|r| r >= cur) {
            self.act_within_round(now_ns);
            return;
        }
        self.steer_to_root(now_ns);
        let Some(map) = self.map else { return };
        let cur = Round::containing(map.session_ns_at(now_ns));
        if self.last_beat_round.is_some_and(|r| r >= cur) {
            self.act_within_round(now_ns);
            return;
        }
        self.last_beat_round = Some(cur);
        // Only vote once we have a state to vote on and the round is open,
        // and one action a round (after a step back, a round we acted in may
        // come again).
        let open = self.round_open(cur);
        let may_act = open && self.acted_round.is_none_or(|a| a < cur);
        let action = may_act.then(|| self.queued.pop_front()).flatten();
        if action.is_some() {
            self.acted_round = Some(cur);
        }
        let need = if open { self.need_vote(cur) } else { None };
        let vote = action.or(need).and_then(|v| self.cast_own(cur, v));
        // Every vote held for the previous round: the cap makes them fit.
        let relayed = self.relayed_for(cur);
        self.send_heartbeats(now_ns, cur, vote, relayed);
        // A need due in a round that carried an action goes in a heartbeat
        // of its own: it is not an action, and a user busy with a fader must
        // not let it expire.
        if let (Some(_), Some(need)) = (action, need) {
            let need = self.cast_own(cur, need);
            self.send_heartbeats(now_ns, cur, need, vec![]);
        }
    }

    /// Whether we can vote in round `r`: we have a state and have not
    /// decided `r` yet.
    fn round_open(&self, r: Round) -> bool {
        self.history.last_round().is_some_and(|last| r > last)
    }

    /// Whether an action waits that can go out before the next round starts
    /// (see [`Session::poll_timeout`]). Only while we are linked to every
    /// member we know: a vote cast late in its round reaches a peer whose
    /// link to us is down only through a relay, which would come too late
    /// (`lead − guard` covers one delay, not two); with a link down, an
    /// action waits for the next heartbeat, which every peer relays in time.
    pub(super) fn action_due(&self) -> Option<Round> {
        let r = self.last_beat_round?;
        let ready = !self.queued.is_empty()
            && self.members.is_empty()
            && self.acted_round.is_none_or(|a| a < r)
            && self.round_open(r);
        ready.then_some(r)
    }

    /// Casts the next queued action in the round we last beat, if we cast
    /// none in it yet, in a heartbeat of its own.
    fn act_within_round(&mut self, now_ns: i64) {
        let Some(r) = self.action_due() else { return };
        let Some(action) = self.queued.pop_front() else {
            return;
        };
        self.acted_round = Some(r);
        let vote = self.cast_own(r, action);
        let relayed = self.relayed_for(r);
        self.send_heartbeats(now_ns, r, vote, relayed);
    }

    /// Every vote held for the round before `r`, which a heartbeat of `r`
    /// relays (the cap makes them fit).
    fn relayed_for(&self, r: Round) -> Vec<SignedVote> {
        let relayed: Vec<SignedVote> =
            r.0.checked_sub(1)
                .map(|prev| self.history.held(Round(prev)).to_vec())
                .unwrap_or_default();
        debug_assert!(relayed.len() <= MAX_RELAYED_VOTES);
        relayed
    }

    /// Signs and holds our own vote for round `cur` (a user's action is
    /// remembered as cast, so that its fate is reported); returns it, to
    /// send, unless the round is decided here already or it is "no event".
    fn cast_own(&mut self, cur: Round, vote: Event) -> Option<SignedVote> {
        if self.round_open(cur) && vote != Event::None {
            let signed = self.signer.sign_vote(cur, vote);
            let own = signed.vote;
            if !matches!(vote, Event::Lead { .. }) {
                if self.cast.len() >= MAX_CAST_REMEMBERED {
                    self.cast.pop_front();
                }
                self.cast.push_back(own);
            }
            // Ours is held under the same cap as everyone's, so that we decide
            // from the same set as the peers we relay it to.
            match self.history.hold(signed) {
                Hold::Held | Hold::Duplicate => {}
                Hold::Full => self.lost_own(own, DropReason::RoundFull),
                Hold::Evicted(out) => self.lost_own(out, DropReason::RoundFull),
            }
            return Some(signed);
        }
        None
    }

    /// Sends our heartbeat for `round` to every link, with `vote` (ours,
    /// signed; none: "no event") and the votes it relays.
    fn send_heartbeats(
        &mut self,
        now_ns: i64,
        round: Round,
        vote: Option<SignedVote>,
        relayed: Vec<SignedVote>,
    ) {
        let decided = self.history.latest().map(|(r, state)| DecidedDigest {
            round: r,
            digest: state.digest(),
            changed_round: state.changed_round,
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
                    vote: vote.map_or(Event::None, |v| v.vote.event),
                    proof: vote.map(|v| v.proof),
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

    /// Decides every round whose decision instant has come.
    pub(super) fn decide_due(&mut self, now_ns: i64) {
        let Some(map) = self.map else { return };
        let session_now = map.session_ns_at(now_ns);
        // Work is bounded by what we hold, never by a round a peer claims: a
        // base far behind our time (a step forward, an old snapshot) or far
        // ahead of it (a step back) is moved to just before now, as the
        // rounds between could only repeat its state (we hold no votes for
        // them).
        let cur = Round::containing(session_now).min(Round::MAX);
        if let Some(last) = self.history.last_round()
            && (cur.0 > last.0 + self.cfg.history_rounds as u64
                || last.0 > cur.0 + self.cfg.vote_horizon_rounds)
        {
            let base = Round(cur.0.saturating_sub(2));
            for vote in self.history.rekey(base) {
                self.lost_own(vote, DropReason::TimeMoved);
            }
        }
        // At most the rounds between the base and now (after the re-key
        // above, a round or two), never past the last round there is.
        let mut budget = self.cfg.history_rounds + 8;
        while let (Some(r), Some(decide_at)) = (self.history.next_round(), self.next_decide_at()) {
            if decide_at > session_now || r > Round::MAX || budget == 0 {
                break;
            }
            budget -= 1;
            let Some(decision) = self.history.decide_next() else {
                break;
            };
            self.events.push_back(SessionEvent::Decided(decision));
        }
        self.history.drop_settled_votes();
    }
}

/// Our own votes remembered, to tell them from forgeries under our id: the
/// rounds a repair can still reach (the history), with margin.
const MAX_CAST_REMEMBERED: usize = 1024;

/// Orders diverged states: the later change wins, then the lower digest.
fn rank(changed_round: Round, digest: u64) -> (Round, std::cmp::Reverse<u64>) {
    (changed_round, std::cmp::Reverse(digest))
}

/// What an action is about: actions of the same kind replace each other
/// while queued (the latest seek, the latest fader position, the latest song
/// change); set-list edits of different songs are different kinds, so each
/// is cast in turn.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ActionKind {
    None,
    Transport,
    Seek,
    Volume(Channel),
    Mute(Channel),
    SongChange,
    Queue(SongRef),
    Unqueue(SongId),
    Move(SongId),
    /// A need for the lead: cast by the session core, never queued.
    Lead,
}

/// The kind of an action (see [`ActionKind`]).
pub fn action_kind(e: &Event) -> ActionKind {
    match *e {
        Event::None => ActionKind::None,
        Event::Play | Event::Pause => ActionKind::Transport,
        Event::Seek { .. } => ActionKind::Seek,
        Event::Volume { channel, .. } => ActionKind::Volume(channel),
        Event::Mute { channel, .. } => ActionKind::Mute(channel),
        Event::Load(_) | Event::Next | Event::Prev => ActionKind::SongChange,
        Event::Queue(song) => ActionKind::Queue(song),
        Event::Unqueue { song, .. } => ActionKind::Unqueue(song),
        Event::Move { song, .. } => ActionKind::Move(song),
        Event::Lead { .. } => ActionKind::Lead,
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
