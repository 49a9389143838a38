//! A screen that never reads: the hub drops it from its topic as soon as its queue is full,
//! the server cuts its connection once a frame cannot leave for 15 s, and meanwhile 100 other
//! screens get every message of theirs without waiting for it.

use crate::common::*;
use futures_util::StreamExt;
use madoguchi::domain::Role;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_screen_that_never_reads_is_cut_off_and_the_others_keep_going() {
    let srv = TestServer::start("sqlite", None).await;
    srv.add_user("slow", Role::Agent, Some("201")).await;
    let mut others = Vec::new();
    for i in 0..100 {
        let name = format!("agent{i}");
        srv.add_user(&name, Role::Agent, Some(&format!("{}", 300 + i)))
            .await;
        others.push(srv.login(&name).await.ws().await);
    }
    // The slow screen: connected, then never read again.
    let slow = srv.login("slow").await;
    let slow_ws = slow.ws().await;
    let state = srv.running.as_ref().expect("running").state.clone();
    assert_eq!(state.ws_clients.load(Ordering::Relaxed), 101);

    // 20 MB for the slow screen, far beyond what the kernel buffers hold, and one small message
    // for each other screen after every 64 KB.
    let big = format!(r#"{{"type":"bulk","pad":"{}"}}"#, "x".repeat(64 * 1024));
    let mut sent_to_others = 0;
    let mut worst = Duration::ZERO;
    for round in 0..320 {
        state.hub.publish("agent:201", &big);
        if round % 32 == 0 {
            let t = Instant::now();
            for i in 0..100 {
                state
                    .hub
                    .publish(&format!("agent:{}", 300 + i), r#"{"type":"ping_test"}"#);
            }
            sent_to_others += 1;
            for ws in others.iter_mut() {
                let m = ws
                    .next_json(Duration::from_secs(5))
                    .await
                    .expect("a message");
                assert_eq!(m["type"], "ping_test");
            }
            worst = worst.max(t.elapsed());
        }
    }
    assert_eq!(sent_to_others, 10);
    eprintln!("100 screens served in at most {worst:?} per round while one did not read");
    assert!(
        worst < Duration::from_secs(2),
        "the others never waited for the slow one: {worst:?}"
    );
    assert_eq!(
        state.hub.listeners("agent:201"),
        0,
        "dropped from its topic"
    );
    assert!(state.hub.dropped_clients.load(Ordering::Relaxed) >= 1);
    // Cut off: its connection task ends within the write timeout (plus a margin).
    let deadline = Instant::now() + madoguchi::http::ws::WRITE_TIMEOUT + Duration::from_secs(10);
    while state.ws_clients.load(Ordering::Relaxed) > 100 {
        assert!(
            Instant::now() < deadline,
            "the slow screen was never cut off"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The server closed it: reading now shows the end (after the buffered frames).
    let mut stream = slow_ws.stream;
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(m) = stream.next().await {
            if m.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the slow screen's socket was closed by the server"
    );
    drop(others);
    srv.stop().await;
}
