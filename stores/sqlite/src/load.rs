//! Reading the whole state back, checking every value, so a bad row is reported by table and
//! key instead of surfacing later as a wrong key or a vague type error.

use crate::{RowProblem, StoreError};
use pacerelle_core::Timestamp;
use pacerelle_core::store::{
    AgentSnapshot, DeliveryFailure, IdentityKeyBytes, OutboxEntry, PeerId, PrekeyKind, Receipt, ReceiptState,
    SecretBytes, SentFrame, StoredGroupKey, StoredHistoryKey, StoredIdentity, StoredPeerIdentity,
};
use rusqlite::Connection;
use rusqlite::types::ValueRef;

/// Reads the agent's identity alone, checked as [`snapshot`] checks it; `None` before the
/// agent first ran with end-to-end encryption.
pub(crate) fn identity(connection: &Connection) -> Result<Option<StoredIdentity>, StoreError> {
    let mut identity = None;
    each_row(
        connection,
        "identity",
        "SELECT singleton, private_key, registration_id FROM identity",
        |row| key_text(row, 0),
        |row| {
            identity = Some(StoredIdentity {
                private_key: SecretBytes::new(row.blob(1, "private_key")?),
                registration_id: row.u32(2, "registration_id")?,
            });
            Ok(())
        },
    )?;
    Ok(identity)
}

/// Reads everything the store holds.
pub(crate) fn snapshot(connection: &Connection) -> Result<AgentSnapshot, StoreError> {
    let mut snapshot = AgentSnapshot::default();
    each_row(
        connection,
        "receipts",
        "SELECT message_id, digest, sender, conversation_id, from_device_id, pending_text, accepted_at,
                sender_identity
         FROM receipts",
        |row| key_text(row, 0),
        |row| {
            let message_id = row.text(0, "message_id")?;
            let state = match (row.optional_text(5, "pending_text")?, row.optional_millis(6, "accepted_at")?) {
                (Some(text), None) => ReceiptState::Pending { text },
                (None, Some(at)) => ReceiptState::Accepted { at },
                _ => return Err(row.corrupt(RowProblem::ReceiptState)),
            };
            let receipt = Receipt {
                message_id: message_id.clone(),
                digest: row.text(1, "digest")?,
                from: row.text(2, "sender")?,
                conversation_id: row.text(3, "conversation_id")?,
                from_device_id: row.optional_text(4, "from_device_id")?,
                sender_identity: row.optional_identity_key(7, "sender_identity")?,
                state,
            };
            snapshot.receipts.insert(message_id, receipt);
            Ok(())
        },
    )?;
    each_row(
        connection,
        "sent_frames",
        "SELECT message_id, position, frame_id, frame FROM sent_frames ORDER BY message_id, position",
        |row| format!("{} {}", key_text(row, 0), key_text(row, 1)),
        |row| {
            let message_id = row.text(0, "message_id")?;
            let sent = SentFrame { id: row.text(2, "frame_id")?, frame: row.text(3, "frame")? };
            snapshot.sent_frames.entry(message_id).or_default().push(sent);
            Ok(())
        },
    )?;
    each_row(
        connection,
        "outbox",
        "SELECT seq, frame_id, frame FROM outbox ORDER BY seq",
        |row| key_text(row, 0),
        |row| {
            let seq = row.u64(0, "seq")?;
            let sent = SentFrame { id: row.text(1, "frame_id")?, frame: row.text(2, "frame")? };
            snapshot.outbox.insert(seq, OutboxEntry { seq, sent });
            Ok(())
        },
    )?;
    each_row(
        connection,
        "last_devices",
        "SELECT person, conversation_id, device_id FROM last_devices",
        |row| format!("{} in {}", key_text(row, 0), key_text(row, 1)),
        |row| {
            let key = (row.text(0, "person")?, row.text(1, "conversation_id")?);
            snapshot.last_devices.insert(key, row.text(2, "device_id")?);
            Ok(())
        },
    )?;
    each_row(
        connection,
        "delivery_failures",
        "SELECT message_id, digest, sender, conversation_id, attempts, reason, first_at, given_up_at
         FROM delivery_failures",
        |row| key_text(row, 0),
        |row| {
            let failure = DeliveryFailure {
                message_id: row.text(0, "message_id")?,
                digest: row.text(1, "digest")?,
                from: row.text(2, "sender")?,
                conversation_id: row.text(3, "conversation_id")?,
                attempts: row.u32(4, "attempts")?,
                reason: row.text(5, "reason")?,
                first_at: row.millis(6, "first_at")?,
                given_up_at: row.optional_millis(7, "given_up_at")?,
            };
            snapshot.failures.insert(failure.message_id.clone(), failure);
            Ok(())
        },
    )?;
    each_row(
        connection,
        "group_keys",
        "SELECT conversation_id, key_id, epoch, raw_key FROM group_keys",
        |row| format!("{} {} {}", key_text(row, 0), key_text(row, 1), key_text(row, 2)),
        |row| {
            let raw_key = row.blob(3, "raw_key")?;
            if raw_key.len() != 32 {
                return Err(row.corrupt(RowProblem::WrongLength {
                    column: "raw_key",
                    expected: 32,
                    found: raw_key.len(),
                }));
            }
            let key = StoredGroupKey {
                conversation_id: row.text(0, "conversation_id")?,
                key_id: row.text(1, "key_id")?,
                epoch: row.u64(2, "epoch")?,
                raw_key: SecretBytes::new(raw_key),
            };
            snapshot.group_keys.insert(key.id(), key);
            Ok(())
        },
    )?;
    let e2ee = &mut snapshot.e2ee;
    e2ee.identity = identity(connection)?;
    each_row(
        connection,
        "prekey_state",
        "SELECT singleton, prekey_counter, one_time_published_at FROM prekey_state",
        |row| key_text(row, 0),
        |row| {
            e2ee.prekey_counter = row.optional_u32(1, "prekey_counter")?;
            e2ee.one_time_published_at = row.optional_millis(2, "one_time_published_at")?;
            Ok(())
        },
    )?;
    each_row(
        connection,
        "prekeys",
        "SELECT kind, id, private_key FROM prekeys",
        |row| format!("{} {}", key_text(row, 0), key_text(row, 1)),
        |row| {
            let kind =
                PrekeyKind::parse(&row.text(0, "kind")?).ok_or_else(|| row.corrupt(RowProblem::UnknownPrekeyKind))?;
            let id = row.u32(1, "id")?;
            e2ee.prekeys.insert((kind, id), SecretBytes::new(row.blob(2, "private_key")?));
            Ok(())
        },
    )?;
    each_row(
        connection,
        "sessions",
        "SELECT peer, record FROM sessions",
        |row| key_text(row, 0),
        |row| {
            e2ee.sessions.insert(row.text(0, "peer")?, SecretBytes::new(row.blob(1, "record")?));
            Ok(())
        },
    )?;
    each_row(
        connection,
        "history_keys",
        "SELECT conversation_id, key_id, epoch, raw_key FROM history_keys",
        |row| key_text(row, 0),
        |row| {
            let raw_key = row.blob(3, "raw_key")?;
            if raw_key.len() != 32 {
                return Err(row.corrupt(RowProblem::WrongLength {
                    column: "raw_key",
                    expected: 32,
                    found: raw_key.len(),
                }));
            }
            let key = StoredHistoryKey {
                key_id: row.text(1, "key_id")?,
                epoch: row.u64(2, "epoch")?,
                raw_key: SecretBytes::new(raw_key),
            };
            e2ee.history_keys.insert(row.text(0, "conversation_id")?, key);
            Ok(())
        },
    )?;
    each_row(
        connection,
        "peer_identities",
        "SELECT user_id, has_device, device_id, trusted, pending, last_seen FROM peer_identities",
        |row| match row.get_ref(1) {
            Ok(ValueRef::Integer(1)) => format!("{} (device {})", key_text(row, 0), key_text(row, 2)),
            _ => key_text(row, 0),
        },
        |row| {
            let user_id = row.text(0, "user_id")?;
            let device_id = row.text(2, "device_id")?;
            let device_id = match row.integer(1, "has_device")? {
                1 => Some(device_id),
                0 if device_id.is_empty() => None,
                _ => return Err(row.corrupt(RowProblem::PeerDevice)),
            };
            let identity = StoredPeerIdentity {
                trusted: row.identity_key(3, "trusted")?,
                pending: row.optional_identity_key(4, "pending")?,
                last_seen: row.millis(5, "last_seen")?,
            };
            e2ee.peer_identities.insert(PeerId { user_id, device_id }, identity);
            Ok(())
        },
    )?;
    Ok(snapshot)
}

/// Runs `sql` and hands each row to `read`, with `key` naming the row in any error.
fn each_row(
    connection: &Connection,
    table: &'static str,
    sql: &str,
    key: impl Fn(&rusqlite::Row<'_>) -> String,
    mut read: impl FnMut(&Row<'_, '_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut statement = connection.prepare(sql)?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        read(&Row { row, table, key: key(row) })?;
    }
    Ok(())
}

/// A key column as text for an error message, whatever it holds (a key of the wrong type is
/// itself what may be wrong). Blobs are described, never shown.
fn key_text(row: &rusqlite::Row<'_>, index: usize) -> String {
    match row.get_ref(index) {
        Ok(ValueRef::Text(text)) => String::from_utf8_lossy(text).into_owned(),
        Ok(ValueRef::Integer(number)) => number.to_string(),
        Ok(ValueRef::Real(number)) => number.to_string(),
        Ok(ValueRef::Null) => "NULL".to_owned(),
        Ok(ValueRef::Blob(bytes)) => format!("<{} bytes>", bytes.len()),
        Err(_) => "?".to_owned(),
    }
}

fn type_name(value: ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "integer",
        ValueRef::Real(_) => "real",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "blob",
    }
}

/// One row being read, with what names it.
struct Row<'a, 'stmt> {
    row: &'a rusqlite::Row<'stmt>,
    table: &'static str,
    key: String,
}

impl Row<'_, '_> {
    fn corrupt(&self, problem: RowProblem) -> StoreError {
        StoreError::Corrupt { table: self.table, key: self.key.clone(), problem }
    }

    fn value(&self, index: usize) -> Result<ValueRef<'_>, StoreError> {
        Ok(self.row.get_ref(index)?)
    }

    fn wrong_type(&self, column: &'static str, expected: &'static str, found: ValueRef<'_>) -> StoreError {
        self.corrupt(RowProblem::WrongType { column, expected, found: type_name(found) })
    }

    fn optional_text(&self, index: usize, column: &'static str) -> Result<Option<String>, StoreError> {
        match self.value(index)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => Ok(Some(text.to_owned())),
                Err(_) => Err(self.corrupt(RowProblem::NotUtf8 { column })),
            },
            other => Err(self.wrong_type(column, "text", other)),
        }
    }

    fn text(&self, index: usize, column: &'static str) -> Result<String, StoreError> {
        self.optional_text(index, column)?.ok_or_else(|| self.wrong_type(column, "text", ValueRef::Null))
    }

    fn optional_blob(&self, index: usize, column: &'static str) -> Result<Option<&[u8]>, StoreError> {
        match self.value(index)? {
            ValueRef::Null => Ok(None),
            ValueRef::Blob(bytes) => Ok(Some(bytes)),
            other => Err(self.wrong_type(column, "blob", other)),
        }
    }

    fn blob(&self, index: usize, column: &'static str) -> Result<Vec<u8>, StoreError> {
        match self.optional_blob(index, column)? {
            Some(bytes) => Ok(bytes.to_vec()),
            None => Err(self.wrong_type(column, "blob", ValueRef::Null)),
        }
    }

    fn optional_identity_key(
        &self,
        index: usize,
        column: &'static str,
    ) -> Result<Option<IdentityKeyBytes>, StoreError> {
        let Some(bytes) = self.optional_blob(index, column)? else {
            return Ok(None);
        };
        let key = IdentityKeyBytes::try_from(bytes).map_err(|_| {
            self.corrupt(RowProblem::WrongLength {
                column,
                expected: size_of::<IdentityKeyBytes>(),
                found: bytes.len(),
            })
        })?;
        Ok(Some(key))
    }

    fn identity_key(&self, index: usize, column: &'static str) -> Result<IdentityKeyBytes, StoreError> {
        self.optional_identity_key(index, column)?.ok_or_else(|| self.wrong_type(column, "blob", ValueRef::Null))
    }

    fn optional_integer(&self, index: usize, column: &'static str) -> Result<Option<i64>, StoreError> {
        match self.value(index)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(value) => Ok(Some(value)),
            other => Err(self.wrong_type(column, "integer", other)),
        }
    }

    fn integer(&self, index: usize, column: &'static str) -> Result<i64, StoreError> {
        self.optional_integer(index, column)?.ok_or_else(|| self.wrong_type(column, "integer", ValueRef::Null))
    }

    fn optional_u32(&self, index: usize, column: &'static str) -> Result<Option<u32>, StoreError> {
        self.optional_integer(index, column)?
            .map(|value| u32::try_from(value).map_err(|_| self.corrupt(RowProblem::OutOfRange { column, value })))
            .transpose()
    }

    fn u32(&self, index: usize, column: &'static str) -> Result<u32, StoreError> {
        let value = self.integer(index, column)?;
        u32::try_from(value).map_err(|_| self.corrupt(RowProblem::OutOfRange { column, value }))
    }

    fn optional_u64(&self, index: usize, column: &'static str) -> Result<Option<u64>, StoreError> {
        self.optional_integer(index, column)?
            .map(|value| u64::try_from(value).map_err(|_| self.corrupt(RowProblem::OutOfRange { column, value })))
            .transpose()
    }

    fn u64(&self, index: usize, column: &'static str) -> Result<u64, StoreError> {
        let value = self.integer(index, column)?;
        u64::try_from(value).map_err(|_| self.corrupt(RowProblem::OutOfRange { column, value }))
    }

    fn optional_millis(&self, index: usize, column: &'static str) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.optional_u64(index, column)?.map(Timestamp::from_millis))
    }

    fn millis(&self, index: usize, column: &'static str) -> Result<Timestamp, StoreError> {
        Ok(Timestamp::from_millis(self.u64(index, column)?))
    }
}
