//! The MCP tools of `pacerelle mcp` and the server's handler (tools through rmcp's router,
//! resources through [`super::resources`]).
//!
//! Every tool takes a JSON object checked against its own schema (generated from the argument
//! types below), and answers with structured content (also as JSON text). Bad arguments, a
//! conversation that does not exist, a file that cannot be read: a tool error result
//! (`isError: true`) whose `error` names the kind and whose `message` says what to fix, never a
//! protocol error, so that the host's model reads it.
//!
//! An ask sends its widget, then waits for the person's answer, its timeout, or the MCP
//! request's cancellation (`notifications/cancelled`). Timed out or cancelled, it updates the
//! widget (`status` `expired` or `withdrawn`, `expires_at` now), so the person's app stops
//! offering it. While it (or `wait_for_message`) waits, it sends MCP progress notifications when
//! the request carried a progress token. An ask also ends `closed` when the agent stops.

use super::conversations::{Answer, Conversations, Target, TargetError, now_rfc3339, rfc3339};
use pacerelle_core::agent::OutgoingFile;
use pacerelle_core::widget::{
    Choice, ChoiceOption, Confirm, DateTime, FilePicker, Form, FormField, Progress, Widget, WidgetPatch,
};
use pacerelle_tokio::{AgentHandle, ClientError, OutgoingMessage};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolResult, JsonObject, ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The tools, in the order `tools/list` gives them (also in `pacerelle mcp --help`).
pub const TOOL_NAMES: &[&str] =
    &["send_message", "ask", "progress", "read_messages", "wait_for_message", "save_attachment", "verification_code"];

/// An ask waits this long unless told otherwise.
pub const DEFAULT_ASK_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest wait a tool accepts (a day).
pub const MAX_WAIT: Duration = Duration::from_secs(86_400);
/// `wait_for_message` waits this long unless told otherwise.
pub const DEFAULT_MESSAGE_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting tool sends a progress notification (when asked for them).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long a tool that sends waits for the agent's connection (at start, or while it
/// reconnects) before it reports that the relay cannot be reached.
pub const CONNECT_WAIT: Duration = Duration::from_secs(30);
/// How often that wait looks again: the SDK's handle tells whether the socket is open, not when
/// it opens.
const CONNECT_POLL: Duration = Duration::from_millis(50);
/// The largest file `send_message` reads (the development relay's default blob limit).
pub const MAX_FILE_BYTES: u64 = 25 * 1024 * 1024;

/// Why a tool failed: its `error` kind and its message, returned as a tool error result.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The arguments do not fit the tool's schema, or contradict each other.
    #[error("bad arguments for {tool}: {reason}")]
    BadArguments {
        /// The tool.
        tool: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Nowhere to write.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A local file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    FileRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is larger than the relay takes.
    #[error("{} is {size} bytes, more than the {MAX_FILE_BYTES} a file may have", path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// A local file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    FileWrite {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No message with this id is in the log (never received, or too old).
    #[error("no message {0:?} in the log (only the last {capacity} are kept)", capacity = super::conversations::LOG_CAPACITY)]
    UnknownMessage(String),
    /// The message has no attachment at this index.
    #[error("message {message_id:?} has {count} attachment(s): there is no index {index}")]
    UnknownAttachment {
        /// The message.
        message_id: String,
        /// The index asked for.
        index: usize,
        /// How many it has.
        count: usize,
    },
    /// The agent has no connection to the relay (it keeps retrying).
    #[error("the agent is not connected to the relay (waited {}s; it keeps retrying)", CONNECT_WAIT.as_secs())]
    NotConnected,
    /// A progress widget this server did not send.
    #[error("no progress widget {0:?} was started by this server")]
    UnknownProgress(String),
    /// The agent could not do it (send, upload, download).
    #[error("the agent could not {what}: {source}")]
    Agent {
        /// What it was doing.
        what: &'static str,
        /// The SDK's reason.
        source: ClientError,
    },
}

impl ToolError {
    /// A short kind for programs.
    pub fn kind(&self) -> &'static str {
        match self {
            ToolError::BadArguments { .. } => "bad_arguments",
            ToolError::Target(TargetError::NoConversationYet) => "no_conversation_yet",
            ToolError::Target(TargetError::Unknown { .. }) => "unknown_conversation",
            ToolError::FileRead { .. } => "file_unreadable",
            ToolError::FileTooLarge { .. } => "file_too_large",
            ToolError::FileWrite { .. } => "file_unwritable",
            ToolError::UnknownMessage(_) => "unknown_message",
            ToolError::UnknownAttachment { .. } => "unknown_attachment",
            ToolError::UnknownProgress(_) => "unknown_progress",
            ToolError::NotConnected => "not_connected",
            ToolError::Agent { .. } => "agent_failed",
        }
    }

    /// The tool error result.
    pub fn result(&self) -> CallToolResult {
        CallToolResult::structured_error(json!({"error": self.kind(), "message": self.to_string()}))
    }
}

/// A tool's outcome as MCP wants it: success or a tool error, never a protocol error.
fn finish(outcome: Result<Value, ToolError>) -> Result<CallToolResult, ErrorData> {
    Ok(match outcome {
        Ok(value) => CallToolResult::structured(value),
        Err(error) => {
            tracing::info!(error = error.kind(), "tool failed");
            error.result()
        }
    })
}

/// The arguments as `T`, or a bad-arguments error naming what does not fit and the arguments
/// the tool takes (serde names the wrong type, not always the field).
fn parse<T: DeserializeOwned + JsonSchema + 'static>(
    tool: &'static str,
    arguments: JsonObject,
) -> Result<T, ToolError> {
    serde_json::from_value(Value::Object(arguments)).map_err(|error| {
        let schema = schema::<T>();
        let required: Vec<&str> =
            schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        let takes: Vec<String> = schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|properties| properties.keys())
            .map(|name| if required.contains(&name.as_str()) { format!("{name} (required)") } else { name.clone() })
            .collect();
        let takes = if takes.is_empty() { "no arguments".to_owned() } else { takes.join(", ") };
        ToolError::BadArguments { tool, reason: format!("{error}; {tool} takes {takes}") }
    })
}

fn bad(tool: &'static str, reason: impl Into<String>) -> ToolError {
    ToolError::BadArguments { tool, reason: reason.into() }
}

/// `T`'s JSON schema, for a tool's `inputSchema`.
fn schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    rmcp::handler::server::common::schema_for_type::<T>()
}

/// A wait in seconds, defaulted and bounded.
fn wait(tool: &'static str, seconds: Option<f64>, default: Duration) -> Result<Duration, ToolError> {
    match seconds {
        None => Ok(default),
        Some(seconds) if seconds.is_finite() && seconds > 0.0 && seconds <= MAX_WAIT.as_secs_f64() => {
            Ok(Duration::from_secs_f64(seconds))
        }
        Some(_) => Err(bad(tool, format!("timeout_seconds must be more than 0 and at most {}", MAX_WAIT.as_secs()))),
    }
}

/// `send_message`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendArgs {
    /// The text (may be empty when a file is sent).
    #[serde(default)]
    pub text: String,
    /// The conversation; by default the one the agent last talked in.
    pub conversation_id: Option<String>,
    /// A local file to send with the text, end-to-end encrypted.
    pub file_path: Option<String>,
    /// The file's name as the person sees it; by default the path's last part.
    pub file_name: Option<String>,
    /// The file's MIME type; by default guessed from its name.
    pub mime: Option<String>,
}

/// A choice's option.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionArg {
    /// What the answer holds when this option is picked.
    pub id: String,
    /// What the person reads.
    pub label: String,
}

/// A form's field.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldArg {
    /// The key of this field in the answer.
    pub name: String,
    /// What the person reads.
    pub label: String,
    /// The input type: `text` (the default), `number`, `email`, `textarea`, ...
    #[serde(default = "text_field", rename = "type")]
    pub field_type: String,
    /// Whether the person must fill it.
    #[serde(default)]
    pub required: bool,
}

fn text_field() -> String {
    "text".to_owned()
}

/// What to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AskKind {
    /// Yes or no; the answer is `true` or `false`.
    Confirm,
    /// One of `options` (several with `multiple`); the answer holds the option ids.
    Choice,
    /// Fill `fields`; the answer is an object by field name.
    Form,
    /// A date, a time, or both (`mode`); the answer is its ISO 8601 text.
    Datetime,
    /// Files from the person's phone; they come back as attachments to save with
    /// `save_attachment`.
    FilePicker,
}

/// `ask`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AskArgs {
    /// What to ask.
    pub kind: AskKind,
    /// The question.
    pub title: String,
    /// More detail under the question.
    pub body: Option<String>,
    /// How long to wait for the answer, in seconds (default 300, at most 86400).
    pub timeout_seconds: Option<f64>,
    /// The conversation; by default the one the agent last talked in.
    pub conversation_id: Option<String>,
    /// confirm: show it as dangerous.
    pub danger: Option<bool>,
    /// confirm: the label of yes (with `no_label`).
    pub yes_label: Option<String>,
    /// confirm: the label of no (with `yes_label`).
    pub no_label: Option<String>,
    /// choice: the options (at least one).
    pub options: Option<Vec<OptionArg>>,
    /// choice or file_picker: allow several.
    pub multiple: Option<bool>,
    /// form: the fields (at least one).
    pub fields: Option<Vec<FieldArg>>,
    /// datetime: `date`, `time` or `datetime` (the default).
    pub mode: Option<String>,
    /// datetime: the earliest accepted (ISO 8601).
    pub min: Option<String>,
    /// datetime: the latest accepted (ISO 8601).
    pub max: Option<String>,
    /// file_picker: accepted MIME types or extensions.
    pub accept: Option<Vec<String>>,
    /// file_picker: at most this many files.
    pub max_files: Option<u32>,
}

impl AskArgs {
    /// The widget asked for, checked.
    fn widget(&self) -> Result<Widget, ToolError> {
        const TOOL: &str = "ask";
        if self.title.trim().is_empty() {
            return Err(bad(TOOL, "title must not be empty"));
        }
        let (title, body) = (self.title.clone(), self.body.clone().unwrap_or_default());
        let misplaced = |field: &str, present: bool, kinds: &str| {
            if present { Err(bad(TOOL, format!("{field} is only for {kinds}"))) } else { Ok(()) }
        };
        let kind = self.kind;
        misplaced("options", self.options.is_some() && kind != AskKind::Choice, "choice")?;
        misplaced("fields", self.fields.is_some() && kind != AskKind::Form, "form")?;
        misplaced("mode, min and max", self.has_datetime_options() && kind != AskKind::Datetime, "datetime")?;
        misplaced(
            "accept and max_files",
            (self.accept.is_some() || self.max_files.is_some()) && kind != AskKind::FilePicker,
            "file_picker",
        )?;
        misplaced(
            "danger, yes_label and no_label",
            (self.danger.is_some() || self.yes_label.is_some() || self.no_label.is_some()) && kind != AskKind::Confirm,
            "confirm",
        )?;
        misplaced(
            "multiple",
            self.multiple.is_some() && !matches!(kind, AskKind::Choice | AskKind::FilePicker),
            "choice and file_picker",
        )?;
        Ok(match kind {
            AskKind::Confirm => {
                let mut confirm = Confirm::new(title).body(body).danger(self.danger.unwrap_or(false));
                match (&self.yes_label, &self.no_label) {
                    (Some(yes), Some(no)) => confirm = confirm.labels(yes, no),
                    (None, None) => {}
                    _ => return Err(bad(TOOL, "yes_label and no_label go together")),
                }
                confirm.into()
            }
            AskKind::Choice => {
                let options = self.options.as_deref().unwrap_or_default();
                if options.is_empty() {
                    return Err(bad(TOOL, "a choice needs at least one option"));
                }
                let options = options.iter().map(|option| ChoiceOption::new(&option.id, &option.label));
                let mut choice = Choice::new(title, options);
                if !body.is_empty() {
                    choice = choice.extra("body", body);
                }
                if let Some(multiple) = self.multiple {
                    choice = choice.extra("multi", multiple);
                }
                choice.into()
            }
            AskKind::Form => {
                let fields = self.fields.as_deref().unwrap_or_default();
                if fields.is_empty() {
                    return Err(bad(TOOL, "a form needs at least one field"));
                }
                let fields = fields
                    .iter()
                    .map(|field| FormField::new(&field.name, &field.label, &field.field_type).required(field.required));
                let mut form = Form::new(title, fields);
                if !body.is_empty() {
                    form = form.option("body", body);
                }
                form.into()
            }
            AskKind::Datetime => {
                let mode = self.mode.as_deref().unwrap_or("datetime");
                if !matches!(mode, "date" | "time" | "datetime") {
                    return Err(bad(TOOL, format!("mode must be date, time or datetime, not {mode:?}")));
                }
                let mut picker = DateTime::new(title, mode).body(body);
                if let Some(min) = &self.min {
                    picker = picker.min(min);
                }
                if let Some(max) = &self.max {
                    picker = picker.max(max);
                }
                picker.into()
            }
            AskKind::FilePicker => {
                let mut picker = FilePicker::new(title).body(body).multiple(self.multiple.unwrap_or(false));
                if let Some(accept) = &self.accept {
                    picker = picker.accept(accept.iter().cloned());
                }
                if let Some(max_files) = self.max_files {
                    picker = picker.max_files(max_files);
                }
                picker.into()
            }
        })
    }

    fn has_datetime_options(&self) -> bool {
        self.mode.is_some() || self.min.is_some() || self.max.is_some()
    }
}

/// `progress`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressArgs {
    /// What is being done.
    pub title: String,
    /// How far along, out of `max`.
    pub value: f64,
    /// The end of the bar (default 100).
    pub max: Option<f64>,
    /// A line under the bar (the current step, say).
    pub body: Option<String>,
    /// The progress widget to update (from an earlier call); without it, a new one is shown.
    pub widget_id: Option<String>,
    /// The conversation of a new progress widget; by default the one the agent last talked in.
    pub conversation_id: Option<String>,
}

/// `read_messages`' arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    /// Only messages after this cursor (from an earlier call; 0, the default, is the start).
    #[serde(default)]
    pub since: u64,
    /// Only this conversation's.
    pub conversation_id: Option<String>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<usize>,
}

/// `wait_for_message`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitArgs {
    /// Wait for a message after this cursor; by default the next one to arrive.
    pub since: Option<u64>,
    /// Only in this conversation.
    pub conversation_id: Option<String>,
    /// How long to wait, in seconds (default 60, at most 86400).
    pub timeout_seconds: Option<f64>,
}

/// `save_attachment`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveArgs {
    /// The message that carried the file.
    pub message_id: String,
    /// Which of its files (default 0, the first).
    #[serde(default)]
    pub index: usize,
    /// Where to write it (a new file; see `overwrite`).
    pub path: String,
    /// Replace a file already at `path`.
    #[serde(default)]
    pub overwrite: bool,
}

/// `verification_code`'s arguments: none.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// How an ask ended.
enum Ending {
    Answered(Answer),
    TimedOut,
    Cancelled,
    /// The agent is closing: the answer cannot come.
    Closed,
}

/// The MCP server: the agent's handle, its conversations, and the progress widgets it showed.
#[derive(Clone)]
pub struct Server {
    agent: AgentHandle,
    conversations: Arc<Conversations>,
    /// Progress widgets by id: where they were shown, to update them there.
    progress: Arc<Mutex<HashMap<String, Target>>>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Server {
    /// A server for `agent`, whose messages `conversations` keeps.
    pub fn new(agent: AgentHandle, conversations: Arc<Conversations>) -> Self {
        Server { agent, conversations, progress: Arc::default(), tool_router: Self::tool_router() }
    }

    #[tool(
        description = "Send a message to the person (end-to-end encrypted), optionally with a local file. Goes to the conversation the agent last talked in unless conversation_id names one. Returns the message id.",
        input_schema = schema::<SendArgs>()
    )]
    async fn send_message(&self, arguments: JsonObject) -> Result<CallToolResult, ErrorData> {
        finish(self.send(arguments).await)
    }

    #[tool(
        description = "Ask the person and wait for the answer: confirm (yes/no), choice, form, datetime or file_picker, shown as a widget in their app. Returns status answered (with value), dismissed, timed_out or cancelled; a timed-out or cancelled ask is withdrawn from the person's app. Use it before anything risky.",
        input_schema = schema::<AskArgs>()
    )]
    async fn ask(
        &self,
        arguments: JsonObject,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        finish(self.ask_person(arguments, context).await)
    }

    #[tool(
        description = "Show a progress bar to the person for a long task, or update one (widget_id from the first call). Returns the widget id.",
        input_schema = schema::<ProgressArgs>()
    )]
    async fn progress(&self, arguments: JsonObject) -> Result<CallToolResult, ErrorData> {
        finish(self.show_progress(arguments).await)
    }

    #[tool(
        description = "Read the person's messages that arrived after a cursor (0 for all kept). Returns the messages, oldest first, and the cursor to pass next time.",
        input_schema = schema::<ReadArgs>()
    )]
    async fn read_messages(&self, arguments: JsonObject) -> Result<CallToolResult, ErrorData> {
        finish(self.read(arguments))
    }

    #[tool(
        description = "Wait for the person's next message (after a cursor, by default the next to arrive), up to a timeout. Returns status message with the messages and the next cursor, or timed_out.",
        input_schema = schema::<WaitArgs>()
    )]
    async fn wait_for_message(
        &self,
        arguments: JsonObject,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        finish(self.wait_for(arguments, context).await)
    }

    #[tool(
        description = "Save a file the person sent (a message's attachment, by message id and index) to a local path, decrypted.",
        input_schema = schema::<SaveArgs>()
    )]
    async fn save_attachment(&self, arguments: JsonObject) -> Result<CallToolResult, ErrorData> {
        finish(self.save(arguments).await)
    }

    #[tool(
        description = "The agent's verification code: the person compares it with the one their app shows to know the conversation is encrypted to this agent.",
        input_schema = schema::<NoArgs>()
    )]
    async fn verification_code(&self, arguments: JsonObject) -> Result<CallToolResult, ErrorData> {
        finish(parse::<NoArgs>("verification_code", arguments).map(|NoArgs {}| {
            let code = self.agent.verification_code();
            json!({"agent_id": self.agent.agent_id(), "encrypted": code.is_some(), "verification_code": code})
        }))
    }
}

impl Server {
    /// Waits (at most [`CONNECT_WAIT`]) until the agent can send: a host may call right after
    /// the server started, before the prekeys are published and the socket open.
    async fn connected(&self) -> Result<(), ToolError> {
        let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
        while !self.agent.is_connected() {
            if tokio::time::Instant::now() >= deadline {
                return Err(ToolError::NotConnected);
            }
            tokio::time::sleep(CONNECT_POLL).await;
        }
        Ok(())
    }

    fn encrypted(&self) -> bool {
        self.agent.identity_key().is_some()
    }

    async fn send(&self, arguments: JsonObject) -> Result<Value, ToolError> {
        const TOOL: &str = "send_message";
        let args: SendArgs = parse(TOOL, arguments)?;
        if args.text.is_empty() && args.file_path.is_none() {
            return Err(bad(TOOL, "give text, a file_path, or both"));
        }
        if args.file_path.is_none() && (args.file_name.is_some() || args.mime.is_some()) {
            return Err(bad(TOOL, "file_name and mime describe a file_path"));
        }
        let target = self.conversations.target(args.conversation_id.as_deref())?;
        let agent_id = self.agent.agent_id();
        self.connected().await?;
        let Some(path) = args.file_path.map(PathBuf::from) else {
            let message = OutgoingMessage::new(&target.conversation_id, &target.to, args.text.clone());
            let message_id = self
                .agent
                .send_message(message)
                .await
                .map_err(|source| ToolError::Agent { what: "send the message", source })?;
            self.conversations.sent(&target, &agent_id, &message_id, &args.text, self.encrypted(), Vec::new(), None);
            tracing::info!(message_id = %message_id, conversation = %target.conversation_id, "message sent");
            return Ok(json!({"message_id": message_id, "conversation_id": target.conversation_id, "to": target.to}));
        };
        let bytes = read_file(&path).await?;
        let name = args
            .file_name
            .filter(|name| !name.is_empty())
            .or_else(|| path.file_name().map(|name| name.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "file".to_owned());
        let mime = args.mime.filter(|mime| !mime.is_empty()).unwrap_or_else(|| crate::chat::mime_of(&name).to_owned());
        let size = bytes.len();
        let file = OutgoingFile::new(&target.conversation_id, &target.to, bytes, &name, &mime).text(args.text.clone());
        let sent =
            self.agent.send_file(file).await.map_err(|source| ToolError::Agent { what: "send the file", source })?;
        self.conversations.sent(
            &target,
            &agent_id,
            &sent.message_id,
            &args.text,
            self.encrypted(),
            vec![sent.attachment],
            None,
        );
        tracing::info!(message_id = %sent.message_id, conversation = %target.conversation_id, size, "file sent");
        Ok(json!({
            "message_id": sent.message_id,
            "conversation_id": target.conversation_id,
            "to": target.to,
            "file": {"name": name, "mime": mime, "size": size},
        }))
    }

    async fn ask_person(&self, arguments: JsonObject, context: RequestContext<RoleServer>) -> Result<Value, ToolError> {
        const TOOL: &str = "ask";
        let args: AskArgs = parse(TOOL, arguments)?;
        let widget = args.widget()?;
        let timeout = wait(TOOL, args.timeout_seconds, DEFAULT_ASK_TIMEOUT)?;
        let target = self.conversations.target(args.conversation_id.as_deref())?;
        let widget_id = fresh_id();
        let expires_at = rfc3339(pacerelle_runtime_support::now().saturating_add(timeout).as_millis());
        let widget = widget.with_id(&widget_id).with_expires_at(expires_at);
        let (kind, spec) = (widget.kind().as_str(), widget.spec().clone());
        // Registered before the widget leaves: the answer cannot come first unheard.
        self.connected().await?;
        let answer = self.conversations.expect_answer(&widget_id);
        if let Err(source) = self.agent.send_widget(&target.conversation_id, &target.to, widget).await {
            self.conversations.forget_ask(&widget_id);
            return Err(ToolError::Agent { what: "send the question", source });
        }
        let agent_id = self.agent.agent_id();
        let widget_entry = Some((widget_id.clone(), kind));
        self.conversations.sent(
            &target,
            &agent_id,
            &widget_id,
            &args.title,
            self.encrypted(),
            Vec::new(),
            widget_entry,
        );
        tracing::info!(widget = %widget_id, kind, conversation = %target.conversation_id, ?timeout, "ask sent");

        let ending = self.await_answer(answer, timeout, &context).await;
        let mut result = serde_json::Map::new();
        result.insert("widget_id".into(), json!(widget_id));
        result.insert("conversation_id".into(), json!(target.conversation_id));
        result.insert("kind".into(), json!(kind));
        let status = match ending {
            Ending::Answered(answer) => {
                let attachments: Vec<Value> = answer
                    .attachments
                    .iter()
                    .enumerate()
                    .map(|(index, file)| {
                        json!({"message_id": answer.message_id, "index": index, "name": file.name, "mime": file.mime, "size": file.size})
                    })
                    .collect();
                result.insert("message_id".into(), json!(answer.message_id));
                result.insert("value".into(), answer.value.unwrap_or(Value::Null));
                if !attachments.is_empty() {
                    result.insert("attachments".into(), Value::Array(attachments));
                }
                if answer.cancelled { "dismissed" } else { "answered" }
            }
            Ending::TimedOut => {
                self.withdraw(&target, &widget_id, spec, "expired").await;
                "timed_out"
            }
            Ending::Cancelled => {
                self.withdraw(&target, &widget_id, spec, "withdrawn").await;
                "cancelled"
            }
            Ending::Closed => "closed",
        };
        tracing::info!(widget = %widget_id, status, "ask ended");
        result.insert("status".into(), json!(status));
        Ok(Value::Object(result))
    }

    /// Waits for the answer, the timeout or the cancellation, with progress notifications
    /// when the request carried a progress token.
    async fn await_answer(
        &self,
        mut answer: tokio::sync::oneshot::Receiver<Answer>,
        timeout: Duration,
        context: &RequestContext<RoleServer>,
    ) -> Ending {
        let mut heartbeat = Heartbeat::new(context, timeout, "waiting for the person's answer");
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            tokio::select! {
                got = &mut answer => return got.map_or(Ending::Closed, Ending::Answered),
                () = tokio::time::sleep_until(deadline) => return Ending::TimedOut,
                () = context.ct.cancelled() => return Ending::Cancelled,
                () = heartbeat.beat() => {}
            }
        }
    }

    /// Tells the person's app the question no longer stands.
    async fn withdraw(&self, target: &Target, widget_id: &str, mut spec: serde_json::Map<String, Value>, status: &str) {
        self.conversations.forget_ask(widget_id);
        spec.insert("status".into(), json!(status));
        let patch = WidgetPatch::new(widget_id).spec(spec).expires_at(now_rfc3339());
        if let Err(error) = self.agent.send_widget_update(&target.conversation_id, &target.to, patch).await {
            tracing::warn!(widget = %widget_id, %error, "the widget could not be withdrawn");
        }
    }

    async fn show_progress(&self, arguments: JsonObject) -> Result<Value, ToolError> {
        const TOOL: &str = "progress";
        let args: ProgressArgs = parse(TOOL, arguments)?;
        let max = args.max.unwrap_or(100.0);
        if !(args.value.is_finite() && max.is_finite() && max > 0.0 && (0.0..=max).contains(&args.value)) {
            return Err(bad(TOOL, "value must be between 0 and max, and max more than 0"));
        }
        if args.title.trim().is_empty() {
            return Err(bad(TOOL, "title must not be empty"));
        }
        let mut progress = Progress::new(&args.title, args.value).option("max", max);
        if let Some(body) = args.body.as_ref().filter(|body| !body.is_empty()) {
            progress = progress.option("body", body.as_str());
        }
        let widget: Widget = progress.into();
        let spec = widget.spec().clone();
        let agent_id = self.agent.agent_id();
        self.connected().await?;
        if let Some(widget_id) = args.widget_id {
            if args.conversation_id.is_some() {
                return Err(bad(TOOL, "an update goes where its widget is: give widget_id or conversation_id"));
            }
            let target = self
                .progress
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get(&widget_id)
                .cloned()
                .ok_or_else(|| ToolError::UnknownProgress(widget_id.clone()))?;
            let patch = WidgetPatch::new(&widget_id).spec(spec);
            let update_id = self
                .agent
                .send_widget_update(&target.conversation_id, &target.to, patch)
                .await
                .map_err(|source| ToolError::Agent { what: "update the progress", source })?;
            tracing::info!(widget = %widget_id, update = %update_id, "progress updated");
            return Ok(json!({"widget_id": widget_id, "conversation_id": target.conversation_id, "updated": true}));
        }
        let target = self.conversations.target(args.conversation_id.as_deref())?;
        let widget_id = fresh_id();
        self.agent
            .send_widget(&target.conversation_id, &target.to, widget.with_id(&widget_id))
            .await
            .map_err(|source| ToolError::Agent { what: "show the progress", source })?;
        let shown = Some((widget_id.clone(), "progress"));
        self.conversations.sent(&target, &agent_id, &widget_id, &args.title, self.encrypted(), Vec::new(), shown);
        self.remember_progress(&widget_id, &target);
        tracing::info!(widget = %widget_id, conversation = %target.conversation_id, "progress shown");
        Ok(json!({"widget_id": widget_id, "conversation_id": target.conversation_id, "updated": false}))
    }

    fn remember_progress(&self, widget_id: &str, target: &Target) {
        let mut progress = self.progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        progress.insert(widget_id.to_owned(), target.clone());
    }

    fn read(&self, arguments: JsonObject) -> Result<Value, ToolError> {
        const TOOL: &str = "read_messages";
        let args: ReadArgs = parse(TOOL, arguments)?;
        let limit = args.limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(bad(TOOL, "limit must be from 1 to 500"));
        }
        let (messages, cursor) = self.conversations.read(args.since, args.conversation_id.as_deref(), limit);
        Ok(json!({"messages": messages.iter().map(|entry| entry.to_json()).collect::<Vec<_>>(), "cursor": cursor}))
    }

    async fn wait_for(&self, arguments: JsonObject, context: RequestContext<RoleServer>) -> Result<Value, ToolError> {
        const TOOL: &str = "wait_for_message";
        let args: WaitArgs = parse(TOOL, arguments)?;
        let timeout = wait(TOOL, args.timeout_seconds, DEFAULT_MESSAGE_WAIT)?;
        let mut watch = self.conversations.watch();
        let mut since = args.since.unwrap_or_else(|| self.conversations.last_cursor());
        let deadline = tokio::time::Instant::now() + timeout;
        let mut heartbeat = Heartbeat::new(&context, timeout, "waiting for the person's message");
        loop {
            let (messages, cursor) = self.conversations.read(since, args.conversation_id.as_deref(), 500);
            if !messages.is_empty() {
                let messages: Vec<Value> = messages.iter().map(|entry| entry.to_json()).collect();
                return Ok(json!({"status": "message", "messages": messages, "cursor": cursor}));
            }
            since = cursor;
            tokio::select! {
                () = heartbeat.beat() => {}
                changed = watch.wait_for(|last| *last > since) => if changed.is_err() {
                    return Ok(json!({"status": "closed", "messages": [], "cursor": since}));
                },
                () = tokio::time::sleep_until(deadline) => {
                    return Ok(json!({"status": "timed_out", "messages": [], "cursor": since}));
                }
                () = context.ct.cancelled() => {
                    return Ok(json!({"status": "cancelled", "messages": [], "cursor": since}));
                }
            }
        }
    }

    async fn save(&self, arguments: JsonObject) -> Result<Value, ToolError> {
        const TOOL: &str = "save_attachment";
        let args: SaveArgs = parse(TOOL, arguments)?;
        let entry = self
            .conversations
            .entry(&args.message_id)
            .ok_or_else(|| ToolError::UnknownMessage(args.message_id.clone()))?;
        let attachment = entry.attachments.get(args.index).ok_or_else(|| ToolError::UnknownAttachment {
            message_id: args.message_id.clone(),
            index: args.index,
            count: entry.attachments.len(),
        })?;
        let bytes = self
            .agent
            .download_attachment(attachment)
            .await
            .map_err(|source| ToolError::Agent { what: "download the file", source })?;
        let path = PathBuf::from(&args.path);
        let size = bytes.len();
        write_file(&path, bytes, args.overwrite).await?;
        tracing::info!(message_id = %args.message_id, index = args.index, size, "attachment saved");
        Ok(json!({"path": args.path, "name": attachment.name, "mime": attachment.mime, "size": size}))
    }
}

async fn read_file(path: &std::path::Path) -> Result<Vec<u8>, ToolError> {
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let file = std::fs::File::open(&owned)?;
        let size = file.metadata()?.len();
        if size > MAX_FILE_BYTES {
            return Ok(Err(size));
        }
        let mut bytes = Vec::new();
        // Read at most one byte past the limit: a file that grew meanwhile is still refused.
        file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
        Ok(if bytes.len() as u64 > MAX_FILE_BYTES { Err(bytes.len() as u64) } else { Ok(bytes) })
    })
    .await
    .unwrap_or_else(|error| Err(std::io::Error::other(error)));
    match read {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(size)) => Err(ToolError::FileTooLarge { path: path.to_owned(), size }),
        Err(source) => Err(ToolError::FileRead { path: path.to_owned(), source }),
    }
}

async fn write_file(path: &std::path::Path, bytes: Vec<u8>, overwrite: bool) -> Result<(), ToolError> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true);
        if overwrite {
            options.create(true).truncate(true);
        } else {
            options.create_new(true);
        }
        let mut file = options.open(&owned)?;
        file.write_all(&bytes)?;
        file.sync_all()
    })
    .await
    .unwrap_or_else(|error| Err(std::io::Error::other(error)))
    .map_err(|source| ToolError::FileWrite { path: path.to_owned(), source })
}

/// MCP progress notifications while a tool waits, every [`PROGRESS_EVERY`] from the start, when
/// the request carried a progress token: seconds waited out of the timeout.
struct Heartbeat<'a> {
    context: &'a RequestContext<RoleServer>,
    token: Option<rmcp::model::ProgressToken>,
    started: tokio::time::Instant,
    total: f64,
    message: &'static str,
    ticker: tokio::time::Interval,
}

impl<'a> Heartbeat<'a> {
    fn new(context: &'a RequestContext<RoleServer>, timeout: Duration, message: &'static str) -> Self {
        Heartbeat {
            context,
            token: context.meta.get_progress_token(),
            started: tokio::time::Instant::now(),
            total: timeout.as_secs_f64(),
            message,
            ticker: tokio::time::interval(PROGRESS_EVERY),
        }
    }

    /// Sends the next notification when it is due; never returns without a token.
    async fn beat(&mut self) {
        let Some(token) = self.token.clone() else { return std::future::pending().await };
        self.ticker.tick().await;
        let progress = ProgressNotificationParam::new(token, self.started.elapsed().as_secs_f64())
            .with_total(self.total)
            .with_message(self.message);
        // A host that left is noticed by the service; nothing to do here.
        let _ = self.context.peer.notify_progress(progress).await;
    }
}

/// A fresh UUID v4 for a widget, so that its answer can be expected before it is sent.
fn fresh_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_resources().build())
            .with_server_info(rmcp::model::Implementation::new("pacerelle", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Reach the person who runs this Pacerelle agent on their phone, end-to-end encrypted. \
                 Report progress with send_message or progress; before anything risky, ask (confirm) and act only on \
                 status answered with value true; take instructions with read_messages and wait_for_message (keep the \
                 cursor). Resources list the conversations and their recent messages.",
            )
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(super::resources::list(&self.conversations))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(super::resources::templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        super::resources::read(&self.conversations, &request.uri).map(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(arguments: Value) -> Result<Widget, ToolError> {
        let Value::Object(arguments) = arguments else { panic!("an object") };
        parse::<AskArgs>("ask", arguments)?.widget()
    }

    #[test]
    fn asks_become_widgets_or_clear_errors() {
        let confirm = ask(json!({"kind": "confirm", "title": "Deploy?", "danger": true})).unwrap();
        assert_eq!(confirm.kind().as_str(), "confirm");
        assert_eq!(confirm.spec()["danger"], true);
        let choice = ask(json!({"kind": "choice", "title": "Which?", "options": [{"id": "a", "label": "A"}]})).unwrap();
        assert_eq!(choice.spec()["options"][0]["id"], "a");
        let date = ask(json!({"kind": "datetime", "title": "When?", "mode": "date"})).unwrap();
        assert_eq!(date.spec()["mode"], "date");
        let picker = ask(json!({"kind": "file_picker", "title": "Logs?", "max_files": 2})).unwrap();
        assert_eq!(picker.kind().as_str(), "file-picker");
        let form = ask(json!({"kind": "form", "title": "Who?", "fields": [{"name": "n", "label": "Name"}]})).unwrap();
        assert_eq!(form.spec()["fields"][0]["type"], "text");

        for (arguments, expected) in [
            (json!({"kind": "choice", "title": "Which?"}), "at least one option"),
            (json!({"kind": "confirm", "title": "x", "options": []}), "options is only for choice"),
            (json!({"kind": "datetime", "title": "x", "mode": "week"}), "mode must be"),
            (json!({"kind": "poll", "title": "x"}), "unknown variant `poll`"),
            (json!({"kind": "confirm"}), "missing field `title`"),
            (json!({"kind": "confirm", "title": "x", "colour": 1}), "unknown field `colour`"),
            (json!({"kind": "confirm", "title": " "}), "title must not be empty"),
            (json!({"kind": "confirm", "title": "x", "yes_label": "Y"}), "go together"),
        ] {
            let error = ask(arguments).unwrap_err();
            assert_eq!(error.kind(), "bad_arguments");
            assert!(error.to_string().contains(expected), "{error} lacks {expected:?}");
            let result = error.result();
            assert_eq!(result.is_error, Some(true));
            assert_eq!(result.structured_content.unwrap()["error"], "bad_arguments");
        }
    }

    #[test]
    fn waits_are_bounded() {
        assert_eq!(wait("t", None, DEFAULT_ASK_TIMEOUT).unwrap(), DEFAULT_ASK_TIMEOUT);
        assert_eq!(wait("t", Some(1.5), DEFAULT_ASK_TIMEOUT).unwrap(), Duration::from_millis(1500));
        for bad in [0.0, -1.0, f64::NAN, 86_401.0] {
            assert!(wait("t", Some(bad), DEFAULT_ASK_TIMEOUT).is_err(), "{bad}");
        }
    }

    #[test]
    fn widget_ids_are_uuid_v4() {
        let id = fresh_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(id, fresh_id());
    }
}
