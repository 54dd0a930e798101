//! The stem exchange (sans-IO): song sharing, serving only what was
//! announced, fetch order, spreading over hosts, failover and bad data.

use synfony::protocol::PeerId;
use synfony::protocol::message::{Operation, Room, StemHash};
use synfony::room::{Exchange, ExchangeConfig, ExchangeEvent, Focus, StemInfo, Transmit};

const A: PeerId = PeerId(1);
const B: PeerId = PeerId(2);
const C: PeerId = PeerId(3);

/// A 1 MiB "file" (16 chunks) of 160 s, so the 10 s window is one chunk... at
/// least two.
fn file() -> (Vec<u8>, StemInfo) {
    let bytes: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let info = StemInfo::of_bytes("drums", "flac", &bytes, 160 * 48_000);
    (bytes, info)
}

fn sent(x: &mut Exchange) -> Vec<Transmit> {
    std::iter::from_fn(|| x.poll_transmit()).collect()
}

fn events(x: &mut Exchange) -> Vec<ExchangeEvent> {
    std::iter::from_fn(|| x.poll_event()).collect()
}

fn requests(t: &[Transmit]) -> Vec<(PeerId, u32, u64)> {
    t.iter()
        .filter_map(|t| match t.room.op {
            Operation::ChunkRequest { offset, .. } => Some((t.to, t.room.request_id, offset)),
            _ => None,
        })
        .collect()
}

/// A joiner that learned the song from `hosts[0]` and hears every host has it.
fn joiner(info: &StemInfo, hosts: &[PeerId]) -> Exchange {
    let mut x = Exchange::new(ExchangeConfig::default(), None, []);
    for &h in hosts {
        x.handle_link_up(0, h);
    }
    x.handle_message(
        0,
        hosts[0],
        Room {
            request_id: 0,
            op: Operation::SongStem {
                index: 0,
                count: 1,
                info: info.clone(),
            },
        },
    );
    for &h in hosts {
        x.handle_message(
            0,
            h,
            Room {
                request_id: 0,
                op: Operation::Have {
                    stems: vec![info.hash],
                },
            },
        );
    }
    let ev = events(&mut x);
    assert!(
        matches!(&ev[0], ExchangeEvent::Song { stems, from: Some(f) } if stems == std::slice::from_ref(info) && *f == hosts[0]),
        "{ev:?}"
    );
    sent(&mut x);
    x
}

/// A decoder reading at chunk `cursor`, maybe blocked on `urgent`.
fn focus(cursor: usize, urgent: Option<usize>) -> Focus {
    Focus {
        cursor,
        urgent,
        hint: None,
    }
}

fn data(info: &StemInfo, bytes: &[u8], request_id: u32, offset: u64) -> Room {
    let k = (offset / u64::from(info.chunk_bytes())) as usize;
    let r = info.chunk_range(k);
    Room {
        request_id,
        op: Operation::ChunkData {
            stem: info.hash,
            offset,
            data: bytes[r.start as usize..r.end as usize].to_vec(),
        },
    }
}

#[test]
fn a_creator_shares_the_song_and_its_haves_on_link_up() {
    let (_, info) = file();
    let mut x = Exchange::new(
        ExchangeConfig::default(),
        Some(vec![info.clone()]),
        [info.clone()],
    );
    assert!(matches!(
        events(&mut x)[..],
        [ExchangeEvent::Song { from: None, .. }]
    ));
    x.handle_link_up(0, B);
    let t = sent(&mut x);
    assert_eq!(t.len(), 2);
    assert!(
        matches!(&t[0].room.op, Operation::SongStem { index: 0, count: 1, info: i } if *i == info)
    );
    assert!(matches!(&t[1].room.op, Operation::Have { stems } if stems == &vec![info.hash]));
}

#[test]
fn fetching_goes_in_playhead_order_urgent_first() {
    let (_, info) = file();
    let mut x = joiner(&info, &[A]);
    x.fetch(0, info.clone(), focus(4, None));
    let first: Vec<u64> = requests(&sent(&mut x)).iter().map(|r| r.2).collect();
    let c = u64::from(info.chunk_bytes());
    // The window (two chunks here) from the cursor, then the rest in order;
    // the rest leaves the host two of its eight slots.
    assert_eq!(first, vec![4 * c, 5 * c, 6 * c, 7 * c, 8 * c, 9 * c]);
    // The decoder blocks on chunk 14: it goes out at once, beyond the limits.
    x.set_focus(0, &info.hash, focus(4, Some(14)));
    assert_eq!(
        requests(&sent(&mut x))
            .iter()
            .map(|r| r.2)
            .collect::<Vec<_>>(),
        vec![14 * c]
    );
}

#[test]
fn two_hosts_share_the_load_and_one_dying_loses_nothing() {
    let (bytes, info) = file();
    let mut x = joiner(&info, &[A, B]);
    x.fetch(0, info.clone(), Focus::default());
    let reqs = requests(&sent(&mut x));
    let to_a = reqs.iter().filter(|r| r.0 == A).count();
    let to_b = reqs.iter().filter(|r| r.0 == B).count();
    assert!(to_a > 0 && to_b > 0, "{to_a} to A, {to_b} to B");
    // A dies: its requests go to B.
    x.handle_link_down(1, A);
    let again = requests(&sent(&mut x));
    assert!(again.iter().all(|r| r.0 == B));
    let mut pending: Vec<(PeerId, u32, u64)> =
        reqs.into_iter().filter(|r| r.0 == B).chain(again).collect();
    // B answers everything until the stem is complete.
    let mut got = 0u64;
    let mut complete = false;
    while let Some((peer, id, offset)) = pending.pop() {
        assert_eq!(peer, B);
        x.handle_message(2, B, data(&info, &bytes, id, offset));
        pending.extend(requests(&sent(&mut x)));
        for e in events(&mut x) {
            match e {
                ExchangeEvent::Chunk { data, .. } => got += data.len() as u64,
                ExchangeEvent::Complete { stem } if stem == info.hash => complete = true,
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(complete);
    assert_eq!(got, info.size_bytes, "every byte once");
    assert_eq!(x.stats().bytes_fetched, info.size_bytes);
}

#[test]
fn a_corrupt_chunk_is_refused_counted_and_fetched_again_elsewhere() {
    let (bytes, info) = file();
    let mut x = joiner(&info, &[A, B]);
    x.fetch(0, info.clone(), focus(0, Some(0)));
    let reqs = requests(&sent(&mut x));
    let (peer, id, offset) = reqs[0];
    assert_eq!(offset, 0);
    let mut bad = data(&info, &bytes, id, offset);
    if let Operation::ChunkData { data, .. } = &mut bad.op {
        data[100] ^= 0x40;
    }
    x.handle_message(1, peer, bad);
    assert_eq!(x.stats().bad_hash, 1);
    assert!(matches!(
        events(&mut x)[..],
        [ExchangeEvent::Refused { .. }]
    ));
    let retry = requests(&sent(&mut x));
    let other = if peer == A { B } else { A };
    assert!(retry.iter().any(|r| r.2 == 0 && r.0 == other), "{retry:?}");
}

#[test]
fn wrong_lengths_and_unasked_data_are_refused_and_counted() {
    let (bytes, info) = file();
    let mut x = joiner(&info, &[A]);
    x.fetch(0, info.clone(), Focus::default());
    let reqs = requests(&sent(&mut x));
    let (_, id, offset) = reqs[0];
    // Over-long.
    let mut long = data(&info, &bytes, id, offset);
    if let Operation::ChunkData { data, .. } = &mut long.op {
        data.push(0);
    }
    x.handle_message(1, A, long);
    assert_eq!(x.stats().bad_length, 1);
    // No such request; a hash we never asked for; a peer we did not ask.
    x.handle_message(1, A, data(&info, &bytes, 9999, 0));
    let mut other_hash = data(&info, &bytes, reqs[1].1, reqs[1].2);
    if let Operation::ChunkData { stem, .. } = &mut other_hash.op {
        *stem = [9; 32];
    }
    x.handle_message(1, A, other_hash);
    x.handle_message(1, C, data(&info, &bytes, reqs[2].1, reqs[2].2));
    assert_eq!(x.stats().unexpected, 3);
    assert_eq!(x.stats().chunks_fetched, 0);
}

#[test]
fn only_announced_stems_are_served_and_only_inside_the_file() {
    let (_, info) = file();
    let mut x = Exchange::new(
        ExchangeConfig::default(),
        Some(vec![info.clone()]),
        [info.clone()],
    );
    x.handle_link_up(0, B);
    sent(&mut x);
    events(&mut x);
    let ask = |stem: StemHash, offset: u64, len: u32| Room {
        request_id: 7,
        op: Operation::ChunkRequest { stem, offset, len },
    };
    // A hash nobody announced, one made of a path's bytes, past the end.
    let mut path_hash = [0u8; 32];
    path_hash[..11].copy_from_slice(b"/etc/passwd");
    for (stem, offset) in [
        ([1; 32], 0),
        (path_hash, 0),
        (info.hash, info.size_bytes - 10),
    ] {
        x.handle_message(1, B, ask(stem, offset, 65_536));
        let t = sent(&mut x);
        assert!(
            matches!(
                &t[..],
                [Transmit {
                    to: B,
                    room: Room {
                        request_id: 7,
                        op: Operation::ChunkRefused { .. }
                    }
                }]
            ),
            "{t:?}"
        );
    }
    assert_eq!(x.stats().refused_by_us, 3);
    assert!(events(&mut x).is_empty());
    x.handle_message(1, B, ask(info.hash, 65_536, 65_536));
    assert_eq!(
        events(&mut x),
        vec![ExchangeEvent::Serve {
            to: B,
            request_id: 7,
            stem: info.hash,
            offset: 65_536,
            len: 65_536
        }]
    );
}

/// A requester that asks faster than it is served is refused as busy past
/// `MAX_SERVES_PER_PEER` reads under way, and served again once reads come
/// back; all requesters together get at most `MAX_SERVES`.
#[test]
fn reads_under_way_are_bounded_per_requester_and_in_all() {
    use synfony::room::exchange::{MAX_SERVES, MAX_SERVES_PER_PEER};
    let (_, info) = file();
    let mut x = Exchange::new(
        ExchangeConfig::default(),
        Some(vec![info.clone()]),
        [info.clone()],
    );
    let c = u64::from(info.chunk_bytes());
    let ask = |x: &mut Exchange, from: PeerId, id: u32| {
        let k = u64::from(id) % info.chunks() as u64;
        let len = (info.size_bytes - k * c).min(c) as u32;
        let room = Room {
            request_id: id,
            op: Operation::ChunkRequest {
                stem: info.hash,
                offset: k * c,
                len,
            },
        };
        x.handle_message(1, from, room);
        let served = events(x)
            .iter()
            .filter(|e| matches!(e, ExchangeEvent::Serve { .. }))
            .count();
        let refused = sent(x)
            .iter()
            .filter(|t| matches!(t.room.op, Operation::ChunkRefused { .. }))
            .count();
        assert_eq!(served + refused, 1);
        served == 1
    };
    x.handle_link_up(0, B);
    sent(&mut x);
    events(&mut x);
    for id in 0..MAX_SERVES_PER_PEER as u32 {
        assert!(ask(&mut x, B, id), "request {id}");
    }
    assert!(!ask(&mut x, B, 100), "busy");
    assert_eq!(x.stats().refused_by_us, 1);
    x.handle_served(B);
    assert!(ask(&mut x, B, 101), "one came back");
    assert!(!ask(&mut x, B, 102));

    // Many requesters: the total holds.
    let mut served = MAX_SERVES_PER_PEER;
    for p in 10..(10 + 2 * MAX_SERVES / MAX_SERVES_PER_PEER) as u64 {
        x.handle_link_up(0, PeerId(p));
        sent(&mut x);
        for id in 0..MAX_SERVES_PER_PEER as u32 {
            served += usize::from(ask(&mut x, PeerId(p), id));
        }
    }
    assert_eq!(served, MAX_SERVES);
}

#[test]
fn timeouts_move_requests_to_another_host() {
    let (_, info) = file();
    let cfg = ExchangeConfig::default();
    let mut x = joiner(&info, &[A, B]);
    x.fetch(0, info.clone(), focus(0, Some(0)));
    let first = requests(&sent(&mut x));
    let silent = first.iter().find(|r| r.2 == 0).unwrap().0;
    let (bytes, _) = file();
    for &(peer, id, offset) in first.iter().filter(|r| r.0 != silent) {
        x.handle_message(1, peer, data(&info, &bytes, id, offset));
    }
    sent(&mut x);
    assert_eq!(x.poll_timeout(), Some(cfg.request_timeout_ns));
    x.handle_timeout(cfg.request_timeout_ns);
    assert!(x.stats().timeouts > 0);
    let again = requests(&sent(&mut x));
    let retry = again.iter().find(|r| r.2 == 0).unwrap();
    assert_ne!(retry.0, silent, "the silent host has a strike");
}

#[test]
fn a_song_that_differs_from_ours_is_counted_and_ignored() {
    let (_, info) = file();
    let mut x = Exchange::new(ExchangeConfig::default(), Some(vec![info.clone()]), []);
    events(&mut x);
    let mut other = info.clone();
    other.name = "not drums".into();
    x.handle_message(
        0,
        B,
        Room {
            request_id: 0,
            op: Operation::SongStem {
                index: 0,
                count: 1,
                info: other,
            },
        },
    );
    assert_eq!(x.stats().song_conflicts, 1);
    assert_eq!(x.song(), Some(&[info][..]));
}

#[test]
fn a_late_answer_after_a_timeout_is_taken_not_refused() {
    let (bytes, info) = file();
    let cfg = ExchangeConfig::default();
    let mut x = joiner(&info, &[A]);
    x.fetch(0, info.clone(), Focus::default());
    let first = requests(&sent(&mut x));
    x.handle_timeout(cfg.request_timeout_ns);
    let again = requests(&sent(&mut x));
    assert!(!again.is_empty(), "asked again");
    // The first answers arrive after all, then the second ones.
    for &(peer, id, offset) in first.iter().chain(&again) {
        x.handle_message(
            cfg.request_timeout_ns + 1,
            peer,
            data(&info, &bytes, id, offset),
        );
    }
    assert_eq!(x.stats().unexpected, 0);
    assert_eq!(x.stats().chunks_fetched as usize, first.len());
}

#[test]
fn a_completed_stem_can_have_chunks_fetched_again_until_done() {
    let (bytes, info) = file();
    let mut x = joiner(&info, &[A]);
    x.fetch(0, info.clone(), Focus::default());
    let mut pending = requests(&sent(&mut x));
    while let Some((peer, id, offset)) = pending.pop() {
        x.handle_message(1, peer, data(&info, &bytes, id, offset));
        pending.extend(requests(&sent(&mut x)));
    }
    assert!(events(&mut x).contains(&ExchangeEvent::Complete { stem: info.hash }));
    // The whole file failed its hash: chunk 3 is asked for again.
    x.refetch(2, &info.hash, 3);
    let c = u64::from(info.chunk_bytes());
    assert_eq!(
        requests(&sent(&mut x))
            .iter()
            .map(|r| r.2)
            .collect::<Vec<_>>(),
        vec![3 * c]
    );
    x.done(&info.hash);
    x.refetch(3, &info.hash, 4);
    assert!(requests(&sent(&mut x)).is_empty(), "done: nothing more");
}

/// A stem of a library song (not the start song): its description is
/// asked of the hosts that have it, answered only by a host that serves
/// it, taken once; an answer nobody asked for is counted.
#[test]
fn a_stems_description_is_asked_of_its_hosts() {
    let (_, info) = file();
    // A host serving it answers an info request, and only for what it serves.
    let mut host = Exchange::new(ExchangeConfig::default(), None, [info.clone()]);
    host.handle_link_up(0, B);
    sent(&mut host);
    for (stem, answered) in [(info.hash, true), ([7; 32], false)] {
        host.handle_message(
            0,
            B,
            Room {
                request_id: 0,
                op: Operation::InfoRequest { stem },
            },
        );
        let t = sent(&mut host);
        assert_eq!(
            t.iter()
                .any(|t| matches!(&t.room.op, Operation::Info { info: i } if *i == info)),
            answered
        );
    }
    // A fetcher with no song: asks every linked host of the hash, once.
    let mut x = Exchange::new(ExchangeConfig::default(), None, []);
    for h in [A, B] {
        x.handle_link_up(0, h);
    }
    x.handle_message(
        0,
        A,
        Room {
            request_id: 0,
            op: Operation::Have {
                stems: vec![info.hash],
            },
        },
    );
    sent(&mut x);
    x.want_info(1, info.hash);
    let asked: Vec<PeerId> = (sent(&mut x).iter())
        .filter(|t| matches!(t.room.op, Operation::InfoRequest { stem } if stem == info.hash))
        .map(|t| t.to)
        .collect();
    assert_eq!(asked, [A], "only A has it");
    // B says it has it too: asked as well.
    x.handle_message(
        2,
        B,
        Room {
            request_id: 0,
            op: Operation::Have {
                stems: vec![info.hash],
            },
        },
    );
    assert!(
        sent(&mut x)
            .iter()
            .any(|t| t.to == B && matches!(t.room.op, Operation::InfoRequest { .. }))
    );
    let answer = |x: &mut Exchange, from| {
        x.handle_message(
            3,
            from,
            Room {
                request_id: 0,
                op: Operation::Info { info: info.clone() },
            },
        )
    };
    answer(&mut x, A);
    assert_eq!(events(&mut x), vec![ExchangeEvent::Info(info.clone())]);
    // The second answer is not asked for any more (and not fetched): counted.
    answer(&mut x, B);
    assert_eq!(x.stats().unexpected, 1);
}
