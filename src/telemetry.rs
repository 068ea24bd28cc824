//! Logs and traces: one `tracing` subscriber for the process.
//!
//! - Logs: pretty for a terminal and JSON lines otherwise, to stderr, so commands that print
//!   results (`taskql schema`, `taskql token`) keep stdout clean. Every line of a request
//!   carries its request id and, when the caller sent a W3C `traceparent` or tracing is on,
//!   its trace id.
//! - Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans go out over OTLP/HTTP (protobuf)
//!   in batches: the request (child of the caller's `traceparent`), parsing, validation,
//!   execution, each resolver that touches the database, and each SQL statement (its text,
//!   which holds `$1` placeholders, never values). Without it no tracing layer is installed
//!   and the spans below the request, at debug level, are disabled at their call sites.
//! - A layer counts the SQL statements each request runs (sqlx reports each one as an
//!   event) for the metrics, and makes the statement spans from the same events; it also
//!   times pool checkouts, which sqlx reports the same way. The count and the request's
//!   trace id live in a task-local scope ([`in_request`]), not in the request span: a span
//!   that no layer records is then never made.
//!
//! What must never be logged: tokens, secrets, the database password. The request span
//! (see `http::request_span`) leaves out query strings for the same reason.

use std::{
    cell::Cell,
    future::Future,
    sync::OnceLock,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use opentelemetry::{
    KeyValue,
    trace::{Span as _, SpanKind, TraceContextExt as _, Tracer as _, TracerProvider as _},
};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{SdkTracer, SdkTracerProvider},
};
use tracing::{Level, Subscriber, field::Field};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{
    EnvFilter, Layer, Registry, filter::filter_fn, fmt, layer::Context, prelude::*,
};

/// The logs' and traces' settings.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Logs and traces")]
pub struct TelemetrySettings {
    /// pretty, json, or auto (pretty on a terminal, JSON otherwise). Logs go to stderr; their
    /// filter is RUST_LOG (EnvFilter syntax).
    #[arg(long, env = "LOG_FORMAT", default_value = "auto", value_parser = log_format)]
    pub log_format: LogFormat,
    /// Export traces over OTLP/HTTP to this collector (e.g. http://127.0.0.1:4318); unset: no
    /// tracing.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = otlp_endpoint)]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// The traces' service.name.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "taskql")]
    pub otel_service_name: String,
}

/// Logs and traces (README: "Observability"). The default: logs by `LOG_FORMAT`, no traces.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: where spans go (OTLP over HTTP); unset: no tracing.
    pub otlp_endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`: the `service.name` of the spans.
    pub service_name: String,
}

impl From<TelemetrySettings> for TelemetryConfig {
    fn from(settings: TelemetrySettings) -> Self {
        Self {
            log_format: settings.log_format,
            otlp_endpoint: settings.otel_exporter_otlp_endpoint,
            service_name: settings.otel_service_name,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured: for a terminal.
    Pretty,
    /// One JSON object per line: for log collectors.
    Json,
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

fn log_format(raw: &str) -> Result<LogFormat, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "pretty" => Ok(LogFormat::Pretty),
        "json" => Ok(LogFormat::Json),
        "auto" => Ok(LogFormat::detect()),
        _ => Err("expected one of auto, pretty, json".to_owned()),
    }
}

fn otlp_endpoint(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.starts_with("http://") || raw.starts_with("https://") {
        Ok(raw.trim_end_matches('/').to_owned())
    } else {
        Err("expected an http(s) URL such as http://127.0.0.1:4318".to_owned())
    }
}

/// The tracer of the statement spans, set when traces are exported.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// What `init` started; `shutdown` sends the spans still buffered.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the trace exporter (blocking; call outside the async runtime).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(err) = provider.shutdown_with_timeout(Duration::from_secs(5))
        {
            eprintln!("taskql: could not flush the last spans: {err}");
        }
    }
}

/// Whether spans are exported.
pub fn tracing_enabled() -> bool {
    TRACER.get().is_some()
}

/// The filter when `RUST_LOG` is unset: our own info logs, one line per request, and only
/// warnings from the libraries.
const DEFAULT_FILTER: &str = "info,sqlx=warn,tower_http=info,async_graphql=warn";

/// The target sqlx reports every statement under, with its text and timing.
const STATEMENT_TARGET: &str = "sqlx::query";
/// The target sqlx reports every pool checkout under, with how long it waited.
const ACQUIRE_TARGET: &str = "sqlx::pool::acquire";

/// Installs the global subscriber (and, when configured, the trace exporter). Call once,
/// before anything logs and before the async runtime starts (the exporter's HTTP client
/// runs on a thread of its own).
pub fn init(config: &TelemetryConfig) -> anyhow::Result<Telemetry> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let provider = match &config.otlp_endpoint {
        Some(endpoint) => Some(tracer_provider(endpoint, &config.service_name)?),
        None => None,
    };
    let tracer = provider.as_ref().map(|provider| {
        let tracer = provider.tracer("taskql");
        let _ = TRACER.set(tracer.clone());
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        tracer
    });
    tracing_subscriber::registry()
        .with(layers(config.log_format, filter, tracer))
        .init();
    Ok(Telemetry { provider })
}

/// The subscriber's layers: the statement count, the tracer when spans are exported, and the
/// log lines. Each filters for itself: the log's filter must not hide from the statement
/// count the sqlx events it does not print, nor from the tracer the debug-level spans.
///
/// A list, not an `Option` for the tracer: an absent `Option` layer tells tracing it is
/// interested in every callsite, so each span no filter wants (the request's, parsing's,
/// execution's) was still made and entered on every poll of the request.
fn layers(
    format: LogFormat,
    filter: EnvFilter,
    tracer: Option<SdkTracer>,
) -> Vec<Box<dyn Layer<Registry> + Send + Sync>> {
    let statements = Statements.with_filter(filter_fn(|meta| {
        meta.is_event() && matches!(meta.target(), STATEMENT_TARGET | ACQUIRE_TARGET)
    }));
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![statements.boxed()];
    if let Some(tracer) = tracer {
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(filter_fn(|meta| {
                    meta.target().starts_with("taskql")
                        && (meta.is_span() || *meta.level() <= Level::WARN)
                }))
                .boxed(),
        );
    }
    layers.push(match format {
        LogFormat::Pretty => fmt::layer()
            .with_writer(std::io::stderr)
            .compact()
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_current_span(true)
            // The whole chain, so a line logged in a nested span (a db function's) still
            // carries the request id of the request span above it.
            .with_span_list(true)
            .with_filter(filter)
            .boxed(),
    });
    layers
}

fn tracer_provider(endpoint: &str, service: &str) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .build()
        .context("could not set up the OTLP exporter (OTEL_EXPORTER_OTLP_ENDPOINT)")?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build(),
        )
        .build())
}

/// The trace ids a request's log lines carry.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RequestTrace {
    /// The id taskql logs, and returns in `INTERNAL_SERVER_ERROR`: its own span's when spans
    /// are exported (a child of the caller's trace, as W3C Trace Context has it); otherwise
    /// one of its own, made when the caller sent a `traceparent`.
    pub trace_id: Option<String>,
    /// With spans not exported, the trace id the caller's `traceparent` claimed, logged apart:
    /// a caller could otherwise make its requests' log lines, and its errors, look like
    /// someone else's.
    pub caller_trace_id: Option<String>,
}

/// Makes `span` (a request's) the child of the caller's trace, when spans are exported.
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !tracing_enabled() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&opentelemetry_http::HeaderExtractor(headers))
    });
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The trace ids of the request being served (see [`RequestTrace`]): read from the current
/// span (the request's) when spans are exported, else from the caller's headers.
pub fn request_trace(headers: &axum::http::HeaderMap) -> RequestTrace {
    if tracing_enabled() {
        let context = tracing::Span::current().context();
        let ids = context.span().span_context().clone();
        return RequestTrace {
            trace_id: ids.is_valid().then(|| ids.trace_id().to_string()),
            caller_trace_id: None,
        };
    }
    let caller = caller_trace_id(headers);
    RequestTrace {
        trace_id: caller
            .is_some()
            .then(|| uuid::Uuid::new_v4().simple().to_string()),
        caller_trace_id: caller,
    }
}

/// The trace id of the caller's W3C `traceparent`, if it sent a valid one (read by the
/// OpenTelemetry propagator, whether or not spans are exported).
fn caller_trace_id(headers: &axum::http::HeaderMap) -> Option<String> {
    use opentelemetry::propagation::TextMapPropagator as _;
    if !headers.contains_key("traceparent") {
        return None;
    }
    let context =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    let ids = context.span().span_context().clone();
    ids.is_valid().then(|| ids.trace_id().to_string())
}

tokio::task_local! {
    /// The request the current task serves (see [`in_request`]).
    static REQUEST: RequestScope;
}

/// What a request's work finds wherever it runs in the request's task: its trace id (for
/// `INTERNAL_SERVER_ERROR`) and its statement count. The request span could carry both, but
/// keeping a span in tracing's registry costs on every poll of the request (its enter and
/// exit through each layer's filter), paid even when no log line or trace records it; with
/// these here, a request span nobody records is never made (7% of the CPU of a cheap query
/// before, `benches/profile.py`).
struct RequestScope {
    trace_id: Option<String>,
    /// The statements run so far; `None` for requests that are no GraphQL operation over
    /// HTTP (probes, assets, WebSocket handshakes), which the metric leaves out.
    statements: Cell<Option<u64>>,
}

/// Runs `work` as the request whose trace id is `trace_id`; with `counted`, its statements
/// are counted and observed in `db_statements_per_request` when it is done.
pub async fn in_request<F: Future>(trace_id: Option<String>, counted: bool, work: F) -> F::Output {
    let scope = RequestScope {
        trace_id,
        statements: Cell::new(counted.then_some(0)),
    };
    REQUEST
        .scope(scope, async move {
            let output = work.await;
            if let Some(count) = REQUEST.with(|request| request.statements.get()) {
                crate::metrics::get().statements_per_request(count);
            }
            output
        })
        .await
}

/// Leaves the current request out of the statement count (a WebSocket handshake: the
/// connection's operations run for as long as it lasts).
pub fn uncounted() {
    let _ = REQUEST.try_with(|request| request.statements.set(None));
}

/// The trace id of the request being served, for `INTERNAL_SERVER_ERROR`'s extensions (see
/// [`request_trace`]).
pub fn current_trace_id() -> Option<String> {
    REQUEST
        .try_with(|request| request.trace_id.clone())
        .ok()
        .flatten()
}

/// The `traceparent` of the current span, for calls taskql makes and for the response's
/// `traceresponse`; `None` when spans are not exported.
pub fn current_traceparent() -> Option<String> {
    if !tracing_enabled() {
        return None;
    }
    let context = tracing::Span::current().context();
    let span = context.span();
    let ids = span.span_context();
    ids.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            ids.trace_id(),
            ids.span_id(),
            ids.trace_flags().to_u8()
        )
    })
}

/// One SQL statement as an OpenTelemetry span under the current one, timed by sqlx's own
/// measurement (the event comes when the statement is done). Statements outside any traced
/// work (migrations at start-up, the change listener) would each be a trace of their own,
/// and are left out.
fn statement_span(tracer: &SdkTracer, fields: &Fields, seconds: f64) {
    let parent = opentelemetry::Context::current();
    if !parent.span().span_context().is_valid() {
        return;
    }
    let end = SystemTime::now();
    let start = end
        .checked_sub(Duration::from_secs_f64(seconds.max(0.0)))
        .unwrap_or(end);
    let text = fields
        .statement
        .clone()
        .filter(|text| !text.is_empty())
        .or_else(|| fields.summary.clone())
        .unwrap_or_default();
    let name = fields
        .summary
        .clone()
        .unwrap_or_else(|| "statement".to_owned());
    let mut span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .with_start_time(start)
        .with_attributes([
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.query.text", text),
        ])
        .start_with_context(tracer, &parent);
    span.end_with_timestamp(end);
}

/// Counts each request's statements and times each statement.
struct Statements;

/// Reads the fields the statement layer needs.
#[derive(Default)]
struct Fields {
    elapsed_secs: Option<f64>,
    acquired_after_secs: Option<f64>,
    summary: Option<String>,
    statement: Option<String>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" if tracing_enabled() => self.summary = Some(value.to_owned()),
            "db.statement" if tracing_enabled() => self.statement = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        match field.name() {
            "elapsed_secs" => self.elapsed_secs = Some(value),
            "acquired_after_secs" => self.acquired_after_secs = Some(value),
            _ => {}
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

// No span lookups: the count lives in the request's task-local scope.
impl<S: Subscriber> Layer<S> for Statements {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if event.metadata().target() == ACQUIRE_TARGET {
            if let Some(seconds) = fields.acquired_after_secs {
                crate::metrics::get().pool_acquired(seconds);
            }
            return;
        }
        if let Some(seconds) = fields.elapsed_secs {
            crate::metrics::get().statement(seconds);
            if let Some(tracer) = TRACER.get() {
                statement_span(tracer, &fields, seconds);
            }
        }
        let _ = REQUEST.try_with(|request| {
            if let Some(count) = request.statements.get() {
                request.statements.set(Some(count + 1));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a request span and an execution span are made under `RUST_LOG` = `directives`.
    fn spans_made(directives: &str) -> (bool, bool) {
        let subscriber = tracing_subscriber::registry().with(layers(
            LogFormat::Json,
            EnvFilter::new(directives),
            None,
        ));
        tracing::subscriber::with_default(subscriber, || {
            (
                !tracing::info_span!(target: "taskql::http", "request").is_disabled(),
                !tracing::debug_span!(target: "taskql::graphql", "graphql.execute").is_disabled(),
            )
        })
    }

    #[test]
    fn spans_are_made_only_when_a_log_line_or_a_trace_records_them() {
        assert_eq!(spans_made("warn"), (false, false), "nothing records them");
        assert_eq!(spans_made("info"), (true, false), "the request's log lines");
        assert_eq!(spans_made("debug"), (true, true));
    }

    #[tokio::test]
    async fn a_request_counts_its_statements_and_keeps_its_trace_id() {
        let counted = in_request(Some("abc".to_owned()), true, async {
            assert_eq!(current_trace_id().as_deref(), Some("abc"));
            uncounted();
            REQUEST.with(|request| request.statements.get())
        })
        .await;
        assert_eq!(counted, None, "a WebSocket handshake leaves the count");
        assert_eq!(current_trace_id(), None, "outside any request");
    }
}
