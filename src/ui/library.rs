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

/// The panel; what the user asked for comes back as actions.
pub fn library_ui(ui: &mut Ui, view: &SessionView) -> Vec<Action> {
    let mut actions = Vec::new();
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
    egui::CollapsingHeader::new(header)
        .id_salt(song.id)
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                let here: Vec<_> = song.stems.iter().filter_map(|s| s.path.clone()).collect();
                let load = ui.add_enabled(!here.is_empty(), egui::Button::new("Load"));
                let load = load.on_hover_text(
                    "play this song's stems that are here (the peer restarts, staying in the session)",
                );
                if load.clicked() {
                    actions.push(Action::LoadSong {
                        name: song.name.clone(),
                        paths: here,
                    });
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
}
