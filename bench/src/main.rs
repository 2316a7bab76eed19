//! `switchboard-bench`: runs one benchmark scenario against running
//! Switchboard processes, prints a table and optionally writes JSON.
//! `scripts/bench` starts everything and runs the standard set.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use switchboard_bench::cpu::Watched;
use switchboard_bench::report::{emit, Report};
use switchboard_bench::{
    archive, assign, chat, compare, idle, net, raw_nats, relay, reports, secs, storm, ws_relay,
};

#[derive(Parser)]
#[command(
    name = "switchboard-bench",
    about = "Load generator for Switchboard (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Output {
    /// Also write the result as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// N visitors with an open conversation, held open; connect rate and
    /// edge memory per connection.
    Idle {
        /// Connections to open.
        connections: usize,
        /// An edge to connect to (repeat for several; connections go round them).
        #[arg(long = "edge", required = true)]
        edges: Vec<SocketAddr>,
        /// Process id of each edge, in the same order (for VmRSS).
        #[arg(long = "edge-pid", required = true)]
        edge_pids: Vec<u32>,
        /// Load-generator processes (each holds at most ~19,000 connections).
        #[arg(long, default_value_t = 1)]
        procs: usize,
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Seconds to hold the connections after measuring.
        #[arg(long, default_value_t = 1.0)]
        hold: f64,
        /// Only say hello (no conversation): the cost of a bare session.
        #[arg(long)]
        hello_only: bool,
        #[command(flatten)]
        output: Output,
    },
    /// One load-generator process of `idle --procs` (internal).
    #[command(hide = true)]
    IdleWorker {
        #[arg(long = "edge", required = true)]
        edges: Vec<SocketAddr>,
        #[arg(long)]
        connections: usize,
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        #[arg(long, default_value_t = 0)]
        first_edge: usize,
        #[arg(long, default_value_t = 101)]
        source_block: u8,
        #[arg(long)]
        hello_only: bool,
    },
    /// Visitor–agent conversations exchanging messages.
    Chat {
        #[arg(long)]
        pairs: usize,
        #[arg(long, value_enum, default_value_t = ChatMode::Closed)]
        mode: ChatMode,
        /// Open loop: total offered messages per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Measured seconds (after the warm-up).
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Agents sharing the conversations (default: one per 25, at least 4).
        #[arg(long)]
        agents: Option<usize>,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        cpu: Cpu,
        #[command(flatten)]
        output: Output,
    },
    /// Baseline: the chat closed loop straight over NATS (a stream like
    /// CHAT with its RePublish, no edges).
    RawNats {
        #[arg(long)]
        pairs: usize,
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        #[arg(long, default_value = "nats://127.0.0.1:4222")]
        nats: String,
        #[command(flatten)]
        cpu: Cpu,
        #[command(flatten)]
        output: Output,
    },
    /// Baseline's server: a minimal WebSocket relay (no NATS, no storage).
    WsRelayServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Baseline: the chat closed loop through `ws-relay-server`.
    WsRelay {
        #[arg(long)]
        pairs: usize,
        /// Where `ws-relay-server` listens.
        #[arg(long)]
        relay: SocketAddr,
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Agent sockets (default: one per 25 conversations, at least 4).
        #[arg(long)]
        agents: Option<usize>,
        #[arg(long, default_value_t = 100)]
        concurrency: usize,
        #[command(flatten)]
        cpu: Cpu,
        #[command(flatten)]
        output: Output,
    },
    /// Chat's round trips/s and p99 as a fraction of the baselines, from
    /// the JSON reports of one invocation.
    Compare {
        /// The `chat` report.
        #[arg(long)]
        chat: PathBuf,
        /// A baseline's report (`raw-nats`, `ws-relay`; repeat).
        #[arg(long = "baseline", required = true)]
        baselines: Vec<PathBuf>,
        #[command(flatten)]
        output: Output,
    },
    /// Conversations started and assigned while agents free slots.
    Assign {
        #[arg(long, default_value_t = 20)]
        agents: usize,
        #[arg(long, default_value_t = 5)]
        capacity: u32,
        /// Visitors waiting beyond the total capacity.
        #[arg(long, default_value_t = 50)]
        waiting: usize,
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Milliseconds an agent keeps a conversation before closing it.
        #[arg(long, default_value_t = 0)]
        hold_ms: u64,
        /// Label for the report, e.g. "1 router".
        #[arg(long, default_value = "")]
        label: String,
        /// Teams the agents and visitors are spread over (0: no team).
        #[arg(long, default_value_t = 0)]
        teams: usize,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        output: Output,
    },
    /// Archiver throughput and lag at an offered message rate.
    Archive {
        #[arg(long, default_value_t = 1000)]
        conversations: usize,
        #[arg(long, default_value_t = 3000.0)]
        rate: f64,
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// Seconds to wait for the archive to catch up after the load.
        #[arg(long, default_value_t = 60.0)]
        drain: f64,
        #[arg(long, default_value_t = 100)]
        sample_ms: u64,
        #[arg(long, default_value = "mongodb://127.0.0.1:27017")]
        mongo: String,
        #[arg(long, default_value = "switchboard")]
        database: String,
        /// The archiver's batch_size, for the report and the baseline.
        #[arg(long)]
        batch_size: Option<u64>,
        /// Skip the server's own `insert_many` baseline.
        #[arg(long)]
        no_insert_many: bool,
        /// No archiver runs during the load: this `switchboard` binary's
        /// `archiver` is started when the load ends, and its rate is
        /// measured draining the backlog on an otherwise idle machine
        /// (the conditions of the `insert_many` baseline).
        #[arg(long)]
        start_archiver: Option<std::path::PathBuf>,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        output: Output,
    },
    /// The statistics report over N seeded conversation summaries (an
    /// empty database is expected).
    Report {
        #[arg(long, default_value_t = 5000)]
        conversations: usize,
        #[arg(long, default_value = "nats://127.0.0.1:4222")]
        nats: String,
        #[arg(long, default_value = "mongodb://127.0.0.1:27017")]
        mongo: String,
        #[arg(long, default_value = "switchboard")]
        database: String,
        /// Timed runs of each window.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[command(flatten)]
        output: Output,
    },
    /// Kill -9 of edge A under N clients, who resume on edge B.
    Storm {
        clients: usize,
        /// The edge the clients start on (it is killed).
        #[arg(long)]
        edge_a: SocketAddr,
        #[arg(long)]
        edge_a_pid: u32,
        /// Where the clients go (repeat for several).
        #[arg(long = "edge-b", required = true)]
        edges_b: Vec<SocketAddr>,
        #[arg(long, default_value = "nats://127.0.0.1:4222")]
        nats: String,
        /// Seconds between one client's messages.
        #[arg(long, default_value_t = 5.0)]
        interval: f64,
        #[arg(long, default_value_t = 3.0)]
        before: f64,
        #[arg(long, default_value_t = 3.0)]
        after: f64,
        #[arg(long, default_value_t = 60.0)]
        resume_deadline: f64,
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Args)]
struct Cpu {
    /// A process to report the CPU of during the window, as NAME=PID
    /// (repeat); the generator itself is always reported.
    #[arg(long = "cpu-pid")]
    pids: Vec<Watched>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ChatMode {
    Closed,
    Open,
}

#[derive(Args)]
struct Target {
    /// A visitor edge (repeat for several).
    #[arg(long = "edge", required = true)]
    edges: Vec<SocketAddr>,
    /// An agent edge (repeat for several; default: the visitor edges).
    #[arg(long = "agent-edge")]
    agent_edges: Vec<SocketAddr>,
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
}

impl Target {
    fn agent_edges(&self) -> Vec<SocketAddr> {
        if self.agent_edges.is_empty() {
            self.edges.clone()
        } else {
            self.agent_edges.clone()
        }
    }
}

fn show<R: Report>(report: &R, output: &Output) -> Result<()> {
    emit(report, output.json.as_deref())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Idle {
            connections,
            edges,
            edge_pids,
            procs,
            concurrency,
            hold,
            hello_only,
            output,
        } => {
            let report = idle::run(&idle::IdleConfig {
                hello_only,
                edges,
                edge_pids,
                connections,
                concurrency,
                hold: secs(hold),
                procs,
                worker_exe: None,
            })
            .await?;
            show(&report, &output)
        }
        Command::IdleWorker {
            edges,
            connections,
            concurrency,
            first_edge,
            source_block,
            hello_only,
        } => {
            net::set_source_block(source_block);
            switchboard_bench::setup::set_start_conversations(!hello_only);
            idle::worker(&edges, connections, concurrency, first_edge).await
        }
        Command::Chat {
            pairs,
            mode,
            rate,
            secs: measured,
            warmup,
            agents,
            target,
            cpu,
            output,
        } => {
            let report = chat::run(&chat::ChatConfig {
                agent_edges: target.agent_edges(),
                visitor_edges: target.edges,
                nats_url: target.nats,
                pairs,
                agents: agents.unwrap_or((pairs / 25).max(4)),
                mode: match mode {
                    ChatMode::Closed => chat::Mode::Closed,
                    ChatMode::Open => chat::Mode::Open { rate },
                },
                secs: measured,
                warmup,
                concurrency: target.concurrency,
                drain: chat::DEFAULT_DRAIN,
                cpu: cpu.pids,
            })
            .await?;
            show(&report, &output)
        }
        Command::RawNats {
            pairs,
            secs: measured,
            warmup,
            nats,
            cpu,
            output,
        } => {
            let report = raw_nats::run(&raw_nats::RawNatsConfig {
                nats_url: nats,
                pairs,
                secs: measured,
                warmup,
                drain: chat::DEFAULT_DRAIN,
                cpu: cpu.pids,
            })
            .await?;
            show(&report, &output)
        }
        Command::WsRelayServer { listen } => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listen on {listen}"))?;
            let bound = listener.local_addr().context("bound address")?;
            println!("ws-relay-server listening on {bound}");
            relay::serve(listener).await
        }
        Command::WsRelay {
            pairs,
            relay,
            secs: measured,
            warmup,
            agents,
            concurrency,
            cpu,
            output,
        } => {
            let report = ws_relay::run(&ws_relay::WsRelayConfig {
                relay,
                pairs,
                agents: agents.unwrap_or((pairs / 25).max(4)),
                secs: measured,
                warmup,
                concurrency,
                drain: chat::DEFAULT_DRAIN,
                cpu: cpu.pids,
            })
            .await?;
            show(&report, &output)
        }
        Command::Compare {
            chat,
            baselines,
            output,
        } => {
            let chat = compare::Run::read(&chat)?;
            let baselines = baselines
                .iter()
                .map(|path| compare::Run::read(path))
                .collect::<Result<Vec<_>>>()?;
            show(&compare::compare(chat, baselines), &output)
        }
        Command::Assign {
            agents,
            capacity,
            waiting,
            secs: measured,
            warmup,
            hold_ms,
            label,
            teams,
            target,
            output,
        } => {
            let report = assign::run(&assign::AssignConfig {
                teams,
                agent_edges: target.agent_edges(),
                visitor_edges: target.edges,
                nats_url: target.nats,
                agents,
                capacity,
                waiting,
                secs: measured,
                warmup,
                hold: Duration::from_millis(hold_ms),
                label,
            })
            .await?;
            show(&report, &output)
        }
        Command::Archive {
            conversations,
            rate,
            secs: measured,
            drain,
            sample_ms,
            mongo,
            database,
            batch_size,
            no_insert_many,
            start_archiver,
            target,
            output,
        } => {
            let report = archive::run(&archive::ArchiveConfig {
                visitor_edges: target.edges,
                nats_url: target.nats,
                mongo_uri: mongo,
                database,
                conversations,
                rate,
                secs: measured,
                drain: secs(drain),
                sample: Duration::from_millis(sample_ms),
                batch_size,
                concurrency: target.concurrency,
                insert_many: !no_insert_many,
                start_archiver: start_archiver.map(|binary| archive::LateStart {
                    binary,
                    env: Vec::new(),
                }),
            })
            .await?;
            show(&report, &output)
        }
        Command::Report {
            conversations,
            nats,
            mongo,
            database,
            runs,
            output,
        } => {
            let report = reports::run(&reports::ReportConfig {
                conversations,
                nats_url: nats,
                mongo_uri: mongo,
                database,
                runs,
            })
            .await?;
            show(&report, &output)
        }
        Command::Storm {
            clients,
            edge_a,
            edge_a_pid,
            edges_b,
            nats,
            interval,
            before,
            after,
            resume_deadline,
            concurrency,
            output,
        } => {
            let report = storm::run(&storm::StormConfig {
                edge_a,
                edge_a_pid,
                edges_b,
                nats_url: nats,
                clients,
                interval: secs(interval),
                before: secs(before),
                after: secs(after),
                resume_deadline: secs(resume_deadline),
                concurrency,
                drain: storm::DEFAULT_DRAIN,
            })
            .await
            .context("storm")?;
            show(&report, &output)
        }
    }
}
