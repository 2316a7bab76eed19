//! Fan-out inside one edge: one NATS subscription per conversation (its
//! live records and its signals) however many local connections follow it,
//! and one per agent inbox. Records are encoded to JSON once per edge, not
//! once per connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use switchboard_bus::{kv, ConversationLog, Refusals};
use switchboard_protocol::frames::ServerFrame;
use switchboard_protocol::ids::{AgentId, ConversationId};
use switchboard_protocol::payloads::{
    decode, AgentNotice, ChatRecord, ConversationEvent, ConversationState, Notice, QueueSnapshot,
    RecordBody, Revocation, Role, Signal,
};
use switchboard_protocol::subjects;
use tokio::sync::{broadcast, mpsc};
use tokio::task::AbortHandle;

use crate::outbox::{Outbound, OutboxHandle};

/// A local connection following a conversation.
#[derive(Clone, Debug)]
pub struct Follower {
    pub outbox: OutboxHandle,
    /// The participant id of the connection (its own signals are not echoed).
    pub participant_id: String,
    /// What the connection may see of records (transfer notes are for agents).
    pub role: Role,
}

/// A record's frame for each kind of viewer, encoded once per edge and
/// only for the kinds that follow it here (a message reads the same for
/// everyone: one encoding serves all).
struct Rendered<'a> {
    record: &'a ChatRecord,
    agent: Option<Arc<str>>,
    visitor: Option<Arc<str>>,
}

impl<'a> Rendered<'a> {
    fn new(record: &'a ChatRecord) -> Self {
        Self {
            record,
            agent: None,
            visitor: None,
        }
    }

    fn json(&mut self, viewer: &Role) -> Arc<str> {
        let same_for_all = matches!(self.record.body, RecordBody::Message { .. });
        let slot = match viewer {
            Role::Visitor if !same_for_all => &mut self.visitor,
            _ => &mut self.agent,
        };
        let json = slot.get_or_insert_with(|| {
            let viewer = if same_for_all { &Role::Agent } else { viewer };
            ServerFrame::from_record(self.record, viewer)
                .to_json()
                .into()
        });
        Arc::clone(json)
    }

    fn offer(&mut self, follower: &Follower) {
        let json = self.json(&follower.role);
        follower.outbox.offer(Outbound::Record {
            conversation: self.record.conversation_id.clone(),
            seq: self.record.seq,
            json,
            own: follower.participant_id == self.record.sender.id,
        });
    }
}

struct Topic {
    followers: HashMap<u64, Follower>,
    task: AbortHandle,
    /// Changes whenever something that may change who can do what in the
    /// conversation is seen (an event record, a disruption of the feed);
    /// unique across topics, so a topic made anew never repeats one.
    epoch: u64,
}

struct Inbox {
    sessions: HashMap<u64, mpsc::Sender<AgentNotice>>,
    task: AbortHandle,
}

/// The edge's subscriptions.
pub struct Hub {
    client: async_nats::Client,
    log: ConversationLog,
    /// The routing state, to recheck who may follow after a disruption.
    conversations: async_nats::jetstream::kv::Store,
    topics: Mutex<HashMap<ConversationId, Topic>>,
    inboxes: Mutex<HashMap<AgentId, Inbox>>,
    /// Admin broadcasts for the local sessions: who they are for, and the
    /// `notice` frame.
    notices: broadcast::Sender<(Role, Arc<str>)>,
    /// The latest `queue` frame, for agents who connect.
    queue: Mutex<Option<Arc<str>>>,
    /// The latest `missed` frame (the directory's), for agents who connect.
    missed: Mutex<Option<Arc<str>>>,
    /// Source of the topics' epochs.
    epochs: AtomicU64,
    /// Tokens and agents whose connections must close now.
    revocations: broadcast::Sender<Arc<Revocation>>,
    /// Whether the broadcasts' and revocations' subscriptions are up.
    relaying: AtomicBool,
    /// Subscriptions the server refused or removed.
    refusals: tokio::sync::watch::Receiver<Refusals>,
}

/// The subjects the relay subscribes to.
const RELAYED: [&str; 4] = [
    subjects::NOTICE_AGENTS,
    subjects::NOTICE_VISITORS,
    subjects::QUEUE_SNAPSHOT,
    subjects::CONTROL_REVOKE,
];

/// Wait before subscribing the relay again.
const RESUBSCRIBE_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// Broadcasts a slow session may fall behind by before missing some.
const NOTICE_BACKLOG: usize = 64;

/// A subscription could not be made.
#[derive(Debug, thiserror::Error)]
#[error("subscribe to {subject}: {source}")]
pub struct SubscribeError {
    subject: String,
    #[source]
    source: async_nats::SubscribeError,
}

impl Hub {
    pub fn new(
        client: async_nats::Client,
        log: ConversationLog,
        conversations: async_nats::jetstream::kv::Store,
        refusals: tokio::sync::watch::Receiver<Refusals>,
    ) -> Arc<Self> {
        Arc::new(Self {
            refusals,
            client,
            log,
            conversations,
            topics: Mutex::default(),
            inboxes: Mutex::default(),
            notices: broadcast::channel(NOTICE_BACKLOG).0,
            queue: Mutex::default(),
            missed: Mutex::default(),
            epochs: AtomicU64::new(0),
            revocations: broadcast::channel(NOTICE_BACKLOG).0,
            relaying: AtomicBool::new(false),
        })
    }

    /// Admin broadcasts, for one session.
    pub fn notices(&self) -> broadcast::Receiver<(Role, Arc<str>)> {
        self.notices.subscribe()
    }

    /// The latest queue, as a `queue` frame.
    pub fn queue(&self) -> Option<Arc<str>> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The latest missed list, as a `missed` frame.
    pub fn missed(&self) -> Option<Arc<str>> {
        self.missed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A new missed list: kept for agents who connect, and sent to the
    /// connected ones now.
    pub fn set_missed(&self, frame: Arc<str>) {
        let mut latest = self.missed.lock().unwrap_or_else(PoisonError::into_inner);
        if latest.as_deref() == Some(&*frame) {
            return;
        }
        *latest = Some(Arc::clone(&frame));
        drop(latest);
        // No session listening is fine.
        let _ = self.notices.send((Role::Agent, frame));
    }

    /// Relays admin broadcasts (`notice.agents`, `notice.visitors`), queue
    /// snapshots (to agents) and revocations to the local sessions, for
    /// as long as the edge runs: subscriptions that fail or end are made
    /// again, and the edge reports not ready ([`Hub::relaying`]) meanwhile.
    pub async fn relay_notices(self: Arc<Self>) {
        loop {
            self.relay_once().await;
            self.relaying.store(false, Ordering::Relaxed);
            tokio::time::sleep(RESUBSCRIBE_DELAY).await;
        }
    }

    /// Whether the relay of broadcasts and revocations is subscribed.
    pub fn relaying(&self) -> bool {
        self.relaying.load(Ordering::Relaxed)
    }

    /// Revocations, for one session.
    pub fn revocations(&self) -> broadcast::Receiver<Arc<Revocation>> {
        self.revocations.subscribe()
    }

    /// Relays until a subscription fails, ends, or is refused or removed
    /// by the server (a permission taken away: the subscription then
    /// silently receives nothing, so the server's error is watched).
    async fn relay_once(&self) {
        let mut refusals = self.refusals.clone();
        refusals.mark_unchanged();
        let agents = self.subscribe(subjects::NOTICE_AGENTS.to_owned()).await;
        let visitors = self.subscribe(subjects::NOTICE_VISITORS.to_owned()).await;
        let queue = self.subscribe(subjects::QUEUE_SNAPSHOT.to_owned()).await;
        let revoke = self.subscribe(subjects::CONTROL_REVOKE.to_owned()).await;
        let (mut agents, mut visitors, mut queue, mut revoke) =
            match (agents, visitors, queue, revoke) {
                (Ok(agents), Ok(visitors), Ok(queue), Ok(revoke)) => {
                    (agents, visitors, queue, revoke)
                }
                (Err(err), ..) | (_, Err(err), ..) | (_, _, Err(err), _) | (.., Err(err)) => {
                    tracing::error!(error = %err, "subscribe to broadcasts; retrying");
                    return;
                }
            };
        // The server answers a refused subscription before this flush's
        // pong: only then is the relay up.
        if let Err(err) = self.client.flush().await {
            tracing::warn!(error = %err, "flush the broadcasts' subscriptions; retrying");
            return;
        }
        if refusals.has_changed().unwrap_or(false) {
            let refused = refusals.borrow_and_update().last_subject.clone();
            if refused_relay(&refused) {
                return;
            }
        }
        self.relaying.store(true, Ordering::Relaxed);
        // A backbone opened without `connect` has no one telling of
        // refusals: its watch closes at once, and is then left alone.
        let mut watching = true;
        loop {
            let (role, message) = tokio::select! {
                changed = refusals.changed(), if watching => {
                    if changed.is_err() {
                        watching = false;
                        continue;
                    }
                    let refused = refusals.borrow_and_update().last_subject.clone();
                    if refused_relay(&refused) {
                        break;
                    }
                    continue;
                }
                message = agents.next() => match message {
                    Some(message) => (Role::Agent, message),
                    None => break,
                },
                message = visitors.next() => match message {
                    Some(message) => (Role::Visitor, message),
                    None => break,
                },
                message = queue.next() => match message {
                    Some(message) => {
                        self.on_queue(&message);
                        continue;
                    }
                    None => break,
                },
                message = revoke.next() => match message {
                    Some(message) => {
                        self.on_revocation(&message);
                        continue;
                    }
                    None => break,
                },
            };
            match decode::<Notice>(&message.payload) {
                Ok(notice) => {
                    let frame = ServerFrame::Notice {
                        text: notice.text,
                        sender: notice.sender,
                    };
                    // No session listening is fine.
                    let _ = self.notices.send((role, frame.to_json().into()));
                }
                Err(err) => tracing::warn!(error = %err, "undecodable broadcast"),
            }
        }
        tracing::warn!("a broadcast subscription ended; subscribing again");
    }

    fn on_revocation(&self, message: &async_nats::Message) {
        match decode::<Revocation>(&message.payload) {
            Ok(revocation) => {
                tracing::info!(reason = %revocation.reason, agent_id = ?revocation.agent_id, "access revoked");
                // No session listening is fine.
                let _ = self.revocations.send(Arc::new(revocation));
            }
            Err(err) => tracing::warn!(error = %err, "undecodable revocation"),
        }
    }

    async fn subscribe(&self, subject: String) -> Result<async_nats::Subscriber, SubscribeError> {
        self.client
            .subscribe(subject.clone())
            .await
            .map_err(|source| SubscribeError { subject, source })
    }

    /// Adds a connection to a conversation's followers, subscribing the edge
    /// if it is the first.
    ///
    /// # Errors
    /// When NATS refuses the subscription.
    pub async fn follow(
        self: &Arc<Self>,
        conversation: &ConversationId,
        connection: u64,
        follower: Follower,
    ) -> Result<(), SubscribeError> {
        if let Some(topic) = self.topics().get_mut(conversation) {
            topic.followers.insert(connection, follower);
            return Ok(());
        }
        let feed = self
            .subscribe(subjects::conversation_feed(conversation))
            .await?;
        let mut topics = self.topics();
        // Another connection may have subscribed meanwhile: then ours are
        // dropped (unsubscribed) here.
        let topic = topics.entry(conversation.clone()).or_insert_with(|| Topic {
            followers: HashMap::new(),
            task: tokio::spawn(Arc::clone(self).pump(conversation.clone(), feed)).abort_handle(),
            epoch: self.next_epoch(),
        });
        topic.followers.insert(connection, follower);
        Ok(())
    }

    /// Removes a connection; the last one out unsubscribes the edge.
    pub fn unfollow(&self, conversation: &ConversationId, connection: u64) {
        let mut topics = self.topics();
        if let Some(topic) = topics.get_mut(conversation) {
            topic.followers.remove(&connection);
            if topic.followers.is_empty() {
                topic.task.abort();
                topics.remove(conversation);
            }
        }
    }

    /// After a NATS reconnection (or a slow-consumer drop) live records may
    /// have been missed: offer every followed conversation's last record to
    /// its followers, whose writers fill any gap before it from the stream.
    pub async fn audit(&self) {
        // Events may have been missed: what was learnt from them is stale.
        let conversations: Vec<ConversationId> = {
            let mut topics = self.topics();
            for topic in topics.values_mut() {
                topic.epoch = self.next_epoch();
            }
            topics.keys().cloned().collect()
        };
        let mut repaired = 0usize;
        for conversation in conversations {
            self.recheck_agents(&conversation).await;
            match self.log.last(&conversation).await {
                Ok(Some((_, record))) => {
                    let mut rendered = Rendered::new(&record);
                    self.each_follower(&conversation, |f| rendered.offer(f));
                    repaired += 1;
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(error = %err, %conversation, "audit of a conversation failed");
                }
            }
        }
        tracing::info!(
            conversations = repaired,
            "live feeds audited after a disruption"
        );
    }

    /// Conversations followed by this edge (for metrics and tests).
    pub fn followed(&self) -> usize {
        self.topics().len()
    }

    fn topics(&self) -> std::sync::MutexGuard<'_, HashMap<ConversationId, Topic>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn inboxes(&self) -> std::sync::MutexGuard<'_, HashMap<AgentId, Inbox>> {
        self.inboxes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls `offer` for each follower of a conversation, under the lock:
    /// offering never waits (a full outbox closes its connection), and
    /// nothing is cloned per record.
    fn each_follower(&self, conversation: &ConversationId, mut offer: impl FnMut(&Follower)) {
        if let Some(topic) = self.topics().get(conversation) {
            topic.followers.values().for_each(&mut offer);
        }
    }

    /// Moves one conversation's live records and signals to its followers
    /// (one subscription for both: each costs the edge a few KiB).
    async fn pump(self: Arc<Self>, conversation: ConversationId, mut feed: async_nats::Subscriber) {
        while let Some(message) = feed.next().await {
            if subjects::is_signal(&message.subject) {
                self.on_signal(&conversation, &message);
            } else {
                self.on_record(&conversation, &message);
            }
        }
    }

    fn on_record(&self, conversation: &ConversationId, message: &async_nats::Message) {
        let record: ChatRecord = match decode(&message.payload) {
            Ok(record) => record,
            Err(err) => {
                tracing::warn!(error = %err, %conversation, "undecodable live record");
                return;
            }
        };
        if &record.conversation_id != conversation {
            tracing::warn!(%conversation, "live record of another conversation");
            return;
        }
        if let Some(stream_seq) = message
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_SEQUENCE))
            .and_then(|v| v.as_str().parse::<u64>().ok())
        {
            self.log.observe(&record, stream_seq);
        }
        if let RecordBody::Event { .. } = record.body {
            if let Some(topic) = self.topics().get_mut(conversation) {
                topic.epoch = self.next_epoch();
            }
        }
        let mut rendered = Rendered::new(&record);
        self.each_follower(conversation, |f| rendered.offer(f));
        // An agent who lost the conversation sees that, and nothing after;
        // once it is assigned, only its agent among agents follows it (an
        // earlier agent may still follow it after closing it, until it is
        // reopened to someone else).
        match &record.body {
            RecordBody::Event {
                event:
                    ConversationEvent::Transferred { from: gone, .. }
                    | ConversationEvent::AgentLeft { agent: gone, .. },
            } => self.drop_agents(conversation, |id| id == gone.id),
            RecordBody::Event {
                event: ConversationEvent::Assigned { agent, .. },
            } => self.drop_agents(conversation, |id| id != agent.id),
            _ => {}
        }
    }

    /// Stops delivering a conversation to the agent connections whose
    /// participant id `gone` says.
    fn drop_agents(&self, conversation: &ConversationId, gone: impl Fn(&str) -> bool) {
        let mut topics = self.topics();
        if let Some(topic) = topics.get_mut(conversation) {
            topic
                .followers
                .retain(|_, f| f.role != Role::Agent || !gone(&f.participant_id));
            if topic.followers.is_empty() {
                topic.task.abort();
                topics.remove(conversation);
            }
        }
    }

    /// Drops the agent followers of a conversation that its routing state
    /// no longer gives them: after a disruption, the events that would
    /// have dropped them may have arrived only through gap repair.
    async fn recheck_agents(&self, conversation: &ConversationId) {
        match kv::get::<ConversationState>(&self.conversations, conversation.as_str()).await {
            Ok(Some(entry)) => {
                let agent = entry.value.agent.map(|a| a.id);
                self.drop_agents(conversation, |id| agent.as_deref() != Some(id));
            }
            Ok(None) => self.drop_agents(conversation, |_| true),
            Err(err) => {
                tracing::warn!(error = %err, %conversation, "recheck of a conversation's agent failed");
            }
        }
    }

    /// The conversation's epoch, if the connection follows it: equal
    /// epochs mean that no event of the conversation was seen in between
    /// (see `handlers::messages::send`, which trusts an earlier check of
    /// the conversation's state while its epoch holds).
    pub fn epoch(&self, conversation: &ConversationId, connection: u64) -> Option<u64> {
        self.topics()
            .get(conversation)
            .filter(|t| t.followers.contains_key(&connection))
            .map(|t| t.epoch)
    }

    fn next_epoch(&self) -> u64 {
        self.epochs.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether a connection receives a conversation's records.
    pub fn is_following(&self, conversation: &ConversationId, connection: u64) -> bool {
        self.topics()
            .get(conversation)
            .is_some_and(|t| t.followers.contains_key(&connection))
    }

    fn on_signal(&self, conversation: &ConversationId, message: &async_nats::Message) {
        let signal: Signal = match decode(&message.payload) {
            Ok(signal) => signal,
            Err(err) => {
                tracing::warn!(error = %err, %conversation, "undecodable signal");
                return;
            }
        };
        let (from, frame) = match signal {
            Signal::Typing { sender, state } => (
                sender.id.clone(),
                ServerFrame::Typing {
                    conversation_id: conversation.clone(),
                    sender,
                    state,
                },
            ),
            Signal::Read { reader, seq } => (
                reader.id.clone(),
                ServerFrame::Read {
                    conversation_id: conversation.clone(),
                    reader,
                    seq,
                },
            ),
            Signal::Delivered { recipient, seq } => (
                recipient.id.clone(),
                ServerFrame::Delivered {
                    conversation_id: conversation.clone(),
                    recipient,
                    seq,
                },
            ),
        };
        let json: Arc<str> = frame.to_json().into();
        self.each_follower(conversation, |follower| {
            if follower.participant_id != from {
                follower.outbox.offer(Outbound::Frame(Arc::clone(&json)));
            }
        });
    }

    fn on_queue(&self, message: &async_nats::Message) {
        let snapshot: QueueSnapshot = match decode(&message.payload) {
            Ok(snapshot) => snapshot,
            Err(err) => {
                tracing::warn!(error = %err, "undecodable queue snapshot");
                return;
            }
        };
        let frame: Arc<str> = ServerFrame::Queue {
            entries: snapshot.entries,
            teams: snapshot.teams,
            total: snapshot.total,
        }
        .to_json()
        .into();
        let mut latest = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if latest.as_deref() == Some(&*frame) {
            return;
        }
        *latest = Some(Arc::clone(&frame));
        drop(latest);
        let _ = self.notices.send((Role::Agent, frame));
    }

    /// Subscribes a session to its agent's inbox.
    ///
    /// # Errors
    /// When NATS refuses the subscription.
    pub async fn join_inbox(
        self: &Arc<Self>,
        agent: &AgentId,
        connection: u64,
        session: mpsc::Sender<AgentNotice>,
    ) -> Result<(), SubscribeError> {
        if let Some(inbox) = self.inboxes().get_mut(agent) {
            inbox.sessions.insert(connection, session);
            return Ok(());
        }
        let subscriber = self.subscribe(subjects::agent_inbox(agent)).await?;
        let mut inboxes = self.inboxes();
        let inbox = inboxes.entry(agent.clone()).or_insert_with(|| Inbox {
            sessions: HashMap::new(),
            task: tokio::spawn(Arc::clone(self).pump_inbox(agent.clone(), subscriber))
                .abort_handle(),
        });
        inbox.sessions.insert(connection, session);
        Ok(())
    }

    pub fn leave_inbox(&self, agent: &AgentId, connection: u64) {
        let mut inboxes = self.inboxes();
        if let Some(inbox) = inboxes.get_mut(agent) {
            inbox.sessions.remove(&connection);
            if inbox.sessions.is_empty() {
                inbox.task.abort();
                inboxes.remove(agent);
            }
        }
    }

    async fn pump_inbox(self: Arc<Self>, agent: AgentId, mut subscriber: async_nats::Subscriber) {
        while let Some(message) = subscriber.next().await {
            let notice: AgentNotice = match decode(&message.payload) {
                Ok(notice) => notice,
                Err(err) => {
                    tracing::warn!(error = %err, agent_id = %agent, "undecodable agent notice");
                    continue;
                }
            };
            let sessions: Vec<_> = self
                .inboxes()
                .get(&agent)
                .map(|i| i.sessions.values().cloned().collect())
                .unwrap_or_default();
            for session in sessions {
                if session.try_send(notice.clone()).is_err() {
                    tracing::warn!(agent_id = %agent, "agent session not taking notices");
                }
            }
        }
    }
}

/// Whether a subscription the server refused or removed is one of the
/// relay's (logged if so).
fn refused_relay(subject: &str) -> bool {
    let ours = RELAYED.contains(&subject);
    if ours {
        tracing::error!(
            subject,
            "the server refused a broadcast subscription; not ready, subscribing again"
        );
    }
    ours
}
