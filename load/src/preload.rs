//! A store filled before our agent starts, to measure what a message costs with much already
//! stored: `receipts` accepted receipts and `sessions` real Signal sessions, in the agent's own
//! SQLite store.
//!
//! The sessions are real: each is a person of the core's person side starting PQXDH from the
//! agent's published bundle and a one-time prekey, whose first message the agent's core
//! decrypts and accepts, in this process, exactly as it would from the relay; the session
//! records it commits are the ones the agent loads and keeps at start. The receipts are
//! accepted receipts (ids, digests, acceptance times within the retention window), written in
//! batches. The agent under load keeps them all only if its receipt cap allows it
//! ([`Preload::receipt_cap`], passed to it as [`MAX_RECEIPTS_ENV`]).

use crate::error::LoadError;
use pacerelle_core::Timestamp;
use pacerelle_core::agent::{Agent, AgentConfig, Event, Input, Output};
use pacerelle_core::human::{Person, PersonConfig, PersonInput, PersonOutput};
use pacerelle_core::store::{AgentStore as _, Receipt, ReceiptState, StoreChanges};
use pacerelle_core::wire::http::{HttpMethod, HttpRequest, HttpResponse, OneTimePrekey, PrekeyBundleBody};
use pacerelle_core::wire::person::FetchedBundle;
use pacerelle_store_sqlite::SqliteStore;
use std::collections::VecDeque;
use std::path::Path;

/// The environment variable that raises our load agent's receipt cap
/// (`AgentConfig::max_accepted_receipts`) so that preloaded receipts are kept, not aged out by
/// its first acceptance.
pub const MAX_RECEIPTS_ENV: &str = "PACERELLE_LOAD_MAX_RECEIPTS";

/// Receipts written per transaction.
const BATCH: usize = 5_000;

/// What to put in our agent's store before it starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Preload {
    /// Accepted receipts.
    pub receipts: usize,
    /// Sessions with as many people (one conversation each).
    pub sessions: usize,
}

impl Preload {
    /// Whether there is nothing to put.
    pub fn is_empty(&self) -> bool {
        self.receipts == 0 && self.sessions == 0
    }

    /// The receipt cap the agent needs to keep every preloaded receipt and those of the run
    /// (the default cap, 10,000, at least).
    pub fn receipt_cap(&self) -> usize {
        let default = AgentConfig::new("agent").max_accepted_receipts;
        default.max(self.receipts.saturating_add(self.sessions).saturating_mul(2))
    }
}

/// Why the store could not be filled.
#[derive(Debug, thiserror::Error)]
pub enum PreloadError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] pacerelle_store_sqlite::StoreError),
    /// The agent's core refused to start from the store.
    #[error("agent: {0}")]
    Config(#[from] pacerelle_core::agent::ConfigError),
    /// A step of a session's setup did not go as the agent and the person do it.
    #[error("session {index}: {what}")]
    Session {
        /// Which person.
        index: usize,
        /// What went wrong.
        what: String,
    },
}

impl From<PreloadError> for LoadError {
    fn from(error: PreloadError) -> Self {
        LoadError::Preload(error.to_string())
    }
}

/// The relay's part, in memory: the bundle the agent put and the one-time prekeys it posted.
#[derive(Default)]
struct Keys {
    bundle: Option<PrekeyBundleBody>,
    one_time: VecDeque<OneTimePrekey>,
}

impl Keys {
    fn take(&mut self, request: &HttpRequest) {
        match (request.method, request.path.as_str()) {
            (HttpMethod::Put, "/agent/prekey-bundle") => {
                self.bundle = serde_json::from_slice(&request.body).ok();
            }
            (HttpMethod::Post, "/agent/one-time-prekeys") => {
                if let Ok(body) =
                    serde_json::from_slice::<pacerelle_core::wire::http::OneTimePrekeysBody>(&request.body)
                {
                    self.one_time.extend(body.one_time_prekeys);
                }
            }
            _ => {}
        }
    }

    fn fetch(&mut self) -> Option<FetchedBundle> {
        let bundle = self.bundle.clone()?;
        let one_time = self.one_time.pop_front();
        Some(FetchedBundle {
            bundle,
            prekey_id: one_time.as_ref().map(|key| key.prekey_id),
            prekey_public: one_time.map(|key| key.public_key),
        })
    }
}

fn now() -> Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    Timestamp::from_millis(millis)
}

fn rng() -> Box<pacerelle_core::Rng> {
    Box::new(rand::make_rng::<rand::rngs::StdRng>())
}

/// Carries out the agent's outputs: changes to the store, calls answered by `keys`, the socket
/// opened at once. Returns the messages handed to the app.
fn pump(
    agent: &mut Agent,
    store: &mut SqliteStore,
    keys: &mut Keys,
    answer: bool,
    now: Timestamp,
) -> Result<Vec<pacerelle_core::AgentMessage>, PreloadError> {
    let mut messages = Vec::new();
    while let Some(output) = agent.poll_output() {
        match output {
            Output::Persist(changes) => store.apply(&changes)?,
            Output::Http(request) if answer => {
                keys.take(&request);
                let ok = HttpResponse { status: 200, body: b"{}".to_vec() };
                // A refusal here would be the core's own answer to a well-formed 200: ignore.
                let _ = agent.handle_input(now, Input::Http(request.id, Ok(ok)));
            }
            Output::Connect => {
                let _ = agent.handle_input(now, Input::Connected);
            }
            Output::Event(Event::Message(message)) => messages.push(message),
            _ => {}
        }
    }
    Ok(messages)
}

/// Fills the store of `agent_id` under `root` with `preload` (see the [module docs](self)).
pub fn fill(root: &Path, agent_id: &str, preload: Preload) -> Result<(), PreloadError> {
    if preload.is_empty() {
        return Ok(());
    }
    let mut store = SqliteStore::open_in(root, agent_id)?;
    let snapshot = store.load()?;
    let config = AgentConfig { e2ee: true, max_accepted_receipts: preload.receipt_cap(), ..AgentConfig::new(agent_id) };
    let mut agent = Agent::new(config, rng(), snapshot)?;
    let mut keys = Keys::default();
    let at = now();
    agent.start(at);
    pump(&mut agent, &mut store, &mut keys, true, at)?;
    for index in 0..preload.sessions {
        open_session(&mut agent, &mut store, &mut keys, index, agent_id)?;
    }
    // A publication the relay never confirmed: the agent makes and posts a fresh batch of
    // one-time prekeys at its start, as after a crash, so the real relay has some to hand out.
    if preload.sessions > 0 {
        agent
            .publish_prekey_bundle()
            .map_err(|error| PreloadError::Session { index: preload.sessions, what: error.to_string() })?;
        pump(&mut agent, &mut store, &mut keys, false, at)?;
    }
    drop(agent);
    let stored = store.load()?;
    let record_bytes: usize = stored.e2ee.sessions.values().map(|record| record.expose().len()).sum();
    tracing::info!(
        sessions = stored.e2ee.sessions.len(),
        record_bytes,
        mean_record_bytes = record_bytes / stored.e2ee.sessions.len().max(1),
        "session records preloaded"
    );
    let start = at.as_millis().saturating_sub(preload.receipts as u64);
    for batch in (0..preload.receipts).collect::<Vec<_>>().chunks(BATCH) {
        let put_receipts = batch
            .iter()
            .map(|&index| Receipt {
                message_id: format!("preloaded-{index:09}"),
                digest: format!("{index:064x}"),
                from: "preloaded-person".into(),
                conversation_id: "preloaded-conversation".into(),
                from_device_id: None,
                sender_identity: None,
                state: ReceiptState::Accepted { at: Timestamp::from_millis(start + index as u64) },
            })
            .collect();
        store.apply(&StoreChanges { put_receipts, ..Default::default() })?;
    }
    Ok(())
}

/// Person `index` starts a session with the agent and writes once; the agent decrypts and
/// accepts the message.
fn open_session(
    agent: &mut Agent,
    store: &mut SqliteStore,
    keys: &mut Keys,
    index: usize,
    agent_id: &str,
) -> Result<(), PreloadError> {
    let fail = |what: String| PreloadError::Session { index, what };
    let at = now();
    let person_id = format!("preloaded-{index}");
    let conversation = format!("preloaded-conversation-{index}");
    let mut person = Person::new(PersonConfig { e2ee: true, ..PersonConfig::new(person_id.clone()) }, rng());
    person.start();
    person.handle_input(at, PersonInput::Connected).map_err(|error| fail(error.to_string()))?;
    while person.poll_output().is_some() {}
    person.send_text(&conversation, agent_id, "preloaded").map_err(|error| fail(error.to_string()))?;
    let mut frame = None;
    while let Some(output) = person.poll_output() {
        match output {
            PersonOutput::Http(request) => {
                let fetched = keys.fetch().ok_or_else(|| fail("no bundle published".into()))?;
                let body = serde_json::to_vec(&fetched).map_err(|error| fail(error.to_string()))?;
                person
                    .handle_input(at, PersonInput::Http(request.id, Ok(HttpResponse { status: 200, body })))
                    .map_err(|error| fail(error.to_string()))?;
            }
            PersonOutput::Frame(text) => frame = Some(text),
            _ => {}
        }
    }
    let frame = frame.ok_or_else(|| fail("the person sent nothing".into()))?;
    // The relay names the sender; the person's own frame does not.
    let mut frame: serde_json::Value = serde_json::from_str(&frame).map_err(|error| fail(error.to_string()))?;
    frame["from"] = serde_json::Value::String(person_id);
    agent.handle_input(at, Input::Frame(frame.to_string())).map_err(|error| fail(error.to_string()))?;
    let messages = pump(agent, store, keys, true, at)?;
    let [message] = messages.as_slice() else {
        return Err(fail(format!("{} messages handed out instead of one", messages.len())));
    };
    agent.accept(&message.id, at).map_err(|error| fail(error.to_string()))?;
    pump(agent, store, keys, true, at)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacerelle_core::e2ee::account::Account;
    use pacerelle_core::e2ee::pq::PqPolicy;

    #[test]
    fn the_store_holds_real_sessions_and_the_receipts_asked_for() {
        let root = std::env::temp_dir().join(format!("flat-costs-preload-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        fill(&root, "agent-1", Preload { receipts: 12_345, sessions: 60 }).expect("filled");
        let mut store = SqliteStore::open_in(&root, "agent-1").expect("opens");
        let snapshot = store.load().expect("loads");
        // One receipt per session's first message, and the preloaded ones.
        assert_eq!(snapshot.receipts.len(), 12_345 + 60);
        assert!(snapshot.receipts.values().all(|receipt| matches!(receipt.state, ReceiptState::Accepted { .. })));
        assert_eq!(snapshot.e2ee.sessions.len(), 60);
        // The records are sessions the core reads back (a blob it never loads would measure
        // nothing), with the people who started them.
        let (account, _) = Account::load_or_create(&snapshot.e2ee, PqPolicy::default().factory(), &mut *rng())
            .expect("the sessions load");
        for index in 0..60 {
            let name = format!("human:preloaded-{index}:preloaded-conversation-{index}");
            assert!(account.has_session(&name), "{name}");
        }
        // More than a batch of one-time prekeys was used: the agent made new ones on the way,
        // and the last publication is unconfirmed, so the agent posts a batch at its start.
        assert!(snapshot.e2ee.prekeys.len() > 3);
        drop(store);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_cap_keeps_what_is_preloaded() {
        assert_eq!(Preload::default().receipt_cap(), 10_000);
        assert!(Preload { receipts: 100_000, sessions: 1_000 }.receipt_cap() > 101_000);
        assert!(Preload::default().is_empty());
    }
}
