//! A small xorshift generator for the random choices of race tests (which order, how long to
//! spin): seeded from the clock, so each run explores other interleavings; tests print the
//! seed they used where a failure should be replayable.

/// Marsaglia's xorshift64; the state is never zero.
pub struct Rng(pub u64);

impl Rng {
    /// A generator seeded from the clock and `salt`.
    pub fn seeded(salt: u64) -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng((nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
