//! The AMI link: one TCP session to Asterisk at a time, kept alive for as long as madoguchi runs.
//!
//! Connect, read the banner, log in (plain `Secret` or the MD5 challenge), then read events,
//! translate them and hand them on. After every login the link asks for the live state
//! (`CoreShowChannels`, `QueueStatus`) and reports it as one [`PbxEvent::Resync`], because
//! whatever happened while the link was down was not seen. A `Ping` every `ping_interval` finds
//! a silent dead peer (a NAT that forgot us, a hung Asterisk). Any failure ends the session and
//! the link reconnects after an exponential backoff with jitter, so a PBX restart does not meet
//! a thundering herd and a wrong password does not become a tight loop.
//!
//! The read loop only reads, decodes, translates and sends on the bounded channel: it never
//! waits on a database or a browser (a stalled reader makes Asterisk drop the session). Actions
//! go out through a separate writer task, so a slow socket never blocks reading.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use md5::{Digest, Md5};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, timeout_at, Instant, MissedTickBehavior};
use tracing::{debug, info, warn, Instrument};

use super::codec::{encode_action, Decoder, Frame, Packet};
use super::translate::Translator;
use crate::pbx::dial::{DialOutcome, DialRequest, LinkRequest, OutcomeKind, PauseRequest};
use crate::pbx::{LiveChannel, PbxEvent};

/// Click-to-dial requests into the link and their outcomes out of it (see `pbx::dial`).
pub struct DialPort {
    pub requests: mpsc::Receiver<LinkRequest>,
    pub outcomes: mpsc::Sender<DialOutcome>,
}

/// Originates waiting for their outcome, per session; more than this and the oldest are
/// forgotten (a PBX that never answers them).
const MAX_PENDING_DIALS: usize = 1000;

/// Event classes asked for at login: channels and dials (`call`), queues (`agent`),
/// `UserEvent`s (`user`) and `FullyBooted` (`system`).
const EVENT_CLASSES: &str = "call,agent,user,system";
/// A write that takes this long means the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Actions queued for the writer; more than this waiting means the socket is stuck.
const ACTION_QUEUE: usize = 64;
/// Events held back while a resync listing is in progress; a listing that outgrows this is not
/// going to finish in a useful time.
const MAX_BUFFERED_DURING_RESYNC: usize = 100_000;
const READ_BUFFER: usize = 16 * 1024;

/// Where and how to reach Asterisk. Build with [`AmiConfig::new`] and adjust the fields.
#[derive(Clone)]
pub struct AmiConfig {
    /// `host:port` of the manager interface (Asterisk's default port is 5038).
    pub address: String,
    pub username: String,
    /// Plain secret from manager.conf. Written `md5:<secret>`, it selects MD5 challenge login.
    pub secret: String,
    /// Name of this link in every [`PbxEvent`] (`ami`), so two PBXes never mix call ids.
    pub link: String,
    /// Log in by MD5 challenge (`Action: Challenge`) instead of sending the secret.
    pub auth_md5: bool,
    /// How often to `Ping`; no `Pong` within two intervals ends the session.
    pub ping_interval: Duration,
    /// First reconnect delay; doubles per failure up to `backoff_max`, with ±25 % jitter.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A session that stayed logged in this long resets the backoff to `backoff_min`.
    pub stable_after: Duration,
    /// Limit for connecting, for the banner and login, and for the resync listing.
    pub timeout: Duration,
}

impl AmiConfig {
    pub fn new(
        address: impl Into<String>,
        username: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        Self {
            address: address.into(),
            username: username.into(),
            secret: secret.into(),
            link: "ami".into(),
            auth_md5: false,
            ping_interval: Duration::from_secs(20),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }

    /// Whether to use MD5, and the secret itself.
    fn auth(&self) -> (bool, &str) {
        match self.secret.strip_prefix("md5:") {
            Some(secret) => (true, secret),
            None => (self.auth_md5, &self.secret),
        }
    }
}

/// The secret never reaches a log, even through `{:?}`.
impl fmt::Debug for AmiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmiConfig")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("secret", &"***")
            .field("link", &self.link)
            .field("auth_md5", &self.auth_md5)
            .field("ping_interval", &self.ping_interval)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("stable_after", &self.stable_after)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What the link is doing, for `/readyz`, `/metrics` and tests. Shared as `Arc`; the link
/// writes, anyone reads. Atomics because the read loop updates counters per event and must not
/// contend; the last error sits behind a `Mutex` held only to copy a string.
#[derive(Debug, Default)]
pub struct AmiStatus {
    connected: AtomicBool,
    logged_in: AtomicBool,
    reconnects: AtomicU64,
    login_failures: AtomicU64,
    events_received: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A copy of [`AmiStatus`] at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AmiStatusSnapshot {
    pub connected: bool,
    pub logged_in: bool,
    pub reconnects: u64,
    pub login_failures: u64,
    pub events_received: u64,
    pub last_error: Option<String>,
}

impl AmiStatus {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    /// TCP connected (possibly not yet logged in).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
    /// Logged in: events flow.
    pub fn logged_in(&self) -> bool {
        self.logged_in.load(Ordering::Relaxed)
    }
    /// Connection attempts after the first.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
    /// Logins Asterisk refused.
    pub fn login_failures(&self) -> u64 {
        self.login_failures.load(Ordering::Relaxed)
    }
    /// AMI event packets received, all kinds, since start.
    pub fn events_received(&self) -> u64 {
        self.events_received.load(Ordering::Relaxed)
    }
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }
    pub fn snapshot(&self) -> AmiStatusSnapshot {
        AmiStatusSnapshot {
            connected: self.connected(),
            logged_in: self.logged_in(),
            reconnects: self.reconnects(),
            login_failures: self.login_failures(),
            events_received: self.events_received(),
            last_error: self.last_error(),
        }
    }
    fn set_error(&self, error: &str) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error.to_string());
        }
    }
}

/// Runs the link until `shutdown` becomes `true` (or its sender is dropped) or `tx`'s receiver
/// is gone. Never returns early on PBX trouble: it reconnects.
pub async fn run(
    cfg: AmiConfig,
    tx: mpsc::Sender<PbxEvent>,
    status: Arc<AmiStatus>,
    shutdown: watch::Receiver<bool>,
) {
    run_with_dials(cfg, tx, status, shutdown, None).await
}

/// [`run`], also sending the click-to-dial requests of `dials` as `Originate` actions and
/// reporting their outcomes.
pub async fn run_with_dials(
    cfg: AmiConfig,
    tx: mpsc::Sender<PbxEvent>,
    status: Arc<AmiStatus>,
    mut shutdown: watch::Receiver<bool>,
    mut dials: Option<DialPort>,
) {
    let span = tracing::info_span!("ami", link = %cfg.link, address = %cfg.address);
    run_link(&cfg, &tx, &status, &mut shutdown, &mut dials)
        .instrument(span)
        .await;
}

async fn run_link(
    cfg: &AmiConfig,
    tx: &mpsc::Sender<PbxEvent>,
    status: &AmiStatus,
    shutdown: &mut watch::Receiver<bool>,
    dials: &mut Option<DialPort>,
) {
    let mut failures: u32 = 0;
    let mut session_no: u64 = 0;
    loop {
        if stopping(shutdown) {
            return;
        }
        if session_no > 0 {
            status.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        session_no += 1;
        let mut session = Session::new(cfg, tx, status, &mut *shutdown, session_no);
        session.dials = dials.as_mut();
        let end = session.run().await;
        let link_up = session.link_up;
        let stable = session
            .logged_in_at
            .is_some_and(|at| at.elapsed() >= cfg.stable_after);
        drop(session);
        status.connected.store(false, Ordering::Relaxed);
        status.logged_in.store(false, Ordering::Relaxed);

        let reason = match &end {
            End::Shutdown => {
                if link_up {
                    // Stopping: tell the tracker if it still listens, never wait for it.
                    let _ = tx.try_send(PbxEvent::LinkDown {
                        link: cfg.link.clone(),
                        reason: "shutdown".into(),
                    });
                }
                info!("AMI link stopped");
                return;
            }
            End::ReceiverGone => {
                info!("AMI link stopped: nobody receives its events");
                return;
            }
            End::LoginRefused(message) => {
                status.login_failures.fetch_add(1, Ordering::Relaxed);
                format!("login refused for user {}: {message}", cfg.username)
            }
            End::Lost(reason) => reason.clone(),
        };
        status.set_error(&reason);
        if link_up {
            let down = PbxEvent::LinkDown {
                link: cfg.link.clone(),
                reason: reason.clone(),
            };
            if deliver(tx, down, shutdown).await.is_err() {
                return;
            }
        }
        if stable {
            failures = 0;
        }
        let delay = backoff(cfg, failures);
        failures = failures.saturating_add(1);
        match &end {
            End::LoginRefused(message) => warn!(
                user = %cfg.username,
                reason = %message,
                retry_in_ms = delay.as_millis() as u64,
                "AMI login refused; check the manager.conf user and secret"
            ),
            _ => warn!(reason = %reason, retry_in_ms = delay.as_millis() as u64, "AMI link down"),
        }
        tokio::select! {
            _ = sleep(delay) => {}
            _ = wait_stop(shutdown) => return,
        }
    }
}

/// Delay before reconnect attempt number `failures` (0-based): `backoff_min · 2^failures`,
/// capped at `backoff_max`, then spread by ±25 % so that many links restarting together do not
/// reconnect in lockstep, and never outside `backoff_min..=backoff_max`.
fn backoff(cfg: &AmiConfig, failures: u32) -> Duration {
    let min = cfg.backoff_min.max(Duration::from_millis(1));
    let max = cfg.backoff_max.max(min);
    let base = min.saturating_mul(1u32 << failures.min(20)).min(max);
    let spread = base.as_secs_f64() * (0.75 + 0.5 * random_unit());
    Duration::try_from_secs_f64(spread)
        .unwrap_or(max)
        .clamp(min, max)
}

/// A number in `[0, 1)`; jitter needs no cryptographic quality, only to differ between hosts.
fn random_unit() -> f64 {
    let bytes = crate::domain::random::bytes::<8>();
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

fn stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// Resolves when shutdown is asked (or its sender is gone, which means the same).
async fn wait_stop(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Hands one event on, waiting for room in the channel (the bounded channel is the back
/// pressure), but never past a shutdown.
async fn deliver(
    tx: &mpsc::Sender<PbxEvent>,
    event: PbxEvent,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), End> {
    tokio::select! {
        sent = tx.send(event) => sent.map_err(|_| End::ReceiverGone),
        _ = wait_stop(shutdown) => Err(End::Shutdown),
    }
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    Shutdown,
    ReceiverGone,
    LoginRefused(String),
    Lost(String),
}

/// One TCP session, from connect to drop.
struct Session<'a> {
    cfg: &'a AmiConfig,
    tx: &'a mpsc::Sender<PbxEvent>,
    status: &'a AmiStatus,
    shutdown: &'a mut watch::Receiver<bool>,
    session_no: u64,
    next_action: u64,
    decoder: Decoder,
    translator: Translator,
    reader: Option<OwnedReadHalf>,
    actions: Option<mpsc::Sender<Vec<u8>>>,
    writer: Option<JoinHandle<String>>,
    /// LinkUp was sent, so a LinkDown is owed.
    link_up: bool,
    logged_in_at: Option<Instant>,
    /// The Ping waiting for its Pong: (ActionID, sent at).
    ping: Option<(String, Instant)>,
    resync: Option<Resync>,
    dials: Option<&'a mut DialPort>,
    /// Originates and QueuePauses sent and not yet answered: ActionID → the agent's extension
    /// and what was asked.
    pending_dials: HashMap<String, (String, OutcomeKind)>,
}

impl<'a> Session<'a> {
    fn new(
        cfg: &'a AmiConfig,
        tx: &'a mpsc::Sender<PbxEvent>,
        status: &'a AmiStatus,
        shutdown: &'a mut watch::Receiver<bool>,
        session_no: u64,
    ) -> Self {
        Self {
            cfg,
            tx,
            status,
            shutdown,
            session_no,
            next_action: 0,
            decoder: Decoder::new(),
            translator: Translator::new(cfg.link.clone()),
            reader: None,
            actions: None,
            writer: None,
            link_up: false,
            logged_in_at: None,
            ping: None,
            resync: None,
            dials: None,
            pending_dials: HashMap::new(),
        }
    }

    async fn run(&mut self) -> End {
        let end = self.run_inner().await;
        self.close(matches!(end, End::Shutdown)).await;
        // Originates still waiting will never hear back on this session.
        for (action_id, (extension, kind)) in std::mem::take(&mut self.pending_dials) {
            self.dial_outcome(
                action_id,
                extension,
                kind,
                false,
                "PBX link lost".into(),
                None,
            );
        }
        end
    }

    async fn run_inner(&mut self) -> End {
        let deadline = Instant::now() + self.cfg.timeout;
        // Login runs under the shutdown watch too: a stop must not wait for a slow PBX. The
        // watch is cloned because `self` is borrowed by the login future.
        let mut stop = self.shutdown.clone();
        let setup = async {
            self.connect(deadline).await?;
            self.login(deadline).await
        };
        let setup = tokio::select! {
            r = setup => r,
            _ = wait_stop(&mut stop) => Err(End::Shutdown),
        };
        if let Err(end) = setup {
            return end;
        }
        match self.serve().await {
            Ok(()) => End::Shutdown,
            Err(end) => end,
        }
    }

    async fn connect(&mut self, deadline: Instant) -> Result<(), End> {
        let stream = match timeout_at(deadline, TcpStream::connect(&self.cfg.address)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(End::Lost(format!(
                    "connect to {} failed: {e}",
                    self.cfg.address
                )))
            }
            Err(_) => {
                return Err(End::Lost(format!(
                    "connect to {} timed out",
                    self.cfg.address
                )))
            }
        };
        // Small action packets should not wait for Nagle.
        let _ = stream.set_nodelay(true);
        self.status.connected.store(true, Ordering::Relaxed);
        debug!("TCP connected");
        let (reader, writer) = stream.into_split();
        let (actions, queue) = mpsc::channel(ACTION_QUEUE);
        self.reader = Some(reader);
        self.actions = Some(actions);
        self.writer = Some(tokio::spawn(write_actions(writer, queue).in_current_span()));
        Ok(())
    }

    fn new_action_id(&mut self) -> String {
        self.next_action += 1;
        format!("madoguchi-{}-{}", self.session_no, self.next_action)
    }

    /// Queues an action for the writer; a full queue means the socket is stuck.
    fn send(&mut self, fields: &[(&str, &str)]) -> Result<(), End> {
        let Some(actions) = &self.actions else {
            return Err(End::Lost("not connected".into()));
        };
        actions
            .try_send(encode_action(fields))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    End::Lost("PBX does not read our actions".into())
                }
                mpsc::error::TrySendError::Closed(_) => End::Lost("writer stopped".into()),
            })
    }

    /// Reads until one frame is complete, or the deadline.
    async fn read_frame(&mut self, deadline: Instant, waiting_for: &str) -> Result<Frame, End> {
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            while let Some(frame) = self.decoder.next_frame() {
                match frame {
                    Ok(frame) => return Ok(frame),
                    Err(e) => warn!(error = %e, "skipped a malformed AMI packet"),
                }
            }
            let Some(reader) = self.reader.as_mut() else {
                return Err(End::Lost("not connected".into()));
            };
            let n = match timeout_at(deadline, reader.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(End::Lost(format!("read failed: {e}"))),
                Err(_) => return Err(End::Lost(format!("timed out waiting for {waiting_for}"))),
            };
            if n == 0 {
                return Err(End::Lost(format!(
                    "connection closed by the PBX while waiting for {waiting_for}"
                )));
            }
            self.decoder.push(&buf[..n]);
        }
    }

    /// Reads until the response to `action_id`. Before login nothing else should arrive; what
    /// does is ignored.
    async fn response_to(
        &mut self,
        action_id: &str,
        deadline: Instant,
        what: &str,
    ) -> Result<Packet, End> {
        loop {
            match self.read_frame(deadline, what).await? {
                Frame::Packet(p) if p.event().is_none() && p.response().is_some() => {
                    // Very old builds may not echo the ActionID; a response without one is ours.
                    if p.action_id().is_none_or(|id| id == action_id) {
                        return Ok(p);
                    }
                }
                other => debug!(frame = ?other, "ignored before login"),
            }
        }
    }

    async fn login(&mut self, deadline: Instant) -> Result<(), End> {
        match self.read_frame(deadline, "the AMI banner").await? {
            Frame::Banner(banner) => info!(%banner, "connected to Asterisk"),
            other => debug!(frame = ?other, "no banner; logging in anyway"),
        }
        let (use_md5, secret) = self.cfg.auth();
        let username = self.cfg.username.clone();
        let login_id = self.new_action_id();
        if use_md5 {
            let id = self.new_action_id();
            self.send(&[
                ("Action", "Challenge"),
                ("ActionID", &id),
                ("AuthType", "MD5"),
            ])?;
            let reply = self.response_to(&id, deadline, "the MD5 challenge").await?;
            let challenge = match (reply.response(), reply.get_nonempty("Challenge")) {
                (Some(r), Some(c)) if r.eq_ignore_ascii_case("Success") => c.to_string(),
                _ => {
                    let message = reply.get("Message").unwrap_or("no challenge in the reply");
                    return Err(End::LoginRefused(format!(
                        "MD5 challenge refused: {message}"
                    )));
                }
            };
            let key = md5_hex(&challenge, secret);
            self.send(&[
                ("Action", "Login"),
                ("ActionID", &login_id),
                ("Username", &username),
                ("AuthType", "MD5"),
                ("Key", &key),
                ("Events", EVENT_CLASSES),
            ])?;
        } else {
            let secret = secret.to_string();
            self.send(&[
                ("Action", "Login"),
                ("ActionID", &login_id),
                ("Username", &username),
                ("Secret", &secret),
                ("Events", EVENT_CLASSES),
            ])?;
        }
        let reply = self
            .response_to(&login_id, deadline, "the login response")
            .await?;
        if !reply
            .response()
            .is_some_and(|r| r.eq_ignore_ascii_case("Success"))
        {
            let message = reply
                .get("Message")
                .or(reply.response())
                .unwrap_or("refused");
            return Err(End::LoginRefused(message.to_string()));
        }
        self.status.logged_in.store(true, Ordering::Relaxed);
        self.logged_in_at = Some(Instant::now());
        info!(user = %username, md5 = use_md5, "AMI login accepted");
        Ok(())
    }

    /// The logged-in session: resync, then events until something ends it. `Ok` = shutdown.
    async fn serve(&mut self) -> Result<(), End> {
        self.link_up = true;
        let up = PbxEvent::LinkUp {
            link: self.cfg.link.clone(),
        };
        deliver(self.tx, up, &mut *self.shutdown).await?;
        self.start_resync()?;

        let interval = self.cfg.ping_interval.max(Duration::from_millis(1));
        let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut buf = vec![0u8; READ_BUFFER];
        let Some(mut reader) = self.reader.take() else {
            return Err(End::Lost("not connected".into()));
        };
        let Some(mut writer) = self.writer.take() else {
            return Err(End::Lost("not connected".into()));
        };
        let mut writer_finished = false;
        let result = loop {
            let resync_deadline = self.resync.as_ref().map(|r| r.deadline);
            let mut stop = self.shutdown.clone();
            // Reading comes before the ping check, so a Pong already in the socket buffer is
            // seen before its absence is judged (the loop may have been waiting on `tx`).
            let step = tokio::select! {
                biased;
                _ = wait_stop(&mut stop) => Step::Stop,
                read = reader.read(&mut buf) => Step::Read(read),
                done = &mut writer => Step::WriterDone(done.unwrap_or_else(|e| format!("writer failed: {e}"))),
                _ = ticks.tick() => Step::Tick,
                _ = sleep_until_opt(resync_deadline) => Step::ResyncTimeout,
                dial = next_dial(&mut self.dials) => Step::Dial(dial),
            };
            match step {
                Step::Stop => break Ok(()),
                Step::Read(Ok(0)) => break Err(End::Lost("connection closed by the PBX".into())),
                Step::Read(Err(e)) => break Err(End::Lost(format!("read failed: {e}"))),
                Step::Read(Ok(n)) => {
                    self.decoder.push(&buf[..n]);
                    if let Err(end) = self.drain_frames().await {
                        break Err(end);
                    }
                }
                Step::WriterDone(reason) => {
                    writer_finished = true;
                    break Err(End::Lost(reason));
                }
                Step::Tick => {
                    if let Some((_, sent)) = &self.ping {
                        if sent.elapsed() >= interval * 2 {
                            break Err(End::Lost(format!(
                                "no Pong within {} ms",
                                (interval * 2).as_millis()
                            )));
                        }
                    } else {
                        let id = self.new_action_id();
                        if let Err(end) = self.send(&[("Action", "Ping"), ("ActionID", &id)]) {
                            break Err(end);
                        }
                        self.ping = Some((id, Instant::now()));
                    }
                }
                Step::Dial(None) => self.dials = None,
                Step::Dial(Some(request)) => {
                    let sent = match request {
                        LinkRequest::Dial(r) => self.originate(r),
                        LinkRequest::Pause(r) => self.queue_pause(r),
                    };
                    if let Err(end) = sent {
                        break Err(end);
                    }
                }
                Step::ResyncTimeout => {
                    break Err(End::Lost(
                        "no complete CoreShowChannels/QueueStatus listing in time".into(),
                    ))
                }
            }
        };
        self.reader = Some(reader);
        if !writer_finished {
            // A finished JoinHandle must not be awaited again in `close`.
            self.writer = Some(writer);
        }
        result
    }

    async fn drain_frames(&mut self) -> Result<(), End> {
        while let Some(frame) = self.decoder.next_frame() {
            match frame {
                Ok(Frame::Packet(p)) => self.on_packet(p).await?,
                Ok(Frame::Banner(b)) => debug!(banner = %b, "banner inside a session"),
                Ok(Frame::CommandOutput { packet, .. }) => {
                    debug!(
                        action_id = packet.action_id().unwrap_or(""),
                        "command output ignored"
                    )
                }
                Err(e) => warn!(error = %e, "skipped a malformed AMI packet"),
            }
        }
        Ok(())
    }

    async fn on_packet(&mut self, p: Packet) -> Result<(), End> {
        let at = Utc::now();
        let is_event = p.event().is_some();
        if is_event {
            self.status.events_received.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(resync) = self.resync.as_mut() {
            if resync.take(&p) {
                if resync.complete() {
                    self.finish_resync().await?;
                }
                return Ok(());
            }
        }
        if let Some((extension, kind)) = p.action_id().and_then(|id| self.pending_dials.get(id)) {
            let (extension, kind) = (extension.clone(), *kind);
            let id = p.action_id().unwrap_or_default().to_string();
            if !is_event && p.response() == Some("Error") {
                // Refused at once (`Invalid channel`, `Interface not found`, no permission): no
                // OriginateResponse follows.
                let reason = p.get("Message").unwrap_or("refused").to_string();
                self.pending_dials.remove(&id);
                self.dial_outcome(id, extension, kind, false, reason, None);
                return Ok(());
            }
            if let OutcomeKind::Pause { .. } = kind {
                if !is_event {
                    // "Interface paused successfully": the QueueMemberPause event follows for
                    // the board.
                    let reason = p.get("Message").unwrap_or_default().to_string();
                    self.pending_dials.remove(&id);
                    self.dial_outcome(id, extension, kind, true, reason, None);
                    return Ok(());
                }
            } else if p.is_event("OriginateResponse") {
                let ok = p.response() == Some("Success");
                let reason = p.get("Reason").unwrap_or_default().to_string();
                let uniqueid = p
                    .get("Uniqueid")
                    .filter(|u| ok && !u.trim().is_empty() && *u != "<null>")
                    .map(|u| format!("{}:{u}", self.cfg.link));
                self.pending_dials.remove(&id);
                self.dial_outcome(id, extension, kind, ok, reason, uniqueid);
                // The event also goes on to the translator (the tracker links the call).
            } else if !is_event {
                // `Response: Success`, "Originate successfully queued": the outcome follows.
                return Ok(());
            }
        }
        if !is_event {
            if let (Some(id), Some((ping, _))) = (p.action_id(), &self.ping) {
                if id == ping {
                    self.ping = None;
                }
            }
            return Ok(());
        }
        for event in self.translator.translate(&p, at) {
            match self.resync.as_mut() {
                Some(resync) => {
                    if resync.buffered.len() >= MAX_BUFFERED_DURING_RESYNC {
                        return Err(End::Lost(
                            "too many events during the resync listing".into(),
                        ));
                    }
                    resync.buffered.push(event);
                }
                None => deliver(self.tx, event, &mut *self.shutdown).await?,
            }
        }
        Ok(())
    }

    /// Sends one click-to-dial: the agent's phone first, then the number in `context`.
    fn originate(&mut self, r: DialRequest) -> Result<(), End> {
        let channel = format!("PJSIP/{}", r.extension);
        self.send(&[
            ("Action", "Originate"),
            ("ActionID", &r.action_id),
            ("Channel", &channel),
            ("Context", &r.context),
            ("Exten", &r.number),
            ("Priority", "1"),
            ("CallerID", &r.caller_id),
            ("Async", "true"),
        ])?;
        info!(extension = %r.extension, action_id = %r.action_id, "Originate sent");
        self.pending(r.action_id, r.extension, OutcomeKind::Dial);
        Ok(())
    }

    /// Pauses or unpauses a queue member (`QueuePause`); the outcome is the action's response.
    fn queue_pause(&mut self, r: PauseRequest) -> Result<(), End> {
        let paused = if r.paused { "true" } else { "false" };
        let mut fields = vec![
            ("Action", "QueuePause"),
            ("ActionID", r.action_id.as_str()),
            ("Interface", r.interface.as_str()),
            ("Paused", paused),
        ];
        if let Some(q) = &r.queue {
            fields.push(("Queue", q.as_str()));
        }
        if !r.reason.is_empty() {
            fields.push(("Reason", r.reason.as_str()));
        }
        self.send(&fields)?;
        info!(extension = %r.extension, interface = %r.interface, paused = r.paused,
            action_id = %r.action_id, "QueuePause sent");
        let kind = OutcomeKind::Pause { paused: r.paused };
        self.pending(r.action_id, r.extension, kind);
        Ok(())
    }

    fn pending(&mut self, action_id: String, extension: String, kind: OutcomeKind) {
        if self.pending_dials.len() >= MAX_PENDING_DIALS {
            self.pending_dials.clear();
        }
        self.pending_dials.insert(action_id, (extension, kind));
    }

    /// Hands a dial's outcome on, never waiting (the read loop must not stall).
    fn dial_outcome(
        &self,
        action_id: String,
        extension: String,
        kind: OutcomeKind,
        ok: bool,
        reason: String,
        call_key: Option<String>,
    ) {
        if let Some(port) = &self.dials {
            let outcome = DialOutcome {
                action_id,
                extension,
                ok,
                reason,
                kind,
                call_key,
            };
            if port.outcomes.try_send(outcome).is_err() {
                warn!("a dial outcome was dropped: nobody reads them");
            }
        }
    }

    fn start_resync(&mut self) -> Result<(), End> {
        let channels_id = self.new_action_id();
        let queues_id = self.new_action_id();
        self.send(&[("Action", "CoreShowChannels"), ("ActionID", &channels_id)])?;
        self.send(&[("Action", "QueueStatus"), ("ActionID", &queues_id)])?;
        self.resync = Some(Resync::new(
            channels_id,
            queues_id,
            Instant::now() + self.cfg.timeout,
        ));
        Ok(())
    }

    /// Live state first, then what happened while it was being listed: a channel created
    /// during the listing must not be ended by a Resync that arrives after it.
    async fn finish_resync(&mut self) -> Result<(), End> {
        let Some(resync) = self.resync.take() else {
            return Ok(());
        };
        let at = Utc::now();
        let link = self.cfg.link.clone();
        let linked: HashMap<String, String> = resync
            .channels
            .iter()
            .map(|c| (c.channel.clone(), c.call.clone()))
            .collect();
        match resync.channels_failed {
            None => {
                info!(
                    channels = resync.channels.len(),
                    waiting = resync.entries.len(),
                    "resynced"
                );
                let event = PbxEvent::Resync {
                    link: link.clone(),
                    channels: resync.channels,
                    at,
                };
                deliver(self.tx, event, &mut *self.shutdown).await?;
            }
            Some(reason) => {
                // Without the list no call can be declared ended; the tracker keeps what it has.
                warn!(%reason, "CoreShowChannels refused; no resync (does the AMI user have write = reporting?)");
                self.status
                    .set_error(&format!("CoreShowChannels refused: {reason}"));
            }
        }
        if let Some(reason) = resync.queues_failed {
            warn!(%reason, "QueueStatus refused; waiting callers not resynced");
        }
        for mut member in resync.members {
            if let PbxEvent::Member { link: l, .. } = &mut member {
                l.clone_from(&link);
            }
            deliver(self.tx, member, &mut *self.shutdown).await?;
        }
        for (queue, channel, wait) in resync.entries {
            let call = linked
                .get(&channel)
                .cloned()
                .unwrap_or_else(|| channel.clone());
            // Joined when the PBX says: a caller who waited 40 s before the link came back
            // shows 40 s, not 0.
            let event = PbxEvent::QueueJoin {
                link: link.clone(),
                call,
                channel,
                queue,
                at: at - chrono::Duration::seconds(wait),
            };
            deliver(self.tx, event, &mut *self.shutdown).await?;
        }
        for event in resync.buffered {
            deliver(self.tx, event, &mut *self.shutdown).await?;
        }
        Ok(())
    }

    /// Ends the session: a polite `Logoff` on shutdown, then the writer is given a moment to
    /// flush and is stopped.
    async fn close(&mut self, logoff: bool) {
        if logoff && self.logged_in_at.is_some() {
            let id = self.new_action_id();
            let _ = self.send(&[("Action", "Logoff"), ("ActionID", &id)]);
        }
        self.actions = None;
        if let Some(mut writer) = self.writer.take() {
            if timeout(Duration::from_millis(500), &mut writer)
                .await
                .is_err()
            {
                writer.abort();
            }
        }
        self.reader = None;
    }
}

enum Step {
    Stop,
    Read(std::io::Result<usize>),
    WriterDone(String),
    Tick,
    ResyncTimeout,
    Dial(Option<LinkRequest>),
}

/// The next click-to-dial request, or never when this link takes none.
async fn next_dial(dials: &mut Option<&mut DialPort>) -> Option<LinkRequest> {
    match dials {
        Some(port) => port.requests.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Writes queued actions; returns why it stopped.
async fn write_actions(mut writer: OwnedWriteHalf, mut queue: mpsc::Receiver<Vec<u8>>) -> String {
    while let Some(bytes) = queue.recv().await {
        match timeout(WRITE_TIMEOUT, writer.write_all(&bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return format!("write failed: {e}"),
            Err(_) => return "write timed out: the PBX does not read".into(),
        }
    }
    let _ = writer.shutdown().await;
    "session closed".into()
}

/// `Key` for an MD5 login: hex MD5 of the challenge followed by the secret.
pub(crate) fn md5_hex(challenge: &str, secret: &str) -> String {
    let digest = Md5::new()
        .chain_update(challenge.as_bytes())
        .chain_update(secret.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The two listings asked for after login, collected by ActionID. Lists end at the
/// `…Complete` event, not at `EventList: Complete`: Asterisk 11 sends no EventList headers.
struct Resync {
    channels_id: String,
    queues_id: String,
    channels: Vec<LiveChannel>,
    channels_done: bool,
    channels_failed: Option<String>,
    /// (queue, caller channel Uniqueid, seconds waited so far) of each waiting caller.
    entries: Vec<(String, String, i64)>,
    /// The queue members listed (QueueMember items), as events.
    members: Vec<PbxEvent>,
    queues_done: bool,
    queues_failed: Option<String>,
    buffered: Vec<PbxEvent>,
    deadline: Instant,
}

impl Resync {
    fn new(channels_id: String, queues_id: String, deadline: Instant) -> Self {
        Self {
            channels_id,
            queues_id,
            channels: Vec::new(),
            channels_done: false,
            channels_failed: None,
            entries: Vec::new(),
            members: Vec::new(),
            queues_done: false,
            queues_failed: None,
            buffered: Vec::new(),
            deadline,
        }
    }

    fn complete(&self) -> bool {
        self.channels_done && self.queues_done
    }

    /// Takes the packet if it belongs to one of the listings.
    fn take(&mut self, p: &Packet) -> bool {
        let Some(id) = p.action_id() else {
            return false;
        };
        let channels = if id == self.channels_id {
            true
        } else if id == self.queues_id {
            false
        } else {
            return false;
        };
        match p.event() {
            None => {
                // The ack (`Success`, `EventList: start`) or a refusal, which ends the list.
                if !p
                    .response()
                    .is_some_and(|r| r.eq_ignore_ascii_case("Success"))
                {
                    let reason = p
                        .get("Message")
                        .or(p.response())
                        .unwrap_or("no reason")
                        .to_string();
                    if channels {
                        self.channels_failed = Some(reason);
                        self.channels_done = true;
                    } else {
                        self.queues_failed = Some(reason);
                        self.queues_done = true;
                    }
                }
            }
            Some(event) => {
                let complete =
                    event.len() > 8 && event[event.len() - 8..].eq_ignore_ascii_case("Complete");
                let cancelled = p
                    .get("EventList")
                    .is_some_and(|v| v.eq_ignore_ascii_case("cancelled"));
                if channels {
                    if complete || cancelled {
                        self.channels_done = true;
                        if cancelled {
                            self.channels_failed = Some("listing cancelled".into());
                        }
                    } else if event.eq_ignore_ascii_case("CoreShowChannel") {
                        if let Some(channel) = live_channel(p) {
                            self.channels.push(channel);
                        }
                    }
                } else if complete || cancelled {
                    self.queues_done = true;
                } else if event.eq_ignore_ascii_case("QueueEntry") {
                    if let (Some(queue), Some(channel)) =
                        (p.get_nonempty("Queue"), p.get_nonempty("Uniqueid"))
                    {
                        let wait = p
                            .get("Wait")
                            .and_then(|w| w.trim().parse::<i64>().ok())
                            .unwrap_or(0)
                            .max(0);
                        self.entries
                            .push((queue.to_string(), channel.to_string(), wait));
                    }
                } else if event.eq_ignore_ascii_case("QueueMember") {
                    let link = String::new();
                    if let Some(m) = super::translate::member(link, p, false, Utc::now()) {
                        self.members.push(m);
                    }
                }
            }
        }
        true
    }
}

/// One `CoreShowChannel` item. Asterisk 11 spells some keys differently (`UniqueID`,
/// `CallerIDnum`, `Extension`) and has no Linkedid; keys are case-insensitive, the rest falls
/// back.
fn live_channel(p: &Packet) -> Option<LiveChannel> {
    let channel = p.get_nonempty("Uniqueid")?.to_string();
    let call = p
        .get_nonempty("Linkedid")
        .map(str::to_string)
        .unwrap_or_else(|| channel.clone());
    let up = p.get("ChannelState").is_some_and(|s| s.trim() == "6")
        || p.get("ChannelStateDesc")
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("Up"));
    Some(LiveChannel {
        call,
        channel,
        name: p.get("Channel").unwrap_or("").to_string(),
        caller_number: p.get("CallerIDNum").unwrap_or("").to_string(),
        caller_name: p.get("CallerIDName").unwrap_or("").to_string(),
        dialled: p
            .get_nonempty("Exten")
            .or(p.get_nonempty("Extension"))
            .unwrap_or("")
            .to_string(),
        up,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    const WIRE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ami/wire");
    const SECRET: &str = "s3cret-never-logged";
    const WAIT: Duration = Duration::from_secs(5);

    fn fixture(prefix: &str) -> Vec<u8> {
        let path = std::fs::read_dir(WIRE)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .unwrap();
        std::fs::read(path).unwrap()
    }

    fn config(addr: std::net::SocketAddr) -> AmiConfig {
        let mut cfg = AmiConfig::new(addr.to_string(), "madoguchi", SECRET);
        cfg.backoff_min = Duration::from_millis(50);
        cfg.backoff_max = Duration::from_secs(2);
        cfg.ping_interval = Duration::from_secs(10);
        cfg.timeout = Duration::from_secs(3);
        cfg
    }

    /// One accepted connection of the fake Asterisk.
    struct Fake {
        stream: TcpStream,
        decoder: Decoder,
    }

    impl Fake {
        async fn accept(listener: &TcpListener) -> Fake {
            let (stream, _) = timeout(WAIT, listener.accept())
                .await
                .expect("no connection")
                .unwrap();
            Fake {
                stream,
                decoder: Decoder::new(),
            }
        }

        async fn send(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).await.unwrap();
        }

        async fn reply(&mut self, fields: &[(&str, &str)]) {
            self.send(&encode_action(fields)).await;
        }

        /// The next packet from the client; `None` when it closed.
        async fn read(&mut self) -> Option<Packet> {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(frame) = self.decoder.next_frame() {
                    match frame.unwrap() {
                        Frame::Packet(p) => return Some(p),
                        other => panic!("client sent {other:?}"),
                    }
                }
                let n = timeout(WAIT, self.stream.read(&mut buf))
                    .await
                    .expect("client silent")
                    .ok()?;
                if n == 0 {
                    return None;
                }
                self.decoder.push(&buf[..n]);
            }
        }

        /// The next action other than Ping (answered on the way, unless `pong` is false).
        async fn action(&mut self, pong: bool) -> Packet {
            loop {
                let p = self.read().await.expect("client closed");
                if p.action() == Some("Ping") {
                    if pong {
                        let id = p.action_id().unwrap().to_string();
                        self.reply(&[("Response", "Success"), ("ActionID", &id), ("Ping", "Pong")])
                            .await;
                    }
                    continue;
                }
                return p;
            }
        }

        /// Banner, plain login accepted, empty resync listings.
        async fn login(listener: &TcpListener) -> Fake {
            let mut fake = Fake::accept(listener).await;
            fake.send(b"Asterisk Call Manager/7.0.3\r\n").await;
            let login = fake.action(true).await;
            assert_eq!(login.action(), Some("Login"));
            assert_eq!(login.get("Secret"), Some(SECRET));
            let id = login.action_id().unwrap().to_string();
            fake.reply(&[
                ("Response", "Success"),
                ("ActionID", &id),
                ("Message", "Authentication accepted"),
            ])
            .await;
            fake.resync(&[], &[]).await;
            fake
        }

        /// Answers CoreShowChannels and QueueStatus with the given items.
        async fn resync(&mut self, channels: &[Packet], entries: &[Packet]) {
            let csc = self.action(true).await;
            assert_eq!(csc.action(), Some("CoreShowChannels"));
            let qs = self.action(true).await;
            assert_eq!(qs.action(), Some("QueueStatus"));
            let (cid, qid) = (
                csc.action_id().unwrap().to_string(),
                qs.action_id().unwrap().to_string(),
            );
            self.reply(&[
                ("Response", "Success"),
                ("ActionID", &cid),
                ("EventList", "start"),
                ("Message", "Channels will follow"),
            ])
            .await;
            for c in channels {
                let mut c = c.clone();
                c.push("ActionID", cid.clone());
                self.send(&c.encode()).await;
            }
            let n = channels.len().to_string();
            self.reply(&[
                ("Event", "CoreShowChannelsComplete"),
                ("ActionID", &cid),
                ("EventList", "Complete"),
                ("ListItems", &n),
            ])
            .await;
            // Asterisk 11 shape: no EventList headers at all.
            self.reply(&[
                ("Response", "Success"),
                ("ActionID", &qid),
                ("Message", "Queue status will follow"),
            ])
            .await;
            for e in entries {
                let mut e = e.clone();
                e.push("ActionID", qid.clone());
                self.send(&e.encode()).await;
            }
            self.reply(&[("Event", "QueueStatusComplete"), ("ActionID", &qid)])
                .await;
        }
    }

    async fn next_event(rx: &mut mpsc::Receiver<PbxEvent>) -> PbxEvent {
        timeout(WAIT, rx.recv())
            .await
            .expect("no event in time")
            .expect("link stopped")
    }

    fn start(
        cfg: AmiConfig,
    ) -> (
        mpsc::Receiver<PbxEvent>,
        Arc<AmiStatus>,
        watch::Sender<bool>,
        JoinHandle<()>,
    ) {
        let (tx, rx) = mpsc::channel(1024);
        let status = AmiStatus::new();
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(run(cfg, tx, status.clone(), shutdown));
        (rx, status, stop, task)
    }

    #[tokio::test]
    async fn login_resync_then_events_flow() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (mut rx, status, stop, task) = start(config(listener.local_addr().unwrap()));

        let mut fake = Fake::accept(&listener).await;
        fake.send(b"Asterisk Call Manager/7.0.3\r\n").await;
        let login = fake.action(true).await;
        assert_eq!(login.action(), Some("Login"));
        assert_eq!(login.get("Username"), Some("madoguchi"));
        assert_eq!(login.get("Secret"), Some(SECRET));
        assert_eq!(login.get("Events"), Some("call,agent,user,system"));
        let id = login
            .action_id()
            .expect("Login carries an ActionID")
            .to_string();
        fake.reply(&[
            ("Response", "Success"),
            ("ActionID", &id),
            ("Message", "Authentication accepted"),
        ])
        .await;
        fake.send(b"Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n")
            .await;

        // A live call in the listing; a new channel appears while the listing is under way.
        let csc = fake.action(true).await;
        let qs = fake.action(true).await;
        let (cid, qid) = (
            csc.action_id().unwrap().to_string(),
            qs.action_id().unwrap().to_string(),
        );
        fake.reply(&[
            ("Response", "Success"),
            ("ActionID", &cid),
            ("EventList", "start"),
        ])
        .await;
        fake.reply(&[
            ("Event", "CoreShowChannel"),
            ("ActionID", &cid),
            ("Channel", "PJSIP/trunk-00000001"),
            ("ChannelState", "6"),
            ("ChannelStateDesc", "Up"),
            ("CallerIDNum", "0773621234"),
            ("CallerIDName", "舞鶴 太郎"),
            ("Exten", "0773689225"),
            ("Uniqueid", "1700000000.1"),
            ("Linkedid", "1700000000.1"),
            ("Application", "Queue"),
        ])
        .await;
        fake.reply(&[
            ("Event", "Newchannel"),
            ("Channel", "PJSIP/trunk-00000002"),
            ("CallerIDNum", "0773629999"),
            ("CallerIDName", ""),
            ("Exten", "0773689225"),
            ("Uniqueid", "1700000000.2"),
            ("Linkedid", "1700000000.2"),
        ])
        .await;
        fake.reply(&[
            ("Event", "CoreShowChannelsComplete"),
            ("ActionID", &cid),
            ("EventList", "Complete"),
            ("ListItems", "1"),
        ])
        .await;
        fake.reply(&[
            ("Response", "Success"),
            ("ActionID", &qid),
            ("Message", "Queue status will follow"),
        ])
        .await;
        fake.reply(&[
            ("Event", "QueueParams"),
            ("ActionID", &qid),
            ("Queue", "vaccine"),
        ])
        .await;
        fake.reply(&[
            ("Event", "QueueEntry"),
            ("ActionID", &qid),
            ("Queue", "vaccine"),
            ("Position", "1"),
            ("Uniqueid", "1700000000.1"),
        ])
        .await;
        fake.reply(&[("Event", "QueueStatusComplete"), ("ActionID", &qid)])
            .await;

        assert_eq!(
            next_event(&mut rx).await,
            PbxEvent::LinkUp { link: "ami".into() }
        );
        let PbxEvent::Resync { channels, .. } = next_event(&mut rx).await else {
            panic!("resync expected")
        };
        assert_eq!(
            channels,
            vec![LiveChannel {
                call: "1700000000.1".into(),
                channel: "1700000000.1".into(),
                name: "PJSIP/trunk-00000001".into(),
                caller_number: "0773621234".into(),
                caller_name: "舞鶴 太郎".into(),
                dialled: "0773689225".into(),
                up: true,
            }]
        );
        assert!(matches!(next_event(&mut rx).await,
            PbxEvent::QueueJoin { call, channel, queue, .. }
                if call == "1700000000.1" && channel == call && queue == "vaccine"));
        assert!(matches!(next_event(&mut rx).await,
            PbxEvent::Channel { channel, caller_number, .. } if channel == "1700000000.2" && caller_number == "0773629999"));

        // A real capture, split into odd chunks.
        let bytes = fixture("01_");
        for chunk in bytes.chunks(333) {
            fake.send(chunk).await;
        }
        let mut answered = false;
        while !answered {
            if let PbxEvent::Answer {
                device,
                hold_s,
                call,
                ..
            } = next_event(&mut rx).await
            {
                assert_eq!(
                    (device.as_str(), hold_s, call.as_str()),
                    ("SIP/777", Some(9), "1514295827.372")
                );
                answered = true;
            }
        }
        assert!(status.logged_in() && status.connected());
        assert!(
            status.events_received() > 100,
            "{}",
            status.events_received()
        );
        assert_eq!(status.login_failures(), 0);

        stop.send(true).unwrap();
        timeout(WAIT, task)
            .await
            .expect("link did not stop")
            .unwrap();
        // It said goodbye.
        let logoff = fake.action(true).await;
        assert_eq!(logoff.action(), Some("Logoff"));
        assert!(!status.connected());
    }

    #[tokio::test]
    async fn md5_challenge_login() {
        // The challenge Asterisk 18 sent in capture 16.
        let captured = {
            let mut d = Decoder::new();
            d.push(&fixture("16_"));
            assert!(matches!(d.next_frame(), Some(Ok(Frame::Banner(_)))));
            let Some(Ok(Frame::Packet(p))) = d.next_frame() else {
                panic!()
            };
            p
        };
        let challenge = captured.get("Challenge").unwrap().to_string();
        assert_eq!(challenge, "145769581");

        for (secret, flag) in [(SECRET.to_string(), true), (format!("md5:{SECRET}"), false)] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut cfg = config(listener.local_addr().unwrap());
            cfg.secret = secret;
            cfg.auth_md5 = flag;
            let (mut rx, status, stop, task) = start(cfg);
            let mut fake = Fake::accept(&listener).await;
            fake.send(b"Asterisk Call Manager/7.0.3\r\n").await;
            let ask = fake.action(true).await;
            assert_eq!(ask.action(), Some("Challenge"));
            assert_eq!(ask.get("AuthType"), Some("MD5"));
            let mut reply = Packet::new();
            for (k, v) in &captured.fields {
                let v = if k == "ActionID" {
                    ask.action_id().unwrap()
                } else {
                    v
                };
                reply.push(k.clone(), v);
            }
            fake.send(&reply.encode()).await;
            let login = fake.action(true).await;
            assert_eq!(login.action(), Some("Login"));
            assert_eq!(login.get("AuthType"), Some("MD5"));
            assert!(
                login.get("Secret").is_none(),
                "the secret must not be sent with MD5"
            );
            let expected = format!(
                "{:x}",
                Md5::digest(format!("{challenge}{SECRET}").as_bytes())
            );
            assert_eq!(login.get("Key"), Some(expected.as_str()));
            let id = login.action_id().unwrap().to_string();
            fake.reply(&[
                ("Response", "Success"),
                ("ActionID", &id),
                ("Message", "Authentication accepted"),
            ])
            .await;
            fake.resync(&[], &[]).await;
            assert_eq!(
                next_event(&mut rx).await,
                PbxEvent::LinkUp { link: "ami".into() }
            );
            assert!(
                matches!(next_event(&mut rx).await, PbxEvent::Resync { channels, .. } if channels.is_empty())
            );
            assert!(status.logged_in());
            stop.send(true).unwrap();
            timeout(WAIT, task).await.unwrap().unwrap();
        }
    }

    /// Collects log output of the current thread (the tokio test runtime is single-threaded).
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn refused_login_is_reported_and_retried_with_growing_backoff() {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut cfg = config(listener.local_addr().unwrap());
        // Long enough that a scheduling stall on a loaded CI machine cannot invert two gaps.
        cfg.backoff_min = Duration::from_millis(200);
        let backoff_min = cfg.backoff_min;
        let (mut rx, status, stop, task) = start(cfg);
        let capture = fixture("10_");
        let mut attempts = Vec::new();
        for _ in 0..4 {
            let mut fake = Fake::accept(&listener).await;
            attempts.push(Instant::now());
            // Capture 10 is the banner then the refusal; Asterisk answers after the Login.
            let banner_end = capture.iter().position(|&b| b == b'\n').unwrap() + 1;
            fake.send(&capture[..banner_end]).await;
            let login = fake.action(true).await;
            assert_eq!(login.action(), Some("Login"));
            let mut reply = String::from_utf8(capture[banner_end..].to_vec()).unwrap();
            reply = reply.replace("action/transaction_uid/1/1", login.action_id().unwrap());
            fake.send(reply.as_bytes()).await;
            drop(fake); // and Asterisk closes the socket
        }
        let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| *g >= backoff_min), "{gaps:?}");
        assert!(
            gaps[1] > gaps[0] && gaps[2] > gaps[1],
            "backoff does not grow: {gaps:?}"
        );
        // Nothing was up, so nothing went down.
        assert!(rx.try_recv().is_err());
        assert!(status.login_failures() >= 3, "{}", status.login_failures());
        assert!(status.reconnects() >= 3);
        let error = status.last_error().unwrap();
        assert!(
            error.contains("Authentication failed") && error.contains("madoguchi"),
            "{error}"
        );
        assert!(!error.contains(SECRET));
        stop.send(true).unwrap();
        timeout(WAIT, task).await.unwrap().unwrap();

        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let warning = logs
            .lines()
            .find(|l| l.contains("WARN") && l.contains("AMI login refused"))
            .unwrap_or_else(|| panic!("no warning in:\n{logs}"));
        assert!(
            warning.contains("user=madoguchi") && warning.contains("Authentication failed"),
            "{warning}"
        );
        assert!(
            !logs.contains(SECRET),
            "the secret reached the log:\n{logs}"
        );
    }

    #[tokio::test]
    async fn reconnects_after_the_pbx_drops_and_resyncs_again() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (mut rx, status, stop, task) = start(config(listener.local_addr().unwrap()));
        let fake = Fake::login(&listener).await;
        assert_eq!(
            next_event(&mut rx).await,
            PbxEvent::LinkUp { link: "ami".into() }
        );
        assert!(matches!(next_event(&mut rx).await, PbxEvent::Resync { .. }));
        drop(fake);
        assert!(matches!(next_event(&mut rx).await,
            PbxEvent::LinkDown { reason, .. } if reason.contains("closed")));
        // Login again, and the listing is asked again (Fake::login asserts both actions).
        let _fake = Fake::login(&listener).await;
        assert_eq!(
            next_event(&mut rx).await,
            PbxEvent::LinkUp { link: "ami".into() }
        );
        assert!(matches!(next_event(&mut rx).await, PbxEvent::Resync { .. }));
        assert_eq!(status.reconnects(), 1);
        assert!(status.last_error().unwrap().contains("closed"));
        stop.send(true).unwrap();
        timeout(WAIT, task).await.unwrap().unwrap();
        assert!(
            matches!(rx.recv().await, Some(PbxEvent::LinkDown { reason, .. }) if reason == "shutdown")
        );
    }

    #[tokio::test]
    async fn missing_pong_is_a_dead_link() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut cfg = config(listener.local_addr().unwrap());
        cfg.ping_interval = Duration::from_millis(100);
        let (mut rx, _status, stop, task) = start(cfg);
        let mut fake = Fake::login(&listener).await;
        assert_eq!(
            next_event(&mut rx).await,
            PbxEvent::LinkUp { link: "ami".into() }
        );
        assert!(matches!(next_event(&mut rx).await, PbxEvent::Resync { .. }));
        let started = Instant::now();
        // Swallow Pings without answering.
        let silent = tokio::spawn(async move {
            while let Some(p) = fake.read().await {
                assert_eq!(p.action(), Some("Ping"));
            }
        });
        let PbxEvent::LinkDown { reason, .. } = next_event(&mut rx).await else {
            panic!()
        };
        assert!(reason.contains("Pong"), "{reason}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(5),
            "{took:?}"
        );
        let _ = timeout(WAIT, silent).await;
        let _fake = Fake::login(&listener).await;
        assert_eq!(
            next_event(&mut rx).await,
            PbxEvent::LinkUp { link: "ami".into() }
        );
        stop.send(true).unwrap();
        timeout(WAIT, task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn refused_listing_gives_no_resync_but_events_still_flow() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (mut rx, status, stop, task) = start(config(listener.local_addr().unwrap()));
        let mut fake = Fake::accept(&listener).await;
        fake.send(b"Asterisk Call Manager/7.0.3\r\n").await;
        let login = fake.action(true).await;
        let id = login.action_id().unwrap().to_string();
        fake.reply(&[("Response", "Success"), ("ActionID", &id)])
            .await;
        let csc = fake.action(true).await;
        let qs = fake.action(true).await;
        fake.reply(&[
            ("Response", "Error"),
            ("ActionID", csc.action_id().unwrap()),
            ("Message", "Permission denied"),
        ])
        .await;
        fake.reply(&[
            ("Response", "Error"),
            ("ActionID", qs.action_id().unwrap()),
            ("Message", "Invalid/unknown command: QueueStatus"),
        ])
        .await;
        fake.send(&fixture("03_")).await;
        assert_eq!(
            next_event(&mut rx).await,
            PbxEvent::LinkUp { link: "ami".into() }
        );
        loop {
            match next_event(&mut rx).await {
                PbxEvent::Resync { .. } => panic!("no resync without a listing"),
                PbxEvent::Abandon { hold_s, .. } => {
                    assert_eq!(hold_s, Some(11));
                    break;
                }
                _ => {}
            }
        }
        assert!(status.last_error().unwrap().contains("Permission denied"));
        stop.send(true).unwrap();
        timeout(WAIT, task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_while_connecting_or_waiting_is_prompt() {
        // Nobody answers the login: the link waits, and must still stop at once.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut cfg = config(listener.local_addr().unwrap());
        cfg.timeout = Duration::from_secs(60);
        let (_rx, _status, stop, task) = start(cfg);
        let _fake = Fake::accept(&listener).await;
        stop.send(true).unwrap();
        timeout(Duration::from_secs(1), task)
            .await
            .expect("stuck in login")
            .unwrap();

        // A dropped receiver stops the link too.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (rx, _status, _stop, task) = start(config(listener.local_addr().unwrap()));
        drop(rx);
        let mut fake = Fake::accept(&listener).await;
        fake.send(b"Asterisk Call Manager/7.0.3\r\n").await;
        let login = fake.action(true).await;
        let id = login.action_id().unwrap().to_string();
        fake.reply(&[("Response", "Success"), ("ActionID", &id)])
            .await;
        timeout(WAIT, task)
            .await
            .expect("link outlived its receiver")
            .unwrap();
    }

    #[test]
    fn debug_masks_the_secret_and_backoff_stays_in_bounds() {
        let cfg = AmiConfig::new("127.0.0.1:5038", "crm", "hunter2");
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("***") && shown.contains("crm"),
            "{shown}"
        );
        for failures in 0..40 {
            let d = backoff(&cfg, failures);
            assert!(
                d >= cfg.backoff_min && d <= cfg.backoff_max,
                "{failures}: {d:?}"
            );
        }
        assert!(backoff(&cfg, 0) <= cfg.backoff_min.mul_f64(1.25));
        assert!(backoff(&cfg, 30) >= cfg.backoff_max.mul_f64(0.75));
        assert_eq!(
            md5_hex("145769581", "secret"),
            format!("{:x}", Md5::digest(b"145769581secret"))
        );
    }

    #[test]
    fn asterisk_11_channel_listing_without_linkedid() {
        let p = Packet::from_pairs(&[
            ("Event", "CoreShowChannel"),
            ("Channel", "SIP/201-00000001"),
            ("UniqueID", "1414510601.2"),
            ("Extension", "259"),
            ("ChannelState", "4"),
            ("ChannelStateDesc", "Ring"),
            ("CallerIDnum", "0773621234"),
            ("CallerIDname", "x"),
        ]);
        let c = live_channel(&p).unwrap();
        assert_eq!(
            (
                c.call.as_str(),
                c.channel.as_str(),
                c.dialled.as_str(),
                c.up
            ),
            ("1414510601.2", "1414510601.2", "259", false)
        );
        assert_eq!(c.caller_number, "0773621234");
        // Capture 14: QueueStatus without EventList ends at QueueStatusComplete.
        let mut resync = Resync::new(
            "c".into(),
            "action/transaction_uid/1/1".into(),
            Instant::now(),
        );
        let mut d = Decoder::new();
        d.push(&fixture("14_"));
        while let Some(Ok(Frame::Packet(p))) = d.next_frame() {
            assert!(resync.take(&p));
        }
        assert!(resync.queues_done && resync.queues_failed.is_none() && !resync.complete());
    }
}
