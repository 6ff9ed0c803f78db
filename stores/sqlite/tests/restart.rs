//! An agent restarted from its SQLite store: a message whose handler failed comes back from the
//! stored text and is handled; an accepted one is never handled again, even when the relay
//! delivers it once more. With end-to-end encryption too: the replay is not decrypted again
//! (its session has moved on), and the restored sessions read and write what follows.

use pacerelle_core::agent::AgentConfig;
use pacerelle_core::connection::Backoff;
use pacerelle_core::store::{AgentStore as _, ReceiptState};
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use pacerelle_store_sqlite::SqliteStore;
use pacerelle_tokio::{Client, ClientConfig, PersonClient, PersonClientConfig};
use rand::SeedableRng;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const AGENT: &str = "agent-1";
const AGENT_TOKEN: &str = "agent-token";
const PERSON: &str = "alice";
const PERSON_TOKEN: &str = "alice-token";
const WAIT: Duration = Duration::from_secs(10);

/// Runs an agent on `store_root` whose handler succeeds only when `succeed`; returns once it has
/// handled `expected_calls` messages, then stops it. Each run seeds its generator differently:
/// a restarted agent that drew the same ids again would send replies its peers take for replays.
async fn run_agent(
    relay: &RelayHandle,
    store_root: &Path,
    succeed: bool,
    calls: Arc<AtomicUsize>,
    expected_calls: usize,
) {
    run_agent_with(relay, store_root, succeed, calls, expected_calls, false).await;
}

async fn run_agent_with(
    relay: &RelayHandle,
    store_root: &Path,
    succeed: bool,
    calls: Arc<AtomicUsize>,
    expected_calls: usize,
    e2ee: bool,
) {
    let store = SqliteStore::open_in(store_root, AGENT).unwrap();
    let config =
        ClientConfig { e2ee, ..ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(relay.base_url()).unwrap() };
    let core = AgentConfig {
        backoff: Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(100) },
        ..AgentConfig::new(AGENT)
    };
    let mut client = Client::with_parts(
        config,
        core,
        Box::new(store),
        Box::new(rand::rngs::StdRng::seed_from_u64(expected_calls as u64)),
    )
    .unwrap();
    let seen = calls.clone();
    client.on_message(move |message, agent| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            if !succeed {
                return Err("not this time".into());
            }
            agent.reply(&message, format!("handled {}", message.text)).await?;
            Ok(())
        }
    });
    let handle = client.handle();
    let serving = tokio::spawn(client.connect());
    tokio::time::timeout(WAIT, async {
        while calls.load(Ordering::SeqCst) < expected_calls {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the handler runs");
    // Let an acceptance reach the store and the relay before stopping.
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.close();
    tokio::time::timeout(WAIT, serving).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_resume_from_the_store() {
    let root = std::env::temp_dir().join(format!("pacerelle-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let relay = Relay::spawn(RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN).person(PERSON, PERSON_TOKEN))
        .await
        .unwrap();
    let person = PersonClient::connect(PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url())).await.unwrap();
    let conversation = person.create_conversation(&[AGENT], false).await.unwrap();
    let sent = person.send_text(&conversation, AGENT, "persist me").unwrap();

    // First run: the handler fails; the receipt stays pending on disk with its text.
    let calls = Arc::new(AtomicUsize::new(0));
    run_agent(&relay, &root, false, calls.clone(), 1).await;
    {
        let snapshot = SqliteStore::open_in(&root, AGENT).unwrap().load().unwrap();
        assert!(matches!(&snapshot.receipts[&sent].state, ReceiptState::Pending { text } if text == "persist me"));
    }
    assert_eq!(relay.pending_for_agent(AGENT), 1);

    // Second run, a new process as far as the agent knows: the relay replays, the stored text is
    // handed out, the handler succeeds, the message is acknowledged.
    run_agent(&relay, &root, true, calls.clone(), 2).await;
    let reply = person.next_message(WAIT).await.unwrap();
    assert_eq!(
        (reply.text.as_str(), reply.reply_to_message_id.as_deref()),
        ("handled persist me", Some(sent.as_str()))
    );
    assert_eq!(relay.pending_for_agent(AGENT), 0);
    {
        let snapshot = SqliteStore::open_in(&root, AGENT).unwrap().load().unwrap();
        assert!(matches!(snapshot.receipts[&sent].state, ReceiptState::Accepted { .. }));
    }

    // Third run: a new message is handled once; the old one, already accepted, is not handled again.
    let second = person.send_text(&conversation, AGENT, "second").unwrap();
    run_agent(&relay, &root, true, calls.clone(), 3).await;
    let reply = person.next_message(WAIT).await.unwrap();
    assert_eq!(reply.reply_to_message_id.as_deref(), Some(second.as_str()));
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    person.close().await;
    relay.shutdown().await;
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_sessions_resume_from_the_store() {
    let root = std::env::temp_dir().join(format!("pacerelle-restart-e2ee-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let relay = Relay::spawn(RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN).person(PERSON, PERSON_TOKEN))
        .await
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    // The agent must have published its prekeys before the person can write: a first run that
    // serves nothing does it (and stores its identity).
    let publisher = {
        let (relay_url, root) = (relay.base_url(), root.clone());
        tokio::spawn(async move {
            let store = SqliteStore::open_in(&root, AGENT).unwrap();
            let config =
                ClientConfig { e2ee: true, ..ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(relay_url).unwrap() };
            let client = Client::with_store(config, store).unwrap();
            let handle = client.handle();
            let serving = tokio::spawn(client.connect());
            tokio::time::timeout(WAIT, async {
                while !handle.is_connected() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("published and connected");
            handle.close();
            serving.await.unwrap().unwrap();
        })
    };
    publisher.await.unwrap();
    let identity = SqliteStore::open_in(&root, AGENT).unwrap().load().unwrap().e2ee.identity;
    assert!(identity.is_some(), "the identity is stored");

    let config = PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url()).encrypted();
    let person = PersonClient::connect(config).await.unwrap();
    let conversation = person.create_conversation(&[AGENT], false).await.unwrap();
    let sent = person.send_text(&conversation, AGENT, "persist me, secretly").unwrap();

    // First run: the message is decrypted, its session and pending text stored together; the
    // handler fails.
    run_agent_with(&relay, &root, false, calls.clone(), 1, true).await;
    {
        let snapshot = SqliteStore::open_in(&root, AGENT).unwrap().load().unwrap();
        assert!(
            matches!(&snapshot.receipts[&sent].state, ReceiptState::Pending { text } if text == "persist me, secretly")
        );
        assert!(snapshot.e2ee.sessions.keys().any(|peer| peer.starts_with("human:alice:")), "the session is stored");
        assert_eq!(snapshot.e2ee.identity, identity, "the same identity across runs");
    }

    // Second run: the relay replays the ciphertext; the stored text is handed out (decrypting it
    // again would fail: the session has moved on); the encrypted reply reaches the person.
    run_agent_with(&relay, &root, true, calls.clone(), 2, true).await;
    let reply = person.next_message(WAIT).await.unwrap();
    assert!(reply.encrypted);
    assert_eq!(
        (reply.text.as_str(), reply.reply_to_message_id.as_deref()),
        ("handled persist me, secretly", Some(sent.as_str()))
    );

    // Third run: the restored session reads a new message and writes a new reply.
    let second = person.send_text(&conversation, AGENT, "second secret").unwrap();
    run_agent_with(&relay, &root, true, calls.clone(), 3, true).await;
    let reply = person.next_message(WAIT).await.unwrap();
    assert_eq!(
        (reply.text.as_str(), reply.reply_to_message_id.as_deref()),
        ("handled second secret", Some(second.as_str()))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(relay.pending_for_agent(AGENT), 0);

    // Both texts were pending on disk, then accepted: neither is left anywhere in the store's
    // files (database, WAL, shared memory).
    let snapshot = SqliteStore::open_in(&root, AGENT).unwrap().load().unwrap();
    assert!(snapshot.receipts.values().all(|receipt| matches!(receipt.state, ReceiptState::Accepted { .. })));
    let folder = root.join(AGENT);
    let files: Vec<Vec<u8>> =
        std::fs::read_dir(&folder).unwrap().map(|entry| std::fs::read(entry.unwrap().path()).unwrap()).collect();
    assert!(!files.is_empty());
    for secret in ["persist me, secretly", "second secret"] {
        let found = files.iter().any(|bytes| bytes.windows(secret.len()).any(|window| window == secret.as_bytes()));
        assert!(!found, "{secret:?} is still on disk in {}", folder.display());
    }

    person.close().await;
    relay.shutdown().await;
    std::fs::remove_dir_all(&root).unwrap();
}
