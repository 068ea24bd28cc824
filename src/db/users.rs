//! SQL for the `users` table: the mirror of Better Auth's users that tasks hang from.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

use crate::{
    auth::{Identity, UserId},
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
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
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

/// Deletes the caller and, by cascade, all their tasks. Their next request with a valid token
/// starts afresh (the sign-in provider still knows them).
pub async fn delete(executor: impl PgExecutor<'_>, user: &UserId) -> Result<bool> {
    let deleted = sqlx::query!("delete from users where id = $1", user.as_str())
        .execute(executor)
        .await?;
    Ok(deleted.rows_affected() == 1)
}
