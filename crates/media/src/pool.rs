//! The port pool: free lists of even RTP ports, one per local IP address.
//!
//! Each list starts at a random offset in the configured range (so a restarted relay does
//! not hand out the ports that late packets of the previous run still hit) and released
//! ports go to the back (so a port rests as long as possible before it is reused). A port
//! that another process holds fails to bind and is skipped, and stays in the list for
//! later. Ports are released by dropping the [`PortLease`], which the worker does after
//! it has closed the sockets, so a released port can be bound again at once.
//!
//! A dropped session's sockets are usually not closed but kept idle for reuse (see
//! [`crate::idle`]): their leases stay held, so their ports are not free here; the
//! relay offers them through the idle sets instead.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::{IpAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::RelayError;
use crate::sys::bind_pair;

/// Free even ports per local IP address.
#[derive(Debug)]
pub(crate) struct PortPool {
    /// First and last RTP port (both even; RTCP of the last is `last + 1`).
    first: u16,
    last: u16,
    seed: u64,
    dscp: Option<u8>,
    free: Mutex<HashMap<IpAddr, VecDeque<u16>>>,
    /// Sessions allocated and not yet dropped.
    active: AtomicUsize,
}

/// An RTP/RTCP port pair taken from the pool; dropping it gives the pair back.
#[derive(Debug)]
pub(crate) struct PortLease {
    pool: Arc<PortPool>,
    ip: IpAddr,
    port: u16,
}

impl PortLease {
    /// The leased RTP port (RTCP is one above).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.lock().entry(self.ip).or_default().push_back(self.port);
    }
}

impl PortPool {
    /// A pool of the even ports in `port_min..=port_max` that have an RTCP port above
    /// them in the range. Fails if there are none.
    pub(crate) fn new(port_min: u16, port_max: u16, dscp: Option<u8>) -> io::Result<PortPool> {
        let first = port_min.checked_add(port_min % 2).filter(|&p| p != 0);
        let last = port_max.checked_sub(1).map(|p| p - p % 2);
        match (first, last) {
            (Some(first), Some(last)) if first <= last => Ok(PortPool {
                first,
                last,
                seed: RandomState::new().hash_one(std::process::id()),
                dscp,
                free: Mutex::new(HashMap::new()),
                active: AtomicUsize::new(0),
            }),
            _ => {
                Err(io::Error::new(io::ErrorKind::InvalidInput, "port range holds no even RTP port with RTCP above it"))
            }
        }
    }

    /// Number of RTP/RTCP pairs per IP address.
    pub(crate) fn pairs(&self) -> usize {
        usize::from((self.last - self.first) / 2) + 1
    }

    /// Sessions allocated and not yet dropped.
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Counts a session allocated.
    pub(crate) fn session_opened(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a session dropped.
    pub(crate) fn session_closed(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, VecDeque<u16>>> {
        // Nothing panics while holding the lock; if something did, the lists are still
        // consistent (a port is popped or pushed whole).
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fresh_list(&self) -> VecDeque<u16> {
        let n = self.pairs();
        let offset = (self.seed % n as u64) as usize;
        (0..n).map(|i| self.first + 2 * ((i + offset) % n) as u16).collect()
    }

    /// Takes a free pair on `ip` and binds its RTP and RTCP sockets.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<(PortLease, UdpSocket, UdpSocket), RelayError> {
        let mut free = self.lock();
        let list = free.entry(ip).or_insert_with(|| self.fresh_list());
        for _ in 0..list.len() {
            let Some(port) = list.pop_front() else { break };
            match bind_pair(ip, port, self.dscp) {
                Ok((rtp, rtcp)) => {
                    let lease = PortLease { pool: Arc::clone(self), ip, port };
                    return Ok((lease, rtp, rtcp));
                }
                // Held by another process (or a socket not yet closed): try the next one.
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => list.push_back(port),
                Err(e) => {
                    list.push_front(port);
                    return Err(RelayError::Io(e));
                }
            }
        }
        Err(RelayError::PortsExhausted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_odd_bounds_rounded_inward() {
        let p = PortPool::new(40001, 40006, None).unwrap();
        assert_eq!((p.first, p.last), (40002, 40004));
        assert_eq!(p.pairs(), 2);
    }

    #[test]
    fn range_without_pair_rejected() {
        assert!(PortPool::new(40001, 40002, None).is_err());
        assert!(PortPool::new(40002, 40002, None).is_err());
        assert!(PortPool::new(40010, 40000, None).is_err());
        assert!(PortPool::new(65534, 65535, None).is_ok());
        assert!(PortPool::new(0, 1, None).is_err());
    }

    #[test]
    fn fresh_list_covers_every_pair_once() {
        let p = PortPool::new(40100, 40199, None).unwrap();
        let mut l: Vec<u16> = p.fresh_list().into();
        l.sort_unstable();
        assert_eq!(l, (40100..40199).step_by(2).collect::<Vec<_>>());
    }

    #[test]
    fn pool_empty_exhausted_then_released_port_reused() {
        let p = Arc::new(PortPool::new(40200, 40203, None).unwrap());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let (l1, _a, _b) = p.acquire(ip).unwrap();
        let (l2, _c, _d) = p.acquire(ip).unwrap();
        assert_ne!(l1.port(), l2.port());
        assert!(matches!(p.acquire(ip), Err(RelayError::PortsExhausted)));
        let port = l1.port();
        drop((l1, _a, _b));
        let (l3, _e, _f) = p.acquire(ip).unwrap();
        assert_eq!(l3.port(), port);
    }

    #[test]
    fn sessions_counted_open_and_closed() {
        let p = PortPool::new(40230, 40233, None).unwrap();
        p.session_opened();
        p.session_opened();
        p.session_closed();
        assert_eq!(p.active(), 1);
    }

    #[test]
    fn pool_port_held_elsewhere_skipped() {
        let p = Arc::new(PortPool::new(40210, 40213, None).unwrap());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let _squatter = UdpSocket::bind("127.0.0.1:40211").unwrap();
        let (l, _a, _b) = p.acquire(ip).unwrap();
        assert_eq!(l.port(), 40212);
        assert!(matches!(p.acquire(ip), Err(RelayError::PortsExhausted)));
    }

    #[test]
    fn pool_unknown_ip_io_error() {
        let p = Arc::new(PortPool::new(40220, 40223, None).unwrap());
        // TEST-NET-3 is not an address of this machine.
        let r = p.acquire("203.0.113.1".parse().unwrap());
        assert!(matches!(r, Err(RelayError::Io(_))));
    }
}
