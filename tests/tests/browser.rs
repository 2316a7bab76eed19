//! The visitor widget and the agent console in real headless Chromium,
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
//! - embed.mjs: a shop on another origin embeds the widget with one tag,
//!   with CSS that would break it; the widget shows with the tag's
//!   settings and the visitor chats with the agent.

use std::path::Path;
use std::process::Stdio;

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

async fn run_scenario_with(file: &str, edge: std::net::SocketAddr, env: &[(&str, String)]) {
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

    let output = tokio::process::Command::new("node")
        .arg(file)
        .current_dir(&browser_dir)
        .env("SB_URL", format!("http://{edge}"))
        .env("SB_AGENT_LOGIN", "console@test")
        .env("SB_AGENT_PASSWORD", PASSWORD)
        .env("CHROMIUM", &chromium)
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
        "browser scenario {file} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
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
    run_scenario_with("embed.mjs", edge, &[("SB_HOST_PORT", shop.to_string())]).await;
}
