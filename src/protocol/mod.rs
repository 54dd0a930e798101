//! The protocol, in one place: what peers say to each other (the message
//! catalogue, [`message`], and what a stem is, [`stem`]) and what one peer does
//! with it (the session core: the agreed state, votes, the choice function that
//! turns one round's votes into the next state, clock estimation, session time,
//! and [`session::Session`], the state machine that ties them together).
//!
//! Nothing here depends on the rest of synfony but [`crate::wire`]; the room,
//! the runtime, the audio engine and the window build on it.
//!
//! **Invariant:** nothing in this module does I/O, reads a clock or draws a random
//! number. Time comes in as arguments (`*_session_ns`), so every function here is
//! deterministic and testable in virtual time.

pub mod choice;
pub mod clock;
pub mod identity;
pub mod lead;
pub mod library;
pub mod message;
pub mod session;
pub mod state;
pub mod stem;
pub mod time;

pub use choice::{Decision, Rejection, Verdict, VoteOutcome, choose};
pub use clock::{ClockEstimate, LinkClock};
pub use identity::{PeerKey, ProofError, SignedVote, Signer, VoteProof};
pub use lead::{Lead, Need};
pub use session::{
    ActionKind, Config, DownReason, DropReason, Ignored, PeerStatus, Session, SessionEvent,
    SessionStats, Start, Transmit, VoteError, action_kind,
};
pub use state::{
    Channel, ChannelState, ENGINE_RATE_HZ, Event, EventCode, InvalidState, MAX_GAIN_DB, MAX_PLAYED,
    MAX_QUEUE, MAX_STEMS, PeerId, ROUND_NS, Round, START_VERSION, SessionState, SongRef, Timeline,
    Vote, frames_to_ns, ns_to_frames,
};
pub use stem::{StemInfo, hex};
pub use time::{SessionMap, SteerConfig, SteerState};
