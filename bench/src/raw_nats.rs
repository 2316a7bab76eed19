//! `raw-nats`: the `chat` closed loop straight over NATS, no edges: what
//! the backbone alone allows on this machine.
//!
//! A stream shaped like the production `CHAT` stream (same subjects under
//! a prefix, same storage, retention, duplicate window and RePublish, see
//! `switchboard_bus::backbone`) under its own name, so it never collides
//! with `CHAT` on a shared server. Two NATS connections stand for the two
//! edges: the visitors' and the agents'. Each side subscribes (core NATS)
//! to every conversation's republished feed, as an edge's hub does, one
//! subscription per conversation. A message is a real `ChatRecord`
//! (MessagePack) published with a JetStream publish carrying the edge's
//! headers (expected last subject sequence, message id, previous) and
//! awaited until acknowledged, as an edge's append is.
//!
//! The loop: the visitor appends, the agent receives the republished
//! record (end-to-end latency) and appends its reply at once, the visitor
//! receives it (round trip) and appends the next. Latencies, counts and
//! the report are `chat`'s.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_nats::jetstream::{self, context::Publish, stream};
use futures::StreamExt;
use switchboard_config::{NatsSettings, StorageKind};
use switchboard_protocol::ids::{AgentId, ConversationId, MessageId, VisitorId};
use switchboard_protocol::payloads::{decode, encode, ChatRecord, Participant, RecordBody, Role};
use switchboard_protocol::subjects;
use switchboard_protocol::time::now_ms;
use tokio::sync::watch;

use crate::chat::{ChatReport, Shared, Tally};
use crate::cpu::{self, Watched};
use crate::net;
use crate::now_ns;
use crate::stats::Errors;

/// The baseline's stream: never `CHAT`.
pub const STREAM: &str = "BENCH_RAW_CHAT";
/// Put before every production subject, so that the baseline's subjects
/// overlap no production stream's.
const PREFIX: &str = "rawbench.";

#[derive(Debug, Clone)]
pub struct RawNatsConfig {
    pub nats_url: String,
    pub pairs: usize,
    pub secs: f64,
    pub warmup: f64,
    pub drain: Duration,
    /// Processes to report the CPU of (nats-server).
    pub cpu: Vec<Watched>,
}

/// The stream's configuration: production's `CHAT` with the defaults of
/// `nats.*`, under [`STREAM`] and [`PREFIX`].
pub fn stream_config(settings: &NatsSettings) -> stream::Config {
    stream::Config {
        name: STREAM.to_owned(),
        description: Some("switchboard-bench raw-nats baseline".to_owned()),
        subjects: vec![format!("{PREFIX}{}", subjects::CHAT_SUBJECTS)],
        max_age: settings.retention.get(),
        max_bytes: settings.max_bytes,
        storage: match settings.storage {
            StorageKind::File => stream::StorageType::File,
            StorageKind::Memory => stream::StorageType::Memory,
        },
        num_replicas: settings.replicas,
        duplicate_window: settings.duplicate_window.get(),
        allow_direct: true,
        republish: Some(stream::Republish {
            source: format!("{PREFIX}{}", subjects::LIVE_REPUBLISH_SOURCE),
            destination: format!("{PREFIX}{}", subjects::LIVE_REPUBLISH_DEST),
            headers_only: false,
        }),
        ..Default::default()
    }
}

/// One side of one conversation: who writes, where, and the tail it knows.
struct Side {
    js: jetstream::Context,
    conversation: ConversationId,
    subject: String,
    me: Participant,
    /// The conversation's last `seq` and its stream sequence.
    seq: u64,
    stream_seq: u64,
}

impl Side {
    /// Appends a message as an edge does; returns once JetStream stored it.
    async fn append(&mut self, text: String, client_id: String) -> Result<(), String> {
        let key = format!(
            "{}.{}.{}.{client_id}",
            self.conversation,
            self.me.role.as_str(),
            self.me.id
        );
        let record = ChatRecord {
            id: MessageId::generate(),
            conversation_id: self.conversation.clone(),
            seq: self.seq + 1,
            sender: self.me.clone(),
            sent_at: now_ms(),
            body: RecordBody::Message { text, client_id },
        };
        let payload = encode(&record).map_err(|e| format!("encode: {e}"))?;
        let publish = Publish::build()
            .payload(payload.into())
            .expected_last_subject_sequence(self.stream_seq)
            .header(
                subjects::PREVIOUS_HEADER,
                self.stream_seq.to_string().as_str(),
            )
            .message_id(key);
        let ack = match self.js.send_publish(self.subject.clone(), publish).await {
            Ok(future) => future.await,
            Err(e) => Err(e),
        }
        .map_err(|e| format!("publish {:?}", e.kind()))?;
        self.seq = self.seq.max(record.seq);
        self.stream_seq = self.stream_seq.max(ack.sequence);
        Ok(())
    }

    /// Decodes a live record and notes the tail it shows.
    fn observe(&mut self, message: &async_nats::Message) -> Option<ChatRecord> {
        let record: ChatRecord = decode(&message.payload).ok()?;
        self.seq = self.seq.max(record.seq);
        if let Some(stream_seq) = message
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_SEQUENCE))
            .and_then(|v| v.as_str().parse::<u64>().ok())
        {
            self.stream_seq = self.stream_seq.max(stream_seq);
        }
        Some(record)
    }
}

fn message_text(record: &ChatRecord) -> Option<&str> {
    match &record.body {
        RecordBody::Message { text, .. } => Some(text),
        RecordBody::Event { .. } => None,
    }
}

/// The visitor of one conversation: sends, waits for the reply, sends on.
async fn visitor(
    mut side: Side,
    mut feed: async_nats::Subscriber,
    shared: Arc<Shared>,
    drain_until: u64,
) -> Tally {
    let mut tally = Tally::default();
    let end = shared.window_end.load(Ordering::Relaxed);
    let deadline = tokio::time::sleep_until(crate::instant_at(drain_until).into());
    tokio::pin!(deadline);
    while now_ns() < end {
        let t = now_ns();
        if let Err(error) = side.append(format!("t{t}"), format!("c{t}")).await {
            tally.errors.add(format!("visitor {error}"));
            return tally;
        }
        shared.visitor_acked.fetch_add(1, Ordering::Relaxed);
        if shared.in_window(t) {
            tally.ack.record_ns(now_ns().saturating_sub(t));
        }
        // Everything of the conversation arrives, the visitor's own record
        // first: read on until the agent's reply.
        loop {
            let message = tokio::select! {
                message = feed.next() => message,
                () = &mut deadline => return tally,
            };
            let Some(message) = message else {
                tally.errors.add("visitor feed ended");
                return tally;
            };
            let now = now_ns();
            let Some(record) = side.observe(&message) else {
                tally.errors.add("undecodable record");
                continue;
            };
            if record.sender.role != Role::Agent {
                continue;
            }
            shared.visitor_received.fetch_add(1, Ordering::Relaxed);
            if shared.in_window(now) {
                tally.arrived += 1;
            }
            if let Some(sent) = message_text(&record).and_then(net::stamp) {
                if shared.in_window(sent) {
                    tally.round_trip.record_ns(now.saturating_sub(sent));
                    tally.round_trips += 1;
                    tally.received += 1;
                }
            }
            break;
        }
    }
    tally
}

/// The agent of one conversation: answers each visitor message at once.
async fn agent(
    mut side: Side,
    mut feed: async_nats::Subscriber,
    shared: Arc<Shared>,
    mut done: watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        let message = tokio::select! {
            _ = done.changed() => break,
            message = feed.next() => message,
        };
        let Some(message) = message else {
            tally.errors.add("agent feed ended");
            break;
        };
        let now = now_ns();
        let Some(record) = side.observe(&message) else {
            tally.errors.add("undecodable record");
            continue;
        };
        if record.sender.role != Role::Visitor {
            continue;
        }
        shared.agent_received.fetch_add(1, Ordering::Relaxed);
        if shared.in_window(now) {
            tally.arrived += 1;
        }
        let Some(text) = message_text(&record) else {
            continue;
        };
        if let Some(sent) = net::stamp(text) {
            if shared.in_window(sent) {
                tally.e2e.record_ns(now.saturating_sub(sent));
                tally.received += 1;
            }
        }
        let replied = now_ns();
        if let Err(error) = side.append(text.to_owned(), format!("r{replied}")).await {
            tally.errors.add(format!("agent {error}"));
            continue;
        }
        shared.agent_acked.fetch_add(1, Ordering::Relaxed);
        if shared.in_window(replied) {
            tally.ack.record_ns(now_ns().saturating_sub(replied));
        }
    }
    tally
}

/// Runs `raw-nats`.
pub async fn run(config: &RawNatsConfig) -> Result<ChatReport> {
    if config.pairs == 0 {
        bail!("raw-nats needs at least one pair");
    }
    let setup_started = Instant::now();
    let settings = NatsSettings {
        url: config.nats_url.clone(),
        connection_name: "switchboard".into(),
        ..Default::default()
    };
    let connect = |component: &'static str| {
        let settings = settings.clone();
        async move {
            switchboard_bus::connect(&settings, component)
                .await
                .map(|(client, _)| client)
                .with_context(|| format!("connect to NATS at {}", config.nats_url))
        }
    };
    let visitors_nats = connect("bench-raw-visitors").await?;
    let agents_nats = connect("bench-raw-agents").await?;
    let jetstream_of = |client: &async_nats::Client| {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(settings.request_timeout.get());
        js
    };
    let (visitors_js, agents_js) = (jetstream_of(&visitors_nats), jetstream_of(&agents_nats));
    visitors_js
        .get_or_create_stream(stream_config(&settings))
        .await
        .with_context(|| format!("create the {STREAM} stream"))?;

    let shared = Arc::new(Shared::default());
    let (done_tx, done_rx) = watch::channel(false);
    let mut pairs = Vec::with_capacity(config.pairs);
    for _ in 0..config.pairs {
        let conversation = ConversationId::generate();
        let subject = format!("{PREFIX}{}", subjects::conversation(&conversation));
        let feed = format!("{PREFIX}{}", subjects::conversation_feed(&conversation));
        let side = |js: &jetstream::Context, me: Participant| Side {
            js: js.clone(),
            conversation: conversation.clone(),
            subject: subject.clone(),
            me,
            seq: 0,
            stream_seq: 0,
        };
        let visitor_side = side(
            &visitors_js,
            Participant::visitor(&VisitorId::generate(), "Bench visitor"),
        );
        let agent_side = side(
            &agents_js,
            Participant::agent(&AgentId::generate(), "Bench agent"),
        );
        let visitor_feed = visitors_nats
            .subscribe(feed.clone())
            .await
            .context("subscribe the visitor side")?;
        let agent_feed = agents_nats
            .subscribe(feed)
            .await
            .context("subscribe the agent side")?;
        pairs.push((visitor_side, visitor_feed, agent_side, agent_feed));
    }
    // Every subscription is in place at the server before the first send.
    visitors_nats.flush().await.context("flush subscriptions")?;
    agents_nats.flush().await.context("flush subscriptions")?;
    let setup_secs = setup_started.elapsed().as_secs_f64();

    let begin = now_ns();
    let window_start = begin + (config.warmup * 1e9) as u64;
    let window_end = window_start + (config.secs * 1e9) as u64;
    shared.window_start.store(window_start, Ordering::Relaxed);
    shared.window_end.store(window_end, Ordering::Relaxed);
    let cpu_window = cpu::spawn_window(&config.cpu, window_start, window_end);
    let drain_until = window_end + u64::try_from(config.drain.as_nanos()).unwrap_or(u64::MAX);
    let mut agents = Vec::with_capacity(pairs.len());
    let mut visitors = Vec::with_capacity(pairs.len());
    for (visitor_side, visitor_feed, agent_side, agent_feed) in pairs {
        agents.push(tokio::spawn(agent(
            agent_side,
            agent_feed,
            shared.clone(),
            done_rx.clone(),
        )));
        visitors.push(tokio::spawn(visitor(
            visitor_side,
            visitor_feed,
            shared.clone(),
            drain_until,
        )));
    }
    let (tally, agent_tally) =
        Tally::collect(visitors, agents, &shared, config.drain, &done_tx).await?;
    let mut errors = Errors::default();
    errors.merge(&tally.errors);
    // The baseline leaves nothing behind on a shared server.
    if visitors_js.delete_stream(STREAM).await.is_err() {
        errors.add("delete the baseline stream");
    }

    let visitor_acked = shared.visitor_acked.load(Ordering::Relaxed);
    let agent_received = shared.agent_received.load(Ordering::Relaxed);
    let agent_acked = shared.agent_acked.load(Ordering::Relaxed);
    let visitor_received = shared.visitor_received.load(Ordering::Relaxed);
    let messages = agent_tally.received + tally.round_trips;
    let cpu = cpu::per_message(cpu_window.await.context("cpu sampler")?, messages);
    Ok(ChatReport {
        scenario: "raw-nats",
        mode: "closed",
        pairs: config.pairs,
        pairs_ready: config.pairs,
        // One connection answers for every agent, as an agent edge does.
        agents: 1,
        offered_rate: None,
        secs: config.secs,
        setup_secs,
        round_trips: tally.round_trips,
        round_trips_per_sec: tally.round_trips as f64 / config.secs,
        messages,
        messages_per_sec: messages as f64 / config.secs,
        delivered_per_sec: tally.arrived as f64 / config.secs,
        e2e: tally.e2e.summary(),
        ack: tally.ack.summary(),
        round_trip: tally.round_trip.summary(),
        errors,
        lost: visitor_acked.saturating_sub(agent_received)
            + agent_acked.saturating_sub(visitor_received),
        cpu,
    })
}
