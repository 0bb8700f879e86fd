//! Parse and emit of a typical INVITE (what a softphone sends, with SDP).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use sip::{Datagram, Limits, Message, parse_datagram, validate_request};

const INVITE: &[u8] = b"INVITE sip:1002@acme.test SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bK-524287-1---8a36f0e5c1a7a1f3\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:1001@192.168.1.20:5060;transport=UDP>\r\n\
To: <sip:1002@acme.test>\r\n\
From: \"Alice\" <sip:1001@acme.test>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@192.168.1.20\r\n\
CSeq: 2 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
Content-Type: application/sdp\r\n\
Supported: replaces, norefersub, extended-refer, timer, outbound, path, X-cisco-serviceuri\r\n\
User-Agent: Z 5.6.1 v2.10.20.1\r\n\
Proxy-Authorization: Digest username=\"1001\",realm=\"acme.test\",nonce=\"17f3a9c2b6d1e0a4b8c7d6e5f4a3b2c1\",uri=\"sip:1002@acme.test\",response=\"0b6a5c5d2b1e6b4e8d1f0a9c8b7a6d5e\",cnonce=\"a1b2c3d4\",nc=00000001,qop=auth,algorithm=MD5\r\n\
Content-Length: 236\r\n\
\r\n\
v=0\r\n\
o=Z 0 1 IN IP4 192.168.1.20\r\n\
s=Z\r\n\
c=IN IP4 192.168.1.20\r\n\
t=0 0\r\n\
m=audio 8000 RTP/AVP 106 9 98 101 0 8 3\r\n\
a=rtpmap:106 opus/48000/2\r\n\
a=rtpmap:98 telephone-event/48000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=sendrecv\r\n";

fn bench(c: &mut Criterion) {
    let data = Bytes::from_static(INVITE);
    let limits = Limits::default();
    c.bench_function("parse INVITE", |b| b.iter(|| parse_datagram(black_box(data.clone()), &limits)));
    c.bench_function("parse + validate INVITE", |b| {
        b.iter(|| {
            let Ok(Datagram::Message(Message::Request(r))) = parse_datagram(black_box(data.clone()), &limits) else {
                unreachable!()
            };
            black_box(validate_request(&r).is_ok())
        })
    });
    let Ok(Datagram::Message(msg)) = parse_datagram(data.clone(), &limits) else { unreachable!() };
    let mut out = Vec::with_capacity(2048);
    c.bench_function("emit INVITE", |b| {
        b.iter(|| {
            out.clear();
            if let Message::Request(r) = black_box(&msg) {
                r.encode(&mut out);
            }
            black_box(out.len())
        })
    });
    c.bench_function("parse + validate + emit INVITE", |b| {
        b.iter(|| {
            let Ok(Datagram::Message(Message::Request(r))) = parse_datagram(black_box(data.clone()), &limits) else {
                unreachable!()
            };
            let ok = validate_request(&r).is_ok();
            out.clear();
            r.encode(&mut out);
            black_box((ok, out.len()))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
