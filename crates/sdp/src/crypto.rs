//! The transport protocol and SDES keys (`a=crypto`, RFC 4568) of the relayed audio stream.
//! Only the text: choosing suites and keys is call control's business.

use sdp_types::{Attribute, Session};

use crate::formats::edit;
use crate::{SdpError, anchored_stream};

/// How the relayed stream's media is carried, from the `m=` line's protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaSecurity {
    /// The protocol as written (`RTP/AVP`, `RTP/SAVP`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVP`...).
    pub protocol: String,
    /// The `a=crypto` values, in order (the offerer's preference).
    pub crypto: Vec<String>,
}

impl MediaSecurity {
    /// Secure RTP (`.../SAVP` or `.../SAVPF`).
    pub fn is_secure(&self) -> bool {
        let p = self.protocol.to_ascii_uppercase();
        p.ends_with("/SAVP") || p.ends_with("/SAVPF")
    }

    /// Keyed by DTLS (`UDP/TLS/...`), which Switchboard does not terminate.
    pub fn is_dtls(&self) -> bool {
        self.protocol.to_ascii_uppercase().contains("TLS")
    }
}

/// Reads the relayed stream's protocol and SDES keys.
pub fn media_security(sdp: &[u8]) -> Result<MediaSecurity, SdpError> {
    let session = Session::parse(sdp).map_err(|e| SdpError::Syntax(e.to_string()))?;
    let idx = anchored_stream(&session).ok_or(SdpError::NoAudio)?;
    let media = &session.medias[idx];
    let crypto = media
        .attributes
        .iter()
        .filter(|a| a.attribute.eq_ignore_ascii_case("crypto"))
        .filter_map(|a| a.value.clone())
        .collect();
    Ok(MediaSecurity { protocol: media.proto.clone(), crypto })
}

/// Sets the relayed stream's protocol and replaces its `a=crypto` lines with `crypto` (none for
/// plain RTP). Other SRTP-only attributes of a DTLS offer (`fingerprint`, `setup`) go too.
pub fn set_media_security(sdp: &[u8], protocol: &str, crypto: &[String]) -> Result<Vec<u8>, SdpError> {
    edit(sdp, |media| {
        media.proto = protocol.to_owned();
        media.attributes.retain(|a| !is_keying_attribute(a));
        // After the format attributes, where phones put them.
        let at = media
            .attributes
            .iter()
            .rposition(|a| a.attribute.eq_ignore_ascii_case("rtpmap") || a.attribute.eq_ignore_ascii_case("fmtp"))
            .map_or(0, |i| i + 1);
        let lines = crypto.iter().map(|c| Attribute { attribute: "crypto".to_owned(), value: Some(c.clone()) });
        media.attributes.splice(at..at, lines);
    })
}

fn is_keying_attribute(a: &Attribute) -> bool {
    ["crypto", "fingerprint", "setup"].iter().any(|n| a.attribute.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECURE: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
        m=audio 4000 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32\r\n\
        a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\na=sendrecv\r\n";

    #[test]
    fn reads_protocol_and_keys() {
        let s = media_security(SECURE.as_bytes()).unwrap();
        assert_eq!(s.protocol, "RTP/SAVP");
        assert!(s.is_secure() && !s.is_dtls());
        assert_eq!(s.crypto.len(), 2);
        assert!(s.crypto[0].starts_with("1 AES_CM_128_HMAC_SHA1_80 inline:PS1u"));
        let plain = SECURE.replace("RTP/SAVP", "RTP/AVP");
        assert!(!media_security(plain.as_bytes()).unwrap().is_secure());
        let dtls = SECURE.replace("RTP/SAVP", "UDP/TLS/RTP/SAVPF");
        let d = media_security(dtls.as_bytes()).unwrap();
        assert!(d.is_secure() && d.is_dtls());
    }

    #[test]
    fn rewrites_protocol_and_keys() {
        let plain = set_media_security(SECURE.as_bytes(), "RTP/AVP", &[]).unwrap();
        let text = String::from_utf8(plain.clone()).unwrap();
        assert!(text.contains("m=audio 4000 RTP/AVP 0 101\r\n"), "{text}");
        assert!(!text.contains("crypto"), "{text}");
        let ours = "1 AEAD_AES_128_GCM inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned();
        let secure = set_media_security(&plain, "RTP/SAVP", std::slice::from_ref(&ours)).unwrap();
        let s = media_security(&secure).unwrap();
        assert_eq!((s.protocol.as_str(), s.crypto), ("RTP/SAVP", vec![ours]));
        let text = String::from_utf8(secure).unwrap();
        let crypto_at = text.find("a=crypto").unwrap();
        assert!(text.find("a=rtpmap:101").unwrap() < crypto_at && crypto_at < text.find("a=sendrecv").unwrap());
    }
}
