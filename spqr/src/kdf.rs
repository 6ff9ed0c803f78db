//! The HKDF-SHA-256 and HMAC-SHA-256 helpers, and every label SPQR v1 feeds them.
//!
//! The labels are part of the protocol: a single different byte gives different keys than the
//! official runtime, so they are kept together here, spelled exactly as spqr 1.5.1 spells them.

use hmac::{KeyInit as _, Mac as _};

/// Info prefix when ratcheting the authenticator with a new epoch secret.
pub(crate) const AUTH_UPDATE: &[u8] = b"Signal_PQCKA_V1_MLKEM768:Authenticator Update";
/// MAC prefix over ciphertext 1 || ciphertext 2.
pub(crate) const MAC_CIPHERTEXT: &[u8] = b"Signal_PQCKA_V1_MLKEM768:ciphertext";
/// MAC prefix over the encapsulation key header.
pub(crate) const MAC_HEADER: &[u8] = b"Signal_PQCKA_V1_MLKEM768:ekheader";
/// Info prefix turning a KEM shared secret into an epoch secret.
pub(crate) const SCKA_KEY: &[u8] = b"Signal_PQCKA_V1_MLKEM768:SCKA Key";
/// Info for the first chain keys, derived from the session's auth key (two spaces: upstream's).
pub(crate) const CHAIN_START: &[u8] = b"Signal PQ Ratchet V1 Chain  Start";
/// Info for the chain keys of each new epoch.
pub(crate) const CHAIN_ADD_EPOCH: &[u8] = b"Signal PQ Ratchet V1 Chain Add Epoch";
/// Info suffix (after the big-endian counter) for stepping a chain.
pub(crate) const CHAIN_NEXT: &[u8] = b"Signal PQ Ratchet V1 Chain Next";

/// Every HKDF in SPQR that has no better salt uses 32 zero bytes.
pub(crate) const ZERO_SALT: [u8; 32] = [0u8; 32];

/// HKDF-SHA-256 extract-then-expand into `out`, which is at most 96 bytes here.
pub(crate) fn hkdf(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let info: Vec<u8> = info.concat();
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), ikm);
    // HKDF-SHA-256 can expand up to 8160 bytes; every caller asks for 96 or less, so the only
    // error case is unreachable. Fill with zeros rather than panic if that ever changed.
    if hk.expand(&info, out).is_err() {
        out.fill(0);
    }
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// [`hkdf`] with the zero salt and info `ctr ‖ CHAIN_NEXT`, into 64 bytes: one chain step, the
/// work a message that skips keys repeats once per key. The same function, cheaper: the zero
/// salt's keyed HMAC state is made once per process, and the info needs no allocation.
pub(crate) fn chain_next(ikm: &[u8; 32], ctr: u32, out: &mut [u8; 64]) {
    static ZERO_SALT_MAC: std::sync::OnceLock<HmacSha256> = std::sync::OnceLock::new();
    let mut extract = ZERO_SALT_MAC.get_or_init(|| keyed(&ZERO_SALT)).clone();
    extract.update(ikm);
    let mut prk: [u8; 32] = extract.finalize().into_bytes().into();
    let expand = keyed(&prk);
    zeroize::Zeroize::zeroize(&mut prk);
    let counter = ctr.to_be_bytes();
    // RFC 5869: T(1) = HMAC(PRK, info ‖ 1), T(2) = HMAC(PRK, T(1) ‖ info ‖ 2).
    let mut first = expand.clone();
    first.update(&counter);
    first.update(CHAIN_NEXT);
    first.update(&[1]);
    let mut t1: [u8; 32] = first.finalize().into_bytes().into();
    let mut second = expand;
    second.update(&t1);
    second.update(&counter);
    second.update(CHAIN_NEXT);
    second.update(&[2]);
    out[..32].copy_from_slice(&t1);
    out[32..].copy_from_slice(&second.finalize().into_bytes());
    zeroize::Zeroize::zeroize(&mut t1);
}

/// An HMAC-SHA-256 instance keyed with a 32-byte key. HMAC zero-pads keys shorter than the
/// 64-byte block, so padding here by hand is the same function, with no fallible constructor.
fn keyed(key: &[u8; 32]) -> HmacSha256 {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mac = HmacSha256::new(&block.into());
    zeroize::Zeroize::zeroize(&mut block);
    mac
}

/// HMAC-SHA-256 of the concatenated `parts` under `key`.
pub(crate) fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = keyed(key);
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Checks an HMAC-SHA-256 tag in constant time.
pub(crate) fn hmac_verify(key: &[u8; 32], parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut mac = keyed(key);
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn hkdf_rfc5869_case_1() {
        let ikm = [0x0bu8; 22];
        let salt = unhex("000102030405060708090a0b0c");
        let info = unhex("f0f1f2f3f4f5f6f7f8f9");
        let mut okm = [0u8; 42];
        hkdf(&salt, &ikm, &[&info[..5], &info[5..]], &mut okm);
        assert_eq!(
            okm.to_vec(),
            unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
        );
    }

    #[test]
    fn chain_next_is_the_generic_hkdf() {
        for (seed, ctr) in [(0u8, 1u32), (7, 2), (200, 25_000), (255, u32::MAX)] {
            let ikm = [seed; 32];
            let mut generic = [0u8; 64];
            hkdf(&ZERO_SALT, &ikm, &[&ctr.to_be_bytes(), CHAIN_NEXT], &mut generic);
            let mut fast = [0u8; 64];
            chain_next(&ikm, ctr, &mut fast);
            assert_eq!(fast, generic, "seed {seed}, counter {ctr}");
        }
    }

    #[test]
    fn hmac_rfc4231_case_1_and_verify() {
        // RFC 4231 test case 1 uses a 20-byte key; zero-padding it to 32 bytes is the same HMAC.
        let mut key = [0u8; 32];
        key[..20].fill(0x0b);
        let tag = hmac(&key, &[b"Hi ", b"There"]);
        assert_eq!(tag.to_vec(), unhex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"));
        assert!(hmac_verify(&key, &[b"Hi There"], &tag));
        let mut bad = tag;
        bad[31] ^= 1;
        assert!(!hmac_verify(&key, &[b"Hi There"], &bad));
    }
}
