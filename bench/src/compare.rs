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

/// What the edges' work costs the libraries they are built on, from the
/// baselines of the same invocation: the NATS side of a message (publish
/// with the edge's headers, await its acknowledgement, receive the
/// republished record on both sides: `raw-nats`' generator, which does
/// only that) plus the WebSocket side (read a frame, write a frame:
/// `ws-relay`'s relay). No build of the edges on `async-nats` and axum's
/// WebSocket can spend less than this per message; what they spend above
/// it is Switchboard's own.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    /// The two edges' CPU per message, together.
    pub edges_us: f64,
    /// `raw-nats`' generator's CPU per message.
    pub nats_side_us: f64,
    /// `ws-relay`'s relay's CPU per message.
    pub websocket_side_us: f64,
}

impl Floor {
    fn of(chat: &Run, baselines: &[Run]) -> Option<Self> {
        let cpu_of = |run: &Run, name: &str| {
            run.cpu
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.us_per_message)
        };
        let scenario = |name: &str| baselines.iter().find(|b| b.scenario == name);
        let edges: Vec<f64> = chat
            .cpu
            .iter()
            .filter(|p| p.name.starts_with("edge"))
            .map(|p| p.us_per_message)
            .collect();
        if edges.is_empty() {
            return None;
        }
        Some(Self {
            edges_us: edges.iter().sum(),
            nats_side_us: cpu_of(scenario("raw-nats")?, "generator")?,
            websocket_side_us: cpu_of(scenario("ws-relay")?, "relay")?,
        })
    }

    /// The least the edges could spend per message on these libraries.
    pub fn floor_us(&self) -> f64 {
        self.nats_side_us + self.websocket_side_us
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub scenario: &'static str,
    pub chat: Run,
    pub baselines: Vec<Run>,
    pub ratios: Vec<Ratio>,
    /// Absent when a baseline or the edges' CPU is missing.
    pub edges_floor: Option<Floor>,
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
    let edges_floor = Floor::of(&chat, &baselines);
    CompareReport {
        scenario: "compare",
        chat,
        baselines,
        ratios,
        edges_floor,
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
        if let Some(floor) = &self.edges_floor {
            rows.push(row(
                "edges vs their libraries",
                format!(
                    "edges {} µs/msg; the same work on async-nats + WebSocket alone {} \
                     (raw-nats generator {} + ws-relay relay {}): {:.2}× it",
                    num(floor.edges_us, 1),
                    num(floor.floor_us(), 1),
                    num(floor.nats_side_us, 1),
                    num(floor.websocket_side_us, 1),
                    ratio(floor.edges_us, floor.floor_us())
                ),
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
        assert!(report.edges_floor.is_none(), "no CPU figures, no floor");
    }

    fn cpu(name: &str, us_per_message: f64) -> ProcessCpu {
        ProcessCpu {
            name: name.into(),
            pid: 0,
            cpu_secs: 0.0,
            percent_of_core: 0.0,
            us_per_message,
        }
    }

    #[test]
    fn the_floor_is_the_baselines_own_work_and_the_edges_are_summed() {
        let mut chat = run("chat", 2000.0, 400.0);
        chat.cpu = vec![
            cpu("nats-server", 40.0),
            cpu("edge-1", 60.0),
            cpu("edge-2", 40.0),
        ];
        let mut raw = run("raw-nats", 4000.0, 100.0);
        raw.cpu = vec![cpu("nats-server", 30.0), cpu("generator", 45.0)];
        let mut relay = run("ws-relay", 8000.0, 50.0);
        relay.cpu = vec![cpu("relay", 25.0), cpu("generator", 18.0)];
        let floor = compare(chat, vec![raw, relay])
            .edges_floor
            .expect("both baselines ran");
        assert_eq!(floor.edges_us, 100.0);
        assert_eq!(floor.nats_side_us, 45.0);
        assert_eq!(floor.websocket_side_us, 25.0);
        assert_eq!(floor.floor_us(), 70.0);
    }
}
