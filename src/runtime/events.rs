//! What a running peer reports, typed. The headless shell prints each event as
//! one JSON line ([`PeerEvent::to_json`], the shapes of INTERFACE.md); the
//! mixer window reads them as they are.

use std::net::SocketAddr;

use serde_json::{Map, Value, json};

use crate::audio::ENGINE_RATE_HZ;
use crate::protocol::message::PeerInfo;
use crate::protocol::{
    Decision, DownReason, DropReason, Event, PeerId, PeerStatus, Round, SessionState, SongRef, Vote,
};

use super::control::{action_json, adopted_event, decision_event, error_event};
use super::lan::FoundSession;
use super::library::LibrarySong;
use super::room::SongStem;
use crate::room::{ExchangeStats, hex};

#[derive(Clone, Debug)]
pub enum PeerEvent {
    /// Listening; the session is being created or joined.
    Ready(Ready),
    PeerUp(PeerInfo),
    PeerDown {
        peer: PeerId,
        reason: DownReason,
    },
    /// This peer has session time: it plays in step with `root`.
    Synced {
        root: PeerId,
    },
    /// A local action was queued as this peer's vote for the next round.
    Voted(Event),
    /// A round was decided with at least one vote in it (rounds where nobody
    /// asked for anything are not reported). `apply_at_mono_ns` is the real
    /// monotonic instant of `apply_at_session_ns` on this peer, if synced.
    Decided {
        decision: Decision,
        apply_at_mono_ns: Option<i64>,
    },
    /// A state taken over from `from` after a divergence (a partition healed,
    /// or this peer joined).
    Adopted {
        round: Round,
        apply_at_session_ns: i64,
        state: SessionState,
        from: PeerId,
        apply_at_mono_ns: Option<i64>,
    },
    /// One of our applied votes lost its effect to `by`'s state after a
    /// divergence.
    Superseded {
        vote: Vote,
        by: PeerId,
    },
    /// A queued action was never cast.
    VoteDropped {
        event: Event,
        reason: DropReason,
    },
    /// Something the user should read: a refused join, a bad command, an
    /// output failure.
    Error(String),
    Status(Box<Status>),
    Peers(Vec<PeerStatus>),
    /// The song's stems as this peer plays them: when the song is known, and
    /// when a fetched stem completes.
    Song(Vec<SongStem>),
    /// The library as this peer sees it: on every change of its songs,
    /// their stems, hosts or sources, and when asked (`songs`).
    Library(Vec<LibrarySong>),
    /// The current song or the set list after it changed (decided or adopted).
    SetList {
        current: SongRef,
        queue: Vec<SongRef>,
    },
    /// A file that was not added to the library, and why.
    Skipped {
        path: std::path::PathBuf,
        reason: String,
    },
    /// The sessions found on the local network: when asked (`discover`), and
    /// for the window on every change.
    Sessions(Vec<FoundSession>),
    /// The peer left the session and stopped.
    Bye,
}

#[derive(Clone, Debug)]
pub struct Ready {
    pub peer_id: PeerId,
    pub name: String,
    pub listen: SocketAddr,
    pub advertise: SocketAddr,
    /// The address to give others: `advertise`, with this machine's
    /// outbound address for an unspecified one (`0.0.0.0`).
    pub share: SocketAddr,
    pub stems: Vec<String>,
    /// The output, as the backend describes itself.
    pub output: String,
    pub joining: bool,
}

/// A snapshot of the peer: the answer to `status`, and what the window is
/// sent every tick.
#[derive(Clone, Debug)]
pub struct Status {
    pub peer_id: PeerId,
    /// What the engine played last (the *All* channel's playhead).
    pub playing: bool,
    pub pos_frames: i64,
    pub synced: bool,
    pub root: Option<PeerId>,
    pub session_ns: Option<i64>,
    /// The latest decided round and the state it left.
    pub round: Option<Round>,
    pub state: Option<SessionState>,
    pub peers: Vec<PeerStatus>,
    pub blocks: u64,
    pub xruns: u64,
    pub underruns: u64,
    /// Decisions (and other engine commands) the engine refused because its
    /// pending list was full: a decision that was never played.
    pub dropped_decisions: u64,
    /// Times the sound card's stream was rebuilt (a lost device, a new
    /// default device); each is also an `error` event.
    pub output_restarts: u64,
    /// Indexes of stems playing silence because their data is missing.
    pub buffering: Vec<usize>,
    pub malformed_frames: u64,
    pub heartbeats_on_time: u64,
    pub heartbeats_late: u64,
    /// What this peer needs of the lead, and its guard (see `protocol::lead`).
    pub need_ms: u16,
    pub guard_ns: i64,
    /// The song's stems as this peer plays them.
    pub song: Vec<SongStem>,
    /// What the stem exchange fetched, refused and retried.
    pub exchange: ExchangeStats,
    pub bytes_served: u64,
}

fn down_reason(reason: DownReason) -> &'static str {
    match reason {
        DownReason::Left => "left",
        DownReason::Silent => "silent",
        DownReason::LinkClosed => "link closed",
    }
}

impl PeerEvent {
    /// The event as one JSON object of INTERFACE.md, naming stems by `stems`.
    pub fn to_json(&self, stems: &[String]) -> Value {
        match self {
            PeerEvent::Ready(r) => json!({
                "event": "ready",
                "peer_id": r.peer_id.to_string(),
                "name": r.name,
                "listen": r.listen.to_string(),
                "advertise": r.advertise.to_string(),
                "stems": r.stems,
                "output": r.output,
                "joining": r.joining,
            }),
            PeerEvent::PeerUp(info) => json!({
                "event": "peer_up",
                "peer_id": info.peer_id.to_string(),
                "name": info.name,
                "addr": info.addr.to_string(),
            }),
            PeerEvent::PeerDown { peer, reason } => json!({
                "event": "peer_down",
                "peer_id": peer.to_string(),
                "reason": down_reason(*reason),
            }),
            PeerEvent::Synced { root } => json!({ "event": "synced", "root": root.to_string() }),
            PeerEvent::Voted(event) => {
                let mut v = action_json(event, stems);
                v["event"] = json!("vote");
                v
            }
            PeerEvent::Decided {
                decision,
                apply_at_mono_ns,
            } => {
                let mut v = decision_event(decision, stems);
                v["apply_at_mono_ns"] = json!(apply_at_mono_ns);
                v
            }
            PeerEvent::Adopted {
                round,
                apply_at_session_ns,
                state,
                from,
                apply_at_mono_ns,
            } => {
                let mut v = adopted_event(*round, *apply_at_session_ns, state, *from, stems);
                v["apply_at_mono_ns"] = json!(apply_at_mono_ns);
                v
            }
            PeerEvent::Superseded { vote, by } => {
                let mut v = action_json(&vote.event, stems);
                v["event"] = json!("superseded");
                v["by"] = json!(by.to_string());
                v
            }
            PeerEvent::VoteDropped { event, reason } => {
                let mut v = action_json(event, stems);
                v["event"] = json!("vote_dropped");
                v["reason"] = json!(format!("{reason:?}").to_lowercase());
                v
            }
            PeerEvent::Error(message) => error_event(message),
            PeerEvent::Status(s) => s.to_json(stems),
            PeerEvent::Peers(peers) => {
                let peers: Vec<Value> = peers.iter().map(peer_json).collect();
                json!({ "event": "peers", "peers": peers })
            }
            PeerEvent::Song(song) => json!({
                "event": "song",
                "stems": song.iter().map(song_stem_json).collect::<Vec<_>>(),
            }),
            PeerEvent::Library(songs) => json!({
                "event": "library",
                "songs": songs.iter().map(library_song_json).collect::<Vec<_>>(),
            }),
            PeerEvent::SetList { current, queue } => json!({
                "event": "setlist",
                "current": current.song.hex(),
                "queue": queue.iter().map(|s| s.song.hex()).collect::<Vec<_>>(),
            }),
            PeerEvent::Skipped { path, reason } => json!({
                "event": "skipped",
                "path": path.display().to_string(),
                "reason": reason,
            }),
            PeerEvent::Sessions(found) => {
                let sessions: Vec<Value> = (found.iter())
                    .map(|f| {
                        json!({
                            "name": f.name,
                            "id": f.founder.to_string(),
                            "addr": f.addr.to_string(),
                            "peers": f.peers,
                            "private": f.private,
                            "compatible": f.compatible,
                        })
                    })
                    .collect();
                json!({ "event": "sessions", "sessions": sessions })
            }
            PeerEvent::Bye => json!({ "event": "bye" }),
        }
    }
}

fn library_song_json(song: &LibrarySong) -> Value {
    let stems: Vec<Value> = (song.stems.iter())
        .map(|s| {
            let mut v = json!({
                "name": s.name,
                "hash": hex(&s.hash),
                "size_bytes": s.size_bytes,
                "secs": s.frames as f64 / f64::from(ENGINE_RATE_HZ),
                "hosts": s.hosts.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                "source": s.source.as_str(),
            });
            if let Some((have, of)) = s.fetching {
                v["chunks_have"] = json!(have);
                v["chunks"] = json!(of);
            }
            v
        })
        .collect();
    json!({
        "id": song.id.hex(),
        "name": song.name,
        "secs": song.frames as f64 / f64::from(ENGINE_RATE_HZ),
        "playable": song.playable(),
        "stems": stems,
    })
}

fn song_stem_json(s: &SongStem) -> Value {
    json!({
        "name": s.name,
        "hash": hex(&s.hash),
        "size_bytes": s.size_bytes,
        "source": s.source.as_str(),
        "chunks": s.chunks,
        "chunks_have": s.chunks_have,
        "hosts": s.hosts.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
    })
}

fn peer_json(p: &PeerStatus) -> Value {
    json!({
        "peer_id": p.info.peer_id.to_string(),
        "name": p.info.name,
        "addr": p.info.addr.to_string(),
        "rtt_ms": p.rtt_ns.map(|r| r as f64 / 1e6),
        "clock_offset_ms": p.clock_offset_ns.map(|o| o / 1e6),
        "clock_rate_ppm": p.clock_rate_ppm,
        "heard_ago_ms": p.heard_ago_ns as f64 / 1e6,
        "synced": p.synced,
        "is_root": p.is_root,
    })
}

impl Status {
    pub fn position_secs(&self) -> f64 {
        self.pos_frames as f64 / f64::from(ENGINE_RATE_HZ)
    }

    fn to_json(&self, stems: &[String]) -> Value {
        let mut offsets = Map::new();
        let mut rtts = Map::new();
        for p in &self.peers {
            let id = p.info.peer_id.to_string();
            if let Some(o) = p.clock_offset_ns {
                offsets.insert(id.clone(), json!(o / 1e6));
            }
            if let Some(r) = p.rtt_ns {
                rtts.insert(id, json!(r as f64 / 1e6));
            }
        }
        let buffering: Vec<&String> = self
            .buffering
            .iter()
            .filter_map(|&i| stems.get(i))
            .collect();
        json!({
            "event": "status",
            "playing": self.playing,
            "position_secs": self.position_secs(),
            "peers": self.peers.len(),
            "clock_offset_ms": offsets,
            "rtt_ms": rtts,
            "peer_id": self.peer_id.to_string(),
            "synced": self.synced,
            "root": self.root.map(|r| r.to_string()),
            "session_ms": self.session_ns.map(|t| t as f64 / 1e6),
            "round": self.round.map(|r| r.0),
            "blocks": self.blocks,
            "xruns": self.xruns,
            "underruns": self.underruns,
            "dropped_decisions": self.dropped_decisions,
            "output_restarts": self.output_restarts,
            "buffering": buffering,
            "malformed_frames": self.malformed_frames,
            "heartbeats_on_time": self.heartbeats_on_time,
            "heartbeats_late": self.heartbeats_late,
            "lead_ms": self.state.as_ref().map(|s| s.lead.lead_ms),
            "need_ms": self.need_ms,
            "guard_ms": self.guard_ns as f64 / 1e6,
            "song": self.state.as_ref().map(|s| s.song.song.hex()),
            "song_stems": self.song.iter().map(song_stem_json).collect::<Vec<_>>(),
            "fetch": {
                "bytes_fetched": self.exchange.bytes_fetched,
                "chunks_fetched": self.exchange.chunks_fetched,
                "bad_hash": self.exchange.bad_hash,
                "bad_length": self.exchange.bad_length,
                "unexpected": self.exchange.unexpected,
                "refused_to_us": self.exchange.refused_to_us,
                "refused_by_us": self.exchange.refused_by_us,
                "timeouts": self.exchange.timeouts,
                "song_conflicts": self.exchange.song_conflicts,
                "bytes_served": self.bytes_served,
            },
        })
    }
}
