//! The role matrix: every route `/api/openapi.json` describes (and `/ws`), asked as every role
//! and as nobody, answers as the README's roles table says: 401 without a session, 403 with a
//! role the route does not admit, anything else when admitted. Request bodies are harmless
//! (empty objects the handlers refuse with 422).

use crate::common::*;
use madoguchi::domain::Role;
use serde_json::Value;

/// Who may use what: the README's roles table, written out again so the server is checked
/// against the document and not against itself.
const NOBODY: &[&str] = &["nobody", "agent", "supervisor", "planner", "venue", "admin"];
const STAFF: &[&str] = &["agent", "supervisor", "planner", "venue", "admin"];
const PHONES: &[&str] = &["agent", "supervisor", "admin"];
const LEDGER: &[&str] = &["agent", "supervisor", "planner", "venue", "admin"];
const BOOKINGS: &[&str] = &["agent", "supervisor", "planner", "admin"];
const PLANNING: &[&str] = &["planner", "admin"];
const SUPERVISORS: &[&str] = &["supervisor", "admin"];
const VENUE: &[&str] = &["venue", "admin"];
const VENUE_WATCH: &[&str] = &["venue", "supervisor", "planner", "admin"];
const RECORDS: &[&str] = &["supervisor", "planner", "admin"];

const TABLE: &[(&str, &str, &[&str])] = &[
    ("GET", "/", NOBODY),
    ("GET", "/assets/{file}", NOBODY),
    ("GET", "/healthz", NOBODY),
    ("GET", "/readyz", NOBODY),
    ("GET", "/metrics", NOBODY),
    ("GET", "/api/openapi.json", NOBODY),
    ("POST", "/api/session", NOBODY),
    ("DELETE", "/api/session", NOBODY),
    ("GET", "/api/me", STAFF),
    ("GET", "/api/inquiry-categories", STAFF),
    ("GET", "/ws", PHONES),
    ("GET", "/api/calls", PHONES),
    ("POST", "/api/calls/{id}/resident", PHONES),
    ("POST", "/api/inquiries", PHONES),
    ("GET", "/api/queues", PHONES),
    ("POST", "/api/residents/{id}/phones", PHONES),
    ("GET", "/api/agent/state", PHONES),
    ("POST", "/api/agent/state", PHONES),
    ("GET", "/api/residents", LEDGER),
    ("GET", "/api/residents/{id}", LEDGER),
    ("POST", "/api/pbx/webhook/{token}", NOBODY),
    ("GET", "/api/slots", BOOKINGS),
    ("GET", "/api/bookings", BOOKINGS),
    ("POST", "/api/bookings/{id}/move", BOOKINGS),
    ("GET", "/ws/slots", BOOKINGS),
    ("POST", "/api/bookings", BOOKINGS),
    ("GET", "/api/bookings/{id}/alternatives", BOOKINGS),
    ("POST", "/api/bookings/{id}/cancel", BOOKINGS),
    ("POST", "/api/bookings/{id}/move-together", BOOKINGS),
    ("GET", "/api/venues", BOOKINGS),
    ("GET", "/api/runs", BOOKINGS),
    ("POST", "/api/venues/{id}/slots", PLANNING),
    ("PATCH", "/api/slots/{id}", PLANNING),
    ("POST", "/api/assign", PLANNING),
    ("POST", "/api/reshuffle", PLANNING),
    ("POST", "/api/transport/plan", PLANNING),
    ("GET", "/api/runs/{id}/manifest", PLANNING),
    ("GET", "/api/runs/{id}/manifest.csv", PLANNING),
    ("GET", "/api/notices.csv", PLANNING),
    ("GET", "/supervisor", NOBODY),
    ("GET", "/reports", NOBODY),
    ("GET", "/api/reports", SUPERVISORS),
    ("GET", "/api/reports.csv", SUPERVISORS),
    ("GET", "/api/callbacks", PHONES),
    ("POST", "/api/callbacks/{id}/take", PHONES),
    ("POST", "/api/callbacks/{id}/done", PHONES),
    ("POST", "/api/dial", PHONES),
    ("GET", "/ws/supervisor", SUPERVISORS),
    ("POST", "/api/vaccinations", VENUE),
    ("POST", "/api/vaccinations/{id}/correction", VENUE),
    ("GET", "/api/vaccinations", VENUE_WATCH),
    ("GET", "/api/venue/reception", VENUE),
    ("POST", "/api/venue/checkins", VENUE),
    ("POST", "/api/venue/questionnaires", VENUE),
    ("GET", "/api/venue/vials", VENUE_WATCH),
    ("POST", "/api/venue/vials", VENUE),
    ("POST", "/api/venue/vials/{id}/open", VENUE),
    ("POST", "/api/venue/vials/{id}/discard", VENUE),
    ("GET", "/api/venue/progress", VENUE_WATCH),
    ("GET", "/ws/venues", VENUE_WATCH),
    ("POST", "/api/standby", BOOKINGS),
    ("GET", "/api/venue/standby", VENUE_WATCH),
    ("POST", "/api/venue/standby/{id}/take", VENUE),
    ("POST", "/api/venue/standby/{id}/remove", VENUE),
    ("GET", "/api/exports/vrs", RECORDS),
    ("POST", "/api/exports/vrs", RECORDS),
    ("GET", "/api/exports/vrs/{id}", RECORDS),
    ("GET", "/api/exports/ledger", RECORDS),
    ("GET", "/api/exports/vsys", RECORDS),
];

/// A concrete path for a templated one.
fn concrete(path: &str) -> String {
    path.replace("{id}", "1")
        .replace("{file}", "app.js")
        .replace("{token}", "not-the-token")
}

#[tokio::test]
async fn every_route_admits_exactly_its_roles() {
    for engine in engines() {
        let srv = TestServer::start(engine, None).await;
        let roles = [
            ("agent", Role::Agent),
            ("supervisor", Role::Supervisor),
            ("planner", Role::Planner),
            ("venue", Role::Venue),
            ("admin", Role::Admin),
        ];
        let mut clients = vec![("nobody", None)];
        for (name, role) in roles {
            let ext = (role == Role::Agent).then_some("201");
            srv.add_user(name, role, ext).await;
            clients.push((name, Some(srv.login(name).await)));
        }

        // The routes the server says it has, and /ws.
        let http = reqwest::Client::new();
        let doc: Value = http
            .get(format!("{}/api/openapi.json", srv.url))
            .send()
            .await
            .expect("openapi")
            .json()
            .await
            .expect("openapi JSON");
        let mut routes: Vec<(String, String)> = Vec::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for method in ops.as_object().expect("operations").keys() {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
        if !routes.iter().any(|(_, p)| p == "/ws") {
            routes.push(("GET".into(), "/ws".into()));
        }
        for (method, path) in &routes {
            assert!(
                TABLE.iter().any(|(m, p, _)| m == method && p == path),
                "{method} {path} is served but not in the roles table (README and tests/it/roles.rs)"
            );
        }
        for (method, path, _) in TABLE {
            assert!(
                routes.iter().any(|(m, p)| m == method && p == path),
                "{method} {path} is in the roles table but missing from /api/openapi.json"
            );
        }
        // Logging out ends the session the later requests use: ask it last.
        routes.sort_by_key(|(m, p)| (m == "DELETE" && p == "/api/session", p.clone()));

        let mut checked = 0;
        for (method, path) in &routes {
            let admitted = TABLE
                .iter()
                .find(|(m, p, _)| m == method && p == path)
                .map(|(_, _, who)| *who)
                .unwrap_or_default();
            for (who, client) in &clients {
                let url = format!("{}{}", srv.url, concrete(path));
                let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
                let mut req = http.request(m, &url);
                if let Some(c) = client {
                    req = req.header("cookie", &c.cookie);
                }
                if method != "GET" && method != "DELETE" {
                    req = req.json(&serde_json::json!({}));
                }
                let status = req.send().await.expect("request").status().as_u16();
                let expected = if admitted.contains(who) {
                    "admitted"
                } else if *who == "nobody" {
                    "401"
                } else {
                    "403"
                };
                let ok = match expected {
                    "admitted" => status != 401 && status != 403 && status < 500,
                    "401" => status == 401,
                    _ => status == 403,
                };
                assert!(
                    ok,
                    "{engine}: {method} {path} as {who} answered {status}, expected {expected}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, routes.len() * clients.len());
        assert!(routes.len() >= TABLE.len());
        srv.stop().await;
    }
}
