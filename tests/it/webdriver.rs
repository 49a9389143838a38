//! A minimal W3C WebDriver client over HTTP, enough to drive Debian's Chromium through
//! chromedriver: sessions, navigation, elements, keys, clicks, scripts, screenshots.

use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Driver {
    child: Child,
    http: reqwest::Client,
    base: String,
    session: String,
    _profile: madoguchi::store::testing::TempDir,
}

/// chromedriver and chromium, or why the browser test cannot run.
pub fn find_browser() -> Result<(String, String), String> {
    let find = |names: &[&str]| -> Option<String> {
        names.iter().find_map(|n| {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {n}"))
                .output()
                .ok()?;
            let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (!p.is_empty()).then_some(p)
        })
    };
    let driver = find(&["chromedriver"]).ok_or("chromedriver not found")?;
    let chrome =
        find(&["chromium", "chromium-browser", "google-chrome"]).ok_or("chromium not found")?;
    Ok((driver, chrome))
}

impl Driver {
    pub async fn start(driver: &str, chrome: &str) -> Driver {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                if r.json::<Value>()
                    .await
                    .map(|v| v["value"]["ready"] == true)
                    .unwrap_or(false)
                {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = madoguchi::store::testing::TempDir::new("chrome").expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chrome,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-background-networking", "--disable-component-update",
                         "--no-first-run", "--disable-sync", "--window-size=1366,900",
                         format!("--user-data-dir={}", profile.0.display())]
            }
        }}});
        let res: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let session = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {res}"))
            .to_string();
        Driver {
            child,
            http,
            base,
            session,
            _profile: profile,
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("webdriver json");
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The element matching `css`, waiting up to `wait` for it to appear.
    pub async fn find(&self, css: &str, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let v = self
                .cmd(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            if let Some(id) = v[ELEMENT].as_str() {
                return Some(id.to_string());
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sets the browser window's outer size (a desk's screen: 1366×768, 1920×1080).
    pub async fn set_window(&self, width: u32, height: u32) {
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Reloads the page, as the agent's F5 does.
    pub async fn refresh(&self) {
        self.cmd(reqwest::Method::POST, "/refresh", Some(json!({})))
            .await;
    }

    /// Types into whatever has the focus now (a key press the agent makes without aiming).
    pub async fn keys(&self, text: &str) {
        let mut actions = Vec::new();
        for c in text.chars() {
            actions.push(json!({"type": "keyDown", "value": c.to_string()}));
            actions.push(json!({"type": "keyUp", "value": c.to_string()}));
        }
        self.cmd(
            reqwest::Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
    }

    pub async fn type_into(&self, el: &str, text: &str) {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn click(&self, el: &str) {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub async fn text(&self, el: &str) -> String {
        self.cmd(reqwest::Method::GET, &format!("/element/{el}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn script(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Waits until `script` (a function body returning a value) returns something truthy.
    pub async fn wait_for(&self, script: &str, wait: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let v = self.script(script, vec![]).await;
            let truthy = !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0));
            if truthy || tokio::time::Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The page's console errors and uncaught exceptions since the last call (a module that
    /// fails to load or throws shows here, not in any element).
    pub async fn console_errors(&self) -> Vec<String> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({"type": "browser"})),
            )
            .await;
        v.as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn screenshot(&self, path: &std::path::Path) {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        if let Some(b64) = v.as_str() {
            if let Some(bytes) = base64_decode(b64) {
                let _ = std::fs::write(path, bytes);
            }
        }
    }

    /// Prints the page to PDF (WebDriver `POST /session/{id}/print`, Chrome's
    /// `Page.printToPDF`): A4, backgrounds off, as the page's print styles lay it out.
    pub async fn print_pdf(&self) -> Vec<u8> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/print",
                Some(json!({"page": {"width": 21.0, "height": 29.7}, "background": false})),
            )
            .await;
        v.as_str().and_then(base64_decode).unwrap_or_default()
    }

    pub async fn quit(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => return None,
        } as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}
