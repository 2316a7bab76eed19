//! CPU time of processes during a measured window, as the kernel counts it
//! (`utime + stime` of `/proc/<pid>/stat`, every thread included): read
//! when the window opens and when it closes, so setup (sign-ups, logins,
//! connects) never counts. The generator's own process is always included.

use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::report::{num, row};
use crate::{instant_at, now_ns};

/// A process to watch: `name=pid` on the command line.
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
}

impl std::str::FromStr for Watched {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let (name, pid) = text
            .split_once('=')
            .ok_or_else(|| anyhow!("expected NAME=PID, got {text:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            pid: pid.parse().with_context(|| format!("pid of {name}"))?,
        })
    }
}

/// One process's CPU during the window.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ProcessCpu {
    pub name: String,
    pub pid: u32,
    /// CPU seconds (user + system) used inside the window.
    pub cpu_secs: f64,
    /// Share of one core over the window, in percent.
    pub percent_of_core: f64,
    /// Microseconds of CPU per message measured in the window.
    pub us_per_message: f64,
}

/// The table rows of a CPU list.
pub fn rows(cpu: &[ProcessCpu]) -> Vec<(String, String)> {
    cpu.iter()
        .map(|p| {
            row(
                &format!("CPU {}", p.name),
                format!(
                    "{} µs/msg ({:.2} s, {}% of a core)",
                    num(p.us_per_message, 1),
                    p.cpu_secs,
                    num(p.percent_of_core, 0)
                ),
            )
        })
        .collect()
}

fn clock_ticks_per_sec() -> f64 {
    static HZ: OnceLock<f64> = OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|hz| *hz > 0.0)
            .unwrap_or(100.0)
    })
}

/// CPU seconds a process has used so far (`None` once it is gone).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count after its `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line are the 12th and 13th after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks_per_sec())
}

/// Measures the CPU of `watched` (and of this process, as `generator`)
/// between two benchmark-clock readings; resolves after `end_ns`.
/// Call [`per_message`] on the result once the message count is known.
pub fn spawn_window(
    watched: &[Watched],
    start_ns: u64,
    end_ns: u64,
) -> tokio::task::JoinHandle<Vec<ProcessCpu>> {
    let mut all = watched.to_vec();
    all.push(Watched {
        name: "generator".into(),
        pid: std::process::id(),
    });
    tokio::spawn(async move {
        tokio::time::sleep_until(instant_at(start_ns).into()).await;
        let before: Vec<Option<f64>> = all.iter().map(|w| cpu_secs(w.pid)).collect();
        let opened = now_ns();
        tokio::time::sleep_until(instant_at(end_ns).into()).await;
        let after: Vec<Option<f64>> = all.iter().map(|w| cpu_secs(w.pid)).collect();
        let window = (now_ns().saturating_sub(opened) as f64 / 1e9).max(1e-9);
        all.into_iter()
            .zip(before.into_iter().zip(after))
            .map(|(w, (b, a))| {
                let used = match (b, a) {
                    (Some(b), Some(a)) => (a - b).max(0.0),
                    _ => 0.0,
                };
                ProcessCpu {
                    name: w.name,
                    pid: w.pid,
                    cpu_secs: used,
                    percent_of_core: 100.0 * used / window,
                    us_per_message: 0.0,
                }
            })
            .collect()
    })
}

/// Fills in the CPU per message for `messages` measured in the window.
pub fn per_message(mut cpu: Vec<ProcessCpu>, messages: u64) -> Vec<ProcessCpu> {
    for p in &mut cpu {
        p.us_per_message = if messages == 0 {
            0.0
        } else {
            p.cpu_secs * 1e6 / messages as f64
        };
    }
    cpu
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_its_own_cpu() {
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(super::cpu_secs(std::process::id()).is_some());
    }

    #[test]
    fn parses_name_equals_pid() {
        let w: super::Watched = "edge-1=42".parse().unwrap();
        assert_eq!((w.name.as_str(), w.pid), ("edge-1", 42));
        assert!("edge".parse::<super::Watched>().is_err());
    }
}
