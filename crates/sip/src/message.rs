//! Requests, responses and their wire form.

use std::fmt::Write as _;

use bytes::Bytes;
use bytestring::ByteString;

use crate::header::{HeaderName, Headers};
use crate::headers::{CSeq, InvalidHeader, NameAddr, Via};
use crate::method::Method;
use crate::uri::Uri;

/// A SIP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Request-URI.
    pub uri: Uri,
    /// Header fields, Content-Length excluded (it is derived from the body when emitting).
    pub headers: Headers,
    /// Body octets.
    pub body: Bytes,
}

/// A SIP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code, 100..=699.
    pub status: u16,
    /// Reason phrase (may be empty or non-ASCII).
    pub reason: ByteString,
    /// Header fields, Content-Length excluded.
    pub headers: Headers,
    /// Body octets.
    pub body: Bytes,
}

/// A request or a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Message {
    /// Header fields of either kind.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// Body of either kind.
    pub fn body(&self) -> &Bytes {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

fn encode_tail(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    for h in headers {
        out.extend_from_slice(h.name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let _ = write!(VecWriter(out), "Content-Length: {}\r\n\r\n", body.len());
    out.extend_from_slice(body);
}

fn estimated_len(headers: &Headers, body: &[u8]) -> usize {
    headers.iter().map(|h| h.name.as_str().len() + h.value.len() + 4).sum::<usize>() + body.len() + 64
}

impl Request {
    /// A request with no header and no body.
    pub fn new(method: Method, uri: Uri) -> Request {
        Request { method, uri, headers: Headers::with_capacity(12), body: Bytes::new() }
    }

    /// Appends the wire form to `out`. Content-Length always matches the body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let _ = write!(VecWriter(out), "{} {} SIP/2.0\r\n", self.method, self.uri);
        encode_tail(out, &self.headers, &self.body);
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(estimated_len(&self.headers, &self.body) + 64);
        self.encode(&mut out);
        out
    }

    /// Every Via value in order, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via, InvalidHeader>> + '_ {
        self.headers.get_all(&HeaderName::Via).flat_map(Via::parse_list)
    }

    /// The topmost Via.
    pub fn top_via(&self) -> Option<Result<Via, InvalidHeader>> {
        self.vias().next()
    }

    /// The From header.
    pub fn from_header(&self) -> Option<Result<NameAddr, InvalidHeader>> {
        self.headers.get(&HeaderName::From).map(|v| NameAddr::parse_in(v, v))
    }

    /// The To header.
    pub fn to_header(&self) -> Option<Result<NameAddr, InvalidHeader>> {
        self.headers.get(&HeaderName::To).map(|v| NameAddr::parse_in(v, v))
    }

    /// The CSeq header.
    pub fn cseq(&self) -> Option<Result<CSeq, InvalidHeader>> {
        self.headers.get(&HeaderName::CSeq).map(|v| CSeq::parse(v))
    }

    /// The Call-ID value.
    pub fn call_id(&self) -> Option<&ByteString> {
        self.headers.get(&HeaderName::CallId)
    }

    /// Sets the body and its Content-Type (removes both when `body` is empty).
    pub fn set_body(&mut self, content_type: &str, body: impl Into<Bytes>) {
        set_body(&mut self.headers, &mut self.body, content_type, body.into());
    }
}

impl Response {
    /// A response with no header and no body; `reason` defaults to the standard phrase.
    pub fn new(status: u16, reason: Option<&str>) -> Response {
        Response {
            status,
            reason: ByteString::from(reason.unwrap_or_else(|| reason_phrase(status))),
            headers: Headers::with_capacity(10),
            body: Bytes::new(),
        }
    }

    /// Builds the response to `req` as RFC 3261 §8.2.6.2 asks: Via (all), From, To,
    /// Call-ID and CSeq copied; a To tag added when `to_tag` is given and To has none.
    pub fn to_request(req: &Request, status: u16, reason: Option<&str>, to_tag: Option<&str>) -> Response {
        let mut r = Response::new(status, reason);
        copy_dialog_headers(&req.headers, &mut r.headers, to_tag);
        r
    }

    /// Appends the wire form to `out`. Content-Length always matches the body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let _ = write!(VecWriter(out), "SIP/2.0 {} {}\r\n", self.status, self.reason);
        encode_tail(out, &self.headers, &self.body);
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(estimated_len(&self.headers, &self.body) + 32);
        self.encode(&mut out);
        out
    }

    /// The topmost Via.
    pub fn top_via(&self) -> Option<Result<Via, InvalidHeader>> {
        self.headers.get_all(&HeaderName::Via).flat_map(Via::parse_list).next()
    }

    /// The CSeq header.
    pub fn cseq(&self) -> Option<Result<CSeq, InvalidHeader>> {
        self.headers.get(&HeaderName::CSeq).map(|v| CSeq::parse(v))
    }

    /// The To header.
    pub fn to_header(&self) -> Option<Result<NameAddr, InvalidHeader>> {
        self.headers.get(&HeaderName::To).map(|v| NameAddr::parse_in(v, v))
    }

    /// The From header.
    pub fn from_header(&self) -> Option<Result<NameAddr, InvalidHeader>> {
        self.headers.get(&HeaderName::From).map(|v| NameAddr::parse_in(v, v))
    }

    /// The Call-ID value.
    pub fn call_id(&self) -> Option<&ByteString> {
        self.headers.get(&HeaderName::CallId)
    }

    /// Sets the body and its Content-Type (removes both when `body` is empty).
    pub fn set_body(&mut self, content_type: &str, body: impl Into<Bytes>) {
        set_body(&mut self.headers, &mut self.body, content_type, body.into());
    }

    /// True for 1xx.
    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }
}

/// Copies Via, From, To (with a tag added if missing), Call-ID and CSeq into a response.
/// Works on raw values so that even a request with malformed headers gets its 400.
pub fn copy_dialog_headers(from: &Headers, to: &mut Headers, to_tag: Option<&str>) {
    for h in from {
        match h.name {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                to.push(h.name.clone(), h.value.clone())
            }
            HeaderName::To => {
                let value = match to_tag {
                    Some(tag) if !has_tag(&h.value) => ByteString::from(format!("{};tag={tag}", h.value)),
                    _ => h.value.clone(),
                };
                to.push(HeaderName::To, value);
            }
            _ => {}
        }
    }
}

fn has_tag(value: &ByteString) -> bool {
    match NameAddr::parse_in(value, value) {
        Ok(n) => n.tag().is_some(),
        Err(_) => true, // never append to a value we cannot read
    }
}

fn set_body(headers: &mut Headers, slot: &mut Bytes, content_type: &str, body: Bytes) {
    if body.is_empty() {
        headers.remove(&HeaderName::ContentType);
    } else {
        headers.set(HeaderName::ContentType, content_type.to_owned());
    }
    *slot = body;
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The standard reason phrase of a status code (RFC 3261 §21 and later RFCs).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Unknown",
    }
}
