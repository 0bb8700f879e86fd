//! The non-INVITE server transaction (RFC 3261 §17.2.2).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::{Output, Timer, TimerConfig, earliest, encode_response};
use crate::message::Response;

/// States of the non-INVITE server transaction.
///
/// ```text
///                   |Request received
///                   |pass to TU
///                   V
///             +-----------+
///             |           |
///             | Trying    |-------------+
///             |           |             |
///             +-----------+             |200-699 from TU
///                   |                   |send response
///                   |1xx from TU        |
///                   |send response      |
///                   |                   |
///Request            V      1xx from TU  |
///send response+-----------+send response|
///    +--------|           |--------+    |
///    |        | Proceeding|        |    |
///    +------->|           |<-------+    |
///             +-----------+             |
///                   |                   |
///                   |200-699 from TU    |
///                   |send response      |
///                   V                   |
///Request      +-----------+             |
///send response|           |<------------+
///    +--------| Completed |
///    |        |           |
///    +------->|           |
///             +-----------+
///                   |
///                   |Timer J fires
///                   V
///             +-----------+
///             | Terminated|
///             +-----------+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerNonInviteState {
    /// Waiting for the TU; retransmissions are absorbed.
    Trying,
    /// A provisional was sent; retransmissions get it again.
    Proceeding,
    /// The final response was sent; retransmissions get it again (timer J).
    Completed,
    /// Over.
    Terminated,
}

/// The non-INVITE server transaction.
#[derive(Debug)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    reliable: bool,
    cfg: TimerConfig,
    last_response: Option<Bytes>,
    timer_j: Option<Timer>,
    out: VecDeque<Output>,
}

impl ServerNonInvite {
    /// A transaction for a new request.
    pub fn new(reliable: bool, cfg: TimerConfig) -> ServerNonInvite {
        ServerNonInvite {
            state: ServerNonInviteState::Trying,
            reliable,
            cfg,
            last_response: None,
            timer_j: None,
            out: VecDeque::with_capacity(2),
        }
    }

    /// Current state.
    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// The TU responds.
    pub fn respond(&mut self, resp: &Response, now: Instant) {
        use ServerNonInviteState::*;
        if !matches!(self.state, Trying | Proceeding) {
            return;
        }
        let wire = encode_response(resp);
        self.last_response = Some(wire.clone());
        self.out.push_back(Output::Transmit(wire));
        if resp.status >= 200 {
            self.state = Completed;
            if self.reliable {
                self.terminate();
            } else {
                self.timer_j = Some(Timer::after(now, self.cfg.t1x64()));
            }
        } else {
            self.state = Proceeding;
        }
    }

    /// A retransmission of the request arrived.
    pub fn handle_retransmission(&mut self) {
        if matches!(self.state, ServerNonInviteState::Proceeding | ServerNonInviteState::Completed)
            && let Some(r) = &self.last_response
        {
            self.out.push_back(Output::Transmit(r.clone()));
        }
    }

    /// Call when [`ServerNonInvite::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if Timer::expired(&self.timer_j, now) {
            self.terminate();
        }
    }

    /// The transport could not send the response.
    pub fn handle_transport_error(&mut self) {
        if self.state != ServerNonInviteState::Terminated {
            self.out.push_back(Output::TransportError);
            self.terminate();
        }
    }

    fn terminate(&mut self) {
        if self.state != ServerNonInviteState::Terminated {
            self.state = ServerNonInviteState::Terminated;
            self.timer_j = None;
            self.out.push_back(Output::Terminated);
        }
    }

    /// Next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`ServerNonInvite::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_j])
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::test_support::*;
    use super::*;

    #[test]
    fn trying_absorbs_retransmissions() {
        let mut t = ServerNonInvite::new(false, TimerConfig::default());
        t.handle_retransmission();
        assert!(drain(|| t.poll_output()).is_empty());
        assert_eq!(t.state(), ServerNonInviteState::Trying);
    }

    #[test]
    fn completed_resends_final_until_timer_j() {
        let now = Instant::now();
        let req = request("REGISTER");
        let mut t = ServerNonInvite::new(false, TimerConfig::default());
        t.respond(&response(&req, 200), now);
        assert_eq!(kinds(&drain(|| t.poll_output())), ["transmit"]);
        t.handle_retransmission();
        let out = drain(|| t.poll_output());
        let Output::Transmit(b) = &out[0] else { panic!() };
        assert!(b.starts_with(b"SIP/2.0 200 OK"));
        // A late response from the TU is ignored.
        t.respond(&response(&req, 500), now);
        assert!(drain(|| t.poll_output()).is_empty());
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(32)));
        t.handle_timeout(now + Duration::from_secs(32));
        assert_eq!(kinds(&drain(|| t.poll_output())), ["terminated"]);
    }

    #[test]
    fn proceeding_resends_provisional() {
        let now = Instant::now();
        let req = request("OPTIONS");
        let mut t = ServerNonInvite::new(false, TimerConfig::default());
        t.respond(&response(&req, 100), now);
        drain(|| t.poll_output());
        t.handle_retransmission();
        assert_eq!(kinds(&drain(|| t.poll_output())), ["transmit"]);
        assert_eq!(t.state(), ServerNonInviteState::Proceeding);
    }

    #[test]
    fn completed_over_reliable_terminates_at_once() {
        let now = Instant::now();
        let req = request("OPTIONS");
        let mut t = ServerNonInvite::new(true, TimerConfig::default());
        t.respond(&response(&req, 200), now);
        assert_eq!(kinds(&drain(|| t.poll_output())), ["transmit", "terminated"]);
    }
}
