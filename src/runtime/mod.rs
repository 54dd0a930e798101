//! The peer runtime (issue 5): the I/O shell around the sans-IO session core
//! and the audio engine. Built up in steps; so far:
//! - [`control`]: the headless command language and JSON-lines events.
//! - [`auth`]: the passphrase challenge–response proofs.

pub mod auth;
pub mod control;
