//! Attachment encryption, shared by agents and persons: a fresh 32-byte key and 12-byte IV per
//! file, AES-256-GCM with no associated data, the tag after the ciphertext; only ciphertext
//! leaves, and the key and IV travel inside the (end-to-end encrypted) `chat.message` payload.

use crate::message::Attachment;
use crate::{Rng, aead, ids};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// A file's real metadata, which only the encrypted payload carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileMetadata {
    /// The file name.
    pub name: String,
    /// The MIME type.
    pub mime: String,
    /// Width in pixels (images, video).
    pub width: Option<u64>,
    /// Height in pixels (images, video).
    pub height: Option<u64>,
    /// Duration in milliseconds (audio, video).
    pub duration_ms: Option<u64>,
}

/// Why an attachment could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    /// The attachment carries no key and IV.
    #[error("attachment {attachment_id} has no key and IV: it cannot be decrypted")]
    NoKey {
        /// The attachment.
        attachment_id: String,
    },
    /// Its key or IV is not valid base64.
    #[error("attachment {attachment_id} has a malformed key or IV")]
    MalformedKey {
        /// The attachment.
        attachment_id: String,
    },
    /// The blob does not decrypt: tampered, truncated, or not this attachment's.
    #[error("attachment {attachment_id} failed authentication: {error}")]
    Decrypt {
        /// The attachment.
        attachment_id: String,
        /// Why.
        error: aead::OpenError,
    },
}

/// Encrypts `bytes`: returns the blob to upload and the attachment (without `blob_id` yet)
/// whose key and IV open it.
pub fn encrypt(bytes: &[u8], metadata: FileMetadata, rng: &mut Rng) -> (Vec<u8>, Attachment) {
    let mut key = Zeroizing::new([0u8; aead::KEY_LEN]);
    let mut iv = [0u8; aead::IV_LEN];
    rng.fill_bytes(key.as_mut());
    rng.fill_bytes(&mut iv);
    let ciphertext = aead::seal(&key, &iv, bytes, b"");
    let attachment = Attachment {
        id: ids::uuid_v4(rng),
        name: metadata.name,
        mime: metadata.mime,
        size: bytes.len() as u64,
        width: metadata.width,
        height: metadata.height,
        duration_ms: metadata.duration_ms,
        key_b64: Some(STANDARD.encode(key.as_ref())),
        iv_b64: Some(STANDARD.encode(iv)),
        ..Attachment::default()
    };
    (ciphertext, attachment)
}

/// The key and IV of `attachment`, checked before anything is downloaded.
pub fn key_of(attachment: &Attachment) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), AttachmentError> {
    let attachment_id = attachment.id.clone();
    let (Some(key), Some(iv)) = (attachment.key_b64.as_deref(), attachment.iv_b64.as_deref()) else {
        return Err(AttachmentError::NoKey { attachment_id });
    };
    let malformed = || AttachmentError::MalformedKey { attachment_id: attachment_id.clone() };
    let key = Zeroizing::new(STANDARD.decode(key).map_err(|_| malformed())?);
    let iv = STANDARD.decode(iv).map_err(|_| malformed())?;
    Ok((key, iv))
}

/// Decrypts a downloaded blob of `attachment`.
pub fn decrypt(attachment: &Attachment, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, AttachmentError> {
    let (key, iv) = key_of(attachment)?;
    aead::open(&key, &iv, blob, b"")
        .map_err(|error| AttachmentError::Decrypt { attachment_id: attachment.id.clone(), error })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn files_round_trip_and_refuse_tampering() {
        let rng = &mut rand::rngs::StdRng::seed_from_u64(5);
        let metadata = FileMetadata { name: "a.txt".into(), mime: "text/plain".into(), ..Default::default() };
        let (blob, attachment) = encrypt(b"contents", metadata, rng);
        assert_eq!((blob.len(), attachment.size), (8 + 16, 8));
        assert_eq!(decrypt(&attachment, &blob).unwrap().as_slice(), b"contents");
        let (other_blob, _) = encrypt(b"contents", FileMetadata::default(), rng);
        assert_ne!(blob, other_blob, "a fresh key and IV per file");
        let mut tampered = blob.clone();
        tampered[0] ^= 1;
        assert!(matches!(decrypt(&attachment, &tampered), Err(AttachmentError::Decrypt { .. })));
        assert!(matches!(decrypt(&attachment, &blob[..10]), Err(AttachmentError::Decrypt { .. })));
        let keyless = Attachment { iv_b64: None, ..attachment.clone() };
        assert!(matches!(decrypt(&keyless, &blob), Err(AttachmentError::NoKey { .. })));
        let malformed = Attachment { key_b64: Some("%%".into()), ..attachment };
        assert!(matches!(decrypt(&malformed, &blob), Err(AttachmentError::MalformedKey { .. })));
    }
}
