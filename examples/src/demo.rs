//! The stage for the one-command runs of the operations, booking and poll agents: a relay on a
//! loopback port, the agent (encrypted, on tokio) and encrypted people, plus how a transcript
//! shows what a person received. With `PACERELLE_AGENT_ID` set, the same agents serve a real
//! relay instead ([`serve`]).

use crate::BoxError;
use pacerelle::core::human::PersonMessage;
use pacerelle::tokio::{AgentHandle, Client, PersonClient, PersonClientConfig};
use pacerelle::{ClientConfig, ClientError};
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use rand::RngExt as _;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How long anyone waits for anything: a deadline, never reached when all is well.
pub const WAIT: Duration = Duration::from_secs(15);

/// A relay with one agent and some people, and their tokens.
pub struct Stage {
    /// The relay.
    pub relay: RelayHandle,
    agent_id: String,
    agent_token: String,
    people: Vec<(String, String)>,
}

impl Stage {
    /// Starts a relay on an ephemeral loopback port knowing `agent_id` and `people`, each with a
    /// fresh token.
    pub async fn start(agent_id: &str, people: &[&str]) -> Result<Self, BoxError> {
        let agent_token = token();
        let people: Vec<(String, String)> = people.iter().map(|person| ((*person).to_owned(), token())).collect();
        let mut config = RelayConfig::loopback_ephemeral().agent(agent_id, &agent_token);
        for (person, token) in &people {
            config = config.person(person, token);
        }
        let relay = Relay::spawn(config).await?;
        Ok(Stage { relay, agent_id: agent_id.to_owned(), agent_token, people })
    }

    /// Runs the agent, end-to-end encrypted and in memory (the relay dies with this process, so
    /// there is nothing to resume), with the handlers `install` sets; returns once it is
    /// connected, as people start their sessions from the keys it publishes first.
    pub async fn run_agent(
        &self,
        install: impl FnOnce(&mut Client),
    ) -> Result<(AgentHandle, JoinHandle<Result<(), ClientError>>), BoxError> {
        let config = ClientConfig {
            e2ee: true,
            ..ClientConfig::new(&self.agent_id, &self.agent_token).with_base_url(self.relay.base_url())?
        };
        let mut client = Client::in_memory(config)?;
        install(&mut client);
        let agent = client.handle();
        let serving = tokio::spawn(client.connect());
        let deadline = Instant::now() + WAIT;
        while !agent.is_connected() {
            if serving.is_finished() || Instant::now() > deadline {
                return Err("the agent did not connect".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok((agent, serving))
    }

    /// Connects `person`, end-to-end encrypted, from `device`.
    pub async fn person(&self, person: &str, device: &str) -> Result<PersonClient, BoxError> {
        let (_, token) = self.people.iter().find(|(id, _)| id == person).ok_or("no such person on this relay")?;
        let config = PersonClientConfig::new(person, token, self.relay.base_url()).device(device).encrypted();
        Ok(PersonClient::connect(config).await?)
    }
}

/// Serves the relay configured in the environment with `client`, on its durable store, until
/// Ctrl-C, after printing what a person needs to check it.
pub async fn serve(name: &str, client: Client, config: &ClientConfig) -> Result<(), BoxError> {
    let handle = client.handle();
    println!("{}", crate::serving_banner_for(name, "tokio", config, handle.verification_code().as_deref()));
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        handle.close();
    });
    client.connect().await?;
    Ok(())
}

/// One line of transcript for what `message` shows its reader.
pub fn describe(message: &PersonMessage) -> String {
    let text_of = |spec: &serde_json::Map<String, serde_json::Value>, key: &str| {
        spec.get(key).and_then(|value| value.as_str()).map(str::to_owned)
    };
    if let Some(widget) = &message.widget {
        let mut line = format!("[{}] {}", widget.kind.as_str(), text_of(&widget.spec, "title").unwrap_or_default());
        if let Some(body) = text_of(&widget.spec, "body") {
            line.push_str(&format!(" ({body})"));
        }
        return line;
    }
    if let Some(update) = &message.widget_update {
        let spec = update.patch.get("spec").and_then(|spec| spec.as_object()).cloned().unwrap_or_default();
        let status = spec.get("authorization").and_then(|authorization| authorization.get("status"));
        let shown = match (status.and_then(|status| status.as_str()), text_of(&spec, "title"), text_of(&spec, "body")) {
            (Some(status), _, _) => format!("permission {status}"),
            (None, Some(title), Some(body)) => format!("{title}: {body}"),
            (None, Some(title), None) => title,
            (None, None, Some(body)) => body,
            (None, None, None) => "changed".to_owned(),
        };
        return format!("[update] {shown}");
    }
    let mut line = message.text.clone();
    for attachment in &message.attachments {
        line.push_str(&format!(" [file {} ({}, {} bytes)]", attachment.name, attachment.mime, attachment.size));
    }
    line
}

/// A fresh token from OS randomness, for this run's relay only.
fn token() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Reads `person`'s messages, printing each, until one that `last` accepts; returns it.
pub async fn read_until(
    person: &PersonClient,
    last: impl Fn(&PersonMessage) -> bool,
) -> Result<PersonMessage, BoxError> {
    let reader = person.person_id();
    loop {
        let message = person.next_message(WAIT).await?;
        // Continuation lines indented under the first, so the transcript stays readable.
        println!("  {} → {reader}: {}", message.from, describe(&message).replace('\n', "\n      "));
        if last(&message) {
            return Ok(message);
        }
    }
}
