//! RFC 4475 torture messages sent to the real server over UDP and TCP: each is answered as
//! the RFC says (or dropped when it is a response or unanswerable), and the server keeps
//! serving afterwards.
//!
//! The server has a tenant for `example.com`, the domain most of the messages use, so
//! well-formed requests reach the registrar and call control: REGISTERs are challenged
//! (401), INVITEs too (407), OPTIONS answered (200).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Server, Setup, shared, tcp_exchange, tcp_exchange_settle, udp_exchange};

const EXAMPLE: &str = r#"
[[tenants]]
name = "example"
domain = "example.com"
[[tenants.users]]
extension = "user"
password = "torture-password"
[[tenants.users]]
extension = "j.user"
password = "torture-password"
"#;

/// Expected first reply over UDP (`None`: no reply, the message is dropped), and over TCP
/// when it differs.
/// (file, UDP reply, TCP reply when it differs from UDP).
type Expectation = (&'static str, Option<u16>, Option<Option<u16>>);

fn expectations() -> Vec<Expectation> {
    vec![
        // §3.1.1 valid messages
        ("wsinv.dat", Some(481), None),   // To tag: a dialog we do not have
        ("intmeth.dat", Some(501), None), // unknown method
        ("esc01.dat", Some(404), None),   // example.net is not served
        ("escnull.dat", Some(401), None), // REGISTER challenged
        ("esc02.dat", Some(501), None),   // RE%47IST%45R is not REGISTER
        ("lwsdisp.dat", Some(200), None), // OPTIONS
        ("longreq.dat", Some(407), None), // INVITE challenged
        ("dblreq.dat", Some(401), None),  // the trailing INVITE is noise over UDP
        ("semiuri.dat", Some(200), None), // OPTIONS
        ("transports.dat", Some(200), None),
        ("mpart01.dat", Some(405), None), // MESSAGE outside a dialog is not offered yet
        ("unreason.dat", None, None),     // responses are never answered
        ("noreason.dat", None, None),
        // §3.1.2 invalid messages
        ("badinv01.dat", Some(400), None),
        ("clerr.dat", Some(400), Some(None)), // over TCP the server can only wait for the body
        ("ncl.dat", Some(400), None),
        ("scalar02.dat", Some(400), None),
        ("scalarlg.dat", None, None),
        ("quotbal.dat", Some(400), None),
        ("ltgtruri.dat", Some(400), None),
        ("lwsruri.dat", Some(400), None),
        ("lwsstart.dat", Some(400), None),
        ("trws.dat", Some(400), None),
        ("escruri.dat", Some(400), None),
        ("baddate.dat", Some(407), None),  // Date is ignored
        ("regbadct.dat", Some(401), None), // authentication comes before Contact processing
        ("badaspec.dat", Some(400), None),
        ("baddn.dat", Some(400), Some(None)), // no terminating empty line: incomplete on TCP
        ("badvers.dat", Some(505), None),
        ("mismatch01.dat", Some(400), None),
        ("mismatch02.dat", Some(501), None),
        ("bigcode.dat", None, None),
        // §3.2, §3.3 semantic
        ("badbranch.dat", Some(200), None),
        ("insuf.dat", Some(400), None),
        ("unkscm.dat", Some(416), None),
        ("novelsc.dat", Some(416), None),
        ("unksm2.dat", Some(401), None),
        ("bext01.dat", Some(420), None),
        ("invut.dat", Some(415), None),
        ("regaut01.dat", Some(401), None),
        ("multi01.dat", Some(400), None),
        ("mcl01.dat", Some(400), None),
        ("bcast.dat", None, None),
        ("zeromf.dat", Some(200), None), // OPTIONS is for us: processed normally
        ("cparam01.dat", Some(401), None),
        ("cparam02.dat", Some(401), None),
        ("regescrt.dat", Some(401), None),
        ("sdp01.dat", Some(406), None),
        // §3.4
        ("inv2543.dat", Some(407), None),
        // not described by the RFC; no Via, nowhere to answer
        ("test.dat", None, None),
    ]
}

/// The port a UDP reply goes to: the top Via's port, 5060 when absent (no torture message
/// uses rport except mpart01, whose reply goes back to the source port we bind anyway).
fn via_port(data: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let l = line.trim_start();
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("via") || lower.starts_with("v:") || lower.starts_with("v ") {
            let value = l.split_once(':').map(|x| x.1).unwrap_or("");
            if let Some(host) = value
                .split_whitespace()
                .nth(1)
                .or_else(|| value.split('/').nth(2).and_then(|t| t.split_whitespace().nth(1)))
            {
                let host = host.split(';').next().unwrap_or("");
                if let Some((_, p)) = host.rsplit_once(':')
                    && let Ok(p) = p.parse()
                {
                    return p;
                }
            }
            return 5060;
        }
    }
    5060
}

fn status_of(line: &str) -> Option<u16> {
    line.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

#[test]
fn rfc4475_over_udp_and_tcp() {
    let server = Server::start(Setup { body: EXAMPLE, ..Setup::default() });
    let dir = shared().join("testdata/rfc4475");
    let mut failures = Vec::new();
    for (file, udp, tcp) in expectations() {
        let data = std::fs::read(dir.join(file)).unwrap();
        // UDP, from 127.0.0.2 at the Via port, where RFC 3261 §18.2.2 sends the reply.
        let from: SocketAddr = format!("127.0.0.2:{}", via_port(&data)).parse().unwrap();
        let replies =
            udp_exchange(from, server.sip, &data, Duration::from_millis(if udp.is_some() { 1500 } else { 300 }));
        let got = replies.first().and_then(|l| status_of(l));
        if got != udp {
            failures.push(format!("UDP {file}: expected {udp:?}, got {replies:?}"));
        }
        // TCP: replies come back on the connection.
        let data_tcp = if file == "baddn.dat" {
            // The archived file lacks the final empty line; the CRLF-terminated variant is
            // what a stream peer sends.
            std::fs::read(dir.join("variants/baddn.with-terminating-crlf.dat")).unwrap()
        } else {
            data.clone()
        };
        let expected_tcp = match (file, tcp) {
            ("baddn.dat", _) => Some(400),
            (_, Some(t)) => t,
            (_, None) => udp,
        };
        let (lines, _closed) =
            tcp_exchange(server.sip, &data_tcp, Duration::from_millis(if expected_tcp.is_some() { 1500 } else { 300 }));
        let got = lines.first().and_then(|l| status_of(l));
        if got != expected_tcp {
            failures.push(format!("TCP {file}: expected {expected_tcp:?}, got {lines:?}"));
        }
    }
    // Still serving.
    assert!(common::options_ok(server.sip, Duration::from_secs(2)), "server stopped answering");
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn stream_framing_errors_close_the_connection() {
    let server = Server::start(Setup { body: EXAMPLE, ..Setup::default() });
    let dir = shared().join("testdata/rfc4475");
    for file in ["ncl.dat", "mcl01.dat"] {
        let data = std::fs::read(dir.join(file)).unwrap();
        let (lines, closed) = tcp_exchange_settle(server.sip, &data, Duration::from_secs(3), Duration::from_secs(2));
        assert_eq!(lines.first().and_then(|l| status_of(l)), Some(400), "{file}");
        assert!(closed, "{file}: connection left open after a framing error");
    }
    // Two requests on one connection (RFC 4475 §3.1.1.8 over a stream): both answered.
    let (lines, _) =
        tcp_exchange(server.sip, &std::fs::read(dir.join("dblreq.dat")).unwrap(), Duration::from_millis(1500));
    let statuses: Vec<_> = lines.iter().filter_map(|l| status_of(l)).collect();
    assert_eq!(statuses, [401, 407]);
}
