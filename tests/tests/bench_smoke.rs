//! A short run of each benchmark scenario (`switchboard-bench`'s library)
//! against a test deployment: tiny sizes, a few seconds each. They check
//! that the scenarios run end to end and that nothing was lost, not how
//! fast anything is. The baselines too: `raw-nats` (a real nats-server),
//! `ws-relay` (the relay in process) and `archive`'s `insert_many`.

use std::net::SocketAddr;
use std::time::Duration;

use switchboard_bench::setup::pid_listening_on;
use switchboard_bench::{archive, assign, chat, idle, raw_nats, relay, storm, ws_relay};
use switchboard_tests::scaled;
use switchboard_tests::services::Nats;
use switchboard_tests::system::{node_binary, System, DATABASE};

/// Frame rate limits out of the way of the load, as `scripts/bench` does,
/// and no reopening: a visitor who comes back gets a new conversation.
const LOAD_ENV: [(&str, &str); 3] = [
    ("SWITCHBOARD_EDGE__RATE_PER_SEC", "100000"),
    ("SWITCHBOARD_EDGE__RATE_BURST", "100000"),
    ("SWITCHBOARD_EDGE__REOPEN_WINDOW", "1ms"),
];

fn pid(edge: SocketAddr) -> u32 {
    pid_listening_on(edge.port()).unwrap_or_else(|e| panic!("edge pid: {e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_holds_every_connection() {
    let mut system = System::start_env(&LOAD_ENV).await;
    system.router().await;
    let edge = system.edge().await;
    let report = idle::run(&idle::IdleConfig {
        edges: vec![edge],
        edge_pids: vec![pid(edge)],
        connections: 40,
        concurrency: 10,
        hold: Duration::ZERO,
        procs: 1,
        worker_exe: None,
        hello_only: false,
    })
    .await
    .unwrap_or_else(|e| panic!("idle: {e:#}"));
    assert_eq!(report.established, 40, "{report:?}");
    assert_eq!(report.errors.total(), 0, "{report:?}");
    assert_eq!(report.edges[0].connections, 40);
    assert!(report.edges[0].rss_after_kib > 0);
}

async fn chat_system() -> (System, SocketAddr, SocketAddr) {
    let mut system = System::start_env(&LOAD_ENV).await;
    system.router().await;
    let visitors = system.edge().await;
    let agents = system.edge().await;
    (system, visitors, agents)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_closed_loop_loses_nothing() {
    let (system, visitors, agents) = chat_system().await;
    let report = chat::run(&chat::ChatConfig {
        visitor_edges: vec![visitors],
        agent_edges: vec![agents],
        nats_url: system.nats.url(),
        pairs: 6,
        agents: 2,
        mode: chat::Mode::Closed,
        secs: 2.0,
        warmup: 0.5,
        concurrency: 6,
        drain: scaled(chat::DEFAULT_DRAIN),
        cpu: Vec::new(),
    })
    .await
    .unwrap_or_else(|e| panic!("chat: {e:#}"));
    assert_eq!(report.pairs_ready, 6, "{report:?}");
    assert!(report.round_trips > 0, "{report:?}");
    assert_eq!(report.messages, 2 * report.round_trips, "{report:?}");
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.errors.total(), 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_open_loop_loses_nothing() {
    let (system, visitors, agents) = chat_system().await;
    let report = chat::run(&chat::ChatConfig {
        visitor_edges: vec![visitors],
        agent_edges: vec![agents],
        nats_url: system.nats.url(),
        pairs: 5,
        agents: 2,
        mode: chat::Mode::Open { rate: 50.0 },
        secs: 2.0,
        warmup: 0.5,
        concurrency: 5,
        drain: scaled(chat::DEFAULT_DRAIN),
        cpu: Vec::new(),
    })
    .await
    .unwrap_or_else(|e| panic!("chat: {e:#}"));
    assert!(report.messages > 0, "{report:?}");
    assert!(report.e2e.count > 0, "{report:?}");
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.errors.total(), 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_fills_freed_slots() {
    let (system, visitors, agents) = chat_system().await;
    let report = assign::run(&assign::AssignConfig {
        visitor_edges: vec![visitors],
        agent_edges: vec![agents],
        nats_url: system.nats.url(),
        agents: 2,
        capacity: 2,
        waiting: 3,
        secs: 2.0,
        warmup: 0.5,
        hold: Duration::ZERO,
        label: "smoke".into(),
        teams: 2,
    })
    .await
    .unwrap_or_else(|e| panic!("assign: {e:#}"));
    assert!(report.assignments > 0, "{report:?}");
    assert!(report.closed > 0, "{report:?}");
    assert!(report.started > 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_over_a_seeded_archive() {
    let system = System::start().await;
    let report = switchboard_bench::reports::run(&switchboard_bench::reports::ReportConfig {
        conversations: 300,
        nats_url: system.nats.url(),
        mongo_uri: system.mongo.uri(),
        database: DATABASE.into(),
        runs: 1,
    })
    .await
    .unwrap_or_else(|e| panic!("report: {e:#}"));
    let month = &report.windows[0];
    assert_eq!(month.conversations, 300, "{report:?}");
    assert!(
        report.windows[1..]
            .iter()
            .all(|w| w.conversations > 0 && w.conversations < 300),
        "the narrower windows select fewer conversations: {report:?}"
    );
}

/// `archive` at a small rate for two seconds against this deployment,
/// with its `insert_many` baseline.
async fn small_archive_run(
    system: &System,
    edge: SocketAddr,
    start_archiver: Option<archive::LateStart>,
) -> archive::ArchiveReport {
    archive::run(&archive::ArchiveConfig {
        visitor_edges: vec![edge],
        nats_url: system.nats.url(),
        mongo_uri: system.mongo.uri(),
        database: DATABASE.into(),
        conversations: 5,
        rate: 40.0,
        secs: 2.0,
        drain: scaled(Duration::from_secs(30)),
        sample: Duration::from_millis(100),
        batch_size: None,
        concurrency: 5,
        insert_many: true,
        start_archiver,
    })
    .await
    .unwrap_or_else(|e| panic!("archive: {e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_catches_up() {
    let mut system = System::start_env(&LOAD_ENV).await;
    system.router().await;
    system.archiver().await;
    let edge = system.edge().await;
    let report = small_archive_run(&system, edge, None).await;
    assert!(report.acked_per_sec > 0.0, "{report:?}");
    assert!(
        report.drain_secs.is_some(),
        "the archive never caught up: {report:?}"
    );
    let last = report.samples.last().unwrap_or_else(|| panic!("no sample"));
    assert!(last.archived >= last.stream, "{report:?}");
    assert_eq!(report.errors.total(), 0, "{report:?}");
    // The baseline: the server's own insert_many of the same documents,
    // and the ratio made of the two measured rates.
    let baseline = report
        .insert_many
        .as_ref()
        .unwrap_or_else(|| panic!("no insert_many baseline: {report:?}"));
    assert!(
        baseline.docs > 0 && baseline.docs_per_sec > 0.0,
        "{report:?}"
    );
    let archiver = match report.archiver_rate_basis {
        "backlogged" => report
            .archived_per_sec_backlogged
            .unwrap_or_else(|| panic!("backlogged without a rate: {report:?}")),
        _ => report.archived_per_sec,
    };
    assert!(archiver > 0.0, "{report:?}");
    let ratio = report
        .archiver_vs_insert_many
        .unwrap_or_else(|| panic!("no ratio: {report:?}"));
    assert!(
        (ratio - archiver / baseline.docs_per_sec).abs() < 1e-9,
        "{report:?}"
    );
    // The scratch collection is gone; the archive is untouched.
    let db = system.mongo.client().await.database(DATABASE);
    let names = db
        .list_collection_names()
        .await
        .unwrap_or_else(|e| panic!("list collections: {e}"));
    assert!(
        names.iter().all(|n| !n.starts_with("bench_insert_many")),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_drains_a_backlog_with_an_archiver_started_after_the_load() {
    let mut system = System::start_env(&LOAD_ENV).await;
    system.router().await;
    let edge = system.edge().await;
    let late = archive::LateStart {
        binary: node_binary(),
        env: system.node_env(),
    };
    let report = small_archive_run(&system, edge, Some(late)).await;
    assert_eq!(report.errors.total(), 0, "{report:?}");
    // Nothing was archived while the load ran; the archiver started after
    // it archived everything.
    assert_eq!(report.archived_per_sec, 0.0, "{report:?}");
    assert!(
        report.drain_secs.is_some(),
        "the archive never caught up: {report:?}"
    );
    let last = report.samples.last().unwrap_or_else(|| panic!("no sample"));
    assert!(
        last.stream > 0 && last.archived >= last.stream,
        "{report:?}"
    );
    assert!(report.archiver_startup_secs.is_some(), "{report:?}");
    let drained = report
        .archived_per_sec_drained
        .unwrap_or_else(|| panic!("no drain rate: {report:?}"));
    assert!(drained > 0.0, "{report:?}");
    assert_eq!(
        report.archiver_rate_basis, "draining the backlog after the load",
        "{report:?}"
    );
    let baseline = report
        .insert_many
        .as_ref()
        .unwrap_or_else(|| panic!("no insert_many baseline: {report:?}"));
    let ratio = report
        .archiver_vs_insert_many
        .unwrap_or_else(|| panic!("no ratio: {report:?}"));
    assert!(
        (ratio - drained / baseline.docs_per_sec).abs() < 1e-9,
        "{report:?}"
    );
}

/// What a user checks of a closed loop: it ran, every round trip is two
/// messages, nothing was lost or refused, the CPU is reported.
fn assert_closed_loop(report: &chat::ChatReport, pairs: usize) {
    assert_eq!(report.pairs_ready, pairs, "{report:?}");
    assert!(report.round_trips > 0, "{report:?}");
    assert_eq!(report.messages, 2 * report.round_trips, "{report:?}");
    assert!(
        report.round_trip.count > 0 && report.e2e.count > 0,
        "{report:?}"
    );
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.errors.total(), 0, "{report:?}");
    assert!(
        report.cpu.iter().any(|p| p.name == "generator"),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_nats_loop_loses_nothing() {
    let nats = Nats::start().await;
    let report = raw_nats::run(&raw_nats::RawNatsConfig {
        nats_url: nats.url(),
        pairs: 6,
        secs: 2.0,
        warmup: 0.5,
        drain: scaled(chat::DEFAULT_DRAIN),
        cpu: Vec::new(),
    })
    .await
    .unwrap_or_else(|e| panic!("raw-nats: {e:#}"));
    assert_eq!(report.scenario, "raw-nats");
    assert_closed_loop(&report, 6);
    // The baseline's stream is removed afterwards.
    let js = async_nats::jetstream::new(nats.client().await);
    assert!(js.get_stream(raw_nats::STREAM).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_relay_loop_loses_nothing() {
    // In process here; scripts/bench runs the relay as its own process.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("address: {e}"));
    let server = tokio::spawn(relay::serve(listener));
    let report = ws_relay::run(&ws_relay::WsRelayConfig {
        relay: addr,
        pairs: 6,
        agents: 2,
        secs: 2.0,
        warmup: 0.5,
        concurrency: 6,
        drain: scaled(chat::DEFAULT_DRAIN),
        cpu: Vec::new(),
    })
    .await
    .unwrap_or_else(|e| panic!("ws-relay: {e:#}"));
    server.abort();
    assert_eq!(report.scenario, "ws-relay");
    assert_eq!(report.agents, 2, "{report:?}");
    assert_closed_loop(&report, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_resumes_everyone_without_loss() {
    let mut system = System::start_env(&LOAD_ENV).await;
    system.router().await;
    let edge_a = system.edge().await;
    let edge_b = system.edge().await;
    let report = storm::run(&storm::StormConfig {
        edge_a,
        edge_a_pid: pid(edge_a),
        edges_b: vec![edge_b],
        nats_url: system.nats.url(),
        clients: 20,
        interval: Duration::from_millis(300),
        before: Duration::from_secs(1),
        after: Duration::from_secs(1),
        resume_deadline: scaled(Duration::from_secs(30)),
        concurrency: 10,
        drain: scaled(storm::DEFAULT_DRAIN),
    })
    .await
    .unwrap_or_else(|e| panic!("storm: {e:#}"));
    assert_eq!(report.connected, 20, "{report:?}");
    assert_eq!(report.resumed, 20, "{report:?}");
    assert!(report.all_resumed_secs.is_some(), "{report:?}");
    assert!(report.messages_acked > 0, "{report:?}");
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.duplicates, 0, "{report:?}");
    assert_eq!(report.unacked, 0, "{report:?}");
}
