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

/// Makes the `users` row match a verified identity: inserted on first sight, updated when
/// the token's profile claims changed since they were last copied, and left untouched (no
/// write, no row lock) when they did not, which is the case for almost every request.
///
/// One statement, so two first requests at once cannot both insert: the loser's insert
/// becomes the conflict update (a no-op when the claims are the same).
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
pub async fn sync(pool: &PgPool, identity: &Identity) -> Result<()> {
    let digest = claims_digest(identity);
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
        digest,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// SHA-256 of the profile claims, in a fixed encoding.
fn claims_digest(identity: &Identity) -> Vec<u8> {
    use sha2::{Digest as _, Sha256};
    let encoded = serde_json::json!([identity.email, identity.name, identity.image]).to_string();
    Sha256::digest(encoded.as_bytes()).to_vec()
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
    .ok_or(AppError::not_found("user"))
}

/// Several users at once, for the owner DataLoader. A task's owner is always the caller, so
/// only the caller's row can come back, whatever ids are asked for.
pub async fn get_many(
    executor: impl PgExecutor<'_>,
    viewer: &UserId,
    ids: &[String],
) -> Result<Vec<User>> {
    // A bound array, not an IN list built from the keys.
    Ok(sqlx::query_as!(
        User,
        "select id, email, name, image, created_at, updated_at from users
         where id = any($1) and id = $2",
        ids,
        viewer.as_str()
    )
    .fetch_all(executor)
    .await?)
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
    .ok_or(AppError::not_found("user"))
}

/// Deletes the caller and, by cascade, all their tasks. Their next request with a valid token
/// starts afresh (the sign-in provider still knows them).
pub async fn delete(executor: impl PgExecutor<'_>, user: &UserId) -> Result<bool> {
    let deleted = sqlx::query!("delete from users where id = $1", user.as_str())
        .execute(executor)
        .await?;
    Ok(deleted.rows_affected() == 1)
}
