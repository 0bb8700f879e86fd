//! A driver for `linphonec` (liblinphone 5.1, Debian's `linphone-cli`) as an independent SIP
//! phone. Unlike baresip 1.0 it answers `algorithm=SHA-256` digest challenges.
//!
//! [`Linphone::spawn`] writes a `linphonerc` into a temporary directory (also its `HOME`, so
//! nothing is read from or written to the real one) and runs `linphonec -c <rc> -d 6 [-a]` with
//! commands on its standard input:
//!
//! * **audio**: file mode (`soundcard use files`), the WAV to send (`play <wav>`) and the WAV to
//!   record what is received (`record <wav>`, 16-bit mono at the codec's rate, e.g. 48000 Hz for
//!   opus, 8000 Hz for PCMU);
//! * **auto answer**: `-a`;
//! * **events**: linphonec's own lines (`Call 1 with sip:... connected.`, `Call 1 with ... ended
//!   (No error).`, `Receiving new incoming call from ..., assigned id 1`) and liblinphone's log,
//!   which `-d 6` sends to the same standard output (`... moving from state
//!   [LinphoneRegistrationProgress] to [LinphoneRegistrationOk]`).
//!
//! Commands are fire-and-forget: linphonec does not tag its answers, so success is seen through
//! the events that follow.
//!
//! ```no_run
//! use std::time::Duration;
//! use testkit::linphone::{Linphone, LinphoneOptions};
//! let proxy = "127.0.0.1:25060".parse().unwrap();
//! let mut opts = LinphoneOptions::new("carol", "carol-pw", "smoke.test", proxy);
//! opts.play_wav = Some("tone-1000.wav".into());
//! let carol = Linphone::spawn(opts)?;
//! carol.wait_registered(Duration::from_secs(5))?;
//! carol.dial("sip:dave@smoke.test")?;
//! carol.wait_established(Duration::from_secs(10))?;
//! # Ok::<(), testkit::Error>(())
//! ```

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::Transport;
use crate::error::{Error, Result};
use crate::ports::{self, PortBlock};
use crate::process::{ChildGuard, LOG_TAIL_LINES, Monitor, Waited, peer_dir};

/// The audio codecs liblinphone 5.1 offers by default, as (mime type, clock rate, channels).
const KNOWN_CODECS: &[(&str, u32, u32)] = &[
    ("PCMU", 8000, 1),
    ("PCMA", 8000, 1),
    ("opus", 48000, 2),
    ("speex", 8000, 1),
    ("speex", 16000, 1),
    ("speex", 32000, 1),
    ("GSM", 8000, 1),
    ("G722", 8000, 1),
    ("G729", 8000, 1),
    ("iLBC", 8000, 1),
    ("L16", 44100, 1),
    ("L16", 44100, 2),
];

/// How to start one linphonec account. Build with [`LinphoneOptions::new`], then adjust fields.
#[derive(Debug, Clone)]
pub struct LinphoneOptions {
    /// SIP user (the identity is `sip:<user>@<domain>`).
    pub user: String,
    /// Digest password (answers MD5 and SHA-256 challenges).
    pub password: String,
    /// SIP domain, also used as the digest realm.
    pub domain: String,
    /// Digest user name, if not `user`.
    pub auth_user: Option<String>,
    /// The registrar and outbound proxy (`reg_proxy` and `reg_route`).
    pub proxy: SocketAddr,
    /// Transport towards the proxy.
    pub transport: Transport,
    /// Whether to register.
    pub register: bool,
    /// Local SIP port (UDP or TCP, after `transport`). `None` reserves one from
    /// [`ports::SIP_PORTS`].
    pub sip_port: Option<u16>,
    /// RTP ports. `None` reserves 10 from [`ports::RTP_PORTS`].
    pub rtp_ports: Option<RangeInclusive<u16>>,
    /// The preferred audio codec (`PCMU` by default; `PCMA`, `opus`, `G722`, `speex`...); the
    /// other known codecs are disabled.
    pub codec: String,
    /// The WAV to send in calls (`None`: silence).
    pub play_wav: Option<PathBuf>,
    /// Where to record what calls receive (`None`: `recorded.wav` in the temporary directory).
    pub record_wav: Option<PathBuf>,
    /// Answer incoming calls at once (`-a`).
    pub auto_answer: bool,
    /// The linphonec executable.
    pub binary: PathBuf,
    /// Extra text appended to the generated `linphonerc` (whole sections).
    pub extra_rc: String,
}

impl LinphoneOptions {
    /// Options for `user@domain` registering with `password` at `proxy` over UDP, preferring
    /// PCMU, sending silence and answering automatically.
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
            rtp_ports: None,
            codec: "PCMU".to_owned(),
            play_wav: None,
            record_wav: None,
            auto_answer: true,
            binary: PathBuf::from("linphonec"),
            extra_rc: String::new(),
        }
    }
}

/// Something linphonec reported.
#[derive(Debug, Clone, PartialEq)]
pub enum LinphoneEvent {
    /// The account moved to `LinphoneRegistrationOk` (the log line).
    Registered(String),
    /// The account moved to `LinphoneRegistrationFailed` (the log line).
    RegisterFailed(String),
    /// An incoming call.
    Incoming {
        /// linphonec's call id (1, 2, ...).
        call: u32,
        /// The caller.
        peer: String,
    },
    /// The far end is ringing.
    Ringing {
        /// linphonec's call id.
        call: u32,
    },
    /// The call is answered.
    Established {
        /// linphonec's call id.
        call: u32,
        /// The other party.
        peer: String,
    },
    /// Media streams are up.
    MediaEstablished {
        /// linphonec's call id.
        call: u32,
    },
    /// The call ended (`No error`, `Call declined`...) or failed (`error`).
    Closed {
        /// linphonec's call id.
        call: u32,
        /// linphonec's reason.
        reason: String,
    },
}

/// A running linphonec; killed when dropped (after a graceful `quit`, which unregisters).
pub struct Linphone {
    child: ChildGuard,
    stdin: Mutex<Option<ChildStdin>>,
    monitor: Arc<Monitor<LinphoneEvent>>,
    identity: String,
    sip_port: u16,
    rtp_ports: RangeInclusive<u16>,
    record_wav: Mutex<PathBuf>,
    log_path: PathBuf,
    _ports: Vec<PortBlock>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Linphone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linphone")
            .field("identity", &self.identity)
            .field("sip_port", &self.sip_port)
            .field("dir", &self.dir.path())
            .finish()
    }
}

/// The leading number of `s` and the rest.
fn number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    Some((s[..end].parse().ok()?, &s[end..]))
}

/// Parses one output line (CLI line or liblinphone log line).
fn parse_line(line: &str) -> Option<LinphoneEvent> {
    let mut l = line.trim();
    while let Some(rest) = l.strip_prefix("linphonec>") {
        l = rest.trim_start();
    }
    if l.contains("moving from state [") {
        if l.contains("to [LinphoneRegistrationOk]") {
            return Some(LinphoneEvent::Registered(l.to_owned()));
        }
        if l.contains("to [LinphoneRegistrationFailed]") {
            return Some(LinphoneEvent::RegisterFailed(l.to_owned()));
        }
        return None;
    }
    if let Some(rest) = l.strip_prefix("Receiving new incoming call from ") {
        let (peer, id) = rest.rsplit_once(", assigned id ")?;
        let (call, _) = number(id)?;
        return Some(LinphoneEvent::Incoming { call, peer: peer.to_owned() });
    }
    if let Some(rest) = l.strip_prefix("Media streams established with ") {
        let (_, id) = rest.rsplit_once(" for call ")?;
        let (call, _) = number(id)?;
        return Some(LinphoneEvent::MediaEstablished { call });
    }
    let rest = l.strip_prefix("Call ")?;
    let (call, rest) = number(rest)?;
    if let Some(peer_etc) = rest.strip_prefix(" with ") {
        if let Some(peer) = peer_etc.strip_suffix(" connected.") {
            return Some(LinphoneEvent::Established { call, peer: peer.to_owned() });
        }
        if let Some((_, reason)) = peer_etc.rsplit_once(" ended (") {
            return Some(LinphoneEvent::Closed { call, reason: reason.trim_end_matches(['.', ')']).to_owned() });
        }
        if peer_etc.ends_with(" error.") {
            return Some(LinphoneEvent::Closed { call, reason: "error".to_owned() });
        }
        if peer_etc.ends_with(" declined.") {
            return Some(LinphoneEvent::Closed { call, reason: "declined".to_owned() });
        }
        return None;
    }
    if rest.starts_with(" to ") && rest.ends_with(" ringing.") {
        return Some(LinphoneEvent::Ringing { call });
    }
    None
}

fn rc_codecs(preferred: &str) -> io::Result<String> {
    let chosen = KNOWN_CODECS
        .iter()
        .find(|(mime, _, _)| mime.eq_ignore_ascii_case(preferred))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("unknown codec {preferred}")))?;
    let mut rc = String::new();
    let order = std::iter::once(chosen).chain(KNOWN_CODECS.iter().filter(|c| *c != chosen));
    for (i, (mime, rate, channels)) in order.enumerate() {
        let enabled = u8::from(i == 0);
        let _ = writeln!(rc, "[audio_codec_{i}]\nmime={mime}\nrate={rate}\nchannels={channels}\nenabled={enabled}\n");
    }
    Ok(rc)
}

impl Linphone {
    /// Whether a `linphonec` executable is on the `PATH`.
    pub fn is_available() -> bool {
        crate::process::available("linphonec")
    }

    /// Writes the `linphonerc`, starts linphonec and switches it to WAV file mode.
    ///
    /// # Errors
    /// An unknown codec (`InvalidInput`), no free ports, or linphonec failing to start.
    pub fn spawn(opts: LinphoneOptions) -> Result<Self> {
        let dir = peer_dir("linphone-")?;
        fs::create_dir_all(dir.path().join(".local/share/linphone"))?;
        let mut held = Vec::new();
        let sip_port = match opts.sip_port {
            Some(p) => p,
            None => {
                let b = ports::reserve(ports::SIP_PORTS, 1)?;
                let p = b.first();
                held.push(b);
                p
            }
        };
        let rtp_ports = match opts.rtp_ports.clone() {
            Some(r) => r,
            None => {
                let b = ports::reserve(ports::RTP_PORTS, 10)?;
                let r = b.range();
                held.push(b);
                r
            }
        };
        let t = opts.transport.as_str();
        let (udp, tcp) = match opts.transport {
            Transport::Udp => (i32::from(sip_port), -1),
            Transport::Tcp => (-1, i32::from(sip_port)),
        };
        let proxy = format!("<sip:{}:{};transport={t}>", opts.proxy.ip(), opts.proxy.port());
        let mut rc = format!(
            "[sip]\nsip_port={udp}\nsip_tcp_port={tcp}\nsip_tls_port=-1\ndefault_proxy=0\n\
             register_only_when_network_is_up=0\nipv6_enabled=0\n\n\
             [rtp]\naudio_rtp_port={}-{}\nvideo_rtp_port=-1\n\n\
             [net]\nfirewall_policy=0\n\n[sound]\nechocancellation=0\n\n\
             [video]\nenabled=0\ncapture=0\ndisplay=0\n\n\
             [proxy_0]\nreg_proxy={proxy}\nreg_route={proxy}\nreg_identity=sip:{}@{}\nreg_expires=300\n\
             reg_sendregister={}\npublish=0\ndial_escape_plus=0\n\n\
             [auth_info_0]\nusername={}\npasswd={}\nrealm={}\ndomain={}\n\n",
            rtp_ports.start(),
            rtp_ports.end(),
            opts.user,
            opts.domain,
            u8::from(opts.register),
            opts.auth_user.as_deref().unwrap_or(&opts.user),
            opts.password,
            opts.domain,
            opts.domain,
        );
        rc.push_str(&rc_codecs(&opts.codec)?);
        rc.push_str(&opts.extra_rc);
        let rc_path = dir.path().join("linphonerc");
        fs::write(&rc_path, rc)?;

        let log_path = dir.path().join("linphonec.log");
        let monitor = Monitor::new(&log_path)?;
        let mut cmd = Command::new(&opts.binary);
        cmd.arg("-c").arg(&rc_path).args(["-d", "6"]);
        if opts.auto_answer {
            cmd.arg("-a");
        }
        cmd.current_dir(dir.path())
            .env("HOME", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard::new(cmd.spawn()?, false);
        let mut stdin = None;
        if let Some(c) = child.child_mut() {
            stdin = c.stdin.take();
            if let Some(out) = c.stdout.take() {
                monitor.attach(out, "", parse_line);
            }
            if let Some(err) = c.stderr.take() {
                monitor.attach(err, "", parse_line);
            }
        }
        let record_wav = opts.record_wav.clone().unwrap_or_else(|| dir.path().join("recorded.wav"));
        let me = Self {
            child,
            stdin: Mutex::new(stdin),
            monitor,
            identity: format!("sip:{}@{}", opts.user, opts.domain),
            sip_port,
            rtp_ports,
            record_wav: Mutex::new(record_wav.clone()),
            log_path,
            _ports: held,
            dir,
        };
        me.command("soundcard use files")?;
        if let Some(wav) = &opts.play_wav {
            me.set_play_file(wav)?;
        }
        me.set_record_file(&record_wav)?;
        Ok(me)
    }

    fn peer(&self) -> String {
        format!("linphonec {}", self.identity.trim_start_matches("sip:"))
    }

    fn waited<T>(&self, what: &str, w: Waited<Result<T>>) -> Result<T> {
        let log_tail = || self.monitor.tail(LOG_TAIL_LINES);
        match w {
            Waited::Found(r) => r,
            Waited::Timeout => Err(Error::Timeout { peer: self.peer(), what: what.to_owned(), log_tail: log_tail() }),
            Waited::Closed => Err(Error::Exited { peer: self.peer(), what: what.to_owned(), log_tail: log_tail() }),
        }
    }

    fn failed(&self, what: &str, detail: String) -> Error {
        Error::Failed { peer: self.peer(), what: what.to_owned(), detail, log_tail: self.monitor.tail(LOG_TAIL_LINES) }
    }

    /// Sends one line to linphonec's standard input (see `help` in linphonec).
    ///
    /// # Errors
    /// If the process no longer reads its input.
    pub fn command(&self, line: &str) -> Result<()> {
        let mut stdin = self.stdin.lock().unwrap_or_else(PoisonError::into_inner);
        let pipe = stdin.as_mut().ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "linphonec input closed"))?;
        pipe.write_all(format!("{line}\n").as_bytes())?;
        pipe.flush()?;
        self.monitor.record_line("cmd> ", line.to_owned(), None);
        Ok(())
    }

    /// Sets the WAV sent in the next calls (`play <wav>`).
    ///
    /// # Errors
    /// As [`command`](Self::command).
    pub fn set_play_file(&self, wav: &Path) -> Result<()> {
        self.command(&format!("play {}", wav.display()))
    }

    /// Sets the WAV that the next calls record into (`record <wav>`); a later call overwrites it.
    ///
    /// # Errors
    /// As [`command`](Self::command).
    pub fn set_record_file(&self, wav: &Path) -> Result<()> {
        self.command(&format!("record {}", wav.display()))?;
        *self.record_wav.lock().unwrap_or_else(PoisonError::into_inner) = wav.to_owned();
        Ok(())
    }

    /// Waits for the next registration result.
    ///
    /// # Errors
    /// `Failed` if the account went to `LinphoneRegistrationFailed`, `Timeout`, or `Exited`.
    pub fn wait_registered(&self, timeout: Duration) -> Result<()> {
        let w = self.monitor.wait(timeout, |j| {
            j.take("registration", |e| matches!(e, LinphoneEvent::Registered(_) | LinphoneEvent::RegisterFailed(_)))
                .map(|e| match e {
                    LinphoneEvent::RegisterFailed(line) => Err(line.clone()),
                    _ => Ok(()),
                })
        });
        self.waited("registration", w.map_found(Ok))?.map_err(|line| self.failed("registration", line))
    }

    /// Calls `uri` (`call <uri>`).
    ///
    /// # Errors
    /// As [`command`](Self::command).
    pub fn dial(&self, uri: &str) -> Result<()> {
        self.command(&format!("call {uri}"))
    }

    /// Answers the incoming call (`answer`), when not auto-answering.
    ///
    /// # Errors
    /// As [`command`](Self::command).
    pub fn accept(&self) -> Result<()> {
        self.command("answer")
    }

    /// Hangs up the current call (`terminate`).
    ///
    /// # Errors
    /// As [`command`](Self::command).
    pub fn hangup(&self) -> Result<()> {
        self.command("terminate")
    }

    /// Waits for the next incoming call and returns the caller.
    ///
    /// # Errors
    /// `Timeout` or `Exited`.
    pub fn wait_incoming(&self, timeout: Duration) -> Result<String> {
        let w = self.monitor.wait(timeout, |j| {
            j.take("incoming", |e| matches!(e, LinphoneEvent::Incoming { .. })).map(|e| match e {
                LinphoneEvent::Incoming { peer, .. } => Ok(peer.clone()),
                _ => Ok(String::new()),
            })
        });
        self.waited("an incoming call", w)
    }

    /// Waits for the next call to be established and returns the other party.
    ///
    /// # Errors
    /// `Failed` if a call closes without having been established, `Timeout`, or `Exited`.
    pub fn wait_established(&self, timeout: Duration) -> Result<String> {
        let w = self.monitor.wait(timeout, |j| {
            let established: HashSet<u32> = j
                .all()
                .iter()
                .filter_map(|e| match e {
                    LinphoneEvent::Established { call, .. } => Some(*call),
                    _ => None,
                })
                .collect();
            let found = j
                .take("established", |e| match e {
                    LinphoneEvent::Established { .. } => true,
                    LinphoneEvent::Closed { call, .. } => !established.contains(call),
                    _ => false,
                })
                .cloned();
            match found? {
                LinphoneEvent::Established { peer, .. } => Some(Ok(peer)),
                LinphoneEvent::Closed { call, reason } => {
                    // That close is this failure: `wait_closed` must not return it later.
                    j.take("closed", |e| matches!(e, LinphoneEvent::Closed { call: c, .. } if *c == call));
                    Some(Err(reason))
                }
                _ => None,
            }
        });
        self.waited("call established", w.map_found(Ok))?
            .map_err(|reason| self.failed("call", format!("closed before it was established: {reason}")))
    }

    /// Waits for the next call to close and returns linphonec's reason.
    ///
    /// # Errors
    /// `Timeout` or `Exited`.
    pub fn wait_closed(&self, timeout: Duration) -> Result<String> {
        let w = self.monitor.wait(timeout, |j| {
            j.take("closed", |e| matches!(e, LinphoneEvent::Closed { .. })).map(|e| match e {
                LinphoneEvent::Closed { reason, .. } => Ok(reason.clone()),
                _ => Ok(String::new()),
            })
        });
        self.waited("call closed", w)
    }

    /// The WAV that calls record into.
    pub fn recorded_wav_path(&self) -> PathBuf {
        self.record_wav.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The identity, `sip:user@domain`.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The local SIP port.
    pub fn sip_port(&self) -> u16 {
        self.sip_port
    }

    /// The RTP port range.
    pub fn rtp_ports(&self) -> RangeInclusive<u16> {
        self.rtp_ports.clone()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temporary directory (`HOME`, `linphonerc`, log, default recording).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The log file: linphonec's output and liblinphone's log, with the commands sent (`cmd>`).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.monitor.text()
    }

    /// All events so far.
    pub fn events(&self) -> Vec<LinphoneEvent> {
        self.monitor.events()
    }

    /// Sends `quit` (linphonec unregisters) and waits up to `timeout`, then kills it.
    pub fn quit(&mut self, timeout: Duration) {
        if self.child.try_wait().is_none() {
            let sent = self.command("quit").is_ok();
            if !sent || self.child.wait_timeout(timeout).is_none() {
                self.child.kill();
            }
        }
        self.stdin.lock().unwrap_or_else(PoisonError::into_inner).take();
        self.monitor.flush();
    }
}

impl Drop for Linphone {
    fn drop(&mut self) {
        self.quit(Duration::from_secs(3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cli_lines() {
        assert_eq!(
            parse_line("linphonec> Receiving new incoming call from sip:carol@smoke.test, assigned id 1"),
            Some(LinphoneEvent::Incoming { call: 1, peer: "sip:carol@smoke.test".into() })
        );
        assert_eq!(parse_line("Call 1 to sip:dave@smoke.test ringing."), Some(LinphoneEvent::Ringing { call: 1 }));
        assert_eq!(
            parse_line("Call 12 with sip:dave@smoke.test connected."),
            Some(LinphoneEvent::Established { call: 12, peer: "sip:dave@smoke.test".into() })
        );
        assert_eq!(
            parse_line("Media streams established with sip:dave@smoke.test for call 1 (audio)."),
            Some(LinphoneEvent::MediaEstablished { call: 1 })
        );
        assert_eq!(
            parse_line("Call 1 with sip:dave@smoke.test ended (No error)."),
            Some(LinphoneEvent::Closed { call: 1, reason: "No error".into() })
        );
        assert_eq!(
            parse_line("linphonec> Call 1 with sip:dave@smoke.test error."),
            Some(LinphoneEvent::Closed { call: 1, reason: "error".into() })
        );
        assert_eq!(parse_line("Call 1 to sip:dave@smoke.test in progress."), None);
    }

    #[test]
    fn parses_registration_log_lines() {
        let ok = "2026-11-22 03:41:10:424 liblinphone-message-Account [0x5] for identity [sip:carol@smoke.test] moving from state [LinphoneRegistrationProgress] to [LinphoneRegistrationOk] on core [0x5]";
        assert!(matches!(parse_line(ok), Some(LinphoneEvent::Registered(_))));
        let failed = ok.replace("to [LinphoneRegistrationOk]", "to [LinphoneRegistrationFailed]");
        assert!(matches!(parse_line(&failed), Some(LinphoneEvent::RegisterFailed(_))));
        let cleared = ok.replace("to [LinphoneRegistrationOk]", "to [LinphoneRegistrationCleared]");
        assert_eq!(parse_line(&cleared), None);
    }

    #[test]
    fn codec_sections_enable_only_the_chosen_one_first() {
        let rc = rc_codecs("pcma").unwrap();
        assert!(rc.starts_with("[audio_codec_0]\nmime=PCMA\nrate=8000\nchannels=1\nenabled=1\n"), "{rc}");
        assert_eq!(rc.matches("enabled=1").count(), 1);
        assert!(rc_codecs("nope").is_err());
    }
}
