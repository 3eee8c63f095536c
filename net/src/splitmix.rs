//! SplitMix64: small seeded draws, the same on every machine. The pool samples the results it
//! checks with them (`proto/verify.rs`), the simulator draws its runs from them (`sim/rng.rs`),
//! and the end-to-end tests their generated inputs (`millpond_tests::Rng`): one seed, one
//! sequence, without a random-number crate in the build.

/// SplitMix64's state; each draw advances it.
#[derive(Clone, Debug, Default)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// Starts at `state` as it is: the first draw advances it first.
    pub fn new(state: u64) -> Self {
        Self(state)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1): the top 53 bits of a draw.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
