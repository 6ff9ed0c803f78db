//! Fresh identifiers drawn from the caller's randomness.

use crate::Rng;

/// A UUID version 4 string, as the official SDK uses for message and widget ids.
pub(crate) fn uuid_v4(rng: &mut Rng) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid().hyphenated().to_string()
}
