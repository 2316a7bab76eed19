//! The admin HTTP API: what `switchboard queue …` and `switchboard
//! broadcast` do, and the statistics. Every call takes an admin's token in
//! `Authorization: Bearer …`: none or an invalid one is `401`, anyone
//! else's (an agent's, a visitor's) is `403`.
//!
//! - [`caller`]: the admin check, an extractor that runs before the body
//!   is read.
//! - [`admin`]: the queue and broadcasts.
//! - [`stats`]: `GET /api/v1/stats`, answered by the archivers over NATS.
//! - [`tokens`]: refreshing a token and an agent's logout (any caller
//!   with a token of their own).

pub mod admin;
pub mod caller;
pub mod stats;
pub mod tokens;

use std::sync::Arc;

use axum::Router;

use crate::server::EdgeState;

pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .merge(admin::routes())
        .merge(stats::routes())
        .merge(tokens::routes())
}
