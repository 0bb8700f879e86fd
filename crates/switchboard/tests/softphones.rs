//! Real softphones through the real server: both register, one calls the other, the callee
//! answers automatically, the tone each plays from a WAV file arrives at the other end
//! (found by frequency analysis), the caller hangs up, and the CDR records the call.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use common::{Server, Setup, TempDir};
use testkit::audio;
use testkit::baresip::{AudioSource, Baresip, BaresipOptions};
use testkit::linphone::{Linphone, LinphoneOptions};
use testkit::{Transport, ports};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A 30 s tone WAV (baresip 1.0 hangs up when its WAV ends, so it outlasts the call).
fn tone_wav(dir: &Path, hz: f32) -> PathBuf {
    let path = dir.join(format!("tone-{hz}.wav"));
    audio::write_tone_wav(&path, 8000, hz, 0.5, secs(30)).unwrap();
    path
}

fn phone(server: &Server, ext: &str, source: AudioSource, transport: Transport) -> Baresip {
    let mut o = BaresipOptions::new(ext, &format!("secret-{ext}"), "acme.test", server.sip);
    o.audio_source = source;
    o.transport = transport;
    Baresip::spawn(o).unwrap()
}

fn assert_tone(path: &Path, hz: f32, who: &str) {
    let got = audio::read_wav_settled(path, secs(3)).unwrap();
    let report = got.report();
    assert!(report.matches_tone(hz, 0.02), "{who} should have heard {hz} Hz: {report}");
    assert!(report.voiced_fraction > 0.5, "{who}: mostly silence: {report}");
}

fn call_and_hang_up(caller: &Baresip, callee: &Baresip, seconds: u64) {
    caller.dial(callee.aor()).unwrap();
    caller.wait_established(secs(10)).unwrap();
    callee.wait_established(secs(10)).unwrap();
    sleep(secs(seconds));
    caller.hangup().unwrap();
    caller.wait_closed(secs(5)).unwrap();
    callee.wait_closed(secs(5)).unwrap();
}

fn check_cdr(server: &Server, caller: &str, callee: &str, min_seconds: f64) {
    let cdrs = server.wait_cdrs(1, secs(5));
    let c = cdrs
        .iter()
        .find(|c| c["caller"] == caller && c["callee"] == callee)
        .unwrap_or_else(|| panic!("no CDR: {cdrs:?}"));
    assert_eq!(c["disposition"], "answered", "{c}");
    assert_eq!(c["initiator"], "caller", "{c}");
    assert!(c["duration_s"].as_f64().unwrap() >= min_seconds, "{c}");
    assert!(c["billable_s"].as_f64().unwrap() >= min_seconds - 0.5, "{c}");
    assert!(c["packets_a_to_b"].as_i64().unwrap() > 50 && c["packets_b_to_a"].as_i64().unwrap() > 50, "{c}");
}

#[test]
fn two_baresips_hear_each_other_over_udp() {
    let server = Server::start(Setup::default());
    let dir = TempDir::new("baresip");
    let alice = phone(&server, "1001", AudioSource::Wav(tone_wav(&dir.0, 1000.0)), Transport::Udp);
    let bob = phone(&server, "1002", AudioSource::Wav(tone_wav(&dir.0, 440.0)), Transport::Udp);
    alice.wait_registered(secs(10)).unwrap();
    bob.wait_registered(secs(10)).unwrap();
    call_and_hang_up(&alice, &bob, 3);
    assert_tone(&bob.recorded_wav_path().unwrap(), 1000.0, "the callee");
    assert_tone(&alice.recorded_wav_path().unwrap(), 440.0, "the caller");
    check_cdr(&server, "1001", "1002", 3.0);
}

#[test]
fn two_baresips_hear_each_other_over_tcp() {
    let server = Server::start(Setup::default());
    let alice = phone(&server, "1001", AudioSource::Sine(1000), Transport::Tcp);
    let bob = phone(&server, "1002", AudioSource::Sine(600), Transport::Tcp);
    alice.wait_registered(secs(10)).unwrap();
    bob.wait_registered(secs(10)).unwrap();
    call_and_hang_up(&alice, &bob, 3);
    assert_tone(&bob.recorded_wav_path().unwrap(), 1000.0, "the callee");
    assert_tone(&alice.recorded_wav_path().unwrap(), 600.0, "the caller");
    check_cdr(&server, "1001", "1002", 3.0);
}

#[test]
fn linphone_calls_baresip() {
    if !Linphone::is_available() {
        panic!("linphonec is not installed (Debian package linphone-cli)");
    }
    let server = Server::start(Setup::default());
    let dir = TempDir::new("linphone");
    let bob = phone(&server, "1002", AudioSource::Sine(440), Transport::Udp);
    bob.wait_registered(secs(10)).unwrap();
    let sip = ports::reserve(ports::SIP_PORTS, 2).unwrap();
    let mut o = LinphoneOptions::new("1001", "secret-1001", "acme.test", server.sip);
    o.sip_port = Some(sip.first());
    o.play_wav = Some(tone_wav(&dir.0, 1000.0));
    o.record_wav = Some(dir.0.join("alice-heard.wav"));
    let alice = Linphone::spawn(o).unwrap();
    alice.wait_registered(secs(15)).unwrap();
    alice.dial("sip:1002@acme.test").unwrap();
    alice.wait_established(secs(10)).unwrap();
    bob.wait_established(secs(10)).unwrap();
    sleep(secs(3));
    alice.hangup().unwrap();
    bob.wait_closed(secs(5)).unwrap();
    alice.wait_closed(secs(5)).unwrap();
    assert_tone(&bob.recorded_wav_path().unwrap(), 1000.0, "baresip");
    assert_tone(&alice.recorded_wav_path(), 440.0, "linphone");
    check_cdr(&server, "1001", "1002", 3.0);
}

/// baresip with Opus calls baresip with PCMU: no codec in common, so the relay transcodes
/// (Opus at 48 kHz ↔ µ-law at 8 kHz); each tone arrives within 2 %.
#[test]
fn opus_phone_and_pcmu_phone_hear_each_other_through_transcoding() {
    let server = Server::start(Setup::default());
    let mut o = BaresipOptions::new("1001", "secret-1001", "acme.test", server.sip);
    o.codec = "opus".to_owned();
    o.audio_source = AudioSource::Sine(1000);
    let alice = Baresip::spawn(o).unwrap();
    let bob = phone(&server, "1002", AudioSource::Sine(600), Transport::Udp);
    alice.wait_registered(secs(10)).unwrap();
    bob.wait_registered(secs(10)).unwrap();
    call_and_hang_up(&alice, &bob, 3);
    let alice_log = alice.log();
    assert!(alice_log.contains("opus/48000"), "Alice did not use Opus");
    assert_tone(&bob.recorded_wav_path().unwrap(), 1000.0, "the PCMU callee");
    assert_tone(&alice.recorded_wav_path().unwrap(), 600.0, "the Opus caller");
    check_cdr(&server, "1001", "1002", 3.0);
    assert!(server.log().contains("transcod"), "no transcoding in the server log");
}
