//! Test-side tooling for Switchboard: drive **real, independent SIP peers** against the server
//! over loopback, and check what they heard.
//!
//! * [`baresip`]: a baresip phone (registration, calls, WAV or sine in, WAV recording out,
//!   auto-answer, control over `ctrl_tcp`);
//! * [`linphone`]: a linphonec phone (the same, plus SHA-256 digest; WAV files in and out);
//! * [`sipp`]: run a SIPp scenario and read its call counts;
//! * [`kamailio`]: a Kamailio registrar/proxy for `smoke.test`, the stand-in server that proves
//!   the drivers work (config in `crates/testkit/kamailio-smoke/`);
//! * [`audio`]: write tone WAVs, read recordings, RMS, silence, Goertzel, dominant frequency;
//! * [`ports`]: reserve free loopback ports without collisions between parallel tests.
//!
//! The drivers start their peer in a temporary directory (set `TESTKIT_KEEP_DIRS=1` to keep it),
//! capture everything it prints into a log file, and turn what they recognise into events that
//! `wait_*` methods wait for, each bounded by a timeout. Errors carry the tail of the peer's log.
//! Every driver kills its process when dropped.

pub mod audio;
pub mod baresip;
mod error;
pub mod kamailio;
pub mod linphone;
pub mod ports;
mod process;
pub mod sipp;

pub use error::{Error, Result};

/// A SIP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// SIP over UDP.
    #[default]
    Udp,
    /// SIP over TCP.
    Tcp,
}

impl Transport {
    /// The `transport=` URI parameter value: `udp` or `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}
