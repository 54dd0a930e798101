//! The checker: components and calm periods, the per-tick measurements
//! (session-time error, joins and heals in step, divergence, apply skew), and
//! the end-of-run verdict on votes.

use super::*;

impl Sim {
    /// Connected components of the live peers (reachability), as slot lists.
    pub(super) fn components(&self) -> Vec<Vec<usize>> {
        let live: Vec<usize> = (0..self.peers.len())
            .filter(|&s| self.peers[s].alive)
            .collect();
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for &s in &live {
            if !seen.insert(s) {
                continue;
            }
            let mut comp = vec![s];
            let mut i = 0;
            while i < comp.len() {
                let x = comp[i];
                for &y in &live {
                    if !seen.contains(&y) && self.reachable(x, y) {
                        seen.insert(y);
                        comp.push(y);
                    }
                }
                i += 1;
            }
            comp.sort();
            out.push(comp);
        }
        out
    }

    pub(super) fn calm(&self, within_ns: i64) -> bool {
        !self.adversary.as_ref().is_some_and(|a| a.active)
            && !self
                .faults
                .iter()
                .any(|&f| f <= self.now && self.now - f < within_ns)
    }

    /// Every 50 ms: clock errors, join and heal progress, divergence.
    pub(super) fn sample(&mut self) {
        let t = self.now;
        let comps = self.components();
        let calm = self.calm(3 * SEC / 2);
        for comp in &comps {
            let Some(reference) = self.reference(comp) else {
                continue;
            };
            let ref_session = self.peers[reference].session_ns(t).expect("synced");
            for &s in comp {
                if s == reference {
                    continue;
                }
                let Some(sess) = self.peers[s].session_ns(t) else {
                    if self.trace && self.peers[s].alive {
                        let local = self.peers[s].local_ns(t);
                        let st: Vec<String> = self.peers[s]
                            .session
                            .as_mut()
                            .map(|x| x.peers(local))
                            .unwrap_or_default()
                            .iter()
                            .map(|p| {
                                format!(
                                    "{:x}:{:?}:{}",
                                    p.info.peer_id.0 >> 48,
                                    p.clock_samples,
                                    p.synced
                                )
                            })
                            .collect();
                        eprintln!(
                            "t={:.2} {} unsynced links {}",
                            t as f64 / 1e9,
                            self.peers[s].info.name,
                            st.join(" ")
                        );
                    }
                    continue;
                };
                let err = (sess - ref_session) as f64;
                if self.trace {
                    let local = self.peers[s].local_ns(t);
                    let root = self.peers[s].session.as_ref().and_then(|x| x.root());
                    let link_err: Vec<String> = self.peers[s]
                        .session
                        .as_mut()
                        .map(|x| x.peers(local))
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|st| {
                            let q = self.slot_of(st.info.peer_id)?;
                            let truth = (self.peers[q].local_ns(t) - local) as f64;
                            Some(format!(
                                "{}:{:?}/{}:{:.0}us/{:.0}ppm",
                                self.peers[q].info.name,
                                st.clock_samples,
                                st.clock_rejected,
                                (st.clock_offset_ns? - truth) / 1e3,
                                st.clock_rate_ppm?
                                    - (self.peers[q].drift - self.peers[s].drift) * 1e6
                            ))
                        })
                        .collect();
                    eprintln!("  links {}", link_err.join(" "));
                    eprintln!(
                        "t={:.2} {} joined={} ref={} root={:?} err_us={:.1}",
                        t as f64 / 1e9,
                        self.peers[s].info.name,
                        self.peers[s].joined,
                        self.peers[reference].info.name,
                        root.and_then(|r| self.slot_of(r))
                            .map(|x| self.peers[x].info.name.clone()),
                        err / 1e3
                    );
                }
                if self.peers[s].joined {
                    if calm && t - self.peers[s].started_at_ns > SETTLED_NS {
                        self.report.offset_err_ns.push(err.abs());
                    }
                } else if err.abs() < IN_STEP_NS as f64 && self.in_step(s, reference) {
                    let join = t - self.peers[s].started_at_ns;
                    self.peers[s].joined = true;
                    self.report.joins += 1;
                    self.report.join_ns_max = self.report.join_ns_max.max(join);
                    if join > SEC && self.calm_between(self.peers[s].started_at_ns, t) {
                        let name = self.peers[s].info.name.clone();
                        self.target_missed(format!("{name} took {} ms to join", join / MS));
                    }
                }
            }
        }
        // Joins that never complete.
        for s in 0..self.peers.len() {
            let p = &self.peers[s];
            if p.alive
                && p.session.is_some()
                && !p.joined
                && t - p.started_at_ns > 3 * SEC
                && self.calm_between(p.started_at_ns, t)
                && t - p.started_at_ns < 3 * SEC + 50 * MS
            {
                let name = p.info.name.clone();
                self.violation(format!("{name} not in step 3 s after starting"));
            }
        }
        // Heals: converged when one component's joined peers agree and are in time.
        if let Some(&th) = self.heals.first() {
            if comps.len() == 1 && self.converged(&comps[0]) {
                let heal = t - th;
                self.heals.remove(0);
                self.report.heals += 1;
                self.report.heal_ns_max = self.report.heal_ns_max.max(heal);
                if heal > SEC {
                    self.target_missed(format!("converged {} ms after the heal", heal / MS));
                }
            } else if t - self.heal_deadline_from(th) > 3 * SEC || !self.calm_between(th + 1, t) {
                // Only a heal that left one component, with no fault since, must
                // converge (a cut link restored inside a partition heals nothing).
                if self.calm_between(th + 1, t) && comps.len() == 1 {
                    self.violation("did not converge within 3 s of the heal".into());
                }
                self.heals.remove(0);
            }
        }
        self.check_recovery(&comps);
        // Divergence in calm periods.
        if calm && comps.len() == 1 {
            self.check_divergence(&comps[0]);
        }
        self.settle_applied(calm && comps.len() == 1);
    }

    /// The component's time base: the root most of its joined peers follow (the
    /// lowest id among ties), if it is in the component and synced.
    pub(super) fn reference(&self, comp: &[usize]) -> Option<usize> {
        let mut votes: BTreeMap<PeerId, usize> = BTreeMap::new();
        for &s in comp.iter().filter(|&&s| self.peers[s].joined) {
            if let Some(root) = self.peers[s].session.as_ref().and_then(|x| x.root()) {
                *votes.entry(root).or_default() += 1;
            }
        }
        let (&root, _) = votes.iter().max_by_key(|(id, n)| (**n, Reverse(**id)))?;
        let slot = self.slot_of(root)?;
        (comp.contains(&slot) && self.peers[slot].session_ns(self.now).is_some()).then_some(slot)
    }

    /// When the 3 s a heal has to converge start: at the heal, or when the
    /// last peer started, if one joined after it (its own clock needs the
    /// time a join needs: a late joiner arriving just after a heal once made
    /// seed 321 miss by a few ms).
    pub(super) fn heal_deadline_from(&self, heal_ns: i64) -> i64 {
        (self.peers.iter())
            .filter(|p| p.alive)
            .map(|p| p.started_at_ns)
            .fold(heal_ns, i64::max)
    }

    pub(super) fn calm_between(&self, from: i64, to: i64) -> bool {
        !self.faults.iter().any(|&f| f > from && f <= to)
    }

    /// Whether `s` decided the same state as `reference` for a recent round.
    pub(super) fn in_step(&self, s: usize, reference: usize) -> bool {
        let (Some(a), Some(b)) = (
            self.peers[s].session.as_ref(),
            self.peers[reference].session.as_ref(),
        ) else {
            return false;
        };
        let (Some((ra, _)), Some((rb, _))) = (a.latest(), b.latest()) else {
            return false;
        };
        let r = Round(ra.0.min(rb.0).saturating_sub(1));
        match (a.decided_state(r), b.decided_state(r)) {
            (Some(x), Some(y)) => x.digest() == y.digest(),
            _ => false,
        }
    }

    pub(super) fn converged(&self, comp: &[usize]) -> bool {
        let t = self.now;
        let Some(reference) = self.reference(comp) else {
            return false;
        };
        let Some(ref_session) = self.peers[reference].session_ns(t) else {
            return false;
        };
        comp.iter().filter(|&&s| self.peers[s].joined).all(|&s| {
            self.in_step(s, reference)
                && self.peers[s]
                    .session_ns(t)
                    .is_some_and(|x| (x - ref_session).abs() < IN_STEP_NS)
        })
    }

    pub(super) fn check_divergence(&mut self, comp: &[usize]) {
        let joined: Vec<usize> = comp
            .iter()
            .copied()
            .filter(|&s| self.peers[s].joined)
            .collect();
        let Some(r) = joined
            .iter()
            .filter_map(|&s| self.peers[s].session.as_ref()?.latest().map(|(r, _)| r))
            .min()
        else {
            return;
        };
        let r = Round(r.0.saturating_sub(1));
        if !self.checked_divergence.insert(r) {
            return;
        }
        let digests: BTreeSet<u64> = joined
            .iter()
            .filter_map(|&s| Some(self.peers[s].session.as_ref()?.decided_state(r)?.digest()))
            .collect();
        if digests.len() > 1 {
            self.violation(format!(
                "joined peers decided {} different states for round {}",
                digests.len(),
                r.0
            ));
        }
    }

    /// Apply skew of rounds old enough that every peer has decided them.
    pub(super) fn settle_applied(&mut self, calm: bool) {
        let Some((&newest, _)) = self.applied.last_key_value() else {
            return;
        };
        let done: Vec<Round> = self
            .applied
            .range(..Round(newest.0.saturating_sub(3)))
            .map(|(r, _)| *r)
            .collect();
        for r in done {
            let Some(v) = self.applied.remove(&r) else {
                continue;
            };
            if !calm || v.len() < 2 {
                continue;
            }
            let lo = v.iter().map(|x| x.2).min().unwrap_or(0);
            let hi = v.iter().map(|x| x.2).max().unwrap_or(0);
            self.report.apply_skew_ns_max = self.report.apply_skew_ns_max.max(hi - lo);
        }
    }

    pub(super) fn finish(&mut self) {
        let end = self.cfg.duration_ns;
        let mut lost = Vec::new();
        for p in &self.peers {
            if !p.alive {
                continue;
            }
            for (cast, e) in &p.awaiting {
                if end - cast > SEC {
                    lost.push(format!(
                        "{}'s {e:?} (cast at {} ms) got no verdict",
                        p.info.name,
                        cast / MS
                    ));
                }
            }
        }
        for l in lost {
            self.violation(l);
        }
    }
}
