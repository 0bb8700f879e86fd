//! REGISTER processing (RFC 3261 §10.3), as a function over one AOR's bindings: the caller
//! holds the AOR's lock, persists the returned changes, then answers.

use sip::headers::{ContactValue, NameAddr};
use sip::text::parse_decimal;
use sip::{HeaderName, Request, RequestInfo, Uri};

use crate::auth::Authenticated;
use crate::flow::Flow;
use crate::location::{Aor, Binding, BindingChange};

/// Registrar limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Shortest accepted registration (423 with Min-Expires below it).
    pub min_expires: u32,
    /// Longest granted registration (longer requests are shortened).
    pub max_expires: u32,
    /// Granted when the phone does not say.
    pub default_expires: u32,
    /// Most contacts per user; the ones closest to expiry make room.
    pub max_contacts: usize,
}

impl Default for RegistrarConfig {
    fn default() -> RegistrarConfig {
        RegistrarConfig { min_expires: 60, max_expires: 86_400, default_expires: 3_600, max_contacts: 10 }
    }
}

/// The result of a REGISTER.
#[derive(Clone, Debug, PartialEq)]
pub enum Registered {
    /// Accepted: persist `changes`, then answer 200 with `contacts` (value, seconds left).
    Ok {
        /// Changes for the store.
        changes: Vec<BindingChange>,
        /// Contact header values for the 200 OK, each with its expiry.
        contacts: Vec<String>,
    },
    /// Refused with this status.
    Rejected {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: &'static str,
        /// For 423: the Min-Expires value.
        min_expires: Option<u32>,
    },
}

fn reject(status: u16, reason: &'static str) -> Registered {
    Registered::Rejected { status, reason, min_expires: None }
}

struct ContactRequest {
    uri: Uri,
    expires: u32,
    q: Option<f32>,
    instance: Option<String>,
    reg_id: Option<u32>,
}

/// Applies a REGISTER from `principal` to the bindings of its AOR.
///
/// `aor_hosts` are the host names the To header may carry for this tenant (its domain, and
/// the Request-URI host the REGISTER was sent to).
#[allow(clippy::too_many_arguments)]
pub fn register(
    req: &Request,
    info: &RequestInfo,
    principal: &Authenticated,
    aor_hosts: &[&str],
    flow: Flow,
    bindings: &mut Vec<Binding>,
    cfg: &RegistrarConfig,
    now_ms: i64,
) -> Registered {
    // The To header is the address-of-record; it must be a SIP URI of this tenant naming the
    // authenticated user (RFC 3261 §10.3 steps 5 and 6).
    let Some(to) = info.to.uri.as_sip() else {
        return reject(400, "To Must Be a SIP URI");
    };
    let user = to.user_unescaped().unwrap_or_default();
    let to_host = to.host.to_lowercase_string();
    if user != principal.user().extension.as_bytes() || !aor_hosts.iter().any(|h| h.eq_ignore_ascii_case(&to_host)) {
        return reject(403, "Not Allowed to Register This AOR");
    }
    let aor = Aor { tenant_id: principal.tenant().id, extension: principal.user().extension.clone() };

    let header_expires = req.headers.get(&HeaderName::Expires).map(|v| parse_expires(v));
    let mut wildcard = false;
    let mut requested = Vec::new();
    for value in req.headers.get_all(&HeaderName::Contact) {
        match ContactValue::parse_in(value) {
            Ok(ContactValue::Star) => wildcard = true,
            Ok(ContactValue::Addresses(list)) => {
                for c in list {
                    requested.push(contact_request(&c, header_expires, cfg));
                }
            }
            Err(_) => return reject(400, "Malformed Contact"),
        }
    }
    let mut changes = Vec::new();
    bindings.retain(|b| {
        let alive = b.expires_at_ms > now_ms;
        if !alive {
            changes.push(BindingChange::Remove(aor.clone(), b.clone()));
        }
        alive
    });

    if wildcard {
        // "Contact: *" only with "Expires: 0" and no other contact (§10.3 step 6).
        if !requested.is_empty() || header_expires != Some(0) {
            return reject(400, "Invalid Wildcard Contact");
        }
        for b in bindings.iter() {
            if b.call_id == *info.call_id && info.cseq.seq <= b.cseq {
                return reject(500, "Out of Order REGISTER");
            }
        }
        bindings.clear();
        changes.push(BindingChange::RemoveAll(aor));
        return Registered::Ok { changes, contacts: Vec::new() };
    }

    for c in &requested {
        if c.expires != 0 && c.expires < cfg.min_expires {
            return Registered::Rejected {
                status: 423,
                reason: "Interval Too Brief",
                min_expires: Some(cfg.min_expires),
            };
        }
    }
    let user_agent = req.headers.get(&HeaderName::UserAgent).map(|v| v.to_string());
    for c in requested {
        let existing = bindings.iter().position(|b| b.matches(&c.uri, c.instance.as_deref(), c.reg_id));
        if let Some(i) = existing {
            let b = &bindings[i];
            if b.call_id == *info.call_id && info.cseq.seq <= b.cseq {
                return reject(500, "Out of Order REGISTER");
            }
        }
        if c.expires == 0 {
            if let Some(i) = existing {
                let b = bindings.remove(i);
                changes.push(BindingChange::Remove(aor.clone(), b));
            }
            continue;
        }
        let binding = Binding {
            uri: c.uri,
            expires_at_ms: now_ms + i64::from(c.expires.min(cfg.max_expires)) * 1000,
            q: c.q,
            call_id: info.call_id.to_string(),
            cseq: info.cseq.seq,
            flow,
            instance: c.instance,
            reg_id: c.reg_id,
            user_agent: user_agent.clone(),
            registered_at_ms: existing.map(|i| bindings[i].registered_at_ms).unwrap_or(now_ms),
        };
        if let Some(i) = existing
            && bindings[i].uri != binding.uri
        {
            // Same phone (instance), new address: the old contact goes away.
            changes.push(BindingChange::Remove(aor.clone(), bindings[i].clone()));
        }
        changes.push(BindingChange::Upsert(aor.clone(), binding.clone()));
        match existing {
            Some(i) => bindings[i] = binding,
            None => bindings.push(binding),
        }
    }
    // Over the limit, the contacts closest to expiry make room.
    while bindings.len() > cfg.max_contacts {
        let Some((i, _)) = bindings.iter().enumerate().min_by_key(|(_, b)| b.expires_at_ms) else { break };
        let b = bindings.remove(i);
        changes.push(BindingChange::Remove(aor.clone(), b));
    }
    let contacts = bindings.iter().map(|b| contact_value(b, now_ms)).collect();
    Registered::Ok { changes, contacts }
}

/// `expires` values: decimal seconds; larger than 2^32-1 means "as long as allowed".
fn parse_expires(v: &str) -> u32 {
    let v = v.trim();
    match parse_decimal(v, u64::from(u32::MAX)) {
        Some(n) => n as u32,
        None if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => u32::MAX,
        None => 0,
    }
}

fn contact_request(c: &NameAddr, header_expires: Option<u32>, cfg: &RegistrarConfig) -> ContactRequest {
    let expires = c.params.value("expires").map(parse_expires).or(header_expires).unwrap_or(cfg.default_expires);
    let q = c.params.value("q").and_then(|q| q.parse::<f32>().ok()).filter(|q| (0.0..=1.0).contains(q));
    let instance = c.params.value("+sip.instance").map(|s| s.trim_matches('"').to_owned());
    let reg_id = c.params.value("reg-id").and_then(|r| r.parse().ok());
    ContactRequest { uri: c.uri.clone(), expires, q, instance, reg_id }
}

/// A Contact header value listing a binding in a 200 OK.
fn contact_value(b: &Binding, now_ms: i64) -> String {
    let mut s = format!("<{}>;expires={}", b.uri, b.remaining_secs(now_ms));
    if let Some(q) = b.q {
        s.push_str(&format!(";q={q}"));
    }
    if let Some(i) = &b.instance {
        s.push_str(&format!(";+sip.instance=\"{i}\""));
        if let Some(r) = b.reg_id {
            s.push_str(&format!(";reg-id={r}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use sip::{Datagram, Limits, Message, parse_datagram, validate_request};

    use super::*;
    use crate::directory::{Tenant, User};
    use crate::flow::Transport;

    fn principal() -> Authenticated {
        let u = User {
            id: 1,
            tenant_id: 1,
            extension: "1001".into(),
            display_name: "A".into(),
            ha1_md5: String::new(),
            ha1_sha256: String::new(),
            srtp: Default::default(),
            dtmf: Default::default(),
        };
        let t = Arc::new(Tenant::new(1, "acme", "acme.test", vec![u.clone()]));
        Authenticated::for_tests(t, Arc::new(u))
    }

    fn flow() -> Flow {
        Flow {
            transport: Transport::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "127.0.0.1:40000".parse().unwrap(),
            connection: None,
        }
    }

    fn req(extra: &str, cseq: u32) -> (Request, RequestInfo) {
        let text = format!(
            "REGISTER sip:acme.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK{cseq}\r\nFrom: <sip:1001@acme.test>;tag=x\r\nTo: <sip:1001@acme.test>\r\nCall-ID: reg-1\r\nCSeq: {cseq} REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        let Datagram::Message(Message::Request(r)) = parse_datagram(Bytes::from(text), &Limits::default()).unwrap()
        else {
            panic!()
        };
        let info = validate_request(&r).unwrap();
        (r, info)
    }

    fn run(b: &mut Vec<Binding>, extra: &str, cseq: u32, now: i64) -> Registered {
        let (r, i) = req(extra, cseq);
        register(&r, &i, &principal(), &["acme.test"], flow(), b, &RegistrarConfig::default(), now)
    }

    #[test]
    fn register_adds_refreshes_and_removes() {
        let mut b = Vec::new();
        let Registered::Ok { contacts, changes } =
            run(&mut b, "Contact: <sip:1001@10.0.0.1:5060>\r\nExpires: 120\r\n", 1, 0)
        else {
            panic!()
        };
        assert_eq!(contacts, ["<sip:1001@10.0.0.1:5060>;expires=120"]);
        assert_eq!(changes.len(), 1);
        // A second phone, then a refresh of the first with a contact expires param.
        run(&mut b, "Contact: <sip:1001@10.0.0.2:5060>\r\n", 2, 1000);
        let Registered::Ok { contacts, .. } = run(&mut b, "Contact: <sip:1001@10.0.0.1:5060>;expires=600\r\n", 3, 2000)
        else {
            panic!()
        };
        assert_eq!(b.len(), 2);
        assert!(contacts.contains(&"<sip:1001@10.0.0.1:5060>;expires=600".to_string()));
        // Remove one.
        run(&mut b, "Contact: <sip:1001@10.0.0.1:5060>;expires=0\r\n", 4, 3000);
        assert_eq!(b.len(), 1);
        // Remove all.
        let Registered::Ok { changes, contacts } = run(&mut b, "Contact: *\r\nExpires: 0\r\n", 5, 4000) else {
            panic!()
        };
        assert!(contacts.is_empty() && b.is_empty());
        assert_eq!(changes.last(), Some(&BindingChange::RemoveAll(Aor { tenant_id: 1, extension: "1001".into() })));
    }

    #[test]
    fn too_brief_gets_423_with_min_expires() {
        let mut b = Vec::new();
        assert_eq!(
            run(&mut b, "Contact: <sip:1001@10.0.0.1>\r\nExpires: 10\r\n", 1, 0),
            Registered::Rejected { status: 423, reason: "Interval Too Brief", min_expires: Some(60) }
        );
        assert!(b.is_empty());
    }

    #[test]
    fn overlarge_expires_is_capped() {
        let mut b = Vec::new();
        run(&mut b, "Contact: <sip:1001@10.0.0.1>;expires=280297596632815\r\n", 1, 0);
        assert_eq!(b[0].expires_at_ms, 86_400_000);
    }

    #[test]
    fn wildcard_needs_expires_zero() {
        let mut b = Vec::new();
        assert!(matches!(run(&mut b, "Contact: *\r\n", 1, 0), Registered::Rejected { status: 400, .. }));
    }

    #[test]
    fn out_of_order_cseq_is_refused() {
        let mut b = Vec::new();
        run(&mut b, "Contact: <sip:1001@10.0.0.1>\r\n", 5, 0);
        assert!(matches!(
            run(&mut b, "Contact: <sip:1001@10.0.0.1>\r\n", 4, 10),
            Registered::Rejected { status: 500, .. }
        ));
    }

    #[test]
    fn another_users_aor_is_forbidden() {
        let mut b = Vec::new();
        let (mut r, _) = req("Contact: <sip:x@10.0.0.1>\r\n", 1);
        r.headers.set(HeaderName::To, "<sip:1002@acme.test>");
        let i = validate_request(&r).unwrap();
        let out = register(&r, &i, &principal(), &["acme.test"], flow(), &mut b, &RegistrarConfig::default(), 0);
        assert!(matches!(out, Registered::Rejected { status: 403, .. }));
    }

    #[test]
    fn contact_params_are_not_uri_params() {
        // RFC 4475 §3.3.12 and §3.3.13.
        let mut b = Vec::new();
        let Registered::Ok { contacts, .. } =
            run(&mut b, "Contact: sip:+19725552222@gw1.example.net;unknownparam\r\n", 1, 0)
        else {
            panic!()
        };
        assert_eq!(contacts, ["<sip:+19725552222@gw1.example.net>;expires=3600"]);
        let mut b = Vec::new();
        let Registered::Ok { contacts, .. } =
            run(&mut b, "Contact: <sip:+19725552222@gw1.example.net;unknownparam>\r\n", 1, 0)
        else {
            panic!()
        };
        assert_eq!(contacts, ["<sip:+19725552222@gw1.example.net;unknownparam>;expires=3600"]);
        // §3.3.14: the escaped header stays in the contact.
        let mut b = Vec::new();
        let Registered::Ok { contacts, .. } =
            run(&mut b, "Contact: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>\r\n", 1, 0)
        else {
            panic!()
        };
        assert_eq!(contacts, ["<sip:user@example.com?Route=%3Csip:sip.example.com%3E>;expires=3600"]);
    }

    #[test]
    fn instance_id_replaces_the_old_contact() {
        let mut b = Vec::new();
        run(&mut b, "Contact: <sip:1001@10.0.0.1>;+sip.instance=\"<urn:uuid:1>\";reg-id=1\r\n", 1, 0);
        let Registered::Ok { changes, .. } =
            run(&mut b, "Contact: <sip:1001@10.0.0.9>;+sip.instance=\"<urn:uuid:1>\";reg-id=1\r\n", 2, 10)
        else {
            panic!()
        };
        assert!(matches!(&changes[0], BindingChange::Remove(_, old) if old.uri.to_string() == "sip:1001@10.0.0.1"));
        assert!(matches!(&changes[1], BindingChange::Upsert(..)));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].uri.to_string(), "sip:1001@10.0.0.9");
    }

    #[test]
    fn contact_limit_evicts_the_soonest_to_expire() {
        let mut b = Vec::new();
        let cfg = RegistrarConfig { max_contacts: 2, ..RegistrarConfig::default() };
        for (i, exp) in [(1, 600), (2, 300), (3, 900)] {
            let (r, info) = req(&format!("Contact: <sip:1001@10.0.0.{i}>;expires={exp}\r\n"), i);
            register(&r, &info, &principal(), &["acme.test"], flow(), &mut b, &cfg, 0);
        }
        let mut uris: Vec<String> = b.iter().map(|b| b.uri.to_string()).collect();
        uris.sort();
        assert_eq!(uris, ["sip:1001@10.0.0.1", "sip:1001@10.0.0.3"]);
    }
}
