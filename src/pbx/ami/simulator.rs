//! A fake Asterisk 18 (PJSIP, app_queue) that speaks real AMI over TCP, for `madoguchi demo`,
//! the tests and the benchmarks.
//!
//! It is a server, not a mock: the link under test connects to it exactly as to Asterisk, logs
//! in (plain or MD5), pings, lists channels and queues, and receives the event sequence a
//! ring-all queue call produces (TELEPHONY.md §1.5), with full channel snapshots. Calls are
//! scripted with [`SimCall`]: who calls, which extensions ring, how it ends and when.
//!
//! Built for load: every event batch is encoded once and shared by all sessions (`Arc`), each
//! session has its own writer task fed by a bounded channel, and nothing a call does waits on
//! a socket. A session that cannot keep up is disconnected, as Asterisk does when a manager
//! client stops reading; the accept loop is never blocked.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep, timeout};
use tracing::{debug, info, warn};

use super::codec::{Decoder, Frame, Packet};
use super::link::md5_hex;

/// AMI version of Asterisk 18.20, as its banner says.
pub const BANNER: &str = "Asterisk Call Manager/7.0.3";
/// The city's number as the trunk delivers it (0773-68-9225), the `Exten` of inbound calls.
pub const CITY_NUMBER: &str = "0773689225";

/// Queued writes per session before it counts as not reading (Asterisk's `writetimeout`)…
const SESSION_QUEUE: usize = 4096;
/// …or queued bytes: a batch ringing hundreds of agents is megabytes, so the count alone
/// would let one stalled client hold gigabytes.
const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Asterisk sleeps this long before refusing a login, to slow down guessing.
const LOGIN_FAILURE_DELAY: Duration = Duration::from_secs(1);
/// Bytes gathered from the queue into one socket write.
const WRITE_CHUNK: usize = 256 * 1024;

// Event classes (manager.conf read classes) as bits of a session's event mask.
const CALL: u32 = 1;
const AGENT: u32 = 2;
const USER: u32 = 4;
const SYSTEM: u32 = 8;
const DIALPLAN: u32 = 16;
const ALL: u32 = u32::MAX;

/// Channel Uniqueids and name suffixes are unique across the process, like in one Asterisk,
/// so two simulators in one test never produce the same call id.
static NEXT_UNIQUE: AtomicU64 = AtomicU64::new(1);
static NEXT_CHANNEL: AtomicU64 = AtomicU64::new(1);

/// One scripted call: it enters `queue`, every extension in `members` rings at once, and after
/// `ring` the call ends as `outcome` says; an answered call talks for `talk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCall {
    pub caller_number: String,
    pub caller_name: String,
    pub queue: String,
    /// Extensions (`201`), rung as `PJSIP/201`.
    pub members: Vec<String>,
    pub outcome: SimOutcome,
    pub ring: Duration,
    pub talk: Duration,
}

impl SimCall {
    /// A call to the `vaccine` queue answered by the first member after 3 s, talking 30 s.
    pub fn new(caller_number: impl Into<String>, members: Vec<String>) -> Self {
        Self {
            caller_number: caller_number.into(),
            caller_name: String::new(),
            queue: "vaccine".into(),
            members,
            outcome: SimOutcome::Answered { by: 0 },
            ring: Duration::from_secs(3),
            talk: Duration::from_secs(30),
        }
    }

    /// Values from outside must not break the framing: CR/LF become spaces; an empty caller
    /// name is shown as Asterisk shows it.
    fn sanitized(mut self) -> Self {
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        self.caller_number = clean(&self.caller_number);
        self.caller_name = clean(&self.caller_name);
        if self.caller_name.is_empty() {
            self.caller_name = "<unknown>".into();
        }
        if self.caller_number.is_empty() {
            self.caller_number = "<unknown>".into();
        }
        self.queue = clean(&self.queue);
        self.members = self.members.iter().map(|m| clean(m)).collect();
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimOutcome {
    /// `members[by]` picks up; the others stop ringing. Out of range counts as `Abandoned`.
    Answered { by: usize },
    /// The caller hangs up while it rings.
    Abandoned,
    /// Nobody picks up within `ring`; then the caller gives up.
    NoAnswer,
}

/// What [`Simulator::place_call`] returns.
#[derive(Debug)]
pub struct CallHandle {
    /// The call's Linkedid (the caller leg's Uniqueid), as madoguchi will know it.
    pub call_id: String,
    /// Fires right after the AgentCalled/DialBegin packets were written to every logged-in
    /// session's socket: the start of a screen-pop latency measurement.
    pub offered: oneshot::Receiver<Instant>,
    /// Fires after the call's last event was written.
    pub done: oneshot::Receiver<Instant>,
}

/// The running fake PBX. Dropping it stops the server and closes every session.
pub struct Simulator {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
}

struct Inner {
    username: String,
    secret: String,
    started: Instant,
    /// Connected sessions, for broadcasting and disconnecting. A std `Mutex`: held only to
    /// iterate and `try_send`, never across an `.await`.
    sessions: Mutex<Vec<SessionEntry>>,
    /// Live channels by Uniqueid, for CoreShowChannels. Updated before the events that
    /// announce a change are sent, so a listing is never older than the events after it.
    channels: Mutex<HashMap<String, SimChannel>>,
    /// Queues by name, for QueueStatus.
    queues: Mutex<BTreeMap<String, SimQueue>>,
    next_session: AtomicU64,
    /// [`MAX_QUEUED_BYTES`], lowered by tests.
    max_queued: AtomicUsize,
    stop: watch::Receiver<bool>,
}

struct SessionEntry {
    id: u64,
    tx: mpsc::Sender<Out>,
    /// Event classes the session receives: 0 until it logs in, then its `Events` choice.
    mask: Arc<AtomicU32>,
    /// Bytes queued for the writer and not yet written.
    queued: Arc<AtomicUsize>,
    kill: watch::Sender<bool>,
}

/// Bytes for one session's socket. `ack` is dropped once they are written, which is how
/// `offered`/`done` learn that every session got a batch.
struct Out {
    bytes: Payload,
    ack: Option<Arc<Ack>>,
    close: bool,
}

enum Payload {
    Shared(Arc<Vec<u8>>),
    Owned(Vec<u8>),
}

impl Payload {
    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Shared(b) => b,
            Payload::Owned(b) => b,
        }
    }
}

/// Fires its oneshot when the last clone is dropped, i.e. when every session holding it has
/// written (or dropped) the batch.
struct Ack(Option<oneshot::Sender<Instant>>);

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(Instant::now());
        }
    }
}

#[derive(Debug, Clone)]
struct SimChannel {
    name: String,
    state: u8,
    caller_num: String,
    caller_name: String,
    connected_num: String,
    connected_name: String,
    context: &'static str,
    exten: String,
    priority: u32,
    uniqueid: String,
    linkedid: String,
    application: &'static str,
    app_data: String,
    bridge: String,
    created: Instant,
}

#[derive(Debug, Default)]
struct SimQueue {
    members: Vec<String>,
    member_state: HashMap<String, MemberState>,
    /// Waiting callers in queue order.
    waiting: Vec<Waiting>,
    completed: u64,
    abandoned: u64,
    hold_total_s: u64,
    talk_total_s: u64,
}

#[derive(Debug, Default, Clone)]
struct MemberState {
    calls_taken: u64,
    last_call: u64,
    ringing: u32,
    in_call: u32,
}

impl MemberState {
    /// AST_DEVICE_* as QueueMember `Status` reports it.
    fn status(&self) -> u8 {
        match (self.in_call > 0, self.ringing > 0) {
            (true, true) => 7,
            (true, false) => 2,
            (false, true) => 6,
            (false, false) => 1,
        }
    }
}

#[derive(Debug, Clone)]
struct Waiting {
    channel: SimChannel,
    joined: Instant,
}

impl Simulator {
    /// Listens on `listen` (port 0 for any) and accepts logins for `username`/`secret`.
    pub async fn start(listen: SocketAddr, username: &str, secret: &str) -> io::Result<Simulator> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            username: username.to_string(),
            secret: secret.to_string(),
            started: Instant::now(),
            sessions: Mutex::new(Vec::new()),
            channels: Mutex::new(HashMap::new()),
            queues: Mutex::new(BTreeMap::new()),
            next_session: AtomicU64::new(1),
            max_queued: AtomicUsize::new(MAX_QUEUED_BYTES),
            stop: stop_rx,
        });
        tokio::spawn(accept_loop(listener, inner.clone()));
        info!(%local_addr, "AMI simulator listening");
        Ok(Simulator {
            inner,
            local_addr,
            stop,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Declares a queue and its members before any call, so QueueStatus lists them.
    pub fn add_queue(&self, queue: &str, members: &[String]) {
        let mut queues = lock(&self.inner.queues);
        let q = queues.entry(queue.to_string()).or_default();
        for m in members {
            if !q.members.contains(m) {
                q.members.push(m.clone());
            }
        }
    }

    /// Sessions logged in (and so receiving events). A benchmark waits for its link here
    /// before placing calls.
    pub fn logged_in_sessions(&self) -> usize {
        lock(&self.inner.sessions)
            .iter()
            .filter(|s| s.mask.load(Ordering::Relaxed) != 0)
            .count()
    }

    /// Channels alive now.
    pub fn live_channels(&self) -> usize {
        lock(&self.inner.channels).len()
    }

    /// Closes every session, as a PBX restart or a network cut would.
    pub fn disconnect_all(&self) {
        let sessions = std::mem::take(&mut *lock(&self.inner.sessions));
        for s in sessions {
            let _ = s.kill.send(true);
        }
    }

    /// Starts a call now. Must be called inside the tokio runtime.
    pub fn place_call(&self, call: SimCall) -> CallHandle {
        let call = call.sanitized();
        let caller_id = new_uniqueid();
        let (offered_tx, offered) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        self.add_queue(&call.queue, &call.members);
        tokio::spawn(run_call(
            self.inner.clone(),
            call,
            caller_id.clone(),
            offered_tx,
            done_tx,
        ));
        CallHandle {
            call_id: caller_id,
            offered,
            done,
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.disconnect_all();
    }
}

/// A poisoned lock only means a panic elsewhere; the data is still usable for a simulator.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn new_uniqueid() -> String {
    format!(
        "{}.{}",
        unix_now().as_secs(),
        NEXT_UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

fn new_channel_name(endpoint: &str) -> String {
    format!(
        "PJSIP/{endpoint}-{:08x}",
        NEXT_CHANNEL.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff
    )
}

fn new_bridge_id() -> String {
    let n = NEXT_UNIQUE.fetch_add(1, Ordering::Relaxed);
    let t = unix_now().as_nanos() as u64;
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        t as u32,
        (t >> 32) as u16,
        n & 0xfff,
        (n >> 12) & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    let mut stop = inner.stop.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    debug!(%peer, "AMI simulator: client connected");
                    tokio::spawn(serve_session(inner.clone(), stream));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    warn!(error = %e, "AMI simulator: accept failed");
                    sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Per-session state of the reader.
struct SessionState {
    id: u64,
    tx: mpsc::Sender<Out>,
    mask: Arc<AtomicU32>,
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    authenticated: bool,
    challenge: Option<String>,
}

impl SessionState {
    /// Queues bytes for this session only (responses, list items).
    /// `false` when the client does not read its replies (the session then ends).
    fn send(&self, bytes: Vec<u8>, close: bool) -> bool {
        let len = bytes.len();
        if !reserve(&self.queued, len, self.max_queued) {
            return false;
        }
        let out = Out {
            bytes: Payload::Owned(bytes),
            ack: None,
            close,
        };
        if self.tx.try_send(out).is_err() {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// Counts `len` more queued bytes, unless that passes `max` ([`MAX_QUEUED_BYTES`]).
fn reserve(queued: &AtomicUsize, len: usize, max: usize) -> bool {
    let before = queued.fetch_add(len, Ordering::Relaxed);
    if before + len > max {
        queued.fetch_sub(len, Ordering::Relaxed);
        return false;
    }
    true
}

async fn serve_session(inner: Arc<Inner>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel(SESSION_QUEUE);
    let (kill, mut kill_rx) = watch::channel(false);
    let id = inner.next_session.fetch_add(1, Ordering::Relaxed);
    let mask = Arc::new(AtomicU32::new(0));
    let queued = Arc::new(AtomicUsize::new(0));
    lock(&inner.sessions).push(SessionEntry {
        id,
        tx: tx.clone(),
        mask: mask.clone(),
        queued: queued.clone(),
        kill: kill.clone(),
    });
    tokio::spawn(write_session(writer, rx, queued.clone(), kill.subscribe()));

    let mut state = SessionState {
        id,
        tx,
        mask,
        queued,
        max_queued: inner.max_queued.load(Ordering::Relaxed),
        authenticated: false,
        challenge: None,
    };
    let mut banner = BANNER.as_bytes().to_vec();
    banner.extend_from_slice(b"\r\n");
    state.send(banner, false);

    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; 8192];
    let mut stop = inner.stop.clone();
    'session: loop {
        let n = tokio::select! {
            r = reader.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = killed(&mut kill_rx) => break,
            _ = stopped(&mut stop) => break,
        };
        decoder.push(&buf[..n]);
        while let Some(frame) = decoder.next_frame() {
            let keep = match frame {
                Ok(Frame::Packet(p)) => handle_action(&inner, &mut state, &p).await,
                Ok(_) => true,
                Err(e) => {
                    debug!(error = %e, "AMI simulator: bad packet from client");
                    true
                }
            };
            if !keep {
                break 'session;
            }
        }
    }
    lock(&inner.sessions).retain(|s| s.id != id);
    // The writer finishes what is queued (a Goodbye, a refusal) and closes.
    drop(state);
    drop(kill);
}

/// Resolves when the simulator stops (or is dropped).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Resolves when the session is killed (disconnect_all, too slow). The sender going away is not
/// a kill: it happens on every normal end, and queued bytes (a Goodbye) must still go out.
async fn killed(kill: &mut watch::Receiver<bool>) {
    if kill.wait_for(|k| *k).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn write_session(
    mut writer: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Out>,
    queued: Arc<AtomicUsize>,
    mut kill: watch::Receiver<bool>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut acks: Vec<Arc<Ack>> = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            _ = killed(&mut kill) => None,
            out = rx.recv() => out,
        };
        let Some(first) = first else { break };
        let mut close = first.close;
        buf.extend_from_slice(first.bytes.as_slice());
        acks.extend(first.ack);
        while !close && buf.len() < WRITE_CHUNK {
            match rx.try_recv() {
                Ok(out) => {
                    close = out.close;
                    buf.extend_from_slice(out.bytes.as_slice());
                    acks.extend(out.ack);
                }
                Err(_) => break,
            }
        }
        // A kill must not wait for a write the client will never read.
        let written = tokio::select! {
            biased;
            _ = killed(&mut kill) => false,
            w = timeout(WRITE_TIMEOUT, writer.write_all(&buf)) => matches!(w, Ok(Ok(()))),
        };
        if !written {
            break;
        }
        let _ = writer.flush().await;
        queued.fetch_sub(buf.len(), Ordering::Relaxed);
        buf.clear();
        acks.clear();
        if close {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

fn response(action_id: Option<&str>, response: &str, message: Option<&str>) -> Vec<u8> {
    let mut b = Batch::new();
    b.begin_raw();
    b.f("Response", response);
    if let Some(id) = action_id {
        b.f("ActionID", id);
    }
    if let Some(m) = message {
        b.f("Message", m);
    }
    b.end();
    b.buf
}

/// Handles one client packet; `false` ends the session.
async fn handle_action(inner: &Inner, s: &mut SessionState, p: &Packet) -> bool {
    let id = p.action_id();
    let Some(action) = p.action().map(|a| a.trim().to_ascii_lowercase()) else {
        return s.send(
            response(id, "Error", Some("Missing action in request")),
            false,
        );
    };
    if !s.authenticated && !matches!(action.as_str(), "login" | "challenge" | "logoff") {
        return s.send(response(id, "Error", Some("Permission denied")), false);
    }
    match action.as_str() {
        "login" => {
            if s.authenticated {
                return s.send(
                    response(id, "Success", Some("Already authenticated")),
                    false,
                );
            }
            let user_ok = p.get("Username") == Some(inner.username.as_str());
            let md5 = p
                .get("AuthType")
                .is_some_and(|a| a.eq_ignore_ascii_case("MD5"));
            let secret_ok = if md5 {
                match (&s.challenge, p.get("Key")) {
                    (Some(ch), Some(key)) => key.eq_ignore_ascii_case(&md5_hex(ch, &inner.secret)),
                    _ => false,
                }
            } else {
                p.get("Secret") == Some(inner.secret.as_str())
            };
            if !(user_ok && secret_ok) {
                info!(
                    user = p.get("Username").unwrap_or(""),
                    "AMI simulator: login refused"
                );
                sleep(LOGIN_FAILURE_DELAY).await;
                s.send(response(id, "Error", Some("Authentication failed")), true);
                return false;
            }
            s.authenticated = true;
            let mask = p.get("Events").map(parse_event_mask).unwrap_or(ALL);
            let mut reply = response(id, "Success", Some("Authentication accepted"));
            if mask & SYSTEM != 0 {
                let mut b = Batch::new();
                b.begin("FullyBooted", SYSTEM);
                let uptime = inner.started.elapsed().as_secs();
                b.f("Uptime", uptime);
                b.f("LastReload", uptime);
                b.f("Status", "Fully Booted");
                b.end();
                reply.extend_from_slice(&b.buf);
            }
            {
                // Under the sessions lock, which every broadcast holds while it sends: a call
                // event is either wholly before this login (not for this session) or after the
                // reply. So once a client has read "Authentication accepted", no event of a
                // call placed afterwards can be missing.
                let _broadcasts = lock(&inner.sessions);
                s.send(reply, false);
                s.mask.store(mask, Ordering::Relaxed);
            }
            debug!(session = s.id, "AMI simulator: logged in");
            true
        }
        "challenge" => {
            if !p
                .get("AuthType")
                .is_some_and(|a| a.eq_ignore_ascii_case("MD5"))
            {
                return s.send(response(id, "Error", Some("Must specify AuthType")), false);
            }
            let challenge = s.challenge.get_or_insert_with(new_challenge).clone();
            let mut b = Batch::new();
            b.begin_raw();
            b.f("Response", "Success");
            b.f("Challenge", &challenge);
            if let Some(id) = id {
                b.f("ActionID", id);
            }
            b.end();
            s.send(b.buf, false)
        }
        "logoff" => {
            s.send(
                response(id, "Goodbye", Some("Thanks for all the fish.")),
                true,
            );
            false
        }
        "ping" => {
            let mut b = Batch::new();
            b.begin_raw();
            b.f("Response", "Success");
            if let Some(id) = id {
                b.f("ActionID", id);
            }
            b.f("Ping", "Pong");
            let now = unix_now();
            b.f(
                "Timestamp",
                format_args!("{}.{:06}", now.as_secs(), now.subsec_micros()),
            );
            b.end();
            s.send(b.buf, false)
        }
        "events" => {
            let Some(mask) = p.get("EventMask").map(parse_event_mask) else {
                return s.send(response(id, "Error", Some("Invalid event mask")), false);
            };
            s.mask.store(mask, Ordering::Relaxed);
            let mut b = Batch::new();
            b.begin_raw();
            b.f("Response", "Success");
            if let Some(id) = id {
                b.f("ActionID", id);
            }
            b.f("Events", if mask == 0 { "Off" } else { "On" });
            b.end();
            s.send(b.buf, false)
        }
        "coreshowchannels" => s.send(core_show_channels(inner, id), false),
        "queuestatus" => s.send(
            queue_status(inner, id, p.get_nonempty("Queue"), p.get_nonempty("Member")),
            false,
        ),
        other => {
            let original = p.action().unwrap_or(other);
            let message = format!("Invalid/unknown command: {original}. Use Action: ListCommands to show available commands.");
            s.send(response(id, "Error", Some(&message)), false)
        }
    }
}

fn new_challenge() -> String {
    let bytes = crate::domain::random::bytes::<4>();
    // Asterisk's challenge is a decimal random number.
    (u32::from_le_bytes(bytes) & 0x7fff_ffff).to_string()
}

/// `on`, `off`, or a list of classes (`call,agent`), as Asterisk takes them.
fn parse_event_mask(value: &str) -> u32 {
    let v = value.trim().to_ascii_lowercase();
    match v.as_str() {
        "on" | "yes" | "true" | "1" | "all" => ALL,
        "off" | "no" | "false" | "0" | "" => 0,
        list => list
            .split(',')
            .map(|c| match c.trim() {
                "call" => CALL,
                "agent" => AGENT,
                "user" => USER,
                "system" => SYSTEM,
                "dialplan" => DIALPLAN,
                "all" => ALL,
                _ => 0,
            })
            .fold(0, |a, b| a | b),
    }
}

fn duration_hms(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

fn core_show_channels(inner: &Inner, id: Option<&str>) -> Vec<u8> {
    let mut channels: Vec<SimChannel> = lock(&inner.channels).values().cloned().collect();
    channels.sort_by_key(|c| c.created);
    let mut b = Batch::new();
    b.begin_raw();
    b.f("Response", "Success");
    if let Some(id) = id {
        b.f("ActionID", id);
    }
    b.f("EventList", "start");
    b.f("Message", "Channels will follow");
    b.end();
    for c in &channels {
        b.begin_raw();
        b.f("Event", "CoreShowChannel");
        if let Some(id) = id {
            b.f("ActionID", id);
        }
        b.snapshot("", c);
        b.f("BridgeId", &c.bridge);
        b.f("Application", c.application);
        b.f("ApplicationData", &c.app_data);
        b.f("Duration", duration_hms(c.created.elapsed()));
        b.end();
    }
    b.begin_raw();
    b.f("Event", "CoreShowChannelsComplete");
    if let Some(id) = id {
        b.f("ActionID", id);
    }
    b.f("EventList", "Complete");
    b.f("ListItems", channels.len());
    b.end();
    b.buf
}

fn queue_status(
    inner: &Inner,
    id: Option<&str>,
    only_queue: Option<&str>,
    only_member: Option<&str>,
) -> Vec<u8> {
    let queues = lock(&inner.queues);
    let mut b = Batch::new();
    b.begin_raw();
    b.f("Response", "Success");
    if let Some(id) = id {
        b.f("ActionID", id);
    }
    b.f("EventList", "start");
    b.f("Message", "Queue status will follow");
    b.end();
    let mut items = 0usize;
    let started = unix_now().as_secs();
    for (name, q) in queues
        .iter()
        .filter(|(n, _)| only_queue.is_none_or(|o| o == n.as_str()))
    {
        let answered = q.completed.max(1);
        b.begin_raw();
        b.f("Event", "QueueParams");
        b.f("Queue", name);
        b.f("Max", 0);
        b.f("Strategy", "ringall");
        b.f("Calls", q.waiting.len());
        b.f("Holdtime", q.hold_total_s / answered);
        b.f("TalkTime", q.talk_total_s / answered);
        b.f("Completed", q.completed);
        b.f("Abandoned", q.abandoned);
        b.f("ServiceLevel", 60);
        b.f("ServicelevelPerf", "0.0");
        b.f("ServicelevelPerf2", "0.0");
        b.f("Weight", 0);
        if let Some(id) = id {
            b.f("ActionID", id);
        }
        b.end();
        items += 1;
        for m in &q.members {
            let interface = format!("PJSIP/{m}");
            if only_member.is_some_and(|o| o != interface && o != m) {
                continue;
            }
            let st = q.member_state.get(m).cloned().unwrap_or_default();
            b.begin_raw();
            b.f("Event", "QueueMember");
            b.f("Queue", name);
            b.f("Name", &interface);
            b.f("Location", &interface);
            b.f("StateInterface", &interface);
            b.f("Membership", "static");
            b.f("Penalty", 0);
            b.f("CallsTaken", st.calls_taken);
            b.f("LastCall", st.last_call);
            b.f("LastPause", 0);
            b.f("LoginTime", started);
            b.f("InCall", u8::from(st.in_call > 0));
            b.f("Status", st.status());
            b.f("Paused", 0);
            b.f("PausedReason", "");
            b.f("Wrapuptime", 0);
            if let Some(id) = id {
                b.f("ActionID", id);
            }
            b.end();
            items += 1;
        }
        for (i, w) in q.waiting.iter().enumerate() {
            let c = &w.channel;
            b.begin_raw();
            b.f("Event", "QueueEntry");
            b.f("Queue", name);
            b.f("Position", i + 1);
            b.f("Channel", &c.name);
            b.f("Uniqueid", &c.uniqueid);
            b.f("CallerIDNum", &c.caller_num);
            b.f(
                "CallerIDName",
                if c.caller_name == "<unknown>" {
                    "unknown"
                } else {
                    &c.caller_name
                },
            );
            b.f("ConnectedLineNum", "unknown");
            b.f("ConnectedLineName", "unknown");
            b.f("Wait", w.joined.elapsed().as_secs());
            b.f("Priority", 0);
            if let Some(id) = id {
                b.f("ActionID", id);
            }
            b.end();
            items += 1;
        }
    }
    b.begin_raw();
    b.f("Event", "QueueStatusComplete");
    if let Some(id) = id {
        b.f("ActionID", id);
    }
    b.f("EventList", "Complete");
    b.f("ListItems", items);
    b.end();
    b.buf
}

/// Packets encoded once for all sessions, with the class of each so a session that asked for
/// fewer classes gets only its share.
struct Batch {
    buf: Vec<u8>,
    parts: Vec<(u32, usize, usize)>,
    classes: u32,
    start: usize,
    class: u32,
}

impl Batch {
    fn new() -> Self {
        Self {
            buf: Vec::with_capacity(4096),
            parts: Vec::new(),
            classes: 0,
            start: 0,
            class: 0,
        }
    }

    fn begin(&mut self, event: &str, class: u32) {
        self.start = self.buf.len();
        self.class = class;
        self.f("Event", event);
        self.f("Privilege", privilege(class));
    }

    /// A response or list item: not an event, no class.
    fn begin_raw(&mut self) {
        self.start = self.buf.len();
        self.class = 0;
    }

    /// Values here are generated or were sanitised on the way in (`SimCall::sanitized`).
    fn f(&mut self, key: &str, value: impl std::fmt::Display) {
        let _ = write!(self.buf, "{key}: {value}\r\n");
    }

    fn pf(&mut self, prefix: &str, key: &str, value: impl std::fmt::Display) {
        let _ = write!(self.buf, "{prefix}{key}: {value}\r\n");
    }

    fn end(&mut self) {
        self.buf.extend_from_slice(b"\r\n");
        self.parts.push((self.class, self.start, self.buf.len()));
        self.classes |= self.class;
    }

    /// The standard channel snapshot (`ast_manager_build_channel_state_string_prefix`).
    fn snapshot(&mut self, prefix: &str, c: &SimChannel) {
        self.pf(prefix, "Channel", &c.name);
        self.pf(prefix, "ChannelState", c.state);
        self.pf(prefix, "ChannelStateDesc", state_desc(c.state));
        self.pf(prefix, "CallerIDNum", &c.caller_num);
        self.pf(prefix, "CallerIDName", &c.caller_name);
        self.pf(prefix, "ConnectedLineNum", &c.connected_num);
        self.pf(prefix, "ConnectedLineName", &c.connected_name);
        self.pf(prefix, "Language", "ja");
        self.pf(prefix, "AccountCode", "");
        self.pf(prefix, "Context", c.context);
        self.pf(prefix, "Exten", &c.exten);
        self.pf(prefix, "Priority", c.priority);
        self.pf(prefix, "Uniqueid", &c.uniqueid);
        self.pf(prefix, "Linkedid", &c.linkedid);
    }

    fn bridge(&mut self, id: &str, channels: usize) {
        self.f("BridgeUniqueid", id);
        self.f("BridgeType", "basic");
        self.f("BridgeTechnology", "simple_bridge");
        self.f("BridgeCreator", "<unknown>");
        self.f("BridgeName", "<unknown>");
        self.f("BridgeNumChannels", channels);
        self.f("BridgeVideoSourceMode", "none");
    }

    fn filtered(parts: &[(u32, usize, usize)], buf: &[u8], mask: u32) -> Vec<u8> {
        let mut out = Vec::new();
        for &(class, start, end) in parts {
            if class == 0 || class & mask != 0 {
                out.extend_from_slice(&buf[start..end]);
            }
        }
        out
    }
}

fn privilege(class: u32) -> &'static str {
    match class {
        CALL => "call,all",
        AGENT => "agent,all",
        USER => "user,all",
        SYSTEM => "system,all",
        DIALPLAN => "dialplan,all",
        _ => "all",
    }
}

fn state_desc(state: u8) -> &'static str {
    match state {
        0 => "Down",
        1 => "Rsrvd",
        2 => "OffHook",
        3 => "Dialing",
        4 => "Ring",
        5 => "Ringing",
        6 => "Up",
        7 => "Busy",
        8 => "Dialing Offhook",
        9 => "Pre-ring",
        _ => "Unknown",
    }
}

impl Inner {
    /// Sends a batch to every logged-in session that wants its classes. Never waits: a session
    /// whose queue is full is disconnected (and resyncs when it reconnects).
    fn broadcast(&self, batch: Batch, ack: Option<Arc<Ack>>) {
        if batch.parts.is_empty() {
            return;
        }
        let Batch {
            buf,
            parts,
            classes,
            ..
        } = batch;
        let shared = Arc::new(buf);
        let mut dead = Vec::new();
        let max_queued = self.max_queued.load(Ordering::Relaxed);
        let mut sessions = lock(&self.sessions);
        for s in sessions.iter() {
            let mask = s.mask.load(Ordering::Relaxed);
            if mask == 0 {
                continue;
            }
            let bytes = if mask & classes == classes {
                Payload::Shared(shared.clone())
            } else {
                let filtered = Batch::filtered(&parts, &shared, mask);
                if filtered.is_empty() {
                    continue;
                }
                Payload::Owned(filtered)
            };
            let len = bytes.as_slice().len();
            if !reserve(&s.queued, len, max_queued) {
                warn!(
                    session = s.id,
                    "AMI simulator: client does not keep up; disconnecting it"
                );
                dead.push(s.id);
                continue;
            }
            let out = Out {
                bytes,
                ack: ack.clone(),
                close: false,
            };
            match s.tx.try_send(out) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.queued.fetch_sub(len, Ordering::Relaxed);
                    warn!(
                        session = s.id,
                        "AMI simulator: client does not keep up; disconnecting it"
                    );
                    dead.push(s.id);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    s.queued.fetch_sub(len, Ordering::Relaxed);
                    dead.push(s.id);
                }
            }
        }
        if !dead.is_empty() {
            sessions.retain(|s| {
                let keep = !dead.contains(&s.id);
                if !keep {
                    let _ = s.kill.send(true);
                }
                keep
            });
        }
    }

    fn set_channel(&self, c: &SimChannel) {
        lock(&self.channels).insert(c.uniqueid.clone(), c.clone());
    }

    fn remove_channel(&self, c: &SimChannel) {
        lock(&self.channels).remove(&c.uniqueid);
    }

    fn with_queue<R>(&self, queue: &str, f: impl FnOnce(&mut SimQueue) -> R) -> R {
        let mut queues = lock(&self.queues);
        f(queues.entry(queue.to_string()).or_default())
    }
}

fn ack(tx: oneshot::Sender<Instant>) -> Arc<Ack> {
    Arc::new(Ack(Some(tx)))
}

fn hangup(b: &mut Batch, c: &SimChannel, cause: u16, text: &str) {
    b.begin("Hangup", CALL);
    b.snapshot("", c);
    b.f("Cause", cause);
    b.f("Cause-txt", text);
    b.end();
}

fn dial_end(b: &mut Batch, caller: &SimChannel, leg: &SimChannel, status: &str) {
    b.begin("DialEnd", CALL);
    b.snapshot("", caller);
    b.snapshot("Dest", leg);
    b.f("DialStatus", status);
    b.end();
}

fn agent_fields(b: &mut Batch, queue: &str, ext: &str) {
    b.f("Queue", queue);
    b.f("Interface", format_args!("PJSIP/{ext}"));
    b.f("MemberName", format_args!("PJSIP/{ext}"));
}

/// The life of one call, as Asterisk 18 with PJSIP and a ring-all queue reports it.
async fn run_call(
    inner: Arc<Inner>,
    call: SimCall,
    caller_id: String,
    offered: oneshot::Sender<Instant>,
    done: oneshot::Sender<Instant>,
) {
    let mut stop = inner.stop.clone();
    let queue = call.queue.clone();
    let now = Instant::now();

    // The trunk leg arrives ringing at Asterisk, is answered by the dialplan and enters the queue.
    let mut caller = SimChannel {
        name: new_channel_name("trunk"),
        state: 4,
        caller_num: call.caller_number.clone(),
        caller_name: call.caller_name.clone(),
        connected_num: "<unknown>".into(),
        connected_name: "<unknown>".into(),
        context: "from-trunk",
        exten: CITY_NUMBER.into(),
        priority: 1,
        uniqueid: caller_id.clone(),
        linkedid: caller_id.clone(),
        application: "AppDial",
        app_data: String::new(),
        bridge: String::new(),
        created: now,
    };
    inner.set_channel(&caller);
    let mut b = Batch::new();
    b.begin("Newchannel", CALL);
    b.snapshot("", &caller);
    b.end();
    caller.state = 6;
    caller.priority = 2;
    caller.application = "Answer";
    b.begin("Newstate", CALL);
    b.snapshot("", &caller);
    b.end();
    caller.priority = 3;
    caller.application = "Queue";
    caller.app_data = format!("{queue},t,,,600");
    inner.set_channel(&caller);
    let (position, count) = inner.with_queue(&queue, |q| {
        q.waiting.push(Waiting {
            channel: caller.clone(),
            joined: now,
        });
        (q.waiting.len(), q.waiting.len())
    });
    b.begin("QueueCallerJoin", AGENT);
    b.snapshot("", &caller);
    b.f("Queue", &queue);
    b.f("Position", position);
    b.f("Count", count);
    b.end();
    inner.broadcast(b, None);

    // Ring all members at once.
    let mut legs: Vec<(String, SimChannel)> = Vec::with_capacity(call.members.len());
    let mut b = Batch::new();
    for ext in &call.members {
        let mut leg = SimChannel {
            name: new_channel_name(ext),
            state: 0,
            caller_num: ext.clone(),
            caller_name: ext.clone(),
            connected_num: "<unknown>".into(),
            connected_name: "<unknown>".into(),
            context: "agents",
            exten: "s".into(),
            priority: 1,
            uniqueid: new_uniqueid(),
            linkedid: caller.linkedid.clone(),
            application: "AppDial",
            app_data: "(Outgoing Line)".into(),
            bridge: String::new(),
            created: Instant::now(),
        };
        b.begin("Newchannel", CALL);
        b.snapshot("", &leg);
        b.end();
        leg.connected_num = caller.caller_num.clone();
        leg.connected_name = caller.caller_name.clone();
        b.begin("AgentCalled", AGENT);
        b.snapshot("", &caller);
        b.snapshot("Dest", &leg);
        agent_fields(&mut b, &queue, ext);
        b.end();
        b.begin("DialBegin", CALL);
        b.snapshot("", &caller);
        b.snapshot("Dest", &leg);
        b.f("DialString", format_args!("PJSIP/{ext}"));
        b.end();
        legs.push((ext.clone(), leg));
    }
    for (_, leg) in &mut legs {
        leg.state = 5;
        b.begin("Newstate", CALL);
        b.snapshot("", leg);
        b.end();
        inner.set_channel(leg);
    }
    inner.with_queue(&queue, |q| {
        for (ext, _) in &legs {
            q.member_state.entry(ext.clone()).or_default().ringing += 1;
        }
    });
    inner.broadcast(b, Some(ack(offered)));

    tokio::select! {
        _ = sleep(call.ring) => {}
        _ = stopped(&mut stop) => return,
    }
    let hold_s = call.ring.as_secs_f64().round() as u64;
    let leave = |inner: &Inner, caller: &SimChannel, answered: bool| {
        inner.with_queue(&queue, |q| {
            let position = q
                .waiting
                .iter()
                .position(|w| w.channel.uniqueid == caller.uniqueid)
                .map_or(1, |i| i + 1);
            q.waiting.retain(|w| w.channel.uniqueid != caller.uniqueid);
            for (ext, _) in &legs {
                let m = q.member_state.entry(ext.clone()).or_default();
                m.ringing = m.ringing.saturating_sub(1);
            }
            if answered {
                q.hold_total_s += hold_s;
            } else {
                q.abandoned += 1;
            }
            (position, q.waiting.len())
        })
    };

    let winner = match call.outcome {
        SimOutcome::Answered { by } if by < legs.len() => Some(by),
        _ => None,
    };
    let Some(by) = winner else {
        // Abandoned, or nobody answered and the caller gave up.
        let mut b = Batch::new();
        for (ext, leg) in &legs {
            if call.outcome == SimOutcome::NoAnswer {
                b.begin("AgentRingNoAnswer", AGENT);
                b.snapshot("", &caller);
                b.snapshot("Dest", leg);
                agent_fields(&mut b, &queue, ext);
                b.f("RingTime", call.ring.as_millis());
                b.end();
                dial_end(&mut b, &caller, leg, "NOANSWER");
                hangup(&mut b, leg, 19, "No answer");
            } else {
                dial_end(&mut b, &caller, leg, "CANCEL");
                hangup(&mut b, leg, 16, "Normal Clearing");
            }
            inner.remove_channel(leg);
        }
        let (position, count) = leave(&inner, &caller, false);
        b.begin("QueueCallerAbandon", AGENT);
        b.snapshot("", &caller);
        b.f("Queue", &queue);
        b.f("Position", position);
        b.f("OriginalPosition", position);
        b.f("HoldTime", hold_s);
        b.end();
        b.begin("QueueCallerLeave", AGENT);
        b.snapshot("", &caller);
        b.f("Queue", &queue);
        b.f("Count", count);
        b.f("Position", position);
        b.end();
        hangup(&mut b, &caller, 16, "Normal Clearing");
        inner.remove_channel(&caller);
        inner.broadcast(b, Some(ack(done)));
        return;
    };

    // One member answers; the others stop ringing.
    let mut b = Batch::new();
    let (winner_ext, mut agent) = legs[by].clone();
    agent.state = 6;
    b.begin("Newstate", CALL);
    b.snapshot("", &agent);
    b.end();
    dial_end(&mut b, &caller, &agent, "ANSWER");
    for (i, (_, leg)) in legs.iter().enumerate() {
        if i != by {
            dial_end(&mut b, &caller, leg, "CANCEL");
            hangup(&mut b, leg, 26, "Answered elsewhere");
            inner.remove_channel(leg);
        }
    }
    let (position, count) = leave(&inner, &caller, true);
    inner.with_queue(&queue, |q| {
        q.member_state
            .entry(winner_ext.clone())
            .or_default()
            .in_call += 1
    });
    caller.connected_num = winner_ext.clone();
    caller.connected_name = winner_ext.clone();
    b.begin("QueueCallerLeave", AGENT);
    b.snapshot("", &caller);
    b.f("Queue", &queue);
    b.f("Count", count);
    b.f("Position", position);
    b.end();
    b.begin("AgentConnect", AGENT);
    b.snapshot("", &caller);
    b.snapshot("Dest", &agent);
    agent_fields(&mut b, &queue, &winner_ext);
    b.f("HoldTime", hold_s);
    b.f("RingTime", hold_s);
    b.end();
    let bridge = new_bridge_id();
    b.begin("BridgeCreate", CALL);
    b.bridge(&bridge, 0);
    b.end();
    caller.bridge = bridge.clone();
    agent.bridge = bridge.clone();
    for (n, c) in [(1, &caller), (2, &agent)] {
        b.begin("BridgeEnter", CALL);
        b.bridge(&bridge, n);
        b.snapshot("", c);
        b.end();
    }
    inner.set_channel(&caller);
    inner.set_channel(&agent);
    inner.broadcast(b, None);

    tokio::select! {
        _ = sleep(call.talk) => {}
        _ = stopped(&mut stop) => return,
    }

    // The caller hangs up.
    let talk_s = call.talk.as_secs_f64().round() as u64;
    let mut b = Batch::new();
    b.begin("AgentComplete", AGENT);
    b.snapshot("", &caller);
    b.snapshot("Dest", &agent);
    agent_fields(&mut b, &queue, &winner_ext);
    b.f("HoldTime", hold_s);
    b.f("TalkTime", talk_s);
    b.f("Reason", "caller");
    b.end();
    for (n, c) in [(1, &caller), (0, &agent)] {
        b.begin("BridgeLeave", CALL);
        b.bridge(&bridge, n);
        b.snapshot("", c);
        b.end();
    }
    b.begin("BridgeDestroy", CALL);
    b.bridge(&bridge, 0);
    b.end();
    hangup(&mut b, &caller, 16, "Normal Clearing");
    hangup(&mut b, &agent, 16, "Normal Clearing");
    inner.remove_channel(&caller);
    inner.remove_channel(&agent);
    inner.with_queue(&queue, |q| {
        q.completed += 1;
        q.talk_total_s += talk_s;
        let m = q.member_state.entry(winner_ext.clone()).or_default();
        m.in_call = m.in_call.saturating_sub(1);
        m.calls_taken += 1;
        m.last_call = unix_now().as_secs();
    });
    inner.broadcast(b, Some(ack(done)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Extension;
    use crate::pbx::ami::codec::encode_action;
    use crate::pbx::ami::link::{run, AmiConfig, AmiStatus};
    use crate::pbx::{DialStatus, PbxEvent};

    const USER: &str = "madoguchi";
    const SECRET: &str = "vaccine-2021";
    const WAIT: Duration = Duration::from_secs(5);

    async fn simulator() -> Simulator {
        Simulator::start("127.0.0.1:0".parse().unwrap(), USER, SECRET)
            .await
            .unwrap()
    }

    fn members(exts: &[&str]) -> Vec<String> {
        exts.iter().map(|e| e.to_string()).collect()
    }

    struct Link {
        rx: mpsc::Receiver<PbxEvent>,
        status: Arc<AmiStatus>,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    fn link(sim: &Simulator, secret: &str) -> Link {
        let mut cfg = AmiConfig::new(sim.local_addr().to_string(), USER, secret);
        cfg.backoff_min = Duration::from_millis(50);
        cfg.backoff_max = Duration::from_millis(500);
        cfg.timeout = Duration::from_secs(3);
        let (tx, rx) = mpsc::channel(4096);
        let status = AmiStatus::new();
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(run(cfg, tx, status.clone(), shutdown));
        Link {
            rx,
            status,
            stop,
            task,
        }
    }

    impl Link {
        async fn next(&mut self) -> PbxEvent {
            timeout(WAIT, self.rx.recv())
                .await
                .expect("no event in time")
                .expect("link stopped")
        }

        /// Events until none arrives for `quiet`.
        async fn drain(&mut self, quiet: Duration) -> Vec<PbxEvent> {
            let mut out = Vec::new();
            while let Ok(Some(e)) = timeout(quiet, self.rx.recv()).await {
                out.push(e);
            }
            out
        }

        async fn stop(self) {
            let _ = self.stop.send(true);
            timeout(WAIT, self.task)
                .await
                .expect("link did not stop")
                .unwrap();
        }
    }

    fn of_call<'a>(events: &'a [PbxEvent], call_id: &str) -> Vec<&'a PbxEvent> {
        events
            .iter()
            .filter(|e| match e {
                PbxEvent::Channel { call, .. }
                | PbxEvent::QueueJoin { call, .. }
                | PbxEvent::Offer { call, .. }
                | PbxEvent::OfferEnd { call, .. }
                | PbxEvent::Answer { call, .. }
                | PbxEvent::Abandon { call, .. }
                | PbxEvent::Hangup { call, .. } => call == call_id,
                _ => false,
            })
            .collect()
    }

    fn ext(device: &str) -> String {
        Extension::from_device(device)
            .map(|e| e.as_str().to_string())
            .unwrap_or_default()
    }

    fn offer_ends(events: &[&PbxEvent]) -> Vec<(String, DialStatus)> {
        let mut v: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                PbxEvent::OfferEnd { device, status, .. } => Some((ext(device), *status)),
                _ => None,
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[tokio::test]
    async fn link_sees_answered_abandoned_and_unanswered_calls() {
        let sim = simulator().await;
        let mut link = link(&sim, SECRET);
        assert_eq!(link.next().await, PbxEvent::LinkUp { link: "ami".into() });
        assert!(
            matches!(link.next().await, PbxEvent::Resync { channels, .. } if channels.is_empty())
        );
        assert_eq!(sim.logged_in_sessions(), 1);

        let ring = Duration::from_millis(150);
        let talk = Duration::from_millis(100);
        let answered = sim.place_call(SimCall {
            caller_number: "0773621234".into(),
            caller_name: "マイヅル タロウ".into(),
            queue: "vaccine".into(),
            members: members(&["201", "202", "203"]),
            outcome: SimOutcome::Answered { by: 1 },
            ring: Duration::from_millis(1600),
            talk,
        });
        let abandoned = sim.place_call(SimCall {
            caller_number: "09012345678".into(),
            caller_name: String::new(),
            queue: "vaccine".into(),
            members: members(&["201", "202"]),
            outcome: SimOutcome::Abandoned,
            ring,
            talk,
        });
        let unanswered = sim.place_call(SimCall {
            caller_number: "0773629999".into(),
            caller_name: String::new(),
            queue: "vaccine".into(),
            members: members(&["204"]),
            outcome: SimOutcome::NoAnswer,
            ring,
            talk,
        });
        let ids = [
            answered.call_id.clone(),
            abandoned.call_id.clone(),
            unanswered.call_id.clone(),
        ];
        assert!(ids[0] != ids[1] && ids[1] != ids[2]);
        for h in [answered, abandoned, unanswered] {
            timeout(WAIT, h.offered).await.unwrap().unwrap();
            timeout(WAIT, h.done).await.unwrap().unwrap();
        }
        let events = link.drain(Duration::from_millis(300)).await;
        assert_eq!(sim.live_channels(), 0);

        // Answered by 202 after 1.6 s of ringing 201, 202 and 203.
        let a = of_call(&events, &ids[0]);
        assert!(a.iter().any(|e| matches!(e,
            PbxEvent::Channel { channel, name, caller_number, caller_name, dialled, .. }
                if *channel == ids[0] && name.starts_with("PJSIP/trunk-") && caller_number == "0773621234"
                    && caller_name == "マイヅル タロウ" && dialled == CITY_NUMBER)));
        assert!(a.iter().any(|e| matches!(e, PbxEvent::QueueJoin { channel, queue, .. } if *channel == ids[0] && queue == "vaccine")));
        let mut offered: Vec<(String, bool)> = a
            .iter()
            .filter_map(|e| match e {
                PbxEvent::Offer {
                    device,
                    queue,
                    agent_channel,
                    ..
                } => {
                    assert!(agent_channel.is_some());
                    Some((ext(device), queue.is_some()))
                }
                _ => None,
            })
            .collect();
        offered.sort();
        let expected: Vec<(String, bool)> = ["201", "202", "203"]
            .iter()
            .flat_map(|e| [(e.to_string(), false), (e.to_string(), true)])
            .collect();
        assert_eq!(
            offered, expected,
            "AgentCalled (with queue) and DialBegin per member"
        );
        assert_eq!(
            offer_ends(&a),
            vec![
                ("201".into(), DialStatus::Cancel),
                ("202".into(), DialStatus::Answer),
                ("203".into(), DialStatus::Cancel)
            ]
        );
        let answers: Vec<_> = a
            .iter()
            .filter_map(|e| match e {
                PbxEvent::Answer {
                    device,
                    queue,
                    hold_s,
                    ..
                } => Some((device.as_str(), queue.as_deref(), *hold_s)),
                _ => None,
            })
            .collect();
        assert_eq!(answers, vec![("PJSIP/202", Some("vaccine"), Some(2))]);
        assert_eq!(
            a.iter()
                .filter(|e| matches!(e, PbxEvent::Hangup { .. }))
                .count(),
            4
        );
        assert!(!a.iter().any(|e| matches!(e, PbxEvent::Abandon { .. })));
        // Order: offers before the answer, the answer before the hangups.
        let pos = |f: &dyn Fn(&PbxEvent) -> bool| a.iter().position(|e| f(e)).unwrap();
        assert!(
            pos(&|e| matches!(e, PbxEvent::Offer { .. }))
                < pos(&|e| matches!(e, PbxEvent::Answer { .. }))
        );
        assert!(
            pos(&|e| matches!(e, PbxEvent::Answer { .. }))
                < pos(&|e| matches!(e, PbxEvent::Hangup { channel, .. } if *channel == ids[0]))
        );

        // Abandoned while 201 and 202 rang.
        let b = of_call(&events, &ids[1]);
        assert_eq!(
            offer_ends(&b),
            vec![
                ("201".into(), DialStatus::Cancel),
                ("202".into(), DialStatus::Cancel)
            ]
        );
        assert!(b.iter().any(
            |e| matches!(e, PbxEvent::Abandon { queue, hold_s: Some(0), .. } if queue == "vaccine")
        ));
        assert!(!b.iter().any(|e| matches!(e, PbxEvent::Answer { .. })));
        assert_eq!(
            b.iter()
                .filter(|e| matches!(e, PbxEvent::Hangup { .. }))
                .count(),
            3
        );
        assert!(b.iter().any(
            |e| matches!(e, PbxEvent::Channel { caller_name, .. } if caller_name == "<unknown>")
        ));

        // Nobody answered 204; the caller gave up.
        let c = of_call(&events, &ids[2]);
        assert_eq!(offer_ends(&c), vec![("204".into(), DialStatus::NoAnswer)]);
        assert!(c.iter().any(|e| matches!(e, PbxEvent::Abandon { .. })));
        assert!(c.iter().any(|e| matches!(
            e,
            PbxEvent::Hangup {
                cause: Some(19),
                ..
            }
        )));
        assert!(!c.iter().any(|e| matches!(e, PbxEvent::Answer { .. })));

        assert!(link.status.events_received() > 40);
        link.stop().await;
    }

    #[tokio::test]
    async fn wrong_password_is_refused_and_the_socket_closed() {
        let sim = simulator().await;
        let mut stream = TcpStream::connect(sim.local_addr()).await.unwrap();
        stream
            .write_all(&encode_action(&[
                ("Action", "Login"),
                ("ActionID", "1"),
                ("Username", USER),
                ("Secret", "wrong"),
            ]))
            .await
            .unwrap();
        let mut all = Vec::new();
        timeout(WAIT, stream.read_to_end(&mut all))
            .await
            .expect("socket not closed")
            .unwrap();
        let text = String::from_utf8(all).unwrap();
        assert_eq!(
            text,
            format!("{BANNER}\r\nResponse: Error\r\nActionID: 1\r\nMessage: Authentication failed\r\n\r\n")
        );

        // Through the real link: reported as a login failure, no LinkUp.
        let mut link = link(&sim, "wrong");
        let deadline = Instant::now() + WAIT;
        while link.status.login_failures() == 0 {
            assert!(Instant::now() < deadline, "no login failure reported");
            sleep(Duration::from_millis(50)).await;
        }
        assert!(link
            .status
            .last_error()
            .unwrap()
            .contains("Authentication failed"));
        assert!(link.rx.try_recv().is_err());
        assert_eq!(sim.logged_in_sessions(), 0);
        link.stop().await;
    }

    /// A raw AMI client for the protocol details.
    struct Client {
        stream: TcpStream,
        decoder: Decoder,
    }

    impl Client {
        async fn connect(sim: &Simulator) -> Client {
            let mut c = Client {
                stream: TcpStream::connect(sim.local_addr()).await.unwrap(),
                decoder: Decoder::new(),
            };
            assert_eq!(c.frame().await, Some(Frame::Banner(BANNER.into())));
            c
        }
        async fn frame(&mut self) -> Option<Frame> {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(f) = self.decoder.next_frame() {
                    return Some(f.unwrap());
                }
                let n = timeout(WAIT, self.stream.read(&mut buf))
                    .await
                    .expect("server silent")
                    .unwrap();
                if n == 0 {
                    return None;
                }
                self.decoder.push(&buf[..n]);
            }
        }
        async fn packet(&mut self) -> Packet {
            match self.frame().await {
                Some(Frame::Packet(p)) => p,
                other => panic!("expected a packet, got {other:?}"),
            }
        }
        async fn send(&mut self, fields: &[(&str, &str)]) {
            self.stream.write_all(&encode_action(fields)).await.unwrap();
        }
        /// Packets up to and including the list terminator.
        async fn list(&mut self, complete: &str) -> Vec<Packet> {
            let mut out = Vec::new();
            loop {
                let p = self.packet().await;
                let done = p.is_event(complete);
                out.push(p);
                if done {
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn md5_login_ping_events_unknown_actions_and_logoff() {
        let sim = simulator().await;
        let mut c = Client::connect(&sim).await;
        c.send(&[("Action", "Ping"), ("ActionID", "early")]).await;
        let p = c.packet().await;
        assert_eq!(
            (p.response(), p.get("Message")),
            (Some("Error"), Some("Permission denied"))
        );

        c.send(&[
            ("Action", "Challenge"),
            ("ActionID", "c1"),
            ("AuthType", "MD5"),
        ])
        .await;
        let p = c.packet().await;
        assert_eq!((p.response(), p.action_id()), (Some("Success"), Some("c1")));
        let challenge = p.get("Challenge").unwrap().to_string();
        assert!(challenge.parse::<u64>().is_ok(), "{challenge}");
        let key = md5_hex(&challenge, SECRET);
        c.send(&[
            ("Action", "Login"),
            ("ActionID", "l1"),
            ("Username", USER),
            ("AuthType", "md5"),
            ("Key", &key),
        ])
        .await;
        let p = c.packet().await;
        assert_eq!(p.get("Message"), Some("Authentication accepted"));
        let p = c.packet().await;
        assert!(p.is_event("FullyBooted"));
        assert_eq!(p.get("Privilege"), Some("system,all"));
        assert_eq!(sim.logged_in_sessions(), 1);

        c.send(&[("Action", "Ping"), ("ActionID", "p1")]).await;
        let p = c.packet().await;
        assert_eq!(
            (p.response(), p.get("Ping"), p.action_id()),
            (Some("Success"), Some("Pong"), Some("p1"))
        );
        c.send(&[("Action", "Frobnicate"), ("ActionID", "x")]).await;
        let p = c.packet().await;
        assert_eq!(p.response(), Some("Error"));
        assert!(p
            .get("Message")
            .unwrap()
            .starts_with("Invalid/unknown command: Frobnicate"));
        c.send(&[("ActionID", "y")]).await;
        assert_eq!(
            c.packet().await.get("Message"),
            Some("Missing action in request")
        );

        // Only agent events from now on.
        c.send(&[
            ("Action", "Events"),
            ("ActionID", "e"),
            ("EventMask", "agent"),
        ])
        .await;
        assert_eq!(c.packet().await.get("Events"), Some("On"));
        let h = sim.place_call(SimCall {
            ring: Duration::from_millis(10),
            talk: Duration::from_millis(10),
            ..SimCall::new("0773620000", members(&["201"]))
        });
        timeout(WAIT, h.done).await.unwrap().unwrap();
        let mut names = Vec::new();
        loop {
            let p = c.packet().await;
            assert_eq!(p.get("Privilege"), Some("agent,all"), "{p:?}");
            let name = p.event().unwrap().to_string();
            names.push(name.clone());
            if name == "AgentComplete" {
                break;
            }
        }
        assert_eq!(
            names,
            [
                "QueueCallerJoin",
                "AgentCalled",
                "QueueCallerLeave",
                "AgentConnect",
                "AgentComplete"
            ]
        );

        c.send(&[("Action", "Logoff"), ("ActionID", "bye")]).await;
        let p = c.packet().await;
        assert_eq!(
            (p.response(), p.get("Message")),
            (Some("Goodbye"), Some("Thanks for all the fish."))
        );
        assert_eq!(c.frame().await, None, "socket closed after Goodbye");
    }

    #[tokio::test]
    async fn listings_show_a_ringing_call_and_the_link_resyncs_it() {
        let sim = simulator().await;
        sim.add_queue("vaccine", &members(&["201", "202", "205"]));
        let h = sim.place_call(SimCall {
            ring: Duration::from_secs(30),
            ..SimCall::new("0773621234", members(&["201", "202"]))
        });
        timeout(WAIT, h.offered).await.unwrap().unwrap();
        assert_eq!(sim.live_channels(), 3);

        let mut c = Client::connect(&sim).await;
        c.send(&[
            ("Action", "Login"),
            ("ActionID", "1"),
            ("Username", USER),
            ("Secret", SECRET),
            ("Events", "off"),
        ])
        .await;
        assert_eq!(
            c.packet().await.get("Message"),
            Some("Authentication accepted")
        );
        c.send(&[("Action", "QueueStatus"), ("ActionID", "q")])
            .await;
        let list = c.list("QueueStatusComplete").await;
        assert_eq!(
            (list[0].response(), list[0].get("EventList")),
            (Some("Success"), Some("start"))
        );
        let entry = list.iter().find(|p| p.is_event("QueueEntry")).unwrap();
        assert_eq!(entry.get("Uniqueid"), Some(h.call_id.as_str()));
        assert_eq!(entry.get("CallerIDNum"), Some("0773621234"));
        let statuses: Vec<_> = list
            .iter()
            .filter(|p| p.is_event("QueueMember"))
            .map(|p| {
                (
                    p.get("Name").unwrap().to_string(),
                    p.get("Status").unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            statuses,
            vec![
                ("PJSIP/201".into(), "6".into()),
                ("PJSIP/202".into(), "6".into()),
                ("PJSIP/205".into(), "1".into())
            ]
        );
        let end = list.last().unwrap();
        assert_eq!(
            (end.get("EventList"), end.get("ListItems"), end.action_id()),
            (Some("Complete"), Some("5"), Some("q"))
        );
        assert!(list.iter().all(|p| p.action_id() == Some("q")));

        // The link connecting now learns of the call from the listings alone.
        let mut link = link(&sim, SECRET);
        assert_eq!(link.next().await, PbxEvent::LinkUp { link: "ami".into() });
        let PbxEvent::Resync { channels, .. } = link.next().await else {
            panic!("no resync")
        };
        assert_eq!(channels.len(), 3);
        assert!(channels.iter().all(|c| c.call == h.call_id));
        let caller = channels.iter().find(|c| c.channel == h.call_id).unwrap();
        assert!(caller.up && caller.caller_number == "0773621234" && caller.dialled == CITY_NUMBER);
        assert!(channels
            .iter()
            .filter(|c| c.channel != h.call_id)
            .all(|c| !c.up && c.name.starts_with("PJSIP/20")));
        // The queue's members come first, then the caller waiting.
        let mut next = link.next().await;
        while matches!(next, PbxEvent::Member { .. }) {
            next = link.next().await;
        }
        assert!(matches!(next,
            PbxEvent::QueueJoin { call, channel, queue, .. }
                if call == h.call_id && channel == h.call_id && queue == "vaccine"));
        link.stop().await;
    }

    #[tokio::test]
    async fn link_reconnects_when_the_simulator_drops_it() {
        let sim = simulator().await;
        let mut link = link(&sim, SECRET);
        assert_eq!(link.next().await, PbxEvent::LinkUp { link: "ami".into() });
        assert!(matches!(link.next().await, PbxEvent::Resync { .. }));
        sim.disconnect_all();
        assert!(matches!(link.next().await, PbxEvent::LinkDown { .. }));
        assert_eq!(link.next().await, PbxEvent::LinkUp { link: "ami".into() });
        assert!(matches!(link.next().await, PbxEvent::Resync { .. }));
        assert_eq!(link.status.reconnects(), 1);
        // Events flow on the new session.
        let h = sim.place_call(SimCall {
            ring: Duration::from_millis(10),
            talk: Duration::from_millis(10),
            ..SimCall::new("0773620001", members(&["208"]))
        });
        timeout(WAIT, h.done).await.unwrap().unwrap();
        let events = link.drain(Duration::from_millis(200)).await;
        assert!(of_call(&events, &h.call_id)
            .iter()
            .any(|e| matches!(e, PbxEvent::Answer { device, .. } if device == "PJSIP/208")));
        link.stop().await;
    }

    /// Not a benchmark (that is `madoguchi bench`): checks that many concurrent calls to many
    /// agents, seen by two sessions, all complete and every offer arrives exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_calls_reach_every_session() {
        let sim = simulator().await;
        let agents: Vec<String> = (0..500).map(|i| format!("{}", 2000 + i)).collect();
        let mut clients = Vec::new();
        for _ in 0..2 {
            let mut c = Client::connect(&sim).await;
            c.send(&[
                ("Action", "Login"),
                ("ActionID", "1"),
                ("Username", USER),
                ("Secret", SECRET),
                ("Events", "call,agent"),
            ])
            .await;
            assert_eq!(
                c.packet().await.get("Message"),
                Some("Authentication accepted")
            );
            clients.push(c);
        }
        let calls = 200usize;
        let per_call = 10usize;
        let counters: Vec<_> = clients
            .into_iter()
            .map(|mut c| {
                tokio::spawn(async move {
                    let (mut offers, mut completes) = (0usize, 0usize);
                    while completes < calls {
                        let p = c.packet().await;
                        if p.is_event("AgentCalled") {
                            offers += 1;
                        } else if p.is_event("QueueCallerLeave") {
                            completes += 1;
                        }
                    }
                    offers
                })
            })
            .collect();
        let mut handles = Vec::new();
        for i in 0..calls {
            let members: Vec<String> = (0..per_call)
                .map(|j| agents[(i * 7 + j * 31) % agents.len()].clone())
                .collect();
            let outcome = match i % 3 {
                0 => SimOutcome::Answered { by: i % per_call },
                1 => SimOutcome::Abandoned,
                _ => SimOutcome::NoAnswer,
            };
            handles.push(sim.place_call(SimCall {
                caller_number: format!("0773{:06}", i),
                caller_name: String::new(),
                queue: "vaccine".into(),
                members,
                outcome,
                ring: Duration::from_millis(20),
                talk: Duration::from_millis(20),
            }));
        }
        for h in handles {
            timeout(WAIT, h.offered).await.unwrap().unwrap();
            timeout(WAIT, h.done).await.unwrap().unwrap();
        }
        for counter in counters {
            assert_eq!(
                timeout(WAIT, counter).await.unwrap().unwrap(),
                calls * per_call
            );
        }
        assert_eq!(sim.live_channels(), 0);
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_dropped_and_others_carry_on() {
        let sim = simulator().await;
        let mut stalled = Client::connect(&sim).await;
        stalled
            .send(&[("Action", "Login"), ("Username", USER), ("Secret", SECRET)])
            .await;
        assert_eq!(
            stalled.packet().await.get("Message"),
            Some("Authentication accepted")
        );
        let mut link = link(&sim, SECRET);
        assert_eq!(link.next().await, PbxEvent::LinkUp { link: "ami".into() });
        assert!(matches!(link.next().await, PbxEvent::Resync { .. }));
        assert_eq!(sim.logged_in_sessions(), 2);

        // The link reads all along (a link that stops reading is dropped too).
        let mut rx = std::mem::replace(&mut link.rx, mpsc::channel(1).1);
        let (placed_tx, mut placed) = watch::channel(usize::MAX);
        let collector = tokio::spawn(async move {
            let (mut abandons, mut downs) = (0, 0);
            while abandons < *placed.borrow_and_update() {
                match timeout(WAIT, rx.recv()).await {
                    Ok(Some(PbxEvent::Abandon { .. })) => abandons += 1,
                    Ok(Some(PbxEvent::LinkDown { .. })) => downs += 1,
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
            (abandons, downs)
        });
        // `stalled` never reads again: socket buffers fill, then its queue. Calls come at a
        // pace the link can follow, until the simulator gives up on `stalled`.
        sim.inner.max_queued.store(1024 * 1024, Ordering::Relaxed);
        let many: Vec<String> = (0..50).map(|i| format!("{}", 3000 + i)).collect();
        let mut handles = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while sim.logged_in_sessions() == 2 {
            assert!(
                Instant::now() < deadline,
                "the stalled client was never dropped"
            );
            handles.push(sim.place_call(SimCall {
                ring: Duration::from_millis(50),
                talk: Duration::from_millis(50),
                outcome: SimOutcome::Abandoned,
                ..SimCall::new("0773620002", many.clone())
            }));
            sleep(Duration::from_millis(20)).await;
        }
        let calls = handles.len();
        let _ = placed_tx.send(calls);
        // Offers are confirmed although one session never received them.
        for h in handles {
            timeout(WAIT, h.offered).await.unwrap().unwrap();
            timeout(WAIT, h.done).await.unwrap().unwrap();
        }
        let (abandons, downs) = timeout(WAIT * 2, collector).await.unwrap().unwrap();
        assert_eq!((abandons, downs), (calls, 0));
        assert_eq!(sim.logged_in_sessions(), 1);
        drop(stalled);
        link.stop().await;
    }
}
