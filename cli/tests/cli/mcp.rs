//! `pacerelle mcp` as a process, driven by rmcp's own client over the child's stdio, against an
//! in-process relay and a scripted, end-to-end encrypted person: every tool, the resources, a
//! confirm answered yes, a choice, a form and a date, an ask that times out, one cancelled by
//! the host (the person sees both withdrawn), progress, a file each way; then the logs, and a
//! restart that still knows the conversation.

use crate::support::{AGENT, AGENT_TOKEN, Agent, PERSON, PERSON_TOKEN, pacerelle, relay, run, scratch, stderr, stdout};
use pacerelle_core::attachment::FileMetadata;
use pacerelle_core::human::PersonMessage;
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientRequest, ProgressNotificationParam, ReadResourceRequestParams,
    Request, ResourceContents,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt as _};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;

/// How long any one awaited event may take.
const WAIT: Duration = Duration::from_secs(30);

/// The MCP host: records the progress notifications it receives.
struct Host {
    progress: mpsc::UnboundedSender<ProgressNotificationParam>,
}

impl ClientHandler for Host {
    async fn on_progress(&self, params: ProgressNotificationParam, _context: NotificationContext<RoleClient>) {
        let _ = self.progress.send(params);
    }
}

type Mcp = RunningService<RoleClient, Host>;

/// `pacerelle mcp` for the test agent, its store under `store_root`, logging at debug level.
fn server(url: &str, store_root: &Path) -> tokio::process::Command {
    let mut command = pacerelle(&["mcp"]);
    command
        .env("PACERELLE_AGENT_ID", AGENT)
        .env("PACERELLE_AGENT_TOKEN", AGENT_TOKEN)
        .env("PACERELLE_BASE_URL", url)
        .env("PACERELLE_STORE_ROOT", store_root)
        .env("RUST_LOG", "debug");
    command.into()
}

/// Calls `tool` with `arguments`.
async fn call(mcp: &Mcp, tool: &'static str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else { panic!("arguments are an object") };
    let call = mcp.call_tool(CallToolRequestParams::new(tool).with_arguments(arguments));
    tokio::time::timeout(WAIT * 2, call).await.expect("the tool answers in time").expect("the call succeeds")
}

/// A successful call's structured content.
async fn ok(mcp: &Mcp, tool: &'static str, arguments: Value) -> Value {
    let result = call(mcp, tool, arguments).await;
    assert_eq!(result.is_error, Some(false), "{tool}: {result:?}");
    let content = result.structured_content.expect("structured content");
    // The same JSON as text, for hosts that read only text.
    let text = result.content[0].as_text().expect("a text block").text.clone();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), content);
    content
}

/// A failed call's error kind and message.
async fn fails(mcp: &Mcp, tool: &'static str, arguments: Value) -> (String, String) {
    let result = call(mcp, tool, arguments).await;
    assert_eq!(result.is_error, Some(true), "{tool}: {result:?}");
    let content = result.structured_content.expect("structured content");
    (content["error"].as_str().unwrap().to_owned(), content["message"].as_str().unwrap().to_owned())
}

/// The person's next message that `wanted` accepts (others are skipped), within [`WAIT`].
async fn person_sees(person: &PersonClient, wanted: impl Fn(&PersonMessage) -> bool) -> PersonMessage {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = person.next_message(left).await.expect("the person receives the message in time");
        assert!(message.encrypted, "everything the agent sends is encrypted: {message:?}");
        if wanted(&message) {
            return message;
        }
    }
}

/// The widget the person sees next, of `kind`.
async fn person_sees_widget(person: &PersonClient, kind: &str) -> PersonMessage {
    person_sees(person, |message| message.widget.as_ref().is_some_and(|widget| widget.kind.as_str() == kind)).await
}

/// The update to `widget` the person sees next: its patch.
async fn person_sees_update(person: &PersonClient, widget: &str) -> serde_json::Map<String, Value> {
    let update =
        person_sees(person, |message| message.widget_update.as_ref().is_some_and(|update| update.widget_ref == widget))
            .await;
    update.widget_update.unwrap().patch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_host_reaches_an_encrypted_person_through_every_tool() {
    let dir = scratch("mcp");
    let store_root = dir.join("store");
    let relay = relay().await;
    let (transport, server_stderr) = TokioChildProcess::builder(server(&relay.base_url(), &store_root))
        .stderr(Stdio::piped())
        .spawn()
        .expect("pacerelle mcp starts");
    let mut server_stderr = server_stderr.expect("stderr is piped");
    let logs = tokio::spawn(async move {
        let mut logs = String::new();
        let _ = server_stderr.read_to_string(&mut logs).await;
        logs
    });
    let (progress, mut progress_seen) = mpsc::unbounded_channel();
    let mcp = Host { progress }.serve(transport).await.expect("the MCP handshake");

    // The tools, each with an object schema.
    let tools = mcp.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "ask",
            "progress",
            "read_messages",
            "save_attachment",
            "send_message",
            "verification_code",
            "wait_for_message"
        ]
    );
    for tool in &tools {
        assert_eq!(tool.input_schema.get("type"), Some(&json!("object")), "{}", tool.name);
        assert!(tool.description.as_deref().is_some_and(|text| !text.is_empty()), "{}", tool.name);
    }
    let ask_schema = &tools.iter().find(|tool| tool.name == "ask").unwrap().input_schema;
    assert_eq!(ask_schema["required"], json!(["kind", "title"]));
    let kinds = serde_json::to_string(&ask_schema["$defs"]["AskKind"]).unwrap();
    for kind in ["confirm", "choice", "form", "datetime", "file_picker"] {
        assert!(kinds.contains(&format!("\"{kind}\"")), "{kind} missing from {kinds}");
    }

    // Clear errors before anyone wrote, and for bad arguments.
    assert_eq!(fails(&mcp, "send_message", json!({"text": "hi"})).await.0, "no_conversation_yet");
    let (kind, message) = fails(&mcp, "ask", json!({"kind": "poll", "title": "x"})).await;
    assert_eq!(kind, "bad_arguments");
    assert!(message.contains("unknown variant `poll`"), "{message}");
    let (kind, message) = fails(&mcp, "read_messages", json!({"since": "yesterday"})).await;
    assert!(kind == "bad_arguments" && message.contains("since"), "{message}");
    assert_eq!(
        fails(&mcp, "save_attachment", json!({"message_id": "nope", "path": "/tmp/x"})).await.0,
        "unknown_message"
    );

    // The agent serves once its prekeys are published; then the person writes.
    let deadline = Instant::now() + WAIT;
    while relay.agent_connections(AGENT) == 0 {
        assert!(Instant::now() < deadline, "the agent did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let person = PersonClient::connect(PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url()).encrypted())
        .await
        .expect("the person connects");
    let conversation = person.create_conversation(&[AGENT], false).await.unwrap();
    person.send_text(&conversation, AGENT, "please deploy to staging").unwrap();

    // Reading: wait for it (cursor 0: it may already be here), then nothing new after it.
    let waited = ok(&mcp, "wait_for_message", json!({"since": 0, "timeout_seconds": 30})).await;
    assert_eq!(waited["status"], "message");
    let first = &waited["messages"][0];
    assert_eq!((first["text"].as_str(), first["from"].as_str()), (Some("please deploy to staging"), Some(PERSON)));
    assert_eq!((first["encrypted"].as_bool(), first["conversation_id"].as_str()), (Some(true), Some(&*conversation)));
    let cursor = waited["cursor"].as_u64().unwrap();
    let read = ok(&mcp, "read_messages", json!({"since": cursor})).await;
    assert_eq!((read["messages"].as_array().unwrap().len(), read["cursor"].as_u64()), (0, Some(cursor)));
    assert_eq!(ok(&mcp, "read_messages", json!({})).await["messages"][0]["text"], "please deploy to staging");
    let quiet = ok(&mcp, "wait_for_message", json!({"since": cursor, "timeout_seconds": 0.2})).await;
    assert_eq!(quiet["status"], "timed_out");
    // Each wait told the host how long it had waited, out of its timeout.
    for total in [30.0, 0.2] {
        let heartbeat =
            tokio::time::timeout(WAIT, progress_seen.recv()).await.expect("progress while waiting").unwrap();
        assert_eq!(heartbeat.message.as_deref(), Some("waiting for the person's message"));
        assert_eq!(heartbeat.total, Some(total));
    }

    // Sending: to the person last talked with by default.
    let sent = ok(&mcp, "send_message", json!({"text": "Starting the deploy"})).await;
    assert_eq!((sent["conversation_id"].as_str(), sent["to"].as_str()), (Some(&*conversation), Some(PERSON)));
    let seen = person_sees(&person, |message| message.text == "Starting the deploy").await;
    assert_eq!(seen.id, sent["message_id"].as_str().unwrap());
    let (kind, message) = fails(&mcp, "send_message", json!({"text": "x", "conversation_id": "elsewhere"})).await;
    assert!(kind == "unknown_conversation" && message.contains(&conversation), "{message}");

    // A file to the person, from a path.
    let report = dir.join("report.txt");
    std::fs::write(&report, "all services green\n").unwrap();
    let sent = ok(&mcp, "send_message", json!({"text": "the report", "file_path": report})).await;
    assert_eq!(sent["file"], json!({"name": "report.txt", "mime": "text/plain", "size": 19}));
    let seen = person_sees(&person, |message| !message.attachments.is_empty()).await;
    assert_eq!(seen.text, "the report");
    assert_eq!(person.download_attachment(&seen.attachments[0]).await.unwrap(), b"all services green\n");
    let missing = dir.join("missing.txt");
    assert_eq!(fails(&mcp, "send_message", json!({"file_path": missing})).await.0, "file_unreadable");

    // Progress: shown, then updated in place.
    let shown = ok(&mcp, "progress", json!({"title": "Deploying", "value": 10})).await;
    let widget_id = shown["widget_id"].as_str().unwrap().to_owned();
    let widget = person_sees_widget(&person, "progress").await.widget.unwrap();
    assert_eq!((widget.id.as_str(), &widget.spec["value"]), (widget_id.as_str(), &json!(10.0)));
    let updated =
        ok(&mcp, "progress", json!({"widget_id": widget_id, "title": "Deploying", "value": 100, "body": "done"})).await;
    assert_eq!(updated["updated"], true);
    let patch = person_sees_update(&person, &widget_id).await;
    assert_eq!((&patch["spec"]["value"], &patch["spec"]["body"]), (&json!(100.0), &json!("done")));
    assert_eq!(
        fails(&mcp, "progress", json!({"title": "x", "value": 5, "widget_id": "nope"})).await.0,
        "unknown_progress"
    );

    // A confirm answered yes: the answer is the tool's result.
    let host = mcp.peer().clone();
    let asked = tokio::spawn(async move {
        let arguments = json!({"kind": "confirm", "title": "Deploy to production?", "danger": true});
        let Value::Object(arguments) = arguments else { unreachable!() };
        host.call_tool(CallToolRequestParams::new("ask").with_arguments(arguments)).await
    });
    let confirm = person_sees_widget(&person, "confirm").await.widget.unwrap();
    assert_eq!((&confirm.spec["title"], &confirm.spec["danger"]), (&json!("Deploy to production?"), &json!(true)));
    assert!(confirm.expires_at.is_some(), "the widget says until when it waits");
    person.answer_widget(&conversation, AGENT, &confirm.id, json!(true)).unwrap();
    let answered = asked.await.unwrap().unwrap().structured_content.unwrap();
    assert_eq!((&answered["status"], &answered["value"]), (&json!("answered"), &json!(true)));
    assert_eq!(answered["widget_id"], json!(confirm.id));
    // The answer was the ask's, not a new message.
    assert!(ok(&mcp, "read_messages", json!({"since": cursor})).await["messages"].as_array().unwrap().is_empty());

    // A choice, a form and a date, each answered.
    for (arguments, kind, answer) in [
        (
            json!({"kind": "choice", "title": "Which region?", "options": [{"id": "eu", "label": "Europe"}, {"id": "us", "label": "US"}]}),
            "choice",
            json!("eu"),
        ),
        (
            json!({"kind": "form", "title": "Release notes", "fields": [{"name": "summary", "label": "Summary", "required": true}]}),
            "form",
            json!({"summary": "faster"}),
        ),
        (json!({"kind": "datetime", "title": "When?", "mode": "date"}), "datetime", json!("2026-12-24")),
    ] {
        let host = mcp.peer().clone();
        let Value::Object(arguments) = arguments else { unreachable!() };
        let asked =
            tokio::spawn(
                async move { host.call_tool(CallToolRequestParams::new("ask").with_arguments(arguments)).await },
            );
        let widget = person_sees_widget(&person, kind).await.widget.unwrap();
        if kind == "choice" {
            assert_eq!(widget.spec["options"][1], json!({"id": "us", "label": "US"}));
        }
        person.answer_widget(&conversation, AGENT, &widget.id, answer.clone()).unwrap();
        let answered = asked.await.unwrap().unwrap().structured_content.unwrap();
        assert_eq!((&answered["status"], &answered["value"]), (&json!("answered"), &answer), "{kind}");
    }

    // An ask nobody answers times out, and the person sees it expire.
    let host = mcp.peer().clone();
    let asked = tokio::spawn(async move {
        let arguments = json!({"kind": "confirm", "title": "Delete the old logs?", "timeout_seconds": 1});
        let Value::Object(arguments) = arguments else { unreachable!() };
        host.call_tool(CallToolRequestParams::new("ask").with_arguments(arguments)).await
    });
    let unanswered = person_sees_widget(&person, "confirm").await.widget.unwrap();
    let patch = person_sees_update(&person, &unanswered.id).await;
    assert_eq!(patch["spec"]["status"], "expired");
    assert!(patch["expires_at"].is_string());
    let timed_out = asked.await.unwrap().unwrap().structured_content.unwrap();
    assert_eq!((&timed_out["status"], &timed_out["widget_id"]), (&json!("timed_out"), &json!(unanswered.id)));

    // The host cancels an ask: the person sees it withdrawn. Progress came while it waited.
    let arguments = json!({"kind": "confirm", "title": "Restart the database?"});
    let Value::Object(arguments) = arguments else { unreachable!() };
    let request =
        ClientRequest::CallToolRequest(Request::new(CallToolRequestParams::new("ask").with_arguments(arguments)));
    let handle = mcp.send_cancellable_request(request, PeerRequestOptions::no_options()).await.unwrap();
    let token = handle.progress_token.clone();
    let cancelled = person_sees_widget(&person, "confirm").await.widget.unwrap();
    let progress = tokio::time::timeout(WAIT, async {
        loop {
            let progress = progress_seen.recv().await.expect("the host is running");
            if progress.progress_token == token {
                return progress;
            }
        }
    })
    .await
    .expect("a progress notification while the ask waits");
    assert_eq!((progress.total, progress.message.as_deref()), (Some(300.0), Some("waiting for the person's answer")));
    handle.cancel(Some("the user changed their mind".into())).await.unwrap();
    let patch = person_sees_update(&person, &cancelled.id).await;
    assert_eq!(
        (&patch["spec"]["status"], &patch["spec"]["title"]),
        (&json!("withdrawn"), &json!("Restart the database?"))
    );
    // The person answers too late: the server takes it as an ordinary message.
    person.answer_widget(&conversation, AGENT, &cancelled.id, json!(true)).unwrap();
    let late = ok(&mcp, "wait_for_message", json!({"since": cursor, "timeout_seconds": 30})).await;
    assert_eq!(late["messages"][0]["widget_response"]["widget_id"], json!(cancelled.id));
    let cursor = late["cursor"].as_u64().unwrap();

    // A file picker, then the person's file arrives as a message and is saved.
    let host = mcp.peer().clone();
    let asked = tokio::spawn(async move {
        let arguments = json!({"kind": "file_picker", "title": "Send me the crash log", "accept": ["text/plain"]});
        let Value::Object(arguments) = arguments else { unreachable!() };
        host.call_tool(CallToolRequestParams::new("ask").with_arguments(arguments)).await
    });
    let picker = person_sees_widget(&person, "file-picker").await.widget.unwrap();
    assert_eq!(picker.spec["accept"], json!(["text/plain"]));
    person.answer_widget(&conversation, AGENT, &picker.id, json!(["crash.log"])).unwrap();
    assert_eq!(asked.await.unwrap().unwrap().structured_content.unwrap()["status"], "answered");
    let log = b"panic at line 42\n".to_vec();
    let metadata = FileMetadata { name: "crash.log".into(), mime: "text/plain".into(), ..FileMetadata::default() };
    let file_message = person.send_file(&conversation, AGENT, "here it is", &log, metadata).await.unwrap();
    let arrived = ok(&mcp, "wait_for_message", json!({"since": cursor, "timeout_seconds": 30})).await;
    let arrived = &arrived["messages"][0];
    assert_eq!(arrived["message_id"], json!(file_message));
    assert_eq!(arrived["attachments"], json!([{"index": 0, "name": "crash.log", "mime": "text/plain", "size": 17}]));
    let saved_path = dir.join("saved-crash.log");
    let saved = ok(&mcp, "save_attachment", json!({"message_id": file_message, "path": saved_path})).await;
    assert_eq!(saved["size"], 17);
    assert_eq!(std::fs::read(&saved_path).unwrap(), log);
    let again = json!({"message_id": file_message, "path": saved_path});
    assert_eq!(fails(&mcp, "save_attachment", again).await.0, "file_unwritable", "no overwrite unless asked");
    let beyond = json!({"message_id": file_message, "index": 1, "path": dir.join("x")});
    assert_eq!(fails(&mcp, "save_attachment", beyond).await.0, "unknown_attachment");

    // Resources: the conversation list and the conversation's recent messages.
    let resources = mcp.list_all_resources().await.unwrap();
    let uris: Vec<&str> = resources.iter().map(|resource| resource.uri.as_str()).collect();
    let conversation_uri = format!("pacerelle://conversations/{conversation}");
    assert_eq!(uris, ["pacerelle://conversations", conversation_uri.as_str()]);
    assert_eq!(mcp.list_all_resource_templates().await.unwrap().len(), 1);
    let listed = read_resource(&mcp, "pacerelle://conversations").await;
    assert_eq!(listed["conversations"][0]["conversation_id"], json!(conversation));
    assert_eq!(listed["conversations"][0]["to"], PERSON);
    let recent = read_resource(&mcp, &conversation_uri).await;
    let texts: Vec<&str> =
        recent["recent"].as_array().unwrap().iter().filter_map(|entry| entry["text"].as_str()).collect();
    for expected in
        ["please deploy to staging", "Starting the deploy", "the report", "Deploy to production?", "here it is"]
    {
        assert!(texts.contains(&expected), "{expected:?} not in {texts:?}");
    }
    let missing = mcp.read_resource(ReadResourceRequestParams::new("pacerelle://conversations/nope")).await;
    assert!(missing.is_err(), "an unknown conversation is not found");

    // The verification code: the same as the store's, once the server has stopped.
    let code = ok(&mcp, "verification_code", json!({})).await;
    assert_eq!((&code["agent_id"], &code["encrypted"]), (&json!(AGENT), &json!(true)));
    let code = code["verification_code"].as_str().unwrap().to_owned();
    mcp.cancel().await.unwrap();
    let logs = tokio::time::timeout(WAIT, logs).await.expect("the server exits when stdin closes").unwrap();
    let verify = pacerelle(&["verify", "--store"]).arg(&store_root).args(["--agent", AGENT]).output().unwrap();
    assert_eq!(verify.status.code(), Some(0), "the server let go of its store: {}", stderr(&verify));
    assert!(stdout(&verify).contains(&code), "{} vs {code}", stdout(&verify));

    // Restarted on its store, the server still knows whom it last talked with.
    let (transport, _) = TokioChildProcess::builder(server(&relay.base_url(), &store_root))
        .stderr(Stdio::null())
        .spawn()
        .expect("pacerelle mcp starts again");
    let (progress, _progress_seen) = mpsc::unbounded_channel();
    let mcp = Host { progress }.serve(transport).await.expect("the MCP handshake");
    let sent = ok(&mcp, "send_message", json!({"text": "back again"})).await;
    assert_eq!(sent["conversation_id"], json!(conversation));
    person_sees(&person, |message| message.text == "back again").await;
    let code_again = ok(&mcp, "verification_code", json!({})).await;
    assert_eq!(code_again["verification_code"], json!(code), "the same identity after a restart");
    mcp.cancel().await.unwrap();

    // Stderr held logs (at debug level) but nothing of a message or a file.
    assert!(logs.contains("ask sent") && logs.contains("message kept"), "{logs}");
    for secret in [
        "please deploy to staging",
        "Starting the deploy",
        "all services green",
        "Deploy to production?",
        "Release notes",
        "faster",
        "2026-12-24",
        "panic at line 42",
        "here it is",
        AGENT_TOKEN,
    ] {
        assert!(!logs.contains(secret), "{secret:?} reached the logs:\n{logs}");
    }
    // And nothing crossed the relay in the clear.
    for observed in relay.observed() {
        let observed = String::from_utf8_lossy(&observed);
        for secret in ["please deploy", "Starting the deploy", "all services green", "panic at line 42", "Deploying"] {
            assert!(!observed.contains(secret), "{secret:?} crossed the relay: {observed}");
        }
    }
    person.close().await;
    relay.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

/// A resource's JSON.
async fn read_resource(mcp: &Mcp, uri: &str) -> Value {
    let read = mcp.read_resource(ReadResourceRequestParams::new(uri)).await.unwrap();
    let ResourceContents::TextResourceContents { text, mime_type, .. } = &read.contents[0] else { panic!("text") };
    assert_eq!(mime_type.as_deref(), Some("application/json"));
    serde_json::from_str(text).unwrap()
}

#[test]
fn help_lists_the_environment_and_the_tools() {
    let output = run(pacerelle(&["mcp", "--help"]), "");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let help = stdout(&output);
    assert!(help.contains("Usage: pacerelle mcp [OPTIONS]"), "{help}");
    for expected in ["PACERELLE_AGENT_TOKEN", "send_message", "wait_for_message", "verification_code", "Exit codes:"] {
        assert!(help.contains(expected), "{expected} missing: {help}");
    }
}

#[test]
fn missing_configuration_is_bad_usage_and_stdout_stays_empty() {
    let mut command = pacerelle(&["mcp"]);
    command.env("PACERELLE_AGENT_ID", AGENT);
    let output = run(command, "");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(stderr(&output).trim_end(), "pacerelle: environment variable PACERELLE_AGENT_TOKEN is not set");
    assert!(stdout(&output).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_in_use_by_a_running_agent_exits_6() {
    let dir = scratch("mcp-in-use");
    let relay = relay().await;
    let running = Agent::start(&relay, &dir.join("store")).await;
    let mut command = pacerelle(&["mcp"]);
    command
        .env("PACERELLE_AGENT_ID", AGENT)
        .env("PACERELLE_AGENT_TOKEN", AGENT_TOKEN)
        .env("PACERELLE_BASE_URL", relay.base_url())
        .env("PACERELLE_STORE_ROOT", dir.join("store"));
    let output = tokio::task::spawn_blocking(move || run(command, "")).await.unwrap();
    assert_eq!(output.status.code(), Some(6), "{}", stderr(&output));
    assert!(stderr(&output).contains("in use by a running agent"), "{}", stderr(&output));
    assert!(stdout(&output).is_empty());
    running.stop().await;
    relay.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_ends_the_server_with_its_exit_code() {
    let dir = scratch("mcp-refused");
    let relay = relay().await;
    let mut command = pacerelle(&["mcp"]);
    command
        .env("PACERELLE_AGENT_ID", AGENT)
        .env("PACERELLE_AGENT_TOKEN", "not-the-token")
        .env("PACERELLE_BASE_URL", relay.base_url())
        .env("PACERELLE_STORE_ROOT", dir.join("store"));
    // The host never speaks: the refusal alone ends the server.
    let mut command = tokio::process::Command::from(command);
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let _open_stdin = child.stdin.take();
    let output = tokio::time::timeout(WAIT, child.wait_with_output()).await.expect("the server ends").unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stderr(&output).contains("the relay refused the token (HTTP 401)"), "{}", stderr(&output));
    assert!(!stderr(&output).contains("not-the-token"));
    assert!(stdout(&output).is_empty(), "stdout is MCP's only");
    relay.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}
