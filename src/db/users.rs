//! SQL for the `users` table: the mirror of Better Auth's users that tasks hang from.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

use uuid::Uuid;

use crate::{
    auth::{Identity, UserId},
    db::changes::Stamp,
    error::{AppError, Result},
};

/// A user row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which users this process has already brought in line with which claims, so that the
/// request of an unchanged user costs no statement at all. Bounded (least recently used
/// entries go first); a miss only costs the sync statement.
///
/// Another instance may delete a user this cache still holds (`deleteMe` there): writes
/// that then find the row missing forget the entry and sync again (`Viewer::as_user`).
pub struct SyncedUsers {
    entries: Option<std::sync::Mutex<lru::LruCache<String, [u8; 32]>>>,
}

impl std::fmt::Debug for SyncedUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncedUsers").finish_non_exhaustive()
    }
}

impl SyncedUsers {
    /// A cache of `capacity` users; 0 remembers none (every request syncs).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: std::num::NonZeroUsize::new(capacity)
                .map(|cap| std::sync::Mutex::new(lru::LruCache::new(cap))),
        }
    }

    fn is_synced(&self, identity: &Identity, digest: &[u8; 32]) -> bool {
        let Some(Ok(mut entries)) = self.entries.as_ref().map(|e| e.lock()) else {
            return false;
        };
        entries.get(identity.user_id.as_str()) == Some(digest)
    }

    fn remember(&self, identity: &Identity, digest: [u8; 32]) {
        if let Some(Ok(mut entries)) = self.entries.as_ref().map(|e| e.lock()) {
            entries.put(identity.user_id.as_str().to_owned(), digest);
        }
    }

    /// The user's row is gone (or may be): the next request syncs again.
    pub fn forget(&self, user: &UserId) {
        if let Some(Ok(mut entries)) = self.entries.as_ref().map(|e| e.lock()) {
            entries.pop(user.as_str());
        }
    }
}

/// Makes the `users` row match a verified identity: inserted on first sight, updated when
/// the token's profile claims changed since they were last copied, and left untouched (no
/// write, no row lock) when they did not. Users this process synced with the same claims
/// before cost no statement.
///
/// One statement, so two first requests at once cannot both insert: the loser's insert
/// becomes the conflict update (a no-op when the claims are the same).
#[tracing::instrument(level = "debug", skip_all, fields(user_id = %identity.user_id))]
pub async fn sync(pool: &PgPool, synced: &SyncedUsers, identity: &Identity) -> Result<()> {
    let digest = claims_digest(identity);
    if synced.is_synced(identity, &digest) {
        return Ok(());
    }
    sqlx::query!(
        r#"
        insert into users (id, email, name, image, claims_digest)
        select $1, $2, $3, $4, $5
        -- The common case writes nothing: the row exists and was made from these claims.
        where not exists (select from users where id = $1 and claims_digest = $5)
        on conflict (id) do update
            set email = excluded.email, name = excluded.name, image = excluded.image,
                claims_digest = excluded.claims_digest
            where users.claims_digest is distinct from excluded.claims_digest
        "#,
        identity.user_id.as_str(),
        identity.email,
        identity.name.as_deref(),
        identity.image.as_deref(),
        &digest[..],
    )
    .execute(pool)
    .await?;
    synced.remember(identity, digest);
    Ok(())
}

/// SHA-256 of the profile claims, in a fixed encoding.
fn claims_digest(identity: &Identity) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let encoded = serde_json::json!([identity.email, identity.name, identity.image]).to_string();
    Sha256::digest(encoded.as_bytes()).into()
}

/// The caller's own row.
pub async fn get(executor: impl PgExecutor<'_>, id: &UserId) -> Result<User> {
    sqlx::query_as!(
        User,
        "select id, email, name, image, created_at, updated_at from users where id = $1",
        id.as_str()
    )
    .fetch_optional(executor)
    .await?
    .ok_or(AppError::UserGone)
}

/// Changes the caller's profile. `None` leaves a field alone; `Some(None)` clears it. The
/// claims digest is kept, so the edit stands until the sign-in provider's data changes.
pub async fn update_profile(
    executor: impl PgExecutor<'_>,
    user: &UserId,
    name: Option<Option<String>>,
    image: Option<Option<String>>,
) -> Result<User> {
    sqlx::query_as!(
        User,
        "update users set
             name = case when $2 then $3 else name end,
             image = case when $4 then $5 else image end
         where id = $1
         returning id, email, name, image, created_at, updated_at",
        user.as_str(),
        name.is_some(),
        name.flatten(),
        image.is_some(),
        image.flatten()
    )
    .fetch_optional(executor)
    .await?
    .ok_or(AppError::UserGone)
}

/// What a user's deletion removed: where their change feed ended, and their tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub stamp: Stamp,
    /// How many tasks went with the user.
    pub tasks: i64,
    /// The ids of those tasks when there were at most [`DELETED_IDS`] of them (subscribers
    /// are told of each); `None` for more (they are told to resync).
    pub ids: Option<Vec<Uuid>>,
}

/// The most task ids a user's deletion reports one by one.
pub const DELETED_IDS: i64 = 100;

/// Deletes the caller with all their tasks, tombstones and keys. Their next request with a
/// valid token starts afresh (the sign-in provider still knows them) under a new epoch.
/// `None` when there was no row.
pub async fn delete(executor: impl PgExecutor<'_>, user: &UserId) -> Result<Option<Deleted>> {
    // The tasks are deleted by the statement itself rather than by the cascade, so that it
    // can say which went; no tombstone is written (the user's go with the user).
    let deleted = sqlx::query!(
        r#"
        with own as (
            select set_config('taskql.writer', 'on', true)
        ), gone as (
            delete from tasks t using own where t.user_id = $1 returning t.id
        ), u as (
            delete from users where id = $1 returning sync_epoch, version
        )
        select u.sync_epoch, u.version,
               (select count(*) from gone) as "tasks!",
               array(select id from gone limit $2) as "ids!"
        from u
        "#,
        user.as_str(),
        DELETED_IDS + 1
    )
    .fetch_optional(executor)
    .await?;
    Ok(deleted.map(|row| Deleted {
        stamp: Stamp {
            epoch: row.sync_epoch,
            version: row.version,
        },
        tasks: row.tasks,
        ids: (row.tasks <= DELETED_IDS).then_some(row.ids),
    }))
}
