//! A remote stem's encoded file as it arrives, chunk by chunk.
//!
//! The fetcher puts verified chunks in; the stem's decoder reads it as a file
//! ([`StoreReader`], a symphonia `MediaSource`). A read of a chunk that has
//! not arrived blocks the decoder thread (never the audio thread) until it
//! does, and names that chunk as the one to fetch first; it gives up with an
//! error when the stem is closed or the decoder's `abort` says the playhead
//! has moved elsewhere.

use std::io::{self, Read, Seek, SeekFrom};
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
}

struct Inner {
    /// Per chunk, once it arrived: memory grows with what was received,
    /// not with the size a song entry claims.
    chunks: Vec<Option<Box<[u8]>>>,
    have: Vec<bool>,
    missing: usize,
    closed: bool,
}

impl StemStore {
    /// An empty store for `info`'s file; `wake` tells the fetcher that the
    /// decoder is waiting.
    pub fn new(info: StemInfo, wake: Box<dyn Fn() + Send + Sync>) -> StemStore {
        let n = info.chunks();
        StemStore {
            inner: Mutex::new(Inner {
                chunks: vec![None; n],
                have: vec![false; n],
                missing: n,
                closed: false,
            }),
            info,
            arrived: Condvar::new(),
            waiting_on: AtomicU64::new(NONE),
            read_pos: AtomicU64::new(0),
            wake,
        }
    }

    /// A store holding the whole file already (every chunk arrived).
    pub fn complete(info: StemInfo, data: Vec<u8>) -> StemStore {
        let n = info.chunks();
        StemStore {
            inner: Mutex::new(Inner {
                chunks: (0..n)
                    .map(|k| {
                        let r = info.chunk_range(k);
                        Some(data[r.start as usize..r.end as usize].into())
                    })
                    .collect(),
                have: vec![true; n],
                missing: 0,
                closed: false,
            }),
            info,
            arrived: Condvar::new(),
            waiting_on: AtomicU64::new(NONE),
            read_pos: AtomicU64::new(0),
            wake: Box::new(|| {}),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain bytes and flags: usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores chunk `k` (already checked against its hash).
    pub fn put(&self, k: usize, bytes: &[u8]) {
        let range = self.info.chunk_range(k);
        let mut g = self.lock();
        if g.have.get(k) != Some(&false) || bytes.len() as u64 != range.end - range.start {
            return;
        }
        g.chunks[k] = Some(bytes.into());
        g.have[k] = true;
        g.missing -= 1;
        drop(g);
        self.arrived.notify_all();
    }

    /// Forgets chunk `k` (it is to be fetched again).
    pub fn forget(&self, k: usize) {
        let mut g = self.lock();
        if g.have.get(k) == Some(&true) {
            g.have[k] = false;
            g.chunks[k] = None;
            g.missing += 1;
        }
    }

    /// Chunks here.
    pub fn chunks_have(&self) -> usize {
        let g = self.lock();
        g.have.len() - g.missing
    }

    /// `len` bytes from `offset`, if every chunk they touch is here.
    pub fn range(&self, offset: u64, len: u32) -> Option<Vec<u8>> {
        let end = offset.checked_add(u64::from(len))?;
        if end > self.info.size_bytes {
            return None;
        }
        let c = u64::from(self.info.chunk_bytes());
        let g = self.lock();
        let mut out = Vec::with_capacity(len as usize);
        let mut at = offset;
        while at < end {
            let k = (at / c) as usize;
            let chunk = g.chunks.get(k)?.as_deref()?;
            let from = (at - k as u64 * c) as usize;
            let n = (chunk.len() - from).min((end - at) as usize);
            out.extend_from_slice(&chunk[from..from + n]);
            at += n as u64;
        }
        Some(out)
    }

    pub fn is_complete(&self) -> bool {
        self.lock().missing == 0
    }

    /// The whole file, if complete and its hash matches the stem's; `Err`
    /// with the chunks whose hash fails otherwise (after a full-file
    /// mismatch, so that they can be fetched again).
    pub fn verified(&self) -> Result<Vec<u8>, Vec<usize>> {
        let g = self.lock();
        if g.missing > 0 {
            return Err(vec![]);
        }
        let whole: Vec<u8> = g
            .chunks
            .iter()
            .flatten()
            .flat_map(|c| c.iter().copied())
            .collect();
        if blake3::hash(&whole).as_bytes() == &self.info.hash {
            return Ok(whole);
        }
        Err((0..self.info.chunks())
            .filter(|&k| !(g.chunks[k].as_deref()).is_some_and(|c| self.info.check_chunk(k, c)))
            .collect())
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
        let Some(chunk) = g.chunks[k].as_deref() else {
            return Err(io::Error::other("a chunk marked here is missing"));
        };
        let from = (self.pos - k as u64 * chunk_bytes) as usize;
        let n = (chunk.len() - from).min(buf.len());
        buf[..n].copy_from_slice(&chunk[from..from + n]);
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
        let store = Arc::new(StemStore::new(
            info.clone(),
            Box::new(move || w.store(true, Ordering::Relaxed)),
        ));
        let mut r = StoreReader::new(store.clone(), Box::new(|| false));
        r.seek(SeekFrom::Start(70_000)).unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0; 100];
            r.read_exact(&mut buf).map(|_| buf)
        });
        while store.waiting_on().is_none() {
            std::thread::yield_now();
        }
        assert_eq!(store.waiting_on(), Some(1));
        assert!(woken.load(Ordering::Relaxed));
        let c1 = info.chunk_range(1);
        store.put(1, &bytes[c1.start as usize..c1.end as usize]);
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
        let store = Arc::new(StemStore::new(info, Box::new(|| {})));
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
    fn verified_names_the_bad_chunks() {
        let bytes = file(140_000);
        let info = StemInfo::of_bytes("s", "wav", &bytes, 1);
        let store = StemStore::new(info.clone(), Box::new(|| {}));
        assert_eq!(store.verified(), Err(vec![]));
        for k in 0..info.chunks() {
            let r = info.chunk_range(k);
            let mut c = bytes[r.start as usize..r.end as usize].to_vec();
            if k == 1 {
                c[0] ^= 0xff;
            }
            store.put(k, &c);
        }
        assert_eq!(store.verified(), Err(vec![1]));
        store.forget(1);
        let r = info.chunk_range(1);
        store.put(1, &bytes[r.start as usize..r.end as usize]);
        assert_eq!(store.verified(), Ok(bytes));
    }
}
