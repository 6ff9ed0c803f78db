//! Everything the relay knows, and the routing rules, behind one lock and free of I/O: the
//! HTTP and socket layers call in with parsed requests and get answers or frames to send.

use crate::error::ApiError;
use pacerelle_core::wire::http::{GroupKeyEnvelope, OneTimePrekey, PrekeyBundleBody};
use pacerelle_core::wire::person::{
    AgentOutboundMsg, CreateConversation, DistributeGroupKeys, FetchedBundle, PersonInboundMsg, PersonOutboundMsg,
    ReadReceipt,
};
use pacerelle_core::wire::{AckRead, agent::is_group_target};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Instant;
use subtle::ConstantTimeEq as _;
use tokio::sync::mpsc::UnboundedSender;

/// Message ids remembered per agent to drop frames it sends again; the oldest are forgotten
/// first. An agent resends within one reconnection or one replay of what it answered, far
/// fewer than this.
pub(crate) const MAX_REMEMBERED_IDS: usize = 100_000;

/// Who is speaking: an agent or a person, by id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Party {
    Agent(String),
    Person(String),
}

impl Party {
    pub(crate) fn id(&self) -> &str {
        match self {
            Party::Agent(id) | Party::Person(id) => id,
        }
    }
}

#[derive(Default)]
struct AgentRecord {
    token: String,
    /// When the token stops being accepted (Agent Connect's runtime tokens); `None`: never.
    token_expires_at: Option<Instant>,
    bundle: Option<PrekeyBundleBody>,
    one_time_prekeys: VecDeque<OneTimePrekey>,
}

#[derive(Default)]
struct PersonRecord {
    token: String,
    identity_key: Option<String>,
    /// The Signal bundle other persons start sessions from (group keys travel through them).
    bundle: Option<PrekeyBundleBody>,
    one_time_prekeys: VecDeque<OneTimePrekey>,
}

struct Conversation {
    members: BTreeSet<String>,
    group: bool,
}

/// A message waiting for its recipient's acknowledgement.
struct Queued {
    message_id: String,
    conversation_id: String,
    sender: Party,
    /// For persons: the device it is meant for (`None`: any).
    device: Option<String>,
    frame: String,
}

/// An open socket: where to send its frames, and for persons, its device.
struct SocketEntry {
    id: u64,
    device: Option<String>,
    sender: UnboundedSender<String>,
}

/// The relay's whole state.
#[derive(Default)]
pub(crate) struct State {
    agents: HashMap<String, AgentRecord>,
    persons: HashMap<String, PersonRecord>,
    conversations: HashMap<String, Conversation>,
    blobs: HashMap<String, Vec<u8>>,
    group_keys: HashMap<String, Vec<GroupKeyEnvelope>>,
    queues: HashMap<Party, VecDeque<Queued>>,
    sockets: HashMap<Party, Vec<SocketEntry>>,
    next_socket: u64,
    /// How many sockets each party has opened so far, for tests that tell a retry on the same
    /// connection from one after a reconnection.
    connections: HashMap<Party, usize>,
    /// The message ids each agent sent that were routed, oldest first, to drop a frame sent
    /// again (see [`MAX_REMEMBERED_IDS`]).
    agent_msg_ids: HashMap<String, (HashSet<String>, VecDeque<String>)>,
    /// Text frames to lose per agent before cutting its socket (a test hook).
    losing: HashMap<String, usize>,
    /// Every frame received on a socket and every blob body, in order, for tests that check
    /// what crossed the relay.
    pub(crate) observed: Vec<Vec<u8>>,
    /// Agent Connect: apps, requests, codes, installations.
    pub(crate) connect: crate::connect::ConnectState,
}

impl State {
    pub(crate) fn add_agent(&mut self, id: &str, token: &str) {
        self.set_agent_token(id, token, None);
    }

    /// Gives agent `id` (created if new) `token`, accepted until `expires_at`; the previous
    /// token is no longer accepted.
    pub(crate) fn set_agent_token(&mut self, id: &str, token: &str, expires_at: Option<Instant>) {
        let record = self.agents.entry(id.to_owned()).or_default();
        record.token = token.to_owned();
        record.token_expires_at = expires_at;
    }

    pub(crate) fn add_person(&mut self, id: &str, token: &str) {
        self.persons.entry(id.to_owned()).or_default().token = token.to_owned();
    }

    /// The agent whose token this is.
    pub(crate) fn agent_by_token(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let live = self.agents.iter().filter(|(_, record)| record.token_expires_at.is_none_or(|at| at > now));
        owner_of(live.map(|(id, record)| (id, &record.token)), token)
    }

    /// The person whose token this is.
    pub(crate) fn person_by_token(&self, token: &str) -> Option<String> {
        owner_of(self.persons.iter().map(|(id, record)| (id, &record.token)), token)
    }

    fn party(&self, id: &str) -> Option<Party> {
        if self.agents.contains_key(id) {
            Some(Party::Agent(id.to_owned()))
        } else if self.persons.contains_key(id) {
            Some(Party::Person(id.to_owned()))
        } else {
            None
        }
    }

    /// Tells the other side of every conversation `who` is in that `who`'s identity key changed:
    /// persons hear `agent_id`, agents hear `user_id`.
    fn announce_identity_change(&self, who: &Party) {
        let frame = match who {
            Party::Agent(id) => json!({"type": "IDENTITY_CHANGED", "agent_id": id}),
            Party::Person(id) => json!({"type": "IDENTITY_CHANGED", "user_id": id}),
        }
        .to_string();
        for peer in self.peers_of(who.id()) {
            match (who, self.party(&peer)) {
                (Party::Agent(_), Some(party @ Party::Person(_)))
                | (Party::Person(_), Some(party @ Party::Agent(_))) => self.send_live(&party, None, &frame),
                _ => {}
            }
        }
    }

    /// Conversations `id` belongs to.
    fn peers_of(&self, id: &str) -> BTreeSet<String> {
        self.conversations
            .values()
            .filter(|conversation| conversation.members.contains(id))
            .flat_map(|conversation| conversation.members.iter().cloned())
            .filter(|member| member != id)
            .collect()
    }

    // ---- agent HTTP ----

    /// Stores an agent's bundle; tells its peers when its identity key changed.
    pub(crate) fn publish_bundle(&mut self, agent: &str, bundle: PrekeyBundleBody) {
        let record = self.agents.entry(agent.to_owned()).or_default();
        let changed = record.bundle.as_ref().is_some_and(|old| old.identity_key != bundle.identity_key);
        record.bundle = Some(bundle);
        if changed {
            self.announce_identity_change(&Party::Agent(agent.to_owned()));
        }
    }

    /// Adds one-time prekeys after those held, which are handed out first (a key with an id
    /// already held replaces it, at the back); beyond `max`, the oldest are dropped. Returns how
    /// many are held.
    pub(crate) fn add_one_time_prekeys(&mut self, agent: &str, keys: Vec<OneTimePrekey>, max: usize) -> usize {
        let record = self.agents.entry(agent.to_owned()).or_default();
        // A batch that repeats an id keeps its last key for it, where that one stands.
        let mut posted = HashSet::new();
        let mut batch: Vec<OneTimePrekey> = keys.into_iter().rev().filter(|key| posted.insert(key.prekey_id)).collect();
        batch.reverse();
        record.one_time_prekeys.retain(|held| !posted.contains(&held.prekey_id));
        record.one_time_prekeys.extend(batch);
        let excess = record.one_time_prekeys.len().saturating_sub(max);
        if excess > 0 {
            record.one_time_prekeys.drain(..excess);
            tracing::info!(agent, dropped = excess, "one-time prekey limit reached: the oldest were dropped");
        }
        record.one_time_prekeys.len()
    }

    /// The ids of `agent`'s one-time prekeys, the next to be handed out first.
    pub(crate) fn one_time_prekey_ids(&self, agent: &str) -> Vec<u32> {
        self.agents
            .get(agent)
            .map(|record| record.one_time_prekeys.iter().map(|key| key.prekey_id).collect())
            .unwrap_or_default()
    }

    pub(crate) fn store_blob(&mut self, bytes: Vec<u8>) -> (String, String) {
        let id = uuid::Uuid::new_v4().to_string();
        let sha256 = hex(&Sha256::digest(&bytes));
        self.observed.push(bytes.clone());
        self.blobs.insert(id.clone(), bytes);
        (id, sha256)
    }

    pub(crate) fn blob(&self, id: &str) -> Option<&[u8]> {
        self.blobs.get(id).map(Vec::as_slice)
    }

    /// The group-key envelopes addressed to `member` (an agent or a person) in a conversation.
    pub(crate) fn group_keys_for(
        &self,
        member: &str,
        conversation_id: &str,
    ) -> Result<Vec<GroupKeyEnvelope>, ApiError> {
        let conversation = self.conversations.get(conversation_id).ok_or(ApiError::NotFound("conversation"))?;
        if !conversation.members.contains(member) {
            return Err(ApiError::Forbidden("not a member of this conversation"));
        }
        Ok(self
            .group_keys
            .get(member)
            .map(|envelopes| envelopes.iter().filter(|e| e.conversation_id == conversation_id).cloned().collect())
            .unwrap_or_default())
    }

    // ---- person HTTP ----

    pub(crate) fn create_conversation(
        &mut self,
        person: &str,
        request: CreateConversation,
    ) -> Result<String, ApiError> {
        let mut members: BTreeSet<String> = request.members.into_iter().collect();
        for member in &members {
            if self.party(member).is_none() {
                return Err(ApiError::NotFound("member"));
            }
        }
        members.insert(person.to_owned());
        if members.len() < 2 {
            return Err(ApiError::BadRequest("a conversation needs another member".into()));
        }
        match request.conversation_id {
            Some(id) if id.is_empty() => Err(ApiError::BadRequest("conversation_id is empty".into())),
            Some(id) => match self.conversations.get(&id) {
                Some(existing) if existing.members == members && existing.group == request.group => Ok(id),
                Some(_) => Err(ApiError::Conflict("a conversation with this id has other members")),
                None => {
                    self.conversations.insert(id.clone(), Conversation { members, group: request.group });
                    Ok(id)
                }
            },
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                self.conversations.insert(id.clone(), Conversation { members, group: request.group });
                Ok(id)
            }
        }
    }

    /// An agent's bundle with one of its one-time prekeys, which is handed out only once.
    pub(crate) fn fetch_bundle(&mut self, agent: &str) -> Result<FetchedBundle, ApiError> {
        let record = self.agents.get_mut(agent).ok_or(ApiError::NotFound("agent"))?;
        let bundle = record.bundle.clone().ok_or(ApiError::NotFound("prekey bundle"))?;
        let one_time = record.one_time_prekeys.pop_front();
        Ok(FetchedBundle {
            bundle,
            prekey_id: one_time.as_ref().map(|key| key.prekey_id),
            prekey_public: one_time.map(|key| key.public_key),
        })
    }

    /// Stores a person's prekey bundle (other persons fetch it to send them group keys).
    pub(crate) fn publish_person_bundle(&mut self, person: &str, bundle: PrekeyBundleBody) {
        self.persons.entry(person.to_owned()).or_default().bundle = Some(bundle);
    }

    /// Adds a person's one-time prekeys, handed out oldest first like an agent's; returns how
    /// many are held.
    pub(crate) fn add_person_one_time_prekeys(&mut self, person: &str, keys: Vec<OneTimePrekey>, max: usize) -> usize {
        let record = self.persons.entry(person.to_owned()).or_default();
        record.one_time_prekeys.retain(|held| !keys.iter().any(|key| key.prekey_id == held.prekey_id));
        record.one_time_prekeys.extend(keys);
        let excess = record.one_time_prekeys.len().saturating_sub(max);
        record.one_time_prekeys.drain(..excess);
        record.one_time_prekeys.len()
    }

    /// Another person's bundle with one of their one-time prekeys, for `caller`, who must share a
    /// conversation with them.
    pub(crate) fn fetch_person_bundle(&mut self, caller: &str, person: &str) -> Result<FetchedBundle, ApiError> {
        if !self.persons.contains_key(person) {
            return Err(ApiError::NotFound("person"));
        }
        if !self.peers_of(caller).contains(person) {
            return Err(ApiError::Forbidden("no conversation with this person"));
        }
        let record = self.persons.get_mut(person).ok_or(ApiError::NotFound("person"))?;
        let bundle = record.bundle.clone().ok_or(ApiError::NotFound("prekey bundle"))?;
        let one_time = record.one_time_prekeys.pop_front();
        Ok(FetchedBundle {
            bundle,
            prekey_id: one_time.as_ref().map(|key| key.prekey_id),
            prekey_public: one_time.map(|key| key.public_key),
        })
    }

    pub(crate) fn publish_identity(&mut self, person: &str, identity_key: String) {
        let record = self.persons.entry(person.to_owned()).or_default();
        let changed = record.identity_key.as_ref().is_some_and(|old| *old != identity_key);
        record.identity_key = Some(identity_key);
        if changed {
            self.announce_identity_change(&Party::Person(person.to_owned()));
        }
    }

    pub(crate) fn distribute_group_keys(
        &mut self,
        person: &str,
        request: DistributeGroupKeys,
    ) -> Result<usize, ApiError> {
        // Check everything first so that a bad envelope stores none of the batch.
        for envelope in &request.envelopes {
            let conversation =
                self.conversations.get(&envelope.conversation_id).ok_or(ApiError::NotFound("conversation"))?;
            if !conversation.members.contains(person) {
                return Err(ApiError::Forbidden("not a member of this conversation"));
            }
            if !conversation.members.contains(&envelope.recipient_id)
                || envelope.recipient_id == person
                || self.party(&envelope.recipient_id).is_none()
            {
                return Err(ApiError::BadRequest(format!(
                    "{} is not another member of this conversation",
                    envelope.recipient_id
                )));
            }
            if envelope.epoch == 0 {
                return Err(ApiError::BadRequest("epoch must be at least 1".into()));
            }
        }
        let count = request.envelopes.len();
        for envelope in request.envelopes {
            let held = self.group_keys.entry(envelope.recipient_id).or_default();
            held.retain(|e| {
                !(e.conversation_id == envelope.conversation_id
                    && e.key_id == envelope.key_id
                    && e.epoch == envelope.epoch)
            });
            held.push(GroupKeyEnvelope {
                conversation_id: envelope.conversation_id,
                key_id: envelope.key_id,
                epoch: envelope.epoch,
                sender_id: person.to_owned(),
                sender_device_id: envelope.sender_device_id,
                envelope_b64: envelope.envelope_b64,
            });
        }
        Ok(count)
    }

    // ---- sockets ----

    /// Registers a socket and hands it everything queued for it.
    pub(crate) fn open_socket(
        &mut self,
        party: &Party,
        device: Option<String>,
        sender: UnboundedSender<String>,
    ) -> u64 {
        self.next_socket += 1;
        let id = self.next_socket;
        if let Some(queue) = self.queues.get(party) {
            for queued in queue {
                if device_matches(device.as_deref(), queued.device.as_deref()) {
                    let _ = sender.send(queued.frame.clone());
                }
            }
        }
        self.sockets.entry(party.clone()).or_default().push(SocketEntry { id, device, sender });
        *self.connections.entry(party.clone()).or_default() += 1;
        id
    }

    /// How many sockets `party` has opened so far.
    pub(crate) fn connections_of(&self, party: &Party) -> usize {
        self.connections.get(party).copied().unwrap_or(0)
    }

    pub(crate) fn close_socket(&mut self, party: &Party, socket: u64) {
        if let Some(entries) = self.sockets.get_mut(party) {
            entries.retain(|entry| entry.id != socket);
        }
    }

    /// Loses the next `frames` text frames agent `agent` sends (read, never routed), then cuts
    /// its socket (a test hook).
    pub(crate) fn lose_agent_frames(&mut self, agent: &str, frames: usize) {
        self.losing.insert(agent.to_owned(), frames);
    }

    /// Whether to lose this frame of `agent`'s (it is observed, as it crossed the socket), and
    /// whether its socket goes right after.
    pub(crate) fn lose(&mut self, agent: &str, frame: &[u8]) -> Option<bool> {
        let left = self.losing.get_mut(agent).filter(|left| **left > 0)?;
        self.observed.push(frame.to_vec());
        *left -= 1;
        let cut = *left == 0;
        if cut {
            self.losing.remove(agent);
        }
        Some(cut)
    }

    /// Drops every socket of `party` (their connections close).
    pub(crate) fn disconnect(&mut self, party: &Party) {
        self.sockets.remove(party);
    }

    /// Drops every socket.
    pub(crate) fn disconnect_all(&mut self) {
        self.sockets.clear();
    }

    /// Routes a person's `MSG`.
    pub(crate) fn route_from_person(
        &mut self,
        person: &str,
        socket_device: Option<&str>,
        msg: PersonOutboundMsg,
    ) -> Result<(), String> {
        let sender = Party::Person(person.to_owned());
        let recipients = self.recipients(&sender, &msg.conversation_id, &msg.to)?;
        let from_device_id = msg.from_device_id.clone().or_else(|| socket_device.map(str::to_owned));
        for recipient in recipients {
            let frame = match &recipient {
                Party::Agent(_) => agent_msg(
                    &msg.id,
                    &msg.conversation_id,
                    person,
                    &msg.to,
                    &msg.payload_b64,
                    msg.encrypted,
                    from_device_id.as_deref(),
                    msg.reply_to_message_id.as_deref(),
                    msg.attachments.as_ref(),
                ),
                Party::Person(_) => PersonInboundMsg {
                    id: msg.id.clone(),
                    conversation_id: msg.conversation_id.clone(),
                    from: person.to_owned(),
                    to: msg.to.clone(),
                    payload_b64: msg.payload_b64.clone(),
                    encrypted: msg.encrypted,
                    from_device_id: from_device_id.clone(),
                    to_device_id: None,
                    reply_to_message_id: msg.reply_to_message_id.clone(),
                    attachments: msg.attachments.clone(),
                    history_record: None,
                }
                .to_frame(),
            };
            self.enqueue(
                &recipient,
                Queued {
                    message_id: msg.id.clone(),
                    conversation_id: msg.conversation_id.clone(),
                    sender: sender.clone(),
                    device: None,
                    frame,
                },
            );
        }
        Ok(())
    }

    /// Routes an agent's `MSG`, unless the agent sent that id before: an agent sends a frame
    /// again, same id and bytes, when it cannot know the first one arrived.
    pub(crate) fn route_from_agent(&mut self, agent: &str, msg: AgentOutboundMsg) -> Result<(), String> {
        let sender = Party::Agent(agent.to_owned());
        if self.agent_msg_ids.get(agent).is_some_and(|(ids, _)| ids.contains(&msg.id)) {
            tracing::debug!(agent, message_id = %msg.id, "message sent again: already routed, dropped");
            return Ok(());
        }
        let recipients = self.recipients(&sender, &msg.conversation_id, &msg.to)?;
        let (ids, order) = self.agent_msg_ids.entry(agent.to_owned()).or_default();
        ids.insert(msg.id.clone());
        order.push_back(msg.id.clone());
        if order.len() > MAX_REMEMBERED_IDS
            && let Some(oldest) = order.pop_front()
        {
            ids.remove(&oldest);
        }
        for recipient in recipients {
            let (frame, device) = match &recipient {
                Party::Agent(_) => (
                    agent_msg(
                        &msg.id,
                        &msg.conversation_id,
                        agent,
                        &msg.to,
                        &msg.payload_b64,
                        msg.encrypted,
                        None,
                        msg.reply_to_message_id.as_deref(),
                        msg.attachments.as_ref(),
                    ),
                    None,
                ),
                Party::Person(_) => (
                    PersonInboundMsg {
                        id: msg.id.clone(),
                        conversation_id: msg.conversation_id.clone(),
                        from: agent.to_owned(),
                        to: msg.to.clone(),
                        payload_b64: msg.payload_b64.clone(),
                        encrypted: msg.encrypted,
                        from_device_id: None,
                        to_device_id: msg.to_device_id.clone(),
                        reply_to_message_id: msg.reply_to_message_id.clone(),
                        attachments: msg.attachments.clone(),
                        history_record: msg.history_record.clone(),
                    }
                    .to_frame(),
                    msg.to_device_id.clone(),
                ),
            };
            self.enqueue(
                &recipient,
                Queued {
                    message_id: msg.id.clone(),
                    conversation_id: msg.conversation_id.clone(),
                    sender: sender.clone(),
                    device,
                    frame,
                },
            );
        }
        Ok(())
    }

    /// Who receives a message from `sender` to `to` in `conversation_id`, or why not.
    fn recipients(&self, sender: &Party, conversation_id: &str, to: &str) -> Result<Vec<Party>, String> {
        let conversation = self.conversations.get(conversation_id).ok_or("unknown conversation")?;
        if !conversation.members.contains(sender.id()) {
            return Err("sender is not a member of this conversation".into());
        }
        let ids: Vec<&String> = if is_group_target(to, conversation_id) {
            if !conversation.group {
                return Err("not a group conversation".into());
            }
            conversation.members.iter().filter(|member| *member != sender.id()).collect()
        } else {
            let recipient = conversation.members.get(to).ok_or("recipient is not a member of this conversation")?;
            if recipient == sender.id() {
                return Err("cannot send to oneself".into());
            }
            vec![recipient]
        };
        Ok(ids.into_iter().filter_map(|id| self.party(id)).collect())
    }

    /// Queues a message for `recipient` (once per id) and sends it to its matching sockets.
    fn enqueue(&mut self, recipient: &Party, queued: Queued) {
        let queue = self.queues.entry(recipient.clone()).or_default();
        if queue.iter().any(|held| held.message_id == queued.message_id) {
            return;
        }
        self.send_live(recipient, queued.device.as_deref(), &queued.frame);
        self.queues.entry(recipient.clone()).or_default().push_back(queued);
    }

    /// Sends a frame to `party`'s sockets for `device` (all of them when `None`).
    fn send_live(&self, party: &Party, device: Option<&str>, frame: &str) {
        for entry in self.sockets.get(party).into_iter().flatten() {
            if device_matches(entry.device.as_deref(), device) {
                let _ = entry.sender.send(frame.to_owned());
            }
        }
    }

    /// An acknowledgement from `party`: the message leaves its queue, and when an agent read a
    /// person's message, the person gets `READ`.
    pub(crate) fn acknowledge(&mut self, party: &Party, ack: &AckRead) {
        let Some(queue) = self.queues.get_mut(party) else { return };
        let Some(position) = queue.iter().position(|held| held.message_id == ack.message_id) else { return };
        let Some(removed) = queue.remove(position) else { return };
        if let (Party::Agent(agent), Party::Person(_)) = (party, &removed.sender) {
            let receipt = ReadReceipt {
                message_id: removed.message_id,
                conversation_id: removed.conversation_id,
                by: agent.clone(),
            };
            self.send_live(&removed.sender, None, &receipt.to_frame());
        }
    }

    /// Hands `party` a frame the relay made up (a test of a hostile relay): queued like a
    /// message under the frame's `id` (a frame without one can never be acknowledged), so it
    /// comes back on every reconnect until acknowledged, and sent to the open sockets now.
    pub(crate) fn inject(&mut self, party: &Party, frame: String) {
        // Read as agents read frames (NaN, deep nesting), so that a lenient frame is queued
        // under the id its acknowledgement will carry.
        let value = pacerelle_core::wire::python::loads(&frame).ok().map(|loaded| loaded.value);
        let field = |name: &str| {
            value.as_ref().and_then(|value| value.get(name)).and_then(|value| value.as_str()).map(str::to_owned)
        };
        let queued = Queued {
            message_id: field("id").unwrap_or_default(),
            conversation_id: field("conversation_id").unwrap_or_default(),
            // Nobody: acknowledging it sends no read receipt.
            sender: Party::Agent(String::new()),
            device: None,
            frame,
        };
        self.send_live(party, None, &queued.frame);
        self.queues.entry(party.clone()).or_default().push_back(queued);
    }

    /// How many messages wait for `party`'s acknowledgement.
    pub(crate) fn pending_for(&self, party: &Party) -> usize {
        self.queues.get(party).map_or(0, VecDeque::len)
    }
}

/// The id whose token is `token`. Every token is compared, in constant time, so timing tells
/// nothing about which one matched or how much of it.
fn owner_of<'a>(tokens: impl Iterator<Item = (&'a String, &'a String)>, token: &str) -> Option<String> {
    let mut found = None;
    for (id, candidate) in tokens {
        if bool::from(candidate.as_bytes().ct_eq(token.as_bytes())) {
            found = Some(id.clone());
        }
    }
    found
}

/// Whether a socket of `socket_device` should get a message meant for `target` device: a socket
/// without a device gets everything; an untargeted message goes to every socket.
fn device_matches(socket_device: Option<&str>, target: Option<&str>) -> bool {
    match (socket_device, target) {
        (None, _) | (_, None) => true,
        (Some(socket), Some(target)) => socket == target,
    }
}

/// An inbound `MSG` as agents receive it (PROTOCOL.md), optional fields only when present.
#[allow(clippy::too_many_arguments)]
fn agent_msg(
    id: &str,
    conversation_id: &str,
    from: &str,
    to: &str,
    payload_b64: &str,
    encrypted: bool,
    from_device_id: Option<&str>,
    reply_to_message_id: Option<&str>,
    attachments: Option<&Value>,
) -> String {
    let mut frame = Map::new();
    frame.insert("type".into(), json!("MSG"));
    frame.insert("id".into(), json!(id));
    frame.insert("conversation_id".into(), json!(conversation_id));
    frame.insert("from".into(), json!(from));
    frame.insert("to".into(), json!(to));
    frame.insert("payload_b64".into(), json!(payload_b64));
    frame.insert("encrypted".into(), json!(encrypted));
    if let Some(device) = from_device_id {
        frame.insert("from_device_id".into(), json!(device));
    }
    if let Some(attachments) = attachments {
        frame.insert("attachments".into(), attachments.clone());
    }
    if let Some(reply_to) = reply_to_message_id {
        frame.insert("reply_to_message_id".into(), json!(reply_to));
    }
    Value::Object(frame).to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
