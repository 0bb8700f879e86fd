//! DSCP marking seen on the wire: the receiving peer asks the kernel for the TOS /
//! traffic class byte of each datagram (IP_RECVTOS, IPV6_RECVTCLASS).
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use media::{PeerMedia, Relay, RelayConfig, Side};
use socket2::Socket;

fn relay(port_min: u16, dscp: Option<u8>) -> Relay {
    Relay::start(RelayConfig {
        port_min,
        port_max: port_min + 9,
        workers: 1,
        dscp,
        relatch_after: Duration::from_secs(2),
        coalesce: Duration::ZERO,
        ..RelayConfig::default()
    })
    .unwrap()
}

/// A peer socket that reports the TOS / traffic class of what it receives.
fn peer(ip: IpAddr) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    s.set_nonblocking(true).unwrap();
    let sock = Socket::from(s);
    if ip.is_ipv4() {
        sock.set_recv_tos_v4(true).unwrap();
    } else {
        sock.set_recv_tclass_v6(true).unwrap();
    }
    sock.into()
}

/// Receives one datagram (bounded wait) and returns the TOS / traffic class it carried.
#[allow(unsafe_code)]
fn recv_tos(s: &UdpSocket) -> u8 {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 2048];
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 16];
    while Instant::now() < deadline {
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: msghdr is a plain C struct; all-zero is valid before the fields are set.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: msg points at live buffers (iov, control) of the sizes given.
        let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        // SAFETY: the kernel filled msg_control/msg_controllen; CMSG_* walk within them.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
                if (level == libc::IPPROTO_IP && kind == libc::IP_TOS)
                    || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_TCLASS)
                {
                    let data = libc::CMSG_DATA(cmsg);
                    // IP_TOS comes as one byte, IPV6_TCLASS as an int.
                    return if kind == libc::IP_TOS { *data } else { data.cast::<i32>().read_unaligned() as u8 };
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        panic!("datagram without TOS control message");
    }
    panic!("no datagram within the wait");
}

fn forward_and_read_tos(relay: &Relay, ip: IpAddr) -> u8 {
    let m = relay.allocate(ip, ip).unwrap();
    let (a, b) = (peer(ip), peer(ip));
    m.set_peer(Side::B, PeerMedia::new(b.local_addr().unwrap())).unwrap();
    let l = m.local(Side::A);
    a.send_to(&[0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 1], SocketAddr::new(l.ip, l.rtp)).unwrap();
    recv_tos(&b)
}

#[test]
fn dscp_ef_marks_forwarded_ipv4() {
    let relay = relay(40800, Some(46));
    assert_eq!(forward_and_read_tos(&relay, IpAddr::V4(Ipv4Addr::LOCALHOST)), 46 << 2);
}

#[test]
fn dscp_ef_marks_forwarded_ipv6() {
    let relay = relay(40810, Some(46));
    assert_eq!(forward_and_read_tos(&relay, IpAddr::V6(Ipv6Addr::LOCALHOST)), 46 << 2);
}

#[test]
fn dscp_none_leaves_default() {
    let relay = relay(40820, None);
    assert_eq!(forward_and_read_tos(&relay, IpAddr::V4(Ipv4Addr::LOCALHOST)), 0);
}
