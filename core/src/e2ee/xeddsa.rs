//! XEdDSA (Signal's "XEdDSA and VXEdDSA" specification): Ed25519-style signatures made with a
//! Curve25519 (X25519) key.
//!
//! libsignal's variant, which the official runtime uses, differs from the specification in one
//! point: instead of negating the private scalar so the Edwards public key has sign bit 0, it
//! keeps the scalar and stores the Edwards sign bit in the top bit of the signature's last byte
//! (free because `s < 2^253`); a verifier converts the Montgomery key with that sign bit. The
//! known-answer tests in `testvectors/` check both directions against the runtime.

use crate::Rng;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::{Scalar, clamp_integer};
use sha2::{Digest as _, Sha512};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// A signature's length.
pub const SIGNATURE_LEN: usize = 64;

/// `hash_1` of the specification: SHA-512 with the prefix `2^256 - 2` (0xFE then 31 × 0xFF), which
/// keeps the nonce hash apart from every other hash over the same inputs.
fn nonce_hash_prefix() -> [u8; 32] {
    let mut prefix = [0xFFu8; 32];
    prefix[0] = 0xFE;
    prefix
}

/// A SHA-512 digest reduced modulo the group order.
fn scalar_of(hash: Sha512) -> Scalar {
    let digest: [u8; 64] = hash.finalize().into();
    Scalar::from_bytes_mod_order_wide(&digest)
}

/// Signs `message` with the X25519 private key `private` (any 32 bytes; clamped here).
pub fn sign(private: &[u8; 32], message: &[u8], rng: &mut Rng) -> [u8; SIGNATURE_LEN] {
    let clamped = Zeroizing::new(clamp_integer(*private));
    let a = Scalar::from_bytes_mod_order(*clamped);
    let public = EdwardsPoint::mul_base(&a).compress();
    let sign_bit = public.as_bytes()[31] & 0x80;

    let mut random = Zeroizing::new([0u8; 64]);
    rng.fill_bytes(random.as_mut());
    let r = scalar_of(
        Sha512::new()
            .chain_update(nonce_hash_prefix())
            .chain_update(clamped.as_ref())
            .chain_update(message)
            .chain_update(random.as_ref()),
    );
    let big_r = EdwardsPoint::mul_base(&r).compress();
    let h =
        scalar_of(Sha512::new().chain_update(big_r.as_bytes()).chain_update(public.as_bytes()).chain_update(message));
    let s = r + h * a;

    let mut signature = [0u8; SIGNATURE_LEN];
    signature[..32].copy_from_slice(big_r.as_bytes());
    signature[32..].copy_from_slice(s.as_bytes());
    signature[63] |= sign_bit;
    signature
}

/// Whether `signature` is a valid XEdDSA signature of `message` by the X25519 public key `u`.
pub fn verify(u: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let Ok(signature) = <&[u8; SIGNATURE_LEN]>::try_from(signature) else {
        return false;
    };
    if !is_canonical_field_element(u) {
        return false;
    }
    let sign_bit = (signature[63] & 0x80) >> 7;
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&signature[32..]);
    s_bytes[31] &= 0x7F;
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
        return false;
    };
    let Some(public) = MontgomeryPoint(*u).to_edwards(sign_bit) else {
        return false;
    };
    let public_bytes = public.compress();
    let h = scalar_of(
        Sha512::new().chain_update(&signature[..32]).chain_update(public_bytes.as_bytes()).chain_update(message),
    );
    // R' = s·B − h·A
    let check = EdwardsPoint::vartime_double_scalar_mul_basepoint(&(-h), &public, &s).compress();
    bool::from(check.as_bytes().ct_eq(&signature[..32]))
}

/// Whether `u` encodes a field element below `p = 2^255 - 19` (the specification rejects others).
fn is_canonical_field_element(u: &[u8; 32]) -> bool {
    if u[31] & 0x80 != 0 {
        return false;
    }
    // u >= p exactly when the top 250 bits are all ones and the low byte is at least 0xED.
    let top_all_ones = u[31] == 0x7F && u[1..31].iter().all(|&byte| byte == 0xFF);
    !(top_all_ones && u[0] >= 0xED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2ee::keys::KeyPair;
    use rand::SeedableRng;

    #[test]
    fn signatures_verify_and_any_change_breaks_them() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..20 {
            let pair = KeyPair::generate(&mut rng);
            let message = b"signed prekey bytes";
            let signature = pair.sign(message, &mut rng);
            let u = pair.public().u_bytes().to_owned();
            assert!(verify(&u, message, &signature));
            assert!(!verify(&u, b"other message", &signature));
            for index in [0, 17, 32, 50, 63] {
                let mut tampered = signature;
                tampered[index] ^= 0x01;
                assert!(!verify(&u, message, &tampered), "flipped byte {index}");
            }
            let mut other_sign = signature;
            other_sign[63] ^= 0x80;
            assert!(!verify(&u, message, &other_sign), "the sign bit matters");
            assert!(!verify(&u, message, &signature[..63]));
        }
    }

    #[test]
    fn non_canonical_keys_are_refused() {
        let mut p = [0xFFu8; 32];
        p[31] = 0x7F;
        p[0] = 0xED;
        assert!(!is_canonical_field_element(&p));
        p[0] = 0xEC;
        assert!(is_canonical_field_element(&p));
        assert!(!is_canonical_field_element(&[0x80; 32]));
    }
}
