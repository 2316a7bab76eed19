//! The admin HTTP API: what `switchboard queue …` and `switchboard
//! broadcast` do, and the statistics. Every call takes an admin's token in
//! `Authorization: Bearer …`: none or an invalid one is `401`, anyone
//! else's (an agent's, a visitor's) is `403`.
//!
//! - [`caller`]: who calls: the bearer token checked once, and the agent
//!   and admin extractors that run before the body is read.
//! - [`admin`]: the queue and broadcasts.
//! - [`stats`]: `GET /api/v1/stats`, answered by the archivers over NATS.
//! - [`tokens`]: refreshing a token and an agent's logout (any caller
//!   with a token of their own).
//! - [`directory`]: who is there (agents' status and load, teams, open
//!   conversations) for agents, and what the widget says before a chat.
//! - [`canned`]: canned responses (agents read, admins manage).
//! - [`manage`]: admins add and change agents, and edit teams.
//! - [`visitors`]: visitors' profiles (the pre-chat form, the page, the
//!   browser) and what agents see of a visitor.
//! - [`archive`]: past conversations for agents: search and transcripts.
//! - [`support`]: reading bodies and answering failures (every module's).

pub mod admin;
pub mod archive;
pub mod caller;
pub mod canned;
pub mod directory;
pub mod manage;
pub mod stats;
pub mod support;
pub mod tokens;
pub mod visitors;

use std::sync::Arc;

use axum::Router;

use crate::server::EdgeState;

pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .merge(admin::routes())
        .merge(stats::routes())
        .merge(tokens::routes())
        .merge(directory::routes())
        .merge(canned::routes())
        .merge(manage::routes())
        .merge(visitors::routes())
        .merge(archive::routes())
}
