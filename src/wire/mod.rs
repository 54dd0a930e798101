//! The wire format, hand-written with byteorder (big-endian, no serde).
//!
//! [`codec`] defines the [`Model`] trait and the primitive encodings; [`frame`]
//! turns one model value into a length-prefixed frame and back. This layer knows
//! nothing of synfony's messages (those live in [`crate::protocol::message`]) and never does
//! I/O: it reads and writes byte buffers.
//!
//! Sending and receiving a message, as a connection does:
//!
//! ```
//! use synfony::protocol::message::{Goodbye, Message};
//! use synfony::wire::{FrameBuffer, Next, encode_frame};
//!
//! let bye = Message::Goodbye(Goodbye { reason: "set over".into() });
//! let mut out = Vec::new();
//! encode_frame(&bye, &mut out)?;
//!
//! // The receiver appends bytes as they arrive and takes out whole frames.
//! let mut inbox = FrameBuffer::new();
//! inbox.extend(&out[..5]);
//! assert_eq!(inbox.next_frame::<Message>()?, Next::NeedMore);
//! inbox.extend(&out[5..]);
//! assert_eq!(inbox.next_frame::<Message>()?, Next::Frame(bye));
//! # Ok::<(), synfony::wire::WireError>(())
//! ```

pub mod codec;
pub mod frame;
pub mod seal;

pub use codec::{Model, Reader, WireError, Writer, decode_exact, encode_to_vec};
pub use frame::{
    FRAME_HEADER_LEN, FrameBuffer, MAGIC, MAX_FRAME_LEN, Next, PROTOCOL_VERSION, check,
    encode_frame, parse,
};
