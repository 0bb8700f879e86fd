//! Shared by the end-to-end tests: run the real `switchboard` binary with a generated
//! configuration on loopback ports, talk to it, stop it with SIGTERM.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use testkit::ports::{self, PortBlock};

/// Server SIP ports for these tests (far from testkit's peer ranges).
pub const SERVER_PORTS: std::ops::RangeInclusive<u16> = 35000..=35999;
/// Relay RTP ports for these tests.
pub const RELAY_PORTS: std::ops::RangeInclusive<u16> = 42000..=49999;

/// Where `../shared` is.
pub fn shared() -> PathBuf {
    [
        std::env::var_os("SWITCHBOARD_SHARED").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")),
        Some(PathBuf::from("/work/shared")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.join("testdata/rfc4475/INDEX.tsv").exists())
    .expect("shared test data not found: set SWITCHBOARD_SHARED")
}

/// A temporary directory removed on drop (unless SWITCHBOARD_KEEP_TEST_DIRS is set).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let p = std::env::temp_dir().join(format!("sb-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("SWITCHBOARD_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A running server.
pub struct Server {
    child: Option<Child>,
    pub dir: TempDir,
    pub config: PathBuf,
    pub sip: SocketAddr,
    pub sip_v6: Option<SocketAddr>,
    pub rtp: (u16, u16),
    _sip_ports: PortBlock,
    _rtp_ports: PortBlock,
}

/// What goes into a test configuration besides listen addresses, ports and data dir.
pub struct Setup<'a> {
    /// Extra top-level sections and `[[tenants]]` (TOML).
    pub body: &'a str,
    /// Extra keys for `[sip]`.
    pub sip_extra: &'a str,
    /// Extra keys for `[media]`.
    pub media_extra: &'a str,
    /// `[storage] url`, when not SQLite.
    pub storage_url: Option<String>,
    /// Also listen on [::1].
    pub ipv6: bool,
    /// RTP ports to reserve.
    pub rtp_ports: u16,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup { body: ACME, sip_extra: "", media_extra: "", storage_url: None, ipv6: false, rtp_ports: 40 }
    }
}

/// The tenant most tests use.
pub const ACME: &str = r#"
[[tenants]]
name = "acme"
domain = "acme.test"
[[tenants.users]]
extension = "1001"
password = "secret-1001"
display_name = "Alice"
[[tenants.users]]
extension = "1002"
password = "secret-1002"
display_name = "Bob"
[[tenants.users]]
extension = "1003"
password = "secret-1003"
display_name = "Carol"
"#;

impl Server {
    pub fn start(setup: Setup<'_>) -> Server {
        let dir = TempDir::new("server");
        Server::start_in(setup, dir)
    }

    /// Starts in an existing data directory (restart tests).
    pub fn start_in(setup: Setup<'_>, dir: TempDir) -> Server {
        let sip_ports = ports::reserve(SERVER_PORTS, 1).expect("no free SIP port");
        let rtp_ports = ports::reserve(RELAY_PORTS, setup.rtp_ports.max(8)).expect("no free RTP ports");
        Server::start_with_ports(setup, dir, sip_ports, rtp_ports)
    }

    pub fn start_with_ports(setup: Setup<'_>, dir: TempDir, sip_ports: PortBlock, rtp_ports: PortBlock) -> Server {
        let port = sip_ports.first();
        let mut listen = format!("\"udp:127.0.0.1:{port}\", \"tcp:127.0.0.1:{port}\"");
        if setup.ipv6 {
            listen.push_str(&format!(", \"udp:[::1]:{port}\", \"tcp:[::1]:{port}\""));
        }
        let storage = match &setup.storage_url {
            Some(u) => format!("[storage]\nurl = \"{u}\"\n"),
            None => String::new(),
        };
        let rtp = (rtp_ports.first(), rtp_ports.last());
        // Prompts are generated once for the whole suite, not once per server.
        let prompts = if setup.media_extra.contains("prompts_dir") {
            String::new()
        } else {
            format!("prompts_dir = \"{}\"\n", std::env::temp_dir().join("switchboard-test-prompts").display())
        };
        let config_text = format!(
            "data_dir = \"{}\"\n[sip]\nlisten = [{listen}]\n{}\n[media]\nrtp_ports = [{}, {}]\n{prompts}{}\n[log]\nlevel = \"info,server=debug\"\n{storage}{}",
            dir.0.join("data").display(),
            setup.sip_extra,
            rtp.0,
            rtp.1,
            setup.media_extra,
            setup.body
        );
        let config = dir.0.join("switchboard.toml");
        std::fs::write(&config, config_text).unwrap();
        let mut s = Server {
            child: None,
            config,
            sip: format!("127.0.0.1:{port}").parse().unwrap(),
            sip_v6: setup.ipv6.then(|| format!("[::1]:{port}").parse().unwrap()),
            rtp,
            dir,
            _sip_ports: sip_ports,
            _rtp_ports: rtp_ports,
        };
        s.spawn();
        s
    }

    fn log_path(&self) -> PathBuf {
        self.dir.0.join("server.log")
    }

    /// Starts the process and waits until it answers OPTIONS.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot start switchboard");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("switchboard exited at start with {status}:\n{}", self.log());
            }
            if options_ok(self.sip, Duration::from_millis(200)) {
                return;
            }
        }
        panic!("switchboard did not answer OPTIONS within 20 s:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends SIGTERM and waits (at most 10 s): exit status and how long the stop took.
    pub fn stop(&mut self) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("not running");
        let start = Instant::now();
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let status = child.wait().unwrap();
                panic!("switchboard did not stop within 10 s ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `switchboard cdr list --json` against this server's configuration.
    pub fn cdrs(&self) -> Vec<serde_json::Value> {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["cdr", "list", "--json", "--limit", "100000", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(out.status.success(), "cdr list failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap().as_array().cloned().unwrap_or_default()
    }

    /// Waits until `n` CDRs exist.
    pub fn wait_cdrs(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.cdrs();
            if c.len() >= n || Instant::now() > deadline {
                return c;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- switchboard log ({}) ----\n{}", self.log_path().display(), tail(&self.log(), 200));
        }
    }
}

pub fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Sends an OPTIONS over UDP and says whether a 200 came back.
pub fn options_ok(server: SocketAddr, wait: Duration) -> bool {
    let sock = UdpSocket::bind(if server.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }).unwrap();
    let local = sock.local_addr().unwrap();
    let host = match local {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    let msg = format!(
        "OPTIONS sip:ping@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {host};rport;branch=z9hG4bK{}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@test>;tag=p\r\nTo: <sip:ping@test>\r\nCall-ID: probe-{}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        local.port(),
        local.port()
    );
    sock.set_read_timeout(Some(wait)).unwrap();
    if sock.send_to(msg.as_bytes(), server).is_err() {
        std::thread::sleep(wait);
        return false;
    }
    let mut buf = [0u8; 4096];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => buf[..n].starts_with(b"SIP/2.0 200"),
        Err(_) => false,
    }
}

/// First lines of replies to raw bytes sent over UDP from `from`.
pub fn udp_exchange(from: SocketAddr, to: SocketAddr, data: &[u8], wait: Duration) -> Vec<String> {
    let sock = UdpSocket::bind(from).unwrap_or_else(|e| panic!("bind {from}: {e}"));
    sock.send_to(data, to).unwrap();
    let mut end = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < end {
        sock.set_read_timeout(Some(end.saturating_duration_since(Instant::now()).max(Duration::from_millis(10))))
            .unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                out.push(first_line(&buf[..n]));
                // Once something came, only wait a little for more.
                end = end.min(Instant::now() + Duration::from_millis(150));
            }
            Err(_) => break,
        }
    }
    out
}

/// First lines of replies to raw bytes sent over a new TCP connection, and whether the
/// server closed it.
pub fn tcp_exchange(to: SocketAddr, data: &[u8], wait: Duration) -> (Vec<String>, bool) {
    tcp_exchange_settle(to, data, wait, Duration::from_millis(300))
}

/// Like [`tcp_exchange`], waiting `settle` after the last data for more (or for the close).
pub fn tcp_exchange_settle(to: SocketAddr, data: &[u8], wait: Duration, settle: Duration) -> (Vec<String>, bool) {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).unwrap();
    s.write_all(data).unwrap();
    let mut end = Instant::now() + wait;
    let mut all = Vec::new();
    let mut closed = false;
    let mut buf = [0u8; 8192];
    while Instant::now() < end {
        s.set_read_timeout(Some(end.saturating_duration_since(Instant::now()).max(Duration::from_millis(10)))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => {
                all.extend_from_slice(&buf[..n]);
                end = end.min(Instant::now() + settle);
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&all);
    let lines = text.split("SIP/2.0 ").skip(1).map(|r| format!("SIP/2.0 {}", r.lines().next().unwrap_or(""))).collect();
    (lines, closed)
}

pub fn first_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b).lines().next().unwrap_or("").to_owned()
}

/// Writes a SIPp injection CSV (`SEQUENTIAL`, one row per entry).
pub fn write_csv(path: &Path, rows: &[Vec<String>]) {
    let mut s = String::from("SEQUENTIAL\n");
    for r in rows {
        s.push_str(&r.join(";"));
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

/// A scenario of this crate's `tests/scenarios`.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios").join(name)
}
