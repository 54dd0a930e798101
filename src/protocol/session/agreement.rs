//! Agreement: the beat (our heartbeat with our vote and the votes we relay),
//! holding others' votes, deciding rounds, comparing digests, and repairing a
//! divergence with snapshots.

use crate::protocol::choice::{Decision, Verdict};
use crate::protocol::message::{
    ClockEcho, ClockStamps, DecidedDigest, Heartbeat, MAX_RELAYED_VOTES, Message, Snapshot,
};
use crate::protocol::state::{Channel, Event, PeerId, ROUND_NS, Round, Vote};

use super::history::Hold;
use super::timers::Timer;
use super::{Ignored, Session, SessionEvent};

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
        if let Some(last) = self.history.last_round() {
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
        let Some(last) = self.history.last_round() else {
            return; // no state yet: the snapshot will carry what we need
        };
        if vote.round <= last {
            if !self.history.was_counted(&vote) && vote.event != Event::None {
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
        if self.history.hold(vote) == Hold::Full {
            self.ignore(from, Ignored::TooManyVotes { round: vote.round });
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

    pub(super) fn on_snapshot(&mut self, from: PeerId, snap: Snapshot) {
        let k = snap.round;
        if snap.state.changed_round > k {
            self.ignore(from, Ignored::BadSnapshot { round: k });
            return;
        }
        let (Some(first), Some(last)) = (self.history.first_round(), self.history.last_round())
        else {
            // A joiner's first state.
            self.rebase(k, snap, from);
            return;
        };
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
        let Some(ours) = self.history.state(k) else {
            return;
        };
        if rank(snap.state.changed_round, snap.state.digest())
            <= rank(ours.changed_round, ours.digest())
        {
            return; // ours wins (or is the same): nothing to adopt
        }
        // Our own votes applied since we last agreed with the winner may be gone.
        let since = self.agreed_with.get(&from).copied().unwrap_or(first);
        let lost = self.history.counted_between(since, k);
        self.supersede_own(lost, from);
        let cfg = &self.cfg;
        self.history
            .adopt(k, snap.state, snap.pending, |r| cfg.apply_at_session_ns(r));
        self.agreed_with.insert(from, k);
        if let Some((last, state)) = self.history.latest() {
            self.events.push_back(SessionEvent::Adopted {
                round: last,
                apply_at_session_ns: self.cfg.apply_at_session_ns(last),
                state: state.clone(),
                from,
            });
        }
    }

    /// Replaces the whole history with `snap` as its base.
    fn rebase(&mut self, k: Round, snap: Snapshot, from: PeerId) {
        let dropped = self.history.rebase(k, snap.state.clone(), snap.pending);
        self.supersede_own(dropped, from);
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

    /// At the start of each round: steer, cast our vote (the next queued
    /// action) and send the heartbeat. Before the first sync, an unsynced
    /// heartbeat every round lets the others sample our clock.
    pub(super) fn beat(&mut self, now_ns: i64) {
        let Some(map) = self.map else {
            if self
                .timers
                .get(Timer::UnsyncedBeat)
                .is_some_and(|at| now_ns >= at)
            {
                self.timers.set(Timer::UnsyncedBeat, now_ns + ROUND_NS);
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
        let open = self.history.last_round().is_some_and(|last| cur > last);
        let vote = if open {
            self.queued.pop_front().unwrap_or(Event::None)
        } else {
            Event::None
        };
        if open {
            self.history.hold_own(Vote {
                voter: self.me.peer_id,
                round: cur,
                event: vote,
            });
        }
        let relayed: Vec<Vote> = cur
            .0
            .checked_sub(1)
            .map(|prev| {
                self.history
                    .held(Round(prev))
                    .iter()
                    .filter(|v| v.event != Event::None)
                    .take(MAX_RELAYED_VOTES)
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        self.send_heartbeats(now_ns, cur, vote, relayed);
    }

    fn send_heartbeats(&mut self, now_ns: i64, round: Round, vote: Event, relayed: Vec<Vote>) {
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

    /// Decides every round whose decision instant has come.
    pub(super) fn decide_due(&mut self, now_ns: i64) {
        let Some(map) = self.map else { return };
        let session_now = map.session_ns_at(now_ns);
        while let Some(r) = self.history.next_round() {
            if self.cfg.decide_at_session_ns(r) > session_now {
                break;
            }
            let Some(decision) = self.history.decide_next(self.cfg.apply_at_session_ns(r)) else {
                break;
            };
            self.events.push_back(SessionEvent::Decided(decision));
        }
        self.history.drop_settled_votes();
    }
}

/// Orders diverged states: the later change wins, then the lower digest.
fn rank(changed_round: Round, digest: u64) -> (Round, std::cmp::Reverse<u64>) {
    (changed_round, std::cmp::Reverse(digest))
}

/// Actions of the same kind replace each other while queued.
pub fn action_kind(e: &Event) -> (u8, Option<Channel>) {
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
