//! taskql: a GraphQL API for a multi-user task application, on PostgreSQL.
//!
//! Data flows one way: `main` → [`cli`] → [`app`] → [`http`] → [`graphql`] → [`live`] →
//! [`db`] → [`auth`] → [`domain`], each importing only rooms after it; [`config`],
//! [`error`], [`metrics`] and [`telemetry`] are the ground floor every room may use. Nothing
//! below `http` and `graphql` imports axum or async-graphql, and `db` takes a `UserId` only
//! `auth` can mint.
//!
//! - [`settings`]: every setting, gathered from the rooms that declare them, and the rules
//!   that span rooms.
//! - [`config`]: what settings are made of (value parsers, reading, the error they make).
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
//! - [`cli`]: the command line, and what each command does.

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
pub mod settings;
pub mod telemetry;
