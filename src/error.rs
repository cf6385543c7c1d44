//! The one error type of the service and its single mapping to gRPC statuses.
//!
//! Handlers return `Result<_, Error>`; the conversion to `tonic::Status` is the
//! only place that decides codes and details, and the only place that logs
//! internal failures (whose details never reach the client).

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every error this service raises.
pub const ERROR_DOMAIN: &str = "contactsd";

/// One invalid field of a request, named by its path (e.g. `contact.emails[1].email`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; nothing was written.
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{0} not found")]
    NotFound(String),
    /// The caller's etag is not the contact's current one.
    #[error("the contact changed since the etag was read")]
    EtagMismatch,
    #[error("{0}")]
    AlreadyExists(String),
    /// The feed no longer holds the changes after a watch cursor.
    #[error("the cursor is older than the change feed's retention")]
    CursorExpired,
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    PermissionDenied(String),
    /// The database cannot be reached; the call may be retried.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected database error: logged, never shown to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// Turns a list of violations into `Ok(())` when it is empty.
    pub fn check(violations: Vec<FieldViolation>) -> Result<()> {
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Self::InvalidArgument(violations))
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        match error {
            Error::InvalidArgument(violations) => {
                let message = describe(&violations);
                let details = ErrorDetails::with_bad_request(
                    violations
                        .into_iter()
                        .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
                        .collect::<Vec<_>>(),
                );
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::NotFound(what) => Status::not_found(format!("{what} not found")),
            Error::EtagMismatch => Status::with_error_details(
                Code::Aborted,
                "the contact changed since the etag was read; read it again and retry",
                ErrorDetails::with_error_info("ETAG_MISMATCH", ERROR_DOMAIN, HashMap::new()),
            ),
            Error::AlreadyExists(message) => Status::already_exists(message),
            Error::CursorExpired => Status::with_error_details(
                Code::OutOfRange,
                "the cursor is older than the change feed keeps changes; list again and watch from its watch_cursor",
                ErrorDetails::with_error_info("CURSOR_EXPIRED", ERROR_DOMAIN, HashMap::new()),
            ),
            Error::Unauthenticated(message) => Status::unauthenticated(message),
            Error::PermissionDenied(message) => Status::permission_denied(message),
            Error::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                Status::unavailable("the database is unavailable; retry later")
            }
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        // Connection-level failures (closed socket, server shutting down or not yet
        // accepting connections) and waits cut short are outages the client may
        // retry; anything else the database rejects is a bug on our side.
        let outage = error.is_closed()
            || error.as_db_error().is_none() && error.code().is_none()
            || error.code().is_some_and(|code| {
                code.code().starts_with("08")
                    || *code == SqlState::ADMIN_SHUTDOWN
                    || *code == SqlState::CRASH_SHUTDOWN
                    || *code == SqlState::CANNOT_CONNECT_NOW
                    || *code == SqlState::TOO_MANY_CONNECTIONS
                    // A lock or statement timeout an administrator set.
                    || *code == SqlState::LOCK_NOT_AVAILABLE
                    || *code == SqlState::QUERY_CANCELED
            });
        if outage {
            Error::Unavailable(error.to_string())
        } else {
            Error::Internal(format!("{error:?}"))
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match error {
            PoolError::Backend(error) => error.into(),
            // Timeouts, or creating a connection failed: the database is out of reach.
            other => Error::Unavailable(other.to_string()),
        }
    }
}
