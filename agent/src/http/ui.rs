//! The web UI (`-ui`, on in `-dev`): a single-page app of plain HTML, CSS and
//! ES modules under `agent/ui/`, embedded in the binary and served at `/ui/`.
//! It reads the same HTTP API as any client, live by blocking queries.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::routes::{Endpoint as E, Routes};

/// One embedded file.
struct Asset {
    /// Path under `/ui/`.
    path: &'static str,
    body: &'static [u8],
    mime: &'static str,
}

macro_rules! asset {
    ($path:literal, $mime:expr) => {
        Asset {
            path: $path,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $path)),
            mime: $mime,
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file under `agent/ui/` (a unit test checks the list is complete).
static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/dcmenu.js", JS),
    asset!("js/views/services.js", JS),
    asset!("js/views/nodes.js", JS),
    asset!("js/views/kv.js", JS),
    asset!("js/views/settings.js", JS),
    asset!("js/views/acls.js", JS),
];

const INDEX: usize = 0;

/// Everything is loaded from this agent: no CDN, no inline script.
const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const DISABLED: &str = "tribune agent: the web UI is disabled. \
                        Start the agent with -ui (or set \"ui\": true in its config).\n";

/// `/`, `/ui` and `/ui/*`; when the UI is off they say how to turn it on:
/// `/` with 200, as Consul's index (probes of `/` keep working), the UI's
/// own paths with 404.
pub fn routes(enabled: bool) -> Routes {
    if !enabled {
        let off = || E::get(|| async { (StatusCode::NOT_FOUND, DISABLED) });
        return Routes::new()
            .route("/", E::get(|| async { DISABLED }))
            .route("/ui", off())
            .route("/ui/", off())
            .route("/ui/{*path}", off());
    }
    Routes::new()
        // 301, as Consul answers `/` (and Go's mux answers `/ui`).
        .route("/", E::get(|| async { moved_to_ui() }))
        .route("/ui", E::get(|| async { moved_to_ui() }))
        .route(
            "/ui/",
            E::get(|h: HeaderMap| async move { serve(INDEX, &h) }),
        )
        .route("/ui/{*path}", E::get(asset))
}

fn moved_to_ui() -> Response {
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, HeaderValue::from_static("/ui/"))],
    )
        .into_response()
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match lookup(&path) {
        Some(i) => serve(i, &headers),
        None => (StatusCode::NOT_FOUND, "no such UI asset\n").into_response(),
    }
}

/// The asset at `path`. A missing file where assets live (under `js/`, or
/// a top-level name with an extension) is None (404); any other path is a
/// route of the app and gets index.html, Consul's deep links included
/// (`dc1/services/redis.db`, `dc1/kv/app/config.json/edit`).
fn lookup(path: &str) -> Option<usize> {
    if let Some(i) = ASSETS.iter().position(|a| a.path == path) {
        return Some(i);
    }
    let asset_space = path.starts_with("js/") || (!path.contains('/') && path.contains('.'));
    (!asset_space).then_some(INDEX)
}

/// Strong validators, computed once: asset names carry no content hash, so
/// browsers revalidate (`no-cache`) and get a 304 while nothing changed.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{:016x}\"", fnv1a(a.body)))
            .collect()
    })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn serve(i: usize, req: &HeaderMap) -> Response {
    let (Some(a), Some(etag)) = (ASSETS.get(i), etags().get(i)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(a.mime))],
            a.body,
        )
            .into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file added under agent/ui/ but not to ASSETS would 404 in the browser.
    #[test]
    fn every_ui_file_is_embedded() {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().to_string_lossy().into());
                }
            }
        }
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        let mut files = vec![];
        walk(&base, &base, &mut files);
        files.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        embedded.sort();
        assert_eq!(files, embedded);
    }

    #[test]
    fn app_routes_get_index_missing_files_404() {
        assert_eq!(lookup("style.css"), Some(1));
        assert_eq!(
            lookup("js/views/kv.js"),
            ASSETS.iter().position(|a| a.path == "js/views/kv.js")
        );
        assert_eq!(lookup("services/web"), Some(INDEX));
        assert_eq!(lookup("dc1/kv/app/"), Some(INDEX));
        // another datacenter's UI: /ui/<dc>/#/...
        assert_eq!(lookup("dc2/"), Some(INDEX));
        assert_eq!(lookup("js/missing.js"), None);
        assert_eq!(lookup("favicon.ico"), None);
        // Consul's deep links, dotted names included
        assert_eq!(lookup("dc1/services/redis.db"), Some(INDEX));
        assert_eq!(lookup("dc1/nodes/host.example.com"), Some(INDEX));
        assert_eq!(lookup("dc1/kv/app/config.json/edit"), Some(INDEX));
        assert_eq!(lookup("dc1/kv/app/config.json"), Some(INDEX));
    }

    #[test]
    fn conditional_get_answers_304() {
        let first = serve(1, &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(
            first.headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
        assert_eq!(first.headers()[header::CACHE_CONTROL], "no-cache");
        let etag = first.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(serve(1, &h).status(), StatusCode::NOT_MODIFIED);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(serve(1, &h).status(), StatusCode::OK);
    }
}
