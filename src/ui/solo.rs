//! Which stems are soloed here, remembered by what they are rather than by
//! channel index: the index of a stem changes with the song's order (a
//! joiner plays the session's order, not its own files'), and between runs.
//! A stem is known by the hash the song gives it; a local stem whose hash
//! the window has not heard yet is known by its name, and taken over by its
//! hash as soon as the song names it. Pure: no peer, no window.

use serde::{Deserialize, Serialize};

use crate::protocol::hex;
use crate::protocol::message::StemHash;

/// A soloed stem, as [`super::Settings`] keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StemKey {
    /// The stem's content hash (hex), as the song names it.
    Hash(String),
    /// A stem known only by its name so far (a local file before the peer
    /// reported the song).
    Name(String),
}

/// What the window knows of one channel: its hash once the song is known,
/// and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelId {
    pub hash: Option<StemHash>,
    pub name: String,
}

impl ChannelId {
    /// The key to remember this channel's stem by: its hash if known.
    pub fn key(&self) -> StemKey {
        match &self.hash {
            Some(h) => StemKey::Hash(hex(h)),
            None => StemKey::Name(self.name.clone()),
        }
    }
}

impl StemKey {
    /// Whether this is the stem on channel `c`. A name matches a channel
    /// whether or not its hash is known (so a solo set before the song
    /// arrived finds its stem); a hash matches only a known hash.
    pub fn matches(&self, c: &ChannelId) -> bool {
        match self {
            StemKey::Hash(h) => c.hash.is_some_and(|ch| hex(&ch) == *h),
            StemKey::Name(n) => c.name == *n,
        }
    }
}

/// Remembers the stem on channel `c` as soloed (`on`) or not.
pub fn remember(soloed: &mut Vec<StemKey>, c: &ChannelId, on: bool) {
    soloed.retain(|k| !k.matches(c));
    if on {
        soloed.push(c.key());
    }
}

/// The indexes of `channels` whose stems are remembered as soloed, in
/// order. A stem remembered by name whose hash is now known is remembered
/// by its hash from here on.
pub fn restore(soloed: &mut Vec<StemKey>, channels: &[ChannelId]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, c) in channels.iter().enumerate() {
        if soloed.iter().any(|k| k.matches(c)) {
            out.push(i);
            if c.hash.is_some() {
                remember(soloed, c, true);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(name: &str) -> StemHash {
        let mut h = [0u8; 32];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h
    }

    /// Channels named `names`, with hashes when `hashed`.
    fn channels(names: &[&str], hashed: bool) -> Vec<ChannelId> {
        (names.iter())
            .map(|n| ChannelId {
                hash: hashed.then(|| hash(n)),
                name: n.to_string(),
            })
            .collect()
    }

    #[track_caller]
    fn check(soloed: &mut Vec<StemKey>, names: &[&str], hashed: bool, expected: &[usize]) {
        assert_eq!(restore(soloed, &channels(names, hashed)), expected);
    }

    /// A solo set on one song order lands on the same stem in another.
    #[test]
    fn a_solo_follows_its_stem_to_another_index() {
        let mut soloed = vec![];
        let first = channels(&["keys", "bass", "drums"], true);
        remember(&mut soloed, &first[0], true);
        assert_eq!(soloed, [StemKey::Hash(hex(&hash("keys")))]);
        check(&mut soloed, &["drums", "bass", "keys"], true, &[2]);
        check(&mut soloed, &["bass", "drums"], true, &[]);
    }

    /// A solo set before the song was known (by name) finds its stem once
    /// the song is known, and is kept by hash from then on.
    #[test]
    fn a_name_becomes_a_hash_once_the_song_names_it() {
        let mut soloed = vec![];
        remember(&mut soloed, &channels(&["bass", "drums"], false)[1], true);
        assert_eq!(soloed, [StemKey::Name("drums".into())]);
        check(&mut soloed, &["bass", "drums"], false, &[1]);
        check(&mut soloed, &["drums", "bass"], true, &[0]);
        assert_eq!(soloed, [StemKey::Hash(hex(&hash("drums")))]);
    }

    /// Unsoloing forgets the stem however it was remembered.
    #[test]
    fn unsolo_forgets_by_hash_and_by_name() {
        let mut soloed = vec![
            StemKey::Name("bass".into()),
            StemKey::Hash(hex(&hash("bass"))),
            StemKey::Name("keys".into()),
        ];
        remember(&mut soloed, &channels(&["bass"], true)[0], false);
        assert_eq!(soloed, [StemKey::Name("keys".into())]);
    }
}
