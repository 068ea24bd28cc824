//! The GraphQL schema and everything needed to run operations against it. Free of axum:
//! tests and the `taskql schema` command build the schema without a server.
//!
//! - [`pipeline`]: one operation from request parameters to an [`pipeline::Outcome`].
//! - [`plan`]: what is learned of a document once per text, shared by every request.
//! - [`nesting`]: the bound on how deeply a document or its variables nest, checked first.
//! - [`document`]: syntax-level checks run before execution (operation, aliases, ...).
//! - [`validate`]: the validation rules async-graphql misses.
//! - [`cost`]: the database statements and fragment expansion a document may cost.
//! - [`nulls`]: the spec's null rules, applied to what async-graphql returns.
//! - [`shape`]: the schema's types as data, for the three above.
//! - [`apq`]: automatic persisted queries.
//! - [`error`]: the error contract (`extensions.code`, masking of internal errors).
//! - [`viewer`]: the caller, the only way resolvers reach a `UserId`, and what a request
//!   reads once (the caller's row, counts).
//! - [`user`]: the `User` type, the caller's queries, profile mutations.
//! - [`task`]: the `Task` type, task queries and mutations, statistics.
//! - [`subscription`]: `taskChanged`, live changes to the caller's tasks.
//! - [`connection`]: Relay connections: pagination arguments, pages, the probe.
//! - [`cursor`]: opaque keyset cursors, sealed with a server key.
//! - [`inputs`]: filter, order and mutation inputs, parsed into `domain` values.
//! - [`scalars`]: the `DateTime` scalar.
//! - [`traced`]: resolver spans, installed only when traces are exported.
//! - [`settings`]: the limits a document must keep, introspection, cursor keys.

pub mod apq;
pub mod connection;
pub mod cost;
pub mod cursor;
pub mod document;
pub mod error;
pub mod inputs;
pub mod nesting;
pub mod nulls;
pub mod pipeline;
pub mod plan;
pub mod scalars;
pub mod settings;
pub mod shape;
pub mod subscription;
pub mod task;
pub mod traced;
pub mod user;
pub mod validate;
pub mod viewer;

use std::sync::Arc;

use async_graphql::{MergedObject, Object, Schema};
use sqlx::PgPool;

use crate::live::Hub;

pub use settings::GraphQLConfig;

pub use subscription::Subscription;

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// The root of every read.
#[derive(MergedObject, Default)]
pub struct Query(MetaQuery, user::UserQuery, task::TaskQuery);

/// The root of every write. Each mutation is one database transaction.
#[derive(MergedObject, Default)]
pub struct Mutation(task::TaskMutation, user::UserMutation);

/// Facts about the server itself.
#[derive(Default)]
pub struct MetaQuery;

#[Object]
impl MetaQuery {
    /// The version of the taskql server answering. Needs no token.
    async fn api_version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }
}

fn builder() -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query::default(), Mutation::default(), Subscription)
}

/// The schema served to clients, with its data and limits.
pub fn build_schema(
    pool: PgPool,
    cursor_keys: cursor::CursorKeys,
    hub: Arc<Hub>,
    limits: &GraphQLConfig,
) -> AppSchema {
    let mut builder = builder()
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
        builder = builder.extension(traced::ResolverSpans);
    }
    builder.finish()
}

/// The schema's SDL, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    // With `@specifiedBy`, so the file matches what introspection reports.
    builder()
        .finish()
        .sdl_with_options(async_graphql::SDLExportOptions::new().include_specified_by())
}
