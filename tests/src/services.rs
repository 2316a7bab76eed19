//! Real servers for one test. Binaries come from PATH or from `.dev/venv`
//! (provisioned by `scripts/setup`); a missing one fails the test loudly.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::{eventually, free_port, PORT_ATTEMPTS};

/// Finds a server binary: `$ENV_VAR`, PATH, then the workspace's `.dev/venv/bin`.
fn find_binary(names: &[&str], env_var: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env_var) {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.dev/venv/bin");
    for name in names {
        if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        }) {
            return found;
        }
        let candidate = venv.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "none of {names:?} found on PATH or in .dev/venv/bin; run scripts/setup (or set {env_var})"
    );
}

/// The nats-server binary the tests use (for a test that runs one with a
/// configuration of its own).
pub fn nats_server_binary() -> PathBuf {
    find_binary(&["nats-server"], "SWITCHBOARD_TEST_NATS_SERVER")
}

async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// Waits until a server just started (`child`) accepts connections on
/// `port`: kept in `slot`, true; false when it exited first.
async fn accepting(slot: &mut Option<Child>, mut child: Child, port: u16, what: &str) -> bool {
    let what = format!("{what} accepting connections on {port}");
    let up = crate::ready_unless_exited(&mut child, &what, || port_open(port)).await;
    if up {
        *slot = Some(child);
    }
    up
}

/// A nats-server with JetStream and file storage.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    /// The HTTP monitoring port (`/varz`, `/healthz`).
    pub monitor_port: u16,
    dir: TempDir,
}

impl Nats {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let mut nats = Self {
            child: None,
            port: free_port(),
            monitor_port: free_port(),
            dir,
        };
        // A port found free may be taken before the server binds it (by
        // another test's client socket): then the server exits, and gets
        // other ports.
        for _ in 0..PORT_ATTEMPTS {
            if nats.try_spawn().await {
                return nats;
            }
            nats.port = free_port();
            nats.monitor_port = free_port();
        }
        panic!("nats-server did not start on {PORT_ATTEMPTS} pairs of free ports");
    }

    async fn spawn(&mut self) {
        assert!(
            self.try_spawn().await,
            "nats-server exited at once on port {}",
            self.port
        );
    }

    /// Starts the server; false when it exited before accepting
    /// connections (its port was taken).
    async fn try_spawn(&mut self) -> bool {
        let binary = find_binary(&["nats-server"], "SWITCHBOARD_TEST_NATS_SERVER");
        let child = Command::new(&binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-m",
                &self.monitor_port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        accepting(&mut self.child, child, self.port, "nats-server").await
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A page of the monitoring server, as JSON.
    async fn monitor(&self, path: &str) -> serde_json::Value {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.monitor_port));
        let page = crate::http::get(addr, path).await;
        // The body may come chunked: the JSON is between the outer braces.
        page.body
            .find('{')
            .zip(page.body.rfind('}'))
            .and_then(|(from, to)| {
                serde_json::from_str::<serde_json::Value>(&page.body[from..=to]).ok()
            })
            .unwrap_or_else(|| panic!("{path} is not JSON: {}", page.body))
    }

    /// Messages the server has received from clients so far (`/varz`
    /// `in_msgs`): what a client's actions cost the backbone.
    pub async fn messages_in(&self) -> u64 {
        let varz = self.monitor("/varz").await;
        varz["in_msgs"]
            .as_u64()
            .unwrap_or_else(|| panic!("no in_msgs in /varz: {varz}"))
    }

    /// The client connections the server has closed so far, as `(name,
    /// reason)` (`/connz?state=closed`): a component whose connection the
    /// server dropped shows here even after it has reconnected.
    pub async fn closed_connections(&self) -> Vec<(String, String)> {
        let connz = self.monitor("/connz?state=closed&limit=1024").await;
        connz["connections"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|c| {
                        let text = |key: &str| c[key].as_str().unwrap_or_default().to_owned();
                        (text("name"), text("reason"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `kill -9`.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .unwrap_or_else(|e| panic!("connect to test nats: {e}"))
    }
}

/// Starts nats-server with a test's own configuration file (listening on
/// `port`) and waits until it accepts connections; killed on drop.
pub async fn nats_with_config(config: &std::path::Path, port: u16) -> Child {
    let child = Command::new(nats_server_binary())
        .arg("-c")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start nats-server: {e}"));
    eventually("the configured nats-server", || async move {
        port_open(port).await.then_some(())
    })
    .await;
    child
}

/// A 3-node JetStream cluster on loopback: three nats-server processes,
/// each with its `server_name`, client, cluster and monitoring ports and
/// its own store; killed and removed on drop.
pub struct NatsCluster {
    nodes: Vec<ClusterNode>,
    dir: TempDir,
}

struct ClusterNode {
    name: String,
    port: u16,
    monitor_port: u16,
    child: Option<Child>,
}

impl NatsCluster {
    /// Starts three servers and waits until each says JetStream is up
    /// (`/healthz?js-enabled-only=true`).
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut cluster = Self {
            nodes: (0..3)
                .map(|i| ClusterNode {
                    name: format!("n{}", i + 1),
                    port: free_port(),
                    monitor_port: free_port(),
                    child: None,
                })
                .collect(),
            dir,
        };
        for (i, node) in cluster.nodes.iter().enumerate() {
            let others: Vec<String> = routes
                .iter()
                .map(|port| format!("nats-route://127.0.0.1:{port}"))
                .collect();
            let config = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\n\
                 jetstream {{ store_dir: \"{store}\" }}\n\
                 cluster {{ name: switchboard, listen: 127.0.0.1:{route}, routes: [{others}] }}\n",
                name = node.name,
                port = node.port,
                monitor = node.monitor_port,
                store = cluster.dir.path().join(&node.name).display(),
                route = routes[i],
                others = others.join(", "),
            );
            std::fs::write(cluster.config(i), config)
                .unwrap_or_else(|e| panic!("write cluster config: {e}"));
        }
        for i in 0..3 {
            cluster.spawn(i);
        }
        // Every server up with JetStream, then the cluster's meta leader
        // elected (plain `/healthz` answers 200 only then): a stream or
        // bucket can be created.
        for i in 0..3 {
            cluster.wait_healthy(i).await;
        }
        for i in 0..3 {
            cluster.wait_health(i, "/healthz").await;
        }
        cluster
    }

    fn config(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("{}.conf", self.nodes[i].name))
    }

    fn spawn(&mut self, i: usize) {
        let child = Command::new(nats_server_binary())
            .arg("-c")
            .arg(self.config(i))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start nats-server {}: {e}", self.nodes[i].name));
        self.nodes[i].child = Some(child);
    }

    /// Waits until server `i` answers that JetStream is enabled.
    pub async fn wait_healthy(&self, i: usize) {
        self.wait_health(i, "/healthz?js-enabled-only=true").await;
    }

    /// Waits until server `i` answers `path` (a `/healthz` form) with 200.
    async fn wait_health(&self, i: usize, path: &str) {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.nodes[i].monitor_port));
        eventually(&format!("{} healthy", self.nodes[i].name), || async move {
            if !port_open(addr.port()).await {
                return None;
            }
            let health = crate::http::get(addr, path).await;
            (health.status == 200).then_some(())
        })
        .await;
    }

    /// Every server, as `nats.url` takes them.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the server named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// `kill -9` of server `i`.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill().await;
        }
    }

    /// Stops server `i` gracefully (SIGTERM: it hands its leaderships over
    /// first), waiting for it to exit.
    pub async fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            terminate_child(&mut child).await;
        }
    }

    /// Starts server `i` again with its data, and waits until it is healthy
    /// with every stream and consumer caught up (plain `/healthz`), so that
    /// stopping another server next keeps a quorum of current replicas.
    pub async fn start_again(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "server {i} is running");
        self.spawn(i);
        self.wait_health(i, "/healthz").await;
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
}

/// A MongoDB-wire server: `mongod` when installed, else the SecantusDB dev
/// server.
pub struct Mongo {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
}

impl Mongo {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let mut mongo = Self {
            child: None,
            port: free_port(),
            dir,
        };
        // As for nats-server: a port taken meanwhile gets another.
        for _ in 0..PORT_ATTEMPTS {
            if mongo.try_spawn().await {
                return mongo;
            }
            mongo.port = free_port();
        }
        panic!("the mongo server did not start on {PORT_ATTEMPTS} free ports");
    }

    async fn spawn(&mut self) {
        assert!(
            self.try_spawn().await,
            "the mongo server exited at once on port {}",
            self.port
        );
    }

    /// Starts the server; false when it exited before accepting
    /// connections (its port was taken).
    async fn try_spawn(&mut self) -> bool {
        let binary = find_binary(&["mongod", "secantusd-py"], "SWITCHBOARD_TEST_MONGO_SERVER");
        let port = self.port.to_string();
        let mut command = Command::new(&binary);
        if binary.ends_with("mongod") {
            command
                .args(["--bind_ip", "127.0.0.1", "--port", &port, "--dbpath"])
                .arg(self.dir.path());
        } else {
            command
                .args(["--host", "127.0.0.1", "--port", &port, "--storage-path"])
                .arg(self.dir.path());
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        accepting(&mut self.child, child, self.port, "the mongo server").await
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    /// A client of this server with a short server selection timeout.
    pub async fn client(&self) -> mongodb::Client {
        let uri = format!("{}/?serverSelectionTimeoutMS=5000", self.uri());
        mongodb::Client::with_uri_str(uri)
            .await
            .unwrap_or_else(|e| panic!("connect to test mongo: {e}"))
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

impl Drop for Mongo {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Pause between checks of a process that should exit.
pub const EXIT_POLL: Duration = Duration::from_millis(50);

/// Sends `signal` (`STOP`, `CONT`, `TERM`, …) to a process with `kill`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("run kill -{signal} {pid}: {e}"));
    assert!(status.success(), "kill -{signal} {pid} failed: {status}");
}

/// SIGTERM, then waits for the exit (SIGKILL after [`crate::deadline`]).
async fn terminate_child(child: &mut Child) {
    if let Some(pid) = child.id() {
        signal(pid, "TERM");
    }
    if tokio::time::timeout(crate::deadline(), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

impl Nats {
    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// SIGSTOP: the server keeps its sockets open but answers nothing.
    pub fn pause(&self) {
        signal(
            self.pid()
                .unwrap_or_else(|| panic!("nats-server is not running")),
            "STOP",
        );
    }

    /// SIGCONT after [`Nats::pause`].
    pub fn resume(&self) {
        signal(
            self.pid()
                .unwrap_or_else(|| panic!("nats-server is not running")),
            "CONT",
        );
    }

    /// Starts again after [`Nats::kill`]: same port, same data.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "nats-server is still running");
        self.spawn().await;
    }
}

impl Mongo {
    /// Stops the server gracefully (SIGTERM, waiting for the exit).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate_child(&mut child).await;
        }
    }

    /// Starts again after [`Mongo::stop`] or [`Mongo::kill`]: same port,
    /// same data.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the mongo server is still running");
        self.spawn().await;
    }
}

/// A TCP proxy to a local port that a test can cut: every open connection
/// is closed and new ones are refused (accepted and closed at once) until
/// [`TcpProxy::heal`]. Put between one component and nats-server, it is a
/// network partition of that component alone while the server keeps
/// serving everyone else.
pub struct TcpProxy {
    pub port: u16,
    cut: std::sync::Arc<std::sync::Mutex<Option<tokio_util::sync::CancellationToken>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free port and forwards each connection to `target`.
    pub async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|e| panic!("bind proxy: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy address: {e}"))
            .port();
        let cut = std::sync::Arc::new(std::sync::Mutex::new(Some(
            tokio_util::sync::CancellationToken::new(),
        )));
        let links = std::sync::Arc::clone(&cut);
        let task = tokio::spawn(async move {
            while let Ok((mut downstream, _)) = listener.accept().await {
                let open = links
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                // Cut: the connection is closed at once.
                let Some(open) = open else { continue };
                tokio::spawn(async move {
                    let Ok(mut upstream) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        () = open.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream) => {}
                    }
                });
            }
        });
        Self { port, cut, task }
    }

    /// `nats://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Closes every forwarded connection and refuses new ones.
    pub fn cut(&self) {
        let mut links = self
            .cut
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(open) = links.take() {
            open.cancel();
        }
    }

    /// Forwards connections again after [`TcpProxy::cut`].
    pub fn heal(&self) {
        let mut links = self
            .cut
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if links.is_none() {
            *links = Some(tokio_util::sync::CancellationToken::new());
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
