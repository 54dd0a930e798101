//! The audio engine: decode stems, mix them, and play the frame at timeline
//! position P at session time T (see ARCHITECTURE.md, "Audio").
//!
//! - [`decode`]: files to interleaved stereo f32 at the engine rate (symphonia,
//!   rubato), on loader threads;
//! - [`load`]: the one stem loader (files and folders to stems, with limits);
//! - [`engine`]: the real-time mixer and its scheduling on the session clock;
//! - [`meters`]: the meters and the solo set, atomics shared with the window;
//! - [`streamer`]: the channels — local, remote (filled while playing), All;
//! - [`output`]: the backends (`null`, `wav:`, `raw:`, `device`, one file each)
//!   and the `--report` lines;
//! - [`render`]: the offline mixdown (`synfony render`), the same engine code.

pub mod decode;
pub mod downmix;
pub mod engine;
pub mod load;
pub mod meters;
pub mod mp4;
pub mod output;
pub mod render;
pub mod resample;
pub mod streamer;

pub use decode::{DecodeError, StemAudio, decode_file};
pub use engine::{
    AllStatus, BlockInfo, Engine, EngineHandle, EngineStats, Jump, Meter, Meters, MixGains,
    Retired, Scheduled, Solo,
};
pub use load::{FileStem, LocalStem};
pub use streamer::{StreamedStem, Streamer};

/// The engine's sample rate (the protocol's: stem lengths are counted in it).
pub use crate::protocol::ENGINE_RATE_HZ;
/// The engine's channel count (interleaved stereo).
pub const CHANNELS: usize = 2;
