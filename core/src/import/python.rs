//! The official Python agent's state snapshot: the JSON document its `SQLiteSignalStore` keeps
//! in `signal.db` (table `signal_snapshot`, row 1, column `blob`), which wraps the runtime's
//! export (`signal_b64`) with the agent's own bookkeeping.
//!
//! Its fields, as the official SDK 0.1.0a8 writes them (`AgentGatewayClient._snapshot_bytes`):
//! `kind` (`"pacerelle.python-agent-state"`), `v` (1), `agent_id`, `signal_b64`,
//! `history_keys` (`{conversation: {key_id, epoch, raw_key_b64}}`), `accepted_messages`
//! (`{id: {digest, accepted_at}}`), `reply_contexts` (`{id: {from, conversation_id,
//! device_id}}`), `last_devices` (`{"[person, conversation]": device}`), `pending_messages`
//! (`{id: {digest, text}}`), `last_prekey_id`, `legacy_device_sessions` (session names) and
//! `group_sender_keys` (`[{conversation_id, key_id, epoch, raw_key_b64, ...}]`). Older agents
//! stored the bare export, without the JSON around it; both are read.

use base64::Engine as _;
use serde_json::{Map, Value};

/// The `kind` of the official agent's snapshot.
pub const KIND: &str = "pacerelle.python-agent-state";
/// The only snapshot version (`v`) the official SDK writes.
pub const VERSION: u64 = 1;

/// Why a snapshot is not the official agent's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Starts like JSON and is not valid JSON.
    #[error("the snapshot is not valid JSON")]
    Json,
    /// Another `kind` or `v` than the official agent's.
    #[error("not an official agent snapshot (kind {kind:?}, version {version:?})")]
    Unsupported {
        /// Its `kind`.
        kind: Option<String>,
        /// Its `v`.
        version: Option<u64>,
    },
    /// The snapshot belongs to another agent.
    #[error("the snapshot belongs to agent {found:?}, not {expected:?}")]
    OtherAgent {
        /// The agent being imported.
        expected: String,
        /// The snapshot's `agent_id`.
        found: String,
    },
    /// A field is missing or malformed.
    #[error("the snapshot's `{0}` is malformed")]
    Field(&'static str),
}

/// A conversation's archive key.
#[derive(Clone, PartialEq, Eq)]
pub struct HistoryKey {
    /// The conversation.
    pub conversation_id: String,
    /// The key's id.
    pub key_id: String,
    /// Its epoch.
    pub epoch: u64,
    /// The 32-byte key.
    pub raw_key: zeroize::Zeroizing<Vec<u8>>,
}

/// A group's key (its fields are those of [`HistoryKey`], per group conversation).
pub type GroupKey = HistoryKey;

/// A message the official agent decrypted: accepted (handled) or still pending.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageReceipt {
    /// The message id.
    pub message_id: String,
    /// The official digest of its routing fields and payload (the same as ours).
    pub digest: String,
    /// The decoded text, while pending.
    pub pending_text: Option<String>,
    /// When it was accepted, in milliseconds since the epoch (the snapshot has Python's
    /// `time.time()` seconds), if it says.
    pub accepted_at_millis: Option<u64>,
    /// Who sent it, in which conversation, from which device (the reply context), if known.
    pub context: Option<(String, String, Option<String>)>,
}

/// The official agent's snapshot, read.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PythonSnapshot {
    /// The runtime's export.
    pub signal: zeroize::Zeroizing<Vec<u8>>,
    /// Archive keys by conversation.
    pub history_keys: Vec<HistoryKey>,
    /// Group keys.
    pub group_keys: Vec<GroupKey>,
    /// Decrypted messages.
    pub receipts: Vec<MessageReceipt>,
    /// The last device per (person, conversation).
    pub last_devices: Vec<((String, String), String)>,
    /// The last prekey id handed out, when the snapshot says.
    pub last_prekey_id: Option<u32>,
    /// Sessions the official agent reached under a conversation-scoped name after a device
    /// name failed (this SDK tries both names itself).
    pub legacy_device_sessions: Vec<String>,
}

fn field<'a>(state: &'a Map<String, Value>, name: &'static str) -> Result<&'a Map<String, Value>, SnapshotError> {
    match state.get(name) {
        None => Ok(EMPTY.get_or_init(Map::new)),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(SnapshotError::Field(name)),
    }
}

static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();

fn text<'a>(value: &'a Value, key: &str, name: &'static str) -> Result<&'a str, SnapshotError> {
    value.get(key).and_then(Value::as_str).ok_or(SnapshotError::Field(name))
}

fn key32(value: &Value, name: &'static str) -> Result<zeroize::Zeroizing<Vec<u8>>, SnapshotError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text(value, "raw_key_b64", name)?)
        .map_err(|_| SnapshotError::Field(name))?;
    if raw.len() != 32 {
        return Err(SnapshotError::Field(name));
    }
    Ok(zeroize::Zeroizing::new(raw))
}

fn key_of(conversation_id: String, value: &Value, name: &'static str) -> Result<HistoryKey, SnapshotError> {
    Ok(HistoryKey {
        conversation_id,
        key_id: text(value, "key_id", name)?.to_owned(),
        epoch: value
            .get("epoch")
            .and_then(Value::as_u64)
            .filter(|epoch| *epoch >= 1)
            .ok_or(SnapshotError::Field(name))?,
        raw_key: key32(value, name)?,
    })
}

impl PythonSnapshot {
    /// Reads the row of `signal.db` for agent `agent_id`.
    pub fn parse(blob: &[u8], agent_id: &str) -> Result<PythonSnapshot, SnapshotError> {
        if !blob.starts_with(b"{") {
            // The official SDK still reads a bare export, from before it wrapped it.
            return Ok(PythonSnapshot { signal: zeroize::Zeroizing::new(blob.to_vec()), ..PythonSnapshot::default() });
        }
        let value: Value = serde_json::from_slice(blob).map_err(|_| SnapshotError::Json)?;
        let state = value.as_object().ok_or(SnapshotError::Json)?;
        let kind = state.get("kind").and_then(Value::as_str);
        let version = state.get("v").and_then(Value::as_u64);
        if kind != Some(KIND) || version != Some(VERSION) {
            return Err(SnapshotError::Unsupported { kind: kind.map(str::to_owned), version });
        }
        let found = state.get("agent_id").and_then(Value::as_str).ok_or(SnapshotError::Field("agent_id"))?;
        if found != agent_id {
            return Err(SnapshotError::OtherAgent { expected: agent_id.to_owned(), found: found.to_owned() });
        }
        let signal = base64::engine::general_purpose::STANDARD
            .decode(state.get("signal_b64").and_then(Value::as_str).ok_or(SnapshotError::Field("signal_b64"))?)
            .map_err(|_| SnapshotError::Field("signal_b64"))?;
        let history_keys = field(state, "history_keys")?
            .iter()
            .map(|(conversation, key)| key_of(conversation.clone(), key, "history_keys"))
            .collect::<Result<_, _>>()?;
        let group_keys = match state.get("group_sender_keys") {
            None => Vec::new(),
            Some(Value::Array(keys)) => keys
                .iter()
                .map(|key| {
                    key_of(text(key, "conversation_id", "group_sender_keys")?.to_owned(), key, "group_sender_keys")
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(SnapshotError::Field("group_sender_keys")),
        };
        let contexts = field(state, "reply_contexts")?;
        let context = |id: &str| {
            let context = contexts.get(id)?;
            Some((
                context.get("from")?.as_str()?.to_owned(),
                context.get("conversation_id")?.as_str()?.to_owned(),
                context.get("device_id").and_then(Value::as_str).map(str::to_owned),
            ))
        };
        let mut receipts = Vec::new();
        for (id, receipt) in field(state, "accepted_messages")? {
            receipts.push(MessageReceipt {
                message_id: id.clone(),
                digest: text(receipt, "digest", "accepted_messages")?.to_owned(),
                pending_text: None,
                accepted_at_millis: receipt
                    .get("accepted_at")
                    .and_then(Value::as_f64)
                    .filter(|at| at.is_finite() && *at >= 0.0)
                    // Saturating: an absurd time stays a time.
                    .map(|at| (at * 1000.0) as u64),
                context: context(id),
            });
        }
        for (id, receipt) in field(state, "pending_messages")? {
            receipts.push(MessageReceipt {
                message_id: id.clone(),
                digest: text(receipt, "digest", "pending_messages")?.to_owned(),
                pending_text: Some(text(receipt, "text", "pending_messages")?.to_owned()),
                accepted_at_millis: None,
                context: context(id),
            });
        }
        let mut last_devices = Vec::new();
        for (key, device) in field(state, "last_devices")? {
            let pair: (String, String) = serde_json::from_str(key).map_err(|_| SnapshotError::Field("last_devices"))?;
            let device = device.as_str().ok_or(SnapshotError::Field("last_devices"))?;
            last_devices.push((pair, device.to_owned()));
        }
        let last_prekey_id = match state.get("last_prekey_id") {
            None => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .and_then(|id| u32::try_from(id).ok())
                    .filter(|id| *id > 0 && *id < 1 << 31)
                    .ok_or(SnapshotError::Field("last_prekey_id"))?,
            ),
        };
        let legacy_device_sessions = match state.get("legacy_device_sessions") {
            None => Vec::new(),
            Some(Value::Array(names)) => names
                .iter()
                .map(|name| name.as_str().map(str::to_owned).ok_or(SnapshotError::Field("legacy_device_sessions")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(SnapshotError::Field("legacy_device_sessions")),
        };
        Ok(PythonSnapshot {
            signal: zeroize::Zeroizing::new(signal),
            history_keys,
            group_keys,
            receipts,
            last_devices,
            last_prekey_id,
            legacy_device_sessions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snapshot(overrides: Value) -> Vec<u8> {
        let mut state = json!({
            "kind": KIND, "v": 1, "agent_id": "a1", "signal_b64": "QUdTUA==",
            "history_keys": {"c1": {"key_id": "k1", "epoch": 1, "raw_key_b64": STANDARD_32}},
            "accepted_messages": {"m1": {"digest": "d1", "accepted_at": 1700000000.5}, "m3": {"digest": "d3", "accepted_at": 1.0}},
            "reply_contexts": {"m1": {"from": "u1", "conversation_id": "c1", "device_id": "phone"},
                               "m2": {"from": "u2", "conversation_id": "c2", "device_id": null}},
            "last_devices": {"[\"u1\",\"c1\"]": "phone"},
            "pending_messages": {"m2": {"digest": "d2", "text": "hello"}},
            "last_prekey_id": 41,
            "legacy_device_sessions": ["human:u1:c1"],
            "group_sender_keys": [{"type": "x", "v": 1, "alg": "AES-256-GCM", "conversation_id": "g1", "key_id": "gk", "epoch": 2, "raw_key_b64": STANDARD_32}],
        });
        for (key, value) in overrides.as_object().unwrap() {
            state[key] = value.clone();
        }
        serde_json::to_vec(&state).unwrap()
    }

    const STANDARD_32: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    #[test]
    fn the_official_snapshot_is_read_whole() {
        let snapshot = PythonSnapshot::parse(&snapshot(json!({})), "a1").unwrap();
        assert_eq!(*snapshot.signal, b"AGSP");
        assert_eq!(snapshot.history_keys.len(), 1);
        assert_eq!((snapshot.history_keys[0].conversation_id.as_str(), snapshot.history_keys[0].epoch), ("c1", 1));
        assert_eq!((snapshot.group_keys[0].conversation_id.as_str(), snapshot.group_keys[0].epoch), ("g1", 2));
        let m1 = snapshot.receipts.iter().find(|receipt| receipt.message_id == "m1").unwrap();
        assert_eq!(m1.accepted_at_millis, Some(1_700_000_000_500));
        assert_eq!(m1.context, Some(("u1".into(), "c1".into(), Some("phone".into()))));
        let m2 = snapshot.receipts.iter().find(|receipt| receipt.message_id == "m2").unwrap();
        assert_eq!(
            (m2.pending_text.as_deref(), m2.context.clone()),
            (Some("hello"), Some(("u2".into(), "c2".into(), None)))
        );
        let m3 = snapshot.receipts.iter().find(|receipt| receipt.message_id == "m3").unwrap();
        assert_eq!(m3.context, None, "no reply context");
        assert_eq!(snapshot.last_devices, vec![(("u1".into(), "c1".into()), "phone".into())]);
        assert_eq!(snapshot.last_prekey_id, Some(41));
        assert_eq!(snapshot.legacy_device_sessions, vec!["human:u1:c1".to_owned()]);
        // An older agent's bare export is read as the export.
        assert_eq!(*PythonSnapshot::parse(b"\x04\0\0\0AGSP", "a1").unwrap().signal, b"\x04\0\0\0AGSP");
    }

    #[test]
    fn foreign_or_damaged_snapshots_are_refused_precisely() {
        let parse = |overrides: Value| PythonSnapshot::parse(&snapshot(overrides), "a1").err();
        assert_eq!(PythonSnapshot::parse(b"{not json", "a1").err(), Some(SnapshotError::Json));
        assert_eq!(
            parse(json!({"kind": "other"})),
            Some(SnapshotError::Unsupported { kind: Some("other".into()), version: Some(1) })
        );
        assert_eq!(
            parse(json!({"v": 2})),
            Some(SnapshotError::Unsupported { kind: Some(KIND.into()), version: Some(2) })
        );
        assert_eq!(
            parse(json!({"agent_id": "a2"})),
            Some(SnapshotError::OtherAgent { expected: "a1".into(), found: "a2".into() })
        );
        assert_eq!(parse(json!({"signal_b64": "***"})), Some(SnapshotError::Field("signal_b64")));
        let short_key = json!({"c1": {"key_id": "k1", "epoch": 1, "raw_key_b64": "AAAA"}});
        assert_eq!(parse(json!({"history_keys": short_key})), Some(SnapshotError::Field("history_keys")));
        assert_eq!(parse(json!({"history_keys": []})), Some(SnapshotError::Field("history_keys")));
        assert_eq!(parse(json!({"last_prekey_id": 0})), Some(SnapshotError::Field("last_prekey_id")));
        assert_eq!(parse(json!({"last_prekey_id": 2_147_483_648u64})), Some(SnapshotError::Field("last_prekey_id")));
        assert_eq!(parse(json!({"last_devices": {"u1": "phone"}})), Some(SnapshotError::Field("last_devices")));
        assert_eq!(
            parse(json!({"pending_messages": {"m": {"digest": "d"}}})),
            Some(SnapshotError::Field("pending_messages"))
        );
        assert_eq!(
            parse(json!({"group_sender_keys": [{"epoch": 0}]})),
            Some(SnapshotError::Field("group_sender_keys"))
        );
    }
}
