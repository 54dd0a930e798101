//! Decoding never allocates past MAX_FRAME_LEN, whatever the bytes claim.
//!
//! This test binary installs a counting global allocator that tracks, per thread,
//! the live heap bytes and their peak, so each decode's peak can be measured while
//! other tests run on other threads.

mod strategies;

use proptest::collection::vec;
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use strategies::config;
use synfony::protocol::message::{MAX_CHUNK_BYTES, Message};
use synfony::wire::{self, FrameBuffer, MAX_FRAME_LEN, Model, Reader};

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + size);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
}

fn note_dealloc(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(size)));
}

// SAFETY: delegates every call to the system allocator unchanged; the counters are
// const-initialised thread-locals that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_dealloc(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_dealloc(layout.size());
        note_alloc(new_size);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak heap bytes allocated on this thread while `f` runs, above what was live before.
fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(before));
    let r = f();
    (r, PEAK.with(Cell::get) - before)
}

proptest! {
    #![proptest_config(config(4096))]

    /// Arbitrary bytes, raw or behind a valid header: decoding allocates at most
    /// in proportion to the bytes it was given, never past MAX_FRAME_LEN.
    #[test]
    fn decoding_allocates_only_what_the_bytes_justify(
        bytes in prop_oneof![vec(any::<u8>(), 0..512), headed_bytes()],
    ) {
        let (_, peak) = peak_during(|| {
            let _ = Message::decode(&mut Reader::new(&bytes));
            if let Ok(len) = wire::check(&bytes) {
                let _ = wire::parse::<Message>(&bytes[..len]);
            }
        });
        prop_assert!(peak <= MAX_FRAME_LEN);
        prop_assert!(peak <= 8 * bytes.len() + 1024, "peak {peak} for {} input bytes", bytes.len());
    }
}

/// Random bytes behind a valid frame header with their true length.
fn headed_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 1..512).prop_map(|body| {
        let mut f = wire::MAGIC.to_vec();
        f.extend_from_slice(&wire::PROTOCOL_VERSION.to_be_bytes());
        f.extend_from_slice(&(body.len() as u32).to_be_bytes());
        f.extend_from_slice(&body);
        f
    })
}

/// The largest legal message (a full chunk) decodes within MAX_FRAME_LEN, and a
/// header announcing 4 GiB allocates nothing.
#[test]
fn worst_cases_stay_within_the_limit() {
    let chunk = Message::Room(synfony::protocol::message::Room {
        request_id: 1,
        op: synfony::protocol::message::Operation::ChunkData {
            stem: [7; 32],
            offset: 0,
            data: vec![0xab; MAX_CHUNK_BYTES],
        },
    });
    let mut bytes = Vec::new();
    wire::encode_frame(&chunk, &mut bytes).unwrap();
    let (parsed, peak) = peak_during(|| wire::parse::<Message>(&bytes));
    assert_eq!(parsed.unwrap(), chunk);
    assert!(peak <= MAX_FRAME_LEN, "peak {peak}");

    let mut huge = wire::MAGIC.to_vec();
    huge.extend_from_slice(&wire::PROTOCOL_VERSION.to_be_bytes());
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    let mut fb = FrameBuffer::new();
    fb.extend(&huge);
    let (next, peak) = peak_during(|| fb.next_frame::<Message>());
    assert!(matches!(next, Err(e) if e.breaks_stream()));
    assert_eq!(peak, 0, "refusing an oversized frame must not allocate");
}

/// One message of every kind, each with something variable-length in it.
fn one_of_each() -> Vec<Message> {
    use std::net::SocketAddr;
    use synfony::protocol::message::*;
    use synfony::protocol::*;
    let addr: SocketAddr = "127.0.0.1:7878".parse().unwrap();
    let stem = [3; 32];
    vec![
        Message::PeerList(PeerList {
            peers: vec![
                PeerInfo {
                    peer_id: PeerId(2),
                    name: "bass".into(),
                    addr
                };
                3
            ],
        }),
        Message::Heartbeat(Heartbeat {
            round: Round(9),
            vote: Event::Seek { position_ns: 5 },
            proof: Some(
                Signer::from_seed([3; 32])
                    .sign_vote(Round(9), Event::Seek { position_ns: 5 })
                    .proof,
            ),
            relayed: vec![Signer::from_seed([4; 32]).sign_vote(Round(8), Event::Pause)],
            decided: Some(DecidedDigest {
                round: Round(6),
                digest: 1,
                changed_round: Round(2),
            }),
            map: Some(SessionMap {
                anchor_local_ns: 1,
                anchor_session_ns: 2,
                rate: 1e-4,
            }),
            synced_at_session_ns: 0,
            clock: ClockStamps {
                sent_ns: 1,
                echo: Some(ClockEcho {
                    origin_ns: 2,
                    received_ns: 3,
                }),
            },
        }),
        Message::ClockPong(ClockPong {
            seq: 1,
            origin_ns: 2,
            received_ns: 3,
            sent_ns: 4,
        }),
        Message::Goodbye(Goodbye {
            reason: "done".into(),
        }),
        Message::Snapshot(Snapshot {
            round: Round(3),
            state: SessionState::new(10, 4),
            pending: vec![Signer::from_seed([1; 32]).sign_vote(Round(4), Event::Play)],
        }),
        Message::Room(Room {
            request_id: 1,
            op: Operation::ChunkData {
                stem,
                offset: 0,
                data: vec![9; 16],
            },
        }),
        Message::Room(Room {
            request_id: 2,
            op: Operation::ChunkRefused {
                stem,
                offset: 0,
                reason: "no".into(),
            },
        }),
    ]
}

/// Every length field lies: at every offset of every kind of message, a 2- or
/// 4-byte big number is written over the encoding, and the frame (with its true
/// length) is decoded. No decode may allocate more than the frame's bytes justify,
/// whatever the lengths inside claim.
#[test]
fn lying_lengths_never_drive_allocation() {
    let lies: [u32; 6] = [
        64,
        0xffff,
        MAX_CHUNK_BYTES as u32,
        MAX_CHUNK_BYTES as u32 - 1,
        1 << 20,
        u32::MAX,
    ];
    let mut decodes = 0;
    for msg in one_of_each() {
        let payload = synfony::wire::encode_to_vec(&msg).unwrap();
        for at in 0..payload.len() {
            for lie in lies {
                for width in [2usize, 4] {
                    let mut p = payload.clone();
                    let be = lie.to_be_bytes();
                    let bytes = &be[4 - width..];
                    let end = (at + width).min(p.len());
                    p[at..end].copy_from_slice(&bytes[..end - at]);
                    let mut frame = wire::MAGIC.to_vec();
                    frame.extend_from_slice(&wire::PROTOCOL_VERSION.to_be_bytes());
                    frame.extend_from_slice(&(p.len() as u32).to_be_bytes());
                    frame.extend_from_slice(&p);
                    let (_, peak) = peak_during(|| wire::parse::<Message>(&frame));
                    // A value can be ~4× larger in memory than on the wire (a
                    // PeerInfo: 17 bytes encoded, 64 in memory) and a growing Vec
                    // holds up to 2× its elements: 8× bounds an honest decode.
                    assert!(
                        peak <= 8 * frame.len() + 1024,
                        "{:?} with {lie:#x} ({width} bytes) at offset {at}: peak {peak} for a {}-byte frame",
                        msg.code(),
                        frame.len()
                    );
                    decodes += 1;
                }
            }
        }
    }
    assert!(decodes > 5_000);
}
