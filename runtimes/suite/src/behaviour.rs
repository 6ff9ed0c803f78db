//! What the agent under test does, the same on every runtime: the behaviour decides, as data
//! ([`Action`]s), and a small interpreter per handle shape carries the actions out. It also
//! records every call, so that cases can tell "handled once" from "handled twice".

use crate::files::{ATTACHMENTS, SentAttachments};
use pacerelle_core::agent::{
    FileUpload, GaveUp, IdentityChange, OutgoingFile, OutgoingMessage, SafetyNumber, Undeliverable, UndeliverableReason,
};
use pacerelle_core::widget::{
    Choice, ChoiceOption, Confirm, DateTime, FilePicker, Form, FormField, Permission, Progress, Widget, WidgetPatch,
};
use pacerelle_core::{AgentMessage, Attachment};
use pacerelle_runtime_support::{HandlerError, HandlerResult};
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex};

/// Shows one widget of each of the seven kinds.
pub const WIDGETS: &str = "/widgets";
/// Shows one confirm widget, titled [`CONFIRM_TITLE`].
pub const CONFIRM: &str = "/confirm";
/// Shows a progress bar, then updates it to done.
pub const PROGRESS: &str = "/progress";
/// Three replies, a choice and a progress bar, all from one handler call.
pub const BURST: &str = "/burst";
/// Fails the first time this message is handled, succeeds afterwards.
pub const FAIL_ONCE: &str = "/fail-once";
/// Fails the first two times this message is handled, succeeds afterwards.
pub const FAIL_TWICE: &str = "/fail-twice";
/// Fails every time.
pub const FAIL_ALWAYS: &str = "/fail-always";

/// The title of the updated progress bar.
pub const DONE_TITLE: &str = "Done";
/// The title of the widget [`CONFIRM`] shows.
pub const CONFIRM_TITLE: &str = "Ship the quarterly report?";
/// The name of the file the agent sends back for a file named `name`.
pub fn echo_name(name: &str) -> String {
    format!("echo-{name}")
}
/// The caption of the file the agent sends back for a file named `name`.
pub fn echo_caption(name: &str) -> String {
    format!("echo of {name}")
}

/// One handler call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The message handled.
    pub message_id: String,
    /// Its text.
    pub text: String,
    /// Whether it arrived end-to-end encrypted.
    pub encrypted: bool,
    /// Whether it was sent to the conversation's group ([`AgentMessage::is_group`]).
    pub group: bool,
    /// Its attachments, as the handler saw them.
    pub attachments: Vec<Attachment>,
    /// The safety number of the identity whose session decrypted it.
    pub sender_identity: Option<SafetyNumber>,
}

/// One attachment the agent downloaded (and decrypted), or failed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The message that carried it.
    pub message_id: String,
    /// The attachment's id.
    pub attachment_id: String,
    /// The plaintext, or why it could not be had.
    pub result: Result<Vec<u8>, String>,
}

/// Where [`act`] and [`act_blocking`] record the attachments they download; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Downloads(Arc<Mutex<Vec<Download>>>);

impl Downloads {
    fn record(&self, download: Download) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(download);
    }

    /// Every download so far, in order.
    pub fn all(&self) -> Vec<Download> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// Something the agent does in answer to a message.
#[derive(Debug)]
pub enum Action {
    /// Send this message.
    Send(OutgoingMessage),
    /// Show this widget to the sender.
    Widget(Widget),
    /// Change the widget this handler call showed last.
    UpdateLastWidget(Map<String, Value>),
    /// Download and decrypt this attachment of the message (recording the outcome in
    /// `downloads`), then send its bytes back reversed, as a reply ([`echo_file`]).
    EchoFile {
        /// The attachment, as received.
        attachment: Attachment,
        /// Where the download is recorded.
        downloads: Downloads,
    },
    /// Upload files and send them, several to a message ([`crate::files::send_attachments`]),
    /// recording what the calls returned in `sent`.
    SendAttachments {
        /// Where the uploaded and sent attachments are recorded.
        sent: SentAttachments,
    },
}

/// The agent's behaviour; clones share the record of calls.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    calls: Arc<Mutex<Vec<Call>>>,
    downloads: Downloads,
    sent_attachments: SentAttachments,
    reports: Arc<Mutex<Vec<Report>>>,
    /// The agent registers no message handler (see [`Behaviour::without_message_handler`]).
    no_message_handler: bool,
}

/// Something the agent told the app besides messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// An identity change (`on_identity_changed`).
    IdentityChanged(IdentityChange),
    /// A message acknowledged without being handed over (`on_undeliverable`).
    Undeliverable(Undeliverable),
    /// A message whose handler failed on every attempt (`on_handler_gave_up`).
    HandlerGaveUp(GaveUp),
}

impl Behaviour {
    /// A behaviour with no calls yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A behaviour whose agent sets no message handler at all (the other handlers still report).
    pub fn without_message_handler() -> Self {
        Behaviour { no_message_handler: true, ..Self::default() }
    }

    /// Whether the agent should register a message handler.
    pub fn handles_messages(&self) -> bool {
        !self.no_message_handler
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// How many times `message_id` was handled.
    pub fn calls_for(&self, message_id: &str) -> usize {
        self.calls().iter().filter(|call| call.message_id == message_id).count()
    }

    /// The first call that handled `message_id`.
    pub fn call(&self, message_id: &str) -> Option<Call> {
        self.calls().into_iter().find(|call| call.message_id == message_id)
    }

    /// Every attachment downloaded so far, in order.
    pub fn downloads(&self) -> Vec<Download> {
        self.downloads.all()
    }

    /// What the handler uploaded and sent for [`crate::files::ATTACHMENTS`].
    pub fn sent_attachments(&self) -> SentAttachments {
        self.sent_attachments.clone()
    }

    /// Records what the identity, undeliverable and gave-up handlers heard.
    pub fn report(&self, report: Report) {
        self.reports.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(report);
    }

    /// Why `message_id` was reported undeliverable, each time it was, in order.
    pub fn undeliverable(&self, message_id: &str) -> Vec<UndeliverableReason> {
        self.reports()
            .into_iter()
            .filter_map(|report| match report {
                Report::Undeliverable(report) if report.message_id == message_id => Some(report.reason),
                _ => None,
            })
            .collect()
    }

    /// Every identity change and undeliverable report so far, in order.
    pub fn reports(&self) -> Vec<Report> {
        self.reports.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Records the call and decides what to do; an error fails the handler.
    ///
    /// - `/widgets`: one widget of each kind; `/confirm`: one confirm widget; `/progress`: a
    ///   progress bar then its update; `/burst`: three replies, a choice and a progress bar;
    ///   `/fail-once` and `/fail-twice`: fail the first time (or two), then reply
    ///   `handled on attempt N`; `/fail-always`: fails every time;
    /// - an answer to a widget: `answered <ref>: <value>` (or `dismissed <ref>`);
    /// - a message with attachments: each is downloaded and sent back reversed ([`echo_file`]);
    /// - `/attachments`: files uploaded and sent, several to a message ([`crate::files`]);
    /// - anything else `T`: `Received: T`.
    pub fn respond(&self, message: &AgentMessage) -> Result<Vec<Action>, HandlerError> {
        let attempt = {
            let mut calls = self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            calls.push(Call {
                message_id: message.id.clone(),
                text: message.text.clone(),
                encrypted: message.encrypted,
                group: message.is_group(),
                attachments: message.attachments.clone(),
                sender_identity: message.sender_identity.clone(),
            });
            calls.iter().filter(|call| call.message_id == message.id).count()
        };
        let reply = |text: String| Action::Send(OutgoingMessage::reply(message, text));
        if let Some(answer) = &message.widget_response {
            let said = if answer.cancelled {
                format!("dismissed {}", answer.widget_ref)
            } else {
                format!("answered {}: {}", answer.widget_ref, answer.value.clone().unwrap_or(Value::Null))
            };
            return Ok(vec![reply(said)]);
        }
        if !message.attachments.is_empty() {
            let echo = |attachment: &Attachment| Action::EchoFile {
                attachment: attachment.clone(),
                downloads: self.downloads.clone(),
            };
            return Ok(message.attachments.iter().map(echo).collect());
        }
        Ok(match message.text.as_str() {
            WIDGETS => every_widget().into_iter().map(Action::Widget).collect(),
            CONFIRM => vec![Action::Widget(Confirm::new(CONFIRM_TITLE).into())],
            ATTACHMENTS => vec![Action::SendAttachments { sent: self.sent_attachments.clone() }],
            PROGRESS => {
                let mut spec = Map::new();
                spec.insert("title".into(), json!(DONE_TITLE));
                spec.insert("value".into(), json!(100));
                vec![Action::Widget(Progress::new("Working", 0).into()), Action::UpdateLastWidget(spec)]
            }
            BURST => {
                let options = [ChoiceOption::new("a", "A"), ChoiceOption::new("b", "B")];
                vec![
                    reply("part 1".into()),
                    reply("part 2".into()),
                    reply("part 3".into()),
                    Action::Widget(Choice::new("Pick", options).into()),
                    Action::Widget(Progress::new("Working", 10).into()),
                ]
            }
            FAIL_ONCE if attempt == 1 => return Err("the first attempt fails".into()),
            FAIL_TWICE if attempt <= 2 => return Err(format!("attempt {attempt} fails").into()),
            FAIL_ALWAYS => return Err(format!("attempt {attempt} fails").into()),
            FAIL_ONCE | FAIL_TWICE => vec![reply(format!("handled on attempt {attempt}"))],
            text => vec![reply(format!("Received: {text}"))],
        })
    }
}

/// One widget of each of the seven standard kinds, in the order the person expects them.
pub fn every_widget() -> Vec<Widget> {
    vec![
        Confirm::new("Deploy?").into(),
        Choice::new("Pick one", [ChoiceOption::new("a", "A"), ChoiceOption::new("b", "B")]).into(),
        Permission::new("Read your files?").into(),
        Form::new("Details", [FormField::new("name", "Name", "text")]).into(),
        Progress::new("Working", 10).into(),
        FilePicker::new("Pick files").into(),
        DateTime::new("When?", "datetime").into(),
    ]
}

/// The file the agent sends back for `attachment` of `message`, whose plaintext is `bytes`: the
/// bytes reversed, named [`echo_name`], same type and dimensions or duration, captioned
/// [`echo_caption`], as a reply to `message` (so to its device).
///
/// It allows the relay to read it: `a_file_each_way` runs without end-to-end encryption, where
/// a file is refused otherwise, and checks what the relay can read; with encryption the
/// allowance changes nothing.
pub fn echo_file(message: &AgentMessage, attachment: &Attachment, mut bytes: Vec<u8>) -> OutgoingFile {
    bytes.reverse();
    let mut file = FileUpload::new(bytes, echo_name(&attachment.name), &attachment.mime).allow_relay_to_read();
    file.width = attachment.width;
    file.height = attachment.height;
    file.duration_ms = attachment.duration_ms;
    OutgoingFile { message: OutgoingMessage::reply(message, echo_caption(&attachment.name)), file }
}

/// Records the outcome of downloading `attachment` of `message`, and hands it on.
fn recorded(
    downloads: &Downloads,
    message: &AgentMessage,
    attachment: &Attachment,
    result: Result<Vec<u8>, pacerelle_runtime_support::ClientError>,
) -> Result<Vec<u8>, HandlerError> {
    downloads.record(Download {
        message_id: message.id.clone(),
        attachment_id: attachment.id.clone(),
        result: result.as_ref().map(Vec::clone).map_err(ToString::to_string),
    });
    Ok(result?)
}

/// Carries out `actions` for `message` with an async runtime's handle (tokio, smol, async-std).
pub async fn act(
    actions: Vec<Action>,
    message: &AgentMessage,
    agent: &pacerelle_runtime_support::driver::AgentHandle,
) -> HandlerResult {
    let mut last_widget = None;
    for action in actions {
        match action {
            Action::Send(outgoing) => {
                agent.send_message(outgoing).await?;
            }
            Action::Widget(widget) => {
                last_widget = Some(agent.send_widget(&message.conversation_id, &message.from, widget).await?);
            }
            Action::UpdateLastWidget(spec) => {
                let patch = WidgetPatch::new(last_widget.clone().ok_or("no widget to update")?).spec(spec);
                agent.send_widget_update(&message.conversation_id, &message.from, patch).await?;
            }
            Action::EchoFile { attachment, downloads } => {
                let bytes = recorded(&downloads, message, &attachment, agent.download_attachment(&attachment).await)?;
                agent.send_file(echo_file(message, &attachment, bytes)).await?;
            }
            Action::SendAttachments { sent } => crate::files::send_attachments(message, agent, &sent).await?,
        }
    }
    Ok(())
}

/// Carries out `actions` for `message` with the blocking runtime's handle.
pub fn act_blocking(
    actions: Vec<Action>,
    message: &AgentMessage,
    agent: &pacerelle_blocking::AgentHandle,
) -> HandlerResult {
    let mut last_widget = None;
    for action in actions {
        match action {
            Action::Send(outgoing) => {
                agent.send_message(outgoing)?;
            }
            Action::Widget(widget) => {
                last_widget = Some(agent.send_widget(&message.conversation_id, &message.from, widget)?);
            }
            Action::UpdateLastWidget(spec) => {
                let patch = WidgetPatch::new(last_widget.clone().ok_or("no widget to update")?).spec(spec);
                agent.send_widget_update(&message.conversation_id, &message.from, patch)?;
            }
            Action::EchoFile { attachment, downloads } => {
                let bytes = recorded(&downloads, message, &attachment, agent.download_attachment(&attachment))?;
                agent.send_file(echo_file(message, &attachment, bytes))?;
            }
            Action::SendAttachments { sent } => crate::files::send_attachments_blocking(message, agent, &sent)?,
        }
    }
    Ok(())
}
