//! synfony: peer-to-peer multi-stem jam sessions.
//!
//! Several peers play one song made of stems; every 100 ms each peer votes, all
//! peers resolve the round with the same deterministic [`session::choose`], and
//! apply the result at the same instant on a shared session clock.
//!
//! Layers, bottom up (see ARCHITECTURE.md):
//! - [`wire`]: the hand-written big-endian `Model` encoding and framing;
//! - [`session`]: the agreed state, votes and the choice function (pure);
//! - [`message`]: the message catalogue peers exchange;
//! - [`sim`]: a deterministic simulator that runs many sessions in virtual time.

pub mod assets;
pub mod audio;
pub mod harness;
pub mod host_clock;
pub mod impulse;
pub mod message;
pub mod proxy;
pub mod report;
pub mod room;
pub mod runtime;
pub mod session;
pub mod sim;
pub mod ui;
pub mod wire;
