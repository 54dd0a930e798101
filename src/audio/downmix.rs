//! Any channel layout to the engine's stereo, with the standard downmix
//! coefficients (ITU-R BS.775): `Lo = L + 0.707·C + 0.707·Ls`, `Ro = R +
//! 0.707·C + 0.707·Rs`, the LFE left out. A mono file plays on both sides at
//! full level; stereo passes untouched. Layouts without positions (discrete
//! channels, ambisonics) keep their first two channels, as before.

use symphonia::core::audio::{Channels, Position};

/// −3 dB: how much of a centre or surround channel goes to a side.
const MINUS_3_DB: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// The left and right gain of each channel of a layout, in buffer order
/// (`Default`: no channels yet).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Downmix {
    gains: Vec<(f32, f32)>,
}

/// Where one positioned channel goes.
fn gains_of(p: Position) -> (f32, f32) {
    let left = Position::FRONT_LEFT | Position::FRONT_LEFT_CENTER | Position::FRONT_LEFT_WIDE;
    let right = Position::FRONT_RIGHT | Position::FRONT_RIGHT_CENTER | Position::FRONT_RIGHT_WIDE;
    let surround_left = Position::REAR_LEFT
        | Position::SIDE_LEFT
        | Position::TOP_FRONT_LEFT
        | Position::TOP_REAR_LEFT
        | Position::TOP_SIDE_LEFT
        | Position::BOTTOM_FRONT_LEFT;
    let surround_right = Position::REAR_RIGHT
        | Position::SIDE_RIGHT
        | Position::TOP_FRONT_RIGHT
        | Position::TOP_REAR_RIGHT
        | Position::TOP_SIDE_RIGHT
        | Position::BOTTOM_FRONT_RIGHT;
    if p == Position::FRONT_LEFT {
        (1.0, 0.0)
    } else if p == Position::FRONT_RIGHT {
        (0.0, 1.0)
    } else if p == Position::LFE1 || p == Position::LFE2 {
        (0.0, 0.0)
    } else if p == Position::FRONT_CENTER {
        (MINUS_3_DB, MINUS_3_DB)
    } else if left.contains(p) || surround_left.contains(p) {
        (MINUS_3_DB, 0.0)
    } else if right.contains(p) || surround_right.contains(p) {
        (0.0, MINUS_3_DB)
    } else {
        // Rear, top and bottom centres: half to each side.
        (0.5, 0.5)
    }
}

impl Downmix {
    /// The downmix of `channels`; `count` is the buffer's channel count (it
    /// wins if the layout disagrees with it).
    pub fn new(channels: &Channels, count: usize) -> Downmix {
        let mut gains: Vec<(f32, f32)> = match channels {
            Channels::Positioned(mask) if count > 2 || mask.bits().count_ones() > 2 => (0..32)
                .map(|bit| Position::from_bits_truncate(1 << bit))
                .filter(|p| !p.is_empty() && mask.contains(*p))
                .map(gains_of)
                .collect(),
            _ => vec![],
        };
        if gains.len() != count {
            // Mono on both sides; otherwise the first two channels.
            gains = match count {
                1 => vec![(1.0, 1.0)],
                n => (0..n)
                    .map(|i| match i {
                        0 => (1.0, 0.0),
                        1 => (0.0, 1.0),
                        _ => (0.0, 0.0),
                    })
                    .collect(),
            };
        }
        Downmix { gains }
    }

    pub fn channels(&self) -> usize {
        self.gains.len()
    }

    /// One interleaved frame of the source (`channels()` samples) as stereo.
    #[inline]
    pub fn frame(&self, frame: &[f32]) -> (f32, f32) {
        match (self.gains.len(), frame) {
            (1, [m, ..]) => (*m, *m),
            (2, [l, r, ..]) => (*l, *r),
            _ => frame
                .iter()
                .zip(&self.gains)
                .fold((0.0, 0.0), |(l, r), (x, (gl, gr))| (l + x * gl, r + x * gr)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_one_folds_centre_and_surrounds_at_minus_3_db_and_drops_the_lfe() {
        let layout = Position::FRONT_LEFT
            | Position::FRONT_RIGHT
            | Position::FRONT_CENTER
            | Position::LFE1
            | Position::REAR_LEFT
            | Position::REAR_RIGHT;
        let d = Downmix::new(&Channels::Positioned(layout), 6);
        // L R C LFE Ls Rs, in the canonical (bit) order.
        let (l, r) = d.frame(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!((l, r), (1.0, 0.0));
        let (l, r) = d.frame(&[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        assert!((l - MINUS_3_DB).abs() < 1e-6 && (r - MINUS_3_DB).abs() < 1e-6);
        assert_eq!(d.frame(&[0.0, 0.0, 0.0, 1.0, 0.0, 0.0]), (0.0, 0.0), "LFE");
        let (l, r) = d.frame(&[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        assert!(l == 0.0 && (r - MINUS_3_DB).abs() < 1e-6, "Rs");
    }

    #[test]
    fn mono_and_stereo_pass_and_unknown_layouts_keep_the_front_pair() {
        let mono = Downmix::new(&Channels::Positioned(Position::FRONT_CENTER), 1);
        assert_eq!(mono.frame(&[0.5]), (0.5, 0.5));
        let stereo = Downmix::new(
            &Channels::Positioned(Position::FRONT_LEFT | Position::FRONT_RIGHT),
            2,
        );
        assert_eq!(stereo.frame(&[0.25, -0.5]), (0.25, -0.5));
        let discrete = Downmix::new(&Channels::Discrete(4), 4);
        assert_eq!(discrete.frame(&[0.1, 0.2, 0.9, 0.9]), (0.1, 0.2));
        let lying = Downmix::new(&Channels::Positioned(Position::FRONT_LEFT), 3);
        assert_eq!(lying.channels(), 3);
    }
}
