//! The symmetric half of the Double Ratchet as libsignal keys it: root-key steps, chain keys,
//! message keys, and the AES-256-CBC that message keys drive.
//!
//! - root step: HKDF-SHA256(salt = root key, ikm = X25519, info `WhisperRatchet`) → new root key
//!   and a chain key;
//! - chain key: message-key seed = HMAC-SHA256(chain key, `0x01`), next = HMAC(chain key, `0x02`);
//! - message keys: HKDF-SHA256(salt = this message's SPQR key, if any; ikm = seed; info
//!   `WhisperMessageKeys`) → 32-byte AES key, 32-byte MAC key, 16-byte IV.

use super::keys::{KeyPair, PublicKey};
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt as _, BlockModeEncrypt as _, KeyIvInit as _};
use hmac::{KeyInit as _, Mac as _};
use zeroize::{Zeroize, Zeroizing};

/// A 32-byte secret that is wiped when dropped.
pub type Secret32 = Zeroizing<[u8; 32]>;

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// HKDF-SHA256 into `out`.
pub(crate) fn hkdf(salt: Option<&[u8]>, ikm: &[u8], info: &[u8], out: &mut [u8]) {
    hkdf::Hkdf::<sha2::Sha256>::new(salt, ikm).expand(info, out).expect("outputs here are at most 96 bytes");
}

/// A chain key and the index of the next message it keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ChainKey {
    pub(crate) key: Secret32,
    pub(crate) index: u32,
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainKey").field("index", &self.index).finish_non_exhaustive()
    }
}

impl ChainKey {
    /// A chain starting at `index`.
    pub fn new(key: [u8; 32], index: u32) -> Self {
        ChainKey { key: Zeroizing::new(key), index }
    }

    /// The index of the message this key would key next.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The seed of the message keys at [`Self::index`].
    pub fn message_seed(&self) -> Secret32 {
        Zeroizing::new(hmac_sha256(self.key.as_ref(), &[0x01]))
    }

    /// The chain key for the next index.
    pub fn next(&self) -> ChainKey {
        ChainKey { key: Zeroizing::new(hmac_sha256(self.key.as_ref(), &[0x02])), index: self.index.saturating_add(1) }
    }

    /// [`Self::message_seed`] and [`Self::next`] at once, from one keyed HMAC state: a
    /// quarter less hashing for a message that skips keys, which does this once per key.
    pub fn step(&self) -> (Secret32, ChainKey) {
        let keyed =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(self.key.as_ref()).expect("HMAC takes keys of any length");
        let mut seed = keyed.clone();
        seed.update(&[0x01]);
        let mut next = keyed;
        next.update(&[0x02]);
        let seed = Zeroizing::new(seed.finalize().into_bytes().into());
        (
            seed,
            ChainKey { key: Zeroizing::new(next.finalize().into_bytes().into()), index: self.index.saturating_add(1) },
        )
    }
}

/// One root-key step: mixes `ours × theirs` into the root key, giving the next root key and a
/// fresh chain.
pub fn root_step(root_key: &[u8; 32], theirs: &PublicKey, ours: &KeyPair) -> (Secret32, ChainKey) {
    let shared = ours.agree(theirs);
    let mut okm = Zeroizing::new([0u8; 64]);
    hkdf(Some(root_key), shared.as_ref(), b"WhisperRatchet", okm.as_mut());
    let mut root = Zeroizing::new([0u8; 32]);
    root.copy_from_slice(&okm[..32]);
    let mut chain = [0u8; 32];
    chain.copy_from_slice(&okm[32..]);
    let chain_key = ChainKey::new(chain, 0);
    chain.zeroize();
    (root, chain_key)
}

/// The keys of one message.
pub struct MessageKeys {
    cipher_key: [u8; 32],
    mac_key: [u8; 32],
    iv: [u8; 16],
}

impl Drop for MessageKeys {
    fn drop(&mut self) {
        self.cipher_key.zeroize();
        self.mac_key.zeroize();
        self.iv.zeroize();
    }
}

/// Why AES-256-CBC decryption failed (after the MAC passed, so: a sender bug or a forgery
/// that broke the MAC's binding, either way nothing to show).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the ciphertext's padding is invalid")]
pub struct PaddingError;

impl MessageKeys {
    /// The keys from a message-key seed and this message's SPQR key (if the session has one).
    pub fn derive(seed: &[u8; 32], pq_key: Option<&[u8; 32]>) -> Self {
        let mut okm = Zeroizing::new([0u8; 80]);
        hkdf(pq_key.map(|key| key.as_slice()), seed, b"WhisperMessageKeys", okm.as_mut());
        let mut keys = MessageKeys { cipher_key: [0; 32], mac_key: [0; 32], iv: [0; 16] };
        keys.cipher_key.copy_from_slice(&okm[..32]);
        keys.mac_key.copy_from_slice(&okm[32..64]);
        keys.iv.copy_from_slice(&okm[64..]);
        keys
    }

    /// The MAC key.
    pub fn mac_key(&self) -> &[u8; 32] {
        &self.mac_key
    }

    /// AES-256-CBC with PKCS#7 padding.
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        cbc::Encryptor::<aes::Aes256>::new(&self.cipher_key.into(), &self.iv.into())
            .encrypt_padded_vec::<Pkcs7>(plaintext)
    }

    /// The inverse of [`Self::encrypt`].
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, PaddingError> {
        cbc::Decryptor::<aes::Aes256>::new(&self.cipher_key.into(), &self.iv.into())
            .decrypt_padded_vec::<Pkcs7>(ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| PaddingError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_advance_and_keys_depend_on_the_pq_key() {
        let chain = ChainKey::new([3; 32], 0);
        let next = chain.next();
        assert_eq!(next.index(), 1);
        assert_ne!(*chain.message_seed(), *next.message_seed());
        assert_ne!(*chain.message_seed(), *next.key, "the seed and the next chain key are separated");
        let (stepped_seed, stepped_next) = chain.step();
        assert_eq!(
            (*stepped_seed, stepped_next.clone()),
            (*chain.message_seed(), next.clone()),
            "step is both at once"
        );
        let seed = chain.message_seed();
        let plain = MessageKeys::derive(&seed, None);
        let mixed = MessageKeys::derive(&seed, Some(&[1; 32]));
        assert_ne!(plain.mac_key(), mixed.mac_key());
        let ciphertext = plain.encrypt(b"sixteen bytes!!!");
        assert_eq!(ciphertext.len(), 32, "a full block of padding");
        assert_eq!(plain.decrypt(&ciphertext).unwrap().as_slice(), b"sixteen bytes!!!");
        assert!(
            mixed.decrypt(&ciphertext).is_err()
                || mixed.decrypt(&ciphertext).unwrap().as_slice() != b"sixteen bytes!!!"
        );
        assert_eq!(plain.decrypt(&ciphertext[..31]), Err(PaddingError));
        assert_eq!(plain.decrypt(&[]), Err(PaddingError));
    }
}
