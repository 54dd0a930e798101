//! The library panel: every song of the session, its stems, who hosts each
//! and where it would play from here (this peer's file, the cache, being
//! fetched with its progress, a host, or missing). Files dropped on the
//! window or picked with *Add…* join the library without a restart.

use egui::{Color32, RichText, Ui};

use super::app::Action;
use super::model::SessionView;
use super::panels::{AMBER, GREEN, RED};
use super::timeline::format_secs;
use crate::audio::ENGINE_RATE_HZ;
use crate::protocol::{Event, SongRef};
use crate::runtime::library::{LibrarySong, LibraryStem};
use crate::runtime::room::StemSource;

/// Where a stem plays from, as a short word and a colour.
pub fn source_badge(stem: &LibraryStem) -> (String, Color32) {
    match (stem.source, stem.fetching) {
        (StemSource::Local, _) => ("here".into(), GREEN),
        (StemSource::Cached, _) => ("cached".into(), GREEN),
        (StemSource::Remote, Some((have, of))) => (
            format!("fetching {:.0}%", have as f64 * 100.0 / of.max(1) as f64),
            AMBER,
        ),
        (StemSource::Remote, None) => ("on a host".into(), AMBER),
        (StemSource::Missing, _) => ("missing".into(), RED),
    }
}

/// A song's name, from the library (its id's first digits if unknown).
pub fn song_name(view: &SessionView, song: &SongRef) -> String {
    (view.library.iter())
        .find(|s| s.id == song.song)
        .map_or_else(|| song.short(), |s| s.name.clone())
}

/// The set list: the current song, the songs queued after it (each can be
/// taken out), and a song change voted and not yet decided.
fn set_list_ui(ui: &mut Ui, view: &SessionView, actions: &mut Vec<Action>) {
    let Some(state) = &view.state else {
        return;
    };
    ui.horizontal(|ui| {
        ui.label(RichText::new("Now").strong());
        ui.label(song_name(view, &state.song));
        if let Some(p) = view.pending_like(&Event::Next) {
            ui.label(
                RichText::new(format!(
                    "{} voted, waiting for its round",
                    super::panels::event_text(&p.event, &[])
                ))
                .color(AMBER),
            );
        }
    });
    if state.queue.is_empty() {
        ui.label(RichText::new("set list empty: the song stops at its end").weak());
    }
    for (i, song) in state.queue.iter().enumerate() {
        ui.horizontal(|ui| {
            ui.label(RichText::new(format!("{}.", i + 1)).weak());
            // Drag a song onto another's place to move it there (a vote).
            let dragged = ui.dnd_drag_source(ui.scope_id().with(("set list", i)), i, |ui| {
                ui.label(song_name(view, song))
                    .on_hover_text("drag to move it in the set list")
            });
            if let Some(from) = dragged.response.dnd_release_payload::<usize>()
                && *from != i
            {
                actions.push(Action::MoveQueued { from: *from, to: i });
            }
            if ui
                .small_button("×")
                .on_hover_text("take it off the set list (a vote)")
                .clicked()
            {
                actions.push(Action::Unqueue(i));
            }
        });
    }
    ui.separator();
}

/// The panel; what the user asked for comes back as actions.
pub fn library_ui(ui: &mut Ui, view: &SessionView) -> Vec<Action> {
    let mut actions = Vec::new();
    set_list_ui(ui, view, &mut actions);
    ui.horizontal(|ui| {
        ui.label(RichText::new("Library").strong());
        if ui.button("Add…").clicked() {
            actions.push(Action::OpenBrowser);
        }
        ui.label(
            RichText::new("or drop audio files or folders on the window")
                .small()
                .weak(),
        );
    });
    if view.library.is_empty() {
        ui.label(RichText::new("no songs yet").weak());
    }
    for song in &view.library {
        song_ui(ui, view, song, &mut actions);
    }
    actions
}

fn song_ui(ui: &mut Ui, view: &SessionView, song: &LibrarySong, actions: &mut Vec<Action>) {
    let secs = song.frames as f64 / f64::from(ENGINE_RATE_HZ);
    let title = format!(
        "{} · {} · {} stems",
        song.name,
        format_secs(secs),
        song.stems.len()
    );
    let header = if song.playable() {
        RichText::new(title)
    } else {
        RichText::new(title).color(RED)
    };
    let shown = egui::CollapsingHeader::new(header)
        .id_salt(song.id)
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                let has_stems = !song.stems.is_empty();
                let load = ui.add_enabled(has_stems, egui::Button::new("Load"));
                let load = load.on_hover_text(
                    "vote: this song now, from its start, on every peer (its stems from wherever they are)",
                );
                if load.clicked() {
                    actions.push(Action::LoadSong(song.id.hex()));
                }
                let queue = ui.add_enabled(has_stems, egui::Button::new("Queue"));
                if queue
                    .on_hover_text("vote: add it to the end of the set list")
                    .clicked()
                {
                    actions.push(Action::QueueSong(song.id.hex()));
                }
                if ui
                    .button("Remove")
                    .on_hover_text("take the song out of the library, for everyone")
                    .clicked()
                {
                    actions.push(Action::RemoveSong(song.id.hex()));
                }
            });
            for stem in &song.stems {
                ui.horizontal(|ui| {
                    let (word, colour) = source_badge(stem);
                    ui.label(&stem.name);
                    ui.label(RichText::new(word).small().color(colour));
                    let hosts: Vec<String> = stem.hosts.iter().map(|h| view.name_of(*h)).collect();
                    let hosts = if hosts.is_empty() {
                        "no host".to_string()
                    } else {
                        hosts.join(", ")
                    };
                    ui.label(RichText::new(hosts).small().weak())
                        .on_hover_text(format!("{} bytes", stem.size_bytes));
                });
            }
        });
    // Double-click a song to load it (a vote).
    if shown.header_response.double_clicked() && !song.stems.is_empty() {
        actions.push(Action::LoadSong(song.id.hex()));
    }
}
