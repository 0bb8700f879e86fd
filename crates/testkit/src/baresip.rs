//! A driver for [baresip](https://github.com/baresip/baresip) 1.0.x as an independent SIP phone.
//!
//! [`Baresip::spawn`] writes a config directory for one account into a temporary directory and
//! starts `baresip -f <dir>` without a sound card:
//!
//! * **audio in**: a WAV file through the `aufile` module (`audio_source aufile,<path>`), or an
//!   endless sine through `ausine` (`audio_source ausine,<hz>`, resampled from 48 kHz stereo);
//! * **audio out**: baresip 1.0.0's `aufile` cannot play to a file, so the `sndfile` audio filter
//!   records what is decoded (`<dir>/rec/dump-<time>-dec.wav`) and sent (`...-enc.wav`) per call,
//!   while the player is a null `aubridge` device;
//! * **control**: the `ctrl_tcp` module on 127.0.0.1 (netstring-framed JSON commands such as
//!   `{"command":"dial","params":"sip:bob@example.test","token":"1"}`; it answers with a
//!   `response` object and pushes `event` objects such as `CALL_ESTABLISHED`);
//! * **auto answer**: the account parameter `answermode=auto`.
//!
//! Registration results are read from the log (baresip prints `user@domain: {0/UDP/v4} 200 OK
//! ... [1 binding]` or `reg: sip:user@domain: 401 Unauthorized ...`), call events from
//! `ctrl_tcp`. Everything baresip prints, its SIP trace (`-s`) and the control traffic
//! (`ctrl>`/`ctrl<`) go to [`Baresip::log_path`].
//!
//! Quirks of 1.0.0: the call is **hung up when the `aufile` source reaches the end of its WAV**
//! (close reason `end of file`), so give it a WAV longer than the call or use
//! [`AudioSource::Sine`]; the WAV must be mono 16-bit at the codec's rate (8000 Hz for PCMU and
//! PCMA); digest auth is **MD5 only** (a `algorithm=SHA-256` challenge fails with `Register:
//! Function not implemented`); the recorded WAV header is only complete once the call has closed;
//! recordings of two calls started within the same second overwrite each other; baresip also
//! binds the SIP port + 1 (TLS).
//!
//! ```no_run
//! use std::time::Duration;
//! use testkit::baresip::{Baresip, BaresipOptions, AudioSource};
//! let proxy = "127.0.0.1:25060".parse().unwrap();
//! let mut opts = BaresipOptions::new("alice", "alice-pw", "smoke.test", proxy);
//! opts.audio_source = AudioSource::Sine(1000);
//! let alice = Baresip::spawn(opts)?;
//! alice.wait_registered(Duration::from_secs(5))?;
//! alice.dial("sip:bob@smoke.test")?;
//! alice.wait_established(Duration::from_secs(10))?;
//! alice.hangup()?;
//! alice.wait_closed(Duration::from_secs(5))?;
//! # Ok::<(), testkit::Error>(())
//! ```

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::Transport;
use crate::error::{Error, Result};
use crate::ports::{self, PortBlock};
use crate::process::{ChildGuard, LOG_TAIL_LINES, Monitor, Waited, peer_dir};

/// Where baresip's audio comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioSource {
    /// A mono 16-bit WAV at the codec's rate, played once (the call ends with it).
    Wav(PathBuf),
    /// An endless sine of this frequency in Hz (10 to 20000).
    Sine(u32),
}

/// How to start one baresip account. Build with [`BaresipOptions::new`], then adjust fields.
#[derive(Debug, Clone)]
pub struct BaresipOptions {
    /// SIP user (the AOR is `sip:<user>@<domain>`).
    pub user: String,
    /// Digest password (must not contain `;` or `"`).
    pub password: String,
    /// SIP domain of the AOR.
    pub domain: String,
    /// Digest user name, if not `user`.
    pub auth_user: Option<String>,
    /// The registrar and outbound proxy every request is sent to.
    pub proxy: SocketAddr,
    /// Transport towards the proxy.
    pub transport: Transport,
    /// Whether to register (`regint=300`) or not (`regint=0`).
    pub register: bool,
    /// Local SIP port on 127.0.0.1 (baresip also binds the next port for TLS). `None` reserves
    /// a block of three ports from [`ports::SIP_PORTS`]: SIP, TLS and the control port.
    pub sip_port: Option<u16>,
    /// Local `ctrl_tcp` port. `None`: the SIP port + 2 (reserved with it when auto-picked).
    pub ctrl_port: Option<u16>,
    /// RTP (and RTCP) ports. `None` reserves 10 ports from [`ports::RTP_PORTS`].
    pub rtp_ports: Option<RangeInclusive<u16>>,
    /// The only audio codec offered and accepted: `PCMU` (default), `PCMA`, `G722` or `opus`.
    pub codec: String,
    /// What the phone sends.
    pub audio_source: AudioSource,
    /// Answer incoming calls at once (`answermode=auto`) instead of waiting for
    /// [`Baresip::accept`].
    pub auto_answer: bool,
    /// Trace SIP messages into the log (`-s`).
    pub sip_trace: bool,
    /// The baresip executable.
    pub binary: PathBuf,
    /// Directory of baresip's modules.
    pub module_path: PathBuf,
    /// Extra lines appended to `config`.
    pub extra_config: Vec<String>,
    /// Extra `;name=value` account parameters (without the leading `;`).
    pub extra_account_params: Vec<String>,
    /// How long [`Baresip::spawn`] waits for the control port.
    pub startup_timeout: Duration,
}

impl BaresipOptions {
    /// Options for `user@domain` registering with `password` at `proxy` over UDP, offering
    /// PCMU, sending a 1000 Hz sine and answering automatically.
    pub fn new(user: &str, password: &str, domain: &str, proxy: SocketAddr) -> Self {
        Self {
            user: user.to_owned(),
            password: password.to_owned(),
            domain: domain.to_owned(),
            auth_user: None,
            proxy,
            transport: Transport::Udp,
            register: true,
            sip_port: None,
            ctrl_port: None,
            rtp_ports: None,
            codec: "PCMU".to_owned(),
            audio_source: AudioSource::Sine(1000),
            auto_answer: true,
            sip_trace: true,
            binary: PathBuf::from("baresip"),
            module_path: PathBuf::from("/usr/lib/baresip/modules"),
            extra_config: Vec::new(),
            extra_account_params: Vec::new(),
            startup_timeout: Duration::from_secs(10),
        }
    }
}

/// Something baresip reported.
#[derive(Debug, Clone, PartialEq)]
pub enum BaresipEvent {
    /// A REGISTER got a 2xx (the log line).
    Registered(String),
    /// A REGISTER failed (the log line).
    RegisterFailed(String),
    /// An incoming call (`CALL_INCOMING`).
    Incoming {
        /// baresip's call id.
        call_id: String,
        /// The caller's URI.
        peer: String,
    },
    /// The far end is ringing (`CALL_RINGING`).
    Ringing {
        /// baresip's call id.
        call_id: String,
    },
    /// The call is answered (`CALL_ESTABLISHED`).
    Established {
        /// baresip's call id.
        call_id: String,
        /// The other party's URI.
        peer: String,
    },
    /// RTP started to arrive (`CALL_RTPESTAB`).
    RtpEstablished {
        /// baresip's call id.
        call_id: String,
    },
    /// The call ended (`CALL_CLOSED`), with baresip's reason (`Connection reset by peer`, a SIP
    /// status such as `486 Busy Here`, `end of file`...).
    Closed {
        /// baresip's call id.
        call_id: String,
        /// Why.
        reason: String,
    },
    /// The answer to a control command.
    Response {
        /// The token the command was sent with.
        token: String,
        /// Whether baresip accepted the command.
        ok: bool,
        /// What it answered.
        data: String,
    },
    /// Any other `ctrl_tcp` event, by type (such as `CALL_LOCAL_SDP`).
    Other {
        /// The event type.
        kind: String,
        /// Its parameter.
        param: String,
    },
}

/// A running baresip; killed when dropped (after a graceful `quit`, which unregisters).
pub struct Baresip {
    child: ChildGuard,
    monitor: Arc<Monitor<BaresipEvent>>,
    ctrl: Mutex<TcpStream>,
    next_token: AtomicU64,
    aor: String,
    sip_port: u16,
    ctrl_port: u16,
    rtp_ports: RangeInclusive<u16>,
    log_path: PathBuf,
    rec_dir: PathBuf,
    _ports: Vec<PortBlock>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Baresip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Baresip")
            .field("aor", &self.aor)
            .field("sip_port", &self.sip_port)
            .field("dir", &self.dir.path())
            .finish()
    }
}

fn codec_module(codec: &str) -> Option<(&'static str, Option<u32>)> {
    match codec.to_ascii_uppercase().as_str() {
        "PCMU" | "PCMA" => Some(("g711.so", Some(8000))),
        "G722" => Some(("g722.so", Some(16000))),
        "OPUS" => Some(("opus.so", None)),
        "L16" => Some(("l16.so", None)),
        _ => None,
    }
}

fn check_wav(path: &Path, rate: Option<u32>) -> io::Result<()> {
    let spec = hound::WavReader::open(path)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: {e}", path.display())))?
        .spec();
    let rate_ok = rate.is_none_or(|r| r == spec.sample_rate);
    if spec.channels != 1 || spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int || !rate_ok {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: baresip's aufile needs a mono 16-bit WAV{}, got {spec:?}",
                path.display(),
                rate.map(|r| format!(" at {r} Hz")).unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// Parses one log line into a registration event.
fn parse_log_line(line: &str) -> Option<BaresipEvent> {
    if line.starts_with("reg: ") {
        return Some(BaresipEvent::RegisterFailed(line.to_owned()));
    }
    if line.contains(": {") && line.contains(" binding") && !line.contains("[0 binding") {
        let status_ok = line.split("} ").nth(1).is_some_and(|rest| rest.starts_with('2'));
        return Some(if status_ok {
            BaresipEvent::Registered(line.to_owned())
        } else {
            BaresipEvent::RegisterFailed(line.to_owned())
        });
    }
    None
}

/// Parses one `ctrl_tcp` JSON message.
fn parse_ctrl(json: &str) -> Option<BaresipEvent> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let s = |k: &str| v.get(k).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
    if v.get("response").and_then(serde_json::Value::as_bool) == Some(true) {
        let ok = v.get("ok").and_then(serde_json::Value::as_bool).unwrap_or(false);
        return Some(BaresipEvent::Response { token: s("token"), ok, data: s("data") });
    }
    if v.get("event").and_then(serde_json::Value::as_bool) != Some(true) {
        return None;
    }
    let call_id = s("id");
    Some(match s("type").as_str() {
        "CALL_INCOMING" => BaresipEvent::Incoming { call_id, peer: s("peeruri") },
        "CALL_RINGING" => BaresipEvent::Ringing { call_id },
        "CALL_ESTABLISHED" => BaresipEvent::Established { call_id, peer: s("peeruri") },
        "CALL_RTPESTAB" => BaresipEvent::RtpEstablished { call_id },
        "CALL_CLOSED" => BaresipEvent::Closed { call_id, reason: s("param") },
        other => BaresipEvent::Other { kind: other.to_owned(), param: s("param") },
    })
}

/// Splits complete netstrings (`<len>:<payload>,`) off the front of `buf`.
fn take_netstrings(buf: &mut Vec<u8>) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(colon) = buf.iter().position(|&b| b == b':') {
        let Some(len) = std::str::from_utf8(&buf[..colon]).ok().and_then(|s| s.trim().parse::<usize>().ok()) else {
            // Not a netstring: drop the garbage up to the colon and resynchronise.
            buf.drain(..=colon);
            continue;
        };
        let end = colon + 1 + len;
        if buf.len() < end + 1 {
            break;
        }
        out.push(String::from_utf8_lossy(&buf[colon + 1..end]).into_owned());
        buf.drain(..=end);
    }
    out
}

fn netstring(payload: &str) -> Vec<u8> {
    format!("{}:{payload},", payload.len()).into_bytes()
}

impl Baresip {
    /// Whether a `baresip` executable is on the `PATH`.
    pub fn is_available() -> bool {
        crate::process::available("baresip")
    }

    /// Writes the config and starts baresip, returning once its control port answers.
    ///
    /// # Errors
    /// A bad WAV or codec (`InvalidInput`), no free ports, baresip failing to start or to open
    /// its control port within `startup_timeout` (the error then holds its log).
    pub fn spawn(opts: BaresipOptions) -> Result<Self> {
        let dir = peer_dir("baresip-")?;
        let rec_dir = dir.path().join("rec");
        fs::create_dir_all(&rec_dir)?;
        let (codec_mod, codec_rate) = codec_module(&opts.codec)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("unsupported codec {}", opts.codec)))?;

        let mut held = Vec::new();
        let sip_port = match opts.sip_port {
            Some(p) => p,
            None => {
                let block = ports::reserve(ports::SIP_PORTS, 3)?;
                let p = block.first();
                held.push(block);
                p
            }
        };
        let ctrl_port = opts.ctrl_port.unwrap_or(sip_port + 2);
        let rtp_ports = match opts.rtp_ports.clone() {
            Some(r) => r,
            None => {
                let block = ports::reserve(ports::RTP_PORTS, 10)?;
                let r = block.range();
                held.push(block);
                r
            }
        };

        let mut config = String::new();
        let mut line = |k: &str, v: &str| {
            let _ = writeln!(config, "{k}\t{v}");
        };
        line("poll_method", "epoll");
        line("sip_listen", &format!("127.0.0.1:{sip_port}"));
        line("net_interface", "127.0.0.1");
        line("call_local_timeout", "120");
        line("call_max_calls", "4");
        line("audio_player", "aubridge,testkit-sink");
        line("audio_alert", "aubridge,testkit-alert");
        let source_module = match &opts.audio_source {
            AudioSource::Wav(path) => {
                check_wav(path, codec_rate)?;
                line("audio_source", &format!("aufile,{}", path.display()));
                "aufile.so"
            }
            AudioSource::Sine(hz) => {
                line("audio_source", &format!("ausine,{hz}"));
                line("ausrc_srate", "48000");
                line("ausrc_channels", "2");
                "ausine.so"
            }
        };
        line("audio_level", "no");
        for k in ["ausrc_format", "auplay_format", "auenc_format", "audec_format"] {
            line(k, "s16");
        }
        line("audio_buffer", "20-160");
        line("rtp_ports", &format!("{}-{}", rtp_ports.start(), rtp_ports.end()));
        line("rtcp_mux", "no");
        line("jitter_buffer_delay", "5-10");
        line("rtp_stats", "no");
        line("module_path", &opts.module_path.display().to_string());
        for m in [codec_mod, source_module, "aubridge.so", "sndfile.so"] {
            line("module", m);
        }
        line("module_tmp", "account.so");
        line("module_app", "menu.so");
        line("module_app", "ctrl_tcp.so");
        line("ctrl_tcp_listen", &format!("127.0.0.1:{ctrl_port}"));
        line("snd_path", &rec_dir.display().to_string());
        line("statmode_default", "off");
        for extra in &opts.extra_config {
            let _ = writeln!(config, "{extra}");
        }
        fs::write(dir.path().join("config"), config)?;

        let t = opts.transport.as_str();
        let mut account = format!(
            "<sip:{}@{};transport={t}>;auth_pass={};answermode={};outbound=\"sip:{}:{};transport={t}\";audio_codecs={};regint={}",
            opts.user,
            opts.domain,
            opts.password,
            if opts.auto_answer { "auto" } else { "manual" },
            opts.proxy.ip(),
            opts.proxy.port(),
            opts.codec,
            if opts.register { 300 } else { 0 },
        );
        if let Some(auth_user) = &opts.auth_user {
            let _ = write!(account, ";auth_user={auth_user}");
        }
        for p in &opts.extra_account_params {
            let _ = write!(account, ";{p}");
        }
        fs::write(dir.path().join("accounts"), format!("{account}\n"))?;
        fs::write(dir.path().join("contacts"), "")?;

        let log_path = dir.path().join("baresip.log");
        let monitor = Monitor::new(&log_path)?;
        let mut cmd = Command::new(&opts.binary);
        cmd.arg("-f").arg(dir.path());
        if opts.sip_trace {
            cmd.arg("-s");
        }
        cmd.current_dir(dir.path())
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard::new(cmd.spawn()?, false);
        if let Some(c) = child.child_mut() {
            if let Some(out) = c.stdout.take() {
                monitor.attach(out, "", parse_log_line);
            }
            if let Some(err) = c.stderr.take() {
                monitor.attach(err, "", parse_log_line);
            }
        }
        let peer = format!("baresip {}@{}", opts.user, opts.domain);

        let deadline = Instant::now() + opts.startup_timeout;
        let stream = loop {
            if let Ok(s) = TcpStream::connect((Ipv4Addr::LOCALHOST, ctrl_port)) {
                break s;
            }
            if child.try_wait().is_some() || Instant::now() >= deadline {
                monitor.flush();
                return Err(Error::Failed {
                    peer,
                    what: "startup".into(),
                    detail: format!("no control port 127.0.0.1:{ctrl_port}"),
                    log_tail: monitor.tail(LOG_TAIL_LINES),
                });
            }
            thread::sleep(Duration::from_millis(50));
        };
        let mut reader = stream.try_clone()?;
        let m = Arc::clone(&monitor);
        thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        for msg in take_netstrings(&mut buf) {
                            let event = parse_ctrl(&msg);
                            m.record_line("ctrl< ", msg, event);
                        }
                    }
                }
            }
        });

        Ok(Self {
            child,
            monitor,
            ctrl: Mutex::new(stream),
            next_token: AtomicU64::new(1),
            aor: format!("sip:{}@{}", opts.user, opts.domain),
            sip_port,
            ctrl_port,
            rtp_ports,
            log_path,
            rec_dir,
            _ports: held,
            dir,
        })
    }

    fn peer(&self) -> String {
        format!("baresip {}", self.aor.trim_start_matches("sip:"))
    }

    fn waited<T>(&self, what: &str, w: Waited<Result<T>>) -> Result<T> {
        match w {
            Waited::Found(r) => r,
            Waited::Timeout => Err(Error::Timeout {
                peer: self.peer(),
                what: what.to_owned(),
                log_tail: self.monitor.tail(LOG_TAIL_LINES),
            }),
            Waited::Closed => Err(Error::Exited {
                peer: self.peer(),
                what: what.to_owned(),
                log_tail: self.monitor.tail(LOG_TAIL_LINES),
            }),
        }
    }

    fn failed(&self, what: &str, detail: String) -> Error {
        Error::Failed { peer: self.peer(), what: what.to_owned(), detail, log_tail: self.monitor.tail(LOG_TAIL_LINES) }
    }

    /// Sends a `ctrl_tcp` command (a long command of baresip's menu, such as `dial`, `hangup`,
    /// `accept`, `reginfo`) and returns its answer.
    ///
    /// # Errors
    /// `Failed` if baresip rejects the command, `Timeout` if it does not answer within 5 s.
    pub fn command(&self, command: &str, params: &str) -> Result<String> {
        let token = format!("tk{}", self.next_token.fetch_add(1, Ordering::Relaxed));
        let json = serde_json::json!({ "command": command, "params": params, "token": token }).to_string();
        {
            let mut ctrl = self.ctrl.lock().unwrap_or_else(PoisonError::into_inner);
            ctrl.write_all(&netstring(&json))?;
        }
        self.monitor.record_line("ctrl> ", json, None);
        let what = format!("the answer to `{command} {params}`");
        let answer = self.monitor.wait(Duration::from_secs(5), |j| {
            j.take("response", |e| matches!(e, BaresipEvent::Response { token: t, .. } if *t == token)).map(|e| match e
            {
                BaresipEvent::Response { ok: true, data, .. } => Ok(data.clone()),
                BaresipEvent::Response { data, .. } => Err(data.clone()),
                _ => Err(String::new()),
            })
        });
        match self.waited(&what, answer.map_found(Ok))? {
            Ok(data) => Ok(data),
            Err(data) => Err(self.failed(&format!("command `{command} {params}`"), data)),
        }
    }

    /// Waits for the next registration result.
    ///
    /// # Errors
    /// `Failed` with baresip's log line if the registrar refused it (or the digest algorithm is
    /// not supported), `Timeout`, or `Exited`.
    pub fn wait_registered(&self, timeout: Duration) -> Result<()> {
        let w = self.monitor.wait(timeout, |j| {
            j.take("registration", |e| matches!(e, BaresipEvent::Registered(_) | BaresipEvent::RegisterFailed(_))).map(
                |e| match e {
                    BaresipEvent::RegisterFailed(line) => Err(line.clone()),
                    _ => Ok(()),
                },
            )
        });
        self.waited("registration", w.map_found(Ok))?.map_err(|line| self.failed("registration", line))
    }

    /// Starts a call to `uri` (returns once baresip accepted the command).
    ///
    /// # Errors
    /// As [`command`](Self::command).
    pub fn dial(&self, uri: &str) -> Result<()> {
        self.command("dial", uri).map(drop)
    }

    /// Answers the ringing incoming call (when not auto-answering).
    ///
    /// # Errors
    /// As [`command`](Self::command).
    pub fn accept(&self) -> Result<()> {
        self.command("accept", "").map(drop)
    }

    /// Hangs up the current call.
    ///
    /// # Errors
    /// As [`command`](Self::command).
    pub fn hangup(&self) -> Result<()> {
        self.command("hangup", "").map(drop)
    }

    /// Waits for the next incoming call and returns the caller's URI.
    ///
    /// # Errors
    /// `Timeout` or `Exited`.
    pub fn wait_incoming(&self, timeout: Duration) -> Result<String> {
        let w = self.monitor.wait(timeout, |j| {
            j.take("incoming", |e| matches!(e, BaresipEvent::Incoming { .. })).map(|e| match e {
                BaresipEvent::Incoming { peer, .. } => Ok(peer.clone()),
                _ => Ok(String::new()),
            })
        });
        self.waited("an incoming call", w)
    }

    /// Waits for the next call to be established and returns the other party's URI.
    ///
    /// # Errors
    /// `Failed` with the close reason (such as `404 Not Found`) if a call closes without having
    /// been established, `Timeout`, or `Exited`.
    pub fn wait_established(&self, timeout: Duration) -> Result<String> {
        let w = self.monitor.wait(timeout, |j| {
            let established: HashSet<String> = j
                .all()
                .iter()
                .filter_map(|e| match e {
                    BaresipEvent::Established { call_id, .. } => Some(call_id.clone()),
                    _ => None,
                })
                .collect();
            let found = j
                .take("established", |e| match e {
                    BaresipEvent::Established { .. } => true,
                    BaresipEvent::Closed { call_id, .. } => !established.contains(call_id),
                    _ => false,
                })
                .cloned();
            match found? {
                BaresipEvent::Established { peer, .. } => Some(Ok(peer)),
                BaresipEvent::Closed { call_id, reason } => {
                    // That close is this failure: `wait_closed` must not return it later.
                    j.take("closed", |e| matches!(e, BaresipEvent::Closed { call_id: c, .. } if *c == call_id));
                    Some(Err(reason))
                }
                _ => None,
            }
        });
        self.waited("call established", w.map_found(Ok))?
            .map_err(|reason| self.failed("call", format!("closed before it was established: {reason}")))
    }

    /// Waits for the next call to close and returns baresip's reason.
    ///
    /// # Errors
    /// `Timeout` or `Exited`.
    pub fn wait_closed(&self, timeout: Duration) -> Result<String> {
        let w = self.monitor.wait(timeout, |j| {
            j.take("closed", |e| matches!(e, BaresipEvent::Closed { .. })).map(|e| match e {
                BaresipEvent::Closed { reason, .. } => Ok(reason.clone()),
                _ => Ok(String::new()),
            })
        });
        self.waited("call closed", w)
    }

    /// The WAV of what the latest call received (decoded), if any. Read it after the call closed:
    /// only then is its header complete.
    pub fn recorded_wav_path(&self) -> Option<PathBuf> {
        self.latest_dump("-dec.wav")
    }

    /// The WAV of what the latest call sent (before encoding), if any.
    pub fn sent_wav_path(&self) -> Option<PathBuf> {
        self.latest_dump("-enc.wav")
    }

    fn latest_dump(&self, suffix: &str) -> Option<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.rec_dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(suffix)))
            .collect();
        files.sort();
        files.pop()
    }

    /// The account's address of record, `sip:user@domain`.
    pub fn aor(&self) -> &str {
        &self.aor
    }

    /// The local SIP port.
    pub fn sip_port(&self) -> u16 {
        self.sip_port
    }

    /// The local `ctrl_tcp` port.
    pub fn ctrl_port(&self) -> u16 {
        self.ctrl_port
    }

    /// The RTP port range.
    pub fn rtp_ports(&self) -> RangeInclusive<u16> {
        self.rtp_ports.clone()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The generated config directory (kept after the run if `TESTKIT_KEEP_DIRS` is set).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The log file: baresip's output, SIP trace and control traffic.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.monitor.text()
    }

    /// All events so far.
    pub fn events(&self) -> Vec<BaresipEvent> {
        self.monitor.events()
    }

    /// Asks baresip to quit (it unregisters) and waits up to `timeout`, then kills it.
    pub fn quit(&mut self, timeout: Duration) {
        if self.child.try_wait().is_none() {
            let json = serde_json::json!({ "command": "quit", "params": "", "token": "quit" }).to_string();
            let sent = self.ctrl.lock().unwrap_or_else(PoisonError::into_inner).write_all(&netstring(&json)).is_ok();
            if !sent || self.child.wait_timeout(timeout).is_none() {
                self.child.kill();
            }
        }
        self.monitor.flush();
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        self.quit(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_registration() {
        assert_eq!(
            parse_log_line("alice@smoke.test: {0/UDP/v4} 200 OK (kamailio (5.6.3 (x86_64/linux))) [1 binding]"),
            Some(BaresipEvent::Registered(
                "alice@smoke.test: {0/UDP/v4} 200 OK (kamailio (5.6.3 (x86_64/linux))) [1 binding]".into()
            ))
        );
        assert!(matches!(
            parse_log_line("reg: sip:alice@smoke.test: 401 Unauthorized (kamailio)"),
            Some(BaresipEvent::RegisterFailed(_))
        ));
        assert!(matches!(
            parse_log_line("reg: sip:carol@smoke.test: Register: Function not implemented"),
            Some(BaresipEvent::RegisterFailed(_))
        ));
        assert_eq!(parse_log_line("alice@smoke.test: {0/UDP/v4} 200 OK (x) [0 bindings]"), None);
        assert_eq!(parse_log_line("Contact: <sip:alice-0x55@127.0.0.1:25070>;expires=300"), None);
    }

    #[test]
    fn ctrl_events_and_responses() {
        let e = parse_ctrl(
            r#"{"event":true,"type":"CALL_CLOSED","class":"call","id":"b06a","param":"Connection reset by peer"}"#,
        );
        assert_eq!(e, Some(BaresipEvent::Closed { call_id: "b06a".into(), reason: "Connection reset by peer".into() }));
        let r = parse_ctrl(r#"{"response":true,"ok":true,"data":"","token":"tk1"}"#);
        assert_eq!(r, Some(BaresipEvent::Response { token: "tk1".into(), ok: true, data: String::new() }));
        assert_eq!(parse_ctrl("not json"), None);
    }

    #[test]
    fn netstrings_split_and_resync() {
        let mut buf = b"5:hello,3:abc,4:pa".to_vec();
        assert_eq!(take_netstrings(&mut buf), vec!["hello", "abc"]);
        assert_eq!(buf, b"4:pa");
        buf.extend_from_slice(b"rt,");
        assert_eq!(take_netstrings(&mut buf), vec!["part"]);
        assert!(buf.is_empty());
        assert_eq!(netstring("{}"), b"2:{},");
    }

    #[test]
    fn wav_check_wants_mono_16_bit_at_codec_rate() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.wav");
        crate::audio::write_tone_wav(&p, 16000, 440.0, 0.5, Duration::from_millis(100)).unwrap();
        assert!(check_wav(&p, Some(16000)).is_ok());
        assert_eq!(check_wav(&p, Some(8000)).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert!(check_wav(&dir.path().join("missing.wav"), None).is_err());
    }
}
