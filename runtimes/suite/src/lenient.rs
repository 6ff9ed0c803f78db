//! Frames the official SDK accepts beyond strict JSON, on each runtime (issue 10, item 6): the
//! relay injects them into a plaintext agent's connection; each is handled once, as the official
//! SDK reads it, and acknowledged, and frames neither SDK can read are acknowledged after their
//! bounded deliveries and reported, so the relay replays nothing forever.

use crate::behaviour::{Behaviour, Report};
use crate::harness::{Harness, Running};
use crate::waiting::{run, wait_until};
use pacerelle_core::agent::{AgentConfig, UndeliverableReason};
use pacerelle_core::config::ClientConfig;
use pacerelle_core::connection::Backoff;
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use std::time::Duration;

const AGENT: &str = "lenient-agent";
const AGENT_TOKEN: &str = "lenient-agent-token";
const PERSON: &str = "alice";
const PERSON_TOKEN: &str = "alice-token";
const PROMPT: Duration = Duration::from_secs(3);

/// A `MSG` frame from the person in `conversation`, with `fields` (raw JSON text) appended.
fn frame(id: &str, conversation: &str, fields: &str) -> String {
    format!(
        r#"{{"type":"MSG","id":"{id}","conversation_id":"{conversation}","from":"{PERSON}","to":"{AGENT}"{fields}}}"#
    )
}

/// Lenient frames are handled once each with the official reading and acknowledged; an
/// identity change without an id is reported with an empty peer; a payload neither SDK can
/// decode, and a frame nested deeper than either reads, are acknowledged after their bounded
/// deliveries and reported once; after a last reconnect nothing comes back.
pub fn lenient_frames_are_read_as_the_official_sdk_reads_them<H: Harness>() {
    run(async {
        let name = H::NAME;
        let config = RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN).person(PERSON, PERSON_TOKEN);
        let relay: RelayHandle = Relay::spawn(config).await.expect("the relay starts");
        let person_config = PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url()).device("phone");
        let person = PersonClient::connect(person_config).await.expect("the person connects");
        let conversation = person.create_conversation(&[AGENT], false).await.expect("a conversation");

        let behaviour = Behaviour::new();
        let core = AgentConfig {
            backoff: Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(200) },
            max_delivery_attempts: 2,
            ..AgentConfig::new(AGENT)
        };
        let client = ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(relay.base_url()).expect("a base URL");
        let agent: Running = H::start(client, core, behaviour.clone());
        wait_until("the agent to connect", || agent.is_connected()).await;

        let c = conversation.as_str();
        // (id, frame, the text the official SDK hands its handler)
        let lenient = [
            ("device-number", frame("device-number", c, r#","from_device_id":3,"payload_b64":"aGk=""#), "hi"),
            ("reply-number", frame("reply-number", c, r#","reply_to_message_id":42,"payload_b64":"aGk=""#), "hi"),
            (
                "nan",
                frame("nan", c, r#","payload_b64":"aGk=","attachments":[{"id":"a","size":NaN,"width":Infinity}]"#),
                "hi",
            ),
            // Python: `b64decode(" aGVs\nbG8*=junk") == b"hello"`.
            ("loose-base64", frame("loose-base64", c, r#","payload_b64":" aGVs\nbG8*=junk""#), "hello"),
            ("no-payload", frame("no-payload", c, ""), ""),
            ("repeated-id", frame("first", c, r#","id":"repeated-id","payload_b64":"aGk=""#), "hi"),
        ];
        for (_, text, _) in &lenient {
            relay.inject_to_agent(AGENT, text.clone());
        }
        // Neither SDK reads these: Python's base64 refuses "aGk" (incorrect padding) and
        // json.loads raises past its recursion limit.
        let deep = format!(r#","payload_b64":"aGk=","attachments":{}{}"#, "[".repeat(1000), "]".repeat(1000));
        relay.inject_to_agent(AGENT, frame("bad-padding", c, r#","payload_b64":"aGk""#));
        relay.inject_to_agent(AGENT, frame("too-deep", c, &deep));

        for (id, _, text) in &lenient {
            wait_until(id, || behaviour.calls_for(id) == 1).await;
            assert_eq!(behaviour.call(id).map(|call| call.text).as_deref(), Some(*text), "{name}: {id}");
        }
        let unreadable = ["bad-padding", "too-deep"];
        let given_up = || unreadable.iter().all(|id| !behaviour.undeliverable(id).is_empty());
        for _ in 0..6 {
            if given_up() {
                break;
            }
            relay.disconnect_agent(AGENT).await;
            wait_until("the agent to reconnect", || agent.is_connected()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_until("the unreadable frames to be given up", given_up).await;
        for id in unreadable {
            let reasons = behaviour.undeliverable(id);
            assert!(
                matches!(&reasons[..], [UndeliverableReason::Unreadable { attempts: 2, .. }]),
                "{name}: {id}: {reasons:?}"
            );
        }
        wait_until("the relay to hold nothing for the agent", || relay.pending_for_agent(AGENT) == 0).await;

        // A last reconnect replays nothing: no second call, no second report.
        let (calls, reports) = (behaviour.calls().len(), behaviour.reports().len());
        relay.disconnect_agent(AGENT).await;
        wait_until("the agent to reconnect", || agent.is_connected()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(relay.pending_for_agent(AGENT), 0, "{name}: nothing pending");
        assert_eq!((behaviour.calls().len(), behaviour.reports().len()), (calls, reports), "{name}: nothing twice");
        for (id, _, _) in &lenient {
            assert_eq!(behaviour.calls_for(id), 1, "{name}: {id} handled once");
        }

        // The relay's hook queues what it injects, so this goes last: a real relay sends an
        // identity change once, and no SDK acknowledges it.
        relay.inject_to_agent(AGENT, r#"{"type":"IDENTITY_CHANGED"}"#);
        wait_until("the identity change", || {
            behaviour
                .reports()
                .iter()
                .any(|report| matches!(report, Report::IdentityChanged(change) if change.peer.user_id.is_empty()))
        })
        .await;

        agent.close();
        match agent.finished(PROMPT).await {
            Some(Ok(())) => {}
            other => panic!("{name}: connect after close: {other:?}"),
        }
        person.close().await;
        relay.shutdown().await;
    });
}
