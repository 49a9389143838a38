//! The SIP link: one UDP socket, one dialog-event subscription per agent extension.
//!
//! Every extension gets `SUBSCRIBE sip:<ext>@<pbx>` (`Event: dialog`, `Accept:
//! application/dialog-info+xml`); requests are retransmitted over UDP (T1 = 500 ms doubling to
//! 4 s, given up after 32 s), a 401/407 is answered once per nonce with digest credentials, a
//! subscription is refreshed in its dialog before it expires, and one the PBX ends
//! (`Subscription-State: terminated`), refuses or stops answering is made anew with backoff.
//! Every NOTIFY of a subscription is answered 200, a retransmitted one too (its CSeq was seen:
//! no second effect), and so is one whose body cannot be read (logged and counted). A NOTIFY of
//! no subscription gets 481, so the PBX drops it. Datagrams that are not SIP are counted and
//! dropped. Nothing a datagram holds can stop the link.

use super::dialog_info::{self, MAX_BODY};
use super::digest::Challenge;
use super::translate::{Translator, LINK};
use crate::domain::call::PbxEvent;
use rsip::prelude::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// RFC 3261's T1 and T2 (UDP retransmission) and the non-INVITE transaction timeout.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const TX_TIMEOUT: Duration = Duration::from_secs(32);
/// The longest wait before a failed subscription is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often timers are looked at.
const TICK: Duration = Duration::from_millis(100);

/// Where and as whom to subscribe (`MADOGUCHI_SIP_*`).
#[derive(Clone)]
pub struct SipConfig {
    /// `host:port` of the PBX (the port defaults to 5060).
    pub pbx: String,
    /// The local UDP address to listen on.
    pub listen: String,
    /// Digest credentials; the user also names madoguchi in `From` and `Contact`.
    pub username: String,
    pub password: String,
    /// The subscription duration asked for, in seconds.
    pub expires: u32,
}

impl std::fmt::Debug for SipConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipConfig")
            .field("pbx", &self.pbx)
            .field("listen", &self.listen)
            .field("username", &self.username)
            .field("password", &"***")
            .field("expires", &self.expires)
            .finish()
    }
}

/// The default local address: every interface, port 5070 (5060 is the PBX's own).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:5070";

impl SipConfig {
    pub fn new(
        pbx: &str,
        listen: Option<&str>,
        username: String,
        password: String,
    ) -> anyhow::Result<SipConfig> {
        let pbx = pbx.trim();
        anyhow::ensure!(
            !pbx.is_empty() && !pbx.contains(['/', ' ', '@']),
            "MADOGUCHI_SIP_PBX must be host:port, got {pbx:?}"
        );
        let pbx = if pbx
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && !h.ends_with(':') && p.parse::<u16>().is_ok())
        {
            pbx.to_string()
        } else {
            format!("{pbx}:5060")
        };
        let username = if username.is_empty() {
            "madoguchi".to_string()
        } else {
            username
        };
        anyhow::ensure!(
            username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/".contains(c)),
            "MADOGUCHI_SIP_USERNAME has characters a SIP URI cannot carry: {username:?}"
        );
        Ok(SipConfig {
            pbx,
            listen: listen.unwrap_or(DEFAULT_LISTEN).to_string(),
            username,
            password,
            expires: 600,
        })
    }

    /// The PBX's host, without the port (the domain of `From`).
    fn host(&self) -> &str {
        self.pbx
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&self.pbx)
    }
}

/// Binds the link's socket (at start, so a bad address stops the server with a reason).
pub fn bind(cfg: &SipConfig) -> anyhow::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(&cfg.listen)
        .map_err(|e| anyhow::anyhow!("MADOGUCHI_SIP_LISTEN: binding UDP {}: {e}", cfg.listen))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// What `/readyz` and `/metrics` know of the link.
#[derive(Default)]
pub struct SipStatus {
    up: AtomicBool,
    local: Mutex<Option<SocketAddr>>,
    extensions: AtomicU64,
    active: AtomicU64,
    resubscribes: AtomicU64,
    notifies: AtomicU64,
    retransmitted_notifies: AtomicU64,
    stale_documents: AtomicU64,
    garbage: AtomicU64,
    malformed_bodies: AtomicU64,
    unknown_dialogs: AtomicU64,
    unknown_subscriptions: AtomicU64,
    auth_failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl SipStatus {
    pub fn new() -> Arc<SipStatus> {
        Arc::default()
    }
    /// At least one subscription is active.
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
    /// Subscriptions made anew (ended by the PBX, refused, or unanswered).
    pub fn resubscribes(&self) -> u64 {
        self.resubscribes.load(Ordering::Relaxed)
    }
    /// Datagrams that were not SIP.
    pub fn garbage(&self) -> u64 {
        self.garbage.load(Ordering::Relaxed)
    }
    /// The address the socket is bound to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.local.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn detail(&self) -> serde_json::Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "listening": self.local_addr().map(|a| a.to_string()),
            "extensions": n(&self.extensions),
            "subscriptions_active": n(&self.active),
            "notifies_received": n(&self.notifies),
            "notifies_retransmitted": n(&self.retransmitted_notifies),
            "documents_stale": n(&self.stale_documents),
            "datagrams_not_sip": n(&self.garbage),
            "bodies_malformed": n(&self.malformed_bodies),
            "dialogs_unknown": n(&self.unknown_dialogs),
            "notifies_of_no_subscription": n(&self.unknown_subscriptions),
            "auth_failures": n(&self.auth_failures),
            "last_error": self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        })
    }
    fn set_error(&self, e: &str) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
    }
}

/// A client transaction in flight (a SUBSCRIBE waiting for its final answer).
struct Tx {
    cseq: u32,
    bytes: Vec<u8>,
    next: Instant,
    interval: Duration,
    deadline: Instant,
    /// This request carried credentials (a second challenge means they were refused).
    authed: bool,
    expires: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No subscription; a new one is made at `at`.
    Idle { at: Instant },
    /// The first SUBSCRIBE of a dialog is out.
    Subscribing,
    /// Accepted; refreshed at `refresh`, gone at `expires`.
    Active {
        since: Instant,
        refresh: Instant,
        expires: Instant,
    },
}

/// One extension's subscription.
struct Sub {
    ext: String,
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    /// The PBX's Contact: where in-dialog requests go.
    remote_target: Option<String>,
    cseq: u32,
    phase: Phase,
    tx: Option<Tx>,
    last_notify_cseq: Option<u32>,
    version: Option<u64>,
    /// The last challenge, whether it came as 407, and how often its nonce was used.
    auth: Option<(Challenge, bool, u32)>,
    /// Challenges answered since the last success.
    auth_tries: u32,
    failures: u32,
    expires: u32,
}

impl Sub {
    fn new(ext: String, expires: u32, now: Instant) -> Sub {
        Sub {
            ext,
            call_id: String::new(),
            local_tag: String::new(),
            remote_tag: None,
            remote_target: None,
            cseq: 0,
            phase: Phase::Idle { at: now },
            tx: None,
            last_notify_cseq: None,
            version: None,
            auth: None,
            auth_tries: 0,
            failures: 0,
            expires,
        }
    }
    fn active(&self) -> bool {
        matches!(self.phase, Phase::Active { .. })
    }
}

/// The link's state, apart from the socket.
struct Link {
    cfg: SipConfig,
    status: Arc<SipStatus>,
    /// `ip:port` written in Via and Contact.
    contact: String,
    pbx: SocketAddr,
    subs: HashMap<String, Sub>,
    /// Call-ID → extension.
    by_call_id: HashMap<String, String>,
    translator: Translator,
    out: Vec<(Vec<u8>, SocketAddr)>,
    events: Vec<PbxEvent>,
}

/// Runs the link until shutdown: subscribes to every extension `extensions` holds (it may
/// change while running), answers NOTIFYs and hands the events on.
pub async fn run(
    cfg: SipConfig,
    socket: std::net::UdpSocket,
    mut extensions: watch::Receiver<Vec<String>>,
    events: mpsc::Sender<PbxEvent>,
    status: Arc<SipStatus>,
    mut shutdown: watch::Receiver<bool>,
) {
    let socket = match UdpSocket::from_std(socket) {
        Ok(s) => s,
        Err(e) => {
            status.set_error(&format!("UDP socket: {e}"));
            tracing::error!(link = LINK, error = %e, "SIP link cannot use its socket");
            let _ = shutdown.changed().await;
            return;
        }
    };
    let local = socket.local_addr().ok();
    *status.local.lock().unwrap_or_else(|e| e.into_inner()) = local;
    // The PBX's address, found again with backoff while its name does not resolve.
    let mut backoff = Duration::from_secs(1);
    let pbx = loop {
        match tokio::net::lookup_host(&cfg.pbx)
            .await
            .map(|mut a| a.next())
        {
            Ok(Some(a)) => break a,
            Ok(None) => status.set_error(&format!("{} has no address", cfg.pbx)),
            Err(e) => status.set_error(&format!("resolving {}: {e}", cfg.pbx)),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    };
    let contact = contact_address(local, pbx);
    tracing::info!(link = LINK, pbx = %pbx, local = ?local, %contact, "SIP dialog-event link listening");
    let run_id = run_id();
    let mut link = Link {
        cfg,
        status: status.clone(),
        contact,
        pbx,
        subs: HashMap::new(),
        by_call_id: HashMap::new(),
        translator: Translator::new(run_id),
        out: Vec::new(),
        events: Vec::new(),
    };
    let mut was_up = false;
    let mut feed_open = true;
    let mut buf = vec![0u8; 65_536];
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    link.set_extensions(&extensions.borrow_and_update().clone(), Instant::now());
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => link.datagram(&buf[..n], from, Instant::now()),
                Err(e) => {
                    // ICMP port unreachable shows up here on some systems: not fatal.
                    tracing::debug!(link = LINK, error = %e, "UDP receive");
                }
            },
            _ = tick.tick() => link.timers(Instant::now()),
            changed = extensions.changed(), if feed_open => {
                if changed.is_err() {
                    // The feed is gone (shutting down): keep what we have.
                    feed_open = false;
                } else {
                    let list = extensions.borrow_and_update().clone();
                    link.set_extensions(&list, Instant::now());
                }
            }
            _ = shutdown.changed() => {
                link.unsubscribe_all();
                link.flush(&socket).await;
                break;
            }
        }
        link.flush(&socket).await;
        for ev in link.events.drain(..) {
            if events.send(ev).await.is_err() {
                return;
            }
        }
        let up = link.subs.values().any(Sub::active);
        status.up.store(up, Ordering::Relaxed);
        status.active.store(
            link.subs.values().filter(|s| s.active()).count() as u64,
            Ordering::Relaxed,
        );
        if up != was_up {
            was_up = up;
            let ev = if up {
                tracing::info!(link = LINK, "SIP subscriptions active");
                PbxEvent::LinkUp { link: LINK.into() }
            } else {
                PbxEvent::LinkDown {
                    link: LINK.into(),
                    reason: "no subscription is active".into(),
                }
            };
            if events.send(ev).await.is_err() {
                return;
            }
        }
    }
    status.up.store(false, Ordering::Relaxed);
    if was_up {
        let _ = events
            .send(PbxEvent::LinkDown {
                link: LINK.into(),
                reason: "shutdown".into(),
            })
            .await;
    }
}

impl Link {
    async fn flush(&mut self, socket: &UdpSocket) {
        for (bytes, to) in self.out.drain(..) {
            if let Err(e) = socket.send_to(&bytes, to).await {
                tracing::debug!(link = LINK, error = %e, %to, "UDP send");
            }
        }
    }

    /// Subscribes to extensions new in `list`, unsubscribes from the ones gone.
    fn set_extensions(&mut self, list: &[String], now: Instant) {
        let gone: Vec<String> = self
            .subs
            .keys()
            .filter(|e| !list.contains(e))
            .cloned()
            .collect();
        for ext in gone {
            if let Some(mut sub) = self.subs.remove(&ext) {
                self.by_call_id.remove(&sub.call_id);
                if sub.active() {
                    self.send_subscribe(&mut sub, 0, now);
                }
            }
        }
        for ext in list {
            if !self.subs.contains_key(ext) && is_sip_user(ext) {
                self.subs
                    .insert(ext.clone(), Sub::new(ext.clone(), self.cfg.expires, now));
            }
        }
        self.status
            .extensions
            .store(self.subs.len() as u64, Ordering::Relaxed);
    }

    fn unsubscribe_all(&mut self) {
        let now = Instant::now();
        let exts: Vec<String> = self.subs.keys().cloned().collect();
        for ext in exts {
            if let Some(mut sub) = self.subs.remove(&ext) {
                if sub.active() {
                    self.send_subscribe(&mut sub, 0, now);
                }
            }
        }
    }

    /// Retransmissions, transaction timeouts, refreshes and new subscriptions that are due.
    fn timers(&mut self, now: Instant) {
        let exts: Vec<String> = self.subs.keys().cloned().collect();
        for ext in exts {
            let Some(mut sub) = self.subs.remove(&ext) else {
                continue;
            };
            self.timers_of(&mut sub, now);
            self.subs.insert(ext, sub);
        }
    }

    fn timers_of(&mut self, sub: &mut Sub, now: Instant) {
        if let Some(tx) = sub.tx.as_mut() {
            if now >= tx.deadline {
                self.fail(sub, "the PBX did not answer the SUBSCRIBE", None, now);
                return;
            }
            if now >= tx.next {
                self.out.push((tx.bytes.clone(), self.pbx));
                tx.interval = (tx.interval * 2).min(T2);
                tx.next = now + tx.interval;
            }
            return;
        }
        match sub.phase {
            Phase::Idle { at } if now >= at => {
                // A new dialog: new Call-ID and tag, nothing of the old one kept.
                self.by_call_id.remove(&sub.call_id);
                sub.call_id = format!("{}@madoguchi", token(12));
                sub.local_tag = token(8);
                sub.remote_tag = None;
                sub.remote_target = None;
                sub.last_notify_cseq = None;
                sub.version = None;
                sub.auth = None;
                sub.auth_tries = 0;
                self.by_call_id.insert(sub.call_id.clone(), sub.ext.clone());
                sub.phase = Phase::Subscribing;
                let expires = sub.expires;
                self.send_subscribe(sub, expires, now);
            }
            Phase::Active {
                refresh, expires, ..
            } => {
                if now >= expires {
                    self.fail(sub, "the subscription expired", None, now);
                } else if now >= refresh {
                    let e = sub.expires;
                    self.send_subscribe(sub, e, now);
                }
            }
            _ => {}
        }
    }

    /// The subscription failed or ended: made anew after a backoff (or `retry_after`).
    fn fail(&mut self, sub: &mut Sub, why: &str, retry_after: Option<Duration>, now: Instant) {
        if let Phase::Active { since, .. } = sub.phase {
            if now.duration_since(since) > MAX_BACKOFF {
                sub.failures = 0;
            }
        }
        let backoff =
            (Duration::from_secs(1) * 2u32.saturating_pow(sub.failures.min(6))).min(MAX_BACKOFF);
        sub.failures += 1;
        sub.tx = None;
        sub.phase = Phase::Idle {
            at: now
                + retry_after
                    .unwrap_or(backoff)
                    .min(Duration::from_secs(3600)),
        };
        self.status.resubscribes.fetch_add(1, Ordering::Relaxed);
        self.status.set_error(&format!("{}: {why}", sub.ext));
        tracing::warn!(link = LINK, ext = %sub.ext, reason = why, retry_in = ?retry_after.unwrap_or(backoff), "SIP subscription ended; subscribing again");
    }

    /// Sends a SUBSCRIBE in `sub`'s dialog (a new one when it has no remote tag yet).
    fn send_subscribe(&mut self, sub: &mut Sub, expires: u32, now: Instant) {
        sub.cseq += 1;
        let target = sub
            .remote_target
            .clone()
            .unwrap_or_else(|| format!("sip:{}@{}", sub.ext, self.cfg.pbx));
        let mut credentials = None;
        if let Some((challenge, proxy, nc)) = sub.auth.as_mut() {
            *nc += 1;
            let value = challenge.answer(
                &self.cfg.username,
                &self.cfg.password,
                "SUBSCRIBE",
                &target,
                *nc,
                &token(8),
            );
            credentials = Some((value, *proxy));
        }
        let authed = credentials.is_some();
        match build_subscribe(&SubscribeParts {
            target: &target,
            ext: &sub.ext,
            user: &self.cfg.username,
            domain: self.cfg.host(),
            pbx: &self.cfg.pbx,
            contact: &self.contact,
            call_id: &sub.call_id,
            local_tag: &sub.local_tag,
            remote_tag: sub.remote_tag.as_deref(),
            cseq: sub.cseq,
            expires,
            credentials,
        }) {
            Ok(bytes) => {
                self.out.push((bytes.clone(), self.pbx));
                sub.tx = Some(Tx {
                    cseq: sub.cseq,
                    bytes,
                    next: now + T1,
                    interval: T1,
                    deadline: now + TX_TIMEOUT,
                    authed,
                    expires,
                });
            }
            Err(e) => {
                // Only a target the PBX wrote in Contact can be unusable: start over.
                sub.remote_target = None;
                self.fail(sub, &format!("cannot build the SUBSCRIBE: {e}"), None, now);
            }
        }
    }

    /// One datagram from the network.
    fn datagram(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return; // keepalive (RFC 5626 CRLF)
        }
        let msg = match parse_message(bytes) {
            Ok(m) => m,
            Err(why) => {
                self.status.garbage.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(link = LINK, %from, %why, "dropped a datagram that is not SIP");
                return;
            }
        };
        match msg {
            rsip::SipMessage::Request(req) => self.request(req, from, now),
            rsip::SipMessage::Response(resp) => self.response(resp, now),
        }
    }

    fn request(&mut self, req: rsip::Request, from: SocketAddr, now: Instant) {
        match req.method {
            rsip::Method::Notify => self.notify(req, from, now),
            rsip::Method::Ack => {}
            rsip::Method::Options => self.reply(&req, 200, from, &[]),
            _ => self.reply(
                &req,
                405,
                from,
                &[rsip::Header::Allow(rsip::headers::Allow::new(
                    "NOTIFY, OPTIONS",
                ))],
            ),
        }
    }

    /// Answers `req` with `code` (no body) to where it came from.
    fn reply(&mut self, req: &rsip::Request, code: u16, to: SocketAddr, extra: &[rsip::Header]) {
        match build_response(req, code, extra) {
            Some(bytes) => self.out.push((bytes, to)),
            None => {
                self.status.garbage.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn notify(&mut self, req: rsip::Request, from: SocketAddr, now: Instant) {
        self.status.notifies.fetch_add(1, Ordering::Relaxed);
        let Some(parts) = NotifyParts::of(&req) else {
            self.status.garbage.fetch_add(1, Ordering::Relaxed);
            self.reply(&req, 400, from, &[]);
            return;
        };
        let Some(ext) = self.by_call_id.get(&parts.call_id).cloned() else {
            self.status
                .unknown_subscriptions
                .fetch_add(1, Ordering::Relaxed);
            self.reply(&req, 481, from, &[]);
            return;
        };
        let Some(mut sub) = self.subs.remove(&ext) else {
            self.reply(&req, 481, from, &[]);
            return;
        };
        if parts.to_tag.as_deref() != Some(sub.local_tag.as_str()) {
            self.status
                .unknown_subscriptions
                .fetch_add(1, Ordering::Relaxed);
            self.reply(&req, 481, from, &[]);
            self.subs.insert(ext, sub);
            return;
        }
        if !parts.event.eq_ignore_ascii_case("dialog") {
            self.reply(&req, 489, from, &[]);
            self.subs.insert(ext, sub);
            return;
        }
        self.reply(&req, 200, from, &[]);
        if sub.last_notify_cseq.is_some_and(|c| parts.cseq <= c) {
            // A retransmission (our 200 was lost or slow) or an older NOTIFY arriving late.
            self.status
                .retransmitted_notifies
                .fetch_add(1, Ordering::Relaxed);
            self.subs.insert(ext, sub);
            return;
        }
        sub.last_notify_cseq = Some(parts.cseq);
        if sub.remote_tag.is_none() {
            sub.remote_tag = parts.from_tag.clone();
        }
        if let Some(t) = parts.contact.clone() {
            sub.remote_target = Some(t);
        }
        self.document(&mut sub, &req);
        match parts.state {
            SubState::Active(exp) | SubState::Pending(exp) => {
                // The NOTIFY tells how long the subscription has left; it can also come
                // before the SUBSCRIBE's 200, which it then stands for.
                if let Some(secs) = exp {
                    let since = match sub.phase {
                        Phase::Active { since, .. } => since,
                        _ => now,
                    };
                    sub.phase = active_phase(since, secs.max(1), now);
                }
            }
            SubState::Terminated {
                retry_after,
                reason,
            } => {
                let why = format!(
                    "the PBX ended the subscription ({})",
                    reason.as_deref().unwrap_or("no reason given")
                );
                self.fail(&mut sub, &why, retry_after.map(Duration::from_secs), now);
            }
            SubState::Unknown => {}
        }
        self.subs.insert(ext, sub);
    }

    /// Reads a NOTIFY's body and hands its events on.
    fn document(&mut self, sub: &mut Sub, req: &rsip::Request) {
        let body = body_of(req);
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        let ctype = header_value(&req.headers, "content-type").unwrap_or_default();
        let ctype = ctype.split(';').next().unwrap_or("").trim();
        if !ctype.is_empty() && !ctype.eq_ignore_ascii_case("application/dialog-info+xml") {
            self.status.malformed_bodies.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(link = LINK, ext = %sub.ext, content_type = ctype, "NOTIFY body is not dialog-info; ignored");
            return;
        }
        let doc = match dialog_info::parse(body) {
            Ok(d) => d,
            Err(e) => {
                self.status.malformed_bodies.fetch_add(1, Ordering::Relaxed);
                self.status.set_error(&format!("{}: {e}", sub.ext));
                tracing::warn!(link = LINK, ext = %sub.ext, error = %e, "malformed dialog-info body; ignored");
                return;
            }
        };
        if let (Some(v), Some(last)) = (doc.version, sub.version) {
            if v <= last {
                self.status.stale_documents.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        if doc.version.is_some() {
            sub.version = doc.version;
        }
        let (evs, fx) = self.translator.document(&sub.ext, &doc, chrono::Utc::now());
        if fx.unknown > 0 {
            self.status
                .unknown_dialogs
                .fetch_add(fx.unknown, Ordering::Relaxed);
            tracing::debug!(link = LINK, ext = %sub.ext, dialogs = fx.unknown, "dialogs that open no call (outgoing, or never seen ringing)");
        }
        self.events.extend(evs);
    }

    fn response(&mut self, resp: rsip::Response, now: Instant) {
        let Ok(call_id) = resp.call_id_header().map(|c| c.value().to_string()) else {
            self.status.garbage.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(ext) = self.by_call_id.get(&call_id).cloned() else {
            return; // a late answer to a subscription already gone
        };
        let Some(mut sub) = self.subs.remove(&ext) else {
            return;
        };
        self.answer(&mut sub, &resp, now);
        self.subs.insert(ext, sub);
    }

    /// The PBX answered a SUBSCRIBE of `sub`.
    fn answer(&mut self, sub: &mut Sub, resp: &rsip::Response, now: Instant) {
        let cseq = resp
            .cseq_header()
            .ok()
            .and_then(|c| c.typed().ok())
            .filter(|c| c.method == rsip::Method::Subscribe)
            .map(|c| c.seq);
        let Some(tx) = sub.tx.as_mut().filter(|t| Some(t.cseq) == cseq) else {
            return; // a retransmitted final answer, or one to an older request
        };
        let code = resp.status_code.code();
        if code < 200 {
            tx.next = tx.deadline; // provisional: stop retransmitting, keep waiting
            return;
        }
        let tx = sub.tx.take().expect("checked above");
        match code {
            200..=299 => {
                sub.auth_tries = 0;
                if sub.remote_tag.is_none() {
                    sub.remote_tag = resp
                        .to_header()
                        .ok()
                        .and_then(|t| t.tag().ok().flatten())
                        .map(|t| t.value().to_string());
                }
                if let Some(c) = contact_uri(&resp.headers) {
                    sub.remote_target = Some(c);
                }
                if tx.expires == 0 {
                    return;
                }
                let secs = resp
                    .expires_header()
                    .and_then(|e| e.seconds().ok())
                    .unwrap_or(tx.expires)
                    .clamp(1, tx.expires.max(1));
                let since = match sub.phase {
                    Phase::Active { since, .. } => since,
                    _ => now,
                };
                sub.phase = active_phase(since, secs, now);
                tracing::debug!(link = LINK, ext = %sub.ext, expires = secs, "SIP subscription accepted");
            }
            401 | 407 => {
                let proxy = code == 407;
                let name = if proxy {
                    "proxy-authenticate"
                } else {
                    "www-authenticate"
                };
                let challenge = header_value(&resp.headers, name)
                    .ok_or_else(|| format!("{code} without {name}"))
                    .and_then(|v| Challenge::parse(&v));
                // Credentials answered with a new nonce (it expired, or the PBX challenges
                // every request) are tried again, a few times; the same nonce refused again
                // means wrong credentials.
                let same_nonce = |c: &Challenge| {
                    sub.auth
                        .as_ref()
                        .is_some_and(|(old, _, _)| old.nonce == c.nonce)
                };
                match challenge {
                    Ok(c) if sub.auth_tries < 3 && (!tx.authed || c.stale || !same_nonce(&c)) => {
                        sub.auth_tries += 1;
                        sub.auth = Some((c, proxy, 0));
                        self.send_subscribe(sub, tx.expires, now);
                    }
                    Ok(_) => {
                        self.status.auth_failures.fetch_add(1, Ordering::Relaxed);
                        sub.auth = None;
                        self.fail(
                            sub,
                            "the PBX refused the credentials (MADOGUCHI_SIP_USERNAME / MADOGUCHI_SIP_PASSWORD)",
                            None,
                            now,
                        );
                    }
                    Err(e) => {
                        self.status.auth_failures.fetch_add(1, Ordering::Relaxed);
                        self.fail(sub, &format!("cannot answer the challenge: {e}"), None, now);
                    }
                }
            }
            423 => {
                let min = header_value(&resp.headers, "min-expires")
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(m) if m > sub.expires && m <= 86_400 => {
                        sub.expires = m;
                        self.send_subscribe(sub, m, now);
                    }
                    _ => self.fail(
                        sub,
                        "423 Interval Too Brief without a usable Min-Expires",
                        None,
                        now,
                    ),
                }
            }
            _ => {
                let reason = format!("the PBX answered {code} {}", resp.status_code);
                if sub.active() {
                    // A refused refresh (481: the PBX forgot us): a new dialog.
                    sub.phase = Phase::Idle { at: now };
                }
                let retry = header_value(&resp.headers, "retry-after")
                    .and_then(|v| v.split(';').next()?.trim().parse().ok())
                    .map(Duration::from_secs);
                self.fail(sub, &reason, retry, now);
            }
        }
    }
}

fn active_phase(since: Instant, secs: u32, now: Instant) -> Phase {
    let life = Duration::from_secs(u64::from(secs));
    // Refresh well before the end: at 80 %, and at least 5 s (or half) before.
    let early = (life / 5).max(Duration::from_secs(5)).min(life / 2);
    Phase::Active {
        since,
        refresh: now + life - early,
        expires: now + life,
    }
}

/// `Subscription-State` (RFC 6665 §8.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
enum SubState {
    Active(Option<u32>),
    Pending(Option<u32>),
    Terminated {
        reason: Option<String>,
        retry_after: Option<u64>,
    },
    Unknown,
}

impl SubState {
    fn parse(v: &str) -> SubState {
        let mut parts = v.split(';').map(str::trim);
        let state = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut expires = None;
        let mut reason = None;
        let mut retry = None;
        for p in parts {
            let (k, val) = p.split_once('=').unwrap_or((p, ""));
            match k.trim().to_ascii_lowercase().as_str() {
                "expires" => expires = val.trim().parse().ok(),
                "reason" => reason = Some(val.trim().to_string()),
                "retry-after" => retry = val.trim().parse().ok(),
                _ => {}
            }
        }
        match state.as_str() {
            "active" => SubState::Active(expires),
            "pending" => SubState::Pending(expires),
            "terminated" => SubState::Terminated {
                reason,
                retry_after: retry,
            },
            _ => SubState::Unknown,
        }
    }
}

/// What the link needs of a NOTIFY's headers.
struct NotifyParts {
    call_id: String,
    cseq: u32,
    from_tag: Option<String>,
    to_tag: Option<String>,
    contact: Option<String>,
    event: String,
    state: SubState,
}

impl NotifyParts {
    fn of(req: &rsip::Request) -> Option<NotifyParts> {
        let call_id = req.call_id_header().ok()?.value().trim().to_string();
        let cseq = req.cseq_header().ok()?.typed().ok()?;
        if cseq.method != rsip::Method::Notify || call_id.is_empty() {
            return None;
        }
        let tag_of = |t: Result<Option<rsip::param::Tag>, rsip::Error>| {
            t.ok().flatten().map(|t| t.value().to_string())
        };
        let event = header_value(&req.headers, "event").unwrap_or_default();
        let event = event.split(';').next().unwrap_or("").trim().to_string();
        Some(NotifyParts {
            call_id,
            cseq: cseq.seq,
            from_tag: tag_of(req.from_header().ok()?.tag()),
            to_tag: tag_of(req.to_header().ok()?.tag()),
            contact: contact_uri(&req.headers),
            event,
            state: header_value(&req.headers, "subscription-state")
                .map(|v| SubState::parse(&v))
                .unwrap_or(SubState::Unknown),
        })
    }
}

/// Parses one datagram as a SIP message (rsip), refusing what cannot be one.
pub fn parse_message(bytes: &[u8]) -> Result<rsip::SipMessage, String> {
    if bytes.len() < 12 {
        return Err("too short".into());
    }
    rsip::SipMessage::try_from(bytes).map_err(|e| e.to_string())
}

/// The body, cut at `Content-Length` (UDP carries one message per datagram; trailing bytes
/// are not part of it), at most [`MAX_BODY`].
fn body_of(req: &rsip::Request) -> &[u8] {
    let body = &req.body[..];
    let len = header_value(&req.headers, "content-length")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(body.len());
    &body[..len.min(body.len()).min(MAX_BODY + 1)]
}

/// The value of the first header named `name` (case-insensitive; `Display` of rsip's headers
/// is `Name: value`).
fn header_value(headers: &rsip::Headers, name: &str) -> Option<String> {
    headers.iter().find_map(|h| {
        let text = h.to_string();
        let (n, v) = text.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// The URI of the first Contact (`<sip:2001@10.0.0.1:5060>;expires=…` → `sip:2001@10.0.0.1:5060`).
fn contact_uri(headers: &rsip::Headers) -> Option<String> {
    let c = headers.iter().find_map(|h| match h {
        rsip::Header::Contact(c) => Some(c.clone()),
        _ => None,
    })?;
    let uri = c.typed().ok()?.uri.to_string();
    (!uri.is_empty() && rsip::Uri::try_from(uri.as_str()).is_ok()).then_some(uri)
}

/// What one SUBSCRIBE is made of.
struct SubscribeParts<'a> {
    target: &'a str,
    ext: &'a str,
    user: &'a str,
    domain: &'a str,
    pbx: &'a str,
    contact: &'a str,
    call_id: &'a str,
    local_tag: &'a str,
    remote_tag: Option<&'a str>,
    cseq: u32,
    expires: u32,
    /// `Authorization` (or, with `true`, `Proxy-Authorization`) value.
    credentials: Option<(String, bool)>,
}

/// Builds a SUBSCRIBE with rsip.
fn build_subscribe(p: &SubscribeParts) -> Result<Vec<u8>, String> {
    use rsip::headers::*;
    let uri = rsip::Uri::try_from(p.target).map_err(|e| e.to_string())?;
    let mut headers: rsip::Headers = Default::default();
    headers.push(
        Via::new(format!(
            "SIP/2.0/UDP {};branch=z9hG4bK{};rport",
            p.contact,
            token(10)
        ))
        .into(),
    );
    headers.push(MaxForwards::new("70").into());
    headers.push(From::new(format!("<sip:{}@{}>;tag={}", p.user, p.domain, p.local_tag)).into());
    let to = match p.remote_tag {
        Some(t) => format!("<sip:{}@{}>;tag={t}", p.ext, p.pbx),
        None => format!("<sip:{}@{}>", p.ext, p.pbx),
    };
    headers.push(To::new(to).into());
    headers.push(CallId::new(p.call_id).into());
    headers.push(CSeq::new(format!("{} SUBSCRIBE", p.cseq)).into());
    headers.push(Contact::new(format!("<sip:{}@{}>", p.user, p.contact)).into());
    headers.push(Event::new("dialog").into());
    headers.push(Accept::new("application/dialog-info+xml").into());
    headers.push(Expires::new(p.expires.to_string()).into());
    if let Some((value, proxy)) = &p.credentials {
        if *proxy {
            headers.push(ProxyAuthorization::new(value.clone()).into());
        } else {
            headers.push(Authorization::new(value.clone()).into());
        }
    }
    headers.push(UserAgent::new("madoguchi").into());
    headers.push(ContentLength::new("0").into());
    let req = rsip::Request {
        method: rsip::Method::Subscribe,
        uri,
        version: rsip::Version::V2,
        headers,
        body: vec![],
    };
    Ok(rsip::SipMessage::Request(req).to_string().into_bytes())
}

/// Builds the answer to `req` with rsip: its Vias, From, To, Call-ID, CSeq and Timestamp
/// (RFC 3261 §8.2.6.1), no body.
fn build_response(req: &rsip::Request, code: u16, extra: &[rsip::Header]) -> Option<Vec<u8>> {
    let mut headers: rsip::Headers = Default::default();
    for h in req.headers.iter() {
        if matches!(
            h,
            rsip::Header::Via(_)
                | rsip::Header::From(_)
                | rsip::Header::To(_)
                | rsip::Header::CallId(_)
                | rsip::Header::CSeq(_)
                | rsip::Header::Timestamp(_)
        ) {
            headers.push(h.clone());
        }
    }
    for h in extra {
        headers.push(h.clone());
    }
    headers.push(rsip::headers::UserAgent::new("madoguchi").into());
    headers.push(rsip::headers::ContentLength::new("0").into());
    let resp = rsip::Response {
        status_code: code.into(),
        version: rsip::Version::V2,
        headers,
        body: vec![],
    };
    Some(rsip::SipMessage::Response(resp).to_string().into_bytes())
}

/// A SIP user part madoguchi can put in a URI as it is (extensions are letters, digits and
/// `-_.+`, see [`crate::domain::Extension`]).
fn is_sip_user(ext: &str) -> bool {
    !ext.is_empty()
        && ext.len() <= 40
        && ext
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
}

/// The `ip:port` the PBX can reach: the bound address, or (bound to every interface) the
/// address the system would send to the PBX from.
fn contact_address(local: Option<SocketAddr>, pbx: SocketAddr) -> String {
    let Some(local) = local else {
        return "127.0.0.1:5070".into();
    };
    let ip = if local.ip().is_unspecified() {
        std::net::UdpSocket::bind(if pbx.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })
            .and_then(|s| {
                s.connect(pbx)?;
                s.local_addr()
            })
            .map(|a| a.ip())
            .unwrap_or(local.ip())
    } else {
        local.ip()
    };
    SocketAddr::new(ip, local.port()).to_string()
}

/// Random lowercase hex of `bytes` bytes (tags, branches, Call-IDs, client nonces).
fn token(bytes: usize) -> String {
    crate::domain::random::hex(bytes)
}

/// This process's part of SIP call ids (base 36 of the start time in ms).
fn run_id() -> String {
    let mut n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut s = Vec::new();
    while n > 0 {
        s.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mutated NOTIFYs of a live subscription (so they reach the state and the translator, not
    /// only the parser) never panic, and every call they open is one the link followed.
    #[test]
    fn mutated_notifies_of_a_live_subscription_never_panic() {
        let cfg = SipConfig::new(
            "127.0.0.1:5070",
            Some("127.0.0.1:0"),
            String::new(),
            String::new(),
        )
        .unwrap();
        let now = Instant::now();
        let mut link = Link {
            cfg,
            status: SipStatus::new(),
            contact: "127.0.0.1:5071".into(),
            pbx: "127.0.0.1:5070".parse().unwrap(),
            subs: HashMap::new(),
            by_call_id: HashMap::new(),
            translator: Translator::new("t"),
            out: Vec::new(),
            events: Vec::new(),
        };
        let mut sub = Sub::new("2001".into(), 600, now);
        sub.call_id = "c1".into();
        sub.local_tag = "T1".into();
        sub.phase = active_phase(now, 600, now);
        link.by_call_id.insert("c1".into(), "2001".into());
        link.subs.insert("2001".into(), sub);
        let states = ["early", "confirmed", "terminated"];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n.max(1) as u64) as usize
        };
        for round in 0..3_000u32 {
            let state = states[rnd(3)];
            let body = format!(
                "<dialog-info version=\"{round}\" state=\"full\"><dialog id=\"2001\" direction=\"recipient\"><remote><identity display=\"A\">sip:0773625555@pbx</identity></remote><state>{state}</state></dialog></dialog-info>"
            );
            let mut b = format!(
                "NOTIFY sip:madoguchi@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{round}\r\nFrom: <sip:2001@pbx>;tag=P1\r\nTo: <sip:madoguchi@pbx>;tag=T1\r\nCall-ID: c1\r\nCSeq: {} NOTIFY\r\nEvent: dialog\r\nSubscription-State: active;expires=600\r\nContent-Type: application/dialog-info+xml\r\nContent-Length: {}\r\n\r\n{body}",
                round + 1,
                body.len()
            )
            .into_bytes();
            if round % 2 == 1 {
                for _ in 0..=rnd(4) {
                    if b.is_empty() {
                        break;
                    }
                    let at = rnd(b.len());
                    match rnd(3) {
                        0 => b[at] = rnd(256) as u8,
                        1 => {
                            b.remove(at);
                        }
                        _ => b.insert(at, b"<>\r\n:;=\"&/ "[rnd(11)]),
                    }
                }
            }
            link.datagram(&b, "127.0.0.1:5070".parse().unwrap(), now);
        }
        let mut opened = std::collections::HashSet::new();
        for ev in &link.events {
            match ev {
                PbxEvent::Channel { call, .. } => {
                    opened.insert(call.clone());
                }
                PbxEvent::Answer { call, .. } | PbxEvent::Hangup { call, .. } => {
                    assert!(opened.contains(call), "{ev:?} of a call never opened")
                }
                _ => {}
            }
        }
        assert!(
            opened.len() > 10,
            "the good NOTIFYs opened calls: {}",
            opened.len()
        );
        assert!(!link.out.is_empty(), "NOTIFYs were answered");
    }

    #[test]
    fn settings_and_subscription_states() {
        let c = SipConfig::new("pbx.example", None, String::new(), String::new()).unwrap();
        assert_eq!(c.pbx, "pbx.example:5060");
        assert_eq!(c.username, "madoguchi");
        assert_eq!(c.host(), "pbx.example");
        assert_eq!(c.listen, DEFAULT_LISTEN);
        let c = SipConfig::new(
            "10.0.0.5:5062",
            Some("127.0.0.1:0"),
            "cti".into(),
            "pw".into(),
        )
        .unwrap();
        assert_eq!(c.pbx, "10.0.0.5:5062");
        assert!(!format!("{c:?}").contains("\"pw\""));
        assert!(SipConfig::new("sip:2001@pbx", None, String::new(), String::new()).is_err());
        assert!(SipConfig::new("pbx", None, "a b".into(), String::new()).is_err());
        assert_eq!(
            SubState::parse("active;expires=599"),
            SubState::Active(Some(599))
        );
        assert_eq!(
            SubState::parse("terminated;reason=noresource"),
            SubState::Terminated {
                reason: Some("noresource".into()),
                retry_after: None
            }
        );
        assert_eq!(SubState::parse("whatever"), SubState::Unknown);
    }

    #[test]
    fn subscribe_is_built_and_read_back_with_rsip() {
        let bytes = build_subscribe(&SubscribeParts {
            target: "sip:2001@127.0.0.1:5070",
            ext: "2001",
            user: "cti",
            domain: "127.0.0.1",
            pbx: "127.0.0.1:5070",
            contact: "127.0.0.1:5071",
            call_id: "abc@madoguchi",
            local_tag: "t1",
            remote_tag: Some("p1"),
            cseq: 3,
            expires: 600,
            credentials: Some(("Digest username=\"cti\"".into(), false)),
        })
        .unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with("SUBSCRIBE sip:2001@127.0.0.1:5070 SIP/2.0\r\n"),
            "{text}"
        );
        for h in [
            "Event: dialog\r\n",
            "Accept: application/dialog-info+xml\r\n",
            "Expires: 600\r\n",
            "CSeq: 3 SUBSCRIBE\r\n",
            "Authorization: Digest username=\"cti\"\r\n",
            ";tag=p1",
        ] {
            assert!(text.contains(h), "{h} in {text}");
        }
        let rsip::SipMessage::Request(req) = parse_message(&bytes).unwrap() else {
            panic!("a request")
        };
        assert_eq!(req.method, rsip::Method::Subscribe);
        assert_eq!(req.call_id_header().unwrap().value(), "abc@madoguchi");
        let ok = build_response(&req, 200, &[]).unwrap();
        let rsip::SipMessage::Response(resp) = parse_message(&ok).unwrap() else {
            panic!("a response")
        };
        assert_eq!(resp.status_code.code(), 200);
        assert_eq!(resp.cseq_header().unwrap().typed().unwrap().seq, 3);
    }

    #[test]
    fn notify_parts_and_bodies() {
        let body = "<dialog-info version=\"1\"/>";
        let raw = format!(
            "NOTIFY sip:cti@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\nFrom: <sip:2001@127.0.0.1>;tag=P1\r\nTo: \"cti\" <sip:cti@127.0.0.1>;tag=T1\r\nCall-ID: c1\r\nCSeq: 2 NOTIFY\r\nContact: <sip:2001@127.0.0.1:5070>\r\nEvent: dialog\r\nSubscription-State: active;expires=599\r\nContent-Type: application/dialog-info+xml\r\nContent-Length:   {}\r\n\r\n{body}trailing",
            body.len()
        );
        let rsip::SipMessage::Request(req) = parse_message(raw.as_bytes()).unwrap() else {
            panic!()
        };
        let p = NotifyParts::of(&req).unwrap();
        assert_eq!(p.call_id, "c1");
        assert_eq!(p.cseq, 2);
        assert_eq!(p.from_tag.as_deref(), Some("P1"));
        assert_eq!(p.to_tag.as_deref(), Some("T1"));
        assert_eq!(p.contact.as_deref(), Some("sip:2001@127.0.0.1:5070"));
        assert_eq!(p.event, "dialog");
        assert_eq!(p.state, SubState::Active(Some(599)));
        assert_eq!(body_of(&req), body.as_bytes());
        assert!(run_id().len() >= 8);
        assert_eq!(token(4).len(), 8);
    }
}
