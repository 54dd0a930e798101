//! Property tests of the wire format: every primitive and message round-trips,
//! and no sequence of bytes makes the decoders panic.

mod strategies;

use proptest::collection::vec;
use proptest::prelude::*;
use std::net::SocketAddr;
use strategies::*;
use synfony::protocol::message::Message;
use synfony::protocol::{
    Channel, ChannelState, Event, PeerId, Round, SessionMap, SessionState, Vote,
};
use synfony::wire::{
    self, FrameBuffer, MAX_FRAME_LEN, Model, Next, Reader, WireError, decode_exact, encode_to_vec,
};

/// Encodes `value`, decodes it back, and returns the result (and checks that the
/// decoder consumed exactly what the encoder wrote).
#[track_caller]
fn round_trip<T: Model>(value: &T) -> T {
    let bytes = encode_to_vec(value).expect("value must encode");
    decode_exact(&bytes, "test").expect("encoding must decode")
}

proptest! {
    #![proptest_config(config(4096))]

    /// Every integer, bool and char survives a round trip.
    #[test]
    fn integers_bools_and_chars_round_trip(a: u8, b: u16, c: u32, d: u64, e: i64, f: bool, g: char) {
        prop_assert_eq!(round_trip(&a), a);
        prop_assert_eq!(round_trip(&b), b);
        prop_assert_eq!(round_trip(&c), c);
        prop_assert_eq!(round_trip(&d), d);
        prop_assert_eq!(round_trip(&e), e);
        prop_assert_eq!(round_trip(&f), f);
        prop_assert_eq!(round_trip(&g), g);
    }

    /// Floats round-trip bit-exactly at any magnitude, NaN payloads included.
    #[test]
    fn floats_round_trip_bit_exactly(a_bits: u32, b_bits: u64) {
        let (a, b) = (f32::from_bits(a_bits), f64::from_bits(b_bits));
        prop_assert_eq!(round_trip(&a).to_bits(), a_bits);
        prop_assert_eq!(round_trip(&b).to_bits(), b_bits);
    }

    /// Strings, lists, options, arrays and addresses round-trip.
    #[test]
    fn containers_round_trip(
        s in text(4096),
        l in vec(any::<u32>(), 0..300),
        o in proptest::option::of(any::<i64>()),
        oo in proptest::option::of(proptest::option::of(any::<bool>())),
        arr in any::<[u8; 32]>(),
        addr in socket_addr(),
    ) {
        prop_assert_eq!(round_trip(&s), s);
        prop_assert_eq!(round_trip(&l), l);
        prop_assert_eq!(round_trip(&o), o);
        prop_assert_eq!(round_trip(&oo), oo);
        prop_assert_eq!(round_trip(&arr), arr);
        prop_assert_eq!(round_trip::<SocketAddr>(&addr), addr);
    }

    /// Session vocabulary round-trips (nested models).
    #[test]
    fn session_types_round_trip(
        p in peer_id(), r in round(), c in channel(), e in event(), v in vote(),
        cs in channel_state(), st in session_state(),
    ) {
        prop_assert_eq!(round_trip::<PeerId>(&p), p);
        prop_assert_eq!(round_trip::<Round>(&r), r);
        prop_assert_eq!(round_trip::<Channel>(&c), c);
        prop_assert_eq!(round_trip::<Event>(&e), e);
        prop_assert_eq!(round_trip::<Vote>(&v), v);
        prop_assert_eq!(round_trip::<ChannelState>(&cs), cs);
        prop_assert_eq!(round_trip::<SessionState>(&st), st);
    }

    /// Every message survives a frame round trip, alone and back to back.
    #[test]
    fn messages_round_trip_through_frames(msgs in vec(message(), 1..4)) {
        let mut bytes = Vec::new();
        for m in &msgs {
            wire::encode_frame(m, &mut bytes).expect("message must encode");
        }
        let mut rest = &bytes[..];
        for m in &msgs {
            let len = wire::check(rest).expect("whole frame buffered");
            prop_assert!(len <= MAX_FRAME_LEN);
            prop_assert_eq!(&wire::parse::<Message>(&rest[..len]).expect("frame parses"), m);
            rest = &rest[len..];
        }
        prop_assert!(rest.is_empty());
    }

    /// A frame delivered in arbitrary pieces is reassembled, and every prefix of
    /// it is "incomplete", never "invalid".
    #[test]
    fn split_frames_reassemble(m in message(), cuts in vec(any::<prop::sample::Index>(), 0..6)) {
        let mut bytes = Vec::new();
        wire::encode_frame(&m, &mut bytes).expect("message must encode");
        for cut in &cuts {
            let at = cut.index(bytes.len());
            prop_assert!(wire::check(&bytes[..at]).is_err_and(|e| e.is_incomplete()));
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len())).collect();
        points.push(bytes.len());
        points.sort_unstable();
        let mut fb = FrameBuffer::new();
        let mut got = Vec::new();
        let mut from = 0;
        for to in points {
            fb.extend(&bytes[from..to]);
            from = to;
            while let Next::Frame(msg) = fb.next_frame::<Message>().expect("stream intact") {
                got.push(msg);
            }
        }
        prop_assert_eq!(got, vec![m]);
        prop_assert_eq!(fb.buffered(), 0);
    }

    /// Arbitrary bytes never panic any decoder, and a frame check never claims
    /// more than MAX_FRAME_LEN. Half the cases start with a valid frame header (a
    /// true or a lying length) so the bytes get past the magic into parsing.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop_oneof![vec(any::<u8>(), 0..512), headed_bytes()]) {
        let _ = Message::decode(&mut Reader::new(&bytes));
        let _ = SessionState::decode(&mut Reader::new(&bytes));
        let _ = Vote::decode(&mut Reader::new(&bytes));
        if let Ok(len) = wire::check(&bytes) {
            prop_assert!(len <= MAX_FRAME_LEN && len <= bytes.len());
            let _ = wire::parse::<Message>(&bytes[..len]);
        }
        let mut fb = FrameBuffer::new();
        fb.extend(&bytes);
        for _ in 0..bytes.len() + 1 {
            match fb.next_frame::<Message>() {
                Ok(Next::NeedMore) | Err(_) => break,
                Ok(Next::Frame(_)) | Ok(Next::Dropped(_)) => {}
            }
        }
    }

    /// Arbitrary payloads behind a valid header (the harder case: past the magic,
    /// version and length checks) never panic, and errors are never "incomplete".
    #[test]
    fn arbitrary_payloads_never_panic(code in 0u8..12, body in vec(any::<u8>(), 0..256)) {
        let mut payload = vec![code];
        payload.extend_from_slice(&body);
        let mut frame = Vec::new();
        frame.extend_from_slice(&wire::MAGIC);
        frame.extend_from_slice(&wire::PROTOCOL_VERSION.to_be_bytes());
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        let len = wire::check(&frame).expect("header is valid");
        if let Err(e) = wire::parse::<Message>(&frame[..len]) {
            prop_assert!(!e.is_incomplete() && !e.breaks_stream(), "{e}");
        }
    }

    /// Mutating one byte of a valid frame never panics, and a frame that still
    /// parses re-encodes to exactly the same bytes (the encoding is canonical).
    #[test]
    fn mutated_frames_never_panic(m in message(), at in any::<prop::sample::Index>(), byte: u8) {
        let mut bytes = Vec::new();
        wire::encode_frame(&m, &mut bytes).expect("message must encode");
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(len) = wire::check(&bytes)
            && let Ok(parsed) = wire::parse::<Message>(&bytes[..len])
        {
            let mut again = Vec::new();
            wire::encode_frame(&parsed, &mut again).expect("decoded message re-encodes");
            prop_assert_eq!(&again[..], &bytes[..len]);
        }
    }
}

proptest! {
    #![proptest_config(config(1024))]

    /// Arbitrary bytes never panic a link's opener, and never open: nothing
    /// but frames sealed under the link's key gets through.
    #[test]
    fn arbitrary_bytes_never_open(bytes in prop_oneof![vec(any::<u8>(), 0..512), headed_bytes()]) {
        let mut o = synfony::wire::seal::Opener::new(&[3; 32], &bytes);
        for _ in 0..bytes.len() + 1 {
            match o.next_frame::<Message>() {
                Ok(synfony::wire::seal::Opened::NeedMore) | Err(_) => break,
                Ok(other) => prop_assert!(false, "{other:?} opened from random bytes"),
            }
        }
    }

    /// Whatever frames arrive during a handshake, in any order, neither side
    /// panics, and none is established by them.
    #[test]
    fn arbitrary_handshake_frames_never_panic(
        frames in vec(handshake_frame(), 0..6),
        passphrase in proptest::option::of(vec(any::<u8>(), 0..12)),
    ) {
        use synfony::runtime::handshake::{Handshake, LinkKeys};
        static KEYS: std::sync::OnceLock<[LinkKeys; 2]> = std::sync::OnceLock::new();
        let [ak, dk] = KEYS.get_or_init(|| [LinkKeys::generate().unwrap(), LinkKeys::generate().unwrap()]);
        let addr = "127.0.0.1:7878".parse().unwrap();
        let mut a = Handshake::accept(ak, ak.intro("victim", addr), passphrase.as_deref());
        let mut d = Handshake::dial(dk, dk.intro("dialer", addr), passphrase.as_deref())
            .expect("a dialer starts");
        for f in frames {
            prop_assert!(!matches!(a.handle(f.clone()), Ok(Some(_))));
            prop_assert!(!matches!(d.handle(f), Ok(Some(_))));
        }
    }
}

fn handshake_frame() -> impl Strategy<Value = synfony::runtime::handshake::HandshakeFrame> {
    use synfony::runtime::handshake::{HandshakeFrame, Refusal};
    prop_oneof![
        proptest::option::of(vec(any::<u8>(), 0..40))
            .prop_map(|pake| HandshakeFrame::Knock { pake }),
        vec(any::<u8>(), 0..40).prop_map(HandshakeFrame::Pake),
        vec(any::<u8>(), 0..200).prop_map(HandshakeFrame::Noise),
        Just(HandshakeFrame::Refuse(Refusal::Broken)),
    ]
}

/// Random bytes behind a valid frame header, whose length is true, short or long.
fn headed_bytes() -> impl Strategy<Value = Vec<u8>> {
    (vec(any::<u8>(), 0..512), 0u32..4, any::<u32>()).prop_map(|(body, mode, lie)| {
        let len = match mode {
            0 | 1 => body.len() as u32,
            2 => (body.len() as u32).saturating_sub(lie % 16),
            _ => lie,
        };
        let mut f = wire::MAGIC.to_vec();
        f.extend_from_slice(&wire::PROTOCOL_VERSION.to_be_bytes());
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(&body);
        f
    })
}

/// A malformed frame between two good ones is dropped with its error, and the
/// frames around it still arrive: the receiver survives an unknown operation code.
#[test]
fn receiver_survives_a_bad_frame_between_good_ones() {
    let good = Message::Goodbye(synfony::protocol::message::Goodbye {
        reason: "bye".into(),
    });
    let mut bytes = Vec::new();
    wire::encode_frame(&good, &mut bytes).unwrap();
    // A room message with operation code 0x7f, correctly framed.
    let bad_payload = [9u8, 0, 0, 0, 1, 0x7f];
    bytes.extend_from_slice(&wire::MAGIC);
    bytes.extend_from_slice(&wire::PROTOCOL_VERSION.to_be_bytes());
    bytes.extend_from_slice(&(bad_payload.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&bad_payload);
    wire::encode_frame(&good, &mut bytes).unwrap();

    let mut fb = FrameBuffer::new();
    fb.extend(&bytes);
    assert_eq!(fb.next_frame::<Message>(), Ok(Next::Frame(good.clone())));
    assert_eq!(
        fb.next_frame::<Message>(),
        Ok(Next::Dropped(WireError::UnknownCode {
            field: "room.op",
            code: 0x7f
        }))
    );
    assert_eq!(fb.next_frame::<Message>(), Ok(Next::Frame(good)));
    assert_eq!(fb.next_frame::<Message>(), Ok(Next::NeedMore));
}

/// A heartbeat's encoded size is small and fixed by its layout (the bench reports it).
#[test]
fn heartbeat_size_is_what_the_layout_says() {
    use synfony::protocol::message::{ClockEcho, ClockStamps, DecidedDigest, Heartbeat};
    let hb = Message::Heartbeat(Heartbeat {
        round: Round(1),
        vote: Event::Volume {
            channel: Channel::Stem(2),
            gain_db: -6.0,
        },
        proof: None,
        relayed: vec![],
        decided: Some(DecidedDigest {
            round: Round(0),
            digest: 7,
            changed_round: Round(0),
        }),
        map: Some(SessionMap {
            anchor_local_ns: 0,
            anchor_session_ns: 0,
            rate: 0.0,
        }),
        synced_at_session_ns: 0,
        clock: ClockStamps {
            sent_ns: 1,
            echo: Some(ClockEcho {
                origin_ns: 2,
                received_ns: 3,
            }),
        },
    });
    let mut bytes = Vec::new();
    wire::encode_frame(&hb, &mut bytes).unwrap();
    // header 10 + code 1 + round 8 + event (1 + 2 + 4) + proof 1 + relayed 2
    // + decided (1 + 24) + map (1 + 24) + synced_at 8 + clock (8 + 1 + 16)
    assert_eq!(bytes.len(), 10 + 1 + 8 + 7 + 1 + 2 + 25 + 25 + 8 + 25);
    // A vote's proof (key and signature) adds 96 bytes to a heartbeat that
    // carries one, and to each vote it relays.
    let Message::Heartbeat(mut hb) = hb else {
        unreachable!()
    };
    let signed = synfony::protocol::Signer::from_seed([1; 32]).sign_vote(hb.round, hb.vote);
    hb.proof = Some(signed.proof);
    hb.relayed = vec![signed];
    let mut with_proofs = Vec::new();
    wire::encode_frame(&Message::Heartbeat(hb), &mut with_proofs).unwrap();
    assert_eq!(with_proofs.len(), bytes.len() + 96 + (8 + 8 + 7 + 96));
}

/// A round past `Round::MAX` is refused on the wire (issue 19: a snapshot for
/// round `u64::MAX` once wrapped a joiner's round counter), so no peer adds to
/// a round it received and wraps.
#[test]
fn rounds_beyond_the_last_are_refused() {
    assert_eq!(round_trip(&Round::MAX), Round::MAX);
    for r in [Round::MAX.0 + 1, u64::MAX] {
        let bytes = r.to_be_bytes();
        assert!(
            matches!(
                decode_exact::<Round>(&bytes, "test"),
                Err(WireError::Invalid { field: "round", .. })
            ),
            "round {r}"
        );
    }
}
