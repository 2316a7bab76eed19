//! Typed values in KV buckets, and compare-and-set.
//!
//! Every routing decision is a [`cas`] on a key's revision: read, decide,
//! write only if nobody wrote since; on a lost race read again and decide
//! again. Several routers and edges can therefore act on the same key
//! without a lock and without overwriting each other.

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use serde::{de::DeserializeOwned, Serialize};
use switchboard_protocol::payloads::{decode, encode};

use crate::BusError;

/// How many lost races a [`cas`] tolerates before giving up.
const MAX_ATTEMPTS: usize = 64;

/// A decoded value and the revision it was read at.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: u64,
}

/// Reads and decodes `key`; `None` when absent or deleted.
///
/// # Errors
/// NATS errors, or a value this version cannot decode.
pub async fn get<T: DeserializeOwned>(
    store: &kv::Store,
    key: &str,
) -> Result<Option<Versioned<T>>, BusError> {
    let entry = store
        .entry(key)
        .await
        .map_err(|e| BusError::nats("read kv entry", e))?;
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
    let bytes = encode(value).map_err(|e| BusError::decode("kv value", e))?;
    store
        .put(key, bytes.into())
        .await
        .map_err(|e| BusError::nats("write kv entry", e))
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
    mut decide: F,
) -> Result<(R, Option<Versioned<T>>), BusError>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<&T>) -> Decision<T, R>,
{
    for _ in 0..MAX_ATTEMPTS {
        let entry = store
            .entry(key)
            .await
            .map_err(|e| BusError::nats("read kv entry", e))?;
        let (current, revision) = match &entry {
            Some(e) if e.operation == Operation::Put => (
                Some(decode::<T>(&e.value).map_err(|err| BusError::decode("kv value", err))?),
                Some(e.revision),
            ),
            Some(e) => (None, Some(e.revision)),
            None => (None, None),
        };
        match decide(current.as_ref()) {
            Decision::Keep(result) => return Ok((result, None)),
            Decision::Delete(result) => {
                let Some(revision) = revision.filter(|_| current.is_some()) else {
                    return Ok((result, None));
                };
                match store.delete_expect_revision(key, Some(revision)).await {
                    Ok(()) => return Ok((result, None)),
                    Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => {
                        crate::metrics::cas_conflict(&store.name);
                        continue;
                    }
                    Err(e) => return Err(BusError::nats("delete kv entry", e)),
                }
            }
            Decision::Write(value, result) => {
                let bytes = encode(&value).map_err(|e| BusError::decode("kv value", e))?;
                let written = match revision {
                    // A deleted key is rewritten at its delete marker's revision.
                    Some(revision) => store
                        .update(key, bytes.into(), revision)
                        .await
                        .map(Some)
                        .or_else(|e| match e.kind() {
                            UpdateErrorKind::WrongLastRevision => Ok(None),
                            _ => Err(BusError::nats("update kv entry", e)),
                        })?,
                    None => store
                        .create(key, bytes.into())
                        .await
                        .map(Some)
                        .or_else(|e| match e.kind() {
                            CreateErrorKind::AlreadyExists => Ok(None),
                            _ => Err(BusError::nats("create kv entry", e)),
                        })?,
                };
                if let Some(revision) = written {
                    return Ok((result, Some(Versioned { value, revision })));
                }
                crate::metrics::cas_conflict(&store.name);
            }
        }
    }
    Err(BusError::Contention("kv compare-and-set"))
}
