//! Typed header values, parsed on demand from the text kept in [`crate::Headers`].
//!
//! Every parser takes the value's [`ByteString`] so the parts it returns share its buffer
//! instead of copying.

use std::fmt;

use bytestring::ByteString;

use crate::method::Method;
use crate::text::{is_token, is_token_char, is_wsp, quoted_len, split_commas, trim_wsp, unquote};
use crate::uri::{Host, Params, Uri, parse_header_params};

/// A header value that does not match its grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidHeader;

impl fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed header value")
    }
}

impl std::error::Error for InvalidHeader {}

impl From<crate::uri::UriError> for InvalidHeader {
    fn from(_: crate::uri::UriError) -> InvalidHeader {
        InvalidHeader
    }
}

/// One Via value (RFC 3261 §20.42).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// Protocol name, normally `SIP`.
    pub protocol: ByteString,
    /// Protocol version, normally `2.0`.
    pub version: ByteString,
    /// Transport token as written (`UDP`, `TCP`, `TLS`, `WS`...).
    pub transport: ByteString,
    /// sent-by host.
    pub host: Host,
    /// sent-by port, when written.
    pub port: Option<u16>,
    /// Parameters (`branch`, `received`, `rport`...).
    pub params: Params,
}

impl Via {
    /// Parses one via-parm; `s` must be a slice of `src`.
    pub fn parse_in(src: &ByteString, s: &str) -> Result<Via, InvalidHeader> {
        let b = s.as_bytes();
        let mut i = 0;
        let ws = |i: &mut usize| {
            while *i < b.len() && is_wsp(b[*i]) {
                *i += 1;
            }
        };
        let token = |i: &mut usize| -> Result<(usize, usize), InvalidHeader> {
            let start = *i;
            while *i < b.len() && is_token_char(b[*i]) {
                *i += 1;
            }
            if *i == start { Err(InvalidHeader) } else { Ok((start, *i)) }
        };
        ws(&mut i);
        let name = token(&mut i)?;
        ws(&mut i);
        if b.get(i) != Some(&b'/') {
            return Err(InvalidHeader);
        }
        i += 1;
        ws(&mut i);
        let version = token(&mut i)?;
        ws(&mut i);
        if b.get(i) != Some(&b'/') {
            return Err(InvalidHeader);
        }
        i += 1;
        ws(&mut i);
        let transport = token(&mut i)?;
        let before = i;
        ws(&mut i);
        if i == before {
            return Err(InvalidHeader);
        }
        // sent-by: host [ COLON port ], then parameters.
        let host_start = i;
        if b.get(i) == Some(&b'[') {
            while i < b.len() && b[i] != b']' {
                i += 1;
            }
            if i == b.len() {
                return Err(InvalidHeader);
            }
            i += 1;
        } else {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'-' | b'.' | b'_')) {
                i += 1;
            }
        }
        let host = Host::parse_in(src, &s[host_start..i])?;
        ws(&mut i);
        let mut port = None;
        if b.get(i) == Some(&b':') {
            i += 1;
            ws(&mut i);
            let ps = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = &s[ps..i];
            if digits.is_empty() || digits.len() > 5 {
                return Err(InvalidHeader);
            }
            port = Some(digits.parse::<u16>().map_err(|_| InvalidHeader)?);
        }
        let params = parse_header_params(src, &s[i..])?;
        Ok(Via {
            protocol: src.slice_ref(&s[name.0..name.1]),
            version: src.slice_ref(&s[version.0..version.1]),
            transport: src.slice_ref(&s[transport.0..transport.1]),
            host,
            port,
            params,
        })
    }

    /// Parses every via-parm of one header value (`Via: a, b`).
    pub fn parse_list(src: &ByteString) -> impl Iterator<Item = Result<Via, InvalidHeader>> + '_ {
        split_commas(src).map(move |part| if part.is_empty() { Err(InvalidHeader) } else { Via::parse_in(src, part) })
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// The `received` parameter, brackets removed.
    pub fn received(&self) -> Option<&str> {
        self.params.value("received").map(|r| r.trim_start_matches('[').trim_end_matches(']'))
    }

    /// The `rport` parameter: `Some(None)` when present without value (a request asking for
    /// it), `Some(Some(p))` once filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params.get("rport").map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// True when the transport token names a reliable (stream) transport.
    pub fn is_reliable_transport(&self) -> bool {
        !self.transport.eq_ignore_ascii_case("UDP")
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{} {}", self.protocol, self.version, self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}

/// A name-addr or addr-spec with header parameters: the value of From, To, Contact,
/// Route, Record-Route, Reply-To... (RFC 3261 §20).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name as written (quoted string or tokens), when present.
    pub display: Option<ByteString>,
    /// The address.
    pub uri: Uri,
    /// Header parameters after the address (`tag`, `expires`, `q`...).
    pub params: Params,
}

impl NameAddr {
    /// An address without display name or parameters.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr { display: None, uri, params: Params::default() }
    }

    /// Parses one value; `s` must be a slice of `src`.
    pub fn parse_in(src: &ByteString, s: &str) -> Result<NameAddr, InvalidHeader> {
        let s = trim_wsp(s);
        if s.is_empty() {
            return Err(InvalidHeader);
        }
        let b = s.as_bytes();
        let (display, uri_start, uri_end, rest) = if b[0] == b'"' {
            let n = quoted_len(s).ok_or(InvalidHeader)?;
            let after = s[n..].trim_start_matches([' ', '\t']);
            let lt = n + (s.len() - n - after.len());
            if !after.starts_with('<') {
                return Err(InvalidHeader);
            }
            let gt = s[lt..].find('>').ok_or(InvalidHeader)? + lt;
            (Some(&s[..n]), lt + 1, gt, gt + 1)
        } else if let Some(lt) = s.find('<') {
            let disp = trim_wsp(&s[..lt]);
            // Unquoted display names are a sequence of tokens (RFC 4475 §3.1.2.15).
            if !disp.split([' ', '\t']).filter(|t| !t.is_empty()).all(is_token) {
                return Err(InvalidHeader);
            }
            let gt = s[lt..].find('>').ok_or(InvalidHeader)? + lt;
            (if disp.is_empty() { None } else { Some(disp) }, lt + 1, gt, gt + 1)
        } else {
            // addr-spec: the URI cannot hold ';', '?' or ',' here (RFC 3261 §20), so any ';'
            // starts the header parameters.
            let end = s.find(';').unwrap_or(s.len());
            let uri = trim_wsp(&s[..end]);
            if uri.contains('?') || uri.contains(',') {
                return Err(InvalidHeader);
            }
            let start = uri.as_ptr() as usize - s.as_ptr() as usize;
            (None, start, start + uri.len(), end)
        };
        let uri_text = &s[uri_start..uri_end];
        if uri_text.is_empty() || uri_text.starts_with([' ', '\t']) || uri_text.ends_with([' ', '\t']) {
            return Err(InvalidHeader);
        }
        let uri = Uri::parse_in(src, uri_text)?;
        let params = parse_header_params(src, &s[rest..])?;
        Ok(NameAddr { display: display.map(|d| src.slice_ref(d)), uri, params })
    }

    /// Parses a standalone string.
    pub fn parse(s: &str) -> Result<NameAddr, InvalidHeader> {
        let src = ByteString::from(s);
        NameAddr::parse_in(&src, &src)
    }

    /// Parses every element of a comma-separated value (Contact, Route, Record-Route).
    pub fn parse_list(src: &ByteString) -> impl Iterator<Item = Result<NameAddr, InvalidHeader>> + '_ {
        split_commas(src).map(move |part| NameAddr::parse_in(src, part))
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }

    /// The display name without quotes and escapes.
    pub fn display_name(&self) -> Option<String> {
        self.display.as_ref().map(|d| if d.starts_with('"') { unquote(d) } else { d.to_string() })
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{d} ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// Quotes a display name for a From/To/Contact header.
pub fn quote_display_name(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        if c != '\r' && c != '\n' {
            s.push(c);
        }
    }
    s.push('"');
    s
}

/// The value of a Contact header: `*` or addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContactValue {
    /// `Contact: *` (remove all bindings, RFC 3261 §10.2.2).
    Star,
    /// One or more addresses.
    Addresses(Vec<NameAddr>),
}

impl ContactValue {
    /// Parses one Contact header value.
    pub fn parse_in(src: &ByteString) -> Result<ContactValue, InvalidHeader> {
        if trim_wsp(src) == "*" {
            return Ok(ContactValue::Star);
        }
        NameAddr::parse_list(src).collect::<Result<Vec<_>, _>>().map(ContactValue::Addresses)
    }
}

/// The CSeq header (RFC 3261 §20.16).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number (at most 2^32-1; RFC 4475 §3.1.2.4).
    pub seq: u32,
    /// Method.
    pub method: Method,
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(s: &str) -> Result<CSeq, InvalidHeader> {
        let s = trim_wsp(s);
        let sp = s.find([' ', '\t']).ok_or(InvalidHeader)?;
        let seq = crate::text::parse_decimal(&s[..sp], u64::from(u32::MAX)).ok_or(InvalidHeader)?;
        let method = trim_wsp(&s[sp..]);
        if !is_token(method) {
            return Err(InvalidHeader);
        }
        Ok(CSeq { seq: seq as u32, method: Method::from_token(method) })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// A media type (`type/subtype;params`) from Content-Type or Accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaType {
    /// Top-level type, such as `application`.
    pub ty: ByteString,
    /// Subtype, such as `sdp`.
    pub subtype: ByteString,
    /// Parameters.
    pub params: Params,
}

impl MediaType {
    /// Parses one media type; `s` must be a slice of `src`.
    pub fn parse_in(src: &ByteString, s: &str) -> Result<MediaType, InvalidHeader> {
        let s = trim_wsp(s);
        let semi = s.find(';').unwrap_or(s.len());
        let (ty, sub) = s[..semi].split_once('/').ok_or(InvalidHeader)?;
        let (ty, sub) = (trim_wsp(ty), trim_wsp(sub));
        if !is_token(ty) || !is_token(sub) {
            return Err(InvalidHeader);
        }
        let params = parse_header_params(src, &s[semi..])?;
        Ok(MediaType { ty: src.slice_ref(ty), subtype: src.slice_ref(sub), params })
    }

    /// True for `ty/subtype` (case-insensitive), honouring `*` wildcards on our side.
    pub fn is(&self, ty: &str, subtype: &str) -> bool {
        self.ty.eq_ignore_ascii_case(ty) && self.subtype.eq_ignore_ascii_case(subtype)
    }

    /// True when this (possibly wildcard) range from an Accept header admits `ty/subtype`.
    pub fn accepts(&self, ty: &str, subtype: &str) -> bool {
        (&*self.ty == "*" || self.ty.eq_ignore_ascii_case(ty))
            && (&*self.subtype == "*" || self.subtype.eq_ignore_ascii_case(subtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bs(s: &str) -> ByteString {
        ByteString::from(s)
    }

    #[test]
    fn via_with_lws_everywhere() {
        let v = bs("SIP  /   2.0 /UDP     192.0.2.2;branch=390skdjuw");
        let via = Via::parse_in(&v, &v).unwrap();
        assert_eq!(&*via.transport, "UDP");
        assert_eq!(via.host, Host::V4("192.0.2.2".parse().unwrap()));
        assert_eq!(via.branch(), Some("390skdjuw"));
        let v = bs(
            "SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8  , SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239",
        );
        let all: Vec<_> = Via::parse_list(&v).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].branch(), Some("z9hG4bK30239"));
        assert_eq!(all[0].to_string(), "SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8");
    }

    #[test]
    fn via_ipv6_and_rport() {
        let v = bs("SIP/2.0/UDP [2001:db8::9:1]:5070;received=[2001:db8::9:255];rport;branch=z9hG4bKas3");
        let via = Via::parse_in(&v, &v).unwrap();
        assert_eq!(via.port, Some(5070));
        assert_eq!(via.received(), Some("2001:db8::9:255"));
        assert_eq!(via.rport(), Some(None));
    }

    #[test]
    fn via_with_empty_params_is_invalid() {
        let v = bs("SIP/2.0/UDP 192.0.2.15;;,;,,");
        assert!(Via::parse_list(&v).any(|r| r.is_err()));
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(r#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;   tag = 98asjd8"#).unwrap();
        assert_eq!(n.display_name().as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(n.tag(), Some("98asjd8"));
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display_name().as_deref(), Some("caller"));
        let n = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert!(n.params.has("unknownparam"));
        assert!(n.uri.as_sip().unwrap().params.is_empty());
        let n = NameAddr::parse("<sip:+19725552222@gw1.example.net;unknownparam>").unwrap();
        assert!(n.params.is_empty());
        assert!(n.uri.as_sip().unwrap().params.has("unknownparam"));
        let n = NameAddr::parse("isbn:2983792873").unwrap();
        assert!(matches!(n.uri, Uri::Other { .. }));
    }

    #[test]
    fn name_addr_rejections() {
        assert!(NameAddr::parse(r#""Mr. J. User <sip:j.user@example.com>"#).is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
        assert!(NameAddr::parse(r#""Watson, Thomas" < sip:t.watson@example.org >"#).is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(NameAddr::parse(r#""Joe" <sip:joe@example.org>;;;;"#).is_err());
    }

    #[test]
    fn contact_star_and_list() {
        assert_eq!(ContactValue::parse_in(&bs(" * ")).unwrap(), ContactValue::Star);
        match ContactValue::parse_in(&bs(r#""a, b" <sip:a@x>;expires=60, <sip:b@y>"#)).unwrap() {
            ContactValue::Addresses(v) => {
                assert_eq!(v.len(), 2);
                assert_eq!(v[0].params.value("expires"), Some("60"));
            }
            ContactValue::Star => panic!(),
        }
    }

    #[test]
    fn cseq_parse() {
        assert_eq!(CSeq::parse("0009   INVITE").unwrap(), CSeq { seq: 9, method: Method::Invite });
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("1").is_err());
    }

    #[test]
    fn media_types() {
        let v = bs("application/SDP ; charset=utf-8");
        let m = MediaType::parse_in(&v, &v).unwrap();
        assert!(m.is("application", "sdp"));
        let v = bs("*/*");
        assert!(MediaType::parse_in(&v, &v).unwrap().accepts("application", "sdp"));
    }
}
