//! The poll agent end to end in an encrypted group of two people and the agent, through the
//! relay: every message the agent sends goes to the whole group under the group's key, the
//! tally follows each vote, and the result reaches everyone.

use pacerelle::core::widget::ResponseMode;
use pacerelle::test::{Person, TestAgent, TestRelay, WidgetKind};
use pacerelle::tokio::Client;
use pacerelle_examples::poll::PollAgent;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const AGENT: &str = "poll-agent";

/// The poll agent, end-to-end encrypted, serving `relay`.
fn poll_agent(relay: &TestRelay) -> TestAgent {
    let polls = Arc::new(PollAgent::new());
    let mut client = Client::in_memory(relay.encrypted_agent(AGENT)).expect("an in-memory agent");
    client.on_message(move |message, agent| {
        let polls = polls.clone();
        async move { polls.handle(message, agent).await }
    });
    TestAgent::start(client)
}

/// Alice and Bob in an encrypted group with the agent, accepting only messages sealed under
/// the group's key.
fn group(relay: &TestRelay) -> Vec<Person> {
    relay.group(AGENT, [relay.person("alice").encrypted_only(), relay.person("bob").encrypted_only()])
}

/// The `spec` of `member`'s next update of the poll's widget.
fn updated_spec(member: &Person, poll: &str) -> serde_json::Map<String, Value> {
    let patch = member.expect_widget_update(poll);
    patch.get("spec").and_then(Value::as_object).cloned().expect("the update changes the widget's spec")
}

/// Every member sees the poll's widget updated to this body.
fn everyone_sees_body(group: &[Person], poll: &str, body: &str) {
    for member in group {
        assert_eq!(updated_spec(member, poll)["body"], json!(body), "{}", member.id());
    }
}

/// Every member hears this text from the agent.
fn everyone_hears(group: &[Person], text: &str) {
    for member in group {
        member.expect_text(text);
    }
}

#[test]
fn a_poll_in_an_encrypted_group_tallies_every_vote_and_tells_everyone_the_result() {
    let relay = TestRelay::start();
    let agent = poll_agent(&relay);
    let group = group(&relay);
    let [alice, bob] = [&group[0], &group[1]];

    alice.say("/poll Where shall we have lunch? | Pizza | Sushi | Tacos");
    let poll = alice.expect_widget(WidgetKind::Choice);
    let bobs_poll = bob.expect_widget(WidgetKind::Choice);
    assert_eq!(bobs_poll.received(), poll.received(), "both see the same poll");
    assert_eq!(poll.title(), Some("Where shall we have lunch?"));
    let labels: Vec<_> = poll.spec()["options"].as_array().expect("options").iter().map(|o| &o["label"]).collect();
    assert_eq!(labels, [&json!("Pizza"), &json!("Sushi"), &json!("Tacos")]);
    assert_eq!(poll.received().response_mode, Some(ResponseMode::Individual), "each member answers for themselves");

    poll.choose("1");
    everyone_sees_body(&group, poll.id(), "Opened by alice. Pizza 0, Sushi 1, Tacos 0 (1 vote)");
    bobs_poll.choose("0");
    everyone_sees_body(&group, poll.id(), "Opened by alice. Pizza 1, Sushi 1, Tacos 0 (2 votes)");
    // Answering again changes the vote rather than adding one.
    bobs_poll.answer(json!(["1"]));
    everyone_sees_body(&group, poll.id(), "Opened by alice. Pizza 0, Sushi 2, Tacos 0 (2 votes)");

    bob.say("/close");
    everyone_hears(&group, "Only alice can close this poll.");
    alice.say("/close");
    for member in &group {
        assert_eq!(updated_spec(member, poll.id())["title"], json!("Where shall we have lunch? (closed)"));
    }
    everyone_hears(&group, "Poll closed: Where shall we have lunch? Pizza 0, Sushi 2, Tacos 0 (2 votes). Sushi wins.");

    agent.stop_within(Duration::from_secs(5));
}

#[test]
fn polls_take_two_to_ten_options_one_at_a_time_and_only_votes_for_an_option() {
    let relay = TestRelay::start();
    let agent = poll_agent(&relay);
    let group = group(&relay);
    let [alice, bob] = [&group[0], &group[1]];

    alice.say("/poll Lunch?");
    everyone_hears(&group, "To open a poll: /poll Question? | Option | Option (2 to 10 options)");
    alice.say("/close");
    everyone_hears(&group, "No poll is open here.");

    bob.say("/poll Coffee? | Yes | No");
    let poll = alice.expect_widget(WidgetKind::Choice);
    let bobs_poll = bob.expect_widget(WidgetKind::Choice);
    assert_eq!(bobs_poll.id(), poll.id());
    alice.say("/poll Tea? | Yes | No");
    everyone_hears(&group, "A poll is already open here: /close it first.");

    // A vote for no option changes nothing: the first update everyone sees is bob's vote.
    poll.choose("7");
    bobs_poll.choose("0");
    everyone_sees_body(&group, poll.id(), "Opened by bob. Yes 1, No 0 (1 vote)");
    // Dismissing the poll withdraws one's vote.
    bobs_poll.dismiss();
    everyone_sees_body(&group, poll.id(), "Opened by bob. Yes 0, No 0 (0 votes)");
    bob.say("/close");
    for member in &group {
        updated_spec(member, poll.id());
    }
    everyone_hears(&group, "Poll closed: Coffee? Yes 0, No 0 (0 votes). Nobody voted.");

    // Outside a group the agent says where it works.
    let carol = relay.person("carol").encrypted_only().talks_to(AGENT);
    carol.say("/poll Lunch? | Pizza | Sushi");
    carol.expect_text("I run polls in groups: add me to a group and ask there.");

    agent.stop_within(Duration::from_secs(5));
}
