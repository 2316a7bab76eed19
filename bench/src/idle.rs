//! `idle N`: N authenticated visitors, each with an open conversation
//! (`hello` + `start`), held open. Reports the connect rate and the edges'
//! resident memory per connection (`VmRSS` before and after).
//!
//! Above what one process may hold (20,000 open files), the connections are
//! spread over several load-generator processes ([`IdleConfig::procs`]),
//! each a `switchboard-bench idle-worker` child with its own block of
//! source addresses, and over several edges.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::net::Socket;
use crate::report::{num, row, Report};
use crate::setup::{self, rss_kib};
use crate::stats::{Errors, Latency};

/// Connections held by one holder task.
const HOLDER_SHARD: usize = 512;
/// Time left for the edge to settle before its memory is read.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct IdleConfig {
    pub edges: Vec<SocketAddr>,
    /// Process ids of the edges, in the order of `edges` (for `VmRSS`).
    pub edge_pids: Vec<u32>,
    pub connections: usize,
    /// Connections being set up at once (per process).
    pub concurrency: usize,
    /// How long the connections are held after the memory was read.
    pub hold: Duration,
    /// Load-generator processes; 1 runs in this process.
    pub procs: usize,
    /// The `switchboard-bench` binary for the worker processes.
    pub worker_exe: Option<PathBuf>,
    /// Only `hello`, no conversation (a bare authenticated session).
    pub hello_only: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EdgeMemory {
    pub addr: String,
    pub pid: u32,
    pub connections: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub per_connection_kib: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub scenario: &'static str,
    pub connections: usize,
    /// Sessions without a conversation (`--hello-only`).
    pub hello_only: bool,
    pub established: usize,
    pub errors: Errors,
    pub generator_procs: usize,
    pub connect_secs: f64,
    pub connect_rate_per_sec: f64,
    /// Connect → `started`, per connection (the worst process's when several).
    pub connect_latency: Latency,
    pub edges: Vec<EdgeMemory>,
    /// Over all edges: (Σ after − Σ before) / Σ connections.
    pub per_connection_kib: f64,
}

impl Report for IdleReport {
    fn title(&self) -> String {
        if self.hello_only {
            format!("idle {} (hello only, no conversation)", self.connections)
        } else {
            format!("idle {}", self.connections)
        }
    }

    fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            row("connections held", num(self.established as f64, 0)),
            row("errors", self.errors.line()),
            row("generator processes", self.generator_procs),
            row("connect time", format!("{:.1} s", self.connect_secs)),
            row(
                "connect rate",
                format!("{}/s", num(self.connect_rate_per_sec, 0)),
            ),
            row(
                "connect→started p50/p99/p99.9/max",
                self.connect_latency.line(),
            ),
        ];
        for edge in &self.edges {
            rows.push(row(
                &format!("edge {} (pid {})", edge.addr, edge.pid),
                format!(
                    "{} conns, RSS {} → {} KiB, {:.2} KiB/conn",
                    num(edge.connections as f64, 0),
                    num(edge.rss_before_kib as f64, 0),
                    num(edge.rss_after_kib as f64, 0),
                    edge.per_connection_kib
                ),
            ));
        }
        rows.push(row(
            "edge RSS per connection",
            format!("{:.2} KiB", self.per_connection_kib),
        ));
        rows
    }
}

/// What one load-generator process reports once its connections are up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerReady {
    pub established: usize,
    /// Per edge, in the order given.
    pub per_edge: Vec<usize>,
    pub errors: std::collections::BTreeMap<String, u64>,
    pub connect_secs: f64,
    pub latency: Latency,
}

/// Opens this process's share of the connections.
async fn open_share(
    edges: &[SocketAddr],
    count: usize,
    concurrency: usize,
    first_edge: usize,
) -> Result<(Vec<Socket>, WorkerReady)> {
    let opened = setup::open_visitors(edges, count, concurrency, first_edge).await?;
    let mut per_edge = vec![0; edges.len()];
    for v in &opened.visitors {
        per_edge[v.edge] += 1;
    }
    let ready = WorkerReady {
        established: opened.visitors.len(),
        per_edge,
        errors: opened.errors.0.clone(),
        connect_secs: opened.elapsed.as_secs_f64(),
        latency: opened.latency.summary(),
    };
    Ok((
        opened.visitors.into_iter().map(|v| v.socket).collect(),
        ready,
    ))
}

/// Holds sockets open, reading (and so answering pings) in shards of
/// [`HOLDER_SHARD`] per task, until the returned handles are aborted.
fn hold(sockets: Vec<Socket>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let mut sockets = sockets.into_iter().peekable();
    while sockets.peek().is_some() {
        let shard: Vec<Socket> = sockets.by_ref().take(HOLDER_SHARD).collect();
        tasks.push(tokio::spawn(async move {
            let mut all = futures::stream::select_all(shard);
            while all.next().await.is_some() {}
        }));
    }
    tasks
}

/// Runs `idle`.
pub async fn run(config: &IdleConfig) -> Result<IdleReport> {
    if config.edges.len() != config.edge_pids.len() {
        bail!(
            "give one edge pid per edge ({} edges, {} pids)",
            config.edges.len(),
            config.edge_pids.len()
        );
    }
    let before: Vec<u64> = config
        .edge_pids
        .iter()
        .map(|&pid| rss_kib(pid))
        .collect::<Result<_>>()?;
    let procs = config.procs.max(1);
    setup::set_start_conversations(!config.hello_only);
    let mut readies = Vec::new();
    let mut holders = Vec::new();
    let mut children = Vec::new();
    let started = Instant::now();
    if procs == 1 {
        let (sockets, ready) =
            open_share(&config.edges, config.connections, config.concurrency, 0).await?;
        holders = hold(sockets);
        readies.push(ready);
    } else {
        let exe = match &config.worker_exe {
            Some(exe) => exe.clone(),
            None => std::env::current_exe().context("find the switchboard-bench binary")?,
        };
        let mut starts = 0;
        for p in 0..procs {
            let share = config.connections / procs + usize::from(p < config.connections % procs);
            let mut command = tokio::process::Command::new(&exe);
            command
                .arg("idle-worker")
                .arg("--connections")
                .arg(share.to_string())
                .arg("--concurrency")
                .arg(config.concurrency.to_string())
                .arg("--first-edge")
                .arg(starts.to_string())
                .arg("--source-block")
                .arg((101 + p).to_string());
            if config.hello_only {
                command.arg("--hello-only");
            }
            for edge in &config.edges {
                command.arg("--edge").arg(edge.to_string());
            }
            starts = (starts + share) % config.edges.len().max(1);
            let child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("start {} idle-worker", exe.display()))?;
            children.push(child);
        }
        for child in &mut children {
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| anyhow!("worker without stdout"))?;
            let mut line = String::new();
            BufReader::new(stdout)
                .read_line(&mut line)
                .await
                .context("read worker report")?;
            let ready: WorkerReady = serde_json::from_str(line.trim())
                .with_context(|| format!("worker report {line:?}"))?;
            readies.push(ready);
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let after: Vec<u64> = config
        .edge_pids
        .iter()
        .map(|&pid| rss_kib(pid))
        .collect::<Result<_>>()?;
    tokio::time::sleep(config.hold).await;
    for task in holders {
        task.abort();
    }
    for mut child in children {
        drop(child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    }

    let mut errors = Errors::default();
    let mut per_edge = vec![0usize; config.edges.len()];
    let mut latency = Latency::default();
    for ready in &readies {
        for (kind, n) in &ready.errors {
            *errors.0.entry(kind.clone()).or_default() += n;
        }
        for (i, n) in ready.per_edge.iter().enumerate() {
            if let Some(slot) = per_edge.get_mut(i) {
                *slot += n;
            }
        }
        if ready.latency.p99_ms >= latency.p99_ms {
            latency = ready.latency.clone();
        }
    }
    let established: usize = per_edge.iter().sum();
    let edges: Vec<EdgeMemory> = config
        .edges
        .iter()
        .enumerate()
        .map(|(i, addr)| EdgeMemory {
            addr: addr.to_string(),
            pid: config.edge_pids[i],
            connections: per_edge[i],
            rss_before_kib: before[i],
            rss_after_kib: after[i],
            per_connection_kib: per_kib(before[i], after[i], per_edge[i]),
        })
        .collect();
    Ok(IdleReport {
        scenario: "idle",
        connections: config.connections,
        hello_only: config.hello_only,
        established,
        errors,
        generator_procs: procs,
        connect_secs,
        connect_rate_per_sec: established as f64 / connect_secs.max(1e-9),
        connect_latency: latency,
        per_connection_kib: per_kib(before.iter().sum(), after.iter().sum(), established),
        edges,
    })
}

fn per_kib(before: u64, after: u64, connections: usize) -> f64 {
    if connections == 0 {
        return 0.0;
    }
    (after as f64 - before as f64) / connections as f64
}

/// The `idle-worker` process: opens its share, prints one JSON line, holds
/// the connections until its standard input closes.
pub async fn worker(
    edges: &[SocketAddr],
    count: usize,
    concurrency: usize,
    first_edge: usize,
) -> Result<()> {
    let (sockets, ready) = open_share(edges, count, concurrency, first_edge).await?;
    let holders = hold(sockets);
    println!(
        "{}",
        serde_json::to_string(&ready).context("encode worker report")?
    );
    // Held until the parent closes our standard input.
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
    })
    .await;
    for task in holders {
        task.abort();
    }
    Ok(())
}
