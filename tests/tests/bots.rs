//! Bots, end to end: the example FAQ bot — in Rust and in Python, as real
//! processes — holds its team's new conversations, answers from its FAQ,
//! hands off (asked in words, by the visitor's `handoff` frame, after two
//! messages it could not answer), loses its conversations to the humans when
//! it is gone, and, restarted, answers what waited exactly once. The bot
//! API refuses what a bot may not do, with a code.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use switchboard_bus::Backbone;
use switchboard_protocol::bots::{
    BotCall, ConversationsReply, ConversationsRequest, HandoffReply, HandoffRequest, PresenceReply,
    PresenceRequest, SendReply, SendRequest,
};
use switchboard_protocol::ids::{BotId, ConversationId};
use switchboard_protocol::payloads::{decode, encode, Role};
use switchboard_protocol::subjects;
use switchboard_protocol::time::now_ms;
use switchboard_tests::bots::{
    add_bot, add_bot_cli, answers, python, records, state, wait_absent, wait_present,
    workspace_file, BotKind, BotProcess,
};
use switchboard_tests::system::{node_binary, System};
use switchboard_tests::ws::Ws;

async fn agent(edge: SocketAddr, login: &str) -> Ws {
    let token = System::agent_token(edge, login).await;
    Ws::hello(edge, &token, json!({})).await.0
}

/// A visitor who started a conversation of `team`, saying `text`.
async fn visitor(edge: SocketAddr, name: &str, team: &str, text: &str) -> (Ws, String) {
    let (_, token) = System::visitor(edge, name).await;
    let (mut ws, _) = Ws::hello(edge, &token, json!({})).await;
    ws.send(json!({ "type": "start", "team": team, "text": text, "client_id": "first" }))
        .await;
    let id = ws.expect_type("started").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (ws, id)
}

/// The next message of the bot in a conversation.
async fn bot_says(ws: &mut Ws, conversation: &str) -> String {
    let frame = ws
        .expect("a message from the bot", |f| {
            f["type"] == "message"
                && f["conversation_id"] == conversation
                && f["sender"]["role"] == "bot"
        })
        .await;
    frame["text"].as_str().unwrap_or_default().to_owned()
}

/// The `assigned` event of a conversation naming a participant of `role`.
async fn assigned_to(ws: &mut Ws, conversation: &str, role: &str) -> Value {
    ws.expect(&format!("{conversation} assigned to a {role}"), |f| {
        f["type"] == "event"
            && f["conversation_id"] == conversation
            && f["event"] == "assigned"
            && f["agent"]["role"] == role
    })
    .await
}

/// The agent's `assigned` frame of a conversation.
async fn given(ws: &mut Ws, conversation: &str) -> Value {
    ws.expect(&format!("assigned frame of {conversation}"), |f| {
        f["type"] == "assigned" && f["conversation_id"] == conversation
    })
    .await
}

/// Every question of the visitor got exactly one answer, and the bot said
/// nothing else.
async fn one_answer_each(
    backbone: &Backbone,
    conversation: &str,
) -> Vec<(u64, String, Vec<String>)> {
    let records = records(backbone, conversation).await;
    let answered = answers(&records);
    for (seq, text, replies) in &answered {
        assert_eq!(
            replies.len(),
            1,
            "{conversation}: the visitor's {text:?} (seq {seq}) got {replies:?}"
        );
    }
    let from_bot = records
        .iter()
        .filter(|r| r.sender.role == Role::Bot && r.body_is_message())
        .count();
    assert_eq!(
        from_bot,
        answered.len(),
        "{conversation}: the bot said more"
    );
    answered
}

trait IsMessage {
    fn body_is_message(&self) -> bool;
}

impl IsMessage for switchboard_protocol::payloads::ChatRecord {
    fn body_is_message(&self) -> bool {
        matches!(
            self.body,
            switchboard_protocol::payloads::RecordBody::Message { .. }
        )
    }
}

/// A deployment with one router and one edge, agent `ana` of team `sales`
/// online, and bot `faq` of that team running.
async fn deployment(
    env: &[(&str, &str)],
    kind: BotKind,
) -> (System, SocketAddr, Backbone, BotProcess, Ws) {
    let mut system = System::start_env(env).await;
    system.router().await;
    let edge = system.edge().await;
    let backbone = system.backbone().await;
    system.add_agent("ana", 5, Some("sales")).await;
    add_bot_cli(&system, "faq", "FAQ bot", "sales").await;
    let started = now_ms();
    let bot = BotProcess::start(&system, kind, "faq");
    wait_present(&backbone, "faq", started).await;
    let ana = agent(edge, "ana").await;
    (system, edge, backbone, bot, ana)
}

async fn answers_hands_off_and_the_agent_sees_the_bot(kind: BotKind) {
    let (_system, edge, backbone, mut bot, mut ana) = deployment(&[], kind).await;

    // A question asked with `start`: the bot holds the conversation (the
    // visitor sees it named) and answers from its FAQ.
    let (mut ann, id) = visitor(edge, "Ann", "sales", "How long does shipping take?").await;
    let assigned = assigned_to(&mut ann, &id, "bot").await;
    assert_eq!(assigned["agent"]["id"], "faq");
    assert_eq!(assigned["agent"]["name"], "FAQ bot");
    assert!(
        assigned["reason"].is_null(),
        "no audit trail for visitors: {assigned}"
    );
    let answer = bot_says(&mut ann, &id).await;
    assert!(answer.contains("2 working days"), "{answer}");

    // "human": the bot says so and hands off; Ana gets the conversation,
    // told by whom and why, with what the bot said.
    ann.send_message(&id, "k2", "Can I talk to a human please?")
        .await;
    assert!(bot_says(&mut ann, &id).await.contains("person"));
    let handed = ann.expect_event(&id, "handed_off").await;
    assert_eq!(handed["reason"], "bot_asked");
    assert_eq!(handed["from"]["id"], "faq");
    let frame = given(&mut ana, &id).await;
    assert_eq!(frame["handed_off"]["reason"], "bot_asked", "{frame}");
    assert_eq!(frame["handed_off"]["from"]["role"], "bot");
    let mine = assigned_to(&mut ana, &id, "agent").await;
    assert_eq!(mine["handed_off"]["from"]["id"], "faq", "{mine}");
    let seen = bot_says(&mut ana, &id).await;
    assert!(
        seen.contains("2 working days"),
        "the agent sees the bot's answer: {seen}"
    );
    ana.send(json!({ "type": "history", "conversation_id": id }))
        .await;
    let history = ana.expect_type("history").await;
    let items = history["items"].as_array().cloned().unwrap_or_default();
    assert!(
        items.iter().any(|i| i["type"] == "message"
            && i["sender"]["role"] == "bot"
            && i["text"]
                .as_str()
                .is_some_and(|t| t.contains("2 working days"))),
        "the bot's answer in the agent's history: {history}"
    );
    assert!(
        items
            .iter()
            .any(|i| i["event"] == "handed_off" && i["reason"] == "bot_asked"),
        "{history}"
    );
    assigned_to(&mut ann, &id, "agent").await;
    // Back in the queue at its original place in time, for humans only.
    let routing = state(&backbone, &id).await;
    assert_eq!(routing.queued_at, routing.created_at);
    assert!(routing.humans_only && routing.handoff.is_none());
    // One conversation: Ana's answer reaches the visitor in it.
    let said = ana.send_message(&id, "a1", "Hi, Ana here").await;
    ann.expect("Ana's message", |f| f["id"] == said["id"]).await;

    // The widget's "talk to a person": the `handoff` frame.
    let (mut bo, id2) = visitor(edge, "Bo", "sales", "hello").await;
    assigned_to(&mut bo, &id2, "bot").await;
    assert!(
        bot_says(&mut bo, &id2).await.contains("person"),
        "the fallback"
    );
    bo.send(json!({ "type": "handoff", "conversation_id": id2 }))
        .await;
    let handed = bo.expect_event(&id2, "handed_off").await;
    assert_eq!(handed["reason"], "visitor_asked");
    assert_eq!(handed["by"]["role"], "visitor");
    let frame = given(&mut ana, &id2).await;
    assert_eq!(frame["handed_off"]["reason"], "visitor_asked");
    // Asking again, with the humans now: nothing happens, no error.
    bo.send(json!({ "type": "handoff", "conversation_id": id2 }))
        .await;

    // Two messages it cannot answer: the bot hands off by itself.
    let (mut cy, id3) = visitor(edge, "Cy", "sales", "hello").await;
    bot_says(&mut cy, &id3).await;
    cy.send_message(&id3, "k2", "what is the meaning of life")
        .await;
    let handed = cy.expect_event(&id3, "handed_off").await;
    assert_eq!(handed["reason"], "bot_asked");
    given(&mut ana, &id3).await;

    for conversation in [&id, &id2, &id3] {
        one_answer_each(&backbone, conversation).await;
    }
    assert!(
        bo.seen.iter().all(|f| f["type"] != "error"),
        "{:#?}",
        bo.seen
    );
    bot.kill().await;
}

async fn a_gone_bot_loses_its_conversations_to_the_humans(kind: BotKind) {
    let ttl = Duration::from_secs(3);
    let (_system, edge, backbone, mut bot, mut ana) = deployment(
        &[
            ("SWITCHBOARD_NATS__PRESENCE_TTL", "3s"),
            ("SWITCHBOARD_ROUTER__BOT_REPLY_DEADLINE", "2s"),
        ],
        kind,
    )
    .await;
    let (mut ann, held) = visitor(edge, "Ann", "sales", "Do you deliver to Spain?").await;
    assigned_to(&mut ann, &held, "bot").await;
    bot_says(&mut ann, &held).await;

    bot.kill().await;
    wait_absent(&backbone, "faq", ttl).await;
    // The next visitor of its team goes straight to a human.
    let (mut bo, next) = visitor(edge, "Bo", "sales", "anyone there?").await;
    let human = assigned_to(&mut bo, &next, "agent").await;
    assert!(human["handed_off"].is_null(), "{human}");
    given(&mut ana, &next).await;
    assert!(
        bo.records(&next)
            .iter()
            .all(|r| r["agent"]["role"] != "bot"),
        "{:#?}",
        bo.seen
    );
    // What the bot held goes to the humans by the deadline.
    let handed = ann.expect_event(&held, "handed_off").await;
    assert_eq!(handed["reason"], "bot_absent");
    assert_eq!(handed["by"]["role"], "system");
    let frame = given(&mut ana, &held).await;
    assert_eq!(frame["handed_off"]["reason"], "bot_absent");
    assigned_to(&mut ann, &held, "agent").await;
}

async fn a_restarted_bot_answers_what_waited_once(kind: BotKind) {
    // A short duplicate window: answers repeated after a restart are found
    // in the log, not only by JetStream's window.
    let (system, edge, backbone, mut bot, _ana) =
        deployment(&[("SWITCHBOARD_NATS__DUPLICATE_WINDOW", "1s")], kind).await;
    let (mut ann, id) = visitor(edge, "Ann", "sales", "hello").await;
    assigned_to(&mut ann, &id, "bot").await;
    bot_says(&mut ann, &id).await;

    bot.kill().await;
    // While it is down (the routers still count it present): two
    // questions, and a new visitor of its team.
    ann.send_message(&id, "k2", "How do returns work?").await;
    ann.send_message(&id, "k3", "Do you take card payment?")
        .await;
    let (mut bo, id2) = visitor(edge, "Bo", "sales", "When are you open?").await;
    assigned_to(&mut bo, &id2, "bot").await;

    let restarted = now_ms();
    let mut bot = BotProcess::start(&system, kind, "faq");
    wait_present(&backbone, "faq", restarted).await;
    let returns = bot_says(&mut ann, &id).await;
    let payment = bot_says(&mut ann, &id).await;
    assert!(returns.contains("30 days"), "{returns}");
    assert!(payment.contains("cards"), "{payment}");
    assert!(bot_says(&mut bo, &id2).await.contains("Monday"));

    // Once more, and a new question: answered, and nothing twice.
    bot.kill().await;
    let again = now_ms();
    let mut bot = BotProcess::start(&system, kind, "faq");
    wait_present(&backbone, "faq", again).await;
    ann.send_message(&id, "k4", "and shipping?").await;
    assert!(bot_says(&mut ann, &id).await.contains("2 working days"));
    let answered = one_answer_each(&backbone, &id).await;
    assert_eq!(answered.len(), 4, "{answered:#?}");
    one_answer_each(&backbone, &id2).await;
    bot.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_bot_answers_hands_off_and_the_agent_sees_it() {
    answers_hands_off_and_the_agent_sees_the_bot(BotKind::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_bot_answers_hands_off_and_the_agent_sees_it() {
    answers_hands_off_and_the_agent_sees_the_bot(BotKind::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_bot_gone_loses_its_conversations_to_the_humans() {
    a_gone_bot_loses_its_conversations_to_the_humans(BotKind::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_bot_gone_loses_its_conversations_to_the_humans() {
    a_gone_bot_loses_its_conversations_to_the_humans(BotKind::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_bot_restarted_answers_what_waited_once() {
    a_restarted_bot_answers_what_waited_once(BotKind::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_bot_restarted_answers_what_waited_once() {
    a_restarted_bot_answers_what_waited_once(BotKind::Python).await;
}

/// The Python bot decides like the Rust one (its unit tests, run with the
/// project's virtualenv).
#[tokio::test]
async fn python_bot_unit_tests_pass() {
    let output = tokio::process::Command::new(python())
        .args(["-m", "unittest", "discover", "-s"])
        .arg(workspace_file("examples/bots/python"))
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A request to the bot API, as a bot sends it.
async fn call<T: serde::Serialize, R: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    bot: &str,
    call: BotCall,
    request: &T,
) -> R {
    let subject = subjects::bot_api(&BotId::new(bot).unwrap(), call);
    let answer = client
        .request(subject, encode(request).unwrap().into())
        .await
        .unwrap_or_else(|e| panic!("{call:?}: {e}"));
    decode(&answer.payload).unwrap_or_else(|e| panic!("{call:?} reply: {e}"))
}

/// The bot API refuses, with a code, whatever a bot may not do; and a
/// removed bot's conversations go to the humans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_api_checks_the_bot_the_conversation_and_the_input() {
    let window = Duration::from_secs(1);
    let mut system = System::start_env(&[("SWITCHBOARD_NATS__DUPLICATE_WINDOW", "1s")]).await;
    system.router().await;
    system.router().await;
    let edge = system.edge().await;
    let backbone = system.backbone().await;
    add_bot(&backbone, "helper", "Helper", "sales").await;
    add_bot(&backbone, "other", "Other", "support").await;
    let client = system.nats.client().await;

    let unknown: PresenceReply = call(
        &client,
        "ghost",
        BotCall::Presence,
        &PresenceRequest::default(),
    )
    .await;
    assert_eq!(unknown.error.unwrap().code.as_str(), "unknown_bot");
    // The test is the bot: present, it gets the team's conversations.
    let present: PresenceReply = call(
        &client,
        "helper",
        BotCall::Presence,
        &PresenceRequest::default(),
    )
    .await;
    assert!(present.error.is_none() && present.every_ms > 0);
    assert_eq!(present.reply_deadline_ms, 20_000);
    let mut notices = client
        .subscribe(subjects::bot_inbox(&BotId::new("helper").unwrap()))
        .await
        .unwrap();
    let (mut ann, id) = visitor(edge, "Ann", "sales", "hi there").await;
    assigned_to(&mut ann, &id, "bot").await;
    let conversation = ConversationId::new(id.clone()).unwrap();
    let notice = futures::StreamExt::next(&mut notices).await.unwrap();
    let notice: serde_json::Value = rmp_serde_value(&notice.payload);
    assert_eq!(notice["kind"], "assigned");
    assert_eq!(notice["conversation_id"], id.as_str());
    let held: ConversationsReply = call(
        &client,
        "helper",
        BotCall::Conversations,
        &ConversationsRequest::default(),
    )
    .await;
    let waiting: Vec<_> = held.conversations[0]
        .waiting
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(held.conversations.len(), 1);
    assert_eq!(waiting.len(), 1, "the start text waits: {held:?}");

    let send = |text: &str, key: &str| SendRequest {
        conversation_id: conversation.clone(),
        text: text.to_owned(),
        key: key.to_owned(),
    };
    // Not the other bot's, whatever it asks.
    let theirs: SendReply = call(&client, "other", BotCall::Send, &send("mine now", "x1")).await;
    assert_eq!(theirs.error.unwrap().code.as_str(), "not_owner");
    let theirs: HandoffReply = call(
        &client,
        "other",
        BotCall::Handoff,
        &HandoffRequest {
            conversation_id: conversation.clone(),
        },
    )
    .await;
    assert_eq!(theirs.error.unwrap().code.as_str(), "not_owner");
    // Bad input.
    for (request, code) in [
        (send("  ", "k"), "bad_request"),
        (send("hi", "a key with spaces"), "bad_request"),
        (send(&"x".repeat(4001), "k"), "too_large"),
    ] {
        let reply: SendReply = call(&client, "helper", BotCall::Send, &request).await;
        assert_eq!(reply.error.unwrap().code.as_str(), code);
    }
    let garbage: SendReply = client
        .request(
            subjects::bot_api(&BotId::new("helper").unwrap(), BotCall::Send),
            b"\x93not a map".to_vec().into(),
        )
        .await
        .map(|m| decode(&m.payload).unwrap())
        .unwrap();
    assert_eq!(garbage.error.unwrap().code.as_str(), "bad_request");
    let missing = SendRequest {
        conversation_id: ConversationId::new("c_nothing").unwrap(),
        ..send("hi", "k")
    };
    let reply: SendReply = call(&client, "helper", BotCall::Send, &missing).await;
    assert_eq!(reply.error.unwrap().code.as_str(), "not_found");
    // A post, then the same key again: stored once.
    let first: SendReply = call(&client, "helper", BotCall::Send, &send("Hello!", "re-2")).await;
    let again: SendReply = call(&client, "helper", BotCall::Send, &send("Hello!", "re-2")).await;
    let (first, again) = (first.sent.unwrap(), again.sent.unwrap());
    assert!(!first.duplicate && again.duplicate && again.seq == first.seq);
    // Past the stream's duplicate window (what is tested: waited as is),
    // the key is found in the log.
    tokio::time::sleep(window + Duration::from_millis(300)).await;
    let late: SendReply = call(&client, "helper", BotCall::Send, &send("Hello!", "re-2")).await;
    let late = late.sent.unwrap();
    assert!(late.duplicate && late.seq == first.seq, "{late:?}");
    let greeted = bot_says(&mut ann, &id).await;
    assert_eq!(greeted, "Hello!");
    let held: ConversationsReply = call(
        &client,
        "helper",
        BotCall::Conversations,
        &ConversationsRequest {
            conversation_id: Some(conversation.clone()),
        },
    )
    .await;
    assert!(
        held.conversations[0].waiting.is_empty(),
        "answered: {held:?}"
    );

    // Listed, running; removed: what it held goes to the humans at once.
    let listed = tokio::process::Command::new(node_binary())
        .args(["bot", "list"])
        .env("SWITCHBOARD_NATS__URL", system.nats.url())
        .output()
        .await
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let helper = listed
        .lines()
        .find(|l| l.starts_with("helper"))
        .unwrap_or_default();
    assert!(
        helper.contains("sales") && helper.contains("running"),
        "{listed}"
    );
    let other = listed
        .lines()
        .find(|l| l.starts_with("other"))
        .unwrap_or_default();
    assert!(other.contains("absent"), "{listed}");
    let output = tokio::process::Command::new(node_binary())
        .args(["bot", "remove", "--id", "helper"])
        .env("SWITCHBOARD_NATS__URL", system.nats.url())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let handed = ann.expect_event(&id, "handed_off").await;
    assert_eq!(handed["reason"], "bot_absent");
    let reply: SendReply = call(&client, "helper", BotCall::Send, &send("still here?", "k9")).await;
    assert_eq!(reply.error.unwrap().code.as_str(), "unknown_bot");
}

fn rmp_serde_value(bytes: &[u8]) -> serde_json::Value {
    decode(bytes).unwrap_or_else(|e| panic!("decode: {e}"))
}

/// A bot that stays present but does not answer loses the conversation at
/// the deadline, counted from the visitor's latest unanswered message: an
/// answer stops the clock, the visitor's next message starts it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_bot_loses_the_conversation_at_the_deadline_of_the_last_message() {
    let deadline_ms = 3_000;
    let mut system = System::start_env(&[("SWITCHBOARD_ROUTER__BOT_REPLY_DEADLINE", "3s")]).await;
    system.router().await;
    let edge = system.edge().await;
    let backbone = system.backbone().await;
    add_bot(&backbone, "quiet", "Quiet bot", "sales").await;
    let client = system.nats.client().await;
    // The test is the bot: present (for the default 30 s), answering once.
    let present: PresenceReply = call(
        &client,
        "quiet",
        BotCall::Presence,
        &PresenceRequest::default(),
    )
    .await;
    assert!(present.error.is_none());
    let (mut ann, id) = visitor(edge, "Ann", "sales", "first question").await;
    assigned_to(&mut ann, &id, "bot").await;
    let conversation = ConversationId::new(id.clone()).unwrap();
    let answer = SendRequest {
        conversation_id: conversation.clone(),
        text: "An answer".into(),
        key: "re-2".into(),
    };
    let answered: SendReply = call(&client, "quiet", BotCall::Send, &answer).await;
    assert!(answered.error.is_none(), "{answered:?}");
    // Answered: no deadline runs, however long the visitor thinks.
    assert!(state(&backbone, &id).await.bot_wait.is_none());
    let asked = ann.send_message(&id, "k2", "second question").await;
    let wait = switchboard_tests::eventually("the deadline to start", || {
        let backbone = &backbone;
        let id = &id;
        async move { state(backbone, id).await.bot_wait }
    })
    .await;
    assert_eq!(Some(wait.seq), asked["seq"].as_u64());
    let handed = ann.expect_event(&id, "handed_off").await;
    assert_eq!(handed["reason"], "no_answer");
    assert_eq!(handed["from"]["id"], "quiet");
    // Counted from the second question, not the first one.
    let log = records(&backbone, &id).await;
    let question = log.iter().find(|r| r.seq == wait.seq).unwrap();
    let handoff = log
        .iter()
        .find(|r| r.seq == handed["seq"].as_u64().unwrap())
        .unwrap();
    assert!(
        handoff.sent_at - question.sent_at >= deadline_ms,
        "handed off {} ms after the unanswered question",
        handoff.sent_at - question.sent_at
    );
    // Too late now: the bot may no longer post.
    let late: SendReply = call(
        &client,
        "quiet",
        BotCall::Send,
        &SendRequest {
            key: "re-late".into(),
            ..answer
        },
    )
    .await;
    assert_eq!(late.error.unwrap().code.as_str(), "not_owner");
}
