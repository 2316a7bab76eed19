//! Bots in tests: bot accounts, the example FAQ bot as a real process (in
//! Rust, `switchboard-faq-bot` built beside the tests, or in Python with
//! the project's virtualenv `.dev/botvenv` that `scripts/setup` installs),
//! and reading what a conversation holds.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use switchboard_bus::bots::{self, NewBot};
use switchboard_bus::{kv, Backbone};
use switchboard_protocol::ids::{BotId, ConversationId, TeamId};
use switchboard_protocol::payloads::{
    BotPresence, ChatRecord, ConversationState, RecordBody, Role,
};
use switchboard_protocol::time::now_ms;
use tokio::process::{Child, Command};

use crate::eventually;
use crate::system::{node_binary, System};

/// Which of the two example bots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotKind {
    Rust,
    Python,
}

/// A running example bot.
pub struct BotProcess {
    pub kind: BotKind,
    pub id: String,
    child: Child,
}

impl BotProcess {
    /// Starts the example FAQ bot `id` against the system's NATS, with the
    /// example FAQ file.
    pub fn start(system: &System, kind: BotKind, id: &str) -> Self {
        Self::start_with(system, kind, id, &[])
    }

    /// [`BotProcess::start`] with more environment (`NATS_URL` with a
    /// user's credentials, `NATS_INBOX_PREFIX`, …), which wins.
    pub fn start_with(system: &System, kind: BotKind, id: &str, extra: &[(&str, &str)]) -> Self {
        let logs = std::env::var_os("SWITCHBOARD_TEST_LOGS").is_some();
        let mut command = match kind {
            BotKind::Rust => Command::new(bot_binary()),
            BotKind::Python => {
                let mut command = Command::new(python());
                command.arg(workspace_file("examples/bots/python/faq_bot.py"));
                command
            }
        };
        command
            .env("NATS_URL", system.nats.url())
            .env("BOT_ID", id)
            .env("FAQ_FILE", workspace_file("examples/bots/faq.toml"))
            .env("RUST_LOG", if logs { "info" } else { "warn" })
            .env("LOG_LEVEL", if logs { "INFO" } else { "WARNING" })
            .env("PYTHONUNBUFFERED", "1")
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if logs {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start the {kind:?} bot: {e}"));
        Self {
            kind,
            id: id.to_owned(),
            child,
        }
    }

    /// `kill -9`.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// A file of the workspace.
pub fn workspace_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// The project's Python for the example bot: `.dev/botvenv`, made by
/// `scripts/setup`. Missing, the test fails (never skips).
pub fn python() -> PathBuf {
    let python = workspace_file(".dev/botvenv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup (it installs the Python bot's packages)",
        python.display()
    );
    python
}

/// The Rust example bot, built beside the tests like the node binary.
pub fn bot_binary() -> PathBuf {
    node_binary().with_file_name("switchboard-faq-bot")
}

/// Creates a bot account through the command line, as an operator does.
pub async fn add_bot_cli(system: &System, id: &str, name: &str, team: &str) {
    let output = Command::new(node_binary())
        .args(["bot", "add", "--id", id, "--name", name, "--team", team])
        .env("SWITCHBOARD_NATS__URL", system.nats.url())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run switchboard bot add: {e}"));
    assert!(
        output.status.success(),
        "switchboard bot add: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Creates a bot account through the library.
pub async fn add_bot(backbone: &Backbone, id: &str, name: &str, team: &str) {
    bots::add(
        backbone,
        NewBot {
            id: BotId::new(id).unwrap_or_else(|e| panic!("bot id: {e}")),
            name: name.to_owned(),
            team: TeamId::new(team).unwrap_or_else(|e| panic!("team: {e}")),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("add bot {id}: {e}"));
}

/// When the bot last announced itself (unix ms), if ever.
pub async fn last_seen(backbone: &Backbone, id: &str) -> Option<i64> {
    kv::get::<BotPresence>(&backbone.bot_presence, id)
        .await
        .ok()
        .flatten()
        .map(|p| p.value.updated_at)
}

/// Waits until the bot has announced itself since `after` (unix ms).
pub async fn wait_present(backbone: &Backbone, id: &str, after: i64) {
    eventually(&format!("bot {id} present"), || async move {
        last_seen(backbone, id).await.filter(|at| *at >= after)
    })
    .await;
}

/// Waits until the routers count the bot absent: its last announcement is
/// older than `ttl`.
pub async fn wait_absent(backbone: &Backbone, id: &str, ttl: Duration) {
    let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    eventually(&format!("bot {id} absent"), || async move {
        let seen = last_seen(backbone, id).await;
        seen.is_none_or(|at| now_ms() - at > ttl).then_some(())
    })
    .await;
}

/// The routing state of a conversation.
pub async fn state(backbone: &Backbone, conversation: &str) -> ConversationState {
    let id = ConversationId::new(conversation).unwrap_or_else(|e| panic!("id: {e}"));
    kv::get::<ConversationState>(&backbone.conversations, id.as_str())
        .await
        .unwrap_or_else(|e| panic!("read state: {e}"))
        .unwrap_or_else(|| panic!("no state of {conversation}"))
        .value
}

/// Every record of a conversation, from the stream.
pub async fn records(backbone: &Backbone, conversation: &str) -> Vec<ChatRecord> {
    let id = ConversationId::new(conversation).unwrap_or_else(|e| panic!("id: {e}"));
    backbone
        .log
        .read_from(&id, 1, 10_000)
        .await
        .unwrap_or_else(|e| panic!("read {conversation}: {e}"))
}

/// For each message of the visitor in the conversation, the bot's messages
/// that answer it (keyed `re-<seq>`): `(seq, text, answers)`.
pub fn answers(records: &[ChatRecord]) -> Vec<(u64, String, Vec<String>)> {
    records
        .iter()
        .filter(|r| r.sender.role == Role::Visitor)
        .filter_map(|r| match &r.body {
            RecordBody::Message { text, .. } => Some((r.seq, text.clone())),
            RecordBody::Event { .. } => None,
        })
        .map(|(seq, text)| {
            let key = format!("re-{seq}");
            let replies = records
                .iter()
                .filter(|r| r.sender.role == Role::Bot)
                .filter_map(|r| match &r.body {
                    RecordBody::Message { text, client_id } if *client_id == key => {
                        Some(text.clone())
                    }
                    _ => None,
                })
                .collect();
            (seq, text, replies)
        })
        .collect()
}
