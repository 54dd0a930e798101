//! Links and members: who we are linked to, who we lost and redial, who we
//! forget, and which peer's time everybody follows (the root).

use std::collections::BTreeSet;

use crate::protocol::clock::LinkClock;
use crate::protocol::message::{Message, PeerInfo, PeerList};
use crate::protocol::state::{PeerId, Round};
use crate::protocol::time::root_target;

use super::election::{Candidate, elect};
use super::timers::Timer;
use super::{DownReason, Link, Member, Session, SessionEvent};

/// A member only heard of is redialled after 1, 2, 4 … up to 2^this redial
/// intervals (250 ms → 8 s by default): about 10 dials in its first minute,
/// after which it is forgotten.
pub const MAX_UNREACHED_BACKOFF_DOUBLINGS: u32 = 5;

/// Members known and not linked (lost, or learnt of and not reached yet): a
/// session's worth ([`crate::protocol::message::MAX_PEERS`]).
pub const MAX_MEMBERS: usize = crate::protocol::message::MAX_PEERS;

impl Session {
    /// A link is up: a new one starts with the clock samples we kept of the
    /// peer, a burst of pings, our peer list and our latest state; a swapped
    /// one goes on with what it knew.
    pub(super) fn link_up(&mut self, now_ns: i64, info: PeerInfo) {
        let peer = info.peer_id;
        if peer == self.me.peer_id {
            return;
        }
        if let Some(link) = self.links.get_mut(&peer) {
            link.info = info;
            self.heard(now_ns, peer);
            return;
        }
        let clock = self
            .members
            .remove(&peer)
            .and_then(|m| m.clock)
            .unwrap_or_else(|| LinkClock::with_window(self.cfg.clock_window_samples));
        self.timers.stop(Timer::Redial(peer));
        self.timers.stop(Timer::Forget(peer));
        self.links.insert(
            peer,
            Link {
                info: info.clone(),
                clock,
                last_heard_ns: now_ns,
                echo: None,
                last_echo_origin_ns: None,
                map: None,
                synced_at_session_ns: i64::MAX,
                decided: None,
                next_ping_ns: now_ns,
                burst_left: self.cfg.burst_pings,
                ping_seq: 0,
                vote_delays: Default::default(),
                discredited: false,
            },
        );
        self.heard(now_ns, peer);
        self.repaired.remove(&peer);
        let peers: Vec<PeerInfo> = self
            .links
            .values()
            .filter(|l| l.info.peer_id != peer)
            .map(|l| l.info.clone())
            .take(crate::protocol::message::MAX_PEERS)
            .collect();
        self.send(peer, Message::PeerList(PeerList { peers }));
        if let Some(snapshot) = self.history.snapshot_after(None) {
            self.send(peer, Message::Snapshot(snapshot));
        }
        self.events.push_back(SessionEvent::PeerUp(info));
    }

    /// Something arrived from `peer`: it is alive until `dead_after_ns` from now.
    pub(super) fn heard(&mut self, now_ns: i64, peer: PeerId) {
        if let Some(link) = self.links.get_mut(&peer) {
            link.last_heard_ns = now_ns;
            self.timers.set(
                Timer::Silence(peer),
                now_ns.saturating_add(self.cfg.dead_after_ns),
            );
        }
    }

    /// Members we learn of from a peer's list, to dial at once: at most
    /// [`MAX_MEMBERS`] known and not linked, so lists full of made-up members
    /// cannot grow what we keep or whom we dial without bound.
    pub(super) fn on_peer_list(&mut self, now_ns: i64, list: PeerList) {
        for info in list.peers {
            let id = info.peer_id;
            if id != self.me.peer_id
                && !self.links.contains_key(&id)
                && !self.members.contains_key(&id)
                && self.members.len() < MAX_MEMBERS
            {
                self.members.insert(
                    id,
                    Member {
                        info,
                        clock: None,
                        unreached_dials: Some(0),
                    },
                );
                self.timers.set(Timer::Redial(id), now_ns);
                self.timers.set(
                    Timer::Forget(id),
                    now_ns.saturating_add(self.cfg.forget_after_ns),
                );
            }
        }
        self.redial(now_ns);
    }

    /// It said goodbye: it is neither linked nor redialled.
    pub(super) fn on_goodbye(&mut self, now_ns: i64, from: PeerId) {
        self.links.remove(&from);
        self.members.remove(&from);
        self.timers.stop_peer(from);
        self.events.push_back(SessionEvent::PeerDown {
            peer: from,
            reason: DownReason::Left,
        });
        self.choose_root(now_ns);
    }

    /// Links silent for `dead_after_ns` are closed and their peers redialled.
    pub(super) fn detect_silence(&mut self, now_ns: i64) {
        for peer in self.timers.due_peers(Timer::Silence(PeerId(0)), now_ns) {
            self.drop_link(now_ns, peer);
            self.events.push_back(SessionEvent::Disconnect { peer });
            self.events.push_back(SessionEvent::PeerDown {
                peer,
                reason: DownReason::Silent,
            });
        }
    }

    /// Removes a link, keeping the peer as a member to redial. Whether it existed.
    pub(super) fn drop_link(&mut self, now_ns: i64, peer: PeerId) -> bool {
        let Some(link) = self.links.remove(&peer) else {
            return false;
        };
        self.timers.stop(Timer::Silence(peer));
        self.timers.stop(Timer::Ping(peer));
        self.members.insert(
            peer,
            Member {
                info: link.info,
                clock: Some(link.clock),
                unreached_dials: None,
            },
        );
        self.timers.set(
            Timer::Redial(peer),
            now_ns.saturating_add(self.cfg.redial_interval_ns),
        );
        self.timers.set(
            Timer::Forget(peer),
            now_ns.saturating_add(self.cfg.forget_after_ns),
        );
        self.choose_root(now_ns);
        true
    }

    /// Asks the shell to dial every member whose redial is due: a member we
    /// were linked to at the steady rate (it is likely back soon), one we only
    /// heard of from a peer list with a doubling interval, so a list naming
    /// addresses that are no member (or nothing at all) costs a few dials.
    pub(super) fn redial(&mut self, now_ns: i64) {
        for peer in self.timers.due_peers(Timer::Redial(PeerId(0)), now_ns) {
            let Some(m) = self.members.get_mut(&peer) else {
                continue;
            };
            let info = m.info.clone();
            let backoff = match m.unreached_dials.as_mut() {
                None => 0,
                Some(n) => {
                    *n = n.saturating_add(1);
                    (*n - 1).min(MAX_UNREACHED_BACKOFF_DOUBLINGS)
                }
            };
            self.timers.set(
                Timer::Redial(peer),
                now_ns.saturating_add(self.cfg.redial_interval_ns << backoff),
            );
            self.events.push_back(SessionEvent::Dial(info));
        }
    }

    /// Forgets members unreachable for `forget_after_ns`.
    pub(super) fn forget_lost(&mut self, now_ns: i64) {
        for peer in self.timers.due_peers(Timer::Forget(PeerId(0)), now_ns) {
            self.members.remove(&peer);
            self.timers.stop_peer(peer);
        }
    }

    /// Synced linked peers, most senior first (the order that picks the root).
    pub(super) fn by_seniority(&self) -> Vec<PeerId> {
        let mut ids: Vec<(i64, PeerId)> = self
            .links
            .iter()
            .filter(|(_, l)| l.map.is_some())
            .map(|(id, l)| (l.synced_at_session_ns, *id))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// The peers whose clocks we sample often: the root and its heir, or the two
    /// best candidates while we are not synced.
    pub(super) fn clock_targets(&self) -> BTreeSet<PeerId> {
        let senior = self.by_seniority();
        if self.map.is_none() {
            return senior.into_iter().take(2).collect();
        }
        if self.root == Some(self.me.peer_id) {
            return BTreeSet::new(); // the root follows nobody
        }
        let heir = senior.into_iter().find(|&id| Some(id) != self.root);
        self.root.into_iter().chain(heir).collect()
    }

    /// The time root among us and our synced links: the time most of us agree
    /// on, then seniority (see `election.rs`). The oldest member's clock
    /// estimates have had the longest to settle, a restarted or new peer never
    /// takes over the time base, and no lone member's claim moves ours.
    pub(super) fn choose_root(&mut self, now_ns: i64) {
        let Some(mine) = self.synced_at_session_ns else {
            return;
        };
        let me = Candidate {
            id: self.me.peer_id,
            seniority: mine,
            session_ns: self.map.map(|m| m.session_ns_at(now_ns)),
            me: true,
        };
        let mut candidates = self.candidates(now_ns);
        candidates.push(me);
        let root = elect(&candidates, self.cfg.time_agreement_ns).unwrap_or(me.id);
        if self.root != Some(root) {
            self.root = Some(root);
            self.events.push_back(SessionEvent::RootChanged { root });
        }
    }

    /// Our synced links as candidate roots: their claimed seniority, and
    /// their session time now, read through the link once it has enough
    /// samples.
    pub(super) fn candidates(&mut self, now_ns: i64) -> Vec<Candidate> {
        let ids: Vec<(PeerId, i64)> = self
            .links
            .iter()
            .filter(|(_, l)| l.map.is_some())
            .map(|(id, l)| (*id, l.synced_at_session_ns))
            .collect();
        let last_ns = Round::MAX.start_session_ns();
        ids.into_iter()
            .filter_map(|(id, seniority)| {
                let session_ns = self.usable_estimate(id).map(|(est, map)| {
                    root_target(&self.cfg.steer, &map, &est, now_ns, false).session_ns
                });
                // A time before the session or past its last round is no
                // session's time: that peer cannot be followed.
                if session_ns.is_some_and(|t| !(0..=last_ns).contains(&t)) {
                    return None;
                }
                Some(Candidate {
                    id,
                    seniority,
                    session_ns,
                    me: false,
                })
            })
            .collect()
    }
}
