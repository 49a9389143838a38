//! `GET /ws`: the agent's live feed. The socket subscribes to the agent's extension topic, so a
//! pop reaches the screen of the agent whose phone rings and no other. `/ws/slots` subscribes
//! to seat counts instead (`slot_update`, for the screens that book).
//!
//! Resume: `?since=<seq>` replays what the topic sent after that seq. A client too slow to
//! keep up is closed with code 4008 and resyncs on reconnect. Frames from the browser larger
//! than [`MAX_MESSAGE`] close the socket; the server goes on serving everyone else.

use super::session::CurrentUser;
use super::{ApiError, AppState};
use crate::hub::{agent_topic, SLOTS_TOPIC};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long one frame may take to leave before the screen counts as gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest message a browser may send (it only sends pings).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// How much a socket reads at once. The library's default (128 KiB) is zeroed before every
/// read attempt, and a screen's socket is polled for reading each time a message goes out to
/// it: with a wall of a thousand supervisor screens that was 128 MB of memset per board.
/// Browsers send only small pings.
pub const READ_BUFFER: usize = 4 * 1024;

/// Every screen socket's limits: [`MAX_MESSAGE`] and [`READ_BUFFER`].
pub(super) fn with_limits(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .read_buffer_size(READ_BUFFER)
}

pub fn router() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

/// What a screen sent: a ping is answered with a pong carrying `seq`, the last seq this socket
/// delivered (so a client that keeps the highest seq it saw never skips a frame), anything else
/// readable is ignored (screens send nothing else), a close or an unreadable frame ends the
/// socket. `false`: the socket is done.
pub(super) async fn on_incoming(
    socket: &mut WebSocket,
    incoming: Option<Result<Message, axum::Error>>,
    seq: u64,
    who: &str,
) -> bool {
    match incoming {
        Some(Ok(Message::Text(t))) => {
            !t.contains("\"ping\"")
                || socket
                    .send(Message::Text(
                        format!(r#"{{"type":"pong","seq":{seq}}}"#).into(),
                    ))
                    .await
                    .is_ok()
        }
        Some(Ok(Message::Close(_))) | None => false,
        Some(Ok(_)) => true,
        Some(Err(e)) => {
            tracing::info!(user = %who, error = %e, "websocket closed with an error");
            // Say why before going: a frame over MAX_MESSAGE is 1009, anything else the peer
            // sent wrong is 1002.
            let close = close_for(&e.to_string());
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                socket.send(Message::Close(Some(close))),
            )
            .await;
            false
        }
    }
}

/// The `seq` a hub frame leads with (`{"seq":N,…`).
pub(super) fn seq_of(text: &str) -> Option<u64> {
    let digits = text.strip_prefix("{\"seq\":")?;
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The close frame for a socket whose peer sent something unreadable.
fn close_for(error: &str) -> CloseFrame {
    let too_big = error.contains("too long") || error.contains("Space limit");
    if too_big {
        CloseFrame {
            code: 1009,
            reason: format!("a message may be at most {MAX_MESSAGE} bytes").into(),
        }
    } else {
        CloseFrame {
            code: 1002,
            reason: "unreadable frame".into(),
        }
    }
}

/// `/ws/slots`, for the booking screens' role group.
pub fn slots_router() -> Router<AppState> {
    Router::new().route("/ws/slots", get(upgrade_slots))
}

#[derive(Deserialize)]
pub(super) struct WsQuery {
    since: Option<u64>,
    /// The server epoch `since` belongs to (from the last `hello`).
    epoch: Option<String>,
}

async fn upgrade(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // The role (PHONES) and the page's Origin were checked before this runs (`http::app`).
    let topic = match &user.extension {
        Some(ext) => agent_topic(ext),
        None => format!("user:{}", user.id),
    };
    Ok(open(ws, state, user, topic, q))
}

/// `GET /ws/slots`: seat counts (`slot_update`) for the screens that book; the role
/// (BOOKINGS) was checked before this runs.
async fn upgrade_slots(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    Ok(open(ws, state, user, SLOTS_TOPIC.to_string(), q))
}

/// Opens a socket on `topic` (also for the venue screens' `/ws/venues`).
pub(super) fn open(
    ws: WebSocketUpgrade,
    state: AppState,
    user: crate::store::users::User,
    topic: String,
    q: WsQuery,
) -> Response {
    with_limits(ws).on_upgrade(move |socket| serve(socket, state, user, topic, q))
}

async fn serve(
    mut socket: WebSocket,
    state: AppState,
    user: crate::store::users::User,
    topic: String,
    q: WsQuery,
) {
    let mut sub = state.hub.subscribe(&topic, q.since, q.epoch.as_deref());
    state.ws_clients.fetch_add(1, Ordering::Relaxed);
    // The hello carries the calls ringing or talking on this screen now, so a page opened
    // mid-ring (or told of a gap) shows them; `gap` tells it to drop what it believed.
    let live: Vec<Box<RawValue>> = sub
        .live
        .iter()
        .filter_map(|s| RawValue::from_string(s.to_string()).ok())
        .collect();
    let hello = json!({
        "type": "hello",
        "seq": sub.seq,
        "epoch": state.hub.epoch(),
        "user": user,
        "extension": user.extension,
        "gap": sub.gap,
        "live_calls": live,
        // The agent's own state (ready, break, acw), kept on the queue board.
        "agent_state": user.extension.as_deref().map(|e| state.board.availability(e, chrono::Utc::now())),
    });
    let mut ok = socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_ok();
    // Where the client stands: its `since` while the replay brings it forward, else the hello's.
    let mut last = match q.since {
        Some(since) if !sub.gap => since.min(sub.seq),
        _ => sub.seq,
    };
    for frame in std::mem::take(&mut sub.replay) {
        if !ok {
            break;
        }
        ok = socket
            .send(Message::Text(frame.text.to_string().into()))
            .await
            .is_ok();
        last = seq_of(&frame.text).unwrap_or(last);
    }
    let mut keepalive = tokio::time::interval(Duration::from_secs(30));
    keepalive.tick().await;
    while ok {
        tokio::select! {
            frame = sub.rx.recv() => match frame {
                Some(frame) => {
                    // A screen that stops reading (its kernel buffers full) is cut off after
                    // WRITE_TIMEOUT instead of holding this task and its connection for ever.
                    ok = matches!(
                        tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Text(frame.text.to_string().into()))).await,
                        Ok(Ok(()))
                    );
                    if ok {
                        last = seq_of(&frame.text).unwrap_or(last);
                    }
                    if let (true, Some(origin)) = (ok, frame.origin) {
                        let us = (chrono::Utc::now() - origin).num_microseconds().unwrap_or(0);
                        state.metrics.observe_pop_write(us.max(0) as u64);
                    }
                }
                None => {
                    // The hub dropped us for being too slow: say so, the browser resyncs.
                    let close = CloseFrame { code: 4008, reason: "too slow; reconnect with since".into() };
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Close(Some(close)))).await;
                    ok = false;
                }
            },
            incoming = socket.recv() => ok = on_incoming(&mut socket, incoming, last, &user.username).await,
            _ = keepalive.tick() => {
                ok = matches!(
                    tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Ping(Vec::new().into()))).await,
                    Ok(Ok(()))
                );
            }
        }
    }
    state.hub.unsubscribe(&topic, sub.id);
    state.ws_clients.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frames_seq_is_read_from_its_first_bytes() {
        assert_eq!(seq_of(r#"{"seq":42,"type":"x"}"#), Some(42));
        assert_eq!(seq_of(r#"{"seq":7}"#), Some(7));
        assert_eq!(seq_of(r#"{"type":"x","seq":3}"#), None);
        assert_eq!(seq_of(r#"{"seq":,"type":"x"}"#), None);
    }

    #[test]
    fn an_oversized_frame_closes_with_1009_anything_else_1002() {
        let big = close_for("Space limit exceeded: Message too long: 204800 > 65536");
        assert_eq!(big.code, 1009);
        assert_eq!(close_for("Protocol error: bad opcode").code, 1002);
    }
}
