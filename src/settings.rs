//! Settings: `madoguchi.toml` (path by `--config`), then `MADOGUCHI_*` environment variables,
//! the environment winning. Secrets never reach a log: `Debug` masks them.

use anyhow::Context;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub database_url: String,
    pub listen: String,
    pub ami_address: Option<String>,
    pub ami_username: String,
    pub ami_secret: String,
    /// Log in with the MD5 challenge instead of sending the secret.
    pub ami_md5: bool,
    /// The dialplan context click-to-dial calls numbers in (`MADOGUCHI_DIAL_CONTEXT`).
    pub dial_context: String,
    pub ari_url: Option<String>,
    pub ari_username: String,
    pub ari_password: String,
    pub ari_app: String,
    pub sip_pbx: Option<String>,
    pub sip_listen: Option<String>,
    /// Digest credentials for the SIP subscriptions (the user also names madoguchi in `From`).
    pub sip_username: String,
    pub sip_password: String,
    pub webhook_token: Option<String>,
    /// JSON log lines (for a log collector) instead of human-readable ones.
    pub log_json: bool,
    /// How long a login lasts, in hours (one shift and some).
    pub session_hours: i64,
    /// Seconds between AMI keepalive pings.
    pub ami_ping_secs: u64,
    /// The address staff type into the browser, e.g. `https://madoguchi.city.example`. When it
    /// is https the session cookie is `Secure`; its origin is always an allowed `Origin`.
    pub public_url: Option<String>,
    /// Other origins whose pages may send state-changing requests and open `/ws` (a reverse
    /// proxy's public name), e.g. `https://madoguchi.city.example`. The server's own origin
    /// (the `Host` it is reached by) is always allowed. In the file: a list, or one
    /// comma-separated string as in the environment.
    #[serde(deserialize_with = "comma_list")]
    pub allowed_origins: Vec<String>,
    /// Seconds a connection may take to send a request's headers (also the idle limit
    /// between requests on a kept-alive connection).
    pub header_timeout_s: u64,
    /// Open HTTP connections (WebSockets included) served at once; more wait to be accepted.
    /// Default: the open-file limit less a reserve for the database and the PBX links.
    pub max_connections: Option<usize>,
    /// Where call-log rows the database could not take by shutdown are kept until the next
    /// start (default: the SQLite file's folder, or the working directory for PostgreSQL).
    pub spool_dir: Option<String>,
    /// 後処理: seconds of after-call work after a call an agent answered ends, before they are
    /// ready again (0: none).
    pub acw_seconds: u64,
    /// Queue figures: answered within this many seconds counts toward the service level.
    pub service_level_s: u64,
    /// Queue figures: callers who give up within fewer seconds than this are short abandons.
    pub short_abandon_s: u64,
    /// Venues: the forecast warns when the wait at reception would exceed this many minutes.
    pub reception_max_wait_min: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: "sqlite://madoguchi.db".into(),
            listen: "127.0.0.1:8080".into(),
            ami_address: None,
            ami_username: String::new(),
            ami_secret: String::new(),
            ami_md5: false,
            dial_context: "from-internal".into(),
            ari_url: None,
            ari_username: String::new(),
            ari_password: String::new(),
            ari_app: "madoguchi".into(),
            sip_pbx: None,
            sip_listen: None,
            sip_username: String::new(),
            sip_password: String::new(),
            webhook_token: None,
            log_json: false,
            session_hours: 12,
            ami_ping_secs: 20,
            public_url: None,
            allowed_origins: Vec::new(),
            header_timeout_s: 10,
            max_connections: None,
            spool_dir: None,
            acw_seconds: 60,
            service_level_s: 20,
            short_abandon_s: 5,
            reception_max_wait_min: 15,
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mask = |s: &str| if s.is_empty() { "" } else { "***" };
        f.debug_struct("Settings")
            .field("database_url", &crate::store::mask_url(&self.database_url))
            .field("listen", &self.listen)
            .field("ami_address", &self.ami_address)
            .field("ami_username", &self.ami_username)
            .field("ami_secret", &mask(&self.ami_secret))
            .field("ari_url", &self.ari_url)
            .field("ari_password", &mask(&self.ari_password))
            .field("sip_pbx", &self.sip_pbx)
            .field("sip_listen", &self.sip_listen)
            .field("sip_username", &self.sip_username)
            .field("sip_password", &mask(&self.sip_password))
            .field("webhook_token", &self.webhook_token.as_deref().map(mask))
            .field("session_hours", &self.session_hours)
            .field("public_url", &self.public_url)
            .field("allowed_origins", &self.allowed_origins)
            .field("header_timeout_s", &self.header_timeout_s)
            .field("max_connections", &self.max_connections)
            .field("acw_seconds", &self.acw_seconds)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Reads the file (if given, or `madoguchi.toml` if it exists), then the environment.
    pub fn load(config: Option<&Path>) -> anyhow::Result<Settings> {
        let mut s = match config {
            Some(p) => Self::from_file(p)?,
            None if Path::new("madoguchi.toml").exists() => {
                Self::from_file(Path::new("madoguchi.toml"))?
            }
            None => Settings::default(),
        };
        s.apply_env(|k| std::env::var(k).ok())?;
        Ok(s)
    }

    fn from_file(path: &Path) -> anyhow::Result<Settings> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}: bad settings", path.display()))
    }

    /// Applies `MADOGUCHI_<FIELD>` variables.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let opt = |v: String| if v.is_empty() { None } else { Some(v) };
        if let Some(v) = get("MADOGUCHI_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = get("MADOGUCHI_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = get("MADOGUCHI_AMI_ADDRESS") {
            self.ami_address = opt(v);
        }
        if let Some(v) = get("MADOGUCHI_AMI_USERNAME") {
            self.ami_username = v;
        }
        if let Some(v) = get("MADOGUCHI_AMI_SECRET") {
            self.ami_secret = v;
        }
        if let Some(v) = get("MADOGUCHI_AMI_MD5") {
            self.ami_md5 = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = get("MADOGUCHI_DIAL_CONTEXT") {
            if !v.trim().is_empty() {
                self.dial_context = v.trim().to_string();
            }
        }
        if let Some(v) = get("MADOGUCHI_ARI_URL") {
            self.ari_url = opt(v);
        }
        if let Some(v) = get("MADOGUCHI_ARI_USERNAME") {
            self.ari_username = v;
        }
        if let Some(v) = get("MADOGUCHI_ARI_PASSWORD") {
            self.ari_password = v;
        }
        if let Some(v) = get("MADOGUCHI_ARI_APP") {
            self.ari_app = v;
        }
        if let Some(v) = get("MADOGUCHI_SIP_PBX") {
            self.sip_pbx = opt(v);
        }
        if let Some(v) = get("MADOGUCHI_SIP_LISTEN") {
            self.sip_listen = opt(v);
        }
        if let Some(v) = get("MADOGUCHI_SIP_USERNAME") {
            self.sip_username = v;
        }
        if let Some(v) = get("MADOGUCHI_SIP_PASSWORD") {
            self.sip_password = v;
        }
        if let Some(v) = get("MADOGUCHI_WEBHOOK_TOKEN") {
            self.webhook_token = opt(v);
        }
        if let Some(v) = get("MADOGUCHI_LOG_JSON") {
            self.log_json = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = get("MADOGUCHI_SPOOL_DIR") {
            self.spool_dir = opt(v);
        }
        if let Some(v) = get("MADOGUCHI_SESSION_HOURS") {
            self.session_hours = v
                .parse()
                .context("MADOGUCHI_SESSION_HOURS must be a whole number")?;
        }
        if let Some(v) = get("MADOGUCHI_ACW_SECONDS") {
            self.acw_seconds = v
                .parse()
                .context("MADOGUCHI_ACW_SECONDS must be a whole number of seconds")?;
        }
        if let Some(v) = get("MADOGUCHI_SERVICE_LEVEL_S") {
            self.service_level_s = v
                .parse()
                .context("MADOGUCHI_SERVICE_LEVEL_S must be a whole number of seconds")?;
        }
        if let Some(v) = get("MADOGUCHI_SHORT_ABANDON_S") {
            self.short_abandon_s = v
                .parse()
                .context("MADOGUCHI_SHORT_ABANDON_S must be a whole number of seconds")?;
        }
        if let Some(v) = get("MADOGUCHI_RECEPTION_MAX_WAIT_MIN") {
            self.reception_max_wait_min = v
                .parse()
                .context("MADOGUCHI_RECEPTION_MAX_WAIT_MIN must be a whole number of minutes")?;
        }
        if let Some(v) = get("MADOGUCHI_PUBLIC_URL") {
            self.public_url = opt(v);
        }
        if let Some(v) = get("MADOGUCHI_ALLOWED_ORIGINS") {
            self.allowed_origins = split_commas(&v);
        }
        if let Some(v) = get("MADOGUCHI_HEADER_TIMEOUT_S") {
            self.header_timeout_s = v
                .parse()
                .context("MADOGUCHI_HEADER_TIMEOUT_S must be a whole number of seconds")?;
        }
        if let Some(v) = get("MADOGUCHI_MAX_CONNECTIONS") {
            self.max_connections = match v.as_str() {
                "" => None,
                v => Some(
                    v.parse()
                        .context("MADOGUCHI_MAX_CONNECTIONS must be a whole number")?,
                ),
            };
        }
        self.check()
    }

    /// Refuses settings the server could not honour, naming the setting.
    fn check(&self) -> anyhow::Result<()> {
        for origin in self.allowed_origins.iter().chain(&self.public_url) {
            origin_of(origin).with_context(|| {
                format!("MADOGUCHI_ALLOWED_ORIGINS / MADOGUCHI_PUBLIC_URL: {origin:?} is not an http(s) URL")
            })?;
        }
        anyhow::ensure!(
            self.header_timeout_s > 0,
            "MADOGUCHI_HEADER_TIMEOUT_S must be at least 1"
        );
        anyhow::ensure!(
            self.max_connections != Some(0),
            "MADOGUCHI_MAX_CONNECTIONS must be at least 1"
        );
        Ok(())
    }

    /// Whether cookies must carry `Secure` (the public address is https).
    pub fn secure_cookies(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"))
    }

    /// The origins (`scheme://host[:port]`, lower case) allowed besides the server's own.
    pub fn trusted_origins(&self) -> Vec<String> {
        self.allowed_origins
            .iter()
            .chain(&self.public_url)
            .filter_map(|o| origin_of(o))
            .collect()
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_s.max(1))
    }

    /// The cap on open connections: the setting, or what the open-file limit leaves after a
    /// reserve of 128 descriptors for the database, the PBX links and the log.
    pub fn connection_cap(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            open_file_limit()
                .map(|n| n.saturating_sub(128).max(16))
                .unwrap_or(896)
        })
    }

    /// The folder for the call-log spool file (see `spool_dir`).
    pub fn spool_path(&self) -> std::path::PathBuf {
        if let Some(dir) = &self.spool_dir {
            return dir.into();
        }
        let file = self
            .database_url
            .strip_prefix("sqlite://")
            .or_else(|| self.database_url.strip_prefix("sqlite:"))
            .map(|p| p.split('?').next().unwrap_or(p));
        match file.map(Path::new).and_then(Path::parent) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => ".".into(),
        }
    }

    /// How long after-call work lasts.
    pub fn acw(&self) -> Duration {
        Duration::from_secs(self.acw_seconds)
    }

    pub fn ami_ping(&self) -> Duration {
        Duration::from_secs(self.ami_ping_secs.max(1))
    }
}

/// `scheme://host[:port]` of an http(s) URL, lower case, without a path: the form browsers
/// send in `Origin`.
pub fn origin_of(url: &str) -> Option<String> {
    let url = url.trim().to_ascii_lowercase();
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    if host.is_empty() || host.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{host}"))
}

fn split_commas(v: &str) -> Vec<String> {
    v.split(',')
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty())
        .collect()
}

/// A list setting given as a TOML list or as one comma-separated string.
fn comma_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => split_commas(&s),
        OneOrMany::Many(v) => v.iter().flat_map(|s| split_commas(s)).collect(),
    })
}

/// The soft limit on open files of this process (Linux: from `/proc/self/limits`).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_wins_and_secrets_are_masked() {
        let mut s: Settings =
            toml::from_str("listen = \"0.0.0.0:9000\"\nami_secret = \"hunter2\"").unwrap();
        assert_eq!(s.listen, "0.0.0.0:9000");
        s.apply_env(|k| match k {
            "MADOGUCHI_LISTEN" => Some("127.0.0.1:1".into()),
            "MADOGUCHI_DATABASE_URL" => Some("postgres://u:pw@h/db".into()),
            "MADOGUCHI_SIP_USERNAME" => Some("cti".into()),
            "MADOGUCHI_SIP_PASSWORD" => Some("sippw9".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.listen, "127.0.0.1:1");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("pw@"), "{dbg}");
        assert_eq!(s.sip_username, "cti");
        assert!(!dbg.contains("sippw9"), "{dbg}");
    }

    #[test]
    fn origins_and_cookies() {
        let mut s = Settings::default();
        s.apply_env(|k| match k {
            "MADOGUCHI_ALLOWED_ORIGINS" => {
                Some(" https://Proxy.example/ , http://10.0.0.5:8080".into())
            }
            "MADOGUCHI_PUBLIC_URL" => Some("https://madoguchi.city.example/app/".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            s.trusted_origins(),
            [
                "https://proxy.example",
                "http://10.0.0.5:8080",
                "https://madoguchi.city.example"
            ]
        );
        assert!(s.secure_cookies());
        assert!(!Settings::default().secure_cookies());
        let bad = Settings::default()
            .apply_env(|k| (k == "MADOGUCHI_ALLOWED_ORIGINS").then(|| "proxy.example".to_string()));
        assert!(bad.is_err());
        assert!(Settings::default().connection_cap() >= 16);
        let file: Settings =
            toml::from_str("allowed_origins = \"https://a.example, https://b.example\"").unwrap();
        assert_eq!(
            file.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        let file: Settings = toml::from_str("allowed_origins = [\"https://a.example\"]").unwrap();
        assert_eq!(file.allowed_origins, ["https://a.example"]);
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Settings>("lisen = \"x\"").is_err());
    }
}
