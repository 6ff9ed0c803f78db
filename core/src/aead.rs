//! AES-256-GCM with a 12-byte IV, the one symmetric cipher of the Pacerelle payload layer
//! (attachments, archive records, group messages). The tag follows the ciphertext.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

/// Key length in bytes.
pub const KEY_LEN: usize = 32;
/// IV length in bytes.
pub const IV_LEN: usize = 12;
/// Tag length in bytes.
pub const TAG_LEN: usize = 16;

/// Why sealed bytes could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The key is not 32 bytes.
    #[error("AES-256-GCM key must be 32 bytes, got {0}")]
    KeyLength(usize),
    /// The IV is not 12 bytes.
    #[error("AES-GCM IV must be 12 bytes, got {0}")]
    IvLength(usize),
    /// Shorter than a tag.
    #[error("ciphertext shorter than its 16-byte tag")]
    Truncated,
    /// The tag does not match: wrong key, wrong associated data, or tampered bytes.
    #[error("authentication failed: wrong key, wrong context or tampered ciphertext")]
    Authentication,
}

/// Encrypts `plaintext` under `key` and `iv` with associated data `aad`.
pub fn seal(key: &[u8; KEY_LEN], iv: &[u8; IV_LEN], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .encrypt(&Nonce::from(*iv), Payload { msg: plaintext, aad })
        // Encryption fails only for inputs beyond 64 GiB, which no caller can produce in memory
        // on the targets we support; an empty result then fails to open rather than panicking.
        .unwrap_or_default()
}

/// Decrypts and authenticates `ciphertext` (tag last). The tag comparison is constant-time.
pub fn open(key: &[u8], iv: &[u8], ciphertext: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let key: &[u8; KEY_LEN] = key.try_into().map_err(|_| OpenError::KeyLength(key.len()))?;
    let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| OpenError::IvLength(iv.len()))?;
    if ciphertext.len() < TAG_LEN {
        return Err(OpenError::Truncated);
    }
    Aes256Gcm::new(key.into())
        .decrypt(&Nonce::from(iv), Payload { msg: ciphertext, aad })
        .map(Zeroizing::new)
        .map_err(|_| OpenError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let key = [7u8; 32];
        let iv = [9u8; 12];
        let sealed = seal(&key, &iv, b"hello", b"ctx");
        assert_eq!(sealed.len(), 5 + TAG_LEN);
        assert_eq!(open(&key, &iv, &sealed, b"ctx").unwrap().as_slice(), b"hello");
        assert_eq!(open(&key, &iv, &sealed, b"other"), Err(OpenError::Authentication));
        for index in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[index] ^= 1;
            assert_eq!(open(&key, &iv, &tampered, b"ctx"), Err(OpenError::Authentication));
        }
        assert_eq!(open(&key[..31], &iv, &sealed, b"ctx"), Err(OpenError::KeyLength(31)));
        assert_eq!(open(&key, &iv[..8], &sealed, b"ctx"), Err(OpenError::IvLength(8)));
        assert_eq!(open(&key, &iv, &sealed[..15], b"ctx"), Err(OpenError::Truncated));
    }
}
