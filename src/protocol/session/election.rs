//! The choice of the time root, as a pure function: which peer's session time
//! everybody follows.
//!
//! Seniority alone (the peer that synced first) let one member that claimed to
//! be the oldest, with a map 30 s off, take every peer's session time with it
//! (issue 19). So a claim must also agree with the others: each candidate's
//! session time is read through our link to it, and a candidate is *supported*
//! by every peer (us included) whose time agrees with its own within
//! [`Config::time_agreement_ns`](super::Config::time_agreement_ns). The best
//! supported time wins; among equals, seniority; a peer keeps its own time
//! against a lone disagreeing peer of equal seniority. The root is then the
//! most senior peer that agrees with the winner. In a session where everybody
//! agrees (every honest session) that is the most senior peer, as before.
//!
//! Every peer evaluates this from its own link estimates, so two peers can see
//! a candidate near the bound differently; they then follow roots that agree
//! within the bound, and converge as the estimates settle.

use std::cmp::Reverse;

use crate::protocol::state::PeerId;

/// One peer that could be root, as this peer sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Candidate {
    pub id: PeerId,
    /// When it first synced (session time); lower is more senior.
    pub seniority: i64,
    /// Its session time now, read through our link; `None` while the link
    /// cannot tell yet (it then counts as agreeing with everyone).
    pub session_ns: Option<i64>,
    /// Whether it is this peer.
    pub me: bool,
}

fn agree(a: &Candidate, b: &Candidate, bound_ns: i64) -> bool {
    match (a.session_ns, b.session_ns) {
        (Some(x), Some(y)) => x.abs_diff(y) <= bound_ns.max(0) as u64,
        _ => true,
    }
}

/// The root among `candidates` (see the module docs), or `None` if there are
/// none. The order of `candidates` does not matter.
pub(super) fn elect(candidates: &[Candidate], agreement_ns: i64) -> Option<PeerId> {
    let support = |c: &Candidate| {
        candidates
            .iter()
            .filter(|q| agree(q, c, agreement_ns))
            .count()
    };
    // The time to follow: most support, then the most senior claim, then our
    // own (a lone peer that disagrees with us and claims our seniority does
    // not move us), then the lowest id.
    let winner = candidates
        .iter()
        .max_by_key(|c| (support(c), Reverse(c.seniority), c.me, Reverse(c.id)))?;
    candidates
        .iter()
        .filter(|q| agree(q, winner, agreement_ns))
        .min_by_key(|q| (q.seniority, q.id))
        .map(|q| q.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;
    const BOUND: i64 = 50 * MS;

    fn c(id: u64, seniority: i64, session_ns: Option<i64>, me: bool) -> Candidate {
        Candidate {
            id: PeerId(id),
            seniority,
            session_ns,
            me,
        }
    }

    /// When everybody agrees, the most senior peer is root (then the lowest id).
    #[test]
    fn agreeing_peers_follow_the_most_senior() {
        let t = 100_000 * MS;
        let cs = [
            c(5, 700, Some(t), true),
            c(3, 0, Some(t + 2 * MS), false),
            c(1, 900, Some(t - MS), false),
        ];
        assert_eq!(elect(&cs, BOUND), Some(PeerId(3)));
        let tie = [c(9, 0, Some(t), true), c(4, 0, Some(t), false)];
        assert_eq!(elect(&tie, BOUND), Some(PeerId(4)));
    }

    /// A member claiming seniority with a time 30 s off is not followed by a
    /// peer whose time another member confirms.
    #[test]
    fn a_senior_claim_the_others_contradict_loses() {
        let t = 100_000 * MS;
        let cs = [
            c(5, 800, Some(t), true),
            c(3, 0, Some(t + MS), false),
            c(1, -1, Some(t - 30_000 * MS), false),
        ];
        assert_eq!(elect(&cs, BOUND), Some(PeerId(3)));
    }

    /// Alone with a peer that disagrees and claims the same seniority (the
    /// creator's 0), a peer keeps its own time; a peer that joined later (less
    /// senior) follows the older one: that is how a misled joiner recovers.
    #[test]
    fn ties_between_two_times_go_to_seniority_then_to_us() {
        let t = 100_000 * MS;
        let creator = [
            c(5, 0, Some(t), true),
            c(1, 0, Some(t - 30_000 * MS), false),
        ];
        assert_eq!(elect(&creator, BOUND), Some(PeerId(5)));
        let joiner = [
            c(5, 4000, Some(t), true),
            c(7, 0, Some(t + 30_000 * MS), false),
        ];
        assert_eq!(elect(&joiner, BOUND), Some(PeerId(7)));
    }

    /// A candidate whose time we cannot read yet agrees with everyone.
    #[test]
    fn unknown_times_do_not_split() {
        let cs = [c(5, 900, Some(0), true), c(2, 0, None, false)];
        assert_eq!(elect(&cs, BOUND), Some(PeerId(2)));
        assert_eq!(elect(&[], BOUND), None);
    }

    proptest::proptest! {
        /// The order of the candidates never changes the root.
        #[test]
        fn order_does_not_matter(
            raw in proptest::collection::vec((0u64..20, -2i64..5, proptest::option::of(-3i64..3)), 1..10),
            rot in 0usize..10,
        ) {
            let mut cs: Vec<Candidate> = raw
                .iter()
                .enumerate()
                .map(|(i, &(id, sen, t))| c(id * 100 + i as u64, sen, t.map(|t| t * 40 * MS), i == 0))
                .collect();
            let a = elect(&cs, BOUND);
            let k = rot % cs.len();
            cs.rotate_left(k);
            cs.reverse();
            proptest::prop_assert_eq!(a, elect(&cs, BOUND));
        }
    }
}
