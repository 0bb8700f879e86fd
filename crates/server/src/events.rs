//! The event bus: call control publishes, consumers subscribe. Each subscriber has its own
//! unbounded queue, so a slow consumer never blocks a call and never loses an event.

use std::sync::{Arc, RwLock};

use pbx::events::{CallEvent, CallEventKind};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Publishes call events to every subscriber.
#[derive(Clone, Debug, Default)]
pub struct EventBus {
    subscribers: Arc<RwLock<Vec<mpsc::UnboundedSender<CallEvent>>>>,
}

impl EventBus {
    /// A new subscription.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<CallEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut s) = self.subscribers.write() {
            s.push(tx);
        }
        rx
    }

    /// Publishes an event (and logs it inside the caller's span).
    pub fn publish(&self, ev: CallEvent) {
        match &ev.kind {
            CallEventKind::Created { caller, callee, .. } => {
                info!(call = %ev.call, tenant = ev.tenant_id, "call created");
                debug!(call = %ev.call, caller = %caller, callee = %callee, "call parties");
            }
            CallEventKind::Ringing => info!(call = %ev.call, "ringing"),
            CallEventKind::Answered => info!(call = %ev.call, "answered"),
            CallEventKind::Quality { a, b } => debug!(
                call = %ev.call,
                a_loss_pct = a.loss_pct,
                a_jitter_ms = a.jitter_ms,
                a_mos = a.mos,
                b_loss_pct = b.loss_pct,
                b_jitter_ms = b.jitter_ms,
                b_mos = b.mos,
                "call quality"
            ),
            CallEventKind::Dtmf { caller_leg, digit, duration_ms, method } => info!(
                call = %ev.call,
                leg = if *caller_leg { "caller" } else { "callee" },
                digit = %digit,
                duration_ms = duration_ms,
                method = method.as_str(),
                "dtmf"
            ),
            CallEventKind::QualityAlert { caller_leg, mos, threshold } => warn!(
                call = %ev.call,
                leg = if *caller_leg { "caller" } else { "callee" },
                mos = mos,
                threshold = threshold,
                "call quality alert: MOS under the threshold"
            ),
            CallEventKind::Ended { disposition, cause, initiator, .. } => {
                info!(call = %ev.call, disposition = disposition.as_str(), cause = %cause, initiator = initiator.as_str(), "call ended")
            }
        }
        if let Ok(mut s) = self.subscribers.write() {
            s.retain(|tx| tx.send(ev.clone()).is_ok());
        }
    }

    /// Drops every subscription (their consumers then drain and finish).
    pub fn close(&self) {
        if let Ok(mut s) = self.subscribers.write() {
            s.clear();
        }
    }
}
