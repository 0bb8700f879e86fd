//! Character classes and small scanners shared by the header parsers (RFC 3261 §25.1).

/// `token` characters: alphanum and `-.!%*_+`'~`.
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~')
}

/// True when `s` is a non-empty `token`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// `word` characters (Call-ID): token characters plus `()<>:\"/[]?{}`.
pub(crate) fn is_word_char(b: u8) -> bool {
    is_token_char(b)
        || matches!(b, b'(' | b')' | b'<' | b'>' | b':' | b'\\' | b'"' | b'/' | b'[' | b']' | b'?' | b'{' | b'}')
}

/// Linear white space inside an (already unfolded) header value.
pub(crate) fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Trims SP and HTAB at both ends.
pub(crate) fn trim_wsp(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Given `s` starting with `"`, returns the byte length of the quoted string including both
/// quotes, honouring `\` quoted-pairs, or `None` when the closing quote is missing.
pub(crate) fn quoted_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    debug_assert_eq!(b.first(), Some(&b'"'));
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Removes the quotes and quoted-pair backslashes of a quoted string (`"a\"b"` → `a"b`).
pub(crate) fn unquote(s: &str) -> String {
    let inner = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits a header value at top-level commas: commas inside quoted strings or `<...>` do not
/// split. Empty elements are kept (the caller decides whether they are an error).
pub fn split_commas(s: &str) -> CommaSplit<'_> {
    CommaSplit { rest: Some(s) }
}

/// Iterator returned by [`split_commas`].
pub struct CommaSplit<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for CommaSplit<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        let b = s.as_bytes();
        let mut i = 0;
        let mut in_angle = false;
        while i < b.len() {
            match b[i] {
                b'"' => match quoted_len(&s[i..]) {
                    Some(n) => i += n,
                    // An unterminated quote swallows the rest; the element parser reports it.
                    None => i = b.len(),
                },
                b'<' => {
                    in_angle = true;
                    i += 1;
                }
                b'>' => {
                    in_angle = false;
                    i += 1;
                }
                b',' if !in_angle => {
                    self.rest = Some(&s[i + 1..]);
                    return Some(trim_wsp(&s[..i]));
                }
                _ => i += 1,
            }
        }
        self.rest = None;
        Some(trim_wsp(s))
    }
}

/// Decodes `%HH` escapes once (never recursively) into raw bytes. Malformed escapes are kept
/// literally, as RFC 4475 §3.1.1.5 requires for `%` that is not an escape.
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Lower-case hexadecimal encoding, used for digests and generated identifiers.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parses a decimal number of at most `max` with no sign, as the SIP grammar's `1*DIGIT`
/// fields. Leading zeros are allowed (RFC 4475 §3.1.1.1); overflow is an error, never a wrap.
pub fn parse_decimal(s: &str, max: u64) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        if v > max {
            return None;
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_commas_respects_quotes_and_angles() {
        let v: Vec<_> = split_commas(r#""Doe, J" <sip:a@b;x=1,2>, <sip:c@d> ,e"#).collect();
        assert_eq!(v, [r#""Doe, J" <sip:a@b;x=1,2>"#, "<sip:c@d>", "e"]);
    }

    #[test]
    fn unescape_is_not_recursive() {
        assert_eq!(unescape("value%25%34%31"), b"value%41");
        assert_eq!(unescape("%75se%72"), b"user");
        assert_eq!(unescape("null-%00-null"), b"null-\0-null");
        assert_eq!(unescape("%Z%45"), b"%ZE");
        assert_eq!(unescape("abc%4"), b"abc%4");
    }

    #[test]
    fn decimal_rejects_overflow_and_signs() {
        assert_eq!(parse_decimal("0068", 255), Some(68));
        assert_eq!(parse_decimal("300", 255), None);
        assert_eq!(parse_decimal("-1", 255), None);
        assert_eq!(parse_decimal("36893488147419103232", u64::from(u32::MAX)), None);
    }
}
