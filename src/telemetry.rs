//! Logging: one `tracing` subscriber for the process, pretty for a terminal and JSON lines
//! otherwise. Logs go to stderr, so commands that print results (`taskql schema`, `taskql
//! token`) keep stdout clean.
//!
//! What must never be logged: tokens, secrets, the database password. The request span
//! (see `http::request_span`) leaves out query strings for the same reason.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// The filter when `RUST_LOG` is unset: our own info logs, one line per request, and only
/// warnings from the libraries.
const DEFAULT_FILTER: &str = "info,sqlx=warn,tower_http=info,async_graphql=warn";

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Pretty => registry
            .with(fmt::layer().with_writer(std::io::stderr).compact())
            .init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(true)
                    // The whole chain, so a line logged in a nested span (a db function's)
                    // still carries the request id of the request span above it.
                    .with_span_list(true),
            )
            .init(),
    }
}
