//! Wiring: opens the store, starts the call tracker, the call log writer, the PBX links and
//! the HTTP server side by side. [`build`] binds the listener and returns the real address
//! (tests ask for port 0); [`Running::wait`] says which part stopped.

use crate::calls::{tracker::EVENT_QUEUE, writer, AgentDirectory, Tracker, TrackerHandle};
use crate::http::{app, AppState};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::pbx::LinkHealth;
use crate::settings::Settings;
use crate::store::Store;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    /// Feeds the tracker directly (tests, other adapters).
    pub tracker: TrackerHandle,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    core: Vec<(&'static str, JoinHandle<()>)>,
    /// Closed after the tracker stopped, so the writer drains everything the tracker wrote.
    call_log: writer::CallLog,
    log_task: JoinHandle<()>,
}

pub async fn build(settings: Settings) -> anyhow::Result<Running> {
    let store = Store::open(&settings.database_url).await?;
    build_with_store(settings, store).await
}

pub async fn build_with_store(settings: Settings, store: Store) -> anyhow::Result<Running> {
    let settings = Arc::new(settings);
    let metrics = Arc::new(Metrics::default());
    let hub = Hub::new();
    let directory = AgentDirectory::default();
    directory.refresh(&store).await.context("loading agents")?;
    let (shutdown, shutdown_rx) = watch::channel(false);

    let (call_log, log_task) = writer::spawn(store.clone(), metrics.clone(), settings.spool_path());
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let board = crate::calls::Board::default();
    let mut link_names = Vec::new();
    if settings.ami_address.is_some() {
        link_names.push("ami".to_string());
    }
    let mut tracker = Tracker::new(
        store.clone(),
        hub.clone(),
        metrics.clone(),
        call_log.clone(),
        directory.clone(),
    )
    .with_board(board.clone())
    .with_links(link_names);
    // Calls an earlier process left open wait for their link's listing (or are closed).
    tracker
        .restore()
        .await
        .context("reading the calls left open by the last run")?;
    let tracker_task = tokio::spawn(tracker.run(events_rx, shutdown_rx.clone()));

    let mut links: Vec<Arc<dyn LinkHealth>> = Vec::new();
    let mut core: Vec<(&'static str, JoinHandle<()>)> = Vec::new();
    if let Some(address) = &settings.ami_address {
        let (status, task) = spawn_ami(&settings, address, events_tx.clone(), shutdown_rx.clone())?;
        links.push(status);
        core.push(("AMI link", task));
    }

    // Agents added while serving (`madoguchi user add`) are picked up within seconds.
    let refresh = {
        let (directory, store, mut stop) = (directory.clone(), store.clone(), shutdown_rx.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {
                        if let Err(e) = directory.refresh(&store).await {
                            tracing::warn!(error = %format!("{e:#}"), "could not refresh the agent directory");
                        }
                    }
                    _ = stop.changed() => break,
                }
            }
        })
    };

    let state = AppState {
        store: store.clone(),
        hub,
        metrics,
        settings: settings.clone(),
        directory: directory.clone(),
        board,
        links: Arc::new(links),
        ws_clients: Arc::new(std::sync::atomic::AtomicI64::new(0)),
        call_log: call_log.status(),
        login_throttle: Default::default(),
        slot_feed: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let mut stop = shutdown_rx.clone();
    let router = app(state.clone());
    // Pops leave at once: no Nagle delay waiting for the browser's delayed ACK.
    let listener = {
        use axum::serve::ListenerExt;
        listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        })
    };
    let http = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        })
        .await
    });
    core.push(("call tracker", tracker_task));
    core.push(("agent directory", refresh));
    tracing::info!(%addr, database = %crate::store::mask_url(&settings.database_url), "madoguchi serving");
    Ok(Running {
        addr,
        state,
        tracker: TrackerHandle {
            events: events_tx,
            directory,
        },
        shutdown,
        http,
        core,
        call_log,
        log_task,
    })
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A handle that stops the server when sent `true`.
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    /// Serves until ctrl-c / SIGTERM or until a part stops (which is then named); then shuts
    /// down gracefully.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let core_stopped = async {
            loop {
                if let Some((name, _)) = self.core.iter().find(|(_, t)| t.is_finished()) {
                    return format!("{name} (it stopped by itself)");
                }
                if self.log_task.is_finished() {
                    return "call log writer (it stopped by itself)".to_string();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        let stopped = tokio::select! {
            _ = shutdown_signal() => "signal".to_string(),
            r = &mut self.http => format!("HTTP server ({r:?})"),
            name = core_stopped => name,
        };
        tracing::info!(%stopped, "shutting down");
        self.shutdown().await
    }

    /// Stops every part: HTTP and PBX links first, then the tracker (handling what is queued),
    /// then the call log writer (writing what is queued), then the database.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let Running {
            state,
            tracker,
            http,
            core,
            call_log,
            log_task,
            ..
        } = self;
        drop(tracker);
        let _ = tokio::time::timeout(Duration::from_secs(10), http).await;
        for (name, task) in core {
            if tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .is_err()
            {
                tracing::warn!(task = name, "did not stop in time");
            }
        }
        // The tracker has written its last states: drain them (or spool what cannot be written).
        call_log.close();
        if tokio::time::timeout(writer::DRAIN_DEADLINE + Duration::from_secs(5), log_task)
            .await
            .is_err()
        {
            tracing::error!("call log writer did not finish draining in time");
        }
        state.store.close().await;
        Ok(())
    }
}

/// Starts the AMI link of the settings.
fn spawn_ami(
    settings: &Settings,
    address: &str,
    events: mpsc::Sender<crate::pbx::PbxEvent>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<dyn LinkHealth>, JoinHandle<()>)> {
    use crate::pbx::ami::link::{run, AmiConfig, AmiStatus};
    anyhow::ensure!(
        !settings.ami_username.is_empty(),
        "MADOGUCHI_AMI_USERNAME is required with MADOGUCHI_AMI_ADDRESS"
    );
    let mut cfg = AmiConfig::new(
        address,
        settings.ami_username.clone(),
        settings.ami_secret.clone(),
    );
    cfg.auth_md5 = settings.ami_md5;
    cfg.ping_interval = settings.ami_ping();
    let status = AmiStatus::new();
    let task = tokio::spawn(run(cfg, events, status.clone(), shutdown));
    Ok((Arc::new(AmiHealth(status)), task))
}

/// The AMI link as `/readyz` and `/metrics` see it.
struct AmiHealth(Arc<crate::pbx::ami::link::AmiStatus>);

impl LinkHealth for AmiHealth {
    fn name(&self) -> String {
        "ami".into()
    }
    fn up(&self) -> bool {
        self.0.logged_in()
    }
    fn reconnects(&self) -> u64 {
        self.0.reconnects()
    }
    fn detail(&self) -> serde_json::Value {
        let s = self.0.snapshot();
        serde_json::json!({
            "connected": s.connected,
            "logged_in": s.logged_in,
            "login_failures": s.login_failures,
            "events_received": s.events_received,
            "last_error": s.last_error,
        })
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
