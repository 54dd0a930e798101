//! The wire format, hand-written with byteorder (big-endian, no serde).
//!
//! [`codec`] defines the [`Model`] trait and the primitive encodings; [`frame`]
//! turns one model value into a length-prefixed frame and back. This layer knows
//! nothing of synfony's messages (those live in [`crate::message`]) and never does
//! I/O: it reads and writes byte buffers.

pub mod codec;
pub mod frame;

pub use codec::{Model, Reader, WireError, Writer, decode_exact, encode_to_vec};
pub use frame::{
    FRAME_HEADER_LEN, FrameBuffer, MAGIC, MAX_FRAME_LEN, Next, PROTOCOL_VERSION, check,
    encode_frame, parse,
};
