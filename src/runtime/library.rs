//! The library's shell, for the core task: the [`Replica`], the files this
//! peer hosts for it, the library file in `--data-dir`, and the jobs that
//! do the slow parts on the worker — reading and writing the library file,
//! and adding files (each one decoded through to check it is audio and
//! learn its length, then hashed; a file that fails is `skipped`, the
//! others are added). A file is announced only once its hash is known.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::audio::ENGINE_RATE_HZ;
use crate::audio::decode::{probe_file, stem_name};
use crate::audio::load::{LoadError, stem_files};
use crate::library::file::{self, Hosted, Saved};
use crate::library::{Library, LibraryError, LibraryEvent, Replica, ReplicaConfig};
use crate::protocol::PeerId;
use crate::protocol::library::SongId;
use crate::protocol::message::{Operation, StemHash};
use crate::protocol::stem::MAX_STEM_FILE_BYTES;

use super::room::{RoomShell, StemSource};

/// A song of the library as this peer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibrarySong {
    pub id: SongId,
    pub name: String,
    /// The longest stem, in frames at the engine rate.
    pub frames: u64,
    pub stems: Vec<LibraryStem>,
}

impl LibrarySong {
    /// Some stem can be played: here, in the cache, or from a host.
    pub fn playable(&self) -> bool {
        self.stems.iter().any(|s| s.source != StemSource::Missing)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibraryStem {
    pub name: String,
    pub hash: StemHash,
    pub size_bytes: u64,
    pub frames: u64,
    /// Peers that serve it now (this one included).
    pub hosts: Vec<PeerId>,
    pub source: StemSource,
    /// Chunks here, of all, while it is being fetched.
    pub fetching: Option<(usize, usize)>,
    /// This peer's file of it, if it hosts one (for the window).
    pub path: Option<PathBuf>,
}

/// What the worker read at start.
pub(super) struct Loaded {
    saved: Result<Saved, String>,
    /// Hosted files that are still as they were described.
    unchanged: Vec<Hosted>,
    /// Hosted files gone or changed since: no longer served.
    gone: Vec<(PathBuf, String)>,
    /// Hashes of the files in the cache.
    cached: HashSet<StemHash>,
}

/// Files added: the song, the files described, those skipped (why), and
/// what to say of some added (a truncated file).
pub(super) struct Added {
    song: String,
    stems: Vec<Hosted>,
    skipped: Vec<(PathBuf, String)>,
    notes: Vec<String>,
}

pub(super) struct LibraryShell {
    replica: Replica,
    data_dir: Option<PathBuf>,
    /// Files this peer hosts for the library, by hash.
    hosted: BTreeMap<StemHash, Hosted>,
    /// Hashes in the cache when this peer started (stems of the current song
    /// cached since are known by the room).
    cached: HashSet<StemHash>,
    /// The view changed (records, hosts, sources): a `library` event is due.
    dirty: bool,
    last_view: Option<Vec<LibrarySong>>,
    /// The library changed since the file was last written (or began to be).
    unsaved: bool,
    /// A write is under way on the worker.
    saving: bool,
    /// Peers whose refused records were reported (once each; the most
    /// recent [`MAX_REPORTED`]).
    reported: BTreeSet<PeerId>,
}

/// Peers remembered as reported for refused records (more are forgotten:
/// a forgotten peer's next refusal is reported again).
const MAX_REPORTED: usize = 256;

/// The metadata that says a hosted file is still the one described.
pub(super) fn stamp(path: &Path) -> std::io::Result<(u64, i64)> {
    let meta = std::fs::metadata(path)?;
    let modified_ns = (meta.modified()?)
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    Ok((meta.len(), modified_ns))
}

/// The job that reads the library kept in `data_dir` and what the cache
/// holds; runs on the worker.
pub(super) fn load_job(
    data_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
) -> impl FnOnce() -> Loaded + Send + 'static {
    move || {
        let saved = match &data_dir {
            Some(dir) => file::load(dir).map_err(|e| e.to_string()),
            None => Ok(Saved::default()),
        };
        let mut unchanged = Vec::new();
        let mut gone = Vec::new();
        if let Ok(s) = &saved {
            for h in &s.hosted {
                match stamp(&h.path) {
                    Ok(st) if st == (h.size_bytes, h.modified_ns) => unchanged.push(h.clone()),
                    Ok(_) => gone.push((h.path.clone(), "changed since it was added".into())),
                    Err(e) => gone.push((h.path.clone(), e.to_string())),
                }
            }
        }
        let cached = cache_dir.map_or_else(HashSet::new, |d| {
            let swept = crate::room::cache::sweep_spools(&d);
            if swept > 0 {
                tracing::info!(
                    swept,
                    "removed spool files a stopped peer left in the cache"
                );
            }
            crate::room::cache::hashes_in(&d)
        });
        Loaded {
            saved,
            unchanged,
            gone,
            cached,
        }
    }
}

/// The song files and folders are added as, unless named: the first
/// folder's name, or the first file's (without its extension).
pub fn default_song_name(paths: &[PathBuf]) -> String {
    match paths.first() {
        Some(p) if p.is_dir() => (p.canonicalize().ok())
            .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| stem_name(p)),
        Some(p) => stem_name(p),
        None => "untitled".into(),
    }
}

/// The job that adds `paths` (files, or folders of files) as song `song`
/// (default: the first folder's name, or the first file's): each file is
/// decoded through and hashed; runs on the worker.
pub(super) fn add_job(
    song: Option<String>,
    paths: Vec<PathBuf>,
) -> impl FnOnce() -> Added + Send + 'static {
    move || {
        let song = song.unwrap_or_else(|| default_song_name(&paths));
        let mut stems: Vec<Hosted> = Vec::new();
        let mut skipped = Vec::new();
        let mut notes = Vec::new();
        for file in stem_files(&paths, true) {
            let (path, result) = match file {
                Ok(path) => {
                    let described = describe(&path);
                    (path, described)
                }
                Err(e) => match e.skipped() {
                    Some((path, reason)) => (path, Err(reason)),
                    None => continue,
                },
            };
            match result {
                Ok((h, _)) if stems.iter().any(|s| s.info.hash == h.info.hash) => {}
                Ok((h, note)) => {
                    notes.extend(note);
                    stems.push(h);
                }
                Err(why) => skipped.push((path, why)),
            }
        }
        Added {
            song,
            stems,
            skipped,
            notes,
        }
    }
}

/// A file as a hosted stem: decoded through (is it audio? how long?), then
/// hashed, with what to say of it (a truncated file plays what is there).
/// The error is the reason it is skipped.
fn describe(path: &Path) -> Result<(Hosted, Option<String>), String> {
    let (size_bytes, modified_ns) = stamp(path).map_err(|e| format!("cannot read it: {e}"))?;
    if size_bytes == 0 {
        return Err("an empty file".into());
    }
    if size_bytes > MAX_STEM_FILE_BYTES {
        return Err(format!(
            "{size_bytes} bytes, over the {MAX_STEM_FILE_BYTES}-byte limit of a stem file"
        ));
    }
    let probe = probe_file(path, ENGINE_RATE_HZ).map_err(|e| {
        // The event names the path already: the reason alone.
        let e = LoadError::Decode(e);
        e.skipped()
            .map_or_else(|| e.to_string(), |(_, reason)| reason)
    })?;
    let info = crate::room::catalog::describe_file(path, &stem_name(path), probe.frames)
        .map_err(|e| e.to_string())?;
    // The file changed while it was read: described again next time.
    let after = stamp(path).map_err(|e| format!("cannot read it: {e}"))?;
    if after != (size_bytes, modified_ns) || info.size_bytes != size_bytes {
        return Err("it changed while it was read".into());
    }
    let note = (probe.truncated)
        .map(|(have, of)| crate::audio::decode::truncation(path, have, of, probe.source_rate_hz));
    let hosted = Hosted {
        path: path.to_path_buf(),
        size_bytes,
        modified_ns,
        info,
    };
    Ok((hosted, note))
}

impl LibraryShell {
    pub fn new(data_dir: Option<PathBuf>) -> LibraryShell {
        LibraryShell {
            replica: Replica::new(Library::new(), ReplicaConfig::default()),
            data_dir,
            hosted: BTreeMap::new(),
            cached: HashSet::new(),
            dirty: true,
            last_view: None,
            unsaved: false,
            saving: false,
            reported: BTreeSet::new(),
        }
    }

    pub fn library(&self) -> &Library {
        self.replica.library()
    }

    /// The library file was read (and the hosted files checked): the
    /// library merges it, the files still as they were are served again.
    /// Returns problems to report.
    pub fn loaded(&mut self, loaded: Loaded, room: &mut RoomShell) -> Vec<String> {
        let mut problems = Vec::new();
        match loaded.saved {
            Ok(saved) => {
                self.replica.load(&saved.library);
                info!(records = saved.library.len(), "library loaded");
            }
            Err(e) => problems.push(format!("library: {e}; starting with an empty library")),
        }
        for h in loaded.unchanged {
            room.host_file(&h.info, &h.path);
            self.hosted.insert(h.info.hash, h);
        }
        for (path, why) in loaded.gone {
            warn!(path = %path.display(), "no longer hosted: {why}");
        }
        self.cached.extend(loaded.cached);
        self.dirty = true;
        problems
    }

    /// Files were added (or skipped): the library gains them, this peer
    /// hosts them. Returns the song's id, or why nothing was added.
    pub fn added(
        &mut self,
        added: &Added,
        room: &mut RoomShell,
    ) -> Result<Option<SongId>, LibraryError> {
        if added.stems.is_empty() {
            return Ok(None);
        }
        let infos: Vec<_> = added.stems.iter().map(|h| h.info.clone()).collect();
        let id = self.replica.add(&added.song, &infos)?;
        for h in &added.stems {
            room.host_file(&h.info, &h.path);
            self.hosted.insert(h.info.hash, h.clone());
        }
        // A file hosted again from another place changes no record.
        (self.dirty, self.unsaved) = (true, true);
        Ok(Some(id))
    }

    /// This peer's start stems were described: they join the library as
    /// song `song` (files with a path are hosted and kept).
    pub fn add_start(&mut self, song: &str, hosted: Vec<Hosted>, room: &mut RoomShell) {
        let added = Added {
            song: song.to_string(),
            stems: hosted,
            skipped: vec![],
            notes: vec![],
        };
        if let Err(e) = self.added(&added, room) {
            warn!("the start stems are not in the library: {e}");
        }
    }

    /// `remove SONG [STEM]`.
    pub fn remove(&mut self, song: &str, stem: Option<&str>) -> Result<(), LibraryError> {
        let id = self.library().find_song(song)?;
        let hash = stem.map(|s| self.library().find_stem(id, s)).transpose()?;
        self.replica.remove(id, hash)?;
        self.dirty = true;
        Ok(())
    }

    pub fn touch(&mut self) {
        self.dirty = true;
    }

    pub fn handle_link_up(&mut self, now_ns: i64, peer: PeerId) {
        self.replica.handle_link_up(now_ns, peer);
        self.dirty = true;
    }

    pub fn handle_link_down(&mut self, peer: PeerId) {
        self.replica.handle_link_down(peer);
        self.dirty = true;
    }

    pub fn handle_message(&mut self, now_ns: i64, from: PeerId, op: Operation) {
        self.replica.handle_message(now_ns, from, op);
    }

    pub fn handle_timeout(&mut self, now_ns: i64) {
        if self.replica.poll_timeout().is_some_and(|t| now_ns >= t) {
            self.replica.handle_timeout(now_ns);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<(PeerId, Operation)> {
        self.replica.poll_transmit()
    }

    /// The replica's events, taken in: a change marks the view and the file
    /// due; a refusal is a problem to report (once per peer; always logged).
    pub fn poll_problem(&mut self) -> Option<String> {
        while let Some(e) = self.replica.poll_event() {
            match e {
                LibraryEvent::Changed { .. } => {
                    self.dirty = true;
                    self.unsaved = true;
                }
                LibraryEvent::Refused {
                    from,
                    count,
                    reason,
                } => {
                    warn!(%from, count, "library records refused: {reason}");
                    if self.reported.len() >= MAX_REPORTED {
                        self.reported.clear();
                    }
                    if self.reported.insert(from) {
                        return Some(format!(
                            "refused {count} library record(s) from peer {from}: {reason}"
                        ));
                    }
                }
            }
        }
        None
    }

    /// The job that writes the library file, if it changed and no write is
    /// under way (one is asked for again when that one is done).
    pub fn save_job(&mut self) -> Option<impl FnOnce() -> Result<(), String> + Send + 'static> {
        if !self.unsaved || self.saving {
            return None;
        }
        let dir = self.data_dir.clone()?;
        (self.unsaved, self.saving) = (false, true);
        let bytes = file::encode(&Saved {
            library: self.library().clone(),
            hosted: self.hosted.values().cloned().collect(),
        });
        Some(move || {
            file::save(&dir, &bytes)
                .map_err(|e| format!("cannot keep the library in {}: {e}", dir.display()))
        })
    }

    /// A write finished.
    pub fn saved(&mut self) {
        self.saving = false;
    }

    /// A write is under way on the worker.
    pub fn is_saving(&self) -> bool {
        self.saving
    }

    /// The library as this peer sees it, if it changed since last asked.
    pub fn changed_view(&mut self, me: PeerId, room: &RoomShell) -> Option<Vec<LibrarySong>> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        let view = self.view(me, room);
        if self.last_view.as_ref() == Some(&view) {
            return None;
        }
        self.last_view = Some(view.clone());
        Some(view)
    }

    /// The library as this peer sees it: who hosts each stem and where it
    /// would play from.
    pub fn view(&self, me: PeerId, room: &RoomShell) -> Vec<LibrarySong> {
        let playing = room.song_stems();
        (self.library().songs().iter())
            .map(|song| {
                let stems = (song.stems.iter())
                    .map(|s| {
                        let mut hosts = room.hosts_of(&s.hash);
                        let serves = room.serves(&s.hash);
                        if serves {
                            hosts.insert(0, me);
                        }
                        let current = playing.iter().find(|p| p.hash == s.hash);
                        let path = room.own_path(&s.hash);
                        let source = if path.is_some() {
                            StemSource::Local
                        } else if self.cached.contains(&s.hash)
                            || current.is_some_and(|c| c.source == StemSource::Cached)
                        {
                            StemSource::Cached
                        } else if !hosts.is_empty() {
                            StemSource::Remote
                        } else {
                            StemSource::Missing
                        };
                        let fetching = current
                            .filter(|c| c.source == StemSource::Remote)
                            .map(|c| (c.chunks_have, c.chunks));
                        LibraryStem {
                            name: s.name.clone(),
                            hash: s.hash,
                            size_bytes: s.size_bytes,
                            frames: s.frames,
                            hosts,
                            source,
                            fetching,
                            path,
                        }
                    })
                    .collect();
                LibrarySong {
                    id: song.id(),
                    name: song.record.name.clone(),
                    frames: song.frames(),
                    stems,
                }
            })
            .collect()
    }
}

impl Added {
    pub fn song(&self) -> &str {
        &self.song
    }

    pub fn skipped(&self) -> &[(PathBuf, String)] {
        &self.skipped
    }

    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_as_musicians_have_it_adds_its_audio_and_says_what_it_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let song = dir.path().join("Blue in Green");
        std::fs::create_dir(&song).unwrap();
        let wav = |path: &Path, frames: usize| {
            let spec = hound::WavSpec {
                channels: 2,
                sample_rate: 48_000,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let mut w = hound::WavWriter::create(path, spec).unwrap();
            for i in 0..frames * 2 {
                w.write_sample((i % 100) as i16).unwrap();
            }
            w.finalize().unwrap();
        };
        wav(&song.join("bass.wav"), 4800);
        wav(&song.join("drums.wav"), 9600);
        std::fs::copy(song.join("bass.wav"), song.join("._bass.wav")).unwrap();
        std::fs::write(song.join("notes.txt"), "play it slow").unwrap();
        std::fs::write(song.join("empty.wav"), "").unwrap();
        std::fs::write(song.join("noise.flac"), [7u8; 5000]).unwrap();
        let added = add_job(None, vec![song.clone()])();
        assert_eq!(added.song, "Blue in Green");
        let names: Vec<&str> = added.stems.iter().map(|h| h.info.name.as_str()).collect();
        assert_eq!(names, ["bass", "drums"]);
        assert_eq!(added.stems[1].info.frames, 9600);
        let skipped: Vec<(String, &str)> = (added.skipped.iter())
            .map(|(p, why)| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    why.as_str(),
                )
            })
            .collect();
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(
            skipped
                .iter()
                .any(|(f, why)| f == "._bass.wav" && why.contains("macOS"))
        );
        assert!(
            skipped
                .iter()
                .any(|(f, why)| f == "notes.txt" && why.contains("not an audio"))
        );
        assert!(
            skipped
                .iter()
                .any(|(f, why)| f == "empty.wav" && why.contains("empty"))
        );
        assert!(skipped.iter().any(|(f, _)| f == "noise.flac"));
        // A file named on its own is tried whatever its extension.
        let named = add_job(Some("x".into()), vec![song.join("notes.txt")])();
        assert!(named.stems.is_empty() && named.skipped.len() == 1);
    }
}
