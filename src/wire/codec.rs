//! The `Model` trait and the primitive encodings everything else is built from.
//!
//! Every value is big-endian. Variable-length values carry a length prefix and a
//! limit that is checked before anything is allocated:
//!
//! ```text
//! u8 u16 u32 u64 i64     1 2 4 8 8 bytes, big-endian (i64 two's complement)
//! f32 f64                IEEE 754 bits as u32/u64: every value, NaN payloads included,
//!                        round-trips bit-exactly; fields that forbid NaN/±inf say so
//! bool                   u8, 0 or 1 (anything else is an error)
//! char                   u32 Unicode scalar value
//! text                   u16 byte length, then UTF-8 bytes (length ≤ the field's limit)
//! bytes                  u32 byte length, then the bytes (length ≤ the field's limit)
//! list<T>                u16 element count, then the elements (count ≤ the field's limit)
//! option<T>              u8 0 (none) | 1 then T
//! [u8; N]                N bytes, no prefix
//! ```

use byteorder::{BigEndian, ByteOrder};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Default limit for a `String` encoded through its [`Model`] impl, in bytes.
pub const DEFAULT_MAX_TEXT_BYTES: usize = 4096;
/// Default limit for a `Vec<T>` encoded through its [`Model`] impl, in elements.
pub const DEFAULT_MAX_LIST_LEN: usize = 1024;

/// Everything that can go wrong while framing, encoding or decoding.
///
/// `Incomplete` is the only variant that means "wait for more bytes"; every other
/// variant means the bytes (or the value being encoded) are wrong. Variants name
/// the field they were found in: a message's fields by their dotted path
/// (`heartbeat.round`, `hello.proof`), and the fields of a nested structure by
/// that structure's own path (`event.volume.gain_db`, `state.duration_ns`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not enough bytes are buffered yet for a whole frame; not an error in the data.
    #[error("incomplete frame: {needed} more bytes needed")]
    Incomplete { needed: usize },
    /// The bytes do not start with the protocol magic: not a synfony peer. `found`
    /// holds the first `len` (≤ 4) bytes that arrived.
    #[error("not a synfony frame: it starts with {:02x?}, not the magic \"SYNF\"", &.found[..*.len])]
    BadMagic { found: [u8; 4], len: usize },
    /// The peer frames with another protocol version.
    #[error("peer speaks synfony protocol version {found}, this peer speaks version {ours}")]
    VersionMismatch { found: u16, ours: u16 },
    /// The frame's announced length is over `MAX_FRAME_LEN`; nothing was allocated for it.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLong { len: u64, max: usize },
    /// A field needs more bytes than the (complete) frame holds.
    #[error("{field}: truncated, needs {needed} bytes but only {remaining} remain")]
    Truncated {
        field: &'static str,
        needed: usize,
        remaining: usize,
    },
    /// A tagged union's code byte is not one this peer knows.
    #[error("{field}: unknown code {code:#04x}")]
    UnknownCode { field: &'static str, code: u8 },
    /// A text field holds bytes that are not UTF-8.
    #[error("{field}: invalid UTF-8")]
    InvalidUtf8 { field: &'static str },
    /// A length or count is over the field's limit.
    #[error("{field}: length {len} exceeds the limit of {max}")]
    TooLong {
        field: &'static str,
        len: u64,
        max: u64,
    },
    /// A float field that must be finite (or may only be −∞) holds NaN or an
    /// infinity (kept as its bits, so that errors compare equal).
    #[error("{field}: {} is not allowed here", f64::from_bits(*.value_bits))]
    NotFinite {
        field: &'static str,
        value_bits: u64,
    },
    /// Any other value outside its domain (a bool byte of 2, a surrogate char, an
    /// address family of 9, a negative position...).
    #[error("{field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    /// A complete message was decoded but bytes were left over in its frame.
    #[error("{field}: {count} unexpected bytes after the message")]
    TrailingBytes { field: &'static str, count: usize },
}

impl WireError {
    /// True when the only problem is that more bytes are needed.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, WireError::Incomplete { .. })
    }

    /// For a decoding error: true when the byte stream itself can no longer be
    /// trusted (bad magic, another version, an oversized frame), so the connection
    /// must be closed. Any other error is confined to one well-delimited frame,
    /// which the receiver drops and survives.
    pub fn breaks_stream(&self) -> bool {
        matches!(
            self,
            WireError::BadMagic { .. }
                | WireError::VersionMismatch { .. }
                | WireError::FrameTooLong { .. }
        )
    }

    /// The same error, reported against `field` (for a value whose type does not
    /// know which message field it fills: an option, an address, a round...).
    pub fn in_field(mut self, field: &'static str) -> Self {
        match &mut self {
            WireError::Truncated { field: f, .. }
            | WireError::UnknownCode { field: f, .. }
            | WireError::InvalidUtf8 { field: f }
            | WireError::TooLong { field: f, .. }
            | WireError::NotFinite { field: f, .. }
            | WireError::Invalid { field: f, .. }
            | WireError::TrailingBytes { field: f, .. } => *f = field,
            WireError::Incomplete { .. }
            | WireError::BadMagic { .. }
            | WireError::VersionMismatch { .. }
            | WireError::FrameTooLong { .. } => {}
        }
        self
    }

    /// A NaN or infinity found in `field`.
    pub fn not_finite(field: &'static str, value: f64) -> Self {
        WireError::NotFinite {
            field,
            value_bits: value.to_bits(),
        }
    }
}

/// A value with a hand-written, big-endian wire encoding.
///
/// `decode(encode(v)) == v` for every value `encode` accepts, and `decode` never
/// panics or allocates more than the bytes it is given justify, whatever they are.
pub trait Model: Sized {
    /// Appends the encoding of `self`. Fails only when `self` breaks a limit of the
    /// format (a text too long, a NaN where a field forbids it).
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError>;
    /// Reads one value from the front of `r`.
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError>;
}

/// Encodes `value` into a fresh buffer.
pub fn encode_to_vec<T: Model>(value: &T) -> Result<Vec<u8>, WireError> {
    let mut buf = Vec::new();
    value.encode(&mut Writer::new(&mut buf))?;
    Ok(buf)
}

/// Decodes exactly one `T` from `bytes`; leftover bytes are an error.
pub fn decode_exact<T: Model>(bytes: &[u8], field: &'static str) -> Result<T, WireError> {
    let mut r = Reader::new(bytes);
    let value = T::decode(&mut r)?;
    r.finish(field)?;
    Ok(value)
}

/// Appends big-endian values to a caller-owned buffer (so hot paths can reuse it).
pub struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Writer { buf }
    }

    /// Bytes written to the underlying buffer so far (including what it held before).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn put_u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn put_u16(&mut self, v: u16) {
        let mut b = [0; 2];
        BigEndian::write_u16(&mut b, v);
        self.buf.extend_from_slice(&b);
    }

    pub fn put_u32(&mut self, v: u32) {
        let mut b = [0; 4];
        BigEndian::write_u32(&mut b, v);
        self.buf.extend_from_slice(&b);
    }

    pub fn put_u64(&mut self, v: u64) {
        let mut b = [0; 8];
        BigEndian::write_u64(&mut b, v);
        self.buf.extend_from_slice(&b);
    }

    pub fn put_i64(&mut self, v: i64) {
        let mut b = [0; 8];
        BigEndian::write_i64(&mut b, v);
        self.buf.extend_from_slice(&b);
    }

    /// Any f32, bit-exact (NaN payloads and signed zeros included).
    pub fn put_f32(&mut self, v: f32) {
        let mut b = [0; 4];
        BigEndian::write_f32(&mut b, v);
        self.buf.extend_from_slice(&b);
    }

    /// Any f64, bit-exact (NaN payloads and signed zeros included).
    pub fn put_f64(&mut self, v: f64) {
        let mut b = [0; 8];
        BigEndian::write_f64(&mut b, v);
        self.buf.extend_from_slice(&b);
    }

    /// A finite f64; NaN and ±∞ are refused.
    pub fn put_finite_f64(&mut self, v: f64, field: &'static str) -> Result<(), WireError> {
        if !v.is_finite() {
            return Err(WireError::not_finite(field, v));
        }
        self.put_f64(v);
        Ok(())
    }

    pub fn put_bool(&mut self, v: bool) {
        self.put_u8(u8::from(v));
    }

    pub fn put_array<const N: usize>(&mut self, v: &[u8; N]) {
        self.buf.extend_from_slice(v);
    }

    /// Overwrites 4 bytes already written at `at` (used to patch a length prefix).
    pub(crate) fn patch_u32(&mut self, at: usize, v: u32) {
        BigEndian::write_u32(&mut self.buf[at..at + 4], v);
    }

    /// UTF-8 text with a u16 byte-length prefix, at most `max_bytes` long.
    pub fn put_text(
        &mut self,
        v: &str,
        max_bytes: usize,
        field: &'static str,
    ) -> Result<(), WireError> {
        let len = check_len(v.len(), max_bytes.min(u16::MAX as usize), field)?;
        self.put_u16(len as u16);
        self.buf.extend_from_slice(v.as_bytes());
        Ok(())
    }

    /// Opaque bytes with a u32 length prefix, at most `max_bytes` long.
    pub fn put_bytes(
        &mut self,
        v: &[u8],
        max_bytes: usize,
        field: &'static str,
    ) -> Result<(), WireError> {
        let len = check_len(v.len(), max_bytes.min(u32::MAX as usize), field)?;
        self.put_u32(len as u32);
        self.buf.extend_from_slice(v);
        Ok(())
    }

    /// A list with a u16 element-count prefix, at most `max_len` elements.
    pub fn put_list<T: Model>(
        &mut self,
        v: &[T],
        max_len: usize,
        field: &'static str,
    ) -> Result<(), WireError> {
        let len = check_len(v.len(), max_len.min(u16::MAX as usize), field)?;
        self.put_u16(len as u16);
        v.iter().try_for_each(|item| item.encode(self))
    }

    pub fn put<T: Model>(&mut self, v: &T) -> Result<(), WireError> {
        v.encode(self)
    }
}

fn check_len(len: usize, max: usize, field: &'static str) -> Result<usize, WireError> {
    if len > max {
        return Err(WireError::TooLong {
            field,
            len: len as u64,
            max: max as u64,
        });
    }
    Ok(len)
}

/// Reads big-endian values from the front of a complete, borrowed buffer.
///
/// Running out of bytes is [`WireError::Truncated`]: a `Reader` only ever sees a
/// whole frame's payload, so a short field is malformed data, not "wait for more".
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte has been consumed.
    pub fn finish(&self, field: &'static str) -> Result<(), WireError> {
        match self.buf.len() {
            0 => Ok(()),
            count => Err(WireError::TrailingBytes { field, count }),
        }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated {
                field,
                needed: n,
                remaining: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?[0])
    }

    pub fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(BigEndian::read_u16(self.take(2, field)?))
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(BigEndian::read_u32(self.take(4, field)?))
    }

    pub fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(BigEndian::read_u64(self.take(8, field)?))
    }

    pub fn i64(&mut self, field: &'static str) -> Result<i64, WireError> {
        Ok(BigEndian::read_i64(self.take(8, field)?))
    }

    pub fn f32(&mut self, field: &'static str) -> Result<f32, WireError> {
        Ok(BigEndian::read_f32(self.take(4, field)?))
    }

    pub fn f64(&mut self, field: &'static str) -> Result<f64, WireError> {
        Ok(BigEndian::read_f64(self.take(8, field)?))
    }

    /// A finite f64; NaN and ±∞ are [`WireError::NotFinite`].
    pub fn finite_f64(&mut self, field: &'static str) -> Result<f64, WireError> {
        let v = self.f64(field)?;
        if !v.is_finite() {
            return Err(WireError::not_finite(field, v));
        }
        Ok(v)
    }

    pub fn bool(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Invalid {
                field,
                reason: "a bool byte must be 0 or 1",
            }),
        }
    }

    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    /// UTF-8 text with a u16 byte-length prefix; over `max_bytes` is refused before
    /// anything is allocated.
    pub fn text(&mut self, max_bytes: usize, field: &'static str) -> Result<String, WireError> {
        let len = self.u16(field)? as usize;
        check_len(len, max_bytes, field)?;
        let bytes = self.take(len, field)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(WireError::InvalidUtf8 { field }),
        }
    }

    /// Opaque bytes with a u32 length prefix; over `max_bytes` is refused before
    /// anything is allocated, and so is a length longer than the bytes present.
    pub fn bytes(&mut self, max_bytes: usize, field: &'static str) -> Result<Vec<u8>, WireError> {
        let len = self.u32(field)? as usize;
        check_len(len, max_bytes, field)?;
        Ok(self.take(len, field)?.to_vec())
    }

    /// A list with a u16 count prefix, checked against `max_len`. Nothing is
    /// reserved from the (untrusted) count: the list grows with the elements that
    /// actually decode, so memory stays proportional to the bytes received.
    pub fn list<T: Model>(
        &mut self,
        max_len: usize,
        field: &'static str,
    ) -> Result<Vec<T>, WireError> {
        let len = self.u16(field)? as usize;
        check_len(len, max_len, field)?;
        let mut out = Vec::new();
        for _ in 0..len {
            out.push(T::decode(self)?);
        }
        Ok(out)
    }

    /// Decodes a nested value that names its own fields in errors.
    pub fn get<T: Model>(&mut self) -> Result<T, WireError> {
        T::decode(self)
    }

    /// Decodes a value of a general-purpose type (an option, an address, a round)
    /// and reports any error against the message field `field`.
    pub fn get_as<T: Model>(&mut self, field: &'static str) -> Result<T, WireError> {
        T::decode(self).map_err(|e| e.in_field(field))
    }
}

macro_rules! model_for_primitive {
    ($($t:ty => $put:ident, $get:ident;)*) => {$(
        impl Model for $t {
            fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
                w.$put(*self);
                Ok(())
            }
            fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
                r.$get(stringify!($t))
            }
        }
    )*};
}

model_for_primitive! {
    u8 => put_u8, u8;
    u16 => put_u16, u16;
    u32 => put_u32, u32;
    u64 => put_u64, u64;
    i64 => put_i64, i64;
    f32 => put_f32, f32;
    f64 => put_f64, f64;
    bool => put_bool, bool;
}

impl Model for char {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_u32(u32::from(*self));
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        char::from_u32(r.u32("char")?).ok_or(WireError::Invalid {
            field: "char",
            reason: "not a Unicode scalar value",
        })
    }
}

impl<const N: usize> Model for [u8; N] {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_array(self);
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.array("byte array")
    }
}

/// Text of at most [`DEFAULT_MAX_TEXT_BYTES`]; fields with their own limit call
/// [`Writer::put_text`] / [`Reader::text`] directly.
impl Model for String {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_text(self, DEFAULT_MAX_TEXT_BYTES, "text")
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.text(DEFAULT_MAX_TEXT_BYTES, "text")
    }
}

/// A list of at most [`DEFAULT_MAX_LIST_LEN`]; fields with their own limit call
/// [`Writer::put_list`] / [`Reader::list`] directly.
impl<T: Model> Model for Vec<T> {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.put_list(self, DEFAULT_MAX_LIST_LEN, "list")
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.list(DEFAULT_MAX_LIST_LEN, "list")
    }
}

impl<T: Model> Model for Option<T> {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        match self {
            None => {
                w.put_u8(0);
                Ok(())
            }
            Some(v) => {
                w.put_u8(1);
                v.encode(w)
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        match r.u8("option tag")? {
            0 => Ok(None),
            1 => Ok(Some(T::decode(r)?)),
            code => Err(WireError::UnknownCode {
                field: "option tag",
                code,
            }),
        }
    }
}

/// ```text
/// 0      1
/// | 4 u8 | ipv4 [4] | port u16 |       (7 bytes)
/// | 6 u8 | ipv6 [16] | port u16 |      (19 bytes)
/// ```
/// An IPv6 scope id or flow label is refused: it means nothing on another host,
/// and dropping it silently would break the round trip.
impl Model for SocketAddr {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        match self {
            SocketAddr::V4(a) => {
                w.put_u8(4);
                w.put_array(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                if a.scope_id() != 0 || a.flowinfo() != 0 {
                    return Err(WireError::Invalid {
                        field: "address",
                        reason: "an IPv6 scope id or flow label cannot be shared with peers",
                    });
                }
                w.put_u8(6);
                w.put_array(&a.ip().octets());
            }
        }
        w.put_u16(self.port());
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let ip = match r.u8("address family")? {
            4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>("ipv4 address")?)),
            6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>("ipv6 address")?)),
            code => {
                return Err(WireError::UnknownCode {
                    field: "address family",
                    code,
                });
            }
        };
        Ok(SocketAddr::new(ip, r.u16("port")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::Message;
    use crate::protocol::{Event, SessionState};

    /// Decoding `bytes` as `T` fails with exactly `expected`.
    #[track_caller]
    fn check_err<T: Model + std::fmt::Debug>(bytes: &[u8], expected: WireError) {
        assert_eq!(decode_exact::<T>(bytes, "test").unwrap_err(), expected);
    }

    /// Each kind of bad input gets a typed error that names the field.
    #[test]
    fn bad_input_gets_typed_errors() {
        let nan = f32::NAN.to_bits().to_be_bytes();
        let pos_inf = f32::INFINITY.to_bits().to_be_bytes();
        // A volume vote for the master with a NaN / +inf gain.
        let vol = |g: [u8; 4]| [&[4u8, 0xff, 0xff][..], &g].concat();
        check_err::<Event>(
            &vol(nan),
            WireError::not_finite("event.volume.gain_db", f64::from(f32::NAN)),
        );
        check_err::<Event>(
            &vol(pos_inf),
            WireError::not_finite("event.volume.gain_db", f64::INFINITY),
        );
        // −inf is silence, and allowed.
        let neg_inf = f32::NEG_INFINITY.to_bits().to_be_bytes();
        assert!(decode_exact::<Event>(&vol(neg_inf), "test").is_ok());

        check_err::<Event>(
            &[13],
            WireError::UnknownCode {
                field: "event.code",
                code: 13,
            },
        );
        check_err::<Message>(
            &[0xee],
            WireError::UnknownCode {
                field: "message.code",
                code: 0xee,
            },
        );
        check_err::<String>(
            &[0, 2, 0xc3, 0x28],
            WireError::InvalidUtf8 { field: "text" },
        );
        check_err::<String>(
            &[0xff, 0xff],
            WireError::TooLong {
                field: "text",
                len: 65535,
                max: DEFAULT_MAX_TEXT_BYTES as u64,
            },
        );
        check_err::<Vec<u8>>(
            &[0x10, 0x00],
            WireError::TooLong {
                field: "list",
                len: 4096,
                max: DEFAULT_MAX_LIST_LEN as u64,
            },
        );
        // A list that claims 3 elements but holds 1 is truncated, not over-allocated.
        check_err::<Vec<u32>>(
            &[0, 3, 0, 0, 0, 1],
            WireError::Truncated {
                field: "u32",
                needed: 4,
                remaining: 0,
            },
        );
        check_err::<bool>(
            &[2],
            WireError::Invalid {
                field: "bool",
                reason: "a bool byte must be 0 or 1",
            },
        );
        check_err::<char>(
            &0xd800u32.to_be_bytes(),
            WireError::Invalid {
                field: "char",
                reason: "not a Unicode scalar value",
            },
        );
        check_err::<Option<u8>>(
            &[2, 0],
            WireError::UnknownCode {
                field: "option tag",
                code: 2,
            },
        );
        check_err::<SocketAddr>(
            &[5, 1, 2, 3, 4, 0, 80],
            WireError::UnknownCode {
                field: "address family",
                code: 5,
            },
        );
        check_err::<u16>(
            &[1, 2, 3],
            WireError::TrailingBytes {
                field: "test",
                count: 1,
            },
        );
    }

    /// A snapshot from a hostile peer cannot smuggle in an impossible state.
    #[test]
    fn impossible_states_are_refused() {
        let mut st = SessionState::new(1_000, 1);
        st.song.duration_ns = -5;
        assert!(encode_to_vec(&st).is_err(), "a negative length is not sent");
        // A mixer that is not the song's: one channel for a song of two.
        let mut st = SessionState::new(1_000, 1);
        st.song.channels = 2;
        let bytes = encode_to_vec(&st).unwrap();
        check_err::<SessionState>(
            &bytes,
            WireError::Invalid {
                field: "state.channels",
                reason: "not one per stem of the song",
            },
        );
        let mut st = SessionState::new(1_000, 1);
        st.timeline.anchor_position_ns = 1_001;
        let bytes = encode_to_vec(&st).unwrap();
        check_err::<SessionState>(
            &bytes,
            WireError::Invalid {
                field: "state.anchor_position_ns",
                reason: "anchor outside the song",
            },
        );
    }

    /// Encoding refuses values that break the format's limits instead of sending
    /// bytes the peer would reject.
    #[test]
    fn encoding_enforces_limits() {
        let long = "x".repeat(DEFAULT_MAX_TEXT_BYTES + 1);
        assert!(matches!(
            encode_to_vec(&long),
            Err(WireError::TooLong { field: "text", .. })
        ));
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf);
        assert!(w.put_finite_f64(f64::NAN, "x").is_err());
        assert!(w.put_list(&[1u8, 2, 3], 2, "l").is_err());
        let nan_vote = Event::Volume {
            channel: crate::protocol::Channel::Master,
            gain_db: f32::NAN,
        };
        assert!(matches!(
            encode_to_vec(&nan_vote),
            Err(WireError::NotFinite { .. })
        ));
    }

    /// An IPv6 scope id cannot round-trip, so it is refused rather than dropped.
    #[test]
    fn scoped_ipv6_is_refused() {
        let scoped: SocketAddr = "[fe80::1%3]:7878".parse().unwrap();
        assert!(matches!(
            encode_to_vec(&scoped),
            Err(WireError::Invalid {
                field: "address",
                ..
            })
        ));
        let plain: SocketAddr = "[fe80::1]:7878".parse().unwrap();
        assert_eq!(
            decode_exact::<SocketAddr>(&encode_to_vec(&plain).unwrap(), "t"),
            Ok(plain)
        );
    }

    /// Errors read as one clear line naming the field.
    #[test]
    fn errors_name_the_field() {
        let e = WireError::TooLong {
            field: "hello.name",
            len: 70,
            max: 64,
        };
        assert_eq!(
            e.to_string(),
            "hello.name: length 70 exceeds the limit of 64"
        );
    }
}
