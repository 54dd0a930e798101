//! A remote stem's encoded file as it arrives, chunk by chunk, kept on disk.
//!
//! The fetcher puts verified chunks in; they go to a spool file (in the cache
//! folder, or the system's temporary one), so memory does not grow with the
//! file: a bitmap of the chunks here is all it holds. The stem's decoder
//! reads it as a file ([`StoreReader`], a symphonia `MediaSource`). A read of
//! a chunk that has not arrived blocks the decoder thread (never the audio
//! thread) until it does, and names that chunk as the one to fetch first; it
//! gives up with an error when the stem is closed or the decoder's `abort`
//! says the playhead has moved elsewhere. Once every chunk is here and the
//! whole file's hash matches, the spool becomes the cache's file
//! ([`StemStore::keep_in`]); otherwise it is deleted with the store.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::protocol::stem::StemInfo;

/// No chunk is awaited.
const NONE: u64 = u64::MAX;
/// How often a blocked read looks at its abort condition.
const POLL: Duration = Duration::from_millis(10);

/// The bytes of one stem file, filled in any order.
pub struct StemStore {
    pub info: StemInfo,
    inner: Mutex<Inner>,
    arrived: Condvar,
    /// The chunk the decoder is blocked on ([`NONE`]: none).
    waiting_on: AtomicU64,
    /// The byte offset the decoder read last.
    read_pos: AtomicU64,
    /// Called (from the decoder thread) when it starts waiting on a chunk.
    wake: Box<dyn Fn() + Send + Sync>,
    /// Chunks here, for status.
    have_count: std::sync::atomic::AtomicUsize,
}

struct Inner {
    /// The spool: chunks at their offsets, the rest a hole.
    file: File,
    /// Where it is now; `owned` while it is the store's own (deleted with
    /// it), not once kept in the cache.
    path: PathBuf,
    owned: bool,
    have: Vec<bool>,
    closed: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Spool files made by this process (for unique names).
static SPOOLS: AtomicU64 = AtomicU64::new(0);

impl StemStore {
    /// An empty store for `info`'s file, spooled in `dir` (the cache folder:
    /// kept there by a rename; `None`: the system's temporary folder); `wake`
    /// tells the fetcher that the decoder is waiting.
    pub fn new(
        info: StemInfo,
        dir: Option<&Path>,
        wake: Box<dyn Fn() + Send + Sync>,
    ) -> io::Result<StemStore> {
        let dir = dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
        std::fs::create_dir_all(&dir)?;
        // A spool a crashed run left (its pid reused) is passed over, not
        // collided with: names are tried until one is free.
        let (file, spool) = loop {
            let n = SPOOLS.fetch_add(1, Ordering::Relaxed);
            let spool = dir.join(super::cache::spool_name(&info, n));
            match File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&spool)
            {
                Ok(file) => break (file, spool),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        };
        let chunks = info.chunks();
        Ok(StemStore {
            inner: Mutex::new(Inner {
                file,
                path: spool,
                owned: true,
                have: vec![false; chunks],
                closed: false,
            }),
            info,
            arrived: Condvar::new(),
            waiting_on: AtomicU64::new(NONE),
            read_pos: AtomicU64::new(0),
            wake,
            have_count: Default::default(),
        })
    }

    /// A store holding the whole file already (every chunk arrived).
    pub fn complete(info: StemInfo, data: &[u8]) -> io::Result<StemStore> {
        let store = StemStore::new(info, None, Box::new(|| {}))?;
        for k in 0..store.info.chunks() {
            let r = store.info.chunk_range(k);
            store.put(k, &data[r.start as usize..r.end as usize])?;
        }
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a file and flags: usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores chunk `k` (already checked against its hash). An error when
    /// it cannot be written (a full disk): the chunk stays missing, and the
    /// caller fetches it again.
    pub fn put(&self, k: usize, bytes: &[u8]) -> io::Result<()> {
        let range = self.info.chunk_range(k);
        let mut g = self.lock();
        if g.have.get(k) != Some(&false) || bytes.len() as u64 != range.end - range.start {
            return Ok(());
        }
        (g.file.seek(SeekFrom::Start(range.start))).and_then(|_| g.file.write_all(bytes))?;
        g.have[k] = true;
        self.have_count.fetch_add(1, Ordering::Relaxed);
        drop(g);
        self.arrived.notify_all();
        Ok(())
    }

    /// Forgets chunk `k` (it is to be fetched again).
    pub fn forget(&self, k: usize) {
        let mut g = self.lock();
        if g.have.get(k) == Some(&true) {
            g.have[k] = false;
            self.have_count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Chunks here (without the lock: `verify` may hold it for a while).
    pub fn chunks_have(&self) -> usize {
        self.have_count.load(Ordering::Relaxed)
    }

    /// `len` bytes from `offset`, if every chunk they touch is here.
    pub fn range(&self, offset: u64, len: u32) -> Option<Vec<u8>> {
        let end = offset.checked_add(u64::from(len))?;
        if end > self.info.size_bytes {
            return None;
        }
        let c = u64::from(self.info.chunk_bytes());
        let mut g = self.lock();
        let chunks = (offset / c) as usize..=(end.saturating_sub(1) / c) as usize;
        if len > 0 && !chunks.into_iter().all(|k| g.have.get(k) == Some(&true)) {
            return None;
        }
        let mut out = vec![0; len as usize];
        g.file.seek(SeekFrom::Start(offset)).ok()?;
        g.file.read_exact(&mut out).ok()?;
        Some(out)
    }

    pub fn is_complete(&self) -> bool {
        self.chunks_have() == self.info.chunks()
    }

    /// Whether the whole file is here and its hash matches the stem's;
    /// `Err` with the chunks missing, or (after a full-file mismatch) those
    /// whose hash fails, so that they can be fetched again (none: every chunk
    /// matches and the whole does not — the song's entry is wrong). Reads
    /// the complete spool through a handle of its own, without the lock, so
    /// the decoder reads on meanwhile (a complete spool is not written).
    pub fn verify(&self) -> Result<(), Vec<usize>> {
        let g = self.lock();
        if g.have.contains(&false) {
            // Not all here (a chunk that could not be spooled): those.
            return Err((0..g.have.len()).filter(|&k| !g.have[k]).collect());
        }
        let path = g.path.clone();
        drop(g);
        let all = || (0..self.info.chunks()).collect::<Vec<_>>();
        let Ok(mut file) = File::open(&path) else {
            return Err(all());
        };
        let mut hasher = blake3::Hasher::new();
        let whole = hasher
            .update_reader((&mut file).take(self.info.size_bytes))
            .map(|_| ());
        if whole.is_ok() && hasher.finalize().as_bytes() == &self.info.hash {
            return Ok(());
        }
        let mut chunk = Vec::new();
        Err((0..self.info.chunks())
            .filter(|&k| {
                let r = self.info.chunk_range(k);
                chunk.resize((r.end - r.start) as usize, 0);
                let read =
                    (file.seek(SeekFrom::Start(r.start))).and_then(|_| file.read_exact(&mut chunk));
                read.is_err() || !self.info.check_chunk(k, &chunk)
            })
            .collect())
    }

    /// Makes the spool (complete, verified) the file `path` (the cache's),
    /// by a rename where it can, else a copy; the store reads on from it.
    pub fn keep_in(&self, path: &Path) -> io::Result<()> {
        let mut g = self.lock();
        if !g.owned {
            return Ok(()); // kept already
        }
        if std::fs::rename(&g.path, path).is_err() {
            let tmp = path.with_extension("part");
            std::fs::copy(&g.path, &tmp)?;
            std::fs::rename(&tmp, path)?;
            return Ok(());
        }
        (g.path, g.owned) = (path.to_path_buf(), false);
        Ok(())
    }

    /// Wakes and fails every blocked read; the decoder then stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The chunk the decoder is blocked on.
    pub fn waiting_on(&self) -> Option<usize> {
        match self.waiting_on.load(Ordering::Relaxed) {
            NONE => None,
            k => Some(k as usize),
        }
    }

    /// The chunk of the decoder's last read.
    pub fn read_chunk(&self) -> usize {
        (self.read_pos.load(Ordering::Relaxed) / u64::from(self.info.chunk_bytes())) as usize
    }
}

/// A file-like view of a [`StemStore`] for the decoder.
pub struct StoreReader {
    store: Arc<StemStore>,
    pos: u64,
    abort: Box<dyn Fn() -> bool + Send + Sync>,
}

impl StoreReader {
    /// `abort` is asked while a read waits; `true` fails the read.
    pub fn new(store: Arc<StemStore>, abort: Box<dyn Fn() -> bool + Send + Sync>) -> StoreReader {
        StoreReader {
            store,
            pos: 0,
            abort,
        }
    }
}

impl Read for StoreReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.store.info.size_bytes;
        if self.pos >= size || buf.is_empty() {
            return Ok(0);
        }
        let chunk_bytes = u64::from(self.store.info.chunk_bytes());
        let k = (self.pos / chunk_bytes) as usize;
        let mut g = self.store.lock();
        let mut announced = false;
        while !g.have[k] {
            if g.closed {
                return Err(io::Error::other("the stem was closed"));
            }
            if (self.abort)() {
                self.store.waiting_on.store(NONE, Ordering::Relaxed);
                return Err(io::Error::other("the playhead moved on"));
            }
            if !announced {
                self.store.waiting_on.store(k as u64, Ordering::Relaxed);
                drop(g);
                (self.store.wake)();
                g = self.store.lock();
                announced = true;
                continue;
            }
            g = match self.store.arrived.wait_timeout(g, POLL) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        if announced {
            self.store.waiting_on.store(NONE, Ordering::Relaxed);
        }
        // Up to the end of this chunk (the next may not be here).
        let chunk_end = ((k as u64 + 1) * chunk_bytes).min(size);
        let n = ((chunk_end - self.pos) as usize).min(buf.len());
        g.file.seek(SeekFrom::Start(self.pos))?;
        g.file.read_exact(&mut buf[..n])?;
        drop(g);
        self.pos += n as u64;
        self.store.read_pos.store(self.pos, Ordering::Relaxed);
        Ok(n)
    }
}

impl Seek for StoreReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let size = self.store.info.size_bytes as i128;
        let at = match to {
            SeekFrom::Start(p) => i128::from(p),
            SeekFrom::End(d) => size + i128::from(d),
            SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
        };
        if at < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start",
            ));
        }
        self.pos = at.min(i128::from(u64::MAX)) as u64;
        Ok(self.pos)
    }
}

impl symphonia::core::io::MediaSource for StoreReader {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.store.info.size_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn file(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 253) as u8).collect()
    }

    #[test]
    fn a_read_waits_for_its_chunk_and_names_it() {
        let bytes = file(150_000);
        let info = StemInfo::of_bytes("s", "wav", &bytes, 1);
        let woken = Arc::new(AtomicBool::new(false));
        let w = woken.clone();
        let store = Arc::new(
            StemStore::new(
                info.clone(),
                None,
                Box::new(move || w.store(true, Ordering::Relaxed)),
            )
            .unwrap(),
        );
        let mut r = StoreReader::new(store.clone(), Box::new(|| false));
        r.seek(SeekFrom::Start(70_000)).unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0; 100];
            r.read_exact(&mut buf).map(|_| buf)
        });
        // The reader says which chunk it waits on, then wakes the fetcher:
        // both are seen in time (a watchdog, not a timing).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.waiting_on().is_none() || !woken.load(Ordering::Relaxed) {
            assert!(std::time::Instant::now() < deadline, "never woken");
            std::thread::yield_now();
        }
        assert_eq!(store.waiting_on(), Some(1));
        let c1 = info.chunk_range(1);
        store
            .put(1, &bytes[c1.start as usize..c1.end as usize])
            .unwrap();
        let got = reader.join().unwrap().unwrap();
        assert_eq!(got, &bytes[70_000..70_100]);
        assert_eq!(store.waiting_on(), None);
        assert_eq!(store.read_chunk(), 1);
        assert!(!store.is_complete());
    }

    #[test]
    fn close_and_abort_fail_a_blocked_read() {
        let bytes = file(10);
        let info = StemInfo::of_bytes("s", "wav", &bytes, 1);
        let store = Arc::new(StemStore::new(info, None, Box::new(|| {})).unwrap());
        let mut aborted = StoreReader::new(store.clone(), Box::new(|| true));
        assert!(aborted.read(&mut [0; 4]).is_err());
        let mut r = StoreReader::new(store.clone(), Box::new(|| false));
        let t = std::thread::spawn(move || r.read(&mut [0; 4]).is_err());
        while store.waiting_on().is_none() {
            std::thread::yield_now();
        }
        store.close();
        assert!(t.join().unwrap());
    }

    #[test]
    fn verify_names_the_bad_chunks_and_a_verified_spool_is_kept() {
        let bytes = file(140_000);
        let info = StemInfo::of_bytes("s", "wav", &bytes, 1);
        let dir = tempfile::tempdir().unwrap();
        let store = StemStore::new(info.clone(), Some(dir.path()), Box::new(|| {})).unwrap();
        assert_eq!(store.verify(), Err(vec![0, 1, 2]), "none here yet");
        for k in 0..info.chunks() {
            let r = info.chunk_range(k);
            let mut c = bytes[r.start as usize..r.end as usize].to_vec();
            if k == 1 {
                c[0] ^= 0xff;
            }
            store.put(k, &c).unwrap();
        }
        assert_eq!(store.verify(), Err(vec![1]));
        store.forget(1);
        let r = info.chunk_range(1);
        store
            .put(1, &bytes[r.start as usize..r.end as usize])
            .unwrap();
        assert_eq!(store.verify(), Ok(()));
        assert_eq!(store.range(0, 140_000).as_deref(), Some(&bytes[..]));
        let kept = dir.path().join("kept.wav");
        store.keep_in(&kept).unwrap();
        assert_eq!(
            store.range(69_000, 2_000).as_deref(),
            Some(&bytes[69_000..71_000])
        );
        drop(store);
        assert_eq!(std::fs::read(&kept).unwrap(), bytes);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the kept file: {left:?}");
    }

    /// A store dropped before it completes leaves no spool behind.
    #[test]
    fn an_unkept_spool_is_deleted_with_its_store() {
        let bytes = file(100_000);
        let info = StemInfo::of_bytes("s", "wav", &bytes, 1);
        let dir = tempfile::tempdir().unwrap();
        let store = StemStore::new(info.clone(), Some(dir.path()), Box::new(|| {})).unwrap();
        store
            .put(0, &bytes[..info.chunk_range(0).end as usize])
            .unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(store.range(0, 10).as_deref(), Some(&bytes[..10]));
        assert_eq!(store.range(65_000, 1_000), None, "chunk 1 is not here");
        drop(store);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
