//! For IT staff and their monitoring: `/healthz`, `/readyz`, `/metrics`, `/api/openapi.json`.

use super::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::atomic::Ordering;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi))
}

/// 200 when the database answers and every PBX link is logged in; 503 naming what is not.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let db = match tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await
    {
        Ok(Ok(())) => json!({"ok": true}),
        Ok(Err(e)) => json!({"ok": false, "error": format!("{e:#}")}),
        Err(_) => json!({"ok": false, "error": "timed out"}),
    };
    let call_log = state.call_log.detail();
    let mut ready = db["ok"] == true && state.call_log.healthy();
    let links: Vec<_> = state
        .links
        .iter()
        .map(|l| {
            ready &= l.up();
            json!({"name": l.name(), "up": l.up(), "reconnects": l.reconnects(), "detail": l.detail()})
        })
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"ready": ready, "database": db, "call_log": call_log, "pbx_links": links})),
    )
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut gauges: Vec<(String, f64)> = vec![
        (
            "madoguchi_ws_clients".into(),
            state.ws_clients.load(Ordering::Relaxed) as f64,
        ),
        (
            "madoguchi_ws_dropped_slow_clients".into(),
            state.hub.dropped_clients.load(Ordering::Relaxed) as f64,
        ),
    ];
    let mut reconnects = 0u64;
    let mut up = 0u64;
    for l in state.links.iter() {
        reconnects += l.reconnects();
        up += u64::from(l.up());
    }
    gauges.push(("madoguchi_pbx_reconnects".into(), reconnects as f64));
    gauges.push((
        "madoguchi_call_log_backlog".into(),
        state.call_log.backlog.load(Ordering::Relaxed) as f64,
    ));
    gauges.push(("madoguchi_pbx_links_up".into(), up as f64));
    let extra: Vec<(&str, &str, f64)> = gauges
        .iter()
        .map(|(n, v)| (n.as_str(), "see README", *v))
        .collect();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&extra),
    )
}

/// A hand-written description of every route (kept beside the routes it describes).
async fn openapi() -> Json<serde_json::Value> {
    let op =
        |summary: &str| json!({"summary": summary, "responses": {"200": {"description": "OK"}}});
    Json(json!({
        "openapi": "3.0.3",
        "info": {"title": "madoguchi", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Ledger and screen-pop server of a municipal vaccination campaign"},
        "components": {"securitySchemes": {"session": {"type": "apiKey", "in": "cookie", "name": "madoguchi_session"}}},
        "security": [{"session": []}],
        "paths": {
            "/healthz": {"get": op("200 while the process serves")},
            "/readyz": {"get": op("database and PBX link readiness (503 when not ready)")},
            "/metrics": {"get": op("Prometheus text: calls, pops, pop latency histogram, reconnects, WebSocket clients")},
            "/api/openapi.json": {"get": op("this document")},
            "/api/session": {
                "post": {"summary": "log in with {username, password}; sets the session cookie",
                         "requestBody": {"content": {"application/json": {"schema": {"type": "object",
                            "required": ["username", "password"],
                            "properties": {"username": {"type": "string"}, "password": {"type": "string"}}}}}},
                         "responses": {"200": {"description": "logged in"}, "401": {"description": "wrong username or password"}}},
                "delete": {"summary": "log out", "responses": {"204": {"description": "logged out"}}}
            },
            "/api/me": {"get": op("the logged-in user")},
            "/ws": {"get": {"summary": "WebSocket: hello, screen_pop, call_update; ?since=SEQ resumes; ?topic=slots gives slot_update (seat counts) instead",
                            "parameters": [{"name": "since", "in": "query", "schema": {"type": "integer"}},
                                           {"name": "topic", "in": "query", "schema": {"type": "string", "enum": ["slots"]}}],
                            "responses": {"101": {"description": "switching protocols"}}}},
            "/api/residents": {"get": {"summary": "residents by phone, ticket, or kana (+ birth_date)",
                "parameters": [
                    {"name": "phone", "in": "query", "schema": {"type": "string"}},
                    {"name": "ticket", "in": "query", "schema": {"type": "string"}},
                    {"name": "kana", "in": "query", "schema": {"type": "string"}},
                    {"name": "birth_date", "in": "query", "schema": {"type": "string", "format": "date"}}],
                "responses": {"200": {"description": "matching residents"}, "422": {"description": "bad search"}}}},
            "/api/residents/{id}": {"get": {"summary": "one resident with bookings, inquiries, calls and vaccinations",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "the record"}, "404": {"description": "no such resident"}}}},
            "/api/slots": {"get": {"summary": "slots (コマ), each with id, venue_id, starts_at, ends_at, product, capacity, booked, closed; without venue and date, the coming slots",
                "parameters": [
                    {"name": "venue", "in": "query", "schema": {"type": "integer"}},
                    {"name": "date", "in": "query", "schema": {"type": "string", "format": "date"}, "description": "a day in Japan (JST)"}],
                "responses": {"200": {"description": "slots by start time"}, "422": {"description": "bad venue or date; `field` names it"}}}},
            "/api/bookings": {"get": {"summary": "the live bookings (booked or checked in) in a slot, each with id, resident_id, dose",
                "parameters": [{"name": "slot_id", "in": "query", "required": true, "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "bookings"}, "404": {"description": "no such slot"}, "422": {"description": "slot_id missing"}}}},
            "/api/bookings/{id}/move": {"post": {"summary": "rebook into another slot; moving dose 1 moves dose 2 to the same venue and time of day at the product's interval. A retry with the same Idempotency-Key returns the first answer and changes nothing",
                "parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}},
                    {"name": "Idempotency-Key", "in": "header", "required": true, "schema": {"type": "string", "maxLength": 200}}],
                "requestBody": {"content": {"application/json": {"schema": {"type": "object", "required": ["slot_id"],
                    "properties": {"slot_id": {"type": "integer"}}}}}},
                "responses": {"200": {"description": "moved: the bookings now and the slots whose counts changed"},
                              "404": {"description": "no such booking"},
                              "409": {"description": "refused and nothing changed: `error` is a sentence to read to the caller, `reason` one of slot_full, slot_closed, booking_not_live, different_product, too_early, too_young, no_dose2_slot"},
                              "422": {"description": "slot_id unknown, or Idempotency-Key missing or reused for another move; `field` names it"}}}},
            "/api/calls": {"get": {"summary": "the call log, each with outcome and resident_id",
                "parameters": [
                    {"name": "from", "in": "query", "schema": {"type": "string"}},
                    {"name": "to", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "calls, oldest first"}}}},
            "/api/calls/{id}/resident": {"post": {"summary": "say which household member is calling",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"204": {"description": "linked"}, "404": {"description": "no such call"}}}},
            "/api/inquiries": {"post": {"summary": "save an inquiry against a resident and/or call",
                "responses": {"201": {"description": "saved"}, "422": {"description": "a field is wrong; `field` names it"}}}},
            "/api/inquiry-categories": {"get": op("the inquiry categories")},
            "/api/queues": {"get": op("per queue: waiting (caller_number, wait_s), offered, answered, abandoned, service_level, asa_s, aht_s today; agents with state and connection")}
        }
    }))
}
