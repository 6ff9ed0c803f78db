//! People: what they say to the agent, how they answer its widgets, and the expectations on
//! what the agent sent them, each with a deadline and a failure message that says what was
//! expected and what arrived.
//!
//! A [`Person`] is one person on one device in one conversation (with an agent, or a group).
//! Calls block the test thread; the person's client (`pacerelle_tokio::PersonClient`, the
//! person side of the protocol) runs on the relay's runtime.

use crate::relay::TestRelay;
use crate::{DEADLINE, describe};
use pacerelle_core::Attachment;
use pacerelle_core::human::{GroupMember, PersonEvent, PersonMessage};
use pacerelle_core::widget::{ReceivedWidget, WidgetKind};
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use serde_json::{Map, Value, json};
use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A person about to connect: see [`TestRelay::person`].
#[derive(Debug)]
pub struct PersonBuilder<'r> {
    relay: &'r TestRelay,
    id: String,
    device: String,
    e2ee: bool,
    sealed_only: bool,
}

impl<'r> PersonBuilder<'r> {
    pub(crate) fn new(relay: &'r TestRelay, id: &str) -> Self {
        PersonBuilder { relay, id: id.to_owned(), device: "phone".to_owned(), e2ee: false, sealed_only: false }
    }

    /// With end-to-end encryption: their messages to an agent are encrypted with a Signal
    /// session started from the agent's published prekeys, so the (encrypted) agent must be
    /// running before they say anything.
    pub fn encrypted(mut self) -> Self {
        self.e2ee = true;
        self
    }

    /// [`PersonBuilder::encrypted`], and the person accepts nothing but end-to-end encrypted
    /// messages of their own conversation: every message that reaches them must be encrypted,
    /// in their conversation, from the agent unless the conversation is a group, and in a group
    /// sealed under the group's key (`PersonMessage::group_key`). Anything else fails the
    /// expectation that reads it, showing the message. For tests that what the agent sends
    /// never crosses the relay in plaintext.
    pub fn encrypted_only(mut self) -> Self {
        self.e2ee = true;
        self.sealed_only = true;
        self
    }

    /// On device `device` (`phone` unless said otherwise); see also [`Person::on_device`].
    pub fn device(mut self, device: &str) -> Self {
        self.device = device.to_owned();
        self
    }

    /// Connects and opens a conversation with agent `agent_id`.
    ///
    /// # Panics
    /// When the person cannot connect or the relay refuses the conversation.
    pub fn talks_to(self, agent_id: &str) -> Person {
        let who = format!("{} ({})", self.id, self.device);
        let sealed_only = self.sealed_only;
        let (link, client) = self.connect();
        let conversation = block_on(&link.0, client.create_conversation(&[agent_id], false)).unwrap_or_else(|error| {
            panic!("pacerelle-test: {who} could not open a conversation with {agent_id}: {error}")
        });
        Person::new(link, who, client, agent_id, conversation, agent_id.to_owned()).sealed_only(sealed_only)
    }

    fn connect(self) -> (Link, PersonClient) {
        let token = format!("{}-token", self.id);
        self.relay.handle().add_person(&self.id, &token);
        let mut config = PersonClientConfig::new(&self.id, token, self.relay.base_url()).device(&self.device);
        if self.e2ee {
            config = config.encrypted();
        }
        let runtime = self.relay.runtime();
        let client = block_on(&runtime, PersonClient::connect(config))
            .unwrap_or_else(|error| panic!("pacerelle-test: {} could not connect: {error}", self.id));
        ((runtime, self.relay.base_url()), client)
    }
}

/// Makes the group of [`TestRelay::group`].
pub(crate) fn group(agent_id: &str, people: Vec<PersonBuilder<'_>>) -> Vec<Person> {
    assert!(!people.is_empty(), "pacerelle-test: a group needs at least one person");
    let mut connected = Vec::new();
    for builder in people {
        let who = format!("{} ({})", builder.id, builder.device);
        let (id, e2ee, sealed_only) = (builder.id.clone(), builder.e2ee, builder.sealed_only);
        let (link, client) = builder.connect();
        connected.push((who, id, e2ee, sealed_only, link, client));
    }
    // The key goes to every member through a Signal session started from their prekeys.
    for (who, _, e2ee, _, (runtime, _), client) in connected.iter().skip(1) {
        if *e2ee {
            block_on(runtime, client.publish_prekeys())
                .unwrap_or_else(|error| panic!("pacerelle-test: {who} could not publish prekeys: {error}"));
        }
    }
    let mut members = vec![GroupMember::agent(agent_id)];
    members.extend(connected.iter().skip(1).map(|(_, id, ..)| GroupMember::person(id.clone())));
    let (who, _, _, _, (runtime, _), creator) = &connected[0];
    let conversation = block_on(runtime, creator.create_group(&members))
        .unwrap_or_else(|error| panic!("pacerelle-test: {who} could not make the group: {error}"));
    let to = format!("group:{conversation}");
    connected
        .into_iter()
        .map(|(who, _, _, sealed_only, link, client)| {
            Person::new(link, who, client, agent_id, conversation.clone(), to.clone()).sealed_only(sealed_only)
        })
        .collect()
}

/// Where a person's client runs, and the relay it talks to.
type Link = (tokio::runtime::Handle, String);

fn block_on<F: Future>(runtime: &tokio::runtime::Handle, future: F) -> F::Output {
    runtime.block_on(future)
}

/// What a person has received and not yet looked at.
#[derive(Default)]
struct Inbox {
    /// Messages from the agent.
    from_agent: VecDeque<PersonMessage>,
    /// Messages from anyone else (other people in a group).
    from_others: VecDeque<PersonMessage>,
    /// Message ids the agent read (acknowledged).
    read: HashSet<String>,
}

/// One person on one device, in one conversation with an agent (or a group with it): says
/// things, answers widgets, and expects what the agent sends.
///
/// ```no_run
/// # let relay = pacerelle_test::TestRelay::start();
/// let alice = relay.person("alice").talks_to("echo");
/// let sent = alice.say("hello");
/// alice.expect_reply(&sent, "Received: hello");
/// alice.expect_read(&sent);
/// ```
pub struct Person {
    runtime: tokio::runtime::Handle,
    base_url: String,
    who: String,
    client: Arc<PersonClient>,
    agent: String,
    conversation: String,
    to: String,
    inbox: Mutex<Inbox>,
    deadline: Duration,
    /// See [`PersonBuilder::encrypted_only`].
    sealed_only: bool,
}

impl std::fmt::Debug for Person {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Person").field("who", &self.who).field("conversation", &self.conversation).finish()
    }
}

impl Person {
    fn new(
        (runtime, base_url): Link,
        who: String,
        client: PersonClient,
        agent: &str,
        conversation: String,
        to: String,
    ) -> Person {
        Person {
            runtime,
            base_url,
            who,
            client: Arc::new(client),
            agent: agent.to_owned(),
            conversation,
            to,
            inbox: Mutex::default(),
            deadline: DEADLINE,
            sealed_only: false,
        }
    }

    fn sealed_only(mut self, sealed_only: bool) -> Self {
        self.sealed_only = sealed_only;
        self
    }

    /// The same person waiting at most `deadline` for each expectation (10 s by default).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The person's id.
    pub fn id(&self) -> String {
        self.client.person_id()
    }

    /// The conversation's id (the group's, in a group).
    pub fn conversation(&self) -> &str {
        &self.conversation
    }

    /// The same person on another device, in the same conversation (a new connection; with
    /// end-to-end encryption, a new identity on that device).
    ///
    /// # Panics
    /// When it cannot connect.
    pub fn on_device(&self, device: &str) -> Person {
        let id = self.id();
        let mut config = PersonClientConfig::new(&id, format!("{id}-token"), self.base_url.clone()).device(device);
        if self.client.identity_key().is_some() {
            config = config.encrypted();
        }
        let client = self
            .block_on(PersonClient::connect(config))
            .unwrap_or_else(|error| panic!("pacerelle-test: {id} ({device}) could not connect: {error}"));
        let who = format!("{id} ({device})");
        Person::new(
            (self.runtime.clone(), self.base_url.clone()),
            who,
            client,
            &self.agent,
            self.conversation.clone(),
            self.to.clone(),
        )
        .sealed_only(self.sealed_only)
    }

    /// Says `text` in the conversation (to the whole group, in a group); returns the message's
    /// id.
    ///
    /// # Panics
    /// When the person's client refuses it (its socket is not open).
    pub fn say(&self, text: &str) -> String {
        self.sync(|client| client.send_text(&self.conversation, &self.to, text))
            .unwrap_or_else(|error| panic!("pacerelle-test: {} could not say {text:?}: {error}", self.who))
    }

    /// Says `text` as a reply to `message` (its `reply_to_message_id`).
    ///
    /// # Panics
    /// When the person's client refuses it.
    pub fn reply(&self, message: &PersonMessage, text: &str) -> String {
        self.sync(|client| client.reply_text(&self.conversation, &self.to, &message.id, text))
            .unwrap_or_else(|error| panic!("pacerelle-test: {} could not reply {text:?}: {error}", self.who))
    }

    /// The next message from the agent, waiting at most the deadline.
    ///
    /// # Panics
    /// When none arrives in time, or the relay refuses one of this person's frames, or a
    /// message could not be sent or read: each says what happened.
    pub fn next_message(&self) -> PersonMessage {
        self.next_message_within(self.deadline).unwrap_or_else(|| {
            panic!(
                "pacerelle-test: {} expected a message from {}, nothing came within {:?}",
                self.who, self.agent, self.deadline
            )
        })
    }

    /// The next message from the agent if one arrives within `limit`.
    ///
    /// # Panics
    /// Like [`Person::next_message`], for a refused frame or a message not sent or not read.
    pub fn next_message_within(&self, limit: Duration) -> Option<PersonMessage> {
        self.wait(limit, |inbox| inbox.from_agent.pop_front())
    }

    /// The next message from someone else than the agent (another person in the group).
    ///
    /// # Panics
    /// Like [`Person::next_message`].
    pub fn next_message_from_people(&self) -> PersonMessage {
        self.wait(self.deadline, |inbox| inbox.from_others.pop_front()).unwrap_or_else(|| {
            panic!(
                "pacerelle-test: {} expected a message from another person, nothing came within {:?}",
                self.who, self.deadline
            )
        })
    }

    /// The agent's next message, which must be the text `text`.
    ///
    /// # Panics
    /// When the next message is anything else (the panic shows it), or none comes.
    pub fn expect_text(&self, text: &str) -> PersonMessage {
        let message = self.next_message();
        if message.text != text || message.widget.is_some() || message.widget_update.is_some() {
            panic!("pacerelle-test: {} expected the text {text:?}, got {}", self.who, describe(&message));
        }
        message
    }

    /// The agent's next message, which must be the text `text` answering message `to` (the id
    /// [`Person::say`] returned).
    ///
    /// # Panics
    /// When the next message is anything else, or none comes.
    pub fn expect_reply(&self, to: &str, text: &str) -> PersonMessage {
        let message = self.expect_text(text);
        if message.reply_to_message_id.as_deref() != Some(to) {
            panic!(
                "pacerelle-test: {} expected {text:?} as a reply to {to}, it answers {:?}",
                self.who, message.reply_to_message_id
            );
        }
        message
    }

    /// The agent's next message, which must be a widget of `kind`; answer it with the
    /// returned [`Widget`].
    ///
    /// # Panics
    /// When the next message is anything else, or none comes.
    pub fn expect_widget(&self, kind: WidgetKind) -> Widget<'_> {
        let message = self.next_message();
        match message.widget.clone() {
            Some(widget) if widget.kind == kind => Widget { person: self, widget, message },
            _ => panic!("pacerelle-test: {} expected a {} widget, got {}", self.who, kind.as_str(), describe(&message)),
        }
    }

    /// The agent's next message, which must be an update of widget `widget_id`; returns its
    /// patch (`spec`, `expires_at`).
    ///
    /// # Panics
    /// When the next message is anything else, or none comes.
    pub fn expect_widget_update(&self, widget_id: &str) -> Map<String, Value> {
        let message = self.next_message();
        match &message.widget_update {
            Some(update) if update.widget_ref == widget_id => update.patch.clone(),
            _ => panic!(
                "pacerelle-test: {} expected an update of widget {widget_id}, got {}",
                self.who,
                describe(&message)
            ),
        }
    }

    /// Nothing comes from the agent for `quiet` (this waits the whole time: keep it short).
    ///
    /// # Panics
    /// When a message comes.
    pub fn expect_nothing_for(&self, quiet: Duration) {
        if let Some(message) = self.next_message_within(quiet) {
            panic!("pacerelle-test: {} expected nothing for {quiet:?}, got {}", self.who, describe(&message));
        }
    }

    /// The agent read (accepted and acknowledged) message `message_id`: its read receipt
    /// arrives within the deadline. Messages that arrive meanwhile wait for the next
    /// expectation.
    ///
    /// # Panics
    /// When it does not.
    pub fn expect_read(&self, message_id: &str) {
        let read = self.wait(self.deadline, |inbox| inbox.read.remove(message_id).then_some(()));
        if read.is_none() {
            panic!(
                "pacerelle-test: {} expected {} to read {message_id} within {:?}",
                self.who, self.agent, self.deadline
            );
        }
    }

    /// Downloads `attachment` (one of a received message's `attachments`) and decrypts it as
    /// the person's app would; returns its content.
    ///
    /// ```no_run
    /// # let relay = pacerelle_test::TestRelay::start();
    /// # let alice = relay.person("alice").encrypted().talks_to("ops");
    /// let message = alice.next_message();
    /// let content = alice.download(&message.attachments[0]);
    /// ```
    ///
    /// # Panics
    /// When it cannot be downloaded or decrypted, or within the deadline.
    pub fn download(&self, attachment: &Attachment) -> Vec<u8> {
        let download =
            async { tokio::time::timeout(self.deadline, self.client.download_attachment(attachment)).await.ok() };
        match self.block_on(download) {
            Some(Ok(content)) => content,
            Some(Err(error)) => {
                panic!("pacerelle-test: {} could not download {:?}: {error}", self.who, attachment.name)
            }
            None => panic!(
                "pacerelle-test: {} could not download {:?} within {:?}",
                self.who, attachment.name, self.deadline
            ),
        }
    }

    /// The person's client, for what the kit does not wrap (files, key rotation, forged
    /// answers); its async methods run with [`TestRelay::block_on`].
    pub fn client(&self) -> &PersonClient {
        &self.client
    }

    /// Waits until `take` finds something in the inbox, reading events into it.
    fn wait<T>(&self, limit: Duration, mut take: impl FnMut(&mut Inbox) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(found) = take(&mut self.inbox()) {
                return Some(found);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            // A timeout is the only error of `next_event` but a closed client.
            let event = match self.block_on(self.client.next_event(left)) {
                Ok(event) => event,
                Err(pacerelle_runtime_support::ClientError::TimedOut(_)) => return take(&mut self.inbox()),
                Err(error) => panic!("pacerelle-test: {}: the person's client failed: {error}", self.who),
            };
            self.file(event);
        }
    }

    fn file(&self, event: PersonEvent) {
        if let PersonEvent::Message(message) = &event {
            self.check_sealed(message);
        }
        let mut inbox = self.inbox();
        match event {
            PersonEvent::Message(message) if message.from == self.agent => inbox.from_agent.push_back(message),
            PersonEvent::Message(message) => inbox.from_others.push_back(message),
            PersonEvent::Read(receipt) => {
                inbox.read.insert(receipt.message_id);
            }
            PersonEvent::Refused(refusal) => {
                panic!("pacerelle-test: {}: the relay refused a frame: {refusal:?}", self.who)
            }
            PersonEvent::RequestFailed { status, error, .. } => {
                panic!("pacerelle-test: {}: a call to the relay failed (HTTP {status}): {error}", self.who)
            }
            PersonEvent::NotSent { message_id, error } => {
                panic!(
                    "pacerelle-test: {}: message {message_id} could not be sent: {error} (is the encrypted agent running?)",
                    self.who
                )
            }
            PersonEvent::Unreadable { message_id, error, .. } => {
                panic!("pacerelle-test: {}: message {message_id} could not be read: {error}", self.who)
            }
            _ => {}
        }
    }

    /// With [`PersonBuilder::encrypted_only`]: `message` is end-to-end encrypted, in this
    /// person's conversation, from the agent in a chat, and sealed under the group's key in a
    /// group.
    fn check_sealed(&self, message: &PersonMessage) {
        if !self.sealed_only {
            return;
        }
        let group = self.to.starts_with("group:");
        let failure = if message.conversation_id != self.conversation {
            Some(format!("a message from conversation {}", message.conversation_id))
        } else if !message.encrypted {
            Some("a message that crossed the relay in plaintext".to_owned())
        } else if group && message.from == self.agent && message.group_key().is_none() {
            Some("a message of the agent not sealed under the group's key".to_owned())
        } else if !group && message.from != self.agent {
            Some(format!("a message from {} in a chat with {}", message.from, self.agent))
        } else {
            None
        };
        if let Some(failure) = failure {
            panic!(
                "pacerelle-test: {} accepts only encrypted messages of their conversation, got {failure}: {message:?}",
                self.who
            );
        }
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Runs a command of the client inside the relay's runtime: a send may start work of its
    /// own there (fetching an agent's bundle, a group's keys).
    fn sync<T>(&self, command: impl FnOnce(&PersonClient) -> T) -> T {
        let _entered = self.runtime.enter();
        command(&self.client)
    }
}

/// A widget the agent showed, to answer. Each answer returns the answer's message id.
#[derive(Debug)]
pub struct Widget<'p> {
    person: &'p Person,
    widget: ReceivedWidget,
    message: PersonMessage,
}

impl Widget<'_> {
    /// The widget's id (what the agent's `WidgetResponse::widget_ref` names).
    pub fn id(&self) -> &str {
        &self.widget.id
    }

    /// Its kind.
    pub fn kind(&self) -> WidgetKind {
        self.widget.kind
    }

    /// Its title (`spec.title`), if it has one.
    pub fn title(&self) -> Option<&str> {
        self.widget.spec.get("title").and_then(Value::as_str)
    }

    /// Its whole `spec`.
    pub fn spec(&self) -> &Map<String, Value> {
        &self.widget.spec
    }

    /// Its expiry (`expires_at`), if any.
    pub fn expires_at(&self) -> Option<&str> {
        self.widget.expires_at.as_deref()
    }

    /// The widget as received (kind, spec, `response_mode`, ...), to compare or inspect.
    pub fn received(&self) -> &ReceivedWidget {
        &self.widget
    }

    /// The message that carried it.
    pub fn message(&self) -> &PersonMessage {
        &self.message
    }

    /// Confirm: yes.
    pub fn yes(&self) -> String {
        self.answer(json!(true))
    }

    /// Confirm: no.
    pub fn no(&self) -> String {
        self.answer(json!(false))
    }

    /// Choice: picks the option `option_id`.
    pub fn choose(&self, option_id: &str) -> String {
        self.answer(json!(option_id))
    }

    /// Permission: grants it for `scope` (`"once"` or `"session"`).
    pub fn grant(&self, scope: &str) -> String {
        self.answer(json!({"granted": true, "scope": scope}))
    }

    /// Permission: refuses it.
    pub fn refuse(&self) -> String {
        self.answer(json!({"granted": false}))
    }

    /// Form: submits `fields` (an object of field id to value).
    pub fn fill(&self, fields: Value) -> String {
        self.answer(fields)
    }

    /// File picker: picks the files named `names`.
    pub fn pick_files(&self, names: &[&str]) -> String {
        self.answer(json!(names))
    }

    /// Date and time: picks `at` (ISO 8601, e.g. `2026-11-25T10:00:00Z`).
    pub fn pick_datetime(&self, at: &str) -> String {
        self.answer(json!(at))
    }

    /// Answers with any `value` (what the person's app would send for this widget).
    ///
    /// # Panics
    /// When the person's client refuses it.
    pub fn answer(&self, value: Value) -> String {
        let person = self.person;
        person
            .sync(|client| client.answer_widget(&person.conversation, &person.to, &self.widget.id, value))
            .unwrap_or_else(|error| {
                panic!("pacerelle-test: {} could not answer widget {}: {error}", person.who, self.widget.id)
            })
    }

    /// Dismisses it without an answer (the agent receives a cancelled response).
    ///
    /// # Panics
    /// When the person's client refuses it.
    pub fn dismiss(&self) -> String {
        let person = self.person;
        person.sync(|client| client.cancel_widget(&person.conversation, &person.to, &self.widget.id)).unwrap_or_else(
            |error| panic!("pacerelle-test: {} could not dismiss widget {}: {error}", person.who, self.widget.id),
        )
    }
}
