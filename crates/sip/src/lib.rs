//! SIP for Switchboard: messages, digest authentication and the RFC 3261 transaction
//! machines, all sans-IO.
//!
//! Nothing here touches a socket or reads the clock. Bytes come in and parsed messages
//! come out ([`parse_datagram`], [`StreamParser`]); transactions take events with the
//! current [`std::time::Instant`] and hand back what to send and when to wake them.
//!
//! The message model keeps header values as text and parses them on demand
//! ([`headers`]): a B2BUA reads a handful of headers of each message, and keeping the text
//! means a message is emitted as it was received.

pub mod auth;
mod header;
pub mod headers;
mod message;
mod method;
mod parse;
pub mod text;
pub mod transaction;
mod uri;
mod validate;

pub use header::{Header, HeaderName, Headers};
pub use message::{Message, Request, Response, copy_dialog_headers, reason_phrase};
pub use method::Method;
pub use parse::{Datagram, Limits, ParseError, ParseErrorKind, StreamItem, StreamParser, parse_datagram};
pub use uri::{Host, Param, Params, SipUri, Uri, UriError};
pub use validate::{BRANCH_COOKIE, RequestInfo, ResponseInfo, validate_request, validate_response};

pub use bytestring::ByteString;
