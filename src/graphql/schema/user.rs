//! The `User` type, the caller's queries, and the mutations on their profile.

use async_graphql::{Context, ID, Object};

use super::{
    connection::{Relay, TaskConnection},
    inputs::{TaskFilter, TaskOrder, UpdateMeInput},
    scalars::DateTime,
    task::{self, TaskStats, page_cost},
    viewer::Viewer,
};
use crate::{
    auth::UserId,
    db,
    error::{AppError, Result},
};

/// A user. Only the signed-in user is ever visible.
#[derive(Debug, Clone)]
pub struct User(pub db::users::User);

impl User {
    /// The caller's id, checked against this user: a `User` object is always the caller,
    /// and its lists are the caller's whatever path led to it.
    async fn own_id<'a>(&self, ctx: &Context<'a>) -> Result<&'a UserId> {
        let viewer = Viewer::of(ctx)?.ensure_user().await?;
        if viewer.as_str() == self.0.id {
            Ok(viewer)
        } else {
            Err(AppError::Forbidden(
                "Only your own tasks are visible.".into(),
            ))
        }
    }
}

/// A person using taskql, as their sign-in provider (Better Auth) describes them.
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
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }

    /// When the user's profile last changed.
    async fn updated_at(&self) -> DateTime {
        DateTime(self.0.updated_at)
    }

    /// The user's tasks, a page at a time; the same arguments as `Query.tasks`.
    #[graphql(complexity = "page_cost(first, last) * child_complexity")]
    #[allow(clippy::too_many_arguments, reason = "the Relay connection arguments")]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only tasks matching this filter.")] filter: Option<TaskFilter>,
        #[graphql(desc = "Sort keys, most significant first. Default: createdAt descending.")]
        order_by: Option<Vec<TaskOrder>>,
        #[graphql(desc = "Page forward: at most this many tasks (1 to 100, default 20).")]
        first: Option<i32>,
        #[graphql(desc = "Page forward: the tasks after this cursor.")] after: Option<String>,
        #[graphql(desc = "Page backward: at most this many tasks (1 to 100).")] last: Option<i32>,
        #[graphql(desc = "Page backward: the tasks before this cursor.")] before: Option<String>,
    ) -> Result<TaskConnection> {
        let user = self.own_id(ctx).await?.clone();
        let relay = Relay {
            first,
            after,
            last,
            before,
        };
        task::list(ctx, user, filter, order_by, relay).await
    }

    /// Counts over the user's tasks matching a filter.
    async fn task_stats(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only count tasks matching this filter.")] filter: Option<TaskFilter>,
    ) -> Result<TaskStats> {
        self.own_id(ctx).await?;
        task::stats(ctx, filter).await
    }
}

#[derive(Default)]
pub struct UserQuery;

#[Object]
impl UserQuery {
    /// The signed-in user: the owner of the token sent with the request.
    async fn me(&self, ctx: &Context<'_>) -> Result<User> {
        Ok(User(Viewer::of(ctx)?.own_row().await?))
    }
}

#[derive(Default)]
pub struct UserMutation;

#[Object]
impl UserMutation {
    /// Changes the signed-in user's profile. The change stands until the sign-in provider
    /// reports different profile data in a later token.
    async fn update_me(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The changes; fields left out are left alone.")] input: UpdateMeInput,
    ) -> Result<User> {
        let (name, image) = input.parse()?;
        let viewer = Viewer::of(ctx)?;
        let pool = Viewer::pool(ctx);
        let user = viewer
            .as_user(|user| db::users::update_profile(pool, user, name.clone(), image.clone()))
            .await?;
        viewer.row_changed(user.clone()).await;
        Ok(User(user))
    }

    /// Deletes the signed-in user's data: their profile and, with it, all their tasks. The
    /// account itself lives with the sign-in provider; a later request starts afresh.
    async fn delete_me(&self, ctx: &Context<'_>) -> Result<bool> {
        let viewer = Viewer::of(ctx)?;
        let user_id = viewer.ensure_user().await?;
        let deleted = db::users::delete(Viewer::pool(ctx), user_id).await?;
        if let Some(deleted) = &deleted {
            super::subscription::hub(ctx)?.user_deleted(user_id, deleted);
        }
        viewer.user_deleted().await;
        Ok(deleted.is_some())
    }
}
