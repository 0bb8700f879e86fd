//! Dialog state of one leg, and building the requests and responses the call sends.

use std::net::SocketAddr;

use sip::headers::NameAddr;
use sip::{HeaderName, Method, Request, Response, Uri};

use crate::flow::Flow;

/// One leg's dialog (RFC 3261 §12), from Switchboard's side.
#[derive(Clone, Debug)]
pub(crate) struct Dialog {
    pub(crate) call_id: String,
    pub(crate) local_tag: String,
    pub(crate) remote_tag: Option<String>,
    /// Our URI as it appears in From (requests we send) without tag.
    pub(crate) local_uri: String,
    /// The peer's URI as it appears in To (requests we send) without tag.
    pub(crate) remote_uri: String,
    /// Where requests go (the peer's Contact).
    pub(crate) remote_target: Uri,
    /// Route header values for requests we send, in order.
    pub(crate) route_set: Vec<String>,
    /// Our next CSeq number.
    pub(crate) local_cseq: u32,
    /// The highest CSeq number received from the peer.
    pub(crate) remote_cseq: Option<u32>,
    /// The path to the peer.
    pub(crate) flow: Flow,
}

impl Dialog {
    /// Next CSeq number for a new request (not for ACK or CANCEL).
    pub(crate) fn next_cseq(&mut self) -> u32 {
        self.local_cseq = self.local_cseq.wrapping_add(1);
        self.local_cseq
    }

    /// A request in this dialog (RFC 3261 §12.2.1.1).
    pub(crate) fn request(&self, method: Method, cseq: u32, branch: &str, user_agent: &str) -> Request {
        let mut r = Request::new(method.clone(), self.remote_target.clone());
        let h = &mut r.headers;
        h.push(HeaderName::Via, via(&self.flow, branch));
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, format!("{};tag={}", self.local_uri, self.local_tag));
        h.push(
            HeaderName::To,
            match &self.remote_tag {
                Some(t) => format!("{};tag={t}", self.remote_uri),
                None => self.remote_uri.clone(),
            },
        );
        h.push(HeaderName::CallId, self.call_id.clone());
        h.push(HeaderName::CSeq, format!("{cseq} {method}"));
        for route in &self.route_set {
            h.push(HeaderName::Route, route.clone());
        }
        if matches!(method, Method::Invite | Method::Update) {
            h.push(HeaderName::Contact, contact(&self.flow));
            h.push(HeaderName::Allow, crate::ALLOW);
        }
        if !user_agent.is_empty() {
            h.push(HeaderName::UserAgent, user_agent.to_owned());
        }
        r
    }
}

/// `host:port` with IPv6 brackets.
pub(crate) fn host_port(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// Our Via for a request on `flow`.
pub(crate) fn via(flow: &Flow, branch: &str) -> String {
    format!("SIP/2.0/{} {};rport;branch={branch}", flow.transport.via_token(), host_port(flow.local))
}

/// Our Contact on `flow`.
pub(crate) fn contact(flow: &Flow) -> String {
    match flow.transport {
        crate::flow::Transport::Udp => format!("<sip:{}>", host_port(flow.local)),
        t => format!("<sip:{};transport={}>", host_port(flow.local), t.uri_param()),
    }
}

/// A name-addr as text without its `tag` parameter.
pub(crate) fn without_tag(na: &NameAddr) -> String {
    let mut na = na.clone();
    na.params.remove("tag");
    na.to_string()
}

/// Adds what every response of ours to a dialog-creating or in-dialog request carries.
pub(crate) fn decorate_response(resp: &mut Response, req: &Request, flow: &Flow, server: &str) {
    let status = resp.status;
    if (101..300).contains(&status) {
        // Record-Route is echoed in responses that create or refresh the dialog (§12.1.1).
        for rr in req.headers.get_all(&HeaderName::RecordRoute) {
            resp.headers.push(HeaderName::RecordRoute, rr.clone());
        }
        if matches!(req.method, Method::Invite | Method::Update) {
            resp.headers.push(HeaderName::Contact, contact(flow));
        }
    }
    if (200..300).contains(&status) || status == 405 || status == 501 {
        resp.headers.push(HeaderName::Allow, crate::ALLOW);
        resp.headers.push(HeaderName::Supported, crate::SUPPORTED);
    }
    if !server.is_empty() {
        resp.headers.push(HeaderName::Server, server.to_owned());
    }
}
