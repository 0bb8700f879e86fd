//! What the relay's socket tests share: a relay on a port range of their own, and a session
//! whose two sides are local sockets.
#![allow(dead_code, clippy::unwrap_used)] // each test file uses its part

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use media::{MediaSession, PeerMedia, Relay, RelayConfig, Side};

pub(crate) const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A relay on ports `port_min..=port_max`, without DSCP, applying commands at once.
pub(crate) fn relay(port_min: u16, port_max: u16, workers: usize) -> Relay {
    Relay::start(RelayConfig {
        port_min,
        port_max,
        workers,
        dscp: None,
        coalesce: Duration::ZERO,
        ..RelayConfig::default()
    })
    .unwrap()
}

/// A session and the two phones of it: each side's peer is a local socket (rtcp-mux).
pub(crate) struct Legs {
    pub(crate) session: MediaSession,
    /// Side A's phone.
    pub(crate) a: UdpSocket,
    /// Side B's phone.
    pub(crate) b: UdpSocket,
    /// Where side A's phone sends (the relay's port on side A).
    pub(crate) relay_a: SocketAddr,
    /// Where side B's phone sends.
    pub(crate) relay_b: SocketAddr,
}

pub(crate) fn legs(relay: &Relay) -> Legs {
    let session = relay.allocate(V4, V4).unwrap();
    let a = UdpSocket::bind((V4, 0)).unwrap();
    let b = UdpSocket::bind((V4, 0)).unwrap();
    session.set_peer(Side::A, PeerMedia::muxed(a.local_addr().unwrap())).unwrap();
    session.set_peer(Side::B, PeerMedia::muxed(b.local_addr().unwrap())).unwrap();
    let relay_a = SocketAddr::new(V4, session.local(Side::A).rtp);
    let relay_b = SocketAddr::new(V4, session.local(Side::B).rtp);
    Legs { session, a, b, relay_a, relay_b }
}
