//! The INVITE server transaction (RFC 3261 §17.2.1, RFC 6026 §7.1).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::{Output, Timer, TimerConfig, earliest, encode_response};
use crate::message::Response;

/// States of the INVITE server transaction.
///
/// ```text
///                               |INVITE
///                               |pass INV to TU
///            INVITE             V send 100 if TU won't in 200 ms
///            send response+-----------+
///                +--------|           |--------+ 101-199 from TU
///                |        |Proceeding |        | send response
///                +------->|           |<-------+
///                         |           |          Transport Err.
///                         |           |          Inform TU
///                         |           |--------------->+
///                         +-----------+                |
///            300-699 from TU |     |2xx from TU        |
///            send response   |     |send response      |
///                            |     +------------------>+------+ Accepted (RFC 6026):
///                            |                         |      | 2xx from TU sent,
///            INVITE          V          Timer G fires  |      | INVITE absorbed,
///            send response+-----------+ send response  |      | Timer L -> Terminated
///                +--------|           |--------+       |
///                |        | Completed |        |       |
///                +------->|           |<-------+       |
///                         +-----------+                |
///                            |     |                   |
///                        ACK |     |                   |
///                        -   |     +------------------>+
///                            |        Timer H fires    |
///                            V        or Transport Err.|
///                         +-----------+  Inform TU     |
///                         |           |                |
///                         | Confirmed |                |
///                         |           |                |
///                         +-----------+                |
///                               |                      |
///                               |Timer I fires         |
///                               V                      |
///                         +-----------+                |
///                         | Terminated|<---------------+
///                         +-----------+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerInviteState {
    /// Waiting for the TU's final response.
    Proceeding,
    /// A 300-699 was sent; retransmitting it until the ACK (timers G, H).
    Completed,
    /// The ACK arrived; absorbing ACK retransmissions (timer I).
    Confirmed,
    /// A 2xx was sent; the TU retransmits it, INVITE retransmissions are absorbed (timer L).
    Accepted,
    /// Over.
    Terminated,
}

/// The INVITE server transaction.
#[derive(Debug)]
pub struct ServerInvite {
    state: ServerInviteState,
    reliable: bool,
    cfg: TimerConfig,
    last_provisional: Option<Bytes>,
    final_response: Option<Bytes>,
    final_status: Option<u16>,
    timer_g: Option<Timer>,
    timer_h: Option<Timer>,
    timer_i: Option<Timer>,
    timer_l: Option<Timer>,
    out: VecDeque<Output>,
}

impl ServerInvite {
    /// A transaction for a new INVITE. The TU should send a 100 Trying at once.
    pub fn new(reliable: bool, cfg: TimerConfig) -> ServerInvite {
        ServerInvite {
            state: ServerInviteState::Proceeding,
            reliable,
            cfg,
            last_provisional: None,
            final_response: None,
            final_status: None,
            timer_g: None,
            timer_h: None,
            timer_i: None,
            timer_l: None,
            out: VecDeque::with_capacity(2),
        }
    }

    /// Current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// The final status sent, if any.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }

    /// The TU responds.
    pub fn respond(&mut self, resp: &Response, now: Instant) {
        use ServerInviteState::*;
        let wire = encode_response(resp);
        match (self.state, resp.status) {
            (Proceeding, 100..=199) => {
                self.last_provisional = Some(wire.clone());
                self.out.push_back(Output::Transmit(wire));
            }
            (Proceeding, 200..=299) => {
                self.state = Accepted;
                self.final_status = Some(resp.status);
                self.timer_l = Some(Timer::after(now, self.cfg.t1x64()));
                self.out.push_back(Output::Transmit(wire));
            }
            (Proceeding, _) => {
                self.state = Completed;
                self.final_status = Some(resp.status);
                self.final_response = Some(wire.clone());
                if !self.reliable {
                    self.timer_g = Some(Timer::after(now, self.cfg.t1));
                }
                self.timer_h = Some(Timer::after(now, self.cfg.t1x64()));
                self.out.push_back(Output::Transmit(wire));
            }
            // The TU retransmits its 2xx until the ACK (§13.3.1.4); RFC 6026 lets it through.
            (Accepted, 200..=299) => self.out.push_back(Output::Transmit(wire)),
            _ => {}
        }
    }

    /// A retransmission of the INVITE arrived.
    pub fn handle_retransmission(&mut self) {
        use ServerInviteState::*;
        match self.state {
            Proceeding => {
                if let Some(p) = &self.last_provisional {
                    self.out.push_back(Output::Transmit(p.clone()));
                }
            }
            Completed => {
                if let Some(f) = &self.final_response {
                    self.out.push_back(Output::Transmit(f.clone()));
                }
            }
            Accepted | Confirmed | Terminated => {}
        }
    }

    /// An ACK matched this transaction. Returns false when the ACK is not the transaction's
    /// business (it acknowledges a 2xx) and belongs to the TU.
    pub fn handle_ack(&mut self, now: Instant) -> bool {
        match self.state {
            ServerInviteState::Completed => {
                self.state = ServerInviteState::Confirmed;
                self.timer_g = None;
                self.timer_h = None;
                if self.reliable {
                    self.terminate();
                } else {
                    self.timer_i = Some(Timer::after(now, self.cfg.t4));
                }
                true
            }
            ServerInviteState::Confirmed => true,
            _ => false,
        }
    }

    /// Call when [`ServerInvite::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if Timer::expired(&self.timer_h, now) && self.state == ServerInviteState::Completed {
            self.out.push_back(Output::Timeout);
            self.terminate();
            return;
        }
        if Timer::expired(&self.timer_g, now) && self.state == ServerInviteState::Completed {
            let interval = self.timer_g.map(|t| (t.interval * 2).min(self.cfg.t2)).unwrap_or(self.cfg.t1);
            self.timer_g = Some(Timer::after(now, interval));
            if let Some(f) = &self.final_response {
                self.out.push_back(Output::Transmit(f.clone()));
            }
        }
        if Timer::expired(&self.timer_i, now) || Timer::expired(&self.timer_l, now) {
            self.terminate();
        }
    }

    /// The transport could not send a response.
    pub fn handle_transport_error(&mut self) {
        if self.state != ServerInviteState::Terminated {
            self.out.push_back(Output::TransportError);
            self.terminate();
        }
    }

    fn terminate(&mut self) {
        if self.state != ServerInviteState::Terminated {
            self.state = ServerInviteState::Terminated;
            self.timer_g = None;
            self.timer_h = None;
            self.timer_i = None;
            self.timer_l = None;
            self.out.push_back(Output::Terminated);
        }
    }

    /// Next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`ServerInvite::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_g, self.timer_h, self.timer_i, self.timer_l])
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::test_support::*;
    use super::*;

    #[test]
    fn proceeding_retransmission_resends_last_provisional() {
        let now = Instant::now();
        let inv = request("INVITE");
        let mut t = ServerInvite::new(false, TimerConfig::default());
        t.handle_retransmission();
        assert!(drain(|| t.poll_output()).is_empty());
        t.respond(&response(&inv, 100), now);
        t.respond(&response(&inv, 180), now);
        drain(|| t.poll_output());
        t.handle_retransmission();
        let out = drain(|| t.poll_output());
        let Output::Transmit(b) = &out[0] else { panic!() };
        assert!(b.starts_with(b"SIP/2.0 180 Ringing"));
    }

    #[test]
    fn completed_timer_g_caps_at_t2_until_timer_h() {
        let start = Instant::now();
        let inv = request("INVITE");
        let mut t = ServerInvite::new(false, TimerConfig::default());
        t.respond(&response(&inv, 486), start);
        assert_eq!(kinds(&drain(|| t.poll_output())), ["transmit"]);
        let mut at = Vec::new();
        while let Some(d) = t.poll_timeout() {
            t.handle_timeout(d);
            let out = drain(|| t.poll_output());
            at.push((d - start).as_millis());
            if out.contains(&Output::Terminated) {
                assert_eq!(kinds(&out), ["timeout", "terminated"]);
                break;
            }
        }
        assert_eq!(at, [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500, 32000]);
    }

    #[test]
    fn completed_ack_confirms_then_timer_i() {
        let now = Instant::now();
        let inv = request("INVITE");
        let mut t = ServerInvite::new(false, TimerConfig::default());
        t.respond(&response(&inv, 404), now);
        drain(|| t.poll_output());
        t.handle_retransmission();
        assert_eq!(kinds(&drain(|| t.poll_output())), ["transmit"]);
        assert!(t.handle_ack(now + Duration::from_millis(100)));
        assert_eq!(t.state(), ServerInviteState::Confirmed);
        assert!(t.handle_ack(now + Duration::from_millis(200)));
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_millis(100) + Duration::from_secs(5)));
        t.handle_timeout(now + Duration::from_secs(6));
        assert_eq!(kinds(&drain(|| t.poll_output())), ["terminated"]);
    }

    #[test]
    fn completed_ack_over_reliable_terminates() {
        let now = Instant::now();
        let inv = request("INVITE");
        let mut t = ServerInvite::new(true, TimerConfig::default());
        t.respond(&response(&inv, 404), now);
        drain(|| t.poll_output());
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(32)));
        assert!(t.handle_ack(now));
        assert_eq!(kinds(&drain(|| t.poll_output())), ["terminated"]);
    }

    #[test]
    fn accepted_absorbs_invite_and_passes_2xx_retransmissions() {
        let now = Instant::now();
        let inv = request("INVITE");
        let mut t = ServerInvite::new(false, TimerConfig::default());
        t.respond(&response(&inv, 200), now);
        assert_eq!(kinds(&drain(|| t.poll_output())), ["transmit"]);
        assert_eq!(t.state(), ServerInviteState::Accepted);
        t.handle_retransmission();
        assert!(drain(|| t.poll_output()).is_empty());
        t.respond(&response(&inv, 200), now + Duration::from_millis(500));
        assert_eq!(kinds(&drain(|| t.poll_output())), ["transmit"]);
        // The ACK of a 2xx is the TU's.
        assert!(!t.handle_ack(now));
        t.handle_timeout(now + Duration::from_secs(32));
        assert_eq!(kinds(&drain(|| t.poll_output())), ["terminated"]);
    }
}
