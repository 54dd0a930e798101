//! The choice function: all votes of one round in, the next session state out.
//!
//! It is pure, total and deterministic: no clock, no randomness, no I/O, no
//! dependence on the order of the votes, and no input makes it panic (not even a
//! hand-built state with a negative duration, which decoding would refuse). Every peer
//! that runs it over the same set of votes gets the same [`Decision`], bit for bit.
//!
//! # Precedence
//!
//! It is not majority rule: one musician's "stop" must not need a quorum. The
//! rules, applied in this order (NOTEBOOK.md gives the reasons):
//!
//! 0. **Song end.** Before any vote, the previous state is advanced to the
//!    round's apply instant ([`SessionState::advance_to`]): a song that ended
//!    while playing is followed, from its end instant, by the set list's next
//!    song at 0 s (the last one stops at its end). No vote is needed, so every
//!    peer computes the same instant; the engine is told the same transition
//!    ahead of it. Every rule below reads this advanced state.
//! 1. **Admission.** Votes for another round are rejected. Copies of the same vote
//!    count once (relays deliver a vote many times). A voter with two *different*
//!    actions in one round has all of them rejected: a peer gets one vote per
//!    round, and an equivocating peer must not choose which of its votes counts.
//!    "No event" is not an action and never makes a voter an equivocator: peers
//!    do not relay it, so a rule that counted it would judge the same voter
//!    differently on a peer that heard it directly and on one that heard only a
//!    relay (NOTEBOOK.md, issue 19). A vote that names the old song's channels
//!    or position (a seek, a stem's fader) in a round where the song just ended
//!    is rejected (`SongEnded`); `next` with an empty set list, `unqueue` of an
//!    entry that is not there, and `prev` when the set list is full are
//!    rejected too.
//! 2. **Song change: load over next over prev.** If any was cast, the one of
//!    the highest kind wins, and among `load`s the lowest voter's song; the
//!    others are overruled. The new song starts at 0 s at the apply instant,
//!    playing or paused as before, with a new mixer (its stems at unity; the
//!    master stays). `next` takes the set list's head; `prev` puts the current
//!    song back at the head of the set list and plays the one before it (with
//!    none before, it restarts the current song); `load` leaves the set list
//!    as it is. A `load` of the current version restarts it, mixer kept.
//! 3. **Set list.** Every admitted `unqueue` applies (to the set list as it was
//!    at the round's start: entry `index` if it is the named song, else the
//!    first entry that is; one that `next` consumed is overruled by it), then
//!    every `move`, in voter order, each on the list the ones before left
//!    (entry `from` if it is the named song, else the first that is, to
//!    position `to`, clamped; a song no longer there is rejected,
//!    `NotQueued`), then every `queue`, in voter order, up to [`MAX_QUEUE`]
//!    (the rest are rejected, `QueueFull`).
//! 4. **Position (seek).** Seek targets are clamped into `[0, duration]`. If any
//!    seek was cast, the playhead moves to the (clamped) target of the seek with
//!    the lowest voter id. Seeks to another target are overruled by it. A song
//!    change overrules every seek (its target meant the old song).
//! 5. **Transport (pause over play).** Any pause stops playback; otherwise any play
//!    starts it (from 0 s if the song is paused at its end); otherwise it stays
//!    as it was. Position and transport are orthogonal: a seek and a pause in
//!    one round give "paused at the target".
//! 6. **Mix, per channel, independently** (the master and each stem): the quietest
//!    requested gain wins (lower dB; `-inf` is silence; louder than
//!    [`MAX_GAIN_DB`] is clamped to it), and mute wins over unmute. Votes for a
//!    channel the session lacks, or with a NaN or `+inf` gain, are rejected. A
//!    song change overrules every stem's vote (it named the old song's
//!    channels); the master's apply.
//! 7. **Ties** (equal targets or gains from several voters) are credited to the
//!    lowest voter id; voters who asked for exactly the winning value are
//!    `Applied` too.
//! 8. **Lead** ([`super::lead`]). Before the votes (like a song's end), needs
//!    not said for [`NEED_EXPIRE_ROUNDS`](super::lead::NEED_EXPIRE_ROUNDS) are
//!    forgotten and the lead steps down towards the largest need. Every `lead`
//!    vote applies: it is not an action, so it never makes its voter an
//!    equivocator and may share a round with the voter's action; of one
//!    voter's needs in a round the largest counts. A larger need raises the
//!    lead at once (by 200 ms a round at most). With
//!    [`MAX_NEEDS`](super::lead::MAX_NEEDS) needs held, a new voter's need
//!    replaces the smallest if it is larger, and is rejected otherwise
//!    (`TooManyNeeds`).
//!
//! A round of only "no event" (or no votes at all) returns the previous state
//! advanced to its apply instant. A round whose votes change what plays (not
//! only the lead) stamps the new state's `changed_round` with its own round
//! number (a song end alone does not: nobody decided it).

use super::state::{
    Channel, Event, MAX_GAIN_DB, MAX_QUEUE, PeerId, Round, SessionState, SongRef, Vote,
};

/// The result of one round: the state to switch to at `apply_at_session_ns`, and
/// what became of every vote, so that each voter learns whether it counted.
#[derive(Clone, PartialEq, Debug)]
pub struct Decision {
    pub round: Round,
    pub apply_at_session_ns: i64,
    pub state: SessionState,
    /// One entry per distinct vote received, in canonical order (by voter, then
    /// round, then event).
    pub outcomes: Vec<VoteOutcome>,
}

/// What the choice function did with one vote.
#[derive(Clone, PartialEq, Debug)]
pub struct VoteOutcome {
    pub vote: Vote,
    pub verdict: Verdict,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// The state now reflects what the vote asked for.
    Applied,
    /// "No event": nothing was asked.
    Abstained,
    /// A valid vote that lost to another voter's vote under the precedence rules.
    Overruled { by: PeerId },
    /// The vote could not be applied at all.
    Rejected(Rejection),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Rejection {
    /// Cast for a different round than the one being decided.
    WrongRound,
    /// The voter cast more than one different vote in this round.
    Equivocation,
    /// A volume or mute vote for a stem the session does not have.
    UnknownChannel,
    /// A volume vote whose gain is NaN or `+inf`.
    InvalidGain,
    /// A seek or a stem's fader for a song that ended before the round applied.
    SongEnded,
    /// `next` with nothing in the set list.
    EmptyQueue,
    /// `unqueue` of a song that is not in the set list.
    NotQueued,
    /// `queue` (or `prev`, which puts the current song back) past
    /// [`MAX_QUEUE`] songs.
    QueueFull,
    /// A song with more stems than a session has, or a length out of range
    /// (decoding refuses it; a state built by hand may not).
    InvalidSong,
    /// A `lead` need from a new voter when [`MAX_NEEDS`](super::lead::MAX_NEEDS)
    /// peers have theirs, none smaller.
    TooManyNeeds,
}

/// Decides round `round`: the next state after `prev`, given every vote received
/// for it (in any order, duplicates allowed), applied at `apply_at_session_ns`.
pub fn choose(
    prev: &SessionState,
    round: Round,
    apply_at_session_ns: i64,
    votes: &[Vote],
) -> Decision {
    let mut sorted: Vec<Vote> = votes.to_vec();
    sorted.sort_by_key(Vote::canonical_key);
    sorted.dedup();

    let mut start = prev.clone();
    // Votes cast for this round while the old song still played name it.
    let song_ended = (start.advance_to(apply_at_session_ns))
        .is_some_and(|at_ns| at_ns >= round.start_session_ns())
        && start.song != prev.song;
    start.lead.age(round);
    let mut outcomes: Vec<VoteOutcome> = sorted
        .iter()
        .map(|&vote| VoteOutcome {
            vote,
            verdict: admit(&vote, round, &start, song_ended),
        })
        .collect();
    reject_equivocators(&mut outcomes);

    let mut state = start.clone();
    let changed_by = resolve_song(&mut state, apply_at_session_ns, &mut outcomes);
    resolve_set_list(&start, &mut state, changed_by, &mut outcomes);
    resolve_transport(&mut state, apply_at_session_ns, changed_by, &mut outcomes);
    resolve_mix(&mut state, changed_by, &mut outcomes);
    resolve_lead(&mut state, round, &mut outcomes);
    // A need said again changes only the lead: that is no change a repair
    // should rank (two peers that differ in a user's action must not tie
    // because each also counted a need).
    if !state.plays_as(&start) {
        state.changed_round = round;
    }

    Decision {
        round,
        apply_at_session_ns,
        state,
        outcomes,
    }
}

/// The verdict a vote gets on its own: `Applied` stands for "admitted, still in
/// the running" until the resolution steps overrule it.
fn admit(vote: &Vote, round: Round, prev: &SessionState, song_ended: bool) -> Verdict {
    if vote.round != round {
        return Verdict::Rejected(Rejection::WrongRound);
    }
    let names_old_song = match vote.event {
        Event::Seek { .. } => true,
        Event::Volume { channel, .. } | Event::Mute { channel, .. } => channel != Channel::Master,
        _ => false,
    };
    if song_ended && names_old_song {
        return Verdict::Rejected(Rejection::SongEnded);
    }
    match vote.event {
        Event::None => Verdict::Abstained,
        Event::Play | Event::Pause | Event::Seek { .. } | Event::Lead { .. } => Verdict::Applied,
        Event::Load(song) | Event::Queue(song) if !song.is_valid() => {
            Verdict::Rejected(Rejection::InvalidSong)
        }
        Event::Load(_) | Event::Queue(_) => Verdict::Applied,
        Event::Next if prev.queue.is_empty() => Verdict::Rejected(Rejection::EmptyQueue),
        Event::Next => Verdict::Applied,
        Event::Prev if !prev.played.is_empty() && prev.queue.len() >= MAX_QUEUE => {
            Verdict::Rejected(Rejection::QueueFull)
        }
        Event::Prev => Verdict::Applied,
        Event::Unqueue { index, song }
        | Event::Move {
            from: index, song, ..
        } => match unqueued_index(prev, index, song) {
            Some(_) => Verdict::Applied,
            None => Verdict::Rejected(Rejection::NotQueued),
        },
        Event::Volume { channel, gain_db } => {
            if prev.channel(channel).is_none() {
                Verdict::Rejected(Rejection::UnknownChannel)
            } else if gain_db.is_nan() || gain_db == f32::INFINITY {
                Verdict::Rejected(Rejection::InvalidGain)
            } else {
                Verdict::Applied
            }
        }
        Event::Mute { channel, .. } => match prev.channel(channel) {
            None => Verdict::Rejected(Rejection::UnknownChannel),
            Some(_) => Verdict::Applied,
        },
    }
}

/// Outcomes are sorted by voter, so one voter's votes for the round are adjacent.
/// Only actions count: "no event" is never relayed, so it must not decide, and
/// a `lead` need is not an action.
fn reject_equivocators(outcomes: &mut [VoteOutcome]) {
    let in_round = |o: &VoteOutcome| {
        o.verdict != Verdict::Rejected(Rejection::WrongRound)
            && !matches!(o.vote.event, Event::None | Event::Lead { .. })
    };
    let mut i = 0;
    while i < outcomes.len() {
        let voter = outcomes[i].vote.voter;
        let end = i + outcomes[i..]
            .iter()
            .take_while(|o| o.vote.voter == voter)
            .count();
        if outcomes[i..end].iter().filter(|o| in_round(o)).count() > 1 {
            for o in outcomes[i..end].iter_mut().filter(|o| in_round(o)) {
                o.verdict = Verdict::Rejected(Rejection::Equivocation);
            }
        }
        i = end;
    }
}

fn live(o: &VoteOutcome) -> bool {
    o.verdict == Verdict::Applied
}

/// The entry of the set list an `unqueue {index, song}` removes: entry
/// `index` if it is `song` (the common case), else the first that is (the
/// list moved since the voter saw it).
fn unqueued_index(
    state: &SessionState,
    index: u16,
    song: crate::protocol::library::SongId,
) -> Option<usize> {
    let index = usize::from(index);
    if state.queue.get(index).is_some_and(|s| s.song == song) {
        return Some(index);
    }
    state.queue.iter().position(|s| s.song == song)
}

/// Rule 2: load over next over prev. Returns the winner, if the song changed.
fn resolve_song(
    state: &mut SessionState,
    at_ns: i64,
    outcomes: &mut [VoteOutcome],
) -> Option<PeerId> {
    // Outcomes are sorted by voter: the first live vote of a kind is the
    // lowest voter's.
    let first = |kind: fn(&Event) -> bool| {
        outcomes
            .iter()
            .find(|o| live(o) && kind(&o.vote.event))
            .map(|o| (o.vote.voter, o.vote.event))
    };
    let (winner, event) = first(|e| matches!(e, Event::Load(_)))
        .or_else(|| first(|e| matches!(e, Event::Next)))
        .or_else(|| first(|e| matches!(e, Event::Prev)))?;
    for o in outcomes.iter_mut().filter(|o| live(o)) {
        if o.vote.event.changes_song() && o.vote.event != event {
            o.verdict = Verdict::Overruled { by: winner };
        }
    }
    match event {
        Event::Load(song) => state.switch_to(song, at_ns),
        Event::Next => {
            let next = state.queue.remove(0);
            state.switch_to(next, at_ns);
        }
        Event::Prev => match state.played.pop() {
            Some(before) => {
                // The current song goes back to the head of the set list.
                state.queue.insert(0, state.song);
                state.start(before, at_ns);
            }
            None => state.start(state.song, at_ns),
        },
        _ => {}
    }
    Some(winner)
}

/// Rule 3: the set list's edits. `start` is the state at the round's start
/// (advanced), whose indices the votes name; `state` has had its song change.
fn resolve_set_list(
    start: &SessionState,
    state: &mut SessionState,
    song_changed_by: Option<PeerId>,
    outcomes: &mut [VoteOutcome],
) {
    let next_won = song_changed_by.is_some()
        && outcomes
            .iter()
            .any(|o| live(o) && matches!(o.vote.event, Event::Next));
    let prev_won = song_changed_by.is_some()
        && !next_won
        && outcomes
            .iter()
            .any(|o| live(o) && matches!(o.vote.event, Event::Prev))
        && !start.played.is_empty();
    // Which entries of `start.queue` go.
    let mut removed = vec![false; start.queue.len()];
    if next_won {
        removed[0] = true;
    }
    for o in outcomes.iter_mut().filter(|o| live(o)) {
        if let Event::Unqueue { index, song } = o.vote.event
            && let Some(i) = unqueued_index(start, index, song)
        {
            if next_won && i == 0 {
                if let Some(by) = song_changed_by {
                    o.verdict = Verdict::Overruled { by };
                }
            } else {
                removed[i] = true;
            }
        }
    }
    let mut queue: Vec<SongRef> = Vec::with_capacity(MAX_QUEUE);
    if prev_won {
        // resolve_song put the song it left at the head.
        queue.push(state.queue[0]);
    }
    queue.extend(
        (start.queue.iter().zip(&removed))
            .filter(|(_, gone)| !**gone)
            .map(|(s, _)| *s),
    );
    for o in outcomes.iter_mut().filter(|o| live(o)) {
        if let Event::Move { from, to, song } = o.vote.event {
            let at = usize::from(from);
            let found = match queue.get(at) {
                Some(s) if s.song == song => Some(at),
                _ => queue.iter().position(|s| s.song == song),
            };
            match found {
                Some(i) => {
                    let entry = queue.remove(i);
                    queue.insert(usize::from(to).min(queue.len()), entry);
                }
                None => o.verdict = Verdict::Rejected(Rejection::NotQueued),
            }
        }
    }
    for o in outcomes.iter_mut().filter(|o| live(o)) {
        if let Event::Queue(song) = o.vote.event {
            if queue.len() < MAX_QUEUE {
                queue.push(song);
            } else {
                o.verdict = Verdict::Rejected(Rejection::QueueFull);
            }
        }
    }
    state.queue = queue;
}

/// Rules 4 and 5: seek, then pause over play.
fn resolve_transport(
    state: &mut SessionState,
    at_ns: i64,
    song_changed_by: Option<PeerId>,
    outcomes: &mut [VoteOutcome],
) {
    let seek_target = |e: &Event| match *e {
        Event::Seek { position_ns } => Some(position_ns),
        _ => None,
    };
    if let Some(by) = song_changed_by {
        for o in outcomes.iter_mut().filter(|o| live(o)) {
            if seek_target(&o.vote.event).is_some() {
                o.verdict = Verdict::Overruled { by };
            }
        }
    }
    let end_ns = state.duration_ns();
    let clamped_target = |e: &Event| seek_target(e).map(|t| t.clamp(0, end_ns));
    // Outcomes are sorted by voter: the first live seek is the lowest voter's.
    let seek = outcomes
        .iter()
        .filter(|o| live(o))
        .find_map(|o| clamped_target(&o.vote.event).map(|t| (o.vote.voter, t)));
    let pauser = first_live_voter(outcomes, |e| matches!(e, Event::Pause));
    let player = first_live_voter(outcomes, |e| matches!(e, Event::Play));

    if let Some((winner, target)) = seek {
        for o in outcomes.iter_mut().filter(|o| live(o)) {
            if let Some(t) = clamped_target(&o.vote.event)
                && t != target
            {
                o.verdict = Verdict::Overruled { by: winner };
            }
        }
    }
    if let Some(pauser) = pauser {
        for o in outcomes.iter_mut().filter(|o| live(o)) {
            if matches!(o.vote.event, Event::Play) {
                o.verdict = Verdict::Overruled { by: pauser };
            }
        }
    }

    let playing = match (pauser, player) {
        (Some(_), _) => false,
        (None, Some(_)) => true,
        (None, None) => state.timeline.playing,
    };
    let position_ns = match seek {
        Some((_, target)) => target,
        // Play at the end of a song plays it again.
        None if playing && !state.timeline.playing && state.position_ns_at(at_ns) >= end_ns => 0,
        None => state.position_ns_at(at_ns),
    };
    if seek.is_some() || playing != state.timeline.playing {
        state.timeline.playing = playing;
        state.timeline.anchor_position_ns = position_ns;
        state.timeline.anchor_session_ns = at_ns;
    }
}

fn first_live_voter(outcomes: &[VoteOutcome], pred: impl Fn(&Event) -> bool) -> Option<PeerId> {
    outcomes
        .iter()
        .find(|o| live(o) && pred(&o.vote.event))
        .map(|o| o.vote.voter)
}

/// Rule 8: every admitted need is recorded (the largest of a voter's in one
/// round), then the lead rises to the largest need if that is higher.
fn resolve_lead(state: &mut SessionState, round: Round, outcomes: &mut [VoteOutcome]) {
    for o in outcomes.iter_mut().filter(|o| live(o)) {
        if let Event::Lead { need_ms } = o.vote.event
            && !state.lead.record(o.vote.voter, need_ms, round)
        {
            o.verdict = Verdict::Rejected(Rejection::TooManyNeeds);
        }
    }
    state.lead.raise();
}

/// Rule 6: per channel, the quietest gain and mute-over-unmute.
fn resolve_mix(
    state: &mut SessionState,
    song_changed_by: Option<PeerId>,
    outcomes: &mut [VoteOutcome],
) {
    if let Some(by) = song_changed_by {
        for o in outcomes.iter_mut().filter(|o| live(o)) {
            if let Event::Volume { channel, .. } | Event::Mute { channel, .. } = o.vote.event
                && channel != Channel::Master
            {
                o.verdict = Verdict::Overruled { by };
            }
        }
    }
    let mut channels: Vec<Channel> = outcomes
        .iter()
        .filter(|o| live(o))
        .filter_map(|o| match o.vote.event {
            Event::Volume { channel, .. } | Event::Mute { channel, .. } => Some(channel),
            _ => None,
        })
        .collect();
    channels.sort();
    channels.dedup();

    for channel in channels {
        let gain_of = |e: &Event| match *e {
            Event::Volume {
                channel: c,
                gain_db,
            } if c == channel => Some(normalize_gain(gain_db)),
            _ => None,
        };
        let mute_of = |e: &Event| match *e {
            Event::Mute { channel: c, muted } if c == channel => Some(muted),
            _ => None,
        };

        // The quietest gain; among equal gains the first (lowest) voter.
        let gain = outcomes
            .iter()
            .filter(|o| live(o))
            .filter_map(|o| gain_of(&o.vote.event).map(|g| (g, o.vote.voter)))
            .reduce(|best, cand| if cand.0 < best.0 { cand } else { best });
        // Mute wins over unmute; otherwise the lowest voter's unmute.
        let mute = outcomes
            .iter()
            .filter(|o| live(o))
            .filter_map(|o| mute_of(&o.vote.event).map(|m| (m, o.vote.voter)))
            .reduce(|best, cand| if cand.0 && !best.0 { cand } else { best });

        for o in outcomes.iter_mut().filter(|o| live(o)) {
            if let (Some(g), Some((won, by))) = (gain_of(&o.vote.event), gain)
                && g != won
            {
                o.verdict = Verdict::Overruled { by };
            }
            if let (Some(m), Some((won, by))) = (mute_of(&o.vote.event), mute)
                && m != won
            {
                o.verdict = Verdict::Overruled { by };
            }
        }
        if let Some(fader) = state.channel_mut(channel) {
            if let Some((gain_db, _)) = gain {
                fader.gain_db = gain_db;
            }
            if let Some((muted, _)) = mute {
                fader.muted = muted;
            }
        }
    }
}

/// Clamps a (non-NaN) gain to at most [`MAX_GAIN_DB`] and folds −0 into +0, so
/// that equal gains are equal bits and compare the same way on every peer.
fn normalize_gain(gain_db: f32) -> f32 {
    gain_db.min(MAX_GAIN_DB) + 0.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::state::{ChannelState, Timeline};

    const R: Round = Round(50);
    const AT: i64 = 5_300_000_000;
    const SEC: i64 = 1_000_000_000;

    fn song() -> SessionState {
        SessionState::new(180 * SEC, 2)
    }

    fn playing_from(position_ns: i64, since_ns: i64) -> SessionState {
        let mut s = song();
        s.timeline = Timeline {
            playing: true,
            anchor_position_ns: position_ns,
            anchor_session_ns: since_ns,
        };
        s
    }

    fn v(voter: u64, event: Event) -> Vote {
        Vote {
            voter: PeerId(voter),
            round: R,
            event,
        }
    }

    fn seek(secs: i64) -> Event {
        Event::Seek {
            position_ns: secs * SEC,
        }
    }

    fn vol(channel: Channel, gain_db: f32) -> Event {
        Event::Volume { channel, gain_db }
    }

    /// Runs one round and checks the resulting timeline and verdicts (by voter).
    #[track_caller]
    fn check(prev: SessionState, votes: &[Vote], timeline: Timeline, verdicts: &[(u64, Verdict)]) {
        let d = choose(&prev, R, AT, votes);
        assert_eq!(d.state.timeline, timeline);
        let got: Vec<(u64, Verdict)> = d
            .outcomes
            .iter()
            .map(|o| (o.vote.voter.0, o.verdict))
            .collect();
        assert_eq!(got, verdicts);
    }

    fn paused_at(position_ns: i64) -> Timeline {
        Timeline {
            playing: false,
            anchor_position_ns: position_ns,
            anchor_session_ns: AT,
        }
    }

    /// Pause while playing freezes the playhead where it is at the apply instant.
    #[test]
    fn pause_freezes_the_playhead_at_the_apply_instant() {
        let prev = playing_from(10 * SEC, AT - 2 * SEC);
        check(
            prev,
            &[v(1, Event::Pause)],
            paused_at(12 * SEC),
            &[(1, Verdict::Applied)],
        );
    }

    /// Pause beats play cast in the same round.
    #[test]
    fn pause_beats_play() {
        let prev = playing_from(0, AT);
        check(
            prev,
            &[v(7, Event::Play), v(3, Event::Pause)],
            paused_at(0),
            &[
                (3, Verdict::Applied),
                (7, Verdict::Overruled { by: PeerId(3) }),
            ],
        );
    }

    /// A seek and a pause in one round: paused at the seek target.
    #[test]
    fn seek_and_pause_compose() {
        check(
            playing_from(0, 0),
            &[v(2, Event::Pause), v(9, seek(30))],
            paused_at(30 * SEC),
            &[(2, Verdict::Applied), (9, Verdict::Applied)],
        );
    }

    /// Two seeks: the lowest voter id wins, every time, whatever the arrival order.
    #[test]
    fn lowest_voter_wins_between_seeks() {
        let expected = Timeline {
            playing: false,
            anchor_position_ns: 40 * SEC,
            anchor_session_ns: AT,
        };
        let verdicts = [
            (4, Verdict::Applied),
            (5, Verdict::Overruled { by: PeerId(4) }),
        ];
        check(
            song(),
            &[v(5, seek(90)), v(4, seek(40))],
            expected,
            &verdicts,
        );
        check(
            song(),
            &[v(4, seek(40)), v(5, seek(90))],
            expected,
            &verdicts,
        );
    }

    /// Seeks past either end land on the end.
    #[test]
    fn seeks_are_clamped_into_the_song() {
        check(
            song(),
            &[v(1, seek(-3))],
            paused_at(0),
            &[(1, Verdict::Applied)],
        );
        check(
            song(),
            &[v(1, seek(999))],
            paused_at(180 * SEC),
            &[(1, Verdict::Applied)],
        );
    }

    /// Play starts from where the paused playhead stands.
    #[test]
    fn play_runs_from_the_current_position() {
        let mut prev = song();
        prev.timeline.anchor_position_ns = 20 * SEC;
        let expected = Timeline {
            playing: true,
            anchor_position_ns: 20 * SEC,
            anchor_session_ns: AT,
        };
        check(
            prev,
            &[v(1, Event::Play)],
            expected,
            &[(1, Verdict::Applied)],
        );
    }

    /// Volume: the quietest gain wins per channel; channels are independent; louder
    /// than the maximum is clamped; −∞ is allowed; NaN and unknown stems are rejected.
    #[test]
    fn mix_votes_resolve_per_channel() {
        let votes = [
            v(1, vol(Channel::Stem(0), -6.0)),
            v(2, vol(Channel::Stem(0), -3.0)),
            v(3, vol(Channel::Stem(1), 40.0)),
            v(4, vol(Channel::Master, f32::NEG_INFINITY)),
            v(5, vol(Channel::Stem(2), -1.0)),
            v(6, vol(Channel::Stem(0), f32::NAN)),
            v(
                7,
                Event::Mute {
                    channel: Channel::Stem(1),
                    muted: false,
                },
            ),
            v(
                8,
                Event::Mute {
                    channel: Channel::Stem(1),
                    muted: true,
                },
            ),
        ];
        let d = choose(&song(), R, AT, &votes);
        assert_eq!(
            d.state.channels[0],
            ChannelState {
                gain_db: -6.0,
                muted: false
            }
        );
        assert_eq!(
            d.state.channels[1],
            ChannelState {
                gain_db: MAX_GAIN_DB,
                muted: true
            }
        );
        assert_eq!(d.state.master.gain_db, f32::NEG_INFINITY);
        assert_eq!(
            d.state.timeline,
            song().timeline,
            "mix votes leave the transport alone"
        );
        let verdicts: Vec<Verdict> = d.outcomes.iter().map(|o| o.verdict).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Applied,
                Verdict::Overruled { by: PeerId(1) },
                Verdict::Applied,
                Verdict::Applied,
                Verdict::Rejected(Rejection::UnknownChannel),
                Verdict::Rejected(Rejection::InvalidGain),
                Verdict::Overruled { by: PeerId(8) },
                Verdict::Applied,
            ]
        );
    }

    /// A peer that casts two different votes in a round has neither counted;
    /// a vote for another round is rejected; copies of one vote count once.
    #[test]
    fn admission_rules() {
        let votes = [
            v(1, Event::Pause),
            v(1, Event::Play),
            Vote {
                voter: PeerId(2),
                round: Round(49),
                event: seek(10),
            },
            v(3, Event::Play),
            v(3, Event::Play),
        ];
        let expected = Timeline {
            playing: true,
            anchor_position_ns: 0,
            anchor_session_ns: AT,
        };
        check(
            song(),
            &votes,
            expected,
            &[
                (1, Verdict::Rejected(Rejection::Equivocation)),
                (1, Verdict::Rejected(Rejection::Equivocation)),
                (2, Verdict::Rejected(Rejection::WrongRound)),
                (3, Verdict::Applied),
            ],
        );
    }

    /// A need is recorded beside an action of the same voter (not an
    /// equivocation), and a round that changes only the lead does not stamp
    /// `changed_round`: a repair ranks by what plays.
    #[test]
    fn a_need_is_no_action_and_no_change_to_rank() {
        let prev = song();
        let d = choose(&prev, R, AT, &[v(1, Event::Lead { need_ms: 300 })]);
        assert_eq!(d.state.lead.lead_ms, 300);
        assert_eq!(d.state.changed_round, prev.changed_round);
        let d = choose(
            &prev,
            R,
            AT,
            &[v(1, Event::Lead { need_ms: 40 }), v(1, Event::Play)],
        );
        assert!(d.outcomes.iter().all(|o| o.verdict == Verdict::Applied));
        assert!(d.state.timeline.playing);
        assert_eq!(d.state.changed_round, R);
        assert_eq!(d.state.lead.need_of(PeerId(1)).map(|n| n.need_ms), Some(40));
    }
}
