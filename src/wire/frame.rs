//! Framing: how one [`Model`] value travels on a byte stream.
//!
//! ```text
//! 0        4             6                 10
//! | "SYNF" | version u16 | payload len u32 | payload (len bytes: one message) |
//! ```
//!
//! Decoding is two-phase, as in mini-redis: [`check`] looks at the buffered bytes
//! without allocating and answers "a whole frame of N bytes", "incomplete" or
//! "this stream is broken"; only then does [`parse`] decode the payload. A stream
//! is broken by a wrong magic (checked on the very first bytes, so garbage is
//! refused before a full header arrives), another protocol version, or a length
//! over [`MAX_FRAME_LEN`] (refused before anything is allocated). A payload that
//! fails to decode spoils only its own frame: the next frame still parses.

use super::codec::{Model, Reader, WireError, Writer};
use byteorder::{BigEndian, ByteOrder};

/// The four bytes every frame starts with.
pub const MAGIC: [u8; 4] = *b"SYNF";
/// The version of the frame layout and message catalogue this build speaks.
pub const PROTOCOL_VERSION: u16 = 7;
/// Magic, version and length.
pub const FRAME_HEADER_LEN: usize = 10;
/// The largest whole frame (header included), in bytes. Room for a 256 KiB stem
/// chunk with ample headroom; a heartbeat is well under 100 bytes.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Phase one: is a whole frame at the front of `buf`? Returns its length in bytes
/// (header included). Never allocates.
pub fn check(buf: &[u8]) -> Result<usize, WireError> {
    let have_magic = buf.len().min(MAGIC.len());
    if buf[..have_magic] != MAGIC[..have_magic] {
        let mut found = [0; 4];
        found[..have_magic].copy_from_slice(&buf[..have_magic]);
        return Err(WireError::BadMagic {
            found,
            len: have_magic,
        });
    }
    if buf.len() >= 6 {
        let version = BigEndian::read_u16(&buf[4..6]);
        if version != PROTOCOL_VERSION {
            return Err(WireError::VersionMismatch {
                found: version,
                ours: PROTOCOL_VERSION,
            });
        }
    }
    if buf.len() < FRAME_HEADER_LEN {
        return Err(WireError::Incomplete {
            needed: FRAME_HEADER_LEN - buf.len(),
        });
    }
    let payload_len = u64::from(BigEndian::read_u32(&buf[6..10]));
    let frame_len = FRAME_HEADER_LEN as u64 + payload_len;
    if frame_len > MAX_FRAME_LEN as u64 {
        return Err(WireError::FrameTooLong {
            len: frame_len,
            max: MAX_FRAME_LEN,
        });
    }
    // Bounded by MAX_FRAME_LEN above, so this fits a usize on every platform.
    let frame_len = frame_len as usize;
    if buf.len() < frame_len {
        return Err(WireError::Incomplete {
            needed: frame_len - buf.len(),
        });
    }
    Ok(frame_len)
}

/// Phase two: decodes the payload of a frame that [`check`] accepted (`frame` is
/// exactly the frame's bytes). Leftover payload bytes are an error.
pub fn parse<T: Model>(frame: &[u8]) -> Result<T, WireError> {
    let payload = frame.get(FRAME_HEADER_LEN..).unwrap_or_default();
    let mut r = Reader::new(payload);
    let value = T::decode(&mut r)?;
    r.finish("frame payload")?;
    Ok(value)
}

/// Appends one frame holding `value` to `out`. On error `out` is left as it was.
pub fn encode_frame<T: Model>(value: &T, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    let result = write_frame(value, out, start);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn write_frame<T: Model>(value: &T, out: &mut Vec<u8>, start: usize) -> Result<(), WireError> {
    let mut w = Writer::new(out);
    w.put_array(&MAGIC);
    w.put_u16(PROTOCOL_VERSION);
    w.put_u32(0); // patched below
    value.encode(&mut w)?;
    let frame_len = w.len() - start;
    if frame_len > MAX_FRAME_LEN {
        return Err(WireError::FrameTooLong {
            len: frame_len as u64,
            max: MAX_FRAME_LEN,
        });
    }
    w.patch_u32(start + 6, (frame_len - FRAME_HEADER_LEN) as u32);
    Ok(())
}

/// What [`FrameBuffer::next_frame`] found.
#[derive(Debug, PartialEq)]
pub enum Next<T> {
    /// No whole frame is buffered yet.
    NeedMore,
    /// A frame was decoded.
    Frame(T),
    /// A whole frame was buffered but its payload is malformed; it has been
    /// skipped and the stream goes on.
    Dropped(WireError),
}

/// The receive side of one connection, sans-IO: the owner of a socket appends what
/// it reads and takes out whole frames.
///
/// It holds at most one partial frame plus whatever the caller appended at once,
/// because [`check`] refuses an oversized frame from its header alone.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    buf: Vec<u8>,
    start: usize,
}

impl FrameBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet taken.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Copies the next whole frame's bytes (header included) into `out`,
    /// replacing what was there; `false` if none is buffered yet. `Err` means
    /// the stream is broken, as for [`FrameBuffer::next_frame`].
    pub fn take_frame(&mut self, out: &mut Vec<u8>) -> Result<bool, WireError> {
        let pending = &self.buf[self.start..];
        let frame_len = match check(pending) {
            Ok(len) => len,
            Err(WireError::Incomplete { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        out.clear();
        out.extend_from_slice(&pending[..frame_len]);
        self.consume(frame_len);
        Ok(true)
    }

    fn consume(&mut self, frame_len: usize) {
        self.start += frame_len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Moves the bytes buffered and not yet taken to `out` (a stream that
    /// changes its framing after a handshake reads on from there).
    pub fn take_rest(mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.buf[self.start..]);
        self.buf.clear();
        self.start = 0;
    }

    /// Takes the next whole frame. `Err` means the stream is broken (see
    /// [`WireError::breaks_stream`]) and the connection must be closed.
    pub fn next_frame<T: Model>(&mut self) -> Result<Next<T>, WireError> {
        let pending = &self.buf[self.start..];
        let frame_len = match check(pending) {
            Ok(len) => len,
            Err(WireError::Incomplete { .. }) => return Ok(Next::NeedMore),
            Err(e) => return Err(e),
        };
        let parsed = parse(&pending[..frame_len]);
        self.consume(frame_len);
        Ok(match parsed {
            Ok(value) => Next::Frame(value),
            Err(e) => Next::Dropped(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::{Goodbye, Message};

    fn header(version: u16, payload_len: u32) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.extend_from_slice(&version.to_be_bytes());
        h.extend_from_slice(&payload_len.to_be_bytes());
        h
    }

    /// `check` answers each malformed or partial stream with the right variant.
    #[test]
    fn check_classifies_streams() {
        #[track_caller]
        fn check_case(bytes: &[u8], expected: Result<usize, WireError>) {
            assert_eq!(check(bytes), expected, "bytes {bytes:02x?}");
        }
        check_case(b"", Err(WireError::Incomplete { needed: 10 }));
        check_case(b"SY", Err(WireError::Incomplete { needed: 8 }));
        // Garbage is refused on its very first byte, without waiting for a header.
        check_case(
            b"G",
            Err(WireError::BadMagic {
                found: *b"G\0\0\0",
                len: 1,
            }),
        );
        check_case(
            b"GET / HTTP/1.1\r\n",
            Err(WireError::BadMagic {
                found: *b"GET ",
                len: 4,
            }),
        );
        check_case(
            &header(1, 0),
            Err(WireError::VersionMismatch {
                found: 1,
                ours: PROTOCOL_VERSION,
            }),
        );
        check_case(
            &header(PROTOCOL_VERSION, u32::MAX),
            Err(WireError::FrameTooLong {
                len: u64::from(u32::MAX) + 10,
                max: MAX_FRAME_LEN,
            }),
        );
        let biggest = (MAX_FRAME_LEN - FRAME_HEADER_LEN) as u32;
        check_case(
            &header(PROTOCOL_VERSION, biggest),
            Err(WireError::Incomplete {
                needed: biggest as usize,
            }),
        );
        check_case(
            &header(PROTOCOL_VERSION, biggest + 1),
            Err(WireError::FrameTooLong {
                len: MAX_FRAME_LEN as u64 + 1,
                max: MAX_FRAME_LEN,
            }),
        );
        let mut one = header(PROTOCOL_VERSION, 1);
        check_case(&one, Err(WireError::Incomplete { needed: 1 }));
        one.extend_from_slice(&[7, 99]);
        check_case(&one, Ok(11));
    }

    /// Stream-breaking errors are told apart from errors confined to one frame.
    #[test]
    fn only_framing_errors_break_the_stream() {
        assert!(check(b"X").unwrap_err().breaks_stream());
        assert!(check(&header(9, 0)).unwrap_err().breaks_stream());
        assert!(!check(b"SYNF").unwrap_err().breaks_stream());
        let mut frame = header(PROTOCOL_VERSION, 1);
        frame.push(0xee); // unknown message code
        assert!(!parse::<Message>(&frame).unwrap_err().breaks_stream());
    }

    /// A payload shorter than its message needs is "truncated" (invalid), not
    /// "incomplete": the frame said it was whole.
    #[test]
    fn short_payload_is_truncated_not_incomplete() {
        let mut frame = header(PROTOCOL_VERSION, 3);
        frame.extend_from_slice(&[4, 0, 0]); // a heartbeat cut inside its round
        assert_eq!(
            parse::<Message>(&frame),
            Err(WireError::Truncated {
                field: "heartbeat.round",
                needed: 8,
                remaining: 2
            })
        );
    }

    /// An encoder that would exceed MAX_FRAME_LEN refuses and leaves the buffer as it was.
    #[test]
    fn oversized_encode_is_refused_cleanly() {
        struct Huge;
        impl Model for Huge {
            fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
                w.put_array(&[0u8; MAX_FRAME_LEN]);
                Ok(())
            }
            fn decode(_: &mut Reader<'_>) -> Result<Self, WireError> {
                Ok(Huge)
            }
        }
        let mut out = vec![1, 2, 3];
        assert_eq!(
            encode_frame(&Huge, &mut out),
            Err(WireError::FrameTooLong {
                len: (MAX_FRAME_LEN + FRAME_HEADER_LEN) as u64,
                max: MAX_FRAME_LEN
            })
        );
        assert_eq!(out, vec![1, 2, 3]);
    }

    /// A stream that always leaves a partial frame pending (so the buffer is never
    /// empty) still has its consumed bytes reclaimed: memory stays bounded.
    #[test]
    fn frame_buffer_memory_stays_bounded() {
        let mut frame = Vec::new();
        encode_frame(
            &Message::Goodbye(Goodbye {
                reason: "x".repeat(100),
            }),
            &mut frame,
        )
        .unwrap();
        let mut fb = FrameBuffer::new();
        fb.extend(&frame[..7]);
        for _ in 0..10_000 {
            // The rest of the pending frame, then the start of the next one.
            fb.extend(&frame[7..]);
            fb.extend(&frame[..7]);
            assert!(matches!(fb.next_frame::<Message>(), Ok(Next::Frame(_))));
            assert_eq!(fb.next_frame::<Message>(), Ok(Next::NeedMore));
        }
        assert_eq!(fb.buffered(), 7);
        assert!(
            fb.buf.capacity() <= 4 * frame.len(),
            "{}",
            fb.buf.capacity()
        );
    }

    /// A field of a general-purpose type is reported against its message field.
    #[test]
    fn errors_name_the_message_field() {
        let mut payload = vec![7u8]; // goodbye
        payload.extend_from_slice(&[0, 2, 0xff, 0xfe]); // reason: not UTF-8
        let mut frame = header(PROTOCOL_VERSION, payload.len() as u32);
        frame.extend_from_slice(&payload);
        assert_eq!(
            parse::<Message>(&frame),
            Err(WireError::InvalidUtf8 {
                field: "goodbye.reason"
            })
        );
    }

    /// The frame buffer reports a broken stream.
    #[test]
    fn frame_buffer_reports_broken_stream() {
        let mut fb = FrameBuffer::new();
        let mut bytes = Vec::new();
        encode_frame(
            &Message::Goodbye(Goodbye { reason: "x".into() }),
            &mut bytes,
        )
        .unwrap();
        bytes.extend_from_slice(b"garbage");
        fb.extend(&bytes);
        assert!(matches!(fb.next_frame::<Message>(), Ok(Next::Frame(_))));
        assert!(matches!(
            fb.next_frame::<Message>(),
            Err(WireError::BadMagic { .. })
        ));
    }
}
