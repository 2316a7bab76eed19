//! Partitions of the routing work, leased in the `leases` bucket.
//!
//! Each team's queue (and the queue of conversations without a team) is a
//! partition; the singleton duties (reconcile, requeue, idle close, bots'
//! deadlines, the queue snapshot) are one more lease. A router renews what
//! it holds by compare-and-set on the key's revision, every third of
//! `router.lease_ttl`; a lease whose `expires_at` has passed is free, and
//! is taken (again by compare-and-set) by a router holding fewer than its
//! share. Routers announce themselves with membership keys that expire the
//! same way, so each knows how many share the work.
//!
//! A lease only divides the work. Every routing change stays a
//! compare-and-set of its own, so two routers briefly both believing they
//! hold a partition (clocks apart, a renewal answer lost) only race, as
//! all routers did before partitioning.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use futures::StreamExt;
use switchboard_bus::{kv as bus_kv, Backbone, BusError};
use switchboard_protocol::payloads::{decode, encode, Lease};
use switchboard_protocol::subjects::lease_keys;
use switchboard_protocol::time::now_ms;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A killed router's membership is removed this long after it expired.
const STALE_MEMBER_MS: i64 = 60_000;

/// What this router may do now: each leased key with the moment (local
/// clock) until which it is surely still this router's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Owned {
    pub leases: BTreeMap<String, Instant>,
}

impl Owned {
    /// Whether the lease on `key` is this router's at `now`.
    pub fn holds(&self, key: &str, now: Instant) -> bool {
        self.leases.get(key).is_some_and(|until| now < *until)
    }
}

/// A lease this router holds: the revision it last wrote, and until when
/// it is surely valid.
#[derive(Debug, Clone, Copy)]
struct Held {
    revision: u64,
    until: Instant,
}

/// The leasing side of one router.
pub struct Leaser {
    store: kv::Store,
    id: String,
    ttl: Duration,
    held: BTreeMap<String, Held>,
}

/// What the bucket says, read once per round.
#[derive(Debug, Default)]
struct Bucket {
    /// Lease keys → (value, revision); `None` value for a deleted key.
    leases: BTreeMap<String, (Option<Lease>, u64)>,
    /// Routers alive now (membership not expired), this one included.
    members: BTreeSet<String>,
    /// Memberships expired long ago (routers killed), with their revisions.
    stale_members: Vec<(String, u64)>,
}

impl Leaser {
    pub fn new(backbone: &Backbone, id: String, ttl: Duration) -> Self {
        Self {
            store: backbone.leases.clone(),
            id,
            ttl,
            held: BTreeMap::new(),
        }
    }

    /// Runs until `shutdown`: renews, takes and gives up leases every
    /// third of the ttl and whenever the known partitions change, and
    /// tells `owned` what this router holds. On shutdown, releases all.
    pub async fn run(
        mut self,
        mut known: watch::Receiver<BTreeSet<String>>,
        owned: watch::Sender<Owned>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
                changed = known.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
            let partitions = known.borrow_and_update().clone();
            if let Err(err) = self.round(&partitions).await {
                tracing::warn!(error = %err, "lease round failed");
            }
            let now = self.owned();
            switchboard_metrics::router::router().partitions_held(
                now.leases
                    .keys()
                    .filter(|key| key.starts_with(lease_keys::PARTITION_PREFIX))
                    .count(),
            );
            owned.send_if_modified(|current| {
                if *current == now {
                    return false;
                }
                *current = now;
                true
            });
        }
        self.release_all().await;
        switchboard_metrics::router::router().partitions_held(0);
        owned.send_replace(Owned::default());
    }

    fn owned(&self) -> Owned {
        Owned {
            leases: self
                .held
                .iter()
                .map(|(key, held)| (key.clone(), held.until))
                .collect(),
        }
    }

    fn lease(&self) -> Lease {
        Lease {
            holder: self.id.clone(),
            expires_at: now_ms() + i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX),
        }
    }

    async fn read(&self) -> Result<Bucket, BusError> {
        let mut bucket = Bucket::default();
        let mut keys = self
            .store
            .keys()
            .await
            .map_err(|e| BusError::nats("list lease keys", e))?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            names.push(key.map_err(|e| BusError::nats("list lease keys", e))?);
        }
        let now = now_ms();
        for key in names {
            let Some(entry) = self
                .store
                .entry(&key)
                .await
                .map_err(|e| BusError::nats("read lease", e))?
            else {
                continue;
            };
            let value = match entry.operation {
                Operation::Put => decode::<Lease>(&entry.value).ok(),
                _ => None,
            };
            if key.starts_with(lease_keys::MEMBER_PREFIX) {
                match value {
                    Some(lease) if lease.expires_at > now => {
                        bucket.members.insert(lease.holder);
                    }
                    Some(lease) if lease.expires_at < now - STALE_MEMBER_MS => {
                        bucket.stale_members.push((key, entry.revision));
                    }
                    _ => {}
                }
            } else {
                bucket.leases.insert(key, (value, entry.revision));
            }
        }
        bucket.members.insert(self.id.clone());
        Ok(bucket)
    }

    /// Writes `key` with a fresh lease if its revision is still
    /// `revision` (`None`: if it does not exist); returns whether it won.
    async fn write(&mut self, key: &str, revision: Option<u64>) -> Result<bool, BusError> {
        let started = Instant::now();
        let bytes: bytes::Bytes = encode(&self.lease())
            .map_err(|e| BusError::decode("lease", e))?
            .into();
        let written = match revision {
            Some(revision) => bus_kv::update(&self.store, key, bytes, revision).await?,
            None => bus_kv::create(&self.store, key, bytes).await?,
        };
        match written {
            Some(revision) => {
                // Counted from before the write: the lease is surely ours
                // until then, whatever the other routers' clocks say.
                let until = started + self.ttl;
                let new = !self.held.contains_key(key);
                self.held.insert(key.to_owned(), Held { revision, until });
                if new {
                    tracing::info!(router_id = %self.id, lease = key, "lease taken");
                }
                Ok(true)
            }
            None => {
                if self.held.remove(key).is_some() {
                    tracing::info!(router_id = %self.id, lease = key, "lease lost");
                }
                Ok(false)
            }
        }
    }

    async fn release(&mut self, key: &str) {
        let Some(held) = self.held.remove(key) else {
            return;
        };
        match self
            .store
            .delete_expect_revision(key, Some(held.revision))
            .await
        {
            Ok(()) => tracing::info!(router_id = %self.id, lease = key, "lease released"),
            Err(err) => tracing::debug!(error = %err, lease = key, "lease not released"),
        }
    }

    async fn release_all(&mut self) {
        let keys: Vec<String> = self.held.keys().cloned().collect();
        for key in keys {
            self.release(&key).await;
        }
        if let Err(err) = self.store.delete(lease_keys::member(&self.id)).await {
            tracing::debug!(error = %err, "membership not withdrawn");
        }
    }

    /// One round: announce membership, renew what is held, give up what
    /// is beyond this router's share, take free partitions up to it.
    async fn round(&mut self, known: &BTreeSet<String>) -> Result<(), BusError> {
        let member = lease_keys::member(&self.id);
        let bytes: bytes::Bytes = encode(&self.lease())
            .map_err(|e| BusError::decode("lease", e))?
            .into();
        self.store
            .put(&member, bytes)
            .await
            .map_err(|e| BusError::nats("write membership", e))?;
        let bucket = self.read().await?;
        let now = now_ms();
        // Renew: a lease is ours only at the revision we wrote last.
        let held: Vec<(String, u64)> = self
            .held
            .iter()
            .map(|(k, h)| (k.clone(), h.revision))
            .collect();
        for (key, revision) in held {
            self.write(&key, Some(revision)).await?;
        }
        let partitions: BTreeSet<&str> = known
            .iter()
            .map(String::as_str)
            .chain(
                bucket
                    .leases
                    .keys()
                    .map(String::as_str)
                    .filter(|k| k.starts_with(lease_keys::PARTITION_PREFIX)),
            )
            .collect();
        let share = share(partitions.len(), bucket.members.len());
        // Over the share (routers joined): give up the last ones, so the
        // newcomers find them free at their next round.
        let mine: Vec<String> = self
            .held
            .keys()
            .filter(|k| k.starts_with(lease_keys::PARTITION_PREFIX))
            .cloned()
            .collect();
        for key in mine.iter().skip(share) {
            self.release(key).await;
        }
        let free = |key: &str| match bucket.leases.get(key) {
            None => Some(None),
            Some((None, revision)) => Some(Some(*revision)),
            Some((Some(lease), revision)) if lease.expires_at <= now => Some(Some(*revision)),
            Some(_) => None,
        };
        for key in partitions {
            if self.partitions_held() >= share {
                break;
            }
            if self.held.contains_key(key) {
                continue;
            }
            if let Some(revision) = free(key) {
                self.write(key, revision).await?;
            }
        }
        if !self.held.contains_key(lease_keys::DUTIES) {
            if let Some(revision) = free(lease_keys::DUTIES) {
                self.write(lease_keys::DUTIES, revision).await?;
            }
        }
        // Killed routers' memberships are removed by the duties' holder.
        if self.held.contains_key(lease_keys::DUTIES) {
            for (key, revision) in &bucket.stale_members {
                if let Err(err) = self
                    .store
                    .delete_expect_revision(key, Some(*revision))
                    .await
                {
                    tracing::debug!(error = %err, key, "stale membership not removed");
                }
            }
        }
        Ok(())
    }

    fn partitions_held(&self) -> usize {
        self.held
            .keys()
            .filter(|k| k.starts_with(lease_keys::PARTITION_PREFIX))
            .count()
    }
}

/// How many of `partitions` each of `routers` should hold: rounded up, so
/// that every partition finds a router.
pub fn share(partitions: usize, routers: usize) -> usize {
    partitions.div_ceil(routers.max(1))
}

/// A router's id in the leases: its process id (so operators and tests
/// can tell which process holds what) and a random part (process ids
/// repeat across hosts).
pub fn router_id() -> String {
    format!("{}-{}", std::process::id(), ulid_like())
}

fn ulid_like() -> String {
    // The conversation ids' generator is random enough for this.
    let id = switchboard_protocol::ids::MessageId::generate();
    id.as_str()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .rev()
        .take(10)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_rounds_up() {
        assert_eq!(share(3, 3), 1);
        assert_eq!(share(4, 3), 2);
        assert_eq!(share(3, 1), 3);
        assert_eq!(share(0, 2), 0);
        assert_eq!(share(5, 0), 5);
    }

    #[test]
    fn owned_expires() {
        let now = Instant::now();
        let mut owned = Owned::default();
        owned
            .leases
            .insert("part.none".into(), now + Duration::from_secs(1));
        assert!(owned.holds("part.none", now));
        assert!(!owned.holds("part.none", now + Duration::from_secs(2)));
        assert!(!owned.holds("duties", now));
    }

    #[test]
    fn router_ids_are_kv_keys() {
        let id = router_id();
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(router_id(), id);
    }
}
