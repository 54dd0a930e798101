//! Stems from files and folders: the one loader behind `synfony render`, the
//! headless peer and the window, with one set of limits.
//!
//! - A folder gives its audio files (by extension, [`super::decode::AUDIO_EXTENSIONS`])
//!   in name order, not its subfolders; a file named is tried whatever its
//!   extension; the `._*` files macOS leaves are never tried
//!   ([`LoadError::NotAudio`], [`screen`]).
//! - A file named twice (itself, or through its folder) is one stem.
//! - At most [`MAX_STEMS`] stems: each file past them is refused, by name.
//! - Each file decodes on its own, within the decoder's limits (length,
//!   source rates): a bad file is one error, the others still load.
//!
//! What an error means is the caller's: [`load_all`] stops at the first
//! one (the command line fails naming the file); the window goes through
//! [`each`], shows each problem and plays what loaded.

use std::path::{Path, PathBuf};

use super::decode::{
    DecodeError, Probe, StemAudio, decode_file, is_audio_file, probe_quick, stem_name,
};

pub use crate::protocol::MAX_STEMS;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{path}: cannot read the folder: {cause}")]
    Folder {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: one stem too many (at most {MAX_STEMS})")]
    TooMany { path: PathBuf },
    #[error("no audio files in {paths}")]
    NoStems { paths: String },
    #[error("{path}: {reason}")]
    NotAudio { path: PathBuf, reason: String },
}

impl LoadError {
    /// The file this problem is about and why, as a `skipped` event says it
    /// (`None`: no one file).
    pub fn skipped(&self) -> Option<(PathBuf, String)> {
        let path = match self {
            LoadError::Decode(
                DecodeError::Open { path, .. }
                | DecodeError::Unsupported { path, .. }
                | DecodeError::Corrupt { path, .. }
                | DecodeError::Empty { path }
                | DecodeError::TooLong { path, .. }
                | DecodeError::Resample { path, .. },
            )
            | LoadError::Folder { path, .. }
            | LoadError::TooMany { path }
            | LoadError::NotAudio { path, .. } => path,
            LoadError::NoStems { .. } => return None,
        };
        let message = self.to_string();
        let prefix = format!("{}: ", path.display());
        let reason = message.strip_prefix(&prefix).unwrap_or(&message);
        Some((path.clone(), reason.to_string()))
    }
}

/// Why a file is not even tried as a stem: `named` files (given by path)
/// are tried whatever their extension; files found in a folder only with an
/// audio extension; the `._*` files macOS leaves on USB sticks never.
fn screen(path: &Path, named: bool) -> Option<String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with("._") {
        return Some("a macOS resource file (._), not audio".into());
    }
    if !named && !is_audio_file(path) {
        return Some("not an audio file (by its extension)".into());
    }
    None
}

/// The stem files `paths` name, in order, each once, at most [`MAX_STEMS`]
/// of them; an error in place of a folder that cannot be read, a file past
/// the limit or a `._*` file. With `others`, each file in a folder that is
/// not audio (by extension) is an error too (adding to the library names
/// them); without, they are passed over.
pub fn stem_files(paths: &[PathBuf], others: bool) -> Vec<Result<PathBuf, LoadError>> {
    let mut out = Vec::new();
    let mut taken: Vec<PathBuf> = Vec::new();
    let mut take = |file: PathBuf, out: &mut Vec<Result<PathBuf, LoadError>>| {
        if taken.contains(&file) {
            return;
        }
        if taken.len() >= MAX_STEMS {
            out.push(Err(LoadError::TooMany { path: file }));
            return;
        }
        taken.push(file.clone());
        out.push(Ok(file));
    };
    for p in paths {
        if !p.is_dir() {
            match screen(p, true) {
                Some(reason) => out.push(Err(LoadError::NotAudio {
                    path: p.clone(),
                    reason,
                })),
                None => take(p.clone(), &mut out),
            }
            continue;
        }
        match std::fs::read_dir(p) {
            Ok(entries) => {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| f.is_file() && (others || is_audio_file(f)))
                    .collect();
                files.sort();
                for f in files {
                    match screen(&f, false) {
                        Some(reason) => out.push(Err(LoadError::NotAudio { path: f, reason })),
                        None => take(f, &mut out),
                    }
                }
            }
            Err(cause) => out.push(Err(LoadError::Folder {
                path: p.clone(),
                cause,
            })),
        }
    }
    out
}

/// Each stem of `paths`, in order, loaded by `load` (a file's path in, a
/// decoded stem out: [`decode_file`], or the window's cache first), lazily:
/// a caller that stops at an error decodes nothing after it.
pub fn each<T>(
    paths: &[PathBuf],
    mut load: impl FnMut(&Path) -> Result<T, DecodeError>,
) -> impl Iterator<Item = Result<T, LoadError>> {
    (stem_files(paths, false).into_iter()).map(move |f| f.and_then(|f| Ok(load(&f)?)))
}

/// Every stem of `paths` (files or folders) at `rate_hz`, or the first
/// problem, which names its file; no audio file at all is a problem too.
pub fn load_all(paths: &[PathBuf], rate_hz: u32) -> Result<Vec<StemAudio>, LoadError> {
    let stems = each(paths, |f| decode_file(f, rate_hz)).collect::<Result<Vec<_>, _>>()?;
    if stems.is_empty() {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(LoadError::NoStems {
            paths: shown.join(", "),
        });
    }
    Ok(stems)
}

/// The stems of `paths` that load at `rate_hz`, and a problem for each one
/// that does not (the window's way, without its cache).
pub fn load_each(paths: &[PathBuf], rate_hz: u32) -> (Vec<StemAudio>, Vec<LoadError>) {
    split(each(paths, |f| decode_file(f, rate_hz)))
}

/// What loaded, and the problems.
fn split<T>(results: impl Iterator<Item = Result<T, LoadError>>) -> (Vec<T>, Vec<LoadError>) {
    let mut stems = Vec::new();
    let mut problems = Vec::new();
    for r in results {
        match r {
            Ok(s) => stems.push(s),
            Err(e) => problems.push(e),
        }
    }
    (stems, problems)
}

/// A stem file this peer plays, streamed from disk around the playhead:
/// its name, where it is, and what its header (or a pass through it) says.
#[derive(Clone, Debug)]
pub struct FileStem {
    pub name: String,
    pub path: PathBuf,
    pub probe: Probe,
}

impl FileStem {
    /// Opens `path` as a stem: its header read ([`probe_quick`]), no
    /// samples decoded or kept.
    pub fn open(path: &Path, rate_hz: u32) -> Result<FileStem, DecodeError> {
        Ok(FileStem {
            name: stem_name(path),
            path: path.to_path_buf(),
            probe: probe_quick(path, rate_hz)?,
        })
    }

    /// Length at the engine rate.
    pub fn frames(&self) -> usize {
        self.probe.frames as usize
    }
}

/// A stem a peer starts with.
#[derive(Clone, Debug)]
pub enum LocalStem {
    /// A file, streamed from disk (bounded memory whatever its length).
    File(FileStem),
    /// Audio in memory: generated (tests, the window's placeholders).
    Audio(StemAudio),
}

impl LocalStem {
    pub fn name(&self) -> &str {
        match self {
            LocalStem::File(f) => &f.name,
            LocalStem::Audio(a) => &a.name,
        }
    }

    /// Length at the engine rate.
    pub fn frames(&self) -> usize {
        match self {
            LocalStem::File(f) => f.frames(),
            LocalStem::Audio(a) => a.frames(),
        }
    }

    /// The file it plays, if any: what this peer serves to others.
    pub fn path(&self) -> Option<&Path> {
        match self {
            LocalStem::File(f) => Some(&f.path),
            LocalStem::Audio(a) => a.path.as_deref(),
        }
    }
}

impl From<StemAudio> for LocalStem {
    fn from(audio: StemAudio) -> LocalStem {
        LocalStem::Audio(audio)
    }
}

impl From<FileStem> for LocalStem {
    fn from(file: FileStem) -> LocalStem {
        LocalStem::File(file)
    }
}

/// The stems of `paths` opened to stream ([`FileStem::open`]), and a
/// problem for each file that does not open.
pub fn open_each(paths: &[PathBuf], rate_hz: u32) -> (Vec<FileStem>, Vec<LoadError>) {
    split(each(paths, |f| FileStem::open(f, rate_hz)))
}
