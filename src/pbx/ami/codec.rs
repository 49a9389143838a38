//! The AMI wire format, both ways: an incremental decoder for what Asterisk sends and an encoder
//! for the actions madoguchi (or the simulator's client) sends.
//!
//! AMI is line based: `Key: Value` lines, a packet ends at an empty line. Three things make a
//! naive "split at `\r\n\r\n`" parser wrong, and all three occur in the captures under
//! `fixtures/ami/`:
//!
//! - the session starts with a banner line (`Asterisk Call Manager/7.0.3`) that has no blank line
//!   after it;
//! - Asterisk ≤ 13 answers `Action: Command` with `Response: Follows` and then raw CLI text, which
//!   may hold empty lines and colons, up to `--END COMMAND--`;
//! - TCP reads split packets anywhere, some proxies and loggers send bare LF, and hand-edited
//!   captures lose the blank line between two packets.
//!
//! The decoder never trusts the peer with memory: a line over [`MAX_LINE`] or a packet over
//! [`MAX_PACKET`] is reported as an error and skipped, and so is a line that is not `Key: Value`;
//! in each case only that packet is lost and decoding resumes after the next empty line.

/// Longest line accepted. Real AMI lines are short (the longest in the captures is a few hundred
/// bytes); this only bounds what a broken or hostile peer can make us buffer.
pub const MAX_LINE: usize = 64 * 1024;
/// Largest packet (or `Follows` body) accepted, for the same reason.
pub const MAX_PACKET: usize = 1024 * 1024;

const BANNER_PREFIX: &[u8] = b"Asterisk Call Manager/";
const END_COMMAND: &str = "--END COMMAND--";

/// One AMI packet: an event, a response or an action. Fields keep their order and repeats
/// (`ChanVariable`, `Variable`, `Output` repeat and their order matters), so this is a list, not
/// a map. Keys are compared without regard to case, as Asterisk does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Packet {
    pub fields: Vec<(String, String)>,
}

impl Packet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a packet from literal pairs (tests, the simulator).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self {
            fields: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.fields.push((key.into(), value.into()));
    }

    /// The first value of `key`, case-insensitively.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `key` unless it is empty: Asterisk writes absent values as `Key: `.
    pub fn get_nonempty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.trim().is_empty())
    }

    /// Every value of `key`, in wire order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, key: &str) -> bool {
        self.fields.iter().any(|(k, _)| k.eq_ignore_ascii_case(key))
    }

    /// `Event:` name, for asynchronous events and list items.
    pub fn event(&self) -> Option<&str> {
        self.get("Event")
    }

    /// Whether this is the event `name` (case-insensitively).
    pub fn is_event(&self, name: &str) -> bool {
        self.event().is_some_and(|e| e.eq_ignore_ascii_case(name))
    }

    /// `Response:` value (`Success`, `Error`, `Goodbye`, `Follows`) of a reply to an action.
    /// Note that the `OriginateResponse` event also carries one.
    pub fn response(&self) -> Option<&str> {
        self.get("Response")
    }

    /// `Action:` name, for packets a client sends.
    pub fn action(&self) -> Option<&str> {
        self.get("Action")
    }

    pub fn action_id(&self) -> Option<&str> {
        self.get("ActionID")
    }

    /// The packet back on the wire (CRLF, blank line), e.g. for a replaying fake PBX.
    pub fn encode(&self) -> Vec<u8> {
        let pairs: Vec<(&str, &str)> = self
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        encode_action(&pairs)
    }
}

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The first line of a session, e.g. `Asterisk Call Manager/7.0.3` (the whole line).
    Banner(String),
    Packet(Packet),
    /// A legacy (Asterisk ≤ 13) `Response: Follows` reply: its header fields, and the raw CLI
    /// text up to `--END COMMAND--`, lines joined by `\n`.
    CommandOutput {
        packet: Packet,
        body: String,
    },
}

impl Frame {
    /// The banner's version (`7.0.3`), if this is a banner.
    pub fn banner_version(&self) -> Option<&str> {
        match self {
            Frame::Banner(line) => line.split_once('/').map(|(_, v)| v.trim()),
            _ => None,
        }
    }
}

/// Why one packet was dropped. The decoder carries on with the next packet after each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("AMI line is not `Key: Value`: {line:?}")]
    MalformedLine { line: String },
    #[error("AMI line longer than {limit} bytes; packet skipped")]
    LineTooLong { limit: usize },
    #[error("AMI packet larger than {limit} bytes; packet skipped")]
    PacketTooLarge { limit: usize },
}

/// Incremental AMI decoder: feed it whatever the socket gave with [`Decoder::push`], then call
/// [`Decoder::next_frame`] until it returns `None`. Splitting the input differently never
/// changes the frames produced.
#[derive(Debug, Default)]
pub struct Decoder {
    input: Input,
    parser: Parser,
}

/// Bytes received but not yet consumed as whole lines.
#[derive(Debug, Default)]
struct Input {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    /// How many unconsumed bytes are already known to hold no `\n` (so a long line arriving in
    /// many small reads is scanned once, not once per read).
    scanned: usize,
    /// Dropping the rest of an over-long line, up to its `\n`.
    discarding_line: bool,
}

#[derive(Debug, Default)]
struct Parser {
    state: State,
    packet: Packet,
    /// Bytes in the packet so far, for the [`MAX_PACKET`] limit.
    size: usize,
    body: String,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between packets: blank lines are skipped, a banner may come.
    #[default]
    Idle,
    /// Inside a `Key: Value` packet.
    Fields,
    /// After `Response: Follows`: its `Privilege`/`ActionID` header lines.
    FollowsHeaders,
    /// A blank line right after the `Follows` headers: either the CLI text starts with an empty
    /// line, or (as in the goami2 capture) the reply was cut short.
    FollowsGap,
    /// Raw CLI text until `--END COMMAND--`.
    FollowsBody,
    /// After an error: drop lines up to the next blank line.
    Skipping,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        self.input.buf.extend_from_slice(bytes);
    }

    /// Bytes held back waiting for the end of a line.
    pub fn buffered(&self) -> usize {
        self.input.buf.len() - self.input.pos
    }

    /// The next complete frame, an error for a skipped packet, or `None` when more input is
    /// needed.
    pub fn next_frame(&mut self) -> Option<Result<Frame, CodecError>> {
        loop {
            let Input {
                buf,
                pos,
                scanned,
                discarding_line,
            } = &mut self.input;
            let unconsumed = &buf[*pos..];
            let newline = unconsumed[*scanned..].iter().position(|&b| b == b'\n');
            match newline {
                Some(i) => {
                    let start = *pos;
                    let end = start + *scanned + i;
                    *pos = end + 1;
                    *scanned = 0;
                    if *discarding_line {
                        // The error was reported when the line grew too long.
                        *discarding_line = false;
                        continue;
                    }
                    let mut line = &buf[start..end];
                    if let [head @ .., b'\r'] = line {
                        line = head;
                    }
                    if line.len() > MAX_LINE {
                        self.parser.fail();
                        return Some(Err(CodecError::LineTooLong { limit: MAX_LINE }));
                    }
                    if let Some(out) = self.parser.line(line) {
                        return Some(out);
                    }
                }
                None => {
                    *scanned = unconsumed.len();
                    if *scanned > MAX_LINE {
                        // Keep nothing of it: the line is lost anyway.
                        *pos = buf.len();
                        *scanned = 0;
                        self.compact();
                        if !self.input.discarding_line {
                            self.input.discarding_line = true;
                            self.parser.fail();
                            return Some(Err(CodecError::LineTooLong { limit: MAX_LINE }));
                        }
                        return None;
                    }
                    self.compact();
                    return None;
                }
            }
        }
    }

    fn compact(&mut self) {
        let input = &mut self.input;
        if input.pos > 0 {
            input.buf.drain(..input.pos);
            input.pos = 0;
        }
        // A burst once made the buffer large; do not keep that memory for the session's life.
        if input.buf.capacity() > 4 * MAX_LINE && input.buf.len() < MAX_LINE {
            input.buf.shrink_to(MAX_LINE);
        }
    }
}

impl Parser {
    /// Drops the packet in progress and skips to the next blank line.
    fn fail(&mut self) {
        self.packet = Packet::new();
        self.body.clear();
        self.size = 0;
        self.state = State::Skipping;
    }

    fn take_packet(&mut self) -> Packet {
        self.size = 0;
        std::mem::take(&mut self.packet)
    }

    /// Handles one complete line (without its line ending).
    fn line(&mut self, raw: &[u8]) -> Option<Result<Frame, CodecError>> {
        match self.state {
            State::Skipping => {
                if raw.is_empty() {
                    self.state = State::Idle;
                }
                None
            }
            State::Idle => {
                if raw.is_empty() {
                    return None;
                }
                if raw.starts_with(BANNER_PREFIX) {
                    return Some(Ok(Frame::Banner(lossy(raw))));
                }
                self.state = State::Fields;
                self.field(raw)
            }
            State::Fields => {
                if raw.is_empty() {
                    self.state = State::Idle;
                    return Some(Ok(Frame::Packet(self.take_packet())));
                }
                self.field(raw)
            }
            State::FollowsHeaders => {
                if raw.is_empty() {
                    self.state = State::FollowsGap;
                    return None;
                }
                let line = lossy(raw);
                if let Some((key, value)) = split_field(&line) {
                    if key.eq_ignore_ascii_case("Privilege") || key.eq_ignore_ascii_case("ActionID")
                    {
                        self.size += line.len();
                        self.packet.push(key, value);
                        return None;
                    }
                }
                self.state = State::FollowsBody;
                self.body_line(&line)
            }
            State::FollowsGap => {
                let line = lossy(raw);
                if line.trim_end() == END_COMMAND {
                    return self.finish_command();
                }
                if let Some((key, _)) = split_field(&line) {
                    if is_kind(key) {
                        // The reply ended without its text: hand over what we have and read
                        // this line as the start of the next packet.
                        let out = self.finish_command();
                        self.state = State::Fields;
                        // A short line that split cleanly starts an empty packet: no frame.
                        let next = self.field(raw);
                        debug_assert!(next.is_none());
                        return out;
                    }
                }
                self.body.push('\n');
                self.state = State::FollowsBody;
                self.body_line(&line)
            }
            State::FollowsBody => {
                let line = lossy(raw);
                self.body_line(&line)
            }
        }
    }

    /// One `Key: Value` line of a packet.
    fn field(&mut self, raw: &[u8]) -> Option<Result<Frame, CodecError>> {
        let line = lossy(raw);
        let Some((key, value)) = split_field(&line) else {
            self.fail();
            return Some(Err(CodecError::MalformedLine {
                line: truncate(&line, 120),
            }));
        };
        // A packet kind line while the packet already has a kind means the blank line between
        // two packets was lost (captures 17, 18, 20 show it): start a new packet rather than
        // merge two. `Response` inside an event is data (OriginateResponse carries one), except
        // after a list terminator, which never does.
        let split = if key.eq_ignore_ascii_case("Event") {
            self.packet.has("Event") || self.packet.has("Response")
        } else if key.eq_ignore_ascii_case("Response") {
            self.packet.has("Response")
                || self.packet.event().is_some_and(|e| {
                    e.len() > 8 && e[e.len() - 8..].eq_ignore_ascii_case("Complete")
                })
        } else {
            false
        };
        let out = if split {
            Some(Ok(Frame::Packet(self.take_packet())))
        } else {
            None
        };
        self.size += line.len() + 2;
        if self.size > MAX_PACKET {
            self.fail();
            return Some(Err(CodecError::PacketTooLarge { limit: MAX_PACKET }));
        }
        let follows = key.eq_ignore_ascii_case("Response") && value.eq_ignore_ascii_case("Follows");
        self.packet.push(key, value);
        if follows {
            self.state = State::FollowsHeaders;
        }
        out
    }

    fn body_line(&mut self, line: &str) -> Option<Result<Frame, CodecError>> {
        if let Some(before) = line.trim_end().strip_suffix(END_COMMAND) {
            // Output without a final newline runs into the marker on the same line.
            self.body.push_str(before);
            return self.finish_command();
        }
        self.body.push_str(line);
        self.body.push('\n');
        if self.size + self.body.len() > MAX_PACKET {
            self.fail();
            return Some(Err(CodecError::PacketTooLarge { limit: MAX_PACKET }));
        }
        None
    }

    fn finish_command(&mut self) -> Option<Result<Frame, CodecError>> {
        let mut body = std::mem::take(&mut self.body);
        while body.ends_with('\n') {
            body.pop();
        }
        let packet = self.take_packet();
        // The blank line after `--END COMMAND--` is skipped by `Idle`.
        self.state = State::Idle;
        Some(Ok(Frame::CommandOutput { packet, body }))
    }
}

fn is_kind(key: &str) -> bool {
    key.eq_ignore_ascii_case("Event") || key.eq_ignore_ascii_case("Response")
}

/// Splits at the first ':' and strips one optional space: the spec wants exactly one, real
/// peers send none (`Action:Ping`) and Asterisk sends empty values (`AccountCode: `).
fn split_field(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(':')?;
    let key = key.trim();
    if key.is_empty() {
        return None;
    }
    Some((key, value.strip_prefix(' ').unwrap_or(value)))
}

/// Asterisk passes bytes through from SIP headers and the dialplan; a caller name in Shift_JIS
/// must not cost us the event, so invalid UTF-8 becomes U+FFFD.
fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Encodes an action (or any packet) as Asterisk expects it: `Key: Value` CRLF lines and a
/// blank line. CR and LF inside keys or values become spaces, so a value taken from outside
/// (a caller name, a queue name typed by an administrator) can never inject extra fields or end
/// the packet early.
pub fn encode_action(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = String::with_capacity(fields.iter().map(|(k, v)| k.len() + v.len() + 4).sum());
    for (key, value) in fields {
        push_clean(&mut out, key);
        out.push_str(": ");
        push_clean(&mut out, value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn push_clean(out: &mut String, s: &str) {
    if s.contains(['\r', '\n']) {
        for c in s.chars() {
            out.push(if c == '\r' || c == '\n' { ' ' } else { c });
        }
    } else {
        out.push_str(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIRE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ami/wire");

    fn fixture_files() -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(WIRE)
            .unwrap_or_else(|e| panic!("reading {WIRE}: {e}"))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "ami"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    fn decode_all(chunks: impl IntoIterator<Item = Vec<u8>>) -> Vec<Result<Frame, CodecError>> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for chunk in chunks {
            d.push(&chunk);
            while let Some(f) = d.next_frame() {
                out.push(f);
            }
        }
        out
    }

    /// Small deterministic PRNG, so a failing chunking can be replayed.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn random_chunks(bytes: &[u8], seed: u64) -> Vec<Vec<u8>> {
        let mut rng = XorShift(seed);
        let mut chunks = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let n = 1 + (rng.next() % 7) as usize;
            let end = (i + n).min(bytes.len());
            chunks.push(bytes[i..end].to_vec());
            i = end;
        }
        chunks
    }

    /// (banners, packets, command outputs) per wire file.
    ///
    /// Counted independently of this decoder: `awk 'BEGIN{RS=""} END{print NR}'` on the file
    /// with CR removed counts blank-line-separated blocks; a banner shares the first block (no
    /// blank line after it), and a legacy `Follows` reply is one block. Three files have packets
    /// whose separating blank line was lost (hand-edited upstream); a Python scan for an
    /// `Event:`/`Response:` line not preceded by a blank line found 17: 3 (two `Event:` after
    /// an event, one `Response:` after `QueueStatusComplete`), 18: 2, 20: 2, and 21: 1 that is
    /// not a split (`Response: Failure` inside `OriginateResponse`). Packets = blocks + splits.
    const EXPECTED: &[(&str, usize, usize, usize)] = &[
        ("01_", 0, 221, 0),
        ("02_", 0, 68, 0),
        ("03_", 0, 35, 0),
        ("04_", 0, 29, 0),
        ("05_", 0, 29, 0),
        ("06_", 0, 90, 0),
        ("07_", 0, 95, 0),
        ("08_", 0, 142, 0),
        ("09_", 0, 749, 0),
        ("10_", 1, 1, 0),
        ("11_", 1, 2, 0),
        ("12_", 0, 1, 0),
        ("13_", 0, 1, 0),
        ("14_", 0, 9, 0),
        ("15_", 0, 0, 1),
        ("16_", 1, 1, 0),
        ("17_", 0, 30 + 3, 0),
        ("18_", 0, 49 + 2, 0),
        ("19_", 0, 9, 0),
        ("20_", 0, 22 + 2, 0),
        ("21_", 0, 2, 0),
    ];

    fn counts(frames: &[Result<Frame, CodecError>]) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for f in frames {
            match f {
                Ok(Frame::Banner(_)) => c.0 += 1,
                Ok(Frame::Packet(_)) => c.1 += 1,
                Ok(Frame::CommandOutput { .. }) => c.2 += 1,
                Err(e) => panic!("decode error {e}"),
            }
        }
        c
    }

    #[test]
    fn every_wire_fixture_decodes_whole_and_in_random_chunks() {
        let files = fixture_files();
        assert_eq!(files.len(), EXPECTED.len(), "fixture set changed");
        for (name, bytes) in &files {
            let whole = decode_all([bytes.clone()]);
            let (_, b, p, c) = EXPECTED
                .iter()
                .find(|(prefix, ..)| name.starts_with(prefix))
                .unwrap_or_else(|| panic!("no expected counts for {name}"));
            assert_eq!(counts(&whole), (*b, *p, *c), "{name}");
            for seed in [1u64, 7, 42, 0x9e3779b97f4a7c15] {
                let chunked = decode_all(random_chunks(bytes, seed));
                assert_eq!(chunked, whole, "{name} chunked with seed {seed}");
            }
            // One byte at a time is the harshest split.
            let bytewise = decode_all(bytes.iter().map(|b| vec![*b]));
            assert_eq!(bytewise, whole, "{name} byte by byte");
        }
    }

    #[test]
    fn lf_only_input_gives_the_same_frames() {
        for (name, bytes) in fixture_files() {
            let lf: Vec<u8> = bytes.iter().copied().filter(|&b| b != b'\r').collect();
            assert_eq!(decode_all([lf]), decode_all([bytes]), "{name}");
        }
    }

    #[test]
    fn fields_keep_order_and_repeats_and_match_keys_case_insensitively() {
        let bytes = std::fs::read(format!(
            "{WIRE}/18_direct_call_answered_with_chanvariables__goami2.ami"
        ))
        .unwrap();
        let frames = decode_all([bytes]);
        let Ok(Frame::Packet(p)) = &frames[0] else {
            panic!("{:?}", frames[0])
        };
        assert_eq!(p.event(), Some("DeviceStateChange"));
        let with_vars = frames
            .iter()
            .filter_map(|f| match f {
                Ok(Frame::Packet(p)) => Some(p),
                _ => None,
            })
            .find(|p| p.get_all("ChanVariable").count() == 3)
            .expect("an event with three ChanVariable lines");
        let vars: Vec<_> = with_vars.get_all("chanvariable").collect();
        assert_eq!(vars.len(), 3);
        assert!(vars[0].contains('='));
        assert_eq!(with_vars.get("UNIQUEID"), with_vars.get("Uniqueid"));
    }

    #[test]
    fn banner_and_login_failure() {
        let bytes = std::fs::read(format!("{WIRE}/10_login_failed__panoramisk.ami")).unwrap();
        let frames = decode_all([bytes]);
        assert_eq!(
            frames[0],
            Ok(Frame::Banner("Asterisk Call Manager/1.3".into()))
        );
        assert_eq!(frames[0].as_ref().unwrap().banner_version(), Some("1.3"));
        let Ok(Frame::Packet(p)) = &frames[1] else {
            panic!()
        };
        assert_eq!(p.response(), Some("Error"));
        assert_eq!(p.get("message"), Some("Authentication failed"));
        assert_eq!(p.action_id(), Some("action/transaction_uid/1/1"));
    }

    #[test]
    fn legacy_follows_body_is_read_to_end_command() {
        let bytes = std::fs::read(format!(
            "{WIRE}/15_command_legacy_response_follows__panoramisk.ami"
        ))
        .unwrap();
        let frames = decode_all([bytes]);
        assert_eq!(frames.len(), 1);
        let Ok(Frame::CommandOutput { packet, body }) = &frames[0] else {
            panic!("{frames:?}")
        };
        assert_eq!(packet.response(), Some("Follows"));
        assert_eq!(packet.get("Privilege"), Some("Command"));
        assert_eq!(packet.action_id(), Some("action/transaction_uid/1/1"));
        assert!(body.starts_with("Asterisk 11.11.0+xivo"), "{body}");
        assert!(body.ends_with("2014-08-06 19:30:37 UTC"), "{body}");
    }

    #[test]
    fn follows_body_with_blank_lines_colons_and_a_following_event() {
        let input = "Response: Follows\r\nPrivilege: Command\r\nActionID: 7\r\n\
                     HTTP Server Status:\r\nPrefix: \r\n\r\nServer Enabled and Bound to 0.0.0.0:8088\r\n\r\n\
                     Enabled URI's:\r\n--END COMMAND--\r\n\r\nEvent: Ping\r\n\r\n";
        let whole = decode_all([input.as_bytes().to_vec()]);
        assert_eq!(whole.len(), 2, "{whole:?}");
        let Ok(Frame::CommandOutput { packet, body }) = &whole[0] else {
            panic!()
        };
        assert_eq!(packet.action_id(), Some("7"));
        assert_eq!(
            body,
            "HTTP Server Status:\nPrefix: \n\nServer Enabled and Bound to 0.0.0.0:8088\n\nEnabled URI's:"
        );
        let Ok(Frame::Packet(p)) = &whole[1] else {
            panic!()
        };
        assert!(p.is_event("ping"));
        for seed in 1..20 {
            assert_eq!(decode_all(random_chunks(input.as_bytes(), seed)), whole);
        }
    }

    #[test]
    fn follows_reply_cut_short_like_the_goami2_capture() {
        // The original capture 17: the Follows header, a blank line, then the next reply.
        let input = "Response: Follows\r\nPrivilege: Command\r\nActionID: bef2\r\n\r\n\
                     Response: Success\r\nActionID: 175a\r\nEventList: start\r\n\r\n";
        let frames = decode_all([input.as_bytes().to_vec()]);
        assert_eq!(frames.len(), 2, "{frames:?}");
        let Ok(Frame::CommandOutput { packet, body }) = &frames[0] else {
            panic!()
        };
        assert_eq!(packet.action_id(), Some("bef2"));
        assert_eq!(body, "");
        let Ok(Frame::Packet(p)) = &frames[1] else {
            panic!()
        };
        assert_eq!(p.action_id(), Some("175a"));
        // An output that starts with an empty line keeps it.
        let input =
            "Response: Follows\r\nPrivilege: Command\r\n\r\nline\r\n--END COMMAND--\r\n\r\n";
        let frames = decode_all([input.as_bytes().to_vec()]);
        assert_eq!(
            frames,
            vec![Ok(Frame::CommandOutput {
                packet: Packet::from_pairs(&[("Response", "Follows"), ("Privilege", "Command")]),
                body: "\nline".into()
            })]
        );
    }

    #[test]
    fn lenient_separators_and_empty_values() {
        let frames = decode_all([
            b"Action:Ping\nActionID:  two spaces\r\nAccountCode: \r\nX-Y:\r\n\r\n".to_vec(),
        ]);
        let Ok(Frame::Packet(p)) = &frames[0] else {
            panic!()
        };
        assert_eq!(p.action(), Some("Ping"));
        assert_eq!(p.action_id(), Some(" two spaces"));
        assert_eq!(p.get("AccountCode"), Some(""));
        assert_eq!(p.get_nonempty("AccountCode"), None);
        assert_eq!(p.get("x-y"), Some(""));
        assert!(p.get("Missing").is_none());
    }

    #[test]
    fn garbage_costs_one_packet_only() {
        let input = b"Event: A\r\nthis is garbage\r\nKey: lost\r\n\r\nEvent: B\r\nK: v\r\n\r\n\
                      no colon at all\r\n\r\nEvent: C\r\n\r\n";
        for chunks in [vec![input.to_vec()], random_chunks(input, 3)] {
            let frames = decode_all(chunks);
            assert_eq!(frames.len(), 4, "{frames:?}");
            assert!(
                matches!(&frames[0], Err(CodecError::MalformedLine { line }) if line == "this is garbage")
            );
            assert!(
                matches!(&frames[1], Ok(Frame::Packet(p)) if p.is_event("B") && p.get("k") == Some("v"))
            );
            assert!(matches!(&frames[2], Err(CodecError::MalformedLine { .. })));
            assert!(matches!(&frames[3], Ok(Frame::Packet(p)) if p.is_event("C")));
        }
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily() {
        let mut input = b"Event: Newchannel\r\nCallerIDName: ".to_vec();
        input.extend_from_slice(&[0x93, 0xfa, 0x96, 0x7b]); // 日本 in Shift_JIS
        input.extend_from_slice(b"\r\nCallerIDNum: 0773\r\n\r\n");
        let frames = decode_all([input]);
        let Ok(Frame::Packet(p)) = &frames[0] else {
            panic!()
        };
        assert!(p.get("CallerIDName").unwrap().contains('\u{fffd}'));
        assert_eq!(p.get("CallerIDNum"), Some("0773"));
    }

    #[test]
    fn overlong_line_is_skipped_without_buffering_it() {
        let mut d = Decoder::new();
        d.push(b"Event: Big\r\nData: ");
        let chunk = vec![b'x'; 8 * 1024];
        let mut errors = 0;
        for _ in 0..64 {
            d.push(&chunk);
            while let Some(f) = d.next_frame() {
                assert_eq!(f, Err(CodecError::LineTooLong { limit: MAX_LINE }));
                errors += 1;
            }
            assert!(
                d.buffered() <= MAX_LINE + chunk.len(),
                "buffered {}",
                d.buffered()
            );
        }
        d.push(b"xxx\r\nMore: of the bad packet\r\n\r\nEvent: Small\r\n\r\n");
        let mut rest = Vec::new();
        while let Some(f) = d.next_frame() {
            rest.push(f);
        }
        assert_eq!(errors, 1);
        assert_eq!(rest.len(), 1, "{rest:?}");
        assert!(matches!(&rest[0], Ok(Frame::Packet(p)) if p.is_event("Small")));

        // A long line that arrives whole is refused too.
        let mut input = b"Event: X\r\nY: ".to_vec();
        input.extend(std::iter::repeat_n(b'y', MAX_LINE + 1));
        input.extend_from_slice(b"\r\n\r\nEvent: Z\r\n\r\n");
        let frames = decode_all([input]);
        assert_eq!(frames.len(), 2);
        assert!(frames[0].is_err());
        assert!(matches!(&frames[1], Ok(Frame::Packet(p)) if p.is_event("Z")));
    }

    #[test]
    fn oversized_packet_is_skipped() {
        let mut input = b"Event: Huge\r\n".to_vec();
        let line = format!("Variable: {}\r\n", "v".repeat(1000));
        for _ in 0..(MAX_PACKET / line.len() + 10) {
            input.extend_from_slice(line.as_bytes());
        }
        input.extend_from_slice(b"\r\nEvent: After\r\n\r\n");
        let frames = decode_all([input]);
        assert_eq!(frames.len(), 2, "{}", frames.len());
        assert_eq!(
            frames[0],
            Err(CodecError::PacketTooLarge { limit: MAX_PACKET })
        );
        assert!(matches!(&frames[1], Ok(Frame::Packet(p)) if p.is_event("After")));

        // A Follows body that never ends is bounded the same way.
        let mut input = b"Response: Follows\r\nPrivilege: Command\r\n".to_vec();
        for _ in 0..(MAX_PACKET / 90) {
            input.extend_from_slice(format!("{}\r\n", "b".repeat(98)).as_bytes());
        }
        let frames = decode_all([input]);
        assert_eq!(
            frames,
            vec![Err(CodecError::PacketTooLarge { limit: MAX_PACKET })]
        );
    }

    #[test]
    fn lost_blank_lines_split_on_a_second_kind_line_but_originate_response_stays_whole() {
        let bytes = std::fs::read(format!(
            "{WIRE}/21_originate_error_and_originateresponse_failure__github-issues.ami"
        ))
        .unwrap();
        let frames = decode_all([bytes]);
        let Ok(Frame::Packet(p)) = &frames[1] else {
            panic!()
        };
        assert!(p.is_event("OriginateResponse"));
        assert_eq!(p.response(), Some("Failure"));
        assert_eq!(p.get("Reason"), Some("0"));

        let bytes = std::fs::read(format!(
            "{WIRE}/17_queuestatus_eventlist_and_command_ast13__goami2.ami"
        ))
        .unwrap();
        let packets: Vec<Packet> = decode_all([bytes])
            .into_iter()
            .filter_map(|f| match f {
                Ok(Frame::Packet(p)) => Some(p),
                _ => None,
            })
            .collect();
        assert!(packets.iter().all(|p| p.get_all("Event").count() <= 1));
        let members = packets.iter().filter(|p| p.is_event("QueueMember")).count();
        assert_eq!(members, 9);
        let completes: Vec<_> = packets
            .iter()
            .filter(|p| p.is_event("QueueStatusComplete"))
            .collect();
        assert_eq!(completes.len(), 6);
        assert!(completes.iter().all(|p| p.response().is_none()));
    }

    #[test]
    fn encode_action_is_crlf_and_cannot_be_injected() {
        assert_eq!(
            encode_action(&[("Action", "Login"), ("Username", "crm")]),
            b"Action: Login\r\nUsername: crm\r\n\r\n"
        );
        let evil = encode_action(&[
            ("Action", "QueueStatus"),
            ("Queue", "x\r\n\r\nAction: Hangup"),
        ]);
        let frames = decode_all([evil]);
        assert_eq!(frames.len(), 1);
        let Ok(Frame::Packet(p)) = &frames[0] else {
            panic!()
        };
        assert_eq!(p.get("Queue"), Some("x    Action: Hangup"));
        let p = Packet::from_pairs(&[("Event", "X"), ("A", "1")]);
        assert_eq!(decode_all([p.encode()]), vec![Ok(Frame::Packet(p))]);
    }
}
