//! The permissions docs/bots.md gives a bot's NATS user are enough, and
//! nothing more: a nats-server with one user for Switchboard's components
//! and one per bot, limited exactly as the page says. Both example bots
//! (Rust and Python) run under their users — answer, hand off — and a bot
//! user's publish to the stream is refused by the server.

use std::sync::{Arc, Mutex};

use serde_json::json;
use switchboard_protocol::time::now_ms;
use switchboard_tests::bots::{wait_present, BotKind, BotProcess};
use switchboard_tests::services::nats_with_config;
use switchboard_tests::system::{node_binary, System};
use switchboard_tests::ws::Ws;
use switchboard_tests::{eventually, free_port};

/// The bot user's permissions, as docs/bots.md lists them.
fn bot_user(user: &str, id: &str) -> String {
    format!(
        r#"{{ user: {user}, password: "{user}-secret", permissions: {{
          publish: {{ allow: [
            "bot.api.{id}.>",
            "$JS.API.CONSUMER.CREATE.CHAT.bot-{id}.chat.conv.*",
            "$JS.API.CONSUMER.DURABLE.CREATE.CHAT.bot-{id}",
            "$JS.API.CONSUMER.INFO.CHAT.bot-{id}",
            "$JS.API.CONSUMER.MSG.NEXT.CHAT.bot-{id}",
            "$JS.ACK.CHAT.bot-{id}.>",
            "$JS.API.DIRECT.GET.CHAT.>"
          ] }}
          subscribe: {{ allow: [ "inbox.bot.{id}", "_INBOX_bot_{id}.>" ] }}
        }} }}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_work_with_exactly_the_documented_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        r#"listen: "127.0.0.1:{port}"
jetstream {{ store_dir: "{store}" }}
accounts {{
  SB {{
    jetstream: enabled
    users: [
      {{ user: switchboard, password: "switchboard-secret" }}
      {rs}
      {py}
    ]
  }}
}}
"#,
        store = dir.path().join("js").display(),
        rs = bot_user("botrs", "faqrs"),
        py = bot_user("botpy", "faqpy"),
    );
    let config_file = dir.path().join("nats.conf");
    std::fs::write(&config_file, config).unwrap();
    let _server = nats_with_config(&config_file, port).await;
    let url = |user: &str| format!("nats://{user}:{user}-secret@127.0.0.1:{port}");

    let mut system = System::start().await;
    system.set_env("SWITCHBOARD_NATS__URL", &url("switchboard"));
    system.router().await;
    let edge = system.edge().await;
    let admin = async_nats::ConnectOptions::with_user_and_password(
        "switchboard".into(),
        "switchboard-secret".into(),
    )
    .connect(format!("127.0.0.1:{port}"))
    .await
    .unwrap();
    let backbone =
        switchboard_bus::Backbone::open(admin, &switchboard_config::NatsSettings::default())
            .await
            .unwrap();
    for (id, team) in [("faqrs", "sales"), ("faqpy", "support")] {
        let output = tokio::process::Command::new(node_binary())
            .args([
                "bot", "add", "--id", id, "--name", "FAQ bot", "--team", team,
            ])
            .env("SWITCHBOARD_NATS__URL", url("switchboard"))
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let started = now_ms();
    let mut bots = Vec::new();
    for (kind, user, id) in [
        (BotKind::Rust, "botrs", "faqrs"),
        (BotKind::Python, "botpy", "faqpy"),
    ] {
        let prefix = format!("_INBOX_bot_{id}");
        bots.push(BotProcess::start_with(
            &system,
            kind,
            id,
            &[("NATS_URL", &url(user)), ("NATS_INBOX_PREFIX", &prefix)],
        ));
        wait_present(&backbone, id, started).await;
    }

    for team in ["sales", "support"] {
        let (_, token) = System::visitor(edge, "Ann").await;
        let (mut ann, _) = Ws::hello(edge, &token, json!({})).await;
        ann.send(json!({ "type": "start", "team": team, "text": "Do you ship to Spain?" }))
            .await;
        let id = ann.expect_type("started").await["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let answer = ann
            .expect("the bot's answer", |f| {
                f["type"] == "message" && f["conversation_id"] == id && f["sender"]["role"] == "bot"
            })
            .await;
        assert!(
            answer["text"].as_str().unwrap().contains("2 working days"),
            "{answer}"
        );
        ann.send_message(&id, "k2", "a person please").await;
        let handed = ann.expect_event(&id, "handed_off").await;
        assert_eq!(handed["reason"], "bot_asked", "{team}");
    }

    // Anything else is refused: the stream, for one.
    let violations = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&violations);
    let bot = async_nats::ConnectOptions::new()
        .custom_inbox_prefix("_INBOX_bot_faqrs")
        .event_callback(move |event| {
            let seen = Arc::clone(&seen);
            async move {
                if let async_nats::Event::ServerError(err) = event {
                    seen.lock().unwrap().push(err.to_string());
                }
            }
        })
        .user_and_password("botrs".into(), "botrs-secret".into())
        .connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    bot.publish("chat.conv.c_forged", "forged".into())
        .await
        .unwrap();
    bot.flush().await.unwrap();
    let violations = &violations;
    eventually(
        "the server refusing the bot's publish to the stream",
        || async move {
            violations
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.to_lowercase().contains("permissions violation"))
                .then_some(())
        },
    )
    .await;
    for mut bot in bots {
        bot.kill().await;
    }
}
