//! The dispatcher: every message received goes through here, on the transport's task.
//! It parses, validates, answers malformed requests, and routes the rest: to the call
//! that owns the Call-ID, or to the door shard of the Call-ID.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pbx::call::CallConfig;
use pbx::call::TxId;
use pbx::door::{Door, DoorOutput};
use pbx::flow::Flow;
use pbx::ids::IdGen;
use pbx::location::Location;
use sip::{
    Datagram, HeaderName, Headers, Limits, Message, Method, ParseError, Request, RequestInfo, Response, ResponseInfo,
    copy_dialog_headers, parse_datagram, validate_request, validate_response,
};
use tokio::sync::{Notify, mpsc};
use tracing::debug;

use crate::events::EventBus;
use crate::tasks;
use crate::transport::Transports;
use crate::writer::{Reply, WriteOp};

/// A validated request and the flow it came on (boxed: channels move it once).
#[derive(Debug)]
pub struct InboundRequest {
    /// The request.
    pub req: Request,
    /// Its parsed headers.
    pub info: RequestInfo,
    /// Where it came from.
    pub flow: Flow,
}

/// A message for a call task.
#[derive(Debug)]
pub enum CallMsg {
    /// A request with one of the call's Call-IDs.
    Request(Box<InboundRequest>),
    /// A response with one of the call's Call-IDs.
    Response(Box<(Response, ResponseInfo)>),
    /// A send of this transaction failed.
    SendError(TxId),
    /// The relay noticed something in the call's media (a DTMF digit).
    Media(media::MediaEvent),
    /// Switchboard is stopping.
    Shutdown,
}

const CALL_SHARDS: usize = 64;

/// Call-ID → call task, for both legs of every live call.
#[derive(Debug)]
pub struct CallRegistry {
    shards: Vec<Mutex<pbx::FastMap<String, mpsc::UnboundedSender<CallMsg>>>>,
    live: AtomicU64,
}

impl Default for CallRegistry {
    fn default() -> CallRegistry {
        CallRegistry {
            shards: (0..CALL_SHARDS).map(|_| Mutex::new(pbx::FastMap::default())).collect(),
            live: AtomicU64::new(0),
        }
    }
}

fn hash(s: &str) -> u64 {
    // FNV-1a: cheap, and Call-IDs are not attacker-chosen keys of a shared table here
    // beyond spreading load.
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl CallRegistry {
    fn shard(&self, call_id: &str) -> &Mutex<pbx::FastMap<String, mpsc::UnboundedSender<CallMsg>>> {
        &self.shards[(hash(call_id) % CALL_SHARDS as u64) as usize]
    }

    /// Routes `call_id` to a call task.
    pub fn insert(&self, call_ids: &[&str], tx: mpsc::UnboundedSender<CallMsg>) {
        for id in call_ids {
            if let Ok(mut m) = self.shard(id).lock() {
                m.insert((*id).to_owned(), tx.clone());
            }
        }
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets a call.
    pub fn remove(&self, call_ids: &[String]) {
        for id in call_ids {
            if let Ok(mut m) = self.shard(id).lock() {
                m.remove(id);
            }
        }
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// The call task for a Call-ID.
    pub fn get(&self, call_id: &str) -> Option<mpsc::UnboundedSender<CallMsg>> {
        self.shard(call_id).lock().ok().and_then(|m| m.get(call_id).cloned())
    }

    /// Number of live calls.
    pub fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// Every call task (for shutdown).
    pub fn all(&self) -> Vec<mpsc::UnboundedSender<CallMsg>> {
        let mut v: Vec<_> = Vec::new();
        for s in &self.shards {
            if let Ok(m) = s.lock() {
                v.extend(m.values().cloned());
            }
        }
        v
    }
}

/// Counters of the dispatcher.
#[derive(Debug, Default)]
pub struct CoreStats {
    /// Messages that failed to parse or validate (answered or dropped).
    pub malformed: AtomicU64,
    /// Malformed messages dropped without an answer.
    pub dropped: AtomicU64,
    /// Responses that matched no call.
    pub stray_responses: AtomicU64,
}

/// One door shard: the sans-IO door behind a mutex, run inline by whichever task has a
/// request for it (no hop to another task), and a timer task woken when its earliest
/// deadline moves closer.
pub struct DoorShard {
    door: Mutex<Door>,
    /// Deadline the timer task sleeps until, in nanoseconds after `Core::epoch`.
    armed: AtomicU64,
    wake: Notify,
}

impl std::fmt::Debug for DoorShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoorShard").finish_non_exhaustive()
    }
}

impl DoorShard {
    /// A shard around a door.
    pub fn new(door: Door) -> DoorShard {
        DoorShard { door: Mutex::new(door), armed: AtomicU64::new(u64::MAX), wake: Notify::new() }
    }
}

/// Everything the tasks share: transports, live calls, door shards, the relay, the store
/// writer, the event bus and the settings calls need.
pub struct Core {
    /// Transports.
    pub transports: Arc<Transports>,
    /// Live calls.
    pub calls: CallRegistry,
    /// Door shards.
    pub doors: Vec<DoorShard>,
    /// Parser limits.
    pub limits: Limits,
    /// Counters.
    pub stats: CoreStats,
    /// Set once shutdown began: new calls are refused.
    pub shutting_down: AtomicBool,
    /// Server header text.
    pub server_name: String,
    /// Media relay.
    pub relay: media::Relay,
    /// Store writer.
    pub writer: mpsc::UnboundedSender<WriteOp>,
    /// Event bus.
    pub events: EventBus,
    /// Call settings.
    pub call_cfg: CallConfig,
    /// End answered calls whose media is silent this long.
    pub media_timeout: Option<Duration>,
    /// Quality events every this long (None: off).
    pub quality_interval: Option<Duration>,
    /// MOS alert threshold (0: off).
    pub mos_alert_threshold: f64,
    /// Where answered calls are recorded, when they are.
    pub recordings: Option<std::path::PathBuf>,
    /// What a recording holds.
    pub record_mode: media::record::RecordMode,
    /// Music on hold, if any.
    pub music_on_hold: Option<media::player::Source>,
    /// Opus encoder complexity for transcoded legs.
    pub opus_complexity: u8,
    /// The spoken prompts (system, and each tenant's replacements).
    pub prompts: Arc<audio::prompts::PromptLibrary>,
    /// Location service.
    pub location: Arc<Location>,
    /// Identifier generator (forked per call).
    pub ids: Mutex<IdGen>,
    /// Origin of the door shards' armed deadlines.
    pub epoch: Instant,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("live_calls", &self.calls.live()).finish_non_exhaustive()
    }
}

impl Core {
    /// One UDP datagram.
    pub fn on_datagram(self: &Arc<Self>, data: Bytes, flow: Flow) {
        match parse_datagram(data, &self.limits) {
            Ok(Datagram::Message(m)) => self.on_message(m, flow),
            Ok(Datagram::KeepAlive) => {}
            Err(e) => self.on_parse_error(e, flow),
        }
    }

    /// A message that could not be parsed: answered when it was a request whose headers
    /// could be read, dropped otherwise. Counted either way.
    pub fn on_parse_error(&self, e: ParseError, flow: Flow) {
        self.stats.malformed.fetch_add(1, Ordering::Relaxed);
        debug!(error = %e, remote = %flow.remote, "malformed message");
        match e.request_headers {
            Some(headers) if headers.get(&HeaderName::Via).is_some() => {
                let (status, reason) = e.kind.response();
                self.reply_stateless(&headers, status, &reason, flow, None);
            }
            _ => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Answers without a transaction (for requests too broken to have one).
    fn reply_stateless(
        &self,
        req_headers: &Headers,
        status: u16,
        reason: &str,
        flow: Flow,
        extra: Option<(HeaderName, &str)>,
    ) {
        let mut r = Response::new(status, Some(reason));
        copy_dialog_headers(req_headers, &mut r.headers, Some("sb-err"));
        if let Some((name, value)) = extra {
            r.headers.push(name, value.to_owned());
        }
        if !self.server_name.is_empty() {
            r.headers.push(HeaderName::Server, self.server_name.clone());
        }
        // Reply to where the top Via says, when it can be read; otherwise to the source.
        let to = match r.top_via() {
            Some(Ok(via)) => flow.response_flow(&via),
            _ => flow,
        };
        self.transports.send(to, Bytes::from(r.to_bytes()), None);
    }

    /// A parsed message.
    pub fn on_message(self: &Arc<Self>, msg: Message, flow: Flow) {
        match msg {
            Message::Request(r) => self.on_request(r, flow),
            Message::Response(r) => self.on_response(r),
        }
    }

    fn on_request(self: &Arc<Self>, req: Request, flow: Flow) {
        // Unknown methods get 501 even when other checks would fail (RFC 4475 §3.1.2.18).
        if matches!(req.method, Method::Extension(_)) && req.headers.get(&HeaderName::Via).is_some() {
            let known_calls = req.call_id().and_then(|c| self.calls.get(c)).is_some();
            if !known_calls {
                self.reply_stateless(&req.headers, 501, "Not Implemented", flow, Some((HeaderName::Allow, pbx::ALLOW)));
                return;
            }
        }
        let info = match validate_request(&req) {
            Ok(i) => i,
            Err(kind) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                if req.method == Method::Ack || req.headers.get(&HeaderName::Via).is_none() {
                    // ACKs are never answered.
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let (status, reason) = kind.response();
                self.reply_stateless(&req.headers, status, &reason, flow, None);
                return;
            }
        };
        if let Some(call) = self.calls.get(&info.call_id) {
            let _ = call.send(CallMsg::Request(Box::new(InboundRequest { req, info, flow })));
            return;
        }
        if req.method == Method::Invite && info.to.tag().is_none() && self.shutting_down.load(Ordering::Relaxed) {
            self.reply_stateless(&req.headers, 503, "Shutting Down", flow, Some((HeaderName::RetryAfter, "30")));
            return;
        }
        let shard = (hash(&info.call_id) % self.doors.len() as u64) as usize;
        self.run_door(shard, |core, door| {
            // Checked again under the shard lock, where calls are registered: a retransmission
            // racing its INVITE's call start reaches the call, never a second door pass.
            match core.calls.get(&info.call_id) {
                Some(call) => {
                    let _ = call.send(CallMsg::Request(Box::new(InboundRequest { req, info, flow })));
                }
                None => door.handle_request(req, info, flow, tasks::now()),
            }
        });
    }

    /// Runs `f` on a door shard and does what the door asks, all under the shard's lock (the
    /// work is short and never waits: sends are non-blocking, persistence is queued).
    pub fn run_door(self: &Arc<Self>, shard: usize, f: impl FnOnce(&Arc<Self>, &mut Door)) {
        let s = &self.doors[shard];
        let mut door = match s.door.lock() {
            Ok(d) => d,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(self, &mut door);
        while let Some(o) = door.poll_output() {
            match o {
                DoorOutput::Send { flow, bytes } => self.transports.send(flow, bytes, None),
                DoorOutput::Persist { token, changes } => {
                    let changes = changes.into_iter().map(tasks::to_store).collect();
                    if self.writer.send(WriteOp::Bindings(changes, Reply::Door(shard, token))).is_err() {
                        door.persisted(token, false, tasks::now());
                    }
                }
                DoorOutput::StartCall(nc) => tasks::start_call(self, *nc, tasks::now()),
            }
        }
        if let Some(at) = door.poll_timeout() {
            let at = at.saturating_duration_since(self.epoch).as_nanos() as u64;
            if at < s.armed.load(Ordering::Relaxed) {
                s.armed.store(at, Ordering::Relaxed);
                s.wake.notify_one();
            }
        }
    }

    /// The timer task of one door shard.
    pub async fn door_timers(self: Arc<Self>, shard: usize) {
        loop {
            let s = &self.doors[shard];
            let armed = s.armed.load(Ordering::Relaxed);
            let deadline = if armed == u64::MAX {
                tokio::time::Instant::now() + Duration::from_secs(3600)
            } else {
                tokio::time::Instant::from_std(self.epoch + Duration::from_nanos(armed))
            };
            tokio::select! {
                _ = s.wake.notified() => continue,
                _ = tokio::time::sleep_until(deadline) => {}
            }
            s.armed.store(u64::MAX, Ordering::Relaxed);
            self.run_door(shard, |_, door| door.handle_timeout(tasks::now()));
        }
    }

    fn on_response(&self, resp: Response) {
        let Ok(info) = validate_response(&resp) else {
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match self.calls.get(&info.call_id) {
            Some(call) => {
                let _ = call.send(CallMsg::Response(Box::new((resp, info))));
            }
            None => {
                self.stats.stray_responses.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
