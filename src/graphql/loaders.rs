//! DataLoaders: batched lookups that keep the number of SQL statements per request
//! independent of the page size.
//!
//! Loaders here are built *per request* (inside the request's `Viewer`), never registered on
//! the schema: a schema-wide loader would batch keys from different users' requests together.
//! The owner loader also carries the caller and checks it in SQL: a task's owner is always
//! the caller, and the loader refuses to return any other user even if asked.

use std::{collections::HashMap, sync::Arc};

use async_graphql::dataloader::Loader;
use sqlx::PgPool;

use crate::{
    auth::UserId,
    db::{self, users::User},
};

pub struct OwnerLoader {
    pub pool: PgPool,
    pub viewer: UserId,
}

impl Loader<String> for OwnerLoader {
    type Value = User;
    type Error = Arc<crate::error::AppError>;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, User>, Self::Error> {
        let users = db::users::get_many(&self.pool, &self.viewer, keys)
            .await
            .map_err(Arc::new)?;
        Ok(users
            .into_iter()
            .map(|user| (user.id.clone(), user))
            .collect())
    }
}
