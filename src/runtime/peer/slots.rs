//! Handshake slots: which accepted connections may take part of the peer's
//! attention before they have said who they are. Pure, like [`super::links`]:
//! the accept loop tells it what happened and does what it says.
//!
//! A flood of silent sockets once held all 64 handshake slots, so real peers
//! could not join (issue 19). Now:
//! - at most [`MAX_HANDSHAKES`] in all and [`MAX_HANDSHAKES_PER_IP`] from one
//!   address;
//! - when either is full, a newcomer takes the place of the oldest connection
//!   from that address (or in all) that has not sent a byte yet, else of the
//!   oldest; so an attacker must keep re-opening connections faster than a
//!   real peer's handshake takes (milliseconds) to keep one out;
//! - a connection that sends nothing for [`FIRST_BYTE_TIMEOUT`] is closed (the
//!   whole handshake still has its own, longer timeout);
//! - an address whose handshakes keep failing (a wrong passphrase is one
//!   guess) is slowed down (issue 23): [`FREE_FAILURES`] at once, then one per
//!   [`FAILURE_REFILL`]; past that its connections are closed unanswered
//!   ([`Admit::Refuse`]) until it has waited. An address is an IPv4 address
//!   or an IPv6 /64. A whole session on loopback
//!   shares one address, so the allowance is well above a misconfigured
//!   peer's retries (its redials back off to seconds).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Connections in their handshake at once.
pub const MAX_HANDSHAKES: usize = 64;
/// Connections in their handshake at once from one IP address: a LAN peer
/// opens one per dial, and a whole test session on loopback shares one
/// address, so this is well above what honest peers need.
pub const MAX_HANDSHAKES_PER_IP: usize = 16;
/// A connection silent this long after it was accepted is closed.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(1);
/// Failed handshakes one address may have in a burst.
pub const FREE_FAILURES: u32 = 8;
/// After a burst, one more failure is allowed per this long.
pub const FAILURE_REFILL: Duration = Duration::from_secs(1);
/// Addresses whose failures are remembered (the oldest debt goes first).
pub const MAX_TRACKED_ADDRESSES: usize = 1024;

/// What to do with a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// It has a slot.
    Yes,
    /// It has the slot of this older connection, which must be closed.
    Evict(u64),
    /// Its address failed too often lately: closed without an answer.
    Refuse,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    ip: IpAddr,
    spoke: bool,
}

/// The connections in their handshake, by the accept loop's id (ids grow, so
/// the lowest is the oldest).
#[derive(Debug, Default)]
pub struct Slots {
    open: BTreeMap<u64, Entry>,
    /// Per address, when its failures are paid off (a generic cell rate
    /// algorithm: each failure pushes it [`FAILURE_REFILL`] later).
    failures: BTreeMap<IpAddr, Instant>,
}

impl Slots {
    /// Connection `id` from `ip` was accepted at `now`.
    pub fn admit(&mut self, id: u64, ip: IpAddr, now: Instant) -> Admit {
        let ip = source_of(ip);
        if self.throttled(ip, now) {
            return Admit::Refuse;
        }
        let from_ip = self.open.values().filter(|e| e.ip == ip).count();
        let victim = if from_ip >= MAX_HANDSHAKES_PER_IP {
            self.oldest(|e| e.ip == ip)
        } else if self.open.len() >= MAX_HANDSHAKES {
            self.oldest(|_| true)
        } else {
            None
        };
        if let Some(old) = victim {
            self.open.remove(&old);
        }
        self.open.insert(id, Entry { ip, spoke: false });
        victim.map_or(Admit::Yes, Admit::Evict)
    }

    /// Connection `id` sent its first byte.
    pub fn spoke(&mut self, id: u64) {
        if let Some(e) = self.open.get_mut(&id) {
            e.spoke = true;
        }
    }

    /// Connection `id` finished its handshake (or failed, or was closed).
    pub fn done(&mut self, id: u64) {
        self.open.remove(&id);
    }

    /// A handshake from `ip` failed at `now`. Returns whether that used up
    /// the address's allowance (say so once: later ones are refused quietly).
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> bool {
        let ip = source_of(ip);
        if self.failures.len() >= MAX_TRACKED_ADDRESSES && !self.failures.contains_key(&ip) {
            self.failures.retain(|_, paid| *paid > now);
            if self.failures.len() >= MAX_TRACKED_ADDRESSES
                && let Some(oldest) = (self.failures.iter())
                    .min_by_key(|(_, paid)| **paid)
                    .map(|(ip, _)| *ip)
            {
                self.failures.remove(&oldest);
            }
        }
        let paid = self.failures.entry(ip).or_insert(now);
        *paid = (*paid).max(now) + FAILURE_REFILL;
        self.throttled(ip, now)
    }

    /// Whether `ip` has used up its failures for now.
    fn throttled(&self, ip: IpAddr, now: Instant) -> bool {
        self.failures.get(&ip).is_some_and(|paid| {
            paid.saturating_duration_since(now) >= FAILURE_REFILL * FREE_FAILURES
        })
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.open.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The oldest matching connection that has not spoken, else the oldest.
    fn oldest(&self, pick: impl Fn(&Entry) -> bool) -> Option<u64> {
        let mut matching = self.open.iter().filter(|(_, e)| pick(e));
        let silent = matching.clone().find(|(_, e)| !e.spoke).map(|(id, _)| *id);
        silent.or_else(|| matching.next().map(|(id, _)| *id))
    }
}

/// Who a connection counts as: its IPv4 address, or its IPv6 /64 (one
/// host or home network is given a whole /64: per address, its share would
/// be unlimited).
fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn t0() -> Instant {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    /// An address gets [`FREE_FAILURES`] failed handshakes at once, then one
    /// a [`FAILURE_REFILL`]; others are not slowed; what is remembered is
    /// bounded.
    #[test]
    fn failing_addresses_are_slowed_down() {
        let mut s = Slots::default();
        let now = t0();
        for n in 0..FREE_FAILURES {
            assert_eq!(s.admit(n.into(), ip(1), now), Admit::Yes, "attempt {n}");
            s.done(n.into());
            assert_eq!(s.failed(ip(1), now), n + 1 == FREE_FAILURES);
        }
        assert_eq!(s.admit(100, ip(1), now), Admit::Refuse);
        assert_eq!(s.admit(101, ip(2), now), Admit::Yes, "another address");
        let later = now + FAILURE_REFILL;
        assert_eq!(
            s.admit(102, ip(1), later),
            Admit::Yes,
            "one more after a refill"
        );
        s.done(102);
        assert!(s.failed(ip(1), later));
        assert_eq!(s.admit(103, ip(1), later), Admit::Refuse);
        // Paid off in full after the whole burst's time.
        let much_later = later + FAILURE_REFILL * FREE_FAILURES;
        assert_eq!(s.admit(104, ip(1), much_later), Admit::Yes);

        for n in 0..2 * MAX_TRACKED_ADDRESSES as u32 {
            s.failed(IpAddr::from(n.to_be_bytes()), now);
        }
        assert!(s.failures.len() <= MAX_TRACKED_ADDRESSES);

        // An IPv6 host's whole /64 is one address.
        let v6 = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
        let mut s = Slots::default();
        for n in 0..FREE_FAILURES {
            s.failed(v6(n as u16), now);
        }
        assert_eq!(s.admit(1, v6(999), now), Admit::Refuse);
        let next_net = IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]);
        assert_eq!(s.admit(2, next_net, now), Admit::Yes);
    }

    /// Silent connections from one address never hold more than its share,
    /// and a newcomer takes the oldest silent one's place.
    #[test]
    fn one_address_cannot_take_every_slot() {
        let mut s = Slots::default();
        for id in 0..MAX_HANDSHAKES_PER_IP as u64 {
            assert_eq!(s.admit(id, ip(1), t0()), Admit::Yes);
        }
        s.spoke(0);
        let n = MAX_HANDSHAKES_PER_IP as u64;
        assert_eq!(
            s.admit(n, ip(1), t0()),
            Admit::Evict(1),
            "the oldest silent one"
        );
        assert_eq!(
            s.admit(n + 1, ip(2), t0()),
            Admit::Yes,
            "another address has room"
        );
        assert_eq!(s.len(), MAX_HANDSHAKES_PER_IP + 1);
    }

    /// With every slot taken, a newcomer from a new address evicts the oldest
    /// silent connection; once all have spoken, the oldest.
    #[test]
    fn a_full_table_makes_room_for_a_newcomer() {
        let mut s = Slots::default();
        let mut id = 0;
        for a in 0..(MAX_HANDSHAKES / MAX_HANDSHAKES_PER_IP) as u8 {
            for _ in 0..MAX_HANDSHAKES_PER_IP {
                assert_eq!(s.admit(id, ip(a), t0()), Admit::Yes);
                id += 1;
            }
        }
        assert_eq!(s.len(), MAX_HANDSHAKES);
        assert_eq!(s.admit(id, ip(99), t0()), Admit::Evict(0));
        for k in 0..=id {
            s.spoke(k);
        }
        assert_eq!(s.admit(id + 1, ip(98), t0()), Admit::Evict(1));
        s.done(id + 1);
        assert_eq!(s.len(), MAX_HANDSHAKES - 1);
        assert!(!s.is_empty());
    }
}
