//! The agent's prekey publication: what it publishes so that people can start sessions with it.
//!
//! As the official SDK does: one signed prekey and one Kyber prekey sharing one id, and 50
//! one-time prekeys, ids counting up from a random start below 10^9 and never past 2^31 - 1, all
//! signed by the identity key. The caller must persist the private halves ([`Publication`]
//! holds them) before it sends the public bodies, so that a crash after the request cannot
//! strand a message encrypted to them.

use super::keys::KeyPair;
use super::kyber::KyberKeyPair;
use crate::Rng;
use crate::wire::http::{OneTimePrekey, OneTimePrekeysBody, PrekeyBundleBody};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// One-time prekeys per publication.
pub const ONE_TIME_PREKEYS: usize = 50;
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
        let one_time_ids: Vec<u32> = (0..ONE_TIME_PREKEYS).map(|_| counter.next()).collect::<Result<_, _>>()?;

        let signed_prekey = KeyPair::generate(rng);
        let kyber_prekey = KyberKeyPair::generate(rng);
        let signed_public = signed_prekey.public().serialize();
        let kyber_public = kyber_prekey.public_serialized();
        let bundle = PrekeyBundleBody {
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
        };
        let one_time_prekeys: Vec<(u32, KeyPair)> =
            one_time_ids.into_iter().map(|id| (id, KeyPair::generate(rng))).collect();
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
        assert_eq!(one_time, ((start + 2)..=(start + 51)).collect::<Vec<_>>());
        assert_eq!(ids.last(), start + 51);
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
        let mut ids = PrekeyIds::after(MAX_PREKEY_ID - 10);
        assert_eq!(
            Publication::generate(&identity, 1, &mut ids, &mut rng).unwrap_err(),
            PublicationError::IdsExhausted
        );
        assert_eq!(ids.last(), MAX_PREKEY_ID - 10, "unchanged on error");
        let mut ids = PrekeyIds::after(MAX_PREKEY_ID - 51);
        Publication::generate(&identity, 1, &mut ids, &mut rng).unwrap();
        assert_eq!(ids.last(), MAX_PREKEY_ID);
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
