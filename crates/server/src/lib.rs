//! The Switchboard server: transports, the dispatcher, one task per door shard and per
//! call, the media relay, the store writer and the CDR consumer, wired together by
//! [`serve`]. This is the outer ring: all protocol and call logic lives in the sans-IO
//! crates (`sip`, `sdp`, `pbx`); here is only I/O, tasks and time.

pub mod bootstrap;
pub mod config;
pub mod core;
pub mod events;
pub mod tasks;
pub mod transport;
pub mod writer;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pbx::auth::{AuthConfig, Authenticator};
use pbx::call::CallConfig;
use pbx::door::{Door, DoorConfig};
use pbx::flow::Transport;
use pbx::ids::IdGen;
use pbx::location::Location;
use pbx::registrar::RegistrarConfig;
use sip::Limits;
use store::Registrations as _;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::config::Config;
use crate::core::{CallMsg, Core};
use crate::events::EventBus;
use crate::transport::Transports;
use crate::writer::WriteOp;

/// Why the server could not start.
#[derive(Debug)]
pub enum ServeError {
    /// The data directory could not be created.
    DataDir(std::io::Error),
    /// The store could not be opened or initialised.
    Store(store::StoreError),
    /// A listen address could not be bound.
    Bind(std::io::Error),
    /// The media relay could not start.
    Relay(std::io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::DataDir(e) => write!(f, "cannot create the data directory: {e}"),
            ServeError::Store(e) => write!(f, "storage: {e}"),
            ServeError::Bind(e) => write!(f, "cannot listen: {e}"),
            ServeError::Relay(e) => write!(f, "cannot start the media relay: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

impl From<store::StoreError> for ServeError {
    fn from(e: store::StoreError) -> ServeError {
        ServeError::Store(e)
    }
}

/// How [`serve`] was started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServeOptions {
    /// The embedded default: create the demo tenant on first start and print its
    /// credentials.
    pub demo: bool,
}

/// Raises the open-file limit to its hard maximum: every relayed call holds four sockets,
/// and the relay keeps released ones for reuse.
#[allow(unsafe_code)]
fn raise_open_file_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer, which
    // lives on this stack frame for the duration of the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// Runs Switchboard until `shutdown` completes, then stops gracefully: new calls are
/// refused, live calls are ended with BYE, CDRs are flushed to the store.
pub async fn serve(cfg: Config, opts: ServeOptions, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    if cfg.storage.url.is_none() {
        std::fs::create_dir_all(&cfg.data_dir).map_err(ServeError::DataDir)?;
    }
    let store = bootstrap::open_store(&cfg).await?;
    bootstrap::sync_config(&store, &cfg).await?;
    let demo = if opts.demo { bootstrap::ensure_demo(&store).await? } else { None };
    let directory = Arc::new(bootstrap::load_directory(&store).await?);

    let start = tasks::now();
    let location = Arc::new(Location::default());
    let restored: Vec<_> =
        store.load_bindings(start.unix_ms).await?.into_iter().filter_map(tasks::from_store).collect();
    let restored_count = restored.len();
    location.load(restored);

    let open_files = raise_open_file_limit();
    info!(open_files, "open-file limit");
    let relay = media::Relay::start(media::RelayConfig {
        port_min: cfg.media.rtp_ports[0],
        port_max: cfg.media.rtp_ports[1],
        workers: cfg.media.workers,
        dscp: (cfg.media.dscp > 0).then_some(cfg.media.dscp),
        inband_dtmf: cfg.media.inband_dtmf,
        ..media::RelayConfig::default()
    })
    .map_err(ServeError::Relay)?;

    let limits = Limits {
        max_message_size: cfg.sip.max_message_size,
        max_headers: cfg.sip.max_headers,
        max_line_length: cfg.sip.max_line_length,
    };
    let transports = Arc::new(
        Transports::bind(&cfg.listens(), limits, Duration::from_secs(cfg.sip.tcp_idle_timeout_secs))
            .map_err(ServeError::Bind)?,
    );

    let shards = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(2, 16);
    let (writer_tx, writer_rx) = mpsc::unbounded_channel();
    let events = EventBus::default();
    let cdr_task = tokio::spawn(tasks::run_cdr_consumer(events.subscribe(), writer_tx.clone(), random_u64()));

    let algorithms = cfg.auth.algorithms.iter().filter_map(|a| sip::auth::Algorithm::from_token(a)).collect();
    let mut key = [0u8; 32];
    let _ = getrandom::fill(&mut key);
    let auth = Arc::new(Authenticator::new(
        AuthConfig {
            algorithms,
            nonce_lifetime: Duration::from_secs(cfg.auth.nonce_lifetime_secs),
            ..AuthConfig::default()
        },
        key,
    ));
    let timers = cfg.timers();
    let door_cfg = DoorConfig {
        registrar: RegistrarConfig {
            min_expires: cfg.registrar.min_expires,
            max_expires: cfg.registrar.max_expires,
            default_expires: cfg.registrar.default_expires,
            max_contacts: cfg.registrar.max_contacts,
        },
        timers,
        server: cfg.sip.server_name.clone(),
        local_hosts: cfg.sip.local_hosts.clone(),
        default_tenant: cfg.sip.default_tenant.clone(),
    };
    let doors = (0..shards)
        .map(|i| {
            core::DoorShard::new(Door::new(
                i as u16,
                door_cfg.clone(),
                directory.clone(),
                auth.clone(),
                location.clone(),
                IdGen::new(random_u64()),
            ))
        })
        .collect();
    let prompts = Arc::new(audio::prompts::PromptLibrary::new(if cfg.media.prompts_dir.as_os_str().is_empty() {
        cfg.data_dir.join("prompts")
    } else {
        cfg.media.prompts_dir.clone()
    }));
    let prompt_langs: Vec<audio::prompts::Lang> =
        cfg.media.prompt_languages.iter().filter_map(|l| l.parse().ok()).collect();
    let core = Arc::new(Core {
        transports: transports.clone(),
        calls: core::CallRegistry::default(),
        doors,
        limits,
        stats: core::CoreStats::default(),
        shutting_down: Default::default(),
        server_name: cfg.sip.server_name.clone(),
        relay: relay.clone(),
        writer: writer_tx.clone(),
        events: events.clone(),
        call_cfg: CallConfig {
            timers,
            ring_timeout: Duration::from_secs(cfg.calls.ring_timeout_secs),
            user_agent: cfg.sip.server_name.clone(),
            transcoding: cfg.media.transcoding,
            music_on_hold: !cfg.media.music_on_hold.is_empty(),
        },
        media_timeout: (cfg.media.media_timeout_secs > 0).then(|| Duration::from_secs(cfg.media.media_timeout_secs)),
        quality_interval: (cfg.media.quality_interval_secs > 0)
            .then(|| Duration::from_secs(cfg.media.quality_interval_secs)),
        mos_alert_threshold: cfg.media.mos_alert_threshold,
        music_on_hold: config::load_music(&cfg.media.music_on_hold).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "music on hold unavailable");
            None
        }),
        prompts: prompts.clone(),
        opus_complexity: cfg.media.opus_complexity,
        record_mode: cfg.calls.record_mode.mode(),
        recordings: cfg.calls.record.then(|| {
            if cfg.calls.recordings_dir.as_os_str().is_empty() {
                cfg.data_dir.join("recordings")
            } else {
                cfg.calls.recordings_dir.clone()
            }
        }),
        location: location.clone(),
        ids: Mutex::new(IdGen::new(random_u64())),
        epoch: std::time::Instant::now(),
    });
    tokio::task::spawn_blocking(move || ensure_prompts(&prompts, &prompt_langs));
    let writer_task = tokio::spawn(writer::run(store.clone(), writer_rx, Arc::downgrade(&core)));
    let door_timers: Vec<_> = (0..shards).map(|i| tokio::spawn(core.clone().door_timers(i))).collect();
    transports.start(&core);
    let housekeeping = tokio::spawn(tasks::run_housekeeping(core.clone(), auth.clone(), Duration::from_secs(30)));

    let listening: Vec<String> = transports.bound().iter().map(|(t, a)| format!("{t}:{a}")).collect();
    info!(listen = ?listening, tenants = directory.tenants().count(), registrations = restored_count, "switchboard ready");
    if let Some(d) = demo {
        print_demo_banner(&d, &transports.bound());
    }

    shutdown.await;
    info!(live_calls = core.calls.live(), "shutting down");
    core.shutting_down.store(true, Ordering::Relaxed);
    for call in core.calls.all() {
        let _ = call.send(CallMsg::Shutdown);
    }
    // Live calls send their BYEs and publish their end at once; give the BYEs a moment
    // to be answered, within the 5 s an orderly stop may take.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
    while core.calls.live() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    housekeeping.abort();
    for t in door_timers {
        t.abort();
    }
    events.close();
    if tokio::time::timeout(Duration::from_secs(1), cdr_task).await.is_err() {
        warn!("CDR consumer did not finish in time");
    }
    let (flushed_tx, flushed_rx) = oneshot::channel();
    if writer_tx.send(WriteOp::Flush(flushed_tx)).is_ok()
        && tokio::time::timeout(Duration::from_secs(1), flushed_rx).await.is_err()
    {
        warn!("store writer did not flush in time");
    }
    drop(writer_tx);
    writer_task.abort();
    store.close().await;
    relay.shutdown();
    info!("stopped");
    Ok(())
}

fn print_demo_banner(d: &bootstrap::DemoCredentials, bound: &[(Transport, SocketAddr)]) {
    let port = bound.iter().find(|(t, _)| *t == Transport::Udp).map(|(_, a)| a.port()).unwrap_or(5060);
    println!();
    println!(
        "  Demo tenant created: domain {} (phones may also use this server's IP address as domain).",
        bootstrap::DEMO_DOMAIN
    );
    println!("  These passwords are shown once; only their digest hashes are stored.");
    println!();
    for (ext, pw) in &d.users {
        println!("    extension {ext}   password {pw}");
    }
    println!();
    println!("  To register a softphone: user = extension, password as above,");
    println!(
        "  domain/registrar = this machine's IP address (or {}), port {port}, UDP or TCP.",
        bootstrap::DEMO_DOMAIN
    );
    println!("  Then dial another extension, e.g. 1002.");
    println!();
}

/// Generates the system prompts that are missing (the first start takes a few seconds of
/// `espeak-ng`; later starts find them all). Runs in the background: calls do not wait for it.
fn ensure_prompts(prompts: &audio::prompts::PromptLibrary, langs: &[audio::prompts::Lang]) {
    if langs.is_empty() {
        return;
    }
    match prompts.ensure(langs) {
        Ok(report) => info!(?report, dir = %prompts.dir().display(), "system prompts ready"),
        Err(e) => warn!(error = %e, "system prompts unavailable"),
    }
}
