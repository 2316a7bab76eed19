//! The demo site (with the visitor widget) and the agent console: static
//! files compiled into the binary, so an edge needs nothing beside it.
//!
//! Pages are served with a strict Content-Security-Policy (scripts and
//! styles from this origin only, no inline code, never framed) and
//! `Referrer-Policy`; scripts and stylesheets may be loaded by any site
//! (the widget is embedded on customers' pages), never sniffed.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The policy of every page: nothing inline, nothing from elsewhere, and
/// no framing (the console and admin pages must never be framed; the demo
/// page has no reason to be).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn page(body: &'static str) -> impl IntoResponse + Clone {
    (
        [
            (header::CONTENT_TYPE, HTML),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse + Clone {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Public files: any site may load the widget (as a module too,
            // which needs CORS).
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
}

/// The visitors' pages: the demo site and the widget.
pub fn visitor_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page(include_str!("../web/index.html"))))
        .route(
            "/demo.css",
            get(asset(CSS, include_str!("../web/demo.css"))),
        )
        .route(
            "/widget.js",
            get(asset(JS, include_str!("../web/widget.js"))),
        )
        .route("/demo.js", get(asset(JS, include_str!("../web/demo.js"))))
        .route(
            "/widget.css",
            get(asset(CSS, include_str!("../web/widget.css"))),
        )
}

/// What the widget, the console and the admin pages share: the client
/// core (the transports, the timeline, DOM helpers, reconnection,
/// receipts, the outbox and resuming) and the languages.
pub fn shared_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/transport.js",
            get(asset(JS, include_str!("../web/transport.js"))),
        )
        .route("/i18n.js", get(asset(JS, include_str!("../web/i18n.js"))))
        .route(
            "/core/timeline.js",
            get(asset(JS, include_str!("../web/core/timeline.js"))),
        )
        .route(
            "/core/dom.js",
            get(asset(JS, include_str!("../web/core/dom.js"))),
        )
        .route(
            "/core/connection.js",
            get(asset(JS, include_str!("../web/core/connection.js"))),
        )
        .route(
            "/core/outbox.js",
            get(asset(JS, include_str!("../web/core/outbox.js"))),
        )
        .route(
            "/core/resume.js",
            get(asset(JS, include_str!("../web/core/resume.js"))),
        )
}

/// The agents' pages: the console and the admin pages.
pub fn agent_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(page(include_str!("../web/console.html"))))
        .route(
            "/console.js",
            get(asset(JS, include_str!("../web/console.js"))),
        )
        .route(
            "/console-strings.js",
            get(asset(JS, include_str!("../web/console-strings.js"))),
        )
        .route(
            "/console.css",
            get(asset(CSS, include_str!("../web/console.css"))),
        )
        // The admin pages: admins log in like agents.
        .route("/admin", get(page(include_str!("../web/admin.html"))))
        .route("/admin.js", get(asset(JS, include_str!("../web/admin.js"))))
        .route(
            "/admin-strings.js",
            get(asset(JS, include_str!("../web/admin-strings.js"))),
        )
        .route(
            "/admin.css",
            get(asset(CSS, include_str!("../web/admin.css"))),
        )
}
