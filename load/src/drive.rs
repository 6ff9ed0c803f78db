//! The people under load: K native encrypted people, one conversation each with the agent,
//! sending either with W messages in flight (closed loop) or on a fixed schedule (open loop),
//! and checking that every reply arrives, decrypts and echoes its message.

use crate::error::LoadError;
use pacerelle_core::human::PersonEvent;
use pacerelle_relay::RelayHandle;
use pacerelle_tokio::{ClientError, PersonClient, PersonClientConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// How long a conversation waits without any reply before the run fails: long enough for the
/// official agent's backlog at the highest offered rates, short enough that a lost reply ends
/// the run rather than hang it.
pub const IDLE_LIMIT: Duration = Duration::from_secs(120);

/// The prefix of the echo both agents reply with (the official agent script's).
pub const ECHO_PREFIX: &str = "Received: ";

/// How the people send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Closed loop: each conversation sends `messages`, keeping `window` of them unanswered
    /// (the next one leaves when a reply arrives).
    Window {
        /// Messages per conversation.
        messages: usize,
        /// Messages in flight per conversation.
        window: usize,
    },
    /// Open loop: `total` messages at a fixed `per_second` across all conversations, in turn,
    /// whether or not replies keep up. Latency counts from the scheduled moment, so a late
    /// sender cannot hide a slow agent.
    Rate {
        /// Offered messages per second, all conversations together.
        per_second: f64,
        /// Messages in all.
        total: usize,
    },
}

impl Pacing {
    /// How many messages a run with `conversations` conversations sends.
    pub fn total(&self, conversations: usize) -> usize {
        match *self {
            Pacing::Window { messages, .. } => messages * conversations,
            Pacing::Rate { total, .. } => total,
        }
    }

    fn check(&self) -> Result<(), LoadError> {
        match *self {
            Pacing::Window { messages, window } if messages == 0 || window == 0 => {
                Err(LoadError::Plan("messages and window must be at least 1"))
            }
            Pacing::Rate { per_second, total } if !(per_second.is_finite() && per_second > 0.0) || total == 0 => {
                Err(LoadError::Plan("the rate must be positive and at least one message sent"))
            }
            _ => Ok(()),
        }
    }
}

/// What a reply says, as far as checking it goes.
#[derive(Debug, Clone, Copy)]
pub struct Reply<'a> {
    /// The message it answers.
    pub reply_to: Option<&'a str>,
    /// Who sent it.
    pub from: &'a str,
    /// Its (decrypted) text.
    pub text: &'a str,
    /// Whether it came encrypted.
    pub encrypted: bool,
}

/// The messages of one conversation still waiting for their reply.
#[derive(Debug)]
pub struct Ledger {
    conversation: usize,
    agent_id: String,
    pending: HashMap<String, (String, Instant)>,
}

impl Ledger {
    /// An empty ledger for conversation `conversation` with `agent_id`.
    pub fn new(conversation: usize, agent_id: &str) -> Self {
        Ledger { conversation, agent_id: agent_id.to_owned(), pending: HashMap::new() }
    }

    /// Message `id` with `text` left (or was due to leave) at `at`.
    pub fn sent(&mut self, id: String, text: String, at: Instant) {
        self.pending.insert(id, (text, at));
    }

    /// Checks `reply` (at `now`) against the message it answers and returns that message's
    /// latency. A reply must answer a pending message of this conversation, come from the
    /// agent, encrypted, and echo the message's text.
    pub fn answer(&mut self, reply: Reply<'_>, now: Instant) -> Result<Duration, LoadError> {
        let conversation = self.conversation;
        let id = reply.reply_to.ok_or(LoadError::UnexpectedReply { conversation })?;
        let (text, at) = self.pending.remove(id).ok_or(LoadError::UnexpectedReply { conversation })?;
        if !reply.encrypted {
            return Err(LoadError::Unencrypted { conversation });
        }
        if reply.from != self.agent_id || reply.text.strip_prefix(ECHO_PREFIX) != Some(text.as_str()) {
            return Err(LoadError::WrongReply { conversation });
        }
        Ok(now.saturating_duration_since(at))
    }

    /// How many replies are still due.
    pub fn missing(&self) -> usize {
        self.pending.len()
    }
}

/// One person and their conversation with the agent.
struct Conversation {
    index: usize,
    person_id: String,
    person: PersonClient,
    conversation_id: String,
    agent_id: String,
    ledger: Mutex<Ledger>,
}

impl Conversation {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // Nothing panics while holding it; a poisoned ledger is still consistent.
        self.ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn person_error(&self, source: ClientError) -> LoadError {
        LoadError::Person { person: self.person_id.clone(), source }
    }

    /// Sends message `seq`, recorded as leaving at `at`. The ledger is held across the send so
    /// that its reply cannot be read before the message is recorded.
    fn send(&self, seq: usize, at: Instant) -> Result<(), LoadError> {
        let text = format!("load {} {seq}", self.index);
        let mut ledger = self.ledger();
        let id =
            self.person.send_text(&self.conversation_id, &self.agent_id, &text).map_err(|e| self.person_error(e))?;
        ledger.sent(id, text, at);
        Ok(())
    }

    /// Waits for the next reply, checks it and returns its latency.
    async fn next_reply(&self) -> Result<Duration, LoadError> {
        loop {
            let event = match self.person.next_event(IDLE_LIMIT).await {
                Ok(event) => event,
                Err(ClientError::TimedOut(_)) => {
                    return Err(LoadError::Stalled {
                        conversation: self.index,
                        missing: self.ledger().missing(),
                        idle: IDLE_LIMIT,
                    });
                }
                Err(error) => return Err(self.person_error(error)),
            };
            // Read receipts and the rest say nothing about replies.
            if let PersonEvent::Message(message) = event {
                let reply = Reply {
                    reply_to: message.reply_to_message_id.as_deref(),
                    from: &message.from,
                    text: &message.text,
                    encrypted: message.encrypted,
                };
                return self.ledger().answer(reply, Instant::now());
            }
        }
    }

    fn check_refused(&self) -> Result<(), LoadError> {
        let refused = self.person.take_refused();
        match refused.first() {
            None => Ok(()),
            Some(first) => {
                Err(LoadError::Refused { person: self.person_id.clone(), count: refused.len(), first: first.clone() })
            }
        }
    }
}

/// The people, connected, each with an open conversation with the agent.
pub struct People {
    conversations: Vec<Arc<Conversation>>,
}

impl std::fmt::Debug for People {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("People").field("conversations", &self.conversations.len()).finish()
    }
}

impl People {
    /// Lets `count` people into `relay`, connects them with end-to-end encryption and opens a
    /// conversation between each and `agent_id`.
    pub async fn connect(relay: &RelayHandle, agent_id: &str, count: usize) -> Result<Self, LoadError> {
        if count == 0 {
            return Err(LoadError::Plan("at least one conversation"));
        }
        let mut conversations = Vec::with_capacity(count);
        for index in 0..count {
            let person_id = format!("load-person-{index}");
            let token = format!("load-person-token-{index}");
            relay.add_person(&person_id, &token);
            let config = PersonClientConfig::new(&person_id, token, relay.base_url()).device("load").encrypted();
            let error = |source| LoadError::Person { person: person_id.clone(), source };
            let person = PersonClient::connect(config).await.map_err(error)?;
            let conversation_id = person.create_conversation(&[agent_id], false).await.map_err(error)?;
            conversations.push(Arc::new(Conversation {
                index,
                person_id: person_id.clone(),
                person,
                conversation_id,
                agent_id: agent_id.to_owned(),
                ledger: Mutex::new(Ledger::new(index, agent_id)),
            }));
        }
        Ok(People { conversations })
    }

    /// One message and its reply per conversation, all at once, so that every session exists
    /// (PQXDH done, the agent's first write for it made) before anything is measured.
    pub async fn warm_up(&self) -> Result<(), LoadError> {
        self.each(|conversation| async move {
            conversation.send(usize::MAX, Instant::now())?;
            conversation.next_reply().await.map(|latency| vec![latency])
        })
        .await
        .map(drop)
    }

    /// Sends as `pacing` says and returns every message's latency (send to reply decrypted),
    /// once every reply arrived.
    pub async fn run(&self, pacing: Pacing) -> Result<Vec<Duration>, LoadError> {
        pacing.check()?;
        let count = self.conversations.len();
        match pacing {
            Pacing::Window { messages, window } => {
                self.each(move |conversation| async move {
                    let mut latencies = Vec::with_capacity(messages);
                    let mut sent = 0;
                    while sent < window.min(messages) {
                        conversation.send(sent, Instant::now())?;
                        sent += 1;
                    }
                    while latencies.len() < messages {
                        latencies.push(conversation.next_reply().await?);
                        if sent < messages {
                            conversation.send(sent, Instant::now())?;
                            sent += 1;
                        }
                    }
                    Ok(latencies)
                })
                .await
            }
            Pacing::Rate { per_second, total } => {
                let start = Instant::now();
                let interval = Duration::from_secs_f64(1.0 / per_second);
                self.each(move |conversation| async move {
                    // Message j of the run goes to conversation j mod K at start + j × interval.
                    let schedule: Vec<Instant> = (conversation.index..total)
                        .step_by(count)
                        .map(|j| start + interval.mul_f64(j as f64))
                        .collect();
                    let expected = schedule.len();
                    let sender = async {
                        for (seq, due) in schedule.into_iter().enumerate() {
                            tokio::time::sleep_until(due).await;
                            conversation.send(seq, due)?;
                        }
                        Ok::<_, LoadError>(())
                    };
                    let receiver = async {
                        let mut latencies = Vec::with_capacity(expected);
                        while latencies.len() < expected {
                            latencies.push(conversation.next_reply().await?);
                        }
                        Ok::<_, LoadError>(latencies)
                    };
                    let ((), latencies) = tokio::try_join!(sender, receiver)?;
                    Ok(latencies)
                })
                .await
            }
        }
    }

    /// Runs `work` for every conversation on its own task; all latencies, or the first failure.
    /// Afterwards, any input a person refused (a reply that did not decrypt) fails the run.
    async fn each<F, Fut>(&self, work: F) -> Result<Vec<Duration>, LoadError>
    where
        F: Fn(Arc<Conversation>) -> Fut,
        Fut: Future<Output = Result<Vec<Duration>, LoadError>> + Send + 'static,
    {
        let tasks: Vec<_> =
            self.conversations.iter().map(|conversation| tokio::spawn(work(conversation.clone()))).collect();
        let mut latencies = Vec::new();
        let mut failure = None;
        for task in tasks {
            match task.await {
                Ok(Ok(found)) => latencies.extend(found),
                Ok(Err(error)) => {
                    failure.get_or_insert(error);
                }
                Err(error) => {
                    failure.get_or_insert(LoadError::Task(error));
                }
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        for conversation in &self.conversations {
            conversation.check_refused()?;
        }
        Ok(latencies)
    }

    /// Closes every person's socket.
    pub async fn close(self) {
        for conversation in self.conversations {
            if let Ok(conversation) = Arc::try_unwrap(conversation) {
                conversation.person.close().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply<'a>(reply_to: Option<&'a str>, text: &'a str) -> Reply<'a> {
        Reply { reply_to, from: "agent", text, encrypted: true }
    }

    #[test]
    fn an_echo_of_a_pending_message_gives_its_latency_once() {
        let mut ledger = Ledger::new(3, "agent");
        let at = Instant::now();
        ledger.sent("m1".into(), "load 3 0".into(), at);
        ledger.sent("m2".into(), "load 3 1".into(), at);
        let latency = ledger.answer(reply(Some("m1"), "Received: load 3 0"), at + Duration::from_millis(7)).unwrap();
        assert_eq!(latency, Duration::from_millis(7));
        assert_eq!(ledger.missing(), 1);
        let again = ledger.answer(reply(Some("m1"), "Received: load 3 0"), at);
        assert!(matches!(again, Err(LoadError::UnexpectedReply { conversation: 3 })), "{again:?}");
    }

    #[test]
    fn wrong_replies_fail_the_run() {
        let mut ledger = Ledger::new(0, "agent");
        let at = Instant::now();
        for id in ["a", "b", "c", "d"] {
            ledger.sent(id.into(), format!("text {id}"), at);
        }
        assert!(matches!(ledger.answer(reply(None, "Received: text a"), at), Err(LoadError::UnexpectedReply { .. })));
        assert!(matches!(ledger.answer(reply(Some("a"), "Received: text b"), at), Err(LoadError::WrongReply { .. })));
        let plaintext = Reply { encrypted: false, ..reply(Some("b"), "Received: text b") };
        assert!(matches!(ledger.answer(plaintext, at), Err(LoadError::Unencrypted { .. })));
        let impostor = Reply { from: "someone-else", ..reply(Some("c"), "Received: text c") };
        assert!(matches!(ledger.answer(impostor, at), Err(LoadError::WrongReply { .. })));
        assert!(ledger.answer(reply(Some("d"), "Received: text d"), at).is_ok());
        assert_eq!(ledger.missing(), 0);
    }

    #[test]
    fn plans_that_send_nothing_are_refused() {
        assert!(Pacing::Window { messages: 0, window: 4 }.check().is_err());
        assert!(Pacing::Window { messages: 10, window: 0 }.check().is_err());
        assert!(Pacing::Rate { per_second: 0.0, total: 10 }.check().is_err());
        assert!(Pacing::Rate { per_second: f64::NAN, total: 10 }.check().is_err());
        assert!(Pacing::Rate { per_second: 50.0, total: 0 }.check().is_err());
        assert!(Pacing::Window { messages: 10, window: 4 }.check().is_ok());
        assert_eq!(Pacing::Window { messages: 10, window: 4 }.total(3), 30);
        assert_eq!(Pacing::Rate { per_second: 50.0, total: 7 }.total(3), 7);
    }
}
