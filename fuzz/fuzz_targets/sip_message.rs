//! SIP datagram parser. Oracle: no panic, and parse → emit → parse gives the same message;
//! the typed header parsers and validation run on whatever parsed.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sip::{Datagram, Limits, Message, parse_datagram, validate_request, validate_response};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok(Datagram::Message(msg)) = parse_datagram(Bytes::copy_from_slice(data), &limits) else { return };
    match &msg {
        Message::Request(r) => {
            let _ = validate_request(r);
            let _ = r.vias().count();
            let _ = r.from_header();
            let _ = r.to_header();
        }
        Message::Response(r) => {
            let _ = validate_response(r);
        }
    }
    for h in msg.headers() {
        let _ = sip::headers::ContactValue::parse_in(&h.value);
        let _ = sip::auth::Credentials::parse(&h.value);
    }
    let wire = msg.to_bytes();
    match parse_datagram(Bytes::from(wire.clone()), &Limits { max_message_size: usize::MAX / 2, ..limits }) {
        Ok(Datagram::Message(again)) => assert_eq!(msg, again, "emitted:\n{}", String::from_utf8_lossy(&wire)),
        other => panic!("emitted form does not parse: {other:?}\n{}", String::from_utf8_lossy(&wire)),
    }
});
