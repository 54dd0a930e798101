//! The simulated world: the scenario script, the event loop, peers starting,
//! dialling and crashing, messages crossing links (through the real wire
//! encoding), the shell's side of each session's events, and random votes.

use super::*;

impl Sim {
    /// Lays out the scenario in the event queue.
    pub(super) fn script(&mut self) {
        let n = self.cfg.peers;
        // Start times in order, so each joiner joins through a peer already up.
        let mut starts: Vec<i64> = (1..n)
            .map(|_| self.rng.random_range(300 * MS..=2 * SEC))
            .collect();
        starts.sort();
        for i in 0..n {
            let signer = self.random_signer();
            let (off, drift) = self.random_clock();
            let slot = self.new_peer(signer, off, drift);
            if i == 0 {
                self.at(
                    0,
                    Ev::Start {
                        slot,
                        join_via: None,
                    },
                );
            } else {
                let via = self.rng.random_range(0..i);
                self.at(
                    starts[i - 1],
                    Ev::Start {
                        slot,
                        join_via: Some(via),
                    },
                );
            }
        }
        self.at(ROUND_NS / 3, Ev::VoteTick);
        self.at(50 * MS, Ev::Sample);
        if self.cfg.adversary {
            let d = self.cfg.duration_ns;
            let arrive = self.rng.random_range(3 * SEC..=5 * SEC);
            let leave = (self.rng.random_range(0.55..0.65) * d as f64) as i64;
            self.at(arrive, Ev::AdversaryArrive);
            self.at(leave.max(arrive + SEC), Ev::AdversaryLeave);
            return;
        }
        if !self.cfg.faults || n < 2 {
            return;
        }
        let d = self.cfg.duration_ns;
        let frac = |s: &mut Self, lo: f64, hi: f64| (s.rng.random_range(lo..hi) * d as f64) as i64;
        // A crash of any peer (the root included), restarted later.
        let victim = self.rng.random_range(0..n);
        let tc = frac(self, 0.22, 0.28);
        self.at(tc, Ev::Crash { slot: victim });
        let down = self.rng.random_range(500 * MS..=2 * SEC);
        let same_id = self.rng.random_bool(0.5);
        self.at(
            tc + down,
            Ev::Restart {
                slot: victim,
                same_id,
            },
        );
        // One cut link between two of the first peers.
        if n >= 3 {
            let a = self.rng.random_range(0..n);
            let b = (a + self.rng.random_range(1..n)) % n;
            let t = frac(self, 0.36, 0.40);
            self.at(t, Ev::Cut { a, b });
            let len = self.rng.random_range(500 * MS..=2 * SEC);
            self.at(t + len, Ev::Restore { a, b });
        }
        // A delay spike on one link, long enough that the lead must follow it.
        if n >= 2 {
            let a = self.rng.random_range(0..n);
            let b = (a + self.rng.random_range(1..n)) % n;
            let t = frac(self, 0.12, 0.16);
            let extra_ns = self.rng.random_range(100 * MS..=400 * MS);
            self.at(t, Ev::Spike { a, b, extra_ns });
            let len = self.rng.random_range(SEC..=3 * SEC);
            self.at(t + len, Ev::SpikeEnd { a, b });
        }
        // A partition into two non-empty sides, healed later.
        let t = frac(self, 0.50, 0.55);
        let pivot = self.rng.random_range(1..n.max(2));
        let mut side: Vec<bool> = (0..n).map(|i| i < pivot).collect();
        for i in (1..n).rev() {
            let j = self.rng.random_range(0..=i);
            side.swap(i, j);
        }
        self.at(t, Ev::Partition { side });
        let len = self.rng.random_range(SEC..=4 * SEC);
        self.at(t + len, Ev::Heal);
        // A late joiner.
        let signer = self.random_signer();
        let (off, drift) = self.random_clock();
        let slot = self.new_peer(signer, off, drift);
        let t = frac(self, 0.72, 0.78);
        let via = self.rng.random_range(0..n);
        self.at(
            t,
            Ev::Start {
                slot,
                join_via: Some(via),
            },
        );
    }

    pub(super) fn reachable(&self, a: usize, b: usize) -> bool {
        let side_ok = match &self.side {
            Some(side) => {
                side.get(a).copied().unwrap_or(true) == side.get(b).copied().unwrap_or(true)
            }
            None => true,
        };
        a != b
            && self.peers[a].alive
            && self.peers[b].alive
            && side_ok
            && !self.cut.contains(&key(a, b))
    }

    pub(super) fn slot_of(&self, id: PeerId) -> Option<usize> {
        // The newest live incarnation with that id.
        (0..self.peers.len())
            .rev()
            .find(|&s| self.peers[s].alive && self.peers[s].info.peer_id == id)
    }

    pub(super) fn run(&mut self) {
        let mut steps: u64 = 0;
        while let Some(Scheduled { t, ev, .. }) = self.queue.pop() {
            if t > self.cfg.duration_ns {
                break;
            }
            self.now = t;
            steps += 1;
            if steps > 50_000_000 {
                self.violation("simulation did not settle (event storm)".into());
                break;
            }
            self.step(ev);
        }
        self.finish();
    }

    pub(super) fn step(&mut self, ev: Ev) {
        let t = self.now;
        match ev {
            Ev::Wake { slot, generation } => {
                let p = &mut self.peers[slot];
                if !p.alive || p.generation != generation {
                    return;
                }
                let local = p.local_ns(t);
                if let Some(s) = p.session.as_mut() {
                    s.handle_timeout(local);
                }
                self.drain(slot);
            }
            Ev::Deliver {
                from,
                to,
                epoch,
                message,
            } => {
                let k = key(from, to);
                let ok = self.links.get(&k).is_some_and(|l| l.up && l.epoch == epoch)
                    && self.reachable(from, to);
                if !ok {
                    return;
                }
                let from_id = self.peers[from].info.peer_id;
                let hostile = self.adversary.as_ref().map(|a| a.slot);
                if hostile == Some(to) {
                    self.adversary_hears(from_id, *message);
                    return;
                }
                let p = &mut self.peers[to];
                let local = p.local_ns(t);
                if let Some(s) = p.session.as_mut() {
                    s.handle_message(local, from_id, *message);
                }
                if hostile == Some(from) {
                    self.check_bounded(to);
                }
                self.drain(to);
            }
            Ev::Connect { a, b } => {
                let k = key(a, b);
                let link = self.links.entry(k).or_default();
                link.connecting = false;
                if link.up || !self.reachable(a, b) {
                    return;
                }
                let base = [self.base_delay(), self.base_delay()];
                let link = self.links.entry(k).or_default();
                link.up = true;
                link.epoch += 1;
                link.base_ns = base;
                link.last_arrival_ns = [t, t];
                let (ia, ib) = (self.peers[a].info.clone(), self.peers[b].info.clone());
                for (x, info) in [(a, ib), (b, ia)] {
                    let p = &mut self.peers[x];
                    let local = p.local_ns(t);
                    if let Some(s) = p.session.as_mut() {
                        s.handle_link_up(local, info);
                    }
                    self.drain(x);
                }
            }
            Ev::LinkDown { at, peer } => {
                let p = &mut self.peers[at];
                if !p.alive {
                    return;
                }
                let local = p.local_ns(t);
                if let Some(s) = p.session.as_mut() {
                    s.handle_link_down(local, peer);
                }
                self.drain(at);
            }
            Ev::Start { slot, join_via } => self.start(slot, join_via),
            Ev::JoinRetry { slot } => {
                let p = &self.peers[slot];
                let lonely = p.alive
                    && p.session
                        .as_ref()
                        .is_some_and(|s| s.linked().next().is_none());
                if lonely {
                    let live: Vec<usize> = (0..self.peers.len())
                        .filter(|&s| self.reachable(slot, s))
                        .collect();
                    if !live.is_empty() {
                        let via = live[self.rng.random_range(0..live.len())];
                        self.dial(slot, via);
                    }
                    self.at(t + SEC, Ev::JoinRetry { slot });
                }
            }
            Ev::Crash { slot } => {
                self.faults.push(t);
                self.crashes.push(t);
                let p = &mut self.peers[slot];
                p.alive = false;
                p.session = None;
                p.awaiting.clear();
                for (k, l) in self.links.iter_mut() {
                    if k.0 == slot || k.1 == slot {
                        l.up = false;
                        l.epoch += 1;
                    }
                }
            }
            Ev::Restart { slot, same_id } => {
                self.faults.push(t);
                let (old_signer, off, drift) = {
                    let old = &self.peers[slot];
                    (old.signer.clone(), old.offset_ns, old.drift)
                };
                let signer = if same_id {
                    old_signer
                } else {
                    self.random_signer()
                };
                let new = self.new_peer(signer, off, drift);
                if let Some(side) = self.side.as_mut() {
                    let s = side.get(slot).copied().unwrap_or(true);
                    side.resize(new + 1, true);
                    side[new] = s;
                }
                let live: Vec<usize> = (0..self.peers.len())
                    .filter(|&s| s != new && self.peers[s].alive)
                    .collect();
                let via = (!live.is_empty()).then(|| live[self.rng.random_range(0..live.len())]);
                self.start(new, via);
            }
            Ev::Cut { a, b } => {
                self.faults.push(t);
                self.cut.insert(key(a, b));
            }
            Ev::Restore { a, b } => {
                self.faults.push(t);
                self.cut.remove(&key(a, b));
                self.heals.push(t);
            }
            Ev::Spike { a, b, extra_ns } => {
                // Votes are late until the lead covers the spike: its ends
                // must see it (a heartbeat takes `extra_ns`), then say it (their
                // need may cross only the spiked link, `extra_ns` again), and
                // the lead must rise (a few rounds). Until then the spike is
                // a fault still happening; after it, the peers must agree
                // however long it lasts.
                self.faults.push(t);
                self.faults.push(t + 2 * extra_ns + 5 * ROUND_NS);
                self.spikes.insert(key(a, b), extra_ns);
            }
            Ev::SpikeEnd { a, b } => {
                self.faults.push(t);
                self.spikes.remove(&key(a, b));
            }
            Ev::Partition { side } => {
                self.faults.push(t);
                let mut side = side;
                side.resize(self.peers.len(), true);
                self.side = Some(side);
            }
            Ev::Heal => {
                self.faults.push(t);
                self.side = None;
                self.heals.push(t);
            }
            Ev::VoteTick => {
                self.vote_tick();
                self.at(t + ROUND_NS, Ev::VoteTick);
            }
            Ev::Sample => {
                self.sample();
                self.at(t + 50 * MS, Ev::Sample);
            }
            Ev::AdversaryArrive => self.adversary_arrives(),
            Ev::AdversaryTick => self.adversary_tick(),
            Ev::AdversaryLeave => self.adversary_leaves(),
        }
    }

    pub(super) fn base_delay(&mut self) -> i64 {
        let asym = self.cfg.asymmetry_ns.max(0);
        self.cfg.delay_min_ns
            + if asym > 0 {
                self.rng.random_range(0..=asym)
            } else {
                0
            }
    }

    pub(super) fn start(&mut self, slot: usize, join_via: Option<usize>) {
        let t = self.now;
        // Joining through a peer that died meanwhile: the user picks a live one.
        let join_via = join_via.map(|via| {
            if self.peers[via].alive {
                return via;
            }
            let live: Vec<usize> = (0..self.peers.len())
                .filter(|&s| s != slot && self.peers[s].alive)
                .collect();
            if live.is_empty() {
                via
            } else {
                live[self.rng.random_range(0..live.len())]
            }
        });
        let start = match join_via {
            None => Start::Create {
                state: {
                    // A short song with the set list after it, so songs end
                    // and follow each other during the run.
                    let mut state = SessionState::of_song(SIM_SONGS[0]);
                    state.queue = vec![SIM_SONGS[1], SIM_SONGS[2]];
                    state
                },
            },
            Some(_) => Start::Join,
        };
        let p = &mut self.peers[slot];
        p.alive = true;
        p.started_at_ns = t;
        p.joined = join_via.is_none();
        let local = p.local_ns(t);
        p.session = Some(Session::new(
            self.cfg.session.clone(),
            p.info.clone(),
            p.signer.clone(),
            local,
            start,
        ));
        if let Some(via) = join_via {
            self.dial(slot, via);
            self.at(t + SEC, Ev::JoinRetry { slot });
        }
        self.drain(slot);
    }

    /// The shell connects `a` to `b` (a TCP connect and hello: one round trip).
    pub(super) fn dial(&mut self, a: usize, b: usize) {
        if !self.reachable(a, b) {
            return;
        }
        let k = key(a, b);
        let link = self.links.entry(k).or_default();
        if link.up || link.connecting {
            return;
        }
        link.connecting = true;
        let rtt = 2 * self.cfg.delay_min_ns + self.rng.random_range(0..=self.cfg.jitter_ns.max(0));
        self.at(self.now + rtt, Ev::Connect { a, b });
    }

    /// Moves a peer's outputs into the world and schedules its next wake-up.
    pub(super) fn drain(&mut self, slot: usize) {
        let t = self.now;
        loop {
            let Some(s) = self.peers[slot].session.as_mut() else {
                return;
            };
            let Some(tx) = s.poll_transmit() else { break };
            self.transmit(slot, tx.to, tx.message);
        }
        loop {
            let Some(s) = self.peers[slot].session.as_mut() else {
                return;
            };
            let Some(ev) = s.poll_event() else { break };
            self.on_event(slot, ev);
        }
        let p = &mut self.peers[slot];
        let Some(s) = p.session.as_ref() else { return };
        if let Some(local) = s.poll_timeout() {
            p.generation += 1;
            let when = p.true_ns(local).max(t + 1);
            let generation = p.generation;
            self.at(when, Ev::Wake { slot, generation });
        }
    }

    pub(super) fn transmit(&mut self, from: usize, to_id: PeerId, message: Message) {
        self.transmit_from(from, to_id, message, false);
    }

    /// Sends through the real wire format, both ways: what an honest core
    /// sends must encode; a hostile message the wire refuses is not sent.
    pub(super) fn transmit_from(
        &mut self,
        from: usize,
        to_id: PeerId,
        message: Message,
        hostile: bool,
    ) {
        if hostile {
            self.report.hostile_messages += 1;
        } else {
            self.report.messages += 1;
        }
        self.frame.clear();
        let message = match wire::encode_frame(&message, &mut self.frame)
            .and_then(|()| wire::parse::<Message>(&self.frame))
        {
            Ok(m) => m,
            Err(_) if hostile => return,
            Err(e) => {
                self.violation(format!("wire refused {:?}: {e}", message.code()));
                return;
            }
        };
        let Some(to) = self.slot_of(to_id) else {
            return;
        };
        let k = key(from, to);
        if !self.reachable(from, to) {
            return;
        }
        let jitter = self.rng.random_range(0..=self.cfg.jitter_ns.max(0))
            + self.spikes.get(&k).copied().unwrap_or(0);
        let Some(link) = self.links.get_mut(&k) else {
            return;
        };
        if !link.up {
            return;
        }
        let dir = usize::from(from > to);
        let arrival = (self.now + link.base_ns[dir] + jitter).max(link.last_arrival_ns[dir]);
        link.last_arrival_ns[dir] = arrival;
        let epoch = link.epoch;
        self.at(
            arrival,
            Ev::Deliver {
                from,
                to,
                epoch,
                message: Box::new(message),
            },
        );
    }

    pub(super) fn on_event(&mut self, slot: usize, ev: SessionEvent) {
        let t = self.now;
        match ev {
            SessionEvent::Dial(info) => {
                if let Some(b) = self.slot_of(info.peer_id) {
                    self.dial(slot, b);
                }
            }
            SessionEvent::Disconnect { peer } => {
                if let Some(b) = self.slot_of(peer) {
                    let k = key(slot, b);
                    if let Some(l) = self.links.get_mut(&k)
                        && l.up
                    {
                        l.up = false;
                        l.epoch += 1;
                        if self.reachable(slot, b) {
                            let me = self.peers[slot].info.peer_id;
                            let d = self.cfg.delay_min_ns;
                            self.at(t + d, Ev::LinkDown { at: b, peer: me });
                        }
                    }
                }
            }
            SessionEvent::Decided(d) => {
                self.report.decisions += 1;
                let p = &mut self.peers[slot];
                if let Some((prev, prev_apply_at)) = p.last_decided_at_ns
                    && p.joined
                {
                    let gap = t - prev;
                    // A lead that rose (a spike, or a need a hostile member
                    // claims, up to `LEAD_MAX_MS`) puts the next decision that
                    // much later: not a stall.
                    let rise = (d.apply_at_session_ns - prev_apply_at - ROUND_NS).max(0);
                    if gap > 500 * MS + ROUND_NS + rise {
                        let name = p.info.name.clone();
                        self.violation(format!("{name} decided nothing for {} ms", gap / MS));
                    }
                    if self.crashes.iter().any(|&c| c <= t && t - c < 2 * SEC) {
                        self.report.crash_stall_ns_max =
                            self.report.crash_stall_ns_max.max(gap - ROUND_NS);
                    }
                }
                let p = &mut self.peers[slot];
                p.last_decided_at_ns = Some((t, d.apply_at_session_ns));
                if p.last_song.is_some_and(|s| s != d.state.song) {
                    self.report.song_changes += 1;
                }
                p.last_song = Some(d.state.song);
                for (vote, _) in verdicts_of(&d, p.info.peer_id) {
                    p.answered(vote.event);
                }
                if p.joined
                    && t - p.started_at_ns > SETTLED_NS
                    && let Some(map) = p.session.as_ref().and_then(|s| s.map())
                {
                    let t_apply = p.true_ns(map.local_ns_at(d.apply_at_session_ns));
                    self.applied.entry(d.round).or_default().push((
                        slot,
                        d.state.digest(),
                        t_apply,
                    ));
                }
            }
            SessionEvent::VoteDropped { event, .. } => self.peers[slot].answered(event),
            SessionEvent::Superseded { vote, .. } => self.peers[slot].answered(vote.event),
            SessionEvent::PeerUp(_)
            | SessionEvent::PeerDown { .. }
            | SessionEvent::Synced { .. }
            | SessionEvent::RootChanged { .. }
            | SessionEvent::Adopted { .. }
            | SessionEvent::Ignored { .. } => {}
        }
    }

    pub(super) fn vote_tick(&mut self) {
        let t = self.now;
        for slot in 0..self.peers.len() {
            let p = &self.peers[slot];
            if !p.alive || !p.joined || !self.rng.random_bool(self.cfg.vote_probability) {
                continue;
            }
            let song = SIM_SONGS[self.rng.random_range(0..SIM_SONGS.len())];
            let event = match self.rng.random_range(0..12) {
                11 => Event::Move {
                    from: self.rng.random_range(0..3),
                    to: self.rng.random_range(0..3),
                    song: song.song,
                },
                5 => Event::Load(song),
                6 | 7 => Event::Queue(song),
                8 => Event::Unqueue {
                    index: self.rng.random_range(0..3),
                    song: song.song,
                },
                9 => Event::Next,
                10 => Event::Prev,
                0 => Event::Play,
                1 => Event::Pause,
                2 => Event::Seek {
                    position_ns: self.rng.random_range(0..600 * SEC),
                },
                3 => Event::Volume {
                    channel: self.random_channel(),
                    gain_db: self.rng.random_range(-40.0f32..6.0),
                },
                _ => Event::Mute {
                    channel: self.random_channel(),
                    muted: self.rng.random_bool(0.5),
                },
            };
            let p = &mut self.peers[slot];
            if let Some(s) = p.session.as_mut()
                && s.vote(event).is_ok()
            {
                p.awaiting.push((t, event));
                self.report.votes_cast += 1;
            }
        }
    }

    pub(super) fn random_channel(&mut self) -> Channel {
        match self.rng.random_range(0..5u16) {
            4 => Channel::Master,
            i => Channel::Stem(i),
        }
    }
}
