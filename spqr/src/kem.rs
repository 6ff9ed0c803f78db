//! Incremental ML-KEM-768, as the braid uses it (libcrux's `mlkem768::incremental`).
//!
//! The encapsulation key is split into a 64-byte header (the matrix seed and the key's hash) and
//! the 1152-byte vector; a sender can produce the first, large ciphertext part from the header
//! alone and the small second part once the vector arrives. That is what lets the braid send
//! both directions' pieces at the same time.
//!
//! Our state never stores libcrux's internal formats: a key pair is kept as its 64-byte seed
//! and an encapsulation as its 32-byte randomness, both re-expanded deterministically when
//! needed. Stored state bytes therefore never reach libcrux's parsers.

use libcrux_ml_kem::mlkem768::incremental;
use zeroize::Zeroizing;

use crate::Error;

/// Bytes of the encapsulation key header (seed rho and the hash of the full key).
pub(crate) const HEADER_LEN: usize = incremental::pk1_len();
/// Bytes of the encapsulation key vector.
pub(crate) const EK_LEN: usize = incremental::pk2_len();
/// Bytes of the first ciphertext part.
pub(crate) const CT1_LEN: usize = incremental::Ciphertext1::len();
/// Bytes of the second ciphertext part.
pub(crate) const CT2_LEN: usize = incremental::Ciphertext2::len();
/// Random bytes consumed by key generation.
pub(crate) const KEYGEN_SEED_LEN: usize = libcrux_ml_kem::KEY_GENERATION_SEED_SIZE;
/// Random bytes consumed by an encapsulation.
pub(crate) const ENCAPS_RAND_LEN: usize = libcrux_ml_kem::SHARED_SECRET_SIZE;

/// A key pair kept as the seed that generates it.
pub(crate) type KeySeed = Zeroizing<[u8; KEYGEN_SEED_LEN]>;
/// An encapsulation kept as its randomness.
pub(crate) type EncapsRand = Zeroizing<[u8; ENCAPS_RAND_LEN]>;

/// Bytes of libcrux's compressed key pair: dk | t | rho | H(ek) | z.
const PAIR_LEN: usize = incremental::COMPRESSED_KEYPAIR_LEN;

/// Expands `seed` into the compressed key pair, in memory that is wiped on drop.
fn expand(seed: &KeySeed) -> Zeroizing<[u8; PAIR_LEN]> {
    let mut pair = Zeroizing::new([0u8; PAIR_LEN]);
    incremental::generate_key_pair_compressed(**seed, &mut pair);
    pair
}

/// The public parts of the key pair generated from `seed`: (header, encapsulation key).
pub(crate) fn public_parts(seed: &KeySeed) -> (Vec<u8>, Vec<u8>) {
    let pair = expand(seed);
    // The layout puts t right after dk, then the header (rho || H(ek)).
    let ek = pair.get(EK_LEN..2 * EK_LEN).unwrap_or_default().to_vec();
    let header = pair.get(2 * EK_LEN..2 * EK_LEN + HEADER_LEN).unwrap_or_default().to_vec();
    (header, ek)
}

/// First encapsulation step against `header`: (ct1, shared secret).
/// The intermediate state is recomputed by [`encapsulate2`] from the same randomness.
pub(crate) fn encapsulate1(header: &[u8], rand: &EncapsRand) -> Result<(Vec<u8>, Zeroizing<[u8; 32]>), Error> {
    let mut state = Zeroizing::new(vec![0u8; incremental::encaps_state_len()]);
    let mut ss = Zeroizing::new([0u8; 32]);
    let ct1 = incremental::encapsulate1(header, **rand, &mut state, ss.as_mut_slice())
        .map_err(|_| Error::ErroneousDataReceived)?;
    Ok((ct1.value.to_vec(), ss))
}

/// Second encapsulation step: ct2 for the encapsulation key `ek` whose header was `header`.
pub(crate) fn encapsulate2(header: &[u8], rand: &EncapsRand, ek: &[u8]) -> Result<Vec<u8>, Error> {
    let mut state = Zeroizing::new(vec![0u8; incremental::encaps_state_len()]);
    let mut ss = Zeroizing::new([0u8; 32]);
    incremental::encapsulate1(header, **rand, &mut state, ss.as_mut_slice())
        .map_err(|_| Error::ErroneousDataReceived)?;
    let state: &[u8; incremental::encaps_state_len()] =
        state.as_slice().try_into().map_err(|_| Error::ErroneousDataReceived)?;
    let ek: &[u8; EK_LEN] = ek.try_into().map_err(|_| Error::ErroneousDataReceived)?;
    Ok(incremental::encapsulate2(state, ek).value.to_vec())
}

/// Whether `ek` is a well-formed encapsulation key matching `header`.
pub(crate) fn ek_matches_header(header: &[u8], ek: &[u8]) -> bool {
    incremental::validate_pk_bytes(header, ek).is_ok()
}

/// Decapsulates (ct1, ct2) with the key pair generated from `seed`.
pub(crate) fn decapsulate(seed: &KeySeed, ct1: &[u8], ct2: &[u8]) -> Result<Zeroizing<[u8; 32]>, Error> {
    let pair = expand(seed);
    let ct1 = incremental::Ciphertext1 { value: ct1.try_into().map_err(|_| Error::ErroneousDataReceived)? };
    let ct2 = incremental::Ciphertext2 { value: ct2.try_into().map_err(|_| Error::ErroneousDataReceived)? };
    Ok(Zeroizing::new(incremental::decapsulate_compressed_key(&pair, &ct1, &ct2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_the_ones_the_braid_expects() {
        assert_eq!((HEADER_LEN, EK_LEN, CT1_LEN, CT2_LEN), (64, 1152, 960, 128));
        assert_eq!((KEYGEN_SEED_LEN, ENCAPS_RAND_LEN), (64, 32));
    }

    #[test]
    fn incremental_round_trip() {
        let seed = Zeroizing::new([7u8; KEYGEN_SEED_LEN]);
        let (hdr, ek) = public_parts(&seed);
        // Our slicing of the compressed pair agrees with libcrux's own accessors.
        let pair = incremental::KeyPairCompressedBytes::from_seed(*seed);
        assert_eq!((&hdr[..], &ek[..]), (&pair.pk1()[..], &pair.pk2()[..]));
        assert!(ek_matches_header(&hdr, &ek));
        let mut other = ek.clone();
        other[0] ^= 1;
        assert!(!ek_matches_header(&hdr, &other));
        let rand = Zeroizing::new([9u8; ENCAPS_RAND_LEN]);
        let (ct1, ss1) = encapsulate1(&hdr, &rand).unwrap();
        let ct2 = encapsulate2(&hdr, &rand, &ek).unwrap();
        assert_eq!(*decapsulate(&seed, &ct1, &ct2).unwrap(), *ss1);
    }
}
