//! Prometheus metrics of every component, in the text format (0.0.4) that
//! Prometheus scrapes from `GET /metrics`.
//!
//! One registry per process: `switchboard up` runs an edge, a router and
//! an archiver in one process and shows all their metrics on one page.
//! Each component's metrics are registered the first time they are used
//! (each component's entry point calls its `…::init()`), so a process shows
//! only what it runs, and shows it from the start, at zero.
//!
//! Counting costs one atomic increment: every label set is built once, at
//! registration, and the hot path picks it by an exhaustive `match` on an
//! enum, never by formatting or hashing a string. Latencies are histograms
//! with fixed buckets (never summaries), so the edges of a deployment can
//! be summed.
//!
//! - [`edge`]: connections, frames in and out, errors, closes, resumes.
//! - [`bus`]: JetStream publish latency and failures, KV compare-and-set
//!   conflicts (used by every component).
//! - [`router`]: queue length per team, assignments, requeues.
//! - [`archiver`]: lag, batches, records.
//! - [`http`]: the `/metrics` handler and the `metrics.listen` server
//!   (`/metrics` and `/healthz`).

pub mod archiver;
pub mod bus;
pub mod edge;
pub mod http;
pub mod router;

use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric's name starts with this (and `_`).
pub const PREFIX: &str = "switchboard";

/// Buckets of the request latencies, in seconds: 0.5 ms (a NATS round trip
/// on a quiet loopback) to 10 s (past `nats.request_timeout`).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One label: its name and its value, both fixed at registration.
pub type Label = [(&'static str, &'static str); 1];

static REGISTRY: LazyLock<Mutex<Registry>> =
    LazyLock::new(|| Mutex::new(Registry::with_prefix(PREFIX)));

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The process's metrics in the Prometheus text format.
pub fn render() -> String {
    process::init();
    let mut text = String::new();
    // Writing into a `String` cannot fail.
    if let Err(err) = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry()) {
        tracing::error!(error = %err, "encode metrics");
    }
    text
}

fn counter(name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    registry().register(name, help, counter.clone());
    counter
}

fn gauge(name: &str, help: &str) -> Gauge {
    let gauge = Gauge::default();
    registry().register(name, help, gauge.clone());
    gauge
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let histogram = Histogram::new(buckets.iter().copied());
    registry().register(name, help, histogram.clone());
    histogram
}

/// A family with one label, and one handle per value, in `values`' order.
fn counters<const N: usize>(
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    let family = Family::<Label, Counter>::default();
    registry().register(name, help, family.clone());
    values.map(|value| family.get_or_create_owned(&[(label, value)]))
}

/// [`counters`] for gauges.
fn gauges<const N: usize>(
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [Gauge; N] {
    let family = Family::<Label, Gauge>::default();
    registry().register(name, help, family.clone());
    values.map(|value| family.get_or_create_owned(&[(label, value)]))
}

/// Seconds since `started`, for a histogram.
pub fn seconds_since(started: std::time::Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

/// What every process shows: its version.
pub mod process {
    use std::sync::LazyLock;

    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;

    static BUILD: LazyLock<()> = LazyLock::new(|| {
        let family = Family::<[(&'static str, &'static str); 1], Gauge>::default();
        super::registry().register(
            "build_info",
            "Always 1; the label names the version of Switchboard running",
            family.clone(),
        );
        family
            .get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
    });

    /// Registers the build information (once).
    pub fn init() {
        LazyLock::force(&BUILD);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_every_prebuilt_label() {
        let [a, b] = counters("test_things", "Things", "kind", ["a", "b"]);
        a.inc();
        b.inc_by(2);
        let text = render();
        assert!(
            text.contains("switchboard_test_things_total{kind=\"a\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("switchboard_test_things_total{kind=\"b\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("switchboard_build_info{version=\""), "{text}");
    }

    #[test]
    fn histograms_render_cumulative_buckets() {
        let h = histogram("test_latency_seconds", "Latency", &LATENCY_BUCKETS);
        h.observe(0.003);
        let text = render();
        assert!(
            text.contains("switchboard_test_latency_seconds_bucket{le=\"0.0025\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("switchboard_test_latency_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("switchboard_test_latency_seconds_bucket{le=\"+Inf\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("switchboard_test_latency_seconds_count 1\n"),
            "{text}"
        );
    }
}
