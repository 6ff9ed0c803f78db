//! Incremental ML-KEM-768, as the braid uses it (libcrux's `mlkem768::incremental`).
//!
//! The encapsulation key is split into a 64-byte header (the matrix seed and the key's hash) and
//! the 1152-byte vector; a sender can produce the first, large ciphertext part from the header
//! alone and the small second part once the vector arrives. That is what lets the braid send
//! both directions' pieces at the same time.
//!
//! Our own states never store libcrux's internal formats: a key pair is kept as its 64-byte seed
//! and an encapsulation as its 32-byte randomness, both re-expanded deterministically when
//! needed. The one exception is a state imported from upstream's format, which keeps no seed:
//! its key pair is the 2400-byte ML-KEM decapsulation key itself ([`KeyPair::Expanded`]),
//! accepted only once its public half is checked to match the hash it carries.

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

/// A sampled key pair: the seed that generates it (ours), or the expanded pair itself (a state
/// imported from upstream's format, which stores no seed).
#[derive(Clone)]
pub(crate) enum KeyPair {
    /// The 64-byte generation seed.
    Seed(KeySeed),
    /// The 2400-byte decapsulation key (dk | t | rho | H(ek) | z), checked by
    /// [`KeyPair::expanded`].
    Expanded(Zeroizing<Vec<u8>>),
}

impl KeyPair {
    /// An expanded pair, if `bytes` is one whose public half matches the hash it carries (the
    /// check ML-KEM prescribes for a decapsulation key from elsewhere).
    pub(crate) fn expanded(bytes: &[u8]) -> Option<KeyPair> {
        if bytes.len() != PAIR_LEN {
            return None;
        }
        let (header, ek) = split_public(bytes);
        ek_matches_header(header, ek).then(|| KeyPair::Expanded(Zeroizing::new(bytes.to_vec())))
    }

    /// The pair's bytes, in memory that is wiped on drop.
    fn pair(&self) -> Zeroizing<Vec<u8>> {
        match self {
            KeyPair::Seed(seed) => {
                let mut pair = Zeroizing::new([0u8; PAIR_LEN]);
                incremental::generate_key_pair_compressed(**seed, &mut pair);
                Zeroizing::new(pair.to_vec())
            }
            KeyPair::Expanded(pair) => pair.clone(),
        }
    }
}

/// The (header, encapsulation key) slices of an expanded pair: the layout puts t right after
/// dk, then the header (rho || H(ek)).
fn split_public(pair: &[u8]) -> (&[u8], &[u8]) {
    let ek = pair.get(EK_LEN..2 * EK_LEN).unwrap_or_default();
    let header = pair.get(2 * EK_LEN..2 * EK_LEN + HEADER_LEN).unwrap_or_default();
    (header, ek)
}

/// The public parts of `keys`: (header, encapsulation key).
pub(crate) fn public_parts(keys: &KeyPair) -> (Vec<u8>, Vec<u8>) {
    let pair = keys.pair();
    let (header, ek) = split_public(&pair);
    (header.to_vec(), ek.to_vec())
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

/// Bytes of libcrux's encapsulation state (what upstream stores between ct1 and ct2).
pub(crate) const ENCAPS_STATE_LEN: usize = incremental::encaps_state_len();

/// The randomness an encapsulation state was made from: libcrux keeps it as the state's last
/// 32 bytes (`r_as_ntt | error2 | randomness`), raw, so that ct2 can encode it.
pub(crate) fn randomness_of_state(state: &[u8]) -> Option<EncapsRand> {
    if state.len() != ENCAPS_STATE_LEN {
        return None;
    }
    let tail = state.get(ENCAPS_STATE_LEN - ENCAPS_RAND_LEN..)?;
    let mut rand = Zeroizing::new([0u8; ENCAPS_RAND_LEN]);
    rand.copy_from_slice(tail);
    Some(rand)
}

/// An encapsulation between its two steps: the randomness it was made from and the header it
/// was made for (ours), or libcrux's state itself (a state imported from upstream's format in a
/// phase where upstream kept no header, see `persist::upstream`).
#[derive(Clone)]
pub(crate) enum Encapsulation {
    /// Rebuilt from the header and the randomness when needed.
    Rand {
        /// The encapsulation key header.
        header: Vec<u8>,
        /// The randomness.
        rand: EncapsRand,
    },
    /// libcrux's [`ENCAPS_STATE_LEN`]-byte state, as [`normalized_state`] accepts it.
    State(Zeroizing<Vec<u8>>),
}

impl Encapsulation {
    /// The second ciphertext part, for the encapsulation key `ek`.
    pub(crate) fn ct2(&self, ek: &[u8]) -> Result<Vec<u8>, Error> {
        match self {
            Encapsulation::Rand { header, rand } => encapsulate2(header, rand, ek),
            Encapsulation::State(state) => {
                let state: &[u8; ENCAPS_STATE_LEN] =
                    state.as_slice().try_into().map_err(|_| Error::InconsistentState)?;
                let ek: &[u8; EK_LEN] = ek.try_into().map_err(|_| Error::ErroneousDataReceived)?;
                Ok(incremental::encapsulate2(state, ek).value.to_vec())
            }
        }
    }
}

/// Where libcrux's encapsulation state keeps `error2` (after the 3 × 256 two-byte
/// coefficients of `r`), and where its randomness starts.
const ERROR2: core::ops::Range<usize> = 1536..ENCAPS_STATE_LEN - ENCAPS_RAND_LEN;

/// Whether every `error2` coefficient of `state` (little-endian i16) is one ML-KEM-768 can
/// sample (η2 = 2: from -2 to 2).
fn error2_in_range(state: &[u8]) -> bool {
    state.get(ERROR2).is_some_and(|error2| {
        error2.chunks_exact(2).all(|pair| (-2..=2).contains(&i16::from_le_bytes([pair[0], pair[1]])))
    })
}

/// An encapsulation state from elsewhere (upstream's stored state), in the encoding this
/// libcrux reads, or `None` if it is not one. Some libcrux versions wrote its coefficients
/// big-endian (libcrux issue 1275, which upstream corrects the same way): a state whose
/// `error2` is out of range little-endian is read with every coefficient's bytes swapped, and
/// refused if that is out of range too.
pub(crate) fn normalized_state(state: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if state.len() != ENCAPS_STATE_LEN {
        return None;
    }
    let mut state = Zeroizing::new(state.to_vec());
    if !error2_in_range(&state) {
        for pair in state.get_mut(..ERROR2.end)?.chunks_exact_mut(2) {
            pair.swap(0, 1);
        }
    }
    error2_in_range(&state).then_some(state)
}

/// Whether `ek` (an encapsulation key vector) is 768 twelve-bit coefficients each below the
/// ML-KEM modulus, the check a key from elsewhere gets when no header comes with it.
pub(crate) fn ek_well_formed(ek: &[u8]) -> bool {
    const Q: u16 = 3329;
    ek.len() == EK_LEN
        && ek.chunks_exact(3).all(|bytes| {
            let (b0, b1, b2) = (u16::from(bytes[0]), u16::from(bytes[1]), u16::from(bytes[2]));
            (b0 | (b1 & 0x0f) << 8) < Q && (b1 >> 4 | b2 << 4) < Q
        })
}

/// Whether `ek` is a well-formed encapsulation key matching `header`.
pub(crate) fn ek_matches_header(header: &[u8], ek: &[u8]) -> bool {
    incremental::validate_pk_bytes(header, ek).is_ok()
}

/// Decapsulates (ct1, ct2) with `keys`.
pub(crate) fn decapsulate(keys: &KeyPair, ct1: &[u8], ct2: &[u8]) -> Result<Zeroizing<[u8; 32]>, Error> {
    let pair = keys.pair();
    let pair: &[u8; PAIR_LEN] = pair.as_slice().try_into().map_err(|_| Error::InconsistentState)?;
    let ct1 = incremental::Ciphertext1 { value: ct1.try_into().map_err(|_| Error::ErroneousDataReceived)? };
    let ct2 = incremental::Ciphertext2 { value: ct2.try_into().map_err(|_| Error::ErroneousDataReceived)? };
    Ok(Zeroizing::new(incremental::decapsulate_compressed_key(pair, &ct1, &ct2)))
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
        let seed = KeyPair::Seed(Zeroizing::new([7u8; KEYGEN_SEED_LEN]));
        let (hdr, ek) = public_parts(&seed);
        // Our slicing of the compressed pair agrees with libcrux's own accessors.
        let pair = incremental::KeyPairCompressedBytes::from_seed([7u8; KEYGEN_SEED_LEN]);
        assert_eq!((&hdr[..], &ek[..]), (&pair.pk1()[..], &pair.pk2()[..]));
        assert!(ek_matches_header(&hdr, &ek));
        let mut other = ek.clone();
        other[0] ^= 1;
        assert!(!ek_matches_header(&hdr, &other));
        let rand = Zeroizing::new([9u8; ENCAPS_RAND_LEN]);
        let (ct1, ss1) = encapsulate1(&hdr, &rand).unwrap();
        let ct2 = encapsulate2(&hdr, &rand, &ek).unwrap();
        assert_eq!(*decapsulate(&seed, &ct1, &ct2).unwrap(), *ss1);

        // The same pair, expanded, decapsulates alike; a pair whose public half was altered
        // is refused.
        let expanded = KeyPair::expanded(pair.sk()).expect("a genuine pair");
        assert_eq!(public_parts(&expanded), (hdr.clone(), ek.clone()));
        assert_eq!(*decapsulate(&expanded, &ct1, &ct2).unwrap(), *ss1);
        let mut altered = pair.sk().to_vec();
        altered[EK_LEN] ^= 1;
        assert!(KeyPair::expanded(&altered).is_none());
        assert!(KeyPair::expanded(&altered[1..]).is_none());
    }

    #[test]
    fn an_encapsulation_state_gives_the_same_ct2_as_its_randomness_in_either_byte_order() {
        let seed = KeyPair::Seed(Zeroizing::new([5u8; KEYGEN_SEED_LEN]));
        let (hdr, ek) = public_parts(&seed);
        let rand = [13u8; ENCAPS_RAND_LEN];
        let mut state = vec![0u8; ENCAPS_STATE_LEN];
        let mut ss = [0u8; 32];
        let ct1 = incremental::encapsulate1(&hdr, rand, &mut state, &mut ss).unwrap().value.to_vec();
        let from_rand = Encapsulation::Rand { header: hdr.clone(), rand: Zeroizing::new(rand) }.ct2(&ek).unwrap();
        let from_state = Encapsulation::State(normalized_state(&state).unwrap()).ct2(&ek).unwrap();
        assert_eq!(from_state, from_rand);
        assert_eq!(*decapsulate(&seed, &ct1, &from_state).unwrap(), ss);

        // The same state written big-endian is read back; garbage is refused.
        let mut swapped = state.clone();
        for pair in swapped[..ERROR2.end].chunks_exact_mut(2) {
            pair.swap(0, 1);
        }
        assert_ne!(swapped, state, "error2 has nonzero coefficients");
        assert_eq!(normalized_state(&swapped).as_deref(), Some(&state));
        let mut garbage = state.clone();
        garbage[ERROR2.start..ERROR2.start + 2].copy_from_slice(&0x0303i16.to_le_bytes());
        assert_eq!(normalized_state(&garbage), None);
        assert_eq!(normalized_state(&state[1..]), None);

        assert!(ek_well_formed(&ek));
        let mut out_of_range = ek.clone();
        out_of_range[..2].copy_from_slice(&[0xff, 0x0f]);
        assert!(!ek_well_formed(&out_of_range));
        assert!(!ek_well_formed(&ek[1..]));
    }

    #[test]
    fn an_encapsulation_state_ends_with_its_randomness() {
        // Upstream stores libcrux's encapsulation state, we store the randomness: importing
        // relies on the state's last 32 bytes being that randomness.
        let (hdr, _) = public_parts(&KeyPair::Seed(Zeroizing::new([3u8; KEYGEN_SEED_LEN])));
        let rand = [11u8; ENCAPS_RAND_LEN];
        let mut state = vec![0u8; ENCAPS_STATE_LEN];
        let mut ss = [0u8; 32];
        incremental::encapsulate1(&hdr, rand, &mut state, &mut ss).unwrap();
        assert_eq!(randomness_of_state(&state), Some(Zeroizing::new(rand)));
        assert_eq!(randomness_of_state(&state[1..]), None);
    }
}
