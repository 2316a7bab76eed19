//! Admins manage agents and teams over HTTP, as `switchboard agent …`
//! does: add an agent, change their team, capacity or role, disable them
//! (their connections close on every edge at once); and edit a team's
//! settings (the `teams` bucket, which routers and edges watch).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, put};
use axum::{Json, Router};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use switchboard_bus::accounts::{self, NewAgent};
use switchboard_bus::{kv, BusError};
use switchboard_protocol::ids::{AgentId, TeamId};
use switchboard_protocol::payloads::{AgentAccount, AgentRole, TeamSettings};
use switchboard_protocol::subjects::MAX_LOGIN_BYTES;
use switchboard_protocol::time::now_ms;

use super::caller::AdminCaller;
use super::support::{bad_request, not_found, parse, unavailable};
use crate::http::error;
use crate::server::EdgeState;

/// Longest first-reply deadline an admin may set: a day.
const MAX_FIRST_REPLY_SECS: u64 = 24 * 3600;

pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .route("/api/v1/admin/agents", get(list_agents).post(add_agent))
        .route("/api/v1/admin/agents/{id}", patch(change_agent))
        .route("/api/v1/admin/teams", get(list_teams))
        .route("/api/v1/admin/teams/{team}", put(save_team))
}

/// `GET /api/v1/admin/agents`: every account with login, role, whether it
/// is disabled, status and load.
async fn list_agents(State(state): State<Arc<EdgeState>>, _caller: AdminCaller) -> Response {
    Json(json!({ "agents": state.directory.agents(true) })).into_response()
}

fn parse_role(role: Option<&str>) -> Result<AgentRole, Box<Response>> {
    match role {
        None | Some("agent") => Ok(AgentRole::Agent),
        Some("admin") => Ok(AgentRole::Admin),
        Some(_) => Err(Box::new(bad_request("role is agent or admin"))),
    }
}

/// What [`accounts`] refuses is the admin's mistake; anything else is the
/// backbone's.
fn refused(what: &str, err: &BusError) -> Response {
    match err {
        BusError::Invalid(reason) => bad_request(reason),
        other => unavailable(what, other),
    }
}

fn public(account: &AgentAccount) -> serde_json::Value {
    json!({
        "id": account.id,
        "login": account.login,
        "name": account.name,
        "team": account.team,
        "capacity": account.capacity,
        "role": account.role.as_str(),
        "disabled": account.disabled,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    login: String,
    name: String,
    password: String,
    #[serde(default)]
    team: Option<TeamId>,
    #[serde(default)]
    capacity: Option<u32>,
    #[serde(default)]
    role: Option<String>,
}

/// `POST /api/v1/admin/agents`: a new agent (or admin) account.
async fn add_agent(
    State(state): State<Arc<EdgeState>>,
    caller: AdminCaller,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request: NewAccount = match parse(body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let role = match parse_role(request.role.as_deref()) {
        Ok(role) => role,
        Err(response) => return *response,
    };
    if request.login.trim().len() > MAX_LOGIN_BYTES || request.name.trim().chars().count() > 80 {
        return bad_request("login or name too long");
    }
    let Some(_turn) = state.admission.password_check().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the edge is shutting down",
        );
    };
    let added = accounts::add_as(
        &state.backbone,
        NewAgent {
            login: request.login,
            name: request.name,
            password: request.password,
            team: request.team,
            capacity: request.capacity.unwrap_or(3),
        },
        role,
    )
    .await;
    match added {
        Ok(account) => {
            tracing::info!(admin = %caller.identity.id(), agent_id = %account.id, "agent added");
            (StatusCode::CREATED, Json(public(&account))).into_response()
        }
        Err(err) => refused("add an agent", &err),
    }
}

/// `Some(None)` for an explicit `null`, `None` when the field is absent.
fn explicit<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    /// `null` leaves every team.
    #[serde(default, deserialize_with = "explicit")]
    team: Option<Option<TeamId>>,
    #[serde(default)]
    capacity: Option<u32>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    disabled: Option<bool>,
}

/// `PATCH /api/v1/admin/agents/{id}`: team, capacity, role, disabled.
async fn change_agent(
    State(state): State<Arc<EdgeState>>,
    caller: AdminCaller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request: Change = match parse(body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let Ok(id) = AgentId::new(id) else {
        return not_found("no such agent");
    };
    // Everything is checked before anything is written: a refused
    // request changes nothing.
    let role = match request.role.as_deref().map(|role| parse_role(Some(role))) {
        None => None,
        Some(Ok(role)) => Some(role),
        Some(Err(response)) => return *response,
    };
    if request.capacity == Some(0) {
        return bad_request("capacity must be at least 1");
    }
    let account = match accounts::find(&state.backbone, &id).await {
        Ok(Some(account)) => account,
        Ok(None) => return not_found("no such agent"),
        Err(err) => return unavailable("read an agent", &err),
    };
    if request.disabled == Some(true) && account.id.as_str() == caller.identity.id() {
        return bad_request("admins do not disable themselves");
    }
    let login = account.login.clone();
    let mut account = account;
    if request.team.is_some() || request.capacity.is_some() {
        match accounts::update(&state.backbone, &login, request.capacity, request.team).await {
            Ok(updated) => account = updated,
            Err(err) => return refused("change an agent", &err),
        }
    }
    if let Some(role) = role {
        match accounts::set_role(&state.backbone, &login, role).await {
            Ok(updated) => account = updated,
            Err(err) => return refused("change an agent's role", &err),
        }
    }
    if let Some(disabled) = request.disabled {
        // Disabling closes the agent's connections on every edge at once.
        match accounts::set_disabled(&state.backbone, &login, disabled).await {
            Ok(updated) => account = updated,
            Err(err) => return refused("disable an agent", &err),
        }
    }
    tracing::info!(admin = %caller.identity.id(), agent_id = %account.id, "agent changed");
    Json(public(&account)).into_response()
}

/// `GET /api/v1/admin/teams`: every known team, with the settings admins
/// saved (`null`: the configuration's), who is there and whether a bot runs.
async fn list_teams(State(state): State<Arc<EdgeState>>, _caller: AdminCaller) -> Response {
    let directory = &state.directory;
    let teams: Vec<serde_json::Value> = directory
        .teams()
        .iter()
        .map(|team| {
            let availability = directory.availability(Some(team));
            json!({
                "team": team,
                "settings": directory.team_settings(team),
                "online": availability.online,
                "away": availability.away,
                "bot": availability.bot,
            })
        })
        .collect();
    Json(json!({ "teams": teams })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaveTeam {
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    first_reply_secs: Option<u64>,
    #[serde(default)]
    bot_first: Option<bool>,
    #[serde(default)]
    prechat: Option<bool>,
}

/// `PUT /api/v1/admin/teams/{team}`: a team's settings (a new team too).
async fn save_team(
    State(state): State<Arc<EdgeState>>,
    caller: AdminCaller,
    Path(team): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(team) = TeamId::new(team) else {
        return bad_request("a team id is 1-64 of letters, digits, - and _");
    };
    let request: SaveTeam = match parse(body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    if request
        .strategy
        .as_deref()
        .is_some_and(|s| !matches!(s, "least_busy" | "longest_idle"))
    {
        return bad_request("strategy is least_busy or longest_idle");
    }
    if request
        .first_reply_secs
        .is_some_and(|s| s == 0 || s > MAX_FIRST_REPLY_SECS)
    {
        return bad_request("first_reply_secs is 1 to 86400 (leave it out for none)");
    }
    let settings = TeamSettings {
        team: team.clone(),
        strategy: request.strategy,
        first_reply_secs: request.first_reply_secs,
        bot_first: request.bot_first.unwrap_or(true),
        prechat: request.prechat.unwrap_or(false),
        updated_at: now_ms(),
    };
    if let Err(err) = kv::put(&state.backbone.teams, team.as_str(), &settings).await {
        return unavailable("save a team", &err);
    }
    tracing::info!(admin = %caller.identity.id(), team = %team, "team settings saved");
    Json(settings).into_response()
}
