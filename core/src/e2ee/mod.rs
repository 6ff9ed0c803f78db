//! End-to-end encryption: the Signal protocol as the official runtime speaks it, written here.
//!
//! Built up in steps, each proven against the official runtime (see `testvectors/`):
//! - [`keys`]: Curve25519 key pairs and their 33-byte `0x05` encoding;
//! - [`xeddsa`]: XEdDSA signatures as libsignal makes them (the runtime signs prekeys with them);
//! - [`kyber`]: Kyber-1024 prekeys and their 1569-byte `0x08` encoding;
//! - [`bundle`]: the agent's prekey publication (ids, signatures, request bodies).
//!
//! Session setup (PQXDH), the Double Ratchet and SPQR come next (issues 3 and 4); until then the
//! agent refuses `e2ee = true` rather than sending plaintext.

pub mod bundle;
pub mod keys;
pub mod kyber;
pub mod xeddsa;
