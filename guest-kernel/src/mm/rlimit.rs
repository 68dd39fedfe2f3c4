//! Resource limits on an address space (Linux's `RLIMIT_AS`,
//! `RLIMIT_DATA`, `RLIMIT_STACK`) and the overcommit heuristic.
//!
//! The limits live in the [`super::space::Mm`] they bound: threads share
//! it (as they share Linux's `signal_struct`), fork copies them with the
//! layout and exec keeps them, because exec rebuilds the address space in
//! place. The other limits are stored here too, so that `prlimit64` reads
//! back what was set; `RLIMIT_NOFILE` is the fd table's.

use crate::errno::{Errno, KResult};

/// `RLIM_INFINITY`.
pub const RLIM_INFINITY: u64 = u64::MAX;
/// Number of limits (`RLIM_NLIMITS`).
pub const RLIM_NLIMITS: usize = 16;

/// Resource numbers (Linux x86-64).
pub mod resource {
    /// Largest data segment: brk and private writable mappings.
    pub const DATA: u64 = 2;
    /// Largest stack.
    pub const STACK: u64 = 3;
    /// Most open files.
    pub const NOFILE: u64 = 7;
    /// Largest address space.
    pub const AS: u64 = 9;
}

/// Default `RLIMIT_STACK` (8 MiB, as Linux programs start with).
pub const STACK_DEFAULT: u64 = 8 << 20;

/// One limit: soft (`rlim_cur`) and hard (`rlim_max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    /// Soft limit: what is enforced.
    pub cur: u64,
    /// Hard limit: the ceiling of the soft one.
    pub max: u64,
}

const UNLIMITED: Rlimit = Rlimit {
    cur: RLIM_INFINITY,
    max: RLIM_INFINITY,
};

/// The limits of one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimits([Rlimit; RLIM_NLIMITS]);

impl Default for Rlimits {
    fn default() -> Self {
        Self::new()
    }
}

impl Rlimits {
    /// What a program starts with: everything unlimited but the stack.
    pub const fn new() -> Self {
        let mut l = [UNLIMITED; RLIM_NLIMITS];
        l[resource::STACK as usize] = Rlimit {
            cur: STACK_DEFAULT,
            max: RLIM_INFINITY,
        };
        Rlimits(l)
    }

    /// The limit on `resource` (EINVAL if there is no such resource).
    pub fn get(&self, resource: u64) -> KResult<Rlimit> {
        self.0
            .get(usize::try_from(resource).map_err(|_| Errno::EINVAL)?)
            .copied()
            .ok_or(Errno::EINVAL)
    }

    /// The soft limit on `resource` (infinity for an unknown one).
    #[inline]
    pub fn cur(&self, resource: u64) -> u64 {
        self.get(resource).map_or(RLIM_INFINITY, |l| l.cur)
    }

    /// Set a limit as Linux's `do_prlimit` does for an unprivileged
    /// process: EINVAL if the soft limit is above the hard one, EPERM if
    /// the hard limit would rise.
    pub fn set(&mut self, resource: u64, new: Rlimit) -> KResult<()> {
        let old = self.get(resource)?;
        if new.cur > new.max {
            return Err(Errno::EINVAL);
        }
        if new.max > old.max {
            return Err(Errno::EPERM);
        }
        self.0[resource as usize] = new;
        Ok(())
    }
}

/// Whether a request of `pages` private writable pages passes Linux's
/// heuristic overcommit check (`OVERCOMMIT_GUESS`): no single request may
/// be larger than all of RAM and swap (`ram_pages`; there is no swap).
pub fn overcommit_guess_ok(pages: u64, ram_pages: u64) -> bool {
    pages <= ram_pages
}

/// The gap Linux's `mmap_base` leaves below the stack top for a stack
/// limit of `stack` bytes: the limit plus the stack guard gap, at least
/// 128 MiB and at most 5/6 of `task_size`, rounded down to a page (Linux
/// page-aligns `task_size - gap` upwards).
pub fn mmap_gap(stack: u64, guard: u64, task_size: u64) -> u64 {
    let gap = stack.saturating_add(guard);
    gap.clamp(128 << 20, task_size / 6 * 5) & !4095
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_linuxs_stack_and_unlimited_rest() {
        let l = Rlimits::new();
        assert_eq!(l.cur(resource::STACK), 8 << 20);
        assert_eq!(l.get(resource::STACK).unwrap().max, RLIM_INFINITY);
        assert_eq!(l.cur(resource::AS), RLIM_INFINITY);
        assert_eq!(l.get(16), Err(Errno::EINVAL));
    }

    #[test]
    fn lowering_works_raising_the_hard_limit_is_eperm() {
        let mut l = Rlimits::new();
        let low = Rlimit {
            cur: 1 << 20,
            max: 2 << 20,
        };
        l.set(resource::AS, low).unwrap();
        assert_eq!(l.get(resource::AS), Ok(low));
        let up = Rlimit {
            cur: 2 << 20,
            max: 3 << 20,
        };
        assert_eq!(l.set(resource::AS, up), Err(Errno::EPERM));
        let soft_up = Rlimit {
            cur: 2 << 20,
            max: 2 << 20,
        };
        assert_eq!(l.set(resource::AS, soft_up), Ok(()));
        let inverted = Rlimit { cur: 3, max: 2 };
        assert_eq!(l.set(resource::AS, inverted), Err(Errno::EINVAL));
    }

    #[test]
    fn mmap_gap_is_clamped_like_linuxs() {
        let task = 0x7fff_ffff_f000;
        assert_eq!(mmap_gap(8 << 20, 1 << 20, task), 128 << 20);
        assert_eq!(mmap_gap(1 << 30, 1 << 20, task), (1 << 30) + (1 << 20));
        assert_eq!(
            mmap_gap(RLIM_INFINITY, 1 << 20, task),
            (task / 6 * 5) & !4095
        );
    }
}
