//! The B2BUA call: two dialogs, one owner.
//!
//! A [`Call`] owns everything of one call: the caller's INVITE server transaction (leg A),
//! the INVITE client transactions forked to every registered contact of the callee (leg B),
//! both dialogs once established, every transaction inside them, and the offer/answer state
//! of the media relay. It is sans-IO: inputs carry [`Now`], outputs are sends, media
//! commands and events.
//!
//! ```text
//!            INVITE                          INVITE (one per contact)
//!   caller ---------> [A] Call [B] -------------------------------> callee phones
//!          <---------              <-------------------------------
//!          100, 18x, 200            18x, 2xx (first 2xx wins; others CANCELled)
//!
//!   Routing --18x--> Early --2xx--> Answered --ACK--> Confirmed --BYE--> Ending --> Done
//!      \________________\__ final failure / CANCEL / ring timeout ______________/
//! ```
//!
//! Each leg is its own dialog with its own Call-ID, tags and CSeq, and nothing of one leg
//! (addresses, Via, Contact, Call-ID, tags, SDP origin) is copied to the other.

mod dialog;
mod secure;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sdp::{Anchor, MediaEndpoint, OriginState};
use sip::headers::{MediaType, NameAddr};
use sip::transaction::{
    ClientInvite, ClientKey, ClientNonInvite, KeyMethod, Output, ServerInvite, ServerInviteState, ServerKey,
    ServerNonInvite, TimerConfig, cancel_for,
};
use sip::{HeaderName, Method, Request, RequestInfo, Response, ResponseInfo, validate_request};

use self::dialog::{Dialog, decorate_response, without_tag};
pub use self::secure::SrtpKeys;
use self::secure::{LegKeys, Refusal};
use crate::Now;
use crate::auth::Authenticated;
use crate::directory::{DtmfMode, Tenant, User};
use crate::events::{CallEvent, CallEventKind, CallId, Disposition, DtmfMethod, Initiator};
use crate::flow::Flow;
use crate::ids::IdGen;
use crate::location::Binding;

/// Call settings.
#[derive(Clone, Debug)]
pub struct CallConfig {
    /// Transaction timers.
    pub timers: TimerConfig,
    /// How long the callee may ring before the call is given up (480 to the caller).
    pub ring_timeout: Duration,
    /// Text of our User-Agent and Server headers (empty: none).
    pub user_agent: String,
    /// Offer the codecs the relay can transcode (G.711 µ/A-law, G.722) beside the offerer's,
    /// and transcode when the answerer picks one of them.
    pub transcoding: bool,
    /// Play music on hold to the party put on hold.
    pub music_on_hold: bool,
}

impl Default for CallConfig {
    fn default() -> CallConfig {
        CallConfig {
            timers: TimerConfig::default(),
            ring_timeout: Duration::from_secs(120),
            user_agent: format!("Switchboard/{}", env!("CARGO_PKG_VERSION")),
            transcoding: true,
            music_on_hold: true,
        }
    }
}

/// A leg of the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The caller's leg.
    A,
    /// The callee's leg.
    B,
}

impl Side {
    /// Index of the leg in per-leg arrays (A 0, B 1).
    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    /// The other leg.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// The relay's address on each leg, allocated by the driver before the call starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaAnchors {
    /// Relay address facing the caller.
    pub a: Anchor,
    /// Relay address facing the callee.
    pub b: Anchor,
}

/// A command for the media relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaCommand {
    /// A leg said (in its SDP) where it receives media.
    SetPeer {
        /// The leg.
        side: Side,
        /// Its media endpoint.
        peer: MediaEndpoint,
    },
    /// Transcode between the legs as described, or stop (`None`).
    Transcode(Option<TranscodeSpec>),
    /// Encrypt `side`'s media with these keys (SRTP), or stop (`None`: plain RTP).
    Srtp {
        /// The leg.
        side: Side,
        /// Its keys.
        keys: Option<SrtpKeys>,
    },
    /// Send a DTMF digit to `side`'s phone in its media, as RFC 4733 events or as tones.
    SendDtmf {
        /// The leg.
        side: Side,
        /// `0-9`, `*`, `#`, `A-D`.
        digit: char,
        /// How long.
        duration_ms: u32,
        /// RFC 4733 events of this payload type and clock rate, or tones (`None`).
        telephone_event: Option<(u8, u32)>,
    },
    /// Play music on hold into `side` (the held party), or stop.
    MusicOnHold {
        /// The held leg.
        side: Side,
        /// Start (true) or stop.
        on: bool,
    },
}

/// What each leg sends and receives when their codecs differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranscodeSpec {
    /// The caller's leg codec (its payload type numbering).
    pub a: sdp::Format,
    /// The callee's leg codec.
    pub b: sdp::Format,
    /// Telephone-event payload types (caller's, callee's), when both legs use them.
    pub telephone_event: Option<(u8, u8)>,
    /// Packetisation times (ms) the caller's and the callee's legs asked for, if they said.
    pub ptime: (Option<u16>, Option<u16>),
}

/// Codecs the relay converts between (name, clock rate, static payload type; Opus has none).
const TRANSCODABLE: [(&str, u32, Option<u8>); 4] =
    [("PCMU", 8000, Some(0)), ("PCMA", 8000, Some(8)), ("G722", 8000, Some(9)), ("opus", 48000, None)];

fn is_transcodable(f: &sdp::Format) -> bool {
    TRANSCODABLE.iter().any(|(name, rate, _)| f.encoding.eq_ignore_ascii_case(name) && f.clock_rate == *rate)
}

/// The transcodable formats an offer of `formats` lacks, for the answerer to choose from:
/// static payload types where they have one, free dynamic ones otherwise (Opus, RFC 7587
/// style, and a 48 kHz telephone-event beside it when the offer has an 8 kHz one).
fn formats_to_add(formats: &[sdp::Format]) -> Vec<sdp::Format> {
    let mut used: Vec<u8> = formats.iter().map(|f| f.payload_type).collect();
    let mut free = move || {
        let pt = (96..=127).find(|pt| !used.contains(pt))?;
        used.push(pt);
        Some(pt)
    };
    let mut extra = Vec::new();
    for &(name, rate, pt) in &TRANSCODABLE {
        let wanted = sdp::Format::new(pt.unwrap_or(0), name, rate);
        if formats.iter().any(|f| f.same_codec(&wanted) || Some(f.payload_type) == pt) {
            continue;
        }
        match pt {
            Some(_) => extra.push(wanted),
            None => {
                let Some(pt) = free() else { continue };
                extra.push(sdp::Format {
                    payload_type: pt,
                    channels: Some(2),
                    fmtp: Some("useinbandfec=1".to_owned()),
                    ..sdp::Format::new(pt, name, rate)
                });
                let te = |r: u32| formats.iter().any(|f| f.is_telephone_event() && f.clock_rate == r);
                if te(8000)
                    && !te(48000)
                    && let Some(pt) = free()
                {
                    let event = sdp::Format::new(pt, "telephone-event", 48000);
                    extra.push(sdp::Format { fmtp: Some("0-16".to_owned()), ..event });
                }
            }
        }
    }
    extra
}

/// Whether an SDP body being passed on is an offer or an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SdpRole {
    Offer,
    Answer,
}

/// The offer of the current offer/answer exchange.
#[derive(Clone, Debug)]
struct Exchange {
    offerer: Side,
    formats: Vec<sdp::Format>,
    ptime: Option<u16>,
}

/// Identifies a transaction of a call, so the driver can report a send that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxId(u32);

/// What the call asks its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum CallOutput {
    /// Send bytes on a flow; report a failure with [`Call::handle_send_error`] if `tx` is set.
    Send {
        /// Where.
        flow: Flow,
        /// What.
        bytes: Bytes,
        /// The client transaction that sent it.
        tx: Option<TxId>,
    },
    /// Tell the relay.
    Media(MediaCommand),
    /// Publish.
    Event(CallEvent),
}

/// Everything the front door hands over to start a call.
#[derive(Clone, Debug)]
pub struct NewCall {
    /// Call identifier.
    pub id: CallId,
    /// The caller's INVITE.
    pub invite: Request,
    /// Its parsed headers.
    pub info: RequestInfo,
    /// The flow it came on.
    pub flow: Flow,
    /// The authenticated caller.
    pub caller: Authenticated,
    /// The callee.
    pub callee: Arc<User>,
    /// Contacts to ring (all of them, in parallel).
    pub targets: Vec<Binding>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Routing,
    Early,
    Answered,
    Confirmed,
    Ending,
    Done,
}

#[derive(Debug)]
enum ForkStatus {
    Calling,
    Early,
    Answered,
    Failed(u16),
}

#[derive(Debug)]
struct Fork {
    id: TxId,
    flow: Flow,
    branch: String,
    tx: ClientInvite,
    status: ForkStatus,
    cancel_wanted: bool,
    cancel_sent: bool,
    terminated: bool,
}

#[derive(Debug)]
enum ClientKind {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

#[derive(Debug)]
enum Purpose {
    /// BYE ending a leg.
    Bye,
    /// CANCEL of a fork.
    CancelFork,
    /// BYE to a fork that answered after another won.
    StrayBye,
    /// A request relayed from the other leg; its final response goes back there.
    Relay { from: Side, key: ServerKey },
    /// A DTMF digit converted to SIP INFO for a leg without telephone-events.
    DtmfInfo,
}

#[derive(Debug)]
struct ClientTx {
    id: TxId,
    side: Side,
    flow: Flow,
    key: ClientKey,
    kind: ClientKind,
    purpose: Purpose,
    terminated: bool,
}

#[derive(Debug)]
enum ServerKind {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

#[derive(Debug)]
struct ServerTx {
    key: ServerKey,
    side: Side,
    reply_flow: Flow,
    request: Request,
    kind: ServerKind,
    terminated: bool,
}

/// A 2xx to an INVITE, retransmitted until its ACK (RFC 3261 §13.3.1.4).
#[derive(Debug)]
struct Pending2xx {
    side: Side,
    cseq: u32,
    flow: Flow,
    bytes: Bytes,
    next_at: Instant,
    interval: Duration,
    give_up_at: Instant,
}

/// An offer that arrived in a 2xx (late offer): the ACK to that side waits for the answer
/// the other side puts in its ACK.
#[derive(Debug)]
struct AckAwaitingAnswer {
    side: Side,
    cseq: u32,
}

/// One call.
#[derive(Debug)]
pub struct Call {
    id: CallId,
    tenant: Arc<Tenant>,
    caller: Arc<User>,
    callee: Arc<User>,
    cfg: CallConfig,
    ids: IdGen,
    phase: Phase,
    a: Dialog,
    a_invite: Request,
    a_key: ServerKey,
    a_reply_flow: Flow,
    a_tx: ServerInvite,
    a_tx_done: bool,
    b_template: Dialog,
    b: Option<Dialog>,
    forks: Vec<Fork>,
    winner: Option<usize>,
    clients: Vec<ClientTx>,
    servers: Vec<ServerTx>,
    pending_2xx: Vec<Pending2xx>,
    awaiting_answer: Option<AckAwaitingAnswer>,
    anchors: MediaAnchors,
    origin_a: OriginState,
    origin_b: OriginState,
    offer_in_invite: bool,
    reinvite_in_progress: bool,
    on_hold: bool,
    exchange: Option<Exchange>,
    transcoding: Option<TranscodeSpec>,
    /// Legs hearing music on hold (A, B).
    moh: [bool; 2],
    /// The telephone-event payload type and clock rate each leg declared (A, B).
    event_types: [Option<(u8, u32)>; 2],
    /// SRTP of each leg (A, B).
    keys: [LegKeys; 2],
    ring_deadline: Option<Instant>,
    linger_until: Option<Instant>,
    ended: bool,
    next_tx: u32,
    out: VecDeque<CallOutput>,
}

fn is_sdp(req_headers: &sip::Headers, body: &Bytes) -> bool {
    if body.is_empty() {
        return false;
    }
    match req_headers.get(&HeaderName::ContentType) {
        Some(v) => MediaType::parse_in(v, v).is_ok_and(|m| m.is("application", "sdp")),
        None => false,
    }
}

fn uri_with_user(user: &str, host: &str) -> String {
    format!("<sip:{user}@{host}>")
}

impl Call {
    /// Starts a call: 100 Trying to the caller, an INVITE to each target.
    pub fn new(nc: NewCall, anchors: MediaAnchors, cfg: CallConfig, mut ids: IdGen, now: Now) -> Call {
        let tenant = nc.caller.tenant().clone();
        let caller = nc.caller.user().clone();
        let info = &nc.info;
        let a_reply_flow = nc.flow.response_flow(&info.via);
        let remote_target = nc
            .invite
            .headers
            .get(&HeaderName::Contact)
            .and_then(|v| NameAddr::parse_list(v).next())
            .and_then(Result::ok)
            .map(|c| c.uri)
            .unwrap_or_else(|| info.from.uri.clone());
        let a = Dialog {
            call_id: info.call_id.to_string(),
            local_tag: ids.tag(),
            remote_tag: info.from.tag().map(str::to_owned),
            local_uri: without_tag(&info.to),
            remote_uri: without_tag(&info.from),
            remote_target,
            route_set: nc.invite.headers.get_all(&HeaderName::RecordRoute).map(|v| v.to_string()).collect(),
            local_cseq: (ids.next_u64() % 10_000) as u32 + 1,
            remote_cseq: Some(info.cseq.seq),
            flow: nc.flow,
        };
        let b_template = Dialog {
            call_id: ids.call_id(),
            local_tag: ids.tag(),
            remote_tag: None,
            local_uri: format!(
                "{} {}",
                sip::headers::quote_display_name(if caller.display_name.is_empty() {
                    &caller.extension
                } else {
                    &caller.display_name
                }),
                uri_with_user(&caller.extension, &tenant.domain)
            ),
            remote_uri: uri_with_user(&nc.callee.extension, &tenant.domain),
            remote_target: info.to.uri.clone(),
            route_set: Vec::new(),
            local_cseq: 1,
            remote_cseq: None,
            flow: nc.flow,
        };
        let reliable = nc.flow.transport.is_reliable();
        let a_key = ServerKey::of(&nc.invite, info);
        let sess = ids.next_u64() % 1_000_000_000;
        let mut call = Call {
            id: nc.id,
            tenant,
            caller,
            callee: nc.callee,
            ids,
            phase: Phase::Routing,
            a,
            a_key,
            a_reply_flow,
            a_tx: ServerInvite::new(reliable, cfg.timers),
            a_tx_done: false,
            b_template,
            b: None,
            forks: Vec::new(),
            winner: None,
            clients: Vec::new(),
            servers: Vec::new(),
            pending_2xx: Vec::new(),
            awaiting_answer: None,
            anchors,
            origin_a: OriginState::new(sess),
            origin_b: OriginState::new(sess + 1),
            offer_in_invite: is_sdp(&nc.invite.headers, &nc.invite.body),
            reinvite_in_progress: false,
            on_hold: false,
            exchange: None,
            transcoding: None,
            moh: [false; 2],
            event_types: [None; 2],
            keys: Default::default(),
            ring_deadline: Some(now.instant + cfg.ring_timeout),
            linger_until: None,
            ended: false,
            next_tx: 0,
            out: VecDeque::new(),
            a_invite: nc.invite,
            cfg,
        };
        call.event(
            now,
            CallEventKind::Created {
                caller: call.caller.extension.clone(),
                callee: call.callee.extension.clone(),
                sip_call_id: call.a.call_id.clone(),
            },
        );
        call.respond_a(100, None, None, now);

        // The caller's offer, anchored for the callee's leg.
        let mut offer = None;
        if call.offer_in_invite {
            let body = call.a_invite.body.clone();
            let negotiated = call.negotiate(Side::B, &body, SdpRole::Offer);
            let negotiated = match call.secure(Side::B, negotiated, SdpRole::Offer) {
                Ok(n) => n,
                Err(refusal) => {
                    call.respond_a(488, None, None, now);
                    call.end(now, Disposition::Failed, refusal.reason().into(), Some(488), Initiator::System);
                    return call;
                }
            };
            match sdp::anchor(&negotiated, &call.anchors.b, &mut call.origin_b) {
                Ok(anchored) => {
                    if let Some(peer) = sender_endpoint(&body) {
                        call.out.push_back(CallOutput::Media(MediaCommand::SetPeer { side: Side::A, peer }));
                    }
                    offer = Some(Bytes::from(anchored.body));
                }
                Err(_) => {
                    call.respond_a(488, None, None, now);
                    call.end(now, Disposition::Failed, "488 unusable offer".into(), Some(488), Initiator::System);
                    return call;
                }
            }
        } else if !call.a_invite.body.is_empty() {
            call.respond_a(415, None, None, now);
            call.end(now, Disposition::Failed, "415 unsupported body".into(), Some(415), Initiator::System);
            return call;
        }
        let max_forwards = call.a_max_forwards();
        for target in nc.targets {
            call.start_fork(&target, offer.clone(), max_forwards, now);
        }
        call
    }

    fn a_max_forwards(&self) -> u8 {
        validate_request(&self.a_invite).ok().and_then(|i| i.max_forwards).unwrap_or(70).saturating_sub(1)
    }

    fn new_tx_id(&mut self) -> TxId {
        self.next_tx += 1;
        TxId(self.next_tx)
    }

    fn start_fork(&mut self, target: &Binding, offer: Option<Bytes>, max_forwards: u8, now: Now) {
        let flow = target.flow;
        let branch = self.ids.branch();
        let mut d = self.b_template.clone();
        d.remote_target = target.uri.clone();
        d.flow = flow;
        let mut req = d.request(Method::Invite, 1, &branch, &self.cfg.user_agent);
        req.headers.set(HeaderName::MaxForwards, max_forwards.to_string());
        if let Some(body) = offer {
            req.set_body("application/sdp", body);
        }
        let tx = ClientInvite::new(req, flow.transport.is_reliable(), self.cfg.timers, now.instant);
        let id = self.new_tx_id();
        self.forks.push(Fork {
            id,
            flow,
            branch,
            tx,
            status: ForkStatus::Calling,
            cancel_wanted: false,
            cancel_sent: false,
            terminated: false,
        });
        let idx = self.forks.len() - 1;
        self.drive_fork(idx, now);
    }

    // ----- identity -----

    /// The call identifier.
    pub fn id(&self) -> CallId {
        self.id
    }

    /// The Call-IDs of both legs (the driver routes messages carrying either to this call).
    pub fn sip_call_ids(&self) -> [&str; 2] {
        [&self.a.call_id, &self.b_template.call_id]
    }

    /// The tenant.
    pub fn tenant_id(&self) -> i64 {
        self.tenant.id
    }

    /// True once the call is over and its transactions have finished (or given up): the
    /// driver can drop it.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }

    /// True when the last offer/answer put media on hold (no RTP expected, so no media
    /// timeout).
    pub fn is_on_hold(&self) -> bool {
        self.on_hold
    }

    /// True once the call has been answered (and not yet ended).
    pub fn is_answered(&self) -> bool {
        matches!(self.phase, Phase::Answered | Phase::Confirmed)
    }

    // ----- outputs -----

    /// Next output.
    pub fn poll_output(&mut self) -> Option<CallOutput> {
        self.out.pop_front()
    }

    /// When [`Call::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            return None;
        }
        let mut t: Option<Instant> = None;
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        if !self.a_tx_done {
            consider(self.a_tx.poll_timeout());
        }
        for f in &self.forks {
            if !f.terminated {
                consider(f.tx.poll_timeout());
            }
        }
        for c in &self.clients {
            if !c.terminated {
                consider(match &c.kind {
                    ClientKind::Invite(t) => t.poll_timeout(),
                    ClientKind::NonInvite(t) => t.poll_timeout(),
                });
            }
        }
        for s in &self.servers {
            if !s.terminated {
                consider(match &s.kind {
                    ServerKind::Invite(t) => t.poll_timeout(),
                    ServerKind::NonInvite(t) => t.poll_timeout(),
                });
            }
        }
        for p in &self.pending_2xx {
            consider(Some(p.next_at.min(p.give_up_at)));
        }
        if matches!(self.phase, Phase::Routing | Phase::Early) {
            consider(self.ring_deadline);
        }
        if self.phase == Phase::Ending {
            consider(self.linger_until);
        }
        t
    }

    fn event(&mut self, now: Now, kind: CallEventKind) {
        self.out.push_back(CallOutput::Event(CallEvent {
            call: self.id,
            tenant_id: self.tenant.id,
            at_ms: now.unix_ms,
            kind,
        }));
    }

    fn send(&mut self, flow: Flow, bytes: Bytes, tx: Option<TxId>) {
        self.out.push_back(CallOutput::Send { flow, bytes, tx });
    }

    // ----- leg A, initial INVITE -----

    fn respond_a(&mut self, status: u16, reason: Option<&str>, body: Option<Bytes>, now: Now) {
        let mut resp = Response::to_request(&self.a_invite, status, reason, Some(&self.a.local_tag));
        decorate_response(&mut resp, &self.a_invite, &self.a_reply_flow, &self.cfg.user_agent);
        if let Some(b) = body {
            resp.set_body("application/sdp", b);
        }
        self.a_tx.respond(&resp, now.instant);
        if (200..300).contains(&status) {
            let bytes = Bytes::from(resp.to_bytes());
            self.pending_2xx.push(Pending2xx {
                side: Side::A,
                cseq: self.a.remote_cseq.unwrap_or(0),
                flow: self.a_reply_flow,
                bytes,
                next_at: now.instant + self.cfg.timers.t1,
                interval: self.cfg.timers.t1,
                give_up_at: now.instant + self.cfg.timers.t1x64(),
            });
        }
        self.drive_a_tx();
    }

    fn drive_a_tx(&mut self) {
        while let Some(o) = self.a_tx.poll_output() {
            match o {
                Output::Transmit(b) => {
                    let flow = self.a_reply_flow;
                    self.send(flow, b, None);
                }
                Output::Terminated => self.a_tx_done = true,
                Output::Timeout | Output::TransportError | Output::Response(_) => {}
            }
        }
    }

    fn a_invite_pending(&self) -> bool {
        self.a_tx.state() == ServerInviteState::Proceeding
    }

    // ----- forks (leg B, initial INVITE) -----

    fn drive_fork(&mut self, idx: usize, now: Now) {
        let mut events = Vec::new();
        {
            let f = &mut self.forks[idx];
            while let Some(o) = f.tx.poll_output() {
                events.push(o);
            }
        }
        for o in events {
            match o {
                Output::Transmit(b) => {
                    let (flow, id) = (self.forks[idx].flow, self.forks[idx].id);
                    self.send(flow, b, Some(id));
                }
                Output::Response(r) => self.on_fork_response(idx, r, now),
                Output::Timeout => self.on_fork_failed(idx, 408, now),
                Output::TransportError => self.on_fork_failed(idx, 503, now),
                Output::Terminated => self.forks[idx].terminated = true,
            }
        }
    }

    fn on_fork_response(&mut self, idx: usize, resp: Response, now: Now) {
        match resp.status {
            100 => {}
            101..=199 => {
                if matches!(self.forks[idx].status, ForkStatus::Calling) {
                    self.forks[idx].status = ForkStatus::Early;
                }
                if self.forks[idx].cancel_wanted {
                    self.send_cancel(idx, now);
                    return;
                }
                if !matches!(self.phase, Phase::Routing | Phase::Early) || !self.a_invite_pending() {
                    return;
                }
                let mut body = None;
                if self.offer_in_invite && is_sdp(&resp.headers, &resp.body) {
                    body = self.anchor_for(Side::A, &resp.body, SdpRole::Answer);
                }
                let status = if resp.status == 183 { 183 } else { 180 };
                self.respond_a(status, None, body, now);
                if self.phase == Phase::Routing {
                    self.phase = Phase::Early;
                    self.event(now, CallEventKind::Ringing);
                }
            }
            200..=299 => self.on_fork_answered(idx, resp, now),
            status => self.on_fork_failed(idx, status, now),
        }
    }

    /// Anchors an SDP that arrived from `to.other()` for sending to `to`; tells the relay
    /// where the sender receives. `None` if the SDP is unusable.
    fn anchor_for(&mut self, to: Side, body: &[u8], role: SdpRole) -> Option<Bytes> {
        let negotiated = self.negotiate(to, body, role);
        let negotiated = self.secure(to, negotiated, role).ok()?;
        let (anchor, origin) = match to {
            Side::A => (self.anchors.a, &mut self.origin_a),
            Side::B => (self.anchors.b, &mut self.origin_b),
        };
        let anchored = sdp::anchor(&negotiated, &anchor, origin).ok()?;
        self.on_hold = is_hold(body);
        if let Some(peer) = sender_endpoint(body) {
            self.out.push_back(CallOutput::Media(MediaCommand::SetPeer { side: to.other(), peer }));
        }
        Some(Bytes::from(anchored.body))
    }

    /// Codec negotiation across the legs, for an SDP from `to.other()` going to `to`. An offer
    /// gets the codecs the relay can transcode to appended (after the offerer's own, so that a
    /// codec both legs share wins); an answer that picked one of those is rewritten to the
    /// offerer's codec, and the relay told to transcode. Unparsable bodies pass unchanged
    /// (anchoring then refuses them).
    fn negotiate(&mut self, to: Side, body: &[u8], role: SdpRole) -> Vec<u8> {
        let Ok(formats) = sdp::audio_formats(body) else { return body.to_vec() };
        // The type at the leg's audio clock, else the first.
        let audio_clock =
            formats.iter().find(|f| !f.is_telephone_event() && !f.is_comfort_noise()).map(|f| f.clock_rate);
        let events = || formats.iter().filter(|f| f.is_telephone_event());
        self.event_types[to.other().index()] = events()
            .find(|f| Some(f.clock_rate) == audio_clock)
            .or_else(|| events().next())
            .map(|f| (f.payload_type, f.clock_rate));
        match role {
            SdpRole::Offer => {
                let offerer = to.other();
                // An offer that holds (sendonly, inactive, null address) puts `to` on hold; one
                // that does not takes it off.
                let held = is_hold(body);
                if self.cfg.music_on_hold && held != self.moh[to.index()] {
                    self.moh[to.index()] = held;
                    self.out.push_back(CallOutput::Media(MediaCommand::MusicOnHold { side: to, on: held }));
                }
                let transcodable = formats.iter().any(is_transcodable);
                self.exchange = Some(Exchange { offerer, formats: formats.clone(), ptime: sdp::ptime(body) });
                if !self.cfg.transcoding || !transcodable {
                    return body.to_vec();
                }
                sdp::append_formats(body, &formats_to_add(&formats)).unwrap_or_else(|_| body.to_vec())
            }
            SdpRole::Answer => {
                let Some(exchange) = self.exchange.clone().filter(|e| e.offerer == to) else {
                    return body.to_vec();
                };
                let Some(chosen) = formats.iter().find(|f| !f.is_telephone_event() && !f.is_comfort_noise()) else {
                    return body.to_vec();
                };
                let offered =
                    exchange.formats.iter().any(|f| f.payload_type == chosen.payload_type && f.same_codec(chosen));
                let theirs = exchange.formats.iter().find(|f| is_transcodable(f));
                let (false, true, Some(theirs)) = (offered, is_transcodable(chosen), theirs) else {
                    self.set_transcoding(None);
                    return body.to_vec();
                };
                // Events at each leg's audio clock (48 kHz beside Opus), so the relay can scale them.
                let te_at = |fs: &[sdp::Format], rate: u32| {
                    fs.iter().find(|f| f.is_telephone_event() && f.clock_rate == rate).cloned()
                };
                let mut keep = vec![theirs.clone()];
                let events = match (te_at(&exchange.formats, theirs.clock_rate), te_at(&formats, chosen.clock_rate)) {
                    (Some(offerer_te), Some(answerer_te)) => {
                        keep.push(offerer_te.clone());
                        Some((offerer_te.payload_type, answerer_te.payload_type))
                    }
                    _ => None,
                };
                let Ok(rewritten) = sdp::set_formats(body, &keep) else { return body.to_vec() };
                // The offerer (`to`) keeps its codec; the answerer sends and wants `chosen`.
                let answerer_ptime = sdp::ptime(body);
                let spec = match to {
                    Side::A => TranscodeSpec {
                        a: theirs.clone(),
                        b: chosen.clone(),
                        telephone_event: events,
                        ptime: (exchange.ptime, answerer_ptime),
                    },
                    Side::B => TranscodeSpec {
                        a: chosen.clone(),
                        b: theirs.clone(),
                        telephone_event: events.map(|(offerer, answerer)| (answerer, offerer)),
                        ptime: (answerer_ptime, exchange.ptime),
                    },
                };
                self.set_transcoding(Some(spec));
                rewritten
            }
        }
    }

    /// SRTP across the legs, for an SDP from `to.other()` going to `to`: the sender's keys
    /// are checked against its user's policy and remembered, and the SDP gets the protocol and
    /// keys of `to`'s leg (Switchboard's own keys: each leg is keyed separately). The relay is
    /// told when a leg's keys change. Unparsable bodies pass unchanged.
    fn secure(&mut self, to: Side, body: Vec<u8>, role: SdpRole) -> Result<Vec<u8>, Refusal> {
        let from = to.other();
        let Ok(sec) = sdp::media_security(&body) else { return Ok(body) };
        let policy = |side: Side, call: &Call| match side {
            Side::A => call.caller.srtp,
            Side::B => call.callee.srtp,
        };
        match role {
            SdpRole::Offer => self.keys[from.index()].on_offer(&sec, policy(from, self))?,
            SdpRole::Answer => self.keys[from.index()].on_answer(&sec)?,
        }
        let (protocol, lines) = match role {
            SdpRole::Offer => {
                let (p, l) = self.keys[to.index()].offer(policy(to, self));
                (p.to_owned(), l)
            }
            SdpRole::Answer => self.keys[to.index()].answer(),
        };
        for side in [from, to] {
            if let Some(keys) = self.keys[side.index()].changed() {
                self.out.push_back(CallOutput::Media(MediaCommand::Srtp { side, keys }));
            }
        }
        if protocol == sec.protocol && lines == sec.crypto {
            return Ok(body);
        }
        sdp::set_media_security(&body, &protocol, &lines).map_err(|_| Refusal::NoUsableKey)
    }

    /// The SRTP suite each leg uses (A, B), by name; `None` for plain RTP.
    pub fn srtp_suites(&self) -> [Option<&'static str>; 2] {
        [self.keys[0].suite().map(srtp::Suite::name), self.keys[1].suite().map(srtp::Suite::name)]
    }

    /// A DTMF digit the relay found in `from`'s media: published as an event, and passed to the
    /// other leg by the method its user wants ([`DtmfMode`]) when that differs from how it came
    /// (RFC 4733 events between two legs that both declared them are relayed as they are).
    pub fn handle_media_dtmf(&mut self, from: Side, digit: char, duration_ms: u32, in_band: bool, now: Now) {
        let method = if in_band { DtmfMethod::InBand } else { DtmfMethod::Rfc4733 };
        self.event(now, CallEventKind::Dtmf { caller_leg: from == Side::A, digit, duration_ms, method });
        self.convert_dtmf(from, digit, duration_ms, method, now);
    }

    /// The method `side`'s phone wants digits by.
    fn dtmf_method_for(&self, side: Side) -> DtmfMethod {
        let mode = match side {
            Side::A => self.caller.dtmf,
            Side::B => self.callee.dtmf,
        };
        let events = self.event_types[side.index()].is_some();
        match mode {
            DtmfMode::Auto | DtmfMode::Rfc4733 if events => DtmfMethod::Rfc4733,
            DtmfMode::Auto | DtmfMode::Rfc4733 | DtmfMode::Info => DtmfMethod::SipInfo,
            DtmfMode::InBand => DtmfMethod::InBand,
        }
    }

    /// Passes a digit that came from `from` by `came` to the other leg by the method it wants.
    /// Returns whether the digit was converted (false: it reaches the other leg as it came).
    fn convert_dtmf(&mut self, from: Side, digit: char, duration_ms: u32, came: DtmfMethod, now: Now) -> bool {
        let to = from.other();
        if !matches!(self.phase, Phase::Answered | Phase::Confirmed) {
            return false;
        }
        let wanted = self.dtmf_method_for(to);
        let auto = match to {
            Side::A => self.caller.dtmf,
            Side::B => self.callee.dtmf,
        } == DtmfMode::Auto;
        // RFC 4733 passes through when both legs declared events; tones pass as audio (and are
        // converted only for a user who asked for another method explicitly).
        let passes = match came {
            DtmfMethod::Rfc4733 => wanted == DtmfMethod::Rfc4733,
            DtmfMethod::InBand => wanted == DtmfMethod::InBand || auto,
            DtmfMethod::SipInfo => wanted == DtmfMethod::SipInfo,
        };
        if passes {
            return false;
        }
        match wanted {
            DtmfMethod::SipInfo => self.send_dtmf_info(to, digit, duration_ms, now),
            DtmfMethod::Rfc4733 => {
                let telephone_event = self.event_types[to.index()];
                self.out.push_back(CallOutput::Media(MediaCommand::SendDtmf {
                    side: to,
                    digit,
                    duration_ms,
                    telephone_event,
                }));
            }
            DtmfMethod::InBand => {
                self.out.push_back(CallOutput::Media(MediaCommand::SendDtmf {
                    side: to,
                    digit,
                    duration_ms,
                    telephone_event: None,
                }));
            }
        }
        true
    }

    fn send_dtmf_info(&mut self, to: Side, digit: char, duration_ms: u32, now: Now) {
        let Some(d) = self.dialog_mut(to) else { return };
        let cseq = d.next_cseq();
        let d = d.clone();
        let branch = self.ids.branch();
        let mut info = d.request(Method::Info, cseq, &branch, &self.cfg.user_agent);
        info.set_body("application/dtmf-relay", format!("Signal={digit}\r\nDuration={duration_ms}\r\n"));
        let key = ClientKey { branch: branch.as_str().into(), method: KeyMethod::Other(Method::Info) };
        let tx = ClientNonInvite::new(info, d.flow.transport.is_reliable(), self.cfg.timers, now.instant);
        self.add_client(to, d.flow, key, ClientKind::NonInvite(tx), Purpose::DtmfInfo, now);
    }

    fn set_transcoding(&mut self, spec: Option<TranscodeSpec>) {
        if self.transcoding != spec {
            self.transcoding = spec.clone();
            self.out.push_back(CallOutput::Media(MediaCommand::Transcode(spec)));
        }
    }

    fn on_fork_answered(&mut self, idx: usize, resp: Response, now: Now) {
        let Some(to_tag) = resp.to_header().and_then(Result::ok).and_then(|t| t.tag().map(str::to_owned)) else {
            return;
        };
        let mut dialog = self.b_template.clone();
        dialog.remote_tag = Some(to_tag.clone());
        dialog.flow = self.forks[idx].flow;
        dialog.remote_target = resp
            .headers
            .get(&HeaderName::Contact)
            .and_then(|v| NameAddr::parse_list(v).next())
            .and_then(Result::ok)
            .map(|c| c.uri)
            .unwrap_or_else(|| self.forks[idx].tx.request().uri.clone());
        let mut rr: Vec<String> = resp.headers.get_all(&HeaderName::RecordRoute).map(|v| v.to_string()).collect();
        rr.reverse();
        dialog.route_set = rr;

        let already = self.winner.is_some() || !matches!(self.phase, Phase::Routing | Phase::Early);
        if already {
            // Another fork won, or the call ended meanwhile: ACK and hang up this one
            // (RFC 3261 §13.2.2.4).
            if self.winner == Some(idx) {
                // A retransmitted 2xx of the winner: ACK again, unless the ACK waits for
                // the caller's answer.
                if self.awaiting_answer.is_none()
                    && let Some(b) = self.b.clone()
                {
                    let ack = self.ack_request(b.clone(), 1, None);
                    self.send(b.flow, ack, None);
                }
                return;
            }
            let ack = self.ack_request(dialog.clone(), 1, None);
            self.send(dialog.flow, ack, None);
            self.send_bye(&dialog, 2, Purpose::StrayBye, now);
            return;
        }
        self.winner = Some(idx);
        self.forks[idx].status = ForkStatus::Answered;
        self.b = Some(dialog.clone());
        for i in 0..self.forks.len() {
            if i != idx {
                self.cancel_fork(i, now);
            }
        }
        let has_sdp = is_sdp(&resp.headers, &resp.body);
        let role = if self.offer_in_invite { SdpRole::Answer } else { SdpRole::Offer };
        let body_for_a = if has_sdp { self.anchor_for(Side::A, &resp.body, role) } else { None };
        if self.offer_in_invite && has_sdp && body_for_a.is_none() {
            // An answer that cannot be used (such as plain media to an encrypted offer):
            // the callee's leg is hung up and the caller refused, never connected in clear.
            let ack = self.ack_request(dialog.clone(), 1, None);
            self.send(dialog.flow, ack, None);
            self.send_bye(&dialog, 2, Purpose::StrayBye, now);
            self.respond_a(488, None, None, now);
            self.end(now, Disposition::Failed, "488 unusable answer".into(), Some(488), Initiator::System);
            return;
        }
        if self.offer_in_invite {
            let ack = self.ack_request(dialog.clone(), 1, None);
            self.send(dialog.flow, ack, None);
        } else {
            // Late offer: the callee offered in its 2xx; the caller answers in its ACK.
            self.awaiting_answer = Some(AckAwaitingAnswer { side: Side::B, cseq: 1 });
        }
        self.phase = Phase::Answered;
        self.respond_a(200, None, body_for_a, now);
        self.event(now, CallEventKind::Answered);
    }

    fn on_fork_failed(&mut self, idx: usize, status: u16, now: Now) {
        if !matches!(self.forks[idx].status, ForkStatus::Answered) {
            self.forks[idx].status = ForkStatus::Failed(status);
        }
        if self.winner.is_some() || !matches!(self.phase, Phase::Routing | Phase::Early) {
            return;
        }
        if !self.forks.iter().all(|f| matches!(f.status, ForkStatus::Failed(_))) {
            return;
        }
        let statuses: Vec<u16> = self
            .forks
            .iter()
            .filter_map(|f| if let ForkStatus::Failed(s) = f.status { Some(s) } else { None })
            .collect();
        let (to_caller, disposition) = best_failure(&statuses);
        self.respond_a(to_caller, None, None, now);
        self.end(
            now,
            disposition,
            format!("{to_caller} {}", sip::reason_phrase(to_caller)),
            Some(to_caller),
            Initiator::Callee,
        );
    }

    fn cancel_fork(&mut self, idx: usize, now: Now) {
        let f = &mut self.forks[idx];
        match f.status {
            ForkStatus::Calling => f.cancel_wanted = true,
            ForkStatus::Early => {
                f.cancel_wanted = true;
                self.send_cancel(idx, now);
            }
            ForkStatus::Answered | ForkStatus::Failed(_) => {}
        }
    }

    fn send_cancel(&mut self, idx: usize, now: Now) {
        if self.forks[idx].cancel_sent {
            return;
        }
        self.forks[idx].cancel_sent = true;
        let cancel = cancel_for(self.forks[idx].tx.request());
        let flow = self.forks[idx].flow;
        let key = ClientKey { branch: self.forks[idx].branch.as_str().into(), method: KeyMethod::Cancel };
        let tx = ClientNonInvite::new(cancel, flow.transport.is_reliable(), self.cfg.timers, now.instant);
        self.add_client(Side::B, flow, key, ClientKind::NonInvite(tx), Purpose::CancelFork, now);
    }

    fn ack_request(&mut self, dialog: Dialog, cseq: u32, body: Option<Bytes>) -> Bytes {
        let branch = self.ids.branch();
        let mut ack = dialog.request(Method::Ack, cseq, &branch, &self.cfg.user_agent);
        if let Some(b) = body {
            ack.set_body("application/sdp", b);
        }
        Bytes::from(ack.to_bytes())
    }

    // ----- client transactions in dialogs -----

    fn add_client(&mut self, side: Side, flow: Flow, key: ClientKey, kind: ClientKind, purpose: Purpose, now: Now) {
        let id = self.new_tx_id();
        self.clients.push(ClientTx { id, side, flow, key, kind, purpose, terminated: false });
        let idx = self.clients.len() - 1;
        self.drive_client(idx, now);
    }

    /// Sends a BYE in `dialog` with CSeq `cseq`.
    fn send_bye(&mut self, dialog: &Dialog, cseq: u32, purpose: Purpose, now: Now) {
        let branch = self.ids.branch();
        let bye = dialog.request(Method::Bye, cseq, &branch, &self.cfg.user_agent);
        let key = ClientKey { branch: branch.as_str().into(), method: KeyMethod::Other(Method::Bye) };
        let tx = ClientNonInvite::new(bye, dialog.flow.transport.is_reliable(), self.cfg.timers, now.instant);
        let side = if dialog.call_id == self.a.call_id { Side::A } else { Side::B };
        self.add_client(side, dialog.flow, key, ClientKind::NonInvite(tx), purpose, now);
    }

    fn dialog_mut(&mut self, side: Side) -> Option<&mut Dialog> {
        match side {
            Side::A => Some(&mut self.a),
            Side::B => self.b.as_mut(),
        }
    }

    /// Ends one leg with a BYE in its dialog.
    fn bye_leg(&mut self, side: Side, now: Now) {
        let Some(d) = self.dialog_mut(side) else { return };
        let cseq = d.next_cseq();
        let d = d.clone();
        self.send_bye(&d, cseq, Purpose::Bye, now);
    }

    fn drive_client(&mut self, idx: usize, now: Now) {
        let mut events = Vec::new();
        {
            let c = &mut self.clients[idx];
            loop {
                let o = match &mut c.kind {
                    ClientKind::Invite(t) => t.poll_output(),
                    ClientKind::NonInvite(t) => t.poll_output(),
                };
                match o {
                    Some(o) => events.push(o),
                    None => break,
                }
            }
        }
        for o in events {
            match o {
                Output::Transmit(b) => {
                    let (flow, id) = (self.clients[idx].flow, self.clients[idx].id);
                    self.send(flow, b, Some(id));
                }
                Output::Response(r) => self.on_client_response(idx, r, now),
                Output::Timeout => self.on_client_failure(idx, 408, now),
                Output::TransportError => self.on_client_failure(idx, 503, now),
                Output::Terminated => {
                    self.clients[idx].terminated = true;
                    self.check_done(now);
                }
            }
        }
    }

    fn on_client_failure(&mut self, idx: usize, status: u16, now: Now) {
        if let Purpose::Relay { from, key } = &self.clients[idx].purpose {
            let (from, key) = (*from, key.clone());
            self.reinvite_done_if_invite(idx);
            self.respond_server(&key, from, status, None, now);
        }
    }

    fn reinvite_done_if_invite(&mut self, idx: usize) {
        if matches!(self.clients[idx].kind, ClientKind::Invite(_)) {
            self.reinvite_in_progress = false;
        }
    }

    fn on_client_response(&mut self, idx: usize, resp: Response, now: Now) {
        let Purpose::Relay { from, key } = &self.clients[idx].purpose else {
            return; // BYE, CANCEL: nothing to do with the answer.
        };
        let (from, key) = (*from, key.clone());
        if resp.status < 200 {
            return;
        }
        let to = self.clients[idx].side;
        let is_invite = matches!(self.clients[idx].kind, ClientKind::Invite(_));
        if is_invite {
            self.reinvite_in_progress = false;
        }
        if is_invite && (200..300).contains(&resp.status) {
            let cseq = resp.cseq().and_then(Result::ok).map(|c| c.seq).unwrap_or(0);
            let has_sdp = is_sdp(&resp.headers, &resp.body);
            // An answer came back: ACK the side that answered now. An offer came back (the
            // re-INVITE had none): the ACK waits for the answer from the other side.
            let relayed_had_offer =
                self.servers.iter().find(|s| s.key == key).is_some_and(|s| is_sdp(&s.request.headers, &s.request.body));
            let role = if relayed_had_offer { SdpRole::Answer } else { SdpRole::Offer };
            let body = if has_sdp { self.anchor_for(from, &resp.body, role) } else { None };
            if relayed_had_offer || !has_sdp {
                if let Some(d) = self.dialog_mut(to).cloned() {
                    let ack = self.ack_request(d.clone(), cseq, None);
                    self.send(d.flow, ack, None);
                }
            } else {
                self.awaiting_answer = Some(AckAwaitingAnswer { side: to, cseq });
            }
            self.respond_server(&key, from, resp.status, body, now);
            return;
        }
        let body =
            if (200..300).contains(&resp.status) && !resp.body.is_empty() { Some(resp.body.clone()) } else { None };
        let ctype = resp.headers.get(&HeaderName::ContentType).map(|c| c.to_string());
        self.respond_server_with(&key, from, resp.status, body, ctype.as_deref(), now);
    }

    // ----- server transactions in dialogs -----

    fn respond_server(&mut self, key: &ServerKey, side: Side, status: u16, sdp: Option<Bytes>, now: Now) {
        self.respond_server_with(key, side, status, sdp, Some("application/sdp"), now);
    }

    fn respond_server_with(
        &mut self,
        key: &ServerKey,
        side: Side,
        status: u16,
        body: Option<Bytes>,
        content_type: Option<&str>,
        now: Now,
    ) {
        let Some(idx) = self.servers.iter().position(|s| &s.key == key && s.side == side) else { return };
        let local_tag = match side {
            Side::A => self.a.local_tag.clone(),
            Side::B => self.b_template.local_tag.clone(),
        };
        let s = &mut self.servers[idx];
        let mut resp = Response::to_request(&s.request, status, None, Some(&local_tag));
        decorate_response(&mut resp, &s.request, &s.reply_flow, &self.cfg.user_agent);
        if let Some(b) = body {
            resp.set_body(content_type.unwrap_or("application/sdp"), b);
        }
        let is_invite_2xx = matches!(s.kind, ServerKind::Invite(_)) && (200..300).contains(&status);
        match &mut s.kind {
            ServerKind::Invite(t) => t.respond(&resp, now.instant),
            ServerKind::NonInvite(t) => t.respond(&resp, now.instant),
        }
        if is_invite_2xx {
            let cseq = s.request.cseq().and_then(Result::ok).map(|c| c.seq).unwrap_or(0);
            self.pending_2xx.push(Pending2xx {
                side,
                cseq,
                flow: s.reply_flow,
                bytes: Bytes::from(resp.to_bytes()),
                next_at: now.instant + self.cfg.timers.t1,
                interval: self.cfg.timers.t1,
                give_up_at: now.instant + self.cfg.timers.t1x64(),
            });
        }
        self.drive_server(idx);
    }

    fn drive_server(&mut self, idx: usize) {
        loop {
            let s = &mut self.servers[idx];
            let o = match &mut s.kind {
                ServerKind::Invite(t) => t.poll_output(),
                ServerKind::NonInvite(t) => t.poll_output(),
            };
            let Some(o) = o else { break };
            match o {
                Output::Transmit(b) => {
                    let flow = self.servers[idx].reply_flow;
                    self.send(flow, b, None);
                }
                Output::Terminated => self.servers[idx].terminated = true,
                Output::Timeout | Output::TransportError | Output::Response(_) => {}
            }
        }
    }

    fn new_server(&mut self, req: &Request, info: &RequestInfo, side: Side, flow: Flow) -> ServerKey {
        let key = ServerKey::of(req, info);
        let reliable = flow.transport.is_reliable();
        let kind = if req.method == Method::Invite {
            ServerKind::Invite(ServerInvite::new(reliable, self.cfg.timers))
        } else {
            ServerKind::NonInvite(ServerNonInvite::new(reliable, self.cfg.timers))
        };
        self.servers.push(ServerTx {
            key: key.clone(),
            side,
            reply_flow: flow.response_flow(&info.via),
            request: req.clone(),
            kind,
            terminated: false,
        });
        key
    }

    /// Answers a request with a new server transaction (local answers: 200 BYE, 481...).
    fn answer(&mut self, req: &Request, info: &RequestInfo, side: Side, flow: Flow, status: u16, now: Now) {
        let key = self.new_server(req, info, side, flow);
        self.respond_server(&key, side, status, None, now);
    }

    // ----- inputs -----

    /// A request carrying one of this call's Call-IDs.
    pub fn handle_request(&mut self, req: Request, info: RequestInfo, flow: Flow, now: Now) {
        let side = if *info.call_id == *self.a.call_id {
            Side::A
        } else if *info.call_id == *self.b_template.call_id {
            Side::B
        } else {
            return;
        };
        // Retransmissions go to their transaction.
        let key = ServerKey::of(&req, &info);
        if side == Side::A && key == self.a_key {
            // Answer on the flow the retransmission came on (a phone may have reconnected).
            self.a_reply_flow = flow.response_flow(&info.via);
            if req.method == Method::Ack {
                if !self.a_tx.handle_ack(now.instant) {
                    self.on_ack(side, &req, &info, now);
                }
                self.drive_a_tx();
            } else if req.method == Method::Invite {
                self.a_tx.handle_retransmission();
                self.drive_a_tx();
            }
            return;
        }
        if let Some(idx) = self.servers.iter().position(|s| s.key == key && s.side == side) {
            self.servers[idx].reply_flow = flow.response_flow(&info.via);
            if req.method == Method::Ack {
                let absorbed = match &mut self.servers[idx].kind {
                    ServerKind::Invite(t) => t.handle_ack(now.instant),
                    ServerKind::NonInvite(_) => true,
                };
                if !absorbed {
                    self.on_ack(side, &req, &info, now);
                }
            } else {
                match &mut self.servers[idx].kind {
                    ServerKind::Invite(t) => t.handle_retransmission(),
                    ServerKind::NonInvite(t) => t.handle_retransmission(),
                }
            }
            self.drive_server(idx);
            return;
        }
        match req.method {
            Method::Ack => self.on_ack(side, &req, &info, now),
            Method::Cancel => self.on_cancel(side, &req, &info, flow, now),
            _ => self.on_in_dialog_request(side, req, info, flow, now),
        }
    }

    fn on_cancel(&mut self, side: Side, req: &Request, info: &RequestInfo, flow: Flow, now: Now) {
        let matches_invite = side == Side::A
            && match (&self.a_key, ServerKey::of(req, info)) {
                (ServerKey::Rfc3261 { branch, sent_by, .. }, ServerKey::Rfc3261 { branch: b2, sent_by: s2, .. }) => {
                    *branch == b2 && *sent_by == s2
                }
                (
                    ServerKey::Rfc2543 { call_id, from_tag, cseq, via, .. },
                    ServerKey::Rfc2543 { call_id: c2, from_tag: f2, cseq: q2, via: v2, .. },
                ) => *call_id == c2 && *from_tag == f2 && *cseq == q2 && *via == v2,
                _ => false,
            };
        if !matches_invite {
            self.answer(req, info, side, flow, 481, now);
            return;
        }
        self.answer(req, info, side, flow, 200, now);
        if self.a_invite_pending() && matches!(self.phase, Phase::Routing | Phase::Early) {
            self.respond_a(487, None, None, now);
            for i in 0..self.forks.len() {
                self.cancel_fork(i, now);
            }
            self.end(now, Disposition::Cancelled, "CANCEL".into(), Some(487), Initiator::Caller);
        }
    }

    fn on_ack(&mut self, side: Side, req: &Request, info: &RequestInfo, now: Now) {
        let cseq = info.cseq.seq;
        self.pending_2xx.retain(|p| !(p.side == side && p.cseq == cseq));
        if side == Side::A && self.phase == Phase::Answered {
            self.phase = Phase::Confirmed;
        }
        // A late offer's answer: forward it in the ACK that was waiting.
        if let Some(w) = self.awaiting_answer.take() {
            if w.side == side {
                // The ACK from the side that offered: keep waiting for the other side.
                self.awaiting_answer = Some(w);
                return;
            }
            let body = if is_sdp(&req.headers, &req.body) {
                self.anchor_for(w.side, &req.body, SdpRole::Answer)
            } else {
                None
            };
            if let Some(d) = self.dialog_mut(w.side).cloned() {
                let ack = self.ack_request(d.clone(), w.cseq, body);
                self.send(d.flow, ack, None);
            }
        }
        self.check_done(now);
    }

    fn dialog_matches(&self, side: Side, info: &RequestInfo) -> bool {
        let Some(to_tag) = info.to.tag() else { return false };
        match side {
            Side::A => to_tag == self.a.local_tag,
            Side::B => {
                self.b.as_ref().is_some_and(|b| to_tag == b.local_tag && info.from.tag() == b.remote_tag.as_deref())
            }
        }
    }

    fn on_in_dialog_request(&mut self, side: Side, req: Request, info: RequestInfo, flow: Flow, now: Now) {
        if req.method == Method::Invite && info.to.tag().is_none() {
            // Same Call-ID, no To tag, not the original INVITE: a merged request (§8.2.2.2).
            self.answer(&req, &info, side, flow, 482, now);
            return;
        }
        if !self.dialog_matches(side, &info) {
            if side == Side::A && req.method == Method::Bye && info.to.tag().is_none() {
                self.answer(&req, &info, side, flow, 481, now);
                return;
            }
            self.answer(&req, &info, side, flow, 481, now);
            return;
        }
        // CSeq must increase within a dialog (§12.2.2).
        if let Some(d) = self.dialog_mut(side) {
            if d.remote_cseq.is_some_and(|r| info.cseq.seq <= r) {
                self.answer(&req, &info, side, flow, 500, now);
                return;
            }
            d.remote_cseq = Some(info.cseq.seq);
        }
        match req.method {
            Method::Bye => self.on_bye(side, &req, &info, flow, now),
            Method::Info => {
                let content_type = req.headers.get(&HeaderName::ContentType).map(|v| v.to_string()).unwrap_or_default();
                if let Some((digit, duration_ms)) = crate::events::dtmf_from_info(&content_type, &req.body) {
                    let caller_leg = side == Side::A;
                    self.event(
                        now,
                        CallEventKind::Dtmf { caller_leg, digit, duration_ms, method: DtmfMethod::SipInfo },
                    );
                    // Converted for the other leg: answered here, not relayed.
                    if self.convert_dtmf(side, digit, duration_ms, DtmfMethod::SipInfo, now) {
                        self.answer(&req, &info, side, flow, 200, now);
                        return;
                    }
                }
                self.relay(side, req, info, flow, now)
            }
            Method::Invite | Method::Update | Method::Options | Method::Message => {
                self.relay(side, req, info, flow, now)
            }
            Method::Prack => self.answer(&req, &info, side, flow, 481, now),
            _ => self.answer(&req, &info, side, flow, 501, now),
        }
    }

    fn on_bye(&mut self, side: Side, req: &Request, info: &RequestInfo, flow: Flow, now: Now) {
        self.answer(req, info, side, flow, 200, now);
        match self.phase {
            Phase::Routing | Phase::Early if side == Side::A => {
                // The caller gave up on an early dialog: same as CANCEL.
                if self.a_invite_pending() {
                    self.respond_a(487, None, None, now);
                }
                for i in 0..self.forks.len() {
                    self.cancel_fork(i, now);
                }
                self.end(now, Disposition::Cancelled, "BYE before answer".into(), Some(487), Initiator::Caller);
            }
            Phase::Answered | Phase::Confirmed => {
                self.pending_2xx.retain(|p| p.side != side);
                self.bye_leg(side.other(), now);
                let initiator = if side == Side::A { Initiator::Caller } else { Initiator::Callee };
                self.end(now, Disposition::Answered, "BYE".into(), None, initiator);
            }
            _ => {}
        }
    }

    /// Relays a mid-dialog request to the other leg, SDP anchored.
    fn relay(&mut self, from: Side, req: Request, info: RequestInfo, flow: Flow, now: Now) {
        let to = from.other();
        if !matches!(self.phase, Phase::Answered | Phase::Confirmed) || self.dialog_mut(to).is_none() {
            let status = if req.method == Method::Invite { 491 } else { 481 };
            self.answer(&req, &info, from, flow, status, now);
            return;
        }
        let is_invite = req.method == Method::Invite;
        if is_invite && self.reinvite_in_progress {
            self.answer(&req, &info, from, flow, 491, now);
            return;
        }
        let key = self.new_server(&req, &info, from, flow);
        let has_sdp = is_sdp(&req.headers, &req.body);
        let body = if has_sdp {
            match self.anchor_for(to, &req.body, SdpRole::Offer) {
                Some(b) => Some((b, "application/sdp".to_owned())),
                None => {
                    self.respond_server(&key, from, 488, None, now);
                    return;
                }
            }
        } else if !req.body.is_empty() {
            let ct = req.headers.get(&HeaderName::ContentType).map(|c| c.to_string()).unwrap_or_default();
            Some((req.body.clone(), ct))
        } else {
            None
        };
        if is_invite {
            self.reinvite_in_progress = true;
            self.respond_server(&key, from, 100, None, now);
        }
        let Some(d) = self.dialog_mut(to) else { return };
        let cseq = d.next_cseq();
        let d = d.clone();
        let branch = self.ids.branch();
        let mut out = d.request(req.method.clone(), cseq, &branch, &self.cfg.user_agent);
        if let Some((b, ct)) = body {
            out.set_body(&ct, b);
        }
        let ckey = ClientKey { branch: branch.as_str().into(), method: KeyMethod::of(&req.method) };
        let reliable = d.flow.transport.is_reliable();
        let kind = if is_invite {
            ClientKind::Invite(ClientInvite::new(out, reliable, self.cfg.timers, now.instant))
        } else {
            ClientKind::NonInvite(ClientNonInvite::new(out, reliable, self.cfg.timers, now.instant))
        };
        self.add_client(to, d.flow, ckey, kind, Purpose::Relay { from, key }, now);
    }

    /// A response to one of this call's client transactions.
    pub fn handle_response(&mut self, resp: Response, _info: ResponseInfo, now: Now) {
        let Some(key) = ClientKey::of_response(&resp) else { return };
        if key.method == KeyMethod::Invite
            && let Some(idx) = self.forks.iter().position(|f| *f.branch == *key.branch)
        {
            self.forks[idx].tx.handle_response(resp, now.instant);
            self.drive_fork(idx, now);
            return;
        }
        if let Some(idx) = self.clients.iter().position(|c| c.key == key) {
            match &mut self.clients[idx].kind {
                ClientKind::Invite(t) => t.handle_response(resp, now.instant),
                ClientKind::NonInvite(t) => t.handle_response(resp, now.instant),
            }
            self.drive_client(idx, now);
        }
    }

    /// A send reported by [`CallOutput::Send`] failed.
    pub fn handle_send_error(&mut self, tx: TxId, now: Now) {
        if let Some(idx) = self.forks.iter().position(|f| f.id == tx) {
            self.forks[idx].tx.handle_transport_error();
            self.drive_fork(idx, now);
        } else if let Some(idx) = self.clients.iter().position(|c| c.id == tx) {
            match &mut self.clients[idx].kind {
                ClientKind::Invite(t) => t.handle_transport_error(),
                ClientKind::NonInvite(t) => t.handle_transport_error(),
            }
            self.drive_client(idx, now);
        }
    }

    /// Timers.
    pub fn handle_timeout(&mut self, now: Now) {
        let t = now.instant;
        if !self.a_tx_done && self.a_tx.poll_timeout().is_some_and(|d| d <= t) {
            self.a_tx.handle_timeout(t);
            self.drive_a_tx();
        }
        for i in 0..self.forks.len() {
            if !self.forks[i].terminated && self.forks[i].tx.poll_timeout().is_some_and(|d| d <= t) {
                self.forks[i].tx.handle_timeout(t);
                self.drive_fork(i, now);
            }
        }
        for i in 0..self.clients.len() {
            let due = match &self.clients[i].kind {
                ClientKind::Invite(x) => x.poll_timeout(),
                ClientKind::NonInvite(x) => x.poll_timeout(),
            }
            .is_some_and(|d| d <= t);
            if due && !self.clients[i].terminated {
                match &mut self.clients[i].kind {
                    ClientKind::Invite(x) => x.handle_timeout(t),
                    ClientKind::NonInvite(x) => x.handle_timeout(t),
                }
                self.drive_client(i, now);
            }
        }
        for i in 0..self.servers.len() {
            let due = match &self.servers[i].kind {
                ServerKind::Invite(x) => x.poll_timeout(),
                ServerKind::NonInvite(x) => x.poll_timeout(),
            }
            .is_some_and(|d| d <= t);
            if due && !self.servers[i].terminated {
                match &mut self.servers[i].kind {
                    ServerKind::Invite(x) => x.handle_timeout(t),
                    ServerKind::NonInvite(x) => x.handle_timeout(t),
                }
                self.drive_server(i);
            }
        }
        // 2xx retransmissions; no ACK at all within 64*T1 ends the call (§13.3.1.4).
        let mut give_up = false;
        let mut resend = Vec::new();
        for p in &mut self.pending_2xx {
            if p.give_up_at <= t {
                give_up = true;
                continue;
            }
            if p.next_at <= t {
                resend.push((p.flow, p.bytes.clone()));
                p.interval = (p.interval * 2).min(self.cfg.timers.t2);
                p.next_at = t + p.interval;
            }
        }
        self.pending_2xx.retain(|p| p.give_up_at > t);
        for (flow, bytes) in resend {
            self.send(flow, bytes, None);
        }
        if give_up && matches!(self.phase, Phase::Answered | Phase::Confirmed) {
            self.hang_up_both(now, "no ACK");
        }
        if matches!(self.phase, Phase::Routing | Phase::Early) && self.ring_deadline.is_some_and(|d| d <= t) {
            self.ring_deadline = None;
            if self.a_invite_pending() {
                self.respond_a(480, Some("No Answer"), None, now);
            }
            for i in 0..self.forks.len() {
                self.cancel_fork(i, now);
            }
            self.end(now, Disposition::NoAnswer, "ring timeout".into(), Some(480), Initiator::System);
        }
        self.check_done(now);
    }

    /// The relay saw no media for too long: hang up both legs.
    pub fn handle_media_timeout(&mut self, now: Now) {
        if matches!(self.phase, Phase::Answered | Phase::Confirmed) {
            self.hang_up_both(now, "media timeout");
        }
    }

    /// Switchboard is stopping: end the call now (BYE if answered, otherwise 503 to the
    /// caller and CANCEL to the callee's phones).
    pub fn shutdown(&mut self, now: Now) {
        match self.phase {
            Phase::Routing | Phase::Early => {
                if self.a_invite_pending() {
                    self.respond_a(503, Some("Shutting Down"), None, now);
                }
                for i in 0..self.forks.len() {
                    self.cancel_fork(i, now);
                }
                self.end(now, Disposition::Failed, "shutdown".into(), Some(503), Initiator::System);
            }
            Phase::Answered | Phase::Confirmed => self.hang_up_both(now, "shutdown"),
            Phase::Ending | Phase::Done => {}
        }
    }

    fn hang_up_both(&mut self, now: Now, cause: &str) {
        self.pending_2xx.clear();
        self.bye_leg(Side::A, now);
        self.bye_leg(Side::B, now);
        self.end(now, Disposition::Answered, cause.to_owned(), None, Initiator::System);
    }

    fn end(&mut self, now: Now, disposition: Disposition, cause: String, status: Option<u16>, initiator: Initiator) {
        if !self.ended {
            self.ended = true;
            self.event(
                now,
                CallEventKind::Ended { disposition, cause, status, initiator, media: None, recording: None },
            );
        }
        self.phase = Phase::Ending;
        // Transactions finish on their own; this bounds how long the call lingers.
        self.linger_until = Some(now.instant + self.cfg.timers.t1x64() + self.cfg.timers.t4);
        self.check_done(now);
    }

    fn check_done(&mut self, now: Now) {
        if self.phase != Phase::Ending {
            return;
        }
        let busy = (!self.a_tx_done && !matches!(self.a_tx.state(), ServerInviteState::Accepted))
            || self.forks.iter().any(|f| !f.terminated && matches!(f.status, ForkStatus::Calling | ForkStatus::Early))
            || self.clients.iter().any(|c| !c.terminated)
            || self.servers.iter().any(|s| !s.terminated && matches!(s.kind, ServerKind::NonInvite(_)));
        if !busy || self.linger_until.is_some_and(|l| l <= now.instant) {
            self.phase = Phase::Done;
        }
    }
}

/// Where the sender of `original` receives, as it said itself (`None` on hold with a null
/// address): not read from the rewritten SDP, which may list formats added for the other leg,
/// telephone-events among them.
fn sender_endpoint(original: &[u8]) -> Option<MediaEndpoint> {
    sdp::audio_endpoint(original).ok().flatten()
}

/// True for an SDP that holds media: a direction other than sendrecv, or a null address.
fn is_hold(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    text.lines().any(|l| {
        let l = l.trim();
        l == "a=sendonly" || l == "a=recvonly" || l == "a=inactive" || l.starts_with("c=IN IP4 0.0.0.0")
    })
}

/// The response the caller gets when every fork failed, and the disposition.
fn best_failure(statuses: &[u16]) -> (u16, Disposition) {
    if let Some(&s) = statuses.iter().find(|s| **s >= 600) {
        let d = if s == 600 { Disposition::Busy } else { Disposition::Failed };
        return (s, d);
    }
    if statuses.contains(&486) {
        return (486, Disposition::Busy);
    }
    if statuses.contains(&488) {
        return (488, Disposition::Failed);
    }
    if statuses.iter().all(|s| *s == 487) {
        return (487, Disposition::Cancelled);
    }
    // Timeouts, unreachable phones, redirects and challenges all look the same to the
    // caller: the callee cannot be reached now.
    (480, Disposition::NoAnswer)
}

#[cfg(test)]
mod tests;
