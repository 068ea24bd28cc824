//! The GraphQL schema and everything needed to run operations against it. Free of axum:
//! tests and the `taskql schema` command build the schema without a server.
//!
//! - [`pipeline`]: one operation from request parameters to an [`pipeline::Outcome`].
//! - [`document`]: syntax-level checks run before execution (operation, aliases, ...).
//! - [`apq`]: automatic persisted queries.
//! - [`error`]: the error contract (`extensions.code`, masking of internal errors).
//! - [`viewer`]: the caller, and the only way resolvers reach a `UserId`.
//! - [`user`]: the `User` type and the caller's queries.

pub mod apq;
pub mod document;
pub mod error;
pub mod pipeline;
pub mod user;
pub mod viewer;

use async_graphql::{EmptyMutation, EmptySubscription, MergedObject, Object, Schema};
use sqlx::PgPool;

use crate::config::GraphQLConfig;

pub type AppSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// The root of every read.
#[derive(MergedObject, Default)]
pub struct Query(MetaQuery, user::UserQuery);

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

fn builder() -> async_graphql::SchemaBuilder<Query, EmptyMutation, EmptySubscription> {
    Schema::build(Query::default(), EmptyMutation, EmptySubscription)
}

/// The schema served to clients, with its data and limits.
pub fn build_schema(pool: PgPool, limits: &GraphQLConfig) -> AppSchema {
    builder()
        .data(pool)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .limit_directives(16)
        .finish()
}

/// The schema's SDL, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}
