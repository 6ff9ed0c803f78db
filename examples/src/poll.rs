//! The poll agent: runs polls in encrypted group conversations with a choice widget, keeps the
//! running tally on the widget, and posts the result when the poll closes.
//!
//! In a group, `/poll Question? | Option | Option ...` opens a poll (one per group at a time);
//! every member answers the choice widget for themselves, and answering again changes their
//! vote. `/close` (by whoever opened the poll) posts the result. Everything goes to the whole
//! group (`group:{conversation_id}`), sealed under the group's key by the SDK. Other group
//! messages are left alone, and outside a group the agent explains where it works.

use pacerelle::tokio::AgentHandle;
use pacerelle::widget::{Choice, ChoiceOption, ResponseMode, WidgetPatch};
use pacerelle::{AgentMessage, HandlerResult};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

/// The most options a poll takes.
pub const MAX_OPTIONS: usize = 10;

/// An open poll.
#[derive(Debug)]
struct Poll {
    widget_id: String,
    opened_by: String,
    question: String,
    options: Vec<String>,
    /// Each member's vote: the index of their option. Ordered, so the tally reads the same way
    /// every time.
    votes: BTreeMap<String, usize>,
}

/// The poll agent's state: the open poll of each group.
#[derive(Debug, Default)]
pub struct PollAgent {
    polls: Mutex<HashMap<String, Poll>>,
}

impl PollAgent {
    /// An agent with no poll open.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles one message: `/poll`, `/close`, or a vote.
    pub async fn handle(&self, message: AgentMessage, agent: AgentHandle) -> HandlerResult {
        if !message.is_group() {
            if message.text.trim_start().starts_with("/poll") {
                agent.reply(&message, "I run polls in groups: add me to a group and ask there.").await?;
            }
            return Ok(());
        }
        if message.widget_response.is_some() {
            return self.on_vote(&message, &agent).await;
        }
        let text = message.text.trim();
        if let Some(rest) = text.strip_prefix("/poll") {
            return self.open(&message, &agent, rest).await;
        }
        if text == "/close" {
            return self.close(&message, &agent).await;
        }
        Ok(())
    }

    async fn open(&self, message: &AgentMessage, agent: &AgentHandle, spec: &str) -> HandlerResult {
        let mut parts = spec.split('|').map(str::trim).filter(|part| !part.is_empty());
        let question = parts.next().unwrap_or_default().to_owned();
        let options: Vec<String> = parts.map(str::to_owned).collect();
        if question.is_empty() || !(2..=MAX_OPTIONS).contains(&options.len()) {
            let usage = format!("To open a poll: /poll Question? | Option | Option (2 to {MAX_OPTIONS} options)");
            agent.reply(message, usage).await?;
            return Ok(());
        }
        if self.polls()?.contains_key(&message.conversation_id) {
            agent.reply(message, "A poll is already open here: /close it first.").await?;
            return Ok(());
        }
        let choice = Choice::new(
            &question,
            options.iter().enumerate().map(|(index, label)| ChoiceOption::new(index.to_string(), label)),
        )
        .extra("body", format!("Opened by {}. No votes yet.", message.from))
        .response_mode(ResponseMode::Individual);
        let group = group_of(message);
        let widget_id = agent.send_widget(&message.conversation_id, &group, choice).await?;
        let poll = Poll { widget_id, opened_by: message.from.clone(), question, options, votes: BTreeMap::new() };
        self.polls()?.insert(message.conversation_id.clone(), poll);
        Ok(())
    }

    async fn on_vote(&self, message: &AgentMessage, agent: &AgentHandle) -> HandlerResult {
        let Some(answer) = &message.widget_response else { return Ok(()) };
        let patch = {
            let mut polls = self.polls()?;
            let Some(poll) = polls.get_mut(&message.conversation_id) else { return Ok(()) };
            if poll.widget_id != answer.widget_ref {
                return Ok(());
            }
            if answer.cancelled {
                poll.votes.remove(&message.from);
            } else {
                let Some(option) = chosen(answer.value.as_ref(), poll.options.len()) else { return Ok(()) };
                poll.votes.insert(message.from.clone(), option);
            }
            let mut spec = Map::new();
            spec.insert("body".into(), json!(format!("Opened by {}. {}", poll.opened_by, poll.tally())));
            WidgetPatch::new(&poll.widget_id).spec(spec)
        };
        agent.send_widget_update(&message.conversation_id, &group_of(message), patch).await?;
        Ok(())
    }

    async fn close(&self, message: &AgentMessage, agent: &AgentHandle) -> HandlerResult {
        let closing = {
            let mut polls = self.polls()?;
            match polls.get(&message.conversation_id) {
                Some(poll) if poll.opened_by != message.from => {
                    Err(format!("Only {} can close this poll.", poll.opened_by))
                }
                _ => polls.remove(&message.conversation_id).ok_or_else(|| "No poll is open here.".to_owned()),
            }
        };
        let poll = match closing {
            Ok(poll) => poll,
            Err(reason) => {
                agent.reply(message, reason).await?;
                return Ok(());
            }
        };
        let group = group_of(message);
        let mut spec = Map::new();
        spec.insert("title".into(), json!(format!("{} (closed)", poll.question)));
        spec.insert("body".into(), json!(poll.tally()));
        agent
            .send_widget_update(&message.conversation_id, &group, WidgetPatch::new(&poll.widget_id).spec(spec))
            .await?;
        agent.send_text(&message.conversation_id, &group, poll.result()).await?;
        Ok(())
    }

    fn polls(&self) -> Result<MutexGuard<'_, HashMap<String, Poll>>, &'static str> {
        self.polls.lock().map_err(|_| "the polls' lock is poisoned")
    }
}

impl Poll {
    fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.options.len()];
        for &option in self.votes.values() {
            counts[option] += 1;
        }
        counts
    }

    /// `Pizza 2, Sushi 1 (3 votes)`.
    fn tally(&self) -> String {
        let counts = self.counts();
        let each: Vec<String> =
            self.options.iter().zip(&counts).map(|(label, count)| format!("{label} {count}")).collect();
        let votes = self.votes.len();
        format!("{} ({votes} vote{})", each.join(", "), if votes == 1 { "" } else { "s" })
    }

    /// The closing message: the tally and the winner (or the tie).
    fn result(&self) -> String {
        let counts = self.counts();
        let top = counts.iter().copied().max().unwrap_or(0);
        let leaders: Vec<&str> = self
            .options
            .iter()
            .zip(&counts)
            .filter(|&(_, &count)| count == top)
            .map(|(label, _)| label.as_str())
            .collect();
        let verdict = match leaders.as_slice() {
            _ if top == 0 => "Nobody voted.".to_owned(),
            [winner] => format!("{winner} wins."),
            tied => format!("A tie between {}.", tied.join(" and ")),
        };
        format!("Poll closed: {} {}. {verdict}", self.question, self.tally())
    }
}

/// The option a choice answer picked: its id (`"1"`), or a list holding one id, as apps send it.
fn chosen(value: Option<&Value>, options: usize) -> Option<usize> {
    let id = match value? {
        Value::String(id) => id.as_str(),
        Value::Array(ids) if ids.len() == 1 => ids[0].as_str()?,
        _ => return None,
    };
    id.parse().ok().filter(|&index| index < options)
}

/// Where a message to the whole group goes.
fn group_of(message: &AgentMessage) -> String {
    format!("group:{}", message.conversation_id)
}
