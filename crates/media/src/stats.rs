//! Per-session counters shared between a worker (the only writer) and the
//! [`MediaSession`](crate::MediaSession) handle (readers).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::Side;
use crate::quality::SideQuality;
use crate::router::{Kind, side_index};

/// Counters of one side of a session, as seen at one moment.
///
/// Everything but `sent_*` and `send_errors` counts datagrams that arrived on this side's
/// sockets; `sent_*` and `send_errors` count datagrams the relay sent toward this side's
/// peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SideStats {
    /// Datagrams accepted from this side's peer (source passed the latch), forwarded or not.
    pub received_packets: u64,
    /// Bytes of `received_packets`.
    pub received_bytes: u64,
    /// Datagrams sent to this side's peer.
    pub sent_packets: u64,
    /// Bytes of `sent_packets`.
    pub sent_bytes: u64,
    /// Datagrams dropped because they came from a source other than the latched one.
    pub dropped_foreign: u64,
    /// Datagrams accepted from this side's peer but not forwarded because the other side
    /// has no destination yet (no SDP address, nothing latched) or forwarding toward it is
    /// stopped.
    pub dropped_no_destination: u64,
    /// Datagrams accepted from this side's peer but not forwarded because they were
    /// truncated (bigger than the relay's buffer) or too short to be RTP or RTCP (such as
    /// NAT keep-alives, which still refresh the latch).
    pub dropped_invalid: u64,
    /// SRTP or SRTCP datagrams refused on an encrypted side: failed authentication (tampered,
    /// or keyed otherwise) or replayed. Not counted in `received_*`.
    pub dropped_srtp: u64,
    /// Datagrams toward this side's peer that the kernel refused (full send buffer, ...).
    pub send_errors: u64,
    /// The source the RTP socket is latched to (also RTCP's with rtcp-mux).
    pub latched_rtp: Option<SocketAddr>,
    /// The source the RTCP socket is latched to.
    pub latched_rtcp: Option<SocketAddr>,
}

impl SideStats {
    /// All datagrams that arrived on this side's sockets and were not forwarded.
    pub fn dropped(&self) -> u64 {
        self.dropped_foreign + self.dropped_no_destination + self.dropped_invalid + self.dropped_srtp
    }
}

/// Counters of a session, as seen at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionStats {
    /// Side A (caller).
    pub a: SideStats,
    /// Side B (callee).
    pub b: SideStats,
    /// When the last datagram arrived on any of the session's sockets (accepted or not).
    pub last_rx: Option<Instant>,
}

impl SessionStats {
    /// The counters of `side`.
    pub fn side(&self, side: Side) -> &SideStats {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }
}

/// Adds `n` to a counter that only one thread writes: a plain load and store, no locked
/// read-modify-write instruction on the packet path.
fn bump(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.store(counter.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
}

/// Counters of one side.
#[derive(Debug, Default)]
pub(crate) struct SideCounters {
    received_packets: AtomicU64,
    received_bytes: AtomicU64,
    sent_packets: AtomicU64,
    sent_bytes: AtomicU64,
    dropped_foreign: AtomicU64,
    dropped_no_destination: AtomicU64,
    dropped_invalid: AtomicU64,
    dropped_srtp: AtomicU64,
    send_errors: AtomicU64,
    /// Latched sources by [`Kind::index`]; written only when a latch moves.
    latched: Mutex<[Option<SocketAddr>; 2]>,
}

/// What one receive batch did, added to the counters at once.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RxTally {
    pub(crate) received_packets: u64,
    pub(crate) received_bytes: u64,
    pub(crate) dropped_foreign: u64,
    pub(crate) dropped_no_destination: u64,
    pub(crate) dropped_invalid: u64,
    pub(crate) dropped_srtp: u64,
}

/// A session's counters.
#[derive(Debug)]
pub(crate) struct SharedStats {
    sides: [SideCounters; 2],
    created: Instant,
    /// Nanoseconds after `created` of the last arrival, plus one; zero if none yet.
    last_rx: AtomicU64,
    /// Quality per side, published by the worker about once a second.
    quality: Mutex<[SideQuality; 2]>,
}

impl SharedStats {
    pub(crate) fn new(created: Instant) -> SharedStats {
        SharedStats { sides: Default::default(), created, last_rx: AtomicU64::new(0), quality: Mutex::default() }
    }

    /// Publishes the worker's quality figures.
    pub(crate) fn publish_quality(&self, quality: [SideQuality; 2]) {
        *self.quality.lock().unwrap_or_else(PoisonError::into_inner) = quality;
    }

    /// The last published quality of `side`.
    pub(crate) fn quality(&self, side: Side) -> SideQuality {
        self.quality.lock().unwrap_or_else(PoisonError::into_inner)[side_index(side)]
    }

    /// Records the datagrams of one receive batch on `side`, arrived at `now`.
    pub(crate) fn record_rx(&self, side: Side, t: &RxTally, now: Instant) {
        let s = &self.sides[side_index(side)];
        bump(&s.received_packets, t.received_packets);
        bump(&s.received_bytes, t.received_bytes);
        bump(&s.dropped_foreign, t.dropped_foreign);
        bump(&s.dropped_no_destination, t.dropped_no_destination);
        bump(&s.dropped_invalid, t.dropped_invalid);
        bump(&s.dropped_srtp, t.dropped_srtp);
        let ns = now.saturating_duration_since(self.created).as_nanos();
        self.last_rx.store(u64::try_from(ns).unwrap_or(u64::MAX - 1) + 1, Ordering::Relaxed);
    }

    /// Records datagrams sent toward `side`'s peer.
    pub(crate) fn record_tx(&self, side: Side, packets: u64, bytes: u64, errors: u64) {
        let s = &self.sides[side_index(side)];
        bump(&s.sent_packets, packets);
        bump(&s.sent_bytes, bytes);
        bump(&s.send_errors, errors);
    }

    /// Records that `side`'s `kind` socket latched to `src` (`None`: latch cleared).
    pub(crate) fn record_latch(&self, side: Side, kind: Kind, src: Option<SocketAddr>) {
        let mut l = self.sides[side_index(side)].latched.lock().unwrap_or_else(PoisonError::into_inner);
        l[kind.index()] = src;
    }

    fn side(&self, side: Side) -> SideStats {
        let s = &self.sides[side_index(side)];
        let latched = *s.latched.lock().unwrap_or_else(PoisonError::into_inner);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SideStats {
            received_packets: get(&s.received_packets),
            received_bytes: get(&s.received_bytes),
            sent_packets: get(&s.sent_packets),
            sent_bytes: get(&s.sent_bytes),
            dropped_foreign: get(&s.dropped_foreign),
            dropped_no_destination: get(&s.dropped_no_destination),
            dropped_invalid: get(&s.dropped_invalid),
            dropped_srtp: get(&s.dropped_srtp),
            send_errors: get(&s.send_errors),
            latched_rtp: latched[Kind::Rtp.index()],
            latched_rtcp: latched[Kind::Rtcp.index()],
        }
    }

    /// A snapshot of all counters.
    pub(crate) fn snapshot(&self) -> SessionStats {
        SessionStats { a: self.side(Side::A), b: self.side(Side::B), last_rx: self.last_rx() }
    }

    fn last_rx(&self) -> Option<Instant> {
        match self.last_rx.load(Ordering::Relaxed) {
            0 => None,
            ns => self.created.checked_add(Duration::from_nanos(ns - 1)),
        }
    }

    /// Time since the last arrival, or since the session was created.
    pub(crate) fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_rx().unwrap_or(self.created))
    }
}
