//! What the scenarios set up before they measure: agent accounts and
//! their connections, visitors with an open conversation, and the edge's
//! memory as the kernel reports it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use switchboard_bus::accounts::{self, NewAgent};
use switchboard_bus::Backbone;
use switchboard_config::NatsSettings;
use switchboard_protocol::ids::TeamId;

use crate::net::{self, Frame, Http, Socket};
use crate::stats::{Errors, Hist};

/// The password of every agent the benchmark creates.
pub const AGENT_PASSWORD: &str = "bench-agent-password";
/// How long one step of a client's setup (a frame, a connect) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A library connection to the backbone, named `switchboard-bench`.
pub async fn backbone(nats_url: &str) -> Result<Backbone> {
    let settings = NatsSettings {
        url: nats_url.to_owned(),
        connection_name: "switchboard".into(),
        ..Default::default()
    };
    Backbone::connect(&settings, "bench")
        .await
        .with_context(|| format!("connect to NATS at {nats_url}"))
}

/// A short unique prefix for this run's logins.
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}", nanos % 0xffff_ffff_ffff)
}

/// Creates `count` agents with `capacity` slots each; returns their logins.
pub async fn create_agents(
    backbone: &Backbone,
    prefix: &str,
    count: usize,
    capacity: u32,
) -> Result<Vec<String>> {
    create_team_agents(backbone, prefix, count, capacity, &[]).await
}

/// [`create_agents`], agent `i` in team `teams[i % teams.len()]` (no team
/// when `teams` is empty).
pub async fn create_team_agents(
    backbone: &Backbone,
    prefix: &str,
    count: usize,
    capacity: u32,
    teams: &[TeamId],
) -> Result<Vec<String>> {
    let logins: Vec<String> = (0..count)
        .map(|i| format!("bench-{prefix}-{i}@bench"))
        .collect();
    let results: Vec<Result<()>> = futures::stream::iter(logins.clone().into_iter().enumerate())
        .map(|(i, login)| async move {
            accounts::add(
                backbone,
                NewAgent {
                    login: login.clone(),
                    name: format!("Bench agent {login}"),
                    password: AGENT_PASSWORD.into(),
                    team: (!teams.is_empty()).then(|| teams[i % teams.len()].clone()),
                    capacity,
                },
            )
            .await
            .map(|_| ())
            .with_context(|| format!("add agent {login}"))
        })
        .buffer_unordered(4)
        .collect()
        .await;
    for result in results {
        result?;
    }
    Ok(logins)
}

/// Logs agents in on `edge`; returns their tokens.
pub async fn agent_tokens(edge: SocketAddr, logins: &[String]) -> Result<Vec<String>> {
    let results: Vec<Result<String>> = futures::stream::iter(logins.iter().cloned())
        .map(|login| async move {
            let mut http = Http::new(edge);
            net::log_in(&mut http, &login, AGENT_PASSWORD).await
        })
        .buffered(4)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Connects agents (round the edges) and waits for their `welcome`.
pub async fn connect_agents(edges: &[SocketAddr], tokens: &[String]) -> Result<Vec<Socket>> {
    if edges.is_empty() {
        bail!("no agent edge given");
    }
    let mut sockets = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.iter().enumerate() {
        let (socket, _) = net::hello(edges[i % edges.len()], token, None, STEP_TIMEOUT).await?;
        sockets.push(socket);
    }
    Ok(sockets)
}

static START: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether [`open_visitor`] starts a conversation after `hello` (the
/// default); `idle --hello-only` turns it off to measure a bare session.
pub fn set_start_conversations(start: bool) {
    START.store(start, std::sync::atomic::Ordering::Relaxed);
}

/// A visitor connection with its open conversation.
pub struct Visitor {
    pub socket: Socket,
    pub conversation: String,
    pub token: String,
    /// Index of the edge it is connected to.
    pub edge: usize,
    /// Highest `seq` seen while it was set up.
    pub last_seq: u64,
}

/// Connects a visitor, says hello and starts (or finds) its conversation.
pub async fn open_visitor(edge: SocketAddr, token: String, index: usize) -> Result<Visitor> {
    let (mut socket, _) = net::hello(edge, &token, None, STEP_TIMEOUT).await?;
    if !START.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(Visitor {
            socket,
            conversation: String::new(),
            token,
            edge: index,
            last_seq: 0,
        });
    }
    net::send_text(&mut socket, r#"{"type":"start"}"#.to_owned()).await?;
    let mut last_seq = 0;
    let started = net::expect(&mut socket, "started", STEP_TIMEOUT, |f| {
        if let Some(seq) = f.seq {
            last_seq = last_seq.max(seq);
        }
    })
    .await?;
    let frame = Frame::parse(&started)?;
    let conversation = frame
        .conversation_id
        .as_deref()
        .ok_or_else(|| anyhow!("started without conversation_id: {started}"))?
        .to_owned();
    Ok(Visitor {
        socket,
        conversation,
        token,
        edge: index,
        last_seq,
    })
}

/// Visitors connected, and what it took.
pub struct Opened {
    pub visitors: Vec<Visitor>,
    pub errors: Errors,
    /// Connect → `started`, per visitor.
    pub latency: Hist,
    pub elapsed: Duration,
}

/// Signs up and opens `count` visitors round `edges` (starting at edge
/// `first_edge`), `concurrency` at a time.
pub async fn open_visitors(
    edges: &[SocketAddr],
    count: usize,
    concurrency: usize,
    first_edge: usize,
) -> Result<Opened> {
    if edges.is_empty() {
        bail!("no visitor edge given");
    }
    let tokens = net::sign_up(edges[0], count, 8).await?;
    let started = Instant::now();
    let results: Vec<(Result<Visitor>, Duration)> =
        futures::stream::iter(tokens.into_iter().enumerate())
            .map(|(i, token)| {
                let index = (first_edge + i) % edges.len();
                let edge = edges[index];
                async move {
                    let began = Instant::now();
                    let result = open_visitor(edge, token, index).await;
                    (result, began.elapsed())
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    let elapsed = started.elapsed();
    let mut opened = Opened {
        visitors: Vec::with_capacity(count),
        errors: Errors::default(),
        latency: Hist::new(),
        elapsed,
    };
    for (result, took) in results {
        match result {
            Ok(visitor) => {
                opened
                    .latency
                    .record_ns(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
                opened.visitors.push(visitor);
            }
            Err(err) => opened.errors.add(short_error(&err)),
        }
    }
    Ok(opened)
}

/// A short kind for an error, for the error counts.
pub fn short_error(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    let mut kind: String = text.chars().take(80).collect();
    if let Some(i) = kind.find(" from 127.") {
        kind.truncate(i);
    }
    kind
}

/// Resident memory of a process in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// Sends SIGKILL to a process (`kill -9`).
pub fn kill_9(pid: u32) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .context("run kill -9")?;
    if !status.success() {
        bail!("kill -9 {pid} failed: {status}");
    }
    Ok(())
}

/// The process listening on a loopback TCP port, found through
/// `/proc/net/tcp` and the processes' open sockets (for when the caller
/// did not start the edge itself).
pub fn pid_listening_on(port: u16) -> Result<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").context("read /proc/net/tcp")?;
    let inode = table
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit(':').next()?;
            let listening = fields.get(3)? == &"0A";
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| fields.get(9).map(|s| s.to_string()))
                .flatten()
        })
        .ok_or_else(|| anyhow!("nothing listens on port {port}"))?;
    let wanted = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").context("read /proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()) {
                return Ok(pid);
            }
        }
    }
    bail!("no process owns the socket listening on port {port}")
}
