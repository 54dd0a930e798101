//! What the engine shares with the control side as atomics: the meters (the
//! window reads them every frame) and this peer's solo set (the window and
//! the headless `solo` command write it; the engine reads it every block).
//! Sized for `MAX_STEMS` channels once, so a new song's stems never replace
//! them.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::engine::MixGains;
use crate::protocol::MAX_STEMS;

/// Peak (the highest since the reader last took it) and RMS (of the last
/// block), per stem and for the master, as f32 bits (lock-free; the window
/// adds hold and release).
#[derive(Debug)]
pub struct Meters {
    pub stems: Box<[Meter]>,
    pub master: Meter,
}

#[derive(Debug, Default)]
pub struct Meter {
    peak: AtomicU32,
    rms: AtomicU32,
    pub(super) buffering: AtomicBool,
}

impl Meter {
    /// Back to silence (a channel the song no longer has).
    pub(super) fn clear(&self) {
        self.peak.store(0, Ordering::Relaxed);
        self.rms.store(0, Ordering::Relaxed);
        self.buffering.store(false, Ordering::Relaxed);
    }

    /// A remote stem whose data was missing where the playhead needed it
    /// (it plays silence until the data arrives).
    pub fn buffering(&self) -> bool {
        self.buffering.load(Ordering::Relaxed)
    }
    /// The highest peak since the last [`Meter::take_peak`] (so a reader
    /// slower than the blocks misses no peak, and no clip).
    pub fn peak(&self) -> f32 {
        f32::from_bits(self.peak.load(Ordering::Relaxed))
    }
    /// The highest peak since the last take, and a fresh start (the window
    /// takes it once a frame).
    pub fn take_peak(&self) -> f32 {
        f32::from_bits(self.peak.swap(0, Ordering::Relaxed))
    }
    pub fn rms(&self) -> f32 {
        f32::from_bits(self.rms.load(Ordering::Relaxed))
    }
    pub(super) fn store(&self, peak: f32, rms: f32) {
        // Non-negative floats order as their bits do.
        self.peak.fetch_max(peak.abs().to_bits(), Ordering::Relaxed);
        self.rms.store(rms.to_bits(), Ordering::Relaxed);
    }
}

/// This peer's solo set: a local monitoring choice (not voted), written by
/// the control side and read by the engine at each block. When any stem is
/// soloed, only soloed stems sound.
#[derive(Debug)]
pub struct Solo {
    stems: Box<[AtomicBool]>,
    /// Bumped after every change, so the engine looks only when it moved.
    pub(super) generation: AtomicU64,
}

impl Solo {
    pub(super) fn new(stems: usize) -> Solo {
        Solo {
            stems: (0..stems).map(|_| AtomicBool::new(false)).collect(),
            generation: AtomicU64::new(0),
        }
    }

    /// Unsolos every channel.
    pub fn clear(&self) {
        for s in self.stems.iter() {
            s.store(false, Ordering::Relaxed);
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn is_soloed(&self, stem: usize) -> bool {
        self.stems
            .get(stem)
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }

    /// Solos or unsolos `stem`; false if there is no such stem.
    pub fn set(&self, stem: usize, on: bool) -> bool {
        let Some(s) = self.stems.get(stem) else {
            return false;
        };
        s.store(on, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Release);
        true
    }

    /// `gains` with every stem outside a non-empty solo set silenced.
    pub(super) fn mask(&self, gains: &MixGains) -> MixGains {
        let mut g = *gains;
        if self.stems.iter().any(|s| s.load(Ordering::Relaxed)) {
            for (i, s) in self.stems.iter().enumerate().take(MAX_STEMS) {
                if !s.load(Ordering::Relaxed) {
                    g.stems[i] = 0.0;
                }
            }
        }
        g
    }
}
