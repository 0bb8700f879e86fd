//! Parsing messages from datagrams and byte streams (RFC 3261 §7, §18.3).
//!
//! Parsing is bounded by [`Limits`] and never guesses: a malformed Content-Length is an
//! error, never a zero. Errors carry what was read of the headers, so that a malformed
//! request can still be answered with the right 4xx.

use std::fmt;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use crate::header::{HeaderName, Headers};
use crate::message::{Message, Request, Response};
use crate::method::Method;
use crate::text::{is_token, is_wsp, trim_wsp};
use crate::uri::Uri;

/// Hard limits applied while parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (start line, headers and body) accepted.
    pub max_message_size: usize,
    /// Most header fields accepted.
    pub max_headers: usize,
    /// Longest physical line accepted in the start line and headers.
    pub max_line_length: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_message_size: 65_535, max_headers: 128, max_line_length: 8_192 }
    }
}

/// What is wrong with a message. [`ParseErrorKind::response`] gives the answer it deserves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// Larger than [`Limits::max_message_size`].
    MessageTooLarge,
    /// A line longer than [`Limits::max_line_length`].
    LineTooLong,
    /// More fields than [`Limits::max_headers`].
    TooManyHeaders,
    /// Request line not `Method SP Request-URI SP SIP-Version` with single spaces.
    BadRequestLine,
    /// Status line not `SIP/2.0 SP 3DIGIT SP Reason`, or a code outside 100..=699.
    BadStatusLine,
    /// A SIP version other than 2.0.
    VersionNotSupported,
    /// The Request-URI does not parse, or carries headers (RFC 3261 §19.1.1).
    BadRequestUri,
    /// A header line without a colon or with a name that is not a token.
    BadHeaderLine,
    /// Content-Length not a non-negative number within limits.
    BadContentLength,
    /// Several Content-Length fields with different values.
    ConflictingContentLength,
    /// Content-Length larger than what the datagram carries.
    BodyTruncated,
    /// A mandatory header is absent.
    MissingHeader(HeaderName),
    /// A header value does not match its grammar.
    InvalidHeader(HeaderName),
    /// A header that must appear once appears several times (RFC 4475 §3.3.8).
    DuplicateHeader(HeaderName),
    /// CSeq method differs from the request method.
    CSeqMethodMismatch,
}

impl ParseErrorKind {
    /// The status code and reason phrase to answer a request that has this problem.
    pub fn response(&self) -> (u16, String) {
        let r = |s: &str| s.to_owned();
        match self {
            ParseErrorKind::MessageTooLarge => (513, r("Message Too Large")),
            ParseErrorKind::LineTooLong => (400, r("Header Line Too Long")),
            ParseErrorKind::TooManyHeaders => (400, r("Too Many Header Fields")),
            ParseErrorKind::BadRequestLine => (400, r("Malformed Request Line")),
            ParseErrorKind::BadStatusLine => (400, r("Malformed Status Line")),
            ParseErrorKind::VersionNotSupported => (505, r("Version Not Supported")),
            ParseErrorKind::BadRequestUri => (400, r("Malformed Request-URI")),
            ParseErrorKind::BadHeaderLine => (400, r("Malformed Header Line")),
            ParseErrorKind::BadContentLength => (400, r("Malformed Content-Length")),
            ParseErrorKind::ConflictingContentLength => (400, r("Conflicting Content-Length")),
            ParseErrorKind::BodyTruncated => (400, r("Body Shorter Than Content-Length")),
            ParseErrorKind::MissingHeader(h) => (400, format!("Missing {h} Header")),
            ParseErrorKind::InvalidHeader(h) => (400, format!("Malformed {h} Header")),
            ParseErrorKind::DuplicateHeader(h) => (400, format!("Multiple {h} Values")),
            ParseErrorKind::CSeqMethodMismatch => (400, r("CSeq Method Mismatch")),
        }
    }
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.response().1)
    }
}

/// A message that could not be parsed. When the start line looked like a request and the
/// header lines could be split, `request_headers` holds them so a response can be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The problem.
    pub kind: ParseErrorKind,
    /// Header fields of a request that failed, for the error response.
    pub request_headers: Option<Headers>,
}

impl ParseError {
    fn bare(kind: ParseErrorKind) -> ParseError {
        ParseError { kind, request_headers: None }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)
    }
}

impl std::error::Error for ParseError {}

enum StartLine {
    Request(Method, Uri),
    Response(u16, ByteString),
}

struct Head {
    start: StartLine,
    headers: Headers,
    content_length: Option<usize>,
}

/// Finds the end of the header section: returns (offset of the empty line, offset after it).
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    for nl in memchr::memchr_iter(b'\n', buf) {
        // The next line is empty if it is "\n" or "\r\n".
        match buf.get(nl + 1) {
            Some(b'\n') => return Some((nl + 1, nl + 2)),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some((nl + 1, nl + 3)),
            _ => {}
        }
    }
    None
}

/// Number of leading CR/LF octets (ignored before a start line, RFC 3261 §7.5).
fn leading_crlf(buf: &[u8]) -> usize {
    buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count()
}

fn parse_head(raw: Bytes, limits: &Limits) -> Result<Head, ParseError> {
    let text = match ByteString::try_from(raw.clone()) {
        Ok(s) => s,
        // Invalid UTF-8 (a Latin-1 display name from an old phone) is replaced rather than
        // refused; anything it breaks fails the grammar below.
        Err(_) => ByteString::from(String::from_utf8_lossy(&raw).into_owned()),
    };
    let mut lines = Lines { text: &text, pos: 0 };
    let first = lines.next().unwrap_or("");
    if first.len() > limits.max_line_length {
        return Err(ParseError::bare(ParseErrorKind::LineTooLong));
    }
    let is_request = !first.starts_with("SIP/");
    let start = parse_start_line(&text, first);

    // Header lines: (name, first line of value, folded continuation lines).
    let mut headers = Headers::with_capacity(16);
    let mut current: Option<(HeaderName, ByteString, Option<String>)> = None;
    let mut error: Option<ParseErrorKind> = start.as_ref().err().cloned();
    let mut count = 0usize;
    let flush = |cur: Option<(HeaderName, ByteString, Option<String>)>, headers: &mut Headers| {
        if let Some((name, value, folded)) = cur {
            match folded {
                Some(f) => headers.push(name, f),
                None => headers.push(name, value),
            }
        }
    };
    for line in lines {
        if line.len() > limits.max_line_length {
            error.get_or_insert(ParseErrorKind::LineTooLong);
            break;
        }
        if line.is_empty() {
            continue;
        }
        if is_wsp(line.as_bytes()[0]) {
            // Folding: a continuation is equivalent to one SP (RFC 3261 §7.3.1).
            match current.as_mut() {
                Some((_, first, folded)) => {
                    let piece = trim_wsp(line);
                    let acc = folded.get_or_insert_with(|| first.to_string());
                    if !piece.is_empty() {
                        if !acc.is_empty() {
                            acc.push(' ');
                        }
                        acc.push_str(piece);
                    }
                }
                None => {
                    error.get_or_insert(ParseErrorKind::BadHeaderLine);
                }
            }
            continue;
        }
        flush(current.take(), &mut headers);
        count += 1;
        if count > limits.max_headers {
            error.get_or_insert(ParseErrorKind::TooManyHeaders);
            break;
        }
        let Some(colon) = line.find(':') else {
            error.get_or_insert(ParseErrorKind::BadHeaderLine);
            continue;
        };
        let name = trim_wsp(&line[..colon]);
        if !is_token(name) {
            error.get_or_insert(ParseErrorKind::BadHeaderLine);
            continue;
        }
        let value = trim_wsp(&line[colon + 1..]);
        current = Some((HeaderName::from_wire(name), text.slice_ref(value), None));
    }
    flush(current.take(), &mut headers);

    if error.is_none() {
        match take_content_length(&mut headers, limits) {
            Ok(content_length) => {
                if let Ok(start) = start {
                    return Ok(Head { start, headers, content_length });
                }
            }
            Err(kind) => error = Some(kind),
        }
    }
    let kind = error.unwrap_or(ParseErrorKind::BadRequestLine);
    Err(ParseError { kind, request_headers: is_request.then_some(headers) })
}

/// Lines of the header section, CRLF or bare LF terminated, without the terminator.
struct Lines<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.pos > self.text.len() {
            return None;
        }
        let rest = &self.text[self.pos..];
        let end = memchr::memchr(b'\n', rest.as_bytes()).unwrap_or(rest.len());
        self.pos += end + 1;
        let line = &rest[..end];
        Some(line.strip_suffix('\r').unwrap_or(line))
    }
}

fn parse_start_line(src: &ByteString, line: &str) -> Result<StartLine, ParseErrorKind> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        if !rest.starts_with("2.0 ") {
            return Err(ParseErrorKind::BadStatusLine);
        }
        let rest = &rest[4..];
        let code = rest.get(..3).ok_or(ParseErrorKind::BadStatusLine)?;
        let after = &rest[3..];
        if !code.bytes().all(|b| b.is_ascii_digit()) || !(after.is_empty() || after.starts_with(' ')) {
            return Err(ParseErrorKind::BadStatusLine);
        }
        let status: u16 = code.parse().map_err(|_| ParseErrorKind::BadStatusLine)?;
        if !(100..=699).contains(&status) {
            return Err(ParseErrorKind::BadStatusLine);
        }
        let reason = after.strip_prefix(' ').unwrap_or(after);
        return Ok(StartLine::Response(status, src.slice_ref(reason)));
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseErrorKind::BadRequestLine);
    };
    if !is_token(method) || uri.is_empty() {
        return Err(ParseErrorKind::BadRequestLine);
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        let looks_like_sip = version.len() > 4
            && version.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/")
            && version.get(4..).and_then(|v| v.split_once('.')).is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().all(|c| c.is_ascii_digit())
                    && b.bytes().all(|c| c.is_ascii_digit())
            });
        return Err(if looks_like_sip { ParseErrorKind::VersionNotSupported } else { ParseErrorKind::BadRequestLine });
    }
    let uri = Uri::parse_in(src, uri).map_err(|_| ParseErrorKind::BadRequestUri)?;
    if let Uri::Sip(u) = &uri
        && u.headers.is_some()
    {
        return Err(ParseErrorKind::BadRequestUri);
    }
    Ok(StartLine::Request(Method::from_token(method), uri))
}

/// Removes the Content-Length fields and returns their common value.
fn take_content_length(headers: &mut Headers, limits: &Limits) -> Result<Option<usize>, ParseErrorKind> {
    let mut found: Option<usize> = None;
    for v in headers.get_all(&HeaderName::ContentLength) {
        let n = crate::text::parse_decimal(trim_wsp(v), limits.max_message_size as u64).ok_or_else(|| {
            // A syntactically fine but huge value is "too large", anything else malformed.
            if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                ParseErrorKind::MessageTooLarge
            } else {
                ParseErrorKind::BadContentLength
            }
        })? as usize;
        match found {
            Some(prev) if prev != n => return Err(ParseErrorKind::ConflictingContentLength),
            _ => found = Some(n),
        }
    }
    if found.is_some() {
        headers.remove(&HeaderName::ContentLength);
    }
    Ok(found)
}

fn assemble(head: Head, body: Bytes) -> Message {
    match head.start {
        StartLine::Request(method, uri) => Message::Request(Request { method, uri, headers: head.headers, body }),
        StartLine::Response(status, reason) => {
            Message::Response(Response { status, reason, headers: head.headers, body })
        }
    }
}

/// Outcome of looking at one datagram.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a transient return value, moved once
pub enum Datagram {
    /// A message.
    Message(Message),
    /// Only CR/LF octets (a keep-alive): nothing to do.
    KeepAlive,
}

/// Parses one UDP datagram. Octets after the Content-Length worth of body are ignored
/// (RFC 3261 §18.3); without Content-Length the body is the rest of the datagram.
pub fn parse_datagram(data: Bytes, limits: &Limits) -> Result<Datagram, ParseError> {
    let skip = leading_crlf(&data);
    if skip == data.len() {
        return Ok(Datagram::KeepAlive);
    }
    let data = data.slice(skip..);
    let (head_end, body_start) = find_head_end(&data).unwrap_or((data.len(), data.len()));
    let head = match parse_head(data.slice(..head_end), limits) {
        Ok(h) => h,
        Err(mut e) => {
            if data.len() > limits.max_message_size {
                e.kind = ParseErrorKind::MessageTooLarge;
            }
            return Err(e);
        }
    };
    let too_large = |head: Head| ParseError {
        kind: ParseErrorKind::MessageTooLarge,
        request_headers: matches!(head.start, StartLine::Request(..)).then_some(head.headers),
    };
    if data.len() > limits.max_message_size {
        return Err(too_large(head));
    }
    let available = data.len() - body_start;
    let body = match head.content_length {
        None => data.slice(body_start..),
        Some(n) if n <= available => data.slice(body_start..body_start + n),
        Some(_) => {
            let request_headers = matches!(head.start, StartLine::Request(..)).then_some(head.headers);
            return Err(ParseError { kind: ParseErrorKind::BodyTruncated, request_headers });
        }
    };
    Ok(Datagram::Message(assemble(head, body)))
}

/// Outcome of [`StreamParser::next_item`].
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a transient return value, moved once
pub enum StreamItem {
    /// A complete message.
    Message(Message),
    /// A double CRLF keep-alive ping (RFC 5626 §4.4.1); answer with a single CRLF.
    Ping,
    /// More octets are needed.
    NeedMore,
}

/// Frames messages out of a byte stream (TCP, TLS) by Content-Length.
///
/// Any error breaks the framing: the connection should be answered (when
/// [`ParseError::request_headers`] allows) and closed.
#[derive(Debug, Default)]
pub struct StreamParser {
    buf: BytesMut,
    limits: Limits,
    pending: Option<PendingHead>,
}

struct PendingHead {
    head: Head,
    body_len: usize,
}

impl fmt::Debug for PendingHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingHead").field("body_len", &self.body_len).finish()
    }
}

impl StreamParser {
    /// A parser with these limits.
    pub fn new(limits: Limits) -> StreamParser {
        StreamParser { buf: BytesMut::with_capacity(4096), limits, pending: None }
    }

    /// Appends received octets.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The receive buffer, for reading into directly.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Octets received but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next complete item from the buffer.
    pub fn next_item(&mut self) -> Result<StreamItem, ParseError> {
        if self.pending.is_none() {
            if self.buf.starts_with(b"\r\n\r\n") {
                let _ = self.buf.split_to(4);
                return Ok(StreamItem::Ping);
            }
            let skip = leading_crlf(&self.buf);
            if skip == self.buf.len() && skip < 4 {
                // Lone CRLFs: a pong, or the start of a ping; keep waiting.
                if skip == 2 && &self.buf[..] == b"\r\n" {
                    let _ = self.buf.split_to(2);
                }
                return Ok(StreamItem::NeedMore);
            }
            let _ = self.buf.split_to(skip);
            let Some((head_end, body_start)) = find_head_end(&self.buf) else {
                if self.buf.len() > self.limits.max_message_size {
                    return Err(ParseError::bare(ParseErrorKind::MessageTooLarge));
                }
                return Ok(StreamItem::NeedMore);
            };
            let raw = self.buf.split_to(body_start).freeze();
            let head = parse_head(raw.slice(..head_end), &self.limits)?;
            // RFC 3261 §18.3 makes Content-Length mandatory on streams; an RFC 2543 peer may
            // omit it for an empty body.
            let body_len = head.content_length.unwrap_or(0);
            if head_end + body_len > self.limits.max_message_size {
                let request_headers = matches!(head.start, StartLine::Request(..)).then_some(head.headers);
                return Err(ParseError { kind: ParseErrorKind::MessageTooLarge, request_headers });
            }
            self.pending = Some(PendingHead { head, body_len });
        }
        let Some(p) = self.pending.as_ref() else {
            return Ok(StreamItem::NeedMore);
        };
        if self.buf.len() < p.body_len {
            return Ok(StreamItem::NeedMore);
        }
        let Some(p) = self.pending.take() else {
            return Ok(StreamItem::NeedMore);
        };
        let body = self.buf.split_to(p.body_len).freeze();
        Ok(StreamItem::Message(assemble(p.head, body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dgram(s: &[u8]) -> Result<Message, ParseError> {
        match parse_datagram(Bytes::copy_from_slice(s), &Limits::default())? {
            Datagram::Message(m) => Ok(m),
            Datagram::KeepAlive => panic!("keepalive"),
        }
    }

    const OPTIONS: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: x\r\nContent-Length: 3\r\n\r\nabcEXTRA";

    #[test]
    fn datagram_ignores_octets_after_body() {
        let m = dgram(OPTIONS).unwrap();
        assert_eq!(&m.body()[..], b"abc");
        assert!(m.headers().get(&HeaderName::ContentLength).is_none());
    }

    #[test]
    fn datagram_with_short_body_is_an_error() {
        let e = dgram(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nl: 10\r\n\r\nabc").unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::BodyTruncated);
        assert!(e.request_headers.is_some());
    }

    #[test]
    fn negative_content_length_is_malformed_not_zero() {
        let e = dgram(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n").unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::BadContentLength);
    }

    #[test]
    fn keepalive_datagram() {
        assert!(matches!(parse_datagram(Bytes::from_static(b"\r\n\r\n"), &Limits::default()), Ok(Datagram::KeepAlive)));
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits { max_message_size: 100, max_headers: 2, max_line_length: 40 };
        let many = b"OPTIONS sip:a@b SIP/2.0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        let e = parse_datagram(Bytes::from_static(many), &limits).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::TooManyHeaders);
        let long = b"OPTIONS sip:a@b SIP/2.0\r\nA: 0123456789012345678901234567890123456789\r\n\r\n";
        let e = parse_datagram(Bytes::from_static(long), &limits).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::LineTooLong);
        let big = [b"OPTIONS sip:a@b SIP/2.0\r\nl: 90\r\n\r\n".as_slice(), &[b'x'; 90]].concat();
        let e = parse_datagram(Bytes::from(big), &limits).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::MessageTooLarge);
        assert_eq!(e.kind.response().0, 513);
    }

    #[test]
    fn stream_frames_by_content_length_across_reads() {
        let mut p = StreamParser::new(Limits::default());
        let two = [OPTIONS.split_at(OPTIONS.len() - 5).0, b"\r\n\r\n"].concat();
        // First message body "abc", then a ping, then a second message split in pieces.
        p.push(&two[..20]);
        assert!(matches!(p.next_item().unwrap(), StreamItem::NeedMore));
        p.push(&two[20..]);
        match p.next_item().unwrap() {
            StreamItem::Message(m) => assert_eq!(&m.body()[..], b"abc"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(p.next_item().unwrap(), StreamItem::Ping));
        p.push(b"OPTIONS sip:a@b SIP/2.0\r\nl: 2\r\n\r\nx");
        assert!(matches!(p.next_item().unwrap(), StreamItem::NeedMore));
        p.push(b"y");
        match p.next_item().unwrap() {
            StreamItem::Message(m) => assert_eq!(&m.body()[..], b"xy"),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn stream_refuses_endless_headers() {
        let mut p = StreamParser::new(Limits { max_message_size: 64, ..Limits::default() });
        p.push(&[b'A'; 100]);
        assert_eq!(p.next_item().unwrap_err().kind, ParseErrorKind::MessageTooLarge);
    }

    #[test]
    fn status_lines() {
        assert!(matches!(dgram(b"SIP/2.0 100 \r\nl: 0\r\n\r\n").unwrap(), Message::Response(r) if r.reason.is_empty()));
        assert_eq!(dgram(b"SIP/2.0 4294967301 big\r\nl: 0\r\n\r\n").unwrap_err().kind, ParseErrorKind::BadStatusLine);
        assert_eq!(dgram(b"SIP/2.0 099 low\r\nl: 0\r\n\r\n").unwrap_err().kind, ParseErrorKind::BadStatusLine);
    }

    #[test]
    fn non_ascii_in_the_version_is_not_a_crash() {
        // Found by fuzzing: slicing the version at byte 4 fell inside a UTF-8 character.
        assert_eq!(
            dgram("OPT sip:a@b SIP\u{fffd}/2.0\r\nl: 0\r\n\r\n".as_bytes()).unwrap_err().kind,
            ParseErrorKind::BadRequestLine
        );
        assert_eq!(dgram("OPT sip:a@b é/2.0\r\n\r\n".as_bytes()).unwrap_err().kind, ParseErrorKind::BadRequestLine);
    }

    #[test]
    fn request_lines() {
        assert_eq!(
            dgram(b"INVITE  sip:a@b  SIP/2.0\r\nl: 0\r\n\r\n").unwrap_err().kind,
            ParseErrorKind::BadRequestLine
        );
        assert_eq!(dgram(b"INVITE sip:a@b SIP/2.0 \r\nl: 0\r\n\r\n").unwrap_err().kind, ParseErrorKind::BadRequestLine);
        assert_eq!(
            dgram(b"OPTIONS sip:a@b SIP/7.0\r\nl: 0\r\n\r\n").unwrap_err().kind,
            ParseErrorKind::VersionNotSupported
        );
        assert_eq!(dgram(b"INVITE <sip:a@b> SIP/2.0\r\nl: 0\r\n\r\n").unwrap_err().kind, ParseErrorKind::BadRequestUri);
        assert_eq!(
            dgram(b"INVITE sip:a@b?Route=x SIP/2.0\r\nl: 0\r\n\r\n").unwrap_err().kind,
            ParseErrorKind::BadRequestUri
        );
    }
}
