//! Black-box tests of taskql through its public surfaces: HTTP, the CLI, and the database it
//! leaves behind. One test binary (one link) with a module per feature: the file name says
//! where a feature is tested.

// Test modules share helpers with `pub`; nothing here is a library API.
#![allow(unreachable_pub)]

mod common;

mod backup;
mod cli;
mod cursors;
mod database_restart;
mod export;
mod filters;
mod graphql_http;
mod health;
mod input_rules;
mod instances;
mod isolation;
mod jwks;
mod limits;
mod metrics;
mod migrations;
mod overload;
mod pagination;
mod plans;
mod pooler;
mod privileges;
mod profile;
mod rate_limits;
mod schema_sdl;
mod shutdown;
mod spec_conformance;
mod statements;
mod subscriptions;
mod sync;
mod tasks;
mod tokens;
mod traces;
mod trusted_documents;
mod warm_documents;
mod websocket;
mod zero_setup;
