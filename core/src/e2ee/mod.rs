//! End-to-end encryption: the Signal protocol as the official runtime speaks it, written here.
//!
//! One module per job, each proven against the official runtime (see `testvectors/`):
//! - [`keys`]: Curve25519 key pairs and their 33-byte `0x05` encoding;
//! - [`xeddsa`]: XEdDSA signatures as libsignal makes them (the runtime signs prekeys with them);
//! - [`kyber`]: Kyber-1024 prekeys, their 1569-byte `0x08` encoding, encapsulation;
//! - [`bundle`]: the agent's prekey publication (ids, signatures, request bodies);
//! - [`message`]: libsignal's version-4 PreKey and ordinary messages and the runtime's frame byte;
//! - [`chain`]: root, chain and message keys, and the AES-256-CBC they drive;
//! - [`pqxdh`]: session setup, as initiator and as responder;
//! - [`ratchet`]: one Double Ratchet session: chains, skipped keys, encrypt and decrypt;
//! - [`pq`]: the post-quantum slot each message's keys mix in (SPQR);
//! - [`session`]: the sessions held for one peer, and which of them a ciphertext belongs to;
//! - [`record`]: a peer's sessions as persisted bytes;
//! - [`account`]: one party's identity, prekeys and sessions, and the changes to persist;
//! - [`backend`]: the seam the state machines call, so another implementation can stand in.

pub mod account;
pub mod backend;
pub mod bundle;
pub mod chain;
pub mod keys;
pub mod kyber;
pub mod message;
pub mod pq;
pub mod pqxdh;
pub mod ratchet;
mod recency;
pub mod record;
pub mod session;
pub mod xeddsa;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_caps;
