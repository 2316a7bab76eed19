//! Who is there: the agent directory (for transfers by name and the admin
//! dashboard) and what the widget tells a visitor before a chat (who can
//! answer now, and whether to ask for a name and an email first).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard_protocol::ids::TeamId;
use switchboard_protocol::time::now_ms;

use super::caller::AgentCaller;
use super::support::bad_request;
use crate::server::EdgeState;

pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .route("/api/v1/directory", get(directory))
        .route("/api/v1/widget", get(widget))
}

/// Each team's queue from the routers' latest snapshot: team (or `""` for
/// conversations without one) → (waiting, oldest `queued_at`).
fn queues(state: &EdgeState) -> (BTreeMap<String, (u64, i64)>, u64) {
    let mut queues = BTreeMap::new();
    let mut total = 0;
    let Some(frame) = state.hub.queue() else {
        return (queues, total);
    };
    let Ok(queue) = serde_json::from_str::<Value>(&frame) else {
        return (queues, total);
    };
    if let Some(teams) = queue["teams"].as_array() {
        for team in teams {
            let name = team["team"].as_str().unwrap_or_default().to_owned();
            let waiting = team["waiting"].as_u64().unwrap_or(0);
            let oldest = team["oldest_queued_at"].as_i64().unwrap_or(0);
            queues.insert(name, (waiting, oldest));
        }
    }
    total = queue["total"]
        .as_u64()
        .unwrap_or_else(|| queues.values().map(|(w, _)| w).sum());
    (queues, total)
}

/// `GET /api/v1/directory` (agents): every agent with their team, status
/// (`online`, `away`, `offline`) and load; every team with who is there
/// and its queue; and how many conversations are open.
async fn directory(State(state): State<Arc<EdgeState>>, caller: AgentCaller) -> Response {
    let directory = &state.directory;
    let agents = directory.agents(caller.is_admin());
    let (queues, waiting) = queues(&state);
    let mut names = directory.teams();
    for team in queues.keys().filter(|t| !t.is_empty()) {
        if !names.contains(team) {
            names.push(team.clone());
        }
    }
    names.sort();
    let team_entry = |team: Option<&str>| {
        let availability = directory.availability(team);
        let (queued, oldest) = queues.get(team.unwrap_or("")).copied().unwrap_or((0, 0));
        json!({
            "team": team,
            "online": availability.online,
            "away": availability.away,
            "bot": availability.bot,
            "waiting": queued,
            "oldest_queued_at": (queued > 0).then_some(oldest),
            "settings": team.and_then(|t| directory.team_settings(t)),
        })
    };
    let mut teams: Vec<Value> = names.iter().map(|t| team_entry(Some(t))).collect();
    teams.push(team_entry(None));
    let (held, missed) = directory.open_counts();
    Json(json!({
        "agents": agents,
        "teams": teams,
        "open": { "assigned": held, "waiting": waiting, "missed": missed },
        "at": now_ms(),
    }))
    .into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WidgetQuery {
    team: Option<String>,
}

/// `GET /api/v1/widget?team=…` (anyone): what the widget says before a
/// chat. `availability` is `online` (someone can answer now: an online
/// agent with room, or the team's bot), `queue` (agents are online but
/// busy: a visitor waits) or `nobody` (nobody online: leave a message);
/// `prechat` asks for a name and an email first.
async fn widget(
    State(state): State<Arc<EdgeState>>,
    query: Result<Query<WidgetQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return bad_request("the only parameter is team");
    };
    let team = match query.team.as_deref().filter(|t| !t.is_empty()) {
        Some(team) => match TeamId::new(team) {
            Ok(team) => Some(team),
            Err(err) => return bad_request(&err.to_string()),
        },
        None => None,
    };
    let directory = &state.directory;
    let team_name = team.as_ref().map(TeamId::as_str);
    let availability = directory.availability(team_name);
    let room = directory
        .agents(false)
        .iter()
        .filter(|a| a.status == "online")
        .filter(|a| team_name.is_none() || a.team.as_deref() == team_name)
        .any(|a| a.capacity == 0 || a.load < a.capacity as usize);
    let (queues, _) = queues(&state);
    let waiting = queues
        .get(team_name.unwrap_or(""))
        .map_or(0, |(waiting, _)| *waiting);
    let word = if availability.bot || (room && waiting == 0) {
        "online"
    } else if availability.online > 0 {
        "queue"
    } else {
        "nobody"
    };
    let prechat = team_name
        .and_then(|t| directory.team_settings(t))
        .is_some_and(|s| s.prechat);
    let mut response = Json(json!({
        "team": team,
        "availability": word,
        "agents_online": availability.online,
        "waiting": waiting,
        "bot": availability.bot,
        "prechat": prechat,
    }))
    .into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}
