//! Private sessions (issue 23) between real processes: what someone on the
//! path sees of a session.

use super::harness::Peer;
use super::{SEC, joining, proxied, serial};
use synfony_testkit::proxy::Delay;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A peer fetches every stem of the song through a proxy that records every
/// byte both ways: neither peer's name, nor a stem's name, nor any 32 bytes of
/// a stem file cross readable — in an open session (encrypted, not
/// authenticated) as much as in one with a passphrase.
#[test]
fn an_eavesdropper_reads_nothing_open_session_or_not() {
    let _turn = serial();
    for passphrase in [None, Some("our band")] {
        let dir = tempfile::tempdir().unwrap();
        let extra: Vec<&str> = passphrase.map_or(vec![], |p| vec!["--passphrase", p]);
        let host = proxied(
            "ziggy-stardust",
            dir.path(),
            Delay::new(0.0, 0.0),
            7,
            &extra,
        );
        host.proxy.record();
        let join = host.proxy.addr().to_string();
        let mut fan = Peer::spawn("spiders-from-mars", dir.path(), &joining(&join, &extra));
        fan.wait_linked(1, 10 * SEC);
        let song = fan.wait_for(
            "the song fetched",
            |v| {
                v["event"] == "song"
                    && v["stems"].as_array().is_some_and(|s| {
                        !s.is_empty() && s.iter().all(|s| s["chunks_have"] == s["chunks"])
                    })
            },
            20 * SEC,
        );
        let seen = host.proxy.recorded();
        assert!(
            seen.len() > 10_000,
            "the stems crossed: {} bytes",
            seen.len()
        );
        for name in ["ziggy-stardust", "spiders-from-mars"] {
            assert!(!contains(&seen, name.as_bytes()), "{name} crossed readable");
        }
        let stems = std::fs::read_dir(super::stems()).unwrap();
        for stem in stems {
            let path = stem.unwrap().path();
            let stem_name = path.file_stem().unwrap().to_string_lossy().to_string();
            assert!(
                !contains(&seen, stem_name.as_bytes()),
                "the stem name {stem_name} crossed readable ({song})"
            );
            let bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            let sample = &bytes[middle..(middle + 32).min(bytes.len())];
            assert!(
                !contains(&seen, sample),
                "{} crossed readable",
                path.display()
            );
        }
    }
}

/// Guessing the passphrase online (issue 23): each connection is one guess,
/// and an address that keeps guessing wrong is slowed down — its first
/// guesses are answered "wrong passphrase", the rest of a quick burst are
/// closed unanswered, and after a wait it gets one guess again.
#[test]
fn guessing_the_passphrase_is_slowed_down() {
    use synfony::runtime::auth::Secret;
    use synfony::runtime::handshake::{HandshakeError, LinkKeys};
    use synfony::runtime::net::{self, Identity, LinkError};
    let (_turn, dir, stems) = super::setup();
    let host = Peer::spawn(
        "host",
        dir.path(),
        &super::args(&[
            "--listen",
            "127.0.0.1:0",
            "--passphrase",
            "our band",
            &stems,
        ]),
    );
    let addr = host.listen;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let me = Identity {
        keys: std::sync::Arc::new(LinkKeys::generate().unwrap()),
        name: "guesser".into(),
        advertise: "127.0.0.1:9".parse().unwrap(),
    };
    let guess = |n: usize| {
        rt.block_on(async {
            let secret = Secret::new(&format!("guess {n}"));
            let Ok(mut conn) = net::connect(addr).await else {
                return "no connection";
            };
            match net::handshake_dialer(&mut conn, &me, Some(&secret)).await {
                Err(LinkError::Handshake(HandshakeError::WrongPassphrase)) => "wrong",
                Ok(_) => "linked",
                Err(_) => "unanswered",
            }
        })
    };
    let burst: Vec<&str> = (0..12).map(guess).collect();
    println!("a burst of 12 guesses: {burst:?}");
    let wrong = burst.iter().filter(|&&g| g == "wrong").count();
    assert!(!burst.contains(&"linked"));
    // Eight failures are free; the ninth may be answered too when it is
    // admitted before the eighth is counted (the acceptor counts a failure
    // after it has said so).
    assert!((8..=9).contains(&wrong), "{burst:?}");
    assert!(burst[9..].iter().all(|&g| g == "unanswered"), "{burst:?}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(guess(99), "wrong", "one guess again after a second");
}
