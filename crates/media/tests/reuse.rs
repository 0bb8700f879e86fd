//! Reuse of dropped sessions' sockets over real sockets on loopback: quarantine, idle
//! discards, the idle cap, port exhaustion and shutdown. Every test has its own port
//! range inside 40720..=41199 (minus 40800..=40829, which `dscp.rs` uses) and bounds
//! every wait.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use media::{LocalPorts, MediaSession, PeerMedia, Relay, RelayConfig, RelayError, Side};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(3);
/// Long enough that nothing leaves quarantine during a test.
const NEVER: Duration = Duration::from_secs(600);

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

/// A relay on `ports` ports from `port_min`, one worker unless said otherwise.
fn start(port_min: u16, ports: u16, workers: usize, reuse_after: Duration, max_idle_sockets: usize) -> Relay {
    Relay::start(RelayConfig {
        port_min,
        port_max: port_min + ports - 1,
        workers,
        dscp: None,
        coalesce: Duration::ZERO,
        reuse_after,
        max_idle_sockets,
        ..RelayConfig::default()
    })
    .unwrap()
}

fn peer() -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::new(V4, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s
}

fn addr(s: &UdpSocket) -> SocketAddr {
    s.local_addr().unwrap()
}

fn rtp_of(l: LocalPorts) -> SocketAddr {
    SocketAddr::new(l.ip, l.rtp)
}

fn rtcp_of(l: LocalPorts) -> SocketAddr {
    SocketAddr::new(l.ip, l.rtcp)
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

/// Receives one datagram within `WAIT`.
fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    recv_within(s, WAIT).expect("no datagram within the wait")
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
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("timed out waiting for {what}");
}

/// Whether another socket could bind `port` on loopback now (the relay closed it).
fn port_free(port: u16) -> bool {
    UdpSocket::bind(SocketAddr::new(V4, port)).is_ok()
}

/// Both ports of `l` are free.
fn pair_free(l: LocalPorts) -> bool {
    port_free(l.rtp) && port_free(l.rtcp)
}

/// A session with plain peers on both sides.
struct Call {
    m: MediaSession,
    a_rtp: UdpSocket,
    a_rtcp: UdpSocket,
    b_rtp: UdpSocket,
    b_rtcp: UdpSocket,
}

fn call(relay: &Relay) -> Call {
    let m = relay.allocate(V4, V4).unwrap();
    let (a_rtp, a_rtcp, b_rtp, b_rtcp) = (peer(), peer(), peer(), peer());
    m.set_peer(Side::A, PeerMedia { rtp: addr(&a_rtp), rtcp: Some(addr(&a_rtcp)), rtcp_mux: false }).unwrap();
    m.set_peer(Side::B, PeerMedia { rtp: addr(&b_rtp), rtcp: Some(addr(&b_rtcp)), rtcp_mux: false }).unwrap();
    Call { m, a_rtp, a_rtcp, b_rtp, b_rtcp }
}

/// RTP and RTCP both ways, each datagram carrying `tag`.
fn check_forwarding(c: &Call, tag: u8) {
    let (a, b) = (c.m.local(Side::A), c.m.local(Side::B));
    c.a_rtp.send_to(&rtp(tag), rtp_of(a)).unwrap();
    assert_eq!(recv(&c.b_rtp), (rtp(tag), rtp_of(b)));
    c.b_rtp.send_to(&rtp(tag), rtp_of(b)).unwrap();
    assert_eq!(recv(&c.a_rtp), (rtp(tag), rtp_of(a)));
    c.a_rtcp.send_to(&rtcp(tag), rtcp_of(a)).unwrap();
    assert_eq!(recv(&c.b_rtcp), (rtcp(tag), rtcp_of(b)));
    c.b_rtcp.send_to(&rtcp(tag), rtcp_of(b)).unwrap();
    assert_eq!(recv(&c.a_rtcp), (rtcp(tag), rtcp_of(a)));
}

fn ports(m: &MediaSession) -> (LocalPorts, LocalPorts) {
    (m.local(Side::A), m.local(Side::B))
}

#[test]
fn dropped_sockets_reused_after_quarantine_not_before() {
    let quarantine = Duration::from_millis(300);
    let relay = start(40720, 20, 1, quarantine, 64);
    let first = relay.allocate(V4, V4).unwrap();
    let old = ports(&first);
    let dropped_at = Instant::now();
    drop(first);
    assert_eq!((relay.active_sessions(), relay.idle_sockets()), (0, 4));
    // In quarantine: new ports, although the old ones are open and idle.
    let during = relay.allocate(V4, V4).unwrap();
    let (a, b) = ports(&during);
    assert!(dropped_at.elapsed() < quarantine, "test too slow to check the quarantine");
    for p in [a.rtp, b.rtp] {
        assert!(p != old.0.rtp && p != old.1.rtp, "port {p} reused during the quarantine");
    }
    assert_eq!(relay.idle_sockets(), 4);
    std::thread::sleep(quarantine + Duration::from_millis(50));
    // After it: the very same sockets, side for side.
    let after = relay.allocate(V4, V4).unwrap();
    assert_eq!(ports(&after), old);
    assert_eq!((relay.active_sessions(), relay.idle_sockets()), (2, 0));
    // Reused without being closed: their ports never became free.
    assert!(!port_free(old.0.rtp) && !port_free(old.1.rtcp));
}

#[test]
fn idle_socket_datagrams_discarded_and_counted() {
    let relay = start(40740, 20, 1, NEVER, 64);
    let c = call(&relay);
    check_forwarding(&c, 1);
    let (a, b) = ports(&c.m);
    let Call { m, a_rtp, a_rtcp, b_rtp, b_rtcp } = c;
    drop(m);
    assert_eq!(relay.idle_discarded(), 0);
    // The former peers, latched until now, keep sending: nothing gets through.
    a_rtp.send_to(&rtp(2), rtp_of(a)).unwrap();
    a_rtcp.send_to(&rtcp(2), rtcp_of(a)).unwrap();
    b_rtp.send_to(&rtp(3), rtp_of(b)).unwrap();
    b_rtcp.send_to(&rtcp(3), rtcp_of(b)).unwrap();
    // From anywhere else neither.
    peer().send_to(&rtp(4), rtp_of(b)).unwrap();
    eventually("idle discards", || relay.idle_discarded() == 5);
    for s in [&a_rtp, &a_rtcp, &b_rtp, &b_rtcp] {
        assert_silent(s);
    }
    assert_eq!(relay.idle_discarded(), 5);
    assert_eq!(relay.idle_sockets(), 4);
}

#[test]
fn reused_session_forwards_with_fresh_stats() {
    let quarantine = Duration::from_millis(100);
    let relay = start(40760, 20, 1, quarantine, 64);
    let old = call(&relay);
    check_forwarding(&old, 1);
    eventually("old counters", || old.m.stats().b.sent_packets == 2);
    let old_ports = ports(&old.m);
    drop(old.m);
    // A late packet of the old call, discarded while idle.
    old.a_rtp.send_to(&rtp(2), rtp_of(old_ports.0)).unwrap();
    eventually("idle discard", || relay.idle_discarded() == 1);
    std::thread::sleep(quarantine + Duration::from_millis(20));

    let new = call(&relay);
    assert_eq!(ports(&new.m), old_ports);
    let s = new.m.stats();
    for side in [s.a, s.b] {
        assert_eq!((side.received_packets, side.sent_packets, side.dropped(), side.send_errors), (0, 0, 0, 0));
        assert_eq!((side.latched_rtp, side.latched_rtcp), (None, None));
    }
    assert_eq!(s.last_rx, None);
    assert!(new.m.idle_for(Instant::now()) < quarantine);
    check_forwarding(&new, 3);
    eventually("new counters", || {
        let s = new.m.stats();
        s.a.received_packets == 2 && s.b.sent_packets == 2 && s.b.received_packets == 2 && s.a.sent_packets == 2
    });
    let s = new.m.stats();
    assert_eq!(s.a.latched_rtp, Some(addr(&new.a_rtp)));
    assert_eq!((s.a.dropped(), s.b.dropped()), (0, 0));
    // The old peers are nothing to the new session's peers.
    assert_silent(&old.b_rtp);
    assert_eq!(relay.idle_discarded(), 1);
}

#[test]
fn reused_session_first_datagram_not_taken_for_idle() {
    // The session is added to its worker lazily (no wake-up): the worker must apply it
    // before it reads the datagram that the new session's first packet wakes it for.
    let relay = start(40780, 20, 1, Duration::ZERO, 64);
    drop(relay.allocate(V4, V4).unwrap());
    // Let the worker park.
    std::thread::sleep(Duration::from_millis(50));
    let m = relay.allocate(V4, V4).unwrap();
    assert_eq!(relay.idle_sockets(), 0);
    let a = peer();
    a.send_to(&rtp(1), rtp_of(m.local(Side::A))).unwrap();
    eventually("the new session's drop", || m.stats().a.dropped_no_destination == 1);
    assert_eq!(m.stats().a.latched_rtp, Some(addr(&a)));
    assert_eq!(relay.idle_discarded(), 0);
    // And once B is known, A's media flows.
    let b = peer();
    m.set_peer(Side::B, PeerMedia::new(addr(&b))).unwrap();
    a.send_to(&rtp(2), rtp_of(m.local(Side::A))).unwrap();
    assert_eq!(recv(&b).0, rtp(2));
}

#[test]
fn idle_cap_closes_oldest_sockets() {
    // Eight idle sockets: two dropped sessions.
    let relay = start(40840, 20, 1, NEVER, 8);
    let sessions: Vec<MediaSession> = (0..3).map(|_| relay.allocate(V4, V4).unwrap()).collect();
    let all: Vec<_> = sessions.iter().map(ports).collect();
    for m in sessions {
        drop(m);
    }
    assert_eq!((relay.active_sessions(), relay.idle_sockets()), (0, 8));
    // The first session's sockets are closed, its ports free again; the others stay.
    eventually("oldest closed", || pair_free(all[0].0) && pair_free(all[0].1));
    for (a, b) in &all[1..] {
        assert!(!port_free(a.rtp) && !port_free(a.rtcp) && !port_free(b.rtp) && !port_free(b.rtcp));
    }
}

#[test]
fn idle_cap_zero_closes_at_once() {
    let relay = start(40860, 10, 1, NEVER, 0);
    let m = relay.allocate(V4, V4).unwrap();
    let (a, b) = ports(&m);
    drop(m);
    assert_eq!(relay.idle_sockets(), 0);
    eventually("closed", || pair_free(a) && pair_free(b));
}

#[test]
fn ports_exhausted_only_without_free_or_idle_pair() {
    // Two pairs: exactly one session with both sides on the same address.
    let relay = start(40870, 4, 1, NEVER, 64);
    let m = relay.allocate(V4, V4).unwrap();
    let old = ports(&m);
    assert!(matches!(relay.allocate(V4, V4), Err(RelayError::PortsExhausted)));
    drop(m);
    // No free port, but idle sockets: taken before their quarantine ends rather than
    // refusing the call.
    let m = relay.allocate(V4, V4).unwrap();
    assert_eq!(ports(&m), old);
    assert_eq!((relay.active_sessions(), relay.idle_sockets()), (1, 0));
    assert!(matches!(relay.allocate(V4, V4), Err(RelayError::PortsExhausted)));
    // A failed allocation leaks nothing.
    assert_eq!((relay.active_sessions(), relay.idle_sockets()), (1, 0));
    let (a, b) = (peer(), peer());
    m.set_peer(Side::B, PeerMedia::new(addr(&b))).unwrap();
    a.send_to(&rtp(1), rtp_of(m.local(Side::A))).unwrap();
    assert_eq!(recv(&b).0, rtp(1));
}

#[test]
fn ports_exhausted_mixes_free_and_idle_pairs() {
    // Three pairs: a session takes two, one stays free.
    let relay = start(40880, 6, 1, NEVER, 64);
    let m = relay.allocate(V4, V4).unwrap();
    let old = ports(&m);
    drop(m);
    // The free pair for one side, the oldest idle one for the other.
    let m = relay.allocate(V4, V4).unwrap();
    let (a, b) = ports(&m);
    assert!(a.rtp != old.0.rtp && a.rtp != old.1.rtp, "side A should get the free pair");
    assert_eq!(b, old.0);
    assert_eq!(relay.idle_sockets(), 2);
    // One idle pair left, no free one: a session needs two.
    assert!(matches!(relay.allocate(V4, V4), Err(RelayError::PortsExhausted)));
    assert_eq!((relay.active_sessions(), relay.idle_sockets()), (1, 2));
    // Idle now, oldest first: old B's pair, then this session's A and B pairs.
    drop(m);
    let c = call(&relay);
    assert_eq!(ports(&c.m), (old.1, a));
    assert_eq!(relay.idle_sockets(), 2);
    check_forwarding(&c, 1);
}

#[test]
fn ports_exhausted_takes_idle_pairs_of_another_worker() {
    let relay = start(40890, 4, 2, NEVER, 64);
    let m = relay.allocate(V4, V4).unwrap();
    let old = ports(&m);
    drop(m);
    // Round robin picks the other worker, which has no idle pair: the first one's serve.
    let c = call(&relay);
    assert_eq!(ports(&c.m), old);
    check_forwarding(&c, 1);
    drop(c);
    assert!(matches!(relay.allocate(V4, V4).map(|m| ports(&m)), Ok(p) if p == old));
}

#[test]
fn shutdown_closes_idle_sockets() {
    let relay = start(40900, 10, 2, NEVER, 64);
    let c = call(&relay);
    let (a, b) = ports(&c.m);
    drop(c);
    assert_eq!(relay.idle_sockets(), 4);
    relay.shutdown();
    assert!(pair_free(a) && pair_free(b));
    assert_eq!((relay.active_sessions(), relay.idle_sockets()), (0, 0));
    assert!(matches!(relay.allocate(V4, V4), Err(RelayError::ShutDown)));
}

#[test]
fn dropping_last_relay_closes_idle_sockets() {
    let relay = start(40910, 10, 1, NEVER, 64);
    let held = relay.allocate(V4, V4).unwrap();
    let idle = relay.allocate(V4, V4).unwrap();
    let (a, b) = ports(&idle);
    drop(idle);
    drop(relay);
    assert!(pair_free(a) && pair_free(b));
    assert!(pair_free(held.local(Side::A)) && pair_free(held.local(Side::B)));
    // A session dropped after its relay has nothing left to return.
    drop(held);
}

#[test]
fn set_peer_applies_promptly_on_parked_worker() {
    let relay = start(40920, 20, 1, NEVER, 64);
    let c = call(&relay);
    c.a_rtp.send_to(&rtp(1), rtp_of(c.m.local(Side::A))).unwrap();
    assert_eq!(recv(&c.b_rtp).0, rtp(1));
    eventually("latch", || c.m.stats().a.latched_rtp.is_some());
    // No traffic and no command for a while: the worker is parked.
    std::thread::sleep(Duration::from_millis(100));
    let asked = Instant::now();
    c.m.set_peer(Side::A, PeerMedia::new(addr(&c.a_rtp))).unwrap();
    eventually("latch cleared", || c.m.stats().a.latched_rtp.is_none());
    let took = asked.elapsed();
    println!("set_peer on a parked worker applied after {took:?}");
    assert!(took < Duration::from_millis(500), "took {took:?}");
}
