//! axum routes. Each resource module exposes `router()`, merged here; [`app`] builds the whole
//! router from an [`AppState`], separate from serving, so tests can call it.

pub mod assets;
pub mod bookings;
pub mod calls;
pub mod error;
pub mod inquiries;
pub mod ops;
pub mod queues;
pub mod residents;
pub mod session;
pub mod ws;

use crate::calls::AgentDirectory;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::pbx::LinkHealth;
use crate::settings::Settings;
use crate::store::Store;
use axum::Router;
use std::sync::Arc;

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
    /// Failed logins, to slow down password guessing.
    pub login_throttle: session::LoginThrottle,
    /// Open WebSocket connections (a gauge for /metrics).
    pub ws_clients: Arc<std::sync::atomic::AtomicI64>,
    /// The call log writer's health and backlog (for /readyz and /metrics).
    pub call_log: Arc<crate::calls::writer::WriterStatus>,
    /// Held while a move's changed slots are read back and published, so `slot_update`s
    /// leave in the order of the states they show: each read happens after the previous
    /// publish, so a screen that keeps the latest message per slot ends at the true count.
    /// An async mutex, because the read awaits the database.
    pub slot_feed: Arc<tokio::sync::Mutex<()>>,
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(session::router())
        .merge(ws::router())
        .merge(residents::router())
        .merge(bookings::router())
        .merge(calls::router())
        .merge(inquiries::router())
        .merge(ops::router())
        .merge(queues::router())
        .merge(assets::router())
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
        .with_state(state)
}
