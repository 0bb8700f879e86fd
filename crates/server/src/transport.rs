//! SIP transports: UDP sockets and TCP connections, IPv4 and IPv6, several listen
//! addresses. Receiving hands bytes to the [`crate::core::Core`]; sending takes a
//! [`Flow`] and finds the socket or connection for it.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pbx::flow::{ConnectionId, Flow, Transport};
use sip::{Limits, StreamItem, StreamParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, error, warn};

use crate::config::Listen;
use crate::core::Core;

/// Requests bigger than this go over TCP when Switchboard sends them on a UDP flow
/// (RFC 3261 §18.1.1: 1300 bytes when the path MTU is unknown).
pub const UDP_REQUEST_LIMIT: usize = 1300;

/// How long a connection whose framing broke stays open for responses already on their way.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Called when a send fails.
pub type OnError = Box<dyn FnOnce() + Send>;

struct UdpEndpoint {
    socket: Arc<UdpSocket>,
    bound: SocketAddr,
}

struct Connection {
    tx: mpsc::Sender<Bytes>,
    remote: SocketAddr,
}

/// Counters of the transport layer.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Datagrams and stream messages received.
    pub received: AtomicU64,
    /// Messages sent.
    pub sent: AtomicU64,
    /// Sends that failed.
    pub send_errors: AtomicU64,
    /// TCP connections accepted or opened.
    pub connections: AtomicU64,
    /// Messages whose handling panicked (bugs; each one is logged).
    pub panics: AtomicU64,
}

/// Every socket and connection.
pub struct Transports {
    udp: Vec<UdpEndpoint>,
    tcp: Vec<(SocketAddr, Mutex<Option<TcpListener>>)>,
    conns: Mutex<HashMap<ConnectionId, Connection>>,
    next_conn: AtomicU64,
    local_ips: Mutex<HashMap<IpAddr, IpAddr>>,
    limits: Limits,
    idle_timeout: Duration,
    core: Mutex<Weak<Core>>,
    /// Counters.
    pub stats: TransportStats,
}

impl std::fmt::Debug for Transports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transports")
            .field("udp", &self.udp.iter().map(|u| u.bound).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    // Bursts of REGISTERs and INVITEs must not overflow the kernel queue.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

impl Transports {
    /// Binds every listen address (nothing is received until [`Transports::start`]).
    pub fn bind(listens: &[Listen], limits: Limits, idle_timeout: Duration) -> io::Result<Transports> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for l in listens {
            match l.transport {
                Transport::Udp => {
                    let socket =
                        bind_udp(l.addr).map_err(|e| io::Error::new(e.kind(), format!("udp:{}: {e}", l.addr)))?;
                    let bound = socket.local_addr()?;
                    udp.push(UdpEndpoint { socket: Arc::new(socket), bound });
                }
                Transport::Tcp | Transport::Tls => {
                    let listener =
                        bind_tcp(l.addr).map_err(|e| io::Error::new(e.kind(), format!("tcp:{}: {e}", l.addr)))?;
                    let bound = listener.local_addr()?;
                    tcp.push((bound, Mutex::new(Some(listener))));
                }
            }
        }
        Ok(Transports {
            udp,
            tcp,
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            local_ips: Mutex::new(HashMap::new()),
            limits,
            idle_timeout,
            core: Mutex::new(Weak::new()),
            stats: TransportStats::default(),
        })
    }

    /// Bound addresses (with real ports when 0 was asked), per transport.
    pub fn bound(&self) -> Vec<(Transport, SocketAddr)> {
        self.udp
            .iter()
            .map(|u| (Transport::Udp, u.bound))
            .chain(self.tcp.iter().map(|(a, _)| (Transport::Tcp, *a)))
            .collect()
    }

    /// Starts receiving: one task per UDP socket and per TCP listener.
    pub fn start(self: &Arc<Self>, core: &Arc<Core>) {
        if let Ok(mut c) = self.core.lock() {
            *c = Arc::downgrade(core);
        }
        for u in &self.udp {
            let socket = u.socket.clone();
            let bound = u.bound;
            let me = self.clone();
            let core = core.clone();
            tokio::spawn(async move { me.udp_loop(socket, bound, core).await });
        }
        for (addr, l) in &self.tcp {
            let listener = l.lock().ok().and_then(|mut l| l.take());
            if let Some(listener) = listener {
                let me = self.clone();
                let core = core.clone();
                let addr = *addr;
                tokio::spawn(async move { me.accept_loop(listener, addr, core).await });
            }
        }
    }

    /// The address of this machine used to reach `remote` (cached): what goes into Via,
    /// Contact and SDP when a socket is bound to a wildcard address.
    pub fn local_ip_for(&self, remote: IpAddr) -> IpAddr {
        if let Ok(cache) = self.local_ips.lock()
            && let Some(ip) = cache.get(&remote)
        {
            return *ip;
        }
        let unspecified: IpAddr =
            if remote.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
        let ip = std::net::UdpSocket::bind(SocketAddr::new(unspecified, 0))
            .and_then(|s| s.connect(SocketAddr::new(remote, 9)).map(|_| s))
            .and_then(|s| s.local_addr())
            .map(|a| a.ip())
            .unwrap_or(if remote.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() });
        if let Ok(mut cache) = self.local_ips.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(remote, ip);
        }
        ip
    }

    fn advertised(&self, bound: SocketAddr, remote: SocketAddr) -> SocketAddr {
        if bound.ip().is_unspecified() { SocketAddr::new(self.local_ip_for(remote.ip()), bound.port()) } else { bound }
    }

    /// Our listening TCP address of the same family as `remote`, as advertised to it.
    fn tcp_advertised(&self, remote: SocketAddr) -> Option<SocketAddr> {
        self.tcp.iter().map(|(a, _)| *a).find(|a| a.is_ipv4() == remote.is_ipv4()).map(|a| self.advertised(a, remote))
    }

    async fn udp_loop(self: Arc<Self>, socket: Arc<UdpSocket>, bound: SocketAddr, core: Arc<Core>) {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, remote) = match socket.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on some systems: ignore.
                    debug!(error = %e, "udp receive error");
                    continue;
                }
            };
            self.stats.received.fetch_add(1, Ordering::Relaxed);
            let flow =
                Flow { transport: Transport::Udp, local: self.advertised(bound, remote), remote, connection: None };
            core.on_datagram(Bytes::copy_from_slice(&buf[..n]), flow);
        }
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, bound: SocketAddr, core: Arc<Core>) {
        loop {
            match listener.accept().await {
                Ok((stream, remote)) => {
                    let local = stream.local_addr().unwrap_or(bound);
                    self.clone().adopt(stream, local, remote, core.clone(), None);
                }
                Err(e) => {
                    warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Registers a connection and starts its reader and writer. `first` is sent at once.
    fn adopt(
        self: Arc<Self>,
        stream: TcpStream,
        local: SocketAddr,
        remote: SocketAddr,
        core: Arc<Core>,
        first: Option<Bytes>,
    ) -> ConnectionId {
        let _ = stream.set_nodelay(true);
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel::<Bytes>(256);
        if let Some(b) = first {
            let _ = tx.try_send(b);
        }
        if let Ok(mut conns) = self.conns.lock() {
            conns.insert(id, Connection { tx, remote });
        }
        let (mut rd, mut wr) = stream.into_split();
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let me = self.clone();
        tokio::spawn(async move {
            let mut parser = StreamParser::new(me.limits);
            let flow = Flow { transport: Transport::Tcp, local, remote, connection: Some(id) };
            'conn: loop {
                let read = tokio::time::timeout(me.idle_timeout, rd.read_buf(parser.buffer_mut())).await;
                match read {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => break, // closed, error or idle
                }
                loop {
                    match parser.next_item() {
                        Ok(StreamItem::Message(m)) => {
                            me.stats.received.fetch_add(1, Ordering::Relaxed);
                            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| core.on_message(m, flow)))
                                .is_err()
                            {
                                me.stats.panics.fetch_add(1, Ordering::Relaxed);
                                error!(remote = %remote, "a message caused a panic; dropped");
                            }
                        }
                        Ok(StreamItem::Ping) => me.send_on(id, Bytes::from_static(b"\r\n")),
                        Ok(StreamItem::NeedMore) => break,
                        Err(e) => {
                            // Framing is lost: answer if we can, stop reading, and close once
                            // the answers to what was already received have gone out.
                            core.on_parse_error(e, flow);
                            tokio::time::sleep(CLOSE_GRACE).await;
                            break 'conn;
                        }
                    }
                }
            }
            if let Ok(mut conns) = me.conns.lock() {
                conns.remove(&id);
            }
        });
        id
    }

    fn send_on(&self, id: ConnectionId, bytes: Bytes) {
        let tx = self.conns.lock().ok().and_then(|c| c.get(&id).map(|c| c.tx.clone()));
        if let Some(tx) = tx {
            let _ = tx.try_send(bytes);
        }
    }

    /// Sends `bytes` on `flow`. Never blocks; `on_error` runs if the message could not be
    /// handed to the network (no connection could be opened, socket error).
    pub fn send(self: &Arc<Self>, flow: Flow, bytes: Bytes, on_error: Option<OnError>) {
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        match flow.transport {
            Transport::Udp => {
                let is_request = !bytes.starts_with(b"SIP/2.0 ");
                if is_request
                    && bytes.len() > UDP_REQUEST_LIMIT
                    && let Some(local) = self.tcp_advertised(flow.remote)
                    && let Some(rewritten) = via_to_tcp(&bytes, local)
                {
                    let tcp = Flow { transport: Transport::Tcp, local, remote: flow.remote, connection: None };
                    return self.send_tcp(tcp, rewritten, on_error);
                }
                self.send_udp(flow, bytes, on_error);
            }
            Transport::Tcp | Transport::Tls => self.send_tcp(flow, bytes, on_error),
        }
    }

    fn send_udp(self: &Arc<Self>, flow: Flow, bytes: Bytes, on_error: Option<OnError>) {
        let same_family = |u: &&UdpEndpoint| u.bound.is_ipv4() == flow.remote.is_ipv4();
        let endpoint = self
            .udp
            .iter()
            .filter(same_family)
            .find(|u| {
                u.bound.port() == flow.local.port()
                    && (u.bound.ip() == flow.local.ip() || u.bound.ip().is_unspecified())
            })
            .or_else(|| self.udp.iter().find(same_family));
        let Some(endpoint) = endpoint else {
            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            if let Some(f) = on_error {
                f();
            }
            return;
        };
        match endpoint.socket.try_send_to(&bytes, flow.remote) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let socket = endpoint.socket.clone();
                tokio::spawn(async move {
                    let _ = socket.send_to(&bytes, flow.remote).await;
                });
            }
            Err(e) => {
                debug!(error = %e, remote = %flow.remote, "udp send failed");
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                if let Some(f) = on_error {
                    f();
                }
            }
        }
    }

    fn send_tcp(self: &Arc<Self>, flow: Flow, bytes: Bytes, on_error: Option<OnError>) {
        // An open connection: the one the flow names, or any to the same address.
        let tx = self.conns.lock().ok().and_then(|c| {
            flow.connection
                .and_then(|id| c.get(&id))
                .or_else(|| c.values().find(|c| c.remote == flow.remote))
                .map(|c| c.tx.clone())
        });
        if let Some(tx) = tx {
            match tx.try_send(bytes) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(b)) => {
                    tokio::spawn(async move {
                        if tx.send(b).await.is_err()
                            && let Some(f) = on_error
                        {
                            f();
                        }
                    });
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(b)) => return self.connect_and_send(flow, b, on_error),
            }
        }
        self.connect_and_send(flow, bytes, on_error);
    }

    fn connect_and_send(self: &Arc<Self>, flow: Flow, bytes: Bytes, on_error: Option<OnError>) {
        let me = self.clone();
        tokio::spawn(async move {
            let connected = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(flow.remote)).await;
            let core = me.core.lock().ok().and_then(|c| c.upgrade());
            match (connected, core) {
                (Ok(Ok(stream)), Some(core)) => {
                    let local = me.tcp_advertised(flow.remote).unwrap_or(flow.local);
                    me.clone().adopt(stream, local, flow.remote, core, Some(bytes));
                }
                _ => {
                    debug!(remote = %flow.remote, "tcp connect failed");
                    me.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(f) = on_error {
                        f();
                    }
                }
            }
        });
    }

    /// Open TCP connections.
    pub fn connection_count(&self) -> usize {
        self.conns.lock().map(|c| c.len()).unwrap_or(0)
    }
}

/// Rewrites the top Via of a request from UDP to TCP with our TCP address, so an oversized
/// request can go over TCP (RFC 3261 §18.1.1). `None` if the message is not as expected.
fn via_to_tcp(bytes: &[u8], local: SocketAddr) -> Option<Bytes> {
    let text = std::str::from_utf8(bytes).ok()?;
    let via_start = text.find("\r\nVia: SIP/2.0/UDP ")? + 2;
    let value_start = via_start + "Via: SIP/2.0/UDP ".len();
    let sent_by_end = value_start + text[value_start..].find([';', '\r'])?;
    let host = match local {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    let mut out = BytesMut::with_capacity(bytes.len() + 8);
    out.extend_from_slice(&bytes[..via_start]);
    out.extend_from_slice(b"Via: SIP/2.0/TCP ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(&bytes[sent_by_end..]);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_is_rewritten_for_tcp() {
        let req = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bK-sb1\r\nCSeq: 1 INVITE\r\n\r\n";
        let out = via_to_tcp(req, "10.0.0.1:5070".parse().unwrap()).unwrap();
        assert_eq!(
            &out[..],
            b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1:5070;rport;branch=z9hG4bK-sb1\r\nCSeq: 1 INVITE\r\n\r\n"
        );
    }
}
