//! Switchboard's load generator: benchmark scenarios that speak only the
//! public contract (the JSON API and the `/ws` WebSocket of
//! `docs/protocol.md`), plus read-only looks at NATS and MongoDB to check
//! what was stored.
//!
//! - [`net`]: sockets bound to spread loopback source addresses
//!   (127.100.0.0/16 and up, so that one machine can open far more than 64k
//!   connections to one edge port), the WebSocket client, a keep-alive HTTP
//!   client for sign-up and login, and the frame parser.
//! - [`stats`]: latency histograms (HdrHistogram, microseconds) and their
//!   summaries.
//! - [`report`]: the human table and the JSON file of each scenario.
//! - [`setup`]: agents (accounts through `switchboard_bus::accounts`),
//!   visitors with an open conversation, the edge's memory.
//! - [`cpu`]: the CPU time of each process during a measured window.
//! - the scenarios: [`idle`], [`chat`], [`assign`], [`archive`], [`storm`],
//!   and [`reports`] (statistics over a seeded archive).
//! - the baselines, what the machine allows without Switchboard:
//!   [`raw_nats`] (the chat loop straight over NATS), [`ws_relay`] (the
//!   chat loop through [`relay`], a minimal WebSocket relay),
//!   [`insert_many`] (the MongoDB-wire server's own rate for the archive's
//!   documents), and [`compare`] (chat as a fraction of them).
//!
//! Connections are multiplexed: one tokio task drives a shard of many
//! sockets (idle holders, chat visitors) or one agent socket carrying many
//! conversations. Latencies are measured inside one process with one clock
//! ([`now_ns`]): a message carries the time it was (or, in open loop, was
//! meant to be) sent in its `client_id` and `text`.

pub mod archive;
pub mod assign;
pub mod chat;
pub mod compare;
pub mod cpu;
pub mod idle;
pub mod insert_many;
pub mod net;
pub mod raw_nats;
pub mod relay;
pub mod report;
pub mod reports;
pub mod setup;
pub mod stats;
pub mod storm;
pub mod ws_relay;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The process's benchmark clock: nanoseconds since its first use.
pub fn now_ns() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The [`Instant`] of a benchmark clock reading.
pub fn instant_at(ns: u64) -> Instant {
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch + Duration::from_nanos(ns)
}

/// Seconds as a [`Duration`] (negative and NaN are zero).
pub fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::ZERO)
}
