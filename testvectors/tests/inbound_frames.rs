//! Raw socket frames read by our agent as the official SDK's own client reads them
//! (`testvectors/vectors/inbound_frames.json`, made by `oracle/vectors.py` from the SDK's
//! `_handle_raw`): the same outcome, and for a message the same ids, device, reply link, text,
//! digest and acknowledgement.
//!
//! Each frame goes to a fresh plaintext [`Agent`] as [`Input::Frame`], the level a runtime feeds
//! it at. Where the official client raises (its `connect` ends), ours refuses the frame and, when
//! the frame names itself, acknowledges it after its bounded deliveries, so the relay does not
//! replay it forever. One case cannot be mirrored: `a lone surrogate` (Python holds a string with
//! a lone surrogate; Rust has no UTF-8 form for it), which ours refuses and acknowledges that way.

use pacerelle_core::store::AgentSnapshot;
use pacerelle_core::wire::agent::refused_msg_ids;
use pacerelle_core::{Agent, AgentConfig, Event, Input, Output, Timestamp};
use rand::SeedableRng as _;
use serde_json::Value;

/// Cases where ours differs from the official SDK, each explained in the module docs.
const DIVERGENT: [&str; 1] = ["a lone surrogate"];

fn at(millis: u64) -> Timestamp {
    Timestamp::from_millis(millis)
}

fn connected() -> Agent {
    let mut agent = Agent::new(
        AgentConfig::new("agent-1"),
        Box::new(rand::rngs::StdRng::seed_from_u64(7)),
        AgentSnapshot::default(),
    )
    .expect("an agent");
    agent.start(at(0));
    agent.handle_input(at(1), Input::Connected).expect("connected");
    drain(&mut agent);
    agent
}

fn drain(agent: &mut Agent) -> Vec<Output> {
    std::iter::from_fn(|| agent.poll_output()).collect()
}

fn sent_frames(outputs: &[Output]) -> Vec<Value> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Frame(text) => serde_json::from_str(text).ok(),
            _ => None,
        })
        .collect()
}

/// Delivers a frame the official SDK cannot read as the relay would, again and again: it must
/// never reach a handler, and a frame that names itself must end acknowledged.
fn refused(frame: &str) -> Result<(), String> {
    let mut agent = connected();
    let attempts = AgentConfig::new("agent-1").max_delivery_attempts;
    let mut acks = Vec::new();
    for attempt in 1..=attempts {
        let result = agent.handle_input(at(10 + u64::from(attempt)), Input::Frame(frame.to_owned()));
        let outputs = drain(&mut agent);
        if outputs.iter().any(|output| matches!(output, Output::Event(Event::Message(_)))) {
            return Err("handed to the handler".into());
        }
        if result.is_ok() {
            return Err("accepted".into());
        }
        acks.extend(sent_frames(&outputs));
    }
    match refused_msg_ids(frame) {
        Some(named) => {
            let expected = serde_json::json!({"type": "ACK_READ", "to": named.from, "message_id": named.id,
                "conversation_id": named.conversation_id});
            if acks != [expected] {
                return Err(format!("named but not acknowledged once after its deliveries: {acks:?}"));
            }
        }
        None if !acks.is_empty() => return Err(format!("unnamed but acknowledged: {acks:?}")),
        None => {}
    }
    Ok(())
}

fn check(case: &Value) -> Result<(), String> {
    let frame = case["frame"].as_str().ok_or("no frame")?;
    let mut agent = connected();
    let result = agent.handle_input(at(10), Input::Frame(frame.to_owned()));
    let outputs = drain(&mut agent);
    match case["outcome"].as_str() {
        Some("message") => {
            result.map_err(|error| format!("refused: {error}"))?;
            let expected = &case["message"];
            let (message, digest) = outputs
                .iter()
                .find_map(|output| match output {
                    Output::Event(Event::Message(message)) => Some(message),
                    _ => None,
                })
                .zip(outputs.iter().find_map(|output| match output {
                    Output::Persist(changes) => changes.put_receipts.first().map(|receipt| receipt.digest.clone()),
                    _ => None,
                }))
                .ok_or_else(|| format!("no message and receipt: {outputs:?}"))?;
            let ours = serde_json::json!({
                "id": message.id, "conversation_id": message.conversation_id, "from": message.from,
                "from_device_id": message.from_device_id, "reply_to_message_id": message.reply_to_message_id,
                "text": message.text, "encrypted": message.encrypted,
            });
            if &ours != expected {
                return Err(format!("message {ours} != {expected}"));
            }
            if digest != case["digest"] {
                return Err(format!("digest {digest} != {}", case["digest"]));
            }
            agent.accept(&message.id, at(11)).map_err(|error| format!("accept: {error}"))?;
            let acks = sent_frames(&drain(&mut agent));
            if acks.as_slice() != case["acks"].as_array().map(Vec::as_slice).unwrap_or_default() {
                return Err(format!("acks {acks:?} != {}", case["acks"]));
            }
            Ok(())
        }
        Some("identity_changed") => {
            result.map_err(|error| format!("refused: {error}"))?;
            match &outputs[..] {
                [Output::Event(Event::IdentityChanged(change))] if change.peer.user_id == case["peer_id"] => Ok(()),
                other => Err(format!("expected the peer {}: {other:?}", case["peer_id"])),
            }
        }
        Some("refused") => refused(frame),
        Some("ignored") => match result {
            Err(pacerelle_core::agent::InputError::Frame(error)) if error.is_ignorable() && outputs.is_empty() => {
                Ok(())
            }
            other => Err(format!("not dropped silently: {other:?} {outputs:?}")),
        },
        other => Err(format!("unknown outcome {other:?}")),
    }
}

#[test]
fn frames_are_read_as_the_official_sdk_reads_them() {
    let vectors = pacerelle_conformance::load_vectors("vectors/inbound_frames.json");
    assert_eq!(vectors["sdk_version"], "0.1.0a8");
    let cases = vectors["cases"].as_array().expect("cases");
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let result = if DIVERGENT.contains(&name) {
            assert_eq!(case["outcome"], "message", "{name}: the official SDK reads it");
            refused(case["frame"].as_str().expect("a frame"))
        } else {
            check(case)
        };
        checked += 1;
        if let Err(problem) = result {
            mismatches.push(format!("{name}: {problem}"));
        }
    }
    assert!(mismatches.is_empty(), "{} of {checked} cases differ:\n{}", mismatches.len(), mismatches.join("\n"));
    // Every kind of outcome is covered, so none is checked vacuously.
    for outcome in ["message", "identity_changed", "refused", "ignored"] {
        assert!(cases.iter().any(|case| case["outcome"] == outcome), "no {outcome} case");
    }
    eprintln!("inbound_frames.json: {checked} cases match the official SDK");
}
