//! The session core's local-time timers, as a table (quinn-proto's
//! `TimerTable`): each timer is set, moved or stopped where the state it
//! follows changes, and the next wake-up is the first entry, so
//! [`super::Session::poll_timeout`] never rescans links and members.
//!
//! Only timers on the local clock live here. The beat and the next decision
//! are instants of *session* time; the local instant they fall on moves
//! whenever the map is steered, so they are derived from the map when asked
//! (two lookups) rather than stored.

use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::PeerId;

/// What a timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// Before the first sync: the next "unsynced" heartbeat.
    UnsyncedBeat,
    /// A linked peer's next clock ping (armed only while it is pinged: a burst
    /// is running, or it is the root or the heir).
    Ping(PeerId),
    /// A linked peer is declared dead if nothing arrives before this.
    Silence(PeerId),
    /// A member we are not linked to is dialled again.
    Redial(PeerId),
    /// A member unreachable this long is forgotten.
    Forget(PeerId),
}

impl Timer {
    fn peer(self) -> Option<PeerId> {
        match self {
            Timer::UnsyncedBeat => None,
            Timer::Ping(p) | Timer::Silence(p) | Timer::Redial(p) | Timer::Forget(p) => Some(p),
        }
    }

    /// The same kind of timer, for another peer (for filtering by kind).
    fn same_kind(self, other: Timer) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
    }
}

/// Deadlines by timer, and timers by deadline.
///
/// **Invariant:** both indexes hold the same `(timer, deadline)` pairs.
#[derive(Clone, Debug, Default)]
pub(super) struct TimerTable {
    deadlines: BTreeMap<Timer, i64>,
    queue: BTreeSet<(i64, Timer)>,
}

impl TimerTable {
    /// Arms `timer` for `at_ns` (moving it if armed).
    pub fn set(&mut self, timer: Timer, at_ns: i64) {
        if let Some(old) = self.deadlines.insert(timer, at_ns) {
            self.queue.remove(&(old, timer));
        }
        self.queue.insert((at_ns, timer));
    }

    pub fn stop(&mut self, timer: Timer) {
        if let Some(old) = self.deadlines.remove(&timer) {
            self.queue.remove(&(old, timer));
        }
    }

    /// Stops every timer of `peer`.
    pub fn stop_peer(&mut self, peer: PeerId) {
        for t in [
            Timer::Ping(peer),
            Timer::Silence(peer),
            Timer::Redial(peer),
            Timer::Forget(peer),
        ] {
            self.stop(t);
        }
    }

    pub fn get(&self, timer: Timer) -> Option<i64> {
        self.deadlines.get(&timer).copied()
    }

    /// The earliest deadline.
    pub fn next_ns(&self) -> Option<i64> {
        self.queue.first().map(|&(at, _)| at)
    }

    /// The peers whose timer of `kind`'s kind is due at `now_ns`, in id order
    /// (the order the core acts in, so that it never depends on deadlines that
    /// happen to tie).
    pub fn due_peers(&self, kind: Timer, now_ns: i64) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self
            .queue
            .iter()
            .take_while(|(at, _)| *at <= now_ns)
            .filter(|(_, t)| t.same_kind(kind))
            .filter_map(|(_, t)| t.peer())
            .collect();
        peers.sort_unstable();
        peers
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table gives the earliest deadline, moves and stops timers, and
    /// lists due peers of one kind in id order whatever their deadlines.
    #[test]
    fn set_move_stop_and_due() {
        let mut t = TimerTable::default();
        assert_eq!(t.next_ns(), None);
        t.set(Timer::Silence(PeerId(3)), 50);
        t.set(Timer::Silence(PeerId(1)), 40);
        t.set(Timer::Redial(PeerId(2)), 10);
        assert_eq!(t.next_ns(), Some(10));
        t.set(Timer::Redial(PeerId(2)), 100);
        assert_eq!(t.next_ns(), Some(40));
        assert_eq!(t.get(Timer::Redial(PeerId(2))), Some(100));
        assert_eq!(
            t.due_peers(Timer::Silence(PeerId(0)), 60),
            vec![PeerId(1), PeerId(3)]
        );
        assert!(t.due_peers(Timer::Redial(PeerId(0)), 60).is_empty());
        t.stop_peer(PeerId(1));
        assert_eq!(t.due_peers(Timer::Silence(PeerId(0)), 60), vec![PeerId(3)]);
        t.stop(Timer::Silence(PeerId(3)));
        t.stop(Timer::Redial(PeerId(2)));
        assert!(t.is_empty());
        assert_eq!(t.next_ns(), None);
    }
}
