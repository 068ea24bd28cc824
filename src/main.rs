//! The `taskql` binary: parses the command line and configuration, starts logging, and
//! hands over to the library. Kept thin so tests drive the same code through `taskql::app`.

use std::process::ExitCode;

use clap::Parser as _;
use taskql::{
    app::{App, shutdown_signal},
    auth::dev,
    cli::{Cli, Command},
    config::{AuthMode, Config},
    db::{self, local::LocalCluster},
    telemetry,
};

/// mimalloc instead of the system allocator: a request allocates and frees many small
/// objects across threads, and glibc's malloc and free were a fifth of the server's CPU per
/// request in a profile of the benchmark (README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for an unusable configuration (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A missing .env is the normal case in production; a broken one is worth stopping for.
    if let Err(err) = dotenvy::dotenv()
        && !err.not_found()
    {
        eprintln!("taskql: could not read .env: {err}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Schema = command {
        print!("{}", taskql::graphql::sdl());
        return ExitCode::SUCCESS;
    }
    let mut config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("taskql: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let telemetry = match telemetry::init(config.log_format, &config.observability) {
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
    let _local = match &command {
        Command::Serve | Command::Migrate | Command::Backup { .. } | Command::Restore { .. } => {
            match runtime.block_on(LocalCluster::start_if_needed(&mut config.database)) {
                Ok(local) => local,
                Err(err) => {
                    // One line, meant for a person at a terminal: what to install or set.
                    eprintln!("taskql: {err:#}");
                    return ExitCode::FAILURE;
                }
            }
        }
        Command::Schema | Command::Token { .. } => None,
    };
    let code = match runtime.block_on(run(command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "taskql stopped");
            eprintln!("taskql: {err:#}");
            // A schema whose checks cannot be set up is as unusable as a bad setting.
            if err
                .downcast_ref::<taskql::graphql::shape::ShapeError>()
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

/// `taskql backup`: to a temporary file renamed when complete, so a failed backup never
/// leaves a file under the name asked for.
async fn backup(config: &Config, output: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let options = &config.database.migration_options;
    let report = if output == std::path::Path::new("-") {
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
                    "could not create {} (if it exists, another backup is running or one                      failed; remove it once no backup runs)",
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

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => App::build(config).await?.run(shutdown_signal()).await,
        Command::Migrate => {
            let database = &config.database;
            db::ensure_database(database).await?;
            db::migrate(&database.migration_options).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Backup { output } => backup(&config, &output).await,
        Command::Restore { input } => {
            let database = &config.database;
            db::ensure_database(database).await?;
            let report = db::backup::restore(&database.migration_options, &input).await?;
            tracing::info!(%report, "restored and verified");
            Ok(())
        }
        Command::Token {
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
        Command::Schema => {
            print!("{}", taskql::graphql::sdl());
            Ok(())
        }
    }
}
