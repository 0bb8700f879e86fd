//! Socket set-up and batched datagram IO.
//!
//! On Linux a batch is one `recvmmsg` (or `sendmmsg`) call with `MSG_DONTWAIT`: a batch
//! that comes back shorter than [`BATCH`] means the socket is drained, so the common case
//! (one RTP packet every 20 ms per socket) costs one receive and one send system call,
//! never a wasted `EAGAIN` read. Elsewhere the same interface falls back to one
//! `recv_from`/`send_to` per datagram.
//!
//! Buffers are allocated once per worker and reused: nothing here allocates per packet.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Datagrams per receive or send batch.
pub(crate) const BATCH: usize = 32;

/// Bytes per receive buffer: more than an Ethernet MTU. Longer datagrams are truncated
/// by the kernel, flagged, and dropped.
pub(crate) const BUF_SIZE: usize = 2048;

/// `SO_RCVBUF` and `SO_SNDBUF` asked for on every socket (the kernel doubles it and caps it
/// at `net.core.rmem_max`/`wmem_max`). Memory is only used while datagrams are queued; a
/// quarter MiB holds a few seconds of G.711 if a worker stalls.
pub(crate) const SOCKET_BUFFER: usize = 256 * 1024;

/// The IP_TOS / IPV6_TCLASS byte for a DSCP value (the low two ECN bits stay zero).
pub(crate) fn tos_byte(dscp: u8) -> u32 {
    u32::from(dscp & 0x3f) << 2
}

/// Marks every datagram sent from `socket` with `dscp` (IP_TOS or IPV6_TCLASS).
pub(crate) fn set_dscp(socket: &Socket, ipv6: bool, dscp: u8) -> io::Result<()> {
    if ipv6 { socket.set_tclass_v6(tos_byte(dscp)) } else { socket.set_tos_v4(tos_byte(dscp)) }
}

/// Binds a non-blocking UDP socket for media on `addr`: IPv6 only for IPv6 addresses,
/// DSCP marked, with [`SOCKET_BUFFER`] buffers.
pub(crate) fn bind_media_socket(addr: SocketAddr, dscp: Option<u8>) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    if let Some(dscp) = dscp {
        set_dscp(&socket, addr.is_ipv6(), dscp)?;
    }
    // Best effort: a smaller buffer than asked for is not a reason to refuse a call.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Binds the RTP socket on `ip`:`port` and the RTCP socket on `port + 1`.
pub(crate) fn bind_pair(ip: IpAddr, port: u16, dscp: Option<u8>) -> io::Result<(UdpSocket, UdpSocket)> {
    let rtcp_port = port.checked_add(1).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let rtp = bind_media_socket(SocketAddr::new(ip, port), dscp)?;
    let rtcp = bind_media_socket(SocketAddr::new(ip, rtcp_port), dscp)?;
    Ok((rtp, rtcp))
}

/// The process's soft limit on open file descriptors (`RLIMIT_NOFILE`), if it has one.
pub(crate) fn open_files_limit() -> Option<libc::rlim_t> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    #[allow(unsafe_code)]
    // SAFETY: getrlimit writes one rlimit into the valid, exclusive reference it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0;
    (ok && r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur)
}

/// Totals of one [`SendBatch::flush`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sent {
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
    pub(crate) errors: u64,
}

#[cfg(target_os = "linux")]
pub(crate) use linux::{RecvBatch, SendBatch, send_one};

#[cfg(not(target_os = "linux"))]
pub(crate) use portable::{RecvBatch, SendBatch, send_one};

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::mem::size_of;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::RawFd;

    use super::{BATCH, BUF_SIZE, Sent};

    /// Converts a kernel-filled address; `None` for families other than IPv4 and IPv6.
    fn read_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
        let len = len as usize;
        match i32::from(storage.ss_family) {
            libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
                #[allow(unsafe_code)]
                // SAFETY: the family is AF_INET and the kernel wrote at least a whole
                // sockaddr_in; sockaddr_storage is large and aligned enough for it.
                let sin = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
            }
            libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
                #[allow(unsafe_code)]
                // SAFETY: as above, for AF_INET6 and sockaddr_in6.
                let sin6 = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                let port = u16::from_be(sin6.sin6_port);
                Some(SocketAddr::V6(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id)))
            }
            _ => None,
        }
    }

    /// Writes `addr` as a C socket address into `storage`, returning its length.
    fn write_addr(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
        match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                    sin_zero: [0; 8],
                };
                #[allow(unsafe_code)]
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in, and
                // `storage` is a valid exclusive reference.
                unsafe {
                    (storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>().write(sin);
                }
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                    sin6_scope_id: a.scope_id(),
                };
                #[allow(unsafe_code)]
                // SAFETY: as above, for sockaddr_in6.
                unsafe {
                    (storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>().write(sin6);
                }
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }

    #[allow(unsafe_code)]
    fn zeroed<T>() -> T {
        // SAFETY: only used for the plain C structs below (mmsghdr, iovec,
        // sockaddr_storage), for which all-zero bytes (null pointers, zero lengths) is a
        // valid value.
        unsafe { std::mem::zeroed() }
    }

    /// Sends one datagram the relay made (not one of a receive batch): the transcoder's
    /// re-framed packets. False if the kernel refused it.
    pub(crate) fn send_one(fd: RawFd, buf: &[u8], to: SocketAddr) -> bool {
        let mut addr: libc::sockaddr_storage = zeroed();
        let len = write_addr(to, &mut addr);
        loop {
            #[allow(unsafe_code)]
            // SAFETY: `buf` is a live slice of its stated length and `addr` a socket address
            // of `len` bytes, both borrowed for the call.
            let r = unsafe {
                libc::sendto(
                    fd,
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&addr as *const libc::sockaddr_storage).cast(),
                    len,
                )
            };
            if r >= 0 {
                return true;
            }
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return false;
            }
        }
    }

    /// One `recvmmsg` worth of datagrams, with their buffers and source addresses.
    pub(crate) struct RecvBatch {
        bufs: Box<[[u8; BUF_SIZE]]>,
        addrs: Box<[libc::sockaddr_storage]>,
        hdrs: Box<[libc::mmsghdr]>,
        iovs: Box<[libc::iovec]>,
        len: usize,
    }

    impl RecvBatch {
        /// Allocates the buffers (once per worker).
        ///
        /// The headers point into the boxed buffers, whose heap memory never moves, so
        /// they are wired once here.
        pub(crate) fn new() -> RecvBatch {
            let mut b = RecvBatch {
                bufs: vec![[0u8; BUF_SIZE]; BATCH].into_boxed_slice(),
                addrs: (0..BATCH).map(|_| zeroed()).collect(),
                hdrs: (0..BATCH).map(|_| zeroed()).collect(),
                iovs: (0..BATCH).map(|_| zeroed()).collect(),
                len: 0,
            };
            for i in 0..BATCH {
                b.iovs[i] = libc::iovec { iov_base: b.bufs[i].as_mut_ptr().cast(), iov_len: BUF_SIZE };
                let hdr = &mut b.hdrs[i];
                hdr.msg_hdr.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
                hdr.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                hdr.msg_hdr.msg_iov = &mut b.iovs[i];
                hdr.msg_hdr.msg_iovlen = 1;
            }
            b
        }

        /// Receives up to [`BATCH`] datagrams from `fd` without blocking. `Ok(n)` with
        /// `n < BATCH` means the socket was drained; `WouldBlock` that nothing was there.
        pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
            // The kernel rewrote the address lengths of the last batch's datagrams.
            for hdr in &mut self.hdrs[..self.len] {
                hdr.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            }
            self.len = 0;
            #[allow(unsafe_code)]
            // SAFETY: every header points (wired in `new`) at a buffer of BUF_SIZE bytes
            // and a sockaddr_storage owned by `self`, whose heap memory lives as long as
            // `self` and is borrowed mutably for the call; the kernel writes at most
            // `BATCH` headers.
            let n = unsafe {
                libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), BATCH as _, libc::MSG_DONTWAIT as _, std::ptr::null_mut())
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            self.len = (n as usize).min(BATCH);
            Ok(self.len)
        }

        /// Datagram `i` of the last batch: its bytes (up to the buffer), source and
        /// whether it was truncated.
        pub(crate) fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>, bool) {
            if i >= self.len {
                return (&[], None, false);
            }
            let hdr = &self.hdrs[i].msg_hdr;
            let len = (self.hdrs[i].msg_len as usize).min(BUF_SIZE);
            let truncated = hdr.msg_flags & libc::MSG_TRUNC != 0;
            (&self.bufs[i][..len], read_addr(&self.addrs[i], hdr.msg_namelen), truncated)
        }

        /// The bytes of datagram `i`, to rewrite in place before they are sent.
        pub(crate) fn get_mut(&mut self, i: usize) -> &mut [u8] {
            if i >= self.len {
                return &mut [];
            }
            let len = (self.hdrs[i].msg_len as usize).min(BUF_SIZE);
            &mut self.bufs[i][..len]
        }

        /// Replaces datagram `i` with `bytes` (decrypted or encrypted, so of another length).
        /// False, and nothing changed, when `bytes` does not fit.
        pub(crate) fn replace(&mut self, i: usize, bytes: &[u8]) -> bool {
            if i >= self.len || bytes.len() > BUF_SIZE {
                return false;
            }
            self.bufs[i][..bytes.len()].copy_from_slice(bytes);
            self.hdrs[i].msg_len = bytes.len() as _;
            true
        }
    }

    /// Datagrams of the last [`RecvBatch`] queued to go out of one socket.
    pub(crate) struct SendBatch {
        /// (index into the receive batch, length) per queued datagram.
        items: [(usize, usize); BATCH],
        addrs: Box<[libc::sockaddr_storage]>,
        hdrs: Box<[libc::mmsghdr]>,
        iovs: Box<[libc::iovec]>,
        len: usize,
    }

    impl SendBatch {
        /// Allocates the headers (once per worker).
        pub(crate) fn new() -> SendBatch {
            SendBatch {
                items: [(0, 0); BATCH],
                addrs: (0..BATCH).map(|_| zeroed()).collect(),
                hdrs: (0..BATCH).map(|_| zeroed()).collect(),
                iovs: (0..BATCH).map(|_| zeroed()).collect(),
                len: 0,
            }
        }

        /// Whether nothing is queued.
        pub(crate) fn is_empty(&self) -> bool {
            self.len == 0
        }

        /// Queues datagram `index` of the receive batch, `len` bytes, for `to`.
        pub(crate) fn push(&mut self, index: usize, len: usize, to: SocketAddr) {
            if self.len < BATCH {
                let namelen = write_addr(to, &mut self.addrs[self.len]);
                self.hdrs[self.len].msg_hdr.msg_namelen = namelen;
                self.items[self.len] = (index, len);
                self.len += 1;
            }
        }

        /// Sends what is queued out of `fd` (datagrams from `recv`) and empties the queue.
        /// A datagram the kernel refuses is counted as an error and skipped.
        pub(crate) fn flush(&mut self, fd: RawFd, recv: &mut RecvBatch) -> Sent {
            let mut sent = Sent::default();
            let n = std::mem::take(&mut self.len);
            if n == 1 {
                // The common case (one RTP packet per socket per wake-up): `sendto` skips
                // the header array and iovec import of `sendmmsg`, measurably cheaper.
                let (index, len) = self.items[0];
                let buf = &recv.bufs[index.min(BATCH - 1)][..len.min(BUF_SIZE)];
                let addr: *const libc::sockaddr_storage = &self.addrs[0];
                loop {
                    #[allow(unsafe_code)]
                    // SAFETY: `buf` is a live slice of its stated length and `addr` a
                    // socket address whose length `push` stored in the first header.
                    let r = unsafe {
                        libc::sendto(
                            fd,
                            buf.as_ptr().cast(),
                            buf.len(),
                            libc::MSG_DONTWAIT,
                            addr.cast(),
                            self.hdrs[0].msg_hdr.msg_namelen,
                        )
                    };
                    if r >= 0 {
                        sent.packets = 1;
                        sent.bytes = buf.len() as u64;
                    } else if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                        continue;
                    } else {
                        sent.errors = 1;
                    }
                    return sent;
                }
            }
            for i in 0..n {
                let (index, len) = self.items[i];
                let len = len.min(BUF_SIZE);
                let buf = &mut recv.bufs[index.min(BATCH - 1)];
                self.iovs[i] = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: len };
                let hdr = &mut self.hdrs[i];
                hdr.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                hdr.msg_hdr.msg_iov = &mut self.iovs[i];
                hdr.msg_hdr.msg_iovlen = 1;
                hdr.msg_hdr.msg_control = std::ptr::null_mut();
                hdr.msg_hdr.msg_controllen = 0;
                hdr.msg_hdr.msg_flags = 0;
                hdr.msg_len = 0;
            }
            let mut start = 0;
            while start < n {
                #[allow(unsafe_code)]
                // SAFETY: headers start..n point at live buffers of `recv` (borrowed for
                // the call) with lengths within them, and at addresses in `self.addrs`
                // with their lengths set by `push`.
                let r = unsafe {
                    libc::sendmmsg(fd, self.hdrs[start..n].as_mut_ptr(), (n - start) as _, libc::MSG_DONTWAIT as _)
                };
                if r > 0 {
                    let r = r as usize;
                    for i in start..(start + r).min(n) {
                        sent.packets += 1;
                        sent.bytes += self.items[i].1 as u64;
                    }
                    start += r;
                } else {
                    // The first datagram failed (full send buffer, wrong address family,
                    // ...): real-time media is not retried, skip it.
                    let err = io::Error::last_os_error();
                    if err.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    sent.errors += 1;
                    start += 1;
                }
            }
            sent
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod portable {
    use std::io;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::{FromRawFd, IntoRawFd, RawFd};

    use super::{BATCH, BUF_SIZE, Sent};

    /// Borrows `fd` as a std socket for one call without closing it.
    fn with_socket<R>(fd: RawFd, f: impl FnOnce(&UdpSocket) -> R) -> R {
        #[allow(unsafe_code)]
        // SAFETY: `fd` is an open UDP socket owned by the caller for the duration of the
        // call; ownership is handed back with into_raw_fd so it is not closed here.
        let socket = unsafe { UdpSocket::from_raw_fd(fd) };
        let r = f(&socket);
        let _ = socket.into_raw_fd();
        r
    }

    pub(crate) fn send_one(fd: RawFd, buf: &[u8], to: SocketAddr) -> bool {
        with_socket(fd, |s| s.send_to(buf, to).is_ok())
    }

    /// Datagrams received one `recv_from` at a time.
    pub(crate) struct RecvBatch {
        bufs: Box<[[u8; BUF_SIZE + 1]]>,
        meta: [(usize, Option<SocketAddr>); BATCH],
        len: usize,
    }

    impl RecvBatch {
        pub(crate) fn new() -> RecvBatch {
            RecvBatch { bufs: vec![[0u8; BUF_SIZE + 1]; BATCH].into_boxed_slice(), meta: [(0, None); BATCH], len: 0 }
        }

        pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
            self.len = 0;
            with_socket(fd, |s| {
                while self.len < BATCH {
                    match s.recv_from(&mut self.bufs[self.len]) {
                        Ok((n, src)) => {
                            self.meta[self.len] = (n, Some(src));
                            self.len += 1;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.len > 0 => break,
                        Err(e) => return Err(e),
                    }
                }
                Ok(self.len)
            })
        }

        pub(crate) fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>, bool) {
            if i >= self.len {
                return (&[], None, false);
            }
            let (n, src) = self.meta[i];
            (&self.bufs[i][..n.min(BUF_SIZE)], src, n > BUF_SIZE)
        }

        pub(crate) fn get_mut(&mut self, i: usize) -> &mut [u8] {
            if i >= self.len {
                return &mut [];
            }
            let n = self.meta[i].0;
            &mut self.bufs[i][..n.min(BUF_SIZE)]
        }

        pub(crate) fn replace(&mut self, i: usize, bytes: &[u8]) -> bool {
            if i >= self.len || bytes.len() > BUF_SIZE {
                return false;
            }
            self.bufs[i][..bytes.len()].copy_from_slice(bytes);
            self.meta[i].0 = bytes.len();
            true
        }
    }

    /// Datagrams sent one `send_to` at a time.
    pub(crate) struct SendBatch {
        items: [(usize, usize, Option<SocketAddr>); BATCH],
        len: usize,
    }

    impl SendBatch {
        pub(crate) fn new() -> SendBatch {
            SendBatch { items: [(0, 0, None); BATCH], len: 0 }
        }

        pub(crate) fn is_empty(&self) -> bool {
            self.len == 0
        }

        pub(crate) fn push(&mut self, index: usize, len: usize, to: SocketAddr) {
            if self.len < BATCH {
                self.items[self.len] = (index, len, Some(to));
                self.len += 1;
            }
        }

        pub(crate) fn flush(&mut self, fd: RawFd, recv: &mut RecvBatch) -> Sent {
            let mut sent = Sent::default();
            let n = std::mem::take(&mut self.len);
            with_socket(fd, |s| {
                for &(index, len, to) in &self.items[..n] {
                    let (data, _, _) = recv.get(index);
                    let data = &data[..len.min(data.len())];
                    match to.map(|to| s.send_to(data, to)) {
                        Some(Ok(_)) => {
                            sent.packets += 1;
                            sent.bytes += data.len() as u64;
                        }
                        _ => sent.errors += 1,
                    }
                }
            });
            sent
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_files_limit_positive() {
        assert!(open_files_limit().is_none_or(|n| n > 0));
    }

    #[test]
    fn tos_byte_shifts_dscp() {
        assert_eq!(tos_byte(46), 184);
        assert_eq!(tos_byte(0), 0);
        assert_eq!(tos_byte(0xff), 0xfc);
    }

    #[test]
    fn bind_media_socket_sets_tos_v4() {
        let s = bind_media_socket("127.0.0.1:0".parse().unwrap(), Some(46)).unwrap();
        let s = Socket::from(s);
        assert_eq!(s.tos_v4().unwrap(), 184);
        assert!(s.nonblocking().unwrap());
    }

    #[test]
    fn bind_media_socket_sets_tclass_and_v6only() {
        let s = bind_media_socket("[::1]:0".parse().unwrap(), Some(46)).unwrap();
        let s = Socket::from(s);
        assert_eq!(s.tclass_v6().unwrap(), 184);
        assert!(s.only_v6().unwrap());
    }

    #[test]
    fn bind_media_socket_without_dscp_leaves_tos_zero() {
        let s = Socket::from(bind_media_socket("127.0.0.1:0".parse().unwrap(), None).unwrap());
        assert_eq!(s.tos_v4().unwrap(), 0);
        assert!(s.recv_buffer_size().unwrap() >= 4096);
    }

    #[test]
    fn batch_empty_socket_would_block() {
        let s = bind_media_socket("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let mut batch = RecvBatch::new();
        let err = batch.recv(std::os::fd::AsRawFd::as_raw_fd(&s)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(batch.get(0), (&[][..], None, false));
    }

    #[test]
    fn batch_round_trip_and_truncation() {
        use std::os::fd::AsRawFd;
        let rx = bind_media_socket("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let tx = bind_media_socket("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        tx.send_to(b"hello", to).unwrap();
        tx.send_to(&[], to).unwrap();
        tx.send_to(&vec![7u8; 3000], to).unwrap();
        let mut batch = RecvBatch::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut got = 0;
        while got == 0 && std::time::Instant::now() < deadline {
            got = batch.recv(rx.as_raw_fd()).unwrap_or(0);
        }
        assert_eq!(got, 3);
        assert_eq!(batch.get(0), (&b"hello"[..], Some(tx.local_addr().unwrap()), false));
        assert_eq!(batch.get(1).0.len(), 0);
        let (data, _, truncated) = batch.get(2);
        assert!(truncated);
        assert_eq!(data.len(), BUF_SIZE);

        let mut send = SendBatch::new();
        send.push(0, 5, sink.local_addr().unwrap());
        send.push(0, 5, "[::1]:9".parse().unwrap()); // wrong family for a v4 socket
        let sent = send.flush(tx.as_raw_fd(), &mut batch);
        assert_eq!(sent, Sent { packets: 1, bytes: 5, errors: 1 });
        assert!(send.is_empty());
        let mut buf = [0u8; 16];
        sink.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
        let (n, _) = sink.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
    }
}
