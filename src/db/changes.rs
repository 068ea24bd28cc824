//! The change announcements of `migrations/0006_task_changes.sql`: the channel, a connection
//! that listens to it, and the payload as the trigger writes it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use uuid::Uuid;

use super::tasks::Task;

/// The channel every task change is announced on.
pub const CHANNEL: &str = "taskql_task_changes";

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

/// What happened to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Op {
    Insert,
    Update,
    Delete,
}

/// One announcement. The rows stay unparsed until a subscriber of their owner wants them:
/// every instance hears every change, and most concern users it serves no subscription for.
#[derive(Debug, Deserialize)]
pub struct Change<'a> {
    pub op: Op,
    /// The owner of the task.
    pub uid: String,
    /// The task.
    pub id: Uuid,
    /// When the change happened (the transaction's time).
    pub at: DateTime<Utc>,
    /// Whether the task was completed before an update.
    #[serde(default)]
    pub was_completed: Option<bool>,
    #[serde(borrow, default)]
    new: Option<&'a RawValue>,
    #[serde(borrow, default)]
    old: Option<&'a RawValue>,
}

impl<'a> Change<'a> {
    pub fn parse(payload: &'a str) -> serde_json::Result<Self> {
        serde_json::from_str(payload)
    }

    /// The row after the change (inserts and updates), unless it did not fit the payload.
    pub fn new_row(&self) -> serde_json::Result<Option<Task>> {
        self.new
            .map(|raw| serde_json::from_str(raw.get()))
            .transpose()
    }

    /// The row before the change (updates and deletes), unless it did not fit the payload.
    pub fn old_row(&self) -> serde_json::Result<Option<Task>> {
        self.old
            .map(|raw| serde_json::from_str(raw.get()))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_as_the_trigger_writes_them_are_read() {
        let payload = r#"{"at": "2026-11-23T10:00:00.5+00:00", "id": "0193a7a0-0000-7000-8000-000000000001", "op": "UPDATE", "uid": "u1", "new": {"id": "0193a7a0-0000-7000-8000-000000000001", "title": "t", "user_id": "u1", "priority": 3, "completed": true, "due_at": null, "created_at": "2026-11-23T09:00:00+00:00", "updated_at": "2026-11-23T10:00:00.5+00:00", "description": null, "completed_at": "2026-11-23T10:00:00.5+00:00"}}"#;
        let change = Change::parse(payload).expect("parses");
        assert_eq!(change.op, Op::Update);
        assert_eq!(change.uid, "u1");
        let new = change.new_row().expect("row").expect("present");
        assert!(new.completed);
        assert_eq!(change.old_row().expect("absent"), None);
    }
}
