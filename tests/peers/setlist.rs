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
    // The setlist event comes as the switch is scheduled (up to a round
    // before the end); status shows the decided state, once decided.
    let deadline = std::time::Instant::now() + 2 * SEC;
    loop {
        let status = b.status();
        if status["song"] == second_id.as_str() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

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

/// Where song `song` starts on a peer, from its report: the monotonic
/// instant its frame 0 left (extrapolated from its first playing line),
/// and where the song before it ended (from the last line before).
fn boundary(p: &Peer, song: [u8; 16], before_frames: i64) -> (f64, f64) {
    let report = p.read_report();
    let lines = &report.lines;
    let first = (lines.iter())
        .position(|l| l.song == song && l.playing)
        .unwrap_or_else(|| panic!("{}: the next song never played", p.name));
    let start = lines[first].mono_ns as f64 - lines[first].pos_frames as f64 * 1e9 / 48_000.0;
    let last = (lines[..first].iter())
        .rev()
        .find(|l| l.song != song && l.playing)
        .unwrap_or_else(|| panic!("{}: the first song never played", p.name));
    let end = last.mono_ns as f64 + (before_frames - last.pos_frames) as f64 * 1e9 / 48_000.0;
    (start, end)
}

/// Issue 21's boundary: three peers behind 20–60 ms jittered links, with
/// clocks seconds apart, play a song whose set list holds a song only one
/// of them has; at the end, every peer starts the next song at the same
/// instant (the steady skew), right where the first ended, with no underrun.
#[test]
fn the_next_song_starts_on_every_peer_at_once_with_no_gap() {
    use synfony_testkit::proxy::{Delay, Proxy};
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let intro = long_wav(d, "intro", 2);
    let second = long_wav(d, "second", 3);
    let delay = Delay::new(20.0, 40.0);
    let behind_proxy = |name: &str, seed: u64, extra: &[String]| {
        let listen = super::harness::free_port();
        let proxy = Proxy::start(listen, seed).unwrap();
        proxy.set_delay(delay, delay);
        let mut a: Vec<String> = vec![
            "--listen".into(),
            listen.to_string(),
            "--advertise".into(),
            proxy.addr().to_string(),
        ];
        a.extend(extra.iter().cloned());
        (Peer::spawn(name, d, &a), proxy)
    };
    let (mut a, pa) = behind_proxy("a", 1, &[intro.display().to_string()]);
    let join = pa.addr().to_string();
    let (mut b, _pb) = behind_proxy(
        "b",
        2,
        &[
            "--join".into(),
            join.clone(),
            "--clock-offset-ms".into(),
            "7000".into(),
        ],
    );
    let (mut c, _pc) = behind_proxy(
        "c",
        3,
        &[
            "--join".into(),
            join,
            "--clock-offset-ms".into(),
            "-3000".into(),
        ],
    );
    for p in [&mut a, &mut b, &mut c] {
        p.wait_linked(2, 20 * SEC);
    }
    b.send(&format!("add --song Second \"{}\"", second.display()));
    let second_id = song_id(&mut a, "Second");
    assert_eq!(song_id(&mut c, "Second"), second_id);
    let intro_id = song_id(&mut b, "intro");
    let marks = [a.mark(), b.mark(), c.mark()];
    c.send("queue Second");
    for (p, mark) in [&mut a, &mut b, &mut c].into_iter().zip(marks) {
        wait_setlist(p, mark, "Second queued", |e| {
            e["queue"] == serde_json::json!([second_id])
        });
    }
    // Settle the clocks (as any sync measure does), then play the 2 s
    // intro to its end.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let marks = [a.mark(), b.mark(), c.mark()];
    let played_at = synfony::host_clock::monotonic_ns();
    a.send("play");
    for (p, mark) in [&mut a, &mut b, &mut c].into_iter().zip(marks) {
        wait_setlist(p, mark, "Second follows", |e| {
            e["current"] == second_id.as_str()
        });
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let song = synfony_testkit::report::song_bytes(&second_id).unwrap();
    let edges: Vec<(f64, f64)> = [&a, &b, &c]
        .iter()
        .map(|p| boundary(p, song, 2 * 48_000))
        .collect();
    let starts: Vec<f64> = edges.iter().map(|e| e.0).collect();
    let skew_ms = (starts.iter().cloned().fold(f64::MIN, f64::max)
        - starts.iter().cloned().fold(f64::MAX, f64::min))
        / 1e6;
    let gaps_ms: Vec<f64> = edges.iter().map(|(s, e)| (s - e) / 1e6).collect();
    let (steady, _) = super::skew_summary(&a, &b, played_at);
    println!(
        "next song's first frame: spread {skew_ms:.3} ms over 3 peers (a–b while playing: {steady}); gap after the first song per peer {gaps_ms:?} ms"
    );
    // Loose bounds, as every sync test here has (the figures are measured,
    // not asserted: NOTEBOOK.md): a missed boundary is a round or more off.
    assert!(skew_ms < 5.0, "spread {skew_ms} ms");
    for g in &gaps_ms {
        assert!(g.abs() < 5.0, "a gap (or overlap) of {g} ms");
    }
    for p in [&mut a, &mut b, &mut c] {
        let s = p.status();
        assert_eq!(s["underruns"], 0, "{}: {s}", p.name);
        assert_eq!(s["song"], second_id.as_str());
    }

    // Song changes take the time any vote takes from command to apply
    // (printed; NOTEBOOK.md): a seek, then queue, next and load.
    let mut all = [&mut a, &mut b, &mut c];
    super::vote_everywhere(&mut all, 2, "seek 1", "seek");
    super::vote_everywhere(&mut all, 1, "queue intro", "queue");
    std::thread::sleep(SEC);
    let next = super::vote_everywhere(&mut all, 0, "next", "next");
    assert_eq!(next["song"], intro_id.as_str());
    std::thread::sleep(SEC);
    super::vote_everywhere(&mut all, 2, "load Second", "load");
    std::thread::sleep(SEC);
    for p in all {
        let s = p.status();
        println!(
            "{}: underruns after next and load: {}",
            p.name, s["underruns"]
        );
    }
}

/// Every peer gone and back: the set list is kept in `--data-dir`; a peer
/// that starts a session without stems resumes its current song and set
/// list; a corrupt file is set aside with a message and the peer starts.
#[test]
fn the_set_list_is_kept_between_runs() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let intro = long_wav(d, "intro", 2);
    let second = long_wav(d, "second", 3);
    let listen = || vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
    let mut with_stems = listen();
    with_stems.push(intro.display().to_string());
    let mut a = Peer::spawn("a", d, &with_stems);
    let intro_id = song_id(&mut a, "intro");
    a.send(&format!("add --song Second \"{}\"", second.display()));
    let second_id = song_id(&mut a, "Second");
    let mark = a.mark();
    a.send("queue Second");
    wait_setlist(&mut a, mark, "Second queued", |e| {
        e["queue"] == serde_json::json!([second_id])
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(a.quit().success());

    // Back with no stems: the intro is current again (from the library and
    // its files), Second still queued after it.
    let mut a = Peer::spawn("a", d, &listen());
    wait_setlist(&mut a, 0, "the kept set list", |e| {
        e["current"] == intro_id.as_str() && e["queue"] == serde_json::json!([second_id])
    });
    let deadline = std::time::Instant::now() + 10 * SEC;
    loop {
        let s = a.status();
        if s["song_stems"][0]["name"] == "intro" && s["song_stems"][0]["source"] == "local" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the kept song never played: {s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(a.quit().success());

    // A corrupt file: set aside, said once, the peer starts.
    std::fs::write(d.join("a.data").join("setlist.bin"), b"not a set list").unwrap();
    let mut a = Peer::spawn("a", d, &listen());
    a.wait_for_since(
        0,
        "the set-aside message",
        |e| {
            e["event"] == "error"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("set aside"))
        },
        5 * SEC,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(a.quit().success());
}
