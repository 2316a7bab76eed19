//! The wire of Switchboard, with no I/O: everything two processes (or a
//! process and a browser) must agree on lives here.
//!
//! - [`ids`]: validated identifier newtypes; nothing else may become part of
//!   a NATS subject or KV key.
//! - [`frames`]: the browser contract, JSON WebSocket frames.
//! - [`payloads`]: MessagePack payloads on NATS and values in KV buckets,
//!   encoded with named fields so bots in any language can decode them.
//! - [`bots`]: the bot API's requests and replies (`bot.api.<bot_id>.*`).
//! - [`subjects`]: every subject, stream and bucket name, and the parser back.
//! - [`stats`]: the statistics request and report (`archive.stats`).
//! - [`time`]: timestamps (unix milliseconds on NATS, RFC 3339 in frames).

pub mod bots;
pub mod frames;
pub mod ids;
pub mod payloads;
pub mod stats;
pub mod subjects;
pub mod time;

pub use ids::{AgentId, BotId, ClientId, ConversationId, IdError, MessageId, TeamId, VisitorId};
