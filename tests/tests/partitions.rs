//! Routers share the routing work by leasing partitions (one per team's
//! queue) in the `leases` bucket: three routers and three teams end with
//! one team each; a router killed with SIGKILL loses its partitions to the
//! others within seconds and its team is served again; a router stopped
//! with SIGTERM gives its partitions back at once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use switchboard_protocol::ids::TeamId;
use switchboard_protocol::payloads::{decode, Lease};
use switchboard_protocol::subjects::lease_keys;
use switchboard_tests::eventually;
use switchboard_tests::system::System;
use switchboard_tests::ws::Ws;
use tokio::time::Instant;

const TEAMS: [&str; 3] = ["north", "south", "west"];

fn partition(team: &str) -> String {
    lease_keys::partition(Some(&TeamId::new(team).unwrap()))
}

/// The live holder of each team's partition, by team (the holder's process
/// id: router ids start with it).
async fn holders(system: &System) -> BTreeMap<&'static str, u32> {
    let backbone = system.backbone().await;
    let now = switchboard_protocol::time::now_ms();
    let mut holders = BTreeMap::new();
    for team in TEAMS {
        let Ok(Some(bytes)) = backbone.leases.get(partition(team)).await else {
            continue;
        };
        let Ok(lease) = decode::<Lease>(&bytes) else {
            continue;
        };
        let pid = lease
            .holder
            .split('-')
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid.filter(|_| lease.expires_at > now) {
            holders.insert(team, pid);
        }
    }
    holders
}

fn router_pids(system: &System) -> BTreeSet<u32> {
    system
        .nodes
        .iter()
        .filter(|n| n.kind == "router")
        .filter_map(|n| n.pid())
        .collect()
}

/// A visitor who started a conversation in `team`; returns once assigned.
async fn served(edge: SocketAddr, name: &str, team: &str) {
    let (_, token) = System::visitor(edge, name).await;
    let (mut ws, _) = Ws::hello(edge, &token, json!({})).await;
    ws.send(json!({ "type": "start", "team": team })).await;
    let id = ws.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    ws.expect_event(&id, "assigned").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_share_teams_and_take_over_a_dead_ones_within_seconds() {
    let mut system = System::start_env(&[("SWITCHBOARD_ROUTER__LEASE_TTL", "2s")]).await;
    for _ in 0..3 {
        system.router().await;
    }
    let edge = system.edge().await;
    let mut agents = Vec::new();
    for team in TEAMS {
        system.add_agent(team, 10, Some(team)).await;
        let token = System::agent_token(edge, team).await;
        agents.push(Ws::hello(edge, &token, json!({})).await.0);
    }
    for team in TEAMS {
        served(edge, &format!("first-{team}"), team).await;
    }

    // Shared: each router holds one team.
    let pids = router_pids(&system);
    let shared = eventually("each router holding one team", || async {
        let holders = holders(&system).await;
        let distinct: BTreeSet<u32> = holders.values().copied().collect();
        (holders.len() == TEAMS.len() && distinct == pids).then_some(holders)
    })
    .await;

    // Killed: its team moves to another router within seconds, and is
    // served there.
    let victim = shared["south"];
    let node = system
        .nodes
        .iter_mut()
        .find(|n| n.pid() == Some(victim))
        .unwrap();
    node.kill().await;
    let killed_at = Instant::now();
    system
        .nodes
        .retain(|n| n.pid().is_some_and(|p| p != victim));
    let survivors = router_pids(&system);
    assert_eq!(survivors.len(), 2);
    eventually("the dead router's team taken over", || async {
        let holders = holders(&system).await;
        holders
            .get("south")
            .filter(|pid| survivors.contains(pid))
            .map(|_| ())
    })
    .await;
    let took = killed_at.elapsed();
    eprintln!("partition of a killed router taken over after {took:?}");
    // A 2 s lease, renewed every third of it, is taken within about 3 s
    // (the bound leaves room for a loaded machine).
    assert!(
        took < switchboard_tests::scaled(Duration::from_secs(8)),
        "takeover took {took:?}"
    );
    served(edge, "after-kill", "south").await;

    // Stopped: it gives its partitions back as it exits.
    let leaving = *survivors.iter().next().unwrap();
    let node = system
        .nodes
        .iter_mut()
        .find(|n| n.pid() == Some(leaving))
        .unwrap();
    assert!(node.terminate().await, "router exits cleanly on SIGTERM");
    let stopped_at = Instant::now();
    let left = holders(&system).await;
    assert!(
        left.values().all(|pid| *pid != leaving),
        "a stopped router still holds {left:?}"
    );
    system
        .nodes
        .retain(|n| n.kind != "router" || n.pid().is_some());
    let last = *router_pids(&system).iter().next().unwrap();
    eventually("the last router holding every team", || async {
        let holders = holders(&system).await;
        (holders.len() == TEAMS.len() && holders.values().all(|p| *p == last)).then_some(())
    })
    .await;
    eprintln!(
        "partitions of a stopped router taken over after {:?}",
        stopped_at.elapsed()
    );
    for team in TEAMS {
        served(edge, &format!("last-{team}"), team).await;
    }
    drop(agents);
}
