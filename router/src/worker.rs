//! The router's entry point: watch the buckets, keep the mirror, and run an
//! assignment pass whenever something changed (and every second, for
//! presence that expired without a write). Each pass first lets the
//! reconciler release stale slots.

use std::time::Duration;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use futures::{stream::select_all, FutureExt, StreamExt};
use switchboard_bus::{Backbone, BusError};
use switchboard_config::{Partitions, RouterSettings};
use switchboard_protocol::ids::{AgentId, BotId, ConversationId, TeamId};
use switchboard_protocol::payloads::{
    encode, AgentStatus, ConversationState, ConversationStatus, LoadEntry, QueueEntry,
    QueueSnapshot, Role, TeamQueue, QUEUE_SNAPSHOT_ENTRIES,
};
use switchboard_protocol::subjects::{self, buckets, lease_keys};
use switchboard_protocol::time::now_ms;
use tokio_util::sync::CancellationToken;

use crate::assign::{self, Outcome, Requeue};
use crate::bot_api::{self, BotApi};
use crate::lease::{Leaser, Owned};
use crate::mirror::Mirror;
use crate::{bots, policy, reconcile};

/// What a router needs to know.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub router: RouterSettings,
    pub presence_ttl: Duration,
    /// Longest message a bot may post (the edges' `edge.max_text_chars`).
    pub max_text_chars: usize,
}

/// The conversations each bot holds, as the routing loop last saw them
/// (`None` until its view is complete): what the bot API lists.
pub type HeldByBots = Option<Arc<HashMap<BotId, Vec<ConversationId>>>>;

/// The router stopped for a reason other than shutdown.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// How often a router still loading the buckets' history says so (it
/// never routes on a partial view).
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// The routing buckets that hold any key: their history must have arrived
/// before the router decides anything.
async fn non_empty_buckets(backbone: &Backbone) -> Result<HashSet<String>, BusError> {
    let mut non_empty = HashSet::new();
    for (name, store) in [
        (buckets::AGENTS, &backbone.agents),
        (buckets::PRESENCE, &backbone.presence),
        (buckets::LOAD, &backbone.load),
        (buckets::CONVERSATIONS, &backbone.conversations),
        (buckets::BOTS, &backbone.bots),
        (buckets::BOT_PRESENCE, &backbone.bot_presence),
    ] {
        let mut keys = store
            .keys()
            .await
            .map_err(|e| BusError::nats("list kv keys", e))?;
        if keys.next().await.is_some() {
            non_empty.insert(name.to_owned());
        }
    }
    Ok(non_empty)
}

/// How long to wait before watching again after the watches broke.
const REWATCH_DELAY: Duration = Duration::from_secs(1);

/// Runs the router until `shutdown`. It survives NATS restarts: broken
/// watches are re-established and the mirror rebuilt.
///
/// # Errors
/// None in practice; failures are logged and retried.
pub async fn run(
    config: RouterConfig,
    backbone: Backbone,
    shutdown: CancellationToken,
) -> Result<(), RouterError> {
    tracing::info!("router started");
    switchboard_metrics::router::init();
    switchboard_metrics::bus::init();
    let (held, held_view) = tokio::sync::watch::channel(None);
    let api = tokio::spawn(bot_api::run(
        BotApi {
            backbone: backbone.clone(),
            held: held_view,
            presence_ttl: config.presence_ttl,
            reply_deadline: config.router.bot_reply_deadline.get(),
            max_text_chars: config.max_text_chars,
        },
        shutdown.clone(),
    ));
    let book = crate::teams::TeamBook::default();
    let teams = tokio::spawn(book.clone().watch(backbone.teams.clone()));
    // The leases are given back only once routing has stopped.
    let (known, known_view) = tokio::sync::watch::channel(BTreeSet::new());
    let (owned_tx, mut owned) = tokio::sync::watch::channel(Owned::default());
    let leases_stop = CancellationToken::new();
    let leaser = (config.router.partitions == Partitions::Team).then(|| {
        let id = crate::lease::router_id();
        tracing::info!(router_id = %id, "router leasing partitions");
        let leaser = Leaser::new(&backbone, id, config.router.lease_ttl.get());
        tokio::spawn(leaser.run(known_view, owned_tx, leases_stop.clone()))
    });
    let mut lanes = Lanes {
        known,
        owned: &mut owned,
    };
    while !shutdown.is_cancelled() {
        held.send_replace(None);
        match watch_and_route(&config, &backbone, &shutdown, &held, &book, &mut lanes).await {
            Ok(()) => break,
            Err(err) => {
                tracing::warn!(error = %err, "router watches broke; rebuilding");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(REWATCH_DELAY) => {}
                }
            }
        }
    }
    teams.abort();
    leases_stop.cancel();
    if let Some(leaser) = leaser {
        if let Err(err) = leaser.await {
            tracing::warn!(error = %err, "lease task");
        }
    }
    // The bot API stops with the same shutdown.
    if let Err(err) = api.await {
        tracing::warn!(error = %err, "bot api task");
    }
    tracing::info!("router stopped");
    Ok(())
}

/// The routing loop's side of the leases: the partitions it has seen
/// (for the leaser to share out) and what this router holds.
struct Lanes<'a> {
    known: tokio::sync::watch::Sender<BTreeSet<String>>,
    owned: &'a mut tokio::sync::watch::Receiver<Owned>,
}

impl Lanes<'_> {
    /// Adds the partitions of the mirror's conversations and of the
    /// configured teams to those known (never removed: a team's queue that
    /// empties for a moment keeps its router).
    fn learn(&self, mirror: &Mirror, settings: &RouterSettings) {
        let mut seen: BTreeSet<String> = mirror
            .conversations
            .values()
            .map(|c| lease_keys::partition(c.team.as_ref()))
            .collect();
        for team in settings.teams.keys() {
            if let Ok(team) = TeamId::new(team.as_str()) {
                seen.insert(lease_keys::partition(Some(&team)));
            }
        }
        self.known.send_if_modified(|known| {
            let before = known.len();
            known.extend(seen);
            known.len() != before
        });
    }
}

/// What this router may do in one pass.
struct Mine {
    /// Off: everything.
    partitioned: bool,
    owned: Owned,
    now: tokio::time::Instant,
}

impl Mine {
    fn duties(&self) -> bool {
        !self.partitioned || self.owned.holds(lease_keys::DUTIES, self.now)
    }

    fn queue_of(&self, team: Option<&TeamId>) -> bool {
        !self.partitioned || self.owned.holds(&lease_keys::partition(team), self.now)
    }
}

async fn watch_and_route(
    config: &RouterConfig,
    backbone: &Backbone,
    shutdown: &CancellationToken,
    held: &tokio::sync::watch::Sender<HeldByBots>,
    book: &crate::teams::TeamBook,
    lanes: &mut Lanes<'_>,
) -> Result<(), BusError> {
    let partitioned = config.router.partitions == Partitions::Team;
    let mut watches = Vec::new();
    for store in [
        &backbone.agents,
        &backbone.presence,
        &backbone.load,
        &backbone.conversations,
        &backbone.bots,
        &backbone.bot_presence,
    ] {
        watches.push(
            store
                .watch_with_history(">")
                .await
                .map_err(|e| BusError::nats("watch kv bucket", e))?,
        );
    }
    // Decide nothing before every bucket's current content has arrived: a
    // partial view (slots without their conversations) would free slots
    // that are taken.
    let mut behind = non_empty_buckets(backbone).await?;
    let mut synced_by = tokio::time::Instant::now() + SYNC_TIMEOUT;
    let mut events = select_all(watches);
    let mut mirror = Mirror::default();
    let mut memory = Memory::default();
    let mut idle_watch = crate::idle::IdleWatch::default();
    let mut synced = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            entry = events.next() => {
                let entry = match entry {
                    Some(Ok(entry)) => entry,
                    Some(Err(err)) => return Err(BusError::nats("kv watch", err)),
                    None => return Err(BusError::nats("kv watch", "watch ended")),
                };
                if entry.delta == 0 {
                    behind.remove(&entry.bucket);
                }
                mirror.apply(&entry);
                // Take everything already waiting before deciding.
                while let Some(Some(next)) = events.next().now_or_never() {
                    let entry = next.map_err(|err| BusError::nats("kv watch", err))?;
                    if entry.delta == 0 {
                        behind.remove(&entry.bucket);
                    }
                    mirror.apply(&entry);
                }
            }
            _ = tick.tick() => {}
            Ok(()) = lanes.owned.changed(), if partitioned => {}
        }
        if !synced {
            if !behind.is_empty() && tokio::time::Instant::now() >= synced_by {
                // Still loading, or emptied since it was listed: a bucket
                // that is empty now has nothing to wait for.
                let non_empty = non_empty_buckets(backbone).await?;
                behind.retain(|bucket| non_empty.contains(bucket));
                if !behind.is_empty() {
                    tracing::warn!(buckets = ?behind, "kv history still loading; not routing on a partial view");
                }
                synced_by = tokio::time::Instant::now() + SYNC_TIMEOUT;
            }
            if !behind.is_empty() {
                continue;
            }
            synced = true;
            tracing::info!(
                conversations = mirror.conversations.len(),
                "routing state loaded"
            );
        }
        // The teams' settings of the moment (admins edit them live).
        let live = RouterConfig {
            router: book.apply(&config.router),
            ..config.clone()
        };
        let config = &live;
        if partitioned {
            lanes.learn(&mirror, &config.router);
        }
        let mine = Mine {
            partitioned,
            owned: lanes.owned.borrow_and_update().clone(),
            now: tokio::time::Instant::now(),
        };
        if mine.duties() {
            duties(config, backbone, &mut mirror, &mut memory, &mut idle_watch).await;
        } else {
            mirror.prune(now_ms(), config.presence_ttl);
        }
        if let Err(err) = pass(config, backbone, &mut memory, &mut mirror, &mine).await {
            tracing::warn!(error = %err, "assignment pass failed");
        }
        publish_queue(backbone, &mirror, &mut memory, now_ms(), mine.duties()).await;
        publish_held(&mirror, held);
    }
}

/// The singleton duties: one router at a time does them (the holder of
/// the `duties` lease), or every router when unpartitioned.
async fn duties(
    config: &RouterConfig,
    backbone: &Backbone,
    mirror: &mut Mirror,
    memory: &mut Memory,
    idle_watch: &mut crate::idle::IdleWatch,
) {
    reconcile::flush_owed(backbone, mirror, now_ms()).await;
    // Cheap when nothing is stale: the mirror is in memory.
    if let Err(err) =
        reconcile::run_once(backbone, mirror, now_ms(), config.router.claim_grace.get()).await
    {
        tracing::warn!(error = %err, "reconcile failed");
    }
    mirror.prune(now_ms(), config.presence_ttl);
    if let Err(err) = requeue_absent(config, backbone, mirror, memory, now_ms()).await {
        tracing::warn!(error = %err, "requeue of absent agents failed");
    }
    if let Some(idle) = config.router.idle_close {
        if let Err(err) =
            crate::idle::close_idle(backbone, mirror, idle_watch, now_ms(), idle.get()).await
        {
            tracing::warn!(error = %err, "closing idle conversations failed");
        }
    }
    let deadline = config.router.bot_reply_deadline.get();
    if let Err(err) = bots::enforce(backbone, mirror, now_ms(), deadline, config.presence_ttl).await
    {
        tracing::warn!(error = %err, "handing off bots' overdue conversations failed");
    }
}

/// Tells the bot API what each bot holds, when that changed.
fn publish_held(mirror: &Mirror, held: &tokio::sync::watch::Sender<HeldByBots>) {
    let mut now: HashMap<BotId, Vec<ConversationId>> = HashMap::new();
    for state in mirror.conversations.values() {
        if let Some(bot) = state.bot_owner() {
            now.entry(bot).or_default().push(state.id.clone());
        }
    }
    for conversations in now.values_mut() {
        conversations.sort();
    }
    held.send_if_modified(|current| {
        if current.as_deref() == Some(&now) {
            return false;
        }
        *current = Some(Arc::new(now));
        true
    });
}

/// What one router remembers between passes (never shared: another
/// router, or this one restarted, starts afresh and is only later to act).
#[derive(Debug, Default)]
struct Memory {
    /// Since when each agent holding conversations has been seen offline.
    offline_since: HashMap<AgentId, i64>,
    /// The queue last published (its entries and size), and when.
    published: Option<((Vec<QueueEntry>, u32), i64)>,
    /// When each waiting conversation was last told its place.
    announced_at: HashMap<ConversationId, i64>,
}

/// A waiting visitor is told a new place at most this often.
const ANNOUNCE_EVERY_MS: i64 = 2_000;
/// Queue positions written at once.
const ANNOUNCE_CONCURRENCY: usize = 32;
/// Assignments written at once.
const ASSIGN_CONCURRENCY: usize = 64;
/// A claim younger than this is another router's assignment in progress.
const IN_FLIGHT_MS: i64 = 1_000;

/// An assignment reflected in the mirror before it is written, so that the
/// next decision of the same pass sees the slot taken; undone if the write
/// did not happen (the watches would never correct a write that did not
/// happen).
struct Tentative {
    agent: AgentId,
    conversation: ConversationId,
    last_assigned_at: i64,
    state: Option<(ConversationStatus, Option<i64>)>,
}

impl Tentative {
    fn take(mirror: &mut Mirror, agent: &AgentId, conversation: &ConversationId, now: i64) -> Self {
        let load = mirror.loads.entry(agent.clone()).or_default();
        let last_assigned_at = load.last_assigned_at;
        load.conversations.push(LoadEntry {
            conversation_id: conversation.clone(),
            claimed_at: now,
        });
        load.last_assigned_at = now;
        let state = mirror.conversations.get_mut(conversation).map(|state| {
            let before = (state.status, state.assigned_at);
            state.status = ConversationStatus::Assigned;
            state.assigned_at = Some(now);
            before
        });
        Self {
            agent: agent.clone(),
            conversation: conversation.clone(),
            last_assigned_at,
            state,
        }
    }

    fn undo(self, mirror: &mut Mirror) {
        if let Some(load) = mirror.loads.get_mut(&self.agent) {
            if let Some(i) = load
                .conversations
                .iter()
                .rposition(|e| e.conversation_id == self.conversation)
            {
                load.conversations.remove(i);
            }
            load.last_assigned_at = self.last_assigned_at;
        }
        if let (Some(state), Some((status, assigned_at))) =
            (mirror.conversations.get_mut(&self.conversation), self.state)
        {
            state.status = status;
            state.assigned_at = assigned_at;
        }
    }
}

/// A queue snapshot is published when the queue changes, and at least this
/// often (for edges that started since).
const SNAPSHOT_EVERY_MS: i64 = 10_000;

/// Shows the queue in the metrics and, when `publish` (one router does:
/// the holder of the duties), publishes it for the agents' consoles when
/// it changed.
async fn publish_queue(
    backbone: &Backbone,
    mirror: &Mirror,
    memory: &mut Memory,
    now: i64,
    publish: bool,
) {
    let queue = policy::queue(mirror);
    let mut teams: Vec<TeamQueue> = Vec::new();
    for c in &queue {
        match teams.iter_mut().find(|t| t.team == c.team) {
            Some(team) => {
                team.waiting += 1;
                team.oldest_queued_at = team.oldest_queued_at.min(c.queued_at);
            }
            None => teams.push(TeamQueue {
                team: c.team.clone(),
                waiting: 1,
                oldest_queued_at: c.queued_at,
            }),
        }
    }
    switchboard_metrics::router::router().queue(
        teams
            .iter()
            .map(|t| (t.team.as_ref().map(TeamId::as_str), t.waiting)),
    );
    if !publish {
        return;
    }
    let total = u32::try_from(queue.len()).unwrap_or(u32::MAX);
    let entries: Vec<QueueEntry> = policy::positions(&queue)
        .into_iter()
        .take(QUEUE_SNAPSHOT_ENTRIES)
        .map(|(c, position)| QueueEntry {
            conversation_id: c.id.clone(),
            visitor: c.visitor.clone(),
            team: c.team.clone(),
            position,
            priority: c.priority,
            queued_at: c.queued_at,
        })
        .collect();
    let fresh = match &memory.published {
        Some((last, at)) => last != &(entries.clone(), total) || now - at >= SNAPSHOT_EVERY_MS,
        None => true,
    };
    if !fresh {
        return;
    }
    let snapshot = QueueSnapshot {
        entries: entries.clone(),
        at: now,
        teams,
        total,
    };
    match encode(&snapshot) {
        Ok(payload) => match backbone
            .client
            .publish(subjects::QUEUE_SNAPSHOT, payload.into())
            .await
        {
            Ok(()) => memory.published = Some(((entries, total), now)),
            Err(err) => tracing::warn!(error = %err, "publish queue snapshot"),
        },
        Err(err) => tracing::error!(error = %err, "encode queue snapshot"),
    }
}

/// Takes conversations from agents who are gone: offline beyond the grace
/// period (their conversations go back to the queue at their place), or
/// silent past their team's first-reply deadline (offered to the next).
async fn requeue_absent(
    config: &RouterConfig,
    backbone: &Backbone,
    mirror: &Mirror,
    memory: &mut Memory,
    now: i64,
) -> Result<(), BusError> {
    let grace = millis(config.router.agent_grace.get());
    let mut holders: HashMap<AgentId, Vec<&ConversationState>> = HashMap::new();
    for state in mirror.conversations.values() {
        if state.status == ConversationStatus::Assigned {
            if let Some(agent) = state
                .agent
                .as_ref()
                .filter(|a| a.role == Role::Agent)
                .and_then(|a| AgentId::new(a.id.as_str()).ok())
            {
                holders.entry(agent).or_default().push(state);
            }
        }
    }
    memory
        .offline_since
        .retain(|agent, _| holders.contains_key(agent));
    for (agent, held) in holders {
        if mirror.status(&agent, now, config.presence_ttl) == AgentStatus::Offline {
            let since = *memory.offline_since.entry(agent.clone()).or_insert(now);
            if now - since > grace {
                for state in &held {
                    assign::requeue(backbone, &state.id, &agent, Requeue::Offline).await?;
                }
                memory.offline_since.remove(&agent);
            }
            continue;
        }
        memory.offline_since.remove(&agent);
        for state in held {
            let team = state.team.as_ref().map(TeamId::as_str);
            let Some(deadline) = config.router.first_reply_of(team) else {
                continue;
            };
            let silent_since = state
                .assigned_at
                .filter(|at| state.first_response_at.is_none() && now - at > millis(deadline));
            if let Some(assigned_at) = silent_since {
                let why = Requeue::NoReply { assigned_at };
                assign::requeue(backbone, &state.id, &agent, why).await?;
            }
        }
    }
    Ok(())
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Assigns what can be assigned, in queue order, and tells the rest their
/// place in the queue.
#[tracing::instrument(name = "router.pass", skip_all)]
async fn pass(
    config: &RouterConfig,
    backbone: &Backbone,
    memory: &mut Memory,
    mirror: &mut Mirror,
    mine: &Mine,
) -> Result<(), BusError> {
    let now = now_ms();
    // Only the queues of this router's partitions: a team's whole queue is
    // one partition, so its order and positions stay whole.
    let queue: Vec<_> = policy::queue(mirror)
        .into_iter()
        .filter(|c| mine.queue_of(c.team.as_ref()))
        .cloned()
        .collect();
    let mut waiting = Vec::new();
    // Decide in queue order, each decision seeing the slots the earlier
    // ones take (reflected in the mirror at once), then write them all
    // concurrently: each assignment is a few KV round trips, and doing
    // them one after another would bound assignments/s by the latency.
    let mut planned = Vec::new();
    // Conversations another router is assigning right now (a fresh claim
    // on some agent's slot): left to it, rather than raced for. An older
    // claim may be an orphan of a router that died between its two steps:
    // then it is assigned as usual (sharing the claim if the same agent).
    let in_flight: HashSet<&ConversationId> = mirror
        .loads
        .values()
        .flat_map(|l| l.conversations.iter())
        .filter(|e| now - e.claimed_at < IN_FLIGHT_MS)
        .map(|e| &e.conversation_id)
        .collect();
    let queue: Vec<_> = queue
        .into_iter()
        .filter(|c| !in_flight.contains(&c.id))
        .collect();
    let mut for_bots = Vec::new();
    for conversation in queue {
        let bot_first = config
            .router
            .bot_first_of(conversation.team.as_ref().map(TeamId::as_str));
        if let Some(bot) = bots::bot_for(mirror, &conversation, now, config.presence_ttl)
            .filter(|_| bot_first)
            .cloned()
        {
            // Reflected at once, so nothing else in this pass takes it.
            let before = mirror
                .conversations
                .get_mut(&conversation.id)
                .map(|state| std::mem::replace(&mut state.status, ConversationStatus::Assigned));
            for_bots.push((conversation, bot, before));
            continue;
        }
        let Some(choice) = policy::choose_agent(
            mirror,
            &conversation,
            now,
            &config.router,
            config.presence_ttl,
        ) else {
            waiting.push(conversation);
            continue;
        };
        let Some(account) = mirror.agents.get(&choice.agent).cloned() else {
            continue;
        };
        let capacity = policy::capacity_of(account.capacity, &config.router);
        // As the watches delivered them, before this pass's tentative view.
        let seen = assign::SeenKeys {
            load: mirror.seen_loads.get(&choice.agent).cloned(),
            conversation: mirror.seen_conversations.get(&conversation.id).cloned(),
        };
        let tentative = Tentative::take(mirror, &choice.agent, &conversation.id, now);
        planned.push((
            conversation,
            account,
            capacity,
            choice.reason,
            tentative,
            seen,
        ));
    }
    let results: Vec<_> = futures::stream::iter(planned)
        .map(
            |(conversation, account, capacity, reason, tentative, mut seen)| async move {
                let outcome = assign::assign(
                    backbone,
                    &conversation.id,
                    &account,
                    capacity,
                    reason,
                    &mut seen,
                )
                .await;
                (conversation, outcome, tentative, (account.id, seen.load))
            },
        )
        .buffer_unordered(ASSIGN_CONCURRENCY)
        .collect()
        .await;
    let bot_results: Vec<_> = futures::stream::iter(for_bots)
        .map(|(conversation, bot, before)| async move {
            let outcome = bots::assign(backbone, &conversation.id, &bot).await;
            (conversation, outcome, before)
        })
        .buffer_unordered(ASSIGN_CONCURRENCY)
        .collect()
        .await;
    let mut failure = None;
    for (conversation, outcome, before) in bot_results {
        if matches!(outcome, Ok(Outcome::Assigned)) {
            continue;
        }
        // Not written (taken meanwhile by another router, the visitor
        // left, or NATS failed): the watches would never correct it.
        if let (Some(state), Some(status)) =
            (mirror.conversations.get_mut(&conversation.id), before)
        {
            state.status = status;
        }
        if let Err(err) = outcome {
            failure.get_or_insert(err);
        }
    }
    for (conversation, outcome, tentative, (agent, claim)) in results {
        match outcome {
            // The watches confirm it; the next claim on this agent starts
            // from this one's write.
            Ok(Outcome::Assigned) => {
                if let Some(claim) = claim {
                    mirror.see_load(agent, claim);
                }
            }
            Ok(Outcome::AgentFull | Outcome::NotQueued) => {
                tentative.undo(mirror);
                waiting.push(conversation);
            }
            Err(err) => {
                tentative.undo(mirror);
                failure.get_or_insert(err);
            }
        }
    }
    if let Some(err) = failure {
        return Err(err);
    }
    // Positions are told off the assignment path, concurrently, and at
    // most every ANNOUNCE_EVERY_MS per conversation (a new place at once):
    // a queue of N moving by one would otherwise cost N writes per
    // assignment.
    let waiting: Vec<_> = waiting.iter().collect();
    let mut announcements = Vec::new();
    for (conversation, position) in policy::positions(&waiting) {
        if conversation.announced_position == Some(position) {
            continue;
        }
        let recently = memory
            .announced_at
            .get(&conversation.id)
            .is_some_and(|at| now - at < ANNOUNCE_EVERY_MS);
        if recently && conversation.announced_position.is_some() {
            continue;
        }
        let team = conversation.team.as_ref();
        let online = policy::agents_online(mirror, team, now, config.presence_ttl);
        let eta = policy::estimated_wait_secs(mirror, team, position, now);
        let seen = mirror.seen_conversations.get(&conversation.id).cloned();
        announcements.push((conversation.id.clone(), position, eta, online, seen));
    }
    let results: Vec<_> = futures::stream::iter(announcements)
        .map(|(id, position, eta, online, seen)| async move {
            let result =
                assign::announce_position(backbone, &id, position, eta, online, seen).await;
            (id, position, result)
        })
        .buffer_unordered(ANNOUNCE_CONCURRENCY)
        .collect()
        .await;
    for (id, position, result) in results {
        // The next write of this conversation (its assignment, most
        // likely) starts from this one's.
        if let Some(left) = result? {
            mirror.see_conversation(&id, left);
        }
        memory.announced_at.insert(id.clone(), now);
        if let Some(state) = mirror.conversations.get_mut(&id) {
            state.announced_position = Some(position);
        }
    }
    memory.announced_at.retain(|id, _| {
        mirror
            .conversations
            .get(id)
            .is_some_and(|c| c.status == ConversationStatus::Queued)
    });
    Ok(())
}
