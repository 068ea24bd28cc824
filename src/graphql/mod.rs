//! GraphQL, in two halves. Free of axum: tests and the `taskql schema` command build the
//! schema without a server.
//!
//! - [`schema`]: what clients can ask: the types, their resolvers, and the caller they act
//!   for.
//! - [`pipeline`]: what happens to one operation: admission of its document, the document's
//!   plan (once per text), execution under a deadline, and the response.
//! - [`error`]: the error contract both halves raise through (`extensions.code`, masking of
//!   internal errors).
//! - [`settings`]: the limits a document must keep, introspection, cursor keys.
//!
//! [`build_schema`] joins them: the schema with the pipeline's extensions installed.

pub mod error;
pub mod pipeline;
pub mod schema;
pub mod settings;

use std::sync::Arc;

use sqlx::PgPool;

use crate::live::Hub;

pub use schema::{AppSchema, Mutation, Query, Subscription, sdl};
pub use settings::GraphQLConfig;

/// The schema served to clients, with its data and limits.
pub fn build_schema(
    pool: PgPool,
    cursor_keys: schema::cursor::CursorKeys,
    hub: Arc<Hub>,
    limits: &GraphQLConfig,
) -> AppSchema {
    let mut builder = schema::builder()
        .data(pool)
        .data(cursor_keys)
        .data(hub)
        .limit_directives(16);
    if !limits.introspection {
        // "Did you mean …" names the schema's fields to anyone who guesses near them.
        builder = builder.disable_suggestions();
    }
    // 0 switches a limit off (the benchmark harness measures what the limits cost).
    if limits.max_depth > 0 {
        builder = builder.limit_depth(limits.max_depth);
    }
    // The complexity limit is checked by the pipeline (`cost`), per request: it depends on
    // the variables, and async-graphql's validation runs once per document text.
    builder = builder.extension(pipeline::ValidateOnce);
    if crate::telemetry::tracing_enabled() {
        builder = builder.extension(pipeline::traced::ResolverSpans);
    }
    builder.finish()
}
