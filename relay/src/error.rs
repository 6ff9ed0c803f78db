//! Errors: the JSON `{"error": "..."}` answers of the HTTP API, and failures to start.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pacerelle_core::wire::http::ErrorBody;

/// Why a request was refused; every variant answers with a JSON `{"error": ...}` body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed JSON, fields of the wrong type, missing parameters.
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing or wrong token.
    #[error("missing or invalid token")]
    Unauthorized,
    /// 403: not allowed for this caller.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404: unknown agent, blob, conversation, route.
    #[error("unknown {0}")]
    NotFound(&'static str),
    /// 405: the route exists with another method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: conflicts with what exists.
    #[error("{0}")]
    Conflict(&'static str),
    /// 413: the body is over the stated limit.
    #[error("body exceeds the limit of {0} bytes")]
    TooLarge(usize),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        (status, axum::Json(ErrorBody { error: self.to_string() })).into_response()
    }
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The background runtime could not be started.
    #[error("cannot start the relay's runtime: {0}")]
    Runtime(std::io::Error),
}
