//! The writer half of one connection. Every frame for the client passes
//! through its bounded queue; stored records are delivered in `seq` order,
//! once each, with gaps repaired from the stream:
//!
//! - a record whose `seq` the client already has is dropped (it came both
//!   live and from a catch-up, say);
//! - while a conversation is being caught up (after `BeginCatchUp`), live
//!   records are held back and merged after the replayed ones;
//! - a jump in `seq` (a live message lost during a NATS reconnect) is
//!   filled by reading the missing records from the stream first.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use switchboard_bus::ConversationLog;
use switchboard_protocol::frames::ServerFrame;
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::{encode, ChatRecord, Participant, Role, Signal};
use switchboard_protocol::subjects;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::transport::{Sink, WriteError};

/// Close code for a client that does not read what it is sent.
pub const SLOW_CONSUMER: u16 = 1008;
/// How long a dropped slow client has to read up to its close frame.
const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(10);

/// The writer's timing (`edge.ping_interval`, `edge.write_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct WriterTiming {
    /// How often the client is pinged; its pongs keep the connection alive.
    pub ping_interval: Duration,
    /// Longest one write to the socket may take before the client is
    /// given up (a peer that stopped reading with full buffers).
    pub write_timeout: Duration,
    /// How long received records are gathered before one `delivered`
    /// receipt per conversation tells the others (`edge.receipt_delay`).
    pub receipt_delay: Duration,
}

/// Something for the client.
#[derive(Debug)]
pub enum Outbound {
    /// A frame delivered as it is.
    Frame(Arc<str>),
    /// A stored record (`message` or `event`), ordered by `seq`.
    Record {
        conversation: ConversationId,
        seq: u64,
        json: Arc<str>,
        /// Sent by the client's own participant (this tab or another tab
        /// of the same person): delivering it tells the others nothing, so
        /// it alone is not worth a `delivered` receipt.
        own: bool,
    },
    /// Hold back live records of this conversation until its `CatchUp`.
    BeginCatchUp(ConversationId),
    /// Stop holding a conversation's live records without knowing where
    /// the client is: they are delivered as they come.
    AbortCatchUp(ConversationId),
    /// The client has everything up to `after`; here is what follows it.
    CatchUp {
        conversation: ConversationId,
        after: u64,
        records: Vec<ChatRecord>,
        /// Nothing after this `seq` is the client's: the conversation left
        /// it (an agent's) while it was being caught up. Live records held
        /// meanwhile past it are dropped.
        until: Option<u64>,
    },
    /// Send a close frame and stop.
    Close { code: u16, reason: String },
    /// From now on, tell the other participants what this client received
    /// (`delivered` receipts), as `recipient`.
    Receipts(Box<(Participant, async_nats::Client)>),
}

impl Outbound {
    pub fn frame(frame: &ServerFrame) -> Self {
        if let ServerFrame::Error { code, .. } = frame {
            switchboard_metrics::edge::edge().error(*code);
        }
        Outbound::Frame(frame.to_json().into())
    }
}

/// The sending side, shared by the session and the hub.
#[derive(Clone, Debug)]
pub struct OutboxHandle {
    pub tx: mpsc::Sender<Outbound>,
    /// Cancelled when the client must be dropped for not reading.
    pub kick: CancellationToken,
    /// Cancelled when the writer has stopped (the client is gone, or was
    /// sent its close): the session ends with it.
    pub gone: CancellationToken,
}

impl OutboxHandle {
    /// Queues without waiting; a full queue drops the connection.
    pub fn offer(&self, outbound: Outbound) {
        match self.tx.try_send(outbound) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("outbound queue full, dropping slow client");
                self.kick.cancel();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Queues the session's own answers. A client that sends without
    /// reading fills its queue with them like any other: it is dropped as
    /// a slow client, and the session never waits on it.
    pub async fn send(&self, outbound: Outbound) {
        self.offer(outbound);
    }

    pub async fn frame(&self, frame: &ServerFrame) {
        self.send(Outbound::frame(frame)).await;
    }
}

struct Writer {
    sink: Sink,
    write_timeout: Duration,
    log: ConversationLog,
    receipts: Option<(Participant, async_nats::Client)>,
    /// Whose eyes records are rendered for: a visitor until `hello` said
    /// otherwise.
    viewer: Role,
    /// Highest `seq` written per conversation since the last receipts.
    unreported: HashMap<ConversationId, u64>,
    /// Highest `seq` delivered per conversation.
    delivered: HashMap<ConversationId, u64>,
    /// Live records held back while a conversation is caught up.
    held: HashMap<ConversationId, Vec<(u64, Arc<str>, bool)>>,
}

enum Step {
    Deliver(Outbound),
    Ping,
}

enum Flow {
    Continue,
    Stop,
}

/// How handling one step ended.
enum Handled {
    Done(Flow),
    /// The client is dropped for not reading.
    Kicked,
    /// The edge shuts down.
    Restarting,
}

/// Runs the writer until the queue closes, a close is sent, the client is
/// kicked, a write fails or times out, or the edge shuts down (close
/// 1012). However it ends, the session is told (`gone`): a connection
/// nobody can write to is over.
pub async fn run(
    sink: Sink,
    rx: mpsc::Receiver<Outbound>,
    log: ConversationLog,
    handle: OutboxHandle,
    shutdown: CancellationToken,
    timing: WriterTiming,
) {
    let gone = handle.gone.clone();
    let kick = handle.kick.clone();
    // The writer's own handle would keep its queue open: only the kick
    // and gone tokens are kept.
    drop(handle);
    Box::pin(write_until_done(sink, rx, log, kick, shutdown, timing)).await;
    gone.cancel();
}

async fn write_until_done(
    sink: Sink,
    mut rx: mpsc::Receiver<Outbound>,
    log: ConversationLog,
    kick: CancellationToken,
    shutdown: CancellationToken,
    timing: WriterTiming,
) {
    // The writer's handling is boxed (see `session::serve`): this task lives
    // as long as the connection, mostly idle in the first `select!`.
    let mut writer = Writer {
        sink,
        write_timeout: timing.write_timeout,
        log,
        receipts: None,
        viewer: Role::Visitor,
        unreported: HashMap::new(),
        delivered: HashMap::new(),
        held: HashMap::new(),
    };
    let mut ping = tokio::time::interval(timing.ping_interval);
    ping.tick().await;
    // Set when the first record after the last receipts is written; boxed
    // and dropped once fired, so an idle connection carries no timer.
    let mut receipts_due: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        let next = tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                Box::pin(writer.close(switchboard_protocol::frames::close_code::RESTARTING, "server restarting")).await;
                return;
            }
            () = kick.cancelled() => {
                Box::pin(writer.drop_slow_consumer()).await;
                return;
            }
            next = rx.recv() => match next {
                Some(outbound) => Step::Deliver(outbound),
                None => return,
            },
            _ = ping.tick() => Step::Ping,
            () = async {
                if let Some(due) = receipts_due.as_mut() {
                    due.await;
                }
            }, if receipts_due.is_some() => {
                receipts_due = None;
                Box::pin(writer.send_receipts()).await;
                continue;
            }
        };
        let handled = tokio::select! {
            biased;
            () = kick.cancelled() => Handled::Kicked,
            () = shutdown.cancelled() => Handled::Restarting,
            flow = writer.step(next) => Handled::Done(flow),
        };
        let flow = match handled {
            Handled::Done(flow) => flow,
            Handled::Kicked => {
                Box::pin(writer.drop_slow_consumer()).await;
                Flow::Stop
            }
            Handled::Restarting => {
                Box::pin(writer.close(
                    switchboard_protocol::frames::close_code::RESTARTING,
                    "server restarting",
                ))
                .await;
                Flow::Stop
            }
        };
        if let Flow::Stop = flow {
            return;
        }
        // Frames are buffered and go out when the queue is drained (one
        // write for a burst). Receipts follow `receipt_delay` after the
        // first record they cover: one per conversation however many
        // records were written meanwhile. Before writing, the
        // tasks woken by the same NATS read get their turn: a message's
        // `ack` and its echo, or a reply and the receipt before it, then
        // leave in one system call instead of two.
        if rx.is_empty() {
            tokio::task::yield_now().await;
        }
        if rx.is_empty() {
            if let Flow::Stop = writer.flush().await {
                return;
            }
            if timing.receipt_delay.is_zero() {
                if !writer.unreported.is_empty() {
                    Box::pin(writer.send_receipts()).await;
                }
            } else if receipts_due.is_none() && !writer.unreported.is_empty() {
                receipts_due = Some(Box::pin(tokio::time::sleep(timing.receipt_delay)));
            }
        }
    }
}

impl Writer {
    /// One step of the writer. What most frames are (a frame as it is, the
    /// next record of a conversation) is written here; the rest (catch-ups,
    /// gap repairs, pings) in a boxed future, which keeps this one, and so
    /// every idle connection's task, small.
    async fn step(&mut self, step: Step) -> Flow {
        match step {
            Step::Deliver(Outbound::Frame(json)) => self.write_text(&json).await,
            Step::Deliver(Outbound::Record {
                conversation,
                seq,
                json,
                own,
            }) if !self.held.contains_key(&conversation)
                && self
                    .delivered
                    .get(&conversation)
                    .is_none_or(|last| seq == last + 1) =>
            {
                self.mark_delivered(&conversation, seq, !own);
                self.write_text(&json).await
            }
            Step::Deliver(outbound) => Box::pin(self.handle(outbound)).await,
            Step::Ping => {
                let pinged = Box::pin(self.sink.ping()).await;
                self.written(pinged)
            }
        }
    }

    fn mark_delivered(&mut self, conversation: &ConversationId, seq: u64, due: bool) {
        self.delivered.insert(conversation.clone(), seq);
        if self.receipts.is_some() && due {
            self.unreported.insert(conversation.clone(), seq);
        }
    }

    async fn handle(&mut self, outbound: Outbound) -> Flow {
        match outbound {
            Outbound::Frame(json) => self.write_text(&json).await,
            Outbound::Record {
                conversation,
                seq,
                json,
                own,
            } => {
                if let Some(held) = self.held.get_mut(&conversation) {
                    held.push((seq, json, own));
                    return Flow::Continue;
                }
                self.deliver(&conversation, seq, &json, own).await
            }
            Outbound::BeginCatchUp(conversation) => {
                self.held.entry(conversation).or_default();
                Flow::Continue
            }
            Outbound::AbortCatchUp(conversation) => self.release_held(&conversation, None).await,
            Outbound::CatchUp {
                conversation,
                after,
                records,
                until,
            } => {
                let delivered = self.delivered.entry(conversation.clone()).or_insert(after);
                *delivered = (*delivered).max(after);
                for record in &records {
                    let json = ServerFrame::from_record(record, &self.viewer).to_json();
                    let own = self.is_own(record);
                    if let Flow::Stop = self.deliver(&conversation, record.seq, &json, own).await {
                        return Flow::Stop;
                    }
                }
                self.release_held(&conversation, until).await
            }
            Outbound::Close { code, reason } => {
                self.close(code, &reason).await;
                Flow::Stop
            }
            Outbound::Receipts(receipts) => {
                self.viewer = receipts.0.role.clone();
                self.receipts = Some(*receipts);
                Flow::Continue
            }
        }
    }

    async fn send_receipts(&mut self) {
        let Some((recipient, client)) = &self.receipts else {
            return;
        };
        for (conversation, seq) in self.unreported.drain() {
            let signal = Signal::Delivered {
                recipient: recipient.clone(),
                seq,
            };
            let Ok(payload) = encode(&signal) else {
                continue;
            };
            if let Err(err) = client
                .publish(subjects::signal(&conversation), payload.into())
                .await
            {
                tracing::debug!(error = %err, %conversation, "delivery receipt not sent");
            }
        }
    }

    /// Delivers the live records held during a catch-up, in `seq` order,
    /// up to `until`.
    async fn release_held(&mut self, conversation: &ConversationId, until: Option<u64>) -> Flow {
        let mut held = self.held.remove(conversation).unwrap_or_default();
        held.retain(|(seq, _, _)| until.is_none_or(|until| *seq <= until));
        held.sort_by_key(|(seq, _, _)| *seq);
        for (seq, json, own) in held {
            if let Flow::Stop = self.deliver(conversation, seq, &json, own).await {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// Whether the client's own participant sent a record.
    fn is_own(&self, record: &ChatRecord) -> bool {
        self.receipts
            .as_ref()
            .is_some_and(|(me, _)| me.id == record.sender.id)
    }

    /// Delivers one record in order: drops what the client has, repairs a
    /// gap before it. A receipt is due for it unless it is the client's
    /// `own` (a receipt covers every `seq` up to its own, so the next one
    /// still tells the others about records the client got meanwhile).
    async fn deliver(
        &mut self,
        conversation: &ConversationId,
        seq: u64,
        json: &str,
        own: bool,
    ) -> Flow {
        let last = self.delivered.get(conversation).copied();
        let mut due = !own;
        match last {
            Some(last) if seq <= last => return Flow::Continue,
            Some(last) if seq > last + 1 => {
                let missing = usize::try_from(seq - last - 1).unwrap_or(usize::MAX);
                match self.log.read_from(conversation, last + 1, missing).await {
                    Ok(records) => {
                        for record in records.iter().filter(|r| r.seq < seq) {
                            due |= !self.is_own(record);
                            let json = ServerFrame::from_record(record, &self.viewer).to_json();
                            if let Flow::Stop = self.write_text(&json).await {
                                return Flow::Stop;
                            }
                        }
                    }
                    Err(err) => {
                        // The client sees the jump and asks for history.
                        tracing::warn!(error = %err, %conversation, "gap repair failed");
                    }
                }
            }
            _ => {}
        }
        self.mark_delivered(conversation, seq, due);
        self.write_text(json).await
    }

    /// Queues a frame in the socket's buffer; [`Writer::flush`] sends.
    async fn write_text(&mut self, json: &str) -> Flow {
        switchboard_metrics::edge::edge().sent(json);
        match tokio::time::timeout(self.write_timeout, self.sink.feed_text(json)).await {
            Ok(written) => self.written(written),
            Err(_) => {
                tracing::info!("client write timed out; connection given up");
                Flow::Stop
            }
        }
    }

    fn written(&self, result: Result<(), WriteError>) -> Flow {
        match result {
            Ok(()) => Flow::Continue,
            Err(err) => {
                tracing::debug!(error = %err, "client write failed");
                Flow::Stop
            }
        }
    }

    async fn flush(&mut self) -> Flow {
        match tokio::time::timeout(self.write_timeout, self.sink.flush()).await {
            Ok(flushed) => self.written(flushed),
            Err(_) => {
                tracing::info!("client write timed out; connection given up");
                Flow::Stop
            }
        }
    }

    /// The close frame of a client that stopped reading queues behind what
    /// it has not read: it gets [`SLOW_CONSUMER_GRACE`] to read up to it,
    /// then the connection is cut.
    async fn drop_slow_consumer(&mut self) {
        let close = self.close(SLOW_CONSUMER, "outbound queue full");
        if tokio::time::timeout(SLOW_CONSUMER_GRACE, close)
            .await
            .is_err()
        {
            tracing::info!("slow client did not read its close frame; connection cut");
        }
    }

    async fn close(&mut self, code: u16, reason: &str) {
        switchboard_metrics::edge::edge().closed(code);
        // What was buffered goes first.
        let _ = tokio::time::timeout(self.write_timeout, self.sink.flush()).await;
        match tokio::time::timeout(self.write_timeout, self.sink.close(code, reason)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::debug!(error = %err, "client close failed"),
            Err(_) => tracing::info!("client close timed out; connection given up"),
        }
    }
}
