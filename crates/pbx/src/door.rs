//! The front door: every request that does not belong to a call comes here — REGISTER,
//! OPTIONS, new INVITEs, and requests for dialogs that do not exist.
//!
//! The door answers what it can on its own (challenges, registrations, OPTIONS, errors)
//! with proper server transactions, and hands a new call over ([`DoorOutput::StartCall`])
//! once the caller is authenticated and the callee has somewhere to ring. One door runs
//! per shard; requests are spread over shards by Call-ID, so retransmissions, ACKs and
//! CANCELs of a request reach the door that saw it.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sip::headers::MediaType;
use sip::transaction::{KeyMethod, Output, ServerInvite, ServerKey, ServerNonInvite, TimerConfig};
use sip::{HeaderName, Method, Request, RequestInfo, Response, Uri};

use crate::auth::{Authenticator, Verdict};
use crate::call::NewCall;
use crate::directory::{Directory, Tenant};
use crate::events::CallId;
use crate::flow::Flow;
use crate::ids::{BRANCH_PREFIX, IdGen};
use crate::location::{Aor, BindingChange, Location};
use crate::registrar::{Registered, RegistrarConfig, register};
use crate::{ALLOW, Now, SUPPORTED};

/// Door settings.
#[derive(Clone, Debug)]
pub struct DoorConfig {
    /// Registrar limits.
    pub registrar: RegistrarConfig,
    /// Transaction timers.
    pub timers: TimerConfig,
    /// Text of our Server header (empty: none).
    pub server: String,
    /// Host names that designate this server (besides the address a request arrived on),
    /// for requests addressed to the server rather than to a tenant's domain.
    pub local_hosts: Vec<String>,
    /// The tenant (by name) serving requests addressed to the server's own address whose
    /// other headers name no tenant either (phones set up with the server's IP).
    pub default_tenant: Option<String>,
}

impl Default for DoorConfig {
    fn default() -> DoorConfig {
        DoorConfig {
            registrar: RegistrarConfig::default(),
            timers: TimerConfig::default(),
            server: format!("Switchboard/{}", env!("CARGO_PKG_VERSION")),
            local_hosts: Vec::new(),
            default_tenant: None,
        }
    }
}

/// What the door asks its driver to do.
#[derive(Debug)]
pub enum DoorOutput {
    /// Send bytes.
    Send {
        /// Where.
        flow: Flow,
        /// What.
        bytes: Bytes,
    },
    /// Make these registration changes durable, then report with [`Door::persisted`].
    Persist {
        /// Identifies the request waiting for it.
        token: u64,
        /// The changes.
        changes: Vec<BindingChange>,
    },
    /// Start this call (the caller is authenticated, the callee has contacts).
    StartCall(Box<NewCall>),
}

struct PendingRegister {
    key: ServerKey,
    response: Response,
}

enum Tx {
    NonInvite(ServerNonInvite),
    Invite(ServerInvite),
}

struct DoorTx {
    tx: Tx,
    reply_flow: Flow,
    /// The deadline queued for this transaction, so it is queued again only when it moves.
    armed: Option<Instant>,
}

/// A queued deadline; the earliest first out of the heap.
struct TimerEntry {
    at: Instant,
    seq: u64,
    key: ServerKey,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &TimerEntry) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for TimerEntry {}

impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &TimerEntry) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TimerEntry {
    fn cmp(&self, other: &TimerEntry) -> Ordering {
        // Reversed: BinaryHeap is a max-heap, the earliest deadline must come out first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The front door of one shard.
pub struct Door {
    cfg: DoorConfig,
    directory: Arc<Directory>,
    auth: Arc<Authenticator>,
    location: Arc<Location>,
    ids: IdGen,
    shard: u16,
    next_call: u64,
    txs: crate::FastMap<ServerKey, DoorTx>,
    timers: BinaryHeap<TimerEntry>,
    next_timer: u64,
    pending: crate::FastMap<u64, PendingRegister>,
    next_token: u64,
    out: VecDeque<DoorOutput>,
}

impl std::fmt::Debug for Door {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Door")
            .field("shard", &self.shard)
            .field("transactions", &self.txs.len())
            .finish_non_exhaustive()
    }
}

fn user_of(uri: &Uri) -> Option<String> {
    let bytes = uri.as_sip()?.user_unescaped()?;
    String::from_utf8(bytes).ok()
}

impl Door {
    /// A door for shard `shard`.
    pub fn new(
        shard: u16,
        cfg: DoorConfig,
        directory: Arc<Directory>,
        auth: Arc<Authenticator>,
        location: Arc<Location>,
        ids: IdGen,
    ) -> Door {
        Door {
            cfg,
            directory,
            auth,
            location,
            ids,
            shard,
            next_call: 0,
            txs: crate::FastMap::default(),
            timers: BinaryHeap::new(),
            next_timer: 0,
            pending: crate::FastMap::default(),
            next_token: 0,
            out: VecDeque::new(),
        }
    }

    /// Replaces the directory (configuration reload).
    pub fn set_directory(&mut self, directory: Arc<Directory>) {
        self.directory = directory;
    }

    /// Next output.
    pub fn poll_output(&mut self) -> Option<DoorOutput> {
        self.out.pop_front()
    }

    /// When [`Door::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|e| e.at)
    }

    /// Server transactions alive (for metrics and tests).
    pub fn transactions(&self) -> usize {
        self.txs.len()
    }

    fn is_local_host(&self, host: &str, flow: &Flow) -> bool {
        host == flow.local.ip().to_string() || self.cfg.local_hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// The tenant a request is for: the Request-URI's domain, or, when the request was
    /// addressed to this server's own address, the domain of `fallback` (To for REGISTER,
    /// From for INVITE).
    fn tenant_for(&self, req: &Request, fallback: &Uri, flow: &Flow) -> Option<Arc<Tenant>> {
        let host = req.uri.as_sip()?.host.to_lowercase_string();
        if let Some(t) = self.directory.by_domain(&host) {
            return Some(t.clone());
        }
        if self.is_local_host(&host, flow) {
            let fb = fallback.as_sip()?.host.to_lowercase_string();
            if let Some(t) = self.directory.by_domain(&fb) {
                return Some(t.clone());
            }
            if self.is_local_host(&fb, flow) {
                return self.cfg.default_tenant.as_deref().and_then(|n| self.directory.by_name(n)).cloned();
            }
        }
        None
    }

    /// A request that matched no call.
    pub fn handle_request(&mut self, req: Request, info: RequestInfo, flow: Flow, now: Now) {
        let key = ServerKey::of(&req, &info);
        if let Some(t) = self.txs.get_mut(&key) {
            // Answer on the flow the retransmission came on (a phone may have reconnected).
            t.reply_flow = flow.response_flow(&info.via);
            match (&mut t.tx, &req.method) {
                (Tx::Invite(tx), Method::Ack) => {
                    tx.handle_ack(now.instant);
                }
                (Tx::Invite(tx), _) => tx.handle_retransmission(),
                (Tx::NonInvite(tx), _) => tx.handle_retransmission(),
            }
            self.drive(&key, now);
            return;
        }
        match req.method {
            // An ACK for nothing we know (or a 2xx we never sent): drop it.
            Method::Ack => {}
            Method::Cancel => {
                // A CANCEL for an INVITE this door already answered has no effect (200);
                // for anything else, no such transaction (481).
                let answered = matches!(&key, ServerKey::Rfc3261 { branch, sent_by, .. }
                    if self.txs.contains_key(&ServerKey::Rfc3261 { branch: branch.clone(), sent_by: sent_by.clone(), method: KeyMethod::Invite }));
                self.reply(&req, &info, flow, if answered { 200 } else { 481 }, None, now, |_| {});
            }
            _ => self.handle_new(req, info, flow, now),
        }
    }

    fn handle_new(&mut self, req: Request, info: RequestInfo, flow: Flow, now: Now) {
        if info.to.tag().is_some() {
            // A request inside a dialog this server does not have.
            return self.reply(&req, &info, flow, 481, None, now, |_| {});
        }
        if req.uri.as_sip().is_none() {
            return self.reply(&req, &info, flow, 416, None, now, |_| {});
        }
        let unsupported: Vec<String> = req.headers.list(&HeaderName::Require).map(str::to_owned).collect();
        if !unsupported.is_empty() {
            let list = unsupported.join(", ");
            return self.reply(&req, &info, flow, 420, None, now, |r| r.headers.push(HeaderName::Unsupported, list));
        }
        match req.method {
            Method::Options => self.reply(&req, &info, flow, 200, None, now, |r| {
                r.headers.push(HeaderName::Allow, ALLOW);
                r.headers.push(HeaderName::Accept, "application/sdp");
                r.headers.push(HeaderName::Supported, SUPPORTED);
                r.headers.push(HeaderName::AcceptLanguage, "en");
            }),
            Method::Register => self.handle_register(req, info, flow, now),
            Method::Invite => self.handle_invite(req, info, flow, now),
            Method::Bye | Method::Info | Method::Update | Method::Prack => {
                self.reply(&req, &info, flow, 481, None, now, |_| {})
            }
            Method::Extension(_) => {
                self.reply(&req, &info, flow, 501, None, now, |r| r.headers.push(HeaderName::Allow, ALLOW))
            }
            _ => self.reply(&req, &info, flow, 405, None, now, |r| r.headers.push(HeaderName::Allow, ALLOW)),
        }
    }

    fn handle_register(&mut self, req: Request, info: RequestInfo, flow: Flow, now: Now) {
        let Some(tenant) = self.tenant_for(&req, &info.to.uri, &flow) else {
            return self.reply(&req, &info, flow, 404, Some("Domain Not Served"), now, |_| {});
        };
        let principal = match self.auth.verify(&req, &HeaderName::Authorization, &tenant, (now.unix_ms / 1000) as u64) {
            Verdict::Ok(p) => p,
            Verdict::Challenge { stale } => return self.challenge(&req, &info, flow, &tenant, stale, 401, now),
        };
        let rhost = req.uri.as_sip().map(|u| u.host.to_lowercase_string()).unwrap_or_default();
        let aor = Aor { tenant_id: tenant.id, extension: principal.user().extension.clone() };
        let cfg = self.cfg.registrar;
        let outcome = self.location.with_aor(&aor, |bindings| {
            register(&req, &info, &principal, &[&tenant.domain, &rhost], flow, bindings, &cfg, now.unix_ms)
        });
        match outcome {
            Registered::Rejected { status, reason, min_expires } => {
                self.reply(&req, &info, flow, status, Some(reason), now, |r| {
                    if let Some(m) = min_expires {
                        r.headers.push(HeaderName::MinExpires, m.to_string());
                    }
                })
            }
            Registered::Ok { changes, contacts } => {
                let mut resp = self.response(&req, 200, None);
                for c in contacts {
                    resp.headers.push(HeaderName::Contact, c);
                }
                resp.headers.push(HeaderName::Date, http_date(now.unix_ms));
                let key = self.start_tx(&req, &info, flow, now);
                if changes.is_empty() {
                    self.respond(&key, &resp, now);
                } else {
                    self.next_token += 1;
                    let token = self.next_token;
                    self.pending.insert(token, PendingRegister { key, response: resp });
                    self.out.push_back(DoorOutput::Persist { token, changes });
                }
            }
        }
    }

    /// The store has (or has not) made a REGISTER's changes durable: answer it.
    pub fn persisted(&mut self, token: u64, ok: bool, now: Now) {
        let Some(p) = self.pending.remove(&token) else { return };
        if ok {
            self.respond(&p.key, &p.response, now);
        } else {
            let mut resp = p.response.clone();
            resp.status = 500;
            resp.reason = "Registration Not Saved".into();
            resp.headers.remove(&HeaderName::Contact);
            resp.headers.push(HeaderName::RetryAfter, "5");
            self.respond(&p.key, &resp, now);
        }
    }

    fn handle_invite(&mut self, req: Request, info: RequestInfo, flow: Flow, now: Now) {
        // A request that went through us already (RFC 3261 §16.3 item 4).
        let looped = req.vias().filter_map(Result::ok).any(|v| {
            v.branch().is_some_and(|b| b.starts_with(BRANCH_PREFIX))
                && self.is_local_host(&v.host.to_lowercase_string(), &flow)
        });
        if looped {
            return self.reply(&req, &info, flow, 482, None, now, |_| {});
        }
        if !req.body.is_empty() {
            let ct = req.headers.get(&HeaderName::ContentType);
            let is_sdp = ct.is_some_and(|v| MediaType::parse_in(v, v).is_ok_and(|m| m.is("application", "sdp")));
            if !is_sdp {
                return self.reply(&req, &info, flow, 415, None, now, |r| {
                    r.headers.push(HeaderName::Accept, "application/sdp")
                });
            }
        }
        let accepts: Vec<bool> = req
            .headers
            .get_all(&HeaderName::Accept)
            .flat_map(|v| sip::text::split_commas(v).map(move |s| MediaType::parse_in(v, s)))
            .map(|m| m.is_ok_and(|m| m.accepts("application", "sdp")))
            .collect();
        if !accepts.is_empty() && !accepts.contains(&true) {
            return self.reply(&req, &info, flow, 406, None, now, |r| {
                r.headers.push(HeaderName::Warning, "399 switchboard \"INVITE responses carry application/sdp\"");
            });
        }
        let Some(tenant) = self.tenant_for(&req, &info.from.uri, &flow) else {
            return self.reply(&req, &info, flow, 404, None, now, |_| {});
        };
        if info.max_forwards == Some(0) {
            return self.reply(&req, &info, flow, 483, None, now, |_| {});
        }
        let caller = match self.auth.verify(&req, &HeaderName::ProxyAuthorization, &tenant, (now.unix_ms / 1000) as u64)
        {
            Verdict::Ok(p) => p,
            Verdict::Challenge { stale } => return self.challenge(&req, &info, flow, &tenant, stale, 407, now),
        };
        let Some(callee) = user_of(&req.uri).and_then(|ext| tenant.user(&ext).cloned()) else {
            return self.reply(&req, &info, flow, 404, None, now, |_| {});
        };
        let targets =
            self.location.lookup(&Aor { tenant_id: tenant.id, extension: callee.extension.clone() }, now.unix_ms);
        if targets.is_empty() {
            return self.reply(&req, &info, flow, 480, None, now, |_| {});
        }
        self.next_call += 1;
        let id = CallId((u64::from(self.shard) << 48) | (self.next_call & 0xffff_ffff_ffff));
        self.out.push_back(DoorOutput::StartCall(Box::new(NewCall {
            id,
            invite: req,
            info,
            flow,
            caller,
            callee,
            targets,
        })));
    }

    #[allow(clippy::too_many_arguments)]
    fn challenge(
        &mut self,
        req: &Request,
        info: &RequestInfo,
        flow: Flow,
        tenant: &Tenant,
        stale: bool,
        status: u16,
        now: Now,
    ) {
        let random = self.ids.next_u64();
        let challenges = self.auth.challenges(&tenant.domain, stale, (now.unix_ms / 1000) as u64, random);
        let name = if status == 401 { HeaderName::WwwAuthenticate } else { HeaderName::ProxyAuthenticate };
        self.reply(req, info, flow, status, None, now, |r| {
            for c in challenges {
                r.headers.push(name.clone(), c.to_string());
            }
        });
    }

    fn response(&mut self, req: &Request, status: u16, reason: Option<&str>) -> Response {
        let tag = if status > 100 { Some(self.ids.tag()) } else { None };
        let mut r = Response::to_request(req, status, reason, tag.as_deref());
        if !self.cfg.server.is_empty() {
            r.headers.push(HeaderName::Server, self.cfg.server.clone());
        }
        r
    }

    /// Answers a request with a final response through a new server transaction.
    #[allow(clippy::too_many_arguments)]
    fn reply(
        &mut self,
        req: &Request,
        info: &RequestInfo,
        flow: Flow,
        status: u16,
        reason: Option<&str>,
        now: Now,
        decorate: impl FnOnce(&mut Response),
    ) {
        let mut resp = self.response(req, status, reason);
        decorate(&mut resp);
        let key = self.start_tx(req, info, flow, now);
        self.respond(&key, &resp, now);
    }

    fn start_tx(&mut self, req: &Request, info: &RequestInfo, flow: Flow, _now: Now) -> ServerKey {
        let key = ServerKey::of(req, info);
        let reliable = flow.transport.is_reliable();
        let tx = if req.method == Method::Invite {
            Tx::Invite(ServerInvite::new(reliable, self.cfg.timers))
        } else {
            Tx::NonInvite(ServerNonInvite::new(reliable, self.cfg.timers))
        };
        self.txs.insert(key.clone(), DoorTx { tx, reply_flow: flow.response_flow(&info.via), armed: None });
        key
    }

    fn respond(&mut self, key: &ServerKey, resp: &Response, now: Now) {
        if let Some(t) = self.txs.get_mut(key) {
            match &mut t.tx {
                Tx::Invite(tx) => tx.respond(resp, now.instant),
                Tx::NonInvite(tx) => tx.respond(resp, now.instant),
            }
        }
        self.drive(key, now);
    }

    /// Drains a transaction's outputs and re-arms its timer.
    fn drive(&mut self, key: &ServerKey, _now: Now) {
        let Some(t) = self.txs.get_mut(key) else { return };
        let mut terminated = false;
        loop {
            let o = match &mut t.tx {
                Tx::Invite(tx) => tx.poll_output(),
                Tx::NonInvite(tx) => tx.poll_output(),
            };
            match o {
                Some(Output::Transmit(bytes)) => self.out.push_back(DoorOutput::Send { flow: t.reply_flow, bytes }),
                Some(Output::Terminated) => terminated = true,
                Some(_) => {}
                None => break,
            }
        }
        let next = match &t.tx {
            Tx::Invite(tx) => tx.poll_timeout(),
            Tx::NonInvite(tx) => tx.poll_timeout(),
        };
        if terminated {
            self.txs.remove(key);
            return;
        }
        if next != t.armed {
            t.armed = next;
            if let Some(at) = next {
                self.next_timer += 1;
                self.timers.push(TimerEntry { at, seq: self.next_timer, key: key.clone() });
            }
        }
    }

    /// Timers.
    pub fn handle_timeout(&mut self, now: Now) {
        while self.timers.peek().is_some_and(|e| e.at <= now.instant) {
            let Some(entry) = self.timers.pop() else { break };
            let Some(t) = self.txs.get_mut(&entry.key) else { continue };
            // An entry the transaction has moved on from (re-armed, or already handled).
            if t.armed != Some(entry.at) {
                continue;
            }
            t.armed = None;
            match &mut t.tx {
                Tx::Invite(tx) => tx.handle_timeout(now.instant),
                Tx::NonInvite(tx) => tx.handle_timeout(now.instant),
            }
            self.drive(&entry.key, now);
        }
    }
}

/// An RFC 7231 IMF-fixdate (the SIP Date header, RFC 3261 §20.17).
pub fn http_date(unix_ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = unix_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
