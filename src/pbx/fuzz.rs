//! Property tests for every adapter's input path: whatever bytes or JSON a PBX (or an
//! attacker pretending to be one) sends, decoding and translation never panic, never hold more
//! than their limits, and find their footing again on the next well-formed input.
//!
//! The inputs are random bytes and *mutations of the real captures* in `testdata/` (flipped
//! bytes, cut packets, duplicated lines, subtrees of an event replaced by random JSON), from a
//! seeded generator so a failure names its seed and replays exactly.

use super::ami::{Decoder, Frame, Packet, Translator as AmiTranslator};
use super::ari::{listing, Translator as AriTranslator};
use super::webhook::WebhookEvent;
use chrono::{TimeZone, Utc};
use serde_json::{json, Map, Value};

/// xorshift64*: small, seeded, good enough to spread inputs.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn files(dir: &str, ext: &str) -> Vec<(String, Vec<u8>)> {
    let dir = format!("{}/testdata/{dir}", env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no .{ext} files in {dir}");
    out
}

/// Bytes an AMI peer could plausibly garble: the separators and the bytes that break lines.
const AMI_NOISE: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"\r",
    b":",
    b": ",
    b"\0",
    b"\xff\xfe",
    b"Event: ",
    b"Response: Follows\r\n",
    b"--END COMMAND--\r\n",
    b"Asterisk Call Manager/",
    "舞鶴".as_bytes(),
    b"\xe8\x88", // half a UTF-8 character
];

/// One mutation of `input`: flips, inserts, cuts, duplicated stretches.
fn mutate(rng: &mut Rng, input: &[u8], noise: &[&[u8]]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        if out.is_empty() {
            let bytes: &[u8] = rng.pick::<&[u8]>(noise);
            out.extend_from_slice(bytes);
            continue;
        }
        let at = rng.below(out.len());
        match rng.below(6) {
            0 => out[at] = rng.next() as u8,
            1 => {
                let bytes = *rng.pick(noise);
                out.splice(at..at, bytes.iter().copied());
            }
            2 => {
                let end = (at + 1 + rng.below(64)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let end = (at + 1 + rng.below(200)).min(out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
            4 => out.truncate(at),
            _ => {
                let n = rng.below(32);
                let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                out.splice(at..at, junk);
            }
        }
    }
    out
}

fn at() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap()
}

/// Feeds `bytes` in chunks of random size through the decoder and every decoded packet
/// through the translator; returns how many packets were decoded.
fn ami_through(rng: &mut Rng, bytes: &[u8], translator: &mut AmiTranslator) -> usize {
    let mut decoder = Decoder::new();
    let mut packets = 0;
    let mut i = 0;
    while i < bytes.len() {
        let end = (i + 1 + rng.below(600)).min(bytes.len());
        decoder.push(&bytes[i..end]);
        i = end;
        while let Some(frame) = decoder.next_frame() {
            match frame {
                Ok(Frame::Packet(p)) | Ok(Frame::CommandOutput { packet: p, .. }) => {
                    packets += 1;
                    let _ = translator.translate(&p, at());
                }
                Ok(Frame::Banner(_)) | Err(_) => {}
            }
        }
        assert!(
            decoder.buffered() <= super::ami::codec::MAX_PACKET + 2 * super::ami::codec::MAX_LINE,
            "the decoder holds {} bytes",
            decoder.buffered()
        );
    }
    packets
}

#[test]
fn ami_random_bytes_and_mutated_captures_never_panic() {
    let captures = files("ami/wire", "ami");
    for seed in 0..300u64 {
        let mut rng = Rng::new(seed);
        let mut translator = AmiTranslator::new("ami");
        let input = if seed % 5 == 0 {
            let n = rng.below(20_000);
            (0..n).map(|_| rng.next() as u8).collect()
        } else {
            let (_, bytes) = rng.pick(&captures);
            mutate(&mut rng, bytes, AMI_NOISE)
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ami_through(&mut rng, &input, &mut translator)
        }));
        assert!(result.is_ok(), "seed {seed} panicked");
    }
}

#[test]
fn after_garbage_the_ami_decoder_finds_the_next_packet() {
    // Whatever came before, a blank line then a whole packet is decoded as that packet.
    let probe = Packet::from_pairs(&[
        ("Event", "Newchannel"),
        ("Channel", "PJSIP/trunk-00000001"),
        ("Uniqueid", "1764374400.1"),
        ("Linkedid", "1764374400.1"),
        ("CallerIDNum", "0773628888"),
    ]);
    let mut found = 0;
    for seed in 0..300u64 {
        let mut rng = Rng::new(seed);
        let n = rng.below(4_000);
        let mut input: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        // a blank line ends whatever the garbage was; a second one ends even a
        // `Response: Follows` block.
        input.extend_from_slice(b"\r\n\r\n--END COMMAND--\r\n\r\n");
        input.extend_from_slice(&probe.encode());
        let mut decoder = Decoder::new();
        decoder.push(&input);
        let mut last = None;
        while let Some(frame) = decoder.next_frame() {
            if let Ok(Frame::Packet(p)) = frame {
                last = Some(p);
            }
        }
        let last = last.unwrap_or_else(|| panic!("seed {seed}: the probe was not decoded"));
        assert_eq!(last.event(), Some("Newchannel"), "seed {seed}");
        assert_eq!(last.get("Uniqueid"), Some("1764374400.1"), "seed {seed}");
        found += 1;
    }
    assert_eq!(found, 300);
}

/// A random JSON value of at most `depth` levels, drawn from the words ARI and the webhook use
/// so that mutations reach deep into the translators rather than stopping at the first key.
fn random_json(rng: &mut Rng, depth: usize) -> Value {
    const KEYS: &[&str] = &[
        "type",
        "event",
        "channel",
        "peer",
        "caller",
        "connected",
        "id",
        "name",
        "state",
        "number",
        "dialstatus",
        "dialstring",
        "cause",
        "cause_txt",
        "dialplan",
        "app_name",
        "exten",
        "callId",
        "from",
        "to",
        "direction",
        "user",
        "queue",
        "answeringNumber",
        "timestamp",
        "args",
        "bridge",
        "channels",
    ];
    const WORDS: &[&str] = &[
        "ChannelCreated",
        "ChannelDestroyed",
        "ChannelStateChange",
        "Dial",
        "StasisStart",
        "StasisEnd",
        "ChannelHangupRequest",
        "newCall",
        "answer",
        "hangup",
        "Ring",
        "Up",
        "Down",
        "ANSWER",
        "NOANSWER",
        "PJSIP/201-0000000b",
        "SIP/trunk",
        "1764374400.10",
        "0773628888",
        "201",
        "",
        "in",
        "out",
        "\u{0}",
        "舞鶴",
    ];
    match if depth == 0 {
        rng.below(5)
    } else {
        rng.below(8)
    } {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(2)),
        2 => json!(rng.next() as i64 % 100_000),
        3 => json!((rng.next() % 1000) as f64 / 7.0),
        4 => Value::String(rng.pick(WORDS).to_string()),
        5 => {
            let n = rng.below(4);
            Value::Array((0..n).map(|_| random_json(rng, depth - 1)).collect())
        }
        _ => {
            let mut obj = Map::new();
            for _ in 0..rng.below(6) {
                obj.insert(rng.pick(KEYS).to_string(), random_json(rng, depth - 1));
            }
            Value::Object(obj)
        }
    }
}

/// `value` with one random subtree replaced by random JSON.
fn mutate_json(rng: &mut Rng, value: &mut Value) {
    match value {
        Value::Object(obj) if !obj.is_empty() && !rng.chance(4) => {
            let keys: Vec<String> = obj.keys().cloned().collect();
            let key = rng.pick(&keys).clone();
            if rng.chance(5) {
                obj.remove(&key);
            } else {
                mutate_json(rng, obj.get_mut(&key).unwrap());
            }
        }
        Value::Array(items) if !items.is_empty() && !rng.chance(4) => {
            let i = rng.below(items.len());
            mutate_json(rng, &mut items[i]);
        }
        _ => *value = random_json(rng, 3),
    }
}

fn ari_events() -> Vec<Value> {
    let mut events = Vec::new();
    for (name, bytes) in files("ari", "json") {
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        match v {
            Value::Array(items) => events.extend(items),
            other => events.push(other),
        }
    }
    events
}

#[test]
fn ari_random_and_mutated_events_never_panic() {
    let real = ari_events();
    for seed in 0..2_000u64 {
        let mut rng = Rng::new(seed);
        let mut translator = AriTranslator::new();
        // a little history first, so mutations meet a translator with channels in it
        for ev in real.iter().take(rng.below(real.len() + 1)) {
            let _ = translator.translate(ev, at());
        }
        let mut ev = if seed % 4 == 0 {
            random_json(&mut rng, 4)
        } else {
            rng.pick(&real).clone()
        };
        for _ in 0..1 + rng.below(3) {
            mutate_json(&mut rng, &mut ev);
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = translator.translate(&ev, at());
            let _ = listing(&ev);
            let _ = listing(&Value::Array(vec![ev.clone(), random_json(&mut rng, 3)]));
        }));
        assert!(result.is_ok(), "seed {seed} panicked on {ev}");
    }
}

#[test]
fn webhook_random_json_and_bytes_never_panic_and_refusals_name_a_field() {
    let real = [
        json!({"event": "newCall", "from": "0773625555", "to": "0773689225", "direction": "in",
               "callId": "zc-1", "user": ["201", "202"], "queue": "vaccine"}),
        json!({"event": "answer", "from": "0773625555", "to": "0773689225", "direction": "in",
               "callId": "zc-1", "answeringNumber": "202", "user": "202"}),
        json!({"event": "hangup", "from": "0773625555", "to": "0773689225", "direction": "in",
               "callId": "zc-1", "cause": "normalClearing"}),
    ];
    let mut accepted = 0;
    for seed in 0..3_000u64 {
        let mut rng = Rng::new(seed);
        let mut body = rng.pick(&real).clone();
        for _ in 0..rng.below(3) {
            mutate_json(&mut rng, &mut body);
        }
        let bytes = if seed % 7 == 0 {
            mutate(
                &mut rng,
                body.to_string().as_bytes(),
                &[b"\"", b"{", b"}", b"\0"],
            )
        } else {
            body.to_string().into_bytes()
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let form = WebhookEvent::from_form(&bytes).and_then(|e| e.translate(at()));
            let json = WebhookEvent::from_json(&bytes).and_then(|e| e.translate(at()));
            (form.map(|_| ()), json)
        }));
        let (_, json) = result.unwrap_or_else(|_| panic!("seed {seed} panicked"));
        match json {
            Ok(events) => {
                accepted += 1;
                assert!(
                    !events.is_empty(),
                    "seed {seed}: accepted but means nothing: {body}"
                );
            }
            Err(refused) => assert!(!refused.field.is_empty(), "seed {seed}"),
        }
    }
    // The untouched bodies (about 2 seeds in 7 draw no mutation at all) must be accepted.
    assert!(accepted >= 700, "only {accepted} accepted");
}
