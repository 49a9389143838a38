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
    pub ari_url: Option<String>,
    pub ari_username: String,
    pub ari_password: String,
    pub ari_app: String,
    pub sip_pbx: Option<String>,
    pub sip_listen: Option<String>,
    pub webhook_token: Option<String>,
    /// JSON log lines (for a log collector) instead of human-readable ones.
    pub log_json: bool,
    /// How long a login lasts, in hours (one shift and some).
    pub session_hours: i64,
    /// Seconds between AMI keepalive pings.
    pub ami_ping_secs: u64,
    /// Where call-log rows the database could not take by shutdown are kept until the next
    /// start (default: the SQLite file's folder, or the working directory for PostgreSQL).
    pub spool_dir: Option<String>,
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
            ari_url: None,
            ari_username: String::new(),
            ari_password: String::new(),
            ari_app: "madoguchi".into(),
            sip_pbx: None,
            sip_listen: None,
            webhook_token: None,
            log_json: false,
            session_hours: 12,
            ami_ping_secs: 20,
            spool_dir: None,
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
            .field("webhook_token", &self.webhook_token.as_deref().map(mask))
            .field("session_hours", &self.session_hours)
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
        Ok(())
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

    pub fn ami_ping(&self) -> Duration {
        Duration::from_secs(self.ami_ping_secs.max(1))
    }
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
            _ => None,
        })
        .unwrap();
        assert_eq!(s.listen, "127.0.0.1:1");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("pw@"), "{dbg}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Settings>("lisen = \"x\"").is_err());
    }
}
