//! The session protocol's pure core: the agreed state, votes, and the choice
//! function that turns one round's votes into the next state.
//!
//! **Invariant:** nothing in this module does I/O, reads a clock or draws a random
//! number. Time comes in as arguments (`*_session_ns`), so every function here is
//! deterministic and testable in virtual time.

pub mod choice;
pub mod clock;
pub mod machine;
pub mod state;
pub mod time;

pub use choice::{Decision, Rejection, Verdict, VoteOutcome, choose};
pub use clock::{ClockEstimate, LinkClock};
pub use machine::{
    Config, DownReason, DropReason, Ignored, PeerStatus, Session, SessionEvent, SessionStats,
    Start, Transmit, VoteError, action_kind,
};
pub use state::{
    Channel, ChannelState, Event, EventCode, MAX_GAIN_DB, MAX_STEMS, PeerId, ROUND_NS, Round,
    SessionState, Timeline, Vote, frames_to_ns, ns_to_frames,
};
pub use time::{SessionMap, SteerConfig, SteerState};
