//! The `application/dialog-info+xml` body of a dialog-event NOTIFY (RFC 4235 §4), read by a
//! small hand parser: the document is a few elements deep, and a parser of our own can promise
//! what the link needs of it: any bytes in, a value or an error out, never a panic, bounded
//! work. Namespace prefixes are ignored (`<dinfo:dialog>` is `<dialog>`); unknown elements and
//! attributes are skipped.
//!
//! ```xml
//! <dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:2001@pbx">
//!  <dialog id="2001" direction="recipient">
//!   <remote><identity display="ACME Corp">sip:+15551234567@pbx</identity></remote>
//!   <state>early</state>
//!  </dialog>
//! </dialog-info>
//! ```

/// The largest body read; a bigger one is refused as malformed.
pub const MAX_BODY: usize = 64 * 1024;
/// Elements nested deeper than this make the document malformed (dialog-info is 4–5 deep).
const MAX_DEPTH: usize = 16;
/// Dialogs read from one document at most.
const MAX_DIALOGS: usize = 64;

/// One dialog-info document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DialogInfo {
    /// Increments with every NOTIFY of one subscription; an older or equal one is stale.
    pub version: Option<u64>,
    /// `full` (every dialog of the entity is listed) rather than `partial`.
    pub full: bool,
    /// The watched resource (`sip:2001@pbx`).
    pub entity: String,
    pub dialogs: Vec<Dialog>,
}

/// One `<dialog>` element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dialog {
    /// The dialog's id within the document (Asterisk: the extension, the same for every call).
    pub id: String,
    /// The SIP Call-ID, when the notifier tells it (Kamailio does, Asterisk does not).
    pub call_id: Option<String>,
    /// `recipient` (the watched user is being called) or `initiator` (it placed the call).
    pub direction: Option<String>,
    pub state: State,
    /// Why a terminated dialog ended (`cancelled`, `rejected`, `replaced`, `local-bye`,
    /// `remote-bye`, `error`, `timeout`), and the SIP code, when given.
    pub event: Option<String>,
    pub code: Option<u16>,
    /// The other party: its URI (`sip:+15551234567@pbx`) and display name.
    pub remote_identity: Option<String>,
    pub remote_display: Option<String>,
}

/// A dialog's state (RFC 4235 §3.7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum State {
    Trying,
    Proceeding,
    Early,
    Confirmed,
    #[default]
    Terminated,
}

impl State {
    fn parse(s: &str) -> Option<State> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "trying" => State::Trying,
            "proceeding" => State::Proceeding,
            "early" => State::Early,
            "confirmed" => State::Confirmed,
            "terminated" => State::Terminated,
            _ => return None,
        })
    }
}

impl Dialog {
    /// The user part of the remote identity (`+15551234567` of `sip:+15551234567@pbx`), or
    /// the whole identity when it is not a SIP URI (a `tel:` URI gives its number).
    pub fn remote_user(&self) -> Option<String> {
        let id = self.remote_identity.as_deref()?.trim();
        let id = id
            .trim_start_matches('<')
            .trim_end_matches('>')
            .split(';')
            .next()
            .unwrap_or("");
        let rest = ["sip:", "sips:", "tel:"]
            .iter()
            .find_map(|scheme| {
                id.get(..scheme.len())
                    .filter(|p| p.eq_ignore_ascii_case(scheme))
                    .map(|_| &id[scheme.len()..])
            })
            .unwrap_or(id);
        let user = rest.split('@').next().unwrap_or("").trim();
        (!user.is_empty()).then(|| user.to_string())
    }
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dialog-info: {0}")]
pub struct Malformed(pub String);

fn bad(why: impl Into<String>) -> Malformed {
    Malformed(why.into())
}

/// Reads a dialog-info document.
pub fn parse(body: &[u8]) -> Result<DialogInfo, Malformed> {
    if body.len() > MAX_BODY {
        return Err(bad(format!("body of {} bytes is too large", body.len())));
    }
    let text = std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
    let text = text.trim_start_matches('\u{feff}');
    let mut doc: Option<DialogInfo> = None;
    let mut done = false;
    // Open elements (local names); the dialog being read, and where in it we are.
    let mut stack: Vec<String> = Vec::new();
    let mut dialog: Option<Dialog> = None;
    let mut text_buf = String::new();
    let mut rest = text;
    loop {
        let Some(lt) = rest.find('<') else {
            if !rest.trim().is_empty() {
                return Err(bad("text outside the document"));
            }
            break;
        };
        let chunk = &rest[..lt];
        if !chunk.trim().is_empty() && stack.is_empty() {
            return Err(bad("text outside the document"));
        }
        text_buf.push_str(&decode(chunk)?);
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<?") {
            let end = after.find("?>").ok_or_else(|| bad("unterminated <?"))?;
            rest = &after[end + 2..];
            continue;
        }
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after
                .find("-->")
                .ok_or_else(|| bad("unterminated comment"))?;
            rest = &after[end + 3..];
            continue;
        }
        if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let end = after.find("]]>").ok_or_else(|| bad("unterminated CDATA"))?;
            text_buf.push_str(&after[..end]);
            rest = &after[end + 3..];
            continue;
        }
        if rest.starts_with("<!") {
            return Err(bad("DOCTYPE and declarations are not accepted"));
        }
        let gt = rest.find('>').ok_or_else(|| bad("unterminated tag"))?;
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            // A closing tag: it must close the innermost open element.
            let name = local(name.trim());
            let open = stack
                .pop()
                .ok_or_else(|| bad("closing tag with nothing open"))?;
            if open != name {
                return Err(bad(format!("</{name}> closes <{open}>")));
            }
            let content = std::mem::take(&mut text_buf);
            close(&stack, &open, content.trim(), &mut dialog, &mut doc)?;
            if stack.is_empty() {
                done = true;
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, attrs) = split_tag(tag)?;
        text_buf.clear();
        if done {
            return Err(bad("more than one root element"));
        }
        if stack.len() >= MAX_DEPTH {
            return Err(bad("nested too deep"));
        }
        open(&stack, &name, &attrs, &mut dialog, &mut doc)?;
        if self_closing {
            close(&stack, &name, "", &mut dialog, &mut doc)?;
            if stack.is_empty() {
                done = true;
            }
        } else {
            stack.push(name);
        }
    }
    if !stack.is_empty() {
        return Err(bad(format!("<{}> is never closed", stack[stack.len() - 1])));
    }
    doc.ok_or_else(|| bad("no <dialog-info> element"))
}

/// An element opens: `stack` holds its ancestors.
fn open(
    stack: &[String],
    name: &str,
    attrs: &[(String, String)],
    dialog: &mut Option<Dialog>,
    doc: &mut Option<DialogInfo>,
) -> Result<(), Malformed> {
    let attr = |k: &str| {
        attrs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_string())
    };
    let parent = stack.last().map(String::as_str);
    match (parent, name) {
        (None, "dialog-info") => {
            let version = match attr("version") {
                Some(v) => Some(v.parse().map_err(|_| bad(format!("version {v:?}")))?),
                None => None,
            };
            *doc = Some(DialogInfo {
                version,
                full: attr("state").is_none_or(|s| s.eq_ignore_ascii_case("full")),
                entity: attr("entity").unwrap_or_default(),
                dialogs: Vec::new(),
            });
        }
        (None, other) => return Err(bad(format!("root element is <{other}>, not <dialog-info>"))),
        (Some("dialog-info"), "dialog") => {
            *dialog = Some(Dialog {
                id: attr("id").unwrap_or_default(),
                call_id: attr("call-id").filter(|c| !c.is_empty()),
                direction: attr("direction").map(|d| d.to_ascii_lowercase()),
                ..Dialog::default()
            });
        }
        (Some("dialog"), "state") => {
            if let Some(d) = dialog.as_mut() {
                d.event = attr("event").map(|e| e.to_ascii_lowercase());
                d.code = attr("code").and_then(|c| c.parse().ok());
            }
        }
        (Some("remote"), "identity") => {
            if let Some(d) = dialog.as_mut() {
                d.remote_display = attr("display").filter(|v| !v.is_empty());
            }
        }
        _ => {}
    }
    Ok(())
}

/// An element closes with its text `content`: `stack` holds its ancestors.
fn close(
    stack: &[String],
    name: &str,
    content: &str,
    dialog: &mut Option<Dialog>,
    doc: &mut Option<DialogInfo>,
) -> Result<(), Malformed> {
    let parent = stack.last().map(String::as_str);
    match (parent, name) {
        (Some("dialog-info"), "dialog") => {
            let d = dialog
                .take()
                .ok_or_else(|| bad("<dialog> without a start"))?;
            let doc = doc
                .as_mut()
                .ok_or_else(|| bad("<dialog> outside <dialog-info>"))?;
            if doc.dialogs.len() >= MAX_DIALOGS {
                return Err(bad("too many dialogs"));
            }
            doc.dialogs.push(d);
        }
        (Some("dialog"), "state") => {
            let state = State::parse(content)
                .ok_or_else(|| bad(format!("unknown dialog state {content:?}")))?;
            if let Some(d) = dialog.as_mut() {
                d.state = state;
            }
        }
        (Some("remote"), "identity") => {
            if let Some(d) = dialog.as_mut() {
                if !content.is_empty() {
                    d.remote_identity = Some(content.to_string());
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// `name attr="v" attr2='w'` → the local name and the attributes (values decoded).
fn split_tag(tag: &str) -> Result<(String, Vec<(String, String)>), Malformed> {
    let tag = tag.trim();
    let name_end = tag
        .find(|c: char| c.is_ascii_whitespace())
        .unwrap_or(tag.len());
    let name = &tag[..name_end];
    if name.is_empty() || !name.chars().all(is_name_char) {
        return Err(bad(format!("bad element name {name:?}")));
    }
    let mut attrs = Vec::new();
    let mut rest = tag[name_end..].trim_start();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| bad("attribute without a value"))?;
        let key = rest[..eq].trim();
        if key.is_empty() || !key.chars().all(is_name_char) {
            return Err(bad(format!("bad attribute name {key:?}")));
        }
        let after = rest[eq + 1..].trim_start();
        let quote = after
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or_else(|| bad("attribute value without quotes"))?;
        let body = &after[1..];
        let end = body
            .find(quote)
            .ok_or_else(|| bad("unterminated attribute"))?;
        attrs.push((local(key).to_string(), decode(&body[..end])?));
        rest = body[end + 1..].trim_start();
        if attrs.len() > 32 {
            return Err(bad("too many attributes"));
        }
    }
    Ok((local(name).to_string(), attrs))
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

/// `dinfo:dialog` → `dialog`.
fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// Replaces the five XML entities and character references.
fn decode(s: &str) -> Result<String, Malformed> {
    if !s.contains('&') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after
            .find(';')
            .filter(|i| *i <= 10)
            .ok_or_else(|| bad("unterminated entity"))?;
        let name = &after[..semi];
        let c = match name {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            n if n.starts_with("#x") || n.starts_with("#X") => u32::from_str_radix(&n[2..], 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| bad(format!("bad character reference &{n};")))?,
            n if n.starts_with('#') => n[1..]
                .parse::<u32>()
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| bad(format!("bad character reference &{n};")))?,
            n => return Err(bad(format!("unknown entity &{n};"))),
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EARLY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:2001@127.0.0.1">
 <dialog id="2001" direction="recipient">
  <remote>
   <identity display="ACME Corp">sip:+15551234567@127.0.0.1</identity>
   <target uri="sip:+15551234567@127.0.0.1"/>
  </remote>
  <local>
   <identity display="Agent 2001">sip:2001@127.0.0.1</identity>
   <target uri="sip:2001@127.0.0.1"/>
  </local>
  <state>early</state>
 </dialog>
</dialog-info>
"#;

    #[test]
    fn reads_asterisks_early_notify() {
        let d = parse(EARLY.as_bytes()).unwrap();
        assert_eq!(d.version, Some(1));
        assert!(d.full);
        assert_eq!(d.entity, "sip:2001@127.0.0.1");
        assert_eq!(d.dialogs.len(), 1);
        let g = &d.dialogs[0];
        assert_eq!(g.id, "2001");
        assert_eq!(g.state, State::Early);
        assert_eq!(g.direction.as_deref(), Some("recipient"));
        assert_eq!(g.remote_user().as_deref(), Some("+15551234567"));
        assert_eq!(g.remote_display.as_deref(), Some("ACME Corp"));
    }

    #[test]
    fn reads_prefixes_partial_documents_and_end_reasons() {
        let d = parse(
            br#"<d:dialog-info xmlns:d="urn:ietf:params:xml:ns:dialog-info" version="7" state="partial" entity="sip:a@b">
<d:dialog id="x1" call-id="abc@h" direction="initiator"><d:state event="rejected" code="486">terminated</d:state></d:dialog>
<d:dialog id="x2"><d:state>confirmed</d:state><d:remote><d:identity>tel:+81773620000</d:identity></d:remote></d:dialog>
</d:dialog-info>"#,
        )
        .unwrap();
        assert!(!d.full);
        assert_eq!(d.version, Some(7));
        assert_eq!(d.dialogs[0].event.as_deref(), Some("rejected"));
        assert_eq!(d.dialogs[0].code, Some(486));
        assert_eq!(d.dialogs[0].call_id.as_deref(), Some("abc@h"));
        assert_eq!(d.dialogs[1].state, State::Confirmed);
        assert_eq!(d.dialogs[1].remote_user().as_deref(), Some("+81773620000"));
        let empty = parse(br#"<dialog-info version="0" state="full" entity="e"/>"#).unwrap();
        assert!(empty.dialogs.is_empty());
        let escaped = parse(
            br#"<dialog-info version="2"><dialog id="a&amp;b"><remote><identity display="&#x5C71;&#30000;">sip:0773&#x36;2@x</identity></remote><state>early</state></dialog></dialog-info>"#,
        )
        .unwrap();
        assert_eq!(escaped.dialogs[0].id, "a&b");
        assert_eq!(escaped.dialogs[0].remote_display.as_deref(), Some("山田"));
        assert_eq!(escaped.dialogs[0].remote_user().as_deref(), Some("077362"));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for body in [
            &b""[..],
            b"not xml",
            b"<dialog-info version=\"1\">",
            b"<dialog-info><dialog id=\"1\"><state>early</dialog></dialog-info>",
            b"<dialog-info><dialog id=\"1\"><state>ringing</state></dialog></dialog-info>",
            b"<other/>",
            b"<dialog-info version=\"x\"/>",
            b"<dialog-info/><dialog-info/>",
            b"<!DOCTYPE x [<!ENTITY a \"b\">]><dialog-info/>",
            b"<dialog-info a=b/>",
            b"<dialog-info>&bogus;</dialog-info>",
            b"\xff\xfe<",
        ] {
            assert!(parse(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
        let deep = "<a>".repeat(40);
        assert!(parse(format!("<dialog-info>{deep}").as_bytes()).is_err());
    }
}
