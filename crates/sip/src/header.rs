//! Header names and the ordered header list of a message.
//!
//! Values are kept as text (unfolded, trimmed) and parsed into typed values on demand by
//! the modules of [`crate::headers`]: a proxy or B2BUA touches only a few headers of each
//! message, so parsing all of them eagerly would be wasted work.

use std::fmt;

use bytestring::ByteString;

use crate::text::split_commas;

macro_rules! known_headers {
    ($( $variant:ident => $canonical:literal, $lower:literal $(, $compact:literal)? ;)*) => {
        /// A header field name. Well-known names are variants (case-insensitive, compact
        /// forms folded in); anything else keeps its spelling in [`HeaderName::Other`].
        #[derive(Clone, Debug)]
        pub enum HeaderName {
            $(
                #[doc = concat!("`", $canonical, "`")]
                $variant,
            )*
            /// An extension header, compared case-insensitively.
            Other(ByteString),
        }

        impl HeaderName {
            /// Maps a name as found on the wire (any case, compact form or not).
            pub fn from_wire(name: &str) -> HeaderName {
                // Lower-case into a stack buffer, then one `match`: this runs for every
                // header line of every message.
                let mut buf = [0u8; 24];
                if name.len() <= buf.len() {
                    let lower = &mut buf[..name.len()];
                    lower.copy_from_slice(name.as_bytes());
                    lower.make_ascii_lowercase();
                    if let Ok(lower) = std::str::from_utf8(lower) {
                        if lower.len() == 1 {
                            match lower.as_bytes()[0] {
                                $($( $compact => return HeaderName::$variant, )?)*
                                _ => {}
                            }
                        }
                        if let Some(h) = Self::from_lowercase(lower) {
                            return h;
                        }
                    }
                }
                HeaderName::Other(ByteString::from(name))
            }

            fn from_lowercase(lower: &str) -> Option<HeaderName> {
                match lower {
                    $( $lower => Some(HeaderName::$variant), )*
                    _ => None,
                }
            }

            /// The canonical (long) spelling used when emitting.
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $canonical, )*
                    HeaderName::Other(s) => s,
                }
            }
        }
    };
}

known_headers! {
    Accept => "Accept", "accept";
    AcceptContact => "Accept-Contact", "accept-contact", b'a';
    AcceptEncoding => "Accept-Encoding", "accept-encoding";
    AcceptLanguage => "Accept-Language", "accept-language";
    AlertInfo => "Alert-Info", "alert-info";
    Allow => "Allow", "allow";
    AllowEvents => "Allow-Events", "allow-events", b'u';
    AuthenticationInfo => "Authentication-Info", "authentication-info";
    Authorization => "Authorization", "authorization";
    CallId => "Call-ID", "call-id", b'i';
    CallInfo => "Call-Info", "call-info";
    Contact => "Contact", "contact", b'm';
    ContentDisposition => "Content-Disposition", "content-disposition";
    ContentEncoding => "Content-Encoding", "content-encoding", b'e';
    ContentLanguage => "Content-Language", "content-language";
    ContentLength => "Content-Length", "content-length", b'l';
    ContentType => "Content-Type", "content-type", b'c';
    CSeq => "CSeq", "cseq";
    Date => "Date", "date";
    Event => "Event", "event", b'o';
    Expires => "Expires", "expires";
    From => "From", "from", b'f';
    Identity => "Identity", "identity", b'y';
    InReplyTo => "In-Reply-To", "in-reply-to";
    MaxForwards => "Max-Forwards", "max-forwards";
    MinExpires => "Min-Expires", "min-expires";
    MinSe => "Min-SE", "min-se";
    Organization => "Organization", "organization";
    Path => "Path", "path";
    PAssertedIdentity => "P-Asserted-Identity", "p-asserted-identity";
    Priority => "Priority", "priority";
    ProxyAuthenticate => "Proxy-Authenticate", "proxy-authenticate";
    ProxyAuthorization => "Proxy-Authorization", "proxy-authorization";
    ProxyRequire => "Proxy-Require", "proxy-require";
    RAck => "RAck", "rack";
    Reason => "Reason", "reason";
    RecordRoute => "Record-Route", "record-route";
    ReferTo => "Refer-To", "refer-to", b'r';
    ReferredBy => "Referred-By", "referred-by", b'b';
    RejectContact => "Reject-Contact", "reject-contact", b'j';
    ReplyTo => "Reply-To", "reply-to";
    RequestDisposition => "Request-Disposition", "request-disposition", b'd';
    Require => "Require", "require";
    RetryAfter => "Retry-After", "retry-after";
    Route => "Route", "route";
    RSeq => "RSeq", "rseq";
    Server => "Server", "server";
    SessionExpires => "Session-Expires", "session-expires", b'x';
    Subject => "Subject", "subject", b's';
    SubscriptionState => "Subscription-State", "subscription-state";
    Supported => "Supported", "supported", b'k';
    Timestamp => "Timestamp", "timestamp";
    To => "To", "to", b't';
    Unsupported => "Unsupported", "unsupported";
    UserAgent => "User-Agent", "user-agent";
    Via => "Via", "via", b'v';
    Warning => "Warning", "warning";
    WwwAuthenticate => "WWW-Authenticate", "www-authenticate";
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &HeaderName) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (HeaderName::Other(_), _) | (_, HeaderName::Other(_)) => false,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for HeaderName {}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header field: its name and its value text (unfolded, without surrounding LWS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The field name.
    pub name: HeaderName,
    /// The field value as text.
    pub value: ByteString,
}

/// The header fields of a message, in order. Repeated fields stay separate entries, so a
/// message is emitted as it was received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<Header>,
}

impl Headers {
    /// An empty list with room for `n` fields.
    pub fn with_capacity(n: usize) -> Headers {
        Headers { entries: Vec::with_capacity(n) }
    }

    /// Appends a field.
    pub fn push(&mut self, name: HeaderName, value: impl Into<ByteString>) {
        self.entries.push(Header { name, value: value.into() });
    }

    /// Inserts a field before all others (used for the Via a UA adds on top).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<ByteString>) {
        self.entries.insert(0, Header { name, value: value.into() });
    }

    /// Replaces every field of this name by one field with `value` (kept at the position of
    /// the first occurrence, or appended).
    pub fn set(&mut self, name: HeaderName, value: impl Into<ByteString>) {
        let value = value.into();
        match self.entries.iter().position(|h| h.name == name) {
            Some(i) => {
                self.entries[i].value = value;
                let mut seen = 0usize;
                self.entries.retain(|h| {
                    if h.name == name {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.entries.push(Header { name, value }),
        }
    }

    /// Removes every field of this name.
    pub fn remove(&mut self, name: &HeaderName) {
        self.entries.retain(|h| &h.name != name);
    }

    /// The value of the first field with this name.
    pub fn get(&self, name: &HeaderName) -> Option<&ByteString> {
        self.entries.iter().find(|h| &h.name == name).map(|h| &h.value)
    }

    /// The values of every field with this name, one per field line.
    pub fn get_all<'a, 'n>(&'a self, name: &'n HeaderName) -> impl Iterator<Item = &'a ByteString> + use<'a, 'n> {
        self.entries.iter().filter(move |h| &h.name == name).map(|h| &h.value)
    }

    /// Number of fields with this name.
    pub fn count(&self, name: &HeaderName) -> usize {
        self.entries.iter().filter(|h| &h.name == name).count()
    }

    /// The elements of a comma-separated list header, over all its fields: `Allow: A, B` and
    /// `Allow: A` + `Allow: B` read the same.
    pub fn list<'a, 'n>(&'a self, name: &'n HeaderName) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.get_all(name).flat_map(|v| split_commas(v)).filter(|s| !s.is_empty())
    }

    /// All fields in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.entries.iter()
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no field.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case_insensitive_names_map_to_one_variant() {
        assert_eq!(HeaderName::from_wire("i"), HeaderName::CallId);
        assert_eq!(HeaderName::from_wire("CALL-id"), HeaderName::CallId);
        assert_eq!(HeaderName::from_wire("v"), HeaderName::Via);
        assert_eq!(HeaderName::from_wire("L"), HeaderName::ContentLength);
        assert_eq!(HeaderName::from_wire("X-Foo"), HeaderName::from_wire("x-foo"));
        assert_ne!(HeaderName::from_wire("C%6Fntact"), HeaderName::Contact);
        assert_eq!(HeaderName::CallId.as_str(), "Call-ID");
    }

    #[test]
    fn set_replaces_all_occurrences_in_place() {
        let mut h = Headers::default();
        h.push(HeaderName::Via, "a");
        h.push(HeaderName::To, "t");
        h.push(HeaderName::Via, "b");
        h.set(HeaderName::Via, "c");
        let v: Vec<_> = h.iter().map(|h| (h.name.as_str().to_owned(), h.value.to_string())).collect();
        assert_eq!(v, [("Via".into(), "c".into()), ("To".into(), "t".into())]);
    }
}
