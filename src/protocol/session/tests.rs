//! The session core's unit tests: specific inputs, through the public API.

use super::*;
use crate::protocol::Verdict;
use crate::protocol::message::{ClockPong, ClockStamps, Heartbeat, Snapshot};
use std::net::{Ipv4Addr, SocketAddr};

fn info(id: u64) -> PeerInfo {
    PeerInfo {
        peer_id: PeerId(id),
        name: format!("p{id}"),
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 7000 + id as u16)),
    }
}

fn drain(s: &mut Session) -> Vec<SessionEvent> {
    while s.poll_transmit().is_some() {}
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn heartbeat(round: u64, vote: Event, relayed: Vec<Vote>) -> Message {
    Message::Heartbeat(Heartbeat {
        round: Round(round),
        vote,
        relayed,
        decided: None,
        map: Some(SessionMap::starting_at(0)),
        synced_at_session_ns: 0,
        clock: ClockStamps {
            sent_ns: 0,
            echo: None,
        },
    })
}

/// Peer 1, which created the session (a 60 s song, 2 stems), linked to
/// peer 2.
fn creator_linked_to_2() -> Session {
    let mut s = Session::new(
        Config::default(),
        info(1),
        0,
        Start::Create {
            state: SessionState::new(60_000_000_000, 2),
        },
    );
    s.handle_link_up(0, info(2));
    s
}

/// Heartbeats are counted on time while their round is open, late after
/// it was decided.
#[test]
fn heartbeat_timeliness_is_counted() {
    let mut s = creator_linked_to_2();
    let mut t = 0;
    while t < 1_000_000_000 {
        t += 10_000_000;
        s.handle_timeout(t);
        if t % 100_000_000 == 0 {
            // Keep the link alive with a heartbeat for the current round.
            s.handle_message(
                t,
                PeerId(2),
                heartbeat(t as u64 / ROUND_NS as u64, Event::None, vec![]),
            );
        }
    }
    drain(&mut s);
    let on_time = s.stats().heartbeats_on_time;
    assert!(on_time >= 9, "{:?}", s.stats());
    assert_eq!(s.stats().heartbeats_late, 0);
    let (last, _) = s.latest().unwrap();
    s.handle_message(t, PeerId(2), heartbeat(last.0, Event::None, vec![]));
    assert_eq!(s.stats().heartbeats_late, 1);
    assert_eq!(s.stats().heartbeats_on_time, on_time);
}

/// A creator decides every round on its own, and bad input from a linked or
/// unknown peer is ignored with a reason, never changing what is decided.
#[test]
fn bad_input_is_ignored_and_never_corrupts_state() {
    let mut s = creator_linked_to_2();
    fn run_to(s: &mut Session, from: i64, until: i64) -> i64 {
        let mut t = from;
        while t < until {
            t += 10_000_000;
            s.handle_timeout(t);
        }
        t
    }
    let t = run_to(&mut s, 0, 1_000_000_000);
    s.handle_link_up(t, info(2)); // it went silent meanwhile and was dropped
    drain(&mut s);
    let before = s.latest().map(|(r, st)| (r, st.digest())).unwrap();

    // From nobody we know.
    s.handle_message(t, PeerId(99), heartbeat(12, Event::Pause, vec![]));
    // Votes far in the future and in the distant past, relayed or direct.
    let far = |round| Vote {
        voter: PeerId(2),
        round: Round(round),
        event: Event::Seek { position_ns: 5 },
    };
    s.handle_message(
        t,
        PeerId(2),
        heartbeat(1_000_000, Event::Play, vec![far(900_000)]),
    );
    // Absurd timestamps.
    s.handle_message(
        t,
        PeerId(2),
        Message::ClockPong(ClockPong {
            seq: 1,
            origin_ns: i64::MIN,
            received_ns: i64::MAX,
            sent_ns: i64::MIN,
        }),
    );
    // A snapshot claiming a change after its own round.
    let mut forged = SessionState::new(1, 0);
    forged.changed_round = Round(u64::MAX);
    s.handle_message(
        t,
        PeerId(2),
        Message::Snapshot(Snapshot {
            round: Round(3),
            state: forged,
            pending: vec![],
        }),
    );
    // Not the session's business.
    s.handle_message(
        t,
        PeerId(2),
        Message::Goodbye(Goodbye { reason: "x".into() }),
    );
    s.handle_message(t, PeerId(2), heartbeat(12, Event::Pause, vec![]));

    let reasons: Vec<Ignored> = drain(&mut s)
        .into_iter()
        .filter_map(|e| match e {
            SessionEvent::Ignored { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert!(reasons.contains(&Ignored::UnknownPeer), "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| matches!(r, Ignored::VoteOutOfWindow { .. })),
        "{reasons:?}"
    );
    assert!(reasons.contains(&Ignored::AbsurdTimestamp), "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| matches!(r, Ignored::BadSnapshot { .. })),
        "{reasons:?}"
    );
    // Nothing above changed the decided history.
    let (r, _) = before;
    assert_eq!(s.decided_state(r).map(SessionState::digest), Some(before.1));
    run_to(&mut s, t, 2_000_000_000);
    assert!(!s.latest().unwrap().1.timeline.playing);
}

/// A user action waits for the next round, is decided there, and the voter
/// sees its verdict; a NaN gain is refused before it is queued.
#[test]
fn an_action_is_cast_next_round_and_gets_a_verdict() {
    let mut s = Session::new(
        Config::default(),
        info(1),
        0,
        Start::Create {
            state: SessionState::new(60_000_000_000, 2),
        },
    );
    assert_eq!(
        s.vote(Event::Volume {
            channel: crate::protocol::Channel::Master,
            gain_db: f32::NAN
        }),
        Err(VoteError::InvalidGain)
    );
    s.handle_timeout(150_000_000);
    s.vote(Event::Play).unwrap();
    s.vote(Event::Pause).unwrap(); // replaces the play: same kind
    let mut verdict = None;
    let mut dropped = None;
    for step in 16..60 {
        s.handle_timeout(step * 10_000_000);
        for e in drain(&mut s) {
            match e {
                SessionEvent::Decided(d) => {
                    if let Some((v, ver)) =
                        verdicts_of(&d, PeerId(1)).find(|(v, _)| v.event == Event::Pause)
                    {
                        verdict = Some((v.round, ver, d.apply_at_session_ns));
                    }
                }
                SessionEvent::VoteDropped { event, reason } => dropped = Some((event, reason)),
                _ => {}
            }
        }
    }
    assert_eq!(dropped, Some((Event::Play, DropReason::Replaced)));
    let (round, ver, apply_at) = verdict.expect("the pause was decided");
    assert_eq!(
        round,
        Round(2),
        "cast at the start of the round after the action"
    );
    assert_eq!(ver, Verdict::Applied);
    assert_eq!(apply_at, 3 * ROUND_NS + Config::default().lead_ns);
}
