//! Remote stems between real processes: a peer without the files fetches
//! them from the peers that have them, plays in sync, seeks into what it has
//! not fetched, survives a host's death and refuses corrupt data.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::harness::Peer;
use super::{SEC, args, joining, proxied, serial, skew_summary};
use synfony_testkit::proxy::Delay;

/// A 48 kHz stereo 16-bit WAV of `secs` seconds (a tone whose pitch drifts,
/// so every chunk differs): about 11 MB a minute, long enough that fetching
/// it takes seconds through the proxy.
pub(super) fn long_wav(dir: &Path, name: &str, secs: u32) -> PathBuf {
    let path = dir.join(format!("{name}.wav"));
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    let mut phase = 0.0f64;
    for i in 0..secs * 48_000 {
        let f = 220.0 + (i as f64 / 48_000.0 * 0.7).sin() * 110.0;
        phase += f / 48_000.0;
        let s = ((phase * std::f64::consts::TAU).sin() * 8000.0) as i16;
        w.write_sample(s).unwrap();
        w.write_sample(s / 2).unwrap();
    }
    w.finalize().unwrap();
    path
}

fn song_done(v: &Value) -> bool {
    v["event"] == "song"
        && v["stems"]
            .as_array()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|s| s["chunks_have"] == s["chunks"]))
}

fn fetch(status: &Value, field: &str) -> u64 {
    status["fetch"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("fetch.{field} in {status}"))
}

/// Total size of the files of the song as `status` lists it.
fn song_bytes(status: &Value) -> u64 {
    (status["song_stems"].as_array().unwrap().iter())
        .map(|s| s["size_bytes"].as_u64().unwrap())
        .sum()
}

/// A peer with no files joins through 25 ms each way (50 ms RTT): it learns
/// the song, fetches every stem (once: bytes fetched = file sizes), plays in
/// sync with the host, and a second run plays from its cache.
#[test]
fn a_peer_without_the_files_fetches_them_and_plays_in_sync() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut host = proxied("host", dir.path(), Delay::new(25.0, 0.0), 81, &[]);
    let join = host.proxy.addr().to_string();
    let mut fan = Peer::spawn("fan", dir.path(), &joining(&join, &[]));
    fan.wait_linked(1, 10 * SEC);
    let song = fan.wait_for("the song fetched", song_done, 20 * SEC);
    assert!(
        (song["stems"].as_array().unwrap().iter()).all(|s| s["source"] == "cache"),
        "{song}"
    );
    let since = synfony::host_clock::monotonic_ns();
    host.peer.send("play");
    std::thread::sleep(4 * SEC);
    let status = fan.status();
    let size = song_bytes(&status);
    let fetched = fetch(&status, "bytes_fetched");
    println!(
        "fetched {fetched} bytes for {size} bytes of files ({:.4}×)",
        fetched as f64 / size as f64
    );
    assert_eq!(fetched, size, "every byte fetched once");
    assert!(
        status["buffering"].as_array().unwrap().is_empty(),
        "{status}"
    );
    let host_status = host.peer.status();
    assert_eq!(fetch(&host_status, "bytes_served"), size);
    let (skew, _) = skew_summary(&host.peer, &fan, since + 2_000_000_000);
    println!("skew host–fan: {skew:?}");
    assert!(skew.n > 20 && skew.max < 2.0, "{skew:?}");
    let fan_status = fan.status();
    assert_eq!(
        fan_status["underruns"], status["underruns"],
        "no gap once fetched"
    );
    fan.quit();

    // Again, with the same cache: nothing crosses the network.
    let mut again = Peer::spawn(
        "again",
        dir.path(),
        &joining(
            &join,
            &[
                "--cache-dir",
                &dir.path().join("fan.cache").display().to_string(),
            ],
        ),
    );
    again.wait_linked(1, 10 * SEC);
    let song = again.wait_for("the song", |v| v["event"] == "song", 10 * SEC);
    assert!(
        (song["stems"].as_array().unwrap().iter()).all(|s| s["source"] == "cache"),
        "{song}"
    );
    assert_eq!(fetch(&again.status(), "bytes_fetched"), 0);
    // It plays, streamed from the cache files, in sync with the host.
    let since = synfony::host_clock::monotonic_ns();
    std::thread::sleep(3 * SEC);
    let s = again.status();
    assert!(s["buffering"].as_array().unwrap().is_empty(), "{s}");
    let (skew, _) = skew_summary(&host.peer, &again, since + 1_000_000_000);
    println!("skew host–again (from the cache): {skew:?}");
    assert!(skew.n > 10 && skew.max < 2.0, "{skew:?}");
    again.quit();
    host.peer.quit();
}

/// Polls `peer`'s status until none of its stems is buffering at a playing
/// playhead at or after `from_secs`; the time it took.
fn until_audible(peer: &mut Peer, from_secs: f64, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let s = peer.status();
        let pos = s["position_secs"].as_f64().unwrap();
        if s["playing"] == true
            && pos >= from_secs
            && pos < from_secs + 5.0
            && s["buffering"].as_array().unwrap().is_empty()
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "not audible at {from_secs} s: {s}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A seek far into a long stem the joiner has barely started to fetch: the
/// target's bytes are fetched first, and it plays within a second or so.
#[test]
fn a_seek_into_a_part_not_yet_fetched_plays_soon() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let wav = long_wav(dir.path(), "long", 180);
    let mut host = proxied(
        "host",
        dir.path(),
        Delay::new(25.0, 0.0),
        82,
        &[&wav.display().to_string()],
    );
    // `proxied` adds the click stems too: the song is long + click + impulses.
    let join = host.proxy.addr().to_string();
    let mut fan = Peer::spawn(
        "fan",
        dir.path(),
        &joining(&join, &["--prefetch-secs", "2"]),
    );
    fan.wait_linked(1, 10 * SEC);
    fan.wait_for("the song", |v| v["event"] == "song", 10 * SEC);
    host.peer.send("play");
    std::thread::sleep(SEC);
    let before = fan.status();
    let have = &before["song_stems"].as_array().unwrap()[0];
    println!(
        "before the seek: {} of {} chunks of the long stem",
        have["chunks_have"], have["chunks"]
    );
    let mark = fan.mark();
    let sent = Instant::now();
    host.peer.send("seek 150");
    let host_id = host.peer.peer_id.clone();
    let d = fan.wait_decision(mark, &host_id, "seek", 5 * SEC);
    assert_eq!(d["position_secs"], 150.0);
    until_audible(&mut fan, 150.0, 10 * SEC);
    println!(
        "seek to 150 s: audible {} ms after the command (status polled every 20 ms)",
        sent.elapsed().as_millis()
    );
    fan.quit();
    host.peer.quit();
}

/// Two hosts; the fetching peer plays a long stem with a short window, and
/// one host is killed mid-song: the rest comes from the other, with no gap.
#[test]
fn a_host_killed_mid_song_with_a_second_host_present_causes_no_gap() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let wav = long_wav(dir.path(), "long", 180).display().to_string();
    // Both hosts behind 25 ms each way: fetching the long stem takes seconds.
    let delay = Delay::new(25.0, 0.0);
    let mut first = proxied("first", dir.path(), delay, 83, &[&wav]);
    let join = first.proxy.addr().to_string();
    let mut second = proxied("second", dir.path(), delay, 84, &["--join", &join, &wav]);
    second.peer.wait_linked(1, 10 * SEC);
    let mut fan = Peer::spawn(
        "fan",
        dir.path(),
        &joining(&join, &["--prefetch-secs", "2"]),
    );
    fan.wait_linked(2, 10 * SEC);
    fan.wait_for("the song", |v| v["event"] == "song", 10 * SEC);
    first.peer.send("play");
    // Let the window fill, then kill the first host mid-fetch.
    std::thread::sleep(SEC);
    let before = fan.status();
    let long = &before["song_stems"].as_array().unwrap()[0];
    println!(
        "at the kill: {} of {} chunks",
        long["chunks_have"], long["chunks"]
    );
    assert!(
        long["chunks_have"] != long["chunks"],
        "still fetching at the kill: {long}"
    );
    first.peer.kill();
    std::thread::sleep(4 * SEC);
    let after = fan.status();
    println!(
        "underruns before {} after {}; fetched {} of {} bytes",
        before["underruns"],
        after["underruns"],
        fetch(&after, "bytes_fetched"),
        song_bytes(&after)
    );
    assert_eq!(after["underruns"], before["underruns"], "a gap: {after}");
    assert_eq!(after["playing"], true);
    fan.wait_for("the song fetched", song_done, 30 * SEC);
    let done = fan.status();
    let fetched = fetch(&done, "bytes_fetched");
    assert!(
        fetched as f64 <= 1.05 * song_bytes(&done) as f64,
        "{fetched} bytes fetched"
    );
    fan.quit();
    second.peer.quit();
}

/// A host whose file changed on disk after it was hashed serves a bad
/// chunk: it is refused by its hash, counted, and fetched from the other
/// host; the fetched file is intact.
#[test]
fn a_corrupt_chunk_is_refused_by_its_hash_and_fetched_again() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let good = long_wav(dir.path(), "tone", 20);
    let bad_dir = dir.path().join("bad");
    std::fs::create_dir(&bad_dir).unwrap();
    let bad = bad_dir.join("tone.wav");
    std::fs::copy(&good, &bad).unwrap();
    let mut creator = Peer::spawn(
        "creator",
        dir.path(),
        &args(&["--listen", "127.0.0.1:0", &bad.display().to_string()]),
    );
    // Its files are hashed after `ready`, off the session's task: the song
    // event says they were.
    creator.wait_for("the song hashed", |v| v["event"] == "song", 10 * SEC);
    // Damage the creator's copy after it was hashed: every chunk it serves
    // past the header is now wrong.
    let mut bytes = std::fs::read(&bad).unwrap();
    for b in bytes.iter_mut().skip(1000).step_by(4096) {
        *b ^= 0x55;
    }
    std::fs::write(&bad, &bytes).unwrap();
    let join = creator.listen.to_string();
    let mut mirror = Peer::spawn(
        "mirror",
        dir.path(),
        &joining(&join, &[&good.display().to_string()]),
    );
    mirror.wait_linked(1, 10 * SEC);
    let mut fan = Peer::spawn("fan", dir.path(), &joining(&join, &[]));
    fan.wait_linked(2, 10 * SEC);
    fan.wait_for("the song fetched", song_done, 30 * SEC);
    let s = fan.status();
    println!("fetch counters: {}", s["fetch"]);
    assert!(
        fetch(&s, "bad_hash") > 0,
        "the creator's damaged chunks were noticed: {s}"
    );
    let cached = std::fs::read_dir(dir.path().join("fan.cache"))
        .unwrap()
        .count();
    assert_eq!(cached, 1);
    let cached_file = std::fs::read_dir(dir.path().join("fan.cache"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read(cached_file).unwrap(),
        std::fs::read(&good).unwrap()
    );
    fan.quit();
    mirror.quit();
    creator.quit();
}

/// A member speaking the protocol by hand, over real TCP: it asks a host for
/// a hash nobody announced, for a path's bytes in the hash field, and for a
/// range that is not a chunk, and is refused each time; a real chunk of a
/// real stem comes back.
#[test]
fn requests_for_unknown_hashes_paths_or_odd_ranges_are_refused() {
    use synfony::host_clock::LocalClock;
    use synfony::protocol::message::{Message, Operation, Room};
    use synfony::runtime::net::{self, Identity, Read};

    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let clicks = super::harness::stems().display().to_string();
    let mut host = Peer::spawn(
        "host",
        dir.path(),
        &args(&["--listen", "127.0.0.1:0", &clicks]),
    );
    let addr = host.listen;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answers = rt.block_on(async move {
        let mut conn = net::connect(addr).await.unwrap();
        let me = Identity {
            keys: std::sync::Arc::new(synfony::runtime::handshake::LinkKeys::generate().unwrap()),
            name: "by hand".into(),
            advertise: "127.0.0.1:9".parse().unwrap(),
        };
        net::handshake_dialer(&mut conn, &me, None).await.unwrap();
        let (mut rd, mut wr) = conn.split(LocalClock::REAL).expect("handshaken");
        let mut path_hash = [0u8; 32];
        path_hash[..11].copy_from_slice(b"/etc/passwd");
        let mut asked = false;
        let mut answers = std::collections::BTreeMap::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while answers.len() < 4 {
            let mut got = Vec::new();
            tokio::time::timeout_at(deadline, rd.read(|r| got.push(r)))
                .await
                .expect("answers within 10 s")
                .unwrap();
            for r in got {
                let Read::Message {
                    message: Message::Room(room),
                    ..
                } = r
                else {
                    continue;
                };
                match room.op {
                    // The song tells a real hash: ask for it, right and wrong.
                    Operation::SongStem { index: 0, info, .. } if !asked => {
                        asked = true;
                        let ask = |request_id, stem, offset, len| {
                            Message::Room(Room {
                                request_id,
                                op: Operation::ChunkRequest { stem, offset, len },
                            })
                        };
                        wr.send(&mut [
                            ask(1, [7; 32], 0, 65_536),
                            ask(2, path_hash, 0, 65_536),
                            ask(3, info.hash, 10, 65_536),
                            ask(4, info.hash, 0, info.chunk_range(0).end as u32),
                        ])
                        .await
                        .unwrap();
                    }
                    Operation::ChunkRefused { reason, .. } => {
                        answers.insert(room.request_id, format!("refused: {reason}"));
                    }
                    Operation::ChunkData { data, .. } => {
                        answers.insert(room.request_id, format!("{} bytes", data.len()));
                    }
                    _ => {}
                }
            }
        }
        answers
    });
    println!("{answers:?}");
    assert!(
        answers[&1].starts_with("refused: unknown stem"),
        "{answers:?}"
    );
    assert!(
        answers[&2].starts_with("refused: unknown stem"),
        "{answers:?}"
    );
    assert!(
        answers[&3].starts_with("refused: not a chunk"),
        "{answers:?}"
    );
    assert!(answers[&4].ends_with(" bytes"), "{answers:?}");
    let s = host.status();
    assert_eq!(fetch(&s, "refused_by_us"), 3);
    host.quit();
}
