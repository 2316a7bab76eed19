//! The report of a set of conversations: counts, exact timers, CSAT, and
//! the same by agent, by team and by local hour.

use std::collections::{BTreeMap, HashMap};

use switchboard_protocol::stats::{
    AgentFigures, ConversationCounts, Csat, HourFigures, StatsReport, TeamFigures,
};
use switchboard_protocol::time::rfc3339;

use crate::figures::{rounded, timer};
use crate::hours::local_hour;
use crate::query::Query;
use crate::timeline::Facts;

/// Agent ids to logins (accounts removed since are missing).
pub type Directory = HashMap<String, String>;

/// The report of the conversations started in the query's window that
/// match its filters (`facts` may hold others; they are left out). With
/// an agent filter, `agent_id` is that agent's id (`None`: unknown login,
/// so nothing matches).
pub fn report(
    query: &Query,
    agent_id: Option<&str>,
    facts: &[Facts],
    directory: &Directory,
) -> StatsReport {
    let selected: Vec<&Facts> = facts
        .iter()
        .filter(|f| {
            f.started_at
                .is_some_and(|t| t >= query.since && t < query.until)
        })
        .filter(|f| match &query.team {
            Some(team) => f.team.as_deref() == Some(team.as_str()),
            None => true,
        })
        .filter(|f| match (&query.agent, agent_id) {
            (None, _) => true,
            (Some(_), Some(id)) => f.agents.iter().any(|a| a.id == id),
            (Some(_), None) => false,
        })
        .collect();

    let messages: i64 = selected.iter().map(|f| f.messages.total()).sum();
    StatsReport {
        since: rfc3339(query.since),
        until: rfc3339(query.until),
        tz: query.tz_name.clone(),
        team: query.team.as_ref().map(|t| t.to_string()),
        agent: query.agent.clone(),
        conversations: counts(&selected),
        wait_secs: timer(selected.iter().filter_map(|f| f.wait_ms).collect()),
        first_response_secs: timer(response_ms(&selected, None)),
        resolution_secs: timer(selected.iter().filter_map(|f| f.resolution_ms).collect()),
        messages_per_conversation: (!selected.is_empty())
            .then(|| rounded(messages as f64 / selected.len() as f64)),
        csat: csat(&selected),
        by_agent: by_agent(
            &selected,
            agent_id.filter(|_| query.agent.is_some()),
            directory,
        ),
        by_team: by_team(&selected),
        by_hour: by_hour(&selected, query),
    }
}

fn counts(facts: &[&Facts]) -> ConversationCounts {
    let count = |keep: fn(&Facts) -> bool| facts.iter().filter(|f| keep(f)).count() as u64;
    ConversationCounts {
        started: facts.len() as u64,
        answered: count(|f| f.answered),
        missed: count(|f| f.missed),
        abandoned: count(|f| f.abandoned),
        handed_off: count(|f| f.handoffs > 0),
        bot_resolved: count(|f| f.bot_resolved),
        closed: count(|f| f.closed),
    }
}

/// First-response intervals, of one agent or of everyone.
fn response_ms(facts: &[&Facts], agent: Option<&str>) -> Vec<i64> {
    facts
        .iter()
        .flat_map(|f| f.responses.iter())
        .filter(|r| agent.is_none_or(|a| r.agent_id == a))
        .map(|r| r.ms)
        .collect()
}

fn mean_rating(ratings: &[u8]) -> Option<f64> {
    (!ratings.is_empty())
        .then(|| rounded(ratings.iter().map(|&r| f64::from(r)).sum::<f64>() / ratings.len() as f64))
}

fn csat(facts: &[&Facts]) -> Csat {
    let ratings: Vec<u8> = facts.iter().filter_map(|f| f.rating).collect();
    let closed = facts.iter().filter(|f| f.closed).count();
    let responses = ratings.len();
    Csat {
        average: mean_rating(&ratings),
        responses: responses as u64,
        response_rate: (closed > 0).then(|| rounded(responses as f64 / closed as f64)),
        positive_share: (responses > 0).then(|| {
            rounded(ratings.iter().filter(|&&r| r >= 4).count() as f64 / responses as f64)
        }),
    }
}

fn by_agent(facts: &[&Facts], only: Option<&str>, directory: &Directory) -> Vec<AgentFigures> {
    // Agent id → (name, conversations).
    let mut agents: BTreeMap<&str, (&str, u64)> = BTreeMap::new();
    for f in facts {
        for agent in &f.agents {
            let entry = agents.entry(&agent.id).or_insert((&agent.name, 0));
            entry.1 += 1;
        }
    }
    let mut figures: Vec<AgentFigures> = agents
        .into_iter()
        .filter(|(id, _)| only.is_none_or(|o| o == *id))
        .map(|(id, (name, conversations))| {
            let ratings: Vec<u8> = facts
                .iter()
                .filter(|f| f.rated_agent.as_deref() == Some(id))
                .filter_map(|f| f.rating)
                .collect();
            AgentFigures {
                agent_id: id.to_owned(),
                login: directory.get(id).cloned(),
                name: name.to_owned(),
                conversations,
                first_response_secs: timer(response_ms(facts, Some(id))),
                csat_average: mean_rating(&ratings),
                csat_responses: ratings.len() as u64,
            }
        })
        .collect();
    figures.sort_by(|a, b| {
        (a.login.is_none(), &a.login, &a.agent_id).cmp(&(b.login.is_none(), &b.login, &b.agent_id))
    });
    figures
}

fn by_team(facts: &[&Facts]) -> Vec<TeamFigures> {
    let mut teams: BTreeMap<Option<&str>, Vec<&Facts>> = BTreeMap::new();
    for f in facts {
        teams.entry(f.team.as_deref()).or_default().push(f);
    }
    teams
        .into_iter()
        .map(|(team, members)| {
            let ratings: Vec<u8> = members.iter().filter_map(|f| f.rating).collect();
            TeamFigures {
                team: team.map(str::to_owned),
                conversations: counts(&members),
                wait_secs: timer(members.iter().filter_map(|f| f.wait_ms).collect()),
                first_response_secs: timer(response_ms(&members, None)),
                csat_average: mean_rating(&ratings),
            }
        })
        .collect()
}

fn by_hour(facts: &[&Facts], query: &Query) -> Vec<HourFigures> {
    let mut hours: Vec<HourFigures> = (0..24)
        .map(|hour| HourFigures {
            hour,
            ..Default::default()
        })
        .collect();
    for f in facts {
        let Some(started) = f.started_at else {
            continue;
        };
        let hour = &mut hours[usize::from(local_hour(started, &query.tz) % 24)];
        hour.started += 1;
        hour.answered += u64::from(f.answered);
        hour.missed += u64::from(f.missed);
        hour.abandoned += u64::from(f.abandoned);
    }
    hours
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::tests::{bot, human, visitor, Log};
    use switchboard_protocol::payloads::ConversationEvent;
    use switchboard_protocol::stats::StatsRequest;

    const DAY: i64 = 1_743_292_800_000; // 2025-03-30T00:00:00Z

    fn query(agent: Option<&str>) -> Query {
        Query::parse(
            &StatsRequest {
                since: Some("2025-03-30".into()),
                until: Some("2025-03-30".into()),
                tz: Some("Europe/Paris".into()),
                agent: agent.map(Into::into),
                ..Default::default()
            },
            0,
        )
        .unwrap()
    }

    fn rated(log: Log, secs: i64, score: u8) -> Log {
        log.event(
            secs,
            visitor(),
            ConversationEvent::Rated {
                score,
                comment: None,
            },
        )
    }

    #[test]
    fn figures_by_hand() {
        // 00:30Z (01:30 Paris): answered by a_1 after 20 s, rated 5.
        let one = rated(
            Log::new(DAY + 1_800_000)
                .opened(0, None)
                .assigned(10, human("a_1"))
                .say(20, human("a_1"))
                .closed(100, human("a_1")),
            110,
            5,
        );
        // 01:30Z (03:30 Paris, after clocks went forward): bot then human.
        let two = rated(
            Log::new(DAY + 5_400_000)
                .opened(0, Some("sales"))
                .assigned(1, bot())
                .say(2, bot())
                .event(
                    30,
                    bot(),
                    ConversationEvent::HandedOff {
                        from: bot(),
                        reason: "bot_asked".into(),
                    },
                )
                .assigned(40, human("a_2"))
                .say(70, human("a_2"))
                .closed(200, visitor()),
            210,
            2,
        );
        // 12:00Z: abandoned.
        let three = Log::new(DAY + 43_200_000)
            .opened(0, None)
            .closed(50, visitor());
        // Outside the window (the day before, local).
        let outside = Log::new(DAY - 7_200_000).opened(0, None);
        let facts = vec![one.facts(), two.facts(), three.facts(), outside.facts()];
        let directory = Directory::from([("a_1".to_owned(), "ann@x".to_owned())]);
        let r = report(&query(None), None, &facts, &directory);
        assert_eq!(r.conversations.started, 3);
        assert_eq!(r.conversations.answered, 2);
        assert_eq!(r.conversations.abandoned, 1);
        assert_eq!(r.conversations.missed, 1);
        assert_eq!(r.conversations.handed_off, 1);
        assert_eq!(r.conversations.closed, 3);
        // Waits: 10 s and (40 − 30) = 10 s.
        assert_eq!(r.wait_secs.median, Some(10.0));
        // First responses: 20 s and 70 − 30 = 40 s.
        assert_eq!(r.first_response_secs.median, Some(30.0));
        assert_eq!(r.first_response_secs.p90, Some(40.0));
        assert_eq!(r.resolution_secs.average, Some(150.0));
        // 1 + 2 + 0 messages over 3 conversations.
        assert_eq!(r.messages_per_conversation, Some(1.0));
        assert_eq!(r.csat.average, Some(3.5));
        assert_eq!(r.csat.response_rate, Some(0.6667));
        assert_eq!(r.csat.positive_share, Some(0.5));
        assert_eq!(r.by_agent.len(), 2);
        assert_eq!(r.by_agent[0].login.as_deref(), Some("ann@x"));
        assert_eq!(r.by_agent[0].csat_average, Some(5.0));
        assert_eq!(r.by_agent[1].login, None, "removed accounts come last");
        assert_eq!(r.by_agent[1].first_response_secs.average, Some(40.0));
        assert_eq!(r.by_team.len(), 2);
        assert_eq!(r.by_team[0].team, None);
        assert_eq!(r.by_team[1].conversations.started, 1);
        assert_eq!(r.by_hour.len(), 24);
        let started: Vec<(u8, u64)> = r
            .by_hour
            .iter()
            .filter(|h| h.started > 0)
            .map(|h| (h.hour, h.started))
            .collect();
        assert_eq!(started, vec![(1, 1), (3, 1), (14, 1)]);

        let only = report(&query(Some("ann@x")), Some("a_1"), &facts, &directory);
        assert_eq!(only.conversations.started, 1);
        assert_eq!(only.by_agent.len(), 1);
        let unknown = report(&query(Some("nobody")), None, &facts, &directory);
        assert_eq!(unknown.conversations.started, 0);
        assert_eq!(unknown.first_response_secs.median, None);
    }
}
