//! The command line: `taskql [serve | migrate | backup | restore | schema | token]`.

use clap::{Parser, Subcommand};

/// taskql: a GraphQL API for a multi-user task application, on PostgreSQL.
///
/// Configuration comes from environment variables (and a .env file in the working
/// directory); see the README for the full list.
#[derive(Debug, Parser)]
#[command(name = "taskql", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the GraphQL server (the default): create the database if missing and apply
    /// migrations (unless MIGRATE_ON_START=false), then serve HTTP on HOST:PORT until SIGINT
    /// or SIGTERM.
    Serve,
    /// Create the database if missing, apply pending migrations, and exit: the release step,
    /// run as the schema's owner (DATABASE_MIGRATION_URL, else DATABASE_URL) over a direct
    /// connection.
    Migrate,
    /// Write a consistent logical backup of taskql's data (users, tasks, idempotency keys).
    ///
    /// Reads every row in one snapshot through DATABASE_MIGRATION_URL (else DATABASE_URL);
    /// a role with SELECT on the tables is enough. The file is written under a temporary
    /// name and renamed when complete.
    Backup {
        /// Where to write the backup (`-` for standard output).
        #[arg(long, short)]
        output: std::path::PathBuf,
    },
    /// Restore a backup into a fresh database, checking every row against the backup.
    ///
    /// Connects as the schema's owner (DATABASE_MIGRATION_URL, else DATABASE_URL), creates
    /// the database if missing, migrates it to the backup's schema version, loads and
    /// verifies the rows in one transaction, then applies newer migrations.
    Restore {
        /// The backup to restore.
        #[arg(long, short)]
        input: std::path::PathBuf,
    },
    /// Print the GraphQL schema (SDL) to stdout; `schema.graphql` is this output.
    Schema,
    /// Print a signed token for development mode (or secret mode), for the playground or curl.
    ///
    /// In development mode (no AUTH_* variable set) the token is signed with the local
    /// development secret; with AUTH_JWT_SECRET set, with that secret. Better Auth issues the
    /// tokens in JWKS mode, so this command refuses it.
    Token {
        /// The user id (the token's `sub`).
        #[arg(long)]
        sub: String,
        /// The user's email address.
        #[arg(long)]
        email: String,
        /// The user's display name.
        #[arg(long)]
        name: Option<String>,
        /// How long the token is valid, e.g. 15m, 3600s.
        #[arg(long, default_value = "60m", value_parser = crate::config::parse_duration)]
        ttl: std::time::Duration,
    },
}
