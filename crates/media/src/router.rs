//! Where one session's datagrams go (sans-IO: no sockets, time passed in).
//!
//! A datagram arrives on one of four sockets (side A or B, RTP or RTCP socket). The
//! router checks its source against that socket's [`Latch`], classifies it as RTP or
//! RTCP, and names the other side's socket to send it from and the address to send it
//! to. rtcp-mux (RFC 5761) is per side: RTCP from a muxed side arrives on its RTP socket
//! and is told apart by the second byte (packet type 192..=223); RTCP toward a muxed side
//! leaves from its RTP socket to its RTP destination.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::latch::{Latch, Verdict};
use crate::{PeerMedia, Side};

/// The smallest datagram forwarded: an RTCP header with its SSRC (RTP needs 12). Shorter
/// ones (such as empty NAT keep-alives) still refresh the latch but go nowhere.
pub(crate) const MIN_FORWARDED: usize = 8;

/// Which of a side's two sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The RTP socket (even port); also carries RTCP for a muxed side.
    Rtp,
    /// The RTCP socket (RTP port + 1).
    Rtcp,
}

impl Kind {
    /// Index of this socket within a side (RTP 0, RTCP 1).
    pub(crate) fn index(self) -> usize {
        match self {
            Kind::Rtp => 0,
            Kind::Rtcp => 1,
        }
    }
}

/// Why a datagram was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// From a source other than the latched one.
    Foreign,
    /// Accepted from the peer but truncated (bigger than the relay's buffer) or too short
    /// to be RTP or RTCP.
    Invalid,
    /// Accepted, but the other side has no destination yet or forwarding toward it is off.
    NoDestination,
}

/// What to do with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send it from the other side's socket `via` to `to`.
    Forward { via: Kind, to: SocketAddr },
    /// Count it and forget it.
    Drop(DropReason),
}

/// The router's answer for one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decision {
    /// What to do with it.
    pub(crate) action: Action,
    /// The receiving socket's latch moved to this datagram's source.
    pub(crate) relatched: bool,
    /// The datagram is RTCP (false for RTP, and for dropped foreign or invalid datagrams).
    pub(crate) rtcp: bool,
}

/// Routing state of one side.
#[derive(Clone, Debug)]
struct SideRoute {
    /// Latches of the RTP and RTCP sockets, by [`Kind::index`].
    latch: [Latch; 2],
    /// This side's peer multiplexes RTCP on the RTP port.
    mux: bool,
    /// Forwarding toward this side's peer is on.
    forward: bool,
}

impl Default for SideRoute {
    fn default() -> Self {
        SideRoute { latch: Default::default(), mux: false, forward: true }
    }
}

/// Routing state of one session (both sides).
#[derive(Clone, Debug)]
pub(crate) struct Router {
    sides: [SideRoute; 2],
    relatch_after: Duration,
}

/// Index of a side in per-side arrays (A 0, B 1).
pub(crate) fn side_index(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

/// Whether a datagram received on a muxed RTP port is RTCP (RFC 5761 section 4).
pub(crate) fn is_rtcp(data: &[u8]) -> bool {
    matches!(data.get(1), Some(192..=223))
}

impl Router {
    /// A router with no peer known on either side.
    pub(crate) fn new(relatch_after: Duration) -> Router {
        Router { sides: Default::default(), relatch_after }
    }

    /// Applies what `side`'s peer said in SDP; clears that side's latches.
    pub(crate) fn set_peer(&mut self, side: Side, peer: &PeerMedia) {
        let s = &mut self.sides[side_index(side)];
        s.mux = peer.rtcp_mux;
        s.latch[Kind::Rtp.index()].set_sdp(Some(peer.rtp));
        let rtcp = peer.rtcp.or_else(|| peer.rtp.port().checked_add(1).map(|p| SocketAddr::new(peer.rtp.ip(), p)));
        s.latch[Kind::Rtcp.index()].set_sdp(rtcp);
    }

    /// Where `side`'s peer receives RTP (latched, else from SDP), if known.
    pub(crate) fn rtp_destination(&self, side: Side) -> Option<SocketAddr> {
        self.sides[side_index(side)].latch[Kind::Rtp.index()].destination()
    }

    /// Where `side`'s peer receives RTCP, and through which of the side's sockets it goes
    /// (its RTP socket with rtcp-mux), if known.
    pub(crate) fn rtcp_destination(&self, side: Side) -> Option<(Kind, SocketAddr)> {
        let s = &self.sides[side_index(side)];
        let via = if s.mux { Kind::Rtp } else { Kind::Rtcp };
        s.latch[via.index()].destination().map(|d| (via, d))
    }

    /// Turns forwarding toward `side`'s peer on or off.
    pub(crate) fn set_forwarding(&mut self, side: Side, on: bool) {
        self.sides[side_index(side)].forward = on;
    }

    /// Decides about one datagram `data` (as received; `truncated` if it was longer than
    /// the buffer), received from `src` on `side`'s `kind` socket.
    pub(crate) fn on_datagram(
        &mut self,
        side: Side,
        kind: Kind,
        src: SocketAddr,
        data: &[u8],
        truncated: bool,
        now: Instant,
    ) -> Decision {
        let from = &mut self.sides[side_index(side)];
        let relatched = match from.latch[kind.index()].on_packet(src, now, self.relatch_after) {
            Verdict::Foreign => {
                return Decision { action: Action::Drop(DropReason::Foreign), relatched: false, rtcp: false };
            }
            Verdict::Accept => false,
            Verdict::Latched => true,
        };
        if truncated || data.len() < MIN_FORWARDED {
            return Decision { action: Action::Drop(DropReason::Invalid), relatched, rtcp: false };
        }
        let rtcp = kind == Kind::Rtcp || (from.mux && is_rtcp(data));
        let to = &self.sides[side_index(side.other())];
        let via = if rtcp && !to.mux { Kind::Rtcp } else { Kind::Rtp };
        let action = match to.latch[via.index()].destination() {
            Some(dest) if to.forward => Action::Forward { via, to: dest },
            _ => Action::Drop(DropReason::NoDestination),
        };
        Decision { action, relatched, rtcp }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTP: [u8; 12] = [0x80, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 1];
    const RTCP_SR: [u8; 8] = [0x80, 200, 0, 6, 0, 0, 0, 1];

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn peer(rtp: &str, mux: bool) -> PeerMedia {
        PeerMedia { rtp: addr(rtp), rtcp: None, rtcp_mux: mux }
    }

    fn router(a_mux: bool, b_mux: bool) -> Router {
        let mut r = Router::new(Duration::from_secs(2));
        r.set_peer(Side::A, &peer("192.0.2.10:5000", a_mux));
        r.set_peer(Side::B, &peer("192.0.2.20:6000", b_mux));
        r
    }

    fn feed(r: &mut Router, side: Side, kind: Kind, src: &str, data: &[u8]) -> Action {
        r.on_datagram(side, kind, addr(src), data, false, Instant::now()).action
    }

    #[test]
    fn classify_rtcp_by_second_byte() {
        assert!(is_rtcp(&RTCP_SR));
        assert!(is_rtcp(&[0x80, 192]));
        assert!(is_rtcp(&[0x80, 223]));
        assert!(!is_rtcp(&[0x80, 224]));
        assert!(!is_rtcp(&[0x80, 191]));
        assert!(!is_rtcp(&RTP));
        assert!(!is_rtcp(&[]));
        assert!(!is_rtcp(&[0x80]));
    }

    #[test]
    fn no_peers_rtp_dropped_no_destination() {
        let mut r = Router::new(Duration::from_secs(2));
        let a = feed(&mut r, Side::A, Kind::Rtp, "192.0.2.10:5000", &RTP);
        assert_eq!(a, Action::Drop(DropReason::NoDestination));
    }

    #[test]
    fn peers_set_rtp_forwarded_to_sdp_address() {
        let mut r = router(false, false);
        let a = feed(&mut r, Side::A, Kind::Rtp, "192.0.2.10:5000", &RTP);
        assert_eq!(a, Action::Forward { via: Kind::Rtp, to: addr("192.0.2.20:6000") });
    }

    #[test]
    fn peers_set_rtcp_forwarded_to_rtp_port_plus_one() {
        let mut r = router(false, false);
        let a = feed(&mut r, Side::B, Kind::Rtcp, "192.0.2.20:6001", &RTCP_SR);
        assert_eq!(a, Action::Forward { via: Kind::Rtcp, to: addr("192.0.2.10:5001") });
    }

    #[test]
    fn peers_set_explicit_rtcp_address_used() {
        let mut r = router(false, false);
        r.set_peer(
            Side::B,
            &PeerMedia { rtp: addr("192.0.2.20:6000"), rtcp: Some(addr("192.0.2.21:7777")), rtcp_mux: false },
        );
        let a = feed(&mut r, Side::A, Kind::Rtcp, "192.0.2.10:5001", &RTCP_SR);
        assert_eq!(a, Action::Forward { via: Kind::Rtcp, to: addr("192.0.2.21:7777") });
    }

    #[test]
    fn both_muxed_rtcp_stays_on_rtp_ports() {
        let mut r = router(true, true);
        let a = feed(&mut r, Side::A, Kind::Rtp, "192.0.2.10:5000", &RTCP_SR);
        assert_eq!(a, Action::Forward { via: Kind::Rtp, to: addr("192.0.2.20:6000") });
    }

    #[test]
    fn muxed_to_unmuxed_rtcp_goes_to_rtcp_socket() {
        let mut r = router(true, false);
        let a = feed(&mut r, Side::A, Kind::Rtp, "192.0.2.10:5000", &RTCP_SR);
        assert_eq!(a, Action::Forward { via: Kind::Rtcp, to: addr("192.0.2.20:6001") });
        let a = feed(&mut r, Side::A, Kind::Rtp, "192.0.2.10:5000", &RTP);
        assert_eq!(a, Action::Forward { via: Kind::Rtp, to: addr("192.0.2.20:6000") });
    }

    #[test]
    fn unmuxed_to_muxed_rtcp_goes_to_rtp_socket() {
        let mut r = router(true, false);
        let a = feed(&mut r, Side::B, Kind::Rtcp, "192.0.2.20:6001", &RTCP_SR);
        assert_eq!(a, Action::Forward { via: Kind::Rtp, to: addr("192.0.2.10:5000") });
    }

    #[test]
    fn unmuxed_rtcp_like_byte_on_rtp_socket_is_rtp() {
        let mut r = router(false, false);
        let a = feed(&mut r, Side::A, Kind::Rtp, "192.0.2.10:5000", &RTCP_SR);
        assert_eq!(a, Action::Forward { via: Kind::Rtp, to: addr("192.0.2.20:6000") });
    }

    #[test]
    fn muxed_side_latched_destination_used_for_rtcp() {
        let mut r = router(true, true);
        feed(&mut r, Side::B, Kind::Rtp, "198.51.100.1:40000", &RTP);
        let a = feed(&mut r, Side::A, Kind::Rtp, "192.0.2.10:5000", &RTCP_SR);
        assert_eq!(a, Action::Forward { via: Kind::Rtp, to: addr("198.51.100.1:40000") });
    }

    #[test]
    fn latched_foreign_dropped() {
        let mut r = router(false, false);
        feed(&mut r, Side::A, Kind::Rtp, "198.51.100.1:40000", &RTP);
        let a = feed(&mut r, Side::A, Kind::Rtp, "203.0.113.1:1", &RTP);
        assert_eq!(a, Action::Drop(DropReason::Foreign));
    }

    #[test]
    fn any_short_or_truncated_invalid_but_latches() {
        let mut r = router(false, false);
        let d = r.on_datagram(Side::A, Kind::Rtp, addr("198.51.100.1:40000"), &[], false, Instant::now());
        assert_eq!(d, Decision { action: Action::Drop(DropReason::Invalid), relatched: true, rtcp: false });
        let d = r.on_datagram(Side::A, Kind::Rtp, addr("198.51.100.1:40000"), &[0x80; 2048], true, Instant::now());
        assert_eq!(d, Decision { action: Action::Drop(DropReason::Invalid), relatched: false, rtcp: false });
        // The keep-alive latched side A: replies from B now go to the NAT address.
        let a = feed(&mut r, Side::B, Kind::Rtp, "192.0.2.20:6000", &RTP);
        assert_eq!(a, Action::Forward { via: Kind::Rtp, to: addr("198.51.100.1:40000") });
    }

    #[test]
    fn forwarding_off_dropped_then_on_forwarded() {
        let mut r = router(false, false);
        r.set_forwarding(Side::B, false);
        let a = feed(&mut r, Side::A, Kind::Rtp, "192.0.2.10:5000", &RTP);
        assert_eq!(a, Action::Drop(DropReason::NoDestination));
        r.set_forwarding(Side::B, true);
        let a = feed(&mut r, Side::A, Kind::Rtp, "192.0.2.10:5000", &RTP);
        assert_eq!(a, Action::Forward { via: Kind::Rtp, to: addr("192.0.2.20:6000") });
    }

    #[test]
    fn peer_rtp_port_max_has_no_rtcp_destination() {
        let mut r = router(false, false);
        r.set_peer(Side::B, &peer("192.0.2.20:65535", false));
        let a = feed(&mut r, Side::A, Kind::Rtcp, "192.0.2.10:5001", &RTCP_SR);
        assert_eq!(a, Action::Drop(DropReason::NoDestination));
    }
}
