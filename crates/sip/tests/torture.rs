//! RFC 4475 and RFC 5118 torture messages through the message layer: parse, then the
//! checks every request or response passes at the door. The verdicts that need a
//! registrar or call control (416, 420, 415, 406...) are tested in `pbx`.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use bytes::Bytes;
use sip::{
    Datagram, HeaderName, Limits, Message, ParseErrorKind, StreamItem, StreamParser, parse_datagram, validate_request,
    validate_response,
};

/// Where `../shared/testdata` is: `$SWITCHBOARD_SHARED`, or beside the workspace.
fn shared() -> PathBuf {
    let candidates = [
        std::env::var_os("SWITCHBOARD_SHARED").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")),
        Some(PathBuf::from("/work/shared")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("testdata/rfc4475/INDEX.tsv").exists())
        .expect("shared test data not found: set SWITCHBOARD_SHARED to the directory holding testdata/")
}

fn read(set: &str, file: &str) -> Vec<u8> {
    std::fs::read(shared().join("testdata").join(set).join(file)).unwrap()
}

/// What the message layer must conclude about one file.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// A valid request or response.
    Ok,
    /// A request answered with this status by the transport layer.
    Reject(u16),
    /// A response to be dropped silently.
    DropResponse,
}

fn verdict_of(data: &[u8]) -> (Verdict, Option<ParseErrorKind>) {
    match parse_datagram(Bytes::copy_from_slice(data), &Limits::default()) {
        Ok(Datagram::Message(Message::Request(r))) => match validate_request(&r) {
            Ok(_) => (Verdict::Ok, None),
            Err(k) => (Verdict::Reject(k.response().0), Some(k)),
        },
        Ok(Datagram::Message(Message::Response(r))) => match validate_response(&r) {
            Ok(_) => (Verdict::Ok, None),
            Err(k) => (Verdict::DropResponse, Some(k)),
        },
        Ok(Datagram::KeepAlive) => panic!("not a keepalive"),
        Err(e) if e.request_headers.is_some() => (Verdict::Reject(e.kind.response().0), Some(e.kind)),
        Err(e) => (Verdict::DropResponse, Some(e.kind)),
    }
}

#[test]
fn rfc4475_message_layer_verdicts() {
    use Verdict::*;
    let expected: &[(&str, Verdict, Option<ParseErrorKind>)] = &[
        ("wsinv.dat", Ok, None),
        ("intmeth.dat", Ok, None),
        ("esc01.dat", Ok, None),
        ("escnull.dat", Ok, None),
        ("esc02.dat", Ok, None),
        ("lwsdisp.dat", Ok, None),
        ("longreq.dat", Ok, None),
        ("dblreq.dat", Ok, None),
        ("semiuri.dat", Ok, None),
        ("transports.dat", Ok, None),
        ("mpart01.dat", Ok, None),
        ("unreason.dat", Ok, None),
        ("noreason.dat", Ok, None),
        ("badinv01.dat", Reject(400), Some(ParseErrorKind::InvalidHeader(HeaderName::Via))),
        ("clerr.dat", Reject(400), Some(ParseErrorKind::BodyTruncated)),
        ("ncl.dat", Reject(400), Some(ParseErrorKind::BadContentLength)),
        ("scalar02.dat", Reject(400), Some(ParseErrorKind::InvalidHeader(HeaderName::CSeq))),
        ("scalarlg.dat", DropResponse, Some(ParseErrorKind::InvalidHeader(HeaderName::CSeq))),
        ("quotbal.dat", Reject(400), Some(ParseErrorKind::InvalidHeader(HeaderName::To))),
        ("ltgtruri.dat", Reject(400), Some(ParseErrorKind::BadRequestUri)),
        ("lwsruri.dat", Reject(400), Some(ParseErrorKind::BadRequestLine)),
        ("lwsstart.dat", Reject(400), Some(ParseErrorKind::BadRequestLine)),
        ("trws.dat", Reject(400), Some(ParseErrorKind::BadRequestLine)),
        ("escruri.dat", Reject(400), Some(ParseErrorKind::BadRequestUri)),
        // Date does not matter to Switchboard, so a non-GMT zone is ignored (RFC 4475 §3.1.2.12).
        ("baddate.dat", Ok, None),
        // The Contact is checked by the registrar (400 there).
        ("regbadct.dat", Ok, None),
        ("badaspec.dat", Reject(400), Some(ParseErrorKind::InvalidHeader(HeaderName::To))),
        ("baddn.dat", Reject(400), Some(ParseErrorKind::InvalidHeader(HeaderName::From))),
        ("badvers.dat", Reject(505), Some(ParseErrorKind::VersionNotSupported)),
        ("mismatch01.dat", Reject(400), Some(ParseErrorKind::CSeqMethodMismatch)),
        // Unknown method: the door answers 501 before this check (see pbx tests).
        ("mismatch02.dat", Reject(400), Some(ParseErrorKind::CSeqMethodMismatch)),
        ("bigcode.dat", DropResponse, Some(ParseErrorKind::BadStatusLine)),
        ("badbranch.dat", Ok, None),
        ("insuf.dat", Reject(400), Some(ParseErrorKind::MissingHeader(HeaderName::CallId))),
        ("unkscm.dat", Ok, None),
        ("novelsc.dat", Ok, None),
        ("unksm2.dat", Ok, None),
        ("bext01.dat", Ok, None),
        ("invut.dat", Ok, None),
        ("regaut01.dat", Ok, None),
        ("multi01.dat", Reject(400), Some(ParseErrorKind::DuplicateHeader(HeaderName::CallId))),
        ("mcl01.dat", Reject(400), Some(ParseErrorKind::ConflictingContentLength)),
        ("bcast.dat", Ok, None),
        ("zeromf.dat", Ok, None),
        ("cparam01.dat", Ok, None),
        ("cparam02.dat", Ok, None),
        ("regescrt.dat", Ok, None),
        ("sdp01.dat", Ok, None),
        ("inv2543.dat", Ok, None),
        ("test.dat", Reject(400), Some(ParseErrorKind::BadRequestLine)),
    ];
    // Every file of the suite has an expectation.
    let index = String::from_utf8(read("rfc4475", "INDEX.tsv")).unwrap();
    let files: Vec<&str> = index.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split('\t').next()).collect();
    assert_eq!(files.len(), expected.len());
    for f in &files {
        assert!(expected.iter().any(|(n, ..)| n == f), "no expectation for {f}");
    }
    let mut failures = Vec::new();
    for (file, verdict, kind) in expected {
        let got = verdict_of(&read("rfc4475", file));
        if (&got.0, &got.1) != (verdict, kind) {
            failures.push(format!("{file}: expected {verdict:?} {kind:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rfc4475_details() {
    let parse = |f: &str| match parse_datagram(Bytes::from(read("rfc4475", f)), &Limits::default()).unwrap() {
        Datagram::Message(m) => m,
        Datagram::KeepAlive => unreachable!(),
    };
    // §3.1.1.1: folding, compact forms, leading zeros, opaque unknown header.
    let Message::Request(r) = parse("wsinv.dat") else { panic!() };
    let info = validate_request(&r).unwrap();
    assert_eq!(info.max_forwards, Some(68));
    assert_eq!(info.cseq.seq, 9);
    assert_eq!(info.to.tag(), Some("1918181833n"));
    assert_eq!(info.from.display_name().as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(r.vias().count(), 3);
    assert_eq!(
        r.headers.get(&HeaderName::from_wire("UnknownHeaderWithUnusualValue")).map(|v| v.to_string()).as_deref(),
        Some(";;,,;;,;")
    );
    assert_eq!(
        r.headers.get(&HeaderName::from_wire("NewFangledHeader")).map(|v| v.to_string()).as_deref(),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(r.headers.get(&HeaderName::Subject).map(|v| v.to_string()).as_deref(), Some(""));
    assert_eq!(r.body.len(), 150);
    // §3.1.1.2: the method is an extension token.
    let Message::Request(r) = parse("intmeth.dat") else { panic!() };
    assert_eq!(r.method.as_str(), "!interesting-Method0123456789_*+`.%indeed'~");
    // §3.1.1.3: escapes are decoded once, in the user part.
    let Message::Request(r) = parse("esc01.dat") else { panic!() };
    let info = validate_request(&r).unwrap();
    assert_eq!(info.to.uri.as_sip().unwrap().user_unescaped().unwrap(), b"user");
    // §3.1.1.4: %00 does not shorten the user; two contacts.
    let Message::Request(r) = parse("escnull.dat") else { panic!() };
    assert_eq!(r.headers.count(&HeaderName::Contact), 2);
    let info = validate_request(&r).unwrap();
    assert_eq!(info.to.uri.as_sip().unwrap().user_unescaped().unwrap(), b"null-\0-null");
    // §3.1.1.5: not REGISTER, and C%6Fntact is not Contact.
    let Message::Request(r) = parse("esc02.dat") else { panic!() };
    assert_ne!(r.method, sip::Method::Register);
    assert_eq!(r.headers.count(&HeaderName::Contact), 2);
    // §3.1.1.8: the INVITE after the REGISTER is noise.
    let Message::Request(r) = parse("dblreq.dat") else { panic!() };
    assert_eq!(r.method, sip::Method::Register);
    assert!(r.body.is_empty());
    // §3.1.1.11: binary body framed by Content-Length.
    let Message::Request(r) = parse("mpart01.dat") else { panic!() };
    assert_eq!(r.body.len(), 553);
    assert!(r.body.contains(&0));
    // §3.1.1.12: UTF-8 reason phrase.
    let Message::Response(r) = parse("unreason.dat") else { panic!() };
    assert!(r.reason.contains("простое"));
    // §3.4.1: RFC 2543 syntax, no branch.
    let Message::Request(r) = parse("inv2543.dat") else { panic!() };
    let info = validate_request(&r).unwrap();
    assert_eq!(info.rfc3261_branch(), None);
    assert_eq!(info.from.tag(), None);
}

#[test]
fn rfc4475_over_a_stream() {
    // The same messages through the stream framer: valid ones come out whole.
    for file in ["wsinv.dat", "mpart01.dat", "longreq.dat", "intmeth.dat"] {
        let data = read("rfc4475", file);
        let mut p = StreamParser::new(Limits::default());
        // Byte by byte for the smallest reads a stream can deliver.
        let mut got = None;
        for b in &data {
            p.push(std::slice::from_ref(b));
            if let StreamItem::Message(m) = p.next_item().unwrap() {
                got = Some(m);
            }
        }
        let m = got.unwrap_or_else(|| panic!("{file}: no message"));
        let expected = match parse_datagram(Bytes::from(data), &Limits::default()).unwrap() {
            Datagram::Message(m) => m,
            Datagram::KeepAlive => unreachable!(),
        };
        assert_eq!(m, expected, "{file}");
    }
    // Framing errors on a stream.
    for (file, kind) in
        [("ncl.dat", ParseErrorKind::BadContentLength), ("mcl01.dat", ParseErrorKind::ConflictingContentLength)]
    {
        let mut p = StreamParser::new(Limits::default());
        p.push(&read("rfc4475", file));
        assert_eq!(p.next_item().unwrap_err().kind, kind, "{file}");
    }
    // Content-Length larger than what was sent: a stream can only wait (RFC 4475 §3.1.2.2).
    let mut p = StreamParser::new(Limits::default());
    p.push(&read("rfc4475", "clerr.dat"));
    assert!(matches!(p.next_item().unwrap(), StreamItem::NeedMore));
}

#[test]
fn rfc5118_messages_parse() {
    let index = String::from_utf8(read("rfc5118", "INDEX.tsv")).unwrap();
    for line in index.lines().filter(|l| !l.starts_with('#')) {
        let mut cols = line.split('\t');
        let (file, verdict) = (cols.next().unwrap(), cols.nth(2).unwrap());
        let (got, kind) = verdict_of(&read("rfc5118", file));
        if verdict == "INVALID" {
            assert_eq!(got, Verdict::Reject(400), "{file}: {kind:?}");
        } else {
            assert_eq!(got, Verdict::Ok, "{file}: {kind:?}");
        }
    }
    let uri_of = |f: &str| match parse_datagram(Bytes::from(read("rfc5118", f)), &Limits::default()).unwrap() {
        Datagram::Message(Message::Request(r)) => r.uri.as_sip().unwrap().clone(),
        _ => panic!(),
    };
    let u = uri_of("port-ambiguous.dat");
    assert_eq!((u.host.to_string().as_str(), u.port), ("[2001:db8::10:5070]", None));
    let u = uri_of("port-unambiguous.dat");
    assert_eq!((u.host.to_string().as_str(), u.port), ("[2001:db8::10]", Some(5070)));
    let Datagram::Message(Message::Request(r)) =
        parse_datagram(Bytes::from(read("rfc5118", "via-received-param-with-delim.dat")), &Limits::default()).unwrap()
    else {
        panic!()
    };
    assert_eq!(r.top_via().unwrap().unwrap().received(), Some("2001:db8::9:255"));
    let Datagram::Message(Message::Request(r)) =
        parse_datagram(Bytes::from(read("rfc5118", "mult-ip-in-header.dat")), &Limits::default()).unwrap()
    else {
        panic!()
    };
    let vias: Vec<_> = r.vias().map(|v| v.unwrap()).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].port, Some(6050));
    assert_eq!(vias[2].received(), Some("192.0.2.200"));
}

#[test]
fn every_torture_message_survives_parse_emit_parse() {
    for set in ["rfc4475", "rfc5118"] {
        for entry in std::fs::read_dir(shared().join("testdata").join(set)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("dat") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            let Ok(Datagram::Message(m)) = parse_datagram(Bytes::from(data), &Limits::default()) else {
                continue;
            };
            let wire = m.to_bytes();
            let Ok(Datagram::Message(again)) = parse_datagram(Bytes::from(wire), &Limits::default()) else {
                panic!("{}: emitted form does not parse", path.display())
            };
            assert_eq!(m, again, "{}", path.display());
        }
    }
}

#[test]
fn two_requests_in_one_stream_read() {
    // RFC 4475 §3.1.1.8 sent over a stream: a REGISTER, then an INVITE.
    let mut p = StreamParser::new(Limits::default());
    p.push(&read("rfc4475", "dblreq.dat"));
    let mut methods = Vec::new();
    loop {
        match p.next_item() {
            Ok(StreamItem::Message(Message::Request(r))) => methods.push(r.method.to_string()),
            Ok(StreamItem::Message(Message::Response(_))) => panic!("response"),
            Ok(StreamItem::Ping) => methods.push("ping".into()),
            Ok(StreamItem::NeedMore) => panic!("the INVITE's body is 5 bytes longer than its Content-Length"),
            Err(_) => break,
        }
    }
    // Both requests come out; the 5 octets left over then break the framing.
    assert_eq!(methods, ["REGISTER", "INVITE"]);
}
