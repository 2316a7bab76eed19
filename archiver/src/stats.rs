//! Reports over the archive: the conversation summaries of a window read
//! with the analytics indexes, turned into a report by
//! `switchboard_analytics`. The same function serves `archive.stats`
//! requests (from edges) and `switchboard report` (which reads MongoDB
//! itself), so both print the same figures.

use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{self, doc, Document};
use switchboard_analytics::{Directory, Facts, Query, QueryError};
use switchboard_bus::{accounts, Backbone, BusError};
use switchboard_protocol::payloads::{decode, encode};
use switchboard_protocol::stats::{StatsFailure, StatsReply, StatsReport, StatsRequest};
use switchboard_protocol::subjects;
use switchboard_protocol::time::now_ms;
use tokio_util::sync::CancellationToken;

use crate::facts;
use crate::store::{Archive, StoreError};

/// Summaries read per round trip.
const READ_BATCH: u32 = 5_000;

/// A report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("no agent with login {0:?}")]
    UnknownAgent(String),
    #[error("read the archive: {0}")]
    Store(#[from] StoreError),
    #[error("read the agent accounts: {0}")]
    Bus(#[from] BusError),
    #[error("the report computation failed")]
    Compute,
}

impl ReportError {
    /// The error code of a [`StatsFailure`].
    pub fn code(&self) -> &'static str {
        match self {
            ReportError::Query(_) => "bad_request",
            ReportError::UnknownAgent(_) => "not_found",
            ReportError::Store(_) | ReportError::Bus(_) | ReportError::Compute => "unavailable",
        }
    }
}

impl Archive {
    /// The analytics of the conversations started in `[since, until)`,
    /// of a team and of conversations an agent was assigned, when given.
    /// Summaries without analytics (archived by an older version and not
    /// touched since) are left out.
    ///
    /// # Errors
    /// MongoDB errors.
    pub async fn facts(
        &self,
        query: &Query,
        agent_id: Option<&str>,
    ) -> Result<Vec<Facts>, StoreError> {
        let mut filter = doc! {
            "analytics.started_at": { "$gte": query.since, "$lt": query.until },
        };
        if let Some(team) = &query.team {
            filter.insert("analytics.team", team.as_str());
        }
        if let Some(agent) = agent_id {
            filter.insert("analytics.agents.id", agent);
        }
        let mut cursor = self
            .summaries()
            .find(filter)
            .projection(doc! { facts::FIELD: 1 })
            .batch_size(READ_BATCH)
            .await
            .map_err(|source| StoreError::Mongo {
                op: "find conversation summaries",
                source,
            })?;
        let mut all = Vec::new();
        while let Some(summary) = cursor
            .try_next()
            .await
            .map_err(|source| StoreError::Mongo {
                op: "read conversation summaries",
                source,
            })?
        {
            match summary
                .get_document(facts::FIELD)
                .map(|d| bson::from_document::<Facts>(d.clone()))
            {
                Ok(Ok(facts)) => all.push(facts),
                Ok(Err(err)) => {
                    tracing::warn!(id = ?summary.get("_id"), error = %err, "unreadable analytics; left out");
                }
                Err(_) => {}
            }
        }
        Ok(all)
    }
}

/// The report a request asks for.
///
/// # Errors
/// [`ReportError`]; its [`ReportError::code`] says whose fault it is.
pub async fn report(
    archive: &Archive,
    backbone: &Backbone,
    request: &StatsRequest,
) -> Result<StatsReport, ReportError> {
    let query = Query::parse(request, now_ms())?;
    let agent_id = match &query.agent {
        Some(login) => Some(
            accounts::find_by_login(backbone, login)
                .await?
                .ok_or_else(|| ReportError::UnknownAgent(login.clone()))?
                .id
                .to_string(),
        ),
        None => None,
    };
    let directory: Directory = accounts::list(backbone)
        .await?
        .into_iter()
        .map(|a| (a.id.to_string(), a.login))
        .collect();
    let facts = archive.facts(&query, agent_id.as_deref()).await?;
    // Sorting and grouping a large window is CPU work: off the async workers.
    tokio::task::spawn_blocking(move || {
        switchboard_analytics::report(&query, agent_id.as_deref(), &facts, &directory)
    })
    .await
    .map_err(|_| ReportError::Compute)
}

/// Answers `archive.stats` (queue group: one archiver answers each
/// request), each request in its own task.
pub async fn serve(
    client: async_nats::Client,
    archive: Archive,
    backbone: Backbone,
    shutdown: CancellationToken,
) {
    loop {
        let mut requests = match client
            .queue_subscribe(subjects::ARCHIVE_STATS, subjects::ARCHIVER_GROUP.to_owned())
            .await
        {
            Ok(requests) => requests,
            Err(err) => {
                tracing::warn!(error = %err, "subscribe to stats requests");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let request = tokio::select! {
                () = shutdown.cancelled() => return,
                request = requests.next() => request,
            };
            let Some(request) = request else { break };
            let Some(reply_to) = request.reply.clone() else {
                continue;
            };
            let (client, archive, backbone) = (client.clone(), archive.clone(), backbone.clone());
            tokio::spawn(async move {
                let reply = answer(&archive, &backbone, &request.payload).await;
                match encode(&reply) {
                    Ok(payload) => {
                        if let Err(err) = client.publish(reply_to, payload.into()).await {
                            tracing::warn!(error = %err, "reply to stats request");
                        }
                    }
                    Err(err) => tracing::error!(error = %err, "encode stats reply"),
                }
            });
        }
    }
}

#[tracing::instrument(name = "archiver.stats", skip_all)]
async fn answer(archive: &Archive, backbone: &Backbone, payload: &[u8]) -> StatsReply {
    let failure = |code: &str, message: String| StatsReply {
        report: None,
        error: Some(StatsFailure {
            code: code.to_owned(),
            message,
        }),
    };
    let request: StatsRequest = match decode(payload) {
        Ok(request) => request,
        Err(err) => {
            tracing::info!(error = %err, "undecodable stats request");
            return failure("bad_request", format!("undecodable request: {err}"));
        }
    };
    match report(archive, backbone, &request).await {
        Ok(report) => StatsReply {
            report: Some(report),
            error: None,
        },
        Err(err) => {
            if err.code() == "unavailable" {
                tracing::warn!(error = %err, "stats request failed");
            } else {
                tracing::info!(error = %err, "stats request refused");
            }
            failure(err.code(), err.to_string())
        }
    }
}

/// (For tests and tools: a stored summary's fold.)
pub fn facts_of(summary: &Document) -> Option<Facts> {
    facts::stored(summary).facts
}
