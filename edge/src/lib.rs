//! The edge: browsers' HTTP and WebSocket server. It authenticates each
//! connection, checks what it may touch, and translates JSON frames to NATS
//! subjects per conversation and back. It holds no state beyond its open
//! sockets: any edge can serve any client, and a client of a dead edge
//! reconnects to another and resumes.
//!
//! - [`server`]: binding, the axum router, graceful shutdown (entry point).
//! - [`http`]: the JSON API (visitor sign-up, agent login, health).
//! - [`boundary`]: which web pages may call the API and open WebSockets
//!   (origins, CORS).
//! - [`api`]: the admin API (queue, broadcasts, statistics).
//! - [`admission`]: per-address and per-identity limits on sign-ups,
//!   logins and connections.
//! - [`auth`]: signed, expiring tokens.
//! - [`access`]: whether a connection's access still holds (expiry,
//!   logout, disabled agents).
//! - [`session`]: one client connection, from `hello` to close, whatever
//!   its transport.
//! - [`transport`]: WebSocket, and Server-Sent Events with POSTs routed
//!   over NATS to the edge holding the stream (any edge takes a POST).
//! - [`handlers`]: what each client frame does on the backbone.
//! - [`outbox`]: the per-connection writer — ordering, dedupe, gap repair.
//! - [`missed`]: messages left while nobody was online, and their pick-up.
//! - [`hub`]: one NATS subscription per conversation per edge, fanned out
//!   to the local connections.
//! - [`presence`]: agent presence entries and their heartbeats.
//! - [`directory`]: agents (status, load), teams, bots and the missed
//!   list, kept from the buckets' watches.
//! - [`teams`]: the teams a conversation may be started for.
//! - [`limits`]: per-connection rate limiting and input checks.
//! - `metrics`: what the edge counts, in its own types
//!   (`switchboard_metrics::edge` holds the counters).
//! - [`web`]: the demo site and agent console pages.

pub mod access;
pub mod admission;
pub mod api;
pub mod auth;
pub mod boundary;
pub mod directory;
pub mod handlers;
pub mod http;
pub mod hub;
pub mod limits;
mod metrics;
pub mod missed;
pub mod outbox;
pub mod presence;
pub mod server;
pub mod session;
pub mod teams;
pub mod transport;
pub mod web;

pub use server::{Edge, EdgeConfig, EdgeError};
