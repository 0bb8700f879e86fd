//! SIP, SIPS and other URIs (RFC 3261 §19.1, RFC 5118 for IPv6 references).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytestring::ByteString;

use crate::text::{is_token_char, is_wsp, unescape};

/// Why a URI or parameter list did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriError {
    /// No `scheme:` prefix, or a scheme with characters outside the grammar.
    Scheme,
    /// Bad characters in the user or password part.
    UserInfo,
    /// Bad host (including an IPv6 address without `[ ]`, RFC 5118 §4.2).
    Host,
    /// Port not a number in 0..=65535.
    Port,
    /// Empty or malformed `;name=value` parameter.
    Param,
    /// Bad `?name=value` headers part, or headers where they are not allowed.
    Headers,
    /// Whitespace or other characters that cannot appear in a URI.
    Character,
}

/// A host: a domain name or an IP address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, as written (compare with [`Host::eq_ignore_case`]).
    Domain(ByteString),
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address (written in `[ ]`).
    V6(Ipv6Addr),
    /// An IPv6 reference that RFC 3261's ABNF allows but RFC 4291 does not (such as
    /// `[2001:db8:::192.0.2.1]`); RFC 5118 §4.10 asks parsers to tolerate it. Kept as written,
    /// brackets included; it never matches an address.
    V6Tolerated(ByteString),
}

impl Host {
    /// Parses a host (`hostname`, `IPv4address` or `[IPv6address]`).
    pub fn parse(s: &str) -> Result<Host, UriError> {
        let src = ByteString::from(s);
        Host::parse_in(&src, &src)
    }

    /// Parses a host; `s` must be a slice of `src` (a domain name shares its buffer).
    pub fn parse_in(src: &ByteString, s: &str) -> Result<Host, UriError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(UriError::Host)?;
            if let Ok(a) = inner.parse::<Ipv6Addr>() {
                return Ok(Host::V6(a));
            }
            if !inner.is_empty()
                && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
                && inner.contains(':')
            {
                return Ok(Host::V6Tolerated(src.slice_ref(s)));
            }
            return Err(UriError::Host);
        }
        if s.is_empty() || s.len() > 255 {
            return Err(UriError::Host);
        }
        if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return s.parse::<Ipv4Addr>().map(Host::V4).map_err(|_| UriError::Host);
        }
        // Hostnames: alphanumerics, '-' and '.'; '_' tolerated as many deployments use it.
        if s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') && !s.starts_with('.') {
            return Ok(Host::Domain(src.slice_ref(s)));
        }
        Err(UriError::Host)
    }

    /// The IP address when the host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::V4(a) => Some(IpAddr::V4(*a)),
            Host::V6(a) => Some(IpAddr::V6(*a)),
            _ => None,
        }
    }

    /// Case-insensitive comparison (domain names), exact for addresses.
    pub fn eq_ignore_case(&self, other: &Host) -> bool {
        match (self, other) {
            (Host::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
            _ => self == other,
        }
    }

    /// The host as text without IPv6 brackets (for lookups such as tenant domains).
    pub fn to_lowercase_string(&self) -> String {
        match self {
            Host::Domain(d) => d.to_ascii_lowercase(),
            Host::V4(a) => a.to_string(),
            Host::V6(a) => a.to_string(),
            Host::V6Tolerated(s) => s.to_ascii_lowercase(),
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Host {
        match ip {
            IpAddr::V4(a) => Host::V4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Host::V4(v4),
                None => Host::V6(a),
            },
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
            Host::V6Tolerated(s) => f.write_str(s),
        }
    }
}

/// One `;name` or `;name=value` parameter. Values keep their quotes when quoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Parameter name.
    pub name: ByteString,
    /// Parameter value, if any.
    pub value: Option<ByteString>,
}

/// An ordered list of parameters with case-insensitive lookup by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(pub Vec<Param>);

impl Params {
    /// The parameter of this name: `Some(None)` for a name without value.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0.iter().find(|p| p.name.eq_ignore_ascii_case(name)).map(|p| p.value.as_deref())
    }

    /// The value of the parameter, when present with a value.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    /// True when the parameter is present (with or without value).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets (replaces) a parameter.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(ByteString::from);
        match self.0.iter_mut().find(|p| p.name.eq_ignore_ascii_case(name)) {
            Some(p) => p.value = value,
            None => self.0.push(Param { name: ByteString::from(name), value }),
        }
    }

    /// Removes a parameter.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|p| !p.name.eq_ignore_ascii_case(name));
    }

    /// True when there is no parameter.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses URI parameters (`;a=b;c`), no whitespace allowed, up to the end of `s`.
    pub(crate) fn parse_uri_params(src: &ByteString, s: &str) -> Result<Params, UriError> {
        let mut out = Vec::new();
        if s.is_empty() {
            return Ok(Params(out));
        }
        let body = s.strip_prefix(';').ok_or(UriError::Param)?;
        for part in body.split(';') {
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (part, None),
            };
            if name.is_empty() || !name.bytes().all(is_param_char) {
                return Err(UriError::Param);
            }
            if let Some(v) = value
                && (v.is_empty() || !v.bytes().all(is_param_char))
            {
                return Err(UriError::Param);
            }
            out.push(Param { name: src.slice_ref(name), value: value.map(|v| src.slice_ref(v)) });
        }
        Ok(Params(out))
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            match &p.value {
                Some(v) => write!(f, ";{}={}", p.name, v)?,
                None => write!(f, ";{}", p.name)?,
            }
        }
        Ok(())
    }
}

/// `paramchar` of RFC 3261 (unreserved, escaped, and `[]/:&+$`).
fn is_param_char(b: u8) -> bool {
    is_unreserved(b) || b == b'%' || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')')
}

fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || b == b'%' || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || b == b'%' || matches!(b, b'&' | b'=' | b'+' | b'$' | b',')
}

fn is_header_char(b: u8) -> bool {
    is_unreserved(b) || b == b'%' || matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'=' | b'&')
}

/// A `sip:` or `sips:` URI. Text parts are kept as written (escaped), so a parsed URI is
/// emitted unchanged; [`SipUri::user_unescaped`] gives the decoded user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The user part, escaped as on the wire.
    pub user: Option<ByteString>,
    /// The password part (deprecated but legal).
    pub password: Option<ByteString>,
    /// The host.
    pub host: Host,
    /// The port, when written.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`).
    pub params: Params,
    /// The `?name=value&...` headers part, without the `?`.
    pub headers: Option<ByteString>,
}

impl SipUri {
    /// A `sip:user@host` URI with no port or parameters.
    pub fn new(user: Option<&str>, host: Host) -> SipUri {
        SipUri {
            secure: false,
            user: user.map(ByteString::from),
            password: None,
            host,
            port: None,
            params: Params::default(),
            headers: None,
        }
    }

    /// The user part with `%HH` escapes decoded (may contain any byte, even NUL).
    pub fn user_unescaped(&self) -> Option<Vec<u8>> {
        self.user.as_ref().map(|u| unescape(u))
    }

    /// The `transport` URI parameter, lower-cased.
    pub fn transport_param(&self) -> Option<String> {
        self.params.value("transport").map(|t| t.to_ascii_lowercase())
    }

    fn parse_after_scheme(src: &ByteString, secure: bool, rest: &str) -> Result<SipUri, UriError> {
        if rest.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'<' || b == b'>' || b == b'"') {
            return Err(UriError::Character);
        }
        let (userinfo, hostpart) = match rest.find('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (u, p) = match ui.find(':') {
                    Some(i) => (&ui[..i], Some(&ui[i + 1..])),
                    None => (ui, None),
                };
                if u.is_empty() || !u.bytes().all(is_user_char) {
                    return Err(UriError::UserInfo);
                }
                if let Some(p) = p
                    && !p.bytes().all(is_password_char)
                {
                    return Err(UriError::UserInfo);
                }
                (Some(src.slice_ref(u)), p.map(|p| src.slice_ref(p)))
            }
        };
        // Split off headers, then parameters; the host may be a bracketed IPv6 reference.
        let (hostpart, headers) = match hostpart.find('?') {
            Some(i) => (&hostpart[..i], Some(&hostpart[i + 1..])),
            None => (hostpart, None),
        };
        if let Some(h) = headers
            && (h.is_empty() || !h.bytes().all(is_header_char))
        {
            return Err(UriError::Headers);
        }
        let host_end = if hostpart.starts_with('[') {
            hostpart.find(']').map(|i| i + 1).ok_or(UriError::Host)?
        } else {
            hostpart.find([':', ';']).unwrap_or(hostpart.len())
        };
        let host = Host::parse_in(src, &hostpart[..host_end])?;
        let mut after = &hostpart[host_end..];
        let mut port = None;
        if let Some(p) = after.strip_prefix(':') {
            let end = p.find(';').unwrap_or(p.len());
            let digits = &p[..end];
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(UriError::Port);
            }
            port = Some(digits.parse::<u16>().map_err(|_| UriError::Port)?);
            after = &p[end..];
        }
        let params = Params::parse_uri_params(src, after)?;
        Ok(SipUri { secure, user, password, host, port, params, headers: headers.map(|h| src.slice_ref(h)) })
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)?;
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

/// Any URI: SIP/SIPS parsed into parts, other schemes (tel:, http:, urn:...) kept opaque.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// Another scheme: its name and the text after the colon.
    Other {
        /// The scheme, as written.
        scheme: ByteString,
        /// Everything after `scheme:`.
        opaque: ByteString,
    },
}

impl Uri {
    /// Parses a URI from a slice of `src` (values share its buffer).
    pub fn parse_in(src: &ByteString, s: &str) -> Result<Uri, UriError> {
        let colon = s.find(':').ok_or(UriError::Scheme)?;
        let scheme = &s[..colon];
        let rest = &s[colon + 1..];
        let first = scheme.bytes().next().ok_or(UriError::Scheme)?;
        if !first.is_ascii_alphabetic()
            || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err(UriError::Scheme);
        }
        if scheme.eq_ignore_ascii_case("sip") {
            return SipUri::parse_after_scheme(src, false, rest).map(Uri::Sip);
        }
        if scheme.eq_ignore_ascii_case("sips") {
            return SipUri::parse_after_scheme(src, true, rest).map(Uri::Sip);
        }
        if rest.is_empty() || rest.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'<' || b == b'>' || b == b'"') {
            return Err(UriError::Character);
        }
        Ok(Uri::Other { scheme: src.slice_ref(scheme), opaque: src.slice_ref(rest) })
    }

    /// Parses a URI from a standalone string.
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        let src = ByteString::from(s);
        Uri::parse_in(&src, &src)
    }

    /// The SIP URI, when this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other { .. } => None,
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => write!(f, "{u}"),
            Uri::Other { scheme, opaque } => write!(f, "{scheme}:{opaque}"),
        }
    }
}

impl From<SipUri> for Uri {
    fn from(u: SipUri) -> Uri {
        Uri::Sip(u)
    }
}

/// Parses generic header parameters `*( SEMI generic-param )` where LWS may surround `;` and
/// `=` (RFC 3261 §25.1 SEMI and EQUAL). Values are tokens, hosts (IPv6 with or without `[ ]`,
/// RFC 5118 §4.5) or quoted strings. Empty parameters (`;;`) are an error (RFC 4475 §3.1.2.1).
pub(crate) fn parse_header_params(src: &ByteString, s: &str) -> Result<Params, UriError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && is_wsp(b[*i]) {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i == b.len() {
            return Ok(Params(out));
        }
        if b[i] != b';' {
            return Err(UriError::Param);
        }
        i += 1;
        skip_ws(&mut i);
        let start = i;
        while i < b.len() && is_token_char(b[i]) {
            i += 1;
        }
        if i == start {
            return Err(UriError::Param);
        }
        let name = src.slice_ref(&s[start..i]);
        skip_ws(&mut i);
        let mut value = None;
        if i < b.len() && b[i] == b'=' {
            i += 1;
            skip_ws(&mut i);
            let vstart = i;
            if i < b.len() && b[i] == b'"' {
                let n = crate::text::quoted_len(&s[i..]).ok_or(UriError::Param)?;
                i += n;
            } else {
                while i < b.len() && (is_token_char(b[i]) || matches!(b[i], b':' | b'[' | b']')) {
                    i += 1;
                }
            }
            if i == vstart {
                return Err(UriError::Param);
            }
            value = Some(src.slice_ref(&s[vstart..i]));
        }
        out.push(Param { name, value });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri {
        match Uri::parse(s).unwrap() {
            Uri::Sip(u) => u,
            other => panic!("not sip: {other:?}"),
        }
    }

    #[test]
    fn parses_user_password_host_port_params_headers() {
        let u = sip("sip:alice:pw@example.com:5070;transport=tcp;lr?Subject=x");
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.host, Host::Domain("example.com".into()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport_param().as_deref(), Some("tcp"));
        assert!(u.params.has("lr"));
        assert_eq!(u.headers.as_deref(), Some("Subject=x"));
        assert_eq!(u.to_string(), "sip:alice:pw@example.com:5070;transport=tcp;lr?Subject=x");
    }

    #[test]
    fn user_part_may_hold_semicolons() {
        // RFC 4475 §3.1.1.9
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user_unescaped().unwrap(), b"user;par=u@example.net");
        assert_eq!(u.host, Host::Domain("example.com".into()));
    }

    #[test]
    fn ipv6_references() {
        // RFC 5118 §4.3: the port is inside the brackets, so there is no port.
        let u = sip("sip:user@[2001:db8::10:5070]");
        assert_eq!(u.host, Host::V6("2001:db8::10:5070".parse().unwrap()));
        assert_eq!(u.port, None);
        // RFC 5118 §4.4
        let u = sip("sip:user@[2001:db8::10]:5070");
        assert_eq!(u.port, Some(5070));
        // RFC 5118 §4.2: brackets are mandatory.
        assert!(Uri::parse("sip:2001:db8::10").is_err());
        // RFC 5118 §4.10: tolerate the three-colon form.
        let u = sip("sip:user@[2001:db8:::192.0.2.1]");
        assert!(matches!(u.host, Host::V6Tolerated(_)));
        assert_eq!(u.to_string(), "sip:user@[2001:db8:::192.0.2.1]");
    }

    #[test]
    fn other_schemes_are_opaque() {
        let u = Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent").unwrap();
        assert!(matches!(u, Uri::Other { .. }));
        assert_eq!(u.to_string(), "nobodyKnowsThisScheme:totallyopaquecontent");
        assert!(Uri::parse("soap.beep://192.0.2.103:3002").is_ok());
    }

    #[test]
    fn rejects_spaces_and_brackets() {
        assert_eq!(Uri::parse("<sip:user@example.com>"), Err(UriError::Scheme));
        assert_eq!(Uri::parse("sip:user@example.com; lr"), Err(UriError::Character));
        assert_eq!(Uri::parse("sip:user@exa mple.com"), Err(UriError::Character));
        assert_eq!(Uri::parse("sip:user@example.com;;lr"), Err(UriError::Param));
    }

    #[test]
    fn header_params_allow_lws_and_quoted_values() {
        let src = ByteString::from(" ;   tag    = 1918181833n ; q = 0.33;x=\"a;b\";received=[2001:db8::9:255]");
        let p = parse_header_params(&src, &src).unwrap();
        assert_eq!(p.value("tag"), Some("1918181833n"));
        assert_eq!(p.value("q"), Some("0.33"));
        assert_eq!(p.value("x"), Some("\"a;b\""));
        assert_eq!(p.value("received"), Some("[2001:db8::9:255]"));
        let bad = ByteString::from(";;,;,,");
        assert!(parse_header_params(&bad, &bad).is_err());
    }
}
