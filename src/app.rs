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
    /// Ends the telephony thread's runtime (dropping it does too).
    telephony_stop: Option<tokio::sync::oneshot::Sender<()>>,
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
    let board = crate::calls::Board::with_acw(settings.acw()).with_thresholds(
        crate::calls::board::Thresholds {
            service_level_s: settings.service_level_s.min(86_400) as i64,
            short_abandon_s: settings.short_abandon_s.min(86_400) as i64,
        },
    );
    let mut link_names = Vec::new();
    if settings.ami_address.is_some() {
        link_names.push("ami".to_string());
    }
    if settings.webhook_token.is_some() {
        link_names.push(crate::pbx::webhook::LINK.to_string());
    }
    if settings.ari_url.is_some() {
        link_names.push(crate::pbx::ari::LINK.to_string());
    }
    if settings.sip_pbx.is_some() {
        link_names.push(crate::pbx::sip::LINK.to_string());
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
    // Today's queue figures as they were before a restart, from the call log.
    let now = chrono::Utc::now();
    let today = store
        .calls_between(
            Some(&crate::store::ts(crate::calls::Board::day_start(now))),
            None,
            1_000_000,
        )
        .await
        .context("reading today's calls for the queue board")?;
    board.rebuild(&today, now);
    // Calls an earlier process left open wait for their link's listing (or are closed).
    tracker
        .restore()
        .await
        .context("reading the calls left open by the last run")?;
    // The telephony path (PBX links, tracker) runs on a thread of its own, so no HTTP request,
    // import or WebSocket fan-out ever queues in front of a ring.
    let (telephony, telephony_stop) = telephony_thread()?;
    let tracker_task = telephony.spawn(tracker.run(events_rx, shutdown_rx.clone()));

    let mut links: Vec<Arc<dyn LinkHealth>> = Vec::new();
    let mut dialers: Vec<Arc<dyn crate::pbx::dial::Dialer>> = Vec::new();
    let mut core: Vec<(&'static str, JoinHandle<()>)> = Vec::new();
    let (dial_outcomes, dial_outcomes_rx) = mpsc::channel(crate::pbx::dial::DIAL_QUEUE * 4);
    if let Some(address) = &settings.ami_address {
        let (status, dialer, task) = spawn_ami(
            &telephony,
            &settings,
            address,
            events_tx.clone(),
            shutdown_rx.clone(),
            dial_outcomes.clone(),
        )?;
        links.push(status);
        dialers.push(dialer);
        core.push(("AMI link", task));
    }
    drop(dial_outcomes);
    // Ends by itself when every link that dials has stopped.
    let dial_links = crate::http::dial::DialLinks::default();
    tokio::spawn(crate::http::dial::forward_outcomes(
        hub.clone(),
        store.clone(),
        dial_links.clone(),
        dial_outcomes_rx,
    ));
    if let Some(url) = &settings.ari_url {
        use crate::pbx::ari::{run, AriConfig, AriStatus};
        let cfg = AriConfig::new(
            url,
            settings.ari_username.clone(),
            settings.ari_password.clone(),
            settings.ari_app.clone(),
        )?;
        let status = AriStatus::new();
        let task = telephony.spawn(run(
            cfg,
            events_tx.clone(),
            status.clone(),
            shutdown_rx.clone(),
        ));
        links.push(Arc::new(AriHealth(status)));
        core.push(("ARI link", task));
    }

    if let Some(pbx) = &settings.sip_pbx {
        use crate::pbx::sip::{bind, run, SipConfig, SipStatus};
        let cfg = SipConfig::new(
            pbx,
            settings.sip_listen.as_deref(),
            settings.sip_username.clone(),
            settings.sip_password.clone(),
        )?;
        let socket = bind(&cfg)?;
        let (ext_tx, ext_rx) = watch::channel(sip_extensions(&store).await?);
        let status = SipStatus::new();
        let task = telephony.spawn(run(
            cfg,
            socket,
            ext_rx,
            events_tx.clone(),
            status.clone(),
            shutdown_rx.clone(),
        ));
        links.push(Arc::new(SipHealth(status)));
        core.push(("SIP link", task));
        let feed = tokio::spawn(feed_sip_extensions(
            store.clone(),
            ext_tx,
            shutdown_rx.clone(),
        ));
        core.push(("SIP extension list", feed));
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

    let slot_feed = Arc::new(crate::http::slot_feed::SlotFeed::default());
    let slot_feed_task = tokio::spawn(slot_feed.clone().run(
        store.clone(),
        hub.clone(),
        shutdown_rx.clone(),
    ));
    let state = AppState {
        store: store.clone(),
        hub,
        metrics,
        settings: settings.clone(),
        directory: directory.clone(),
        board,
        links: Arc::new(links),
        ws_clients: Arc::new(std::sync::atomic::AtomicI64::new(0)),
        password_checks: crate::http::session::PasswordChecks::for_this_machine(),
        call_log: call_log.status(),
        pbx_events: events_tx.clone(),
        slot_feed: slot_feed.clone(),
        dialers: Arc::new(dialers),
        dial_links,
    };
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let doors = Doors {
        header_timeout: settings.header_timeout(),
        max_connections: settings.connection_cap(),
    };
    tracing::debug!(?doors, "HTTP limits");
    let http = tokio::spawn(serve(
        listener,
        app(state.clone()),
        doors,
        shutdown_rx.clone(),
    ));
    let sweep = tokio::spawn(sweep_expired(store.clone(), shutdown_rx.clone()));
    // The supervisors' board, pushed as it changes (at most twice a second).
    let board_feed = tokio::spawn(crate::http::supervisor::publish_board(
        state.clone(),
        shutdown_rx.clone(),
    ));
    core.push(("call tracker", tracker_task));
    core.push(("agent directory", refresh));
    core.push(("session sweep", sweep));
    core.push(("supervisor board", board_feed));
    core.push(("seat-count feed", slot_feed_task));
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
        telephony_stop: Some(telephony_stop),
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
            telephony_stop,
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
        if let Some(stop) = telephony_stop {
            let _ = stop.send(());
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

/// The limits the HTTP server puts on connections, before any request reaches the router.
#[derive(Debug, Clone, Copy)]
struct Doors {
    /// How long a connection may take to send a request's headers, and how long a kept-alive
    /// connection may sit idle between requests.
    header_timeout: Duration,
    /// Connections open at once, WebSockets included. When all are taken the server stops
    /// accepting (new ones wait in the listen backlog) instead of running out of file
    /// descriptors, which would stop it accepting anything, `/healthz` included.
    max_connections: usize,
}

/// Serves HTTP/1.1 (and WebSocket upgrades) on `listener` within [`Doors`], until `stop`.
/// axum's own `serve` cannot set a header read timeout, hence this loop around hyper.
async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    doors: Doors,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let permits = Arc::new(tokio::sync::Semaphore::new(doors.max_connections));
    // Connection tasks hold a receiver; `closed()` on the sender says they have all ended.
    let (close_tx, close_rx) = watch::channel(());
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            _ = stop.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors or memory, or a connection reset before it was
                    // accepted: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        // Pops travel on these sockets: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(Admitted {
            stream,
            _permit: permit,
        });
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                tower::ServiceExt::oneshot(router.clone(), req)
            });
        let mut closing = close_rx.clone();
        let mut stopping = stop.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(doors.header_timeout)
                .serve_connection(io, service)
                .with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stopping.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            let _ = closing.borrow_and_update();
        });
    }
    drop(listener);
    drop(close_rx);
    // Requests in flight finish (bounded by the caller's timeout); upgraded WebSockets are
    // not waited for.
    close_tx.closed().await;
    Ok(())
}

/// A connection with its place among [`Doors::max_connections`]: the permit is given back
/// when the socket closes, also after an upgrade to a WebSocket hands the socket on.
struct Admitted {
    stream: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl tokio::io::AsyncRead for Admitted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Admitted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Deletes expired sessions, old login counters and idempotency answers older than a day
/// every ten minutes, so none of these tables grows without bound.
async fn sweep_expired(store: Store, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(10 * 60);
    loop {
        let window = chrono::Duration::from_std(crate::http::session::WINDOW).unwrap_or_default();
        let stale = crate::store::ts(chrono::Utc::now() - window);
        match store.sweep_expired(&stale).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "swept expired sessions"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not sweep expired sessions"),
        }
        let day_ago = crate::store::ts(chrono::Utc::now() - chrono::Duration::days(1));
        match store.prune_booking_moves(&day_ago).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(answers = n, "pruned idempotency answers older than a day"),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not prune idempotency answers")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
    }
}

/// A thread with a single-threaded runtime for the telephony path; it runs until the returned
/// sender fires or is dropped. Tasks are spawned on it through the handle.
fn telephony_thread() -> anyhow::Result<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>)>
{
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("madoguchi-telephony".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    let _ = handle_tx.send(Ok(rt.handle().clone()));
                    rt.block_on(async {
                        let _ = stop_rx.await;
                    });
                }
                Err(e) => {
                    let _ = handle_tx.send(Err(e));
                }
            }
        })
        .context("starting the telephony thread")?;
    let handle = handle_rx
        .recv()
        .context("the telephony thread did not start")?
        .context("building the telephony runtime")?;
    Ok((handle, stop_tx))
}

/// The AMI link's health, its dialer and its task.
type AmiParts = (
    Arc<dyn LinkHealth>,
    Arc<dyn crate::pbx::dial::Dialer>,
    JoinHandle<()>,
);

/// Starts the AMI link of the settings on the telephony runtime.
fn spawn_ami(
    telephony: &tokio::runtime::Handle,
    settings: &Settings,
    address: &str,
    events: mpsc::Sender<crate::pbx::PbxEvent>,
    shutdown: watch::Receiver<bool>,
    dial_outcomes: mpsc::Sender<crate::pbx::dial::DialOutcome>,
) -> anyhow::Result<AmiParts> {
    use crate::pbx::ami::link::{run_with_dials, AmiConfig, AmiStatus, DialPort};
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
    let (dialer, requests) = crate::pbx::dial::AmiDialer::new(status.clone());
    let port = DialPort {
        requests,
        outcomes: dial_outcomes,
    };
    let task = telephony.spawn(run_with_dials(
        cfg,
        events,
        status.clone(),
        shutdown,
        Some(port),
    ));
    Ok((Arc::new(AmiHealth(status)), Arc::new(dialer), task))
}

/// The ARI link as `/readyz` and `/metrics` see it.
struct AriHealth(Arc<crate::pbx::ari::AriStatus>);

impl LinkHealth for AriHealth {
    fn name(&self) -> String {
        crate::pbx::ari::LINK.into()
    }
    fn up(&self) -> bool {
        self.0.connected()
    }
    fn reconnects(&self) -> u64 {
        self.0.reconnects()
    }
    fn detail(&self) -> serde_json::Value {
        self.0.detail()
    }
}

/// The extensions the SIP link subscribes to: every user's that has one, sorted.
async fn sip_extensions(store: &Store) -> anyhow::Result<Vec<String>> {
    let mut exts: Vec<String> = store
        .users()
        .await
        .context("reading the agents' extensions")?
        .into_iter()
        .filter_map(|u| u.extension)
        .collect();
    exts.sort();
    exts.dedup();
    Ok(exts)
}

/// Keeps the SIP link's extension list up to date (users added or changed while serving).
async fn feed_sip_extensions(
    store: Store,
    list: watch::Sender<Vec<String>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => break,
        }
        match sip_extensions(&store).await {
            Ok(exts) => {
                list.send_if_modified(|old| {
                    let changed = *old != exts;
                    if changed {
                        *old = exts;
                    }
                    changed
                });
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not refresh the SIP extensions")
            }
        }
    }
}

/// The SIP link as `/readyz` and `/metrics` see it.
struct SipHealth(Arc<crate::pbx::sip::SipStatus>);

impl LinkHealth for SipHealth {
    fn name(&self) -> String {
        crate::pbx::sip::LINK.into()
    }
    fn up(&self) -> bool {
        self.0.up()
    }
    fn reconnects(&self) -> u64 {
        self.0.resubscribes()
    }
    fn detail(&self) -> serde_json::Value {
        self.0.detail()
    }
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
