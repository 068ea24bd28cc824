//! The caller of a request, as resolvers see it.
//!
//! The HTTP layer verifies the token and puts one `Viewer` into every operation of the
//! request. A resolver reaches user data only through [`Viewer::ensure_user`], which fails
//! with `UNAUTHENTICATED` for anonymous callers and, the first time it is called in a request,
//! brings the `users` row in line with the token's claims (a write, hence the name).
//! Requests that touch no user data (introspection, `apiVersion`) therefore never write.
//!
//! The viewer also remembers, for the length of the request, what every resolver of it would
//! otherwise read again: the caller's own row (every task's `owner`), and counts with the
//! same filter. Writes forget the counts they may have changed.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex as SyncMutex},
};

use async_graphql::Context;
use sqlx::PgPool;
use tokio::sync::{Mutex, OnceCell};

use crate::{
    auth::{Identity, UserId},
    db::{self, Database},
    domain::query::Filter,
    error::{AppError, Result},
};

pub struct Viewer {
    identity: Option<Identity>,
    db: Database,
    /// Whether the `users` row matches the token in this request. Reset by `deleteMe`, so a
    /// later operation of the same batch starts the user afresh instead of failing.
    synced: Mutex<bool>,
    /// The caller's row, read at most once per request.
    row: Mutex<Option<db::users::User>>,
    /// `count(*)` by filter, each computed once however often the document asks.
    counts: Memo<i64>,
    /// `taskStats` by filter, the same way.
    stats: Memo<db::tasks::Stats>,
}

/// Values by filter, each computed once; cleared when the caller's tasks change.
type Memo<T> = SyncMutex<HashMap<String, Arc<OnceCell<T>>>>;

/// The cell for `filter` in `memo`, made on first use.
fn memo_cell<T>(memo: &Memo<T>, filter: &Filter) -> Result<Arc<OnceCell<T>>> {
    let mut cells = memo
        .lock()
        .map_err(|_| AppError::Internal(anyhow::anyhow!("request memo poisoned")))?;
    // Debug text is deterministic for equal filters, which is all a memo key needs.
    Ok(Arc::clone(cells.entry(format!("{filter:?}")).or_default()))
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("user_id", &self.identity.as_ref().map(|i| &i.user_id))
            .finish_non_exhaustive()
    }
}

impl Viewer {
    pub fn new(identity: Option<Identity>, db: Database) -> Self {
        Self {
            identity,
            db,
            synced: Mutex::new(false),
            row: Mutex::new(None),
            counts: SyncMutex::new(HashMap::new()),
            stats: SyncMutex::new(HashMap::new()),
        }
    }

    /// The database pool of the schema (always registered by `build_schema`).
    pub fn pool<'a>(ctx: &Context<'a>) -> &'a PgPool {
        ctx.data_unchecked::<PgPool>()
    }

    pub fn is_authenticated(&self) -> bool {
        self.identity.is_some()
    }

    /// The caller's id, after making sure their `users` row exists and matches the token.
    /// While the database is known to be down this fails at once with `SERVICE_UNAVAILABLE`
    /// instead of waiting for a connection that cannot come.
    pub async fn ensure_user(&self) -> Result<&UserId> {
        let identity = self.identity.as_ref().ok_or(AppError::Unauthenticated)?;
        if self.db.health.is_down() {
            return Err(AppError::Unavailable {
                cause: "the database is unreachable; failing fast until it answers".to_owned(),
                connection_lost: false,
            });
        }
        let mut synced = self.synced.lock().await;
        if !*synced {
            db::users::sync(&self.db.pool, &self.db.synced, identity).await?;
            *synced = true;
        }
        Ok(&identity.user_id)
    }

    /// Runs `work` as the caller. If it finds the caller's row gone (a `deleteMe` on any
    /// instance, which this process's sync cache cannot know of), the user is synced again
    /// and `work` runs once more: a request after a deletion starts the user afresh, as the
    /// API promises.
    pub async fn as_user<'a, T, F, Fut>(&'a self, work: F) -> Result<T>
    where
        F: Fn(&'a UserId) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let user = self.ensure_user().await?;
        match work(user).await {
            Err(AppError::UserGone) => {
                self.user_deleted().await;
                let user = self.ensure_user().await?;
                work(user).await
            }
            done => done,
        }
    }

    /// The caller's own row (the `User` of `me` and of every task's `owner`).
    pub async fn own_row(&self) -> Result<db::users::User> {
        {
            let row = self.row.lock().await;
            if let Some(row) = row.as_ref() {
                return Ok(row.clone());
            }
        }
        let read = self
            .as_user(|user| db::users::get(&self.db.pool, user))
            .await?;
        *self.row.lock().await = Some(read.clone());
        Ok(read)
    }

    /// Remembers the caller's row when a statement read it along with other work (a page
    /// with its owner), so that later resolvers of the request need not read it again.
    pub async fn row_read(&self, user: db::users::User) {
        *self.row.lock().await = Some(user);
    }

    /// The owner of a task the caller can see: always the caller, answered from their row.
    pub async fn owner(&self, user_id: &str) -> Result<db::users::User> {
        let own = self
            .identity
            .as_ref()
            .is_some_and(|identity| identity.user_id.as_str() == user_id);
        if !own {
            return Err(AppError::Internal(anyhow::anyhow!(
                "a visible task's owner is not the caller"
            )));
        }
        self.own_row().await
    }

    /// How many of the caller's tasks match `filter`, counted once per request.
    pub async fn count(&self, filter: &Filter) -> Result<i64> {
        let user = self.ensure_user().await?;
        memo_cell(&self.counts, filter)?
            .get_or_try_init(|| db::tasks::count(&self.db.pool, user, filter))
            .await
            .copied()
    }

    /// Statistics over the caller's tasks matching `filter`, computed once per request.
    pub async fn stats(&self, filter: &Filter) -> Result<db::tasks::Stats> {
        let user = self.ensure_user().await?;
        memo_cell(&self.stats, filter)?
            .get_or_try_init(|| db::tasks::stats(&self.db.pool, user, filter))
            .await
            .cloned()
    }

    /// A task of the caller's changed: counts remembered so far may be stale.
    pub fn tasks_changed(&self) {
        if let Ok(mut counts) = self.counts.lock() {
            counts.clear();
        }
        if let Ok(mut stats) = self.stats.lock() {
            stats.clear();
        }
    }

    /// `updateMe` wrote the caller's row: later readers see the new one.
    pub async fn row_changed(&self, user: db::users::User) {
        *self.row.lock().await = Some(user);
    }

    /// The caller's data was removed (`deleteMe` here, or found gone): a later operation
    /// starts the user afresh.
    pub async fn user_deleted(&self) {
        if let Some(identity) = &self.identity {
            self.db.synced.forget(&identity.user_id);
        }
        *self.synced.lock().await = false;
        *self.row.lock().await = None;
        self.tasks_changed();
    }

    /// The viewer of the operation being resolved.
    pub fn of<'a>(ctx: &Context<'a>) -> Result<&'a Arc<Self>> {
        // Every operation the pipeline runs carries a viewer; a missing one is a bug.
        ctx.data_opt::<Arc<Self>>()
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("no viewer in the request data")))
    }
}
