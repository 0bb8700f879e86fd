//! The non-INVITE client transaction (RFC 3261 §17.1.2).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::{Output, Timer, TimerConfig, earliest, encode_request};
use crate::message::{Request, Response};

/// States of the non-INVITE client transaction.
///
/// ```text
///                    |Request from TU
///                    |send request
///  Timer E           V
///  send request +-----------+
///      +--------|           |-------+
///      |        |  Trying   |       | Timer F or Transport Err.
///      +------->|           |       | inform TU
///               +-----------+       |
///  200-699         |  |             |
///  resp. to TU     |  |1xx          |
///  +---------------+  |resp. to TU  |
///  |                  |             |
///  |   Timer E        V             |
///  |   send req +-----------+       |
///  |   +--------|           |-------+
///  |   |        | Proceeding|       |
///  |   +------->|           |       |
///  |            +-----------+       |
///  |  200-699      |                |
///  |  resp. to TU  |                |
///  |  +------------+                |
///  V  V                             |
/// +-----------+                     |
/// | Completed | Timer K             |
/// +-----------+---------+           |
///                       V           |
///                 +-----------+     |
///                 | Terminated|<----+
///                 +-----------+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientNonInviteState {
    /// Request sent, nothing heard.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived; absorbing retransmissions (timer K).
    Completed,
    /// Over.
    Terminated,
}

/// The non-INVITE client transaction (BYE, CANCEL, OPTIONS, REGISTER...).
#[derive(Debug)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    request: Request,
    wire: Bytes,
    reliable: bool,
    cfg: TimerConfig,
    timer_e: Option<Timer>,
    timer_f: Option<Timer>,
    timer_k: Option<Timer>,
    out: VecDeque<Output>,
}

impl ClientNonInvite {
    /// Starts the transaction: the request is sent at once.
    pub fn new(request: Request, reliable: bool, cfg: TimerConfig, now: Instant) -> ClientNonInvite {
        let wire = encode_request(&request);
        let mut out = VecDeque::with_capacity(4);
        out.push_back(Output::Transmit(wire.clone()));
        ClientNonInvite {
            state: ClientNonInviteState::Trying,
            request,
            wire,
            reliable,
            cfg,
            timer_e: (!reliable).then(|| Timer::after(now, cfg.t1)),
            timer_f: Some(Timer::after(now, cfg.t1x64())),
            timer_k: None,
            out,
        }
    }

    /// Current state.
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    /// The request this transaction sends.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// A response matched to this transaction arrived.
    pub fn handle_response(&mut self, resp: Response, now: Instant) {
        use ClientNonInviteState::*;
        match (self.state, resp.status) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.out.push_back(Output::Response(resp));
            }
            (Trying | Proceeding, _) => {
                self.state = Completed;
                self.timer_e = None;
                self.timer_f = None;
                self.out.push_back(Output::Response(resp));
                if self.reliable {
                    self.terminate();
                } else {
                    self.timer_k = Some(Timer::after(now, self.cfg.t4));
                }
            }
            _ => {}
        }
    }

    /// Call when [`ClientNonInvite::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        use ClientNonInviteState::*;
        if Timer::expired(&self.timer_f, now) && matches!(self.state, Trying | Proceeding) {
            self.out.push_back(Output::Timeout);
            self.terminate();
            return;
        }
        if Timer::expired(&self.timer_e, now) && matches!(self.state, Trying | Proceeding) {
            // Trying: double up to T2. Proceeding: every T2 (§17.1.2.2).
            let interval = match (self.state, self.timer_e) {
                (Trying, Some(t)) => (t.interval * 2).min(self.cfg.t2),
                _ => self.cfg.t2,
            };
            self.timer_e = Some(Timer::after(now, interval));
            self.out.push_back(Output::Transmit(self.wire.clone()));
        }
        if Timer::expired(&self.timer_k, now) {
            self.terminate();
        }
    }

    /// The transport could not send the request.
    pub fn handle_transport_error(&mut self) {
        if matches!(self.state, ClientNonInviteState::Trying | ClientNonInviteState::Proceeding) {
            self.out.push_back(Output::TransportError);
            self.terminate();
        }
    }

    fn terminate(&mut self) {
        if self.state != ClientNonInviteState::Terminated {
            self.state = ClientNonInviteState::Terminated;
            self.timer_e = None;
            self.timer_f = None;
            self.timer_k = None;
            self.out.push_back(Output::Terminated);
        }
    }

    /// Next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`ClientNonInvite::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_e, self.timer_f, self.timer_k])
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::test_support::*;
    use super::*;

    fn run_to_end(
        t: &mut ClientNonInvite,
        start: Instant,
        stop_at: Option<Duration>,
    ) -> Vec<(u128, Vec<&'static str>)> {
        let mut log = Vec::new();
        while let Some(at) = t.poll_timeout() {
            if stop_at.is_some_and(|s| at - start >= s) {
                break;
            }
            t.handle_timeout(at);
            let out = drain(|| t.poll_output());
            let done = out.contains(&Output::Terminated);
            log.push(((at - start).as_millis(), kinds(&out)));
            if done {
                break;
            }
        }
        log
    }

    #[test]
    fn trying_timer_e_caps_at_t2_and_timer_f_fires_at_64_t1() {
        let start = Instant::now();
        let mut t = ClientNonInvite::new(request("OPTIONS"), false, TimerConfig::default(), start);
        drain(|| t.poll_output());
        let log = run_to_end(&mut t, start, None);
        let at: Vec<u128> = log.iter().map(|(t, _)| *t).collect();
        assert_eq!(at, [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500, 32000]);
        assert_eq!(log.last().unwrap().1, ["timeout", "terminated"]);
    }

    #[test]
    fn proceeding_retransmits_every_t2() {
        let start = Instant::now();
        let mut t = ClientNonInvite::new(request("BYE"), false, TimerConfig::default(), start);
        drain(|| t.poll_output());
        t.handle_timeout(start + Duration::from_millis(500));
        drain(|| t.poll_output());
        t.handle_response(response(t.request(), 100), start + Duration::from_millis(600));
        assert_eq!(kinds(&drain(|| t.poll_output())), ["response"]);
        // Next retransmission still at 1500 (armed before), then every 4 s.
        let log = run_to_end(&mut t, start, Some(Duration::from_secs(10)));
        let at: Vec<u128> = log.iter().map(|(t, _)| *t).collect();
        assert_eq!(at, [1500, 5500, 9500]);
    }

    #[test]
    fn completed_absorbs_and_timer_k_ends_it() {
        let start = Instant::now();
        let mut t = ClientNonInvite::new(request("BYE"), false, TimerConfig::default(), start);
        drain(|| t.poll_output());
        let req = t.request().clone();
        t.handle_response(response(&req, 200), start);
        assert_eq!(kinds(&drain(|| t.poll_output())), ["response"]);
        t.handle_response(response(&req, 200), start + Duration::from_millis(10));
        assert!(drain(|| t.poll_output()).is_empty());
        assert_eq!(t.poll_timeout(), Some(start + Duration::from_secs(5)));
        t.handle_timeout(start + Duration::from_secs(5));
        assert_eq!(kinds(&drain(|| t.poll_output())), ["terminated"]);
    }

    #[test]
    fn trying_final_over_reliable_terminates_at_once() {
        let start = Instant::now();
        let mut t = ClientNonInvite::new(request("BYE"), true, TimerConfig::default(), start);
        drain(|| t.poll_output());
        assert_eq!(t.poll_timeout(), Some(start + Duration::from_secs(32)));
        let req = t.request().clone();
        t.handle_response(response(&req, 481), start);
        assert_eq!(kinds(&drain(|| t.poll_output())), ["response", "terminated"]);
    }

    #[test]
    fn custom_t1_scales_timer_f() {
        let start = Instant::now();
        let cfg = TimerConfig { t1: Duration::from_millis(100), ..TimerConfig::default() };
        let mut t = ClientNonInvite::new(request("OPTIONS"), true, cfg, start);
        drain(|| t.poll_output());
        assert_eq!(t.poll_timeout(), Some(start + Duration::from_millis(6400)));
    }
}
