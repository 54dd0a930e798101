//! The library's merge is a join: commutative, associative, idempotent, and
//! indifferent to the order, duplication and batching of the records that
//! reach it — so peers that have received the same records agree.

mod strategies;

use proptest::collection::vec;
use proptest::prelude::*;
use synfony::library::{Library, Records};
use synfony::protocol::library::{SongId, SongRecord, StemRecord};

const SONG_NAMES: [&str; 3] = ["Solar", "Nardis", "So What"];

/// A record over a small universe of keys and values, so that libraries
/// built from them collide: same keys, same generations, different fields.
#[derive(Clone, Debug)]
enum Rec {
    Song(SongRecord),
    Stem(StemRecord),
}

fn rec() -> impl Strategy<Value = Rec> {
    let generation = 1u32..7;
    let song = (0usize..3, generation.clone(), any::<bool>()).prop_map(|(i, generation, upper)| {
        // Two spellings of one name: same id, different fields.
        let name = if upper {
            SONG_NAMES[i].to_uppercase()
        } else {
            SONG_NAMES[i].to_string()
        };
        Rec::Song(SongRecord {
            id: SongId::of_name(&name),
            generation,
            name,
        })
    });
    let stem = (0usize..3, 0u8..4, generation, 0usize..3, 1u64..3, 0u64..2).prop_map(
        |(i, h, generation, name, size_bytes, frames)| {
            Rec::Stem(StemRecord {
                song: SongId::of_name(SONG_NAMES[i]),
                hash: [h; 32],
                generation,
                name: ["bass", "drums", "keys"][name].into(),
                format: "wav".into(),
                size_bytes,
                frames,
            })
        },
    );
    prop_oneof![song, stem]
}

fn build(records: &[Rec]) -> Library {
    let mut lib = Library::new();
    for r in records {
        match r {
            Rec::Song(s) => lib.merge_song(s.clone()).unwrap(),
            Rec::Stem(s) => lib.merge_stem(s.clone()).unwrap(),
        };
    }
    lib
}

fn merged(a: &Library, b: &Library) -> Library {
    let mut m = a.clone();
    m.merge(b);
    m
}

fn library() -> impl Strategy<Value = Library> {
    vec(rec(), 0..12).prop_map(|r| build(&r))
}

proptest! {
    #![proptest_config(strategies::config(2000))]

    #[test]
    fn merging_is_commutative(a in library(), b in library()) {
        let (ab, ba) = (merged(&a, &b), merged(&b, &a));
        prop_assert_eq!(ab.digest(), ba.digest());
        prop_assert_eq!(ab, ba);
    }

    #[test]
    fn merging_is_associative(a in library(), b in library(), c in library()) {
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
    }

    #[test]
    fn merging_is_idempotent(a in library(), b in library()) {
        prop_assert_eq!(merged(&a, &a), a.clone());
        let ab = merged(&a, &b);
        prop_assert_eq!(merged(&ab, &b), ab);
    }

    /// Any order and duplication of the same records gives the same library.
    #[test]
    fn every_delivery_order_converges(
        records in vec(rec(), 0..24),
        order in Just(()).prop_perturb(|_, mut rng| rng.random::<u64>()),
        dups in vec(0usize..24, 0..8),
    ) {
        let mut shuffled = records.clone();
        for &d in &dups {
            if let Some(r) = records.get(d) {
                shuffled.push(r.clone());
            }
        }
        // A Fisher-Yates shuffle from the drawn seed.
        let mut s = order;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(build(&records), build(&shuffled));
    }

    /// Local adds and removes on two copies, then an exchange of what each
    /// changed: both end equal, and equal to merging the two libraries.
    #[test]
    fn local_changes_exchanged_converge(
        base in library(),
        ops_a in vec((0usize..3, any::<bool>(), 0u8..4), 0..6),
        ops_b in vec((0usize..3, any::<bool>(), 0u8..4), 0..6),
    ) {
        let apply = |lib: &mut Library, ops: &[(usize, bool, u8)]| -> Records {
            let mut all = Records::default();
            for &(song, add, h) in ops {
                let name = SONG_NAMES[song];
                let info = synfony::protocol::StemInfo::of_bytes("x", "wav", &[h; 3], 1);
                let changed = if add {
                    lib.add(name, &[info])
                } else {
                    lib.remove_song(SongId::of_name(name))
                };
                if let Ok(c) = changed {
                    all.songs.extend(c.songs);
                    all.stems.extend(c.stems);
                }
            }
            all
        };
        let (mut a, mut b) = (base.clone(), base.clone());
        let da = apply(&mut a, &ops_a);
        let db = apply(&mut b, &ops_b);
        let expect = merged(&a, &b);
        for s in db.songs { let _ = a.merge_song(s); }
        for s in db.stems { let _ = a.merge_stem(s); }
        for s in da.songs { let _ = b.merge_song(s); }
        for s in da.stems { let _ = b.merge_stem(s); }
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a, expect);
    }

    /// Whatever records a member sends, merging them never panics and the
    /// library keeps only records that pass their checks.
    #[test]
    fn arbitrary_records_never_panic(
        songs in vec(strategies::song_record(), 0..8),
        stems in vec(strategies::stem_record(), 0..8),
    ) {
        let mut lib = Library::new();
        for s in songs { let _ = lib.merge_song(s); }
        for s in stems { let _ = lib.merge_stem(s); }
        let records = lib.records();
        prop_assert!(records.songs.iter().all(|r| r.check().is_ok()));
        prop_assert!(records.stems.iter().all(|r| r.check().is_ok()));
    }
}
