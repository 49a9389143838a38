//! The ARI link: the events WebSocket with reconnect and backoff, and a resync through the REST
//! channel list after every (re)connect. Like the AMI link it only reads, translates and hands
//! on; it never waits on the database.

use super::translate::{listing, Translator, LINK};
use crate::domain::call::PbxEvent;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

/// The largest ARI message or REST answer read.
const MAX_MESSAGE: usize = 4 << 20;

/// Where and as whom to connect (`MADOGUCHI_ARI_*`).
#[derive(Clone)]
pub struct AriConfig {
    /// `host:port` of Asterisk's HTTP server (from `http://host:port`).
    pub address: String,
    pub username: String,
    pub password: String,
    pub app: String,
    /// Socket and REST timeouts.
    pub timeout: Duration,
}

impl std::fmt::Debug for AriConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AriConfig")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &"***")
            .field("app", &self.app)
            .finish()
    }
}

impl AriConfig {
    /// From `MADOGUCHI_ARI_URL` (`http://host:port`; TLS is left to a local proxy).
    pub fn new(
        url: &str,
        username: String,
        password: String,
        app: String,
    ) -> anyhow::Result<AriConfig> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            anyhow::anyhow!("MADOGUCHI_ARI_URL must be http://host:port, got {url:?}")
        })?;
        let address = rest
            .trim_end_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        anyhow::ensure!(
            !address.is_empty(),
            "MADOGUCHI_ARI_URL has no host: {url:?}"
        );
        anyhow::ensure!(!app.is_empty(), "MADOGUCHI_ARI_APP must not be empty");
        Ok(AriConfig {
            address,
            username,
            password,
            app,
            timeout: Duration::from_secs(5),
        })
    }

    fn authorization(&self) -> String {
        format!(
            "Basic {}",
            base64(format!("{}:{}", self.username, self.password).as_bytes())
        )
    }
}

/// What `/readyz` and `/metrics` know of the link.
#[derive(Default)]
pub struct AriStatus {
    connected: AtomicBool,
    reconnects: AtomicU64,
    events: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl AriStatus {
    pub fn new() -> Arc<AriStatus> {
        Arc::default()
    }
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
    pub fn detail(&self) -> serde_json::Value {
        serde_json::json!({
            "connected": self.connected(),
            "events_received": self.events.load(Ordering::Relaxed),
            "last_error": self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        })
    }
    fn set_error(&self, e: &str) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
    }
}

/// Runs the link until shutdown: connect, resync, read; on any end, back off and again.
pub async fn run(
    cfg: AriConfig,
    events: mpsc::Sender<PbxEvent>,
    status: Arc<AriStatus>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut first = true;
    loop {
        if !first {
            status.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        let started = Instant::now();
        let reason = tokio::select! {
            r = session(&cfg, &events, &status) => r,
            _ = shutdown.changed() => "shutdown".to_string(),
        };
        let was_up = status.connected.swap(false, Ordering::Relaxed);
        if was_up {
            let _ = events
                .send(PbxEvent::LinkDown {
                    link: LINK.into(),
                    reason: reason.clone(),
                })
                .await;
        }
        if *shutdown.borrow() {
            return;
        }
        status.set_error(&reason);
        tracing::warn!(link = LINK, %reason, "ARI link ended; reconnecting");
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// One connection: returns why it ended.
async fn session(cfg: &AriConfig, events: &mpsc::Sender<PbxEvent>, status: &AriStatus) -> String {
    let url = format!(
        "ws://{}/ari/events?app={}&subscribeAll=true",
        cfg.address,
        percent_encode(&cfg.app)
    );
    let mut req = match url.into_client_request() {
        Ok(r) => r,
        Err(e) => return format!("bad ARI URL: {e}"),
    };
    if let Ok(v) = cfg.authorization().parse() {
        req.headers_mut().insert("authorization", v);
    }
    let ws_config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let connect = tokio_tungstenite::connect_async_with_config(req, Some(ws_config), true);
    let (mut ws, _) = match tokio::time::timeout(cfg.timeout, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return format!("connecting the events WebSocket: {e}"),
        Err(_) => return "connecting the events WebSocket timed out".into(),
    };
    status.connected.store(true, Ordering::Relaxed);
    tracing::info!(link = LINK, address = %cfg.address, app = %cfg.app, "ARI events connected");
    if events
        .send(PbxEvent::LinkUp { link: LINK.into() })
        .await
        .is_err()
    {
        return "the tracker is gone".into();
    }
    // Live state first (events meanwhile wait in the socket), then what happened since.
    match get_json(cfg, "/ari/channels").await {
        Ok(list) => {
            let ev = PbxEvent::Resync {
                link: LINK.into(),
                channels: listing(&list),
                at: chrono::Utc::now(),
            };
            if events.send(ev).await.is_err() {
                return "the tracker is gone".into();
            }
        }
        Err(e) => {
            // Without the list no call can be declared ended; the tracker keeps what it has.
            tracing::warn!(link = LINK, error = %e, "listing channels failed; no resync");
            status.set_error(&format!("GET /ari/channels: {e}"));
        }
    }
    let mut translator = Translator::new();
    while let Some(msg) = ws.next().await {
        let text = match msg {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(_)) => return "Asterisk closed the events WebSocket".into(),
            Ok(_) => continue,
            Err(e) => return format!("events WebSocket: {e}"),
        };
        status.events.fetch_add(1, Ordering::Relaxed);
        let value: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(link = LINK, error = %e, "skipped an ARI message that is not JSON");
                continue;
            }
        };
        for ev in translator.translate(&value, chrono::Utc::now()) {
            if events.send(ev).await.is_err() {
                return "the tracker is gone".into();
            }
        }
    }
    "the events WebSocket ended".into()
}

/// A REST GET answered with JSON (HTTP/1.1, `Connection: close`, plain or chunked body).
async fn get_json(cfg: &AriConfig, path: &str) -> Result<serde_json::Value, String> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(&cfg.address)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
            cfg.address,
            cfg.authorization()
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        let mut limited = (&mut s).take(MAX_MESSAGE as u64);
        limited
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok::<Vec<u8>, String>(raw)
    };
    let raw = tokio::time::timeout(cfg.timeout, fetch)
        .await
        .map_err(|_| "timed out".to_string())??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("HTTP {status}"));
    }
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body).ok_or("bad chunked body")?;
    }
    serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Standard base64 (for the Basic credentials).
fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_chunks() {
        assert_eq!(base64(b"asterisk:asterisk"), "YXN0ZXJpc2s6YXN0ZXJpc2s=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        assert!(dechunk(b"zz\r\n").is_none());
        assert_eq!(percent_encode("crm pop"), "crm%20pop");
    }

    #[test]
    fn only_plain_http_urls() {
        assert!(AriConfig::new("https://pbx:8089", "u".into(), "p".into(), "a".into()).is_err());
        let c = AriConfig::new(
            "http://10.0.0.5:8088/",
            "u".into(),
            "p".into(),
            "madoguchi".into(),
        )
        .unwrap();
        assert_eq!(c.address, "10.0.0.5:8088");
        assert!(!format!("{c:?}").contains("\"p\""));
    }
}
