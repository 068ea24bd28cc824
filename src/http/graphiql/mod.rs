//! The GraphiQL playground, served entirely by taskql: the page at `GET /graphql` (for
//! browsers) and its scripts and stylesheet under `/graphiql/`, all compiled into the binary.
//! No request leaves for a CDN, so the page works offline and under its own strict
//! `Content-Security-Policy` (no inline scripts, nothing from other origins).
//!
//! The header editor opens with an `Authorization: Bearer …` entry: a placeholder, or in
//! development mode a freshly minted token that works as is.

use axum::{
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::AppState;

/// The page's policy: everything from this origin, nothing inline but styles (GraphiQL's
/// editor positions elements with style attributes) and fonts embedded as data URLs.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; font-src 'self' data:; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    /// Versioned files never change under their name; the init script can.
    immutable: bool,
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "graphiql-3.8.3.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("vendor/graphiql-3.8.3.min.js"),
        immutable: true,
    },
    Asset {
        path: "graphiql-3.8.3.min.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("vendor/graphiql-3.8.3.min.css"),
        immutable: true,
    },
    Asset {
        path: "react-18.3.1.production.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("vendor/react-18.3.1.production.min.js"),
        immutable: true,
    },
    Asset {
        path: "react-dom-18.3.1.production.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("vendor/react-dom-18.3.1.production.min.js"),
        immutable: true,
    },
    Asset {
        path: "init.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("init.js"),
        immutable: false,
    },
];

const DEFAULT_QUERY: &str = "# Welcome to taskql.\n#\n# Put your token in the Authorization header below, then run:\n\nquery Me {\n  me {\n    id\n    email\n    name\n  }\n}\n";

/// `GET /graphiql/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.path == file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let cache = if asset.immutable {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, cache),
        ],
        asset.bytes,
    )
        .into_response()
}

/// The playground page. `raw_query` is the page URL's query string: a `query` parameter in
/// it (a shared link) opens in the editor.
pub fn page(state: &AppState, raw_query: Option<&str>) -> Response {
    let shared_query = raw_query
        .and_then(|raw| serde_urlencoded::from_str::<Vec<(String, String)>>(raw).ok())
        .and_then(|pairs| {
            pairs
                .into_iter()
                .find(|(key, _)| key == "query")
                .map(|(_, value)| value)
        });
    let dev_token = state.dev_token();
    let authorization = match &dev_token {
        Some(token) => format!("Bearer {token}"),
        None => "Bearer <paste a token from your Better Auth /api/auth/token endpoint>".to_owned(),
    };
    let headers = serde_json::to_string_pretty(&json!({ "Authorization": authorization }))
        .unwrap_or_default();
    let config = json!({
        "endpoint": "/graphql",
        "headers": headers,
        "headersAreLive": dev_token.is_some(),
        "query": shared_query,
        "defaultQuery": DEFAULT_QUERY,
    });
    // Inside <script>, "</" would end the element early; JSON allows escaping it.
    let config = config.to_string().replace("</", "<\\/");
    let html = include_str!("index.html")
        .replace("{{GRAPHIQL_CSS}}", "/graphiql/graphiql-3.8.3.min.css")
        .replace("{{REACT_JS}}", "/graphiql/react-18.3.1.production.min.js")
        .replace(
            "{{REACT_DOM_JS}}",
            "/graphiql/react-dom-18.3.1.production.min.js",
        )
        .replace("{{GRAPHIQL_JS}}", "/graphiql/graphiql-3.8.3.min.js")
        .replace("{{INIT_JS}}", "/graphiql/init.js")
        .replace("{{CONFIG}}", &config);
    let mut response = html.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    // The page may embed a development token: keep it out of caches and referrers.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
