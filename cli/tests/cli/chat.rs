//! `pacerelle chat` as a process, scripted from stdin, against an in-process relay and an
//! encrypted agent built on the SDK: text, widgets, files each way; and its errors.

use crate::support::{
    AGENT, Agent, PERSON, PERSON_TOKEN, REPORT, pacerelle, relay, run, run_async, scratch, stderr, stdout,
};
use serde_json::Value;
use std::process::Command;

/// The chat as the person, with `--agent` from the environment as a script would set it.
fn chat(url: &str, extra: &[&str]) -> Command {
    let mut command = pacerelle(&["chat", "--wait-after-eof", "0s"]);
    command
        .args(extra)
        .env("PACERELLE_AGENT_ID", AGENT)
        .env("PACERELLE_BASE_URL", url)
        .env("PACERELLE_PERSON_ID", PERSON);
    command.env("PACERELLE_PERSON_TOKEN", PERSON_TOKEN);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_scripted_chat_with_text_widgets_and_files_both_ways() {
    let dir = scratch("chat");
    let relay = relay().await;
    let agent = Agent::start(&relay, &dir.join("store")).await;
    let note = dir.join("note.txt");
    std::fs::write(&note, "hello from a file").unwrap();
    let fetched = dir.join("fetched.txt");
    let script = format!(
        "hello there\n\
         /wait Received: hello there\n\
         //confirm\n\
         /answer #1 true\n\
         /wait You answered true\n\
         //choice\n\
         /cancel #2\n\
         /wait You dismissed\n\
         /send-file {}\n\
         /wait got note.txt 17 bytes: hello from a file\n\
         //file\n\
         /fetch 1 {}\n",
        note.display(),
        fetched.display()
    );
    let output = run_async(chat(&relay.base_url(), &[]), &script).await;
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("conversation "), "{out}");
    for expected in [
        "agent: Received: hello there",
        "agent: You answered true",
        "option ",
        "agent: got note.txt 17 bytes: hello from a file",
        &format!("attachment 1 {} text/plain report.txt", REPORT.len()),
        &format!("fetched 1 {} {}", REPORT.len(), fetched.display()),
    ] {
        assert!(lines.iter().any(|line| line.starts_with(expected)), "{expected:?} missing from:\n{out}");
    }
    let widgets: Vec<&str> = lines.iter().copied().filter(|line| line.starts_with("widget ")).collect();
    assert_eq!(widgets.len(), 2, "{out}");
    assert!(widgets[0].ends_with(" confirm Ship it?") && widgets[1].ends_with(" choice Pick a fruit"), "{out}");
    let choice_id = widgets[1].split(' ').nth(1).unwrap();
    assert!(lines.contains(&format!("option {choice_id} apple Green apple").as_str()), "{out}");
    assert!(lines.contains(&format!("agent: You dismissed {choice_id}").as_str()), "{out}");
    assert!(lines.iter().any(|line| line.starts_with("file-sent ") && line.ends_with(" 17 note.txt")), "{out}");
    assert_eq!(std::fs::read(&fetched).unwrap(), REPORT);
    assert!(!err.contains("warning") && !err.contains("error"), "{err}");
    // Encrypted both ways: no text, answer or file content crossed the relay in the clear.
    for observed in relay.observed() {
        let observed = String::from_utf8_lossy(&observed);
        for secret in ["hello there", "You answered", "hello from a file", "quarterly numbers", "Ship it?"] {
            assert!(!observed.contains(secret), "{secret:?} crossed the relay: {observed}");
        }
    }
    agent.stop().await;
    relay.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_events_and_failed_script_lines() {
    let dir = scratch("chat-json");
    let relay = relay().await;
    let agent = Agent::start(&relay, &dir.join("store")).await;
    let script = "ping\n/wait Received: ping\n/fetch 1 /nonexistent/out\n/send-file /nonexistent/in\n/bogus\n";
    let output = run_async(chat(&relay.base_url(), &["--json", "--timeout", "1s"]), script).await;
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(8), "stdout:\n{out}\nstderr:\n{err}");
    let events: Vec<Value> =
        out.lines().map(|line| serde_json::from_str(line).expect("one JSON object a line")).collect();
    assert_eq!(events[0]["event"], "conversation");
    let sent = events.iter().find(|event| event["event"] == "sent").expect("a sent event");
    let reply = events.iter().find(|event| event["event"] == "message").expect("the reply");
    assert_eq!((reply["text"].as_str(), reply["from"].as_str()), (Some("Received: ping"), Some(AGENT)));
    assert_eq!(reply["encrypted"], true);
    assert_eq!(reply["reply_to_message_id"], sent["message_id"]);
    // Three failed lines, each one error line: the attachment that never came, the file that
    // cannot be read, the unknown command.
    let errors: Vec<&str> = err.lines().filter(|line| line.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 3, "{err}");
    assert!(errors[0].contains("attachment 1 did not arrive"), "{err}");
    assert!(err.lines().last().is_some_and(|line| line == "pacerelle: 3 line(s) of the script failed"), "{err}");
    agent.stop().await;
    relay.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_relay_refused_token_and_unknown_agent_have_their_exit_codes() {
    let relay = relay().await;
    let url = relay.base_url();

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let output = run_async(chat(&nowhere, &[]), "").await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).starts_with("pacerelle: cannot reach the relay at "), "{}", stderr(&output));

    let mut wrong_token = chat(&url, &[]);
    wrong_token.env("PACERELLE_PERSON_TOKEN", "not-the-token");
    let output = run_async(wrong_token, "").await;
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stderr(&output).starts_with("pacerelle: the relay refused the token (HTTP 401)"), "{}", stderr(&output));
    assert!(!stderr(&output).contains("not-the-token"));

    let output = run_async(chat(&url, &["--agent", "nobody"]), "").await;
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    assert!(stderr(&output).contains("(HTTP 404)"), "{}", stderr(&output));
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
    assert!(stdout(&output).is_empty());
    relay.shutdown().await;
}

#[test]
fn a_missing_token_is_bad_usage() {
    let mut command = pacerelle(&["chat", "--agent", AGENT, "--person", PERSON]);
    command.env("PACERELLE_BASE_URL", "http://127.0.0.1:9");
    let output = run(command, "");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--token <TOKEN>"), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_the_input_waits_until_the_agent_read_what_was_sent() {
    let dir = scratch("chat-eof");
    let relay = relay().await;
    let agent = Agent::start(&relay, &dir.join("store")).await;
    // No /wait: the script ends right after its line, before the encrypted session is set up.
    let output = run_async(chat(&relay.base_url(), &["--json"]), "last words\n").await;
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let events: Vec<Value> = out.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let sent = events.iter().find(|event| event["event"] == "sent").expect("a sent event");
    assert!(
        events.iter().any(|event| event["event"] == "read" && event["message_id"] == sent["message_id"]),
        "the agent read it before the chat left: {out}"
    );
    assert!(err.is_empty(), "{err}");
    agent.stop().await;
    relay.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_agent_a_plaintext_message_waits_at_the_relay_and_an_encrypted_one_is_not_sent() {
    let relay = relay().await;
    let output = run_async(chat(&relay.base_url(), &["--plaintext", "--timeout", "1s"]), "anyone?\n").await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stderr(&output).trim_end(),
        "warning: 1 message(s) not read by the agent within 1s (the relay keeps what reached it)"
    );
    assert_eq!(relay.pending_for_agent(AGENT), 1, "the message waits at the relay");

    // The agent never published its prekeys: no session can start, so nothing is sent.
    let output = run_async(chat(&relay.base_url(), &["--timeout", "5s"]), "secret\n").await;
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(8), "stdout:\n{out}\nstderr:\n{}", stderr(&output));
    assert!(out.lines().any(|line| line.starts_with("not-sent ")), "{out}");
    relay.shutdown().await;
}
