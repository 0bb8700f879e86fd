//! Symmetric latching for one socket of one side (sans-IO: no sockets, time passed in).
//!
//! Phones behind NAT put their private address in SDP but their packets arrive from the
//! NAT's public address. The relay therefore sends to where a side's packets come from
//! ("symmetric RTP", RFC 4961 in spirit, "latching" in RFC 7362 terms), and falls back to
//! the SDP address until the first packet arrives.
//!
//! ```text
//!                 packet from SDP address (always, re-latches)
//!                 first packet from anyone
//!   +-----------+ ---------------------------------------------> +-------------------+
//!   | Unlatched |                                                | Latched(src, seen)|
//!   +-----------+ <--------------------------------------------- +-------------------+
//!         set_sdp (clears)                                  |  ^
//!                                       packet from src:    |  |  packet from other source:
//!                                       refresh `seen`      +--+  dropped, unless `src` silent
//!                                                                 for `relatch_after` (re-latch)
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What the latch decided about one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// From the latched source: accept.
    Accept,
    /// Accepted, and the latch now points at this (new) source.
    Latched,
    /// From a source other than the latched one, which is still active: drop.
    Foreign,
}

/// Latch state of one socket (RTP or RTCP) of one side.
#[derive(Clone, Debug, Default)]
pub(crate) struct Latch {
    /// Where the peer said (SDP) it receives media; `None` if unknown or unusable.
    sdp: Option<SocketAddr>,
    /// The source packets are currently accepted from, with the time it was last heard.
    latched: Option<(SocketAddr, Instant)>,
}

/// Address equality on IP and port only: the flow label and scope id of a received IPv6
/// source say nothing about who sent it.
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip() == b.ip() && a.port() == b.port()
}

impl Latch {
    /// Sets the SDP address (or clears it) and forgets the latched source.
    pub(crate) fn set_sdp(&mut self, sdp: Option<SocketAddr>) {
        self.sdp = sdp.filter(|a| !a.ip().is_unspecified() && a.port() != 0);
        self.latched = None;
    }

    /// Where packets toward this peer go: the latched source, else the SDP address.
    pub(crate) fn destination(&self) -> Option<SocketAddr> {
        self.latched.map(|(a, _)| a).or(self.sdp)
    }

    /// The latched source, if any.
    #[cfg(test)]
    pub(crate) fn latched(&self) -> Option<SocketAddr> {
        self.latched.map(|(a, _)| a)
    }

    /// Feeds one received datagram's source address at time `now`.
    pub(crate) fn on_packet(&mut self, src: SocketAddr, now: Instant, relatch_after: Duration) -> Verdict {
        match self.latched {
            Some((current, _)) if same(current, src) => {
                self.latched = Some((current, now));
                Verdict::Accept
            }
            // The SDP address always wins: the peer is where it said it would be.
            _ if self.sdp.is_some_and(|sdp| same(sdp, src)) => {
                self.latched = Some((src, now));
                Verdict::Latched
            }
            None => {
                self.latched = Some((src, now));
                Verdict::Latched
            }
            Some((_, seen)) if now.saturating_duration_since(seen) >= relatch_after => {
                self.latched = Some((src, now));
                Verdict::Latched
            }
            Some(_) => Verdict::Foreign,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELATCH: Duration = Duration::from_secs(2);

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn with_sdp(sdp: &str) -> Latch {
        let mut l = Latch::default();
        l.set_sdp(Some(addr(sdp)));
        l
    }

    #[test]
    fn unlatched_destination_is_sdp() {
        let l = with_sdp("192.0.2.1:4000");
        assert_eq!(l.destination(), Some(addr("192.0.2.1:4000")));
        assert_eq!(Latch::default().destination(), None);
    }

    #[test]
    fn unlatched_first_packet_latches() {
        let t = Instant::now();
        let mut l = with_sdp("10.0.0.5:4000");
        assert_eq!(l.on_packet(addr("198.51.100.7:31000"), t, RELATCH), Verdict::Latched);
        assert_eq!(l.destination(), Some(addr("198.51.100.7:31000")));
    }

    #[test]
    fn unlatched_without_sdp_first_packet_latches() {
        let t = Instant::now();
        let mut l = Latch::default();
        assert_eq!(l.on_packet(addr("198.51.100.7:31000"), t, RELATCH), Verdict::Latched);
        assert_eq!(l.latched(), Some(addr("198.51.100.7:31000")));
    }

    #[test]
    fn latched_same_source_accepts() {
        let t = Instant::now();
        let mut l = with_sdp("10.0.0.5:4000");
        l.on_packet(addr("198.51.100.7:31000"), t, RELATCH);
        assert_eq!(l.on_packet(addr("198.51.100.7:31000"), t + RELATCH * 3, RELATCH), Verdict::Accept);
    }

    #[test]
    fn latched_foreign_source_dropped() {
        let t = Instant::now();
        let mut l = with_sdp("10.0.0.5:4000");
        l.on_packet(addr("198.51.100.7:31000"), t, RELATCH);
        let later = t + RELATCH - Duration::from_millis(1);
        assert_eq!(l.on_packet(addr("203.0.113.9:5000"), later, RELATCH), Verdict::Foreign);
        assert_eq!(l.destination(), Some(addr("198.51.100.7:31000")));
    }

    #[test]
    fn latched_foreign_source_after_silence_relatches() {
        let t = Instant::now();
        let mut l = with_sdp("10.0.0.5:4000");
        l.on_packet(addr("198.51.100.7:31000"), t, RELATCH);
        assert_eq!(l.on_packet(addr("203.0.113.9:5000"), t + RELATCH, RELATCH), Verdict::Latched);
        assert_eq!(l.destination(), Some(addr("203.0.113.9:5000")));
    }

    #[test]
    fn latched_refresh_postpones_relatch() {
        let t = Instant::now();
        let mut l = Latch::default();
        l.on_packet(addr("198.51.100.7:31000"), t, RELATCH);
        l.on_packet(addr("198.51.100.7:31000"), t + Duration::from_secs(1), RELATCH);
        let probe = t + Duration::from_millis(2500);
        assert_eq!(l.on_packet(addr("203.0.113.9:5000"), probe, RELATCH), Verdict::Foreign);
    }

    #[test]
    fn latched_sdp_source_overrides() {
        let t = Instant::now();
        let mut l = with_sdp("10.0.0.5:4000");
        l.on_packet(addr("198.51.100.7:31000"), t, RELATCH);
        assert_eq!(l.on_packet(addr("10.0.0.5:4000"), t, RELATCH), Verdict::Latched);
        assert_eq!(l.destination(), Some(addr("10.0.0.5:4000")));
        // ... and the NAT source is now foreign.
        assert_eq!(l.on_packet(addr("198.51.100.7:31000"), t, RELATCH), Verdict::Foreign);
    }

    #[test]
    fn latched_set_sdp_clears() {
        let t = Instant::now();
        let mut l = with_sdp("10.0.0.5:4000");
        l.on_packet(addr("198.51.100.7:31000"), t, RELATCH);
        l.set_sdp(Some(addr("10.0.0.6:4002")));
        assert_eq!(l.latched(), None);
        assert_eq!(l.destination(), Some(addr("10.0.0.6:4002")));
        assert_eq!(l.on_packet(addr("203.0.113.9:5000"), t, RELATCH), Verdict::Latched);
    }

    #[test]
    fn unlatched_set_sdp_unspecified_means_none() {
        let mut l = Latch::default();
        l.set_sdp(Some(addr("0.0.0.0:4000")));
        assert_eq!(l.destination(), None);
        l.set_sdp(Some(addr("192.0.2.1:0")));
        assert_eq!(l.destination(), None);
        l.set_sdp(Some(addr("[::]:4000")));
        assert_eq!(l.destination(), None);
    }

    #[test]
    fn latched_v6_source_ignores_scope_and_flowinfo() {
        let t = Instant::now();
        let mut l = with_sdp("[2001:db8::1]:4000");
        let src: SocketAddr = std::net::SocketAddrV6::new("2001:db8::1".parse().unwrap(), 4000, 7, 3).into();
        assert_eq!(l.on_packet(src, t, RELATCH), Verdict::Latched);
        assert_eq!(l.on_packet(addr("[2001:db8::1]:4000"), t, RELATCH), Verdict::Accept);
    }
}
