//! The archiver: a durable JetStream consumer that writes every record of
//! every conversation into MongoDB, and serves the history the stream no
//! longer holds. The only component that talks to MongoDB.
//!
//! - [`documents`]: the archive's own document shapes (`messages`,
//!   `conversations`) and their conversion from and to records.
//! - [`facts`]: the analytics fold kept in each conversation summary.
//! - [`search`]: past conversations by visitor, agent or words, the
//!   `archive.search` service.
//! - [`stats`]: reports over the summaries, and the `archive.stats` service.
//! - [`store`]: MongoDB writes — idempotent by message id, conversation
//!   summaries applied once per record — and history reads.
//! - [`held`]: summaries held back while the archiver is behind the
//!   stream, several batches written together.
//! - [`behind`]: the durable notes of summaries held, and the sweep that
//!   catches up those an archiver left behind.
//! - [`retention`]: finished conversations leaving KV once archived and
//!   past the reopen window.
//! - [`lookup`]: the `archive.conversation` service (who may read a
//!   conversation KV no longer holds).
//! - [`service`]: the request/reply loop of the `archive.*` services.
//! - [`worker`]: the entry point, the consume-write-ack loop and the
//!   `archive.history` service.

pub mod behind;
pub mod documents;
pub mod facts;
pub mod held;
pub mod lookup;
pub mod retention;
pub mod search;
pub mod service;
pub mod stats;
pub mod store;
pub mod worker;

pub use worker::{run, ArchiverConfig, ArchiverError};
