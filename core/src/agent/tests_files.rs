//! Files as the official SDK offers them (issue 12, item 3): `upload_file` returns the
//! attachment without sending anything, a message carries any number of attachments (new or
//! reused), media name their thumbnail's blob, `send_file` returns the attachment with the
//! message id, and an agent without end-to-end encryption refuses files unless told the relay
//! may read them.

use super::tests::encrypted::{conversing, drain_into, to_person};
use super::tests::{agent, at, drain, frames};
use super::*;
use crate::human::{Person, PersonEvent, PersonInput, PersonMessage, PersonOutput};
use crate::wire::http::{HttpRequest, HttpResponse};
use rand::SeedableRng;
use serde_json::{Value, json};

/// The upload call among `outputs`, the only output.
fn only_upload(outputs: &[Output]) -> HttpRequest {
    match outputs {
        [Output::Http(call)] if call.path == "/agent/blobs" => call.clone(),
        _ => panic!("expected only an upload: {outputs:?}"),
    }
}

/// Answers upload `call` with blob `blob_id` and returns the attachment the agent reported.
fn stored(agent: &mut Agent, call: &HttpRequest, blob_id: &str) -> Attachment {
    let body = json!({"id": blob_id, "sha256": format!("sha-of-{blob_id}")}).to_string().into_bytes();
    agent.handle_input(at(20), Input::Http(call.id, Ok(HttpResponse { status: 200, body }))).unwrap();
    match drain(agent).as_slice() {
        [Output::Event(Event::Uploaded { request, result: Ok(attachment) })] if *request == call.id => {
            attachment.clone()
        }
        other => panic!("expected the upload's attachment and nothing else: {other:?}"),
    }
}

/// Uploads `file` with `agent` and returns the attachment and the ciphertext that went up.
fn upload(agent: &mut Agent, file: FileUpload, blob_id: &str) -> (Attachment, Vec<u8>) {
    agent.upload_file(file).unwrap();
    let call = only_upload(&drain(agent));
    (stored(agent, &call, blob_id), call.body)
}

/// What `person` makes of the agent's `frame`.
fn read_by(person: &mut Person, frame: &Value) -> PersonMessage {
    person.handle_input(at(30), PersonInput::Frame(to_person(frame))).unwrap();
    std::iter::from_fn(|| person.poll_output())
        .find_map(|output| match output {
            PersonOutput::Event(PersonEvent::Message(message)) => Some(message),
            _ => None,
        })
        .expect("the person reads the message")
}

#[test]
fn a_plaintext_agent_refuses_files_unless_the_relay_may_read_them() {
    let mut agent = agent();
    let photo = || FileUpload::new(b"JFIF".to_vec(), "cat.jpg", "image/jpeg");
    assert_eq!(agent.upload_file(photo()), Err(SendError::FileReadableByRelay));
    let file = OutgoingFile::new("c1", "u1", b"JFIF".to_vec(), "cat.jpg", "image/jpeg");
    assert_eq!(agent.send_file(file.clone()), Err(SendError::FileReadableByRelay));
    assert!(drain(&mut agent).is_empty(), "nothing was uploaded");
    assert!(SendError::FileReadableByRelay.to_string().contains("allow_relay_to_read"), "the error names the opt-in");

    // Allowed, the file goes up (still as ciphertext) and its message carries the key in a
    // payload the relay can read: exactly the official SDK's layout.
    let (attachment, blob) = upload(&mut agent, photo().allow_relay_to_read(), "blob-1");
    assert_ne!(blob, b"JFIF".to_vec());
    assert_eq!(crate::attachment::decrypt(&attachment, &blob).unwrap().as_slice(), b"JFIF");
    agent.send_message(OutgoingMessage::new("c1", "u1", "a cat").attachments([attachment.clone()])).unwrap();
    let frame = frames(&drain(&mut agent)).remove(0);
    assert_eq!(frame["encrypted"], json!(false));
    let payload = String::from_utf8(STANDARD.decode(frame["payload_b64"].as_str().unwrap()).unwrap()).unwrap();
    let (key, iv) = (attachment.key_b64.clone().unwrap(), attachment.iv_b64.clone().unwrap());
    assert_eq!(
        payload,
        format!(
            r#"{{"kind": "chat.message", "text": "a cat", "attachments": [{{"id": "{}", "blob_id": "blob-1", "key_b64": "{key}", "iv_b64": "{iv}", "name": "cat.jpg", "mime": "image/jpeg", "size": 4}}]}}"#,
            attachment.id
        )
    );
    let (request, _) = agent.send_file(file.allow_relay_to_read()).unwrap();
    assert_eq!(only_upload(&drain(&mut agent)).id, request);
}

#[test]
fn upload_needs_no_connection_and_sends_nothing() {
    let mut agent = Agent::new(
        AgentConfig::new("agent-1"),
        Box::new(rand::rngs::StdRng::seed_from_u64(3)),
        AgentSnapshot::default(),
    )
    .unwrap();
    assert!(!agent.is_connected());
    // An empty name and type get the official SDK's defaults.
    let (attachment, blob) = upload(&mut agent, FileUpload::new(vec![7; 40], "", "").allow_relay_to_read(), "b-9");
    assert_eq!((attachment.name.as_str(), attachment.mime.as_str()), (DEFAULT_FILE_NAME, DEFAULT_FILE_MIME));
    assert_eq!((attachment.size, blob.len()), (40, 40 + 16));
    assert_eq!((attachment.blob_id.as_str(), attachment.sha256.as_deref()), ("b-9", Some("sha-of-b-9")));
    assert_eq!(attachment.key_b64.as_ref().map(|key| STANDARD.decode(key).unwrap().len()), Some(32));
    assert_eq!(attachment.iv_b64.as_ref().map(|iv| STANDARD.decode(iv).unwrap().len()), Some(12));

    // A refused upload is reported with the relay's status and reason.
    agent.upload_file(FileUpload::new(vec![1], "a", "b").allow_relay_to_read()).unwrap();
    let call = only_upload(&drain(&mut agent));
    let full = HttpResponse { status: 413, body: br#"{"error":"blob too large"}"#.to_vec() };
    agent.handle_input(at(21), Input::Http(call.id, Ok(full))).unwrap();
    assert_eq!(
        drain(&mut agent),
        vec![Output::Event(Event::Uploaded {
            request: call.id,
            result: Err(UploadError { status: 413, error: "blob too large".into() })
        })]
    );
}

#[test]
fn one_message_carries_several_attachments_new_and_reused_with_a_thumbnail() {
    let (mut agent, mut store, mut person, _) = conversing();
    let thumbnail_bytes = b"tiny thumbnail pixels".to_vec();
    let photo_bytes = b"the full-size photo".to_vec();
    let notes_bytes = b"meeting notes".to_vec();
    let (thumbnail, thumbnail_blob) =
        upload(&mut agent, FileUpload::new(thumbnail_bytes.clone(), "thumb.png", "image/png"), "blob-thumb");
    let photo = FileUpload::new(photo_bytes.clone(), "photo.jpg", "image/jpeg")
        .dimensions(640, 480)
        .thumbnail(&thumbnail.blob_id);
    let (photo, photo_blob) = upload(&mut agent, photo, "blob-photo");
    let (notes, notes_blob) =
        upload(&mut agent, FileUpload::new(notes_bytes.clone(), "notes.txt", "text/plain"), "b-n");
    assert_eq!(photo.thumbnail_blob_id.as_deref(), Some("blob-thumb"));
    assert_eq!(drain_into(&mut agent, &mut store), vec![], "uploads send no message");

    let attachments = [photo.clone(), thumbnail.clone(), notes.clone()];
    let id = agent.send_message(OutgoingMessage::new("c1", "u1", "three files").attachments(attachments)).unwrap();
    let frame = frames(&drain_into(&mut agent, &mut store)).remove(0);
    assert_eq!((frame["id"].as_str(), frame["encrypted"].as_bool()), (Some(id.as_str()), Some(true)));
    // The relay sees three redacted entries, the photo naming its thumbnail's blob.
    let redacted = |attachment: &Attachment| {
        json!({"id": attachment.id, "name": "attachment", "mime": "application/octet-stream",
               "size": attachment.size, "blob_id": attachment.blob_id, "sha256": attachment.sha256})
    };
    let mut photo_entry = redacted(&photo);
    photo_entry["thumbnail_blob_id"] = json!("blob-thumb");
    assert_eq!(frame["attachments"], json!([photo_entry, redacted(&thumbnail), redacted(&notes)]));
    for secret in ["photo.jpg", "thumb.png", "notes.txt", "image/", "text/plain", "640"] {
        assert!(!frame.to_string().contains(secret), "{secret} crossed the relay");
    }

    // The person gets all three with their real metadata and keys, each opening its blob.
    let received = read_by(&mut person, &frame);
    assert_eq!(received.text, "three files");
    assert_eq!(received.attachments, vec![photo.clone(), thumbnail.clone(), notes.clone()]);
    let thumbnail_entry = received
        .attachments
        .iter()
        .find(|entry| Some(entry.blob_id.as_str()) == received.attachments[0].thumbnail_blob_id.as_deref());
    let opened = |attachment: &Attachment, blob: &[u8]| crate::attachment::decrypt(attachment, blob).unwrap().to_vec();
    assert_eq!(opened(thumbnail_entry.expect("the thumbnail travels along"), &thumbnail_blob), thumbnail_bytes);
    assert_eq!(opened(&received.attachments[0], &photo_blob), photo_bytes);
    assert_eq!(opened(&received.attachments[2], &notes_blob), notes_bytes);

    // The photo again, in a later message: the same blob and key, nothing uploaded.
    agent.send_message(OutgoingMessage::new("c1", "u1", "again").attachments([photo.clone()])).unwrap();
    let outputs = drain_into(&mut agent, &mut store);
    assert!(!outputs.iter().any(|output| matches!(output, Output::Http(_))), "a reused attachment is not uploaded");
    let again = read_by(&mut person, &frames(&outputs)[0]);
    assert_eq!(again.attachments, vec![photo]);
    assert_eq!(opened(&again.attachments[0], &photo_blob), photo_bytes);
}

#[test]
fn send_file_returns_the_attachment_it_sent_and_media_keep_their_thumbnail() {
    let (mut agent, mut store, mut person, message) = conversing();
    let (thumbnail, _) = upload(&mut agent, FileUpload::new(b"small".to_vec(), "t.png", "image/png"), "blob-t");
    let mut clip = OutgoingFile::new("c1", "u1", b"a short clip".to_vec(), "clip.mp4", "video/mp4")
        .text("the clip")
        .reply_to(&message.id)
        .dimensions(320, 240)
        .duration_ms(1500)
        .thumbnail(&thumbnail.blob_id);
    clip.message.attachments.push(thumbnail.clone());
    let (request, message_id) = agent.send_file(clip).unwrap();
    let call = only_upload(&drain_into(&mut agent, &mut store));
    let body = br#"{"id":"blob-clip"}"#.to_vec();
    agent.handle_input(at(40), Input::Http(request, Ok(HttpResponse { status: 200, body }))).unwrap();
    let outputs = drain_into(&mut agent, &mut store);
    let sent = outputs.iter().find_map(|output| match output {
        Output::Event(Event::FileSent { request: answered, message_id, attachment }) if *answered == request => {
            Some(SentFile { message_id: message_id.clone(), attachment: attachment.clone() })
        }
        _ => None,
    });
    let sent = sent.expect("the file's message was sent");
    assert_eq!(sent.message_id, message_id);
    let clip = &sent.attachment;
    assert_eq!((clip.name.as_str(), clip.mime.as_str(), clip.blob_id.as_str()), ("clip.mp4", "video/mp4", "blob-clip"));
    assert_eq!((clip.width, clip.height, clip.duration_ms), (Some(320), Some(240), Some(1500)));
    assert_eq!(clip.thumbnail_blob_id.as_deref(), Some("blob-t"));
    assert_eq!(crate::attachment::decrypt(clip, &call.body).unwrap().as_slice(), b"a short clip");

    // The message carries what it already had, then the new file; the person reads both.
    let frame = frames(&outputs).remove(0);
    assert_eq!(frame["id"], json!(message_id));
    assert_eq!(frame["reply_to_message_id"], json!(message.id));
    assert_eq!(frame["attachments"][1]["thumbnail_blob_id"], json!("blob-t"));
    let received = read_by(&mut person, &frame);
    assert_eq!(received.text, "the clip");
    assert_eq!(received.attachments, vec![thumbnail, sent.attachment]);
}
