//! The current song and the set list between real processes (issue 21):
//! `load`, `queue`, `unqueue`, `next` and `prev` are votes every peer decides
//! alike; a song that ends while playing is followed by the set list's next
//! one with no vote, and the last one stops at its end; every change is a
//! `setlist` event, and decisions and status name the song.

use serde_json::Value;

use super::harness::Peer;
use super::remote::long_wav;
use super::{SEC, joining, serial};

/// Waits (from `seen[since]` on) for a `setlist` event where `pred` holds.
fn wait_setlist(p: &mut Peer, since: usize, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    p.wait_for_since(
        since,
        what,
        |e| e["event"] == "setlist" && pred(e),
        10 * SEC,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The id of the library's song `name`, once `p` sees it with its stems.
fn song_id(p: &mut Peer, name: &str) -> String {
    let found = p.wait_for_since(
        0,
        name,
        |e| {
            e["event"] == "library"
                && (e["songs"].as_array().into_iter().flatten()).any(|s| {
                    s["name"] == name && s["stems"].as_array().is_some_and(|v| !v.is_empty())
                })
        },
        10 * SEC,
    );
    let library = found.unwrap_or_else(|e| panic!("{e}"));
    let songs = library["songs"].as_array().unwrap();
    let song = songs.iter().find(|s| s["name"] == name).unwrap();
    song["id"].as_str().unwrap().to_string()
}

#[test]
fn the_set_list_is_agreed_and_songs_follow_each_other() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let intro = long_wav(d, "intro", 2);
    let second = long_wav(d, "second", 3);
    let mut a = Peer::spawn(
        "a",
        d,
        &[
            "--listen".into(),
            "127.0.0.1:0".into(),
            intro.display().to_string(),
        ],
    );
    let addr = a.listen.to_string();
    let mut b = Peer::spawn("b", d, &joining(&addr, &[]));
    a.wait_linked(1, 20 * SEC);
    b.wait_linked(1, 20 * SEC);
    let intro_id = song_id(&mut b, "intro");
    a.send(&format!("add --song Second \"{}\"", second.display()));
    let second_id = song_id(&mut b, "Second");
    // Both peers start with the creator's song and an empty set list.
    for p in [&mut a, &mut b] {
        wait_setlist(p, 0, "the start song", |e| {
            e["current"] == intro_id.as_str()
        });
    }

    // A joiner queues a song the creator added: both decide it alike.
    let marks = [a.mark(), b.mark()];
    b.send("queue Second");
    for (p, mark) in [&mut a, &mut b].into_iter().zip(marks) {
        let d = p
            .wait_for_since(
                mark,
                "queue decided",
                |e| e["event"] == "decision" && e["votes"].to_string().contains("queue"),
                5 * SEC,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d["song"], intro_id.as_str(), "{d}");
        wait_setlist(p, mark, "Second queued", |e| {
            e["queue"] == serde_json::json!([second_id])
        });
    }

    // Played to its end, the start song is followed by the queued one, at
    // the same decided instant on both, with no vote.
    let marks = [a.mark(), b.mark()];
    a.send("play");
    for (p, mark) in [&mut a, &mut b].into_iter().zip(marks) {
        wait_setlist(p, mark, "Second follows at the end", |e| {
            e["current"] == second_id.as_str() && e["queue"] == serde_json::json!([])
        });
    }
    let status = b.status();
    assert_eq!(status["song"], second_id.as_str(), "{status}");

    // prev: the start song again, Second back at the head of the set list.
    let marks = [a.mark(), b.mark()];
    b.send("prev");
    for (p, mark) in [&mut a, &mut b].into_iter().zip(marks) {
        wait_setlist(p, mark, "prev", |e| {
            e["current"] == intro_id.as_str() && e["queue"] == serde_json::json!([second_id])
        });
    }
    // unqueue 0 empties it; next with nothing queued is rejected, by name.
    let mark = a.mark();
    a.send("unqueue 0");
    wait_setlist(&mut a, mark, "unqueued", |e| {
        e["queue"] == serde_json::json!([])
    });
    let mark = a.mark();
    a.send("next");
    let d = a
        .wait_for_since(
            mark,
            "next decided",
            |e| e["event"] == "decision" && e["votes"].to_string().contains("next"),
            5 * SEC,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(d["votes"].to_string().contains("emptyqueue"), "{d}");

    // Bad input: an unknown song, an entry the set list does not have.
    for (line, what) in [("load nosuchsong", "load"), ("unqueue 5", "unqueue")] {
        let mark = a.mark();
        a.send(line);
        let e = a
            .wait_for_since(mark, "an error", |e| e["event"] == "error", 5 * SEC)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(e["message"].as_str().unwrap().starts_with(what), "{e}");
    }

    // load, then the last song stops at its end.
    let marks = [a.mark(), b.mark()];
    a.send("load Second");
    for (p, mark) in [&mut a, &mut b].into_iter().zip(marks) {
        wait_setlist(p, mark, "Second loaded", |e| {
            e["current"] == second_id.as_str()
        });
    }
    let mark = b.mark();
    b.send("play");
    b.wait_for_since(
        mark,
        "play decided",
        |e| e["event"] == "decision" && e["playing"] == true,
        5 * SEC,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(std::time::Duration::from_secs(4));
    for p in [&mut a, &mut b] {
        let s = p.status();
        assert_eq!(s["playing"], false, "stopped at the end: {s}");
        assert_eq!(s["song"], second_id.as_str(), "{s}");
    }
}
