//! `GET /ws/supervisor`: the supervisors' live board, pushed. The socket's `hello` carries the
//! whole board (as `/api/queues` shows it, plus bookings per venue today); after it, a `board`
//! message whenever something changed, coalesced to at most two a second: the first change
//! after a quiet spell goes out at once, later ones wait for the end of its half second and go
//! out together. Every message is the whole board, so a screen that reconnects (or misses one)
//! needs no replay: the next message, or the `hello`, is the truth.

use super::{ApiError, AppState};
use crate::http::session::CurrentUser;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The hub topic every supervisor screen listens on.
pub const SUPERVISOR_TOPIC: &str = "supervisors";
/// At most this often a board goes out (two a second).
pub const COALESCE: Duration = Duration::from_millis(500);

/// The routes of this module (and the supervisor page) as `/api/openapi.json` lists them.
pub fn openapi_paths() -> serde_json::Map<String, serde_json::Value> {
    let ok = |summary: &str| json!({"get": {"summary": summary, "responses": {"200": {"description": "OK"}}}});
    let mut m = serde_json::Map::new();
    m.insert(
        "/supervisor".into(),
        ok("the supervisors' wall screen (supervisor.html)"),
    );
    m.insert(
        "/ws/supervisor".into(),
        json!({"get": {"summary": "WebSocket of the supervisors' board: hello, then board (the /api/queues document with bookings_today), at most twice a second while anything changes",
            "responses": {"101": {"description": "switching protocols"}}}}),
    );
    m
}

pub fn router() -> Router<AppState> {
    Router::new().route("/ws/supervisor", get(upgrade))
}

async fn upgrade(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    Ok(super::ws::with_limits(ws).on_upgrade(move |socket| serve(socket, state, user)))
}

/// The board as a message: the `/api/queues` document with its `type`. (Each venue's progress
/// has its own feed, `/ws/venues`, which the page's venues panel reads.)
async fn board_message(state: &AppState, kind: &str) -> Result<String, ApiError> {
    let board = super::queues::snapshot(state).await?;
    Ok(led_by_type_and_at(kind, board))
}

/// `{"type":…,"at":…, the rest}`: a screen tells a board and its age from the first bytes,
/// without reading the tens of kilobytes after them (the keys of the rest come sorted).
fn led_by_type_and_at(kind: &str, mut board: serde_json::Value) -> String {
    let at = board
        .as_object_mut()
        .and_then(|o| o.remove("at"))
        .unwrap_or(serde_json::Value::Null);
    let rest = board.to_string();
    let rest = rest.strip_prefix('{').unwrap_or("}");
    let sep = if rest.starts_with('}') { "" } else { "," };
    format!("{{\"type\":{},\"at\":{at}{sep}{rest}", json!(kind))
}

/// Publishes the board on [`SUPERVISOR_TOPIC`] as it changes, at most every [`COALESCE`], while
/// at least one supervisor screen listens. Runs until `stop` changes.
pub async fn publish_board(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = state.board.changed() => {}
            // The ACW timers run out without a board event.
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => return,
        }
        if state.hub.listeners(SUPERVISOR_TOPIC) == 0 {
            continue;
        }
        // Woken by a change, or by the tick (after-call work runs out).
        match board_message(&state, "board").await {
            Ok(text) => {
                state.hub.publish(SUPERVISOR_TOPIC, &text);
            }
            Err(e) => tracing::warn!(error = ?e, "supervisor board not published"),
        }
        // Changes in the next half second wait for the next message.
        tokio::select! {
            _ = tokio::time::sleep(COALESCE) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The latest board as WebSocket text, shared by every screen: the hub hands each screen the
/// same `Arc<str>`, and it is turned into a frame payload once, not once per screen (a board is
/// tens of kilobytes and a wall of screens is a thousand).
static LAST_BOARD: Mutex<Option<(Arc<str>, Utf8Bytes)>> = Mutex::new(None);

fn shared_text(text: &Arc<str>) -> Utf8Bytes {
    let mut last = LAST_BOARD.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((src, bytes)) = last.as_ref() {
        if Arc::ptr_eq(src, text) {
            return bytes.clone();
        }
    }
    let bytes = Utf8Bytes::from(&**text);
    *last = Some((text.clone(), bytes.clone()));
    bytes
}

async fn serve(mut socket: WebSocket, state: AppState, user: crate::store::users::User) {
    let mut sub = state.hub.subscribe(SUPERVISOR_TOPIC, None, None);
    let hello = match board_message(&state, "hello").await {
        Ok(h) => h,
        Err(_) => {
            state.hub.unsubscribe(SUPERVISOR_TOPIC, sub.id);
            return;
        }
    };
    // Like every message after it, the hello leads with the topic's seq.
    let hello = crate::hub::with_seq(sub.seq, &hello);
    let mut ok = socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_ok();
    let mut last = sub.seq;
    let mut keepalive = tokio::time::interval(Duration::from_secs(30));
    keepalive.tick().await;
    while ok {
        tokio::select! {
            frame = sub.rx.recv() => match frame {
                Some(frame) => {
                    ok = matches!(
                        tokio::time::timeout(super::ws::WRITE_TIMEOUT, socket.send(Message::Text(shared_text(&frame.text)))).await,
                        Ok(Ok(()))
                    );
                    last = super::ws::seq_of(&frame.text).unwrap_or(last);
                }
                None => {
                    let close = CloseFrame { code: 4008, reason: "too slow; reconnect".into() };
                    let _ = tokio::time::timeout(super::ws::WRITE_TIMEOUT, socket.send(Message::Close(Some(close)))).await;
                    ok = false;
                }
            },
            incoming = socket.recv() => ok = super::ws::on_incoming(&mut socket, incoming, last, &user.username).await,
            _ = keepalive.tick() => {
                ok = matches!(
                    tokio::time::timeout(super::ws::WRITE_TIMEOUT, socket.send(Message::Ping(Vec::new().into()))).await,
                    Ok(Ok(()))
                );
            }
        }
    }
    state.hub.unsubscribe(SUPERVISOR_TOPIC, sub.id);
}

#[cfg(test)]
mod tests {
    use super::led_by_type_and_at;
    use serde_json::json;

    #[test]
    fn a_board_message_leads_with_its_type_and_age_and_keeps_every_field() {
        let board = json!({"agents": [{"at": "not this one"}], "at": "2026-11-30T01:02:03.000Z", "slices": []});
        let text = led_by_type_and_at("board", board.clone());
        assert!(
            text.starts_with(r#"{"type":"board","at":"2026-11-30T01:02:03.000Z","agents":"#),
            "{text}"
        );
        let mut want = board;
        want["type"] = json!("board");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            want
        );
        // A board without fields is still one JSON object.
        let empty = led_by_type_and_at("hello", json!({}));
        assert_eq!(empty, r#"{"type":"hello","at":null}"#);
        assert!(serde_json::from_str::<serde_json::Value>(&empty).is_ok());
    }
}
