//! The peer runtime: the I/O shell around the sans-IO session core and the
//! audio engine.
//! - [`peer`]: the tokio shell: listener, dialer, one task per socket half, and
//!   the core task that drives the [`crate::protocol::Session`] and the engine.
//! - [`net`]: one framed TCP connection and the handshake that opens it.
//! - [`auth`]: the passphrase challenge–response proofs.
//! - [`control`]: the headless command language and JSON-lines events.

pub mod auth;
pub mod control;
pub mod events;
pub mod net;
pub mod peer;
pub mod room;
