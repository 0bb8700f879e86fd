//! Facts call control publishes. Consumers (CDR writer, later webhooks and dashboards)
//! subscribe; call control never writes a CDR itself.

use std::fmt;

/// Switchboard's identifier for one call (both legs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// How a call ended, as billing and reports see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Answered, then hung up.
    Answered,
    /// Rang but nobody answered (or the callee was unavailable).
    NoAnswer,
    /// The callee was busy.
    Busy,
    /// The caller gave up before an answer.
    Cancelled,
    /// Any other failure.
    Failed,
}

impl Disposition {
    /// Lower-case name used in CDRs.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Answered => "answered",
            Disposition::NoAnswer => "no-answer",
            Disposition::Busy => "busy",
            Disposition::Cancelled => "cancelled",
            Disposition::Failed => "failed",
        }
    }
}

/// Who ended the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Initiator {
    /// The calling party.
    Caller,
    /// The called party.
    Callee,
    /// Switchboard (timeouts, shutdown, errors).
    System,
}

impl Initiator {
    /// Lower-case name used in CDRs.
    pub fn as_str(self) -> &'static str {
        match self {
            Initiator::Caller => "caller",
            Initiator::Callee => "callee",
            Initiator::System => "system",
        }
    }
}

/// Media counters of a call, from the relay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaCounters {
    /// Packets relayed from caller to callee.
    pub packets_a_to_b: u64,
    /// Packets relayed from callee to caller.
    pub packets_b_to_a: u64,
    /// Bytes relayed from caller to callee.
    pub bytes_a_to_b: u64,
    /// Bytes relayed from callee to caller.
    pub bytes_b_to_a: u64,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallEventKind {
    /// A call was accepted for routing.
    Created {
        /// Caller extension.
        caller: String,
        /// Callee extension.
        callee: String,
        /// The caller's Call-ID.
        sip_call_id: String,
    },
    /// The callee is ringing (first 180/183).
    Ringing,
    /// The callee answered.
    Answered,
    /// The call is over. Emitted exactly once per call.
    Ended {
        /// Billing view.
        disposition: Disposition,
        /// Human-readable cause ("BYE", "486 Busy Here", "media timeout"...).
        cause: String,
        /// The SIP status that ended a failed call, if any.
        status: Option<u16>,
        /// Who ended it.
        initiator: Initiator,
        /// Relay counters (filled in by the driver, which owns the relay session).
        media: Option<MediaCounters>,
    },
}

/// One event of one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallEvent {
    /// The call.
    pub call: CallId,
    /// Its tenant.
    pub tenant_id: i64,
    /// When (Unix ms).
    pub at_ms: i64,
    /// What.
    pub kind: CallEventKind,
}
