//! taskql: a GraphQL API for a multi-user task application, on PostgreSQL.
//!
//! Requests flow one way: HTTP → GraphQL → database. Nothing below imports from above.
//!
//! - [`config`]: every setting, its environment variable, default and validation.
//! - [`telemetry`]: the logging subscriber (and traces).
//! - [`metrics`]: what the process counts, exposed at `/metrics`.
//! - [`app`]: start-up (database, migrations, verifier, listener) and graceful shutdown.
//! - [`http`]: axum routes and middleware; GraphQL over HTTP; the GraphiQL playground.
//! - [`graphql`]: the schema, the operation pipeline, the error contract. No axum types.
//! - [`auth`]: token verification (JWKS, HS256, development mode). No HTTP, no GraphQL.
//! - [`live`]: task changes announced by PostgreSQL, fanned out to this instance's subscribers.
//! - [`domain`]: validated task values, filters and orders.
//! - [`db`]: the pool, migrations, and every SQL statement.
//! - [`error`]: the application error type.
//! - [`cli`]: the command line.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod http;
pub mod live;
pub mod metrics;
pub mod telemetry;
