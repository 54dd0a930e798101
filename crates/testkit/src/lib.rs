//! synfony's test and bench instruments, kept out of the crate a user installs.
//!
//! They see peers only as a user would — the command line, stdout, `--report`
//! files and the raw output — and never touch the code they measure:
//! - [`harness`]: a headless peer as a child process;
//! - [`proxy`]: a loopback TCP proxy that delays, jitters and cuts links;
//! - [`report`]: reading `--report` files and the skew between peers;
//! - [`impulse`]: the impulse train and play times measured from raw output;
//! - [`hostile`]: a hand-driven client that speaks the protocol as a faulty
//!   or malicious member would.

pub mod harness;
pub mod hostile;
pub mod impulse;
pub mod proxy;
pub mod report;
