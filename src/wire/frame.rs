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
pub const PROTOCOL_VERSION: u16 = 1;
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
        return Err(WireError::BadMagic {
            expected: MAGIC,
            found: buf[..have_magic].to_vec(),
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
        self.start += frame_len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(match parsed {
            Ok(value) => Next::Frame(value),
            Err(e) => Next::Dropped(e),
        })
    }
}
