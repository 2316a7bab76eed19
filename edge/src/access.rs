//! Whether a connection's access still holds. A token expires (the
//! connection is closed then, unless it was refreshed), is logged out, or
//! its agent is disabled or removed: every edge is told at once on
//! `control.revoke`, and a new connection is checked against the
//! `revoked` bucket and the account when it says hello.

use std::sync::Arc;
use std::time::Duration;

use switchboard_bus::{accounts, revocation, Backbone, BusError};
use switchboard_protocol::frames::{ErrorCode, ServerFrame};
use switchboard_protocol::payloads::Revocation;
use switchboard_protocol::time::{now_ms, rfc3339};
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{Identity, Verified};
use crate::handlers::{Handled, Refusal};
use crate::session::Session;

/// The moment of a unix time in seconds (now, if it has passed).
pub fn instant_of(unix_secs: u64) -> tokio::time::Instant {
    let now = u64::try_from(now_ms() / 1000).unwrap_or(0);
    tokio::time::Instant::now() + Duration::from_secs(unix_secs.saturating_sub(now))
}

/// Whether a verified token still gives access: for an agent, the account
/// exists and is enabled and the token was not logged out. (Visitors'
/// tokens are not revoked: they end by expiring.)
///
/// # Errors
/// NATS errors.
pub async fn still_valid(backbone: &Backbone, verified: &Verified) -> Result<bool, BusError> {
    let Identity::Agent { id, .. } = &verified.identity else {
        return Ok(true);
    };
    if !accounts::is_active(backbone, id, verified.issued_at).await? {
        return Ok(false);
    }
    match &verified.token_id {
        Some(token_id) => Ok(!revocation::is_revoked(backbone, token_id).await?),
        None => Ok(true),
    }
}

/// Why the session must close, if this revocation is about it. A session
/// that missed revocations (it fell behind) checks its access again.
pub async fn revoked(
    session: &Session,
    revocation: Result<Arc<Revocation>, RecvError>,
) -> Option<&'static str> {
    let Identity::Agent { id, .. } = &session.identity else {
        return None;
    };
    match revocation {
        Ok(revocation) => {
            let mine = revocation.agent_id.as_ref() == Some(id)
                || (revocation.token_id.is_some() && revocation.token_id == session.token_id);
            mine.then_some(match revocation.reason.as_str() {
                "logged_out" => "logged out",
                "removed" => "account removed",
                _ => "account disabled",
            })
        }
        Err(RecvError::Lagged(_)) => {
            let verified = Verified {
                identity: session.identity.clone(),
                role: Default::default(),
                issued_at: session.token_issued_at,
                expires_at: session.token_expires_at,
                token_id: session.token_id.clone(),
            };
            match still_valid(&session.state.backbone, &verified).await {
                Ok(false) => Some("access revoked"),
                // Unknown: checked again at the next revocation or hello.
                Ok(true) | Err(_) => None,
            }
        }
        Err(RecvError::Closed) => None,
    }
}

/// `refresh`: the connection takes a fresh token of the same identity and
/// lives until it expires.
pub async fn refresh(session: &mut Session, token: &str) -> Handled {
    let verified = session.state.tokens.verify_full(token).map_err(|err| {
        tracing::info!(error = %err, "refresh token refused");
        Refusal::new(ErrorCode::Unauthorized, "invalid or expired token")
    })?;
    let same = verified.identity.role() == session.identity.role()
        && verified.identity.id() == session.identity.id();
    if !same {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "a refresh token must be of the connection's own identity",
        ));
    }
    if !still_valid(&session.state.backbone, &verified).await? {
        return Err(Refusal::new(
            ErrorCode::Unauthorized,
            "this token was revoked",
        ));
    }
    session.token_id = verified.token_id;
    session.token_issued_at = verified.issued_at;
    // A visitor renamed since (`POST /api/v1/visitors/profile`): what they
    // send from now on carries the new token's name.
    session.identity = verified.identity;
    session.token_expires_at = session.token_expires_at.max(verified.expires_at);
    let expires_ms =
        i64::try_from(session.token_expires_at.saturating_mul(1000)).unwrap_or(i64::MAX);
    session
        .outbox
        .frame(&ServerFrame::Refreshed {
            token_expires_at: rfc3339(expires_ms),
        })
        .await;
    Ok(())
}
