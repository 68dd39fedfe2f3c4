//! The physical frame allocator: 4 KiB frames and 2 MiB ("huge") frames.
//!
//! The allocator manages `[start, end)`. Memory the VMM has never handed
//! out is zero, so *fresh* frames need no zeroing: 4 KiB frames are bumped
//! upwards from `start`, huge frames downwards from the 2 MiB-aligned top,
//! and the two bump pointers meet in the middle. Freed frames go on
//! intrusive free lists (the link word lives in the freed frame itself) and
//! are zeroed with one [`PhysMem::zero`] when they are handed out again as
//! zeroed frames.
//!
//! Consecutive frames an address space let go of together (a 64 KiB
//! block an anonymous fault mapped, unmapped or torn down whole) go on a
//! third list as one *run* of at least [`RUN_MIN`] frames, freed in one
//! step instead of a step per frame.
//!
//! When both bumps have met and the 4 KiB free list is empty, a freed run,
//! else a free huge frame, is *carved*: its frames are handed out one by
//! one or as runs (they were used, so they are zeroed on the way out). The
//! sliver between the 2 MiB aligned top and `end` starts as a clean carve
//! region. Huge allocation never coalesces 4 KiB frames; callers fall back
//! to 4 KiB pages.
//!
//! Every operation is O(1): this code runs in emulated ring 0.

use super::phys::PhysMem;
use vmrun_contract::layout::{HUGE_PAGE_SIZE, PAGE_SIZE};
use vmrun_contract::FaultSize;

/// End-of-list marker of the intrusive free lists.
const NIL: u64 = u64::MAX;
/// 4 KiB frames per huge frame.
const FRAMES_PER_HUGE: u64 = HUGE_PAGE_SIZE / PAGE_SIZE;
/// The fewest frames freed as one run ([`FrameAllocator::release_run`]):
/// an anonymous fault's 64 KiB block, so that a freed run can always give
/// a block again. Fewer go on the 4 KiB free list one by one.
pub const RUN_MIN: u64 = 16;

/// A range of frames handed out in order (the top sliver, a freed run or
/// a split huge frame). Whether its frames held data is the allocator's
/// `carve_dirty` (a flag here would pad the allocator past 128 bytes,
/// which every move of it then copies with a call).
#[derive(Clone, Copy, Debug)]
struct Carve {
    next: u64,
    end: u64,
}

impl Carve {
    const EMPTY: Carve = Carve { next: 0, end: 0 };

    fn take(&mut self) -> Option<u64> {
        if self.next >= self.end {
            return None;
        }
        let pa = self.next;
        self.next += PAGE_SIZE;
        Some(pa)
    }

    fn is_empty(&self) -> bool {
        self.next >= self.end
    }
}

/// How many of a run of frames the page-cache bitmap marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marks {
    /// None of them.
    None,
    /// Every one.
    All,
    /// Some, not all.
    Some,
}

/// Allocator of the physical frames in one range, set up at boot.
#[derive(Debug)]
pub struct FrameAllocator {
    start: u64,
    end: u64,
    /// Next fresh 4 KiB frame (grows upwards).
    fresh_lo: u64,
    /// Bottom of the fresh huge frames handed out so far (grows downwards).
    fresh_hi: u64,
    carve: Carve,
    /// The carve region's frames held data before: they must be zeroed for
    /// `alloc_zeroed`.
    carve_dirty: bool,
    free_4k: u64,
    /// Freed runs of at least [`RUN_MIN`] consecutive frames: a run's
    /// first frame holds the link and the next word its length in frames.
    free_runs: u64,
    free_huge: u64,
    in_use: u64,
    /// Physical address of a bitmap with one bit per managed 4 KiB frame,
    /// set for frames that belong to the page cache (0: none kept yet, so
    /// no frame is a page-cache frame).
    cache_bits: u64,
    /// Extra mappings of each frame shared copy-on-write after fork (0:
    /// one owner), by frame index; grown on the first share.
    shares: alloc::vec::Vec<u16>,
    /// Pages copied because a shared frame was written (fork's COW).
    pub cow_copies: u64,
    /// How much an anonymous fault maps (`--fault-size`, from boot).
    pub fault_size: FaultSize,
}

impl FrameAllocator {
    /// An allocator that manages nothing (for statics before boot).
    pub const fn empty() -> Self {
        Self {
            start: 0,
            end: 0,
            fresh_lo: 0,
            fresh_hi: 0,
            carve: Carve::EMPTY,
            carve_dirty: false,
            free_4k: NIL,
            free_runs: NIL,
            free_huge: NIL,
            in_use: 0,
            cache_bits: 0,
            shares: alloc::vec::Vec::new(),
            cow_copies: 0,
            fault_size: FaultSize::Huge2M,
        }
    }

    /// Manage the zero-filled frames in `[start, end)` (rounded inwards to
    /// page boundaries).
    pub fn new(start: u64, end: u64) -> Self {
        let start = start.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
        let end = (end & !(PAGE_SIZE - 1)).max(start);
        let huge_top = (end & !(HUGE_PAGE_SIZE - 1)).max(start);
        Self {
            start,
            end,
            fresh_lo: start,
            fresh_hi: huge_top,
            carve: Carve {
                next: huge_top,
                end,
            },
            ..Self::empty()
        }
    }

    /// Whether `pa` lies in the managed range (frames outside it, such as
    /// the page cache, are never freed).
    pub fn owns(&self, pa: u64) -> bool {
        pa >= self.start && pa < self.end
    }

    /// Bytes the page-cache bitmap needs (one bit per managed frame).
    pub fn cache_bits_bytes(&self) -> u64 {
        vmrun_contract::layout::cache_bitmap_bytes(self.total())
    }

    /// Keep the page-cache bitmap at `pa`: [`Self::cache_bits_bytes`] of
    /// zeroed RAM the caller took from this allocator for good.
    pub fn use_cache_bits(&mut self, pa: u64) {
        self.cache_bits = pa;
    }

    /// Where the page-cache bitmap is: its address, the frame its bit 0
    /// stands for, and how many frames it covers (for the host's checker).
    pub fn cache_bits_info(&self) -> [u64; 3] {
        [self.cache_bits, self.start, self.total()]
    }

    fn cache_bit(&self, pa: u64) -> Option<(u64, u64)> {
        if self.cache_bits == 0 || !self.owns(pa) {
            return None;
        }
        let n = (pa - self.start) / PAGE_SIZE;
        Some((self.cache_bits + n / 64 * 8, 1 << (n % 64)))
    }

    /// Mark `pa` as a page-cache frame (or not): such frames are shared,
    /// never written through a private mapping and never freed by unmap.
    pub fn set_cache<M: PhysMem>(&mut self, mem: &mut M, pa: u64, on: bool) {
        if let Some((word, bit)) = self.cache_bit(pa) {
            let w = mem.read_u64(word);
            mem.write_u64(word, if on { w | bit } else { w & !bit });
        }
    }

    /// [`Self::set_cache`] for the `n` consecutive frames from `pa`, a word
    /// of the bitmap at a time (the vDSO's data pages at boot: one word
    /// instead of six).
    pub fn set_cache_run<M: PhysMem>(&mut self, mem: &mut M, pa: u64, n: u64, on: bool) {
        let mut i = 0;
        while i < n {
            let Some((word, bit)) = self.cache_bit(pa + i * PAGE_SIZE) else {
                i += 1;
                continue;
            };
            let first = u64::from(bit.trailing_zeros());
            let take = (64 - first).min(n - i);
            let mask = (u64::MAX >> (64 - take)) << first;
            let w = mem.read_u64(word);
            mem.write_u64(word, if on { w | mask } else { w & !mask });
            i += take;
        }
    }

    /// Whether `pa` is a page-cache frame.
    pub fn is_cache<M: PhysMem>(&self, mem: &M, pa: u64) -> bool {
        self.cache_bit(pa)
            .is_some_and(|(word, bit)| mem.read_u64(word) & bit != 0)
    }

    /// Whether `pa` is a frame one mapping owns privately: allocated here
    /// and not part of the page cache (or of a file image outside RAM the
    /// allocator manages).
    pub fn is_private<M: PhysMem>(&self, mem: &M, pa: u64) -> bool {
        self.owns(pa) && !self.is_cache(mem, pa)
    }

    fn share_index(&self, pa: u64) -> Option<usize> {
        self.owns(pa)
            .then(|| ((pa - self.start) / PAGE_SIZE) as usize)
    }

    /// One more mapping of private frame `pa` (fork's copy-on-write);
    /// false if it has as many as can be counted.
    pub fn share(&mut self, pa: u64) -> bool {
        let Some(i) = self.share_index(pa) else {
            return false;
        };
        if self.shares.is_empty() {
            self.shares.resize(self.total() as usize, 0);
        }
        match self.shares.get_mut(i) {
            Some(n) if *n < u16::MAX => {
                *n += 1;
                true
            }
            _ => false,
        }
    }

    /// One more mapping (fork) of each of the `n` consecutive frames from
    /// `pa`: `Some(true)` if all of them are private frames, each then
    /// counted as shared once more; `Some(false)`, nothing done, if none
    /// is (page-cache frames, or frames outside the managed range);
    /// `None`, nothing done, for a mix or a count at its limit: the caller
    /// goes frame by frame ([`Self::share`]).
    pub fn share_run<M: PhysMem>(&mut self, mem: &M, pa: u64, n: u64) -> Option<bool> {
        let end = pa.checked_add(n.checked_mul(PAGE_SIZE)?)?;
        if end <= self.start || pa >= self.end {
            return Some(false);
        }
        if n == 0 || pa < self.start || end > self.end || pa & (PAGE_SIZE - 1) != 0 {
            return None;
        }
        let first = (pa - self.start) / PAGE_SIZE;
        match self.cache_marks(mem, first, n) {
            Marks::None => {}
            Marks::All => return Some(false),
            Marks::Some => return None,
        }
        if self.shares.is_empty() {
            self.shares.resize(self.total() as usize, 0);
        }
        let counts = self.shares.get_mut(first as usize..(first + n) as usize)?;
        add_one_each(counts).then_some(true)
    }

    /// One mapping of `pa` goes away: true if others remain (the frame
    /// must not be freed), false if that was its last.
    pub fn unshare(&mut self, pa: u64) -> bool {
        let Some(n) = self.share_index(pa).and_then(|i| self.shares.get_mut(i)) else {
            return false;
        };
        if *n == 0 {
            return false;
        }
        *n -= 1;
        true
    }

    /// Where the copy-on-write counts are, for the host's checker: the
    /// address of the array (one `u16` per frame, 0 while no frame was
    /// ever shared), the frame entry 0 stands for, and the entries.
    pub fn share_counts_info(&self) -> [u64; 3] {
        let at = if self.shares.is_empty() {
            0
        } else {
            self.shares.as_ptr() as u64
        };
        [at, self.start, self.shares.len() as u64]
    }

    /// Whether more than one address space maps private frame `pa`.
    pub fn is_shared(&self, pa: u64) -> bool {
        self.share_index(pa)
            .and_then(|i| self.shares.get(i))
            .is_some_and(|&n| n > 0)
    }

    /// Frames allocated now, in 4 KiB units.
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    /// Frames managed, in 4 KiB units.
    pub fn total(&self) -> u64 {
        (self.end - self.start) / PAGE_SIZE
    }

    /// A zero-filled 4 KiB frame (a never-used one inline: the fault
    /// path's common case).
    #[inline(always)]
    pub fn alloc_zeroed<M: PhysMem>(&mut self, mem: &mut M) -> Option<u64> {
        self.alloc_cleared(mem, false)
    }

    /// A zero-filled 4 KiB frame for a page table: as
    /// [`Self::alloc_zeroed`], but a used frame is zeroed by the CPU's own
    /// stores ([`PhysMem::clear_words`]), never the host's: it may have
    /// been a page table before, which a hypervisor that shadows page
    /// tables must see cleared.
    #[inline(always)]
    pub fn alloc_table<M: PhysMem>(&mut self, mem: &mut M) -> Option<u64> {
        self.alloc_cleared(mem, true)
    }

    /// [`Self::alloc_zeroed`], or [`Self::alloc_table`] if `table`.
    #[inline(always)]
    fn alloc_cleared<M: PhysMem>(&mut self, mem: &mut M, table: bool) -> Option<u64> {
        match self.take_clean() {
            Some(pa) => Some(self.count(pa, 1)),
            None => self.alloc_cleared_reused(mem, table),
        }
    }

    /// [`Self::alloc_cleared`] once no never-used frame is left.
    #[inline(never)]
    fn alloc_cleared_reused<M: PhysMem>(&mut self, mem: &mut M, table: bool) -> Option<u64> {
        let (pa, dirty) = self.take_reused(mem)?;
        match (dirty, table) {
            (false, _) => {}
            (true, false) => mem.zero(pa, PAGE_SIZE),
            (true, true) => mem.clear_words(pa, PAGE_SIZE / 8),
        }
        Some(self.count(pa, 1))
    }

    /// A 4 KiB frame with unspecified content, for callers that overwrite
    /// all of it (e.g. with a copy). Prefers reused frames.
    pub fn alloc_uninit<M: PhysMem>(&mut self, mem: &mut M) -> Option<u64> {
        let pa = match self.take_reused(mem) {
            Some((pa, _)) => pa,
            None => self.take_clean()?,
        };
        Some(self.count(pa, 1))
    }

    /// Up to `max` physically consecutive 4 KiB frames with unspecified
    /// content, for a page-cache fill: a run from the carve region or the
    /// 4 KiB bump, whichever holds more (consecutive frames make one host
    /// piece and one fault-around run), else from a free huge frame carved
    /// for it, else one frame from the free list. With the run's length and whether its
    /// frames are known to be zero (never used).
    pub fn alloc_run_uninit<M: PhysMem>(
        &mut self,
        mem: &mut M,
        max: u64,
    ) -> Option<(u64, u64, bool)> {
        if self.carve.is_empty() && self.fresh_lo >= self.fresh_hi {
            self.refill_carve(mem);
        }
        // The larger of the two: a fill split across them is two runs.
        let carve_left = self.carve.end.saturating_sub(self.carve.next);
        let (pa, n, clean) = if carve_left > 0 && carve_left >= self.fresh_hi - self.fresh_lo {
            let n = max.min(carve_left / PAGE_SIZE);
            let pa = self.carve.next;
            self.carve.next += n * PAGE_SIZE;
            (pa, n, !self.carve_dirty)
        } else if self.fresh_lo < self.fresh_hi {
            let n = max.min((self.fresh_hi - self.fresh_lo) / PAGE_SIZE);
            let pa = self.fresh_lo;
            self.fresh_lo += n * PAGE_SIZE;
            (pa, n, true)
        } else if self.free_4k != NIL {
            let pa = self.free_4k;
            self.free_4k = mem.read_u64(pa);
            (pa, 1, false)
        } else {
            return None;
        };
        Some((self.count(pa, n), n, clean))
    }

    /// `n` physically consecutive 4 KiB frames with unspecified content
    /// (to be overwritten by a copy) from the carve region or the 4 KiB
    /// bump, or `None`, taking nothing; with whether they are known to be
    /// zero (never used), so that a copy's zero tail need not be written.
    /// Given back with [`Self::give_back_run_end`] before they are written.
    /// In line in the data block copy, its one caller (itself in line in
    /// both of its callers): a call costs as much as the tests.
    #[inline(always)]
    pub fn alloc_run_exact(&mut self, n: u64) -> Option<(u64, bool)> {
        let bytes = n * PAGE_SIZE;
        let (pa, clean) = if self.carve.end - self.carve.next.min(self.carve.end) >= bytes {
            let pa = self.carve.next;
            self.carve.next += bytes;
            (pa, !self.carve_dirty)
        } else if self.fresh_hi.saturating_sub(self.fresh_lo) >= bytes {
            let pa = self.fresh_lo;
            self.fresh_lo += bytes;
            (pa, true)
        } else {
            return None;
        };
        Some((self.count(pa, n), clean))
    }

    /// `n` physically consecutive zero-filled 4 KiB frames (a 64 KiB block
    /// for an anonymous fault): from a carve region or the 4 KiB bump that
    /// still holds `n` frames, or from a free huge frame carved for it;
    /// `None` if none of those has room (the caller maps one page). A used
    /// run is zeroed with one [`PhysMem::zero`]. Frames are freed one by
    /// one with [`Self::free`].
    pub fn alloc_run_zeroed<M: PhysMem>(&mut self, mem: &mut M, n: u64) -> Option<u64> {
        let bytes = n * PAGE_SIZE;
        let fresh_room = self.fresh_hi.saturating_sub(self.fresh_lo) >= bytes;
        if self.carve.is_empty() && fresh_room {
            // No carve region (until the bump runs out): the bump's
            // frames, as below, without the carve's tests.
            let pa = self.fresh_lo;
            self.fresh_lo += bytes;
            return Some(self.count(pa, n));
        }
        self.alloc_run_zeroed_carved(mem, n)
    }

    /// [`Self::alloc_run_zeroed`] past its common case (out of line: the
    /// block fault inlines the rest).
    #[inline(never)]
    fn alloc_run_zeroed_carved<M: PhysMem>(&mut self, mem: &mut M, n: u64) -> Option<u64> {
        let bytes = n * PAGE_SIZE;
        let fresh_room = self.fresh_hi.saturating_sub(self.fresh_lo) >= bytes;
        if !fresh_room && self.carve.end - self.carve.next.min(self.carve.end) < bytes {
            if self.free_runs != NIL {
                // A freed run holds a block whatever the carve has left:
                // that goes on the free list.
                self.retire_carve(mem);
            }
            if self.carve.is_empty() {
                self.refill_carve(mem);
            }
        }
        let pa =
            if !self.carve_dirty && self.carve.end - self.carve.next.min(self.carve.end) >= bytes {
                let pa = self.carve.next;
                self.carve.next += bytes;
                pa
            } else if self.fresh_hi.saturating_sub(self.fresh_lo) >= bytes {
                let pa = self.fresh_lo;
                self.fresh_lo += bytes;
                pa
            } else if self.carve.end - self.carve.next.min(self.carve.end) >= bytes {
                let pa = self.carve.next;
                self.carve.next += bytes;
                mem.zero(pa, bytes);
                pa
            } else {
                return None;
            };
        Some(self.count(pa, n))
    }

    /// `n` consecutive never-used (so zero) frames from the 4 KiB bump, or
    /// None: a chain of new page tables, made one by one when this fails.
    /// Small enough to inline, unlike [`Self::alloc_run_zeroed`], which the
    /// block fault inlines as its one caller.
    #[inline]
    pub fn alloc_fresh_run(&mut self, n: u64) -> Option<u64> {
        let bytes = n * PAGE_SIZE;
        if self.fresh_hi.saturating_sub(self.fresh_lo) < bytes {
            return None;
        }
        let pa = self.fresh_lo;
        self.fresh_lo += bytes;
        Some(self.count(pa, n))
    }

    /// A zero-filled, 2 MiB-aligned, contiguous 2 MiB frame.
    pub fn alloc_huge_zeroed<M: PhysMem>(&mut self, mem: &mut M) -> Option<u64> {
        if self.free_huge != NIL {
            let pa = self.free_huge;
            self.free_huge = mem.read_u64(pa);
            mem.zero(pa, HUGE_PAGE_SIZE);
            return Some(self.count(pa, FRAMES_PER_HUGE));
        }
        let pa = self.fresh_hi.checked_sub(HUGE_PAGE_SIZE)?;
        if pa < self.fresh_lo {
            return None;
        }
        self.fresh_hi = pa;
        Some(self.count(pa, FRAMES_PER_HUGE))
    }

    /// `n` consecutive never-used 2 MiB frames from the top of the fresh
    /// range (zero, as the VMM's fresh memory is), lowest address
    /// returned: one step for the kernel heap's whole run, where a
    /// [`Self::alloc_huge_zeroed`] per frame cost 25 emulated instructions
    /// each (16 of them at 64 GiB of RAM). The free list is not used.
    pub fn alloc_huge_run_fresh(&mut self, n: u64) -> Option<u64> {
        let pa = self.fresh_hi.checked_sub(n.checked_mul(HUGE_PAGE_SIZE)?)?;
        if pa < self.fresh_lo {
            return None;
        }
        self.fresh_hi = pa;
        Some(self.count(pa, n * FRAMES_PER_HUGE))
    }

    /// Return a 4 KiB frame. Frames outside the managed range or unaligned
    /// addresses are ignored (returns false).
    pub fn free<M: PhysMem>(&mut self, mem: &mut M, pa: u64) -> bool {
        if !self.owns(pa) || pa & (PAGE_SIZE - 1) != 0 {
            return false;
        }
        mem.write_u64(pa, self.free_4k);
        self.free_4k = pa;
        self.in_use -= 1;
        true
    }

    /// One mapping of the 4 KiB frame `pa` goes away (a leaf unmapped or
    /// torn down): a frame another address space still maps loses one
    /// mapping ([`Self::unshare`]), a page-cache frame stays, a private
    /// one is freed ([`Self::free`]). One range check and one index serve
    /// the three tests. Whether a mapping counted in an address space's
    /// frames went (a shared or freed frame; not a page-cache frame or one
    /// outside the managed range).
    #[inline]
    pub fn release_4k<M: PhysMem>(&mut self, mem: &mut M, pa: u64) -> bool {
        self.release_4k_of::<M, true>(mem, pa)
    }

    /// [`Self::release_4k`] of a frame no other address space maps (its
    /// caller knows: no fork shared the address space's frames), without
    /// a look at its share count.
    #[inline]
    pub fn release_4k_unshared<M: PhysMem>(&mut self, mem: &mut M, pa: u64) -> bool {
        self.release_4k_of::<M, false>(mem, pa)
    }

    /// [`Self::release_4k`], the share count looked at if `SHARED`.
    #[inline(always)]
    fn release_4k_of<M: PhysMem, const SHARED: bool>(&mut self, mem: &mut M, pa: u64) -> bool {
        if !self.owns(pa) || pa & (PAGE_SIZE - 1) != 0 {
            return false;
        }
        let n = (pa - self.start) / PAGE_SIZE;
        // Only private frames are ever shared: a counted frame is no
        // page-cache one.
        if let Some(c) = self.shares.get_mut(n as usize).filter(|c| **c > 0) {
            debug_assert!(SHARED, "frame {pa:#x} shared");
            if SHARED {
                *c -= 1;
                return true;
            }
        }
        if self.cache_bits != 0 {
            let word = mem.read_u64(self.cache_bits + n / 64 * 8);
            if word & (1 << (n % 64)) != 0 {
                return false;
            }
        }
        mem.write_u64(pa, self.free_4k);
        self.free_4k = pa;
        self.in_use -= 1;
        true
    }

    /// The `n` consecutive frames from `pa` (one address space's run of
    /// 4 KiB leaves) are unmapped: if every one is a private frame only
    /// this mapping holds, they are freed in one step (as a run if there
    /// are [`RUN_MIN`] or more); if every one is also mapped elsewhere
    /// (fork), each loses a mapping; either way all of them count. If
    /// every one is a page-cache frame or lies outside the managed range,
    /// none is freed or counts. `None`, with nothing done, for anything
    /// else (a mix, a run across the range's edge): the caller releases
    /// them one by one ([`Self::release_4k`]).
    #[inline]
    pub fn release_run<M: PhysMem>(&mut self, mem: &mut M, pa: u64, n: u64) -> Option<u64> {
        self.release_run_of::<M, true>(mem, pa, n)
    }

    /// [`Self::release_run`] of frames no other address space maps (as
    /// [`Self::release_4k_unshared`]), without a look at their share
    /// counts.
    #[inline]
    pub fn release_run_unshared<M: PhysMem>(
        &mut self,
        mem: &mut M,
        pa: u64,
        n: u64,
    ) -> Option<u64> {
        self.release_run_of::<M, false>(mem, pa, n)
    }

    /// [`Self::release_run`], the share counts looked at if `SHARED`.
    #[inline(always)]
    fn release_run_of<M: PhysMem, const SHARED: bool>(
        &mut self,
        mem: &mut M,
        pa: u64,
        n: u64,
    ) -> Option<u64> {
        let end = pa.checked_add(n.checked_mul(PAGE_SIZE)?)?;
        if n == 0 || pa < self.start || end > self.end || pa & (PAGE_SIZE - 1) != 0 {
            // All outside the managed range (the boot image's pages):
            // nothing to do; across its edge: frame by frame.
            return (end <= self.start || pa >= self.end).then_some(0);
        }
        let first = (pa - self.start) / PAGE_SIZE;
        let counts = match SHARED {
            true => self.shares.get_mut(first as usize..(first + n) as usize),
            false => {
                debug_assert!(self
                    .shares
                    .iter()
                    .skip(first as usize)
                    .take(n as usize)
                    .all(|&c| c == 0));
                None
            }
        };
        if let Some(counts) = counts {
            match counts.iter().filter(|&&c| c != 0).count() as u64 {
                0 => {}
                // Every frame still mapped elsewhere (a forked child's
                // exec or exit): each loses this mapping.
                shared if shared == n => {
                    counts.iter_mut().for_each(|c| *c -= 1);
                    return Some(n);
                }
                _ => return None,
            }
        }
        match self.cache_marks(mem, first, n) {
            Marks::None => {}
            Marks::All => return Some(0),
            Marks::Some => return None,
        }
        if n >= RUN_MIN {
            mem.write_u64(pa, self.free_runs);
            mem.write_u64(pa + 8, n);
            self.free_runs = pa;
        } else {
            self.free_4k = mem.link_frames(pa, n, self.free_4k);
        }
        self.in_use -= n;
        Some(n)
    }

    /// Whether the page-cache bitmap marks none, all or some of the `n`
    /// (at least one) frames from frame index `first`, a word of it at a
    /// time: each word's bits under the run compared with none and all
    /// of them (a count of them cost some 25 emulated instructions a
    /// word more, with no `popcnt` in ring 0's code).
    fn cache_marks<M: PhysMem>(&self, mem: &M, first: u64, n: u64) -> Marks {
        if self.cache_bits == 0 {
            return Marks::None;
        }
        let (mut i, end) = (first, first + n);
        let (mut any, mut all) = (false, true);
        while i < end {
            let lo = i % 64;
            let take = (64 - lo).min(end - i);
            let mask = (u64::MAX >> (64 - take)) << lo;
            let set = mem.read_u64(self.cache_bits + i / 64 * 8) & mask;
            any |= set != 0;
            all &= set == mask;
            i += take;
        }
        match (any, all) {
            (false, _) => Marks::None,
            (true, true) => Marks::All,
            (true, false) => Marks::Some,
        }
    }

    /// Return the `n` frames from `pa`, the unused end of a run that
    /// [`Self::alloc_run_zeroed`] just handed out, still zero: taken back
    /// by the bump or carve region it came from if nothing was allocated
    /// after it (the region's next frame is the run's end), else freed one
    /// by one.
    pub fn give_back_run_end<M: PhysMem>(&mut self, mem: &mut M, pa: u64, n: u64) {
        let end = pa + n * PAGE_SIZE;
        if self.fresh_lo == end {
            self.fresh_lo = pa;
        } else if self.carve.next == end {
            self.carve.next = pa;
        } else {
            for k in 0..n {
                self.free(mem, pa + k * PAGE_SIZE);
            }
            return;
        }
        self.in_use -= n;
    }

    /// Return a 2 MiB frame from [`Self::alloc_huge_zeroed`]. Frames outside
    /// the managed range or unaligned addresses are ignored (returns false).
    pub fn free_huge<M: PhysMem>(&mut self, mem: &mut M, pa: u64) -> bool {
        if !self.owns(pa) || pa & (HUGE_PAGE_SIZE - 1) != 0 {
            return false;
        }
        mem.write_u64(pa, self.free_huge);
        self.free_huge = pa;
        self.in_use -= FRAMES_PER_HUGE;
        true
    }

    fn count(&mut self, pa: u64, frames: u64) -> u64 {
        self.in_use += frames;
        pa
    }

    /// A never-used frame: from the 4 KiB bump (first: the fault path's
    /// common case), else from a clean carve region.
    fn take_clean(&mut self) -> Option<u64> {
        if self.fresh_lo < self.fresh_hi {
            let pa = self.fresh_lo;
            self.fresh_lo += PAGE_SIZE;
            return Some(pa);
        }
        if self.carve_dirty {
            return None;
        }
        self.carve.take()
    }

    /// A frame from the free list or a carved huge frame; with whether it
    /// may hold old data.
    fn take_reused<M: PhysMem>(&mut self, mem: &mut M) -> Option<(u64, bool)> {
        if self.free_4k != NIL {
            let pa = self.free_4k;
            self.free_4k = mem.read_u64(pa);
            return Some((pa, true));
        }
        if self.carve.is_empty() {
            self.refill_carve(mem);
        }
        let dirty = self.carve_dirty;
        Some((self.carve.take()?, dirty))
    }

    /// Give the empty carve region a freed run, else a free huge frame
    /// (both held data); nothing if there is neither (one test in line:
    /// the usual case, each list's end marker having every bit set).
    #[inline(always)]
    fn refill_carve<M: PhysMem>(&mut self, mem: &mut M) {
        if self.free_runs & self.free_huge != NIL {
            self.refill_carve_from_lists(mem);
        }
    }

    /// [`Self::refill_carve`] from a list that holds something.
    #[inline(never)]
    fn refill_carve_from_lists<M: PhysMem>(&mut self, mem: &mut M) {
        let (pa, len) = if self.free_runs != NIL {
            let pa = self.free_runs;
            self.free_runs = mem.read_u64(pa);
            (pa, mem.read_u64(pa + 8) * PAGE_SIZE)
        } else if self.free_huge != NIL {
            let pa = self.free_huge;
            self.free_huge = mem.read_u64(pa);
            (pa, HUGE_PAGE_SIZE)
        } else {
            return;
        };
        self.carve = Carve {
            next: pa,
            end: pa + len,
        };
        self.carve_dirty = true;
    }

    /// Put what the carve region has left on the 4 KiB free list (fewer
    /// frames than a block: a freed run is carved instead).
    fn retire_carve<M: PhysMem>(&mut self, mem: &mut M) {
        while let Some(pa) = self.carve.take() {
            mem.write_u64(pa, self.free_4k);
            self.free_4k = pa;
        }
    }
}

/// The share counts of four frames as one word, a count to 16 bits (fork's
/// passes over a run's counts: a test and an addition for four frames,
/// not for each).
fn four(c: &[u16]) -> u64 {
    u64::from(c[0]) | u64::from(c[1]) << 16 | u64::from(c[2]) << 32 | u64::from(c[3]) << 48
}

/// Store the four counts of [`four`]'s word `w` back into `c`.
fn set_four(c: &mut [u16], w: u64) {
    c[0] = w as u16;
    c[1] = (w >> 16) as u16;
    c[2] = (w >> 32) as u16;
    c[3] = (w >> 48) as u16;
}

/// 1 in each 16-bit lane of a word of four counts.
const LANES_ONE: u64 = 0x0001_0001_0001_0001;
/// The top bit of each lane.
const LANES_TOP: u64 = 0x8000_8000_8000_8000;

/// Whether some 16-bit lane of `w` is zero (no lane borrows from the
/// next unless one below it is zero, so the lowest zero lane is always
/// seen).
fn some_lane_zero(w: u64) -> bool {
    w.wrapping_sub(LANES_ONE) & !w & LANES_TOP != 0
}

/// One mapping more of each frame whose count is in `counts`, if none
/// is at `u16::MAX` (true); otherwise nothing changes (false). Four
/// counts a step, in a run of a block or more (a short one's counts go
/// one by one: the quads' set-up would cost more than it saves).
fn add_one_each(counts: &mut [u16]) -> bool {
    if counts.len() < 8 {
        if counts.contains(&u16::MAX) {
            return false;
        }
        counts.iter_mut().for_each(|c| *c += 1);
        return true;
    }
    let rest = counts.chunks_exact(4).remainder();
    if rest.contains(&u16::MAX) || counts.chunks_exact(4).any(|q| some_lane_zero(!four(q))) {
        return false;
    }
    let mut quads = counts.chunks_exact_mut(4);
    for q in &mut quads {
        set_four(q, four(q) + LANES_ONE);
    }
    quads.into_remainder().iter_mut().for_each(|c| *c += 1);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::testmem::TestMem;

    #[test]
    fn counts_four_to_a_word_are_stepped_as_one_by_one_and_none_past_its_limit() {
        let samples: [&[u16]; 10] = [
            &[],
            &[0],
            &[3, 1, 2],
            &[1, 1, 1, 1, 1, 1, 1, 1, 1],
            &[1, 2, 0, 4, 5],
            &[1, 2, 3, 4, 5, 6, 7, 0],
            &[0x8000, 0x7fff, 1, 0xffff, 2],
            &[0xfffe, 0x8000, 0x7fff, 1, 0x100, 0x0100, 9],
            &[0xfffe, 0x8000, 0x7fff, 1, 0x100, 0x0100, 9, 2, 0xffff, 3],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ];
        for s in samples {
            let mut c = s.to_vec();
            let added = add_one_each(&mut c);
            assert_eq!(added, !s.contains(&u16::MAX), "{s:?}");
            let want: Vec<u16> = match added {
                true => s.iter().map(|&x| x + 1).collect(),
                false => s.to_vec(),
            };
            assert_eq!(c, want, "{s:?}");
        }
        // A count at its limit in each lane of a word, the others zero
        // (no borrow hides it).
        for lane in 0..8 {
            let mut m = [0u16; 8];
            m[lane] = 0xffff;
            assert!(!add_one_each(&mut m), "lane {lane}");
        }
    }

    const MIB: u64 = 1 << 20;

    fn setup(start: u64, end: u64) -> (TestMem, FrameAllocator) {
        (TestMem::new(end), FrameAllocator::new(start, end))
    }

    #[test]
    fn a_released_frame_loses_a_share_stays_in_the_cache_or_is_freed() {
        let (mut mem, mut fa) = setup(MIB, 8 * MIB);
        let bits = fa.alloc_zeroed(&mut mem).unwrap();
        fa.use_cache_bits(bits);
        let (private, cached) = (
            fa.alloc_zeroed(&mut mem).unwrap(),
            fa.alloc_zeroed(&mut mem).unwrap(),
        );
        fa.set_cache(&mut mem, cached, true);
        assert!(fa.share(private));
        let used = fa.in_use();
        // Shared: one mapping goes, the frame stays.
        assert!(fa.release_4k(&mut mem, private));
        assert!(!fa.is_shared(private));
        assert_eq!(fa.in_use(), used);
        // The last mapping: freed.
        assert!(fa.release_4k(&mut mem, private));
        assert_eq!(fa.in_use(), used - 1);
        // A page-cache frame and one outside the range: nothing.
        assert!(!fa.release_4k(&mut mem, cached));
        assert!(!fa.release_4k(&mut mem, 0x1000));
        assert_eq!(fa.in_use(), used - 1);
        assert!(fa.is_cache(&mem, cached));
    }

    /// An allocator of `frames` frames with the bump used up: every frame
    /// in use, none never-used left.
    fn drained(frames: u64) -> (TestMem, FrameAllocator, Vec<u64>) {
        let (mut mem, mut fa) = setup(MIB, MIB + frames * PAGE_SIZE);
        let all: Vec<u64> = core::iter::from_fn(|| fa.alloc_zeroed(&mut mem)).collect();
        assert_eq!(all.len() as u64, frames);
        (mem, fa, all)
    }

    #[test]
    fn a_run_of_private_frames_is_freed_in_one_step_and_gives_a_zeroed_block_again() {
        let (mut mem, mut fa, all) = drained(64);
        mem.fill(all[8], 16 * PAGE_SIZE, 0xaa);
        assert_eq!(fa.release_run(&mut mem, all[8], 16), Some(16));
        assert_eq!(fa.in_use(), 48);
        // One block: the run, zeroed with one zeroing.
        let calls = mem.zero_calls;
        assert_eq!(fa.alloc_run_zeroed(&mut mem, 16), Some(all[8]));
        assert_eq!(mem.zero_calls, calls + 1);
        assert!((0..16 * PAGE_SIZE).all(|k| mem.byte(all[8] + k) == 0));
        assert_eq!(fa.in_use(), 64);
        assert_eq!(fa.alloc_run_zeroed(&mut mem, 16), None, "nothing left");
    }

    #[test]
    fn frames_of_a_freed_run_are_handed_out_one_by_one_and_zeroed_each() {
        let (mut mem, mut fa, all) = drained(40);
        mem.fill(all[0], 20 * PAGE_SIZE, 0x55);
        assert_eq!(fa.release_run(&mut mem, all[0], 20), Some(20));
        for &frame in &all[..20] {
            assert_eq!(fa.alloc_zeroed(&mut mem), Some(frame));
            assert_eq!(mem.read_u64(frame), 0, "the link words too");
            assert_eq!(mem.byte(frame + 4095), 0);
        }
        assert_eq!(fa.alloc_zeroed(&mut mem), None);
    }

    #[test]
    fn a_short_run_goes_on_the_free_list_frame_by_frame() {
        let (mut mem, mut fa, all) = drained(16);
        assert!(fa.free(&mut mem, all[9]));
        assert_eq!(fa.release_run(&mut mem, all[2], 3), Some(3));
        assert_eq!(fa.alloc_run_zeroed(&mut mem, 16), None, "no run of a block");
        let got: Vec<u64> = core::iter::from_fn(|| fa.alloc_uninit(&mut mem)).collect();
        assert_eq!(
            got,
            [all[4], all[3], all[2], all[9]],
            "the list before it after the run"
        );
    }

    #[test]
    fn what_a_block_leaves_of_the_carve_goes_on_the_free_list_when_a_run_is_taken() {
        let (mut mem, mut fa, all) = drained(64);
        // A run of 20: a block takes 16, 4 stay in the carve region.
        assert_eq!(fa.release_run(&mut mem, all[0], 20), Some(20));
        assert_eq!(fa.release_run(&mut mem, all[32], 16), Some(16));
        assert_eq!(
            fa.alloc_run_zeroed(&mut mem, 16),
            Some(all[32]),
            "the last freed first"
        );
        assert_eq!(fa.alloc_run_zeroed(&mut mem, 16), Some(all[0]));
        assert_eq!(fa.in_use(), 64 - 4);
        let rest: Vec<u64> = core::iter::from_fn(|| fa.alloc_uninit(&mut mem)).collect();
        assert_eq!(rest, all[16..20]);
    }

    #[test]
    fn a_run_with_a_shared_or_a_cache_frame_is_left_to_the_caller_and_one_all_cache_counts_none() {
        let (mut mem, mut fa) = setup(MIB, 8 * MIB);
        let bits = fa.alloc_zeroed(&mut mem).unwrap();
        fa.use_cache_bits(bits);
        let run = fa.alloc_run_zeroed(&mut mem, 32).unwrap();
        let used = fa.in_use();
        assert!(fa.share(run + 3 * PAGE_SIZE));
        assert_eq!(fa.release_run(&mut mem, run, 16), None, "one frame shared");
        // All shared: each loses one mapping, none is freed.
        (0..16).for_each(|k| assert!(fa.share(run + k * PAGE_SIZE)));
        assert_eq!(fa.release_run(&mut mem, run, 16), Some(16));
        assert!(
            fa.is_shared(run + 3 * PAGE_SIZE),
            "shared twice, mapped once more"
        );
        assert!(!fa.is_shared(run) && !fa.is_shared(run + 15 * PAGE_SIZE));
        fa.set_cache_run(&mut mem, run + 16 * PAGE_SIZE, 16, true);
        assert_eq!(fa.release_run(&mut mem, run + 16 * PAGE_SIZE, 16), Some(0));
        fa.set_cache(&mut mem, run + 20 * PAGE_SIZE, false);
        assert_eq!(
            fa.release_run(&mut mem, run + 16 * PAGE_SIZE, 16),
            None,
            "a mix"
        );
        assert_eq!(
            fa.release_run(&mut mem, 0x1000, 16),
            Some(0),
            "outside the range"
        );
        assert_eq!(
            fa.release_run(&mut mem, MIB - PAGE_SIZE, 2),
            None,
            "across its start"
        );
        assert_eq!(fa.in_use(), used, "nothing was freed");
        assert!(fa.is_shared(run + 3 * PAGE_SIZE));
    }

    #[test]
    fn unshared_releases_free_what_the_releases_that_look_at_share_counts_free() {
        // Two allocators alike, one released with the share counts looked
        // at, the other without: the same frames freed, in the same order,
        // the page cache's kept (the counts exist: a fork happened, not to
        // these frames).
        let run_of = |unshared: bool| {
            let (mut mem, mut fa) = setup(MIB, 8 * MIB);
            let bits = fa.alloc_zeroed(&mut mem).unwrap();
            fa.use_cache_bits(bits);
            let other = fa.alloc_zeroed(&mut mem).unwrap();
            assert!(fa.share(other));
            let run = fa.alloc_run_zeroed(&mut mem, 48).unwrap();
            fa.set_cache_run(&mut mem, run + 40 * PAGE_SIZE, 4, true);
            let mut got = alloc::vec::Vec::new();
            for (pa, n) in [
                (run, 16),
                (run + 16 * PAGE_SIZE, 3),
                (run + 40 * PAGE_SIZE, 4),
            ] {
                got.push(match unshared {
                    true => fa.release_run_unshared(&mut mem, pa, n),
                    false => fa.release_run(&mut mem, pa, n),
                });
            }
            // A mix of cache and private frames: one by one.
            fa.set_cache(&mut mem, run + 44 * PAGE_SIZE, true);
            for k in 44..48 {
                let pa = run + k * PAGE_SIZE;
                got.push(Some(u64::from(match unshared {
                    true => fa.release_4k_unshared(&mut mem, pa),
                    false => fa.release_4k(&mut mem, pa),
                })));
            }
            (got, format!("{fa:?}"), fa.alloc_uninit(&mut mem))
        };
        let (looked, unlooked) = (run_of(false), run_of(true));
        assert_eq!(looked, unlooked);
        assert_eq!(looked.0[..3], [Some(16), Some(3), Some(0)]);
    }

    #[test]
    fn a_run_shared_by_fork_counts_a_mapping_more_for_each_private_frame_or_none() {
        let (mut mem, mut fa) = setup(MIB, 8 * MIB);
        let bits = fa.alloc_zeroed(&mut mem).unwrap();
        fa.use_cache_bits(bits);
        let run = fa.alloc_run_zeroed(&mut mem, 32).unwrap();
        assert_eq!(fa.share_run(&mem, run, 16), Some(true));
        assert!((0..16).all(|k| fa.is_shared(run + k * PAGE_SIZE)));
        assert!(!fa.is_shared(run + 16 * PAGE_SIZE));
        fa.set_cache_run(&mut mem, run + 16 * PAGE_SIZE, 16, true);
        assert_eq!(fa.share_run(&mem, run + 16 * PAGE_SIZE, 16), Some(false));
        assert_eq!(fa.share_run(&mem, run + 8 * PAGE_SIZE, 16), None, "a mix");
        assert_eq!(fa.share_run(&mem, 0x1000, 4), Some(false), "outside RAM");
        assert!(!fa.is_shared(run + 16 * PAGE_SIZE), "nothing done");
        // A frame at the count's limit: left to the caller, frame by frame.
        let one = run + 3 * PAGE_SIZE;
        while fa.share(one) {}
        assert_eq!(fa.share_run(&mem, run, 16), None);
        assert!(!fa.is_shared(run + 32 * PAGE_SIZE));
    }

    #[test]
    fn a_reused_frame_for_a_page_table_is_cleared_by_stores_not_a_zeroing() {
        let (mut mem, mut fa, all) = drained(2);
        mem.fill(all[1], PAGE_SIZE, 0xaa);
        fa.free(&mut mem, all[1]);
        let calls = mem.zero_calls;
        assert_eq!(fa.alloc_table(&mut mem), Some(all[1]));
        assert_eq!(mem.zero_calls, calls, "no zeroing the host could do");
        assert!((0..PAGE_SIZE).all(|k| mem.byte(all[1] + k) == 0));
    }

    #[test]
    fn the_unused_end_of_a_run_goes_back_where_it_came_from() {
        let (mut mem, mut fa) = setup(MIB, 8 * MIB);
        let run = fa.alloc_run_zeroed(&mut mem, 16).unwrap();
        fa.give_back_run_end(&mut mem, run + 8 * PAGE_SIZE, 8);
        assert_eq!(fa.in_use(), 8);
        assert_eq!(fa.alloc_zeroed(&mut mem), Some(run + 8 * PAGE_SIZE));
        // Something allocated after the run: its end is freed frame by
        // frame instead.
        let run = fa.alloc_run_zeroed(&mut mem, 16).unwrap();
        let other = fa.alloc_zeroed(&mut mem).unwrap();
        fa.give_back_run_end(&mut mem, run + 12 * PAGE_SIZE, 4);
        assert_eq!(fa.in_use(), 9 + 13);
        let reused = fa.alloc_uninit(&mut mem).unwrap();
        assert!(reused != other && (run + 12 * PAGE_SIZE..run + 16 * PAGE_SIZE).contains(&reused));
    }

    #[test]
    fn a_cache_fill_takes_runs_then_carved_huge_frames_then_freed_frames() {
        let (mut mem, mut fa) = setup(MIB, 4 * MIB);
        let huge = fa.alloc_huge_zeroed(&mut mem).unwrap();
        let a = fa.alloc_zeroed(&mut mem).unwrap();
        fa.free(&mut mem, a);
        let (pa, n, clean) = fa.alloc_run_uninit(&mut mem, 8).unwrap();
        assert_eq!((pa, n, clean), (a + PAGE_SIZE, 8, true), "never used: zero");
        assert_eq!(fa.in_use(), 512 + 8);
        // With the bump used up, a freed huge frame is carved (its frames
        // held data), then the free list gives one frame at a time.
        while fa.alloc_run_uninit(&mut mem, 512).is_some_and(|r| r.2) {}
        fa.free(&mut mem, a);
        fa.free_huge(&mut mem, huge);
        let (pa, n, clean) = fa.alloc_run_uninit(&mut mem, 600).unwrap();
        assert_eq!((pa, n, clean), (huge, 512, false));
        assert_eq!(fa.alloc_run_uninit(&mut mem, 8), Some((a, 1, false)));
        assert_eq!(fa.alloc_run_uninit(&mut mem, 1), None);
    }

    #[test]
    fn an_exact_run_says_whether_its_frames_were_never_used() {
        let (mut mem, mut fa) = setup(MIB, 4 * MIB);
        let huge = fa.alloc_huge_zeroed(&mut mem).unwrap();
        let (pa, clean) = fa.alloc_run_exact(4).unwrap();
        assert!(clean, "from the bump: never used");
        fa.give_back_run_end(&mut mem, pa, 4);
        while fa.alloc_run_uninit(&mut mem, 512).is_some_and(|r| r.2) {}
        assert_eq!(fa.alloc_run_exact(4), None, "nothing left to take from");
        fa.free_huge(&mut mem, huge);
        let (one, _, clean) = fa.alloc_run_uninit(&mut mem, 1).unwrap();
        assert_eq!((one, clean), (huge, false), "the freed huge frame, carved");
        let carved = fa.alloc_run_exact(4);
        assert_eq!(carved, Some((huge + PAGE_SIZE, false)), "it held data");
    }

    #[test]
    fn the_bump_is_used_before_the_clean_tail_above_the_huge_frames() {
        let tail = 2 * MIB + 2 * PAGE_SIZE;
        let (mut mem, mut fa) = setup(2 * MIB - 2 * PAGE_SIZE, tail);
        let got: Vec<u64> = core::iter::from_fn(|| fa.alloc_zeroed(&mut mem)).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(got[..2], [2 * MIB - 2 * PAGE_SIZE, 2 * MIB - PAGE_SIZE]);
        assert_eq!(got[2..], [2 * MIB, 2 * MIB + PAGE_SIZE]);
    }

    #[test]
    fn fresh_frames_are_handed_out_without_zeroing() {
        let (mut mem, mut fa) = setup(MIB, 8 * MIB);
        let a = fa.alloc_zeroed(&mut mem).unwrap();
        let b = fa.alloc_zeroed(&mut mem).unwrap();
        assert_eq!((a, b), (MIB, MIB + PAGE_SIZE));
        assert_eq!(mem.zero_calls, 0);
        assert_eq!(fa.in_use(), 2);
        assert_eq!(fa.total(), 7 * MIB / PAGE_SIZE);
    }

    #[test]
    fn freed_frame_is_zeroed_when_reused_as_zeroed() {
        let (mut mem, mut fa) = setup(MIB, MIB + 2 * PAGE_SIZE);
        let a = fa.alloc_zeroed(&mut mem).unwrap();
        let _b = fa.alloc_zeroed(&mut mem).unwrap();
        mem.fill(a, PAGE_SIZE, 0xaa);
        assert!(fa.free(&mut mem, a));
        assert_eq!(fa.in_use(), 1);
        assert_eq!(fa.alloc_zeroed(&mut mem), Some(a));
        assert_eq!(mem.zero_calls, 1);
        assert_eq!(mem.byte(a + 100), 0);
        assert_eq!(mem.read_u64(a), 0, "link word must be cleared");
        assert_eq!(fa.alloc_zeroed(&mut mem), None);
    }

    #[test]
    fn alloc_uninit_prefers_free_list_and_skips_zeroing() {
        let (mut mem, mut fa) = setup(MIB, 8 * MIB);
        let a = fa.alloc_zeroed(&mut mem).unwrap();
        fa.free(&mut mem, a);
        assert_eq!(fa.alloc_uninit(&mut mem), Some(a));
        assert_eq!(mem.zero_calls, 0);
    }

    #[test]
    fn runs_are_consecutive_fresh_frames_or_a_carved_free_huge_frame_zeroed_once() {
        let (mut mem, mut fa) = setup(MIB, 4 * MIB);
        let a = fa.alloc_run_zeroed(&mut mem, 16).unwrap();
        assert_eq!(a, MIB);
        assert_eq!(fa.alloc_zeroed(&mut mem), Some(MIB + 16 * PAGE_SIZE));
        assert_eq!((fa.in_use(), mem.zero_calls), (17, 0));
        // Use up the bump; the free huge frame is carved for the next run.
        while fa.alloc_run_zeroed(&mut mem, 16).is_some() {}
        let h = fa.alloc_huge_zeroed(&mut mem);
        assert!(h.is_none(), "the 4 KiB bump took all");
        let (mut mem, mut fa) = setup(MIB, 4 * MIB);
        let h = fa.alloc_huge_zeroed(&mut mem).unwrap();
        mem.fill(h, HUGE_PAGE_SIZE, 0xaa);
        fa.free_huge(&mut mem, h);
        while fa.alloc_run_zeroed(&mut mem, 16).is_some_and(|pa| pa < h) {}
        assert_eq!(mem.zero_calls, 1, "the carved run was zeroed");
        assert_eq!(mem.byte(h + 0x10), 0);
        assert_eq!(mem.byte(h + 16 * PAGE_SIZE), 0xaa, "rest not zeroed yet");
    }

    #[test]
    fn a_run_comes_from_a_clean_carve_region_first_then_from_the_bump() {
        // RAM ending 64 KiB past a 2 MiB boundary: a clean carve region
        // of 16 frames above the bump's.
        let (mut mem, mut fa) = setup(MIB, 4 * MIB + 16 * PAGE_SIZE);
        assert_eq!(fa.alloc_run_zeroed(&mut mem, 8), Some(4 * MIB));
        assert_eq!(
            fa.alloc_run_zeroed(&mut mem, 8),
            Some(4 * MIB + 8 * PAGE_SIZE)
        );
        // The carve region is used up: the bump's frames from its start.
        assert_eq!(fa.alloc_run_zeroed(&mut mem, 8), Some(MIB));
        assert_eq!(fa.alloc_run_zeroed(&mut mem, 8), Some(MIB + 8 * PAGE_SIZE));
        assert_eq!((fa.in_use(), mem.zero_calls), (32, 0));
    }

    #[test]
    fn free_outside_range_is_ignored() {
        let (mut mem, mut fa) = setup(MIB, 8 * MIB);
        fa.alloc_zeroed(&mut mem).unwrap();
        assert!(!fa.free(&mut mem, 0x1000));
        assert!(!fa.free(&mut mem, MIB + 1));
        assert!(!fa.owns(8 * MIB));
        assert_eq!(fa.in_use(), 1);
    }

    #[test]
    fn a_cache_run_marks_exactly_its_frames_across_bitmap_words() {
        let (mut mem, mut fa) = setup(MIB, 8 * MIB);
        fa.use_cache_bits(7 * MIB);
        let first = MIB + 60 * PAGE_SIZE;
        fa.set_cache_run(&mut mem, first, 70, true);
        let marked: Vec<u64> = (0..256)
            .map(|i| MIB + i * PAGE_SIZE)
            .filter(|&pa| fa.is_cache(&mem, pa))
            .collect();
        let want: Vec<u64> = (0..70).map(|i| first + i * PAGE_SIZE).collect();
        assert_eq!(marked, want);
        fa.set_cache_run(&mut mem, first + PAGE_SIZE, 68, false);
        assert!(fa.is_cache(&mem, first) && fa.is_cache(&mem, first + 69 * PAGE_SIZE));
        assert!(!fa.is_cache(&mem, first + PAGE_SIZE));
        assert!(!fa.is_cache(&mem, first + 68 * PAGE_SIZE));
        // Frames the allocator does not manage are left alone.
        fa.set_cache_run(&mut mem, 0, 300, true);
        assert!(fa.is_cache(&mem, MIB) && !fa.is_cache(&mem, 0));
    }

    #[test]
    fn cache_marks_of_a_run_say_none_all_or_some_across_bitmap_words() {
        let (mut mem, mut fa) = setup(MIB, 8 * MIB);
        assert_eq!(fa.cache_marks(&mem, 0, 100), Marks::None, "no bitmap yet");
        fa.use_cache_bits(7 * MIB);
        // Frames 60..130 marked: across the bitmap's first three words.
        fa.set_cache_run(&mut mem, MIB + 60 * PAGE_SIZE, 70, true);
        let cases = [
            ((0, 60), Marks::None),
            ((130, 70), Marks::None),
            ((60, 70), Marks::All),
            ((64, 64), Marks::All),
            ((63, 1), Marks::All),
            ((129, 1), Marks::All),
            ((59, 2), Marks::Some),
            ((0, 200), Marks::Some),
            ((100, 31), Marks::Some),
            ((128, 5), Marks::Some),
        ];
        for ((first, n), want) in cases {
            assert_eq!(fa.cache_marks(&mem, first, n), want, "{first} {n}");
        }
    }

    #[test]
    fn a_huge_run_is_consecutive_fresh_frames_from_the_top() {
        let (mut mem, mut fa) = setup(MIB, 10 * MIB + PAGE_SIZE);
        assert_eq!(fa.alloc_huge_run_fresh(2), Some(6 * MIB));
        assert_eq!(fa.in_use(), 1024);
        assert_eq!(fa.alloc_huge_zeroed(&mut mem), Some(4 * MIB));
        assert_eq!(fa.alloc_huge_run_fresh(2), None, "only 2 MiB left below");
        assert_eq!(fa.alloc_huge_run_fresh(u64::MAX), None);
        assert_eq!(fa.alloc_huge_run_fresh(1), Some(2 * MIB));
        assert_eq!(mem.zero_calls, 0);
    }

    #[test]
    fn huge_frames_come_from_the_top_aligned_and_do_not_collide() {
        let (mut mem, mut fa) = setup(MIB, 6 * MIB + PAGE_SIZE);
        let h1 = fa.alloc_huge_zeroed(&mut mem).unwrap();
        let h2 = fa.alloc_huge_zeroed(&mut mem).unwrap();
        assert_eq!((h1, h2), (4 * MIB, 2 * MIB));
        assert_eq!(
            fa.alloc_huge_zeroed(&mut mem),
            None,
            "only 1 MiB below 2 MiB left"
        );
        assert_eq!(fa.in_use(), 1024);
        let mut got = Vec::new();
        while let Some(pa) = fa.alloc_zeroed(&mut mem) {
            assert!(
                pa < h2 || pa >= h1 + HUGE_PAGE_SIZE,
                "4K frame {pa:#x} inside a huge frame"
            );
            got.push(pa);
        }
        assert_eq!(
            got.len() as u64,
            (MIB + PAGE_SIZE) / PAGE_SIZE,
            "low MiB plus the top sliver"
        );
        assert_eq!(fa.in_use(), fa.total());
    }

    #[test]
    fn freed_huge_frame_is_reused_zeroed() {
        let (mut mem, mut fa) = setup(2 * MIB, 6 * MIB);
        let h = fa.alloc_huge_zeroed(&mut mem).unwrap();
        mem.fill(h, HUGE_PAGE_SIZE, 0x55);
        assert!(fa.free_huge(&mut mem, h));
        assert_eq!(fa.in_use(), 0);
        assert_eq!(fa.alloc_huge_zeroed(&mut mem), Some(h));
        assert_eq!(mem.byte(h + HUGE_PAGE_SIZE - 1), 0);
        assert_eq!(mem.read_u64(h), 0);
    }

    #[test]
    fn exhausted_4k_side_carves_a_free_huge_frame_with_zeroing() {
        let (mut mem, mut fa) = setup(2 * MIB, 4 * MIB);
        let h = fa.alloc_huge_zeroed(&mut mem).unwrap();
        assert_eq!(fa.alloc_zeroed(&mut mem), None);
        mem.fill(h, HUGE_PAGE_SIZE, 0x77);
        fa.free_huge(&mut mem, h);
        for i in 0..FRAMES_PER_HUGE {
            let pa = fa.alloc_zeroed(&mut mem).unwrap();
            assert_eq!(pa, h + i * PAGE_SIZE);
            assert_eq!(mem.byte(pa + 5), 0);
        }
        assert_eq!(fa.alloc_zeroed(&mut mem), None);
        assert_eq!(fa.alloc_huge_zeroed(&mut mem), None);
        assert_eq!(fa.in_use(), FRAMES_PER_HUGE);
    }

    #[test]
    fn exhausted_huge_side_still_serves_4k_frames() {
        let (mut mem, mut fa) = setup(MIB, 2 * MIB);
        assert_eq!(fa.alloc_huge_zeroed(&mut mem), None);
        assert!(fa.alloc_zeroed(&mut mem).is_some());
    }

    #[test]
    fn empty_allocator_hands_out_nothing() {
        let mut mem = TestMem::new(PAGE_SIZE);
        let mut fa = FrameAllocator::empty();
        assert_eq!(fa.alloc_zeroed(&mut mem), None);
        assert_eq!(fa.alloc_uninit(&mut mem), None);
        assert_eq!(fa.alloc_huge_zeroed(&mut mem), None);
        assert_eq!(fa.total(), 0);
    }
}
