//! The side and bottom panels: the vote log, the peers and their latency
//! graph, the session (address, join, passphrase, stems, errors), and the
//! help overlay.

use egui::{Color32, RichText, Ui};
use egui_plot::{Legend, Line, Plot};

use crate::protocol::{Event, Verdict};
use crate::runtime::control::channel_name;

use super::app::Action;
use super::fader::format_db;
use super::launch::LoadedStem;
use super::model::SessionView;
use super::timeline::format_secs;

/// Points drawn per line of the peers' graphs.
const PLOT_POINTS: usize = 60;

pub(super) const AMBER: Color32 = Color32::from_rgb(230, 170, 60);
pub(super) const GREEN: Color32 = Color32::from_rgb(90, 200, 110);
pub(super) const RED: Color32 = Color32::from_rgb(230, 80, 70);

/// A vote in words: `play`, `seek 1:23.0`, `bass -6.0 dB`, `mute keys`.
pub fn event_text(e: &Event, stems: &[String]) -> String {
    match *e {
        Event::None => "nothing".into(),
        Event::Play => "play".into(),
        Event::Pause => "pause".into(),
        Event::Seek { position_ns } => format!("seek {}", format_secs(position_ns as f64 / 1e9)),
        Event::Volume { channel, gain_db } => {
            format!("{} {} dB", channel_name(channel, stems), format_db(gain_db))
        }
        Event::Mute { channel, muted } => format!(
            "{} {}",
            if muted { "mute" } else { "unmute" },
            channel_name(channel, stems)
        ),
        Event::Load(song) => format!("load {}", song.short()),
        Event::Queue(song) => format!("queue {}", song.short()),
        Event::Unqueue { index, .. } => format!("unqueue {index}"),
        Event::Next => "next".into(),
        Event::Prev => "prev".into(),
        Event::Move { from, to, .. } => format!("move {from} to {to}"),
        Event::Lead { need_ms } => format!("needs a {need_ms} ms lead"),
    }
}

/// A clock offset: in ms when under a second (same machine, or well
/// synced clocks), else in seconds.
fn offset_text(offset_ns: f64) -> String {
    if offset_ns.abs() < 1e9 {
        format!("{:+.2} ms", offset_ns / 1e6)
    } else {
        format!("{:+.3} s", offset_ns / 1e9)
    }
}

/// "synced", "joining…", "starting…", or "stopped", with a colour.
pub fn sync_badge(ui: &mut Ui, view: &SessionView, launching: bool) {
    let (text, color) = if launching {
        ("starting…", AMBER)
    } else if view.stopped || view.me.is_none() {
        ("stopped", RED)
    } else if view.status.as_ref().is_some_and(|s| s.synced) {
        ("in sync", GREEN)
    } else {
        ("joining…", AMBER)
    };
    ui.label(RichText::new(text).color(color));
}

/// The vote log: our pending votes, then the last decided rounds with every
/// vote and its verdict.
pub fn votes_ui(ui: &mut Ui, view: &SessionView, now: f64, stems: &[String]) {
    ui.heading("Votes");
    egui::ScrollArea::vertical().show(ui, |ui| {
        for p in &view.pending {
            ui.label(
                RichText::new(format!(
                    "you: {} (waiting for its round, {:.1} s)",
                    event_text(&p.event, stems),
                    now - p.since_secs
                ))
                .color(AMBER),
            );
        }
        for entry in &view.log {
            ui.horizontal_wrapped(|ui| {
                ui.label(
                    RichText::new(format!("round {}", entry.round.0))
                        .monospace()
                        .weak(),
                );
                if let Some(from) = entry.adopted_from
                    && entry.votes.is_empty()
                {
                    ui.label(format!("state taken over from {}", view.name_of(from)));
                }
                for (voter, event, verdict) in &entry.votes {
                    let (color, why) = match verdict {
                        Verdict::Applied => (GREEN, "won".to_string()),
                        Verdict::Abstained => (Color32::GRAY, "abstained".to_string()),
                        Verdict::Overruled { by } => {
                            (RED, format!("lost to {}", view.name_of(*by)))
                        }
                        Verdict::Rejected(r) => (RED, format!("refused: {r:?}").to_lowercase()),
                    };
                    ui.label(
                        RichText::new(format!(
                            "{}: {} ({why})",
                            view.name_of(*voter),
                            event_text(event, stems)
                        ))
                        .color(color),
                    );
                }
            });
        }
        if view.pending.is_empty() && view.log.is_empty() {
            ui.label(
                RichText::new(
                    "Every action is a vote: it is cast in the next 100 ms round, and every \
                     peer applies the winner at the same instant.",
                )
                .weak(),
            );
        }
    });
}

/// The peers table and the live latency and clock-offset graphs.
pub fn peers_ui(ui: &mut Ui, view: &SessionView, now: f64) {
    ui.heading("Peers");
    let Some(status) = &view.status else {
        ui.label("no peer running");
        return;
    };
    egui::Grid::new("peers")
        .striped(true)
        .num_columns(6)
        .show(ui, |ui| {
            for h in ["name", "address", "RTT", "offset", "heard", "state"] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            if let Some(me) = &view.me {
                ui.label(format!("{} (you)", me.name));
                ui.label(me.advertise.to_string());
                ui.label("—");
                ui.label("—");
                ui.label("—");
                ui.label(if Some(me.peer_id) == status.root {
                    "root"
                } else if status.synced {
                    "synced"
                } else {
                    "syncing"
                });
                ui.end_row();
            }
            for p in &status.peers {
                ui.label(&p.info.name)
                    .on_hover_text(format!("peer id {}", p.info.peer_id));
                ui.label(p.info.addr.to_string());
                ui.label(
                    p.rtt_ns
                        .map_or("—".into(), |r| format!("{:.1} ms", r as f64 / 1e6)),
                );
                ui.label(p.clock_offset_ns.map_or("—".into(), offset_text))
                    .on_hover_text(p.clock_rate_ppm.map_or("rate unknown".into(), |r| {
                        format!("its clock runs {r:+.1} ppm")
                    }));
                let heard_ms = p.heard_ago_ns as f64 / 1e6;
                ui.label(
                    RichText::new(format!("{heard_ms:.0} ms")).color(if heard_ms > 500.0 {
                        AMBER
                    } else {
                        ui.visuals().text_color()
                    }),
                );
                ui.label(if p.is_root {
                    "root"
                } else if p.synced {
                    "synced"
                } else {
                    "syncing"
                });
                ui.end_row();
            }
        });
    if status.peers.is_empty() {
        ui.label(RichText::new("alone: share your address for others to join").weak());
        return;
    }
    let window_secs = 60.0;
    let series = |pick: fn(&(f64, f64, f64)) -> f64| {
        view.history
            .iter()
            .map(|(id, h)| {
                // At most PLOT_POINTS a line: long anti-aliased lines are
                // what costs most to paint (60 fps or 50 under llvmpipe).
                let recent = h.points.iter().filter(|p| now - p.0 < window_secs);
                let stride = (recent.clone().count() / PLOT_POINTS).max(1);
                let points: Vec<[f64; 2]> = recent
                    .step_by(stride)
                    .map(|p| [p.0 - now, pick(p)])
                    .collect();
                (view.name_of(*id), points)
            })
            .collect::<Vec<_>>()
    };
    for (id, title, pick) in [
        (
            "rtt_plot",
            "round-trip time (ms), last minute",
            (|p: &(f64, f64, f64)| p.1) as fn(&(f64, f64, f64)) -> f64,
        ),
        (
            "offset_plot",
            "clock offset drift since first seen (ms)",
            |p: &(f64, f64, f64)| p.2,
        ),
    ] {
        ui.label(RichText::new(title).small());
        Plot::new(id)
            .height(110.0)
            .legend(Legend::default())
            .allow_drag(false)
            .allow_zoom(false)
            .allow_scroll(false)
            .show(ui, |plot| {
                for (name, points) in series(pick) {
                    plot.line(Line::new(name, points));
                }
            });
    }
}

/// The sessions found on the local network, each joined with a click.
fn sessions_found(ui: &mut Ui, view: &SessionView, out: &mut SessionOutput) {
    let here = view.state.as_ref().map(|s| (s.name.as_str(), s.founder));
    if view.sessions.is_empty() {
        ui.label(
            RichText::new("no other session found on this network")
                .small()
                .weak(),
        );
        return;
    }
    ui.label(RichText::new("On this network").strong());
    egui::Grid::new("sessions_found")
        .num_columns(3)
        .show(ui, |ui| {
            for f in &view.sessions {
                let lock = if f.private { " (private)" } else { "" };
                ui.label(format!("{}{lock}", f.name))
                    .on_hover_text(f.addr.to_string());
                ui.label(match f.peers {
                    1 => "1 peer".to_string(),
                    n => format!("{n} peers"),
                });
                if here == Some((f.name.as_str(), f.founder)) {
                    ui.label(RichText::new("you are here").weak());
                } else if !f.compatible {
                    ui.label(RichText::new("another synfony version").weak());
                } else if ui
                    .button("Join")
                    .on_hover_text(if f.private {
                        "type its passphrase below first"
                    } else {
                        "leave this session and join that one"
                    })
                    .clicked()
                {
                    out.actions.push(Action::Join(f.addr.to_string()));
                }
                ui.end_row();
            }
        });
}

/// What the session panel asked for.
#[derive(Default)]
pub struct SessionOutput {
    pub actions: Vec<Action>,
    pub dismiss_error: Option<usize>,
}

/// What the session panel shows.
pub struct SessionPanel<'a> {
    pub view: &'a SessionView,
    /// This peer was started to join someone (so it can leave).
    pub joined: bool,
    pub stems: &'a [LoadedStem],
    pub recent: &'a [std::path::PathBuf],
    /// The address to give others.
    pub share: Option<std::net::SocketAddr>,
}

pub fn session_ui(
    ui: &mut Ui,
    p: &SessionPanel<'_>,
    join_text: &mut String,
    passphrase: &mut String,
) -> SessionOutput {
    let SessionPanel {
        view,
        joined,
        stems,
        recent,
        share,
    } = *p;
    let mut out = SessionOutput::default();
    ui.heading("Session");
    for (i, e) in view.errors.iter().enumerate() {
        ui.horizontal(|ui| {
            if ui.small_button("x").on_hover_text("dismiss").clicked() {
                out.dismiss_error = Some(i);
            }
            ui.label(RichText::new(e).color(RED));
        });
    }
    if let (Some(me), Some(share)) = (&view.me, share) {
        ui.horizontal(|ui| {
            ui.label("Your address:");
            ui.monospace(share.to_string());
            if ui
                .button("Copy")
                .on_hover_text("others join with --join ADDRESS, or paste it in their Join box")
                .clicked()
            {
                ui.ctx().copy_text(share.to_string());
            }
        });
        ui.label(
            RichText::new(format!("you are {} · output: {}", me.name, me.output))
                .small()
                .weak(),
        );
    }
    ui.horizontal(|ui| {
        ui.label("Join:");
        let r = ui.add(
            egui::TextEdit::singleline(join_text)
                .hint_text("host:7878")
                .desired_width(140.0),
        );
        let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if ui.button("Join").clicked() || enter {
            out.actions.push(Action::Join(join_text.clone()));
        }
        if joined
            && ui
                .button("Leave")
                .on_hover_text("start a session of your own")
                .clicked()
        {
            out.actions.push(Action::Leave);
        }
    });
    sessions_found(ui, view, &mut out);
    ui.horizontal(|ui| {
        ui.label("Passphrase:");
        ui.add(
            egui::TextEdit::singleline(passphrase)
                .password(true)
                .hint_text("none: open session")
                .desired_width(140.0),
        )
        .on_hover_text("used when you next join or leave (not saved)");
    });
    ui.separator();
    ui.label(RichText::new("Playing here").strong())
        .on_hover_text("this peer's files in the current song; load a library song to change it");
    for (i, s) in stems.iter().enumerate() {
        ui.horizontal(|ui| {
            if ui
                .small_button("x")
                .on_hover_text("remove this stem")
                .clicked()
            {
                out.actions.push(Action::RemoveStem(i));
            }
            ui.label(&s.file.name)
                .on_hover_text(s.file.path.display().to_string());
            ui.label(
                RichText::new(format!(
                    "{} · {} Hz {} ch",
                    format_secs(s.file.frames() as f64 / f64::from(crate::audio::ENGINE_RATE_HZ)),
                    s.file.probe.source_rate_hz,
                    s.file.probe.source_channels
                ))
                .small()
                .weak(),
            );
        });
    }
    let unused: Vec<_> = recent
        .iter()
        .filter(|r| !stems.iter().any(|s| s.file.path == **r))
        .collect();
    if !unused.is_empty() {
        ui.collapsing("Recent stems", |ui| {
            for r in unused {
                if ui
                    .small_button(r.display().to_string())
                    .on_hover_text("add it to the library again")
                    .clicked()
                {
                    out.actions.push(Action::AddStems(vec![r.clone()]));
                }
            }
        });
    }
    out
}

/// The keyboard shortcuts, over the window.
pub fn help_ui(ctx: &egui::Context, open: &mut bool) {
    egui::Window::new("Keyboard shortcuts")
        .open(open)
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            egui::Grid::new("help").num_columns(2).show(ui, |ui| {
                for (key, what) in [
                    ("Space", "play / pause (a vote)"),
                    ("← →", "seek 5 s back / ahead"),
                    ("Shift ← →", "seek 1 s"),
                    ("Home", "seek to the start"),
                    (
                        "N / P",
                        "next song of the set list / the song before (votes)",
                    ),
                    ("F1, ?", "this help; Esc closes it"),
                    ("drag a fader", "volume (Shift: fine)"),
                    ("wheel on a fader", "±1 dB"),
                    ("↑ ↓ on a fader", "±0.5 dB (Shift: ±0.1)"),
                    ("Ctrl/Alt-click a fader", "back to 0 dB"),
                    ("double-click a gain", "type one (e.g. -6, -inf)"),
                    ("click a meter", "reset its clip light"),
                    ("click the timeline", "seek there"),
                ] {
                    ui.label(RichText::new(key).monospace().strong());
                    ui.label(what);
                    ui.end_row();
                }
            });
            ui.label(
                RichText::new(
                    "Play, pause, seek, volume and mute are votes: everyone hears the result. \
                     Solo is yours alone.",
                )
                .small()
                .weak(),
            );
        });
}
