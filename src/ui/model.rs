//! What the window knows of the session, built from the peer's events alone.
//! Pure: events and the frame time (`now_secs`, egui's clock) in, a view
//! out; unit-tested without a window or a network.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::protocol::{DropReason, Event, PeerId, Round, SessionState, Verdict, action_kind};
use crate::runtime::events::{PeerEvent, Ready, Status};
use crate::runtime::room::SongStem;

/// Decided rounds kept in the vote log.
pub const LOG_LEN: usize = 12;
/// Points kept per peer for the latency graph (a minute at 10 a second).
pub const HISTORY_LEN: usize = 600;
/// A vote not decided after this long is given up on (the round never came:
/// the peer was restarting or stalled).
pub const PENDING_TIMEOUT_SECS: f64 = 5.0;

/// One of our votes, cast but not decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pending {
    pub event: Event,
    pub since_secs: f64,
}

/// A decided round as the log shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    pub round: Round,
    pub at_secs: f64,
    /// Who voted what, and what became of it.
    pub votes: Vec<(PeerId, Event, Verdict)>,
    /// A state adopted from another peer rather than voted here.
    pub adopted_from: Option<PeerId>,
    /// Our vote that was dropped before its round (replaced, queue full).
    pub dropped: Option<Event>,
}

/// RTT and clock offset of one peer over time, for the graph.
#[derive(Clone, Debug, Default)]
pub struct PeerHistory {
    /// (seconds, RTT ms, offset ms relative to the first offset seen).
    pub points: VecDeque<(f64, f64, f64)>,
    first_offset_ms: Option<f64>,
    pub last_seen_secs: f64,
}

#[derive(Default)]
pub struct SessionView {
    pub me: Option<Ready>,
    pub status: Option<Status>,
    /// The latest decided state (it may take effect a round from now).
    pub state: Option<SessionState>,
    pub names: HashMap<PeerId, String>,
    pub pending: Vec<Pending>,
    /// Newest first.
    pub log: VecDeque<LogEntry>,
    pub errors: Vec<String>,
    pub history: BTreeMap<PeerId, PeerHistory>,
    /// The peer said goodbye (it quit or is restarting).
    pub stopped: bool,
    /// The song's stems as this peer plays them (local, cached, remote).
    pub song: Vec<SongStem>,
    /// The session library, as the peer last reported it.
    pub library: Vec<crate::runtime::library::LibrarySong>,
    /// The sessions found on the local network.
    pub sessions: Vec<crate::runtime::lan::FoundSession>,
}

impl SessionView {
    pub fn my_id(&self) -> Option<PeerId> {
        self.me.as_ref().map(|r| r.peer_id)
    }

    /// A peer's display name (`you` for this peer).
    pub fn name_of(&self, peer: PeerId) -> String {
        if Some(peer) == self.my_id() {
            return "you".into();
        }
        self.names
            .get(&peer)
            .cloned()
            .unwrap_or_else(|| format!("{peer}")[..8].to_string())
    }

    /// The pending vote of the same kind as `event` (a seek, a fader), if any.
    pub fn pending_like(&self, event: &Event) -> Option<&Pending> {
        let kind = action_kind(event);
        self.pending.iter().find(|p| action_kind(&p.event) == kind)
    }

    pub fn push_error(&mut self, message: String) {
        if self.errors.last() != Some(&message) {
            self.errors.push(message);
        }
        if self.errors.len() > 8 {
            self.errors.remove(0);
        }
    }

    pub fn apply(&mut self, e: PeerEvent, now_secs: f64) {
        match e {
            PeerEvent::Ready(r) => {
                self.stopped = false;
                self.names.insert(r.peer_id, r.name.clone());
                self.me = Some(r);
            }
            PeerEvent::PeerUp(info) => {
                self.names.insert(info.peer_id, info.name);
            }
            PeerEvent::PeerDown { .. } | PeerEvent::Synced { .. } => {}
            PeerEvent::Voted(event) => {
                let kind = action_kind(&event);
                self.pending.retain(|p| action_kind(&p.event) != kind);
                self.pending.push(Pending {
                    event,
                    since_secs: now_secs,
                });
            }
            PeerEvent::Decided { decision, .. } => {
                let me = self.my_id();
                let mut votes = Vec::new();
                for o in &decision.outcomes {
                    if !o.vote.event.is_action() {
                        continue;
                    }
                    if Some(o.vote.voter) == me
                        && let Some(i) = self.pending.iter().position(|p| p.event == o.vote.event)
                    {
                        self.pending.remove(i);
                    }
                    votes.push((o.vote.voter, o.vote.event, o.verdict));
                }
                self.state = Some(decision.state);
                self.log_entry(LogEntry {
                    round: decision.round,
                    at_secs: now_secs,
                    votes,
                    adopted_from: None,
                    dropped: None,
                });
            }
            PeerEvent::Adopted {
                round, state, from, ..
            } => {
                self.state = Some(state);
                self.log_entry(LogEntry {
                    round,
                    at_secs: now_secs,
                    votes: vec![],
                    adopted_from: Some(from),
                    dropped: None,
                });
            }
            PeerEvent::Superseded { vote, by } => {
                self.log_entry(LogEntry {
                    round: vote.round,
                    at_secs: now_secs,
                    votes: vec![(vote.voter, vote.event, Verdict::Overruled { by })],
                    adopted_from: Some(by),
                    dropped: None,
                });
            }
            // Replaced: `Voted` already put the newer one in its place (and
            // the two may be equal, so removing by value would lose it).
            PeerEvent::VoteDropped {
                reason: DropReason::Replaced,
                ..
            } => {}
            PeerEvent::VoteDropped { event, .. } => {
                if let Some(i) = self.pending.iter().position(|p| p.event == event) {
                    self.pending.remove(i);
                }
            }
            PeerEvent::Error(message) => self.push_error(message),
            PeerEvent::Status(s) => self.on_status(*s, now_secs),
            PeerEvent::Peers(_) => {}
            PeerEvent::Song(song) => self.song = song,
            PeerEvent::Library(songs) => self.library = songs,
            // The set-list panel is not built yet; decisions carry the state.
            PeerEvent::SetList { .. } => {}
            PeerEvent::Skipped { path, reason } => {
                self.push_error(format!("skipped {}: {reason}", path.display()))
            }
            PeerEvent::Sessions(found) => self.sessions = found,
            PeerEvent::Bye => {
                self.stopped = true;
                self.pending.clear();
            }
        }
    }

    /// Forgets votes whose round never came.
    pub fn expire(&mut self, now_secs: f64) {
        self.pending
            .retain(|p| now_secs - p.since_secs < PENDING_TIMEOUT_SECS);
    }

    fn log_entry(&mut self, entry: LogEntry) {
        self.log.push_front(entry);
        self.log.truncate(LOG_LEN);
    }

    fn on_status(&mut self, s: Status, now_secs: f64) {
        if !s.song.is_empty() {
            self.song = s.song.clone();
        }
        for p in &s.peers {
            self.names.insert(p.info.peer_id, p.info.name.clone());
            let h = self.history.entry(p.info.peer_id).or_default();
            h.last_seen_secs = now_secs;
            if let (Some(rtt), Some(offset)) = (p.rtt_ns, p.clock_offset_ns) {
                let offset_ms = offset / 1e6;
                let first = *h.first_offset_ms.get_or_insert(offset_ms);
                h.points
                    .push_back((now_secs, rtt as f64 / 1e6, offset_ms - first));
                if h.points.len() > HISTORY_LEN {
                    h.points.pop_front();
                }
            }
        }
        // A peer gone for a minute leaves the graph.
        self.history
            .retain(|_, h| now_secs - h.last_seen_secs < 60.0);
        if let Some(state) = &s.state {
            self.state = Some(state.clone());
        }
        self.status = Some(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Channel, Decision, Vote, VoteOutcome};

    fn ready(id: u64) -> PeerEvent {
        PeerEvent::Ready(Ready {
            peer_id: PeerId(id),
            name: "me".into(),
            listen: "127.0.0.1:1".parse().unwrap(),
            advertise: "127.0.0.1:1".parse().unwrap(),
            share: "127.0.0.1:1".parse().unwrap(),
            stems: vec!["a".into()],
            output: "null".into(),
            joining: false,
        })
    }

    fn decided(round: u64, votes: &[(u64, Event, Verdict)]) -> PeerEvent {
        let mut state = SessionState::new(10_000_000_000, 1);
        state.channels[0].gain_db = -6.0;
        PeerEvent::Decided {
            decision: Decision {
                round: Round(round),
                apply_at_session_ns: 0,
                state,
                outcomes: votes
                    .iter()
                    .map(|&(voter, event, verdict)| VoteOutcome {
                        vote: Vote {
                            voter: PeerId(voter),
                            round: Round(round),
                            event,
                        },
                        verdict,
                    })
                    .collect(),
            },
            apply_at_mono_ns: None,
        }
    }

    /// A vote shows as pending until its round is decided; the decision
    /// clears it, updates the state and logs who voted what.
    #[test]
    fn a_vote_is_pending_until_decided() {
        let mut v = SessionView::default();
        v.apply(ready(1), 0.0);
        let vol = Event::Volume {
            channel: Channel::Stem(0),
            gain_db: -6.0,
        };
        v.apply(PeerEvent::Voted(vol), 1.0);
        assert_eq!(v.pending.len(), 1);
        assert!(
            v.pending_like(&Event::Volume {
                channel: Channel::Stem(0),
                gain_db: 0.0
            })
            .is_some()
        );
        v.apply(
            decided(
                7,
                &[
                    (1, vol, Verdict::Applied),
                    (2, Event::Pause, Verdict::Applied),
                    (3, Event::Play, Verdict::Overruled { by: PeerId(2) }),
                ],
            ),
            1.3,
        );
        assert!(v.pending.is_empty());
        assert_eq!(v.state.as_ref().unwrap().channels[0].gain_db, -6.0);
        assert_eq!(v.log[0].votes.len(), 3);
        assert_eq!(v.name_of(PeerId(1)), "you");
    }

    /// A newer action of the same kind replaces the pending one; a dropped
    /// vote and a stale one disappear.
    #[test]
    fn pending_votes_replace_drop_and_expire() {
        let mut v = SessionView::default();
        v.apply(ready(1), 0.0);
        let seek = |s: i64| Event::Seek {
            position_ns: s * 1_000_000_000,
        };
        v.apply(PeerEvent::Voted(seek(1)), 0.0);
        // The runtime reports the replaced one dropped before the new vote.
        v.apply(
            PeerEvent::VoteDropped {
                event: seek(1),
                reason: DropReason::Replaced,
            },
            0.1,
        );
        v.apply(PeerEvent::Voted(seek(2)), 0.1);
        // Equal events: the drop of the old must not remove the new.
        v.apply(PeerEvent::Voted(seek(2)), 0.1);
        v.apply(
            PeerEvent::VoteDropped {
                event: seek(2),
                reason: DropReason::Replaced,
            },
            0.1,
        );
        v.apply(PeerEvent::Voted(Event::Play), 0.1);
        assert_eq!(v.pending.len(), 2);
        assert_eq!(v.pending_like(&seek(0)).unwrap().event, seek(2));
        v.apply(
            PeerEvent::VoteDropped {
                event: Event::Play,
                reason: DropReason::QueueFull,
            },
            0.2,
        );
        assert_eq!(v.pending.len(), 1);
        v.expire(0.1 + PENDING_TIMEOUT_SECS + 0.01);
        assert!(v.pending.is_empty());
    }
}
