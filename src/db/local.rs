//! A private PostgreSQL cluster for a first run with zero setup: when `DATABASE_URL` is
//! unset and nothing usable answers at the default address, `serve` finds the installed
//! server binaries, keeps a cluster of its own in `LOCAL_POSTGRES_DIR` (created once, kept
//! between runs), and stops it again when the server stops.
//!
//! The cluster listens on no TCP port at all: only on a Unix socket inside its data
//! directory, with the socket's permissions 0700, so only the user who owns the directory
//! (and root) can connect; that is what makes its `trust` authentication safe. PostgreSQL
//! refuses to run as root, so under root the cluster runs as the `postgres` user.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};
use sqlx::{ConnectOptions as _, Connection as _, postgres::PgConnectOptions};

use super::settings::{DatabaseConfig, LocalPostgres};

/// Whether this process runs as root: `/proc/self` belongs to the effective user.
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Where a private cluster keeps its data unless `LOCAL_POSTGRES_DIR` says otherwise: the
/// user's data directory (XDG), or `/var/lib/taskql` for root, since PostgreSQL then runs as
/// the `postgres` user, who cannot enter root's home.
pub fn default_dir() -> PathBuf {
    if running_as_root() {
        return PathBuf::from("/var/lib/taskql/postgres");
    }
    let set = |var: &str| std::env::var_os(var).filter(|value| !value.is_empty());
    set("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("taskql/postgres")
}

/// The longest a Unix socket path may be (`sun_path`, with its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;
/// The port only names the socket file (`.s.PGSQL.5432`); nothing listens on it.
const PORT: u16 = 5432;
/// How long the default address may take to answer before it counts as not running.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A running private cluster, stopped when dropped.
#[derive(Debug)]
pub struct LocalCluster {
    bin: PathBuf,
    dir: PathBuf,
    /// `Some("postgres")` when taskql runs as root.
    run_as: Option<&'static str>,
}

impl LocalCluster {
    /// Starts the private cluster if this configuration calls for one, and points every
    /// database URL of `config` at it. `Ok(None)`: use the configured database.
    pub async fn start_if_needed(config: &mut DatabaseConfig) -> anyhow::Result<Option<Self>> {
        if !config.url_is_default || config.local == LocalPostgres::Never {
            return Ok(None);
        }
        if config.local == LocalPostgres::Auto && default_answers(&config.connect_options).await {
            return Ok(None);
        }
        let cluster = tokio::task::spawn_blocking({
            let dir = config.local_dir.clone();
            // The process's own PATH: where the server binaries are looked for first.
            let search_path: Vec<PathBuf> = std::env::var_os("PATH")
                .map(|path| std::env::split_paths(&path).collect())
                .unwrap_or_default();
            move || Self::start(dir, &search_path)
        })
        .await
        .context("the task starting the private PostgreSQL cluster failed")??;
        let options = cluster.options(&config.connect_options);
        config.connect_options = options.clone();
        config.migration_options = options.clone();
        config.listen_options = options;
        Ok(Some(cluster))
    }

    fn start(dir: PathBuf, search_path: &[PathBuf]) -> anyhow::Result<Self> {
        let bin = server_binaries(search_path).ok_or_else(|| {
            anyhow::anyhow!(
                "PostgreSQL is not running at 127.0.0.1:5432 and no PostgreSQL server was found \
                 (PATH, /usr/lib/postgresql/*/bin, Homebrew): install it (Debian/Ubuntu: `apt \
                 install postgresql`; macOS: `brew install postgresql@17`) or set DATABASE_URL"
            )
        })?;
        let socket = dir.join(format!(".s.PGSQL.{PORT}"));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "LOCAL_POSTGRES_DIR {} is too long for a Unix socket path; choose a shorter one",
                dir.display()
            );
        }
        let run_as = running_as_root().then_some("postgres");
        let cluster = Self { bin, dir, run_as };
        cluster.initialise()?;
        if cluster.pg_ctl(&["status"]).is_ok() {
            // A previous run was killed before it could stop the cluster: adopt it.
            tracing::info!(data = %cluster.dir.display(), "using the private PostgreSQL cluster that is already running");
        } else {
            let log = cluster.dir.join("server.log");
            cluster
                .pg_ctl(&["-l", &log.display().to_string(), "-w", "-t", "60", "start"])
                .with_context(|| {
                    format!(
                        "could not start the private PostgreSQL cluster (its log: {})",
                        log.display()
                    )
                })?;
        }
        tracing::info!(
            data = %cluster.dir.display(),
            server = %cluster.bin.display(),
            "DATABASE_URL is not set and PostgreSQL is not running at 127.0.0.1:5432: using a \
             private cluster (kept between runs; delete the directory to start afresh, set \
             DATABASE_URL to use your own server)"
        );
        Ok(cluster)
    }

    /// Creates the cluster the first time: `initdb`, then settings that keep it private.
    fn initialise(&self) -> anyhow::Result<()> {
        if self.dir.join("PG_VERSION").is_file() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("could not create {}", self.dir.display()))?;
        if let Some(user) = self.run_as {
            let status = Command::new("chown")
                .args([&format!("{user}:{user}")])
                .arg(&self.dir)
                .status()
                .context("could not run chown")?;
            if !status.success() {
                bail!(
                    "could not hand {} to the {user} user (PostgreSQL does not run as root)",
                    self.dir.display()
                );
            }
        }
        tracing::info!(data = %self.dir.display(), "creating a private PostgreSQL cluster");
        let dir = self.dir.display().to_string();
        self.run(
            "initdb",
            &[
                "-D",
                &dir,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let settings = format!(
            "\n# taskql's private cluster: a Unix socket only, for its owner only.\n\
             listen_addresses = ''\n\
             unix_socket_directories = '{}'\n\
             unix_socket_permissions = 0700\n",
            dir.replace('\'', "''")
        );
        let conf = self.dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)
            .with_context(|| format!("could not read {}", conf.display()))?;
        text.push_str(&settings);
        std::fs::write(&conf, text).with_context(|| format!("could not write {}", conf.display()))
    }

    /// The connection to the cluster: the default URL's database, over the socket.
    fn options(&self, default: &PgConnectOptions) -> PgConnectOptions {
        default
            .clone()
            .socket(&self.dir)
            .port(PORT)
            .username("postgres")
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let dir = self.dir.display().to_string();
        let mut all = vec!["-D", dir.as_str()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = self.bin.join(program);
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&path);
                command
            }
            None => Command::new(&path),
        };
        let output = command
            .args(args)
            // The server's working directory must be one its user may enter.
            .current_dir(&self.dir)
            .output()
            .with_context(|| format!("could not run {}", path.display()))?;
        if output.status.success() {
            return Ok(());
        }
        bail!(
            "{program} failed: {}{}",
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // `fast`: sessions are ended, committed work is kept, the next start needs no
        // recovery. Called after the server has closed its pool.
        match self.pg_ctl(&["-m", "fast", "-w", "stop"]) {
            Ok(()) => {
                tracing::info!(data = %self.dir.display(), "stopped the private PostgreSQL cluster")
            }
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "could not stop the private PostgreSQL cluster")
            }
        }
    }
}

/// Whether something usable answers at the default address. Connection refused, a timeout,
/// or a server that wants a password we do not have all mean no: the newcomer did not ask
/// for that server, so a private one serves them better than an error. Any other answer (a
/// missing database, which `ensure_database` creates) means yes.
async fn default_answers(options: &PgConnectOptions) -> bool {
    match tokio::time::timeout(PROBE_TIMEOUT, options.connect()).await {
        Ok(Ok(connection)) => {
            connection.close().await.ok();
            true
        }
        Ok(Err(sqlx::Error::Database(err))) => {
            // 28000: no pg_hba.conf entry / invalid authorization; 28P01: password failed.
            !matches!(err.code().as_deref(), Some("28000" | "28P01"))
        }
        Ok(Err(sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut)) | Err(_) => {
            false
        }
        // A protocol error or the like: something answers there; let start-up report it.
        Ok(Err(_)) => true,
    }
}

/// The first directory holding `initdb`, `pg_ctl` and `postgres`: on `PATH`, then Debian's
/// `/usr/lib/postgresql/<version>/bin` (newest first), then Homebrew's usual prefixes.
fn server_binaries(search_path: &[PathBuf]) -> Option<PathBuf> {
    let has_server = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|program| dir.join(program).is_file())
    };
    let versioned = |parent: &str, prefix: &str| -> Vec<PathBuf> {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(parent)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                let version = name.to_str()?.strip_prefix(prefix)?;
                let major = version.split('.').next()?.parse().ok()?;
                Some((major, entry.path().join("bin")))
            })
            .collect();
        found.sort_by_key(|entry| std::cmp::Reverse(entry.0));
        found.into_iter().map(|(_, bin)| bin).collect()
    };
    search_path
        .iter()
        .cloned()
        .chain(versioned("/usr/lib/postgresql", ""))
        .chain(versioned("/opt/homebrew/opt", "postgresql@"))
        .chain(versioned("/usr/local/opt", "postgresql@"))
        .chain(versioned("/home/linuxbrew/.linuxbrew/opt", "postgresql@"))
        .chain(
            [
                "/opt/homebrew/bin",
                "/usr/local/bin",
                "/home/linuxbrew/.linuxbrew/bin",
            ]
            .map(PathBuf::from),
        )
        .find(|dir| has_server(dir))
}
