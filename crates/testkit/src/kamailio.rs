//! Kamailio as a stand-in server: a registrar and proxy for the domain `smoke.test` on
//! 127.0.0.1 (UDP and TCP), with digest auth from a db_text table, and no media relay. It lets the
//! drivers be proven against a real, independent server before Switchboard exists, and gives
//! tests a reference to compare Switchboard with.
//!
//! The config lives in `crates/testkit/kamailio-smoke/` ([`KamailioOptions::new`] points at it).
//! Kamailio 5.6 sets the digest algorithm per module, so one instance challenges either with MD5
//! (table `subscriber`) or, with [`KamailioOptions::sha256`], with `algorithm=SHA-256` (table
//! `subscriber_sha256`, SHA-256 HA1s). The users of both are [`USERS`].

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::ports::{self, PortBlock};
use crate::process::{ChildGuard, LOG_TAIL_LINES, Monitor, peer_dir};

/// The SIP domain the smoke config serves.
pub const DOMAIN: &str = "smoke.test";

/// The subscribers (user, password) of the smoke config, in both tables.
pub const USERS: &[(&str, &str)] =
    &[("alice", "alice-pw"), ("bob", "bob-pw"), ("carol", "carol-pw"), ("dave", "dave-pw")];

/// How to start Kamailio.
#[derive(Debug, Clone)]
pub struct KamailioOptions {
    /// The UDP and TCP port on 127.0.0.1; `None` reserves one from [`ports::SIP_PORTS`].
    pub port: Option<u16>,
    /// Challenge with `algorithm=SHA-256` instead of MD5.
    pub sha256: bool,
    /// The config file.
    pub config: PathBuf,
    /// The db_text directory (copied into the run's temporary directory).
    pub db_dir: PathBuf,
    /// The kamailio executable.
    pub binary: PathBuf,
    /// How long [`Kamailio::spawn`] waits for the SIP port.
    pub startup_timeout: Duration,
}

impl KamailioOptions {
    /// The smoke config of this crate, MD5 digest, on an auto-picked port.
    pub fn new() -> Self {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("kamailio-smoke");
        Self {
            port: None,
            sha256: false,
            config: base.join("kamailio.cfg"),
            db_dir: base.join("db"),
            binary: PathBuf::from("kamailio"),
            startup_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for KamailioOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// A running Kamailio (its whole process group is terminated when dropped).
pub struct Kamailio {
    child: ChildGuard,
    monitor: Arc<Monitor<()>>,
    port: u16,
    log_path: PathBuf,
    _ports: Option<PortBlock>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Kamailio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kamailio").field("port", &self.port).field("dir", &self.dir.path()).finish()
    }
}

fn port_bound(port: u16) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    UdpSocket::bind(addr).is_err() && TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)).is_ok()
}

impl Kamailio {
    /// Whether a `kamailio` executable is on the `PATH` (or in `/usr/sbin`).
    pub fn is_available() -> bool {
        crate::process::available("kamailio") || Path::new("/usr/sbin/kamailio").is_file()
    }

    /// Starts Kamailio in the foreground (`-DD -E`), returning once its port is bound.
    ///
    /// # Errors
    /// No free port, a missing config, or Kamailio failing to start (the error holds its log).
    pub fn spawn(opts: KamailioOptions) -> Result<Self> {
        let dir = peer_dir("kamailio-")?;
        let db = dir.path().join("db");
        fs::create_dir_all(&db)?;
        for entry in fs::read_dir(&opts.db_dir)? {
            let path = entry?.path();
            if path.is_file()
                && let Some(name) = path.file_name()
            {
                fs::copy(&path, db.join(name))?;
            }
        }
        let (port, block) = match opts.port {
            Some(p) => (p, None),
            None => {
                let b = ports::reserve(ports::SIP_PORTS, 1)?;
                (b.first(), Some(b))
            }
        };
        let binary = if opts.binary == Path::new("kamailio") && !crate::process::available("kamailio") {
            PathBuf::from("/usr/sbin/kamailio")
        } else {
            opts.binary.clone()
        };
        let log_path = dir.path().join("kamailio.log");
        let monitor = Monitor::new(&log_path)?;
        let mut cmd = Command::new(binary);
        cmd.arg("-f").arg(&opts.config).args(["-DD", "-E", "-m", "64", "-M", "8"]);
        cmd.arg("-Y").arg(dir.path()).arg("-P").arg(dir.path().join("kamailio.pid"));
        cmd.arg("-A").arg(format!("SIP_PORT={port}"));
        cmd.arg("-A").arg(format!("DBURL=\"text://{}\"", db.display()));
        if opts.sha256 {
            cmd.arg("-A").arg("DIGEST_SHA256");
        }
        cmd.current_dir(dir.path()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        let mut child = ChildGuard::new(cmd.spawn()?, true);
        if let Some(c) = child.child_mut() {
            if let Some(out) = c.stdout.take() {
                monitor.attach(out, "", |_| None);
            }
            if let Some(err) = c.stderr.take() {
                monitor.attach(err, "", |_| None);
            }
        }
        let deadline = Instant::now() + opts.startup_timeout;
        while !port_bound(port) {
            if child.try_wait().is_some() || Instant::now() >= deadline {
                thread::sleep(Duration::from_millis(100));
                monitor.flush();
                return Err(Error::Failed {
                    peer: "kamailio".into(),
                    what: "startup".into(),
                    detail: format!("127.0.0.1:{port} not bound"),
                    log_tail: monitor.tail(LOG_TAIL_LINES),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(Self { child, monitor, port, log_path, _ports: block, dir })
    }

    /// The SIP address (UDP and TCP) on 127.0.0.1.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The SIP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.monitor.text()
    }

    /// The process id of the main process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Terminates the process group (SIGTERM, then SIGKILL after 3 s).
    pub fn stop(&mut self) -> io::Result<()> {
        self.child.terminate(Duration::from_secs(3));
        self.monitor.flush();
        Ok(())
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
