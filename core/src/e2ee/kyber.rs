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
}
