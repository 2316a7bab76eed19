//! Analytics over the archive, with no I/O: what the archiver folds into
//! each conversation's summary, and the report computed from those
//! summaries. Never on the hot path: the archiver folds records after
//! storing them, and reports read the archive. Every timer and count is
//! defined in docs/analytics.md.
//!
//! - [`timeline`]: [`Facts`], one conversation's timers and outcomes,
//!   folded record by record from its log (first-response intervals, wait,
//!   resolution, missed/abandoned/handed-off/bot-resolved, ratings).
//! - [`figures`]: exact median, 90th percentile and mean.
//! - [`query`]: a report's window, filters and time zone, parsed from what
//!   an admin typed.
//! - [`hours`]: the local hour of an instant in a time zone.
//! - [`report`]: the [`StatsReport`](switchboard_protocol::stats::StatsReport)
//!   of a set of conversations.
//! - [`render`]: the report as a table or CSV.

pub mod figures;
pub mod hours;
pub mod query;
pub mod render;
pub mod report;
pub mod timeline;

pub use query::{Query, QueryError};
pub use report::{report, Directory};
pub use timeline::{fold, Facts, FACTS_VERSION};
