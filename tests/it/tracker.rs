//! The tracker on the real captures: AMI bytes → decoder → translator → tracker → call log,
//! on every engine. (Here, outside the crate, because it joins two sibling modules, `pbx` and
//! `calls`, that never import each other.)

use madoguchi::calls::{tracker::EVENT_QUEUE, writer, AgentDirectory, Tracker};
use madoguchi::domain::call::PbxEvent;
use madoguchi::domain::{Extension, Role};
use madoguchi::hub::{agent_topic, Hub};
use madoguchi::metrics::Metrics;
use madoguchi::pbx::ami::codec::{Decoder, Frame};
use madoguchi::pbx::ami::translate::Translator;
use madoguchi::store::calls::CallRow;
use madoguchi::store::testing::TestDb;
use madoguchi::store::Store;
use std::sync::Arc;

fn events_of(fixture: &str) -> Vec<PbxEvent> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ami/wire/");
    let path = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with(fixture))
        .unwrap()
        .path();
    let mut d = Decoder::new();
    d.push(&std::fs::read(path).unwrap());
    let mut t = Translator::new("ami");
    let at = chrono::Utc::now();
    let mut out = Vec::new();
    while let Some(frame) = d.next_frame() {
        if let Frame::Packet(p) = frame.unwrap() {
            out.extend(t.translate(&p, at));
        }
    }
    out
}

/// Runs events through a tracker's own loop, then shuts it down and drains the call log.
async fn run_events(store: &Store, hub: &Hub, directory: AgentDirectory, events: Vec<PbxEvent>) {
    let metrics = Arc::new(Metrics::default());
    let spool = madoguchi::store::testing::TempDir::new("spool").unwrap();
    let (log, task) = writer::spawn(store.clone(), metrics.clone(), spool.0.clone());
    let tracker = Tracker::new(store.clone(), hub.clone(), metrics, log.clone(), directory);
    let (tx, rx) = tokio::sync::mpsc::channel(EVENT_QUEUE);
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(tracker.run(rx, stop_rx));
    for ev in events {
        tx.send(ev).await.unwrap();
        // Let lookups beside the tracker run as they would between real PBX events.
        tokio::task::yield_now().await;
    }
    drop(tx);
    running.await.unwrap();
    log.close();
    task.await.unwrap();
}

/// Runs events through a tracker and returns the call log as written, plus the hub.
async fn track(
    store: &Store,
    events: Vec<PbxEvent>,
    agents: &[&str],
) -> (Vec<CallRow>, Hub, Vec<madoguchi::hub::Subscription>) {
    let hub = Hub::new();
    let subs: Vec<_> = agents
        .iter()
        .map(|a| hub.subscribe(&agent_topic(a), None, None))
        .collect();
    let directory = AgentDirectory::default();
    for (i, a) in agents.iter().enumerate() {
        store
            .upsert_user(
                &format!("agent{i}"),
                "",
                "x",
                Role::Agent,
                Some(&Extension::parse(a).unwrap()),
            )
            .await
            .unwrap();
    }
    directory.refresh(store).await.unwrap();
    run_events(store, &hub, directory, events).await;
    let calls = store.calls_between(None, None, 100).await.unwrap();
    assert!(
        calls
            .iter()
            .all(|c| c.outcome.is_some() && c.ended_at.is_some()),
        "every captured call ended: {calls:?}"
    );
    (calls, hub, subs)
}

fn frames(sub: &mut madoguchi::hub::Subscription) -> Vec<serde_json::Value> {
    let mut v = Vec::new();
    while let Ok(f) = sub.rx.try_recv() {
        v.push(serde_json::from_str(&f.text).unwrap());
    }
    v
}

async fn fixture_01_one_answered_queue_call_from_123_by_sip_777(engine: &str) {
    {
        let db = TestDb::new(engine).await.unwrap();
        let (calls, _hub, mut subs) = track(&db.store, events_of("01_"), &["777", "201"]).await;
        assert_eq!(calls.len(), 1, "{engine}: {calls:?}");
        let c = &calls[0];
        assert_eq!(c.id, "ami:1514295827.372");
        assert_eq!(c.caller_number, "123");
        assert_eq!(c.queue.as_deref(), Some("Q1"));
        assert_eq!(c.answered_by.as_deref(), Some("777"));
        assert_eq!(c.outcome.as_deref(), Some("answered"));
        assert_eq!(c.hold_s, Some(9));
        assert_eq!(c.agents_offered, vec!["777".to_string()]);
        assert!(c.answered_user_id.is_some());
        // The agent leg (Uniqueid 1514295839.373) was linked by its Linkedid: one call, and
        // 777 got exactly one pop then answered_here then ended.
        let f = frames(&mut subs[0]);
        let kinds: Vec<String> = f
            .iter()
            .map(|m| {
                format!(
                    "{}:{}",
                    m["type"].as_str().unwrap(),
                    m["event"].as_str().unwrap_or("")
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                "screen_pop:",
                "call_update:answered_here",
                "call_update:ended"
            ],
            "{engine}"
        );
        assert!(frames(&mut subs[1]).is_empty(), "201 never rang");
        db.cleanup().await;
    }
}

async fn fixture_02_answered_by_the_member_that_answered(engine: &str) {
    {
        let db = TestDb::new(engine).await.unwrap();
        let (calls, _hub, mut subs) =
            track(&db.store, events_of("02_"), &["150010002", "150010003"]).await;
        assert_eq!(calls.len(), 1, "{engine}: {calls:?}");
        let c = &calls[0];
        assert_eq!(c.caller_number, "+31150010001");
        assert_eq!(c.answered_by.as_deref(), Some("150010002"));
        assert_eq!(c.outcome.as_deref(), Some("answered"));
        assert!(c.agents_offered.contains(&"150010002".to_string()));
        assert!(
            c.agents_offered.contains(&"150010003".to_string()),
            "the busy member was offered: {:?}",
            c.agents_offered
        );
        let answered = frames(&mut subs[0]);
        let busy = frames(&mut subs[1]);
        assert_eq!(answered[0]["type"], "screen_pop");
        assert_eq!(busy[0]["type"], "screen_pop");
        assert!(answered.iter().any(|m| m["event"] == "answered_here"));
        assert!(
            busy.iter().any(|m| m["event"] == "answered_elsewhere"),
            "{busy:?}"
        );
        assert!(!busy.iter().any(|m| m["event"] == "answered_here"));
        db.cleanup().await;
    }
}

async fn fixture_03_abandoned_with_hold_time(engine: &str) {
    {
        let db = TestDb::new(engine).await.unwrap();
        let (calls, _hub, _subs) = track(&db.store, events_of("03_"), &["150010002"]).await;
        assert_eq!(calls.len(), 1, "{engine}: {calls:?}");
        let c = &calls[0];
        assert_eq!(c.outcome.as_deref(), Some("abandoned"));
        assert_eq!(c.hold_s, Some(11));
        assert_eq!(c.queue.as_deref(), Some("670100-540100"));
        assert_eq!(c.answered_by, None);
        db.cleanup().await;
    }
}

async fn direct_calls_cancelled_and_rejected(engine: &str) {
    {
        let db = TestDb::new(engine).await.unwrap();
        let (calls, _, _) = track(&db.store, events_of("04_"), &[]).await;
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls[0].outcome.as_deref(),
            Some("abandoned"),
            "caller cancelled while ringing"
        );
        let db2 = TestDb::new(engine).await.unwrap();
        let (calls, _, _) = track(&db2.store, events_of("05_"), &[]).await;
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].outcome.as_deref(), Some("busy"));
        db.cleanup().await;
        db2.cleanup().await;
    }
}

#[tokio::test]
async fn transfers_and_click_to_dial_are_logged_once_each() {
    let db = TestDb::new("sqlite").await.unwrap();
    for f in ["06_", "07_", "08_", "18_"] {
        let before = db.store.call_count().await.unwrap();
        let evs = events_of(f);
        // Replaying the same capture opens no second call.
        let twice: Vec<PbxEvent> = evs.iter().cloned().chain(evs.iter().cloned()).collect();
        run_events(&db.store, &Hub::new(), AgentDirectory::default(), twice).await;
        let after = db.store.call_count().await.unwrap();
        assert!(after > before, "{f} logged a call");
        let calls = db.store.calls_between(None, None, 1000).await.unwrap();
        assert!(
            calls.iter().all(|c| c.outcome.is_some()),
            "{f}: every call ended: {calls:?}"
        );
    }
    db.cleanup().await;
}

fn channel_event(call: &str, channel: &str, number: &str) -> PbxEvent {
    PbxEvent::Channel {
        link: "ami".into(),
        call: call.into(),
        channel: channel.into(),
        name: format!("PJSIP/trunk-{channel}"),
        caller_number: number.into(),
        caller_name: String::new(),
        dialled: "0773689225".into(),
        at: chrono::Utc::now(),
    }
}

/// A tracker fed by hand (not through its run loop), with its call log writer running.
fn direct_tracker(
    store: &Store,
) -> (
    Tracker,
    writer::CallLog,
    tokio::task::JoinHandle<()>,
    madoguchi::store::testing::TempDir,
) {
    let spool = madoguchi::store::testing::TempDir::new("spool").unwrap();
    let (log, task) = writer::spawn(store.clone(), Arc::new(Metrics::default()), spool.0.clone());
    let tracker = Tracker::new(
        store.clone(),
        Hub::new(),
        Arc::new(Metrics::default()),
        log.clone(),
        AgentDirectory::default(),
    );
    (tracker, log, task, spool)
}

/// A reconnect's resync ends the calls that vanished while the link was down, keeps the ones
/// that survived, and logs each exactly once.
#[tokio::test]
async fn resync_after_reconnect_ends_vanished_calls_once() {
    use madoguchi::domain::call::LiveChannel;
    let db = TestDb::new("sqlite").await.unwrap();
    let (mut tracker, log, task, _spool) = direct_tracker(&db.store);
    let now = chrono::Utc::now();
    tracker
        .handle(channel_event("100.1", "100.1", "0773-62-0001"))
        .await;
    tracker
        .handle(channel_event("200.1", "200.1", "0773-62-0002"))
        .await;
    tracker
        .handle(PbxEvent::Answer {
            link: "ami".into(),
            call: "200.1".into(),
            device: "PJSIP/201".into(),
            queue: Some("vaccine".into()),
            hold_s: Some(4),
            at: now,
        })
        .await;
    tracker
        .handle(PbxEvent::LinkDown {
            link: "ami".into(),
            reason: "eof".into(),
        })
        .await;
    assert_eq!(
        tracker.live_calls().len(),
        2,
        "a dropped link ends nothing by itself"
    );
    tracker
        .handle(PbxEvent::LinkUp { link: "ami".into() })
        .await;
    let survivor = LiveChannel {
        call: "200.1".into(),
        channel: "200.1".into(),
        name: "PJSIP/trunk-1".into(),
        caller_number: "0773-62-0002".into(),
        caller_name: String::new(),
        dialled: String::new(),
        up: true,
    };
    tracker
        .handle(PbxEvent::Resync {
            link: "ami".into(),
            channels: vec![survivor.clone()],
            at: now,
        })
        .await;
    let live: Vec<String> = tracker.live_calls().into_iter().map(|c| c.id).collect();
    assert_eq!(live, vec!["ami:200.1".to_string()]);
    // A second resync listing the same survivor changes nothing; late events of the ended
    // call open nothing.
    tracker
        .handle(PbxEvent::Resync {
            link: "ami".into(),
            channels: vec![survivor],
            at: now,
        })
        .await;
    tracker
        .handle(channel_event("100.1", "100.1", "0773-62-0001"))
        .await;
    assert_eq!(tracker.live_calls().len(), 1);
    tracker
        .handle(PbxEvent::Hangup {
            link: "ami".into(),
            call: "200.1".into(),
            channel: "200.1".into(),
            cause: Some(16),
            at: now,
        })
        .await;
    drop(tracker);
    log.close();
    task.await.unwrap();
    let calls = db.store.calls_between(None, None, 10).await.unwrap();
    assert_eq!(calls.len(), 2);
    let by = |id: &str| calls.iter().find(|c| c.id == id).unwrap().clone();
    // Nobody can say whether the vanished caller gave up or was answered meanwhile.
    assert_eq!(by("ami:100.1").outcome.as_deref(), Some("unknown"));
    assert!(by("ami:100.1").end_estimated);
    assert_eq!(by("ami:200.1").outcome.as_deref(), Some("answered"));
    assert_eq!(by("ami:200.1").answered_by.as_deref(), Some("201"));
    db.cleanup().await;
}

#[test]
fn placeholder_caller_names_are_dropped() {
    assert_eq!(
        madoguchi::domain::phone::caller_display_name("<unknown>"),
        ""
    );
    assert_eq!(
        madoguchi::domain::phone::caller_display_name("+31150010001"),
        ""
    );
    assert_eq!(
        madoguchi::domain::phone::caller_display_name(" Eugene R "),
        "Eugene R"
    );
    assert_eq!(
        madoguchi::domain::phone::caller_display_name("舞鶴 花子"),
        "舞鶴 花子"
    );
}

/// A PBX that never reports an end, or reports it first, cannot grow the live calls without
/// a bound or leave rows open for ever.
#[tokio::test]
async fn calls_that_never_end_are_bounded() {
    use madoguchi::calls::tracker::{MAX_LIVE_CALLS, MAX_SILENCE};
    let db = TestDb::new("sqlite").await.unwrap();
    let (mut tracker, log, task, _spool) = direct_tracker(&db.store);
    // The Hangup comes before the Newchannel: the late Newchannel opens nothing.
    tracker
        .handle(PbxEvent::Hangup {
            link: "ami".into(),
            call: "9.1".into(),
            channel: "9.1".into(),
            cause: Some(16),
            at: chrono::Utc::now(),
        })
        .await;
    tracker
        .handle(channel_event("9.1", "9.1", "0773-62-0009"))
        .await;
    assert!(tracker.live_calls().is_empty());
    // Past the bound, the longest-silent call makes room.
    for i in 0..=MAX_LIVE_CALLS {
        tracker
            .handle(channel_event(&format!("{i}.5"), &format!("{i}.5"), ""))
            .await;
    }
    assert_eq!(tracker.live_calls().len(), MAX_LIVE_CALLS);
    // Calls nobody ends are closed once silent for MAX_SILENCE.
    tracker.sweep(std::time::Instant::now() + MAX_SILENCE + std::time::Duration::from_secs(1));
    assert!(tracker.live_calls().is_empty());
    drop(tracker);
    log.close();
    task.await.unwrap();
    let calls = db.store.calls_between(None, None, 20_000).await.unwrap();
    assert_eq!(calls.len(), MAX_LIVE_CALLS + 1);
    assert!(calls.iter().all(|c| c.outcome.as_deref() == Some("unknown")
        && c.end_estimated
        && c.ended_at.is_some()));
    db.cleanup().await;
}

madoguchi::on_each_engine!(
    fixture_01_one_answered_queue_call_from_123_by_sip_777,
    fixture_02_answered_by_the_member_that_answered,
    fixture_03_abandoned_with_hold_time,
    direct_calls_cancelled_and_rejected,
);
