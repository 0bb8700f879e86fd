//! SRTP per leg (SDES keys, RFC 4568): what each phone encrypts with, what Switchboard
//! encrypts toward it with, and each user's policy. The relay terminates SRTP on every
//! encrypted leg, so one leg can be encrypted and the other plain.
//!
//! Rules: an encrypted offer from a user whose policy is `off`, a plain offer from a user
//! whose policy is `required`, an offer keyed by DTLS, or an offer none of whose keys can be
//! used is refused (488): never answered in clear. Calls to a `required` user are offered
//! SRTP; to the others, plain RTP.

use srtp::{CryptoAttribute, MasterKey, Suite};

use crate::directory::SrtpPolicy;

/// The keys the relay needs for one encrypted leg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrtpKeys {
    /// The key the phone encrypts with (the relay decrypts what it sends).
    pub inbound: MasterKey,
    /// The key the relay encrypts with toward the phone.
    pub outbound: MasterKey,
}

/// Why an SDP's keying cannot be accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Encrypted media from a user who may not use it.
    NotAllowed,
    /// Plain media from a user who must encrypt.
    Required,
    /// No usable key (unknown suites, MKI, malformed lines) or DTLS keying.
    NoUsableKey,
    /// An answer whose keying does not match the offer.
    BadAnswer,
}

impl Refusal {
    pub(super) fn reason(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "488 encrypted media not allowed for this user",
            Refusal::Required => "488 encrypted media required for this user",
            Refusal::NoUsableKey => "488 no usable SRTP key",
            Refusal::BadAnswer => "488 answer does not match the offered keys",
        }
    }
}

/// The SRTP state of one leg.
#[derive(Clone, Debug, Default)]
pub(super) struct LegKeys {
    /// The phone's key (from its SDP).
    remote: Option<CryptoAttribute>,
    /// Ours toward it (in the SDP sent to it).
    local: Option<CryptoAttribute>,
    /// The protocol the phone used (`RTP/SAVP` or `RTP/SAVPF`), to answer with.
    protocol: String,
    /// Lines offered to it and not answered yet.
    offered: Vec<CryptoAttribute>,
    /// What the relay was last told.
    applied: Option<SrtpKeys>,
}

impl LegKeys {
    /// The suite in use on the leg, once both keys are known.
    pub(super) fn suite(&self) -> Option<Suite> {
        self.applied.as_ref().map(|k| k.outbound.suite())
    }

    /// The keys to hand to the relay if they changed since last time: `Some(None)` turns
    /// SRTP off on the leg.
    pub(super) fn changed(&mut self) -> Option<Option<SrtpKeys>> {
        let now = match (&self.remote, &self.local) {
            (Some(r), Some(l)) => Some(SrtpKeys { inbound: r.key.clone(), outbound: l.key.clone() }),
            _ => None,
        };
        (now != self.applied).then(|| {
            self.applied = now.clone();
            now
        })
    }

    /// Reads the keying of an offer from this leg's phone.
    pub(super) fn on_offer(&mut self, sec: &sdp::MediaSecurity, policy: SrtpPolicy) -> Result<(), Refusal> {
        if !sec.is_secure() {
            if policy == SrtpPolicy::Required {
                return Err(Refusal::Required);
            }
            self.remote = None;
            self.local = None;
            return Ok(());
        }
        if policy == SrtpPolicy::Off {
            return Err(Refusal::NotAllowed);
        }
        if sec.is_dtls() {
            return Err(Refusal::NoUsableKey);
        }
        let chosen =
            sec.crypto.iter().find_map(|line| CryptoAttribute::parse(line).ok()).ok_or(Refusal::NoUsableKey)?;
        // The same suite as before keeps our key (a re-offer does not rekey what we send).
        let local = match &self.local {
            Some(l) if l.suite() == chosen.suite() => CryptoAttribute { tag: chosen.tag, key: l.key.clone() },
            _ => CryptoAttribute::generate(chosen.tag, chosen.suite()).map_err(|_| Refusal::NoUsableKey)?,
        };
        self.protocol = sec.protocol.clone();
        self.remote = Some(chosen);
        self.local = Some(local);
        Ok(())
    }

    /// Reads the keying of this leg's answer to our offer.
    pub(super) fn on_answer(&mut self, sec: &sdp::MediaSecurity) -> Result<(), Refusal> {
        // Kept until the next offer: early answers (183) and the 2xx answer the same offer.
        let offered = &self.offered;
        if offered.is_empty() {
            if sec.is_secure() {
                return Err(Refusal::BadAnswer);
            }
            self.remote = None;
            self.local = None;
            return Ok(());
        }
        if !sec.is_secure() {
            return Err(Refusal::BadAnswer);
        }
        let (theirs, ours) = sec
            .crypto
            .iter()
            .filter_map(|line| CryptoAttribute::parse(line).ok())
            .find_map(|theirs| {
                let ours = offered.iter().find(|o| o.tag == theirs.tag && o.suite() == theirs.suite())?;
                Some((theirs, ours.clone()))
            })
            .ok_or(Refusal::BadAnswer)?;
        self.remote = Some(theirs);
        self.local = Some(ours);
        Ok(())
    }

    /// The protocol and keys of an offer to this leg's phone.
    pub(super) fn offer(&mut self, policy: SrtpPolicy) -> (&'static str, Vec<String>) {
        if policy != SrtpPolicy::Required {
            self.offered.clear();
            return ("RTP/AVP", Vec::new());
        }
        self.offered = match &self.local {
            // Keep the key in use on a re-offer.
            Some(l) => vec![l.clone()],
            None => OFFERED_SUITES
                .iter()
                .zip(1..)
                .filter_map(|(&suite, tag)| CryptoAttribute::generate(tag, suite).ok())
                .collect(),
        };
        ("RTP/SAVP", self.offered.iter().map(ToString::to_string).collect())
    }

    /// The protocol and keys of our answer to this leg's offer.
    pub(super) fn answer(&self) -> (String, Vec<String>) {
        match (&self.remote, &self.local) {
            (Some(_), Some(l)) => (self.protocol.clone(), vec![l.to_string()]),
            _ => ("RTP/AVP".to_owned(), Vec::new()),
        }
    }
}

/// The suites offered to a phone, most compatible first.
const OFFERED_SUITES: [Suite; 3] = [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32, Suite::AeadAes128Gcm];

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(protocol: &str, lines: &[String]) -> sdp::MediaSecurity {
        sdp::MediaSecurity { protocol: protocol.to_owned(), crypto: lines.to_vec() }
    }

    fn line(tag: u32, suite: Suite) -> String {
        CryptoAttribute::generate(tag, suite).unwrap().to_string()
    }

    #[test]
    fn policies_decide_what_an_offer_may_be() {
        let secure = sec("RTP/SAVP", &[line(1, Suite::AesCm128HmacSha1_80)]);
        let plain = sec("RTP/AVP", &[]);
        assert_eq!(LegKeys::default().on_offer(&secure, SrtpPolicy::Off), Err(Refusal::NotAllowed));
        assert_eq!(LegKeys::default().on_offer(&plain, SrtpPolicy::Required), Err(Refusal::Required));
        assert_eq!(LegKeys::default().on_offer(&plain, SrtpPolicy::Optional), Ok(()));
        let dtls = sec("UDP/TLS/RTP/SAVPF", &[]);
        assert_eq!(LegKeys::default().on_offer(&dtls, SrtpPolicy::Optional), Err(Refusal::NoUsableKey));
        let unknown = sec("RTP/SAVP", &["1 AES_256_CM_HMAC_SHA1_80 inline:xyz".to_owned()]);
        assert_eq!(LegKeys::default().on_offer(&unknown, SrtpPolicy::Required), Err(Refusal::NoUsableKey));
    }

    #[test]
    fn an_encrypted_offer_is_answered_encrypted_with_our_own_key() {
        let mut leg = LegKeys::default();
        let skipped = "1 AES_256_CM_HMAC_SHA1_80 inline:xyz".to_owned();
        let theirs = line(2, Suite::AesCm128HmacSha1_32);
        leg.on_offer(&sec("RTP/SAVPF", &[skipped, theirs.clone()]), SrtpPolicy::Optional).unwrap();
        let (protocol, lines) = leg.answer();
        assert_eq!(protocol, "RTP/SAVPF");
        let ours = CryptoAttribute::parse(&lines[0]).unwrap();
        assert_eq!((ours.tag, ours.suite()), (2, Suite::AesCm128HmacSha1_32));
        assert_ne!(ours.key, CryptoAttribute::parse(&theirs).unwrap().key, "never echo the phone's key");
        let keys = leg.changed().unwrap().unwrap();
        assert_eq!(keys.inbound, CryptoAttribute::parse(&theirs).unwrap().key);
        assert_eq!(keys.outbound, ours.key);
        assert_eq!(leg.changed(), None, "unchanged keys are not applied twice");
        // A re-offer with the same key keeps ours; a plain one turns SRTP off.
        leg.on_offer(&sec("RTP/SAVPF", &[theirs]), SrtpPolicy::Optional).unwrap();
        assert_eq!(leg.changed(), None);
        leg.on_offer(&sec("RTP/AVP", &[]), SrtpPolicy::Optional).unwrap();
        assert_eq!(leg.changed(), Some(None));
        assert_eq!(leg.answer(), ("RTP/AVP".to_owned(), vec![]));
        assert_eq!(leg.suite(), None);
    }

    #[test]
    fn our_offer_to_a_required_user_and_its_answer() {
        let mut leg = LegKeys::default();
        assert_eq!(leg.offer(SrtpPolicy::Optional), ("RTP/AVP", vec![]));
        let (protocol, lines) = leg.offer(SrtpPolicy::Required);
        assert_eq!((protocol, lines.len()), ("RTP/SAVP", 3));
        // A plain answer to an encrypted offer is refused.
        assert_eq!(leg.clone().on_answer(&sec("RTP/AVP", &[])), Err(Refusal::BadAnswer));
        // The answer must pick one of our tags with its suite.
        let wrong = sec("RTP/SAVP", &[line(2, Suite::AesCm128HmacSha1_80)]);
        assert_eq!(leg.clone().on_answer(&wrong), Err(Refusal::BadAnswer));
        let theirs = line(2, Suite::AesCm128HmacSha1_32);
        leg.on_answer(&sec("RTP/SAVP", std::slice::from_ref(&theirs))).unwrap();
        assert_eq!(leg.suite(), None);
        let keys = leg.changed().unwrap().unwrap();
        assert_eq!(keys.outbound, CryptoAttribute::parse(&lines[1]).unwrap().key);
        assert_eq!(leg.suite(), Some(Suite::AesCm128HmacSha1_32));
        // A re-offer keeps the key in use, alone.
        let (_, again) = leg.offer(SrtpPolicy::Required);
        assert_eq!(again, vec![lines[1].clone()]);
        // A secure answer to a plain offer is refused too.
        let mut plain = LegKeys::default();
        plain.offer(SrtpPolicy::Optional);
        assert_eq!(plain.on_answer(&sec("RTP/SAVP", &[theirs])), Err(Refusal::BadAnswer));
    }
}
