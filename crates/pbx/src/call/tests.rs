//! The call in virtual time: a scripted caller (A) and callee phones (B), no sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sip::{Datagram, Limits, Message, Method, Request, Response, parse_datagram, validate_request, validate_response};

use super::*;
use crate::directory::{DtmfMode, SrtpPolicy, Tenant, User};
use crate::events::{CallEventKind, Disposition, Initiator};
use crate::flow::Transport;

const A_IP: &str = "192.168.1.10";
const A_SDP: &str = "v=0\r\no=alice 1 1 IN IP4 192.168.1.10\r\ns=-\r\nc=IN IP4 192.168.1.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
const B_SDP: &str = "v=0\r\no=bob 2 2 IN IP4 192.168.2.20\r\ns=-\r\nc=IN IP4 192.168.2.20\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

fn user(ext: &str, name: &str) -> User {
    User {
        id: ext.parse().unwrap(),
        tenant_id: 1,
        extension: ext.into(),
        display_name: name.into(),
        ha1_md5: String::new(),
        ha1_sha256: String::new(),
        srtp: Default::default(),
        dtmf: Default::default(),
    }
}

fn flow(remote: &str, transport: Transport) -> Flow {
    Flow { transport, local: "10.0.0.1:5060".parse().unwrap(), remote: remote.parse().unwrap(), connection: None }
}

fn parse(bytes: &[u8]) -> Message {
    match parse_datagram(Bytes::copy_from_slice(bytes), &Limits::default()).unwrap() {
        Datagram::Message(m) => m,
        Datagram::KeepAlive => panic!("keepalive"),
    }
}

fn req_of(m: &Message) -> &Request {
    match m {
        Message::Request(r) => r,
        Message::Response(r) => panic!("expected a request, got {} {}", r.status, r.reason),
    }
}

fn resp_of(m: &Message) -> &Response {
    match m {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, got {}", r.method),
    }
}

struct H {
    call: Call,
    now: Now,
    a_flow: Flow,
    b_flows: Vec<Flow>,
    sent: Vec<(Flow, Message)>,
    events: Vec<CallEventKind>,
    media: Vec<MediaCommand>,
}

fn invite_text(body: Option<&str>) -> String {
    let body = body.unwrap_or("");
    let ct = if body.is_empty() { String::new() } else { "Content-Type: application/sdp\r\n".to_owned() };
    format!(
        "INVITE sip:1002@acme.test SIP/2.0\r\nVia: SIP/2.0/UDP {A_IP}:5062;rport;branch=z9hG4bKa1\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:1001@acme.test>;tag=atag\r\nTo: <sip:1002@acme.test>\r\nCall-ID: acall@{A_IP}\r\nCSeq: 10 INVITE\r\nContact: <sip:1001@{A_IP}:5062>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

impl H {
    fn start(targets: usize) -> H {
        H::start_with(targets, Some(A_SDP))
    }

    fn start_with(targets: usize, offer: Option<&str>) -> H {
        H::start_srtp(targets, offer, [SrtpPolicy::Optional; 2])
    }

    /// A call whose caller and callee have these SRTP policies.
    fn start_srtp(targets: usize, offer: Option<&str>, srtp: [SrtpPolicy; 2]) -> H {
        H::start_users(targets, offer, srtp, [DtmfMode::Auto; 2])
    }

    /// A call whose caller and callee want DTMF this way.
    fn start_dtmf(dtmf: [DtmfMode; 2]) -> H {
        H::start_users(1, Some(A_SDP), [SrtpPolicy::Optional; 2], dtmf)
    }

    fn start_users(targets: usize, offer: Option<&str>, srtp: [SrtpPolicy; 2], dtmf: [DtmfMode; 2]) -> H {
        let caller = User { srtp: srtp[0], dtmf: dtmf[0], ..user("1001", "Alice") };
        let callee = Arc::new(User { srtp: srtp[1], dtmf: dtmf[1], ..user("1002", "Bob") });
        let tenant = Arc::new(Tenant::new(1, "acme", "acme.test", vec![caller.clone(), (*callee).clone()]));
        let invite = req_of(&parse(invite_text(offer).as_bytes())).clone();
        let info = validate_request(&invite).unwrap();
        let a_flow = flow(&format!("{A_IP}:5062"), Transport::Udp);
        let b_flows: Vec<Flow> =
            (0..targets).map(|i| flow(&format!("192.168.2.{}:5060", 20 + i), Transport::Udp)).collect();
        let targets = b_flows
            .iter()
            .map(|f| Binding {
                uri: sip::Uri::parse(&format!("sip:1002@{}", f.remote)).unwrap(),
                expires_at_ms: i64::MAX,
                q: None,
                call_id: "r".into(),
                cseq: 1,
                flow: *f,
                instance: None,
                reg_id: None,
                user_agent: None,
                registered_at_ms: 0,
            })
            .collect();
        let now = Now { instant: std::time::Instant::now(), unix_ms: 1_700_000_000_000 };
        let anchors = MediaAnchors {
            a: Anchor { ip: "10.0.0.1".parse().unwrap(), rtp_port: 30000 },
            b: Anchor { ip: "10.0.0.1".parse().unwrap(), rtp_port: 30002 },
        };
        let nc = NewCall {
            id: CallId(7),
            invite,
            info,
            flow: a_flow,
            caller: Authenticated::for_tests(tenant, Arc::new(caller)),
            callee,
            targets,
        };
        let call = Call::new(nc, anchors, CallConfig::default(), IdGen::new(3), now);
        let mut h = H { call, now, a_flow, b_flows, sent: Vec::new(), events: Vec::new(), media: Vec::new() };
        h.drain();
        h
    }

    /// Collects outputs; returns the messages sent since the last call.
    fn drain(&mut self) -> Vec<(Flow, Message)> {
        let mut new = Vec::new();
        while let Some(o) = self.call.poll_output() {
            match o {
                CallOutput::Send { flow, bytes, .. } => new.push((flow, parse(&bytes))),
                CallOutput::Media(m) => self.media.push(m),
                CallOutput::Event(e) => self.events.push(e.kind),
            }
        }
        self.sent.extend(new.iter().cloned());
        new
    }

    fn to(&self, remote: SocketAddr) -> Vec<&Message> {
        self.sent.iter().filter(|(f, _)| f.remote.ip() == remote.ip()).map(|(_, m)| m).collect()
    }

    fn last_to_a(&self) -> &Message {
        self.to(self.a_flow.remote).last().copied().expect("nothing sent to A")
    }

    fn invite_to_b(&self, i: usize) -> Request {
        self.to(self.b_flows[i].remote)
            .into_iter()
            .find_map(|m| match m {
                Message::Request(r) if r.method == Method::Invite => Some(r.clone()),
                _ => None,
            })
            .expect("no INVITE to B")
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now.plus(d);
        self.call.handle_timeout(self.now);
        self.drain();
    }

    /// Runs timers until `until`, jumping from deadline to deadline.
    fn run_until(&mut self, until: Duration) {
        let end = self.now.instant + until;
        let mut stuck = 0;
        while let Some(t) = self.call.poll_timeout() {
            if t > end {
                break;
            }
            // A deadline that handling does not move is a bug, not something to spin on.
            stuck = if t <= self.now.instant { stuck + 1 } else { 0 };
            assert!(stuck < 100, "timer stuck at a past deadline");
            let d = t.saturating_duration_since(self.now.instant);
            self.now = self.now.plus(d);
            self.call.handle_timeout(self.now);
            self.drain();
        }
    }

    fn b_responds(&mut self, i: usize, status: u16, sdp: Option<&str>) -> Response {
        let inv = self.invite_to_b(i);
        let mut r = Response::to_request(&inv, status, None, Some(&format!("btag{i}")));
        r.headers.push(sip::HeaderName::Contact, format!("<sip:1002@{}>", self.b_flows[i].remote));
        if let Some(s) = sdp {
            r.set_body("application/sdp", s.to_owned());
        }
        self.feed_response(r.clone());
        r
    }

    fn feed_response(&mut self, r: Response) {
        let r = resp_of(&parse(&r.to_bytes())).clone();
        let info = validate_response(&r).unwrap();
        self.call.handle_response(r, info, self.now);
        self.drain();
    }

    fn feed_request(&mut self, text: &str, from: Flow) {
        let r = req_of(&parse(text.as_bytes())).clone();
        let info = validate_request(&r).unwrap();
        self.call.handle_request(r, info, from, self.now);
        self.drain();
    }

    fn a_to_tag(&self) -> String {
        self.to(self.a_flow.remote)
            .into_iter()
            .filter_map(|m| match m {
                Message::Response(r) if r.status >= 180 => r.to_header().unwrap().ok()?.tag().map(str::to_owned),
                _ => None,
            })
            .next()
            .expect("no tag sent to A")
    }

    fn a_request(&self, method: &str, cseq: u32, branch: &str, extra: &str, body: &str) -> String {
        let ct = if body.is_empty() { String::new() } else { "Content-Type: application/sdp\r\n".to_owned() };
        format!(
            "{method} sip:10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {A_IP}:5062;rport;branch={branch}\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:1001@acme.test>;tag=atag\r\nTo: <sip:1002@acme.test>;tag={}\r\nCall-ID: acall@{A_IP}\r\nCSeq: {cseq} {method}\r\nContact: <sip:1001@{A_IP}:5062>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
            self.a_to_tag(),
            body.len()
        )
    }

    fn b_request(&self, i: usize, method: &str, cseq: u32, branch: &str, body: &str) -> String {
        let inv = self.invite_to_b(i);
        let call_id = inv.call_id().unwrap().to_string();
        let from_tag = inv.from_header().unwrap().unwrap().tag().unwrap().to_owned();
        let ct = if body.is_empty() { String::new() } else { "Content-Type: application/sdp\r\n".to_owned() };
        format!(
            "{method} sip:10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {}:5060;branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:1002@acme.test>;tag=btag{i}\r\nTo: <sip:1001@acme.test>;tag={from_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:1002@{}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            self.b_flows[i].remote.ip(),
            self.b_flows[i].remote,
            body.len()
        )
    }

    fn answer_and_ack(&mut self) {
        self.b_responds(0, 180, None);
        self.b_responds(0, 200, Some(B_SDP));
        let ack = self.a_request("ACK", 10, "z9hG4bKack1", "", "");
        self.feed_request(&ack, self.a_flow);
    }

    fn ended(&self) -> Option<(Disposition, Initiator, String)> {
        self.events.iter().find_map(|e| match e {
            CallEventKind::Ended { disposition, initiator, cause, .. } => {
                Some((*disposition, *initiator, cause.clone()))
            }
            _ => None,
        })
    }
}

fn status_of(m: &Message) -> u16 {
    resp_of(m).status
}

#[test]
fn routing_sends_100_and_forks_with_anchored_offer() {
    let h = H::start(2);
    assert_eq!(status_of(h.last_to_a()), 100);
    for i in 0..2 {
        let inv = h.invite_to_b(i);
        let text = String::from_utf8(inv.to_bytes()).unwrap();
        assert_eq!(inv.uri.to_string(), format!("sip:1002@{}", h.b_flows[i].remote));
        assert!(text.contains("m=audio 30002 RTP/AVP 0 101"), "{text}");
        assert!(text.contains("From: \"Alice\" <sip:1001@acme.test>;tag="));
        assert!(text.contains("Max-Forwards: 69\r\n"));
        // Nothing of leg A leaks to leg B.
        assert!(!text.contains(A_IP), "leaked A address: {text}");
        assert!(!text.contains("acall"), "leaked A Call-ID: {text}");
        assert!(!text.contains("atag"), "leaked A tag: {text}");
    }
    // Both forks share Call-ID and From tag, but not the branch.
    let (x, y) = (h.invite_to_b(0), h.invite_to_b(1));
    assert_eq!(x.call_id(), y.call_id());
    assert_ne!(x.top_via().unwrap().unwrap().branch(), y.top_via().unwrap().unwrap().branch());
    assert_eq!(
        h.media,
        [MediaCommand::SetPeer { side: Side::A, peer: sdp::audio_endpoint(A_SDP.as_bytes()).unwrap().unwrap() }]
    );
    assert!(matches!(h.events[0], CallEventKind::Created { .. }));
}

#[test]
fn answered_call_then_caller_hangs_up() {
    let mut h = H::start(1);
    h.b_responds(0, 180, None);
    assert_eq!(status_of(h.last_to_a()), 180);
    h.b_responds(0, 200, Some(B_SDP));
    // ACK to B, 200 to A with B's answer anchored on A's side.
    let acks: Vec<_> = h
        .to(h.b_flows[0].remote)
        .into_iter()
        .filter(|m| matches!(m, Message::Request(r) if r.method == Method::Ack))
        .collect();
    assert_eq!(acks.len(), 1);
    let ok = resp_of(h.last_to_a()).clone();
    assert_eq!(ok.status, 200);
    let text = String::from_utf8(ok.to_bytes()).unwrap();
    assert!(text.contains("m=audio 30000 RTP/AVP 0 101"));
    assert!(text.contains("Contact: <sip:10.0.0.1:5060>"));
    assert!(!text.contains("192.168.2.20"), "leaked B address: {text}");
    assert!(!text.contains("btag0"), "leaked B tag: {text}");
    assert!(h.media.contains(&MediaCommand::SetPeer {
        side: Side::B,
        peer: sdp::audio_endpoint(B_SDP.as_bytes()).unwrap().unwrap()
    }));
    let ack = h.a_request("ACK", 10, "z9hG4bKack1", "", "");
    h.feed_request(&ack, h.a_flow);
    assert!(h.call.is_answered());
    // No 2xx retransmission after the ACK.
    let before = h.sent.len();
    h.advance(Duration::from_secs(2));
    assert_eq!(h.sent.len(), before);

    let bye = h.a_request("BYE", 11, "z9hG4bKbye1", "", "");
    h.feed_request(&bye, h.a_flow);
    assert_eq!(status_of(h.last_to_a()), 200);
    let bye_b = h.to(h.b_flows[0].remote).into_iter().rev().find_map(|m| match m {
        Message::Request(r) if r.method == Method::Bye => Some(r.clone()),
        _ => None,
    });
    let bye_b = bye_b.expect("no BYE to B");
    assert_eq!(bye_b.uri.to_string(), format!("sip:1002@{}", h.b_flows[0].remote));
    assert_eq!(bye_b.to_header().unwrap().unwrap().tag(), Some("btag0"));
    h.feed_response(Response::to_request(&bye_b, 200, None, None));
    assert_eq!(h.ended(), Some((Disposition::Answered, Initiator::Caller, "BYE".into())));
    let kinds: Vec<&str> = h
        .events
        .iter()
        .map(|e| match e {
            CallEventKind::Created { .. } => "created",
            CallEventKind::Ringing => "ringing",
            CallEventKind::Answered => "answered",
            CallEventKind::Ended { .. } => "ended",
            CallEventKind::Quality { .. } | CallEventKind::QualityAlert { .. } => "quality",
            CallEventKind::Dtmf { .. } => "dtmf",
        })
        .collect();
    assert_eq!(kinds, ["created", "ringing", "answered", "ended"]);
    // Done once the server transaction for the BYE has ended (timer J on UDP).
    h.run_until(Duration::from_secs(40));
    assert!(h.call.is_finished());
}

#[test]
fn callee_hangs_up() {
    let mut h = H::start(1);
    h.answer_and_ack();
    let bye = h.b_request(0, "BYE", 2, "z9hG4bKbbye", "");
    h.feed_request(&bye, h.b_flows[0]);
    let to_b = h.to(h.b_flows[0].remote);
    assert_eq!(status_of(to_b.last().unwrap()), 200);
    let bye_a = h.to(h.a_flow.remote).into_iter().rev().find_map(|m| match m {
        Message::Request(r) if r.method == Method::Bye => Some(r.clone()),
        _ => None,
    });
    let bye_a = bye_a.expect("no BYE to A");
    assert_eq!(bye_a.uri.to_string(), format!("sip:1001@{A_IP}:5062"));
    assert_eq!(bye_a.call_id().unwrap().to_string(), format!("acall@{A_IP}"));
    assert_eq!(bye_a.to_header().unwrap().unwrap().tag(), Some("atag"));
    assert_eq!(h.ended(), Some((Disposition::Answered, Initiator::Callee, "BYE".into())));
}

#[test]
fn first_2xx_wins_and_other_forks_are_cancelled() {
    let mut h = H::start(2);
    h.b_responds(0, 180, None);
    h.b_responds(1, 180, None);
    h.b_responds(1, 200, Some(B_SDP));
    let cancel = h.to(h.b_flows[0].remote).into_iter().find_map(|m| match m {
        Message::Request(r) if r.method == Method::Cancel => Some(r.clone()),
        _ => None,
    });
    let cancel = cancel.expect("fork 0 not cancelled");
    assert_eq!(cancel.top_via().unwrap().unwrap().branch(), h.invite_to_b(0).top_via().unwrap().unwrap().branch());
    // Fork 0 answers 487; its transaction ACKs it.
    h.b_responds(0, 487, None);
    let acks = h
        .to(h.b_flows[0].remote)
        .into_iter()
        .filter(|m| matches!(m, Message::Request(r) if r.method == Method::Ack))
        .count();
    assert_eq!(acks, 1);
    assert_eq!(status_of(h.last_to_a()), 200);
}

#[test]
fn cancel_waits_for_a_provisional() {
    let mut h = H::start(2);
    h.b_responds(1, 200, Some(B_SDP));
    // Fork 0 never answered anything: no CANCEL yet (RFC 3261 §9.1)...
    assert!(!h.to(h.b_flows[0].remote).iter().any(|m| matches!(m, Message::Request(r) if r.method == Method::Cancel)));
    // ...until its 180 arrives.
    h.b_responds(0, 180, None);
    assert!(h.to(h.b_flows[0].remote).iter().any(|m| matches!(m, Message::Request(r) if r.method == Method::Cancel)));
}

#[test]
fn late_2xx_from_another_fork_is_acked_and_hung_up() {
    let mut h = H::start(2);
    h.b_responds(0, 200, Some(B_SDP));
    h.b_responds(1, 200, Some(B_SDP));
    let to_b1: Vec<_> = h
        .to(h.b_flows[1].remote)
        .into_iter()
        .filter_map(|m| match m {
            Message::Request(r) => Some(r.method.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(to_b1, [Method::Invite, Method::Ack, Method::Bye]);
}

#[test]
fn busy_callee_gives_486_to_caller() {
    let mut h = H::start(1);
    h.b_responds(0, 486, None);
    assert_eq!(status_of(h.last_to_a()), 486);
    assert_eq!(h.ended().map(|e| e.0), Some(Disposition::Busy));
    // The caller's ACK for the 486 is absorbed by the INVITE server transaction.
    let ack = h.a_request("ACK", 10, "z9hG4bKa1", "", "");
    let before = h.sent.len();
    h.feed_request(&ack, h.a_flow);
    assert_eq!(h.sent.len(), before);
    h.run_until(Duration::from_secs(40));
    assert!(h.call.is_finished());
}

#[test]
fn failures_are_merged_for_the_caller() {
    assert_eq!(best_failure(&[486, 408]), (486, Disposition::Busy));
    assert_eq!(best_failure(&[603, 486]), (603, Disposition::Failed));
    assert_eq!(best_failure(&[408, 503]), (480, Disposition::NoAnswer));
    assert_eq!(best_failure(&[401]), (480, Disposition::NoAnswer));
    assert_eq!(best_failure(&[487, 487]), (487, Disposition::Cancelled));
}

#[test]
fn caller_cancels_before_answer() {
    let mut h = H::start(1);
    h.b_responds(0, 180, None);
    let cancel = format!(
        "CANCEL sip:1002@acme.test SIP/2.0\r\nVia: SIP/2.0/UDP {A_IP}:5062;rport;branch=z9hG4bKa1\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:1001@acme.test>;tag=atag\r\nTo: <sip:1002@acme.test>\r\nCall-ID: acall@{A_IP}\r\nCSeq: 10 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    h.feed_request(&cancel, h.a_flow);
    let to_a: Vec<(u16, String)> = h
        .to(h.a_flow.remote)
        .into_iter()
        .map(|m| {
            let r = resp_of(m);
            (r.status, r.cseq().unwrap().unwrap().method.to_string())
        })
        .collect();
    assert!(to_a.contains(&(200, "CANCEL".into())), "{to_a:?}");
    assert!(to_a.contains(&(487, "INVITE".into())), "{to_a:?}");
    assert!(h.to(h.b_flows[0].remote).iter().any(|m| matches!(m, Message::Request(r) if r.method == Method::Cancel)));
    assert_eq!(h.ended().map(|e| (e.0, e.1)), Some((Disposition::Cancelled, Initiator::Caller)));
}

#[test]
fn cancel_for_an_unknown_transaction_is_481() {
    let mut h = H::start(1);
    let cancel = format!(
        "CANCEL sip:1002@acme.test SIP/2.0\r\nVia: SIP/2.0/UDP {A_IP}:5062;rport;branch=z9hG4bKother\r\nMax-Forwards: 70\r\nFrom: <sip:1001@acme.test>;tag=atag\r\nTo: <sip:1002@acme.test>\r\nCall-ID: acall@{A_IP}\r\nCSeq: 10 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    h.feed_request(&cancel, h.a_flow);
    assert_eq!(status_of(h.last_to_a()), 481);
}

#[test]
fn invite_retransmission_gets_last_provisional() {
    let mut h = H::start(1);
    h.b_responds(0, 180, None);
    let before = h.to(h.a_flow.remote).len();
    h.feed_request(&invite_text(Some(A_SDP)), h.a_flow);
    let to_a = h.to(h.a_flow.remote);
    assert_eq!(to_a.len(), before + 1);
    assert_eq!(status_of(to_a.last().unwrap()), 180);
    // Only one INVITE went to B.
    assert_eq!(h.to(h.b_flows[0].remote).len(), 1);
}

#[test]
fn merged_request_is_482() {
    let mut h = H::start(1);
    let merged = invite_text(Some(A_SDP)).replace("branch=z9hG4bKa1", "branch=z9hG4bKa2");
    h.feed_request(&merged, h.a_flow);
    assert_eq!(status_of(h.last_to_a()), 482);
}

#[test]
fn bye_for_another_dialog_is_481() {
    let mut h = H::start(1);
    h.answer_and_ack();
    let bye = h.a_request("BYE", 11, "z9hG4bKx", "", "").replace(&format!(";tag={}", h.a_to_tag()), ";tag=wrong");
    h.feed_request(&bye, h.a_flow);
    assert_eq!(status_of(h.last_to_a()), 481);
    assert!(h.call.is_answered());
}

#[test]
fn out_of_order_cseq_is_500() {
    let mut h = H::start(1);
    h.answer_and_ack();
    let info = h.a_request("INFO", 9, "z9hG4bKi", "", "");
    h.feed_request(&info, h.a_flow);
    assert_eq!(status_of(h.last_to_a()), 500);
}

#[test]
fn reinvite_hold_and_resume_are_relayed_with_sdp_rewritten() {
    let mut h = H::start(1);
    h.answer_and_ack();
    for (cseq, direction) in [(11, "sendonly"), (12, "sendrecv")] {
        let sdp = A_SDP
            .replace("m=audio 4000 RTP/AVP 0 101\r\n", &format!("m=audio 4000 RTP/AVP 0 101\r\na={direction}\r\n"));
        let branch = format!("z9hG4bKre{cseq}");
        let reinvite = h.a_request("INVITE", cseq, &branch, "", &sdp);
        h.feed_request(&reinvite, h.a_flow);
        assert_eq!(status_of(h.last_to_a()), 100);
        let to_b = h.to(h.b_flows[0].remote).into_iter().rev().find_map(|m| match m {
            Message::Request(r) if r.method == Method::Invite => Some(r.clone()),
            _ => None,
        });
        let to_b = to_b.unwrap();
        let text = String::from_utf8(to_b.to_bytes()).unwrap();
        assert!(text.contains(&format!("a={direction}")), "{text}");
        assert!(text.contains("m=audio 30002"), "{text}");
        assert!(!text.contains(A_IP));
        assert_eq!(to_b.to_header().unwrap().unwrap().tag(), Some("btag0"));
        // B answers; we ACK B and pass the answer to A.
        let b_answer = B_SDP.replace(
            "t=0 0\r\n",
            &format!("t=0 0\r\na={}\r\n", if direction == "sendonly" { "recvonly" } else { "sendrecv" }),
        );
        let mut ok = Response::to_request(&to_b, 200, None, None);
        ok.headers.push(sip::HeaderName::Contact, format!("<sip:1002@{}>", h.b_flows[0].remote));
        ok.set_body("application/sdp", b_answer);
        h.feed_response(ok);
        let last_b = req_of(h.to(h.b_flows[0].remote).last().unwrap()).clone();
        assert_eq!(last_b.method, Method::Ack);
        assert_eq!(last_b.cseq().unwrap().unwrap().seq, to_b.cseq().unwrap().unwrap().seq);
        let ok_a = resp_of(h.last_to_a()).clone();
        assert_eq!((ok_a.status, ok_a.cseq().unwrap().unwrap().seq), (200, cseq));
        assert!(String::from_utf8(ok_a.body.to_vec()).unwrap().contains("m=audio 30000"));
        let ack = h.a_request("ACK", cseq, &format!("z9hG4bKack{cseq}"), "", "");
        h.feed_request(&ack, h.a_flow);
    }
    // The origin version toward B went up twice (hold, resume).
    let versions: Vec<u64> = h
        .to(h.b_flows[0].remote)
        .into_iter()
        .filter_map(|m| match m {
            Message::Request(r) if r.method == Method::Invite => {
                let body = String::from_utf8(r.body.to_vec()).unwrap();
                body.lines().find(|l| l.starts_with("o="))?.split(' ').nth(2)?.parse().ok()
            }
            _ => None,
        })
        .collect();
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[1], versions[0] + 1);
    assert_eq!(versions[2], versions[1] + 1);
}

#[test]
fn glare_gets_491() {
    let mut h = H::start(1);
    h.answer_and_ack();
    let reinvite = h.a_request("INVITE", 11, "z9hG4bKre1", "", A_SDP);
    h.feed_request(&reinvite, h.a_flow);
    let from_b = h.b_request(0, "INVITE", 2, "z9hG4bKbre", B_SDP);
    h.feed_request(&from_b, h.b_flows[0]);
    assert_eq!(status_of(h.to(h.b_flows[0].remote).last().unwrap()), 491);
}

#[test]
fn info_is_relayed_with_its_body() {
    // The callee wants INFO: relayed as it came.
    let mut h = H::start_dtmf([DtmfMode::Auto, DtmfMode::Info]);
    h.answer_and_ack();
    let info = h.a_request("INFO", 11, "z9hG4bKinfo", "", "").replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\nSignal=5\r\nDuration=160\r\n",
    );
    h.feed_request(&info, h.a_flow);
    let to_b = req_of(h.to(h.b_flows[0].remote).last().unwrap()).clone();
    assert_eq!(to_b.method, Method::Info);
    assert_eq!(&to_b.body[..], b"Signal=5\r\nDuration=160\r\n");
    h.feed_response(Response::to_request(&to_b, 200, None, None));
    let r = resp_of(h.last_to_a());
    assert_eq!((r.status, r.cseq().unwrap().unwrap().method.clone()), (200, Method::Info));
    // The digit reached call control.
    assert!(h.events.iter().any(|e| matches!(
        e,
        CallEventKind::Dtmf {
            caller_leg: true,
            digit: '5',
            duration_ms: 160,
            method: crate::events::DtmfMethod::SipInfo
        }
    )));
}

#[test]
fn offer_gains_transcodable_codecs_and_a_common_codec_needs_no_transcoding() {
    let mut h = H::start(1);
    let text = String::from_utf8(h.invite_to_b(0).to_bytes()).unwrap();
    // The caller's codecs first, then those the relay can transcode to.
    assert!(text.contains("m=audio 30002 RTP/AVP 0 101 8 9 96 97\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:8 PCMA/8000\r\na=rtpmap:9 G722/8000\r\n"), "{text}");
    // Opus on a free dynamic type, with a 48 kHz telephone-event beside it.
    assert!(text.contains("a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:97 telephone-event/48000\r\na=fmtp:97 0-16\r\n"), "{text}");
    h.answer_and_ack();
    assert!(!h.media.iter().any(|m| matches!(m, MediaCommand::Transcode(_))), "{:?}", h.media);
}

#[test]
fn hold_plays_music_to_the_held_party_and_resume_stops_it() {
    let mut h = H::start(1);
    h.answer_and_ack();
    let moh = |h: &H| {
        h.media
            .iter()
            .filter_map(|m| match m {
                MediaCommand::MusicOnHold { side, on } => Some((*side, *on)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert!(moh(&h).is_empty());
    for (cseq, dir, expected) in
        [(11, "a=sendonly", vec![(Side::B, true)]), (12, "a=sendrecv", vec![(Side::B, true), (Side::B, false)])]
    {
        let sdp = format!("{A_SDP}{dir}\r\n");
        let reinvite = h.a_request("INVITE", cseq, &format!("z9hG4bKh{cseq}"), "", &sdp);
        h.feed_request(&reinvite, h.a_flow);
        let to_b = req_of(h.to(h.b_flows[0].remote).last().unwrap()).clone();
        let mut ok = Response::to_request(&to_b, 200, None, None);
        ok.set_body("application/sdp", B_SDP.replace("t=0 0\r\n", "t=0 0\r\na=recvonly\r\n"));
        h.feed_response(ok);
        let ack = h.a_request("ACK", cseq, &format!("z9hG4bKha{cseq}"), "", "");
        h.feed_request(&ack, h.a_flow);
        assert_eq!(moh(&h), expected);
    }
}

#[test]
fn rfc4733_digits_become_info_for_a_leg_without_telephone_events() {
    let mut h = H::start(1);
    h.b_responds(0, 180, None);
    let b_plain = B_SDP.replace("RTP/AVP 0 101", "RTP/AVP 0").replace("a=rtpmap:101 telephone-event/8000\r\n", "");
    h.b_responds(0, 200, Some(&b_plain));
    let ack = h.a_request("ACK", 10, "z9hG4bKack1", "", "");
    h.feed_request(&ack, h.a_flow);
    let before = h.to(h.b_flows[0].remote).len();
    let now = h.now;
    h.call.handle_media_dtmf(Side::A, '7', 120, false, now);
    h.drain();
    let sent = h.to(h.b_flows[0].remote);
    assert_eq!(sent.len(), before + 1);
    let info = req_of(sent.last().unwrap()).clone();
    assert_eq!(info.method, Method::Info);
    assert_eq!(&info.body[..], b"Signal=7\r\nDuration=120\r\n");
    assert!(h.events.iter().any(|e| matches!(e, CallEventKind::Dtmf { caller_leg: true, digit: '7', .. })));
    h.feed_response(Response::to_request(&info, 200, None, None));
    // Tones heard in band are not converted (the other leg hears them), nor digits toward a
    // leg that declared telephone-events.
    let now = h.now;
    h.call.handle_media_dtmf(Side::A, '8', 100, true, now);
    h.call.handle_media_dtmf(Side::B, '9', 100, false, now);
    h.drain();
    assert_eq!(h.to(h.b_flows[0].remote).len(), before + 1);
    assert!(!h.to(h.a_flow.remote).iter().any(|m| matches!(m, Message::Request(r) if r.method == Method::Info)));
}

#[test]
fn callee_choosing_another_codec_is_transcoded() {
    let mut h = H::start(1);
    h.b_responds(0, 180, None);
    let b_pcma = B_SDP
        .replace("RTP/AVP 0 101", "RTP/AVP 8 96")
        .replace("rtpmap:0 PCMU", "rtpmap:8 PCMA")
        .replace(":101 ", ":96 ");
    h.b_responds(0, 200, Some(&b_pcma));
    // The caller gets an answer in its own codec and event type.
    let ok = String::from_utf8(h.last_to_a().to_bytes()).unwrap();
    assert!(ok.contains("m=audio 30000 RTP/AVP 0 101\r\n"), "{ok}");
    assert!(ok.contains("a=rtpmap:0 PCMU/8000") && !ok.contains("PCMA"), "{ok}");
    let spec = h.media.iter().find_map(|m| match m {
        MediaCommand::Transcode(Some(spec)) => Some(spec.clone()),
        _ => None,
    });
    assert_eq!(
        spec,
        Some(TranscodeSpec {
            a: sdp::Format::new(0, "PCMU", 8000),
            b: sdp::Format::new(8, "PCMA", 8000),
            telephone_event: Some((101, 96)),
            ptime: (None, None),
        })
    );
    // A re-INVITE from the caller offering only PCMU, answered PCMU: transcoding stops.
    let ack = h.a_request("ACK", 10, "z9hG4bKack1", "", "");
    h.feed_request(&ack, h.a_flow);
    let reinvite = h.a_request("INVITE", 11, "z9hG4bKre1", "", A_SDP);
    h.feed_request(&reinvite, h.a_flow);
    let to_b = req_of(h.to(h.b_flows[0].remote).last().unwrap()).clone();
    let mut ok = Response::to_request(&to_b, 200, None, None);
    ok.set_body("application/sdp", B_SDP.to_owned());
    h.feed_response(ok);
    assert_eq!(h.media.iter().filter(|m| matches!(m, MediaCommand::Transcode(None))).count(), 1, "{:?}", h.media);
}

#[test]
fn ok_is_retransmitted_until_ack_then_call_ends_without_it() {
    let mut h = H::start(1);
    h.b_responds(0, 200, Some(B_SDP));
    let count_200 = |h: &H| {
        h.to(h.a_flow.remote).into_iter().filter(|m| matches!(m, Message::Response(r) if r.status == 200)).count()
    };
    assert_eq!(count_200(&h), 1);
    h.run_until(Duration::from_millis(3600));
    // T1 doubling: 0.5, 1.5, 3.5 s.
    assert_eq!(count_200(&h), 4);
    h.run_until(Duration::from_secs(40));
    assert_eq!(h.ended().map(|e| e.2), Some("no ACK".into()));
    assert!(h.to(h.b_flows[0].remote).iter().any(|m| matches!(m, Message::Request(r) if r.method == Method::Bye)));
    assert!(h.to(h.a_flow.remote).iter().any(|m| matches!(m, Message::Request(r) if r.method == Method::Bye)));
}

#[test]
fn ring_timeout_gives_480_and_cancels() {
    let mut h = H::start(1);
    h.b_responds(0, 180, None);
    h.run_until(Duration::from_secs(121));
    assert!(h.to(h.a_flow.remote).iter().any(|m| matches!(m, Message::Response(r) if r.status == 480)));
    assert!(h.to(h.b_flows[0].remote).iter().any(|m| matches!(m, Message::Request(r) if r.method == Method::Cancel)));
    assert_eq!(h.ended().map(|e| (e.0, e.1)), Some((Disposition::NoAnswer, Initiator::System)));
}

#[test]
fn unreachable_callee_times_out_with_timer_b() {
    let mut h = H::start(1);
    h.run_until(Duration::from_secs(33));
    // INVITE retransmitted with timer A, then timer B: the caller gets 480.
    let invites = h.to(h.b_flows[0].remote).len();
    assert_eq!(invites, 7);
    assert!(h.to(h.a_flow.remote).iter().any(|m| matches!(m, Message::Response(r) if r.status == 480)));
}

#[test]
fn media_timeout_hangs_up_both_legs() {
    let mut h = H::start(1);
    h.answer_and_ack();
    h.call.handle_media_timeout(h.now);
    h.drain();
    assert!(h.to(h.a_flow.remote).iter().any(|m| matches!(m, Message::Request(r) if r.method == Method::Bye)));
    assert!(h.to(h.b_flows[0].remote).iter().any(|m| matches!(m, Message::Request(r) if r.method == Method::Bye)));
    assert_eq!(h.ended().map(|e| (e.1, e.2)), Some((Initiator::System, "media timeout".into())));
}

#[test]
fn shutdown_before_answer_is_503_and_cancel() {
    let mut h = H::start(1);
    h.b_responds(0, 180, None);
    h.call.shutdown(h.now);
    h.drain();
    assert_eq!(status_of(h.last_to_a()), 503);
    assert!(h.to(h.b_flows[0].remote).iter().any(|m| matches!(m, Message::Request(r) if r.method == Method::Cancel)));
}

#[test]
fn late_offer_goes_through_2xx_and_ack() {
    let mut h = H::start_with(1, None);
    let inv = h.invite_to_b(0);
    assert!(inv.body.is_empty());
    h.b_responds(0, 200, Some(B_SDP));
    // No ACK to B yet: it waits for the caller's answer.
    assert!(!h.to(h.b_flows[0].remote).iter().any(|m| matches!(m, Message::Request(r) if r.method == Method::Ack)));
    let ok = resp_of(h.last_to_a()).clone();
    assert!(String::from_utf8(ok.body.to_vec()).unwrap().contains("m=audio 30000"));
    let ack = h.a_request("ACK", 10, "z9hG4bKack1", "", A_SDP);
    h.feed_request(&ack, h.a_flow);
    let ack_b = req_of(h.to(h.b_flows[0].remote).last().unwrap()).clone();
    assert_eq!(ack_b.method, Method::Ack);
    assert!(String::from_utf8(ack_b.body.to_vec()).unwrap().contains("m=audio 30002"));
}

#[test]
fn unusable_offer_is_488() {
    let h = H::start_with(1, Some("v=0\r\nthis is not sdp\r\n"));
    assert_eq!(status_of(h.last_to_a()), 488);
    assert!(h.to(h.b_flows[0].remote).is_empty());
}

#[test]
fn tcp_caller_gets_responses_on_its_connection() {
    let mut h = H::start(1);
    // Same call, but check the flow responses go to: A's UDP source with rport.
    h.b_responds(0, 180, None);
    let (f, _) = h.sent.iter().rev().find(|(f, _)| f.remote.ip() == h.a_flow.remote.ip()).unwrap();
    assert_eq!(f.remote, h.a_flow.remote);
    assert_eq!(f.transport, Transport::Udp);
}

// ----- SRTP -----

fn secure_offer(sdp: &str, lines: &[String]) -> String {
    let crypto: String = lines.iter().map(|l| format!("a=crypto:{l}\r\n")).collect();
    sdp.replace("RTP/AVP", "RTP/SAVP") + &crypto
}

fn crypto_line(tag: u32, suite: srtp::Suite) -> String {
    srtp::CryptoAttribute::generate(tag, suite).unwrap().to_string()
}

fn security(m: &Message) -> sdp::MediaSecurity {
    let body = match m {
        Message::Request(r) => &r.body,
        Message::Response(r) => &r.body,
    };
    sdp::media_security(body).unwrap()
}

fn srtp_commands(h: &H) -> Vec<(Side, Option<SrtpKeys>)> {
    h.media
        .iter()
        .filter_map(|m| match m {
            MediaCommand::Srtp { side, keys } => Some((*side, keys.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn encrypted_caller_and_plain_callee_are_keyed_separately() {
    let theirs = crypto_line(1, srtp::Suite::AesCm128HmacSha1_80);
    let offer = secure_offer(A_SDP, std::slice::from_ref(&theirs));
    let mut h = H::start_with(1, Some(&offer));
    // The callee (policy optional) is offered plain RTP, without the caller's key.
    let to_b = h.invite_to_b(0);
    let b_sec = security(&Message::Request(to_b.clone()));
    assert_eq!((b_sec.protocol.as_str(), b_sec.crypto.len()), ("RTP/AVP", 0));
    assert!(!String::from_utf8_lossy(&to_b.body).contains("inline:"));
    h.answer_and_ack();
    let ok = h.to(h.a_flow.remote).into_iter().find(|m| matches!(m, Message::Response(r) if r.status == 200)).unwrap();
    let a_sec = security(ok);
    assert_eq!(a_sec.protocol, "RTP/SAVP");
    let ours = srtp::CryptoAttribute::parse(&a_sec.crypto[0]).unwrap();
    let theirs = srtp::CryptoAttribute::parse(&theirs).unwrap();
    assert_eq!((ours.tag, ours.suite()), (1, srtp::Suite::AesCm128HmacSha1_80));
    assert_ne!(ours.key, theirs.key);
    let commands = srtp_commands(&h);
    assert_eq!(commands, vec![(Side::A, Some(SrtpKeys { inbound: theirs.key, outbound: ours.key }))]);
    assert_eq!(h.call.srtp_suites(), [Some("AES_CM_128_HMAC_SHA1_80"), None]);
}

#[test]
fn encrypted_offer_from_a_user_without_srtp_is_488() {
    let offer = secure_offer(A_SDP, &[crypto_line(1, srtp::Suite::AesCm128HmacSha1_80)]);
    let h = H::start_srtp(1, Some(&offer), [SrtpPolicy::Off, SrtpPolicy::Optional]);
    assert_eq!(status_of(h.last_to_a()), 488);
    assert!(h.to(h.b_flows[0].remote).is_empty(), "never passed on in clear");
    assert!(h.ended().unwrap().2.contains("not allowed"));
    // Keys nobody can use are refused the same way, whatever the policy.
    let unusable = secure_offer(A_SDP, &["1 F8_128_HMAC_SHA1_80 inline:AAAA".to_owned()]);
    let h = H::start_srtp(1, Some(&unusable), [SrtpPolicy::Required, SrtpPolicy::Optional]);
    assert_eq!(status_of(h.last_to_a()), 488);
    assert!(h.to(h.b_flows[0].remote).is_empty());
}

#[test]
fn plain_offer_from_a_user_who_must_encrypt_is_488() {
    let h = H::start_srtp(1, Some(A_SDP), [SrtpPolicy::Required, SrtpPolicy::Optional]);
    assert_eq!(status_of(h.last_to_a()), 488);
    assert!(h.to(h.b_flows[0].remote).is_empty());
}

#[test]
fn callee_who_must_encrypt_is_offered_srtp_and_a_plain_answer_fails_the_call() {
    let mut h = H::start_srtp(1, Some(A_SDP), [SrtpPolicy::Optional, SrtpPolicy::Required]);
    let offered = security(&Message::Request(h.invite_to_b(0)));
    assert_eq!((offered.protocol.as_str(), offered.crypto.len()), ("RTP/SAVP", 3));
    // Answering in clear is not accepted: the callee is hung up, the caller refused.
    h.b_responds(0, 200, Some(B_SDP));
    assert_eq!(status_of(h.last_to_a()), 488);
    let to_b: Vec<&Message> = h.to(h.b_flows[0].remote);
    assert!(to_b.iter().any(|m| matches!(m, Message::Request(r) if r.method == Method::Ack)));
    assert!(to_b.iter().any(|m| matches!(m, Message::Request(r) if r.method == Method::Bye)));
    assert!(srtp_commands(&h).is_empty());

    // Answering with one of the offered keys connects, the caller in clear.
    let mut h = H::start_srtp(1, Some(A_SDP), [SrtpPolicy::Optional, SrtpPolicy::Required]);
    let offered = security(&Message::Request(h.invite_to_b(0)));
    let ours = srtp::CryptoAttribute::parse(&offered.crypto[1]).unwrap();
    let theirs = crypto_line(ours.tag, ours.suite());
    h.b_responds(0, 200, Some(&secure_offer(B_SDP, std::slice::from_ref(&theirs))));
    let ok = h.last_to_a();
    assert_eq!(status_of(ok), 200);
    assert_eq!(security(ok), sdp::MediaSecurity { protocol: "RTP/AVP".to_owned(), crypto: vec![] });
    let inbound = srtp::CryptoAttribute::parse(&theirs).unwrap().key;
    assert_eq!(srtp_commands(&h), vec![(Side::B, Some(SrtpKeys { inbound, outbound: ours.key }))]);
}

#[test]
fn callee_choosing_opus_is_transcoded_with_events_at_each_clock() {
    let mut h = H::start(1);
    let b_opus = "v=0\r\no=bob 2 2 IN IP4 192.168.2.20\r\ns=-\r\nc=IN IP4 192.168.2.20\r\nt=0 0\r\nm=audio 5000 RTP/AVP 96 97\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1;usedtx=1\r\na=rtpmap:97 telephone-event/48000\r\na=ptime:40\r\n";
    h.b_responds(0, 200, Some(b_opus));
    let ok = String::from_utf8(h.last_to_a().to_bytes()).unwrap();
    assert!(ok.contains("m=audio 30000 RTP/AVP 0 101\r\n"), "{ok}");
    let spec = h.media.iter().find_map(|m| match m {
        MediaCommand::Transcode(Some(spec)) => Some(spec.clone()),
        _ => None,
    });
    let opus = sdp::Format {
        channels: Some(2),
        fmtp: Some("useinbandfec=1;usedtx=1".into()),
        ..sdp::Format::new(96, "opus", 48000)
    };
    assert_eq!(
        spec,
        Some(TranscodeSpec {
            a: sdp::Format::new(0, "PCMU", 8000),
            b: opus,
            telephone_event: Some((101, 97)),
            ptime: (None, Some(40)),
        })
    );
}

/// A digit the relay is asked to send: leg, digit, duration, telephone-event type (or tones).
type SentDigit = (Side, char, u32, Option<(u8, u32)>);

fn dtmf_commands(h: &H) -> Vec<SentDigit> {
    h.media
        .iter()
        .filter_map(|m| match m {
            MediaCommand::SendDtmf { side, digit, duration_ms, telephone_event } => {
                Some((*side, *digit, *duration_ms, *telephone_event))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn info_digit_becomes_rfc4733_for_a_leg_with_telephone_events() {
    let mut h = H::start(1);
    h.answer_and_ack();
    let before = h.to(h.b_flows[0].remote).len();
    let info = h.a_request("INFO", 11, "z9hG4bKinfo", "", "").replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\nSignal=5\r\nDuration=160\r\n",
    );
    h.feed_request(&info, h.a_flow);
    // Answered here, not relayed; the relay sends events of the type B declared.
    assert_eq!(h.to(h.b_flows[0].remote).len(), before);
    let r = resp_of(h.last_to_a());
    assert_eq!((r.status, r.cseq().unwrap().unwrap().method.clone()), (200, Method::Info));
    assert_eq!(dtmf_commands(&h), vec![(Side::B, '5', 160, Some((101, 8000)))]);
}

#[test]
fn digits_are_converted_to_what_each_user_wants() {
    // The callee wants tones: RFC 4733 and INFO digits from the caller become tones.
    let mut h = H::start_dtmf([DtmfMode::Auto, DtmfMode::InBand]);
    h.answer_and_ack();
    let now = h.now;
    h.call.handle_media_dtmf(Side::A, '1', 100, false, now);
    h.call.handle_media_dtmf(Side::A, '2', 100, true, now); // tones already: they pass as audio
    h.drain();
    assert_eq!(dtmf_commands(&h), vec![(Side::B, '1', 100, None)]);
    // The caller wants INFO although its SDP declared events: the callee's RFC 4733 and in-band
    // digits reach it as INFO.
    let mut h = H::start_dtmf([DtmfMode::Info, DtmfMode::Auto]);
    h.answer_and_ack();
    let now = h.now;
    h.call.handle_media_dtmf(Side::B, '3', 100, false, now);
    h.call.handle_media_dtmf(Side::B, '4', 100, true, now);
    h.drain();
    let infos: Vec<Vec<u8>> = h
        .to(h.a_flow.remote)
        .into_iter()
        .filter_map(|m| match m {
            Message::Request(r) if r.method == Method::Info => Some(r.body.to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(infos, vec![b"Signal=3\r\nDuration=100\r\n".to_vec(), b"Signal=4\r\nDuration=100\r\n".to_vec()]);
    assert!(dtmf_commands(&h).is_empty());
    // A caller who wants RFC 4733 gets the callee's tones as events; in auto mode, between two
    // legs with events, nothing is converted.
    let mut h = H::start_dtmf([DtmfMode::Rfc4733, DtmfMode::Auto]);
    h.answer_and_ack();
    let now = h.now;
    h.call.handle_media_dtmf(Side::B, '#', 90, true, now);
    h.call.handle_media_dtmf(Side::A, '6', 90, false, now);
    h.drain();
    assert_eq!(dtmf_commands(&h), vec![(Side::A, '#', 90, Some((101, 8000)))]);
}
