//! For IT staff and their monitoring: `/healthz`, `/readyz`, `/metrics`, `/api/openapi.json`.

use super::AppState;
use crate::domain::Role;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
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

/// 200 when the database answers and every PBX link is logged in, 503 when not. Anyone may
/// ask whether; only an admin session is told what (the links, the database's error text).
async fn readyz(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
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
    let admin = matches!(
        super::session::session_user(&headers, &state).await,
        Ok(Some(u)) if u.role == Role::Admin
    );
    let body = if admin {
        json!({"ready": ready, "database": db, "call_log": call_log, "pbx_links": links})
    } else {
        json!({"ready": ready})
    };
    (status, Json(body))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut reconnects = 0u64;
    let mut up = 0u64;
    for l in state.links.iter() {
        reconnects += l.reconnects();
        up += u64::from(l.up());
    }
    let extra: [(&str, &str, f64); 5] = [
        (
            "madoguchi_ws_clients",
            "WebSocket connections open now (agent screens)",
            state.ws_clients.load(Ordering::Relaxed) as f64,
        ),
        (
            "madoguchi_ws_dropped_slow_clients",
            "screens dropped since start for reading too slowly (they reconnect and resume)",
            state.hub.dropped_clients.load(Ordering::Relaxed) as f64,
        ),
        (
            "madoguchi_pbx_reconnects",
            "times the PBX links had to reconnect since start",
            reconnects as f64,
        ),
        (
            "madoguchi_call_log_backlog",
            "calls whose newest state waits for the database (grows while it is away)",
            state.call_log.backlog.load(Ordering::Relaxed) as f64,
        ),
        (
            "madoguchi_pbx_links_up",
            "PBX links logged in now",
            up as f64,
        ),
    ];
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
    let mut doc = base_openapi();
    if let Some(paths) = doc["paths"].as_object_mut() {
        // The venue day's routes (src/http/venue.rs), described beside them.
        for (path, ops) in super::venue::openapi_paths()
            .into_iter()
            .chain(super::standby::openapi_paths())
        {
            paths.insert(path, ops);
        }
    }
    Json(doc)
}

fn base_openapi() -> serde_json::Value {
    let op =
        |summary: &str| json!({"summary": summary, "responses": {"200": {"description": "OK"}}});
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {"title": "madoguchi", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Ledger and screen-pop server of a municipal vaccination campaign"},
        "components": {"securitySchemes": {"session": {"type": "apiKey", "in": "cookie", "name": "madoguchi_session"}}},
        "security": [{"session": []}],
        "paths": {
            "/": {"get": op("the browser screens (index.html)")},
            "/assets/{file}": {"get": {"summary": "the browser screens' scripts, styles and images",
                "parameters": [{"name": "file", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the file"}, "404": {"description": "no such file"}}}},
            "/healthz": {"get": op("200 while the process serves")},
            "/readyz": {"get": op("database and PBX link readiness (503 when not ready); the details only to an admin session")},
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
            "/ws": {"get": {"summary": "WebSocket, the agent's live feed: hello (epoch, gap, live_calls), screen_pop, candidates_update, call_update; ?since=SEQ&epoch=E resumes",
                            "parameters": [{"name": "since", "in": "query", "schema": {"type": "integer"}},
                                           {"name": "epoch", "in": "query", "schema": {"type": "string"}}],
                            "responses": {"101": {"description": "switching protocols"}}}},
            "/ws/slots": {"get": {"summary": "WebSocket of seat counts: hello, then slot_update for every slot whose seat count a move changed; ?since=SEQ&epoch=E resumes",
                            "parameters": [{"name": "since", "in": "query", "schema": {"type": "integer"}},
                                           {"name": "epoch", "in": "query", "schema": {"type": "string"}}],
                            "responses": {"101": {"description": "switching protocols"}}}},
            "/api/residents": {"get": {"summary": "residents by phone, ticket, or kana (+ birth_date)",
                "parameters": [
                    {"name": "phone", "in": "query", "schema": {"type": "string"}},
                    {"name": "ticket", "in": "query", "schema": {"type": "string"}},
                    {"name": "kana", "in": "query", "schema": {"type": "string"}},
                    {"name": "birth_date", "in": "query", "description": "YYYY-MM-DD, or 和暦: 昭和25年6月6日, S25.6.6, S250606, 25/6/6 with era",
                     "schema": {"type": "string"}},
                    {"name": "era", "in": "query", "description": "the era of a birth_date written without one: meiji, taisho, showa, heisei, reiwa",
                     "schema": {"type": "string"}}],
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
            "/api/bookings/{id}/move": {"post": {"summary": "rebook into another slot; moving dose 1 moves dose 2 to the same venue and time of day at the product's interval. A retry with the same Idempotency-Key returns the first answer and changes nothing; without the header the move runs once, with nothing to replay",
                "parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}},
                    {"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "minLength": 1, "maxLength": 200}}],
                "requestBody": {"content": {"application/json": {"schema": {"type": "object", "required": ["slot_id"],
                    "properties": {"slot_id": {"type": "integer"}, "release_ride": {"type": "boolean", "description": "the resident comes without the bus: release the ride instead of requiring a seat on a run serving the new slot"}}}}}},
                "responses": {"200": {"description": "moved: the bookings now and the slots whose counts changed"},
                              "404": {"description": "no such booking"},
                              "409": {"description": "refused and nothing changed: `error` is a sentence to read to the caller, `reason` one of slot_full, slot_closed, booking_not_live, different_product, too_early, too_young, no_dose2_slot, no_bus_seat"},
                              "422": {"description": "slot_id unknown, or Idempotency-Key blank, too long or reused for another move; `field` names it"}}}},
            "/api/residents/{id}/phones": {"post": {"summary": "keep the number a caller rang from: {number, kind (home, mobile, family, other), call_id?}; audited",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                "responses": {"201": {"description": "added"}, "404": {"description": "no such resident"},
                              "409": {"description": "the resident already has this number"},
                              "422": {"description": "number or kind is wrong; `field` names it"}}}},
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
            "/api/queues": {"get": op("per queue: waiting (caller_number, wait_s, since, resident), offered, answered, abandoned, short_abandoned, timeouts, service_level, abandon_rate, asa_s, aht_s, longest_wait_s today and last_hour; overall (today, last_hour); slices (calls per 15 min today); agents with state (the phone), live (idle / ringing / talking / wrap_up / paused with reason / logged_out, since, in_state_s), availability (ready / break with reason / acw, since, until) and connection")},
            "/api/agent/state": {
                "get": op("the logged-in agent's availability: {state: ready|break|acw, reason, since, until}"),
                "post": {"summary": "set the logged-in agent's availability: {state: ready|break|acw, reason?}; after-call work ends by itself after MADOGUCHI_ACW_SECONDS",
                         "responses": {"200": {"description": "the new state"}, "409": {"description": "the user has no extension"},
                                       "422": {"description": "state or reason is wrong; `field` names it"}}}},
            "/api/pbx/webhook/{token}": {"post": {"summary": "a PBX reports a call event in the Zammad generic-CTI shape (newCall, answer, hangup; JSON or form data); the token is MADOGUCHI_WEBHOOK_TOKEN",
                "security": [],
                "parameters": [{"name": "token", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "{}"}, "401": {"description": "wrong token"}, "404": {"description": "no webhook token configured"},
                              "415": {"description": "neither JSON nor form data"}, "422": {"description": "a field is missing or wrong (named)"}}}}
        }
    });
    rebook_paths(&mut doc);
    if let (Some(paths), serde_json::Value::Object(more)) = (
        doc["paths"].as_object_mut(),
        super::planning::openapi_paths(),
    ) {
        paths.extend(more);
    }
    // Each route group's own paths, added beside the ones above.
    if let Some(paths) = doc["paths"].as_object_mut() {
        paths.extend(crate::http::supervisor::openapi_paths());
        paths.extend(crate::http::callbacks::openapi_paths());
        paths.extend(crate::http::dial::openapi_paths());
        paths.extend(crate::http::reports::openapi_paths());
    }
    doc
}

/// The agent screen's rebooking and the planner's slot edit (src/http/bookings.rs), added to
/// the description apart (one `json!` for everything exceeds the macro's recursion limit).
fn rebook_paths(doc: &mut serde_json::Value) {
    let key = json!({"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "minLength": 1, "maxLength": 200}});
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}});
    let call_id = json!({"type": "string", "description": "the call the agent is on: the change's audit line and inquiry (written in the same transaction) name it"});
    let paths = &mut doc["paths"];
    paths["/api/bookings/{id}/move"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"]["properties"]["call_id"] = call_id.clone();
    paths["/api/bookings"]["post"] = json!({
        "summary": "book a dose for a resident with none live (booking dose 1 books dose 2 after it, same venue and time of day, when there is none); one transaction with its audit line and an appointment_change inquiry against call_id. Idempotency-Key as for a move",
        "parameters": [key.clone()],
        "requestBody": {"content": {"application/json": {"schema": {"type": "object", "required": ["resident_id", "dose", "slot_id"],
            "properties": {"resident_id": {"type": "integer"}, "dose": {"type": "integer", "enum": [1, 2]}, "slot_id": {"type": "integer"}, "call_id": call_id.clone()}}}}},
        "responses": {"200": {"description": "booked: the new bookings and the slots whose counts changed"},
                      "409": {"description": "refused and nothing changed: `error` to read aloud, `reason` already_booked, slot_full, slot_closed, too_young, too_early, different_product, no_dose2_slot"},
                      "422": {"description": "unknown resident or slot, bad dose, Idempotency-Key or call_id; `field` names it"}}});
    paths["/api/bookings/{id}/alternatives"] = json!({"get": {
        "summary": "the slots to offer instead of a booking: open, coming, allowed to the resident (age; dose 2: dose 1's product and interval); same venue nearest first, then other venues (each with venue_name, same_venue, capacity and booked); and the household's other members with their live bookings",
        "parameters": [id.clone()],
        "responses": {"200": {"description": "{booking, resident_id, slots, household}"}, "404": {"description": "no such booking"}}}});
    paths["/api/bookings/{id}/cancel"] = json!({"post": {
        "summary": "cancel a booking (dose 1 takes its live dose 2 along); one transaction with its audit line and an appointment_cancel inquiry against call_id. Idempotency-Key as for a move",
        "parameters": [id.clone(), key.clone()],
        "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {"call_id": call_id.clone()}}}}},
        "responses": {"200": {"description": "cancelled: the bookings now and the slots whose counts changed"},
                      "404": {"description": "no such booking"},
                      "409": {"description": "refused and nothing changed: `error` to read aloud, `reason` booking_not_live"},
                      "422": {"description": "Idempotency-Key blank, too long or reused, or call_id unknown; `field` names it"}}}});
    paths["/api/bookings/{id}/move-together"] = json!({"post": {
        "summary": "move us both: this booking and a household member's (with_booking_id) into one slot, each dose 1 taking its dose 2 along, in one transaction or not at all; audited, with an appointment_change inquiry for each resident against call_id",
        "parameters": [id.clone(), key],
        "requestBody": {"content": {"application/json": {"schema": {"type": "object", "required": ["slot_id", "with_booking_id"],
            "properties": {"slot_id": {"type": "integer"}, "with_booking_id": {"type": "integer"}, "call_id": call_id}}}}},
        "responses": {"200": {"description": "moved: both residents' bookings now and the slots whose counts changed"},
                      "404": {"description": "no such booking"},
                      "409": {"description": "refused and nothing changed: `error` to read aloud; `reason` as for a move, or not_household"},
                      "422": {"description": "bad body, Idempotency-Key or call_id; `field` names it"}}}});
}
