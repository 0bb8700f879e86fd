//! Encrypted media through the real server: a baresip phone that insists on SRTP (SDES) calls
//! a plain-RTP baresip; each hears the other's tone; forged SRTP packets sent to the relay are
//! dropped and counted in the CDR; a user whose policy forbids SRTP gets 488, never a call in
//! clear.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use common::{Server, Setup};
use testkit::audio;
use testkit::baresip::{AudioSource, Baresip, BaresipOptions};

const FORGED: u16 = 5;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const TENANT: &str = r#"
[[tenants]]
name = "acme"
domain = "acme.test"
[[tenants.users]]
extension = "1001"
password = "secret-1001"
[[tenants.users]]
extension = "1002"
password = "secret-1002"
[[tenants.users]]
extension = "1003"
password = "secret-1003"
srtp = "off"
"#;

fn phone(server: &Server, ext: &str, hz: u32, srtp: bool) -> Baresip {
    let mut o = BaresipOptions::new(ext, &format!("secret-{ext}"), "acme.test", server.sip);
    o.audio_source = AudioSource::Sine(hz);
    if srtp {
        // SDES-keyed SRTP, mandatory: baresip offers RTP/SAVP and refuses plain media.
        o.extra_account_params.push("mediaenc=srtp-mand".to_owned());
        o.extra_config.push("module srtp.so".to_owned());
    }
    Baresip::spawn(o).unwrap()
}

fn assert_tone(path: &Path, hz: f32, who: &str) {
    let got = audio::read_wav_settled(path, secs(3)).unwrap();
    let report = got.report();
    assert!(report.matches_tone(hz, 0.02), "{who} should have heard {hz} Hz: {report}");
    assert!(report.voiced_fraction > 0.5, "{who}: mostly silence: {report}");
}

/// The relay's RTP port in the SDP Switchboard sent to this phone (from its SIP trace).
fn relay_port_seen_by(phone: &Baresip) -> u16 {
    let log = std::fs::read_to_string(phone.log_path()).unwrap();
    let ours = log.find("o=switchboard").expect("no SDP from Switchboard in the phone's trace");
    let m = log[ours..].find("m=audio ").unwrap() + ours + "m=audio ".len();
    log[m..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn srtp_phone_and_plain_phone_hear_each_other() {
    let server = Server::start(Setup { body: TENANT, ..Setup::default() });
    let alice = phone(&server, "1001", 1000, true);
    let bob = phone(&server, "1002", 600, false);
    alice.wait_registered(secs(10)).unwrap();
    bob.wait_registered(secs(10)).unwrap();
    alice.dial(bob.aor()).unwrap();
    alice.wait_established(secs(10)).unwrap();
    bob.wait_established(secs(10)).unwrap();
    sleep(secs(1));

    // Forged SRTP toward the relay's port on Alice's leg: a valid RTP header, a wrong tag.
    let port = relay_port_seen_by(&alice);
    let forger = UdpSocket::bind("127.0.0.1:0").unwrap();
    for seq in 0..FORGED {
        let mut packet = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
        packet[2..4].copy_from_slice(&(40000 + seq).to_be_bytes());
        packet.extend_from_slice(&[0x55; 170]);
        forger.send_to(&packet, SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
    }
    sleep(secs(2));
    alice.hangup().unwrap();
    alice.wait_closed(secs(5)).unwrap();
    bob.wait_closed(secs(5)).unwrap();

    let log = std::fs::read_to_string(alice.log_path()).unwrap();
    assert!(log.contains("RTP/SAVP"), "Alice did not use SRTP");
    assert_tone(&bob.recorded_wav_path().unwrap(), 1000.0, "the plain callee");
    assert_tone(&alice.recorded_wav_path().unwrap(), 600.0, "the encrypted caller");

    let cdrs = server.wait_cdrs(1, secs(5));
    let c = &cdrs[0];
    assert_eq!(c["disposition"], "answered", "{c}");
    assert_eq!(c["srtp"]["caller"], "AES_CM_128_HMAC_SHA1_80", "{c}");
    assert!(c["srtp"]["callee"].is_null(), "{c}");
    assert_eq!(c["srtp"]["caller_rejected"], 5, "{c}");
    assert!(c["packets_a_to_b"].as_i64().unwrap() > 50 && c["packets_b_to_a"].as_i64().unwrap() > 50, "{c}");
}

#[test]
fn srtp_from_a_user_without_it_is_refused() {
    let server = Server::start(Setup { body: TENANT, ..Setup::default() });
    let carol = phone(&server, "1003", 1000, true);
    let bob = phone(&server, "1002", 600, false);
    carol.wait_registered(secs(10)).unwrap();
    bob.wait_registered(secs(10)).unwrap();
    carol.dial(bob.aor()).unwrap();
    carol.wait_closed(secs(10)).unwrap();
    let log = std::fs::read_to_string(carol.log_path()).unwrap();
    assert!(log.contains("488 Not Acceptable Here"), "Carol was not refused with 488");
    let cdrs = server.wait_cdrs(1, secs(5));
    assert_eq!(cdrs[0]["hangup_status"], 488, "{}", cdrs[0]);
    assert!(cdrs[0]["hangup_cause"].as_str().unwrap().contains("not allowed"), "{}", cdrs[0]);
    // Bob's phone never rang.
    let bob_log = std::fs::read_to_string(bob.log_path()).unwrap();
    assert!(!bob_log.contains("INVITE sip:1002"), "the call reached Bob");
}
