//! Every setting taskql reads, its environment variable, default and validation, in one place.
//!
//! Settings come from the process environment (and a `.env` file that `main` loads first).
//! Parsing never panics: a bad value becomes a [`ConfigError`] that names the variable and
//! says what is wrong, in one line, without echoing secrets. Nothing else in the crate reads
//! the environment, so this file is the complete list (the README's table mirrors it).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use axum::http::HeaderValue;
use sqlx::postgres::PgConnectOptions;

/// The default database, chosen so `cargo run` works against a local PostgreSQL with no setup.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/taskql";

/// The whole configuration of a taskql process.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub graphql: GraphQLConfig,
    pub rate_limit: RateLimitConfig,
    pub subscriptions: SubscriptionConfig,
    pub auth: AuthConfig,
    pub log_format: LogFormat,
    pub observability: ObservabilityConfig,
}

/// Metrics and traces (README: "Observability"). The default: metrics on the API's port, no
/// traces.
#[derive(Debug, Clone, Default)]
pub struct ObservabilityConfig {
    /// `METRICS_ADDR`: when set, `/metrics` is served only on this address, not on the API's.
    pub metrics_addr: Option<SocketAddr>,
    /// `METRICS_OPERATION_NAMES`: the operation names that get series of their own; empty:
    /// the first ones seen, up to `metrics::MAX_OPERATION_NAMES`.
    pub operation_names: Vec<String>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: where spans go (OTLP over HTTP); unset: no tracing.
    pub otlp_endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`: the `service.name` of the spans.
    pub service_name: String,
}

/// How to reach PostgreSQL and how many connections to keep.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Parsed from `DATABASE_URL`; `PgConnectOptions`'s `Debug` never prints the password.
    /// The service's own connections: a least-privilege role, possibly through a pooler.
    pub connect_options: PgConnectOptions,
    /// `DATABASE_MIGRATION_URL` (default: `DATABASE_URL`): the direct connection, as the
    /// schema's owner, that migrations (and creating a missing database) use.
    pub migration_options: PgConnectOptions,
    /// `DATABASE_LISTEN_URL` (default: `DATABASE_URL`): the session connection that listens
    /// for task changes; `LISTEN` needs a direct connection, not a transaction pooler.
    pub listen_options: PgConnectOptions,
    /// Whether `DATABASE_URL` was left unset, so that a private cluster may stand in for a
    /// PostgreSQL that is not running (see `db::local`).
    pub url_is_default: bool,
    /// `LOCAL_POSTGRES`: when a private cluster is started instead of the default database.
    pub local: LocalPostgres,
    /// `LOCAL_POSTGRES_DIR`: where the private cluster keeps its data between runs.
    pub local_dir: PathBuf,
    /// `PATH`, split: the first place the private cluster's server binaries are looked for.
    pub search_path: Vec<PathBuf>,
    /// `MIGRATE_ON_START`: whether `serve` applies pending migrations before it listens.
    pub migrate_on_start: bool,
    /// `DATABASE_CREATE`: whether a database PostgreSQL reports missing is created.
    pub create_missing: bool,
    /// `DATABASE_POOLER`: what sits between taskql and PostgreSQL on `DATABASE_URL`.
    pub pooler: Pooler,
    /// `DATABASE_POOL_SIZE`: the most connections this process opens.
    pub pool_size: u32,
    /// `DATABASE_ACQUIRE_TIMEOUT`: how long a request waits for a free connection.
    pub acquire_timeout: Duration,
}

/// What `DATABASE_URL` connects through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooler {
    /// PostgreSQL itself, or a session-mode pooler: settings travel in the startup packet.
    None,
    /// A transaction-mode pooler (PgBouncer, Neon's `-pooler` endpoint): each transaction may
    /// run on another server connection, and startup `options` are refused.
    Transaction,
}

/// When `serve` runs a private PostgreSQL cluster of its own (`db::local`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalPostgres {
    /// Only when `DATABASE_URL` is unset and nothing usable answers at the default address.
    Auto,
    /// Whenever `DATABASE_URL` is unset (what the zero-setup test forces).
    Always,
    /// Never: a missing database is an error.
    Never,
}

/// The HTTP listener and the limits applied to every request.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `HOST` and `PORT`.
    pub addr: SocketAddr,
    /// `REQUEST_TIMEOUT`: the most a request may take, database work included.
    pub request_timeout: Duration,
    /// `MAX_BODY_BYTES`: the largest request body accepted.
    pub max_body_bytes: usize,
    /// `EXPORT_TIMEOUT`: the longest a download (`/export`) may take, body included.
    pub export_timeout: Duration,
    /// `CORS_ALLOWED_ORIGINS`: browser origins allowed to call the API with credentials.
    pub cors_allowed_origins: Vec<HeaderValue>,
}

/// GraphQL over WebSocket and live subscriptions (see the README section "Subscriptions").
#[derive(Debug, Clone)]
pub struct SubscriptionConfig {
    /// `WS_MAX_CONNECTIONS`: WebSocket connections this instance holds at once; more are
    /// refused with 503 before the upgrade.
    pub max_connections: usize,
    /// `WS_MAX_CONNECTIONS_PER_CLIENT`: WebSocket connections one client address (its /64 for
    /// IPv6) may hold, and one user once authenticated.
    pub max_connections_per_client: usize,
    /// `WS_IDLE_TIMEOUT`: how long a connection may run no operation before it is closed; 0
    /// keeps idle connections.
    pub idle_timeout: Duration,
    /// `WS_MAX_SUBSCRIPTIONS_PER_USER`: live subscriptions one user may hold on this instance,
    /// over all their connections.
    pub per_user: usize,
    /// `WS_MAX_OPERATIONS_PER_CONNECTION`: operations (subscriptions, and queries or
    /// mutations still running) one connection may have at once.
    pub per_connection: usize,
    /// `WS_MAX_MESSAGE_BYTES`: the largest message a client may send; larger ones close the
    /// connection with 1009.
    pub max_message_bytes: usize,
    /// `WS_INIT_TIMEOUT`: how long a new connection has to send `connection_init` (4408).
    pub init_timeout: Duration,
    /// `WS_KEEPALIVE`: how often the server pings an idle connection; 0 turns pings off.
    pub keepalive: Duration,
    /// `WS_EVENT_BUFFER`: events queued for one subscription before its connection counts as
    /// too slow and is closed.
    pub event_buffer: usize,
    /// `SYNC_RETENTION`: how long deleted tasks' tombstones are kept; a client whose version
    /// is older than a purged tombstone is told to resync.
    pub sync_retention: Duration,
    /// `SYNC_POLL`: how often each instance compares its subscribed users' versions with the
    /// database, healing lost announcements and picking up writes made outside taskql; 0
    /// turns the check off.
    pub sync_poll: Duration,
}

/// Limits and switches of the GraphQL layer (see the README section "GraphQL over HTTP").
#[derive(Debug, Clone)]
pub struct GraphQLConfig {
    /// `GRAPHQL_MAX_DEPTH`: the deepest selection nesting accepted; 0 turns the limit off.
    pub max_depth: usize,
    /// `GRAPHQL_MAX_COMPLEXITY`: the most a document may cost (list fields multiply by their
    /// page size); 0 turns the limit off.
    pub max_complexity: usize,
    /// `GRAPHQL_MAX_ALIASES`: the most aliases in one document; 0 turns the limit off.
    pub max_aliases: usize,
    /// `GRAPHQL_MAX_STATEMENTS`: the most SQL statements one operation may run, as estimated
    /// before it runs (`graphql::cost`); 0 turns the limit off.
    pub max_statements: u64,
    /// `GRAPHQL_MAX_DOCUMENT_BYTES`: the longest query text accepted.
    pub max_document_bytes: usize,
    /// `GRAPHQL_MAX_BATCH`: the most operations in one JSON batch.
    pub max_batch: usize,
    /// `GRAPHQL_INTROSPECTION`: whether `__schema` and `__type` may be queried.
    pub introspection: bool,
    /// `GRAPHQL_INTROSPECTION_WITHOUT_TOKEN`: whether introspection works for anonymous callers.
    pub introspection_without_token: bool,
    /// `GRAPHQL_APQ_CACHE_SIZE`: how many automatic persisted queries are remembered.
    pub apq_cache_size: usize,
    /// `CURSOR_SECRET`: secrets the pagination cursors are sealed with, comma-separated; the
    /// first seals, all open (rotation). Empty: derived from the token secret, or random.
    pub cursor_secrets: Vec<Secret>,
}

/// The per-caller request budget, and who the caller is.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// `RATE_LIMIT_PER_MINUTE`: sustained requests per minute for one caller; 0 turns limiting off.
    pub per_minute: u32,
    /// `RATE_LIMIT_BURST`: how many requests a caller may send at once before the rate applies.
    pub burst: u32,
    /// `TRUSTED_PROXIES`: the networks whose `X-Forwarded-For` names the client. Empty: the
    /// peer address is the client.
    pub trusted_proxies: Vec<Cidr>,
    /// `MAX_IN_FLIGHT`: GraphQL requests this instance serves at once; more are shed with 503.
    /// 0 turns the cap off.
    pub max_in_flight: usize,
    /// `RATE_LIMIT_IPV6_PREFIX`: how many leading bits of an IPv6 address make one client for
    /// the per-address limits (64: every /64 is one client).
    pub ipv6_prefix: u8,
}

/// A network, such as `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, addr: IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(addr)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(addr) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(addr)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(addr) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let bad = || format!("{raw:?} is not an address or network like 10.0.0.0/8");
        let (addr, prefix) = raw.split_once('/').unwrap_or((raw, ""));
        let network: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?
        };
        Ok(Self { network, prefix })
    }
}

/// Where tokens are verified against.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// `AUTH_ISSUER`: the required `iss` claim, when set.
    pub issuer: Option<String>,
    /// `AUTH_AUDIENCE`: the required `aud` claim (one of them, when the token has several).
    pub audience: Option<String>,
    /// `AUTH_CLOCK_SKEW`: leeway for `exp`, `nbf` and `iat`.
    pub clock_skew: Duration,
    /// `AUTH_JWKS_REFRESH`: how often the JWKS is fetched again in the background.
    pub jwks_refresh: Duration,
    /// `AUTH_JWKS_MIN_REFETCH`: the least time between two fetches caused by unknown `kid`s.
    pub jwks_min_refetch: Duration,
}

/// The three ways taskql can verify tokens.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// `AUTH_JWKS_URL`: asymmetric tokens checked against a JWKS (Better Auth's `jwt` plugin).
    Jwks { url: String },
    /// `AUTH_JWT_SECRET`: HS256 tokens signed with a shared secret.
    Secret { secret: Secret },
    /// Neither set, on a loopback address: HS256 with a secret kept in a local file.
    Development { secret_file: PathBuf },
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured: for a terminal.
    Pretty,
    /// One JSON object per line: for log collectors.
    Json,
}

/// A value that must never be printed: `Debug` shows a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A setting that could not be used. `Display` is the one line `main` prints before exiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.var, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests can supply variables without
    /// touching the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);

        let url_is_default = env.optional("DATABASE_URL").is_none();
        let database_url = env.string("DATABASE_URL", DEFAULT_DATABASE_URL);
        let connect_options = parse_database_url("DATABASE_URL", &database_url)?;
        let other_url = |var: &'static str| match env.optional(var) {
            Some(url) => parse_database_url(var, &url),
            None => Ok(connect_options.clone()),
        };
        let migration_options = other_url("DATABASE_MIGRATION_URL")?;
        let listen_options = other_url("DATABASE_LISTEN_URL")?;
        let pooler = env.parsed("DATABASE_POOLER", Pooler::None, |raw| {
            match raw.to_ascii_lowercase().as_str() {
                "none" | "session" => Ok(Pooler::None),
                "transaction" | "pgbouncer" => Ok(Pooler::Transaction),
                _ => Err("expected none or transaction".to_owned()),
            }
        })?;
        if pooler == Pooler::Transaction && env.optional("DATABASE_LISTEN_URL").is_none() {
            // LISTEN through a transaction pooler registers on a server connection that is
            // handed to someone else at once: subscriptions would hear nothing, silently.
            return Err(ConfigError {
                var: "DATABASE_LISTEN_URL",
                problem: "must be set with DATABASE_POOLER=transaction: subscriptions listen on \
                          a session of their own, so give the direct (not pooled) URL"
                    .to_owned(),
            });
        }
        let database = DatabaseConfig {
            connect_options,
            migration_options,
            listen_options,
            url_is_default,
            local: env.parsed("LOCAL_POSTGRES", LocalPostgres::Auto, |raw| {
                match raw.to_ascii_lowercase().as_str() {
                    "auto" => Ok(LocalPostgres::Auto),
                    "always" => Ok(LocalPostgres::Always),
                    "never" => Ok(LocalPostgres::Never),
                    _ => Err("expected auto, always or never".to_owned()),
                }
            })?,
            local_dir: env
                .optional("LOCAL_POSTGRES_DIR")
                .map_or_else(|| default_local_dir(&env), PathBuf::from),
            search_path: env
                .optional("PATH")
                .map(|path| std::env::split_paths(&path).collect())
                .unwrap_or_default(),
            migrate_on_start: env.boolean("MIGRATE_ON_START", true)?,
            create_missing: env.boolean("DATABASE_CREATE", true)?,
            pooler,
            pool_size: env.number("DATABASE_POOL_SIZE", 10, 1..=1000)?,
            // Short: when every connection is busy for this long, a quick 503 serves the
            // client better than a request that waits out its whole deadline.
            acquire_timeout: env.duration("DATABASE_ACQUIRE_TIMEOUT", Duration::from_secs(1))?,
        };

        let host = env.parsed("HOST", IpAddr::V4(Ipv4Addr::LOCALHOST), |raw| {
            IpAddr::from_str(raw)
                .map_err(|_| "expected an IP address such as 127.0.0.1 or 0.0.0.0".to_owned())
        })?;
        let port: u16 = env.number("PORT", 8080, 0..=65535)?;
        let http = HttpConfig {
            addr: SocketAddr::new(host, port),
            request_timeout: env.duration("REQUEST_TIMEOUT", Duration::from_secs(10))?,
            max_body_bytes: env.number("MAX_BODY_BYTES", 256 * 1024, 1024..=64 * 1024 * 1024)?,
            export_timeout: env.duration("EXPORT_TIMEOUT", Duration::from_secs(300))?,
            cors_allowed_origins: env.parsed("CORS_ALLOWED_ORIGINS", Vec::new(), parse_origins)?,
        };

        let graphql = GraphQLConfig {
            max_depth: env.number("GRAPHQL_MAX_DEPTH", 15, 0..=1000)?,
            max_complexity: env.number("GRAPHQL_MAX_COMPLEXITY", 10_000, 0..=10_000_000)?,
            max_aliases: env.number("GRAPHQL_MAX_ALIASES", 30, 0..=10_000)?,
            max_statements: env.number("GRAPHQL_MAX_STATEMENTS", 50, 0..=100_000)?,
            max_document_bytes: env.number(
                "GRAPHQL_MAX_DOCUMENT_BYTES",
                32 * 1024,
                64..=16 * 1024 * 1024,
            )?,
            max_batch: env.number("GRAPHQL_MAX_BATCH", 10, 1..=1000)?,
            introspection: env.boolean("GRAPHQL_INTROSPECTION", true)?,
            introspection_without_token: env
                .boolean("GRAPHQL_INTROSPECTION_WITHOUT_TOKEN", true)?,
            apq_cache_size: env.number("GRAPHQL_APQ_CACHE_SIZE", 1000, 0..=1_000_000)?,
            cursor_secrets: env.parsed("CURSOR_SECRET", Vec::new(), parse_secrets)?,
        };

        let rate_limit = RateLimitConfig {
            per_minute: env.number("RATE_LIMIT_PER_MINUTE", 600, 0..=1_000_000)?,
            burst: env.number("RATE_LIMIT_BURST", 60, 1..=1_000_000)?,
            trusted_proxies: env.parsed("TRUSTED_PROXIES", Vec::new(), |raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|part| !part.is_empty())
                    .map(Cidr::from_str)
                    .collect()
            })?,
            max_in_flight: env.number("MAX_IN_FLIGHT", 256, 0..=1_000_000)?,
            ipv6_prefix: env.number("RATE_LIMIT_IPV6_PREFIX", 64, 16..=128)?,
        };

        let subscriptions = SubscriptionConfig {
            max_connections: env.number("WS_MAX_CONNECTIONS", 10_000, 1..=1_000_000)?,
            max_connections_per_client: env.number(
                "WS_MAX_CONNECTIONS_PER_CLIENT",
                100,
                1..=1_000_000,
            )?,
            idle_timeout: env.duration_or_off("WS_IDLE_TIMEOUT", Duration::from_secs(300))?,
            per_user: env.number("WS_MAX_SUBSCRIPTIONS_PER_USER", 100, 1..=100_000)?,
            per_connection: env.number("WS_MAX_OPERATIONS_PER_CONNECTION", 25, 1..=10_000)?,
            max_message_bytes: env.number(
                "WS_MAX_MESSAGE_BYTES",
                64 * 1024,
                1024..=64 * 1024 * 1024,
            )?,
            init_timeout: env.duration("WS_INIT_TIMEOUT", Duration::from_secs(10))?,
            keepalive: env.duration_or_off("WS_KEEPALIVE", Duration::from_secs(15))?,
            event_buffer: env.number("WS_EVENT_BUFFER", 256, 1..=1_000_000)?,
            sync_retention: env.duration("SYNC_RETENTION", Duration::from_secs(30 * 86_400))?,
            sync_poll: env.duration_or_off("SYNC_POLL", Duration::from_secs(5))?,
        };

        let auth = parse_auth(&env, host)?;

        let log_format = env.parsed("LOG_FORMAT", LogFormat::detect(), |raw| {
            match raw.to_ascii_lowercase().as_str() {
                "pretty" => Ok(LogFormat::Pretty),
                "json" => Ok(LogFormat::Json),
                "auto" => Ok(LogFormat::detect()),
                _ => Err("expected one of auto, pretty, json".to_owned()),
            }
        })?;

        let observability = ObservabilityConfig {
            metrics_addr: env.parsed("METRICS_ADDR", None, |raw| {
                SocketAddr::from_str(raw)
                    .map(Some)
                    .map_err(|_| "expected an address and port such as 127.0.0.1:9100".to_owned())
            })?,
            operation_names: env
                .optional("METRICS_OPERATION_NAMES")
                .map(|raw| {
                    raw.split(',')
                        .map(str::trim)
                        .filter(|name| !name.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            otlp_endpoint: env.parsed("OTEL_EXPORTER_OTLP_ENDPOINT", None, |raw| {
                if raw.starts_with("http://") || raw.starts_with("https://") {
                    Ok(Some(raw.trim_end_matches('/').to_owned()))
                } else {
                    Err("expected an http(s) URL such as http://127.0.0.1:4318".to_owned())
                }
            })?,
            service_name: env.string("OTEL_SERVICE_NAME", "taskql"),
        };

        Ok(Self {
            database,
            http,
            graphql,
            rate_limit,
            subscriptions,
            auth,
            log_format,
            observability,
        })
    }
}

impl LogFormat {
    /// Pretty for a person at a terminal, JSON for everything else (containers, CI, files).
    fn detect() -> Self {
        use std::io::IsTerminal;
        if std::io::stdout().is_terminal() {
            Self::Pretty
        } else {
            Self::Json
        }
    }
}

fn parse_auth(env: &Env<'_>, host: IpAddr) -> Result<AuthConfig, ConfigError> {
    let jwks_url = env.optional("AUTH_JWKS_URL");
    let secret = env.optional("AUTH_JWT_SECRET");
    let mode = match (jwks_url, secret) {
        (Some(_), Some(_)) => {
            return Err(ConfigError {
                var: "AUTH_JWKS_URL",
                problem: "AUTH_JWKS_URL and AUTH_JWT_SECRET are both set; choose one way to \
                          verify tokens"
                    .to_owned(),
            });
        }
        (Some(url), None) => {
            check_jwks_url(&url).map_err(|problem| ConfigError {
                var: "AUTH_JWKS_URL",
                problem,
            })?;
            // Without these, any token the auth server's keys ever signed (one minted for
            // another application, say) would be accepted here.
            for var in ["AUTH_ISSUER", "AUTH_AUDIENCE"] {
                if env.optional(var).is_none() {
                    return Err(ConfigError {
                        var,
                        problem: "must be set with AUTH_JWKS_URL (Better Auth: its base URL, \
                                  e.g. https://auth.example.com), so tokens issued for other \
                                  applications are refused"
                            .to_owned(),
                    });
                }
            }
            AuthMode::Jwks { url }
        }
        (None, Some(secret)) => {
            // RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
            if secret.len() < 32 {
                return Err(ConfigError {
                    var: "AUTH_JWT_SECRET",
                    problem: format!(
                        "is {} bytes long; HS256 needs at least 32 bytes",
                        secret.len()
                    ),
                });
            }
            AuthMode::Secret {
                secret: Secret::new(secret),
            }
        }
        (None, None) => {
            // A development secret on a reachable address would let anyone who reads the
            // file, or guesses that it exists, mint tokens: refuse instead of warning.
            if !host.is_loopback() {
                return Err(ConfigError {
                    var: "AUTH_JWKS_URL",
                    problem: format!(
                        "no token verification is configured and HOST={host} is not a loopback \
                         address; set AUTH_JWKS_URL (Better Auth) or AUTH_JWT_SECRET"
                    ),
                });
            }
            AuthMode::Development {
                secret_file: PathBuf::from(
                    env.string("AUTH_DEV_SECRET_FILE", ".taskql-dev-secret"),
                ),
            }
        }
    };
    Ok(AuthConfig {
        mode,
        issuer: env.optional("AUTH_ISSUER"),
        audience: env.optional("AUTH_AUDIENCE"),
        clock_skew: env.duration("AUTH_CLOCK_SKEW", Duration::from_secs(60))?,
        jwks_refresh: env.duration("AUTH_JWKS_REFRESH", Duration::from_secs(300))?,
        jwks_min_refetch: env.duration("AUTH_JWKS_MIN_REFETCH", Duration::from_secs(10))?,
    })
}

/// Whether this process runs as root: `/proc/self` belongs to the effective user.
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Where a private cluster keeps its data unless `LOCAL_POSTGRES_DIR` says otherwise: the
/// user's data directory (XDG), or `/var/lib/taskql` for root, since PostgreSQL then runs as
/// the `postgres` user, who cannot enter root's home.
fn default_local_dir(env: &Env<'_>) -> PathBuf {
    if running_as_root() {
        return PathBuf::from("/var/lib/taskql/postgres");
    }
    env.optional("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            env.optional("HOME")
                .map(|home| PathBuf::from(home).join(".local/share"))
        })
        .unwrap_or_else(|| PathBuf::from("."))
        .join("taskql/postgres")
}

/// The JWKS decides which tokens are genuine, so it must come over TLS: anyone on the network
/// path of a plain-HTTP fetch could add their own key. Loopback (an auth server on the same
/// host, or a test) is the one exception.
fn check_jwks_url(url: &str) -> Result<(), String> {
    let example = "expected an https URL such as https://auth.example.com/api/auth/jwks";
    if url.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(example.to_owned());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // The host, without userinfo and port; an IPv6 literal keeps its brackets until here.
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "{example}; plain http is accepted only on loopback (127.0.0.1, ::1, localhost)"
        ))
    }
}

fn parse_database_url(var: &'static str, url: &str) -> Result<PgConnectOptions, ConfigError> {
    // The URL may carry a password, so no message below repeats it.
    let invalid = |why: &str| ConfigError {
        var,
        problem: format!("{why} (expected postgres://user:password@host:port/database)"),
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(invalid("not a PostgreSQL URL"));
    }
    PgConnectOptions::from_str(url).map_err(|_| invalid("could not be parsed"))
}

fn parse_origins(raw: &str) -> Result<Vec<HeaderValue>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .map(|origin| {
            if origin == "*" {
                // Browsers refuse `*` on credentialed requests, and echoing any origin
                // would let every site act with the user's cookies: list them instead.
                return Err("\"*\" is not allowed; list each origin".to_owned());
            }
            let (scheme, rest) = origin.split_once("://").ok_or_else(|| {
                format!("{origin:?} is not an origin like https://app.example.com")
            })?;
            if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') {
                return Err(format!(
                    "{origin:?} is not an origin like https://app.example.com (no path)"
                ));
            }
            HeaderValue::from_str(origin).map_err(|_| format!("{origin:?} is not a valid origin"))
        })
        .collect()
}

/// Comma-separated secrets of at least 32 bytes each. The message never repeats a secret.
fn parse_secrets(raw: &str) -> Result<Vec<Secret>, String> {
    raw.split(',')
        .map(str::trim)
        .enumerate()
        .map(|(i, secret)| {
            if secret.len() < 32 {
                Err(format!(
                    "secret {} of the list is {} bytes long; each needs at least 32",
                    i + 1,
                    secret.len()
                ))
            } else {
                Ok(Secret::new(secret))
            }
        })
        .collect()
}

/// Parses `10s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let duration = parse_duration_or_zero(raw)?;
    if duration.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(duration)
}

/// A duration where 0 means "off": `0`, `10s`, `500ms`, `2m`, `3h` or `30d`.
pub fn parse_duration_or_zero(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let expected = || "expected a duration such as 10s, 500ms, 2m, 3h or 30d".to_owned();
    let amount: u64 = digits.parse().map_err(|_| expected())?;
    let seconds = |per: u64| Duration::from_secs(amount.saturating_mul(per));
    let duration = match unit.trim() {
        "" | "s" => seconds(1),
        "ms" => Duration::from_millis(amount),
        "m" => seconds(60),
        "h" => seconds(3600),
        "d" => seconds(86_400),
        _ => return Err(expected()),
    };
    // Durations become deadlines (`Instant + Duration`, which panics past the clock's range):
    // nothing taskql waits for is longer than this.
    if duration > MAX_DURATION {
        return Err("must be at most 3650d".to_owned());
    }
    Ok(duration)
}

/// The longest duration a setting may have: ten years.
const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// Typed access to the variables, each failure naming its variable.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// An unset or empty variable counts as absent, as in most shells' `VAR=` idiom.
    fn optional(&self, var: &str) -> Option<String> {
        (self.0)(var).filter(|value| !value.trim().is_empty())
    }

    fn string(&self, var: &str, default: &str) -> String {
        self.optional(var).unwrap_or_else(|| default.to_owned())
    }

    fn parsed<T>(
        &self,
        var: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.optional(var) {
            None => Ok(default),
            Some(raw) => parse(raw.trim()).map_err(|problem| ConfigError { var, problem }),
        }
    }

    fn number<T>(
        &self,
        var: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        self.parsed(var, default, |raw| {
            let expected = || {
                format!(
                    "expected a whole number from {} to {}",
                    range.start(),
                    range.end()
                )
            };
            let value: T = raw.parse().map_err(|_| {
                // Too large for the setting's type is out of range, not "not a number".
                if raw.parse::<i128>().is_ok() {
                    format!("{raw} is out of range; {}", expected())
                } else {
                    format!("{raw:?} is not a number; {}", expected())
                }
            })?;
            if range.contains(&value) {
                Ok(value)
            } else {
                Err(format!("{value} is out of range; {}", expected()))
            }
        })
    }

    fn duration(&self, var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        self.parsed(var, default, parse_duration)
    }

    /// A duration that may be 0, meaning "off".
    fn duration_or_off(
        &self,
        var: &'static str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        self.parsed(var, default, parse_duration_or_zero)
    }

    fn boolean(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        self.parsed(var, default, |raw| {
            match raw.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(format!("{raw:?} is not a boolean; expected true or false")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_need_no_variables() {
        let config = config(&[]).expect("defaults are valid");
        assert_eq!(config.http.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(
            config.database.connect_options.get_database(),
            Some("taskql")
        );
        assert!(matches!(config.auth.mode, AuthMode::Development { .. }));
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases = [
            ("PORT", "eighty", "not a number"),
            ("PORT", "70000", "out of range"),
            ("HOST", "example.com", "IP address"),
            ("DATABASE_URL", "mysql://x", "not a PostgreSQL URL"),
            (
                "DATABASE_MIGRATION_URL",
                "mysql://x",
                "not a PostgreSQL URL",
            ),
            ("DATABASE_POOLER", "statement", "none or transaction"),
            ("MIGRATE_ON_START", "later", "not a boolean"),
            ("LOCAL_POSTGRES", "sometimes", "auto, always or never"),
            ("METRICS_ADDR", "9100", "address and port"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "collector:4318",
                "http(s) URL",
            ),
            ("DATABASE_POOL_SIZE", "0", "out of range"),
            ("REQUEST_TIMEOUT", "soon", "duration"),
            ("REQUEST_TIMEOUT", "0s", "greater than zero"),
            ("CORS_ALLOWED_ORIGINS", "*", "not allowed"),
            ("CORS_ALLOWED_ORIGINS", "https://a.example/path", "no path"),
            ("GRAPHQL_INTROSPECTION", "maybe", "not a boolean"),
            ("LOG_FORMAT", "xml", "auto, pretty, json"),
            ("AUTH_JWT_SECRET", "short", "at least 32 bytes"),
            (
                "CURSOR_SECRET",
                "0123456789abcdef0123456789abcdef,short",
                "secret 2",
            ),
        ];
        for (var, value, expected) in cases {
            let err = config(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var, "{var}={value} blamed {}", err.var);
            assert!(
                err.problem.contains(expected),
                "{var}={value}: {:?} does not mention {expected:?}",
                err.problem
            );
        }
    }

    #[test]
    fn a_transaction_pooler_needs_a_direct_url_to_listen_on() {
        let pooled = ("DATABASE_POOLER", "transaction");
        assert_eq!(config_err(&[pooled]), "DATABASE_LISTEN_URL");
        let config = config(&[
            pooled,
            ("DATABASE_URL", "postgres://app@pooler.example:6432/taskql"),
            (
                "DATABASE_LISTEN_URL",
                "postgres://app@db.example:5432/taskql",
            ),
        ])
        .expect("valid");
        assert_eq!(config.database.listen_options.get_host(), "db.example");
        // Migrations default to the service's URL; an owner's direct URL is set apart.
        assert_eq!(
            config.database.migration_options.get_host(),
            "pooler.example"
        );
    }

    #[test]
    fn database_url_errors_do_not_echo_the_password() {
        let err = config(&[("DATABASE_URL", "postgres://u:hunter2@[bad")]).expect_err("bad url");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn both_auth_modes_at_once_is_refused() {
        let err = config(&[
            ("AUTH_JWKS_URL", "https://auth.example.com/api/auth/jwks"),
            ("AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
        .expect_err("two modes");
        assert!(err.problem.contains("both set"), "{err}");
    }

    #[test]
    fn jwks_mode_needs_issuer_audience_and_tls() {
        let jwks = ("AUTH_JWKS_URL", "https://auth.example.com/api/auth/jwks");
        let issuer = ("AUTH_ISSUER", "https://auth.example.com");
        let audience = ("AUTH_AUDIENCE", "https://auth.example.com");
        assert_eq!(
            config(&[jwks, audience]).expect_err("no issuer").var,
            "AUTH_ISSUER"
        );
        assert_eq!(
            config(&[jwks, issuer]).expect_err("no audience").var,
            "AUTH_AUDIENCE"
        );
        config(&[jwks, issuer, audience]).expect("complete");

        for plain in [
            "http://auth.example.com/api/auth/jwks",
            "http://127.0.0.1.evil.example/jwks",
            "http://localhost@evil.example/jwks",
            "ftp://auth.example.com/jwks",
        ] {
            let err = config(&[("AUTH_JWKS_URL", plain), issuer, audience]).expect_err(plain);
            assert_eq!(err.var, "AUTH_JWKS_URL", "{plain}");
        }
        for local in [
            "http://127.0.0.1:3000/api/auth/jwks",
            "http://localhost:3000/api/auth/jwks",
            "http://[::1]:3000/api/auth/jwks",
        ] {
            config(&[("AUTH_JWKS_URL", local), issuer, audience]).expect(local);
        }
    }

    #[test]
    fn development_mode_refuses_a_public_address() {
        let err = config(&[("HOST", "0.0.0.0")]).expect_err("dev mode on 0.0.0.0");
        assert!(err.problem.contains("not a loopback"), "{err}");
        config(&[
            ("HOST", "0.0.0.0"),
            ("AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
        .expect("an explicit secret may listen anywhere");
    }

    #[test]
    fn trusted_proxies_are_networks() {
        let config = config(&[("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7, ::1")]).expect("valid");
        let proxies = &config.rate_limit.trusted_proxies;
        let inside = |ip: &str| proxies.iter().any(|c| c.contains(ip.parse().expect("ip")));
        assert!(inside("10.200.3.4"));
        assert!(inside("192.168.1.7"));
        assert!(!inside("192.168.1.8"));
        assert!(inside("::1"));
        assert!(inside("::ffff:10.1.1.1"), "IPv4-mapped");
        assert!(!inside("11.0.0.1"));
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.0/x"] {
            assert_eq!(
                config_err(&[("TRUSTED_PROXIES", bad)]),
                "TRUSTED_PROXIES",
                "{bad}"
            );
        }
    }

    fn config_err(vars: &[(&str, &str)]) -> &'static str {
        config(vars).expect_err("invalid").var
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("0").is_err());
        assert_eq!(parse_duration_or_zero("0"), Ok(Duration::ZERO));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("3651d").is_err());
        assert!(parse_duration("99999999999999999999").is_err());
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let config = config(&[("AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef-secret")])
            .expect("valid");
        assert!(!format!("{config:?}").contains("secret\""));
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
    }
}
