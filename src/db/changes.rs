//! The change feed of `migrations/0007_change_feed.sql`, as SQL: a user's changes after a
//! version, their current version, the announcement channel, and the retention purge.
//!
//! A change is a task row whose `version` is above the reader's (the task as it now is) or a
//! tombstone (a deleted task). Versions of one user follow commit order (the writers take the
//! user's row lock to advance them), so everything up to the version a read reports is in
//! that read's snapshot: a reader that continues from it misses nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{
    PgExecutor, PgPool,
    postgres::{PgConnectOptions, PgListener, PgPoolOptions},
};
use uuid::Uuid;

use super::tasks::Task;
use crate::{auth::UserId, error::Result};

/// The channel instances announce their commits on (see `live::announce`).
pub const CHANNEL: &str = "taskql_sync";

/// Where a user's feed stands: which life of the account (`epoch`), and the version of its
/// latest change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    pub epoch: i64,
    pub version: i64,
}

/// A user's feed as one read saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The epoch and the version of the latest change in the read's snapshot.
    pub stamp: Stamp,
    /// Tombstones at or below this version may have been purged.
    pub floor: i64,
}

/// One change: a task as it now is, or a deleted task's tombstone.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub task_id: Uuid,
    /// The version of the task's latest change (or of its deletion).
    pub version: i64,
    /// The change itself: the task, or its deletion.
    pub what: Changed,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Changed {
    Task {
        task: Task,
        /// The version the task was created at.
        created_version: i64,
        /// The version `completed` last flipped at (its creation's, if never).
        completed_version: i64,
    },
    Deleted {
        at: DateTime<Utc>,
    },
}

impl Change {
    /// When the change was committed: the task's `updated_at` (its `created_at` for a new
    /// task), or the deletion's time.
    pub fn at(&self) -> DateTime<Utc> {
        match &self.what {
            Changed::Task { task, .. } => task.updated_at,
            Changed::Deleted { at } => *at,
        }
    }
}

/// What one committed write did to its user's feed: it took the versions `after + 1 ..=
/// upto`, and these are all the changes among them (numbers a write reserved for rows that
/// turned out unchanged are never used). So a reader standing at `after` may take `changes`
/// as the whole of what lies between, without reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub epoch: i64,
    pub after: i64,
    pub upto: i64,
    /// In version order.
    pub changes: Vec<Change>,
}

impl Committed {
    /// Where the feed stands after the write.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            epoch: self.epoch,
            version: self.upto,
        }
    }
}

/// What [`after`] read.
#[derive(Debug)]
pub struct Changes {
    /// `None` when the user has no row (deleted, or never seen).
    pub head: Option<Head>,
    /// At most the limit asked for, in version order.
    pub changes: Vec<Change>,
}

/// The flat row of [`after`]'s statement: the user's columns on every row, and one change
/// per row (all null when there is none).
#[derive(sqlx::FromRow)]
struct Row {
    epoch: i64,
    head: i64,
    floor: i64,
    version: Option<i64>,
    id: Option<Uuid>,
    deleted_at: Option<DateTime<Utc>>,
    title: Option<String>,
    description: Option<String>,
    completed: Option<bool>,
    priority: Option<i16>,
    due_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    created_version: Option<i64>,
    completed_version: Option<i64>,
}

/// The caller's changes after version `since`, at most `limit`, in version order, with the
/// feed's head from the same snapshot. One statement: two range scans (tasks by
/// `(user_id, version)`, tombstones by their key), merged.
pub async fn after(
    executor: impl PgExecutor<'_>,
    user: &UserId,
    since: i64,
    limit: i64,
) -> Result<Changes> {
    let rows: Vec<Row> = sqlx::query_as(
        "select u.sync_epoch as epoch, u.version as head, u.sync_floor as floor,
                c.version, c.id, c.deleted_at, c.title, c.description, c.completed, c.priority,
                c.due_at, c.completed_at, c.created_at, c.updated_at, c.created_version,
                c.completed_version
         from users u
         left join lateral (
             (select t.version, t.id, null::timestamptz as deleted_at, t.title, t.description,
                     t.completed, t.priority, t.due_at, t.completed_at, t.created_at,
                     t.updated_at, t.created_version, t.completed_version
              from tasks t
              where t.user_id = u.id and t.version > $2
              order by t.version limit $3)
             union all
             (select d.version, d.task_id, d.deleted_at, null, null, null, null, null, null,
                     null, null, null, null
              from task_tombstones d
              where d.user_id = u.id and d.version > $2
              order by d.version limit $3)
             order by version limit $3
         ) c on true
         where u.id = $1
         order by c.version",
    )
    .bind(user.as_str())
    .bind(since)
    .bind(limit)
    .fetch_all(executor)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(Changes {
            head: None,
            changes: Vec::new(),
        });
    };
    let head = Head {
        stamp: Stamp {
            epoch: first.epoch,
            version: first.head,
        },
        floor: first.floor,
    };
    let changes = rows
        .into_iter()
        .filter_map(|row| change(user, row))
        .collect();
    Ok(Changes {
        head: Some(head),
        changes,
    })
}

/// The change a row holds, if any (a user without changes reads as one row of nulls).
fn change(user: &UserId, row: Row) -> Option<Change> {
    let (version, task_id) = (row.version?, row.id?);
    if let Some(at) = row.deleted_at {
        return Some(Change {
            task_id,
            version,
            what: Changed::Deleted { at },
        });
    }
    let task = Task {
        id: task_id,
        user_id: user.as_str().to_owned(),
        title: row.title?,
        description: row.description,
        completed: row.completed?,
        priority: row.priority?,
        due_at: row.due_at,
        completed_at: row.completed_at,
        created_at: row.created_at?,
        updated_at: row.updated_at?,
    };
    Some(Change {
        task_id,
        version,
        what: Changed::Task {
            task,
            created_version: row.created_version?,
            completed_version: row.completed_version?,
        },
    })
}

/// The caller's feed as it stands; `None` when the user has no row.
pub async fn current(executor: impl PgExecutor<'_>, user: &UserId) -> Result<Option<Stamp>> {
    Ok(sqlx::query!(
        "select sync_epoch, version from users where id = $1",
        user.as_str()
    )
    .fetch_optional(executor)
    .await?
    .map(|row| Stamp {
        epoch: row.sync_epoch,
        version: row.version,
    }))
}

/// Where the feeds of `users` stand, for those that have a row. One statement for all: the
/// periodic check that heals a lost announcement.
pub async fn heads(
    executor: impl PgExecutor<'_>,
    users: &[String],
) -> Result<Vec<(String, Stamp)>> {
    Ok(sqlx::query!(
        "select id, sync_epoch, version from users where id = any($1)",
        users
    )
    .fetch_all(executor)
    .await?
    .into_iter()
    .map(|row| {
        (
            row.id,
            Stamp {
                epoch: row.sync_epoch,
                version: row.version,
            },
        )
    })
    .collect())
}

/// Sends one announcement on [`CHANNEL`], in a transaction of its own: the lock NOTIFY takes
/// at commit is held for this statement alone, never by a write.
pub async fn notify(executor: impl PgExecutor<'_>, payload: &str) -> Result<()> {
    sqlx::query!("select pg_notify($1, $2)", CHANNEL, payload)
        .execute(executor)
        .await?;
    Ok(())
}

/// A connection of its own (not one of the request pool's) listening on [`CHANNEL`].
pub async fn listen(options: &PgConnectOptions) -> sqlx::Result<PgListener> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options.clone().application_name("taskql-listener"));
    let mut listener = PgListener::connect_with(&pool).await?;
    // A lost connection is reported at once; the caller reconnects on its own schedule.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Removes up to `batch` tombstones older than `retention`, advancing each affected user's
/// `sync_floor` past them, and returns how many went. A transaction-scoped advisory lock keeps
/// two instances from purging at once; the one that does not get it removes nothing. The
/// users' rows are locked first, in id order, as `deleteMe` (which then cascades to the
/// tombstones) and the writers (which then add them) lock them: no lock is ever waited for in
/// the opposite order.
pub async fn purge(pool: &PgPool, retention: Duration, batch: i64) -> Result<u64> {
    let retention_micros = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
    let mut tx = pool.begin().await?;
    let locked = sqlx::query_scalar!(
        r#"select pg_try_advisory_xact_lock(hashtext('taskql tombstone purge')) as "locked!""#
    )
    .fetch_one(&mut *tx)
    .await?;
    if !locked {
        tx.rollback().await?;
        return Ok(0);
    }
    let cutoff = sqlx::query_scalar!(
        r#"select now() - make_interval(secs => $1::bigint / 1e6) as "cutoff!""#,
        retention_micros
    )
    .fetch_one(&mut *tx)
    .await?;
    let users = sqlx::query_scalar!(
        "select id from users
         where id in (select user_id from task_tombstones where deleted_at < $1
                      order by deleted_at limit $2)
         order by id
         for no key update",
        cutoff,
        batch
    )
    .fetch_all(&mut *tx)
    .await?;
    if users.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let purged = sqlx::query_scalar!(
        r#"
        with gone as (
            delete from task_tombstones d
            where (d.user_id, d.version) in (
                select user_id, version from task_tombstones
                where user_id = any($1) and deleted_at < $2
                order by deleted_at
                limit $3)
            returning d.user_id, d.version
        ), floors as (
            update users u set sync_floor = greatest(u.sync_floor, f.version)
            from (select user_id, max(version) as version from gone group by user_id) f
            where u.id = f.user_id
        )
        select count(*) as "purged!" from gone
        "#,
        &users,
        cutoff,
        batch
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(u64::try_from(purged).unwrap_or(0))
}
