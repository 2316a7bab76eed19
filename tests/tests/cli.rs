//! `switchboard agent add|list|remove` against a real nats-server, and the
//! refusal to start an edge with the built-in secret outside demo mode.

use std::process::Output;

use switchboard_tests::services::Nats;
use switchboard_tests::system::node_binary;

async fn switchboard(nats: &Nats, args: &[&str], secret: Option<&str>) -> Output {
    let mut command = tokio::process::Command::new(node_binary());
    command
        .args(args)
        .env_remove("SWITCHBOARD_CONFIG")
        .env("SWITCHBOARD_NATS__URL", nats.url())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    match secret {
        Some(secret) => command.env("SWITCHBOARD_AUTH__SECRET", secret),
        None => command.env_remove("SWITCHBOARD_AUTH__SECRET"),
    };
    command
        .output()
        .await
        .unwrap_or_else(|e| panic!("run switchboard {args:?}: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn agent_accounts_are_managed_from_the_cli() {
    let nats = Nats::start().await;
    let add = [
        "agent",
        "add",
        "--login",
        "Kim@Example.com",
        "--name",
        "Kim",
        "--password",
        "long-enough",
        "--team",
        "sales",
        "--capacity",
        "4",
    ];
    let output = switchboard(&nats, &add, None).await;
    assert!(output.status.success(), "{}", text(&output));

    // The same login, whatever its case, cannot be added twice.
    let mut again = add;
    again[3] = "kim@example.com";
    let output = switchboard(&nats, &again, None).await;
    assert!(!output.status.success());
    assert!(text(&output).contains("taken"), "{}", text(&output));

    let output = switchboard(&nats, &["agent", "list"], None).await;
    let listing = text(&output);
    assert!(output.status.success(), "{listing}");
    assert!(
        listing.contains("Kim@Example.com") && listing.contains("sales"),
        "{listing}"
    );
    assert!(
        !listing.contains("argon2"),
        "password hashes must not be listed"
    );

    let short = [
        "agent",
        "add",
        "--login",
        "x",
        "--name",
        "X",
        "--password",
        "short",
    ];
    let output = switchboard(&nats, &short, None).await;
    assert!(!output.status.success());
    assert!(text(&output).contains("at least 8"), "{}", text(&output));

    let output = switchboard(
        &nats,
        &["agent", "remove", "--login", "kim@example.com"],
        None,
    )
    .await;
    assert!(output.status.success(), "{}", text(&output));
    let output = switchboard(&nats, &["agent", "list"], None).await;
    assert!(!text(&output).contains("Kim@Example.com"));
    let output = switchboard(
        &nats,
        &["agent", "remove", "--login", "kim@example.com"],
        None,
    )
    .await;
    assert!(!output.status.success());
}

#[tokio::test]
async fn edge_refuses_the_default_secret_outside_demo_mode() {
    let nats = Nats::start().await;
    let output = switchboard(&nats, &["edge"], None).await;
    assert!(!output.status.success());
    assert!(text(&output).contains("auth.secret"), "{}", text(&output));
    let output = switchboard(&nats, &["edge"], Some("too-short")).await;
    assert!(!output.status.success());
    assert!(text(&output).contains("at least 32"), "{}", text(&output));
}

#[tokio::test]
async fn an_invalid_setting_fails_at_start_naming_the_key() {
    let nats = Nats::start().await;
    let output = tokio::process::Command::new(node_binary())
        .args(["router"])
        .env("SWITCHBOARD_NATS__URL", nats.url())
        .env("SWITCHBOARD_EDGE__RATE_PER_SEC", "lots")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).to_lowercase().contains("edge.rate_per_sec"),
        "{}",
        text(&output)
    );
}
