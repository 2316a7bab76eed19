//! `archive.conversation`: who may read a conversation that has left KV
//! (see [`crate::retention`]). Edges ask it when a visitor or agent reads
//! the history of, or marks as read, a conversation KV no longer holds.

use switchboard_protocol::payloads::{
    decode, ArchivedConversationReply, ArchivedConversationRequest,
};

use crate::store::Archive;

/// The answer to one request.
pub async fn answer(archive: &Archive, payload: &[u8]) -> ArchivedConversationReply {
    let refused = |error: String| ArchivedConversationReply {
        found: false,
        visitor_id: None,
        agent_id: None,
        error: Some(error),
    };
    let request = match decode::<ArchivedConversationRequest>(payload) {
        Ok(request) => request,
        Err(err) => return refused(format!("bad request: {err}")),
    };
    match archive.participants(request.conversation_id.as_str()).await {
        Ok(Some((visitor_id, agent_id))) => ArchivedConversationReply {
            found: true,
            visitor_id,
            agent_id,
            error: None,
        },
        Ok(None) => ArchivedConversationReply {
            found: false,
            visitor_id: None,
            agent_id: None,
            error: None,
        },
        Err(err) => {
            tracing::warn!(error = %err, "archived conversation lookup");
            refused("archive unavailable".to_owned())
        }
    }
}
