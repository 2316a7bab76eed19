//! What the backbone counts (see `switchboard_metrics::bus`): the
//! latency of appends' acknowledgements and their failures, and lost
//! compare-and-set races.

use std::time::Instant;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;

/// Counts the outcome of one publish begun at `started`. A publish refused
/// because another writer took the next `seq` is retried, not counted.
pub(crate) fn published(started: Instant, ack: &Result<PublishAck, PublishError>) {
    let metrics = switchboard_metrics::bus::bus();
    match ack {
        Ok(_) => metrics.acknowledged(started),
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {}
        Err(_) => metrics.publish_failed(),
    }
}

/// Counts a compare-and-set on `bucket` that lost its race.
pub(crate) fn cas_conflict(bucket: &str) {
    switchboard_metrics::bus::bus().cas_conflict(bucket);
}
