//! MessagePack payloads on NATS subjects and values in KV buckets.
//!
//! Encoded with [`encode`] (`rmp_serde::to_vec_named`: maps with field names),
//! so a bot decodes them with any stock msgpack library. Fields are only ever
//! added, with `#[serde(default)]`, once a payload has shipped.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::ids::{AgentId, BotId, ConversationId, MessageId, TeamId, VisitorId};

/// A payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("encode payload")]
    Encode(#[source] rmp_serde::encode::Error),
    #[error("decode payload")]
    Decode(#[source] rmp_serde::decode::Error),
}

/// Encodes a payload as a MessagePack map with named fields.
///
/// # Errors
/// Only for types serde cannot represent; never for the types of this module.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, PayloadError> {
    rmp_serde::to_vec_named(value).map_err(PayloadError::Encode)
}

/// Decodes a MessagePack payload.
///
/// # Errors
/// [`PayloadError::Decode`] when the bytes are not this payload.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PayloadError> {
    rmp_serde::from_slice(bytes).map_err(PayloadError::Decode)
}

/// Who took part in a conversation or did something in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Visitor,
    Agent,
    System,
    Bot,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Visitor => "visitor",
            Role::Agent => "agent",
            Role::System => "system",
            Role::Bot => "bot",
        }
    }
}

/// A participant as shown to others: role, id and display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub role: Role,
    pub id: String,
    pub name: String,
}

impl Participant {
    pub fn visitor(id: &VisitorId, name: impl Into<String>) -> Self {
        Self {
            role: Role::Visitor,
            id: id.to_string(),
            name: name.into(),
        }
    }

    pub fn agent(id: &AgentId, name: impl Into<String>) -> Self {
        Self {
            role: Role::Agent,
            id: id.to_string(),
            name: name.into(),
        }
    }

    pub fn bot(id: &BotId, name: impl Into<String>) -> Self {
        Self {
            role: Role::Bot,
            id: id.to_string(),
            name: name.into(),
        }
    }

    /// A component acting on its own (the router, say).
    pub fn system(component: &str) -> Self {
        Self {
            role: Role::System,
            id: component.to_owned(),
            name: "Switchboard".to_owned(),
        }
    }
}

/// A lifecycle event of a conversation, stored in its log like a message.
/// The record's sender is who caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ConversationEvent {
    /// The visitor opened the conversation.
    Opened {
        visitor: Participant,
        #[serde(default)]
        team: Option<TeamId>,
    },
    /// No agent was free; the conversation waits at `position` (1 = next).
    Queued {
        position: u32,
        /// Expected wait from the recent assignment rate, when known.
        #[serde(default)]
        estimated_wait_secs: Option<u32>,
        /// Agents of the conversation's team online now (0: nobody is).
        #[serde(default)]
        agents_online: Option<u32>,
    },
    /// An agent (or, role `bot`, a bot) was assigned.
    Assigned {
        agent: Participant,
        /// Why this agent: the audit trail of the decision.
        #[serde(default)]
        reason: Option<AssignmentReason>,
        /// The first human after a bot: which bot handed it off, and why.
        #[serde(default)]
        handed_off: Option<Handoff>,
    },
    /// The assigned agent is gone (`reason`: `offline`, `no_reply`); the
    /// conversation is back in the queue at its place.
    AgentLeft { agent: Participant, reason: String },
    /// Handed to another agent or team by `from`.
    Transferred {
        from: Participant,
        #[serde(default)]
        to_agent: Option<Participant>,
        #[serde(default)]
        to_team: Option<TeamId>,
        #[serde(default)]
        note: Option<String>,
    },
    /// The conversation was closed by `by` (the record's sender).
    Closed {},
    /// The visitor came back to a closed conversation.
    Reopened {},
    /// The visitor rated the conversation.
    Rated {
        score: u8,
        #[serde(default)]
        comment: Option<String>,
    },
    /// Nobody was online: the visitor left a message (the next record) and
    /// how to reach them.
    LeftMessage {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        email: Option<String>,
    },
    /// An agent took a missed conversation; the router assigns it to them.
    PickedUp { agent: Participant },
    /// A bot handed the conversation to the human queue. `reason`:
    /// `visitor_asked`, `bot_asked`, `no_answer` or `bot_absent`.
    HandedOff { from: Participant, reason: String },
    /// A private note of an agent (the record's sender), for agents only:
    /// visitors receive the event with `text` left out.
    Note {
        #[serde(default)]
        text: Option<String>,
    },
    /// The visitor gave a new name (`POST /api/v1/visitors/profile`):
    /// `visitor` as they are called now, `previous` the name before.
    Renamed {
        visitor: Participant,
        #[serde(default)]
        previous: Option<String>,
    },
}

impl ConversationEvent {
    pub fn name(&self) -> &'static str {
        match self {
            ConversationEvent::Opened { .. } => "opened",
            ConversationEvent::Queued { .. } => "queued",
            ConversationEvent::Assigned { .. } => "assigned",
            ConversationEvent::AgentLeft { .. } => "agent_left",
            ConversationEvent::Transferred { .. } => "transferred",
            ConversationEvent::Closed {} => "closed",
            ConversationEvent::Reopened {} => "reopened",
            ConversationEvent::Rated { .. } => "rated",
            ConversationEvent::LeftMessage { .. } => "left_message",
            ConversationEvent::PickedUp { .. } => "picked_up",
            ConversationEvent::HandedOff { .. } => "handed_off",
            ConversationEvent::Note { .. } => "note",
            ConversationEvent::Renamed { .. } => "renamed",
        }
    }
}

/// Which bot handed a conversation to the humans, and why: told to the
/// first human assigned after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    pub from: Participant,
    /// `visitor_asked`, `bot_asked`, `no_answer` or `bot_absent`.
    pub reason: String,
}

/// Why the router chose an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentReason {
    /// `least_busy`, `longest_idle`, or `requested` (a transfer, a reopen,
    /// a pick-up or an admin named the agent).
    pub strategy: String,
    /// Every agent that could have taken it, best first.
    pub candidates: Vec<Candidate>,
}

/// An agent considered for an assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub agent_id: AgentId,
    pub load: u32,
    pub capacity: u32,
    /// Unix milliseconds of the agent's last assignment (0: never).
    pub last_assigned_at: i64,
}

/// What a record of the conversation log holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordBody {
    Message {
        text: String,
        /// The sender's idempotency key.
        client_id: String,
    },
    Event {
        #[serde(flatten)]
        event: ConversationEvent,
    },
}

/// One entry of a conversation's log: the payload stored on
/// `chat.conv.<conversation_id>` and republished on `conv.<conversation_id>.live`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRecord {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    /// The conversation's own order: 1, 2, 3, … with no gaps.
    pub seq: u64,
    pub sender: Participant,
    /// Unix milliseconds.
    pub sent_at: i64,
    pub body: RecordBody,
}

/// Typing indicators and read receipts: ephemeral, on `conv.<id>.signal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signal {
    Typing {
        sender: Participant,
        state: bool,
    },
    Read {
        reader: Participant,
        seq: u64,
    },
    /// `recipient`'s client received everything up to `seq`.
    Delivered {
        recipient: Participant,
        seq: u64,
    },
}

/// How far a participant has read a conversation: KV bucket `reads`, key
/// from [`crate::subjects::read_key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMark {
    pub seq: u64,
    /// Unix milliseconds.
    pub at: i64,
}

/// A waiting conversation as agents and admins see the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub conversation_id: ConversationId,
    pub visitor: Participant,
    #[serde(default)]
    pub team: Option<TeamId>,
    /// 1-based, within its team's queue.
    pub position: u32,
    pub priority: i32,
    /// Unix milliseconds.
    pub queued_at: i64,
}

/// The queue, published by routers on `queue.snapshot` when it changes:
/// its first [`QUEUE_SNAPSHOT_ENTRIES`] entries in serving order, and how
/// many wait in each team's queue, so a snapshot stays small however long
/// the queue grows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    pub entries: Vec<QueueEntry>,
    /// Unix milliseconds.
    pub at: i64,
    /// Every team's queue (the whole queue, not only `entries`).
    #[serde(default)]
    pub teams: Vec<TeamQueue>,
    /// Conversations waiting in all, `entries` being the first of them.
    #[serde(default)]
    pub total: u32,
}

/// Entries a queue snapshot carries at most.
pub const QUEUE_SNAPSHOT_ENTRIES: usize = 200;

/// One team's queue in a [`QueueSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamQueue {
    /// `None`: conversations without a team.
    #[serde(default)]
    pub team: Option<TeamId>,
    pub waiting: u32,
    /// When the longest waiting one entered the queue (unix ms).
    pub oldest_queued_at: i64,
}

/// A missed conversation waiting for an agent: KV bucket `missed`, key =
/// conversation id; removed when picked up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissedEntry {
    pub conversation_id: ConversationId,
    pub visitor: Participant,
    #[serde(default)]
    pub email: Option<String>,
    /// The beginning of the message.
    pub preview: String,
    /// Unix milliseconds.
    pub left_at: i64,
}

/// Sent to an agent's edges on `inbox.agent.<agent_id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentNotice {
    /// A conversation is now the agent's.
    Assigned {
        conversation_id: ConversationId,
        visitor: Participant,
        /// A bot had it before: which, and why it handed it off.
        #[serde(default)]
        handed_off: Option<Handoff>,
    },
}

/// Sent to a bot on `inbox.bot.<bot_id>` (see docs/bots.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BotNotice {
    /// The conversation is now the bot's: its `assigned` event is stored.
    Assigned {
        conversation_id: ConversationId,
        visitor: Participant,
        #[serde(default)]
        team: Option<TeamId>,
    },
    /// The conversation is no longer the bot's: it went to the humans
    /// (`reason` as in `handed_off`).
    Released {
        conversation_id: ConversationId,
        reason: String,
    },
}

/// A bot account: KV bucket `bots`, key = bot id. The bot is the first to
/// serve its team's new conversations while it is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotAccount {
    pub id: BotId,
    pub name: String,
    pub team: TeamId,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A bot's last sign of life: KV bucket `bot_presence`, key = bot id,
/// written by the router that answered the bot's presence request. The
/// bot is present while `updated_at` is younger than `nats.presence_ttl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotPresence {
    pub bot_id: BotId,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// Whatever the bot calls its running process (for operators).
    #[serde(default)]
    pub instance: Option<String>,
}

/// The visitor wrote to the bot holding the conversation and no message of
/// the bot has followed yet: the bot must answer before `since` plus
/// `router.bot_reply_deadline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotWait {
    /// The `seq` of the visitor's latest message (0: messages written
    /// before the bot had the conversation).
    pub seq: u64,
    /// When the deadline started (unix ms): that message's time, or the
    /// assignment's for messages written before it.
    pub since: i64,
}

/// A broadcast from an admin, on `notice.agents` or `notice.visitors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub text: String,
    pub sender: Participant,
}

/// Where a conversation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    /// Waiting for an agent.
    Queued,
    Assigned,
    Closed,
    /// The visitor left a message while nobody was online; an agent picks
    /// it up later.
    Missed,
}

impl ConversationStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ConversationStatus::Queued => "queued",
            ConversationStatus::Assigned => "assigned",
            ConversationStatus::Closed => "closed",
            ConversationStatus::Missed => "missed",
        }
    }
}

/// Routing state of one conversation: KV bucket `conversations`, key = id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationState {
    pub id: ConversationId,
    pub visitor: Participant,
    #[serde(default)]
    pub team: Option<TeamId>,
    pub status: ConversationStatus,
    #[serde(default)]
    pub agent: Option<Participant>,
    pub created_at: i64,
    /// When it (last) entered the queue; the queue is ordered by it.
    pub queued_at: i64,
    #[serde(default)]
    pub assigned_at: Option<i64>,
    #[serde(default)]
    pub closed_at: Option<i64>,
    /// The queue position the visitor was last told, so it is told once.
    #[serde(default)]
    pub announced_position: Option<u32>,
    /// Higher goes first; among equals, the oldest `queued_at`.
    #[serde(default)]
    pub priority: i32,
    /// This agent should take it (a transfer, a reopen, a pick-up, an
    /// admin's choice).
    #[serde(default)]
    pub target_agent: Option<AgentId>,
    /// With `target_agent`: wait for that agent while they are online or
    /// away (they are busy); anyone takes it only once they are offline.
    /// Without it, anyone free takes it when the target is not.
    #[serde(default)]
    pub target_only: bool,
    /// This agent may not take it (they transferred it or did not answer).
    #[serde(default)]
    pub exclude_agent: Option<AgentId>,
    /// When the assigned agent first answered (unix ms).
    #[serde(default)]
    pub first_response_at: Option<i64>,
    /// The visitor's CSAT score, 1–5.
    #[serde(default)]
    pub rating: Option<u8>,
    /// Events a change of this state promised to the conversation's log,
    /// not written there yet (the writer may have died in between): any
    /// edge or router writes them, in order, and removes them (an outbox).
    #[serde(default)]
    pub pending: Vec<PendingEvent>,
    /// A bot holds it and owes the visitor an answer since then.
    #[serde(default)]
    pub bot_wait: Option<BotWait>,
    /// The bot's latest answer came when the log ended at this `seq`: a
    /// visitor's message up to it is answered (so noting it late never
    /// starts the bot's deadline again).
    #[serde(default)]
    pub bot_answered_seq: u64,
    /// This bot handed it off: it never takes it again.
    #[serde(default)]
    pub exclude_bot: Option<BotId>,
    /// Only humans take it from the queue: a human has had it, or a bot
    /// handed it off.
    #[serde(default)]
    pub humans_only: bool,
    /// The last handoff, until a human is assigned (told to them).
    #[serde(default)]
    pub handoff: Option<Handoff>,
}

/// An event owed to a conversation's log by a state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEvent {
    /// Unique; the `Nats-Msg-Id` of the record, so writing it twice stores it once.
    pub key: String,
    pub sender: Participant,
    pub event: ConversationEvent,
    /// An agent to notify once it is written (an assignment).
    #[serde(default)]
    pub notify_agent: Option<AgentId>,
    /// A bot to notify once it is written (its assignment, or its
    /// conversation handed to the humans).
    #[serde(default)]
    pub notify_bot: Option<BotId>,
    /// Unix milliseconds.
    pub at: i64,
}

impl ConversationState {
    /// A conversation just opened: waiting in the queue since `now`.
    pub fn opened(
        id: ConversationId,
        visitor: Participant,
        team: Option<TeamId>,
        now: i64,
    ) -> Self {
        Self {
            id,
            visitor,
            team,
            status: ConversationStatus::Queued,
            agent: None,
            created_at: now,
            queued_at: now,
            assigned_at: None,
            closed_at: None,
            announced_position: None,
            priority: 0,
            target_agent: None,
            target_only: false,
            exclude_agent: None,
            first_response_at: None,
            rating: None,
            pending: Vec::new(),
            bot_wait: None,
            bot_answered_seq: 0,
            exclude_bot: None,
            humans_only: false,
            handoff: None,
        }
    }

    /// Promises `event` to the log along with this change of state.
    pub fn owe(
        &mut self,
        sender: Participant,
        event: ConversationEvent,
        notify_agent: Option<AgentId>,
    ) {
        self.pending.push(PendingEvent {
            key: format!("{}.{}", self.id, MessageId::generate()),
            sender,
            event,
            notify_agent,
            notify_bot: None,
            at: crate::time::now_ms(),
        });
    }

    /// Promises `event` to the log, and a notice to `bot` once written.
    pub fn owe_to_bot(&mut self, sender: Participant, event: ConversationEvent, bot: BotId) {
        self.owe(sender, event, None);
        if let Some(owed) = self.pending.last_mut() {
            owed.notify_bot = Some(bot);
        }
    }

    /// Queue order: higher priority first, then the oldest `queued_at`,
    /// then the id (which sorts by creation), so every router and the
    /// admin's listing agree.
    pub fn queue_order(&self, other: &Self) -> std::cmp::Ordering {
        other
            .priority
            .cmp(&self.priority)
            .then_with(|| self.queued_at.cmp(&other.queued_at))
            .then_with(|| self.id.cmp(&other.id))
    }

    /// Whether `agent` (a human) is the one assigned to this conversation.
    pub fn is_assigned_to(&self, agent: &AgentId) -> bool {
        self.status == ConversationStatus::Assigned
            && self
                .agent
                .as_ref()
                .is_some_and(|a| a.role == Role::Agent && a.id == agent.as_str())
    }

    /// The bot holding this conversation, if a bot does.
    pub fn bot_owner(&self) -> Option<BotId> {
        if self.status != ConversationStatus::Assigned {
            return None;
        }
        self.agent
            .as_ref()
            .filter(|a| a.role == Role::Bot)
            .and_then(|a| BotId::new(a.id.as_str()).ok())
    }

    /// Whether `bot` holds this conversation.
    pub fn is_held_by_bot(&self, bot: &BotId) -> bool {
        self.bot_owner().as_ref() == Some(bot)
    }
}

/// An agent account: KV bucket `agents`, key = agent id.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentAccount {
    pub id: AgentId,
    pub login: String,
    pub name: String,
    /// PHC-format argon2 hash of the password.
    pub password_hash: String,
    #[serde(default)]
    pub team: Option<TeamId>,
    pub capacity: u32,
    pub created_at: i64,
    /// What the account may do besides chatting; accounts stored before
    /// roles existed are plain agents.
    #[serde(default)]
    pub role: AgentRole,
    /// A disabled account cannot log in, and its connections are closed.
    #[serde(default)]
    pub disabled: bool,
    /// Tokens issued at or before this time (unix seconds) are revoked: it
    /// moves when the account is disabled, so enabling it again does not
    /// bring back the tokens of before.
    #[serde(default)]
    pub tokens_valid_after: u64,
}

/// Published on `control.revoke`: every edge closes the matching
/// connections at once (close 4401). A token id, an agent, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    #[serde(default)]
    pub token_id: Option<String>,
    #[serde(default)]
    pub agent_id: Option<AgentId>,
    /// `logged_out`, `disabled`, `removed`.
    pub reason: String,
}

/// A logged-out token in the `revoked` bucket (key: the token's id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedToken {
    pub agent_id: AgentId,
    /// Unix milliseconds.
    pub at: i64,
}

/// What an agent account may do: every account chats; an admin also
/// manages the queue, broadcasts and reads the statistics over HTTP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentRole {
    #[default]
    Agent,
    Admin,
}

impl AgentRole {
    pub fn as_str(&self) -> &'static str {
        match self {
            AgentRole::Agent => "agent",
            AgentRole::Admin => "admin",
        }
    }
}

impl std::fmt::Debug for AgentAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentAccount")
            .field("id", &self.id)
            .field("login", &self.login)
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .field("team", &self.team)
            .field("capacity", &self.capacity)
            .field("role", &self.role)
            .finish()
    }
}

/// Availability an agent chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Offline,
    Away,
    Online,
}

/// One agent connection's presence: KV bucket `presence`,
/// key = `<agent_id>.<connection id>`. The agent's status is the best of
/// their connections'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub agent_id: AgentId,
    pub status: AgentStatus,
    pub edge_id: String,
    pub updated_at: i64,
}

/// The conversations an agent holds: KV bucket `load`, key = agent id.
/// The router changes it by compare-and-set only, so the agent's capacity
/// is never exceeded whatever the number of routers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentLoad {
    pub conversations: Vec<LoadEntry>,
    /// When the agent was last given a conversation (unix ms).
    #[serde(default)]
    pub last_assigned_at: i64,
}

/// A router's lease on a partition of the routing work (or its
/// membership): KV bucket `leases`. Renewed by compare-and-set on the
/// key's revision; free once `expires_at` has passed. A lease only divides
/// the work: every routing change stays a compare-and-set of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The router holding it.
    pub holder: String,
    /// Unix ms after which anyone may take it.
    pub expires_at: i64,
}

/// One conversation counted against an agent's capacity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadEntry {
    pub conversation_id: ConversationId,
    /// When the slot was claimed; a claim whose conversation never became
    /// the agent's is released by the reconciler after a grace period.
    pub claimed_at: i64,
}

/// A team's settings as admins edit them while Switchboard runs: KV
/// bucket `teams`, key = team id. Routers and edges watch the bucket; a
/// setting left out here falls back to the configuration
/// (`router.teams.<team>`, then the defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamSettings {
    pub team: TeamId,
    /// How the team's humans are chosen: `least_busy` or `longest_idle`.
    #[serde(default)]
    pub strategy: Option<String>,
    /// An assigned agent who has not answered within this many seconds
    /// loses the conversation (`agent_left`, `no_reply`).
    #[serde(default)]
    pub first_reply_secs: Option<u64>,
    /// Whether the team's bot (if one runs) takes new conversations first.
    #[serde(default = "yes")]
    pub bot_first: bool,
    /// Whether the widget asks for a name and an email before a chat.
    #[serde(default)]
    pub prechat: bool,
    /// Unix milliseconds.
    pub updated_at: i64,
}

fn yes() -> bool {
    true
}

/// A canned response agents expand by typing `/<shortcut>`: KV bucket
/// `canned`, key = shortcut. Managed by admins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CannedResponse {
    /// 1–32 of `a-z 0-9 - _`.
    pub shortcut: String,
    pub text: String,
    /// Offered to this team's agents only; `None`: to everyone.
    #[serde(default)]
    pub team: Option<TeamId>,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// What a visitor told about themselves and where they are: KV bucket
/// `profiles`, key = visitor id. Shown to agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitorProfile {
    pub visitor_id: VisitorId,
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    /// The page the widget was last opened on.
    #[serde(default)]
    pub page_url: Option<String>,
    /// The browser (its `User-Agent`).
    #[serde(default)]
    pub user_agent: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// A search of the archive's conversations, on `archive.search`
/// (request/reply, one archiver answers): by visitor, by agent, by words
/// in their messages; newest activity first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveSearch {
    #[serde(default)]
    pub visitor_id: Option<String>,
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Words that a message of the conversation contains (any case).
    #[serde(default)]
    pub text: Option<String>,
    /// Conversations whose last activity is before this (unix ms): the
    /// next page.
    #[serde(default)]
    pub before: Option<i64>,
    pub limit: u32,
    /// Only conversations in this state (`closed`, `assigned`, `queued`,
    /// `missed`), as the archive last saw them.
    #[serde(default)]
    pub status: Option<String>,
}

/// The archiver's answer to an [`ArchiveSearch`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveSearchReply {
    pub conversations: Vec<ArchivedConversation>,
    #[serde(default)]
    pub error: Option<String>,
    /// With `error`: the archive could not be read (MongoDB down), not a
    /// bad request; asking again later may work.
    #[serde(default)]
    pub unavailable: bool,
}

/// One conversation as the archive summarises it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedConversation {
    pub conversation_id: ConversationId,
    #[serde(default)]
    pub visitor: Option<Participant>,
    #[serde(default)]
    pub agent: Option<Participant>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// Unix milliseconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub closed_at: Option<i64>,
    #[serde(default)]
    pub last_activity_at: Option<i64>,
    #[serde(default)]
    pub rating: Option<u8>,
}

/// Frames a client POSTed to an event-stream connection, from the edge
/// that took the POST to the edge holding the stream, on
/// `sse.<route>.<connection>` (request/reply). The holding edge checks the
/// token against the connection's identity before handling any frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPost {
    /// The poster's bearer token.
    pub token: String,
    /// JSON client frames, in order.
    pub frames: Vec<String>,
}

/// The holding edge's answer to a [`StreamPost`]: how many frames it
/// handled, or why it refused the POST (an HTTP status and error code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPostReply {
    pub accepted: u32,
    #[serde(default)]
    pub refused: Option<StreamPostRefusal>,
}

/// Why a [`StreamPost`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPostRefusal {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// A history request to the archiver, on `archive.history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRequest {
    pub conversation_id: ConversationId,
    /// Only records with `seq` below this one.
    pub before_seq: u64,
    pub limit: u32,
}

/// The archiver's answer: records in ascending `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryReply {
    pub records: Vec<ChatRecord>,
    #[serde(default)]
    pub error: Option<String>,
}

/// An edge asks the archive who may read a conversation whose routing
/// entry has left KV (closed, archived and past the reopen window).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedConversationRequest {
    pub conversation_id: ConversationId,
}

/// The archive's answer: the conversation's visitor and last agent, or
/// `found: false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedConversationReply {
    pub found: bool,
    #[serde(default)]
    pub visitor_id: Option<String>,
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: T) {
        let bytes = encode(&value).unwrap();
        let back: T = decode(&bytes).unwrap();
        assert_eq!(back, value);
    }

    fn record(body: RecordBody) -> ChatRecord {
        ChatRecord {
            id: MessageId::generate(),
            conversation_id: ConversationId::new("c_1").unwrap(),
            seq: 7,
            sender: Participant::visitor(&VisitorId::new("v_1").unwrap(), "Ann"),
            sent_at: 1_700_000_000_000,
            body,
        }
    }

    #[test]
    fn lease_roundtrip() {
        roundtrip(Lease {
            holder: "r-1".into(),
            expires_at: 1_700_000_000_000,
        });
    }

    #[test]
    fn records_roundtrip() {
        roundtrip(record(RecordBody::Message {
            text: "hi".into(),
            client_id: "k1".into(),
        }));
        for event in [
            ConversationEvent::Opened {
                visitor: Participant::system("x"),
                team: Some(TeamId::new("sales").unwrap()),
            },
            ConversationEvent::Queued {
                position: 3,
                estimated_wait_secs: Some(40),
                agents_online: Some(2),
            },
            ConversationEvent::Assigned {
                agent: Participant::agent(&AgentId::new("a_1").unwrap(), "Bo"),
                handed_off: Some(Handoff {
                    from: Participant::bot(&BotId::new("faq").unwrap(), "FAQ"),
                    reason: "no_answer".into(),
                }),
                reason: Some(AssignmentReason {
                    strategy: "least_busy".into(),
                    candidates: vec![Candidate {
                        agent_id: AgentId::new("a_1").unwrap(),
                        load: 1,
                        capacity: 3,
                        last_assigned_at: 0,
                    }],
                }),
            },
            ConversationEvent::AgentLeft {
                agent: Participant::agent(&AgentId::new("a_1").unwrap(), "Bo"),
                reason: "offline".into(),
            },
            ConversationEvent::Transferred {
                from: Participant::agent(&AgentId::new("a_1").unwrap(), "Bo"),
                to_agent: None,
                to_team: Some(TeamId::new("billing").unwrap()),
                note: Some("refund".into()),
            },
            ConversationEvent::Reopened {},
            ConversationEvent::Rated {
                score: 5,
                comment: None,
            },
            ConversationEvent::Closed {},
            ConversationEvent::Renamed {
                visitor: Participant::visitor(&VisitorId::new("v_1").unwrap(), "Ann Lee"),
                previous: Some("Ann".into()),
            },
        ] {
            roundtrip(record(RecordBody::Event { event }));
        }
    }

    #[test]
    fn records_are_maps_with_named_fields() {
        let bytes = encode(&record(RecordBody::Event {
            event: ConversationEvent::Queued {
                position: 2,
                estimated_wait_secs: None,
                agents_online: None,
            },
        }))
        .unwrap();
        // A generic msgpack decoder sees a map keyed by field names.
        let generic: serde_json::Value = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(generic["seq"], 7);
        assert_eq!(generic["body"]["kind"], "event");
        assert_eq!(generic["body"]["event"], "queued");
        assert_eq!(generic["body"]["position"], 2);
        assert_eq!(generic["sender"]["role"], "visitor");
    }

    #[test]
    fn kv_values_roundtrip() {
        let mut state = ConversationState::opened(
            ConversationId::new("c_1").unwrap(),
            Participant::visitor(&VisitorId::new("v_1").unwrap(), "Ann"),
            None,
            1,
        );
        state.announced_position = Some(1);
        state.target_agent = Some(AgentId::new("a_1").unwrap());
        roundtrip(state);
        roundtrip(AgentLoad {
            conversations: vec![LoadEntry {
                conversation_id: ConversationId::new("c_1").unwrap(),
                claimed_at: 5,
            }],
            last_assigned_at: 5,
        });
        roundtrip(Signal::Typing {
            sender: Participant::system("t"),
            state: true,
        });
        roundtrip(AgentNotice::Assigned {
            conversation_id: ConversationId::new("c_1").unwrap(),
            visitor: Participant::system("v"),
            handed_off: None,
        });
        roundtrip(BotNotice::Released {
            conversation_id: ConversationId::new("c_1").unwrap(),
            reason: "visitor_asked".into(),
        });
        roundtrip(BotAccount {
            id: BotId::new("faq").unwrap(),
            name: "FAQ".into(),
            team: TeamId::new("sales").unwrap(),
            created_at: 1,
        });
        roundtrip(BotPresence {
            bot_id: BotId::new("faq").unwrap(),
            updated_at: 2,
            instance: None,
        });
        roundtrip(Presence {
            agent_id: AgentId::new("a_1").unwrap(),
            status: AgentStatus::Online,
            edge_id: "e1".into(),
            updated_at: 3,
        });
    }

    #[test]
    fn account_debug_redacts_hash() {
        let account = AgentAccount {
            id: AgentId::new("a_1").unwrap(),
            login: "ann".into(),
            name: "Ann".into(),
            password_hash: "$argon2id$secret".into(),
            team: None,
            capacity: 2,
            created_at: 0,
            role: AgentRole::Admin,
            disabled: false,
            tokens_valid_after: 0,
        };
        assert!(!format!("{account:?}").contains("argon2id"));
        roundtrip(account.clone());
    }

    /// A bot holds a conversation as `agent` with the role `bot`: never
    /// mistaken for an agent of the same id, and a state written before
    /// bots existed decodes without them.
    #[test]
    fn bots_hold_conversations_as_bots() {
        let mut state = ConversationState::opened(
            ConversationId::new("c_1").unwrap(),
            Participant::visitor(&VisitorId::new("v_1").unwrap(), "Ann"),
            None,
            1,
        );
        state.status = ConversationStatus::Assigned;
        state.agent = Some(Participant::bot(&BotId::new("a_1").unwrap(), "Bot"));
        assert!(!state.is_assigned_to(&AgentId::new("a_1").unwrap()));
        assert_eq!(state.bot_owner(), Some(BotId::new("a_1").unwrap()));
        state.agent = Some(Participant::agent(&AgentId::new("a_1").unwrap(), "Al"));
        assert!(state.is_assigned_to(&AgentId::new("a_1").unwrap()));
        assert_eq!(state.bot_owner(), None);

        let mut old: serde_json::Value = rmp_serde::from_slice(&encode(&state).unwrap()).unwrap();
        for field in ["bot_wait", "exclude_bot", "humans_only", "handoff"] {
            old.as_object_mut().unwrap().remove(field);
        }
        let back: ConversationState = decode(&encode(&old).unwrap()).unwrap();
        assert_eq!(back, state);
        state.owe_to_bot(
            Participant::system("router"),
            ConversationEvent::Closed {},
            BotId::new("faq").unwrap(),
        );
        assert_eq!(
            state.pending[0].notify_bot,
            Some(BotId::new("faq").unwrap())
        );
        roundtrip(state);
    }

    /// Accounts and events written by older versions still decode, and
    /// the added variant and field travel with their names.
    #[test]
    fn added_fields_have_defaults() {
        #[derive(Serialize)]
        struct OldAccount<'a> {
            id: &'a str,
            login: &'a str,
            name: &'a str,
            password_hash: &'a str,
            team: Option<&'a str>,
            capacity: u32,
            created_at: i64,
        }
        let old = encode(&OldAccount {
            id: "a_1",
            login: "ann",
            name: "Ann",
            password_hash: "x",
            team: None,
            capacity: 2,
            created_at: 0,
        })
        .unwrap();
        let account: AgentAccount = decode(&old).unwrap();
        assert_eq!(account.role, AgentRole::Agent);

        let handed = record(RecordBody::Event {
            event: ConversationEvent::HandedOff {
                from: Participant {
                    role: Role::Bot,
                    id: "faq".into(),
                    name: "FAQ".into(),
                },
                reason: "visitor_asked".into(),
            },
        });
        roundtrip(handed.clone());
        let generic: serde_json::Value = rmp_serde::from_slice(&encode(&handed).unwrap()).unwrap();
        assert_eq!(generic["body"]["event"], "handed_off");
        assert_eq!(generic["body"]["reason"], "visitor_asked");
        assert_eq!(generic["body"]["from"]["role"], "bot");
    }

    #[test]
    fn desk_payloads_roundtrip_with_named_fields() {
        roundtrip(TeamSettings {
            team: TeamId::new("vip").unwrap(),
            strategy: Some("longest_idle".into()),
            first_reply_secs: Some(120),
            bot_first: false,
            prechat: true,
            updated_at: 1,
        });
        roundtrip(CannedResponse {
            shortcut: "thanks".into(),
            text: "Thanks!".into(),
            team: None,
            updated_at: 2,
        });
        roundtrip(VisitorProfile {
            visitor_id: VisitorId::new("v_1").unwrap(),
            name: "Ann".into(),
            email: Some("ann@example.com".into()),
            page_url: Some("https://shop.example/".into()),
            user_agent: None,
            created_at: 3,
            updated_at: 4,
        });
        roundtrip(ArchiveSearch {
            visitor_id: Some("v_1".into()),
            text: Some("refund".into()),
            limit: 20,
            ..ArchiveSearch::default()
        });
        roundtrip(ArchiveSearchReply {
            conversations: vec![ArchivedConversation {
                conversation_id: ConversationId::new("c_1").unwrap(),
                visitor: Some(Participant::visitor(&VisitorId::new("v_1").unwrap(), "Ann")),
                agent: None,
                team: None,
                status: Some("closed".into()),
                created_at: Some(5),
                closed_at: None,
                last_activity_at: Some(6),
                rating: Some(5),
            }],
            error: None,
            unavailable: false,
        });
        // Bots in other languages read maps with field names; a team saved
        // before `bot_first` existed takes its bot first.
        let bytes = encode(&CannedResponse {
            shortcut: "x".into(),
            text: "y".into(),
            team: None,
            updated_at: 0,
        })
        .unwrap();
        let value: serde_json::Value = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(value["shortcut"], "x", "{value:?}");
        #[derive(Serialize)]
        struct OldTeam {
            team: String,
            updated_at: i64,
        }
        let old = rmp_serde::to_vec_named(&OldTeam {
            team: "sales".into(),
            updated_at: 0,
        })
        .unwrap();
        let settings: TeamSettings = decode(&old).unwrap();
        assert!(settings.bot_first && !settings.prechat);
    }
}
