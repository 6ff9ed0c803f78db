//! Several attachments and a thumbnail, across the two SDKs (issue 12, item 3), through the
//! official SDK's own code (`oracle/official_attachments.py`, no relay, e2ee off so that
//! payloads are only base64 and both sides read the same `chat.message`):
//! - our agent uploads a thumbnail, a photo naming it and notes with `upload_file`, sends them
//!   in one message and a clip with `send_file`; the official agent's handler reads every
//!   attachment with our real metadata, keys and thumbnail blob, and its `download_attachment`
//!   decrypts each blob to the file; re-encoding what it read, the official SDK writes our
//!   payload and envelope entries byte for byte;
//! - the official agent uploads a thumbnail with `upload_file`, sends a photo naming it with
//!   `send_media`, and the photo, thumbnail and notes in one `send_message`; our agent reads
//!   every attachment as the official calls returned it, and decrypts each blob to the file.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pacerelle_core::agent::{Agent, AgentConfig, Event, FileUpload, Input, OutgoingFile, OutgoingMessage, Output};
use pacerelle_core::store::AgentSnapshot;
use pacerelle_core::wire::http::{HttpRequest, HttpResponse};
use pacerelle_core::{AgentMessage, Attachment, Timestamp};
use rand::SeedableRng;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::Stdio;

const THUMBNAIL: &[u8] = b"tiny thumbnail pixels";
const PHOTO: &[u8] = b"the full-size photo";
const NOTES: &[u8] = b"meeting notes: ship on friday";
const CLIP: &[u8] = b"a short clip of the launch";

/// Runs the oracle script with `request` on stdin and returns its JSON answer.
fn official(request: &Value) -> Value {
    let script = pacerelle_conformance::vectors_dir().join("oracle").join("official_attachments.py");
    let mut child = pacerelle_conformance::python()
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().expect("stdin").write_all(request.to_string().as_bytes()).expect("the request is written");
    let output = child.wait_with_output().expect("the oracle finishes");
    assert!(output.status.success(), "the official SDK failed:\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("a JSON answer")
}

/// A plaintext agent, connected, with nothing left to carry out.
fn agent() -> Agent {
    let rng = Box::new(rand::rngs::StdRng::seed_from_u64(12));
    let mut agent = Agent::new(AgentConfig::new("our-agent"), rng, AgentSnapshot::default()).expect("an agent");
    agent.start(Timestamp::from_millis(0));
    agent.handle_input(Timestamp::from_millis(1), Input::Connected).expect("connected");
    drain(&mut agent);
    agent
}

fn drain(agent: &mut Agent) -> Vec<Output> {
    std::iter::from_fn(|| agent.poll_output()).collect()
}

/// The relay's side of blob uploads: answers `call` with the next blob id and keeps the
/// ciphertext.
fn store_blob(agent: &mut Agent, call: &HttpRequest, blobs: &mut BTreeMap<String, Vec<u8>>) -> Vec<Output> {
    let blob_id = format!("our-blob-{}", blobs.len() + 1);
    blobs.insert(blob_id.clone(), call.body.clone());
    let body = json!({"id": blob_id}).to_string().into_bytes();
    agent
        .handle_input(Timestamp::from_millis(2), Input::Http(call.id, Ok(HttpResponse { status: 200, body })))
        .unwrap();
    drain(agent)
}

fn only_call(outputs: &[Output]) -> HttpRequest {
    match outputs {
        [Output::Http(call)] => call.clone(),
        other => panic!("expected one upload: {other:?}"),
    }
}

/// Uploads `file` and returns its attachment.
fn upload(agent: &mut Agent, file: FileUpload, blobs: &mut BTreeMap<String, Vec<u8>>) -> Attachment {
    agent.upload_file(file.allow_relay_to_read()).expect("the upload starts");
    let call = only_call(&drain(agent));
    match store_blob(agent, &call, blobs).as_slice() {
        [Output::Event(Event::Uploaded { result: Ok(attachment), .. })] => attachment.clone(),
        other => panic!("expected the attachment: {other:?}"),
    }
}

/// The message frames among `outputs`, as the relay hands them to their addressee.
fn delivered(outputs: &[Output], from: &str) -> Vec<Value> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Frame(text) => serde_json::from_str::<Value>(text).ok(),
            _ => None,
        })
        .filter(|frame| frame["type"] == "MSG")
        .map(|mut frame| {
            frame["from"] = json!(from);
            frame
        })
        .collect()
}

/// An attachment as the official SDK's dataclass has it (`asdict`).
fn as_official(attachment: &Attachment) -> Value {
    json!({
        "id": attachment.id, "name": attachment.name, "mime": attachment.mime, "size": attachment.size,
        "blob_id": attachment.blob_id, "sha256": attachment.sha256, "width": attachment.width,
        "height": attachment.height, "duration_ms": attachment.duration_ms,
        "thumbnail_blob_id": attachment.thumbnail_blob_id, "key_b64": attachment.key_b64, "iv_b64": attachment.iv_b64,
    })
}

#[test]
fn the_official_agent_reads_our_attachments_and_thumbnail() {
    let mut agent = agent();
    let mut blobs = BTreeMap::new();
    let thumbnail = upload(&mut agent, FileUpload::new(THUMBNAIL.to_vec(), "thumb.png", "image/png"), &mut blobs);
    let photo =
        FileUpload::new(PHOTO.to_vec(), "photo.jpg", "image/jpeg").dimensions(640, 480).thumbnail(&thumbnail.blob_id);
    let photo = upload(&mut agent, photo, &mut blobs);
    let notes = upload(&mut agent, FileUpload::new(NOTES.to_vec(), "notes.txt", "text/plain"), &mut blobs);
    let several = [photo.clone(), thumbnail.clone(), notes.clone()];
    agent
        .send_message(OutgoingMessage::new("c1", "official-agent", "three files").attachments(several.clone()))
        .unwrap();
    let mut frames = delivered(&drain(&mut agent), "our-agent");
    let clip = OutgoingFile::new("c1", "official-agent", CLIP.to_vec(), "clip.mp4", "video/mp4")
        .text("a clip")
        .dimensions(320, 240)
        .duration_ms(1500)
        .thumbnail(&thumbnail.blob_id)
        .allow_relay_to_read();
    agent.send_file(clip).expect("the clip starts");
    let call = only_call(&drain(&mut agent));
    let outputs = store_blob(&mut agent, &call, &mut blobs);
    let clip = outputs
        .iter()
        .find_map(|output| match output {
            Output::Event(Event::FileSent { attachment, .. }) => Some(attachment.clone()),
            _ => None,
        })
        .expect("the clip's message was sent");
    frames.extend(delivered(&outputs, "our-agent"));
    assert_eq!(frames.len(), 2);

    let blobs_b64: BTreeMap<&String, String> = blobs.iter().map(|(id, blob)| (id, STANDARD.encode(blob))).collect();
    let answer = official(&json!({"mode": "read", "frames": frames, "blobs": blobs_b64}));
    let messages = answer["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "the official agent handled both: {answer}");
    let sent = [
        (&frames[0], "three files", several.to_vec(), vec![PHOTO, THUMBNAIL, NOTES]),
        (&frames[1], "a clip", vec![clip], vec![CLIP]),
    ];
    for ((frame, text, attachments, contents), read) in sent.iter().zip(messages) {
        assert_eq!(read["text"], json!(text));
        let read_attachments = read["attachments"].as_array().expect("attachments");
        assert_eq!(read_attachments.len(), attachments.len(), "{read}");
        for ((ours, content), theirs) in attachments.iter().zip(contents).zip(read_attachments) {
            let mut theirs = theirs.clone();
            let plaintext = theirs.as_object_mut().and_then(|entry| entry.remove("plaintext_b64"));
            assert_eq!(theirs, as_official(ours), "the official SDK reads our attachment as we sent it");
            assert_eq!(plaintext, Some(json!(STANDARD.encode(content))), "its download_attachment decrypts it");
        }
        // What the official SDK writes for the same attachments is what we wrote.
        let payload = STANDARD.decode(frame["payload_b64"].as_str().unwrap()).unwrap();
        assert_eq!(read["payload"], json!(String::from_utf8(payload).unwrap()), "the payload, byte for byte");
        assert_eq!(read["public"], frame["attachments"], "the envelope entries");
    }
    assert_eq!(messages[0]["attachments"][0]["thumbnail_blob_id"], json!(thumbnail.blob_id));
    assert_eq!(messages[1]["attachments"][0]["thumbnail_blob_id"], json!(thumbnail.blob_id));
}

/// What our agent's handler gets for `frame`.
fn received(agent: &mut Agent, frame: &Value) -> AgentMessage {
    agent.handle_input(Timestamp::from_millis(3), Input::Frame(frame.to_string())).expect("the frame is read");
    drain(agent)
        .into_iter()
        .find_map(|output| match output {
            Output::Event(Event::Message(message)) => Some(message),
            _ => None,
        })
        .expect("a message for the handler")
}

#[test]
fn our_agent_reads_the_official_upload_file_send_media_and_several_attachments() {
    let files = json!({"thumbnail": STANDARD.encode(THUMBNAIL), "photo": STANDARD.encode(PHOTO), "notes": STANDARD.encode(NOTES)});
    let answer = official(&json!({"mode": "write", "files": files}));
    let frames: Vec<Value> = answer["frames"].as_array().expect("frames").clone();
    assert_eq!(frames.len(), 2, "send_media's message, then the three files: {answer}");
    let blob = |attachment: &Attachment| {
        let blob = answer["blobs"][&attachment.blob_id].as_str().expect("an uploaded blob");
        STANDARD.decode(blob).expect("base64")
    };
    let returned = &answer["attachments"];
    let mut agent = agent();

    let mut frame = frames[0].clone();
    frame["from"] = json!("official-agent");
    let media = received(&mut agent, &frame);
    assert_eq!(media.text, "a photo");
    let [photo] = media.attachments.as_slice() else { panic!("{:?}", media.attachments) };
    assert_eq!(as_official(photo), returned["photo"], "send_media's attachment, thumbnail included");
    assert_eq!(pacerelle_core::attachment::decrypt(photo, &blob(photo)).unwrap().as_slice(), PHOTO);

    let mut frame = frames[1].clone();
    frame["from"] = json!("official-agent");
    let several = received(&mut agent, &frame);
    assert_eq!(several.text, "three files");
    let [photo_again, thumbnail, notes] = several.attachments.as_slice() else { panic!("{:?}", several.attachments) };
    assert_eq!(photo_again, photo, "the photo reused as it was");
    assert_eq!(as_official(thumbnail), returned["thumbnail"]);
    assert_eq!(as_official(notes), returned["notes"]);
    assert_eq!(photo.thumbnail_blob_id.as_deref(), Some(thumbnail.blob_id.as_str()), "the photo names its thumbnail");
    for (attachment, content) in [(thumbnail, THUMBNAIL), (notes, NOTES), (photo_again, PHOTO)] {
        assert_eq!(pacerelle_core::attachment::decrypt(attachment, &blob(attachment)).unwrap().as_slice(), content);
    }
}
