//! The typed settings, with the defaults a laptop needs. Production changes
//! at least `auth.secret`, `nats.url` and `mongo.uri`.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{HumanDuration, LoadConfigError};

/// Everything any component reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub nats: NatsSettings,
    pub mongo: MongoSettings,
    pub auth: AuthSettings,
    pub edge: EdgeSettings,
    pub router: RouterSettings,
    pub archiver: ArchiverSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
}

/// The backbone.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// One server or several, comma-separated (`nats://n1:4222,nats://n2:4222`):
    /// the client picks one and fails over to the others.
    pub url: String,
    /// Credentials: at most one of user and password, token, NKey seed, or
    /// a `.creds` file (user JWT and seed, as `nsc` writes them).
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    pub nkey_seed: Option<Secret>,
    pub creds_file: Option<String>,
    /// TLS: the CA that signed the servers' certificates (TLS is then
    /// required), and a client certificate and key when the servers
    /// verify clients.
    pub tls_ca: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// Prefix of this process's reply subjects (default `_INBOX`), so a
    /// server's permissions can give each role its own replies.
    pub inbox_prefix: Option<String>,
    /// Name this process gives its NATS connection (shown by `nats-server`).
    pub connection_name: String,
    /// `file` (survives a nats-server crash) or `memory`.
    pub storage: StorageKind,
    /// Stream and bucket replicas; 3 in a 3-node cluster.
    pub replicas: usize,
    /// How long the stream keeps conversations; the archive keeps everything.
    pub retention: HumanDuration,
    /// Largest size of the `CHAT` stream in bytes, `-1` for no limit: past
    /// it the oldest records leave the stream (the archive has them, if
    /// the archivers keep up). Applied when the stream is created.
    pub max_bytes: i64,
    /// How long a retried send with the same `client_id` is recognised by
    /// JetStream itself.
    pub duplicate_window: HumanDuration,
    /// How long a request to NATS (publish ack, KV write) may take.
    pub request_timeout: HumanDuration,
    /// An agent connection whose edge stopped refreshing its presence for
    /// this long counts as offline (edges refresh every third of it).
    pub presence_ttl: HumanDuration,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            user: None,
            password: None,
            token: None,
            nkey_seed: None,
            creds_file: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            inbox_prefix: None,
            connection_name: "switchboard".into(),
            storage: StorageKind::File,
            replicas: 1,
            retention: HumanDuration::from_secs(30 * 24 * 3600),
            max_bytes: -1,
            duplicate_window: HumanDuration::from_secs(120),
            request_timeout: HumanDuration::from_secs(5),
            presence_ttl: HumanDuration::from_secs(30),
        }
    }
}

impl NatsSettings {
    /// The servers of `url`, trimmed, empty parts left out.
    pub fn servers(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }
}

impl fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URLs may carry credentials; the secrets redact themselves.
        f.debug_struct("NatsSettings")
            .field("url", &crate::redact::redact_uri(&self.url))
            .field("user", &self.user)
            .field("password", &self.password)
            .field("token", &self.token)
            .field("nkey_seed", &self.nkey_seed)
            .field("creds_file", &self.creds_file)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("inbox_prefix", &self.inbox_prefix)
            .field("connection_name", &self.connection_name)
            .field("storage", &self.storage)
            .field("replicas", &self.replicas)
            .field("retention", &self.retention)
            .field("duplicate_window", &self.duplicate_window)
            .field("request_timeout", &self.request_timeout)
            .field("presence_ttl", &self.presence_ttl)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    File,
    Memory,
}

/// The archive.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MongoSettings {
    pub uri: String,
    pub database: String,
}

impl Default for MongoSettings {
    fn default() -> Self {
        Self {
            uri: "mongodb://127.0.0.1:27017".into(),
            database: "switchboard".into(),
        }
    }
}

impl fmt::Debug for MongoSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URI may carry a password, in its user info or its query.
        f.debug_struct("MongoSettings")
            .field("uri", &crate::redact::redact_uri(&self.uri))
            .field("database", &self.database)
            .finish()
    }
}

/// A secret that never shows in logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

/// The built-in secret: fine for `--demo`, refused anywhere else.
pub const DEFAULT_SECRET: &str = "switchboard-insecure-default-secret";

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT_SECRET
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HMAC key new tokens are signed with; at least 32 characters outside
    /// demo mode.
    pub secret: Secret,
    /// The name of `secret`, written into every token it signs (`kid`).
    pub key_id: String,
    /// Other keys tokens may carry, by name: the previous key until the
    /// last token it signed has expired, or the next one while every edge
    /// learns it before it starts signing (rotation without downtime).
    pub accepted_keys: std::collections::BTreeMap<String, Secret>,
    pub visitor_token_ttl: HumanDuration,
    pub agent_token_ttl: HumanDuration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            secret: Secret::new(DEFAULT_SECRET),
            key_id: "k1".into(),
            accepted_keys: std::collections::BTreeMap::new(),
            visitor_token_ttl: HumanDuration::from_secs(30 * 24 * 3600),
            agent_token_ttl: HumanDuration::from_secs(12 * 3600),
        }
    }
}

/// Which clients an edge accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeRole {
    Visitor,
    Agent,
}

/// The browser-facing HTTP and WebSocket server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeSettings {
    pub listen: SocketAddr,
    /// This edge's name in logs and presence entries; random when empty.
    pub edge_id: String,
    /// Which clients this edge serves (separate deployments for agents and
    /// visitors are possible).
    pub roles: Vec<EdgeRole>,
    /// Time a new connection has to send `hello`.
    pub hello_timeout: HumanDuration,
    /// Largest WebSocket frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Longest message text, in characters.
    pub max_text_chars: usize,
    /// Frames per second a connection may send on average…
    pub rate_per_sec: u32,
    /// …and in one burst.
    pub rate_burst: u32,
    /// Frames queued for a client that reads slowly before it is dropped.
    pub outbound_queue: usize,
    /// Serve the demo site and agent console pages.
    pub serve_web: bool,
    /// A visitor who comes back within this long after their conversation
    /// was closed reopens it (with the same agent, if online) instead of
    /// starting a new one.
    pub reopen_window: HumanDuration,
    /// How often the edge pings each connection.
    pub ping_interval: HumanDuration,
    /// A connection that has sent nothing (not even a pong) for this long
    /// is dead (a laptop lid closed, a network gone): it is closed, and its
    /// agent goes offline with it.
    pub idle_timeout: HumanDuration,
    /// Longest a write to one socket may take before the connection is
    /// given up.
    pub write_timeout: HumanDuration,
    /// How long a connection gathers what it received before telling the
    /// others (`delivered` receipts): one receipt per conversation covers
    /// every record of the interval. 0 sends them after each write.
    pub receipt_delay: HumanDuration,
    /// Web sites whose pages may use this edge (the widget embedded on
    /// them), as exact origins (`https://shop.example.com`), or `*` for
    /// any. The edge's own origin is always allowed, and so are clients
    /// that send no `Origin` (bots, servers); any other page is refused
    /// with 403.
    pub allowed_origins: Vec<String>,
    /// Visitor sign-ups one client address may make per minute.
    pub signups_per_address_per_minute: u32,
    /// Login attempts one client address may make per minute…
    pub logins_per_address_per_minute: u32,
    /// …and attempts on one login, from anywhere.
    pub logins_per_account_per_minute: u32,
    /// Profile changes (`POST /api/v1/visitors/profile`) one visitor may
    /// make per minute: each is a write, and a new name an event in their
    /// conversation that every follower receives.
    pub profile_updates_per_minute: u32,
    /// Password checks running at once (each is deliberately slow); more
    /// logins wait their turn, chat never does.
    pub password_checks: usize,
    /// WebSockets one client address may hold open (offices share one).
    pub sockets_per_address: u32,
    /// WebSockets one visitor or agent may hold open (tabs).
    pub sockets_per_identity: u32,
    /// Load balancers in front of the edge: from these peers, the client's
    /// address is taken from `X-Forwarded-For`.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Serve Prometheus metrics at `/metrics` on `edge.listen` (refused to
    /// web pages; block the path at the load balancer, or turn this off
    /// and use `metrics.listen`).
    pub metrics: bool,
    /// On SIGTERM, how long the edge keeps serving while `/readyz` answers
    /// 503, so that the load balancer stops sending it new clients…
    pub drain_delay: HumanDuration,
    /// …then over how long it closes its connections (1012, "reconnect
    /// elsewhere"), a few at a time rather than all at once.
    pub drain_grace: HumanDuration,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            edge_id: String::new(),
            roles: vec![EdgeRole::Visitor, EdgeRole::Agent],
            hello_timeout: HumanDuration::from_secs(10),
            max_frame_bytes: 16 * 1024,
            max_text_chars: 4000,
            rate_per_sec: 20,
            rate_burst: 40,
            outbound_queue: 256,
            serve_web: true,
            reopen_window: HumanDuration::from_secs(600),
            ping_interval: HumanDuration::from_secs(20),
            idle_timeout: HumanDuration::from_secs(60),
            write_timeout: HumanDuration::from_secs(10),
            receipt_delay: HumanDuration::from_millis(250),
            allowed_origins: Vec::new(),
            signups_per_address_per_minute: 60,
            logins_per_address_per_minute: 30,
            logins_per_account_per_minute: 10,
            profile_updates_per_minute: 10,
            password_checks: 2,
            sockets_per_address: 500,
            sockets_per_identity: 20,
            trusted_proxies: Vec::new(),
            metrics: true,
            drain_delay: HumanDuration::from_secs(5),
            drain_grace: HumanDuration::from_secs(5),
        }
    }
}

/// How a team's conversations pick among free agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The agent with the fewest conversations (then the longest idle).
    LeastBusy,
    /// The agent whose last assignment is oldest (round-robin).
    LongestIdle,
}

/// How routers share the routing work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partitions {
    /// Each team's queue (and the queue of conversations without a team)
    /// is a partition leased to one router at a time; the singleton
    /// duties (reconcile, requeue, idle close, bots' deadlines, the queue
    /// snapshot) are leased too.
    Team,
    /// Every router routes every queue and does every duty (they race, and
    /// the compare-and-set settles each race).
    Off,
}

/// Routing rules of one team (`[router.teams.<team>]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeamPolicy {
    /// The team's strategy; `router.strategy` when unset.
    pub strategy: Option<Strategy>,
    /// An assigned agent who has not answered within this long loses the
    /// conversation to the next agent. Off when unset.
    pub first_reply: Option<HumanDuration>,
    /// Whether the team's bot, when one runs, takes new conversations
    /// first (true when unset).
    pub bot_first: Option<bool>,
}

/// Assignment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterSettings {
    /// Age after which a capacity claim without its assignment is released.
    pub claim_grace: HumanDuration,
    /// Capacity of agents whose account does not set one.
    pub default_capacity: u32,
    /// How long an agent may be offline (all connections gone, or their
    /// edge dead) and keep their conversations; after it, the conversations
    /// go back to the queue at their original place.
    pub agent_grace: HumanDuration,
    /// The strategy of teams that set none.
    pub strategy: Strategy,
    /// A bot that has not answered the visitor's latest message within
    /// this long, or has been absent this long, loses the conversation to
    /// the humans (`handed_off`, reason `no_answer` or `bot_absent`).
    pub bot_reply_deadline: HumanDuration,
    /// Per-team rules, by team id (conversations without a team use the
    /// defaults). Admins may change them while Switchboard runs (the
    /// `teams` bucket, which wins over these).
    pub teams: std::collections::BTreeMap<String, TeamPolicy>,
    /// An assigned conversation in which nothing was written for this long
    /// is closed by the router (`closed` by `idle_close`), freeing its
    /// agent's slot. Off unless set.
    pub idle_close: Option<HumanDuration>,
    /// How routers share the work: `team` (leased partitions) or `off`.
    pub partitions: Partitions,
    /// A router's lease on a partition lasts this long unless renewed
    /// (every third of it); a router that died loses its partitions to
    /// the others within about this long.
    pub lease_ttl: HumanDuration,
}

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            claim_grace: HumanDuration::from_secs(10),
            default_capacity: 3,
            agent_grace: HumanDuration::from_secs(30),
            strategy: Strategy::LeastBusy,
            bot_reply_deadline: HumanDuration::from_secs(20),
            teams: std::collections::BTreeMap::new(),
            idle_close: None,
            partitions: Partitions::Team,
            lease_ttl: HumanDuration::from_secs(3),
        }
    }
}

impl RouterSettings {
    /// The strategy of a team.
    pub fn strategy_of(&self, team: Option<&str>) -> Strategy {
        team.and_then(|t| self.teams.get(t))
            .and_then(|p| p.strategy)
            .unwrap_or(self.strategy)
    }

    /// Whether a team's bot takes its new conversations first.
    pub fn bot_first_of(&self, team: Option<&str>) -> bool {
        team.and_then(|t| self.teams.get(t))
            .and_then(|p| p.bot_first)
            .unwrap_or(true)
    }

    /// The first-reply deadline of a team, if it has one.
    pub fn first_reply_of(&self, team: Option<&str>) -> Option<std::time::Duration> {
        team.and_then(|t| self.teams.get(t))
            .and_then(|p| p.first_reply)
            .map(HumanDuration::get)
    }
}

/// The MongoDB writer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiverSettings {
    /// Most records written to MongoDB in one batch: a batch is whatever
    /// has arrived, up to this many, so it grows with the load.
    pub batch_size: usize,
    /// How often the archivers look for closed conversations to remove
    /// from KV (archived, and closed longer ago than `edge.reopen_window`
    /// plus `keep_closed`).
    pub sweep_interval: HumanDuration,
    /// How long past `edge.reopen_window` a closed conversation stays in
    /// KV: a margin for clocks that differ between processes.
    pub keep_closed: HumanDuration,
    /// While the archiver is behind the stream, how long a conversation's
    /// summary may trail its archived messages: the summaries of several
    /// batches are written together (one statement per conversation
    /// instead of one per batch), the records acked once their messages
    /// are stored, and a durable note names the conversations behind. An
    /// archiver that has caught up writes them at once. `0s`: every
    /// batch's summaries before its acks.
    pub summary_delay: HumanDuration,
}

impl Default for ArchiverSettings {
    fn default() -> Self {
        Self {
            batch_size: 500,
            sweep_interval: HumanDuration::from_secs(60),
            keep_closed: HumanDuration::from_secs(60),
            summary_delay: HumanDuration::from_secs(30),
        }
    }
}

/// Prometheus metrics on a listener of their own.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Where to serve `GET /metrics` and `GET /healthz` (any component:
    /// routers and archivers have no other listener). Off when unset.
    pub listen: Option<SocketAddr>,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub filter: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// `*`, or `http(s)://host[:port]` with nothing after it.
fn valid_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !authority.is_empty()
        && !authority.contains(['/', '?', '#', ' ', '@'])
}

impl Settings {
    /// Checks ranges the types cannot express.
    ///
    /// # Errors
    /// [`LoadConfigError::Rejected`] naming the key.
    pub fn validate(&self) -> Result<(), LoadConfigError> {
        let reject = |key, reason: &str| {
            Err(LoadConfigError::Rejected {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.nats.servers().is_empty() {
            return reject("nats.url", "names no server");
        }
        let credentials = [
            self.nats.user.is_some() || self.nats.password.is_some(),
            self.nats.token.is_some(),
            self.nats.nkey_seed.is_some(),
            self.nats.creds_file.is_some(),
        ];
        if credentials.iter().filter(|c| **c).count() > 1 {
            return reject(
                "nats.user",
                "and nats.password, nats.token, nats.nkey_seed, nats.creds_file: set at most one kind of credentials",
            );
        }
        if self.nats.user.is_some() != self.nats.password.is_some() {
            return reject("nats.password", "goes with nats.user (set both or neither)");
        }
        if self.nats.tls_cert.is_some() != self.nats.tls_key.is_some() {
            return reject(
                "nats.tls_cert",
                "goes with nats.tls_key (set both or neither)",
            );
        }
        if self.nats.replicas == 0 || self.nats.replicas > 5 {
            return reject("nats.replicas", "must be between 1 and 5");
        }
        if self.nats.duplicate_window.get().is_zero() {
            return reject("nats.duplicate_window", "must be positive");
        }
        if self.nats.retention < self.nats.duplicate_window {
            return reject("nats.retention", "must be at least nats.duplicate_window");
        }
        if self.router.lease_ttl.get() < std::time::Duration::from_millis(300) {
            return reject("router.lease_ttl", "must be at least 300ms");
        }
        if self.nats.presence_ttl.get().as_secs() < 3 {
            return reject("nats.presence_ttl", "must be at least 3s");
        }
        let key_id_ok = |id: &str| {
            !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !key_id_ok(&self.auth.key_id) || !self.auth.accepted_keys.keys().all(|id| key_id_ok(id))
        {
            return reject(
                "auth.key_id",
                "and the names of auth.accepted_keys must be 1-64 letters, digits, '-' or '_'",
            );
        }
        // A logged-out token is remembered for 31 days (the `revoked`
        // bucket); an agent's token may not outlive that.
        if self.auth.agent_token_ttl.get() > std::time::Duration::from_secs(30 * 24 * 3600) {
            return reject("auth.agent_token_ttl", "must be at most 30d");
        }
        if self.auth.accepted_keys.contains_key(&self.auth.key_id) {
            return reject("auth.accepted_keys", "names auth.key_id again");
        }
        if self.mongo.database.trim().is_empty() {
            return reject("mongo.database", "is empty");
        }
        if self.edge.roles.is_empty() {
            return reject("edge.roles", "must name at least one of visitor, agent");
        }
        if self.edge.max_frame_bytes < 1024 {
            return reject("edge.max_frame_bytes", "must be at least 1024");
        }
        if self.edge.max_text_chars == 0 {
            return reject("edge.max_text_chars", "must be positive");
        }
        if self.edge.max_text_chars * 4 > self.edge.max_frame_bytes * 8 {
            return reject("edge.max_text_chars", "cannot fit in edge.max_frame_bytes");
        }
        if self.edge.rate_per_sec == 0 || self.edge.rate_burst == 0 {
            return reject("edge.rate_per_sec", "and edge.rate_burst must be positive");
        }
        if self.edge.outbound_queue == 0 {
            return reject("edge.outbound_queue", "must be positive");
        }
        if self.edge.hello_timeout.get().is_zero() {
            return reject("edge.hello_timeout", "must be positive");
        }
        if self.edge.ping_interval.get().is_zero() || self.edge.write_timeout.get().is_zero() {
            return reject(
                "edge.ping_interval",
                "and edge.write_timeout must be positive",
            );
        }
        if let Some(bad) = self.edge.allowed_origins.iter().find(|o| !valid_origin(o)) {
            return reject(
                "edge.allowed_origins",
                &format!("{bad:?} is not `*` or an origin like https://shop.example.com"),
            );
        }
        if self.edge.signups_per_address_per_minute == 0
            || self.edge.logins_per_address_per_minute == 0
            || self.edge.logins_per_account_per_minute == 0
            || self.edge.profile_updates_per_minute == 0
            || self.edge.password_checks == 0
            || self.edge.sockets_per_address == 0
            || self.edge.sockets_per_identity == 0
        {
            return reject(
                "edge.signups_per_address_per_minute",
                "and the other edge admission limits must be positive",
            );
        }
        if self.edge.idle_timeout <= self.edge.ping_interval {
            return reject(
                "edge.idle_timeout",
                "must be longer than edge.ping_interval (a live client answers each ping)",
            );
        }
        if self.archiver.batch_size == 0 {
            return reject("archiver.batch_size", "must be positive");
        }
        if self.archiver.sweep_interval.get().is_zero() {
            return reject("archiver.sweep_interval", "must be positive");
        }
        if self.nats.max_bytes == 0 || self.nats.max_bytes < -1 {
            return reject("nats.max_bytes", "must be positive, or -1 for no limit");
        }
        if self.router.default_capacity == 0 {
            return reject("router.default_capacity", "must be positive");
        }
        if self.router.bot_reply_deadline.get().is_zero() {
            return reject("router.bot_reply_deadline", "must be positive");
        }
        Ok(())
    }

    /// Refuses the built-in or a short secret outside demo mode.
    ///
    /// # Errors
    /// [`LoadConfigError::Rejected`] for `auth.secret`.
    pub fn require_production_secret(&self) -> Result<(), LoadConfigError> {
        if self.auth.secret.is_default() {
            return Err(LoadConfigError::Rejected {
                key: "auth.secret",
                reason: "is the built-in default; set SWITCHBOARD_AUTH__SECRET or run with --demo"
                    .into(),
            });
        }
        if self.auth.secret.expose().len() < 32 {
            return Err(LoadConfigError::Rejected {
                key: "auth.secret",
                reason: "must be at least 32 characters".into(),
            });
        }
        if let Some((id, _)) = self
            .auth
            .accepted_keys
            .iter()
            .find(|(_, key)| key.expose().len() < 32 || key.is_default())
        {
            return Err(LoadConfigError::Rejected {
                key: "auth.accepted_keys",
                reason: format!("{id} must be at least 32 characters and not the default"),
            });
        }
        Ok(())
    }
}
