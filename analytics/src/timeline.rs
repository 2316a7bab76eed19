//! One conversation's timers and outcomes, folded from its records in
//! `seq` order. The archiver keeps the fold in the conversation's summary
//! (`analytics`) and applies each record once; folding the whole log again
//! gives the same value, which is how a summary is repaired after a
//! redelivery. The rules are in docs/analytics.md; in short:
//!
//! - the **first-response clock** starts when the visitor starts waiting
//!   for a human: `opened`, and (when it is not running already) a
//!   `handed_off`, `transferred`, `agent_left` or `reopened`. It stops at
//!   the next message of a human agent (sender role `agent`), which gives
//!   one first-response interval, attributed to that agent. A bot's
//!   messages never stop it; an assignment to a bot cancels it; a close
//!   cancels it (unanswered).
//! - **wait** is from entering the human queue (`opened`, or a bot's
//!   `handed_off`) to the first assignment of a human.
//! - **resolution** is from `opened` to the last `closed`, for
//!   conversations a human answered or a bot resolved.

use serde::{Deserialize, Serialize};
use switchboard_protocol::payloads::{ChatRecord, ConversationEvent, RecordBody, Role};

/// The shape of [`Facts`]; a stored fold of another version is folded
/// again from the archive.
pub const FACTS_VERSION: u32 = 1;

/// What started a first-response clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Opened,
    HandedOff,
    Transferred,
    AgentLeft,
    Reopened,
}

/// A running first-response clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    /// Unix milliseconds.
    pub since: i64,
    pub cause: Cause,
}

/// One first-response interval: from a clock's start to the first human
/// reply after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub since: i64,
    pub cause: Cause,
    /// When the reply was sent (unix ms).
    pub at: i64,
    /// `at − since`.
    pub ms: i64,
    /// The agent who replied.
    pub agent_id: String,
}

/// Who holds the conversation now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// `agent` (a human) or `bot`.
    pub role: String,
    pub id: String,
}

/// A human agent the conversation was assigned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRef {
    pub id: String,
    pub name: String,
}

/// Messages by sender role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageCounts {
    pub visitor: i64,
    pub agent: i64,
    pub bot: i64,
}

impl MessageCounts {
    pub fn total(&self) -> i64 {
        self.visitor + self.agent + self.bot
    }
}

/// One conversation's timers and outcomes. Times are unix milliseconds,
/// durations milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// [`FACTS_VERSION`].
    pub v: u32,
    /// The last `seq` folded.
    pub seq: i64,
    /// When the conversation was opened; `None` if its `opened` record is
    /// not in the archive.
    #[serde(default)]
    pub started_at: Option<i64>,
    /// Its team: the `opened` team, changed by a transfer to a team.
    #[serde(default)]
    pub team: Option<String>,
    /// Who holds it now (`None`: waiting, missed or closed).
    #[serde(default)]
    pub owner: Option<Owner>,
    /// A human was assigned at least once.
    pub human_assigned: bool,
    /// A bot was assigned at least once.
    pub bot_assigned: bool,
    /// Since when it waits in the human queue for its first human.
    #[serde(default)]
    pub queue_since: Option<i64>,
    /// From entering the human queue to the first human assignment.
    #[serde(default)]
    pub wait_ms: Option<i64>,
    /// The running first-response clock.
    #[serde(default)]
    pub clock: Option<Clock>,
    /// Every first-response interval, in order.
    #[serde(default)]
    pub responses: Vec<Response>,
    /// A human agent sent at least one message.
    pub answered: bool,
    /// The visitor left a message, or left the queue, before any human
    /// was assigned.
    pub missed: bool,
    /// The visitor closed it while waiting in the human queue before any
    /// human was assigned (counted in `missed` too).
    pub abandoned: bool,
    /// `handed_off` events.
    pub handoffs: i64,
    /// Its last close came while a bot held it, and no human ever had it
    /// nor was it ever handed off.
    pub bot_resolved: bool,
    /// Closed now.
    pub closed: bool,
    #[serde(default)]
    pub closed_at: Option<i64>,
    /// From `opened` to the last `closed`, when answered or bot-resolved.
    #[serde(default)]
    pub resolution_ms: Option<i64>,
    #[serde(default)]
    pub rating: Option<u8>,
    /// The human the rating is attributed to: the last one assigned.
    #[serde(default)]
    pub rated_agent: Option<String>,
    /// The last human assigned.
    #[serde(default)]
    pub last_human: Option<String>,
    /// Every human assigned, in order of first assignment.
    #[serde(default)]
    pub agents: Vec<AgentRef>,
    #[serde(default)]
    pub messages: MessageCounts,
}

impl Default for Facts {
    fn default() -> Self {
        Self {
            v: FACTS_VERSION,
            seq: 0,
            started_at: None,
            team: None,
            owner: None,
            human_assigned: false,
            bot_assigned: false,
            queue_since: None,
            wait_ms: None,
            clock: None,
            responses: Vec::new(),
            answered: false,
            missed: false,
            abandoned: false,
            handoffs: 0,
            bot_resolved: false,
            closed: false,
            closed_at: None,
            resolution_ms: None,
            rating: None,
            rated_agent: None,
            last_human: None,
            agents: Vec::new(),
            messages: MessageCounts::default(),
        }
    }
}

/// The facts of a whole log (records in ascending `seq`).
pub fn fold<'a>(records: impl IntoIterator<Item = &'a ChatRecord>) -> Facts {
    let mut facts = Facts::default();
    for record in records {
        facts.apply(record);
    }
    facts
}

impl Facts {
    /// Folds the next record of the conversation.
    pub fn apply(&mut self, record: &ChatRecord) {
        let at = record.sent_at;
        self.seq = i64::try_from(record.seq).unwrap_or(i64::MAX);
        match &record.body {
            RecordBody::Message { .. } => self.message(record, at),
            RecordBody::Event { event } => self.event(record, event, at),
        }
    }

    fn message(&mut self, record: &ChatRecord, at: i64) {
        match record.sender.role {
            Role::Agent => {
                self.messages.agent += 1;
                self.answered = true;
                if let Some(clock) = self.clock.take() {
                    self.responses.push(Response {
                        since: clock.since,
                        cause: clock.cause,
                        at,
                        ms: (at - clock.since).max(0),
                        agent_id: record.sender.id.clone(),
                    });
                }
            }
            // A bot's message is never a human's first response.
            Role::Bot => self.messages.bot += 1,
            Role::Visitor => self.messages.visitor += 1,
            Role::System => {}
        }
    }

    fn event(&mut self, record: &ChatRecord, event: &ConversationEvent, at: i64) {
        match event {
            ConversationEvent::Opened { team, .. } => {
                self.started_at.get_or_insert(at);
                self.team = team.as_ref().map(|t| t.to_string());
                if !self.human_assigned {
                    self.queue_since = Some(at);
                }
                self.start_clock(at, Cause::Opened);
            }
            // A private note is no answer to the visitor.
            ConversationEvent::Queued { .. }
            | ConversationEvent::PickedUp { .. }
            | ConversationEvent::Note { .. }
            | ConversationEvent::Renamed { .. } => {}
            ConversationEvent::Assigned { agent, .. } if agent.role == Role::Bot => {
                self.owner = Some(Owner {
                    role: "bot".into(),
                    id: agent.id.clone(),
                });
                self.bot_assigned = true;
                // The bot serves the visitor: nobody waits for a human
                // until it hands off.
                self.clock = None;
                self.queue_since = None;
            }
            ConversationEvent::Assigned { agent, .. } => {
                self.owner = Some(Owner {
                    role: "agent".into(),
                    id: agent.id.clone(),
                });
                self.last_human = Some(agent.id.clone());
                if !self.agents.iter().any(|a| a.id == agent.id) {
                    self.agents.push(AgentRef {
                        id: agent.id.clone(),
                        name: agent.name.clone(),
                    });
                }
                if !self.human_assigned {
                    self.human_assigned = true;
                    if let Some(since) = self.queue_since {
                        self.wait_ms = Some((at - since).max(0));
                    }
                }
                self.queue_since = None;
            }
            ConversationEvent::AgentLeft { .. } => {
                self.owner = None;
                self.start_clock(at, Cause::AgentLeft);
            }
            ConversationEvent::Transferred { to_team, .. } => {
                self.owner = None;
                if let Some(team) = to_team {
                    self.team = Some(team.to_string());
                }
                self.start_clock(at, Cause::Transferred);
            }
            ConversationEvent::HandedOff { .. } => {
                self.owner = None;
                self.handoffs += 1;
                if !self.human_assigned {
                    self.queue_since = Some(at);
                }
                self.start_clock(at, Cause::HandedOff);
            }
            ConversationEvent::LeftMessage { .. } => {
                if !self.human_assigned {
                    self.missed = true;
                }
                // Out of the live queue: a pick-up later is no queue wait.
                self.queue_since = None;
                self.owner = None;
            }
            ConversationEvent::Closed {} => self.close(record, at),
            ConversationEvent::Reopened {} => {
                self.closed = false;
                self.bot_resolved = false;
                self.resolution_ms = None;
                self.start_clock(at, Cause::Reopened);
            }
            ConversationEvent::Rated { score, .. } => {
                self.rating = Some(*score);
                self.rated_agent = self.last_human.clone();
            }
        }
    }

    fn close(&mut self, record: &ChatRecord, at: i64) {
        let owner = self.owner.take();
        let waiting_for_first_human =
            owner.is_none() && !self.human_assigned && !self.missed && !self.closed;
        if waiting_for_first_human && record.sender.role == Role::Visitor {
            self.abandoned = true;
            self.missed = true;
        }
        self.bot_resolved = owner.as_ref().is_some_and(|o| o.role == "bot")
            && self.handoffs == 0
            && !self.human_assigned;
        self.closed = true;
        self.closed_at = Some(at);
        // An unanswered clock stops without an interval.
        self.clock = None;
        self.queue_since = None;
        self.resolution_ms = if self.answered || self.bot_resolved {
            self.started_at.map(|started| (at - started).max(0))
        } else {
            None
        };
    }

    /// Starts the first-response clock unless it runs already: a visitor
    /// nobody has answered yet keeps waiting from the first start.
    fn start_clock(&mut self, at: i64, cause: Cause) {
        if self.clock.is_none() {
            self.clock = Some(Clock { since: at, cause });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use switchboard_protocol::ids::{ConversationId, MessageId, TeamId};
    use switchboard_protocol::payloads::Participant;

    /// Builds a conversation's log with times in seconds.
    pub struct Log {
        records: Vec<ChatRecord>,
        base: i64,
    }

    pub fn visitor() -> Participant {
        Participant {
            role: Role::Visitor,
            id: "v_1".into(),
            name: "Ann".into(),
        }
    }

    pub fn human(id: &str) -> Participant {
        Participant {
            role: Role::Agent,
            id: id.into(),
            name: format!("Agent {id}"),
        }
    }

    pub fn bot() -> Participant {
        Participant {
            role: Role::Bot,
            id: "faq".into(),
            name: "FAQ".into(),
        }
    }

    impl Log {
        pub fn new(base: i64) -> Self {
            Self {
                records: Vec::new(),
                base,
            }
        }

        pub fn push(mut self, secs: i64, sender: Participant, body: RecordBody) -> Self {
            let seq = self.records.len() as u64 + 1;
            self.records.push(ChatRecord {
                id: MessageId::generate(),
                conversation_id: ConversationId::new("c_1").unwrap(),
                seq,
                sender,
                sent_at: self.base + secs * 1000,
                body,
            });
            self
        }

        pub fn event(self, secs: i64, sender: Participant, event: ConversationEvent) -> Self {
            self.push(secs, sender, RecordBody::Event { event })
        }

        pub fn say(self, secs: i64, sender: Participant) -> Self {
            self.push(
                secs,
                sender,
                RecordBody::Message {
                    text: "…".into(),
                    client_id: "k".into(),
                },
            )
        }

        pub fn opened(self, secs: i64, team: Option<&str>) -> Self {
            self.event(
                secs,
                visitor(),
                ConversationEvent::Opened {
                    visitor: visitor(),
                    team: team.map(|t| TeamId::new(t).unwrap()),
                },
            )
        }

        pub fn assigned(self, secs: i64, agent: Participant) -> Self {
            self.event(
                secs,
                Participant::system("router"),
                ConversationEvent::Assigned {
                    agent,
                    reason: None,
                    handed_off: None,
                },
            )
        }

        pub fn closed(self, secs: i64, by: Participant) -> Self {
            self.event(secs, by, ConversationEvent::Closed {})
        }

        pub fn facts(&self) -> Facts {
            fold(&self.records)
        }

        pub fn records(&self) -> &[ChatRecord] {
            &self.records
        }
    }

    fn secs(responses: &[Response]) -> Vec<(i64, Cause, &str)> {
        responses
            .iter()
            .map(|r| (r.ms / 1000, r.cause, r.agent_id.as_str()))
            .collect()
    }

    #[test]
    fn a_plain_conversation() {
        let facts = Log::new(0)
            .opened(0, Some("sales"))
            .say(5, visitor())
            .assigned(30, human("a_1"))
            .say(50, human("a_1"))
            .say(55, visitor())
            .say(60, human("a_1"))
            .closed(300, human("a_1"))
            .facts();
        assert_eq!(facts.wait_ms, Some(30_000));
        assert_eq!(secs(&facts.responses), vec![(50, Cause::Opened, "a_1")]);
        assert_eq!(facts.resolution_ms, Some(300_000));
        assert!(facts.answered && facts.closed && !facts.missed && !facts.abandoned);
        assert_eq!(facts.messages.total(), 4);
        assert_eq!(facts.team.as_deref(), Some("sales"));
    }

    #[test]
    fn a_bot_reply_is_not_a_first_response_and_a_handoff_restarts_the_clock() {
        let facts = Log::new(0)
            .opened(0, None)
            .assigned(1, bot())
            .say(2, bot())
            .say(10, visitor())
            .say(12, bot())
            .event(
                40,
                bot(),
                ConversationEvent::HandedOff {
                    from: bot(),
                    reason: "visitor_asked".into(),
                },
            )
            .say(41, bot())
            .assigned(100, human("a_1"))
            .say(130, human("a_1"))
            .closed(200, visitor())
            .facts();
        // Counted from the handoff, not from the opening, and not stopped
        // by the bot's messages.
        assert_eq!(secs(&facts.responses), vec![(90, Cause::HandedOff, "a_1")]);
        assert_eq!(facts.wait_ms, Some(60_000), "from the handoff");
        assert_eq!(facts.handoffs, 1);
        assert!(!facts.bot_resolved);
        assert_eq!(facts.resolution_ms, Some(200_000), "from the start");
        assert_eq!(facts.messages.bot, 3);
    }

    #[test]
    fn a_bot_that_closes_without_handoff_resolves() {
        let facts = Log::new(0)
            .opened(0, None)
            .assigned(1, bot())
            .say(3, bot())
            .closed(60, visitor())
            .facts();
        assert!(facts.bot_resolved && !facts.answered && !facts.missed && !facts.abandoned);
        assert!(facts.responses.is_empty());
        assert_eq!(facts.wait_ms, None);
        assert_eq!(facts.resolution_ms, Some(60_000));
    }

    #[test]
    fn a_transfer_after_an_answer_restarts_the_clock_but_not_before() {
        let answered = Log::new(0)
            .opened(0, None)
            .assigned(10, human("a_1"))
            .say(20, human("a_1"))
            .event(
                100,
                human("a_1"),
                ConversationEvent::Transferred {
                    from: human("a_1"),
                    to_agent: None,
                    to_team: Some(TeamId::new("billing").unwrap()),
                    note: None,
                },
            )
            .assigned(130, human("a_2"))
            .say(160, human("a_2"))
            .facts();
        assert_eq!(
            secs(&answered.responses),
            vec![(20, Cause::Opened, "a_1"), (60, Cause::Transferred, "a_2")]
        );
        assert_eq!(answered.team.as_deref(), Some("billing"));
        assert_eq!(answered.wait_ms, Some(10_000), "only the first wait");

        // Nobody answered before the transfer: the visitor still waits for
        // their first answer, counted from the opening.
        let silent = Log::new(0)
            .opened(0, None)
            .assigned(10, human("a_1"))
            .event(
                100,
                human("a_1"),
                ConversationEvent::Transferred {
                    from: human("a_1"),
                    to_agent: Some(human("a_2")),
                    to_team: None,
                    note: None,
                },
            )
            .assigned(130, human("a_2"))
            .say(160, human("a_2"))
            .facts();
        assert_eq!(secs(&silent.responses), vec![(160, Cause::Opened, "a_2")]);
    }

    #[test]
    fn a_reopen_restarts_the_clock_and_resolution_runs_to_the_last_close() {
        let facts = Log::new(0)
            .opened(0, None)
            .assigned(10, human("a_1"))
            .say(15, human("a_1"))
            .closed(100, human("a_1"))
            .event(120, visitor(), ConversationEvent::Reopened {})
            .say(121, visitor())
            .assigned(125, human("a_1"))
            .say(150, human("a_1"))
            .closed(400, human("a_1"))
            .event(
                410,
                visitor(),
                ConversationEvent::Rated {
                    score: 4,
                    comment: None,
                },
            )
            .facts();
        assert_eq!(
            secs(&facts.responses),
            vec![(15, Cause::Opened, "a_1"), (30, Cause::Reopened, "a_1")]
        );
        assert_eq!(facts.resolution_ms, Some(400_000));
        assert_eq!(facts.rating, Some(4));
        assert_eq!(facts.rated_agent.as_deref(), Some("a_1"));
        assert_eq!(facts.agents.len(), 1);
    }

    #[test]
    fn abandoned_and_missed() {
        let abandoned = Log::new(0)
            .opened(0, None)
            .say(1, visitor())
            .closed(90, visitor())
            .facts();
        assert!(abandoned.abandoned && abandoned.missed && !abandoned.answered);
        assert_eq!(abandoned.resolution_ms, None);
        assert!(abandoned.responses.is_empty());

        let left = Log::new(0)
            .opened(0, None)
            .event(
                30,
                visitor(),
                ConversationEvent::LeftMessage {
                    name: None,
                    email: None,
                },
            )
            .say(30, visitor())
            .facts();
        assert!(left.missed && !left.abandoned);

        // Picked up the next morning: missed still, and answered; the first
        // response counts what the visitor waited; no queue wait.
        let picked = Log::new(0)
            .opened(0, None)
            .event(
                30,
                visitor(),
                ConversationEvent::LeftMessage {
                    name: None,
                    email: None,
                },
            )
            .event(
                3600,
                human("a_1"),
                ConversationEvent::PickedUp {
                    agent: human("a_1"),
                },
            )
            .assigned(3601, human("a_1"))
            .say(3660, human("a_1"))
            .closed(3700, human("a_1"))
            .facts();
        assert!(picked.missed && picked.answered && !picked.abandoned);
        assert_eq!(picked.wait_ms, None);
        assert_eq!(secs(&picked.responses), vec![(3660, Cause::Opened, "a_1")]);
        // A visitor closing a missed conversation did not abandon a queue.
        let closed = Log::new(0)
            .opened(0, None)
            .event(
                30,
                visitor(),
                ConversationEvent::LeftMessage {
                    name: None,
                    email: None,
                },
            )
            .closed(60, visitor())
            .facts();
        assert!(closed.missed && !closed.abandoned);

        // Closed by the visitor after a human had it: neither.
        let requeued = Log::new(0)
            .opened(0, None)
            .assigned(5, human("a_1"))
            .event(
                60,
                Participant::system("router"),
                ConversationEvent::AgentLeft {
                    agent: human("a_1"),
                    reason: "offline".into(),
                },
            )
            .closed(90, visitor())
            .facts();
        assert!(!requeued.missed && !requeued.abandoned);
    }

    #[test]
    fn a_requeue_after_an_answer_counts_from_the_requeue() {
        let facts = Log::new(0)
            .opened(0, None)
            .assigned(5, human("a_1"))
            .say(8, human("a_1"))
            .event(
                60,
                Participant::system("router"),
                ConversationEvent::AgentLeft {
                    agent: human("a_1"),
                    reason: "offline".into(),
                },
            )
            .assigned(70, human("a_2"))
            .say(75, human("a_2"))
            .facts();
        assert_eq!(
            secs(&facts.responses),
            vec![(8, Cause::Opened, "a_1"), (15, Cause::AgentLeft, "a_2")]
        );
    }

    #[test]
    fn folding_in_steps_equals_folding_at_once() {
        let log = Log::new(1_700_000_000_000)
            .opened(0, None)
            .assigned(5, human("a_1"))
            .say(8, human("a_1"))
            .closed(20, visitor());
        let whole = log.facts();
        for split in 0..=log.records().len() {
            let (head, tail) = log.records().split_at(split);
            let mut facts = fold(head);
            for record in tail {
                facts.apply(record);
            }
            assert_eq!(facts, whole);
        }
        assert_eq!(whole.seq, 4);
    }
}
