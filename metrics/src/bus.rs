//! The backbone's metrics, shared by every component: how long JetStream
//! takes to acknowledge an append (the latency every `send` waits for), how
//! many appends failed, and how many KV compare-and-sets lost a race.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use switchboard_protocol::subjects::buckets;

/// Buckets counted by name; a bucket not listed counts as `other`.
const BUCKETS: [&str; 12] = [
    buckets::AGENTS,
    buckets::LOGINS,
    buckets::PRESENCE,
    buckets::LOAD,
    buckets::CONVERSATIONS,
    buckets::VISITORS,
    buckets::READS,
    buckets::MISSED,
    buckets::REVOKED,
    buckets::BOTS,
    buckets::BOT_PRESENCE,
    "other",
];

/// The backbone's metrics, pre-built for every label.
pub struct BusMetrics {
    publish_ack: Histogram,
    publish_failures: Counter,
    cas_conflicts: [Counter; BUCKETS.len()],
}

static BUS: LazyLock<BusMetrics> = LazyLock::new(|| {
    crate::process::init();
    BusMetrics {
        publish_ack: crate::histogram(
            "nats_publish_ack_seconds",
            "Time from a JetStream publish to its acknowledgement (records appended to conversations)",
            &crate::LATENCY_BUCKETS,
        ),
        publish_failures: crate::counter(
            "nats_publish_failures",
            "JetStream publish attempts to conversations that failed (no acknowledgement, or refused); each retry counts, so a leader election shows as a burst",
        ),
        cas_conflicts: crate::counters(
            "kv_cas_conflicts",
            "KV compare-and-sets that lost a race (someone wrote first), by bucket",
            "bucket",
            BUCKETS,
        ),
    }
});

/// The backbone's metrics (registered on first use).
pub fn bus() -> &'static BusMetrics {
    &BUS
}

/// Registers the backbone's metrics, so they show (at zero) from the start.
pub fn init() {
    LazyLock::force(&BUS);
}

impl BusMetrics {
    /// A publish started at `started` was acknowledged.
    pub fn acknowledged(&self, started: Instant) {
        self.publish_ack.observe(crate::seconds_since(started));
    }

    /// A publish attempt failed: no acknowledgement in time, or refused
    /// (not a lost race for the next `seq`). Appends retry with backoff, so
    /// one append may count several times.
    pub fn publish_failed(&self) {
        self.publish_failures.inc();
    }

    /// A compare-and-set on `bucket` lost its race.
    pub fn cas_conflict(&self, bucket: &str) {
        let i = BUCKETS
            .iter()
            .position(|b| *b == bucket)
            .unwrap_or(BUCKETS.len() - 1);
        self.cas_conflicts[i].inc();
    }
}
