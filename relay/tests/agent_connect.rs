//! Agent Connect on the relay over real HTTP on loopback: what it accepts, everything it
//! refuses (as a real server would), the scripted owner approval, and the runtime token it then
//! accepts on `/ws/agent`.

use pacerelle_core::connect::challenge_of;
use pacerelle_relay::{ConnectClient, ConnectTtls, Relay, RelayConfig, RelayHandle};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const OWNER: &str = "owner";
const CLIENT: &str = "app-1";
const KEY: &str = "ck_app_1";
const OTHER_CLIENT: &str = "app-2";
const OTHER_KEY: &str = "ck_app_2";
const REDIRECT: &str = "https://app.example/callback";
/// RFC 7636 appendix B's verifier.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

async fn relay_with(config: RelayConfig) -> RelayHandle {
    let config = config
        .person(OWNER, "owner-token")
        .connect_client(ConnectClient::new(CLIENT, KEY, REDIRECT, OWNER))
        .connect_client(
            ConnectClient::new(OTHER_CLIENT, OTHER_KEY, "https://other.example/cb", OWNER).manual_approval(),
        );
    Relay::spawn(config).await.expect("the relay starts")
}

async fn relay() -> RelayHandle {
    relay_with(RelayConfig::loopback_ephemeral()).await
}

/// An answer: status, headers (lower-case names), body as JSON (or a string).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_else(|| panic!("a JSON error: {self:?}"))
    }
}

/// One HTTP/1.1 request, written by hand so that nothing (redirects, headers) is added or
/// followed.
async fn raw(relay: &RelayHandle, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(relay.addr()).await.expect("the relay accepts");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", relay.addr());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).await.expect("written");
    stream.write_all(body).await.expect("written");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let text = String::from_utf8(answer).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.lines();
    let status =
        lines.next().and_then(|line| line.split(' ').nth(1)).and_then(|code| code.parse().ok()).expect("status");
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
        .collect();
    let body = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
    Answer { status, headers, body }
}

fn start_body(client_id: &str, redirect_uri: &str, verifier: &str) -> Value {
    json!({
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": "state-1",
        "code_challenge": challenge_of(verifier),
        "code_challenge_method": "S256",
        "agent_name": "Helper",
        "agent_description": "",
        "scope": "myagents:agent-connect",
    })
}

async fn start(relay: &RelayHandle, key: &str, body: &Value) -> Answer {
    let bearer = format!("Bearer {key}");
    let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    raw(relay, "POST", "/agent-connect/requests", &headers, body.to_string().as_bytes()).await
}

/// Starts a request for `CLIENT` and has it approved by opening its authorization URL; returns
/// the code.
async fn approved_code(relay: &RelayHandle, verifier: &str) -> String {
    let started = start(relay, KEY, &start_body(CLIENT, REDIRECT, verifier)).await;
    assert_eq!(started.status, 200, "{started:?}");
    let url = started.body["authorization_url"].as_str().expect("a URL");
    let path = url.strip_prefix(&relay.base_url()).expect("on the relay");
    let approval = raw(relay, "GET", path, &[], b"").await;
    assert_eq!(approval.status, 303, "{approval:?}");
    let location = approval.header("location").expect("a redirect");
    let query = location.strip_prefix(&format!("{REDIRECT}?")).expect("back to the app");
    let mut code = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("code", value)) => code = Some(value.to_owned()),
            Some(("state", value)) => assert_eq!(value, "state-1"),
            _ => panic!("unexpected {pair}"),
        }
    }
    code.expect("a code")
}

fn form(pairs: &[(&str, &str)]) -> String {
    pacerelle_core::connect::form_urlencode(pairs.iter().copied())
}

async fn exchange(relay: &RelayHandle, pairs: &[(&str, &str)]) -> Answer {
    let headers = [("Content-Type", "application/x-www-form-urlencoded")];
    raw(relay, "POST", "/agent-connect/token", &headers, form(pairs).as_bytes()).await
}

fn good_exchange<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("client_id", CLIENT),
        ("redirect_uri", REDIRECT),
        ("code", code),
        ("code_verifier", verifier),
    ]
}

async fn runtime_token(relay: &RelayHandle, installation_token: &str) -> Answer {
    let bearer = format!("Bearer {installation_token}");
    raw(relay, "POST", "/agent-connect/runtime-token", &[("Authorization", bearer.as_str())], b"").await
}

async fn socket_accepted(relay: &RelayHandle, token: &str) -> bool {
    let url = format!("{}/ws/agent?token={token}", relay.base_url().replacen("http", "ws", 1));
    tokio_tungstenite::connect_async(url).await.is_ok()
}

#[tokio::test]
async fn the_whole_flow_issues_a_runtime_token_the_socket_accepts() {
    let relay = relay().await;
    let started = start(&relay, KEY, &start_body(CLIENT, REDIRECT, VERIFIER)).await;
    assert_eq!(started.status, 200);
    for field in ["request_id", "authorization_url", "expires_at"] {
        assert!(started.body[field].as_str().is_some_and(|value| !value.is_empty()), "{field}: {started:?}");
    }
    assert_eq!(started.body["expires_in"], 600);
    let expires_at = started.body["expires_at"].as_str().expect("a date");
    assert!(expires_at.len() == 20 && expires_at.ends_with('Z') && expires_at.as_bytes()[10] == b'T', "{expires_at}");

    let code = approved_code(&relay, VERIFIER).await;
    let installed = exchange(&relay, &good_exchange(&code, VERIFIER)).await;
    assert_eq!(installed.status, 200, "{installed:?}");
    assert_eq!(installed.body["token_type"], "Bearer");
    assert_eq!(installed.body["owner_id"], OWNER);
    assert_eq!(installed.body["scope"], "myagents:agent-connect");
    let agent_id = installed.body["agent_id"].as_str().expect("an agent").to_owned();
    let installation_token = installed.body["installation_token"].as_str().expect("a token").to_owned();
    // Installed, but not reachable with the installation token itself.
    assert!(!socket_accepted(&relay, &installation_token).await);

    let runtime = runtime_token(&relay, &installation_token).await;
    assert_eq!(runtime.status, 200, "{runtime:?}");
    assert_eq!(runtime.body["agent_id"], agent_id.as_str());
    assert_eq!(runtime.body["conversation_id"], installed.body["conversation_id"]);
    assert_eq!(runtime.body["expires_in"], 3600);
    let agent_token = runtime.body["agent_token"].as_str().expect("a token").to_owned();
    assert!(socket_accepted(&relay, &agent_token).await);

    // A new runtime token replaces the previous one.
    let renewed = runtime_token(&relay, &installation_token).await;
    let renewed_token = renewed.body["agent_token"].as_str().expect("a token");
    assert!(socket_accepted(&relay, renewed_token).await);
    assert!(!socket_accepted(&relay, &agent_token).await);

    assert_eq!(runtime_token(&relay, "not-an-installation").await.status, 401);
    assert_eq!(raw(&relay, "POST", "/agent-connect/runtime-token", &[], b"").await.status, 401);
    relay.shutdown().await;
}

#[tokio::test]
async fn start_requests_are_checked() {
    let relay = relay().await;
    let good = start_body(CLIENT, REDIRECT, VERIFIER);
    assert_eq!(start(&relay, "wrong-key", &good).await.status, 401);
    assert_eq!(raw(&relay, "POST", "/agent-connect/requests", &[], good.to_string().as_bytes()).await.status, 401);
    let other_clients_key = start(&relay, OTHER_KEY, &good).await;
    assert_eq!(other_clients_key.status, 403, "{other_clients_key:?}");

    let refused = |change: fn(&mut Value)| {
        let mut body = good.clone();
        change(&mut body);
        body
    };
    for (body, reason) in [
        (refused(|body| body["redirect_uri"] = json!("https://evil.example/cb")), "redirect_uri"),
        (refused(|body| body["code_challenge_method"] = json!("plain")), "S256"),
        (refused(|body| body["code_challenge"] = json!("+/".repeat(21) + "a")), "code_challenge"),
        (
            refused(|body| body["code_challenge"] = json!(format!("{}=", &challenge_of(VERIFIER)[..42]))),
            "code_challenge",
        ),
        (refused(|body| body["scope"] = json!("admin")), "scope"),
        (refused(|body| body["state"] = json!("")), "state"),
        (refused(|body| body["agent_name"] = json!("")), "agent_name"),
        (refused(|body| drop(body.as_object_mut().map(|object| object.remove("client_id")))), "client_id"),
        (refused(|body| body["agent_name"] = json!(7)), "invalid JSON"),
    ] {
        let answer = start(&relay, KEY, &body).await;
        assert_eq!(answer.status, 400, "{reason}: {answer:?}");
        assert!(answer.error().contains(reason), "{reason}: {answer:?}");
    }
    assert!(relay.pending_agent_connects().is_empty());
    relay.shutdown().await;
}

#[tokio::test]
async fn codes_are_single_use_and_bound_to_verifier_client_and_redirect() {
    let relay = relay().await;

    // A wrong verifier is refused and burns the code: the right one cannot follow.
    let code = approved_code(&relay, VERIFIER).await;
    let other_verifier = "x".repeat(43);
    let wrong = exchange(&relay, &good_exchange(&code, &other_verifier)).await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.error().contains("code_verifier"), "{wrong:?}");
    let after = exchange(&relay, &good_exchange(&code, VERIFIER)).await;
    assert!(after.status == 400 && after.error().contains("already used"), "{after:?}");

    // Used once.
    let code = approved_code(&relay, VERIFIER).await;
    assert_eq!(exchange(&relay, &good_exchange(&code, VERIFIER)).await.status, 200);
    let again = exchange(&relay, &good_exchange(&code, VERIFIER)).await;
    assert!(again.status == 400 && again.error().contains("invalid_grant"), "{again:?}");

    // Bound to the client and the redirect URI; grant type, parameters and encoding checked.
    for (name, value, reason) in [
        ("client_id", OTHER_CLIENT, "client_id"),
        ("redirect_uri", "https://app.example/other", "redirect_uri"),
        ("grant_type", "client_credentials", "unsupported_grant_type"),
        ("code_verifier", "short", "code_verifier"),
    ] {
        let code = approved_code(&relay, VERIFIER).await;
        let mut pairs = good_exchange(&code, VERIFIER);
        pairs.iter_mut().filter(|(key, _)| *key == name).for_each(|pair| pair.1 = value);
        let answer = exchange(&relay, &pairs).await;
        assert_eq!(answer.status, 400, "{name}: {answer:?}");
        assert!(answer.error().contains(reason), "{name}: {answer:?}");
    }
    let code = approved_code(&relay, VERIFIER).await;
    let mut repeated = good_exchange(&code, VERIFIER);
    repeated.push(("code", "another"));
    assert!(exchange(&relay, &repeated).await.error().contains("repeated"));
    let missing: Vec<_> =
        good_exchange(&code, VERIFIER).into_iter().filter(|(key, _)| *key != "code_verifier").collect();
    assert!(exchange(&relay, &missing).await.error().contains("code_verifier is missing"));
    let as_json = json!({"grant_type": "authorization_code", "code": code, "code_verifier": VERIFIER}).to_string();
    let json_answer =
        raw(&relay, "POST", "/agent-connect/token", &[("Content-Type", "application/json")], as_json.as_bytes()).await;
    assert!(json_answer.status == 400 && json_answer.error().contains("x-www-form-urlencoded"), "{json_answer:?}");
    let malformed = raw(
        &relay,
        "POST",
        "/agent-connect/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"code=%zz",
    )
    .await;
    assert_eq!(malformed.status, 400);
    relay.shutdown().await;
}

#[tokio::test]
async fn expired_codes_and_runtime_tokens_are_refused() {
    let ttls = ConnectTtls { code: Duration::ZERO, runtime_token: Duration::ZERO, ..ConnectTtls::default() };
    let relay = relay_with(RelayConfig::loopback_ephemeral().connect_ttls(ttls)).await;
    let code = approved_code(&relay, VERIFIER).await;
    let expired = exchange(&relay, &good_exchange(&code, VERIFIER)).await;
    assert!(expired.status == 400 && expired.error().contains("expired"), "{expired:?}");
    relay.shutdown().await;

    // A runtime token with no lifetime left is never accepted on the socket.
    let ttls = ConnectTtls { runtime_token: Duration::ZERO, ..ConnectTtls::default() };
    let relay = relay_with(RelayConfig::loopback_ephemeral().connect_ttls(ttls)).await;
    let code = approved_code(&relay, VERIFIER).await;
    let installed = exchange(&relay, &good_exchange(&code, VERIFIER)).await;
    let installation_token = installed.body["installation_token"].as_str().expect("a token");
    let runtime = runtime_token(&relay, installation_token).await;
    assert_eq!(runtime.body["expires_in"], 0);
    assert!(!socket_accepted(&relay, runtime.body["agent_token"].as_str().expect("a token")).await);
    relay.shutdown().await;
}

#[tokio::test]
async fn manual_approval_waits_for_the_owner_and_a_denial_redirects_with_access_denied() {
    let relay = relay().await;
    let redirect = "https://other.example/cb";
    let started = start(&relay, OTHER_KEY, &start_body(OTHER_CLIENT, redirect, VERIFIER)).await;
    let request_id = started.body["request_id"].as_str().expect("an id").to_owned();
    let page = raw(&relay, "GET", &format!("/agent-connect/authorize/{request_id}"), &[], b"").await;
    assert_eq!(page.status, 403, "waits for the owner: {page:?}");
    assert_eq!(relay.pending_agent_connects(), std::slice::from_ref(&request_id));
    let location = relay.deny_agent_connect(&request_id).expect("pending");
    assert_eq!(location, format!("{redirect}?error=access_denied&state=state-1"));
    assert!(relay.pending_agent_connects().is_empty());
    assert!(relay.approve_agent_connect(&request_id).is_err(), "a denied request cannot be approved");

    let started = start(&relay, OTHER_KEY, &start_body(OTHER_CLIENT, redirect, VERIFIER)).await;
    let request_id = started.body["request_id"].as_str().expect("an id").to_owned();
    let location = relay.approve_agent_connect(&request_id).expect("pending");
    assert!(location.starts_with(&format!("{redirect}?code=")) && location.ends_with("&state=state-1"), "{location}");
    assert!(relay.approve_agent_connect(&request_id).is_err(), "answered once");
    let unknown = raw(&relay, "GET", "/agent-connect/authorize/nope", &[], b"").await;
    assert_eq!(unknown.status, 404);
    relay.shutdown().await;
}

#[tokio::test]
async fn connect_requests_are_recorded_as_they_arrived() {
    let relay = relay().await;
    start(&relay, KEY, &start_body(CLIENT, REDIRECT, VERIFIER)).await;
    let recorded = relay.connect_requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!((recorded[0].method.as_str(), recorded[0].path.as_str()), ("POST", "/agent-connect/requests"));
    assert_eq!(recorded[0].header("authorization"), Some("Bearer ck_app_1"));
    assert_eq!(
        serde_json::from_slice::<Value>(&recorded[0].body).expect("JSON"),
        start_body(CLIENT, REDIRECT, VERIFIER)
    );
    relay.shutdown().await;
}
