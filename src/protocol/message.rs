//! The message catalogue: everything peers say to each other, one [`Message`] per
//! frame (see [`crate::wire::frame`]).
//!
//! ```text
//! | message code u8 | body by code |
//!   1 hello   2 auth   3 peer list   4 heartbeat   5 clock ping   6 clock pong
//!   7 goodbye   8 snapshot   9 room
//! ```
//!
//! Times named `*_ns` inside clock fields are the *sender's own* monotonic clock
//! in nanoseconds; session times are named `*_session_ns`. An unknown message or
//! operation code fails the decoding of its frame only; the link survives.

use super::identity::{SignedVote, VoteProof};
use super::library::{MAX_RECORDS_PER_MESSAGE, SongRecord, StemRecord};
use super::stem::StemInfo;
use crate::protocol::{Event, MAX_STEMS, PeerId, Round, SessionMap, SessionState, Vote};
use crate::wire::{Model, Reader, WireError, Writer};
use std::net::SocketAddr;

/// Longest display name, in UTF-8 bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest goodbye or refusal reason, in UTF-8 bytes.
pub const MAX_REASON_BYTES: usize = 256;
/// Most peers in one peer list (and so in one session).
pub const MAX_PEERS: usize = 64;
/// Largest chunk of a stem file carried by one room message.
pub const MAX_CHUNK_BYTES: usize = 256 * 1024;

/// Content hash (BLAKE3) naming a stem file.
pub type StemHash = [u8; 32];

/// The code byte that leads every [`Message`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum MessageCode {
    // 1 and 2 were the plaintext hello and passphrase proof before links were
    // sealed (protocol 5): the handshake's frames are its own
    // (`runtime::handshake`), and no sealed frame is one of them.
    PeerList = 3,
    Heartbeat = 4,
    ClockPing = 5,
    ClockPong = 6,
    Goodbye = 7,
    Snapshot = 8,
    Room = 9,
}

impl MessageCode {
    pub fn from_u8(code: u8) -> Option<MessageCode> {
        Some(match code {
            3 => MessageCode::PeerList,
            4 => MessageCode::Heartbeat,
            5 => MessageCode::ClockPing,
            6 => MessageCode::ClockPong,
            7 => MessageCode::Goodbye,
            8 => MessageCode::Snapshot,
            9 => MessageCode::Room,
            _ => return None,
        })
    }
}

#[derive(Clone, PartialEq, Debug)]
pub enum Message {
    PeerList(PeerList),
    Heartbeat(Heartbeat),
    ClockPing(ClockPing),
    ClockPong(ClockPong),
    Goodbye(Goodbye),
    Snapshot(Snapshot),
    Room(Room),
}

impl Message {
    pub fn code(&self) -> MessageCode {
        match self {
            Message::PeerList(_) => MessageCode::PeerList,
            Message::Heartbeat(_) => MessageCode::Heartbeat,
            Message::ClockPing(_) => MessageCode::ClockPing,
            Message::ClockPong(_) => MessageCode::ClockPong,
            Message::Goodbye(_) => MessageCode::Goodbye,
            Message::Snapshot(_) => MessageCode::Snapshot,
            Message::Room(_) => MessageCode::Room,
        }
    }
}

impl Model for Message {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_u8(self.code() as u8);
        match self {
            Message::PeerList(m) => m.encode(w),
            Message::Heartbeat(m) => m.encode(w),
            Message::ClockPing(m) => m.encode(w),
            Message::ClockPong(m) => m.encode(w),
            Message::Goodbye(m) => m.encode(w),
            Message::Snapshot(m) => m.encode(w),
            Message::Room(m) => m.encode(w),
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let code = r.u8("message.code")?;
        let code = MessageCode::from_u8(code).ok_or(WireError::UnknownCode {
            field: "message.code",
            code,
        })?;
        Ok(match code {
            MessageCode::PeerList => Message::PeerList(r.get()?),
            MessageCode::Heartbeat => Message::Heartbeat(r.get()?),
            MessageCode::ClockPing => Message::ClockPing(r.get()?),
            MessageCode::ClockPong => Message::ClockPong(r.get()?),
            MessageCode::Goodbye => Message::Goodbye(r.get()?),
            MessageCode::Snapshot => Message::Snapshot(r.get()?),
            MessageCode::Room => Message::Room(r.get()?),
        })
    }
}

/// One member of the session as another member knows it.
///
/// ```text
/// | peer_id u64 | name text (≤ 64 bytes) | addr SocketAddr |
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PeerInfo {
    pub peer_id: PeerId,
    pub name: String,
    pub addr: SocketAddr,
}

impl Model for PeerInfo {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        self.peer_id.encode(w)?;
        w.put_text(&self.name, MAX_NAME_BYTES, "peer.name")?;
        self.addr.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(PeerInfo {
            peer_id: r.get_as("peer.peer_id")?,
            name: r.text(MAX_NAME_BYTES, "peer.name")?,
            addr: r.get_as("peer.addr")?,
        })
    }
}

/// The members a peer knows, sent to a joiner so it can link to every one.
///
/// ```text
/// | peers list<PeerInfo> (≤ 64) |
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PeerList {
    pub peers: Vec<PeerInfo>,
}

impl Model for PeerList {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_list(&self.peers, MAX_PEERS, "peer_list.peers")
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(PeerList {
            peers: r.list(MAX_PEERS, "peer_list.peers")?,
        })
    }
}

/// Clock-exchange timestamps piggybacked on a heartbeat (NTP symmetric mode).
///
/// `sent_ns` is when this heartbeat left the sender. `echo` returns the `sent_ns`
/// of the last heartbeat the sender received from the recipient and when it
/// arrived, so on receipt at `t4` the recipient has all four timestamps:
/// `t1 = echo.origin_ns, t2 = echo.received_ns, t3 = sent_ns, t4`.
///
/// ```text
/// | sent_ns i64 | echo option<| origin_ns i64 | received_ns i64 |> |
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ClockStamps {
    pub sent_ns: i64,
    pub echo: Option<ClockEcho>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ClockEcho {
    pub origin_ns: i64,
    pub received_ns: i64,
}

impl Model for ClockStamps {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_i64(self.sent_ns);
        self.echo.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ClockStamps {
            sent_ns: r.i64("clock.sent_ns")?,
            echo: r.get_as("clock.echo")?,
        })
    }
}

impl Model for ClockEcho {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_i64(self.origin_ns);
        w.put_i64(self.received_ns);
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ClockEcho {
            origin_ns: r.i64("clock.echo.origin_ns")?,
            received_ns: r.i64("clock.echo.received_ns")?,
        })
    }
}

/// The most votes a heartbeat relays (one per voter of the previous round).
pub const MAX_RELAYED_VOTES: usize = MAX_PEERS;
/// The most pending votes a snapshot carries.
pub const MAX_PENDING_VOTES: usize = 1024;

/// Every 100 ms, to every linked peer: this peer's vote for `round`, the votes
/// of the previous round it holds (relayed, so a voter that reached only some
/// peers still reaches all), its latest decision's digest, its session map, and
/// clock timestamps. Also sent within a round: with an action asked for then
/// (its `vote`), with a need for the lead in a round that carried an action,
/// and to relay at once votes that arrived after the round's relay went out
/// (`relayed` then holds those, of earlier rounds).
///
/// A peer that has not synced its session time yet sends `map: None`; its
/// `round`, `vote` and `relayed` are then meaningless and ignored.
/// `synced_at_session_ns` is the session time at which the sender first synced (0
/// for the peer that created the session): the oldest member is the time root.
///
/// Every vote but "no event" carries its voter's proof ([`VoteProof`]: the
/// key its id is derived from, and its signature), and so does every vote
/// relayed: a peer relays what others voted but cannot forge it.
///
/// ```text
/// | round u64 | vote Event | proof option<VoteProof> | relayed list<SignedVote> (≤ 64) |
/// | decided option<DecidedDigest> | map option<SessionMap> | synced_at_session_ns i64 |
/// | clock ClockStamps |
/// ```
#[derive(Clone, PartialEq, Debug)]
pub struct Heartbeat {
    pub round: Round,
    pub vote: Event,
    /// The vote's proof (none for "no event").
    pub proof: Option<VoteProof>,
    pub relayed: Vec<SignedVote>,
    pub decided: Option<DecidedDigest>,
    pub map: Option<SessionMap>,
    pub synced_at_session_ns: i64,
    pub clock: ClockStamps,
}

impl Heartbeat {
    /// The heartbeat's vote as cast by `voter`, if it has a proof (a vote
    /// without one is "no event", or a forgery).
    pub fn signed_vote_of(&self, voter: PeerId) -> Option<SignedVote> {
        self.proof.map(|proof| SignedVote {
            vote: Vote {
                voter,
                round: self.round,
                event: self.vote,
            },
            proof,
        })
    }
}

impl Model for Heartbeat {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        self.round.encode(w)?;
        self.vote.encode(w)?;
        self.proof.encode(w)?;
        w.put_list(&self.relayed, MAX_RELAYED_VOTES, "heartbeat.relayed")?;
        self.decided.encode(w)?;
        self.map.encode(w)?;
        w.put_i64(self.synced_at_session_ns);
        self.clock.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Heartbeat {
            round: r.get_as("heartbeat.round")?,
            vote: r.get()?,
            proof: r.get()?,
            relayed: r.list(MAX_RELAYED_VOTES, "heartbeat.relayed")?,
            decided: r.get()?,
            map: r.get()?,
            synced_at_session_ns: r.i64("heartbeat.synced_at_session_ns")?,
            clock: r.get()?,
        })
    }
}

/// What a peer decided last: peers compare these to notice divergence.
///
/// ```text
/// | round u64 | digest u64 | changed_round u64 |
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DecidedDigest {
    pub round: Round,
    /// [`SessionState::digest`] of the state decided for `round`.
    pub digest: u64,
    /// The state's `changed_round`, which ranks diverged states.
    pub changed_round: Round,
}

impl Model for DecidedDigest {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        self.round.encode(w)?;
        w.put_u64(self.digest);
        self.changed_round.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(DecidedDigest {
            round: r.get_as("decided.round")?,
            digest: r.u64("decided.digest")?,
            changed_round: r.get_as("decided.changed_round")?,
        })
    }
}

/// A standalone clock probe, sent in a burst when a link comes up.
///
/// ```text
/// | seq u32 | origin_ns i64 |
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ClockPing {
    pub seq: u32,
    pub origin_ns: i64,
}

impl Model for ClockPing {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_u32(self.seq);
        w.put_i64(self.origin_ns);
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ClockPing {
            seq: r.u32("clock_ping.seq")?,
            origin_ns: r.i64("clock_ping.origin_ns")?,
        })
    }
}

/// The answer to a [`ClockPing`]: `t1 = origin_ns`, `t2 = received_ns`, `t3 = sent_ns`.
///
/// ```text
/// | seq u32 | origin_ns i64 | received_ns i64 | sent_ns i64 |
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ClockPong {
    pub seq: u32,
    pub origin_ns: i64,
    pub received_ns: i64,
    pub sent_ns: i64,
}

impl Model for ClockPong {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_u32(self.seq);
        w.put_i64(self.origin_ns);
        w.put_i64(self.received_ns);
        w.put_i64(self.sent_ns);
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ClockPong {
            seq: r.u32("clock_pong.seq")?,
            origin_ns: r.i64("clock_pong.origin_ns")?,
            received_ns: r.i64("clock_pong.received_ns")?,
            sent_ns: r.i64("clock_pong.sent_ns")?,
        })
    }
}

/// A peer leaving on purpose (or refusing a link), with a reason to show.
///
/// ```text
/// | reason text (≤ 256 bytes) |
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Goodbye {
    pub reason: String,
}

impl Model for Goodbye {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_text(&self.reason, MAX_REASON_BYTES, "goodbye.reason")
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Goodbye {
            reason: r.text(MAX_REASON_BYTES, "goodbye.reason")?,
        })
    }
}

/// The agreed state as of the decision of `round`, and the votes the sender holds
/// for the rounds after it. Sent to a peer when a link comes up (so a joiner can
/// decide the next rounds itself) and to a peer whose state lost a comparison.
///
/// ```text
/// | round u64 | state SessionState | pending list<SignedVote> (≤ 1024) |
/// ```
#[derive(Clone, PartialEq, Debug)]
pub struct Snapshot {
    pub round: Round,
    pub state: SessionState,
    pub pending: Vec<SignedVote>,
}

impl Model for Snapshot {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        self.round.encode(w)?;
        self.state.encode(w)?;
        w.put_list(&self.pending, MAX_PENDING_VOTES, "snapshot.pending")
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Snapshot {
            round: r.get_as("snapshot.round")?,
            state: r.get()?,
            pending: r.list(MAX_PENDING_VOTES, "snapshot.pending")?,
        })
    }
}

/// The code byte that leads every [`Operation`] of a room message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum OperationCode {
    ChunkRequest = 1,
    ChunkData = 2,
    ChunkRefused = 3,
    SongStem = 4,
    Have = 5,
    LibraryDigest = 6,
    LibraryRecords = 7,
    InfoRequest = 8,
    Info = 9,
}

impl OperationCode {
    pub fn from_u8(code: u8) -> Option<OperationCode> {
        Some(match code {
            1 => OperationCode::ChunkRequest,
            2 => OperationCode::ChunkData,
            3 => OperationCode::ChunkRefused,
            4 => OperationCode::SongStem,
            5 => OperationCode::Have,
            6 => OperationCode::LibraryDigest,
            7 => OperationCode::LibraryRecords,
            8 => OperationCode::InfoRequest,
            9 => OperationCode::Info,
            _ => return None,
        })
    }
}

/// The most hashes a `Have` lists: every stem a peer can host for a
/// library of `crate::library::MAX_STEM_RECORDS` records, halved (128 KiB).
pub const MAX_HAVE: usize = 4096;

/// A request or reply between two peers about the session's room of stems,
/// matched by `request_id`.
///
/// ```text
/// | request_id u32 | op Operation |
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Room {
    pub request_id: u32,
    pub op: Operation,
}

impl Model for Room {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_u32(self.request_id);
        self.op.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Room {
            request_id: r.u32("room.request_id")?,
            op: r.get()?,
        })
    }
}

/// ```text
/// | code u8 | body by code:
///   1 chunk request   | stem [32] | offset u64 | len u32 (≤ 256 KiB) |
///   2 chunk data      | stem [32] | offset u64 | data bytes (≤ 256 KiB) |
///   3 chunk refused   | stem [32] | offset u64 | reason text (≤ 256 bytes) |
///   4 song stem       | index u16 | count u16 | info StemInfo |
///   5 have            | stems list<[32]> (≤ 4096) |
///   6 library digest  | digest [32] | records u32 |
///   7 library records | songs list<SongRecord> (≤ 256) | stems list<StemRecord> (≤ 256) |
///   8 info request    | stem [32] |
///   9 info            | info StemInfo |
/// ```
///
/// A request and its answer share a `request_id` (the requester's choice);
/// song and have messages use 0. A **song stem** is one entry of the
/// session's song: stem `index` of `count` (channel `index` plays it); a peer
/// that knows the song sends every entry when a link comes up. **Have** lists
/// the stems the sender serves: a peer serves only those, and a request for
/// any other hash is refused. A **library digest** is the BLAKE3 of the
/// sender's whole library (`crate::library`) and its record count; a peer
/// whose own differs answers with **library records**, its library in
/// pages, and a digest of its own (both use `request_id` 0). An **info
/// request** asks a host of a stem for its description (the chunk hashes a
/// fetch checks against, which the library does not carry); a host answers
/// with **info** for a stem it serves, and nothing otherwise.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Operation {
    ChunkRequest {
        stem: StemHash,
        offset: u64,
        len: u32,
    },
    ChunkData {
        stem: StemHash,
        offset: u64,
        data: Vec<u8>,
    },
    ChunkRefused {
        stem: StemHash,
        offset: u64,
        reason: String,
    },
    SongStem {
        index: u16,
        count: u16,
        info: StemInfo,
    },
    Have {
        stems: Vec<StemHash>,
    },
    LibraryDigest {
        digest: [u8; 32],
        records: u32,
    },
    LibraryRecords {
        songs: Vec<SongRecord>,
        stems: Vec<StemRecord>,
    },
    InfoRequest {
        stem: StemHash,
    },
    Info {
        info: StemInfo,
    },
}

impl Operation {
    pub fn code(&self) -> OperationCode {
        match self {
            Operation::ChunkRequest { .. } => OperationCode::ChunkRequest,
            Operation::ChunkData { .. } => OperationCode::ChunkData,
            Operation::ChunkRefused { .. } => OperationCode::ChunkRefused,
            Operation::SongStem { .. } => OperationCode::SongStem,
            Operation::Have { .. } => OperationCode::Have,
            Operation::LibraryDigest { .. } => OperationCode::LibraryDigest,
            Operation::LibraryRecords { .. } => OperationCode::LibraryRecords,
            Operation::InfoRequest { .. } => OperationCode::InfoRequest,
            Operation::Info { .. } => OperationCode::Info,
        }
    }
}

impl Model for Operation {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_u8(self.code() as u8);
        match self {
            Operation::ChunkRequest { stem, offset, len } => {
                if *len as usize > MAX_CHUNK_BYTES {
                    return Err(WireError::TooLong {
                        field: "room.chunk_request.len",
                        len: u64::from(*len),
                        max: MAX_CHUNK_BYTES as u64,
                    });
                }
                w.put_array(stem);
                w.put_u64(*offset);
                w.put_u32(*len);
            }
            Operation::ChunkData { stem, offset, data } => {
                w.put_array(stem);
                w.put_u64(*offset);
                w.put_bytes(data, MAX_CHUNK_BYTES, "room.chunk_data.data")?;
            }
            Operation::ChunkRefused {
                stem,
                offset,
                reason,
            } => {
                w.put_array(stem);
                w.put_u64(*offset);
                w.put_text(reason, MAX_REASON_BYTES, "room.chunk_refused.reason")?;
            }
            Operation::SongStem { index, count, info } => {
                if index >= count || usize::from(*count) > MAX_STEMS {
                    return Err(WireError::Invalid {
                        field: "room.song_stem.index",
                        reason: "index below count, count ≤ MAX_STEMS",
                    });
                }
                w.put_u16(*index);
                w.put_u16(*count);
                info.encode(w)?;
            }
            Operation::Have { stems } => {
                w.put_list(stems, MAX_HAVE, "room.have.stems")?;
            }
            Operation::LibraryDigest { digest, records } => {
                w.put_array(digest);
                w.put_u32(*records);
            }
            Operation::LibraryRecords { songs, stems } => {
                w.put_list(songs, MAX_RECORDS_PER_MESSAGE, "room.library.songs")?;
                w.put_list(stems, MAX_RECORDS_PER_MESSAGE, "room.library.stems")?;
            }
            Operation::InfoRequest { stem } => w.put_array(stem),
            Operation::Info { info } => info.encode(w)?,
        }
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let code = r.u8("room.op")?;
        let code = OperationCode::from_u8(code).ok_or(WireError::UnknownCode {
            field: "room.op",
            code,
        })?;
        Ok(match code {
            OperationCode::ChunkRequest => {
                let stem = r.array("room.chunk_request.stem")?;
                let offset = r.u64("room.chunk_request.offset")?;
                let len = r.u32("room.chunk_request.len")?;
                if len as usize > MAX_CHUNK_BYTES {
                    return Err(WireError::TooLong {
                        field: "room.chunk_request.len",
                        len: u64::from(len),
                        max: MAX_CHUNK_BYTES as u64,
                    });
                }
                Operation::ChunkRequest { stem, offset, len }
            }
            OperationCode::ChunkData => Operation::ChunkData {
                stem: r.array("room.chunk_data.stem")?,
                offset: r.u64("room.chunk_data.offset")?,
                data: r.bytes(MAX_CHUNK_BYTES, "room.chunk_data.data")?,
            },
            OperationCode::ChunkRefused => Operation::ChunkRefused {
                stem: r.array("room.chunk_refused.stem")?,
                offset: r.u64("room.chunk_refused.offset")?,
                reason: r.text(MAX_REASON_BYTES, "room.chunk_refused.reason")?,
            },
            OperationCode::SongStem => {
                let index = r.u16("room.song_stem.index")?;
                let count = r.u16("room.song_stem.count")?;
                if index >= count || usize::from(count) > MAX_STEMS {
                    return Err(WireError::Invalid {
                        field: "room.song_stem.index",
                        reason: "index below count, count ≤ MAX_STEMS",
                    });
                }
                Operation::SongStem {
                    index,
                    count,
                    info: r.get()?,
                }
            }
            OperationCode::Have => Operation::Have {
                stems: r.list(MAX_HAVE, "room.have.stems")?,
            },
            OperationCode::LibraryDigest => Operation::LibraryDigest {
                digest: r.array("room.library_digest.digest")?,
                records: r.u32("room.library_digest.records")?,
            },
            OperationCode::LibraryRecords => Operation::LibraryRecords {
                songs: r.list(MAX_RECORDS_PER_MESSAGE, "room.library.songs")?,
                stems: r.list(MAX_RECORDS_PER_MESSAGE, "room.library.stems")?,
            },
            OperationCode::InfoRequest => Operation::InfoRequest {
                stem: r.array("room.info_request.stem")?,
            },
            OperationCode::Info => Operation::Info { info: r.get()? },
        })
    }
}
