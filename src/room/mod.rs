//! The room of stems: what the song is made of, who has which file, and
//! fetching what this peer lacks (see ARCHITECTURE.md, `src/room/`).
//!
//! - [`catalog`]: describing this peer's files as stems (BLAKE3 of the file
//!   and of each chunk; the description itself is [`crate::protocol::StemInfo`]);
//! - [`exchange`]: the sans-IO state machine that shares the song, serves
//!   announced stems and schedules chunk requests;
//! - [`store`]: a remote stem's encoded bytes as they arrive, read by its
//!   decoder (blocking on a missing chunk, which becomes the most urgent);
//! - [`stream`]: the decoder thread that turns those bytes into the engine's
//!   samples around the playhead;
//! - [`cache`]: completed stems, content-addressed on disk.

pub mod cache;
pub mod catalog;
pub mod exchange;
pub mod store;
pub mod stream;

pub use crate::protocol::stem::{StemInfo, hex};
pub use exchange::{Exchange, ExchangeConfig, ExchangeEvent, ExchangeStats, Focus, Transmit};
