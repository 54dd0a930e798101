use super::*;
use crate::protocol::PeerId;
use crate::protocol::library::SongId;

fn stem(name: &str, byte: u8) -> StemInfo {
    StemInfo::of_bytes(name, "wav", &[byte; 100], 48_000)
}

fn names(lib: &Library) -> Vec<(String, Vec<String>)> {
    (lib.songs().iter())
        .map(|s| {
            let stems = s.stems.iter().map(|r| r.name.clone()).collect();
            (s.record.name.clone(), stems)
        })
        .collect()
}

#[test]
fn each_musician_brings_a_stem_to_one_song() {
    let (mut bassist, mut singer) = (Library::new(), Library::new());
    bassist.add("Blue in Green", &[stem("bass", 1)]).unwrap();
    singer
        .add("blue in green", &[stem("vocals", 2), stem("bass", 1)])
        .unwrap();
    let mut a = bassist.clone();
    a.merge(&singer);
    let mut b = singer.clone();
    b.merge(&bassist);
    assert_eq!(a, b);
    assert_eq!(a.digest(), b.digest());
    // One song, and the same file from two peers is one stem.
    assert_eq!(
        names(&a),
        vec![("Blue in Green".into(), vec!["bass".into(), "vocals".into()])]
    );
}

#[test]
fn adding_twice_changes_nothing_and_remove_takes_the_stems_out() {
    let mut lib = Library::new();
    let first = lib
        .add("So What", &[stem("drums", 1), stem("keys", 2)])
        .unwrap();
    assert_eq!(first.len(), 3);
    assert!(lib.add("So What", &[stem("drums", 1)]).unwrap().is_empty());
    let id = lib.find_song("so what").unwrap();
    let keys = lib.find_stem(id, "keys").unwrap();
    lib.remove(id, Some(keys));
    assert_eq!(names(&lib), vec![("So What".into(), vec!["drums".into()])]);
    lib.remove_song(id).unwrap();
    assert!(lib.songs().is_empty());
    assert!(matches!(lib.remove_song(id), Err(LibraryError::NoSong(_))));
    // Added again: the song comes back with the stems given, not the removed ones.
    lib.add("So What", &[stem("bass", 3)]).unwrap();
    assert_eq!(names(&lib), vec![("So What".into(), vec!["bass".into()])]);
}

impl Library {
    fn remove(&mut self, id: SongId, stem: Option<StemHash>) {
        match stem {
            Some(h) => self.remove_stem(id, h).unwrap(),
            None => self.remove_song(id).unwrap(),
        };
    }
}

#[test]
fn a_stem_added_while_its_song_is_removed_elsewhere_stays_with_the_song() {
    let mut a = Library::new();
    a.add("Nardis", &[stem("piano", 1)]).unwrap();
    let mut b = a.clone();
    a.remove_song(SongId::of_name("Nardis")).unwrap();
    b.add("Nardis", &[stem("bass", 2)]).unwrap();
    a.merge(&b);
    b.merge(&a);
    assert_eq!(a, b);
    // Removed: the removal saw the song present.
    assert!(a.songs().is_empty());
    // Added again, the stem nobody removed is back; the removed one is not.
    a.add("Nardis", &[]).unwrap();
    assert_eq!(names(&a), vec![("Nardis".into(), vec!["bass".into()])]);
}

#[test]
fn songs_are_found_by_name_or_id_prefix() {
    let mut lib = Library::new();
    lib.add("Solar", &[stem("a", 1)]).unwrap();
    let id = SongId::of_name("Solar");
    assert_eq!(lib.find_song("SOLAR"), Ok(id));
    assert_eq!(lib.find_song(&id.hex()[..6]), Ok(id));
    assert_eq!(
        lib.find_song(&id.hex()[..5]),
        Err(LibraryError::NoSong(id.hex()[..5].into()))
    );
    assert!(matches!(
        lib.find_song("Blue"),
        Err(LibraryError::NoSong(_))
    ));
    assert_eq!(lib.find_stem(id, "0"), lib.find_stem(id, "a"));
}

#[test]
fn the_limits_hold_and_say_why() {
    let mut lib = Library::new();
    for i in 0..MAX_SONGS {
        lib.add(&format!("song {i}"), &[]).unwrap();
    }
    assert_eq!(lib.add("one more", &[]), Err(LibraryError::TooManySongs));
    let many: Vec<StemInfo> = (0..=MAX_STEMS as u32)
        .map(|i| StemInfo::of_bytes("s", "wav", &i.to_le_bytes(), 1))
        .collect();
    let e = lib.add("song 1", &many).unwrap_err();
    assert_eq!(e, LibraryError::SongFull("song 1".into()));
    assert!(lib.records().stems.len() <= MAX_STEMS);
}

/// Delivers every queued message between replicas until none is left.
fn settle(replicas: &mut [Replica], now_ns: i64) {
    loop {
        let mut moved = false;
        for i in 0..replicas.len() {
            while let Some((to, op)) = replicas[i].poll_transmit() {
                moved = true;
                let from = PeerId(i as u64);
                replicas[to.0 as usize].handle_message(now_ns, from, op);
            }
        }
        if !moved {
            return;
        }
    }
}

#[test]
fn replicas_that_were_apart_agree_after_a_link_up() {
    let mut rs: Vec<Replica> = (0..3)
        .map(|_| Replica::new(Library::new(), ReplicaConfig::default()))
        .collect();
    rs[0].add("Solar", &[stem("a", 1)]).unwrap();
    rs[1].add("Solar", &[stem("b", 2)]).unwrap();
    rs[2].add("Nardis", &[stem("c", 3)]).unwrap();
    for (i, r) in rs.iter_mut().enumerate() {
        for j in (0..3).filter(|&j| j != i) {
            r.handle_link_up(0, PeerId(j as u64));
        }
    }
    settle(&mut rs, 0);
    // Owed libraries wait for the rate limit; the next timeouts pay them.
    for t in 1..4 {
        for r in rs.iter_mut() {
            r.handle_timeout(t * 1_000_000_000);
        }
        settle(&mut rs, t * 1_000_000_000);
    }
    assert_eq!(rs[0].library(), rs[1].library());
    assert_eq!(rs[1].library(), rs[2].library());
    assert_eq!(names(rs[0].library()).len(), 2);
    // A change later spreads as a delta, at once.
    rs[2].remove(SongId::of_name("Solar"), None).unwrap();
    settle(&mut rs, 5_000_000_000);
    assert!(rs.iter().all(|r| r.library().songs().len() == 1));
}

#[test]
fn bad_records_are_refused_with_a_reason() {
    let mut r = Replica::new(Library::new(), ReplicaConfig::default());
    r.handle_link_up(0, PeerId(9));
    let lie = crate::protocol::library::SongRecord {
        id: SongId::of_name("a"),
        generation: 1,
        name: "b".into(),
    };
    r.handle_message(
        0,
        PeerId(9),
        Operation::LibraryRecords {
            songs: vec![lie],
            stems: vec![],
        },
    );
    assert!(matches!(
        r.poll_event(),
        Some(LibraryEvent::Refused { from: PeerId(9), count: 1, reason }) if reason.contains("not the id")
    ));
    assert!(r.library().is_empty());
}

use crate::protocol::message::Operation;
