//! Creates with an idempotency key: a client that retries a create (a timeout, a flaky
//! network) with the same key and input gets the task the first attempt made.

use sqlx::PgPool;

use super::{Task, get, write::insert};
use crate::{
    auth::UserId,
    db::changes::Committed,
    domain::task::NewTask,
    error::{AppError, Result},
};

/// Creates a task; with an idempotency key, a retry of the same create returns the task the
/// first attempt made, and no stamp (it changed nothing). One transaction: the task and the
/// key are stored together or not at all.
pub async fn create(
    pool: &PgPool,
    user: &UserId,
    task: &NewTask,
    idempotency: Option<(&str, &[u8])>,
) -> Result<(Task, Option<Committed>)> {
    let Some((key, digest)) = idempotency else {
        let (created, committed) = insert(pool, user, task).await?;
        return Ok((created, Some(committed)));
    };
    if let Some(existing) = remembered(pool, user, key, digest).await? {
        return Ok((existing, None));
    }
    let mut tx = pool.begin().await?;
    let (created, committed) = insert(&mut *tx, user, task).await?;
    let stored = sqlx::query!(
        "insert into task_idempotency_keys (user_id, idempotency_key, task_id, request_digest)
         values ($1, $2, $3, $4)
         on conflict (user_id, idempotency_key) do nothing",
        user.as_str(),
        key,
        created.id,
        digest
    )
    .execute(&mut *tx)
    .await?;
    if stored.rows_affected() == 1 {
        tx.commit().await?;
        return Ok((created, Some(committed)));
    }
    // A concurrent attempt with the same key committed first (our insert waited for it):
    // drop our task and answer with theirs.
    tx.rollback().await?;
    let theirs = remembered(pool, user, key, digest).await?.ok_or_else(|| {
        AppError::Internal(anyhow::anyhow!(
            "idempotency key vanished during a concurrent create"
        ))
    })?;
    Ok((theirs, None))
}

/// The task an earlier create with this key made, if the key is still live. The same key
/// with a different input is a client bug, reported as a conflict rather than guessed at.
async fn remembered(
    pool: &PgPool,
    user: &UserId,
    key: &str,
    digest: &[u8],
) -> Result<Option<Task>> {
    // A key is honoured for 24 hours: long enough for any client retry.
    let found = sqlx::query!(
        "select task_id, request_digest from task_idempotency_keys
         where user_id = $1 and idempotency_key = $2 and created_at > now() - interval '24 hours'",
        user.as_str(),
        key
    )
    .fetch_optional(pool)
    .await?;
    let Some(found) = found else {
        // An expired key may be reused: forget it so the new create can record itself.
        sqlx::query!(
            "delete from task_idempotency_keys
             where user_id = $1 and idempotency_key = $2 and created_at <= now() - interval '24 hours'",
            user.as_str(),
            key
        )
        .execute(pool)
        .await?;
        return Ok(None);
    };
    if found.request_digest != digest {
        return Err(AppError::Conflict(
            "This idempotency key was already used for a different task.".into(),
        ));
    }
    get(pool, user, found.task_id).await
}
