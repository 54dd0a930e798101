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
