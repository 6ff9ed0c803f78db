//! The people who talk to the example agents in their tests: a relay in this process, the agent
//! under test (end-to-end encrypted, in memory, on tokio) and encrypted people who write, read
//! what the agent sends, answer widgets and open files. Every wait has a deadline, so a missing
//! answer fails the test instead of hanging it.
//!
//! All the people-scripting of the example agents' tests is here, on the current tools
//! (`pacerelle-relay` and the person client), so that it can move onto the test kit in one place.

// Each test file uses part of this module.
#![allow(dead_code)]

use pacerelle::core::human::{GroupMember, PersonMessage};
use pacerelle::core::widget::{ReceivedWidget, WidgetKind};
use pacerelle::tokio::{AgentHandle, Client, PersonClient, PersonClientConfig};
use pacerelle::{Attachment, ClientConfig, ClientError};
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use serde_json::Value;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long anyone waits for anything: a deadline, never reached when all is well.
pub const WAIT: Duration = Duration::from_secs(15);

/// A relay with the agent under test, serving.
pub struct Scene {
    relay: RelayHandle,
    agent_id: String,
    agent: AgentHandle,
    serving: JoinHandle<Result<(), ClientError>>,
    people: Vec<String>,
}

impl Scene {
    /// Starts a relay knowing `agent_id` and `people`, and the agent with the handlers `install`
    /// sets; returns once the agent is connected (its keys are published by then).
    pub async fn start(agent_id: &str, people: &[&str], install: impl FnOnce(&mut Client)) -> Scene {
        let mut config = RelayConfig::loopback_ephemeral().agent(agent_id, token_of(agent_id));
        for person in people {
            config = config.person(*person, token_of(person));
        }
        let relay = Relay::spawn(config).await.expect("the relay starts");
        let agent_config = ClientConfig {
            e2ee: true,
            ..ClientConfig::new(agent_id, token_of(agent_id)).with_base_url(relay.base_url()).expect("a loopback URL")
        };
        let mut client = Client::in_memory(agent_config).expect("an in-memory agent");
        install(&mut client);
        let agent = client.handle();
        let serving = tokio::spawn(client.connect());
        let deadline = tokio::time::Instant::now() + WAIT;
        while !agent.is_connected() {
            assert!(!serving.is_finished(), "the agent stopped before connecting");
            assert!(tokio::time::Instant::now() < deadline, "the agent did not connect");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Scene {
            relay,
            agent_id: agent_id.to_owned(),
            agent,
            serving,
            people: people.iter().map(|person| (*person).to_owned()).collect(),
        }
    }

    /// `person` connects, end-to-end encrypted, and opens a conversation with the agent.
    pub async fn chat(&self, person: &str) -> Person {
        let client = self.connect(person).await;
        let conversation = client.create_conversation(&[&self.agent_id], false).await.expect("a conversation");
        Person { client, conversation, to: self.agent_id.clone(), agent: self.agent_id.clone() }
    }

    /// `people` connect, end-to-end encrypted; the first makes a group with the others and the
    /// agent, whose key reaches every member through their Signal sessions.
    pub async fn group(&self, people: &[&str]) -> Vec<Person> {
        let mut clients = Vec::new();
        for person in people {
            let client = self.connect(person).await;
            // Every member but the maker receives the key through a session the maker starts
            // from their prekeys.
            client.publish_prekeys().await.expect("the person's prekeys are published");
            clients.push(client);
        }
        let mut members = vec![GroupMember::agent(&self.agent_id)];
        members.extend(people[1..].iter().map(|person| GroupMember::person(*person)));
        let conversation = clients[0].create_group(&members).await.expect("the group and its key");
        clients
            .into_iter()
            .map(|client| Person {
                client,
                conversation: conversation.clone(),
                to: format!("group:{conversation}"),
                agent: self.agent_id.clone(),
            })
            .collect()
    }

    async fn connect(&self, person: &str) -> PersonClient {
        assert!(self.people.iter().any(|known| known == person), "{person} is not on this relay");
        let config = PersonClientConfig::new(person, token_of(person), self.relay.base_url())
            .device(format!("{person}-phone"))
            .encrypted();
        PersonClient::connect(config).await.expect("the person connects")
    }

    /// Stops the agent (promptly, and without an error) and the relay.
    pub async fn finish(self, people: Vec<Person>) {
        for person in people {
            person.client.close().await;
        }
        self.agent.close();
        tokio::time::timeout(Duration::from_secs(5), self.serving)
            .await
            .expect("the agent closes promptly")
            .expect("the agent's task")
            .expect("the agent ends without an error");
        self.relay.shutdown().await;
    }
}

/// A person in one conversation with the agent: a chat of their own, or a group.
pub struct Person {
    client: PersonClient,
    conversation: String,
    /// Where this person's messages go: the agent, or `group:{conversation}`.
    to: String,
    agent: String,
}

impl Person {
    /// Their id.
    pub fn id(&self) -> String {
        self.client.person_id()
    }

    /// Writes `text` (to the agent, or to the whole group); returns the message's id.
    pub fn says(&self, text: &str) -> String {
        self.client.send_text(&self.conversation, &self.to, text).expect("the person writes")
    }

    /// Answers `widget` with `value` (in a group, in front of everyone).
    pub fn answers(&self, widget: &ReceivedWidget, value: Value) {
        self.client.answer_widget(&self.conversation, &self.to, &widget.id, value).expect("the person answers");
    }

    /// Dismisses `widget` without answering.
    pub fn dismisses(&self, widget: &ReceivedWidget) {
        self.client.cancel_widget(&self.conversation, &self.to, &widget.id).expect("the person dismisses");
    }

    /// The next message from the agent, end-to-end encrypted (under the group's key in a
    /// group). In a group, what other members write in between is passed over.
    pub async fn hears(&self) -> PersonMessage {
        loop {
            let message = self.client.next_message(WAIT).await.expect("a message within the deadline");
            assert_eq!(message.conversation_id, self.conversation, "a message from another conversation");
            assert!(message.encrypted, "a message crossed the relay in plaintext: {message:?}");
            if message.from == self.agent {
                if self.to.starts_with("group:") {
                    assert!(message.group_key().is_some(), "not sealed under the group's key: {message:?}");
                }
                return message;
            }
            assert!(self.to.starts_with("group:"), "a message from {} in a chat with the agent", message.from);
        }
    }

    /// The next message from the agent, which must be a text; returns it.
    pub async fn hears_text(&self) -> String {
        let message = self.hears().await;
        assert!(message.widget.is_none() && message.widget_update.is_none(), "expected a text, got {message:?}");
        message.text
    }

    /// The next message from the agent, which must be a widget of `kind`; returns it.
    pub async fn is_shown(&self, kind: WidgetKind) -> ReceivedWidget {
        let message = self.hears().await;
        let widget =
            message.widget.unwrap_or_else(|| panic!("expected a {} widget, got {:?}", kind.as_str(), message.text));
        assert_eq!(widget.kind, kind, "{widget:?}");
        widget
    }

    /// The next message from the agent, which must update widget `widget_id`; returns the
    /// update's new `spec`.
    pub async fn sees_update_of(&self, widget_id: &str) -> serde_json::Map<String, Value> {
        let message = self.hears().await;
        let update =
            message.widget_update.unwrap_or_else(|| panic!("expected a widget update, got {:?}", message.text));
        assert_eq!(update.widget_ref, widget_id, "an update of another widget");
        update.patch.get("spec").and_then(Value::as_object).cloned().expect("the update changes the widget's spec")
    }

    /// The next message from the agent, which must carry one file; returns its text, the file's
    /// metadata and its content, downloaded and decrypted.
    pub async fn receives_file(&self) -> (String, Attachment, Vec<u8>) {
        let message = self.hears().await;
        assert_eq!(message.attachments.len(), 1, "expected one file, got {message:?}");
        let attachment = message.attachments[0].clone();
        let content = self.client.download_attachment(&attachment).await.expect("the file downloads and decrypts");
        (message.text, attachment, content)
    }
}

/// Tokens are per run of a relay on loopback: derived from the name, they only need to differ.
fn token_of(id: &str) -> String {
    format!("{id}-token")
}
