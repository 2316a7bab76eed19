//! Latency histograms in microseconds and their summaries (milliseconds).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency kept exactly: one minute.
const MAX_MICROS: u64 = 60_000_000;

/// A latency histogram (microseconds, 3 significant digits).
#[derive(Debug, Clone)]
pub struct Hist(Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    pub fn new() -> Self {
        Self(Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"))
    }

    /// Records a latency given in nanoseconds.
    pub fn record_ns(&mut self, nanos: u64) {
        self.0
            .saturating_record((nanos / 1_000).clamp(1, MAX_MICROS));
    }

    pub fn merge(&mut self, other: &Hist) {
        // Same bounds on both sides, so this cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn summary(&self) -> Latency {
        let ms = |micros: u64| micros as f64 / 1_000.0;
        if self.0.is_empty() {
            return Latency::default();
        }
        Latency {
            count: self.0.len(),
            mean_ms: self.0.mean() / 1_000.0,
            p50_ms: ms(self.0.value_at_quantile(0.50)),
            p90_ms: ms(self.0.value_at_quantile(0.90)),
            p99_ms: ms(self.0.value_at_quantile(0.99)),
            p999_ms: ms(self.0.value_at_quantile(0.999)),
            max_ms: ms(self.0.max()),
        }
    }
}

/// Percentiles of one latency, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// `p50 / p99 / p99.9 / max ms` for tables.
    pub fn line(&self) -> String {
        if self.count == 0 {
            return "-".into();
        }
        format!(
            "{:.2} / {:.2} / {:.2} / {:.2} ms (n={})",
            self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }
}

/// Errors by kind (`error` frame codes, closes, failed connects, …).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Errors(pub BTreeMap<String, u64>);

impl Errors {
    pub fn add(&mut self, kind: impl Into<String>) {
        *self.0.entry(kind.into()).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Errors) {
        for (kind, n) in &other.0 {
            *self.0.entry(kind.clone()).or_default() += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn line(&self) -> String {
        if self.0.is_empty() {
            return "0".into();
        }
        let parts: Vec<String> = self.0.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        format!("{} ({})", self.total(), parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarizes_in_milliseconds() {
        let mut hist = Hist::new();
        for i in 1..=1000u64 {
            hist.record_ns(i * 1_000_000);
        }
        let s = hist.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.max_ms - 1000.0).abs() < 1.0, "{s:?}");
    }
}
