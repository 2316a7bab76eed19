//! Pure routing decisions, kept apart from I/O so they can be tested alone.

use std::time::Duration;

use switchboard_protocol::ids::{AgentId, TeamId};
use switchboard_protocol::payloads::{AgentStatus, ConversationState, ConversationStatus};

use crate::mirror::Mirror;

/// The queue: waiting conversations, oldest first (ties by id, which sorts
/// by creation time).
pub fn queue(mirror: &Mirror) -> Vec<&ConversationState> {
    let mut queued: Vec<&ConversationState> = mirror
        .conversations
        .values()
        .filter(|c| c.status == ConversationStatus::Queued)
        .collect();
    queued.sort_by(|a, b| a.queued_at.cmp(&b.queued_at).then_with(|| a.id.cmp(&b.id)));
    queued
}

/// 1-based position of each queued conversation within its team's queue
/// (conversations without a team form one queue of their own).
pub fn positions<'a>(queue: &[&'a ConversationState]) -> Vec<(&'a ConversationState, u32)> {
    let mut seen: std::collections::HashMap<Option<&TeamId>, u32> = Default::default();
    queue
        .iter()
        .map(|c| {
            let n = seen.entry(c.team.as_ref()).or_insert(0);
            *n += 1;
            (*c, *n)
        })
        .collect()
}

/// The agent a conversation should go to: online, of the conversation's
/// team (any team when it names none), under capacity; the least busy,
/// then the one idle longest, then by id so every router agrees.
pub fn choose_agent(
    mirror: &Mirror,
    conversation: &ConversationState,
    now_ms: i64,
    presence_ttl: Duration,
    default_capacity: u32,
) -> Option<AgentId> {
    mirror
        .agents
        .values()
        .filter(|a| match &conversation.team {
            Some(team) => a.team.as_ref() == Some(team),
            None => true,
        })
        .filter(|a| mirror.status(&a.id, now_ms, presence_ttl) == AgentStatus::Online)
        .filter_map(|a| {
            let capacity = if a.capacity == 0 {
                default_capacity
            } else {
                a.capacity
            };
            let load = mirror.load_of(&a.id);
            let last = mirror.loads.get(&a.id).map_or(0, |l| l.last_assigned_at);
            (load < capacity as usize).then_some((load, last, &a.id))
        })
        .min()
        .map(|(_, _, id)| id.clone())
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
        ConversationState {
            id: ConversationId::new(id).unwrap(),
            visitor: Participant::system("v"),
            team: team.map(|t| TeamId::new(t).unwrap()),
            status: ConversationStatus::Queued,
            agent: None,
            created_at: queued_at,
            queued_at,
            assigned_at: None,
            closed_at: None,
            announced_position: None,
        }
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
        let chosen = choose_agent(&mirror, &c, 1_000, TTL, 3);
        assert_eq!(chosen.as_ref().map(AgentId::as_str), Some("a_free"));
        load(&mut mirror, "a_free", 3, 0);
        load(&mut mirror, "a_busy", 3, 0);
        assert_eq!(choose_agent(&mirror, &c, 1_000, TTL, 3), None);
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
        let chosen = choose_agent(&mirror, &c, 1_000, TTL, 3);
        assert_eq!(chosen.as_ref().map(AgentId::as_str), Some("a_2"));
        let billing = conversation("c_2", 1, Some("billing"));
        assert_eq!(choose_agent(&mirror, &billing, 1_000, TTL, 3), None);
    }

    #[test]
    fn stale_presence_counts_as_offline() {
        let mut mirror = Mirror::default();
        agent(&mut mirror, "a_1", None, 2, AgentStatus::Online);
        let c = conversation("c_1", 1, None);
        let much_later = 1_000 + 31_000;
        assert_eq!(choose_agent(&mirror, &c, much_later, TTL, 3), None);
    }
}
