//! The command line: `taskql [serve | migrate | backup | restore | schema | token]`, how it is
//! read (settings included, so a bad one stops with one line and exit code 78), and what each
//! command does.

use std::{ffi::OsString, path::Path, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand, error::ErrorKind};

use crate::{
    app::{App, shutdown_signal},
    auth::{AuthMode, dev},
    config::{self, ConfigError},
    db::{self, local::LocalCluster},
    settings::{Config, Settings},
    telemetry,
};

/// Exit code for an unusable configuration (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// taskql: a GraphQL API for a multi-user task application, on PostgreSQL.
///
/// Settings come from environment variables (and a .env file in the working directory):
/// `taskql serve --help` lists them all, with their defaults.
#[derive(Debug, Parser)]
#[command(name = "taskql", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "one command is made per process; its settings are read once"
)]
pub enum Command {
    /// Run the GraphQL server (the default): create the database if missing and apply
    /// migrations (unless MIGRATE_ON_START=false), then serve HTTP on HOST:PORT until SIGINT
    /// or SIGTERM.
    Serve {
        #[command(flatten)]
        settings: Settings,
    },
    /// Create the database if missing, apply pending migrations, and exit: the release step,
    /// run as the schema's owner (DATABASE_MIGRATION_URL, else DATABASE_URL) over a direct
    /// connection.
    Migrate {
        #[command(flatten)]
        settings: Settings,
    },
    /// Write a consistent logical backup of taskql's data (users, tasks, idempotency keys,
    /// tombstones).
    ///
    /// Reads every row in one snapshot through DATABASE_MIGRATION_URL (else DATABASE_URL);
    /// a role with SELECT on the tables is enough. The file is written under a temporary
    /// name, readable by its owner alone, and renamed when complete.
    Backup {
        /// Where to write the backup (`-` for standard output).
        #[arg(long, short)]
        output: std::path::PathBuf,
        #[command(flatten)]
        settings: Settings,
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
        #[command(flatten)]
        settings: Settings,
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
        #[arg(long, default_value = "60m", value_parser = config::parse_duration)]
        ttl: Duration,
        #[command(flatten)]
        settings: Settings,
    },
}

/// Why the command line could not be read.
#[derive(Debug)]
pub enum Unread {
    /// A setting's value is unusable: one line, exit code 78.
    Setting(ConfigError),
    /// Anything else clap reports (help, version, a wrong argument): clap prints it.
    Clap(clap::Error),
}

/// Reads the command line and the settings; no command means `serve`.
pub fn parse(args: Vec<OsString>) -> Result<Command, Unread> {
    let command = config::without_empty_env(Cli::command());
    let matches = command
        .clone()
        .try_get_matches_from(args.clone())
        .map_err(|err| unread(&command, err))?;
    let cli = Cli::from_arg_matches(&matches).map_err(|err| unread(&command, err))?;
    match cli.command {
        Some(command) => Ok(command),
        None => {
            let mut args = args;
            args.truncate(1);
            args.push("serve".into());
            parse(args)
        }
    }
}

fn unread(command: &clap::Command, err: clap::Error) -> Unread {
    match err.kind() {
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            Unread::Setting(config::setting_error(command, &err))
        }
        _ => Unread::Clap(err),
    }
}

impl Command {
    /// Runs the command and says how the process exits.
    pub fn run(self) -> ExitCode {
        let (settings, action) = match self {
            Self::Schema => {
                print!("{}", crate::graphql::sdl());
                return ExitCode::SUCCESS;
            }
            Self::Serve { settings } => (settings, Action::Serve),
            Self::Migrate { settings } => (settings, Action::Migrate),
            Self::Backup { output, settings } => (settings, Action::Backup(output)),
            Self::Restore { input, settings } => (settings, Action::Restore(input)),
            Self::Token {
                sub,
                email,
                name,
                ttl,
                settings,
            } => (
                settings,
                Action::Token {
                    sub,
                    email,
                    name,
                    ttl,
                },
            ),
        };
        let mut config = match settings.into_config() {
            Ok(config) => config,
            Err(err) => {
                eprintln!("taskql: {err}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let telemetry = match telemetry::init(&config.telemetry) {
            Ok(telemetry) => telemetry,
            Err(err) => {
                eprintln!("taskql: {err:#}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("taskql: could not start the async runtime: {err}");
                return ExitCode::FAILURE;
            }
        };
        // Zero setup: a private cluster when no database is configured and none is running.
        // Dropped after the server has stopped and closed its pool, which stops the cluster.
        let _local = if action.uses_database() {
            match runtime.block_on(LocalCluster::start_if_needed(&mut config.database)) {
                Ok(local) => local,
                Err(err) => {
                    // One line, meant for a person at a terminal: what to install or set.
                    eprintln!("taskql: {err:#}");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            None
        };
        let code = match runtime.block_on(action.run(config)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "taskql stopped");
                eprintln!("taskql: {err:#}");
                // A schema whose checks cannot be set up is as unusable as a bad setting.
                if err
                    .downcast_ref::<crate::graphql::pipeline::shape::ShapeError>()
                    .is_some()
                {
                    ExitCode::from(EXIT_CONFIG)
                } else {
                    ExitCode::FAILURE
                }
            }
        };
        // The runtime first (its tasks may still hold spans), then the spans still buffered.
        drop(runtime);
        telemetry.shutdown();
        code
    }
}

/// What a command does once its settings are read.
enum Action {
    Serve,
    Migrate,
    Backup(std::path::PathBuf),
    Restore(std::path::PathBuf),
    Token {
        sub: String,
        email: String,
        name: Option<String>,
        ttl: Duration,
    },
}

impl Action {
    fn uses_database(&self) -> bool {
        !matches!(self, Self::Token { .. })
    }

    async fn run(self, config: Config) -> anyhow::Result<()> {
        match self {
            Self::Serve => App::build(config).await?.run(shutdown_signal()).await,
            Self::Migrate => {
                db::ensure_database(&config.database).await?;
                db::migrate(&config.database.migration_options).await?;
                tracing::info!("migrations applied");
                Ok(())
            }
            Self::Backup(output) => backup(&config, &output).await,
            Self::Restore(input) => {
                db::ensure_database(&config.database).await?;
                let report =
                    db::backup::restore(&config.database.migration_options, &input).await?;
                tracing::info!(%report, "restored and verified");
                Ok(())
            }
            Self::Token {
                sub,
                email,
                name,
                ttl,
            } => {
                let secret = match &config.auth.mode {
                    AuthMode::Development { secret_file } => {
                        dev::load_or_create_secret(secret_file).await?
                    }
                    AuthMode::Secret { secret } => secret.clone(),
                    AuthMode::Jwks { .. } => anyhow::bail!(
                        "AUTH_JWKS_URL is set: tokens come from Better Auth (GET /api/auth/token)"
                    ),
                };
                let request = dev::TokenRequest {
                    sub,
                    email,
                    name,
                    ttl,
                    issuer: config.auth.issuer.clone(),
                    audience: config.auth.audience.clone(),
                };
                println!("{}", dev::mint(&secret, &request)?);
                Ok(())
            }
        }
    }
}

/// `taskql backup`: to a temporary file renamed when complete, so a failed backup never
/// leaves a file under the name asked for.
async fn backup(config: &Config, output: &Path) -> anyhow::Result<()> {
    let options = &config.database.migration_options;
    let report = if output == Path::new("-") {
        let mut stdout = tokio::io::stdout();
        db::backup::backup(options, &mut stdout).await?
    } else {
        let partial = output.with_extension("partial");
        // Every user's data: readable by the owner alone whatever the umask, and created
        // afresh. `create_new` (O_CREAT | O_EXCL) also refuses to follow a symbolic link
        // planted at the name, and a `.partial` left by a backup that is still running (or
        // crashed) is never overwritten.
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .await
            .with_context(|| {
                format!(
                    "could not create {} (if it exists, another backup is running or one \
                     failed; remove it once no backup runs)",
                    partial.display()
                )
            })?;
        let report = match db::backup::backup(options, &mut file).await {
            Ok(report) => report,
            Err(err) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(err);
            }
        };
        file.sync_all().await?;
        tokio::fs::rename(&partial, output)
            .await
            .with_context(|| format!("could not move the backup to {}", output.display()))?;
        report
    };
    tracing::info!(%report, "backup written");
    Ok(())
}
