//! What an encrypted agent sends, as its people see it: only encrypted messages of their own
//! conversation (`encrypted_only`), under the group's key in a group; files downloaded and
//! decrypted (`Person::download`); a widget as received; an agent closing promptly.

use pacerelle_core::agent::OutgoingFile;
use pacerelle_core::widget::{Choice, ChoiceOption};
use pacerelle_test::{TestAgent, TestRelay, WidgetKind};
use pacerelle_tokio::Client;
use std::time::Duration;

/// Sends `file` back as an encrypted file, shows a choice widget on `choose` (to the whole
/// group, in a group), says which option an answer picked, and answers anything else
/// `Received: <text>`.
fn files_agent(client: &mut Client) {
    client.on_message(|message, agent| async move {
        let (conversation, person) = (&message.conversation_id, &message.from);
        if let Some(answer) = &message.widget_response {
            agent.reply(&message, format!("{person} picked {:?}", answer.value)).await?;
            return Ok(());
        }
        match message.text.as_str() {
            "file" => {
                let content = b"line one\nline two\n".to_vec();
                let file = OutgoingFile::new(conversation, person, content, "notes.txt", "text/plain")
                    .text("your notes")
                    .reply_to(&message.id);
                agent.send_file(file).await?;
            }
            "choose" => {
                let options = [ChoiceOption::new("a", "A"), ChoiceOption::new("b", "B")];
                let to = if message.is_group() { format!("group:{conversation}") } else { person.clone() };
                agent.send_widget(conversation, &to, Choice::new("Pick one", options)).await?;
            }
            _ => {
                agent.reply(&message, format!("Received: {}", message.text)).await?;
            }
        }
        Ok(())
    });
}

#[test]
fn an_encrypted_file_is_downloaded_and_decrypted() {
    let relay = TestRelay::start();
    let mut client = Client::in_memory(relay.encrypted_agent("files")).expect("the agent");
    files_agent(&mut client);
    let agent = TestAgent::start(client);
    let alice = relay.person("alice").encrypted_only().talks_to("files");

    let asked = alice.say("file");
    let message = alice.next_message();
    assert!(message.encrypted, "{message:?}");
    assert_eq!(message.reply_to_message_id.as_deref(), Some(asked.as_str()));
    assert_eq!(message.text, "your notes");
    assert_eq!(message.attachments.len(), 1, "{message:?}");
    let file = &message.attachments[0];
    assert_eq!((file.name.as_str(), file.mime.as_str()), ("notes.txt", "text/plain"));
    let content = alice.download(file);
    assert_eq!(content, b"line one\nline two\n");
    assert_eq!(file.size, content.len() as u64);

    alice.say("choose");
    let widget = alice.expect_widget(WidgetKind::Choice);
    assert_eq!(widget.received().kind, WidgetKind::Choice);
    assert_eq!(widget.received().id, widget.id());
    assert_eq!(Some(widget.received()), widget.message().widget.as_ref());
    agent.stop_within(Duration::from_secs(5));
}

#[test]
fn in_an_encrypted_only_group_everything_is_sealed_under_the_groups_key() {
    let relay = TestRelay::start();
    let mut client = Client::in_memory(relay.encrypted_agent("files")).expect("the agent");
    files_agent(&mut client);
    let agent = TestAgent::start(client);
    let people = relay.group("files", [relay.person("alice").encrypted_only(), relay.person("bob").encrypted_only()]);
    let [alice, bob] = &people[..] else { panic!("two people") };

    let sent = alice.say("hello group");
    for person in [alice, bob] {
        let reply = person.expect_reply(&sent, "Received: hello group");
        assert!(reply.encrypted && reply.group_key().is_some(), "{reply:?}");
    }
    // What another member says is encrypted too, and passes the same check.
    assert_eq!(bob.next_message_from_people().text, "hello group");

    // A widget shown to the group, answered by one member in front of everyone.
    alice.say("choose");
    alice.expect_widget(WidgetKind::Choice);
    bob.expect_widget(WidgetKind::Choice).choose("b");
    for person in [alice, bob] {
        person.expect_text(r#"bob picked Some(String("b"))"#);
    }
    agent.stop();
}

#[test]
#[should_panic(expected = "could not download")]
fn a_file_that_is_not_there_fails_the_download() {
    let relay = TestRelay::start();
    let mut client = Client::in_memory(relay.encrypted_agent("files")).expect("the agent");
    files_agent(&mut client);
    let _agent = TestAgent::start(client);
    let alice = relay.person("alice").encrypted_only().talks_to("files");
    alice.say("file");
    let mut file = alice.next_message().attachments.remove(0);
    file.blob_id = format!("{}-missing", file.blob_id);
    alice.download(&file);
}
