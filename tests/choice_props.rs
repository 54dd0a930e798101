//! Property tests of the choice function: determinism, invariance under any
//! permutation or duplication of a round's votes, and the precedence rules,
//! checked against an independent oracle written from NOTEBOOK.md's rules.

mod strategies;

use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use strategies::*;
use synfony::session::*;

const ROUND: Round = Round(1000);
const APPLY_AT_NS: i64 = 100_300_000_000;

/// A previous state: 3 stems (so votes for stems 3..5 hit unknown channels), any
/// transport, a song of up to 10 minutes.
fn prev_state() -> impl Strategy<Value = SessionState> {
    (
        1i64..600_000_000_000,
        any::<bool>(),
        any::<prop::sample::Index>(),
        90_000_000_000i64..APPLY_AT_NS,
        channel_state(),
        vec(channel_state(), 3),
    )
        .prop_map(
            |(duration_ns, playing, pos, anchor_session_ns, master, channels)| SessionState {
                timeline: Timeline {
                    playing,
                    anchor_position_ns: pos.index(duration_ns as usize) as i64,
                    anchor_session_ns,
                },
                duration_ns,
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

/// The rules, written independently of the implementation: the effective vote of
/// each voter (one distinct, admissible vote in the round), then each dimension.
fn oracle(prev: &SessionState, votes: &[Vote]) -> SessionState {
    let mut by_voter: BTreeMap<PeerId, Vec<Event>> = BTreeMap::new();
    for v in votes.iter().filter(|v| v.round == ROUND) {
        let events = by_voter.entry(v.voter).or_default();
        if !events.contains(&v.event) {
            events.push(v.event);
        }
    }
    let effective: Vec<(PeerId, Event)> = by_voter
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
        .collect();

    let mut next = prev.clone();
    let seek = effective.iter().find_map(|(_, e)| match e {
        Event::Seek { position_ns } => Some((*position_ns).clamp(0, prev.duration_ns)),
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
    next
}

/// Bit-level equality for states (so −0 vs +0 or NaN would not hide).
fn same_bits(a: &SessionState, b: &SessionState) -> bool {
    a == b
        && a.digest() == b.digest()
        && std::iter::once(&a.master)
            .chain(&a.channels)
            .zip(std::iter::once(&b.master).chain(&b.channels))
            .all(|(x, y)| x.gain_db.to_bits() == y.gain_db.to_bits())
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

    /// The result is what the written precedence rules say (independent oracle).
    #[test]
    fn follows_the_precedence_rules(prev in prev_state(), votes in round_votes()) {
        let d = choose(&prev, ROUND, APPLY_AT_NS, &votes);
        let expected = oracle(&prev, &votes);
        prop_assert!(same_bits(&d.state, &expected), "got {:?}\nexpected {:?}", d.state, expected);
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
