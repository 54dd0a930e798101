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

/// Waits until `p`'s status shows the current song's stems named `names`,
/// each whole here (fetched, cached or local), and returns that status.
fn wait_all_here(p: &mut Peer, names: &[&str]) -> Value {
    let deadline = std::time::Instant::now() + 15 * SEC;
    loop {
        let s = p.status();
        let stems = s["song_stems"].as_array().cloned().unwrap_or_default();
        let got: Vec<&str> = stems.iter().filter_map(|x| x["name"].as_str()).collect();
        let whole = stems
            .iter()
            .all(|x| x["chunks"].as_u64().is_some() && x["chunks_have"] == x["chunks"]);
        if got == names && whole {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: the song's stems never were all here: {s}",
            p.name
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Issue 20's heart: each musician brings their stem of one song, and the
/// song plays with every stem from wherever it is — this peer's file, or
/// fetched from the peer that has it — on every peer.
#[test]
fn a_songs_stems_from_several_peers_play_together() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let intro = long_wav(d, "intro", 2);
    let drums = long_wav(d, "drums", 3);
    // (a different length: the same samples would be one stem with two hosts)
    let bass = long_wav(d, "bass", 4);
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
    let mut b = Peer::spawn("b", d, &joining(&addr, &["--no-cache"]));
    a.wait_linked(1, 20 * SEC);
    b.wait_linked(1, 20 * SEC);
    // The drummer brings the drums, the bassist the bass, to one song.
    a.send(&format!("add --song Groove \"{}\"", drums.display()));
    b.send(&format!("add --song Groove \"{}\"", bass.display()));
    for p in [&mut a, &mut b] {
        p.wait_for_since(
            0,
            "Groove with both stems",
            |e| {
                e["event"] == "library"
                    && (e["songs"].as_array().into_iter().flatten()).any(|s| {
                        s["name"] == "Groove" && s["stems"].as_array().is_some_and(|v| v.len() == 2)
                    })
            },
            10 * SEC,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let groove = song_id(&mut a, "Groove");
    let marks = [a.mark(), b.mark()];
    a.send("load Groove");
    for (p, mark) in [&mut a, &mut b].into_iter().zip(marks) {
        wait_setlist(p, mark, "Groove loaded", |e| {
            e["current"] == groove.as_str()
        });
    }
    // Each peer plays its own stem from its file and fetches the other's.
    for p in [&mut a, &mut b] {
        let s = wait_all_here(p, &["bass", "drums"]);
        let sources: Vec<&str> = (s["song_stems"].as_array().unwrap().iter())
            .map(|x| x["source"].as_str().unwrap())
            .collect();
        let want = if p.name == "a" {
            ["remote", "local"]
        } else {
            ["local", "remote"]
        };
        // A fetched stem reads "cache" once checked (kept or not).
        let ok = sources
            .iter()
            .zip(want)
            .all(|(got, w)| *got == w || (w == "remote" && *got == "cache"));
        assert!(ok, "{}: {sources:?}", p.name);
        assert_eq!(s["song"], groove.as_str());
    }
    // And they play it in step, with no underrun.
    let since = synfony::host_clock::monotonic_ns();
    let mark = a.mark();
    a.send("play");
    a.wait_for_since(
        mark,
        "play decided",
        |e| e["event"] == "decision" && e["playing"] == true,
        5 * SEC,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (skew, _) = super::skew_summary(&a, &b, since);
    println!("skew between a and b playing Groove: {skew:?}");
    assert!(skew.n > 0, "no common playing stretch: {skew:?}");
    assert!(skew.max < 1.0, "skew in ms: {skew:?}");
    for p in [&mut a, &mut b] {
        let s = p.status();
        assert_eq!(s["underruns"], 0, "{}: {s}", p.name);
    }
}
