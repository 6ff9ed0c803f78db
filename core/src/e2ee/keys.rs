//! Curve25519 keys as Signal serializes them: a type byte `0x05` then the 32-byte Montgomery `u`.

use crate::Rng;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};

/// The type byte of a serialized Curve25519 public key.
pub const DJB_TYPE: u8 = 0x05;
/// A serialized public key's length.
pub const SERIALIZED_PUBLIC_LEN: usize = 33;

/// Why bytes are not a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 33 bytes.
    #[error("a serialized public key is 33 bytes, got {0}")]
    Length(usize),
    /// The type byte is not `0x05`.
    #[error("unknown public key type 0x{0:02x}")]
    UnknownType(u8),
}

/// A Curve25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Reads the 33-byte serialized form.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, KeyError> {
        let bytes: &[u8; SERIALIZED_PUBLIC_LEN] = bytes.try_into().map_err(|_| KeyError::Length(bytes.len()))?;
        if bytes[0] != DJB_TYPE {
            return Err(KeyError::UnknownType(bytes[0]));
        }
        let mut u = [0u8; 32];
        u.copy_from_slice(&bytes[1..]);
        Ok(PublicKey(u))
    }

    /// The 33-byte serialized form (what bundles carry and signatures cover).
    pub fn serialize(&self) -> [u8; SERIALIZED_PUBLIC_LEN] {
        let mut out = [0u8; SERIALIZED_PUBLIC_LEN];
        out[0] = DJB_TYPE;
        out[1..].copy_from_slice(&self.0);
        out
    }

    /// The Montgomery `u` coordinate.
    pub fn u_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A Curve25519 key pair; the private half is wiped on drop and never printed.
#[derive(Clone)]
pub struct KeyPair {
    private: StaticSecret,
    public: PublicKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("public", &self.public).field("private", &"<redacted>").finish()
    }
}

impl PartialEq for KeyPair {
    /// Equal when the private scalars are (compared in constant time).
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq as _;
        self.private.as_bytes().ct_eq(other.private.as_bytes()).into()
    }
}

impl Eq for KeyPair {}

impl KeyPair {
    /// A fresh key pair from `rng`.
    pub fn generate(rng: &mut Rng) -> Self {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_private_bytes(*bytes)
    }

    /// The key pair of a stored private key (clamped as X25519 does).
    pub fn from_private_bytes(bytes: [u8; 32]) -> Self {
        let private = StaticSecret::from(bytes);
        let public = PublicKey(X25519Public::from(&private).to_bytes());
        KeyPair { private, public }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The private scalar's bytes, for persistence; wipe the copy after use.
    pub fn private_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.private.to_bytes())
    }

    /// X25519 with `their` public key.
    pub fn agree(&self, their: &PublicKey) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.private.diffie_hellman(&X25519Public::from(their.0)).to_bytes())
    }

    /// An XEdDSA signature of `message`, as libsignal makes them.
    pub fn sign(&self, message: &[u8], rng: &mut Rng) -> [u8; 64] {
        super::xeddsa::sign(&self.private.to_bytes(), message, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn serialization_and_agreement() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let (alice, bob) = (KeyPair::generate(&mut rng), KeyPair::generate(&mut rng));
        let bytes = alice.public().serialize();
        assert_eq!(bytes[0], 0x05);
        assert_eq!(PublicKey::deserialize(&bytes), Ok(alice.public()));
        assert_eq!(PublicKey::deserialize(&bytes[..32]), Err(KeyError::Length(32)));
        let mut wrong = bytes;
        wrong[0] = 0x08;
        assert_eq!(PublicKey::deserialize(&wrong), Err(KeyError::UnknownType(0x08)));
        assert_eq!(*alice.agree(&bob.public()), *bob.agree(&alice.public()));
        assert_eq!(KeyPair::from_private_bytes(*alice.private_bytes()).public(), alice.public());
        assert!(!format!("{alice:?}").contains(&format!("{:?}", alice.private_bytes().as_slice())));
    }
}
