//! Call control for Switchboard: the registrar, digest authentication, the front door for
//! out-of-dialog requests, and the B2BUA call state machine. Everything here is sans-IO:
//! inputs carry the time ([`Now`]), outputs say what to send where, and the async drivers of
//! the `server` crate do the I/O. Tests drive it all in virtual time.

pub mod auth;
pub mod call;
pub mod cdr;
pub mod directory;
pub mod door;
pub mod events;
pub mod flow;
pub mod ids;
pub mod location;
pub mod registrar;

use std::time::Instant;

/// The hash map of hot paths: foldhash is several times faster than SipHash on short keys and
/// randomly seeded per map, which keeps flooding with chosen keys impractical.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The current time as every input receives it: a monotonic instant for timers and the
/// wall clock (Unix milliseconds) for what is stored or reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time.
    pub instant: Instant,
    /// Wall-clock time in milliseconds since the Unix epoch.
    pub unix_ms: i64,
}

impl Now {
    /// The same moment shifted by `d` (for tests and timer arithmetic).
    pub fn plus(self, d: std::time::Duration) -> Now {
        Now { instant: self.instant + d, unix_ms: self.unix_ms + d.as_millis() as i64 }
    }

    /// The wall-clock value of a future instant.
    pub fn unix_ms_at(self, at: Instant) -> i64 {
        self.unix_ms + at.saturating_duration_since(self.instant).as_millis() as i64
    }
}

/// Methods Switchboard accepts (the `Allow` header value).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, MESSAGE";

/// Option tags Switchboard supports (the `Supported` header value; none needed yet).
pub const SUPPORTED: &str = "";
