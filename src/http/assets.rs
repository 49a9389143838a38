//! The browser side (`web/`), embedded at build time by `build.rs`: `/` is `index.html`,
//! everything else is under `/assets/`, subfolders included (`/assets/js/app.js` is
//! `web/js/app.js`), so every screen's modules and styles sit in their own folders.

use super::AppState;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { serve("index.html") }))
        .route("/supervisor", get(|| async { serve("supervisor.html") }))
        .route("/reports", get(|| async { serve("reports.html") }))
        .route(
            "/assets/{*path}",
            get(|Path(path): Path<String>| async move { serve(&path) }),
        )
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// Why a requested asset path is refused before it is looked up.
#[derive(Debug, PartialEq)]
enum Refused {
    /// `..`, `.`, an empty segment, a backslash or a NUL: never a name build.rs produces.
    Malformed,
    NotFound,
}

/// The embedded file at `path` (relative to `web/`, `/`-separated). The table holds only what
/// build.rs found under web/, so nothing outside it can be reached; odd paths are still refused
/// outright rather than looked up, so a traversal attempt reads as one in the logs.
fn lookup(path: &str) -> Result<(&'static str, &'static [u8]), Refused> {
    let malformed = path.is_empty()
        || path.contains(['\\', '\0'])
        || path
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if malformed {
        return Err(Refused::Malformed);
    }
    ASSETS
        .iter()
        .find(|(n, _)| *n == path)
        .map(|(n, body)| (*n, *body))
        .ok_or(Refused::NotFound)
}

fn serve(path: &str) -> Response {
    match lookup(path) {
        Ok((name, body)) => (
            [
                (header::CONTENT_TYPE, content_type(name)),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        Err(Refused::Malformed) => {
            tracing::info!(path, "refused an asset path");
            (StatusCode::BAD_REQUEST, "bad asset path").into_response()
        }
        Err(Refused::NotFound) => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_in_subfolders_are_embedded_and_found() {
        let (name, body) = lookup("js/app.js").expect("web/js/app.js is embedded");
        assert_eq!(name, "js/app.js");
        assert!(!body.is_empty());
        assert!(lookup("index.html").is_ok());
        assert_eq!(content_type("js/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("css/base.css"), "text/css; charset=utf-8");
    }

    #[test]
    fn unknown_and_traversing_paths_are_refused() {
        assert_eq!(lookup("js/nope.js"), Err(Refused::NotFound));
        assert_eq!(lookup("app.js"), Err(Refused::NotFound), "moved to js/");
        for bad in [
            "../Cargo.toml",
            "js/../index.html",
            "./index.html",
            "js//app.js",
            "js\\app.js",
            "",
        ] {
            assert_eq!(lookup(bad), Err(Refused::Malformed), "{bad:?}");
        }
        assert_eq!(serve("js/../index.html").status(), StatusCode::BAD_REQUEST);
        assert_eq!(serve("js/nope.js").status(), StatusCode::NOT_FOUND);
        assert_eq!(serve("js/app.js").status(), StatusCode::OK);
    }
}
