//! The one application error type, and the `Result` alias every layer below HTTP returns.
//!
//! Each variant is something a client can act on (bad input naming its field, not found,
//! conflict, ...) or one of the two catch-alls (`Database`, `Internal`) whose details are for
//! the log only. How a variant looks to a GraphQL client (`extensions.code`, message, masking)
//! is decided in exactly one place: `graphql::error`.

use std::borrow::Cow;

/// `Result` with [`AppError`] as the default error.
pub type Result<T, E = AppError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The operation needs a signed-in user and the request carried no token.
    #[error("authentication required")]
    Unauthenticated,

    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(Cow<'static, str>),

    /// An input value is invalid; `field` names the input field (e.g. `input.title`).
    #[error("{message}")]
    InvalidInput {
        field: Cow<'static, str>,
        message: Cow<'static, str>,
    },

    /// The thing does not exist, or is not the caller's: the two are deliberately one case,
    /// so that nobody can learn whether another user's task exists. `ids` lists the ids not
    /// found when a request named several.
    #[error("{what} not found")]
    NotFound {
        what: &'static str,
        ids: Vec<String>,
    },

    /// The write conflicts with the current state.
    #[error("{0}")]
    Conflict(Cow<'static, str>),

    /// `expectedUpdatedAt` no longer matches: someone changed the task since the client read it.
    #[error("the task was changed since it was read")]
    StaleUpdate {
        current_updated_at: chrono::DateTime<chrono::Utc>,
    },

    /// A database failure the client cannot fix. Logged in full, shown generically.
    #[error("database error")]
    Database(#[from] sqlx::Error),

    /// Any other unexpected failure. Logged in full, shown generically.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn not_found(what: &'static str) -> Self {
        Self::NotFound {
            what,
            ids: Vec::new(),
        }
    }

    pub fn invalid(
        field: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::InvalidInput {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Turns violations of *named* constraints into client errors and passes every other error
/// through. Constraint names come from `migrations/`, which names each one for this purpose.
pub trait ResultExt<T> {
    fn on_constraint(
        self,
        name: &str,
        map: impl FnOnce(&dyn sqlx::error::DatabaseError) -> AppError,
    ) -> Result<T>;
}

impl<T, E: Into<AppError>> ResultExt<T> for std::result::Result<T, E> {
    fn on_constraint(
        self,
        name: &str,
        map: impl FnOnce(&dyn sqlx::error::DatabaseError) -> AppError,
    ) -> Result<T> {
        self.map_err(|err| match err.into() {
            AppError::Database(sqlx::Error::Database(db_err))
                if db_err.constraint() == Some(name) =>
            {
                map(db_err.as_ref())
            }
            other => other,
        })
    }
}
