//! The relay over real sockets on loopback. Every test has its own port range inside
//! 40300..=41999 and bounds every wait.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use media::{MediaSession, PeerMedia, Relay, RelayConfig, RelayError, Side};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(3);

/// An RTP packet (PT 0) carrying `tag`.
fn rtp(tag: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0x00, 0, tag, 0, 0, 0, 160, 0, 0, 0, 7];
    p.extend(std::iter::repeat_n(tag, 160));
    p
}

/// An RTCP receiver report carrying `tag` in its SSRC.
fn rtcp(tag: u8) -> Vec<u8> {
    vec![0x80, 201, 0, 1, 0, 0, 0, tag]
}

fn start(port_min: u16, ports: u16, relatch_after: Duration) -> Relay {
    Relay::start(RelayConfig {
        port_min,
        port_max: port_min + ports - 1,
        workers: 2,
        dscp: None,
        relatch_after,
        coalesce: Duration::ZERO,
        ..RelayConfig::default()
    })
    .unwrap()
}

fn relay(port_min: u16) -> Relay {
    start(port_min, 20, Duration::from_secs(2))
}

fn peer(ip: IpAddr) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s
}

fn addr(s: &UdpSocket) -> SocketAddr {
    s.local_addr().unwrap()
}

fn local_rtp(m: &MediaSession, side: Side) -> SocketAddr {
    let l = m.local(side);
    SocketAddr::new(l.ip, l.rtp)
}

fn local_rtcp(m: &MediaSession, side: Side) -> SocketAddr {
    let l = m.local(side);
    SocketAddr::new(l.ip, l.rtcp)
}

/// Receives one datagram within `WAIT`.
fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    recv_within(s, WAIT).expect("no datagram within the wait")
}

fn recv_within(s: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            return Some((buf[..n].to_vec(), from));
        }
    }
    None
}

/// Nothing arrives on `s` for a while.
fn assert_silent(s: &UdpSocket) {
    if let Some((d, from)) = recv_within(s, Duration::from_millis(200)) {
        panic!("unexpected datagram of {} bytes from {from}", d.len());
    }
}

/// Waits (bounded) until `cond` holds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("timed out waiting for {what}");
}

/// A session with plain peers on both sides (SDP addresses = the peers' sockets).
struct Call {
    m: MediaSession,
    a_rtp: UdpSocket,
    a_rtcp: UdpSocket,
    b_rtp: UdpSocket,
    b_rtcp: UdpSocket,
}

fn call(relay: &Relay, a_ip: IpAddr, b_ip: IpAddr, a_mux: bool, b_mux: bool) -> Call {
    let m = relay.allocate(a_ip, b_ip).unwrap();
    let (a_rtp, a_rtcp, b_rtp, b_rtcp) = (peer(a_ip), peer(a_ip), peer(b_ip), peer(b_ip));
    m.set_peer(Side::A, PeerMedia { rtp: addr(&a_rtp), rtcp: Some(addr(&a_rtcp)), rtcp_mux: a_mux }).unwrap();
    m.set_peer(Side::B, PeerMedia { rtp: addr(&b_rtp), rtcp: Some(addr(&b_rtcp)), rtcp_mux: b_mux }).unwrap();
    Call { m, a_rtp, a_rtcp, b_rtp, b_rtcp }
}

/// RTP and RTCP both ways on plain (unmuxed) sides.
fn check_forwarding(c: &Call) {
    let m = &c.m;
    c.a_rtp.send_to(&rtp(1), local_rtp(m, Side::A)).unwrap();
    assert_eq!(recv(&c.b_rtp), (rtp(1), local_rtp(m, Side::B)));
    c.b_rtp.send_to(&rtp(2), local_rtp(m, Side::B)).unwrap();
    assert_eq!(recv(&c.a_rtp), (rtp(2), local_rtp(m, Side::A)));
    c.a_rtcp.send_to(&rtcp(3), local_rtcp(m, Side::A)).unwrap();
    assert_eq!(recv(&c.b_rtcp), (rtcp(3), local_rtcp(m, Side::B)));
    c.b_rtcp.send_to(&rtcp(4), local_rtcp(m, Side::B)).unwrap();
    assert_eq!(recv(&c.a_rtcp), (rtcp(4), local_rtcp(m, Side::A)));
}

#[test]
fn forward_rtp_and_rtcp_both_ways() {
    let relay = relay(40300);
    let c = call(&relay, V4, V4, false, false);
    let l = c.m.local(Side::A);
    assert_eq!((l.rtp % 2, l.rtcp), (0, l.rtp + 1));
    check_forwarding(&c);
    eventually("counters", || {
        let s = c.m.stats();
        s.a.received_packets == 2 && s.b.sent_packets == 2 && s.b.received_packets == 2 && s.a.sent_packets == 2
    });
    let s = c.m.stats();
    assert_eq!(s.a.received_bytes, (rtp(1).len() + rtcp(3).len()) as u64);
    assert_eq!(s.b.sent_bytes, s.a.received_bytes);
    assert_eq!(s.a.latched_rtp, Some(addr(&c.a_rtp)));
    assert_eq!(s.a.latched_rtcp, Some(addr(&c.a_rtcp)));
    assert_eq!((s.a.dropped(), s.b.dropped(), s.a.send_errors), (0, 0, 0));
    assert!(s.last_rx.is_some());
}

#[test]
fn nat_source_latched_and_replies_go_to_it() {
    let relay = relay(40320);
    let c = call(&relay, V4, V4, false, false);
    // Phone A advertised `a_rtp` but sends from another port (its NAT's).
    let nat = peer(V4);
    nat.send_to(&rtp(1), local_rtp(&c.m, Side::A)).unwrap();
    assert_eq!(recv(&c.b_rtp).0, rtp(1));
    c.b_rtp.send_to(&rtp(2), local_rtp(&c.m, Side::B)).unwrap();
    assert_eq!(recv(&nat), (rtp(2), local_rtp(&c.m, Side::A)));
    assert_silent(&c.a_rtp);
    assert_eq!(c.m.stats().a.latched_rtp, Some(addr(&nat)));
}

#[test]
fn foreign_source_dropped_and_counted() {
    let relay = relay(40340);
    let c = call(&relay, V4, V4, false, false);
    let nat = peer(V4);
    nat.send_to(&rtp(1), local_rtp(&c.m, Side::A)).unwrap();
    assert_eq!(recv(&c.b_rtp).0, rtp(1));
    let intruder = peer(V4);
    intruder.send_to(&rtp(66), local_rtp(&c.m, Side::A)).unwrap();
    eventually("foreign drop", || c.m.stats().a.dropped_foreign == 1);
    assert_silent(&c.b_rtp);
    let s = c.m.stats();
    assert_eq!((s.a.received_packets, s.a.latched_rtp), (1, Some(addr(&nat))));
    // The latched source still gets through.
    nat.send_to(&rtp(2), local_rtp(&c.m, Side::A)).unwrap();
    assert_eq!(recv(&c.b_rtp).0, rtp(2));
}

#[test]
fn relatch_after_silence() {
    let relay = start(40360, 20, Duration::from_millis(300));
    let c = call(&relay, V4, V4, false, false);
    let (first, second) = (peer(V4), peer(V4));
    first.send_to(&rtp(1), local_rtp(&c.m, Side::A)).unwrap();
    assert_eq!(recv(&c.b_rtp).0, rtp(1));
    second.send_to(&rtp(2), local_rtp(&c.m, Side::A)).unwrap();
    eventually("foreign drop", || c.m.stats().a.dropped_foreign == 1);
    std::thread::sleep(Duration::from_millis(400));
    second.send_to(&rtp(3), local_rtp(&c.m, Side::A)).unwrap();
    assert_eq!(recv(&c.b_rtp).0, rtp(3));
    c.b_rtp.send_to(&rtp(4), local_rtp(&c.m, Side::B)).unwrap();
    assert_eq!(recv(&second).0, rtp(4));
    assert_eq!(c.m.stats().a.latched_rtp, Some(addr(&second)));
}

#[test]
fn sdp_address_packets_override_latch() {
    let relay = relay(40380);
    let c = call(&relay, V4, V4, false, false);
    let nat = peer(V4);
    nat.send_to(&rtp(1), local_rtp(&c.m, Side::A)).unwrap();
    assert_eq!(recv(&c.b_rtp).0, rtp(1));
    // The SDP address speaks up (well within relatch_after): it wins at once.
    c.a_rtp.send_to(&rtp(2), local_rtp(&c.m, Side::A)).unwrap();
    assert_eq!(recv(&c.b_rtp).0, rtp(2));
    c.b_rtp.send_to(&rtp(3), local_rtp(&c.m, Side::B)).unwrap();
    assert_eq!(recv(&c.a_rtp).0, rtp(3));
    assert_silent(&nat);
}

#[test]
fn set_peer_clears_latch() {
    let relay = relay(40400);
    let c = call(&relay, V4, V4, false, false);
    let nat = peer(V4);
    nat.send_to(&rtp(1), local_rtp(&c.m, Side::A)).unwrap();
    assert_eq!(recv(&c.b_rtp).0, rtp(1));
    eventually("latch", || c.m.stats().a.latched_rtp.is_some());
    // A re-INVITE moves phone A: its new address is the destination until it sends.
    let moved = peer(V4);
    c.m.set_peer(Side::A, PeerMedia::new(addr(&moved))).unwrap();
    eventually("latch cleared", || c.m.stats().a.latched_rtp.is_none());
    c.b_rtp.send_to(&rtp(2), local_rtp(&c.m, Side::B)).unwrap();
    assert_eq!(recv(&moved).0, rtp(2));
    assert_silent(&nat);
}

#[test]
fn rtcp_mux_both_sides() {
    let relay = relay(40420);
    let c = call(&relay, V4, V4, true, true);
    let m = &c.m;
    c.a_rtp.send_to(&rtcp(1), local_rtp(m, Side::A)).unwrap();
    assert_eq!(recv(&c.b_rtp), (rtcp(1), local_rtp(m, Side::B)));
    c.b_rtp.send_to(&rtcp(2), local_rtp(m, Side::B)).unwrap();
    assert_eq!(recv(&c.a_rtp), (rtcp(2), local_rtp(m, Side::A)));
    c.a_rtp.send_to(&rtp(3), local_rtp(m, Side::A)).unwrap();
    assert_eq!(recv(&c.b_rtp), (rtp(3), local_rtp(m, Side::B)));
    assert_silent(&c.a_rtcp);
    assert_silent(&c.b_rtcp);
}

#[test]
fn rtcp_mux_mixed_sides() {
    let relay = relay(40440);
    // A muxes, B does not.
    let c = call(&relay, V4, V4, true, false);
    let m = &c.m;
    c.a_rtp.send_to(&rtcp(1), local_rtp(m, Side::A)).unwrap();
    assert_eq!(recv(&c.b_rtcp), (rtcp(1), local_rtcp(m, Side::B)));
    c.a_rtp.send_to(&rtp(2), local_rtp(m, Side::A)).unwrap();
    assert_eq!(recv(&c.b_rtp), (rtp(2), local_rtp(m, Side::B)));
    c.b_rtcp.send_to(&rtcp(3), local_rtcp(m, Side::B)).unwrap();
    assert_eq!(recv(&c.a_rtp), (rtcp(3), local_rtp(m, Side::A)));
    c.b_rtp.send_to(&rtp(4), local_rtp(m, Side::B)).unwrap();
    assert_eq!(recv(&c.a_rtp), (rtp(4), local_rtp(m, Side::A)));
    assert_silent(&c.a_rtcp);
    assert_silent(&c.b_rtp);
}

#[test]
fn no_destination_dropped_and_counted() {
    let relay = relay(40460);
    let m = relay.allocate(V4, V4).unwrap();
    let a = peer(V4);
    a.send_to(&rtp(1), local_rtp(&m, Side::A)).unwrap();
    a.send_to(&rtp(2), local_rtp(&m, Side::A)).unwrap();
    eventually("no-destination drops", || m.stats().a.dropped_no_destination == 2);
    let s = m.stats();
    // Accepted from (and latched to) A's peer, but B is unknown yet.
    assert_eq!((s.a.received_packets, s.a.latched_rtp, s.b.sent_packets), (2, Some(addr(&a)), 0));
    // Once B is known, A's media flows without A re-signalling.
    let b = peer(V4);
    m.set_peer(Side::B, PeerMedia::new(addr(&b))).unwrap();
    a.send_to(&rtp(3), local_rtp(&m, Side::A)).unwrap();
    assert_eq!(recv(&b).0, rtp(3));
}

#[test]
fn forwarding_stopped_and_restarted() {
    let relay = relay(40480);
    let c = call(&relay, V4, V4, false, false);
    c.m.set_forwarding(Side::B, false).unwrap();
    c.a_rtp.send_to(&rtp(1), local_rtp(&c.m, Side::A)).unwrap();
    eventually("drop while stopped", || c.m.stats().a.dropped_no_destination == 1);
    assert_silent(&c.b_rtp);
    c.m.set_forwarding(Side::B, true).unwrap();
    c.a_rtp.send_to(&rtp(2), local_rtp(&c.m, Side::A)).unwrap();
    assert_eq!(recv(&c.b_rtp).0, rtp(2));
}

#[test]
fn ports_released_on_drop_and_reusable() {
    // Two pairs: exactly one session with both sides on the same address.
    let relay = start(40500, 4, Duration::from_secs(2));
    let m = relay.allocate(V4, V4).unwrap();
    let (pa, pb) = (m.local(Side::A), m.local(Side::B));
    assert!(matches!(relay.allocate(V4, V4), Err(RelayError::PortsExhausted)));
    assert_eq!(relay.active_sessions(), 1);
    drop(m);
    eventually("release", || relay.active_sessions() == 0);
    let m = relay.allocate(V4, V4).unwrap();
    let mut got = [m.local(Side::A).rtp, m.local(Side::B).rtp];
    let mut before = [pa.rtp, pb.rtp];
    got.sort_unstable();
    before.sort_unstable();
    assert_eq!(got, before);
    // And the reused ports relay.
    let (a, b) = (peer(V4), peer(V4));
    m.set_peer(Side::B, PeerMedia::new(addr(&b))).unwrap();
    a.send_to(&rtp(1), local_rtp(&m, Side::A)).unwrap();
    assert_eq!(recv(&b).0, rtp(1));
}

#[test]
fn ports_exhausted_on_tiny_range_per_address() {
    // One pair per address: one session between two loopback addresses fits.
    let relay = start(40520, 2, Duration::from_secs(2));
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let m = relay.allocate(V4, other).unwrap();
    assert_eq!(m.local(Side::A).rtp, m.local(Side::B).rtp);
    assert!(matches!(relay.allocate(V4, V4), Err(RelayError::PortsExhausted)));
    assert!(matches!(relay.allocate(other, V4), Err(RelayError::PortsExhausted)));
    // A failed allocation leaks nothing.
    assert_eq!(relay.active_sessions(), 1);
    drop(m);
    eventually("release", || relay.active_sessions() == 0);
    assert!(relay.allocate(V4, other).is_ok());
}

#[test]
fn port_held_by_another_process_skipped() {
    let relay = start(40530, 4, Duration::from_secs(2));
    let _squatter = UdpSocket::bind("127.0.0.1:40531").unwrap();
    let m = relay.allocate(V4, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))).unwrap();
    assert_eq!(m.local(Side::A).rtp, 40532);
    assert!(matches!(relay.allocate(V4, V4), Err(RelayError::PortsExhausted)));
}

#[test]
fn allocate_on_foreign_address_is_io_error() {
    let relay = relay(40540);
    let r = relay.allocate(V4, "203.0.113.1".parse().unwrap());
    assert!(matches!(r, Err(RelayError::Io(_))), "{r:?}");
    assert_eq!(relay.active_sessions(), 0);
}

#[test]
fn ipv6_session() {
    let relay = relay(40560);
    let c = call(&relay, V6, V6, false, false);
    assert_eq!(c.m.local(Side::A).ip, V6);
    check_forwarding(&c);
}

#[test]
fn side_a_v4_side_b_v6() {
    let relay = relay(40580);
    let c = call(&relay, V4, V6, false, false);
    check_forwarding(&c);
    let wrong = PeerMedia::new("127.0.0.1:5000".parse().unwrap());
    assert!(matches!(c.m.set_peer(Side::B, wrong), Err(RelayError::AddressFamily)));
    let wrong_rtcp = PeerMedia { rtcp: Some("[::1]:5001".parse().unwrap()), ..PeerMedia::new(addr(&c.a_rtp)) };
    assert!(matches!(c.m.set_peer(Side::A, wrong_rtcp), Err(RelayError::AddressFamily)));
}

#[test]
fn idle_for_grows_without_traffic_and_resets_with_it() {
    let relay = relay(40600);
    let c = call(&relay, V4, V4, false, false);
    std::thread::sleep(Duration::from_millis(300));
    assert!(c.m.idle_for(Instant::now()) >= Duration::from_millis(300));
    assert_eq!(c.m.stats().last_rx, None);
    c.a_rtp.send_to(&rtp(1), local_rtp(&c.m, Side::A)).unwrap();
    recv(&c.b_rtp);
    eventually("last_rx", || c.m.stats().last_rx.is_some());
    assert!(c.m.idle_for(Instant::now()) < Duration::from_millis(250));
    std::thread::sleep(Duration::from_millis(300));
    assert!(c.m.idle_for(Instant::now()) >= Duration::from_millis(300));
    // Dropped datagrams are still signs of life.
    peer(V4).send_to(&rtp(9), local_rtp(&c.m, Side::A)).unwrap();
    eventually("foreign drop", || c.m.stats().a.dropped_foreign == 1);
    assert!(c.m.idle_for(Instant::now()) < Duration::from_millis(250));
}

#[test]
fn malformed_datagrams_never_panic() {
    let relay = relay(40620);
    let c = call(&relay, V4, V4, true, false);
    let m = &c.m;
    let junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x80],
        vec![0x80, 200],
        vec![0xff; 7],
        vec![0xff; 3000],
        vec![0x80, 200, 0xff, 0xff],
        vec![0u8; 65507],
    ];
    for d in &junk {
        c.a_rtp.send_to(d, local_rtp(m, Side::A)).unwrap();
        c.a_rtcp.send_to(d, local_rtcp(m, Side::A)).unwrap();
        c.b_rtp.send_to(d, local_rtp(m, Side::B)).unwrap();
    }
    let n = junk.len() as u64;
    eventually("invalid drops", || {
        let s = m.stats();
        s.a.dropped_invalid == 2 * n && s.b.dropped_invalid == n
    });
    // Eight bytes of anything is forwarded; the relay is not an RTP validator.
    c.a_rtp.send_to(&[0xff; 8], local_rtp(m, Side::A)).unwrap();
    assert_eq!(recv(&c.b_rtp).0, vec![0xff; 8]);
    check_mux_survives(&c);
    assert_silent(&c.b_rtcp);
}

fn check_mux_survives(c: &Call) {
    c.b_rtp.send_to(&rtp(5), local_rtp(&c.m, Side::B)).unwrap();
    assert_eq!(recv(&c.a_rtp).0, rtp(5));
}

#[test]
fn sessions_spread_over_workers_stay_apart() {
    let relay = relay(40640);
    let calls: Vec<Call> = (0..4).map(|_| call(&relay, V4, V4, false, false)).collect();
    for (i, c) in calls.iter().enumerate() {
        c.a_rtp.send_to(&rtp(i as u8), local_rtp(&c.m, Side::A)).unwrap();
    }
    for (i, c) in calls.iter().enumerate() {
        assert_eq!(recv(&c.b_rtp).0, rtp(i as u8));
    }
    let ids: std::collections::HashSet<u64> = calls.iter().map(|c| c.m.id()).collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(relay.active_sessions(), 4);
}

#[test]
fn burst_larger_than_a_batch_forwarded() {
    let relay = relay(40660);
    let c = call(&relay, V4, V4, false, false);
    for i in 0..100u8 {
        c.a_rtp.send_to(&rtp(i), local_rtp(&c.m, Side::A)).unwrap();
    }
    for i in 0..100u8 {
        assert_eq!(recv(&c.b_rtp).0, rtp(i));
    }
    eventually("counters", || c.m.stats().b.sent_packets == 100);
}

#[test]
fn shutdown_closes_sessions() {
    let relay = relay(40680);
    let c = call(&relay, V4, V4, false, false);
    relay.shutdown();
    assert_eq!(relay.active_sessions(), 0);
    assert!(matches!(relay.allocate(V4, V4), Err(RelayError::ShutDown)));
    assert!(matches!(c.m.set_peer(Side::A, PeerMedia::new(addr(&c.a_rtp))), Err(RelayError::ShutDown)));
    relay.shutdown();
    // The ports are free again.
    let _ = UdpSocket::bind(local_rtp(&c.m, Side::A)).unwrap();
}

#[test]
fn dropping_last_relay_clone_stops_workers() {
    let relay = relay(40700);
    let clone = relay.clone();
    let c = call(&relay, V4, V4, false, false);
    drop(relay);
    check_forwarding(&c);
    drop(clone);
    assert!(matches!(c.m.set_forwarding(Side::A, true), Err(RelayError::ShutDown)));
}
