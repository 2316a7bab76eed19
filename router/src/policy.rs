//! Pure routing decisions, kept apart from I/O so they can be tested alone.

use std::time::Duration;

use std::collections::HashMap;

use switchboard_config::{RouterSettings, Strategy};
use switchboard_protocol::ids::{AgentId, TeamId};
use switchboard_protocol::payloads::{
    AgentStatus, AssignmentReason, Candidate, ConversationState, ConversationStatus,
};

use crate::mirror::Mirror;

/// The queue: waiting conversations, highest priority first, then oldest
/// first (ties by id, which sorts by creation time).
pub fn queue(mirror: &Mirror) -> Vec<&ConversationState> {
    let mut queued: Vec<&ConversationState> = mirror
        .conversations
        .values()
        .filter(|c| c.status == ConversationStatus::Queued)
        .collect();
    queued.sort_by(|a, b| a.queue_order(b));
    queued
}

/// 1-based position of each queued conversation within its team's queue
/// (conversations without a team form one queue of their own).
pub fn positions<'a>(queue: &[&'a ConversationState]) -> Vec<(&'a ConversationState, u32)> {
    let mut seen: HashMap<Option<&TeamId>, u32> = HashMap::new();
    queue
        .iter()
        .map(|c| {
            let n = seen.entry(c.team.as_ref()).or_insert(0);
            *n += 1;
            (*c, *n)
        })
        .collect()
}

/// What the router decided for one conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub agent: AgentId,
    pub reason: AssignmentReason,
}

/// The agents that could take `conversation` now: online, of its team
/// (any team when it names none), not excluded, under capacity.
fn candidates(
    mirror: &Mirror,
    conversation: &ConversationState,
    now_ms: i64,
    settings: &RouterSettings,
    presence_ttl: Duration,
) -> Vec<Candidate> {
    mirror
        .agents
        .values()
        .filter(|a| match &conversation.team {
            Some(team) => a.team.as_ref() == Some(team),
            None => true,
        })
        .filter(|a| conversation.exclude_agent.as_ref() != Some(&a.id))
        .filter_map(|a| available(mirror, &a.id, now_ms, settings, presence_ttl))
        .collect()
}

/// An agent as a candidate, if online and under capacity.
fn available(
    mirror: &Mirror,
    agent: &AgentId,
    now_ms: i64,
    settings: &RouterSettings,
    presence_ttl: Duration,
) -> Option<Candidate> {
    let account = mirror.agents.get(agent)?;
    if mirror.status(agent, now_ms, presence_ttl) != AgentStatus::Online {
        return None;
    }
    let capacity = capacity_of(account.capacity, settings);
    let load = u32::try_from(mirror.load_of(agent)).unwrap_or(u32::MAX);
    (load < capacity).then(|| Candidate {
        agent_id: agent.clone(),
        load,
        capacity,
        last_assigned_at: mirror.loads.get(agent).map_or(0, |l| l.last_assigned_at),
    })
}

/// An account's capacity, or the default for accounts without one.
pub fn capacity_of(capacity: u32, settings: &RouterSettings) -> u32 {
    if capacity == 0 {
        settings.default_capacity
    } else {
        capacity
    }
}

/// Most candidates kept in an assignment's audit trail.
const AUDITED_CANDIDATES: usize = 10;

/// The agent a conversation should go to, with why. An agent the
/// conversation names (a transfer, a reopen) takes it when available;
/// otherwise the team's strategy picks: `least_busy` (fewest
/// conversations, then longest idle) or `longest_idle` (round-robin), ties
/// by id so every router agrees.
pub fn choose_agent(
    mirror: &Mirror,
    conversation: &ConversationState,
    now_ms: i64,
    settings: &RouterSettings,
    presence_ttl: Duration,
) -> Option<Choice> {
    if let Some(target) = &conversation.target_agent {
        if let Some(candidate) = available(mirror, target, now_ms, settings, presence_ttl) {
            return Some(Choice {
                agent: target.clone(),
                reason: AssignmentReason {
                    strategy: "requested".to_owned(),
                    candidates: vec![candidate],
                },
            });
        }
        let reachable = mirror.agents.contains_key(target)
            && mirror.status(target, now_ms, presence_ttl) != AgentStatus::Offline;
        if conversation.target_only && reachable {
            return None;
        }
    }
    let strategy = settings.strategy_of(conversation.team.as_ref().map(TeamId::as_str));
    let mut candidates = candidates(mirror, conversation, now_ms, settings, presence_ttl);
    match strategy {
        Strategy::LeastBusy => candidates.sort_by(|a, b| {
            (a.load, a.last_assigned_at, &a.agent_id).cmp(&(
                b.load,
                b.last_assigned_at,
                &b.agent_id,
            ))
        }),
        Strategy::LongestIdle => candidates.sort_by(|a, b| {
            (a.last_assigned_at, a.load, &a.agent_id).cmp(&(
                b.last_assigned_at,
                b.load,
                &b.agent_id,
            ))
        }),
    }
    let agent = candidates.first()?.agent_id.clone();
    candidates.truncate(AUDITED_CANDIDATES);
    Some(Choice {
        agent,
        reason: AssignmentReason {
            strategy: match strategy {
                Strategy::LeastBusy => "least_busy",
                Strategy::LongestIdle => "longest_idle",
            }
            .to_owned(),
            candidates,
        },
    })
}

/// Online agents who could serve a team (any agent for no team).
pub fn agents_online(
    mirror: &Mirror,
    team: Option<&TeamId>,
    now_ms: i64,
    presence_ttl: Duration,
) -> u32 {
    let n = mirror
        .agents
        .values()
        .filter(|a| team.is_none() || a.team.as_ref() == team)
        .filter(|a| mirror.status(&a.id, now_ms, presence_ttl) == AgentStatus::Online)
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Over how long the assignment rate behind wait estimates is measured.
pub use crate::mirror::RATE_WINDOW_MS;

/// Expected wait at `position` from the team's assignments over the last
/// [`RATE_WINDOW_MS`]; `None` until there is a rate to go by.
pub fn estimated_wait_secs(
    mirror: &Mirror,
    team: Option<&TeamId>,
    position: u32,
    now_ms: i64,
) -> Option<u32> {
    let recent = mirror
        .assignments
        .values()
        .filter(|(t, at)| t.as_ref() == team && now_ms - at <= RATE_WINDOW_MS)
        .count();
    if recent == 0 {
        return None;
    }
    let per_sec = recent as f64 / (RATE_WINDOW_MS as f64 / 1000.0);
    let secs = (f64::from(position) / per_sec).ceil();
    Some(if secs > f64::from(u32::MAX) {
        u32::MAX
    } else {
        secs as u32
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::ids::ConversationId;
    use switchboard_protocol::payloads::{
        AgentAccount, AgentLoad, LoadEntry, Participant, Presence,
    };

    const TTL: Duration = Duration::from_secs(30);

    fn conversation(id: &str, queued_at: i64, team: Option<&str>) -> ConversationState {
        ConversationState::opened(
            ConversationId::new(id).unwrap(),
            Participant::system("v"),
            team.map(|t| TeamId::new(t).unwrap()),
            queued_at,
        )
    }

    fn settings() -> RouterSettings {
        RouterSettings::default()
    }

    fn chosen(mirror: &Mirror, c: &ConversationState, now: i64) -> Option<String> {
        choose_agent(mirror, c, now, &settings(), TTL).map(|c| c.agent.to_string())
    }

    fn agent(
        mirror: &mut Mirror,
        id: &str,
        team: Option<&str>,
        capacity: u32,
        status: AgentStatus,
    ) {
        let agent_id = AgentId::new(id).unwrap();
        mirror.agents.insert(
            agent_id.clone(),
            AgentAccount {
                id: agent_id.clone(),
                login: id.into(),
                name: id.into(),
                password_hash: String::new(),
                team: team.map(|t| TeamId::new(t).unwrap()),
                capacity,
                created_at: 0,
                role: Default::default(),
                disabled: false,
                tokens_valid_after: 0,
            },
        );
        mirror.presence.insert(
            format!("{id}.c1"),
            Presence {
                agent_id,
                status,
                edge_id: "e".into(),
                updated_at: 1_000,
            },
        );
    }

    fn load(mirror: &mut Mirror, id: &str, n: usize, last: i64) {
        mirror.loads.insert(
            AgentId::new(id).unwrap(),
            AgentLoad {
                conversations: (0..n)
                    .map(|i| LoadEntry {
                        conversation_id: ConversationId::new(format!("c_{id}_{i}")).unwrap(),
                        claimed_at: 0,
                    })
                    .collect(),
                last_assigned_at: last,
            },
        );
    }

    #[test]
    fn queue_is_oldest_first_with_positions_per_team() {
        let mut mirror = Mirror::default();
        for (id, at, team) in [
            ("c_b", 2, None),
            ("c_a", 1, None),
            ("c_s", 3, Some("sales")),
            ("c_c", 4, None),
        ] {
            mirror
                .conversations
                .insert(ConversationId::new(id).unwrap(), conversation(id, at, team));
        }
        let queue = queue(&mirror);
        let order: Vec<_> = queue.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(order, ["c_a", "c_b", "c_s", "c_c"]);
        let positions: Vec<_> = positions(&queue)
            .into_iter()
            .map(|(c, p)| (c.id.as_str(), p))
            .collect();
        assert_eq!(positions, [("c_a", 1), ("c_b", 2), ("c_s", 1), ("c_c", 3)]);
    }

    #[test]
    fn chooses_least_busy_online_agent_under_capacity() {
        let mut mirror = Mirror::default();
        agent(&mut mirror, "a_busy", None, 3, AgentStatus::Online);
        agent(&mut mirror, "a_free", None, 3, AgentStatus::Online);
        agent(&mut mirror, "a_away", None, 3, AgentStatus::Away);
        agent(&mut mirror, "a_full", None, 1, AgentStatus::Online);
        load(&mut mirror, "a_busy", 2, 0);
        load(&mut mirror, "a_free", 1, 0);
        load(&mut mirror, "a_full", 1, 0);
        let c = conversation("c_1", 1, None);
        assert_eq!(chosen(&mirror, &c, 1_000).as_deref(), Some("a_free"));
        let choice = choose_agent(&mirror, &c, 1_000, &settings(), TTL).unwrap();
        assert_eq!(choice.reason.strategy, "least_busy");
        let considered: Vec<_> = choice
            .reason
            .candidates
            .iter()
            .map(|c| c.agent_id.as_str())
            .collect();
        assert_eq!(
            considered,
            ["a_free", "a_busy"],
            "away and full agents are not candidates"
        );
        load(&mut mirror, "a_free", 3, 0);
        load(&mut mirror, "a_busy", 3, 0);
        assert_eq!(chosen(&mirror, &c, 1_000), None);
    }

    #[test]
    fn ties_go_to_the_longest_idle_and_teams_are_respected() {
        let mut mirror = Mirror::default();
        agent(&mut mirror, "a_1", Some("sales"), 2, AgentStatus::Online);
        agent(&mut mirror, "a_2", Some("sales"), 2, AgentStatus::Online);
        agent(&mut mirror, "a_3", Some("support"), 2, AgentStatus::Online);
        load(&mut mirror, "a_1", 0, 500);
        load(&mut mirror, "a_2", 0, 100);
        let c = conversation("c_1", 1, Some("sales"));
        assert_eq!(chosen(&mirror, &c, 1_000).as_deref(), Some("a_2"));
        let billing = conversation("c_2", 1, Some("billing"));
        assert_eq!(chosen(&mirror, &billing, 1_000), None);
    }

    #[test]
    fn stale_presence_counts_as_offline() {
        let mut mirror = Mirror::default();
        agent(&mut mirror, "a_1", None, 2, AgentStatus::Online);
        let c = conversation("c_1", 1, None);
        let much_later = 1_000 + 31_000;
        assert_eq!(chosen(&mirror, &c, much_later), None);
    }

    #[test]
    fn longest_idle_rotates_and_targets_and_exclusions_apply() {
        let mut mirror = Mirror::default();
        agent(&mut mirror, "a_1", None, 5, AgentStatus::Online);
        agent(&mut mirror, "a_2", None, 5, AgentStatus::Online);
        load(&mut mirror, "a_1", 0, 900);
        load(&mut mirror, "a_2", 3, 100);
        let c = conversation("c_1", 1, None);
        let mut round_robin = settings();
        round_robin.strategy = Strategy::LongestIdle;
        let choice = choose_agent(&mirror, &c, 1_000, &round_robin, TTL).unwrap();
        assert_eq!(
            choice.agent.as_str(),
            "a_2",
            "longest idle despite its load"
        );
        assert_eq!(
            chosen(&mirror, &c, 1_000).as_deref(),
            Some("a_1"),
            "least busy"
        );

        let mut targeted = c.clone();
        targeted.target_agent = Some(AgentId::new("a_2").unwrap());
        let choice = choose_agent(&mirror, &targeted, 1_000, &settings(), TTL).unwrap();
        assert_eq!(
            (choice.agent.as_str(), choice.reason.strategy.as_str()),
            ("a_2", "requested")
        );

        // Held for a busy target, unless they are gone.
        let mut held = targeted.clone();
        held.target_only = true;
        load(&mut mirror, "a_2", 5, 100);
        assert_eq!(chosen(&mirror, &held, 1_000), None);
        assert_eq!(chosen(&mirror, &targeted, 1_000).as_deref(), Some("a_1"));
        load(&mut mirror, "a_2", 3, 100);

        let mut excluded = c.clone();
        excluded.exclude_agent = Some(AgentId::new("a_1").unwrap());
        assert_eq!(chosen(&mirror, &excluded, 1_000).as_deref(), Some("a_2"));
    }

    #[test]
    fn priority_goes_first_and_waits_are_estimated() {
        let mut mirror = Mirror::default();
        let old = conversation("c_old", 1, None);
        let mut urgent = conversation("c_urgent", 5, None);
        urgent.priority = 10;
        for c in [old, urgent] {
            mirror.conversations.insert(c.id.clone(), c);
        }
        let order: Vec<_> = queue(&mirror).iter().map(|c| c.id.as_str()).collect();
        assert_eq!(order, ["c_urgent", "c_old"]);

        let now = RATE_WINDOW_MS * 2;
        assert_eq!(estimated_wait_secs(&mirror, None, 1, now), None);
        for i in 0..60 {
            let mut done = conversation(&format!("c_done{i}"), 0, None);
            done.status = ConversationStatus::Closed;
            done.assigned_at = Some(now - 1_000 * i);
            mirror.keep(done.id.clone(), done);
        }
        // 60 assignments in 10 minutes: one every 10 s.
        assert_eq!(estimated_wait_secs(&mirror, None, 3, now), Some(30));
    }
}
