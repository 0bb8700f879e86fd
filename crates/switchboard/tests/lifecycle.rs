//! The server's life: restarts keep registrations and CDRs (SQLite and PostgreSQL), SIGTERM
//! ends live calls with BYE and exits 0 within 5 s, a bad configuration is refused with its
//! location, the embedded default starts with a demo tenant, logs can be JSON, IPv6 works.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, Setup, TempDir, scenario, write_csv};
use testkit::ports;
use testkit::sipp::{Scenario, Sipp, SippOptions, SippOutcome};

fn sipp(file: &str, target: Option<SocketAddr>) -> SippOptions {
    let mut o = SippOptions::new(Scenario::File(scenario(file)));
    o.target = target;
    o.timeout = Duration::from_secs(60);
    o
}

fn register(server: &Server, dir: &Path, ext: &str, port: u16, local_ip: Option<&str>) {
    let csv = dir.join(format!("reg-{ext}-{port}.csv"));
    write_csv(
        &csv,
        &[vec![
            ext.into(),
            "acme.test".into(),
            format!("[authentication username={ext} password=secret-{ext}]"),
            "3600".into(),
        ]],
    );
    let target = match local_ip {
        Some(ip) if ip.contains(':') => server.sip_v6.unwrap(),
        _ => server.sip,
    };
    let mut o = sipp("register.xml", Some(target));
    o.inf = vec![csv];
    o.local_port = Some(port);
    if let Some(ip) = local_ip {
        o.local_ip = ip.parse().unwrap();
    }
    let out = Sipp::run(o).unwrap();
    assert!(out.all_succeeded(), "registration of {ext} failed:\n{out}");
}

fn call(
    server: &Server,
    dir: &Path,
    uac: &str,
    uas: &str,
    uas_port: u16,
    media: &ports::PortBlock,
    uas_ip: Option<&str>,
) -> (SippOutcome, SippOutcome) {
    let mut u = sipp(uas, None);
    u.local_port = Some(uas_port);
    u.media_port = Some(media.port(0));
    u.extra_args = vec!["-rtp_echo".into()];
    if let Some(ip) = uas_ip {
        u.local_ip = ip.parse().unwrap();
    }
    let callee = Sipp::spawn(u).unwrap();
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
    let mut c = sipp(uac, Some(server.sip));
    c.inf = vec![csv];
    c.media_port = Some(media.port(4));
    let caller = Sipp::run(c).unwrap();
    (caller, callee.wait(Duration::from_secs(30)).unwrap())
}

fn restart_keeps_registrations_and_cdrs(storage_url: Option<String>) {
    let dir = TempDir::new("restart-peers");
    let data = TempDir::new("restart-data");
    let data_path = data.0.clone();
    let mut server = Server::start_in(Setup { storage_url: storage_url.clone(), ..Setup::default() }, data);
    let peer = ports::reserve(common::SERVER_PORTS, 1).unwrap();
    let media = ports::reserve(ports::RTP_PORTS, 8).unwrap();
    register(&server, &dir.0, "1002", peer.first(), None);
    let (caller, callee) = call(&server, &dir.0, "uac.xml", "uas.xml", peer.first(), &media, None);
    assert!(caller.all_succeeded() && callee.all_succeeded(), "first call:\n{caller}\n{callee}");
    assert_eq!(server.wait_cdrs(1, Duration::from_secs(5)).len(), 1);

    let (status, took) = server.stop();
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(5), "stop took {took:?}");

    // Same data (same directory, same database), new process.
    server.spawn();
    let cdrs = server.cdrs();
    assert_eq!(cdrs.len(), 1, "CDR lost across the restart: {cdrs:?}");
    assert_eq!(cdrs[0]["disposition"], "answered");
    // The callee does not register again: the call reaches it through the stored binding.
    let (caller, callee) = call(&server, &dir.0, "uac.xml", "uas.xml", peer.first(), &media, None);
    assert!(caller.all_succeeded() && callee.all_succeeded(), "call after restart:\n{caller}\n{callee}");
    assert_eq!(server.wait_cdrs(2, Duration::from_secs(5)).len(), 2);
    drop(server);
    drop(data_path);
}

#[test]
fn restart_keeps_registrations_and_cdrs_with_sqlite() {
    restart_keeps_registrations_and_cdrs(None);
}

/// A fresh PostgreSQL database for one test, dropped afterwards.
struct PgDatabase {
    name: String,
    admin: String,
}

impl PgDatabase {
    fn create() -> Option<PgDatabase> {
        if std::env::var_os("SWITCHBOARD_SKIP_POSTGRES").is_some() {
            return None;
        }
        let admin = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000;
        let name = format!("sb_restart_{}_{nanos}", std::process::id());
        let out = Command::new("psql")
            .arg(&admin)
            .args(["-v", "ON_ERROR_STOP=1", "-c", &format!("CREATE DATABASE {name}")])
            .output();
        match out {
            Ok(o) if o.status.success() => Some(PgDatabase { name, admin }),
            Ok(o) => panic!(
                "cannot create a PostgreSQL database at {admin} ({}); set SWITCHBOARD_SKIP_POSTGRES=1 to skip",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("psql not available ({e}); set SWITCHBOARD_SKIP_POSTGRES=1 to skip"),
        }
    }

    fn url(&self) -> String {
        match self.admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{}", self.name),
            None => self.admin.clone(),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.admin)
            .args(["-c", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)])
            .output();
    }
}

#[test]
fn restart_keeps_registrations_and_cdrs_with_postgres() {
    let Some(db) = PgDatabase::create() else { return };
    restart_keeps_registrations_and_cdrs(Some(db.url()));
}

#[test]
fn sigterm_ends_live_calls_with_bye_and_exits_0() {
    let dir = TempDir::new("sigterm");
    let mut server = Server::start(Setup::default());
    let peer = ports::reserve(common::SERVER_PORTS, 1).unwrap();
    let media = ports::reserve(ports::RTP_PORTS, 8).unwrap();
    register(&server, &dir.0, "1002", peer.first(), None);
    // The callee answers and waits for a BYE; the caller answers and waits for a BYE too
    // (uac_callee_hangs_up.xml): only Switchboard's shutdown sends them.
    let mut u = sipp("uas.xml", None);
    u.local_port = Some(peer.first());
    u.media_port = Some(media.port(0));
    let callee = Sipp::spawn(u).unwrap();
    let csv = dir.0.join("caller.csv");
    write_csv(
        &csv,
        &[vec![
            "1001".into(),
            "acme.test".into(),
            "[authentication username=1001 password=secret-1001]".into(),
            "1002".into(),
        ]],
    );
    let mut c = sipp("uac_callee_hangs_up.xml", Some(server.sip));
    c.inf = vec![csv];
    c.media_port = Some(media.port(4));
    let caller = Sipp::spawn(c).unwrap();
    // Wait until the call is up (the CDR is written at the end, so watch the log).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("answered") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.log().contains("answered"), "call not answered");
    let (status, took) = server.stop();
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    let caller = caller.wait(Duration::from_secs(15)).unwrap();
    let callee = callee.wait(Duration::from_secs(15)).unwrap();
    assert!(caller.all_succeeded(), "the caller did not get its BYE:\n{caller}");
    assert!(callee.all_succeeded(), "the callee did not get its BYE:\n{callee}");
    // The CDR was flushed before exit.
    let cdrs = server.cdrs();
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    assert_eq!((cdrs[0]["initiator"].as_str(), cdrs[0]["hangup_cause"].as_str()), (Some("system"), Some("shutdown")));
}

fn run_with_config(text: &str) -> (i32, String, Duration) {
    let dir = TempDir::new("badcfg");
    let path = dir.0.join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard")).args(["serve", "--config"]).arg(&path).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned(), start.elapsed())
}

#[test]
fn bad_configuration_is_refused_with_its_location() {
    let port = ports::reserve(common::SERVER_PORTS, 1).unwrap().first();
    let cases = [
        (
            format!("[sip]\nlisten = [\"udp:127.0.0.1:{port}\"]\n[media]\nrtp_ports = [20000, \"x\"]\n"),
            4,
            "media.rtp_ports",
        ),
        (format!("[sip]\nlisten = [\"udp:127.0.0.1:{port}\", \"sctp:127.0.0.1:{port}\"]\n"), 2, "sip.listen"),
        (format!("[sip]\nlisten = [\"udp:127.0.0.1:{port}\"]\nlissen = 1\n"), 3, "sip.lissen"),
        (
            format!(
                "[sip]\nlisten = [\"udp:127.0.0.1:{port}\"]\n[[tenants]]\nname = \"a\"\ndomain = \"a.test\"\n[[tenants.users]]\nextension = \"1\"\npassword = \"short\"\n"
            ),
            8,
            "tenants.users.password",
        ),
    ];
    for (text, line, key) in cases {
        let (code, stderr, took) = run_with_config(&text);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains(&format!("bad.toml:{line}: key `{key}`")),
            "expected file:{line} and key {key} in: {stderr}"
        );
        assert!(took < Duration::from_secs(5));
        // Nothing was started: the port is free.
        UdpSocket::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("port {port} taken after a refused start: {e}"));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check-config", "--config", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn json_logs_have_a_span_per_call() {
    let dir = TempDir::new("json");
    let setup = Setup::default();
    let mut server = Server::start(setup);
    // Restart with JSON logs on the same configuration.
    server.stop();
    let log = dir.0.join("json.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&server.config)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !common::options_ok(server.sip, Duration::from_millis(200)) && Instant::now() < deadline {}
    let peer = ports::reserve(common::SERVER_PORTS, 1).unwrap();
    let media = ports::reserve(ports::RTP_PORTS, 8).unwrap();
    register(&server, &dir.0, "1002", peer.first(), None);
    let (caller, callee) = call(&server, &dir.0, "uac.xml", "uas.xml", peer.first(), &media, None);
    assert!(caller.all_succeeded() && callee.all_succeeded(), "{caller}\n{callee}");
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let answered = lines
        .iter()
        .find(|l| l["fields"]["message"] == "answered")
        .unwrap_or_else(|| panic!("no answered event:\n{text}"));
    assert_eq!(answered["span"]["name"], "call", "{answered}");
    assert!(answered["span"]["id"].is_string(), "{answered}");
}

#[test]
fn ipv6_phones_and_mixed_families() {
    let server = Server::start(Setup { ipv6: true, ..Setup::default() });
    assert!(common::options_ok(server.sip_v6.unwrap(), Duration::from_secs(2)));
    let dir = TempDir::new("ipv6");
    let peer = ports::reserve(common::SERVER_PORTS, 1).unwrap();
    let media = ports::reserve(ports::RTP_PORTS, 8).unwrap();
    // The callee registers over IPv6; the caller calls over IPv4: the relay bridges families.
    register(&server, &dir.0, "1002", peer.first(), Some("::1"));
    let (caller, callee) = call(&server, &dir.0, "uac.xml", "uas.xml", peer.first(), &media, Some("::1"));
    assert!(caller.all_succeeded() && callee.all_succeeded(), "{caller}\n{callee}");
    let cdrs = server.wait_cdrs(1, Duration::from_secs(5));
    assert!(cdrs[0]["packets_b_to_a"].as_i64().unwrap() > 10, "{cdrs:?}");
}

#[test]
fn embedded_default_creates_the_demo_tenant_once() {
    let dir = TempDir::new("embedded");
    let start = |dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("serve")
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let port5060: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    assert!(!common::options_ok(port5060, Duration::from_millis(100)), "something already answers on port 5060");
    let child = start(&dir.0);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !common::options_ok(port5060, Duration::from_millis(200)) && Instant::now() < deadline {}
    assert!(dir.0.join("switchboard-data/switchboard.db").exists(), "no SQLite database in ./switchboard-data");
    // Register 1001 with the printed password, using the server's address as domain.
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let password = stdout
        .lines()
        .find_map(|l| {
            l.trim().strip_prefix("extension 1001").map(|r| r.trim().trim_start_matches("password").trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no credentials printed:\n{stdout}"));
    assert_eq!(password.len(), 16);

    let child = start(&dir.0);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !common::options_ok(port5060, Duration::from_millis(200)) && Instant::now() < deadline {}
    let csv = dir.0.join("demo.csv");
    write_csv(
        &csv,
        &[vec![
            "1001".into(),
            "127.0.0.1".into(),
            format!("[authentication username=1001 password={password}]"),
            "60".into(),
        ]],
    );
    let mut o = sipp("register.xml", Some(port5060));
    o.inf = vec![csv];
    let reg = Sipp::run(o).unwrap();
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let out = child.wait_with_output().unwrap();
    assert!(reg.all_succeeded(), "demo registration failed:\n{reg}");
    // Passwords are shown once only.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("password"), "passwords printed again");
}

#[test]
fn first_start_generates_the_spoken_prompts() {
    let dir = TempDir::new("prompts");
    let media = format!("prompts_dir = \"{}\"\nprompt_languages = [\"fr\"]\n", dir.0.display());
    let server = Server::start(Setup { media_extra: &media, ..Setup::default() });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.log().contains("system prompts ready") {
        assert!(Instant::now() < deadline, "no prompts: {}", common::tail(&server.log(), 30));
        std::thread::sleep(Duration::from_millis(200));
    }
    let library = audio::prompts::PromptLibrary::new(&dir.0);
    for id in ["7", "please-hold", "not-available", "goodbye"] {
        let speech = library.load(None, audio::prompts::Lang::Fr, id, 8000).unwrap();
        assert!(speech.len() > 2000, "{id}: {} samples", speech.len());
        assert!(audio::analysis::rms(&speech) > 300.0, "{id} is silent");
    }
    // Nothing in English was asked for.
    assert!(!dir.0.join("en").exists());
}
