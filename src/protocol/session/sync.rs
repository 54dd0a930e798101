//! Session time: clock pings, the first sync onto the most senior peer's
//! session time, and steering our map towards the root's once per round,
//! read through the root's link and the settled seniors' (`joint_target`).

use crate::protocol::clock::ClockEstimate;
use crate::protocol::message::{ClockPing, ClockPong, Message};
use crate::protocol::state::{PeerId, Round};
use crate::protocol::time::{SessionMap, Steer, SteerState, Target, root_target, steer};

use super::election::elect;
use super::timers::Timer;
use super::{Ignored, Session, SessionEvent};

/// A member's map counts towards our reading of the root's session time once
/// the member has been synced this long (session time): its own estimate has
/// settled by then.
const SETTLED_NS: i64 = 5_000_000_000;
/// What a settled member's map is presumed off the root's (its own link
/// estimate's error), added to ours of its link when weighing it.
const MEMBER_ERROR_NS: f64 = 200_000.0;
/// A member whose map, read through our link, is further than this from the
/// root's does not count: it is wrong, or our estimate of its link is.
const JOINT_AGREEMENT_NS: i64 = 5_000_000;

impl Session {
    /// Answers a clock ping at once, stamped with our clock.
    pub(super) fn on_clock_ping(&mut self, now_ns: i64, from: PeerId, ping: ClockPing) {
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

    /// A pong is a four-timestamp clock sample of the link.
    pub(super) fn on_clock_pong(&mut self, now_ns: i64, from: PeerId, pong: ClockPong) {
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

    /// The round we are in: `now` is not stored, the last beat is that round.
    pub(super) fn current_round(&self) -> Option<Round> {
        self.last_beat_round
    }

    /// `peer`'s clock estimate and announced map, once the link holds enough
    /// samples per direction to say something.
    pub(super) fn usable_estimate(&mut self, peer: PeerId) -> Option<(ClockEstimate, SessionMap)> {
        let link = self.links.get_mut(&peer)?;
        let (o, i) = link.clock.sample_counts();
        if o.min(i) < self.cfg.sync_min_samples {
            return None;
        }
        Some((link.clock.estimate()?, link.map?.0))
    }

    /// The first sync: step onto the most senior synced peer's session time once
    /// its clock estimate has enough samples.
    pub(super) fn try_first_sync(&mut self, now_ns: i64) {
        let candidates = self.candidates(now_ns);
        let Some(root) = elect(&candidates, self.cfg.time_agreement_ns) else {
            return;
        };
        let Some((est, root_map)) = self.usable_estimate(root) else {
            return;
        };
        let target = root_target(&self.cfg.steer, &root_map, &est, now_ns, false);
        let target = self.joint_target(now_ns, root, target, &est);
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
        self.timers.stop(Timer::UnsyncedBeat);
        self.root = Some(root);
        self.synced_at_session_ns = Some(map.session_ns_at(now_ns).max(1));
        // Start beating with the current round; earlier rounds are others' past.
        let cur = Round::containing(map.session_ns_at(now_ns));
        self.last_beat_round = Some(Round(cur.0.saturating_sub(1)));
        self.events.push_back(SessionEvent::Synced { root });
        self.choose_root(now_ns);
    }

    /// Steers our map towards the root's (once per round, before the heartbeat).
    /// Without a usable estimate of the root's clock, the map freewheels.
    pub(super) fn steer_to_root(&mut self, now_ns: i64) {
        self.choose_root(now_ns);
        let Some(root) = self.root.filter(|&r| r != self.me.peer_id) else {
            return;
        };
        let Some((est, root_map)) = self.usable_estimate(root) else {
            return;
        };
        if self.map.is_none() {
            return;
        }
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
        let target = self.joint_target(now_ns, root, target, &est);
        let Some(map) = self.map.as_mut() else {
            return;
        };
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

    /// The root's session time at `now`, read through every link that knows it:
    /// the root's map through our estimate of its link (`through_root`), and
    /// the maps of the settled members more senior than us through theirs, each
    /// weighed by how well we know its link (and a member's own error). Over a
    /// jittery path each link's estimate narrows slowly, and independent links
    /// narrow the mean faster: a joiner is in step sooner. Seniority orders
    /// who reads whom, so no two peers steer to each other, and a member
    /// whose reading disagrees with the root's by more than
    /// [`JOINT_AGREEMENT_NS`] is left out, so one member moves us by at most
    /// about that. The rate fed forward stays the root link's.
    fn joint_target(
        &mut self,
        now_ns: i64,
        root: PeerId,
        through_root: Target,
        root_est: &ClockEstimate,
    ) -> Target {
        let mine = (
            self.synced_at_session_ns.unwrap_or(i64::MAX),
            self.me.peer_id,
        );
        let settled_before = through_root.session_ns.saturating_sub(SETTLED_NS);
        let seniors: Vec<PeerId> = self
            .links
            .iter()
            .filter(|(id, l)| {
                **id != root
                    && l.map.is_some()
                    && (l.synced_at_session_ns, **id) < mine
                    && l.synced_at_session_ns <= settled_before
            })
            .map(|(id, _)| *id)
            .collect();
        // A reading's weight: none for an uncertainty that is not a number.
        let weight = |sigma_ns: f64| {
            let variance = sigma_ns * sigma_ns;
            if variance.is_finite() {
                1.0 / variance.max(1.0)
            } else {
                0.0
            }
        };
        let mut sum_w = weight(root_est.offset_uncertainty_ns);
        if sum_w == 0.0 {
            return through_root;
        }
        let mut sum_wd = 0.0;
        for id in seniors {
            let Some((est, map)) = self.usable_estimate(id) else {
                continue;
            };
            let theirs = root_target(&self.cfg.steer, &map, &est, now_ns, false);
            let d_ns = theirs.session_ns.saturating_sub(through_root.session_ns);
            if !(-JOINT_AGREEMENT_NS..=JOINT_AGREEMENT_NS).contains(&d_ns) {
                continue;
            }
            let w = weight(est.offset_uncertainty_ns.hypot(MEMBER_ERROR_NS));
            sum_w += w;
            sum_wd += w * d_ns as f64;
        }
        Target {
            session_ns: through_root
                .session_ns
                .saturating_add((sum_wd / sum_w).round() as i64),
            ..through_root
        }
    }

    /// Arms the ping timer of exactly the links we ping: those in their
    /// join burst, and the clock targets (the root and its heir). Who is a
    /// target follows from seniority, maps and the root, which many inputs
    /// change, so it is derived again after each input rather than tracked at
    /// every place that can change it.
    pub(super) fn arm_pings(&mut self) {
        let targets = self.clock_targets();
        for (id, link) in &self.links {
            if link.burst_left > 0 || targets.contains(id) {
                self.timers.set(Timer::Ping(*id), link.next_ping_ns);
            } else {
                self.timers.stop(Timer::Ping(*id));
            }
        }
    }

    /// Sends the pings that are due: a burst after a link comes up, then a
    /// steady rate to the clock targets.
    pub(super) fn send_pings(&mut self, now_ns: i64) {
        let targets = self.clock_targets();
        let mut pings = Vec::new();
        for id in self.timers.due_peers(Timer::Ping(PeerId(0)), now_ns) {
            let Some(link) = self.links.get_mut(&id) else {
                continue;
            };
            if link.burst_left > 0 {
                link.burst_left -= 1;
                link.next_ping_ns = now_ns + self.cfg.burst_interval_ns;
            } else if targets.contains(&id) {
                link.next_ping_ns = now_ns + self.cfg.ping_interval_ns;
            } else {
                continue;
            }
            link.ping_seq = link.ping_seq.wrapping_add(1);
            pings.push((id, link.ping_seq));
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
}
