//! The one error type every HTTP handler returns. It renders
//! `{"error": {"code": "...", "message": "..."}}` with a fitting status, and the
//! JSON, path and query extractors are configured to fail the same way, so a
//! client never sees a panic, an HTML page or an unexplained 500.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// An error as a client sees it: a status, a stable machine code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `insufficient_funds`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// An unexpected failure: logged in full, shown to the client without internals.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }
}

impl From<crate::money::MoneyError> for ApiError {
    fn from(err: crate::money::MoneyError) -> Self {
        Self::unprocessable(err.code(), err.to_string())
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(err: crate::db::DbError) -> Self {
        match err {
            crate::db::DbError::Pool(_) => Self::unavailable("database unavailable"),
            other => Self::internal(other),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(ErrorBody {
            error: ErrorDetail { code: self.code.to_string(), message: self.message.clone() },
        })
    }
}

/// JSON bodies of at most `limit` bytes, their errors as [`ApiError`]s.
pub fn json_config(limit: usize) -> actix_web::web::JsonConfig {
    use actix_web::error::JsonPayloadError;
    actix_web::web::JsonConfig::default().limit(limit).error_handler(|err, _req| {
        let api = match &err {
            JsonPayloadError::ContentType => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ),
            JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", err.to_string())
            }
            JsonPayloadError::Deserialize(de) if de.is_data() => {
                ApiError::unprocessable("invalid_body", de.to_string())
            }
            _ => ApiError::bad_request("malformed_json", err.to_string()),
        };
        api.into()
    })
}

/// Extractor configuration that turns malformed JSON, paths and queries into
/// [`ApiError`]s. Every service app gets it through [`crate::service`].
pub fn configure_extractors(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.app_data(json_config(64 * 1024))
        .app_data(
            actix_web::web::PathConfig::default()
                .error_handler(|err, _req| ApiError::not_found("not_found", err.to_string()).into()),
        )
        .app_data(
            actix_web::web::QueryConfig::default()
                .error_handler(|err, _req| ApiError::bad_request("invalid_query", err.to_string()).into()),
        );
}

/// The body of an unknown route.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found("not_found", "no such route"))
}
