//! The decided rounds and the votes held for the rounds still open: one type
//! that owns the rules of both, so the session's agreement code never edits
//! two maps in step by hand.

use std::collections::BTreeMap;

use crate::protocol::choice::{Decision, choose};
use crate::protocol::identity::SignedVote;
use crate::protocol::lead::apply_at_session_ns;
use crate::protocol::message::{MAX_PENDING_VOTES, MAX_RELAYED_VOTES, Snapshot};
use crate::protocol::state::{Event, Round, SessionState, Vote};

/// Votes held for one round: exactly what a heartbeat can relay, so a peer
/// counts no vote it could not pass on. When more arrive (a flood of forged
/// voters), a round keeps the [`MAX_VOTES_PER_ROUND`] lowest in canonical
/// order: keeping the lowest k of what one has and of what is relayed to one is
/// the lowest k of the union, so every peer that hears everything ends with the
/// same set, whatever the order it heard it in (NOTEBOOK.md, issue 19).
pub(super) const MAX_VOTES_PER_ROUND: usize = MAX_RELAYED_VOTES;

/// How far past the rounds it keeps a snapshot's votes may reach (a peer's
/// vote horizon, with margin).
const MERGE_SLACK_ROUNDS: usize = 64;

#[derive(Clone, Debug)]
struct Entry {
    state: SessionState,
    votes: Vec<SignedVote>,
}

/// What became of a vote offered to [`History::hold`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Hold {
    Held,
    /// Already held, or "no event" (which never counts): nothing changed.
    Duplicate,
    /// Held, and the round being full, this vote (the highest in canonical
    /// order) was let go for it.
    Evicted(Vote),
    /// The round has [`MAX_VOTES_PER_ROUND`] votes, all below this one.
    Full,
}

/// Adds `vote` to one round's set under the cap (see [`MAX_VOTES_PER_ROUND`]).
/// Votes are told apart by what they say: a copy with another proof is a
/// copy (the session checks every proof before a vote gets here).
fn hold_in(votes: &mut Vec<SignedVote>, vote: SignedVote) -> Hold {
    if vote.vote.event == Event::None || votes.iter().any(|v| v.vote == vote.vote) {
        return Hold::Duplicate;
    }
    if !room_in(votes, &vote.vote) {
        return Hold::Full;
    }
    if votes.len() < MAX_VOTES_PER_ROUND {
        votes.push(vote);
        return Hold::Held;
    }
    let Some((i, highest)) = votes
        .iter()
        .copied()
        .enumerate()
        .max_by_key(|(_, v)| v.vote.canonical_key())
    else {
        return Hold::Full;
    };
    votes[i] = vote;
    Hold::Evicted(highest.vote)
}

/// Whether a round holding `votes` keeps `vote` (not among them): it has
/// room, or holds a vote after it in canonical order (which it lets go).
fn room_in(votes: &[SignedVote], vote: &Vote) -> bool {
    votes.len() < MAX_VOTES_PER_ROUND
        || votes
            .iter()
            .any(|v| v.vote.canonical_key() > vote.canonical_key())
}

/// **Invariants:**
/// - decided rounds are contiguous, newest last, at most `keep_rounds` of them
///   (at least one once there is any);
/// - each decided round's state is `choose(previous state, its votes)`, except
///   the oldest, which is a base (created, adopted or rebased onto);
/// - votes are held only for rounds after the newest decided one (once it is
///   decided a vote can never count), at most [`MAX_VOTES_PER_ROUND`] per round
///   (ours included), the lowest in canonical order, without duplicates and
///   without "no event" (which never changes a decision).
#[derive(Clone, Debug)]
pub(super) struct History {
    decided: BTreeMap<Round, Entry>,
    pending: BTreeMap<Round, Vec<SignedVote>>,
    keep_rounds: usize,
}

impl History {
    /// No state yet (a joiner before its first snapshot).
    pub fn empty(keep_rounds: usize) -> History {
        History {
            decided: BTreeMap::new(),
            pending: BTreeMap::new(),
            keep_rounds: keep_rounds.max(1),
        }
    }

    /// A new session's history: `state`, decided as of `round`.
    pub fn starting_at(keep_rounds: usize, round: Round, state: SessionState) -> History {
        let mut h = History::empty(keep_rounds);
        h.decided.insert(
            round,
            Entry {
                state,
                votes: vec![],
            },
        );
        h
    }

    // ----- reading ----------------------------------------------------------

    /// The newest decided round and its state.
    pub fn latest(&self) -> Option<(Round, &SessionState)> {
        self.decided.last_key_value().map(|(r, e)| (*r, &e.state))
    }

    pub fn last_round(&self) -> Option<Round> {
        self.decided.last_key_value().map(|(r, _)| *r)
    }

    pub fn first_round(&self) -> Option<Round> {
        self.decided.first_key_value().map(|(r, _)| *r)
    }

    pub fn state(&self, r: Round) -> Option<&SessionState> {
        self.decided.get(&r).map(|e| &e.state)
    }

    /// Whether `vote` counted in the decision of its (decided) round.
    pub fn was_counted(&self, vote: &Vote) -> bool {
        self.decided
            .get(&vote.round)
            .is_some_and(|e| e.votes.iter().any(|v| v.vote == *vote))
    }

    /// Decided rounds kept.
    pub fn decided_len(&self) -> usize {
        self.decided.len()
    }

    /// Votes held for open rounds.
    pub fn held_len(&self) -> usize {
        self.pending.values().map(Vec::len).sum()
    }

    /// Whether `vote` is held for its open round.
    pub fn holds(&self, vote: &Vote) -> bool {
        self.held(vote.round).iter().any(|v| v.vote == *vote)
    }

    /// Whether [`History::hold`] would keep `vote` (not held yet): its
    /// round has room, or holds a vote after it in canonical order. Asked
    /// before a vote's proof is checked, so a full round costs no check.
    pub fn has_room_for(&self, vote: &Vote) -> bool {
        room_in(self.held(vote.round), vote)
    }

    /// Votes held for open round `r`.
    pub fn held(&self, r: Round) -> &[SignedVote] {
        self.pending.get(&r).map_or(&[], Vec::as_slice)
    }

    /// Every vote that counted in the rounds `(after, through]`.
    pub fn counted_between(&self, after: Round, through: Round) -> Vec<Vote> {
        self.decided
            .iter()
            .filter(|(r, _)| **r > after && **r <= through)
            .flat_map(|(_, e)| e.votes.iter())
            .map(|v| v.vote)
            .collect()
    }

    /// The newest decided state (or the one for `round`), with every vote held
    /// for the rounds after it: what a peer needs to take this history over.
    pub fn snapshot_after(&self, round: Option<Round>) -> Option<Snapshot> {
        let (k, entry) = match round {
            Some(r) => (r, self.decided.get(&r)?),
            None => self.decided.last_key_value().map(|(r, e)| (*r, e))?,
        };
        let mut pending: Vec<SignedVote> = self
            .decided
            .range(Round(k.0 + 1)..)
            .flat_map(|(_, e)| e.votes.iter())
            .chain(self.pending.values().flatten())
            .filter(|v| v.vote.event != Event::None)
            .copied()
            .collect();
        pending.truncate(MAX_PENDING_VOTES);
        Some(Snapshot {
            round: k,
            state: entry.state.clone(),
            pending,
        })
    }

    // ----- votes ------------------------------------------------------------

    /// Holds a vote (ours or another peer's) for its open round (the caller
    /// has checked that the round is open and within the horizon).
    pub fn hold(&mut self, vote: SignedVote) -> Hold {
        hold_in(self.pending.entry(vote.vote.round).or_default(), vote)
    }

    // ----- deciding -----------------------------------------------------------

    /// The round to decide next, once there is a state.
    pub fn next_round(&self) -> Option<Round> {
        self.last_round().map(|r| Round(r.0 + 1))
    }

    /// When the round after the newest decided one applies: its lead is the
    /// newest state's.
    pub fn next_apply_at_session_ns(&self) -> Option<i64> {
        let (last, state) = self.latest()?;
        Some(apply_at_session_ns(Round(last.0 + 1), state.lead.lead_ms))
    }

    /// When decided round `r` applied (or applies), if the round before it
    /// is still here; the base's is unknown.
    pub fn apply_at_session_ns(&self, r: Round) -> Option<i64> {
        let before = self.decided.get(&Round(r.0.checked_sub(1)?))?;
        Some(apply_at_session_ns(r, before.state.lead.lead_ms))
    }

    /// Decides the next round from the votes held for it, to apply at the
    /// lead of the state before it, and forgets the oldest rounds past the
    /// limit.
    pub fn decide_next(&mut self) -> Option<Decision> {
        let (&last, entry) = self.decided.last_key_value()?;
        let r = Round(last.0 + 1);
        let prev = entry.state.clone();
        let votes = self.pending.remove(&r).unwrap_or_default();
        let decision = choose(
            &prev,
            r,
            apply_at_session_ns(r, prev.lead.lead_ms),
            &unsigned(&votes),
        );
        self.decided.insert(
            r,
            Entry {
                state: decision.state.clone(),
                votes,
            },
        );
        while self.decided.len() > self.keep_rounds {
            self.decided.pop_first();
        }
        Some(decision)
    }

    /// Drops the votes held for rounds already decided: they can never count.
    pub fn drop_settled_votes(&mut self) {
        if let Some(last) = self.last_round() {
            self.pending = self.pending.split_off(&Round(last.0 + 1));
        }
    }

    // ----- repair -------------------------------------------------------------

    /// Replaces the state decided for `k` (a decided round) with `state`, takes
    /// in the snapshot's votes for later rounds, and decides the rounds after
    /// `k` again on top of it. Returns the votes the snapshot's pushed out of
    /// full rounds.
    pub fn adopt(&mut self, k: Round, state: SessionState, votes: Vec<SignedVote>) -> Vec<Vote> {
        let Some(entry) = self.decided.get_mut(&k) else {
            return vec![];
        };
        entry.state = state;
        let evicted = self.merge_votes(k, votes);
        let later: Vec<Round> = self
            .decided
            .range(Round(k.0 + 1)..)
            .map(|(r, _)| *r)
            .collect();
        for r in later {
            let prev = self.decided[&Round(r.0 - 1)].state.clone();
            let at_ns = apply_at_session_ns(r, prev.lead.lead_ms);
            let d = choose(&prev, r, at_ns, &unsigned(&self.decided[&r].votes));
            if let Some(e) = self.decided.get_mut(&r) {
                e.state = d.state;
            }
        }
        evicted
    }

    /// Replaces the whole history with `state` as of round `k` and the
    /// snapshot's votes for later rounds. Returns the votes this peer held for
    /// rounds up to `k`, which the new base makes moot, and those the
    /// snapshot's pushed out of full rounds.
    pub fn rebase(
        &mut self,
        k: Round,
        state: SessionState,
        votes: Vec<SignedVote>,
    ) -> (Vec<Vote>, Vec<Vote>) {
        let dropped: Vec<Vote> = self
            .pending
            .range(..=k)
            .flat_map(|(_, vs)| vs)
            .map(|v| v.vote)
            .collect();
        self.pending = self.pending.split_off(&Round(k.0 + 1));
        self.decided.clear();
        self.decided.insert(
            k,
            Entry {
                state,
                votes: vec![],
            },
        );
        let evicted = self.merge_votes(k, votes);
        (dropped, evicted)
    }

    /// Moves the newest state to round `base` as the only decided round and
    /// drops the votes held for rounds up to `base`, which it returns. The
    /// rounds between would repeat it (no votes are held for them) but for
    /// the lead, which ages a round at a time: forwards it is aged as they
    /// would have (the first 100 rounds step it down, as far as any lead
    /// goes; the last forgets what is stale); backwards, nothing in it may be
    /// later than `base`.
    pub fn rekey(&mut self, base: Round) -> Vec<Vote> {
        let Some((last, state)) = self.latest() else {
            return vec![];
        };
        let mut state = state.clone();
        if base > last {
            for r in (last.0 + 1..base.0).take(100) {
                state.lead.age(Round(r));
            }
            state.lead.age(base);
        } else {
            for n in &mut state.lead.needs {
                n.round = n.round.min(base);
            }
            state.changed_round = state.changed_round.min(base);
        }
        self.rebase(base, state, vec![]).0
    }

    /// Whether a snapshot of round `k` may bring a vote for round `r`: after
    /// `k`, and no further than `keep_rounds` + [`MERGE_SLACK_ROUNDS`].
    fn merges_into(keep_rounds: usize, k: Round, r: Round) -> bool {
        r > k && r.0 <= k.0 + (keep_rounds + MERGE_SLACK_ROUNDS) as u64
    }

    /// Of a snapshot's votes for after round `k`, those a merge could hold:
    /// in the rounds it takes (see [`History::merge_votes`]), at most
    /// [`MAX_VOTES_PER_ROUND`] a round, the lowest in canonical order, no
    /// copies and no "no event" (an honest snapshot has no other). The
    /// rest are dropped before anyone checks their proofs.
    pub fn mergeable(&self, k: Round, mut votes: Vec<SignedVote>) -> Vec<SignedVote> {
        votes.retain(|v| {
            Self::merges_into(self.keep_rounds, k, v.vote.round) && v.vote.event != Event::None
        });
        votes.sort_by_key(|v| v.vote.canonical_key());
        votes.dedup_by(|a, b| a.vote == b.vote);
        let mut per_round: BTreeMap<Round, usize> = BTreeMap::new();
        votes.retain(|v| {
            let n = per_round.entry(v.vote.round).or_default();
            *n += 1;
            *n <= MAX_VOTES_PER_ROUND
        });
        votes
    }

    /// Adds `votes` (for rounds after `k`) to the decided entries and the votes
    /// held, within the per-round limit.
    /// Rounds further than `keep_rounds` + [`MERGE_SLACK_ROUNDS`] after `k`
    /// are no round a snapshot of this history could cover: dropped, so
    /// snapshots cannot plant votes for arbitrary rounds.
    fn merge_votes(&mut self, k: Round, votes: Vec<SignedVote>) -> Vec<Vote> {
        let mut evicted = Vec::new();
        let keep = self.keep_rounds;
        for v in votes
            .into_iter()
            .filter(|v| Self::merges_into(keep, k, v.vote.round))
        {
            let set = match self.decided.get_mut(&v.vote.round) {
                Some(e) => &mut e.votes,
                None => self.pending.entry(v.vote.round).or_default(),
            };
            if let Hold::Evicted(out) = hold_in(set, v) {
                evicted.push(out);
            }
        }
        evicted
    }
}

/// What the choice function reads of signed votes.
fn unsigned(votes: &[SignedVote]) -> Vec<Vote> {
    votes.iter().map(|v| v.vote).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::state::PeerId;

    /// A vote with a proof that proves nothing: `History` holds what the
    /// session checked, and never looks at proofs.
    fn vote(voter: u64, round: u64, event: Event) -> SignedVote {
        SignedVote {
            vote: Vote {
                voter: PeerId(voter),
                round: Round(round),
                event,
            },
            proof: crate::protocol::identity::VoteProof {
                key: crate::protocol::identity::PeerKey([0; 32]),
                signature: [0; 64],
            },
        }
    }

    fn history(keep: usize) -> History {
        History::starting_at(keep, Round(0), SessionState::new(10_000_000_000, 2))
    }

    /// Deciding keeps at most `keep_rounds` contiguous rounds, takes the votes
    /// held for the round, and a vote for a decided round is never held again.
    #[test]
    fn deciding_moves_votes_and_forgets_old_rounds() {
        let mut h = history(3);
        assert_eq!(h.hold(vote(1, 1, Event::Play)), Hold::Held);
        assert_eq!(h.hold(vote(1, 1, Event::Play)), Hold::Duplicate);
        for r in 1..=5 {
            let d = h.decide_next().expect("has a state");
            assert_eq!(d.round, Round(r as u64));
        }
        assert_eq!(h.first_round(), Some(Round(3)));
        assert_eq!(h.last_round(), Some(Round(5)));
        assert!(h.latest().is_some_and(|(_, s)| s.timeline.playing));
        assert!(
            !h.was_counted(&vote(1, 1, Event::Play).vote),
            "round 1 is forgotten"
        );
        h.hold(vote(2, 4, Event::Pause));
        h.drop_settled_votes();
        assert!(h.held(Round(4)).is_empty());
    }

    /// A round holds at most `MAX_VOTES_PER_ROUND` votes, the lowest in
    /// canonical order, and never "no event".
    #[test]
    fn a_round_holds_a_bounded_number_of_votes() {
        let mut h = history(10);
        for voter in 1..=MAX_VOTES_PER_ROUND as u64 {
            assert_eq!(h.hold(vote(voter, 1, Event::Play)), Hold::Held);
        }
        assert_eq!(h.hold(vote(9999, 1, Event::Play)), Hold::Full);
        let top = MAX_VOTES_PER_ROUND as u64;
        assert_eq!(
            h.hold(vote(0, 1, Event::Pause)),
            Hold::Evicted(vote(top, 1, Event::Play).vote)
        );
        assert_eq!(h.held(Round(1)).len(), MAX_VOTES_PER_ROUND);
        assert_eq!(h.hold(vote(5000, 2, Event::None)), Hold::Duplicate);
        assert!(h.held(Round(2)).is_empty());
    }

    proptest::proptest! {
        /// Two peers each hear part of a round's votes (in their own order),
        /// then each other's held set (the relays): both end with the same
        /// set, the lowest k of all, whatever the order.
        #[test]
        fn capped_sets_converge_through_relays(
            heard in proptest::collection::vec((0u64..200, 0u8..3, proptest::bool::ANY), 0..300),
        ) {
            let (mut a, mut b) = (history(10), history(10));
            let mut all = Vec::new();
            for (voter, e, to_a) in heard {
                let event = match e { 0 => Event::Play, 1 => Event::Pause, _ => Event::None };
                let v = vote(voter, 1, event);
                all.push(v);
                if to_a { a.hold(v); } else { b.hold(v); }
            }
            let (ra, rb) = (a.held(Round(1)).to_vec(), b.held(Round(1)).to_vec());
            for v in rb.iter().rev() { a.hold(*v); }
            for v in &ra { b.hold(*v); }
            let sorted = |h: &History| {
                let mut v = h.held(Round(1)).to_vec();
                v.sort_by_key(|v| v.vote.canonical_key());
                v
            };
            let mut lowest: Vec<SignedVote> =
                all.into_iter().filter(|v| v.vote.event != Event::None).collect();
            lowest.sort_by_key(|v| v.vote.canonical_key());
            lowest.dedup();
            lowest.truncate(MAX_VOTES_PER_ROUND);
            proptest::prop_assert_eq!(sorted(&a), lowest.clone());
            proptest::prop_assert_eq!(sorted(&b), lowest);
        }
    }

    /// A rebase drops the history, keeps later votes, and gives back the votes
    /// held for rounds the new base covers.
    #[test]
    fn rebase_returns_the_votes_it_makes_moot() {
        let mut h = history(10);
        h.hold(vote(1, 2, Event::Play));
        h.hold(vote(1, 9, Event::Pause));
        let (dropped, _) = h.rebase(
            Round(5),
            SessionState::new(10_000_000_000, 2),
            vec![vote(3, 7, Event::Play), vote(3, 4, Event::Play)],
        );
        assert_eq!(dropped, vec![vote(1, 2, Event::Play).vote]);
        assert_eq!(h.first_round(), Some(Round(5)));
        assert_eq!(h.held(Round(7)), &[vote(3, 7, Event::Play)]);
        assert_eq!(h.held(Round(9)), &[vote(1, 9, Event::Pause)]);
        assert!(
            h.held(Round(4)).is_empty(),
            "votes at or before the base are dropped"
        );
    }

    /// A base re-keyed forwards has its lead aged as the rounds between
    /// would have; backwards, nothing in it is later than the new base.
    #[test]
    fn rekey_ages_the_lead() {
        let mut state = SessionState::new(10_000_000_000, 2);
        state.lead.record(PeerId(1), 40, Round(0));
        let mut h = History::starting_at(8, Round(0), state.clone());
        h.rekey(Round(200));
        let (_, s) = h.latest().unwrap();
        assert_eq!(s.lead.lead_ms, 40, "stepped down before the need expired");
        assert!(s.lead.needs.is_empty(), "expired");
        state.lead.record(PeerId(1), 40, Round(500));
        state.changed_round = Round(500);
        let mut h = History::starting_at(8, Round(500), state);
        h.rekey(Round(300));
        let (_, s) = h.latest().unwrap();
        assert_eq!(s.check(Round(300), i64::MAX), Ok(()));
    }
}
