//! The analytics fold in a conversation summary: `analytics` holds the
//! [`Facts`] of the records the summary applied, and `analytics_rev`
//! counts its writes. Every write of `analytics` is a compare-and-set on
//! (`archived_seq`, `analytics_rev`), so a fold applied incrementally and
//! a fold recomputed from the archive never overwrite each other.

use std::collections::HashMap;
use std::sync::Mutex;

use mongodb::bson::{self, doc, Bson, Document};
use switchboard_analytics::{Facts, FACTS_VERSION};

use crate::documents::ConvertError;

/// The summary field holding the fold.
pub const FIELD: &str = "analytics";
/// The summary field counting the fold's writes.
pub const REV: &str = "analytics_rev";

/// A summary's fold as read.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// `None`: absent (a summary from before analytics), unreadable, or
    /// of another version; it is folded again from the archive.
    pub facts: Option<Facts>,
    pub rev: Option<i64>,
}

/// The folds this archiver wrote last, by conversation: what it would
/// otherwise read back before folding the conversation's next records.
/// Only a hint: every write is a compare-and-set on the `archived_seq` and
/// `analytics_rev` it holds, and a lost one drops the entry and takes the
/// path that reads. (A revision is written by one writer only, so the
/// pair names exactly the fold held.)
#[derive(Default)]
pub struct FoldCache {
    entries: Mutex<HashMap<String, (i64, Stored)>>,
}

/// Conversations remembered before the cache is emptied.
const MAX_CACHED: usize = 20_000;

impl FoldCache {
    /// The remembered (applied `seq`, fold) of each of `ids` known.
    pub fn get_many(&self, ids: &[&str]) -> HashMap<String, (i64, Stored)> {
        let Ok(entries) = self.entries.lock() else {
            return HashMap::new();
        };
        ids.iter()
            .filter_map(|id| entries.get(*id).map(|e| ((*id).to_owned(), e.clone())))
            .collect()
    }

    /// Remembers a fold just written at `applied` with revision `rev`.
    pub fn remember(&self, id: &str, applied: i64, facts: Facts, rev: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_CACHED {
                entries.clear();
            }
            entries.insert(
                id.to_owned(),
                (
                    applied,
                    Stored {
                        facts: Some(facts),
                        rev: Some(rev),
                    },
                ),
            );
        }
    }

    /// Forgets a conversation (its summary changed some other way).
    pub fn forget(&self, id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(id);
        }
    }
}

/// The fold of a summary document (projected with [`FIELD`] and [`REV`]).
pub fn stored(summary: &Document) -> Stored {
    let facts = summary
        .get_document(FIELD)
        .ok()
        .and_then(|d| bson::from_document::<Facts>(d.clone()).ok())
        .filter(|f| f.v == FACTS_VERSION);
    Stored {
        facts,
        rev: summary.get_i64(REV).ok(),
    }
}

/// The filter value matching the revision read (`None`: never written).
pub fn rev_filter(rev: Option<i64>) -> Bson {
    match rev {
        Some(rev) => Bson::Int64(rev),
        None => Bson::Document(doc! { "$exists": false }),
    }
}

/// Adds the new fold and the next revision to an update's `$set`.
///
/// # Errors
/// When the facts cannot be expressed in BSON (they always can).
pub fn set(update: &mut Document, facts: &Facts, rev: Option<i64>) -> Result<(), ConvertError> {
    let value = bson::to_document(facts).map_err(|e| ConvertError::Bson(e.to_string()))?;
    let next = rev.unwrap_or(0) + 1;
    match update.get_document_mut("$set") {
        Ok(set) => {
            set.insert(FIELD, value);
            set.insert(REV, next);
        }
        Err(_) => {
            update.insert("$set", doc! { FIELD: value, REV: next });
        }
    }
    Ok(())
}

/// Adds to an update's `$set` the fields of the fold that differ from
/// `before` (`analytics.<field>`), and the next revision: for a fold whose
/// stored value is known to be `before` (the write's compare-and-set
/// checks it), a smaller write than [`set`].
///
/// # Errors
/// When the facts cannot be expressed in BSON (they always can).
pub fn set_changes(
    update: &mut Document,
    before: &Facts,
    after: &Facts,
    rev: Option<i64>,
) -> Result<(), ConvertError> {
    let old = bson::to_document(before).map_err(|e| ConvertError::Bson(e.to_string()))?;
    let new = bson::to_document(after).map_err(|e| ConvertError::Bson(e.to_string()))?;
    let mut changes = Document::new();
    for (key, value) in new {
        if old.get(&key) != Some(&value) {
            changes.insert(format!("{FIELD}.{key}"), value);
        }
    }
    changes.insert(REV, rev.unwrap_or(0) + 1);
    match update.get_document_mut("$set") {
        Ok(set) => set.extend(changes),
        Err(_) => {
            update.insert("$set", changes);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_roundtrip_through_bson() {
        let mut facts = Facts {
            started_at: Some(1_700_000_000_000),
            rating: Some(4),
            ..Facts::default()
        };
        facts.messages.agent = 3;
        let mut update = doc! {};
        set(&mut update, &facts, Some(6)).unwrap();
        let written = update.get_document("$set").unwrap();
        assert_eq!(written.get_i64(REV).unwrap(), 7);
        let back = stored(written);
        assert_eq!(back.facts.as_ref(), Some(&facts));
        assert_eq!(back.rev, Some(7));
        // Only the changed fields are written.
        let mut after = facts.clone();
        after.messages.visitor += 1;
        after.seq = 9;
        let mut update = doc! {};
        set_changes(&mut update, &facts, &after, Some(7)).unwrap();
        let changes = update.get_document("$set").unwrap();
        let mut keys: Vec<&str> = changes.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["analytics.messages", "analytics.seq", REV]);
        // Another version is refolded, not trusted.
        let mut old = written.clone();
        old.get_document_mut(FIELD).unwrap().insert("v", 0_i64);
        assert_eq!(stored(&old).facts, None);
    }
}
