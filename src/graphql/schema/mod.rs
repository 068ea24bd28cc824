//! The schema: the types clients can ask for and the resolvers that answer, reaching the
//! database only through `db` and the caller only through [`viewer`].
//!
//! - [`viewer`]: the caller, the only way resolvers reach a `UserId`, and what a request
//!   reads once (the caller's row, counts).
//! - [`user`]: the `User` type, the caller's queries, profile mutations.
//! - [`task`]: the `Task` type, task queries and mutations, statistics.
//! - [`subscription`]: `taskChanged`, live changes to the caller's tasks.
//! - [`connection`]: Relay connections: pagination arguments, pages, the probe.
//! - [`cursor`]: opaque keyset cursors, sealed with a server key.
//! - [`inputs`]: filter, order and mutation inputs, parsed into `domain` values.
//! - [`scalars`]: the `DateTime` scalar.

pub mod connection;
pub mod cursor;
pub mod inputs;
pub mod scalars;
pub mod subscription;
pub mod task;
pub mod user;
pub mod viewer;

use async_graphql::{MergedObject, Object, Schema};

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

pub(crate) fn builder() -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query::default(), Mutation::default(), Subscription)
}

/// The schema's SDL, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    // With `@specifiedBy`, so the file matches what introspection reports.
    builder()
        .finish()
        .sdl_with_options(async_graphql::SDLExportOptions::new().include_specified_by())
}
