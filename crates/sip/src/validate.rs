//! The checks every incoming message passes before any layer acts on it, and the parsed
//! headers they produce ("parse, don't validate": later layers take these types).

use bytestring::ByteString;

use crate::header::HeaderName;
use crate::headers::{CSeq, NameAddr, Via};
use crate::message::{Request, Response};
use crate::parse::ParseErrorKind;
use crate::text::{is_word_char, trim_wsp};

/// The magic cookie that marks an RFC 3261 branch.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// Headers of a valid request that every layer needs, parsed once at the door.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    /// Call-ID.
    pub call_id: ByteString,
    /// CSeq (its method equals the request method).
    pub cseq: CSeq,
    /// From.
    pub from: NameAddr,
    /// To.
    pub to: NameAddr,
    /// Topmost Via.
    pub via: Via,
    /// Max-Forwards, when present.
    pub max_forwards: Option<u8>,
}

impl RequestInfo {
    /// The top Via branch when it is an RFC 3261 one (magic cookie and something after it).
    pub fn rfc3261_branch(&self) -> Option<&str> {
        self.via.branch().filter(|b| b.len() > BRANCH_COOKIE.len() && b.starts_with(BRANCH_COOKIE))
    }
}

/// Headers of a valid response, parsed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseInfo {
    /// Call-ID.
    pub call_id: ByteString,
    /// CSeq.
    pub cseq: CSeq,
    /// From.
    pub from: NameAddr,
    /// To.
    pub to: NameAddr,
    /// Topmost Via.
    pub via: Via,
}

fn single(headers: &crate::Headers, name: HeaderName) -> Result<&ByteString, ParseErrorKind> {
    let mut it = headers.get_all(&name);
    let first = it.next();
    let more = it.next().is_some();
    drop(it);
    match first {
        None => Err(ParseErrorKind::MissingHeader(name)),
        Some(_) if more => Err(ParseErrorKind::DuplicateHeader(name)),
        Some(v) => Ok(v),
    }
}

fn common(headers: &crate::Headers) -> Result<(ByteString, CSeq, NameAddr, NameAddr, Via), ParseErrorKind> {
    let call_id = single(headers, HeaderName::CallId)?;
    let call_id_text = trim_wsp(call_id);
    if call_id_text.is_empty() || !call_id_text.bytes().all(|b| is_word_char(b) || b == b'@') {
        return Err(ParseErrorKind::InvalidHeader(HeaderName::CallId));
    }
    let cseq =
        CSeq::parse(single(headers, HeaderName::CSeq)?).map_err(|_| ParseErrorKind::InvalidHeader(HeaderName::CSeq))?;
    let from = single(headers, HeaderName::From)?;
    let from = NameAddr::parse_in(from, from).map_err(|_| ParseErrorKind::InvalidHeader(HeaderName::From))?;
    let to = single(headers, HeaderName::To)?;
    let to = NameAddr::parse_in(to, to).map_err(|_| ParseErrorKind::InvalidHeader(HeaderName::To))?;
    // Every Via value must parse, not only the top one: a malformed Via is a malformed message.
    let mut top = None;
    for v in headers.get_all(&HeaderName::Via) {
        for via in Via::parse_list(v) {
            let via = via.map_err(|_| ParseErrorKind::InvalidHeader(HeaderName::Via))?;
            top.get_or_insert(via);
        }
    }
    let via = top.ok_or(ParseErrorKind::MissingHeader(HeaderName::Via))?;
    Ok((call_id.clone(), cseq, from, to, via))
}

/// Checks a request: Call-ID, CSeq, From, To exactly once and well-formed, every Via
/// well-formed, Max-Forwards in 0..=255, CSeq method equal to the request method.
pub fn validate_request(req: &Request) -> Result<RequestInfo, ParseErrorKind> {
    let (call_id, cseq, from, to, via) = common(&req.headers)?;
    if cseq.method != req.method {
        return Err(ParseErrorKind::CSeqMethodMismatch);
    }
    let max_forwards = match req.headers.count(&HeaderName::MaxForwards) {
        0 => None,
        1 => {
            let v = req.headers.get(&HeaderName::MaxForwards).map(|v| trim_wsp(v)).unwrap_or("");
            Some(crate::text::parse_decimal(v, 255).ok_or(ParseErrorKind::InvalidHeader(HeaderName::MaxForwards))? as u8)
        }
        _ => return Err(ParseErrorKind::DuplicateHeader(HeaderName::MaxForwards)),
    };
    Ok(RequestInfo { call_id, cseq, from, to, via, max_forwards })
}

/// Checks a response: the same single headers as a request, every Via well-formed.
pub fn validate_response(resp: &Response) -> Result<ResponseInfo, ParseErrorKind> {
    let (call_id, cseq, from, to, via) = common(&resp.headers)?;
    Ok(ResponseInfo { call_id, cseq, from, to, via })
}
