//! The chat stream and KV buckets, created on start by every component
//! (creation is idempotent, so any component may come up first).

use async_nats::jetstream::{self, kv, stream};
use switchboard_config::{NatsSettings, StorageKind};
use switchboard_protocol::subjects::{self, buckets};

use crate::{BusError, ConversationLog};

/// Handles to everything on the backbone.
#[derive(Clone)]
pub struct Backbone {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub log: ConversationLog,
    pub agents: kv::Store,
    pub logins: kv::Store,
    pub presence: kv::Store,
    pub load: kv::Store,
    pub conversations: kv::Store,
    pub visitors: kv::Store,
    pub reads: kv::Store,
    pub missed: kv::Store,
    /// Logged-out tokens, kept [`REVOKED_KEEP`].
    pub revoked: kv::Store,
    /// Bot accounts.
    pub bots: kv::Store,
    /// Bots' last presence, kept [`BOT_PRESENCE_KEEP`] (a bot is present
    /// while its entry is younger than `nats.presence_ttl`: see
    /// [`crate::bots`]).
    pub bot_presence: kv::Store,
    /// Teams' settings edited by admins (over the configuration's).
    pub teams: kv::Store,
    /// Canned responses.
    pub canned: kv::Store,
    /// Visitors' profiles, kept `nats.retention`.
    pub profiles: kv::Store,
    /// Routers' leases on partitions of the routing work.
    pub leases: kv::Store,
    /// Changes after every NATS reconnection or slow-consumer drop (see
    /// [`crate::connect`]); never changes for a client opened without it.
    pub disruptions: tokio::sync::watch::Receiver<u64>,
    /// Subscriptions the server refused or removed (see [`crate::connect`]);
    /// never changes for a client opened without it.
    pub refusals: tokio::sync::watch::Receiver<crate::Refusals>,
}

/// How long a logged-out token is remembered: longer than any token lives
/// with the default lifetimes (agents 12 h, visitors 30 days).
pub const REVOKED_KEEP: std::time::Duration = std::time::Duration::from_secs(31 * 24 * 3600);

/// How long a bot's last presence is kept: long after it counts as absent,
/// so that every router, even one started later, knows since when.
pub const BOT_PRESENCE_KEEP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl Backbone {
    /// Connects (see [`crate::connect`]) and opens the backbone.
    ///
    /// # Errors
    /// As [`crate::connect`] and [`Backbone::open`].
    pub async fn connect(settings: &NatsSettings, component: &str) -> Result<Self, BusError> {
        let (client, watches) = crate::connect(settings, component).await?;
        let mut backbone = Self::open(client, settings).await?;
        backbone.disruptions = watches.disruptions;
        backbone.refusals = watches.refusals;
        Ok(backbone)
    }

    /// Creates the stream and buckets if missing and returns handles.
    ///
    /// # Errors
    /// When NATS is unreachable or JetStream refuses the configuration.
    pub async fn open(
        client: async_nats::Client,
        settings: &NatsSettings,
    ) -> Result<Self, BusError> {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(settings.request_timeout.get());
        let storage = match settings.storage {
            StorageKind::File => stream::StorageType::File,
            StorageKind::Memory => stream::StorageType::Memory,
        };
        let chat_config = stream::Config {
            name: subjects::CHAT_STREAM.to_owned(),
            description: Some("Switchboard conversation logs".to_owned()),
            subjects: vec![subjects::CHAT_SUBJECTS.to_owned()],
            max_age: settings.retention.get(),
            max_bytes: settings.max_bytes,
            storage,
            num_replicas: settings.replicas,
            duplicate_window: settings.duplicate_window.get(),
            allow_direct: true,
            republish: Some(stream::Republish {
                source: subjects::LIVE_REPUBLISH_SOURCE.to_owned(),
                destination: subjects::LIVE_REPUBLISH_DEST.to_owned(),
                headers_only: false,
            }),
            ..Default::default()
        };
        let mut chat = js
            .get_or_create_stream(chat_config.clone())
            .await
            .map_err(|e| BusError::nats("create chat stream", e))?;
        // A stream made by an older release republishes where this one no
        // longer listens: bring the live fan-out up to date (the rest of
        // its configuration is the operator's).
        if chat.cached_info().config.republish != chat_config.republish {
            tracing::info!("updating the chat stream's live fan-out");
            let mut config = chat.cached_info().config.clone();
            config.republish = chat_config.republish;
            js.update_stream(config)
                .await
                .map_err(|e| BusError::nats("update chat stream", e))?;
            chat = js
                .get_stream(subjects::CHAT_STREAM)
                .await
                .map_err(|e| BusError::nats("open chat stream", e))?;
        }

        let bucket = |name: &str, history: i64, max_age: std::time::Duration| kv::Config {
            bucket: name.to_owned(),
            history,
            max_age,
            storage,
            num_replicas: settings.replicas,
            ..Default::default()
        };
        let forever = std::time::Duration::ZERO;
        let open = |config: kv::Config| {
            let js = js.clone();
            async move {
                match js.get_key_value(&config.bucket).await {
                    Ok(store) => Ok(store),
                    Err(_) => js
                        .create_key_value(config)
                        .await
                        .map_err(|e| BusError::nats("create kv bucket", e)),
                }
            }
        };
        Ok(Self {
            log: ConversationLog::new(client.clone(), js.clone(), chat),
            agents: open(bucket(buckets::AGENTS, 1, forever)).await?,
            logins: open(bucket(buckets::LOGINS, 1, forever)).await?,
            presence: open(bucket(buckets::PRESENCE, 1, settings.presence_ttl.get())).await?,
            load: open(bucket(buckets::LOAD, 1, forever)).await?,
            conversations: open(bucket(buckets::CONVERSATIONS, 1, forever)).await?,
            visitors: open(bucket(buckets::VISITORS, 1, forever)).await?,
            reads: open(bucket(buckets::READS, 1, settings.retention.get())).await?,
            missed: open(bucket(buckets::MISSED, 1, forever)).await?,
            revoked: open(bucket(buckets::REVOKED, 1, REVOKED_KEEP)).await?,
            bots: open(bucket(buckets::BOTS, 1, forever)).await?,
            bot_presence: open(bucket(buckets::BOT_PRESENCE, 1, BOT_PRESENCE_KEEP)).await?,
            teams: open(bucket(buckets::TEAMS, 1, forever)).await?,
            canned: open(bucket(buckets::CANNED, 1, forever)).await?,
            profiles: open(bucket(buckets::PROFILES, 1, settings.retention.get())).await?,
            leases: open(bucket(buckets::LEASES, 1, forever)).await?,
            client,
            js,
            disruptions: tokio::sync::watch::channel(0).1,
            refusals: tokio::sync::watch::channel(crate::Refusals::default()).1,
        })
    }
}
