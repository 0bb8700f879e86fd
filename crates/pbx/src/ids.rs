//! Identifiers Switchboard generates: tags, branches, Call-IDs, nonces' random part.
//!
//! A small deterministic generator (wyrand) seeded by the driver from the OS, so that tests
//! can seed it and replay exactly. Uniqueness matters here, not secrecy; secrets (nonce MAC
//! key, passwords) come from the OS generator in the driver.

/// A fast pseudo-random generator for identifiers.
#[derive(Clone, Debug)]
pub struct IdGen {
    state: u64,
}

impl IdGen {
    /// A generator from a seed.
    pub fn new(seed: u64) -> IdGen {
        IdGen { state: seed ^ 0x2545_f491_4f6c_dd1d }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.state) * u128::from(self.state ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// A new generator for a child (each call gets its own).
    pub fn fork(&mut self) -> IdGen {
        IdGen::new(self.next_u64())
    }

    /// `n` lower-case hex characters (n ≤ 16).
    pub fn hex(&mut self, n: usize) -> String {
        let v = self.next_u64();
        let s = format!("{v:016x}");
        s[..n.min(16)].to_owned()
    }

    /// A tag for From/To (RFC 3261 §19.3: at least 32 bits of randomness).
    pub fn tag(&mut self) -> String {
        self.hex(12)
    }

    /// A branch with the RFC 3261 magic cookie.
    pub fn branch(&mut self) -> String {
        format!("{}-sb{}", sip::BRANCH_COOKIE, self.hex(16))
    }

    /// A Call-ID.
    pub fn call_id(&mut self) -> String {
        format!("sb-{}{}", self.hex(16), self.hex(8))
    }
}

/// Branches Switchboard generates start with this, which is how a request that loops back
/// is recognised (RFC 3261 §16.3 item 4).
pub const BRANCH_PREFIX: &str = "z9hG4bK-sb";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_and_have_the_right_shape() {
        let mut g = IdGen::new(1);
        let a = g.branch();
        let b = g.branch();
        assert_ne!(a, b);
        assert!(a.starts_with(BRANCH_PREFIX));
        assert_eq!(g.tag().len(), 12);
        let mut same = IdGen::new(1);
        assert_eq!(same.branch(), a);
    }
}
