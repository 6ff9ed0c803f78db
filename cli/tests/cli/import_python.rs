//! `pacerelle import-python`: an official Python agent (`e2ee=True`) that conversed with an
//! encrypted person is stopped, its store imported into ours; the code printed is the one
//! `pacerelle verify` reads from the new store, and the session came over. Missing and garbage
//! official stores, and a target that already holds an identity, exit 6.

use crate::support::{pacerelle, run, run_async, scratch, stderr, stdout};
use pacerelle_conformance::official_agent::{OfficialAgent, OfficialAgentConfig};
use pacerelle_core::human::PersonEvent;
use pacerelle_relay::{Relay, RelayConfig};
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use std::time::Duration;

const AGENT: &str = "py-agent";
const AGENT_TOKEN: &str = "py-agent-token";

fn line<'a>(output: &'a str, name: &str) -> &'a str {
    output
        .lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(": ")))
        .unwrap_or_else(|| panic!("no {name} in {output}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_official_agent_becomes_ours_with_its_identity_and_session() {
    pacerelle_conformance::oracle_dir();
    let root = scratch("import-python");
    let (official_root, our_root) = (root.join("official"), root.join("ours"));
    let relay =
        Relay::spawn(RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN).person("alice", "alice-token"))
            .await
            .unwrap();
    let (base_url, store) = (relay.base_url(), official_root.clone());
    let official = tokio::task::spawn_blocking(move || {
        OfficialAgent::start(&OfficialAgentConfig::new(&base_url, AGENT, AGENT_TOKEN).encrypted().store_root(&store))
    })
    .await
    .unwrap();

    // A conversation with an encrypted person, so a session exists to come over.
    let config = PersonClientConfig::new("alice", "alice-token", relay.base_url()).device("phone").encrypted();
    let alice = PersonClient::connect(config).await.unwrap();
    let conversation = alice.create_conversation(&[AGENT], false).await.unwrap();
    alice.send_text(&conversation, AGENT, "bonjour").unwrap();
    loop {
        match alice.next_event(Duration::from_secs(30)).await.expect("the official agent answers") {
            PersonEvent::Message(message) => {
                assert_eq!(message.text, "Received: bonjour");
                break;
            }
            PersonEvent::Read(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(official);
    alice.close().await;
    relay.shutdown().await;

    let (from, to) = (official_root.display().to_string(), our_root.display().to_string());
    let args = ["import-python", "--agent", AGENT, "--from", &from, "--store-root", &to];
    let imported = run_async(pacerelle(&args), "").await;
    assert_eq!(imported.status.code(), Some(0), "{}", stderr(&imported));
    let printed = stdout(&imported);
    assert_eq!(line(&printed, "sessions"), "1", "{printed}");
    assert_eq!(line(&printed, "sessions-not-imported"), "0", "{printed}");
    let verified = run(pacerelle(&["verify", "--store", &to, "--agent", AGENT]), "");
    assert_eq!(verified.status.code(), Some(0), "{}", stderr(&verified));
    assert_eq!(stdout(&verified).trim(), line(&printed, "verification-code"), "the same identity");

    // A second import into the same store would replace the agent's keys: refused.
    let again = run(pacerelle(&args), "");
    assert_eq!(again.status.code(), Some(6), "{}", stderr(&again));
    assert!(stderr(&again).contains("already holds an agent identity"), "{}", stderr(&again));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn missing_and_garbage_official_stores_exit_6_with_one_line() {
    let root = scratch("import-python-bad");
    let (from, to) = (root.join("official"), root.join("ours"));
    let (from_text, to_text) = (from.display().to_string(), to.display().to_string());
    let args = ["import-python", "--agent", "ghost", "--from", &from_text, "--store-root", &to_text];
    let missing = run(pacerelle(&args), "");
    assert_eq!(missing.status.code(), Some(6));
    assert!(stderr(&missing).starts_with("pacerelle: no official agent store at"), "{}", stderr(&missing));

    std::fs::create_dir_all(from.join("ghost")).unwrap();
    std::fs::write(from.join("ghost").join("signal.db"), b"not a database at all, not even close").unwrap();
    let garbage = run(pacerelle(&args), "");
    assert_eq!(garbage.status.code(), Some(6), "{}", stderr(&garbage));
    assert_eq!(stderr(&garbage).lines().count(), 1, "{}", stderr(&garbage));
    assert!(!to.join("ghost").join("agent.db").exists(), "nothing written to our store");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_missing_official_store_creates_nothing_in_ours() {
    let root = scratch("import-python-nothing");
    let (from, to) = (root.join("official"), root.join("ours"));
    let (from_text, to_text) = (from.display().to_string(), to.display().to_string());
    let args = ["import-python", "--agent", "typo", "--from", &from_text, "--store-root", &to_text];
    let missing = run(pacerelle(&args), "");
    assert_eq!(missing.status.code(), Some(6), "{}", stderr(&missing));
    assert!(stderr(&missing).starts_with("pacerelle: no official agent store at"), "{}", stderr(&missing));
    assert!(!to.join("typo").exists(), "an agent folder was created for a store that is not there");
    std::fs::remove_dir_all(&root).ok();
}
