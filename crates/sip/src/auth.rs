//! HTTP digest authentication as SIP uses it (RFC 3261 §22, RFC 7616, RFC 8760):
//! challenges, credentials, and the response computation for MD5 and SHA-256 with
//! `qop=auth`.
//!
//! Secrets are handled as HA1 values (`H(username:realm:password)`), which is what the
//! store keeps: the clear password never needs to exist on the server side.

use std::fmt;

use md5::{Digest as _, Md5};
use sha2::Sha256;

use crate::text::{hex, is_token_char, is_wsp, unquote};

/// A digest algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 2617), still what most phones use.
    Md5,
    /// SHA-256 (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// Parses an `algorithm=` token (case-insensitive). Session variants are not supported.
    pub fn from_token(s: &str) -> Option<Algorithm> {
        if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// The token used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Lower-case hex digest of the concatenation of `parts`.
    pub fn hash_hex(self, parts: &[&[u8]]) -> String {
        match self {
            Algorithm::Md5 => {
                let mut h = Md5::new();
                for p in parts {
                    h.update(p);
                }
                hex(&h.finalize())
            }
            Algorithm::Sha256 => {
                let mut h = Sha256::new();
                for p in parts {
                    h.update(p);
                }
                hex(&h.finalize())
            }
        }
    }

    /// `HA1 = H(username ":" realm ":" password)`.
    pub fn ha1(self, username: &str, realm: &str, password: &str) -> String {
        self.hash_hex(&[username.as_bytes(), b":", realm.as_bytes(), b":", password.as_bytes()])
    }

    /// Length of a hex digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `WWW-Authenticate` / `Proxy-Authenticate` digest challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Protection space, the tenant's domain for Switchboard.
    pub realm: String,
    /// Server nonce.
    pub nonce: String,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Opaque value the client must echo, if any.
    pub opaque: Option<String>,
    /// The previous nonce was valid but expired: retry without asking the user again.
    pub stale: bool,
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digest realm=\"{}\", nonce=\"{}\", algorithm={}, qop=\"auth\"",
            self.realm, self.nonce, self.algorithm
        )?;
        if let Some(o) = &self.opaque {
            write!(f, ", opaque=\"{o}\"")?;
        }
        if self.stale {
            f.write_str(", stale=true")?;
        }
        Ok(())
    }
}

/// Why an Authorization header could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialsError {
    /// Not the `Digest` scheme (RFC 4475 §3.3.7): answer with a digest challenge.
    UnsupportedScheme,
    /// Malformed parameter list.
    Malformed,
    /// A required parameter is missing.
    Missing(&'static str),
    /// An algorithm we do not offer.
    UnsupportedAlgorithm,
    /// A qop other than `auth`.
    UnsupportedQop,
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialsError::UnsupportedScheme => f.write_str("unsupported authorization scheme"),
            CredentialsError::Malformed => f.write_str("malformed credentials"),
            CredentialsError::Missing(p) => write!(f, "credentials lack {p}"),
            CredentialsError::UnsupportedAlgorithm => f.write_str("unsupported digest algorithm"),
            CredentialsError::UnsupportedQop => f.write_str("unsupported qop"),
        }
    }
}

impl std::error::Error for CredentialsError {}

/// Digest credentials from an `Authorization` or `Proxy-Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// User name (the extension for Switchboard).
    pub username: String,
    /// Realm the client answers for.
    pub realm: String,
    /// The nonce being answered.
    pub nonce: String,
    /// The digest-uri the response covers.
    pub uri: String,
    /// The client's response digest (hex).
    pub response: String,
    /// Algorithm (MD5 when absent).
    pub algorithm: Algorithm,
    /// Client nonce (required with qop).
    pub cnonce: Option<String>,
    /// Nonce count as a number (required with qop).
    pub nc: Option<u32>,
    /// The nonce count as written (the hash covers the text).
    pub nc_text: Option<String>,
    /// True when `qop=auth` was used; false for RFC 2069 style responses.
    pub qop_auth: bool,
    /// Opaque value echoed.
    pub opaque: Option<String>,
}

impl Credentials {
    /// Parses a header value such as `Digest username="1001", realm="acme.test", ...`.
    pub fn parse(value: &str) -> Result<Credentials, CredentialsError> {
        let value = value.trim_start_matches([' ', '\t']);
        let (scheme, rest) = match value.find([' ', '\t']) {
            Some(i) => (&value[..i], &value[i..]),
            None => (value, ""),
        };
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(CredentialsError::UnsupportedScheme);
        }
        let mut username = None;
        let mut realm = None;
        let mut nonce = None;
        let mut uri = None;
        let mut response = None;
        let mut algorithm = None;
        let mut cnonce = None;
        let mut nc_text: Option<String> = None;
        let mut qop = None;
        let mut opaque = None;
        for (name, val) in parse_auth_params(rest).ok_or(CredentialsError::Malformed)? {
            let slot = match name.to_ascii_lowercase().as_str() {
                "username" => &mut username,
                "realm" => &mut realm,
                "nonce" => &mut nonce,
                "uri" => &mut uri,
                "response" => &mut response,
                "algorithm" => &mut algorithm,
                "cnonce" => &mut cnonce,
                "nc" => &mut nc_text,
                "qop" => &mut qop,
                "opaque" => &mut opaque,
                _ => continue,
            };
            *slot = Some(val);
        }
        let algorithm = match algorithm {
            None => Algorithm::Md5,
            Some(a) => Algorithm::from_token(&a).ok_or(CredentialsError::UnsupportedAlgorithm)?,
        };
        let qop_auth = match qop.as_deref() {
            None => false,
            Some(q) if q.eq_ignore_ascii_case("auth") => true,
            Some(_) => return Err(CredentialsError::UnsupportedQop),
        };
        let nc = match &nc_text {
            Some(t) if t.len() == 8 => Some(u32::from_str_radix(t, 16).map_err(|_| CredentialsError::Malformed)?),
            Some(_) => return Err(CredentialsError::Malformed),
            None => None,
        };
        if qop_auth {
            if cnonce.is_none() {
                return Err(CredentialsError::Missing("cnonce"));
            }
            if nc.is_none() {
                return Err(CredentialsError::Missing("nc"));
            }
        }
        Ok(Credentials {
            username: username.ok_or(CredentialsError::Missing("username"))?,
            realm: realm.ok_or(CredentialsError::Missing("realm"))?,
            nonce: nonce.ok_or(CredentialsError::Missing("nonce"))?,
            uri: uri.ok_or(CredentialsError::Missing("uri"))?,
            response: response.ok_or(CredentialsError::Missing("response"))?,
            algorithm,
            cnonce,
            nc,
            nc_text,
            qop_auth,
            opaque,
        })
    }

    /// The response the client should have sent for this `method`, given the user's HA1.
    pub fn expected_response(&self, method: &str, ha1: &str) -> String {
        let a = self.algorithm;
        let ha2 = a.hash_hex(&[method.as_bytes(), b":", self.uri.as_bytes()]);
        match (self.qop_auth, &self.nc_text, &self.cnonce) {
            (true, Some(nc), Some(cnonce)) => a.hash_hex(&[
                ha1.as_bytes(),
                b":",
                self.nonce.as_bytes(),
                b":",
                nc.as_bytes(),
                b":",
                cnonce.as_bytes(),
                b":auth:",
                ha2.as_bytes(),
            ]),
            _ => a.hash_hex(&[ha1.as_bytes(), b":", self.nonce.as_bytes(), b":", ha2.as_bytes()]),
        }
    }

    /// Checks the response in constant time (the comparison does not leak how many leading
    /// characters matched).
    pub fn verify(&self, method: &str, ha1: &str) -> bool {
        let expected = self.expected_response(method, ha1);
        constant_time_eq(expected.as_bytes(), self.response.to_ascii_lowercase().as_bytes())
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses `name=value` pairs separated by commas, values quoted or tokens.
fn parse_auth_params(s: &str) -> Option<Vec<(String, String)>> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let ws = |i: &mut usize| {
        while *i < b.len() && is_wsp(b[*i]) {
            *i += 1;
        }
    };
    loop {
        ws(&mut i);
        while i < b.len() && b[i] == b',' {
            i += 1;
            ws(&mut i);
        }
        if i == b.len() {
            return Some(out);
        }
        let start = i;
        while i < b.len() && is_token_char(b[i]) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let name = s[start..i].to_owned();
        ws(&mut i);
        if b.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        ws(&mut i);
        let value = if b.get(i) == Some(&b'"') {
            let n = crate::text::quoted_len(&s[i..])?;
            let v = unquote(&s[i..i + n]);
            i += n;
            v
        } else {
            let vs = i;
            while i < b.len() && (is_token_char(b[i]) || b[i] == b'/' || b[i] == b':') {
                i += 1;
            }
            if i == vs {
                return None;
            }
            s[vs..i].to_owned()
        };
        out.push((name, value));
        ws(&mut i);
        match b.get(i) {
            None => return Some(out),
            Some(b',') => i += 1,
            Some(_) => return None,
        }
    }
}

/// Builds credentials for a challenge (the client side: used by tests and, later, by trunk
/// registration).
pub fn respond(
    challenge: &Challenge,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let ha1 = challenge.algorithm.ha1(username, &challenge.realm, password);
    let creds = Credentials {
        username: username.to_owned(),
        realm: challenge.realm.clone(),
        nonce: challenge.nonce.clone(),
        uri: uri.to_owned(),
        response: String::new(),
        algorithm: challenge.algorithm,
        cnonce: Some(cnonce.to_owned()),
        nc: Some(nc),
        nc_text: Some(format!("{nc:08x}")),
        qop_auth: true,
        opaque: challenge.opaque.clone(),
    };
    let response = creds.expected_response(method, &ha1);
    let mut s = format!(
        "Digest username=\"{username}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm={}, cnonce=\"{cnonce}\", qop=auth, nc={nc:08x}",
        challenge.realm, challenge.nonce, challenge.algorithm
    );
    if let Some(o) = &challenge.opaque {
        s.push_str(&format!(", opaque=\"{o}\""));
    }
    s
}

/// Parses a `WWW-Authenticate` / `Proxy-Authenticate` digest challenge (client side).
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim_start_matches([' ', '\t']);
    let (scheme, rest) = value.split_at(value.find([' ', '\t'])?);
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut c =
        Challenge { realm: String::new(), nonce: String::new(), algorithm: Algorithm::Md5, opaque: None, stale: false };
    for (name, val) in parse_auth_params(rest)? {
        match name.to_ascii_lowercase().as_str() {
            "realm" => c.realm = val,
            "nonce" => c.nonce = val,
            "algorithm" => c.algorithm = Algorithm::from_token(&val)?,
            "opaque" => c.opaque = Some(val),
            "stale" => c.stale = val.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_md5_example() {
        // RFC 2617 §3.5 (the HTTP example; the algorithm is the same for SIP).
        let c = Credentials::parse(
            r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        let ha1 = Algorithm::Md5.ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert!(c.verify("GET", &ha1));
        assert!(!c.verify("POST", &ha1));
        assert_eq!(c.nc, Some(1));
    }

    #[test]
    fn rfc7616_sha256_example() {
        // RFC 7616 §3.9.1, SHA-256 response.
        let c = Credentials::parse(
            r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
        )
        .unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let ha1 = Algorithm::Sha256.ha1("Mufasa", "http-auth@example.org", "Circle of Life");
        assert!(c.verify("GET", &ha1));
    }

    #[test]
    fn round_trip_through_respond() {
        for algorithm in [Algorithm::Md5, Algorithm::Sha256] {
            let ch =
                Challenge { realm: "acme.test".into(), nonce: "abc".into(), algorithm, opaque: None, stale: false };
            let header = respond(&ch, "REGISTER", "sip:acme.test", "1001", "s3cret", "xyz", 7);
            let c = Credentials::parse(&header).unwrap();
            assert!(c.verify("REGISTER", &algorithm.ha1("1001", "acme.test", "s3cret")));
            assert!(!c.verify("REGISTER", &algorithm.ha1("1001", "acme.test", "wrong")));
            assert_eq!(parse_challenge(&ch.to_string()).unwrap(), ch);
        }
    }

    #[test]
    fn unknown_scheme_and_malformed() {
        assert_eq!(
            Credentials::parse("NoOneKnowsThisScheme opaque-data=here"),
            Err(CredentialsError::UnsupportedScheme)
        );
        assert_eq!(Credentials::parse("Digest username=\"a"), Err(CredentialsError::Malformed));
        assert_eq!(
            Credentials::parse("Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", qop=auth"),
            Err(CredentialsError::Missing("cnonce"))
        );
        assert_eq!(
            Credentials::parse(
                "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", algorithm=MD5-sess"
            ),
            Err(CredentialsError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn constant_time_eq_basics() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
