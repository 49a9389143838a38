//! Logins and the doors in front of every route: `POST /api/session` sets an HttpOnly cookie;
//! [`admit`] lets a request through to a route group only with a session of one of the roles
//! that group declares (the table is [`super::app`]); handlers read the user through
//! [`CurrentUser`].
//!
//! Password guessing meets two doors. [`PasswordChecks`] bounds how many argon2 checks run at
//! once (each holds ~19 MiB for its duration), so a storm of logins queues briefly and then
//! gets 503 instead of taking the machine's memory. The throttle counts each attempt in the
//! database before its password is checked (table `login_attempts`): per account and address,
//! and per address across accounts, so neither concurrent guesses nor spraying usernames get
//! past the limits, and every instance of a shared deployment sees the same counts.

use super::error::JsonBody;
use super::{ApiError, AppState};
use crate::domain::Role;
use crate::store::users::{new_token, verify_password_in, User};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

pub const COOKIE_NAME: &str = "madoguchi_session";

/// `POST /api/session` (log in) and `DELETE /api/session` (log out): open to nobody.
pub fn login_router() -> Router<AppState> {
    Router::new().route("/api/session", post(login).delete(logout))
}

/// `GET /api/me`: the logged-in user.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/me", get(me))
}

/// The roles a route group admits, checked before any handler runs: 401 without a valid
/// session, 403 when the session's role is not listed. The user found is handed to the
/// handler's [`CurrentUser`] without a second lookup.
pub fn admit(
    routes: Router<AppState>,
    state: &AppState,
    roles: &'static [Role],
) -> Router<AppState> {
    routes.route_layer(axum::middleware::from_fn_with_state(
        Gate {
            state: state.clone(),
            roles,
        },
        check_gate,
    ))
}

#[derive(Clone)]
struct Gate {
    state: AppState,
    roles: &'static [Role],
}

async fn check_gate(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let user = match session_user(req.headers(), &gate.state).await {
        Ok(Some(user)) => user,
        Ok(None) => return ApiError::Unauthorized.into_response(),
        Err(e) => return e.into_response(),
    };
    if !gate.roles.contains(&user.role) {
        return ApiError::Forbidden.into_response();
    }
    req.extensions_mut().insert(CurrentUser(user));
    next.run(req).await
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

/// The user of the request's session, if it has a valid one.
pub async fn session_user(headers: &HeaderMap, state: &AppState) -> Result<Option<User>, ApiError> {
    let Some(token) = session_token(headers) else {
        return Ok(None);
    };
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    Ok(state.store.session_user(&token).await?)
}

/// How many failed logins the throttle allows within [`WINDOW`]: for one account from one
/// address (so guessing at an agent's account from elsewhere cannot lock the agent out at
/// their own desk), and from one address across all accounts (so spraying usernames is
/// slowed too). Behind a reverse proxy every login comes from the proxy's address: the
/// per-address limit then counts the whole office.
pub const ACCOUNT_LIMIT: i64 = 10;
pub const ADDRESS_LIMIT: i64 = 30;
pub const WINDOW: Duration = Duration::from_secs(10 * 60);

/// The address a throttle counts: IPv4 as is, IPv6 by its /64 (one subscriber's network).
fn throttle_address(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The 429 answer: how long until the window that refused ends.
fn too_many(window_start: &str) -> ApiError {
    let left = crate::store::parse_ts(window_start)
        .and_then(|start| {
            let ends = start + chrono::Duration::from_std(WINDOW).ok()?;
            (ends - chrono::Utc::now()).to_std().ok()
        })
        .unwrap_or(WINDOW);
    ApiError::TooMany(format!(
        "too many failed logins; try again in {} minutes",
        left.as_secs().div_ceil(60).max(1)
    ))
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<Login>,
) -> Result<impl IntoResponse, ApiError> {
    let username = body.username.trim().to_string();
    let address = throttle_address(peer.ip());
    // (A username longer than any real one still makes a short key.)
    let account: String = username.to_lowercase().chars().take(128).collect();
    let account_key = format!("account {address} {account}");
    let address_key = format!("address {address}");
    let now = chrono::Utc::now();
    let (now_s, stale) = (
        crate::store::ts(now),
        crate::store::ts(now - chrono::Duration::from_std(WINDOW).unwrap_or_default()),
    );
    // Count the attempt first, check the password after: concurrent guesses are each
    // counted before any of them is checked.
    let (tries, since) = state
        .store
        .reserve_login_attempt(&account_key, &now_s, &stale)
        .await?;
    if tries > ACCOUNT_LIMIT {
        return Err(too_many(&since));
    }
    let (tries, since) = state
        .store
        .reserve_login_attempt(&address_key, &now_s, &stale)
        .await?;
    if tries > ADDRESS_LIMIT {
        state.store.release_login_attempt(&account_key).await?;
        return Err(too_many(&since));
    }

    let found = state.store.user_for_login(&username).await?;
    let password = body.password;
    let checked = state
        .password_checks
        .run(move |memory| {
            // Verify against a real hash of nothing when the user is unknown, so timing does
            // not tell which usernames exist.
            static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
            let (user, hash) = match found {
                Some((u, h)) => (Some(u), h),
                None => (
                    None,
                    DUMMY
                        .get_or_init(|| crate::store::users::hash_password("no such user").ok())
                        .clone()
                        .unwrap_or_default(),
                ),
            };
            user.filter(|_| verify_password_in(&password, &hash, memory))
        })
        .await;
    let user = match checked {
        Ok(user) => user,
        Err(e) => {
            // The password was never checked: the attempt does not count.
            state.store.release_login_attempt(&account_key).await?;
            state.store.release_login_attempt(&address_key).await?;
            return Err(e);
        }
    };
    let Some(user) = user else {
        tracing::warn!(username = %username, %peer, "failed login");
        state
            .store
            .audit(None, "login_failed", None, &username, &peer.to_string())
            .await?;
        return Err(ApiError::BadLogin);
    };
    state.store.clear_login_attempts(&account_key).await?;
    state.store.release_login_attempt(&address_key).await?;
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
        "{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        state.settings.session_hours * 3600,
        secure_attr(&state),
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(e.into()))?,
    );
    Ok((headers, Json(json!({"user": user}))))
}

/// `; Secure` when staff reach the server over https (`MADOGUCHI_PUBLIC_URL`).
fn secure_attr(state: &AppState) -> &'static str {
    if state.settings.secure_cookies() {
        "; Secure"
    } else {
        ""
    }
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(token) = session_token(&headers) {
        state.store.delete_session(&token).await?;
    }
    let cookie = format!(
        "{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        secure_attr(&state)
    );
    let mut out = HeaderMap::new();
    out.insert(
        SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(e.into()))?,
    );
    Ok((StatusCode::NO_CONTENT, out))
}

async fn me(user: CurrentUser) -> Json<serde_json::Value> {
    Json(json!({"user": user.0}))
}

/// The bound on concurrent password checks. argon2 holds ~19 MiB per check for its whole
/// run; without a bound, 256 logins in flight took 4.96 GB. A check waits up to
/// [`PasswordChecks::WAIT`] for a permit, then the login answers 503. Each permit comes with a
/// memory buffer that is reused from check to check, so the server's memory stays flat at
/// `size` × 19 MiB whichever blocking thread runs the check. The permit travels into the
/// blocking task: a client that hangs up does not free it before the hash is done.
#[derive(Clone)]
pub struct PasswordChecks {
    permits: Arc<Semaphore>,
    /// argon2 working memory, one buffer per permit at most; held only while a check runs
    /// (a short lock to take or give back one, never across `.await`).
    memory: Arc<Mutex<Vec<Vec<argon2::Block>>>>,
    size: usize,
}

impl PasswordChecks {
    pub const WAIT: Duration = Duration::from_secs(3);

    /// One check per two cores, at least one and at most four: a storm of logins leaves the
    /// other cores to the calls and pops, and holds at most `size` × 19 MiB.
    pub fn for_this_machine() -> PasswordChecks {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        PasswordChecks::new((cores / 2).clamp(1, 4))
    }

    pub fn new(size: usize) -> PasswordChecks {
        PasswordChecks {
            permits: Arc::new(Semaphore::new(size)),
            memory: Arc::default(),
            size,
        }
    }

    /// How many checks may run at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// How many checks are running now.
    pub fn running(&self) -> usize {
        self.size - self.permits.available_permits()
    }

    /// Runs `check` on the blocking pool, with a working-memory buffer, once a permit is free.
    pub async fn run<T: Send + 'static>(
        &self,
        check: impl FnOnce(&mut Vec<argon2::Block>) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = tokio::time::timeout(Self::WAIT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| ApiError::Busy)?
            .map_err(|e| ApiError::Internal(e.into()))?;
        let pool = self.memory.clone();
        tokio::task::spawn_blocking(move || {
            let take = || pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut memory = take().unwrap_or_default();
            let out = check(&mut memory);
            pool.lock().unwrap_or_else(|e| e.into_inner()).push(memory);
            drop(permit);
            out
        })
        .await
        .map_err(|e| ApiError::Internal(e.into()))
    }
}

/// The logged-in user of a request: put there by [`admit`], or looked up from the session
/// cookie; rejects with 401 without a valid session.
#[derive(Clone)]
pub struct CurrentUser(pub User);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(user) = parts.extensions.get::<CurrentUser>() {
            return Ok(user.clone());
        }
        match session_user(&parts.headers, state).await? {
            Some(u) => Ok(CurrentUser(u)),
            None => Err(ApiError::Unauthorized),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::throttle_address;

    #[test]
    fn an_ipv6_subscriber_is_counted_by_its_network() {
        let a = throttle_address("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = throttle_address("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(
            throttle_address("::ffff:10.0.0.5".parse().unwrap()),
            "10.0.0.5"
        );
        assert_eq!(throttle_address("10.0.0.5".parse().unwrap()), "10.0.0.5");
    }
}
