//! The visitor widget and the agent console in real headless Chromium
//! (and the client core's outbox in Node, with its own clock),
//! against real edge, router and archiver processes. The scenarios live in
//! tests/browser/*.mjs (Playwright driving /usr/bin/chromium):
//! - chat.mjs: a visitor and an agent chat, the visitor reloads and
//!   resumes, the agent closes; text is rendered literally, never as HTML.
//! - routing.mjs: nobody online, the visitor leaves a message, the agent
//!   picks it up from Missed and answers, closes; the visitor rates and
//!   reopens.
//! - bot.mjs: a site embeds the widget for a bot-first team; the FAQ bot
//!   answers, the visitor clicks "Talk to a person", and the agent gets
//!   the conversation with what the bot said and why.
//! - fallback.mjs: with WebSocket removed from the pages, the widget and
//!   the console chat over the event stream, say so, and resume after
//!   their edge is killed and restarted, with no gap and no repeat.
//! - inbox.mjs: take from the queue, a canned response, a private note
//!   the visitor never sees, a transfer to another agent picked by name.
//! - admin.mjs: an admin adds an agent at /admin and watches the
//!   dashboard and its chart move as the agent comes online and chats.
//! - i18n.mjs: a zh-CN browser gets the widget in Chinese, with a header
//!   that says nobody is online; `data-lang` chooses too.
//! - filters.mjs: the inbox's filters (Mine, Queue, Missed, Closed); a
//!   closed conversation leaves Mine for Closed, is still listed there
//!   (from the archive) after the agent logs in again, and its
//!   transcript opens read-only.
//! - prechat.mjs: a team with a pre-chat form; the widget asks a new
//!   visitor's name and email first, refuses bad ones, and the agent sees
//!   the visitor by that name with the email.
//! - embed.mjs: a shop on another origin embeds the widget with one tag,
//!   with CSS and globals that would break it; the widget shows with the
//!   tag's settings and the visitor chats with the agent; another page of
//!   the shop with another deployment's widget keeps its own visitor.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use switchboard_bus::kv;
use switchboard_protocol::ids::TeamId;
use switchboard_protocol::payloads::{CannedResponse, TeamSettings};
use switchboard_protocol::time::now_ms;
use switchboard_tests::bots::{add_bot, wait_present, BotKind, BotProcess};
use switchboard_tests::system::{System, PASSWORD};

async fn scenario(file: &str) {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    system.add_agent("console@test", 2, None).await;
    run_scenario(file, edge).await;
}

async fn run_scenario(file: &str, edge: std::net::SocketAddr) {
    run_scenario_with(file, edge, &[]).await;
}

/// The scenarios' directory and the browser, both checked.
fn browser_setup() -> (PathBuf, String) {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/setup --browser"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "{chromium} is missing: run scripts/setup --browser"
    );
    (browser_dir, chromium)
}

async fn run_scenario_with(file: &str, edge: std::net::SocketAddr, env: &[(&str, String)]) {
    let (_, chromium) = browser_setup();
    let mut all = vec![
        ("SB_URL", format!("http://{edge}")),
        ("SB_AGENT_LOGIN", "console@test".to_owned()),
        ("SB_AGENT_PASSWORD", PASSWORD.to_owned()),
        ("CHROMIUM", chromium),
    ];
    all.extend(env.iter().cloned());
    run_node(file, &all).await;
}

/// Runs `node <file>` in tests/browser with `env`; it must report
/// "browser: 1 passed, 0 failed".
async fn run_node(file: &str, env: &[(&str, String)]) {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let output = tokio::process::Command::new("node")
        .arg(file)
        .current_dir(&browser_dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run node: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("browser: 1 passed, 0 failed"),
        "{file} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

/// The client core's outbox (edge/web/core/outbox.js, shared by the widget
/// and the console), run in Node with its own clock: sends refused as busy
/// go again once per retry however many refusals came (each refusal used
/// to re-send every pending message: k² frames a round against a busy
/// edge), and a `rate_limited` without a `ref` has the unacknowledged ones
/// sent again.
#[tokio::test]
async fn the_client_outbox_retries_once_per_burst_of_refusals() {
    run_node("outbox.mjs", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widget_and_console_chat_in_chromium() {
    scenario("chat.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_message_pick_up_rating_and_reopen_in_chromium() {
    scenario("routing.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talk_to_a_person_hands_the_bot_conversation_to_the_agent_in_chromium() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    system.add_agent("console@test", 2, Some("sales")).await;
    let backbone = system.backbone().await;
    add_bot(&backbone, "faq", "FAQ bot", "sales").await;
    let started = now_ms();
    let mut bot = BotProcess::start(&system, BotKind::Rust, "faq");
    wait_present(&backbone, "faq", started).await;
    run_scenario("bot.mjs", edge).await;
    bot.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_embedded_with_one_tag_on_another_site_chats_in_chromium() {
    let mut system = System::with_workers().await;
    let shop = switchboard_tests::free_port();
    let edge = system
        .edge_with(&[(
            "SWITCHBOARD_EDGE__ALLOWED_ORIGINS",
            &format!(r#"["http://127.0.0.1:{shop}"]"#),
        )])
        .await;
    system.add_agent("console@test", 2, None).await;
    // Another deployment, its own services and signing key, whose widget
    // the same site embeds on another page.
    let mut other = System::start().await;
    let other_edge = other
        .edge_with(&[
            (
                "SWITCHBOARD_EDGE__ALLOWED_ORIGINS",
                &format!(r#"["http://127.0.0.1:{shop}"]"#),
            ),
            (
                "SWITCHBOARD_AUTH__SECRET",
                "another-deployment-secret-0123456789abcdef",
            ),
        ])
        .await;
    run_scenario_with(
        "embed.mjs",
        edge,
        &[
            ("SB_HOST_PORT", shop.to_string()),
            ("SB_OTHER_URL", format!("http://{other_edge}")),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_websocket_the_widget_and_console_chat_over_the_event_stream_in_chromium() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    system.add_agent("console@test", 2, None).await;
    let (browser_dir, chromium) = browser_setup();
    let mut node = tokio::process::Command::new("node")
        .arg("fallback.mjs")
        .current_dir(&browser_dir)
        .env("SB_URL", format!("http://{edge}"))
        .env("SB_AGENT_LOGIN", "console@test")
        .env("SB_AGENT_PASSWORD", PASSWORD)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("run node: {e}"));
    let mut stdin = node.stdin.take().expect("piped stdin");
    let mut stderr = node.stderr.take().expect("piped stderr");
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(node.stdout.take().expect("piped stdout")).lines();
    let mut stdout = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if line == "SB_RESTART_EDGE" {
            // The same address: the pages keep their origin.
            system.kill_edge(edge).await;
            system.edge_on(edge, &[]).await;
            stdin
                .write_all(b"restarted\n")
                .await
                .unwrap_or_else(|e| panic!("answer the scenario: {e}"));
        }
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let status = node
        .wait()
        .await
        .unwrap_or_else(|e| panic!("wait for node: {e}"));
    let stderr = errors.await.unwrap_or_default();
    assert!(
        status.success() && stdout.contains("browser: 1 passed, 0 failed"),
        "browser scenario fallback.mjs failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_canned_note_and_transfer_by_name_in_the_inbox_in_chromium() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    system.add_agent("console@test", 2, None).await;
    system.add_agent("bob@test", 2, None).await;
    let canned = CannedResponse {
        shortcut: "thanks".into(),
        text: "Thanks for waiting! How can I help?".into(),
        team: None,
        updated_at: now_ms(),
    };
    kv::put(&system.backbone().await.canned, "thanks", &canned)
        .await
        .unwrap_or_else(|e| panic!("save a canned response: {e}"));
    run_scenario_with("inbox.mjs", edge, &[("SB_AGENT2_LOGIN", "bob@test".into())]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_an_agent_and_watches_the_dashboard_in_chromium() {
    let mut system = System::with_workers().await;
    let edge = system.edge().await;
    system.add_admin("root@test").await;
    run_scenario_with("admin.mjs", edge, &[("SB_ADMIN_LOGIN", "root@test".into())]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chinese_browser_gets_the_widget_in_chinese_in_chromium() {
    scenario("i18n.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_filters_and_closed_transcripts_after_logging_in_again_in_chromium() {
    scenario("filters.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_asks_a_new_visitor_the_pre_chat_form_of_the_team_in_chromium() {
    let mut system = System::with_workers().await;
    let team = TeamId::new("vip").unwrap_or_else(|e| panic!("team id: {e}"));
    let settings = TeamSettings {
        team,
        strategy: None,
        first_reply_secs: None,
        bot_first: false,
        prechat: true,
        updated_at: now_ms(),
    };
    kv::put(&system.backbone().await.teams, "vip", &settings)
        .await
        .unwrap_or_else(|e| panic!("save the team: {e}"));
    let edge = system.edge().await;
    system.add_agent("console@test", 2, Some("vip")).await;
    run_scenario("prechat.mjs", edge).await;
}
