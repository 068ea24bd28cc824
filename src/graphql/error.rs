//! The error contract: every GraphQL error taskql sends carries `extensions.code`, and this
//! file is the only place that decides which code and what the client may read.
//!
//! Internal failures (database, unexpected) are logged here, once, with the full cause chain
//! and a fresh `errorId`, inside the span of the request being served. The client gets a
//! generic message and the same `errorId`, never the cause: SQL text, constraint names and
//! Rust type names stay in the log.
//!
//! async-graphql is built with `custom-error-conversion`, which removes its blanket
//! `impl From<T: Display> for Error`. Without that feature, `?` on a `sqlx::Error` inside a
//! resolver would compile and send the database's message to the client; with it, the only
//! way to an `async_graphql::Error` is the conversion below.

use async_graphql::{ErrorExtensionValues, ServerError, Value};

use crate::error::AppError;

/// The codes a client can branch on (Apollo Server's names where one exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    GraphqlParseFailed,
    GraphqlValidationFailed,
    BadUserInput,
    BadRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    Conflict,
    RateLimited,
    TooManySubscriptions,
    PersistedQueryNotFound,
    DocumentNotTrusted,
    Timeout,
    ServiceUnavailable,
    InternalServerError,
}

impl ErrorCode {
    pub const ALL: [Self; 15] = [
        Self::GraphqlParseFailed,
        Self::GraphqlValidationFailed,
        Self::BadUserInput,
        Self::BadRequest,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::NotFound,
        Self::Conflict,
        Self::RateLimited,
        Self::TooManySubscriptions,
        Self::PersistedQueryNotFound,
        Self::DocumentNotTrusted,
        Self::Timeout,
        Self::ServiceUnavailable,
        Self::InternalServerError,
    ];

    /// The code an error carries, if it is one of ours.
    pub fn of(error: &ServerError) -> Option<Self> {
        let code = code_of(error)?;
        Self::ALL.into_iter().find(|known| known.as_str() == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            Self::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::BadRequest => "BAD_REQUEST",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::Conflict => "CONFLICT",
            Self::RateLimited => "RATE_LIMITED",
            Self::TooManySubscriptions => "TOO_MANY_SUBSCRIPTIONS",
            Self::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            Self::DocumentNotTrusted => "DOCUMENT_NOT_TRUSTED",
            Self::Timeout => "TIMEOUT",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Self::InternalServerError => "INTERNAL_SERVER_ERROR",
        }
    }
}

/// The message clients see for internal failures.
pub const INTERNAL_MESSAGE: &str = "Internal server error. Quote the errorId when reporting it.";

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        let mut extensions = ErrorExtensionValues::default();
        let (code, message) = match &err {
            AppError::Unauthenticated => (
                ErrorCode::Unauthenticated,
                "Authentication required: send a valid token in the Authorization header."
                    .to_owned(),
            ),
            AppError::Forbidden(message) => (ErrorCode::Forbidden, message.to_string()),
            AppError::InvalidInput { field, message } => {
                extensions.set("field", field.to_string());
                (ErrorCode::BadUserInput, message.to_string())
            }
            AppError::NotFound { what, ids } => {
                let message = if ids.is_empty() {
                    format!("No {what} with this id.")
                } else {
                    extensions.set(
                        "ids",
                        ids.iter()
                            .map(|id| Value::from(id.as_str()))
                            .collect::<Vec<_>>(),
                    );
                    format!(
                        "No {what} with these ids: {}. Nothing was changed.",
                        ids.join(", ")
                    )
                };
                (ErrorCode::NotFound, message)
            }
            AppError::Conflict(message) => (ErrorCode::Conflict, message.to_string()),
            AppError::TooManySubscriptions(message) => {
                (ErrorCode::TooManySubscriptions, message.to_string())
            }
            AppError::UserGone => (
                ErrorCode::Conflict,
                "Your data was deleted while this request ran; nothing was written. Send it \
                 again to start afresh."
                    .to_owned(),
            ),
            AppError::StaleUpdate { current_updated_at } => {
                extensions.set(
                    "currentUpdatedAt",
                    super::schema::scalars::format_time(*current_updated_at),
                );
                (
                    ErrorCode::Conflict,
                    "The task was changed after expectedUpdatedAt; nothing was written. Read it again and retry."
                        .to_owned(),
                )
            }
            // PostgreSQL cancelled the statement (statement_timeout): the request ran too long.
            AppError::Database(sqlx::Error::Database(db))
                if db.code().as_deref() == Some("57014") =>
            {
                (
                    ErrorCode::Timeout,
                    "The request took longer than this server allows and was cancelled.".to_owned(),
                )
            }
            // Unreachable, restarting, or every connection busy: not the client's fault, and
            // worth a retry. The cause is for operators.
            AppError::Unavailable { cause, .. } => {
                tracing::warn!(error = %cause, "database unavailable");
                (
                    ErrorCode::ServiceUnavailable,
                    "The database is unavailable or busy; try again shortly.".to_owned(),
                )
            }
            AppError::Database(_) | AppError::Internal(_) => return internal(&err),
        };
        extensions.set("code", code.as_str());
        let mut error = async_graphql::Error::new(message);
        error.extensions = Some(extensions);
        if let AppError::Unavailable {
            connection_lost, ..
        } = err
        {
            // Invisible to the client; tells the pipeline to check the database, and to stop
            // sending it work until it answers again (`db::health`).
            error.source = Some(std::sync::Arc::new(DatabaseUnavailable { connection_lost }));
        }
        error
    }
}

/// Marks an error caused by the database being out of reach or busy.
#[derive(Debug, Clone, Copy)]
pub struct DatabaseUnavailable {
    /// A connection failed, rather than the pool staying busy.
    pub connection_lost: bool,
}

/// Logs an unexpected failure with a fresh id and returns the masked client error.
fn internal(err: &AppError) -> async_graphql::Error {
    let error_id = uuid::Uuid::new_v4().to_string();
    let cause = match err {
        AppError::Database(source) => format!("{err}: {source}"),
        AppError::Internal(source) => format!("{err}: {source:#}"),
        other => other.to_string(),
    };
    tracing::error!(error_id = %error_id, error.cause_chain = %cause, "internal error");
    let mut error = async_graphql::Error::new(INTERNAL_MESSAGE);
    mark_internal(
        error
            .extensions
            .get_or_insert_with(ErrorExtensionValues::default),
        error_id,
    );
    error
}

/// What a masked error carries: its code, the id its log line has, and the trace's id.
fn mark_internal(extensions: &mut ErrorExtensionValues, error_id: String) {
    extensions.set("code", ErrorCode::InternalServerError.as_str());
    extensions.set("errorId", error_id);
    if let Some(trace_id) = crate::telemetry::current_trace_id() {
        extensions.set("traceId", trace_id);
    }
}

/// A request-level error (no path) with a code, as the HTTP layer and pipeline build them.
pub fn server_error(code: ErrorCode, message: impl Into<String>) -> ServerError {
    let mut error = ServerError::new(message, None);
    set_code(&mut error, code);
    error
}

/// The code an error carries, if any.
pub fn code_of(error: &ServerError) -> Option<&str> {
    match error.extensions.as_ref()?.get("code")? {
        Value::String(code) => Some(code.as_str()),
        _ => None,
    }
}

pub fn set_code(error: &mut ServerError, code: ErrorCode) {
    error
        .extensions
        .get_or_insert_with(ErrorExtensionValues::default)
        .set("code", code.as_str());
}

/// The last line of defence: an error that reached the response without a code did not come
/// through [`AppError`], nor from a check that classifies what it raises (the pipeline's,
/// `ValidateOnce`'s). Input is coerced before execution, so this is a bug: masked like an
/// internal error, and logged.
pub fn ensure_code(error: &mut ServerError) {
    if code_of(error).is_some() {
        return;
    }
    let error_id = uuid::Uuid::new_v4().to_string();
    tracing::error!(error_id = %error_id, error.cause_chain = %error.message, "uncoded error masked");
    error.message = INTERNAL_MESSAGE.to_owned();
    mark_internal(
        error
            .extensions
            .get_or_insert_with(ErrorExtensionValues::default),
        error_id,
    );
}
