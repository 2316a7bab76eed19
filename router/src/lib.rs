//! The router: assigns waiting conversations to agents.
//!
//! All routing state lives in JetStream KV (`conversations`, `presence`,
//! `load`, `agents`); a router keeps only a mirror of it, rebuilt from the
//! buckets' watches, so any number of routers can run and any can die.
//! Every decision is a compare-and-set on a key's revision.
//!
//! - [`mirror`]: the in-memory view of the buckets, fed by their watches.
//! - [`policy`]: pure decisions — queue order, positions, agent choice.
//! - [`assign`]: the two-step, CAS-guarded assignment and its rollback.
//! - [`bots`]: bot-first teams — giving new conversations to a team's
//!   bot, and handing them to the humans when the bot is absent or silent.
//! - [`bot_api`]: the bot API (`bot.api.<bot_id>.*`), the only way a bot
//!   acts: post, hand off, announce itself, list what it holds.
//! - [`idle`]: closing conversations nobody writes in any more
//!   (`router.idle_close`).
//! - [`teams`]: teams' settings edited by admins (the `teams` bucket)
//!   over the configuration's.
//! - [`lease`]: partitions of the routing work (teams' queues, the
//!   singleton duties) leased to one router at a time (`router.partitions`).
//! - [`reconcile`]: repairs half-done work (claims without assignment,
//!   slots of closed conversations).
//! - [`worker`]: the entry point and its event loop.

pub mod assign;
pub mod bot_api;
pub mod bots;
pub mod idle;
pub mod lease;
pub mod mirror;
pub mod policy;
pub mod reconcile;
pub mod teams;
pub mod worker;

pub use worker::{run, HeldByBots, RouterConfig, RouterError};
