//! Kyber-1024 prekeys as Signal serializes them: a type byte `0x08` then the 1568-byte key.
//!
//! libsignal's PQXDH prekeys use Kyber-1024 (the NIST round-3 KEM, not the final ML-KEM), which
//! libcrux-ml-kem provides behind its `kyber` feature from the same verified code as ML-KEM.

use crate::Rng;
use libcrux_ml_kem::kyber1024;
use zeroize::Zeroizing;

/// The type byte of a serialized Kyber-1024 public key.
pub const KYBER1024_TYPE: u8 = 0x08;
/// A raw Kyber-1024 public key's length.
pub const PUBLIC_LEN: usize = 1568;
/// A serialized public key's length (type byte included).
pub const SERIALIZED_PUBLIC_LEN: usize = PUBLIC_LEN + 1;
/// A raw Kyber-1024 private key's length.
pub const PRIVATE_LEN: usize = 3168;
/// A raw Kyber-1024 ciphertext's length.
pub const CIPHERTEXT_LEN: usize = 1568;
/// A serialized ciphertext's length (type byte included, as PreKey messages carry it).
pub const SERIALIZED_CIPHERTEXT_LEN: usize = CIPHERTEXT_LEN + 1;

/// Why bytes are not a Kyber-1024 key or ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KyberError {
    /// Wrong length.
    #[error("a serialized Kyber-1024 value is {expected} bytes, got {actual}")]
    Length {
        /// The length required.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// The type byte is not `0x08`.
    #[error("unknown KEM key type 0x{0:02x}")]
    UnknownType(u8),
    /// The public key fails ML-KEM's modulus check.
    #[error("the Kyber-1024 public key is not valid")]
    InvalidPublicKey,
}

/// Strips and checks the `0x08` type byte of a serialized value of `expected` bytes.
fn untyped(bytes: &[u8], expected: usize) -> Result<&[u8], KyberError> {
    if bytes.len() != expected {
        return Err(KyberError::Length { expected, actual: bytes.len() });
    }
    match bytes[0] {
        KYBER1024_TYPE => Ok(&bytes[1..]),
        other => Err(KyberError::UnknownType(other)),
    }
}

/// Encapsulates a fresh shared secret to a serialized (`0x08`) public key: returns the
/// serialized ciphertext (what a PreKey message carries) and the 32-byte secret.
pub fn encapsulate(public: &[u8], rng: &mut Rng) -> Result<(Vec<u8>, Zeroizing<[u8; 32]>), KyberError> {
    let raw: [u8; PUBLIC_LEN] =
        untyped(public, SERIALIZED_PUBLIC_LEN)?.try_into().map_err(|_| KyberError::InvalidPublicKey)?;
    let key = libcrux_ml_kem::mlkem1024::MlKem1024PublicKey::from(raw);
    if !kyber1024::validate_public_key(&key) {
        return Err(KyberError::InvalidPublicKey);
    }
    let mut randomness = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(randomness.as_mut());
    let (ciphertext, secret) = kyber1024::encapsulate(&key, *randomness);
    let mut serialized = Vec::with_capacity(SERIALIZED_CIPHERTEXT_LEN);
    serialized.push(KYBER1024_TYPE);
    serialized.extend_from_slice(ciphertext.as_slice());
    Ok((serialized, Zeroizing::new(secret)))
}

/// A Kyber-1024 key pair; the private half is wiped on drop and never printed.
pub struct KyberKeyPair {
    public: Box<[u8; PUBLIC_LEN]>,
    private: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for KyberKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KyberKeyPair").field("public_len", &PUBLIC_LEN).field("private", &"<redacted>").finish()
    }
}

impl KyberKeyPair {
    /// A fresh key pair from `rng`.
    pub fn generate(rng: &mut Rng) -> Self {
        let mut seed = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(seed.as_mut());
        let pair = kyber1024::generate_key_pair(*seed);
        KyberKeyPair {
            public: Box::new(*pair.public_key().as_slice()),
            private: Zeroizing::new(pair.private_key().as_slice().to_vec()),
        }
    }

    /// The 1569-byte serialized public key (what bundles carry and signatures cover).
    pub fn public_serialized(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SERIALIZED_PUBLIC_LEN);
        out.push(KYBER1024_TYPE);
        out.extend_from_slice(self.public.as_slice());
        out
    }

    /// The private key's bytes, for persistence.
    pub fn private_bytes(&self) -> &[u8] {
        &self.private
    }

    /// The key pair of a stored private key (which holds its public key, as ML-KEM keys do).
    pub fn from_private_bytes(private: &[u8]) -> Result<Self, KyberError> {
        if private.len() != PRIVATE_LEN {
            return Err(KyberError::Length { expected: PRIVATE_LEN, actual: private.len() });
        }
        // ML-KEM's decapsulation key is dk_pke || ek || H(ek) || z; ek sits after the
        // 12·k·n/8 = 1536 bytes of dk_pke.
        let public: [u8; PUBLIC_LEN] =
            private[1536..1536 + PUBLIC_LEN].try_into().map_err(|_| KyberError::InvalidPublicKey)?;
        Ok(KyberKeyPair { public: Box::new(public), private: Zeroizing::new(private.to_vec()) })
    }

    /// The shared secret inside a serialized (`0x08`) ciphertext made for this key. Kyber's
    /// implicit rejection makes a tampered ciphertext yield a different secret, not an error.
    pub fn decapsulate(&self, ciphertext: &[u8]) -> Result<Zeroizing<[u8; 32]>, KyberError> {
        let raw: [u8; CIPHERTEXT_LEN] =
            untyped(ciphertext, SERIALIZED_CIPHERTEXT_LEN)?.try_into().map_err(|_| KyberError::InvalidPublicKey)?;
        let private: [u8; PRIVATE_LEN] = self
            .private
            .as_slice()
            .try_into()
            .map_err(|_| KyberError::Length { expected: PRIVATE_LEN, actual: self.private.len() })?;
        let private = Zeroizing::new(private);
        let key = libcrux_ml_kem::mlkem1024::MlKem1024PrivateKey::from(*private);
        let ciphertext = libcrux_ml_kem::mlkem1024::MlKem1024Ciphertext::from(raw);
        Ok(Zeroizing::new(kyber1024::decapsulate(&key, &ciphertext)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn keys_have_signal_sizes_and_differ() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let (first, second) = (KyberKeyPair::generate(&mut rng), KyberKeyPair::generate(&mut rng));
        let public = first.public_serialized();
        assert_eq!((public.len(), public[0]), (1569, 0x08));
        assert_eq!(first.private_bytes().len(), 3168);
        assert_ne!(public, second.public_serialized());
        assert!(kyber1024::validate_public_key(&libcrux_ml_kem::mlkem1024::MlKem1024PublicKey::from(*first.public)));
    }

    #[test]
    fn encapsulated_secrets_agree_and_keys_survive_storage() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let pair = KyberKeyPair::generate(&mut rng);
        let (ciphertext, secret) = encapsulate(&pair.public_serialized(), &mut rng).unwrap();
        assert_eq!((ciphertext.len(), ciphertext[0]), (SERIALIZED_CIPHERTEXT_LEN, 0x08));
        let stored = KyberKeyPair::from_private_bytes(pair.private_bytes()).unwrap();
        assert_eq!(stored.public_serialized(), pair.public_serialized());
        assert_eq!(*stored.decapsulate(&ciphertext).unwrap(), *secret);
        let mut tampered = ciphertext.clone();
        tampered[100] ^= 1;
        assert_ne!(*stored.decapsulate(&tampered).unwrap(), *secret, "implicit rejection");
        assert_eq!(stored.decapsulate(&ciphertext[1..]), Err(KyberError::Length { expected: 1569, actual: 1568 }));
        let mut wrong_type = ciphertext;
        wrong_type[0] = 0x0a;
        assert_eq!(stored.decapsulate(&wrong_type), Err(KyberError::UnknownType(0x0a)));
        assert!(matches!(encapsulate(&[0x08; 10], &mut rng), Err(KyberError::Length { .. })));
        assert!(KyberKeyPair::from_private_bytes(&[0; 5]).is_err());
    }
}
