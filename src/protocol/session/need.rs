//! This peer's need for the lead (see [`crate::protocol::lead`]): how late
//! the votes of each link reach it, and when to say its need in a vote.

use std::collections::VecDeque;

use crate::protocol::lead::{LEAD_MAX_MS, LEAD_START_MS, NEED_REFRESH_ROUNDS};
use crate::protocol::state::{Event, PeerId, Round};
use crate::protocol::time::SessionMap;

use super::Session;

/// Vote delays kept per link: 20 s of heartbeats.
const DELAY_WINDOW: usize = 200;
/// A link's delays count once this many are known.
const MIN_DELAY_SAMPLES: usize = 10;
/// A need this much below the one the state holds is said again at once
/// (a larger one always is).
const NEED_HYSTERESIS_MS: u16 = 5;
/// A need said is not said again for this many rounds unless it grew: it is
/// on its way.
const NEED_IN_FLIGHT_ROUNDS: u64 = 3;

/// How late one link's heartbeats arrive: our session time at arrival minus
/// the sender's when it sent them — the network's delay, the sender's wake-up
/// and the two maps' disagreement, all of which a vote meets too.
#[derive(Clone, Debug, Default)]
pub(super) struct VoteDelays {
    samples_ns: VecDeque<i64>,
}

impl VoteDelays {
    fn add(&mut self, delay_ns: i64) {
        if self.samples_ns.len() == DELAY_WINDOW {
            self.samples_ns.pop_front();
        }
        self.samples_ns.push_back(delay_ns);
    }

    /// The 99th percentile of the window, once it holds enough.
    pub(super) fn p99_ns(&self) -> Option<i64> {
        if self.samples_ns.len() < MIN_DELAY_SAMPLES {
            return None;
        }
        let mut sorted: Vec<i64> = self.samples_ns.iter().copied().collect();
        sorted.sort_unstable();
        let i = (sorted.len() * 99).div_ceil(100) - 1;
        Some(sorted[i])
    }
}

impl Session {
    /// A synced heartbeat from `from`, sent at its local `sent_ns` under its
    /// map `theirs`, arrived at our local `now_ns`.
    pub(super) fn note_vote_delay(
        &mut self,
        from: PeerId,
        theirs: SessionMap,
        sent_ns: i64,
        now_ns: i64,
    ) {
        let Some(ours) = self.map else { return };
        let Some(link) = self.links.get_mut(&from) else {
            return;
        };
        let delay_ns = (ours.session_ns_at(now_ns)).saturating_sub(theirs.session_ns_at(sent_ns));
        // A map far off (a peer not steered yet, a step) says nothing of
        // the network: such samples wait for the maps to agree.
        if (-1_000_000_000..=10_000_000_000).contains(&delay_ns) {
            link.vote_delays.add(delay_ns.max(0));
        }
    }

    /// What this peer needs of the lead: its guard, the latest its links'
    /// votes arrive (p99), and the margin, in whole ms. A link whose delays
    /// are not known yet (a peer just linked, or not synced) is presumed as
    /// slow as a new session's lead allows: at least [`LEAD_START_MS`]; so is
    /// the link a peer alone will have, so that the first joiner's votes
    /// count before its delays are known.
    pub fn need_ms(&self) -> u16 {
        self.need().0
    }

    /// The need, and whether it is measured (every link's delays known).
    fn need(&self) -> (u16, bool) {
        let mut delay_ns = 0;
        let mut unknown = self.links.is_empty();
        for link in self.links.values() {
            match link.vote_delays.p99_ns() {
                Some(d) => delay_ns = delay_ns.max(d),
                None => unknown = true,
            }
        }
        let need_ns = self.cfg.decide_guard_ns.max(0) + delay_ns + self.cfg.lead_margin_ns.max(0);
        let mut ms = (need_ns as u64).div_ceil(1_000_000);
        if unknown {
            ms = ms.max(u64::from(LEAD_START_MS));
        }
        (ms.min(u64::from(LEAD_MAX_MS)) as u16, !unknown)
    }

    /// Our need as a `lead` vote for round `cur`, if it is due: the state
    /// has none of ours, a smaller one (or one much larger), or one not said
    /// for [`NEED_REFRESH_ROUNDS`]. A need presumed (a link not measured
    /// yet) is said only to raise the lead: a peer that just synced waits
    /// until its time has settled and its links are measured.
    pub(super) fn need_vote(&mut self, cur: Round) -> Option<Event> {
        let (need, measured) = self.need();
        let (_, state) = self.history.latest()?;
        if !measured && need <= state.lead.lead_ms {
            return None;
        }
        let due = match state.lead.need_of(self.me.peer_id) {
            None => true,
            Some(n) => {
                need > n.need_ms
                    || need + NEED_HYSTERESIS_MS < n.need_ms
                    || cur.0 >= n.round.0 + NEED_REFRESH_ROUNDS
            }
        };
        let in_flight = self
            .need_said
            .is_some_and(|(r, ms)| cur.0 < r.0 + NEED_IN_FLIGHT_ROUNDS && ms >= need);
        if !due || in_flight {
            return None;
        }
        self.need_said = Some((cur, need));
        Some(Event::Lead { need_ms: need })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p99_of_a_window() {
        let mut d = VoteDelays::default();
        for i in 0..9 {
            d.add(i);
        }
        assert_eq!(d.p99_ns(), None, "too few yet");
        d.add(9);
        assert_eq!(d.p99_ns(), Some(9));
        for i in 0..DELAY_WINDOW as i64 {
            d.add(if i == 7 { 1_000 } else { i % 100 });
        }
        // 200 samples: the third largest is the p99 — one spike is not.
        assert_eq!(d.p99_ns(), Some(99));
    }
}
