//! `pacerelle relay` as a process: the URL it prints answers, with the identities it was given
//! or created, from flags or a file; and its errors.

use crate::support::{pacerelle, run, scratch, stderr};
use pacerelle_core::wire::http::{HttpMethod, HttpRequest, RequestId};
use pacerelle_runtime_support::HttpExecutor;
use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};

/// A running relay process, killed when dropped (also when an assertion fails).
struct Running {
    child: Child,
    /// The `.env` lines it printed, up to and including `PACERELLE_BASE_URL`.
    printed: HashMap<String, String>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = pacerelle(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("relay starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut printed = HashMap::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("stdout is text");
            let (name, value) = line.split_once('=').unwrap_or_else(|| panic!("not an .env line: {line:?}"));
            printed.insert(name.to_owned(), value.to_owned());
            if name == "PACERELLE_BASE_URL" {
                break;
            }
        }
        assert!(printed.contains_key("PACERELLE_BASE_URL"), "no URL printed: {printed:?}");
        Running { child, printed }
    }

    fn url(&self) -> &str {
        &self.printed["PACERELLE_BASE_URL"]
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `POST /person/conversations` with `agent` as `token`: the status.
fn open_conversation(url: &str, token: &str, agent: &str) -> u16 {
    let request = HttpRequest {
        id: RequestId(1),
        method: HttpMethod::Post,
        path: "/person/conversations".into(),
        content_type: Some("application/json"),
        body: serde_json::to_vec(&serde_json::json!({"members": [agent]})).unwrap(),
    };
    HttpExecutor::new(url, token).execute(&request).expect("the relay answers").status
}

#[test]
fn relay_prints_a_url_that_answers_with_the_identities_it_created() {
    let relay = Running::start(&["relay", "--listen", "127.0.0.1:0"]);
    assert!(relay.url().starts_with("http://127.0.0.1:"), "{}", relay.url());
    let (agent, person_token) = (&relay.printed["PACERELLE_AGENT_ID"], &relay.printed["PACERELLE_PERSON_TOKEN"]);
    assert!(relay.printed.contains_key("PACERELLE_AGENT_TOKEN") && relay.printed.contains_key("PACERELLE_PERSON_ID"));
    assert_eq!(open_conversation(relay.url(), person_token, agent), 200);
    assert_eq!(open_conversation(relay.url(), "wrong-token", agent), 401);
}

#[test]
fn relay_takes_identities_from_flags_and_a_file() {
    let dir = scratch("relay-file");
    let file = dir.join("relay.json");
    std::fs::write(&file, r#"{"listen": "127.0.0.1:0", "agents": {"filed": "t1"}, "persons": {"bob": "bob-token"}}"#)
        .unwrap();
    let relay = Running::start(&["relay", "--config", file.to_str().unwrap(), "--agent", "flagged=t2"]);
    assert_eq!(relay.printed.len(), 1, "nothing created: {:?}", relay.printed);
    assert_eq!(open_conversation(relay.url(), "bob-token", "filed"), 200);
    assert_eq!(open_conversation(relay.url(), "bob-token", "flagged"), 200);
    assert_eq!(open_conversation(relay.url(), "bob-token", "nobody"), 404);
    drop(relay);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn relay_errors_have_their_exit_codes() {
    let dir = scratch("relay-errors");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"agents": {"a": "secret-token"}, "listen": 8080}"#).unwrap();
    let output = run(pacerelle(&["relay", "--config", bad.to_str().unwrap()]), "");
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    assert!(stderr(&output).starts_with("pacerelle: configuration file "), "{}", stderr(&output));
    assert!(!stderr(&output).contains("secret-token"));

    let missing = dir.join("missing.json");
    let output = run(pacerelle(&["relay", "--config", missing.to_str().unwrap()]), "");
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = run(pacerelle(&["relay", "--listen", &address]), "");
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    assert!(stderr(&output).contains("cannot listen on"), "{}", stderr(&output));
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
    std::fs::remove_dir_all(&dir).ok();
}
