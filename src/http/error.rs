//! One error type for every handler. Internal errors are logged with their cause and answered
//! with a generic message; bad input names the field at fault.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("login required")]
    Unauthorized,
    #[error("wrong username or password")]
    BadLogin,
    #[error("your role may not do this")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooMany(String),
    #[error("the request body is too large")]
    TooLarge,
    #[error("requests from another site's pages are refused")]
    ForeignOrigin,
    #[error("the server is busy; try again in a moment")]
    Busy,
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            field,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::Unauthorized | ApiError::BadLogin => {
                (StatusCode::UNAUTHORIZED, json!({"error": self.to_string()}))
            }
            ApiError::Forbidden => (StatusCode::FORBIDDEN, json!({"error": self.to_string()})),
            ApiError::NotFound => (StatusCode::NOT_FOUND, json!({"error": self.to_string()})),
            ApiError::Invalid { field, message } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": message, "field": field}),
            ),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, json!({"error": m})),
            ApiError::TooMany(m) => (StatusCode::TOO_MANY_REQUESTS, json!({"error": m})),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": self.to_string()}),
            ),
            ApiError::ForeignOrigin => (StatusCode::FORBIDDEN, json!({"error": self.to_string()})),
            ApiError::Busy => {
                let body = Json(json!({"error": self.to_string()}));
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(axum::http::header::RETRY_AFTER, "1")],
                    body,
                )
                    .into_response();
            }
            ApiError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "internal error; the details are in the server log"}),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}

/// A refused change names its rule (409) or its field (422); the rest is internal.
impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::Conflict { constraint } => {
                ApiError::Conflict(format!("refused by the rule {constraint}"))
            }
            StoreError::Invalid { field } => {
                ApiError::invalid(field, format!("{field} is not acceptable"))
            }
            StoreError::NotFound => ApiError::NotFound,
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

/// A JSON body that answers 422 with the serde message (naming the field) instead of axum's
/// plain-text rejection; a body over the limit answers 413. No body at all reads as `{}`: a
/// change that needs nothing more (a cancel) may be posted bare, and one that does is told
/// which field is missing rather than which Content-Type to send.
pub struct JsonBody<T>(pub T);

/// True when the request says it carries no body, and names no type other than JSON (an empty
/// form post stays refused: a third guard against cross-site posts, after the Origin check
/// and the SameSite cookie).
fn bodiless(headers: &axum::http::HeaderMap) -> bool {
    let json_or_none = headers
        .get(axum::http::header::CONTENT_TYPE)
        .is_none_or(|v| {
            v.to_str().is_ok_and(|t| {
                t.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            })
        });
    if !json_or_none {
        return false;
    }
    let length = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok());
    match length {
        Some(n) => n.trim() == "0",
        None => !headers.contains_key(axum::http::header::TRANSFER_ENCODING),
    }
}

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        if bodiless(req.headers()) {
            return serde_json::from_str("{}")
                .map(JsonBody)
                .map_err(|e| ApiError::invalid("body", format!("the request has no body: {e}")));
        }
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::TooLarge)
            }
            Err(rejection) => Err(ApiError::invalid("body", rejection.body_text())),
        }
    }
}
