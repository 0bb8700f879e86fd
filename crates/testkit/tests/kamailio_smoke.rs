//! Smoke tests of the drivers against Kamailio, a stand-in for Switchboard: real phones register,
//! call each other through it, and the tone one sends is what the other records.
//!
//! They need `kamailio`, `baresip`, `linphonec` and `sipp` installed, so they are ignored by
//! default; run them with
//! `cargo test -p switchboard-testkit --test kamailio_smoke -- --ignored --test-threads=1`.
//! Set `TESTKIT_KEEP_DIRS=1` to keep the peers' directories (configs, logs, recordings).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use testkit::audio;
use testkit::baresip::{AudioSource, Baresip, BaresipOptions};
use testkit::kamailio::{DOMAIN, Kamailio, KamailioOptions};
use testkit::linphone::{Linphone, LinphoneOptions};
use testkit::sipp::{self, Scenario, Sipp, SippOptions};
use testkit::{Error, Transport};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A 30 s tone WAV (longer than any call: baresip 1.0 hangs up when its WAV ends).
fn tone_wav(dir: &Path, hz: f32, rate: u32) -> PathBuf {
    let path = dir.join(format!("tone-{hz}-{rate}.wav"));
    audio::write_tone_wav(&path, rate, hz, 0.5, secs(30)).unwrap();
    path
}

fn kamailio(sha256: bool) -> Kamailio {
    let mut opts = KamailioOptions::new();
    opts.sha256 = sha256;
    Kamailio::spawn(opts).unwrap()
}

fn baresip(kam: &Kamailio, user: &str, source: AudioSource, transport: Transport) -> Baresip {
    let mut opts = BaresipOptions::new(user, &format!("{user}-pw"), DOMAIN, kam.addr());
    opts.audio_source = source;
    opts.transport = transport;
    Baresip::spawn(opts).unwrap()
}

/// Reads a recording and asserts it holds `hz` within 2 %.
fn assert_tone(path: &Path, hz: f32, who: &str) {
    let got = audio::read_wav_settled(path, secs(3)).unwrap();
    let report = got.report();
    eprintln!("{who} recorded {}: {report}", path.display());
    assert!(report.matches_tone(hz, 0.02), "{who} should have heard {hz} Hz: {report}");
    assert!(report.voiced_fraction > 0.5, "{who}: mostly silence: {report}");
    assert!(report.purity > 0.5, "{who}: not a clean tone: {report}");
}

/// One call from `caller` to `callee`, held for 3 s, hung up by the caller.
fn baresip_call(caller: &Baresip, callee: &Baresip) {
    caller.dial(callee.aor()).unwrap();
    caller.wait_established(secs(10)).unwrap();
    callee.wait_established(secs(10)).unwrap();
    sleep(secs(3));
    caller.hangup().unwrap();
    caller.wait_closed(secs(5)).unwrap();
    let reason = callee.wait_closed(secs(5)).unwrap();
    assert!(reason.contains("peer"), "callee close reason: {reason}");
}

#[test]
#[ignore = "needs kamailio and baresip"]
fn baresip_tones_cross_a_call_in_both_directions() {
    let kam = kamailio(false);
    let tmp = tempfile::tempdir().unwrap();
    let alice = baresip(&kam, "alice", AudioSource::Wav(tone_wav(tmp.path(), 1000.0, 8000)), Transport::Udp);
    let bob = baresip(&kam, "bob", AudioSource::Wav(tone_wav(tmp.path(), 440.0, 8000)), Transport::Udp);
    alice.wait_registered(secs(5)).unwrap();
    bob.wait_registered(secs(5)).unwrap();

    // Alice calls Bob: each hears the other's tone.
    baresip_call(&alice, &bob);
    assert_tone(&bob.recorded_wav_path().unwrap(), 1000.0, "bob");
    assert_tone(&alice.recorded_wav_path().unwrap(), 440.0, "alice");
    let first = bob.recorded_wav_path().unwrap();

    // Bob calls Alice (a new recording: names carry the second the call started).
    sleep(secs(1));
    baresip_call(&bob, &alice);
    assert_ne!(bob.recorded_wav_path().unwrap(), first);
    assert_tone(&alice.recorded_wav_path().unwrap(), 440.0, "alice");
    assert_tone(&bob.recorded_wav_path().unwrap(), 1000.0, "bob");
}

#[test]
#[ignore = "needs kamailio and baresip"]
fn baresip_over_tcp_with_sine_sources() {
    let kam = kamailio(false);
    let alice = baresip(&kam, "alice", AudioSource::Sine(1000), Transport::Tcp);
    let bob = baresip(&kam, "bob", AudioSource::Sine(600), Transport::Tcp);
    alice.wait_registered(secs(5)).unwrap();
    bob.wait_registered(secs(5)).unwrap();
    baresip_call(&alice, &bob);
    assert_tone(&bob.recorded_wav_path().unwrap(), 1000.0, "bob");
    assert_tone(&alice.recorded_wav_path().unwrap(), 600.0, "alice");
    assert!(kam.log().contains("REGISTER sip:alice@smoke.test ok"), "kamailio saw the registration");
}

#[test]
#[ignore = "needs kamailio and baresip"]
fn baresip_reports_failures() {
    let kam = kamailio(false);
    // Wrong password: the registrar keeps answering 401.
    let mut opts = BaresipOptions::new("alice", "wrong", DOMAIN, kam.addr());
    opts.audio_source = AudioSource::Sine(1000);
    let bad = Baresip::spawn(opts).unwrap();
    match bad.wait_registered(secs(5)) {
        Err(Error::Failed { detail, .. }) => assert!(detail.contains("401"), "{detail}"),
        other => panic!("expected a refused registration, got {other:?}"),
    }

    // A call to a user that is not registered closes with 404 before being established.
    let bob = baresip(&kam, "bob", AudioSource::Sine(440), Transport::Udp);
    bob.wait_registered(secs(5)).unwrap();
    bob.dial("sip:carol@smoke.test").unwrap();
    match bob.wait_established(secs(5)) {
        Err(Error::Failed { detail, .. }) => assert!(detail.contains("404"), "{detail}"),
        other => panic!("expected a failed call, got {other:?}"),
    }
    // Nothing to wait for: the timeout is reported as such.
    assert!(matches!(bob.wait_incoming(Duration::from_millis(300)), Err(Error::Timeout { .. })));
}

#[test]
#[ignore = "needs kamailio and baresip"]
fn baresip_1_0_cannot_answer_sha256_digest() {
    let kam = kamailio(true);
    let alice = baresip(&kam, "alice", AudioSource::Sine(1000), Transport::Udp);
    match alice.wait_registered(secs(5)) {
        Err(Error::Failed { detail, .. }) => assert!(detail.contains("Function not implemented"), "{detail}"),
        other => panic!("baresip 1.0 was not expected to do SHA-256: {other:?}"),
    }
}

fn linphone(kam: &Kamailio, user: &str, tone: Option<PathBuf>) -> Linphone {
    let mut opts = LinphoneOptions::new(user, &format!("{user}-pw"), DOMAIN, kam.addr());
    opts.play_wav = tone;
    Linphone::spawn(opts).unwrap()
}

#[test]
#[ignore = "needs kamailio and linphonec"]
fn linphone_registers_with_sha256_and_tones_cross_a_call() {
    let kam = kamailio(true);
    let tmp = tempfile::tempdir().unwrap();
    let carol = linphone(&kam, "carol", Some(tone_wav(tmp.path(), 1000.0, 8000)));
    let dave = linphone(&kam, "dave", Some(tone_wav(tmp.path(), 440.0, 8000)));
    carol.wait_registered(secs(5)).unwrap();
    dave.wait_registered(secs(5)).unwrap();
    assert!(carol.log().contains("algorithm=SHA-256"), "the challenge was SHA-256");

    carol.dial(dave.identity()).unwrap();
    carol.wait_established(secs(10)).unwrap();
    dave.wait_established(secs(10)).unwrap();
    sleep(secs(3));
    carol.hangup().unwrap();
    carol.wait_closed(secs(5)).unwrap();
    dave.wait_closed(secs(5)).unwrap();
    assert_tone(&dave.recorded_wav_path(), 1000.0, "dave");
    assert_tone(&carol.recorded_wav_path(), 440.0, "carol");
}

#[test]
#[ignore = "needs kamailio, linphonec and baresip"]
fn linphone_and_baresip_interoperate() {
    let kam = kamailio(false);
    let tmp = tempfile::tempdir().unwrap();
    let carol = linphone(&kam, "carol", Some(tone_wav(tmp.path(), 1000.0, 8000)));
    let bob = baresip(&kam, "bob", AudioSource::Wav(tone_wav(tmp.path(), 440.0, 8000)), Transport::Udp);
    carol.wait_registered(secs(5)).unwrap();
    bob.wait_registered(secs(5)).unwrap();

    // linphonec calls baresip, baresip hangs up.
    carol.dial(bob.aor()).unwrap();
    carol.wait_established(secs(10)).unwrap();
    bob.wait_established(secs(10)).unwrap();
    sleep(secs(3));
    bob.hangup().unwrap();
    bob.wait_closed(secs(5)).unwrap();
    carol.wait_closed(secs(5)).unwrap();
    assert_tone(&bob.recorded_wav_path().unwrap(), 1000.0, "bob");
    assert_tone(&carol.recorded_wav_path(), 440.0, "carol");

    // baresip calls linphonec, which auto-answers.
    let second = tmp.path().join("carol-2.wav");
    carol.set_record_file(&second).unwrap();
    sleep(secs(1));
    bob.dial(carol.identity()).unwrap();
    bob.wait_established(secs(10)).unwrap();
    carol.wait_established(secs(10)).unwrap();
    sleep(secs(3));
    bob.hangup().unwrap();
    bob.wait_closed(secs(5)).unwrap();
    carol.wait_closed(secs(5)).unwrap();
    assert_tone(&second, 440.0, "carol");
    assert_tone(&bob.recorded_wav_path().unwrap(), 1000.0, "bob");
}

#[test]
#[ignore = "needs kamailio, sipp and baresip"]
fn sipp_registers_and_calls_through_kamailio() {
    let kam = kamailio(false);
    let tmp = tempfile::tempdir().unwrap();
    let users = tmp.path().join("users.csv");
    fs::write(
        &users,
        "SEQUENTIAL\n\
         alice;smoke.test;[authentication username=alice password=alice-pw];bob\n\
         carol;smoke.test;[authentication username=carol password=carol-pw];bob\n",
    )
    .unwrap();

    let mut reg = SippOptions::new(Scenario::File(sipp::scenario_path("register-auth.xml")));
    reg.target = Some(kam.addr());
    reg.inf.push(users.clone());
    reg.calls = Some(2);
    reg.rate = Some(10.0);
    reg.timeout = secs(15);
    let outcome = Sipp::run(reg).unwrap();
    assert!(outcome.all_succeeded(), "{outcome}");
    assert_eq!(outcome.successful, 2, "{outcome}");

    // A call from SIPp to an auto-answering baresip, with proxy auth.
    let bob = baresip(&kam, "bob", AudioSource::Sine(440), Transport::Udp);
    bob.wait_registered(secs(5)).unwrap();
    let mut call = SippOptions::new(Scenario::File(sipp::scenario_path("uac-auth.xml")));
    call.target = Some(kam.addr());
    call.inf.push(users);
    call.timeout = secs(20);
    let outcome = Sipp::run(call).unwrap();
    assert!(outcome.all_succeeded(), "{outcome}");
    assert_eq!((outcome.successful, outcome.failed), (1, 0), "{outcome}");
    bob.wait_established(secs(1)).unwrap();
    bob.wait_closed(secs(1)).unwrap();

    // A wrong password is counted as a failed call.
    let bad = tmp.path().join("bad.csv");
    fs::write(&bad, "SEQUENTIAL\nalice;smoke.test;[authentication username=alice password=nope];bob\n").unwrap();
    let mut reg = SippOptions::new(Scenario::File(sipp::scenario_path("register-auth.xml")));
    reg.target = Some(kam.addr());
    reg.inf.push(bad);
    reg.timeout = secs(10);
    let outcome = Sipp::run(reg).unwrap();
    assert!(!outcome.all_succeeded(), "{outcome}");
    assert_eq!(outcome.failed, 1, "{outcome}");
}

#[test]
#[ignore = "needs kamailio, linphonec and baresip"]
fn linphone_over_tcp_and_its_failures() {
    let kam = kamailio(false);
    let tmp = tempfile::tempdir().unwrap();
    // A 1 s WAV: linphonec loops it (with a short pause), so the call outlives it.
    let short = tmp.path().join("short.wav");
    audio::write_tone_wav(&short, 8000, 1000.0, 0.5, secs(1)).unwrap();
    let mut opts = LinphoneOptions::new("carol", "carol-pw", DOMAIN, kam.addr());
    opts.play_wav = Some(short);
    opts.transport = Transport::Tcp;
    let carol = Linphone::spawn(opts).unwrap();
    carol.wait_registered(secs(5)).unwrap();

    let dave = Linphone::spawn(LinphoneOptions::new("dave", "wrong", DOMAIN, kam.addr())).unwrap();
    match dave.wait_registered(secs(8)) {
        Err(Error::Failed { detail, .. }) => assert!(detail.contains("LinphoneRegistrationFailed"), "{detail}"),
        other => panic!("expected a refused registration, got {other:?}"),
    }

    let bob = baresip(&kam, "bob", AudioSource::Sine(440), Transport::Udp);
    bob.wait_registered(secs(5)).unwrap();
    carol.dial("sip:nobody@smoke.test").unwrap();
    assert!(matches!(carol.wait_established(secs(5)), Err(Error::Failed { .. })), "404 expected");
    carol.dial(bob.aor()).unwrap();
    carol.wait_established(secs(10)).unwrap();
    sleep(secs(4));
    carol.hangup().unwrap();
    carol.wait_closed(secs(5)).unwrap();
    bob.wait_closed(secs(5)).unwrap();
    let heard = audio::read_wav_settled(&bob.recorded_wav_path().unwrap(), secs(3)).unwrap().report();
    eprintln!("bob heard: {heard}");
    assert!(heard.matches_tone(1000.0, 0.02), "{heard}");
    assert!(heard.voiced_fraction > 0.5, "{heard}");
    assert_tone(&carol.recorded_wav_path(), 440.0, "carol");
}
