//! A link's cost (issue 23): one whole handshake, open and with a passphrase
//! (both sides, in memory: on loopback the round trips add tens of µs), and
//! sealing and opening stem data.
//!
//! `cargo bench --bench link`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use synfony::protocol::message::{Message, Operation, Room};
use synfony::runtime::handshake::{Handshake, LinkKeys};
use synfony::wire::seal::{Opened, Opener, Sealer};

/// Both sides of one handshake, to the end (each peer's keys are made once
/// a run, so they are not counted).
fn handshake(keys: &[LinkKeys; 2], passphrase: Option<&[u8]>) {
    let addr = "127.0.0.1:7878".parse().unwrap();
    let [dk, ak] = keys;
    let mut d = Handshake::dial(dk, dk.intro("p1", addr), passphrase).unwrap();
    let mut a = Handshake::accept(ak, ak.intro("p2", addr), passphrase);
    let (mut d_done, mut a_done) = (false, false);
    while !(d_done && a_done) {
        while let Some(f) = d.poll_transmit() {
            a_done |= a.handle(f).unwrap().is_some();
        }
        while let Some(f) = a.poll_transmit() {
            d_done |= d.handle(f).unwrap().is_some();
        }
    }
}

fn bench_handshake(c: &mut Criterion) {
    let keys = [LinkKeys::generate().unwrap(), LinkKeys::generate().unwrap()];
    let mut group = c.benchmark_group("handshake");
    group.bench_function("open", |b| b.iter(|| handshake(&keys, None)));
    group.bench_function("passphrase", |b| {
        b.iter(|| handshake(&keys, Some(black_box(b"our band"))))
    });
    group.finish();
}

/// A vote's signature: what casting one costs, and what checking one that
/// would be held costs (copies and full rounds are not checked).
fn bench_vote(c: &mut Criterion) {
    use synfony::protocol::{Event, Round, Signer};
    let signer = Signer::from_seed([7; 32]);
    let signed = signer.sign_vote(Round(17_280_000), Event::Play);
    let mut group = c.benchmark_group("vote");
    group.bench_function("sign", |b| {
        b.iter(|| signer.sign_vote(black_box(Round(17_280_000)), Event::Play))
    });
    group.bench_function("verify", |b| b.iter(|| black_box(&signed).verify()));
    group.finish();
}

fn bench_seal(c: &mut Criterion) {
    let chunk = Message::Room(Room {
        request_id: 1,
        op: Operation::ChunkData {
            stem: [9; 32],
            offset: 3 * 64 * 1024,
            data: (0..64 * 1024).map(|i| (i * 7) as u8).collect(),
        },
    });
    let mut sealer = Sealer::new(&[5; 32]);
    let mut opener = Opener::new(&[5; 32], &[]);
    let mut out = Vec::with_capacity(80 * 1024);
    let mut group = c.benchmark_group("stem data");
    group.throughput(Throughput::Bytes(64 * 1024));
    group.bench_function("seal and open 64 KiB", |b| {
        b.iter(|| {
            out.clear();
            sealer.seal(black_box(&chunk), &mut out).unwrap();
            opener.extend(&out);
            match opener.next_frame::<Message>() {
                Ok(Opened::Frame(m)) => black_box(m),
                other => panic!("{other:?}"),
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_handshake, bench_vote, bench_seal);
criterion_main!(benches);
