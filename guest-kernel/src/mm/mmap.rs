//! `mmap`, `munmap`, `mprotect` and `brk` (Linux's `do_mmap`,
//! `do_munmap`, `do_mprotect_pkey`, `sys_brk`) as methods on [`Mm`].
//!
//! Argument checks follow Linux's order and error numbers, because tests
//! compare with native runs. Pages are never populated here: faults do it.
//! Only anonymous mappings exist so far; `MAP_SHARED` anonymous memory
//! behaves as private (there is one process, so nobody could tell), and a
//! file descriptor gets EBADF. [`Mm::map_region`] is where file mappings
//! will slot in: it takes a ready [`Vma`] with any backing.

use super::fault::user_pte_flags;
use super::phys::PhysMem;
use super::rlimit::{overcommit_guess_ok, resource, RLIM_INFINITY};
use super::space::{page_align_up, release_leaf, release_leaf_unshared, Mm, MmEnv, MMAP_MIN_ADDR};
use super::vma::{Backing, Prot, VmFlags, Vma, MAX_VMAS};
use crate::errno::{Errno, KResult};
use vmrun_contract::layout::{HUGE_PAGE_SIZE, PAGE_SIZE, TASK_SIZE};

/// `mmap` flags (Linux x86-64 values).
pub mod map {
    /// Share changes.
    pub const SHARED: u64 = 0x01;
    /// Changes are private.
    pub const PRIVATE: u64 = 0x02;
    /// Shared, and fail on unknown flags.
    pub const SHARED_VALIDATE: u64 = 0x03;
    /// Mask of the mapping type.
    pub const TYPE: u64 = 0x0f;
    /// Interpret the address exactly.
    pub const FIXED: u64 = 0x10;
    /// No file backing.
    pub const ANONYMOUS: u64 = 0x20;
    /// A stack-like area that grows down.
    pub const GROWSDOWN: u64 = 0x100;
    /// Ignored.
    pub const DENYWRITE: u64 = 0x800;
    /// Ignored.
    pub const EXECUTABLE: u64 = 0x1000;
    /// Lock the pages (accepted, no effect).
    pub const LOCKED: u64 = 0x2000;
    /// Do not reserve swap (no effect).
    pub const NORESERVE: u64 = 0x4000;
    /// Populate page tables (accepted; pages are still faulted lazily).
    pub const POPULATE: u64 = 0x8000;
    /// Do not block on I/O (no effect).
    pub const NONBLOCK: u64 = 0x1_0000;
    /// Address suitable for a stack (no effect).
    pub const STACK: u64 = 0x2_0000;
    /// Huge TLB pages (no effect).
    pub const HUGETLB: u64 = 0x4_0000;
    /// Synchronous page faults (only with SHARED_VALIDATE on DAX files).
    pub const SYNC: u64 = 0x8_0000;
    /// Like FIXED but fail with EEXIST instead of replacing.
    pub const FIXED_NOREPLACE: u64 = 0x10_0000;
    /// Flags `MAP_SHARED_VALIDATE` knows (Linux's `LEGACY_MAP_MASK`).
    pub const LEGACY_MASK: u64 = SHARED
        | PRIVATE
        | FIXED
        | ANONYMOUS
        | DENYWRITE
        | EXECUTABLE
        | UNINITIALIZED
        | GROWSDOWN
        | LOCKED
        | NORESERVE
        | POPULATE
        | NONBLOCK
        | STACK
        | HUGETLB;
    /// Ignored.
    pub const UNINITIALIZED: u64 = 0x400_0000;
}

/// `prot` bits (Linux values).
pub mod prot {
    /// Readable.
    pub const READ: u64 = 1;
    /// Writable.
    pub const WRITE: u64 = 2;
    /// Executable.
    pub const EXEC: u64 = 4;
    /// Atomic operations allowed (no effect).
    pub const SEM: u64 = 8;
    /// mprotect: extend to the start of a growsdown area.
    pub const GROWSDOWN: u64 = 0x0100_0000;
    /// mprotect: extend to the end of a growsup area (none exist on x86).
    pub const GROWSUP: u64 = 0x0200_0000;
}

impl Mm {
    /// The `mmap` system call. Returns the mapping's address.
    #[allow(clippy::too_many_arguments)]
    pub fn mmap<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        file: Option<u16>,
        off: u64,
    ) -> KResult<u64> {
        if off & (PAGE_SIZE - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let file = if flags & map::ANONYMOUS == 0 {
            Some(file.ok_or(Errno::EBADF)?)
        } else {
            None
        };
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_align_up(len).ok_or(Errno::ENOMEM)?;
        let vm_flags = mmap_vm_flags(flags)?;
        let fixed = flags & (map::FIXED | map::FIXED_NOREPLACE) != 0;
        let start = self.get_unmapped_area(addr, len, fixed)?;
        if flags & map::FIXED_NOREPLACE != 0 && self.vmas.intersects(start, start + len) {
            return Err(Errno::EEXIST);
        }
        let mut vma = Vma::anon(start, start + len, Prot::from_linux(prot), vm_flags);
        if let Some(file) = file {
            if off.checked_add(len).is_none() {
                return Err(Errno::EOVERFLOW);
            }
            vma.backing = Backing::File {
                file,
                offset: off,
                data_end: u64::MAX,
            };
        }
        // Room that get_unmapped_area found holds no area; a fixed
        // mapping may replace some.
        let may_replace = fixed && flags & map::FIXED_NOREPLACE == 0;
        let replaces = self.check_limits(env, &vma, flags, may_replace)?;
        self.map_over(env, vma, replaces)
    }

    /// Linux's checks of a new mapping against the limits (in
    /// `mmap_region`): `RLIMIT_AS` and `RLIMIT_DATA` (what a `fixed`
    /// mapping replaces is not counted twice), `vm.max_map_count`, and the
    /// heuristic overcommit check of a private writable mapping. Returns
    /// whether the new mapping may replace mapped areas: whether it does,
    /// or, for a fixed one under no such limit (nothing to count, so no
    /// lookup), true.
    fn check_limits<M: PhysMem>(
        &self,
        env: &MmEnv<'_, M>,
        vma: &Vma,
        flags: u64,
        fixed: bool,
    ) -> KResult<bool> {
        let unlimited = self.rlim.cur(resource::AS) == RLIM_INFINITY
            && self.rlim.cur(resource::DATA) == RLIM_INFINITY;
        let (old, old_data) = match fixed && !unlimited {
            true => self.vmas.bytes_in(vma.start, vma.end),
            false => (0, 0),
        };
        // Under no limit the space may always grow: no sums to weigh.
        let data = if vma.is_data() { vma.len() } else { 0 };
        if !unlimited && !self.may_expand(vma.len() - old, data.saturating_sub(old_data)) {
            return Err(Errno::ENOMEM);
        }
        if self.vmas.len() > MAX_VMAS {
            return Err(Errno::ENOMEM);
        }
        let accountable = vma.prot.contains(Prot::WRITE)
            && !vma.flags.contains(VmFlags::SHARED)
            && flags & map::NORESERVE == 0;
        if accountable && !overcommit_guess_ok(vma.len() / PAGE_SIZE, env.frames.total()) {
            return Err(Errno::ENOMEM);
        }
        Ok(old > 0 || fixed && unlimited)
    }

    /// Where a mapping of `len` (page aligned) bytes goes (Linux's
    /// `get_unmapped_area`): `addr` itself if `fixed` (checked), else the
    /// hint if it is free, else the highest gap below `mmap_base` (else
    /// anywhere, top down); 2 MiB aligned when `len` is a multiple of 2 MiB.
    pub fn get_unmapped_area(&self, addr: u64, len: u64, fixed: bool) -> KResult<u64> {
        if len > TASK_SIZE - MMAP_MIN_ADDR {
            return Err(Errno::ENOMEM);
        }
        if fixed {
            return check_fixed(addr, len);
        }
        if addr != 0 {
            let hint = page_align_up(addr).ok_or(Errno::ENOMEM)?.max(MMAP_MIN_ADDR);
            if hint <= TASK_SIZE - len && self.fits_with_gaps(hint, hint + len) {
                return Ok(hint);
            }
        }
        if len.is_multiple_of(HUGE_PAGE_SIZE) {
            if let Some(start) = self.huge_aligned_gap(len) {
                return Ok(start);
            }
        }
        let vmas = &self.vmas;
        vmas.find_gap_top_down(len, MMAP_MIN_ADDR, self.mmap_base)
            .or_else(|| vmas.find_gap_top_down(len, MMAP_MIN_ADDR, TASK_SIZE))
            .ok_or(Errno::ENOMEM)
    }

    /// The highest 2 MiB-aligned place for `len` below `mmap_base`: as Linux
    /// (6.7 and later) places anonymous mappings whose length is a multiple
    /// of 2 MiB, so that every 2 MiB of them can be one large page.
    fn huge_aligned_gap(&self, len: u64) -> Option<u64> {
        let padded = len.checked_add(HUGE_PAGE_SIZE - PAGE_SIZE)?;
        let start = self
            .vmas
            .find_gap_top_down(padded, MMAP_MIN_ADDR, self.mmap_base)?;
        Some((start + padded - len) & !(HUGE_PAGE_SIZE - 1))
    }

    /// Map the area `vma` (page aligned, below TASK_SIZE), replacing
    /// whatever is mapped in its range (MAP_FIXED semantics) and merging
    /// with neighbours. Returns its start.
    pub fn map_region<M: PhysMem>(&mut self, env: &mut MmEnv<'_, M>, vma: Vma) -> KResult<u64> {
        if vma.is_empty() || (vma.start | vma.end) & (PAGE_SIZE - 1) != 0 || vma.end > TASK_SIZE {
            return Err(Errno::EINVAL);
        }
        let replaces = self.vmas.intersects(vma.start, vma.end);
        self.map_over(env, vma, replaces)
    }

    /// [`Self::map_region`] of an area that `replaces` mapped areas, or
    /// may, or (false) does not, as the caller found out: no lookup to
    /// tell. The new area is [`Vma::is_fresh`]: no page is mapped in its
    /// range (none lies outside the areas, and those it replaces lose
    /// theirs here).
    #[inline(always)]
    fn map_over<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        mut vma: Vma,
        replaces: bool,
    ) -> KResult<u64> {
        debug_assert!(replaces || !self.vmas.intersects(vma.start, vma.end));
        vma.flags = VmFlags(vma.flags.0 | VmFlags::FRESH.0);
        if !replaces {
            self.vmas.insert_merged(vma)?;
            return Ok(vma.start);
        }
        // Over part of one fresh area (a library's segment over its
        // reservation): no page to unmap, and the set changed in one step.
        if self.vmas.replace_in_fresh_area(vma).is_some() {
            return Ok(vma.start);
        }
        if self.vmas.len() >= MAX_VMAS && self.vmas.punches_hole(vma.start, vma.end) {
            return Err(Errno::ENOMEM);
        }
        self.unmap_pages_unless_fresh(env, vma.start, vma.end)?;
        let i = self.vmas.replace_range(vma)?;
        self.vmas.merge_around(i);
        Ok(vma.start)
    }

    /// The `munmap` system call.
    pub fn munmap<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        addr: u64,
        len: u64,
    ) -> KResult<()> {
        if addr & (PAGE_SIZE - 1) != 0 || addr > TASK_SIZE || len > TASK_SIZE - addr {
            return Err(Errno::EINVAL);
        }
        let len = page_align_up(len).ok_or(Errno::EINVAL)?;
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        self.do_munmap(env, addr, addr + len)
    }

    /// Unmap `[start, end)` (page aligned): free its frames and emptied
    /// tables, and remove or trim its areas.
    pub fn do_munmap<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        start: u64,
        end: u64,
    ) -> KResult<()> {
        if self.vmas.len() >= MAX_VMAS && self.vmas.punches_hole(start, end) {
            return Err(Errno::ENOMEM);
        }
        // Most areas unmapped had pages: only the hot area is looked at
        // (a lookup would cost an unmap of pages more than it saves).
        if !self.vmas.hot_fresh(start, end) {
            self.unmap_pages(env, start, end)?;
        }
        self.vmas.remove_range(start, end, |_| ()).map(|_| ())
    }

    /// The `mprotect` system call. Like Linux, areas before a hole keep
    /// their new protection when ENOMEM is returned for the hole.
    pub fn mprotect<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        addr: u64,
        len: u64,
        prot: u64,
    ) -> KResult<()> {
        let grows = prot & (prot::GROWSDOWN | prot::GROWSUP);
        let prot = prot & !grows;
        if grows == prot::GROWSDOWN | prot::GROWSUP || addr & (PAGE_SIZE - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let end = page_align_up(len)
            .and_then(|l| addr.checked_add(l))
            .ok_or(Errno::ENOMEM)?;
        if prot & !(prot::READ | prot::WRITE | prot::EXEC | prot::SEM) != 0 {
            return Err(Errno::EINVAL);
        }
        let start = match grows {
            // set_prot finds an unmapped `addr` itself (ENOMEM).
            0 => addr,
            _ => self.mprotect_start(addr, end, grows)?,
        };
        let new = Prot::from_linux(prot);
        let reached = self.vmas.set_prot(start, end, new)?;
        self.reprotect_pages(env, start, reached, new)?;
        if reached < end {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    /// The `brk` system call: returns the new break, or the old one when
    /// the request is refused (Linux semantics).
    pub fn brk<M: PhysMem>(&mut self, env: &mut MmEnv<'_, M>, new: u64) -> u64 {
        if let Some(b) = self.brk_up(new, env.frames.total()) {
            return b;
        }
        // A lower break inside the heap (brk_up served the rest).
        if !self.brk_within_data_limit(new) {
            return self.brk;
        }
        let (Some(old_top), Some(new_top)) = (page_align_up(self.brk), page_align_up(new)) else {
            return self.brk;
        };
        if new_top == old_top || self.do_munmap(env, new_top, old_top).is_ok() {
            self.brk = new;
        }
        self.brk
    }

    /// [`Self::brk`] for a break `new` at or above the current one, or
    /// below the heap's start (refused: `brk(0)` asks for the break): no
    /// page is unmapped, so it needs no memory environment (`ram_pages`:
    /// the RAM the overcommit check compares a growth with), and the
    /// system call's short path can serve it. None, and no change, for a
    /// lower break inside the heap.
    #[inline(always)]
    pub fn brk_up(&mut self, new: u64, ram_pages: u64) -> Option<u64> {
        if new < self.start_brk {
            return Some(self.brk);
        }
        if new < self.brk {
            return None;
        }
        // Past TASK_SIZE the heap cannot grow (nor stay in the break's
        // page, which lies below it).
        if new > TASK_SIZE || !self.brk_within_data_limit(new) {
            return Some(self.brk);
        }
        // Both breaks lie at or below TASK_SIZE: no overflow.
        let align = |b: u64| (b + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
        let (old_top, new_top) = (align(self.brk), align(new));
        if new_top == old_top || self.grow_brk(old_top, new_top, ram_pages).is_ok() {
            self.brk = new;
        }
        Some(self.brk)
    }

    /// Whether a break at `new` keeps the heap and the data segment within
    /// `RLIMIT_DATA` (Linux's `check_data_rlimit`, which `brk` applies to
    /// every change, shrinking included).
    #[inline]
    fn brk_within_data_limit(&self, new: u64) -> bool {
        let limit = self.rlim.cur(resource::DATA);
        if limit == RLIM_INFINITY {
            return true;
        }
        let data_segment = self.end_data.saturating_sub(self.start_data);
        (new - self.start_brk).saturating_add(data_segment) <= limit
    }

    /// Grow the heap from `old_top` to `new_top` (above it, at most
    /// TASK_SIZE), refusing as Linux's `brk` does: below
    /// `mmap_min_addr`, into the next area's gap, past `RLIMIT_AS` or
    /// `RLIMIT_DATA`, with
    /// more than `vm.max_map_count` areas, or by more pages than the guest
    /// has RAM (`ram_pages`: the overcommit heuristic's check of one
    /// request against all of RAM, there being no swap).
    #[inline(always)]
    fn grow_brk(&mut self, old_top: u64, new_top: u64, ram_pages: u64) -> KResult<()> {
        if old_top < MMAP_MIN_ADDR {
            return Err(Errno::ENOMEM);
        }
        let step = new_top - old_top;
        if !self.may_expand(step, step) || self.vmas.len() > MAX_VMAS {
            return Err(Errno::ENOMEM);
        }
        if !overcommit_guess_ok(step / PAGE_SIZE, ram_pages) {
            return Err(Errno::ENOMEM);
        }
        // Like Linux's sys_brk, the heap merges only with areas at or above
        // start_brk, never with the program's bss below it. The common
        // case, a heap area ending at the old break with room above it,
        // grows in place; an empty heap (the first growth) has none.
        let empty = self.brk == self.start_brk;
        let floor = self.start_brk;
        if !empty
            && self
                .vmas
                .grow_anon(old_top, new_top, HEAP, floor, PAGE_SIZE)
        {
            return Ok(());
        }
        self.add_heap_area(old_top, new_top, empty)
    }

    /// The heap grows by `[start, end)` where the area below cannot grow in
    /// place (the first growth, or a gap left by a shrink): a new area,
    /// merged with the heap area below if there is one (none if the heap
    /// was `empty`: an area starting at or above its start, which is page
    /// aligned, would end above the new one's start); ENOMEM if it would
    /// reach into the next area's guard gap. The bounds come in registers
    /// and the area is made here, its constant rights folded in.
    #[inline(never)]
    fn add_heap_area(&mut self, start: u64, end: u64, empty: bool) -> KResult<()> {
        let grown = heap_area(start, end);
        let (i, next) = self.vmas.seek(grown.start);
        if next.is_some_and(|next| grown.end + PAGE_SIZE > next.start_gap()) {
            return Err(Errno::ENOMEM);
        }
        // The area past the heap leaves room for it: it goes at `i`.
        let i = self.vmas.insert_at(i, grown)?;
        let prev_is_heap = !empty
            && i.checked_sub(1)
                .and_then(|p| self.vmas.get(p))
                .is_some_and(|p| p.start >= self.start_brk);
        // The area past it starts a page or more above its end (checked
        // above): only the one below may merge.
        let areas = self.vmas.len();
        if prev_is_heap {
            self.vmas.merge_range(i - 1, i);
        }
        // The next growth finds the heap area without a search.
        self.vmas
            .hint_growth(i - usize::from(self.vmas.len() < areas));
        Ok(())
    }

    /// Whether `[start, end)` is free and clear of stack guard gaps.
    fn fits_with_gaps(&self, start: u64, end: u64) -> bool {
        match self.vmas.find_next(start).and_then(|i| self.vmas.get(i)) {
            Some(next) => end <= next.start_gap(),
            None => true,
        }
    }

    /// The first address mprotect changes; with PROT_GROWSDOWN the start
    /// of the growsdown area holding `addr`.
    fn mprotect_start(&self, addr: u64, end: u64, grows: u64) -> KResult<u64> {
        let v = self
            .vmas
            .find_next(addr)
            .and_then(|i| self.vmas.get(i))
            .ok_or(Errno::ENOMEM)?;
        if grows & prot::GROWSDOWN != 0 {
            if v.start >= end {
                return Err(Errno::ENOMEM);
            }
            if !v.flags.contains(VmFlags::GROWSDOWN) {
                return Err(Errno::EINVAL);
            }
            return Ok(v.start);
        }
        if v.start > addr {
            return Err(Errno::ENOMEM);
        }
        if grows & prot::GROWSUP != 0 {
            return Err(Errno::EINVAL);
        }
        Ok(addr)
    }

    /// Give the present leaves in `[start, end)` the flags of `prot`:
    /// writable only for owned frames (page-cache pages stay copy-on-write).
    fn reprotect_pages<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        start: u64,
        end: u64,
        prot: Prot,
    ) -> KResult<()> {
        self.tlb_stale = true;
        // Without write rights every page gets the same flags: only a
        // writable area's pages look at their frames (a private one is
        // mapped writable, a shared one stays read-only until its
        // copy-on-write fault).
        let (pt, mem, frames) = (&mut self.pt, &mut *env.mem, &mut *env.frames);
        let r = if prot.contains(Prot::WRITE) {
            pt.set_flags_range(mem, frames, start, end, |m, fr, l| {
                user_pte_flags(prot, fr.is_private(m, l.frame))
            })
        } else {
            // One set of flags for every page, computed once.
            let flags = user_pte_flags(prot, false);
            pt.set_same_flags_range(mem, frames, start, end, flags)
        };
        r.map_err(|e| e.errno())
    }

    /// Unmap the pages of `[start, end)`, freeing owned frames (for
    /// madvise and mremap).
    pub(crate) fn unmap_pages_pub<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        start: u64,
        end: u64,
    ) -> KResult<()> {
        self.unmap_pages(env, start, end)
    }

    /// [`Self::unmap_pages`], with no page-table walk where `[start,
    /// end)` lies in [`Vma::is_fresh`] areas, which have no page mapped (a
    /// dynamic linker's library reservation, which it maps each segment
    /// over at once).
    #[inline(always)]
    fn unmap_pages_unless_fresh<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        start: u64,
        end: u64,
    ) -> KResult<()> {
        if self.vmas.all_fresh(start, end) {
            return Ok(());
        }
        self.unmap_pages(env, start, end)
    }

    /// Unmap the pages of `[start, end)`, freeing owned frames.
    fn unmap_pages<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        start: u64,
        end: u64,
    ) -> KResult<()> {
        self.tlb_stale = true;
        let mut freed = 0;
        // No share count to look at where no fork shared the frames.
        let r = if self.may_share {
            self.pt
                .unmap_range(env.mem, env.frames, start, end, |m, fr, l| {
                    freed += release_leaf(m, fr, l);
                })
        } else {
            self.pt
                .unmap_range(env.mem, env.frames, start, end, |m, fr, l| {
                    freed += release_leaf_unshared(m, fr, l);
                })
        };
        self.sub_user_frames(freed.min(self.user_frames));
        r.map_err(|e| e.errno())
    }
}

/// The heap's rights: private and writable (its areas are anonymous).
const HEAP: (Prot, VmFlags) = (Prot::RW, VmFlags::NONE);

/// The heap's area over `[start, end)`.
#[inline(always)]
fn heap_area(start: u64, end: u64) -> Vma {
    Vma::anon(start, end, HEAP.0, HEAP.1)
}

/// Checks of a MAP_FIXED address.
fn check_fixed(addr: u64, len: u64) -> KResult<u64> {
    if addr > TASK_SIZE - len {
        return Err(Errno::ENOMEM);
    }
    if addr & (PAGE_SIZE - 1) != 0 {
        return Err(Errno::EINVAL);
    }
    if addr < MMAP_MIN_ADDR {
        return Err(Errno::EPERM);
    }
    Ok(addr)
}

/// Area flags for mmap `flags`; EINVAL for an unknown mapping type or
/// unknown flags with MAP_SHARED_VALIDATE (Linux: EOPNOTSUPP, not in our
/// errno set).
fn mmap_vm_flags(flags: u64) -> KResult<VmFlags> {
    let shared = match flags & map::TYPE {
        map::PRIVATE => false,
        map::SHARED => true,
        map::SHARED_VALIDATE
            if flags & !(map::LEGACY_MASK | map::FIXED_NOREPLACE | map::SYNC) == 0 =>
        {
            true
        }
        _ => return Err(Errno::EINVAL),
    };
    let mut f = 0;
    if flags & map::GROWSDOWN != 0 {
        f |= VmFlags::GROWSDOWN.0;
    }
    if shared {
        f |= VmFlags::SHARED.0;
    }
    Ok(VmFlags(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::fault::pf;
    use crate::mm::paging::pte;
    use crate::mm::rlimit::Rlimit;
    use crate::mm::space::MMAP_BASE;
    use crate::mm::testmem::Fixture;
    use crate::mm::vma::Backing;

    const RW: u64 = prot::READ | prot::WRITE;
    const PA: u64 = map::PRIVATE | map::ANONYMOUS;
    const P: u64 = PAGE_SIZE;

    fn setup() -> (Fixture, Mm) {
        let mut fx = Fixture::new();
        let mm = fx.mm();
        (fx, mm)
    }

    fn mmap(
        mm: &mut Mm,
        fx: &mut Fixture,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
    ) -> KResult<u64> {
        mm.mmap(&mut fx.env(), addr, len, prot, flags, None, 0)
    }

    fn touch(mm: &mut Mm, fx: &mut Fixture, addr: u64) -> u64 {
        mm.handle_page_fault(&mut fx.env(), addr, pf::USER | pf::WRITE)
            .unwrap()
            .frame
    }

    fn ranges(mm: &Mm) -> Vec<(u64, u64)> {
        mm.vmas.iter().map(|v| (v.start, v.end)).collect()
    }

    #[test]
    fn anonymous_mapping_of_whole_2m_pages_is_2m_aligned_like_linux() {
        let (mut fx, mut mm) = setup();
        let a = mmap(&mut mm, &mut fx, 0, 4 << 20, 3, 0x22).unwrap();
        assert_eq!(a % HUGE_PAGE_SIZE, 0);
        assert!(a + (4 << 20) <= mm.mmap_base);
        let b = mmap(&mut mm, &mut fx, 0, 0x3000, 3, 0x22).unwrap();
        assert_ne!(
            b % HUGE_PAGE_SIZE,
            0,
            "small mappings stay packed under the last"
        );
    }

    #[test]
    fn anonymous_mmaps_go_top_down_below_mmap_base_and_merge() {
        let (mut fx, mut mm) = setup();
        assert_eq!(MMAP_BASE, 0x7fff_f7ff_f000);
        let a = mmap(&mut mm, &mut fx, 0, 0x1800, RW, PA).unwrap();
        assert_eq!(a, MMAP_BASE - 0x2000);
        let b = mmap(&mut mm, &mut fx, 0, P, RW, PA).unwrap();
        assert_eq!(b, a - P);
        assert_eq!(ranges(&mm), vec![(b, MMAP_BASE)]);
        let c = mmap(&mut mm, &mut fx, 0, P, prot::READ, PA).unwrap();
        assert_eq!((c, mm.vmas.len()), (b - P, 2));
    }

    #[test]
    fn mmap_argument_errors_follow_linux() {
        let (mut fx, mut mm) = setup();
        let e = |r: KResult<u64>| r.unwrap_err();
        assert_eq!(e(mmap(&mut mm, &mut fx, 0, 0, RW, PA)), Errno::EINVAL);
        assert_eq!(
            e(mm.mmap(&mut fx.env(), 0, P, RW, PA, None, 0x800)),
            Errno::EINVAL
        );
        assert_eq!(
            e(mm.mmap(&mut fx.env(), 0, P, RW, map::PRIVATE, None, 0)),
            Errno::EBADF
        );
        assert_eq!(
            e(mmap(&mut mm, &mut fx, 0, P, RW, map::ANONYMOUS)),
            Errno::EINVAL
        );
        assert_eq!(e(mmap(&mut mm, &mut fx, 0, P, RW, PA | 0x4)), Errno::EINVAL);
        assert_eq!(
            e(mmap(&mut mm, &mut fx, 0x1234, P, RW, PA | map::FIXED)),
            Errno::EINVAL
        );
        assert_eq!(
            e(mmap(&mut mm, &mut fx, TASK_SIZE, P, RW, PA | map::FIXED)),
            Errno::ENOMEM
        );
        assert_eq!(
            e(mmap(&mut mm, &mut fx, 0x1000, P, RW, PA | map::FIXED)),
            Errno::EPERM
        );
        assert_eq!(
            e(mmap(&mut mm, &mut fx, 0, u64::MAX, RW, PA)),
            Errno::ENOMEM
        );
        assert_eq!(
            e(mmap(&mut mm, &mut fx, 0, TASK_SIZE, RW, PA)),
            Errno::ENOMEM
        );
        let sv = map::SHARED_VALIDATE | map::ANONYMOUS;
        assert_eq!(
            e(mmap(&mut mm, &mut fx, 0, P, RW, sv | 0x200)),
            Errno::EINVAL
        );
        assert!(mmap(&mut mm, &mut fx, 0, P, RW, sv).is_ok());
        assert!(mm.vmas.is_empty() || mm.vmas.len() == 1);
    }

    #[test]
    fn mmap_hint_is_used_when_free_else_top_down() {
        let (mut fx, mut mm) = setup();
        assert_eq!(
            mmap(&mut mm, &mut fx, 0x1000_0000, P, RW, PA),
            Ok(0x1000_0000)
        );
        assert_eq!(
            mmap(&mut mm, &mut fx, 0x1000_0800, P, RW, PA),
            Ok(0x1000_1000),
            "rounded up"
        );
        assert_eq!(
            mmap(&mut mm, &mut fx, 0x1000_0000, P, RW, PA),
            Ok(MMAP_BASE - P)
        );
        assert_eq!(mmap(&mut mm, &mut fx, 0x100, P, RW, PA), Ok(MMAP_MIN_ADDR));
    }

    #[test]
    fn map_fixed_replaces_mapping_and_frees_its_frames() {
        let (mut fx, mut mm) = setup();
        let base = fx.frames.in_use();
        let a = mmap(&mut mm, &mut fx, 0x1000_0000, 4 * P, RW, PA).unwrap();
        for i in 0..4 {
            let f = touch(&mut mm, &mut fx, a + i * P);
            fx.mem.fill(f, 1, 0xee);
        }
        assert_eq!(mm.user_frames, 4);
        let r = mmap(&mut mm, &mut fx, a + P, 2 * P, prot::READ, PA | map::FIXED);
        assert_eq!(r, Ok(a + P));
        assert_eq!(mm.user_frames, 2);
        assert_eq!(
            ranges(&mm),
            vec![(a, a + P), (a + P, a + 3 * P), (a + 3 * P, a + 4 * P)]
        );
        assert!(mm.pt.translate(&fx.mem, a + P).is_none());
        let e = mmap(&mut mm, &mut fx, a, P, RW, PA | map::FIXED_NOREPLACE);
        assert_eq!(e, Err(Errno::EEXIST));
        mm.munmap(&mut fx.env(), a, 4 * P).unwrap();
        assert_eq!((mm.user_frames, fx.frames.in_use()), (0, base));
    }

    #[test]
    fn map_fixed_over_free_room_or_part_of_an_area_merges_as_a_plain_mapping() {
        let (mut fx, mut mm) = setup();
        let a = 0x1000_0000;
        // Over nothing, next to nothing, then touching it: merged.
        assert_eq!(mmap(&mut mm, &mut fx, a, 2 * P, RW, PA | map::FIXED), Ok(a));
        let b = a + 2 * P;
        assert_eq!(mmap(&mut mm, &mut fx, b, P, RW, PA | map::FIXED), Ok(b));
        assert_eq!(ranges(&mm), vec![(a, a + 3 * P)]);
        // Over the end of the area and the free room past it.
        let c = a + 2 * P;
        let r = mmap(&mut mm, &mut fx, c, 3 * P, prot::READ, PA | map::FIXED);
        assert_eq!(r, Ok(c));
        assert_eq!(ranges(&mm), vec![(a, c), (c, c + 3 * P)]);
        // With an address-space limit the replaced bytes are counted once.
        let cap = Rlimit {
            cur: 5 * P,
            max: RLIM_INFINITY,
        };
        mm.rlim.set(resource::AS, cap).unwrap();
        assert_eq!(mmap(&mut mm, &mut fx, a, 5 * P, RW, PA | map::FIXED), Ok(a));
        let over = mmap(&mut mm, &mut fx, a, 6 * P, RW, PA | map::FIXED);
        assert_eq!(over, Err(Errno::ENOMEM));
        assert_eq!(ranges(&mm), vec![(a, a + 5 * P)]);
    }

    #[test]
    fn munmap_middle_of_vma_splits_it_in_two_and_frees_pages() {
        let (mut fx, mut mm) = setup();
        let a = mmap(&mut mm, &mut fx, 0x1000_0000, 8 * P, RW, PA).unwrap();
        for i in 0..8 {
            touch(&mut mm, &mut fx, a + i * P);
        }
        mm.munmap(&mut fx.env(), a + 2 * P, 0x1800).unwrap();
        assert_eq!(ranges(&mm), vec![(a, a + 2 * P), (a + 4 * P, a + 8 * P)]);
        assert_eq!(mm.user_frames, 6);
        assert!(mm.take_tlb_flush());
        assert!(!mm.take_tlb_flush());
        assert!(mm.pt.translate(&fx.mem, a + 3 * P).is_none());
        assert!(mm.pt.translate(&fx.mem, a + 4 * P).is_some());
        let segv = mm.handle_page_fault(&mut fx.env(), a + 2 * P, pf::USER);
        assert!(segv.is_err());
    }

    #[test]
    fn a_fresh_reservation_is_mapped_over_without_a_walk_and_a_fault_ends_that() {
        let (mut fx, mut mm) = setup();
        // Pages of another area in the same page table.
        let other = mmap(&mut mm, &mut fx, 0x1002_0000, P, RW, PA).unwrap();
        touch(&mut mm, &mut fx, other);
        let a = mmap(&mut mm, &mut fx, 0x1000_0000, 16 * P, prot::READ, PA).unwrap();
        assert!(mm.vmas.all_fresh(a, a + 16 * P));
        assert!(!mm.vmas.all_fresh(a, other + P), "a hole, then pages");
        // A segment over part of it: fresh too, and so is the rest.
        mmap(&mut mm, &mut fx, a + 4 * P, 4 * P, RW, PA | map::FIXED).unwrap();
        assert!(mm.vmas.all_fresh(a, a + 16 * P));
        assert!(!mm.take_tlb_flush(), "no page table was touched");
        // A fault maps pages: the area is no longer fresh, and mapping
        // over it unmaps them.
        touch(&mut mm, &mut fx, a + 5 * P);
        assert!(!mm.vmas.all_fresh(a + 4 * P, a + 8 * P));
        assert!(mm.vmas.all_fresh(a + 8 * P, a + 16 * P));
        let frames = mm.user_frames;
        mmap(&mut mm, &mut fx, a, 16 * P, prot::READ, PA | map::FIXED).unwrap();
        assert!(mm.pt.translate(&fx.mem, a + 5 * P).is_none());
        assert!(mm.user_frames < frames);
        assert!(mm.vmas.all_fresh(a, a + 16 * P));
        assert!(mm.pt.translate(&fx.mem, other).is_some());
        // Unmapping the fresh area just made touches no page table either;
        // unmapping one with pages does.
        mm.take_tlb_flush();
        let d = mmap(&mut mm, &mut fx, 0x3000_0000, 4 * P, RW, PA).unwrap();
        mm.munmap(&mut fx.env(), d, 4 * P).unwrap();
        assert!(!mm.take_tlb_flush());
        let e = mmap(&mut mm, &mut fx, 0x3000_0000, 4 * P, RW, PA).unwrap();
        touch(&mut mm, &mut fx, e + P);
        mm.munmap(&mut fx.env(), e, 4 * P).unwrap();
        assert!(mm.take_tlb_flush());
        assert!(mm.pt.translate(&fx.mem, e + P).is_none());
    }

    #[test]
    fn a_merge_is_fresh_only_if_both_parts_are_and_a_split_keeps_it() {
        let (mut fx, mut mm) = setup();
        let a = mmap(&mut mm, &mut fx, 0x1000_0000, 4 * P, RW, PA).unwrap();
        touch(&mut mm, &mut fx, a);
        let b = mmap(&mut mm, &mut fx, a + 4 * P, 4 * P, RW, PA).unwrap();
        assert_eq!(ranges(&mm), vec![(a, b + 4 * P)], "merged");
        assert!(!mm.vmas.all_fresh(b, b + P));
        mm.munmap(&mut fx.env(), a, 4 * P).unwrap();
        assert!(mm.pt.translate(&fx.mem, a).is_none());
        let c = mmap(&mut mm, &mut fx, 0x2000_0000, 8 * P, RW, PA).unwrap();
        mm.mprotect(&mut fx.env(), c + 2 * P, 2 * P, prot::READ)
            .unwrap();
        assert_eq!(mm.vmas.len(), 4);
        assert!(mm.vmas.all_fresh(c, c + 8 * P), "split parts stay fresh");
        touch(&mut mm, &mut fx, c + 7 * P);
        assert!(mm.vmas.all_fresh(c, c + 4 * P));
        assert!(!mm.vmas.all_fresh(c, c + 8 * P));
        mm.munmap(&mut fx.env(), c, 8 * P).unwrap();
        assert!(mm.pt.translate(&fx.mem, c + 7 * P).is_none());
        assert_eq!(mm.user_frames, 0);
    }

    #[test]
    fn munmap_errors_and_unmapped_range_follow_linux() {
        let (mut fx, mut mm) = setup();
        assert_eq!(mm.munmap(&mut fx.env(), 0x1001, P), Err(Errno::EINVAL));
        assert_eq!(mm.munmap(&mut fx.env(), 0x1000, 0), Err(Errno::EINVAL));
        assert_eq!(mm.munmap(&mut fx.env(), TASK_SIZE, P), Err(Errno::EINVAL));
        assert_eq!(
            mm.munmap(&mut fx.env(), 0x1000, u64::MAX),
            Err(Errno::EINVAL)
        );
        assert_eq!(mm.munmap(&mut fx.env(), 0x1000_0000, P), Ok(()));
    }

    #[test]
    fn munmap_part_of_huge_page_keeps_rest_and_data() {
        let (mut fx, mut mm) = setup();
        let a = mmap(&mut mm, &mut fx, 0x4000_0000, 4 << 20, RW, PA).unwrap();
        let f = touch(&mut mm, &mut fx, a);
        fx.mem.fill(f + 5 * P, 1, 0x42);
        mm.munmap(&mut fx.env(), a + P, P).unwrap();
        let t = mm.pt.translate(&fx.mem, a + 5 * P).unwrap();
        assert_eq!((t.frame, fx.mem.byte(t.frame)), (f + 5 * P, 0x42));
        assert_eq!(mm.user_frames, 511);
    }

    #[test]
    fn mprotect_middle_splits_area_and_updates_present_ptes() {
        let (mut fx, mut mm) = setup();
        let a = mmap(&mut mm, &mut fx, 0x1000_0000, 4 * P, RW, PA).unwrap();
        for i in 0..4 {
            touch(&mut mm, &mut fx, a + i * P);
        }
        mm.mprotect(&mut fx.env(), a + P, 2 * P, prot::READ)
            .unwrap();
        assert_eq!(mm.vmas.len(), 3);
        let fl = mm.pt.translate(&fx.mem, a + P).unwrap().flags;
        assert_eq!(fl & (pte::RW | pte::NX | pte::P), pte::NX | pte::P);
        mm.mprotect(&mut fx.env(), a + P, 2 * P, prot::READ | prot::EXEC)
            .unwrap();
        assert_eq!(mm.pt.translate(&fx.mem, a + P).unwrap().flags & pte::NX, 0);
        mm.mprotect(&mut fx.env(), a, 4 * P, RW).unwrap();
        assert_eq!(mm.vmas.len(), 1, "merged back");
        assert_ne!(
            mm.pt.translate(&fx.mem, a + 2 * P).unwrap().flags & pte::RW,
            0
        );
    }

    #[test]
    fn mprotect_write_keeps_page_cache_pte_read_only() {
        let (mut fx, mut mm) = setup();
        let v = Vma {
            backing: Backing::File {
                file: 0,
                offset: 0,
                data_end: u64::MAX,
            },
            ..Vma::anon(0x40_0000, 0x40_4000, Prot::READ, VmFlags::NONE)
        };
        mm.map_region(&mut fx.env(), v).unwrap();
        mm.handle_page_fault(&mut fx.env(), 0x40_0000, pf::USER)
            .unwrap();
        mm.mprotect(&mut fx.env(), 0x40_0000, 4 * P, RW).unwrap();
        let t = mm.pt.translate(&fx.mem, 0x40_1000).unwrap();
        assert_eq!((t.frame, t.flags & pte::RW), (Fixture::FILE_PHYS + P, 0));
        let out = mm
            .handle_page_fault(&mut fx.env(), 0x40_1000, pf::USER | pf::WRITE | pf::P)
            .unwrap();
        assert_eq!(out.kind, crate::mm::fault::FaultKind::CopyOnWrite);
    }

    #[test]
    fn mprotect_read_only_sets_the_same_rights_on_private_and_cache_pages() {
        let (mut fx, mut mm) = setup();
        // One page per fault: the write copies its page alone.
        fx.frames.fault_size = vmrun_contract::FaultSize::Page4K;
        let v = Vma {
            backing: Backing::File {
                file: 0,
                offset: 0,
                data_end: u64::MAX,
            },
            ..Vma::anon(0x40_0000, 0x40_2000, Prot::RW, VmFlags::NONE)
        };
        mm.map_region(&mut fx.env(), v).unwrap();
        let (cache, private) = (0x40_0000, 0x40_1000);
        mm.handle_page_fault(&mut fx.env(), private, pf::USER | pf::WRITE)
            .unwrap();
        mm.handle_page_fault(&mut fx.env(), cache, pf::USER)
            .unwrap();
        let rights = |mm: &Mm, fx: &Fixture, va| {
            let t = mm.pt.translate(&fx.mem, va).unwrap();
            (
                t.frame == Fixture::FILE_PHYS + (va - 0x40_0000),
                t.flags & !pte::ADDR_MASK,
            )
        };
        let (cached, rw) = rights(&mm, &fx, private);
        assert!(!cached && rw & pte::RW != 0, "the write copied the page");
        mm.mprotect(&mut fx.env(), cache, 2 * P, prot::READ)
            .unwrap();
        let (c, p) = (rights(&mm, &fx, cache), rights(&mm, &fx, private));
        assert!(c.0 && !p.0);
        assert_eq!(c.1 & (pte::RW | pte::P | pte::US), pte::P | pte::US);
        assert_eq!(c.1 & !(pte::A | pte::D), p.1 & !(pte::A | pte::D));
        mm.mprotect(&mut fx.env(), cache, 2 * P, RW).unwrap();
        assert_eq!(
            rights(&mm, &fx, cache).1 & pte::RW,
            0,
            "still copy-on-write"
        );
        assert_ne!(rights(&mm, &fx, private).1 & pte::RW, 0);
    }

    #[test]
    fn mprotect_none_hides_pages_and_restoring_keeps_data() {
        let (mut fx, mut mm) = setup();
        let a = mmap(&mut mm, &mut fx, 0x1000_0000, P, RW, PA).unwrap();
        let f = touch(&mut mm, &mut fx, a);
        fx.mem.fill(f, 1, 0x99);
        mm.mprotect(&mut fx.env(), a, P, 0).unwrap();
        assert_eq!(mm.pt.translate(&fx.mem, a).unwrap().flags & pte::P, 0);
        let r = mm.handle_page_fault(&mut fx.env(), a, pf::USER);
        assert!(r.is_err());
        mm.mprotect(&mut fx.env(), a, P, prot::READ).unwrap();
        let t = mm.pt.translate(&fx.mem, a).unwrap();
        assert_eq!(
            (t.frame, t.flags & pte::P, fx.mem.byte(f)),
            (f, pte::P, 0x99)
        );
    }

    #[test]
    fn mprotect_errors_follow_linux() {
        let (mut fx, mut mm) = setup();
        let a = mmap(&mut mm, &mut fx, 0x1000_0000, 2 * P, RW, PA).unwrap();
        mmap(&mut mm, &mut fx, a + 3 * P, P, RW, PA).unwrap();
        let mut env = fx.env();
        assert_eq!(mm.mprotect(&mut env, a + 1, P, 1), Err(Errno::EINVAL));
        assert_eq!(mm.mprotect(&mut env, a, P, 0x10), Err(Errno::EINVAL));
        assert_eq!(
            mm.mprotect(&mut env, a, P, prot::GROWSDOWN | prot::GROWSUP),
            Err(Errno::EINVAL)
        );
        assert_eq!(mm.mprotect(&mut env, a, 0, 1), Ok(()));
        assert_eq!(mm.mprotect(&mut env, a - P, 2 * P, 1), Err(Errno::ENOMEM));
        assert_eq!(mm.mprotect(&mut env, !0xfff, 2 * P, 1), Err(Errno::ENOMEM));
        assert_eq!(
            mm.mprotect(&mut env, a, 4 * P, 1),
            Err(Errno::ENOMEM),
            "hole"
        );
        assert_eq!(
            mm.vmas.get(0).unwrap().prot,
            Prot::READ,
            "applied before the hole"
        );
        assert_eq!(
            mm.mprotect(&mut env, a, P, 1 | prot::GROWSDOWN),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn mprotect_inside_one_area_splits_it_and_merges_back_when_restored() {
        let (mut fx, mut mm) = setup();
        let a = mmap(&mut mm, &mut fx, 0x1000_0000, 8 * P, RW, PA).unwrap();
        mmap(&mut mm, &mut fx, a + 8 * P, P, RW, PA | map::FIXED).unwrap();
        touch(&mut mm, &mut fx, a + 3 * P);
        let mut env = fx.env();
        mm.mprotect(&mut env, a + 8 * P, P, 1).unwrap();
        mm.mprotect(&mut env, a + 2 * P, 2 * P, 1).unwrap();
        let prots: Vec<_> = (0..mm.vmas.len()).map(|i| mm.vmas[i].prot).collect();
        assert_eq!(
            ranges(&mm),
            vec![
                (a, a + 2 * P),
                (a + 2 * P, a + 4 * P),
                (a + 4 * P, a + 8 * P),
                (a + 8 * P, a + 9 * P)
            ]
        );
        assert_eq!(prots, vec![Prot::RW, Prot::READ, Prot::RW, Prot::READ]);
        mm.mprotect(&mut env, a + 4 * P, 4 * P, 1).unwrap();
        assert_eq!(
            ranges(&mm),
            vec![(a, a + 2 * P), (a + 2 * P, a + 9 * P)],
            "the tail merges with both neighbours"
        );
        mm.mprotect(&mut env, a + 2 * P, 7 * P, RW).unwrap();
        assert_eq!(ranges(&mm), vec![(a, a + 9 * P)]);
        assert_eq!(mm.vmas.total_bytes(), 9 * P);
    }

    #[test]
    fn mprotect_growsdown_extends_to_stack_start() {
        let (mut fx, mut mm) = setup();
        let s = mmap(
            &mut mm,
            &mut fx,
            0x2000_0000,
            4 * P,
            RW,
            PA | map::GROWSDOWN,
        )
        .unwrap();
        mm.mprotect(
            &mut fx.env(),
            s + 2 * P,
            P,
            prot::READ | prot::EXEC | prot::GROWSDOWN,
        )
        .unwrap();
        let v = mm.vmas.get(0).unwrap();
        assert_eq!(
            (v.start, v.end, v.prot),
            (s, s + 3 * P, Prot::READ | Prot::EXEC)
        );
    }

    #[test]
    fn brk_refuses_a_step_above_all_of_ram_as_the_overcommit_heuristic() {
        let (mut fx, mut mm) = setup();
        mm.start_brk = 0x1000_0000;
        mm.brk = 0x1000_0000;
        let ram = fx.env().frames.total() * P;
        assert_eq!(mm.brk(&mut fx.env(), 0x1000_0000 + ram + P), 0x1000_0000);
        assert_eq!(
            mm.brk(&mut fx.env(), 0x1000_0000 + ram),
            0x1000_0000 + ram,
            "all of RAM in one step is allowed"
        );
    }

    #[test]
    fn brk_grows_shrinks_and_refuses_collisions() {
        let (mut fx, mut mm) = setup();
        mm.start_brk = 0x60_0000;
        mm.brk = 0x60_0000;
        assert_eq!(mm.brk(&mut fx.env(), 0), 0x60_0000);
        assert_eq!(mm.brk(&mut fx.env(), 0x5f_0000), 0x60_0000);
        assert_eq!(mm.brk(&mut fx.env(), 0x60_0010), 0x60_0010);
        assert_eq!(ranges(&mm), vec![(0x60_0000, 0x60_1000)]);
        assert_eq!(mm.brk(&mut fx.env(), 0x60_3000), 0x60_3000);
        assert_eq!(
            ranges(&mm),
            vec![(0x60_0000, 0x60_3000)],
            "heap area grew in place"
        );
        for i in 0..3 {
            touch(&mut mm, &mut fx, 0x60_0000 + i * P);
        }
        assert_eq!(mm.brk(&mut fx.env(), 0x60_0800), 0x60_0800);
        assert_eq!(
            (ranges(&mm), mm.user_frames),
            (vec![(0x60_0000, 0x60_1000)], 1)
        );
        mmap(&mut mm, &mut fx, 0x60_5000, P, RW, PA | map::FIXED).unwrap();
        assert_eq!(
            mm.brk(&mut fx.env(), 0x60_4001),
            0x60_0800,
            "needs a page of gap"
        );
        assert_eq!(mm.brk(&mut fx.env(), 0x60_4000), 0x60_4000);
        assert_eq!(mm.brk(&mut fx.env(), u64::MAX), 0x60_4000);

        assert_eq!(mm.brk(&mut fx.env(), 0x60_0000), 0x60_0000);
        assert_eq!(ranges(&mm), vec![(0x60_5000, 0x60_6000)]);
        mm.start_brk = 0;
        mm.brk = 0;
        assert_eq!(
            mm.brk(&mut fx.env(), 0x2000),
            0,
            "never below mmap_min_addr"
        );
    }

    #[test]
    fn brk_up_serves_a_break_at_or_above_the_old_one_and_leaves_lowering_to_brk() {
        let (mut fx, mut mm) = setup();
        mm.start_brk = 0x60_0000;
        mm.brk = 0x60_0000;
        let ram = fx.env().frames.total();
        assert_eq!(mm.brk_up(0x60_0010, ram), Some(0x60_0010));
        assert_eq!(mm.brk_up(0x60_3000, ram), Some(0x60_3000));
        assert_eq!(ranges(&mm), vec![(0x60_0000, 0x60_3000)]);
        assert_eq!(mm.brk_up(0x60_2000, ram), None, "lower: brk's to serve");
        assert_eq!(mm.brk_up(0, ram), Some(0x60_3000), "a query");
        assert_eq!(mm.brk, 0x60_3000);
        assert_eq!(mm.brk_up(0x60_3000 + (ram + 1) * P, ram), Some(0x60_3000));
        mmap(&mut mm, &mut fx, 0x60_5000, P, RW, PA | map::FIXED).unwrap();
        assert_eq!(mm.brk_up(0x60_4001, ram), Some(0x60_3000), "needs a gap");
        assert_eq!(mm.brk_up(0x60_4000, ram), Some(0x60_4000));
        assert_eq!(mm.brk(&mut fx.env(), 0x60_1000), 0x60_1000);
        assert_eq!(mm.brk_up(0x60_2000, ram), Some(0x60_2000));
        assert_eq!(
            ranges(&mm),
            vec![(0x60_0000, 0x60_2000), (0x60_5000, 0x60_6000)]
        );
    }

    #[test]
    fn teardown_returns_allocator_to_baseline_and_spares_page_cache() {
        let mut fx = Fixture::new();
        let base = fx.frames.in_use();
        let mut mm = fx.mm();
        let v = Vma {
            backing: Backing::File {
                file: 0,
                offset: 0,
                data_end: 0x5800,
            },
            ..Vma::anon(0x40_0000, 0x40_8000, Prot::RW, VmFlags::NONE)
        };
        mm.map_region(&mut fx.env(), v).unwrap();
        for i in 0..8 {
            mm.handle_page_fault(&mut fx.env(), 0x40_0000 + i * P, pf::USER)
                .unwrap();
        }
        touch(&mut mm, &mut fx, 0x40_1000);
        mmap(&mut mm, &mut fx, 0x4000_0000, 8 << 20, RW, PA).unwrap();
        touch(&mut mm, &mut fx, 0x4000_0000);
        touch(&mut mm, &mut fx, 0x4030_0000);
        mm.munmap(&mut fx.env(), 0x4030_1000, P).unwrap();
        mm.mprotect(&mut fx.env(), 0x4000_3000, P, prot::READ)
            .unwrap();
        assert!(mm.user_table_pages() > 0);
        assert_eq!(
            fx.mem.read_u64(mm.pt.root() + 511 * 8),
            0x3000 | 3,
            "kernel half copied"
        );
        mm.teardown(&mut fx.mem, &mut fx.frames);
        assert_eq!(fx.frames.in_use(), base);
        assert_eq!(
            (mm.user_frames, mm.pt.table_pages(), mm.vmas.len()),
            (0, 0, 0)
        );
        assert_eq!(fx.mem.byte(Fixture::FILE_PHYS + P), 2, "page cache intact");
    }

    #[test]
    fn check_user_range_rejects_overflow_and_kernel_addresses() {
        use crate::mm::space::check_user_range;
        assert_eq!(check_user_range(0x1000, 0x1000), Ok(()));
        assert_eq!(check_user_range(TASK_SIZE - 1, 1), Ok(()));
        assert_eq!(check_user_range(TASK_SIZE - 1, 2), Err(Errno::EFAULT));
        assert_eq!(check_user_range(u64::MAX, 2), Err(Errno::EFAULT));
        assert_eq!(check_user_range(0, 0), Ok(()));
    }
}
