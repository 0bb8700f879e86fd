//! The `switchboard` command: run the server, read CDRs, check a configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// mimalloc: SIP processing allocates many small, short-lived objects, which it serves
/// markedly faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use server::config::Config;
use store::{CdrFilter, Cdrs as _, Directory as _};

/// Switchboard: a business telephony platform (IP-PBX and multi-tenant hosted PBX).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server. Without --config: the embedded default (SQLite in ./switchboard-data,
    /// SIP on port 5060 UDP and TCP on all addresses, a demo tenant).
    Serve {
        /// Configuration file (TOML).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Log format (overrides the file's [log] format).
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Call detail records.
    Cdr {
        #[command(subcommand)]
        command: CdrCommand,
    },
    /// Check a configuration file and exit (0: valid, 2: invalid).
    CheckConfig {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum CdrCommand {
    /// List CDRs, newest first.
    List {
        /// Configuration file (TOML); default: the embedded default's data.
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    match path {
        None => Ok(Config::embedded_default()),
        Some(p) => Config::load(p).map_err(|e| {
            eprintln!("switchboard: invalid configuration: {e}");
            ExitCode::from(2)
        }),
    }
}

fn init_logging(cfg: &Config, format: Option<LogFormat>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    let json = match format {
        Some(f) => f == LogFormat::Json,
        None => cfg.log.format == "json",
    };
    // Colours only for a terminal: a log file or journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchboard: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, log_format } => {
            let demo = config.is_none();
            let cfg = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(&cfg, log_format);
            let rt = runtime(cfg.signalling_workers());
            match rt.block_on(server::serve(cfg, server::ServeOptions { demo }, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("switchboard: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::CheckConfig { config } => match load_config(Some(&config)) {
            Ok(_) => {
                println!("{}: valid", config.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Cdr { command: CdrCommand::List { config, json, limit } } => {
            let cfg = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            runtime(1).block_on(list_cdrs(&cfg, json, limit))
        }
    }
}

async fn list_cdrs(cfg: &Config, json: bool, limit: u32) -> ExitCode {
    let store = match server::bootstrap::open_store(cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("switchboard: storage: {e}");
            return ExitCode::from(1);
        }
    };
    let tenants: std::collections::HashMap<i64, String> =
        store.list_tenants().await.unwrap_or_default().into_iter().map(|t| (t.id, t.name)).collect();
    let cdrs = match store.list_cdrs(&CdrFilter { limit: Some(limit), ..CdrFilter::default() }).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: reading CDRs: {e}");
            return ExitCode::from(1);
        }
    };
    store.close().await;
    if json {
        let rows: Vec<serde_json::Value> = cdrs
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "tenant": tenants.get(&c.tenant_id).cloned().unwrap_or_else(|| c.tenant_id.to_string()),
                    "call_id": c.call_id,
                    "caller": c.caller,
                    "callee": c.callee,
                    "start_ms": c.started_at_ms,
                    "answer_ms": c.answered_at_ms,
                    "end_ms": c.ended_at_ms,
                    "duration_s": c.duration_ms as f64 / 1000.0,
                    "billable_s": c.billable_ms as f64 / 1000.0,
                    "disposition": c.disposition,
                    "hangup_cause": c.hangup_cause,
                    "hangup_status": c.hangup_status,
                    "initiator": c.initiator,
                    "packets_a_to_b": c.packets_a_to_b,
                    "packets_b_to_a": c.packets_b_to_a,
                    "bytes_a_to_b": c.bytes_a_to_b,
                    "bytes_b_to_a": c.bytes_b_to_a,
                    "recording": c.recording,
                    "srtp": {
                        "caller": c.a_srtp,
                        "callee": c.b_srtp,
                        "caller_rejected": c.a_srtp_rejected,
                        "callee_rejected": c.b_srtp_rejected,
                    },
                    "quality": {
                        "caller": {
                            "loss_pct": c.quality_a.loss_pct,
                            "jitter_ms": c.quality_a.jitter_ms,
                            "rtt_ms": c.quality_a.rtt_ms,
                            "mos": c.quality_a.mos,
                        },
                        "callee": {
                            "loss_pct": c.quality_b.loss_pct,
                            "jitter_ms": c.quality_b.jitter_ms,
                            "rtt_ms": c.quality_b.rtt_ms,
                            "mos": c.quality_b.mos,
                        },
                    },
                })
            })
            .collect();
        match serde_json::to_string_pretty(&rows) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("switchboard: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        println!(
            "{:<10} {:<8} {:<8} {:>9} {:>9} {:<10} {:<9} {:>9} {:>9}  cause",
            "tenant", "caller", "callee", "duration", "billable", "result", "by", "pkts a>b", "pkts b>a"
        );
        for c in &cdrs {
            println!(
                "{:<10} {:<8} {:<8} {:>8.1}s {:>8.1}s {:<10} {:<9} {:>9} {:>9}  {}",
                tenants.get(&c.tenant_id).map(String::as_str).unwrap_or("?"),
                c.caller,
                c.callee,
                c.duration_ms as f64 / 1000.0,
                c.billable_ms as f64 / 1000.0,
                c.disposition,
                c.initiator,
                c.packets_a_to_b,
                c.packets_b_to_a,
                c.hangup_cause
            );
        }
    }
    ExitCode::SUCCESS
}
