//! One address space: Linux's `mm_struct`.
//!
//! [`Mm`] owns a [`PageTable`] (whose kernel half is shared with the
//! kernel's own tables) and a [`VmaSet`], plus the layout fields the exec
//! code fills in and `/proc/PID/maps`-style listings use. Operations get
//! the machine through an [`MmEnv`]: physical memory, the frame allocator
//! and the table of file images (whose frames are the page cache: mapped
//! read-only, copied on write, never written or freed).

use super::frame::FrameAllocator;
use super::paging::{KernelHalf, Leaf, PageSize, PageTable};
use super::phys::PhysMem;
use super::rlimit::{resource, Rlimits};
use super::vma::{self, Backing, Prot, VmFlags, Vma, VmaSet};
use crate::errno::{Errno, KResult};
use crate::fs::cache::PageCache;
use crate::fs::host::FsHost;
use vmrun_contract::layout::{PAGE_SIZE, TASK_SIZE};

/// Default largest stack (`RLIMIT_STACK`, 8 MiB), measured from the stack
/// top; [`Mm::rlim`] holds the limit in force.
pub const STACK_LIMIT: u64 = super::rlimit::STACK_DEFAULT;
/// Lowest address a mapping may use (`vm.mmap_min_addr`).
pub const MMAP_MIN_ADDR: u64 = 0x1_0000;
/// Top of the mmap area without randomisation: below the stack top, a gap
/// of 128 MiB (Linux's minimum gap, as `mmap_base` computes it).
pub const MMAP_BASE: u64 = TASK_SIZE - (128 << 20);
/// What memory-management operations run against.
pub struct MmEnv<'a, M: PhysMem> {
    /// Physical memory.
    pub mem: &'a mut M,
    /// The frame allocator.
    pub frames: &'a mut FrameAllocator,
    /// The page cache.
    pub cache: &'a mut PageCache,
    /// The host's file service (to fill page-cache pages).
    pub host: &'a mut dyn FsHost,
}

/// An address space (Linux's `mm_struct`).
#[derive(Debug)]
pub struct Mm {
    /// Page tables; `pt.root()` is the CR3 value.
    pub pt: PageTable,
    /// The areas.
    pub vmas: VmaSet,
    /// Start of the program's code.
    pub start_code: u64,
    /// End of the program's code.
    pub end_code: u64,
    /// Start of the program's data.
    pub start_data: u64,
    /// End of the program's data.
    pub end_data: u64,
    /// Start of the brk heap.
    pub start_brk: u64,
    /// Current program break.
    pub brk: u64,
    /// Initial stack pointer's page region start (top of argv etc.).
    pub start_stack: u64,
    /// Start of the argument strings.
    pub arg_start: u64,
    /// End of the argument strings.
    pub arg_end: u64,
    /// Start of the environment strings.
    pub env_start: u64,
    /// End of the environment strings.
    pub env_end: u64,
    /// Top of the top-down mmap area.
    pub mmap_base: u64,
    /// User data frames owned now, in 4 KiB units (page-cache frames are
    /// not counted).
    pub user_frames: u64,
    /// Peak of `user_frames` up to its last decrease; see
    /// [`Mm::peak_user_frames`] (adding frames, which every fault does,
    /// need not track the peak).
    pub(crate) peak_before_drop: u64,
    /// Last anonymous-memory identity handed out (see `Vma::anon`).
    pub(crate) last_anon: u32,
    /// A present leaf was changed or removed since the last
    /// [`Mm::take_tlb_flush`].
    pub(crate) tlb_stale: bool,
    /// Some area may be [`super::vma::VmFlags::UNCOPIED`] (a forked
    /// child's, from the fork to its exec): the boot image's fault-around
    /// then clears the mark of the neighbours it maps pages in.
    pub(crate) uncopied: bool,
    /// A fork shared the frames of this address space (it is the parent
    /// or the child) since it was made: some may be mapped by another, as
    /// their share counts say. Without it none is, and the teardown looks
    /// at no count.
    pub(crate) may_share: bool,
    /// The pages of the last write faults on present read-only pages
    /// (copy-on-write, taken back writable), a ring (0: none), which the
    /// next fork copies for the child at once if they were written since
    /// (see `Mm::fork_copy`).
    pub(crate) written: [u64; WRITTEN_PAGES],
    /// Where the next page goes in `written`.
    pub(crate) written_at: usize,
    /// The pages the last forked child of this process wrote between its
    /// fork and its exec or exit (0: none), which the next fork copies
    /// for its child at once: a shell's children write the same few pages
    /// of libc's state before they exec (see `Mm::fork_copy`).
    pub(crate) child_written: [u64; CHILD_PAGES],
    /// In a forked child, the physical address of the entry of each page
    /// its fork copied for it from its parent's `child_written` (0: none),
    /// which also fill the first slots of its `written`: whether it wrote
    /// them is read there when it hands its writes over
    /// (`Mm::writes_since_fork`).
    pub(crate) precopied: [u64; CHILD_PAGES],
    /// The resource limits (kept over exec, copied by fork).
    pub rlim: Rlimits,
}

/// How many of the last written pages an address space remembers for its
/// next fork ([`Mm::written`]).
pub const WRITTEN_PAGES: usize = 8;

/// How many pages a forked child's writes before its exec or exit
/// predict for the next child ([`Mm::child_written`]).
pub const CHILD_PAGES: usize = 4;

impl Mm {
    /// An address space without page tables (for statics).
    pub const fn empty() -> Self {
        Self {
            pt: PageTable::empty(),
            vmas: VmaSet::new(),
            start_code: 0,
            end_code: 0,
            start_data: 0,
            end_data: 0,
            start_brk: 0,
            brk: 0,
            start_stack: 0,
            arg_start: 0,
            arg_end: 0,
            env_start: 0,
            env_end: 0,
            mmap_base: MMAP_BASE,
            user_frames: 0,
            peak_before_drop: 0,
            last_anon: 0,
            tlb_stale: false,
            uncopied: false,
            may_share: false,
            written: [0; WRITTEN_PAGES],
            written_at: 0,
            child_written: [0; CHILD_PAGES],
            precopied: [0; CHILD_PAGES],
            rlim: Rlimits::new(),
        }
    }

    /// A new, empty address space whose PML4 shares `kernel`.
    pub fn new<M: PhysMem>(
        mem: &mut M,
        frames: &mut FrameAllocator,
        kernel: &KernelHalf,
    ) -> KResult<Mm> {
        let mut mm = Mm::empty();
        mm.init(mem, frames, kernel)?;
        Ok(mm)
    }

    /// Make `self` a new, empty address space in place, without building
    /// a whole new `Mm` (the area array is large and ring 0 is slow);
    /// `self` must be empty or torn down (which leaves no areas). The
    /// program's layout (`start_code` … `env_end`) is left as it is: an
    /// empty `Mm`'s is zero, and both callers that init a used one set
    /// all of it (an exec once its image is loaded, a fork from the
    /// parent's), so it is not cleared first.
    pub fn init<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        kernel: &KernelHalf,
    ) -> KResult<()> {
        debug_assert!(self.vmas.is_empty(), "init of a live address space");
        // Made in place: the table's state is some ten words.
        self.pt.renew(mem, frames).map_err(|e| e.errno())?;
        self.pt.copy_kernel_half(mem, kernel);
        self.reset_counts();
        Ok(())
    }

    /// Whether the address space may grow by `bytes`, of which `data`
    /// bytes are data (Linux's `may_expand_vm`): within `RLIMIT_AS` and,
    /// for data, `RLIMIT_DATA`.
    #[inline]
    pub fn may_expand(&self, bytes: u64, data: u64) -> bool {
        let total = self.vmas.total_bytes().saturating_add(bytes);
        if total > self.rlim.cur(resource::AS) {
            return false;
        }
        data == 0 || self.vmas.data_bytes().saturating_add(data) <= self.rlim.cur(resource::DATA)
    }

    /// How much lower than the default the top of the mmap area goes for
    /// the stack limit in force: Linux's `mmap_base` leaves the stack limit
    /// plus its guard gap below the stack top, at least 128 MiB.
    pub fn mmap_base_shift(&self) -> u64 {
        let gap =
            super::rlimit::mmap_gap(self.stack_limit(), super::vma::STACK_GUARD_GAP, TASK_SIZE);
        gap - (TASK_SIZE - MMAP_BASE)
    }

    /// The stack limit in force (`RLIMIT_STACK`'s soft limit).
    pub fn stack_limit(&self) -> u64 {
        self.rlim.cur(resource::STACK)
    }

    /// The mmap top and the counts of a new address space.
    fn reset_counts(&mut self) {
        self.uncopied = false;
        self.may_share = false;
        self.mmap_base = MMAP_BASE;
        self.user_frames = 0;
        self.peak_before_drop = 0;
        self.last_anon = 0;
        self.tlb_stale = false;
        // `written` is kept: after an exec its pages are the old image's,
        // and the next fork copies one only if the new image has a dirty
        // private page there that the fork shares, and forgets the rest.
    }

    /// User page-table pages held now (the PML4 excluded).
    pub fn user_table_pages(&self) -> u64 {
        self.pt.table_pages().saturating_sub(1)
    }

    /// Free every user frame the allocator owns, every user table page and
    /// the PML4; the areas are forgotten. Only the areas' ranges of the
    /// page tables are walked (every leaf lies in an area).
    pub fn teardown<M: PhysMem>(&mut self, mem: &mut M, frames: &mut FrameAllocator) {
        match self.may_share {
            true => self.teardown_of::<M, true>(mem, frames),
            // No fork since the exec (a shell's child that exec'd exits):
            // no share count to look at.
            false => self.teardown_of::<M, false>(mem, frames),
        }
    }

    /// [`Self::teardown`], with the share counts looked at if `SHARED`.
    #[inline(never)]
    fn teardown_of<M: PhysMem, const SHARED: bool>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
    ) {
        // A file area that never had a private page maps page-cache
        // frames only: nothing of it to release. The list is made a leaf
        // of the area tree at a time (an iterator chain over the areas
        // cost some 60 instructions an area).
        let mut areas = alloc::vec::Vec::new();
        let _ = areas.try_reserve_exact(self.vmas.len());
        let release = |v: &Vma| v.anon != 0 || v.backing == Backing::Anon;
        self.vmas.for_each_leaf(|leaf| {
            for v in leaf {
                push_joined(&mut areas, (v.start, v.end, release(v)));
            }
        });
        self.pt
            .free_user_half_of_areas(mem, frames, areas, |m, fr, l| {
                match SHARED {
                    true => release_leaf(m, fr, l),
                    false => release_leaf_unshared(m, fr, l),
                };
            });
        self.pt.free_root(mem, frames);
        self.vmas.clear();
        self.sub_user_frames(self.user_frames);
    }

    /// Whether the TLB must be flushed (CR3 reload) before returning to
    /// user mode: a present leaf was changed or removed (munmap, mprotect,
    /// MAP_FIXED, brk shrink, copy-on-write, a split huge page). Clears the
    /// flag. New mappings of non-present pages need no flush. (The flag
    /// is written only when set: every return to user mode asks, and the
    /// usual answer then costs one test.)
    #[inline]
    pub fn take_tlb_flush(&mut self) -> bool {
        if !self.tlb_stale {
            return false;
        }
        self.tlb_stale = false;
        true
    }

    /// Count `n` more owned user frames.
    #[inline]
    pub(crate) fn add_user_frames(&mut self, n: u64) {
        self.user_frames += n;
    }

    /// Count `n` (at most `user_frames`) fewer owned user frames, keeping
    /// the peak.
    pub(crate) fn sub_user_frames(&mut self, n: u64) {
        self.peak_before_drop = self.peak_user_frames();
        self.user_frames -= n;
    }

    /// The most user frames owned at once (`VmHWM`): the count only grows
    /// between its decreases, so the peak is the larger of the count now
    /// and the peak before the last decrease.
    pub fn peak_user_frames(&self) -> u64 {
        self.peak_before_drop.max(self.user_frames)
    }

    /// A fresh anonymous-memory identity.
    #[inline]
    pub(crate) fn next_anon_id(&mut self) -> u32 {
        vma::next_anon(&mut self.last_anon)
    }

    /// [`Self::user_page`] for a write to `va` where nothing is mapped
    /// yet, in area `i`: exec writing its new stack. When area `i` is
    /// private, anonymous, writable and holds `va`, `va` is mapped as a
    /// first write fault there would map it (same pages, frames and
    /// entries) without the fault's lookups of the entry and the area,
    /// and a block where nothing is mapped in its 512 GiB region (the
    /// exec's case) without a walk or a translation after it.
    pub fn populate_anon<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        i: usize,
        va: u64,
    ) -> KResult<u64> {
        if !self.fits_anon_write(i, va) {
            return self.user_page(env, va, true);
        }
        if let Some((pa, _)) = self.populate_fresh_block(env, i, va, None) {
            return Ok(pa);
        }
        self.fault_anon(env, i, va & !(PAGE_SIZE - 1))
            .map_err(|_| Errno::ENOMEM)?;
        let t = self.pt.translate(env.mem, va);
        t.map(|t| t.pa(va)).ok_or(Errno::EFAULT)
    }

    /// [`Self::populate_anon`] where it maps a block in a region with
    /// nothing mapped: the physical address of `va` in the block's zeroed
    /// frames, for the caller to fill in place, and whether `special`'s
    /// pages were mapped with it (see [`Self::populate_fresh_block`]).
    /// `None`, mapping nothing, elsewhere.
    pub fn populate_fresh<M: PhysMem>(
        &mut self,
        env: &mut MmEnv<'_, M>,
        i: usize,
        va: u64,
        special: Option<super::fault::Special>,
    ) -> Option<(u64, bool)> {
        self.populate_fresh_block(env, i, va, special)
    }

    /// Whether area `i` is private, anonymous, writable and holds `va`.
    #[inline]
    fn fits_anon_write(&self, i: usize, va: u64) -> bool {
        self.vmas.get(i).is_some_and(|v| takes_anon_write(v, va))
    }
}

/// Whether `v` is private, anonymous, writable and holds `va`.
#[inline(always)]
pub(super) fn takes_anon_write(v: &Vma, va: u64) -> bool {
    v.backing == Backing::Anon
        && v.prot.contains(Prot::WRITE)
        && !v.flags.contains(VmFlags::SHARED)
        && v.start <= va
        && va < v.end
}

/// EFAULT unless `[addr, addr + len)` lies below [`TASK_SIZE`] without
/// wrapping (system call pointer checks).
pub fn check_user_range(addr: u64, len: u64) -> KResult<()> {
    match addr.checked_add(len) {
        Some(end) if end <= TASK_SIZE => Ok(()),
        _ => Err(Errno::EFAULT),
    }
}

/// Round `x` up to a page boundary (None on overflow).
pub fn page_align_up(x: u64) -> Option<u64> {
    Some(x.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1))
}

/// Free the frame of a leaf of `size` if the allocator owns it (page-cache
/// frames are not freed, a frame another address space still maps loses a
/// mapping); returns the 4 KiB frames the address space no longer maps.
#[inline]
pub(crate) fn release_frame<M: PhysMem>(
    mem: &mut M,
    frames: &mut FrameAllocator,
    pa: u64,
    size: PageSize,
) -> u64 {
    match size {
        PageSize::Size4K => u64::from(frames.release_4k(mem, pa)),
        PageSize::Size2M => release_huge(mem, frames, pa),
    }
}

/// Append the range `(start, end, flag)` to `list`, sorted and apart, as
/// the last range's extension when it starts where that one ends with the
/// same flag: the walks over an address space's ranges (fork's copy, the
/// teardown) then take the areas of a program's image, data to heap, as
/// one range, not one a segment (each range costs them a pass at every
/// level of the tables, and a run of leaves across two is cut in two).
pub(crate) fn push_joined<T: PartialEq>(
    list: &mut alloc::vec::Vec<(u64, u64, T)>,
    range: (u64, u64, T),
) {
    match list.last_mut() {
        Some(last) if last.1 == range.0 && last.2 == range.2 => last.1 = range.1,
        _ => list.push(range),
    }
}

/// [`release_frame`] for each leaf an unmap hands over as `l`: its run
/// of 4 KiB leaves freed in one step where the allocator can
/// ([`FrameAllocator::release_run`]), else one by one.
#[inline]
pub(crate) fn release_leaf<M: PhysMem>(mem: &mut M, frames: &mut FrameAllocator, l: Leaf) -> u64 {
    if l.pages == 1 {
        return release_frame(mem, frames, l.frame, l.size);
    }
    match frames.release_run(mem, l.frame, l.pages) {
        Some(n) => n,
        None => (0..l.pages)
            .map(|k| u64::from(frames.release_4k(mem, l.frame + k * PAGE_SIZE)))
            .sum(),
    }
}

/// [`release_leaf`] in an address space no fork shared
/// ([`Mm::may_share`] clear): the same frames freed, with no look at
/// their share counts.
#[inline]
pub(crate) fn release_leaf_unshared<M: PhysMem>(
    mem: &mut M,
    frames: &mut FrameAllocator,
    l: Leaf,
) -> u64 {
    if l.pages == 1 {
        return match l.size {
            PageSize::Size4K => u64::from(frames.release_4k_unshared(mem, l.frame)),
            PageSize::Size2M => release_huge(mem, frames, l.frame),
        };
    }
    match frames.release_run_unshared(mem, l.frame, l.pages) {
        Some(n) => n,
        None => (0..l.pages)
            .map(|k| u64::from(frames.release_4k_unshared(mem, l.frame + k * PAGE_SIZE)))
            .sum(),
    }
}

/// [`release_frame`] of a 2 MiB leaf (never shared: fork splits them
/// first). Out of line: rare.
#[inline(never)]
fn release_huge<M: PhysMem>(mem: &mut M, frames: &mut FrameAllocator, pa: u64) -> u64 {
    if frames.unshare(pa) {
        return PageSize::Size2M.frames();
    }
    if frames.is_cache(mem, pa) || !frames.free_huge(mem, pa) {
        return 0;
    }
    PageSize::Size2M.frames()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::testmem::Fixture;
    use crate::mm::vma::Vma;
    use vmrun_contract::FaultSize;

    /// A machine with `policy` and a stack-like area
    /// `[0x7ff0_0000, 0x7ff2_1000)`.
    fn stack(policy: FaultSize) -> (Fixture, Mm) {
        let mut fx = Fixture::new();
        fx.frames.fault_size = policy;
        let mut mm = fx.mm();
        let v = Vma::anon(0x7ff0_0000, 0x7ff2_1000, Prot::RW, VmFlags::GROWSDOWN);
        mm.vmas.insert(v).unwrap();
        (fx, mm)
    }

    /// Which pages of the area are mapped, and to which frames.
    fn mapped(mm: &Mm, fx: &Fixture) -> alloc::vec::Vec<(u64, u64)> {
        (0x7ff0_0000..0x7ff2_1000)
            .step_by(PAGE_SIZE as usize)
            .filter_map(|va| mm.pt.translate(&fx.mem, va).map(|t| (va, t.pa(va))))
            .collect()
    }

    #[test]
    fn push_joined_extends_the_last_range_only_when_it_abuts_with_the_same_flag() {
        let mut list = alloc::vec::Vec::new();
        for r in [
            (0x40_0000, 0x40_1000, false),
            (0x40_1000, 0x47_b000, false),
            (0x47_b000, 0x4a_3000, true),
            (0x4a_3000, 0x4a_7000, true),
            (0x4a_8000, 0x4b_0000, true),
            (0x4b_0000, 0x4c_0000, false),
        ] {
            push_joined(&mut list, r);
        }
        assert_eq!(
            list,
            [
                (0x40_0000, 0x47_b000, false),
                (0x47_b000, 0x4a_7000, true),
                (0x4a_8000, 0x4b_0000, true),
                (0x4b_0000, 0x4c_0000, false),
            ]
        );
    }

    #[test]
    fn populate_anon_maps_what_a_first_write_fault_maps() {
        for policy in [FaultSize::Page4K, FaultSize::Block64K, FaultSize::Huge2M] {
            let va = 0x7ff2_0ff8;
            let (mut fx, mut mm) = stack(policy);
            let pa = mm.populate_anon(&mut fx.env(), 0, va).unwrap();
            let (mut fx2, mut mm2) = stack(policy);
            let pa2 = mm2.user_page(&mut fx2.env(), va, true).unwrap();
            assert_eq!(pa, pa2, "{policy:?}");
            assert_eq!(mapped(&mm, &fx), mapped(&mm2, &fx2), "{policy:?}");
            assert_eq!(mm.user_frames, mm2.user_frames, "{policy:?}");
            assert_ne!(mm.vmas[0].anon, 0, "anon identity attached");
        }
    }

    /// A machine with `policy` and PTE tracing, and the area `[start, end)`
    /// (plus, if `other`, a page mapped at 0x7f00_0000, in the same
    /// 512 GiB region).
    fn traced_area(policy: FaultSize, (start, end): (u64, u64), other: bool) -> (Fixture, Mm) {
        let mut fx = Fixture::new();
        fx.frames.fault_size = policy;
        fx.mem.trace_mask = vmrun_contract::trace::category::PAGE_TABLES;
        let mut mm = fx.mm();
        if other {
            let v = Vma::anon(0x7f00_0000, 0x7f00_1000, Prot::RW, VmFlags::NONE);
            mm.vmas.insert(v).unwrap();
            mm.user_page(&mut fx.env(), 0x7f00_0000, true).unwrap();
        }
        let v = Vma::anon(start, end, Prot::RW, VmFlags::GROWSDOWN);
        mm.vmas.insert(v).unwrap();
        (fx, mm)
    }

    #[test]
    fn populate_anon_of_a_block_in_a_free_region_maps_and_traces_what_a_fault_does() {
        // A block wholly inside, an area ending inside its block, one
        // starting inside it, one spanning 2 MiB, one page: each with the
        // region free and with a page mapped elsewhere in it.
        let areas = [
            (0x7ff0_0000, 0x7ff2_0000, 0x7ff1_fff8),
            (0x7ff0_0000, 0x7ff1_f000, 0x7ff1_e010),
            (0x7ff1_8000, 0x7ff2_0000, 0x7ff1_f000),
            (0x7fe0_0000, 0x7ff0_0000, 0x7fef_0000),
            (0x7ff1_f000, 0x7ff2_0000, 0x7ff1_f000),
        ];
        for policy in [FaultSize::Page4K, FaultSize::Block64K, FaultSize::Huge2M] {
            for (start, end, va) in areas {
                for other in [false, true] {
                    let case = (policy, start, other);
                    let (mut fx, mut mm) = traced_area(policy, (start, end), other);
                    let i = mm.vmas.len() - 1;
                    let pa = mm.populate_anon(&mut fx.env(), i, va).unwrap();
                    let (mut fx2, mut mm2) = traced_area(policy, (start, end), other);
                    let pa2 = mm2.user_page(&mut fx2.env(), va, true).unwrap();
                    assert_eq!(pa, pa2, "{case:?}");
                    let mapped = |mm: &Mm, fx: &Fixture| -> alloc::vec::Vec<_> {
                        (start..end)
                            .step_by(PAGE_SIZE as usize)
                            .filter_map(|va| mm.pt.translate(&fx.mem, va).map(|t| (va, t)))
                            .collect()
                    };
                    assert_eq!(mapped(&mm, &fx), mapped(&mm2, &fx2), "{case:?}");
                    assert_eq!(mm.user_frames, mm2.user_frames, "{case:?}");
                    assert_eq!(mm.pt.table_pages(), mm2.pt.table_pages(), "{case:?}");
                    assert_eq!(fx.frames.in_use(), fx2.frames.in_use(), "{case:?}");
                    let trace = |fx: &Fixture| -> alloc::vec::Vec<_> {
                        fx.mem.records.iter().map(|r| (r.kind, r.a)).collect()
                    };
                    assert_eq!(trace(&fx), trace(&fx2), "{case:?}");
                    // The counts are exact: unmapping everything frees
                    // every table but the root.
                    for (mm, fx) in [(&mut mm, &mut fx), (&mut mm2, &mut fx2)] {
                        mm.pt
                            .unmap_range(&mut fx.mem, &mut fx.frames, 0, 1 << 47, |_, _, _| ())
                            .unwrap();
                        assert_eq!(mm.pt.table_pages(), 1, "{case:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn populate_anon_outside_a_fitting_area_is_user_page() {
        let (mut fx, mut mm) = stack(FaultSize::Block64K);
        assert_eq!(
            mm.populate_anon(&mut fx.env(), 0, 0x7ff2_1000),
            Err(Errno::EFAULT),
            "past the area"
        );
        assert_eq!(
            mm.populate_anon(&mut fx.env(), 1, 0x7ff2_0000),
            mm.user_page(&mut fx.env(), 0x7ff2_0000, true),
            "no area 1: the page is faulted in through area 0"
        );
        assert_eq!(mapped(&mm, &fx).len(), 1, "the area's last page alone");
    }

    #[test]
    fn peak_user_frames_is_kept_over_decreases() {
        let mut mm = Mm::empty();
        mm.add_user_frames(5);
        assert_eq!(mm.peak_user_frames(), 5);
        mm.sub_user_frames(3);
        mm.add_user_frames(1);
        assert_eq!((mm.user_frames, mm.peak_user_frames()), (3, 5));
        mm.add_user_frames(4);
        assert_eq!(mm.peak_user_frames(), 7);
        mm.sub_user_frames(7);
        assert_eq!((mm.user_frames, mm.peak_user_frames()), (0, 7));
        mm.reset_counts();
        assert_eq!(mm.peak_user_frames(), 0);
    }
}
