//! The session core's unit tests: specific inputs, through the public API.

use super::*;
use crate::protocol::Verdict;
use crate::protocol::identity::{SignedVote, Signer};
use crate::protocol::message::{ClockPong, ClockStamps, Heartbeat, Snapshot};
use std::net::{Ipv4Addr, SocketAddr};

/// Peer `n`'s keys, for `n` below [`KEYED`]: ids ascend with `n`, so a test
/// can say "the lower id" as it did when it chose ids.
fn key(n: u64) -> &'static Signer {
    static KEYS: std::sync::OnceLock<Vec<Signer>> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let mut keys: Vec<Signer> = (0..KEYED)
            .map(|n| Signer::from_seed([n as u8; 32]))
            .collect();
        keys.sort_by_key(Signer::peer_id);
        keys
    });
    &keys[n as usize]
}

/// Peers with keys; higher numbers are ids nobody holds a key for (ghosts
/// in a peer list), below every keyed id.
const KEYED: u64 = 64;

fn id(n: u64) -> PeerId {
    if n < KEYED {
        key(n).peer_id()
    } else {
        PeerId(n)
    }
}

fn info(n: u64) -> PeerInfo {
    PeerInfo {
        peer_id: id(n),
        name: format!("p{n}"),
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 7000 + n as u16)),
    }
}

fn drain(s: &mut Session) -> Vec<SessionEvent> {
    while s.poll_transmit().is_some() {}
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// Peer `from`'s heartbeat for `round`, its vote signed.
fn heartbeat(from: u64, round: u64, vote: Event, relayed: Vec<SignedVote>) -> Message {
    Message::Heartbeat(Heartbeat {
        round: Round(round),
        vote,
        proof: (vote != Event::None).then(|| key(from).sign_vote(Round(round), vote).proof),
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
        key(1).clone(),
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
                id(2),
                heartbeat(2, t as u64 / ROUND_NS as u64, Event::None, vec![]),
            );
        }
    }
    drain(&mut s);
    let on_time = s.stats().heartbeats_on_time;
    assert!(on_time >= 9, "{:?}", s.stats());
    assert_eq!(s.stats().heartbeats_late, 0);
    let (last, _) = s.latest().unwrap();
    s.handle_message(t, id(2), heartbeat(2, last.0, Event::None, vec![]));
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
    s.handle_message(t, id(63), heartbeat(63, 12, Event::Pause, vec![]));
    // Votes far in the future and in the distant past, relayed or direct.
    let far = |round| key(2).sign_vote(Round(round), Event::Seek { position_ns: 5 });
    s.handle_message(
        t,
        id(2),
        heartbeat(2, 1_000_000, Event::Play, vec![far(900_000)]),
    );
    // Absurd timestamps.
    s.handle_message(
        t,
        id(2),
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
        id(2),
        Message::Snapshot(Snapshot {
            round: Round(3),
            state: forged,
            pending: vec![],
        }),
    );
    // Not the session's business.
    s.handle_message(t, id(2), Message::Goodbye(Goodbye { reason: "x".into() }));
    s.handle_message(t, id(2), heartbeat(2, 12, Event::Pause, vec![]));

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

/// A user action goes out at once, in the round it is asked in, is decided
/// there, and the voter sees its verdict; a second one waits for the next
/// round; a NaN gain is refused before it is queued.
#[test]
fn an_action_is_cast_at_once_and_gets_a_verdict() {
    let mut s = Session::new(
        Config::default(),
        info(1),
        key(1).clone(),
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
    assert!(
        s.poll_timeout().is_some_and(|t| t <= 150_000_000),
        "due at once"
    );
    s.handle_timeout(150_000_000);
    s.vote(Event::Seek { position_ns: 0 }).unwrap();
    s.handle_timeout(160_000_000);
    assert!(
        s.poll_timeout().is_some_and(|t| t >= 200_000_000),
        "one action a round: the seek waits for round 2"
    );
    let mut verdict = None;
    let mut seek_round = None;
    let mut dropped = None;
    for step in 16..60 {
        s.handle_timeout(step * 10_000_000);
        for e in drain(&mut s) {
            match e {
                SessionEvent::Decided(d) => {
                    if let Some((v, ver)) =
                        verdicts_of(&d, id(1)).find(|(v, _)| v.event == Event::Pause)
                    {
                        verdict = Some((v.round, ver, d.apply_at_session_ns));
                    }
                    if let Some((v, _)) =
                        verdicts_of(&d, id(1)).find(|(v, _)| matches!(v.event, Event::Seek { .. }))
                    {
                        seek_round = Some(v.round);
                    }
                }
                SessionEvent::VoteDropped { event, reason } => dropped = Some((event, reason)),
                _ => {}
            }
        }
    }
    assert_eq!(dropped, Some((Event::Play, DropReason::Replaced)));
    let (round, ver, apply_at) = verdict.expect("the pause was decided");
    assert_eq!(round, Round(1), "cast in the round it was asked in");
    assert_eq!(seek_round, Some(Round(2)));
    assert_eq!(ver, Verdict::Applied);
    assert_eq!(
        apply_at,
        2 * ROUND_NS + i64::from(crate::protocol::lead::LEAD_START_MS) * 1_000_000
    );
}

/// Nobody votes for another (issue 23): a vote peer 2 relays under peer 3's
/// id is held only if 3 signed it. A forgery (2's own signature, or a
/// signature over another vote) is named once, and discredits the link it
/// came on: nothing it says of votes is read again (an honest peer sends no
/// forgery), so copies cost no further checks. The same genuine vote relayed
/// by an honest peer counts.
#[test]
fn a_relayed_vote_counts_only_with_its_voters_signature() {
    let linked = || {
        let mut s = creator_linked_to_2();
        let mut t = 0;
        while t < 1_050 * MS {
            t += 10 * MS;
            s.handle_timeout(t);
        }
        s.handle_link_up(t, info(2));
        s.handle_link_up(t, info(4));
        drain(&mut s);
        let r = s.latest().map(|(r, _)| r.0 + 2).unwrap();
        (s, t, r)
    };
    // What peers 2 and 3 have decided for them until round r + 5.
    let counted = |s: &mut Session, mut t: i64, r: u64| {
        let mut counted = Vec::new();
        while t < (r as i64 + 5) * ROUND_NS {
            t += 10 * MS;
            s.handle_timeout(t);
            for e in drain(s) {
                if let SessionEvent::Decided(d) = e {
                    counted.extend(verdicts_of(&d, id(3)).map(|(v, _)| v.event));
                    counted.extend(verdicts_of(&d, id(2)).map(|(v, _)| v.event));
                }
            }
        }
        counted
    };
    let forgeries = |s: &mut Session| {
        drain(s)
            .into_iter()
            .filter(|e| {
                matches!(e, SessionEvent::Ignored { from, reason: Ignored::ForgedVote { voter } }
                    if *from == id(2) && *voter == id(3))
            })
            .count()
    };

    let (mut s, t, r) = linked();
    let pause = Event::Pause;
    let mut by_2 = key(2).sign_vote(Round(r), pause);
    by_2.vote.voter = id(3);
    let mut other_vote = key(3).sign_vote(Round(r), Event::Play);
    other_vote.vote.event = pause;
    s.handle_message(
        t,
        id(2),
        heartbeat(2, r, Event::None, vec![by_2, other_vote]),
    );
    assert_eq!(forgeries(&mut s), 1, "named once, the rest unread");
    let genuine = key(3).sign_vote(Round(r), Event::Play);
    s.handle_message(t, id(2), heartbeat(2, r, Event::Play, vec![genuine]));
    assert_eq!(forgeries(&mut s), 0);
    assert_eq!(counted(&mut s, t, r), vec![], "2 is not heard on votes");

    let (mut honest, t, r) = linked();
    let genuine = key(3).sign_vote(Round(r), Event::Play);
    honest.handle_message(t, id(4), heartbeat(4, r, Event::None, vec![genuine]));
    assert_eq!(
        counted(&mut honest, t, r),
        vec![Event::Play],
        "3's own vote, relayed by 4"
    );
}

// ----- issue 19: one faulty member ---------------------------------------------

const MS: i64 = 1_000_000;

/// Peer `id` creating a session of a 60 s song with two stems, at time 0.
fn creating(id: u64, cfg: Config) -> Session {
    Session::new(
        cfg,
        info(id),
        key(id).clone(),
        0,
        Start::Create {
            state: SessionState::new(60_000 * MS, 2),
        },
    )
}

/// Feeds `peer`'s link enough clock exchanges for a usable estimate (its
/// clock reads ours plus `offset_ns`, 1 ms each way), then a synced heartbeat
/// announcing `map` (in its clock) and `seniority`. Returns the local time.
fn make_credible(
    s: &mut Session,
    peer: u64,
    mut t: i64,
    offset_ns: i64,
    map: SessionMap,
    seniority: i64,
) -> i64 {
    for seq in 0..30 {
        s.handle_message(
            t + 2 * MS,
            id(peer),
            Message::ClockPong(ClockPong {
                seq,
                origin_ns: t,
                received_ns: t + MS + offset_ns,
                sent_ns: t + MS + offset_ns,
            }),
        );
        t += 5 * MS;
    }
    s.handle_message(t, id(peer), claims(map, seniority, t - MS + offset_ns));
    t
}

/// A synced heartbeat announcing `map` and `seniority`, sent at `sent_ns`.
fn claims(map: SessionMap, seniority: i64, sent_ns: i64) -> Message {
    Message::Heartbeat(Heartbeat {
        round: Round(0),
        vote: Event::None,
        proof: None,
        relayed: vec![],
        decided: None,
        map: Some(map),
        synced_at_session_ns: seniority,
        clock: ClockStamps {
            sent_ns,
            echo: None,
        },
    })
}

fn run(s: &mut Session, from: i64, until: i64) -> (i64, Vec<SessionEvent>) {
    let mut events = vec![];
    let mut t = from;
    while t < until {
        t += 10 * MS;
        s.handle_timeout(t);
        events.extend(drain(s));
    }
    (t, events)
}

fn decided(events: &[SessionEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, SessionEvent::Decided(_)))
        .count()
}

/// A member that claims seniority with a map 30 s behind does not become the
/// root of a peer whose time another member confirms, and does not move its
/// session time; a claim of seniority before the session is refused.
#[test]
fn a_senior_claim_30_s_off_is_not_followed() {
    // We (9) created the session; 4 joined later and agrees with us (same
    // clock, our map); 3 claims to be a creator too (a lower id wins a tie
    // of seniority), with a map 30 s behind.
    let mut s = creating(9, Config::default());
    // 35 s in, so that 30 s behind is still a time in the session.
    let (t, _) = run(&mut s, 0, 35_000 * MS);
    s.handle_link_up(t, info(4));
    s.handle_link_up(t, info(3));
    drain(&mut s);
    let here = s.map().unwrap();
    let t = make_credible(&mut s, 4, t, 0, here, 500 * MS);
    let behind = SessionMap {
        anchor_session_ns: here.anchor_session_ns - 30_000 * MS,
        ..here
    };
    let t = make_credible(&mut s, 3, t, 0, behind, -1);
    let events = drain(&mut s);
    assert!(events.contains(&SessionEvent::Ignored {
        from: id(3),
        reason: Ignored::BadSeniority
    }));
    let t = make_credible(&mut s, 3, t, 0, behind, 0);
    let before = s.session_ns_at(t).unwrap();
    let mut events = vec![];
    let mut t2 = t;
    while t2 < t + 1_000 * MS {
        t2 += 10 * MS;
        s.handle_timeout(t2);
        if (t2 - t) % (100 * MS) == 0 {
            // Both keep talking (and keep their claims).
            for (peer, map, seniority) in [(4, here, 500 * MS), (3, behind, 0)] {
                s.handle_message(t2, id(peer), claims(map, seniority, t2 - MS));
            }
        }
        events.extend(drain(&mut s));
    }
    assert_eq!(s.linked().count(), 2);
    assert_ne!(s.root(), Some(id(3)), "{events:?}");
    let moved = s.session_ns_at(t2).unwrap() - before - (t2 - t);
    assert!(moved.abs() < MS, "session time moved by {moved} ns");
    assert!(decided(&events) >= 4, "rounds go on being decided");
}

/// A joiner handed a snapshot for the last round there is, then synced to
/// honest time, decides a bounded number of rounds (it once looped over every
/// round to `u64::MAX`) and goes on deciding.
#[test]
fn a_snapshot_for_the_last_round_costs_a_joiner_nothing() {
    let mut s = Session::new(Config::default(), info(5), key(5).clone(), 0, Start::Join);
    s.handle_link_up(0, info(2));
    s.handle_message(
        0,
        id(2),
        Message::Snapshot(Snapshot {
            round: Round::MAX,
            state: SessionState::new(60_000 * MS, 2),
            pending: vec![],
        }),
    );
    let session = SessionMap {
        anchor_local_ns: 0,
        anchor_session_ns: 100_000 * MS,
        rate: 0.0,
    };
    let t = make_credible(&mut s, 2, 0, 0, session, 0);
    let mut most = 0;
    let mut total = 0;
    let mut now = t;
    while now < t + 2_000 * MS {
        now += 10 * MS;
        s.handle_timeout(now);
        let n = decided(&drain(&mut s));
        most = most.max(n);
        total += n;
    }
    assert!(s.map().is_some(), "synced");
    assert!(most <= 3, "at most a few decisions per call, got {most}");
    assert!(total >= 15, "and it decides every round: {total}");
}

/// A forged snapshot — master at +1000 dB, no channels, an absurd duration, a
/// playhead anchored in the far future — is refused, and the stems' faders
/// stay.
#[test]
fn forged_snapshots_are_refused() {
    let mut s = creator_linked_to_2();
    let (t, _) = run(&mut s, 0, 1_000 * MS);
    s.handle_link_up(t, info(2));
    drain(&mut s);
    let (k, ours) = s.latest().map(|(r, st)| (r, st.clone())).unwrap();
    let mut loud = ours.clone();
    loud.master.gain_db = 1000.0;
    loud.changed_round = k;
    let mut empty = ours.clone();
    empty.channels.clear();
    empty.changed_round = k;
    let mut long = ours.clone();
    long.song.duration_ns = i64::MAX;
    long.changed_round = k;
    let mut future = ours.clone();
    future.timeline.anchor_session_ns = i64::MAX;
    future.changed_round = k;
    for forged in [loud, empty, long, future] {
        s.handle_message(
            t,
            id(2),
            Message::Snapshot(Snapshot {
                round: k,
                state: forged.clone(),
                pending: vec![],
            }),
        );
        let events = drain(&mut s);
        assert!(
            events.contains(&SessionEvent::Ignored {
                from: id(2),
                reason: Ignored::BadSnapshot { round: k }
            }),
            "{forged:?} → {events:?}"
        );
        assert_eq!(s.latest().map(|(_, st)| st.clone()), Some(ours.clone()));
    }
}

/// A member learnt of from a peer list but never reached is dialled ever less
/// often, and lists cannot make us keep more than `MAX_MEMBERS` of them.
#[test]
fn peer_lists_cannot_make_us_dial_without_bound() {
    use crate::protocol::message::PeerList;
    let mut s = creator_linked_to_2();
    drain(&mut s);
    let ghosts = |from: u64| PeerList {
        peers: (from..from + 64).map(info).collect(),
    };
    s.handle_message(0, id(2), Message::PeerList(ghosts(100)));
    s.handle_message(0, id(2), Message::PeerList(ghosts(1000)));
    assert_eq!(s.footprint().members, MAX_MEMBERS);
    let mut dials = 0;
    let mut t = 0;
    while t < 10_000 * MS {
        t += 10 * MS;
        s.handle_timeout(t);
        // Keep peer 2 alive.
        s.handle_message(t, id(2), heartbeat(2, 0, Event::None, vec![]));
        dials += std::iter::from_fn(|| s.poll_event())
            .filter(|e| matches!(e, SessionEvent::Dial(i) if i.peer_id == PeerId(100)))
            .count();
        while s.poll_transmit().is_some() {}
    }
    // 0, 0.25, 0.75, 1.75, 3.75, 7.75 s: six dials in ten seconds, not forty.
    assert!((5..=7).contains(&dials), "{dials} dials of a ghost in 10 s");
}

// ----- issue 22: the lead follows what the session measures -------------------

/// A peer alone, or with a link not measured yet, presumes the start lead;
/// once a link's heartbeats are measured its need is its guard, their p99
/// lateness and the margin, and it says so in a `lead` vote that lowers the
/// agreed lead.
#[test]
fn the_need_follows_the_links_and_lowers_the_lead() {
    use crate::protocol::lead::LEAD_START_MS;
    let cfg = Config {
        decide_guard_ns: 20 * MS,
        ..Config::default()
    };
    let margin_ms = cfg.lead_margin_ns / MS;
    let mut s = creating(9, cfg);
    assert_eq!(
        s.need_ms(),
        LEAD_START_MS,
        "alone: the first joiner is unknown"
    );
    let (t, _) = run(&mut s, 0, 1_000 * MS);
    s.handle_link_up(t, info(4));
    drain(&mut s);
    assert_eq!(s.need_ms(), LEAD_START_MS, "a link not measured yet");
    let here = s.map().unwrap();
    let mut t = make_credible(&mut s, 4, t, 0, here, 500 * MS);
    // Its heartbeats arrive 3 ms after it sent them (same clock, same map).
    let mut lowered = false;
    for _ in 0..300 {
        t += 10 * MS;
        if t % (100 * MS) == 0 {
            s.handle_message(t, id(4), claims(here, 500 * MS, t - 3 * MS));
        }
        s.handle_timeout(t);
        for e in drain(&mut s) {
            if let SessionEvent::Decided(d) = e {
                lowered |= d.state.lead.lead_ms < LEAD_START_MS;
            }
        }
    }
    assert_eq!(i64::from(s.need_ms()), 20 + 3 + margin_ms);
    assert!(lowered, "the need was said and the lead came down");
    let (_, state) = s.latest().unwrap();
    assert_eq!(
        state.lead.need_of(id(9)).map(|n| i64::from(n.need_ms)),
        Some(20 + 3 + margin_ms)
    );
}

/// With a member we are not linked to, an action waits for the next round's
/// heartbeat (which every peer relays in time) instead of going out at once.
#[test]
fn with_a_link_down_an_action_waits_for_the_next_heartbeat() {
    let mut s = creating(9, Config::default());
    let (t, _) = run(&mut s, 0, 1_000 * MS);
    s.handle_link_up(t, info(4));
    s.handle_link_down(t, id(4)); // a member we lost
    drain(&mut s);
    s.handle_timeout(t + 50 * MS);
    s.vote(Event::Play).unwrap();
    let next_round_ns = (t / (100 * MS) + 1) * 100 * MS;
    assert!(
        s.poll_timeout().is_some_and(|at| at > t + 50 * MS),
        "not due at once"
    );
    let (_, events) = run(&mut s, t + 50 * MS, t + 600 * MS);
    let round = events.iter().find_map(|e| match e {
        SessionEvent::Decided(d) => verdicts_of(d, id(9))
            .find(|(v, _)| v.event == Event::Play)
            .map(|(v, _)| v.round),
        _ => None,
    });
    assert_eq!(round, Some(Round::containing(next_round_ns)));
}

/// A guard longer than the lead plus a round (a device that renders far
/// ahead) still lets the peer vote: rounds are never decided before they
/// end, so it says its need and the lead rises to cover it, and its actions
/// are decided.
#[test]
fn a_long_guard_raises_the_lead_instead_of_silencing_the_peer() {
    let mut s = creating(1, Config::default());
    s.set_decide_guard_ns(300 * MS);
    let (t, _) = run(&mut s, 0, 2_000 * MS);
    assert!(s.latest().unwrap().1.lead.lead_ms >= 305);
    s.vote(Event::Play).unwrap();
    let (_, events) = run(&mut s, t, t + 2_000 * MS);
    let applied = events.iter().any(|e| match e {
        SessionEvent::Decided(d) => {
            verdicts_of(d, id(1)).any(|(v, ver)| v.event == Event::Play && ver == Verdict::Applied)
        }
        _ => false,
    });
    assert!(applied);
}

/// A joiner reads the root's session time through the settled members more
/// senior than it too, each weighed by how well it knows that link: over
/// equally jittery links, a member whose map is 2 ms off the root's (as a
/// member's own estimate can be over such a path) pulls it part of the way
/// there; a member 10 ms off, or synced only a second before us, not at all.
#[test]
fn a_joiner_reads_session_time_through_settled_seniors_too() {
    let root_map = SessionMap {
        anchor_local_ns: 0,
        anchor_session_ns: 20_000 * MS,
        rate: 0.0,
    };
    // Our session time minus the root's after 3 s of samples (every clock
    // reads the same here, so the root's map is the truth).
    let off_root = |shift_ns: i64, seniority: i64| -> i64 {
        let mut s = Session::new(Config::default(), info(7), key(7).clone(), 0, Start::Join);
        s.handle_link_up(0, info(2));
        s.handle_link_up(0, info(3));
        let member_map = SessionMap {
            anchor_session_ns: root_map.anchor_session_ns + shift_ns,
            ..root_map
        };
        let mut lcg = 0x2545_f491_4f6c_dd1d_u64;
        let mut jitter = move || {
            lcg = lcg.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            MS + ((lcg >> 33) % (20 * MS as u64)) as i64
        };
        let mut t = 0;
        while t < 3_000 * MS {
            t += 5 * MS;
            if t % (25 * MS) == 0 {
                for peer in [2, 3] {
                    let (out, back) = (jitter(), jitter());
                    let origin_ns = t - out - back;
                    s.handle_message(
                        t,
                        id(peer),
                        Message::ClockPong(ClockPong {
                            seq: (t / MS) as u32,
                            origin_ns,
                            received_ns: origin_ns + out,
                            sent_ns: origin_ns + out,
                        }),
                    );
                }
            }
            if t % (100 * MS) == 0 {
                for (peer, map, senior) in [(2, root_map, 0), (3, member_map, seniority)] {
                    s.handle_message(t, id(peer), claims(map, senior, t - jitter()));
                }
            }
            s.handle_timeout(t);
            drain(&mut s);
        }
        assert_eq!(s.root(), Some(id(2)));
        s.session_ns_at(t).unwrap() - root_map.session_ns_at(t)
    };
    // Over these links the root's alone is read 0.2 ms off; an agreeing
    // member's independent link halves that.
    let agreeing = off_root(0, 1_000 * MS);
    assert!(
        agreeing.abs() < 300_000,
        "{agreeing} ns off with agreeing maps"
    );
    let pulled = off_root(2 * MS, 1_000 * MS) - agreeing;
    assert!(
        (200_000..1_500_000).contains(&pulled),
        "a settled member 2 ms off moved us {pulled} ns"
    );
    // Left out, for either reason: the root's reading alone, the same both times.
    let ten_off = off_root(10 * MS, 1_000 * MS);
    let unsettled = off_root(2 * MS, 19_500 * MS);
    assert_eq!(ten_off, unsettled);
    assert!(
        ten_off.abs() < 500_000,
        "{ten_off} ns off through the root alone"
    );
    assert_ne!(ten_off, agreeing);
}
