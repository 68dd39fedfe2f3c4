//! The random bytes the kernel hands out without a hypercall each.
//!
//! The VMM fills a pool of [`RANDOM_POOL_BYTES`] from the host's
//! getrandom before boot (at [`RANDOM_POOL_PHYS`], a page no program
//! maps). A small `getrandom` (glibc's start asks for a seed, every
//! program once) or read of `/dev/urandom` takes the next unused bytes;
//! when too few are left, one RANDOM hypercall fills the whole pool anew.
//! Each byte goes to one caller only, as each read of the host's
//! `/dev/urandom` gives fresh bytes. A request larger than the pool goes
//! to the host directly.

use vmrun_contract::layout::{RANDOM_POOL_BYTES, RANDOM_POOL_PHYS};

/// What of the pool has been handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomPool {
    used: u64,
}

/// Where a request's bytes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Draw {
    /// Fill the whole pool anew first (its rest is too short).
    pub refill: bool,
    /// The bytes' physical address, in the pool.
    pub phys: u64,
}

impl RandomPool {
    /// The pool as the VMM left it at boot: full.
    pub const fn full() -> Self {
        Self { used: 0 }
    }

    /// Take `n` bytes (0 < n): where they are, and whether the pool must
    /// be filled anew first; None for a request larger than the pool.
    pub fn take(&mut self, n: u64) -> Option<Draw> {
        if n > RANDOM_POOL_BYTES {
            return None;
        }
        let refill = n > RANDOM_POOL_BYTES - self.used;
        if refill {
            self.used = 0;
        }
        let phys = RANDOM_POOL_PHYS + self.used;
        self.used += n;
        Some(Draw { refill, phys })
    }

    /// The refill failed: nothing in the pool may be handed out until a
    /// refill succeeds.
    pub fn spoil(&mut self) {
        self.used = RANDOM_POOL_BYTES;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_take_consecutive_bytes_until_the_pool_runs_short_then_refill() {
        let mut pool = RandomPool::full();
        let a = pool.take(8).unwrap();
        assert_eq!(
            a,
            Draw {
                refill: false,
                phys: RANDOM_POOL_PHYS
            }
        );
        let b = pool.take(16).unwrap();
        assert_eq!(
            b,
            Draw {
                refill: false,
                phys: RANDOM_POOL_PHYS + 8
            }
        );
        // Exactly the rest: still no refill.
        let rest = RANDOM_POOL_BYTES - 24;
        assert!(!pool.take(rest).unwrap().refill);
        // Nothing left: the next request refills and starts over.
        let c = pool.take(1).unwrap();
        assert_eq!(
            c,
            Draw {
                refill: true,
                phys: RANDOM_POOL_PHYS
            }
        );
        assert_eq!(pool.take(4).unwrap().phys, RANDOM_POOL_PHYS + 1);
    }

    #[test]
    fn a_request_larger_than_the_pool_is_not_served_from_it() {
        let mut pool = RandomPool::full();
        assert_eq!(pool.take(RANDOM_POOL_BYTES + 1), None);
        // And it takes nothing.
        assert_eq!(pool.take(8).unwrap().phys, RANDOM_POOL_PHYS);
        assert!(pool.take(RANDOM_POOL_BYTES).unwrap().refill);
    }

    #[test]
    fn a_spoiled_pool_refills_before_it_hands_out_a_byte() {
        let mut pool = RandomPool::full();
        pool.take(8);
        pool.spoil();
        assert_eq!(
            pool.take(1).unwrap(),
            Draw {
                refill: true,
                phys: RANDOM_POOL_PHYS
            }
        );
    }
}
