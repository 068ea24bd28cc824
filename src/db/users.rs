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
/// the token's profile claims changed, and left untouched (no write, no row lock) when they
/// did not, which is the case for almost every request.
///
/// One statement, so two first requests at once cannot both insert: the loser's insert
/// becomes the conflict update (a no-op when the claims are the same).
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
pub async fn sync(pool: &PgPool, identity: &Identity) -> Result<()> {
    let result = sqlx::query(
        r#"
        insert into users (id, email, name, image)
        select $1, $2, $3, $4
        -- The common case writes nothing: the row exists and already says this.
        where not exists (
            select from users
            where id = $1 and (email, name, image) is not distinct from ($2, $3, $4)
        )
        on conflict (id) do update
            set email = excluded.email, name = excluded.name, image = excluded.image
            where (users.email, users.name, users.image)
                  is distinct from (excluded.email, excluded.name, excluded.image)
        "#,
    )
    .bind(identity.user_id.as_str())
    .bind(&identity.email)
    .bind(&identity.name)
    .bind(&identity.image)
    .execute(pool)
    .await;

    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(err)) if err.constraint() == Some("users_email_key") => {
            // Another row holds this email: the two accounts are different Better Auth users
            // (ids differ), so one row is stale, and we cannot tell which. A known user keeps
            // their stored email and gets the rest of the update; a new user cannot be stored
            // without one, and gets a clear conflict instead of a failure.
            let updated = sqlx::query(
                "update users set name = $2, image = $3 where id = $1
                 and (name, image) is distinct from ($2, $3)",
            )
            .bind(identity.user_id.as_str())
            .bind(&identity.name)
            .bind(&identity.image)
            .execute(pool)
            .await?;
            let known = updated.rows_affected() > 0 || exists(pool, &identity.user_id).await?;
            tracing::warn!(
                known,
                "the token's email belongs to another user row; kept the stored email"
            );
            if known {
                Ok(())
            } else {
                Err(AppError::Conflict(
                    "The email in your token is already used by another account.".into(),
                ))
            }
        }
        Err(err) => Err(err.into()),
    }
}

async fn exists(executor: impl PgExecutor<'_>, id: &UserId) -> Result<bool> {
    Ok(
        sqlx::query_scalar("select exists (select from users where id = $1)")
            .bind(id.as_str())
            .fetch_one(executor)
            .await?,
    )
}

/// The caller's own row.
pub async fn get(executor: impl PgExecutor<'_>, id: &UserId) -> Result<User> {
    sqlx::query_as::<_, User>(
        "select id, email, name, image, created_at, updated_at from users where id = $1",
    )
    .bind(id.as_str())
    .fetch_optional(executor)
    .await?
    .ok_or(AppError::NotFound("user"))
}
