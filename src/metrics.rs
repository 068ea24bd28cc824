//! What taskql counts, and its exposition at `/metrics` (OpenMetrics text, which Prometheus
//! scrapes): one registry per process, since Prometheus scrapes a process, reachable from
//! every layer through [`get`] the way `tracing` reaches its subscriber.
//!
//! Every label has a bounded set of values: routes are axum's route patterns, methods the
//! standard ones, operation names at most [`MAX_OPERATION_NAMES`] (or the list in
//! `METRICS_OPERATION_NAMES`) with the rest folded into `other`, codes the error contract's.
//! The README's "Metrics" section says what each metric means and how an alert on it reads.

use std::{
    collections::HashSet,
    sync::{Mutex, OnceLock, PoisonError},
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use sqlx::PgPool;

/// Where `/metrics` is served and which operation names get series of their own.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Metrics")]
pub struct MetricsSettings {
    /// Serve /metrics only on this address (e.g. 127.0.0.1:9100), not on the API's port.
    #[arg(long, env = "METRICS_ADDR", value_parser = metrics_addr)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Comma-separated operation names that get metric series of their own (default: the
    /// first 100 that ran with a verified token).
    #[arg(long, env = "METRICS_OPERATION_NAMES")]
    pub metrics_operation_names: Option<String>,
}

/// What [`MetricsSettings`] become.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// `METRICS_ADDR`: when set, `/metrics` is served only on this address, not on the API's.
    pub addr: Option<std::net::SocketAddr>,
    /// `METRICS_OPERATION_NAMES`: the operation names that get series of their own; empty:
    /// the first ones seen, up to [`MAX_OPERATION_NAMES`].
    pub operation_names: Vec<String>,
}

impl From<MetricsSettings> for MetricsConfig {
    fn from(settings: MetricsSettings) -> Self {
        Self {
            addr: settings.metrics_addr,
            operation_names: settings
                .metrics_operation_names
                .as_deref()
                .map(|raw| crate::config::items(raw).map(str::to_owned).collect())
                .unwrap_or_default(),
        }
    }
}

fn metrics_addr(raw: &str) -> Result<std::net::SocketAddr, String> {
    raw.trim()
        .parse()
        .map_err(|_| "expected an address and port such as 127.0.0.1:9100".to_owned())
}

/// How many distinct operation names get a series of their own when no list is configured:
/// the first ones seen among operations that ran. Enough for a real frontend's documents;
/// a client inventing names cannot grow the exposition past it.
pub const MAX_OPERATION_NAMES: usize = 100;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Seconds: from a fast page (1 ms) to the request deadline.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Statements per request: steady state is 1 or 2; the statement budget is 50.
const STATEMENT_BUCKETS: [f64; 9] = [0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 25.0, 50.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
    kind: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLatencyLabels {
    operation: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: &'static str,
}

/// Where a refused request came in.
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    Http,
    WebSocket,
}

impl Transport {
    fn label(self) -> TransportLabels {
        TransportLabels {
            transport: match self {
                Self::Http => "http",
                Self::WebSocket => "websocket",
            },
        }
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: HistogramFamily<RouteLabels>,
    operations: Family<OperationLabels, Counter>,
    operation_latency: HistogramFamily<OperationLatencyLabels>,
    statements_per_request: Histogram,
    statement_latency: Histogram,
    pool_connections: Gauge,
    pool_idle: Gauge,
    pool_max: Gauge,
    pool_acquire: Histogram,
    jwks_fetches: Family<OutcomeLabels, Counter>,
    rate_limited: Family<TransportLabels, Counter>,
    load_shed: Family<TransportLabels, Counter>,
    subscriptions: Gauge,
    websockets: Gauge,
    names: Mutex<Names>,
    pool: Mutex<Option<PgPool>>,
}

/// The operation names that get a series of their own.
struct Names {
    /// `METRICS_OPERATION_NAMES`: exactly these, when set.
    fixed: bool,
    known: HashSet<String>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("taskql");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route pattern, method and status",
            http_requests.clone(),
        );
        let http_latency: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its response head, by route pattern",
            prometheus_client::registry::Unit::Seconds,
            http_latency.clone(),
        );
        let operations = Family::<OperationLabels, Counter>::default();
        registry.register(
            "graphql_operations",
            "GraphQL operations, by operation name (folded), kind and outcome (OK or the \
             first error's extensions.code)",
            operations.clone(),
        );
        let operation_latency: HistogramFamily<OperationLatencyLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "graphql_operation_duration",
            "Time to check and run a GraphQL operation (a subscription: to start it)",
            prometheus_client::registry::Unit::Seconds,
            operation_latency.clone(),
        );
        let statements_per_request = Histogram::new(STATEMENT_BUCKETS);
        registry.register(
            "db_statements_per_request",
            "SQL statements one GraphQL HTTP request ran",
            statements_per_request.clone(),
        );
        let statement_latency = Histogram::new(LATENCY_BUCKETS);
        registry.register_with_unit(
            "db_statement_duration",
            "Time from sending a SQL statement to its last row",
            prometheus_client::registry::Unit::Seconds,
            statement_latency.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let pool_connections = gauge(
            &mut registry,
            "db_pool_connections",
            "Connections the pool holds, busy or idle",
        );
        let pool_idle = gauge(
            &mut registry,
            "db_pool_idle_connections",
            "Connections the pool holds that no request is using",
        );
        let pool_max = gauge(
            &mut registry,
            "db_pool_max_connections",
            "The most connections the pool may open (DATABASE_POOL_SIZE)",
        );
        let pool_acquire = Histogram::new(LATENCY_BUCKETS);
        registry.register_with_unit(
            "db_pool_acquire_duration",
            "Time a checkout waited for a pool connection (its rate's sum is the mean number \
             of waiters)",
            prometheus_client::registry::Unit::Seconds,
            pool_acquire.clone(),
        );
        let jwks_fetches = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "jwks_fetches",
            "Fetches of the token issuer's key set, by outcome (ok, error)",
            jwks_fetches.clone(),
        );
        let rate_limited = Family::<TransportLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests and subscribe messages refused by the per-caller rate limit",
            rate_limited.clone(),
        );
        let load_shed = Family::<TransportLabels, Counter>::default();
        registry.register(
            "load_shed",
            "Requests and connections refused because the instance was at capacity \
             (MAX_IN_FLIGHT, WS_MAX_CONNECTIONS)",
            load_shed.clone(),
        );
        let subscriptions = gauge(
            &mut registry,
            "subscriptions",
            "Live subscriptions on this instance",
        );
        let websockets = gauge(
            &mut registry,
            "websocket_connections",
            "Open GraphQL WebSocket connections on this instance",
        );
        let build = Family::<[(&'static str, &'static str); 1], Gauge>::default();
        build
            .get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        registry.register("build_info", "The running build (always 1)", build);
        Self {
            registry,
            http_requests,
            http_latency,
            operations,
            operation_latency,
            statements_per_request,
            statement_latency,
            pool_connections,
            pool_idle,
            pool_max,
            pool_acquire,
            jwks_fetches,
            rate_limited,
            load_shed,
            subscriptions,
            websockets,
            names: Mutex::new(Names {
                fixed: false,
                known: HashSet::new(),
            }),
            pool: Mutex::new(None),
        }
    }

    /// `METRICS_OPERATION_NAMES`: when not empty, exactly these names get series of their own.
    pub fn set_operation_names(&self, names: &[String]) {
        if names.is_empty() {
            return;
        }
        let mut known = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        known.fixed = true;
        known.known = names.iter().cloned().collect();
    }

    /// The pool whose size the gauges report (the last one opened, one per process in
    /// production).
    pub fn watch_pool(&self, pool: &PgPool, max: u32) {
        *self.pool.lock().unwrap_or_else(PoisonError::into_inner) = Some(pool.clone());
        self.pool_max.set(i64::from(max));
    }

    /// The exposition, with the pool's gauges read now.
    pub fn render(&self) -> String {
        let pool = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(pool) = pool {
            self.pool_connections.set(i64::from(pool.size()));
            self.pool_idle
                .set(i64::try_from(pool.num_idle()).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = text::encode(&mut out, &self.registry);
        out
    }

    pub fn http_request(&self, route: String, method: &str, status: u16, latency: Duration) {
        let method = match method {
            "GET" => "GET",
            "POST" => "POST",
            "OPTIONS" => "OPTIONS",
            "HEAD" => "HEAD",
            "PUT" => "PUT",
            "DELETE" => "DELETE",
            "PATCH" => "PATCH",
            _ => "other",
        };
        let labels = HttpLabels {
            route,
            method,
            status,
        };
        self.http_requests.get_or_create(&labels).inc();
        self.http_latency
            .get_or_create(&RouteLabels {
                route: labels.route,
            })
            .observe(latency.as_secs_f64());
    }

    /// One GraphQL operation, over HTTP or a WebSocket. `ran`: it passed every check and ran
    /// with a verified token (only then may its name claim a series of its own).
    pub fn operation(
        &self,
        name: Option<&str>,
        kind: &'static str,
        code: &'static str,
        ran: bool,
        latency: Duration,
    ) {
        let labels = OperationLabels {
            operation: self.fold(name, ran),
            kind,
            code,
        };
        self.operations.get_or_create(&labels).inc();
        self.operation_latency
            .get_or_create(&OperationLatencyLabels {
                operation: labels.operation,
                kind,
            })
            .observe(latency.as_secs_f64());
    }

    /// The label an operation name is counted under: `anonymous`, the name, or `other`.
    fn fold(&self, name: Option<&str>, ran: bool) -> String {
        let Some(name) = name else {
            return "anonymous".to_owned();
        };
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        if names.known.contains(name) {
            return name.to_owned();
        }
        let admissible =
            ran && !names.fixed && names.known.len() < MAX_OPERATION_NAMES && is_graphql_name(name);
        if admissible {
            names.known.insert(name.to_owned());
            return name.to_owned();
        }
        "other".to_owned()
    }

    pub fn statements_per_request(&self, count: u64) {
        #[allow(clippy::cast_precision_loss, reason = "a statement count is small")]
        self.statements_per_request.observe(count as f64);
    }

    pub fn statement(&self, seconds: f64) {
        self.statement_latency.observe(seconds);
    }

    /// A pool checkout that waited `seconds` for its connection.
    pub fn pool_acquired(&self, seconds: f64) {
        self.pool_acquire.observe(seconds);
    }

    pub fn jwks_fetch(&self, ok: bool) {
        self.jwks_fetches
            .get_or_create(&OutcomeLabels {
                outcome: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    pub fn rate_limited(&self, transport: Transport) {
        self.rate_limited.get_or_create(&transport.label()).inc();
    }

    pub fn load_shed(&self, transport: Transport) {
        self.load_shed.get_or_create(&transport.label()).inc();
    }

    /// Counts a live subscription until the guard is dropped.
    pub fn hold_subscription(&'static self) -> Held {
        Held::new(&self.subscriptions)
    }

    /// Counts an open WebSocket connection until the guard is dropped.
    pub fn hold_websocket(&'static self) -> Held {
        Held::new(&self.websockets)
    }
}

/// One unit of a gauge, held while what it counts lives: the count cannot drift, however
/// the holder ends (closed, dropped, cancelled).
#[derive(Debug)]
pub struct Held(&'static Gauge);

impl Held {
    fn new(gauge: &'static Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A GraphQL name (`/[_A-Za-z][_0-9A-Za-z]*/`), at most 64 characters.
fn is_graphql_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_are_bounded() {
        let metrics = Metrics::new();
        assert_eq!(metrics.fold(None, true), "anonymous");
        assert_eq!(
            metrics.fold(Some("Refused"), false),
            "other",
            "not run: no series"
        );
        assert_eq!(metrics.fold(Some("bad-name"), true), "other");
        for i in 0..MAX_OPERATION_NAMES {
            assert_eq!(
                metrics.fold(Some(&format!("Op{i}")), true),
                format!("Op{i}")
            );
        }
        assert_eq!(metrics.fold(Some("OneTooMany"), true), "other");
        assert_eq!(metrics.fold(Some("Op7"), false), "Op7", "known names stay");

        let pinned = Metrics::new();
        pinned.set_operation_names(&["Tasks".to_owned()]);
        assert_eq!(pinned.fold(Some("Tasks"), true), "Tasks");
        assert_eq!(pinned.fold(Some("Other"), true), "other");
    }
}
