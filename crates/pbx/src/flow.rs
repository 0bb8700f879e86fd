//! Where messages come from and go to.

use std::fmt;
use std::net::SocketAddr;

use sip::headers::Via;

/// A SIP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP (unreliable: transactions retransmit).
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// True for stream transports (no retransmissions, RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The token used in Via.
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The `transport=` URI parameter value.
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// Parses a transport token (Via or URI parameter, any case).
    pub fn from_token(s: &str) -> Option<Transport> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            _ => None,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.uri_param())
    }
}

/// Identifies one stream connection held by the transport layer.
pub type ConnectionId = u64;

/// A path between Switchboard and a peer: the transport, our address (as advertised in
/// Via and Contact), the peer's address, and for streams the connection to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Transport.
    pub transport: Transport,
    /// Our address on this path (the listening address to advertise).
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// For streams, the connection a message came on (used while it is open).
    pub connection: Option<ConnectionId>,
}

impl Flow {
    /// Where responses to a request that arrived on this flow go (RFC 3261 §18.2.2 and
    /// RFC 3581): the same connection on streams; on UDP the source address, with the Via
    /// port unless `rport` asked for the source port.
    pub fn response_flow(&self, via: &Via) -> Flow {
        if self.transport.is_reliable() {
            return *self;
        }
        let port = match via.rport() {
            Some(_) => self.remote.port(),
            None => via.port.unwrap_or(5060),
        };
        Flow { remote: SocketAddr::new(self.remote.ip(), port), ..*self }
    }
}
