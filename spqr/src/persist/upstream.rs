//! Reads a state in upstream's own persisted format (spqr 1.5's `PqRatchetState` protobuf, what
//! libsignal keeps in a session's `pq_ratchet_state`), so that sessions of the official runtime
//! can be carried over into this crate.
//!
//! The state is mapped part by part onto ours and then goes through the same checks as our own
//! stored states ([`super::state_from`]). Upstream keeps some things in another form than we
//! do, and each is turned into ours or refused:
//! - a sampled key pair is upstream's 2400-byte decapsulation key, where we keep a seed: it is
//!   kept as such ([`KeyPair::Expanded`]) once its public half matches its hash, and, where
//!   upstream also stored the encapsulation key, once that matches too;
//! - an encapsulation is libcrux's 2080-byte state, where we keep the 32 bytes of randomness
//!   and the key header: the randomness is the state's last 32 bytes, and it is accepted only
//!   if encapsulating again with it gives the ct1 upstream stored. In one phase,
//!   `EkReceivedCt1Sampled` (the ciphertext sender holding the whole encapsulation key while
//!   the peer has not acknowledged ct1), upstream keeps no header (and the header's seed, rho,
//!   is in neither the state nor the key), so ct1 cannot be rebuilt: the state itself is kept
//!   (`kem::Encapsulation::State`), accepted when its `error2` coefficients are in ML-KEM's
//!   range (in either byte order: some libcrux versions wrote them big-endian) and the key's
//!   coefficients below the modulus. It gives ct2 exactly as upstream would have;
//! - an encoder that has interpolated is stored as polynomials, where we keep the payload: the
//!   payload is what they evaluate to;
//! - the chains' limits are ours (the caller's), not upstream's, and skipped keys beyond them
//!   are dropped, oldest first.
//!
//! Every phase comes over.

use prost::Message as _;
use zeroize::{Zeroize, Zeroizing};

use super::{BraidPb, ChainPb, DecoderPb, EncoderPb, HalfChainPb, LinkPb, NegotiationPb, StatePb};
use crate::braid::{CT2_PAYLOAD_LEN, HEADER_PAYLOAD_LEN};
use crate::erasure::payload_from_polys;
use crate::kem::{self, KeyPair};
use crate::{ChainParams, Error, State};

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct UpstreamStatePb {
    #[prost(message, optional, tag = "1")]
    version_negotiation: Option<UpstreamNegotiationPb>,
    #[prost(message, optional, tag = "2")]
    chain: Option<UpstreamChainPb>,
    /// The `inner` oneof's only member.
    #[prost(message, optional, tag = "3")]
    v1: Option<UpstreamV1Pb>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct UpstreamNegotiationPb {
    #[prost(bytes = "vec", tag = "1")]
    auth_key: Vec<u8>,
    #[prost(int32, tag = "2")]
    direction: i32,
    #[prost(int32, tag = "3")]
    min_version: i32,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct UpstreamChainPb {
    #[prost(int32, tag = "1")]
    direction: i32,
    #[prost(uint64, tag = "2")]
    current_epoch: u64,
    #[prost(message, repeated, tag = "3")]
    links: Vec<UpstreamEpochPb>,
    #[prost(bytes = "vec", tag = "4")]
    next_root: Vec<u8>,
    #[prost(uint64, tag = "5")]
    send_epoch: u64,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct UpstreamEpochPb {
    #[prost(message, optional, tag = "1")]
    send: Option<UpstreamDirectionPb>,
    #[prost(message, optional, tag = "2")]
    recv: Option<UpstreamDirectionPb>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct UpstreamDirectionPb {
    #[prost(uint32, tag = "1")]
    ctr: u32,
    #[prost(bytes = "vec", tag = "2")]
    next: Vec<u8>,
    /// Skipped keys: 4-byte big-endian index then the 32-byte key, repeated (as ours).
    #[prost(bytes = "vec", tag = "3")]
    prev: Vec<u8>,
}

/// `V1State`: its `inner_state` oneof, one field per phase (tags 1 to 11, the numbering our
/// own format keeps).
#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct UpstreamV1Pb {
    #[prost(message, optional, tag = "1")]
    p1: Option<ChunkedPb>,
    #[prost(message, optional, tag = "2")]
    p2: Option<ChunkedPb>,
    #[prost(message, optional, tag = "3")]
    p3: Option<ChunkedPb>,
    #[prost(message, optional, tag = "4")]
    p4: Option<ChunkedPb>,
    #[prost(message, optional, tag = "5")]
    p5: Option<ChunkedPb>,
    #[prost(message, optional, tag = "6")]
    p6: Option<ChunkedPb>,
    #[prost(message, optional, tag = "7")]
    p7: Option<ChunkedPb>,
    #[prost(message, optional, tag = "8")]
    p8: Option<ChunkedPb>,
    #[prost(message, optional, tag = "9")]
    p9: Option<ChunkedPb>,
    #[prost(message, optional, tag = "10")]
    p10: Option<ChunkedPb>,
    #[prost(message, optional, tag = "11")]
    p11: Option<ChunkedPb>,
}

/// Every `V1State.Chunked.*` message: the unchunked state, then an encoder or a decoder in
/// fields 2 and 3 depending on the phase (kept as bytes until the phase says which).
#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct ChunkedPb {
    #[prost(message, optional, tag = "1")]
    uc: Option<UnchunkedPb>,
    #[prost(bytes = "vec", tag = "2")]
    f2: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    f3: Vec<u8>,
}

/// Every `V1State.Unchunked.*` message: epoch and authenticator, then up to three byte fields
/// whose meaning depends on the phase.
#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct UnchunkedPb {
    #[prost(uint64, tag = "1")]
    epoch: u64,
    #[prost(message, optional, tag = "2")]
    auth: Option<AuthenticatorPb>,
    #[prost(bytes = "vec", tag = "3")]
    f3: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    f4: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    f5: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct AuthenticatorPb {
    #[prost(bytes = "vec", tag = "1")]
    root_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    mac_key: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct PolyEncoderPb {
    #[prost(uint32, tag = "1")]
    idx: u32,
    /// Per polynomial, the payload's values (big-endian u16) before interpolation...
    #[prost(bytes = "vec", repeated, tag = "2")]
    pts: Vec<Vec<u8>>,
    /// ... or, after it, the polynomials' coefficients (big-endian u16, constant term first).
    #[prost(bytes = "vec", repeated, tag = "3")]
    polys: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct PolyDecoderPb {
    #[prost(uint32, tag = "1")]
    pts_needed: u32,
    #[prost(uint32, tag = "2")]
    polys: u32,
    /// Per polynomial, the received points as big-endian `x ‖ y` pairs (as ours).
    #[prost(bytes = "vec", repeated, tag = "3")]
    pts: Vec<Vec<u8>>,
    #[prost(bool, tag = "4")]
    is_complete: bool,
}

fn u16s(bytes: &[u8]) -> Result<Vec<u16>, Error> {
    if !bytes.len().is_multiple_of(2) {
        return Err(Error::StateDecode);
    }
    Ok(bytes.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]])).collect())
}

/// Upstream's encoder of a `len`-byte payload, as ours.
fn encoder(bytes: &[u8], len: usize) -> Result<EncoderPb, Error> {
    let mut pb = PolyEncoderPb::decode(bytes).map_err(|_| Error::StateDecode)?;
    let payload = (|| match (pb.pts.is_empty(), pb.polys.is_empty()) {
        (false, true) => {
            if pb.pts.len() != 16 {
                return Err(Error::StateDecode);
            }
            let columns = pb.pts.iter().map(|column| u16s(column)).collect::<Result<Vec<_>, _>>()?;
            let mut payload = Zeroizing::new(Vec::with_capacity(len));
            for word in 0..len / 2 {
                let value =
                    columns.get(word % 16).and_then(|column| column.get(word / 16)).ok_or(Error::StateDecode)?;
                payload.extend_from_slice(&value.to_be_bytes());
            }
            // Upstream's points are exactly the payload's values: any more is not its encoder.
            if columns.iter().map(Vec::len).sum::<usize>() != len / 2 {
                return Err(Error::StateDecode);
            }
            Ok(payload.to_vec())
        }
        (true, false) => {
            let polys = pb.polys.iter().map(|poly| u16s(poly)).collect::<Result<Vec<_>, _>>()?;
            // A polynomial through n points has at most n coefficients.
            if polys.iter().any(|poly| poly.len() > len / 2 / 16 + 1) {
                return Err(Error::StateDecode);
            }
            payload_from_polys(len, &polys).ok_or(Error::StateDecode)
        }
        _ => Err(Error::StateDecode),
    })();
    let idx = pb.idx;
    pb.zeroize();
    Ok(EncoderPb { payload: payload?, next_index: idx })
}

/// Upstream's decoder of a `len`-byte payload, as ours.
fn decoder(bytes: &[u8], len: usize) -> Result<DecoderPb, Error> {
    let pb = PolyDecoderPb::decode(bytes).map_err(|_| Error::StateDecode)?;
    if pb.pts_needed as usize != len / 2 || pb.pts.len() != 16 {
        return Err(Error::StateDecode);
    }
    Ok(DecoderPb { points: pb.pts })
}

/// The randomness of upstream's encapsulation state `state`, checked against the ct1 upstream
/// sent from it for `header`.
fn encapsulation(header: &[u8], state: &[u8], ct1: &[u8]) -> Result<Vec<u8>, Error> {
    let rand = kem::randomness_of_state(state).ok_or(Error::StateDecode)?;
    let (again, _) = kem::encapsulate1(header, &rand)?;
    if again != ct1 {
        return Err(Error::InconsistentState);
    }
    Ok(rand.to_vec())
}

/// The decapsulation key `dk`, checked, as our braid's `key_pair` field; with `ek`, also
/// checked to be the key pair's encapsulation key.
fn key_pair(dk: &[u8], ek: Option<&[u8]>) -> Result<Vec<u8>, Error> {
    let pair = KeyPair::expanded(dk).ok_or(Error::StateDecode)?;
    if let Some(ek) = ek
        && kem::public_parts(&pair).1 != ek
    {
        return Err(Error::InconsistentState);
    }
    Ok(dk.to_vec())
}

fn braid(v1: &UpstreamV1Pb) -> Result<BraidPb, Error> {
    let phases = [&v1.p1, &v1.p2, &v1.p3, &v1.p4, &v1.p5, &v1.p6, &v1.p7, &v1.p8, &v1.p9, &v1.p10, &v1.p11];
    let mut set = phases.iter().enumerate().filter_map(|(index, phase)| phase.as_ref().map(|pb| (index + 1, pb)));
    let (phase, chunked) = set.next().ok_or(Error::StateDecode)?;
    if set.next().is_some() {
        return Err(Error::StateDecode);
    }
    let uc = chunked.uc.as_ref().ok_or(Error::StateDecode)?;
    let auth = uc.auth.as_ref().ok_or(Error::StateDecode)?;
    let mut pb = BraidPb {
        epoch: uc.epoch,
        auth_root: auth.root_key.clone(),
        auth_mac: auth.mac_key.clone(),
        phase: u32::try_from(phase).map_err(|_| Error::StateDecode)?,
        ..BraidPb::default()
    };
    let (f2, f3) = (&chunked.f2, &chunked.f3);
    match phase {
        1 => {}
        2 => {
            pb.key_pair = key_pair(&uc.f4, Some(&uc.f3))?;
            pb.sending = Some(encoder(f2, HEADER_PAYLOAD_LEN)?);
        }
        3 => {
            pb.key_pair = key_pair(&uc.f3, None)?;
            pb.sending = Some(encoder(f2, kem::EK_LEN)?);
            pb.receiving = Some(decoder(f3, kem::CT1_LEN)?);
        }
        4 => {
            pb.key_pair = key_pair(&uc.f3, None)?;
            pb.ct1 = uc.f4.clone();
            pb.sending = Some(encoder(f2, kem::EK_LEN)?);
        }
        5 => {
            pb.key_pair = key_pair(&uc.f3, None)?;
            pb.ct1 = uc.f4.clone();
            pb.receiving = Some(decoder(f3, CT2_PAYLOAD_LEN)?);
        }
        6 => pb.receiving = Some(decoder(f2, HEADER_PAYLOAD_LEN)?),
        7 => {
            pb.header = uc.f3.clone();
            pb.receiving = Some(decoder(f2, kem::EK_LEN)?);
        }
        8 => {
            let sending = encoder(f2, kem::CT1_LEN)?;
            if sending.payload != uc.f5 {
                return Err(Error::InconsistentState);
            }
            pb.header = uc.f3.clone();
            pb.encaps_rand = encapsulation(&uc.f3, &uc.f4, &uc.f5)?;
            pb.sending = Some(sending);
            pb.receiving = Some(decoder(f3, kem::EK_LEN)?);
        }
        9 => {
            let sending = encoder(f2, kem::CT1_LEN)?;
            if sending.payload != uc.f5 {
                return Err(Error::InconsistentState);
            }
            // No header here: the state itself is kept (checked by `super::braid_from`).
            pb.encaps_state = uc.f3.clone();
            pb.ek = uc.f4.clone();
            pb.sending = Some(sending);
        }
        10 => {
            pb.header = uc.f3.clone();
            pb.encaps_rand = encapsulation(&uc.f3, &uc.f4, &uc.f5)?;
            pb.ct1 = uc.f5.clone();
            pb.receiving = Some(decoder(f2, kem::EK_LEN)?);
        }
        _ => pb.sending = Some(encoder(f2, CT2_PAYLOAD_LEN)?),
    }
    Ok(pb)
}

/// Keeps the `max` highest-indexed of the skipped keys in `prev`.
fn newest_skipped(prev: &[u8], max: u32) -> Result<Vec<u8>, Error> {
    if !prev.len().is_multiple_of(36) {
        return Err(Error::StateDecode);
    }
    let mut entries: Vec<&[u8]> = prev.chunks_exact(36).collect();
    entries.sort_by_key(|entry| entry.get(..4).map(<[u8]>::to_vec));
    let keep = entries.len().saturating_sub(max as usize);
    Ok(entries.get(keep..).unwrap_or_default().concat())
}

fn chain(pb: &UpstreamChainPb, params: ChainParams) -> Result<ChainPb, Error> {
    let half = |direction: &Option<UpstreamDirectionPb>| -> Result<HalfChainPb, Error> {
        let direction = direction.as_ref().ok_or(Error::StateDecode)?;
        Ok(HalfChainPb {
            ctr: direction.ctr,
            next: direction.next.clone(),
            skipped: newest_skipped(&direction.prev, params.max_ooo_keys)?,
        })
    };
    Ok(ChainPb {
        direction: u32::try_from(pb.direction).map_err(|_| Error::StateDecode)?,
        current_epoch: pb.current_epoch,
        send_epoch: pb.send_epoch,
        next_root: pb.next_root.clone(),
        max_jump: params.max_jump,
        max_ooo_keys: params.max_ooo_keys,
        links: pb
            .links
            .iter()
            .map(|link| Ok(LinkPb { send: Some(half(&link.send)?), recv: Some(half(&link.recv)?) }))
            .collect::<Result<_, Error>>()?,
    })
}

/// The state upstream's `bytes` hold, with our `params` for its chains. Empty bytes are a
/// version 0 state, as upstream reads them.
pub(crate) fn decode(bytes: &[u8], params: ChainParams) -> Result<State, Error> {
    if bytes.len() > super::MAX_STATE_LEN {
        return Err(Error::StateTooLarge("state bytes"));
    }
    let params = super::params_from(params.max_jump, params.max_ooo_keys)?;
    let mut upstream = UpstreamStatePb::decode(bytes).map_err(|_| Error::StateDecode)?;
    let mapped = (|| {
        let Some(v1) = &upstream.v1 else {
            return Ok(StatePb::default());
        };
        Ok(StatePb {
            v1: true,
            negotiation: upstream
                .version_negotiation
                .as_ref()
                .map(|negotiation| {
                    Ok::<_, Error>(NegotiationPb {
                        auth_key: negotiation.auth_key.clone(),
                        direction: u32::try_from(negotiation.direction).map_err(|_| Error::StateDecode)?,
                        min_version: u32::try_from(negotiation.min_version).map_err(|_| Error::StateDecode)?,
                        max_jump: params.max_jump,
                        max_ooo_keys: params.max_ooo_keys,
                    })
                })
                .transpose()?,
            chain: upstream.chain.as_ref().map(|pb| chain(pb, params)).transpose()?,
            braid: Some(braid(v1)?),
        })
    })();
    upstream.zeroize();
    let mut mapped = mapped?;
    let state = super::state_from(&mapped);
    mapped.zeroize();
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: ChainParams = ChainParams { max_jump: 100, max_ooo_keys: 50 };

    fn chunked(uc: UnchunkedPb, f2: Vec<u8>, f3: Vec<u8>) -> Option<ChunkedPb> {
        Some(ChunkedPb { uc: Some(uc), f2, f3 })
    }

    fn unchunked(epoch: u64) -> UnchunkedPb {
        UnchunkedPb {
            epoch,
            auth: Some(AuthenticatorPb { root_key: vec![1; 32], mac_key: vec![2; 32] }),
            ..UnchunkedPb::default()
        }
    }

    fn negotiation() -> Option<UpstreamNegotiationPb> {
        Some(UpstreamNegotiationPb { auth_key: vec![9; 32], direction: 1, min_version: 1 })
    }

    fn empty_decoder(len: usize) -> Vec<u8> {
        PolyDecoderPb { pts_needed: (len / 2) as u32, polys: 16, pts: vec![Vec::new(); 16], is_complete: false }
            .encode_to_vec()
    }

    /// A responder's state before anything arrived: version 1 still negotiating, no chain,
    /// collecting the header (upstream's phase 6).
    fn fresh_responder() -> UpstreamStatePb {
        UpstreamStatePb {
            version_negotiation: negotiation(),
            chain: None,
            v1: Some(UpstreamV1Pb {
                p6: chunked(unchunked(1), empty_decoder(HEADER_PAYLOAD_LEN), Vec::new()),
                ..UpstreamV1Pb::default()
            }),
        }
    }

    #[test]
    fn a_fresh_responder_and_a_version_0_state_come_over() {
        let state = decode(&fresh_responder().encode_to_vec(), PARAMS).unwrap();
        assert_eq!(
            format!("{state:?}"),
            r#"State { version: StillNegotiating { version: V1, min_version: V1 }, epoch: 1, phase: "NoHeaderReceived", .. }"#
        );
        assert_eq!(
            decode(&[], PARAMS).unwrap().version(),
            crate::CurrentVersion::NegotiationComplete(crate::Version::V0)
        );
    }

    #[test]
    fn malformed_states_are_refused() {
        assert_eq!(decode(&[0xff; 7], PARAMS).unwrap_err(), Error::StateDecode);
        let too_long = vec![0u8; super::super::MAX_STATE_LEN + 1];
        assert_eq!(decode(&too_long, PARAMS).unwrap_err(), Error::StateTooLarge("state bytes"));

        // Two phases at once, none, a missing authenticator, a decoder of the wrong length.
        let mut two = fresh_responder();
        two.v1.as_mut().unwrap().p1 = chunked(unchunked(1), Vec::new(), Vec::new());
        let mut none = fresh_responder();
        none.v1 = Some(UpstreamV1Pb::default());
        let mut no_auth = fresh_responder();
        no_auth.v1.as_mut().unwrap().p6.as_mut().unwrap().uc.as_mut().unwrap().auth = None;
        let mut wrong_len = fresh_responder();
        wrong_len.v1.as_mut().unwrap().p6.as_mut().unwrap().f2 = empty_decoder(HEADER_PAYLOAD_LEN + 2);
        let mut no_negotiation_no_chain = fresh_responder();
        no_negotiation_no_chain.version_negotiation = None;
        for state in [two, none, no_auth, wrong_len, no_negotiation_no_chain] {
            assert_eq!(decode(&state.encode_to_vec(), PARAMS).unwrap_err(), Error::StateDecode);
        }
    }

    #[test]
    fn key_material_that_does_not_match_itself_is_refused() {
        // Phase 2 with a decapsulation key whose public half was altered.
        let pair = libcrux_ml_kem::mlkem768::incremental::KeyPairCompressedBytes::from_seed([4; 64]);
        let mut dk = pair.sk().to_vec();
        let ek = pair.pk2().to_vec();
        let encoder = PolyEncoderPb { idx: 1, pts: vec![vec![0; 6]; 16], polys: Vec::new() }.encode_to_vec();
        let keys_sampled = |dk: Vec<u8>, ek: Vec<u8>| UpstreamStatePb {
            version_negotiation: negotiation(),
            chain: None,
            v1: Some(UpstreamV1Pb {
                p2: chunked(UnchunkedPb { f3: ek, f4: dk, ..unchunked(1) }, encoder.clone(), Vec::new()),
                ..UpstreamV1Pb::default()
            }),
        };
        assert!(decode(&keys_sampled(dk.clone(), ek.clone()).encode_to_vec(), PARAMS).is_ok());
        let mut other_ek = ek.clone();
        other_ek[0] ^= 1;
        assert_eq!(
            decode(&keys_sampled(dk.clone(), other_ek).encode_to_vec(), PARAMS).unwrap_err(),
            Error::InconsistentState
        );
        dk[kem::EK_LEN + 5] ^= 1;
        assert_eq!(decode(&keys_sampled(dk, ek).encode_to_vec(), PARAMS).unwrap_err(), Error::StateDecode);
    }

    #[test]
    fn skipped_keys_beyond_our_limit_keep_the_newest() {
        let entry = |index: u32| [index.to_be_bytes().as_slice(), &[index as u8; 32]].concat();
        let prev: Vec<u8> = [7u32, 3, 9, 5].iter().flat_map(|index| entry(*index)).collect();
        assert_eq!(newest_skipped(&prev, 2).unwrap(), [entry(7), entry(9)].concat());
        assert_eq!(newest_skipped(&prev, 10).unwrap(), [entry(3), entry(5), entry(7), entry(9)].concat());
        assert_eq!(newest_skipped(&prev[1..], 10).unwrap_err(), Error::StateDecode);
    }
}
