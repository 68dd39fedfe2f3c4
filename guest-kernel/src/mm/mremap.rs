//! `mremap` and `madvise(MADV_DONTNEED)` (Linux's `mremap`, `move_vma`,
//! `zap_page_range`) as methods on [`Mm`].
//!
//! Growing happens in place when the area ends at the old range's end and
//! the space after it is free; otherwise, with `MREMAP_MAYMOVE`, the area
//! moves: a new area takes the old one's rights and backing (file offsets
//! follow), and every present leaf is moved to the new address with its
//! frame and flags, so nothing is copied and nothing is faulted again.

use super::paging::PageSize;
use super::phys::PhysMem;
use super::space::{page_align_up, Mm, MmEnv};
use super::vma::{Backing, Vma};
use crate::errno::{Errno, KResult};
use vmrun_contract::layout::{HUGE_PAGE_SIZE, PAGE_SIZE, TASK_SIZE};

/// `mremap` flags.
pub mod mremap_flags {
    /// The mapping may move.
    pub const MAYMOVE: u64 = 1;
    /// Move it to exactly `new_addr`.
    pub const FIXED: u64 = 2;
    /// Leave the old range mapped (anonymous private only).
    pub const DONTUNMAP: u64 = 4;
}

use mremap_flags::{DONTUNMAP, FIXED, MAYMOVE};

impl Mm {
    /// The `mremap` system call. Returns the new address.
    pub fn mremap<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
    ) -> KResult<u64> {
        if flags & !(MAYMOVE | FIXED | DONTUNMAP) != 0 || old & (PAGE_SIZE - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & (FIXED | DONTUNMAP) != 0 && flags & MAYMOVE == 0 {
            return Err(Errno::EINVAL);
        }
        let old_len = page_align_up(old_len).ok_or(Errno::EINVAL)?;
        let new_len = page_align_up(new_len).ok_or(Errno::EINVAL)?;
        if new_len == 0 || old_len == 0 || flags & DONTUNMAP != 0 && old_len != new_len {
            return Err(Errno::EINVAL);
        }
        let old_end = old.checked_add(old_len).ok_or(Errno::EINVAL)?;
        if old_end > TASK_SIZE || new_len > TASK_SIZE {
            return Err(Errno::EINVAL);
        }
        if flags & FIXED != 0 {
            return self.mremap_to(env, old, old_len, new_addr, new_len, flags);
        }
        if flags & DONTUNMAP != 0 {
            // Linux's mremap_to without MREMAP_FIXED: the pages move to a
            // new place (the lengths are equal) and the old area stays.
            self.vma_of_range(old, old_end)?;
            let to = self.get_unmapped_area(0, new_len, false)?;
            return self.move_vma(env, old, old_len, to, new_len, true);
        }
        if new_len <= old_len {
            if new_len < old_len {
                self.do_munmap(env, old + new_len, old_end)?;
            }
            return Ok(old);
        }
        let i = self.vma_of_range(old, old_end)?;
        let v = self.vmas[i];
        let grown = old.checked_add(new_len).ok_or(Errno::ENOMEM)?;
        if v.end == old_end && grown <= TASK_SIZE && !self.vmas.intersects(old_end, grown) {
            self.vmas.update(i, |vma| vma.end = grown);
            self.vmas.note_resized(i);
            // Grown up to the next area, it merges with it as in Linux.
            self.vmas.merge_around(i);
            return Ok(old);
        }
        if flags & MAYMOVE == 0 {
            return Err(Errno::ENOMEM);
        }
        let to = self.get_unmapped_area(0, new_len, false)?;
        self.move_vma(env, old, old_len, to, new_len, flags & DONTUNMAP != 0)
    }

    fn mremap_to<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        old: u64,
        old_len: u64,
        to: u64,
        new_len: u64,
        flags: u64,
    ) -> KResult<u64> {
        if to & (PAGE_SIZE - 1) != 0 || to.checked_add(new_len).is_none_or(|e| e > TASK_SIZE) {
            return Err(Errno::EINVAL);
        }
        if to < old + old_len && old < to + new_len {
            return Err(Errno::EINVAL);
        }
        self.do_munmap(env, to, to + new_len)?;
        let mut old_len = old_len;
        if new_len < old_len {
            self.do_munmap(env, old + new_len, old + old_len)?;
            old_len = new_len;
        }
        self.move_vma(env, old, old_len, to, new_len, flags & DONTUNMAP != 0)
    }

    /// The index of the one area holding `[start, end)` (EFAULT if none).
    fn vma_of_range(&self, start: u64, end: u64) -> KResult<usize> {
        let i = self.vmas.find(start).ok_or(Errno::EFAULT)?;
        if self.vmas[i].end < end {
            return Err(Errno::EFAULT);
        }
        Ok(i)
    }

    /// Move `[old, old + old_len)` to a new area at `to` of `new_len`.
    fn move_vma<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        old: u64,
        old_len: u64,
        to: u64,
        new_len: u64,
        keep_old: bool,
    ) -> KResult<u64> {
        let i = self.vma_of_range(old, old + old_len)?;
        let v = self.vmas[i];
        let backing = match v.backing {
            Backing::File {
                file,
                offset,
                data_end,
            } => Backing::File {
                file,
                offset: offset + (old - v.start),
                data_end,
            },
            Backing::Anon => Backing::Anon,
        };
        // The pages move in: not fresh.
        let vma = Vma {
            start: to,
            end: to + new_len,
            backing,
            flags: v.flags.kind(),
            ..v
        };
        self.vmas.insert_merged(vma)?;
        self.move_pages(env, old, to, old_len.min(new_len))?;
        if !keep_old {
            self.do_munmap(env, old, old + old_len)?;
        }
        self.tlb_stale = true;
        Ok(to)
    }

    /// Move the leaves of `[from, from + len)` to `to` (2 MiB leaves are
    /// split first, so the two ranges need not share an alignment).
    fn move_pages<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        from: u64,
        to: u64,
        len: u64,
    ) -> KResult<()> {
        let mut a = from;
        while a < from + len {
            let Some(t) = self.pt.translate(env.mem, a) else {
                a += PAGE_SIZE;
                continue;
            };
            if t.size == PageSize::Size2M {
                self.pt
                    .split_huge(env.mem, env.frames, a & !(HUGE_PAGE_SIZE - 1))
                    .map_err(|e| e.errno())?;
                continue;
            }
            let Some((frame, _, flags)) = self.pt.unmap(env.mem, a) else {
                a += PAGE_SIZE;
                continue;
            };
            let dst = to + (a - from);
            self.pt
                .map(env.mem, env.frames, dst, frame, PageSize::Size4K, flags)
                .map_err(|e| e.errno())?;
            a += PAGE_SIZE;
        }
        Ok(())
    }

    /// Drop the pages of `[start, end)` (madvise MADV_DONTNEED): private
    /// frames are freed; the next touch faults in zeros (anonymous) or the
    /// file's bytes again.
    pub fn zap_range<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        start: u64,
        end: u64,
    ) -> KResult<()> {
        self.unmap_pages_pub(env, start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::mmap::{map, prot};
    use crate::mm::testmem::Fixture;
    use crate::uaccess::{copy_from_user, copy_to_user};

    const P: u64 = PAGE_SIZE;

    /// Found by prop_address_space_matches_a_page_model: with equal
    /// lengths, MREMAP_DONTUNMAP returned the old address without moving.
    #[test]
    fn dontunmap_moves_the_pages_and_keeps_the_old_area_empty() {
        let mut fx = Fixture::new();
        let mut mm = fx.mm();
        let env = &mut fx.env();
        let (rw, anon) = (prot::READ | prot::WRITE, map::PRIVATE | map::ANONYMOUS);
        let old = mm.mmap(env, 0, 2 * P, rw, anon, None, 0).unwrap();
        copy_to_user(&mut mm, env, old, b"x").unwrap();
        let new = mm.mremap(env, old, 2 * P, 2 * P, MAYMOVE | DONTUNMAP, 0);
        let new = new.unwrap();
        assert_ne!(new, old);
        let (mut at_new, mut at_old) = ([0u8], [0u8]);
        copy_from_user(&mut mm, env, new, &mut at_new).unwrap();
        copy_from_user(&mut mm, env, old, &mut at_old).unwrap();
        assert_eq!((at_new, at_old), (*b"x", [0]));
    }

    /// Found by prop_address_space_matches_a_page_model: an area grown in
    /// place up to a like neighbour stayed apart from it.
    #[test]
    fn growing_in_place_up_to_a_like_area_merges_with_it() {
        let mut fx = Fixture::new();
        let mut mm = fx.mm();
        let env = &mut fx.env();
        let (rw, fixed) = (
            prot::READ | prot::WRITE,
            map::PRIVATE | map::ANONYMOUS | map::FIXED,
        );
        let a = 0x7000_0000;
        mm.mmap(env, a, P, rw, fixed, None, 0).unwrap();
        mm.mmap(env, a + 2 * P, P, rw, fixed, None, 0).unwrap();
        assert_eq!(mm.mremap(env, a, P, 2 * P, 0, 0), Ok(a));
        let areas: Vec<(u64, u64)> = mm.vmas.iter().map(|v| (v.start, v.end)).collect();
        assert_eq!(areas, vec![(a, a + 3 * P)]);
    }

    #[test]
    fn dontunmap_of_an_unmapped_range_is_efault() {
        let mut fx = Fixture::new();
        let mut mm = fx.mm();
        let r = mm.mremap(&mut fx.env(), 0x7000_0000, P, P, MAYMOVE | DONTUNMAP, 0);
        assert_eq!(r, Err(Errno::EFAULT));
    }
}
