//! `compare`: Switchboard's chat closed loop as a fraction of the baselines
//! measured in the same invocation (`raw-nats`, `ws-relay`), from their
//! JSON reports, with the CPU per message of every process of each run.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cpu::ProcessCpu;
use crate::report::{num, row, Report};

/// The figures of one closed-loop run that are compared.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub scenario: String,
    pub pairs: usize,
    pub round_trips_per_sec: f64,
    pub messages_per_sec: f64,
    pub round_trip_p50_ms: f64,
    pub round_trip_p99_ms: f64,
    pub lost: u64,
    pub cpu: Vec<ProcessCpu>,
}

impl Run {
    /// Reads a `chat`, `raw-nats` or `ws-relay` JSON report.
    ///
    /// # Errors
    /// An unreadable file or a report without the fields.
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        let number = |pointer: &str| {
            value
                .pointer(pointer)
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| anyhow!("{} has no {pointer}", path.display()))
        };
        Ok(Self {
            scenario: value["scenario"].as_str().unwrap_or("?").to_owned(),
            pairs: number("/pairs")? as usize,
            round_trips_per_sec: number("/round_trips_per_sec")?,
            messages_per_sec: number("/messages_per_sec")?,
            round_trip_p50_ms: number("/round_trip/p50_ms")?,
            round_trip_p99_ms: number("/round_trip/p99_ms")?,
            lost: number("/lost")? as u64,
            cpu: serde_json::from_value(value["cpu"].clone()).unwrap_or_default(),
        })
    }
}

/// Switchboard against one baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub baseline: String,
    /// Switchboard's round trips/s over the baseline's.
    pub throughput: f64,
    /// Switchboard's round-trip p99 over the baseline's.
    pub p99: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub scenario: &'static str,
    pub chat: Run,
    pub baselines: Vec<Run>,
    pub ratios: Vec<Ratio>,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// Compares `chat` with each baseline.
pub fn compare(chat: Run, baselines: Vec<Run>) -> CompareReport {
    let ratios = baselines
        .iter()
        .map(|b| Ratio {
            baseline: b.scenario.clone(),
            throughput: ratio(chat.round_trips_per_sec, b.round_trips_per_sec),
            p99: ratio(chat.round_trip_p99_ms, b.round_trip_p99_ms),
        })
        .collect();
    CompareReport {
        scenario: "compare",
        chat,
        baselines,
        ratios,
    }
}

impl Report for CompareReport {
    fn title(&self) -> String {
        format!(
            "chat against its baselines: {} conversations, closed loop",
            num(self.chat.pairs as f64, 0)
        )
    }

    fn rows(&self) -> Vec<(String, String)> {
        let mut rows = Vec::new();
        for run in std::iter::once(&self.chat).chain(&self.baselines) {
            rows.push(row(
                &run.scenario,
                format!(
                    "{} round trips/s, {} msg/s, round trip p50 {:.2} / p99 {:.2} ms, lost {}",
                    num(run.round_trips_per_sec, 0),
                    num(run.messages_per_sec, 0),
                    run.round_trip_p50_ms,
                    run.round_trip_p99_ms,
                    run.lost
                ),
            ));
        }
        for r in &self.ratios {
            rows.push(row(
                &format!("chat / {}", r.baseline),
                format!(
                    "{:.2}× the round trips/s, {:.2}× the p99",
                    r.throughput, r.p99
                ),
            ));
        }
        for run in std::iter::once(&self.chat).chain(&self.baselines) {
            let total: f64 = run.cpu.iter().map(|p| p.us_per_message).sum();
            let each: Vec<String> = run
                .cpu
                .iter()
                .map(|p| format!("{} {}", p.name, num(p.us_per_message, 1)))
                .collect();
            rows.push(row(
                &format!("CPU µs/msg {}", run.scenario),
                format!("{} in all: {}", num(total, 1), each.join(", ")),
            ));
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scenario: &str, rate: f64, p99: f64) -> Run {
        Run {
            scenario: scenario.into(),
            pairs: 500,
            round_trips_per_sec: rate,
            messages_per_sec: 2.0 * rate,
            round_trip_p50_ms: p99 / 2.0,
            round_trip_p99_ms: p99,
            lost: 0,
            cpu: Vec::new(),
        }
    }

    #[test]
    fn ratios_are_chat_over_baseline() {
        let report = compare(
            run("chat", 2000.0, 400.0),
            vec![run("raw-nats", 4000.0, 100.0), run("ws-relay", 0.0, 0.0)],
        );
        assert_eq!(report.ratios[0].throughput, 0.5);
        assert_eq!(report.ratios[0].p99, 4.0);
        assert_eq!(report.ratios[1].throughput, 0.0);
    }
}
