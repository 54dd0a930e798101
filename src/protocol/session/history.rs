//! The decided rounds and the votes held for the rounds still open: one type
//! that owns the rules of both, so the session's agreement code never edits
//! two maps in step by hand.

use std::collections::BTreeMap;

use crate::protocol::choice::{Decision, choose};
use crate::protocol::message::{MAX_PENDING_VOTES, MAX_RELAYED_VOTES, Snapshot};
use crate::protocol::state::{Event, Round, SessionState, Vote};

/// Votes allowed for one round (every peer's own plus relays, with margin).
pub(super) const MAX_VOTES_PER_ROUND: usize = 4 * MAX_RELAYED_VOTES;

#[derive(Clone, Debug)]
struct Entry {
    state: SessionState,
    votes: Vec<Vote>,
}

/// What became of a vote offered to [`History::hold`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Hold {
    Held,
    /// Already held: nothing changed.
    Duplicate,
    /// The round has [`MAX_VOTES_PER_ROUND`] votes already.
    Full,
}

/// **Invariants:**
/// - decided rounds are contiguous, newest last, at most `keep_rounds` of them
///   (at least one once there is any);
/// - each decided round's state is `choose(previous state, its votes)`, except
///   the oldest, which is a base (created, adopted or rebased onto);
/// - votes are held only for rounds after the newest decided one (once it is
///   decided a vote can never count), at most [`MAX_VOTES_PER_ROUND`] per round
///   from others, without duplicates.
#[derive(Clone, Debug)]
pub(super) struct History {
    decided: BTreeMap<Round, Entry>,
    pending: BTreeMap<Round, Vec<Vote>>,
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
            .is_some_and(|e| e.votes.contains(vote))
    }

    /// Votes held for open round `r`.
    pub fn held(&self, r: Round) -> &[Vote] {
        self.pending.get(&r).map_or(&[], Vec::as_slice)
    }

    /// Every vote that counted in the rounds `(after, through]`.
    pub fn counted_between(&self, after: Round, through: Round) -> Vec<Vote> {
        self.decided
            .iter()
            .filter(|(r, _)| **r > after && **r <= through)
            .flat_map(|(_, e)| e.votes.iter())
            .copied()
            .collect()
    }

    /// The newest decided state (or the one for `round`), with every vote held
    /// for the rounds after it: what a peer needs to take this history over.
    pub fn snapshot_after(&self, round: Option<Round>) -> Option<Snapshot> {
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

    // ----- votes ------------------------------------------------------------

    /// Holds another peer's vote for its open round (the caller has checked
    /// that the round is open and within the horizon).
    pub fn hold(&mut self, vote: Vote) -> Hold {
        let votes = self.pending.entry(vote.round).or_default();
        if votes.contains(&vote) {
            return Hold::Duplicate;
        }
        if votes.len() >= MAX_VOTES_PER_ROUND {
            return Hold::Full;
        }
        votes.push(vote);
        Hold::Held
    }

    /// Holds this peer's own vote: it is cast once per round, so it always has
    /// a place.
    pub fn hold_own(&mut self, vote: Vote) {
        self.pending.entry(vote.round).or_default().push(vote);
    }

    // ----- deciding -----------------------------------------------------------

    /// The round to decide next, once there is a state.
    pub fn next_round(&self) -> Option<Round> {
        self.last_round().map(|r| Round(r.0 + 1))
    }

    /// Decides the next round from the votes held for it, to apply at
    /// `apply_at_ns`, and forgets the oldest rounds past the limit.
    pub fn decide_next(&mut self, apply_at_ns: i64) -> Option<Decision> {
        let (&last, entry) = self.decided.last_key_value()?;
        let r = Round(last.0 + 1);
        let prev = entry.state.clone();
        let votes = self.pending.remove(&r).unwrap_or_default();
        let decision = choose(&prev, r, apply_at_ns, &votes);
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
    /// `k` again on top of it. `apply_at_ns` gives each round's apply instant.
    pub fn adopt(
        &mut self,
        k: Round,
        state: SessionState,
        votes: Vec<Vote>,
        apply_at_ns: impl Fn(Round) -> i64,
    ) {
        let Some(entry) = self.decided.get_mut(&k) else {
            return;
        };
        entry.state = state;
        self.merge_votes(k, votes);
        let later: Vec<Round> = self
            .decided
            .range(Round(k.0 + 1)..)
            .map(|(r, _)| *r)
            .collect();
        for r in later {
            let prev = self.decided[&Round(r.0 - 1)].state.clone();
            let d = choose(&prev, r, apply_at_ns(r), &self.decided[&r].votes);
            if let Some(e) = self.decided.get_mut(&r) {
                e.state = d.state;
            }
        }
    }

    /// Replaces the whole history with `state` as of round `k` and the
    /// snapshot's votes for later rounds. Returns the votes this peer held for
    /// rounds up to `k`, which the new base makes moot.
    pub fn rebase(&mut self, k: Round, state: SessionState, votes: Vec<Vote>) -> Vec<Vote> {
        let dropped: Vec<Vote> = self
            .pending
            .range(..=k)
            .flat_map(|(_, vs)| vs)
            .copied()
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
        self.merge_votes(k, votes);
        dropped
    }

    /// Adds `votes` (for rounds after `k`) to the decided entries and the votes
    /// held, within the per-round limit.
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::state::PeerId;

    fn vote(voter: u64, round: u64, event: Event) -> Vote {
        Vote {
            voter: PeerId(voter),
            round: Round(round),
            event,
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
            let d = h.decide_next(r * 100).expect("has a state");
            assert_eq!(d.round, Round(r as u64));
        }
        assert_eq!(h.first_round(), Some(Round(3)));
        assert_eq!(h.last_round(), Some(Round(5)));
        assert!(h.latest().is_some_and(|(_, s)| s.timeline.playing));
        assert!(
            !h.was_counted(&vote(1, 1, Event::Play)),
            "round 1 is forgotten"
        );
        h.hold(vote(2, 4, Event::Pause));
        h.drop_settled_votes();
        assert!(h.held(Round(4)).is_empty());
    }

    /// A round holds at most `MAX_VOTES_PER_ROUND` votes from others.
    #[test]
    fn a_round_holds_a_bounded_number_of_votes() {
        let mut h = history(10);
        for voter in 0..MAX_VOTES_PER_ROUND as u64 {
            assert_eq!(h.hold(vote(voter, 1, Event::Play)), Hold::Held);
        }
        assert_eq!(h.hold(vote(9999, 1, Event::Play)), Hold::Full);
    }

    /// A rebase drops the history, keeps later votes, and gives back the votes
    /// held for rounds the new base covers.
    #[test]
    fn rebase_returns_the_votes_it_makes_moot() {
        let mut h = history(10);
        h.hold(vote(1, 2, Event::Play));
        h.hold(vote(1, 9, Event::Pause));
        let dropped = h.rebase(
            Round(5),
            SessionState::new(10_000_000_000, 2),
            vec![vote(3, 7, Event::Play), vote(3, 4, Event::Play)],
        );
        assert_eq!(dropped, vec![vote(1, 2, Event::Play)]);
        assert_eq!(h.first_round(), Some(Round(5)));
        assert_eq!(h.held(Round(7)), &[vote(3, 7, Event::Play)]);
        assert_eq!(h.held(Round(9)), &[vote(1, 9, Event::Pause)]);
        assert!(
            h.held(Round(4)).is_empty(),
            "votes at or before the base are dropped"
        );
    }
}
