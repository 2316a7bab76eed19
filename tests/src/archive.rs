//! Waiting for the archive: how long the archiver takes depends on the
//! machine (the MongoDB-wire dev server is single-threaded Python), so the
//! waits here fail only when the archive stops moving, never because it is
//! slow.

use mongodb::bson::{doc, Document};
use mongodb::Database;

use crate::progressing;

/// Awaits the archive's `messages` holding exactly `count` records of
/// `conversation`. Fails when the count has not moved for a
/// [`deadline`](crate::deadline), or at once when it passes `count` (a
/// record archived twice).
pub async fn until_archived(db: &Database, conversation: &str, count: u64) {
    let messages = db.collection::<Document>("messages");
    let filter = doc! { "conversation_id": conversation };
    progressing(
        &format!("the archive holds the {count} records of {conversation}"),
        || {
            let (messages, filter) = (messages.clone(), filter.clone());
            async move {
                match messages.count_documents(filter).await {
                    Ok(n) if n == count => Ok(()),
                    Ok(n) => {
                        assert!(
                            n < count,
                            "{n} records of {conversation} archived, not {count}"
                        );
                        Err(format!("{n} of {count} archived"))
                    }
                    // A failed count is not progress.
                    Err(_) => Err("archive unreachable".to_owned()),
                }
            }
        },
    )
    .await;
}
