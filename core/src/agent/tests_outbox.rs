//! No reply lost to a crash (issue 10, item 7): what a handler sent is committed with the
//! acceptance and sent again on a replay; what is sent outside a handler waits in a durable
//! outbox until a pong proves the relay read it. All without I/O, on a virtual clock.

use super::tests::{agent, at, connected_agent, drain, frames, msg_frame, receive};
use super::*;
use proptest::prelude::*;
use rand::SeedableRng;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The persisted changes among `outputs`.
fn persisted(outputs: &[Output]) -> Vec<&StoreChanges> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Persist(changes) => Some(changes),
            _ => None,
        })
        .collect()
}

/// The text of every frame among `outputs`, in order.
fn texts(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Frame(text) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn ack(id: &str) -> Value {
    json!({"type": "ACK_READ", "to": "u1", "message_id": id, "conversation_id": "c1"})
}

fn restarted(snapshot: AgentSnapshot) -> Agent {
    let rng = Box::new(rand::rngs::StdRng::seed_from_u64(9));
    let mut agent = Agent::new(AgentConfig::new("agent-1"), rng, snapshot).unwrap();
    agent.start(at(100));
    assert_eq!(agent.poll_output(), Some(Output::Connect));
    agent.handle_input(at(101), Input::Connected).unwrap();
    agent
}

/// Receives `id`, replies to it inside its handler call, accepts it; returns the reply's frame
/// text and the acceptance's outputs.
fn handled_with_reply(agent: &mut Agent, id: &str) -> (String, Vec<Output>) {
    let message = receive(agent, id, "hello", json!({}));
    agent.while_handling(id, |agent| agent.reply(&message, "hi back")).unwrap();
    let sent = drain(agent);
    assert!(matches!(sent.as_slice(), [Output::Frame(_)]), "a handler's reply waits for the acceptance: {sent:?}");
    let reply = texts(&sent).remove(0);
    agent.accept(id, at(20)).unwrap();
    (reply, drain(agent))
}

#[test]
fn a_reply_sent_while_handling_is_committed_with_the_acceptance() {
    let mut agent = agent();
    let (reply, accepted) = handled_with_reply(&mut agent, "m1");
    let reply_id = serde_json::from_str::<Value>(&reply).unwrap()["id"].as_str().unwrap().to_owned();
    let [Output::Persist(changes), Output::Frame(ack_frame)] = accepted.as_slice() else { panic!("{accepted:?}") };
    assert!(matches!(changes.put_receipts[0].state, ReceiptState::Accepted { .. }));
    assert_eq!(changes.put_sent_frames, vec![("m1".to_owned(), vec![SentFrame { id: reply_id, frame: reply }])]);
    assert!(changes.put_outbox.is_empty(), "a handler's reply is not an outbox entry");
    assert_eq!(serde_json::from_str::<Value>(ack_frame).unwrap(), ack("m1"));
}

#[test]
fn a_replay_of_an_accepted_message_sends_its_replies_again_before_the_ack() {
    let mut agent = agent();
    let (reply, _) = handled_with_reply(&mut agent, "m1");
    agent.handle_input(at(30), Input::Frame(msg_frame("m1", "hello", json!({})))).unwrap();
    let outputs = drain(&mut agent);
    assert_eq!(texts(&outputs)[0], reply, "byte for byte, under its original id");
    assert_eq!(frames(&outputs)[1], ack("m1"));
    assert_eq!(outputs.len(), 2, "{outputs:?}");
}

#[test]
fn a_message_accepted_without_sends_is_only_acknowledged_again() {
    let mut agent = agent();
    receive(&mut agent, "m1", "hello", json!({}));
    agent.accept("m1", at(20)).unwrap();
    let accepted = drain(&mut agent);
    assert!(persisted(&accepted)[0].put_sent_frames.is_empty());
    assert!(agent.snapshot().sent_frames.is_empty());
    agent.handle_input(at(30), Input::Frame(msg_frame("m1", "hello", json!({})))).unwrap();
    assert_eq!(frames(&drain(&mut agent)), vec![ack("m1")]);
}

#[test]
fn an_agent_killed_after_the_acceptance_commit_sends_the_reply_at_the_replay() {
    let mut agent = agent();
    let (reply, accepted) = handled_with_reply(&mut agent, "m1");
    // The process dies with the reply and the ACK still queued: only the commit happened.
    assert!(matches!(accepted[0], Output::Persist(_)));
    let mut agent = restarted(agent.snapshot().clone());
    drain(&mut agent);
    agent.handle_input(at(102), Input::Frame(msg_frame("m1", "hello", json!({})))).unwrap();
    let outputs = drain(&mut agent);
    assert_eq!(texts(&outputs), vec![reply, ack("m1").to_string()]);
    assert!(!outputs.iter().any(|output| matches!(output, Output::Event(_))), "not handled twice: {outputs:?}");
}

#[test]
fn frames_sent_on_a_lost_socket_go_again_ahead_of_the_acknowledgement() {
    let mut agent = agent();
    let message = receive(&mut agent, "m1", "hello", json!({}));
    agent.while_handling("m1", |agent| agent.reply(&message, "hi back")).unwrap();
    let reply = texts(&drain(&mut agent)).remove(0);
    // The socket drops while the handler runs, and a new one opens before it returns.
    agent.handle_input(at(11), Input::Disconnected).unwrap();
    agent.handle_input(at(12), Input::Timeout).unwrap();
    agent.handle_input(at(5_000), Input::Timeout).unwrap();
    agent.handle_input(at(5_001), Input::Connected).unwrap();
    drain(&mut agent);
    agent.accept("m1", at(5_002)).unwrap();
    let outputs = drain(&mut agent);
    assert!(matches!(outputs[0], Output::Persist(_)));
    assert_eq!(texts(&outputs), vec![reply, ack("m1").to_string()]);
}

#[test]
fn sends_outside_a_handler_are_durable_before_they_leave_and_resent_until_a_pong_proves_them() {
    let mut agent = agent();
    // A keepalive ping before the send: its pong proves nothing about the send.
    agent.handle_input(at(20_001), Input::Timeout).unwrap();
    assert_eq!(drain(&mut agent)[0], Output::Ping);
    let id = agent.send_message(OutgoingMessage::new("c1", "u1", "reminder")).unwrap();
    let outputs = drain(&mut agent);
    let [Output::Persist(changes), Output::Frame(frame), Output::Ping] = outputs.as_slice() else {
        panic!("{outputs:?}")
    };
    let entry = &changes.put_outbox[0];
    assert_eq!((entry.sent.id.as_str(), entry.sent.frame.as_str()), (id.as_str(), frame.as_str()));
    // A relay ping proves nothing; the keepalive's pong neither.
    agent.handle_input(at(20_002), Input::Ping).unwrap();
    agent.handle_input(at(20_003), Input::Pong).unwrap();
    assert!(drain(&mut agent).is_empty());
    assert_eq!(agent.snapshot().outbox.len(), 1);
    // The socket goes before the proof: at the next connection the frame goes again, the same
    // bytes, and the pong to the ping after it removes it.
    agent.handle_input(at(20_004), Input::Disconnected).unwrap();
    drain(&mut agent);
    agent.handle_input(at(60_000), Input::Timeout).unwrap();
    drain(&mut agent);
    agent.handle_input(at(60_001), Input::Connected).unwrap();
    let outputs = drain(&mut agent);
    assert_eq!(outputs[..2], [Output::Frame(frame.clone()), Output::Ping]);
    agent.handle_input(at(60_002), Input::Ping).unwrap();
    assert!(drain(&mut agent).is_empty(), "a relay ping confirms nothing");
    agent.handle_input(at(60_003), Input::Pong).unwrap();
    let outputs = drain(&mut agent);
    let [Output::Persist(changes)] = outputs.as_slice() else { panic!("{outputs:?}") };
    assert_eq!(changes.remove_outbox, vec![entry.seq]);
    assert!(agent.snapshot().outbox.is_empty());
    // Proven: not sent again.
    agent.handle_input(at(60_004), Input::Disconnected).unwrap();
    agent.handle_input(at(120_000), Input::Timeout).unwrap();
    agent.handle_input(at(120_001), Input::Connected).unwrap();
    assert!(texts(&drain(&mut agent)).is_empty());
}

#[test]
fn one_pong_proves_every_frame_before_its_ping_in_one_commit() {
    let mut agent = agent();
    for text in ["a", "b", "c"] {
        agent.send_message(OutgoingMessage::new("c1", "u1", text)).unwrap();
    }
    drain(&mut agent);
    // A restarted agent resends all three with one ping.
    let mut agent = restarted(agent.snapshot().clone());
    let outputs = drain(&mut agent);
    assert_eq!(texts(&outputs).len(), 3);
    assert_eq!(outputs.iter().filter(|output| **output == Output::Ping).count(), 1);
    agent.handle_input(at(102), Input::Pong).unwrap();
    let outputs = drain(&mut agent);
    assert_eq!(persisted(&outputs).len(), 1);
    assert_eq!(persisted(&outputs)[0].remove_outbox.len(), 3);
    assert!(agent.snapshot().outbox.is_empty());
}

#[test]
fn a_send_for_a_message_no_longer_with_the_handler_takes_the_outbox() {
    let mut agent = agent();
    let message = receive(&mut agent, "m1", "hello", json!({}));
    agent.accept("m1", at(20)).unwrap();
    drain(&mut agent);
    // A clone of the handler's handle, used after the handler returned.
    agent.while_handling("m1", |agent| agent.reply(&message, "later")).unwrap();
    let outputs = drain(&mut agent);
    assert_eq!(persisted(&outputs)[0].put_outbox.len(), 1);
    assert_eq!(outputs.last(), Some(&Output::Ping));
    assert!(!agent.snapshot().sent_frames.contains_key("m1"));
}

#[test]
fn a_handler_that_gives_up_leaves_its_sends_to_the_outbox() {
    let retry = HandlerRetry { max_attempts: 1, ..HandlerRetry::default() };
    let mut agent = connected_agent(AgentConfig { handler_retry: retry, ..AgentConfig::new("agent-1") });
    let message = receive(&mut agent, "m1", "hello", json!({}));
    agent.while_handling("m1", |agent| agent.reply(&message, "working on it")).unwrap();
    let reply = texts(&drain(&mut agent)).remove(0);
    agent.handler_failed("m1", "boom", at(20)).unwrap();
    let outputs = drain(&mut agent);
    let [Output::Persist(changes), Output::Ping, Output::Event(Event::HandlerGaveUp { .. })] = outputs.as_slice()
    else {
        panic!("{outputs:?}")
    };
    assert_eq!(changes.put_outbox[0].sent.frame, reply);
    agent.handle_input(at(21), Input::Pong).unwrap();
    assert_eq!(persisted(&drain(&mut agent))[0].remove_outbox.len(), 1);
}

#[test]
fn recorded_frames_are_bounded_per_message_then_take_the_outbox() {
    let mut agent = agent();
    let message = receive(&mut agent, "m1", "hello", json!({}));
    for _ in 0..=MAX_RECORDED_FRAMES {
        agent.while_handling("m1", |agent| agent.reply(&message, "part")).unwrap();
    }
    let outputs = drain(&mut agent);
    assert_eq!(texts(&outputs).len(), MAX_RECORDED_FRAMES + 1);
    assert_eq!(persisted(&outputs).len(), 1, "only the one beyond the bound: {outputs:?}");
    assert_eq!(agent.snapshot().outbox.len(), 1);
    agent.accept("m1", at(20)).unwrap();
    drain(&mut agent);
    assert_eq!(agent.snapshot().sent_frames["m1"].len(), MAX_RECORDED_FRAMES);
}

#[test]
fn the_outbox_is_bounded() {
    let mut agent = agent();
    for _ in 0..MAX_OUTBOX {
        agent.send_message(OutgoingMessage::new("c1", "u1", "tick")).unwrap();
    }
    drain(&mut agent);
    assert_eq!(
        agent.send_message(OutgoingMessage::new("c1", "u1", "tick")),
        Err(SendError::OutboxFull { limit: MAX_OUTBOX })
    );
    assert!(drain(&mut agent).is_empty(), "nothing sent, nothing persisted");
    // A handler's reply does not need the outbox.
    let message = receive(&mut agent, "m1", "hello", json!({}));
    agent.while_handling("m1", |agent| agent.reply(&message, "hi")).unwrap();
    // One pong proves the first frame and frees one place.
    agent.handle_input(at(30), Input::Pong).unwrap();
    drain(&mut agent);
    assert_eq!(agent.snapshot().outbox.len(), MAX_OUTBOX - 1);
    agent.send_message(OutgoingMessage::new("c1", "u1", "tick")).unwrap();
}

#[test]
fn sent_frames_go_with_their_receipt() {
    let mut agent = connected_agent(AgentConfig { max_accepted_receipts: 1, ..AgentConfig::new("agent-1") });
    handled_with_reply(&mut agent, "m1");
    assert!(agent.snapshot().sent_frames.contains_key("m1"));
    let (_, accepted) = handled_with_reply(&mut agent, "m2");
    assert_eq!(persisted(&accepted)[0].remove_receipts, vec!["m1".to_owned()]);
    assert_eq!(agent.snapshot().sent_frames.keys().collect::<Vec<_>>(), vec!["m2"]);
}

mod encrypted {
    use super::super::tests::encrypted::{conversing, drain_into, person_frames, to_agent, to_person};
    use super::*;
    use crate::human::{PersonEvent, PersonInput, PersonOutput};

    #[test]
    fn the_person_decrypts_a_resent_reply_exactly_once() {
        let (mut agent, mut store, mut person, _) = conversing();
        person.send_text("c1", "agent-1", "second").unwrap();
        let (sent, _) = person_frames(&mut person);
        let inbound = to_agent(&sent[0], "u1");
        agent.handle_input(at(10), Input::Frame(inbound.clone())).unwrap();
        let message = super::super::tests::only_message(&drain_into(&mut agent, &mut store));
        agent.while_handling(&message.id, |agent| agent.reply(&message, "secret answer")).unwrap();
        let reply = frames(&drain_into(&mut agent, &mut store)).remove(0);
        assert_eq!(reply["encrypted"], json!(true));
        assert!(!reply["payload_b64"].as_str().unwrap().is_empty());
        agent.accept(&message.id, at(11)).unwrap();
        let accepted = drain_into(&mut agent, &mut store);
        assert_eq!(persisted(&accepted)[0].put_sent_frames[0].1[0].frame, reply.to_string());

        // The relay replays the message (its ACK was lost): the ciphertext goes again.
        agent.handle_input(at(12), Input::Frame(inbound)).unwrap();
        let replayed = frames(&drain_into(&mut agent, &mut store));
        assert_eq!(replayed[0], reply, "the same ciphertext under the same id");

        let mut shown = Vec::new();
        for frame in [&reply, &replayed[0]] {
            person.handle_input(at(13), PersonInput::Frame(to_person(frame))).unwrap();
            while let Some(output) = person.poll_output() {
                if let PersonOutput::Event(PersonEvent::Message(message)) = output {
                    shown.push(message.text);
                }
            }
        }
        assert_eq!(shown, vec!["secret answer".to_owned()]);
    }

    #[test]
    fn an_encrypted_send_outside_a_handler_commits_the_session_and_the_frame_together() {
        let (mut agent, mut store, _, message) = conversing();
        agent.reply(&message, "later").unwrap();
        let outputs = drain_into(&mut agent, &mut store);
        let changes = persisted(&outputs);
        assert_eq!(changes.len(), 1, "{outputs:?}");
        assert!(!changes[0].e2ee.put_sessions.is_empty());
        assert_eq!(changes[0].put_outbox[0].sent.frame, texts(&outputs)[0]);
    }
}

/// A relay for the crash schedule: it holds the person's messages until acknowledged, and keeps
/// every message frame the agent sent, by id (deduplicating, as the development relay does).
#[derive(Default)]
struct CrashWorld {
    store: AgentSnapshot,
    unacknowledged: BTreeMap<String, String>,
    received: BTreeMap<String, Value>,
    /// Ids of outbox entries whose commit was carried out: each must reach the relay.
    committed_outbox: BTreeSet<String>,
    /// Messages whose acceptance was committed: never handed to the handler again.
    accepted: BTreeSet<String>,
    pings: usize,
}

struct Crashed;

impl CrashWorld {
    /// Carries out the agent's outputs in order, as a runtime would, running the handler (reply
    /// inside the handler call, then one notice outside it, then accept) on each message; dies
    /// when `budget` runs out.
    fn carry_out(&mut self, agent: &mut Agent, budget: &mut Option<usize>) -> Result<(), Crashed> {
        while let Some(output) = agent.poll_output() {
            if let Some(left) = budget {
                if *left == 0 {
                    return Err(Crashed);
                }
                *left -= 1;
            }
            match output {
                Output::Persist(changes) => {
                    self.store.apply(&changes);
                    self.committed_outbox.extend(changes.put_outbox.iter().map(|entry| entry.sent.id.clone()));
                    let accepted =
                        changes.put_receipts.iter().filter(|r| matches!(r.state, ReceiptState::Accepted { .. }));
                    self.accepted.extend(accepted.map(|receipt| receipt.message_id.clone()));
                }
                Output::Frame(text) => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    match frame["type"].as_str() {
                        Some("ACK_READ") => {
                            self.unacknowledged.remove(frame["message_id"].as_str().unwrap());
                        }
                        _ => {
                            self.received.entry(frame["id"].as_str().unwrap().to_owned()).or_insert(frame);
                        }
                    }
                }
                Output::Ping => self.pings += 1,
                Output::Event(Event::Message(message)) => {
                    let id = message.id.clone();
                    assert!(!self.accepted.contains(&id), "{id} handled again after its acceptance was committed");
                    agent.while_handling(&id, |agent| agent.reply(&message, "answer")).unwrap();
                    agent.send_message(OutgoingMessage::new("c1", "u1", format!("notice for {id}"))).unwrap();
                    agent.accept(&id, at(50)).unwrap();
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// One life of the agent: start from the store, connect, take every unacknowledged message
    /// and answer the pings; `Err` when it died.
    fn live(&mut self, seed: u64, mut budget: Option<usize>) -> Result<(), Crashed> {
        let rng = Box::new(rand::rngs::StdRng::seed_from_u64(seed));
        let mut agent = Agent::new(AgentConfig::new("agent-1"), rng, self.store.clone()).unwrap();
        agent.start(at(1));
        agent.handle_input(at(1), Input::Connected).unwrap();
        self.pings = 0;
        self.carry_out(&mut agent, &mut budget)?;
        let replays: Vec<String> = self.unacknowledged.values().cloned().collect();
        for frame in replays {
            agent.handle_input(at(2), Input::Frame(frame)).unwrap();
            self.carry_out(&mut agent, &mut budget)?;
        }
        while self.pings > 0 {
            self.pings -= 1;
            agent.handle_input(at(3), Input::Pong).unwrap();
            self.carry_out(&mut agent, &mut budget)?;
        }
        Ok(())
    }
}

proptest! {
    /// Killed after any prefix of its outputs, any number of times, a restarted agent never
    /// loses a reply nor a committed send outside a handler, and never handles a message again
    /// once its acceptance was committed.
    #[test]
    fn random_crash_points_never_lose_a_reply(
        messages in 1usize..5,
        crashes in proptest::collection::vec(0usize..40, 0..6),
    ) {
        let mut world = CrashWorld::default();
        for index in 0..messages {
            let id = format!("m{index}");
            world.unacknowledged.insert(id.clone(), msg_frame(&id, "question", json!({})));
        }
        for (life, budget) in crashes.iter().enumerate() {
            let _ = world.live(life as u64, Some(*budget));
        }
        prop_assert!(world.live(99, None).is_ok());
        prop_assert!(world.unacknowledged.is_empty());
        for index in 0..messages {
            let id = format!("m{index}");
            let replies = world.received.values().filter(|frame| frame["reply_to_message_id"] == json!(id)).count();
            prop_assert!(replies >= 1, "the reply to {} was lost", id);
        }
        for id in &world.committed_outbox {
            prop_assert!(world.received.contains_key(id), "the committed send {} was lost", id);
        }
        prop_assert!(world.store.outbox.is_empty(), "every send proven read in the end");
    }
}
