//! The lead: how long after a round ends its decision applies, agreed as part
//! of the session state so that every peer applies a round at the same instant.
//!
//! A round `r`'s decision applies at `(r+1)·100 ms + lead`, the lead being the
//! one in the state decided for the round before ([`apply_at_session_ns`]). It
//! must cover, for every peer, the time its engine renders ahead (its *guard*:
//! a round is decided that long before it applies) plus the time a vote cast
//! at the very end of the round takes to reach it. No peer can know the
//! others' delays, so each says its own **need** — its guard, plus the latest a
//! vote from any of its links has reached it (p99 over the last 20 s), plus a
//! margin — with a `lead` vote (an [`Event::Lead`](super::state::Event::Lead)),
//! when it changes and every [`NEED_REFRESH_ROUNDS`]. The state keeps each
//! voter's latest need and the lead follows the largest, never below
//! [`LEAD_FLOOR_MS`]:
//!
//! - **up at once**: the round a larger need is decided, the lead for the next
//!   round is that need — by at most [`LEAD_STEP_UP_MS`] a round, so that
//!   one claim cannot stop decisions for a second;
//! - **down by [`LEAD_STEP_DOWN_MS`] a round**, so that apply instants stay in
//!   round order (each at least 90 ms after the one before);
//! - a need not refreshed for [`NEED_EXPIRE_ROUNDS`] is forgotten (its peer
//!   left), before the round's votes are counted, like a song's end: nobody
//!   decided it.
//!
//! A new session starts at [`LEAD_START_MS`], safe for links up to about 60 ms,
//! and comes down to what its peers need within a couple of seconds. A hostile
//! peer can raise everyone's lead to [`LEAD_MAX_MS`] — slower votes, never a
//! split or a stall.

use crate::wire::{Model, Reader, WireError, Writer};

use super::message::MAX_PEERS;
use super::state::{PeerId, ROUND_NS, Round};

/// A new session's lead, before any peer has said what it needs.
pub const LEAD_START_MS: u16 = 150;
/// The lead never goes below this, however fast the links.
pub const LEAD_FLOOR_MS: u16 = 30;
/// Nor above this, whatever a peer claims: links up to about 400 ms one way
/// (a jam session's are far shorter), and what a hostile member can make
/// every vote wait.
pub const LEAD_MAX_MS: u16 = 500;
/// The most the lead comes down in one round.
pub const LEAD_STEP_DOWN_MS: u16 = 10;
/// The most it goes up in one round (a round's decision then comes this much
/// later than the round after the one before).
pub const LEAD_STEP_UP_MS: u16 = 200;
/// A peer says its need again this often, even when it has not changed.
pub const NEED_REFRESH_ROUNDS: u64 = 20;
/// A need not said again for this many rounds is forgotten.
pub const NEED_EXPIRE_ROUNDS: u64 = 50;
/// At most one need per member.
pub const MAX_NEEDS: usize = MAX_PEERS;

/// The session instant at which round `round`'s decision applies, given the
/// lead decided for the round before it.
pub fn apply_at_session_ns(round: Round, lead_ms: u16) -> i64 {
    ((round.0 as i64).saturating_add(1))
        .saturating_mul(ROUND_NS)
        .saturating_add(i64::from(lead_ms) * 1_000_000)
}

/// The latest instant any state decided for `round` can apply: what a
/// snapshot's anchor is checked against.
pub fn latest_apply_at_session_ns(round: Round) -> i64 {
    apply_at_session_ns(round, LEAD_MAX_MS)
}

/// One peer's need, as decided in round `round`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub peer: PeerId,
    pub need_ms: u16,
    pub round: Round,
}

/// The agreed lead and the needs it follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lead {
    /// The lead of the next round's decision.
    pub lead_ms: u16,
    /// Every peer's latest need, by peer id (at most [`MAX_NEEDS`]).
    pub needs: Vec<Need>,
}

impl Default for Lead {
    fn default() -> Self {
        Lead {
            lead_ms: LEAD_START_MS,
            needs: Vec::new(),
        }
    }
}

/// Why a state's lead cannot be one the choice function produced.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum InvalidLead {
    #[error("a lead of {0} ms, outside {LEAD_FLOOR_MS}..={LEAD_MAX_MS} ms")]
    OutOfRange(u16),
    #[error("needs not in peer order, or said after their state's round")]
    Needs,
}

impl Lead {
    pub fn lead_ns(&self) -> i64 {
        i64::from(self.lead_ms) * 1_000_000
    }

    /// The lead the needs ask for: the largest, floored; `None` with none.
    pub fn target_ms(&self) -> Option<u16> {
        let max = self.needs.iter().map(|n| n.need_ms).max()?;
        Some(max.clamp(LEAD_FLOOR_MS, LEAD_MAX_MS))
    }

    pub fn need_of(&self, peer: PeerId) -> Option<Need> {
        self.needs.iter().find(|n| n.peer == peer).copied()
    }

    /// Before round `round`'s votes: forgets the needs of peers silent for
    /// [`NEED_EXPIRE_ROUNDS`] and steps the lead down towards the target.
    pub fn age(&mut self, round: Round) {
        self.needs
            .retain(|n| round.0.saturating_sub(n.round.0) <= NEED_EXPIRE_ROUNDS);
        if let Some(target) = self.target_ms()
            && target < self.lead_ms
        {
            self.lead_ms = target.max(self.lead_ms.saturating_sub(LEAD_STEP_DOWN_MS));
        }
    }

    /// Records `peer`'s need as said in `round` (of its needs in one round,
    /// the largest). A table full of other peers keeps the largest needs: a
    /// new one larger than the smallest takes its place (the smallest of
    /// equals being the highest peer id's); else it is refused (false). Only
    /// the largest sets the lead, so made-up voters filling the table can
    /// raise it, never keep a real peer's larger need out.
    pub fn record(&mut self, peer: PeerId, need_ms: u16, round: Round) -> bool {
        let need_ms = need_ms.min(LEAD_MAX_MS);
        match self.needs.binary_search_by_key(&peer, |n| n.peer) {
            Ok(i) => {
                let n = &mut self.needs[i];
                n.need_ms = if n.round == round {
                    n.need_ms.max(need_ms)
                } else {
                    need_ms
                };
                n.round = round;
                true
            }
            Err(_) => {
                if self.needs.len() >= MAX_NEEDS {
                    let Some((smallest, key)) = (self.needs.iter().enumerate())
                        .map(|(i, n)| (i, (n.need_ms, std::cmp::Reverse(n.peer))))
                        .min_by_key(|(_, k)| *k)
                    else {
                        return false;
                    };
                    if (need_ms, std::cmp::Reverse(peer)) <= key {
                        return false;
                    }
                    self.needs.remove(smallest);
                }
                let i = self.needs.partition_point(|n| n.peer < peer);
                self.needs.insert(
                    i,
                    Need {
                        peer,
                        need_ms,
                        round,
                    },
                );
                true
            }
        }
    }

    /// After the round's votes: a larger need raises the lead at once (by
    /// [`LEAD_STEP_UP_MS`] at most).
    pub fn raise(&mut self) {
        if let Some(target) = self.target_ms()
            && target > self.lead_ms
        {
            self.lead_ms = target.min(self.lead_ms.saturating_add(LEAD_STEP_UP_MS));
        }
    }

    /// That a state decided for `round` could hold this lead.
    pub fn check(&self, round: Round) -> Result<(), InvalidLead> {
        if !(LEAD_FLOOR_MS..=LEAD_MAX_MS).contains(&self.lead_ms) {
            return Err(InvalidLead::OutOfRange(self.lead_ms));
        }
        let ordered = self.needs.windows(2).all(|w| w[0].peer < w[1].peer);
        let said = self
            .needs
            .iter()
            .all(|n| n.round <= round && n.need_ms <= LEAD_MAX_MS);
        if !ordered || !said || self.needs.len() > MAX_NEEDS {
            return Err(InvalidLead::Needs);
        }
        Ok(())
    }

    /// The bytes the state's digest covers, in wire order.
    pub(crate) fn digest_into(&self, write: &mut impl FnMut(&[u8])) {
        write(&self.lead_ms.to_be_bytes());
        write(&(self.needs.len() as u32).to_be_bytes());
        for n in &self.needs {
            write(&n.peer.0.to_be_bytes());
            write(&n.need_ms.to_be_bytes());
            write(&n.round.0.to_be_bytes());
        }
    }
}

/// ```text
/// | peer u64 | need_ms u16 (≤ LEAD_MAX_MS) | round u64 |
/// ```
impl Model for Need {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        self.peer.encode(w)?;
        w.put_u16(self.need_ms);
        self.round.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let peer = r.get()?;
        let need_ms = r.u16("lead.need_ms")?;
        if need_ms > LEAD_MAX_MS {
            return Err(WireError::Invalid {
                field: "lead.need_ms",
                reason: "over the longest lead",
            });
        }
        Ok(Need {
            peer,
            need_ms,
            round: r.get_as("lead.need.round")?,
        })
    }
}

/// ```text
/// | lead_ms u16 (LEAD_FLOOR_MS..=LEAD_MAX_MS) | needs list<Need> (≤ MAX_NEEDS, by peer) |
/// ```
impl Model for Lead {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_u16(self.lead_ms);
        w.put_list(&self.needs, MAX_NEEDS, "state.lead.needs")
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let lead_ms = r.u16("state.lead_ms")?;
        if !(LEAD_FLOOR_MS..=LEAD_MAX_MS).contains(&lead_ms) {
            return Err(WireError::Invalid {
                field: "state.lead_ms",
                reason: "outside the lead's range",
            });
        }
        let needs: Vec<Need> = r.list(MAX_NEEDS, "state.lead.needs")?;
        if !needs.windows(2).all(|w| w[0].peer < w[1].peer) {
            return Err(WireError::Invalid {
                field: "state.lead.needs",
                reason: "not in peer order",
            });
        }
        Ok(Lead { lead_ms, needs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(lead: &mut Lead, peer: u64, ms: u16, round: u64) {
        assert!(lead.record(PeerId(peer), ms, Round(round)));
    }

    /// Up at once, down a step a round, and a silent peer's need forgotten.
    #[test]
    fn the_lead_follows_the_largest_need() {
        let mut lead = Lead::default();
        lead.age(Round(1));
        assert_eq!(lead.lead_ms, LEAD_START_MS, "no need said: it stays");
        need(&mut lead, 2, 40, 1);
        need(&mut lead, 1, 35, 1);
        lead.raise();
        assert_eq!(lead.lead_ms, LEAD_START_MS, "lower needs do not raise it");
        let mut steps = vec![];
        for r in 2..20 {
            lead.age(Round(r));
            steps.push(lead.lead_ms);
        }
        assert_eq!(
            &steps[..12],
            &[140, 130, 120, 110, 100, 90, 80, 70, 60, 50, 40, 40]
        );
        need(&mut lead, 1, 80, 20);
        lead.raise();
        assert_eq!(lead.lead_ms, 80, "a larger need raises it at once");
        // Peer 1 goes silent: its need expires, the lead comes back down.
        need(&mut lead, 2, 40, 40);
        lead.age(Round(20 + NEED_EXPIRE_ROUNDS));
        assert_eq!(lead.lead_ms, 80, "not yet expired");
        lead.age(Round(21 + NEED_EXPIRE_ROUNDS));
        assert_eq!(lead.need_of(PeerId(1)), None);
        assert_eq!(lead.lead_ms, 70);
        // Below the floor, the floor.
        need(&mut lead, 2, 3, 80);
        for r in 81..100 {
            lead.age(Round(r));
        }
        assert_eq!(lead.lead_ms, LEAD_FLOOR_MS);
    }

    /// Two needs from one peer in one round: the larger; a later round's
    /// replaces it, even lower; a claim past the maximum is capped.
    #[test]
    fn a_peers_need_is_its_latest() {
        let mut lead = Lead::default();
        need(&mut lead, 7, 90, 3);
        need(&mut lead, 7, 60, 3);
        assert_eq!(lead.need_of(PeerId(7)).unwrap().need_ms, 90);
        need(&mut lead, 7, 60, 4);
        assert_eq!(lead.need_of(PeerId(7)).unwrap().need_ms, 60);
        need(&mut lead, 8, u16::MAX, 4);
        lead.raise();
        assert_eq!(lead.lead_ms, LEAD_START_MS + LEAD_STEP_UP_MS, "a step up");
        for _ in 0..10 {
            lead.raise();
        }
        assert_eq!(lead.lead_ms, LEAD_MAX_MS, "capped");
        assert_eq!(lead.check(Round(4)), Ok(()));
        assert_eq!(lead.check(Round(3)), Err(InvalidLead::Needs));
    }

    /// The table holds one need per member at most; full, it keeps the
    /// largest needs.
    #[test]
    fn the_table_is_bounded_and_keeps_the_largest() {
        let mut lead = Lead::default();
        for p in 0..MAX_NEEDS as u64 {
            need(&mut lead, p, 50, 1);
        }
        assert!(!lead.record(PeerId(1000), 50, Round(1)), "no larger");
        assert!(lead.record(PeerId(3), 60, Round(2)), "a member already in");
        assert!(lead.record(PeerId(1000), 70, Round(2)), "a larger need");
        assert_eq!(lead.needs.len(), MAX_NEEDS);
        assert_eq!(
            lead.need_of(PeerId(MAX_NEEDS as u64 - 1)),
            None,
            "the smallest went"
        );
        assert!(lead.needs.windows(2).all(|w| w[0].peer < w[1].peer));
        assert_eq!(lead.check(Round(2)), Ok(()));
    }

    /// Apply instants stay in round order whatever the lead does.
    #[test]
    fn apply_instants_keep_round_order() {
        let mut lead = Lead::default();
        need(&mut lead, 1, LEAD_MAX_MS, 0);
        let mut last = apply_at_session_ns(Round(0), LEAD_START_MS);
        for r in 1..200 {
            if r % NEED_REFRESH_ROUNDS == 15 {
                need(&mut lead, 1, 0, r); // said again, as a peer does
            }
            lead.raise();
            let at = apply_at_session_ns(Round(r), lead.lead_ms);
            let step_ms = (at - last) / 1_000_000;
            assert!(
                step_ms >= 100 - i64::from(LEAD_STEP_DOWN_MS),
                "round {r}: {step_ms}"
            );
            assert!(
                step_ms <= 100 + i64::from(LEAD_STEP_UP_MS),
                "round {r}: {step_ms}"
            );
            last = at;
            lead.age(Round(r + 1));
        }
        assert_eq!(lead.lead_ms, LEAD_FLOOR_MS);
    }
}
