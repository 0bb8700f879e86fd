//! The error type shared by the peer drivers.

use std::fmt;
use std::io;

/// Why a driver call failed.
///
/// Every variant that comes from a running peer carries the tail of that peer's log, so that a
/// failing test prints what the peer saw without further digging (the full log stays available
/// through the driver's `log()` and `log_path()`).
pub enum Error {
    /// An I/O error while spawning, controlling or reading a peer.
    Io(io::Error),
    /// The awaited event did not happen before the timeout.
    Timeout {
        /// Which peer (for example `baresip alice@smoke.test`).
        peer: String,
        /// What was awaited (for example `registration`).
        what: String,
        /// The last lines of the peer's log.
        log_tail: String,
    },
    /// The peer reported a failure: a registration refused, a call closed before it was
    /// established, a command rejected.
    Failed {
        /// Which peer.
        peer: String,
        /// What was attempted.
        what: String,
        /// What the peer said (a SIP status line, a close reason, a command's answer).
        detail: String,
        /// The last lines of the peer's log.
        log_tail: String,
    },
    /// The peer process exited (or closed its output) while we were waiting for it.
    Exited {
        /// Which peer.
        peer: String,
        /// What was awaited.
        what: String,
        /// The last lines of the peer's log.
        log_tail: String,
    },
}

/// The result type of the drivers.
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::Timeout { peer, what, log_tail } => {
                write!(f, "{peer}: timed out waiting for {what}\n--- log tail ---\n{log_tail}")
            }
            Self::Failed { peer, what, detail, log_tail } => {
                write!(f, "{peer}: {what} failed: {detail}\n--- log tail ---\n{log_tail}")
            }
            Self::Exited { peer, what, log_tail } => {
                write!(f, "{peer}: exited while waiting for {what}\n--- log tail ---\n{log_tail}")
            }
        }
    }
}

/// The same as `Display`, so that `unwrap()` in a test prints the log tail readably.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}
