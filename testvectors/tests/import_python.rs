//! Coming over from the official SDK (issue 12, item 5): the official runtime's state, decoded
//! natively, continues every conversation on our side.
//!
//! Two layers. First the runtime alone: the official runtime plays the agent (and, once, the
//! initiator), its sessions are exported after many different numbers and patterns of messages
//! (so that SPQR stands in every phase it can stand in when an agent stops), imported with
//! `pacerelle_core::import`, and our side goes on: the peers' next messages decrypt, our replies
//! decrypt on the runtime, across further SPQR epochs. Then the whole official Python agent
//! (`official_agent_conversations_continue_on_our_agent`).

use pacerelle_conformance::peers::runtime;
use pacerelle_core::Timestamp;
use pacerelle_core::e2ee::account::Account;
use pacerelle_core::e2ee::bundle::verification_code;
use pacerelle_core::e2ee::pq::PqPolicy;
use pacerelle_core::import::{ImportReport, import_python_snapshot};
use pacerelle_core::store::AgentSnapshot;
use pacerelle_official_runtime::RuntimeStore;
use rand::SeedableRng;
use std::collections::BTreeSet;

/// Our agent, from the runtime store `official`'s export, as agent `agent_id`.
fn import(official: &RuntimeStore, agent_id: &str, rng: &mut pacerelle_core::Rng) -> (Account, ImportReport) {
    let export = official.export().unwrap();
    let imported = import_python_snapshot(&export, agent_id, Timestamp::from_millis(1)).unwrap();
    let mut store = AgentSnapshot::default();
    store.apply(&imported.changes);
    let (account, created) = Account::load_or_create(&store.e2ee, PqPolicy::RequireSpqr.factory(), rng).unwrap();
    assert!(created.is_empty(), "the imported identity and prekey counter are used as they are");
    (account, imported.report)
}

/// The SPQR phase of our current session with `peer` (from its `Debug`, which names it).
fn phase(account: &Account, peer: &str) -> String {
    let state = format!("{:?}", account.session(peer).unwrap().current().unwrap().pq());
    let start = state.find("phase: \"").map(|at| at + 8).unwrap();
    state[start..].split('"').next().unwrap().to_owned()
}

/// `rounds` exchanges between the person (runtime) and our imported agent: the person writes
/// `person` messages, we answer `agent` times; everything must decrypt on both sides.
fn converse(
    person: &mut RuntimeStore,
    account: &mut Account,
    name: &str,
    (rounds, person_burst, agent_burst): (usize, usize, usize),
    rng: &mut pacerelle_core::Rng,
) {
    for round in 0..rounds {
        for i in 0..person_burst {
            let text = format!("person {round}.{i}");
            let framed = person.encrypt("agent:A", text.as_bytes()).unwrap();
            let (plaintext, used, _) = account.decrypt(&[name], &framed, rng).unwrap();
            assert_eq!((plaintext.as_slice(), used.as_str()), (text.as_bytes(), name));
        }
        for i in 0..agent_burst {
            let text = format!("agent {round}.{i}");
            let (framed, _) = account.encrypt(name, text.as_bytes(), rng).unwrap();
            assert_eq!(person.decrypt("agent:A", &framed).unwrap().as_slice(), text.as_bytes());
        }
    }
}

/// The same, between two runtime stores (before the import).
fn converse_runtimes(person: &mut RuntimeStore, agent: &mut RuntimeStore, name: &str, pattern: (usize, usize, usize)) {
    let (rounds, person_burst, agent_burst) = pattern;
    for _ in 0..rounds {
        for _ in 0..person_burst {
            let framed = person.encrypt("agent:A", b"to the agent").unwrap();
            assert_eq!(agent.decrypt(name, &framed).unwrap().as_slice(), b"to the agent");
        }
        for _ in 0..agent_burst {
            let framed = agent.encrypt(name, b"to the person").unwrap();
            assert_eq!(person.decrypt("agent:A", &framed).unwrap().as_slice(), b"to the person");
        }
    }
}

/// Messages the person sends after a ping-pong, before the agent stops: none or one.
const TRAILING: [usize; 2] = [0, 1];

#[test]
fn runtime_sessions_continue_on_our_side_from_every_spqr_phase() {
    let runtime = runtime();
    let rng = &mut rand::rngs::StdRng::seed_from_u64(12);
    let mut agent = runtime.new_store("agent:A").unwrap();
    let mut people = Vec::new();
    // Patterns: ((rounds, person's messages per round, agent's per round), person's messages
    // after them). Many lengths and bursts, so that the sessions stop in every SPQR phase and
    // in several epochs. First ping-pong up to the third epoch (an epoch takes some 40
    // messages each way), each also followed by one more message from the person: an agent
    // stops after receiving as often as after sending.
    let mut patterns = Vec::new();
    for rounds in [0usize, 1, 2, 3, 5, 8, 13, 21, 29, 34, 40, 47, 52, 60, 68, 75, 80, 85, 90, 100] {
        for trailing in TRAILING {
            patterns.push(((rounds, 1, 1), trailing));
        }
    }
    // Around the end of the first epoch, with the person writing last: the agent stops
    // between the person's first message of the next epoch and its own next one.
    for rounds in 40..56 {
        patterns.push(((rounds, 1, 1), 8));
    }
    for bursts in [
        (1, 1, 0),
        (1, 3, 0),
        (3, 5, 1),
        (4, 1, 7),
        (9, 4, 1),
        (7, 1, 9),
        (12, 2, 5),
        (20, 3, 2),
        (6, 8, 1),
        (5, 1, 12),
    ] {
        patterns.push((bursts, 0));
    }
    let mut bundle_identity = None;
    for (i, (pattern, trailing)) in patterns.iter().enumerate() {
        let index = u32::try_from(i).unwrap();
        let bundle = agent.generate_prekey_bundle(100 + index, 500, 500).unwrap();
        bundle_identity = Some(bundle.identity_key.clone());
        let name = format!("human:p{i}:c{i}:device:d");
        let mut person = runtime.new_store(&format!("human:p{i}")).unwrap();
        person.process_prekey_bundle("agent:A", &bundle).unwrap();
        // Every session starts with the person's first message.
        let framed = person.encrypt("agent:A", b"hello").unwrap();
        assert_eq!(agent.decrypt(&name, &framed).unwrap().as_slice(), b"hello");
        converse_runtimes(&mut person, &mut agent, &name, *pattern);
        converse_runtimes(&mut person, &mut agent, &name, (*trailing, 1, 0));
        people.push((name, person));
    }

    let (mut account, report) = import(&agent, "A", rng);
    assert_eq!(report.verification_code, verification_code(&bundle_identity.unwrap()), "the same verification code");
    assert_eq!(report.signed_prekeys, 1);
    assert_eq!(report.kyber_prekeys, 1);
    assert_eq!(report.one_time_prekeys, 0, "every one-time prekey was used");
    assert_eq!(report.peer_identities, patterns.len());

    assert!(report.sessions_not_imported.is_empty(), "{:?}", report.sessions_not_imported);
    assert_eq!(report.sessions.len(), patterns.len());
    let mut phases = BTreeSet::new();
    for (name, person) in &mut people {
        phases.insert(phase(&account, name));
        // Ours takes over: the person's next messages, our replies, across new SPQR epochs.
        // An SPQR epoch takes some 45 exchanges: the braid state that came over completes one.
        converse(person, &mut account, name, (3, 2, 2), rng);
        converse(person, &mut account, name, (50, 1, 1), rng);
    }
    println!("phases at import: {phases:?}");
    for expected in [
        "KeysUnsampled",
        "KeysSampled",
        "HeaderSent",
        "Ct1Received",
        "EkSentCt1Received",
        "NoHeaderReceived",
        "HeaderReceived",
        "Ct1Sampled",
        "EkReceivedCt1Sampled",
        "Ct1Acknowledged",
        "Ct2Sampled",
    ] {
        assert!(phases.contains(expected), "no session stopped in {expected}: {phases:?}");
    }
}

#[test]
fn an_initiators_sessions_continue_before_and_after_the_first_reply() {
    let runtime = runtime();
    let rng = &mut rand::rngs::StdRng::seed_from_u64(13);
    for (waiting, replies) in [(true, 0usize), (false, 1), (false, 6)] {
        // A fresh pair each time: the runtime pins the identity a name first spoke with.
        let mut peer = runtime.new_store("human:b").unwrap();
        let mut initiator = runtime.new_store("agent:A").unwrap();
        let bundle = peer.generate_prekey_bundle(1, 2, 3).unwrap();
        initiator.process_prekey_bundle("human:b", &bundle).unwrap();
        for _ in 0..3 {
            let framed = initiator.encrypt("human:b", b"first").unwrap();
            assert_eq!(framed[0], 0x01, "PreKey messages until the reply");
            assert_eq!(peer.decrypt("agent:A", &framed).unwrap().as_slice(), b"first");
        }
        for _ in 0..replies {
            let framed = peer.encrypt("agent:A", b"reply").unwrap();
            assert_eq!(initiator.decrypt("human:b", &framed).unwrap().as_slice(), b"reply");
        }
        let (mut account, report) = import(&initiator, "A", rng);
        assert_eq!(report.sessions, vec!["human:b".to_owned()]);
        assert_eq!(account.session("human:b").unwrap().current().unwrap().awaiting_reply(), waiting);
        let (framed, _) = account.encrypt("human:b", b"from ours", rng).unwrap();
        assert_eq!(framed[0], if waiting { 0x01 } else { 0x02 });
        assert_eq!(peer.decrypt("agent:A", &framed).unwrap().as_slice(), b"from ours");
        for round in 0..40 {
            let text = format!("reply {round}");
            let framed = peer.encrypt("agent:A", text.as_bytes()).unwrap();
            let (plaintext, _, _) = account.decrypt(&["human:b"], &framed, rng).unwrap();
            assert_eq!(plaintext.as_slice(), text.as_bytes());
            let (framed, _) = account.encrypt("human:b", b"again", rng).unwrap();
            assert_eq!(peer.decrypt("agent:A", &framed).unwrap().as_slice(), b"again");
        }
    }
}

mod official_agent {
    //! The whole official Python agent: it converses with two people (whose Signal is the
    //! official runtime) in three conversations, stops; our agent imports its store and
    //! continues each conversation (same verification code, their next messages decrypt here,
    //! our replies on their runtime, SPQR epochs go on turning), and a new person's session
    //! starts from a one-time prekey the official agent published.

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use pacerelle_conformance::official_agent::{OfficialAgent, OfficialAgentConfig};
    use pacerelle_conformance::peers::runtime;
    use pacerelle_core::config::ClientConfig;
    use pacerelle_core::e2ee::bundle::verification_code;
    use pacerelle_core::e2ee::session::SessionRecord;
    use pacerelle_core::human::PersonEvent;
    use pacerelle_core::store::AgentStore as _;
    use pacerelle_official_runtime::backend::RuntimeBackend;
    use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
    use pacerelle_store_sqlite::{ImportPythonError, SqliteStore, import_python};
    use pacerelle_tokio::{Client, PersonClient, PersonClientConfig};
    use rand::SeedableRng as _;
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::Duration;

    const AGENT: &str = "py-agent";
    const AGENT_TOKEN: &str = "py-agent-token";
    const WAIT: Duration = Duration::from_secs(20);

    /// One device of a person whose Signal is the official runtime, in a conversation with the
    /// agent.
    struct Person {
        client: PersonClient,
        conversation: String,
        name: &'static str,
        /// Ids of messages sent and not yet acknowledged by the agent (its READ receipt).
        unread: Vec<String>,
    }

    impl Person {
        /// Says `text` and waits for the agent's answer, which must be encrypted, read by the
        /// person's runtime and linked to it.
        async fn exchange(&mut self, text: &str) {
            let id = self.client.send_text(&self.conversation, AGENT, text).unwrap();
            self.unread.push(id.clone());
            loop {
                match self
                    .client
                    .next_event(WAIT)
                    .await
                    .unwrap_or_else(|_| panic!("{}: no answer to {text:?}", self.name))
                {
                    PersonEvent::Message(reply) => {
                        assert!(reply.encrypted, "{}: the answer was encrypted", self.name);
                        assert_eq!(reply.text, format!("Received: {text}"), "{}", self.name);
                        assert_eq!(reply.reply_to_message_id.as_deref(), Some(id.as_str()));
                        return;
                    }
                    PersonEvent::Read(receipt) => self.unread.retain(|unread| *unread != receipt.message_id),
                    other => panic!("{}: unexpected {other:?}", self.name),
                }
            }
        }

        /// Waits until the agent acknowledged every message (after saving its state).
        async fn all_read(&mut self) {
            while !self.unread.is_empty() {
                match self.client.next_event(WAIT).await.expect("a read receipt") {
                    PersonEvent::Read(receipt) => self.unread.retain(|unread| *unread != receipt.message_id),
                    other => panic!("{}: unexpected {other:?}", self.name),
                }
            }
        }
    }

    /// A person's device on the official runtime, in a new conversation with the agent.
    async fn person(relay: &RelayHandle, name: &'static str, device: &str, seed: u64) -> Person {
        let rng = &mut rand::rngs::StdRng::seed_from_u64(seed);
        let local = format!("human:{name}:{device}");
        let (backend, _) = RuntimeBackend::load_or_create(&runtime(), &local, &Default::default(), rng).unwrap();
        let config =
            PersonClientConfig::new(name, format!("{name}-token"), relay.base_url()).device(device).encrypted();
        let rng = Box::new(rand::rngs::StdRng::seed_from_u64(seed + 1));
        let client = PersonClient::connect_with_backend(config, rng, Box::new(backend)).await.unwrap();
        let conversation = client.create_conversation(&[AGENT], false).await.unwrap();
        Person { client, conversation, name, unread: Vec::new() }
    }

    /// The SPQR epoch of each session stored at `path` (the store must not be open).
    fn spqr_epochs(path: &Path) -> BTreeMap<String, u64> {
        let snapshot = SqliteStore::open(path).unwrap().load().unwrap();
        snapshot
            .e2ee
            .sessions
            .iter()
            .map(|(name, bytes)| {
                let record = SessionRecord::from_bytes(bytes.expose()).unwrap();
                (name.clone(), record.current().unwrap().pq().epoch())
            })
            .collect()
    }

    /// The verification code of the identity the agent publishes (what a person's app shows).
    async fn published_code(relay: &RelayHandle) -> String {
        let client =
            PersonClient::connect(PersonClientConfig::new("carol", "carol-token", relay.base_url())).await.unwrap();
        let bundle = client.fetch_bundle(AGENT).await.unwrap();
        client.close().await;
        verification_code(&STANDARD.decode(bundle.bundle.identity_key).unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn official_agent_conversations_continue_on_our_agent() {
        pacerelle_conformance::oracle_dir();
        let root = std::env::temp_dir().join(format!("pacerelle-import-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let config = RelayConfig::loopback_ephemeral()
            .agent(AGENT, AGENT_TOKEN)
            .person("alice", "alice-token")
            .person("bob", "bob-token")
            .person("carol", "carol-token")
            .person("dave", "dave-token");
        let relay = Relay::spawn(config).await.unwrap();

        // The official agent converses: Alice from her phone (long enough for SPQR epochs to
        // turn) and her tablet, each in its own conversation, Bob from his laptop.
        let (base_url, official_root) = (relay.base_url(), root.clone());
        let official = tokio::task::spawn_blocking(move || {
            let config = OfficialAgentConfig::new(&base_url, AGENT, AGENT_TOKEN).encrypted().store_root(&official_root);
            OfficialAgent::start(&config)
        })
        .await
        .unwrap();
        let official_code = published_code(&relay).await;
        let mut people = vec![
            person(&relay, "alice", "phone", 1).await,
            person(&relay, "alice", "tablet", 3).await,
            person(&relay, "bob", "laptop", 5).await,
        ];
        for (person, messages) in people.iter_mut().zip([60, 3, 12]) {
            for i in 0..messages {
                person.exchange(&format!("to the official agent {i}")).await;
            }
            person.all_read().await;
        }
        // It stops (once it has saved its state and acknowledged every message).
        drop(official);

        // Ours imports its store and takes over.
        let target = root.join(AGENT).join(pacerelle_store_sqlite::FILE_NAME);
        let official_file = root.join(AGENT).join(pacerelle_store_sqlite::OFFICIAL_FILE_NAME);
        let official_bytes = std::fs::read(&official_file).unwrap();
        let report = import_python(&root, AGENT, &target).unwrap();
        assert_eq!(std::fs::read(&official_file).unwrap(), official_bytes, "the official store is left as it was");
        assert_eq!(report.verification_code, official_code, "the same identity");
        assert_eq!(report.sessions.len(), 3, "{report:?}");
        assert!(report.sessions_not_imported.is_empty(), "{report:?}");
        assert_eq!(report.peer_identities, 3);
        // The official agent published 50 one-time prekeys and deleted the three its sessions
        // used (Carol's fetched bundle started none).
        assert_eq!(report.one_time_prekeys, 47);
        assert_eq!(report.receipts, 75, "every message handled, so none is handled again");
        let epochs_at_import = spqr_epochs(&target);
        assert!(
            epochs_at_import.values().any(|epoch| *epoch >= 2),
            "SPQR turned before the import: {epochs_at_import:?}"
        );
        let config = ClientConfig {
            e2ee: true,
            ..ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(relay.base_url()).unwrap()
        };
        let mut client = Client::with_store(config, SqliteStore::open(&target).unwrap()).unwrap();
        client.on_message(|message, agent| async move {
            agent.reply(&message, format!("Received: {}", message.text)).await?;
            Ok(())
        });
        let handle = client.handle();
        let running = tokio::spawn(client.connect());
        assert_eq!(handle.verification_code().as_deref(), Some(official_code.as_str()));

        // Each conversation goes on: the people's next messages decrypt here, our answers on
        // their runtime, across further SPQR epochs in Alice's long one.
        for (person, messages) in people.iter_mut().zip([60, 3, 5]) {
            for i in 0..messages {
                person.exchange(&format!("to our agent {i}")).await;
            }
            person.all_read().await;
            assert!(person.client.take_refused().is_empty(), "{}: nothing refused", person.name);
        }
        assert_eq!(published_code(&relay).await, official_code, "our agent publishes the same identity");
        // A new person's session starts from the oldest one-time prekey the relay holds, one
        // the official agent published: its private half came over.
        let mut dave = person(&relay, "dave", "phone", 7).await;
        for i in 0..3 {
            dave.exchange(&format!("new to our agent {i}")).await;
        }
        dave.all_read().await;
        people.push(dave);

        handle.close();
        running.await.unwrap().unwrap();
        drop(handle);
        let again = import_python(&root, AGENT, &target);
        assert!(matches!(again, Err(ImportPythonError::TargetInUse(_))), "{again:?}");
        let epochs_after = spqr_epochs(&target);
        let long = epochs_at_import.iter().max_by_key(|(_, epoch)| **epoch).map(|(name, _)| name.clone()).unwrap();
        assert!(
            epochs_after[&long] > epochs_at_import[&long],
            "SPQR went on turning in {long} on our side: {epochs_at_import:?} then {epochs_after:?}"
        );
        for person in people {
            person.client.close().await;
        }
        relay.shutdown().await;
        let _ = std::fs::remove_dir_all(&root);
    }
}
