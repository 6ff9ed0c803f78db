//! The braid's authenticator: a MAC key ratcheted with every epoch secret.
//!
//! Both parties start from the session's auth key. Each epoch's KEM secret is folded in as soon
//! as a party knows it, so the MAC over an epoch's ciphertext (and over the next epoch's key
//! header) proves the sender knew every earlier secret: an attacker who learns one state cannot
//! inject keys once the honest parties have healed.

use zeroize::Zeroizing;

use crate::Error;
use crate::kdf;

/// The authenticator's two 32-byte keys.
#[derive(Clone)]
pub(crate) struct Authenticator {
    root: Zeroizing<[u8; 32]>,
    mac: Zeroizing<[u8; 32]>,
}

impl Authenticator {
    /// The authenticator at the start of a session: all-zero keys updated with the auth key
    /// for epoch 1 (upstream's construction).
    pub(crate) fn new(auth_key: &[u8], epoch: u64) -> Authenticator {
        let mut a = Authenticator { root: Zeroizing::new([0u8; 32]), mac: Zeroizing::new([0u8; 32]) };
        a.update(epoch, auth_key);
        a
    }

    /// Rebuilds an authenticator from stored keys.
    pub(crate) fn from_keys(root: [u8; 32], mac: [u8; 32]) -> Authenticator {
        Authenticator { root: Zeroizing::new(root), mac: Zeroizing::new(mac) }
    }

    /// The stored keys (root, MAC), for persistence.
    pub(crate) fn keys(&self) -> (&[u8; 32], &[u8; 32]) {
        (&self.root, &self.mac)
    }

    /// Folds `secret` into both keys: HKDF(salt 0, root || secret, label || epoch).
    pub(crate) fn update(&mut self, epoch: u64, secret: &[u8]) {
        let ikm = Zeroizing::new([self.root.as_slice(), secret].concat());
        let mut out = Zeroizing::new([0u8; 64]);
        kdf::hkdf(&kdf::ZERO_SALT, &ikm, &[kdf::AUTH_UPDATE, &epoch.to_be_bytes()], out.as_mut_slice());
        self.root.copy_from_slice(&out[..32]);
        self.mac.copy_from_slice(&out[32..]);
    }

    /// MAC over an epoch's encapsulation key header.
    pub(crate) fn mac_header(&self, epoch: u64, header: &[u8]) -> [u8; 32] {
        kdf::hmac(&self.mac, &[kdf::MAC_HEADER, &epoch.to_be_bytes(), header])
    }

    /// Checks the MAC over a received header.
    pub(crate) fn verify_header(&self, epoch: u64, header: &[u8], tag: &[u8]) -> Result<(), Error> {
        if kdf::hmac_verify(&self.mac, &[kdf::MAC_HEADER, &epoch.to_be_bytes(), header], tag) {
            Ok(())
        } else {
            Err(Error::MacVerifyFailed)
        }
    }

    /// MAC over an epoch's full ciphertext (ct1 || ct2).
    pub(crate) fn mac_ciphertext(&self, epoch: u64, ct1: &[u8], ct2: &[u8]) -> [u8; 32] {
        kdf::hmac(&self.mac, &[kdf::MAC_CIPHERTEXT, &epoch.to_be_bytes(), ct1, ct2])
    }

    /// Checks the MAC over a received ciphertext.
    pub(crate) fn verify_ciphertext(&self, epoch: u64, ct1: &[u8], ct2: &[u8], tag: &[u8]) -> Result<(), Error> {
        if kdf::hmac_verify(&self.mac, &[kdf::MAC_CIPHERTEXT, &epoch.to_be_bytes(), ct1, ct2], tag) {
            Ok(())
        } else {
            Err(Error::MacVerifyFailed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_agree_and_updates_change_keys() {
        let mut a = Authenticator::new(b"auth key", 1);
        let mut b = Authenticator::new(b"auth key", 1);
        let tag = a.mac_header(1, b"hdr");
        assert!(b.verify_header(1, b"hdr", &tag).is_ok());
        assert!(matches!(b.verify_header(2, b"hdr", &tag), Err(Error::MacVerifyFailed)));
        assert!(matches!(b.verify_header(1, b"hdR", &tag), Err(Error::MacVerifyFailed)));
        // The header and ciphertext MACs are domain separated.
        assert!(b.verify_ciphertext(1, b"hd", b"r", &tag).is_err());

        a.update(1, b"secret");
        assert!(b.verify_header(1, b"hdr", &a.mac_header(1, b"hdr")).is_err());
        b.update(1, b"secret");
        let ct = a.mac_ciphertext(1, b"ct1", b"ct2");
        assert!(b.verify_ciphertext(1, b"ct1", b"ct2", &ct).is_ok());
        assert!(b.verify_ciphertext(1, b"ct1", b"ct2", &ct[..31]).is_err());
    }

    #[test]
    fn keys_round_trip() {
        let a = Authenticator::new(b"k", 1);
        let (r, m) = a.keys();
        let b = Authenticator::from_keys(*r, *m);
        assert_eq!(a.mac_header(3, b"x"), b.mac_header(3, b"x"));
    }
}
