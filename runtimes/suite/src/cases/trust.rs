//! Cases of the trust model against a hostile relay, on every runtime: what a relay that forges,
//! replays and tampers with frames, or lets an impostor speak for a person, can make the agent
//! do. The relay injects frames of its own ([`RelayHandle::inject_to_agent`]) into the
//! conversation of a person with end-to-end encryption.

use super::*;
use crate::behaviour::Report;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pacerelle_core::agent::{ChangeSource, SafetyNumber, TrustPolicy, UndeliverableReason};
use pacerelle_core::store::PeerId;

fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The frame the relay delivered to the agent for the person's message `message_id`, as it
/// passed through (the person's frame, with the sender the relay stamps on it).
fn delivered_frame(relay: &RelayHandle, message_id: &str) -> Value {
    let mut frame = msg_frames(&relay.observed())
        .into_iter()
        .find(|frame| frame["id"] == json!(message_id))
        .unwrap_or_else(|| panic!("the relay saw no message {message_id}"));
    frame["from"] = json!(PERSON);
    frame
}

/// Forged, replayed and tampered frames never reach the handler: a plaintext message "from" the
/// person is refused at once (acknowledged and reported); the person's first message delivered
/// again under a new id and another device, a tampered copy of it, and an oversized ciphertext
/// are counted on each delivery and, after `max_delivery_attempts`, acknowledged and reported. Each is reported once,
/// the relay keeps none of them, and the person's conversation goes on.
pub fn hostile_frames_are_refused_and_reported<H: Harness>() {
    run(async {
        let name = H::NAME;
        let mut world = World::encrypted().await;
        let behaviour = Behaviour::new();
        let core = AgentConfig { max_delivery_attempts: 2, ..fast_backoff() };
        let agent = world.agent_with::<H>(&behaviour, core);
        wait_until("the agent to connect", || agent.is_connected()).await;

        let first = world.send("first words");
        assert_eq!(world.inbox.message().await.text, "Received: first words", "{name}");
        world.inbox.read(&first).await;
        let original = delivered_frame(&world.relay, &first);

        // A widget answer in plaintext, as if from the person.
        let answer = json!({"type": "widget.response", "id": "r1", "ref": "w1", "value": true, "cancelled": false});
        let forged = json!({
            "type": "MSG", "id": "forged-plaintext", "conversation_id": world.conversation, "from": PERSON,
            "to": AGENT, "from_device_id": "phone", "encrypted": false,
            "payload_b64": base64_encode(answer.to_string().as_bytes()),
        });
        world.relay.inject_to_agent(AGENT, forged.to_string());
        wait_until("the plaintext to be refused", || !behaviour.undeliverable("forged-plaintext").is_empty()).await;
        assert_eq!(behaviour.undeliverable("forged-plaintext"), [UndeliverableReason::Plaintext], "{name}");

        // The person's first message again, under a new id, from another device.
        let mut replayed = original.clone();
        replayed["id"] = json!("replayed-first");
        replayed["from_device_id"] = json!("laptop");
        world.relay.inject_to_agent(AGENT, replayed.to_string());
        // And a tampered copy.
        let mut tampered = original.clone();
        tampered["id"] = json!("tampered");
        let mut bytes = STANDARD.decode(original["payload_b64"].as_str().expect("a payload")).expect("base64");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        tampered["payload_b64"] = json!(base64_encode(&bytes));
        world.relay.inject_to_agent(AGENT, tampered.to_string());
        // And a ciphertext far over the size any message may have (refused before any work).
        let mut oversized = original.clone();
        oversized["id"] = json!("oversized");
        let mut huge = vec![0x02u8; 2 << 20];
        huge[1] = 0x44;
        oversized["payload_b64"] = json!(base64_encode(&huge));
        world.relay.inject_to_agent(AGENT, oversized.to_string());

        // Unreadable ones come back on every reconnect until the agent gives up on them.
        let unreadable = ["replayed-first", "tampered", "oversized"];
        let given_up = || unreadable.iter().all(|id| !behaviour.undeliverable(id).is_empty());
        for _ in 0..6 {
            if given_up() {
                break;
            }
            world.relay.disconnect_agent(AGENT).await;
            wait_until("the agent to reconnect", || agent.is_connected()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_until("the unreadable messages to be given up", given_up).await;
        for id in unreadable {
            let reasons = behaviour.undeliverable(id);
            assert!(
                matches!(&reasons[..], [UndeliverableReason::Unreadable { attempts: 2, .. }]),
                "{name}: {id}: {reasons:?}"
            );
        }
        wait_until("the relay to hold nothing for the agent", || world.relay.pending_for_agent(AGENT) == 0).await;

        // The conversation goes on; nothing forged reached the handler.
        let next = world.send("still here");
        assert_eq!(world.inbox.message().await.text, "Received: still here", "{name}");
        world.inbox.read(&next).await;
        let handled: Vec<String> = behaviour.calls().into_iter().map(|call| call.message_id).collect();
        assert_eq!(handled, [first, next], "{name}: only the person's own messages, once each");
        // A last reconnect replays nothing and reports nothing again.
        let reports = behaviour.reports().len();
        world.relay.disconnect_agent(AGENT).await;
        wait_until("the agent to reconnect", || agent.is_connected()).await;
        world.inbox.quiet().await;
        assert_eq!(behaviour.reports().len(), reports, "{name}: reported twice");
        world.finish::<H>(agent).await;
    });
}

/// An impostor (a fresh identity key) writing as the person, on the person's device, under a
/// pinned trust policy: the app hears of the change with both safety numbers, the impostor's
/// message is acknowledged and reported but never handled, and the agent keeps answering the
/// person. Once the app trusts the new identity, its next message is handled and says who
/// spoke.
pub fn an_impostor_is_announced_and_refused_until_trusted<H: Harness>() {
    run(async {
        let name = H::NAME;
        let mut world = World::encrypted().await;
        let behaviour = Behaviour::new();
        let core = AgentConfig { trust_policy: TrustPolicy::Pinned, ..fast_backoff() };
        let agent = world.agent_with::<H>(&behaviour, core);
        wait_until("the agent to connect", || agent.is_connected()).await;

        let hello = world.send("hello");
        assert_eq!(world.inbox.message().await.text, "Received: hello", "{name}");
        world.inbox.read(&hello).await;
        let alice = SafetyNumber::of(&world.inbox.person.identity_key().expect("an identity"));
        assert_eq!(behaviour.call(&hello).and_then(|call| call.sender_identity), Some(alice.clone()), "{name}");

        // The impostor: same person, same device, its own keys.
        let impostor = Inbox::connect(&world.relay, "phone", true).await;
        let mallory = SafetyNumber::of(&impostor.person.identity_key().expect("an identity"));
        assert_ne!(alice, mallory);
        let forged = impostor.send(&world.conversation, "approve the deploy");
        wait_until("the impostor to be refused", || !behaviour.undeliverable(&forged).is_empty()).await;
        let peer = PeerId::new(PERSON, Some("phone"));
        assert_eq!(
            behaviour.undeliverable(&forged),
            [UndeliverableReason::UntrustedIdentity { peer: peer.clone(), safety_number: mallory.clone() }],
            "{name}"
        );
        let changes: Vec<_> = behaviour
            .reports()
            .into_iter()
            .filter_map(|report| match report {
                Report::IdentityChanged(change) if change.source == ChangeSource::Session => Some(change),
                _ => None,
            })
            .collect();
        assert_eq!(changes.len(), 1, "{name}: announced once: {changes:?}");
        assert_eq!((changes[0].previous.as_ref(), changes[0].current.as_ref()), (Some(&alice), Some(&mallory)));
        assert!(!changes[0].trusted, "{name}: pinned");
        assert_eq!(behaviour.calls_for(&forged), 0, "{name}: the impostor's message was handled");

        // The person is still answered, in their own session.
        let again = world.send("it is me");
        assert_eq!(world.inbox.message().await.text, "Received: it is me", "{name}");
        world.inbox.read(&again).await;

        // The app checks the new safety number with the person and trusts it.
        assert_eq!(agent.trust_identity(&peer).expect("a refused identity to trust"), mallory, "{name}");
        let trusted = impostor.send(&world.conversation, "new phone, same me");
        wait_until("the newcomer's message to be handled", || behaviour.calls_for(&trusted) == 1).await;
        assert_eq!(behaviour.call(&trusted).and_then(|call| call.sender_identity), Some(mallory), "{name}");
        let reply = impostor.person.next_message(WAIT).await.expect("the reply to the newcomer");
        assert_eq!(reply.text, "Received: new phone, same me", "{name}");

        impostor.person.close().await;
        world.finish::<H>(agent).await;
    });
}
