//! Headless control: the stdin command language and the JSON-lines events of
//! `../shared/INTERFACE.md`. Pure: parsing and formatting only, so every
//! command and every event shape is unit-tested without a process.

use serde_json::{Map, Value, json};

use crate::protocol::{Channel, Decision, Event, PeerId, Round, SessionState, Verdict};

/// Longest seek accepted, in seconds (a day; the session clamps into the song).
pub const MAX_SEEK_SECS: f64 = 86_400.0;

/// One line of stdin.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// A vote for the next round.
    Vote(Event),
    /// Solo or unsolo a stem on this peer only (a monitoring choice, not
    /// voted): while any stem is soloed, only soloed stems sound here.
    Solo {
        stem: usize,
        on: bool,
    },
    Status,
    Peers,
    /// Answer a `sessions` event: the sessions found on the local network.
    Discover,
    Quit,
    /// Add files and folders to the library: as the song `song` (new, or
    /// more stems for it), by default named after the first folder or file.
    Add {
        song: Option<String>,
        paths: Vec<std::path::PathBuf>,
    },
    /// Take a song, or one of its stems, out of the library.
    Remove {
        song: String,
        stem: Option<String>,
    },
    /// Answer a `library` event.
    Songs,
    /// Vote: the library's song `song` (a name or an id's first hex digits)
    /// becomes current, in the version this peer's library holds.
    Load(String),
    /// Vote: append the library's song `song` to the set list.
    Queue(String),
    /// Vote: remove entry `index` of the set list (0 = next up).
    Unqueue(usize),
    /// Vote: move entry `from` of the set list to position `to`.
    Move {
        from: usize,
        to: usize,
    },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CommandError {
    #[error(
        "unknown command '{0}' (expected play, pause, seek SECS, volume STEM DB, mute STEM, unmute STEM, solo STEM, unsolo STEM, add [--song NAME] PATH..., remove SONG [STEM], songs, load SONG, queue SONG, unqueue N, move N M, next, prev, status, peers, discover or quit)"
    )]
    Unknown(String),
    #[error("{command}: {reason}")]
    Argument {
        command: &'static str,
        reason: String,
    },
    #[error("no stem '{0}' (a stem's name, its index, or 'all' for the master)")]
    NoStem(String),
}

/// Parses one line of stdin against the session's stem names. An empty line
/// (or a `#` comment) is `Ok(None)`.
pub fn parse_command(line: &str, stems: &[String]) -> Result<Option<Command>, CommandError> {
    let mut words = line.split_whitespace();
    let Some(word) = words.next() else {
        return Ok(None);
    };
    if word.starts_with('#') {
        return Ok(None);
    }
    if ["add", "remove", "songs", "load", "queue"].contains(&word.to_ascii_lowercase().as_str()) {
        return parse_library_command(line).map(Some);
    }
    let args: Vec<&str> = words.collect();
    let arity = |command: &'static str, n: usize, usage: &str| {
        if args.len() == n {
            Ok(())
        } else {
            Err(CommandError::Argument {
                command,
                reason: format!("usage: {usage}"),
            })
        }
    };
    let cmd = match word.to_ascii_lowercase().as_str() {
        "play" => {
            arity("play", 0, "play")?;
            Command::Vote(Event::Play)
        }
        "pause" => {
            arity("pause", 0, "pause")?;
            Command::Vote(Event::Pause)
        }
        "seek" => {
            arity("seek", 1, "seek SECS")?;
            Command::Vote(Event::Seek {
                position_ns: parse_secs(args[0])?,
            })
        }
        "volume" => {
            arity("volume", 2, "volume STEM DB (DB may be -inf)")?;
            Command::Vote(Event::Volume {
                channel: resolve_channel(args[0], stems)?,
                gain_db: parse_db(args[1])?,
            })
        }
        "mute" | "unmute" => {
            arity("mute", 1, "mute STEM | unmute STEM")?;
            Command::Vote(Event::Mute {
                channel: resolve_channel(args[0], stems)?,
                muted: word.eq_ignore_ascii_case("mute"),
            })
        }
        "solo" | "unsolo" => {
            arity("solo", 1, "solo STEM | unsolo STEM")?;
            match resolve_channel(args[0], stems)? {
                Channel::Stem(i) => Command::Solo {
                    stem: usize::from(i),
                    on: word.eq_ignore_ascii_case("solo"),
                },
                Channel::Master => {
                    return Err(CommandError::Argument {
                        command: "solo",
                        reason: "the master cannot be soloed (name a stem)".into(),
                    });
                }
            }
        }
        "unqueue" => {
            arity(
                "unqueue",
                1,
                "unqueue N (0 = the next song of the set list)",
            )?;
            Command::Unqueue(set_list_place("unqueue", args[0])?)
        }
        "move" => {
            arity(
                "move",
                2,
                "move N M (entry N of the set list to position M)",
            )?;
            Command::Move {
                from: set_list_place("move", args[0])?,
                to: set_list_place("move", args[1])?,
            }
        }
        "next" => {
            arity("next", 0, "next")?;
            Command::Vote(Event::Next)
        }
        "prev" => {
            arity("prev", 0, "prev")?;
            Command::Vote(Event::Prev)
        }
        "status" => {
            arity("status", 0, "status")?;
            Command::Status
        }
        "peers" => {
            arity("peers", 0, "peers")?;
            Command::Peers
        }
        "discover" => {
            arity("discover", 0, "discover")?;
            Command::Discover
        }
        "quit" | "exit" => Command::Quit,
        _ => return Err(CommandError::Unknown(word.to_string())),
    };
    Ok(Some(cmd))
}

/// The library's commands, whose names and paths may hold spaces: their
/// words are split as a shell would (quotes, backslashes).
fn parse_library_command(line: &str) -> Result<Command, CommandError> {
    let words = shlex::split(line).ok_or_else(|| CommandError::Argument {
        command: "add",
        reason: "an unclosed quote".into(),
    })?;
    let (word, args) = words
        .split_first()
        .ok_or(CommandError::Unknown(String::new()))?;
    let usage = |command: &'static str, usage: &str| CommandError::Argument {
        command,
        reason: format!("usage: {usage}"),
    };
    match word.to_ascii_lowercase().as_str() {
        "add" => {
            const USAGE: &str = "add [--song NAME] PATH...";
            let (song, paths) = match args {
                [flag, name, paths @ ..] if flag == "--song" => (Some(name.clone()), paths),
                [flag, ..] if flag == "--song" => return Err(usage("add", USAGE)),
                paths => (None, paths),
            };
            if paths.is_empty() || song.as_deref().is_some_and(|s| s.trim().is_empty()) {
                return Err(usage("add", USAGE));
            }
            Ok(Command::Add {
                song,
                paths: paths.iter().map(std::path::PathBuf::from).collect(),
            })
        }
        "remove" => match args {
            [song] => Ok(Command::Remove {
                song: song.clone(),
                stem: None,
            }),
            [song, stem] => Ok(Command::Remove {
                song: song.clone(),
                stem: Some(stem.clone()),
            }),
            _ => Err(usage("remove", "remove SONG [STEM]")),
        },
        "load" => match args {
            [song] => Ok(Command::Load(song.clone())),
            _ => Err(usage("load", "load SONG")),
        },
        "queue" => match args {
            [song] => Ok(Command::Queue(song.clone())),
            _ => Err(usage("queue", "queue SONG")),
        },
        _ if args.is_empty() => Ok(Command::Songs),
        _ => Err(usage("songs", "songs")),
    }
}

/// A place in the set list: 0 (next up) to `MAX_QUEUE − 1`.
fn set_list_place(command: &'static str, arg: &str) -> Result<usize, CommandError> {
    arg.parse::<usize>()
        .ok()
        .filter(|&i| i < crate::protocol::MAX_QUEUE)
        .ok_or_else(|| CommandError::Argument {
            command,
            reason: format!(
                "'{arg}' is not a place in the set list (0 to {})",
                crate::protocol::MAX_QUEUE - 1
            ),
        })
}

fn parse_secs(s: &str) -> Result<i64, CommandError> {
    let bad = |reason: &str| CommandError::Argument {
        command: "seek",
        reason: format!("'{s}' {reason}"),
    };
    let secs: f64 = s.parse().map_err(|_| bad("is not a number of seconds"))?;
    if !secs.is_finite() || !(0.0..=MAX_SEEK_SECS).contains(&secs) {
        return Err(bad("is not a position between 0 and a day"));
    }
    Ok((secs * 1e9).round() as i64)
}

/// A gain in dB: a number (louder than `session::MAX_GAIN_DB` is clamped by
/// the session), or `-inf`. NaN, `+inf` and words are refused here, before any
/// vote is cast.
fn parse_db(s: &str) -> Result<f32, CommandError> {
    let bad = |reason: &str| CommandError::Argument {
        command: "volume",
        reason: format!("'{s}' {reason}"),
    };
    let db: f32 = s
        .parse()
        .map_err(|_| bad("is not a gain in dB (a number, or -inf)"))?;
    if db.is_nan() || db == f32::INFINITY {
        return Err(bad("is not a gain in dB (a number, or -inf)"));
    }
    Ok(db)
}

/// `all`/`master`, a stem's name (case-insensitive), or its index.
pub fn resolve_channel(s: &str, stems: &[String]) -> Result<Channel, CommandError> {
    if s.eq_ignore_ascii_case("all") || s.eq_ignore_ascii_case("master") {
        return Ok(Channel::Master);
    }
    if let Some(i) = stems.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(Channel::Stem(i as u16));
    }
    match s.parse::<usize>() {
        Ok(i) if i < stems.len() => Ok(Channel::Stem(i as u16)),
        _ => Err(CommandError::NoStem(s.to_string())),
    }
}

/// An `{"event":"error","message":…}` line.
pub fn error_event(message: &str) -> Value {
    json!({ "event": "error", "message": message })
}

/// A gain in dB as JSON: a number, or the string "-inf" (JSON has no
/// infinities).
pub fn db_json(db: f32) -> Value {
    if db == f32::NEG_INFINITY {
        json!("-inf")
    } else {
        json!(db)
    }
}

/// A channel as events name it: `all` (the master), a stem's name, or
/// `stemN` for a channel this peer has no file for.
pub fn channel_name(channel: Channel, stems: &[String]) -> String {
    match channel {
        Channel::Master => "all".to_string(),
        Channel::Stem(i) => stems
            .get(usize::from(i))
            .cloned()
            .unwrap_or_else(|| format!("stem{i}")),
    }
}

/// A user action as JSON: `{"action":"seek","position_secs":10.0}`.
pub fn action_json(event: &Event, stems: &[String]) -> Value {
    match *event {
        Event::None => json!({ "action": "none" }),
        Event::Play => json!({ "action": "play" }),
        Event::Pause => json!({ "action": "pause" }),
        Event::Seek { position_ns } => {
            json!({ "action": "seek", "position_secs": position_ns as f64 / 1e9 })
        }
        Event::Volume { channel, gain_db } => json!({
            "action": "volume",
            "stem": channel_name(channel, stems),
            "gain_db": db_json(gain_db),
        }),
        Event::Mute { channel, muted } => json!({
            "action": if muted { "mute" } else { "unmute" },
            "stem": channel_name(channel, stems),
        }),
        Event::Load(song) => json!({ "action": "load", "song": song.song.hex() }),
        Event::Queue(song) => json!({ "action": "queue", "song": song.song.hex() }),
        Event::Unqueue { index, song } => {
            json!({ "action": "unqueue", "index": index, "song": song.hex() })
        }
        Event::Next => json!({ "action": "next" }),
        Event::Prev => json!({ "action": "prev" }),
        Event::Move { from, to, song } => {
            json!({ "action": "move", "from": from, "to": to, "song": song.hex() })
        }
        Event::Lead { need_ms } => json!({ "action": "lead", "need_ms": need_ms }),
    }
}

fn verdict_json(v: &Verdict) -> Value {
    match v {
        Verdict::Applied => json!("applied"),
        Verdict::Abstained => json!("abstained"),
        Verdict::Overruled { by } => json!(format!("overruled by {by}")),
        Verdict::Rejected(r) => json!(format!("rejected: {r:?}").to_lowercase()),
    }
}

/// The fields of a `decision` event that describe the state from
/// `apply_at_session_ns` on.
fn state_json(
    state: &SessionState,
    apply_at_session_ns: i64,
    stems: &[String],
) -> Map<String, Value> {
    let mut gains = Map::new();
    let mut muted = Vec::new();
    for (i, ch) in state.channels.iter().enumerate() {
        let name = channel_name(Channel::Stem(i as u16), stems);
        if ch.muted {
            muted.push(json!(name.clone()));
        }
        gains.insert(name, db_json(ch.gain_db));
    }
    let mut m = Map::new();
    m.insert(
        "apply_at_session_ms".into(),
        json!(apply_at_session_ns as f64 / 1e6),
    );
    m.insert("song".into(), json!(state.song.song.hex()));
    m.insert("playing".into(), json!(state.timeline.playing));
    m.insert(
        "position_secs".into(),
        json!(state.position_ns_at(apply_at_session_ns) as f64 / 1e9),
    );
    m.insert("gains_db".into(), Value::Object(gains));
    m.insert("master_db".into(), db_json(state.master.gain_db));
    m.insert("muted".into(), Value::Array(muted));
    m
}

/// `{"event":"decision",...}` for a decided round, with every vote and its
/// verdict.
pub fn decision_event(d: &Decision, stems: &[String]) -> Value {
    let mut m = Map::new();
    m.insert("event".into(), json!("decision"));
    m.insert("round".into(), json!(d.round.0));
    m.extend(state_json(&d.state, d.apply_at_session_ns, stems));
    let votes: Vec<Value> = d
        .outcomes
        .iter()
        .filter(|o| o.vote.event.is_action())
        .map(|o| {
            let mut v = action_json(&o.vote.event, stems);
            v["peer_id"] = json!(o.vote.voter.to_string());
            v["verdict"] = verdict_json(&o.verdict);
            v
        })
        .collect();
    m.insert("votes".into(), Value::Array(votes));
    Value::Object(m)
}

/// A `decision` event for a state adopted from `from` after a divergence.
pub fn adopted_event(
    round: Round,
    apply_at_session_ns: i64,
    state: &SessionState,
    from: PeerId,
    stems: &[String],
) -> Value {
    let mut m = Map::new();
    m.insert("event".into(), json!("decision"));
    m.insert("round".into(), json!(round.0));
    m.extend(state_json(state, apply_at_session_ns, stems));
    m.insert("adopted_from".into(), json!(from.to_string()));
    m.insert("votes".into(), json!([]));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Vote, choose};

    fn stems() -> Vec<String> {
        ["drums", "bass", "keys", "lead"].map(String::from).to_vec()
    }

    fn parse(line: &str) -> Result<Option<Command>, CommandError> {
        parse_command(line, &stems())
    }

    #[test]
    fn library_commands_take_quoted_names_and_paths() {
        assert_eq!(
            parse(r#"add --song "Blue in Green" "/music/Blue in Green/bass.wav" keys.flac"#),
            Ok(Some(Command::Add {
                song: Some("Blue in Green".into()),
                paths: vec!["/music/Blue in Green/bass.wav".into(), "keys.flac".into()],
            }))
        );
        assert_eq!(
            parse("add stems/"),
            Ok(Some(Command::Add {
                song: None,
                paths: vec!["stems/".into()],
            }))
        );
        assert_eq!(
            parse("remove 'So What' bass"),
            Ok(Some(Command::Remove {
                song: "So What".into(),
                stem: Some("bass".into()),
            }))
        );
        assert_eq!(parse("songs"), Ok(Some(Command::Songs)));
        for bad in [
            "add",
            "add --song",
            "add --song x",
            "add 'open",
            "remove",
            "remove a b c",
            "songs x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_command_of_the_interface_parses() {
        assert_eq!(parse("play"), Ok(Some(Command::Vote(Event::Play))));
        assert_eq!(parse("  PAUSE "), Ok(Some(Command::Vote(Event::Pause))));
        assert_eq!(
            parse("seek 10.5"),
            Ok(Some(Command::Vote(Event::Seek {
                position_ns: 10_500_000_000
            })))
        );
        assert_eq!(
            parse("volume bass -6"),
            Ok(Some(Command::Vote(Event::Volume {
                channel: Channel::Stem(1),
                gain_db: -6.0
            })))
        );
        assert_eq!(
            parse("volume 3 -inf"),
            Ok(Some(Command::Vote(Event::Volume {
                channel: Channel::Stem(3),
                gain_db: f32::NEG_INFINITY
            })))
        );
        assert_eq!(
            parse("volume all 0"),
            Ok(Some(Command::Vote(Event::Volume {
                channel: Channel::Master,
                gain_db: 0.0
            })))
        );
        assert_eq!(
            parse("mute Keys"),
            Ok(Some(Command::Vote(Event::Mute {
                channel: Channel::Stem(2),
                muted: true
            })))
        );
        assert_eq!(parse("status"), Ok(Some(Command::Status)));
        assert_eq!(parse("peers"), Ok(Some(Command::Peers)));
        assert_eq!(parse("discover"), Ok(Some(Command::Discover)));
        assert!(parse("discover now").is_err());
        // The set list's.
        assert_eq!(
            parse("load \"Blue in Green\""),
            Ok(Some(Command::Load("Blue in Green".into())))
        );
        assert_eq!(
            parse("queue a1b2c3"),
            Ok(Some(Command::Queue("a1b2c3".into())))
        );
        assert_eq!(parse("unqueue 2"), Ok(Some(Command::Unqueue(2))));
        assert_eq!(
            parse("move 3 0"),
            Ok(Some(Command::Move { from: 3, to: 0 }))
        );
        assert_eq!(parse("next"), Ok(Some(Command::Vote(Event::Next))));
        assert_eq!(parse("prev"), Ok(Some(Command::Vote(Event::Prev))));
        assert!(parse("unqueue -1").is_err());
        assert!(parse("move 1").is_err());
        assert!(parse("move 1 64").is_err(), "past the longest set list");
        assert!(parse("load").is_err());
        assert_eq!(
            parse("solo keys"),
            Ok(Some(Command::Solo { stem: 2, on: true }))
        );
        assert_eq!(
            parse("unsolo 0"),
            Ok(Some(Command::Solo { stem: 0, on: false }))
        );
        assert!(matches!(
            parse("solo all"),
            Err(CommandError::Argument {
                command: "solo",
                ..
            })
        ));
        assert_eq!(parse("quit"), Ok(Some(Command::Quit)));
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("# a comment"), Ok(None));
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        let err = |l: &str| parse(l).unwrap_err().to_string();
        assert!(err("jump").contains("unknown command 'jump'"));
        assert!(err("seek").contains("usage: seek SECS"));
        assert!(err("seek ten").contains("'ten' is not a number"));
        assert!(err("seek -1").contains("between 0 and a day"));
        assert!(err("seek NaN").contains("between 0 and a day"));
        assert!(err("seek inf").contains("between 0 and a day"));
        assert!(err("volume bass").contains("usage"));
        assert!(err("volume bass NaN").contains("not a gain"));
        assert!(err("volume bass inf").contains("not a gain"));
        assert!(err("volume bass loud").contains("not a gain"));
        assert!(err("volume vocals -3").contains("no stem 'vocals'"));
        assert!(err("volume 4 -3").contains("no stem '4'"));
        assert!(err("play now").contains("usage: play"));
    }

    #[test]
    fn a_decision_event_names_stems_votes_and_verdicts() {
        let prev = SessionState::new(60_000_000_000, 2);
        let stems = &stems()[..2];
        let vote = |voter, event| Vote {
            voter: PeerId(voter),
            round: Round(7),
            event,
        };
        let d = choose(
            &prev,
            Round(7),
            1_000_000_000,
            &[
                vote(1, Event::Play),
                vote(2, Event::Pause),
                vote(
                    3,
                    Event::Volume {
                        channel: Channel::Stem(1),
                        gain_db: f32::NEG_INFINITY,
                    },
                ),
                vote(4, Event::None),
            ],
        );
        let e = decision_event(&d, stems);
        assert_eq!(e["event"], "decision");
        assert_eq!(e["round"], 7);
        assert_eq!(e["apply_at_session_ms"], 1000.0);
        assert_eq!(e["playing"], false, "pause beats play");
        assert_eq!(e["position_secs"], 0.0);
        assert_eq!(e["gains_db"], json!({"drums": 0.0, "bass": "-inf"}));
        let votes = e["votes"].as_array().unwrap();
        assert_eq!(votes.len(), 3, "abstentions are left out: {votes:?}");
        assert_eq!(votes[0]["action"], "play");
        assert_eq!(votes[0]["verdict"], format!("overruled by {}", PeerId(2)));
        assert_eq!(votes[1]["verdict"], "applied");
        assert_eq!(votes[2]["stem"], "bass");
        let a = adopted_event(Round(9), 0, &d.state, PeerId(5), stems);
        assert_eq!(a["adopted_from"], PeerId(5).to_string());
        assert_eq!(
            channel_name(Channel::Stem(9), stems),
            "stem9",
            "a channel with no local file"
        );
    }

    #[test]
    fn infinite_gains_are_json_strings() {
        assert_eq!(db_json(f32::NEG_INFINITY), json!("-inf"));
        assert_eq!(db_json(-6.0), json!(-6.0));
        assert_eq!(
            error_event("x").to_string(),
            r#"{"event":"error","message":"x"}"#
        );
    }
}
