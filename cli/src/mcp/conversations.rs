//! The agent side of `pacerelle mcp`: what the agent heard and said, kept in memory for the tools
//! and resources while the server runs.
//!
//! - Conversations: each one's addressee (the person, or `group:{id}`) and the device that last
//!   wrote, so a tool can answer in a conversation by its id alone; and which conversation the
//!   agent last talked in, the default for every tool.
//! - A log of messages in both directions, numbered by a cursor that only grows, bounded to the
//!   last [`LOG_CAPACITY`] entries: `read_messages` returns what came after a cursor, and
//!   `wait_for_message` waits on a watch channel for the cursor to move.
//! - The asks waiting for a person's answer, by widget id: an answer goes to its ask, which the
//!   tool returns; it stays in the log (for its attachments) but is not reported as a new
//!   message.
//!
//! Attachments keep their keys here (in memory only) so that `save_attachment` can download
//! them; what the tools show of them is name, type and size.
//!
//! The conversations themselves (ids, addressees, devices, the last one: no text) are kept
//! across restarts in `mcp-conversations.json` in the agent's store folder, readable by its
//! owner only, so that a restarted server still writes to the person it last talked with.

use pacerelle_core::{AgentMessage, Attachment, WidgetResponse};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::sync::{oneshot, watch};

/// How many messages the log keeps (the oldest go first).
pub const LOG_CAPACITY: usize = 2000;

/// Who wrote an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A person wrote to the agent.
    In,
    /// The agent (this server) wrote.
    Out,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// One message in the log.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its position: larger is later.
    pub cursor: u64,
    /// The message's id.
    pub message_id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// Who wrote it (the agent's id for its own).
    pub from: String,
    /// Which way it went.
    pub direction: Direction,
    /// Its text (a widget's title for a widget the agent sent).
    pub text: String,
    /// When it was kept, RFC 3339 in UTC.
    pub at: String,
    /// Whether it crossed the relay end-to-end encrypted (for the agent's own: whether the
    /// agent encrypts).
    pub encrypted: bool,
    /// The message it answers.
    pub reply_to: Option<String>,
    /// Its files, with their keys.
    pub attachments: Vec<Attachment>,
    /// A person's answer to a widget.
    pub widget_response: Option<WidgetResponse>,
    /// A widget the agent sent: its id and kind.
    pub widget: Option<(String, &'static str)>,
    /// Whether an ask took it as its answer (then it is not a new message to read).
    pub answered_ask: bool,
}

impl Entry {
    /// The entry as the tools and resources show it: no keys, no raw frame.
    pub fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        map.insert("cursor".into(), json!(self.cursor));
        map.insert("message_id".into(), json!(self.message_id));
        map.insert("conversation_id".into(), json!(self.conversation_id));
        map.insert("from".into(), json!(self.from));
        map.insert("direction".into(), json!(self.direction.as_str()));
        map.insert("text".into(), json!(self.text));
        map.insert("at".into(), json!(self.at));
        map.insert("encrypted".into(), json!(self.encrypted));
        if let Some(reply_to) = &self.reply_to {
            map.insert("reply_to".into(), json!(reply_to));
        }
        if !self.attachments.is_empty() {
            let files: Vec<Value> = self
                .attachments
                .iter()
                .enumerate()
                .map(|(index, file)| json!({"index": index, "name": file.name, "mime": file.mime, "size": file.size}))
                .collect();
            map.insert("attachments".into(), Value::Array(files));
        }
        if let Some(response) = &self.widget_response {
            map.insert(
                "widget_response".into(),
                json!({"widget_id": response.widget_ref, "value": response.value, "cancelled": response.cancelled}),
            );
        }
        if let Some((id, kind)) = &self.widget {
            map.insert("widget".into(), json!({"widget_id": id, "kind": kind}));
        }
        Value::Object(map)
    }
}

/// A conversation the agent took part in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Its id.
    pub id: String,
    /// Whom the agent writes to in it: the person, or `group:{id}`.
    pub to: String,
    /// The device that last wrote, for a one-to-one conversation.
    pub device: Option<String>,
    /// The cursor of its last message.
    pub last_cursor: u64,
    /// How many of its messages the log still holds.
    pub messages: usize,
}

/// A person's answer to an ask, handed to the waiting tool.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The message that carried it.
    pub message_id: String,
    /// The value (its shape depends on the widget).
    pub value: Option<Value>,
    /// Whether the person dismissed the widget.
    pub cancelled: bool,
    /// Files that came with the answer (a file picker's).
    pub attachments: Vec<Attachment>,
}

#[derive(Default)]
struct State {
    last_cursor: u64,
    log: VecDeque<Entry>,
    conversations: BTreeMap<String, Conversation>,
    last_conversation: Option<String>,
    asks: HashMap<String, oneshot::Sender<Answer>>,
}

/// The agent's conversations, log and pending asks (see the module docs).
pub struct Conversations {
    state: Mutex<State>,
    /// The last cursor, for waiters.
    cursor: watch::Sender<u64>,
    /// Where the conversations are kept across restarts (none in tests).
    file: Option<PathBuf>,
}

/// The file the conversations are kept in, in the agent's store folder.
pub const FILE_NAME: &str = "mcp-conversations.json";

/// What the file holds: no text, no cursor (cursors start again at each start).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    last: Option<String>,
    conversations: Vec<SavedConversation>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedConversation {
    id: String,
    to: String,
    device: Option<String>,
}

impl Default for Conversations {
    fn default() -> Self {
        Self::new()
    }
}

impl Conversations {
    /// Nothing heard yet, and nothing kept across restarts.
    pub fn new() -> Self {
        Conversations { state: Mutex::new(State::default()), cursor: watch::Sender::new(0), file: None }
    }

    /// The conversations kept in `folder` by an earlier run (none if it kept none), kept there
    /// from now on. A file that cannot be read is reported and started afresh: it holds only
    /// where to write by default.
    pub fn kept_in(folder: &Path) -> Self {
        let file = folder.join(FILE_NAME);
        let saved: Saved = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(file = %file.display(), %error, "conversations file unreadable: starting afresh");
                Saved::default()
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(error) => {
                tracing::warn!(file = %file.display(), %error, "conversations file unreadable: starting afresh");
                Saved::default()
            }
        };
        let mut state = State::default();
        for conversation in saved.conversations {
            let kept = Conversation {
                id: conversation.id.clone(),
                to: conversation.to,
                device: conversation.device,
                last_cursor: 0,
                messages: 0,
            };
            state.conversations.insert(conversation.id, kept);
        }
        state.last_conversation = saved.last.filter(|id| state.conversations.contains_key(id));
        Conversations { state: Mutex::new(state), cursor: watch::Sender::new(0), file: Some(file) }
    }

    /// Writes the conversations to the file, whole (a temporary file renamed over it), when
    /// they changed.
    fn save(&self, state: &State) {
        let Some(file) = &self.file else { return };
        let saved = Saved {
            last: state.last_conversation.clone(),
            conversations: state
                .conversations
                .values()
                .map(|c| SavedConversation { id: c.id.clone(), to: c.to.clone(), device: c.device.clone() })
                .collect(),
        };
        if let Err(error) = write_private(file, &serde_json::to_vec(&saved).unwrap_or_default()) {
            tracing::warn!(file = %file.display(), %error, "conversations not kept for the next start");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing here panics while holding the lock; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps a message the agent received; an answer to a pending ask goes to it.
    pub fn received(&self, message: AgentMessage) {
        let mut state = self.lock();
        let to = if message.is_group() { format!("group:{}", message.conversation_id) } else { message.from.clone() };
        let mut answered_ask = false;
        if let Some(response) = &message.widget_response
            && let Some(waiter) = state.asks.remove(&response.widget_ref)
        {
            answered_ask = true;
            let answer = Answer {
                message_id: message.id.clone(),
                value: response.value.clone(),
                cancelled: response.cancelled,
                attachments: message.attachments.clone(),
            };
            // The ask may have ended (timed out, cancelled) in this instant: nothing to hand.
            let _ = waiter.send(answer);
        }
        tracing::info!(
            message_id = %message.id,
            conversation = %message.conversation_id,
            from = %message.from,
            answered_ask,
            "message kept"
        );
        let entry = Entry {
            cursor: 0,
            message_id: message.id,
            conversation_id: message.conversation_id,
            from: message.from,
            direction: Direction::In,
            text: message.text,
            at: now_rfc3339(),
            encrypted: message.encrypted,
            reply_to: message.reply_to_message_id,
            attachments: message.attachments,
            widget_response: message.widget_response,
            widget: None,
            answered_ask,
        };
        let device = message.from_device_id;
        let (cursor, changed) = push(&mut state, entry, to, device);
        if changed {
            self.save(&state);
        }
        drop(state);
        self.cursor.send_replace(cursor);
    }

    /// Keeps a message the agent sent.
    #[allow(clippy::too_many_arguments)]
    pub fn sent(
        &self,
        target: &Target,
        agent_id: &str,
        message_id: &str,
        text: &str,
        encrypted: bool,
        attachments: Vec<Attachment>,
        widget: Option<(String, &'static str)>,
    ) {
        let mut state = self.lock();
        let entry = Entry {
            cursor: 0,
            message_id: message_id.to_owned(),
            conversation_id: target.conversation_id.clone(),
            from: agent_id.to_owned(),
            direction: Direction::Out,
            text: text.to_owned(),
            at: now_rfc3339(),
            encrypted,
            reply_to: None,
            attachments,
            widget,
            widget_response: None,
            answered_ask: false,
        };
        let (cursor, changed) = push(&mut state, entry, target.to.clone(), target.device.clone());
        if changed {
            self.save(&state);
        }
        drop(state);
        self.cursor.send_replace(cursor);
    }

    /// Where a tool writes: the conversation named, or the one the agent last talked in.
    pub fn target(&self, conversation_id: Option<&str>) -> Result<Target, TargetError> {
        let state = self.lock();
        let id = match conversation_id {
            Some(id) => id.to_owned(),
            None => state.last_conversation.clone().ok_or(TargetError::NoConversationYet)?,
        };
        let conversation = state.conversations.get(&id).ok_or_else(|| TargetError::Unknown {
            id: id.clone(),
            known: state.conversations.keys().cloned().collect(),
        })?;
        Ok(Target { conversation_id: id, to: conversation.to.clone(), device: conversation.device.clone() })
    }

    /// Waits for the answer to widget `widget_id`: register before the widget leaves, so an
    /// answer cannot arrive unheard.
    pub fn expect_answer(&self, widget_id: &str) -> oneshot::Receiver<Answer> {
        let (sender, receiver) = oneshot::channel();
        self.lock().asks.insert(widget_id.to_owned(), sender);
        receiver
    }

    /// Stops waiting for widget `widget_id`'s answer (the ask timed out or was cancelled).
    pub fn forget_ask(&self, widget_id: &str) {
        self.lock().asks.remove(widget_id);
    }

    /// The people's messages after `since` (in one conversation, if named), at most `limit`,
    /// oldest first, and the cursor to read from next.
    pub fn read(&self, since: u64, conversation_id: Option<&str>, limit: usize) -> (Vec<Entry>, u64) {
        let state = self.lock();
        let mut next = since.max(state.log.front().map_or(0, |entry| entry.cursor.saturating_sub(1)));
        let mut found = Vec::new();
        for entry in state.log.iter().filter(|entry| entry.cursor > since) {
            if found.len() == limit {
                break;
            }
            next = entry.cursor;
            let wanted = entry.direction == Direction::In
                && !entry.answered_ask
                && conversation_id.is_none_or(|id| id == entry.conversation_id);
            if wanted {
                found.push(entry.clone());
            }
        }
        if found.len() < limit {
            next = next.max(state.last_cursor);
        }
        (found, next)
    }

    /// The last cursor (every entry so far is at or before it).
    pub fn last_cursor(&self) -> u64 {
        *self.cursor.borrow()
    }

    /// A receiver that sees the last cursor change.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.cursor.subscribe()
    }

    /// An entry by message id, while the log holds it.
    pub fn entry(&self, message_id: &str) -> Option<Entry> {
        self.lock().log.iter().rev().find(|entry| entry.message_id == message_id).cloned()
    }

    /// The conversations, most recent first.
    pub fn conversations(&self) -> Vec<Conversation> {
        let mut all: Vec<Conversation> = self.lock().conversations.values().cloned().collect();
        all.sort_by_key(|conversation| std::cmp::Reverse(conversation.last_cursor));
        all
    }

    /// One conversation and its last `limit` messages, both directions, oldest first.
    pub fn recent(&self, conversation_id: &str, limit: usize) -> Option<(Conversation, Vec<Entry>)> {
        let state = self.lock();
        let conversation = state.conversations.get(conversation_id)?.clone();
        let mut entries: Vec<Entry> = state
            .log
            .iter()
            .rev()
            .filter(|entry| entry.conversation_id == conversation_id)
            .take(limit)
            .cloned()
            .collect();
        entries.reverse();
        Some((conversation, entries))
    }
}

/// Appends `entry` under the next cursor and updates its conversation; returns the cursor, and
/// whether what is kept across restarts changed.
fn push(state: &mut State, mut entry: Entry, to: String, device: Option<String>) -> (u64, bool) {
    state.last_cursor += 1;
    entry.cursor = state.last_cursor;
    let conversation_id = entry.conversation_id.clone();
    let mut changed = state.last_conversation.as_ref() != Some(&conversation_id);
    let conversation = state.conversations.entry(conversation_id.clone()).or_insert_with(|| Conversation {
        id: conversation_id.clone(),
        to: to.clone(),
        device: None,
        last_cursor: 0,
        messages: 0,
    });
    changed |= conversation.to != to || (device.is_some() && conversation.device != device);
    conversation.to = to;
    if device.is_some() {
        conversation.device = device;
    }
    conversation.last_cursor = entry.cursor;
    conversation.messages += 1;
    state.last_conversation = Some(conversation_id);
    state.log.push_back(entry);
    while state.log.len() > LOG_CAPACITY {
        if let Some(dropped) = state.log.pop_front()
            && let Some(conversation) = state.conversations.get_mut(&dropped.conversation_id)
        {
            conversation.messages = conversation.messages.saturating_sub(1);
        }
    }
    (state.last_cursor, changed)
}

/// Writes `bytes` to `file` through a temporary file renamed over it, readable by its owner
/// only, in a folder created for its owner only if missing.
fn write_private(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(folder) = file.parent() {
        crate::create_private_folder(folder)?;
    }
    let temporary = file.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&temporary)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    std::fs::rename(&temporary, file)
}

/// Where a tool writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The conversation.
    pub conversation_id: String,
    /// The addressee.
    pub to: String,
    /// The device that last wrote.
    pub device: Option<String>,
}

/// Why a tool has nowhere to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// No conversation was named and none has happened since the server started.
    #[error(
        "no conversation yet: the person has not written to this agent since the server started; name a conversation_id, or wait for a message"
    )]
    NoConversationYet,
    /// The conversation named is not one the agent has taken part in.
    #[error("unknown conversation {id:?}; known: {known:?}")]
    Unknown {
        /// The id given.
        id: String,
        /// The conversations known.
        known: Vec<String>,
    },
}

/// Now, as RFC 3339 in UTC with milliseconds (`2026-12-01T10:37:30.123Z`).
pub fn now_rfc3339() -> String {
    rfc3339(pacerelle_runtime_support::now().as_millis())
}

/// `millis` after the Unix epoch as RFC 3339 in UTC with milliseconds; times past year 9999
/// (a timeout no host asks for) are written as its last millisecond.
pub fn rfc3339(millis: u64) -> String {
    let at = pacerelle_core::Timestamp::from_millis(millis).min(pacerelle_core::permissions::MAX_TIMESTAMP);
    at.to_rfc3339().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, conversation: &str, text: &str) -> AgentMessage {
        AgentMessage {
            id: id.into(),
            conversation_id: conversation.into(),
            from: "alice".into(),
            from_device_id: Some("phone".into()),
            text: text.into(),
            encrypted: true,
            to: None,
            sender_identity: None,
            attachments: Vec::new(),
            reply_to_message_id: None,
            widget_response: None,
            widget_update: None,
            raw: serde_json::Map::new(),
        }
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
        assert_eq!(rfc3339(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn cursors_conversations_and_answers() {
        let kept = Conversations::new();
        assert_eq!(kept.target(None), Err(TargetError::NoConversationYet));
        kept.received(message("m1", "c1", "hello"));
        kept.received(message("m2", "c2", "other"));
        let target = kept.target(None).unwrap();
        assert_eq!((target.conversation_id.as_str(), target.to.as_str()), ("c2", "alice"));
        assert_eq!(target.device.as_deref(), Some("phone"));
        assert!(matches!(kept.target(Some("nope")), Err(TargetError::Unknown { known, .. }) if known == ["c1", "c2"]));

        let (all, next) = kept.read(0, None, 10);
        assert_eq!(all.iter().map(|entry| entry.message_id.as_str()).collect::<Vec<_>>(), ["m1", "m2"]);
        assert_eq!(next, 2);
        let (first, next) = kept.read(0, None, 1);
        assert_eq!((first.len(), next), (1, 1), "a limit stops the cursor at what was returned");
        assert_eq!(kept.read(0, Some("c1"), 10).0.len(), 1);
        assert!(kept.read(2, None, 10).0.is_empty());

        // An answer to a pending ask goes to it and is not a new message.
        let mut waiting = kept.expect_answer("w1");
        let mut answer = message("m3", "c1", "Widget response");
        answer.widget_response = Some(WidgetResponse {
            id: "r1".into(),
            widget_ref: "w1".into(),
            value: Some(json!(true)),
            cancelled: false,
        });
        kept.received(answer);
        let got = waiting.try_recv().expect("the ask got its answer");
        assert_eq!((got.message_id.as_str(), got.value), ("m3", Some(json!(true))));
        let (after, next) = kept.read(2, None, 10);
        assert!(after.is_empty() && next == 3, "{after:?} {next}");
        assert_eq!(kept.recent("c1", 10).unwrap().1.len(), 2, "the answer stays in the conversation");
        assert_eq!(kept.conversations()[0].id, "c1", "most recent first");
        assert_eq!(kept.last_cursor(), 3);
    }

    #[test]
    fn conversations_outlive_a_restart_without_their_texts() {
        let folder = std::env::temp_dir().join(format!("pacerelle-mcp-kept-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        let kept = Conversations::kept_in(&folder);
        assert_eq!(kept.target(None), Err(TargetError::NoConversationYet));
        kept.received(message("m1", "c1", "a secret plan"));
        kept.received(message("m2", "c2", "another"));
        kept.received(message("m3", "c1", "more"));
        let file = std::fs::read_to_string(folder.join(FILE_NAME)).unwrap();
        assert!(!file.contains("secret") && !file.contains("more"), "{file}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(folder.join(FILE_NAME)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = Conversations::kept_in(&folder);
        let target = again.target(None).unwrap();
        assert_eq!((target.conversation_id.as_str(), target.to.as_str()), ("c1", "alice"));
        assert_eq!(target.device.as_deref(), Some("phone"));
        assert!(again.target(Some("c2")).is_ok());
        assert!(again.read(0, None, 10).0.is_empty(), "texts are not kept");
        std::fs::write(folder.join(FILE_NAME), "not json").unwrap();
        assert_eq!(Conversations::kept_in(&folder).target(None), Err(TargetError::NoConversationYet));
        std::fs::remove_dir_all(&folder).ok();
    }

    #[test]
    fn the_log_is_bounded() {
        let kept = Conversations::new();
        for n in 0..LOG_CAPACITY + 5 {
            kept.received(message(&format!("m{n}"), "c", "x"));
        }
        let (entries, next) = kept.read(0, None, usize::MAX);
        assert_eq!(entries.len(), LOG_CAPACITY);
        assert_eq!(entries[0].message_id, "m5");
        assert_eq!(next, (LOG_CAPACITY + 5) as u64);
        assert_eq!(kept.conversations()[0].messages, LOG_CAPACITY);
        assert!(kept.entry("m0").is_none() && kept.entry("m6").is_some());
    }
}
