//! The payload formats of the relayed audio stream: reading them, adding formats to an offer
//! (codecs Switchboard can transcode to), and replacing them in an answer (the codec the other
//! leg understands).

use sdp_types::{Attribute, Session};

use crate::{SdpError, anchored_stream};

/// One payload format of an `m=audio` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    /// RTP payload type.
    pub payload_type: u8,
    /// Encoding name as in `a=rtpmap` (`PCMU`, `telephone-event`...).
    pub encoding: String,
    /// Clock rate.
    pub clock_rate: u32,
    /// Channels, when the `a=rtpmap` gives them (`opus/48000/2`).
    pub channels: Option<u16>,
    /// Its `a=fmtp` parameters, if any.
    pub fmtp: Option<String>,
}

impl Format {
    /// A format without parameters.
    pub fn new(payload_type: u8, encoding: &str, clock_rate: u32) -> Self {
        Format { payload_type, encoding: encoding.to_owned(), clock_rate, channels: None, fmtp: None }
    }

    /// Whether this is RFC 4733 telephone-event.
    pub fn is_telephone_event(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("telephone-event")
    }

    /// Whether this is comfort noise (RFC 3389).
    pub fn is_comfort_noise(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("CN")
    }

    /// Whether `other` is the same codec (name and rate), whatever its payload type.
    pub fn same_codec(&self, other: &Format) -> bool {
        self.encoding.eq_ignore_ascii_case(&other.encoding) && self.clock_rate == other.clock_rate
    }
}

/// Encoding and clock rate of the static audio payload types (RFC 3551) phones still use
/// without `a=rtpmap`.
fn static_format(pt: u8) -> Option<(&'static str, u32)> {
    Some(match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        13 => ("CN", 8000),
        18 => ("G729", 8000),
        _ => return None,
    })
}

/// The formats of the relayed audio stream, in `m=` line order (the offerer's preference).
pub fn audio_formats(sdp: &[u8]) -> Result<Vec<Format>, SdpError> {
    let session = Session::parse(sdp).map_err(|e| SdpError::Syntax(e.to_string()))?;
    let idx = anchored_stream(&session).ok_or(SdpError::NoAudio)?;
    let media = &session.medias[idx];
    let attr = |name: &str, pt: u8| {
        media.attributes.iter().find_map(|a| {
            let value = a.value.as_deref()?;
            let (p, rest) = value.trim().split_once(char::is_whitespace)?;
            (a.attribute.eq_ignore_ascii_case(name) && p.parse::<u8>().ok() == Some(pt)).then(|| rest.trim().to_owned())
        })
    };
    let mut formats = Vec::new();
    for pt in media.fmt.split_whitespace().filter_map(|p| p.parse::<u8>().ok()) {
        let (encoding, clock_rate, channels) = match attr("rtpmap", pt) {
            Some(map) => {
                let mut parts = map.split('/');
                let name = parts.next().unwrap_or("").to_owned();
                let rate = parts.next().and_then(|r| r.parse().ok()).unwrap_or(8000);
                (name, rate, parts.next().and_then(|c| c.trim().parse().ok()))
            }
            None => match static_format(pt) {
                Some((name, rate)) => (name.to_owned(), rate, None),
                None => continue,
            },
        };
        formats.push(Format { payload_type: pt, encoding, clock_rate, channels, fmtp: attr("fmtp", pt) });
    }
    Ok(formats)
}

/// The packetisation time (ms) the sender of `sdp` asks for on the relayed stream (`a=ptime`,
/// media level, else session level); `None` when it does not say.
pub fn ptime(sdp: &[u8]) -> Option<u16> {
    let session = Session::parse(sdp).ok()?;
    let idx = anchored_stream(&session)?;
    let find = |attributes: &[Attribute]| {
        attributes
            .iter()
            .find(|a| a.attribute.eq_ignore_ascii_case("ptime"))
            .and_then(|a| a.value.as_deref()?.trim().parse::<f32>().ok())
            .filter(|p| *p >= 1.0 && *p <= 1000.0)
            .map(|p| p as u16)
    };
    find(&session.medias[idx].attributes).or_else(|| find(&session.attributes))
}

/// Rewrites the relayed stream's formats to exactly `formats`: the `m=` list, and an `a=rtpmap`
/// (and `a=fmtp` when given) for each; the old `rtpmap` and `fmtp` lines go.
pub fn set_formats(sdp: &[u8], formats: &[Format]) -> Result<Vec<u8>, SdpError> {
    edit(sdp, |media| {
        media.fmt = formats.iter().map(|f| f.payload_type.to_string()).collect::<Vec<_>>().join(" ");
        media.attributes.retain(|a| !is_format_attribute(a));
        insert_format_attributes(&mut media.attributes, formats);
    })
}

/// Appends `extra` formats to the relayed stream (after the sender's own, which keep their
/// preference), with their `a=rtpmap` lines.
pub fn append_formats(sdp: &[u8], extra: &[Format]) -> Result<Vec<u8>, SdpError> {
    if extra.is_empty() {
        return Ok(sdp.to_vec());
    }
    edit(sdp, |media| {
        for f in extra {
            media.fmt.push(' ');
            media.fmt.push_str(&f.payload_type.to_string());
        }
        insert_format_attributes(&mut media.attributes, extra);
    })
}

fn is_format_attribute(a: &Attribute) -> bool {
    a.attribute.eq_ignore_ascii_case("rtpmap") || a.attribute.eq_ignore_ascii_case("fmtp")
}

/// Inserts the formats' attributes after the existing format attributes (or first).
fn insert_format_attributes(attributes: &mut Vec<Attribute>, formats: &[Format]) {
    let at = attributes.iter().rposition(is_format_attribute).map_or(0, |i| i + 1);
    let mut new = Vec::new();
    for f in formats {
        new.push(Attribute {
            attribute: "rtpmap".to_owned(),
            value: Some(match f.channels {
                Some(c) => format!("{} {}/{}/{c}", f.payload_type, f.encoding, f.clock_rate),
                None => format!("{} {}/{}", f.payload_type, f.encoding, f.clock_rate),
            }),
        });
        if let Some(p) = &f.fmtp {
            new.push(Attribute { attribute: "fmtp".to_owned(), value: Some(format!("{} {p}", f.payload_type)) });
        }
    }
    attributes.splice(at..at, new);
}

pub(crate) fn edit(sdp: &[u8], change: impl FnOnce(&mut sdp_types::Media)) -> Result<Vec<u8>, SdpError> {
    let mut session = Session::parse(sdp).map_err(|e| SdpError::Syntax(e.to_string()))?;
    let idx = anchored_stream(&session).ok_or(SdpError::NoAudio)?;
    change(&mut session.medias[idx]);
    let mut body = Vec::with_capacity(sdp.len() + 64);
    session.write(&mut body).map_err(|e| SdpError::Syntax(e.to_string()))?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 96 101\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n";

    #[test]
    fn formats_are_read_in_order_with_static_defaults() {
        let formats = audio_formats(OFFER.as_bytes()).unwrap();
        assert_eq!(
            formats,
            vec![
                Format::new(8, "PCMA", 8000),
                Format { fmtp: Some("useinbandfec=1".into()), channels: Some(2), ..Format::new(96, "opus", 48000) },
                Format { fmtp: Some("0-16".into()), ..Format::new(101, "telephone-event", 8000) },
            ]
        );
        // Channels are written back.
        let opus = formats[1].clone();
        let text = String::from_utf8(set_formats(OFFER.as_bytes(), &[opus]).unwrap()).unwrap();
        assert!(text.contains("a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n"), "{text}");
        assert!(formats[2].is_telephone_event());
        assert!(formats[0].same_codec(&Format::new(18, "pcma", 8000)));
    }

    #[test]
    fn appended_formats_come_last_with_rtpmaps() {
        let body =
            append_formats(OFFER.as_bytes(), &[Format::new(0, "PCMU", 8000), Format::new(9, "G722", 8000)]).unwrap();
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(text.contains("m=audio 4000 RTP/AVP 8 96 101 0 9\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:0 PCMU/8000\r\na=rtpmap:9 G722/8000\r\na=sendrecv"), "{text}");
        assert_eq!(audio_formats(&body).unwrap().len(), 5);
    }

    #[test]
    fn set_formats_replaces_the_list() {
        let answer = "v=0\r\no=b 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0 97\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:97 telephone-event/8000\r\na=fmtp:97 0-15\r\na=ptime:20\r\n";
        let te = Format { fmtp: Some("0-16".into()), ..Format::new(101, "telephone-event", 8000) };
        let body = set_formats(answer.as_bytes(), &[Format::new(8, "PCMA", 8000), te.clone()]).unwrap();
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(text.contains("m=audio 5000 RTP/AVP 8 101\r\n"), "{text}");
        assert!(!text.contains("PCMU") && !text.contains(":97"), "{text}");
        assert!(text.contains("a=ptime:20"), "{text}");
        assert_eq!(ptime(&body), Some(20));
        assert_eq!(ptime(OFFER.as_bytes()), None);
        assert_eq!(audio_formats(&body).unwrap(), vec![Format::new(8, "PCMA", 8000), te]);
        assert!(set_formats(b"garbage", &[]).is_err());
    }
}
