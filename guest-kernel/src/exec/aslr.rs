//! Address-space layout randomisation (`vmrun --aslr`), with Linux
//! x86-64's ranges: the stack top moves down by up to 16 GiB (22 bits of
//! pages), the mmap base by up to 1 TiB (28 bits of pages) below a gap that
//! leaves the stack room, a PIE's load address up by up to 1 TiB, and the
//! brk start up by up to 32 MiB. Without randomisation every offset is 0.

use super::stack::STACK_TOP;
use crate::mm::space::MMAP_BASE;
use vmrun_contract::layout::PAGE_SIZE;

/// Largest downward move of the stack top (Linux's stack_maxrandom_size).
pub const STACK_RANDOM: u64 = (1 << 22) * PAGE_SIZE;
/// Random bits of pages for the mmap base and a PIE's load address.
const MMAP_RANDOM_BITS: u32 = 28;
/// Largest upward move of the brk start (Linux's randomize_brk range).
pub const BRK_RANDOM: u64 = 32 << 20;

/// Where an exec'd program's parts go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// End of the stack (page aligned).
    pub stack_top: u64,
    /// Top of the top-down mmap area.
    pub mmap_base: u64,
    /// Added to `ELF_ET_DYN_BASE` for an ET_DYN program.
    pub dyn_offset: u64,
    /// Added to the brk start.
    pub brk_offset: u64,
}

impl Layout {
    /// The fixed layout (randomisation off).
    pub const FIXED: Layout = Layout {
        stack_top: STACK_TOP,
        mmap_base: MMAP_BASE,
        dyn_offset: 0,
        brk_offset: 0,
    };

    /// A randomised layout drawn from `seed`.
    pub fn randomized(seed: u64) -> Layout {
        let mut rng = SplitMix(seed);
        let pages = |rng: &mut SplitMix, bits: u32| (rng.next() & ((1 << bits) - 1)) * PAGE_SIZE;
        let stack_shift = pages(&mut rng, 22);
        let mmap_shift = pages(&mut rng, MMAP_RANDOM_BITS);
        Layout {
            stack_top: STACK_TOP - stack_shift,
            mmap_base: MMAP_BASE - STACK_RANDOM - mmap_shift,
            dyn_offset: pages(&mut rng, MMAP_RANDOM_BITS),
            brk_offset: pages(&mut rng, 13),
        }
    }
}

/// A small, well-mixed generator (SplitMix64) for layout offsets.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randomized_layout_stays_in_linux_ranges_and_page_aligned() {
        for seed in 0..200u64 {
            let l = Layout::randomized(seed.wrapping_mul(0x1234_5678_9abc_def1));
            assert!(l.stack_top <= STACK_TOP && l.stack_top > STACK_TOP - STACK_RANDOM - 1);
            assert!(
                l.mmap_base < l.stack_top - STACK_RANDOM + PAGE_SIZE || l.mmap_base < l.stack_top
            );
            assert!(l.brk_offset < BRK_RANDOM);
            for v in [l.stack_top, l.mmap_base, l.dyn_offset, l.brk_offset] {
                assert_eq!(v % PAGE_SIZE, 0);
            }
        }
    }

    #[test]
    fn different_seeds_give_different_layouts_and_same_seed_the_same() {
        assert_eq!(Layout::randomized(7), Layout::randomized(7));
        assert_ne!(Layout::randomized(7), Layout::randomized(8));
        assert_ne!(Layout::randomized(7).stack_top, STACK_TOP);
    }
}
