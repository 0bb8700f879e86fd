//! Call quality measured by the relay, with loss and jitter injected on the callee's leg.
//!
//! SIPp calls SIPp through Switchboard; the caller plays a PCMA capture (30 ms packets). The
//! callee's SDP names the port of an impairing echo run by this test: it sends every RTP packet
//! it receives back to where it came from (the relay), 40 ms ± 10 ms later (uniform), and drops a
//! chosen share. The relay must measure on the callee's leg the loss the echo injected and the
//! RFC 3550 jitter of a ±10 ms uniform delay, E|X₁ − X₂| = 20/3 ms, each within 20 %, while the
//! caller's leg stays clean; the MOS estimates must drop accordingly (ITU-T G.107), and a leg
//! whose MOS stays under the threshold must raise a quality alert.
//!
//! (The issue suggests `tc netem` in a network namespace; this machine's kernel is built without
//! netem or the prio qdisc, so the impairment is done in user space, where the test also knows
//! exactly what it injected.)

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Server, Setup, TempDir, scenario, write_csv};
use testkit::ports;
use testkit::sipp::{Scenario, Sipp, SippOptions};

const CALLS: u64 = 12;

/// A packet the echo holds: when to send it, an order number, the bytes and where to.
type Delayed = (Instant, u64, Vec<u8>, SocketAddr);

/// Echoes RTP back to its source after 40 ms ± `jitter_ms`, dropping `loss` of it.
struct ImpairingEcho {
    port: u16,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl ImpairingEcho {
    fn start(port: u16, loss: f64, jitter_ms: f64, seed: u64) -> ImpairingEcho {
        let socket = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (received, dropped) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, r, d) = (Arc::clone(&stop), Arc::clone(&received), Arc::clone(&dropped));
        // The receiving thread decides each packet's fate; this one sends it when due. Sleeping
        // (nanosleep, microsecond precision) rather than a socket timeout (jiffies) keeps the
        // echo's own timing error far below the jitter it injects.
        let sender = socket.try_clone().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>, SocketAddr)>();
        let stop_sending = Arc::clone(&stop);
        let sending = std::thread::spawn(move || {
            let mut queue: BinaryHeap<Reverse<Delayed>> = BinaryHeap::new();
            let mut n = 0u64;
            while !stop_sending.load(Ordering::Relaxed) {
                while let Ok((due, packet, to)) = rx.try_recv() {
                    n += 1;
                    queue.push(Reverse((due, n, packet, to)));
                }
                let now = Instant::now();
                while queue.peek().is_some_and(|Reverse((due, ..))| *due <= now) {
                    if let Some(Reverse((_, _, packet, to))) = queue.pop() {
                        let _ = sender.send_to(&packet, to);
                    }
                }
                let next = queue
                    .peek()
                    .map_or(Duration::from_millis(1), |Reverse((due, ..))| due.saturating_duration_since(now));
                std::thread::sleep(next.min(Duration::from_millis(1)));
            }
        });
        let thread = std::thread::spawn(move || {
            let mut rng = seed.max(1);
            let mut uniform = move || {
                // xorshift64*: reproducible.
                rng ^= rng >> 12;
                rng ^= rng << 25;
                rng ^= rng >> 27;
                (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
            };
            socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if let Ok((len, from)) = socket.recv_from(&mut buf) {
                    let arrived = Instant::now();
                    r.fetch_add(1, Ordering::Relaxed);
                    if uniform() < loss {
                        d.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let delay_ms = 40.0 + (uniform() * 2.0 - 1.0) * jitter_ms;
                    let _ = tx.send((arrived + Duration::from_secs_f64(delay_ms / 1000.0), buf[..len].to_vec(), from));
                }
            }
            let _ = sending.join();
        });
        ImpairingEcho { port, stop, received, dropped, thread: Some(thread) }
    }

    /// Share of packets dropped so far, %.
    fn dropped_pct(&self) -> f64 {
        100.0 * self.dropped.load(Ordering::Relaxed) as f64 / self.received.load(Ordering::Relaxed).max(1) as f64
    }
}

impl Drop for ImpairingEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn opts(file: &str, target: Option<SocketAddr>) -> SippOptions {
    let mut o = SippOptions::new(Scenario::File(scenario(file)));
    o.target = target;
    o
}

fn register_callee(server: &Server, dir: &Path, port: u16) {
    let csv = dir.join("reg.csv");
    let row = vec![
        "1002".into(),
        "acme.test".into(),
        "[authentication username=1002 password=secret-1002]".into(),
        "600".into(),
    ];
    write_csv(&csv, &[row]);
    let mut o = opts("register.xml", Some(server.sip));
    o.inf = vec![csv];
    o.local_port = Some(port);
    let out = Sipp::run(o).unwrap();
    assert!(out.all_succeeded(), "callee registration failed:\n{out}");
}

fn callers_csv(dir: &Path) -> PathBuf {
    let path = dir.join("callers.csv");
    let row = vec![
        "1001".into(),
        "acme.test".into(),
        "[authentication username=1001 password=secret-1001]".into(),
        "1002".into(),
    ];
    write_csv(&path, &vec![row; CALLS as usize]);
    path
}

/// Ports of one round of calls.
struct Peers {
    uas_port: u16,
    uas_media: u16,
    uac_media: u16,
}

/// Runs `CALLS` calls of about 7.5 s, 4 at a time, the callee's media going to `echo`; returns
/// their CDRs.
fn calls(server: &Server, dir: &Path, peers: &Peers, echo: &ImpairingEcho, before: usize) -> Vec<serde_json::Value> {
    let mut o = opts("uas_impaired.xml", None);
    o.local_port = Some(peers.uas_port);
    o.media_port = Some(peers.uas_media);
    o.calls = Some(CALLS);
    o.timeout = Duration::from_secs(120);
    o.extra_args = vec!["-key".into(), "impair_port".into(), echo.port.to_string()];
    let uas = Sipp::spawn(o).unwrap();
    let mut o = opts("uac_long.xml", Some(server.sip));
    o.inf = vec![callers_csv(dir)];
    o.calls = Some(CALLS);
    o.rate = Some(2.0);
    o.media_port = Some(peers.uac_media);
    o.timeout = Duration::from_secs(120);
    o.extra_args = vec!["-l".into(), "4".into()];
    let out = Sipp::run(o).unwrap();
    let uas_out = uas.wait(Duration::from_secs(60)).unwrap();
    assert!(out.all_succeeded() && out.successful == CALLS, "caller:\n{out}");
    assert!(uas_out.all_succeeded(), "callee:\n{uas_out}");
    let cdrs = server.wait_cdrs(before + CALLS as usize, Duration::from_secs(20));
    assert_eq!(cdrs.len(), before + CALLS as usize);
    // Newest first.
    cdrs[..CALLS as usize].to_vec()
}

fn mean(cdrs: &[serde_json::Value], leg: &str, field: &str) -> f64 {
    let values: Vec<f64> = cdrs
        .iter()
        .map(|c| c["quality"][leg][field].as_f64().unwrap_or_else(|| panic!("no {leg} {field} in {c}")))
        .collect();
    values.iter().sum::<f64>() / values.len() as f64
}

#[test]
fn relay_measures_injected_loss_and_jitter() {
    let server =
        Server::start(Setup { rtp_ports: 100, media_extra: "quality_interval_secs = 1\n", ..Setup::default() });
    let dir = TempDir::new("quality");
    let block = ports::reserve(common::SERVER_PORTS, 1).unwrap();
    let media = ports::reserve(ports::RTP_PORTS, 12).unwrap();
    let peers = Peers { uas_port: block.first(), uas_media: media.port(0), uac_media: media.port(4) };
    register_callee(&server, &dir.0, peers.uas_port);

    // A clean echo first (no loss, no jitter): both legs clean, the best MOS, no alert.
    let clean_echo = ImpairingEcho::start(media.port(8), 0.0, 0.0, 1);
    let clean = calls(&server, &dir.0, &peers, &clean_echo, 0);
    drop(clean_echo);
    for leg in ["caller", "callee"] {
        assert!(mean(&clean, leg, "loss_pct") < 0.2, "{leg}: {clean:?}");
        assert!(mean(&clean, leg, "jitter_ms") < 2.0, "{leg}: {clean:?}");
        assert!(mean(&clean, leg, "mos") > 4.3, "{leg}: {clean:?}");
    }
    assert!(!server.log().contains("call quality alert"), "alert on clean calls");

    // 12 % loss and ±10 ms of jitter on the callee's leg.
    let echo = ImpairingEcho::start(media.port(10), 0.12, 10.0, 7);
    let impaired = calls(&server, &dir.0, &peers, &echo, CALLS as usize);
    let injected_loss = echo.dropped_pct();
    drop(echo);
    let callee_loss = mean(&impaired, "callee", "loss_pct");
    let callee_jitter = mean(&impaired, "callee", "jitter_ms");
    let (caller_mos, callee_mos) = (mean(&impaired, "caller", "mos"), mean(&impaired, "callee", "mos"));
    eprintln!(
        "injected {injected_loss:.2} % loss, ±10 ms: callee leg loss {callee_loss:.2} % jitter {callee_jitter:.2} ms \
         MOS {callee_mos:.2}; caller leg MOS {caller_mos:.2}"
    );
    assert!(
        (callee_loss - injected_loss).abs() <= injected_loss * 0.2,
        "callee leg loss {callee_loss} % for {injected_loss} % injected"
    );
    let expected_jitter = 20.0 / 3.0;
    assert!(
        (callee_jitter - expected_jitter).abs() <= expected_jitter * 0.2,
        "callee leg jitter {callee_jitter} ms for {expected_jitter:.2} expected"
    );
    assert!(mean(&impaired, "caller", "loss_pct") < 0.2, "{impaired:?}");
    // E-model, G.711 with concealment: 12 % random loss costs about 31 points of R (MOS about
    // 3.2); the clean leg keeps its 4.4.
    assert!((2.8..3.5).contains(&callee_mos), "callee MOS {callee_mos}");
    assert!(caller_mos > 4.3, "caller MOS {caller_mos}");
    let log = server.log();
    let alert = log.lines().find(|l| l.contains("call quality alert"));
    assert!(
        alert.is_some_and(|l| l.contains("callee")),
        "no quality alert for the callee's leg:\n{}",
        common::tail(&log, 40)
    );
}
