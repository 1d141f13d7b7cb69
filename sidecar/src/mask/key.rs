//! The secret key behind the keyed hash strategy.

use aws_lc_rs::hmac;

use super::MaskError;

/// The fewest bytes a [`MaskKey`] may have.
pub const MIN_KEY_LEN: usize = 32;

/// The secret key of the hash strategy: HMAC-SHA256 over the value, so equal values give equal outputs
/// under one key, and nobody without the key can test a guess against an output.
#[derive(Clone)]
pub struct MaskKey {
    key: hmac::Key,
}

impl MaskKey {
    /// A key of [`MIN_KEY_LEN`] fresh random bytes (outputs are stable only as long as the key lives).
    pub fn random() -> Result<Self, MaskError> {
        let mut bytes = [0u8; MIN_KEY_LEN];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| MaskError::RandomUnavailable)?;
        Self::from_bytes(&bytes)
    }

    /// A key from secret bytes (at least [`MIN_KEY_LEN`]), e.g. shared by all sidecars of a
    /// connection so hashes agree across pods.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MaskError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(MaskError::KeyTooShort { len: bytes.len() });
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        })
    }

    /// HMAC-SHA256 of `value` under this key.
    pub(crate) fn tag(&self, value: &[u8]) -> hmac::Tag {
        hmac::sign(&self.key, value)
    }
}

impl std::fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaskKey(..)")
    }
}
