//! The router's metrics: the queue per team, assignments and how long
//! they took, requeues by reason, the partitions this router holds.
//!
//! Every router sees the whole queue (each mirrors every bucket, whatever
//! partitions it holds), so the routers of a deployment all show the same
//! queue length: take the `max`, not the `sum`. Assignments and partitions
//! are this router's own: `sum by (instance)` shows each router's share.

use std::collections::BTreeSet;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// The `team` label of conversations without a team (team ids cannot
/// contain parentheses).
pub const NO_TEAM: &str = "(none)";

/// How long visitors wait, in seconds: 100 ms to an hour.
const WAIT_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Why a conversation went back to the queue (`agent_left`'s reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequeueReason {
    /// Its agent was offline past `router.agent_grace`.
    Offline,
    /// Its agent missed the team's first-reply deadline.
    NoReply,
}

/// The router's metrics, pre-built for every fixed label.
pub struct RouterMetrics {
    queue: Family<[(&'static str, String); 1], Gauge>,
    /// Teams shown so far: a team whose queue emptied shows 0.
    teams: Mutex<BTreeSet<String>>,
    assignments: Counter,
    wait: Histogram,
    assign: Histogram,
    requeues: [Counter; 2],
    partitions: Gauge,
}

static ROUTER: LazyLock<RouterMetrics> = LazyLock::new(|| {
    crate::process::init();
    let queue = Family::<[(&'static str, String); 1], Gauge>::default();
    crate::registry().register(
        "router_queue_length",
        "Conversations waiting for an agent, by team (every router sees the whole queue: take the max)",
        queue.clone(),
    );
    RouterMetrics {
        queue,
        teams: Mutex::default(),
        assignments: crate::counter(
            "router_assignments",
            "Conversations assigned to an agent by this router",
        ),
        wait: crate::histogram(
            "router_assignment_wait_seconds",
            "Time from queued to assigned (what the visitor waited), at each assignment",
            &WAIT_BUCKETS,
        ),
        assign: crate::histogram(
            "router_assign_seconds",
            "Time one assignment's writes took (claim, compare-and-set, owed event)",
            &crate::LATENCY_BUCKETS,
        ),
        requeues: crate::counters(
            "router_requeues",
            "Conversations taken back from their agent and queued again, by reason",
            "reason",
            ["offline", "no_reply"],
        ),
        partitions: crate::gauge(
            "router_partitions_held",
            "Partitions (team queues) this router holds the lease of and routes (0 when unpartitioned or a standby)",
        ),
    }
});

/// The router's metrics (registered on first use).
pub fn router() -> &'static RouterMetrics {
    &ROUTER
}

/// Registers the router's metrics, so they show (at zero) from the start.
pub fn init() {
    LazyLock::force(&ROUTER);
}

impl RouterMetrics {
    /// The queue as it is now: `(team, waiting)` for each team with
    /// conversations waiting (`None`: without a team).
    pub fn queue<'a>(&self, teams: impl IntoIterator<Item = (Option<&'a str>, u32)>) {
        let mut shown = self.teams.lock().unwrap_or_else(PoisonError::into_inner);
        let mut now = BTreeSet::new();
        for (team, waiting) in teams {
            let team = team.unwrap_or(NO_TEAM);
            self.queue
                .get_or_create(&[("team", team.to_owned())])
                .set(i64::from(waiting));
            now.insert(team.to_owned());
        }
        for gone in shown.difference(&now) {
            self.queue.get_or_create(&[("team", gone.clone())]).set(0);
        }
        shown.extend(now);
    }

    /// An assignment whose writes began at `started`, of a conversation
    /// queued `waited_ms` milliseconds before.
    pub fn assigned(&self, started: Instant, waited_ms: i64) {
        self.assignments.inc();
        self.assign.observe(crate::seconds_since(started));
        // Clocks of different machines may disagree a little.
        self.wait.observe(waited_ms.max(0) as f64 / 1000.0);
    }

    /// A conversation requeued.
    pub fn requeued(&self, reason: RequeueReason) {
        self.requeues[reason as usize].inc();
    }

    /// The number of partitions this router holds now.
    pub fn partitions_held(&self, held: usize) {
        self.partitions.set(i64::try_from(held).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_team_whose_queue_emptied_shows_zero() {
        let metrics = router();
        metrics.queue([(Some("sales"), 3), (None, 1)]);
        let text = crate::render();
        assert!(
            text.contains("switchboard_router_queue_length{team=\"sales\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("switchboard_router_queue_length{team=\"(none)\"} 1\n"),
            "{text}"
        );
        metrics.queue([(None, 2)]);
        let text = crate::render();
        assert!(
            text.contains("switchboard_router_queue_length{team=\"sales\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("switchboard_router_queue_length{team=\"(none)\"} 2\n"),
            "{text}"
        );
    }
}
