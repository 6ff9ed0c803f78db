//! The bytes of an SPQR v1 message, as carried in a Signal message's `pq_ratchet` field.
//!
//! Layout (spqr 1.5.1): version byte `1`, epoch (varint), chain index (varint), message type
//! (one byte), then for the types that carry a chunk: chunk index (varint) and 32 chunk bytes.
//! Decoding accepts exactly what upstream accepts, quirks included: varints of up to ten bytes
//! whose excess high bits are dropped, non-minimal varints, and trailing bytes (kept free for
//! future versions).

use crate::Error;
use crate::erasure::{CHUNK_BYTES, Chunk};

/// The version byte of every v1 message.
pub(crate) const V1: u8 = 1;
/// Upstream reads at most this many varint bytes.
const MAX_VARINT_LEN: usize = 10;

/// What a message carries for the braid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Payload {
    /// Nothing (type 0): the sender is waiting on its peer.
    None,
    /// A chunk of the encapsulation key header and its MAC (type 1).
    Header(Chunk),
    /// A chunk of the encapsulation key (type 2).
    Ek(Chunk),
    /// A chunk of the encapsulation key, also acknowledging the whole ct1 (type 3).
    EkCt1Ack(Chunk),
    /// Acknowledges the whole ct1 (type 4).
    Ct1Ack,
    /// A chunk of the first ciphertext part (type 5).
    Ct1(Chunk),
    /// A chunk of the second ciphertext part and its MAC (type 6).
    Ct2(Chunk),
}

impl Payload {
    fn parts(&self) -> (u8, Option<&Chunk>) {
        match self {
            Payload::None => (0, None),
            Payload::Header(c) => (1, Some(c)),
            Payload::Ek(c) => (2, Some(c)),
            Payload::EkCt1Ack(c) => (3, Some(c)),
            Payload::Ct1Ack => (4, None),
            Payload::Ct1(c) => (5, Some(c)),
            Payload::Ct2(c) => (6, Some(c)),
        }
    }
}

/// A decoded v1 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Message {
    /// The sender's braid epoch (never 0).
    pub(crate) epoch: u64,
    /// The index of this message's key in the sender's chain for epoch `epoch - 1`
    /// (0 = no key).
    pub(crate) index: u32,
    /// The braid payload.
    pub(crate) payload: Payload,
}

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint at `*at`, advancing `*at` past it.
fn get_varint(bytes: &[u8], at: &mut usize) -> Result<u64, Error> {
    let rest = bytes.get(*at..).ok_or(Error::MsgDecode)?;
    let mut value = 0u64;
    for (i, &b) in rest.iter().take(MAX_VARINT_LEN).enumerate() {
        // i <= 9, so the shift is at most 63; bits pushed past 64 are dropped, like upstream.
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *at += i + 1;
            return Ok(value);
        }
    }
    Err(Error::MsgDecode)
}

fn get_chunk(bytes: &[u8], at: &mut usize) -> Result<Chunk, Error> {
    let index = u16::try_from(get_varint(bytes, at)?).map_err(|_| Error::MsgDecode)?;
    let end = at.checked_add(CHUNK_BYTES).ok_or(Error::MsgDecode)?;
    let data: [u8; CHUNK_BYTES] =
        bytes.get(*at..end).ok_or(Error::MsgDecode)?.try_into().map_err(|_| Error::MsgDecode)?;
    *at = end;
    Ok(Chunk { index, data })
}

impl Message {
    /// The wire bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40);
        out.push(V1);
        put_varint(self.epoch, &mut out);
        put_varint(u64::from(self.index), &mut out);
        let (kind, chunk) = self.payload.parts();
        out.push(kind);
        if let Some(c) = chunk {
            put_varint(u64::from(c.index), &mut out);
            out.extend_from_slice(&c.data);
        }
        out
    }

    /// Parses a v1 message (the caller has checked the version byte is 1).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Message, Error> {
        if bytes.first() != Some(&V1) {
            return Err(Error::MsgDecode);
        }
        let mut at = 1;
        let epoch = get_varint(bytes, &mut at)?;
        if epoch == 0 {
            return Err(Error::MsgDecode);
        }
        let index = u32::try_from(get_varint(bytes, &mut at)?).map_err(|_| Error::MsgDecode)?;
        let kind = *bytes.get(at).ok_or(Error::MsgDecode)?;
        at += 1;
        let payload = match kind {
            0 => Payload::None,
            1 => Payload::Header(get_chunk(bytes, &mut at)?),
            2 => Payload::Ek(get_chunk(bytes, &mut at)?),
            3 => Payload::EkCt1Ack(get_chunk(bytes, &mut at)?),
            4 => Payload::Ct1Ack,
            5 => Payload::Ct1(get_chunk(bytes, &mut at)?),
            6 => Payload::Ct2(get_chunk(bytes, &mut at)?),
            _ => return Err(Error::MsgDecode),
        };
        Ok(Message { epoch, index, payload })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_examples() {
        let mut v = Vec::new();
        put_varint(300, &mut v);
        assert_eq!(v, [0xac, 0x02]);
        let mut at = 0;
        assert_eq!(get_varint(&[0x80, 0x00], &mut at).unwrap(), 0, "non-minimal is accepted");
        assert_eq!(at, 2);
        let mut at = 0;
        assert!(get_varint(&[0xff; 10], &mut at).is_err(), "more than ten bytes");
        let mut at = 0;
        assert!(get_varint(&[0x80], &mut at).is_err(), "truncated");
        // The tenth byte's bits beyond 64 are dropped rather than rejected.
        let mut at = 0;
        let mut ten = [0xffu8; 10];
        ten[9] = 0x7f;
        assert_eq!(get_varint(&ten, &mut at).unwrap(), u64::MAX);
    }

    #[test]
    fn observed_runtime_messages_decode() {
        // The runtime's first initiator message (header chunk 0) and first responder reply.
        let mut first = vec![1, 1, 1, 1, 0];
        first.extend_from_slice(&[0xab; 32]);
        let m = Message::decode(&first).unwrap();
        assert_eq!((m.epoch, m.index), (1, 1));
        assert_eq!(m.payload, Payload::Header(Chunk { index: 0, data: [0xab; 32] }));
        assert_eq!(m.encode(), first);
        let reply = Message::decode(&[1, 1, 1, 0]).unwrap();
        assert_eq!(reply, Message { epoch: 1, index: 1, payload: Payload::None });
    }

    #[test]
    fn rejects() {
        for bad in [&[][..], &[2, 1, 1, 0], &[1, 0, 1, 0], &[1, 1, 1], &[1, 1, 1, 7], &[1, 1, 1, 1, 0, 1, 2]] {
            assert!(Message::decode(bad).is_err(), "{bad:?}");
        }
        // Index beyond u32 and chunk index beyond u16.
        assert!(Message::decode(&[1, 1, 0x80, 0x80, 0x80, 0x80, 0x10, 0]).is_err());
        let mut big_chunk = vec![1, 1, 1, 5, 0x80, 0x80, 0x04];
        big_chunk.extend_from_slice(&[0; 32]);
        assert!(Message::decode(&big_chunk).is_err());
    }

    fn payload() -> impl Strategy<Value = Payload> {
        let chunk = (any::<u16>(), any::<[u8; 32]>()).prop_map(|(index, data)| Chunk { index, data });
        prop_oneof![
            Just(Payload::None),
            Just(Payload::Ct1Ack),
            chunk.clone().prop_map(Payload::Header),
            chunk.clone().prop_map(Payload::Ek),
            chunk.clone().prop_map(Payload::EkCt1Ack),
            chunk.clone().prop_map(Payload::Ct1),
            chunk.prop_map(Payload::Ct2),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(epoch in 1u64.., index: u32, payload in payload(), trailing in prop::collection::vec(any::<u8>(), 0..4)) {
            let m = Message { epoch, index, payload };
            let mut bytes = m.encode();
            prop_assert_eq!(Message::decode(&bytes).unwrap(), m);
            bytes.extend_from_slice(&trailing);
            prop_assert_eq!(Message::decode(&bytes).unwrap(), m);
        }

        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Message::decode(&bytes);
        }
    }
}
