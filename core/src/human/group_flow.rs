//! The person's group calls as steps of its state machine: publishing prekeys (so other persons
//! can send it group keys), making and distributing a group key to every member through Signal
//! (fetching bundles first where no session exists), syncing the keys other persons sent it, and
//! sealing group messages once under the newest key.

use super::group::{self, GroupMember, GroupReadError, person_session_name};
use super::{Pending, Person, PersonError, PersonEvent, PersonOutput, Queued};
use crate::aead::IV_LEN;
use crate::e2ee::pqxdh::PeerBundle;
use crate::ids;
use crate::payload::group::GroupKey;
use crate::wire::AckRead;
use crate::wire::agent::is_group_target;
use crate::wire::http::{HttpMethod, HttpResponse, OneTimePrekeysBody, RequestId, percent_encode};
use crate::wire::person::{
    DistributeGroupKeys, FetchedBundle, GroupKeyForRecipient, PersonInboundMsg, PersonOutboundMsg,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// A group HTTP call in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum GroupPending {
    /// `PUT /person/prekey-bundle`, then these one-time prekeys.
    Bundle { job: RequestId, one_time: OneTimePrekeysBody },
    /// `POST /person/one-time-prekeys`.
    OneTime { job: RequestId },
    /// A member's bundle, to start the session a key goes through.
    MemberBundle { job: RequestId, member: GroupMember },
    /// `POST /person/group-keys`.
    Distribute { job: RequestId },
    /// `GET /person/group-keys?conversation_id=...`.
    Sync { conversation_id: String },
}

/// A key on its way to the members.
pub(super) struct Distribution {
    key: GroupKey,
    members: Vec<GroupMember>,
    /// Bundles still being fetched.
    fetching: usize,
    failure: Option<(u16, String)>,
}

/// What waits for a conversation's keys to be synced.
#[derive(Default)]
pub(super) struct Sync {
    /// Group messages whose key is not held yet.
    parked: Vec<PersonInboundMsg>,
    /// Messages to seal once the newest key is known.
    sends: Vec<Queued>,
}

impl Person {
    fn next_job(&mut self) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        id
    }

    fn require_e2ee(&self) -> Result<(), PersonError> {
        if self.account.is_some() { Ok(()) } else { Err(PersonError::E2eeRequired) }
    }

    /// Publishes this person's prekey bundle and a batch of one-time prekeys to the relay
    /// (`PUT /person/prekey-bundle`, then `POST /person/one-time-prekeys`), so that other
    /// persons can start Signal sessions with it and send it group keys. Answered by
    /// [`PersonEvent::PrekeysPublished`] (or [`PersonEvent::RequestFailed`]) with the returned id.
    pub fn publish_prekeys(&mut self) -> Result<RequestId, PersonError> {
        self.require_e2ee()?;
        let account = self.account.as_mut().ok_or(PersonError::E2eeRequired)?;
        // The person keeps its keys in memory, so the changes need no commit.
        let (_, bundle, one_time) = account.publish(&mut *self.rng)?;
        let job = self.next_job();
        let body = serde_json::to_vec(&bundle).unwrap_or_default();
        self.request(
            Pending::Group(GroupPending::Bundle { job, one_time }),
            HttpMethod::Put,
            "/person/prekey-bundle".into(),
            Some("application/json"),
            body,
        );
        Ok(job)
    }

    /// Makes a new key for group `conversation_id` at the next epoch (1 for a group without
    /// one) and distributes it to `members` (agents and other persons; this person is left
    /// out) through each one's Signal session, started from a fetched bundle where there is
    /// none yet. The members are remembered for [`Self::rotate_group_key`]. Answered by
    /// [`PersonEvent::GroupKeyDistributed`] (or [`PersonEvent::RequestFailed`]) with the
    /// returned id; the key is used for sending only once the relay stored every envelope.
    pub fn distribute_group_key(
        &mut self,
        conversation_id: &str,
        members: &[GroupMember],
    ) -> Result<RequestId, PersonError> {
        self.require_e2ee()?;
        if conversation_id.is_empty() {
            return Err(PersonError::EmptyField("conversation_id"));
        }
        let mut members: Vec<GroupMember> =
            members.iter().filter(|member| member.id != self.config.person_id).cloned().collect();
        members.sort();
        members.dedup();
        let in_flight = self
            .distributions
            .values()
            .filter(|job| job.key.conversation_id == conversation_id)
            .map(|job| job.key.epoch)
            .max()
            .unwrap_or(0);
        let epoch = self.keyring.highest_epoch(conversation_id).max(in_flight) + 1;
        let key = group::new_key(conversation_id, epoch, &mut *self.rng);
        let job = self.next_job();
        self.group_members.insert(conversation_id.to_owned(), members.clone());
        let mut fetching = 0;
        for member in &members {
            let name = member.session_name(conversation_id);
            if !self.account.as_ref().is_some_and(|account| account.has_session(&name)) {
                fetching += 1;
                let kind = Pending::Group(GroupPending::MemberBundle { job, member: member.clone() });
                self.request(kind, HttpMethod::Get, member.bundle_path(), None, Vec::new());
            }
        }
        tracing::debug!(conversation_id, epoch, members = members.len(), "group key distribution started");
        self.distributions.insert(job, Distribution { key, members, fetching, failure: None });
        if fetching == 0 {
            self.post_distribution(job);
        }
        Ok(job)
    }

    /// A new key at the next epoch for the members given to the last
    /// [`Self::distribute_group_key`] of this conversation (after a member left, say).
    pub fn rotate_group_key(&mut self, conversation_id: &str) -> Result<RequestId, PersonError> {
        let members = self
            .group_members
            .get(conversation_id)
            .cloned()
            .ok_or_else(|| PersonError::UnknownGroup { conversation_id: conversation_id.to_owned() })?;
        self.distribute_group_key(conversation_id, &members)
    }

    /// The newest epoch this person holds for `conversation_id` (0 with none).
    pub fn group_epoch(&self, conversation_id: &str) -> u64 {
        self.keyring.highest_epoch(conversation_id)
    }

    /// Whether this person holds key `key_id` at `epoch` of `conversation_id`.
    pub fn holds_group_key(&self, conversation_id: &str, key_id: &str, epoch: u64) -> bool {
        self.keyring.holds(conversation_id, key_id, epoch)
    }

    /// Queues a group message: the group's keys are synced first (as the official SDK does
    /// before sending), then it is sealed once under the highest epoch held.
    pub(super) fn queue_group_send(&mut self, conversation_id: &str, message: Queued) {
        self.syncing_entry(conversation_id).sends.push(message);
    }

    /// Parks an encrypted group message whose key is not held and syncs the group's keys;
    /// gives the frame back when it can be read now (or is no group message).
    pub(super) fn park_until_keyed(&mut self, frame: PersonInboundMsg) -> Option<PersonInboundMsg> {
        if !frame.encrypted || self.account.is_none() || !is_group_target(&frame.to, &frame.conversation_id) {
            return Some(frame);
        }
        match self.keyring.open(&frame.conversation_id, &frame.payload_b64) {
            Err(GroupReadError::MissingKey { .. }) => {
                let conversation_id = frame.conversation_id.clone();
                let sync = self.syncing_entry(&conversation_id);
                if !sync.parked.iter().any(|parked| parked.id == frame.id) {
                    sync.parked.push(frame);
                }
                None
            }
            _ => Some(frame),
        }
    }

    /// What waits for `conversation_id`'s keys, asking for them when no sync is in flight.
    fn syncing_entry(&mut self, conversation_id: &str) -> &mut Sync {
        if !self.syncing.contains_key(conversation_id) {
            let path = format!("/person/group-keys?conversation_id={}", percent_encode(conversation_id));
            let kind = Pending::Group(GroupPending::Sync { conversation_id: conversation_id.to_owned() });
            self.request(kind, HttpMethod::Get, path, None, Vec::new());
        }
        self.syncing.entry(conversation_id.to_owned()).or_default()
    }

    /// An answer to a group call.
    pub(super) fn group_http(&mut self, kind: GroupPending, result: Result<HttpResponse, String>) {
        let failure = match &result {
            Err(error) => Some((0, error.clone())),
            Ok(response) if !response.is_success() => {
                Some((response.status, response.error_message().unwrap_or_else(|| format!("HTTP {}", response.status))))
            }
            Ok(_) => None,
        };
        let body = result.map(|response| response.body).unwrap_or_default();
        match kind {
            GroupPending::Bundle { job, one_time } => match failure {
                Some((status, error)) => self.emit(PersonEvent::RequestFailed { request: job, status, error }),
                None => {
                    let body = serde_json::to_vec(&one_time).unwrap_or_default();
                    self.request(
                        Pending::Group(GroupPending::OneTime { job }),
                        HttpMethod::Post,
                        "/person/one-time-prekeys".into(),
                        Some("application/json"),
                        body,
                    );
                }
            },
            GroupPending::OneTime { job } => match failure {
                Some((status, error)) => self.emit(PersonEvent::RequestFailed { request: job, status, error }),
                None => self.emit(PersonEvent::PrekeysPublished { request: job }),
            },
            GroupPending::MemberBundle { job, member } => {
                let outcome = match failure {
                    Some(failure) => Err(failure),
                    None => self.start_member_session(&job, &member, &body).map_err(|error| (0, error)),
                };
                let Some(distribution) = self.distributions.get_mut(&job) else { return };
                distribution.fetching = distribution.fetching.saturating_sub(1);
                if let Err((status, error)) = outcome {
                    tracing::warn!(member = %member.id, status, "no session with a group member: key not distributed");
                    distribution.failure.get_or_insert((status, format!("{}: {error}", member.id)));
                }
                if distribution.fetching == 0 {
                    match distribution.failure.take() {
                        Some((status, error)) => {
                            self.distributions.remove(&job);
                            self.emit(PersonEvent::RequestFailed { request: job, status, error });
                        }
                        None => self.post_distribution(job),
                    }
                }
            }
            GroupPending::Distribute { job } => {
                let Some(distribution) = self.distributions.remove(&job) else { return };
                match failure {
                    Some((status, error)) => self.emit(PersonEvent::RequestFailed { request: job, status, error }),
                    None => {
                        let event = PersonEvent::GroupKeyDistributed {
                            request: job,
                            conversation_id: distribution.key.conversation_id.clone(),
                            key_id: distribution.key.key_id.clone(),
                            epoch: distribution.key.epoch,
                            recipients: distribution.members.len(),
                        };
                        self.keyring.insert(distribution.key);
                        self.emit(event);
                    }
                }
            }
            GroupPending::Sync { conversation_id } => {
                match failure {
                    Some((status, error)) => {
                        tracing::warn!(conversation_id, status, %error, "group keys could not be fetched");
                    }
                    None => self.take_group_keys(&conversation_id, &body),
                }
                self.after_sync(&conversation_id);
            }
        }
    }

    fn emit(&mut self, event: PersonEvent) {
        self.outputs.push_back(PersonOutput::Event(event));
    }

    fn start_member_session(&mut self, job: &RequestId, member: &GroupMember, body: &[u8]) -> Result<(), String> {
        let conversation_id = self
            .distributions
            .get(job)
            .map(|distribution| distribution.key.conversation_id.clone())
            .ok_or("distribution forgotten")?;
        let fetched: FetchedBundle =
            serde_json::from_slice(body).map_err(|error| format!("unexpected answer: {error}"))?;
        let bundle = PeerBundle::from_fetched(&fetched).map_err(|error| error.to_string())?;
        let account = self.account.as_mut().ok_or("end-to-end encryption is off")?;
        let name = member.session_name(&conversation_id);
        // Another distribution may have started it meanwhile: keep that one, whose messages
        // are already on their way.
        if !account.has_session(&name) {
            account.start_session(&name, &bundle, &mut *self.rng).map_err(|error| error.to_string())?;
        }
        Ok(())
    }

    /// Encrypts the job's key for every member and posts the envelopes.
    fn post_distribution(&mut self, job: RequestId) {
        let Some(distribution) = self.distributions.get(&job) else { return };
        let key = &distribution.key;
        let plaintext = group::sender_key_plaintext(key);
        let mut envelopes = Vec::with_capacity(distribution.members.len());
        let mut failure = None;
        for member in &distribution.members {
            let name = member.session_name(&key.conversation_id);
            let Some(account) = self.account.as_mut() else { return };
            match account.encrypt(&name, plaintext.as_bytes(), &mut *self.rng) {
                Ok((framed, _)) => envelopes.push(GroupKeyForRecipient {
                    recipient_id: member.id.clone(),
                    conversation_id: key.conversation_id.clone(),
                    key_id: key.key_id.clone(),
                    epoch: key.epoch,
                    sender_device_id: self.config.device_id.clone(),
                    envelope_b64: STANDARD.encode(framed),
                }),
                Err(error) => {
                    failure = Some(format!("{}: {error}", member.id));
                    break;
                }
            }
        }
        if let Some(error) = failure {
            self.distributions.remove(&job);
            self.emit(PersonEvent::RequestFailed { request: job, status: 0, error });
            return;
        }
        let body = serde_json::to_vec(&DistributeGroupKeys { envelopes }).unwrap_or_default();
        self.request(
            Pending::Group(GroupPending::Distribute { job }),
            HttpMethod::Post,
            "/person/group-keys".into(),
            Some("application/json"),
            body,
        );
    }

    /// Takes the keys of a `GET /person/group-keys` answer: each entry checked as the official
    /// SDK checks them, opened with its sender's session, checked against its envelope. A bad
    /// entry is refused alone (logged), so one member's broken envelope cannot hide the others'.
    fn take_group_keys(&mut self, conversation_id: &str, body: &[u8]) {
        let Ok(Value::Array(entries)) = serde_json::from_slice::<Value>(body) else {
            tracing::warn!(conversation_id, "invalid group key response");
            return;
        };
        for entry in entries.iter().filter(|entry| entry.is_object()) {
            match self.take_group_key(conversation_id, entry) {
                Ok(true) => tracing::debug!(conversation_id, "group key received"),
                Ok(false) => {}
                Err(error) => tracing::warn!(conversation_id, %error, "group key refused"),
            }
        }
    }

    fn take_group_key(&mut self, conversation_id: &str, entry: &Value) -> Result<bool, group::SenderKeyRejected> {
        use group::SenderKeyRejected;
        let envelope = group::read_envelope(entry, conversation_id)?;
        if self.keyring.holds(conversation_id, &envelope.key_id, envelope.epoch) {
            // Held already: its Signal message was used once and would not open again.
            return Ok(false);
        }
        let sealed = STANDARD.decode(&envelope.envelope_b64).map_err(|_| SenderKeyRejected::NotBase64)?;
        let account = self.account.as_mut().ok_or(SenderKeyRejected::Decrypt("end-to-end encryption is off".into()))?;
        let name = person_session_name(&envelope.sender_id, conversation_id);
        let (plaintext, _, _) = account
            .decrypt(&[name.as_str()], &sealed, &mut *self.rng)
            .map_err(|error| SenderKeyRejected::Decrypt(error.to_string()))?;
        let key = group::accept_sender_key(&envelope, &plaintext)?;
        Ok(self.keyring.insert(key))
    }

    /// After a sync: parked messages open (or are reported unreadable), queued sends are sealed.
    fn after_sync(&mut self, conversation_id: &str) {
        let Some(sync) = self.syncing.remove(conversation_id) else { return };
        for frame in sync.parked {
            let message_id = frame.id.clone();
            match self.read_message(frame) {
                Ok(message) => {
                    let ack = AckRead {
                        to: message.from.clone(),
                        message_id: message.id.clone(),
                        conversation_id: message.conversation_id.clone(),
                    };
                    self.outputs.push_back(PersonOutput::Frame(ack.to_frame()));
                    if self.seen.insert(message.id.clone()) {
                        self.emit(PersonEvent::Message(message));
                    }
                }
                Err(error) => {
                    // Left unacknowledged: the relay offers it again at the next connection.
                    tracing::warn!(message_id, %error, "group message unreadable");
                    self.emit(PersonEvent::Unreadable {
                        message_id,
                        conversation_id: conversation_id.to_owned(),
                        error: error.to_string(),
                    });
                }
            }
        }
        for message in sync.sends {
            self.send_group_now(conversation_id, message);
        }
    }

    fn send_group_now(&mut self, conversation_id: &str, message: Queued) {
        let mut iv = [0u8; IV_LEN];
        self.rng.fill_bytes(&mut iv);
        let Some((payload_b64, epoch)) = self.keyring.seal(conversation_id, &iv, &message.text) else {
            tracing::warn!(conversation_id, "no group key: group message not sent");
            let error = PersonError::NoGroupKey { conversation_id: conversation_id.to_owned() };
            self.emit(PersonEvent::NotSent { message_id: message.id, error: error.to_string() });
            return;
        };
        tracing::debug!(conversation_id, epoch, "group message sealed");
        let frame = PersonOutboundMsg {
            id: message.id,
            conversation_id: conversation_id.to_owned(),
            to: format!("group:{conversation_id}"),
            payload_b64,
            encrypted: true,
            from_device_id: self.config.device_id.clone(),
            reply_to_message_id: message.reply_to,
            attachments: message.attachments,
        };
        self.outputs.push_back(PersonOutput::Frame(frame.to_frame()));
    }

    /// A fresh message id, for group sends queued before their frame exists.
    pub(super) fn fresh_id(&mut self) -> String {
        ids::uuid_v4(&mut *self.rng)
    }
}
