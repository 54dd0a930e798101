//! Sealed frames: how a frame travels once a link has its keys.
//!
//! ```text
//! 0        4             6                 10
//! | "SYNF" | version u16 | payload len u32 | ChaCha20-Poly1305(payload) | tag (16) |
//! ```
//!
//! The header is the plain frame's, its length counting the tag; the payload is
//! the frame's payload encrypted, the header its associated data. Each direction
//! of a link has its own key and counts its frames: the nonce of the n-th frame
//! is n (as in Noise: four zero bytes, then n little-endian), never sent. So a
//! frame that was modified, replayed, dropped, reordered or injected fails to
//! open, and the link must close ([`SealError`]). The keys come from the
//! handshake (`protocol::handshake`); the primitive from the `chacha20poly1305`
//! crate. Sans-IO, like the rest of this layer.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};

use super::codec::{Model, WireError};
use super::frame::{FRAME_HEADER_LEN, FrameBuffer, MAX_FRAME_LEN, encode_frame, parse};

/// The authentication tag after each sealed payload.
pub const TAG_LEN: usize = 16;

/// Why a sealed stream cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("a frame failed authentication (modified, replayed, reordered or forged)")]
    Forged,
    #[error("the link's frame counter is spent")]
    Exhausted,
    #[error(transparent)]
    Wire(#[from] WireError),
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    *Nonce::from_slice(&n)
}

/// The sending half of a link's keys: seals frames in order.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    next: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("next", &self.next).finish()
    }
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Sealer {
        Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
            next: 0,
        }
    }

    /// Appends `value` to `out` as one sealed frame. On error `out` is left as
    /// it was (and the counter is not spent).
    pub fn seal<T: Model>(&mut self, value: &T, out: &mut Vec<u8>) -> Result<(), SealError> {
        if self.next == u64::MAX {
            return Err(SealError::Exhausted);
        }
        let start = out.len();
        encode_frame(value, out)?;
        let frame_len = out.len() - start + TAG_LEN;
        if frame_len > MAX_FRAME_LEN {
            out.truncate(start);
            return Err(WireError::FrameTooLong {
                len: frame_len as u64,
                max: MAX_FRAME_LEN,
            }
            .into());
        }
        let payload_len = (frame_len - FRAME_HEADER_LEN) as u32;
        out[start + 6..start + FRAME_HEADER_LEN].copy_from_slice(&payload_len.to_be_bytes());
        let (header, payload) = out[start..].split_at_mut(FRAME_HEADER_LEN);
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce(self.next), header, payload)
            .map_err(|_| SealError::Forged)?;
        out.extend_from_slice(tag.as_slice());
        self.next += 1;
        Ok(())
    }
}

/// What [`Opener::next_frame`] found.
#[derive(Debug, PartialEq)]
pub enum Opened<T> {
    /// No whole frame is buffered yet.
    NeedMore,
    /// A frame was opened and decoded.
    Frame(T),
    /// A frame opened (its sender is the link's peer) but its payload is
    /// malformed: skipped, the link goes on.
    Dropped(WireError),
}

/// The receiving half of a link's keys, with its buffer: the owner of a socket
/// appends what it reads and takes out whole opened frames.
pub struct Opener {
    cipher: ChaCha20Poly1305,
    next: u64,
    frames: FrameBuffer,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("next", &self.next)
            .field("buffered", &self.frames.buffered())
            .finish()
    }
}

impl Opener {
    /// The receiving key, and bytes already read past the handshake.
    pub fn new(key: &[u8; 32], already: &[u8]) -> Opener {
        let mut frames = FrameBuffer::new();
        frames.extend(already);
        Opener {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
            next: 0,
            frames,
            scratch: Vec::new(),
        }
    }

    /// Appends bytes read from the stream.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.frames.extend(bytes);
    }

    /// Takes the next whole frame. `Err` means the link is broken (a frame
    /// that does not open, a broken frame header) and must close.
    pub fn next_frame<T: Model>(&mut self) -> Result<Opened<T>, SealError> {
        if self.next == u64::MAX {
            return Err(SealError::Exhausted);
        }
        // Opened in a copy of the frame: the buffer keeps reading on.
        if !self.frames.take_frame(&mut self.scratch)? {
            return Ok(Opened::NeedMore);
        }
        let Some(body_len) = self.scratch.len().checked_sub(FRAME_HEADER_LEN + TAG_LEN) else {
            return Err(SealError::Forged);
        };
        let tag = *Tag::from_slice(&self.scratch[FRAME_HEADER_LEN + body_len..]);
        self.scratch.truncate(FRAME_HEADER_LEN + body_len);
        let (header, payload) = self.scratch.split_at_mut(FRAME_HEADER_LEN);
        self.cipher
            .decrypt_in_place_detached(&nonce(self.next), header, payload, &tag)
            .map_err(|_| SealError::Forged)?;
        self.next += 1;
        // `parse` reads the payload after a header; the length in it is the
        // sealed one, which `parse` does not look at.
        Ok(match parse(&self.scratch) {
            Ok(value) => Opened::Frame(value),
            Err(e) => Opened::Dropped(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::{Goodbye, Message};

    fn bye(reason: &str) -> Message {
        Message::Goodbye(Goodbye {
            reason: reason.into(),
        })
    }

    fn pair() -> (Sealer, Opener) {
        (Sealer::new(&[7; 32]), Opener::new(&[7; 32], &[]))
    }

    /// Frames sealed in order open in order, whole or split anywhere.
    #[test]
    fn sealed_frames_open_in_order() {
        let (mut s, mut o) = pair();
        let mut out = Vec::new();
        for r in ["a", "bb", "ccc"] {
            s.seal(&bye(r), &mut out).unwrap();
        }
        for b in out.chunks(5) {
            o.extend(b);
        }
        for r in ["a", "bb", "ccc"] {
            assert_eq!(o.next_frame::<Message>(), Ok(Opened::Frame(bye(r))));
        }
        assert_eq!(o.next_frame::<Message>(), Ok(Opened::NeedMore));
    }

    /// A flipped bit anywhere, a replayed frame, a dropped one, or a frame
    /// sealed with another key breaks the stream.
    #[test]
    fn tampering_of_any_kind_breaks_the_stream() {
        let (mut s, _) = pair();
        let mut one = Vec::new();
        s.seal(&bye("one"), &mut one).unwrap();
        let mut two = Vec::new();
        s.seal(&bye("two"), &mut two).unwrap();
        for i in 0..one.len() {
            let mut bad = one.clone();
            bad[i] ^= 0x10;
            let mut o = Opener::new(&[7; 32], &bad);
            // A longer length waits for bytes that never open; anything
            // else fails at once.
            let r = o.next_frame::<Message>();
            assert!(
                r.is_err() || ((6..FRAME_HEADER_LEN).contains(&i) && r == Ok(Opened::NeedMore)),
                "a flip at byte {i} went unnoticed: {r:?}"
            );
        }
        let mut o = Opener::new(&[7; 32], &one);
        o.extend(&one);
        assert_eq!(o.next_frame::<Message>(), Ok(Opened::Frame(bye("one"))));
        assert_eq!(
            o.next_frame::<Message>(),
            Err(SealError::Forged),
            "a replay"
        );
        let mut o = Opener::new(&[7; 32], &two);
        assert_eq!(o.next_frame::<Message>(), Err(SealError::Forged), "a drop");
        let mut o = Opener::new(&[8; 32], &one);
        assert_eq!(
            o.next_frame::<Message>(),
            Err(SealError::Forged),
            "another key"
        );
    }

    /// A sealed payload that opens but does not decode is skipped; the next
    /// frame still opens.
    #[test]
    fn a_malformed_payload_from_the_peer_spoils_only_its_frame() {
        struct Raw(Vec<u8>);
        impl Model for Raw {
            fn encode(&self, w: &mut crate::wire::Writer<'_>) -> Result<(), WireError> {
                for b in &self.0 {
                    w.put_u8(*b);
                }
                Ok(())
            }
            fn decode(_: &mut crate::wire::Reader<'_>) -> Result<Self, WireError> {
                unreachable!()
            }
        }
        let (mut s, mut o) = pair();
        let mut out = Vec::new();
        s.seal(&Raw(vec![0xff, 1, 2]), &mut out).unwrap();
        s.seal(&bye("after"), &mut out).unwrap();
        o.extend(&out);
        assert!(matches!(o.next_frame::<Message>(), Ok(Opened::Dropped(_))));
        assert_eq!(o.next_frame::<Message>(), Ok(Opened::Frame(bye("after"))));
    }
}
