#![allow(clippy::unwrap_used)]

mod copy;
mod detect;
mod row;
mod strategy;

use super::MaskKey;

pub(super) fn key() -> MaskKey {
    MaskKey::from_bytes(&[7u8; 32]).unwrap()
}

/// A tiny deterministic xorshift generator for property-style loops.
pub(super) struct XorShift(u64);

impl XorShift {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(super) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
