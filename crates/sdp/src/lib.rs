//! SDP for Switchboard: rewriting offers and answers so that media flows through the
//! relay (RFC 3264 offer/answer, RFC 8866 syntax through `sdp-types`).
//!
//! A B2BUA sits between two offer/answer exchanges. Each SDP that arrives from one leg is
//! rewritten for the other: the media address becomes the relay's address on that other
//! leg, ICE attributes are dropped (the relay is the only path), and the origin line
//! becomes Switchboard's own for that leg, its version increasing only when the content
//! changes (RFC 3264 §8). Codecs and directions pass through untouched: they are negotiated
//! end to end. What the sender asked to receive on becomes a [`MediaEndpoint`] for the relay.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

mod crypto;
mod formats;

pub use crypto::{MediaSecurity, media_security, set_media_security};
pub use formats::{Format, append_formats, audio_formats, ptime, set_formats};

use sdp_types::{Attribute, Connection, Origin, Session};

/// Where a party wants to receive media, read from its SDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaEndpoint {
    /// RTP address.
    pub rtp: SocketAddr,
    /// RTCP address (`a=rtcp`, else RTP port + 1).
    pub rtcp: SocketAddr,
    /// RTCP multiplexed on the RTP port (`a=rtcp-mux`, RFC 5761).
    pub rtcp_mux: bool,
    /// The RFC 4733 telephone-event payload types it declares (`a=rtpmap:N telephone-event/R`),
    /// the first two.
    pub telephone_events: [Option<TelephoneEvent>; 2],
}

/// A telephone-event payload type and its clock rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// RTP payload type.
    pub payload_type: u8,
    /// Clock rate (Hz) its timestamps and durations count in.
    pub clock_rate: u32,
}

/// Reads `a=rtpmap:N telephone-event/RATE` values.
fn telephone_event(rtpmap: &str) -> Option<TelephoneEvent> {
    let (pt, encoding) = rtpmap.trim().split_once(char::is_whitespace)?;
    let mut parts = encoding.trim().split('/');
    if !parts.next()?.eq_ignore_ascii_case("telephone-event") {
        return None;
    }
    let payload_type = pt.parse::<u8>().ok().filter(|&pt| pt < 128)?;
    let clock_rate = parts.next().and_then(|r| r.parse().ok()).unwrap_or(8000);
    Some(TelephoneEvent { payload_type, clock_rate })
}

/// The relay's address on the leg an SDP is sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// Relay address facing that leg.
    pub ip: IpAddr,
    /// Relay RTP port on that leg (RTCP is the next port).
    pub rtp_port: u16,
}

/// Switchboard's origin (`o=`) for one leg: a fixed session id, and a version that increases
/// when the SDP sent on that leg changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginState {
    sess_id: u64,
    version: u64,
    last: Option<Vec<u8>>,
}

impl OriginState {
    /// Origin state for a new leg.
    pub fn new(sess_id: u64) -> OriginState {
        OriginState { sess_id, version: sess_id % 1_000_000, last: None }
    }
}

/// An SDP that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SdpError {
    /// Not parseable SDP.
    Syntax(String),
    /// No usable audio stream, or no connection address for it.
    NoAudio,
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpError::Syntax(e) => write!(f, "malformed SDP: {e}"),
            SdpError::NoAudio => f.write_str("SDP has no usable audio stream"),
        }
    }
}

impl std::error::Error for SdpError {}

/// The result of anchoring one SDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchored {
    /// The SDP to send to the other leg.
    pub body: Vec<u8>,
    /// Where the sender wants to receive the anchored audio stream; `None` when the stream is
    /// disabled or on hold with a null address (`c=IN IP4 0.0.0.0`, RFC 2543 style).
    pub peer: Option<MediaEndpoint>,
}

/// ICE attributes that make no sense once media is anchored (RFC 8839).
const ICE_ATTRIBUTES: &[&str] = &[
    "candidate",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "remote-candidates",
    "end-of-candidates",
    "ice-pacing",
];

fn is_dropped_attribute(a: &Attribute) -> bool {
    let name = a.attribute.to_ascii_lowercase();
    // a=rtcp names the sender's own RTCP port; ours is always RTP + 1, the default.
    ICE_ATTRIBUTES.contains(&name.as_str()) || name == "rtcp"
}

/// Reads where the sender of `sdp` wants to receive its first audio stream.
pub fn audio_endpoint(sdp: &[u8]) -> Result<Option<MediaEndpoint>, SdpError> {
    let session = Session::parse(sdp).map_err(|e| SdpError::Syntax(e.to_string()))?;
    let idx = anchored_stream(&session).ok_or(SdpError::NoAudio)?;
    endpoint_of(&session, idx)
}

/// Index of the stream Switchboard relays: the first audio stream with a non-zero port.
fn anchored_stream(session: &Session) -> Option<usize> {
    session.medias.iter().position(|m| m.media.eq_ignore_ascii_case("audio") && m.port != 0)
}

fn endpoint_of(session: &Session, idx: usize) -> Result<Option<MediaEndpoint>, SdpError> {
    let media = &session.medias[idx];
    let conn = media.connections.first().or(session.connection.as_ref()).ok_or(SdpError::NoAudio)?;
    let ip: IpAddr = conn.connection_address.split('/').next().unwrap_or("").parse().map_err(|_| SdpError::NoAudio)?;
    if ip.is_unspecified() {
        return Ok(None);
    }
    let rtp = SocketAddr::new(ip, media.port);
    let mut rtcp = SocketAddr::new(ip, media.port.wrapping_add(1));
    let mut rtcp_mux = false;
    let mut telephone_events = [None; 2];
    let mut found = 0;
    for a in &media.attributes {
        if a.attribute.eq_ignore_ascii_case("rtcp-mux") {
            rtcp_mux = true;
        } else if a.attribute.eq_ignore_ascii_case("rtpmap")
            && let Some(event) = a.value.as_deref().and_then(telephone_event)
            && found < 2
        {
            telephone_events[found] = Some(event);
            found += 1;
        } else if a.attribute.eq_ignore_ascii_case("rtcp")
            && let Some(v) = &a.value
        {
            // a=rtcp:port [IN IP4 addr]
            let mut parts = v.split_whitespace();
            if let Some(Ok(port)) = parts.next().map(str::parse::<u16>) {
                let addr = parts.nth(2).and_then(|a| a.parse::<IpAddr>().ok()).unwrap_or(ip);
                rtcp = SocketAddr::new(addr, port);
            }
        }
    }
    if rtcp_mux {
        rtcp = rtp;
    }
    Ok(Some(MediaEndpoint { rtp, rtcp, rtcp_mux, telephone_events }))
}

/// Rewrites `sdp`, received from one leg, for the other leg whose relay address is
/// `anchor`. Only the first audio stream is kept; other streams are refused (port 0).
pub fn anchor(sdp: &[u8], anchor: &Anchor, origin: &mut OriginState) -> Result<Anchored, SdpError> {
    let mut session = Session::parse(sdp).map_err(|e| SdpError::Syntax(e.to_string()))?;
    let idx = anchored_stream(&session).ok_or(SdpError::NoAudio)?;
    let peer = endpoint_of(&session, idx)?;
    let null_hold = peer.is_none();

    let conn_ip = if null_hold {
        match anchor.ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        }
    } else {
        anchor.ip
    };
    // Nothing that identifies the other party or its network survives (topology hiding).
    session.session_name = "-".to_owned();
    session.session_description = None;
    session.uri = None;
    session.emails.clear();
    session.phones.clear();
    session.connection = Some(Connection::from_ip_addr(conn_ip));
    session.attributes.retain(|a| !is_dropped_attribute(a));
    for (i, media) in session.medias.iter_mut().enumerate() {
        media.connections.clear();
        media.attributes.retain(|a| !is_dropped_attribute(a));
        if i == idx {
            media.port = anchor.rtp_port;
            media.num_ports = None;
        } else {
            media.port = 0;
        }
    }

    // Origin: ours, version bumped only if the description changed.
    session.origin = Origin::with_ip_addr(origin.sess_id, origin.version, anchor.ip);
    session.origin.set_username("switchboard");
    let mut body = Vec::with_capacity(sdp.len());
    session.write(&mut body).map_err(|e| SdpError::Syntax(e.to_string()))?;
    if origin.last.as_ref().is_some_and(|last| *last != body) {
        origin.version += 1;
        session.origin.sess_version = origin.version;
        body.clear();
        session.write(&mut body).map_err(|e| SdpError::Syntax(e.to_string()))?;
    }
    // Later descriptions are compared with this one, as sent.
    origin.last = Some(body.clone());
    Ok(Anchored { body, peer })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=Talk\r\ni=secret info\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\na=ice-ufrag:abcd\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=candidate:1 1 UDP 2130706431 192.0.2.10 49170 typ host\r\na=rtcp:49171\r\na=sendrecv\r\nm=video 51372 RTP/AVP 31\r\na=rtpmap:31 H261/90000\r\n";

    fn anchored(sdp: &str, ip: &str, port: u16, origin: &mut OriginState) -> (String, Option<MediaEndpoint>) {
        let a = anchor(sdp.as_bytes(), &Anchor { ip: ip.parse().unwrap(), rtp_port: port }, origin).unwrap();
        (String::from_utf8(a.body).unwrap(), a.peer)
    }

    #[test]
    fn telephone_event_rtpmaps() {
        assert_eq!(
            telephone_event("96 telephone-event/48000"),
            Some(TelephoneEvent { payload_type: 96, clock_rate: 48000 })
        );
        assert_eq!(
            telephone_event("101 TELEPHONE-EVENT"),
            Some(TelephoneEvent { payload_type: 101, clock_rate: 8000 })
        );
        assert_eq!(telephone_event("0 PCMU/8000"), None);
        assert_eq!(telephone_event("200 telephone-event/8000"), None);
        assert_eq!(telephone_event("x"), None);
    }

    #[test]
    fn offer_is_anchored_and_scrubbed() {
        let mut o = OriginState::new(42);
        let (body, peer) = anchored(OFFER, "203.0.113.1", 30000, &mut o);
        let peer = peer.unwrap();
        assert_eq!(peer.rtp, "192.0.2.10:49170".parse().unwrap());
        assert_eq!(peer.rtcp, "192.0.2.10:49171".parse().unwrap());
        assert!(!peer.rtcp_mux);
        assert_eq!(peer.telephone_events, [Some(TelephoneEvent { payload_type: 101, clock_rate: 8000 }), None]);
        assert!(body.contains("c=IN IP4 203.0.113.1\r\n"), "{body}");
        assert!(body.contains("m=audio 30000 RTP/AVP 0 8 101\r\n"), "{body}");
        assert!(body.contains("m=video 0 RTP/AVP 31\r\n"), "{body}");
        assert!(body.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        assert!(body.contains("a=sendrecv\r\n"));
        assert!(body.starts_with("v=0\r\no=switchboard 42 "), "{body}");
        for gone in ["192.0.2.10", "ice-ufrag", "candidate", "a=rtcp:", "secret info", "alice"] {
            assert!(!body.contains(gone), "{gone} leaked: {body}");
        }
    }

    #[test]
    fn origin_version_changes_only_with_content() {
        let mut o = OriginState::new(7);
        let (first, _) = anchored(OFFER, "203.0.113.1", 30000, &mut o);
        let (same, _) = anchored(OFFER, "203.0.113.1", 30000, &mut o);
        assert_eq!(first, same);
        let held = OFFER.replace("a=sendrecv", "a=sendonly");
        let (changed, _) = anchored(&held, "203.0.113.1", 30000, &mut o);
        let version = |s: &str| s.lines().nth(1).unwrap().split(' ').nth(2).unwrap().parse::<u64>().unwrap();
        assert_eq!(version(&changed), version(&first) + 1);
        assert!(changed.contains("a=sendonly"));
    }

    #[test]
    fn ipv6_anchor_and_media_level_connection() {
        let sdp = "v=0\r\no=- 1 1 IN IP6 2001:db8::20\r\ns=-\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\nc=IN IP6 2001:db8::20\r\na=rtcp-mux\r\n";
        let mut o = OriginState::new(1);
        let (body, peer) = anchored(sdp, "::1", 31000, &mut o);
        let peer = peer.unwrap();
        assert_eq!(peer.rtp, "[2001:db8::20]:6000".parse().unwrap());
        assert!(peer.rtcp_mux);
        assert_eq!(peer.rtcp, peer.rtp);
        assert!(body.contains("c=IN IP6 ::1\r\n"), "{body}");
        assert!(body.contains("a=rtcp-mux\r\n"));
    }

    #[test]
    fn null_address_hold_is_preserved() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let mut o = OriginState::new(1);
        let (body, peer) = anchored(sdp, "203.0.113.1", 30000, &mut o);
        assert_eq!(peer, None);
        assert!(body.contains("c=IN IP4 0.0.0.0\r\n"));
    }

    #[test]
    fn rtcp_attribute_with_address() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:5001 IN IP4 192.0.2.9\r\n";
        assert_eq!(audio_endpoint(sdp.as_bytes()).unwrap().unwrap().rtcp, "192.0.2.9:5001".parse().unwrap());
    }

    #[test]
    fn unusable_sdp_is_an_error() {
        let mut o = OriginState::new(1);
        let a = Anchor { ip: "127.0.0.1".parse().unwrap(), rtp_port: 30000 };
        assert!(matches!(anchor(b"garbage", &a, &mut o), Err(SdpError::Syntax(_))));
        let video_only =
            "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=video 4000 RTP/AVP 31\r\n";
        assert_eq!(anchor(video_only.as_bytes(), &a, &mut o), Err(SdpError::NoAudio));
        let no_conn = "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(anchor(no_conn.as_bytes(), &a, &mut o), Err(SdpError::NoAudio));
    }
}
