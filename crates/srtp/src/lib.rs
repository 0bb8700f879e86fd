//! SRTP and SRTCP (RFC 3711) for calls keyed with SDP security descriptions (SDES, RFC 4568).
//!
//! Three crypto suites: `AES_CM_128_HMAC_SHA1_80`, `AES_CM_128_HMAC_SHA1_32` (RFC 4568 §6.2) and
//! `AEAD_AES_128_GCM` (RFC 7714). Keys come from an `a=crypto` line ([`CryptoAttribute`]) or are
//! made fresh ([`MasterKey::generate`]); session keys are derived once (RFC 3711 §4.3, key
//! derivation rate 0).
//!
//! A [`Context`] holds one master key for one direction: the one Switchboard offered protects
//! what it sends, the one the peer offered unprotects what it receives. Per SSRC it tracks the
//! rollover counter (RFC 3711 §3.3.1, Appendix A) and a 128-packet replay window for SRTP and for
//! SRTCP. Sans-IO: packets in, packets out, no clock, no sockets.
//!
//! ```
//! use srtp::{Context, CryptoAttribute, Suite};
//!
//! // Our offer; the answerer keys its receive side with it, we key our send side.
//! let offer = CryptoAttribute::generate(1, Suite::AesCm128HmacSha1_80).expect("OS random");
//! let line = offer.to_string(); // "1 AES_CM_128_HMAC_SHA1_80 inline:..."
//! let mut send = Context::new(&offer.key);
//! let mut receive = Context::new(&CryptoAttribute::parse(&line).expect("valid").key);
//!
//! let rtp = [0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 42, 0xD5, 0xD5];
//! let (mut protected, mut plain) = (Vec::new(), Vec::new());
//! send.protect_rtp(&rtp, &mut protected).expect("valid RTP");
//! receive.unprotect_rtp(&protected, &mut plain).expect("authentic");
//! assert_eq!(plain, rtp);
//! // The same packet again is a replay.
//! assert_eq!(receive.unprotect_rtp(&protected, &mut plain), Err(srtp::SrtpError::Replay));
//! ```
//!
//! Not supported: MKI (refused when parsing), key derivation rates other than 0 (`KDR=`
//! refused), unencrypted or unauthenticated SRTP (`UNENCRYPTED_SRTP`, `UNAUTHENTICATED_SRTP`
//! refused; SRTCP packets that the sender chose not to encrypt are still accepted once
//! authenticated), encrypted header extensions (RFC 6904), and signalling a rollover counter
//! other than 0 at the start (SDES has none: both sides start at 0).

mod context;
mod replay;
mod sdes;

pub use context::Context;
pub use sdes::{CryptoAttribute, MasterKey, SdesError};

use std::fmt;

/// The crypto suites Switchboard speaks, by their RFC 4568 / RFC 7714 names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    /// AES-128 counter mode, HMAC-SHA1 tag of 80 bits (RFC 4568 §6.2.1). The common default.
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 tag of 32 bits on SRTP and 80 bits on SRTCP
    /// (RFC 4568 §6.2.2).
    AesCm128HmacSha1_32,
    /// AES-128 in Galois/counter mode, 16-byte tag, 12-byte salt (RFC 7714 §14.2).
    AeadAes128Gcm,
}

impl Suite {
    /// Every suite, most preferred first (the order to offer them in).
    pub const ALL: [Suite; 3] = [Suite::AeadAes128Gcm, Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32];

    /// The name used in `a=crypto` lines.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    /// The suite with this `a=crypto` name (case-sensitive, as RFC 4568 registers them).
    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|suite| suite.name() == name)
    }

    /// Master key length, bytes.
    pub fn key_len(self) -> usize {
        16
    }

    /// Master salt length, bytes: 14 for AES-CM, 12 for AES-GCM.
    pub fn salt_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 => 14,
            Suite::AeadAes128Gcm => 12,
        }
    }

    /// Bytes that protecting adds to an RTP packet (the authentication tag).
    pub fn rtp_overhead(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
            Suite::AeadAes128Gcm => 16,
        }
    }

    /// Bytes that protecting adds to an RTCP packet (the E flag and SRTCP index, then the tag).
    pub fn rtcp_overhead(self) -> usize {
        4 + self.rtcp_tag_len()
    }

    fn rtcp_tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 => 10,
            Suite::AeadAes128Gcm => 16,
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a packet could not be protected or unprotected. Every variant means "drop the packet";
/// none changes the context's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SrtpError {
    /// Shorter than its header and trailer, or a CSRC count or header extension length that runs
    /// past the end.
    Truncated,
    /// RTP or RTCP version other than 2.
    BadVersion,
    /// The packet is longer than one packet may be under the cipher (1 MiB of payload).
    TooLong,
    /// The authentication tag does not match: corrupted, forged, or protected with another key.
    Authentication,
    /// This packet index was already received (a duplicate or a replay), or, when protecting,
    /// already sent: protecting it again would reuse keystream.
    Replay,
    /// The packet index is older than the replay window reaches, so it cannot be told from a
    /// replay.
    TooOld,
    /// The master key has protected as many packets as it may (2^48 SRTP, 2^31 SRTCP, or the
    /// lifetime its `a=crypto` line gave): re-key.
    KeyExhausted,
    /// A new SSRC beyond the number of sources one context tracks ([`Context::MAX_SOURCES`]).
    /// Sources are never forgotten, since a sender's forgotten state would reuse keystream.
    TooManySources,
}

impl fmt::Display for SrtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SrtpError::Truncated => "truncated packet",
            SrtpError::BadVersion => "not RTP/RTCP version 2",
            SrtpError::TooLong => "packet too long for the cipher",
            SrtpError::Authentication => "authentication failed",
            SrtpError::Replay => "replayed packet",
            SrtpError::TooOld => "packet older than the replay window",
            SrtpError::KeyExhausted => "master key exhausted",
            SrtpError::TooManySources => "too many SSRCs in one context",
        })
    }
}

impl std::error::Error for SrtpError {}
