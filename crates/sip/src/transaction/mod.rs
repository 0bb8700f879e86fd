//! The four transaction machines of RFC 3261 §17, with the corrections of RFC 6026 (the
//! INVITE "Accepted" states, timers L and M).
//!
//! Each machine is its own type ([`ClientInvite`], [`ClientNonInvite`], [`ServerInvite`],
//! [`ServerNonInvite`]): they have different states and timers, and one shared enum would
//! allow transitions that cannot happen. They are sans-IO: every input takes `now`, and the
//! owner drains [`Output`]s with `poll_output()` and sleeps until `poll_timeout()`, then calls
//! `handle_timeout(now)`. Tests drive them in virtual time.
//!
//! A transaction does not know addresses: [`Output::Transmit`] means "send these bytes to
//! this transaction's peer", which the owner remembers.

mod client_invite;
mod client_non_invite;
mod server_invite;
mod server_non_invite;

use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

pub use client_invite::{ClientInvite, ClientInviteState};
pub use client_non_invite::{ClientNonInvite, ClientNonInviteState};
pub use server_invite::{ServerInvite, ServerInviteState};
pub use server_non_invite::{ServerNonInvite, ServerNonInviteState};

use crate::header::HeaderName;
use crate::message::{Request, Response};
use crate::method::Method;
use crate::validate::{BRANCH_COOKIE, RequestInfo};

/// The timer base values of RFC 3261 §17.1.1.1 (Table 4 of Appendix A).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, 500 ms by default.
    pub t1: Duration,
    /// Maximum retransmission interval for non-INVITE requests and INVITE responses, 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network, 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> TimerConfig {
        TimerConfig { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) }
    }
}

impl TimerConfig {
    /// 64·T1: timers B, F, H, J, L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// Something a transaction asks its owner to do, or tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send (or resend) these bytes to the transaction's peer.
    Transmit(Bytes),
    /// A response for the transaction user (client transactions).
    Response(Response),
    /// No final response (timer B or F), or no ACK for a final response (timer H).
    Timeout,
    /// The transport failed to send.
    TransportError,
    /// The transaction is over; drop it.
    Terminated,
}

/// An armed timer: its deadline and the interval it was armed with (for doubling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timer {
    pub(crate) at: Instant,
    pub(crate) interval: Duration,
}

impl Timer {
    pub(crate) fn after(now: Instant, interval: Duration) -> Timer {
        Timer { at: now + interval, interval }
    }

    pub(crate) fn expired(t: &Option<Timer>, now: Instant) -> bool {
        t.is_some_and(|t| t.at <= now)
    }
}

/// The earliest deadline among armed timers.
pub(crate) fn earliest(timers: &[Option<Timer>]) -> Option<Instant> {
    timers.iter().flatten().map(|t| t.at).min()
}

/// The method part of a transaction key: ACK matches the INVITE transaction (§17.2.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyMethod {
    /// INVITE, and ACK for a non-2xx response.
    Invite,
    /// CANCEL (its own transaction, with the INVITE's branch).
    Cancel,
    /// Any other method.
    Other(Method),
}

impl KeyMethod {
    /// The key method for a request method.
    pub fn of(method: &Method) -> KeyMethod {
        match method {
            Method::Invite | Method::Ack => KeyMethod::Invite,
            Method::Cancel => KeyMethod::Cancel,
            m => KeyMethod::Other(m.clone()),
        }
    }
}

/// Identifies a server transaction (RFC 3261 §17.2.3), with the RFC 2543 fallback for
/// requests whose branch lacks the magic cookie.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ServerKey {
    /// Branch, sent-by and method.
    Rfc3261 {
        /// The top Via branch.
        branch: ByteString,
        /// The top Via sent-by (host and port, lower-cased).
        sent_by: String,
        /// The method class.
        method: KeyMethod,
    },
    /// RFC 2543 matching: Call-ID, From tag, CSeq number, top Via and method.
    Rfc2543 {
        /// Call-ID.
        call_id: ByteString,
        /// From tag, if any.
        from_tag: Option<String>,
        /// CSeq number.
        cseq: u32,
        /// The whole top Via, as text.
        via: String,
        /// The method class.
        method: KeyMethod,
    },
}

impl ServerKey {
    /// The key of a validated request.
    pub fn of(req: &Request, info: &RequestInfo) -> ServerKey {
        let method = KeyMethod::of(&req.method);
        match info.rfc3261_branch() {
            Some(branch) => {
                ServerKey::Rfc3261 { branch: ByteString::from(branch), sent_by: sent_by(&info.via), method }
            }
            None => ServerKey::Rfc2543 {
                call_id: info.call_id.clone(),
                from_tag: info.from.tag().map(str::to_owned),
                cseq: info.cseq.seq,
                via: sent_by(&info.via),
                method,
            },
        }
    }
}

fn sent_by(via: &crate::headers::Via) -> String {
    let host = via.host.to_lowercase_string();
    match via.port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

/// Identifies a client transaction (RFC 3261 §17.1.3): our branch and the CSeq method.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// The branch we generated.
    pub branch: ByteString,
    /// The method class (a CANCEL has the INVITE's branch but its own transaction).
    pub method: KeyMethod,
}

impl ClientKey {
    /// The key a response belongs to, from its top Via branch and CSeq method.
    pub fn of_response(resp: &Response) -> Option<ClientKey> {
        let via = resp.top_via()?.ok()?;
        let branch = via.branch()?;
        let cseq = resp.cseq()?.ok()?;
        Some(ClientKey { branch: ByteString::from(branch), method: KeyMethod::of(&cseq.method) })
    }
}

/// A fresh RFC 3261 branch: the magic cookie and `n` random-looking characters chosen by
/// the caller (Switchboard embeds the owning call's identifier).
pub fn branch_with(suffix: &str) -> String {
    format!("{BRANCH_COOKIE}{suffix}")
}

/// The ACK for a non-2xx final response, built by the INVITE client transaction as
/// RFC 3261 §17.1.1.3 says: Request-URI, Call-ID, From, CSeq number and the top Via of the
/// INVITE; To from the response; the INVITE's Route headers.
pub fn ack_for_non2xx(invite: &Request, response: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    if let Some(v) = invite.headers.get(&HeaderName::Via) {
        // Only the top Via value (a field may hold several).
        let top = crate::text::split_commas(v).next().unwrap_or("");
        ack.headers.push(HeaderName::Via, ByteString::from(top));
    }
    for name in [HeaderName::MaxForwards, HeaderName::From] {
        if let Some(v) = invite.headers.get(&name) {
            ack.headers.push(name, v.clone());
        }
    }
    if let Some(v) = response.headers.get(&HeaderName::To) {
        ack.headers.push(HeaderName::To, v.clone());
    }
    if let Some(v) = invite.headers.get(&HeaderName::CallId) {
        ack.headers.push(HeaderName::CallId, v.clone());
    }
    if let Some(Ok(cseq)) = invite.cseq() {
        ack.headers.push(HeaderName::CSeq, format!("{} ACK", cseq.seq));
    }
    for r in invite.headers.get_all(&HeaderName::Route) {
        ack.headers.push(HeaderName::Route, r.clone());
    }
    ack
}

/// The CANCEL for an INVITE (RFC 3261 §9.1): same Request-URI, Call-ID, To, From, CSeq
/// number, top Via (so the same branch) and Route.
pub fn cancel_for(invite: &Request) -> Request {
    let mut cancel = Request::new(Method::Cancel, invite.uri.clone());
    if let Some(v) = invite.headers.get(&HeaderName::Via) {
        let top = crate::text::split_commas(v).next().unwrap_or("");
        cancel.headers.push(HeaderName::Via, ByteString::from(top));
    }
    for name in [HeaderName::MaxForwards, HeaderName::From, HeaderName::To, HeaderName::CallId] {
        if let Some(v) = invite.headers.get(&name) {
            cancel.headers.push(name, v.clone());
        }
    }
    if let Some(Ok(cseq)) = invite.cseq() {
        cancel.headers.push(HeaderName::CSeq, format!("{} CANCEL", cseq.seq));
    }
    for r in invite.headers.get_all(&HeaderName::Route) {
        cancel.headers.push(HeaderName::Route, r.clone());
    }
    cancel
}

/// Encodes a message once for (re)transmission.
pub(crate) fn encode_request(req: &Request) -> Bytes {
    Bytes::from(req.to_bytes())
}

pub(crate) fn encode_response(resp: &Response) -> Bytes {
    Bytes::from(resp.to_bytes())
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::{Datagram, Limits, Message, parse_datagram};

    pub(crate) fn parse(s: &str) -> Message {
        match parse_datagram(Bytes::from(s.replace('\n', "\r\n")), &Limits::default()).unwrap() {
            Datagram::Message(m) => m,
            Datagram::KeepAlive => unreachable!(),
        }
    }

    pub(crate) fn request(method: &str) -> Request {
        let m = parse(&format!(
            "{method} sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\nMax-Forwards: 70\nFrom: <sip:alice@example.com>;tag=a1\nTo: <sip:bob@example.com>\nCall-ID: c1@example.com\nCSeq: 1 {method}\nRoute: <sip:proxy.example.com;lr>\nContent-Length: 0\n\n"
        ));
        match m {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }

    pub(crate) fn response(req: &Request, status: u16) -> Response {
        Response::to_request(req, status, None, Some("b1"))
    }

    /// Drains outputs.
    pub(crate) fn drain(f: impl FnMut() -> Option<Output>) -> Vec<Output> {
        std::iter::from_fn(f).collect()
    }

    pub(crate) fn kinds(out: &[Output]) -> Vec<&'static str> {
        out.iter()
            .map(|o| match o {
                Output::Transmit(_) => "transmit",
                Output::Response(_) => "response",
                Output::Timeout => "timeout",
                Output::TransportError => "transport-error",
                Output::Terminated => "terminated",
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn ack_for_non2xx_copies_the_right_headers() {
        let invite = request("INVITE");
        let resp = response(&invite, 486);
        let ack = ack_for_non2xx(&invite, &resp);
        let text = String::from_utf8(ack.to_bytes()).unwrap();
        assert!(text.starts_with("ACK sip:bob@example.com SIP/2.0\r\n"));
        assert!(text.contains("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n"));
        assert!(text.contains("To: <sip:bob@example.com>;tag=b1\r\n"));
        assert!(text.contains("CSeq: 1 ACK\r\n"));
        assert!(text.contains("Route: <sip:proxy.example.com;lr>\r\n"));
    }

    #[test]
    fn cancel_keeps_branch_and_cseq_number() {
        let invite = request("INVITE");
        let cancel = cancel_for(&invite);
        assert_eq!(cancel.top_via().unwrap().unwrap().branch(), Some("z9hG4bKabc"));
        assert_eq!(cancel.cseq().unwrap().unwrap().seq, 1);
        assert_eq!(cancel.cseq().unwrap().unwrap().method, Method::Cancel);
        // Its key differs from the INVITE's, and ACK matches the INVITE.
        let resp = response(&cancel, 200);
        let inv_resp = response(&invite, 180);
        assert_ne!(ClientKey::of_response(&resp), ClientKey::of_response(&inv_resp));
    }

    #[test]
    fn server_key_matches_ack_to_invite() {
        let invite = request("INVITE");
        let info = crate::validate_request(&invite).unwrap();
        let ack = ack_for_non2xx(&invite, &response(&invite, 486));
        let ack_info = crate::validate_request(&ack).unwrap();
        assert_eq!(ServerKey::of(&invite, &info), ServerKey::of(&ack, &ack_info));
        let opts = request("OPTIONS");
        let oinfo = crate::validate_request(&opts).unwrap();
        assert_ne!(ServerKey::of(&invite, &info), ServerKey::of(&opts, &oinfo));
    }
}
