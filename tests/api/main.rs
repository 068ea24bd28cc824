//! Black-box tests of taskql through its public surfaces: HTTP, the CLI, and the database it
//! leaves behind. One test binary (one link) with a module per area.

// Test modules share helpers with `pub`; nothing here is a library API.
#![allow(unreachable_pub)]

mod common;

mod addresses;
mod auth;
mod backup;
mod cli;
mod downloads;
mod faults;
mod graphql_http;
mod health;
mod hostile;
mod instances;
mod isolation;
mod listing;
mod metrics;
mod migrations;
mod plans;
mod pooler;
mod privileges;
mod schema_sdl;
mod shutdown;
mod sockets;
mod spec;
mod statements;
mod subscriptions;
mod sync;
mod tasks;
mod traces;
mod zero_setup;
