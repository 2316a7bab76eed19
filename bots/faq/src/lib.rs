//! An example bot for Switchboard: answers visitors from a FAQ, and hands
//! the conversation to the humans of its team when the visitor asks for a
//! person ("human", "agent", "person") or after two messages it could not
//! answer. The same bot as `examples/bots/python/faq_bot.py`, and a
//! working reading of docs/bots.md: it acts only through the bot API,
//! reads with its own durable consumer, and never answers a message twice.
//!
//! - [`faq`]: the FAQ file and the decision for one message (pure).
//! - [`api`]: the bot API calls (`bot.api.<bot_id>.*`).
//! - [`bot`]: the loop: presence, notices, the consumer, answers.
//!
//! Configured by the environment: `NATS_URL` (default
//! `nats://127.0.0.1:4222`), `BOT_ID` and `FAQ_FILE` (required), and
//! optionally `NATS_CREDS` (a `.creds` file), `NATS_INBOX_PREFIX` (the
//! reply prefix the bot's NATS user may use) and `BOT_INSTANCE` (a name
//! for this process, shown to operators).

pub mod api;
pub mod bot;
pub mod faq;

use switchboard_protocol::ids::BotId;
use tokio_util::sync::CancellationToken;

/// The bot could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("BOT_ID: {0}")]
    BotId(#[source] switchboard_protocol::IdError),
    #[error("FAQ_FILE")]
    Faq(#[source] faq::FaqError),
    #[error("{0}: {1}")]
    Nats(&'static str, String),
}

/// What the bot is started with.
#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    pub bot_id: BotId,
    pub faq_file: String,
    pub creds_file: Option<String>,
    pub inbox_prefix: Option<String>,
    pub instance: Option<String>,
}

impl Config {
    /// Reads the environment (see the crate's documentation).
    ///
    /// # Errors
    /// A missing `BOT_ID` or `FAQ_FILE`, or an invalid bot id.
    pub fn from_env() -> Result<Self, RunError> {
        let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let bot_id = var("BOT_ID").ok_or(RunError::Missing("BOT_ID"))?;
        Ok(Self {
            nats_url: var("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned()),
            bot_id: BotId::new(bot_id.trim()).map_err(RunError::BotId)?,
            faq_file: var("FAQ_FILE").ok_or(RunError::Missing("FAQ_FILE"))?,
            creds_file: var("NATS_CREDS"),
            inbox_prefix: var("NATS_INBOX_PREFIX"),
            instance: var("BOT_INSTANCE"),
        })
    }
}

/// Connects and runs the bot until `shutdown`.
///
/// # Errors
/// An unreadable FAQ, NATS unreachable, or the consumer refused.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let faq = faq::Faq::load(&config.faq_file).map_err(RunError::Faq)?;
    let mut server = config
        .nats_url
        .parse::<async_nats::ServerAddr>()
        .map_err(|e| RunError::Nats("parse NATS_URL", e.to_string()))?;
    // The client does not use credentials written in the URL: take them out
    // and give them to it (a user and password, or a token alone).
    let credentials = server
        .username()
        .map(|user| (user.to_owned(), server.password().map(str::to_owned)));
    if credentials.is_some() {
        let mut url = server.into_inner();
        // Cannot fail for nats, tls and ws URLs, which have a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        server = async_nats::ServerAddr::from_url(url)
            .map_err(|e| RunError::Nats("parse NATS_URL", e.to_string()))?;
    }
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("bot-{}", config.bot_id))
        .retry_on_initial_connect();
    if let Some(path) = &config.creds_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| RunError::Nats("read NATS_CREDS", e.kind().to_string()))?;
    }
    if let Some(prefix) = &config.inbox_prefix {
        options = options.custom_inbox_prefix(prefix);
    }
    match credentials {
        Some((user, Some(password))) => options = options.user_and_password(user, password),
        Some((token, None)) => options = options.token(token),
        None => {}
    }
    let client = options
        .connect(server)
        .await
        .map_err(|e| RunError::Nats("connect to NATS", e.to_string()))?;
    bot::Bot::new(config.bot_id, client.clone(), faq)
        .run(client, config.instance, shutdown)
        .await
}

/// The binary's `main`: logs to stderr (`RUST_LOG`, default `info`), stops
/// on SIGINT or SIGTERM.
pub fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("faq-bot: {}", report(&err));
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("faq-bot: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            stop.cancel();
        });
        match run(config, shutdown).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = %report(&err), "bot stopped");
                eprintln!("faq-bot: {}", report(&err));
                std::process::ExitCode::FAILURE
            }
        }
    })
}

/// An error with its causes.
fn report(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
