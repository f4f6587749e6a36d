//! Configuration: every setting of SPEC §1, read and validated once at start.
//!
//! Precedence, highest first: command-line flag, environment variable, `reelgen.toml`
//! (path from `--config`/`REELGEN_CONFIG`, default `./reelgen.toml` when present), built-in
//! default. Every value is parsed here into a typed field; an invalid value is a
//! [`ConfigError`] that names the variable, so start-up stops with a message a person can act
//! on. Nothing else in the crate reads the environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::render::timeline::speech_server::{Secret, SpeechServer};

use thiserror::Error;

/// A setting that could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("invalid value for {name}: {value:?} ({expected})")]
    Invalid {
        name: &'static str,
        value: String,
        expected: String,
    },
    #[error("{name} is required: {why}")]
    Required {
        name: &'static str,
        why: &'static str,
    },
    #[error("cannot read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
    Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizationLevel {
    Conservative,
    Balanced,
    Aggressive,
}

impl OptimizationLevel {
    /// Frames per GPU submission when `BATCH_SIZE_AUTO_TUNE=false`.
    pub fn batch_size(self) -> usize {
        match self {
            Self::Conservative => 1,
            Self::Balanced => 4,
            Self::Aggressive => 8,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// No key needed; everyone shares the tenant [`OPEN_TENANT`], rate limited per client IP.
    Open,
    /// `X-Api-Key` or `Authorization: Bearer`; each key sees only its tenant's videos.
    ApiKey,
}

/// Tenant of every request in `AUTH_MODE=open`.
pub const OPEN_TENANT: &str = "public";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub redis_url: Option<String>,
    pub environment: Environment,
    pub optimization_level: OptimizationLevel,
    pub workers: usize,
    pub max_concurrent_requests: usize,
    pub max_concurrent_jobs: usize,
    pub max_database_connections: u32,
    pub pool_timeout: Duration,
    pub cache_ttl: Duration,
    pub query_cache_ttl: Duration,
    /// Response cache capacity in MiB.
    pub memory_cache_size_mb: u64,
    pub memory_limit_mb: u64,
    pub redis_max_connections: u32,
    pub gpu_memory_fraction: f64,
    pub model_cache_size: usize,
    pub batch_size_auto_tune: bool,
    /// Close the GPU device, kernels and cached looks after this long without a job (zero
    /// keeps them open); they open again with the next job.
    pub device_idle_release: Duration,
    pub enable_metrics: bool,
    pub enable_tracing: bool,
    pub metrics_interval: Duration,
    pub rate_limit_per_minute: u32,
    pub auth_mode: AuthMode,
    pub webhook_secret: Option<String>,
    /// Largest accepted request body (413 above it).
    pub max_body_bytes: usize,
    /// Directory of the browser app served at `/`.
    pub static_dir: PathBuf,
    /// Run the job dispatcher inside `serve` (off for an API-only replica).
    pub embedded_worker: bool,
    /// Let webhooks reach loopback and private addresses (off: SSRF protection).
    pub webhook_allow_private: bool,
    /// First webhook retry delay; doubles per attempt.
    pub webhook_retry_base: Duration,
    /// Alert rules: the defaults, with this JSON array's rules replacing or adding.
    pub alert_rules: Vec<crate::platform::alert_rules::RuleSpec>,
    /// How long a firing alert's value must stay clear before it resolves.
    pub alert_clear_for: Duration,
    /// Origins (`scheme://host[:port]`) a browser front end may call the API from (CORS).
    pub cors_allowed_origins: Vec<String>,
    /// On SIGTERM, how long running renders may go on before they are handed back.
    pub shutdown_grace: Duration,
    /// Where finished files live (`STORAGE_URL`).
    pub storage: StorageUrl,
    /// How long a worker's claim on a job lasts unless renewed (`JOB_LEASE`).
    pub job_lease: Duration,
    /// The speech server whose voices are listed next to the built-in ones (`TTS_URL`,
    /// `TTS_API_KEY`, `TTS_MODEL`, `TTS_VOICES`); `None` without `TTS_URL`.
    pub speech_server: Option<SpeechServer>,
    /// Live sessions this process runs at once (429 beyond).
    pub max_sessions: usize,
    /// A session nobody speaks to for this long closes.
    pub session_idle_timeout: Duration,
    /// STUN/TURN servers the sessions' WebRTC peers use (`stun://…`, `turn://user:pass@…`);
    /// none on a LAN, where host candidates reach.
    pub ice_servers: Vec<String>,
}

/// Where finished files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// A local directory (`file:///abs/path`; default `DATA_DIR`).
    File(PathBuf),
    /// An S3-compatible bucket, with an optional key prefix; endpoint and credentials from the
    /// usual `AWS_*` variables.
    S3 { bucket: String, prefix: String },
}

impl StorageUrl {
    fn parse(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s)
            .map_err(|e| format!("expected file:///abs/path or s3://bucket[/prefix] ({e})"))?;
        match url.scheme() {
            "file" if url.host_str().is_none_or(str::is_empty) && url.path().starts_with('/') => {
                Ok(Self::File(PathBuf::from(url.path())))
            }
            "s3" => {
                let bucket = url.host_str().unwrap_or_default().to_string();
                if bucket.is_empty() || url.query().is_some() || url.fragment().is_some() {
                    return Err("expected s3://bucket[/prefix]".into());
                }
                Ok(Self::S3 {
                    bucket,
                    prefix: url.path().trim_matches('/').to_string(),
                })
            }
            _ => Err("expected file:///abs/path or s3://bucket[/prefix]".into()),
        }
    }
}

macro_rules! settings {
    ($($field:ident => $env:literal : $help:literal),* $(,)?) => {
        /// Flags mirroring the environment variables (`--optimization-level aggressive`).
        #[derive(clap::Args, Debug, Default, Clone)]
        pub struct SettingFlags {
            $(
                #[doc = $help]
                #[arg(long, global = true, value_name = "VALUE")]
                pub $field: Option<String>,
            )*
        }

        impl SettingFlags {
            /// Every setting's environment variable name.
            pub const NAMES: &'static [&'static str] = &[$($env),*];

            fn get(&self, name: &str) -> Option<&str> {
                match name {
                    $($env => self.$field.as_deref(),)*
                    _ => None,
                }
            }
        }
    };
}

settings! {
    host => "HOST": "Address to listen on",
    port => "PORT": "Port to listen on (0 picks a free one)",
    data_dir => "DATA_DIR": "Directory for the SQLite database and video files",
    database_url => "DATABASE_URL": "sqlite:… or postgres://…",
    redis_url => "REDIS_URL": "redis://… for the distributed cache and queue",
    environment => "ENVIRONMENT": "development | production | test",
    optimization_level => "OPTIMIZATION_LEVEL": "conservative | balanced | aggressive",
    workers => "WORKERS": "HTTP worker threads",
    max_concurrent_requests => "MAX_CONCURRENT_REQUESTS": "Requests in flight before 503",
    max_concurrent_jobs => "MAX_CONCURRENT_JOBS": "Videos rendered at once",
    max_database_connections => "MAX_DATABASE_CONNECTIONS": "Database pool size",
    pool_timeout => "POOL_TIMEOUT": "Seconds to wait for a database connection",
    cache_ttl => "CACHE_TTL": "Seconds a cached response lives",
    query_cache_ttl => "QUERY_CACHE_TTL": "Seconds a cached lookup (API keys) lives",
    memory_cache_size => "MEMORY_CACHE_SIZE": "Response cache size in MiB",
    memory_limit_mb => "MEMORY_LIMIT_MB": "Memory budget of the process in MiB",
    redis_max_connections => "REDIS_MAX_CONNECTIONS": "Redis pool size",
    gpu_memory_fraction => "GPU_MEMORY_FRACTION": "Share of GPU memory the renderer may use (0–1]",
    model_cache_size => "MODEL_CACHE_SIZE": "Avatar models kept resident on the GPU",
    batch_size_auto_tune => "BATCH_SIZE_AUTO_TUNE": "Tune frames per GPU submission (true/false)",
    device_idle_release => "DEVICE_IDLE_RELEASE": "Seconds without a job before the GPU device and its kernels are closed (0 keeps them open)",
    enable_metrics => "ENABLE_METRICS": "Serve /metrics (true/false)",
    enable_tracing => "ENABLE_TRACING": "Log one line per request (true/false)",
    metrics_interval => "METRICS_INTERVAL": "Seconds between resource samples",
    rate_limit_per_minute => "RATE_LIMIT_PER_MINUTE": "Requests per minute per key (per IP when open)",
    auth_mode => "AUTH_MODE": "open | api_key",
    webhook_secret => "WEBHOOK_SECRET": "Key of the webhook HMAC signature",
    max_body_bytes => "MAX_BODY_BYTES": "Largest request body in bytes",
    static_dir => "STATIC_DIR": "Directory of the browser app",
    embedded_worker => "EMBEDDED_WORKER": "Render videos inside serve (true/false)",
    webhook_allow_private => "WEBHOOK_ALLOW_PRIVATE": "Let webhooks reach loopback/private addresses (true/false)",
    webhook_retry_base => "WEBHOOK_RETRY_BASE": "Seconds before the first webhook retry (doubles per attempt)",
    alert_rules => "ALERT_RULES": "JSON array of alert rules replacing or adding to the defaults",
    alert_clear_for => "ALERT_CLEAR_FOR": "Seconds a firing alert must stay clear to resolve",
    cors_allowed_origins => "CORS_ALLOWED_ORIGINS": "Comma-separated origins allowed to call the API from a browser",
    shutdown_grace => "SHUTDOWN_GRACE": "Seconds running renders may finish after SIGTERM before they are re-queued",
    storage_url => "STORAGE_URL": "file:///abs/path (default DATA_DIR) or s3://bucket[/prefix] for finished files",
    job_lease => "JOB_LEASE": "Seconds a worker's claim on a job lasts unless renewed (a crashed worker's job is retaken after it)",
    tts_url => "TTS_URL": "Base URL of a speech server answering POST /v1/audio/speech (OpenAI's protocol); its voices join the built-in ones",
    tts_api_key => "TTS_API_KEY": "Key sent to the speech server as Authorization: Bearer (never logged)",
    tts_model => "TTS_MODEL": "The speech server's model (default tts-1)",
    tts_voices => "TTS_VOICES": "Comma-separated voice names of the speech server, listed as voices http-{name}",
    max_sessions => "MAX_SESSIONS": "Live avatar sessions this process runs at once (429 beyond)",
    session_idle_timeout => "SESSION_IDLE_TIMEOUT": "Seconds a live session nobody speaks to stays open",
    ice_servers => "ICE_SERVERS": "Comma-separated STUN/TURN servers for live sessions' WebRTC (stun://host:port, turn://user:pass@host:port)",
}

/// Environment variables that libraries of the process read, besides the settings above (an
/// entry ending in `_` is a prefix). A deployment may set these too; the deploy kit's test holds
/// every variable the kit sets to the settings or this list.
pub const LIBRARY_ENV: &[(&str, &str)] = &[
    (
        "AWS_",
        "object_store's S3 client when STORAGE_URL is s3://… (AWS_ENDPOINT_URL, AWS_REGION, \
         AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP, AWS_SKIP_SIGNATURE, …)",
    ),
    ("RUST_LOG", "the log filter (default info)"),
    (
        "XDG_CACHE_HOME",
        "GStreamer's plugin registry and Mesa's shader cache",
    ),
    (
        "NVIDIA_",
        "NVIDIA's container toolkit: which GPUs and driver capabilities the container gets",
    ),
];

/// Whether `name` is a setting or a variable a library of the process reads.
pub fn is_known_env(name: &str) -> bool {
    SettingFlags::NAMES.contains(&name)
        || LIBRARY_ENV.iter().any(|(known, _)| {
            if known.ends_with('_') {
                name.starts_with(known)
            } else {
                name == *known
            }
        })
}

/// Where raw values come from, highest precedence first.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub flags: SettingFlags,
    pub env: HashMap<String, String>,
    pub file: HashMap<String, String>,
}

impl Sources {
    /// Flags plus the process environment plus the config file.
    pub fn from_process(
        flags: SettingFlags,
        config_file: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| SettingFlags::NAMES.contains(&k.as_str()))
            .collect();
        let explicit = config_file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("REELGEN_CONFIG").map(PathBuf::from));
        let file = match explicit {
            Some(path) => read_toml(&path)?,
            None if Path::new("reelgen.toml").exists() => read_toml(Path::new("reelgen.toml"))?,
            None => HashMap::new(),
        };
        Ok(Self { flags, env, file })
    }

    /// Only the given pairs, as if they were environment variables (tests, benchmarks).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            env: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Self::default()
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        self.flags
            .get(name)
            .map(str::to_string)
            .or_else(|| self.env.get(name).cloned())
            .or_else(|| self.file.get(name).cloned())
    }
}

fn read_toml(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let err = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| err(e.to_string()))?;
    let mut out = HashMap::new();
    for (key, value) in table {
        let name = key.to_ascii_uppercase();
        if !SettingFlags::NAMES.contains(&name.as_str()) {
            return Err(err(format!("unknown setting {key:?}")));
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => return Err(err(format!("{key}: unsupported value {other:?}"))),
        };
        out.insert(name, value);
    }
    Ok(out)
}

/// Parses one setting: `parse` returns the value or what was expected.
fn setting<T>(
    src: &Sources,
    name: &'static str,
    default: T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    match src.get(name) {
        None => Ok(default),
        Some(raw) => parse(raw.trim()).map_err(|expected| ConfigError::Invalid {
            name,
            value: raw,
            expected,
        }),
    }
}

fn int_in<T>(lo: T, hi: T) -> impl Fn(&str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    move |s| {
        s.parse::<T>()
            .ok()
            .filter(|v| *v >= lo && *v <= hi)
            .ok_or_else(|| format!("expected an integer from {lo} to {hi}"))
    }
}

fn seconds(lo: f64, hi: f64) -> impl Fn(&str) -> Result<Duration, String> {
    move |s| {
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= lo && *v <= hi)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("expected seconds from {lo} to {hi}"))
    }
}

fn boolean(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn one_of<T: Copy>(choices: &'static [(&'static str, T)]) -> impl Fn(&str) -> Result<T, String> {
    move |s| {
        choices
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<_> = choices.iter().map(|(n, _)| *n).collect();
                format!("expected one of {}", names.join(", "))
            })
    }
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("expected a non-empty value".into())
    } else {
        Ok(s.to_string())
    }
}

/// `TTS_URL` and its companions: all or nothing. The key is never echoed in an error.
fn speech_server(src: &Sources) -> Result<Option<SpeechServer>, ConfigError> {
    let base = setting(src, "TTS_URL", None, |s| {
        let url = url::Url::parse(s).map_err(|e| format!("expected an http(s) URL ({e})"))?;
        if matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty())
        {
            Ok(Some(url))
        } else {
            Err("expected an http(s) URL with a host".into())
        }
    })?;
    let voices = setting(src, "TTS_VOICES", Vec::new(), |s| {
        s.split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| {
                let ok = v.len() <= 64
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
                ok.then(|| v.to_string()).ok_or_else(|| {
                    "expected comma-separated voice names of letters, digits, . _ -".to_string()
                })
            })
            .collect()
    })?;
    let model = setting(src, "TTS_MODEL", "tts-1".to_string(), non_empty)?;
    let api_key = src
        .get("TTS_API_KEY")
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .map(Secret::new);
    match (base, voices.is_empty()) {
        (Some(base), false) => Ok(Some(SpeechServer {
            base,
            api_key,
            model,
            voices,
        })),
        (Some(_), true) => Err(ConfigError::Required {
            name: "TTS_VOICES",
            why: "TTS_URL is set: name the speech server's voices to list",
        }),
        (None, false) => Err(ConfigError::Required {
            name: "TTS_URL",
            why: "TTS_VOICES names voices of a speech server: give its URL",
        }),
        (None, true) => Ok(None),
    }
}

/// A comma-separated list of web origins: `scheme://host[:port]`, no path.
/// Normalised to lower case, as browsers send them in `Origin`.
/// `ICE_SERVERS`: comma-separated `stun://host:port`, `turn://user:pass@host:port` or
/// `turns://…`.
fn ice_servers(s: &str) -> Result<Vec<String>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            let ok = ["stun://", "turn://", "turns://"]
                .iter()
                .any(|p| v.starts_with(p) && v.len() > p.len());
            if ok {
                Ok(v.to_string())
            } else {
                Err(format!(
                    "{v:?} is not stun://host:port, turn://user:pass@host:port or turns://…"
                ))
            }
        })
        .collect()
}

pub fn origins(s: &str) -> Result<Vec<String>, String> {
    let expected = "expected comma-separated origins like https://app.example.com";
    s.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            let url = url::Url::parse(o).map_err(|_| expected.to_string())?;
            let ok = matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some_and(|h| !h.is_empty())
                && url.username().is_empty()
                && url.password().is_none()
                && url.query().is_none()
                && url.fragment().is_none()
                && url.path() == "/";
            if ok {
                Ok(url.origin().ascii_serialization())
            } else {
                Err(expected.to_string())
            }
        })
        .collect()
}

impl Config {
    /// Builds and validates the configuration from its sources.
    pub fn load(src: &Sources) -> Result<Self, ConfigError> {
        let environment = setting(
            src,
            "ENVIRONMENT",
            Environment::Development,
            one_of(&[
                ("development", Environment::Development),
                ("production", Environment::Production),
                ("test", Environment::Test),
            ]),
        )?;
        let data_dir: PathBuf = setting(src, "DATA_DIR", PathBuf::from("./data"), |s| {
            non_empty(s).map(PathBuf::from)
        })?;
        let default_db = format!("sqlite://{}/reelgen.db?mode=rwc", data_dir.display());
        let data_dir_for_storage = data_dir.clone();
        let database_url = setting(src, "DATABASE_URL", default_db, |s| {
            if s.starts_with("sqlite:")
                || s.starts_with("postgres://")
                || s.starts_with("postgresql://")
            {
                Ok(s.to_string())
            } else {
                Err("expected sqlite:… or postgres://…".into())
            }
        })?;
        let redis_url = setting(src, "REDIS_URL", None, |s| {
            if s.starts_with("redis://") || s.starts_with("rediss://") {
                Ok(Some(s.to_string()))
            } else {
                Err("expected redis://… or rediss://…".into())
            }
        })?;
        let auth_default = match environment {
            Environment::Production => AuthMode::ApiKey,
            _ => AuthMode::Open,
        };
        let auth_mode = setting(
            src,
            "AUTH_MODE",
            auth_default,
            one_of(&[("open", AuthMode::Open), ("api_key", AuthMode::ApiKey)]),
        )?;
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        let static_default = default_static_dir();

        // ENVIRONMENT=production defaults AUTH_MODE to api_key: `open` only when set explicitly.
        Ok(Self {
            host: setting(src, "HOST", "127.0.0.1".to_string(), |s| {
                if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '/') {
                    Err("expected an IP address or host name".into())
                } else {
                    Ok(s.to_string())
                }
            })?,
            port: setting(src, "PORT", 8000, int_in(0u16, u16::MAX))?,
            data_dir,
            database_url,
            redis_url,
            environment,
            optimization_level: setting(
                src,
                "OPTIMIZATION_LEVEL",
                OptimizationLevel::Balanced,
                one_of(&[
                    ("conservative", OptimizationLevel::Conservative),
                    ("balanced", OptimizationLevel::Balanced),
                    ("aggressive", OptimizationLevel::Aggressive),
                ]),
            )?,
            workers: setting(src, "WORKERS", cpus, int_in(1usize, 1024))?,
            max_concurrent_requests: setting(
                src,
                "MAX_CONCURRENT_REQUESTS",
                25_000,
                int_in(1usize, 10_000_000),
            )?,
            max_concurrent_jobs: setting(src, "MAX_CONCURRENT_JOBS", 2, int_in(1usize, 256))?,
            max_database_connections: setting(
                src,
                "MAX_DATABASE_CONNECTIONS",
                10,
                int_in(1u32, 1000),
            )?,
            pool_timeout: setting(
                src,
                "POOL_TIMEOUT",
                Duration::from_secs(5),
                seconds(0.1, 600.0),
            )?,
            cache_ttl: setting(
                src,
                "CACHE_TTL",
                Duration::from_secs(60),
                seconds(0.0, 86_400.0),
            )?,
            query_cache_ttl: setting(
                src,
                "QUERY_CACHE_TTL",
                Duration::from_secs(10),
                seconds(0.0, 86_400.0),
            )?,
            memory_cache_size_mb: setting(src, "MEMORY_CACHE_SIZE", 64, int_in(0u64, 1 << 20))?,
            memory_limit_mb: setting(src, "MEMORY_LIMIT_MB", 2048, int_in(16u64, 1 << 24))?,
            redis_max_connections: setting(src, "REDIS_MAX_CONNECTIONS", 8, int_in(1u32, 1024))?,
            gpu_memory_fraction: setting(src, "GPU_MEMORY_FRACTION", 0.8, |s| {
                s.parse::<f64>()
                    .ok()
                    .filter(|v| *v > 0.0 && *v <= 1.0)
                    .ok_or_else(|| "expected a number in (0, 1]".to_string())
            })?,
            model_cache_size: setting(src, "MODEL_CACHE_SIZE", 8, int_in(1usize, 4096))?,
            batch_size_auto_tune: setting(src, "BATCH_SIZE_AUTO_TUNE", true, boolean)?,
            enable_metrics: setting(src, "ENABLE_METRICS", true, boolean)?,
            enable_tracing: setting(src, "ENABLE_TRACING", false, boolean)?,
            metrics_interval: setting(
                src,
                "METRICS_INTERVAL",
                Duration::from_secs(5),
                seconds(0.05, 3600.0),
            )?,
            rate_limit_per_minute: setting(
                src,
                "RATE_LIMIT_PER_MINUTE",
                600,
                int_in(1u32, 1_000_000_000),
            )?,
            auth_mode,
            webhook_secret: setting(src, "WEBHOOK_SECRET", None, |s| non_empty(s).map(Some))?,
            max_body_bytes: setting(
                src,
                "MAX_BODY_BYTES",
                2 * 1024 * 1024,
                int_in(1024usize, 1 << 30),
            )?,
            static_dir: setting(src, "STATIC_DIR", static_default, |s| {
                non_empty(s).map(PathBuf::from)
            })?,
            embedded_worker: setting(src, "EMBEDDED_WORKER", true, boolean)?,
            webhook_allow_private: setting(src, "WEBHOOK_ALLOW_PRIVATE", false, boolean)?,
            webhook_retry_base: setting(
                src,
                "WEBHOOK_RETRY_BASE",
                Duration::from_secs(10),
                seconds(0.05, 3600.0),
            )?,
            alert_rules: setting(
                src,
                "ALERT_RULES",
                crate::platform::alert_rules::default_rules(),
                |s| crate::platform::alert_rules::rules_from(Some(s)).map_err(|e| e.to_string()),
            )?,
            alert_clear_for: setting(
                src,
                "ALERT_CLEAR_FOR",
                Duration::from_secs(30),
                seconds(0.0, 86_400.0),
            )?,
            cors_allowed_origins: setting(src, "CORS_ALLOWED_ORIGINS", Vec::new(), origins)?,
            device_idle_release: setting(
                src,
                "DEVICE_IDLE_RELEASE",
                Duration::from_secs(20),
                seconds(0.0, 86_400.0),
            )?,
            shutdown_grace: setting(
                src,
                "SHUTDOWN_GRACE",
                Duration::from_secs(30),
                seconds(0.0, 3600.0),
            )?,
            storage: setting(
                src,
                "STORAGE_URL",
                StorageUrl::File(data_dir_for_storage),
                StorageUrl::parse,
            )?,
            job_lease: setting(
                src,
                "JOB_LEASE",
                Duration::from_secs(30),
                seconds(1.0, 3600.0),
            )?,
            speech_server: speech_server(src)?,
            max_sessions: setting(src, "MAX_SESSIONS", 4, int_in(1usize, 1024))?,
            session_idle_timeout: setting(
                src,
                "SESSION_IDLE_TIMEOUT",
                Duration::from_secs(300),
                seconds(1.0, 86_400.0),
            )?,
            ice_servers: setting(src, "ICE_SERVERS", Vec::new(), ice_servers)?,
        })
    }

    /// What `reelgen worker` needs besides a valid configuration: PostgreSQL (the queue other
    /// processes share) and Redis (wake-ups, cancels and events between processes).
    pub fn require_cluster(&self) -> Result<(), ConfigError> {
        if self.redis_url.is_none() {
            return Err(ConfigError::Required {
                name: "REDIS_URL",
                why: "a worker hears about new and cancelled videos and sends its events through Redis (redis://host:6379)",
            });
        }
        if self.is_sqlite() {
            return Err(ConfigError::Invalid {
                name: "DATABASE_URL",
                value: self.database_url.clone(),
                expected:
                    "a worker shares the queue with other processes: postgres://…, not SQLite"
                        .into(),
            });
        }
        Ok(())
    }

    /// `true` when `DATABASE_URL` points at SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
}

/// `./static` when it exists (a deployed tree), else the source tree's `static/`.
fn default_static_dir() -> PathBuf {
    let here = PathBuf::from("static");
    if here.join("index.html").exists() {
        here
    } else {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/static"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(&Sources::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults_need_no_configuration() {
        let cfg = load(&[]).expect("defaults are valid");
        assert_eq!(cfg.port, 8000);
        assert!(cfg.database_url.starts_with("sqlite://./data/reelgen.db"));
        assert_eq!(cfg.auth_mode, AuthMode::Open);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (name, value) in [
            ("PORT", "eighty"),
            ("PORT", "70000"),
            ("WORKERS", "0"),
            ("AUTH_MODE", "none"),
            ("GPU_MEMORY_FRACTION", "1.5"),
            ("DATABASE_URL", "mysql://x"),
            ("ENABLE_METRICS", "maybe"),
            ("CACHE_TTL", "-1"),
            ("REDIS_URL", "http://x"),
            ("CORS_ALLOWED_ORIGINS", "https://a.example/path"),
            ("CORS_ALLOWED_ORIGINS", "ftp://a.example"),
            ("CORS_ALLOWED_ORIGINS", "*"),
            ("SHUTDOWN_GRACE", "-3"),
        ] {
            let err = load(&[(name, value)]).expect_err(name).to_string();
            assert!(err.contains(name), "{err} should name {name}");
        }
    }

    #[test]
    fn production_defaults_to_api_keys_but_allows_explicit_open() {
        let cfg = load(&[("ENVIRONMENT", "production")]).expect("valid");
        assert_eq!(cfg.auth_mode, AuthMode::ApiKey);
        let cfg = load(&[("ENVIRONMENT", "production"), ("AUTH_MODE", "open")]).expect("valid");
        assert_eq!(cfg.auth_mode, AuthMode::Open);
    }

    #[test]
    fn cors_origins_are_normalised_like_browsers_send_them() {
        let cfg = load(&[(
            "CORS_ALLOWED_ORIGINS",
            " https://App.Example.com , http://localhost:5173,",
        )])
        .expect("valid");
        assert_eq!(
            cfg.cors_allowed_origins,
            ["https://app.example.com", "http://localhost:5173"]
        );
        assert!(load(&[]).expect("valid").cors_allowed_origins.is_empty());
    }

    #[test]
    fn flag_beats_env_beats_file() {
        let mut src = Sources::from_pairs([("PORT", "9001"), ("WORKERS", "3")]);
        src.file.insert("PORT".into(), "9002".into());
        src.file.insert("HOST".into(), "0.0.0.0".into());
        src.flags.workers = Some("5".into());
        let cfg = Config::load(&src).expect("valid");
        assert_eq!(cfg.port, 9001);
        assert_eq!(cfg.host, "0.0.0.0");
        assert_eq!(cfg.workers, 5);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any value for any setting loads or is refused naming that setting.
            #[test]
            fn any_value_of_any_setting_loads_or_names_the_setting(
                which in 0..SettingFlags::NAMES.len(),
                value in "\\PC{0,80}",
            ) {
                let name = SettingFlags::NAMES[which];
                if let Err(e) = load(&[(name, value.as_str())]) {
                    prop_assert!(e.to_string().contains(name), "{e} should name {name}");
                }
            }

            /// Numbers inside a setting's range read back as themselves.
            #[test]
            fn in_range_numbers_round_trip(port: u16, workers in 1usize..=1024, jobs in 1usize..=256, grace in 0u32..3600) {
                let (p, w, j, g) = (port.to_string(), workers.to_string(), jobs.to_string(), grace.to_string());
                let cfg = load(&[("PORT", p.as_str()), ("WORKERS", w.as_str()), ("MAX_CONCURRENT_JOBS", j.as_str()), ("SHUTDOWN_GRACE", g.as_str())])
                    .expect("in range");
                prop_assert_eq!(cfg.port, port);
                prop_assert_eq!(cfg.workers, workers);
                prop_assert_eq!(cfg.max_concurrent_jobs, jobs);
                prop_assert_eq!(cfg.shutdown_grace, Duration::from_secs(u64::from(grace)));
            }
        }
    }
}
