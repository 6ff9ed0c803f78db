//! The ML-KEM Braid: the state machine that agrees a fresh KEM secret per epoch, a chunk per
//! message.
//!
//! The two parties alternate roles each epoch. In odd epochs A is the *key sender* (it samples
//! an ML-KEM-768 key pair and sends its header, then its encapsulation key) and B the
//! *ciphertext sender* (it encapsulates to the header as soon as it has it, sends ct1 while the
//! key is still arriving, and ct2 once the key is complete); in even epochs the roles swap.
//! Every piece travels erasure-coded, one 32-byte chunk per message, so lost or reordered
//! messages only slow an epoch down. The header and the final ciphertext are MACed by the
//! [`Authenticator`], and the epoch secret is `HKDF(ss, "...SCKA Key" || epoch)`.
//!
//! The ciphertext sender learns the epoch secret when it encapsulates (on send); the key sender
//! learns it when it has decapsulated and checked the MAC (on receive). The states and their
//! transitions are spqr 1.5.1's, one for one.

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::Error;
use crate::auth::Authenticator;
use crate::erasure::{Decoder, Encoder};
use crate::kdf;
use crate::kem::{self, EncapsRand, Encapsulation, KeyPair, KeySeed};
use crate::wire::Payload;

/// MAC length appended to the header and to ct2.
pub(crate) const MAC_LEN: usize = 32;
/// Bytes of the erasure-coded header payload: header || MAC.
pub(crate) const HEADER_PAYLOAD_LEN: usize = kem::HEADER_LEN + MAC_LEN;
/// Bytes of the erasure-coded ct2 payload: ct2 || MAC.
pub(crate) const CT2_PAYLOAD_LEN: usize = kem::CT2_LEN + MAC_LEN;

/// Where an epoch stands, from this party's side.
#[derive(Clone)]
pub(crate) enum Phase {
    // Key sender.
    /// Nothing sampled yet for this epoch.
    KeysUnsampled,
    /// Key pair sampled; sending header chunks.
    KeysSampled { seed: KeyPair, header_out: Encoder },
    /// The peer has started sending ct1; sending key chunks and collecting ct1.
    HeaderSent { seed: KeyPair, ek_out: Encoder, ct1_in: Decoder },
    /// ct1 complete; still sending key chunks (each one also acknowledges ct1).
    Ct1Received { seed: KeyPair, ct1: Vec<u8>, ek_out: Encoder },
    /// The peer has started sending ct2; acknowledging and collecting it.
    EkSentCt1Received { seed: KeyPair, ct1: Vec<u8>, ct2_in: Decoder },

    // Ciphertext sender.
    /// Collecting the header.
    NoHeaderReceived { header_in: Decoder },
    /// Header checked; the next send encapsulates.
    HeaderReceived { header: Vec<u8>, ek_in: Decoder },
    /// Encapsulated; sending ct1 chunks and collecting the key.
    Ct1Sampled { header: Vec<u8>, rand: EncapsRand, ct1_out: Encoder, ek_in: Decoder },
    /// Key complete; still sending ct1 until the peer acknowledges it.
    EkReceivedCt1Sampled { encaps: Encapsulation, ek: Vec<u8>, ct1_out: Encoder },
    /// ct1 acknowledged; collecting the rest of the key.
    Ct1Acknowledged { header: Vec<u8>, rand: EncapsRand, ct1: Vec<u8>, ek_in: Decoder },
    /// Sending ct2 chunks until the peer's next epoch starts.
    Ct2Sampled { ct2_out: Encoder },
}

impl Phase {
    /// Upstream's name for the phase, for logs and `Debug`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Phase::KeysUnsampled => "KeysUnsampled",
            Phase::KeysSampled { .. } => "KeysSampled",
            Phase::HeaderSent { .. } => "HeaderSent",
            Phase::Ct1Received { .. } => "Ct1Received",
            Phase::EkSentCt1Received { .. } => "EkSentCt1Received",
            Phase::NoHeaderReceived { .. } => "NoHeaderReceived",
            Phase::HeaderReceived { .. } => "HeaderReceived",
            Phase::Ct1Sampled { .. } => "Ct1Sampled",
            Phase::EkReceivedCt1Sampled { .. } => "EkReceivedCt1Sampled",
            Phase::Ct1Acknowledged { .. } => "Ct1Acknowledged",
            Phase::Ct2Sampled { .. } => "Ct2Sampled",
        }
    }
}

/// An epoch secret the braid has just agreed.
pub(crate) struct EpochSecret {
    pub(crate) epoch: u64,
    pub(crate) secret: Zeroizing<[u8; 32]>,
}

/// One party's braid.
#[derive(Clone)]
pub(crate) struct Braid {
    pub(crate) epoch: u64,
    pub(crate) auth: Authenticator,
    pub(crate) phase: Phase,
}

fn encoder(payload: Vec<u8>) -> Result<Encoder, Error> {
    Encoder::new(payload).ok_or(Error::InconsistentState)
}

/// The epoch secret from a KEM shared secret.
fn epoch_secret(epoch: u64, shared: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    kdf::hkdf(&kdf::ZERO_SALT, shared, &[kdf::SCKA_KEY, &epoch.to_be_bytes()], out.as_mut_slice());
    out
}

impl Braid {
    /// The initiator's braid: key sender in epoch 1.
    pub(crate) fn new_a(auth_key: &[u8]) -> Braid {
        Braid { epoch: 1, auth: Authenticator::new(auth_key, 1), phase: Phase::KeysUnsampled }
    }

    /// The responder's braid: ciphertext sender in epoch 1.
    pub(crate) fn new_b(auth_key: &[u8]) -> Braid {
        Braid {
            epoch: 1,
            auth: Authenticator::new(auth_key, 1),
            phase: Phase::NoHeaderReceived { header_in: Decoder::new(HEADER_PAYLOAD_LEN) },
        }
    }

    /// Produces this message's payload (tagged with `self.epoch`, read before calling) and,
    /// when encapsulating, the new epoch secret.
    pub(crate) fn send<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) -> Result<(Payload, Option<EpochSecret>), Error> {
        let epoch = self.epoch;
        let phase = core::mem::replace(&mut self.phase, Phase::KeysUnsampled);
        let (phase, payload, secret) = match phase {
            Phase::KeysUnsampled => {
                let mut seed: KeySeed = Zeroizing::new([0u8; kem::KEYGEN_SEED_LEN]);
                rng.fill_bytes(seed.as_mut_slice());
                let seed = KeyPair::Seed(seed);
                let (mut header, _) = kem::public_parts(&seed);
                let mac = self.auth.mac_header(epoch, &header);
                header.extend_from_slice(&mac);
                let mut header_out = encoder(header)?;
                let chunk = header_out.next_chunk();
                tracing::debug!(epoch, "spqr: KeysUnsampled -> KeysSampled");
                (Phase::KeysSampled { seed, header_out }, Payload::Header(chunk), None)
            }
            Phase::KeysSampled { seed, mut header_out } => {
                let chunk = header_out.next_chunk();
                (Phase::KeysSampled { seed, header_out }, Payload::Header(chunk), None)
            }
            Phase::HeaderSent { seed, mut ek_out, ct1_in } => {
                let chunk = ek_out.next_chunk();
                (Phase::HeaderSent { seed, ek_out, ct1_in }, Payload::Ek(chunk), None)
            }
            Phase::Ct1Received { seed, ct1, mut ek_out } => {
                let chunk = ek_out.next_chunk();
                (Phase::Ct1Received { seed, ct1, ek_out }, Payload::EkCt1Ack(chunk), None)
            }
            p @ Phase::EkSentCt1Received { .. } => (p, Payload::Ct1Ack, None),
            p @ Phase::NoHeaderReceived { .. } => (p, Payload::None, None),
            Phase::HeaderReceived { header, ek_in } => {
                let mut rand: EncapsRand = Zeroizing::new([0u8; kem::ENCAPS_RAND_LEN]);
                rng.fill_bytes(rand.as_mut_slice());
                let (ct1, shared) = kem::encapsulate1(&header, &rand)?;
                let secret = epoch_secret(epoch, shared.as_slice());
                self.auth.update(epoch, secret.as_slice());
                let mut ct1_out = encoder(ct1)?;
                let chunk = ct1_out.next_chunk();
                tracing::debug!(epoch, "spqr: HeaderReceived -> Ct1Sampled");
                (
                    Phase::Ct1Sampled { header, rand, ct1_out, ek_in },
                    Payload::Ct1(chunk),
                    Some(EpochSecret { epoch, secret }),
                )
            }
            Phase::Ct1Sampled { header, rand, mut ct1_out, ek_in } => {
                let chunk = ct1_out.next_chunk();
                (Phase::Ct1Sampled { header, rand, ct1_out, ek_in }, Payload::Ct1(chunk), None)
            }
            Phase::EkReceivedCt1Sampled { encaps, ek, mut ct1_out } => {
                let chunk = ct1_out.next_chunk();
                (Phase::EkReceivedCt1Sampled { encaps, ek, ct1_out }, Payload::Ct1(chunk), None)
            }
            p @ Phase::Ct1Acknowledged { .. } => (p, Payload::None, None),
            Phase::Ct2Sampled { mut ct2_out } => {
                let chunk = ct2_out.next_chunk();
                (Phase::Ct2Sampled { ct2_out }, Payload::Ct2(chunk), None)
            }
        };
        self.phase = phase;
        Ok((payload, secret))
    }

    /// Takes in a received message's payload. On error `self` may be partly updated: callers
    /// work on a copy.
    pub(crate) fn recv(&mut self, msg_epoch: u64, payload: &Payload) -> Result<Option<EpochSecret>, Error> {
        let epoch = self.epoch;
        if let Phase::Ct2Sampled { .. } = self.phase {
            // The peer starting the next epoch means it has our ciphertext: we become the key
            // sender of that epoch, keeping the authenticator.
            if msg_epoch > epoch {
                if epoch.checked_add(1) != Some(msg_epoch) {
                    return Err(Error::EpochOutOfRange(msg_epoch));
                }
                tracing::debug!(epoch = msg_epoch, "spqr: Ct2Sampled -> KeysUnsampled");
                self.epoch = msg_epoch;
                self.phase = Phase::KeysUnsampled;
            }
            return Ok(None);
        }
        if msg_epoch > epoch {
            return Err(Error::EpochOutOfRange(msg_epoch));
        }
        if msg_epoch < epoch {
            // A late message from an epoch we have finished: nothing left to learn from it.
            return Ok(None);
        }
        let phase = core::mem::replace(&mut self.phase, Phase::KeysUnsampled);
        let (phase, secret) = self.recv_current(phase, payload)?;
        self.phase = phase;
        Ok(secret)
    }

    /// Handles a payload of the current epoch.
    fn recv_current(&mut self, phase: Phase, payload: &Payload) -> Result<(Phase, Option<EpochSecret>), Error> {
        let epoch = self.epoch;
        Ok(match (phase, payload) {
            (Phase::KeysSampled { seed, .. }, Payload::Ct1(chunk)) => {
                // The peer has our header: switch from header chunks to key chunks.
                let mut ct1_in = Decoder::new(kem::CT1_LEN);
                ct1_in.add_chunk(chunk);
                let (_, ek) = kem::public_parts(&seed);
                tracing::debug!(epoch, "spqr: KeysSampled -> HeaderSent");
                (Phase::HeaderSent { seed, ek_out: encoder(ek)?, ct1_in }, None)
            }
            (Phase::HeaderSent { seed, ek_out, mut ct1_in }, Payload::Ct1(chunk)) => {
                ct1_in.add_chunk(chunk);
                match ct1_in.decoded() {
                    Some(ct1) => {
                        tracing::debug!(epoch, "spqr: HeaderSent -> Ct1Received");
                        (Phase::Ct1Received { seed, ct1, ek_out }, None)
                    }
                    None => (Phase::HeaderSent { seed, ek_out, ct1_in }, None),
                }
            }
            (Phase::Ct1Received { seed, ct1, .. }, Payload::Ct2(chunk)) => {
                let mut ct2_in = Decoder::new(CT2_PAYLOAD_LEN);
                ct2_in.add_chunk(chunk);
                tracing::debug!(epoch, "spqr: Ct1Received -> EkSentCt1Received");
                (Phase::EkSentCt1Received { seed, ct1, ct2_in }, None)
            }
            (Phase::EkSentCt1Received { seed, ct1, mut ct2_in }, Payload::Ct2(chunk)) => {
                ct2_in.add_chunk(chunk);
                match ct2_in.decoded() {
                    Some(payload) => {
                        let (ct2, mac) = payload.split_at(kem::CT2_LEN.min(payload.len()));
                        let shared = kem::decapsulate(&seed, &ct1, ct2)?;
                        let secret = epoch_secret(epoch, shared.as_slice());
                        self.auth.update(epoch, secret.as_slice());
                        self.auth.verify_ciphertext(epoch, &ct1, ct2, mac)?;
                        let next = epoch.checked_add(1).ok_or(Error::EpochOutOfRange(epoch))?;
                        tracing::debug!(epoch, "spqr: EkSentCt1Received -> NoHeaderReceived (epoch secret agreed)");
                        self.epoch = next;
                        (
                            Phase::NoHeaderReceived { header_in: Decoder::new(HEADER_PAYLOAD_LEN) },
                            Some(EpochSecret { epoch, secret }),
                        )
                    }
                    None => (Phase::EkSentCt1Received { seed, ct1, ct2_in }, None),
                }
            }
            (Phase::NoHeaderReceived { mut header_in }, Payload::Header(chunk)) => {
                header_in.add_chunk(chunk);
                match header_in.decoded() {
                    Some(payload) => {
                        let (header, mac) = payload.split_at(kem::HEADER_LEN.min(payload.len()));
                        self.auth.verify_header(epoch, header, mac)?;
                        tracing::debug!(epoch, "spqr: NoHeaderReceived -> HeaderReceived");
                        (Phase::HeaderReceived { header: header.to_vec(), ek_in: Decoder::new(kem::EK_LEN) }, None)
                    }
                    None => (Phase::NoHeaderReceived { header_in }, None),
                }
            }
            (Phase::Ct1Sampled { header, rand, ct1_out, mut ek_in }, Payload::Ek(chunk) | Payload::EkCt1Ack(chunk)) => {
                let acknowledged = matches!(payload, Payload::EkCt1Ack(_));
                ek_in.add_chunk(chunk);
                match ek_in.decoded() {
                    Some(ek) => {
                        if !kem::ek_matches_header(&header, &ek) {
                            return Err(Error::ErroneousDataReceived);
                        }
                        if acknowledged {
                            tracing::debug!(epoch, "spqr: Ct1Sampled -> Ct2Sampled");
                            (self.ct2_phase(&Encapsulation::Rand { header, rand }, &ek, ct1_out.payload())?, None)
                        } else {
                            tracing::debug!(epoch, "spqr: Ct1Sampled -> EkReceivedCt1Sampled");
                            let encaps = Encapsulation::Rand { header, rand };
                            (Phase::EkReceivedCt1Sampled { encaps, ek, ct1_out }, None)
                        }
                    }
                    None if acknowledged => {
                        tracing::debug!(epoch, "spqr: Ct1Sampled -> Ct1Acknowledged");
                        let ct1 = ct1_out.payload().to_vec();
                        (Phase::Ct1Acknowledged { header, rand, ct1, ek_in }, None)
                    }
                    None => (Phase::Ct1Sampled { header, rand, ct1_out, ek_in }, None),
                }
            }
            (Phase::EkReceivedCt1Sampled { encaps, ek, ct1_out }, Payload::Ct1Ack | Payload::EkCt1Ack(_)) => {
                tracing::debug!(epoch, "spqr: EkReceivedCt1Sampled -> Ct2Sampled");
                (self.ct2_phase(&encaps, &ek, ct1_out.payload())?, None)
            }
            (
                Phase::Ct1Acknowledged { header, rand, ct1, mut ek_in },
                Payload::Ek(chunk) | Payload::EkCt1Ack(chunk),
            ) => {
                ek_in.add_chunk(chunk);
                match ek_in.decoded() {
                    Some(ek) => {
                        if !kem::ek_matches_header(&header, &ek) {
                            return Err(Error::ErroneousDataReceived);
                        }
                        tracing::debug!(epoch, "spqr: Ct1Acknowledged -> Ct2Sampled");
                        (self.ct2_phase(&Encapsulation::Rand { header, rand }, &ek, &ct1)?, None)
                    }
                    None => (Phase::Ct1Acknowledged { header, rand, ct1, ek_in }, None),
                }
            }
            // Every other combination carries nothing this phase can use.
            (phase, _) => (phase, None),
        })
    }

    /// Completes the encapsulation and starts sending ct2 || MAC.
    fn ct2_phase(&self, encaps: &Encapsulation, ek: &[u8], ct1: &[u8]) -> Result<Phase, Error> {
        let mut ct2 = encaps.ct2(ek)?;
        let mac = self.auth.mac_ciphertext(self.epoch, ct1, &ct2);
        ct2.extend_from_slice(&mac);
        Ok(Phase::Ct2Sampled { ct2_out: encoder(ct2)? })
    }
}
