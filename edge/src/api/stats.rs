//! `GET /api/v1/stats`: the report over the archive, for admins. The edge
//! never reads the archive itself: it asks the archivers on
//! `archive.stats` (one of them answers) and passes their report on as
//! JSON, the same JSON as `switchboard report --format json`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::RequestErrorKind;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use switchboard_protocol::payloads::{decode, encode};
use switchboard_protocol::stats::{StatsReply, StatsRequest};
use switchboard_protocol::subjects;

use super::caller::AdminCaller;
use crate::http::error;
use crate::server::EdgeState;

/// How long an archiver may take to compute a report: a scan of the
/// window's conversation summaries, seconds for a large window on a slow
/// archive.
const STATS_TIMEOUT: Duration = Duration::from_secs(60);

pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new().route("/api/v1/stats", get(stats))
}

/// The query string; every parameter is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    since: Option<String>,
    until: Option<String>,
    team: Option<String>,
    agent: Option<String>,
    tz: Option<String>,
}

async fn stats(
    State(state): State<Arc<EdgeState>>,
    caller: AdminCaller,
    params: Result<Query<Params>, QueryRejection>,
) -> Response {
    let Query(params) = match params {
        Ok(params) => params,
        Err(rejection) => {
            tracing::info!(error = %rejection, "bad stats query");
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &rejection.body_text(),
            );
        }
    };
    let request = StatsRequest {
        since: params.since,
        until: params.until,
        team: params.team,
        agent: params.agent,
        tz: params.tz,
    };
    let payload = match encode(&request) {
        Ok(payload) => payload,
        Err(err) => {
            tracing::error!(error = %err, "encode stats request");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "encode");
        }
    };
    let asked = state
        .backbone
        .client
        .send_request(
            subjects::ARCHIVE_STATS,
            async_nats::Request::new()
                .payload(payload.into())
                .timeout(Some(STATS_TIMEOUT)),
        )
        .await;
    let message = match asked {
        Ok(message) => message,
        Err(err) => {
            let reason = match err.kind() {
                RequestErrorKind::NoResponders => "no archiver is running",
                RequestErrorKind::TimedOut => "the archivers did not answer in time",
                RequestErrorKind::Other => "nats is unreachable",
            };
            tracing::warn!(admin = %caller.identity.id(), error = %err, "stats request failed");
            return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", reason);
        }
    };
    let reply: StatsReply = match decode(&message.payload) {
        Ok(reply) => reply,
        Err(err) => {
            tracing::error!(error = %err, "undecodable stats reply");
            return error(
                StatusCode::BAD_GATEWAY,
                "unavailable",
                "the archiver's answer could not be read",
            );
        }
    };
    match (reply.report, reply.error) {
        (Some(report), None) => Json(report).into_response(),
        (_, Some(failure)) => {
            let status = match failure.code.as_str() {
                "bad_request" => StatusCode::BAD_REQUEST,
                "not_found" => StatusCode::NOT_FOUND,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            tracing::info!(
                admin = %caller.identity.id(),
                code = %failure.code,
                message = %failure.message,
                "stats request refused"
            );
            error(status, &failure.code, &failure.message)
        }
        (None, None) => {
            tracing::error!("stats reply without report or error");
            error(
                StatusCode::BAD_GATEWAY,
                "unavailable",
                "the archiver answered nothing",
            )
        }
    }
}
