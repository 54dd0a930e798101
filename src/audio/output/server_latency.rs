//! The output latency a sound server adds, when the device cannot say it.
//!
//! Through ALSA's pulse plugin (the default device on most desktops, and
//! PipeWire's pulse side too) the delay cpal reports is the plugin's
//! `snd_pcm_delay`, which is PulseAudio's `pa_stream_get_latency`: the
//! stream's whole latency, its buffered audio and the sink's delay behind it.
//! Nothing is to be added then, and adding the sink's delay again (as this
//! module once did) stepped the peer's output by a millisecond or two each
//! time the server answered (`scripts/measure-device`, NOTEBOOK.md). On some
//! ALSA versions the plugin reports nothing at all (SETUP.md); only then is
//! the server asked. For each stream `pactl list sink-inputs` gives the
//! buffered audio ("Buffer Latency") and the sink's delay ("Sink Latency").
//! [`ServerLatency`] asks it about this process's stream (once a second, on
//! the output's supervising thread, never the audio thread) and adds the
//! smallest buffered amount of the last few answers — the buffer is a
//! sawtooth between callbacks, and a frame written by a callback waits behind
//! what is left at its bottom — to the median of the sink's delays, which jump
//! by ms from one answer to the next (a sink renders in chunks). No `pactl`,
//! no server, or no stream of ours: no answer, and `--latency-offset-ms`
//! stands alone.

use std::collections::VecDeque;
use std::process::Command;

/// Answers kept: the smallest buffered amount and the median sink delay
/// among them are used.
const KEEP: usize = 8;

/// The server's latency for this process's stream, from its recent answers.
#[derive(Debug, Default)]
pub struct ServerLatency {
    buffer_us: VecDeque<i64>,
    sink_us: VecDeque<i64>,
    /// `pactl` could not be run: do not try again.
    unavailable: bool,
}

impl ServerLatency {
    /// Asks the server once; returns our stream's latency in ns, if known.
    pub fn poll(&mut self) -> Option<i64> {
        if self.unavailable {
            return None;
        }
        // Untranslated labels: the parser reads the English ones.
        let out = match Command::new("pactl")
            .args(["list", "sink-inputs"])
            .env("LC_ALL", "C")
            .output()
        {
            Ok(out) if out.status.success() => out,
            // No server now (it may be restarting): ask again next time.
            Ok(_) => {
                self.buffer_us.clear();
                self.sink_us.clear();
                return None;
            }
            // No `pactl` at all: never again.
            Err(_) => {
                self.unavailable = true;
                return None;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let Some((buffer_us, sink_us)) = parse_sink_inputs(&text, std::process::id()) else {
            self.buffer_us.clear();
            self.sink_us.clear();
            return None;
        };
        self.add(buffer_us, sink_us)
    }

    /// Takes one answer; returns the stream's latency, in ns.
    pub fn add(&mut self, buffer_us: i64, sink_us: i64) -> Option<i64> {
        for (list, us) in [
            (&mut self.buffer_us, buffer_us),
            (&mut self.sink_us, sink_us),
        ] {
            list.push_back(us.max(0));
            while list.len() > KEEP {
                list.pop_front();
            }
        }
        let least = *self.buffer_us.iter().min()?;
        // The sink's delay jumps by ms from one answer to the next (a sink
        // renders in chunks; a null sink's by as much as its block, 0–7 ms
        // here): the median of the last answers, so that each poll does not
        // step the peer's output by that much.
        let mut sink: Vec<i64> = self.sink_us.iter().copied().collect();
        sink.sort_unstable();
        let sink_us = sink[sink.len() / 2];
        Some((least + sink_us) * 1_000)
    }
}

/// The buffer and sink latencies (µs) of the sink input whose
/// `application.process.id` is `pid`, from `pactl list sink-inputs`.
pub fn parse_sink_inputs(text: &str, pid: u32) -> Option<(i64, i64)> {
    let want = format!("application.process.id = \"{pid}\"");
    text.split("Sink Input #").skip(1).find_map(|block| {
        if !block.lines().any(|l| l.trim() == want) {
            return None;
        }
        let usec = |key: &str| -> Option<i64> {
            let line = block.lines().find(|l| l.trim().starts_with(key))?;
            let value = line.trim()[key.len()..].trim();
            value.strip_suffix("usec")?.trim().parse().ok()
        };
        Some((usec("Buffer Latency:")?, usec("Sink Latency:")?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "Sink Input #3
\tDriver: protocol-native.c
\tBuffer Latency: 28437 usec
\tSink Latency: 4291 usec
\tProperties:
\t\tapplication.name = \"ALSA plug-in [synfony]\"
\t\tapplication.process.id = \"24012\"

Sink Input #4
\tBuffer Latency: 900 usec
\tSink Latency: 100 usec
\tProperties:
\t\tapplication.process.id = \"77\"
";

    #[test]
    fn finds_this_processs_stream_in_pactls_listing() {
        assert_eq!(parse_sink_inputs(LISTING, 24012), Some((28437, 4291)));
        assert_eq!(parse_sink_inputs(LISTING, 77), Some((900, 100)));
        assert_eq!(parse_sink_inputs(LISTING, 2401), None);
        assert_eq!(parse_sink_inputs("", 1), None);
        assert_eq!(parse_sink_inputs("Sink Input #1\n\tgarbage", 1), None);
    }

    #[test]
    fn keeps_the_bottom_of_the_buffers_sawtooth() {
        let mut s = ServerLatency::default();
        assert_eq!(s.add(30_000, 4_000), Some(34_000_000));
        assert_eq!(s.add(10_000, 4_000), Some(14_000_000));
        assert_eq!(s.add(25_000, 5_000), Some(14_000_000), "the sink's median");
        assert_eq!(s.add(25_000, 5_000), Some(15_000_000));
        for _ in 0..KEEP {
            s.add(20_000, 5_000);
        }
        assert_eq!(
            s.add(20_000, 5_000),
            Some(25_000_000),
            "old answers age out"
        );
    }
}
