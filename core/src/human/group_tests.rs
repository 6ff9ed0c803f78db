//! Group conversations on the person side, end to end without I/O: a person distributes keys to
//! an agent and another person through Signal, rotates them, seals group messages, and the other
//! person fetches its keys and opens them; envelopes are checked as the official SDK checks them.

use super::group::{self, GroupKeyring, GroupMember, GroupReadError};
use super::*;
use crate::Rng;
use crate::e2ee::pq::PqPolicy;
use crate::payload::group::{GroupKey, parse_sender_key};
use crate::wire::http::{GroupKeyEnvelope, OneTimePrekeysBody, PrekeyBundleBody};
use crate::wire::person::{DistributeGroupKeys, GroupKeyForRecipient};
use proptest::prelude::*;
use rand::SeedableRng;
use serde_json::json;
use zeroize::Zeroizing;

const GROUP: &str = "g1";
const TO_GROUP: &str = "group:g1";

fn rng(seed: u64) -> Box<Rng> {
    Box::new(rand::rngs::StdRng::seed_from_u64(seed))
}

fn connected(id: &str, device: Option<&str>, seed: u64) -> Person {
    let config = PersonConfig { e2ee: true, device_id: device.map(str::to_owned), ..PersonConfig::new(id) };
    let mut person = Person::new(config, rng(seed));
    person.start();
    person.handle_input(Timestamp::from_millis(0), PersonInput::Connected).unwrap();
    drain(&mut person);
    person
}

fn drain(person: &mut Person) -> Vec<PersonOutput> {
    std::iter::from_fn(|| person.poll_output()).collect()
}

fn requests(outputs: &[PersonOutput]) -> Vec<HttpRequest> {
    outputs
        .iter()
        .filter_map(|output| match output {
            PersonOutput::Http(request) => Some(request.clone()),
            _ => None,
        })
        .collect()
}

fn frames(outputs: &[PersonOutput]) -> Vec<Value> {
    outputs
        .iter()
        .filter_map(|output| match output {
            PersonOutput::Frame(text) => serde_json::from_str(text).ok(),
            _ => None,
        })
        .collect()
}

fn events(outputs: Vec<PersonOutput>) -> Vec<PersonEvent> {
    outputs
        .into_iter()
        .filter_map(|output| match output {
            PersonOutput::Event(event) => Some(event),
            _ => None,
        })
        .collect()
}

fn answer(person: &mut Person, request: &HttpRequest, status: u16, body: Vec<u8>) -> Vec<PersonOutput> {
    person
        .handle_input(Timestamp::from_millis(1), PersonInput::Http(request.id, Ok(HttpResponse { status, body })))
        .unwrap();
    drain(person)
}

fn fetched(bundle: PrekeyBundleBody, one_time: &OneTimePrekeysBody) -> Vec<u8> {
    let key = &one_time.one_time_prekeys[0];
    let fetched = FetchedBundle { bundle, prekey_id: Some(key.prekey_id), prekey_public: Some(key.public_key.clone()) };
    serde_json::to_vec(&fetched).unwrap()
}

/// Bob publishes his prekeys; returns what the relay would hand Alice for him.
fn publish(bob: &mut Person) -> Vec<u8> {
    let job = bob.publish_prekeys().unwrap();
    let put = requests(&drain(bob)).remove(0);
    assert_eq!((put.method, put.path.as_str()), (HttpMethod::Put, "/person/prekey-bundle"));
    let bundle: PrekeyBundleBody = serde_json::from_slice(&put.body).unwrap();
    let post = requests(&answer(bob, &put, 200, b"{}".to_vec())).remove(0);
    assert_eq!((post.method, post.path.as_str()), (HttpMethod::Post, "/person/one-time-prekeys"));
    let one_time: OneTimePrekeysBody = serde_json::from_slice(&post.body).unwrap();
    let done = events(answer(bob, &post, 200, b"{}".to_vec()));
    assert_eq!(done, vec![PersonEvent::PrekeysPublished { request: job }]);
    fetched(bundle, &one_time)
}

/// A native agent: its account, and its bundle as the relay hands it out.
fn agent() -> (Account, Vec<u8>) {
    let mut rng = rng(77);
    let mut account = Account::new(PqPolicy::default().factory(), &mut *rng).0;
    let (_, bundle, one_time) = account.publish(&mut *rng).unwrap();
    (account, fetched(bundle, &one_time))
}

/// Alice's distribution goes on (answering the bundle fetches); returns the envelopes she
/// posted and her events.
fn distribute(alice: &mut Person, bundles: &[(&str, &[u8])]) -> (Vec<GroupKeyForRecipient>, Vec<PersonEvent>) {
    let mut outputs = drain(alice);
    for (path, body) in bundles {
        let fetch = requests(&outputs).into_iter().find(|request| request.path == *path).expect(path);
        outputs.retain(|output| !matches!(output, PersonOutput::Http(request) if request.id == fetch.id));
        outputs.extend(answer(alice, &fetch, 200, body.to_vec()));
    }
    let post = requests(&outputs).into_iter().find(|request| request.path == "/person/group-keys").expect("a post");
    let posted: DistributeGroupKeys = serde_json::from_slice(&post.body).unwrap();
    let done = events(answer(alice, &post, 200, br#"{"stored":2}"#.to_vec()));
    (posted.envelopes, done)
}

/// A frame Alice sent, as the relay hands it to another member.
fn delivered(frame: &Value, from: &str) -> String {
    let mut frame = frame.clone();
    frame["from"] = json!(from);
    frame.to_string()
}

/// Sends a group text and answers the key sync with nothing new; returns the frame.
fn send_group(person: &mut Person, text: &str) -> Value {
    person.send_text(GROUP, TO_GROUP, text).unwrap();
    let outputs = drain(person);
    let sync = requests(&outputs).remove(0);
    assert_eq!((sync.method, sync.path.as_str()), (HttpMethod::Get, "/person/group-keys?conversation_id=g1"));
    assert!(frames(&outputs).is_empty(), "nothing sent before the keys are synced");
    frames(&answer(person, &sync, 200, b"[]".to_vec())).remove(0)
}

/// Feeds a group frame to Bob; answers his key sync with `served` when he asks; returns the events.
fn receive(bob: &mut Person, frame: String, served: &[GroupKeyEnvelope]) -> Vec<PersonOutput> {
    bob.handle_input(Timestamp::from_millis(2), PersonInput::Frame(frame)).unwrap();
    let outputs = drain(bob);
    match requests(&outputs).first() {
        Some(sync) => answer(bob, sync, 200, serde_json::to_vec(served).unwrap()),
        None => outputs,
    }
}

fn message(outputs: &[PersonOutput]) -> PersonMessage {
    outputs
        .iter()
        .find_map(|output| match output {
            PersonOutput::Event(PersonEvent::Message(message)) => Some(message.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("a message: {outputs:?}"))
}

/// What the relay serves `member` of what `sender` posted.
fn for_member(envelopes: &[GroupKeyForRecipient], member: &str, sender: &str) -> Vec<GroupKeyEnvelope> {
    envelopes
        .iter()
        .filter(|envelope| envelope.recipient_id == member)
        .map(|envelope| GroupKeyEnvelope {
            conversation_id: envelope.conversation_id.clone(),
            key_id: envelope.key_id.clone(),
            epoch: envelope.epoch,
            sender_id: sender.to_owned(),
            sender_device_id: envelope.sender_device_id.clone(),
            envelope_b64: envelope.envelope_b64.clone(),
        })
        .collect()
}

#[test]
fn a_group_key_reaches_every_member_and_group_messages_open_across_epochs() {
    let mut alice = connected("alice", Some("phone"), 1);
    let mut bob = connected("bob", None, 2);
    let bob_bundle = publish(&mut bob);
    let (mut agent, agent_bundle) = agent();
    let members = [GroupMember::agent("agent-1"), GroupMember::person("bob"), GroupMember::person("alice")];

    let job = alice.distribute_group_key(GROUP, &members).unwrap();
    let bundles: [(&str, &[u8]); 2] =
        [("/person/agents/agent-1/prekey-bundle", &agent_bundle), ("/person/persons/bob/prekey-bundle", &bob_bundle)];
    let (envelopes, done) = distribute(&mut alice, &bundles);
    let [PersonEvent::GroupKeyDistributed { request, epoch: 1, recipients: 2, key_id, .. }] = done.as_slice() else {
        panic!("{done:?}")
    };
    assert_eq!(*request, job);
    assert_eq!(envelopes.len(), 2, "one envelope per other member, none for Alice");
    assert!(envelopes.iter().all(|envelope| envelope.sender_device_id.as_deref() == Some("phone")));

    // The agent opens its envelope with Alice's session; the key matches the envelope.
    let for_agent = envelopes.iter().find(|envelope| envelope.recipient_id == "agent-1").unwrap();
    let sealed = STANDARD.decode(&for_agent.envelope_b64).unwrap();
    let (plaintext, _, _) = agent.decrypt(&["human:alice:g1:device:phone"], &sealed, &mut *rng(5)).unwrap();
    let agent_key = parse_sender_key(std::str::from_utf8(&plaintext).unwrap()).unwrap();
    assert_eq!((agent_key.key_id.as_str(), agent_key.epoch), (key_id.as_str(), 1));

    // Alice's group message: sealed once, for the agent and for Bob.
    let frame = send_group(&mut alice, "bonjour le groupe");
    assert_eq!((frame["to"].as_str(), frame["encrypted"].as_bool()), (Some(TO_GROUP), Some(true)));
    assert!(frame.get("to_device_id").is_none());
    let payload = frame["payload_b64"].as_str().unwrap();
    assert_eq!(crate::payload::group::open(&agent_key, GROUP, payload).unwrap(), "bonjour le groupe");

    // Bob has no key yet: he fetches his envelopes, opens them with Alice's session, then reads.
    let bob_envelopes = for_member(&envelopes, "bob", "alice");
    let outputs = receive(&mut bob, delivered(&frame, "alice"), &bob_envelopes);
    let read = message(&outputs);
    assert_eq!(read.text, "bonjour le groupe");
    assert!(read.is_group() && read.encrypted);
    assert_eq!(read.group_key(), Some((key_id.clone(), 1)));
    assert_eq!(frames(&outputs)[0]["type"], "ACK_READ");
    assert_eq!(bob.group_epoch(GROUP), 1);

    // Bob answers the group under the key he now holds; Alice reads it without fetching.
    let answer_frame = send_group(&mut bob, "salut Alice");
    let outputs = receive(&mut alice, delivered(&answer_frame, "bob"), &[]);
    assert!(requests(&outputs).is_empty(), "Alice holds the key");
    assert_eq!(message(&outputs).text, "salut Alice");

    // Rotation: epoch 2 reaches both members through the sessions already started.
    alice.rotate_group_key(GROUP).unwrap();
    let (rotated, done) = distribute(&mut alice, &[]);
    assert!(matches!(done.as_slice(), [PersonEvent::GroupKeyDistributed { epoch: 2, .. }]), "{done:?}");
    let late_epoch_one = crate::payload::group::seal(&agent_key, &[9; 12], "encore l'époque 1");
    let frame = send_group(&mut alice, "époque deux");
    let outputs = receive(&mut bob, delivered(&frame, "alice"), &for_member(&rotated, "bob", "alice"));
    let read = message(&outputs);
    assert_eq!((read.text.as_str(), read.group_key().map(|key| key.1)), ("époque deux", Some(2)));
    // An epoch-1 message from the agent still opens, and Bob now seals under epoch 2.
    let from_agent = json!({"type": "MSG", "id": "late", "conversation_id": GROUP, "from": "agent-1", "to": TO_GROUP,
                            "payload_b64": late_epoch_one, "encrypted": true});
    let outputs = receive(&mut bob, from_agent.to_string(), &[]);
    assert_eq!(message(&outputs).text, "encore l'époque 1");
    let bob_frame = send_group(&mut bob, "moi aussi");
    let payload = bob_frame["payload_b64"].as_str().unwrap();
    assert_eq!(group::named_key(GROUP, payload).unwrap().1, 2);
}

#[test]
fn envelopes_that_do_not_match_their_key_are_refused_and_the_message_reported() {
    let mut alice = connected("alice", None, 11);
    let mut bob = connected("bob", None, 12);
    let bob_bundle = publish(&mut bob);
    alice.distribute_group_key(GROUP, &[GroupMember::person("bob")]).unwrap();
    let (envelopes, _) = distribute(&mut alice, &[("/person/persons/bob/prekey-bundle", &bob_bundle)]);
    let frame = send_group(&mut alice, "secret");
    let genuine = for_member(&envelopes, "bob", "alice");
    // The relay (or a member) relabels the envelope: the key inside says otherwise.
    let relabelled = vec![GroupKeyEnvelope { epoch: 7, ..genuine[0].clone() }];
    let outputs = receive(&mut bob, delivered(&frame, "alice"), &relabelled);
    let reported = events(outputs.clone());
    assert!(
        matches!(reported.as_slice(), [PersonEvent::Unreadable { message_id, .. }] if *message_id == frame["id"]),
        "{reported:?}"
    );
    assert!(frames(&outputs).is_empty(), "an unreadable message is not acknowledged");
    assert_eq!(bob.group_epoch(GROUP), 0);

    // Entries of another conversation or with a float epoch are refused before any decryption.
    let other = json!({"conversation_id": "g2", "key_id": "k", "epoch": 1, "sender_id": "alice", "envelope_b64": ""});
    assert_eq!(group::read_envelope(&other, GROUP), Err(group::SenderKeyRejected::WrongConversation));
    let float =
        json!({"conversation_id": GROUP, "key_id": "k", "epoch": 1.0, "sender_id": "alice", "envelope_b64": ""});
    assert_eq!(group::read_envelope(&float, GROUP), Err(group::SenderKeyRejected::InvalidEnvelope));
}

#[test]
fn a_group_send_without_any_key_is_reported_not_sent_and_never_plaintext() {
    let mut alice = connected("alice", None, 21);
    let id = alice.send_text(GROUP, TO_GROUP, "personne n'a de clé").unwrap();
    let sync = requests(&drain(&mut alice)).remove(0);
    let outputs = answer(&mut alice, &sync, 200, b"[]".to_vec());
    assert!(frames(&outputs).is_empty());
    assert_eq!(
        events(outputs),
        vec![PersonEvent::NotSent {
            message_id: id,
            error: PersonError::NoGroupKey { conversation_id: GROUP.into() }.to_string()
        }]
    );
    assert_eq!(alice.rotate_group_key(GROUP), Err(PersonError::UnknownGroup { conversation_id: GROUP.into() }));
    let mut plain = Person::new(PersonConfig::new("carol"), rng(3));
    assert_eq!(plain.distribute_group_key(GROUP, &[]), Err(PersonError::E2eeRequired));
}

#[test]
fn sender_key_plaintexts_read_back_and_never_show_the_key() {
    let key = group::new_key("groupe-é", 3, &mut *rng(4));
    let text = group::sender_key_plaintext(&key);
    assert!(text.starts_with(
        r#"{"type":"pacerelle.group.sender_key","v":1,"alg":"AES-256-GCM","conversation_id":"groupe-\u00e9""#
    ));
    assert_eq!(parse_sender_key(&text), Some(key.clone()));
    assert!(!format!("{key:?}").contains(&STANDARD.encode(key.raw_key.as_slice())));
}

fn key(epoch: u64, byte: u8) -> GroupKey {
    GroupKey { conversation_id: GROUP.into(), key_id: format!("k{epoch}"), epoch, raw_key: Zeroizing::new([byte; 32]) }
}

proptest! {
    /// Whatever order keys arrive in (rotations included), a message opens exactly when its
    /// key is held, and sends use the highest epoch held.
    #[test]
    fn a_group_message_opens_exactly_when_its_key_is_held(
        arrivals in proptest::sample::subsequence((1u64..=6).collect::<Vec<_>>(), 0..=6).prop_shuffle(),
        probe in 1u64..=6,
    ) {
        let messages: Vec<(u64, String)> =
            (1..=6u64).map(|epoch| (epoch, crate::payload::group::seal(&key(epoch, epoch as u8), &[epoch as u8; 12], "m"))).collect();
        let mut keyring = GroupKeyring::new();
        for (step, epoch) in arrivals.iter().enumerate() {
            prop_assert!(keyring.insert(key(*epoch, *epoch as u8)));
            prop_assert!(!keyring.insert(key(*epoch, 0)), "a held key is never replaced");
            let held = &arrivals[..=step];
            for (sealed_under, payload) in &messages {
                let opened = keyring.open(GROUP, payload);
                if held.contains(sealed_under) {
                    prop_assert_eq!(opened, Ok("m".to_owned()));
                } else {
                    let missing = matches!(opened, Err(GroupReadError::MissingKey { epoch, .. }) if epoch == *sealed_under as i64);
                    prop_assert!(missing);
                }
            }
            prop_assert_eq!(keyring.highest_epoch(GROUP), held.iter().copied().max().unwrap_or(0));
        }
        let (payload, epoch) = match keyring.seal(GROUP, &[1; 12], "n") {
            Some(sealed) => sealed,
            None => { prop_assert!(arrivals.is_empty()); return Ok(()); }
        };
        prop_assert_eq!(Some(epoch), arrivals.iter().copied().max());
        prop_assert_eq!(keyring.open(GROUP, &payload), Ok("n".to_owned()));
        prop_assert_eq!(keyring.holds(GROUP, &format!("k{probe}"), probe), arrivals.contains(&probe));
    }
}
