//! The relay's public handles: [`Relay`] and [`MediaSession`].

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::pool::PortPool;
use crate::stats::{SessionStats, SharedStats};
use crate::worker::{Command, NewSession, WorkerConfig, WorkerHandle, spawn};

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
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::PortsExhausted => f.write_str("no free media port pair"),
            RelayError::AddressFamily => f.write_str("peer address family differs from the local side's"),
            RelayError::ShutDown => f.write_str("media relay shut down"),
            RelayError::Io(e) => write!(f, "media socket: {e}"),
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

struct RelayInner {
    workers: Vec<Arc<WorkerHandle>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next_worker: AtomicUsize,
    next_id: AtomicU64,
    pool: Arc<PortPool>,
    shut: AtomicBool,
}

impl RelayInner {
    fn shutdown(&self) {
        self.shut.store(true, Ordering::Relaxed);
        for w in &self.workers {
            let _ = w.send(Command::Shutdown);
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
        let wcfg = WorkerConfig { relatch_after: cfg.relatch_after, coalesce: cfg.coalesce };
        // Dropping `inner` on an error below stops the workers already started.
        let mut inner = RelayInner {
            workers: Vec::with_capacity(n),
            threads: Mutex::new(Vec::with_capacity(n)),
            next_worker: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            pool,
            shut: AtomicBool::new(false),
        };
        for i in 0..n {
            let (handle, thread) = spawn(i, wcfg)?;
            inner.workers.push(Arc::new(handle));
            inner.threads.lock().unwrap_or_else(PoisonError::into_inner).push(thread);
        }
        Ok(Relay { inner: Arc::new(inner) })
    }

    /// Binds RTP and RTCP sockets for side A on `a_ip` and side B on `b_ip` (addresses of
    /// this machine facing each peer, IPv4 or IPv6, possibly different) and starts
    /// relaying between them.
    pub fn allocate(&self, a_ip: IpAddr, b_ip: IpAddr) -> Result<MediaSession, RelayError> {
        let inner = &self.inner;
        if inner.shut.load(Ordering::Relaxed) {
            return Err(RelayError::ShutDown);
        }
        let (lease_a, a_rtp, a_rtcp) = inner.pool.acquire(a_ip, true)?;
        let (lease_b, b_rtp, b_rtcp) = inner.pool.acquire(b_ip, false)?;
        let local = [
            LocalPorts { ip: a_ip, rtp: lease_a.port(), rtcp: lease_a.port() + 1 },
            LocalPorts { ip: b_ip, rtp: lease_b.port(), rtcp: lease_b.port() + 1 },
        ];
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(SharedStats::new(Instant::now()));
        let worker =
            Arc::clone(&inner.workers[inner.next_worker.fetch_add(1, Ordering::Relaxed) % inner.workers.len()]);
        let new = NewSession {
            id,
            sockets: [a_rtp, a_rtcp, b_rtp, b_rtcp],
            stats: Arc::clone(&stats),
            leases: [lease_a, lease_b],
        };
        // On failure the command, and with it the sockets and leases, is dropped here.
        worker.send(Command::Add(Box::new(new))).map_err(|_| RelayError::ShutDown)?;
        Ok(MediaSession { id, local, stats, worker })
    }

    /// Sessions whose sockets are open. A dropped [`MediaSession`] stops counting once
    /// its worker has closed its sockets and returned its ports.
    pub fn active_sessions(&self) -> usize {
        self.inner.pool.active()
    }

    /// Stops the workers, closing every session's sockets and returning their ports. Waits
    /// for the threads to end; idempotent. Sessions still held then fail with
    /// [`RelayError::ShutDown`].
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

/// The media of one call, owned by its call control. Dropping it closes its sockets and
/// returns its ports to the pool (asynchronously, at the worker's next wake-up).
#[derive(Debug)]
pub struct MediaSession {
    id: u64,
    local: [LocalPorts; 2],
    stats: Arc<SharedStats>,
    worker: Arc<WorkerHandle>,
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
        self.worker.send(Command::SetPeer(self.id, side, peer)).map_err(|_| RelayError::ShutDown)
    }

    /// Stops (`false`) or restarts (`true`) forwarding toward `side`'s peer, e.g. while
    /// that stream is `a=inactive`. Datagrams that would have gone there are counted as
    /// `dropped_no_destination` of the other side. Latching goes on.
    pub fn set_forwarding(&self, side: Side, on: bool) -> Result<(), RelayError> {
        self.worker.send(Command::SetForwarding(self.id, side, on)).map_err(|_| RelayError::ShutDown)
    }

    /// A snapshot of the session's counters.
    pub fn stats(&self) -> SessionStats {
        self.stats.snapshot()
    }

    /// Time since the last datagram arrived on any of the session's sockets, or since it
    /// was allocated: for media timeouts (e.g. hang up after 60 s of silence).
    pub fn idle_for(&self, now: Instant) -> Duration {
        self.stats.idle_for(now)
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        // If the worker is gone it has closed the sockets already.
        let _ = self.worker.send(Command::Remove(self.id));
    }
}
