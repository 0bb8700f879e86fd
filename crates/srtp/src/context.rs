//! The SRTP/SRTCP cryptographic context of one master key (RFC 3711 §3.2): session keys derived
//! once (§4.3), and per SSRC the rollover counter, the replay windows and the SRTCP index.
//!
//! Packet layouts (the tag covers what is above the braces, encryption what is inside `[ ]`):
//!
//! ```text
//! SRTP, AES-CM:  header | [payload] | tag(10 or 4)        tag = HMAC-SHA1(header | payload | ROC)
//! SRTP, GCM:     header | [payload] | tag(16)             AAD = header
//! SRTCP, AES-CM: header(8) | [rest] | E+index | tag(10)   tag = HMAC-SHA1(all before it)
//! SRTCP, GCM:    header(8) | [rest] | tag(16) | E+index   AAD = header(8) | E+index
//! ```

use aes::Aes128;
use aes_gcm::{AeadInOut, Aes128Gcm, KeyInit};
use ctr::cipher::{InnerIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::replay::{ReplayWindow, estimate_index};
use crate::{MasterKey, SrtpError, Suite};

/// Most payload one packet may carry: 2^16 AES blocks, as the 16-bit block counter of AES-CM
/// allows (RFC 3711 §4.1.1). Far above any datagram.
const MAX_PAYLOAD: usize = 1 << 20;

/// The SRTCP E flag, in the word that carries the index.
const E_FLAG: u32 = 0x8000_0000;

/// One direction's SRTP and SRTCP protection under one master key.
///
/// Use one context to protect what Switchboard sends (keyed with the `a=crypto` line it offered
/// or answered) and another to unprotect what it receives (keyed with the peer's line). Keep a
/// context for as long as its key is in use, across re-INVITEs: a new context with the same key
/// starts again at rollover counter 0 and SRTCP index 0, and protecting with it would reuse
/// keystream.
///
/// Every method clears `out` first, fills it on success and leaves it empty on error. An error
/// never changes the context: state moves only for packets that were protected, or that
/// authenticated and passed the replay check.
pub struct Context {
    suite: Suite,
    rtp: Cipher,
    rtcp: Cipher,
    sources: Vec<Source>,
    /// Packets the key may protect, SRTP and SRTCP each (the `a=crypto` lifetime).
    lifetime: u64,
    rtp_sent: u64,
    rtcp_sent: u64,
}

/// The per-SSRC state.
#[derive(Clone, Debug)]
struct Source {
    ssrc: u32,
    /// SRTP indices seen (received or sent); the highest gives the rollover counter.
    rtp: Option<ReplayWindow>,
    /// SRTCP indices received.
    rtcp: Option<ReplayWindow>,
    /// The next SRTCP index to send.
    rtcp_next: u32,
}

impl Source {
    fn new(ssrc: u32) -> Source {
        Source { ssrc, rtp: None, rtcp: None, rtcp_next: 0 }
    }
}

/// Session keys of SRTP or of SRTCP, expanded once.
#[derive(Clone)]
enum Cipher {
    AesCm {
        aes: Aes128,
        salt: [u8; 14],
        /// HMAC-SHA1 keyed with the session authentication key, cloned for each packet.
        mac: Hmac<Sha1>,
        tag_len: usize,
    },
    Gcm {
        aead: Aes128Gcm,
        salt: [u8; 12],
    },
}

impl Cipher {
    fn aes_cm(key: &[u8; 16], salt: &[u8; 14], auth_key: &[u8], tag_len: usize) -> Cipher {
        Cipher::AesCm {
            aes: Aes128::new(&(*key).into()),
            salt: *salt,
            mac: <Hmac<Sha1> as KeyInit>::new_from_slice(auth_key).expect("HMAC takes keys of any length"),
            tag_len,
        }
    }

    fn gcm(key: &[u8; 16], salt: &[u8; 12]) -> Cipher {
        Cipher::Gcm { aead: Aes128Gcm::new(&(*key).into()), salt: *salt }
    }

    /// The session keys with labels `first`, `first + 1` (authentication) and `first + 2`
    /// (salt) of RFC 3711 §4.3.
    fn derive(suite: Suite, master: &Aes128, master_salt: &[u8], first: u8, tag_len: usize) -> Cipher {
        let mut key = [0u8; 16];
        derive(master, master_salt, first, &mut key);
        match suite {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 => {
                let mut auth = [0u8; 20];
                let mut salt = [0u8; 14];
                derive(master, master_salt, first + 1, &mut auth);
                derive(master, master_salt, first + 2, &mut salt);
                Cipher::aes_cm(&key, &salt, &auth, tag_len)
            }
            Suite::AeadAes128Gcm => {
                let mut salt = [0u8; 12];
                derive(master, master_salt, first + 2, &mut salt);
                Cipher::gcm(&key, &salt)
            }
        }
    }
}

/// The AES-CM PRF of RFC 3711 §4.3.3 with key derivation rate 0: keystream under the master key
/// from IV = (master salt XOR label << 48) << 16. A 12-byte (GCM) salt is padded with zeros on
/// the right, as libsrtp does, so the label lands on the same byte.
fn derive(master: &Aes128, master_salt: &[u8], label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..master_salt.len()].copy_from_slice(master_salt);
    iv[7] ^= label;
    out.fill(0);
    // Keys are a few dozen bytes: the 2^128-block keystream cannot run out.
    let _ = keystream_xor(master, iv, out);
}

/// XORs AES counter-mode keystream starting at block `iv` into `data`.
fn keystream_xor(aes: &Aes128, iv: [u8; 16], data: &mut [u8]) -> Result<(), SrtpError> {
    let core = ctr::CtrCore::<&Aes128, ctr::flavors::Ctr128BE>::inner_iv_init(aes, &iv.into());
    ctr::Ctr128BE::from_core(core).try_apply_keystream(data).map_err(|_| SrtpError::TooLong)
}

/// AES-CM IV (RFC 3711 §4.1.1): (salt << 16) XOR (SSRC << 64) XOR (index << 16).
fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    xor(&mut iv[4..8], &ssrc.to_be_bytes());
    xor(&mut iv[8..14], &index.to_be_bytes()[2..]);
    iv
}

/// AES-GCM IV (RFC 7714 §8.1, §9.1): salt XOR (0x0000 | SSRC | 48 bits), the 48 bits being ROC
/// and sequence number for SRTP, 0x0000 and the SRTCP index for SRTCP: both the packet index.
fn gcm_iv(salt: &[u8; 12], ssrc: u32, index: u64) -> [u8; 12] {
    let mut iv = *salt;
    xor(&mut iv[2..6], &ssrc.to_be_bytes());
    xor(&mut iv[6..12], &index.to_be_bytes()[2..]);
    iv
}

fn xor(into: &mut [u8], from: &[u8]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a ^= b;
    }
}

/// Length of the RTP header with its CSRCs and header extension (RFC 3550 §5.1, §5.3.1).
fn rtp_header_len(packet: &[u8]) -> Result<usize, SrtpError> {
    if packet.len() < 12 {
        return Err(SrtpError::Truncated);
    }
    if packet[0] >> 6 != 2 {
        return Err(SrtpError::BadVersion);
    }
    let mut len = 12 + 4 * usize::from(packet[0] & 0x0F);
    if packet[0] & 0x10 != 0 {
        let extension = packet.get(len..len + 4).ok_or(SrtpError::Truncated)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([extension[2], extension[3]]));
    }
    if len > packet.len() {
        return Err(SrtpError::Truncated);
    }
    if packet.len() - len > MAX_PAYLOAD {
        return Err(SrtpError::TooLong);
    }
    Ok(len)
}

/// Checks the fixed RTCP header (RFC 3550 §6.4) that SRTCP leaves in clear.
fn check_rtcp_header(packet: &[u8]) -> Result<(), SrtpError> {
    if packet.len() < 8 {
        return Err(SrtpError::Truncated);
    }
    if packet[0] >> 6 != 2 {
        return Err(SrtpError::BadVersion);
    }
    if packet.len() - 8 > MAX_PAYLOAD {
        return Err(SrtpError::TooLong);
    }
    Ok(())
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Context {
    /// The number of SSRCs one context keeps state for; a packet from one more is refused with
    /// [`SrtpError::TooManySources`]. A call has one or two; a source that changes its SSRC on
    /// every re-INVITE would need hundreds.
    pub const MAX_SOURCES: usize = 256;

    /// A context for `key`, its session keys derived (RFC 3711 §4.3, key derivation rate 0).
    pub fn new(key: &MasterKey) -> Context {
        let suite = key.suite();
        let mut master_key = [0u8; 16];
        master_key.copy_from_slice(key.key());
        let master = Aes128::new(&master_key.into());
        let rtp = Cipher::derive(suite, &master, key.salt(), 0, suite.rtp_overhead());
        let rtcp = Cipher::derive(suite, &master, key.salt(), 3, suite.rtcp_tag_len());
        Context::with_ciphers(suite, rtp, rtcp, key.lifetime())
    }

    fn with_ciphers(suite: Suite, rtp: Cipher, rtcp: Cipher, lifetime: Option<u64>) -> Context {
        Context {
            suite,
            rtp,
            rtcp,
            sources: Vec::new(),
            lifetime: lifetime.unwrap_or(u64::MAX),
            rtp_sent: 0,
            rtcp_sent: 0,
        }
    }

    /// The crypto suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The rollover counter of `ssrc`'s highest SRTP packet so far, if any was seen.
    pub fn roc(&self, ssrc: u32) -> Option<u32> {
        let window = self.sources.iter().find(|s| s.ssrc == ssrc)?.rtp?;
        Some((window.highest() >> 16) as u32)
    }

    fn find(&self, ssrc: u32) -> Option<usize> {
        self.sources.iter().position(|s| s.ssrc == ssrc)
    }

    fn find_or_insert(&mut self, ssrc: u32) -> Result<usize, SrtpError> {
        if let Some(i) = self.find(ssrc) {
            return Ok(i);
        }
        if self.sources.len() >= Context::MAX_SOURCES {
            return Err(SrtpError::TooManySources);
        }
        self.sources.push(Source::new(ssrc));
        Ok(self.sources.len() - 1)
    }

    /// The index of an SRTP packet from `ssrc` with `seq`, checked against the replay window.
    fn rtp_index(&self, ssrc: u32, seq: u16) -> Result<u64, SrtpError> {
        let window = self.find(ssrc).and_then(|i| self.sources[i].rtp);
        let index = estimate_index(window.map(|w| w.highest()), seq)?;
        match window {
            Some(window) => window.check(index).map(|()| index),
            None => Ok(index),
        }
    }

    fn accept_rtp(&mut self, ssrc: u32, index: u64) -> Result<(), SrtpError> {
        let i = self.find_or_insert(ssrc)?;
        match &mut self.sources[i].rtp {
            Some(window) => window.accept(index),
            window @ None => *window = Some(ReplayWindow::starting_at(index)),
        }
        Ok(())
    }

    /// Protects an RTP packet into `out`: payload encrypted, tag appended. `Replay` for a
    /// sequence number already sent (its keystream is spent), `TooOld` for one further back than
    /// the window.
    pub fn protect_rtp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        out.clear();
        let result = self.protect_rtp_into(packet, out);
        if result.is_err() {
            out.clear();
        }
        result
    }

    fn protect_rtp_into(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        let header_len = rtp_header_len(packet)?;
        if self.rtp_sent >= self.lifetime {
            return Err(SrtpError::KeyExhausted);
        }
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = be32(packet, 8);
        let index = self.rtp_index(ssrc, seq)?;
        // Take the slot first: a refusal must come before the keystream is used.
        self.find_or_insert(ssrc)?;
        out.reserve(packet.len() + self.suite.rtp_overhead());
        out.extend_from_slice(packet);
        match &self.rtp {
            Cipher::AesCm { aes, salt, mac, tag_len } => {
                keystream_xor(aes, cm_iv(salt, ssrc, index), &mut out[header_len..])?;
                let mut mac = mac.clone();
                mac.update(out);
                mac.update(&((index >> 16) as u32).to_be_bytes());
                out.extend_from_slice(&mac.finalize().into_bytes()[..*tag_len]);
            }
            Cipher::Gcm { aead, salt } => {
                let (header, payload) = out.split_at_mut(header_len);
                let tag = aead
                    .encrypt_inout_detached(&gcm_iv(salt, ssrc, index).into(), header, payload.into())
                    .map_err(|_| SrtpError::TooLong)?;
                out.extend_from_slice(&tag);
            }
        }
        self.accept_rtp(ssrc, index)?;
        self.rtp_sent += 1;
        Ok(())
    }

    /// Authenticates and decrypts an SRTP packet into `out` (the RTP packet, tag removed).
    /// `Authentication` for a wrong tag, `Replay` or `TooOld` for a packet already received or
    /// too old to tell.
    pub fn unprotect_rtp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        out.clear();
        let result = self.unprotect_rtp_into(packet, out);
        if result.is_err() {
            out.clear();
        }
        result
    }

    fn unprotect_rtp_into(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        let body_len = packet.len().checked_sub(self.suite.rtp_overhead()).ok_or(SrtpError::Truncated)?;
        let (body, tag) = packet.split_at(body_len);
        let header_len = rtp_header_len(body)?;
        let seq = u16::from_be_bytes([body[2], body[3]]);
        let ssrc = be32(body, 8);
        let index = self.rtp_index(ssrc, seq)?;
        match &self.rtp {
            Cipher::AesCm { aes, salt, mac, .. } => {
                let mut mac = mac.clone();
                mac.update(body);
                mac.update(&((index >> 16) as u32).to_be_bytes());
                mac.verify_truncated_left(tag).map_err(|_| SrtpError::Authentication)?;
                out.extend_from_slice(body);
                keystream_xor(aes, cm_iv(salt, ssrc, index), &mut out[header_len..])?;
            }
            Cipher::Gcm { aead, salt } => {
                let tag = tag.try_into().map_err(|_| SrtpError::Truncated)?;
                out.extend_from_slice(body);
                let (header, payload) = out.split_at_mut(header_len);
                aead.decrypt_inout_detached(&gcm_iv(salt, ssrc, index).into(), header, payload.into(), tag)
                    .map_err(|_| SrtpError::Authentication)?;
            }
        }
        self.accept_rtp(ssrc, index)
    }

    /// Protects an RTCP packet (or compound packet) into `out`: encrypted after the first 8
    /// bytes, the E flag and the next SRTCP index of its SSRC appended, then the tag.
    pub fn protect_rtcp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        out.clear();
        let result = self.protect_rtcp_into(packet, out);
        if result.is_err() {
            out.clear();
        }
        result
    }

    fn protect_rtcp_into(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        check_rtcp_header(packet)?;
        if self.rtcp_sent >= self.lifetime {
            return Err(SrtpError::KeyExhausted);
        }
        let ssrc = be32(packet, 4);
        let source = self.find_or_insert(ssrc)?;
        let index = self.sources[source].rtcp_next;
        if index & E_FLAG != 0 {
            return Err(SrtpError::KeyExhausted);
        }
        let trailer = (index | E_FLAG).to_be_bytes();
        out.reserve(packet.len() + self.suite.rtcp_overhead());
        out.extend_from_slice(packet);
        match &self.rtcp {
            Cipher::AesCm { aes, salt, mac, tag_len } => {
                keystream_xor(aes, cm_iv(salt, ssrc, u64::from(index)), &mut out[8..])?;
                out.extend_from_slice(&trailer);
                let mut mac = mac.clone();
                mac.update(out);
                out.extend_from_slice(&mac.finalize().into_bytes()[..*tag_len]);
            }
            Cipher::Gcm { aead, salt } => {
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&out[..8]);
                aad[8..].copy_from_slice(&trailer);
                let tag = aead
                    .encrypt_inout_detached(&gcm_iv(salt, ssrc, u64::from(index)).into(), &aad, (&mut out[8..]).into())
                    .map_err(|_| SrtpError::TooLong)?;
                out.extend_from_slice(&tag);
                out.extend_from_slice(&trailer);
            }
        }
        self.sources[source].rtcp_next = index + 1;
        self.rtcp_sent += 1;
        Ok(())
    }

    /// Authenticates an SRTCP packet and decrypts it into `out` (the RTCP packet, index and tag
    /// removed). A packet whose E flag is clear was authenticated only and is passed on as it
    /// is. `Authentication`, `Replay` and `TooOld` as for SRTP, per SSRC and SRTCP index.
    pub fn unprotect_rtcp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        out.clear();
        let result = self.unprotect_rtcp_into(packet, out);
        if result.is_err() {
            out.clear();
        }
        result
    }

    fn unprotect_rtcp_into(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        let tag_len = self.suite.rtcp_tag_len();
        let body_len = packet.len().checked_sub(4 + tag_len).ok_or(SrtpError::Truncated)?;
        let body = &packet[..body_len];
        check_rtcp_header(body)?;
        let (tag, trailer) = match self.rtcp {
            Cipher::AesCm { .. } => (&packet[body_len + 4..], &packet[body_len..body_len + 4]),
            Cipher::Gcm { .. } => (&packet[body_len..body_len + tag_len], &packet[body_len + tag_len..]),
        };
        let word = be32(trailer, 0);
        let encrypted = word & E_FLAG != 0;
        let index = u64::from(word & !E_FLAG);
        let ssrc = be32(body, 4);
        let window = self.find(ssrc).and_then(|i| self.sources[i].rtcp);
        if let Some(window) = window {
            window.check(index)?;
        }
        match &self.rtcp {
            Cipher::AesCm { aes, salt, mac, .. } => {
                let mut mac = mac.clone();
                mac.update(&packet[..body_len + 4]);
                mac.verify_truncated_left(tag).map_err(|_| SrtpError::Authentication)?;
                out.extend_from_slice(body);
                if encrypted {
                    keystream_xor(aes, cm_iv(salt, ssrc, index), &mut out[8..])?;
                }
            }
            Cipher::Gcm { aead, salt } => {
                let tag = tag.try_into().map_err(|_| SrtpError::Truncated)?;
                let iv = gcm_iv(salt, ssrc, index).into();
                out.extend_from_slice(body);
                if encrypted {
                    let mut aad = [0u8; 12];
                    aad[..8].copy_from_slice(&body[..8]);
                    aad[8..].copy_from_slice(trailer);
                    aead.decrypt_inout_detached(&iv, &aad, (&mut out[8..]).into(), tag)
                } else {
                    // Authenticated only: the whole packet and the index word are the AAD.
                    out.extend_from_slice(trailer);
                    let result = aead.decrypt_inout_detached(&iv, out, (&mut [0u8; 0][..]).into(), tag);
                    out.truncate(body_len);
                    result
                }
                .map_err(|_| SrtpError::Authentication)?;
            }
        }
        let i = self.find_or_insert(ssrc)?;
        match &mut self.sources[i].rtcp {
            Some(window) => window.accept(index),
            window @ None => *window = Some(ReplayWindow::starting_at(index)),
        }
        Ok(())
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("suite", &self.suite)
            .field("sources", &self.sources)
            .field("rtp_sent", &self.rtp_sent)
            .field("rtcp_sent", &self.rtcp_sent)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
    }

    fn array<const N: usize>(text: &str) -> [u8; N] {
        hex(text).try_into().unwrap()
    }

    /// RFC 3711 Appendix B.2: AES-CM keystream for session key 2B7E..., salt F0F1...FCFD,
    /// SSRC 0, index 0, at the first three and last three counter values the RFC lists.
    #[test]
    fn rfc3711_b2_aes_cm_keystream() {
        let aes = Aes128::new(&array::<16>("2B7E151628AED2A6ABF7158809CF4F3C").into());
        let iv = cm_iv(&array("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"), 0, 0);
        assert_eq!(iv.to_vec(), hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000"));
        let mut keystream = vec![0u8; 0xFF02 * 16];
        keystream_xor(&aes, iv, &mut keystream).unwrap();
        let block = |counter: usize| keystream[counter * 16..counter * 16 + 16].to_vec();
        assert_eq!(block(0x0000), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
        assert_eq!(block(0x0001), hex("D23513162B02D0F72A43A2FE4A5F97AB"));
        assert_eq!(block(0x0002), hex("41E95B3BB0A2E8DD477901E4FCA894C0"));
        assert_eq!(block(0xFEFF), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
        assert_eq!(block(0xFF00), hex("362B7C3C6773516318A077D7FC5073AE"));
        assert_eq!(block(0xFF01), hex("6A2CC3787889374FBEB4C81B17BA6C44"));
    }

    /// RFC 3711 Appendix B.3: session encryption key, salt and the first 94 bytes of the
    /// authentication key stream from master key E1F9... and master salt 0EC6...
    #[test]
    fn rfc3711_b3_key_derivation() {
        let master = Aes128::new(&array::<16>("E1F97A0D3E018BE0D64FA32C06DE4139").into());
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut key = [0u8; 16];
        derive(&master, &salt, 0, &mut key);
        assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut session_salt = [0u8; 14];
        derive(&master, &salt, 2, &mut session_salt);
        assert_eq!(session_salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        let mut auth = [0u8; 94];
        derive(&master, &salt, 1, &mut auth);
        assert_eq!(
            auth.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE
                 E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25
                 6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2")
        );
    }

    fn libsrtp_reference_key() -> MasterKey {
        MasterKey::new(
            Suite::AesCm128HmacSha1_80,
            &hex("E1F97A0D3E018BE0D64FA32C06DE4139"),
            &hex("0EC675AD498AFEEBB6960B3AABE6"),
        )
        .unwrap()
    }

    /// The reference packets of libsrtp's test driver (`srtp_validate`): the B.3 master key,
    /// AES_CM_128_HMAC_SHA1_80, SSRC 0xCAFEBABE. Key derivation, IV, keystream and HMAC at once.
    #[test]
    fn libsrtp_reference_packets() {
        let rtp = hex("800f1234decafbadcafebabe abababababababababababababababab");
        let srtp = hex("800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb");
        let rtcp = hex("81c8000bcafebabe abababababababababababababababab");
        // libsrtp numbers its first SRTCP packet 1.
        let srtcp = hex("81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001 993e08cd54d6c1230798");
        let mut out = Vec::new();
        let mut sender = Context::new(&libsrtp_reference_key());
        sender.protect_rtp(&rtp, &mut out).unwrap();
        assert_eq!(out, srtp);
        sender.sources[0].rtcp_next = 1;
        sender.protect_rtcp(&rtcp, &mut out).unwrap();
        assert_eq!(out, srtcp);

        let mut receiver = Context::new(&libsrtp_reference_key());
        receiver.unprotect_rtp(&srtp, &mut out).unwrap();
        assert_eq!(out, rtp);
        receiver.unprotect_rtcp(&srtcp, &mut out).unwrap();
        assert_eq!(out, rtcp);
    }

    fn rfc7714_context() -> Context {
        let gcm = || Cipher::gcm(&array("000102030405060708090a0b0c0d0e0f"), &array("517569642070726f2071756f"));
        Context::with_ciphers(Suite::AeadAes128Gcm, gcm(), gcm(), None)
    }

    /// RFC 7714 §16.1: AEAD_AES_128_GCM, SSRC 0x5501A0B2, ROC 0, SEQ 0xF17B, "Gallia est omnis
    /// divisa in partes tres", with the IV of §16.1.1.
    #[test]
    fn rfc7714_16_1_srtp_gcm() {
        assert_eq!(
            gcm_iv(&array("517569642070726f2071756f"), 0x5501_A0B2, 0xF17B).to_vec(),
            hex("51753c6580c2726f20718414")
        );
        let rtp = hex("8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976
             69736120 696e2070 61727465 73207472 6573");
        let srtp = hex("8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5
             0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce");
        let mut out = Vec::new();
        rfc7714_context().protect_rtp(&rtp, &mut out).unwrap();
        assert_eq!(out, srtp);
        rfc7714_context().unprotect_rtp(&srtp, &mut out).unwrap();
        assert_eq!(out, rtp);
    }

    const RFC7714_RTCP: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
                                deadbeef deadbeef deadbeef deadbeef deadbeef";

    /// RFC 7714 §17.1: SRTCP AEAD_AES_128_GCM, SSRC "Mars", SRTCP index 0x5D4, encrypted; and
    /// §17.3: the same packet authenticated only (E flag clear).
    #[test]
    fn rfc7714_17_srtcp_gcm() {
        let rtcp = hex(RFC7714_RTCP);
        assert_eq!(
            gcm_iv(&array("517569642070726f2071756f"), 0x4d61_7273, 0x5D4).to_vec(),
            hex("517524055203726f207170bb")
        );
        let srtcp = hex("81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d c676a5f1
             730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872 45d9eade 800005d4");
        let mut out = Vec::new();
        let mut sender = rfc7714_context();
        sender.find_or_insert(0x4d61_7273).unwrap();
        sender.sources[0].rtcp_next = 0x5D4;
        sender.protect_rtcp(&rtcp, &mut out).unwrap();
        assert_eq!(out, srtcp);
        let mut receiver = rfc7714_context();
        receiver.unprotect_rtcp(&srtcp, &mut out).unwrap();
        assert_eq!(out, rtcp);

        let tagged = hex(&format!("{RFC7714_RTCP} 841dd968 3dd78ec9 2ae58790 125f62b3 000005d4"));
        let mut receiver = rfc7714_context();
        receiver.unprotect_rtcp(&tagged, &mut out).unwrap();
        assert_eq!(out, rtcp);
        assert_eq!(receiver.unprotect_rtcp(&tagged, &mut out), Err(SrtpError::Replay));
        let mut bad = tagged.clone();
        bad[20] ^= 1;
        assert_eq!(rfc7714_context().unprotect_rtcp(&bad, &mut out), Err(SrtpError::Authentication));
    }

    /// An RTP packet with two CSRCs, a one-word header extension, a payload and two bytes of
    /// padding (P bit set, last byte the padding count).
    fn rtp_packet(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut packet = vec![0xB2, 0x00];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        packet.extend_from_slice(&ssrc.to_be_bytes());
        packet.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
        packet.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0xAA, 0, 0]);
        packet.extend((0..160u8).map(|i| i ^ seq as u8));
        packet.extend_from_slice(&[0, 2]);
        packet
    }

    const RTP_HEADER_LEN: usize = 12 + 8 + 8;

    fn rtcp_packet(ssrc: u32) -> Vec<u8> {
        let mut packet = vec![0x80, 201, 0, 7];
        packet.extend_from_slice(&ssrc.to_be_bytes());
        packet.extend_from_slice(&[7; 24]);
        packet
    }

    fn pair(suite: Suite) -> (Context, Context) {
        let key = MasterKey::generate(suite).unwrap();
        (Context::new(&key), Context::new(&key))
    }

    #[test]
    fn round_trip_every_suite() {
        for suite in Suite::ALL {
            let (mut sender, mut receiver) = pair(suite);
            let (mut protected, mut plain) = (Vec::new(), Vec::new());
            for seq in 1000..1010 {
                let rtp = rtp_packet(seq, 0x1234);
                sender.protect_rtp(&rtp, &mut protected).unwrap();
                assert_eq!(protected.len(), rtp.len() + suite.rtp_overhead());
                assert_eq!(protected[..RTP_HEADER_LEN], rtp[..RTP_HEADER_LEN], "header left in clear");
                assert_ne!(protected[RTP_HEADER_LEN..rtp.len()], rtp[RTP_HEADER_LEN..], "payload encrypted");
                receiver.unprotect_rtp(&protected, &mut plain).unwrap();
                assert_eq!(plain, rtp, "{suite}");

                let rtcp = rtcp_packet(0x1234);
                sender.protect_rtcp(&rtcp, &mut protected).unwrap();
                assert_eq!(protected.len(), rtcp.len() + suite.rtcp_overhead());
                assert_eq!(protected[..8], rtcp[..8]);
                assert_ne!(protected[8..rtcp.len()], rtcp[8..]);
                receiver.unprotect_rtcp(&protected, &mut plain).unwrap();
                assert_eq!(plain, rtcp, "{suite}");
            }
            // A header only packet, and the smallest RTCP one.
            let bare = &rtp_packet(2000, 0x1234)[..12];
            let bare = [&[0x80][..], &bare[1..]].concat();
            sender.protect_rtp(&bare, &mut protected).unwrap();
            receiver.unprotect_rtp(&protected, &mut plain).unwrap();
            assert_eq!(plain, bare);
            let rtcp = &rtcp_packet(0x1234)[..8];
            sender.protect_rtcp(rtcp, &mut protected).unwrap();
            receiver.unprotect_rtcp(&protected, &mut plain).unwrap();
            assert_eq!(plain, rtcp);
            // Another key cannot read it.
            let (_, mut stranger) = pair(suite);
            assert_eq!(stranger.unprotect_rtcp(&protected, &mut plain), Err(SrtpError::Authentication));
            assert!(plain.is_empty());
        }
    }

    #[test]
    fn srtcp_index_counts_up_with_the_e_flag() {
        let (mut sender, _) = pair(Suite::AesCm128HmacSha1_32);
        let mut out = Vec::new();
        for index in 0..3u32 {
            sender.protect_rtcp(&rtcp_packet(9), &mut out).unwrap();
            // The 32-bit suite keeps an 80-bit tag on SRTCP.
            let trailer = &out[out.len() - 14..out.len() - 10];
            assert_eq!(trailer, (index | E_FLAG).to_be_bytes());
        }
        // Each SSRC has its own index.
        sender.protect_rtcp(&rtcp_packet(10), &mut out).unwrap();
        assert_eq!(&out[out.len() - 14..out.len() - 10], E_FLAG.to_be_bytes());
    }

    #[test]
    fn unencrypted_srtcp_with_aes_cm_is_accepted_once_authenticated() {
        let (sender, mut receiver) = pair(Suite::AesCm128HmacSha1_80);
        let Cipher::AesCm { mac, .. } = &sender.rtcp else { unreachable!() };
        let mut packet = rtcp_packet(5);
        packet.extend_from_slice(&7u32.to_be_bytes());
        let mut mac = mac.clone();
        mac.update(&packet);
        packet.extend_from_slice(&mac.finalize().into_bytes()[..10]);
        let mut out = Vec::new();
        // Claiming it encrypted breaks the tag.
        let mut claimed = packet.clone();
        claimed[packet.len() - 14] |= 0x80;
        assert_eq!(receiver.unprotect_rtcp(&claimed, &mut out), Err(SrtpError::Authentication));
        receiver.unprotect_rtcp(&packet, &mut out).unwrap();
        assert_eq!(out, rtcp_packet(5));
        // The E flag is not part of the index: the flipped one is now a replay.
        assert_eq!(receiver.unprotect_rtcp(&claimed, &mut out), Err(SrtpError::Replay));
    }

    #[test]
    fn tampering_any_byte_fails_authentication() {
        for suite in Suite::ALL {
            let (mut sender, mut receiver) = pair(suite);
            let mut protected = Vec::new();
            let mut out = Vec::new();
            sender.protect_rtp(&rtp_packet(7, 77), &mut protected).unwrap();
            for i in 0..protected.len() {
                let mut bad = protected.clone();
                bad[i] ^= 0x20;
                // Byte 22 is the high byte of the extension length: it then runs past the end.
                let expected = if i == 22 { SrtpError::Truncated } else { SrtpError::Authentication };
                assert_eq!(receiver.unprotect_rtp(&bad, &mut out), Err(expected), "{suite} byte {i}");
                assert!(out.is_empty());
            }
            // Nothing moved: the genuine packet still goes through, once.
            receiver.unprotect_rtp(&protected, &mut out).unwrap();
            assert_eq!(out, rtp_packet(7, 77));
            assert_eq!(receiver.unprotect_rtp(&protected, &mut out), Err(SrtpError::Replay));

            sender.protect_rtcp(&rtcp_packet(77), &mut protected).unwrap();
            for i in 0..protected.len() {
                let mut bad = protected.clone();
                bad[i] ^= 0x01;
                assert_eq!(receiver.unprotect_rtcp(&bad, &mut out), Err(SrtpError::Authentication), "{suite} {i}");
            }
            receiver.unprotect_rtcp(&protected, &mut out).unwrap();
            assert_eq!(receiver.unprotect_rtcp(&protected, &mut out), Err(SrtpError::Replay));
        }
    }

    #[test]
    fn replays_and_old_packets_are_refused() {
        for suite in Suite::ALL {
            let (mut sender, mut receiver) = pair(suite);
            let packets: Vec<Vec<u8>> = (0..300u16)
                .map(|seq| {
                    let mut out = Vec::new();
                    sender.protect_rtp(&rtp_packet(seq, 1), &mut out).unwrap();
                    out
                })
                .collect();
            let mut out = Vec::new();
            receiver.unprotect_rtp(&packets[200], &mut out).unwrap();
            assert_eq!(receiver.unprotect_rtp(&packets[200], &mut out), Err(SrtpError::Replay));
            // Out of order within the window: accepted once each.
            for seq in [150, 199, 73, 100] {
                receiver.unprotect_rtp(&packets[seq], &mut out).unwrap();
                assert_eq!(out, rtp_packet(seq as u16, 1));
                assert_eq!(receiver.unprotect_rtp(&packets[seq], &mut out), Err(SrtpError::Replay));
            }
            // 128 behind the highest is out of the window.
            assert_eq!(receiver.unprotect_rtp(&packets[72], &mut out), Err(SrtpError::TooOld));
            receiver.unprotect_rtp(&packets[299], &mut out).unwrap();
            receiver.unprotect_rtp(&packets[201], &mut out).unwrap();
            assert_eq!(receiver.unprotect_rtp(&packets[171], &mut out), Err(SrtpError::TooOld));

            // SRTCP has its own window.
            let reports: Vec<Vec<u8>> = (0..200)
                .map(|_| {
                    let mut out = Vec::new();
                    sender.protect_rtcp(&rtcp_packet(1), &mut out).unwrap();
                    out
                })
                .collect();
            receiver.unprotect_rtcp(&reports[150], &mut out).unwrap();
            receiver.unprotect_rtcp(&reports[140], &mut out).unwrap();
            assert_eq!(receiver.unprotect_rtcp(&reports[140], &mut out), Err(SrtpError::Replay));
            assert_eq!(receiver.unprotect_rtcp(&reports[150], &mut out), Err(SrtpError::Replay));
            assert_eq!(receiver.unprotect_rtcp(&reports[10], &mut out), Err(SrtpError::TooOld));
            receiver.unprotect_rtcp(&reports[151], &mut out).unwrap();
        }
    }

    #[test]
    fn protecting_a_sequence_number_twice_is_refused() {
        let (mut sender, _) = pair(Suite::AeadAes128Gcm);
        let mut out = Vec::new();
        sender.protect_rtp(&rtp_packet(5, 1), &mut out).unwrap();
        assert_eq!(sender.protect_rtp(&rtp_packet(5, 1), &mut out), Err(SrtpError::Replay));
        assert!(out.is_empty());
        // Late but unsent: fine (a relay forwarding reordered packets).
        sender.protect_rtp(&rtp_packet(7, 1), &mut out).unwrap();
        sender.protect_rtp(&rtp_packet(6, 1), &mut out).unwrap();
    }

    #[test]
    fn rollover_counter_follows_the_wrap() {
        for suite in Suite::ALL {
            let (mut sender, mut receiver) = pair(suite);
            let seqs: Vec<u16> = (65_530..=65_535).chain(0..10).collect();
            let packets: Vec<Vec<u8>> = seqs
                .iter()
                .map(|&seq| {
                    let mut out = Vec::new();
                    sender.protect_rtp(&rtp_packet(seq, 3), &mut out).unwrap();
                    out
                })
                .collect();
            assert_eq!(sender.roc(3), Some(1));
            let mut out = Vec::new();
            // In order up to the wrap, then 1 and 0 after 2, then 65535 late from before it.
            for i in [0, 1, 2, 3, 4, 8, 7, 6, 5, 9, 10, 11, 12, 13, 14, 15] {
                receiver.unprotect_rtp(&packets[i], &mut out).unwrap();
                assert_eq!(out, rtp_packet(seqs[i], 3), "{suite} {i}");
            }
            assert_eq!(receiver.roc(3), Some(1));
            assert_eq!(receiver.unprotect_rtp(&packets[6], &mut out), Err(SrtpError::Replay));
        }
    }

    #[test]
    fn rollover_counter_must_match_the_senders() {
        // A receiver that missed the start and first hears seq 0 after the wrap guesses ROC 0:
        // authentication says no (SDES has no way to tell it the ROC).
        let key = MasterKey::generate(Suite::AesCm128HmacSha1_80).unwrap();
        let mut sender = Context::new(&key);
        let mut out = Vec::new();
        sender.protect_rtp(&rtp_packet(65_535, 3), &mut out).unwrap();
        sender.protect_rtp(&rtp_packet(0, 3), &mut out).unwrap();
        let mut late = Context::new(&key);
        let mut plain = Vec::new();
        assert_eq!(late.unprotect_rtp(&out, &mut plain), Err(SrtpError::Authentication));
        assert_eq!(late.roc(3), None);
    }

    #[test]
    fn failed_authentication_moves_nothing() {
        let (mut sender, mut receiver) = pair(Suite::AesCm128HmacSha1_80);
        let mut out = Vec::new();
        let mut plain = Vec::new();
        sender.protect_rtp(&rtp_packet(100, 1), &mut out).unwrap();
        receiver.unprotect_rtp(&out, &mut plain).unwrap();
        // A forgery far ahead, and one from a new SSRC: neither moves the window nor adds a source.
        let mut forged = rtp_packet(30_000, 1);
        forged.extend_from_slice(&[0; 10]);
        assert_eq!(receiver.unprotect_rtp(&forged, &mut plain), Err(SrtpError::Authentication));
        let mut forged = rtp_packet(1, 2);
        forged.extend_from_slice(&[0; 10]);
        assert_eq!(receiver.unprotect_rtp(&forged, &mut plain), Err(SrtpError::Authentication));
        assert_eq!(receiver.sources.len(), 1);
        sender.protect_rtp(&rtp_packet(101, 1), &mut out).unwrap();
        receiver.unprotect_rtp(&out, &mut plain).unwrap();
    }

    #[test]
    fn lifetime_limits_what_the_key_protects() {
        let key = MasterKey::generate(Suite::AesCm128HmacSha1_80).unwrap().with_lifetime(Some(3));
        let mut sender = Context::new(&key);
        let mut out = Vec::new();
        for seq in 0..3 {
            sender.protect_rtp(&rtp_packet(seq, 1), &mut out).unwrap();
            sender.protect_rtcp(&rtcp_packet(1), &mut out).unwrap();
        }
        assert_eq!(sender.protect_rtp(&rtp_packet(3, 1), &mut out), Err(SrtpError::KeyExhausted));
        assert_eq!(sender.protect_rtcp(&rtcp_packet(1), &mut out), Err(SrtpError::KeyExhausted));
        // The SRTCP index space ends at 2^31 - 1.
        let (mut sender, _) = pair(Suite::AeadAes128Gcm);
        sender.find_or_insert(1).unwrap();
        sender.sources[0].rtcp_next = 0x7FFF_FFFF;
        sender.protect_rtcp(&rtcp_packet(1), &mut out).unwrap();
        assert_eq!(sender.protect_rtcp(&rtcp_packet(1), &mut out), Err(SrtpError::KeyExhausted));
    }

    #[test]
    fn sources_are_bounded() {
        let (mut sender, _) = pair(Suite::AesCm128HmacSha1_32);
        let mut out = Vec::new();
        for ssrc in 0..Context::MAX_SOURCES as u32 {
            sender.protect_rtp(&rtp_packet(1, ssrc), &mut out).unwrap();
        }
        assert_eq!(sender.protect_rtp(&rtp_packet(1, 9999), &mut out), Err(SrtpError::TooManySources));
        assert_eq!(sender.protect_rtcp(&rtcp_packet(9999), &mut out), Err(SrtpError::TooManySources));
        sender.protect_rtp(&rtp_packet(2, 5), &mut out).unwrap();
    }

    #[test]
    fn malformed_plain_packets_are_refused() {
        let (mut sender, _) = pair(Suite::AesCm128HmacSha1_80);
        let mut out = Vec::new();
        let mut packet = rtp_packet(1, 1);
        assert_eq!(sender.protect_rtp(&packet[..11], &mut out), Err(SrtpError::Truncated));
        // CSRCs beyond the end.
        assert_eq!(
            sender.protect_rtp(&[0x8F, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], &mut out),
            Err(SrtpError::Truncated)
        );
        // Extension header cut, and extension length beyond the end.
        assert_eq!(sender.protect_rtp(&packet[..RTP_HEADER_LEN - 6], &mut out), Err(SrtpError::Truncated));
        packet[RTP_HEADER_LEN - 6] = 0xFF;
        assert_eq!(sender.protect_rtp(&packet, &mut out), Err(SrtpError::Truncated));
        packet[0] = 0x40;
        assert_eq!(sender.protect_rtp(&packet, &mut out), Err(SrtpError::BadVersion));
        assert_eq!(sender.protect_rtcp(&[0x80, 200, 0], &mut out), Err(SrtpError::Truncated));
        assert_eq!(sender.protect_rtcp(&[0x00, 200, 0, 1, 0, 0, 0, 1], &mut out), Err(SrtpError::BadVersion));
        let mut huge = vec![0; 12 + MAX_PAYLOAD + 1];
        huge[0] = 0x80;
        assert_eq!(sender.protect_rtp(&huge, &mut out), Err(SrtpError::TooLong));
        assert!(out.is_empty());
        assert!(sender.sources.is_empty(), "no source added by refused packets");
    }

    /// Every prefix of valid SRTP and SRTCP packets, and every byte of them set to several
    /// values: errors, never a panic, and never accepted unless the bytes are the original ones.
    #[test]
    fn any_input_is_an_error_not_a_panic() {
        for suite in Suite::ALL {
            let (mut sender, receiver) = pair(suite);
            let mut srtp = Vec::new();
            let mut srtcp = Vec::new();
            sender.protect_rtp(&rtp_packet(9, 9), &mut srtp).unwrap();
            sender.protect_rtcp(&rtcp_packet(9), &mut srtcp).unwrap();
            let mut out = Vec::new();
            for end in 0..srtp.len() {
                assert!(receiver_clone(&receiver).unprotect_rtp(&srtp[..end], &mut out).is_err(), "{suite} {end}");
                let plain = rtp_packet(10 + end as u16, 9);
                let _ = sender.protect_rtp(&plain[..end.min(plain.len())], &mut out);
            }
            for end in 0..srtcp.len() {
                assert!(receiver_clone(&receiver).unprotect_rtcp(&srtcp[..end], &mut out).is_err(), "{suite} {end}");
                let plain = rtcp_packet(9);
                let _ = sender.protect_rtcp(&plain[..end.min(plain.len())], &mut out);
            }
            for (packet, rtcp) in [(&srtp, false), (&srtcp, true)] {
                for i in 0..packet.len() {
                    for value in [0x00, 0x01, 0x0F, 0x10, 0x1F, 0x7F, 0x80, 0x8F, 0x9F, 0xBF, 0xFF] {
                        let mut bad = packet.clone();
                        bad[i] = value;
                        let mut receiver = receiver_clone(&receiver);
                        let result = if rtcp {
                            receiver.unprotect_rtcp(&bad, &mut out)
                        } else {
                            receiver.unprotect_rtp(&bad, &mut out)
                        };
                        assert_eq!(result.is_ok(), bad == *packet, "{suite} rtcp {rtcp} byte {i} = {value:#x}");
                        // Garbage in the plain direction too.
                        let _ =
                            if rtcp { sender.protect_rtcp(&bad, &mut out) } else { sender.protect_rtp(&bad, &mut out) };
                    }
                }
            }
            // Random garbage of every small length.
            let mut state = 0x1234_5678u32;
            for len in 0..200 {
                let junk: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 17;
                        state ^= state << 5;
                        state as u8
                    })
                    .collect();
                let mut receiver = receiver_clone(&receiver);
                assert!(receiver.unprotect_rtp(&junk, &mut out).is_err());
                assert!(receiver.unprotect_rtcp(&junk, &mut out).is_err());
            }
        }
    }

    fn receiver_clone(context: &Context) -> Context {
        Context {
            suite: context.suite,
            rtp: context.rtp.clone(),
            rtcp: context.rtcp.clone(),
            sources: context.sources.clone(),
            lifetime: context.lifetime,
            rtp_sent: context.rtp_sent,
            rtcp_sent: context.rtcp_sent,
        }
    }
}
