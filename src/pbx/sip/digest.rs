//! SIP digest authentication (RFC 3261 §22, RFC 2617): reading a `WWW-Authenticate` /
//! `Proxy-Authenticate` challenge and answering it. MD5 and MD5-sess, with `qop=auth` when the
//! PBX offers it (Asterisk does) and the RFC 2069 form when it offers no qop.

use md5::{Digest, Md5};

/// A challenge from a 401 (`WWW-Authenticate`) or 407 (`Proxy-Authenticate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// The PBX says the nonce merely expired (the credentials were right).
    pub stale: bool,
    pub sess: bool,
    /// `qop=auth` offered.
    pub qop_auth: bool,
}

impl Challenge {
    /// Reads a challenge header's value (`Digest realm="asterisk", nonce="…", qop="auth"`).
    pub fn parse(value: &str) -> Result<Challenge, String> {
        let value = value.trim();
        let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err(format!("not a Digest challenge: {scheme:?}"));
        }
        let params = params(rest)?;
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        let algorithm = get("algorithm").unwrap_or_else(|| "MD5".into());
        let sess = match algorithm.to_ascii_uppercase().as_str() {
            "MD5" => false,
            "MD5-SESS" => true,
            other => {
                return Err(format!(
                    "digest algorithm {other} is not supported (MD5 only)"
                ))
            }
        };
        let qop = get("qop");
        let qop_auth = qop
            .as_deref()
            .is_some_and(|q| q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")));
        if qop.is_some() && !qop_auth {
            return Err(format!("digest qop {qop:?} is not supported (auth only)"));
        }
        Ok(Challenge {
            realm: get("realm").ok_or("the challenge has no realm")?,
            nonce: get("nonce").ok_or("the challenge has no nonce")?,
            opaque: get("opaque"),
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
            sess,
            qop_auth,
        })
    }

    /// The `Authorization` / `Proxy-Authorization` value for `method uri`, the `nc`-th use of
    /// this nonce, with client nonce `cnonce`.
    pub fn answer(
        &self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let mut ha1 = md5_hex(&format!("{username}:{}:{password}", self.realm));
        if self.sess {
            ha1 = md5_hex(&format!("{ha1}:{}:{cnonce}", self.nonce));
        }
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let nc = format!("{nc:08x}");
        let response = if self.qop_auth {
            md5_hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce))
        } else {
            md5_hex(&format!("{ha1}:{}:{ha2}", self.nonce))
        };
        let mut out = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm={}",
            quote(username),
            quote(&self.realm),
            quote(&self.nonce),
            if self.sess { "MD5-sess" } else { "MD5" },
        );
        if let Some(o) = &self.opaque {
            out.push_str(&format!(", opaque=\"{}\"", quote(o)));
        }
        if self.qop_auth {
            out.push_str(&format!(
                ", qop=auth, nc={nc}, cnonce=\"{}\"",
                quote(cnonce)
            ));
        }
        out
    }
}

fn md5_hex(s: &str) -> String {
    let sum = Md5::digest(s.as_bytes());
    sum.iter().map(|b| format!("{b:02x}")).collect()
}

/// Escapes what cannot stand inside a quoted string.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `k=v, k="v, w"` → pairs (quoted values unescaped).
fn params(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or("a challenge parameter has no value")?;
        let key = rest[..eq].trim().to_string();
        let after = rest[eq + 1..].trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            v.push(e);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end.ok_or("unterminated quoted value in the challenge")?;
            (v, &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.push((key, value));
        rest = next.trim_start().trim_start_matches(',').trim_start();
        if out.len() > 32 {
            return Err("too many challenge parameters".into());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example() {
        // RFC 2617 §3.5, with the method and URI of its GET.
        let c = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert!(c.qop_auth && !c.sess && !c.stale);
        let a = c.answer(
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert!(
            a.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{a}"
        );
        assert!(
            a.contains("nc=00000001") && a.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"")
        );
    }

    #[test]
    fn asterisk_challenge_and_refusals() {
        let c = Challenge::parse(
            r#"Digest realm="asterisk",nonce="1732873400/8f1c",opaque="4b2e",algorithm=md5,qop="auth""#,
        )
        .unwrap();
        assert_eq!(c.realm, "asterisk");
        assert_eq!(c.nonce, "1732873400/8f1c");
        // No qop: the RFC 2069 form, MD5(HA1:nonce:HA2).
        let plain = Challenge::parse(r#"Digest realm="r", nonce="n""#).unwrap();
        let a = plain.answer("u", "p", "SUBSCRIBE", "sip:2001@pbx", 1, "c");
        let ha1 = md5_hex("u:r:p");
        let ha2 = md5_hex("SUBSCRIBE:sip:2001@pbx");
        assert!(a.contains(&md5_hex(&format!("{ha1}:n:{ha2}"))) && !a.contains("qop"));
        assert!(Challenge::parse("Basic realm=\"x\"").is_err());
        assert!(Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=SHA-256"#).is_err());
        assert!(Challenge::parse(r#"Digest realm="r", nonce="n", qop="auth-int""#).is_err());
        assert!(Challenge::parse(r#"Digest realm="r""#).is_err());
        assert!(Challenge::parse(r#"Digest realm="r, nonce="n"#).is_err());
    }
}
