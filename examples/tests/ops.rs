//! The operations agent end to end, with an encrypted person through the relay: a command runs
//! only under a grant, its real output arrives as an encrypted file, a refusal is respected and
//! a name not on the allowlist runs nothing.

use pacerelle::test::{Person, TestAgent, TestRelay, WidgetKind};
use pacerelle::tokio::Client;
use pacerelle_examples::ops::OpsAgent;
use serde_json::{Map, Value, json};
use std::time::Duration;

const AGENT: &str = "ops-agent";

/// The operations agent, end-to-end encrypted, serving `relay`.
fn ops_agent(relay: &TestRelay) -> TestAgent {
    let ops = OpsAgent::new("Operations test", Duration::from_secs(3600)).expect("a session ending later");
    let mut client = Client::in_memory(relay.encrypted_agent(AGENT)).expect("an in-memory agent");
    client.on_message(move |message, agent| {
        let ops = ops.clone();
        async move { ops.handle(message, agent).await }
    });
    TestAgent::start(client)
}

/// Alice, who accepts only end-to-end encrypted messages from the agent.
fn alice(relay: &TestRelay) -> Person {
    relay.person("alice").encrypted_only().talks_to(AGENT)
}

/// What the machine prints for `program args`, as the agent should have run it.
fn real_output(program: &str, args: &[&str]) -> Vec<u8> {
    let output = std::process::Command::new(program).args(args).output().expect("the command runs here");
    assert!(output.status.success() && output.stderr.is_empty(), "{output:?}");
    output.stdout
}

/// The `spec` of the next update of widget `widget_id`.
fn updated_spec(person: &Person, widget_id: &str) -> Map<String, Value> {
    let patch = person.expect_widget_update(widget_id);
    patch.get("spec").and_then(Value::as_object).cloned().expect("the update changes the widget's spec")
}

/// The agent's next message, which must be a text (no widget, no update); returns it.
fn next_text(person: &Person) -> String {
    let message = person.next_message();
    assert!(message.widget.is_none() && message.widget_update.is_none(), "expected a text, got {message:?}");
    message.text
}

/// The status a permission update shows.
fn status(spec: &Map<String, Value>) -> &str {
    spec["authorization"]["status"].as_str().expect("an authorization status")
}

/// The progress widget goes from 0 to 100 for `command_line`, then the file arrives; returns
/// the file's caption, name and content.
fn progress_then_file(alice: &Person, command_line: &str) -> (String, String, Vec<u8>) {
    let progress = alice.expect_widget(WidgetKind::Progress);
    assert_eq!(progress.spec()["title"], json!(format!("Running `{command_line}`")));
    assert_eq!(progress.spec()["value"], json!(0));
    let done = updated_spec(alice, progress.id());
    assert_eq!(done["title"], json!(format!("`{command_line}` finished")));
    assert_eq!(done["value"], done["max"], "the progress ends full: {done:?}");
    let message = alice.next_message();
    assert_eq!(message.attachments.len(), 1, "expected one file, got {message:?}");
    let file = &message.attachments[0];
    let content = alice.download(file);
    assert_eq!(file.mime, "text/plain");
    assert_eq!(file.size, content.len() as u64);
    (message.text, file.name.clone(), content)
}

#[test]
fn a_granted_command_runs_once_and_its_output_arrives_as_an_encrypted_file() {
    let relay = TestRelay::start();
    let agent = ops_agent(&relay);
    let alice = alice(&relay);

    alice.say("kernel");
    let question = alice.expect_widget(WidgetKind::Permission);
    let asked = &question.spec()["authorization"];
    assert_eq!(asked["action"], json!("run"));
    assert_eq!(asked["resource"], json!("kernel"));
    assert_eq!(asked["parameters"], json!({"argv": ["uname", "-a"]}), "the grant names the exact command line");
    assert_eq!(asked["status"], json!("requested"));
    assert_eq!(question.spec()["scopes"], json!(["once", "session"]));

    question.grant("once");
    assert_eq!(status(&updated_spec(&alice, question.id())), "consumed");
    let (caption, name, content) = progress_then_file(&alice, "uname -a");
    assert_eq!(name, "kernel.txt");
    assert_eq!(content, real_output("uname", &["-a"]), "the file is the command's output");
    assert!(caption.starts_with("`uname -a` exited with 0 after "), "{caption}");
    assert!(caption.ends_with(": 1 line of output, attached."), "{caption}");

    // The grant was for one run: granting the same question again is refused, and asking again
    // brings a new question.
    question.grant("once");
    alice.expect_text("I can't accept that answer: the permission request was already decided.");
    alice.say("kernel");
    let again = alice.expect_widget(WidgetKind::Permission);
    assert_ne!(again.id(), question.id());

    agent.stop_within(Duration::from_secs(5));
}

#[test]
fn a_refused_or_dismissed_permission_runs_nothing() {
    let relay = TestRelay::start();
    let agent = ops_agent(&relay);
    let alice = alice(&relay);

    alice.say("disk");
    let question = alice.expect_widget(WidgetKind::Permission);
    question.refuse();
    assert_eq!(status(&updated_spec(&alice, question.id())), "denied");
    alice.expect_text("Understood: I won't run `df -h`.");

    alice.say("run date");
    let question = alice.expect_widget(WidgetKind::Permission);
    question.dismiss();
    assert_eq!(status(&updated_spec(&alice, question.id())), "denied");
    alice.expect_text("Understood: I won't run `date -u`.");

    // A grant after the refusal is too late: the question was decided.
    question.grant("once");
    alice.expect_text("I can't accept that answer: the permission request was already decided.");
    // Nothing ran in between: the next thing the agent says answers this.
    alice.say("help");
    let help = next_text(&alice);
    assert!(help.starts_with("I can run, with your permission:"), "{help}");

    agent.stop_within(Duration::from_secs(5));
}

#[test]
fn a_command_not_on_the_allowlist_is_refused_without_asking() {
    let relay = TestRelay::start();
    let agent = ops_agent(&relay);
    let alice = alice(&relay);

    // Arguments cannot ride along with an allowed name: the text only picks an entry.
    for text in ["reboot", "rm -rf /", "kernel --all", "uname -a; cat /etc/shadow", "df"] {
        alice.say(text);
        let refusal = next_text(&alice);
        assert!(refusal.starts_with(&format!("I don't run \"{text}\": it is not on my allowlist.")), "{refusal}");
        assert!(refusal.contains("- disk (`df -h`)"), "the refusal lists what it can run: {refusal}");
    }

    let long = "x".repeat(100);
    alice.say(&long);
    let refusal = next_text(&alice);
    assert!(refusal.starts_with(&format!("I don't run \"{}…\": it is not", "x".repeat(60))), "{refusal}");

    agent.stop_within(Duration::from_secs(5));
}

#[test]
fn a_session_grant_runs_the_same_command_again_without_asking_and_nothing_else() {
    let relay = TestRelay::start();
    let agent = ops_agent(&relay);
    let alice = alice(&relay);

    alice.say("kernel");
    let question = alice.expect_widget(WidgetKind::Permission);
    question.grant("session");
    assert_eq!(status(&updated_spec(&alice, question.id())), "granted");
    let (_, _, first) = progress_then_file(&alice, "uname -a");
    assert_eq!(first, real_output("uname", &["-a"]));

    alice.say("kernel");
    let (_, _, second) = progress_then_file(&alice, "uname -a");
    assert_eq!(second, first);

    alice.say("uptime");
    let other = alice.expect_widget(WidgetKind::Permission);
    assert_eq!(other.spec()["authorization"]["resource"], json!("uptime"), "another command needs its own grant");

    agent.stop_within(Duration::from_secs(5));
}
