//! Property tests of the choice function: determinism, invariance under any
//! permutation or duplication of a round's votes, and the precedence rules,
//! checked against an independent oracle written from NOTEBOOK.md's rules.

mod strategies;

use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use strategies::*;
use synfony::protocol::*;

const ROUND: Round = Round(1000);
const APPLY_AT_NS: i64 = 100_300_000_000;

/// A previous state: 3 stems (so votes for stems 3..5 hit unknown channels), any
/// transport, a song of up to 10 minutes — or of any length, anchored at any time.
fn prev_state() -> impl Strategy<Value = SessionState> {
    (
        prop_oneof![4 => 1i64..600_000_000_000, 1 => Just(0i64), 1 => 0..=i64::MAX],
        any::<bool>(),
        any::<prop::sample::Index>(),
        prop_oneof![4 => 90_000_000_000i64..APPLY_AT_NS, 1 => any::<i64>()],
        channel_state(),
        vec(channel_state(), 3),
    )
        .prop_map(
            |(duration_ns, playing, pos, anchor_session_ns, master, channels)| SessionState {
                timeline: Timeline {
                    playing,
                    anchor_position_ns: (pos.index(usize::MAX) as u64 % (duration_ns as u64 + 1))
                        as i64,
                    anchor_session_ns,
                },
                duration_ns,
                changed_round: Round(ROUND.0 / 2),
                master,
                channels,
            },
        )
}

/// Events that collide: few stems, a few shared targets and gains, NaN and +inf.
fn contested_event() -> impl Strategy<Value = Event> {
    let channel = prop_oneof![Just(Channel::Master), (0u16..5).prop_map(Channel::Stem)];
    let gain = prop_oneof![
        4 => prop::sample::select(vec![-12.0f32, -6.0, 0.0, -0.0, 6.0, 40.0, f32::NEG_INFINITY]),
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        2 => -80.0f32..20.0,
    ];
    let target = prop_oneof![
        prop::sample::select(vec![0i64, 5_000_000_000, 30_000_000_000]),
        any::<i64>(),
    ];
    prop_oneof![
        2 => Just(Event::None),
        2 => Just(Event::Play),
        1 => Just(Event::Pause),
        2 => target.prop_map(|position_ns| Event::Seek { position_ns }),
        3 => (channel.clone(), gain).prop_map(|(channel, gain_db)| Event::Volume { channel, gain_db }),
        1 => (channel, any::<bool>()).prop_map(|(channel, muted)| Event::Mute { channel, muted }),
    ]
}

/// A round from up to 12 voters, mostly for the round being decided, with some
/// peers voting twice (copies and equivocations).
fn round_votes() -> impl Strategy<Value = Vec<Vote>> {
    let round =
        prop_oneof![8 => Just(ROUND), 1 => Just(Round(ROUND.0 - 1)), 1 => Just(Round(ROUND.0 + 1))];
    vec(
        (small_peer_id(), round, contested_event()).prop_map(|(voter, round, event)| Vote {
            voter,
            round,
            event,
        }),
        0..24,
    )
}

fn is_valid_gain(g: f32) -> bool {
    !g.is_nan() && g != f32::INFINITY
}

/// The verdict the rules give `vote`, written independently of the implementation.
fn oracle_verdict(prev: &SessionState, votes: &[Vote], vote: &Vote) -> Verdict {
    if vote.round != ROUND {
        return Verdict::Rejected(Rejection::WrongRound);
    }
    if vote.event == Event::None {
        return Verdict::Abstained; // "no event" is never an equivocation
    }
    let mut mine: Vec<Event> = Vec::new();
    for v in votes
        .iter()
        .filter(|v| v.round == ROUND && v.voter == vote.voter && v.event != Event::None)
    {
        if !mine.contains(&v.event) {
            mine.push(v.event);
        }
    }
    if mine.len() > 1 {
        return Verdict::Rejected(Rejection::Equivocation);
    }
    match vote.event {
        Event::Volume { channel, .. } | Event::Mute { channel, .. }
            if prev.channel(channel).is_none() =>
        {
            return Verdict::Rejected(Rejection::UnknownChannel);
        }
        Event::Volume { gain_db, .. } if !is_valid_gain(gain_db) => {
            return Verdict::Rejected(Rejection::InvalidGain);
        }
        _ => {}
    }
    let effective = effective_votes(prev, votes);
    // The winner of a dimension is the lowest voter whose value equals the outcome.
    let credit = |matches: &dyn Fn(&Event) -> bool| {
        effective
            .iter()
            .find(|(_, e)| matches(e))
            .map(|(v, _)| *v)
            .expect("a winner exists")
    };
    let end = prev.duration_ns.max(0);
    match vote.event {
        Event::None => Verdict::Abstained,
        Event::Pause => Verdict::Applied,
        Event::Play => match effective.iter().find(|(_, e)| *e == Event::Pause) {
            Some((by, _)) => Verdict::Overruled { by: *by },
            None => Verdict::Applied,
        },
        Event::Seek { position_ns } => {
            let target = |e: &Event| match *e {
                Event::Seek { position_ns } => Some(position_ns.clamp(0, end)),
                _ => None,
            };
            let won = effective
                .iter()
                .find_map(|(_, e)| target(e))
                .expect("a seek won");
            if position_ns.clamp(0, end) == won {
                Verdict::Applied
            } else {
                Verdict::Overruled {
                    by: credit(&|e| target(e) == Some(won)),
                }
            }
        }
        Event::Volume { channel, gain_db } => {
            let gain = |e: &Event| match *e {
                Event::Volume {
                    channel: c,
                    gain_db,
                } if c == channel => Some(gain_db.min(MAX_GAIN_DB) + 0.0),
                _ => None,
            };
            let won = effective
                .iter()
                .filter_map(|(_, e)| gain(e))
                .reduce(f32::min)
                .expect("a gain won");
            if (gain_db.min(MAX_GAIN_DB) + 0.0).to_bits() == won.to_bits() {
                Verdict::Applied
            } else {
                Verdict::Overruled {
                    by: credit(&|e| gain(e).map(f32::to_bits) == Some(won.to_bits())),
                }
            }
        }
        Event::Mute { channel, muted } => {
            let mute = |e: &Event| match *e {
                Event::Mute { channel: c, muted } if c == channel => Some(muted),
                _ => None,
            };
            let won = effective.iter().any(|(_, e)| mute(e) == Some(true));
            if muted == won {
                Verdict::Applied
            } else {
                Verdict::Overruled {
                    by: credit(&|e| mute(e) == Some(won)),
                }
            }
        }
    }
}

/// Each voter's one admissible vote in the round, by voter id.
fn effective_votes(prev: &SessionState, votes: &[Vote]) -> Vec<(PeerId, Event)> {
    let mut by_voter: BTreeMap<PeerId, Vec<Event>> = BTreeMap::new();
    for v in votes
        .iter()
        .filter(|v| v.round == ROUND && v.event != Event::None)
    {
        let events = by_voter.entry(v.voter).or_default();
        if !events.contains(&v.event) {
            events.push(v.event);
        }
    }
    by_voter
        .into_iter()
        .filter(|(_, events)| events.len() == 1)
        .map(|(voter, events)| (voter, events[0]))
        .filter(|(_, e)| match *e {
            Event::Volume { channel, gain_db } => {
                prev.channel(channel).is_some() && is_valid_gain(gain_db)
            }
            Event::Mute { channel, .. } => prev.channel(channel).is_some(),
            _ => true,
        })
        .collect()
}

/// The state the rules give, written independently of the implementation: the
/// effective vote of each voter, then each dimension.
fn oracle(prev: &SessionState, votes: &[Vote]) -> SessionState {
    let effective = effective_votes(prev, votes);

    let mut next = prev.clone();
    let seek = effective.iter().find_map(|(_, e)| match e {
        Event::Seek { position_ns } => Some((*position_ns).clamp(0, prev.duration_ns.max(0))),
        _ => None,
    });
    let paused = effective.iter().any(|(_, e)| *e == Event::Pause);
    let played = effective.iter().any(|(_, e)| *e == Event::Play);
    let playing = if paused {
        false
    } else if played {
        true
    } else {
        prev.timeline.playing
    };
    if seek.is_some() || playing != prev.timeline.playing {
        next.timeline = Timeline {
            playing,
            anchor_position_ns: seek.unwrap_or_else(|| prev.position_ns_at(APPLY_AT_NS)),
            anchor_session_ns: APPLY_AT_NS,
        };
    }
    let channels: BTreeSet<Channel> = effective
        .iter()
        .filter_map(|(_, e)| match *e {
            Event::Volume { channel, .. } | Event::Mute { channel, .. } => Some(channel),
            _ => None,
        })
        .collect();
    for ch in channels {
        let gains: Vec<f32> = effective
            .iter()
            .filter_map(|(_, e)| match *e {
                Event::Volume { channel, gain_db } if channel == ch => {
                    Some(gain_db.min(MAX_GAIN_DB) + 0.0)
                }
                _ => None,
            })
            .collect();
        let mutes: Vec<bool> = effective
            .iter()
            .filter_map(|(_, e)| match *e {
                Event::Mute { channel, muted } if channel == ch => Some(muted),
                _ => None,
            })
            .collect();
        let fader = match ch {
            Channel::Master => &mut next.master,
            Channel::Stem(i) => &mut next.channels[i as usize],
        };
        if let Some(g) = gains.iter().copied().reduce(f32::min) {
            fader.gain_db = g;
        }
        if !mutes.is_empty() {
            fader.muted = mutes.contains(&true);
        }
    }
    if next != *prev {
        next.changed_round = ROUND;
    }
    next
}

/// Equal states (bitwise, as `SessionState`'s equality is) with equal digests.
fn same_bits(a: &SessionState, b: &SessionState) -> bool {
    a == b && a.digest() == b.digest()
}

proptest! {
    #![proptest_config(config(4096))]

    /// The decision does not depend on the order in which votes arrived.
    #[test]
    fn invariant_under_permutation(
        prev in prev_state(),
        (votes, shuffled) in round_votes().prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
    ) {
        let a = choose(&prev, ROUND, APPLY_AT_NS, &votes);
        let b = choose(&prev, ROUND, APPLY_AT_NS, &shuffled);
        prop_assert!(same_bits(&a.state, &b.state));
        prop_assert_eq!(a, b);
    }

    /// Deterministic, and a vote delivered several times counts once.
    #[test]
    fn deterministic_and_duplicates_count_once(
        prev in prev_state(),
        votes in round_votes(),
        copies in vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let a = choose(&prev, ROUND, APPLY_AT_NS, &votes);
        prop_assert_eq!(&a, &choose(&prev.clone(), ROUND, APPLY_AT_NS, &votes.clone()));
        if !votes.is_empty() {
            let mut with_copies = votes.clone();
            with_copies.extend(copies.iter().map(|i| votes[i.index(votes.len())]));
            prop_assert_eq!(&a, &choose(&prev, ROUND, APPLY_AT_NS, &with_copies));
        }
    }

    /// A peer that heard a round's votes through relays (which carry no "no
    /// event" votes) decides exactly what a peer that heard them directly
    /// decides: the same state, the same verdict for every action (issue 19:
    /// a voter's "no event" next to an action once made one peer reject the
    /// action as an equivocation and another apply it).
    #[test]
    fn relayed_view_decides_the_same(prev in prev_state(), votes in round_votes()) {
        let direct = choose(&prev, ROUND, APPLY_AT_NS, &votes);
        let relayed: Vec<Vote> = votes.iter().copied().filter(|v| v.event != Event::None).collect();
        let via_relay = choose(&prev, ROUND, APPLY_AT_NS, &relayed);
        prop_assert!(same_bits(&direct.state, &via_relay.state));
        let actions = |d: &synfony::protocol::Decision| -> Vec<_> {
            d.outcomes.iter().filter(|o| o.vote.event != Event::None).cloned().collect()
        };
        prop_assert_eq!(actions(&direct), actions(&via_relay));
    }

    /// The state and every verdict (who won, who overruled whom) are what the
    /// written precedence rules say (independent oracle).
    #[test]
    fn follows_the_precedence_rules(prev in prev_state(), votes in round_votes()) {
        let d = choose(&prev, ROUND, APPLY_AT_NS, &votes);
        let expected = oracle(&prev, &votes);
        prop_assert!(same_bits(&d.state, &expected), "got {:?}\nexpected {:?}", d.state, expected);
        for o in &d.outcomes {
            prop_assert_eq!(o.verdict, oracle_verdict(&prev, &votes, &o.vote), "for {:?}", o.vote);
        }
    }

    /// Total: no state (even one decoding would refuse), time or set of votes
    /// makes `choose` panic, and a valid state stays valid.
    #[test]
    fn total_on_any_input(
        st in (any::<bool>(), any::<i64>(), any::<i64>(), any::<i64>(), vec(channel_state(), 0..4)),
        apply_at_ns: i64,
        round_no: u64,
        votes in vec((small_peer_id(), contested_event()), 0..12),
    ) {
        let (playing, anchor_position_ns, anchor_session_ns, duration_ns, channels) = st;
        let prev = SessionState {
            timeline: Timeline { playing, anchor_position_ns, anchor_session_ns },
            duration_ns,
            changed_round: Round(0),
            master: ChannelState::default(),
            channels,
        };
        let votes: Vec<Vote> = votes
            .into_iter()
            .map(|(voter, event)| Vote { voter, round: Round(round_no), event })
            .collect();
        let d = choose(&prev, Round(round_no), apply_at_ns, &votes);
        let valid = |s: &SessionState| {
            s.duration_ns >= 0 && (0..=s.duration_ns).contains(&s.timeline.anchor_position_ns)
        };
        if valid(&prev) {
            prop_assert!(valid(&d.state), "{:?}", d.state);
        }
    }

    /// No vote is silently lost: every distinct vote gets one verdict, and a vote
    /// that did not count says who overruled it or why it was rejected.
    #[test]
    fn every_vote_gets_a_verdict(prev in prev_state(), votes in round_votes()) {
        let d = choose(&prev, ROUND, APPLY_AT_NS, &votes);
        let mut distinct: Vec<Vote> = Vec::new();
        for v in &votes {
            if !distinct.contains(v) {
                distinct.push(*v);
            }
        }
        prop_assert_eq!(d.outcomes.len(), distinct.len());
        for o in &d.outcomes {
            prop_assert!(distinct.contains(&o.vote));
            match o.verdict {
                Verdict::Abstained => prop_assert_eq!(o.vote.event, Event::None),
                Verdict::Overruled { by } => {
                    // The winner's vote was applied.
                    prop_assert!(d.outcomes.iter().any(|w| w.vote.voter == by && w.verdict == Verdict::Applied));
                }
                Verdict::Rejected(Rejection::WrongRound) => prop_assert_ne!(o.vote.round, ROUND),
                Verdict::Applied | Verdict::Rejected(_) => prop_assert_eq!(o.vote.round, ROUND),
            }
        }
    }

    /// A round of only "no event" (or no votes) changes nothing.
    #[test]
    fn no_event_round_changes_nothing(prev in prev_state(), voters in vec(small_peer_id(), 0..12)) {
        let votes: Vec<Vote> = voters.iter().map(|&voter| Vote { voter, round: ROUND, event: Event::None }).collect();
        let d = choose(&prev, ROUND, APPLY_AT_NS, &votes);
        prop_assert!(same_bits(&d.state, &prev));
    }

    /// A seek's target always lands inside the song.
    #[test]
    fn seeks_land_inside_the_song(prev in prev_state(), voter in small_peer_id(), position_ns: i64) {
        let d = choose(&prev, ROUND, APPLY_AT_NS, &[Vote { voter, round: ROUND, event: Event::Seek { position_ns } }]);
        prop_assert!((0..=prev.duration_ns).contains(&d.state.timeline.anchor_position_ns));
        prop_assert_eq!(d.state.timeline.anchor_position_ns, position_ns.clamp(0, prev.duration_ns));
    }
}
