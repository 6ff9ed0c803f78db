//! The poll agent end to end in an encrypted group of two people and the agent, through the
//! relay: every message the agent sends goes to the whole group under the group's key, the
//! tally follows each vote, and the result reaches everyone.

mod people;

use pacerelle::core::widget::{ResponseMode, WidgetKind};
use pacerelle::tokio::Client;
use pacerelle_examples::poll::PollAgent;
use people::{Person, Scene};
use serde_json::json;
use std::sync::Arc;

const AGENT: &str = "poll-agent";

async fn scene() -> Scene {
    let polls = Arc::new(PollAgent::new());
    Scene::start(AGENT, &["alice", "bob", "carol"], |client: &mut Client| {
        client.on_message(move |message, agent| {
            let polls = polls.clone();
            async move { polls.handle(message, agent).await }
        });
    })
    .await
}

/// Every member sees the poll's widget updated to this body.
async fn everyone_sees_body(group: &[Person], poll: &str, body: &str) {
    for member in group {
        let spec = member.sees_update_of(poll).await;
        assert_eq!(spec["body"], json!(body), "{}", member.id());
    }
}

/// Every member hears this text from the agent.
async fn everyone_hears(group: &[Person], text: &str) {
    for member in group {
        assert_eq!(member.hears_text().await, text, "{}", member.id());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_in_an_encrypted_group_tallies_every_vote_and_tells_everyone_the_result() {
    let scene = scene().await;
    let group = scene.group(&["alice", "bob"]).await;
    let [alice, bob] = [&group[0], &group[1]];

    alice.says("/poll Where shall we have lunch? | Pizza | Sushi | Tacos");
    let poll = alice.is_shown(WidgetKind::Choice).await;
    assert_eq!(bob.is_shown(WidgetKind::Choice).await, poll, "both see the same poll");
    assert_eq!(poll.spec["title"], json!("Where shall we have lunch?"));
    let labels: Vec<_> = poll.spec["options"].as_array().expect("options").iter().map(|o| &o["label"]).collect();
    assert_eq!(labels, [&json!("Pizza"), &json!("Sushi"), &json!("Tacos")]);
    assert_eq!(poll.response_mode, Some(ResponseMode::Individual), "each member answers for themselves");

    alice.answers(&poll, json!("1"));
    everyone_sees_body(&group, &poll.id, "Opened by alice. Pizza 0, Sushi 1, Tacos 0 (1 vote)").await;
    bob.answers(&poll, json!("0"));
    everyone_sees_body(&group, &poll.id, "Opened by alice. Pizza 1, Sushi 1, Tacos 0 (2 votes)").await;
    // Answering again changes the vote rather than adding one.
    bob.answers(&poll, json!(["1"]));
    everyone_sees_body(&group, &poll.id, "Opened by alice. Pizza 0, Sushi 2, Tacos 0 (2 votes)").await;

    bob.says("/close");
    everyone_hears(&group, "Only alice can close this poll.").await;
    alice.says("/close");
    for member in &group {
        assert_eq!(member.sees_update_of(&poll.id).await["title"], json!("Where shall we have lunch? (closed)"));
    }
    everyone_hears(&group, "Poll closed: Where shall we have lunch? Pizza 0, Sushi 2, Tacos 0 (2 votes). Sushi wins.")
        .await;

    scene.finish(group).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_take_two_to_ten_options_one_at_a_time_and_only_votes_for_an_option() {
    let scene = scene().await;
    let group = scene.group(&["alice", "bob"]).await;
    let [alice, bob] = [&group[0], &group[1]];

    alice.says("/poll Lunch?");
    everyone_hears(&group, "To open a poll: /poll Question? | Option | Option (2 to 10 options)").await;
    alice.says("/close");
    everyone_hears(&group, "No poll is open here.").await;

    bob.says("/poll Coffee? | Yes | No");
    let poll = alice.is_shown(WidgetKind::Choice).await;
    assert_eq!(bob.is_shown(WidgetKind::Choice).await.id, poll.id);
    alice.says("/poll Tea? | Yes | No");
    everyone_hears(&group, "A poll is already open here: /close it first.").await;

    // A vote for no option changes nothing: the first update everyone sees is bob's vote.
    alice.answers(&poll, json!("7"));
    bob.answers(&poll, json!("0"));
    everyone_sees_body(&group, &poll.id, "Opened by bob. Yes 1, No 0 (1 vote)").await;
    // Dismissing the poll withdraws one's vote.
    bob.dismisses(&poll);
    everyone_sees_body(&group, &poll.id, "Opened by bob. Yes 0, No 0 (0 votes)").await;
    bob.says("/close");
    for member in &group {
        member.sees_update_of(&poll.id).await;
    }
    everyone_hears(&group, "Poll closed: Coffee? Yes 0, No 0 (0 votes). Nobody voted.").await;

    // Outside a group the agent says where it works.
    let carol = scene.chat("carol").await;
    carol.says("/poll Lunch? | Pizza | Sushi");
    assert_eq!(carol.hears_text().await, "I run polls in groups: add me to a group and ask there.");

    let mut everyone = group;
    everyone.push(carol);
    scene.finish(everyone).await;
}
