//! How the server API fails: transport problems are HTTP statuses, problems with a
//! well-formed request are answered 200 with `{"error":{...}}`, as Centrifugo's API does.

use crate::channel::ChannelError;
use herald_shared::http::{json, Body};
use herald_shared::protocol::ErrorCode;
use hyper::{Response, StatusCode};
use serde_json::json as j;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong API key.
    #[error("unauthorized")]
    Unauthorized,
    /// The body is not what the method takes.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The body exceeds `HERALD_MAX_API_BODY`.
    #[error("request body too large")]
    TooLarge,
    /// No such method.
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    /// A protocol-level error about a well-formed request.
    #[error("{}", .0.message())]
    Protocol(ErrorCode),
}

impl ApiError {
    /// The HTTP response for this error.
    pub(super) fn response(&self) -> Response<Body> {
        let (status, body) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                j!({"error": {"code": 401, "message": "unauthorized"}}),
            ),
            ApiError::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                j!({"error": {"code": ErrorCode::BadRequest.code(), "message": format!("bad request: {m}")}}),
            ),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                j!({"error": {"code": ErrorCode::LimitExceeded.code(), "message": "request body too large"}}),
            ),
            ApiError::UnknownMethod(m) => (
                StatusCode::NOT_FOUND,
                j!({"error": {"code": ErrorCode::MethodNotFound.code(), "message": format!("method not found: {m}")}}),
            ),
            ApiError::Protocol(c) => (
                StatusCode::OK,
                j!({"error": {"code": c.code(), "message": c.message()}}),
            ),
        };
        json(status, serde_json::to_vec(&body).unwrap_or_default())
    }
}

impl From<ErrorCode> for ApiError {
    fn from(c: ErrorCode) -> Self {
        ApiError::Protocol(c)
    }
}

impl From<ChannelError> for ApiError {
    fn from(e: ChannelError) -> Self {
        match e {
            // As Centrifugo: a well-formed request naming a bad channel is 200 + 107.
            ChannelError::BadName(why) => {
                tracing::debug!(reason = why, "server API request refused");
                ApiError::Protocol(ErrorCode::BadRequest)
            }
            ChannelError::Code(c) => ApiError::Protocol(c),
        }
    }
}

impl ApiError {
    /// The metrics label of the outcome.
    pub(super) fn label(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::TooLarge => "too_large",
            ApiError::UnknownMethod(_) => "unknown_method",
            ApiError::Protocol(_) => "error",
        }
    }
}
