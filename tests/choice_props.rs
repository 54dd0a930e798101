//! Property tests of the choice function: determinism, invariance under any
//! permutation or duplication of a round's votes, and the precedence rules,
//! checked against an independent oracle written from NOTEBOOK.md's rules.

mod strategies;

use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::BTreeSet;
use strategies::*;
use synfony::protocol::*;

const ROUND: Round = Round(1000);
const APPLY_AT_NS: i64 = 100_300_000_000;

/// A previous state: a song of 3 stems or one of a few songs (so votes for
/// stems past its last hit unknown channels), any transport, often in the
/// song's last second (so it ends before the round applies), a set list
/// (sometimes full) and songs played before.
fn prev_state() -> impl Strategy<Value = SessionState> {
    let song = prop_oneof![
        2 => (1i64..600_000_000_000).prop_map(|d| SongRef::anonymous(d, 3)),
        1 => Just(SongRef::anonymous(0, 3)),
        1 => (0..=SongRef::MAX_DURATION_NS).prop_map(|d| SongRef::anonymous(d, 3)),
        3 => small_song_ref(),
    ];
    let queue = prop_oneof![
        6 => vec(small_song_ref(), 0..5),
        1 => vec(small_song_ref(), MAX_QUEUE),
    ];
    (
        song,
        any::<bool>(),
        prop_oneof![2 => any::<prop::sample::Index>().prop_map(Some), 1 => Just(None)],
        prop_oneof![4 => 90_000_000_000i64..APPLY_AT_NS, 1 => any::<i64>()],
        channel_state(),
        vec(channel_state(), 5),
        (queue, vec(small_song_ref(), 0..3), recent_lead()),
    )
        .prop_map(
            |(song, playing, pos, anchor_session_ns, master, faders, (queue, played, lead))| {
                let duration_ns = song.duration_ns;
                // No index: the last second of the song, where it ends.
                let anchor_position_ns = match pos {
                    Some(pos) => (pos.index(usize::MAX) as u64 % (duration_ns as u64 + 1)) as i64,
                    None => (duration_ns - 1_000_000_000).max(0),
                };
                SessionState {
                    timeline: Timeline {
                        playing,
                        anchor_position_ns,
                        anchor_session_ns,
                    },
                    song,
                    queue,
                    played,
                    changed_round: Round(ROUND.0 / 2),
                    master,
                    channels: faders[..usize::from(song.channels)].to_vec(),
                    lead,
                    name: "jam".into(),
                    founder: PeerId(7),
                }
            },
        )
}

/// A lead with a few needs said lately, some about to be forgotten.
fn recent_lead() -> impl Strategy<Value = lead::Lead> {
    let said = ROUND.0 - lead::NEED_EXPIRE_ROUNDS - 2..=ROUND.0 - 1;
    (
        lead::LEAD_FLOOR_MS..=lead::LEAD_MAX_MS,
        vec((small_peer_id(), 0..=300u16, said), 0..5),
    )
        .prop_map(|(lead_ms, needs)| {
            let mut needs: Vec<lead::Need> = needs
                .into_iter()
                .map(|(peer, need_ms, r)| lead::Need {
                    peer,
                    need_ms,
                    round: Round(r),
                })
                .collect();
            needs.sort_by_key(|n| n.peer);
            needs.dedup_by_key(|n| n.peer);
            // As a decision leaves it: never below the largest need.
            let mut lead = lead::Lead { lead_ms, needs };
            if let Some(t) = lead.target_ms() {
                lead.lead_ms = lead.lead_ms.max(t);
            }
            lead
        })
}

/// The oracle's lead: forget needs older than the expiry, step down towards
/// the largest (floored) need before the votes; after them, each voter's
/// largest need replaces its old one and a larger target raises the lead.
fn oracle_lead(start: &SessionState, verdicts: &[(Vote, Verdict)]) -> lead::Lead {
    let target = |needs: &[lead::Need]| {
        needs
            .iter()
            .map(|n| n.need_ms.clamp(lead::LEAD_FLOOR_MS, lead::LEAD_MAX_MS))
            .max()
    };
    let mut next = start.lead.clone();
    for (v, verdict) in verdicts {
        if let (Event::Lead { need_ms }, Verdict::Applied) = (v.event, *verdict) {
            let mine = verdicts
                .iter()
                .filter(|(w, x)| w.voter == v.voter && *x == Verdict::Applied)
                .filter_map(|(w, _)| match w.event {
                    Event::Lead { need_ms } => Some(need_ms),
                    _ => None,
                })
                .max()
                .unwrap();
            assert!(mine >= need_ms);
            next.needs.retain(|n| n.peer != v.voter);
            next.needs.push(lead::Need {
                peer: v.voter,
                need_ms: mine,
                round: ROUND,
            });
        }
    }
    next.needs.sort_by_key(|n| n.peer);
    if let Some(t) = target(&next.needs)
        && t > next.lead_ms
    {
        next.lead_ms = t.min(next.lead_ms + lead::LEAD_STEP_UP_MS);
    }
    next
}

fn oracle_age(lead: &mut lead::Lead) {
    lead.needs
        .retain(|n| ROUND.0 - n.round.0 <= lead::NEED_EXPIRE_ROUNDS);
    let target = lead.needs.iter().map(|n| n.need_ms).max();
    if let Some(t) = target.map(|t| t.clamp(lead::LEAD_FLOOR_MS, lead::LEAD_MAX_MS))
        && t < lead.lead_ms
    {
        lead.lead_ms = t.max(lead.lead_ms - lead::LEAD_STEP_DOWN_MS);
    }
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
        1 => small_song_ref().prop_map(Event::Load),
        1 => small_song_ref().prop_map(Event::Queue),
        1 => (0u16..4, small_song_ref()).prop_map(|(index, s)| Event::Unqueue { index, song: s.song }),
        1 => Just(Event::Next),
        1 => Just(Event::Prev),
        1 => (0u16..4, 0u16..4, small_song_ref()).prop_map(|(from, to, s)| Event::Move { from, to, song: s.song }),
        2 => prop::sample::select(vec![0u16, 40, 90, 150, 151, 400, lead::LEAD_MAX_MS]).prop_map(|need_ms| Event::Lead { need_ms }),
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

/// The oracle's own song end: each song that ends by `at_ns` while playing is
/// followed by the set list's head at 0 s from its end; the last stops at its
/// end. Returns the instant of the last change.
fn oracle_advance(s: &mut SessionState, at_ns: i64) -> Option<i64> {
    let mut last = None;
    loop {
        if !s.timeline.playing {
            return last;
        }
        let dur = s.song.duration_ns;
        let end = s
            .timeline
            .anchor_session_ns
            .saturating_add((dur - s.timeline.anchor_position_ns).max(0));
        if end > at_ns {
            return last;
        }
        last = Some(end);
        if s.queue.is_empty() {
            s.timeline = Timeline {
                playing: false,
                anchor_position_ns: dur,
                anchor_session_ns: end,
            };
            return last;
        }
        let next = s.queue.remove(0);
        oracle_switch(s, next, end, true);
    }
}

/// `song` from 0 s at `at_ns`; a new version gets a new mixer, and (with
/// `remember`) the one it replaces is remembered as played.
fn oracle_switch(s: &mut SessionState, song: SongRef, at_ns: i64, remember: bool) {
    if song != s.song {
        if remember {
            s.played.push(s.song);
            if s.played.len() > MAX_PLAYED {
                s.played.remove(0);
            }
        }
        s.song = song;
        s.channels = vec![ChannelState::default(); song.channels as usize];
    }
    s.timeline.anchor_position_ns = 0;
    s.timeline.anchor_session_ns = at_ns;
}

fn unqueued(start: &SessionState, index: u16, song: library::SongId) -> Option<usize> {
    match start.queue.get(index as usize) {
        Some(s) if s.song == song => Some(index as usize),
        _ => start.queue.iter().position(|s| s.song == song),
    }
}

/// The state and every verdict the rules give, written independently of
/// the implementation, from the module doc of `protocol::choice`.
fn oracle(prev: &SessionState, votes: &[Vote]) -> (SessionState, Vec<(Vote, Verdict)>) {
    let mut start = prev.clone();
    let ended_at = oracle_advance(&mut start, APPLY_AT_NS);
    oracle_age(&mut start.lead);
    let song_ended =
        ended_at.is_some_and(|t| t >= ROUND.start_session_ns()) && start.song != prev.song;

    // Admission, per distinct vote.
    let mut distinct: Vec<Vote> = Vec::new();
    for v in votes {
        if !distinct.contains(v) {
            distinct.push(*v);
        }
    }
    let admit = |vote: &Vote| -> Verdict {
        if vote.round != ROUND {
            return Verdict::Rejected(Rejection::WrongRound);
        }
        if vote.event == Event::None {
            return Verdict::Abstained;
        }
        let actions = distinct
            .iter()
            .filter(|v| v.round == ROUND && v.voter == vote.voter)
            .filter(|v| !matches!(v.event, Event::None | Event::Lead { .. }))
            .count();
        if matches!(vote.event, Event::Lead { .. }) {
            return Verdict::Applied; // not an action
        }
        if actions > 1 {
            return Verdict::Rejected(Rejection::Equivocation);
        }
        let stem = |c: Channel| c != Channel::Master;
        match vote.event {
            Event::Seek { .. } if song_ended => Verdict::Rejected(Rejection::SongEnded),
            Event::Volume { channel, .. } | Event::Mute { channel, .. }
                if song_ended && stem(channel) =>
            {
                Verdict::Rejected(Rejection::SongEnded)
            }
            Event::Volume { channel, .. } | Event::Mute { channel, .. }
                if start.channel(channel).is_none() =>
            {
                Verdict::Rejected(Rejection::UnknownChannel)
            }
            Event::Volume { gain_db, .. } if !is_valid_gain(gain_db) => {
                Verdict::Rejected(Rejection::InvalidGain)
            }
            Event::Next if start.queue.is_empty() => Verdict::Rejected(Rejection::EmptyQueue),
            Event::Prev if !start.played.is_empty() && start.queue.len() >= MAX_QUEUE => {
                Verdict::Rejected(Rejection::QueueFull)
            }
            Event::Unqueue { index, song }
            | Event::Move {
                from: index, song, ..
            } if unqueued(&start, index, song).is_none() => Verdict::Rejected(Rejection::NotQueued),
            _ => Verdict::Applied,
        }
    };
    let mut verdicts: Vec<(Vote, Verdict)> = distinct.iter().map(|v| (*v, admit(v))).collect();
    verdicts.sort_by_key(|(v, _)| v.voter);
    // Each voter's one admitted action, by voter id.
    let effective: Vec<(PeerId, Event)> = verdicts
        .iter()
        .filter(|(_, verdict)| *verdict == Verdict::Applied)
        .map(|(v, _)| (v.voter, v.event))
        .collect();
    let mut next = start.clone();
    let set =
        |verdicts: &mut Vec<(Vote, Verdict)>, pred: &dyn Fn(&Event) -> bool, verdict: Verdict| {
            for (v, old) in verdicts.iter_mut() {
                if *old == Verdict::Applied && pred(&v.event) {
                    *old = verdict;
                }
            }
        };

    // Song change: load over next over prev; lowest voter within the kind.
    let change = effective
        .iter()
        .find(|(_, e)| matches!(e, Event::Load(_)))
        .or_else(|| effective.iter().find(|(_, e)| *e == Event::Next))
        .or_else(|| effective.iter().find(|(_, e)| *e == Event::Prev))
        .copied();
    let mut prev_put_back = None;
    if let Some((by, won)) = change {
        set(
            &mut verdicts,
            &|e| matches!(e, Event::Load(_) | Event::Next | Event::Prev) && *e != won,
            Verdict::Overruled { by },
        );
        match won {
            Event::Load(song) => oracle_switch(&mut next, song, APPLY_AT_NS, true),
            Event::Next => {
                let head = start.queue[0];
                oracle_switch(&mut next, head, APPLY_AT_NS, true);
            }
            Event::Prev => match next.played.pop() {
                Some(before) => {
                    prev_put_back = Some(start.song);
                    oracle_switch(&mut next, before, APPLY_AT_NS, false);
                }
                None => oracle_switch(&mut next, start.song, APPLY_AT_NS, false),
            },
            _ => unreachable!(),
        }
        // A song change overrules seeks and stem faders.
        set(
            &mut verdicts,
            &|e| matches!(e, Event::Seek { .. }),
            Verdict::Overruled { by },
        );
        set(
            &mut verdicts,
            &|e| {
                matches!(
                    e,
                    Event::Volume {
                        channel: Channel::Stem(_),
                        ..
                    } | Event::Mute {
                        channel: Channel::Stem(_),
                        ..
                    }
                )
            },
            Verdict::Overruled { by },
        );
    }

    // The set list, against the queue at the round's start.
    let next_won = matches!(change, Some((_, Event::Next)));
    let mut gone = vec![false; start.queue.len()];
    if next_won {
        gone[0] = true;
    }
    for (v, verdict) in verdicts.iter_mut() {
        if let (Event::Unqueue { index, song }, Verdict::Applied) = (v.event, *verdict) {
            let i = unqueued(&start, index, song).unwrap();
            if next_won && i == 0 {
                *verdict = Verdict::Overruled {
                    by: change.unwrap().0,
                };
            } else {
                gone[i] = true;
            }
        }
    }
    let mut queue: Vec<SongRef> = prev_put_back.into_iter().collect();
    queue.extend(
        start
            .queue
            .iter()
            .zip(&gone)
            .filter(|(_, g)| !**g)
            .map(|(s, _)| *s),
    );
    // Moves, in voter order, each on the list the ones before left.
    for (v, verdict) in verdicts.iter_mut() {
        if let (Event::Move { from, to, song }, Verdict::Applied) = (v.event, *verdict) {
            let i = if queue.get(from as usize).is_some_and(|s| s.song == song) {
                Some(from as usize)
            } else {
                queue.iter().position(|s| s.song == song)
            };
            match i {
                Some(i) => {
                    let e = queue.remove(i);
                    let at = (to as usize).min(queue.len());
                    queue.insert(at, e);
                }
                None => *verdict = Verdict::Rejected(Rejection::NotQueued),
            }
        }
    }
    for (v, verdict) in verdicts.iter_mut() {
        if let (Event::Queue(song), Verdict::Applied) = (v.event, *verdict) {
            if queue.len() < MAX_QUEUE {
                queue.push(song);
            } else {
                *verdict = Verdict::Rejected(Rejection::QueueFull);
            }
        }
    }
    next.queue = queue;

    // Seek, then pause over play.
    let live = |verdicts: &Vec<(Vote, Verdict)>| -> Vec<(PeerId, Event)> {
        verdicts
            .iter()
            .filter(|(_, x)| *x == Verdict::Applied)
            .map(|(v, _)| (v.voter, v.event))
            .collect()
    };
    let end = next.song.duration_ns;
    let target = |e: &Event| match *e {
        Event::Seek { position_ns } => Some(position_ns.clamp(0, end)),
        _ => None,
    };
    let now_live = live(&verdicts);
    let seek = now_live
        .iter()
        .find_map(|(by, e)| target(e).map(|t| (*by, t)));
    if let Some((by, t)) = seek {
        set(
            &mut verdicts,
            &|e| target(e).is_some_and(|x| x != t),
            Verdict::Overruled { by },
        );
    }
    let pauser = now_live
        .iter()
        .find(|(_, e)| *e == Event::Pause)
        .map(|(v, _)| *v);
    let player = now_live.iter().any(|(_, e)| *e == Event::Play);
    if let Some(by) = pauser {
        set(
            &mut verdicts,
            &|e| *e == Event::Play,
            Verdict::Overruled { by },
        );
    }
    let was_playing = next.timeline.playing;
    let playing = if pauser.is_some() {
        false
    } else {
        player || was_playing
    };
    let here = next.position_ns_at(APPLY_AT_NS);
    if seek.is_some() || playing != was_playing {
        let position = match seek {
            Some((_, t)) => t,
            None if playing && !was_playing && here >= end => 0,
            None => here,
        };
        next.timeline = Timeline {
            playing,
            anchor_position_ns: position,
            anchor_session_ns: APPLY_AT_NS,
        };
    }

    // The mix, per channel: the quietest gain, mute over unmute.
    let now_live = live(&verdicts);
    let channels: BTreeSet<Channel> = now_live
        .iter()
        .filter_map(|(_, e)| match *e {
            Event::Volume { channel, .. } | Event::Mute { channel, .. } => Some(channel),
            _ => None,
        })
        .collect();
    for ch in channels {
        let gain = |e: &Event| match *e {
            Event::Volume { channel, gain_db } if channel == ch => {
                Some(gain_db.min(MAX_GAIN_DB) + 0.0)
            }
            _ => None,
        };
        let mute = |e: &Event| match *e {
            Event::Mute { channel, muted } if channel == ch => Some(muted),
            _ => None,
        };
        let won_gain = now_live
            .iter()
            .filter_map(|(_, e)| gain(e))
            .reduce(f32::min);
        let won_mute = now_live
            .iter()
            .filter_map(|(_, e)| mute(e))
            .reduce(|a, b| a || b);
        if let Some(g) = won_gain {
            let by = now_live
                .iter()
                .find(|(_, e)| gain(e).map(f32::to_bits) == Some(g.to_bits()))
                .unwrap()
                .0;
            set(
                &mut verdicts,
                &|e| gain(e).is_some_and(|x| x.to_bits() != g.to_bits()),
                Verdict::Overruled { by },
            );
        }
        if let Some(m) = won_mute {
            let by = now_live.iter().find(|(_, e)| mute(e) == Some(m)).unwrap().0;
            set(
                &mut verdicts,
                &|e| mute(e).is_some_and(|x| x != m),
                Verdict::Overruled { by },
            );
        }
        let fader = match ch {
            Channel::Master => &mut next.master,
            Channel::Stem(i) => &mut next.channels[i as usize],
        };
        if let Some(g) = won_gain {
            fader.gain_db = g;
        }
        if let Some(m) = won_mute {
            fader.muted = m;
        }
    }
    next.lead = oracle_lead(&start, &verdicts);
    let mut music = next.clone();
    music.lead = start.lead.clone();
    if music != start {
        next.changed_round = ROUND;
    }
    (next, verdicts)
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
        let (expected, verdicts) = oracle(&prev, &votes);
        prop_assert!(same_bits(&d.state, &expected), "got {:?}\nexpected {:?}", d.state, expected);
        prop_assert_eq!(d.outcomes.len(), verdicts.len());
        for o in &d.outcomes {
            let want = verdicts.iter().find(|(v, _)| *v == o.vote).map(|(_, x)| *x);
            prop_assert_eq!(Some(o.verdict), want, "for {:?}", o.vote);
        }
    }

    /// Total: no state (even one decoding would refuse), time or set of votes
    /// makes `choose` panic, and a valid state stays valid.
    #[test]
    fn total_on_any_input(
        st in (any::<bool>(), any::<i64>(), any::<i64>(), any::<i64>(), vec(channel_state(), 0..4)),
        songs in (any::<u16>(), vec(song_ref(), 0..3), vec(song_ref(), 0..3)),
        apply_at_ns: i64,
        round_no: u64,
        votes in vec((small_peer_id(), contested_event()), 0..12),
    ) {
        let (playing, anchor_position_ns, anchor_session_ns, duration_ns, channels) = st;
        let (song_channels, mut queue, played) = songs;
        // Songs no decision makes, in the queue too.
        queue.push(SongRef { channels: song_channels, duration_ns: duration_ns.min(0), ..SongRef::default() });
        let prev = SessionState {
            timeline: Timeline { playing, anchor_position_ns, anchor_session_ns },
            song: SongRef { duration_ns, channels: song_channels, ..SongRef::default() },
            queue,
            played,
            changed_round: Round(0),
            master: ChannelState::default(),
            channels,
            lead: lead::Lead::default(),
            name: String::new(),
            founder: PeerId(0),
        };
        let votes: Vec<Vote> = votes
            .into_iter()
            .map(|(voter, event)| Vote { voter, round: Round(round_no), event })
            .collect();
        let d = choose(&prev, Round(round_no), apply_at_ns, &votes);
        let valid = |s: &SessionState| {
            s.song.is_valid()
                && s.queue.iter().all(SongRef::is_valid)
                && s.played.iter().all(SongRef::is_valid)
                && s.channels.len() == usize::from(s.song.channels)
                && (0..=s.duration_ns()).contains(&s.timeline.anchor_position_ns)
                && s.queue.len() <= MAX_QUEUE
                && s.played.len() <= MAX_PLAYED
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

    /// A round of only "no event" (or no votes) changes nothing but what
    /// time does: the song ends (and the next starts) as the state says.
    #[test]
    fn no_event_round_changes_nothing(prev in prev_state(), voters in vec(small_peer_id(), 0..12)) {
        let votes: Vec<Vote> = voters.iter().map(|&voter| Vote { voter, round: ROUND, event: Event::None }).collect();
        let d = choose(&prev, ROUND, APPLY_AT_NS, &votes);
        let mut advanced = prev.clone();
        advanced.advance_to(APPLY_AT_NS);
        oracle_age(&mut advanced.lead);
        prop_assert!(same_bits(&d.state, &advanced));
        prop_assert_eq!(d.state.changed_round, prev.changed_round);
    }

    /// A song's end gives the same state whichever round sees it: advancing
    /// to one instant and then a later one is advancing to the later one,
    /// and so is deciding empty rounds on the way.
    #[test]
    fn song_ends_do_not_depend_on_the_round_that_sees_them(
        prev in prev_state(),
        steps in vec(0i64..3_000_000_000, 1..6),
    ) {
        let mut stepwise = prev.clone();
        let mut decided = prev.clone();
        let mut at = APPLY_AT_NS;
        for (k, step) in steps.iter().enumerate() {
            at += step;
            stepwise.advance_to(at);
            let round = Round(ROUND.0 + k as u64);
            stepwise.lead.age(round);
            decided = choose(&decided, round, at, &[]).state;
        }
        let mut once = prev.clone();
        once.advance_to(at);
        once.lead = stepwise.lead.clone(); // the lead ages by rounds, not by time
        prop_assert!(same_bits(&stepwise, &once));
        prop_assert!(same_bits(&decided, &once));
    }

    /// A seek's target always lands inside the song.
    #[test]
    fn seeks_land_inside_the_song(prev in prev_state(), voter in small_peer_id(), position_ns: i64) {
        let d = choose(&prev, ROUND, APPLY_AT_NS, &[Vote { voter, round: ROUND, event: Event::Seek { position_ns } }]);
        prop_assert!((0..=d.state.duration_ns()).contains(&d.state.timeline.anchor_position_ns));
        if d.state.song == prev.song && d.outcomes[0].verdict == Verdict::Applied {
            prop_assert_eq!(d.state.timeline.anchor_position_ns, position_ns.clamp(0, prev.duration_ns()));
        }
    }
}
