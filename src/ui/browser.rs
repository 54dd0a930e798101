//! A small file browser for adding stems (egui has no file dialog, and the
//! native ones need GTK or a desktop portal): folders to walk, audio files
//! to tick, or a path to type.

use std::path::{Path, PathBuf};

use egui::RichText;

use crate::audio::decode::is_audio_file;

pub enum Outcome {
    Open,
    Closed,
    Picked(Vec<PathBuf>),
}

pub struct FileBrowser {
    dir: PathBuf,
    typed: String,
    /// (name, is folder) of the current folder's entries, read on entry.
    entries: Result<Vec<(String, bool)>, String>,
    picked: Vec<PathBuf>,
}

impl FileBrowser {
    /// Opens at `start`, else the home folder, else the current one.
    pub fn new(start: Option<PathBuf>) -> FileBrowser {
        let dir = start
            .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."));
        let mut b = FileBrowser {
            typed: dir.display().to_string(),
            entries: Ok(vec![]),
            dir: PathBuf::new(),
            picked: vec![],
        };
        b.enter(dir);
        b
    }

    fn enter(&mut self, dir: PathBuf) {
        self.entries = read_entries(&dir);
        self.typed = dir.display().to_string();
        self.dir = dir;
    }

    pub fn show(&mut self, ctx: &egui::Context) -> Outcome {
        let mut open = true;
        let mut outcome = Outcome::Open;
        egui::Window::new("Add stems")
            .open(&mut open)
            .default_size([420.0, 360.0])
            .show(ctx, |ui| {
                ui.horizontal(|ui| {
                    if ui.button("⬆").on_hover_text("parent folder").clicked()
                        && let Some(p) = self.dir.parent()
                    {
                        let p = p.to_path_buf();
                        self.enter(p);
                    }
                    let r = ui.add(
                        egui::TextEdit::singleline(&mut self.typed).desired_width(f32::INFINITY),
                    );
                    if r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                        let p = PathBuf::from(self.typed.trim());
                        if p.is_dir() {
                            self.enter(p);
                        } else {
                            outcome = Outcome::Picked(vec![p]);
                        }
                    }
                });
                ui.separator();
                egui::ScrollArea::vertical()
                    .max_height(240.0)
                    .show(ui, |ui| match &self.entries {
                        Err(e) => {
                            ui.colored_label(egui::Color32::from_rgb(230, 80, 70), e);
                        }
                        Ok(entries) => {
                            let mut enter = None;
                            for (name, is_dir) in entries {
                                let path = self.dir.join(name);
                                if *is_dir {
                                    if ui.selectable_label(false, format!("📁 {name}")).clicked()
                                    {
                                        enter = Some(path);
                                    }
                                } else {
                                    let mut on = self.picked.contains(&path);
                                    if ui.checkbox(&mut on, name.as_str()).changed() {
                                        self.picked.retain(|p| *p != path);
                                        if on {
                                            self.picked.push(path);
                                        }
                                    }
                                }
                            }
                            if let Some(p) = enter {
                                self.enter(p);
                            }
                        }
                    });
                ui.separator();
                ui.horizontal(|ui| {
                    let n = self.picked.len();
                    if ui
                        .add_enabled(n > 0, egui::Button::new(format!("Add {n} stem(s)")))
                        .clicked()
                    {
                        outcome = Outcome::Picked(std::mem::take(&mut self.picked));
                    }
                    if ui
                        .button("Add the whole folder")
                        .on_hover_text("every audio file in it, one stem each")
                        .clicked()
                    {
                        outcome = Outcome::Picked(vec![self.dir.clone()]);
                    }
                    ui.label(RichText::new("WAV, FLAC, MP3, OGG").small().weak());
                });
            });
        if !open {
            return Outcome::Closed;
        }
        outcome
    }
}

/// A folder's sub-folders and audio files, folders first, by name; hidden
/// entries left out.
fn read_entries(dir: &Path) -> Result<Vec<(String, bool)>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut out: Vec<(String, bool)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.starts_with('.') {
                return None;
            }
            if path.is_dir() {
                Some((name, true))
            } else if is_audio_file(&path) {
                Some((name, false))
            } else {
                None
            }
        })
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Folders come first, then audio files; other files and hidden ones
    /// are not listed; an unreadable folder is an error, not a panic.
    #[test]
    fn lists_folders_then_audio_files() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.flac", "a.wav", "notes.txt", ".hidden.wav"] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        std::fs::create_dir(dir.path().join("z")).unwrap();
        let entries = read_entries(dir.path()).unwrap();
        assert_eq!(
            entries,
            vec![
                ("z".to_string(), true),
                ("a.wav".to_string(), false),
                ("b.flac".to_string(), false)
            ]
        );
        assert!(read_entries(&dir.path().join("missing")).is_err());
    }
}
