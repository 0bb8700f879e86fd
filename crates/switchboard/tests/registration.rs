//! Registration against the real server with independent clients: SIPp (MD5) for 100
//! users, wrong passwords and unknown users; Python's hashlib and linphonec for SHA-256.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Server, Setup, TempDir, scenario, write_csv};
use testkit::linphone::{Linphone, LinphoneOptions};
use testkit::ports;
use testkit::sipp::{Scenario, Sipp, SippOptions, SippOutcome};

/// 100 users 2000..2099 in tenant bench.test, password `pw-EXT-secret`.
fn hundred_users() -> String {
    let mut s = String::from("[[tenants]]\nname = \"bench\"\ndomain = \"bench.test\"\n");
    for ext in 2000..2100 {
        s.push_str(&format!("[[tenants.users]]\nextension = \"{ext}\"\npassword = \"pw-{ext}-secret\"\n"));
    }
    s
}

fn sipp_register(server: &Server, dir: &Path, file: &str, rows: Vec<Vec<String>>, trace: Option<&Path>) -> SippOutcome {
    let csv = dir.join(format!("{file}.csv"));
    write_csv(&csv, &rows);
    let mut o = SippOptions::new(Scenario::File(scenario(file)));
    o.target = Some(server.sip);
    o.inf = vec![csv];
    o.calls = Some(rows.len() as u64);
    o.rate = Some(50.0);
    o.timeout = Duration::from_secs(60);
    if let Some(t) = trace {
        o.extra_args = vec!["-trace_msg".into(), "-message_file".into(), t.display().to_string()];
    }
    Sipp::run(o).unwrap()
}

fn rows(exts: std::ops::Range<u32>, password: impl Fn(u32) -> String) -> Vec<Vec<String>> {
    exts.map(|e| {
        vec![
            e.to_string(),
            "bench.test".into(),
            format!("[authentication username={e} password={}]", password(e)),
            "600".into(),
        ]
    })
    .collect()
}

#[test]
fn hundred_users_register_with_md5() {
    let body = hundred_users();
    let server = Server::start(Setup { body: &body, ..Setup::default() });
    let dir = TempDir::new("reg100");
    let out = sipp_register(&server, &dir.0, "register.xml", rows(2000..2100, |e| format!("pw-{e}-secret")), None);
    assert!(out.all_succeeded() && out.successful == 100, "{out}");
}

/// The last response SIPp received for each call, from its message trace.
fn final_responses(trace: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(trace).unwrap();
    text.split("-----------------------------------------------")
        .filter(|m| m.contains("message received"))
        .filter_map(|m| m.split_once("\n\n").map(|(_, msg)| msg.trim().to_owned()))
        .collect()
}

/// A response with the values that are random by design (tags, nonces) and those that
/// echo the request (Via, From, To, Call-ID, CSeq) blanked.
fn shape(resp: &str) -> Vec<String> {
    resp.lines()
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap_or((l, ""));
            match name.to_ascii_lowercase().as_str() {
                "via" | "from" | "to" | "call-id" | "cseq" | "content-length" => format!("{name}:*"),
                "www-authenticate" => {
                    let v: Vec<&str> = value.split(',').map(str::trim).filter(|p| !p.starts_with("nonce=")).collect();
                    format!("{name}:{}", v.join(","))
                }
                _ => l.to_owned(),
            }
        })
        .collect()
}

#[test]
fn wrong_password_is_never_accepted_and_looks_like_an_unknown_user() {
    let body = hundred_users();
    let server = Server::start(Setup { body: &body, ..Setup::default() });
    let dir = TempDir::new("regwrong");
    // register_refused.xml succeeds only if the answer to the credentials is 401 again: a
    // single 200 fails the run.
    let wrong =
        sipp_register(&server, &dir.0, "register_refused.xml", rows(2000..2100, |e| format!("pw-{e}-wrong")), None);
    assert!(wrong.all_succeeded() && wrong.successful == 100, "wrong passwords:\n{wrong}");
    let unknown =
        sipp_register(&server, &dir.0, "register_refused.xml", rows(3000..3100, |e| format!("pw-{e}-secret")), None);
    assert!(unknown.all_succeeded() && unknown.successful == 100, "unknown users:\n{unknown}");

    // Exactly the same answer: compare the responses to a wrong password and to an unknown user.
    let t1 = dir.0.join("wrong.log");
    let t2 = dir.0.join("unknown.log");
    sipp_register(&server, &dir.0, "register_refused.xml", rows(2000..2001, |_| "nope-nope".into()), Some(&t1));
    sipp_register(&server, &dir.0, "register_refused.xml", rows(3000..3001, |_| "nope-nope".into()), Some(&t2));
    let (a, b) = (final_responses(&t1), final_responses(&t2));
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(b.len(), 2, "{b:?}");
    assert_eq!(shape(&a[1]), shape(&b[1]), "wrong password:\n{}\nunknown user:\n{}", a[1], b[1]);
    assert!(a[1].starts_with("SIP/2.0 401"));
}

fn python_register(server: &Server, algorithm: &str, first: u32, count: u32) -> Vec<Vec<String>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/digest_register.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(server.sip.to_string())
        .arg("bench.test")
        .arg(algorithm)
        .arg(first.to_string())
        .arg(count.to_string())
        .arg("pw-{ext}-secret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split(' ').map(str::to_owned).collect()).collect()
}

#[test]
fn hundred_users_register_with_sha256() {
    // Only SHA-256 offered: nothing can fall back to MD5.
    let body = format!("[auth]\nalgorithms = [\"SHA-256\"]\n{}", hundred_users());
    let server = Server::start(Setup { body: &body, ..Setup::default() });
    let results = python_register(&server, "SHA-256", 2000, 100);
    assert_eq!(results.len(), 100);
    for r in &results {
        assert_eq!(r[1..], ["401", "200", "SHA-256"], "{r:?}");
    }
    // Wrong passwords over SHA-256 are refused too.
    let body = format!("[auth]\nalgorithms = [\"SHA-256\"]\n{}", hundred_users().replace("-secret\"", "-other\""));
    let server = Server::start(Setup { body: &body, ..Setup::default() });
    for r in python_register(&server, "SHA-256", 2000, 5) {
        assert_eq!(r[2], "401", "{r:?}");
    }
}

#[test]
fn linphone_registers_with_sha256_only() {
    if !Linphone::is_available() {
        panic!("linphonec is not installed (Debian package linphone-cli)");
    }
    let body = format!("[auth]\nalgorithms = [\"SHA-256\"]\n{}", common::ACME);
    let server = Server::start(Setup { body: &body, ..Setup::default() });
    let sip = ports::reserve(ports::SIP_PORTS, 2).unwrap();
    let mut o = LinphoneOptions::new("1001", "secret-1001", "acme.test", server.sip);
    o.sip_port = Some(sip.first());
    let phone = Linphone::spawn(o).unwrap();
    phone.wait_registered(Duration::from_secs(15)).unwrap();
    // The phone's own credentials, not only our challenge, use SHA-256.
    let log = phone.log();
    assert!(
        log.lines().any(|l| l.starts_with("Authorization:") && l.contains("algorithm=SHA-256")),
        "linphonec did not answer with SHA-256:\n{log}"
    );
}
