//! The archiver's metrics: how far behind the stream the archive is, how
//! long batches take to store, how many records were stored.
//!
//! Archivers share one durable consumer, so each shows the consumer's lag:
//! take the `max` (or the latest) across archivers, not the `sum`.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// How long a batch takes to store, in seconds: 5 ms to 2 minutes (a batch
/// retried while MongoDB is down).
const BATCH_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

/// The archiver's metrics.
pub struct ArchiverMetrics {
    lag: Gauge,
    batch: Histogram,
    records: Counter,
    failures: Counter,
    held: Gauge,
}

static ARCHIVER: LazyLock<ArchiverMetrics> = LazyLock::new(|| {
    crate::process::init();
    ArchiverMetrics {
        lag: crate::gauge(
            "archiver_lag_records",
            "Records in the stream not yet delivered to the archivers' consumer, after the last batch (shared by all archivers: take the max)",
        ),
        batch: crate::histogram(
            "archiver_batch_seconds",
            "Time to store one batch in MongoDB, retries included, until it is acknowledged",
            &BATCH_BUCKETS,
        ),
        records: crate::counter(
            "archiver_records",
            "Records stored in MongoDB and acknowledged by this archiver",
        ),
        failures: crate::counter(
            "archiver_write_failures",
            "Failed MongoDB writes of a batch (each is retried)",
        ),
        held: crate::gauge(
            "archiver_summaries_held",
            "Conversations whose summaries this archiver holds back while behind the stream (written within archiver.summary_delay)",
        ),
    }
});

/// The archiver's metrics (registered on first use).
pub fn archiver() -> &'static ArchiverMetrics {
    &ARCHIVER
}

/// Registers the archiver's metrics, so they show (at zero) from the start.
pub fn init() {
    LazyLock::force(&ARCHIVER);
}

impl ArchiverMetrics {
    /// A batch of `records` stored, begun at `started`; `pending` records
    /// were still waiting for the consumer after it.
    pub fn stored(&self, started: Instant, records: usize, pending: u64) {
        self.batch.observe(crate::seconds_since(started));
        self.records
            .inc_by(u64::try_from(records).unwrap_or(u64::MAX));
        self.lag.set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// `conversations` have their summaries held back.
    pub fn held(&self, conversations: usize) {
        self.held
            .set(i64::try_from(conversations).unwrap_or(i64::MAX));
    }

    /// A write of a batch failed (it is retried).
    pub fn write_failed(&self) {
        self.failures.inc();
    }
}
