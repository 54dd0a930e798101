//! proptest strategies for every type on the wire, shared by the test suites.
#![allow(dead_code)] // each suite uses a different subset

use proptest::collection::vec;
use proptest::prelude::*;
use std::net::{IpAddr, SocketAddr};
use synfony::protocol::message::*;
use synfony::protocol::*;

/// Cases per property: thousands in CI; `PROPTEST_CASES` overrides.
pub fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

pub fn peer_id() -> impl Strategy<Value = PeerId> {
    any::<u64>().prop_map(PeerId)
}

/// Few distinct voters, so generated rounds have real conflicts and ties.
pub fn small_peer_id() -> impl Strategy<Value = PeerId> {
    (0u64..12).prop_map(PeerId)
}

/// Any round the wire carries (up to `Round::MAX`; beyond is refused, see
/// `rounds_beyond_the_last_are_refused`).
pub fn round() -> impl Strategy<Value = Round> {
    prop_oneof![Just(Round::MAX), (0..=Round::MAX.0).prop_map(Round)]
}

pub fn channel() -> impl Strategy<Value = Channel> {
    prop_oneof![
        1 => Just(Channel::Master),
        4 => (0..MAX_STEMS as u16).prop_map(Channel::Stem),
    ]
}

/// Gains a fader can send: any finite f32 or −∞, weighted toward the fader range.
pub fn gain_db() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -60.0f32..=12.0,
        1 => Just(f32::NEG_INFINITY),
        1 => any::<f32>().prop_filter("finite", |g| g.is_finite()),
        1 => prop::sample::select(vec![0.0f32, -0.0, 12.0, 100.0, -6.0]),
    ]
}

/// Any song reference the wire carries.
pub fn song_ref() -> impl Strategy<Value = SongRef> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        0..=MAX_STEMS as u16,
        0..=SongRef::MAX_DURATION_NS,
    )
        .prop_map(|(id, version, channels, duration_ns)| SongRef {
            song: library::SongId(id),
            version,
            channels,
            duration_ns,
        })
}

/// A few songs (one id, a second version of it, another song, a short one),
/// so generated rounds load and queue the same songs and tie.
pub fn small_song_ref() -> impl Strategy<Value = SongRef> {
    let song = |id: u8, version: u8, channels: u16, secs: i64| SongRef {
        song: library::SongId([id; 16]),
        version: [version; 16],
        channels,
        duration_ns: secs * 1_000_000_000,
    };
    prop::sample::select(vec![
        song(1, 1, 2, 180),
        song(1, 2, 3, 180),
        song(2, 1, 4, 240),
        song(3, 1, 1, 1),
    ])
}

pub fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        Just(Event::None),
        Just(Event::Play),
        Just(Event::Pause),
        any::<i64>().prop_map(|position_ns| Event::Seek { position_ns }),
        (channel(), gain_db()).prop_map(|(channel, gain_db)| Event::Volume { channel, gain_db }),
        (channel(), any::<bool>()).prop_map(|(channel, muted)| Event::Mute { channel, muted }),
        song_ref().prop_map(Event::Load),
        song_ref().prop_map(Event::Queue),
        (0..MAX_QUEUE as u16, any::<[u8; 16]>()).prop_map(|(index, id)| Event::Unqueue {
            index,
            song: library::SongId(id)
        }),
        Just(Event::Next),
        Just(Event::Prev),
        (0..MAX_QUEUE as u16, 0..MAX_QUEUE as u16, any::<[u8; 16]>()).prop_map(|(from, to, id)| {
            Event::Move {
                from,
                to,
                song: library::SongId(id),
            }
        }),
        (0..=lead::LEAD_MAX_MS).prop_map(|need_ms| Event::Lead { need_ms }),
    ]
}

/// A lead as the choice function leaves it: needs by peer, the lead in range.
pub fn lead_state() -> impl Strategy<Value = lead::Lead> {
    (
        lead::LEAD_FLOOR_MS..=lead::LEAD_MAX_MS,
        vec((peer_id(), 0..=lead::LEAD_MAX_MS, round()), 0..6),
    )
        .prop_map(|(lead_ms, needs)| {
            let mut lead = lead::Lead {
                lead_ms,
                needs: vec![],
            };
            for (peer, need_ms, round) in needs {
                lead.record(peer, need_ms, round);
            }
            lead
        })
}

pub fn vote() -> impl Strategy<Value = Vote> {
    (peer_id(), round(), event()).prop_map(|(voter, round, event)| Vote {
        voter,
        round,
        event,
    })
}

/// A vote's proof as the wire carries it (any bytes: only the session
/// checks it).
pub fn vote_proof() -> impl Strategy<Value = VoteProof> {
    (any::<[u8; 32]>(), vec(any::<u8>(), 64)).prop_map(|(key, sig)| VoteProof {
        key: PeerKey(key),
        signature: sig.try_into().expect("64 bytes"),
    })
}

pub fn signed_vote() -> impl Strategy<Value = SignedVote> {
    (vote(), vote_proof()).prop_map(|(vote, proof)| SignedVote { vote, proof })
}

pub fn channel_state() -> impl Strategy<Value = ChannelState> {
    (gain_db(), any::<bool>()).prop_map(|(gain_db, muted)| ChannelState { gain_db, muted })
}

pub fn session_state() -> impl Strategy<Value = SessionState> {
    (
        song_ref(),
        any::<bool>(),
        any::<u64>(),
        any::<i64>(),
        round(),
        channel_state(),
        vec(channel_state(), 0..16),
        (
            vec(song_ref(), 0..4),
            vec(song_ref(), 0..4),
            lead_state(),
            "\\PC{0,16}",
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                song,
                playing,
                pos,
                anchor_session_ns,
                changed_round,
                master,
                channels,
                (queue, played, lead, name, founder),
            )| {
                let song = SongRef {
                    channels: channels.len() as u16,
                    ..song
                };
                let anchor_position_ns = (pos % (song.duration_ns as u64).saturating_add(1)) as i64;
                SessionState {
                    timeline: Timeline {
                        playing,
                        anchor_position_ns,
                        anchor_session_ns,
                    },
                    song,
                    queue,
                    played,
                    changed_round,
                    master,
                    channels,
                    lead,
                    name,
                    founder: PeerId(founder),
                }
            },
        )
}

pub fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port)),
    ]
}

/// Text of at most `max` UTF-8 bytes, multi-byte characters included.
pub fn text(max: usize) -> impl Strategy<Value = String> {
    any::<String>().prop_map(move |s| {
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_owned()
    })
}

pub fn peer_info() -> impl Strategy<Value = PeerInfo> {
    (peer_id(), text(MAX_NAME_BYTES), socket_addr()).prop_map(|(peer_id, name, addr)| PeerInfo {
        peer_id,
        name,
        addr,
    })
}

pub fn clock_stamps() -> impl Strategy<Value = ClockStamps> {
    (
        any::<i64>(),
        proptest::option::of((any::<i64>(), any::<i64>())),
    )
        .prop_map(|(sent_ns, echo)| ClockStamps {
            sent_ns,
            echo: echo.map(|(origin_ns, received_ns)| ClockEcho {
                origin_ns,
                received_ns,
            }),
        })
}

pub fn session_map() -> impl Strategy<Value = SessionMap> {
    (any::<i64>(), any::<i64>(), -0.01f64..=0.01).prop_map(
        |(anchor_local_ns, anchor_session_ns, rate)| SessionMap {
            anchor_local_ns,
            anchor_session_ns,
            rate,
        },
    )
}

pub fn decided_digest() -> impl Strategy<Value = DecidedDigest> {
    (round(), any::<u64>(), round()).prop_map(|(round, digest, changed_round)| DecidedDigest {
        round,
        digest,
        changed_round,
    })
}

pub fn heartbeat() -> impl Strategy<Value = Heartbeat> {
    (
        round(),
        event(),
        proptest::option::of(vote_proof()),
        vec(signed_vote(), 0..4),
        proptest::option::of(decided_digest()),
        proptest::option::of(session_map()),
        any::<i64>(),
        clock_stamps(),
    )
        .prop_map(
            |(round, vote, proof, relayed, decided, map, synced_at_session_ns, clock)| Heartbeat {
                round,
                vote,
                proof,
                relayed,
                decided,
                map,
                synced_at_session_ns,
                clock,
            },
        )
}

/// Any song record the wire carries (valid or not: `check` is the library's).
pub fn song_record() -> impl Strategy<Value = library::SongRecord> {
    (any::<[u8; 16]>(), any::<u32>(), text(MAX_NAME_BYTES)).prop_map(|(id, generation, name)| {
        library::SongRecord {
            id: library::SongId(id),
            generation,
            name,
        }
    })
}

/// Any stem record the wire carries.
pub fn stem_record() -> impl Strategy<Value = library::StemRecord> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 32]>(),
        any::<u32>(),
        text(MAX_NAME_BYTES),
        text(stem::MAX_FORMAT_BYTES),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(song, hash, generation, name, format, size_bytes, frames)| library::StemRecord {
                song: library::SongId(song),
                hash,
                generation,
                name,
                format,
                size_bytes,
                frames,
            },
        )
}

/// A stem described from a few bytes (its chunk hashes consistent, as
/// decoding demands).
pub fn stem_info() -> impl Strategy<Value = StemInfo> {
    (
        text(MAX_NAME_BYTES),
        vec(any::<u8>(), 1..300),
        0u64..1 << 30,
    )
        .prop_map(|(name, bytes, frames)| StemInfo::of_bytes(&name, "wav", &bytes, frames))
}

pub fn operation() -> impl Strategy<Value = Operation> {
    let stem = any::<[u8; 32]>();
    prop_oneof![
        stem.prop_map(|stem| Operation::InfoRequest { stem }),
        stem_info().prop_map(|info| Operation::Info { info }),
        (0u16..4, stem_info()).prop_map(|(index, info)| Operation::SongStem {
            index,
            count: 4,
            info
        }),
        (any::<[u8; 32]>(), any::<u32>())
            .prop_map(|(digest, records)| Operation::LibraryDigest { digest, records }),
        (vec(song_record(), 0..4), vec(stem_record(), 0..4))
            .prop_map(|(songs, stems)| Operation::LibraryRecords { songs, stems }),
        (stem, any::<u64>(), 0..=MAX_CHUNK_BYTES as u32)
            .prop_map(|(stem, offset, len)| Operation::ChunkRequest { stem, offset, len }),
        (stem, any::<u64>(), vec(any::<u8>(), 0..2048))
            .prop_map(|(stem, offset, data)| Operation::ChunkData { stem, offset, data }),
        (stem, any::<u64>(), text(MAX_REASON_BYTES)).prop_map(|(stem, offset, reason)| {
            Operation::ChunkRefused {
                stem,
                offset,
                reason,
            }
        }),
    ]
}

pub fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        vec(peer_info(), 0..MAX_PEERS).prop_map(|peers| Message::PeerList(PeerList { peers })),
        heartbeat().prop_map(Message::Heartbeat),
        (any::<u32>(), any::<i64>())
            .prop_map(|(seq, origin_ns)| Message::ClockPing(ClockPing { seq, origin_ns })),
        (any::<u32>(), any::<i64>(), any::<i64>(), any::<i64>()).prop_map(
            |(seq, origin_ns, received_ns, sent_ns)| Message::ClockPong(ClockPong {
                seq,
                origin_ns,
                received_ns,
                sent_ns
            })
        ),
        text(MAX_REASON_BYTES).prop_map(|reason| Message::Goodbye(Goodbye { reason })),
        (round(), session_state(), vec(signed_vote(), 0..4)).prop_map(|(round, state, pending)| {
            Message::Snapshot(Snapshot {
                round,
                state,
                pending,
            })
        }),
        (any::<u32>(), operation())
            .prop_map(|(request_id, op)| Message::Room(Room { request_id, op })),
    ]
}
