//! The I/O side of the stem exchange, for the core task: this peer's files,
//! the song's channels as this peer plays them (local, cached or remote), the
//! stores and decoder threads of remote stems, the cache, and reading served
//! chunks from disk.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use tracing::info;

use crate::audio::engine::EngineStats;
use crate::audio::{ENGINE_RATE_HZ, RemoteStem, StemAudio, Streamer};
use crate::message::StemHash;
use crate::room::store::StemStore;
use crate::room::stream::{self, Playhead};
use crate::room::{Exchange, ExchangeConfig, Focus, StemInfo, cache};
use crate::session::{PeerId, ns_to_frames};

/// Where a channel's audio comes from on this peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StemSource {
    /// A file this peer was given.
    Local,
    /// A completed download in the cache.
    Cached,
    /// Fetched from other peers while it plays.
    Remote,
}

impl StemSource {
    pub fn as_str(self) -> &'static str {
        match self {
            StemSource::Local => "local",
            StemSource::Cached => "cache",
            StemSource::Remote => "remote",
        }
    }
}

/// A channel of the song on this peer, for status and the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SongStem {
    pub name: String,
    pub hash: StemHash,
    pub size_bytes: u64,
    pub source: StemSource,
    /// Chunks of the file here, of all (a local file has them all).
    pub chunks_have: usize,
    pub chunks: usize,
    /// Peers that serve it.
    pub hosts: Vec<PeerId>,
}

struct Own {
    streamer: Streamer,
    path: Option<PathBuf>,
}

enum Slot {
    Local,
    /// Cached or remote: decoded from a store.
    Stored {
        store: Arc<StemStore>,
        source: StemSource,
    },
}

pub(super) struct RoomShell {
    pub exchange: Exchange,
    cache_dir: Option<PathBuf>,
    window_ns: i64,
    pub playhead: Arc<Playhead>,
    /// This peer's own stems, by hash.
    own: HashMap<StemHash, Own>,
    /// The song's channels as this peer plays them (empty until known).
    slots: Vec<Slot>,
    wake: Arc<dyn Fn() + Send + Sync>,
    pub bytes_served: u64,
}

impl RoomShell {
    /// Describes this peer's stems (hashing each file) and sets up the
    /// exchange: with `song_is_ours`, this peer's stems are the song.
    pub fn new(
        stems: &[StemAudio],
        song_is_ours: bool,
        cache_dir: Option<PathBuf>,
        window_ns: i64,
        stats: Arc<EngineStats>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> (RoomShell, Vec<String>) {
        let mut errors = Vec::new();
        let mut own = HashMap::new();
        let mut infos = Vec::new();
        let mut served = Vec::new();
        for s in stems {
            let described = match &s.path {
                Some(path) => StemInfo::of_file(path, &s.name, s.frames() as u64)
                    .map_err(|e| errors.push(format!("{e} (it will not be served)")))
                    .ok(),
                None => None,
            };
            let info = described.unwrap_or_else(|| {
                // Generated audio: named by its samples, served by nobody.
                let bytes: Vec<u8> = s.samples.iter().flat_map(|x| x.to_le_bytes()).collect();
                StemInfo::of_bytes(&s.name, "pcm", &bytes, s.frames() as u64)
            });
            if s.path.is_some() && info.format != "pcm" {
                served.push(info.hash);
            }
            own.insert(
                info.hash,
                Own {
                    streamer: Streamer::local(s),
                    path: s.path.clone(),
                },
            );
            infos.push(info);
        }
        let song = song_is_ours.then(|| infos.clone());
        let cfg = ExchangeConfig {
            window_ns,
            ..ExchangeConfig::default()
        };
        let slots = if song_is_ours {
            infos.iter().map(|_| Slot::Local).collect()
        } else {
            Vec::new()
        };
        let shell = RoomShell {
            exchange: Exchange::new(cfg, song, served.iter().copied()),
            cache_dir,
            window_ns,
            playhead: Arc::new(Playhead::new(stats)),
            own,
            slots,
            wake,
            bytes_served: 0,
        };
        // The song given at start needs nothing more.
        (shell, errors)
    }

    /// The song became known: the channels, in song order, as this peer
    /// will play them (its own files, the cache, or fetched), and the
    /// problems to report.
    pub fn adopt_song(&mut self, now_ns: i64, song: &[StemInfo]) -> (Vec<Streamer>, Vec<String>) {
        let mut streamers = Vec::with_capacity(song.len());
        let mut errors = Vec::new();
        self.close();
        self.slots.clear();
        for (i, info) in song.iter().enumerate() {
            if let Some(own) = self.own.get(&info.hash) {
                let mut s = own.streamer.clone();
                s.name = info.name.clone();
                streamers.push(s);
                self.slots.push(Slot::Local);
                continue;
            }
            let cached = (self.cache_dir.as_deref()).and_then(|dir| cache::load(dir, info));
            let wake = self.wake.clone();
            let (store, source) = match cached {
                Some(bytes) => (
                    Arc::new(StemStore::complete(info.clone(), bytes)),
                    StemSource::Cached,
                ),
                None => (
                    Arc::new(StemStore::new(info.clone(), Box::new(move || wake()))),
                    StemSource::Remote,
                ),
            };
            let pcm = Arc::new(RemoteStem::new(info.frames as usize));
            let window_frames = ns_to_frames(self.window_ns, ENGINE_RATE_HZ);
            if let Err(e) = stream::spawn(
                store.clone(),
                pcm.clone(),
                self.playhead.clone(),
                window_frames,
            ) {
                errors.push(format!("cannot start the decoder of {}: {e}", info.name));
            }
            streamers.push(Streamer::remote(&info.name, pcm));
            match source {
                StemSource::Cached => {
                    info!(stem = %info.name, "playing from the cache");
                    self.exchange.serve(info.hash);
                }
                _ => {
                    info!(stem = %info.name, hash = %info.hex(), "fetching from the session");
                    let focus = self.focus_of(&store);
                    self.exchange.fetch(now_ns, i, focus);
                }
            }
            self.slots.push(Slot::Stored { store, source });
        }
        for (hash, own) in &self.own {
            if !song.iter().any(|s| &s.hash == hash) {
                errors.push(format!(
                    "{} is not in the session's song: it is not played",
                    own.streamer.name
                ));
            }
        }
        (streamers, errors)
    }

    fn focus_of(&self, store: &StemStore) -> Focus {
        let info = &store.info;
        let hint = self.playhead.seek_hint().map(|frames| {
            let bytes = frames as f64 / info.frames.max(1) as f64 * info.size_bytes as f64;
            ((bytes / f64::from(info.chunk_bytes())) as usize).min(info.chunks().saturating_sub(1))
        });
        Focus {
            cursor: store.read_chunk(),
            urgent: store.waiting_on(),
            hint,
        }
    }

    /// Tells the exchange where each remote stem's decoder needs bytes.
    pub fn refocus(&mut self, now_ns: i64) {
        for i in 0..self.slots.len() {
            if let Slot::Stored {
                store,
                source: StemSource::Remote,
            } = &self.slots[i]
            {
                let focus = self.focus_of(store);
                self.exchange.set_focus(now_ns, i, focus);
            }
        }
    }

    pub fn put_chunk(&self, stem: usize, chunk: usize, data: &[u8]) {
        if let Some(Slot::Stored { store, .. }) = self.slots.get(stem) {
            store.put(chunk, data);
        }
    }

    /// A remote stem has every chunk: check the whole file, cache it and
    /// serve it; or fetch again the chunks that fail.
    pub fn complete(&mut self, now_ns: i64, stem: usize) -> Option<String> {
        let Some(Slot::Stored { store, source }) = self.slots.get_mut(stem) else {
            return None;
        };
        match store.verified() {
            Ok(bytes) => {
                *source = StemSource::Cached;
                let info = store.info.clone();
                self.exchange.serve(info.hash);
                let dir = self.cache_dir.clone()?;
                match cache::store(&dir, &info, &bytes) {
                    Ok(path) => {
                        info!(stem = %info.name, path = %path.display(), "fetched and cached");
                        None
                    }
                    Err(e) => Some(format!(
                        "cannot cache {} in {}: {e}",
                        info.name,
                        dir.display()
                    )),
                }
            }
            Err(bad) => {
                let name = store.info.name.clone();
                for &k in &bad {
                    store.forget(k);
                    self.exchange.refetch(now_ns, stem, k);
                }
                Some(format!(
                    "{name}: the whole file failed its hash; fetching {} chunk(s) again",
                    bad.len()
                ))
            }
        }
    }

    /// The bytes of a served stem, `len` from `offset` (the exchange has
    /// checked the range against the file's size).
    pub fn read(&self, hash: &StemHash, offset: u64, len: u32) -> Result<Vec<u8>, String> {
        if let Some(path) = self.own.get(hash).and_then(|o| o.path.as_ref()) {
            return read_file(path, offset, len).map_err(|e| format!("{}: {e}", path.display()));
        }
        for slot in &self.slots {
            if let Slot::Stored { store, .. } = slot
                && &store.info.hash == hash
            {
                return store
                    .range(offset, len)
                    .ok_or_else(|| "not all here yet".to_string());
            }
        }
        Err("no such stem here".into())
    }

    /// The channels as this peer plays them.
    pub fn song_stems(&self) -> Vec<SongStem> {
        let Some(song) = self.exchange.song() else {
            return vec![];
        };
        (song.iter().enumerate())
            .map(|(i, info)| {
                let (source, have) = match self.slots.get(i) {
                    Some(Slot::Stored { store, source }) => (*source, store.chunks_have()),
                    _ => (StemSource::Local, info.chunks()),
                };
                SongStem {
                    name: info.name.clone(),
                    hash: info.hash,
                    size_bytes: info.size_bytes,
                    source,
                    chunks_have: have,
                    chunks: info.chunks(),
                    hosts: self.exchange.hosts_of(&info.hash),
                }
            })
            .collect()
    }

    /// Stops every decoder thread.
    pub fn close(&self) {
        for slot in &self.slots {
            if let Slot::Stored { store, .. } = slot {
                store.close();
            }
        }
    }
}

fn read_file(path: &std::path::Path, offset: u64, len: u32) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0; len as usize];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

impl Drop for RoomShell {
    fn drop(&mut self) {
        self.close();
    }
}
