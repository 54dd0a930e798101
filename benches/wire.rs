//! Encoding and decoding one heartbeat: ns per operation, and bytes per heartbeat
//! (printed once, as it is a property of the layout, not a timing).
//!
//! `cargo bench --bench wire`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use synfony::protocol::message::{ClockEcho, ClockStamps, DecidedDigest, Heartbeat, Message};
use synfony::protocol::{Channel, Event, Round, SessionMap, Signer};
use synfony::wire::{self, FrameBuffer, Next};

fn signer(n: u8) -> Signer {
    Signer::from_seed([n; 32])
}

/// A steady-state heartbeat: a volume vote, one relayed vote, the decided digest,
/// the session map and a full clock echo.
fn heartbeat() -> Message {
    let vote = Event::Volume {
        channel: Channel::Stem(3),
        gain_db: -4.5,
    };
    Message::Heartbeat(Heartbeat {
        round: Round(17_280_000),
        vote,
        proof: Some(signer(1).sign_vote(Round(17_280_000), vote).proof),
        relayed: vec![signer(2).sign_vote(Round(17_279_999), Event::Pause)],
        decided: Some(DecidedDigest {
            round: Round(17_279_997),
            digest: 0x1234_5678_9abc_def0,
            changed_round: Round(17_279_000),
        }),
        map: Some(SessionMap {
            anchor_local_ns: 1_728_000_000_000_000,
            anchor_session_ns: 1_727_999_000_000_000,
            rate: 37e-6,
        }),
        synced_at_session_ns: 0,
        clock: ClockStamps {
            sent_ns: 1_728_000_123_456_789,
            echo: Some(ClockEcho {
                origin_ns: 1_728_000_023_456_789,
                received_ns: 1_728_000_073_456_789,
            }),
        },
    })
}

fn bench_heartbeat(c: &mut Criterion) {
    let hb = heartbeat();
    let mut frame = Vec::new();
    wire::encode_frame(&hb, &mut frame).expect("heartbeat encodes");
    println!("heartbeat frame: {} bytes (header included)", frame.len());

    let mut group = c.benchmark_group("heartbeat");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    let mut buf = Vec::with_capacity(128);
    group.bench_function("encode_frame", |b| {
        b.iter(|| {
            buf.clear();
            wire::encode_frame(black_box(&hb), &mut buf).expect("heartbeat encodes");
            black_box(buf.len())
        })
    });
    group.bench_function("check_and_parse", |b| {
        b.iter(|| {
            let bytes = black_box(&frame[..]);
            let len = wire::check(bytes).expect("whole frame");
            black_box(wire::parse::<Message>(&bytes[..len]).expect("parses"))
        })
    });
    group.bench_function("frame_buffer_round_trip", |b| {
        let mut fb = FrameBuffer::new();
        b.iter(|| {
            fb.extend(black_box(&frame));
            match fb.next_frame::<Message>() {
                Ok(Next::Frame(m)) => black_box(m),
                other => panic!("unexpected {other:?}"),
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_heartbeat);
criterion_main!(benches);
