//! The caller of a request, as resolvers see it.
//!
//! The HTTP layer verifies the token and puts one `Viewer` into every operation of the
//! request. A resolver reaches user data only through [`Viewer::user_id`], which fails with
//! `UNAUTHENTICATED` for anonymous callers and, the first time it is asked in a request,
//! brings the `users` row in line with the token's claims. Requests that touch no user
//! data (introspection, `apiVersion`) therefore never write.

use std::sync::Arc;

use async_graphql::Context;
use sqlx::PgPool;
use tokio::sync::OnceCell;

use crate::{
    auth::{Identity, UserId},
    db,
    error::{AppError, Result},
};

pub struct Viewer {
    identity: Option<Identity>,
    pool: PgPool,
    synced: OnceCell<()>,
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
        Self {
            identity,
            pool,
            synced: OnceCell::new(),
        }
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
