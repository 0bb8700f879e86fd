//! Call detail records, folded from call events: the CDR writer is just one consumer.

use std::collections::HashMap;

use crate::events::{CallEvent, CallEventKind, CallId, MediaCounters};

/// One finished call, ready to store.
#[derive(Clone, Debug, PartialEq)]
pub struct Cdr {
    /// Call identifier.
    pub call: CallId,
    /// Tenant id.
    pub tenant_id: i64,
    /// The caller's Call-ID.
    pub sip_call_id: String,
    /// Caller extension.
    pub caller: String,
    /// Callee extension.
    pub callee: String,
    /// Start (Unix ms).
    pub started_at_ms: i64,
    /// Answer (Unix ms), if answered.
    pub answered_at_ms: Option<i64>,
    /// End (Unix ms).
    pub ended_at_ms: i64,
    /// Disposition name.
    pub disposition: &'static str,
    /// Cause text.
    pub hangup_cause: String,
    /// SIP status for failures.
    pub hangup_status: Option<u16>,
    /// Who ended it.
    pub initiator: &'static str,
    /// Media counters.
    pub media: MediaCounters,
    /// Where the recording is, if the call was recorded.
    pub recording: Option<String>,
}

impl Cdr {
    /// Total duration in milliseconds.
    pub fn duration_ms(&self) -> i64 {
        self.ended_at_ms - self.started_at_ms
    }

    /// Billable time: from answer to end.
    pub fn billable_ms(&self) -> i64 {
        self.answered_at_ms.map(|a| self.ended_at_ms - a).unwrap_or(0).max(0)
    }
}

#[derive(Debug)]
struct Partial {
    tenant_id: i64,
    sip_call_id: String,
    caller: String,
    callee: String,
    started_at_ms: i64,
    answered_at_ms: Option<i64>,
}

/// Folds events into CDRs.
#[derive(Debug, Default)]
pub struct CdrBuilder {
    open: HashMap<CallId, Partial>,
}

impl CdrBuilder {
    /// Takes one event; returns the CDR when the call ended.
    pub fn handle(&mut self, ev: &CallEvent) -> Option<Cdr> {
        match &ev.kind {
            CallEventKind::Created { caller, callee, sip_call_id } => {
                self.open.insert(
                    ev.call,
                    Partial {
                        tenant_id: ev.tenant_id,
                        sip_call_id: sip_call_id.clone(),
                        caller: caller.clone(),
                        callee: callee.clone(),
                        started_at_ms: ev.at_ms,
                        answered_at_ms: None,
                    },
                );
                None
            }
            CallEventKind::Ringing
            | CallEventKind::Quality { .. }
            | CallEventKind::QualityAlert { .. }
            | CallEventKind::Dtmf { .. } => None,
            CallEventKind::Answered => {
                if let Some(p) = self.open.get_mut(&ev.call) {
                    p.answered_at_ms.get_or_insert(ev.at_ms);
                }
                None
            }
            CallEventKind::Ended { disposition, cause, status, initiator, media, recording } => {
                let p = self.open.remove(&ev.call)?;
                Some(Cdr {
                    call: ev.call,
                    tenant_id: p.tenant_id,
                    sip_call_id: p.sip_call_id,
                    caller: p.caller,
                    callee: p.callee,
                    started_at_ms: p.started_at_ms,
                    answered_at_ms: p.answered_at_ms,
                    ended_at_ms: ev.at_ms,
                    disposition: disposition.as_str(),
                    hangup_cause: cause.clone(),
                    hangup_status: *status,
                    initiator: initiator.as_str(),
                    media: media.clone().unwrap_or_default(),
                    recording: recording.clone(),
                })
            }
        }
    }

    /// Calls seen but not ended.
    pub fn open_calls(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Disposition, Initiator};

    #[test]
    fn folds_a_call_into_one_cdr() {
        let mut b = CdrBuilder::default();
        let ev = |at, kind| CallEvent { call: CallId(1), tenant_id: 3, at_ms: at, kind };
        assert!(
            b.handle(&ev(
                1000,
                CallEventKind::Created { caller: "1001".into(), callee: "1002".into(), sip_call_id: "x".into() }
            ))
            .is_none()
        );
        b.handle(&ev(2000, CallEventKind::Ringing));
        b.handle(&ev(5000, CallEventKind::Answered));
        let cdr = b
            .handle(&ev(
                65000,
                CallEventKind::Ended {
                    disposition: Disposition::Answered,
                    cause: "BYE".into(),
                    status: None,
                    initiator: Initiator::Callee,
                    media: Some(MediaCounters { packets_a_to_b: 3000, ..Default::default() }),
                    recording: None,
                },
            ))
            .unwrap();
        assert_eq!(cdr.duration_ms(), 64000);
        assert_eq!(cdr.billable_ms(), 60000);
        assert_eq!(cdr.initiator, "callee");
        assert_eq!(cdr.media.packets_a_to_b, 3000);
        assert_eq!(b.open_calls(), 0);
    }
}
