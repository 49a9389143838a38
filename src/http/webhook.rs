//! `POST /api/pbx/webhook/{token}`: PBXes that can only call a URL report calls here, in the
//! Zammad generic-CTI shape (JSON or form data; [`crate::pbx::webhook`]). The token in the
//! path is the credential (`MADOGUCHI_WEBHOOK_TOKEN`); without one configured the route does
//! not exist. The answer is `{}`, as Zammad answers.

use super::AppState;
use crate::pbx::webhook::{token_matches, WebhookEvent};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use std::time::Duration;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/pbx/webhook/{token}", post(receive))
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

async fn receive(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(expected) = state.settings.webhook_token.as_deref() else {
        return answer(StatusCode::NOT_FOUND, json!({"error": "not found"}));
    };
    if !token_matches(&token, expected) {
        tracing::warn!("webhook call with a wrong token refused");
        return answer(StatusCode::UNAUTHORIZED, json!({"error": "wrong token"}));
    }
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let parsed = if kind.starts_with("application/json") {
        WebhookEvent::from_json(&body)
    } else if kind.starts_with("application/x-www-form-urlencoded") {
        WebhookEvent::from_form(&body)
    } else {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"error": "send application/json or application/x-www-form-urlencoded"}),
        );
    };
    let events = match parsed.and_then(|ev| ev.translate(chrono::Utc::now())) {
        Ok(events) => events,
        Err(e) => {
            return answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": e.to_string(), "field": e.field}),
            )
        }
    };
    for ev in events {
        // The tracker never waits on the database, so this only waits if it is far behind.
        match tokio::time::timeout(Duration::from_secs(2), state.pbx_events.send(ev)).await {
            Ok(Ok(())) => {}
            _ => {
                return answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "the call tracker is not taking events; retry"}),
                )
            }
        }
    }
    answer(StatusCode::OK, json!({}))
}
