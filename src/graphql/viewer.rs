//! The caller of a request, as resolvers see it.
//!
//! The HTTP layer verifies the token and puts one `Viewer` into every operation of the
//! request. A resolver reaches user data only through [`Viewer::user_id`], which fails with
//! `UNAUTHENTICATED` for anonymous callers and, the first time it is asked in a request,
//! brings the `users` row in line with the token's claims. Requests that touch no user
//! data (introspection, `apiVersion`) therefore never write.

use std::sync::Arc;

use async_graphql::{
    Context,
    dataloader::{DataLoader, HashMapCache},
};
use sqlx::PgPool;
use tokio::sync::OnceCell;

use super::loaders::OwnerLoader;
use crate::{
    auth::{Identity, UserId},
    db,
    error::{AppError, Result},
};

pub struct Viewer {
    identity: Option<Identity>,
    pool: PgPool,
    synced: OnceCell<()>,
    /// Batches the `owner` lookups of one request (built per request; see `loaders`). Its
    /// cache lives as long as the request, so a user is read at most once per request.
    owners: Option<DataLoader<OwnerLoader, HashMapCache>>,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("user_id", &self.identity.as_ref().map(|i| &i.user_id))
            .finish_non_exhaustive()
    }
}

impl Viewer {
    pub fn new(identity: Option<Identity>, pool: PgPool) -> Self {
        let owners = identity.as_ref().map(|identity| {
            let loader = OwnerLoader {
                pool: pool.clone(),
                viewer: identity.user_id.clone(),
            };
            // The batch runs in a task of its own; carry the request's span into it, so the
            // loader's queries are logged (and traced) as part of the request.
            DataLoader::with_cache(
                loader,
                |batch| tokio::spawn(tracing::Instrument::in_current_span(batch)),
                HashMapCache::default(),
            )
        });
        Self {
            identity,
            pool,
            synced: OnceCell::new(),
            owners,
        }
    }

    /// The owner of a task the caller can see, through the request's DataLoader: a page of
    /// N tasks costs one query for all their owners.
    pub async fn owner(&self, user_id: &str) -> Result<db::users::User> {
        let loader = self.owners.as_ref().ok_or(AppError::Unauthenticated)?;
        loader
            .load_one(user_id.to_owned())
            .await
            .map_err(|err| {
                AppError::Internal(anyhow::anyhow!("loading task owners failed: {err}"))
            })?
            .ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!("a visible task's owner is not the caller"))
            })
    }

    /// Loads the owners of a page of tasks in one batch, ahead of the `owner` resolvers.
    ///
    /// The DataLoader batches by time (keys requested within a millisecond share a query); a
    /// large page can take longer than that to resolve, and would then cost several queries.
    /// A connection knows all its owners before any `owner` field runs, so it asks for them
    /// at once and the resolvers find them in the request's cache: one query per page, at any
    /// size and machine speed.
    pub async fn prime_owners(&self, user_ids: impl IntoIterator<Item = String>) -> Result<()> {
        if let Some(loader) = &self.owners {
            loader.load_many(user_ids).await.map_err(|err| {
                AppError::Internal(anyhow::anyhow!("loading task owners failed: {err}"))
            })?;
        }
        Ok(())
    }

    /// The database pool of the schema (always registered by `build_schema`).
    pub fn pool<'a>(ctx: &Context<'a>) -> &'a PgPool {
        ctx.data_unchecked::<PgPool>()
    }

    pub fn is_authenticated(&self) -> bool {
        self.identity.is_some()
    }

    /// The caller's id, with their `users` row guaranteed to exist and be current.
    pub async fn user_id(&self) -> Result<&UserId> {
        let identity = self.identity.as_ref().ok_or(AppError::Unauthenticated)?;
        self.synced
            .get_or_try_init(|| db::users::sync(&self.pool, identity))
            .await?;
        Ok(&identity.user_id)
    }

    /// The viewer of the operation being resolved.
    pub fn of<'a>(ctx: &Context<'a>) -> Result<&'a Arc<Self>> {
        // Every operation the pipeline runs carries a viewer; a missing one is a bug.
        ctx.data_opt::<Arc<Self>>()
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("no viewer in the request data")))
    }
}
