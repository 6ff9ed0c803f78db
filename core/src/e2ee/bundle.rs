//! The agent's prekey publication: what it publishes so that people can start sessions with it.
//!
//! As the official SDK does: one signed prekey and one Kyber prekey sharing one id, and 50
//! one-time prekeys, ids counting up from a random start below 10^9 and never past 2^31 - 1, all
//! signed by the identity key. One difference: a batch of one-time prekeys starts at a multiple
//! of [`BATCH_ALIGN`] (the ids in between are never used), so that the newest batch can be told
//! from the ids of the keys still held, across restarts, without storing anything more (see
//! [`super::account`] for why the agent needs to know it). The caller must persist the private
//! halves ([`Publication`] holds them) before it sends the public bodies, so that a crash after
//! the request cannot strand a message encrypted to them.

use super::keys::KeyPair;
use super::kyber::KyberKeyPair;
use crate::Rng;
use crate::wire::http::{OneTimePrekey, OneTimePrekeysBody, PrekeyBundleBody};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// One-time prekeys per publication.
pub const ONE_TIME_PREKEYS: usize = 50;
/// A batch of one-time prekeys starts at a multiple of this (which leaves room for a whole
/// batch before the next multiple, so every batch has an aligned block of ids to itself).
pub const BATCH_ALIGN: u32 = 64;
const _: () = assert!(ONE_TIME_PREKEYS as u32 <= BATCH_ALIGN);
/// Prekey ids never go past this.
pub const MAX_PREKEY_ID: u32 = (1 << 31) - 1;
/// Where a fresh agent's ids start (exclusive upper bound of the random start).
pub const START_BELOW: u32 = 1_000_000_000;
/// The features an agent announces.
pub const PROTOCOL_FEATURES: [&str; 1] = ["history-v1"];

/// Why a publication could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublicationError {
    /// The id space is used up; a new identity is needed.
    #[error("prekey id space exhausted")]
    IdsExhausted,
}

/// The next prekey id to hand out (persisted with the agent's state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrekeyIds {
    last: u32,
}

impl PrekeyIds {
    /// A fresh counter starting at a random point below 10^9.
    pub fn random(rng: &mut Rng) -> Self {
        PrekeyIds { last: rng.next_u32() % START_BELOW }
    }

    /// A counter continuing after `last`.
    pub fn after(last: u32) -> Self {
        PrekeyIds { last }
    }

    /// The last id handed out.
    pub fn last(&self) -> u32 {
        self.last
    }

    fn next(&mut self) -> Result<u32, PublicationError> {
        if self.last >= MAX_PREKEY_ID {
            return Err(PublicationError::IdsExhausted);
        }
        self.last += 1;
        Ok(self.last)
    }

    /// Takes `len` ids from the next multiple of [`BATCH_ALIGN`]; returns the first.
    fn batch(&mut self, len: usize) -> Result<u32, PublicationError> {
        let len = u32::try_from(len).map_err(|_| PublicationError::IdsExhausted)?;
        let first = (self.last / BATCH_ALIGN).checked_add(1).and_then(|block| block.checked_mul(BATCH_ALIGN));
        let last = first.and_then(|first| first.checked_add(len.saturating_sub(1)));
        match (first, last) {
            (Some(first), Some(last)) if last <= MAX_PREKEY_ID => {
                self.last = last;
                Ok(first)
            }
            _ => Err(PublicationError::IdsExhausted),
        }
    }
}

/// The first id of the batch one-time prekey `id` belongs to (for batches made here).
pub fn batch_start(id: u32) -> u32 {
    id - id % BATCH_ALIGN
}

/// A registration id as libsignal makes them: 1 to 16380.
pub fn registration_id(rng: &mut Rng) -> u32 {
    rng.next_u32() % 16380 + 1
}

/// A generated publication: private halves to persist, then the two request bodies to send.
#[derive(Debug)]
pub struct Publication {
    /// The signed prekey's (and the Kyber prekey's) id.
    pub signed_prekey_id: u32,
    /// The signed prekey.
    pub signed_prekey: KeyPair,
    /// The Kyber prekey.
    pub kyber_prekey: KyberKeyPair,
    /// The one-time prekeys with their ids.
    pub one_time_prekeys: Vec<(u32, KeyPair)>,
    /// `PUT /agent/prekey-bundle`.
    pub bundle: PrekeyBundleBody,
    /// `POST /agent/one-time-prekeys`.
    pub one_time_body: OneTimePrekeysBody,
}

impl Publication {
    /// Generates a publication for `identity` with `registration_id`, taking ids from `ids`.
    /// On error `ids` is unchanged.
    pub fn generate(
        identity: &KeyPair,
        registration_id: u32,
        ids: &mut PrekeyIds,
        rng: &mut Rng,
    ) -> Result<Self, PublicationError> {
        let mut counter = *ids;
        let signed_prekey_id = counter.next()?;
        let first = counter.batch(ONE_TIME_PREKEYS)?;

        let signed_prekey = KeyPair::generate(rng);
        let kyber_prekey = KyberKeyPair::generate(rng);
        let bundle = bundle_body(identity, registration_id, signed_prekey_id, &signed_prekey, &kyber_prekey, rng);
        let one_time_prekeys: Vec<(u32, KeyPair)> =
            (first..).take(ONE_TIME_PREKEYS).map(|id| (id, KeyPair::generate(rng))).collect();
        let one_time_body = OneTimePrekeysBody {
            one_time_prekeys: one_time_prekeys
                .iter()
                .map(|(id, pair)| OneTimePrekey {
                    prekey_id: *id,
                    public_key: STANDARD.encode(pair.public().serialize()),
                })
                .collect(),
        };
        *ids = counter;
        Ok(Publication { signed_prekey_id, signed_prekey, kyber_prekey, one_time_prekeys, bundle, one_time_body })
    }
}

/// The `PUT /agent/prekey-bundle` body for a signed prekey and a Kyber prekey under
/// `signed_prekey_id`, both signed by `identity` (freshly: XEdDSA signatures are randomised, and
/// any valid one will do).
pub fn bundle_body(
    identity: &KeyPair,
    registration_id: u32,
    signed_prekey_id: u32,
    signed_prekey: &KeyPair,
    kyber_prekey: &KyberKeyPair,
    rng: &mut Rng,
) -> PrekeyBundleBody {
    let signed_public = signed_prekey.public().serialize();
    let kyber_public = kyber_prekey.public_serialized();
    PrekeyBundleBody {
        registration_id,
        device_id: 1,
        identity_key: STANDARD.encode(identity.public().serialize()),
        signed_prekey_id,
        signed_prekey_public: STANDARD.encode(signed_public),
        signed_prekey_signature: STANDARD.encode(identity.sign(&signed_public, rng)),
        kyber_prekey_id: signed_prekey_id,
        kyber_prekey_public: STANDARD.encode(&kyber_public),
        kyber_prekey_signature: STANDARD.encode(identity.sign(&kyber_public, rng)),
        protocol_features: PROTOCOL_FEATURES.iter().map(|f| (*f).to_owned()).collect(),
    }
}

/// The verification code people compare: SHA-256 of the serialized identity key, upper-case hex
/// in groups of four separated by spaces.
pub fn verification_code(identity_key: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    let hex: String = Sha256::digest(identity_key).iter().map(|byte| format!("{byte:02X}")).collect();
    hex.as_bytes().chunks(4).map(|chunk| String::from_utf8_lossy(chunk).into_owned()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2ee::xeddsa;
    use rand::SeedableRng;

    #[test]
    fn publications_follow_the_official_policy() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let identity = KeyPair::generate(&mut rng);
        let mut ids = PrekeyIds::random(&mut rng);
        let start = ids.last();
        assert!(start < START_BELOW);
        let publication = Publication::generate(&identity, registration_id(&mut rng), &mut ids, &mut rng).unwrap();
        assert_eq!(publication.signed_prekey_id, start + 1);
        assert_eq!(publication.bundle.kyber_prekey_id, publication.signed_prekey_id);
        let one_time: Vec<u32> = publication.one_time_body.one_time_prekeys.iter().map(|k| k.prekey_id).collect();
        // The batch starts at the next multiple of 64 after the signed prekey's id.
        let first = one_time[0];
        assert_eq!(first % BATCH_ALIGN, 0);
        assert!(first > start + 1 && first <= start + 1 + BATCH_ALIGN, "{first} after {start}");
        assert_eq!(one_time, (first..first + 50).collect::<Vec<_>>());
        assert!(one_time.iter().all(|id| batch_start(*id) == first));
        assert_eq!(ids.last(), first + 49);
        let private: Vec<u32> = publication.one_time_prekeys.iter().map(|(id, _)| *id).collect();
        assert_eq!(private, one_time);
        // The next publication's batch has a block of its own.
        let next = Publication::generate(&identity, 1, &mut ids, &mut rng).unwrap();
        assert_eq!(next.signed_prekey_id, first + 50);
        assert_eq!(next.one_time_prekeys[0].0, first + BATCH_ALIGN);
        assert!((1..=16380).contains(&publication.bundle.registration_id));
        assert_eq!(publication.bundle.protocol_features, ["history-v1"]);
        let decode = |text: &str| STANDARD.decode(text).unwrap();
        let signed = decode(&publication.bundle.signed_prekey_public);
        let kyber = decode(&publication.bundle.kyber_prekey_public);
        assert_eq!((signed.len(), kyber.len()), (33, 1569));
        let u = identity.public().u_bytes().to_owned();
        assert!(xeddsa::verify(&u, &signed, &decode(&publication.bundle.signed_prekey_signature)));
        assert!(xeddsa::verify(&u, &kyber, &decode(&publication.bundle.kyber_prekey_signature)));
    }

    #[test]
    fn ids_never_pass_the_limit() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let identity = KeyPair::generate(&mut rng);
        for last in [MAX_PREKEY_ID - 10, MAX_PREKEY_ID - 64, MAX_PREKEY_ID] {
            let mut ids = PrekeyIds::after(last);
            assert_eq!(
                Publication::generate(&identity, 1, &mut ids, &mut rng).unwrap_err(),
                PublicationError::IdsExhausted
            );
            assert_eq!(ids.last(), last, "unchanged on error");
        }
        // The last whole block: 2^31 - 64 up to 2^31 - 15.
        let mut ids = PrekeyIds::after(MAX_PREKEY_ID - 65);
        let publication = Publication::generate(&identity, 1, &mut ids, &mut rng).unwrap();
        assert_eq!(publication.one_time_prekeys[0].0, MAX_PREKEY_ID - 63);
        assert_eq!(ids.last(), MAX_PREKEY_ID - 14);
    }

    #[test]
    fn verification_codes_are_grouped_hex() {
        let code = verification_code(&[0x05; 33]);
        assert_eq!(code.len(), 64 + 15);
        assert!(
            code.split(' ').all(
                |group| group.len() == 4 && group.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
            )
        );
    }
}
