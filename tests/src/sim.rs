//! A simulator of the real clients (the widget and the console, see
//! `edge/web/widget.js` and `edge/web/console.js`) for fault-injection
//! tests: each simulated client is a tokio task that connects to a live
//! edge, says `hello` with `resume`, reconnects when it loses the
//! connection, keeps a queue of sends that were not acknowledged yet and
//! re-sends them with the same `client_id` until they are, and records
//! every record it receives.
//!
//! It never panics inside a task: what breaks the contract (a repeated
//! `seq`, a jump in `seq`, two different acks for one `client_id`, …) is
//! written down in [`ClientState::violations`] for the test to assert on.
//!
//! - [`EdgePool`]: the live edge addresses, shared by every client; the
//!   test adds and removes edges as it kills and starts them.
//! - [`Sim`]: the clients, their shared [`ClientState`]s, and the controls
//!   (stop sending, shut down).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Awaits `check` returning `Ok`, re-checking every 100 ms, failing the
/// test with `what` (and the last `Err` explanation) after `deadline`
/// [`scaled`](crate::scaled) by the suite's time scale.
pub async fn within<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = crate::scaled(deadline);
    let until = Instant::now() + deadline;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(why) => assert!(
                Instant::now() < until,
                "timed out after {deadline:?} waiting for: {what}\nlast state: {why}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The edges clients may connect to. Clients go round the list; an edge
/// that refuses the connection is skipped.
#[derive(Debug, Default)]
pub struct EdgePool {
    addrs: Mutex<Vec<SocketAddr>>,
    next: AtomicUsize,
}

impl EdgePool {
    pub fn new(addrs: &[SocketAddr]) -> Arc<Self> {
        Arc::new(Self {
            addrs: Mutex::new(addrs.to_vec()),
            next: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<SocketAddr>> {
        self.addrs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn add(&self, addr: SocketAddr) {
        self.lock().push(addr);
    }

    pub fn remove(&self, addr: SocketAddr) {
        self.lock().retain(|a| *a != addr);
    }

    pub fn list(&self) -> Vec<SocketAddr> {
        self.lock().clone()
    }

    /// Every edge, starting with the next one in turn.
    fn candidates(&self) -> Vec<SocketAddr> {
        let addrs = self.list();
        if addrs.is_empty() {
            return addrs;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % addrs.len();
        addrs[start..]
            .iter()
            .chain(&addrs[..start])
            .copied()
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Visitor,
    Agent,
}

/// One record (`message` or `event`) as a client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub id: String,
    /// `message` or `event`.
    pub kind: String,
    /// The event's name, for events.
    pub event: Option<String>,
    pub client_id: Option<String>,
    pub sender_role: String,
    pub sender_id: String,
    pub text: Option<String>,
}

impl Seen {
    fn from_frame(frame: &Value) -> Self {
        let text = |v: &Value| v.as_str().map(str::to_owned);
        Self {
            id: text(&frame["id"]).unwrap_or_default(),
            kind: text(&frame["type"]).unwrap_or_default(),
            event: text(&frame["event"]),
            client_id: text(&frame["client_id"]),
            sender_role: text(&frame["sender"]["role"])
                .or_else(|| text(&frame["by"]["role"]))
                .unwrap_or_default(),
            sender_id: text(&frame["sender"]["id"])
                .or_else(|| text(&frame["by"]["id"]))
                .unwrap_or_default(),
            text: text(&frame["text"]),
        }
    }
}

/// What one client has received of one conversation.
#[derive(Debug, Clone, Default)]
pub struct ConversationView {
    /// Every record received, by `seq` (live, catch-up or gap-filling
    /// history).
    pub records: BTreeMap<u64, Seen>,
}

impl ConversationView {
    /// The highest `seq` received (0 for none): what `resume` names.
    pub fn max_seq(&self) -> u64 {
        self.records.keys().next_back().copied().unwrap_or(0)
    }

    /// Whether every `seq` from 1 to `last` was received.
    pub fn complete_up_to(&self, last: u64) -> bool {
        (1..=last).all(|seq| self.records.contains_key(&seq))
    }

    /// The `seq`s from 1 to `last` not received.
    pub fn missing_up_to(&self, last: u64) -> Vec<u64> {
        (1..=last)
            .filter(|seq| !self.records.contains_key(seq))
            .collect()
    }
}

/// The acknowledgement of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub conversation_id: String,
    pub id: String,
    pub seq: u64,
    pub text: String,
    /// How many `ack` frames named this `client_id` (more than one after
    /// a retry that the server recognised).
    pub acks: u32,
    /// How many times the send went out.
    pub attempts: u32,
    /// When the message was created.
    pub created: Instant,
    /// When the last attempt was queued, in unix milliseconds (comparable
    /// with a record's `sent_at`).
    pub last_attempt_ms: i64,
}

/// A send not acknowledged yet.
#[derive(Debug, Clone)]
pub struct Pending {
    pub client_id: String,
    pub conversation_id: String,
    pub text: String,
    pub created: Instant,
    pub attempts: u32,
    /// When the last attempt was queued, in unix milliseconds.
    pub last_attempt_ms: i64,
}

/// Counters of one client.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Connections that reached `welcome`.
    pub sessions: u64,
    /// Connections lost or dropped after which the client connected again.
    pub reconnects: u64,
    /// Hellos that named at least one conversation in `resume`.
    pub resumes: u64,
    /// Edges that refused the TCP or WebSocket connection.
    pub connect_failures: u64,
    /// `error` frames with code `unavailable`.
    pub unavailable: u64,
    /// `error` frames with code `rate_limited`.
    pub rate_limited: u64,
    /// Other `error` frames, by code.
    pub other_errors: BTreeMap<String, u64>,
    /// Close codes received from edges (1006: dropped without a close).
    pub closes: BTreeMap<u16, u64>,
    /// Sends that went out again with the same `client_id`.
    pub resends: u64,
    /// Reconnections made to learn about a conversation from its start.
    pub resyncs: u64,
    /// Records fetched with `history` to fill a jump in `seq`.
    pub gap_fills: u64,
    /// `ack` frames received, repeats included.
    pub ack_frames: u64,
    /// `resumed` frames saying more was missed than replayed.
    pub incomplete_resumes: u64,
}

/// Everything one client knows, shared with the test.
#[derive(Debug, Clone)]
pub struct ClientState {
    pub name: String,
    pub role: Role,
    /// The participant id (`v_…`, `a_…`) from `welcome`.
    pub participant_id: Option<String>,
    /// Conversations the client takes part in.
    pub conversations: BTreeMap<String, ConversationView>,
    /// Sends waiting for their `ack`, oldest first.
    pub pending: Vec<Pending>,
    /// Acknowledged sends by `client_id`.
    pub acks: BTreeMap<String, Ack>,
    /// Breaches of the contract seen by this client.
    pub violations: Vec<String>,
    pub stats: Stats,
    /// Messages created so far.
    pub produced: u64,
    /// The creation time of the newest message acknowledged so far.
    pub newest_acked: Option<Instant>,
    /// Whether the current connection got its `welcome`.
    pub connected: bool,
    /// The edge of the current (or last) connection.
    pub edge: Option<SocketAddr>,
}

impl ClientState {
    fn new(name: &str, role: Role) -> Self {
        Self {
            name: name.to_owned(),
            role,
            participant_id: None,
            conversations: BTreeMap::new(),
            pending: Vec::new(),
            acks: BTreeMap::new(),
            violations: Vec::new(),
            stats: Stats::default(),
            produced: 0,
            newest_acked: None,
            connected: false,
            edge: None,
        }
    }

    fn violation(&mut self, what: String) {
        tracing::warn!(client = %self.name, "{what}");
        self.violations.push(what);
    }

    /// Whether a message created after `t` has been acknowledged.
    pub fn acked_since(&self, t: Instant) -> bool {
        self.newest_acked.is_some_and(|newest| newest > t)
    }
}

/// How the clients behave.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// A visitor sends a message this often.
    pub visitor_every: Duration,
    /// An agent sends a message into each of its conversations this often.
    pub agent_every: Duration,
    /// Delay before a send refused as `unavailable` goes out again.
    pub retry_after: Duration,
    /// Frames a client sends per second at most (the edge allows 20).
    pub frames_per_sec: f64,
    /// Frames a client may send in one burst (the edge allows 40).
    pub frames_burst: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            visitor_every: Duration::from_millis(1000),
            agent_every: Duration::from_millis(2000),
            retry_after: Duration::from_millis(400),
            frames_per_sec: 10.0,
            frames_burst: 20.0,
        }
    }
}

/// The controls shared by every client.
#[derive(Debug, Default)]
struct Controls {
    sending: AtomicBool,
    stop: CancellationToken,
    seed: AtomicU64,
}

/// One simulated client.
pub struct Client {
    pub name: String,
    pub role: Role,
    pub state: Arc<Mutex<ClientState>>,
    task: JoinHandle<()>,
}

/// A crowd of simulated clients.
pub struct Sim {
    pub edges: Arc<EdgePool>,
    pub clients: Vec<Client>,
    config: SimConfig,
    controls: Arc<Controls>,
}

impl Sim {
    pub fn new(edges: Arc<EdgePool>, config: SimConfig) -> Self {
        let controls = Controls::default();
        controls.sending.store(true, Ordering::SeqCst);
        Self {
            edges,
            clients: Vec::new(),
            config,
            controls: Arc::new(controls),
        }
    }

    /// Starts a visitor: it opens one conversation (`start`) and then
    /// sends `"{name}-{i}"` (also its `client_id`) every
    /// [`SimConfig::visitor_every`].
    pub fn visitor(&mut self, name: &str, token: &str) {
        self.spawn(name, token, Role::Visitor);
    }

    /// Starts an agent: it takes every conversation it is assigned and
    /// sends `"{name}-{i}"` into each every [`SimConfig::agent_every`].
    pub fn agent(&mut self, name: &str, token: &str) {
        self.spawn(name, token, Role::Agent);
    }

    fn spawn(&mut self, name: &str, token: &str, role: Role) {
        let state = Arc::new(Mutex::new(ClientState::new(name, role)));
        let seed = self.controls.seed.fetch_add(0x9E37_79B9, Ordering::Relaxed) + 1;
        let runner = Runner {
            token: token.to_owned(),
            role,
            name: name.to_owned(),
            state: Arc::clone(&state),
            edges: Arc::clone(&self.edges),
            config: self.config.clone(),
            controls: Arc::clone(&self.controls),
            rng: Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1),
        };
        self.clients.push(Client {
            name: name.to_owned(),
            role,
            state,
            task: tokio::spawn(runner.run()),
        });
    }

    /// Clients stop creating new messages; they keep retrying what is
    /// pending and keep receiving.
    pub fn stop_sending(&self) {
        self.controls.sending.store(false, Ordering::SeqCst);
    }

    /// A copy of every client's state.
    pub fn snapshot(&self) -> Vec<ClientState> {
        self.clients
            .iter()
            .map(|c| lock(&c.state).clone())
            .collect()
    }

    /// Whether every client had a message created after `t` acknowledged.
    pub fn all_acked_since(&self, t: Instant) -> Result<(), String> {
        let behind: Vec<String> = self
            .clients
            .iter()
            .filter(|c| !lock(&c.state).acked_since(t))
            .map(|c| c.name.clone())
            .collect();
        if behind.is_empty() {
            Ok(())
        } else {
            Err(format!("no ack since the mark yet: {behind:?}"))
        }
    }

    /// Sum of one counter over every client.
    pub fn total(&self, counter: impl Fn(&ClientState) -> u64) -> u64 {
        self.clients.iter().map(|c| counter(&lock(&c.state))).sum()
    }

    /// Stops every client (closing its socket) and waits for the tasks.
    pub async fn shutdown(self) -> Vec<ClientState> {
        self.controls.stop.cancel();
        for client in &self.clients {
            if let Err(err) = tokio::time::timeout(crate::deadline(), async {
                while !client.task.is_finished() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            {
                tracing::warn!(client = %client.name, %err, "client task did not stop");
            }
        }
        let states = self.snapshot();
        for client in self.clients {
            client.task.abort();
        }
        states
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }
}

fn lock(state: &Mutex<ClientState>) -> MutexGuard<'_, ClientState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// xorshift64*: jitter without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A duration between `lo` and `hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
    }
}

/// How a connection ended.
enum End {
    /// Reconnect after this delay.
    Reconnect(Duration),
    /// The simulation is over.
    Stop,
}

/// Something to do later on this connection.
enum Later {
    /// Send this pending message again.
    Resend(String),
    /// Every pending message again (after `rate_limited`, which names none).
    ResendAll,
    /// `start` again.
    Start,
}

/// One connection's bookkeeping.
struct Conn {
    /// The `seq` expected next per conversation on this connection.
    expected: HashMap<String, u64>,
    welcomed: bool,
    /// `start` sent and not answered on this connection.
    start_sent: bool,
    /// Frames waiting for the client's own rate limit.
    outq: VecDeque<String>,
    tokens: f64,
    refilled: Instant,
    later: Vec<(Instant, Later)>,
    next_message: Instant,
}

struct Runner {
    token: String,
    role: Role,
    name: String,
    state: Arc<Mutex<ClientState>>,
    edges: Arc<EdgePool>,
    config: SimConfig,
    controls: Arc<Controls>,
    rng: Rng,
}

impl Runner {
    fn state(&self) -> MutexGuard<'_, ClientState> {
        lock(&self.state)
    }

    async fn run(mut self) {
        // Spread the clients' sending over the interval.
        let every = self.every();
        let mut next_message = Instant::now() + self.rng.millis(0, every.as_millis() as u64);
        let mut first = true;
        loop {
            if self.controls.stop.is_cancelled() {
                break;
            }
            let Some((socket, addr)) = self.connect().await else {
                let pause = self.rng.millis(100, 500);
                if self.sleep(pause).await {
                    break;
                }
                continue;
            };
            if !first {
                self.state().stats.reconnects += 1;
            }
            first = false;
            self.state().edge = Some(addr);
            let end = self.session(socket, &mut next_message).await;
            self.state().connected = false;
            match end {
                End::Stop => break,
                End::Reconnect(delay) => {
                    if self.sleep(delay).await {
                        break;
                    }
                }
            }
        }
        self.state().connected = false;
    }

    fn every(&self) -> Duration {
        match self.role {
            Role::Visitor => self.config.visitor_every,
            Role::Agent => self.config.agent_every,
        }
    }

    /// Sleeps; true when the simulation stopped meanwhile.
    async fn sleep(&self, delay: Duration) -> bool {
        tokio::select! {
            () = self.controls.stop.cancelled() => true,
            () = tokio::time::sleep(delay) => false,
        }
    }

    /// A WebSocket to the first edge that takes it, in turn.
    async fn connect(&mut self) -> Option<(Socket, SocketAddr)> {
        for addr in self.edges.candidates() {
            let url = format!("ws://{addr}/ws");
            match tokio::time::timeout(
                Duration::from_secs(3),
                tokio_tungstenite::connect_async(url),
            )
            .await
            {
                Ok(Ok((socket, _))) => return Some((socket, addr)),
                _ => self.state().stats.connect_failures += 1,
            }
        }
        None
    }

    async fn session(&mut self, mut socket: Socket, next_message: &mut Instant) -> End {
        let now = Instant::now();
        let mut conn = Conn {
            expected: HashMap::new(),
            welcomed: false,
            start_sent: false,
            outq: VecDeque::new(),
            tokens: self.config.frames_burst,
            refilled: now,
            later: Vec::new(),
            next_message: (*next_message).max(now),
        };
        let resume: serde_json::Map<String, Value> = {
            let state = self.state();
            state
                .conversations
                .iter()
                .map(|(id, view)| (id.clone(), json!(view.max_seq())))
                .collect()
        };
        for (id, last) in &resume {
            conn.expected
                .insert(id.clone(), last.as_u64().unwrap_or(0) + 1);
        }
        if !resume.is_empty() {
            self.state().stats.resumes += 1;
        }
        let hello = json!({ "type": "hello", "token": self.token, "resume": resume });
        if socket
            .send(Message::Text(hello.to_string().into()))
            .await
            .is_err()
        {
            return End::Reconnect(self.rng.millis(100, 500));
        }
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        // No welcome in this long: the edge is stuck; try another.
        let welcome_within = crate::scaled(Duration::from_secs(30));
        let welcome_by = Instant::now() + welcome_within;
        let end = loop {
            tokio::select! {
                () = self.controls.stop.cancelled() => break End::Stop,
                incoming = socket.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        let frame: Value = match serde_json::from_str(text.as_str()) {
                            Ok(frame) => frame,
                            Err(err) => {
                                self.state().violation(format!("non-JSON frame ({err}): {text}"));
                                continue;
                            }
                        };
                        if let Some(end) = self.on_frame(&mut conn, &frame) {
                            break end;
                        }
                    }
                    Some(Ok(Message::Close(close))) => {
                        let code = close.map_or(1005, |c| u16::from(c.code));
                        *self.state().stats.closes.entry(code).or_default() += 1;
                        break if code == 1012 {
                            End::Reconnect(Duration::ZERO)
                        } else {
                            End::Reconnect(self.rng.millis(100, 500))
                        };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        *self.state().stats.closes.entry(1006).or_default() += 1;
                        break End::Reconnect(self.rng.millis(100, 500));
                    }
                },
                _ = tick.tick() => {
                    if !conn.welcomed && Instant::now() > welcome_by {
                        self.state().violation(format!("no welcome within {welcome_within:?}"));
                        break End::Reconnect(Duration::ZERO);
                    }
                    self.on_tick(&mut conn);
                    if let Err(end) = self.flush(&mut socket, &mut conn).await {
                        break end;
                    }
                }
            }
        };
        *next_message = conn.next_message;
        let _ = tokio::time::timeout(Duration::from_millis(200), socket.close(None)).await;
        end
    }

    /// Sends what the client's own rate limit allows.
    async fn flush(&mut self, socket: &mut Socket, conn: &mut Conn) -> Result<(), End> {
        let now = Instant::now();
        let elapsed = now.duration_since(conn.refilled).as_secs_f64();
        conn.refilled = now;
        conn.tokens =
            (conn.tokens + elapsed * self.config.frames_per_sec).min(self.config.frames_burst);
        while conn.tokens >= 1.0 {
            let Some(frame) = conn.outq.pop_front() else {
                break;
            };
            conn.tokens -= 1.0;
            if socket.send(Message::Text(frame.into())).await.is_err() {
                return Err(End::Reconnect(self.rng.millis(100, 500)));
            }
        }
        Ok(())
    }

    /// Time-driven work: new messages, retries.
    fn on_tick(&mut self, conn: &mut Conn) {
        if !conn.welcomed {
            return;
        }
        let now = Instant::now();
        let due: Vec<Later> = {
            let (due, kept) = std::mem::take(&mut conn.later)
                .into_iter()
                .partition::<Vec<_>, _>(|(at, _)| *at <= now);
            conn.later = kept;
            due.into_iter().map(|(_, later)| later).collect()
        };
        for later in due {
            match later {
                Later::Resend(client_id) => self.resend(conn, &client_id),
                Later::ResendAll => {
                    let ids: Vec<String> = self
                        .state()
                        .pending
                        .iter()
                        .map(|p| p.client_id.clone())
                        .collect();
                    for id in ids {
                        self.resend(conn, &id);
                    }
                }
                Later::Start => {
                    if self.state().conversations.is_empty() && !conn.start_sent {
                        self.start(conn);
                    }
                }
            }
        }
        if now >= conn.next_message {
            conn.next_message = now + self.every();
            if self.controls.sending.load(Ordering::SeqCst) {
                self.produce(conn, now);
            }
        }
    }

    /// New messages: the visitor into its conversation, the agent into
    /// each of its conversations.
    fn produce(&mut self, conn: &mut Conn, now: Instant) {
        let mut state = self.state();
        let conversations: Vec<String> = state.conversations.keys().cloned().collect();
        for conversation in conversations {
            state.produced += 1;
            let client_id = format!("{}-{}", self.name, state.produced);
            state.pending.push(Pending {
                client_id: client_id.clone(),
                conversation_id: conversation.clone(),
                text: client_id.clone(),
                created: now,
                attempts: 1,
                last_attempt_ms: unix_ms(),
            });
            conn.outq
                .push_back(send_frame(&conversation, &client_id, &client_id, false));
        }
    }

    fn resend(&mut self, conn: &mut Conn, client_id: &str) {
        let mut state = self.state();
        let Some(pending) = state.pending.iter_mut().find(|p| p.client_id == client_id) else {
            return; // acknowledged meanwhile
        };
        pending.attempts += 1;
        pending.last_attempt_ms = unix_ms();
        // As the widget and the console do: a re-send says so.
        let frame = send_frame(
            &pending.conversation_id,
            &pending.client_id,
            &pending.text,
            true,
        );
        state.stats.resends += 1;
        conn.outq.push_back(frame);
    }

    fn start(&mut self, conn: &mut Conn) {
        conn.start_sent = true;
        conn.outq.push_back(json!({ "type": "start" }).to_string());
    }

    /// Handles one frame; `Some` ends the connection.
    fn on_frame(&mut self, conn: &mut Conn, frame: &Value) -> Option<End> {
        let kind = frame["type"].as_str().unwrap_or_default();
        match kind {
            "welcome" => self.on_welcome(conn, frame),
            "started" => self.on_started(conn, frame),
            "assigned" => self.on_assigned(conn, frame),
            "message" | "event" => {
                self.on_record(conn, frame);
                None
            }
            "ack" => {
                self.on_ack(frame);
                None
            }
            "history" => {
                self.on_history(frame);
                None
            }
            "resumed" => {
                self.on_resumed(conn, frame);
                None
            }
            "error" => self.on_error(conn, frame),
            // typing, read, notice: not used by the simulation.
            _ => None,
        }
    }

    fn on_welcome(&mut self, conn: &mut Conn, frame: &Value) -> Option<End> {
        conn.welcomed = true;
        let listed: Vec<String> = frame["conversations"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|c| c["conversation_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        {
            let mut state = self.state();
            state.connected = true;
            state.stats.sessions += 1;
            state.participant_id = frame["id"].as_str().map(str::to_owned);
            // An open conversation this client has not heard of (its
            // `assigned` or `started` was lost with a connection): learn it
            // from its first record by resuming it from 0.
            let unknown: Vec<&String> = listed
                .iter()
                .filter(|c| !state.conversations.contains_key(*c))
                .collect();
            if !unknown.is_empty() {
                for conversation in unknown {
                    state
                        .conversations
                        .insert(conversation.clone(), ConversationView::default());
                }
                state.stats.resyncs += 1;
                return Some(End::Reconnect(Duration::ZERO));
            }
        }
        let (no_conversation, pending, holes) = {
            let state = self.state();
            let pending: Vec<String> = state.pending.iter().map(|p| p.client_id.clone()).collect();
            let holes: Vec<(String, u64, u64)> = state
                .conversations
                .iter()
                .flat_map(|(id, view)| {
                    holes(view)
                        .into_iter()
                        .map(|(from, to)| (id.clone(), from, to))
                })
                .collect();
            (state.conversations.is_empty(), pending, holes)
        };
        if self.role == Role::Visitor && no_conversation {
            self.start(conn);
        }
        // Holes left by a jump whose history answer was lost with the last
        // connection: ask again, as the real clients do.
        for (conversation, from, to) in holes {
            request_history(conn, &conversation, from, to);
        }
        // Everything not acknowledged goes again, with the same client_id.
        for client_id in pending {
            self.resend(conn, &client_id);
        }
        None
    }

    fn on_started(&mut self, conn: &mut Conn, frame: &Value) -> Option<End> {
        conn.start_sent = false;
        let conversation = frame["conversation_id"].as_str()?.to_owned();
        let created = frame["created"].as_bool() == Some(true);
        let mut state = self.state();
        if state.conversations.contains_key(&conversation) {
            return None;
        }
        state
            .conversations
            .insert(conversation.clone(), ConversationView::default());
        if created {
            // A new conversation is delivered from its first record.
            conn.expected.insert(conversation, 1);
            None
        } else {
            // An existing one is followed from its end: resume it from 0.
            state.stats.resyncs += 1;
            Some(End::Reconnect(Duration::ZERO))
        }
    }

    fn on_assigned(&mut self, conn: &mut Conn, frame: &Value) -> Option<End> {
        let conversation = frame["conversation_id"].as_str()?.to_owned();
        let last_seq = frame["last_seq"].as_u64().unwrap_or(0);
        let mut state = self.state();
        if state.conversations.contains_key(&conversation) {
            return None;
        }
        state
            .conversations
            .insert(conversation.clone(), ConversationView::default());
        // Its records follow from seq 1 (the newest 500 at most).
        conn.expected
            .insert(conversation, last_seq.saturating_sub(500) + 1);
        None
    }

    fn on_record(&mut self, conn: &mut Conn, frame: &Value) {
        let Some(conversation) = frame["conversation_id"].as_str() else {
            self.state()
                .violation(format!("record without conversation_id: {frame}"));
            return;
        };
        let Some(seq) = frame["seq"].as_u64() else {
            self.state()
                .violation(format!("record without seq: {frame}"));
            return;
        };
        let seen = Seen::from_frame(frame);
        let edge = self.state().edge;
        let mut state = self.state();
        let Some(view) = state.conversations.get(conversation) else {
            state.violation(format!(
                "record of a conversation never announced to this client: {frame}"
            ));
            return;
        };
        let previous = view.records.get(&seq).cloned();
        let expected = conn.expected.get(conversation).copied();
        let mut gap = None;
        match expected {
            Some(next) if seq < next => {
                state.violation(format!(
                    "repeated seq {seq} in {conversation} (expected {next}) via {edge:?}"
                ));
            }
            Some(next) if seq > next => {
                state.violation(format!(
                    "seq jumped from {} to {seq} in {conversation} via {edge:?}",
                    next - 1
                ));
                gap = Some((next, seq));
            }
            Some(_) => {}
            None => {
                state.violation(format!(
                    "record {seq} of {conversation} before it was announced on this connection"
                ));
            }
        }
        if let Some(previous) = previous {
            if previous != seen {
                state.violation(format!(
                    "two different records at seq {seq} of {conversation}: {previous:?} and {seen:?}"
                ));
            } else if expected.is_none_or(|next| seq >= next) {
                state.violation(format!(
                    "seq {seq} of {conversation} delivered again on a later connection"
                ));
            }
        } else if let Some(view) = state.conversations.get_mut(conversation) {
            view.records.insert(seq, seen);
        }
        let next = expected.map_or(seq + 1, |next| next.max(seq + 1));
        conn.expected.insert(conversation.to_owned(), next);
        drop(state);
        // Fill the jump with history, as the real clients do, so the rest
        // of the checks can go on.
        if let Some((from, to)) = gap {
            request_history(conn, conversation, from, to);
        }
    }

    /// The outcome of a `resume` entry: when more was missed than the edge
    /// replays, the replay starts at `first_seq` and the rest is paged with
    /// `history`.
    fn on_resumed(&mut self, conn: &mut Conn, frame: &Value) {
        let (Some(conversation), Some(after), Some(first)) = (
            frame["conversation_id"].as_str(),
            frame["after"].as_u64(),
            frame["first_seq"].as_u64(),
        ) else {
            self.state()
                .violation(format!("unreadable resumed frame: {frame}"));
            return;
        };
        if frame["complete"].as_bool() == Some(false) && first > after + 1 {
            self.state().stats.incomplete_resumes += 1;
            conn.expected.insert(conversation.to_owned(), first);
            request_history(conn, conversation, after + 1, first);
        }
    }

    fn on_history(&mut self, frame: &Value) {
        let Some(conversation) = frame["conversation_id"].as_str() else {
            return;
        };
        let mut state = self.state();
        let mut filled = 0;
        let mut conflicts = Vec::new();
        if let Some(view) = state.conversations.get_mut(conversation) {
            for item in frame["items"].as_array().into_iter().flatten() {
                let Some(seq) = item["seq"].as_u64() else {
                    continue;
                };
                let seen = Seen::from_frame(item);
                match view.records.get(&seq) {
                    Some(known) if *known != seen => {
                        conflicts.push(format!(
                            "history disagrees at seq {seq} of {conversation}: {known:?} vs {seen:?}"
                        ));
                    }
                    Some(_) => {}
                    None => {
                        view.records.insert(seq, seen);
                        filled += 1;
                    }
                }
            }
        }
        state.stats.gap_fills += filled;
        for conflict in conflicts {
            state.violation(conflict);
        }
    }

    fn on_ack(&mut self, frame: &Value) {
        let client_id = frame["client_id"].as_str().unwrap_or_default().to_owned();
        let conversation = frame["conversation_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let id = frame["id"].as_str().unwrap_or_default().to_owned();
        let Some(seq) = frame["seq"].as_u64() else {
            self.state().violation(format!("ack without seq: {frame}"));
            return;
        };
        let mut state = self.state();
        state.stats.ack_frames += 1;
        if let Some(known) = state.acks.get_mut(&client_id) {
            known.acks += 1;
            if known.id != id || known.seq != seq || known.conversation_id != conversation {
                let known = known.clone();
                state.violation(format!(
                    "retry of {client_id} acknowledged as a different message: first {}@{} then {id}@{seq}",
                    known.id, known.seq
                ));
            }
            return;
        }
        let Some(index) = state.pending.iter().position(|p| p.client_id == client_id) else {
            state.violation(format!("ack of a client_id never sent: {frame}"));
            return;
        };
        let pending = state.pending.remove(index);
        if pending.conversation_id != conversation {
            state.violation(format!(
                "ack of {client_id} names conversation {conversation}, sent to {}",
                pending.conversation_id
            ));
        }
        state.newest_acked = Some(
            state
                .newest_acked
                .map_or(pending.created, |t| t.max(pending.created)),
        );
        state.acks.insert(
            client_id,
            Ack {
                conversation_id: conversation,
                id,
                seq,
                text: pending.text,
                acks: 1,
                attempts: pending.attempts,
                created: pending.created,
                last_attempt_ms: pending.last_attempt_ms,
            },
        );
    }

    fn on_error(&mut self, conn: &mut Conn, frame: &Value) -> Option<End> {
        let code = frame["code"].as_str().unwrap_or_default().to_owned();
        let reference = frame["ref"].as_str().map(str::to_owned);
        let backoff = self.rng.millis(100, 500);
        let mut state = self.state();
        match code.as_str() {
            "unavailable" => state.stats.unavailable += 1,
            "rate_limited" => state.stats.rate_limited += 1,
            other => {
                *state
                    .stats
                    .other_errors
                    .entry(other.to_owned())
                    .or_default() += 1
            }
        }
        let later = Instant::now() + self.config.retry_after;
        let pending = reference
            .as_ref()
            .is_some_and(|r| state.pending.iter().any(|p| &p.client_id == r));
        match (code.as_str(), reference.as_deref()) {
            ("rate_limited", _) => {
                conn.later.push((later, Later::ResendAll));
                None
            }
            ("unavailable", Some(r)) if pending => {
                conn.later.push((later, Later::Resend(r.to_owned())));
                None
            }
            (_, Some(r)) if pending => {
                // Refused for good: the contract says this never happens
                // to a valid send into one's own open conversation.
                state.violation(format!("send {r} refused: {frame}"));
                state.pending.retain(|p| p.client_id != r);
                None
            }
            (_, Some("start")) => {
                conn.start_sent = false;
                if state.conversations.is_empty() {
                    conn.later.push((later, Later::Start));
                    None
                } else {
                    // Started, but following it failed: connect again.
                    Some(End::Reconnect(backoff))
                }
            }
            ("unavailable", _) => {
                // `hello`, a resumed conversation, or an agent's new
                // conversation could not be caught up: connect again.
                Some(End::Reconnect(backoff))
            }
            _ => {
                state.violation(format!("unexpected error frame: {frame}"));
                None
            }
        }
    }
}

/// Wall-clock now in unix milliseconds.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The missing ranges `[from, to)` below the highest `seq` received.
fn holes(view: &ConversationView) -> Vec<(u64, u64)> {
    let mut holes = Vec::new();
    let mut next = 1;
    for &seq in view.records.keys() {
        if seq > next {
            holes.push((next, seq));
        }
        next = seq + 1;
    }
    holes
}

/// Asks for the records from `from` to before `to` with `history` pages.
fn request_history(conn: &mut Conn, conversation: &str, from: u64, to: u64) {
    let mut before = to;
    while before > from {
        let limit = (before - from).min(100);
        conn.outq.push_back(
            json!({
                "type": "history",
                "conversation_id": conversation,
                "before_seq": before,
                "limit": limit,
            })
            .to_string(),
        );
        before -= limit;
    }
}

fn send_frame(conversation: &str, client_id: &str, text: &str, retry: bool) -> String {
    let mut frame = json!({
        "type": "send",
        "conversation_id": conversation,
        "client_id": client_id,
        "text": text,
    });
    if retry {
        frame["retry"] = json!(true);
    }
    frame.to_string()
}
