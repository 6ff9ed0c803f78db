//! Files as the official SDK offers them, on each runtime (issue 12, item 3): the agent uploads
//! files without sending anything (`upload_file`), sends one message carrying several of them,
//! a photo naming its thumbnail's blob among them, sends a clip in a message of its own
//! (`send_file`, which returns the attachment and the message id) and a photo again in a later
//! message; the encrypted person downloads and decrypts every one. Without end-to-end
//! encryption the same request is refused with `SendError::FileReadableByRelay`.
//!
//! What the agent does lives here too ([`send_attachments`], [`send_attachments_blocking`]),
//! started by the person's [`ATTACHMENTS`] message through the suite's [`Behaviour`].

use crate::behaviour::Behaviour;
use crate::cases::{leaks, msg_frames};
use crate::harness::{Harness, Running};
use crate::waiting::{next_message, run, wait_until};
use pacerelle_core::agent::{AgentConfig, FileUpload, OutgoingFile, OutgoingMessage, SendError, SentFile};
use pacerelle_core::config::ClientConfig;
use pacerelle_core::connection::Backoff;
use pacerelle_core::{AgentMessage, Attachment};
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use pacerelle_runtime_support::{ClientError, HandlerResult};
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the person writes to have the agent send its files.
pub const ATTACHMENTS: &str = "/attachments";
/// The caption of the message carrying the photo, its thumbnail and the notes.
pub const SEVERAL_CAPTION: &str = "a photo, its thumbnail and the notes";
/// The caption of the clip's own message.
pub const CLIP_CAPTION: &str = "and a clip";
/// The caption of the message carrying the photo again.
pub const REUSED_CAPTION: &str = "the photo once more";
/// What the agent answers when its files are refused: this prefix, then the error.
pub const REFUSED_PREFIX: &str = "files refused: ";

const THUMBNAIL: (&str, &str, &[u8]) = ("photo-thumb.png", "image/png", b"tiny thumbnail pixels");
const PHOTO: (&str, &str, &[u8]) = ("photo.jpg", "image/jpeg", b"the full-size photo, never for the relay");
const NOTES: (&str, &str, &[u8]) = ("notes.txt", "text/plain", b"meeting notes: ship on friday");
const CLIP: (&str, &str, &[u8]) = ("clip.mp4", "video/mp4", b"a short clip of the launch");
const PHOTO_SIZE: (u64, u64) = (640, 480);
const CLIP_SIZE: (u64, u64) = (320, 240);
const CLIP_DURATION_MS: u64 = 1500;

const AGENT: &str = "files-agent";
const AGENT_TOKEN: &str = "files-agent-token";
const PERSON: &str = "alice";
const PERSON_TOKEN: &str = "alice-token";
/// How long `connect` may take to return after `close`.
const PROMPT: Duration = Duration::from_secs(2);

/// What the agent's handler uploaded and sent, for the case to compare with what the person
/// received; clones share it.
#[derive(Debug, Clone, Default)]
pub struct SentAttachments(Arc<Mutex<Option<Sent>>>);

/// The attachments as `upload_file` and `send_file` returned them to the handler.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The thumbnail, the photo naming it, and the notes (`upload_file`).
    pub uploaded: [Attachment; 3],
    /// The clip's message (`send_file`).
    pub clip: SentFile,
}

impl SentAttachments {
    fn record(&self, sent: Sent) {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(sent);
    }

    /// What the handler sent, once it did.
    pub fn get(&self) -> Option<Sent> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

fn upload((name, mime, bytes): (&str, &str, &[u8])) -> FileUpload {
    FileUpload::new(bytes.to_vec(), name, mime)
}

/// The photo, naming the blob of `thumbnail`.
fn photo(thumbnail: &Attachment) -> FileUpload {
    upload(PHOTO).dimensions(PHOTO_SIZE.0, PHOTO_SIZE.1).thumbnail(&thumbnail.blob_id)
}

/// The message carrying the photo, its thumbnail and the notes, answering `message`.
fn several(message: &AgentMessage, [thumbnail, photo, notes]: &[Attachment; 3]) -> OutgoingMessage {
    OutgoingMessage::reply(message, SEVERAL_CAPTION).attachments([photo.clone(), thumbnail.clone(), notes.clone()])
}

/// The clip in a message of its own, naming the same thumbnail and carrying it along (so that
/// its key reaches the person), answering `message`.
fn clip(message: &AgentMessage, thumbnail: &Attachment) -> OutgoingFile {
    let (name, mime, bytes) = CLIP;
    let mut file = OutgoingFile::new(&message.conversation_id, &message.from, bytes.to_vec(), name, mime)
        .text(CLIP_CAPTION)
        .dimensions(CLIP_SIZE.0, CLIP_SIZE.1)
        .duration_ms(CLIP_DURATION_MS)
        .thumbnail(&thumbnail.blob_id);
    file.message = OutgoingMessage::reply(message, CLIP_CAPTION).attachments([thumbnail.clone()]);
    file
}

/// The reply a refused upload gets, or the error itself when it is anything else.
fn refusal(error: ClientError) -> Result<String, ClientError> {
    match error {
        ClientError::Send(SendError::FileReadableByRelay) => Ok(format!("{REFUSED_PREFIX}{error}")),
        other => Err(other),
    }
}

/// The handler's part with an async runtime's handle: uploads the thumbnail, the photo and the
/// notes, sends them in one reply, sends the clip with `send_file`, then the photo again;
/// records what the calls returned in `sent`. A refused upload is answered with
/// [`REFUSED_PREFIX`] and the error.
pub async fn send_attachments(
    message: &AgentMessage,
    agent: &pacerelle_runtime_support::driver::AgentHandle,
    sent: &SentAttachments,
) -> HandlerResult {
    let thumbnail = match agent.upload_file(upload(THUMBNAIL)).await {
        Ok(thumbnail) => thumbnail,
        Err(error) => {
            agent.reply(message, refusal(error)?).await?;
            return Ok(());
        }
    };
    let photo = agent.upload_file(photo(&thumbnail)).await?;
    let notes = agent.upload_file(upload(NOTES)).await?;
    let uploaded = [thumbnail, photo, notes];
    agent.send_message(several(message, &uploaded)).await?;
    let clip = agent.send_file(clip(message, &uploaded[0])).await?;
    agent.send_message(OutgoingMessage::reply(message, REUSED_CAPTION).attachments([uploaded[1].clone()])).await?;
    sent.record(Sent { uploaded, clip });
    Ok(())
}

/// [`send_attachments`] with the blocking runtime's handle.
pub fn send_attachments_blocking(
    message: &AgentMessage,
    agent: &pacerelle_blocking::AgentHandle,
    sent: &SentAttachments,
) -> HandlerResult {
    let thumbnail = match agent.upload_file(upload(THUMBNAIL)) {
        Ok(thumbnail) => thumbnail,
        Err(error) => {
            agent.reply(message, refusal(error)?)?;
            return Ok(());
        }
    };
    let photo = agent.upload_file(photo(&thumbnail))?;
    let notes = agent.upload_file(upload(NOTES))?;
    let uploaded = [thumbnail, photo, notes];
    agent.send_message(several(message, &uploaded))?;
    let clip = agent.send_file(clip(message, &uploaded[0]))?;
    agent.send_message(OutgoingMessage::reply(message, REUSED_CAPTION).attachments([uploaded[1].clone()]))?;
    sent.record(Sent { uploaded, clip });
    Ok(())
}

/// The relay, a person on device `phone` (encrypted when `e2ee`), their conversation and the
/// agent on runtime `H`, connected.
async fn world<H: Harness>(e2ee: bool, behaviour: &Behaviour) -> (RelayHandle, PersonClient, String, Running) {
    let config = RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN).person(PERSON, PERSON_TOKEN);
    let relay = Relay::spawn(config).await.expect("the relay starts");
    let mut person_config = PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url()).device("phone");
    if e2ee {
        person_config = person_config.encrypted();
    }
    let person = PersonClient::connect(person_config).await.expect("the person connects");
    let conversation = person.create_conversation(&[AGENT], false).await.expect("a conversation");
    let core = AgentConfig {
        backoff: Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(200) },
        ..AgentConfig::new(AGENT)
    };
    let mut client = ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(relay.base_url()).expect("a base URL");
    client.e2ee = e2ee;
    let agent = H::start(client, core, behaviour.clone());
    // An encrypted agent publishes its prekeys before it opens its socket.
    wait_until("the agent to connect", || agent.is_connected()).await;
    (relay, person, conversation, agent)
}

/// Closes the agent (which must return `Ok` promptly), the person and the relay.
async fn finish<H: Harness>(relay: RelayHandle, person: PersonClient, agent: Running) {
    agent.close();
    match agent.finished(PROMPT).await {
        Some(Ok(())) => {}
        Some(Err(error)) => panic!("{}: connect returned {error}", H::NAME),
        None => panic!("{}: connect had not returned {PROMPT:?} after close", H::NAME),
    }
    person.close().await;
    relay.shutdown().await;
}

/// Downloads `attachment` as the person and checks it decrypts to `expected`.
async fn opens_to(person: &PersonClient, attachment: &Attachment, expected: (&str, &str, &[u8]), runtime: &str) {
    let (name, mime, bytes) = expected;
    assert_eq!((attachment.name.as_str(), attachment.mime.as_str()), (name, mime), "{runtime}: real metadata");
    assert_eq!(attachment.size, bytes.len() as u64, "{runtime}: {name}'s size");
    let opened =
        person.download_attachment(attachment).await.unwrap_or_else(|error| panic!("{runtime}: {name}: {error}"));
    assert_eq!(opened, bytes, "{runtime}: {name} decrypts to its contents");
}

/// The agent uploads three files, sends them in one message (a photo naming its thumbnail among
/// them), sends a clip with `send_file` (which returns the attachment and the message id) and
/// the photo again; the encrypted person downloads and decrypts every attachment, each with its
/// real metadata, and finds each thumbnail by its blob. The relay stored four ciphertexts (the
/// reused photo is not uploaded again) and saw only redacted entries.
pub fn several_attachments_with_a_thumbnail<H: Harness>() {
    run(async {
        let name = H::NAME;
        let behaviour = Behaviour::new();
        let (relay, person, conversation, agent) = world::<H>(true, &behaviour).await;
        let asked = person.send_text(&conversation, AGENT, ATTACHMENTS).expect("the person asks");

        // One message, three attachments: the photo names the thumbnail's blob.
        let several = next_message(&person, "the message with three attachments").await;
        assert_eq!(several.text, SEVERAL_CAPTION, "{name}");
        assert!(several.encrypted, "{name}: the files' message arrived in plaintext");
        assert_eq!(several.reply_to_message_id.as_deref(), Some(asked.as_str()), "{name}: linked");
        let [photo, thumbnail, notes] = several.attachments.as_slice() else {
            panic!("{name}: expected three attachments, got {:?}", several.attachments)
        };
        assert_eq!((photo.width, photo.height), (Some(PHOTO_SIZE.0), Some(PHOTO_SIZE.1)), "{name}");
        assert_eq!(photo.thumbnail_blob_id.as_deref(), Some(thumbnail.blob_id.as_str()), "{name}: the thumbnail");
        let thumbnail_of = |media: &Attachment| {
            several.attachments.iter().find(|entry| Some(entry.blob_id.as_str()) == media.thumbnail_blob_id.as_deref())
        };
        let found =
            thumbnail_of(photo).unwrap_or_else(|| panic!("{name}: the photo's thumbnail is not in the message"));
        opens_to(&person, found, THUMBNAIL, name).await;
        opens_to(&person, photo, PHOTO, name).await;
        opens_to(&person, notes, NOTES, name).await;

        // The clip, from send_file: the attachment and the id it returned are what arrived.
        let clip = next_message(&person, "the clip").await;
        assert_eq!((clip.text.as_str(), clip.encrypted), (CLIP_CAPTION, true), "{name}");
        let [clip_thumbnail, clip_file] = clip.attachments.as_slice() else {
            panic!("{name}: expected the thumbnail and the clip, got {:?}", clip.attachments)
        };
        assert_eq!(clip_thumbnail, thumbnail, "{name}: the thumbnail reused as it was");
        assert_eq!((clip_file.width, clip_file.height), (Some(CLIP_SIZE.0), Some(CLIP_SIZE.1)), "{name}");
        assert_eq!(clip_file.duration_ms, Some(CLIP_DURATION_MS), "{name}");
        assert_eq!(clip_file.thumbnail_blob_id.as_deref(), Some(thumbnail.blob_id.as_str()), "{name}");
        opens_to(&person, clip_file, CLIP, name).await;

        // The photo again: the same blob and key, and it still opens.
        let reused = next_message(&person, "the photo again").await;
        assert_eq!(reused.text, REUSED_CAPTION, "{name}");
        assert_eq!(reused.attachments, vec![photo.clone()], "{name}: the same attachment");
        opens_to(&person, &reused.attachments[0], PHOTO, name).await;

        // What the handler's calls returned is what the person received.
        wait_until("the handler to finish", || behaviour.sent_attachments().get().is_some()).await;
        let sent = behaviour.sent_attachments().get().unwrap_or_else(|| panic!("{name}: nothing recorded"));
        assert_eq!(sent.uploaded, [thumbnail.clone(), photo.clone(), notes.clone()], "{name}: upload_file's answers");
        assert_eq!(sent.clip.message_id, clip.id, "{name}: send_file returns the message id");
        assert_eq!(&sent.clip.attachment, clip_file, "{name}: send_file returns the attachment");
        wait_until("the acknowledgement", || relay.pending_for_agent(AGENT) == 0).await;
        assert_eq!(behaviour.calls_for(&asked), 1, "{name}: handled once");

        // The relay stored four ciphertexts and saw redacted entries only.
        let observed = relay.observed();
        let blobs: Vec<usize> =
            observed.iter().filter(|item| serde_json::from_slice::<Value>(item).is_err()).map(Vec::len).collect();
        let expected: Vec<usize> =
            [THUMBNAIL, PHOTO, NOTES, CLIP].iter().map(|(_, _, bytes)| bytes.len() + 16).collect();
        assert_eq!(blobs, expected, "{name}: four uploads, ciphertext and tag, none twice");
        let entries: Vec<Value> = msg_frames(&observed)
            .iter()
            .filter_map(|frame| frame.get("attachments").and_then(Value::as_array).cloned())
            .flatten()
            .collect();
        assert_eq!(entries.len(), 3 + 2 + 1, "{name}: {entries:?}");
        for entry in &entries {
            assert_eq!((&entry["name"], &entry["mime"]), (&json!("attachment"), &json!("application/octet-stream")));
        }
        for (file, mime, bytes) in [THUMBNAIL, PHOTO, NOTES, CLIP] {
            for needle in [file.as_bytes(), mime.as_bytes(), bytes] {
                let seen = leaks(&observed, needle);
                assert!(seen.is_empty(), "{name}: {:?} crossed the relay: {seen:?}", String::from_utf8_lossy(needle));
            }
        }
        finish::<H>(relay, person, agent).await;
    });
}

/// Without end-to-end encryption, the agent's `upload_file` is refused with
/// `SendError::FileReadableByRelay` (it did not accept that the relay can read its files) and
/// nothing is uploaded.
pub fn files_without_encryption_are_refused<H: Harness>() {
    run(async {
        let name = H::NAME;
        let behaviour = Behaviour::new();
        let (relay, person, conversation, agent) = world::<H>(false, &behaviour).await;
        person.send_text(&conversation, AGENT, ATTACHMENTS).expect("the person asks");
        let answer = next_message(&person, "the refusal").await;
        let expected = format!("{REFUSED_PREFIX}{}", ClientError::Send(SendError::FileReadableByRelay));
        assert_eq!(answer.text, expected, "{name}");
        assert!(answer.attachments.is_empty(), "{name}");
        let blobs = relay.observed().iter().filter(|item| serde_json::from_slice::<Value>(item).is_err()).count();
        assert_eq!(blobs, 0, "{name}: nothing uploaded");
        assert!(behaviour.sent_attachments().get().is_none(), "{name}");
        finish::<H>(relay, person, agent).await;
    });
}
