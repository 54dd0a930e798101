//! The peer runtime: the I/O shell around the sans-IO session core and the
//! audio engine.
//! - [`peer`]: the tokio shell: the handle, the core task that drives the
//!   [`crate::protocol::Session`] and the engine, the sans-IO link state
//!   machine, one task per input source and socket half, and a worker thread
//!   for slow file work.
//! - [`net`]: one TCP connection, its sealed frames, and the handshake that
//!   opens it.
//! - [`handshake`]: that handshake, sans-IO: SPAKE2 over the passphrase, then
//!   Noise XX for the link's keys.
//! - [`auth`]: the passphrase.
//! - [`lan`]: finding sessions on the local network, sans-IO (what is
//!   announced and heard; the mDNS daemon is `peer::discovery`'s).
//! - [`control`]: the headless command language and JSON-lines events.
//! - [`events`]: what a peer reports, typed.
//! - [`room`]: the stem exchange's shell (files, cache, remote stems).
//! - [`library`]: the library's shell (the replica, hosted files, the
//!   library file, adding files).

pub mod auth;
pub mod control;
pub mod events;
pub mod handshake;
pub mod lan;
pub mod library;
pub mod net;
pub mod peer;
pub mod room;
