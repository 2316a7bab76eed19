//! A scripted day of conversations with known timings, archived by a real
//! archiver from the real stream, gives exactly the figures computed here
//! by hand — from `switchboard report` in its three formats and from
//! `GET /api/v1/stats` through a real edge (answered by the archiver). The
//! day is 30 March 2025 in Europe/Paris, when clocks go forward at 02:00.
//! Definitions: docs/analytics.md.

use std::net::SocketAddr;

use mongodb::bson::{doc, Document};
use serde_json::{json, Value};
use switchboard_bus::accounts::{self, NewAgent};
use switchboard_protocol::payloads::{AgentAccount, AgentRole};
use switchboard_tests::http::bearer;
use switchboard_tests::script::{agent, bot, Script};
use switchboard_tests::system::{node_binary, System, DATABASE, PASSWORD};
use switchboard_tests::{http, progressing};

/// The day as the CLI and the API are asked for it.
const DAY: [(&str, &str); 3] = [
    ("since", "2025-03-30"),
    ("until", "2025-03-30"),
    ("tz", "Europe/Paris"),
];

fn the_day(ann: &AgentAccount, bob: &AgentAccount) -> Vec<Script> {
    let ann = agent(&ann.id, &ann.name);
    let bob = agent(&bob.id, &bob.name);
    let faq = bot("faq");
    vec![
        // 1. 01:30 Paris. Wait 20, first response 50 (Ann), resolved in
        //    300, 4 messages, rated 5.
        Script::opened("2025-03-30T00:30:00Z", None)
            .visitor_says(5)
            .assigned(20, ann.clone())
            .says(50, ann.clone())
            .visitor_says(60)
            .says(70, ann.clone())
            .closed_by(300, ann.clone())
            .rated(310, 4 + 1),
        // 2. 03:30 Paris (01:30 UTC: an hour later than UTC+1 would say).
        //    A bot first: its messages do not count; handed off at 40, Bob
        //    assigned at 100 (wait 60), answers at 130 (first response 90
        //    from the handoff); resolved in 400; 4 messages; rated 4.
        Script::opened("2025-03-30T01:30:00Z", Some("sales"))
            .assigned(1, faq.clone())
            .says(2, faq.clone())
            .visitor_says(10)
            .says(12, faq.clone())
            .handed_off(40, faq.clone(), "visitor_asked")
            .assigned(100, bob.clone())
            .says(130, bob.clone())
            .closed_by_visitor(400)
            .rated(410, 4),
        // 3. 10:00 Paris. Wait 30, Ann answers after 45, transfers to
        //    billing at 100, Bob answers at 200 (100 after the transfer);
        //    resolved in 600; 2 messages; rated 2 (Bob, who had it last).
        Script::opened("2025-03-30T08:00:00Z", None)
            .assigned(30, ann.clone())
            .says(45, ann.clone())
            .transferred_to_team(100, ann.clone(), "billing")
            .assigned(160, bob.clone())
            .says(200, bob.clone())
            .closed_by(600, bob.clone())
            .rated(620, 2),
        // 4. 11:15 Paris. Wait 10, Bob answers after 25, closes at 120;
        //    reopened at 200, Bob answers 60 after; closed at 500;
        //    3 messages; no rating.
        Script::opened("2025-03-30T09:15:00Z", None)
            .assigned(10, bob.clone())
            .says(25, bob.clone())
            .closed_by(120, bob.clone())
            .reopened(200)
            .visitor_says(205)
            .assigned(210, bob.clone())
            .says(260, bob.clone())
            .closed_by(500, bob.clone()),
        // 5. 14:00 Paris: the visitor gives up waiting (abandoned, missed).
        Script::opened("2025-03-30T12:00:00Z", None)
            .visitor_says(3)
            .closed_by_visitor(90),
        // 6. 22:30 Paris: a message left while nobody was online (missed).
        Script::opened("2025-03-30T20:30:00Z", None).left_message(20),
        // 7. 15:00 Paris: a bot resolves it alone; 3 messages; resolved in 60.
        Script::opened("2025-03-30T13:00:00Z", None)
            .assigned(1, faq.clone())
            .says(2, faq.clone())
            .visitor_says(20)
            .says(25, faq)
            .closed_by_visitor(60),
        // 8. 00:30 Paris on the 31st: in the UTC day, not the Paris day.
        Script::opened("2025-03-30T22:30:00Z", None)
            .assigned(2, ann.clone())
            .says(5, ann.clone())
            .closed_by(9, ann),
    ]
}

async fn add(system: &System, login: &str, role: AgentRole) -> AgentAccount {
    accounts::add_as(
        &system.backbone().await,
        NewAgent {
            login: login.into(),
            name: format!("Agent {login}"),
            password: PASSWORD.into(),
            team: None,
            capacity: 3,
        },
        role,
    )
    .await
    .unwrap_or_else(|e| panic!("add {login}: {e}"))
}

/// Waits until every script's summary has folded its last record.
async fn archived(system: &System, scripts: &[Script]) {
    let summaries = system
        .archive()
        .await
        .collection::<Document>("conversations");
    progressing("every scripted conversation summarized", || {
        let summaries = summaries.clone();
        async move {
            let mut done = 0;
            for script in scripts {
                let summary = summaries
                    .find_one(doc! { "_id": script.id.as_str() })
                    .await
                    .ok()
                    .flatten();
                let folded = summary
                    .as_ref()
                    .and_then(switchboard_archiver::stats::facts_of)
                    .is_some_and(|f| f.seq as u64 == script.last_seq());
                done += usize::from(folded);
            }
            if done == scripts.len() {
                Ok(())
            } else {
                Err(done)
            }
        }
    })
    .await;
}

async fn report(system: &System, args: &[(&str, &str)], format: &str) -> String {
    let mut command = tokio::process::Command::new(node_binary());
    command.arg("report");
    for (name, value) in args {
        command.arg(format!("--{name}")).arg(value);
    }
    let output = command
        .args(["--format", format])
        .env_remove("SWITCHBOARD_CONFIG")
        .env("SWITCHBOARD_NATS__URL", system.nats.url())
        .env("SWITCHBOARD_MONGO__URI", system.mongo.uri())
        .env("SWITCHBOARD_MONGO__DATABASE", DATABASE)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run switchboard report: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "switchboard report {args:?} --format {format}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

async fn stats(edge: SocketAddr, token: &str, args: &[(&str, &str)]) -> Value {
    let query: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let path = format!("/api/v1/stats?{}", query.join("&"));
    let response = bearer(edge, "GET", &path, Some(token), None).await;
    assert_eq!(response.status, 200, "{path}: {}", response.body);
    response.json()
}

fn timer(median: f64, p90: f64, average: f64, count: u64) -> Value {
    json!({ "median": median, "p90": p90, "average": average, "count": count })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_day_gives_the_figures_computed_by_hand() {
    let mut system = System::start().await;
    system.archiver().await;
    let edge = system.edge().await;
    let ann = add(&system, "ann", AgentRole::Agent).await;
    let bob = add(&system, "bob", AgentRole::Agent).await;
    add(&system, "root", AgentRole::Admin).await;
    let scripts = the_day(&ann, &bob);
    let backbone = system.backbone().await;
    for script in &scripts {
        script.publish(&backbone).await;
    }
    archived(&system, &scripts).await;

    let json_out = report(&system, &DAY, "json").await;
    let cli: Value = serde_json::from_str(json_out.trim())
        .unwrap_or_else(|e| panic!("report --format json is not JSON ({e}): {json_out}"));

    assert_eq!(cli["since"], "2025-03-29T23:00:00.000Z");
    assert_eq!(cli["until"], "2025-03-30T22:00:00.000Z", "a 23-hour day");
    assert_eq!(cli["tz"], "Europe/Paris");
    assert_eq!(
        cli["conversations"],
        json!({
            "started": 7, "answered": 4, "missed": 2, "abandoned": 1,
            "handed_off": 1, "bot_resolved": 1, "closed": 6,
        })
    );
    // Waits 20, 60, 30, 10.
    assert_eq!(cli["wait_secs"], timer(25.0, 60.0, 30.0, 4));
    // First responses 50, 90 (from the handoff; the bot's replies do not
    // count), 45 and 100 (from the transfer), 25 and 60 (from the reopen).
    assert_eq!(cli["first_response_secs"], timer(55.0, 100.0, 61.667, 6));
    // Resolutions 300, 400, 600, 500 (to the last close) and 60 (the bot).
    assert_eq!(cli["resolution_secs"], timer(400.0, 600.0, 372.0, 5));
    assert_eq!(cli["messages_per_conversation"], json!(2.5714)); // 18 / 7
    assert_eq!(
        cli["csat"],
        json!({ "average": 3.6667, "responses": 3, "response_rate": 0.5, "positive_share": 0.6667 })
    );
    assert_eq!(
        cli["by_agent"],
        json!([
            {
                "agent_id": ann.id, "login": "ann", "name": "Agent ann", "conversations": 2,
                "first_response_secs": timer(47.5, 50.0, 47.5, 2),
                "csat_average": 5.0, "csat_responses": 1,
            },
            {
                "agent_id": bob.id, "login": "bob", "name": "Agent bob", "conversations": 3,
                "first_response_secs": timer(75.0, 100.0, 68.75, 4),
                "csat_average": 3.0, "csat_responses": 2,
            },
        ])
    );
    let teams: Vec<(Value, u64, Value, Value)> = cli["by_team"]
        .as_array()
        .unwrap_or_else(|| panic!("by_team: {cli}"))
        .iter()
        .map(|t| {
            (
                t["team"].clone(),
                t["conversations"]["started"].as_u64().unwrap_or(0),
                t["first_response_secs"]["median"].clone(),
                t["csat_average"].clone(),
            )
        })
        .collect();
    assert_eq!(
        teams,
        vec![
            (Value::Null, 5, json!(50.0), json!(5.0)),
            (json!("billing"), 1, json!(72.5), json!(2.0)),
            (json!("sales"), 1, json!(90.0), json!(4.0)),
        ]
    );
    let hours = |report: &Value| -> Vec<(u64, u64)> {
        report["by_hour"]
            .as_array()
            .unwrap_or_else(|| panic!("by_hour: {report}"))
            .iter()
            .filter(|h| h["started"].as_u64() > Some(0))
            .map(|h| {
                (
                    h["hour"].as_u64().unwrap_or(99),
                    h["started"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    assert_eq!(cli["by_hour"].as_array().map(Vec::len), Some(24));
    assert_eq!(
        hours(&cli),
        vec![(1, 1), (3, 1), (10, 1), (11, 1), (14, 1), (15, 1), (22, 1)],
        "Paris hours: 01:30 then 03:30, the clocks having gone forward"
    );
    let missed_at: Vec<u64> = cli["by_hour"]
        .as_array()
        .map(|h| h.iter().filter_map(|h| h["missed"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!((missed_at[14], missed_at[22]), (1, 1));

    // The API answers the same JSON, computed by the archiver.
    let token = {
        let response = http::post(
            edge,
            "/api/v1/agents/login",
            &json!({ "login": "root", "password": PASSWORD }).to_string(),
        )
        .await;
        response.json()["token"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let api = stats(edge, &token, &DAY).await;
    assert_eq!(
        api, cli,
        "GET /api/v1/stats differs from report --format json"
    );

    // CSV: a header, one row per agent, the totals.
    let csv = report(&system, &DAY, "csv").await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines,
        vec![
            "agent_id,login,name,conversations,first_responses,first_response_median_secs,\
first_response_p90_secs,first_response_average_secs,csat_average,csat_responses",
            &format!("{},ann,Agent ann,2,2,47.5,50,47.5,5,1", ann.id),
            &format!("{},bob,Agent bob,3,4,75,100,68.75,3,2", bob.id),
            "total,,,7,6,55,100,61.667,3.6667,3",
        ]
    );

    // The table shows the same figures.
    let table = report(&system, &DAY, "table").await;
    for expected in [
        "started 7   answered 4   missed 2   abandoned 1   handed off 1   bot-resolved 1   closed 6",
        "messages per conversation 2.5714",
        "CSAT average 3.6667   responses 3   response rate 0.5   positive share 0.6667",
    ] {
        assert!(table.contains(expected), "{expected:?} not in:\n{table}");
    }
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no {name} row in:\n{table}"))
    };
    assert_eq!(row("wait"), ["wait", "25", "60", "30", "4"]);
    assert_eq!(
        row("first response"),
        ["first", "response", "55", "100", "61.667", "6"]
    );
    assert_eq!(row("resolution"), ["resolution", "400", "600", "372", "5"]);
    assert_eq!(
        row("ann"),
        ["ann", "Agent", "ann", "2", "47.5", "50", "47.5", "5"]
    );

    // The same dates in UTC: another window (conversation 8 is in it) and
    // other hours.
    let utc = stats(
        edge,
        &token,
        &[
            ("since", "2025-03-30"),
            ("until", "2025-03-30"),
            ("tz", "UTC"),
        ],
    )
    .await;
    assert_eq!(utc["conversations"]["started"], 8);
    assert_eq!(
        hours(&utc),
        vec![
            (0, 1),
            (1, 1),
            (8, 1),
            (9, 1),
            (12, 1),
            (13, 1),
            (20, 1),
            (22, 1)
        ]
    );
    // Filters: Bob's conversations, the sales team.
    let mut only_bob = DAY.to_vec();
    only_bob.push(("agent", "bob"));
    let bobs = stats(edge, &token, &only_bob).await;
    assert_eq!(bobs["conversations"]["started"], 3);
    assert_eq!(bobs["by_agent"].as_array().map(Vec::len), Some(1));
    assert_eq!(bobs["agent"], "bob");
    let cli_bob: Value = serde_json::from_str(report(&system, &only_bob, "json").await.trim())
        .unwrap_or_else(|e| panic!("not JSON: {e}"));
    assert_eq!(cli_bob, bobs);
    let mut sales = DAY.to_vec();
    sales.push(("team", "sales"));
    let sales = stats(edge, &token, &sales).await;
    assert_eq!(sales["conversations"]["started"], 1);
    assert_eq!(sales["conversations"]["handed_off"], 1);
    assert_eq!(sales["wait_secs"], timer(60.0, 60.0, 60.0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_with_bad_input_fails_with_the_reason() {
    let system = System::start().await;
    let mut command = tokio::process::Command::new(node_binary());
    let output = command
        .args(["report", "--tz", "Mars/Base"])
        .env_remove("SWITCHBOARD_CONFIG")
        .env("SWITCHBOARD_NATS__URL", system.nats.url())
        .env("SWITCHBOARD_MONGO__URI", system.mongo.uri())
        .env("SWITCHBOARD_MONGO__DATABASE", DATABASE)
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run switchboard report: {e}"));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Mars/Base"), "{stderr}");
}
