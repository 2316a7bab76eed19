//! The demo site (with the visitor widget) and the agent console: static
//! files compiled into the binary, so an edge needs nothing beside it.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse + Clone {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

/// Routes for the pages.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(asset(HTML, include_str!("../web/index.html"))))
        .route(
            "/widget.js",
            get(asset(JS, include_str!("../web/widget.js"))),
        )
        .route(
            "/widget.css",
            get(asset(CSS, include_str!("../web/widget.css"))),
        )
        .route(
            "/console",
            get(asset(HTML, include_str!("../web/console.html"))),
        )
        .route(
            "/console.js",
            get(asset(JS, include_str!("../web/console.js"))),
        )
        .route(
            "/console.css",
            get(asset(CSS, include_str!("../web/console.css"))),
        )
}
