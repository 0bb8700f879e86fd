//! Transport and media behaviour end to end: a request too large for UDP goes over TCP, idle
//! TCP connections are closed, silent calls are ended by the media timeout.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, Setup, TempDir, scenario, write_csv};
use testkit::baresip::{AudioSource, Baresip, BaresipOptions};
use testkit::ports;
use testkit::sipp::{Scenario, Sipp, SippOptions};

fn caller_csv(dir: &std::path::Path) -> std::path::PathBuf {
    let csv = dir.join("caller.csv");
    write_csv(
        &csv,
        &[vec![
            "1001".into(),
            "acme.test".into(),
            "[authentication username=1001 password=secret-1001]".into(),
            "1002".into(),
        ]],
    );
    csv
}

#[test]
fn large_invite_goes_to_the_callee_over_tcp() {
    let server = Server::start(Setup::default());
    let dir = TempDir::new("large");
    // The callee registers over UDP; baresip also listens on TCP on the same port.
    let mut o = BaresipOptions::new("1002", "secret-1002", "acme.test", server.sip);
    o.audio_source = AudioSource::Sine(440);
    // The SIPp caller offers PCMA only.
    o.codec = "PCMA".into();
    let bob = Baresip::spawn(o).unwrap();
    bob.wait_registered(Duration::from_secs(10)).unwrap();
    let port = bob.sip_port();
    let pcap = dir.0.join("tcp.pcap");
    let mut tshark = Command::new("tshark")
        .args(["-i", "lo", "-q", "-f", &format!("tcp and dst port {port}"), "-w"])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pcap.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let media = ports::reserve(ports::RTP_PORTS, 4).unwrap();
    let mut c = SippOptions::new(Scenario::File(scenario("uac_large.xml")));
    c.target = Some(server.sip);
    c.inf = vec![caller_csv(&dir.0)];
    c.media_port = Some(media.port(0));
    let out = Sipp::run(c).unwrap();
    let _ = Command::new("kill").arg("-INT").arg(tshark.id().to_string()).status();
    let _ = tshark.wait();
    assert!(out.all_succeeded(), "the large call failed:\n{out}");
    let inv =
        Command::new("tshark").arg("-r").arg(&pcap).args(["-Y", "frame contains \"INVITE sip:\""]).output().unwrap();
    let invites = String::from_utf8_lossy(&inv.stdout).lines().count();
    assert!(invites >= 1, "no INVITE reached the callee over TCP");
}

#[test]
fn idle_tcp_connections_are_closed() {
    let server = Server::start(Setup { sip_extra: "tcp_idle_timeout_secs = 1", ..Setup::default() });
    let mut s = TcpStream::connect(server.sip).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(usize::MAX);
    assert_eq!(n, 0, "expected the server to close the idle connection");
    assert!(
        start.elapsed() >= Duration::from_millis(900) && start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn silent_answered_calls_end_with_bye_on_both_legs() {
    let server = Server::start(Setup { media_extra: "media_timeout_secs = 2", ..Setup::default() });
    let dir = TempDir::new("silent");
    let peer = ports::reserve(common::SERVER_PORTS, 1).unwrap();
    let media = ports::reserve(ports::RTP_PORTS, 8).unwrap();
    let reg_csv = dir.0.join("reg.csv");
    write_csv(
        &reg_csv,
        &[vec![
            "1002".into(),
            "acme.test".into(),
            "[authentication username=1002 password=secret-1002]".into(),
            "300".into(),
        ]],
    );
    let mut r = SippOptions::new(Scenario::File(scenario("register.xml")));
    r.target = Some(server.sip);
    r.inf = vec![reg_csv];
    r.local_port = Some(peer.first());
    assert!(Sipp::run(r).unwrap().all_succeeded());
    // Neither side sends RTP; both wait for a BYE that only the media timeout sends.
    let mut u = SippOptions::new(Scenario::File(scenario("uas.xml")));
    u.local_port = Some(peer.first());
    u.media_port = Some(media.port(0));
    let callee = Sipp::spawn(u).unwrap();
    let mut c = SippOptions::new(Scenario::File(scenario("uac_callee_hangs_up.xml")));
    c.target = Some(server.sip);
    c.inf = vec![caller_csv(&dir.0)];
    c.media_port = Some(media.port(4));
    let start = Instant::now();
    let caller = Sipp::run(c).unwrap();
    let callee = callee.wait(Duration::from_secs(20)).unwrap();
    assert!(caller.all_succeeded(), "caller got no BYE:\n{caller}");
    assert!(callee.all_succeeded(), "callee got no BYE:\n{callee}");
    assert!(start.elapsed() < Duration::from_secs(9), "took {:?}", start.elapsed());
    let cdrs = server.wait_cdrs(1, Duration::from_secs(5));
    assert_eq!(
        (cdrs[0]["hangup_cause"].as_str(), cdrs[0]["initiator"].as_str()),
        (Some("media timeout"), Some("system"))
    );
}
