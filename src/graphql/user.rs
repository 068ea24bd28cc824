//! The `User` type and the queries about the caller.

use async_graphql::{Context, ID, Object};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::viewer::Viewer;
use crate::{db, error::Result};

/// A person using taskql, as their sign-in provider (Better Auth) describes them.
pub struct User(pub db::users::User);

#[Object]
impl User {
    /// The user's id, assigned by the sign-in provider. Stable for the life of the account.
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    /// The user's email address.
    async fn email(&self) -> &str {
        &self.0.email
    }

    /// The user's display name, if they gave one.
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    /// A URL of the user's avatar image, if they have one.
    async fn image(&self) -> Option<&str> {
        self.0.image.as_deref()
    }

    /// When taskql first saw this user.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When the user's profile last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(Default)]
pub struct UserQuery;

#[Object]
impl UserQuery {
    /// The signed-in user: the owner of the token sent with the request.
    async fn me(&self, ctx: &Context<'_>) -> Result<User> {
        let user_id = Viewer::of(ctx)?.user_id().await?;
        let pool = ctx.data_unchecked::<PgPool>();
        Ok(User(db::users::get(pool, user_id).await?))
    }
}
