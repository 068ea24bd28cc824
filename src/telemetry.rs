//! Logging: one `tracing` subscriber for the process, pretty for a terminal and JSON lines
//! otherwise. Logs go to stderr, so commands that print results (`taskql schema`, `taskql
//! token`) keep stdout clean. Beside the log output, a layer counts the SQL statements each
//! request runs (sqlx reports each one as an event), for the metrics.
//!
//! What must never be logged: tokens, secrets, the database password. The request span
//! (see `http::request_span`) leaves out query strings for the same reason.

use tracing::{Subscriber, field::Field, span};
use tracing_subscriber::{
    EnvFilter, Layer, filter::filter_fn, fmt, layer::Context, prelude::*, registry::LookupSpan,
};

use crate::config::LogFormat;

/// The filter when `RUST_LOG` is unset: our own info logs, one line per request, and only
/// warnings from the libraries.
const DEFAULT_FILTER: &str = "info,sqlx=warn,tower_http=info,async_graphql=warn";

/// The target sqlx reports every statement under, with its text and timing.
const STATEMENT_TARGET: &str = "sqlx::query";
/// The name of the span every HTTP request runs in (`http::request_span`).
pub const REQUEST_SPAN: &str = "request";

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Each layer filters for itself: the log's filter must not hide from the statement count
    // the sqlx events it does not print.
    let statements = Statements.with_filter(filter_fn(|meta| {
        (meta.is_span() && meta.name() == REQUEST_SPAN)
            || (meta.is_event() && meta.target() == STATEMENT_TARGET)
    }));
    let registry = tracing_subscriber::registry().with(statements);
    match format {
        LogFormat::Pretty => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .compact()
                    .with_filter(filter),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(true)
                    // The whole chain, so a line logged in a nested span (a db function's)
                    // still carries the request id of the request span above it.
                    .with_span_list(true)
                    .with_filter(filter),
            )
            .init(),
    }
}

/// Counts statements per request span and times each statement.
struct Statements;

/// The statements a request has run so far; `counted` is false for requests that are no
/// GraphQL operations over HTTP (probes, assets, WebSocket upgrades).
struct Count {
    statements: u64,
    counted: bool,
}

/// Reads the fields the statement layer needs.
#[derive(Default)]
struct Fields {
    path: Option<String>,
    websocket: bool,
    elapsed_secs: Option<f64>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "path" {
            self.path = Some(value.to_owned());
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "websocket" {
            self.websocket = value;
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = Some(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%path` arrives as a Display value, which reaches visitors as debug.
        if field.name() == "path" {
            self.path = Some(format!("{value:?}"));
        }
    }
}

impl<S> Layer<S> for Statements
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        span.extensions_mut().insert(Count {
            statements: 0,
            counted: fields.path.as_deref() == Some("/graphql"),
        });
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        if fields.websocket
            && let Some(span) = ctx.span(id)
            && let Some(count) = span.extensions_mut().get_mut::<Count>()
        {
            count.counted = false;
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(seconds) = fields.elapsed_secs {
            crate::metrics::get().statement(seconds);
        }
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            if let Some(count) = span.extensions_mut().get_mut::<Count>() {
                count.statements += 1;
                return;
            }
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if let Some(count) = span.extensions().get::<Count>()
            && count.counted
        {
            crate::metrics::get().statements_per_request(count.statements);
        }
    }
}
