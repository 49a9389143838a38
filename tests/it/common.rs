//! The harness: a real server on 127.0.0.1:0 with a fresh database, HTTP and WebSocket
//! clients that log in as staff do, and a fake Asterisk that replays captured bytes.

use futures_util::{SinkExt, StreamExt};
use madoguchi::app::{build_with_store, Running};
use madoguchi::domain::{
    AddressNo, BirthDate, Extension, Intent, Kana, MunicipalityCode, PhoneNumber, PostalCode, Role,
    Sex, TicketNo,
};
use madoguchi::settings::Settings;
use madoguchi::store::residents::NewResident;
use madoguchi::store::testing::TestDb;
use madoguchi::store::Store;
use serde_json::Value;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

pub use madoguchi::store::testing::engines;

static SPOOLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub struct TestServer {
    pub running: Option<Running>,
    pub url: String,
    pub db: Option<TestDb>,
}

impl TestServer {
    /// A server on a fresh database of `engine`, optionally linked to an AMI peer.
    pub async fn start(engine: &str, ami: Option<String>) -> TestServer {
        let db = TestDb::new(engine).await.expect("test database");
        let store = db.store.clone();
        Self::start_on(db, store, ami).await
    }

    /// A server on `db`, reaching it through `store` (which may take another road to the
    /// same database, such as a proxy a test can cut).
    pub async fn start_on(db: TestDb, store: Store, ami: Option<String>) -> TestServer {
        Self::start_with(db, store, move |s: &mut Settings| {
            if let Some(addr) = ami {
                s.ami_address = Some(addr);
                s.ami_username = "madoguchi".into();
                s.ami_secret = "s3cret".into();
            }
        })
        .await
    }

    /// A server on `db` through `store`, with settings changed by `adjust`.
    pub async fn start_with(
        db: TestDb,
        store: Store,
        adjust: impl FnOnce(&mut Settings),
    ) -> TestServer {
        let spool = std::env::temp_dir().join(format!(
            "madoguchi-spool-{}-{}",
            std::process::id(),
            SPOOLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut settings = Settings {
            spool_dir: Some(spool.to_string_lossy().into_owned()),
            listen: "127.0.0.1:0".into(),
            database_url: db.url.clone(),
            ..Settings::default()
        };
        adjust(&mut settings);
        let running = build_with_store(settings, store)
            .await
            .expect("server starts");
        let url = running.url();
        TestServer {
            running: Some(running),
            url,
            db: Some(db),
        }
    }

    pub fn store(&self) -> &Store {
        &self.db.as_ref().expect("db").store
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.expect("clean shutdown");
        }
        if let Some(db) = self.db.take() {
            db.cleanup().await;
        }
    }

    pub async fn add_user(&self, username: &str, role: Role, extension: Option<&str>) -> i64 {
        let hash = madoguchi::store::users::hash_password(username).expect("hash");
        let ext = extension.map(|e| Extension::parse(e).expect("extension"));
        let id = self
            .store()
            .upsert_user(username, username, &hash, role, ext.as_ref())
            .await
            .expect("user");
        if let Some(r) = &self.running {
            r.tracker
                .directory
                .refresh(self.store())
                .await
                .expect("refresh");
        }
        id
    }

    /// Logs in (password = username, as `add_user` sets it) and returns a client with the cookie.
    pub async fn login(&self, username: &str) -> Client {
        login(&self.url, username).await
    }
}

/// Logs in to the server at `base` (password = username) and returns a client with the cookie.
pub async fn login(base: &str, username: &str) -> Client {
    {
        let http = reqwest::Client::new();
        let res = http
            .post(format!("{base}/api/session"))
            .json(&serde_json::json!({"username": username, "password": username}))
            .send()
            .await
            .expect("login request");
        assert_eq!(res.status(), 200, "login as {username}");
        let cookie = res
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("session cookie")
            .to_string();
        Client {
            http,
            cookie,
            base: base.to_string(),
        }
    }
}

pub struct Client {
    pub http: reqwest::Client,
    pub cookie: String,
    pub base: String,
}

impl Client {
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let res = self
            .http
            .get(format!("{}{}", self.base, path))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("GET");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self
            .http
            .post(format!("{}{}", self.base, path))
            .header("cookie", &self.cookie)
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn ws(&self) -> Ws {
        self.ws_with("").await.0
    }

    /// Opens `/ws?QUERY` (empty: no query) and returns the socket with its hello.
    pub async fn ws_with(&self, query: &str) -> (Ws, Value) {
        let sep = if query.is_empty() { "" } else { "?" };
        self.ws_at(&format!("/ws{sep}{query}")).await
    }

    /// Opens the WebSocket at `path` (with its query) and returns it with its hello.
    pub async fn ws_at(&self, path: &str) -> (Ws, Value) {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}{path}", self.base.replace("http://", "ws://"));
        let mut req = url.into_client_request().expect("ws request");
        req.headers_mut()
            .insert("cookie", self.cookie.parse().expect("cookie header"));
        let (stream, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("ws connect");
        let mut ws = Ws {
            stream,
            held: Default::default(),
        };
        let hello = ws.next_json(Duration::from_secs(5)).await.expect("hello");
        assert_eq!(hello["type"], "hello");
        (ws, hello)
    }
}

#[derive(Debug)]
#[allow(dead_code)] // the message is read through Debug in failure output
pub enum WsEnd {
    Closed(Option<u16>),
    Message(Value),
    Timeout,
}

pub struct Ws {
    pub stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    /// Messages read ahead while completing a pop.
    held: std::collections::VecDeque<Value>,
}

impl Ws {
    /// The next JSON message (skipping pongs, and the record updates that
    /// [`Ws::pop_with_record`] already merged), or None after `wait`.
    pub async fn next_json(&mut self, wait: Duration) -> Option<Value> {
        if let Some(m) = self.held.pop_front() {
            return Some(m);
        }
        self.read_json(wait).await
    }

    /// The next text message as it came, pongs included, or None after `wait`.
    pub async fn next_any(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??
                .ok()?;
            match msg {
                Message::Text(t) => {
                    return Some(serde_json::from_str(&t).expect("server sends JSON"))
                }
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    async fn read_json(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self.next_any(left).await?;
            if v["type"] != "pong" {
                return Some(v);
            }
        }
    }

    /// The next screen pop with its record: a pop that went out before the ledger answered
    /// (`lookup: pending`, as on a loaded machine) is completed from the `candidates_update`
    /// that follows it. Other messages in between are kept for [`Ws::next_json`] to return.
    pub async fn pop_with_record(&mut self, wait: Duration) -> Option<Value> {
        // A pop already read ahead is taken from the held messages; the rest stay in order.
        let held_pop = self.held.iter().position(|m| m["type"] == "screen_pop");
        let mut pop = match held_pop.and_then(|i| self.held.remove(i)) {
            Some(pop) => pop,
            None => loop {
                let m = self.read_json(wait).await?;
                if m["type"] == "screen_pop" {
                    break m;
                }
                self.held.push_back(m);
            },
        };
        if pop["lookup"] == "pending" {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let m = self.read_json(left).await?;
                if m["type"] == "candidates_update" && m["call"]["id"] == pop["call"]["id"] {
                    pop["candidates"] = m["candidates"].clone();
                    pop["lookup"] = m["lookup"].clone();
                    break;
                }
                self.held.push_back(m);
            }
        }
        Some(pop)
    }

    /// How the socket ends within `wait`: closed by the server (with its close code), a
    /// message instead, or nothing at all (a timeout, which is not a close).
    pub async fn end(&mut self, wait: Duration) -> WsEnd {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return WsEnd::Timeout,
                Ok(None) => return WsEnd::Closed(None),
                Ok(Some(Err(_))) => return WsEnd::Closed(None),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return WsEnd::Closed(frame.map(|f| u16::from(f.code)))
                }
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                    if v["type"] != "pong" {
                        return WsEnd::Message(v);
                    }
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.into()))
            .await
            .expect("ws send");
    }
}

/// A resident with the given phones (as written).
pub fn resident(n: u32, name: &str, kana: &str, phones: &[&str]) -> NewResident {
    NewResident {
        address_no: AddressNo::parse(&format!("{:010}", 5_000_000 + n)).expect("address no"),
        municipality_code: MunicipalityCode::parse("262021").expect("code"),
        ticket_no: TicketNo::parse(&format!("{:010}", 1234 + n)).expect("ticket"),
        name: name.into(),
        name_kana: Kana::parse(kana).expect("kana"),
        birth_date: BirthDate::parse("1941-03-02", chrono::Utc::now().date_naive()).expect("date"),
        sex: Sex::Female,
        postal_code: PostalCode::parse("6250036").ok(),
        address: "京都府舞鶴市字浜1番地".into(),
        town: "浜".into(),
        district: "東".into(),
        household_no: Some(format!("H{n}")),
        intent: Intent::Wants,
        needs_transport: true,
        notes: String::new(),
        phones: phones
            .iter()
            .map(|p| (PhoneNumber::parse(p).expect("phone"), p.to_string(), "home"))
            .collect(),
    }
}

/// A fake Asterisk that replays captured bytes: the scripted one of `pbx.rs` (it accepts
/// clients one after another, answers every action, and writes what it is told to, exactly).
pub use crate::pbx::ScriptedPbx as FakeAsterisk;

pub fn fixture(name: &str) -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ami/wire/");
    let entry = std::fs::read_dir(dir)
        .expect("testdata/ami/wire in the checkout")
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with(name))
        .unwrap_or_else(|| panic!("no fixture {name}"));
    std::fs::read(entry.path()).expect("read fixture")
}

/// Splits a capture at the start of the first packet containing `marker` (e.g. "Event: AgentConnect").
pub fn split_before(bytes: &[u8], marker: &str) -> (Vec<u8>, Vec<u8>) {
    let text = String::from_utf8_lossy(bytes);
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in capture"));
    (bytes[..at].to_vec(), bytes[at..].to_vec())
}

/// True when the PostgreSQL tests can run; says "skipped" when they cannot (a failure with
/// `MADOGUCHI_REQUIRE_ALL=1`).
pub fn require_postgres() -> bool {
    engines().contains(&"postgres")
}
