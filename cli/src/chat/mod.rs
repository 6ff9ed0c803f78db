//! `pacerelle chat`: a person in the terminal, on the person-side client
//! (`pacerelle_tokio::PersonClient`), talking to one agent through a relay that serves the
//! person API (the development relay).
//!
//! It opens (or joins, with `--conversation`) a conversation with the agent, sends each line of
//! stdin as a message (end-to-end encrypted unless `--plaintext`), runs `/commands` (answer or
//! dismiss a widget, send a file, fetch an attachment), and prints what arrives on stdout
//! (formatted by the private `output` module). Errors go to stderr as `error: ...` lines.
//!
//! The conversation is opened with a plain HTTP call before the socket: that call tells an
//! unreachable relay (exit 3), a refused token (4) and an unknown agent (5) apart at once,
//! where the person client's socket would keep retrying them.
//!
//! When stdin is not a terminal the chat is a script: lines run in order, and a line naming a
//! widget or an attachment by number (`#1`, `/fetch 1 ...`) waits (`--timeout`) until that
//! many have arrived, so a script can answer a widget it has not seen yet; `/wait <text>` waits
//! for a reply, so a script needs no sleeps. At the end of the input it waits (at most
//! `--timeout`) until the agent has read every message sent, then `--wait-after-eof` for
//! replies, and exits: 0, or 8 when a line failed.

mod command;
mod output;

use crate::{CliError, duration};
use command::{Line, WidgetRef};
use output::Shown;
use pacerelle_core::Attachment;
use pacerelle_core::attachment::FileMetadata;
use pacerelle_core::human::PersonEvent;
use pacerelle_core::wire::http::{HttpMethod, HttpRequest, RequestId};
use pacerelle_core::wire::person::{ConversationCreated, CreateConversation};
use pacerelle_runtime_support::{ClientError, HttpExecutor};
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use std::collections::HashSet;
use std::io::IsTerminal as _;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// `pacerelle chat`'s options.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// The agent to talk to.
    #[arg(long, value_name = "ID", env = "PACERELLE_AGENT_ID")]
    pub agent: String,
    /// The relay's base URL (the development relay: it serves the person API).
    #[arg(long, value_name = "URL", env = "PACERELLE_BASE_URL", default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    /// Who you are.
    #[arg(long, value_name = "ID", env = "PACERELLE_PERSON_ID")]
    pub person: String,
    /// Your token (prefer the variable: flags show in the process list).
    #[arg(long, value_name = "TOKEN", env = "PACERELLE_PERSON_TOKEN", hide_env_values = true)]
    pub token: String,
    /// This client's device id (the agent's replies come back to it).
    #[arg(long, value_name = "ID")]
    pub device: Option<String>,
    /// Join this conversation (created with the agent if new) instead of opening a new one.
    #[arg(long, value_name = "ID")]
    pub conversation: Option<String>,
    /// Send and accept messages in plaintext (the relay reads them). Encrypted by default.
    #[arg(long)]
    pub plaintext: bool,
    /// Print one JSON object per event instead of text lines.
    #[arg(long)]
    pub json: bool,
    /// In a script, how long to wait for replies once the input has ended (and the agent has
    /// read what was sent).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration::parse)]
    pub wait_after_eof: Duration,
    /// In a script, how long a line waits for the widget, attachment or reply it names, and the
    /// end of the input for the agent to read what was sent.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration::parse)]
    pub timeout: Duration,
}

/// What `pacerelle chat --help` shows after the options.
pub(crate) fn after_help() -> String {
    format!(
        "{}\n\n\
Output (stdout), one event per line, free text last and escaped (\\n, \\t, \\\\, \\u{{..}}):
  conversation <id>
  agent: <text>
  widget <id> <kind> <title>     then: option <widget> <id> <label>, field <widget> <name> <type> <label>,
                                 scope <widget> <scope>
  widget-update <widget> <json>
  attachment <n> <size> <mime> <name>
  file-sent <message> <size> <name>     fetched <n> <size> <path>
  not-sent <message> <reason>           refused <message> <reason>      unreadable <message> <reason>
  identity-changed <agent>
--json: one object per event with an \"event\" field (also \"sent\" and \"read\").

{}",
        command::HELP,
        crate::EXIT_CODES
    )
}

/// Runs the chat until `/quit`, Ctrl-C, or the end of the input.
pub fn run(args: ChatArgs) -> Result<(), CliError> {
    if !(args.base_url.starts_with("http://") || args.base_url.starts_with("https://")) {
        return Err(CliError::Usage(format!(
            "--base-url must start with http:// or https://, got {:?}",
            args.base_url
        )));
    }
    let scripted = !std::io::stdin().is_terminal();
    crate::runtime()?.block_on(chat(args, scripted))
}

async fn chat(args: ChatArgs, scripted: bool) -> Result<(), CliError> {
    let conversation_id = open_conversation(&args).await?;
    let mut config = PersonClientConfig::new(&args.person, &args.token, &args.base_url);
    if let Some(device) = &args.device {
        config = config.device(device);
    }
    if !args.plaintext {
        config = config.encrypted();
    }
    let client = PersonClient::connect(config).await?;
    tracing::info!(conversation = %conversation_id, agent = %args.agent, encrypted = !args.plaintext, "chat open");
    let mut session = Session {
        agent: args.agent.clone(),
        conversation_id,
        json: args.json,
        scripted,
        e2ee: !args.plaintext,
        widgets: Vec::new(),
        attachments: Vec::new(),
        texts: Vec::new(),
        waited: 0,
        unread: HashSet::new(),
        failures: 0,
    };
    session.show(&Shown::Conversation { conversation_id: &session.conversation_id.clone() })?;
    let lines = stdin_lines()?;
    let result = session.run(&client, lines, args.wait_after_eof, args.timeout).await;
    client.close().await;
    result
}

/// Opens or joins the conversation with one HTTP call, which also checks the relay and the
/// token before the socket is opened.
async fn open_conversation(args: &ChatArgs) -> Result<String, CliError> {
    let body = CreateConversation {
        members: vec![args.agent.clone()],
        group: false,
        conversation_id: args.conversation.clone(),
    };
    let request = HttpRequest {
        id: RequestId(0),
        method: HttpMethod::Post,
        path: "/person/conversations".into(),
        content_type: Some("application/json"),
        body: serde_json::to_vec(&body).map_err(|error| CliError::Usage(error.to_string()))?,
    };
    let http = HttpExecutor::new(&args.base_url, &args.token);
    let url = args.base_url.clone();
    let answer = tokio::task::spawn_blocking(move || http.execute(&request))
        .await
        .map_err(|error| CliError::Runtime(std::io::Error::other(error)))?;
    let response = answer.map_err(|reason| CliError::Unreachable { url: url.clone(), reason })?;
    if !(200..300).contains(&response.status) {
        let reason = serde_json::from_slice::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|body| body.get("error").and_then(|error| error.as_str()).map(str::to_owned))
            .unwrap_or_default();
        return Err(CliError::from_status(&url, "the conversation", response.status, reason));
    }
    let created: ConversationCreated = serde_json::from_slice(&response.body).map_err(|_| CliError::Refused {
        what: "the conversation",
        status: response.status,
        reason: "its answer is not a conversation".into(),
    })?;
    Ok(created.conversation_id)
}

/// How many lines of stdin are read ahead of the one being run: a script piped from a large file
/// is read as it runs, not all at once.
const READ_AHEAD: usize = 16;

/// Stdin's lines, read on a thread of their own (a blocking read has no place on the runtime).
/// The channel closes at the end of the input; bytes that are not UTF-8 are replaced, not fatal.
fn stdin_lines() -> Result<mpsc::Receiver<String>, CliError> {
    use std::io::BufRead as _;
    let (sender, receiver) = mpsc::channel(READ_AHEAD);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buffer = Vec::new();
            loop {
                buffer.clear();
                match stdin.read_until(b'\n', &mut buffer) {
                    Ok(0) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buffer);
                        let line = line.strip_suffix('\n').unwrap_or(&line).to_owned();
                        if sender.blocking_send(line).is_err() {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "stdin unreadable: taken as the end of the input");
                        break;
                    }
                }
            }
        })
        .map_err(CliError::Runtime)?;
    Ok(receiver)
}

/// Where a script stands once its input has ended.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// Waiting for the agent to read what was sent.
    Unread {
        /// At most until then.
        until: Instant,
    },
    /// Waiting for replies (`--wait-after-eof`).
    Replies {
        /// Until then.
        until: Instant,
    },
}

impl Ending {
    fn until(&self) -> Instant {
        match self {
            Ending::Unread { until } | Ending::Replies { until } => *until,
        }
    }
}

/// What a command did to the session.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// The chat's state: what has been shown, so commands can refer to it by number.
struct Session {
    agent: String,
    conversation_id: String,
    json: bool,
    scripted: bool,
    e2ee: bool,
    /// Widget ids in the order shown (`#1` is the first).
    widgets: Vec<String>,
    /// Attachments in the order shown (`/fetch 1` is the first).
    attachments: Vec<Attachment>,
    /// The agent's texts in the order received, and how many of them `/wait` has used up.
    texts: Vec<String>,
    waited: usize,
    /// Messages sent that the agent has not read yet (nor the relay refused).
    unread: HashSet<String>,
    /// Failed lines, in a script.
    failures: usize,
}

/// How long one wait for an event lasts before the loop looks again (nothing depends on it).
const EVENT_POLL: Duration = Duration::from_secs(3600);

impl Session {
    async fn run(
        &mut self,
        client: &PersonClient,
        mut lines: mpsc::Receiver<String>,
        wait_after_eof: Duration,
        timeout: Duration,
    ) -> Result<(), CliError> {
        // A scripted line waiting for the widget or attachment it names, and until when.
        let mut blocked: Option<(Line, Instant)> = None;
        let mut ending: Option<Ending> = None;
        loop {
            self.report_refused(client)?;
            if let Some((line, until)) = blocked.take() {
                if self.ready(&line) {
                    if self.execute(client, line).await? == Flow::Quit {
                        return self.finish();
                    }
                } else {
                    blocked = Some((line, until));
                }
            }
            if matches!(ending, Some(Ending::Unread { .. })) && self.unread.is_empty() {
                ending = Some(Ending::Replies { until: Instant::now() + wait_after_eof });
            }
            let reading = blocked.is_none() && ending.is_none();
            let deadline = blocked.as_ref().map(|(_, until)| *until).or(ending.as_ref().map(Ending::until));
            tokio::select! {
                event = client.next_event(EVENT_POLL) => match event {
                    Ok(event) => self.on_event(event)?,
                    Err(ClientError::TimedOut(_)) => {}
                    Err(error) => return Err(error.into()),
                },
                line = lines.recv(), if reading => match line {
                    Some(text) => match command::parse(&text) {
                        Ok(line) if self.scripted && !self.ready(&line) => {
                            blocked = Some((line, Instant::now() + timeout));
                        }
                        Ok(line) => {
                            if self.execute(client, line).await? == Flow::Quit {
                                return self.finish();
                            }
                        }
                        Err(message) => self.fail(&message),
                    },
                    // An encrypted message may still be on its way (its session starts from a
                    // bundle fetched first): leaving now could drop it, so the agent's read
                    // receipts are awaited before the wait for replies.
                    None if self.scripted => ending = Some(Ending::Unread { until: Instant::now() + timeout }),
                    None => return self.finish(),
                },
                () = sleep_until(deadline), if deadline.is_some() => match (blocked.take(), ending.take()) {
                    (Some((line, _)), kept) => {
                        ending = kept;
                        self.fail(&format!("{} did not arrive within {timeout:?}", missing(&line)));
                    }
                    (None, Some(Ending::Unread { .. })) => {
                        eprintln!(
                            "warning: {} message(s) not read by the agent within {timeout:?} (the relay keeps what reached it)",
                            self.unread.len()
                        );
                        ending = Some(Ending::Replies { until: Instant::now() + wait_after_eof });
                    }
                    (None, _) => {
                        self.report_refused(client)?;
                        return self.finish();
                    }
                },
                _ = tokio::signal::ctrl_c() => return self.finish(),
            }
        }
    }

    /// Whether every widget or attachment `line` names by number has arrived.
    fn ready(&self, line: &Line) -> bool {
        match line {
            Line::Answer { widget: WidgetRef::Nth(n), .. } | Line::Cancel { widget: WidgetRef::Nth(n) } => {
                *n <= self.widgets.len()
            }
            Line::Fetch { attachment, .. } => *attachment <= self.attachments.len(),
            Line::Wait { text } => self.awaited(text).is_some(),
            _ => true,
        }
    }

    /// The first text not yet waited for that contains `text`.
    fn awaited(&self, text: &str) -> Option<usize> {
        self.texts.iter().skip(self.waited).position(|received| received.contains(text)).map(|at| self.waited + at)
    }

    fn widget_id(&self, widget: &WidgetRef) -> Option<String> {
        match widget {
            WidgetRef::Nth(n) => self.widgets.get(n - 1).cloned(),
            WidgetRef::Id(id) => Some(id.clone()),
        }
    }

    async fn execute(&mut self, client: &PersonClient, line: Line) -> Result<Flow, CliError> {
        let (conversation, agent) = (self.conversation_id.clone(), self.agent.clone());
        match line {
            Line::Empty => {}
            Line::Help => eprintln!("{}", command::HELP),
            Line::Quit => return Ok(Flow::Quit),
            Line::Text(text) => match client.send_text(&conversation, &agent, &text) {
                Ok(id) => self.sent(id)?,
                Err(error) => self.fail(&format!("message not sent: {error}")),
            },
            Line::Answer { widget, value } => match self.widget_id(&widget) {
                Some(id) => match client.answer_widget(&conversation, &agent, &id, value) {
                    Ok(id) => self.sent(id)?,
                    Err(error) => self.fail(&format!("answer not sent: {error}")),
                },
                None => self.fail(&format!("no widget {widget} has been shown")),
            },
            Line::Cancel { widget } => match self.widget_id(&widget) {
                Some(id) => match client.cancel_widget(&conversation, &agent, &id) {
                    Ok(id) => self.sent(id)?,
                    Err(error) => self.fail(&format!("dismissal not sent: {error}")),
                },
                None => self.fail(&format!("no widget {widget} has been shown")),
            },
            Line::SendFile { path } => self.send_file(client, &path).await?,
            Line::Fetch { attachment, path } => self.fetch(client, attachment, &path).await?,
            Line::Wait { text } => match self.awaited(&text) {
                Some(at) => self.waited = at + 1,
                None => self.fail(&format!("no message from the agent contains {text:?} yet")),
            },
        }
        Ok(Flow::Continue)
    }

    async fn send_file(&mut self, client: &PersonClient, path: &str) -> Result<(), CliError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.fail(&format!("cannot read {path}: {error}"));
                return Ok(());
            }
        };
        let name = Path::new(path).file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        let metadata = FileMetadata { name: name.clone(), mime: mime_of(&name).to_owned(), ..FileMetadata::default() };
        match client.send_file(&self.conversation_id, &self.agent, "", &bytes, metadata).await {
            Ok(id) => {
                self.show(&Shown::FileSent { message_id: &id, bytes: bytes.len(), name: &name })?;
                self.unread.insert(id);
                Ok(())
            }
            Err(error) => {
                self.fail(&format!("file not sent: {error}"));
                Ok(())
            }
        }
    }

    async fn fetch(&mut self, client: &PersonClient, number: usize, path: &str) -> Result<(), CliError> {
        let Some(attachment) = self.attachments.get(number - 1).cloned() else {
            self.fail(&format!("no attachment {number} has been shown"));
            return Ok(());
        };
        let bytes = match client.download_attachment(&attachment).await {
            Ok(bytes) => bytes,
            Err(error) => {
                self.fail(&format!("attachment {number} not fetched: {error}"));
                return Ok(());
            }
        };
        match std::fs::write(path, &bytes) {
            Ok(()) => self.show(&Shown::Fetched { attachment: number, bytes: bytes.len(), path }),
            Err(error) => {
                self.fail(&format!("cannot write {path}: {error}"));
                Ok(())
            }
        }
    }

    fn on_event(&mut self, event: PersonEvent) -> Result<(), CliError> {
        match event {
            PersonEvent::Message(message) => {
                if self.e2ee && !message.encrypted {
                    let (id, from) = (crate::escape::one_line(&message.id), crate::escape::one_line(&message.from));
                    eprintln!("warning: message {id} from {from} arrived unencrypted");
                }
                if let Some(widget) = &message.widget {
                    self.widgets.push(widget.id.clone());
                }
                if message.from == self.agent && message.widget.is_none() && message.widget_update.is_none() {
                    self.texts.push(message.text.clone());
                }
                let first_attachment = self.attachments.len() + 1;
                self.attachments.extend(message.attachments.iter().cloned());
                self.show(&Shown::Message { message: &message, agent: &self.agent, first_attachment })
            }
            PersonEvent::Read(receipt) => {
                self.unread.remove(&receipt.message_id);
                self.show(&Shown::Read { message_id: &receipt.message_id })
            }
            PersonEvent::IdentityChanged { agent_id } => {
                let agent = crate::escape::one_line(&agent_id);
                eprintln!("warning: {agent}'s identity key changed: compare its verification code again");
                self.show(&Shown::IdentityChanged { agent_id: &agent_id })
            }
            PersonEvent::Refused(frame) => {
                if let Some(id) = &frame.message_id {
                    self.unread.remove(id);
                }
                self.count_failure();
                self.show(&Shown::Refused { message_id: frame.message_id.as_deref(), error: &frame.error })
            }
            PersonEvent::NotSent { message_id, error } => {
                self.unread.remove(&message_id);
                self.count_failure();
                self.show(&Shown::NotSent { message_id: &message_id, error: &error })
            }
            PersonEvent::Unreadable { message_id, error, .. } => {
                self.show(&Shown::Unreadable { message_id: Some(&message_id), error: &error })
            }
            other => {
                tracing::debug!(event = ?std::mem::discriminant(&other), "event not shown");
                Ok(())
            }
        }
    }

    /// Shows and remembers a message sent.
    fn sent(&mut self, message_id: String) -> Result<(), CliError> {
        self.show(&Shown::Sent { message_id: &message_id })?;
        self.unread.insert(message_id);
        Ok(())
    }

    /// Shows messages the client could not read (they are not events of their own).
    fn report_refused(&mut self, client: &PersonClient) -> Result<(), CliError> {
        for error in client.take_refused() {
            self.show(&Shown::Unreadable { message_id: None, error: &error.to_string() })?;
        }
        Ok(())
    }

    fn show(&self, shown: &Shown<'_>) -> Result<(), CliError> {
        if self.json {
            crate::print_line(&shown.json().to_string())
        } else {
            shown.lines().iter().try_for_each(|line| crate::print_line(line))
        }
    }

    fn count_failure(&mut self) {
        if self.scripted {
            self.failures += 1;
        }
    }

    fn fail(&mut self, message: &str) {
        eprintln!("error: {}", crate::escape::one_line(message));
        self.count_failure();
    }

    fn finish(&self) -> Result<(), CliError> {
        if self.failures > 0 { Err(CliError::ScriptFailed(self.failures)) } else { Ok(()) }
    }
}

/// What a blocked line waits for, for its error.
fn missing(line: &Line) -> String {
    match line {
        Line::Answer { widget, .. } | Line::Cancel { widget } => format!("widget {widget}"),
        Line::Fetch { attachment, .. } => format!("attachment {attachment}"),
        Line::Wait { text } => format!("a message containing {text:?}"),
        _ => "what the line needs".to_owned(),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A MIME type from a file name's extension, for the few types apps preview; anything else is
/// `application/octet-stream`.
pub(crate) fn mime_of(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, extension)| extension.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "txt" | "log" | "md" => "text/plain",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "csv" => "text/csv",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_types() {
        assert_eq!(mime_of("notes.TXT"), "text/plain");
        assert_eq!(mime_of("photo.jpeg"), "image/jpeg");
        assert_eq!(mime_of("archive"), "application/octet-stream");
        assert_eq!(mime_of("x.unknown"), "application/octet-stream");
    }

    #[test]
    fn scripted_lines_wait_for_what_they_name() {
        let mut session = Session {
            agent: "echo".into(),
            conversation_id: "c".into(),
            json: false,
            scripted: true,
            e2ee: true,
            widgets: Vec::new(),
            attachments: Vec::new(),
            texts: Vec::new(),
            waited: 0,
            unread: HashSet::new(),
            failures: 0,
        };
        let answer = command::parse("/answer #1 true").unwrap();
        let by_id = command::parse("/answer w-1 true").unwrap();
        let fetch = command::parse("/fetch 1 out").unwrap();
        assert!(!session.ready(&answer) && session.ready(&by_id) && !session.ready(&fetch));
        session.widgets.push("w-9".into());
        session.attachments.push(Attachment::default());
        assert!(session.ready(&answer) && session.ready(&fetch));
        assert_eq!(session.widget_id(&WidgetRef::Nth(1)).as_deref(), Some("w-9"));
        assert_eq!(session.widget_id(&WidgetRef::Nth(2)), None);
        let wait = command::parse("/wait answered").unwrap();
        assert!(!session.ready(&wait));
        session.texts.extend(["Received: hi".to_owned(), "You answered true".to_owned()]);
        assert_eq!(session.awaited("answered"), Some(1));
        session.waited = 2;
        assert!(!session.ready(&wait), "a message satisfies one wait");
        assert!(session.finish().is_ok());
        session.fail("x");
        assert_eq!(session.finish().unwrap_err().exit_code(), crate::exit::SCRIPT);
    }
}
