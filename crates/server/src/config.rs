//! Configuration: the TOML file, its defaults, and errors that name the file, the line,
//! the key and what was expected.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pbx::flow::Transport;
use serde::Deserialize;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite database (and later recordings and voicemail) live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// SIP signalling.
    #[serde(default)]
    pub sip: SipConfig,
    /// Registrar limits.
    #[serde(default)]
    pub registrar: RegistrarSection,
    /// Digest authentication.
    #[serde(default)]
    pub auth: AuthSection,
    /// Call handling.
    #[serde(default)]
    pub calls: CallsSection,
    /// Media relay.
    #[serde(default)]
    pub media: MediaSection,
    /// Storage backend.
    #[serde(default)]
    pub storage: StorageSection,
    /// Logging.
    #[serde(default)]
    pub log: LogSection,
    /// Tenants (companies), each a SIP domain with users.
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./switchboard-data")
}

/// `[sip]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Listen addresses: `udp:ADDR:PORT` or `tcp:ADDR:PORT` (IPv6 in brackets).
    pub listen: Vec<String>,
    /// Text of the Server and User-Agent headers ("" sends none).
    pub server_name: String,
    /// Host names that designate this server, besides its addresses.
    pub local_hosts: Vec<String>,
    /// Tenant that serves requests addressed to the server's own address rather than to a
    /// tenant domain (phones set up with the server's IP as their domain).
    pub default_tenant: Option<String>,
    /// RFC 3261 T1 in milliseconds.
    pub t1_ms: u64,
    /// RFC 3261 T2 in milliseconds.
    pub t2_ms: u64,
    /// RFC 3261 T4 in milliseconds.
    pub t4_ms: u64,
    /// Close TCP connections idle this long (seconds).
    pub tcp_idle_timeout_secs: u64,
    /// Signalling threads (0: half the cores, at least one; the relay has its own threads).
    pub workers: usize,
    /// Largest SIP message accepted (bytes).
    pub max_message_size: usize,
    /// Most header fields accepted in one message.
    pub max_headers: usize,
    /// Longest header line accepted (bytes).
    pub max_line_length: usize,
}

impl Default for SipConfig {
    fn default() -> SipConfig {
        SipConfig {
            listen: vec!["udp:0.0.0.0:5060".into(), "tcp:0.0.0.0:5060".into()],
            server_name: format!("Switchboard/{}", env!("CARGO_PKG_VERSION")),
            local_hosts: Vec::new(),
            default_tenant: None,
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            tcp_idle_timeout_secs: 300,
            workers: 0,
            max_message_size: 65_535,
            max_headers: 128,
            max_line_length: 8_192,
        }
    }
}

/// `[registrar]`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarSection {
    /// Shortest registration accepted (seconds; shorter gets 423).
    pub min_expires: u32,
    /// Longest registration granted (seconds).
    pub max_expires: u32,
    /// Registration granted when the phone does not ask (seconds).
    pub default_expires: u32,
    /// Most contacts per user.
    pub max_contacts: usize,
}

impl Default for RegistrarSection {
    fn default() -> RegistrarSection {
        let d = pbx::registrar::RegistrarConfig::default();
        RegistrarSection {
            min_expires: d.min_expires,
            max_expires: d.max_expires,
            default_expires: d.default_expires,
            max_contacts: d.max_contacts,
        }
    }
}

/// `[auth]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Digest algorithms offered, one challenge each, in order: "MD5", "SHA-256". MD5 alone by
    /// default: some phones (baresip 1.0) fail outright when a SHA-256 challenge is listed.
    pub algorithms: Vec<String>,
    /// Nonce lifetime (seconds).
    pub nonce_lifetime_secs: u64,
}

impl Default for AuthSection {
    fn default() -> AuthSection {
        AuthSection { algorithms: vec!["MD5".into()], nonce_lifetime_secs: 300 }
    }
}

/// `[calls]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsSection {
    /// How long a callee may ring (seconds).
    pub ring_timeout_secs: u64,
    /// Record every answered call (two-channel WAV: caller left, callee right).
    pub record: bool,
    /// Where recordings go (empty: `recordings` in `data_dir`).
    pub recordings_dir: PathBuf,
    /// What a recording holds: both legs in two channels, mixed in one, or one leg.
    pub record_mode: RecordModeSetting,
}

/// `record_mode` of `[calls]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordModeSetting {
    /// Caller left, callee right.
    #[default]
    Stereo,
    /// Both legs mixed, mono.
    Mixed,
    /// The caller's leg only.
    Caller,
    /// The callee's leg only.
    Callee,
}

impl RecordModeSetting {
    /// The relay's mode.
    pub fn mode(self) -> media::record::RecordMode {
        match self {
            RecordModeSetting::Stereo => media::record::RecordMode::Stereo,
            RecordModeSetting::Mixed => media::record::RecordMode::Mixed,
            RecordModeSetting::Caller => media::record::RecordMode::Caller,
            RecordModeSetting::Callee => media::record::RecordMode::Callee,
        }
    }
}

impl Default for CallsSection {
    fn default() -> CallsSection {
        CallsSection {
            ring_timeout_secs: 120,
            record: false,
            recordings_dir: PathBuf::new(),
            record_mode: RecordModeSetting::Stereo,
        }
    }
}

/// `[media]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaSection {
    /// RTP port range, inclusive: `[min, max]`.
    pub rtp_ports: [u16; 2],
    /// End answered calls whose media has been silent this long (seconds; 0 disables).
    pub media_timeout_secs: u64,
    /// DSCP value on RTP packets (46 = EF; absent or 0: not set).
    pub dscp: u8,
    /// Relay worker threads (0: one per core).
    pub workers: usize,
    /// Seconds between quality events of an answered call (0: none).
    pub quality_interval_secs: u64,
    /// MOS under which a leg raises a quality alert (after two intervals in a row; 0: never).
    pub mos_alert_threshold: f64,
    /// Listen for DTMF tones in the G.711 audio of legs that declared no telephone-event.
    pub inband_dtmf: bool,
    /// Offer transcodable codecs (G.711 µ/A-law, G.722) to the answerer and transcode when the
    /// legs share no codec.
    pub transcoding: bool,
    /// Opus encoder complexity (0 to 10) when the relay transcodes to Opus: 0 costs about a
    /// third of 5 for speech at telephony bitrates (see BENCHMARKS.md).
    pub opus_complexity: u8,
    /// Music on hold: `"builtin"`, a WAV file, a folder of WAV files (played in name order,
    /// looped; any common rate and format), or `""` for none.
    pub music_on_hold: String,
    /// Where the spoken system prompts are (empty: `prompts` in `data_dir`): `<lang>/<id>.wav`,
    /// generated with `espeak-ng` at first start when missing; a tenant replaces one by putting
    /// its own file at `tenants/<tenant>/<lang>/<id>.wav`.
    pub prompts_dir: PathBuf,
    /// Languages of the system prompts (`en`, `fr`); empty: generate none.
    pub prompt_languages: Vec<String>,
}

impl Default for MediaSection {
    fn default() -> MediaSection {
        MediaSection {
            rtp_ports: [20000, 29999],
            media_timeout_secs: 60,
            dscp: 46,
            workers: 0,
            quality_interval_secs: 5,
            mos_alert_threshold: 3.5,
            inband_dtmf: true,
            transcoding: true,
            opus_complexity: 0,
            music_on_hold: "builtin".to_owned(),
            prompts_dir: PathBuf::new(),
            prompt_languages: vec!["en".to_owned(), "fr".to_owned()],
        }
    }
}

/// `[storage]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// `postgres://...` or `sqlite:PATH`; absent: SQLite in `data_dir`.
    pub url: Option<String>,
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Level filter (`info`, `debug`, or a tracing filter such as `server=debug`).
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogSection {
    fn default() -> LogSection {
        LogSection { level: "info".into(), format: "text".into() }
    }
}

/// `[[tenants]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Short name.
    pub name: String,
    /// SIP domain (a name, or an IP address).
    pub domain: String,
    /// Users.
    #[serde(default)]
    pub users: Vec<UserConfig>,
}

/// `[[tenants.users]]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Extension (digits, also the SIP user name).
    pub extension: String,
    /// SIP password (only its digest hashes are stored).
    pub password: String,
    /// Name shown to callees.
    #[serde(default)]
    pub display_name: String,
    /// Encrypted media (SRTP with SDES keys) for this user's phones.
    #[serde(default)]
    pub srtp: SrtpSetting,
    /// How this user's phones want DTMF digits from the other party.
    #[serde(default)]
    pub dtmf: DtmfSetting,
}

/// `dtmf` of a user: the method its phones receive digits by (others are converted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtmfSetting {
    /// RFC 4733 when the phone declares telephone-event, SIP INFO otherwise.
    #[default]
    Auto,
    /// RFC 4733 telephone-events.
    Rfc4733,
    /// SIP INFO.
    Info,
    /// Tones in the audio.
    Inband,
}

impl DtmfSetting {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            DtmfSetting::Auto => "auto",
            DtmfSetting::Rfc4733 => "rfc4733",
            DtmfSetting::Info => "info",
            DtmfSetting::Inband => "inband",
        }
    }
}

/// `srtp` of a user: whether its phones may, or must, encrypt their media.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpSetting {
    /// Plain RTP only: an encrypted offer from the phone is refused with 488.
    Off,
    /// The phone may encrypt (its SRTP offers are accepted); calls to it are offered plain RTP.
    #[default]
    Optional,
    /// Encrypted only: plain offers from the phone are refused with 488, calls to it are
    /// offered SRTP.
    Required,
}

impl SrtpSetting {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            SrtpSetting::Off => "off",
            SrtpSetting::Optional => "optional",
            SrtpSetting::Required => "required",
        }
    }
}

impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("extension", &self.extension)
            .field("password", &"<redacted>")
            .field("display_name", &self.display_name)
            .field("srtp", &self.srtp)
            .field("dtmf", &self.dtmf)
            .finish()
    }
}

/// A configuration that cannot be used: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key, as `table.key`.
    pub key: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": key `{k}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// One parsed listen entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen {
    /// Transport.
    pub transport: Transport,
    /// Address.
    pub addr: SocketAddr,
}

/// Parses `udp:ADDR:PORT` / `tcp:ADDR:PORT`.
pub fn parse_listen(s: &str) -> Result<Listen, String> {
    let (t, addr) =
        s.split_once(':').ok_or_else(|| format!("`{s}`: expected TRANSPORT:ADDRESS:PORT, such as udp:0.0.0.0:5060"))?;
    let transport = match t.to_ascii_lowercase().as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => return Err(format!("`{s}`: TLS is not supported yet; use udp: or tcp:")),
        other => return Err(format!("`{s}`: unknown transport `{other}`, expected udp or tcp")),
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("`{s}`: `{addr}` is not an address:port (IPv6 goes in brackets: [::1]:5060)"))?;
    Ok(Listen { transport, addr })
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks configuration text (`file` is used in errors).
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let key = e.span().and_then(|s| key_at(text, s.start));
            ConfigError { file: file.to_path_buf(), line, key, message: e.message().trim().to_owned() }
        })?;
        cfg.check(text, file)?;
        Ok(cfg)
    }

    /// The embedded default: everything in `./switchboard-data`, SIP on all addresses.
    pub fn embedded_default() -> Config {
        Config {
            data_dir: default_data_dir(),
            sip: SipConfig {
                listen: vec![
                    "udp:0.0.0.0:5060".into(),
                    "tcp:0.0.0.0:5060".into(),
                    "udp:[::]:5060".into(),
                    "tcp:[::]:5060".into(),
                ],
                default_tenant: Some("demo".into()),
                ..SipConfig::default()
            },
            registrar: RegistrarSection::default(),
            auth: AuthSection::default(),
            calls: CallsSection::default(),
            media: MediaSection::default(),
            storage: StorageSection::default(),
            log: LogSection::default(),
            tenants: Vec::new(),
        }
    }

    fn check(&self, text: &str, file: &Path) -> Result<(), ConfigError> {
        let err = |table: &str, key: &str, nth: usize, message: String| ConfigError {
            file: file.to_path_buf(),
            line: locate(text, table, key, nth),
            key: Some(if table.is_empty() { key.to_owned() } else { format!("{table}.{key}") }),
            message,
        };
        if self.sip.listen.is_empty() {
            return Err(err("sip", "listen", 0, "expected at least one listen address".into()));
        }
        for l in &self.sip.listen {
            parse_listen(l).map_err(|m| err("sip", "listen", 0, m))?;
        }
        let [lo, hi] = self.media.rtp_ports;
        if lo >= hi || lo < 1024 {
            return Err(err(
                "media",
                "rtp_ports",
                0,
                format!("expected [min, max] with 1024 <= min < max, found [{lo}, {hi}]"),
            ));
        }
        if hi - lo < 3 {
            return Err(err("media", "rtp_ports", 0, "the range must hold at least two RTP/RTCP port pairs".into()));
        }
        if self.media.opus_complexity > 10 {
            let m = format!("expected 0 to 10, found {}", self.media.opus_complexity);
            return Err(err("media", "opus_complexity", 0, m));
        }
        for lang in &self.media.prompt_languages {
            if lang.parse::<audio::prompts::Lang>().is_err() {
                let m = format!("unknown prompt language {lang:?}: expected \"en\" or \"fr\"");
                return Err(err("media", "prompt_languages", 0, m));
            }
        }
        if let Err(m) = check_music(&self.media.music_on_hold) {
            return Err(err("media", "music_on_hold", 0, m));
        }
        let threshold = self.media.mos_alert_threshold;
        if !(0.0..=4.5).contains(&threshold) {
            return Err(err(
                "media",
                "mos_alert_threshold",
                0,
                format!("expected a MOS between 1 and 4.5 (0 to turn alerts off), found {threshold}"),
            ));
        }
        if self.sip.t1_ms == 0 || self.sip.t2_ms < self.sip.t1_ms {
            return Err(err("sip", "t2_ms", 0, "expected t1_ms > 0 and t2_ms >= t1_ms".into()));
        }
        for a in &self.auth.algorithms {
            if sip::auth::Algorithm::from_token(a).is_none() {
                return Err(err(
                    "auth",
                    "algorithms",
                    0,
                    format!("unknown algorithm `{a}`, expected \"MD5\" or \"SHA-256\""),
                ));
            }
        }
        if self.auth.algorithms.is_empty() {
            return Err(err("auth", "algorithms", 0, "expected at least one algorithm".into()));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(err(
                "log",
                "format",
                0,
                format!("expected \"text\" or \"json\", found \"{}\"", self.log.format),
            ));
        }
        if let Some(url) = &self.storage.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:"))
        {
            return Err(err("storage", "url", 0, format!("expected postgres://... or sqlite:PATH, found \"{url}\"")));
        }
        let mut domains = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        let mut user_index = 0;
        for (i, t) in self.tenants.iter().enumerate() {
            if t.name.trim().is_empty() {
                return Err(err("tenants", "name", i, "expected a non-empty tenant name".into()));
            }
            if !names.insert(t.name.to_ascii_lowercase()) {
                return Err(err("tenants", "name", i, format!("tenant name \"{}\" is used twice", t.name)));
            }
            if sip::Host::parse(&t.domain).is_err() {
                return Err(err(
                    "tenants",
                    "domain",
                    i,
                    format!("\"{}\" is not a domain name or IP address", t.domain),
                ));
            }
            if !domains.insert(t.domain.to_ascii_lowercase()) {
                return Err(err("tenants", "domain", i, format!("domain \"{}\" is used by two tenants", t.domain)));
            }
            let mut exts = std::collections::HashSet::new();
            for u in &t.users {
                let valid = !u.extension.is_empty()
                    && u.extension.len() <= 32
                    && u.extension.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'));
                if !valid {
                    return Err(err(
                        "tenants.users",
                        "extension",
                        user_index,
                        format!("\"{}\" is not a valid extension (letters, digits, - _ . +; at most 32)", u.extension),
                    ));
                }
                if !exts.insert(u.extension.clone()) {
                    return Err(err(
                        "tenants.users",
                        "extension",
                        user_index,
                        format!("extension {} appears twice in tenant {}", u.extension, t.name),
                    ));
                }
                if u.password.len() < 8 {
                    return Err(err(
                        "tenants.users",
                        "password",
                        user_index,
                        format!("the password of {} must have at least 8 characters", u.extension),
                    ));
                }
                user_index += 1;
            }
        }
        if let Some(d) = &self.sip.default_tenant
            && !self.tenants.iter().any(|t| &t.name == d)
            && d != "demo"
        {
            return Err(err("sip", "default_tenant", 0, format!("no tenant named \"{d}\"")));
        }
        Ok(())
    }

    /// Signalling threads to run.
    pub fn signalling_workers(&self) -> usize {
        match self.sip.workers {
            0 => (std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) / 2).max(1),
            n => n,
        }
    }

    /// Listen entries, parsed.
    pub fn listens(&self) -> Vec<Listen> {
        self.sip.listen.iter().filter_map(|l| parse_listen(l).ok()).collect()
    }

    /// Transaction timers.
    pub fn timers(&self) -> sip::transaction::TimerConfig {
        sip::transaction::TimerConfig {
            t1: Duration::from_millis(self.sip.t1_ms),
            t2: Duration::from_millis(self.sip.t2_ms),
            t4: Duration::from_millis(self.sip.t4_ms),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The dotted key whose value sits at `offset`: the `[table]` header above it and the key
/// before `=` on its line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_owned());
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) if line.trim_start().starts_with('[') => Some(t),
        _ => None,
    }
}

/// Line of the `nth` occurrence of `key = ...` inside tables named `table` (`[table]` or
/// `[[table]]`), for errors found after parsing.
fn locate(text: &str, table: &str, key: &str, nth: usize) -> Option<usize> {
    let mut current = String::new();
    let mut seen = 0;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            current = l.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
            continue;
        }
        if current == table
            && let Some((k, _)) = l.split_once('=')
            && k.trim() == key
        {
            if seen == nth {
                return Some(i + 1);
            }
            seen += 1;
        }
    }
    None
}

/// Checks the music on hold `spec` without reading its audio (configuration validation).
fn check_music(spec: &str) -> Result<(), String> {
    for file in music_files(spec)? {
        check_music_header(&file)?;
    }
    Ok(())
}

/// The WAV files `spec` names: none for `""` and `"builtin"`, the file itself, or the `.wav`
/// files of a folder in name order.
fn music_files(spec: &str) -> Result<Vec<PathBuf>, String> {
    if spec.is_empty() || spec == "builtin" {
        return Ok(Vec::new());
    }
    let path = Path::new(spec);
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| format!("{spec}: {e}"))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{spec}: the folder holds no .wav file"));
    }
    Ok(files)
}

/// Checks a music file's header (the audio is read once, at start).
fn check_music_header(file: &Path) -> Result<(), String> {
    let reader = hound::WavReader::open(file)
        .map_err(|e| format!("expected \"builtin\", \"\", a WAV file or a folder of them; {}: {e}", file.display()))?;
    let wav = reader.spec();
    let encoding_ok = match wav.sample_format {
        hound::SampleFormat::Int => matches!(wav.bits_per_sample, 8 | 16 | 24 | 32),
        hound::SampleFormat::Float => wav.bits_per_sample == 32,
    };
    if !encoding_ok || !(8000..=48000).contains(&wav.sample_rate) || !matches!(wav.channels, 1 | 2) {
        return Err(format!(
            "{}: expected PCM (8 to 32-bit integer or 32-bit float) at 8000 to 48000 Hz, mono or stereo; found {} \
             bits at {} Hz, {} channels (convert it, e.g. `sox in.wav -r 8000 -c 1 -b 16 out.wav`)",
            file.display(),
            wav.bits_per_sample,
            wav.sample_rate,
            wav.channels
        ));
    }
    Ok(())
}

/// The music on hold `spec` names: `""` none, `"builtin"` the built-in music, else a WAV file
/// or a folder of WAV files (any common rate and format), joined in name order, mixed to mono
/// and brought to 8 kHz; the player loops it.
pub fn load_music(spec: &str) -> Result<Option<media::player::Source>, String> {
    let files = music_files(spec)?;
    if files.is_empty() {
        return Ok((spec == "builtin").then_some(media::player::Source::BuiltinMusic));
    }
    let mut samples = Vec::new();
    for file in &files {
        check_music_header(file)?;
        samples.extend(audio::wav::load_wav(file, 8000).map_err(|e| e.to_string())?);
    }
    if samples.is_empty() {
        return Err(format!("{spec}: no audio"));
    }
    Ok(Some(media::player::Source::Samples(std::sync::Arc::new(samples))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_EXAMPLE: &str = r#"
data_dir = "/var/lib/switchboard"
[sip]
listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060", "udp:[::1]:5060"]
[media]
rtp_ports = [20000, 29999]
[storage]
url = "postgres://127.0.0.1/test"
[[tenants]]
name = "acme"
domain = "acme.test"
[[tenants.users]]
extension = "1001"
password = "secret-1001"
display_name = "Alice"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("switchboard.toml"))
    }

    #[test]
    fn the_documented_keys_parse() {
        let c = parse(ISSUE_EXAMPLE).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/switchboard"));
        assert_eq!(c.listens().len(), 3);
        assert_eq!(c.listens()[2].addr, "[::1]:5060".parse().unwrap());
        assert_eq!(c.media.rtp_ports, [20000, 29999]);
        assert_eq!(c.storage.url.as_deref(), Some("postgres://127.0.0.1/test"));
        assert_eq!(c.tenants[0].users[0].display_name, "Alice");
    }

    #[test]
    fn type_errors_name_file_line_and_key() {
        let e = parse(&ISSUE_EXAMPLE.replace("rtp_ports = [20000, 29999]", "rtp_ports = [20000, \"x\"]")).unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
        assert_eq!(e.key.as_deref(), Some("media.rtp_ports"), "{e}");
        assert!(e.to_string().starts_with("switchboard.toml:6: key `media.rtp_ports`: "), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse(&ISSUE_EXAMPLE.replace("[media]\n", "[media]\nrtp_portz = 1\n")).unwrap_err();
        assert_eq!(e.line, Some(6));
        assert!(e.message.contains("unknown field `rtp_portz`"), "{e}");
    }

    #[test]
    fn semantic_errors_point_at_the_key() {
        let e = parse(&ISSUE_EXAMPLE.replace("\"udp:[::1]:5060\"", "\"sctp:[::1]:5060\"")).unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("sip.listen")));
        assert!(e.message.contains("unknown transport"), "{e}");
        let e = parse(&ISSUE_EXAMPLE.replace("[20000, 29999]", "[29999, 20000]")).unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(6), Some("media.rtp_ports")));
        let e = parse(&ISSUE_EXAMPLE.replace("secret-1001", "short")).unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(14), Some("tenants.users.password")));
        let dup = format!("{ISSUE_EXAMPLE}[[tenants.users]]\nextension = \"1001\"\npassword = \"another-secret\"\n");
        let e = parse(&dup).unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(17), Some("tenants.users.extension")), "{e}");
    }

    #[test]
    fn missing_required_key() {
        let e = parse("[[tenants]]\nname = \"x\"\n").unwrap_err();
        assert!(e.message.contains("missing field `domain`"), "{e}");
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn music_on_hold_must_be_a_usable_wav() {
        let with = |value: &str| {
            ISSUE_EXAMPLE.replace(
                "rtp_ports = [20000, 29999]",
                &format!("rtp_ports = [20000, 29999]\nmusic_on_hold = \"{value}\""),
            )
        };
        let e = parse(&with("/nonexistent/music.wav")).unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(7), Some("media.music_on_hold")), "{e}");
        let dir = std::env::temp_dir().join(format!("sb-moh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let wav = |name: &str, rate: u32, bits: u16| {
            let path = dir.join(name);
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: rate,
                bits_per_sample: bits,
                sample_format: hound::SampleFormat::Int,
            };
            let mut w = hound::WavWriter::create(&path, spec).unwrap();
            for i in 0..1600 {
                if bits == 16 {
                    w.write_sample((i % 100) as i16 * 100).unwrap();
                } else {
                    w.write_sample((i % 100) as i8).unwrap();
                }
            }
            w.finalize().unwrap();
            path.display().to_string()
        };
        let e = parse(&with(&wav("fast.wav", 96000, 16))).unwrap_err();
        assert!(e.message.contains("8000 to 48000 Hz") && e.message.contains("sox"), "{e}");
        let c = parse(&with(&wav("wide.wav", 16000, 16))).unwrap();
        match load_music(&c.media.music_on_hold).unwrap() {
            Some(media::player::Source::Samples(s)) => assert_eq!(s.len(), 800),
            other => panic!("{other:?}"),
        }
        // A folder: its WAV files (any common rate) in name order, the unusable one refused.
        let folder = dir.join("playlist");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::rename(wav("cd.wav", 44100, 16), folder.join("1-cd.wav")).unwrap();
        std::fs::rename(wav("8bit.wav", 8000, 8), folder.join("2-8bit.wav")).unwrap();
        let c = parse(&with(&folder.display().to_string())).unwrap();
        match load_music(&c.media.music_on_hold).unwrap() {
            // 1600 samples at 44.1 kHz are 290 at 8 kHz; then 1600 at 8 kHz.
            Some(media::player::Source::Samples(s)) => assert!((1880..=1900).contains(&s.len()), "{}", s.len()),
            other => panic!("{other:?}"),
        }
        std::fs::rename(wav("fast.wav", 96000, 16), folder.join("3-fast.wav")).unwrap();
        let e = parse(&with(&folder.display().to_string())).unwrap_err();
        assert!(e.message.contains("3-fast.wav"), "{e}");
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(parse(&with(&empty.display().to_string())).unwrap_err().message.contains("no .wav"));
        assert!(matches!(load_music("builtin"), Ok(Some(media::player::Source::BuiltinMusic))));
        assert!(matches!(load_music(""), Ok(None)));
        let _ = std::fs::remove_dir_all(dir);
    }
}
