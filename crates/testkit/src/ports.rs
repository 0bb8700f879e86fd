//! Reserving free loopback ports for tests that run in parallel.
//!
//! A port is handed out when it is free on 127.0.0.1 for both UDP and TCP (a bind probe), not
//! already held by this process, and not held by another process using this module: each
//! reserved port is also guarded by an exclusive lock on
//! `$TMPDIR/switchboard-testkit-ports/<port>.lock`, released when the [`PortBlock`] is dropped
//! (or its process dies). The probe sockets are closed at once, so the peer that is given the
//! port can bind it; keep the block alive for as long as that peer runs.
//!
//! ```no_run
//! use testkit::ports;
//! let sip = ports::reserve(ports::SIP_PORTS, 2)?; // e.g. a SIP port and the one after it
//! let rtp = ports::reserve(ports::RTP_PORTS, 10)?;
//! println!("SIP on {}, RTP {}-{}", sip.first(), rtp.first(), rtp.last());
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

/// The SIP ports that the testkit's own experiments use by default.
pub const SIP_PORTS: RangeInclusive<u16> = 25060..=25099;
/// The RTP ports that the testkit's own experiments use by default.
pub const RTP_PORTS: RangeInclusive<u16> = 26000..=26999;

/// A run of consecutive ports reserved for one test; released on drop.
#[derive(Debug)]
pub struct PortBlock {
    first: u16,
    len: u16,
    _locks: Vec<File>,
}

impl PortBlock {
    /// The first port of the block.
    pub fn first(&self) -> u16 {
        self.first
    }

    /// The last port of the block.
    pub fn last(&self) -> u16 {
        self.first + (self.len - 1)
    }

    /// How many ports the block holds.
    pub fn len(&self) -> u16 {
        self.len
    }

    /// Never true: a block holds at least one port.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `i`-th port of the block.
    ///
    /// # Panics
    /// If `i` is not below [`len`](Self::len).
    pub fn port(&self, i: u16) -> u16 {
        assert!(i < self.len, "port index {i} out of a block of {}", self.len);
        self.first + i
    }

    /// The ports of the block.
    pub fn range(&self) -> RangeInclusive<u16> {
        self.first..=self.last()
    }
}

impl Drop for PortBlock {
    fn drop(&mut self) {
        let mut held = held().lock().unwrap_or_else(PoisonError::into_inner);
        for p in self.range() {
            held.remove(&p);
        }
    }
}

fn held() -> &'static Mutex<HashSet<u16>> {
    static HELD: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    HELD.get_or_init(|| Mutex::new(HashSet::new()))
}

fn lock_dir() -> io::Result<PathBuf> {
    let dir = std::env::temp_dir().join("switchboard-testkit-ports");
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Whether `port` can be bound on 127.0.0.1 for both UDP and TCP right now.
pub fn is_free(port: u16) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    UdpSocket::bind(addr).is_ok() && TcpListener::bind(addr).is_ok()
}

/// Reserves `len` consecutive ports inside `range`, each free for UDP and TCP on 127.0.0.1.
///
/// Successive calls start their search at different places (seeded by the process id) so that
/// parallel tests rarely contend for the same ports.
///
/// # Errors
/// `InvalidInput` if `len` is 0 or larger than the range, `AddrNotAvailable` if no such run of
/// ports is free, or an I/O error from the lock files.
pub fn reserve(range: RangeInclusive<u16>, len: u16) -> io::Result<PortBlock> {
    let (lo, hi) = (*range.start(), *range.end());
    if len == 0 || hi < lo || usize::from(hi - lo) + 1 < usize::from(len) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("cannot reserve {len} ports in {lo}..={hi}")));
    }
    let candidates = usize::from(hi - lo) + 2 - usize::from(len);
    static NEXT: AtomicUsize = AtomicUsize::new(usize::MAX);
    let _ = NEXT.compare_exchange(usize::MAX, std::process::id() as usize * 7, Ordering::Relaxed, Ordering::Relaxed);
    let start = NEXT.fetch_add(usize::from(len), Ordering::Relaxed);
    let dir = lock_dir()?;
    for k in 0..candidates {
        let offset = (start + k) % candidates;
        let Ok(offset) = u16::try_from(offset) else { continue };
        let first = lo + offset;
        if let Some(block) = try_block(&dir, first, len)? {
            return Ok(block);
        }
    }
    Err(io::Error::new(io::ErrorKind::AddrNotAvailable, format!("no {len} consecutive free ports in {lo}..={hi}")))
}

fn try_block(dir: &std::path::Path, first: u16, len: u16) -> io::Result<Option<PortBlock>> {
    let mut held = held().lock().unwrap_or_else(PoisonError::into_inner);
    let ports = first..first + len;
    if ports.clone().any(|p| held.contains(&p)) {
        return Ok(None);
    }
    let mut locks = Vec::with_capacity(usize::from(len));
    for p in ports.clone() {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(format!("{p}.lock")))?;
        if file.try_lock().is_err() || !is_free(p) {
            return Ok(None);
        }
        locks.push(file);
    }
    held.extend(ports);
    Ok(Some(PortBlock { first, len, _locks: locks }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_gives_disjoint_free_blocks() {
        let a = reserve(26900..=26949, 4).unwrap();
        let b = reserve(26900..=26949, 4).unwrap();
        assert_eq!(a.len(), 4);
        assert!(a.last() < b.first() || b.last() < a.first(), "{a:?} overlaps {b:?}");
        for p in a.range().chain(b.range()) {
            assert!(is_free(p), "port {p} should still be bindable by the peer");
        }
    }

    #[test]
    fn reserve_skips_a_port_in_use() {
        // Hold port p ourselves: in p..=p+1 only p+1 can be handed out, and only once.
        let (_busy, p) = (26960..26990)
            .find_map(|p| UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).ok().map(|s| (s, p)))
            .expect("a bindable port");
        let Ok(b) = reserve(p..=p + 1, 1) else { return }; // p+1 busy elsewhere: nothing to check
        assert_eq!(b.first(), p + 1);
        assert!(reserve(p..=p + 1, 1).is_err(), "p+1 is held, p is busy");
        drop(b);
        assert_eq!(reserve(p..=p + 1, 1).unwrap().first(), p + 1, "released on drop");
    }

    #[test]
    fn reserve_rejects_impossible_requests() {
        assert!(reserve(26000..=26001, 3).is_err());
        assert!(reserve(26000..=26001, 0).is_err());
    }
}
