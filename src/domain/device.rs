//! 内線: agents' extensions and the PBX devices that ring them.
//!
//! A user's extension (`201`) is matched against the device of the ringing leg, whatever the
//! PBX calls it: `PJSIP/201`, `PJSIP/201-0000000a`, `SIP/777-000000bc`, `Local/201@from-queue/n`,
//! `Local/201@from-queue-00000015;1`, an AMI `Interface`/`MemberName`, or a bare `201`.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Extension(String);

impl Extension {
    /// An extension as an administrator types it: letters, digits, `-`, `_`, `.`; 1–40 chars.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty()
            || s.len() > 40
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
        {
            return Err(format!(
                "extension must be 1-40 letters or digits, got {s:?}"
            ));
        }
        Ok(Self(s.to_string()))
    }

    /// The extension behind a PBX device or channel name, if it names one.
    pub fn from_device(device: &str) -> Option<Self> {
        let device = device.trim();
        let (tech, rest) = match device.split_once('/') {
            Some((t, r)) => (t, r),
            None => ("", device),
        };
        let rest = rest.split(';').next().unwrap_or(rest);
        let name = if tech.eq_ignore_ascii_case("local") {
            // Local/201@from-queue/n, Local/ID730151@ctx-00000016;1: the extension is before '@'.
            rest.split('@').next().unwrap_or(rest)
        } else {
            // PJSIP/201/sip:201@host (dial string) or PJSIP/201-0000000a (channel name).
            let rest = rest.split('/').next().unwrap_or(rest);
            strip_channel_suffix(rest)
        };
        Self::parse(name).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Channel names end in `-<8 hex digits>` (`SIP/777-000000bc`); devices do not.
fn strip_channel_suffix(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((head, tail))
            if !head.is_empty()
                && tail.len() == 8
                && tail.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            head
        }
        _ => name,
    }
}

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(s: &str) -> Option<String> {
        Extension::from_device(s).map(|e| e.as_str().to_string())
    }

    #[test]
    fn devices_and_channels() {
        assert_eq!(ext("PJSIP/201"), Some("201".into()));
        assert_eq!(ext("PJSIP/201-0000000a"), Some("201".into()));
        assert_eq!(ext("SIP/777-000000bc"), Some("777".into()));
        assert_eq!(ext("SIP/777"), Some("777".into()));
        assert_eq!(ext("Local/201@from-queue/n"), Some("201".into()));
        assert_eq!(
            ext("Local/ID730151@osvpi_route_phoneaccount-00000016;1"),
            Some("ID730151".into())
        );
        assert_eq!(ext("SIP/150010002-00000026"), Some("150010002".into()));
        assert_eq!(ext("201"), Some("201".into()));
        assert_eq!(
            ext("SIP/voipgrid-siproute-docker-00000025"),
            Some("voipgrid-siproute-docker".into())
        );
        assert_eq!(ext(""), None);
    }
}
