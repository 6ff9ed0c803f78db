//! `pacerelle connect` against the development relay's Agent Connect endpoints: the approval
//! address printed, the redirect address pasted back, the tokens written to a private file and
//! accepted by the relay; a refusal and a bad connect key have their exit codes.

use crate::support::{pacerelle, run_async, scratch, stderr, stdout};
use pacerelle_relay::{ConnectClient, Relay, RelayConfig, RelayHandle};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::Stdio;

const OWNER: &str = "owner";
const CLIENT: &str = "app-1";
const KEY: &str = "ck_app_1";
const REDIRECT: &str = "https://app.example/callback";

async fn relay() -> RelayHandle {
    let config = RelayConfig::loopback_ephemeral()
        .person(OWNER, "owner-token")
        .connect_client(ConnectClient::new(CLIENT, KEY, REDIRECT, OWNER));
    Relay::spawn(config).await.expect("the relay starts")
}

fn connect_args<'a>(base_url: &'a str, root: &'a str, key: &'a str) -> Vec<&'a str> {
    vec![
        "connect",
        "--base-url",
        base_url,
        "--connect-key",
        key,
        "--client-id",
        CLIENT,
        "--redirect-uri",
        REDIRECT,
        "--agent-name",
        "Helper",
        "--store-root",
        root,
    ]
}

/// `GET path` on the relay, written by hand so the redirect is read, not followed; returns the
/// status and the `Location` header.
fn get(relay: &std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, Option<String>) {
    let mut stream = std::net::TcpStream::connect(relay).expect("the relay accepts");
    let auth = token.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {relay}\r\n{auth}Connection: close\r\n\r\n").expect("written");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let status = answer.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status");
    let location = answer
        .lines()
        .find_map(|line| line.strip_prefix("location: ").or_else(|| line.strip_prefix("Location: ")))
        .map(str::to_owned);
    (status, location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_writes_private_tokens_the_relay_accepts() {
    let relay = relay().await;
    let root = scratch("connect");
    let (base_url, root_text, addr) = (relay.base_url(), root.display().to_string(), relay.addr());
    let outcome = tokio::task::spawn_blocking(move || {
        let mut child = pacerelle(&connect_args(&base_url, &root_text, KEY))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let mut lines = BufReader::new(child.stdout.take().expect("piped"));
        let mut first = String::new();
        lines.read_line(&mut first).expect("the approval address");
        let url = first.trim().strip_prefix("authorization-url: ").expect("the address line").to_owned();
        // The owner approves (the relay's scripted approval) and is sent back with the code.
        let path = url.strip_prefix(&base_url).expect("on the relay");
        let (status, location) = get(&addr, path, None);
        assert_eq!(status, 303);
        let location = location.expect("the redirect address");
        assert!(location.starts_with(REDIRECT) && location.contains("code="), "{location}");
        let mut stdin = child.stdin.take().expect("piped");
        writeln!(stdin, "{location}").expect("pasted");
        drop(stdin);
        let mut rest = String::new();
        lines.read_to_string(&mut rest).expect("the rest of stdout");
        let mut errors = String::new();
        child.stderr.take().expect("piped").read_to_string(&mut errors).expect("stderr");
        (child.wait().expect("ends"), rest, errors)
    })
    .await
    .expect("the runner");
    let (status, printed, errors) = outcome;
    assert_eq!(status.code(), Some(0), "{errors}");

    let agent_id = printed.lines().find_map(|line| line.strip_prefix("agent-id: ")).expect("the agent id").to_owned();
    let path = root.join(&agent_id).join("connect.json");
    assert!(printed.contains(&format!("credentials: {}", path.display())), "{printed}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("the credentials file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only its owner reads the tokens");
    }
    let credentials: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(credentials["agent_id"], agent_id.as_str());
    assert_eq!(credentials["owner_id"], OWNER);
    let token = credentials["agent_token"].as_str().expect("a runtime token").to_owned();
    let installation = credentials["installation_token"].as_str().expect("an installation token");
    for secret in [token.as_str(), installation] {
        assert!(!printed.contains(secret) && !errors.contains(secret), "a token reached the terminal");
    }
    // The runtime token is the agent's: the relay serves its calls with it.
    let conversation = credentials["conversation_id"].as_str().expect("the owner's conversation").to_owned();
    let addr = relay.addr();
    let (status, _) = tokio::task::spawn_blocking(move || {
        get(&addr, &format!("/agent/group-keys?conversation_id={conversation}"), Some(&token))
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    relay.shutdown().await;
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_a_bad_key_and_an_unreachable_server_have_their_exit_codes() {
    let relay = relay().await;
    let root = scratch("connect-refused");
    let root_text = root.display().to_string();
    let base_url = relay.base_url();

    // The owner refused: the redirect carries an error.
    let refused = run_async(
        pacerelle(&connect_args(&base_url, &root_text, KEY)),
        &format!("{REDIRECT}?error=access_denied&state=x\n"),
    )
    .await;
    assert_eq!(refused.status.code(), Some(5), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("access_denied"), "{}", stderr(&refused));

    // A wrong connect key: the relay refuses the first call.
    let bad_key = run_async(pacerelle(&connect_args(&base_url, &root_text, "ck_wrong")), "").await;
    assert_eq!(bad_key.status.code(), Some(4), "{}", stderr(&bad_key));
    assert!(!stdout(&bad_key).contains("authorization-url"));
    assert!(!stderr(&bad_key).contains("ck_wrong"), "the key is never printed");

    relay.shutdown().await;
    let gone = run_async(pacerelle(&connect_args(&base_url, &root_text, KEY)), "").await;
    assert_eq!(gone.status.code(), Some(3), "{}", stderr(&gone));
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "nothing written");
    std::fs::remove_dir_all(&root).unwrap();
}
