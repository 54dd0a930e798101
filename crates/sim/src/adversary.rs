//! A hostile member: one simulated peer with no session core, which speaks the
//! protocol by hand. It answers clock pings and echoes heartbeats like an
//! honest peer (so its clock can be read and its claims taken seriously), and
//! otherwise sends well-formed messages of every kind with extreme and
//! inconsistent values: a session map far off or far in the future, seniority
//! it cannot have, equivocating votes, votes and peer lists under other
//! members' ids, floods of relayed votes, forged snapshots, absurd clock
//! stamps. Everything comes from the run's seed.
//!
//! The honest peers must not panic or hang, their work per message and what
//! they hold must stay bounded, and once the adversary is gone they must be in
//! step again within [`CONVERGE_NS`].

use super::*;

use synfony::protocol::lead::{LEAD_MAX_MS, LEAD_START_MS, Lead};
use synfony::protocol::library::SongId;
use synfony::protocol::message::{
    ClockEcho, ClockPing, ClockPong, ClockStamps, DecidedDigest, Goodbye, Heartbeat,
    MAX_PENDING_VOTES, MAX_RELAYED_VOTES, PeerList, Snapshot,
};
use synfony::protocol::session::MAX_MEMBERS;
use synfony::protocol::{
    ChannelState, MAX_PLAYED, MAX_QUEUE, MAX_STEMS, SessionMap, SignedVote, Signer, SongRef,
    Timeline, VoteProof,
};

/// Honest peers must be in step this soon after the adversary leaves.
/// (2 s, and twice the longest lead's excess over a new session's: the needs
/// it made up hold the lead up, a divergence is seen only as rounds are
/// decided, and the repair's state applies a lead later again.)
pub const CONVERGE_NS: i64 = 2 * SEC + 2 * (LEAD_MAX_MS - LEAD_START_MS) as i64 * MS;
/// The most outputs (messages and events) one input may produce on an honest
/// peer: a decision loop over rounds a peer merely claims would exceed it.
pub const MAX_OUTPUTS_PER_INPUT: usize = 1000;

/// The adversary's memory: who it is, what it claims, what it must answer.
pub(super) struct Adversary {
    pub slot: usize,
    /// Its claimed session time minus the honest one (fixed per run, so its
    /// lie is consistent and can win an election if the rule allows).
    lie_ns: i64,
    seniority: i64,
    map_rate: f64,
    /// Half the runs it keeps its clock stamps and its map consistent, so its
    /// lie is believable (a peer whose stamps are absurd discredits itself);
    /// the other half it mixes in absurd ones.
    consistent: bool,
    /// The last heartbeat stamp heard from each honest peer, to echo.
    echoes: BTreeMap<PeerId, ClockEcho>,
    /// Pings to answer: (from, ping, received at, local).
    pings: Vec<(PeerId, ClockPing, i64)>,
    /// Identities it made up, in a quarter of the runs (a Sybil attack:
    /// their votes are genuinely signed, so only the per-round cap bounds
    /// them).
    sybils: Vec<Signer>,
    /// Votes it signed, by round (see [`Sim::pooled_vote`]).
    pool: BTreeMap<u64, Vec<SignedVote>>,
    /// Half the runs it forges votes. Its first forgery discredits its link
    /// on the peer that checks it (no vote of it is read there again), so in
    /// the other half it sends only votes it signed, and its floods, Sybils
    /// and equivocations keep reaching the honest peers' vote handling.
    forges: bool,
    pub active: bool,
}

impl Adversary {
    pub(super) fn new(slot: usize, rng: &mut ChaCha8Rng) -> Adversary {
        let lie_ns = match rng.random_range(0..6) {
            0 => -30 * SEC,
            1 => 30 * SEC,
            2 => 1_000_000 * SEC,
            3 => -1_000_000 * SEC,
            4 => rng.random_range(-SEC..SEC),
            _ => 0,
        };
        let seniority = match rng.random_range(0..4) {
            0 => 0,
            1 => -1,
            2 => i64::MIN,
            _ => rng.random_range(0..SEC),
        };
        let map_rate = if rng.random_bool(0.3) {
            rng.random_range(-0.01..0.01)
        } else {
            0.0
        };
        Adversary {
            slot,
            lie_ns,
            seniority,
            map_rate,
            consistent: rng.random_bool(0.5),
            echoes: BTreeMap::new(),
            pings: Vec::new(),
            sybils: Vec::new(),
            pool: BTreeMap::new(),
            forges: rng.random_bool(0.5),
            active: true,
        }
    }
}

impl Sim {
    /// The adversary arrives: a new slot, dialling every honest peer.
    pub(super) fn adversary_arrives(&mut self) {
        self.faults.push(self.now);
        let signer = self.random_signer();
        let (off, drift) = self.random_clock();
        let slot = self.new_peer(signer, off, drift);
        self.peers[slot].alive = true;
        self.peers[slot].started_at_ns = self.now;
        let mut adv = Adversary::new(slot, &mut self.rng);
        if self.rng.random_bool(0.25) {
            adv.sybils = (0..16).map(|_| self.random_signer()).collect();
        }
        self.adversary = Some(adv);
        self.adversary_tick();
    }

    /// It leaves without a word (a crash), as a hostile peer would.
    pub(super) fn adversary_leaves(&mut self) {
        let Some(adv) = self.adversary.as_mut() else {
            return;
        };
        adv.active = false;
        let slot = adv.slot;
        self.faults.push(self.now);
        // The needs it made up hold the lead up to its maximum for a while;
        // rounds are decided that much later, and so are the digests that
        // show a divergence and start its repair.
        let held_ns = i64::from(LEAD_MAX_MS - LEAD_START_MS) * 1_000_000;
        self.faults.push(self.now + held_ns);
        self.adversary_left_at = Some(self.now);
        self.peers[slot].alive = false;
        for (k, l) in self.links.iter_mut() {
            if k.0 == slot || k.1 == slot {
                l.up = false;
                l.epoch += 1;
            }
        }
    }

    /// What the adversary heard: pings to answer, heartbeats to echo.
    pub(super) fn adversary_hears(&mut self, from: PeerId, message: Message) {
        let Some(adv) = self.adversary.as_ref() else {
            return;
        };
        let local = self.peers[adv.slot].local_ns(self.now);
        let adv = self.adversary.as_mut().expect("checked");
        match message {
            Message::ClockPing(ping) => adv.pings.push((from, ping, local)),
            Message::Heartbeat(hb) => {
                adv.echoes.insert(
                    from,
                    ClockEcho {
                        origin_ns: hb.clock.sent_ns,
                        received_ns: local,
                    },
                );
            }
            _ => {}
        }
    }

    /// Every 50 ms while it is here: answer pings, redial, and send each
    /// linked honest peer a few hostile messages.
    pub(super) fn adversary_tick(&mut self) {
        let Some(adv) = self.adversary.as_mut() else {
            return;
        };
        if !adv.active {
            return;
        }
        let slot = adv.slot;
        let pings = std::mem::take(&mut adv.pings);
        let local = self.peers[slot].local_ns(self.now);
        for (to, ping, received) in pings {
            let consistent = self.adversary.as_ref().is_some_and(|a| a.consistent);
            let pong = if consistent || self.rng.random_bool(0.9) {
                ClockPong {
                    seq: ping.seq,
                    origin_ns: ping.origin_ns,
                    received_ns: received,
                    sent_ns: local,
                }
            } else {
                ClockPong {
                    seq: ping.seq,
                    origin_ns: self.extreme_i64(),
                    received_ns: self.extreme_i64(),
                    sent_ns: self.extreme_i64(),
                }
            };
            self.transmit_from(slot, to, Message::ClockPong(pong), true);
        }
        let honest: Vec<usize> = (0..self.peers.len())
            .filter(|&s| s != slot && self.peers[s].alive && self.peers[s].session.is_some())
            .collect();
        for &h in &honest {
            let up = self.links.get(&key(slot, h)).is_some_and(|l| l.up);
            if !up {
                self.dial(slot, h);
                continue;
            }
            let to = self.peers[h].info.peer_id;
            for _ in 0..self.rng.random_range(1..=3) {
                let message = self.hostile_message(to);
                let goodbye = matches!(message, Message::Goodbye(_));
                self.transmit_from(slot, to, message, true);
                if goodbye {
                    // It closes the connection after its goodbye (and dials
                    // again next tick).
                    if let Some(l) = self.links.get_mut(&key(slot, h)) {
                        l.up = false;
                        l.epoch += 1;
                    }
                    break;
                }
            }
        }
        self.at(self.now + 50 * MS, Ev::AdversaryTick);
    }

    /// The honest session time now (the reference's), if any.
    fn honest_session_ns(&self) -> i64 {
        (0..self.peers.len())
            .filter(|&s| self.peers[s].joined && self.peers[s].alive)
            .find_map(|s| self.peers[s].session_ns(self.now))
            .unwrap_or(0)
    }

    fn hostile_message(&mut self, to: PeerId) -> Message {
        let adv = self.adversary.as_ref().expect("only while here");
        let slot = adv.slot;
        let local = self.peers[slot].local_ns(self.now);
        let truth = self.honest_session_ns();
        let cur = Round::containing(truth).0;
        match self.rng.random_range(0..10) {
            // Heartbeats, most of the time: the lie, votes, floods.
            0..=5 => {
                let adv = self.adversary.as_ref().expect("here");
                let (lie_ns, rate, seniority) = (adv.lie_ns, adv.map_rate, adv.seniority);
                let consistent = adv.consistent;
                let echo = adv.echoes.get(&to).copied();
                let map = match if consistent {
                    7
                } else {
                    self.rng.random_range(0..8)
                } {
                    0 => None,
                    1 => Some(SessionMap {
                        anchor_local_ns: self.extreme_i64(),
                        anchor_session_ns: self.extreme_i64(),
                        rate: self.rng.random_range(-0.01..0.01),
                    }),
                    _ => Some(SessionMap {
                        anchor_local_ns: local,
                        anchor_session_ns: truth.saturating_add(lie_ns),
                        rate,
                    }),
                };
                let round = self.near_or_absurd_round(cur);
                let relayed = self.votes(cur, MAX_RELAYED_VOTES);
                let decided = self.rng.random_bool(0.7).then(|| DecidedDigest {
                    round: self.near_or_absurd_round(cur),
                    digest: self.rng.random(),
                    changed_round: self.near_or_absurd_round(cur),
                });
                let sent_ns = if consistent || self.rng.random_bool(0.9) {
                    local
                } else {
                    self.extreme_i64()
                };
                let vote = self.extreme_event();
                let proof = self.proof(slot, round, vote);
                Message::Heartbeat(Heartbeat {
                    round,
                    vote,
                    proof,
                    relayed,
                    decided,
                    map,
                    synced_at_session_ns: seniority,
                    clock: ClockStamps { sent_ns, echo },
                })
            }
            6 | 7 => {
                let round = self.near_or_absurd_round(cur);
                Message::Snapshot(Snapshot {
                    round,
                    state: self.forged_state(round),
                    pending: self.votes(cur, MAX_PENDING_VOTES),
                })
            }
            8 => {
                let n = self
                    .rng
                    .random_range(0..=synfony::protocol::message::MAX_PEERS);
                let peers = (0..n)
                    .map(|i| {
                        let peer_id = if self.rng.random_bool(0.3) {
                            self.some_honest_id()
                        } else {
                            self.random_id()
                        };
                        PeerInfo {
                            peer_id,
                            name: format!("ghost{i}"),
                            addr: SocketAddr::from((
                                Ipv4Addr::new(192, 0, 2, self.rng.random()),
                                self.rng.random(),
                            )),
                        }
                    })
                    .collect();
                Message::PeerList(PeerList { peers })
            }
            _ => match self.rng.random_range(0..3) {
                0 => Message::ClockPing(ClockPing {
                    seq: self.rng.random(),
                    origin_ns: self.extreme_i64(),
                }),
                1 => Message::ClockPong(ClockPong {
                    seq: self.rng.random(),
                    origin_ns: self.extreme_i64(),
                    received_ns: self.extreme_i64(),
                    sent_ns: self.extreme_i64(),
                }),
                _ if self.rng.random_bool(0.1) => Message::Goodbye(Goodbye {
                    reason: "forged".into(),
                }),
                _ => Message::ClockPing(ClockPing {
                    seq: 0,
                    origin_ns: local,
                }),
            },
        }
    }

    fn some_honest_id(&mut self) -> PeerId {
        let ids: Vec<PeerId> = (0..self.peers.len())
            .filter(|&s| self.peers[s].session.is_some())
            .map(|s| self.peers[s].info.peer_id)
            .collect();
        if ids.is_empty() {
            return PeerId(1);
        }
        ids[self.rng.random_range(0..ids.len())]
    }

    fn extreme_i64(&mut self) -> i64 {
        match self.rng.random_range(0..5) {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => 0,
            3 => -1,
            _ => self.rng.random(),
        }
    }

    fn near_or_absurd_round(&mut self, cur: u64) -> Round {
        match self.rng.random_range(0..6) {
            0 => Round::MAX,
            1 => Round(self.rng.random_range(0..=Round::MAX.0)),
            2 => Round(0),
            _ => Round(cur.saturating_add_signed(self.rng.random_range(-8..8))),
        }
    }

    fn extreme_event(&mut self) -> Event {
        let channel = if self.rng.random_bool(0.2) {
            Channel::Master
        } else {
            Channel::Stem(self.rng.random_range(0..MAX_STEMS as u16))
        };
        match self.rng.random_range(0..13) {
            12 => Event::Lead {
                need_ms: self.rng.random_range(0..=LEAD_MAX_MS),
            },
            11 => Event::Move {
                from: self.rng.random_range(0..MAX_QUEUE as u16),
                to: self.rng.random_range(0..MAX_QUEUE as u16),
                song: SongId(self.rng.random()),
            },
            6 => Event::Load(self.forged_song()),
            7 => Event::Queue(self.forged_song()),
            8 => Event::Unqueue {
                index: self.rng.random_range(0..MAX_QUEUE as u16),
                song: SongId(self.rng.random()),
            },
            9 => Event::Next,
            10 => Event::Prev,
            0 => Event::None,
            1 => Event::Play,
            2 => Event::Pause,
            3 => Event::Seek {
                position_ns: self.extreme_i64(),
            },
            4 => Event::Volume {
                channel,
                gain_db: match self.rng.random_range(0..4) {
                    0 => f32::MAX,
                    1 => f32::NEG_INFINITY,
                    2 => 1000.0,
                    _ => self.rng.random_range(-100.0..100.0),
                },
            },
            _ => Event::Mute {
                channel,
                muted: self.rng.random(),
            },
        }
    }

    /// Up to `max` votes, for rounds near and far, equivocating: under
    /// honest ids (forged: another key's signature, or garbage), low ids, its
    /// own and (in a Sybil run) its made-up identities' (genuinely signed).
    /// Genuine votes come from a pool signed once per round (see
    /// [`Sim::signed_pool`]): signing each vote afresh made a run ten times
    /// slower, and a pool larger than a round's cap floods it just as well.
    fn votes(&mut self, cur: u64, max: usize) -> Vec<SignedVote> {
        let n = match self.rng.random_range(0..3) {
            0 => 0,
            1 => self.rng.random_range(0..8),
            _ => max,
        };
        let forges = self.adversary.as_ref().is_some_and(|a| a.forges);
        (0..n)
            .map(|_| {
                // Votes for far rounds are forgeries (a pooled vote moved
                // there): only in runs that forge.
                let near = !forges || self.rng.random_bool(0.8);
                let round = if near {
                    cur + self.rng.random_range(0..3)
                } else {
                    self.near_or_absurd_round(cur).0
                };
                let mut v = self.pooled_vote(if near { round } else { cur });
                v.vote.round = Round(round);
                if forges && (!near || self.rng.random_bool(0.5)) {
                    // A forgery: someone else's id (an honest one, or a low
                    // one), with a proof that is not its, or bytes.
                    v.vote.voter = if self.rng.random_bool(0.5) {
                        self.some_honest_id()
                    } else {
                        PeerId(self.rng.random_range(0..64))
                    };
                    if self.rng.random_bool(0.5) {
                        v.proof.signature = [self.rng.random(); 64];
                    }
                }
                v
            })
            .collect()
    }

    /// A genuinely signed vote for `round` from the pool (signed when the
    /// round is first asked for; the pool keeps the last few rounds).
    fn pooled_vote(&mut self, round: u64) -> SignedVote {
        let have = self
            .adversary
            .as_ref()
            .is_some_and(|a| a.pool.contains_key(&round));
        if !have {
            let pool = self.signed_pool(Round(round));
            let adv = self.adversary.as_mut().expect("here");
            while adv.pool.len() >= 8 {
                adv.pool.pop_first();
            }
            adv.pool.insert(round, pool);
        }
        let pool = &self.adversary.as_ref().expect("here").pool[&round];
        pool[self.rng.random_range(0..pool.len())]
    }

    /// The votes the adversary signs for one round: a few of its own (it
    /// equivocates), and in a Sybil run more than a round holds, under
    /// identities it made up.
    fn signed_pool(&mut self, round: Round) -> Vec<SignedVote> {
        let adv = self.adversary.as_ref().expect("here");
        let mut signers = vec![self.peers[adv.slot].signer.clone()];
        signers.extend(adv.sybils.iter().cloned());
        let per_signer = if signers.len() > 1 { 5 } else { 4 };
        let mut pool = Vec::new();
        for signer in signers {
            for _ in 0..per_signer {
                let event = self.extreme_event();
                pool.push(signer.sign_vote(round, event));
            }
        }
        pool
    }

    /// The proof of a heartbeat's own vote: its key's (the honest kind),
    /// another's, or none.
    fn proof(&mut self, slot: usize, round: Round, event: Event) -> Option<VoteProof> {
        let forges = self.adversary.as_ref().is_some_and(|a| a.forges);
        match if forges {
            self.rng.random_range(0..4)
        } else {
            2
        } {
            0 => None,
            1 => Some(self.random_signer().sign_vote(round, event).proof),
            _ => Some(self.peers[slot].signer.sign_vote(round, event).proof),
        }
    }

    /// An id nobody has (a ghost in a peer list).
    fn random_id(&mut self) -> PeerId {
        PeerId(self.rng.random_range(1..u64::MAX))
    }

    /// A song no library holds: any id, any version, any shape the wire takes.
    fn forged_song(&mut self) -> SongRef {
        SongRef {
            song: SongId(self.rng.random()),
            version: self.rng.random(),
            channels: match self.rng.random_range(0..3) {
                0 => 0,
                1 => MAX_STEMS as u16,
                _ => 4,
            },
            duration_ns: match self.rng.random_range(0..3) {
                0 => 0,
                1 => SongRef::MAX_DURATION_NS,
                _ => 600 * SEC,
            },
        }
    }

    /// A state the session could not have decided: wrong shape, absurd gains
    /// and anchors, a change far in the future; or, sometimes, a valid one.
    fn forged_state(&mut self, round: Round) -> SessionState {
        let channels = match self.rng.random_range(0..3) {
            0 => 0,
            1 => MAX_STEMS,
            _ => 4,
        };
        let duration_ns = match self.rng.random_range(0..3) {
            0 => i64::MAX,
            1 => self.rng.random_range(0..i64::MAX),
            _ => 600 * SEC,
        };
        let gain = |rng: &mut ChaCha8Rng| match rng.random_range(0..3) {
            0 => 1000.0,
            1 => f32::MAX,
            _ => rng.random_range(-40.0..6.0),
        };
        let master = ChannelState {
            gain_db: gain(&mut self.rng),
            muted: self.rng.random(),
        };
        let channels: Vec<ChannelState> = (0..channels)
            .map(|_| ChannelState {
                gain_db: gain(&mut self.rng),
                muted: self.rng.random(),
            })
            .collect();
        let anchor_position_ns = self.rng.random_range(0..=duration_ns);
        let mut song = self.forged_song();
        song.duration_ns = duration_ns.min(SongRef::MAX_DURATION_NS);
        if self.rng.random_bool(0.7) {
            song.channels = channels.len() as u16;
        }
        let queue = (0..self.rng.random_range(0..=MAX_QUEUE))
            .map(|_| self.forged_song())
            .collect();
        let played = (0..self.rng.random_range(0..=MAX_PLAYED))
            .map(|_| self.forged_song())
            .collect();
        SessionState {
            timeline: Timeline {
                playing: self.rng.random(),
                anchor_position_ns,
                anchor_session_ns: self.extreme_i64(),
            },
            song,
            queue,
            played,
            changed_round: if self.rng.random_bool(0.5) {
                round
            } else {
                self.near_or_absurd_round(round.0)
            },
            master,
            channels,
            lead: self.forged_lead(round),
            name: if self.rng.random_bool(0.5) {
                String::new()
            } else {
                "forged".into()
            },
            founder: PeerId(self.rng.random()),
        }
    }

    /// A lead a peer could hold, or one with needs said later than its round,
    /// out of order, or a lead out of range (a hand-built state).
    fn forged_lead(&mut self, round: Round) -> Lead {
        let mut lead = Lead::default();
        for _ in 0..self.rng.random_range(0..8) {
            let peer = PeerId(self.rng.random_range(0..16));
            let at = self.near_or_absurd_round(round.0);
            lead.record(peer, self.rng.random_range(0..=LEAD_MAX_MS), at);
        }
        lead.raise();
        if self.rng.random_bool(0.1) {
            lead.lead_ms = self.rng.random();
        }
        if self.rng.random_bool(0.1) {
            lead.needs.reverse();
        }
        lead
    }

    /// After each input to an honest peer from the adversary: its work and
    /// what it holds stay bounded.
    pub(super) fn check_bounded(&mut self, slot: usize) {
        let Some(s) = self.peers[slot].session.as_ref() else {
            return;
        };
        let f = s.footprint();
        let keep = self.cfg.session.history_rounds;
        let held_max = 64 * (keep + 128);
        let name = self.peers[slot].info.name.clone();
        if f.outputs > MAX_OUTPUTS_PER_INPUT {
            self.violation(format!(
                "{name}: one hostile message made {} outputs",
                f.outputs
            ));
        }
        // Lost links become members too: at most one per link.
        if f.members > MAX_MEMBERS + f.links || f.decided_rounds > keep || f.held_votes > held_max {
            self.violation(format!("{name} holds too much: {f:?}"));
        }
    }

    /// Once the adversary has left: in step within [`CONVERGE_NS`].
    pub(super) fn check_recovery(&mut self, comps: &[Vec<usize>]) {
        let Some(left) = self.adversary_left_at else {
            return;
        };
        if self.adversary_recovered {
            return;
        }
        let t = self.now;
        if comps.len() == 1 && t - left > 0 && self.converged(&comps[0]) {
            self.adversary_recovered = true;
            self.report.recover_ns_max = self.report.recover_ns_max.max(t - left);
        } else if t - left > CONVERGE_NS {
            self.adversary_recovered = true;
            self.violation(format!(
                "honest peers not in step {} ms after the adversary left",
                CONVERGE_NS / MS
            ));
        }
    }
}
