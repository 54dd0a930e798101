//! synfony: peer-to-peer multi-stem jam sessions.
//!
//! Several peers play one song made of stems; every 100 ms each peer votes, all
//! peers resolve the round with the same deterministic [`protocol::choose`], and
//! apply the result at the same instant on a shared session clock.
//!
//! Layers, bottom up (see ARCHITECTURE.md):
//! - [`wire`]: the hand-written big-endian `Model` encoding and framing;
//! - [`protocol`]: what peers say (the message catalogue) and what one peer
//!   does with it (the agreed state, votes, the choice function, session time
//!   and the [`protocol::Session`] state machine), pure;
//! - [`room`]: the stem exchange (sans-IO) and remote stems' storage and decoding;
//! - [`audio`]: the real-time engine, decoding and the output devices;
//! - [`runtime`]: the tokio shell that runs a peer; [`ui`]: the mixer window.

pub mod assets;
pub mod audio;
pub mod host_clock;
pub mod library;
pub mod protocol;
pub mod room;
pub mod runtime;
pub mod ui;
pub mod wire;
