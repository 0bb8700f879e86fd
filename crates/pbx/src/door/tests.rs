//! The door in virtual time.

use std::time::Duration;

use bytes::Bytes;
use sip::auth::{Algorithm, parse_challenge, respond};
use sip::{Datagram, Limits, Message, parse_datagram, validate_request};

use super::*;
use crate::auth::AuthConfig;
use crate::directory::User;
use crate::flow::Transport;

fn user(tenant_id: i64, ext: &str, realm: &str, pw: &str) -> User {
    User {
        id: ext.parse::<i64>().unwrap() + tenant_id * 10_000,
        tenant_id,
        extension: ext.into(),
        display_name: format!("User {ext}"),
        ha1_md5: Algorithm::Md5.ha1(ext, realm, pw),
        ha1_sha256: Algorithm::Sha256.ha1(ext, realm, pw),
        srtp: Default::default(),
        dtmf: Default::default(),
    }
}

struct T {
    door: Door,
    location: Arc<Location>,
    now: Now,
    flow: Flow,
    nc: u32,
}

fn setup() -> T {
    let acme = Tenant::new(
        1,
        "acme",
        "acme.test",
        vec![user(1, "1001", "acme.test", "pw1001"), user(1, "1002", "acme.test", "pw1002")],
    );
    let beta = Tenant::new(2, "beta", "beta.test", vec![user(2, "1001", "beta.test", "other")]);
    let dir = Arc::new(Directory::new(vec![acme, beta]));
    let location = Arc::new(Location::default());
    let auth = Arc::new(Authenticator::new(
        AuthConfig { algorithms: vec![Algorithm::Md5, Algorithm::Sha256], ..AuthConfig::default() },
        [9; 32],
    ));
    let door = Door::new(1, DoorConfig::default(), dir, auth, location.clone(), IdGen::new(5));
    let flow = Flow {
        transport: Transport::Udp,
        local: "10.0.0.1:5060".parse().unwrap(),
        remote: "192.168.1.10:5062".parse().unwrap(),
        connection: None,
    };
    T { door, location, now: Now { instant: Instant::now(), unix_ms: 1_700_000_000_000 }, flow, nc: 0 }
}

fn parse(bytes: &[u8]) -> Message {
    match parse_datagram(Bytes::copy_from_slice(bytes), &Limits::default()).unwrap() {
        Datagram::Message(m) => m,
        Datagram::KeepAlive => panic!(),
    }
}

impl T {
    fn feed(&mut self, text: &str) -> Vec<DoorOutput> {
        let Message::Request(r) = parse(text.as_bytes()) else { panic!() };
        let info = validate_request(&r).unwrap();
        self.door.handle_request(r, info, self.flow, self.now);
        std::iter::from_fn(|| self.door.poll_output()).collect()
    }

    fn responses(out: &[DoorOutput]) -> Vec<Response> {
        out.iter()
            .filter_map(|o| match o {
                DoorOutput::Send { bytes, .. } => match parse(bytes) {
                    Message::Response(r) => Some(r),
                    Message::Request(_) => None,
                },
                _ => None,
            })
            .collect()
    }

    fn one(out: &[DoorOutput]) -> Response {
        let r = T::responses(out);
        assert_eq!(r.len(), 1, "expected one response, got {r:?}");
        r.into_iter().next().unwrap()
    }

    /// Answers the first challenge of `resp` with `alg`.
    fn credentials(
        &mut self,
        resp: &Response,
        alg: Algorithm,
        method: &str,
        uri: &str,
        user: &str,
        pw: &str,
    ) -> String {
        let name = if resp.status == 401 { HeaderName::WwwAuthenticate } else { HeaderName::ProxyAuthenticate };
        let ch = resp.headers.get_all(&name).filter_map(|v| parse_challenge(v)).find(|c| c.algorithm == alg).unwrap();
        self.nc += 1;
        respond(&ch, method, uri, user, pw, "c0ffee", self.nc)
    }
}

fn register(branch: &str, cseq: u32, user: &str, domain: &str, extra: &str) -> String {
    format!(
        "REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.10:5062;rport;branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@{domain}>;tag=f{cseq}\r\nTo: <sip:{user}@{domain}>\r\nCall-ID: reg-{user}@host\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@192.168.1.10:5062>\r\nExpires: 600\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

fn invite(branch: &str, to: &str, domain: &str, extra: &str) -> String {
    format!(
        "INVITE sip:{to}@{domain} SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.10:5062;rport;branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:1001@{domain}>;tag=ff\r\nTo: <sip:{to}@{domain}>\r\nCall-ID: inv-{branch}@host\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@192.168.1.10:5062>\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

fn registered(t: &mut T, user: &str, pw: &str) {
    let first = T::one(&t.feed(&register("z9hG4bKr1", 1, user, "acme.test", "")));
    assert_eq!(first.status, 401);
    let auth = t.credentials(&first, Algorithm::Md5, "REGISTER", "sip:acme.test", user, pw);
    let out = t.feed(&register("z9hG4bKr2", 2, user, "acme.test", &format!("Authorization: {auth}\r\n")));
    let DoorOutput::Persist { token, .. } = &out[0] else { panic!("{out:?}") };
    let token = *token;
    t.door.persisted(token, true, t.now);
    let ok = T::one(&std::iter::from_fn(|| t.door.poll_output()).collect::<Vec<_>>());
    assert_eq!(ok.status, 200);
}

#[test]
fn options_is_answered_with_capabilities() {
    let mut t = setup();
    let r = T::one(&t.feed(&invite("z9hG4bKo1", "1002", "acme.test", "").replace("INVITE", "OPTIONS")));
    assert_eq!(r.status, 200);
    for h in [HeaderName::Allow, HeaderName::Accept, HeaderName::Supported] {
        assert!(r.headers.get(&h).is_some(), "missing {h}");
    }
    assert!(r.headers.get(&HeaderName::Allow).unwrap().contains("INVITE"));
}

#[test]
fn register_is_challenged_with_md5_and_sha256() {
    let mut t = setup();
    let r = T::one(&t.feed(&register("z9hG4bKr1", 1, "1001", "acme.test", "")));
    assert_eq!(r.status, 401);
    let ch: Vec<_> = r.headers.get_all(&HeaderName::WwwAuthenticate).map(|v| parse_challenge(v).unwrap()).collect();
    assert_eq!(ch.iter().map(|c| c.algorithm).collect::<Vec<_>>(), [Algorithm::Md5, Algorithm::Sha256]);
    assert!(ch.iter().all(|c| c.realm == "acme.test" && !c.stale));
}

#[test]
fn register_is_answered_only_once_persisted() {
    for alg in [Algorithm::Md5, Algorithm::Sha256] {
        let mut t = setup();
        let first = T::one(&t.feed(&register("z9hG4bKr1", 1, "1001", "acme.test", "")));
        let auth = t.credentials(&first, alg, "REGISTER", "sip:acme.test", "1001", "pw1001");
        let text = register("z9hG4bKr2", 2, "1001", "acme.test", &format!("Authorization: {auth}\r\n"));
        let out = t.feed(&text);
        assert_eq!(out.len(), 1);
        let DoorOutput::Persist { token, changes } = &out[0] else { panic!("{out:?}") };
        assert_eq!(changes.len(), 1);
        // A retransmission while the store works is absorbed.
        assert!(t.feed(&text).is_empty());
        t.door.persisted(*token, true, t.now);
        let ok = T::one(&std::iter::from_fn(|| t.door.poll_output()).collect::<Vec<_>>());
        assert_eq!(ok.status, 200);
        assert_eq!(
            ok.headers.get(&HeaderName::Contact).unwrap().to_string(),
            "<sip:1001@192.168.1.10:5062>;expires=600"
        );
        assert!(ok.headers.get(&HeaderName::Date).unwrap().ends_with(" GMT"));
        // A retransmission now gets the same 200 again, without a second registration.
        assert_eq!(T::one(&t.feed(&text)).status, 200);
        let bindings = t.location.lookup(&Aor { tenant_id: 1, extension: "1001".into() }, t.now.unix_ms);
        assert_eq!(bindings.len(), 1);
        assert_eq!(bindings[0].flow.remote, t.flow.remote);
    }
}

#[test]
fn failed_persistence_is_500() {
    let mut t = setup();
    let first = T::one(&t.feed(&register("z9hG4bKr1", 1, "1001", "acme.test", "")));
    let auth = t.credentials(&first, Algorithm::Md5, "REGISTER", "sip:acme.test", "1001", "pw1001");
    let out = t.feed(&register("z9hG4bKr2", 2, "1001", "acme.test", &format!("Authorization: {auth}\r\n")));
    let DoorOutput::Persist { token, .. } = &out[0] else { panic!() };
    t.door.persisted(*token, false, t.now);
    let r = T::one(&std::iter::from_fn(|| t.door.poll_output()).collect::<Vec<_>>());
    assert_eq!(r.status, 500);
}

#[test]
fn unknown_user_and_wrong_password_get_the_same_answer() {
    let mut t = setup();
    let first = T::one(&t.feed(&register("z9hG4bKr1", 1, "1001", "acme.test", "")));
    let wrong = t.credentials(&first, Algorithm::Md5, "REGISTER", "sip:acme.test", "1001", "bad");
    let unknown = t.credentials(&first, Algorithm::Md5, "REGISTER", "sip:acme.test", "4242", "bad");
    let a = T::one(&t.feed(&register("z9hG4bKr2", 2, "1001", "acme.test", &format!("Authorization: {wrong}\r\n"))));
    let b = T::one(&t.feed(&register("z9hG4bKr3", 2, "4242", "acme.test", &format!("Authorization: {unknown}\r\n"))));
    assert_eq!((a.status, b.status), (401, 401));
    // Same headers apart from the values that are random by design (tag, nonce) and the
    // ones that echo the request.
    let shape = |r: &Response| -> Vec<String> {
        r.headers
            .iter()
            .filter(|h| {
                !matches!(
                    h.name,
                    HeaderName::From | HeaderName::To | HeaderName::Via | HeaderName::CallId | HeaderName::CSeq
                )
            })
            .map(|h| match h.name {
                HeaderName::WwwAuthenticate => {
                    let c = parse_challenge(&h.value).unwrap();
                    format!("{} {} {} {}", h.name, c.realm, c.algorithm, c.stale)
                }
                _ => format!("{}: {}", h.name, h.value),
            })
            .collect()
    };
    assert_eq!(shape(&a), shape(&b));
    assert_eq!(a.reason, b.reason);
}

#[test]
fn register_to_an_unknown_domain_is_404() {
    let mut t = setup();
    assert_eq!(T::one(&t.feed(&register("z9hG4bKr1", 1, "1001", "example.com", ""))).status, 404);
}

#[test]
fn register_via_server_address_uses_the_to_domain() {
    let mut t = setup();
    let text = register("z9hG4bKr1", 1, "1001", "acme.test", "").replacen(
        "REGISTER sip:acme.test",
        "REGISTER sip:10.0.0.1",
        1,
    );
    let r = T::one(&t.feed(&text));
    assert_eq!(r.status, 401);
    assert_eq!(parse_challenge(r.headers.get(&HeaderName::WwwAuthenticate).unwrap()).unwrap().realm, "acme.test");
}

#[test]
fn requests_to_the_server_address_go_to_the_default_tenant() {
    let mut t = setup();
    let cfg = DoorConfig { default_tenant: Some("beta".into()), ..DoorConfig::default() };
    t.door = Door::new(1, cfg, t.door.directory.clone(), t.door.auth.clone(), t.location.clone(), IdGen::new(1));
    let text = register("z9hG4bKr1", 1, "1001", "10.0.0.1", "");
    let r = T::one(&t.feed(&text));
    assert_eq!(r.status, 401);
    assert_eq!(parse_challenge(r.headers.get(&HeaderName::WwwAuthenticate).unwrap()).unwrap().realm, "beta.test");
    // Without a default tenant, the server's address names no tenant.
    let mut t = setup();
    assert_eq!(T::one(&t.feed(&text)).status, 404);
}

#[test]
fn invite_is_challenged_then_routed() {
    let mut t = setup();
    registered(&mut t, "1002", "pw1002");
    let first = T::one(&t.feed(&invite("z9hG4bKi1", "1002", "acme.test", "")));
    assert_eq!(first.status, 407);
    assert!(first.to_header().unwrap().unwrap().tag().is_some());
    // The caller ACKs the 407: absorbed, nothing sent.
    let ack = invite("z9hG4bKi1", "1002", "acme.test", "")
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK")
        .replace(
            "To: <sip:1002@acme.test>",
            &format!("To: <sip:1002@acme.test>;tag={}", first.to_header().unwrap().unwrap().tag().unwrap()),
        );
    assert!(t.feed(&ack).is_empty());
    let auth = t.credentials(&first, Algorithm::Sha256, "INVITE", "sip:1002@acme.test", "1001", "pw1001");
    let out = t.feed(&invite("z9hG4bKi2", "1002", "acme.test", &format!("Proxy-Authorization: {auth}\r\n")));
    let [DoorOutput::StartCall(nc)] = &out[..] else { panic!("{out:?}") };
    assert_eq!(nc.caller.user().extension, "1001");
    assert_eq!(nc.callee.extension, "1002");
    assert_eq!(nc.targets.len(), 1);
}

#[test]
fn invite_outcomes_for_unknown_and_unregistered_callees() {
    let mut t = setup();
    for (to, status) in [("9999", 404), ("1002", 480)] {
        let first = T::one(&t.feed(&invite(&format!("z9hG4bK{to}a"), to, "acme.test", "")));
        let auth = t.credentials(&first, Algorithm::Md5, "INVITE", &format!("sip:{to}@acme.test"), "1001", "pw1001");
        let r = T::one(&t.feed(&invite(
            &format!("z9hG4bK{to}b"),
            to,
            "acme.test",
            &format!("Proxy-Authorization: {auth}\r\n"),
        )));
        assert_eq!(r.status, status, "{to}");
    }
}

#[test]
fn credentials_of_one_tenant_do_not_work_in_another() {
    let mut t = setup();
    registered(&mut t, "1002", "pw1002");
    // beta.test's 1001 (password "other") tries to call into acme.test with its own credentials.
    let first = T::one(&t.feed(&invite("z9hG4bKx1", "1002", "acme.test", "")));
    let auth = t.credentials(&first, Algorithm::Md5, "INVITE", "sip:1002@acme.test", "1001", "other");
    let r = T::one(&t.feed(&invite("z9hG4bKx2", "1002", "acme.test", &format!("Proxy-Authorization: {auth}\r\n"))));
    assert_eq!(r.status, 407);
}

#[test]
fn request_checks_in_rfc_4475_order() {
    let mut t = setup();
    let cases: Vec<(String, u16)> = vec![
        (invite("z9hG4bKc1", "1002", "acme.test", "").replace("To: <sip:1002@acme.test>", "To: <sip:1002@acme.test>;tag=x"), 481),
        (invite("z9hG4bKc2", "1002", "acme.test", "").replacen("INVITE sip:1002@acme.test", "INVITE tel:+15551234", 1), 416),
        (invite("z9hG4bKc3", "1002", "acme.test", "Require: nothingSupportsThis, norThis\r\n"), 420),
        (
            invite("z9hG4bKc4", "1002", "acme.test", "Content-Type: application/unknownformat\r\n")
                .replace("Content-Length: 0\r\n\r\n", "Content-Length: 4\r\n\r\nabcd"),
            415,
        ),
        (invite("z9hG4bKc5", "1002", "acme.test", "Accept: text/nobodyKnowsThis\r\n"), 406),
        (invite("z9hG4bKc6", "1002", "acme.test", "").replace("Max-Forwards: 70", "Max-Forwards: 0"), 483),
        (invite("z9hG4bKc7", "1002", "acme.test", "").replacen("INVITE sip", "FROBNICATE sip", 1).replace("1 INVITE", "1 FROBNICATE"), 501),
        (invite("z9hG4bKc8", "1002", "acme.test", "").replacen("INVITE sip", "BYE sip", 1).replace("1 INVITE", "1 BYE"), 481),
        (invite("z9hG4bKc9", "1002", "acme.test", "").replacen("INVITE sip", "CANCEL sip", 1).replace("1 INVITE", "1 CANCEL"), 481),
        (invite("z9hG4bKca", "1002", "acme.test", "").replacen("INVITE sip", "SUBSCRIBE sip", 1).replace("1 INVITE", "1 SUBSCRIBE"), 405),
        (
            invite("z9hG4bKcb", "1002", "acme.test", "")
                .replace("Via: SIP/2.0/UDP 192.168.1.10:5062;rport;branch=z9hG4bKcb", "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-sb1234\r\nVia: SIP/2.0/UDP 192.168.1.10:5062;branch=z9hG4bKcb"),
            482,
        ),
    ];
    for (text, status) in cases {
        let r = T::one(&t.feed(&text));
        assert_eq!(r.status, status, "{text}");
        if status == 420 {
            assert_eq!(r.headers.get(&HeaderName::Unsupported).unwrap().to_string(), "nothingSupportsThis, norThis");
        }
        if status == 501 {
            assert!(r.headers.get(&HeaderName::Allow).is_some());
        }
    }
}

#[test]
fn error_responses_to_invite_are_retransmitted_until_ack() {
    let mut t = setup();
    T::one(&t.feed(&invite("z9hG4bKe1", "1002", "acme.test", "")));
    let mut sent = 0;
    let end = t.now.instant + Duration::from_secs(40);
    let mut steps = 0;
    while let Some(at) = t.door.poll_timeout() {
        if at > end {
            break;
        }
        steps += 1;
        assert!(steps < 1000, "door timers do not advance");
        t.now = t.now.plus(at - t.now.instant);
        t.door.handle_timeout(t.now);
        sent += std::iter::from_fn(|| t.door.poll_output()).count();
    }
    // Timer G: 0.5, 1.5, 3.5, 7.5, then every 4 s until timer H at 32 s.
    assert_eq!(sent, 10);
    assert_eq!(t.door.transactions(), 0);
}

#[test]
fn http_date_format() {
    assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(http_date(1_700_000_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
}
