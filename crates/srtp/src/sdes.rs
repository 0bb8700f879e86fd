//! SDP security descriptions (RFC 4568): the `a=crypto` attribute, its `inline:` master key and
//! salt in base64, and fresh keys from the operating system's random source.
//!
//! ```text
//! a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^31
//!          tag suite                 key method : base64(key || salt) | lifetime
//! ```

use std::fmt;

use crate::Suite;

/// Why an `a=crypto` line or its key parameters were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SdesError {
    /// Fewer than the three fields tag, crypto suite and key parameters.
    Malformed,
    /// The tag is not 1 to 9 decimal digits.
    BadTag,
    /// A crypto suite Switchboard does not implement; another `a=crypto` line may offer one.
    UnknownSuite,
    /// A key method other than `inline:`.
    BadKeyMethod,
    /// The key is not valid base64.
    BadBase64,
    /// The key and salt do not have the suite's lengths.
    BadKeyLength,
    /// The lifetime is neither a decimal number nor `2^n`, or is 0.
    BadLifetime,
    /// The key carries a master key identifier (`|1:4`): SRTP with MKI is not supported.
    Mki,
    /// Several keys (`;`-separated), which only MKI could tell apart.
    SeveralKeys,
    /// A session parameter that changes the protection in a way not supported (`KDR`,
    /// `UNENCRYPTED_SRTP`, `UNENCRYPTED_SRTCP`, `UNAUTHENTICATED_SRTP`) or that is unknown and not
    /// marked ignorable with a leading `-` (RFC 4568 §6.3).
    UnsupportedParameter,
}

impl fmt::Display for SdesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SdesError::Malformed => "malformed crypto attribute",
            SdesError::BadTag => "bad crypto tag",
            SdesError::UnknownSuite => "unsupported crypto suite",
            SdesError::BadKeyMethod => "key method is not inline",
            SdesError::BadBase64 => "key is not base64",
            SdesError::BadKeyLength => "wrong key length for the suite",
            SdesError::BadLifetime => "bad key lifetime",
            SdesError::Mki => "MKI not supported",
            SdesError::SeveralKeys => "several keys need MKI, not supported",
            SdesError::UnsupportedParameter => "unsupported session parameter",
        })
    }
}

impl std::error::Error for SdesError {}

/// A master key and master salt for one suite, with the lifetime its `a=crypto` line gave.
/// `Debug` does not show the key.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    suite: Suite,
    key: [u8; 16],
    /// The salt, left-aligned: AES-GCM uses the first 12 bytes.
    salt: [u8; 14],
    lifetime: Option<u64>,
}

impl MasterKey {
    /// A master key from its parts; `BadKeyLength` unless they have the suite's lengths.
    pub fn new(suite: Suite, key: &[u8], salt: &[u8]) -> Result<MasterKey, SdesError> {
        if key.len() != suite.key_len() || salt.len() != suite.salt_len() {
            return Err(SdesError::BadKeyLength);
        }
        let mut master = MasterKey { suite, key: [0; 16], salt: [0; 14], lifetime: None };
        master.key.copy_from_slice(key);
        master.salt[..salt.len()].copy_from_slice(salt);
        Ok(master)
    }

    /// A fresh random key and salt from the operating system.
    pub fn generate(suite: Suite) -> Result<MasterKey, getrandom::Error> {
        let mut master = MasterKey { suite, key: [0; 16], salt: [0; 14], lifetime: None };
        getrandom::fill(&mut master.key)?;
        getrandom::fill(&mut master.salt[..suite.salt_len()])?;
        Ok(master)
    }

    /// The same key with a lifetime in packets (what `|2^31` says), or none.
    pub fn with_lifetime(mut self, lifetime: Option<u64>) -> MasterKey {
        self.lifetime = lifetime;
        self
    }

    /// The suite the key is for.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The master key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The master salt (14 bytes for AES-CM, 12 for AES-GCM).
    pub fn salt(&self) -> &[u8] {
        &self.salt[..self.suite.salt_len()]
    }

    /// How many SRTP packets, and separately SRTCP packets, the key may protect, if the
    /// `a=crypto` line said.
    pub fn lifetime(&self) -> Option<u64> {
        self.lifetime
    }

    /// Parses key parameters, `inline:<base64 key||salt>` with an optional `|lifetime`
    /// (decimal or `2^n`). A master key identifier (`|mki:length`) is refused with `Mki`.
    pub fn from_inline(suite: Suite, key_params: &str) -> Result<MasterKey, SdesError> {
        if key_params.contains(';') {
            return Err(SdesError::SeveralKeys);
        }
        let info = key_params.strip_prefix("inline:").ok_or(SdesError::BadKeyMethod)?;
        let mut parts = info.split('|');
        let encoded = parts.next().unwrap_or_default();
        let mut lifetime = None;
        for (i, part) in parts.enumerate() {
            if part.contains(':') {
                return Err(SdesError::Mki);
            }
            // Only one lifetime, and it comes before the MKI.
            if i > 0 {
                return Err(SdesError::BadLifetime);
            }
            lifetime = Some(parse_lifetime(part)?);
        }
        let mut material = [0u8; 30];
        let len = base64_decode(encoded, &mut material)?;
        if len != suite.key_len() + suite.salt_len() {
            return Err(SdesError::BadKeyLength);
        }
        let (key, salt) = material[..len].split_at(suite.key_len());
        Ok(MasterKey::new(suite, key, salt)?.with_lifetime(lifetime))
    }

    /// The key parameters for an `a=crypto` line: `inline:<base64>`, with `|2^n` (or a decimal
    /// number) when the key has a lifetime.
    pub fn inline(&self) -> String {
        let mut material = [0u8; 30];
        let len = self.key.len() + self.suite.salt_len();
        material[..16].copy_from_slice(&self.key);
        material[16..len].copy_from_slice(self.salt());
        let mut out = String::from("inline:");
        base64_encode(&material[..len], &mut out);
        match self.lifetime {
            Some(n) if n.is_power_of_two() => out.push_str(&format!("|2^{}", n.trailing_zeros())),
            Some(n) => out.push_str(&format!("|{n}")),
            None => {}
        }
        out
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("suite", &self.suite)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

fn parse_lifetime(text: &str) -> Result<u64, SdesError> {
    let lifetime = match text.strip_prefix("2^") {
        Some(exponent) => {
            let exponent = parse_decimal(exponent, 2).ok_or(SdesError::BadLifetime)?;
            1u64.checked_shl(exponent as u32).ok_or(SdesError::BadLifetime)?
        }
        None => parse_decimal(text, 20).ok_or(SdesError::BadLifetime)?,
    };
    if lifetime == 0 { Err(SdesError::BadLifetime) } else { Ok(lifetime) }
}

/// A decimal number of 1 to `max_digits` digits, without overflow.
fn parse_decimal(text: &str, max_digits: usize) -> Option<u64> {
    if text.is_empty() || text.len() > max_digits || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// One `a=crypto` attribute (RFC 4568 §4): tag, suite and master key. `Display` writes the
/// attribute value, `1 AES_CM_128_HMAC_SHA1_80 inline:...`, without `a=crypto:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CryptoAttribute {
    /// The tag that pairs an answer's line with the offer's (1 to 999 999 999).
    pub tag: u32,
    /// The master key and salt, which also carries the suite.
    pub key: MasterKey,
}

impl CryptoAttribute {
    /// A line with a fresh random key.
    pub fn generate(tag: u32, suite: Suite) -> Result<CryptoAttribute, getrandom::Error> {
        Ok(CryptoAttribute { tag, key: MasterKey::generate(suite)? })
    }

    /// The crypto suite.
    pub fn suite(&self) -> Suite {
        self.key.suite()
    }

    /// Parses the attribute value, with or without a leading `a=crypto:`. Session parameters
    /// after the key are checked: `WSH`, `FEC_ORDER`, `FEC_KEY` (no FEC here) and unknown ones
    /// starting with `-` are ignored; the others are refused with `UnsupportedParameter`.
    pub fn parse(line: &str) -> Result<CryptoAttribute, SdesError> {
        let value = line.trim();
        let value = value.strip_prefix("a=").unwrap_or(value);
        let value = value.strip_prefix("crypto:").unwrap_or(value);
        let mut fields = value.split_ascii_whitespace();
        let (Some(tag), Some(suite), Some(key_params)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(SdesError::Malformed);
        };
        let tag = parse_decimal(tag, 9).ok_or(SdesError::BadTag)? as u32;
        let suite = Suite::from_name(suite).ok_or(SdesError::UnknownSuite)?;
        let key = MasterKey::from_inline(suite, key_params)?;
        for param in fields {
            let name = param.split('=').next().unwrap_or_default();
            match name {
                "WSH" | "FEC_ORDER" | "FEC_KEY" => {}
                _ if name.starts_with('-') => {}
                _ => return Err(SdesError::UnsupportedParameter),
            }
        }
        Ok(CryptoAttribute { tag, key })
    }
}

impl fmt::Display for CryptoAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.tag, self.key.suite(), self.key.inline())
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8], out: &mut String) {
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 0x3F) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
}

/// Decodes standard base64 (padding optional) into `out`; the decoded length, or `BadBase64`
/// for a bad character or misplaced padding, `BadKeyLength` when it does not fit.
fn base64_decode(text: &str, out: &mut [u8]) -> Result<usize, SdesError> {
    let text = text.as_bytes();
    let data = text.strip_suffix(b"==").or_else(|| text.strip_suffix(b"=")).unwrap_or(text);
    if data.len() % 4 == 1 || (data.len() != text.len() && !text.len().is_multiple_of(4)) {
        return Err(SdesError::BadBase64);
    }
    let mut len = 0;
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in data {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(SdesError::BadBase64),
        };
        acc = acc << 6 | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(len).ok_or(SdesError::BadKeyLength)? = (acc >> bits) as u8;
            len += 1;
            acc &= (1 << bits) - 1;
        }
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_all_lengths() {
        for len in 0..=30 {
            let bytes: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37).wrapping_add(200)).collect();
            let mut text = String::new();
            base64_encode(&bytes, &mut text);
            assert_eq!(text.len() % 4, 0);
            let mut out = [0u8; 30];
            assert_eq!(base64_decode(&text, &mut out), Ok(len), "{text}");
            assert_eq!(&out[..len], &bytes[..]);
            // Unpadded too.
            assert_eq!(base64_decode(text.trim_end_matches('='), &mut out), Ok(len));
        }
        let mut text = String::new();
        base64_encode(b"foobar", &mut text);
        assert_eq!(text, "Zm9vYmFy");
        let mut out = [0u8; 30];
        assert_eq!(base64_decode("Zm9v!mFy", &mut out), Err(SdesError::BadBase64));
        assert_eq!(base64_decode("Zm9vY", &mut out), Err(SdesError::BadBase64));
        assert_eq!(base64_decode("Zm=9", &mut out), Err(SdesError::BadBase64));
        assert_eq!(base64_decode("Zg==", &mut [0u8; 0]), Err(SdesError::BadKeyLength));
    }

    #[test]
    fn rfc_4568_example_line() {
        // RFC 4568 §4's example, key and lifetime; its MKI removed.
        let line = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20";
        let attribute = CryptoAttribute::parse(line).unwrap();
        assert_eq!(attribute.tag, 1);
        assert_eq!(attribute.suite(), Suite::AesCm128HmacSha1_80);
        assert_eq!(attribute.key.lifetime(), Some(1 << 20));
        assert_eq!(&attribute.key.key()[..4], &[0x3D, 0x2D, 0x6E, 0x40]);
        assert_eq!(attribute.key.salt().len(), 14);
        assert_eq!(attribute.to_string(), line.strip_prefix("a=crypto:").unwrap());
        assert_eq!(CryptoAttribute::parse(&attribute.to_string()), Ok(attribute));
    }

    #[test]
    fn mki_and_several_keys_are_refused() {
        let key = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
        let suite = "AES_CM_128_HMAC_SHA1_32";
        let parse = |params: &str| CryptoAttribute::parse(&format!("1 {suite} {params}")).map(|a| a.key.lifetime());
        assert_eq!(parse(&format!("inline:{key}|2^31|1:1")), Err(SdesError::Mki));
        assert_eq!(parse(&format!("inline:{key}|1:4")), Err(SdesError::Mki));
        assert_eq!(parse(&format!("inline:{key}|2^31")), Ok(Some(1 << 31)));
        assert_eq!(parse(&format!("inline:{key}|1048576")), Ok(Some(1_048_576)));
        assert_eq!(parse(&format!("inline:{key}")), Ok(None));
        assert_eq!(parse(&format!("inline:{key}|2^64")), Err(SdesError::BadLifetime));
        assert_eq!(parse(&format!("inline:{key}|0")), Err(SdesError::BadLifetime));
        assert_eq!(parse(&format!("inline:{key}|2^x")), Err(SdesError::BadLifetime));
        assert_eq!(parse(&format!("inline:{key}|")), Err(SdesError::BadLifetime));
        assert_eq!(parse(&format!("inline:{key}|2^20|2^20")), Err(SdesError::BadLifetime));
        assert_eq!(parse(&format!("inline:{key}|2^20|1:4;inline:{key}|2^20|2:4")), Err(SdesError::SeveralKeys));
    }

    #[test]
    fn malformed_lines() {
        let key = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
        assert_eq!(CryptoAttribute::parse(""), Err(SdesError::Malformed));
        assert_eq!(CryptoAttribute::parse("1 AES_CM_128_HMAC_SHA1_80"), Err(SdesError::Malformed));
        assert_eq!(CryptoAttribute::parse(&format!("x AES_CM_128_HMAC_SHA1_80 {key}")), Err(SdesError::BadTag));
        assert_eq!(
            CryptoAttribute::parse(&format!("1234567890 AES_CM_128_HMAC_SHA1_80 {key}")),
            Err(SdesError::BadTag)
        );
        assert_eq!(CryptoAttribute::parse(&format!("1 F8_128_HMAC_SHA1_80 {key}")), Err(SdesError::UnknownSuite));
        assert_eq!(CryptoAttribute::parse(&format!("1 aes_cm_128_hmac_sha1_80 {key}")), Err(SdesError::UnknownSuite));
        assert_eq!(
            CryptoAttribute::parse("1 AES_CM_128_HMAC_SHA1_80 uri:https://example.invalid/k"),
            Err(SdesError::BadKeyMethod)
        );
        // A 30-byte key for the 28-byte GCM suite.
        assert_eq!(CryptoAttribute::parse(&format!("1 AEAD_AES_128_GCM {key}")), Err(SdesError::BadKeyLength));
        assert_eq!(CryptoAttribute::parse("1 AEAD_AES_128_GCM inline:AAAA"), Err(SdesError::BadKeyLength));
        assert_eq!(CryptoAttribute::parse("1 AEAD_AES_128_GCM inline:AA*A"), Err(SdesError::BadBase64));
        for bad in ["KDR=0", "UNENCRYPTED_SRTP", "UNENCRYPTED_SRTCP", "UNAUTHENTICATED_SRTP", "FOO=1"] {
            let line = format!("1 AES_CM_128_HMAC_SHA1_80 {key} {bad}");
            assert_eq!(CryptoAttribute::parse(&line), Err(SdesError::UnsupportedParameter), "{bad}");
        }
        let line = format!("1 AES_CM_128_HMAC_SHA1_80 {key} WSH=128 FEC_ORDER=FEC_SRTP -FOO=1");
        assert_eq!(CryptoAttribute::parse(&line).map(|a| a.tag), Ok(1));
        // Without any prefix, with `crypto:` only, with surrounding space.
        assert!(CryptoAttribute::parse(&format!(" crypto:7 AES_CM_128_HMAC_SHA1_80 {key}\r\n")).is_ok());
    }

    #[test]
    fn generated_keys_are_fresh_and_round_trip() {
        for suite in Suite::ALL {
            let a = CryptoAttribute::generate(3, suite).unwrap();
            let b = CryptoAttribute::generate(3, suite).unwrap();
            assert_ne!(a.key.key(), b.key.key());
            assert_eq!(a.key.salt().len(), suite.salt_len());
            let line = a.to_string();
            assert!(line.starts_with(&format!("3 {} inline:", suite.name())), "{line}");
            assert_eq!(line.len(), format!("3 {} inline:", suite.name()).len() + 40);
            assert_eq!(CryptoAttribute::parse(&line), Ok(a.clone()));
            let with_lifetime = a.key.clone().with_lifetime(Some(1000));
            assert!(with_lifetime.inline().ends_with("|1000"));
            assert_eq!(MasterKey::from_inline(suite, &with_lifetime.inline()), Ok(with_lifetime));
            // Debug hides the key.
            assert_eq!(format!("{:?}", a.key), format!("MasterKey {{ suite: {suite:?}, lifetime: None, .. }}"));
        }
        assert_eq!(MasterKey::new(Suite::AeadAes128Gcm, &[0; 16], &[0; 14]), Err(SdesError::BadKeyLength));
    }
}
