//! The INVITE client transaction (RFC 3261 §17.1.1, RFC 6026 §7.2).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::{Output, Timer, TimerConfig, ack_for_non2xx, earliest, encode_request};
use crate::message::{Request, Response};

/// States of the INVITE client transaction.
///
/// ```text
///                    |INVITE from TU
///  Timer A fires     |INVITE sent
///  Reset A,          V                      Timer B fires
///  INVITE sent +-----------+                or Transport Err.
///    +---------|           |---------------+inform TU
///    |         |  Calling  |               |
///    +-------->|           |-------------->|
///              +-----------+ 2xx           |
///                 |  |       2xx to TU     |
///                 |  |1xx                  |
///  300-699 +------+  |1xx to TU            |
///  ACK sent|         V                     |
///          |     +-----------+             |
///          |     |           |--2xx------->|------+ Accepted (RFC 6026):
///          |     | Proceeding| 2xx to TU   |      | further 2xx to TU,
///          |     +-----------+             |      | Timer M -> Terminated
///          |  300-699 |                    |
///          |  ACK sent|                    |
///          +-------+  V                    |
///             +-----------+ 300-699        |
///             | Completed |-ACK sent       |
///             +-----------+                |
///      Timer D fires |                     |
///                    V                     |
///              +-----------+               |
///              | Terminated|<--------------+
///              +-----------+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientInviteState {
    /// INVITE sent, nothing heard.
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A 300-699 arrived and was ACKed; absorbing retransmissions.
    Completed,
    /// A 2xx arrived; further 2xx (retransmissions, other forks) go to the TU.
    Accepted,
    /// Over.
    Terminated,
}

/// The INVITE client transaction.
#[derive(Debug)]
pub struct ClientInvite {
    state: ClientInviteState,
    request: Request,
    wire: Bytes,
    ack: Option<Bytes>,
    reliable: bool,
    cfg: TimerConfig,
    timer_a: Option<Timer>,
    timer_b: Option<Timer>,
    timer_d: Option<Timer>,
    timer_m: Option<Timer>,
    out: VecDeque<Output>,
}

impl ClientInvite {
    /// Starts the transaction: the INVITE is sent at once.
    pub fn new(request: Request, reliable: bool, cfg: TimerConfig, now: Instant) -> ClientInvite {
        let wire = encode_request(&request);
        let mut out = VecDeque::with_capacity(4);
        out.push_back(Output::Transmit(wire.clone()));
        ClientInvite {
            state: ClientInviteState::Calling,
            request,
            wire,
            ack: None,
            reliable,
            cfg,
            timer_a: (!reliable).then(|| Timer::after(now, cfg.t1)),
            timer_b: Some(Timer::after(now, cfg.t1x64())),
            timer_d: None,
            timer_m: None,
            out,
        }
    }

    /// Current state.
    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// The INVITE this transaction sends.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// A response matched to this transaction arrived.
    pub fn handle_response(&mut self, resp: Response, now: Instant) {
        use ClientInviteState::*;
        let class = resp.status / 100;
        match (self.state, class) {
            (Calling | Proceeding, 1) => {
                // Timer B only guards Calling; in Proceeding the TU decides when to give up
                // (it sends CANCEL).
                self.state = Proceeding;
                self.timer_a = None;
                self.timer_b = None;
                self.out.push_back(Output::Response(resp));
            }
            (Calling | Proceeding, 2) => {
                self.state = Accepted;
                self.timer_a = None;
                self.timer_b = None;
                self.timer_m = Some(Timer::after(now, self.cfg.t1x64()));
                self.out.push_back(Output::Response(resp));
            }
            (Calling | Proceeding, _) => {
                self.state = Completed;
                self.timer_a = None;
                self.timer_b = None;
                let ack = encode_request(&ack_for_non2xx(&self.request, &resp));
                self.out.push_back(Output::Transmit(ack.clone()));
                self.ack = Some(ack);
                let d = if self.reliable { std::time::Duration::ZERO } else { std::time::Duration::from_secs(32) };
                self.timer_d = Some(Timer::after(now, d));
                self.out.push_back(Output::Response(resp));
                if self.reliable {
                    self.terminate();
                }
            }
            (Completed, 3..) => {
                // A retransmitted final response: ACK again, the TU already knows.
                if let Some(ack) = &self.ack {
                    self.out.push_back(Output::Transmit(ack.clone()));
                }
            }
            (Accepted, 2) => self.out.push_back(Output::Response(resp)),
            _ => {}
        }
    }

    /// Call when [`ClientInvite::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        use ClientInviteState::*;
        if Timer::expired(&self.timer_b, now) && self.state == Calling {
            self.out.push_back(Output::Timeout);
            self.terminate();
            return;
        }
        if Timer::expired(&self.timer_a, now) && self.state == Calling {
            // Timer A doubles with no cap (§17.1.1.2).
            let interval = self.timer_a.map(|t| t.interval * 2).unwrap_or(self.cfg.t1);
            self.timer_a = Some(Timer::after(now, interval));
            self.out.push_back(Output::Transmit(self.wire.clone()));
        }
        if Timer::expired(&self.timer_d, now) || Timer::expired(&self.timer_m, now) {
            self.terminate();
        }
    }

    /// The transport could not send the INVITE.
    pub fn handle_transport_error(&mut self) {
        if matches!(self.state, ClientInviteState::Calling | ClientInviteState::Proceeding) {
            self.out.push_back(Output::TransportError);
            self.terminate();
        }
    }

    fn terminate(&mut self) {
        if self.state != ClientInviteState::Terminated {
            self.state = ClientInviteState::Terminated;
            self.timer_a = None;
            self.timer_b = None;
            self.timer_d = None;
            self.timer_m = None;
            self.out.push_back(Output::Terminated);
        }
    }

    /// Next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`ClientInvite::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_a, self.timer_b, self.timer_d, self.timer_m])
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::test_support::*;
    use super::*;

    fn start(reliable: bool) -> (ClientInvite, Instant) {
        let now = Instant::now();
        let mut t = ClientInvite::new(request("INVITE"), reliable, TimerConfig::default(), now);
        assert_eq!(kinds(&drain(|| t.poll_output())), ["transmit"]);
        (t, now)
    }

    #[test]
    fn calling_timer_a_doubles_until_timer_b() {
        let (mut t, start) = start(false);
        let mut now = start;
        let mut sends = Vec::new();
        // Jump from deadline to deadline, as a driver does: no real waiting.
        while let Some(at) = t.poll_timeout() {
            now = at;
            t.handle_timeout(now);
            let out = drain(|| t.poll_output());
            if out.contains(&Output::Timeout) {
                break;
            }
            assert_eq!(kinds(&out), ["transmit"]);
            sends.push(now - start);
        }
        let ms: Vec<u128> = sends.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [500, 1500, 3500, 7500, 15500, 31500]);
        // Timer B at 64*T1 = 32 s.
        assert_eq!(now - start, Duration::from_secs(32));
        assert_eq!(t.state(), ClientInviteState::Terminated);
    }

    #[test]
    fn calling_reliable_has_no_retransmissions() {
        let (t, start) = start(true);
        assert_eq!(t.poll_timeout(), Some(start + Duration::from_secs(32)));
    }

    #[test]
    fn calling_1xx_stops_retransmissions_and_timer_b() {
        let (mut t, now) = start(false);
        let inv = t.request().clone();
        t.handle_response(response(&inv, 180), now);
        assert_eq!(kinds(&drain(|| t.poll_output())), ["response"]);
        assert_eq!(t.state(), ClientInviteState::Proceeding);
        // Timer B only applies in Calling; in Proceeding the TU decides (it CANCELs), so
        // nothing is armed.
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn proceeding_non2xx_sends_ack_and_absorbs_retransmissions() {
        let (mut t, now) = start(false);
        let inv = t.request().clone();
        t.handle_response(response(&inv, 486), now);
        let out = drain(|| t.poll_output());
        assert_eq!(kinds(&out), ["transmit", "response"]);
        let Output::Transmit(ack) = &out[0] else { panic!() };
        assert!(ack.starts_with(b"ACK sip:bob@example.com SIP/2.0"));
        // The 486 again: ACK again, nothing to the TU.
        t.handle_response(response(&inv, 486), now + Duration::from_millis(600));
        assert_eq!(kinds(&drain(|| t.poll_output())), ["transmit"]);
        // Timer D (32 s on UDP).
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(32)));
        t.handle_timeout(now + Duration::from_secs(32));
        assert_eq!(kinds(&drain(|| t.poll_output())), ["terminated"]);
    }

    #[test]
    fn calling_non2xx_reliable_terminates_at_once() {
        let (mut t, now) = start(true);
        let inv = t.request().clone();
        t.handle_response(response(&inv, 404), now);
        assert_eq!(kinds(&drain(|| t.poll_output())), ["transmit", "response", "terminated"]);
    }

    #[test]
    fn accepted_passes_every_2xx_then_timer_m() {
        let (mut t, now) = start(false);
        let inv = t.request().clone();
        t.handle_response(response(&inv, 200), now);
        assert_eq!(kinds(&drain(|| t.poll_output())), ["response"]);
        assert_eq!(t.state(), ClientInviteState::Accepted);
        // A retransmitted 2xx, or one from another fork, still reaches the TU (RFC 6026).
        t.handle_response(response(&inv, 200), now + Duration::from_secs(1));
        assert_eq!(kinds(&drain(|| t.poll_output())), ["response"]);
        t.handle_timeout(now + Duration::from_secs(32));
        assert_eq!(kinds(&drain(|| t.poll_output())), ["terminated"]);
    }

    #[test]
    fn calling_transport_error_informs_tu() {
        let (mut t, _) = start(false);
        t.handle_transport_error();
        assert_eq!(kinds(&drain(|| t.poll_output())), ["transport-error", "terminated"]);
    }
}
