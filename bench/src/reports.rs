//! `report`: the statistics report over N archived conversations. The
//! archive is seeded with N conversation summaries whose `analytics` are
//! the fold of a synthetic but realistic log (answered, bot-resolved,
//! handed off, transferred, reopened, abandoned, missed; ratings; three
//! teams; twenty agents) spread over 30 days — archiving itself is the
//! `archive` scenario. Then the report the archivers and `switchboard
//! report` compute (`switchboard_archiver::stats::report`) is timed for a
//! few windows: the whole month, one day, one team, one agent.

use std::time::Instant;

use anyhow::{Context, Result};
use mongodb::bson::{self, doc, Document};
use serde::Serialize;
use switchboard_analytics::{fold, Query};
use switchboard_archiver::store::Archive;
use switchboard_bus::accounts::{self, NewAgent};
use switchboard_bus::Backbone;
use switchboard_protocol::ids::{AgentId, ConversationId, MessageId, TeamId};
use switchboard_protocol::payloads::{
    ChatRecord, ConversationEvent, Participant, RecordBody, Role,
};
use switchboard_protocol::stats::StatsRequest;
use switchboard_protocol::time::{now_ms, rfc3339};

use crate::report::{num, row, Report};

/// First day of the seeded month (2026-01-01T00:00:00Z).
const MONTH_START: i64 = 1_767_225_600_000;
const DAY_MS: i64 = 24 * 3600 * 1000;
const DAYS: i64 = 30;
const AGENTS: usize = 20;
const TEAMS: [&str; 3] = ["sales", "billing", "support"];
/// Summaries inserted per command while seeding.
const SEED_BATCH: usize = 1_000;

#[derive(Debug, Clone)]
pub struct ReportConfig {
    pub conversations: usize,
    pub nats_url: String,
    pub mongo_uri: String,
    pub database: String,
    /// Timed runs of each window.
    pub runs: usize,
}

/// One timed window.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub name: String,
    /// Conversations in the window (`started`).
    pub conversations: u64,
    /// Milliseconds of each run: read the summaries and compute.
    pub runs_ms: Vec<f64>,
    pub best_ms: f64,
    /// Of the best run's duration, the part spent computing (the rest is
    /// MongoDB and the accounts on NATS).
    pub compute_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportBench {
    pub scenario: &'static str,
    pub conversations: usize,
    pub seed_secs: f64,
    pub windows: Vec<Window>,
}

impl Report for ReportBench {
    fn title(&self) -> String {
        format!(
            "report over {} archived conversations",
            num(self.conversations as f64, 0)
        )
    }

    fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![row("seeding (s)", num(self.seed_secs, 1))];
        for w in &self.windows {
            rows.push(row(
                &format!(
                    "{} ({} conversations)",
                    w.name,
                    num(w.conversations as f64, 0)
                ),
                format!(
                    "best {} ms (compute {} ms); runs {}",
                    num(w.best_ms, 0),
                    num(w.compute_ms, 1),
                    w.runs_ms
                        .iter()
                        .map(|ms| num(*ms, 0))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        rows
    }
}

/// A small deterministic generator (xorshift), so runs seed the same data.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// 0..n
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn record(
    id: &ConversationId,
    seq: u64,
    at: i64,
    sender: Participant,
    body: RecordBody,
) -> ChatRecord {
    ChatRecord {
        id: MessageId::generate(),
        conversation_id: id.clone(),
        seq,
        sender,
        sent_at: at,
        body,
    }
}

/// One synthetic conversation's log.
fn conversation(dice: &mut Dice, agents: &[Participant], n: usize) -> Vec<ChatRecord> {
    let id = ConversationId::generate();
    let start = MONTH_START + dice.below((DAYS * DAY_MS) as u64) as i64;
    let visitor = Participant {
        role: Role::Visitor,
        id: format!("v_{n}"),
        name: "Visitor".into(),
    };
    let bot = Participant {
        role: Role::Bot,
        id: "faq".into(),
        name: "FAQ".into(),
    };
    let router = Participant::system("router");
    let team = TEAMS[dice.below(TEAMS.len() as u64) as usize];
    let agent = agents[dice.below(agents.len() as u64) as usize].clone();
    let other = agents[dice.below(agents.len() as u64) as usize].clone();
    let mut log = Vec::new();
    let mut at = start;
    let mut push =
        |log: &mut Vec<ChatRecord>, after_secs: u64, sender: &Participant, body: RecordBody| {
            at += after_secs as i64 * 1000;
            let seq = log.len() as u64 + 1;
            log.push(record(&id, seq, at, sender.clone(), body));
        };
    let event = |event: ConversationEvent| RecordBody::Event { event };
    let say = || RecordBody::Message {
        text: String::new(),
        client_id: String::new(),
    };
    push(
        &mut log,
        0,
        &visitor,
        event(ConversationEvent::Opened {
            visitor: visitor.clone(),
            team: TeamId::new(team).ok(),
        }),
    );
    push(&mut log, 2, &visitor, say());
    let kind = dice.below(100);
    if kind < 8 {
        // Abandoned.
        push(
            &mut log,
            30 + dice.below(300),
            &visitor,
            event(ConversationEvent::Closed {}),
        );
        return log;
    }
    if kind < 15 {
        // Missed.
        push(
            &mut log,
            20 + dice.below(120),
            &visitor,
            event(ConversationEvent::LeftMessage {
                name: None,
                email: None,
            }),
        );
        push(&mut log, 0, &visitor, say());
        return log;
    }
    if kind < 30 {
        // A bot first; most resolve, some hand off.
        push(
            &mut log,
            1,
            &router,
            event(ConversationEvent::Assigned {
                agent: bot.clone(),
                reason: None,
                handed_off: None,
            }),
        );
        push(&mut log, 1, &bot, say());
        push(&mut log, 10 + dice.below(30), &visitor, say());
        push(&mut log, 2, &bot, say());
        if kind < 25 {
            push(
                &mut log,
                20 + dice.below(200),
                &visitor,
                event(ConversationEvent::Closed {}),
            );
            return log;
        }
        push(
            &mut log,
            10,
            &bot,
            event(ConversationEvent::HandedOff {
                from: bot.clone(),
                reason: "visitor_asked".into(),
            }),
        );
    }
    push(
        &mut log,
        5 + dice.below(120),
        &router,
        event(ConversationEvent::Assigned {
            agent: agent.clone(),
            reason: None,
            handed_off: None,
        }),
    );
    push(&mut log, 5 + dice.below(90), &agent, say());
    for _ in 0..dice.below(6) {
        push(&mut log, 10 + dice.below(60), &visitor, say());
        push(&mut log, 10 + dice.below(60), &agent, say());
    }
    if dice.below(10) == 0 {
        push(
            &mut log,
            30,
            &agent,
            event(ConversationEvent::Transferred {
                from: agent.clone(),
                to_agent: Some(other.clone()),
                to_team: None,
                note: None,
            }),
        );
        push(
            &mut log,
            10 + dice.below(60),
            &router,
            event(ConversationEvent::Assigned {
                agent: other.clone(),
                reason: None,
                handed_off: None,
            }),
        );
        push(&mut log, 5 + dice.below(60), &other, say());
    }
    push(
        &mut log,
        60 + dice.below(600),
        &agent,
        event(ConversationEvent::Closed {}),
    );
    if dice.below(20) == 0 {
        push(
            &mut log,
            120,
            &visitor,
            event(ConversationEvent::Reopened {}),
        );
        push(&mut log, 5, &visitor, say());
        push(
            &mut log,
            5 + dice.below(60),
            &router,
            event(ConversationEvent::Assigned {
                agent: agent.clone(),
                reason: None,
                handed_off: None,
            }),
        );
        push(&mut log, 5 + dice.below(60), &agent, say());
        push(&mut log, 60, &agent, event(ConversationEvent::Closed {}));
    }
    if dice.below(3) == 0 {
        let score = 1 + u8::try_from(dice.below(5)).unwrap_or(0);
        push(
            &mut log,
            10,
            &visitor,
            event(ConversationEvent::Rated {
                score,
                comment: None,
            }),
        );
    }
    log
}

/// Seeds the archive with `n` summaries (the database should be empty).
async fn seed(archive_db: &mongodb::Database, agents: &[Participant], n: usize) -> Result<()> {
    let summaries = archive_db.collection::<Document>("conversations");
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let mut batch = Vec::with_capacity(SEED_BATCH);
    for i in 0..n {
        let log = conversation(&mut dice, agents, i);
        let facts = fold(&log);
        let last = log.last().map_or(0, |r| r.seq as i64);
        batch.push(doc! {
            "_id": log[0].conversation_id.as_str(),
            "archived_seq": last,
            "created_at": bson::DateTime::from_millis(log[0].sent_at),
            "analytics": bson::to_document(&facts).context("facts as bson")?,
            "analytics_rev": 1_i64,
        });
        if batch.len() == SEED_BATCH || i + 1 == n {
            summaries
                .insert_many(std::mem::take(&mut batch))
                .await
                .context("insert summaries")?;
        }
    }
    Ok(())
}

pub async fn run(config: &ReportConfig) -> Result<ReportBench> {
    let (client, _) = switchboard_bus::connect(
        &switchboard_config::NatsSettings {
            url: config.nats_url.clone(),
            ..Default::default()
        },
        "bench-report",
    )
    .await?;
    let backbone = Backbone::open(
        client,
        &switchboard_config::NatsSettings {
            url: config.nats_url.clone(),
            ..Default::default()
        },
    )
    .await?;
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let login = format!("report-agent-{i}@bench");
        let account = match accounts::find_by_login(&backbone, &login).await? {
            Some(account) => account,
            None => {
                accounts::add(
                    &backbone,
                    NewAgent {
                        login: login.clone(),
                        name: format!("Agent {i}"),
                        password: "bench-password".into(),
                        team: None,
                        capacity: 3,
                    },
                )
                .await?
            }
        };
        agents.push(Participant::agent(&account.id, account.name));
    }
    let archive = Archive::open(&config.mongo_uri, &config.database)
        .await
        .context("open the archive")?;
    let db = mongodb::Client::with_uri_str(&config.mongo_uri)
        .await
        .context("connect to mongodb")?
        .database(&config.database);
    let began = Instant::now();
    seed(&db, &agents, config.conversations).await?;
    let seed_secs = began.elapsed().as_secs_f64();

    let month = |extra: &[(&str, &str)]| {
        let mut request = StatsRequest {
            since: Some(rfc3339(MONTH_START)),
            until: Some(rfc3339(MONTH_START + DAYS * DAY_MS)),
            ..Default::default()
        };
        for (key, value) in extra {
            match *key {
                "team" => request.team = Some((*value).to_owned()),
                "agent" => request.agent = Some((*value).to_owned()),
                _ => {}
            }
        }
        request
    };
    let one_day = StatsRequest {
        since: Some("2026-01-15".into()),
        until: Some("2026-01-15".into()),
        tz: Some("Europe/Paris".into()),
        ..Default::default()
    };
    let windows = [
        ("whole month", month(&[])),
        ("one day, Europe/Paris", one_day),
        ("one team, month", month(&[("team", "billing")])),
        (
            "one agent, month",
            month(&[("agent", "report-agent-3@bench")]),
        ),
    ];
    let mut results = Vec::new();
    for (name, request) in windows {
        let mut runs_ms = Vec::new();
        let mut conversations = 0;
        for _ in 0..config.runs.max(1) {
            let began = Instant::now();
            let report = switchboard_archiver::stats::report(&archive, &backbone, &request)
                .await
                .with_context(|| format!("report {name}"))?;
            runs_ms.push(began.elapsed().as_secs_f64() * 1000.0);
            conversations = report.conversations.started;
        }
        // The compute alone, on facts already read.
        let query = Query::parse(&request, now_ms()).context("query")?;
        let agent_id: Option<AgentId> = match &query.agent {
            Some(login) => accounts::find_by_login(&backbone, login)
                .await?
                .map(|a| a.id),
            None => None,
        };
        let facts = archive
            .facts(&query, agent_id.as_ref().map(AgentId::as_str))
            .await?;
        let began = Instant::now();
        let _ = switchboard_analytics::report(
            &query,
            agent_id.as_ref().map(AgentId::as_str),
            &facts,
            &Default::default(),
        );
        let compute_ms = began.elapsed().as_secs_f64() * 1000.0;
        let best_ms = runs_ms.iter().copied().fold(f64::INFINITY, f64::min);
        results.push(Window {
            name: name.to_owned(),
            conversations,
            runs_ms,
            best_ms,
            compute_ms,
        });
    }
    Ok(ReportBench {
        scenario: "report",
        conversations: config.conversations,
        seed_secs,
        windows: results,
    })
}
