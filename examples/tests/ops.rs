//! The operations agent end to end, with an encrypted person through the relay: a command runs
//! only under a grant, its real output arrives as an encrypted file, a refusal is respected and
//! a name not on the allowlist runs nothing.

mod people;

use pacerelle::core::widget::WidgetKind;
use pacerelle::tokio::Client;
use pacerelle_examples::ops::OpsAgent;
use people::{Person, Scene};
use serde_json::{Value, json};
use std::time::Duration;

const AGENT: &str = "ops-agent";

async fn scene() -> Scene {
    let ops = OpsAgent::new("Operations test", Duration::from_secs(3600)).expect("a session ending later");
    Scene::start(AGENT, &["alice"], |client: &mut Client| {
        client.on_message(move |message, agent| {
            let ops = ops.clone();
            async move { ops.handle(message, agent).await }
        });
    })
    .await
}

/// What the machine prints for `program args`, as the agent should have run it.
fn real_output(program: &str, args: &[&str]) -> Vec<u8> {
    let output = std::process::Command::new(program).args(args).output().expect("the command runs here");
    assert!(output.status.success() && output.stderr.is_empty(), "{output:?}");
    output.stdout
}

/// The status a permission update shows.
fn status(spec: &serde_json::Map<String, Value>) -> &str {
    spec["authorization"]["status"].as_str().expect("an authorization status")
}

/// The permission widget's question; alice answers it with `answer`.
async fn permission_answered(alice: &Person, answer: Value) -> String {
    let question = alice.is_shown(WidgetKind::Permission).await;
    alice.answers(&question, answer);
    question.id
}

/// The progress widget goes from 0 to 100 for `command_line`, then the file arrives; returns
/// the file's caption, name and content.
async fn progress_then_file(alice: &Person, command_line: &str) -> (String, String, Vec<u8>) {
    let progress = alice.is_shown(WidgetKind::Progress).await;
    assert_eq!(progress.spec["title"], json!(format!("Running `{command_line}`")));
    assert_eq!(progress.spec["value"], json!(0));
    let done = alice.sees_update_of(&progress.id).await;
    assert_eq!(done["title"], json!(format!("`{command_line}` finished")));
    assert_eq!(done["value"], done["max"], "the progress ends full: {done:?}");
    let (caption, file, content) = alice.receives_file().await;
    assert_eq!(file.mime, "text/plain");
    assert_eq!(file.size, content.len() as u64);
    (caption, file.name, content)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_command_runs_once_and_its_output_arrives_as_an_encrypted_file() {
    let scene = scene().await;
    let alice = scene.chat("alice").await;

    alice.says("kernel");
    let question = alice.is_shown(WidgetKind::Permission).await;
    let asked = &question.spec["authorization"];
    assert_eq!(asked["action"], json!("run"));
    assert_eq!(asked["resource"], json!("kernel"));
    assert_eq!(asked["parameters"], json!({"argv": ["uname", "-a"]}), "the grant names the exact command line");
    assert_eq!(asked["status"], json!("requested"));
    assert_eq!(question.spec["scopes"], json!(["once", "session"]));

    alice.answers(&question, json!({"granted": true, "scope": "once"}));
    assert_eq!(status(&alice.sees_update_of(&question.id).await), "consumed");
    let (caption, name, content) = progress_then_file(&alice, "uname -a").await;
    assert_eq!(name, "kernel.txt");
    assert_eq!(content, real_output("uname", &["-a"]), "the file is the command's output");
    assert!(caption.starts_with("`uname -a` exited with 0 after "), "{caption}");
    assert!(caption.ends_with(": 1 line of output, attached."), "{caption}");

    // The grant was for one run: granting the same question again is refused, and asking again
    // brings a new question.
    alice.answers(&question, json!({"granted": true, "scope": "once"}));
    let refused = alice.hears_text().await;
    assert_eq!(refused, "I can't accept that answer: the permission request was already decided.");
    alice.says("kernel");
    let again = alice.is_shown(WidgetKind::Permission).await;
    assert_ne!(again.id, question.id);

    scene.finish(vec![alice]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_dismissed_permission_runs_nothing() {
    let scene = scene().await;
    let alice = scene.chat("alice").await;

    alice.says("disk");
    let question = permission_answered(&alice, json!({"granted": false})).await;
    assert_eq!(status(&alice.sees_update_of(&question).await), "denied");
    assert_eq!(alice.hears_text().await, "Understood: I won't run `df -h`.");

    alice.says("run date");
    let question = alice.is_shown(WidgetKind::Permission).await;
    alice.dismisses(&question);
    assert_eq!(status(&alice.sees_update_of(&question.id).await), "denied");
    assert_eq!(alice.hears_text().await, "Understood: I won't run `date -u`.");

    // A grant after the refusal is too late: the question was decided.
    alice.answers(&question, json!({"granted": true, "scope": "once"}));
    assert_eq!(alice.hears_text().await, "I can't accept that answer: the permission request was already decided.");
    // Nothing ran in between: the next thing the agent says answers this.
    alice.says("help");
    assert!(alice.hears_text().await.starts_with("I can run, with your permission:"));

    scene.finish(vec![alice]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_not_on_the_allowlist_is_refused_without_asking() {
    let scene = scene().await;
    let alice = scene.chat("alice").await;

    // Arguments cannot ride along with an allowed name: the text only picks an entry.
    for text in ["reboot", "rm -rf /", "kernel --all", "uname -a; cat /etc/shadow", "df"] {
        alice.says(text);
        let refusal = alice.hears_text().await;
        assert!(refusal.starts_with(&format!("I don't run \"{text}\": it is not on my allowlist.")), "{refusal}");
        assert!(refusal.contains("- disk (`df -h`)"), "the refusal lists what it can run: {refusal}");
    }

    let long = "x".repeat(100);
    alice.says(&long);
    let refusal = alice.hears_text().await;
    assert!(refusal.starts_with(&format!("I don't run \"{}…\": it is not", "x".repeat(60))), "{refusal}");

    scene.finish(vec![alice]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_grant_runs_the_same_command_again_without_asking_and_nothing_else() {
    let scene = scene().await;
    let alice = scene.chat("alice").await;

    alice.says("kernel");
    let question = permission_answered(&alice, json!({"granted": true, "scope": "session"})).await;
    assert_eq!(status(&alice.sees_update_of(&question).await), "granted");
    let (_, _, first) = progress_then_file(&alice, "uname -a").await;
    assert_eq!(first, real_output("uname", &["-a"]));

    alice.says("kernel");
    let (_, _, second) = progress_then_file(&alice, "uname -a").await;
    assert_eq!(second, first);

    alice.says("uptime");
    let other = alice.is_shown(WidgetKind::Permission).await;
    assert_eq!(other.spec["authorization"]["resource"], json!("uptime"), "another command needs its own grant");

    scene.finish(vec![alice]).await;
}
