//! The persisted state format: one format byte, then a protobuf message (hand-written prost
//! structs).
//!
//! This is our own format, not upstream's: only messages and keys need to match the official
//! runtime. Decoding validates every length and invariant the code relies on, so a damaged or
//! hostile state file gives [`Error::StateDecode`], never a panic. The protobuf structs are wiped
//! after use since they hold copies of every secret.

use std::collections::{BTreeMap, VecDeque};

use prost::Message as _;
use zeroize::{Zeroize, Zeroizing};

use crate::auth::Authenticator;
use crate::braid::{Braid, CT2_PAYLOAD_LEN, HEADER_PAYLOAD_LEN, Phase};
use crate::chain::{Chain, HalfChain, Key, Link};
use crate::erasure::{Decoder, Encoder};
use crate::kem::{self, Encapsulation, KeyPair};
use crate::{ChainParams, Direction, Error, Negotiation, State, V1State, Version};

mod upstream;

/// The first byte of every state we write; bump it when the layout changes incompatibly.
const FORMAT_V1: u8 = 1;

/// The most epochs' chains a state holds. Sending drops the links older than the one before
/// the send epoch, and no epoch completes without our sending, so a state never holds more
/// than three or four; twice that leaves room and still bounds a hostile state.
pub(crate) const MAX_LINKS: usize = 8;

/// The longest state bytes accepted: eight receiving chains (the most a state holds) full of skipped keys
/// (36 bytes each, at most [`ChainParams::MAX`]'s `max_ooo_keys`) plus the braid's few
/// kilobytes, rounded up.
pub const MAX_STATE_LEN: usize = 1 << 20;

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct StatePb {
    /// True for a version 1 session; the remaining fields are then meaningful.
    #[prost(bool, tag = "1")]
    v1: bool,
    #[prost(message, optional, tag = "2")]
    negotiation: Option<NegotiationPb>,
    #[prost(message, optional, tag = "3")]
    chain: Option<ChainPb>,
    #[prost(message, optional, tag = "4")]
    braid: Option<BraidPb>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct NegotiationPb {
    #[prost(bytes = "vec", tag = "1")]
    auth_key: Vec<u8>,
    #[prost(uint32, tag = "2")]
    direction: u32,
    #[prost(uint32, tag = "3")]
    min_version: u32,
    #[prost(uint32, tag = "4")]
    max_jump: u32,
    #[prost(uint32, tag = "5")]
    max_ooo_keys: u32,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct ChainPb {
    #[prost(uint32, tag = "1")]
    direction: u32,
    #[prost(uint64, tag = "2")]
    current_epoch: u64,
    #[prost(uint64, tag = "3")]
    send_epoch: u64,
    #[prost(bytes = "vec", tag = "4")]
    next_root: Vec<u8>,
    #[prost(uint32, tag = "5")]
    max_jump: u32,
    #[prost(uint32, tag = "6")]
    max_ooo_keys: u32,
    #[prost(message, repeated, tag = "7")]
    links: Vec<LinkPb>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct LinkPb {
    #[prost(message, optional, tag = "1")]
    send: Option<HalfChainPb>,
    #[prost(message, optional, tag = "2")]
    recv: Option<HalfChainPb>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct HalfChainPb {
    #[prost(uint32, tag = "1")]
    ctr: u32,
    /// Empty once erased.
    #[prost(bytes = "vec", tag = "2")]
    next: Vec<u8>,
    /// Skipped keys: 4-byte big-endian index then the 32-byte key, repeated.
    #[prost(bytes = "vec", tag = "3")]
    skipped: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct BraidPb {
    #[prost(uint64, tag = "1")]
    epoch: u64,
    #[prost(bytes = "vec", tag = "2")]
    auth_root: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    auth_mac: Vec<u8>,
    /// Which [`Phase`], numbered as upstream's state oneof (1..=11).
    #[prost(uint32, tag = "4")]
    phase: u32,
    #[prost(bytes = "vec", tag = "5")]
    key_seed: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    encaps_rand: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    header: Vec<u8>,
    #[prost(bytes = "vec", tag = "8")]
    ek: Vec<u8>,
    #[prost(bytes = "vec", tag = "9")]
    ct1: Vec<u8>,
    #[prost(message, optional, tag = "10")]
    sending: Option<EncoderPb>,
    #[prost(message, optional, tag = "11")]
    receiving: Option<DecoderPb>,
    /// An expanded key pair, in place of `key_seed` (a state imported from upstream's format).
    #[prost(bytes = "vec", tag = "12")]
    key_pair: Vec<u8>,
    /// libcrux's encapsulation state, in place of `header` and `encaps_rand` (a state imported
    /// from upstream's format in phase 9).
    #[prost(bytes = "vec", tag = "13")]
    encaps_state: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct EncoderPb {
    #[prost(bytes = "vec", tag = "1")]
    payload: Vec<u8>,
    #[prost(uint32, tag = "2")]
    next_index: u32,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct DecoderPb {
    /// Per polynomial (16 entries): (x, y) as big-endian u16 pairs, in x order.
    #[prost(bytes = "vec", repeated, tag = "1")]
    points: Vec<Vec<u8>>,
}

fn direction_number(d: Direction) -> u32 {
    match d {
        Direction::A2B => 0,
        Direction::B2A => 1,
    }
}

fn direction_from(n: u32) -> Result<Direction, Error> {
    match n {
        0 => Ok(Direction::A2B),
        1 => Ok(Direction::B2A),
        _ => Err(Error::StateDecode),
    }
}

fn key_from(bytes: &[u8]) -> Result<Key, Error> {
    let mut k = Zeroizing::new([0u8; 32]);
    k.copy_from_slice(bytes.get(..32).filter(|_| bytes.len() == 32).ok_or(Error::StateDecode)?);
    Ok(k)
}

fn exact<const N: usize>(bytes: &[u8]) -> Result<Zeroizing<[u8; N]>, Error> {
    let mut out = Zeroizing::new([0u8; N]);
    if bytes.len() != N {
        return Err(Error::StateDecode);
    }
    out.copy_from_slice(bytes);
    Ok(out)
}

fn exact_vec(bytes: &[u8], len: usize) -> Result<Vec<u8>, Error> {
    if bytes.len() != len {
        return Err(Error::StateDecode);
    }
    Ok(bytes.to_vec())
}

/// Serializes `state`.
pub(crate) fn encode(state: &State) -> Zeroizing<Vec<u8>> {
    let mut pb = match &state.v1 {
        None => StatePb::default(),
        Some(v1) => StatePb {
            v1: true,
            negotiation: v1.negotiation.as_ref().map(|n| NegotiationPb {
                auth_key: n.auth_key.to_vec(),
                direction: direction_number(n.direction),
                min_version: u32::from(n.min_version.number()),
                max_jump: n.chain_params.max_jump,
                max_ooo_keys: n.chain_params.max_ooo_keys,
            }),
            chain: v1.chain.as_ref().map(chain_pb),
            braid: Some(braid_pb(&v1.braid)),
        },
    };
    let mut out = Zeroizing::new(Vec::with_capacity(1 + pb.encoded_len()));
    out.push(FORMAT_V1);
    // Encoding into a Vec only fails for lack of capacity, which a Vec grows on demand.
    let _ = pb.encode(&mut *out);
    pb.zeroize();
    out
}

fn chain_pb(chain: &Chain) -> ChainPb {
    let half = |h: &HalfChain| HalfChainPb {
        ctr: h.ctr,
        next: h.next.as_ref().map(|k| k.to_vec()).unwrap_or_default(),
        skipped: {
            // Sized up front so that no reallocation leaves stray copies of keys behind.
            let mut out = Vec::with_capacity(h.skipped.len() * 36);
            for (i, k) in &h.skipped {
                out.extend_from_slice(&i.to_be_bytes());
                out.extend_from_slice(k.as_slice());
            }
            out
        },
    };
    ChainPb {
        direction: direction_number(chain.dir),
        current_epoch: chain.current_epoch,
        send_epoch: chain.send_epoch,
        next_root: chain.next_root.to_vec(),
        max_jump: chain.params.max_jump,
        max_ooo_keys: chain.params.max_ooo_keys,
        links: chain.links.iter().map(|l| LinkPb { send: Some(half(&l.send)), recv: Some(half(&l.recv)) }).collect(),
    }
}

fn encoder_pb(e: &Encoder) -> Option<EncoderPb> {
    Some(EncoderPb { payload: e.payload().to_vec(), next_index: e.next_index() })
}

fn decoder_pb(d: &Decoder) -> Option<DecoderPb> {
    Some(DecoderPb { points: d.points_be() })
}

fn set_keys(pb: &mut BraidPb, keys: &KeyPair) {
    match keys {
        KeyPair::Seed(seed) => pb.key_seed = seed.to_vec(),
        KeyPair::Expanded(pair) => pb.key_pair = pair.to_vec(),
    }
}

fn braid_pb(b: &Braid) -> BraidPb {
    let (root, mac) = b.auth.keys();
    let mut pb = BraidPb { epoch: b.epoch, auth_root: root.to_vec(), auth_mac: mac.to_vec(), ..Default::default() };
    match &b.phase {
        Phase::KeysUnsampled => pb.phase = 1,
        Phase::KeysSampled { seed, header_out } => {
            pb.phase = 2;
            set_keys(&mut pb, seed);
            pb.sending = encoder_pb(header_out);
        }
        Phase::HeaderSent { seed, ek_out, ct1_in } => {
            pb.phase = 3;
            set_keys(&mut pb, seed);
            pb.sending = encoder_pb(ek_out);
            pb.receiving = decoder_pb(ct1_in);
        }
        Phase::Ct1Received { seed, ct1, ek_out } => {
            pb.phase = 4;
            set_keys(&mut pb, seed);
            pb.ct1 = ct1.clone();
            pb.sending = encoder_pb(ek_out);
        }
        Phase::EkSentCt1Received { seed, ct1, ct2_in } => {
            pb.phase = 5;
            set_keys(&mut pb, seed);
            pb.ct1 = ct1.clone();
            pb.receiving = decoder_pb(ct2_in);
        }
        Phase::NoHeaderReceived { header_in } => {
            pb.phase = 6;
            pb.receiving = decoder_pb(header_in);
        }
        Phase::HeaderReceived { header, ek_in } => {
            pb.phase = 7;
            pb.header = header.clone();
            pb.receiving = decoder_pb(ek_in);
        }
        Phase::Ct1Sampled { header, rand, ct1_out, ek_in } => {
            pb.phase = 8;
            pb.header = header.clone();
            pb.encaps_rand = rand.to_vec();
            pb.sending = encoder_pb(ct1_out);
            pb.receiving = decoder_pb(ek_in);
        }
        Phase::EkReceivedCt1Sampled { encaps, ek, ct1_out } => {
            pb.phase = 9;
            match encaps {
                Encapsulation::Rand { header, rand } => {
                    pb.header = header.clone();
                    pb.encaps_rand = rand.to_vec();
                }
                Encapsulation::State(state) => pb.encaps_state = state.to_vec(),
            }
            pb.ek = ek.clone();
            pb.sending = encoder_pb(ct1_out);
        }
        Phase::Ct1Acknowledged { header, rand, ct1, ek_in } => {
            pb.phase = 10;
            pb.header = header.clone();
            pb.encaps_rand = rand.to_vec();
            pb.ct1 = ct1.clone();
            pb.receiving = decoder_pb(ek_in);
        }
        Phase::Ct2Sampled { ct2_out } => {
            pb.phase = 11;
            pb.sending = encoder_pb(ct2_out);
        }
    }
    pb
}

/// Parses upstream's state bytes (see [`upstream`]).
pub(crate) fn upstream_decode(bytes: &[u8], params: ChainParams) -> Result<State, Error> {
    upstream::decode(bytes, params)
}

/// Parses state bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<State, Error> {
    let Some((&format, body)) = bytes.split_first() else {
        return Ok(State { v1: None });
    };
    if format != FORMAT_V1 {
        return Err(Error::StateDecode);
    }
    if bytes.len() > MAX_STATE_LEN {
        return Err(Error::StateTooLarge("state bytes"));
    }
    let mut pb = StatePb::decode(body).map_err(|_| Error::StateDecode)?;
    let result = state_from(&pb);
    pb.zeroize();
    result
}

fn state_from(pb: &StatePb) -> Result<State, Error> {
    if !pb.v1 {
        if pb.negotiation.is_some() || pb.chain.is_some() || pb.braid.is_some() {
            return Err(Error::StateDecode);
        }
        return Ok(State { v1: None });
    }
    let negotiation = pb.negotiation.as_ref().map(negotiation_from).transpose()?;
    let chain = pb.chain.as_ref().map(chain_from).transpose()?;
    if negotiation.is_none() && chain.is_none() {
        return Err(Error::StateDecode);
    }
    let braid = braid_from(pb.braid.as_ref().ok_or(Error::StateDecode)?)?;
    Ok(State { v1: Some(V1State { braid, negotiation, chain }) })
}

fn params_from(max_jump: u32, max_ooo_keys: u32) -> Result<ChainParams, Error> {
    let params = ChainParams { max_jump, max_ooo_keys }.normalized();
    // The limits bound a message's work and the keys kept: a stored state may not raise them.
    if params.max_jump > ChainParams::MAX.max_jump || params.max_ooo_keys > ChainParams::MAX.max_ooo_keys {
        return Err(Error::StateTooLarge("chain parameters"));
    }
    Ok(params)
}

fn negotiation_from(pb: &NegotiationPb) -> Result<Negotiation, Error> {
    if pb.auth_key.len() > crate::MAX_AUTH_KEY_LEN {
        return Err(Error::StateTooLarge("auth key"));
    }
    Ok(Negotiation {
        auth_key: Zeroizing::new(pb.auth_key.clone()),
        direction: direction_from(pb.direction)?,
        min_version: Version::from_number(u64::from(pb.min_version)).ok_or(Error::StateDecode)?,
        chain_params: params_from(pb.max_jump, pb.max_ooo_keys)?,
    })
}

fn half_from(pb: &HalfChainPb, params: &ChainParams) -> Result<HalfChain, Error> {
    let next = if pb.next.is_empty() { None } else { Some(key_from(&pb.next)?) };
    if !pb.skipped.len().is_multiple_of(36) {
        return Err(Error::StateDecode);
    }
    if pb.skipped.len() / 36 > params.max_ooo_keys as usize {
        return Err(Error::StateTooLarge("skipped keys"));
    }
    let mut skipped = BTreeMap::new();
    for entry in pb.skipped.chunks_exact(36) {
        let (index, key) = entry.split_at(4);
        let index = u32::from_be_bytes(index.try_into().map_err(|_| Error::StateDecode)?);
        if index == 0 || index >= pb.ctr || skipped.insert(index, key_from(key)?).is_some() {
            return Err(Error::StateDecode);
        }
    }
    Ok(HalfChain { ctr: pb.ctr, next, skipped })
}

fn chain_from(pb: &ChainPb) -> Result<Chain, Error> {
    let params = params_from(pb.max_jump, pb.max_ooo_keys)?;
    if pb.links.len() > MAX_LINKS {
        return Err(Error::StateTooLarge("chain links"));
    }
    let links = pb
        .links
        .iter()
        .map(|l| {
            Ok(Link {
                send: half_from(l.send.as_ref().ok_or(Error::StateDecode)?, &params)?,
                recv: half_from(l.recv.as_ref().ok_or(Error::StateDecode)?, &params)?,
            })
        })
        .collect::<Result<VecDeque<_>, Error>>()?;
    // The links cover epochs up to the current one, and sending never ran ahead of them.
    let span = u64::try_from(links.len()).map_err(|_| Error::StateDecode)?;
    if links.is_empty() || span > pb.current_epoch.saturating_add(1) || pb.send_epoch > pb.current_epoch {
        return Err(Error::StateDecode);
    }
    Ok(Chain {
        dir: direction_from(pb.direction)?,
        current_epoch: pb.current_epoch,
        send_epoch: pb.send_epoch,
        links,
        next_root: key_from(&pb.next_root)?,
        params,
    })
}

fn encoder_from(pb: Option<&EncoderPb>, len: usize) -> Result<Encoder, Error> {
    let pb = pb.ok_or(Error::StateDecode)?;
    if pb.payload.len() != len {
        return Err(Error::StateDecode);
    }
    Encoder::resume(pb.payload.clone(), pb.next_index).ok_or(Error::StateDecode)
}

fn decoder_from(pb: Option<&DecoderPb>, len: usize) -> Result<Decoder, Error> {
    let pb = pb.ok_or(Error::StateDecode)?;
    let mut points = Vec::with_capacity(pb.points.len());
    for raw in &pb.points {
        if !raw.len().is_multiple_of(4) {
            return Err(Error::StateDecode);
        }
        let pts: Vec<(u16, u16)> =
            raw.chunks_exact(4).map(|p| (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]]))).collect();
        // Points are stored in strictly increasing x order; anything else was not written by us.
        if pts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(Error::StateDecode);
        }
        points.push(pts);
    }
    Decoder::from_points(len, points).ok_or(Error::StateDecode)
}

fn braid_from(pb: &BraidPb) -> Result<Braid, Error> {
    if pb.epoch == 0 {
        return Err(Error::StateDecode);
    }
    let auth = Authenticator::from_keys(*exact::<32>(&pb.auth_root)?, *exact::<32>(&pb.auth_mac)?);
    let seed = || match (pb.key_seed.is_empty(), pb.key_pair.is_empty()) {
        (false, true) => Ok(KeyPair::Seed(exact::<{ kem::KEYGEN_SEED_LEN }>(&pb.key_seed)?)),
        // The pair goes to libcrux later: it is checked first, as a received key would be.
        (true, false) => KeyPair::expanded(&pb.key_pair).ok_or(Error::StateDecode),
        _ => Err(Error::StateDecode),
    };
    let rand = || exact::<{ kem::ENCAPS_RAND_LEN }>(&pb.encaps_rand);
    let header = || exact_vec(&pb.header, kem::HEADER_LEN);
    let ct1 = || exact_vec(&pb.ct1, kem::CT1_LEN);
    let sending = |len| encoder_from(pb.sending.as_ref(), len);
    let receiving = |len| decoder_from(pb.receiving.as_ref(), len);
    let phase = match pb.phase {
        1 => Phase::KeysUnsampled,
        2 => Phase::KeysSampled { seed: seed()?, header_out: sending(HEADER_PAYLOAD_LEN)? },
        3 => Phase::HeaderSent { seed: seed()?, ek_out: sending(kem::EK_LEN)?, ct1_in: receiving(kem::CT1_LEN)? },
        4 => Phase::Ct1Received { seed: seed()?, ct1: ct1()?, ek_out: sending(kem::EK_LEN)? },
        5 => Phase::EkSentCt1Received { seed: seed()?, ct1: ct1()?, ct2_in: receiving(CT2_PAYLOAD_LEN)? },
        6 => Phase::NoHeaderReceived { header_in: receiving(HEADER_PAYLOAD_LEN)? },
        7 => Phase::HeaderReceived { header: header()?, ek_in: receiving(kem::EK_LEN)? },
        8 => Phase::Ct1Sampled {
            header: header()?,
            rand: rand()?,
            ct1_out: sending(kem::CT1_LEN)?,
            ek_in: receiving(kem::EK_LEN)?,
        },
        9 => {
            let ek = exact_vec(&pb.ek, kem::EK_LEN)?;
            // The key goes to libcrux unchecked later; check it now as it was checked on
            // receipt (without a header, as far as the key alone can be).
            let encaps = if pb.encaps_state.is_empty() {
                let header = header()?;
                if !kem::ek_matches_header(&header, &ek) {
                    return Err(Error::StateDecode);
                }
                Encapsulation::Rand { header, rand: rand()? }
            } else {
                if !pb.header.is_empty() || !pb.encaps_rand.is_empty() || !kem::ek_well_formed(&ek) {
                    return Err(Error::StateDecode);
                }
                Encapsulation::State(kem::normalized_state(&pb.encaps_state).ok_or(Error::StateDecode)?)
            };
            Phase::EkReceivedCt1Sampled { encaps, ek, ct1_out: sending(kem::CT1_LEN)? }
        }
        10 => Phase::Ct1Acknowledged { header: header()?, rand: rand()?, ct1: ct1()?, ek_in: receiving(kem::EK_LEN)? },
        11 => Phase::Ct2Sampled { ct2_out: sending(CT2_PAYLOAD_LEN)? },
        _ => return Err(Error::StateDecode),
    };
    Ok(Braid { epoch: pb.epoch, auth, phase })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Params;
    use rand::rngs::StdRng;
    use rand::{RngExt as _, SeedableRng};

    #[test]
    fn empty_and_v0() {
        let s = State::from_bytes(&[]).unwrap();
        assert!(s.v1.is_none());
        let bytes = s.to_bytes();
        assert_eq!(&bytes[..], &[FORMAT_V1]);
        assert!(State::from_bytes(&bytes).unwrap().v1.is_none());
        assert_eq!(State::from_bytes(&[9]).unwrap_err(), Error::StateDecode);
    }

    /// A state pb of a V1 state that has received (so it has a chain).
    fn chained_pb() -> StatePb {
        let mut rng = StdRng::seed_from_u64(4);
        let p = |direction| Params {
            direction,
            version: Version::V1,
            min_version: Version::V1,
            auth_key: b"k",
            chain_params: ChainParams::default(),
        };
        let (mut a, mut b) = (State::new(p(Direction::A2B)).unwrap(), State::new(p(Direction::B2A)).unwrap());
        b.recv(&a.send(&mut rng).unwrap().message).unwrap();
        a.recv(&b.send(&mut rng).unwrap().message).unwrap();
        let bytes = a.to_bytes();
        StatePb::decode(&bytes[1..]).unwrap()
    }

    fn decode_pb(pb: &StatePb) -> Result<State, Error> {
        let mut bytes = vec![FORMAT_V1];
        pb.encode(&mut bytes).unwrap();
        decode(&bytes)
    }

    #[test]
    fn states_over_the_limits_are_refused() {
        assert!(decode_pb(&chained_pb()).is_ok());
        let mut too_long = vec![FORMAT_V1];
        too_long.resize(MAX_STATE_LEN + 1, 0);
        assert_eq!(decode(&too_long).unwrap_err(), Error::StateTooLarge("state bytes"));

        let mut pb = chained_pb();
        let chain = pb.chain.as_mut().unwrap();
        chain.current_epoch = 100;
        chain.send_epoch = 0;
        let link = chain.links[0].clone();
        chain.links = vec![link.clone(); MAX_LINKS];
        assert!(decode_pb(&pb).is_ok(), "as many links as allowed");
        pb.chain.as_mut().unwrap().links.push(link);
        assert_eq!(decode_pb(&pb).unwrap_err(), Error::StateTooLarge("chain links"));

        let mut pb = chained_pb();
        pb.chain.as_mut().unwrap().max_jump = ChainParams::MAX.max_jump + 1;
        assert_eq!(decode_pb(&pb).unwrap_err(), Error::StateTooLarge("chain parameters"));
        let mut pb = chained_pb();
        pb.chain.as_mut().unwrap().max_ooo_keys = ChainParams::MAX.max_ooo_keys + 1;
        assert_eq!(decode_pb(&pb).unwrap_err(), Error::StateTooLarge("chain parameters"));

        // More skipped keys than the chain keeps (its own limit, here 3).
        let mut pb = chained_pb();
        let chain = pb.chain.as_mut().unwrap();
        chain.max_ooo_keys = 3;
        let recv = chain.links[0].recv.as_mut().unwrap();
        recv.ctr = 10;
        recv.skipped = (1..=4u32).flat_map(|index| index.to_be_bytes().into_iter().chain([7u8; 32])).collect();
        assert_eq!(decode_pb(&pb).unwrap_err(), Error::StateTooLarge("skipped keys"));

        let mut pb = chained_pb();
        pb.negotiation = Some(NegotiationPb { auth_key: vec![1; crate::MAX_AUTH_KEY_LEN + 1], ..Default::default() });
        assert_eq!(decode_pb(&pb).unwrap_err(), Error::StateTooLarge("auth key"));
    }

    /// Round trips through every phase, and garbage or truncated states never panic.
    #[test]
    fn round_trip_and_mutations() {
        let mut rng = StdRng::seed_from_u64(3);
        let p = |direction| Params {
            direction,
            version: Version::V1,
            min_version: Version::V1,
            auth_key: b"k",
            chain_params: ChainParams::default(),
        };
        let mut a = State::new(p(Direction::A2B)).unwrap();
        let mut b = State::new(p(Direction::B2A)).unwrap();
        let mut phases = std::collections::BTreeSet::new();
        // B's messages get through half the time, so each role sees both orders of "key
        // complete" and "ct1 acknowledged" across the epochs.
        for step in 0..200 {
            for s in [&a, &b] {
                let bytes = s.to_bytes();
                let back = State::from_bytes(&bytes).unwrap();
                assert_eq!(back.to_bytes(), bytes);
                phases.insert(s.v1.as_ref().unwrap().braid.phase.name());
                if step % 10 == 0 {
                    for _ in 0..20 {
                        let mut m = bytes.to_vec();
                        let i = rng.random_range(0..m.len());
                        m[i] = rng.random();
                        let _ = State::from_bytes(&m);
                        let cut = rng.random_range(0..m.len());
                        let _ = State::from_bytes(&m[..cut]);
                    }
                }
            }
            let sa = a.send(&mut rng).unwrap();
            b.recv(&sa.message).unwrap();
            let sb = b.send(&mut rng).unwrap();
            if step % 2 == 0 {
                a.recv(&sb.message).unwrap();
            }
        }
        assert_eq!(phases.len(), 11, "all phases visited: {phases:?}");
    }
}
