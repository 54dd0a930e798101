//! Links and members: who we are linked to, who we lost and redial, who we
//! forget, and which peer's time everybody follows (the root).

use std::collections::BTreeSet;

use crate::protocol::clock::LinkClock;
use crate::protocol::message::{Message, PeerInfo, PeerList};
use crate::protocol::state::PeerId;

use super::timers::Timer;
use super::{DownReason, Link, Member, Session, SessionEvent};

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

    /// Members we learn of from a peer's list, to dial at once.
    pub(super) fn on_peer_list(&mut self, now_ns: i64, list: PeerList) {
        for info in list.peers {
            let id = info.peer_id;
            if id != self.me.peer_id
                && !self.links.contains_key(&id)
                && !self.members.contains_key(&id)
            {
                self.members.insert(id, Member { info, clock: None });
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
    pub(super) fn on_goodbye(&mut self, from: PeerId) {
        self.links.remove(&from);
        self.members.remove(&from);
        self.timers.stop_peer(from);
        self.events.push_back(SessionEvent::PeerDown {
            peer: from,
            reason: DownReason::Left,
        });
        self.choose_root();
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
        self.choose_root();
        true
    }

    /// Asks the shell to dial every member whose redial is due.
    pub(super) fn redial(&mut self, now_ns: i64) {
        for peer in self.timers.due_peers(Timer::Redial(PeerId(0)), now_ns) {
            let Some(m) = self.members.get(&peer) else {
                continue;
            };
            let info = m.info.clone();
            self.timers.set(
                Timer::Redial(peer),
                now_ns.saturating_add(self.cfg.redial_interval_ns),
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

    /// The time root: the most senior synced peer among us and our links (the
    /// one that synced first; the lowest id among equals). The oldest member's
    /// clock estimates have had the longest to settle, and a restarted or new
    /// peer never takes over the time base.
    pub(super) fn choose_root(&mut self) {
        let Some(mine) = self.synced_at_session_ns else {
            return;
        };
        let me = self.me.peer_id;
        let root = match self.by_seniority().first() {
            Some(&id) if (self.links[&id].synced_at_session_ns, id) < (mine, me) => id,
            _ => me,
        };
        if self.root != Some(root) {
            self.root = Some(root);
            self.events.push_back(SessionEvent::RootChanged { root });
        }
    }
}
