//! The relay's public handles: [`Relay`] and [`MediaSession`].

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::idle::IdlePair;
use crate::pool::PortPool;
use crate::stats::{SessionStats, SharedStats};
use crate::sys::open_files_limit;
use crate::worker::{Command, FreshPair, NewSession, PairSource, Shared, Wake, WorkerConfig, WorkerHandle, spawn};

/// One of the two call legs a session joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The caller's leg.
    A,
    /// The callee's leg.
    B,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// The relay's ports for one side, to put in the SDP sent to that side's peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalPorts {
    /// The local address the side's sockets are bound to.
    pub ip: IpAddr,
    /// The RTP port (even).
    pub rtp: u16,
    /// The RTCP port (`rtp + 1`).
    pub rtcp: u16,
}

/// Where a side's peer said (in its SDP) it receives media.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerMedia {
    /// The `c=` address and `m=` port. An unspecified address (`0.0.0.0`, the old way to
    /// put a call on hold) or port 0 (stream rejected) gives no destination until the peer
    /// sends (latching).
    pub rtp: SocketAddr,
    /// The `a=rtcp:` address; `None` for the default, RTP port + 1 on the RTP address.
    pub rtcp: Option<SocketAddr>,
    /// The peer uses `a=rtcp-mux` (RFC 5761): its RTCP arrives and is sent on the RTP port.
    pub rtcp_mux: bool,
}

impl PeerMedia {
    /// RTP at `rtp`, RTCP at the default `rtp + 1`, no rtcp-mux.
    pub fn new(rtp: SocketAddr) -> PeerMedia {
        PeerMedia { rtp, rtcp: None, rtcp_mux: false }
    }

    /// The same with rtcp-mux on.
    pub fn muxed(rtp: SocketAddr) -> PeerMedia {
        PeerMedia { rtp, rtcp: None, rtcp_mux: true }
    }
}

/// Something the relay noticed in a session's media, for call control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaEvent {
    /// An RFC 4733 DTMF digit from `side` ended.
    Dtmf {
        /// Who sent it.
        side: Side,
        /// `0-9`, `*`, `#`, `A-D`.
        digit: char,
        /// How long it was held.
        duration: Duration,
        /// Whether its end was seen (false: an RFC 4733 digit ended by the next one).
        end_seen: bool,
        /// Heard as tones in the audio rather than sent as RFC 4733 events.
        in_band: bool,
    },
    /// What was played into `side` once (a prompt, a non-repeating tone) has been sent whole;
    /// the other side is heard again.
    PlaybackFinished {
        /// The side played to.
        side: Side,
    },
}

/// Where a session's [`MediaEvent`]s go; called on the relay's worker thread, so it must be
/// quick (queue the event, nothing more).
pub type EventSink = Arc<dyn Fn(MediaEvent) + Send + Sync>;

/// A telephone-event payload type a side declared, with its clock rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelephoneEventType {
    /// RTP payload type.
    pub payload_type: u8,
    /// Clock rate (Hz).
    pub clock_rate: u32,
}

/// Transcoding of a session, both directions (see [`crate::transcode`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TranscodePlan {
    /// What side A sends and what side B must receive.
    pub a_to_b: crate::transcode::DirectionPlan,
    /// What side B sends and what side A must receive.
    pub b_to_a: crate::transcode::DirectionPlan,
}

/// How a member takes part in a conference: mute, volume, role (listen only, whisper to
/// one other member).
pub type MemberSettings = audio::mixer::Settings;

/// A conference in the relay; ends (its members relayed again) when dropped.
#[derive(Debug)]
pub struct Conference {
    id: u64,
    worker: usize,
    handle: Arc<WorkerHandle>,
}

impl Conference {
    /// A relay-wide unique number.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Conference {
    fn drop(&mut self) {
        let _ = self.handle.send(Command::ConferenceEnd(self.id), Wake::Prompt);
    }
}

/// The SRTP master keys of one encrypted side (SDES, negotiated by call control).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrtpKeys {
    /// The key the side's phone encrypts with.
    pub inbound: srtp::MasterKey,
    /// The key the relay encrypts with toward it.
    pub outbound: srtp::MasterKey,
}

/// How the relay runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// Lowest port of the pool. RTP uses the even ports of the range, RTCP the odd port
    /// above each.
    pub port_min: u16,
    /// Highest port of the pool (inclusive).
    pub port_max: u16,
    /// Worker threads; 0 means one per available core. Defaults to one per core.
    pub workers: usize,
    /// DSCP value to mark media with (`Some(46)`, EF, is usual for voice): sets IP_TOS or
    /// IPV6_TCLASS to `dscp << 2` on every socket.
    pub dscp: Option<u8>,
    /// How long a latched source must be silent before a packet from another source
    /// latches instead (a phone whose NAT binding changed). Defaults to 2 s.
    pub relatch_after: Duration,
    /// Pause of a worker after each busy wake-up so that more sockets are ready at the
    /// next one, trading that much added latency (jitter buffers absorb tens of ms) for
    /// fewer wake-ups per packet under load. Zero disables it. Defaults to 1 ms.
    pub coalesce: Duration,
    /// Quarantine of a dropped session's sockets: they stay open, idle (whatever arrives
    /// on them is discarded), and are reused by a later session only after this long, so
    /// that late media of the old call does not reach the new one. Cut short only when no
    /// port is left otherwise. Defaults to 2 s.
    pub reuse_after: Duration,
    /// Most idle sockets kept open for reuse (four per dropped session, shared evenly by
    /// the workers); beyond it the oldest are closed. Reuse needs at least
    /// `4 × call set-ups per second × reuse_after` (6400 at 800 calls/s and 2 s); 0
    /// closes the sockets of every dropped session. Never more than half the process's
    /// open-files limit (`RLIMIT_NOFILE`) at start, so that idle sockets cannot starve the
    /// rest of the process of descriptors. Defaults to 16384.
    pub max_idle_sockets: usize,
    /// Listen for in-band DTMF tones in the G.711 audio of a side that declared no
    /// telephone-event payload type (it can only send digits as tones). Costs about 3 µs per
    /// 20 ms packet of such a side. Defaults to on.
    pub inband_dtmf: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            port_min: 10000,
            port_max: 20000,
            workers: available_cores(),
            dscp: Some(46),
            relatch_after: Duration::from_secs(2),
            coalesce: Duration::from_millis(1),
            reuse_after: Duration::from_secs(2),
            max_idle_sockets: 16384,
            inband_dtmf: true,
        }
    }
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// Why the relay could not do what was asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum RelayError {
    /// No free RTP/RTCP port pair is left on the requested address (the call should be
    /// refused, e.g. with 503).
    PortsExhausted,
    /// A peer address is IPv4 for a side bound to IPv6, or the other way round.
    AddressFamily,
    /// The relay was shut down.
    ShutDown,
    /// A socket could not be set up (e.g. the address is not one of this machine's).
    Io(io::Error),
    /// The session was not allocated for this conference (see [`Relay::allocate_for`]).
    OtherWorker,
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::PortsExhausted => f.write_str("no free media port pair"),
            RelayError::AddressFamily => f.write_str("peer address family differs from the local side's"),
            RelayError::ShutDown => f.write_str("media relay shut down"),
            RelayError::Io(e) => write!(f, "media socket: {e}"),
            RelayError::OtherWorker => f.write_str("the session belongs to another relay worker than the conference"),
        }
    }
}

impl std::error::Error for RelayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RelayError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for RelayError {
    fn from(e: io::Error) -> Self {
        RelayError::Io(e)
    }
}

/// A failure to bind for want of ports or file descriptors, which idle sockets can make
/// up for.
fn is_scarce(e: &RelayError) -> bool {
    match e {
        RelayError::PortsExhausted => true,
        RelayError::Io(e) => matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)),
        _ => false,
    }
}

/// One side of a session being allocated: its RTP port, pair id and where its sockets
/// come from.
struct Allotted {
    port: u16,
    id: u64,
    source: PairSource,
}

/// Each side's sockets: its idle pair if it has one, else its new one; `None`, with
/// nothing taken, if a side has neither.
fn assemble(idle: [Option<IdlePair>; 2], fresh: &mut [Option<FreshPair>; 2]) -> Option<[Allotted; 2]> {
    if (0..2).any(|i| idle[i].is_none() && fresh[i].is_none()) {
        return None;
    }
    let [a, b] = [0, 1].map(|i| match idle[i] {
        Some(p) => Some(Allotted { port: p.port, id: p.id, source: PairSource::Idle(p.id) }),
        None => fresh[i].take().map(|f| Allotted { port: f.lease.port(), id: f.id, source: PairSource::Fresh(f) }),
    });
    Some([a?, b?])
}

/// Returns idle pairs taken from `worker` but not used (side A's and B's on `ips`).
fn give_back(worker: &WorkerHandle, ips: [IpAddr; 2], pairs: [Option<IdlePair>; 2]) {
    if pairs.iter().any(Option::is_some) {
        let mut s = worker.lock();
        for (pair, ip) in pairs.into_iter().zip(ips) {
            if let Some(pair) = pair {
                s.idle.put_back(ip, pair);
            }
        }
    }
}

struct RelayInner {
    workers: Vec<Arc<WorkerHandle>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next_worker: AtomicUsize,
    next_id: AtomicU64,
    /// Ids of socket pairs, relay-wide.
    next_pair: AtomicU64,
    pool: Arc<PortPool>,
    reuse_after: Duration,
    /// Datagrams read on idle sockets and discarded.
    discarded: Arc<AtomicU64>,
    shut: AtomicBool,
}

impl RelayInner {
    fn shutdown(&self) {
        self.shut.store(true, Ordering::Relaxed);
        for w in &self.workers {
            let _ = w.send(Command::Shutdown, Wake::Now);
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for t in threads {
            // A worker that panicked has nothing left to clean up.
            let _ = t.join();
        }
    }
}

impl Drop for RelayInner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The media relay: a port pool and worker threads. Cheap to clone; dropping the last
/// clone shuts it down like [`Relay::shutdown`].
#[derive(Clone)]
pub struct Relay {
    inner: Arc<RelayInner>,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("workers", &self.inner.workers.len())
            .field("active_sessions", &self.active_sessions())
            .finish()
    }
}

impl Relay {
    /// Starts the worker threads. Fails if the port range holds no RTP/RTCP pair or a
    /// thread or poll instance cannot be created.
    pub fn start(cfg: RelayConfig) -> io::Result<Relay> {
        let pool = Arc::new(PortPool::new(cfg.port_min, cfg.port_max, cfg.dscp)?);
        let n = if cfg.workers == 0 { available_cores() } else { cfg.workers };
        let fd_share = open_files_limit().map_or(usize::MAX, |l| usize::try_from(l / 2).unwrap_or(usize::MAX));
        let wcfg = WorkerConfig {
            relatch_after: cfg.relatch_after,
            coalesce: cfg.coalesce,
            max_idle_pairs: cfg.max_idle_sockets.min(fd_share) / 2 / n,
            inband_dtmf: cfg.inband_dtmf,
        };
        // Dropping `inner` on an error below stops the workers already started.
        let mut inner = RelayInner {
            workers: Vec::with_capacity(n),
            threads: Mutex::new(Vec::with_capacity(n)),
            next_worker: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            next_pair: AtomicU64::new(1),
            pool,
            reuse_after: cfg.reuse_after,
            discarded: Arc::new(AtomicU64::new(0)),
            shut: AtomicBool::new(false),
        };
        for i in 0..n {
            let (handle, thread) = spawn(i, wcfg, Arc::clone(&inner.discarded))?;
            inner.workers.push(handle);
            inner.threads.lock().unwrap_or_else(PoisonError::into_inner).push(thread);
        }
        Ok(Relay { inner: Arc::new(inner) })
    }

    /// Binds RTP and RTCP sockets for side A on `a_ip` and side B on `b_ip` (addresses of
    /// this machine facing each peer, IPv4 or IPv6, possibly different) and starts
    /// relaying between them.
    ///
    /// Sockets of dropped sessions that have been idle for [`RelayConfig::reuse_after`]
    /// are taken first (no system call at all); new ones are bound only when there are
    /// none. When no port is free on an address, the oldest idle sockets on it are taken
    /// even before their quarantine ends, rather than refusing the call:
    /// [`RelayError::PortsExhausted`] means every port pair is in use by a session (or
    /// another process).
    pub fn allocate(&self, a_ip: IpAddr, b_ip: IpAddr) -> Result<MediaSession, RelayError> {
        let first = self.inner.next_worker.fetch_add(1, Ordering::Relaxed) % self.inner.workers.len();
        self.allocate_in(first, false, a_ip, b_ip)
    }

    /// Starts a conference (several sessions' legs mixed together) in one of the workers.
    pub fn create_conference(&self) -> Result<Conference, RelayError> {
        let inner = &self.inner;
        let worker = inner.next_worker.fetch_add(1, Ordering::Relaxed) % inner.workers.len();
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::clone(&inner.workers[worker]);
        handle.send(Command::ConferenceStart(id), Wake::Prompt).map_err(|_| RelayError::ShutDown)?;
        Ok(Conference { id, worker, handle })
    }

    /// Like [`Relay::allocate`], in `conference`'s worker, so that a side of the session can
    /// join it.
    pub fn allocate_for(
        &self,
        conference: &Conference,
        a_ip: IpAddr,
        b_ip: IpAddr,
    ) -> Result<MediaSession, RelayError> {
        self.allocate_in(conference.worker, true, a_ip, b_ip)
    }

    /// Allocates in worker `first`; when ports run short, other workers' idle pairs are taken
    /// unless `fixed`.
    fn allocate_in(&self, first: usize, fixed: bool, a_ip: IpAddr, b_ip: IpAddr) -> Result<MediaSession, RelayError> {
        let inner = &self.inner;
        if inner.shut.load(Ordering::Relaxed) {
            return Err(RelayError::ShutDown);
        }
        let ips = [a_ip, b_ip];
        let worker = &inner.workers[first];
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(SharedStats::new(Instant::now()));

        // 1. Idle pairs of the round-robin worker, past their quarantine.
        let mut reused: [Option<IdlePair>; 2] = [None, None];
        let mut fresh: [Option<FreshPair>; 2] = [None, None];
        {
            let mut s = worker.lock();
            if s.closed() {
                return Err(RelayError::ShutDown);
            }
            let now = Instant::now();
            for (slot, ip) in reused.iter_mut().zip(ips) {
                *slot = s.idle.take(ip, now, inner.reuse_after);
            }
            if let Some(sides) = assemble(reused, &mut fresh) {
                // Registered already: the worker applies this at its next wake-up, before
                // it reads any of the session's sockets. No system call at all.
                return self.commit(first, s, id, ips, sides, stats);
            }
        }

        // 2. New sockets for the other sides.
        let mut scarce = None;
        for i in 0..2 {
            if reused[i].is_some() {
                continue;
            }
            match self.bind(ips[i]) {
                Ok(pair) => fresh[i] = Some(pair),
                Err(e) if is_scarce(&e) => scarce = Some(e),
                Err(e) => {
                    give_back(worker, ips, reused);
                    return Err(e);
                }
            }
        }
        if scarce.is_none()
            && let Some(sides) = assemble(reused, &mut fresh)
        {
            return self.commit(first, worker.lock(), id, ips, sides, stats);
        }

        // 3. No port left for some side: the oldest idle pair of any age, from the first
        // worker (round-robin order) that has one for every such side.
        give_back(worker, ips, reused);
        let n = inner.workers.len();
        for k in 0..if fixed { 1 } else { n } {
            let index = (first + k) % n;
            let mut s = inner.workers[index].lock();
            if s.closed() {
                return Err(RelayError::ShutDown);
            }
            let now = Instant::now();
            let mut taken: [Option<IdlePair>; 2] = [None, None];
            for i in 0..2 {
                if fresh[i].is_none() {
                    taken[i] = s.idle.take(ips[i], now, Duration::ZERO);
                }
            }
            if let Some(sides) = assemble(taken, &mut fresh) {
                return self.commit(index, s, id, ips, sides, stats);
            }
            for (pair, ip) in taken.into_iter().zip(ips) {
                if let Some(pair) = pair {
                    s.idle.put_back(ip, pair);
                }
            }
        }
        Err(scarce.unwrap_or(RelayError::PortsExhausted))
    }

    /// Queues a new session made of `sides` on worker `index`, whose inbox `s` is, and
    /// returns its handle. The worker is woken (if parked) only for new sockets to
    /// register: idle ones are registered already.
    fn commit(
        &self,
        index: usize,
        mut s: MutexGuard<'_, Shared>,
        id: u64,
        ips: [IpAddr; 2],
        sides: [Allotted; 2],
        stats: Arc<SharedStats>,
    ) -> Result<MediaSession, RelayError> {
        let inner = &self.inner;
        let worker = &inner.workers[index];
        let pairs = sides.each_ref().map(|s| (s.port, s.id));
        let wake =
            if sides.iter().any(|s| matches!(s.source, PairSource::Fresh(_))) { Wake::Prompt } else { Wake::Lazy };
        let new = NewSession { id, stats: Arc::clone(&stats), sides: sides.map(|s| s.source) };
        // On failure the command, and with it any new sockets and leases, is dropped.
        let needed = worker.push(&mut s, Command::Add(Box::new(new)), wake).map_err(|_| RelayError::ShutDown)?;
        drop(s);
        worker.wake(needed);
        inner.pool.session_opened();
        let local = [0, 1].map(|i| LocalPorts { ip: ips[i], rtp: pairs[i].0, rtcp: pairs[i].0 + 1 });
        Ok(MediaSession {
            id,
            local,
            pairs: pairs.map(|p| p.1),
            stats,
            worker: Arc::clone(worker),
            pool: Arc::clone(&inner.pool),
        })
    }

    /// Binds a new RTP/RTCP pair on `ip`.
    fn bind(&self, ip: IpAddr) -> Result<FreshPair, RelayError> {
        let (lease, rtp, rtcp) = self.inner.pool.acquire(ip)?;
        let id = self.inner.next_pair.fetch_add(1, Ordering::Relaxed);
        Ok(FreshPair { id, sockets: [rtp, rtcp], lease })
    }

    /// Sessions allocated and not yet dropped (0 once the relay is shut down). The
    /// sockets of dropped sessions stay open, idle, for reuse: see
    /// [`Relay::idle_sockets`].
    pub fn active_sessions(&self) -> usize {
        if self.inner.shut.load(Ordering::Relaxed) { 0 } else { self.inner.pool.active() }
    }

    /// Sockets of dropped sessions kept open for reuse (four per session; see
    /// [`RelayConfig::reuse_after`] and [`RelayConfig::max_idle_sockets`]).
    pub fn idle_sockets(&self) -> usize {
        self.inner.workers.iter().map(|w| w.lock().idle.len() * 2).sum()
    }

    /// Datagrams that arrived on idle sockets (of dropped sessions, not yet reused) and
    /// were read and discarded, since the relay started.
    pub fn idle_discarded(&self) -> u64 {
        self.inner.discarded.load(Ordering::Relaxed)
    }

    /// Stops the workers, closing every session's sockets and returning their ports. Waits
    /// for the threads to end; idempotent. Sessions still held then fail with
    /// [`RelayError::ShutDown`].
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

/// The media of one call, owned by its call control. Dropping it stops its relaying;
/// its sockets stay open, idle, to be reused by a later session after
/// [`RelayConfig::reuse_after`] (or closed, beyond [`RelayConfig::max_idle_sockets`]).
#[derive(Debug)]
pub struct MediaSession {
    id: u64,
    local: [LocalPorts; 2],
    /// Ids of side A's and side B's socket pairs.
    pairs: [u64; 2],
    stats: Arc<SharedStats>,
    worker: Arc<WorkerHandle>,
    pool: Arc<PortPool>,
}

impl MediaSession {
    /// A relay-wide unique number for this session (for logs).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The relay's address and ports for `side`, to put in the SDP sent to that side.
    pub fn local(&self, side: Side) -> LocalPorts {
        self.local[crate::router::side_index(side)]
    }

    fn family_matches(&self, side: Side, addr: SocketAddr) -> bool {
        self.local(side).ip.is_ipv4() == addr.is_ipv4()
    }

    /// Where `side`'s peer said (in its SDP offer or answer) it receives media. Clears
    /// that side's latches: the next packets latch again.
    pub fn set_peer(&self, side: Side, peer: PeerMedia) -> Result<(), RelayError> {
        if !self.family_matches(side, peer.rtp) || peer.rtcp.is_some_and(|a| !self.family_matches(side, a)) {
            return Err(RelayError::AddressFamily);
        }
        self.worker.send(Command::SetPeer(self.id, side, peer), Wake::Prompt).map_err(|_| RelayError::ShutDown)
    }

    /// Stops (`false`) or restarts (`true`) forwarding toward `side`'s peer, e.g. while
    /// that stream is `a=inactive`. Datagrams that would have gone there are counted as
    /// `dropped_no_destination` of the other side. Latching goes on.
    pub fn set_forwarding(&self, side: Side, on: bool) -> Result<(), RelayError> {
        self.worker.send(Command::SetForwarding(self.id, side, on), Wake::Prompt).map_err(|_| RelayError::ShutDown)
    }

    /// Sends the session's [`MediaEvent`]s to `sink`.
    pub fn set_event_sink(&self, sink: EventSink) -> Result<(), RelayError> {
        self.worker
            .send(Command::SetSink(self.id, crate::worker::Sink(sink)), Wake::Lazy)
            .map_err(|_| RelayError::ShutDown)
    }

    /// The telephone-event payload types `side` declared in its SDP (the first two are kept).
    /// Packets of those types, from either side, are read for DTMF digits.
    pub fn set_telephone_events(&self, side: Side, types: &[TelephoneEventType]) -> Result<(), RelayError> {
        let mut kept = [None; 2];
        for (slot, t) in kept.iter_mut().zip(types) {
            *slot = Some(*t);
        }
        self.worker.send(Command::SetTelephoneEvents(self.id, side, kept), Wake::Lazy).map_err(|_| RelayError::ShutDown)
    }

    /// Records the session's audio to a WAV file at `path` (8 kHz): both sides in two channels
    /// (caller left, callee right), mixed in one, or one side only, as `mode` says; from now
    /// until [`MediaSession::stop_recording`] or the session's end.
    pub fn start_recording(
        &self,
        path: &std::path::Path,
        mode: crate::record::RecordMode,
    ) -> io::Result<crate::record::Recording> {
        let (tap, recording) = crate::record::start(path, Instant::now(), mode)?;
        self.worker
            .send(Command::StartRecording(self.id, crate::worker::Tap(Box::new(tap))), Wake::Prompt)
            .map_err(|_| io::Error::other("the relay is shut down"))?;
        Ok(recording)
    }

    /// Plays `source` into `side` (music on hold...), in the codec that side sends, instead of
    /// what the other side sends; `None` stops it and the other side is heard again.
    pub fn play(&self, side: Side, source: Option<crate::player::Source>) -> Result<(), RelayError> {
        self.worker.send(Command::Play(self.id, side, source), Wake::Prompt).map_err(|_| RelayError::ShutDown)
    }

    /// Stops the recording, if one runs (the file is completed in the background).
    pub fn stop_recording(&self) -> Result<(), RelayError> {
        self.worker.send(Command::StopRecording(self.id), Wake::Prompt).map_err(|_| RelayError::ShutDown)
    }

    /// Encrypts `side`'s media with SRTP from now on (`None`: plain RTP again). Packets from
    /// that side that fail authentication or replay are dropped and counted
    /// ([`SideStats::dropped_srtp`](crate::SideStats::dropped_srtp)).
    pub fn set_srtp(&self, side: Side, keys: Option<&SrtpKeys>) -> Result<(), RelayError> {
        let leg = keys.map(|k| Box::new(crate::worker::SrtpLeg::new(k)));
        self.worker.send(Command::SetSrtp(self.id, side, leg), Wake::Prompt).map_err(|_| RelayError::ShutDown)
    }

    /// Makes the phone on `side` a member of `conference`: what it sends is mixed for the
    /// other members instead of being relayed, and it hears their mix (in the codec it sends).
    pub fn join(&self, side: Side, conference: &Conference, settings: MemberSettings) -> Result<(), RelayError> {
        if !Arc::ptr_eq(&self.worker, &conference.handle) {
            return Err(RelayError::OtherWorker);
        }
        self.worker
            .send(Command::Join(conference.id, self.id, side, settings), Wake::Prompt)
            .map_err(|_| RelayError::ShutDown)
    }

    /// Changes how `side` takes part in its conference (mute, volume, role).
    pub fn set_member(&self, side: Side, settings: MemberSettings) -> Result<(), RelayError> {
        self.worker.send(Command::SetMember(self.id, side, settings), Wake::Prompt).map_err(|_| RelayError::ShutDown)
    }

    /// Takes `side` out of its conference: it is relayed to the other side again.
    pub fn leave(&self, side: Side) -> Result<(), RelayError> {
        self.worker.send(Command::Leave(self.id, side), Wake::Prompt).map_err(|_| RelayError::ShutDown)
    }

    /// Transcodes the session's RTP from now on (`None`: relay it untouched again).
    pub fn set_transcoding(&self, plan: Option<TranscodePlan>) -> Result<(), RelayError> {
        self.worker.send(Command::SetTranscoding(self.id, plan), Wake::Prompt).map_err(|_| RelayError::ShutDown)
    }

    /// A snapshot of the session's counters.
    pub fn stats(&self) -> SessionStats {
        self.stats.snapshot()
    }

    /// The last published quality figures of `side` (updated about once a second while
    /// packets flow).
    pub fn quality(&self, side: Side) -> crate::quality::SideQuality {
        self.stats.quality(side)
    }

    /// Time since the last datagram arrived on any of the session's sockets, or since it
    /// was allocated: for media timeouts (e.g. hang up after 60 s of silence).
    pub fn idle_for(&self, now: Instant) -> Duration {
        self.stats.idle_for(now)
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        self.pool.session_closed();
        let [a, b] = self.local;
        // If the worker is gone it has closed the sockets already.
        self.worker.release(self.id, [(a.ip, a.rtp, self.pairs[0]), (b.ip, b.rtp, self.pairs[1])]);
    }
}
