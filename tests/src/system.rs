//! A test deployment: one nats-server, one MongoDB-wire server, and
//! component processes started from the real binary.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{json, Value};
use switchboard_bus::accounts::{self, NewAgent};
use switchboard_bus::Backbone;
use switchboard_protocol::ids::TeamId;
use switchboard_protocol::payloads::{AgentAccount, AgentRole};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use crate::services::{Mongo, Nats};
use crate::{free_port, http, PORT_ATTEMPTS};

/// The token secret of test deployments.
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
/// The password of every test agent.
pub const PASSWORD: &str = "agent-password-1";
/// The archive database of test deployments.
pub const DATABASE: &str = "switchboard_test";

/// A component process.
pub struct Node {
    pub kind: &'static str,
    child: Child,
    /// The edge's HTTP address.
    pub addr: Option<SocketAddr>,
}

impl Node {
    /// `kill -9`.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then waits for the process to exit; returns its success.
    pub async fn terminate(&mut self) -> bool {
        self.signal_terminate();
        self.wait_exit().await
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_terminate(&self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }

    /// Waits for the process to exit; returns its success.
    pub async fn wait_exit(&mut self) -> bool {
        match tokio::time::timeout(crate::deadline(), self.child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => false,
        }
    }
}

pub struct System {
    pub nats: Nats,
    pub mongo: Mongo,
    pub nodes: Vec<Node>,
    /// `SWITCHBOARD_*` settings given to every node.
    env: Vec<(String, String)>,
    /// When set, every node started from then on logs at this level
    /// (`RUST_LOG`) into [`System::logs`].
    capture: Option<(String, Arc<Mutex<Vec<String>>>)>,
}

impl System {
    /// Starts the services (no component yet).
    pub async fn start() -> Self {
        Self::start_env(&[]).await
    }

    /// Starts the services; every node will get these extra settings. The
    /// stream and buckets are created by the first node started, so start a
    /// node before [`System::backbone`] when the settings concern them.
    pub async fn start_env(env: &[(&str, &str)]) -> Self {
        crate::init_tracing();
        let (nats, mongo) = tokio::join!(Nats::start(), Mongo::start());
        Self {
            nats,
            mongo,
            nodes: Vec::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            capture: None,
        }
    }

    /// Sets a `SWITCHBOARD_*` setting for every node started from now on
    /// (replacing the system's own, such as the servers' addresses).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Collects the log lines of every node started from now on, logging
    /// at `filter` (a `RUST_LOG` directive).
    pub fn capture_logs(&mut self, filter: &str) {
        self.capture = Some((filter.to_owned(), Arc::default()));
    }

    /// Every log line captured so far (see [`System::capture_logs`]).
    pub fn logs(&self) -> Vec<String> {
        self.capture
            .as_ref()
            .map(|(_, lines)| lines.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .unwrap_or_default()
    }

    /// Starts the services, one router and one archiver.
    pub async fn with_workers() -> Self {
        let mut system = Self::start().await;
        system.router().await;
        system.archiver().await;
        system
    }

    /// The settings every node of this system is started with.
    pub fn node_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("SWITCHBOARD_NATS__URL".into(), self.nats.url()),
            ("SWITCHBOARD_MONGO__URI".into(), self.mongo.uri()),
            ("SWITCHBOARD_MONGO__DATABASE".into(), DATABASE.into()),
            ("SWITCHBOARD_AUTH__SECRET".into(), SECRET.into()),
        ];
        // Tests sign up and log in many clients from one address, fast:
        // the admission limits are tested on their own (abuse.rs).
        env.extend(
            [
                (
                    "SWITCHBOARD_EDGE__SIGNUPS_PER_ADDRESS_PER_MINUTE",
                    "1000000",
                ),
                ("SWITCHBOARD_EDGE__LOGINS_PER_ADDRESS_PER_MINUTE", "1000000"),
                ("SWITCHBOARD_EDGE__LOGINS_PER_ACCOUNT_PER_MINUTE", "1000000"),
                ("SWITCHBOARD_EDGE__SOCKETS_PER_ADDRESS", "1000000"),
                ("SWITCHBOARD_EDGE__SOCKETS_PER_IDENTITY", "1000"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        env.extend(self.env.iter().cloned());
        env
    }

    fn spawn(&self, args: &[&str], extra: &[(&str, &str)]) -> Child {
        let logs = std::env::var_os("SWITCHBOARD_TEST_LOGS").is_some();
        let filter = match &self.capture {
            Some((filter, _)) => filter.clone(),
            None => std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        };
        let mut command = Command::new(node_binary());
        command
            .args(args)
            .env_remove("SWITCHBOARD_CONFIG")
            .env("RUST_LOG", filter)
            .envs(self.node_env())
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if self.capture.is_some() {
                Stdio::piped()
            } else if logs {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start switchboard-node {args:?}: {e}"));
        if let (Some((_, lines)), Some(stderr)) = (&self.capture, child.stderr.take()) {
            let lines = Arc::clone(lines);
            tokio::spawn(async move {
                let mut stderr = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = stderr.next_line().await {
                    lines
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(line);
                }
            });
        }
        child
    }

    /// Starts an edge process and waits until it answers `/readyz`.
    pub async fn edge(&mut self) -> SocketAddr {
        self.edge_with(&[]).await
    }

    /// An edge with extra `SWITCHBOARD_*` settings.
    pub async fn edge_with(&mut self, extra: &[(&str, &str)]) -> SocketAddr {
        for _ in 0..PORT_ATTEMPTS {
            let addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            if let Some(addr) = self.try_edge_on(addr, extra).await {
                return addr;
            }
            // It exited: the free port was taken meanwhile (tests run in
            // parallel), or it failed; another port tells which.
        }
        panic!("no edge started on {PORT_ATTEMPTS} free ports");
    }

    /// An edge listening on `addr` (the address of one that was killed,
    /// say, so that pages keep their origin), ready when this returns.
    pub async fn edge_on(&mut self, addr: SocketAddr, extra: &[(&str, &str)]) -> SocketAddr {
        self.try_edge_on(addr, extra)
            .await
            .unwrap_or_else(|| panic!("the edge on {addr} exited before it was ready"))
    }

    /// An edge on `addr`, ready; `None` when it exits first.
    async fn try_edge_on(
        &mut self,
        addr: SocketAddr,
        extra: &[(&str, &str)],
    ) -> Option<SocketAddr> {
        let listen = addr.to_string();
        let mut all = vec![("SWITCHBOARD_EDGE__LISTEN", listen.as_str())];
        all.extend_from_slice(extra);
        let child = self.spawn(&["edge"], &all);
        self.nodes.push(Node {
            kind: "edge",
            child,
            addr: Some(addr),
        });
        let node = self.nodes.last_mut()?;
        let ready = crate::ready_unless_exited(
            &mut node.child,
            &format!("edge on {addr} ready"),
            || async move {
                tokio::net::TcpStream::connect(addr).await.is_ok()
                    && http::get(addr, "/readyz").await.status == 200
            },
        )
        .await;
        if !ready {
            self.nodes.pop();
            return None;
        }
        Some(addr)
    }

    pub async fn router(&mut self) {
        self.router_with(&[]).await;
    }

    /// A router with extra `SWITCHBOARD_*` settings.
    pub async fn router_with(&mut self, extra: &[(&str, &str)]) {
        let child = self.spawn(&["router"], extra);
        self.nodes.push(Node {
            kind: "router",
            child,
            addr: None,
        });
    }

    pub async fn archiver(&mut self) {
        self.archiver_with(&[]).await;
    }

    /// An archiver with extra `SWITCHBOARD_*` settings.
    pub async fn archiver_with(&mut self, extra: &[(&str, &str)]) {
        let child = self.spawn(&["archiver"], extra);
        self.nodes.push(Node {
            kind: "archiver",
            child,
            addr: None,
        });
    }

    /// The node serving `addr`.
    pub fn node(&mut self, addr: SocketAddr) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.addr == Some(addr))
            .unwrap_or_else(|| panic!("no node at {addr}"))
    }

    /// A library connection to the backbone (creating it if needed).
    pub async fn backbone(&self) -> Backbone {
        let settings = switchboard_config::NatsSettings {
            url: self.nats.url(),
            ..Default::default()
        };
        Backbone::open(self.nats.client().await, &settings)
            .await
            .unwrap_or_else(|e| panic!("open backbone: {e}"))
    }

    /// Creates an agent (password [`PASSWORD`]).
    pub async fn add_agent(&self, login: &str, capacity: u32, team: Option<&str>) -> AgentAccount {
        accounts::add(
            &self.backbone().await,
            NewAgent {
                login: login.into(),
                name: format!("Agent {login}"),
                password: PASSWORD.into(),
                team: team.map(|t| TeamId::new(t).unwrap_or_else(|e| panic!("team: {e}"))),
                capacity,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("add agent {login}: {e}"))
    }

    /// Adds an account with the `admin` role (named `Admin <login>`).
    pub async fn add_admin(&self, login: &str) -> AgentAccount {
        accounts::add_as(
            &self.backbone().await,
            NewAgent {
                login: login.into(),
                name: format!("Admin {login}"),
                password: PASSWORD.into(),
                team: None,
                capacity: 1,
            },
            AgentRole::Admin,
        )
        .await
        .unwrap_or_else(|e| panic!("add admin {login}: {e}"))
    }

    /// Signs up a visitor; returns `(visitor_id, token)`.
    pub async fn visitor(edge: SocketAddr, name: &str) -> (String, String) {
        let response = http::post(
            edge,
            "/api/v1/visitors",
            &json!({ "name": name }).to_string(),
        )
        .await;
        assert_eq!(response.status, 201, "{}", response.body);
        let body = response.json();
        (string(&body["visitor_id"]), string(&body["token"]))
    }

    /// Logs an agent in; returns the token.
    pub async fn agent_token(edge: SocketAddr, login: &str) -> String {
        let response = http::post(
            edge,
            "/api/v1/agents/login",
            &json!({ "login": login, "password": PASSWORD }).to_string(),
        )
        .await;
        assert_eq!(response.status, 200, "{}", response.body);
        string(&response.json()["token"])
    }

    /// The archive database.
    pub async fn archive(&self) -> mongodb::Database {
        self.mongo.client().await.database(DATABASE)
    }
}

/// The `switchboard-node` binary: cargo builds it beside the integration
/// tests of this package (`target/<profile>/`, the tests are in `deps/`).
pub fn node_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("SWITCHBOARD_TEST_NODE") {
        return path.into();
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current exe: {e}"));
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()));
    let binary = profile_dir.join("switchboard-node");
    assert!(
        binary.is_file(),
        "{} is missing: run the tests with cargo test -p switchboard-tests",
        binary.display()
    );
    binary
}

fn string(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
        .to_owned()
}

impl Node {
    /// The process id, while the process runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl System {
    /// The HTTP addresses of the edges started (and not removed) so far.
    pub fn edges(&self) -> Vec<SocketAddr> {
        self.nodes
            .iter()
            .filter(|n| n.kind == "edge")
            .filter_map(|n| n.addr)
            .collect()
    }

    /// `kill -9` of the edge serving `addr`, which is then forgotten.
    pub async fn kill_edge(&mut self, addr: SocketAddr) {
        self.node(addr).kill().await;
        self.nodes.retain(|n| n.addr != Some(addr));
    }

    /// `kill -9` of every node of `kind` (`edge`, `router`, `archiver`),
    /// which are then forgotten; returns how many were killed.
    pub async fn kill_all(&mut self, kind: &str) -> usize {
        let mut killed = 0;
        for node in self.nodes.iter_mut().filter(|n| n.kind == kind) {
            node.kill().await;
            killed += 1;
        }
        self.nodes.retain(|n| n.kind != kind);
        killed
    }

    /// `kill -9` of every archiver, then a new one.
    pub async fn restart_archiver(&mut self) {
        self.kill_all("archiver").await;
        self.archiver().await;
    }

    /// `kill -9` of every router, then a new one.
    pub async fn restart_router(&mut self) {
        self.kill_all("router").await;
        self.router().await;
    }

    /// `kill -9` of the edge at `addr`, then a replacement on a new port
    /// (ready when this returns); returns the new address.
    pub async fn replace_edge(&mut self, addr: SocketAddr) -> SocketAddr {
        self.kill_edge(addr).await;
        self.edge().await
    }
}
