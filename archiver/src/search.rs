//! Past conversations for agents: the `archive.search` service finds
//! conversation summaries by visitor, by agent and by words of their
//! messages, newest activity first.

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime, Document};
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::{
    decode, ArchiveSearch, ArchiveSearchReply, ArchivedConversation, Participant, Role,
};

use crate::store::{Archive, StoreError};

/// Conversations per answer, at most.
const MAX_LIMIT: u32 = 50;
/// Conversations whose messages match words, looked at per search.
const MAX_TEXT_MATCHES: usize = 500;
/// Longest search text, in characters.
const MAX_TEXT: usize = 200;

/// A regular expression matching `text` literally.
fn literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if "\\^$.|?*+()[]{}/-".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn millis(summary: &Document, field: &str) -> Option<i64> {
    summary
        .get_datetime(field)
        .ok()
        .map(|at| at.timestamp_millis())
}

fn participant(summary: &Document, field: &str, role: Role) -> Option<Participant> {
    let person = summary.get_document(field).ok()?;
    Some(Participant {
        role,
        id: person.get_str("id").ok()?.to_owned(),
        name: person.get_str("name").unwrap_or_default().to_owned(),
    })
}

/// A summary as the search answers it; `None` for one without a valid id.
fn summarise(summary: &Document) -> Option<ArchivedConversation> {
    let conversation_id = ConversationId::new(summary.get_str("_id").ok()?).ok()?;
    let mut visitor = participant(summary, "visitor", Role::Visitor);
    // The name given with "leave a message" is the one agents know.
    if let (Some(visitor), Ok(name)) = (visitor.as_mut(), summary.get_str("contact_name")) {
        name.clone_into(&mut visitor.name);
    }
    Some(ArchivedConversation {
        conversation_id,
        visitor,
        agent: participant(summary, "agent", Role::Agent),
        team: summary.get_str("team").ok().map(str::to_owned),
        status: summary.get_str("status").ok().map(str::to_owned),
        created_at: millis(summary, "created_at"),
        closed_at: millis(summary, "closed_at"),
        last_activity_at: millis(summary, "last_activity_at"),
        rating: summary
            .get_i32("rating")
            .ok()
            .and_then(|r| u8::try_from(r).ok()),
    })
}

impl Archive {
    /// The conversations a search asks for.
    ///
    /// # Errors
    /// MongoDB errors.
    pub async fn search(
        &self,
        request: &ArchiveSearch,
    ) -> Result<Vec<ArchivedConversation>, StoreError> {
        let mut filter = Document::new();
        if let Some(visitor) = &request.visitor_id {
            filter.insert("visitor.id", visitor.as_str());
        }
        if let Some(agent) = &request.agent_id {
            filter.insert("agents.id", agent.as_str());
        }
        if let Some(status) = &request.status {
            filter.insert("status", status.as_str());
        }
        if let Some(before) = request.before {
            filter.insert(
                "last_activity_at",
                doc! { "$lt": DateTime::from_millis(before) },
            );
        }
        if let Some(text) = &request.text {
            let matching = doc! {
                "kind": "message",
                "text": { "$regex": literal(text), "$options": "i" },
            };
            let mut cursor = self
                .messages_raw()
                .find(matching)
                .projection(doc! { "conversation_id": 1 })
                .await
                .map_err(|source| StoreError::Mongo {
                    op: "search messages",
                    source,
                })?;
            let mut ids: Vec<Bson> = Vec::new();
            while let Some(message) =
                cursor
                    .try_next()
                    .await
                    .map_err(|source| StoreError::Mongo {
                        op: "read matching messages",
                        source,
                    })?
            {
                if let Ok(id) = message.get_str("conversation_id") {
                    let id = Bson::String(id.to_owned());
                    if !ids.contains(&id) {
                        ids.push(id);
                        if ids.len() >= MAX_TEXT_MATCHES {
                            break;
                        }
                    }
                }
            }
            filter.insert("_id", doc! { "$in": ids });
        }
        let limit = i64::from(request.limit.clamp(1, MAX_LIMIT));
        let cursor = self
            .summaries()
            .find(filter)
            .sort(doc! { "last_activity_at": -1 })
            .limit(limit)
            .await
            .map_err(|source| StoreError::Mongo {
                op: "search conversations",
                source,
            })?;
        let summaries: Vec<Document> =
            cursor
                .try_collect()
                .await
                .map_err(|source| StoreError::Mongo {
                    op: "read conversations",
                    source,
                })?;
        Ok(summaries.iter().filter_map(summarise).collect())
    }
}

/// The answer to one `archive.search` request (served by
/// [`crate::service::serve`]).
pub async fn answer(archive: &Archive, payload: &[u8]) -> ArchiveSearchReply {
    let refused = |error: String| ArchiveSearchReply {
        conversations: Vec::new(),
        error: Some(error),
        unavailable: false,
    };
    let request: ArchiveSearch = match decode(payload) {
        Ok(request) => request,
        Err(err) => return refused(format!("undecodable request: {err}")),
    };
    if request
        .text
        .as_deref()
        .is_some_and(|t| t.trim().is_empty() || t.chars().count() > MAX_TEXT)
    {
        return refused("the search text must be 1-200 characters".to_owned());
    }
    match archive.search(&request).await {
        Ok(conversations) => ArchiveSearchReply {
            conversations,
            error: None,
            unavailable: false,
        },
        Err(err) => {
            tracing::warn!(error = %err, "archive search failed");
            ArchiveSearchReply {
                unavailable: true,
                ..refused("the archive is unavailable".to_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_matched_literally() {
        assert_eq!(literal("a.b*(c)"), "a\\.b\\*\\(c\\)");
        assert_eq!(literal("退款"), "退款");
    }

    #[test]
    fn a_summary_carries_the_name_left_with_a_message() {
        let summary = doc! {
            "_id": "c_01HZX",
            "visitor": { "id": "v_1", "name": "Visitor 12" },
            "contact_name": "Ada",
            "status": "missed",
            "rating": 5,
            "last_activity_at": DateTime::from_millis(1_000),
        };
        let found = summarise(&summary).expect("a valid summary");
        assert_eq!(found.visitor.map(|v| v.name).as_deref(), Some("Ada"));
        assert_eq!(found.rating, Some(5));
        assert_eq!(found.last_activity_at, Some(1_000));
        assert!(summarise(&doc! { "_id": "not an id" }).is_none());
    }
}
