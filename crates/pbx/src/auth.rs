//! Digest authentication of requests against a tenant's users.
//!
//! Nonces are stateless to issue: `time ‖ random ‖ MAC(time ‖ random ‖ realm)`, so a nonce
//! from one tenant is refused by another, and an old one is recognised as stale
//! (`stale=true`, RFC 7616 §3.3) without remembering it. What is remembered, once a nonce
//! has been used, is the highest nonce count seen: a replayed count is refused
//! (RFC 7616 §3.4). That table is bounded.
//!
//! An unknown user and a wrong password get the same answer, computed the same way.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use sip::auth::{Algorithm, Challenge, Credentials, CredentialsError, constant_time_eq};
use sip::{HeaderName, Request};

use crate::directory::{Tenant, User};

/// Authentication settings.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// Algorithms offered, one challenge each, in order of preference.
    pub algorithms: Vec<Algorithm>,
    /// How long a nonce stays fresh.
    pub nonce_lifetime: Duration,
    /// Most nonces whose counts are remembered at once.
    pub max_tracked_nonces: usize,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            // MD5 only by default: RFC 8760 asks clients to skip algorithms they do not know,
            // but some do not (baresip 1.0 / libre fails the whole registration with "not
            // implemented" when a SHA-256 challenge is in the list). SHA-256 is a setting.
            algorithms: vec![Algorithm::Md5],
            nonce_lifetime: Duration::from_secs(300),
            max_tracked_nonces: 200_000,
        }
    }
}

/// Proof that a request was authenticated as `user` of `tenant`. Only
/// [`Authenticator::verify`] builds one, so routing that takes it cannot be reached
/// unauthenticated.
#[derive(Clone, Debug)]
pub struct Authenticated {
    tenant: Arc<Tenant>,
    user: Arc<User>,
}

impl Authenticated {
    /// The tenant.
    pub fn tenant(&self) -> &Arc<Tenant> {
        &self.tenant
    }

    /// The user.
    pub fn user(&self) -> &Arc<User> {
        &self.user
    }

    /// For tests of code that needs a principal, in this crate only.
    #[cfg(test)]
    pub(crate) fn for_tests(tenant: Arc<Tenant>, user: Arc<User>) -> Authenticated {
        Authenticated { tenant, user }
    }
}

/// What [`Authenticator::verify`] concluded.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Authenticated.
    Ok(Authenticated),
    /// Challenge (again). `stale` when the credentials were right but the nonce expired.
    Challenge {
        /// Set `stale=true` in the challenge.
        stale: bool,
    },
}

struct NonceUse {
    highest_nc: u32,
    issued_at: u64,
}

/// Issues challenges and verifies credentials.
pub struct Authenticator {
    cfg: AuthConfig,
    used: Vec<Mutex<crate::FastMap<String, NonceUse>>>,
    /// HMAC keyed once; cloned per nonce (keying costs two hash blocks).
    keyed: HmacSha256,
}

const SHARDS: usize = 16;

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

type HmacSha256 = Hmac<Sha256>;

impl Authenticator {
    /// An authenticator with a secret key (from the OS generator; never stored).
    pub fn new(cfg: AuthConfig, key: [u8; 32]) -> Authenticator {
        let keyed = <HmacSha256 as KeyInit>::new_from_slice(&key).expect("HMAC takes any key length");
        Authenticator { cfg, keyed, used: (0..SHARDS).map(|_| Mutex::new(crate::FastMap::default())).collect() }
    }

    fn mac(&self, time: u64, random: u64, realm: &str) -> String {
        let mut m = self.keyed.clone();
        m.update(&time.to_be_bytes());
        m.update(&random.to_be_bytes());
        m.update(realm.as_bytes());
        sip::text::hex(&m.finalize().into_bytes()[..16])
    }

    /// A fresh nonce for `realm`.
    pub fn nonce(&self, realm: &str, now_unix_secs: u64, random: u64) -> String {
        format!("{now_unix_secs:010x}{random:016x}{}", self.mac(now_unix_secs, random, realm))
    }

    /// Checks a nonce's MAC; returns its issue time.
    fn nonce_time(&self, nonce: &str, realm: &str) -> Option<u64> {
        if nonce.len() != 10 + 16 + 32 || !nonce.is_ascii() {
            return None;
        }
        let time = u64::from_str_radix(&nonce[..10], 16).ok()?;
        let random = u64::from_str_radix(&nonce[10..26], 16).ok()?;
        constant_time_eq(self.mac(time, random, realm).as_bytes(), &nonce.as_bytes()[26..]).then_some(time)
    }

    /// The challenges to send (one per configured algorithm, same nonce).
    pub fn challenges(&self, realm: &str, stale: bool, now_unix_secs: u64, random: u64) -> Vec<Challenge> {
        let nonce = self.nonce(realm, now_unix_secs, random);
        self.cfg
            .algorithms
            .iter()
            .map(|&algorithm| Challenge {
                realm: realm.to_owned(),
                nonce: nonce.clone(),
                algorithm,
                opaque: None,
                stale,
            })
            .collect()
    }

    /// Verifies the credentials of `req` in `header` (Authorization for REGISTER,
    /// Proxy-Authorization for other requests) against `tenant`.
    pub fn verify(&self, req: &Request, header: &HeaderName, tenant: &Arc<Tenant>, now_unix_secs: u64) -> Verdict {
        // Several credentials may be present (other realms); use the one for this tenant.
        let creds = req
            .headers
            .get_all(header)
            .map(|v| Credentials::parse(v))
            .find(|c| matches!(c, Ok(c) if c.realm.eq_ignore_ascii_case(&tenant.domain)));
        let creds = match creds {
            Some(Ok(c)) => c,
            Some(Err(CredentialsError::UnsupportedScheme)) | Some(Err(_)) | None => {
                return Verdict::Challenge { stale: false };
            }
        };
        if !self.cfg.algorithms.contains(&creds.algorithm) {
            return Verdict::Challenge { stale: false };
        }
        let Some(issued) = self.nonce_time(&creds.nonce, &tenant.domain) else {
            return Verdict::Challenge { stale: false };
        };
        let user = tenant.user(&creds.username);
        // Unknown users are checked against a hash that matches nothing, so both cases
        // take the same path and time.
        let ha1 = match (user, creds.algorithm) {
            (Some(u), Algorithm::Md5) => u.ha1_md5.as_str(),
            (Some(u), Algorithm::Sha256) => u.ha1_sha256.as_str(),
            (None, Algorithm::Md5) => "00000000000000000000000000000000",
            (None, Algorithm::Sha256) => "0000000000000000000000000000000000000000000000000000000000000000",
        };
        let response_ok = creds.verify(req.method.as_str(), ha1);
        let (Some(user), true) = (user, response_ok) else {
            return Verdict::Challenge { stale: false };
        };
        if now_unix_secs.saturating_sub(issued) > self.cfg.nonce_lifetime.as_secs() {
            return Verdict::Challenge { stale: true };
        }
        if !self.record_use(&creds, issued, now_unix_secs) {
            // A replayed or out-of-order count: ask again, without blaming the password.
            return Verdict::Challenge { stale: true };
        }
        Verdict::Ok(Authenticated { tenant: tenant.clone(), user: user.clone() })
    }

    /// Records a nonce count; false if it was not higher than every count seen for the
    /// nonce. A nonce used without qop (no count) is good once.
    fn record_use(&self, creds: &Credentials, issued: u64, now: u64) -> bool {
        let nc = if creds.qop_auth { creds.nc.unwrap_or(0) } else { u32::MAX };
        let shard = &self.used[shard_of(&creds.nonce)];
        let Ok(mut map) = shard.lock() else { return false };
        if let Some(u) = map.get_mut(&creds.nonce) {
            if nc <= u.highest_nc || u.highest_nc == u32::MAX {
                return false;
            }
            u.highest_nc = nc;
            return true;
        }
        let cap = self.cfg.max_tracked_nonces / SHARDS + 1;
        if map.len() >= cap {
            let lifetime = self.cfg.nonce_lifetime.as_secs();
            map.retain(|_, u| now.saturating_sub(u.issued_at) <= lifetime);
            if map.len() >= cap {
                return false;
            }
        }
        map.insert(creds.nonce.clone(), NonceUse { highest_nc: nc, issued_at: issued });
        true
    }

    /// Forgets counts of nonces past their lifetime (call now and then).
    pub fn purge(&self, now_unix_secs: u64) {
        let lifetime = self.cfg.nonce_lifetime.as_secs();
        for shard in &self.used {
            if let Ok(mut map) = shard.lock() {
                map.retain(|_, u| now_unix_secs.saturating_sub(u.issued_at) <= lifetime);
            }
        }
    }
}

fn shard_of(s: &str) -> usize {
    s.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize)) % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip::auth::{parse_challenge, respond};
    use sip::{Method, Uri};

    fn tenant() -> Arc<Tenant> {
        let realm = "acme.test";
        let user = User {
            id: 1,
            tenant_id: 1,
            extension: "1001".into(),
            display_name: "Alice".into(),
            ha1_md5: Algorithm::Md5.ha1("1001", realm, "secret"),
            ha1_sha256: Algorithm::Sha256.ha1("1001", realm, "secret"),
            srtp: Default::default(),
            dtmf: Default::default(),
        };
        Arc::new(Tenant::new(1, "acme", realm, vec![user]))
    }

    fn register_with(auth: &str) -> Request {
        let mut r = Request::new(Method::Register, Uri::parse("sip:acme.test").unwrap());
        r.headers.push(HeaderName::Authorization, auth.to_owned());
        r
    }

    fn authn() -> Authenticator {
        Authenticator::new(
            AuthConfig { algorithms: vec![Algorithm::Md5, Algorithm::Sha256], ..AuthConfig::default() },
            [7; 32],
        )
    }

    fn answer(a: &Authenticator, alg: Algorithm, user: &str, pw: &str, nc: u32, now: u64) -> Request {
        let random = 42 + u64::from(nc) * 1000 + alg as u64;
        let ch = a.challenges("acme.test", false, now, random).into_iter().find(|c| c.algorithm == alg).unwrap();
        let ch = parse_challenge(&ch.to_string()).unwrap();
        register_with(&respond(&ch, "REGISTER", "sip:acme.test", user, pw, "cn", nc))
    }

    #[test]
    fn challenged_right_password_is_ok_for_both_algorithms() {
        let a = authn();
        let t = tenant();
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let req = answer(&a, alg, "1001", "secret", 1, 1000);
            match a.verify(&req, &HeaderName::Authorization, &t, 1001) {
                Verdict::Ok(p) => assert_eq!(p.user().extension, "1001"),
                v => panic!("{alg}: {v:?}"),
            }
        }
    }

    #[test]
    fn wrong_password_and_unknown_user_get_the_same_verdict() {
        let a = authn();
        let t = tenant();
        let wrong =
            a.verify(&answer(&a, Algorithm::Md5, "1001", "nope", 1, 1000), &HeaderName::Authorization, &t, 1000);
        let unknown =
            a.verify(&answer(&a, Algorithm::Md5, "9999", "nope", 1, 1000), &HeaderName::Authorization, &t, 1000);
        assert!(matches!(wrong, Verdict::Challenge { stale: false }));
        assert!(matches!(unknown, Verdict::Challenge { stale: false }));
    }

    #[test]
    fn expired_nonce_with_right_password_is_stale() {
        let a = authn();
        let req = answer(&a, Algorithm::Md5, "1001", "secret", 1, 1000);
        assert!(matches!(
            a.verify(&req, &HeaderName::Authorization, &tenant(), 1000 + 301),
            Verdict::Challenge { stale: true }
        ));
    }

    #[test]
    fn replayed_nonce_count_is_refused() {
        let a = authn();
        let t = tenant();
        let first = answer(&a, Algorithm::Md5, "1001", "secret", 1, 1000);
        assert!(matches!(a.verify(&first, &HeaderName::Authorization, &t, 1000), Verdict::Ok(_)));
        assert!(matches!(a.verify(&first, &HeaderName::Authorization, &t, 1001), Verdict::Challenge { stale: true }));
        // The same nonce with the next count is fine.
        let ch = a
            .challenges("acme.test", false, 1000, 42 + 1000)
            .into_iter()
            .find(|c| c.algorithm == Algorithm::Md5)
            .unwrap();
        let second = register_with(&respond(&ch, "REGISTER", "sip:acme.test", "1001", "secret", "cn", 2));
        assert!(matches!(a.verify(&second, &HeaderName::Authorization, &t, 1002), Verdict::Ok(_)));
    }

    #[test]
    fn nonce_of_another_realm_or_forged_is_refused() {
        let a = authn();
        let other =
            Authenticator::new(AuthConfig { algorithms: vec![Algorithm::Md5], ..AuthConfig::default() }, [8; 32]);
        let forged = answer(&other, Algorithm::Md5, "1001", "secret", 1, 1000);
        assert!(matches!(
            a.verify(&forged, &HeaderName::Authorization, &tenant(), 1000),
            Verdict::Challenge { stale: false }
        ));
        let no_creds = register_with("NoOneKnowsThisScheme opaque-data=here");
        assert!(matches!(
            a.verify(&no_creds, &HeaderName::Authorization, &tenant(), 1000),
            Verdict::Challenge { stale: false }
        ));
    }
}
