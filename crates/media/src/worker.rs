//! One relay worker thread: a `mio::Poll` over the sockets it owns, and an inbox of
//! commands shared with call control.
//!
//! Each session lives on exactly one worker, which alone reads its sockets, runs its
//! [`Router`] and writes its counters, so the packet path takes no lock and shares no
//! mutable state between threads.
//!
//! # Pairs and sessions
//!
//! The worker owns RTP/RTCP socket *pairs* (one per side of a session), registered with
//! its poll for as long as they are open. A pair is either used by a session or idle: a
//! dropped session's pairs stay open and registered, whatever arrives on them is read and
//! discarded, and they wait in the worker's [`IdleSet`] until a later session takes them
//! (or the set's cap closes them). A session is two pairs plus its router and counters.
//!
//! # Inbox and wake-ups
//!
//! Call control queues [`Command`]s in the worker's inbox under a mutex, which also guards
//! the idle set (so that "pair P is idle" and "session S is removed" change together, in
//! the order the worker applies them) and a `parked` flag. The worker applies every queued
//! command each time it wakes, whatever woke it, before it reads any socket. Because every
//! datagram on one of its sockets wakes it, a command whose only effect is on how later
//! datagrams are handled need not wake it at all:
//!
//! * [`Wake::Lazy`] (adding a session made of idle pairs, which are registered already;
//!   removing a session): queued only. A parked worker is woken once that many such
//!   commands wait ([`LAZY_BATCH`]), which bounds the inbox.
//! * [`Wake::Prompt`] (a peer address, forwarding on or off, new sockets to register,
//!   sockets to close): wakes the worker only if it is parked, that is, blocked (or about
//!   to block) in `epoll_wait` without a timeout. A worker that is not parked applies the
//!   command before it next blocks: it is busy or in its coalescing pause (within
//!   [`RelayConfig::coalesce`](crate::RelayConfig::coalesce) plus one batch of ready
//!   sockets), or lingering (within [`LINGER`]).
//! * [`Wake::Now`] (shutdown): wakes it in any case.
//!
//! A worker that has just applied commands while more keep coming (the previous ones
//! came less than [`LINGER`] earlier, or during its last linger window) does not park:
//! it polls with a timeout until [`LINGER`] after the last of them. Commands queued
//! meanwhile cost no wake-up; under a steady stream of call set-ups the worker wakes
//! once per window instead of once per command. After an isolated command it parks at
//! once, so a trickle of calls costs no extra timer wake-ups.
//!
//! The worker decides to park under the inbox lock, having found the inbox empty; a
//! command queued after that finds `parked` set and wakes it, and clears the flag so
//! that only the first one pays for the wake-up. No wake-up is lost.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::conference::{ConferenceState, FRAME as MIX_FRAME, MemberInput, TICK};
use crate::idle::{IdlePair, IdleSet};
use crate::player::{PlayCodec, Player, Source};
use crate::pool::PortLease;
use crate::quality::QualityMonitor;
use crate::record::RecordTap;
use crate::router::{Action, DropReason, Kind, Router, is_rtcp, side_index};
use crate::rtp::payload_range;
use crate::stats::{RxTally, SharedStats};
use crate::sys::{BATCH, RecvBatch, SendBatch, send_one};
use crate::transcode::{Outbox, Transcoder};
use crate::{EventSink, MediaEvent, PeerMedia, Side, TelephoneEventType, TranscodePlan};
use audio::dtmf::{DtmfDetector, DtmfEvent};
use audio::g711::Law;
use audio::telephone_event::{EventNotice, EventPayload, EventReceiver, digit_for_event};

const WAKER: Token = Token(usize::MAX);

/// Receive batches taken from one socket before the other ready sockets get their turn.
const MAX_BATCHES_PER_TURN: usize = 8;

/// Events taken per poll.
const EVENTS: usize = 1024;

/// Lazy commands that may wait in a parked worker's inbox before one of them wakes it.
pub(crate) const LAZY_BATCH: usize = 64;

/// Rounds of inbox draining before the worker polls again without blocking (commands
/// keep arriving while it applies them).
const MAX_DRAINS: usize = 4;

/// How long a worker that is applying a stream of commands polls with a timeout instead
/// of parking: commands queued meanwhile (call set-ups come in streams) need no wake-up,
/// and wait at most this long.
const LINGER: Duration = Duration::from_millis(4);

/// What [`Worker::drain_inbox`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drained {
    /// The inbox was empty and the worker is now parked.
    Parked,
    /// The inbox is empty (possibly after applying commands); not parked.
    Empty,
    /// Commands keep coming (or a shutdown was applied).
    More,
}

/// Index of a side's socket in a session's socket array (A RTP, A RTCP, B RTP, B RTCP).
pub(crate) fn socket_index(side: Side, kind: Kind) -> usize {
    side_index(side) * 2 + kind.index()
}

/// The side of index `i` in a session's pair array.
fn side_of(i: usize) -> Side {
    if i == 0 { Side::A } else { Side::B }
}

/// A newly bound RTP/RTCP pair, handed to a worker.
#[derive(Debug)]
pub(crate) struct FreshPair {
    /// Relay-wide id of the pair.
    pub(crate) id: u64,
    /// RTP and RTCP sockets. Declared before `lease` so they are closed first.
    pub(crate) sockets: [StdUdpSocket; 2],
    /// The port pair, given back when dropped.
    pub(crate) lease: PortLease,
}

/// Where one side of a new session gets its sockets.
#[derive(Debug)]
pub(crate) enum PairSource {
    /// An idle pair of this worker, taken from its idle set.
    Idle(u64),
    /// Sockets just bound, to register.
    Fresh(FreshPair),
}

/// A session handed to its worker.
#[derive(Debug)]
pub(crate) struct NewSession {
    pub(crate) id: u64,
    pub(crate) stats: Arc<SharedStats>,
    /// Side A's and side B's pairs.
    pub(crate) sides: [PairSource; 2],
}

/// What call control asks of a worker.
#[derive(Debug)]
pub(crate) enum Command {
    /// Start relaying a new session.
    Add(Box<NewSession>),
    /// Stop relaying a session; its pairs, already in the idle set, become idle.
    Remove(u64),
    /// A side's peer media address from SDP.
    SetPeer(u64, Side, PeerMedia),
    /// Turn forwarding toward a side on or off.
    SetForwarding(u64, Side, bool),
    /// Where the session's media events go.
    SetSink(u64, Sink),
    /// The telephone-event payload types a side declared.
    SetTelephoneEvents(u64, Side, [Option<TelephoneEventType>; 2]),
    /// Transcode the session's RTP, or stop.
    SetTranscoding(u64, Option<TranscodePlan>),
    /// Encrypt a side's media (SRTP), or stop.
    SetSrtp(u64, Side, Option<Box<SrtpLeg>>),
    /// Start a conference.
    ConferenceStart(u64),
    /// End a conference (its members are relayed again).
    ConferenceEnd(u64),
    /// Make a side of a session a member of a conference.
    Join(u64, u64, Side, crate::MemberSettings),
    /// Change a member's settings.
    SetMember(u64, Side, crate::MemberSettings),
    /// Take a side out of its conference.
    Leave(u64, Side),
    /// Record the session's audio through this tap.
    StartRecording(u64, Tap),
    /// Stop recording (the writer then finishes the file).
    StopRecording(u64),
    /// Play this into a side (instead of what the other side sends), or stop.
    Play(u64, Side, Option<Source>),
    /// Close idle pairs (removed from the idle set), returning their ports.
    Close(Vec<u64>),
    /// Close everything and end the thread.
    Shutdown,
}

/// The SRTP contexts of an encrypted side, and a buffer to convert its packets in.
pub(crate) struct SrtpLeg {
    /// Decrypts what the side's phone sends.
    pub(crate) inbound: srtp::Context,
    /// Encrypts what the relay sends to it.
    pub(crate) outbound: srtp::Context,
    scratch: Vec<u8>,
}

impl SrtpLeg {
    pub(crate) fn new(keys: &crate::SrtpKeys) -> SrtpLeg {
        SrtpLeg {
            inbound: srtp::Context::new(&keys.inbound),
            outbound: srtp::Context::new(&keys.outbound),
            scratch: Vec::with_capacity(crate::sys::BUF_SIZE),
        }
    }

    /// Decrypts datagram `i` of `recv` in place. `Err(true)` (nothing changed) if it fails
    /// authentication or replays an earlier one, `Err(false)` if it is too short to be
    /// SRTP or SRTCP at all (such as a plain RTCP keep-alive).
    fn open(&mut self, recv: &mut RecvBatch, i: usize, kind: Kind) -> Result<(), bool> {
        let (data, _, _) = recv.get(i);
        let done = if kind == Kind::Rtcp || is_rtcp(data) {
            self.inbound.unprotect_rtcp(data, &mut self.scratch)
        } else {
            self.inbound.unprotect_rtp(data, &mut self.scratch)
        };
        match done {
            Ok(()) if recv.replace(i, &self.scratch) => Ok(()),
            Ok(()) | Err(srtp::SrtpError::Truncated) => Err(false),
            Err(_) => Err(true),
        }
    }

    /// Encrypts datagram `i` of `recv` in place; its new length, or `None` if it cannot be.
    fn seal(&mut self, recv: &mut RecvBatch, i: usize, rtcp: bool) -> Option<usize> {
        let (data, _, _) = recv.get(i);
        let done = if rtcp {
            self.outbound.protect_rtcp(data, &mut self.scratch)
        } else {
            self.outbound.protect_rtp(data, &mut self.scratch)
        };
        (done.is_ok() && recv.replace(i, &self.scratch)).then_some(self.scratch.len())
    }

    /// Encrypts a packet (RTP, or an RTCP report) the relay made itself.
    fn seal_made<'a>(&'a mut self, packet: &[u8], rtcp: bool) -> Option<&'a [u8]> {
        let done = if rtcp {
            self.outbound.protect_rtcp(packet, &mut self.scratch)
        } else {
            self.outbound.protect_rtp(packet, &mut self.scratch)
        };
        done.ok().map(|()| self.scratch.as_slice())
    }
}

impl std::fmt::Debug for SrtpLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SrtpLeg")
    }
}

/// A recording tap, in a command.
pub(crate) struct Tap(pub(crate) Box<RecordTap>);

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tap")
    }
}

/// A session's event sink, in a command.
pub(crate) struct Sink(pub(crate) EventSink);

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

/// How soon a queued command needs the worker (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// At its next wake-up, whatever causes it.
    Lazy,
    /// Wake it if it is parked.
    Prompt,
    /// Wake it in any case (shutdown: not even the linger window is waited for).
    Now,
}

/// What call control and the worker share, under one lock.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    inbox: Vec<Command>,
    /// The worker is blocked (or about to block) in `epoll_wait` without a timeout and
    /// nobody has woken it yet.
    parked: bool,
    /// The worker has ended: nothing is queued any more.
    closed: bool,
    /// The worker's idle pairs.
    pub(crate) idle: IdleSet,
    /// Pairs the worker closed on its own (their registration failed) while a session
    /// handle still names them: not to be put in the idle set when that handle drops.
    dead: Vec<u64>,
}

impl Shared {
    /// Whether the worker has ended.
    pub(crate) fn closed(&self) -> bool {
        self.closed
    }
}

/// Call control's side of a worker: its inbox, idle set and waker.
#[derive(Debug)]
pub(crate) struct WorkerHandle {
    shared: Mutex<Shared>,
    waker: Waker,
    /// Idle pairs this worker keeps at most.
    max_idle_pairs: usize,
}

impl WorkerHandle {
    /// Locks the inbox and idle set.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        // Nothing panics while holding the lock; if something did, the state is still
        // consistent (each change is a push or pop).
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `cmd` in the locked inbox; gives it back if the worker is gone. Returns
    /// whether the worker must be woken (with [`WorkerHandle::wake`], after unlocking).
    pub(crate) fn push(&self, s: &mut Shared, cmd: Command, wake: Wake) -> Result<bool, Command> {
        if s.closed {
            return Err(cmd);
        }
        s.inbox.push(cmd);
        let wake = match wake {
            Wake::Lazy => s.parked && s.inbox.len() >= LAZY_BATCH,
            Wake::Prompt => s.parked,
            Wake::Now => true,
        };
        if wake {
            // One wake-up per park: later commands find the worker about to drain.
            s.parked = false;
        }
        Ok(wake)
    }

    /// Wakes the worker if `needed`.
    pub(crate) fn wake(&self, needed: bool) {
        if needed {
            // A failed wake means the poll is gone too; the worker then ends and drops
            // what is queued, which releases what it holds.
            let _ = self.waker.wake();
        }
    }

    /// Queues `cmd` and wakes the worker as `wake` says; gives the command back if the
    /// worker is gone.
    pub(crate) fn send(&self, cmd: Command, wake: Wake) -> Result<(), Command> {
        let needed = self.push(&mut self.lock(), cmd, wake)?;
        self.wake(needed);
        Ok(())
    }

    /// A session handle is dropped: its pairs (address, RTP port, id per side) become
    /// idle from now, the oldest idle pairs beyond the cap are closed, and the worker is
    /// told (lazily) to stop relaying the session.
    pub(crate) fn release(&self, session: u64, pairs: [(IpAddr, u16, u64); 2]) {
        let mut s = self.lock();
        if s.closed {
            return;
        }
        // Taken under the lock: idle pairs enter the set in time order.
        let now = Instant::now();
        for (ip, port, id) in pairs {
            if let Some(i) = s.dead.iter().position(|&d| d == id) {
                s.dead.swap_remove(i);
                continue;
            }
            s.idle.push(ip, IdlePair { id, port, since: now });
        }
        let surplus = s.idle.trim(self.max_idle_pairs);
        // Remove before Close: the worker detaches the pairs, then closes the surplus.
        let mut needed = self.push(&mut s, Command::Remove(session), Wake::Lazy).unwrap_or(false);
        if !surplus.is_empty() {
            needed |= self.push(&mut s, Command::Close(surplus), Wake::Prompt).unwrap_or(false);
        }
        drop(s);
        self.wake(needed);
    }
}

/// Settings a worker needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WorkerConfig {
    pub(crate) relatch_after: Duration,
    pub(crate) coalesce: Duration,
    /// Idle pairs the worker keeps at most.
    pub(crate) max_idle_pairs: usize,
    /// Detect in-band DTMF on sides without telephone-events.
    pub(crate) inband_dtmf: bool,
}

/// Starts worker thread `index`. `discarded` counts datagrams read on idle sockets.
pub(crate) fn spawn(
    index: usize,
    cfg: WorkerConfig,
    discarded: Arc<AtomicU64>,
) -> io::Result<(Arc<WorkerHandle>, JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let handle =
        Arc::new(WorkerHandle { shared: Mutex::new(Shared::default()), waker, max_idle_pairs: cfg.max_idle_pairs });
    let mine = Arc::clone(&handle);
    let thread = std::thread::Builder::new()
        .name(format!("media-worker-{index}"))
        .spawn(move || Worker::new(poll, mine, cfg, discarded).run())?;
    Ok((handle, thread))
}

/// An RTP/RTCP pair as its worker holds it.
struct Pair {
    /// RTP and RTCP, registered with tokens `slot * 2` and `slot * 2 + 1`.
    sockets: [UdpSocket; 2],
    /// The session slot and side using the pair; `None` while idle.
    owner: Option<(usize, Side)>,
    /// Dropped after `sockets`: the ports go back to the pool once closed.
    _lease: PortLease,
}

/// A session as its worker holds it.
struct Session {
    id: u64,
    /// Pair slots of side A and side B.
    pairs: [usize; 2],
    router: Router,
    stats: Arc<SharedStats>,
    /// Quality of what each side's phone sends (and reports), published to `stats` at most
    /// every [`QUALITY_PUBLISH`].
    monitors: [QualityMonitor; 2],
    next_publish: Instant,
    dtmf: DtmfWatch,
    /// Per sending side, when its RTP is transcoded for the other.
    transcoders: [Option<Box<Transcoder>>; 2],
    /// Both sides' audio to a recording, while one runs.
    recording: Option<Box<RecordTap>>,
    /// What the relay plays into each side, when it does.
    players: [Option<Box<Player>>; 2],
    /// SRTP of each side, when encrypted.
    srtp: [Option<Box<SrtpLeg>>; 2],
    /// Per side, when its player's µ-law must be converted to the leg's codec.
    play_transcoders: [Option<Box<Transcoder>>; 2],
    /// The conference each side is a member of, and what it sent since the last mix.
    conference: [Option<(u64, Box<MemberInput>)>; 2],
}

impl Session {
    /// The codec the relay makes audio for `side` in: the one its phone sends (µ-law until it
    /// has sent, or when the player cannot make it: a transcoder converts then).
    fn play_codec(&self, side: Side) -> PlayCodec {
        self.monitors[side_index(side)]
            .audio_payload_type()
            .and_then(PlayCodec::from_payload_type)
            .unwrap_or(PlayCodec::Pcmu)
    }
}

/// DTMF digits in a session's RTP: RFC 4733 events, or tones in G.711 audio from a side that
/// declared no telephone-event type.
#[derive(Default)]
struct DtmfWatch {
    /// Telephone-event types declared by side A and side B.
    types: [[Option<TelephoneEventType>; 2]; 2],
    /// One receiver per sending side.
    receivers: [EventReceiver; 2],
    /// In-band detectors per sending side, when listening for tones.
    tones: [Option<Box<DtmfDetector>>; 2],
    sink: Option<EventSink>,
    notices: Vec<EventNotice>,
    samples: Vec<i16>,
    digits: Vec<DtmfEvent>,
}

impl DtmfWatch {
    /// The clock rate of `pt` if either side declared it a telephone-event.
    fn rate_of(&self, pt: u8) -> Option<u32> {
        self.types.iter().flatten().flatten().find(|t| t.payload_type == pt).map(|t| t.clock_rate)
    }

    /// `side` declared these telephone-event types; with none (and `inband` on), its G.711
    /// audio is listened to for tones.
    fn set_types(&mut self, side: Side, types: [Option<TelephoneEventType>; 2], inband: bool) {
        let i = side_index(side);
        self.types[i] = types;
        let want_tones = inband && types == [None; 2];
        if want_tones != self.tones[i].is_some() {
            self.tones[i] = want_tones.then(|| Box::new(DtmfDetector::default()));
        }
    }

    /// An RTP packet from `side`; reports the digits that ended.
    fn on_rtp(&mut self, side: Side, packet: &[u8]) {
        if packet.len() < 13 || self.sink.is_none() {
            return;
        }
        let pt = packet[1] & 0x7F;
        let law = match pt {
            0 => Some(Law::Ulaw),
            8 => Some(Law::Alaw),
            _ => None,
        };
        let rate = self.rate_of(pt);
        let listening = law.is_some() && self.tones[side_index(side)].is_some();
        if rate.is_none() && !listening {
            return;
        }
        let Some(range) = payload_range(packet) else { return };
        let body = &packet[range];
        if let (Some(law), Some(detector)) = (law, self.tones[side_index(side)].as_mut()) {
            law.decode(body, &mut self.samples);
            self.digits.clear();
            detector.push(&self.samples, &mut self.digits);
            for digit in &self.digits {
                if let (DtmfEvent::Ended { digit, duration, .. }, Some(sink)) = (*digit, &self.sink) {
                    let duration = Duration::from_micros(duration * 125);
                    sink(MediaEvent::Dtmf { side, digit, duration, end_seen: true, in_band: true });
                }
            }
            return;
        }
        let Some(rate) = rate else { return };
        let Ok(payload) = EventPayload::parse(body) else { return };
        let timestamp = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        self.notices.clear();
        self.receivers[side_index(side)].receive(timestamp, payload, &mut self.notices);
        for notice in &self.notices {
            if let EventNotice::Ended { event, duration, end_seen, .. } = *notice
                && let (Some(digit), Some(sink)) = (digit_for_event(event), &self.sink)
            {
                let duration = Duration::from_micros(u64::from(duration) * 1_000_000 / u64::from(rate.max(1)));
                sink(MediaEvent::Dtmf { side, digit, duration, end_seen, in_band: false });
            }
        }
    }
}

/// How often a session's quality figures are published to its handle.
const QUALITY_PUBLISH: Duration = Duration::from_secs(1);

/// A vector with reusable slots (the slot of a pair is in its sockets' tokens).
struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { slots: Vec::new(), free: Vec::new() }
    }
}

impl<T> Slab<T> {
    fn insert(&mut self, value: T) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(value);
                i
            }
            None => {
                self.slots.push(Some(value));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, i: usize) -> Option<T> {
        let value = self.slots.get_mut(i)?.take();
        if value.is_some() {
            self.free.push(i);
        }
        value
    }

    fn get(&self, i: usize) -> Option<&T> {
        self.slots.get(i)?.as_ref()
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.slots.get_mut(i)?.as_mut()
    }
}

struct Worker {
    poll: Poll,
    handle: Arc<WorkerHandle>,
    cfg: WorkerConfig,
    sessions: Slab<Session>,
    by_id: HashMap<u64, usize>,
    pairs: Slab<Pair>,
    pair_slots: HashMap<u64, usize>,
    io: BatchIo,
    /// Sockets whose turn ended before they were drained, to be read again at once.
    pending: Vec<Token>,
    /// The inbox's spare buffer, swapped with the shared one on each drain.
    inbox: Vec<Command>,
    /// Datagrams read on idle sockets, relay-wide.
    discarded: Arc<AtomicU64>,
    /// A shutdown was applied (or the poll failed).
    stop: bool,
    /// End of the linger window (see [`LINGER`]).
    linger_until: Instant,
    /// When commands were last applied.
    last_applied: Instant,
    /// Session slots that have (or had) a player: visited every loop.
    playing: Vec<usize>,
    /// A packet being built by a player.
    play_buf: Vec<u8>,
    /// Conferences mixed by this worker.
    conferences: HashMap<u64, ConferenceState>,
}

/// The per-worker buffers.
struct BatchIo {
    recv: RecvBatch,
    send: SendBatch,
    /// Packets a transcoder made that do not map one to one on received ones (another
    /// packetisation time, another clock), sent one by one.
    outbox: Outbox,
}

impl Worker {
    fn new(poll: Poll, handle: Arc<WorkerHandle>, cfg: WorkerConfig, discarded: Arc<AtomicU64>) -> Worker {
        Worker {
            poll,
            handle,
            cfg,
            sessions: Slab::default(),
            by_id: HashMap::new(),
            pairs: Slab::default(),
            pair_slots: HashMap::new(),
            io: BatchIo { recv: RecvBatch::new(), send: SendBatch::new(), outbox: Outbox::new() },
            pending: Vec::with_capacity(EVENTS),
            inbox: Vec::new(),
            discarded,
            stop: false,
            linger_until: Instant::now(),
            last_applied: Instant::now(),
            playing: Vec::new(),
            play_buf: Vec::with_capacity(400),
            conferences: HashMap::new(),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS);
        let mut retry: Vec<Token> = Vec::with_capacity(EVENTS);
        loop {
            // Park only with nothing to do: no socket left undrained, no command queued,
            // none applied within the linger window (more are likely to follow).
            let may_park = self.pending.is_empty() && Instant::now() >= self.linger_until;
            let drained = self.drain_inbox(may_park);
            if self.stop {
                break;
            }
            let mut timeout = match drained {
                Drained::Parked => None,
                Drained::Empty if self.pending.is_empty() => {
                    Some(self.linger_until.saturating_duration_since(Instant::now()))
                }
                Drained::Empty | Drained::More => Some(Duration::ZERO),
            };
            // Players need the worker at their next packet, parked or not.
            if let Some(due) = self.next_play_due() {
                let wait = due.saturating_duration_since(Instant::now());
                // Parked or not, a command still wakes it through the waker.
                timeout = Some(timeout.map_or(wait, |t| t.min(wait)));
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The epoll instance itself failed: nothing can be relayed any more.
                break;
            }
            // Commands first, whatever woke the worker, so that a datagram arriving with
            // a new peer address (or right after a session was added) is routed with it.
            self.drain_inbox(false);
            if self.stop {
                break;
            }
            let now = Instant::now();
            std::mem::swap(&mut retry, &mut self.pending);
            for token in retry.drain(..) {
                self.service(token, now);
            }
            self.run_players(now);
            self.run_conferences(now);
            let mut ready = 0;
            for event in events.iter() {
                if event.token() != WAKER {
                    ready += 1;
                    self.service(event.token(), now);
                }
            }
            if self.stop {
                break;
            }
            // Let datagrams accumulate so that the next poll returns many sockets at once:
            // fewer wake-ups per packet, at the price of up to `coalesce` of latency. Only
            // after a light wake-up with datagrams (not one for commands alone): when there
            // is more work than that, never sleep.
            let busy = now.elapsed();
            if busy < self.cfg.coalesce && self.pending.is_empty() && ready > 0 && ready < EVENTS {
                std::thread::sleep(self.cfg.coalesce - busy);
            }
        }
    }

    /// Applies the queued commands until the inbox is empty. If `park` and none was
    /// queued, marks the worker parked (under the inbox lock, so that the next command
    /// wakes it). Applying commands starts the linger window.
    fn drain_inbox(&mut self, park: bool) -> Drained {
        let mut park = park;
        for _ in 0..MAX_DRAINS {
            let mut batch = std::mem::take(&mut self.inbox);
            {
                let mut s = self.handle.lock();
                std::mem::swap(&mut s.inbox, &mut batch);
                if batch.is_empty() {
                    s.parked = park;
                    self.inbox = batch;
                    return if park { Drained::Parked } else { Drained::Empty };
                }
                s.parked = false;
            }
            park = false;
            // Linger only in a stream of commands: the previous ones were applied less
            // than a window ago, or during (or at the end of) a window. After an isolated
            // command, parking at once saves the wake-up at the end of the window.
            let now = Instant::now();
            if now.saturating_duration_since(self.last_applied) < LINGER || now < self.linger_until + LINGER {
                self.linger_until = now + LINGER;
            }
            self.last_applied = now;
            for cmd in batch.drain(..) {
                self.apply(cmd);
                if self.stop {
                    return Drained::More;
                }
            }
            self.inbox = batch;
        }
        Drained::More
    }

    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::Add(new) => self.add(*new),
            Command::Remove(id) => {
                if let Some(s) = self.by_id.remove(&id).and_then(|slot| self.sessions.remove(slot)) {
                    debug_assert_eq!(s.id, id);
                    for (i, member) in s.conference.iter().enumerate() {
                        if let Some(c) = member.as_ref().and_then(|(conf, _)| self.conferences.get_mut(conf)) {
                            c.remove(id, side_of(i));
                        }
                    }
                    for slot in s.pairs {
                        if let Some(p) = self.pairs.get_mut(slot) {
                            p.owner = None;
                        }
                    }
                }
            }
            Command::SetPeer(id, side, peer) => {
                if let Some(s) = self.by_id.get(&id).and_then(|&i| self.sessions.get_mut(i)) {
                    s.router.set_peer(side, &peer);
                    s.stats.record_latch(side, Kind::Rtp, None);
                    s.stats.record_latch(side, Kind::Rtcp, None);
                }
            }
            Command::SetForwarding(id, side, on) => {
                if let Some(s) = self.by_id.get(&id).and_then(|&i| self.sessions.get_mut(i)) {
                    s.router.set_forwarding(side, on);
                }
            }
            Command::SetSink(id, sink) => {
                if let Some(s) = self.by_id.get(&id).and_then(|&i| self.sessions.get_mut(i)) {
                    s.dtmf.sink = Some(sink.0);
                }
            }
            Command::SetTelephoneEvents(id, side, types) => {
                if let Some(s) = self.by_id.get(&id).and_then(|&i| self.sessions.get_mut(i)) {
                    s.dtmf.set_types(side, types, self.cfg.inband_dtmf);
                }
            }
            Command::SetTranscoding(id, plan) => {
                if let Some(s) = self.by_id.get(&id).and_then(|&i| self.sessions.get_mut(i)) {
                    s.transcoders = match plan {
                        Some(p) => {
                            [Some(Box::new(Transcoder::new(p.a_to_b))), Some(Box::new(Transcoder::new(p.b_to_a)))]
                        }
                        None => [None, None],
                    };
                }
            }
            Command::SetSrtp(id, side, leg) => {
                if let Some(s) = self.by_id.get(&id).and_then(|&i| self.sessions.get_mut(i)) {
                    s.srtp[side_index(side)] = leg;
                }
            }
            Command::ConferenceStart(conf) => {
                self.conferences.insert(conf, ConferenceState::new(Instant::now()));
            }
            Command::ConferenceEnd(conf) => {
                if let Some(c) = self.conferences.remove(&conf) {
                    for m in c.members {
                        if let Some(s) = self.sessions.get_mut(m.slot).filter(|s| s.id == m.session) {
                            leave(s, m.side);
                        }
                    }
                }
            }
            Command::Join(conf, id, side, settings) => {
                let (Some(&slot), true) = (self.by_id.get(&id), self.conferences.contains_key(&conf)) else { return };
                let Some(s) = self.sessions.get_mut(slot) else { return };
                let i = side_index(side);
                if let Some((old, _)) = s.conference[i].take()
                    && let Some(previous) = self.conferences.get_mut(&old)
                {
                    previous.remove(id, side);
                }
                let codec = s.play_codec(side);
                if let Some(c) = self.conferences.get_mut(&conf)
                    && c.add(slot, id, side, codec, settings, Instant::now())
                {
                    s.conference[i] = Some((conf, Box::new(MemberInput::new())));
                    // Neither side of the session hears the other any more.
                    s.router.set_forwarding(side, false);
                    s.router.set_forwarding(side.other(), false);
                }
            }
            Command::SetMember(id, side, settings) => {
                if let Some(s) = self.by_id.get(&id).and_then(|&i| self.sessions.get(i))
                    && let Some((conf, _)) = &s.conference[side_index(side)]
                    && let Some(c) = self.conferences.get_mut(conf)
                {
                    c.set(id, side, settings);
                }
            }
            Command::Leave(id, side) => {
                if let Some(s) = self.by_id.get(&id).and_then(|&i| self.sessions.get_mut(i))
                    && let Some((conf, _)) = &s.conference[side_index(side)]
                {
                    if let Some(c) = self.conferences.get_mut(conf) {
                        c.remove(id, side);
                    }
                    leave(s, side);
                }
            }
            Command::StartRecording(id, tap) => {
                if let Some(s) = self.by_id.get(&id).and_then(|&i| self.sessions.get_mut(i)) {
                    s.recording = Some(tap.0);
                }
            }
            Command::Play(id, side, source) => {
                if let Some(&slot) = self.by_id.get(&id)
                    && let Some(s) = self.sessions.get_mut(slot)
                {
                    let i = side_index(side);
                    match source {
                        Some(source) => {
                            let codec = s.play_codec(side);
                            let ssrc = (id as u32).wrapping_mul(0x9E37_79B9) ^ (i as u32 + 1);
                            s.players[i] = Some(Box::new(Player::new(source, codec, ssrc, Instant::now())));
                            // A leg in a codec the player cannot make (Opus): its µ-law is
                            // converted on the way, as the other side's audio is.
                            s.play_transcoders[i] = s.transcoders[side_index(side.other())]
                                .as_ref()
                                .map(|t| t.plan())
                                .filter(|plan| PlayCodec::from_payload_type(plan.to.1).is_none())
                                .map(|plan| {
                                    let from = (crate::transcode::Codec::Pcmu, 0);
                                    let direct = crate::transcode::DirectionPlan::new(from, plan.to)
                                        .with_ptime(20, plan.to_ptime_ms)
                                        .with_opus(plan.opus);
                                    Box::new(Transcoder::new(direct))
                                });
                            // The player replaces what the other side sends toward this one.
                            s.router.set_forwarding(side, false);
                            if !self.playing.contains(&slot) {
                                self.playing.push(slot);
                            }
                        }
                        None => {
                            s.play_transcoders[i] = None;
                            if s.players[i].take().is_some() {
                                s.router.set_forwarding(side, true);
                            }
                        }
                    }
                }
            }
            Command::StopRecording(id) => {
                if let Some(s) = self.by_id.get(&id).and_then(|&i| self.sessions.get_mut(i)) {
                    s.recording = None;
                }
            }
            Command::Close(ids) => {
                for id in ids {
                    self.close_pair(id);
                }
            }
            Command::Shutdown => self.stop = true,
        }
    }

    /// Closes a pair (closing a socket's only descriptor also takes it out of the epoll
    /// set) and returns its ports.
    fn close_pair(&mut self, id: u64) {
        if let Some(p) = self.pair_slots.remove(&id).and_then(|slot| self.pairs.remove(slot)) {
            debug_assert!(p.owner.is_none(), "closing a pair in use");
        }
    }

    fn add(&mut self, new: NewSession) {
        let NewSession { id, stats, sides } = new;
        let ids = sides.each_ref().map(|s| match s {
            PairSource::Idle(id) => *id,
            PairSource::Fresh(f) => f.id,
        });
        let mut slots = [None; 2];
        for (i, source) in sides.into_iter().enumerate() {
            slots[i] = match source {
                PairSource::Idle(pair) => self
                    .pair_slots
                    .get(&pair)
                    .copied()
                    .filter(|&s| self.pairs.get(s).is_some_and(|p| p.owner.is_none())),
                PairSource::Fresh(fresh) => self.insert_pair(fresh),
            };
        }
        let [Some(a), Some(b)] = slots else {
            // Out of epoll resources: the session cannot be relayed (its handle sees no
            // traffic). Its pairs are closed at once so that their ports are not lost, and
            // must never be offered for reuse: taken out of the idle set if the handle
            // was dropped already, else remembered as dead for when it is.
            for pair in ids {
                self.close_pair(pair);
            }
            let mut shared = self.handle.lock();
            for pair in ids {
                if !shared.idle.remove(pair) {
                    shared.dead.push(pair);
                }
            }
            return;
        };
        let now = Instant::now();
        let slot = self.sessions.insert(Session {
            id,
            pairs: [a, b],
            router: Router::new(self.cfg.relatch_after),
            stats,
            monitors: [QualityMonitor::new(now), QualityMonitor::new(now)],
            next_publish: now + QUALITY_PUBLISH,
            dtmf: DtmfWatch::default(),
            transcoders: [None, None],
            recording: None,
            players: [None, None],
            srtp: [None, None],
            play_transcoders: [None, None],
            conference: [None, None],
        });
        for (i, pair) in [a, b].into_iter().enumerate() {
            if let Some(p) = self.pairs.get_mut(pair) {
                p.owner = Some((slot, side_of(i)));
            }
        }
        self.by_id.insert(id, slot);
    }

    /// Registers a new pair; `None` (and the pair closed) if the poll refuses it.
    fn insert_pair(&mut self, fresh: FreshPair) -> Option<usize> {
        let FreshPair { id, sockets, lease } = fresh;
        let sockets = sockets.map(UdpSocket::from_std);
        let slot = self.pairs.insert(Pair { sockets, owner: None, _lease: lease });
        let registry = self.poll.registry();
        let mut ok = true;
        if let Some(p) = self.pairs.get_mut(slot) {
            for (k, socket) in p.sockets.iter_mut().enumerate() {
                ok &= registry.register(socket, Token(slot * 2 + k), Interest::READABLE).is_ok();
            }
        }
        if !ok {
            self.pairs.remove(slot);
            return None;
        }
        self.pair_slots.insert(id, slot);
        Some(slot)
    }

    /// Reads one ready socket until drained (or its turn ends) and forwards what came, or
    /// discards it if the socket is idle.
    fn service(&mut self, token: Token, now: Instant) {
        let (slot, k) = (token.0 / 2, token.0 % 2);
        let Some(pair) = self.pairs.get(slot) else { return };
        if pair.owner.is_none() {
            // A session may have just been given this pair without waking the worker:
            // apply what is queued, so that none of its datagrams is taken for a stale one.
            self.drain_inbox(false);
            if self.stop {
                return;
            }
        }
        let Some(pair) = self.pairs.get(slot) else { return };
        let fd = pair.sockets[k].as_raw_fd();
        let Some((session, side)) = pair.owner else {
            self.discard(token, fd);
            return;
        };
        let Some(s) = self.sessions.get_mut(session) else { return };
        // Descriptors of the session's four sockets, by socket_index.
        let mut fds: [RawFd; 4] = [-1; 4];
        for (i, &p) in s.pairs.iter().enumerate() {
            if let Some(p) = self.pairs.get(p) {
                fds[2 * i] = p.sockets[0].as_raw_fd();
                fds[2 * i + 1] = p.sockets[1].as_raw_fd();
            }
        }
        let kind = if k == 0 { Kind::Rtp } else { Kind::Rtcp };
        for _ in 0..MAX_BATCHES_PER_TURN {
            match self.io.recv.recv(fd) {
                Ok(n) => {
                    relay_batch(s, &fds, &mut self.io, side, kind, n, now);
                    if n < BATCH {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A pending socket error (reported once, then cleared): read again soon.
                Err(_) => break,
            }
        }
        self.pending.push(token);
    }

    /// The earliest packet a player or a conference owes, if any plays.
    fn next_play_due(&mut self) -> Option<Instant> {
        let sessions = &self.sessions;
        self.playing.retain(|&slot| sessions.get(slot).is_some_and(|s| s.players.iter().any(Option::is_some)));
        let players = self
            .playing
            .iter()
            .filter_map(|&slot| self.sessions.get(slot))
            .flat_map(|s| s.players.iter().flatten().map(|p| p.next_due()));
        let mixes = self.conferences.values().filter(|c| !c.members.is_empty()).map(|c| c.next_tick);
        players.chain(mixes).min()
    }

    /// Mixes the conferences that are due and sends each member what it hears.
    fn run_conferences(&mut self, now: Instant) {
        for c in self.conferences.values_mut() {
            if c.next_tick > now {
                continue;
            }
            c.next_tick += TICK;
            if now.saturating_duration_since(c.next_tick) > 5 * TICK {
                c.next_tick = now + TICK;
            }
            for m in &c.members {
                let input = self
                    .sessions
                    .get_mut(m.slot)
                    .filter(|s| s.id == m.session)
                    .and_then(|s| s.conference[side_index(m.side)].as_mut().map(|(_, input)| input));
                match input {
                    Some(input) => input.take_frame(&mut c.frame, now),
                    None => c.frame = [0; MIX_FRAME],
                }
                let _ = c.mixer.push(m.id, &c.frame);
            }
            c.mixer.tick();
            for m in &mut c.members {
                let Ok(mix) = c.mixer.output(m.id) else { continue };
                let Ok(mix) = <&[i16; MIX_FRAME]>::try_from(mix) else { continue };
                m.packets.packet_of(mix, &mut self.play_buf);
                let Some(s) = self.sessions.get_mut(m.slot).filter(|s| s.id == m.session) else { continue };
                let i = side_index(m.side);
                m.sent = (m.sent.0.wrapping_add(1), m.sent.1.wrapping_add((self.play_buf.len() - 12) as u32));
                // The relay is this leg's peer: it reports as one (a sender report with a
                // block about what the phone sends).
                if now >= m.next_report
                    && let Some((via, to)) = s.router.rtcp_destination(m.side)
                    && let Some(pair) = self.pairs.get(s.pairs[i])
                {
                    m.next_report = now + crate::conference::REPORT_INTERVAL;
                    let (rtp_timestamp, ssrc) = m.packets.position();
                    let info = crate::rtcp::SenderInfo {
                        ntp: crate::conference::ntp_now(),
                        rtp_timestamp,
                        packets: m.sent.0,
                        octets: m.sent.1,
                    };
                    let blocks: Vec<crate::rtcp::ReportBlock> = s.monitors[i].report_block().into_iter().collect();
                    let mut report = Vec::with_capacity(60);
                    crate::rtcp::write_sender_report(ssrc, info, &blocks, &mut report);
                    let fd = pair.sockets[via.index()].as_raw_fd();
                    send_made(fd, &mut s.srtp[i], &s.stats, m.side, &report, to, true);
                }
                let (Some(to), Some(pair)) = (s.router.rtp_destination(m.side), self.pairs.get(s.pairs[i])) else {
                    continue;
                };
                send_made(pair.sockets[0].as_raw_fd(), &mut s.srtp[i], &s.stats, m.side, &self.play_buf, to, false);
            }
        }
    }

    /// Sends the packets players owe by `now`.
    fn run_players(&mut self, now: Instant) {
        for &slot in &self.playing {
            let Some(s) = self.sessions.get_mut(slot) else { continue };
            for (i, player) in s.players.iter_mut().enumerate() {
                let Some(player) = player else { continue };
                let side = side_of(i);
                while player.frame(now, &mut self.play_buf) {
                    let (Some(to), Some(pair)) = (s.router.rtp_destination(side), self.pairs.get(s.pairs[i])) else {
                        continue;
                    };
                    let fd = pair.sockets[0].as_raw_fd();
                    let Some(t) = &mut s.play_transcoders[i] else {
                        send_made(fd, &mut s.srtp[i], &s.stats, side, &self.play_buf, to, false);
                        continue;
                    };
                    self.io.outbox.clear();
                    if t.convert_into(&self.play_buf, &mut self.io.outbox).is_ok() {
                        for packet in self.io.outbox.iter() {
                            send_made(fd, &mut s.srtp[i], &s.stats, side, packet, to, false);
                        }
                    }
                }
            }
            // Played out: the other side is heard again, and call control told.
            for i in 0..2 {
                if s.players[i].as_ref().is_some_and(|p| p.is_finished()) {
                    s.players[i] = None;
                    s.router.set_forwarding(side_of(i), true);
                    if let Some(sink) = &s.dtmf.sink {
                        sink(MediaEvent::PlaybackFinished { side: side_of(i) });
                    }
                }
            }
        }
    }

    /// Reads an idle socket until drained (or its turn ends), counting and dropping what
    /// came.
    fn discard(&mut self, token: Token, fd: RawFd) {
        for _ in 0..MAX_BATCHES_PER_TURN {
            match self.io.recv.recv(fd) {
                Ok(n) => {
                    self.discarded.fetch_add(n as u64, Ordering::Relaxed);
                    if n < BATCH {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        self.pending.push(token);
    }
}

impl Drop for Worker {
    /// The worker ends (shutdown, a failed poll or a panic): nothing more is queued, the
    /// idle set is forgotten, and what was queued is dropped, closing the sockets of
    /// sessions never added. The pairs close as the worker's fields drop.
    fn drop(&mut self) {
        let queued = {
            let mut s = self.handle.lock();
            s.closed = true;
            s.parked = false;
            s.idle.clear();
            s.dead.clear();
            std::mem::take(&mut s.inbox)
        };
        drop(queued);
    }
}

/// Routes the `n` datagrams just received on `side`'s `kind` socket of `session`, whose
/// sockets' descriptors are `fds` (by [`socket_index`]).
fn relay_batch(
    session: &mut Session,
    fds: &[RawFd; 4],
    io: &mut BatchIo,
    side: Side,
    kind: Kind,
    n: usize,
    now: Instant,
) {
    let mut tally = RxTally::default();
    let mut via_current = Kind::Rtp;
    let to_side = side.other();
    for i in 0..n {
        // An encrypted side's packets are authenticated and decrypted first: nothing that
        // fails moves a latch or reaches the other side.
        if let Some(keys) = &mut session.srtp[side_index(side)] {
            let (data, src, truncated) = io.recv.get(i);
            if src.is_some() && !truncated && data.len() >= 12 {
                match keys.open(&mut io.recv, i, kind) {
                    Ok(()) => {}
                    Err(true) => {
                        tally.dropped_srtp += 1;
                        continue;
                    }
                    Err(false) => {
                        tally.dropped_invalid += 1;
                        continue;
                    }
                }
            }
        }
        let (data, src, truncated) = io.recv.get(i);
        let mut len = data.len();
        let Some(src) = src else {
            tally.dropped_invalid += 1;
            continue;
        };
        let decision = session.router.on_datagram(side, kind, src, data, truncated, now);
        if decision.relatched {
            session.stats.record_latch(side, kind, Some(src));
        }
        if !matches!(decision.action, Action::Drop(DropReason::Foreign)) {
            tally.received_packets += 1;
            tally.received_bytes += len as u64;
        }
        if !matches!(decision.action, Action::Drop(DropReason::Foreign | DropReason::Invalid)) {
            let monitor = &mut session.monitors[side_index(side)];
            if decision.rtcp {
                monitor.on_rtcp(data, now);
                if matches!(decision.action, Action::Forward { .. }) {
                    session.monitors[side_index(to_side)].on_rtcp_to_phone(data, now);
                }
            } else {
                monitor.on_rtp(data, now);
                session.dtmf.on_rtp(side, data);
                if let Some((_, input)) = &mut session.conference[side_index(side)] {
                    input.on_rtp(data, now);
                }
                if let Some(tap) = &mut session.recording {
                    tap.on_rtp(side, data, now);
                }
            }
        }
        match decision.action {
            Action::Forward { via, to } => {
                if !decision.rtcp
                    && let Some(t) = &mut session.transcoders[side_index(side)]
                {
                    if !t.in_place() {
                        io.outbox.clear();
                        if t.convert_into(io.recv.get(i).0, &mut io.outbox).is_err() {
                            tally.dropped_invalid += 1;
                        } else {
                            let fd = fds[socket_index(to_side, Kind::Rtp)];
                            for packet in io.outbox.iter() {
                                let keys = &mut session.srtp[side_index(to_side)];
                                send_made(fd, keys, &session.stats, to_side, packet, to, false);
                            }
                        }
                        continue;
                    }
                    if t.convert(io.recv.get_mut(i)).is_err() {
                        tally.dropped_invalid += 1;
                        continue;
                    }
                }
                if let Some(keys) = &mut session.srtp[side_index(to_side)] {
                    match keys.seal(&mut io.recv, i, decision.rtcp) {
                        Some(sealed) => len = sealed,
                        None => {
                            tally.dropped_invalid += 1;
                            continue;
                        }
                    }
                }
                if via != via_current && !io.send.is_empty() {
                    flush(session, fds, io, to_side, via_current);
                }
                via_current = via;
                io.send.push(i, len, to);
            }
            Action::Drop(DropReason::Foreign) => tally.dropped_foreign += 1,
            Action::Drop(DropReason::NoDestination) => tally.dropped_no_destination += 1,
            Action::Drop(DropReason::Invalid) => tally.dropped_invalid += 1,
        }
    }
    if !io.send.is_empty() {
        flush(session, fds, io, to_side, via_current);
    }
    session.stats.record_rx(side, &tally, now);
    if now >= session.next_publish {
        session.next_publish = now + QUALITY_PUBLISH;
        session.stats.publish_quality([session.monitors[0].snapshot(), session.monitors[1].snapshot()]);
    }
}

/// Takes `side` out of its conference: both sides of its session are relayed again.
fn leave(s: &mut Session, side: Side) {
    if s.conference[side_index(side)].take().is_some() {
        s.router.set_forwarding(side, true);
        s.router.set_forwarding(side.other(), true);
    }
}

/// Sends a packet the relay made itself (a player's, a mix, a re-framed one, a report) to
/// `side`'s phone at `to` through `fd`, encrypted if the side is; counted.
fn send_made(
    fd: RawFd,
    srtp: &mut Option<Box<SrtpLeg>>,
    stats: &SharedStats,
    side: Side,
    packet: &[u8],
    to: SocketAddr,
    rtcp: bool,
) {
    let packet = match srtp {
        Some(keys) => match keys.seal_made(packet, rtcp) {
            Some(sealed) => sealed,
            None => return stats.record_tx(side, 0, 0, 1),
        },
        None => packet,
    };
    let sent = send_one(fd, packet, to);
    let bytes = if sent { packet.len() as u64 } else { 0 };
    stats.record_tx(side, u64::from(sent), bytes, u64::from(!sent));
}

fn flush(session: &Session, fds: &[RawFd; 4], io: &mut BatchIo, to_side: Side, via: Kind) {
    let fd = fds[socket_index(to_side, via)];
    let sent = io.send.flush(fd, &mut io.recv);
    session.stats.record_tx(to_side, sent.packets, sent.bytes, sent.errors);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle without a thread; the poll keeps its waker valid.
    fn handle(max_idle_pairs: usize) -> (Poll, WorkerHandle) {
        let poll = Poll::new().unwrap();
        let waker = Waker::new(poll.registry(), WAKER).unwrap();
        (poll, WorkerHandle { shared: Mutex::new(Shared::default()), waker, max_idle_pairs })
    }

    fn parked(h: &WorkerHandle) {
        h.lock().parked = true;
    }

    fn inbox(h: &WorkerHandle) -> Vec<String> {
        h.lock()
            .inbox
            .iter()
            .map(|c| match c {
                Command::Remove(id) => format!("remove {id}"),
                Command::Close(ids) => format!("close {ids:?}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn parked_prompt_wakes_once() {
        let (_poll, h) = handle(8);
        parked(&h);
        assert_eq!(h.push(&mut h.lock(), Command::Remove(1), Wake::Prompt).ok(), Some(true));
        // The first wake-up is on its way: the worker drains before it parks again.
        assert_eq!(h.push(&mut h.lock(), Command::Remove(2), Wake::Prompt).ok(), Some(false));
        assert_eq!(inbox(&h).len(), 2);
    }

    #[test]
    fn busy_prompt_and_lazy_no_wake_now_wakes() {
        let (_poll, h) = handle(8);
        assert_eq!(h.push(&mut h.lock(), Command::Remove(1), Wake::Prompt).ok(), Some(false));
        assert_eq!(h.push(&mut h.lock(), Command::Remove(2), Wake::Lazy).ok(), Some(false));
        assert_eq!(h.push(&mut h.lock(), Command::Shutdown, Wake::Now).ok(), Some(true));
    }

    #[test]
    fn parked_lazy_wakes_at_batch() {
        let (_poll, h) = handle(8);
        parked(&h);
        for id in 1..LAZY_BATCH as u64 {
            assert_eq!(h.push(&mut h.lock(), Command::Remove(id), Wake::Lazy).ok(), Some(false));
        }
        assert_eq!(h.push(&mut h.lock(), Command::Remove(0), Wake::Lazy).ok(), Some(true));
    }

    #[test]
    fn closed_push_gives_command_back() {
        let (_poll, h) = handle(8);
        h.lock().closed = true;
        assert!(matches!(h.send(Command::Remove(7), Wake::Prompt), Err(Command::Remove(7))));
        h.release(7, [("127.0.0.1".parse().unwrap(), 40000, 1), ("127.0.0.1".parse().unwrap(), 40002, 2)]);
        assert_eq!((inbox(&h).len(), h.lock().idle.len()), (0, 0));
    }

    #[test]
    fn released_pairs_idle_surplus_closed_after_remove() {
        let (_poll, h) = handle(3);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        h.release(1, [(ip, 40000, 10), (ip, 40002, 11)]);
        assert_eq!(h.lock().idle.len(), 2);
        h.release(2, [(ip, 40004, 12), (ip, 40006, 13)]);
        assert_eq!(h.lock().idle.len(), 3);
        assert_eq!(inbox(&h), ["remove 1", "remove 2", "close [10]"]);
        let now = Instant::now();
        assert_eq!(h.lock().idle.take(ip, now, Duration::ZERO).map(|p| (p.id, p.port)), Some((11, 40002)));
    }

    #[test]
    fn released_dead_pair_not_idle() {
        let (_poll, h) = handle(8);
        let ip: IpAddr = "::1".parse().unwrap();
        h.lock().dead.push(20);
        h.release(1, [(ip, 40000, 20), (ip, 40002, 21)]);
        let s = h.lock();
        assert_eq!((s.idle.len(), s.dead.len()), (1, 0));
    }
}
