//! Typed values in KV buckets, and compare-and-set.
//!
//! Every routing decision is a [`cas`] on a key's revision: read, decide,
//! write only if nobody wrote since; on a lost race read again and decide
//! again. Several routers and edges can therefore act on the same key
//! without a lock and without overwriting each other.

use async_nats::jetstream::kv::{
    self, CreateErrorKind, EntryErrorKind, Operation, PutErrorKind, UpdateErrorKind,
};
use serde::{de::DeserializeOwned, Serialize};
use switchboard_protocol::payloads::{decode, encode};

use crate::retry::Backoff;
use crate::BusError;

/// How many lost races a [`cas`] tolerates before giving up.
const MAX_ATTEMPTS: usize = 64;

/// A decoded value and the revision it was read at.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: u64,
}

/// Reads `key`'s entry, riding out a bucket between leaders.
async fn entry(store: &kv::Store, key: &str) -> Result<Option<kv::Entry>, BusError> {
    let mut backoff = Backoff::new();
    loop {
        match store.entry(key).await {
            Ok(entry) => return Ok(entry),
            Err(e) if e.kind() == EntryErrorKind::Other && backoff.wait().await => {
                tracing::debug!(error = %e, key, "kv read refused for now; retrying");
            }
            Err(e) => return Err(BusError::nats("read kv entry", e)),
        }
    }
}

/// Reads and decodes `key`; `None` when absent or deleted.
///
/// # Errors
/// NATS errors, or a value this version cannot decode.
pub async fn get<T: DeserializeOwned>(
    store: &kv::Store,
    key: &str,
) -> Result<Option<Versioned<T>>, BusError> {
    let entry = entry(store, key).await?;
    match entry {
        Some(entry) if entry.operation == Operation::Put => Ok(Some(Versioned {
            value: decode(&entry.value).map_err(|e| BusError::decode("kv value", e))?,
            revision: entry.revision,
        })),
        _ => Ok(None),
    }
}

/// Writes `value` unconditionally.
///
/// # Errors
/// NATS errors.
pub async fn put<T: Serialize>(store: &kv::Store, key: &str, value: &T) -> Result<u64, BusError> {
    let bytes: bytes::Bytes = encode(value)
        .map_err(|e| BusError::decode("kv value", e))?
        .into();
    // Writing the same value again is harmless: any refusal is retried
    // (a bucket between leaders refuses at once).
    let mut backoff = Backoff::new();
    loop {
        match store.put(key, bytes.clone()).await {
            Ok(revision) => return Ok(revision),
            Err(e) if e.kind() != PutErrorKind::InvalidKey && backoff.wait().await => {
                tracing::debug!(error = %e, key, "kv write refused for now; retrying");
            }
            Err(e) => return Err(BusError::nats("write kv entry", e)),
        }
    }
}

/// What a [`cas`] decision returns.
pub enum Decision<T, R> {
    /// Write this value, then return `R`.
    Write(T, R),
    /// Delete the key, then return `R`.
    Delete(R),
    /// Change nothing and return `R`.
    Keep(R),
}

/// Read-decide-write on `key` until the write wins. `decide` sees the
/// current value (or `None`) and may run several times.
///
/// # Errors
/// NATS errors, undecodable values, or [`BusError::Contention`] after
/// [`MAX_ATTEMPTS`] lost races.
pub async fn cas<T, R, F>(store: &kv::Store, key: &str, decide: F) -> Result<R, BusError>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<&T>) -> Decision<T, R>,
{
    Ok(cas_versioned(store, key, decide).await?.0)
}

/// [`cas`], also returning the value it wrote and that value's revision
/// (`None` when it kept or deleted), so the caller can go on from there
/// without reading the key again.
///
/// # Errors
/// As [`cas`].
pub async fn cas_versioned<T, R, F>(
    store: &kv::Store,
    key: &str,
    decide: F,
) -> Result<(R, Option<Versioned<T>>), BusError>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<&T>) -> Decision<T, R>,
{
    cas_versioned_seen(store, key, None, decide).await
}

/// A key's value as a watch of its bucket delivered it: the stored bytes
/// and their revision.
#[derive(Debug, Clone)]
pub struct Seen {
    pub revision: u64,
    pub bytes: bytes::Bytes,
}

impl Seen {
    /// What a watch entry shows of its key (`None` for a delete marker).
    pub fn of(entry: &kv::Entry) -> Option<Self> {
        (entry.operation == Operation::Put).then(|| Self {
            revision: entry.revision,
            bytes: entry.value.clone(),
        })
    }
}

/// [`cas_versioned`] whose first attempt decides on `seen` (what a watch
/// showed of the key) instead of reading it: one round trip fewer when the
/// watch is current. A write at a revision is refused if anyone wrote
/// since, so a stale `seen` only costs the refused write, after which
/// every attempt reads first, as [`cas_versioned`] does; a decision to
/// keep or delete nothing made on `seen` is made again on a read.
///
/// # Errors
/// As [`cas`].
pub async fn cas_versioned_seen<T, R, F>(
    store: &kv::Store,
    key: &str,
    mut seen: Option<Seen>,
    mut decide: F,
) -> Result<(R, Option<Versioned<T>>), BusError>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<&T>) -> Decision<T, R>,
{
    // Writes refused at once (a bucket between leaders) are retried within
    // the backoff's budget; every attempt reads again first, so a write
    // that may have happened (its answer lost) is decided on anew. Only
    // lost races count against `MAX_ATTEMPTS`.
    let mut backoff = Backoff::new();
    let mut races = 0;
    while races < MAX_ATTEMPTS {
        let from_seen = seen.is_some();
        let (current, revision) = match seen.take() {
            Some(seen) => (
                Some(decode::<T>(&seen.bytes).map_err(|err| BusError::decode("kv value", err))?),
                Some(seen.revision),
            ),
            None => match entry(store, key).await? {
                Some(e) if e.operation == Operation::Put => (
                    Some(decode::<T>(&e.value).map_err(|err| BusError::decode("kv value", err))?),
                    Some(e.revision),
                ),
                Some(e) => (None, Some(e.revision)),
                None => (None, None),
            },
        };
        match decide(current.as_ref()) {
            // Only a write proves what it was decided on: nothing is left
            // unwritten on the word of a watch that may lag.
            Decision::Keep(_) if from_seen => {}
            Decision::Keep(result) => return Ok((result, None)),
            Decision::Delete(result) => {
                let Some(revision) = revision.filter(|_| current.is_some()) else {
                    return Ok((result, None));
                };
                match store.delete_expect_revision(key, Some(revision)).await {
                    Ok(()) => return Ok((result, None)),
                    Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => {
                        crate::metrics::cas_conflict(&store.name);
                        races += 1;
                    }
                    Err(e) if e.kind() == kv::DeleteErrorKind::Other && backoff.wait().await => {
                        tracing::debug!(error = %e, key, "kv delete refused for now; retrying");
                    }
                    Err(e) => return Err(BusError::nats("delete kv entry", e)),
                }
            }
            Decision::Write(value, result) => {
                let bytes: bytes::Bytes = encode(&value)
                    .map_err(|e| BusError::decode("kv value", e))?
                    .into();
                // A deleted key is rewritten at its delete marker's revision.
                let written = match revision {
                    Some(revision) => {
                        update_with(store, key, bytes, revision, &mut backoff).await?
                    }
                    None => create_with(store, key, bytes, &mut backoff).await?,
                };
                match written {
                    Some(revision) => return Ok((result, Some(Versioned { value, revision }))),
                    None => races += 1,
                }
            }
        }
    }
    Err(BusError::Contention("kv compare-and-set"))
}

/// Writes `key` only if it does not exist (or was deleted), riding out a
/// bucket between leaders; `None` when it exists.
///
/// A create whose answer was lost may have been stored, and its retry then
/// finds the key taken: a caller for whom that matters reads the key after
/// `None` and recognises its own value.
///
/// # Errors
/// NATS errors other than a passing refusal.
pub async fn create(
    store: &kv::Store,
    key: &str,
    bytes: bytes::Bytes,
) -> Result<Option<u64>, BusError> {
    create_with(store, key, bytes, &mut Backoff::new()).await
}

/// Writes `key` only if its last revision is `revision`, riding out a
/// bucket between leaders; `None` when it has moved on (see [`create`] on
/// a lost answer).
///
/// # Errors
/// NATS errors other than a passing refusal.
pub async fn update(
    store: &kv::Store,
    key: &str,
    bytes: bytes::Bytes,
    revision: u64,
) -> Result<Option<u64>, BusError> {
    update_with(store, key, bytes, revision, &mut Backoff::new()).await
}

async fn create_with(
    store: &kv::Store,
    key: &str,
    bytes: bytes::Bytes,
    backoff: &mut Backoff,
) -> Result<Option<u64>, BusError> {
    loop {
        match store.create(key, bytes.clone()).await {
            Ok(revision) => return Ok(Some(revision)),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                crate::metrics::cas_conflict(&store.name);
                return Ok(None);
            }
            Err(e)
                if matches!(e.kind(), CreateErrorKind::Publish | CreateErrorKind::Other)
                    && backoff.wait().await =>
            {
                tracing::debug!(error = %e, key, "kv create refused for now; retrying");
            }
            Err(e) => return Err(BusError::nats("create kv entry", e)),
        }
    }
}

async fn update_with(
    store: &kv::Store,
    key: &str,
    bytes: bytes::Bytes,
    revision: u64,
    backoff: &mut Backoff,
) -> Result<Option<u64>, BusError> {
    loop {
        match store.update(key, bytes.clone(), revision).await {
            Ok(revision) => return Ok(Some(revision)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                crate::metrics::cas_conflict(&store.name);
                return Ok(None);
            }
            Err(e) if e.kind() == UpdateErrorKind::Other && backoff.wait().await => {
                tracing::debug!(error = %e, key, "kv update refused for now; retrying");
            }
            Err(e) => return Err(BusError::nats("update kv entry", e)),
        }
    }
}
