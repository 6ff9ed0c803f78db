//! The agent state machine driven by a sequence of operations decoded from the input.
//!
//! A connected [`Agent`] (seeded RNG) gets socket events, frames (arbitrary text, or `MSG`
//! frames built from small pools of ids so replays, conflicts, replies and receipt expiry are
//! reached quickly), app commands (accept, send, reply, widgets) and clock moves. After every
//! step all outputs are drained and checked:
//! - every `Output::Frame` is a JSON object with a string `type`, and the relay can parse it
//!   (`AgentOutboundFrame::parse`);
//! - a refused input or command (`Err`) changed nothing but a message's failure record, and
//!   emitted nothing but that record's `Persist` and, once the message is given up, its
//!   `ACK_READ` and `Event::Undeliverable` (never a message event or a `MSG` frame);
//! - a store that applies every `Output::Persist` in order equals `agent.snapshot()` after each
//!   step, holds a message's pending receipt before its `Event::Message`, and its accepted receipt
//!   before its `ACK_READ` (the delivery guarantees of `core/src/agent/mod.rs`);
//! - an accepted message seen again raises no second event;
//! - every `MSG` frame the agent sends (all outside handlers here) is in the store's outbox when
//!   it leaves (committed before it, or sent again from it at a connection, once), and leaves it
//!   only by a `Pong`;
//! - what `send_message`, `send_widget` and `send_widget_update` put in `payload_b64` reads back
//!   (text, widget id and kind, update ref);
//! - nothing panics.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use pacerelle_core::agent::OutgoingMessage;
use pacerelle_core::payload::parse_payload;
use pacerelle_core::store::{AgentSnapshot, ReceiptState};
use pacerelle_core::widget::{
    self, ChoiceOption, Confirm, DateTime, FilePicker, Form, FormField, Permission, PermissionScope, Progress,
    ResponseMode, Widget, WidgetKind, WidgetPatch,
};
use pacerelle_core::wire::person::AgentOutboundFrame;
use pacerelle_core::{Agent, AgentConfig, AgentMessage, Attachment, Event, Input, Output, Timestamp};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};
use std::time::Duration;

const AGENT_ID: &str = "agent-1";
/// Message ids: few, so the same id comes back (replays, conflicts); one empty (refused).
const IDS: [&str; 7] = ["m0", "m1", "m2", "m3", "m4", "m5", ""];
const CONVERSATIONS: [&str; 4] = ["c0", "c1", "c2", ""];
const PEOPLE: [&str; 4] = ["u0", "u1", "u2", ""];
const DEVICES: [&str; 4] = ["d0", "d1", "d2", ""];
const ATTACHMENT_IDS: [&str; 3] = ["a0", "a1", "a2"];

fn pick(pool: &'static [&'static str], index: u8) -> &'static str {
    pool[usize::from(index) % pool.len()]
}

#[derive(Arbitrary, Debug)]
struct Session {
    /// `max_accepted_receipts`, small so eviction happens.
    max_receipts: u8,
    /// `receipt_retention` in seconds, small so expiry happens.
    retention_secs: u16,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Any text as a frame.
    Frame(String),
    /// A `MSG` built from the pools.
    Msg(Msg),
    /// `IDENTITY_CHANGED` with `user_id` or `agent_id`.
    IdentityChanged { agent: bool, peer: u8 },
    /// Accept a message id from the pool.
    Accept(u8),
    /// Accept a message the app received.
    AcceptReceived(u8),
    /// Send a message.
    Send(Send),
    /// Reply to a message the app received.
    Reply { message: u8, text: String },
    /// Send a standard widget.
    Widget { conversation: u8, to: SendTo, widget: WidgetSpec },
    /// Send a widget update.
    WidgetUpdate {
        conversation: u8,
        to: SendTo,
        widget_ref: String,
        spec: Option<Vec<(String, SmallValue)>>,
        expires_at: Option<String>,
        id: Option<String>,
    },
    /// The socket opened.
    Connected,
    /// A pong to the agent's ping.
    Pong,
    /// The relay's own ping.
    RelayPing,
    /// The socket dropped or failed to open.
    Disconnected,
    /// A timeout now.
    Timeout,
    /// Move the clock to the last requested wake-up and time out.
    WakeUp,
    /// Move the clock forward (milliseconds).
    Advance(u32),
    /// Move the clock forward by days (past receipt retention).
    AdvanceDays(u8),
    /// `Agent::start`.
    Start,
    /// `Agent::close`.
    Close,
    /// A new agent from what the store holds, started and connected.
    Restart { connect: bool },
}

#[derive(Arbitrary, Debug)]
struct Msg {
    id: u8,
    conversation: u8,
    from: u8,
    device: Option<u8>,
    to: MsgTo,
    payload: Payload,
    encrypted: Encrypted,
    reply_to: Option<u8>,
    attachments: Option<Vec<EnvelopeAttachment>>,
    /// Drop one routing field (0: id, 1: conversation_id, 2: from), to reach schema errors.
    drop_field: Option<u8>,
    /// An extra field outside the digest.
    extra: Option<SmallValue>,
}

#[derive(Arbitrary, Debug)]
enum MsgTo {
    Absent,
    Agent,
    Group,
    OtherGroup(u8),
    Person(u8),
    NotString(i32),
}

#[derive(Arbitrary, Debug)]
enum Encrypted {
    Absent,
    True,
    False,
    Null,
    Text,
    One,
}

#[derive(Arbitrary, Debug)]
enum Payload {
    Text(String),
    Chat {
        text: String,
        secrets: Vec<Secret>,
        text_not_string: bool,
    },
    WidgetResponse {
        id: u8,
        widget_ref: u8,
        value: Option<SmallValue>,
        cancelled: Option<bool>,
    },
    WidgetUpdate {
        id: u8,
        widget_ref: u8,
        patch: Option<Vec<(String, SmallValue)>>,
    },
    /// Raw bytes, base64-encoded (maybe not UTF-8).
    Bytes(Vec<u8>),
    /// `payload_b64` as given (maybe not base64).
    RawBase64(String),
    Absent,
    NotString(i64),
}

#[derive(Arbitrary, Debug)]
struct Secret {
    id: u8,
    key: bool,
    iv: bool,
    name: Option<String>,
    mime: Option<String>,
    size: Option<SmallValue>,
    width: Option<u32>,
}

#[derive(Arbitrary, Debug)]
struct EnvelopeAttachment {
    id: u8,
    name: Option<String>,
    mime: bool,
    blob: bool,
    size: Option<SmallValue>,
    sha256: Option<String>,
    width: Option<SmallValue>,
}

/// A JSON value without nesting beyond one level.
#[derive(Arbitrary, Debug)]
enum SmallValue {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Text(String),
    List(Vec<i32>),
    Object(Vec<(String, i32)>),
}

impl SmallValue {
    fn to_json(&self) -> Value {
        match self {
            SmallValue::Null => Value::Null,
            SmallValue::Bool(flag) => json!(flag),
            SmallValue::Int(int) => json!(int),
            SmallValue::UInt(int) => json!(int),
            // Non-finite floats become null (JSON cannot carry them).
            SmallValue::Float(float) => json!(float),
            SmallValue::Text(text) => json!(text),
            SmallValue::List(items) => json!(items),
            SmallValue::Object(entries) => {
                Value::Object(entries.iter().map(|(key, value)| (key.clone(), json!(value))).collect())
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Send {
    conversation: u8,
    to: SendTo,
    text: String,
    reply_to: Option<u8>,
    device: Option<u8>,
    attachments: Vec<OutgoingAttachment>,
}

#[derive(Arbitrary, Debug)]
enum SendTo {
    Person(u8),
    Group,
    OtherGroup(u8),
}

#[derive(Arbitrary, Debug)]
struct OutgoingAttachment {
    id: u8,
    name: String,
    mime: String,
    size: u64,
    blob: u8,
    key: Option<String>,
    iv: Option<String>,
    sha256: Option<String>,
    thumbnail: Option<String>,
    width: Option<u64>,
    duration_ms: Option<u64>,
}

#[derive(Arbitrary, Debug)]
struct WidgetSpec {
    kind: WidgetKindSpec,
    id: Option<String>,
    expires_at: Option<String>,
}

#[derive(Arbitrary, Debug)]
enum WidgetKindSpec {
    Confirm {
        title: String,
        body: String,
        danger: Option<bool>,
        labels: Option<(String, String)>,
        collective: Option<bool>,
    },
    Choice {
        title: String,
        options: Vec<(String, String)>,
        extra: Option<(String, SmallValue)>,
        collective: Option<bool>,
    },
    Permission {
        title: String,
        body: String,
        scopes: Vec<bool>,
    },
    Form {
        title: String,
        fields: Vec<(String, String, String, Option<bool>)>,
        option: Option<(String, SmallValue)>,
    },
    ProgressInt {
        title: String,
        value: i64,
    },
    ProgressFloat {
        title: String,
        value: f64,
    },
    FilePicker {
        title: String,
        body: String,
        multiple: Option<bool>,
        accept: Vec<String>,
        max_files: Option<u32>,
    },
    DateTime {
        title: String,
        mode: String,
        body: String,
        min: String,
        max: String,
    },
}

impl WidgetSpec {
    fn build(self) -> (Widget, WidgetKind) {
        let mode = |collective: bool| if collective { ResponseMode::Collective } else { ResponseMode::Individual };
        let widget: Widget = match self.kind {
            WidgetKindSpec::Confirm { title, body, danger, labels, collective } => {
                let mut confirm = Confirm::new(title).body(body);
                if let Some(danger) = danger {
                    confirm = confirm.danger(danger);
                }
                if let Some((yes, no)) = labels {
                    confirm = confirm.labels(yes, no);
                }
                if let Some(collective) = collective {
                    confirm = confirm.response_mode(mode(collective));
                }
                confirm = with_common(confirm, self.id, self.expires_at, Confirm::id, Confirm::expires_at);
                confirm.into()
            }
            WidgetKindSpec::Choice { title, options, extra, collective } => {
                let options = options.into_iter().map(|(id, label)| ChoiceOption::new(id, label));
                let mut choice = widget::Choice::new(title, options);
                if let Some((key, value)) = extra {
                    choice = choice.extra(key, value.to_json());
                }
                if let Some(collective) = collective {
                    choice = choice.response_mode(mode(collective));
                }
                with_common(choice, self.id, self.expires_at, widget::Choice::id, widget::Choice::expires_at).into()
            }
            WidgetKindSpec::Permission { title, body, scopes } => {
                let scopes =
                    scopes.into_iter().map(|once| if once { PermissionScope::Once } else { PermissionScope::Session });
                let permission = Permission::new(title).body(body).scopes(scopes);
                with_common(permission, self.id, self.expires_at, Permission::id, Permission::expires_at).into()
            }
            WidgetKindSpec::Form { title, fields, option } => {
                let fields = fields.into_iter().map(|(name, label, kind, required)| {
                    let field = FormField::new(name, label, kind);
                    match required {
                        Some(required) => field.required(required),
                        None => field,
                    }
                });
                let mut form = Form::new(title, fields);
                if let Some((key, value)) = option {
                    form = form.option(key, value.to_json());
                }
                with_common(form, self.id, self.expires_at, Form::id, Form::expires_at).into()
            }
            WidgetKindSpec::ProgressInt { title, value } => {
                with_common(Progress::new(title, value), self.id, self.expires_at, Progress::id, Progress::expires_at)
                    .into()
            }
            WidgetKindSpec::ProgressFloat { title, value } => {
                with_common(Progress::new(title, value), self.id, self.expires_at, Progress::id, Progress::expires_at)
                    .into()
            }
            WidgetKindSpec::FilePicker { title, body, multiple, accept, max_files } => {
                let mut picker = FilePicker::new(title).body(body).accept(accept);
                if let Some(multiple) = multiple {
                    picker = picker.multiple(multiple);
                }
                if let Some(max_files) = max_files {
                    picker = picker.max_files(max_files);
                }
                with_common(picker, self.id, self.expires_at, FilePicker::id, FilePicker::expires_at).into()
            }
            WidgetKindSpec::DateTime { title, mode, body, min, max } => {
                let picker = DateTime::new(title, mode).body(body).min(min).max(max);
                with_common(picker, self.id, self.expires_at, DateTime::id, DateTime::expires_at).into()
            }
        };
        let kind = widget.kind();
        (widget, kind)
    }
}

fn with_common<B>(
    builder: B,
    id: Option<String>,
    expires_at: Option<String>,
    set_id: fn(B, String) -> B,
    set_expiry: fn(B, String) -> B,
) -> B {
    let builder = match id {
        Some(id) => set_id(builder, id),
        None => builder,
    };
    match expires_at {
        Some(at) => set_expiry(builder, at),
        None => builder,
    }
}

impl Msg {
    fn frame(&self) -> String {
        let conversation = pick(&CONVERSATIONS, self.conversation);
        let mut object = Map::new();
        object.insert("type".into(), json!("MSG"));
        object.insert("id".into(), json!(pick(&IDS, self.id)));
        object.insert("conversation_id".into(), json!(conversation));
        object.insert("from".into(), json!(pick(&PEOPLE, self.from)));
        if let Some(device) = self.device {
            object.insert("from_device_id".into(), json!(pick(&DEVICES, device)));
        }
        match &self.to {
            MsgTo::Absent => {}
            MsgTo::Agent => {
                object.insert("to".into(), json!(AGENT_ID));
            }
            MsgTo::Group => {
                object.insert("to".into(), json!(format!("group:{conversation}")));
            }
            MsgTo::OtherGroup(other) => {
                object.insert("to".into(), json!(format!("group:{}", pick(&CONVERSATIONS, *other))));
            }
            MsgTo::Person(person) => {
                object.insert("to".into(), json!(pick(&PEOPLE, *person)));
            }
            MsgTo::NotString(number) => {
                object.insert("to".into(), json!(number));
            }
        }
        match &self.payload {
            Payload::Absent => {}
            Payload::NotString(number) => {
                object.insert("payload_b64".into(), json!(number));
            }
            Payload::RawBase64(text) => {
                object.insert("payload_b64".into(), json!(text));
            }
            Payload::Bytes(bytes) => {
                object.insert("payload_b64".into(), json!(STANDARD.encode(bytes)));
            }
            payload => {
                object.insert("payload_b64".into(), json!(STANDARD.encode(payload.text().as_bytes())));
            }
        }
        match self.encrypted {
            Encrypted::Absent => {}
            Encrypted::True => {
                object.insert("encrypted".into(), json!(true));
            }
            Encrypted::False => {
                object.insert("encrypted".into(), json!(false));
            }
            Encrypted::Null => {
                object.insert("encrypted".into(), Value::Null);
            }
            Encrypted::Text => {
                object.insert("encrypted".into(), json!("true"));
            }
            Encrypted::One => {
                object.insert("encrypted".into(), json!(1));
            }
        }
        if let Some(reply_to) = self.reply_to {
            object.insert("reply_to_message_id".into(), json!(pick(&IDS, reply_to)));
        }
        if let Some(attachments) = &self.attachments {
            let entries: Vec<Value> = attachments
                .iter()
                .map(|attachment| {
                    let mut entry = Map::new();
                    entry.insert("id".into(), json!(pick(&ATTACHMENT_IDS, attachment.id)));
                    if let Some(name) = &attachment.name {
                        entry.insert("name".into(), json!(name));
                    }
                    if attachment.mime {
                        entry.insert("mime".into(), json!("application/octet-stream"));
                    }
                    if attachment.blob {
                        entry.insert("blob_id".into(), json!("b0"));
                    }
                    if let Some(size) = &attachment.size {
                        entry.insert("size".into(), size.to_json());
                    }
                    if let Some(sha256) = &attachment.sha256 {
                        entry.insert("sha256".into(), json!(sha256));
                    }
                    if let Some(width) = &attachment.width {
                        entry.insert("width".into(), width.to_json());
                    }
                    Value::Object(entry)
                })
                .collect();
            object.insert("attachments".into(), Value::Array(entries));
        }
        if let Some(extra) = &self.extra {
            object.insert("x_extra".into(), extra.to_json());
        }
        if let Some(field) = self.drop_field {
            object.shift_remove(["id", "conversation_id", "from"][usize::from(field) % 3]);
        }
        Value::Object(object).to_string()
    }
}

impl Payload {
    /// The payload text for the structured variants.
    fn text(&self) -> String {
        match self {
            Payload::Text(text) => text.clone(),
            Payload::Chat { text, secrets, text_not_string } => {
                let secrets: Vec<Value> = secrets
                    .iter()
                    .map(|secret| {
                        let mut entry = Map::new();
                        entry.insert("id".into(), json!(pick(&ATTACHMENT_IDS, secret.id)));
                        if secret.key {
                            entry.insert("key_b64".into(), json!("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="));
                        }
                        if secret.iv {
                            entry.insert("iv_b64".into(), json!("AAECAwQFBgcICQoL"));
                        }
                        if let Some(name) = &secret.name {
                            entry.insert("name".into(), json!(name));
                        }
                        if let Some(mime) = &secret.mime {
                            entry.insert("mime".into(), json!(mime));
                        }
                        if let Some(size) = &secret.size {
                            entry.insert("size".into(), size.to_json());
                        }
                        if let Some(width) = secret.width {
                            entry.insert("width".into(), json!(width));
                        }
                        Value::Object(entry)
                    })
                    .collect();
                let text = if *text_not_string { json!(text.len()) } else { json!(text) };
                json!({"kind": "chat.message", "text": text, "attachments": secrets}).to_string()
            }
            Payload::WidgetResponse { id, widget_ref, value, cancelled } => {
                let mut object = Map::new();
                object.insert("type".into(), json!("widget.response"));
                object.insert("id".into(), json!(format!("r{id}")));
                object.insert("ref".into(), json!(format!("w{widget_ref}")));
                if let Some(value) = value {
                    object.insert("value".into(), value.to_json());
                }
                if let Some(cancelled) = cancelled {
                    object.insert("cancelled".into(), json!(cancelled));
                }
                Value::Object(object).to_string()
            }
            Payload::WidgetUpdate { id, widget_ref, patch } => {
                let mut object = Map::new();
                object.insert("type".into(), json!("widget.update"));
                object.insert("id".into(), json!(format!("u{id}")));
                object.insert("ref".into(), json!(format!("w{widget_ref}")));
                if let Some(patch) = patch {
                    let patch: Map<String, Value> =
                        patch.iter().map(|(key, value)| (key.clone(), value.to_json())).collect();
                    object.insert("patch".into(), Value::Object(patch));
                }
                Value::Object(object).to_string()
            }
            Payload::Bytes(_) | Payload::RawBase64(_) | Payload::Absent | Payload::NotString(_) => String::new(),
        }
    }
}

impl Send {
    fn message(&self) -> OutgoingMessage {
        let conversation = pick(&CONVERSATIONS, self.conversation);
        let mut message = OutgoingMessage::new(conversation, send_to(&self.to, conversation), self.text.clone());
        if let Some(reply_to) = self.reply_to {
            message = message.reply_to(pick(&IDS, reply_to));
        }
        if let Some(device) = self.device {
            message = message.to_device(pick(&DEVICES, device));
        }
        message.attachments(self.attachments.iter().map(|attachment| Attachment {
            id: pick(&ATTACHMENT_IDS, attachment.id).into(),
            name: attachment.name.clone(),
            mime: attachment.mime.clone(),
            size: attachment.size,
            blob_id: format!("b{}", attachment.blob),
            sha256: attachment.sha256.clone(),
            width: attachment.width,
            height: None,
            duration_ms: attachment.duration_ms,
            thumbnail_blob_id: attachment.thumbnail.clone(),
            key_b64: attachment.key.clone(),
            iv_b64: attachment.iv.clone(),
        }))
    }
}

fn send_to(to: &SendTo, conversation: &str) -> String {
    match to {
        SendTo::Person(person) => pick(&PEOPLE, *person).into(),
        SendTo::Group => format!("group:{conversation}"),
        SendTo::OtherGroup(other) => format!("group:{}", pick(&CONVERSATIONS, *other)),
    }
}

/// What a step should leave in its outputs, checked once they are drained.
enum Expect {
    Nothing,
    /// One sent `MSG` (with this frame id, when the call returned it) whose payload reads back
    /// as `check` says.
    Sent {
        frame_id: Option<String>,
        check: SentCheck,
    },
    /// A frame for an id already accepted before the step: no `Event::Message` for it.
    NoEventFor(String),
    /// A refused input: no message event, no `MSG` frame.
    Refused,
    /// A connection: the outbox's unproven entries go again (each from its persisted entry),
    /// nothing else.
    Resends,
}

enum SentCheck {
    /// Plain text or a chat message: `parse_payload(payload).text` is this, when known.
    Text(Option<String>),
    /// A standard widget of this kind with this id.
    Widget(WidgetKind, String),
    /// A widget update with this id.
    Update(String),
}

struct Harness {
    config: AgentConfig,
    agent: Agent,
    /// A store that applies every `Output::Persist`, in order.
    store: AgentSnapshot,
    now: u64,
    wake_at: Option<u64>,
    received: Vec<AgentMessage>,
    restarts: u64,
}

impl Harness {
    fn new(config: AgentConfig) -> Self {
        let now = 1_000_000;
        let rng = StdRng::seed_from_u64(0);
        let mut agent = Agent::new(config.clone(), Box::new(rng), AgentSnapshot::default()).expect("valid config");
        agent.start(Timestamp::from_millis(now));
        assert_eq!(agent.poll_output(), Some(Output::Connect));
        agent.handle_input(Timestamp::from_millis(now), Input::Connected).expect("connected");
        // The first keepalive ping's deadline, and nothing else.
        let first_ping = Timestamp::from_millis(now).saturating_add(config.keepalive.interval);
        assert_eq!(agent.poll_output(), Some(Output::WakeAt(first_ping)));
        assert_eq!(agent.poll_output(), None);
        assert!(agent.is_connected());
        Harness {
            config,
            agent,
            store: AgentSnapshot::default(),
            now,
            wake_at: Some(first_ping.as_millis()),
            received: Vec::new(),
            restarts: 0,
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.now)
    }

    fn step(&mut self, op: Op) {
        let before = self.agent.snapshot().clone();
        let now = self.now();
        let (result, expect): (Result<(), String>, Expect) = match op {
            Op::Frame(text) => {
                (self.agent.handle_input(now, Input::Frame(text)).map_err(|e| e.to_string()), Expect::Nothing)
            }
            Op::Msg(msg) => {
                let frame = msg.frame();
                let expect = match self.agent.snapshot().receipts.get(pick(&IDS, msg.id)) {
                    Some(receipt) if matches!(receipt.state, ReceiptState::Accepted { .. }) => {
                        Expect::NoEventFor(receipt.message_id.clone())
                    }
                    _ => Expect::Nothing,
                };
                (self.agent.handle_input(now, Input::Frame(frame)).map_err(|e| e.to_string()), expect)
            }
            Op::IdentityChanged { agent, peer } => {
                let mut object = Map::new();
                object.insert("type".into(), json!("IDENTITY_CHANGED"));
                object.insert(if agent { "agent_id" } else { "user_id" }.into(), json!(pick(&PEOPLE, peer)));
                let frame = Value::Object(object).to_string();
                (self.agent.handle_input(now, Input::Frame(frame)).map_err(|e| e.to_string()), Expect::Nothing)
            }
            Op::Accept(id) => (self.agent.accept(pick(&IDS, id), now).map_err(|e| e.to_string()), Expect::Nothing),
            Op::AcceptReceived(index) => match self.received_message(index) {
                Some(message) => (self.agent.accept(&message.id, now).map_err(|e| e.to_string()), Expect::Nothing),
                None => (Ok(()), Expect::Nothing),
            },
            Op::Send(send) => {
                let message = send.message();
                let has_secrets = message.attachments.iter().any(|attachment| {
                    attachment.key_b64.as_deref().is_some_and(|key| !key.is_empty())
                        && attachment.iv_b64.as_deref().is_some_and(|iv| !iv.is_empty())
                });
                // Without secrets the payload is the text itself, which reads back unchanged
                // unless it is JSON of a shape parse_payload knows.
                let known = (has_secrets || !message.text.starts_with('{')).then(|| message.text.clone());
                match self.agent.send_message(message) {
                    Ok(id) => (Ok(()), Expect::Sent { frame_id: Some(id), check: SentCheck::Text(known) }),
                    Err(error) => (Err(error.to_string()), Expect::Nothing),
                }
            }
            Op::Reply { message, text } => match self.received_message(message) {
                Some(source) => {
                    let known = (!text.starts_with('{')).then(|| text.clone());
                    match self.agent.reply(&source, text) {
                        Ok(id) => (Ok(()), Expect::Sent { frame_id: Some(id), check: SentCheck::Text(known) }),
                        Err(error) => (Err(error.to_string()), Expect::Nothing),
                    }
                }
                None => (Ok(()), Expect::Nothing),
            },
            Op::Widget { conversation, to, widget } => {
                let conversation = pick(&CONVERSATIONS, conversation);
                let (widget, kind) = widget.build();
                match self.agent.send_widget(conversation, &send_to(&to, conversation), widget) {
                    Ok(id) => (Ok(()), Expect::Sent { frame_id: None, check: SentCheck::Widget(kind, id) }),
                    Err(error) => (Err(error.to_string()), Expect::Nothing),
                }
            }
            Op::WidgetUpdate { conversation, to, widget_ref, spec, expires_at, id } => {
                let conversation = pick(&CONVERSATIONS, conversation);
                let mut patch = WidgetPatch::new(widget_ref);
                if let Some(spec) = spec {
                    patch = patch.spec(spec.iter().map(|(key, value)| (key.clone(), value.to_json())).collect());
                }
                if let Some(at) = expires_at {
                    patch = patch.expires_at(at);
                }
                if let Some(id) = id {
                    patch = patch.id(id);
                }
                match self.agent.send_widget_update(conversation, &send_to(&to, conversation), patch) {
                    // The returned id is the update's; the frame's id is the message's.
                    Ok(id) => (Ok(()), Expect::Sent { frame_id: None, check: SentCheck::Update(id) }),
                    Err(error) => (Err(error.to_string()), Expect::Nothing),
                }
            }
            Op::Connected => {
                (self.agent.handle_input(now, Input::Connected).map_err(|e| e.to_string()), Expect::Resends)
            }
            Op::Disconnected => {
                (self.agent.handle_input(now, Input::Disconnected).map_err(|e| e.to_string()), Expect::Nothing)
            }
            Op::Timeout => (self.agent.handle_input(now, Input::Timeout).map_err(|e| e.to_string()), Expect::Nothing),
            Op::Pong => (self.agent.handle_input(now, Input::Pong).map_err(|e| e.to_string()), Expect::Nothing),
            Op::RelayPing => {
                let outbox = self.store.outbox.clone();
                let result = self.agent.handle_input(now, Input::Ping).map_err(|e| e.to_string());
                self.drain(Expect::Nothing);
                assert_eq!(self.store.outbox, outbox, "a relay ping confirmed an outbox entry");
                (result, Expect::Nothing)
            }
            Op::WakeUp => {
                if let Some(at) = self.wake_at.take() {
                    self.now = self.now.max(at);
                }
                let now = self.now();
                (self.agent.handle_input(now, Input::Timeout).map_err(|e| e.to_string()), Expect::Nothing)
            }
            Op::Advance(millis) => {
                self.now = self.now.saturating_add(u64::from(millis));
                (Ok(()), Expect::Nothing)
            }
            Op::AdvanceDays(days) => {
                self.now = self.now.saturating_add(u64::from(days) * 24 * 3600 * 1000);
                (Ok(()), Expect::Nothing)
            }
            Op::Start => {
                self.agent.start(now);
                (Ok(()), Expect::Nothing)
            }
            Op::Close => {
                self.agent.close();
                (Ok(()), Expect::Nothing)
            }
            Op::Restart { connect } => {
                self.restarts += 1;
                let rng = StdRng::seed_from_u64(self.restarts);
                self.agent = Agent::new(self.config.clone(), Box::new(rng), self.store.clone()).expect("valid config");
                assert_eq!(self.agent.snapshot(), &self.store);
                self.agent.start(now);
                if connect {
                    assert_eq!(self.agent.poll_output(), Some(Output::Connect));
                    self.agent.handle_input(now, Input::Connected).expect("connected");
                    (Ok(()), Expect::Resends)
                } else {
                    (Ok(()), Expect::Nothing)
                }
            }
        };

        if let Err(error) = &result {
            let mut after = self.agent.snapshot().clone();
            after.failures = before.failures.clone();
            assert_eq!(&after, &before, "refused ({error}) but changed more than a failure record");
            self.drain(Expect::Refused);
            assert_eq!(self.agent.snapshot(), &self.store, "store differs after a refusal");
            return;
        }
        self.drain(expect);
        assert_eq!(
            self.agent.snapshot(),
            &self.store,
            "store applying every Persist differs from the agent's snapshot"
        );
    }

    fn received_message(&self, index: u8) -> Option<AgentMessage> {
        if self.received.is_empty() {
            return None;
        }
        Some(self.received[usize::from(index) % self.received.len()].clone())
    }

    fn drain(&mut self, expect: Expect) {
        let mut sent = Vec::new();
        while let Some(output) = self.agent.poll_output() {
            match output {
                Output::Frame(frame) => {
                    let value: Value =
                        serde_json::from_str(&frame).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {frame}"));
                    let kind = value
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or_else(|| panic!("frame without string type: {frame}"));
                    let parsed = AgentOutboundFrame::parse(&frame)
                        .unwrap_or_else(|e| panic!("relay cannot parse ({e}): {frame}"));
                    match parsed {
                        AgentOutboundFrame::AckRead(ack) => {
                            assert_eq!(kind, "ACK_READ");
                            let receipt = self.store.receipts.get(&ack.message_id);
                            let given_up = self
                                .store
                                .failures
                                .get(&ack.message_id)
                                .is_some_and(|failure| failure.given_up_at.is_some());
                            assert!(
                                given_up || matches!(receipt.map(|r| &r.state), Some(ReceiptState::Accepted { .. })),
                                "ACK_READ for {} before its acceptance (or giving up) was persisted",
                                ack.message_id
                            );
                        }
                        AgentOutboundFrame::Msg(msg) => {
                            assert_eq!(kind, "MSG");
                            assert!(
                                self.store
                                    .outbox
                                    .values()
                                    .any(|entry| entry.sent.id == msg.id && entry.sent.frame == frame),
                                "MSG {} left before its outbox entry was persisted",
                                msg.id
                            );
                            assert!(!matches!(expect, Expect::Refused), "a refused input sent a message");
                            sent.push(msg);
                        }
                    }
                }
                Output::Persist(changes) => self.store.apply(&changes),
                Output::Event(Event::Message(message)) => {
                    let receipt = self.store.receipts.get(&message.id);
                    assert!(
                        matches!(receipt.map(|r| &r.state), Some(ReceiptState::Pending { .. })),
                        "message {} handed to the app without a persisted pending receipt",
                        message.id
                    );
                    if let Expect::NoEventFor(id) = &expect {
                        assert_ne!(&message.id, id, "accepted message handed to the app again");
                    }
                    assert!(!matches!(expect, Expect::Refused), "a refused message reached the app");
                    self.received.push(message);
                    if self.received.len() > 16 {
                        self.received.remove(0);
                    }
                }
                // The relay's `IDENTITY_CHANGED` may name nobody (the official SDK reads a missing id
                // as ""); the SDK's own evidence always names the peer whose session spoke.
                Output::Event(Event::IdentityChanged(change)) => assert!(
                    change.source == pacerelle_core::agent::ChangeSource::Relay || !change.peer.user_id.is_empty()
                ),
                Output::Event(Event::Undeliverable(report)) => assert!(
                    self.store.failures.get(&report.message_id).is_some_and(|failure| failure.given_up_at.is_some()),
                    "{} reported undeliverable before giving up was persisted",
                    report.message_id
                ),
                // This agent runs without e2ee and sends no files: no publication, no transfer.
                Output::Event(other) => panic!("unexpected event for a plaintext agent: {other:?}"),
                Output::Http(request) => panic!("a plaintext agent makes no HTTP call: {request:?}"),
                Output::WakeAt(at) => self.wake_at = Some(at.as_millis()),
                Output::Connect | Output::Close | Output::Ping | Output::Abandon => {}
            }
        }
        if let Expect::Sent { frame_id, check } = expect {
            assert_eq!(sent.len(), 1, "one send, {} MSG frames", sent.len());
            let msg = &sent[0];
            if let Some(id) = frame_id {
                assert_eq!(msg.id, id, "send returned another id than the frame's");
            }
            let bytes = STANDARD.decode(&msg.payload_b64).expect("sent payload is base64");
            let payload = String::from_utf8(bytes).expect("sent payload is UTF-8");
            match check {
                SentCheck::Text(Some(text)) => assert_eq!(parse_payload(&payload).text, text, "payload {payload:?}"),
                SentCheck::Text(None) => {}
                SentCheck::Widget(kind, id) => {
                    let received =
                        widget::parse_standard(&payload).unwrap_or_else(|| panic!("not a standard widget: {payload}"));
                    assert_eq!((received.kind, received.id.as_str()), (kind, id.as_str()), "payload {payload}");
                }
                SentCheck::Update(id) => {
                    let update = parse_payload(&payload).widget_update;
                    assert_eq!(update.map(|update| update.id), Some(id), "not this widget update: {payload}");
                }
            }
        } else if let Expect::Resends = expect {
            // Each left from its persisted entry (checked above), and never more than once.
            let mut ids: Vec<&str> = sent.iter().map(|msg| msg.id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), sent.len(), "an outbox entry sent twice at one connection: {sent:?}");
        } else {
            assert!(sent.is_empty(), "MSG frames without a send: {sent:?}");
        }
    }
}

fuzz_target!(|session: Session| {
    let mut config = AgentConfig::new(AGENT_ID);
    config.max_accepted_receipts = usize::from(session.max_receipts);
    config.receipt_retention = Duration::from_secs(u64::from(session.retention_secs));
    let mut harness = Harness::new(config);
    for op in session.ops.into_iter().take(64) {
        harness.step(op);
    }
});
