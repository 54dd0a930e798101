//! LAN discovery's shell: the mDNS daemon (mdns-sd runs its own thread) that
//! announces this peer's session and hears others', in front of the sans-IO
//! [`crate::runtime::lan::Sightings`]. What is heard reaches the core as
//! [`Input::Sighted`] and [`Input::Unsighted`]; the core decides what to
//! announce and whom `--join auto` dials.

use std::net::{IpAddr, SocketAddr};

use mdns_sd::{DaemonEvent, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::protocol::PeerId;
use crate::protocol::message::MAX_PEERS;
use crate::runtime::events::PeerEvent;
use crate::runtime::lan::{self, Announcement, LanError, SERVICE_TYPE};
use crate::wire::PROTOCOL_VERSION;

use super::core::{Core, Input};

/// What a peer does about the local network (the CLI's `--session`,
/// `--no-announce` and `--join auto`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovery {
    /// The name of the session this peer creates.
    pub session: String,
    /// Announce the session this peer is in.
    pub announce: bool,
    /// `--join auto`: join a session found on the network.
    pub auto_join: AutoJoin,
    /// Listen for announcements from the start (the window lists them);
    /// otherwise from the first `discover`, or when announcing or joining
    /// automatically.
    pub browse: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutoJoin {
    Off,
    /// The first session found.
    Any,
    /// The session of this name.
    Named(String),
}

impl Discovery {
    /// No mDNS at all (tests, and peers started from code).
    pub fn off(session: &str) -> Discovery {
        Discovery {
            session: session.to_string(),
            announce: false,
            auto_join: AutoJoin::Off,
            browse: false,
        }
    }

    /// Whether the daemon is needed from the start.
    pub fn needed_at_start(&self) -> bool {
        self.announce || self.browse || self.auto_join != AutoJoin::Off
    }
}

impl From<mdns_sd::Error> for LanError {
    fn from(e: mdns_sd::Error) -> LanError {
        LanError::Mdns(e.to_string())
    }
}

/// How long a goodbye may take on quitting (the daemon's thread sends it).
const GOODBYE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);

/// The mDNS daemon, browsing for sessions, and what it announces.
pub(super) struct Mdns {
    daemon: ServiceDaemon,
    instance: String,
    /// The full name registered, once announced.
    registered: Option<String>,
}

impl Mdns {
    /// Starts the daemon and browses for sessions; what it hears goes to
    /// `inputs` from tasks of their own (the first error the daemon meets,
    /// too).
    pub fn start(me: PeerId, inputs: mpsc::Sender<Input>) -> Result<Mdns, LanError> {
        let daemon = ServiceDaemon::new()?;
        let monitor = daemon.monitor()?;
        let tx = inputs.clone();
        tokio::spawn(async move {
            // Sockets open lazily on the daemon's thread: a port or multicast
            // problem shows here only. The first one is enough to say.
            while let Ok(event) = monitor.recv_async().await {
                if let DaemonEvent::Error(e) = event {
                    let _ = tx.send(Input::LanTrouble(e.to_string())).await;
                    break;
                }
            }
        });
        let mut mdns = Mdns {
            daemon,
            instance: lan::instance_name(me),
            registered: None,
        };
        mdns.browse(inputs)?;
        Ok(mdns)
    }

    /// Browses for sessions (again, after the daemon ended a subscription
    /// whose events were not read fast enough).
    pub fn browse(&mut self, inputs: mpsc::Sender<Input>) -> Result<(), LanError> {
        let events = self.daemon.browse(SERVICE_TYPE)?;
        tokio::spawn(async move {
            while let Ok(event) = events.recv_async().await {
                let input = match event {
                    ServiceEvent::ServiceResolved(r) => Input::Sighted {
                        instance: instance_of(&r.fullname),
                        addrs: (r.addresses.iter())
                            // Kept small on the way (the core keeps 8).
                            .take(4 * lan::MAX_ADDRS)
                            .map(|ip| SocketAddr::new(ip.to_ip_addr(), r.port))
                            .collect(),
                        announcement: Announcement::from_txt(|k| r.get_property_val_str(k)),
                    },
                    ServiceEvent::ServiceRemoved(_, fullname) => {
                        Input::Unsighted(instance_of(&fullname))
                    }
                    ServiceEvent::SearchStopped(_) => break,
                    _ => continue,
                };
                if inputs.send(input).await.is_err() {
                    return; // the core is gone
                }
            }
            let _ = inputs.send(Input::BrowseEnded).await;
        });
        Ok(())
    }

    /// Announces (or announces anew, changed) `a`, reachable at port `port`
    /// of `ip` (`None`: every address of this host, kept up to date).
    pub fn announce(
        &mut self,
        a: &Announcement,
        ip: Option<IpAddr>,
        port: u16,
    ) -> Result<(), LanError> {
        let host = format!("synfony-{}.local.", self.instance);
        let txt = a.txt();
        let info = match ip {
            Some(ip) => ServiceInfo::new(SERVICE_TYPE, &self.instance, &host, ip, port, &txt[..])?,
            None => ServiceInfo::new(SERVICE_TYPE, &self.instance, &host, (), port, &txt[..])?
                .enable_addr_auto(),
        };
        let mut info = info;
        // The instance is this run's peer id: nobody else announces it.
        info.set_requires_probe(false);
        let fullname = info.get_fullname().to_string();
        self.daemon.register(info)?;
        self.registered = Some(fullname);
        Ok(())
    }

    /// Says goodbye (so others drop this peer's announcement at once),
    /// waiting up to [`GOODBYE_TIMEOUT`] for it to go out, and stops the
    /// daemon's thread.
    pub async fn shutdown(self) {
        if let Some(fullname) = &self.registered
            && let Ok(done) = self.daemon.unregister(fullname)
        {
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, done.recv_async()).await;
        }
        let _ = self.daemon.shutdown();
    }
}

/// A changed announcement is sent at most this often (and one that could
/// not be sent is tried again this long after).
const ANNOUNCE_EVERY_NS: i64 = 1_000_000_000;
/// A `discover` asked before the daemon listened is answered after this long
/// (the answers to its first query have come in by then).
const FIRST_LISTEN_NS: i64 = 1_000_000_000;
/// Browsing again after the daemon ended a subscription (a flood of
/// announcements), at most this often.
const REBROWSE_NS: i64 = 5_000_000_000;
/// A session chosen by `--join auto` whose every address failed this many
/// dials in a row (about 4 s of backoff) is passed over for the next one.
const GIVE_UP_AFTER_FAILURES: u32 = 4;
/// Sessions passed over, remembered at most (then all are tried again).
const MAX_PASSED_OVER: usize = 16;

/// The core's LAN discovery: the daemon (once started), what it heard, and
/// what this peer last announced.
pub(super) struct Lan {
    cfg: Discovery,
    /// Where this peer listens (the port announced; the address too if it is
    /// a specific one).
    listen: SocketAddr,
    mdns: Option<Mdns>,
    /// The daemon could not start (said once; not tried again).
    broken: bool,
    /// A problem of the daemon's was said (once).
    trouble_said: bool,
    sightings: lan::Sightings,
    /// What was heard changed since the window was last told.
    changed: bool,
    announced: Option<Announcement>,
    /// When an announcement was last sent (or tried).
    announced_at_ns: Option<i64>,
    /// An announcement failed (said once).
    announce_error_said: bool,
    /// The session `--join auto` chose.
    chosen: Option<lan::FoundSession>,
    /// Sessions `--join auto` found unreachable (a made-up announcement, a
    /// member behind a firewall), by name and founder.
    passed_over: Vec<(String, PeerId)>,
    /// A `discover` waiting for the daemon's first answers.
    answer_at_ns: Option<i64>,
    /// Browsing ended: when to browse again.
    rebrowse_at_ns: Option<i64>,
}

impl Lan {
    pub fn new(cfg: Discovery, me: PeerId, listen: SocketAddr) -> Lan {
        Lan {
            cfg,
            listen,
            mdns: None,
            broken: false,
            trouble_said: false,
            sightings: lan::Sightings::new(lan::instance_name(me)),
            changed: false,
            announced: None,
            announced_at_ns: None,
            announce_error_said: false,
            chosen: None,
            passed_over: Vec::new(),
            answer_at_ns: None,
            rebrowse_at_ns: None,
        }
    }
}

impl Core {
    /// Starts the daemon if it is not running (and could start). Returns
    /// whether it runs.
    fn lan_listen(&mut self) -> bool {
        if self.lan.mdns.is_some() {
            return true;
        }
        if self.lan.broken {
            return false;
        }
        match Mdns::start(self.me.peer_id(), self.inputs.clone()) {
            Ok(m) => {
                debug!("mDNS: browsing for {SERVICE_TYPE}");
                self.lan.mdns = Some(m);
                true
            }
            Err(e) => {
                self.lan.broken = true;
                self.error(format!("LAN discovery is off: {e}"));
                false
            }
        }
    }

    /// At start: listens if announcing, joining automatically or listing
    /// sessions (the window).
    pub(super) fn lan_start(&mut self) {
        if self.lan.cfg.needed_at_start() {
            self.lan_listen();
        }
        if let AutoJoin::Named(name) = &self.lan.cfg.auto_join {
            info!("looking for the session {name:?} on the local network");
        } else if self.lan.cfg.auto_join == AutoJoin::Any {
            info!("looking for a session on the local network");
        }
    }

    /// An announcement was heard.
    pub(super) fn on_sighted(
        &mut self,
        instance: String,
        addrs: Vec<SocketAddr>,
        announcement: Result<Announcement, LanError>,
    ) {
        let announcement = match announcement {
            Ok(a) => a,
            Err(e) => {
                // Anyone on the network can announce: not worth a warning.
                debug!(instance, "mDNS announcement ignored: {e}");
                return;
            }
        };
        if self
            .lan
            .sightings
            .handle_resolved(&instance, addrs, announcement)
        {
            self.sessions_changed();
        }
    }

    pub(super) fn on_unsighted(&mut self, instance: String) {
        if self.lan.sightings.handle_removed(&instance) {
            self.sessions_changed();
        }
    }

    /// The daemon met a problem (a socket it could not open, say): said once.
    pub(super) fn on_lan_trouble(&mut self, problem: String) {
        if !std::mem::replace(&mut self.lan.trouble_said, true) {
            self.error(format!("LAN discovery: {problem}"));
        }
    }

    /// The daemon ended our subscription (its events came faster than they
    /// were read): browse again a little later.
    pub(super) fn on_browse_ended(&mut self) {
        if self.lan.mdns.is_some() && self.lan.rebrowse_at_ns.is_none() {
            warn!("LAN discovery fell behind a flood of announcements; listening again in 5 s");
            self.lan.rebrowse_at_ns = Some(self.clock.now_ns() + REBROWSE_NS);
        }
    }

    /// The window hears of it on the next tick; `--join auto` at once.
    fn sessions_changed(&mut self) {
        self.lan.changed = true;
        self.auto_join();
    }

    /// `--join auto`: joins through every member of the chosen session (the
    /// first found, or the one named). Until this peer is in a session, a
    /// chosen session that is no longer heard of gives way to another.
    fn auto_join(&mut self) {
        let wanted = match &self.lan.cfg.auto_join {
            AutoJoin::Off => return,
            AutoJoin::Any => None,
            AutoJoin::Named(n) => Some(n.clone()),
        };
        let joining = self.session.latest().is_none();
        if joining
            && let Some(chosen) = &self.lan.chosen
            && !self.lan.sightings.has(chosen)
        {
            info!(
                session = chosen.name,
                "the session found is gone; looking again"
            );
            self.lan.chosen = None;
            self.links.retire_found_joins();
        }
        if self.lan.chosen.is_none() {
            if !joining {
                return; // in a session already (through a member it found)
            }
            let secret = self.secret.is_some();
            let mut choice =
                (self.lan.sightings).choose(wanted.as_deref(), &self.lan.passed_over, secret);
            if choice.is_none() && !self.lan.passed_over.is_empty() {
                // Every session heard of was passed over: try them all again.
                self.lan.passed_over.clear();
                choice = self.lan.sightings.choose(wanted.as_deref(), &[], secret);
            }
            let Some(found) = choice else {
                return;
            };
            info!(session = found.name, addr = %found.addr, peers = found.peers, "joining a session found on the local network");
            self.lan.chosen = Some(found);
        }
        let Some(chosen) = &self.lan.chosen else {
            return;
        };
        let now = self.clock.now_ns();
        let mut added = false;
        for addr in self.lan.sightings.addrs_of(chosen) {
            added |= self.links.add_found_join(now, addr.to_string());
        }
        if added {
            self.links.handle_timeout(now);
            self.apply_links();
        }
    }

    /// `--join auto`, still not in a session: a chosen session none of whose
    /// addresses answers (a made-up announcement, say, that would otherwise
    /// hold the joiner for ever) is passed over for the next one found.
    fn pass_over_unreachable(&mut self) {
        if self.session.latest().is_some()
            || !self.links.found_joins_failing(GIVE_UP_AFTER_FAILURES)
        {
            return;
        }
        let Some(gone) = self.lan.chosen.take() else {
            return;
        };
        warn!(session = gone.name, addr = %gone.addr, "the session found on the network does not answer; looking for another");
        self.links.retire_found_joins();
        if self.lan.passed_over.len() >= MAX_PASSED_OVER {
            self.lan.passed_over.remove(0);
        }
        self.lan.passed_over.push((gone.name, gone.founder));
        self.auto_join();
    }

    /// `discover`: the sessions found, now if the daemon was listening, or
    /// after its first second of listening.
    pub(super) fn on_discover(&mut self) {
        let was_listening = self.lan.mdns.is_some();
        if !self.lan_listen() {
            self.error("discover: LAN discovery is off (see the error above)".into());
            return;
        }
        if was_listening {
            self.emit_sessions();
        } else if self.lan.answer_at_ns.is_none() {
            self.lan.answer_at_ns = Some(self.clock.now_ns() + FIRST_LISTEN_NS);
        }
    }

    /// Every tick: a `discover` due, the window told of what changed,
    /// browsing again if due, and the announcement brought up to date (the
    /// session's name and members), at most once a second.
    pub(super) fn lan_tick(&mut self, now_ns: i64) {
        if self.lan.answer_at_ns.is_some_and(|t| now_ns >= t) {
            self.lan.answer_at_ns = None;
            self.emit_sessions();
        }
        if std::mem::take(&mut self.lan.changed) && self.push_status {
            self.emit_sessions();
        }
        self.pass_over_unreachable();
        if self.lan.rebrowse_at_ns.is_some_and(|t| now_ns >= t) {
            self.lan.rebrowse_at_ns = None;
            let inputs = self.inputs.clone();
            if let Some(Err(e)) = self.lan.mdns.as_mut().map(|m| m.browse(inputs)) {
                self.on_lan_trouble(e.to_string());
            }
        }
        self.announce(now_ns);
    }

    fn announce(&mut self, now_ns: i64) {
        let recently = (self.lan.announced_at_ns)
            .is_some_and(|t| now_ns.saturating_sub(t) < ANNOUNCE_EVERY_NS);
        if !self.lan.cfg.announce || recently {
            return;
        }
        // Only a member announces: a joiner has no session yet.
        let Some((_, state)) = self.session.latest() else {
            return;
        };
        let session = if state.name.is_empty() {
            self.lan.cfg.session.clone()
        } else {
            state.name.clone()
        };
        let a = Announcement {
            session: lan::printable(&session),
            founder: state.founder,
            name: lan::printable(&self.me.name),
            peers: (self.session.linked().count() + 1).min(MAX_PEERS) as u32,
            private: self.secret.is_some(),
            version: PROTOCOL_VERSION,
        };
        if self.lan.announced.as_ref() == Some(&a) || !self.lan_listen() {
            return;
        }
        // The port this peer listens on, on the addresses of this host's
        // interfaces (or the one it listens on): what a LAN neighbour dials,
        // whatever `--advertise` says for the world beyond a NAT.
        let listen = self.lan.listen;
        let ip = (!listen.ip().is_unspecified()).then_some(listen.ip());
        let result = match &mut self.lan.mdns {
            Some(m) => m.announce(&a, ip, listen.port()),
            None => return,
        };
        self.lan.announced_at_ns = Some(now_ns);
        match result {
            Ok(()) => {
                debug!(session = a.session, peers = a.peers, "mDNS: announced");
                self.lan.announced = Some(a);
            }
            // Tried again in a second; said once.
            Err(e) => {
                if !std::mem::replace(&mut self.lan.announce_error_said, true) {
                    self.error(format!(
                        "cannot announce the session on the local network: {e}"
                    ));
                }
            }
        }
    }

    fn emit_sessions(&mut self) {
        let found = self.lan.sightings.sessions();
        self.emit(PeerEvent::Sessions(found));
    }

    /// Leaving: a goodbye on the network, and the daemon stops.
    pub(super) async fn lan_shutdown(&mut self) {
        if let Some(m) = self.lan.mdns.take() {
            m.shutdown().await;
        }
    }
}

/// The instance part of a full service name (`<instance>._synfony._tcp.local.`).
fn instance_of(fullname: &str) -> String {
    fullname
        .strip_suffix(SERVICE_TYPE)
        .and_then(|s| s.strip_suffix('.'))
        .unwrap_or(fullname)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_is_the_full_name_less_the_service() {
        assert_eq!(instance_of("00ab._synfony._tcp.local."), "00ab");
        assert_eq!(instance_of("odd"), "odd");
    }
}
