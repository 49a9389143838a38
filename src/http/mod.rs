//! axum routes. Each resource module exposes `router()`, merged here; [`app`] builds the whole
//! router from an [`AppState`], separate from serving, so tests can call it.

pub mod agent;
pub mod assets;
pub mod bookings;
pub mod callbacks;
pub mod calls;
pub mod dial;
pub mod error;
pub mod exports;
pub mod inquiries;
pub mod ops;
pub mod planning;
pub mod queues;
pub mod reports;
pub mod residents;
pub mod session;
pub mod slot_feed;
pub mod standby;
pub mod supervisor;
pub mod vaccinations;
pub mod venue;
pub mod webhook;
pub mod ws;

use crate::calls::AgentDirectory;
use crate::domain::Role;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::pbx::LinkHealth;
use crate::settings::Settings;
use crate::store::Store;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

pub use error::ApiError;
pub use session::CurrentUser;

/// Everything a handler may need. Cheap to clone: every field is a handle.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub hub: Hub,
    pub metrics: Arc<Metrics>,
    pub settings: Arc<Settings>,
    pub directory: AgentDirectory,
    /// The live queue board the tracker keeps (for `/api/queues`).
    pub board: crate::calls::Board,
    /// Health of each PBX link, for /readyz and /metrics.
    pub links: Arc<Vec<Arc<dyn LinkHealth>>>,
    /// The bound on concurrent argon2 checks (each holds ~19 MiB while it runs).
    pub password_checks: session::PasswordChecks,
    /// Open WebSocket connections (a gauge for /metrics).
    pub ws_clients: Arc<std::sync::atomic::AtomicI64>,
    /// The call log writer's health and backlog (for /readyz and /metrics).
    pub call_log: Arc<crate::calls::writer::WriterStatus>,
    /// Events from PBXes that push them over HTTP (the webhook), to the tracker.
    pub pbx_events: tokio::sync::mpsc::Sender<crate::pbx::PbxEvent>,
    /// Slots whose seat counts changed, published as `slot_update` by one task
    /// ([`slot_feed::SlotFeed::run`]) so no change waits for another's read-back.
    pub slot_feed: Arc<slot_feed::SlotFeed>,
    /// PBX links that can place a click-to-dial (`POST /api/dial`), first ready one wins.
    pub dialers: Arc<Vec<Arc<dyn crate::pbx::dial::Dialer>>>,
    /// Dials waiting for the PBX's word, with the resident and callback to link the call to.
    pub dial_links: crate::http::dial::DialLinks,
}

/// Who may use which route. Every route belongs to exactly one group below; the README's
/// roles table repeats this one and `tests/it/roles.rs` walks every route as every role.
/// Nobody (no session): `/healthz`, `/readyz` (details only to admins), `/metrics`,
/// `/api/openapi.json`, `/api/session`, `/` and `/assets/…`.
pub mod roles {
    use super::Role::{self, *};
    /// Every staff login.
    pub const STAFF: &[Role] = &[Agent, Supervisor, Planner, Venue, Admin];
    /// The phones: whoever takes or watches calls.
    pub const PHONES: &[Role] = &[Agent, Supervisor, Admin];
    /// Whoever reads the ledger's residents.
    pub const LEDGER: &[Role] = &[Agent, Supervisor, Planner, Venue, Admin];
    /// Whoever sees seats and moves appointments: the phones and the planners.
    pub const BOOKINGS: &[Role] = &[Agent, Supervisor, Planner, Admin];
    /// Whoever plans venues, slots, the assignment and the buses.
    pub const PLANNING: &[Role] = &[Planner, Admin];
    /// Whoever supervises the phones: the live board, the reports.
    pub const SUPERVISORS: &[Role] = &[Supervisor, Admin];
    /// Whoever works at a venue: reception, check-ins, 予診票, doses, vials.
    pub const VENUE: &[Role] = &[Venue, Admin];
    /// Whoever watches the venues' day: their progress, doses and vials.
    pub const VENUE_WATCH: &[Role] = &[Venue, Supervisor, Planner, Admin];
    /// Whoever sends the records to VRS and the city's systems (the records clerk's page).
    pub const RECORDS: &[Role] = &[Supervisor, Planner, Admin];
}

/// The largest request body accepted (answered 413 above it).
pub const BODY_LIMIT: usize = 1024 * 1024;
/// The longest a handler may take, reading the body included (answered 503 after it).
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(30);

/// The Content-Security-Policy of every response: no inline script, nothing from elsewhere,
/// never framed.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn app(state: AppState) -> Router {
    use roles::*;
    let admit = |roles, routes| session::admit(routes, &state, roles);
    let routes = Router::new()
        // nobody: health and metrics for monitoring, logging in, the browser's files
        .merge(ops::router())
        .merge(session::login_router())
        .merge(assets::router())
        // nobody, with the webhook token in the path: a PBX reporting calls
        .merge(webhook::router())
        // STAFF: /api/me, /api/inquiry-categories
        .merge(admit(
            STAFF,
            session::router().merge(inquiries::categories_router()),
        ))
        // PHONES: /ws, /api/calls, /api/calls/{id}/resident, /api/inquiries, /api/queues,
        // /api/residents/{id}/phones, /api/agent/state, /api/dial
        .merge(admit(
            PHONES,
            ws::router()
                .merge(calls::router())
                .merge(residents::phones_router())
                .merge(agent::router())
                .merge(inquiries::router())
                .merge(queues::router())
                .merge(callbacks::router())
                .merge(dial::router()),
        ))
        // LEDGER: /api/residents, /api/residents/{id}
        .merge(admit(LEDGER, residents::router()))
        // BOOKINGS: /api/slots, /api/bookings, /api/bookings/{id}/move, /ws/slots,
        // /api/bookings/{id}/alternatives, /api/bookings/{id}/cancel,
        // /api/bookings/{id}/move-together, POST /api/bookings
        .merge(admit(
            BOOKINGS,
            bookings::router().merge(ws::slots_router()),
        ))
        // BOOKINGS: /api/venues, /api/runs
        .merge(admit(BOOKINGS, planning::bookings_router()))
        // PLANNING: /api/venues/{id}/slots, /api/slots/{id} (PATCH), /api/assign,
        // /api/reshuffle, /api/transport/plan, /api/runs/{id}/manifest[.csv], /api/notices.csv
        .merge(admit(PLANNING, planning::router()))
        // SUPERVISORS: /ws/supervisor
        .merge(admit(SUPERVISORS, supervisor::router()))
        // SUPERVISORS: /api/reports, /api/reports.csv
        .merge(admit(SUPERVISORS, reports::router()))
        // VENUE: /api/venue/reception, /api/venue/checkins, /api/venue/questionnaires,
        // POST /api/venue/vials…, POST /api/vaccinations…
        .merge(admit(VENUE, venue::router().merge(vaccinations::router())))
        // VENUE_WATCH: /api/venue/progress, GET /api/venue/vials, GET /api/vaccinations,
        // /ws/venues
        .merge(admit(
            VENUE_WATCH,
            venue::progress_router().merge(vaccinations::read_router()),
        ))
        // RECORDS: /api/exports/vrs, /api/exports/vrs/{id}, /api/exports/ledger
        .merge(admit(RECORDS, exports::router()))
        // Standby: POST /api/standby (BOOKINGS); GET /api/venue/standby (VENUE_WATCH);
        // POST /api/venue/standby/{id}/take|remove (VENUE)
        .merge(admit(BOOKINGS, standby::router()))
        .merge(admit(VENUE_WATCH, standby::read_router()))
        .merge(admit(VENUE, standby::venue_router()))
        // An unknown path answers like every other error: JSON saying so.
        .fallback(|| async { ApiError::NotFound });
    let trusted = Arc::new(state.settings.trusted_origins());
    routes
        .layer(axum::middleware::from_fn_with_state(trusted, same_origin))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            HANDLER_TIMEOUT,
        ))
        .layer(security_header(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(security_header(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(security_header(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(security_header(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .with_state(state)
}

fn security_header(
    name: header::HeaderName,
    value: HeaderValue,
) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, value)
}

/// Cross-site request forgery and cross-site WebSocket hijacking: a state-changing request
/// (POST, PUT, PATCH, DELETE) or a WebSocket upgrade that carries an `Origin` must come from
/// a page of this server (the `Host` it was sent to) or of a configured origin
/// (`MADOGUCHI_PUBLIC_URL`, `MADOGUCHI_ALLOWED_ORIGINS`); any other answers 403. Browsers
/// always send `Origin` on these; clients that are not browsers (the CLI, curl, the PBX
/// webhook) send none and pass.
async fn same_origin(
    State(trusted): State<Arc<Vec<String>>>,
    req: Request,
    next: Next,
) -> Response {
    let changes = !matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    let upgrade = req.headers().contains_key(header::UPGRADE);
    if changes || upgrade {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let allowed = origin
                .to_str()
                .ok()
                .is_some_and(|o| origin_allowed(o, host, &trusted));
            if !allowed {
                tracing::warn!(origin = ?origin, method = %req.method(), path = %req.uri().path(), "cross-site request refused");
                return ApiError::ForeignOrigin.into_response();
            }
        }
    }
    next.run(req).await
}

/// Whether `origin` (as a browser sends it) is this server's own (`host`, the `Host` header)
/// or one of the `trusted` origins.
fn origin_allowed(origin: &str, host: &str, trusted: &[String]) -> bool {
    let Some(origin) = crate::settings::origin_of(origin) else {
        return false; // `null`, or not http(s)
    };
    if trusted.contains(&origin) {
        return true;
    }
    let host = host.trim().to_ascii_lowercase();
    if host.is_empty() {
        return false;
    }
    let (scheme, authority) = origin.split_once("://").unwrap_or(("", &origin));
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    authority == host || format!("{authority}{default_port}") == host
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn origins() {
        let trusted = vec!["https://madoguchi.city.example".to_string()];
        assert!(origin_allowed(
            "http://127.0.0.1:8080",
            "127.0.0.1:8080",
            &[]
        ));
        assert!(origin_allowed("https://Desk.Example", "desk.example", &[]));
        assert!(origin_allowed(
            "http://desk.example",
            "desk.example:80",
            &[]
        ));
        assert!(origin_allowed(
            "https://madoguchi.city.example",
            "10.0.0.5:8080",
            &trusted
        ));
        assert!(!origin_allowed(
            "https://evil.example",
            "desk.example",
            &trusted
        ));
        assert!(!origin_allowed(
            "http://127.0.0.1:9999",
            "127.0.0.1:8080",
            &[]
        ));
        assert!(!origin_allowed("null", "desk.example", &[]));
        assert!(!origin_allowed(
            "http://desk.example.evil",
            "desk.example",
            &[]
        ));
        assert!(!origin_allowed("http://desk.example", "", &[]));
    }
}
