//! Taking access away: a token logged out (kept in the `revoked` bucket
//! until it would have expired anyway), an agent disabled or removed. Each
//! is announced on `control.revoke`, which every edge obeys at once by
//! closing the matching connections; the bucket and the account are what
//! an edge checks when a connection says hello, so a revocation an edge
//! missed still holds on the next connection.

use switchboard_protocol::ids::AgentId;
use switchboard_protocol::payloads::{encode, Revocation, RevokedToken};
use switchboard_protocol::subjects;
use switchboard_protocol::time::now_ms;

use crate::{kv, Backbone, BusError};

/// Whether `token_id` can be a key of the `revoked` bucket (the ids this
/// system issues always can).
fn valid_token_id(token_id: &str) -> bool {
    !token_id.is_empty()
        && token_id.len() <= 64
        && token_id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Logs a token out: kept as revoked, and every edge closes the
/// connections that said hello with it.
///
/// # Errors
/// [`BusError::Invalid`] for an id this system never issues; NATS errors.
pub async fn revoke_token(
    backbone: &Backbone,
    token_id: &str,
    agent: &AgentId,
) -> Result<(), BusError> {
    if !valid_token_id(token_id) {
        return Err(BusError::Invalid("not a token id".into()));
    }
    kv::put(
        &backbone.revoked,
        token_id,
        &RevokedToken {
            agent_id: agent.clone(),
            at: now_ms(),
        },
    )
    .await?;
    announce(
        backbone,
        &Revocation {
            token_id: Some(token_id.to_owned()),
            agent_id: None,
            reason: "logged_out".into(),
        },
    )
    .await
}

/// Whether a token was logged out.
///
/// # Errors
/// NATS errors.
pub async fn is_revoked(backbone: &Backbone, token_id: &str) -> Result<bool, BusError> {
    if !valid_token_id(token_id) {
        return Ok(false);
    }
    Ok(kv::get::<RevokedToken>(&backbone.revoked, token_id)
        .await?
        .is_some())
}

/// Tells every edge to close what `revocation` names, and waits until
/// NATS has it.
///
/// # Errors
/// NATS errors.
pub async fn announce(backbone: &Backbone, revocation: &Revocation) -> Result<(), BusError> {
    let payload = encode(revocation).map_err(|e| BusError::decode("revocation", e))?;
    backbone
        .client
        .publish(subjects::CONTROL_REVOKE, payload.into())
        .await
        .map_err(|e| BusError::nats("announce revocation", e))?;
    backbone
        .client
        .flush()
        .await
        .map_err(|e| BusError::nats("announce revocation", e))
}
