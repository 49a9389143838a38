//! `POST /api/inquiries`: the agent's note of what was asked and answered, saved against the call;
//! `GET /api/inquiry-categories`: the categories a note may have.

use super::error::JsonBody;
use super::session::CurrentUser;
use super::{ApiError, AppState};
use crate::store::inquiries::{InquiryRow, NewInquiry, CATEGORIES};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/inquiries", post(create))
}

pub fn categories_router() -> Router<AppState> {
    Router::new().route("/api/inquiry-categories", get(categories))
}

async fn categories() -> Json<&'static [&'static str]> {
    Json(CATEGORIES)
}

async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(n): JsonBody<NewInquiry>,
) -> Result<(StatusCode, Json<InquiryRow>), ApiError> {
    n.check()
        .map_err(|(field, msg)| ApiError::invalid(field, msg))?;
    if let Some(rid) = n.resident_id {
        if state.store.resident(rid).await?.is_none() {
            return Err(ApiError::invalid("resident_id", "no such resident"));
        }
    }
    let row = state
        .store
        .insert_inquiry(user.id, &n, &crate::store::now())
        .await?;
    state
        .store
        .audit(
            Some(user.id),
            "inquiry",
            n.resident_id,
            &n.category,
            &peer.to_string(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(row)))
}
