//! One party's end-to-end encryption state: its identity, its private prekeys and its sessions
//! with every peer, and the persistence changes each operation produces.
//!
//! Every operation returns the [`E2eeChanges`] to commit, and changes nothing in memory when it
//! fails.
//!
//! # The prekey lifecycle
//!
//! **What is made, and when.** [`Account::publish`] makes a full publication, as the official
//! SDK's: a new signed prekey and Kyber prekey (one id) and a batch of
//! [`ONE_TIME_PREKEYS`] (50) one-time prekeys. [`Account::republish_bundle`] makes nothing: it
//! signs the newest signed and Kyber prekeys again for a `PUT` of the bundle alone. The agent
//! ([`crate::agent`]) puts its bundle at every start but makes a batch only when one is needed:
//! - at its first start, and at a start after a batch the relay never confirmed taking (the
//!   agent stopped in between: the keys may never have reached it);
//! - when people have used [`REPLENISH_AFTER`] (25) keys of the *newest* batch
//!   ([`OneTimeStock::newest_batch_left`]; batches are told apart by their ids, see
//!   [`super::bundle`]);
//! - when the last batch the relay took is older than [`REFILL_AFTER`] (7 days), at a start or
//!   while running: a relay's pool also drains through bundles fetched and never used, which
//!   the agent cannot see, and this bounds how long that can last.
//!
//! So restarting makes nothing new (it used to make 50 keys each time).
//!
//! **What is kept.** Every one-time prekey until a message uses it. Whether a relay appends
//! posted keys to those it holds or replaces them cannot be observed (PROTOCOL.md), and under
//! an appending relay any key ever posted and not yet handed out may still be, at any time;
//! the official runtime never forgets one either. Signed and Kyber prekeys of the last
//! [`KEPT_PUBLICATIONS`] full publications are kept, so messages built from a bundle fetched
//! just before a new one still open (a start that only puts the bundle does not rotate them).
//!
//! **What bounds the total.** Making fewer, not forgetting: the keys held are those made minus
//! those used, and a batch is made only as above. Counting uses of the newest batch only is
//! what makes this hold under both kinds of relay:
//! - a relay that appends and hands out the oldest first (the development relay,
//!   `relay/README.md`) hands out the newest batch's keys only once every older key is gone,
//!   so a batch is made only when the relay is down to 25 keys: it holds 25 to 75 (fewer when
//!   bundles were fetched and never used), the agent the same plus those fetched and never
//!   used, and refills add at most 50 per [`REFILL_AFTER`] of idleness;
//! - a relay that replaces its keys with each batch holds the newest batch only, which is all
//!   that people's sessions draw on; the agent also keeps the batches that were replaced (it
//!   cannot tell them apart from an appending relay's), 25 more keys per 25 sessions.
//!
//! [`MAX_ONE_TIME_PREKEYS`] (10,000 keys, about 320 KB of private keys) is the last resort:
//! beyond it the oldest are forgotten, and an error is logged. In normal operation it is not
//! reached: under the development relay it would take four years without a single session
//! (200 refills), or 10,000 bundles fetched and never used; under a replacing relay 10,000
//! sessions, and there the oldest keys belong to batches replaced long ago, which that relay no
//! longer hands out. The development relay keeps at most half as many per agent, oldest first,
//! so even then nothing it can still hand out is forgotten.
//!
//! # Memory per session
//!
//! Every session is held in memory while the agent runs, as the official runtime holds its own:
//! its decoded [`SessionRecord`] here, its stored bytes in the agent's snapshot
//! ([`E2eeSnapshot::sessions`], what the store loaded and what each change puts), one index entry
//! per ratchet state it holds (the base key, 33 bytes, and the session's name) and its name twice
//! more for the per-person recency (the `recency` module). Each is bounded by the record's own
//! structural caps (at most [`super::session::MAX_PREVIOUS_SESSIONS`] previous states, each with
//! at most [`super::ratchet::MAX_RECEIVER_CHAINS`] chains of
//! [`super::ratchet::MAX_SKIPPED_KEYS`] skipped keys; [`super::record::MAX_RECORD_LEN`] bytes
//! stored), which only a peer that skips thousands of messages or restarts its session dozens
//! of times approaches. A session in ordinary use (one ratchet state, a few chains, no skipped
//! keys) is a few kilobytes of record, held twice (decoded and stored), so a thousand sessions
//! are a few megabytes; `BENCHMARKS.md` ("Flat costs") has the measured figure. The number of
//! sessions is bounded per person ([`MAX_SESSIONS_PER_PERSON`]), not overall: an agent serving
//! more people holds more sessions.
//!
//! Nothing in a message's handling walks every session: a decryption looks its session up by
//! name, and the per-person cap reads that person's sessions only.
//!
//! [`REPLENISH_AFTER`]: crate::agent::REPLENISH_AFTER
//! [`REFILL_AFTER`]: crate::agent::REFILL_AFTER

use super::bundle::{ONE_TIME_PREKEYS, PrekeyIds, Publication, PublicationError, batch_start, registration_id};
use super::keys::{KeyPair, PublicKey};
use super::kyber::KyberKeyPair;
use super::message::Framed;
use super::pqxdh::{LocalIdentity, PeerBundle, SetupError};
use super::recency::Recency;
use super::session::{DecryptError, EncryptError, PrekeySource, SessionRecord};
use crate::Rng;
use crate::store::{E2eeChanges, E2eeSnapshot, PrekeyKind, SecretBytes, StoredIdentity, StoredPrekey};
use crate::wire::http::{OneTimePrekeysBody, PrekeyBundleBody};
use std::collections::{BTreeMap, HashMap};
use zeroize::Zeroizing;

/// Signed and Kyber prekeys of this many full publications are kept.
pub const KEPT_PUBLICATIONS: usize = 3;
/// The most unused one-time prekeys kept, as a last resort that normal operation does not reach
/// (see the [module docs](self)); beyond it the oldest are forgotten and an error is logged.
pub const MAX_ONE_TIME_PREKEYS: usize = 10_000;

/// The unused one-time prekeys an account holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneTimeStock {
    /// Of every batch.
    pub held: usize,
    /// Of the newest batch (the one made last), which is what a relay that replaces its keys
    /// still holds, and what a relay that appends hands out last.
    pub newest_batch_left: usize,
}

/// Session names kept per person (one per conversation and device); past it, the person's least
/// recently used session goes, so a flood of forged conversations or devices under one person
/// cannot grow the agent's state without bound.
pub const MAX_SESSIONS_PER_PERSON: usize = 256;

/// The person a session name (`human:{user}:{conversation}[:device:{device}]`) belongs to, read
/// from the right: exact when conversation and device ids hold no colon (the relay's are UUIDs),
/// whatever the person's id holds. Every name has one owner, so the cap holds for everyone.
fn session_owner(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("human:")?;
    let rest = rest.rsplit_once(":device:").map_or(rest, |(before, _)| before);
    rest.rsplit_once(':').map(|(user, _)| user)
}

/// Why stored keys could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// A stored key has the wrong length.
    #[error("stored {kind} key {id} is invalid")]
    InvalidKey {
        /// Which kind.
        kind: &'static str,
        /// Its id (0 for the identity).
        id: u32,
    },
    /// A stored session record does not read.
    #[error("stored session with {peer} is invalid: {error}")]
    InvalidSession {
        /// The peer name.
        peer: String,
        /// Why.
        error: super::record::RecordError,
    },
}

pub use super::pq::PqFactory;

/// One party's keys and sessions. See the [module docs](self).
pub struct Account {
    identity: LocalIdentity,
    ids: PrekeyIds,
    signed: BTreeMap<u32, KeyPair>,
    kyber: BTreeMap<u32, KyberKeyPair>,
    one_time: BTreeMap<u32, KeyPair>,
    /// The first id of the newest batch of one-time prekeys.
    newest_batch: Option<u32>,
    /// [`MAX_ONE_TIME_PREKEYS`], lowered by tests that reach it.
    max_one_time: usize,
    sessions: HashMap<String, SessionRecord>,
    /// Which session name each base key (a PreKey message's session) was set up under, so the
    /// same first message arriving under another name cannot start a second session.
    base_keys: HashMap<PublicKey, String>,
    /// Session names by person, least recently used first (see [`super::recency`]).
    recency: Recency,
    /// Session names kept per person ([`MAX_SESSIONS_PER_PERSON`]; lower in tests).
    session_cap: usize,
    pq: PqFactory,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("identity_key", &self.identity.key_pair.public())
            .field("signed_prekeys", &self.signed.len())
            .field("one_time_prekeys", &self.one_time.len())
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl PrekeySource for Account {
    fn identity(&self) -> &LocalIdentity {
        &self.identity
    }
    fn signed_prekey(&self, id: u32) -> Option<&KeyPair> {
        self.signed.get(&id)
    }
    fn kyber_prekey(&self, id: u32) -> Option<&KyberKeyPair> {
        self.kyber.get(&id)
    }
    fn one_time_prekey(&self, id: u32) -> Option<&KeyPair> {
        self.one_time.get(&id)
    }
}

fn key32(bytes: &SecretBytes, kind: &'static str, id: u32) -> Result<[u8; 32], AccountError> {
    bytes.expose().try_into().map_err(|_| AccountError::InvalidKey { kind, id })
}

impl Account {
    /// A new account: a fresh identity, no prekeys yet. The changes store it.
    pub fn new(pq: PqFactory, rng: &mut Rng) -> (Account, E2eeChanges) {
        Account::load_or_create(&E2eeSnapshot::default(), pq, rng)
            .expect("an empty snapshot holds nothing that could fail to load")
    }

    /// The account stored in `snapshot`, or a new identity (with the changes that store it)
    /// when there is none yet.
    pub fn load_or_create(
        snapshot: &E2eeSnapshot,
        pq: PqFactory,
        rng: &mut Rng,
    ) -> Result<(Account, E2eeChanges), AccountError> {
        let mut changes = E2eeChanges::default();
        let identity = match &snapshot.identity {
            Some(stored) => LocalIdentity {
                key_pair: KeyPair::from_private_bytes(key32(&stored.private_key, "identity", 0)?),
                registration_id: stored.registration_id,
            },
            None => {
                let identity =
                    LocalIdentity { key_pair: KeyPair::generate(rng), registration_id: registration_id(rng) };
                changes.identity = Some(StoredIdentity {
                    private_key: SecretBytes::new(identity.key_pair.private_bytes().to_vec()),
                    registration_id: identity.registration_id,
                });
                identity
            }
        };
        let ids = match snapshot.prekey_counter {
            Some(last) => PrekeyIds::after(last),
            None => {
                let ids = PrekeyIds::random(rng);
                changes.prekey_counter = Some(ids.last());
                ids
            }
        };
        let mut account = Account {
            identity,
            ids,
            signed: BTreeMap::new(),
            kyber: BTreeMap::new(),
            one_time: BTreeMap::new(),
            newest_batch: None,
            max_one_time: MAX_ONE_TIME_PREKEYS,
            sessions: HashMap::new(),
            base_keys: HashMap::new(),
            recency: Recency::new(session_owner),
            session_cap: MAX_SESSIONS_PER_PERSON,
            pq,
        };
        for ((kind, id), bytes) in &snapshot.prekeys {
            match kind {
                PrekeyKind::OneTime => {
                    account.one_time.insert(*id, KeyPair::from_private_bytes(key32(bytes, "one-time prekey", *id)?));
                }
                PrekeyKind::Signed => {
                    account.signed.insert(*id, KeyPair::from_private_bytes(key32(bytes, "signed prekey", *id)?));
                }
                PrekeyKind::Kyber => {
                    let pair = KyberKeyPair::from_private_bytes(bytes.expose())
                        .map_err(|_| AccountError::InvalidKey { kind: "Kyber prekey", id: *id })?;
                    account.kyber.insert(*id, pair);
                }
            }
        }
        // Ids only grow and each batch has an aligned block of its own, so the highest id held
        // names the newest batch (when all of it was used, an older one: the agent will have
        // made a new batch long before that).
        account.newest_batch = account.one_time.last_key_value().map(|(id, _)| batch_start(*id));
        for (peer, bytes) in &snapshot.sessions {
            let record = SessionRecord::from_bytes(bytes.expose())
                .map_err(|error| AccountError::InvalidSession { peer: peer.clone(), error })?;
            account.index_session(peer, &record);
            account.sessions.insert(peer.clone(), record);
        }
        let mut names: Vec<&String> = account.sessions.keys().collect();
        names.sort();
        let mut recency = Recency::new(session_owner);
        for name in names {
            recency.touch(name);
        }
        account.recency = recency;
        Ok((account, changes))
    }

    /// The same account keeping at most `cap` sessions per person (tests reach the cap fast).
    #[cfg(test)]
    pub(crate) fn with_session_cap(mut self, cap: usize) -> Self {
        self.session_cap = cap;
        self
    }

    fn index_session(&mut self, peer: &str, record: &SessionRecord) {
        for state in record.current.iter().chain(record.previous.iter()) {
            self.base_keys.insert(*state.base_key(), peer.to_owned());
        }
    }

    /// [`Self::index_session`] for the record held under `peer`, reading its base keys in place
    /// rather than copying the record (sessions, SPQR states) to lend it.
    fn index_base_keys(&mut self, peer: &str) {
        let Some(record) = self.sessions.get(peer) else { return };
        let unknown: Vec<_> = record
            .current
            .iter()
            .chain(record.previous.iter())
            .map(|state| *state.base_key())
            .filter(|key| self.base_keys.get(key).is_none_or(|name| name != peer))
            .collect();
        for key in unknown {
            self.base_keys.insert(key, peer.to_owned());
        }
    }

    /// The identity key of the current session with `peer` (after a decryption, the session that
    /// decrypted).
    pub fn remote_identity(&self, peer: &str) -> Option<PublicKey> {
        self.sessions.get(peer)?.current().map(|state| *state.remote_identity())
    }

    /// Forgets what an operation did in memory whose `changes` will not be committed: every
    /// session record and one-time prekey they touch goes back to its state in `committed`.
    pub fn discard(&mut self, changes: &E2eeChanges, committed: &E2eeSnapshot) -> Result<(), AccountError> {
        let touched = changes.put_sessions.iter().map(|(peer, _)| peer).chain(changes.remove_sessions.iter());
        for peer in touched {
            self.base_keys.retain(|_, name| name != peer);
            match committed.sessions.get(peer) {
                Some(bytes) => {
                    let record = SessionRecord::from_bytes(bytes.expose())
                        .map_err(|error| AccountError::InvalidSession { peer: peer.clone(), error })?;
                    self.index_session(peer, &record);
                    self.sessions.insert(peer.clone(), record);
                    self.recency.restore(peer);
                }
                None => {
                    self.sessions.remove(peer);
                    self.recency.remove(peer);
                }
            }
        }
        for (kind, id) in &changes.remove_prekeys {
            if *kind == PrekeyKind::OneTime
                && let Some(bytes) = committed.prekeys.get(&(PrekeyKind::OneTime, *id))
            {
                self.one_time.insert(*id, KeyPair::from_private_bytes(key32(bytes, "one-time prekey", *id)?));
            }
        }
        Ok(())
    }

    /// The identity key (what bundles carry and verification codes hash).
    pub fn identity_key(&self) -> PublicKey {
        self.identity.key_pair.public()
    }

    /// Whether a session with `peer` exists.
    pub fn has_session(&self, peer: &str) -> bool {
        self.sessions.get(peer).is_some_and(|record| record.current().is_some())
    }

    /// The session record with `peer`, if any.
    pub fn session(&self, peer: &str) -> Option<&SessionRecord> {
        self.sessions.get(peer)
    }

    /// The unused one-time prekeys held.
    pub fn one_time_stock(&self) -> OneTimeStock {
        let newest_batch_left = self.newest_batch.map_or(0, |first| {
            let end = first.saturating_add(ONE_TIME_PREKEYS as u32);
            self.one_time.range(first..end).count()
        });
        OneTimeStock { held: self.one_time.len(), newest_batch_left }
    }

    /// Makes a full publication (a new signed and Kyber prekey and a batch of one-time
    /// prekeys): the changes to commit first (private halves), then the two request bodies to
    /// send.
    pub fn publish(
        &mut self,
        rng: &mut Rng,
    ) -> Result<(E2eeChanges, PrekeyBundleBody, OneTimePrekeysBody), PublicationError> {
        let mut ids = self.ids;
        let publication = Publication::generate(&self.identity.key_pair, self.identity.registration_id, &mut ids, rng)?;
        let Publication { signed_prekey_id, signed_prekey, kyber_prekey, one_time_prekeys, bundle, one_time_body } =
            publication;
        let mut changes = E2eeChanges { prekey_counter: Some(ids.last()), ..Default::default() };
        changes.put_prekeys.push(StoredPrekey {
            kind: PrekeyKind::Signed,
            id: signed_prekey_id,
            private_key: SecretBytes::new(signed_prekey.private_bytes().to_vec()),
        });
        changes.put_prekeys.push(StoredPrekey {
            kind: PrekeyKind::Kyber,
            id: signed_prekey_id,
            private_key: SecretBytes::new(kyber_prekey.private_bytes().to_vec()),
        });
        for (id, pair) in &one_time_prekeys {
            changes.put_prekeys.push(StoredPrekey {
                kind: PrekeyKind::OneTime,
                id: *id,
                private_key: SecretBytes::new(pair.private_bytes().to_vec()),
            });
        }
        self.ids = ids;
        self.newest_batch = one_time_prekeys.first().map(|(id, _)| *id).or(self.newest_batch);
        self.signed.insert(signed_prekey_id, signed_prekey);
        self.kyber.insert(signed_prekey_id, kyber_prekey);
        self.one_time.extend(one_time_prekeys);
        // Ids only grow, so the smallest are the oldest.
        while self.signed.len() > KEPT_PUBLICATIONS {
            if let Some((id, _)) = self.signed.pop_first() {
                self.kyber.remove(&id);
                changes.remove_prekeys.push((PrekeyKind::Signed, id));
                changes.remove_prekeys.push((PrekeyKind::Kyber, id));
            }
        }
        let mut forgotten = 0usize;
        while self.one_time.len() > self.max_one_time {
            if let Some((id, _)) = self.one_time.pop_first() {
                changes.remove_prekeys.push((PrekeyKind::OneTime, id));
                forgotten += 1;
            }
        }
        if forgotten > 0 {
            // Only reachable far outside normal operation (module docs): say so loudly, since a
            // person handed one of these keys can no longer start a session.
            tracing::error!(
                forgotten,
                held = self.one_time.len(),
                "one-time prekey limit reached: the oldest unused ones were forgotten"
            );
        }
        Ok((changes, bundle, one_time_body))
    }

    /// The bundle again, for a `PUT` alone: the newest signed and Kyber prekeys, signed anew,
    /// and no one-time prekeys (an empty body: nothing to post, nothing to commit). Without a
    /// signed and Kyber prekey to put yet, a full publication ([`Self::publish`]).
    pub fn republish_bundle(
        &mut self,
        rng: &mut Rng,
    ) -> Result<(E2eeChanges, PrekeyBundleBody, OneTimePrekeysBody), PublicationError> {
        let newest =
            self.signed.last_key_value().and_then(|(id, signed)| self.kyber.get(id).map(|kyber| (*id, signed, kyber)));
        let Some((id, signed, kyber)) = newest else {
            return self.publish(rng);
        };
        let bundle =
            super::bundle::bundle_body(&self.identity.key_pair, self.identity.registration_id, id, signed, kyber, rng);
        Ok((E2eeChanges::default(), bundle, OneTimePrekeysBody { one_time_prekeys: Vec::new() }))
    }

    /// Lowers the one-time prekey limit, so that tests can reach it.
    #[cfg(test)]
    pub(crate) fn set_max_one_time_prekeys(&mut self, max: usize) {
        self.max_one_time = max;
    }

    /// Starts a session with `peer` from its bundle (as initiator).
    pub fn start_session(&mut self, peer: &str, bundle: &PeerBundle, rng: &mut Rng) -> Result<E2eeChanges, SetupError> {
        let mut record = self.sessions.get(peer).cloned().unwrap_or_default();
        record.initiate(&self.identity, bundle, self.pq, rng)?;
        self.sessions.insert(peer.to_owned(), record);
        Ok(self.persist_session(peer, None))
    }

    /// Encrypts `plaintext` for `peer`.
    pub fn encrypt(
        &mut self,
        peer: &str,
        plaintext: &[u8],
        rng: &mut Rng,
    ) -> Result<(Vec<u8>, E2eeChanges), EncryptError> {
        // `SessionRecord::encrypt` changes nothing when it fails, so no copy is needed.
        let record = self.sessions.get_mut(peer).ok_or(EncryptError::NoSession)?;
        let framed = record.encrypt(plaintext, rng)?;
        Ok((framed, self.persist_session(peer, None)))
    }

    /// Decrypts a framed ciphertext from the first of `peers` (tried in order) that opens it;
    /// returns the plaintext, the name that worked and the changes. On error nothing changed.
    pub fn decrypt(
        &mut self,
        peers: &[&str],
        framed: &[u8],
        rng: &mut Rng,
    ) -> Result<(Zeroizing<Vec<u8>>, String, E2eeChanges), DecryptError> {
        // A PreKey message whose session we already set up belongs to the name it was set up
        // under, and only there: under another name it would start a second session (and a
        // second delivery) from the same first message.
        let known_name = match Framed::decode(framed) {
            Ok(Framed::PreKey(message)) => self.base_keys.get(&message.base_key).cloned(),
            _ => None,
        };
        let routed;
        let peers: &[&str] = match &known_name {
            Some(name) if peers.contains(&name.as_str()) => {
                routed = [name.as_str()];
                &routed
            }
            Some(name) => {
                tracing::warn!(session = %name, "a session's first message arrived again under another name: refused");
                return Err(DecryptError::ReplayedFirstMessage);
            }
            None => peers,
        };
        let mut first_error = None;
        for peer in peers {
            // Out of the map while it decrypts (the account lends its prekeys meanwhile);
            // `SessionRecord::decrypt` leaves it unchanged on failure, and it goes back either way.
            let mut record = self.sessions.remove(*peer).unwrap_or_default();
            let result = record.decrypt(framed, self, self.pq, rng);
            if !record.is_empty() {
                self.sessions.insert((*peer).to_owned(), record);
            }
            match result {
                Ok(decrypted) => {
                    let mut changes = self.persist_session(peer, decrypted.consumed_one_time_prekey);
                    self.index_base_keys(peer);
                    self.recency.touch(peer);
                    changes.remove_sessions.extend(self.evict_beyond_cap(peer));
                    return Ok((decrypted.plaintext, (*peer).to_owned(), changes));
                }
                // A duplicate is final: trying another name could only start a second session.
                Err(error @ DecryptError::Duplicate { .. }) => return Err(error),
                Err(error) => {
                    tracing::debug!(peer, %error, "decryption under this name failed");
                    first_error.get_or_insert(error);
                }
            }
        }
        Err(first_error.unwrap_or(DecryptError::NoSession))
    }

    /// Drops the least recently used sessions of the person `peer` belongs to beyond
    /// [`MAX_SESSIONS_PER_PERSON`]; returns their names.
    fn evict_beyond_cap(&mut self, peer: &str) -> Vec<String> {
        let evicted = self.recency.beyond_cap(peer, self.session_cap);
        for name in &evicted {
            tracing::info!(session = %name, "a person's least recently used session dropped (too many sessions)");
            self.sessions.remove(name);
            // Rare (a person past the cap): a walk over the base keys is affordable here.
            self.base_keys.retain(|_, owner| owner != name);
        }
        evicted
    }

    /// The changes that store `peer`'s record as it is now, and delete the one-time prekey a
    /// message just consumed.
    fn persist_session(&mut self, peer: &str, consumed: Option<u32>) -> E2eeChanges {
        let mut changes = E2eeChanges::default();
        if let Some(record) = self.sessions.get(peer) {
            // Moved out of its wiping wrapper, not copied: `SecretBytes` wipes it in turn.
            let mut bytes = record.to_bytes();
            changes.put_sessions.push((peer.to_owned(), SecretBytes::new(std::mem::take(&mut *bytes))));
        }
        if let Some(id) = consumed
            && self.one_time.remove(&id).is_some()
        {
            changes.remove_prekeys.push((PrekeyKind::OneTime, id));
        }
        changes
    }
}
