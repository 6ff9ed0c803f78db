//! The echo examples' serve mode, configured as a person configures it: from the environment's
//! variables (read through `ClientConfig::from_lookup`, so that parallel tests do not share the
//! process environment), `PACERELLE_E2EE=1` encrypting, the store under `PACERELLE_STORE_ROOT`.

use pacerelle::ClientConfig;
use pacerelle::core::config::env;
use pacerelle::core::human::PersonEvent;
use pacerelle::tokio::{Client, PersonClient, PersonClientConfig};
use pacerelle_examples::{echo, script, serving_banner};
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

/// A folder of its own under the system's temporary folder, removed when dropped.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("pacerelle-examples-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempRoot(path)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The configuration the `.env` lines of the relay plus `PACERELLE_E2EE` and
/// `PACERELLE_STORE_ROOT` make.
fn config_from(vars: Vec<(&'static str, String)>) -> ClientConfig {
    ClientConfig::from_lookup(|name| vars.iter().find(|(key, _)| *key == name).map(|(_, value)| value.clone()))
        .expect("a valid configuration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_mode_encrypts_when_asked_and_shows_its_verification_code() {
    let (relay, credentials) = script::start_relay().await.unwrap();
    let root = TempRoot::new("serve-e2ee");
    let config = config_from(vec![
        (env::AGENT_ID, script::AGENT_ID.to_owned()),
        (env::AGENT_TOKEN, credentials.agent_token.clone()),
        (env::BASE_URL, relay.base_url()),
        (env::E2EE, "1".to_owned()),
        (env::STORE_ROOT, root.0.display().to_string()),
    ]);
    assert!(config.e2ee);

    let mut client = Client::new(config.clone()).expect("the durable store opens");
    let code = client.handle().verification_code().expect("a verification code with PACERELLE_E2EE=1");
    let banner = serving_banner("tokio", &config, Some(&code));
    assert!(banner.contains(&format!("verification code: {code}")), "{banner}");
    assert!(banner.contains(&root.0.join(script::AGENT_ID).display().to_string()), "{banner}");
    assert!(!banner.contains(&credentials.agent_token), "the banner shows the token: {banner}");
    assert!(root.0.join(script::AGENT_ID).join("agent.db").is_file(), "the store is where the banner says");

    client.on_message(|message, agent| async move { echo::run_tokio(echo::respond(&message), &agent).await });
    let agent = client.handle();
    let serving = tokio::spawn(client.connect());

    // A person with end-to-end encryption starts a session from the agent's published keys.
    let person_config =
        PersonClientConfig::new(script::PERSON_ID, &credentials.person_token, relay.base_url()).encrypted();
    let person = PersonClient::connect(person_config).await.expect("the person connects");
    let conversation = person.create_conversation(&[script::AGENT_ID], false).await.expect("a conversation");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !agent.is_connected() {
        assert!(tokio::time::Instant::now() < deadline, "the agent did not publish and connect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = person.send_text(&conversation, script::AGENT_ID, "hello").expect("the person writes");
    let reply = loop {
        match person.next_event(WAIT).await.expect("the echo") {
            PersonEvent::Message(message) => break message,
            event @ (PersonEvent::Refused(_) | PersonEvent::RequestFailed { .. }) => panic!("{event:?}"),
            _ => {}
        }
    };
    assert_eq!(reply.text, "Received: hello");
    assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent.as_str()));
    assert!(reply.encrypted, "the reply crossed the relay in plaintext");

    person.close().await;
    agent.close();
    tokio::time::timeout(Duration::from_secs(5), serving).await.expect("close is prompt").unwrap().unwrap();
    relay.shutdown().await;
}

#[test]
fn serve_mode_without_e2ee_says_so() {
    let root = TempRoot::new("serve-plain");
    let config = config_from(vec![
        (env::AGENT_ID, "plain-agent".to_owned()),
        (env::AGENT_TOKEN, "plain-token".to_owned()),
        (env::E2EE, "false".to_owned()),
        (env::STORE_ROOT, root.0.display().to_string()),
    ]);
    let client = pacerelle::blocking::Client::new(config.clone()).expect("the durable store opens");
    assert_eq!(client.handle().verification_code(), None);
    let banner = serving_banner("blocking", &config, None);
    assert!(banner.contains("not encrypted"), "{banner}");
    assert!(root.0.join("plain-agent").join("agent.db").is_file(), "a plaintext agent keeps its receipts too");
}
