//! Logins: `POST /api/session` sets an HttpOnly cookie; every other `/api/` route and `/ws`
//! read it through [`CurrentUser`].

use super::error::JsonBody;
use super::{ApiError, AppState};
use crate::domain::Role;
use crate::store::users::{new_token, verify_password, User};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const COOKIE_NAME: &str = "madoguchi_session";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/session", post(login).delete(logout))
        .route("/api/me", get(me))
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

/// The token in the request's session cookie, if any.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_string())
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<Login>,
) -> Result<impl IntoResponse, ApiError> {
    let throttle_key = (peer.ip(), body.username.trim().to_lowercase());
    if let Some(wait) = state.login_throttle.blocked(&throttle_key) {
        return Err(ApiError::TooMany(format!(
            "too many failed logins; try again in {} minutes",
            wait.as_secs().div_ceil(60)
        )));
    }
    let found = state.store.user_for_login(body.username.trim()).await?;
    // Verify against a real hash of nothing when the user is unknown, so timing does not tell.
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let (user, hash) = match found {
        Some((u, h)) => (Some(u), h),
        None => {
            let dummy = match DUMMY.get() {
                Some(d) => d.clone(),
                None => {
                    let d = tokio::task::spawn_blocking(|| {
                        crate::store::users::hash_password("no such user")
                    })
                    .await
                    .map_err(|e| ApiError::Internal(e.into()))??;
                    DUMMY.get_or_init(|| d).clone()
                }
            };
            (None, dummy)
        }
    };
    let password = body.password;
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let Some(user) = user.filter(|_| ok) else {
        state.login_throttle.failed(throttle_key);
        tracing::warn!(username = %body.username, %peer, "failed login");
        state
            .store
            .audit(
                None,
                "login_failed",
                None,
                body.username.trim(),
                &peer.to_string(),
            )
            .await?;
        return Err(ApiError::Unauthorized);
    };
    let token = new_token()?;
    state
        .store
        .create_session(user.id, &token, state.settings.session_hours)
        .await?;
    state
        .store
        .audit(Some(user.id), "login", None, "", &peer.to_string())
        .await?;
    let cookie = format!(
        "{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        state.settings.session_hours * 3600
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(e.into()))?,
    );
    Ok((headers, Json(json!({"user": user}))))
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(token) = session_token(&headers) {
        state.store.delete_session(&token).await?;
    }
    let mut out = HeaderMap::new();
    out.insert(
        SET_COOKIE,
        HeaderValue::from_static(
            "madoguchi_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        ),
    );
    Ok((StatusCode::NO_CONTENT, out))
}

async fn me(user: CurrentUser) -> Json<serde_json::Value> {
    Json(json!({"user": user.0}))
}

/// Failed logins per (address, username): after [`LoginThrottle::LIMIT`] failures within
/// [`LoginThrottle::WINDOW`] that pair is refused until the window has passed. Keyed by the
/// pair, so guessing at one account from one desk cannot lock the agent out at their own.
#[derive(Clone, Default)]
pub struct LoginThrottle(Arc<Mutex<HashMap<DeskAccount, (u32, Instant)>>>);

/// Where a login came from and which account it tried.
type DeskAccount = (IpAddr, String);

impl LoginThrottle {
    pub const LIMIT: u32 = 10;
    pub const WINDOW: Duration = Duration::from_secs(10 * 60);

    /// How long the pair must still wait, if it is blocked.
    fn blocked(&self, key: &DeskAccount) -> Option<Duration> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (count, since) = map.get(key)?;
        let left = Self::WINDOW.checked_sub(since.elapsed())?;
        (*count >= Self::LIMIT).then_some(left)
    }

    fn failed(&self, key: DeskAccount) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Forget old windows, so the map cannot grow without bound.
        map.retain(|_, (_, since)| since.elapsed() < Self::WINDOW);
        let entry = map.entry(key).or_insert((0, Instant::now()));
        entry.0 += 1;
    }
}

/// The logged-in user of a request; rejects with 401 without a valid session.
pub struct CurrentUser(pub User);

impl CurrentUser {
    /// 403 unless the user has one of these roles (admins may do everything).
    pub fn require(&self, roles: &[Role]) -> Result<&User, ApiError> {
        if self.0.role == Role::Admin || roles.contains(&self.0.role) {
            Ok(&self.0)
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = session_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::Unauthorized);
        }
        match state.store.session_user(&token).await? {
            Some(u) => Ok(CurrentUser(u)),
            None => Err(ApiError::Unauthorized),
        }
    }
}

/// The roles that work the phones.
pub const PHONE_ROLES: &[Role] = &[Role::Agent, Role::Supervisor];
