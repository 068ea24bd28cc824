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

    /// A live subscription over the configured limit (per user, or per connection).
    #[error("{0}")]
    TooManySubscriptions(Cow<'static, str>),

    /// The write conflicts with the current state.
    #[error("{0}")]
    Conflict(Cow<'static, str>),

    /// The caller's `users` row is gone: a `deleteMe` ran concurrently (on any instance).
    /// The viewer syncs the user again and retries once; if that races too, the client is
    /// told to send the request again.
    #[error("the user's row is gone")]
    UserGone,

    /// `expectedUpdatedAt` no longer matches: someone changed the task since the client read it.
    #[error("the task was changed since it was read")]
    StaleUpdate {
        current_updated_at: chrono::DateTime<chrono::Utc>,
    },

    /// The database cannot serve now: unreachable, restarting, or every connection busy.
    /// Shown as `SERVICE_UNAVAILABLE` with a hint to retry; the cause is logged.
    #[error("database unavailable: {cause}")]
    Unavailable {
        cause: String,
        /// The connection failed (rather than the pool being busy): stop sending work to the
        /// database until it answers again.
        connection_lost: bool,
    },

    /// A database failure the client cannot fix. Logged in full, shown generically.
    #[error("database error")]
    Database(sqlx::Error),

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

    fn unavailable(err: &sqlx::Error) -> Self {
        Self::Unavailable {
            cause: err.to_string(),
            connection_lost: !matches!(err, sqlx::Error::PoolTimedOut),
        }
    }
}

/// Every `sqlx::Error` becomes an `AppError` here, and only here: violations of named
/// constraints become the client errors they stand for, an unreachable or restarting
/// database becomes `Unavailable`, and the rest stays a masked `Database` error.
impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        if let Some(db) = err.as_database_error() {
            if let Some(mapped) = db.constraint().and_then(constraint_error) {
                return mapped;
            }
            match db.code().as_deref() {
                // PostgreSQL text cannot hold U+0000; the API refuses it first, with the
                // field's name. This is the backstop for any input that slipped past.
                Some("22021" | "22P05") => {
                    return Self::invalid("input", crate::domain::text::NUL_MESSAGE);
                }
                Some(code) if unavailable_code(code) => return Self::unavailable(&err),
                // A deadlock or serialization failure: nothing was written, and the same
                // request sent again succeeds. taskql's own writers lock in one order (the
                // user's row first); a session writing tasks by hand may not.
                Some("40P01" | "40001") => {
                    return Self::Unavailable {
                        cause: err.to_string(),
                        connection_lost: false,
                    };
                }
                _ => {}
            }
        }
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::unavailable(&err),
            other => Self::Database(other),
        }
    }
}

/// SQLSTATEs that mean "not now" rather than "never": the connection failed (class 08), the
/// server is shutting down or starting (57P01–57P03), or it is out of connections (53300).
fn unavailable_code(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// The client error each named constraint of `migrations/` stands for. The API validates
/// every input before it reaches SQL, so these fire only when a rule is missed there or when
/// a concurrent request changed the ground (a `deleteMe` while a task is being created).
/// Constraints no client input can reach (`tasks_completed_at_consistent`, kept by a
/// trigger; primary keys of generated ids) stay internal errors.
fn constraint_error(name: &str) -> Option<AppError> {
    let invalid = |field: &'static str, message: &'static str| AppError::invalid(field, message);
    Some(match name {
        "tasks_title_length" | "tasks_title_not_blank" => invalid(
            "input.title",
            "The title must hold 1 to 200 characters, not all of them blank.",
        ),
        "tasks_description_length" => invalid(
            "input.description",
            "The description is longer than 1000 characters.",
        ),
        "tasks_priority_range" => invalid("input.priority", "The priority must be from 1 to 5."),
        "tasks_due_at_finite" => invalid("input.dueAt", "The due date must be a finite time."),
        "task_idempotency_keys_key_length" => invalid(
            "input.idempotencyKey",
            "The key must be 1 to 255 characters long.",
        ),
        "users_name_length" => invalid("input.name", "The name is longer than 200 characters."),
        "users_image_length" => invalid(
            "input.image",
            "The image URL is longer than 2048 characters.",
        ),
        // The caller's user row went away under the request: a `deleteMe` ran concurrently.
        "tasks_user_id_fkey"
        | "task_idempotency_keys_user_id_fkey"
        | "task_tombstones_user_id_fkey" => AppError::UserGone,
        // The task a retried create points at was deleted while the retry ran.
        "task_idempotency_keys_task_id_fkey" | "task_idempotency_keys_pkey" => AppError::Conflict(
            "A concurrent request changed this idempotency key; send the create again.".into(),
        ),
        _ => return None,
    })
}
