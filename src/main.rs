//! The `taskql` binary: reads the command line and settings, runs the command, and exits
//! with its code. Everything else is the library's (`taskql::cli`), so tests drive the same
//! code.

use std::process::ExitCode;

use taskql::cli::{self, EXIT_CONFIG, Unread};

/// mimalloc instead of the system allocator: a request allocates and frees many small
/// objects across threads, and glibc's malloc and free were a fifth of the server's CPU per
/// request in a profile of the benchmark (README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A missing .env is the normal case in production; a broken one is worth stopping for.
    // Read first, so that its variables are part of the environment the settings come from.
    if let Err(err) = dotenvy::dotenv()
        && !err.not_found()
    {
        eprintln!("taskql: could not read .env: {err}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match cli::parse(std::env::args_os().collect()) {
        Ok(command) => command.run(),
        Err(Unread::Setting(err)) => {
            eprintln!("taskql: {err}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Unread::Clap(err)) => err.exit(),
    }
}
