//! Which connections are this peer's links: a sans-IO state machine, like
//! [`crate::protocol::Session`]. It never touches a socket, a clock or tokio:
//! the core tells it what happened (`handle_*(now_ns, …)`) and does what
//! [`Links::poll_action`] says, waking at [`Links::poll_timeout`].
//!
//! - **Dialling.** Members the session asks for are dialled unless linked, being
//!   dialled, or backing off after a failed dial (per peer, 250 ms doubling to
//!   5 s, forgotten once linked). `--join` addresses are dialled until one of
//!   them gives a link (whoever else links to us first), and again whenever
//!   this peer is linked to nobody, each retried with its own backoff. At most
//!   [`MAX_LINKS`] links.
//! - **Strangers.** A peer list can name any address (a made-up member, or a
//!   service that is no synfony peer). Peers we have never been linked to are
//!   dialled at most [`MAX_STRANGER_DIALS`] at a time, and an address that
//!   failed [`MAX_FAILED_DIALS`] dials without ever giving a link is given up
//!   (until a link to it comes up some other way). Peers we were linked to
//!   are never held back by strangers. What is remembered for these rules is
//!   bounded ([`MAX_REMEMBERED`], oldest forgotten first).
//! - **One link per pair.** Of two connections to one peer, both ends keep the
//!   one dialled by the lower peer id; a newer connection from the same dialler
//!   replaces an older one (the old one is likely dead). The loser lingers,
//!   unread, for [`LINGER_NS`] before it is closed, so the far end switches
//!   before it sees a close.
//! - **Connection ids.** Every connection is named by the id the core gave it;
//!   what happens on a connection that is no longer a link (replaced, closed)
//!   is ignored.
//!
//! Calling contract: after every `handle_*`, drain [`Links::poll_action`] and
//! do each action in order; call [`Links::handle_timeout`] once
//! [`Links::poll_timeout`] has passed.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use crate::protocol::PeerId;
use crate::protocol::message::PeerInfo;

use crate::runtime::net::LinkError;

/// The core's name for one connection (unique within a peer's run).
pub type ConnId = u64;

/// Redials of a peer that refused or could not be reached back off up to this.
pub const MAX_BACKOFF_NS: i64 = 5_000_000_000;
pub const FIRST_BACKOFF_NS: i64 = 250_000_000;
/// How long the losing one of two connections to a peer stays open, unread
/// (the handshake's own limit: the far end has settled by then).
pub const LINGER_NS: i64 = 3_000_000_000;

/// Join addresses at most, those given and those found on the network
/// (`--join auto`): a few members' interfaces.
pub const MAX_JOINS: usize = 32;

/// Links at most: a session's worth ([`crate::protocol::message::MAX_PEERS`]).
/// A connection from a new peer beyond it is closed after its handshake, so
/// a flood of made-up members cannot grow what each link holds (queues, tasks,
/// clock samples) without bound.
pub const MAX_LINKS: usize = crate::protocol::message::MAX_PEERS;

/// Dials in flight at once to peers we have never been linked to. A dial
/// takes at most 5 s (2 s to connect, 3 s of handshake), so strangers cost at
/// most 8 sockets and tasks at a time and fewer than 2 dials a second to
/// addresses that never answer; an honest joiner that hears of a whole
/// session (63 members) reaches them within a few of the session's redials,
/// since a dial that answers takes milliseconds.
pub const MAX_STRANGER_DIALS: usize = 8;

/// Failed dials after which an address that never gave us a link is given
/// up. With the per-peer backoff (250 ms, 500 ms, 1 s, 2 s) that is about 4 s
/// of trying: enough for a member that is still starting or briefly away
/// (and a member that cannot be reached dials us itself once it hears of us),
/// few enough that a peer list naming some other service costs it 4
/// connections, not one every few seconds for ever.
pub const MAX_FAILED_DIALS: u32 = 4;

/// Addresses (failed dials) and peers (ever linked, backing off) remembered
/// for the dial rules; past it, the oldest entry is forgotten. A few dozen
/// KiB at most, and far more than a session's 64 members: forgetting only
/// lets an address that was given up cost another [`MAX_FAILED_DIALS`].
pub const MAX_REMEMBERED: usize = 1024;

/// What a dial was for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialTarget {
    /// A member the session asked for.
    Member(PeerId),
    /// The i-th `--join` address.
    Join(usize),
}

/// Where to dial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialAddr {
    Addr(SocketAddr),
    /// A `--join` argument: `host:port`, resolved when dialled.
    Spec(String),
}

/// Something for the core to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Dial `addr` and report the outcome as `target`'s.
    Dial { target: DialTarget, addr: DialAddr },
    /// `conn` is now the link to `peer`: start reading and writing it, and
    /// tell the session and the room.
    Up { peer: PeerId, conn: ConnId },
    /// `peer` has no link any more: the room forgets it; the session too
    /// when `tell_session` (not when the session itself dropped the peer, or
    /// when the link was only replaced: the session keeps its clock samples).
    Down { peer: PeerId, tell_session: bool },
    /// Stop reading `conn` but keep it open (a [`Action::Close`] follows).
    Linger(ConnId),
    /// Close `conn` and free what it holds.
    Close(ConnId),
    /// A line for the user (a refusal, a join that fails).
    Report(String),
}

#[derive(Debug)]
struct Link {
    conn: ConnId,
    dialer: PeerId,
}

/// A map that keeps at most [`MAX_REMEMBERED`] entries, forgetting the one
/// set longest ago.
#[derive(Debug)]
struct Recent<K, V> {
    entries: BTreeMap<K, (u64, V)>,
    order: BTreeMap<u64, K>,
    next: u64,
}

impl<K: Ord + Clone, V> Default for Recent<K, V> {
    fn default() -> Self {
        Recent {
            entries: BTreeMap::new(),
            order: BTreeMap::new(),
            next: 0,
        }
    }
}

impl<K: Ord + Clone, V> Recent<K, V> {
    fn get(&self, k: &K) -> Option<&V> {
        self.entries.get(k).map(|(_, v)| v)
    }

    fn contains(&self, k: &K) -> bool {
        self.entries.contains_key(k)
    }

    /// Sets `k` to `v`, as the newest entry.
    fn insert(&mut self, k: K, v: V) {
        self.remove(&k);
        if self.entries.len() >= MAX_REMEMBERED
            && let Some((_, oldest)) = self.order.pop_first()
        {
            self.entries.remove(&oldest);
        }
        self.order.insert(self.next, k.clone());
        self.entries.insert(k, (self.next, v));
        self.next += 1;
    }

    fn remove(&mut self, k: &K) {
        if let Some((seq, _)) = self.entries.remove(k) {
            self.order.remove(&seq);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A member dial in flight.
#[derive(Debug)]
struct Dialing {
    addr: SocketAddr,
    /// Whether the peer was never linked to us when the dial started.
    stranger: bool,
}

#[derive(Debug)]
struct Join {
    spec: String,
    next_try_ns: i64,
    backoff_ns: i64,
    in_flight: bool,
    last_error: Option<String>,
    /// Found on the network (`--join auto`), not given: its failures are not
    /// reported (a member's other interfaces, a docker bridge, may never
    /// answer while another address joins).
    found: bool,
    /// No longer tried (the session found went away before we joined it).
    retired: bool,
    /// Dials in a row that gave no link.
    failures: u32,
}

impl Join {
    /// A join address first tried at `now_ns`; `found` on the network, or given.
    fn new(spec: String, now_ns: i64, found: bool) -> Join {
        Join {
            spec,
            next_try_ns: now_ns,
            backoff_ns: FIRST_BACKOFF_NS,
            in_flight: false,
            last_error: None,
            found,
            retired: false,
            failures: 0,
        }
    }
}

/// This peer's links and dials. See the module documentation.
#[derive(Debug)]
pub struct Links {
    me: PeerId,
    links: BTreeMap<PeerId, Link>,
    /// Members being dialled.
    dialing: BTreeMap<PeerId, Dialing>,
    /// Members whose last dial failed: (not before, current backoff).
    backoff: Recent<PeerId, (i64, i64)>,
    /// Peers that have been linked to us (either end dialling).
    linked_before: Recent<PeerId, ()>,
    /// Addresses whose dials failed, with how many in a row, while they
    /// never gave a link.
    failed: Recent<SocketAddr, u32>,
    joins: Vec<Join>,
    /// Whether a `--join` dial has given us a link: until then the join
    /// addresses are dialled even if others linked to us first (a peer that
    /// reaches a joiner first must not keep it from its session).
    joined: bool,
    /// Losing connections and when they close.
    lingering: BTreeMap<ConnId, i64>,
    actions: VecDeque<Action>,
}

impl Links {
    /// `joins`: the `--join` addresses, first tried at `now_ns`.
    pub fn new(me: PeerId, joins: Vec<String>, now_ns: i64) -> Links {
        Links {
            me,
            links: BTreeMap::new(),
            dialing: BTreeMap::new(),
            backoff: Recent::default(),
            linked_before: Recent::default(),
            failed: Recent::default(),
            joins: joins
                .into_iter()
                .map(|spec| Join::new(spec, now_ns, false))
                .collect(),
            joined: false,
            lingering: BTreeMap::new(),
            actions: VecDeque::new(),
        }
    }

    /// Another address to join through (a member found on the network for
    /// `--join auto`), dialled like a `--join` address — at once if this peer
    /// is not yet in a session —, but its failures unreported. A retired
    /// address comes back. Returns false for an address already tried, or
    /// past [`MAX_JOINS`].
    pub fn add_found_join(&mut self, now_ns: i64, spec: String) -> bool {
        if let Some(j) = self.joins.iter_mut().find(|j| j.spec == spec) {
            let back = j.retired;
            if back {
                // Afresh, but a dial still under way stays counted.
                let in_flight = j.in_flight;
                *j = Join {
                    in_flight,
                    ..Join::new(spec, now_ns, true)
                };
            }
            return back;
        }
        if self.joins.len() >= MAX_JOINS {
            return false;
        }
        self.joins.push(Join::new(spec, now_ns, true));
        true
    }

    /// Every address found on the network that is still tried has failed
    /// `min_failures` dials in a row (and none is under way): the session
    /// they were found for cannot be reached (or was made up).
    pub fn found_joins_failing(&self, min_failures: u32) -> bool {
        let mut tried = (self.joins.iter())
            .filter(|j| j.found && !j.retired)
            .peekable();
        tried.peek().is_some() && tried.all(|j| !j.in_flight && j.failures >= min_failures)
    }

    /// Stops trying the addresses found on the network (the session they
    /// belong to is gone); a dial under way ends as it will.
    pub fn retire_found_joins(&mut self) {
        for j in self.joins.iter_mut().filter(|j| j.found) {
            j.retired = true;
        }
    }

    /// The connection that is `peer`'s link.
    pub fn conn_of(&self, peer: PeerId) -> Option<ConnId> {
        self.links.get(&peer).map(|l| l.conn)
    }

    /// Whether `conn` is `peer`'s link (else what it says is stale).
    pub fn is_current(&self, peer: PeerId, conn: ConnId) -> bool {
        self.conn_of(peer) == Some(conn)
    }

    /// `conn` to `peer` finished its handshake; `dialed` is the dial that
    /// made it (`None`: the far end dialled us).
    pub fn handle_connected(
        &mut self,
        now_ns: i64,
        conn: ConnId,
        peer: PeerId,
        dialed: Option<DialTarget>,
    ) {
        match &dialed {
            // Another peer answered (ids are proven by the link): whoever
            // said `asked` is there was wrong, or lied in a peer list. The
            // link stands — it is a real member — and the dial failed.
            Some(DialTarget::Member(asked)) if *asked != peer => self.dial_failed(now_ns, *asked),
            Some(DialTarget::Member(asked)) => {
                if let Some(d) = self.dialing.remove(asked) {
                    // It answered as a peer: not a dead address.
                    self.failed.remove(&d.addr);
                }
            }
            Some(DialTarget::Join(i)) => {
                self.joined = true;
                if let Some(j) = self.joins.get_mut(*i) {
                    // Ready to be tried again if this peer ends up alone.
                    j.in_flight = false;
                    j.backoff_ns = FIRST_BACKOFF_NS;
                    j.last_error = None;
                    j.failures = 0;
                }
            }
            None => {}
        }
        self.backoff.remove(&peer);
        if !self.links.contains_key(&peer) && self.links.len() >= MAX_LINKS {
            self.actions.push_back(Action::Close(conn));
            return;
        }
        self.linked_before.insert(peer, ());
        let dialer = if dialed.is_some() { self.me } else { peer };
        if let Some(existing) = self.links.get(&peer) {
            let preferred = self.me.min(peer);
            if existing.dialer == preferred && dialer != preferred {
                // A second connection lost to the one dialled by `preferred`.
                self.linger(now_ns, conn);
                return;
            }
            // A newer or preferred connection replaces the link.
            let old = existing.conn;
            self.linger(now_ns, old);
            self.actions.push_back(Action::Down {
                peer,
                tell_session: false,
            });
        }
        self.links.insert(peer, Link { conn, dialer });
        self.actions.push_back(Action::Up { peer, conn });
    }

    /// A dial for member `peer` did not reach it: it backs off, and a
    /// stranger's address counts a failure.
    fn dial_failed(&mut self, now_ns: i64, peer: PeerId) {
        if let Some(d) = self.dialing.remove(&peer)
            && d.stranger
            && !self.linked_before.contains(&peer)
        {
            let n = self.failed.get(&d.addr).copied().unwrap_or(0);
            self.failed.insert(d.addr, n.saturating_add(1));
        }
        let backoff = (self.backoff.get(&peer))
            .map_or(FIRST_BACKOFF_NS, |&(_, b)| (b * 2).min(MAX_BACKOFF_NS));
        self.backoff.insert(peer, (now_ns + backoff, backoff));
    }

    /// A dial for `target` did not produce a link.
    pub fn handle_dial_failed(&mut self, now_ns: i64, target: DialTarget, error: &LinkError) {
        match target {
            DialTarget::Member(peer) => {
                self.dial_failed(now_ns, peer);
                if error.is_refusal() {
                    (self.actions)
                        .push_back(Action::Report(format!("peer {peer} refused: {error}")));
                }
            }
            DialTarget::Join(i) => {
                let Some(j) = self.joins.get_mut(i) else {
                    return;
                };
                j.in_flight = false;
                j.failures = j.failures.saturating_add(1);
                j.next_try_ns = now_ns + j.backoff_ns;
                let retry_ms = j.backoff_ns / 1_000_000;
                j.backoff_ns = (j.backoff_ns * 2).min(MAX_BACKOFF_NS);
                let text = error.to_string();
                // Said once per kind of failure, not on every retry.
                if !j.found && j.last_error.as_deref() != Some(text.as_str()) {
                    j.last_error = Some(text.clone());
                    self.actions.push_back(Action::Report(format!(
                        "cannot join via {}: {text} (retrying every {retry_ms} ms or more)",
                        j.spec
                    )));
                }
            }
        }
    }

    /// `conn` ended (its reader saw the socket close, or its writer could
    /// not take more). Ignored unless it is a link.
    pub fn handle_closed(&mut self, _now_ns: i64, conn: ConnId) {
        let Some(peer) = self.peer_of(conn) else {
            return;
        };
        self.links.remove(&peer);
        // Refreshed: it is the peer most likely to be redialled next.
        self.linked_before.insert(peer, ());
        self.actions.push_back(Action::Close(conn));
        self.actions.push_back(Action::Down {
            peer,
            tell_session: true,
        });
    }

    /// The session wants a link to `info` (it asks again while it wants
    /// one): dialled unless linked, being dialled or backing off; a peer never
    /// linked to us also not while [`MAX_STRANGER_DIALS`] strangers are being
    /// dialled, nor at an address given up ([`MAX_FAILED_DIALS`]).
    pub fn handle_session_dial(&mut self, now_ns: i64, info: &PeerInfo) {
        let peer = info.peer_id;
        let backing_off = self.backoff.get(&peer).is_some_and(|&(t, _)| now_ns < t);
        if self.links.contains_key(&peer) || self.dialing.contains_key(&peer) || backing_off {
            return;
        }
        let stranger = !self.linked_before.contains(&peer);
        if stranger {
            let given_up = (self.failed.get(&info.addr)).is_some_and(|&n| n >= MAX_FAILED_DIALS);
            let busy = (self.dialing.values()).filter(|d| d.stranger).count() >= MAX_STRANGER_DIALS;
            if given_up || busy {
                return;
            }
        }
        self.dialing.insert(
            peer,
            Dialing {
                addr: info.addr,
                stranger,
            },
        );
        self.actions.push_back(Action::Dial {
            target: DialTarget::Member(peer),
            addr: DialAddr::Addr(info.addr),
        });
    }

    /// The session dropped `peer` (it left, fell silent, or asked to be cut
    /// off): its link closes without telling the session again.
    pub fn handle_session_drop(&mut self, _now_ns: i64, peer: PeerId) {
        if let Some(link) = self.links.remove(&peer) {
            self.actions.push_back(Action::Close(link.conn));
            self.actions.push_back(Action::Down {
                peer,
                tell_session: false,
            });
        }
    }

    /// Closes lingering connections that have waited long enough and dials
    /// `--join` addresses due for a try while this peer is linked to nobody.
    pub fn handle_timeout(&mut self, now_ns: i64) {
        let done: Vec<ConnId> = (self.lingering.iter())
            .filter(|&(_, &until)| now_ns >= until)
            .map(|(&c, _)| c)
            .collect();
        for conn in done {
            self.lingering.remove(&conn);
            self.actions.push_back(Action::Close(conn));
        }
        if self.joined && !self.links.is_empty() {
            return;
        }
        for (i, j) in self.joins.iter_mut().enumerate() {
            if j.in_flight || j.retired || now_ns < j.next_try_ns {
                continue;
            }
            j.in_flight = true;
            self.actions.push_back(Action::Dial {
                target: DialTarget::Join(i),
                addr: DialAddr::Spec(j.spec.clone()),
            });
        }
    }

    /// When [`Links::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<i64> {
        let linger = self.lingering.values().copied().min();
        let join = (!self.joined || self.links.is_empty())
            .then(|| {
                (self.joins.iter())
                    .filter(|j| !j.in_flight && !j.retired)
                    .map(|j| j.next_try_ns)
                    .min()
            })
            .flatten();
        linger.into_iter().chain(join).min()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Leaving: every link and lingering connection closes (the session
    /// already said goodbye).
    pub fn close_all(&mut self) {
        for (peer, link) in std::mem::take(&mut self.links) {
            self.actions.push_back(Action::Close(link.conn));
            self.actions.push_back(Action::Down {
                peer,
                tell_session: false,
            });
        }
        for conn in std::mem::take(&mut self.lingering).into_keys() {
            self.actions.push_back(Action::Close(conn));
        }
    }

    fn peer_of(&self, conn: ConnId) -> Option<PeerId> {
        (self.links.iter())
            .find(|(_, l)| l.conn == conn)
            .map(|(p, _)| *p)
    }

    fn linger(&mut self, now_ns: i64, conn: ConnId) {
        self.actions.push_back(Action::Linger(conn));
        self.lingering.insert(conn, now_ns + LINGER_NS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::handshake::HandshakeError;

    const A: PeerId = PeerId(1);
    const B: PeerId = PeerId(2);
    const C: PeerId = PeerId(3);
    const MS: i64 = 1_000_000;

    fn drain(links: &mut Links) -> Vec<Action> {
        std::iter::from_fn(|| links.poll_action()).collect()
    }

    fn info(peer: PeerId) -> PeerInfo {
        PeerInfo {
            peer_id: peer,
            name: format!("{peer}"),
            addr: SocketAddr::from(([127, 0, 0, 1], 7000 + peer.0 as u16)),
        }
    }

    fn refused() -> LinkError {
        LinkError::Closed
    }

    /// Both connections of a simultaneous dial arrive, in either order, at
    /// either end: both ends keep the one dialled by the lower id (A), and
    /// the other lingers, then closes.
    #[test]
    fn a_simultaneous_dial_is_resolved_the_same_way_on_both_ends() {
        // Connection "A→B" is 10 on A and 20 on B; "B→A" is 11 on A and 21 on B.
        for a_first in [true, false] {
            for b_first in [true, false] {
                let mut a = Links::new(A, vec![], 0);
                let mut b = Links::new(B, vec![], 0);
                let a_conns = [(10, Some(DialTarget::Member(B))), (11, None)];
                let b_conns = [(20, None), (21, Some(DialTarget::Member(A)))];
                let order = |first: bool, c: [(ConnId, Option<DialTarget>); 2]| {
                    if first {
                        c
                    } else {
                        [c[1].clone(), c[0].clone()]
                    }
                };
                for (conn, dialed) in order(a_first, a_conns) {
                    a.handle_connected(0, conn, B, dialed);
                }
                for (conn, dialed) in order(b_first, b_conns) {
                    b.handle_connected(0, conn, A, dialed);
                }
                assert_eq!(a.conn_of(B), Some(10), "A, a_first {a_first}");
                assert_eq!(b.conn_of(A), Some(20), "B, b_first {b_first}");
                let (a_loser, b_loser) = (11, 21);
                assert!(drain(&mut a).contains(&Action::Linger(a_loser)));
                assert!(drain(&mut b).contains(&Action::Linger(b_loser)));
                a.handle_timeout(LINGER_NS - 1);
                assert_eq!(drain(&mut a), vec![]);
                a.handle_timeout(LINGER_NS);
                assert_eq!(drain(&mut a), vec![Action::Close(a_loser)]);
            }
        }
    }

    /// The winner arriving second replaces the link: the loser lingers, the
    /// room hears the peer go down and up, the session only up.
    #[test]
    fn a_preferred_connection_replaces_the_link_without_telling_the_session_it_went_down() {
        let mut a = Links::new(A, vec![], 0);
        a.handle_connected(0, 11, B, None);
        assert_eq!(drain(&mut a), vec![Action::Up { peer: B, conn: 11 }]);
        a.handle_connected(5 * MS, 10, B, Some(DialTarget::Member(B)));
        assert_eq!(
            drain(&mut a),
            vec![
                Action::Linger(11),
                Action::Down {
                    peer: B,
                    tell_session: false
                },
                Action::Up { peer: B, conn: 10 },
            ]
        );
        assert_eq!(a.poll_timeout(), Some(5 * MS + LINGER_NS));
    }

    /// A newer connection from the same dialler replaces the older (the
    /// older is likely dead).
    #[test]
    fn a_newer_connection_from_the_same_dialler_replaces_the_older() {
        let mut b = Links::new(B, vec![], 0);
        b.handle_connected(0, 1, A, None);
        b.handle_connected(0, 2, A, None);
        assert_eq!(b.conn_of(A), Some(2));
        assert!(drain(&mut b).contains(&Action::Linger(1)));
    }

    /// What a replaced or closed connection reports is ignored.
    #[test]
    fn a_stale_connections_events_are_ignored() {
        let mut a = Links::new(A, vec![], 0);
        a.handle_connected(0, 11, B, None);
        a.handle_connected(0, 10, B, Some(DialTarget::Member(B)));
        drain(&mut a);
        assert!(!a.is_current(B, 11));
        assert!(a.is_current(B, 10));
        a.handle_closed(0, 11);
        assert_eq!(drain(&mut a), vec![], "the replaced connection closed");
        a.handle_closed(0, 10);
        assert_eq!(
            drain(&mut a),
            vec![
                Action::Close(10),
                Action::Down {
                    peer: B,
                    tell_session: true
                }
            ]
        );
        a.handle_closed(0, 10);
        assert_eq!(drain(&mut a), vec![], "closed twice");
        assert!(!a.is_current(B, 10));
    }

    /// `--join` addresses are dialled at once, retried with a doubling
    /// backoff (one report per kind of failure), and not while linked.
    #[test]
    fn joins_are_retried_with_backoff_while_unlinked_and_stop_once_linked() {
        let mut a = Links::new(A, vec!["host:1".into()], 0);
        let dial = Action::Dial {
            target: DialTarget::Join(0),
            addr: DialAddr::Spec("host:1".into()),
        };
        assert_eq!(a.poll_timeout(), Some(0));
        a.handle_timeout(0);
        assert_eq!(drain(&mut a), vec![dial.clone()]);
        assert_eq!(a.poll_timeout(), None, "in flight");
        a.handle_timeout(MS);
        assert_eq!(drain(&mut a), vec![], "one dial at a time");

        let mut now = 0;
        for (i, backoff) in [250, 500, 1000, 2000, 4000, 5000, 5000]
            .into_iter()
            .enumerate()
        {
            a.handle_dial_failed(now, DialTarget::Join(0), &refused());
            let reports = drain(&mut a);
            assert_eq!(reports.len(), usize::from(i == 0), "{reports:?}");
            assert_eq!(a.poll_timeout(), Some(now + backoff * MS));
            a.handle_timeout(now + backoff * MS - 1);
            assert_eq!(drain(&mut a), vec![]);
            now += backoff * MS;
            a.handle_timeout(now);
            assert_eq!(drain(&mut a), vec![dial.clone()]);
        }

        // Linked (through this join): no more tries, even when due.
        a.handle_connected(now, 7, B, Some(DialTarget::Join(0)));
        drain(&mut a);
        assert_eq!(a.poll_timeout(), None);
        a.handle_timeout(now + 60_000 * MS);
        assert_eq!(drain(&mut a), vec![]);

        // Alone again: tried at once, its backoff back to the first.
        a.handle_closed(now, 7);
        drain(&mut a);
        a.handle_timeout(now + 60_000 * MS);
        assert_eq!(drain(&mut a), vec![dial.clone()]);
        a.handle_dial_failed(now, DialTarget::Join(0), &refused());
        assert_eq!(a.poll_timeout(), Some(now + 250 * MS));
    }

    /// Members found on the network (`--join auto`) are joined through like
    /// `--join` addresses: dialled at once, each once, at most `MAX_JOINS`;
    /// their failures are not reported; retired, they are not tried until
    /// found again.
    #[test]
    fn joins_found_later_are_dialled_at_once_quietly_and_bounded() {
        let mut a = Links::new(A, vec![], 0);
        assert_eq!(a.poll_timeout(), None, "nothing to join yet");
        assert!(a.add_found_join(5 * MS, "10.0.0.2:7878".into()));
        assert!(!a.add_found_join(6 * MS, "10.0.0.2:7878".into()), "known");
        assert_eq!(a.poll_timeout(), Some(5 * MS));
        a.handle_timeout(6 * MS);
        assert_eq!(
            drain(&mut a),
            vec![Action::Dial {
                target: DialTarget::Join(0),
                addr: DialAddr::Spec("10.0.0.2:7878".into()),
            }]
        );
        assert!(!a.found_joins_failing(1), "under way");
        a.handle_dial_failed(6 * MS, DialTarget::Join(0), &refused());
        assert_eq!(drain(&mut a), vec![], "not reported");
        assert!(a.found_joins_failing(1));
        assert!(!a.found_joins_failing(2));
        a.retire_found_joins();
        assert!(!a.found_joins_failing(1), "none tried");
        assert_eq!(a.poll_timeout(), None, "retired");
        a.handle_timeout(1000 * MS);
        assert_eq!(drain(&mut a), vec![]);
        assert!(
            a.add_found_join(7 * MS, "10.0.0.2:7878".into()),
            "found again"
        );
        assert_eq!(a.poll_timeout(), Some(7 * MS));
        for i in 1..MAX_JOINS {
            assert!(a.add_found_join(7 * MS, format!("10.0.1.{i}:7878")));
        }
        assert!(!a.add_found_join(7 * MS, "10.0.2.1:7878".into()), "bounded");
        // Linked through one: the others wait.
        a.handle_connected(8 * MS, 3, B, Some(DialTarget::Join(1)));
        drain(&mut a);
        a.handle_timeout(9 * MS);
        assert!(
            !drain(&mut a)
                .iter()
                .any(|x| matches!(x, Action::Dial { .. })),
            "no joins while in the session"
        );
    }

    /// A peer that links to a joiner first (a hostile one, say) does not
    /// keep it from dialling its `--join` address; and no more than
    /// `MAX_LINKS` peers are linked.
    #[test]
    fn joins_go_on_until_a_join_links_and_links_are_capped() {
        let mut a = Links::new(A, vec!["host:1".into()], 0);
        a.handle_connected(0, 1, C, None);
        drain(&mut a);
        a.handle_timeout(0);
        assert!(
            drain(&mut a).iter().any(|x| matches!(
                x,
                Action::Dial {
                    target: DialTarget::Join(0),
                    ..
                }
            )),
            "still joins"
        );
        for i in 0..MAX_LINKS as u64 {
            a.handle_connected(MS, 100 + i, PeerId(1000 + i), None);
        }
        let actions = drain(&mut a);
        let ups = actions
            .iter()
            .filter(|x| matches!(x, Action::Up { .. }))
            .count();
        assert_eq!(ups, MAX_LINKS - 1, "one place was C's");
        assert!(actions.contains(&Action::Close(100 + MAX_LINKS as u64 - 1)));
        assert!(!a.is_current(
            PeerId(1000 + MAX_LINKS as u64 - 1),
            100 + MAX_LINKS as u64 - 1
        ));
    }

    /// A member the session asks for is dialled once at a time; after a
    /// failed dial it is not redialled before its own backoff, which doubles
    /// per failure and is forgotten once linked; other peers are unaffected.
    #[test]
    fn redials_back_off_per_peer() {
        let mut a = Links::new(A, vec![], 0);
        let dial = |p: PeerId| Action::Dial {
            target: DialTarget::Member(p),
            addr: DialAddr::Addr(info(p).addr),
        };
        a.handle_session_dial(0, &info(B));
        a.handle_session_dial(0, &info(B));
        assert_eq!(drain(&mut a), vec![dial(B)], "one dial at a time");

        let mut now = 0;
        for backoff in [250, 500, 1000] {
            a.handle_dial_failed(now, DialTarget::Member(B), &refused());
            a.handle_session_dial(now + backoff * MS - 1, &info(B));
            a.handle_session_dial(now, &info(C));
            let actions = drain(&mut a);
            assert!(!actions.contains(&dial(B)), "{actions:?}");
            now += backoff * MS;
            a.handle_session_dial(now, &info(B));
            assert_eq!(drain(&mut a), vec![dial(B)]);
        }
        // C was dialled once and is still in flight.
        a.handle_session_dial(now, &info(C));
        assert_eq!(drain(&mut a), vec![]);

        // A refusal is reported; a link clears the backoff.
        a.handle_dial_failed(
            now,
            DialTarget::Member(B),
            &LinkError::Handshake(HandshakeError::WrongPassphrase),
        );
        assert!(matches!(drain(&mut a)[..], [Action::Report(_)]));
        a.handle_connected(now, 1, B, None);
        a.handle_closed(now, 1);
        drain(&mut a);
        a.handle_session_dial(now, &info(B));
        assert_eq!(drain(&mut a), vec![dial(B)]);
        // Linked peers are not dialled.
        a.handle_connected(now, 2, C, Some(DialTarget::Member(C)));
        drain(&mut a);
        a.handle_session_dial(now, &info(C));
        assert_eq!(drain(&mut a), vec![]);
    }

    fn at(peer: u64, addr: [u8; 4]) -> PeerInfo {
        PeerInfo {
            peer_id: PeerId(peer),
            name: format!("ghost{peer}"),
            addr: SocketAddr::from((addr, 7000)),
        }
    }

    fn dials(actions: &[Action]) -> usize {
        (actions.iter())
            .filter(|a| matches!(a, Action::Dial { .. }))
            .count()
    }

    /// A peer list full of strangers: at most `MAX_STRANGER_DIALS` of them
    /// are dialled at once (a failed dial frees a place), and a peer we were
    /// linked to is dialled even while those places are all taken.
    #[test]
    fn strangers_are_dialled_a_few_at_a_time() {
        let mut a = Links::new(A, vec![], 0);
        a.handle_connected(0, 1, C, None);
        a.handle_closed(0, 1);
        drain(&mut a);
        for p in 100..164 {
            a.handle_session_dial(0, &at(p, [10, 0, 0, p as u8]));
        }
        assert_eq!(dials(&drain(&mut a)), MAX_STRANGER_DIALS);
        a.handle_session_dial(0, &info(C));
        assert_eq!(dials(&drain(&mut a)), 1, "a peer once linked");

        a.handle_dial_failed(MS, DialTarget::Member(PeerId(100)), &refused());
        for p in 100..164 {
            a.handle_session_dial(MS, &at(p, [10, 0, 0, p as u8]));
        }
        let actions = drain(&mut a);
        assert_eq!(dials(&actions), 1, "{actions:?}");
        assert!(
            !actions.iter().any(|x| matches!(
                x,
                Action::Dial {
                    target: DialTarget::Member(PeerId(100)),
                    ..
                }
            )),
            "the failed one backs off"
        );
    }

    /// An address that never gave a link is given up after
    /// `MAX_FAILED_DIALS` failed dials, under any peer id; a peer that was
    /// linked to us is never given up, and an address that answers starts
    /// its count again.
    #[test]
    fn an_address_that_never_links_is_given_up() {
        let mut a = Links::new(A, vec![], 0);
        let service = [192, 0, 2, 1];
        let mut now = 0;
        /// Asks for `p`; a dial fails; time passes beyond its backoff.
        fn attempt(a: &mut Links, now: &mut i64, p: &PeerInfo) -> bool {
            a.handle_session_dial(*now, p);
            let dialled = dials(&drain(a)) == 1;
            if dialled {
                a.handle_dial_failed(*now, DialTarget::Member(p.peer_id), &refused());
            }
            *now += 10_000 * MS;
            dialled
        }
        for _ in 0..MAX_FAILED_DIALS {
            assert!(attempt(&mut a, &mut now, &at(100, service)));
        }
        assert!(!attempt(&mut a, &mut now, &at(100, service)), "given up");
        assert!(!attempt(&mut a, &mut now, &at(101, service)), "any id");
        assert!(attempt(&mut a, &mut now, &at(102, [192, 0, 2, 2])));

        // B was linked to us once: its address is tried however often it fails.
        a.handle_connected(now, 1, B, None);
        a.handle_closed(now, 1);
        drain(&mut a);
        for _ in 0..2 * MAX_FAILED_DIALS {
            assert!(attempt(&mut a, &mut now, &info(B)));
        }

        // A member that answers at last: its address's count starts again.
        let slow = [192, 0, 2, 3];
        for _ in 0..MAX_FAILED_DIALS - 1 {
            assert!(attempt(&mut a, &mut now, &at(103, slow)));
        }
        a.handle_session_dial(now, &at(104, slow));
        drain(&mut a);
        a.handle_connected(now, 2, PeerId(104), Some(DialTarget::Member(PeerId(104))));
        drain(&mut a);
        for _ in 0..MAX_FAILED_DIALS {
            assert!(attempt(&mut a, &mut now, &at(105, slow)));
        }

        // A peer list that puts a member at another's address: the other
        // answers (its id proven by the link), which is no answer for the
        // member named — that address is given up for it like a dead one.
        let taken = [192, 0, 2, 4];
        for n in 0..MAX_FAILED_DIALS {
            a.handle_session_dial(now, &at(106, taken));
            assert_eq!(dials(&drain(&mut a)), 1, "dial {n}");
            a.handle_connected(
                now,
                10 + n as u64,
                PeerId(107),
                Some(DialTarget::Member(PeerId(106))),
            );
            drain(&mut a);
            now += 10_000 * MS;
        }
        a.handle_session_dial(now, &at(106, taken));
        assert_eq!(dials(&drain(&mut a)), 0, "given up");
    }

    /// What the dial rules remember stays under `MAX_REMEMBERED` however many
    /// addresses and peer ids fail, and the oldest goes first.
    #[test]
    fn what_the_dial_rules_remember_is_bounded() {
        let mut a = Links::new(A, vec![], 0);
        let n = MAX_REMEMBERED as u64 + 100;
        for p in 0..n {
            let ip = (p as u32 + 1).to_be_bytes();
            a.handle_session_dial(0, &at(1000 + p, ip));
            drain(&mut a);
            a.handle_dial_failed(0, DialTarget::Member(PeerId(1000 + p)), &refused());
        }
        assert_eq!(a.failed.len(), MAX_REMEMBERED);
        assert_eq!(a.backoff.len(), MAX_REMEMBERED);
        assert!(a.dialing.is_empty());

        let mut r: Recent<u32, ()> = Recent::default();
        for k in 0..MAX_REMEMBERED as u32 {
            r.insert(k, ());
        }
        r.insert(0, ()); // set again: now the newest
        r.insert(u32::MAX, ());
        assert!(r.contains(&0) && !r.contains(&1), "1 was the oldest");
        assert_eq!(r.len(), MAX_REMEMBERED);
    }

    /// The session dropping a peer closes its link without telling the
    /// session back; leaving closes links and lingering connections.
    #[test]
    fn session_drops_and_leaving_close_links() {
        let mut a = Links::new(A, vec![], 0);
        a.handle_connected(0, 1, B, None);
        a.handle_connected(0, 2, C, None);
        a.handle_connected(0, 3, C, None);
        drain(&mut a);
        a.handle_session_drop(0, B);
        assert_eq!(
            drain(&mut a),
            vec![
                Action::Close(1),
                Action::Down {
                    peer: B,
                    tell_session: false
                }
            ]
        );
        a.handle_session_drop(0, B);
        assert_eq!(drain(&mut a), vec![]);
        a.close_all();
        assert_eq!(
            drain(&mut a),
            vec![
                Action::Close(3),
                Action::Down {
                    peer: C,
                    tell_session: false
                },
                Action::Close(2),
            ]
        );
        assert_eq!(a.poll_timeout(), None);
    }
}
