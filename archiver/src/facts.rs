//! The analytics fold in a conversation summary: `analytics` holds the
//! [`Facts`] of the records the summary applied, and `analytics_rev`
//! counts its writes. Every write of `analytics` is a compare-and-set on
//! (`archived_seq`, `analytics_rev`), so a fold applied incrementally and
//! a fold recomputed from the archive never overwrite each other.

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
        assert_eq!(back.facts, Some(facts));
        assert_eq!(back.rev, Some(7));
        // Another version is refolded, not trusted.
        let mut old = written.clone();
        old.get_document_mut(FIELD).unwrap().insert("v", 0_i64);
        assert_eq!(stored(&old).facts, None);
    }
}
