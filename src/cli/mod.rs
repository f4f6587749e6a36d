//! The command line: `serve [--no-worker]`, `worker`, `migrate`, `apikey create|list|revoke`,
//! `generate`, `contact-sheet`, `probe live|ready` (the container health check). (The benchmarks are the `reelgen-bench` workspace member.)
//! Settings flags are global (`reelgen --port 9000 serve` or `reelgen serve --port 9000`).

pub mod generate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::platform::config::{Config, SettingFlags, Sources};
use crate::platform::{auth, db, telemetry};
use crate::{Application, Role};

#[derive(Parser, Debug)]
#[command(
    name = "reelgen",
    version,
    about = "Self-hosted AI avatar video generation server"
)]
pub struct Cli {
    /// Config file (default ./reelgen.toml when it exists; also REELGEN_CONFIG)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SettingFlags,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP server (migrates the database first)
    Serve {
        /// API only: render nothing (same as EMBEDDED_WORKER=false)
        #[arg(long)]
        no_worker: bool,
    },
    /// Render queued videos of a cluster (needs PostgreSQL and REDIS_URL); serves only the
    /// probes and /metrics on HOST:PORT
    Worker,
    /// Apply database migrations and exit
    Migrate,
    /// Manage API keys
    Apikey {
        #[command(subcommand)]
        action: ApiKeyAction,
    },
    /// Render one video to an MP4, no server needed
    Generate(Box<crate::cli::generate::GenerateArgs>),
    /// Render every avatar in every expression into one PNG
    ContactSheet(crate::cli::generate::ContactSheetArgs),
    /// Ask the server on this host (HOST, PORT) whether it is live or ready: exit 0 on 200,
    /// 1 otherwise. The container image's health check (it has no curl).
    Probe {
        #[arg(value_enum, default_value_t = ProbeKind::Live)]
        which: ProbeKind,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ProbeKind {
    /// `GET /health/live`
    Live,
    /// `GET /health/ready`
    Ready,
}

#[derive(Subcommand, Debug)]
pub enum ApiKeyAction {
    /// Create a key; the key is printed once, alone on the last line
    Create {
        #[arg(long)]
        name: String,
        /// Tenant the key acts for (default: a new tenant of its own)
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List keys (never the keys themselves)
    List,
    /// Revoke a key by id
    Revoke { id: Uuid },
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    crate::platform::memory::tune_allocator();
    let cli = Cli::parse();
    telemetry::init_tracing();
    let sources = match Sources::from_process(cli.settings.clone(), cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(&e.to_string()),
    };
    let mut config = match Config::load(&sources) {
        Ok(c) => c,
        Err(e) => return fail(&format!("configuration error: {e}")),
    };
    if let Command::Serve { no_worker: true } = cli.command {
        config.embedded_worker = false;
    }
    let system = actix_web::rt::System::new();
    let result: Result<(), String> = match cli.command {
        Command::Serve { .. } => system.block_on(run_as(config, Role::Serve)),
        Command::Worker => system.block_on(run_as(config, Role::Worker)),
        Command::Migrate => system.block_on(async move {
            let conn = db::connect(&config).await.map_err(|e| e.to_string())?;
            db::migrate(&conn).await.map_err(|e| e.to_string())?;
            println!("migrations applied");
            Ok(())
        }),
        Command::Apikey { action } => system.block_on(apikey(config, action)),
        Command::Generate(args) => crate::cli::generate::run(*args),
        Command::ContactSheet(args) => crate::cli::generate::contact_sheet(args),
        Command::Probe { which } => system.block_on(probe(&config, which)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

async fn run_as(config: Config, role: Role) -> Result<(), String> {
    let app = Application::build_as(config, role)
        .await
        .map_err(|e| e.to_string())?;
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

/// How long `reelgen probe` waits for an answer (a container health check has its own timeout;
/// this only keeps a hung server from hanging the probe).
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn probe(config: &Config, which: ProbeKind) -> Result<(), String> {
    use std::net::IpAddr;
    let path = match which {
        ProbeKind::Live => crate::api::ops::LIVE_PATH,
        ProbeKind::Ready => crate::api::ops::READY_PATH,
    };
    if config.port == 0 {
        return Err("PORT is 0 (a free port picked at start): nothing to probe".into());
    }
    // A wildcard listen address is reached on loopback; an IPv6 literal needs brackets.
    let host = match config.host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) if ip.is_unspecified() => "127.0.0.1".to_string(),
        Ok(IpAddr::V6(ip)) if ip.is_unspecified() => "[::1]".to_string(),
        Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => config.host.clone(),
    };
    let url = format!("http://{host}:{}{path}", config.port);
    let response = reqwest::Client::new()
        .get(&url)
        .timeout(PROBE_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    if status == reqwest::StatusCode::OK {
        println!("{url}: {status}");
        Ok(())
    } else {
        Err(format!("{url}: {status}"))
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("reelgen: {msg}");
    ExitCode::FAILURE
}

async fn apikey(config: Config, action: ApiKeyAction) -> Result<(), String> {
    let conn = db::connect(&config).await.map_err(|e| e.to_string())?;
    db::migrate(&conn).await.map_err(|e| e.to_string())?;
    match action {
        ApiKeyAction::Create { name, tenant } => {
            let name = name.trim().to_string();
            if name.is_empty() || name.chars().count() > 200 {
                return Err("--name must be 1 to 200 characters".into());
            }
            let id = Uuid::now_v7();
            let tenant = tenant.unwrap_or_else(|| id.to_string());
            if tenant.is_empty() || tenant.len() > 64 {
                return Err("--tenant must be 1 to 64 bytes".into());
            }
            let key = auth::generate_key();
            auth::create_api_key(
                &conn,
                entity::api_key::Model {
                    id,
                    name: name.clone(),
                    tenant: tenant.clone(),
                    key_hash: key.hash,
                    prefix: key.prefix,
                    created_at: db::now(),
                    revoked_at: None,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            println!("created key {id} ({name}) for tenant {tenant}; it is shown only once:");
            println!("{}", key.plain);
        }
        ApiKeyAction::List => {
            let keys = auth::list_api_keys(&conn)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "{:<36}  {:<10}  {:<20}  {:<36}  {:<25}  status",
                "id", "prefix", "name", "tenant", "created"
            );
            for k in keys {
                println!(
                    "{:<36}  {:<10}  {:<20}  {:<36}  {:<25}  {}",
                    k.id,
                    k.prefix,
                    k.name,
                    k.tenant,
                    k.created_at.to_rfc3339(),
                    if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
        ApiKeyAction::Revoke { id } => {
            if auth::revoke_api_key(&conn, id)
                .await
                .map_err(|e| e.to_string())?
            {
                println!("revoked {id}");
            } else {
                return Err(format!("no active key with id {id}"));
            }
        }
    }
    Ok(())
}
