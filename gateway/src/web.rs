//! The web page of DESIGN §6a, served from files embedded in the binary (`gateway/web/`).
//!
//! Every asset lives under `/assets/<digest>/…`, where the digest covers every embedded
//! file: a new binary gets new asset URLs, so browsers may cache them forever, and the
//! ES modules' relative imports (`./log.js`) stay under the same digest. The HTML shell,
//! the one unhashed document, carries that prefix (templated once at start-up) and is
//! never cached. The routes `/`, `/jobs/{id}`, `/audit` and `/login` all get the shell;
//! the page's modules pick the view from the URL. The CSP the page is written for (no
//! inline script or style) comes with every response from `auth::guard`. This module
//! never touches jobs or the store.

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;

/// The page's HTML, CSS, ES modules and images, with their licences.
#[derive(RustEmbed)]
#[folder = "web/"]
struct Files;

/// A year: hashed asset URLs never change content.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The page's routes, for any router state (merged into the API's router).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(shell))
        .route("/login", get(shell))
        .route("/jobs/{id}", get(shell))
        .route("/audit", get(shell))
        .route("/assets/{digest}/{*path}", get(asset))
        .route("/favicon.ico", get(favicon))
}

/// The shell and the asset prefix, computed once from the embedded files.
struct Site {
    /// `/assets/<digest>`: where this binary's assets live.
    prefix: String,
    /// `index.html` with the prefix filled in.
    shell: String,
}

fn site() -> &'static Site {
    static SITE: OnceLock<Site> = OnceLock::new();
    SITE.get_or_init(|| {
        let prefix = format!("/assets/{}", digest());
        let shell = Files::get("index.html")
            .map(|f| String::from_utf8_lossy(&f.data).replace("{{assets}}", &prefix))
            .unwrap_or_else(|| "shipwatch: the web page was not built into this binary\n".into());
        Site { prefix, shell }
    })
}

/// A short digest of every embedded file's name and content (FNV-1a over their SHA-256s:
/// collisions only cost a stale cache entry, and the SHA-256s are already computed).
fn digest() -> String {
    let mut names: Vec<_> = Files::iter().collect();
    names.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for name in names {
        if let Some(file) = Files::get(&name) {
            mix(name.as_bytes());
            mix(&file.metadata.sha256_hash());
        }
    }
    format!("{h:016x}")
}

/// The HTML shell for every page route.
async fn shell() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        site().shell.clone(),
    )
        .into_response()
}

/// One embedded file. A digest other than this binary's (a page loaded before an upgrade)
/// still gets today's file, but only briefly cached.
async fn asset(Path((digest, path)): Path<(String, String)>) -> Response {
    let Some(file) = Files::get(&path).filter(|_| path != "index.html") else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    let current = site().prefix.rsplit('/').next() == Some(digest.as_str());
    let cache = if current { IMMUTABLE } else { "no-cache" };
    (
        [
            (header::CONTENT_TYPE, mime(&path)),
            (header::CACHE_CONTROL, cache),
        ],
        Body::from(file.data.into_owned()),
    )
        .into_response()
}

/// Browsers ask for `/favicon.ico` whatever the page says; the icon is an SVG.
async fn favicon() -> Response {
    match Files::get("icon.svg") {
        Some(file) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            Body::from(file.data.into_owned()),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The content type of the kinds of file `gateway/web/` holds.
fn mime(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_links_its_assets_under_the_digest() {
        let site = site();
        assert!(site.prefix.starts_with("/assets/") && site.prefix.len() == 8 + 16);
        assert!(!site.shell.contains("{{assets}}"));
        assert!(site.shell.contains(&format!("{}/app.js", site.prefix)));
    }

    #[test]
    fn every_embedded_file_has_a_known_type() {
        for name in Files::iter() {
            assert_ne!(
                mime(&name),
                "application/octet-stream",
                "{name} would be served without a type"
            );
        }
    }
}
