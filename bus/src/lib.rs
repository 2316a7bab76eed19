//! The backbone as the components use it: everything that talks to NATS
//! JetStream on behalf of more than one component.
//!
//! - [`backbone`]: creates (idempotently) the chat stream and the KV buckets,
//!   and hands out handles to them.
//! - [`log`]: a conversation's log — appending with a dense per-conversation
//!   `seq` and dedupe, reading ranges back for resume and history.
//! - [`kv`]: typed MessagePack values in KV buckets and the compare-and-set
//!   loop every routing decision goes through.
//! - [`outbox`]: events a conversation's state owes to its log, written
//!   after the state change by whoever comes next.
//! - [`slots`]: giving back an agent's capacity slot.
//! - [`retry`]: riding out a moment when NATS refuses writes (a leader
//!   election).
//! - [`accounts`]: agent accounts and password checks.
//! - [`bots`]: bot accounts and presence, and the bot's side of the
//!   routing state (its answer deadline, handing off to the humans).
//! - [`revocation`]: logged-out tokens, and the notice every edge obeys
//!   when access is taken away.
//! - [`admin`]: the queue as admins see and change it, and broadcasts
//!   (shared by the command line and the edge's admin API).
//! - [`error`]: the error type, [`BusError`].
//! - `metrics`: what the backbone counts (append latency, lost races).

pub mod accounts;
pub mod admin;
pub mod backbone;
pub mod bots;
pub mod error;
pub mod kv;
pub mod log;
mod metrics;
pub mod outbox;
pub mod retry;
pub mod revocation;
pub mod slots;

pub use backbone::Backbone;
pub use error::BusError;
pub use log::{Appended, ConversationLog};

/// How often an idle connection pings nats-server.
const PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects to NATS with the settings' servers, credentials, TLS, name and
/// timeouts. The client reconnects by itself forever (to any of the
/// servers); callers never need to reconnect. The [`Watches`] tell of
/// every (re)connection and slow-consumer drop (moments after which live
/// messages may have been missed) and of subscriptions the server refused
/// or removed.
///
/// # Errors
/// An invalid server address, an unreadable credentials file, or a first
/// connection that cannot be made. No error or log line quotes a
/// credential.
pub async fn connect(
    settings: &switchboard_config::NatsSettings,
    component: &str,
) -> Result<(async_nats::Client, Watches), BusError> {
    let secrets = switchboard_config::redact::uri_secrets(&settings.url);
    let scrubbed =
        |err: &dyn std::fmt::Display| switchboard_config::redact::scrub(&err.to_string(), &secrets);
    let mut url_credentials = None;
    let mut servers = Vec::new();
    for server in settings.servers() {
        let invalid = |e: &dyn std::fmt::Display| {
            BusError::nats(
                "parse nats.url",
                format!(
                    "{}: {}",
                    switchboard_config::redact::redact_uri(server),
                    scrubbed(e)
                ),
            )
        };
        let addr = server
            .parse::<async_nats::ServerAddr>()
            .map_err(|e| invalid(&e))?;
        // Credentials in a URL are taken out of it and given to the client
        // separately: the client logs server addresses as they are.
        if let Some(user) = addr.username() {
            let found = (user.to_owned(), addr.password().map(str::to_owned));
            if url_credentials.get_or_insert_with(|| found.clone()) != &found {
                return Err(invalid(
                    &"the servers of nats.url name different credentials",
                ));
            }
        }
        let mut url = addr.into_inner();
        // Cannot fail for the nats, tls and ws schemes, which have hosts.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        servers.push(async_nats::ServerAddr::from_url(url).map_err(|e| invalid(&e))?);
    }
    let (disruptions, watcher) = tokio::sync::watch::channel(0u64);
    let disruptions = std::sync::Arc::new(disruptions);
    let (refusals, refusals_watcher) = tokio::sync::watch::channel(Refusals::default());
    let refusals = std::sync::Arc::new(refusals);
    let mut options = async_nats::ConnectOptions::new();
    match url_credentials {
        Some((user, Some(password))) => options = options.user_and_password(user, password),
        Some((token, None)) => options = options.token(token),
        None => {}
    }
    let options = with_credentials(options, settings).await?;
    let client = options
        .name(format!("{}-{component}", settings.connection_name))
        .request_timeout(Some(settings.request_timeout.get()))
        .retry_on_initial_connect()
        .connection_timeout(settings.request_timeout.get())
        // Notice a server that stopped answering within seconds, not the
        // default minutes, and reconnect.
        .ping_interval(PING_INTERVAL)
        .event_callback(move |event| {
            let disruptions = std::sync::Arc::clone(&disruptions);
            let refusals = std::sync::Arc::clone(&refusals);
            async move {
                match &event {
                    async_nats::Event::Connected | async_nats::Event::SlowConsumer(_) => {
                        disruptions.send_modify(|n| *n += 1);
                        tracing::info!(event = %event, "nats connection event");
                    }
                    async_nats::Event::Disconnected | async_nats::Event::ClientError(_) => {
                        tracing::warn!(event = %event, "nats connection event");
                    }
                    async_nats::Event::ServerError(error) => {
                        // Permission violations arrive here, asynchronously.
                        tracing::error!(event = %event, "nats server error");
                        if let Some(subject) = refused_subscription(&error.to_string()) {
                            refusals.send_modify(|r| {
                                r.count += 1;
                                r.last_subject = subject;
                            });
                        }
                    }
                    _ => tracing::info!(event = %event, "nats connection event"),
                }
            }
        })
        .connect(servers)
        .await
        .map_err(|e| BusError::nats("connect to nats", scrubbed(&e)))?;
    Ok((
        client,
        Watches {
            disruptions: watcher,
            refusals: refusals_watcher,
        },
    ))
}

/// What a connection tells of itself as it goes (see [`connect`]).
pub struct Watches {
    /// Goes up at every (re)connection and slow-consumer drop.
    pub disruptions: tokio::sync::watch::Receiver<u64>,
    /// Subscriptions the server refused, or removed (a permission taken
    /// away by a configuration reload).
    pub refusals: tokio::sync::watch::Receiver<Refusals>,
}

/// Subscriptions the server refused or removed: how many so far, and the
/// subject of the last one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusals {
    pub count: u64,
    pub last_subject: String,
}

/// The subject of a permissions violation for a subscription, from the
/// server's error text (`Permissions Violation for Subscription to "x"`).
fn refused_subscription(error: &str) -> Option<String> {
    const MARK: &str = "permissions violation for subscription to \"";
    let at = error.to_ascii_lowercase().find(MARK)? + MARK.len();
    let rest = error.get(at..)?;
    Some(rest.split('"').next()?.to_owned())
}

/// Adds the settings' credentials, TLS and reply prefix.
async fn with_credentials(
    mut options: async_nats::ConnectOptions,
    settings: &switchboard_config::NatsSettings,
) -> Result<async_nats::ConnectOptions, BusError> {
    if let (Some(user), Some(password)) = (&settings.user, &settings.password) {
        options = options.user_and_password(user.clone(), password.expose().to_owned());
    }
    if let Some(token) = &settings.token {
        options = options.token(token.expose().to_owned());
    }
    if let Some(seed) = &settings.nkey_seed {
        options = options.nkey(seed.expose().to_owned());
    }
    if let Some(path) = &settings.creds_file {
        options = options
            .credentials_file(path)
            .await
            // The file's contents never reach the message; its path may.
            .map_err(|e| BusError::nats("read nats.creds_file", format!("{path}: {}", e.kind())))?;
    }
    if let Some(ca) = &settings.tls_ca {
        options = options.add_root_certificates(ca.into()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) {
        options = options.add_client_certificate(cert.into(), key.into());
    }
    if let Some(prefix) = &settings.inbox_prefix {
        options = options.custom_inbox_prefix(prefix);
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::refused_subscription;

    #[test]
    fn refused_subscriptions_are_recognised_by_their_subject() {
        assert_eq!(
            refused_subscription(
                "nats: permissions violation for subscription to \"notice.agents\" (sid \"1\")"
            )
            .as_deref(),
            Some("notice.agents")
        );
        assert_eq!(
            refused_subscription("Permissions Violation for Subscription to \"queue.snapshot\"")
                .as_deref(),
            Some("queue.snapshot")
        );
        assert_eq!(
            refused_subscription("Permissions Violation for Publish to \"x\""),
            None
        );
    }
}
