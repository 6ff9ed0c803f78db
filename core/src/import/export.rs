//! The official runtime's exported state (`signal_store_export`), split into its parts without
//! interpreting them.
//!
//! The layout was worked out by experiment (exports after known operations, compared); every
//! integer is little-endian `u32` and every byte string a `u32` length then the bytes:
//!
//! | part | layout |
//! | --- | --- |
//! | header | bytes `"AGSP"`, `u32` format version (1) |
//! | identity | bytes: libsignal's `IdentityKeyPairStructure`; `u32` registration id |
//! | trusted identities | `u32` count, then per peer: bytes name, `u32` device id, bytes identity key (33) |
//! | one-time prekeys | `u32` count, then per key: `u32` id, bytes `PreKeyRecordStructure` |
//! | signed prekeys | `u32` count, then per key: `u32` id, bytes `SignedPreKeyRecordStructure` |
//! | Kyber prekeys | `u32` count, then per key: `u32` id, bytes `SignedPreKeyRecordStructure` (libsignal's Kyber record) |
//! | used Kyber prekeys | `u32` count, then per entry: `u32` Kyber id, `u32` signed prekey id, `u32` n, n × bytes base key (33) |
//! | sessions | `u32` count, then per peer: bytes name, `u32` device id, bytes `RecordStructure` |
//!
//! Nothing may follow the sessions. The records themselves are libsignal's protobuf messages
//! (`storage.proto`), read by [`super::signal`].

/// The container's magic bytes.
pub const MAGIC: &[u8] = b"AGSP";
/// The only container version seen (the official SDK 0.1.0a8's runtime).
pub const VERSION: u32 = 1;
/// The most entries of any one part read: far beyond what an agent holds (the runtime keeps
/// every prekey it made, 50 per publication), and small enough that a hostile count cannot make
/// the reader allocate without bound (entries are read one by one from the bytes there are).
pub const MAX_ENTRIES: u32 = 1_000_000;

/// Why bytes are not a runtime export.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// They do not start with [`MAGIC`].
    #[error("not an export of the official runtime (no AGSP header)")]
    Magic,
    /// A container version other than [`VERSION`].
    #[error("unsupported export version {0}")]
    Version(u32),
    /// They end inside the named part.
    #[error("the export ends inside its {0}")]
    Truncated(&'static str),
    /// The named part claims more entries than [`MAX_ENTRIES`].
    #[error("the export's {part} claim {count} entries")]
    TooMany {
        /// Which part.
        part: &'static str,
        /// How many it claims.
        count: u32,
    },
    /// Bytes follow the last part.
    #[error("{0} bytes follow the export's last part")]
    Trailing(usize),
}

/// A peer's identity key, as the runtime trusts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIdentity {
    /// The runtime's name for the peer (`human:{user}:{conversation}[:device:{device}]`).
    pub name: String,
    /// libsignal's device id (always 1 with the official SDK).
    pub device_id: u32,
    /// The serialized identity key.
    pub key: Vec<u8>,
}

/// A record stored by id (a prekey).
#[derive(Clone, PartialEq, Eq)]
pub struct IdRecord {
    /// The id the runtime files it under.
    pub id: u32,
    /// libsignal's protobuf record (holds a private key).
    pub record: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for IdRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdRecord").field("id", &self.id).field("len", &self.record.len()).finish()
    }
}

/// A Kyber prekey's recorded uses: the base keys of the sessions it started, with the signed
/// prekey each used (libsignal refuses a second session from the same pair and base key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KyberUse {
    /// The Kyber prekey.
    pub kyber_prekey_id: u32,
    /// The signed prekey used with it.
    pub signed_prekey_id: u32,
    /// The initiators' base keys.
    pub base_keys: Vec<Vec<u8>>,
}

/// A peer's session record.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionEntry {
    /// The runtime's name for the peer.
    pub name: String,
    /// libsignal's device id.
    pub device_id: u32,
    /// libsignal's `RecordStructure` (holds the session's secrets).
    pub record: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SessionEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEntry").field("name", &self.name).field("len", &self.record.len()).finish()
    }
}

/// An export, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeExport {
    /// libsignal's `IdentityKeyPairStructure`.
    pub identity: IdRecord,
    /// The registration id.
    pub registration_id: u32,
    /// Peers' identity keys.
    pub trusted: Vec<TrustedIdentity>,
    /// One-time prekeys.
    pub one_time_prekeys: Vec<IdRecord>,
    /// Signed prekeys.
    pub signed_prekeys: Vec<IdRecord>,
    /// Kyber prekeys.
    pub kyber_prekeys: Vec<IdRecord>,
    /// Kyber prekeys' recorded uses.
    pub kyber_uses: Vec<KyberUse>,
    /// Session records.
    pub sessions: Vec<SessionEntry>,
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, part: &'static str) -> Result<&'a [u8], ExportError> {
        if self.bytes.len() < len {
            return Err(ExportError::Truncated(part));
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }

    fn u32(&mut self, part: &'static str) -> Result<u32, ExportError> {
        let bytes = self.take(4, part)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn bytes(&mut self, part: &'static str) -> Result<&'a [u8], ExportError> {
        let len = self.u32(part)?;
        self.take(len as usize, part)
    }

    fn string(&mut self, part: &'static str) -> Result<String, ExportError> {
        // Names are the SDK's own ASCII; anything else is kept, lossily, to be refused later.
        Ok(String::from_utf8_lossy(self.bytes(part)?).into_owned())
    }

    fn count(&mut self, part: &'static str) -> Result<u32, ExportError> {
        let count = self.u32(part)?;
        if count > MAX_ENTRIES {
            return Err(ExportError::TooMany { part, count });
        }
        Ok(count)
    }

    fn id_records(&mut self, part: &'static str) -> Result<Vec<IdRecord>, ExportError> {
        let count = self.count(part)?;
        let mut records = Vec::new();
        for _ in 0..count {
            let id = self.u32(part)?;
            records.push(IdRecord { id, record: zeroize::Zeroizing::new(self.bytes(part)?.to_vec()) });
        }
        Ok(records)
    }
}

impl RuntimeExport {
    /// Splits `bytes` (what `signal_store_export` returned) into its parts.
    pub fn parse(bytes: &[u8]) -> Result<RuntimeExport, ExportError> {
        let mut reader = Reader { bytes };
        if reader.bytes("header").map_err(|_| ExportError::Magic)? != MAGIC {
            return Err(ExportError::Magic);
        }
        let version = reader.u32("header")?;
        if version != VERSION {
            return Err(ExportError::Version(version));
        }
        let identity = IdRecord { id: 0, record: zeroize::Zeroizing::new(reader.bytes("identity")?.to_vec()) };
        let registration_id = reader.u32("identity")?;
        let mut trusted = Vec::new();
        for _ in 0..reader.count("trusted identities")? {
            let name = reader.string("trusted identities")?;
            let device_id = reader.u32("trusted identities")?;
            trusted.push(TrustedIdentity { name, device_id, key: reader.bytes("trusted identities")?.to_vec() });
        }
        let one_time_prekeys = reader.id_records("one-time prekeys")?;
        let signed_prekeys = reader.id_records("signed prekeys")?;
        let kyber_prekeys = reader.id_records("Kyber prekeys")?;
        let mut kyber_uses = Vec::new();
        for _ in 0..reader.count("used Kyber prekeys")? {
            let kyber_prekey_id = reader.u32("used Kyber prekeys")?;
            let signed_prekey_id = reader.u32("used Kyber prekeys")?;
            let mut base_keys = Vec::new();
            for _ in 0..reader.count("used Kyber prekeys")? {
                base_keys.push(reader.bytes("used Kyber prekeys")?.to_vec());
            }
            kyber_uses.push(KyberUse { kyber_prekey_id, signed_prekey_id, base_keys });
        }
        let mut sessions = Vec::new();
        for _ in 0..reader.count("sessions")? {
            let name = reader.string("sessions")?;
            let device_id = reader.u32("sessions")?;
            sessions.push(SessionEntry {
                name,
                device_id,
                record: zeroize::Zeroizing::new(reader.bytes("sessions")?.to_vec()),
            });
        }
        if !reader.bytes.is_empty() {
            return Err(ExportError::Trailing(reader.bytes.len()));
        }
        Ok(RuntimeExport {
            identity,
            registration_id,
            trusted,
            one_time_prekeys,
            signed_prekeys,
            kyber_prekeys,
            kyber_uses,
            sessions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }

    /// An export holding one of everything, built by the layout in the module docs.
    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        put(&mut out, MAGIC);
        out.extend_from_slice(&1u32.to_le_bytes());
        put(&mut out, b"identity");
        out.extend_from_slice(&175u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        put(&mut out, b"human:u:c");
        out.extend_from_slice(&1u32.to_le_bytes());
        put(&mut out, &[5; 33]);
        for id in [1001u32, 2002, 3003] {
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
            put(&mut out, b"record");
        }
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&3003u32.to_le_bytes());
        out.extend_from_slice(&2002u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        put(&mut out, &[7; 33]);
        out.extend_from_slice(&1u32.to_le_bytes());
        put(&mut out, b"human:u:c");
        out.extend_from_slice(&1u32.to_le_bytes());
        put(&mut out, b"session");
        out
    }

    #[test]
    fn every_part_is_read() {
        let export = RuntimeExport::parse(&sample()).unwrap();
        assert_eq!(*export.identity.record, b"identity");
        assert_eq!(export.registration_id, 175);
        assert_eq!(export.trusted, vec![TrustedIdentity { name: "human:u:c".into(), device_id: 1, key: vec![5; 33] }]);
        assert_eq!(export.one_time_prekeys[0].id, 1001);
        assert_eq!(export.signed_prekeys[0].id, 2002);
        assert_eq!(export.kyber_prekeys[0].id, 3003);
        assert_eq!(
            export.kyber_uses,
            vec![KyberUse { kyber_prekey_id: 3003, signed_prekey_id: 2002, base_keys: vec![vec![7; 33]] }]
        );
        assert_eq!(export.sessions[0].name, "human:u:c");
        assert_eq!(*export.sessions[0].record, b"session");
    }

    #[test]
    fn damaged_exports_are_refused_precisely() {
        let sample = sample();
        for cut in 0..sample.len() {
            assert!(RuntimeExport::parse(&sample[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = sample.clone();
        trailing.push(0);
        assert_eq!(RuntimeExport::parse(&trailing), Err(ExportError::Trailing(1)));
        let mut magic = sample.clone();
        magic[4] = b'X';
        assert_eq!(RuntimeExport::parse(&magic), Err(ExportError::Magic));
        let mut version = sample.clone();
        version[8] = 2;
        assert_eq!(RuntimeExport::parse(&version), Err(ExportError::Version(2)));
        let mut count = sample.clone();
        // The trusted identities' count follows the header (12 bytes), the identity (12) and
        // the registration id (4).
        count[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            RuntimeExport::parse(&count),
            Err(ExportError::TooMany { part: "trusted identities", count: u32::MAX })
        );
        assert_eq!(RuntimeExport::parse(&sample[..40]), Err(ExportError::Truncated("trusted identities")));
    }
}
