//! Debian's real Prometheus server, scraping a taskql process every second, and its query API.
//! `scripts/test` installs it (package `prometheus`); without it the tests that need it are
//! skipped with the reason printed.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    pub base: String,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`), or says why it cannot.
    pub async fn start(target: &str) -> Result<Self, String> {
        let bin = super::find_program("PROMETHEUS", "prometheus").ok_or(
            "no prometheus binary (Debian's package `prometheus`; scripts/test installs it)",
        )?;
        let dir = std::env::temp_dir().join(format!(
            "taskql-prometheus-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: taskql\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).map_err(|e| e.to_string())?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).map_err(|e| e.to_string())?;
        let child = Command::new(&bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", bin.display()))?;
        let prometheus = Self {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client
                .get(format!("{}/-/ready", prometheus.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(prometheus);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Prometheus did not become ready: {}",
                    prometheus.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The value of an instant query that yields one series (`None`: no series).
    pub async fn value(&self, query: &str) -> Option<f64> {
        let body: Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", query)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let result = body["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "{query} matched several series: {body}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits (for at most 30 s, polling the query API) until Prometheus has scraped a value
    /// of `query` equal to `expected`: scrapes come every second, so the values a test
    /// caused arrive within a couple of them.
    pub async fn wait_for(&self, query: &str, expected: f64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = self.value(query).await;
            if seen == Some(expected) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{query}: Prometheus has {seen:?}, expected {expected}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The scrape target's health and last error, as Prometheus reports them.
    pub async fn target(&self) -> (String, String) {
        let body: Value = reqwest::get(format!("{}/api/v1/targets", self.base))
            .await
            .expect("targets")
            .json()
            .await
            .expect("json");
        let target = &body["data"]["activeTargets"][0];
        (
            target["health"].as_str().unwrap_or_default().to_owned(),
            target["lastError"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
