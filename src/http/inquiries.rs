//! `POST /api/inquiries`: the agent's note of what was asked and answered, saved against the call;
//! `GET /api/inquiry-categories`: the categories a note may have.

use super::error::JsonBody;
use super::session::CurrentUser;
use super::{ApiError, AppState};
use crate::domain::{InquiryCategory, InquiryForm, NewInquiry};
use crate::store::inquiries::InquiryRow;
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
    Json(InquiryCategory::CODES)
}

async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(form): JsonBody<InquiryForm>,
) -> Result<(StatusCode, Json<InquiryRow>), ApiError> {
    let n = NewInquiry::parse(form).map_err(|e| ApiError::invalid(e.field, e.reason))?;
    if let Some(rid) = n.resident_id() {
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
            n.resident_id(),
            n.category().code(),
            &peer.to_string(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(row)))
}
