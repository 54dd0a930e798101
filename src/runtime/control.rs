//! Headless control: the stdin command language and the JSON-lines events of
//! `../shared/INTERFACE.md`. Pure: parsing and formatting only, so every
//! command and every event shape is unit-tested without a process.

use serde_json::{Value, json};

use crate::session::{Channel, Event};

/// Longest seek accepted, in seconds (a day; the session clamps into the song).
pub const MAX_SEEK_SECS: f64 = 86_400.0;

/// One line of stdin.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// A vote for the next round.
    Vote(Event),
    Status,
    Peers,
    Quit,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CommandError {
    #[error(
        "unknown command '{0}' (expected play, pause, seek SECS, volume STEM DB, mute STEM, unmute STEM, status, peers or quit)"
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
        "status" => {
            arity("status", 0, "status")?;
            Command::Status
        }
        "peers" => {
            arity("peers", 0, "peers")?;
            Command::Peers
        }
        "quit" | "exit" => Command::Quit,
        _ => return Err(CommandError::Unknown(word.to_string())),
    };
    Ok(Some(cmd))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stems() -> Vec<String> {
        ["drums", "bass", "keys", "lead"].map(String::from).to_vec()
    }

    fn parse(line: &str) -> Result<Option<Command>, CommandError> {
        parse_command(line, &stems())
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
    fn infinite_gains_are_json_strings() {
        assert_eq!(db_json(f32::NEG_INFINITY), json!("-inf"));
        assert_eq!(db_json(-6.0), json!(-6.0));
        assert_eq!(
            error_event("x").to_string(),
            r#"{"event":"error","message":"x"}"#
        );
    }
}
