//! The idle socket pairs of one worker, kept for reuse (sans-IO: time passed in).
//!
//! When a session is dropped its two RTP/RTCP pairs are not closed: they stay bound and
//! registered with their worker, which reads and discards whatever still arrives on them,
//! and they wait here, per local address and oldest first, until a later session takes
//! them. A pair is offered again only once it has been idle for the quarantine
//! ([`RelayConfig::reuse_after`](crate::RelayConfig::reuse_after)), so that late media of
//! the old call does not reach the next one; when no port is left at all, the oldest pair
//! is taken whatever its age rather than refusing the call.
//!
//! ```text
//!   drop ──push──▶ [ oldest … newest ] per address ──take (idle ≥ quarantine)──▶ allocate
//!                        │
//!                        └── trim: beyond the cap, the oldest are closed
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// An idle RTP/RTCP pair: its worker-wide id, its RTP port and when it became idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IdlePair {
    /// The relay-wide id of the pair, by which its worker finds its sockets.
    pub(crate) id: u64,
    /// The RTP port (RTCP is one above).
    pub(crate) port: u16,
    /// When the session using it was dropped.
    pub(crate) since: Instant,
}

/// Idle pairs per local address, oldest first.
#[derive(Debug, Default)]
pub(crate) struct IdleSet {
    by_ip: HashMap<IpAddr, VecDeque<IdlePair>>,
    len: usize,
}

impl IdleSet {
    /// Number of idle pairs.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds a pair bound on `ip` that has just become idle. Callers take `since` under the
    /// lock that guards the set, so pairs arrive in time order.
    pub(crate) fn push(&mut self, ip: IpAddr, pair: IdlePair) {
        self.by_ip.entry(ip).or_default().push_back(pair);
        self.len += 1;
    }

    /// Takes the oldest pair on `ip` if it has been idle for at least `min_idle` at `now`
    /// (`Duration::ZERO`: whatever its age).
    pub(crate) fn take(&mut self, ip: IpAddr, now: Instant, min_idle: Duration) -> Option<IdlePair> {
        let list = self.by_ip.get_mut(&ip)?;
        let oldest = list.front()?;
        if now.saturating_duration_since(oldest.since) < min_idle {
            return None;
        }
        self.len -= 1;
        list.pop_front()
    }

    /// Gives back a pair taken but not used, in its place by age.
    pub(crate) fn put_back(&mut self, ip: IpAddr, pair: IdlePair) {
        let list = self.by_ip.entry(ip).or_default();
        let at = list.iter().position(|p| p.since > pair.since).unwrap_or(list.len());
        list.insert(at, pair);
        self.len += 1;
    }

    /// Removes the pair `id` wherever it is; whether it was there.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        for list in self.by_ip.values_mut() {
            if let Some(at) = list.iter().position(|p| p.id == id) {
                list.remove(at);
                self.len -= 1;
                return true;
            }
        }
        false
    }

    /// Removes the oldest pairs, over all addresses, until at most `max` remain, and
    /// returns their ids (to be closed).
    pub(crate) fn trim(&mut self, max: usize) -> Vec<u64> {
        let mut removed = Vec::new();
        while self.len > max {
            // A handful of addresses: a linear search for the oldest front is cheapest.
            let oldest = self.by_ip.values_mut().filter(|l| !l.is_empty()).min_by_key(|l| l.front().map(|p| p.since));
            let Some(pair) = oldest.and_then(VecDeque::pop_front) else { break };
            self.len -= 1;
            removed.push(pair.id);
        }
        removed
    }

    /// Forgets every pair (their worker has closed them).
    pub(crate) fn clear(&mut self) {
        self.by_ip.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Duration = Duration::from_secs(2);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pair(id: u64, since: Instant) -> IdlePair {
        IdlePair { id, port: 40000 + 2 * id as u16, since }
    }

    #[test]
    fn empty_take_none() {
        let mut set = IdleSet::default();
        assert_eq!(set.take(ip("127.0.0.1"), Instant::now(), Duration::ZERO), None);
        assert_eq!(set.len(), 0);
    }

    #[test]
    fn quarantined_take_none_then_after_quarantine_oldest() {
        let t = Instant::now();
        let mut set = IdleSet::default();
        set.push(ip("127.0.0.1"), pair(1, t));
        set.push(ip("127.0.0.1"), pair(2, t + Duration::from_millis(10)));
        assert_eq!(set.take(ip("127.0.0.1"), t + Q - Duration::from_millis(1), Q), None);
        assert_eq!(set.take(ip("127.0.0.1"), t + Q, Q), Some(pair(1, t)));
        // The second is still 10 ms short of its quarantine.
        assert_eq!(set.take(ip("127.0.0.1"), t + Q, Q), None);
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn quarantined_take_any_age_oldest() {
        let t = Instant::now();
        let mut set = IdleSet::default();
        set.push(ip("127.0.0.1"), pair(1, t));
        set.push(ip("127.0.0.1"), pair(2, t));
        assert_eq!(set.take(ip("127.0.0.1"), t, Duration::ZERO).map(|p| p.id), Some(1));
    }

    #[test]
    fn idle_take_other_address_none() {
        let t = Instant::now();
        let mut set = IdleSet::default();
        set.push(ip("127.0.0.1"), pair(1, t));
        assert_eq!(set.take(ip("::1"), t + Q, Q), None);
        assert_eq!(set.take(ip("127.0.0.2"), t + Q, Q), None);
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn taken_put_back_keeps_age_order() {
        let t = Instant::now();
        let mut set = IdleSet::default();
        let a = ip("127.0.0.1");
        set.push(a, pair(1, t));
        set.push(a, pair(2, t + Duration::from_millis(5)));
        let first = set.take(a, t + Q, Q).unwrap();
        set.push(a, pair(3, t + Duration::from_millis(9)));
        set.put_back(a, first);
        assert_eq!(set.len(), 3);
        let order: Vec<u64> = (0..3).filter_map(|_| set.take(a, t, Duration::ZERO)).map(|p| p.id).collect();
        assert_eq!(order, [1, 2, 3]);
    }

    #[test]
    fn over_cap_trim_closes_oldest_over_all_addresses() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut set = IdleSet::default();
        set.push(ip("127.0.0.1"), pair(1, t));
        set.push(ip("127.0.0.2"), pair(2, t + ms(1)));
        set.push(ip("127.0.0.1"), pair(3, t + ms(2)));
        set.push(ip("127.0.0.2"), pair(4, t + ms(3)));
        assert_eq!(set.trim(4), Vec::<u64>::new());
        assert_eq!(set.trim(1), vec![1, 2, 3]);
        assert_eq!(set.len(), 1);
        assert_eq!(set.take(ip("127.0.0.2"), t, Duration::ZERO).map(|p| p.id), Some(4));
        assert_eq!(set.trim(0), Vec::<u64>::new());
    }

    #[test]
    fn idle_remove_by_id() {
        let t = Instant::now();
        let mut set = IdleSet::default();
        set.push(ip("127.0.0.1"), pair(1, t));
        set.push(ip("::1"), pair(2, t));
        assert!(set.remove(2));
        assert!(!set.remove(2));
        assert_eq!(set.len(), 1);
        assert_eq!(set.take(ip("::1"), t, Duration::ZERO), None);
    }

    #[test]
    fn idle_clear_empties() {
        let t = Instant::now();
        let mut set = IdleSet::default();
        set.push(ip("127.0.0.1"), pair(1, t));
        set.clear();
        assert_eq!((set.len(), set.take(ip("127.0.0.1"), t + Q, Q)), (0, None));
    }
}
