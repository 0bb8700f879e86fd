//! Calls between SIPp instances through the real server: SIPp caller → Switchboard →
//! SIPp callee registered as 1002, with RTP both ways through the relay (the caller plays a
//! PCMA capture, the callee echoes it with -rtp_echo; tshark counts what reaches the caller).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, Setup, TempDir, scenario, write_csv};
use testkit::ports;
use testkit::sipp::{Scenario, Sipp, SippOptions, SippOutcome};

fn opts(file: &str, target: Option<SocketAddr>) -> SippOptions {
    let mut o = SippOptions::new(Scenario::File(scenario(file)));
    o.target = target;
    o
}

fn caller_csv(dir: &Path, rows: usize, callee: &str) -> PathBuf {
    let path = dir.join("callers.csv");
    let rows: Vec<Vec<String>> = (0..rows)
        .map(|_| {
            vec![
                "1001".into(),
                "acme.test".into(),
                "[authentication username=1001 password=secret-1001]".into(),
                callee.into(),
            ]
        })
        .collect();
    write_csv(&path, &rows);
    path
}

/// Registers extension `ext` from `port`, so calls to it reach a SIPp callee on that port.
fn register(server: &Server, dir: &Path, ext: &str, port: u16) {
    let csv = dir.join(format!("reg-{ext}.csv"));
    write_csv(
        &csv,
        &[vec![
            ext.into(),
            "acme.test".into(),
            format!("[authentication username={ext} password=secret-{ext}]"),
            "300".into(),
        ]],
    );
    let mut o = opts("register.xml", Some(server.sip));
    o.inf = vec![csv];
    o.local_port = Some(port);
    let out = Sipp::run(o).unwrap();
    assert!(out.all_succeeded(), "callee registration failed:\n{out}");
}

/// A SIPp callee answering `calls` calls with `file`, echoing the RTP it receives.
fn callee(file: &str, port: u16, media_port: u16, calls: u64) -> Sipp {
    spawn_callee(scenario(file), port, media_port, calls, &["-rtp_echo"])
}

/// A SIPp callee running any scenario file, with extra arguments.
fn spawn_callee(file: PathBuf, port: u16, media_port: u16, calls: u64, extra_args: &[&str]) -> Sipp {
    let mut o = SippOptions::new(Scenario::File(file));
    o.local_port = Some(port);
    o.media_port = Some(media_port);
    o.calls = Some(calls);
    o.timeout = Duration::from_secs(120);
    o.extra_args = extra_args.iter().map(|a| (*a).to_owned()).collect();
    Sipp::spawn(o).unwrap()
}

fn caller(file: &str, server: &Server, csv: PathBuf, calls: u64, rate: f64, media_port: u16) -> SippOutcome {
    run_caller(scenario(file), server, csv, calls, rate, media_port)
}

/// A SIPp caller running any scenario file.
fn run_caller(file: PathBuf, server: &Server, csv: PathBuf, calls: u64, rate: f64, media_port: u16) -> SippOutcome {
    let mut o = SippOptions::new(Scenario::File(file));
    o.target = Some(server.sip);
    o.inf = vec![csv];
    o.calls = Some(calls);
    o.rate = Some(rate);
    o.media_port = Some(media_port);
    o.timeout = Duration::from_secs(120);
    Sipp::run(o).unwrap()
}

/// Ports of a SIPp caller and callee, the callee registered as 1002 from `uas_port`.
struct Peers {
    uas_port: u16,
    uas_media: u16,
    uac_media: u16,
    _reserved: (ports::PortBlock, ports::PortBlock),
}

impl Peers {
    fn register(server: &Server, dir: &Path) -> Peers {
        let peers = ports::reserve(common::SERVER_PORTS, 1).unwrap();
        let media = ports::reserve(ports::RTP_PORTS, 8).unwrap();
        let (uas_port, uas_media, uac_media) = (peers.first(), media.port(0), media.port(4));
        register(server, dir, "1002", uas_port);
        Peers { uas_port, uas_media, uac_media, _reserved: (peers, media) }
    }
}

/// A copy of the bundled scenario `base`, edited, written to `dir/name`.
fn edited_scenario(dir: &Path, base: &str, name: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, edit(std::fs::read_to_string(scenario(base)).unwrap())).unwrap();
    path
}

/// uac.xml (PCMA only, no telephone-event) playing `pcap` instead of SIPp's speech recording.
fn caller_playing(dir: &Path, pcap: &Path) -> PathBuf {
    edited_scenario(dir, "uac.xml", "uac_playing.xml", |t| {
        t.replace("/usr/share/sip-tester/g711a.pcap", &pcap.display().to_string())
    })
}

/// Both SIPp sides completed every call.
fn assert_succeeded(caller: &SippOutcome, callee: &SippOutcome) {
    assert!(caller.all_succeeded(), "caller:\n{caller}");
    assert!(callee.all_succeeded(), "callee:\n{callee}");
}

/// A steady tone of `ms` at 8 kHz, −10 dBm0.
fn tone_8k(freq: f64, ms: usize) -> Vec<i16> {
    use audio::tone::{ToneGenerator, ToneSpec};
    let mut samples = vec![0i16; 8 * ms];
    let spec = ToneSpec { components: vec![(freq, -10.0)], cadence_ms: vec![], repeat: true };
    ToneGenerator::new(&spec, 8000).fill(&mut samples);
    samples
}

/// tshark counting UDP packets sent by the relay to one port.
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    fn start(dir: &Path, filter: &str) -> Capture {
        Capture::start_named(dir, "capture.pcap", filter)
    }

    /// A capture into `name`, in the classic pcap format.
    fn start_named(dir: &Path, name: &str, filter: &str) -> Capture {
        let file = dir.join(name);
        let mut child = Command::new("tshark")
            .args(["-i", "lo", "-q", "-F", "pcap", "-f", filter, "-w"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tshark not installed (Debian package tshark)");
        // Wait until it captures.
        let deadline = Instant::now() + Duration::from_secs(15);
        while !file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        if let Ok(Some(status)) = child.try_wait() {
            panic!("tshark exited: {status}");
        }
        Capture { child, file }
    }

    /// Stops the capture and gives the file.
    fn finish(mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill").arg("-INT").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        self.file.clone()
    }

    fn packets(mut self) -> u64 {
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill").arg("-INT").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&self.file)
            .args(["-T", "fields", "-e", "frame.number"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count() as u64
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_hundred_calls_with_rtp_both_ways() {
    // 600 relay ports for 200 calls of 4 ports each: only enough if ports come back.
    let server = Server::start(Setup { rtp_ports: 600, ..Setup::default() });
    let dir = TempDir::new("calls");
    let peers = Peers::register(&server, &dir.0);
    let (uas_port, uas_media, uac_media) = (peers.uas_port, peers.uas_media, peers.uac_media);
    let uas = callee("uas.xml", uas_port, uas_media, 200);
    let capture = Capture::start(
        &dir.0,
        &format!("udp and dst port {uac_media} and src portrange {}-{}", server.rtp.0, server.rtp.1),
    );
    let out = caller("uac.xml", &server, caller_csv(&dir.0, 200, "1002"), 200, 40.0, uac_media);
    let uas_out = uas.wait(Duration::from_secs(60)).unwrap();
    let received = capture.packets();
    assert!(out.all_succeeded() && out.successful == 200, "caller:\n{out}");
    assert!(uas_out.all_succeeded() && uas_out.successful == 200, "callee:\n{uas_out}");
    // The callee's echo comes back through the relay: about 33 packets/s for 2 s per call.
    assert!(received > 200 * 20, "the caller received only {received} RTP packets from the relay");

    let cdrs = server.wait_cdrs(200, Duration::from_secs(10));
    assert_eq!(cdrs.len(), 200);
    for c in &cdrs {
        assert_eq!(c["disposition"], "answered", "{c}");
        assert_eq!(c["initiator"], "caller", "{c}");
        assert_eq!(
            (c["caller"].as_str(), c["callee"].as_str(), c["tenant"].as_str()),
            (Some("1001"), Some("1002"), Some("acme"))
        );
        assert!(c["packets_a_to_b"].as_i64().unwrap() > 10, "{c}");
        assert!(c["packets_b_to_a"].as_i64().unwrap() > 10, "{c}");
        assert!(c["billable_s"].as_f64().unwrap() >= 1.5, "{c}");
    }
}

#[test]
fn caller_cancels_before_answer() {
    let server = Server::start(Setup::default());
    let dir = TempDir::new("cancel");
    let peers = Peers::register(&server, &dir.0);
    let uas = callee("uas_ring.xml", peers.uas_port, peers.uas_media, 5);
    let out = caller("uac_cancel.xml", &server, caller_csv(&dir.0, 5, "1002"), 5, 5.0, peers.uac_media);
    let uas_out = uas.wait(Duration::from_secs(30)).unwrap();
    assert!(out.all_succeeded() && out.successful == 5, "caller:\n{out}");
    assert!(uas_out.all_succeeded() && uas_out.successful == 5, "callee:\n{uas_out}");
    let cdrs = server.wait_cdrs(5, Duration::from_secs(5));
    assert!(cdrs.iter().all(|c| c["disposition"] == "cancelled" && c["initiator"] == "caller"), "{cdrs:?}");
}

#[test]
fn busy_callee_gives_486() {
    let server = Server::start(Setup::default());
    let dir = TempDir::new("busy");
    let peers = Peers::register(&server, &dir.0);
    let uas = callee("uas_busy.xml", peers.uas_port, peers.uas_media, 5);
    let out = caller("uac_busy.xml", &server, caller_csv(&dir.0, 5, "1002"), 5, 5.0, peers.uac_media);
    let uas_out = uas.wait(Duration::from_secs(30)).unwrap();
    assert!(out.all_succeeded() && out.successful == 5, "caller:\n{out}");
    assert!(uas_out.all_succeeded(), "callee:\n{uas_out}");
    let cdrs = server.wait_cdrs(5, Duration::from_secs(5));
    assert!(cdrs.iter().all(|c| c["disposition"] == "busy" && c["hangup_status"] == 486), "{cdrs:?}");
}

#[test]
fn callee_hangs_up() {
    let server = Server::start(Setup::default());
    let dir = TempDir::new("byecallee");
    let peers = Peers::register(&server, &dir.0);
    let uas = callee("uas_bye.xml", peers.uas_port, peers.uas_media, 5);
    let out = caller("uac_callee_hangs_up.xml", &server, caller_csv(&dir.0, 5, "1002"), 5, 5.0, peers.uac_media);
    let uas_out = uas.wait(Duration::from_secs(30)).unwrap();
    assert!(out.all_succeeded() && out.successful == 5, "caller:\n{out}");
    assert!(uas_out.all_succeeded() && uas_out.successful == 5, "callee:\n{uas_out}");
    let cdrs = server.wait_cdrs(5, Duration::from_secs(5));
    assert!(cdrs.iter().all(|c| c["disposition"] == "answered" && c["initiator"] == "callee"), "{cdrs:?}");
}

#[test]
fn hold_and_resume_with_reinvite() {
    let server = Server::start(Setup::default());
    let dir = TempDir::new("hold");
    let peers = Peers::register(&server, &dir.0);
    let uas = callee("uas.xml", peers.uas_port, peers.uas_media, 3);
    let out = caller("uac_hold.xml", &server, caller_csv(&dir.0, 3, "1002"), 3, 3.0, peers.uac_media);
    let uas_out = uas.wait(Duration::from_secs(30)).unwrap();
    assert!(out.all_succeeded() && out.successful == 3, "caller:\n{out}");
    assert!(uas_out.all_succeeded() && uas_out.successful == 3, "callee:\n{uas_out}");
    let cdrs = server.wait_cdrs(3, Duration::from_secs(5));
    assert!(cdrs.iter().all(|c| c["disposition"] == "answered"), "{cdrs:?}");
}

#[test]
fn unknown_and_unregistered_callees() {
    let server = Server::start(Setup::default());
    let dir = TempDir::new("unreachable");
    let media = ports::reserve(ports::RTP_PORTS, 4).unwrap();
    // 1003 exists but has no phone registered: 480. 4444 does not exist: 404. SIPp counts
    // the unexpected final response as a failed call; the trace says which it was.
    for (callee, status) in [("1003", "480"), ("4444", "404")] {
        let out = caller("uac.xml", &server, caller_csv(&dir.0, 1, callee), 1, 1.0, media.port(0));
        assert_eq!(out.failed, 1, "{out}");
        assert!(
            out.errors.contains(&format!("SIP/2.0 {status}")) || out.screen.contains(status),
            "{callee}: expected {status}:\n{out}"
        );
    }
}

#[test]
fn dtmf_by_rfc4733_and_sip_info_reach_call_control() {
    let server = Server::start(Setup::default());
    let dir = TempDir::new("dtmf");
    let peers = Peers::register(&server, &dir.0);
    let (uas_port, uas_media, uac_media) = (peers.uas_port, peers.uas_media, peers.uac_media);
    let uas = callee("uas_info.xml", uas_port, uas_media, 1);
    let out = caller("uac_dtmf.xml", &server, caller_csv(&dir.0, 1, "1002"), 1, 1.0, uac_media);
    assert_succeeded(&out, &uas.wait(Duration::from_secs(30)).unwrap());
    server.wait_cdrs(1, Duration::from_secs(10));
    let log = server.log();
    // The callee echoes its RTP (-rtp_echo), events included: count the caller's digits.
    let digits: Vec<&str> = log.lines().filter(|l| l.contains(" dtmf ") && l.contains("leg=\"caller\"")).collect();
    // Digit 1 as RFC 4733 events: 2,240 units at 8 kHz = 280 ms, from the caller.
    assert!(
        digits.iter().any(|l| l.contains("digit=1") && l.contains("duration_ms=280") && l.contains("rfc4733")),
        "no RFC 4733 digit 1 of 280 ms:\n{}",
        digits.join("\n")
    );
    // Digit 5 by SIP INFO, 160 ms.
    assert!(
        digits.iter().any(|l| l.contains("digit=5") && l.contains("duration_ms=160") && l.contains("info")),
        "no INFO digit 5:\n{}",
        digits.join("\n")
    );
    assert_eq!(digits.len(), 2, "{}", digits.join("\n"));
}

/// A pcap of PCMA RTP, 20 ms packets, playing `digits` as DTMF tones (100 ms each, 100 ms of
/// silence between), for SIPp's `play_pcap_audio`.
fn dtmf_tones_pcap(path: &Path, digits: &str) {
    use audio::tone::{ToneGenerator, dtmf_spec};
    let mut samples = vec![0i16; 800];
    for digit in digits.chars() {
        let mut tone = vec![0i16; 800];
        ToneGenerator::new(&dtmf_spec(digit, 100).unwrap(), 8000).fill(&mut tone);
        samples.extend(tone);
        samples.extend([0i16; 800]);
    }
    pcma_pcap(path, &samples);
}

/// A pcap of `samples` (8 kHz) as PCMA RTP in 20 ms packets, for SIPp's `play_pcap_audio`.
fn pcma_pcap(path: &Path, samples: &[i16]) {
    use audio::g711::Law;
    let mut pcap = Vec::new();
    pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend_from_slice(&2u16.to_le_bytes());
    pcap.extend_from_slice(&4u16.to_le_bytes());
    for word in [0u32, 0, 65535, 1] {
        pcap.extend_from_slice(&word.to_le_bytes());
    }
    let mut payload = Vec::new();
    for (i, frame) in samples.chunks(160).enumerate() {
        Law::Alaw.encode(frame, &mut payload);
        let mut rtp = vec![0x80, 8];
        rtp.extend_from_slice(&(i as u16).to_be_bytes());
        rtp.extend_from_slice(&((i * 160) as u32).to_be_bytes());
        rtp.extend_from_slice(&0x5eed_0001u32.to_be_bytes());
        rtp.extend_from_slice(&payload);
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut frame_bytes = vec![0u8; 12];
        frame_bytes.extend_from_slice(&[0x08, 0x00]);
        frame_bytes.extend_from_slice(&[0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        frame_bytes.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
        frame_bytes.extend_from_slice(&[0x0f, 0xa0, 0x13, 0x88, (udp_len >> 8) as u8, udp_len as u8, 0, 0]);
        frame_bytes.extend_from_slice(&rtp);
        let micros = i as u32 * 20_000;
        for word in [micros / 1_000_000, micros % 1_000_000, frame_bytes.len() as u32, frame_bytes.len() as u32] {
            pcap.extend_from_slice(&word.to_le_bytes());
        }
        pcap.extend_from_slice(&frame_bytes);
    }
    std::fs::write(path, pcap).unwrap();
}

#[test]
fn in_band_dtmf_tones_are_heard_on_a_leg_without_telephone_events() {
    let server = Server::start(Setup::default());
    let dir = TempDir::new("inband");
    let pcap = dir.0.join("tones.pcap");
    dtmf_tones_pcap(&pcap, "4#9");
    let uac = caller_playing(&dir.0, &pcap);
    let peers = Peers::register(&server, &dir.0);
    let (uas_port, uas_media, uac_media) = (peers.uas_port, peers.uas_media, peers.uac_media);
    let uas = callee("uas.xml", uas_port, uas_media, 1);
    let out = run_caller(uac, &server, caller_csv(&dir.0, 1, "1002"), 1, 1.0, uac_media);
    assert_succeeded(&out, &uas.wait(Duration::from_secs(30)).unwrap());
    server.wait_cdrs(1, Duration::from_secs(10));
    let log = server.log();
    let heard: Vec<&str> =
        log.lines().filter(|l| l.contains(" dtmf ") && l.contains("leg=\"caller\"") && l.contains("inband")).collect();
    let digits: String =
        heard.iter().filter_map(|l| l.split("digit=").nth(1).and_then(|rest| rest.chars().next())).collect();
    assert_eq!(digits, "4#9", "{}", heard.join("\n"));
    for line in &heard {
        let ms: u32 =
            line.split("duration_ms=").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
        assert!((75..=115).contains(&ms), "tone of 100 ms heard as {ms} ms: {line}");
    }
}

#[test]
fn no_dtmf_heard_in_recorded_speech() {
    // Talk-off on real speech: SIPp's PCMA recording (30 ms packets), decoded and fed to the
    // detector the relay uses, finds no digit.
    let pcap = std::fs::read("/usr/share/sip-tester/g711a.pcap").expect("sip-tester not installed");
    let mut samples = Vec::new();
    let mut decoded = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &pcap[at + 16..(at + 16 + len).min(pcap.len())];
        if frame.len() > 54 {
            audio::g711::Law::Alaw.decode(&frame[54..], &mut decoded);
            samples.extend_from_slice(&decoded);
        }
        at += 16 + len;
    }
    assert!(samples.len() > 8000 * 5, "only {} samples of speech", samples.len());
    assert!(audio::analysis::rms(&samples) > 300.0, "the recording is not speech");
    assert_eq!(audio::dtmf::detect_all(&samples), vec![]);
}

/// RTP payloads (payload type, bytes) of the UDP packets in a classic pcap of Ethernet frames.
fn rtp_in_pcap(path: &Path) -> Vec<(u8, Vec<u8>)> {
    rtp_streams_in_pcap(path).into_iter().map(|(_, pt, payload)| (pt, payload)).collect()
}

/// (SSRC, payload type, payload) of the RTP packets in a classic pcap of Ethernet frames.
fn rtp_streams_in_pcap(path: &Path) -> Vec<(u32, u8, Vec<u8>)> {
    let pcap = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &pcap[at + 16..(at + 16 + len).min(pcap.len())];
        if frame.len() > 54 {
            let ssrc = u32::from_be_bytes(frame[50..54].try_into().unwrap());
            out.push((ssrc, frame[43] & 0x7F, frame[54..].to_vec()));
        }
        at += 16 + len;
    }
    out
}

#[test]
fn callee_with_another_codec_is_transcoded_both_ways() {
    use audio::analysis::dominant_frequency;
    use audio::g711::Law;
    let server = Server::start(Setup::default());
    let dir = TempDir::new("transcode");
    // The caller offers PCMA only and plays 1 kHz; the callee answers PCMU only and echoes.
    let pcap = dir.0.join("tone.pcap");
    pcma_pcap(&pcap, &tone_8k(1000.0, 2000));
    let uac = caller_playing(&dir.0, &pcap);
    let uas_file = edited_scenario(&dir.0, "uas.xml", "uas_pcmu.xml", |t| {
        t.replace("RTP/AVP 8", "RTP/AVP 0").replace("a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000")
    });
    let peers = Peers::register(&server, &dir.0);
    let (uas_port, uas_media, uac_media) = (peers.uas_port, peers.uas_media, peers.uac_media);
    let uas = spawn_callee(uas_file, uas_port, uas_media, 1, &["-rtp_echo"]);
    let to_callee = Capture::start_named(&dir.0, "callee.pcap", &format!("udp and dst port {uas_media}"));
    let to_caller = Capture::start_named(&dir.0, "caller.pcap", &format!("udp and dst port {uac_media}"));
    let out = run_caller(uac, &server, caller_csv(&dir.0, 1, "1002"), 1, 1.0, uac_media);
    assert_succeeded(&out, &uas.wait(Duration::from_secs(30)).unwrap());
    let (callee_file, caller_file) = (to_callee.finish(), to_caller.finish());

    for (file, pt, law, who) in [(callee_file, 0u8, Law::Ulaw, "callee"), (caller_file, 8, Law::Alaw, "caller")] {
        let packets = rtp_in_pcap(&file);
        assert!(packets.len() > 50, "{who} received {} packets", packets.len());
        assert!(
            packets.iter().all(|(p, _)| *p == pt),
            "{who} got payload types {:?}",
            packets.iter().map(|p| p.0).collect::<std::collections::BTreeSet<_>>()
        );
        let mut samples = Vec::new();
        let mut decoded = Vec::new();
        for (_, payload) in &packets {
            law.decode(payload, &mut decoded);
            samples.extend_from_slice(&decoded);
        }
        let found = dominant_frequency(&samples[800..], 8000);
        assert!((found - 1000.0).abs() < 20.0, "{who} heard {found} Hz");
    }
}

#[test]
fn recorded_call_holds_both_parties_tones() {
    use audio::analysis::dominant_frequency;
    let body = format!("[calls]\nrecord = true\n{}", common::ACME);
    let server = Server::start(Setup { body: &body, ..Setup::default() });
    let dir = TempDir::new("record");
    let (caller_pcap, callee_pcap) = (dir.0.join("caller.pcap"), dir.0.join("callee.pcap"));
    pcma_pcap(&caller_pcap, &tone_8k(1000.0, 3000));
    pcma_pcap(&callee_pcap, &tone_8k(2000.0, 3000));
    let uac = caller_playing(&dir.0, &caller_pcap);
    // The callee plays its own tone once the call is up.
    let uas = edited_scenario(&dir.0, "uas.xml", "uas_tone.xml", |t| {
        t.replacen(
            "<recv request=\"ACK\" crlf=\"true\"/>",
            &format!(
                "<recv request=\"ACK\" crlf=\"true\"/>\n  <nop><action><exec play_pcap_audio=\"{}\"/></action></nop>",
                callee_pcap.display()
            ),
            1,
        )
    });
    let peers = Peers::register(&server, &dir.0);
    let (uas_port, uas_media, uac_media) = (peers.uas_port, peers.uas_media, peers.uac_media);
    let callee = spawn_callee(uas, uas_port, uas_media, 1, &[]);
    let out = run_caller(uac, &server, caller_csv(&dir.0, 1, "1002"), 1, 1.0, uac_media);
    assert_succeeded(&out, &callee.wait(Duration::from_secs(30)).unwrap());

    let cdrs = server.wait_cdrs(1, Duration::from_secs(10));
    let path = PathBuf::from(cdrs[0]["recording"].as_str().unwrap_or_else(|| panic!("no recording in {}", cdrs[0])));
    assert!(path.starts_with(server.dir.0.join("data").join("recordings")), "{}", path.display());
    // The writer finishes the file once the call's media is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    let samples = loop {
        let read = hound::WavReader::open(&path).ok().and_then(|mut r| {
            let spec = r.spec();
            let s: Result<Vec<i16>, _> = r.samples::<i16>().collect();
            s.ok().filter(|s| !s.is_empty()).map(|s| (spec, s))
        });
        if let Some((spec, s)) = read {
            assert_eq!((spec.channels, spec.sample_rate), (2, 8000));
            if s.len() >= 2 * 8000 {
                break s;
            }
        }
        assert!(Instant::now() < deadline, "recording {} incomplete", path.display());
        std::thread::sleep(Duration::from_millis(100));
    };
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    let loudest = |ch: &[i16]| {
        // The loudest second of the channel (the tone, not the silence around it).
        ch.chunks(8000).max_by_key(|c| c.iter().map(|&s| i64::from(s).abs()).sum::<i64>()).unwrap().to_vec()
    };
    let (l, r) = (dominant_frequency(&loudest(&left), 8000), dominant_frequency(&loudest(&right), 8000));
    assert!((l - 1000.0).abs() < 20.0, "caller channel: {l} Hz");
    assert!((r - 2000.0).abs() < 40.0, "callee channel: {r} Hz");
}

#[test]
fn music_on_hold_reaches_the_held_party() {
    use audio::analysis::{dominant_frequency, rms};
    use audio::g711::Law;
    let server = Server::start(Setup::default());
    let dir = TempDir::new("moh");
    let peers = Peers::register(&server, &dir.0);
    let (uas_port, uas_media, uac_media) = (peers.uas_port, peers.uas_media, peers.uac_media);
    let uas = callee("uas.xml", uas_port, uas_media, 1);
    let capture = Capture::start_named(&dir.0, "held.pcap", &format!("udp and dst port {uas_media}"));
    // Call, 500 ms of talk, hold (a=sendonly) for 500 ms, resume, BYE.
    let out = caller("uac_hold.xml", &server, caller_csv(&dir.0, 1, "1002"), 1, 1.0, uac_media);
    assert_succeeded(&out, &uas.wait(Duration::from_secs(30)).unwrap());
    let packets = rtp_streams_in_pcap(&capture.finish());
    // The caller's stream (SIPp's capture) is the first SSRC seen; the music has its own.
    let caller_ssrc = packets.first().map(|p| p.0).expect("no RTP reached the callee");
    let music: Vec<&(u32, u8, Vec<u8>)> = packets.iter().filter(|p| p.0 != caller_ssrc).collect();
    assert!(music.len() >= 15, "{} music packets reached the held callee", music.len());
    let mut samples = Vec::new();
    let mut decoded = Vec::new();
    for (_, pt, payload) in &music {
        assert_eq!(*pt, 8, "music in the callee's codec (PCMA)");
        Law::Alaw.decode(payload, &mut decoded);
        samples.extend_from_slice(&decoded);
    }
    assert!(rms(&samples) > 300.0, "the music is silent");
    // The built-in music starts on C5.
    let found = dominant_frequency(&samples[..samples.len().min(2400)], 8000);
    assert!((found - 523.25).abs() < 10.0, "music at {found} Hz");
}

#[test]
fn rfc4733_digits_reach_a_callee_without_telephone_events_as_info() {
    let server = Server::start(Setup::default());
    let dir = TempDir::new("dtmf-info");
    // The callee declares PCMA only: it cannot receive RFC 4733 events.
    let uas = edited_scenario(&dir.0, "uas_info.xml", "uas_no_events.xml", |t| {
        let t = t.replace("RTP/AVP 8 101", "RTP/AVP 8").replace("      a=rtpmap:101 telephone-event/8000\n", "");
        assert!(!t.contains("telephone-event"));
        t
    });
    let trace = dir.0.join("callee-messages.log");
    let peers = Peers::register(&server, &dir.0);
    let (uas_port, uas_media, uac_media) = (peers.uas_port, peers.uas_media, peers.uac_media);
    let trace_arg = trace.display().to_string();
    let callee = spawn_callee(uas, uas_port, uas_media, 1, &["-trace_msg", "-message_file", &trace_arg]);
    // The caller sends digit 1 as RFC 4733 events (280 ms), then digit 5 by INFO.
    let out = caller("uac_dtmf.xml", &server, caller_csv(&dir.0, 1, "1002"), 1, 1.0, uac_media);
    assert_succeeded(&out, &callee.wait(Duration::from_secs(30)).unwrap());
    let messages = std::fs::read_to_string(&trace).unwrap();
    let infos: Vec<&str> = messages.split("INFO sip:").skip(1).collect();
    assert!(
        infos.iter().any(|m| m.contains("Signal=1") && m.contains("Duration=280")),
        "digit 1 did not reach the callee as INFO:\n{messages}"
    );
    assert!(infos.iter().any(|m| m.contains("Signal=5")), "the caller's INFO was not relayed:\n{messages}");
}

/// Digits reach a real phone by the method it takes: SIPp sends digit 1 as RFC 4733 events and
/// digit 5 by SIP INFO; baresip (its SDP declares telephone-event, its user is on `auto`) gets
/// both as RFC 4733 events, the INFO converted by Switchboard and answered there.
#[test]
fn info_digits_reach_a_phone_with_telephone_events_as_rfc4733() {
    use testkit::baresip::{AudioSource, Baresip, BaresipEvent, BaresipOptions};
    let server = Server::start(Setup::default());
    let dir = TempDir::new("dtmf-convert");
    let mut o = BaresipOptions::new("1002", "secret-1002", "acme.test", server.sip);
    o.codec = "PCMA".to_owned();
    o.audio_source = AudioSource::Sine(600);
    let bob = Baresip::spawn(o).unwrap();
    bob.wait_registered(Duration::from_secs(10)).unwrap();
    let media = ports::reserve(ports::RTP_PORTS, 4).unwrap();
    let out = caller("uac_dtmf.xml", &server, caller_csv(&dir.0, 1, "1002"), 1, 1.0, media.port(0));
    assert_eq!(out.successful, 1, "{out}");
    bob.wait_closed(Duration::from_secs(10)).unwrap();
    let digits: Vec<String> = bob
        .events()
        .into_iter()
        .filter_map(|e| match e {
            BaresipEvent::Other { kind, param } if kind == "CALL_DTMF_START" => Some(param),
            _ => None,
        })
        .collect();
    assert_eq!(digits, vec!["1".to_owned(), "5".to_owned()], "baresip's DTMF:\n{}", bob.log());
    // The INFO was answered by Switchboard, not passed on.
    assert!(!bob.log().contains("INFO sip:"), "the INFO reached the phone");
}
