//! The choice function: all votes of one round in, the next session state out.
//!
//! It is pure, total and deterministic: no clock, no randomness, no I/O, no
//! dependence on the order of the votes, and no input makes it panic. Every peer
//! that runs it over the same set of votes gets the same [`Decision`], bit for bit.
//!
//! # Precedence
//!
//! It is not majority rule: one musician's "stop" must not need a quorum. The
//! rules, applied in this order (NOTEBOOK.md gives the reasons):
//!
//! 1. **Admission.** Votes for another round are rejected. Copies of the same vote
//!    count once (relays deliver a vote many times). A voter with two *different*
//!    votes in one round has all of them rejected: a peer gets one vote per round,
//!    and an equivocating peer must not choose which of its votes counts.
//! 2. **Position (seek).** If any seek was cast, the playhead moves to the target
//!    of the seek with the lowest voter id, clamped into `[0, duration]`. Other
//!    seeks are overruled by it.
//! 3. **Transport (pause over play).** Any pause stops playback; otherwise any play
//!    starts it; otherwise it stays as it was. Position and transport are
//!    orthogonal: a seek and a pause in one round give "paused at the target".
//! 4. **Mix, per channel, independently** (the master and each stem): the quietest
//!    requested gain wins (lower dB; `-inf` is silence; louder than
//!    [`MAX_GAIN_DB`] is clamped to it), and mute wins over unmute. Votes for a
//!    channel the session lacks, or with a NaN or `+inf` gain, are rejected.
//! 5. **Ties** (equal targets or gains from several voters) are credited to the
//!    lowest voter id; voters who asked for exactly the winning value are
//!    `Applied` too.
//!
//! A round of only "no event" (or no votes at all) returns the previous state
//! unchanged.

use super::state::{Channel, Event, MAX_GAIN_DB, PeerId, Round, SessionState, Vote};

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

    let mut outcomes: Vec<VoteOutcome> = sorted
        .iter()
        .map(|&vote| VoteOutcome {
            vote,
            verdict: admit(&vote, round, prev),
        })
        .collect();
    reject_equivocators(&mut outcomes);

    let mut state = prev.clone();
    resolve_transport(&mut state, apply_at_session_ns, &mut outcomes);
    resolve_mix(&mut state, &mut outcomes);

    Decision {
        round,
        apply_at_session_ns,
        state,
        outcomes,
    }
}

/// The verdict a vote gets on its own: `Applied` stands for "admitted, still in
/// the running" until the resolution steps overrule it.
fn admit(vote: &Vote, round: Round, prev: &SessionState) -> Verdict {
    if vote.round != round {
        return Verdict::Rejected(Rejection::WrongRound);
    }
    match vote.event {
        Event::None => Verdict::Abstained,
        Event::Play | Event::Pause | Event::Seek { .. } => Verdict::Applied,
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
fn reject_equivocators(outcomes: &mut [VoteOutcome]) {
    let in_round = |o: &VoteOutcome| o.verdict != Verdict::Rejected(Rejection::WrongRound);
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

/// Rules 2 and 3: seek, then pause over play.
fn resolve_transport(state: &mut SessionState, at_ns: i64, outcomes: &mut [VoteOutcome]) {
    let seek_target = |e: &Event| match *e {
        Event::Seek { position_ns } => Some(position_ns),
        _ => None,
    };
    // Outcomes are sorted by voter: the first live seek is the lowest voter's.
    let seek = outcomes
        .iter()
        .filter(|o| live(o))
        .find_map(|o| seek_target(&o.vote.event).map(|t| (o.vote.voter, t)));
    let pauser = first_live_voter(outcomes, |e| matches!(e, Event::Pause));
    let player = first_live_voter(outcomes, |e| matches!(e, Event::Play));

    if let Some((winner, target)) = seek {
        for o in outcomes.iter_mut().filter(|o| live(o)) {
            if let Some(t) = seek_target(&o.vote.event)
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
        Some((_, target)) => target.clamp(0, state.duration_ns),
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

/// Rule 4: per channel, the quietest gain and mute-over-unmute.
fn resolve_mix(state: &mut SessionState, outcomes: &mut [VoteOutcome]) {
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
