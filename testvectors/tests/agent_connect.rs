//! Agent Connect, ours against the official SDK's (`begin_agent_connect`,
//! `exchange_agent_connect_code`, `request_agent_runtime_token`): both run the whole flow
//! against our relay, which records every request as it arrived, and the requests must be the
//! same: method, path, the headers that matter (authorization, content type and length), body
//! encoding and fields byte for byte once the random values are set aside, and those random
//! values of the same shape (verifier length and alphabet, state length, challenge =
//! base64url(sha256(verifier)) without padding).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pacerelle_core::connect::ConnectApp;
use pacerelle_relay::{BackgroundRelay, ConnectClient, RecordedRequest, RelayConfig, RelayHandle};
use pacerelle_runtime_support::connect::AgentConnect;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const OWNER: &str = "owner";
const CLIENT_ID: &str = "conformance-app";
const CONNECT_KEY: &str = "ck_conformance_key";
/// A space, `&`, `=`, `?` and `~`: what the form encoding must treat as Python does.
const REDIRECT_URI: &str = "https://app.example/callback?from=rust sdk&x=1~2";
/// Non-ASCII and quotes: what the JSON must escape as Python's `json.dumps` does.
const AGENT_NAME: &str = "Assistant é \"Ω\"";
const AGENT_DESCRIPTION: &str = "Tries both SDKs 🙂";
const WAIT: Duration = Duration::from_secs(60);

/// The official functions in a child process, killed (by its own pid) when dropped.
struct Official {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Official {
    fn start(base_url: &str) -> Self {
        let script = pacerelle_conformance::vectors_dir().join("oracle").join("agent_connect.py");
        let mut child = pacerelle_conformance::python()
            .arg(script)
            .args(["--base-url", base_url, "--connect-key", CONNECT_KEY, "--client-id", CLIENT_ID])
            .args(["--redirect-uri", REDIRECT_URI, "--agent-name", AGENT_NAME])
            .args(["--agent-description", AGENT_DESCRIPTION])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the official functions");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = pacerelle_conformance::read_lines(stdout);
        Official { child, stdin, lines }
    }

    /// The next JSON line; an `{"error": ...}` fails the test with the official SDK's reason.
    fn next(&self, what: &str) -> Value {
        let line = self.lines.recv_timeout(WAIT).unwrap_or_else(|_| panic!("the official SDK's {what}"));
        let value: Value = serde_json::from_str(&line).expect("a JSON line");
        assert!(value.get("error").is_none(), "the official SDK failed at {what}: {value}");
        value
    }

    fn send_code(&mut self, code: &str) {
        writeln!(self.stdin, "{code}").expect("the code is written");
        self.stdin.flush().expect("flushed");
    }
}

impl Drop for Official {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `name` in `location`'s query, decoded.
fn query_value(location: &str, name: &str) -> String {
    let query = location.rsplit_once('?').expect("a query").1;
    let value = query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{name} in {location}"));
    // Codes and states are URL-safe: nothing to decode but what we would have encoded.
    assert!(value.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte)), "{value}");
    value.to_owned()
}

/// The owner approves the pending request `request_id`; returns the code and the state.
fn approve(relay: &RelayHandle, request_id: &str) -> (String, String) {
    let location = relay.approve_agent_connect(request_id).expect("the request is pending");
    (query_value(&location, "code"), query_value(&location, "state"))
}

fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Checks a random value's shape: `len` characters of the base64url alphabet, no padding.
fn assert_token_urlsafe(value: &str, len: usize, what: &str) {
    assert_eq!(value.len(), len, "{what}: {value}");
    assert!(value.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'), "{what}: {value}");
}

/// `body` with each of `secrets` replaced by a placeholder, so that two bodies that differ
/// only in their random values compare equal byte for byte.
fn masked(body: &[u8], secrets: &[(&str, &str)]) -> String {
    let mut text = String::from_utf8(body.to_vec()).expect("a UTF-8 body");
    for (value, placeholder) in secrets {
        assert!(text.contains(value), "{placeholder} in {text}");
        text = text.replace(value, placeholder);
    }
    text
}

/// The headers a server reads, and that must agree: the credential's scheme, the content type
/// and length. (`User-Agent` names each SDK; the transport's own headers differ.)
fn assert_same_headers(official: &RecordedRequest, ours: &RecordedRequest, bearers: (Option<&str>, Option<&str>)) {
    let what = &official.path;
    assert_eq!(
        official.header("authorization"),
        bearers.0.map(|bearer| format!("Bearer {bearer}")).as_deref(),
        "{what}"
    );
    assert_eq!(ours.header("authorization"), bearers.1.map(|bearer| format!("Bearer {bearer}")).as_deref(), "{what}");
    assert_eq!(official.header("content-type"), ours.header("content-type"), "{what}: content type");
    let length = |request: &RecordedRequest| request.header("content-length").map(str::to_owned);
    assert_eq!(length(official), Some(official.body.len().to_string()), "{what}: official length");
    assert_eq!(length(ours), Some(ours.body.len().to_string()), "{what}: our length");
    assert!(official.header("user-agent").is_some_and(|agent| agent.starts_with("pacerelle-python-sdk/")));
    assert!(ours.header("user-agent").is_some_and(|agent| agent.starts_with("pacerelle-rust-sdk/")));
}

/// The form's pairs, in order (values percent-decoded only as far as the check needs: names).
fn form_names(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body).split('&').map(|pair| pair.split('=').next().unwrap_or_default().to_owned()).collect()
}

#[test]
fn our_agent_connect_requests_are_the_official_ones() {
    let client = ConnectClient::new(CLIENT_ID, CONNECT_KEY, REDIRECT_URI, OWNER).manual_approval();
    let relay =
        BackgroundRelay::start(RelayConfig::loopback_ephemeral().person(OWNER, "owner-token").connect_client(client))
            .expect("the relay starts");
    let handle = relay.handle();
    let base_url = relay.base_url();

    // The official SDK's flow.
    let mut official = Official::start(&base_url);
    let official_start = official.next("begin_agent_connect");
    let official_verifier = official_start["code_verifier"].as_str().expect("a verifier").to_owned();
    let official_state = official_start["state"].as_str().expect("a state").to_owned();
    let (official_code, state) = approve(handle, official_start["request_id"].as_str().expect("an id"));
    assert_eq!(state, official_state);
    official.send_code(&official_code);
    let official_installation = official.next("exchange_agent_connect_code");
    let official_runtime = official.next("request_agent_runtime_token");
    let official_installation_token = official_installation["installation_token"].as_str().expect("a token").to_owned();
    assert_eq!(official_runtime["agent_id"], official_installation["agent_id"]);
    let recorded_official = handle.connect_requests();
    assert_eq!(recorded_official.len(), 3, "the official SDK's three requests");

    // Ours, on the same relay.
    let connect = AgentConnect::new(&base_url);
    let app = ConnectApp::new(CLIENT_ID, REDIRECT_URI, AGENT_NAME).description(AGENT_DESCRIPTION);
    let start = connect.begin(CONNECT_KEY, &app).expect("our begin");
    let (code, state) = approve(handle, &start.request_id);
    start.check_state(&state).expect("the state comes back");
    let installation = connect.exchange_code(&start.exchange(&app, &code)).expect("our exchange");
    let runtime = connect.request_runtime_token(installation.installation_token()).expect("our runtime token");
    assert_eq!(runtime.agent_id, installation.agent_id);
    let recorded = handle.connect_requests();
    assert_eq!(recorded.len(), 6, "our three requests");
    let ours = &recorded[3..];

    // Same calls, in the same order.
    for (official, ours) in recorded_official.iter().zip(ours) {
        assert_eq!((official.method.as_str(), official.path.as_str()), (ours.method.as_str(), ours.path.as_str()));
    }
    let expected_paths = ["/agent-connect/requests", "/agent-connect/token", "/agent-connect/runtime-token"];
    assert_eq!(ours.iter().map(|request| request.path.as_str()).collect::<Vec<_>>(), expected_paths);
    assert!(ours.iter().all(|request| request.method == "POST"));

    // 1. The start: JSON, the same bytes but for the state and challenge, which are shaped alike.
    let (official_begin, our_begin) = (&recorded_official[0], &ours[0]);
    assert_same_headers(official_begin, our_begin, (Some(CONNECT_KEY), Some(CONNECT_KEY)));
    assert_eq!(our_begin.header("content-type"), Some("application/json"));
    assert_token_urlsafe(&official_verifier, 86, "official verifier");
    assert_token_urlsafe(start.code_verifier(), 86, "our verifier");
    assert_token_urlsafe(&official_state, 43, "official state");
    assert_token_urlsafe(&start.state, 43, "our state");
    let official_body: Value = serde_json::from_slice(&official_begin.body).expect("JSON");
    let our_body: Value = serde_json::from_slice(&our_begin.body).expect("JSON");
    assert_eq!(official_body["code_challenge"], challenge_of(&official_verifier).as_str());
    assert_eq!(our_body["code_challenge"], challenge_of(start.code_verifier()).as_str());
    assert_eq!(
        masked(
            &official_begin.body,
            &[(&official_state, "<state>"), (&challenge_of(&official_verifier), "<challenge>")]
        ),
        masked(&our_begin.body, &[(&start.state, "<state>"), (&challenge_of(start.code_verifier()), "<challenge>")]),
        "the start bodies, byte for byte"
    );
    assert_eq!(our_body["agent_name"], AGENT_NAME);

    // 2. The exchange: a form, no credential, the same bytes but for code and verifier.
    let (official_token, our_token) = (&recorded_official[1], &ours[1]);
    assert_same_headers(official_token, our_token, (None, None));
    assert_eq!(our_token.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(form_names(&our_token.body), ["grant_type", "client_id", "redirect_uri", "code", "code_verifier"]);
    assert_eq!(
        masked(&official_token.body, &[(&official_code, "<code>"), (&official_verifier, "<verifier>")]),
        masked(&our_token.body, &[(&code, "<code>"), (start.code_verifier(), "<verifier>")]),
        "the exchange forms, byte for byte"
    );

    // 3. The runtime token: an empty body, the installation token as bearer.
    let (official_runtime_request, our_runtime_request) = (&recorded_official[2], &ours[2]);
    assert_same_headers(
        official_runtime_request,
        our_runtime_request,
        (Some(&official_installation_token), Some(installation.installation_token())),
    );
    assert!(official_runtime_request.body.is_empty() && our_runtime_request.body.is_empty());

    // The answers read alike: what the official dataclasses hold, our types hold.
    assert_eq!(official_installation["owner_id"], installation.owner_id.as_str());
    assert_eq!(official_installation["scope"], installation.scope.as_str());
    assert_eq!(official_installation["token_type"], installation.token_type.as_str());
    assert_eq!(official_runtime["expires_in"], runtime.expires_in);
    assert_eq!(official_start["expires_in"], start.expires_in);
}
