//! The shipped NATS configuration (deploy/nats/nats.conf) with one user per
//! role: every component runs under its own credentials and reply prefix
//! and Switchboard works end to end; a bot's user is refused what is not
//! its own (the stream, the buckets, the edges' subjects), the refusal
//! arriving from the server asynchronously.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use mongodb::bson::{doc, Document};
use serde_json::json;
use switchboard_tests::services::{nats_server_binary, nats_with_config};
use switchboard_tests::sse::Sse;
use switchboard_tests::system::{node_binary, System, PASSWORD};
use switchboard_tests::ws::Ws;
use switchboard_tests::{eventually, free_port, http};

const ROLES: [(&str, &str); 5] = [
    ("edge", "SB_EDGE_PASSWORD"),
    ("router", "SB_ROUTER_PASSWORD"),
    ("archiver", "SB_ARCHIVER_PASSWORD"),
    ("admin", "SB_ADMIN_PASSWORD"),
    ("bot_faq", "SB_BOT_FAQ_PASSWORD"),
];

fn password(user: &str) -> String {
    format!("{user}-pw-5c1e")
}

fn shipped_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy/nats/nats.conf")
}

/// The settings a component of `role` runs with.
fn credentials(role: &str) -> Vec<(String, String)> {
    vec![
        ("SWITCHBOARD_NATS__USER".into(), role.into()),
        ("SWITCHBOARD_NATS__PASSWORD".into(), password(role)),
        (
            "SWITCHBOARD_NATS__INBOX_PREFIX".into(),
            format!("_INBOX_{role}"),
        ),
    ]
}

fn as_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_runs_with_its_own_credentials_and_a_bot_gets_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let monitor = free_port();
    let mut server = tokio::process::Command::new(nats_server_binary());
    server
        .arg("-c")
        .arg(shipped_config())
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            &monitor.to_string(),
        ])
        .arg("-sd")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (user, variable) in ROLES {
        server.env(variable, password(user));
    }
    let _server = server.spawn().unwrap();
    eventually("the permissioned nats-server", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;

    let mut system = System::start().await;
    system.set_env("SWITCHBOARD_NATS__URL", &format!("nats://127.0.0.1:{port}"));
    // The operator's tool creates the account, as the admin user.
    let admin = credentials("admin");
    let output = tokio::process::Command::new(node_binary())
        .args([
            "agent",
            "add",
            "--login",
            "ann",
            "--name",
            "Ann",
            "--capacity",
            "2",
        ])
        .env("SWITCHBOARD_NATS__URL", format!("nats://127.0.0.1:{port}"))
        .env("SWITCHBOARD_AGENT_PASSWORD", PASSWORD)
        .envs(admin.iter().cloned())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "agent add as admin: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    system.capture_logs("warn");
    system.router_with(&as_refs(&credentials("router"))).await;
    system
        .archiver_with(&as_refs(&credentials("archiver")))
        .await;
    let edge = system.edge_with(&as_refs(&credentials("edge"))).await;

    // Switchboard works: a visitor and an agent chat, the archive fills.
    let token = System::agent_token(edge, "ann").await;
    let (mut ann, _) = Ws::hello(edge, &token, json!({})).await;
    let (_, visitor_token) = System::visitor(edge, "Vic").await;
    let (mut vic, _) = Ws::hello(edge, &visitor_token, json!({})).await;
    vic.send(json!({ "type": "start", "text": "hello", "client_id": "s1" }))
        .await;
    let id = vic.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    vic.expect_event(&id, "assigned").await;
    ann.expect_type("assigned").await;
    let said = ann.send_message(&id, "a1", "hi, Ann here").await;
    vic.expect("ann's answer", |f| f["id"] == said["id"]).await;
    // The event-stream transport too: its POSTs are routed between edges
    // over NATS under the edge's user.
    let (_, streamer_token) = System::visitor(edge, "Sue").await;
    let (mut sue, _) = Sse::hello(edge, edge, &streamer_token, json!({})).await;
    sue.send(json!({ "type": "start", "text": "over sse", "client_id": "e1" }))
        .await;
    sue.expect("ack over sse", |f| {
        f["type"] == "ack" && f["client_id"] == "e1"
    })
    .await;
    let messages = system.archive().await.collection::<Document>("messages");
    eventually("archived under the archiver's user", || {
        let messages = messages.clone();
        let id = id.clone();
        async move {
            (messages
                .count_documents(doc! { "conversation_id": &id, "client_id": "a1" })
                .await
                .ok()?
                == 1)
                .then_some(())
        }
    })
    .await;

    // The bot's user: refused the stream, the buckets, another role's
    // subjects. The server says so asynchronously.
    let refusals = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&refusals);
    let bot =
        async_nats::ConnectOptions::with_user_and_password("bot_faq".into(), password("bot_faq"))
            .custom_inbox_prefix("_INBOX_bot_faq")
            .event_callback(move |event| {
                let seen = Arc::clone(&seen);
                async move {
                    if let async_nats::Event::ServerError(err) = event {
                        seen.lock().unwrap().push(err.to_string());
                    }
                }
            })
            .connect(format!("nats://127.0.0.1:{port}"))
            .await
            .unwrap();
    bot.publish(format!("chat.conv.{id}"), "forged".into())
        .await
        .unwrap();
    bot.publish(format!("$KV.conversations.{id}"), "forged".into())
        .await
        .unwrap();
    bot.publish("bot.api.other.send", "not mine".into())
        .await
        .unwrap();
    let _listening = bot.subscribe(format!("conv.{id}.live")).await.unwrap();
    bot.flush().await.unwrap();
    eventually("every forbidden step refused", || {
        let refusals = refusals.lock().unwrap().clone();
        let count = |what: &str| refusals.iter().filter(|r| r.contains(what)).count();
        std::future::ready(
            (count("Permissions Violation for Publish") >= 3
                && count("Permissions Violation for Subscription") >= 1)
                .then_some(()),
        )
    })
    .await;
    let refusals = refusals.lock().unwrap().clone();
    for subject in [format!("chat.conv.{id}"), format!("$KV.conversations.{id}")] {
        assert!(
            refusals.iter().any(|r| r.contains(&subject)),
            "{subject} not refused: {refusals:?}"
        );
    }
    // Its API answers on inboxes only: pointed at a bucket, the router,
    // whose user may write there, does not publish at all.
    bot.publish_with_reply(
        "bot.api.faq.presence",
        format!("$KV.conversations.{id}"),
        "x".into(),
    )
    .await
    .unwrap();
    bot.flush().await.unwrap();
    eventually("the router refusing the reply subject", || {
        let logs = system.logs();
        std::future::ready(
            logs.iter()
                .any(|l| l.contains("reply subject refused") && l.contains("$KV.conversations"))
                .then_some(()),
        )
    })
    .await;
    // What it is allowed still works: its own API answers.
    let answer = bot
        .request("bot.api.faq.presence", "x".into())
        .await
        .unwrap();
    assert!(!answer.payload.is_empty());
    // Nothing the bot tried reached the conversation.
    vic.send(json!({ "type": "history", "conversation_id": id }))
        .await;
    let history = vic.expect_type("history").await;
    assert!(
        history["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["text"] != "forged"),
        "{history}"
    );
    // Its state is still the conversation's: it closes.
    vic.send(json!({ "type": "close", "conversation_id": id }))
        .await;
    vic.expect_event(&id, "closed").await;
}

/// An agent whose presence the edge cannot write (here: the edge's user
/// may not write the presence bucket) is not shown online to anyone: the
/// connection is closed with 1013 and the console tries again, rather
/// than an agent who looks connected and is never given a conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_the_edge_cannot_make_present_is_told_to_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        r#"listen: "127.0.0.1:{port}"
jetstream {{ store_dir: "{store}" }}
accounts {{
  SB {{
    jetstream: enabled
    users: [
      {{ user: switchboard, password: "all" }}
      {{ user: edge, password: "edge", permissions: {{
          publish: {{ allow: [">"], deny: ["$KV.presence.>"] }}
          subscribe: {{ allow: [">"] }}
      }} }}
    ]
  }}
}}
"#,
        store = dir.path().join("js").display(),
    );
    let file = dir.path().join("nats.conf");
    std::fs::write(&file, config).unwrap();
    let _server = nats_with_config(&file, port).await;
    let mut system = System::start().await;
    system.set_env(
        "SWITCHBOARD_NATS__URL",
        &format!("nats://switchboard:all@127.0.0.1:{port}"),
    );
    system.router().await;
    let edge = system
        .edge_with(&[
            (
                "SWITCHBOARD_NATS__URL",
                &format!("nats://edge:edge@127.0.0.1:{port}"),
            ),
            ("SWITCHBOARD_NATS__REQUEST_TIMEOUT", "1s"),
        ])
        .await;
    let output = tokio::process::Command::new(node_binary())
        .args([
            "agent",
            "add",
            "--login",
            "ann",
            "--name",
            "Ann",
            "--capacity",
            "2",
        ])
        .env(
            "SWITCHBOARD_NATS__URL",
            format!("nats://switchboard:all@127.0.0.1:{port}"),
        )
        .env("SWITCHBOARD_AGENT_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let token = System::agent_token(edge, "ann").await;
    let mut ann = Ws::connect(edge).await;
    ann.send(json!({ "type": "hello", "token": token })).await;
    let error = ann.expect_type("error").await;
    assert_eq!(error["code"], "unavailable", "{error}");
    assert_eq!(ann.expect_close().await, 1013);
    // Nobody sees her: a visitor waits with nobody online.
    let (_, visitor_token) = System::visitor(edge, "Vic").await;
    let (mut vic, _) = Ws::hello(edge, &visitor_token, json!({})).await;
    vic.send(json!({ "type": "start" })).await;
    let id = vic.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let queued = vic.expect_event(&id, "queued").await;
    assert_eq!(queued["agents_online"], 0, "{queued}");
}

/// The server configuration with one user (`sb`) who may do everything but
/// subscribe to `denied` (when given).
fn single_user_config(port: u16, store: &std::path::Path, denied: Option<&str>) -> String {
    let subscribe = match denied {
        Some(subject) => format!("{{ allow: \">\", deny: [\"{subject}\"] }}"),
        None => "\">\"".to_owned(),
    };
    format!(
        "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\" }}\n\
         authorization {{ users: [ {{ user: sb, password: {PASSWORD}, \
         permissions: {{ publish: \">\", subscribe: {subscribe} }} }} ] }}\n",
        store.display()
    )
}

/// A permission taken away from the edge while it runs (a configuration
/// reload): the server removes its subscription to admin broadcasts, which
/// then silently receives nothing. The edge notices from the server's
/// error, answers `/readyz` with 503 while it cannot relay broadcasts, and
/// once the permission is back it subscribes again, is ready, and an
/// agent receives a broadcast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_whose_broadcasts_are_taken_away_is_not_ready_until_it_has_them_again() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("nats.conf");
    let store = dir.path().join("store");
    std::fs::write(&config, single_user_config(port, &store, None)).unwrap();
    let mut server = nats_with_config(&config, port).await;
    let pid = server.id().unwrap().to_string();
    let reload = |denied: Option<&str>| {
        std::fs::write(&config, single_user_config(port, &store, denied)).unwrap();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(status.success(), "SIGHUP to nats-server");
    };

    let mut system = System::start().await;
    system.set_env("SWITCHBOARD_NATS__URL", &format!("nats://127.0.0.1:{port}"));
    system.set_env("SWITCHBOARD_NATS__USER", "sb");
    system.set_env("SWITCHBOARD_NATS__PASSWORD", PASSWORD);
    system.router().await;
    let edge = system.edge().await;
    let settings = switchboard_config::NatsSettings {
        url: format!("nats://127.0.0.1:{port}"),
        user: Some("sb".into()),
        password: Some(switchboard_config::Secret::new(PASSWORD)),
        ..Default::default()
    };
    let backbone = switchboard_bus::Backbone::connect(&settings, "test")
        .await
        .unwrap();
    switchboard_bus::accounts::add(
        &backbone,
        switchboard_bus::accounts::NewAgent {
            login: "ann".into(),
            name: "Ann".into(),
            password: PASSWORD.into(),
            team: None,
            capacity: 1,
        },
    )
    .await
    .unwrap();
    let token = System::agent_token(edge, "ann").await;
    let (mut ann, _) = Ws::hello(edge, &token, json!({})).await;
    assert_eq!(http::get(edge, "/readyz").await.status, 200);

    reload(Some("notice.agents"));
    eventually("the edge says it cannot relay broadcasts", || async move {
        (http::get(edge, "/readyz").await.status == 503).then_some(())
    })
    .await;

    reload(None);
    eventually("the edge is ready again", || async move {
        (http::get(edge, "/readyz").await.status == 200).then_some(())
    })
    .await;
    let notice = switchboard_protocol::payloads::Notice {
        text: "back again".into(),
        sender: switchboard_protocol::payloads::Participant::system("admin"),
    };
    backbone
        .client
        .publish(
            "notice.agents",
            switchboard_protocol::payloads::encode(&notice)
                .unwrap()
                .into(),
        )
        .await
        .unwrap();
    let got = ann.expect_type("notice").await;
    assert_eq!(got["text"], "back again");
    let _ = server.kill().await;
}
