//! Logical backups of taskql's data (`taskql backup`) and their restore into a fresh database
//! (`taskql restore`), each checked end to end.
//!
//! A backup is every row of `users`, `tasks`, `task_idempotency_keys` and `task_tombstones`
//! (the change feed's deletions), read with `COPY` in one `REPEATABLE READ READ ONLY`
//! transaction, so the tables are one consistent snapshot (a task never without its user)
//! while writers carry on. The file is text:
//!
//! ```text
//! taskql-backup 1 {"schema_version":6,"taken_at":"…","taskql":"0.1.0"}
//! table users id,email,…
//! <COPY text rows>
//! \.
//! end users {"rows":2,"sha256":"…"}
//! … the other tables …
//! taskql-backup end
//! ```
//!
//! COPY's text format escapes backslashes and newlines, so a row is one line and never `\.`.
//! The digest is over a table's COPY text in primary-key order. A restore migrates the fresh
//! database to the backup's schema version, loads the rows in one transaction with the
//! tables' own triggers off (the timestamps must stay as they were, and a restore is no
//! change to announce), reads each table back with the same COPY and refuses to commit
//! unless every count and digest matches; then it applies the newer migrations, if any. A
//! truncated or edited file is refused, and nothing is half-written. A restore gives every
//! user a new change feed epoch, so clients that followed the database before resync.

use std::path::Path;

use anyhow::{Context as _, bail, ensure};
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use sqlx::{ConnectOptions as _, Connection as _, PgConnection, postgres::PgConnectOptions};
use tokio::io::{AsyncBufReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader};

use super::MIGRATOR;

/// The tables, parents first (the order restores satisfy the foreign keys in), each with the
/// primary key its rows are read in and the schema version it appeared in.
const TABLES: [(&str, &str, i64); 4] = [
    ("users", "id", 0),
    ("tasks", "id", 0),
    ("task_idempotency_keys", "user_id, idempotency_key", 0),
    ("task_tombstones", "user_id, version", 7),
];

/// The schema version from which users carry a change feed epoch (`sync_epoch`).
const EPOCHS_SINCE: i64 = 7;

/// The tables a backup of `schema_version` holds, with their keys.
fn tables(schema_version: i64) -> impl Iterator<Item = (&'static str, &'static str)> {
    TABLES
        .into_iter()
        .filter(move |(_, _, since)| *since <= schema_version)
        .map(|(table, key, _)| (table, key))
}

const MAGIC: &str = "taskql-backup";
const FORMAT: u32 = 1;

/// What a backup's first line says of it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Header {
    schema_version: i64,
    taken_at: String,
    taskql: String,
}

/// What a backup says of one table, after its rows.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableSummary {
    pub rows: u64,
    pub sha256: String,
}

/// What a backup or restore did, table by table.
#[derive(Debug)]
pub struct Report {
    pub schema_version: i64,
    pub tables: Vec<(&'static str, TableSummary)>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "schema version {}", self.schema_version)?;
        for (table, summary) in &self.tables {
            write!(f, ", {table}: {} rows", summary.rows)?;
        }
        Ok(())
    }
}

async fn connect(options: &PgConnectOptions) -> anyhow::Result<PgConnection> {
    options
        .clone()
        .application_name("taskql-backup")
        .connect()
        .await
        .context("could not connect to PostgreSQL")
}

/// The columns a backup carries: all but generated ones, in table order.
async fn columns(conn: &mut PgConnection, table: &str) -> anyhow::Result<Vec<String>> {
    let columns: Vec<String> = sqlx::query_scalar(
        "select column_name::text from information_schema.columns
         where table_schema = current_schema() and table_name = $1 and is_generated = 'NEVER'
         order by ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .with_context(|| format!("could not read the columns of {table}"))?;
    ensure!(!columns.is_empty(), "the table {table} does not exist");
    Ok(columns)
}

fn copy_out_statement(table: &str, columns: &[String], key: &str) -> String {
    format!(
        "copy (select {} from {table} order by {key}) to stdout",
        columns.join(", ")
    )
}

/// Streams one table's COPY text to `out` (when given), counting and hashing it.
async fn copy_out(
    conn: &mut PgConnection,
    statement: &str,
    mut out: Option<&mut (dyn AsyncWrite + Unpin + Send)>,
) -> anyhow::Result<TableSummary> {
    let mut stream = conn.copy_out_raw(statement).await?;
    let mut hash = Sha256::new();
    let mut rows = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        rows += lines_in(&chunk);
        hash.update(&chunk);
        if let Some(out) = out.as_deref_mut() {
            out.write_all(&chunk).await?;
        }
    }
    Ok(TableSummary {
        rows,
        sha256: hex(&hash.finalize()),
    })
}

fn lines_in(chunk: &[u8]) -> u64 {
    chunk.iter().filter(|b| **b == b'\n').count() as u64
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The newest migration applied to the connected database.
async fn schema_version(conn: &mut PgConnection) -> anyhow::Result<Option<i64>> {
    let version: Result<Option<i64>, sqlx::Error> =
        sqlx::query_scalar("select max(version) from _sqlx_migrations where success")
            .fetch_one(&mut *conn)
            .await;
    match version {
        Ok(version) => Ok(version),
        Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some("42P01") => Ok(None),
        Err(err) => Err(err).context("could not read the schema version"),
    }
}

/// Writes a backup of the database at `options` to `out`.
pub async fn backup(
    options: &PgConnectOptions,
    out: &mut (dyn AsyncWrite + Unpin + Send),
) -> anyhow::Result<Report> {
    let mut conn = connect(options).await?;
    // One snapshot for every table; read-only, so it blocks no writer and takes no lock
    // beyond what a SELECT takes.
    sqlx::raw_sql("begin isolation level repeatable read read only")
        .execute(&mut conn)
        .await?;
    let schema_version = schema_version(&mut conn)
        .await?
        .context("the database has no taskql schema (no migrations applied)")?;
    let taken_at: String = sqlx::query_scalar(
        "select to_char(now() at time zone 'utc', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .fetch_one(&mut conn)
    .await?;
    let header = Header {
        schema_version,
        taken_at,
        taskql: env!("CARGO_PKG_VERSION").to_owned(),
    };
    out.write_all(format!("{MAGIC} {FORMAT} {}\n", serde_json::to_string(&header)?).as_bytes())
        .await?;
    let mut tables = Vec::new();
    for (table, key) in self::tables(schema_version) {
        let columns = columns(&mut conn, table).await?;
        out.write_all(format!("table {table} {}\n", columns.join(",")).as_bytes())
            .await?;
        let statement = copy_out_statement(table, &columns, key);
        let summary = copy_out(&mut conn, &statement, Some(&mut *out)).await?;
        out.write_all(
            format!("\\.\nend {table} {}\n", serde_json::to_string(&summary)?).as_bytes(),
        )
        .await?;
        tables.push((table, summary));
    }
    out.write_all(format!("{MAGIC} end\n").as_bytes()).await?;
    out.flush().await?;
    sqlx::raw_sql("commit").execute(&mut conn).await?;
    conn.close().await.ok();
    Ok(Report {
        schema_version,
        tables,
    })
}

/// Restores the backup at `path` into the (fresh) database at `options`, checking every row.
pub async fn restore(options: &PgConnectOptions, path: &Path) -> anyhow::Result<Report> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("could not open {}", path.display()))?;
    let mut lines = BufReader::with_capacity(256 * 1024, file).lines();
    let mut next = async || -> anyhow::Result<String> {
        lines
            .next_line()
            .await?
            .context("the backup ends early (truncated?)")
    };

    let first = next().await?;
    let header: Header = match first.split_once(' ') {
        Some((MAGIC, rest)) => {
            let (format, json) = rest.split_once(' ').unwrap_or((rest, ""));
            ensure!(
                format == FORMAT.to_string(),
                "this backup has format {format}; this taskql reads format {FORMAT}"
            );
            serde_json::from_str(json).context("the backup's header is not valid")?
        }
        _ => bail!("{} is not a taskql backup", path.display()),
    };
    let newest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    ensure!(
        header.schema_version <= newest,
        "the backup is of schema version {}, newer than this taskql's {newest}: restore it with \
         the taskql that took it ({})",
        header.schema_version,
        header.taskql
    );

    let mut conn = connect(options).await?;
    if let Some(version) = schema_version(&mut conn).await? {
        ensure!(
            version <= header.schema_version,
            "the target database is already at schema version {version}, past the backup's {}: \
             restore into a fresh database",
            header.schema_version
        );
    }
    MIGRATOR
        .run_to(header.schema_version, &mut conn)
        .await
        .context("could not migrate the target database to the backup's schema version")?;
    for (table, _) in tables(header.schema_version) {
        let any: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select exists (select from {table})"
        )))
        .fetch_one(&mut conn)
        .await?;
        ensure!(
            !any,
            "the target database already has rows in {table}: restore into a fresh database"
        );
    }

    let mut tx = conn.begin().await?;
    let mut tables = Vec::new();
    for (table, key) in self::tables(header.schema_version) {
        let line = next().await?;
        let columns = line
            .strip_prefix(&format!("table {table} "))
            .with_context(|| format!("expected the table {table} next in the backup"))?
            .to_owned();
        let expected_columns = self::columns(&mut tx, table).await?.join(",");
        ensure!(
            columns == expected_columns,
            "the backup's columns of {table} ({columns}) differ from the schema's ({expected_columns})"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "alter table {table} disable trigger user"
        )))
        .execute(&mut *tx)
        .await?;
        let mut copy = tx
            .copy_in_raw(&format!("copy {table} ({columns}) from stdin"))
            .await?;
        let mut buffer = Vec::with_capacity(128 * 1024);
        loop {
            let line = match next().await {
                Ok(line) => line,
                Err(err) => {
                    let _ = copy.abort("the backup ends early").await;
                    return Err(err);
                }
            };
            if line == "\\." {
                break;
            }
            buffer.extend_from_slice(line.as_bytes());
            buffer.push(b'\n');
            if buffer.len() >= 64 * 1024 {
                copy.send(std::mem::take(&mut buffer)).await?;
            }
        }
        if !buffer.is_empty() {
            copy.send(buffer).await?;
        }
        let loaded = copy.finish().await?;
        let end = next().await?;
        let summary: TableSummary = serde_json::from_str(
            end.strip_prefix(&format!("end {table} "))
                .with_context(|| format!("expected the end of {table} in the backup"))?,
        )
        .with_context(|| format!("the summary of {table} is not valid"))?;
        ensure!(
            loaded == summary.rows,
            "{table}: the backup says {} rows, {loaded} were loaded",
            summary.rows
        );
        let columns: Vec<String> = columns.split(',').map(str::to_owned).collect();
        let reread = copy_out(&mut tx, &copy_out_statement(table, &columns, key), None).await?;
        ensure!(
            reread == summary,
            "{table}: the restored rows differ from the backup's (digest {} against {})",
            reread.sha256,
            summary.sha256
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "alter table {table} enable trigger user"
        )))
        .execute(&mut *tx)
        .await?;
        tables.push((table, summary));
    }
    ensure!(
        next().await? == format!("{MAGIC} end"),
        "the backup does not end where it should"
    );
    // A restored database is a different history from the one clients followed: whatever
    // happened after the backup is gone from it, and the same version numbers will be given
    // to other changes. New epochs make every client's version read as "resync" rather than
    // as a position in this history. (Before this schema version, the migration that adds
    // epochs draws them.)
    if header.schema_version >= EPOCHS_SINCE {
        sqlx::raw_sql("update users set sync_epoch = (random() * 4611686018427387903)::bigint")
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    // Brought up to this taskql's schema, as `serve` would.
    MIGRATOR
        .run(&mut conn)
        .await
        .context("restored, but could not apply the newer migrations")?;
    conn.close().await.ok();
    Ok(Report {
        schema_version: header.schema_version,
        tables,
    })
}
