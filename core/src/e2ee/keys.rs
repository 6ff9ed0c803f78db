//! Curve25519 keys as Signal serializes them: a type byte `0x05` then the 32-byte Montgomery `u`.
//!
//! Agreements are X25519 (RFC 7748), computed on the birationally equivalent Edwards curve when
//! the peer's `u` is on the curve (see [`x25519`]): curve25519-dalek picks a vectorised backend
//! (AVX2) at run time for Edwards arithmetic, while its Montgomery ladder is serial.

use crate::Rng;
use curve25519_dalek::montgomery::MontgomeryPoint;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::{Zeroize as _, Zeroizing};

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
    pub fn agree(&self, their: &PublicKey) -> Zeroizing<[u8; 32]> {
        x25519(self.private.as_bytes(), &their.0)
    }

    /// An XEdDSA signature of `message`, as libsignal makes them.
    pub fn sign(&self, message: &[u8], rng: &mut Rng) -> [u8; 64] {
        super::xeddsa::sign(&self.private.to_bytes(), message, rng)
    }
}

/// X25519(`scalar`, `u`) as RFC 7748 defines it (the scalar clamped, the top bit of `u` ignored,
/// `u` reduced mod p), with the same result as x25519-dalek's Montgomery ladder for every input.
///
/// X25519 is the `u` of \[k\]P for either point P of the curve with that `u` (P and -P share it,
/// and so do \[k\]P and \[k\](-P)), so when `u` is on the curve the product is taken on the
/// Edwards form: `to_edwards` maps `u` to one of those points, the multiplication is
/// curve25519-dalek's constant-time variable-base one over the whole group (the clamped scalar
/// is below 2^255 and is not reduced, so small-order components come out as on the ladder), and
/// `to_montgomery` maps back, the identity to `u` = 0 as the ladder has it. A `u` on the twist
/// (about half of all inputs; never an honest peer's key) has no Edwards point and takes the
/// ladder. That branch depends on `u` alone, which is the peer's public key, so it tells an
/// observer nothing about the scalar.
pub fn x25519(scalar: &[u8; 32], u: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let point = MontgomeryPoint(*u);
    // Either way the product is the shared secret: wiped once its bytes are out.
    let mut shared = match point.to_edwards(0) {
        Some(edwards) => {
            let mut product = edwards.mul_clamped(*scalar);
            let shared = product.to_montgomery();
            product.zeroize();
            shared
        }
        None => point.mul_clamped(*scalar),
    };
    let out = Zeroizing::new(shared.to_bytes());
    shared.zeroize();
    out
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

    fn hex32(text: &str) -> [u8; 32] {
        let bytes: Vec<u8> =
            (0..text.len()).step_by(2).map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap()).collect();
        bytes.try_into().unwrap()
    }

    /// The ladder this module's [`x25519`] must match for every input.
    fn ladder(scalar: &[u8; 32], u: &[u8; 32]) -> [u8; 32] {
        x25519_dalek::x25519(*scalar, *u)
    }

    fn on_curve(u: &[u8; 32]) -> bool {
        MontgomeryPoint(*u).to_edwards(0).is_some()
    }

    #[test]
    fn rfc7748_vectors() {
        // Section 5.2: both vectors take non-canonical or high-bit `u`s through the function.
        let vectors = [
            (
                "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
                "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
                "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
            ),
            (
                "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
                "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
                "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
            ),
        ];
        for (scalar, u, expected) in vectors {
            assert_eq!(*x25519(&hex32(scalar), &hex32(u)), hex32(expected));
        }
        // Section 5.2, iterated: k and u start at 9, then k, u = X25519(k, u), k.
        let (mut k, mut u) = (hex32(&format!("09{}", "00".repeat(31))), hex32(&format!("09{}", "00".repeat(31))));
        for round in 1..=1000 {
            let next = *x25519(&k, &u);
            (u, k) = (k, next);
            if round == 1 {
                assert_eq!(k, hex32("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"));
            }
        }
        assert_eq!(k, hex32("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"));
        // Section 6.1: the Diffie-Hellman example, through `KeyPair`.
        let alice =
            KeyPair::from_private_bytes(hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
        let bob =
            KeyPair::from_private_bytes(hex32("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"));
        assert_eq!(
            *alice.public().u_bytes(),
            hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        assert_eq!(*bob.public().u_bytes(), hex32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"));
        let shared = hex32("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(*alice.agree(&bob.public()), shared);
        assert_eq!(*bob.agree(&alice.public()), shared);
    }

    /// Small-order points, `u` = 0, 1, -1 and their neighbours, non-canonical encodings
    /// (p and above) and the top bit set, on the curve and on the twist, against the ladder.
    #[test]
    fn edge_points_agree_with_the_ladder() {
        let mut points: Vec<[u8; 32]> = [
            "0000000000000000000000000000000000000000000000000000000000000000", // 0: order 2
            "0100000000000000000000000000000000000000000000000000000000000000", // 1: order 4
            "0200000000000000000000000000000000000000000000000000000000000000",
            "0900000000000000000000000000000000000000000000000000000000000000", // the base point
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", // order 8
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157", // order 8
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p - 1 = -1: twist
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p: 0 again
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p + 1: 1 again
            "f3ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // 2^255 - 1
            "cdeb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880", // libsodium's list: order 8 + p in 256 bits,
            "4c9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7", // which X25519 reads without the top bit
            "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        ]
        .iter()
        .map(|text| hex32(text))
        .collect();
        // The same with the top bit set, which X25519 ignores.
        let high: Vec<[u8; 32]> = points
            .iter()
            .map(|u| {
                let mut u = *u;
                u[31] |= 0x80;
                u
            })
            .collect();
        points.extend(high);
        assert!(points.iter().any(on_curve) && !points.iter().all(on_curve), "both paths are exercised");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut scalars = vec![[0u8; 32], [0xff; 32], [1; 32]];
        scalars.extend((0..4).map(|_| rand::RngExt::random::<[u8; 32]>(&mut rng)));
        for u in &points {
            for scalar in &scalars {
                assert_eq!(*x25519(scalar, u), ladder(scalar, u), "u = {u:02x?}, scalar = {scalar:02x?}");
            }
        }
        // Small-order points give the all-zero output on both paths.
        assert_eq!(*x25519(&scalars[3], &points[4]), [0; 32]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]
        /// Random scalars and random `u`s: about half of them on the twist, some non-canonical,
        /// and half with the top bit set.
        #[test]
        fn random_inputs_agree_with_the_ladder(scalar: [u8; 32], u: [u8; 32]) {
            proptest::prop_assert_eq!(*x25519(&scalar, &u), ladder(&scalar, &u));
        }

        /// Public keys (points on the curve) with a small-order component added, as a hostile
        /// peer may send, and the keys honest peers send.
        #[test]
        fn curve_points_agree_with_the_ladder(scalar: [u8; 32], other: [u8; 32], torsion in 0usize..8) {
            use curve25519_dalek::constants::EIGHT_TORSION;
            let point = curve25519_dalek::EdwardsPoint::mul_base_clamped(other) + EIGHT_TORSION[torsion];
            let u = point.to_montgomery().to_bytes();
            proptest::prop_assert!(on_curve(&u));
            proptest::prop_assert_eq!(*x25519(&scalar, &u), ladder(&scalar, &u));
        }
    }
}
