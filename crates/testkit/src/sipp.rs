//! Run [SIPp](https://sipp.sourceforge.net/) scenarios and read how many calls succeeded.
//!
//! [`Sipp::run`] starts `sipp` in a temporary directory with `-trace_stat -stf <csv> -fd 1`
//! (statistics every second and at the end), `-trace_err`, `-nostdin`, a global `-timeout`, and
//! waits for it, bounded by the same timeout plus a grace period (then it is killed). The counts
//! come from the last row of the statistics CSV (`SuccessfulCall(C)`, `FailedCall(C)`, ...),
//! falling back to the final screen.
//!
//! SIPp's exit code: 0 all calls succeeded, 1 at least one failed, 97 exit on internal command,
//! 99 normal exit without calls processed, 255 fatal error, 254 fatal error binding a socket.
//!
//! Scenarios shipped in `crates/testkit/scenarios/` ([`scenario_path`]): `register-auth.xml`
//! (REGISTER answering a 401) and `uac-auth.xml` (INVITE answering a 407, 3 s of call, BYE), both
//! taking `user;domain;[authentication username=... password=...]` rows from `-inf`.
//!
//! ```no_run
//! use std::time::Duration;
//! use testkit::sipp::{self, Sipp, SippOptions};
//! let mut opts = SippOptions::new(sipp::Scenario::File(sipp::scenario_path("register-auth.xml")));
//! opts.target = Some("127.0.0.1:25060".parse().unwrap());
//! opts.inf.push("users.csv".into());
//! opts.calls = Some(2);
//! let outcome = Sipp::run(opts)?;
//! assert!(outcome.all_succeeded(), "{outcome}");
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::Transport;
use crate::ports::{self, PortBlock};
use crate::process::{ChildGuard, Monitor, peer_dir};

/// The path of a scenario shipped in `crates/testkit/scenarios/`.
pub fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name)
}

/// Which scenario SIPp plays.
#[derive(Debug, Clone, PartialEq)]
pub enum Scenario {
    /// An XML scenario file (`-sf`).
    File(PathBuf),
    /// A scenario built into SIPp (`-sn`), such as `uac` or `uas`.
    Builtin(String),
}

/// How to run SIPp. Build with [`SippOptions::new`], then adjust fields.
#[derive(Debug, Clone)]
pub struct SippOptions {
    /// The scenario.
    pub scenario: Scenario,
    /// The remote host (none for a server scenario).
    pub target: Option<SocketAddr>,
    /// Stop after this many calls (`-m`).
    pub calls: Option<u64>,
    /// Calls per second (`-r`).
    pub rate: Option<f64>,
    /// At most this many simultaneous calls (`-l`).
    pub limit: Option<u64>,
    /// Injection CSV files (`-inf`, each).
    pub inf: Vec<PathBuf>,
    /// Local address (`-i`), 127.0.0.1 by default.
    pub local_ip: IpAddr,
    /// Local SIP port (`-p`); `None` reserves one from [`ports::SIP_PORTS`].
    pub local_port: Option<u16>,
    /// Local RTP echo port (`-mp`); `None` reserves four from [`ports::RTP_PORTS`].
    pub media_port: Option<u16>,
    /// `u1` (UDP, one socket) or `t1` (TCP, one socket) (`-t`).
    pub transport: Transport,
    /// Global timeout (`-timeout`, `-timeout_error`); the process is killed a little after it.
    pub timeout: Duration,
    /// More arguments, passed as they are.
    pub extra_args: Vec<String>,
    /// The sipp executable.
    pub binary: PathBuf,
}

impl SippOptions {
    /// Run `scenario` once at 1 call per second, UDP, 30 s timeout.
    pub fn new(scenario: Scenario) -> Self {
        Self {
            scenario,
            target: None,
            calls: Some(1),
            rate: None,
            limit: None,
            inf: Vec::new(),
            local_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            local_port: None,
            media_port: None,
            transport: Transport::Udp,
            timeout: Duration::from_secs(30),
            extra_args: Vec::new(),
            binary: PathBuf::from("sipp"),
        }
    }
}

/// What a SIPp run did.
#[derive(Debug, Clone, Default)]
pub struct SippOutcome {
    /// SIPp's exit code (`None` if it was killed by a signal).
    pub exit_code: Option<i32>,
    /// Whether we had to kill it after the timeout.
    pub timed_out: bool,
    /// Calls that reached the end of the scenario.
    pub successful: u64,
    /// Calls that failed.
    pub failed: u64,
    /// Calls created (outgoing plus incoming).
    pub created: u64,
    /// Retransmissions.
    pub retransmissions: u64,
    /// The last row of the statistics CSV, by column name.
    pub stats: HashMap<String, String>,
    /// What SIPp printed (its final screens).
    pub screen: String,
    /// The unexpected messages it traced (`-trace_err`).
    pub errors: String,
}

impl SippOutcome {
    /// Exit code 0, no failed call, no timeout.
    pub fn all_succeeded(&self) -> bool {
        self.exit_code == Some(0) && self.failed == 0 && !self.timed_out
    }
}

impl fmt::Display for SippOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sipp exit {:?}{}: {} successful, {} failed, {} created, {} retransmissions",
            self.exit_code,
            if self.timed_out { " (killed after timeout)" } else { "" },
            self.successful,
            self.failed,
            self.created,
            self.retransmissions
        )?;
        if !self.errors.is_empty() {
            writeln!(f, "--- unexpected messages ---\n{}", self.errors)?;
        }
        write!(f, "--- screen ---\n{}", self.screen)
    }
}

/// A running SIPp.
pub struct Sipp {
    child: ChildGuard,
    monitor: Arc<Monitor<()>>,
    stats_path: PathBuf,
    errors_path: PathBuf,
    timeout: Duration,
    local_port: u16,
    _ports: Vec<PortBlock>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Sipp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sipp").field("local_port", &self.local_port).field("dir", &self.dir.path()).finish()
    }
}

/// The last data row of a `-trace_stat` CSV, by column name.
fn parse_stats(csv: &str) -> HashMap<String, String> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else { return HashMap::new() };
    let Some(last) = lines.next_back() else { return HashMap::new() };
    header
        .split(';')
        .map(str::trim)
        .zip(last.split(';').map(str::trim))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The cumulative value of a counter row of the final statistics screen, such as
/// `  Successful call        |        0                  |        2`.
fn screen_counter(screen: &str, name: &str) -> Option<u64> {
    screen
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with(name))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|v| v.trim().parse().ok())
}

impl Sipp {
    /// Whether a `sipp` executable is on the `PATH`.
    pub fn is_available() -> bool {
        crate::process::available("sipp")
    }

    /// Starts SIPp in the background; see [`wait`](Self::wait).
    ///
    /// # Errors
    /// No free port or SIPp failing to start.
    pub fn spawn(opts: SippOptions) -> io::Result<Self> {
        let dir = peer_dir("sipp-")?;
        let mut held = Vec::new();
        let local_port = match opts.local_port {
            Some(p) => p,
            None => {
                let b = ports::reserve(ports::SIP_PORTS, 1)?;
                let p = b.first();
                held.push(b);
                p
            }
        };
        let media_port = match opts.media_port {
            Some(p) => p,
            None => {
                let b = ports::reserve(ports::RTP_PORTS, 4)?;
                let p = b.first();
                held.push(b);
                p
            }
        };
        let stats_path = dir.path().join("stats.csv");
        let errors_path = dir.path().join("errors.log");
        let mut cmd = Command::new(&opts.binary);
        if let Some(target) = opts.target {
            cmd.arg(target.to_string());
        }
        match &opts.scenario {
            Scenario::File(p) => cmd.arg("-sf").arg(p),
            Scenario::Builtin(name) => cmd.arg("-sn").arg(name),
        };
        if let Some(m) = opts.calls {
            cmd.arg("-m").arg(m.to_string());
        }
        if let Some(r) = opts.rate {
            cmd.arg("-r").arg(r.to_string());
        }
        if let Some(l) = opts.limit {
            cmd.arg("-l").arg(l.to_string());
        }
        for inf in &opts.inf {
            cmd.arg("-inf").arg(inf);
        }
        cmd.arg("-i").arg(opts.local_ip.to_string()).arg("-p").arg(local_port.to_string());
        cmd.arg("-mp").arg(media_port.to_string());
        cmd.arg("-t").arg(match opts.transport {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        });
        let secs = opts.timeout.as_secs().max(1);
        cmd.arg("-timeout").arg(format!("{secs}s")).arg("-timeout_error");
        cmd.args(["-trace_stat", "-fd", "1", "-trace_err", "-nostdin"]);
        cmd.arg("-stf").arg(&stats_path).arg("-error_file").arg(&errors_path);
        cmd.args(&opts.extra_args);
        let log_path = dir.path().join("sipp.log");
        let monitor = Monitor::new(&log_path)?;
        monitor.record_line("cmd> ", format!("{cmd:?}"), None);
        cmd.current_dir(dir.path()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = ChildGuard::new(cmd.spawn()?, false);
        if let Some(c) = child.child_mut() {
            if let Some(out) = c.stdout.take() {
                monitor.attach(out, "", |_| None);
            }
            if let Some(err) = c.stderr.take() {
                monitor.attach(err, "", |_| None);
            }
        }
        Ok(Self { child, monitor, stats_path, errors_path, timeout: opts.timeout, local_port, _ports: held, dir })
    }

    /// Runs SIPp to the end (at most its timeout plus 5 s).
    ///
    /// # Errors
    /// As [`spawn`](Self::spawn).
    pub fn run(opts: SippOptions) -> io::Result<SippOutcome> {
        let timeout = opts.timeout + Duration::from_secs(5);
        Self::spawn(opts)?.wait(timeout)
    }

    /// Waits up to `timeout` for SIPp to finish (killing it after that) and reads its results.
    ///
    /// # Errors
    /// Never for a finished run; the `Result` is for symmetry with [`run`](Self::run).
    pub fn wait(mut self, timeout: Duration) -> io::Result<SippOutcome> {
        let status = self.child.wait_timeout(timeout);
        let timed_out = status.is_none();
        let status = status.or_else(|| self.child.kill());
        // Let the reader threads drain the pipes.
        let _ = self.monitor.wait(Duration::from_secs(2), |_| None::<()>);
        self.monitor.flush();
        let screen = self.monitor.text();
        let stats = parse_stats(&fs::read_to_string(&self.stats_path).unwrap_or_default());
        let counter = |col: &str, screen_name: &str| {
            stats.get(col).and_then(|v| v.parse().ok()).or_else(|| screen_counter(&screen, screen_name)).unwrap_or(0)
        };
        let created = stats.get("TotalCallCreated").and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            counter("OutgoingCall(C)", "Outgoing calls created") + counter("IncomingCall(C)", "Incoming calls created")
        });
        Ok(SippOutcome {
            exit_code: status.and_then(|s| s.code()),
            timed_out,
            successful: counter("SuccessfulCall(C)", "Successful call"),
            failed: counter("FailedCall(C)", "Failed call"),
            created,
            retransmissions: counter("Retransmissions(C)", "Retransmissions"),
            errors: fs::read_to_string(&self.errors_path).unwrap_or_default(),
            stats,
            screen,
        })
    }

    /// The local SIP port.
    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    /// The timeout it was started with.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The working directory (statistics, error log, SIPp's own logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_csv_last_row_by_column() {
        let csv = "StartTime;SuccessfulCall(C);FailedCall(C);\n\
                   2026-11-22\t03:42:39.4;0;0;\n\
                   2026-11-22\t03:42:39.6;2;1;\n";
        let s = parse_stats(csv);
        assert_eq!(s.get("SuccessfulCall(C)").map(String::as_str), Some("2"));
        assert_eq!(s.get("FailedCall(C)").map(String::as_str), Some("1"));
        assert!(parse_stats("").is_empty());
        assert!(parse_stats("only;a;header\n").is_empty());
    }

    #[test]
    fn screen_counters() {
        let screen = "  Successful call        |        0                  |        2                 \n\
                      \x20 Failed call            |        0                  |        0                 ";
        assert_eq!(screen_counter(screen, "Successful call"), Some(2));
        assert_eq!(screen_counter(screen, "Failed call"), Some(0));
        assert_eq!(screen_counter(screen, "Retransmissions"), None);
    }

    #[test]
    fn shipped_scenarios_exist() {
        for name in ["register-auth.xml", "uac-auth.xml"] {
            assert!(scenario_path(name).is_file(), "{name}");
        }
    }
}
