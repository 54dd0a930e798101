//! Finding sessions on the local network, sans-IO: what a peer announces (an
//! mDNS service `_synfony._tcp` whose TXT record says the session's name and
//! members), what it makes of the announcements it hears, and which session
//! `--join auto` joins. The mDNS daemon itself is `peer::discovery`'s business;
//! nothing here touches a socket or a clock.
//!
//! Announcements are unauthenticated: anyone on the network can announce a
//! session or answer for one. Nothing here is trusted beyond "an address to
//! try": a link still needs the handshake (and the passphrase), and the links
//! state machine already bounds what dialling made-up addresses costs. The
//! table is bounded ([`MAX_SIGHTINGS`]) and every TXT value is checked.
//! (mdns-sd's own record cache is not ours to bound: it keeps what it hears
//! of `_synfony._tcp` until the records' TTLs run out.)

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::protocol::PeerId;
use crate::protocol::message::{MAX_NAME_BYTES, MAX_PEERS};
use crate::wire::PROTOCOL_VERSION;

/// The DNS-SD service type every peer announces.
pub const SERVICE_TYPE: &str = "_synfony._tcp.local.";

/// Announcements remembered at most (a session's worth several times over);
/// past it, the oldest is forgotten.
pub const MAX_SIGHTINGS: usize = 256;

/// Addresses kept of one announcement (a host's interfaces).
pub const MAX_ADDRS: usize = 8;

/// What one peer announces of its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The session's name (`--session`, learned from the session by joiners).
    pub session: String,
    /// The peer that created it (two sessions may share a name).
    pub founder: PeerId,
    /// The announcing peer's display name.
    pub name: String,
    /// Members of the session as the announcer sees them, itself included.
    pub peers: u32,
    /// The session has a passphrase.
    pub private: bool,
    /// The protocol the announcer speaks (peers of another cannot link).
    pub version: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LanError {
    #[error("announcement without '{0}'")]
    Missing(&'static str),
    #[error("announcement's '{key}' is not valid: {value:?}")]
    Invalid { key: &'static str, value: String },
    #[error("mDNS: {0}")]
    Mdns(String),
}

impl Announcement {
    /// The TXT record's key–value pairs (each well under 255 bytes: names are
    /// at most [`MAX_NAME_BYTES`]).
    pub fn txt(&self) -> Vec<(&'static str, String)> {
        vec![
            ("v", self.version.to_string()),
            ("session", self.session.clone()),
            ("founder", self.founder.to_string()),
            ("name", self.name.clone()),
            ("peers", self.peers.to_string()),
            ("private", u8::from(self.private).to_string()),
        ]
    }

    /// An announcement from a TXT record's values (`get(key)`), checked:
    /// names within [`MAX_NAME_BYTES`], members within [`MAX_PEERS`].
    pub fn from_txt<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Announcement, LanError> {
        let text = |key: &'static str| -> Result<String, LanError> {
            let value = get(key).ok_or(LanError::Missing(key))?;
            if !is_announceable(value) {
                return Err(LanError::Invalid {
                    key,
                    value: value.chars().take(80).collect(),
                });
            }
            Ok(value.to_string())
        };
        let number = |key: &'static str, max: u64| -> Result<u64, LanError> {
            let value = get(key).ok_or(LanError::Missing(key))?;
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| LanError::Invalid {
                    key,
                    value: value.chars().take(80).collect(),
                })
        };
        let founder = get("founder").ok_or(LanError::Missing("founder"))?;
        let founder = (founder.len() == 16)
            .then(|| u64::from_str_radix(founder, 16).ok())
            .flatten()
            .map(PeerId)
            .ok_or_else(|| LanError::Invalid {
                key: "founder",
                value: founder.chars().take(80).collect(),
            })?;
        Ok(Announcement {
            version: number("v", u64::from(u16::MAX))? as u16,
            session: text("session")?,
            founder,
            name: text("name")?,
            peers: number("peers", MAX_PEERS as u64)? as u32,
            private: number("private", 1)? == 1,
        })
    }
}

/// Whether a name can be announced as it is: at most [`MAX_NAME_BYTES`]
/// bytes, no control characters (what a receiver accepts).
pub fn is_announceable(name: &str) -> bool {
    name.len() <= MAX_NAME_BYTES && !name.chars().any(char::is_control)
}

/// `s` as an announcement carries it: no control characters (a receiver
/// refuses those), at most [`MAX_NAME_BYTES`] bytes.
pub fn printable(s: &str) -> String {
    let clean: String = s.chars().filter(|c| !c.is_control()).collect();
    crate::protocol::stem::truncate(&clean, MAX_NAME_BYTES)
}

/// The mDNS instance name a peer announces under: its id, unique on the
/// network (so no name probing is needed).
pub fn instance_name(me: PeerId) -> String {
    me.to_string()
}

/// A session found on the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundSession {
    pub name: String,
    /// The peer that created it: with the name, the session's identity.
    pub founder: PeerId,
    /// A member's address to join through (the first-found member's, an
    /// IPv4 one when it has one).
    pub addr: SocketAddr,
    /// Members, as the member that sees most of them says.
    pub peers: u32,
    pub private: bool,
    /// Its members speak this build's protocol.
    pub compatible: bool,
}

/// One announcement heard.
#[derive(Clone, Debug)]
struct Sighting {
    announcement: Announcement,
    addrs: Vec<SocketAddr>,
    /// When it was first heard (for "first found"): a counter, not a clock.
    first_seen: u64,
}

/// The announcements heard, by mDNS instance, and the sessions they make.
#[derive(Debug)]
pub struct Sightings {
    /// This peer's own instance (never listed).
    me: String,
    by_instance: BTreeMap<String, Sighting>,
    next_seen: u64,
}

impl Sightings {
    pub fn new(me: String) -> Sightings {
        Sightings {
            me,
            by_instance: BTreeMap::new(),
            next_seen: 0,
        }
    }

    /// An announcement was heard (or heard again) from `instance` at
    /// `addrs`. Returns whether what is known changed (a new member, or one
    /// that announces something else). An instance name longer than any
    /// synfony peer's, or without a usable address, is ignored.
    pub fn handle_resolved(
        &mut self,
        instance: &str,
        addrs: Vec<SocketAddr>,
        announcement: Announcement,
    ) -> bool {
        if instance == self.me || instance.len() > MAX_NAME_BYTES {
            return false;
        }
        let mut addrs = usable(addrs);
        addrs.truncate(MAX_ADDRS);
        if addrs.is_empty() {
            return false;
        }
        if let Some(s) = self.by_instance.get_mut(instance) {
            if s.announcement == announcement && s.addrs == addrs {
                return false;
            }
            s.announcement = announcement;
            s.addrs = addrs;
            return true;
        }
        // Full: the oldest goes. (A flood of made-up announcements pushes
        // out real sessions too; each comes back when it is heard again.)
        if self.by_instance.len() >= MAX_SIGHTINGS
            && let Some(oldest) = (self.by_instance.iter())
                .min_by_key(|(_, s)| s.first_seen)
                .map(|(k, _)| k.clone())
        {
            self.by_instance.remove(&oldest);
        }
        self.by_instance.insert(
            instance.to_string(),
            Sighting {
                announcement,
                addrs,
                first_seen: self.next_seen,
            },
        );
        self.next_seen += 1;
        true
    }

    /// `instance` said goodbye (or its record expired). Returns whether it
    /// was known.
    pub fn handle_removed(&mut self, instance: &str) -> bool {
        self.by_instance.remove(instance).is_some()
    }

    /// The sessions heard of, in the order their first member was heard.
    /// Announcements of one session (its name and founder) make one entry.
    pub fn sessions(&self) -> Vec<FoundSession> {
        let mut sightings: Vec<&Sighting> = self.by_instance.values().collect();
        sightings.sort_by_key(|s| s.first_seen);
        let mut index: BTreeMap<(&str, PeerId), usize> = BTreeMap::new();
        let mut found: Vec<FoundSession> = Vec::new();
        for s in sightings {
            let a = &s.announcement;
            let compatible = a.version == PROTOCOL_VERSION;
            match index.get(&(a.session.as_str(), a.founder)) {
                Some(&i) => {
                    let f = &mut found[i];
                    f.peers = f.peers.max(a.peers);
                    f.private |= a.private;
                    // Reached through a member that speaks our protocol if any.
                    if compatible && !f.compatible {
                        f.addr = s.addrs[0];
                        f.compatible = true;
                    }
                }
                None => {
                    index.insert((a.session.as_str(), a.founder), found.len());
                    found.push(FoundSession {
                        name: a.session.clone(),
                        founder: a.founder,
                        addr: s.addrs[0],
                        peers: a.peers.max(1),
                        private: a.private,
                        compatible,
                    });
                }
            }
        }
        found
    }

    /// Whether `session` (by name and founder) is still heard of.
    pub fn has(&self, session: &FoundSession) -> bool {
        (self.by_instance.values()).any(|s| {
            s.announcement.session == session.name && s.announcement.founder == session.founder
        })
    }

    /// Addresses of every member of `session` that speaks this build's
    /// protocol, first-found member first.
    pub fn addrs_of(&self, session: &FoundSession) -> Vec<SocketAddr> {
        let mut sightings: Vec<&Sighting> = (self.by_instance.values())
            .filter(|s| s.announcement.session == session.name)
            .filter(|s| s.announcement.founder == session.founder)
            .filter(|s| s.announcement.version == PROTOCOL_VERSION)
            .collect();
        sightings.sort_by_key(|s| s.first_seen);
        sightings
            .into_iter()
            .flat_map(|s| s.addrs.iter().copied())
            .collect()
    }

    /// The session `--join auto` joins: the one named `wanted`, or else the
    /// first found, among those whose members speak this build's protocol,
    /// that are not `passed_over` (found unreachable), and that are open
    /// unless `have_passphrase` (a private one refuses a joiner without).
    pub fn choose(
        &self,
        wanted: Option<&str>,
        passed_over: &[(String, PeerId)],
        have_passphrase: bool,
    ) -> Option<FoundSession> {
        self.sessions()
            .into_iter()
            .filter(|f| f.compatible && (have_passphrase || !f.private))
            .filter(|f| {
                !passed_over
                    .iter()
                    .any(|(n, id)| *n == f.name && *id == f.founder)
            })
            .find(|f| wanted.is_none_or(|w| f.name == w))
    }
}

/// The addresses worth dialling, IPv4 first: IPv6 link-local addresses need
/// an interface scope a `HOST:PORT` join cannot carry, and unspecified or
/// multicast addresses reach nobody.
fn usable(mut addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    addrs.retain(|a| match a.ip() {
        IpAddr::V4(ip) => !ip.is_unspecified() && !ip.is_multicast() && !ip.is_broadcast(),
        IpAddr::V6(ip) => !ip.is_unspecified() && !ip.is_multicast() && !ip.is_unicast_link_local(),
    });
    addrs.sort_by_key(|a| (a.is_ipv6(), a.ip().is_loopback(), *a));
    addrs.dedup();
    addrs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(session: &str, peers: u32) -> Announcement {
        Announcement {
            session: session.into(),
            // One founder per name, as in a real session.
            founder: PeerId(session.bytes().map(u64::from).sum()),
            name: "pi".into(),
            peers,
            private: false,
            version: PROTOCOL_VERSION,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Parses a TXT record given as pairs.
    fn parse(pairs: &[(&str, String)]) -> Result<Announcement, LanError> {
        Announcement::from_txt(|k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.as_str())
        })
    }

    #[test]
    fn txt_round_trips_and_bad_values_are_named() {
        let a = Announcement {
            private: true,
            ..ann("Friday jam ♪", 3)
        };
        let txt = a.txt();
        assert_eq!(parse(&txt), Ok(a));

        let without: Vec<_> = txt.iter().filter(|(k, _)| *k != "peers").cloned().collect();
        assert_eq!(parse(&without), Err(LanError::Missing("peers")));
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        for (key, value) in [
            ("peers", "-1"),
            ("peers", "65"),
            ("peers", "lots"),
            ("private", "2"),
            ("v", "70000"),
            ("session", "tab\there"),
            ("founder", "12"),
            ("founder", "zz00000000000000"),
            ("name", long.as_str()),
        ] {
            let bad: Vec<_> = (txt.iter())
                .map(|(k, v)| {
                    (
                        *k,
                        if *k == key {
                            value.to_string()
                        } else {
                            v.clone()
                        },
                    )
                })
                .collect();
            assert!(
                matches!(parse(&bad), Err(LanError::Invalid { key: k, .. }) if k == key),
                "{key}={value}"
            );
        }
    }

    /// What a peer announces of a name is always accepted by the others.
    #[test]
    fn names_are_announced_printable() {
        let odd = format!("tab\there{}", "é".repeat(40));
        let a = Announcement {
            name: printable(&odd),
            session: printable("line\nbreak"),
            ..ann("x", 1)
        };
        assert!(a.name.len() <= MAX_NAME_BYTES && a.name.starts_with("tabhere"));
        assert_eq!(a.session, "linebreak");
        assert_eq!(parse(&a.txt()), Ok(a));
    }

    proptest::proptest! {
        /// Whatever a TXT record holds, parsing names the problem or gives
        /// an announcement that says it back the same; never a panic.
        #[test]
        fn any_txt_parses_or_is_refused(values in proptest::collection::vec(proptest::option::of(".{0,80}"), 6)) {
            let keys = ["v", "session", "founder", "name", "peers", "private"];
            let get = |k: &str| keys.iter().position(|x| *x == k).and_then(|i| values[i].as_deref());
            if let Ok(a) = Announcement::from_txt(get) {
                let txt = a.txt();
                proptest::prop_assert_eq!(parse(&txt), Ok(a));
            }
        }

        /// Every announcement a peer makes (names made printable) is read
        /// back as it was said.
        #[test]
        fn announcements_round_trip(
            session in ".{0,40}", name in ".{0,40}", founder: u64, peers in 1u32..=64,
            private: bool, version: u16,
        ) {
            let a = Announcement {
                session: printable(&session),
                founder: PeerId(founder),
                name: printable(&name),
                peers,
                private,
                version,
            };
            proptest::prop_assert_eq!(parse(&a.txt()), Ok(a));
        }
    }

    #[test]
    fn members_of_one_session_make_one_entry_and_the_first_found_leads() {
        let mut s = Sightings::new("me".into());
        assert!(s.handle_resolved("a", vec![addr("192.168.1.20:7878")], ann("jam", 2)));
        assert!(s.handle_resolved("b", vec![addr("192.168.1.21:7878")], ann("jam", 3)));
        assert!(s.handle_resolved("c", vec![addr("192.168.1.30:7878")], ann("quartet", 1)));
        // Our own announcement is never listed.
        assert!(!s.handle_resolved("me", vec![addr("192.168.1.9:7878")], ann("mine", 1)));
        let found = s.sessions();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].name, "jam");
        assert_eq!(found[0].addr, addr("192.168.1.20:7878"));
        assert_eq!(found[0].peers, 3, "the member that sees most");
        assert_eq!(found[1].name, "quartet");
        assert_eq!(
            s.addrs_of(&found[0]),
            vec![addr("192.168.1.20:7878"), addr("192.168.1.21:7878")]
        );
        // Another session of the same name (another founder) is another entry,
        // and not joined through.
        let twin = Announcement {
            founder: PeerId(99),
            ..ann("jam", 1)
        };
        assert!(s.handle_resolved("d", vec![addr("192.168.1.40:7878")], twin));
        let found = s.sessions();
        assert_eq!(found.len(), 3);
        assert_eq!(
            (found[2].name.as_str(), found[2].founder),
            ("jam", PeerId(99))
        );
        assert_eq!(s.addrs_of(&found[0]).len(), 2);
        assert_eq!(s.addrs_of(&found[2]), vec![addr("192.168.1.40:7878")]);
        // Heard again unchanged: nothing to say.
        assert!(!s.handle_resolved("b", vec![addr("192.168.1.21:7878")], ann("jam", 3)));
        // A name no synfony peer announces under is not kept.
        let long = "i".repeat(MAX_NAME_BYTES + 1);
        assert!(!s.handle_resolved(&long, vec![addr("192.168.1.50:7878")], ann("x", 1)));
        // The first member leaves: the session goes on through the other.
        let jam = s.sessions()[0].clone();
        assert!(s.handle_removed("a"));
        assert_eq!(s.sessions()[0].addr, addr("192.168.1.21:7878"));
        assert!(s.has(&jam));
        assert!(!s.handle_removed("nobody"));
        // Its last member leaves: it is gone.
        assert!(s.handle_removed("b"));
        assert!(!s.has(&jam));
    }

    #[test]
    fn auto_join_takes_the_named_session_or_the_first_compatible_one() {
        let mut s = Sightings::new("me".into());
        assert_eq!(s.choose(None, &[], false), None);
        let old = Announcement {
            version: PROTOCOL_VERSION - 1,
            ..ann("old", 1)
        };
        s.handle_resolved("o", vec![addr("10.0.0.1:7878")], old);
        assert_eq!(
            s.choose(None, &[], false),
            None,
            "another protocol is no choice"
        );
        assert!(!s.sessions()[0].compatible);
        s.handle_resolved("a", vec![addr("10.0.0.2:7878")], ann("first", 1));
        s.handle_resolved("b", vec![addr("10.0.0.3:7878")], ann("second", 1));
        let first = s.choose(None, &[], false).unwrap();
        assert_eq!(first.name, "first");
        assert_eq!(s.choose(Some("second"), &[], false).unwrap().name, "second");
        assert_eq!(s.choose(Some("third"), &[], false), None);
        // One found unreachable: the next.
        let passed = [(first.name.clone(), first.founder)];
        assert_eq!(s.choose(None, &passed, false).unwrap().name, "second");
        // A private one only with a passphrase.
        let private = Announcement {
            private: true,
            ..ann("zero", 1)
        };
        s.handle_resolved("z", vec![addr("10.0.0.4:7878")], private);
        assert_eq!(s.choose(Some("zero"), &[], false), None);
        assert_eq!(s.choose(Some("zero"), &[], true).unwrap().name, "zero");
    }

    #[test]
    fn addresses_are_filtered_ordered_and_bounded() {
        let mut s = Sightings::new("me".into());
        let addrs = vec![
            addr("[fe80::1]:7878"),
            addr("[2001:db8::1]:7878"),
            addr("0.0.0.0:7878"),
            addr("127.0.0.1:7878"),
            addr("192.168.1.20:7878"),
        ];
        s.handle_resolved("a", addrs, ann("jam", 1));
        assert_eq!(
            s.addrs_of(&s.sessions()[0]),
            vec![
                addr("192.168.1.20:7878"),
                addr("127.0.0.1:7878"),
                addr("[2001:db8::1]:7878")
            ]
        );
        assert!(!s.handle_resolved("b", vec![addr("[fe80::2]:1")], ann("x", 1)));
        for i in 0..(MAX_SIGHTINGS + 10) {
            s.handle_resolved(
                &format!("p{i}"),
                vec![addr("10.0.0.1:1")],
                ann(&format!("s{i}"), 1),
            );
        }
        assert_eq!(s.by_instance.len(), MAX_SIGHTINGS);
        assert!(!s.by_instance.contains_key("a"), "the oldest is forgotten");
    }
}
