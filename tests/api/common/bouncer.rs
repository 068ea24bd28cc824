//! PgBouncer in transaction mode in front of the test server, as Neon's pooled endpoint is:
//! every transaction may run on another server connection, and fewer server connections than
//! taskql has clients, so they are shared. Started from the binary `scripts/pgbouncer`
//! provides (`PGBOUNCER`), or one on `PATH`; as the `postgres` user when the tests run as
//! root, since PgBouncer refuses to run as root.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{APP_ROLE, OWNER_ROLE, server_url};

pub struct Bouncer {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl Bouncer {
    /// Starts PgBouncer, or says why it cannot: the caller skips with that reason.
    pub fn start() -> Result<Self, String> {
        let bin = super::find_program("PGBOUNCER", "pgbouncer")
            .ok_or("no pgbouncer (scripts/pgbouncer installs one; set PGBOUNCER to its path)")?;
        let server = server_url();
        let host_port = server
            .rsplit_once('@')
            .map_or(server.as_str(), |(_, rest)| rest)
            .trim_end_matches('/');
        let (host, port) = host_port.split_once(':').unwrap_or((host_port, "5432"));
        let dir = std::env::temp_dir().join(format!(
            "taskql-pgbouncer-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("temporary directory: {e}"))?;
        let listen = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let users: String = [APP_ROLE, OWNER_ROLE, "postgres"]
            .iter()
            .map(|role| format!("\"{role}\" \"\"\n"))
            .collect();
        std::fs::write(dir.join("users.txt"), users).map_err(|e| e.to_string())?;
        // No `ignore_startup_parameters`: taskql must connect with what a stock PgBouncer
        // accepts. `max_prepared_statements` is what lets sqlx's named statements work.
        let ini = format!(
            "[databases]\n* = host={host} port={port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {listen}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/users.txt\n\
             pool_mode = transaction\ndefault_pool_size = 3\nmax_client_conn = 500\n\
             max_prepared_statements = 200\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).map_err(|e| e.to_string())?;
        let as_root = super::cluster::is_root();
        if as_root {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err("could not hand the PgBouncer directory to the postgres user".into());
            }
        }
        let child = super::cluster::command_as_postgres(&bin, as_root)
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", bin.display()))?;
        let mut bouncer = Self {
            child,
            dir,
            port: listen,
        };
        // Polls for the port to accept, a readiness check bounded in time.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", listen)).is_err() {
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                return Err(format!("pgbouncer exited with {status}: {}", bouncer.log()));
            }
            if Instant::now() > deadline {
                return Err(format!("pgbouncer did not listen: {}", bouncer.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(bouncer)
    }

    /// The pooled URL of `database` as `role`.
    pub fn url(&self, role: &str, database: &str) -> String {
        format!("postgres://{role}@127.0.0.1:{}/{database}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        // The child may be `runuser`, which cannot pass on a SIGKILL: signal PgBouncer itself
        // (SIGINT: stop at once), then reap.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = Command::new("kill").args(["-INT", pid.trim()]).status();
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
