//! An encrypted group conversation, one command: `cargo run --example group`.
//!
//! It starts the development relay on a loopback port, an encrypted agent on tokio (in memory:
//! the relay dies with this process, so there is nothing to resume) and two people, Alice and
//! Bob. Alice makes the group and its key (epoch 1), which reaches Bob and the agent through
//! their Signal sessions; each person writes to the group and the agent answers the whole group;
//! then Alice rotates the key to epoch 2 and they write once more. It prints the transcript and
//! exits 0 when everyone read everything.
//!
//! The agent does nothing group-specific: it answers with `reply`, which goes to the group for a
//! group message. The SDK fetches and stores the group keys itself and seals under the newest.

use pacerelle::ClientConfig;
use pacerelle::core::human::{GroupMember, PersonMessage};
use pacerelle::tokio::{Client, PersonClient, PersonClientConfig};
use pacerelle_examples::{BoxError, exit_code, init_logging};
use pacerelle_relay::{Relay, RelayConfig};
use rand::RngExt as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const AGENT: &str = "group-agent";
/// How long anyone waits for anything: a deadline, never reached when all is well.
const WAIT: Duration = Duration::from_secs(15);

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    exit_code("group", run().await)
}

async fn run() -> Result<(), BoxError> {
    let [agent_token, alice_token, bob_token] = [token(), token(), token()];
    let relay_config = RelayConfig::loopback_ephemeral()
        .agent(AGENT, &agent_token)
        .person("alice", &alice_token)
        .person("bob", &bob_token);
    let relay = Relay::spawn(relay_config).await?;
    println!("relay on {}", relay.base_url());

    // The agent: encrypted, answering every message where it came from (for a group message,
    // the whole group).
    let config = ClientConfig { e2ee: true, ..ClientConfig::new(AGENT, agent_token).with_base_url(relay.base_url())? };
    let mut client = Client::in_memory(config)?;
    client.on_message(|message, agent| async move {
        let place = if message.is_group() { "the group" } else { "a conversation" };
        println!("  agent reads {} in {place}: {}", message.from, message.text);
        agent.reply(&message, format!("Received: {}", message.text)).await?;
        Ok(())
    });
    let agent = client.handle();
    let serving = tokio::spawn(client.connect());
    // People start Signal sessions from the agent's prekeys, published before its socket opens.
    let deadline = Instant::now() + WAIT;
    while !agent.is_connected() {
        if Instant::now() > deadline {
            return Err("the agent did not connect".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("agent {AGENT} connected; verification code {}", agent.verification_code().unwrap_or_default());

    let person = |id: &str, token: &str, device: &str| {
        PersonClient::connect(PersonClientConfig::new(id, token, relay.base_url()).device(device).encrypted())
    };
    let alice = person("alice", &alice_token, "phone").await?;
    let bob = person("bob", &bob_token, "laptop").await?;
    // Alice sends Bob the group key through a Signal session she starts from his prekeys.
    bob.publish_prekeys().await?;
    let group = alice.create_group(&[GroupMember::agent(AGENT), GroupMember::person("bob")]).await?;
    println!("alice made group {group}: key epoch {}, sent to bob and the agent", alice.group_epoch(&group));

    // Each message reaches the other person and the agent; the agent's answer reaches both.
    say(&alice, &group, "Hello everyone", [(&alice, 1), (&bob, 2)]).await?;
    say(&bob, &group, "Hi Alice, hi agent", [(&alice, 2), (&bob, 1)]).await?;
    let epoch = alice.rotate_group_key(&group).await?;
    println!("alice rotated the group key: epoch {epoch}, sent to bob and the agent");
    say(&alice, &group, "Anything new since the rotation?", [(&alice, 1), (&bob, 2)]).await?;
    say(&bob, &group, "Still reading you", [(&alice, 2), (&bob, 1)]).await?;

    agent.close();
    serving.await??;
    alice.close().await;
    bob.close().await;
    relay.shutdown().await;
    println!("group: conversation complete");
    Ok(())
}

/// `from` writes `text` to the group; each of `readers` then reads that many group messages.
async fn say(
    from: &PersonClient,
    group: &str,
    text: &str,
    readers: [(&PersonClient, usize); 2],
) -> Result<(), BoxError> {
    println!("{} -> group: {text}", from.person_id());
    from.send_group_text(group, text)?;
    for (reader, count) in readers {
        for _ in 0..count {
            let message = reader.next_message(WAIT).await?;
            println!("  {} reads {} (epoch {}): {}", reader.person_id(), message.from, epoch(&message)?, message.text);
        }
    }
    Ok(())
}

/// The epoch `message` was sealed under; an error if it was not a group-encrypted message.
fn epoch(message: &PersonMessage) -> Result<i64, BoxError> {
    Ok(message.group_key().ok_or("a message that was not group-encrypted")?.1)
}

/// A fresh token from OS randomness, for this run's relay only.
fn token() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
