//! Black-box tests of taskql through its public surfaces: HTTP, the CLI, and the database it
//! leaves behind. One test binary (one link) with a module per area.

mod common;

mod auth;
mod cli;
mod graphql_http;
mod health;
mod migrations;
mod schema_sdl;
mod shutdown;
