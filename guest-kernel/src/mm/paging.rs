//! x86-64 4-level page tables (Intel SDM vol. 3, 4.5), over [`PhysMem`].
//!
//! A [`PageTable`] is a PML4 plus the tables below it. It maps and unmaps
//! 4 KiB and 2 MiB leaves, translates addresses, changes leaf flags in place
//! and walks ranges (unmapping or re-flagging every leaf in them, freeing
//! table pages that become empty).
//!
//! To free empty tables without scanning 512 entries (every instruction
//! counts in emulated ring 0), the entry that points to a table keeps the
//! number of used entries in that table in its bits 52..=61, which the CPU
//! ignores in non-leaf entries. The host's walker must mask addresses with
//! [`pte::ADDR_MASK`] (as the SDM says) and ignore those bits.
//!
//! A leaf of a `PROT_NONE` mapping keeps its frame but is not present: P is
//! clear and the software bit [`pte::PROTNONE`] is set (the CPU ignores all
//! other bits of a non-present entry).

use super::frame::FrameAllocator;
use super::phys::PhysMem;
use crate::errno::Errno;
use crate::trace::{self, category, kind};
use alloc::vec::Vec;
use core::cell::Cell;
use vmrun_contract::layout::{HUGE_PAGE_SIZE, PAGE_SIZE};

/// Page-table entry bits (SDM tables 4-14 to 4-20).
pub mod pte {
    /// Present.
    pub const P: u64 = 1 << 0;
    /// Writable.
    pub const RW: u64 = 1 << 1;
    /// User accessible.
    pub const US: u64 = 1 << 2;
    /// Page-level write-through.
    pub const PWT: u64 = 1 << 3;
    /// Page-level cache disable.
    pub const PCD: u64 = 1 << 4;
    /// Accessed.
    pub const A: u64 = 1 << 5;
    /// Dirty (leaves only).
    pub const D: u64 = 1 << 6;
    /// Page size: the PDE (or PDPTE) is a leaf.
    pub const PS: u64 = 1 << 7;
    /// Global (leaves only).
    pub const G: u64 = 1 << 8;
    /// Software bit: a PROT_NONE leaf that keeps its frame (P clear).
    pub const PROTNONE: u64 = 1 << 9;
    /// Execute disable (needs EFER.NXE).
    pub const NX: u64 = 1 << 63;
    /// Physical address bits of an entry.
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
    /// Physical address bits of a 2 MiB leaf.
    pub const ADDR_MASK_2M: u64 = 0x000f_ffff_ffe0_0000;
    /// Software count of used entries in the table a non-leaf entry points
    /// to (bits 52..=61, ignored by the CPU in non-leaf entries).
    pub const COUNT_MASK: u64 = 0x3ff << COUNT_SHIFT;
    /// Shift of [`COUNT_MASK`].
    pub const COUNT_SHIFT: u32 = 52;
}

/// First address of the kernel (upper) half of the canonical space.
pub const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;
/// End of the user (lower) half of the canonical space.
pub const USER_HALF_END: u64 = 1 << 47;
/// Entries per table.
const ENTRIES: u64 = 512;

/// Size of a leaf mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// A 4 KiB page (PTE).
    Size4K,
    /// A 2 MiB page (PDE with PS).
    Size2M,
}

impl PageSize {
    /// Bytes covered.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => PAGE_SIZE,
            PageSize::Size2M => HUGE_PAGE_SIZE,
        }
    }

    /// 4 KiB frames covered.
    pub const fn frames(self) -> u64 {
        self.bytes() / PAGE_SIZE
    }

    const fn level(self) -> u32 {
        match self {
            PageSize::Size4K => 1,
            PageSize::Size2M => 2,
        }
    }
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No frame for a page-table page.
    OutOfMemory,
    /// Something is already mapped at this virtual address.
    AlreadyMapped(u64),
    /// The virtual or physical address is not aligned to the page size.
    Misaligned(u64),
    /// The virtual address is not canonical.
    NonCanonical(u64),
    /// A 2 MiB leaf covers this address where a 4 KiB page was asked for.
    HugeConflict(u64),
}

impl MapError {
    /// The errno a system call reports for this error.
    pub fn errno(self) -> Errno {
        match self {
            MapError::OutOfMemory => Errno::ENOMEM,
            MapError::AlreadyMapped(_) => Errno::EEXIST,
            _ => Errno::EINVAL,
        }
    }
}

/// A leaf found by [`PageTable::translate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Physical base of the leaf's frame.
    pub frame: u64,
    /// Leaf size.
    pub size: PageSize,
    /// Leaf flags (without the address and without PS); check
    /// [`pte::P`]: a PROT_NONE leaf is returned too.
    pub flags: u64,
}

impl Translation {
    /// Physical address of `va` inside this leaf.
    pub fn pa(&self, va: u64) -> u64 {
        self.frame + (va & (self.size.bytes() - 1))
    }
}

/// A leaf visited by [`PageTable::update_range`], or unmapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Virtual base of the leaf.
    pub va: u64,
    /// Physical base of its frame.
    pub frame: u64,
    /// Leaf size.
    pub size: PageSize,
    /// Leaf flags (without address and PS).
    pub flags: u64,
    /// How many leaves it stands for: an unmap hands over the 4 KiB
    /// leaves after it that map the frames after its own, one by one, as
    /// one ([`frame_run`]); 1 otherwise (and for a 2 MiB leaf).
    pub pages: u64,
}

/// What [`PageTable::update_range`] does with a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafAction {
    /// Leave it.
    Keep,
    /// Replace its flags (the address and PS are kept).
    SetFlags(u64),
    /// Clear it (the callback has dealt with the frame).
    Unmap,
}

/// A leaf entry located by a walk: where it is, what it holds, and the
/// entry above it (whose used count it is part of). [`PageTable::leaf_slot`]
/// and [`PageTable::lookup`] hand one out so that a fault walks the tables
/// once and then writes the entry in place ([`PageTable::fill`],
/// [`PageTable::rewrite`]).
#[derive(Clone, Copy, Debug)]
pub struct LeafRef {
    entry_pa: u64,
    entry: u64,
    level: u32,
    /// The entry pointing to the table that holds the leaf (0 at the root).
    parent_pa: u64,
}

/// A table of 4 KiB entries held for filling ([`PageTable::leaf_table`]);
/// it borrows the page table, so nothing else changes it meanwhile.
pub struct LeafTable<'a> {
    table: u64,
    parent_pa: u64,
    /// Base of the 2 MiB region the table maps.
    region: u64,
    /// Whether the walk made the table: its entries from `top` on are
    /// free, and are written without being read.
    fresh: bool,
    /// The end of the highest run filled so far (0: none).
    top: u64,
    _pt: core::marker::PhantomData<&'a mut PageTable>,
}

impl LeafTable<'_> {
    /// Map the free ones of the `n` entries from `va` (inside this table's
    /// region) to the consecutive frames from `pa`, with `flags`; returns
    /// the entries written ([`Self::fill_free_inside`]). Nothing is
    /// written if the run leaves the region or `pa` is not a page address.
    #[inline(always)]
    pub fn fill_free<M: PhysMem>(
        &mut self,
        mem: &mut M,
        va: u64,
        pa: u64,
        n: u64,
        flags: u64,
    ) -> u64 {
        // In the region of the checked walk (canonical, one table), a page,
        // and mapping a page address.
        let outside = (va ^ self.region) & !(HUGE_PAGE_SIZE - PAGE_SIZE);
        if outside | (pa & !pte::ADDR_MASK) != 0 || index(va, 1) + n > ENTRIES {
            return 0;
        }
        self.fill_free_inside(mem, va, pa, n, flags)
    }

    /// [`Self::fill_free`] of a run its caller keeps inside the table's
    /// region, from a page address `pa` (a fault-around's runs, cut to its
    /// window): the run is only cut to the table's end, so a wrong one
    /// writes no other memory. In a fresh table, a run above those filled
    /// before (the fault-around's runs come in address order) is written
    /// without reading an entry (about two instructions each); elsewhere
    /// the free entries before the first used one are found eight to a
    /// test and written unread, the rest checked one by one. In line: a
    /// fault-around fills a few runs, and a call's saved registers and
    /// moved arguments cost as much as the checks.
    #[inline(always)]
    pub fn fill_free_inside<M: PhysMem>(
        &mut self,
        mem: &mut M,
        va: u64,
        pa: u64,
        n: u64,
        flags: u64,
    ) -> u64 {
        let written = self.fill_free_uncounted(mem, va, pa, n, flags);
        self.add_to_count(mem, written);
        written
    }

    /// [`Self::fill_free_inside`] of a run its caller knows to be free
    /// whole: in an area that had no page mapped before this fault
    /// ([`super::vma::Vma::is_fresh`], which munmap and mmap over a
    /// reservation already rely on to skip the unmap). Every entry is
    /// written without being read (about two instructions each, where a
    /// read and a test cost as much again).
    #[inline(always)]
    pub fn fill_known_free<M: PhysMem>(
        &mut self,
        mem: &mut M,
        va: u64,
        pa: u64,
        n: u64,
        flags: u64,
    ) -> u64 {
        let (first, n) = self.run_at(va, pa, n);
        if n == 0 {
            return 0;
        }
        let (at, entry) = (self.table + first * 8, pa | flags);
        debug_assert!(mem.all_free(at, n, USED), "a fresh area's entries are free");
        mem.write_run(at, entry, PAGE_SIZE, n);
        self.top = self.top.max(first + n);
        if trace::on(mem, category::PAGE_TABLES) {
            trace_run(mem, at, (va, entry), PAGE_SIZE, n, 1);
        }
        self.add_to_count(mem, n);
        n
    }

    /// Where a run of up to `n` entries for `va` (a page of this table's
    /// region) mapping from `pa` (a page address) starts in the table, and
    /// how many of them it holds.
    #[inline(always)]
    fn run_at(&self, va: u64, pa: u64, n: u64) -> (u64, u64) {
        debug_assert!(va & !(HUGE_PAGE_SIZE - 1) == self.region && va & (PAGE_SIZE - 1) == 0);
        debug_assert!(pa & !pte::ADDR_MASK == 0);
        let first = index(va, 1);
        (first, n.min(ENTRIES - first))
    }

    /// [`Self::fill_free_inside`] without adding the entries written to
    /// the table's count: a caller filling several runs adds their sum
    /// once, with [`Self::add_to_count`], before it lets the table go.
    #[inline(always)]
    pub fn fill_free_uncounted<M: PhysMem>(
        &mut self,
        mem: &mut M,
        va: u64,
        pa: u64,
        n: u64,
        flags: u64,
    ) -> u64 {
        let (first, n) = self.run_at(va, pa, n);
        if n == 0 {
            return 0;
        }
        let (at, end, entry) = (self.table + first * 8, first + n, pa | flags);
        let written = if self.fresh && first >= self.top {
            mem.write_run(at, entry, PAGE_SIZE, n);
            n
        } else {
            fill_free_read(mem, at, entry, n)
        };
        self.top = self.top.max(end);
        if trace::on(mem, category::PAGE_TABLES) {
            trace_run(mem, at, (va, entry), PAGE_SIZE, n, 1);
        }
        written
    }

    /// [`Self::fill_free_uncounted`] of a run of entries starting with
    /// `entry` (a page address and flags) that its caller keeps inside the
    /// table's region and above every run this table has filled: the
    /// runs of a fault-around's window (which lies in one table) in
    /// address order, each in its own area. In a fresh table, or where the
    /// caller knows the run free whole (`free` says so, asked only in a
    /// used table: the run lies in an area with no page mapped,
    /// [`super::vma::Vma::is_fresh`]), it is written without reading an
    /// entry or comparing it with the runs before, and it is not cut to
    /// the table's end (the window's end is).
    #[inline(always)]
    pub fn fill_next_uncounted<M: PhysMem>(
        &mut self,
        mem: &mut M,
        va: u64,
        entry: u64,
        (n, free): (u64, impl FnOnce() -> bool),
    ) -> u64 {
        debug_assert!(va & !(HUGE_PAGE_SIZE - 1) == self.region && va & (PAGE_SIZE - 1) == 0);
        debug_assert!(index(va, 1) >= self.top);
        let first = index(va, 1);
        debug_assert!(first + n <= ENTRIES);
        let at = self.table + first * 8;
        let written = if self.fresh || free() {
            debug_assert!(mem.all_free(at, n, USED), "a fresh area's entries are free");
            mem.write_run(at, entry, PAGE_SIZE, n);
            n
        } else {
            fill_free_read(mem, at, entry, n)
        };
        self.top = first + n;
        if trace::on(mem, category::PAGE_TABLES) {
            trace_run(mem, at, (va, entry), PAGE_SIZE, n, 1);
        }
        written
    }

    /// Count `n` more used entries in the table (those
    /// [`Self::fill_free_uncounted`] wrote).
    #[inline(always)]
    pub fn add_to_count<M: PhysMem>(&self, mem: &mut M, n: u64) {
        add_leaf_count(mem, self.parent_pa, n);
    }
}

/// [`LeafTable::fill_free`]'s run of `n` entries from `at` (the first
/// `first`) where entries may be used: most runs are free whole
/// (fault-around windows do not overlap), so the free entries before the
/// first used one are found eight to a test and written unread, the rest
/// one by one. Returns the entries written.
#[inline(never)]
fn fill_free_read<M: PhysMem>(mem: &mut M, at: u64, first: u64, n: u64) -> u64 {
    let free = mem.free_words(at, n, USED);
    mem.write_run(at, first, PAGE_SIZE, free);
    let (at, first) = (at + free * 8, first + free * PAGE_SIZE);
    free + mem.write_run_free(at, first, PAGE_SIZE, n - free, USED)
}

impl LeafRef {
    /// Whether the entry is used (present, or a PROT_NONE leaf).
    pub fn is_used(&self) -> bool {
        used(self.entry)
    }

    /// What the used entry maps.
    /// The physical address of the entry.
    #[inline(always)]
    pub fn entry_pa(&self) -> u64 {
        self.entry_pa
    }

    pub fn translation(&self) -> Translation {
        Translation {
            frame: self.frame(),
            size: self.size(),
            flags: leaf_flags(self.entry),
        }
    }

    fn size(&self) -> PageSize {
        if self.level == 2 {
            PageSize::Size2M
        } else {
            PageSize::Size4K
        }
    }

    fn frame(&self) -> u64 {
        self.entry & self.mask()
    }

    fn mask(&self) -> u64 {
        if self.level == 2 {
            pte::ADDR_MASK_2M
        } else {
            pte::ADDR_MASK
        }
    }
}

/// Consecutive pages to map to consecutive frames (see
/// [`PageTable::map_range`]).
#[derive(Clone, Copy)]
struct Run {
    va: u64,
    pa: u64,
    /// Pages.
    n: u64,
    size: PageSize,
    flags: u64,
}

/// The bits of a used entry: present, or a PROT_NONE leaf.
const USED: u64 = pte::P | pte::PROTNONE;

/// Whether an entry is used: present, or a PROT_NONE leaf.
fn used(e: u64) -> bool {
    e & USED != 0
}

/// The first used entry of `table` from index `k` through `last`, and
/// its word; an index past `last` if there is none. A used entry costs
/// one read; a run of free ones is skipped eight words a test
/// ([`PhysMem::free_words`]): the tables fork copies and exit frees are
/// mostly free entries in the ranges read (a large bss or heap with a few
/// blocks touched).
#[inline(always)]
fn next_used<M: PhysMem>(mem: &M, table: u64, k: u64, last: u64) -> (u64, u64) {
    if k > last {
        return (k, 0);
    }
    let e = mem.read_u64(table + k * 8);
    if used(e) || k == last {
        return (k + u64::from(!used(e)), e);
    }
    let k = k + 1 + mem.free_words(table + (k + 1) * 8, last - k, USED);
    match k <= last {
        true => (k, mem.read_u64(table + k * 8)),
        false => (k, 0),
    }
}

/// How many used entries of `table` from `k` (through `last`) map the
/// frames that follow one by one from the frame of entry `k`, `e`: at
/// least 1. An anonymous fault's 64 KiB block is such a run, and so is
/// a region its faults filled in order.
#[inline(always)]
fn frame_run<M: PhysMem>(mem: &M, table: u64, k: u64, last: u64, e: u64) -> u64 {
    let next = (e & pte::ADDR_MASK) + PAGE_SIZE;
    let after = mem.run_words(
        table + (k + 1) * 8,
        last - k,
        (next, PAGE_SIZE),
        pte::ADDR_MASK,
        USED,
    );
    1 + after
}

/// Copy entries `k..k + n` of `table` (a page table mapping from
/// `region`) into the same entries of the child's table `to`, each
/// keeping here the flags `mine` leaves it and in the child those of
/// `theirs` (fork's copy-on-write takes RW away in both); an entry that
/// changes here is written back.
#[inline(always)]
fn copy_run<M: PhysMem>(
    mem: &mut M,
    (table, to): (u64, u64),
    region: u64,
    (k, n): (u64, u64),
    (mine, theirs): (u64, u64),
    traced: bool,
) {
    if !traced {
        // No record for each entry: the run in one pass, its ranges
        // checked once.
        let masks = (pte::ADDR_MASK | mine, pte::ADDR_MASK | theirs);
        mem.copy_words_masked(table + k * 8, to + k * 8, n, masks);
        return;
    }
    for i in k..k + n {
        let e = mem.read_u64(table + i * 8);
        let here = e & (pte::ADDR_MASK | mine);
        let there = e & (pte::ADDR_MASK | theirs);
        let va = region + i * PAGE_SIZE;
        if here != e {
            mem.write_u64(table + i * 8, here);
            if traced {
                trace_entry(mem, kind::PTE_SET, 1, va, here);
            }
        }
        mem.write_u64(to + i * 8, there);
        if traced {
            trace_entry(mem, kind::PTE_SET, 1, va, there);
        }
    }
}

/// The spans of entry indices of a table at `level` mapping from `base`
/// that `ranges` (sorted by start, the first ending above `base`, as a
/// table's parent passes them) cover, in order, with whether the leaves
/// of each are released; an entry two ranges share is in the first one's
/// span only (a later span may then be empty: first past last).
fn spans(
    ranges: &[(u64, u64, bool)],
    level: u32,
    base: u64,
) -> impl Iterator<Item = (u64, u64, bool)> + '_ {
    let top = base + span(level) * ENTRIES;
    let mut next = 0;
    ranges
        .iter()
        .take_while(move |&&(s, _, _)| s < top)
        .map(move |&(s, e, release)| {
            let first = index(s.max(base), level).max(next);
            let last = index(e.min(top) - 1, level);
            next = next.max(last + 1);
            (first, last, release)
        })
}

/// Whether every entry of `table` (at `level`, mapping from `base`)
/// under none of `ranges` (as [`spans`] takes them) is free: each run of
/// them read with one [`PhysMem::all_free`].
fn uncovered_free<M: PhysMem>(
    mem: &M,
    (table, level, base): (u64, u32, u64),
    ranges: &[(u64, u64, bool)],
) -> bool {
    let mut from = 0;
    for (first, last, _) in spans(ranges, level, base) {
        if first > from && !mem.all_free(table + from * 8, first - from, USED) {
            return false;
        }
        from = from.max(last + 1);
    }
    from >= ENTRIES || mem.all_free(table + from * 8, ENTRIES - from, USED)
}

fn is_leaf(e: u64, level: u32) -> bool {
    level == 1 || e & pte::PS != 0
}

fn index(va: u64, level: u32) -> u64 {
    (va >> (12 + 9 * (level - 1))) & (ENTRIES - 1)
}

/// Bytes one entry at `level` covers.
fn span(level: u32) -> u64 {
    1 << (12 + 9 * (level - 1))
}

fn count(e: u64) -> u64 {
    (e & pte::COUNT_MASK) >> pte::COUNT_SHIFT
}

fn with_count(e: u64, n: u64) -> u64 {
    (e & !pte::COUNT_MASK) | (n << pte::COUNT_SHIFT)
}

fn leaf_flags(e: u64) -> u64 {
    e & !pte::ADDR_MASK & !pte::PS
}

/// Whether `va` is canonical with 48-bit virtual addresses.
#[inline]
pub fn is_canonical(va: u64) -> bool {
    !(USER_HALF_END..KERNEL_HALF).contains(&va)
}

/// Flags of a non-leaf entry: user tables are user-accessible and writable
/// so that the leaf alone decides permissions.
fn table_flags(va: u64) -> u64 {
    if va < USER_HALF_END {
        pte::P | pte::RW | pte::US | pte::A
    } else {
        pte::P | pte::RW | pte::A
    }
}

/// Most kernel-half PML4 entries a [`KernelHalf`] lists one by one (the
/// kernel uses two: the direct map and the image); beyond that, all 256
/// are copied.
const KERNEL_TOP_MAX: usize = 6;

/// The kernel half of the kernel's page table as new address spaces share
/// it: its PML4 and which of the entries 256..512 it uses, so that
/// [`PageTable::copy_kernel_half`] copies those few entries, not 256 (every
/// read and write counts in emulated ring 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelHalf {
    root: u64,
    /// PML4 indices used, in `index[..len]`; `len > KERNEL_TOP_MAX`: too
    /// many to list, copy all.
    index: [u16; KERNEL_TOP_MAX],
    len: usize,
}

impl KernelHalf {
    /// No kernel half yet (for statics).
    pub const fn empty() -> Self {
        Self {
            root: 0,
            index: [0; KERNEL_TOP_MAX],
            len: 0,
        }
    }

    /// The kernel PML4 at `root`, whose used kernel-half entries are all in
    /// `used` (PML4 indices 256..512); an index outside that range makes
    /// every entry count as used.
    pub const fn new(root: u64, used: &[u64]) -> Self {
        let mut k = Self {
            root,
            ..Self::empty()
        };
        let mut n = 0;
        while n < used.len() {
            let i = used[n];
            k.note(if i >= ENTRIES / 2 && i < ENTRIES {
                i
            } else {
                u64::MAX
            });
            n += 1;
        }
        k
    }

    /// The kernel's PML4 (the CR3 value of its own tables).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Record that PML4 entry `i` is used (`u64::MAX`: give up listing).
    const fn note(&mut self, i: u64) {
        if self.len >= KERNEL_TOP_MAX || i >= ENTRIES {
            self.len = KERNEL_TOP_MAX + 1;
            return;
        }
        self.index[self.len] = i as u16;
        self.len += 1;
    }

    /// Whether the used entries are listed (not too many).
    fn listed(&self) -> Option<&[u16]> {
        self.index.get(..self.len)
    }
}

/// The page table of 4 KiB leaves the last walk for a user address
/// reached, so that the next walk in the same 2 MiB region (most faults
/// and user-memory accesses follow one another there) reads its entry
/// directly instead of walking four levels. Freeing any table forgets it.
#[derive(Clone, Copy, Debug)]
struct LastTable {
    /// `va >> 21` of the region (`u64::MAX`: none).
    region: u64,
    /// Physical address of the table.
    table: u64,
    /// The directory entry pointing to it (which keeps its used count).
    parent_pa: u64,
}

impl LastTable {
    const NONE: LastTable = LastTable {
        region: u64::MAX,
        table: 0,
        parent_pa: 0,
    };
}

/// One address space's page tables: a PML4 and everything below it.
#[derive(Debug)]
pub struct PageTable {
    root: u64,
    tables: u64,
    /// The kernel-half PML4 entries this table created (kernel tables only).
    kernel: KernelHalf,
    /// The last three tables that walks reached, mapping walks (faults,
    /// maps) and lookups (system calls' user memory) alike, newest first:
    /// a program's faults and calls mostly go to three regions, its image
    /// and heap, its stack and the vDSO, and a call often reads one region
    /// (a path in the program's data) and writes another (a struct on its
    /// stack).
    last: [Cell<LastTable>; 3],
}

impl PageTable {
    /// A new, empty PML4 (one zeroed frame).
    pub fn new<M: PhysMem>(mem: &mut M, frames: &mut FrameAllocator) -> Result<Self, MapError> {
        let mut pt = Self::empty();
        pt.renew(mem, frames)?;
        Ok(pt)
    }

    /// Make this a new, empty PML4 in place, as [`Self::new`] makes one
    /// (no copy of the whole state; what this table held is forgotten,
    /// not freed). Nothing changes if no frame is left.
    pub fn renew<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
    ) -> Result<(), MapError> {
        let root = frames.alloc_table(mem).ok_or(MapError::OutOfMemory)?;
        trace_table(mem, kind::PT_ALLOC, 4, 0, root);
        self.root = root;
        self.tables = 1;
        self.kernel = KernelHalf {
            root,
            ..KernelHalf::empty()
        };
        self.last = [const { Cell::new(LastTable::NONE) }; 3];
        Ok(())
    }

    /// A page table with no PML4 yet (for statics).
    pub const fn empty() -> Self {
        Self {
            root: 0,
            tables: 0,
            kernel: KernelHalf::empty(),
            last: [const { Cell::new(LastTable::NONE) }; 3],
        }
    }

    /// Physical address of the PML4 (the CR3 value).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Table pages (the PML4 included) this page table holds now.
    pub fn table_pages(&self) -> u64 {
        self.tables
    }

    /// This table's kernel half as address spaces share it: the PML4 and
    /// the kernel-half entries this table created (map the kernel first).
    pub fn kernel_half(&self) -> KernelHalf {
        self.kernel
    }

    /// Copy the used PML4 entries of the kernel half from `kernel` (the
    /// others stay zero). The tables below them are shared and never freed
    /// through `self`.
    pub fn copy_kernel_half<M: PhysMem>(&mut self, mem: &mut M, kernel: &KernelHalf) {
        let mut copy = |i: u64| {
            let e = mem.read_u64(kernel.root + i * 8);
            mem.write_u64(self.root + i * 8, e);
        };
        match kernel.listed() {
            Some(used) => used.iter().for_each(|&i| copy(u64::from(i))),
            None => (ENTRIES / 2..ENTRIES).for_each(copy),
        }
    }

    /// Map `va` to `pa` with a leaf of `size` and `flags` (PS is added for
    /// 2 MiB leaves), creating intermediate tables on demand.
    #[allow(clippy::too_many_arguments)]
    pub fn map<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        va: u64,
        pa: u64,
        size: PageSize,
        flags: u64,
    ) -> Result<(), MapError> {
        check_map_args(va, pa, size)?;
        // Each size's walk and entry with its level constant (a 2 MiB
        // page's is written out for its two levels).
        let (entry_pa, parent_pa) = match size {
            PageSize::Size4K => {
                let (table, parent_pa, _) = self.walk_create(mem, frames, va, 1)?;
                (table + index(va, 1) * 8, parent_pa)
            }
            PageSize::Size2M => {
                let (table, parent_pa, _) = self.walk_create(mem, frames, va, 2)?;
                (table + index(va, 2) * 8, parent_pa)
            }
        };
        let old = mem.read_u64(entry_pa);
        if used(old) && is_leaf(old, size.level()) {
            return Err(MapError::AlreadyMapped(va));
        }
        if used(old) {
            self.drop_empty_table(mem, frames, entry_pa, old, va, size.level() - 1)?;
        }
        let ps = if size == PageSize::Size2M { pte::PS } else { 0 };
        mem.write_u64(entry_pa, pa | flags | ps);
        trace_entry(mem, kind::PTE_SET, size.level(), va, pa | flags | ps);
        add_count(mem, parent_pa, 1);
        Ok(())
    }

    /// Map up to `n` consecutive pages of `size` from `va` to the
    /// consecutive frames from `pa`, with one walk to the table holding
    /// `va`'s entry: stops at that table's end, and skips entries already
    /// used (fault-around, the direct map). Returns the pages mapped.
    #[allow(clippy::too_many_arguments)]
    pub fn map_pages<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        va: u64,
        pa: u64,
        n: u64,
        size: PageSize,
        flags: u64,
    ) -> Result<u64, MapError> {
        let run = Run {
            va,
            pa,
            n,
            size,
            flags,
        };
        Ok(self.map_run(mem, frames, run, false)?.1)
    }

    /// Map the free ones of the `n` 4 KiB entries from `va` (all in one
    /// table) to consecutive frames from `pa`, in order: the k-th free
    /// entry gets frame `pa + k * 4 KiB`. One walk; used entries are
    /// skipped and keep their frames. Returns the entries written, so the
    /// frames past them are the caller's to give back (an anonymous block
    /// fault where part of its block is mapped already). `va` is a page
    /// of the user half and `pa` a frame (a fault's, from its area and the
    /// allocator: checked in debug builds only, as [`Self::leaf_slot`]).
    pub fn fill_free_packed<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        va: u64,
        pa: u64,
        n: u64,
        flags: u64,
    ) -> Result<u64, MapError> {
        debug_assert!(check_map_args(va, pa, PageSize::Size4K).is_ok());
        debug_assert!(index(va, 1) + n <= ENTRIES);
        let (table, parent_pa, fresh) = self.walk_create(mem, frames, va, 1)?;
        let at = table + index(va, 1) * 8;
        if fresh && n > 0 {
            // A table the walk just created is all zero: every entry is
            // free, and the run is written without reading any.
            mem.write_run(at, pa | flags, PAGE_SIZE, n);
            if trace::on(mem, category::PAGE_TABLES) {
                trace_run(mem, at, (va, pa | flags), PAGE_SIZE, n, 1);
            }
            add_leaf_count(mem, parent_pa, n);
            return Ok(n);
        }
        let written = fill_packed(mem, at, (va, pa | flags), n);
        add_leaf_count(mem, parent_pa, written);
        Ok(written)
    }

    /// Whether nothing is mapped in user `va`'s 512 GiB region: its PML4
    /// entry is free (a fresh address space's first mapping there).
    #[inline]
    pub fn region_free<M: PhysMem>(&self, mem: &M, va: u64) -> bool {
        va < USER_HALF_END && !used(mem.read_u64(self.root + index(va, 4) * 8))
    }

    /// [`Self::fill_free_packed`] of the `n` 4 KiB entries from user `va`
    /// (all in one table) where [`Self::region_free`] holds, the three
    /// tables below the PML4 entry being the consecutive never-used (so
    /// zero) frames from `pdpt`: each entry written once, with its count,
    /// the leaves as one run (an exec's stack, whose walk would find
    /// every level missing). With `second` (which [`SecondRun::fits_with`]
    /// `va`), its leaves too, in a fourth table, the frame after those
    /// three, under the same directory: the exec's vDSO code, which a
    /// walk of its own would find the table missing for. Inlined into
    /// the exec's populate, its one caller.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn map_in_free_region<M: PhysMem>(
        &mut self,
        mem: &mut M,
        va: u64,
        pa: u64,
        n: u64,
        flags: u64,
        pdpt: u64,
        second: Option<SecondRun>,
    ) {
        debug_assert!(
            self.region_free(mem, va) && check_map_args(va, pa, PageSize::Size4K).is_ok()
        );
        debug_assert!(n > 0 && index(va, 1) + n <= ENTRIES);
        debug_assert!(second.is_none_or(|s| s.fits_with(va)));
        let (pd, table) = (pdpt + PAGE_SIZE, pdpt + 2 * PAGE_SIZE);
        let tables = 3 + u64::from(second.is_some());
        self.tables += tables;
        let link = pte::P | pte::RW | pte::US | pte::A;
        let one = 1 << pte::COUNT_SHIFT;
        let pd_entry = pd + index(va, 2) * 8;
        mem.write_u64(self.root + index(va, 4) * 8, pdpt | link | one);
        mem.write_u64(
            pdpt + index(va, 3) * 8,
            pd | link | (tables - 2) << pte::COUNT_SHIFT,
        );
        mem.write_u64(pd_entry, table | link | n << pte::COUNT_SHIFT);
        let at = table + index(va, 1) * 8;
        mem.write_run(at, pa | flags, PAGE_SIZE, n);
        if let Some(s) = second {
            let t = pdpt + 3 * PAGE_SIZE;
            mem.write_u64(pd + index(s.va, 2) * 8, t | link | s.n << pte::COUNT_SHIFT);
            mem.write_run(t + index(s.va, 1) * 8, s.pa | s.flags, PAGE_SIZE, s.n);
        }
        if trace::on(mem, category::PAGE_TABLES) {
            for (level, t) in [(3, pdpt), (2, pd), (1, table)] {
                trace_table(mem, kind::PT_ALLOC, level, va, t);
            }
            trace_run(mem, at, (va, pa | flags), PAGE_SIZE, n, 1);
            if let Some(s) = second {
                let t = pdpt + 3 * PAGE_SIZE;
                trace_table(mem, kind::PT_ALLOC, 1, s.va, t);
                let at = t + index(s.va, 1) * 8;
                trace_run(mem, at, (s.va, s.pa | s.flags), PAGE_SIZE, s.n, 1);
            }
        }
        self.remember_table_in_place(va, table, pd_entry);
        if let Some(s) = second {
            // The newest: the next mappings go next to the vDSO (an
            // interpreter's, below it); the stack's the one before.
            self.last[1].set(self.last[0].get());
            self.last[0].set(LastTable {
                region: s.va >> 21,
                table: pdpt + 3 * PAGE_SIZE,
                parent_pa: pd + index(s.va, 2) * 8,
            });
        }
    }

    /// Whether the `n` 4 KiB entries from `va` (all in one table) are all
    /// free (no table there: yes; a 2 MiB leaf over them: no). No table
    /// is created.
    pub fn entries_free<M: PhysMem>(&self, mem: &M, va: u64, n: u64) -> bool {
        let table = match self.last_table(va) {
            Some((table, _)) => table,
            None => match self.find_leaf_table(mem, va) {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok((table, _))) => table,
            },
        };
        mem.all_free(table + index(va, 1) * 8, n, USED)
    }

    /// The table of 4 KiB entries for user `va`'s 2 MiB region, found or
    /// made with one walk, to fill several runs of its entries with
    /// different flags ([`LeafTable::fill_free`]): fault-around over
    /// neighbouring areas of one file. `va` is a page of the user half (a
    /// fault's).
    #[inline(always)]
    pub fn leaf_table<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        va: u64,
    ) -> Result<LeafTable<'_>, MapError> {
        debug_assert!(check_map_args(va, 0, PageSize::Size4K).is_ok());
        let (table, parent_pa, fresh) = self.walk_create(mem, frames, va, 1)?;
        Ok(LeafTable {
            table,
            parent_pa,
            region: va & !(HUGE_PAGE_SIZE - 1),
            fresh,
            top: 0,
            _pt: core::marker::PhantomData,
        })
    }

    /// Map the `n` 4 KiB entries from `va` (all in one table) to the
    /// consecutive frames from `pa` if every one of them is free; `false`,
    /// writing no entry, if one is used. One walk, in line in the data
    /// block's copy (both of its callers), which holds its arguments in
    /// registers. `va` and `pa` as [`Self::fill_free_packed`] has them.
    #[inline(always)]
    pub fn map_pages_if_free<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        va: u64,
        pa: u64,
        n: u64,
        flags: u64,
    ) -> Result<bool, MapError> {
        debug_assert!(check_map_args(va, pa, PageSize::Size4K).is_ok());
        debug_assert!(index(va, 1) + n <= ENTRIES);
        let (table, parent_pa, fresh) = self.walk_create(mem, frames, va, 1)?;
        let at = table + index(va, 1) * 8;
        if !fresh && !mem.all_free(at, n, USED) {
            return Ok(false);
        }
        mem.write_run(at, pa | flags, PAGE_SIZE, n);
        if trace::on(mem, category::PAGE_TABLES) {
            trace_run(mem, at, (va, pa | flags), PAGE_SIZE, n, 1);
        }
        add_leaf_count(mem, parent_pa, n);
        Ok(true)
    }

    /// Map `len` bytes (rounded up to `size`) of physical memory at `pa` to
    /// `va` with leaves of `size` (the kernel's direct map and image): one
    /// walk per table filled, then a tight loop over its entries. Fails
    /// with [`MapError::AlreadyMapped`] at the first used entry.
    #[allow(clippy::too_many_arguments)]
    pub fn map_range<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        va: u64,
        pa: u64,
        len: u64,
        size: PageSize,
        flags: u64,
    ) -> Result<(), MapError> {
        let step = size.bytes();
        let pages = len.div_ceil(step);
        let mut done = 0;
        while done < pages {
            let off = done * step;
            let run = Run {
                va: va + off,
                pa: pa + off,
                n: pages - done,
                size,
                flags,
            };
            done += self.map_run(mem, frames, run, true)?.0;
        }
        Ok(())
    }

    /// Fill the entries of `run` that lie in the table holding `run.va`'s
    /// entry, with one walk. Used entries are skipped, or (`strict`) fail
    /// with [`MapError::AlreadyMapped`]. Returns (entries covered, entries
    /// written).
    fn map_run<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        run: Run,
        strict: bool,
    ) -> Result<(u64, u64), MapError> {
        check_map_args(run.va, run.pa, run.size)?;
        let level = run.size.level();
        let first = index(run.va, level);
        let covered = run.n.min(ENTRIES - first);
        if covered == 0 {
            return Ok((0, 0));
        }
        let step = run.size.bytes();
        let last_pa = run.pa + (covered - 1) * step;
        if last_pa & !pte::ADDR_MASK != 0 {
            return Err(MapError::Misaligned(run.va));
        }
        let (table, parent_pa, fresh) = self.walk_create(mem, frames, run.va, level)?;
        let bits = run.flags | if level == 2 { pte::PS } else { 0 };
        let mut written = 0;
        let mut conflict = None;
        let at = table + first * 8;
        if fresh {
            // A table the walk just created is all zero: no entry to check.
            mem.write_run(at, run.pa | bits, step, covered);
            written = covered;
        } else if strict {
            for k in 0..covered {
                if used(mem.read_u64(at + k * 8)) {
                    conflict = Some(run.va + k * step);
                    break;
                }
                mem.write_u64(at + k * 8, (run.pa + k * step) | bits);
                written += 1;
            }
        } else {
            written = mem.write_run_free(at, run.pa | bits, step, covered, USED);
        }
        if trace::on(mem, category::PAGE_TABLES) {
            let n = if strict { written } else { covered };
            trace_run(mem, at, (run.va, run.pa | bits), step, n, level);
        }
        if written > 0 {
            add_count(mem, parent_pa, written);
        }
        match conflict {
            Some(va) => Err(MapError::AlreadyMapped(va)),
            None => Ok((covered, written)),
        }
    }

    /// The used leaf entry that maps `va`, if any (one walk, no table
    /// created): to read it and then [`Self::rewrite`] it in place.
    pub fn lookup<M: PhysMem>(&self, mem: &M, va: u64) -> Option<LeafRef> {
        self.find_leaf(mem, va)
    }

    /// The 4 KiB entry for page-aligned user `va`, creating the tables
    /// above it: one walk for a fault, which then [`Self::fill`]s the entry
    /// if it is free. [`MapError::HugeConflict`] if a 2 MiB leaf (present
    /// or PROT_NONE) covers `va`.
    #[inline(always)]
    pub fn leaf_slot<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        va: u64,
    ) -> Result<LeafRef, MapError> {
        debug_assert!(check_map_args(va, 0, PageSize::Size4K).is_ok());
        let (table, parent_pa) = match self.last_table(va) {
            Some(t) => t,
            None => {
                let (table, parent_pa, _) = self.walk_to_leaf_table(mem, frames, va)?;
                (table, parent_pa)
            }
        };
        let entry_pa = table + index(va, 1) * 8;
        Ok(LeafRef {
            entry_pa,
            entry: mem.read_u64(entry_pa),
            level: 1,
            parent_pa,
        })
    }

    /// The table of 4 KiB leaves for `va` and the entry pointing to it,
    /// creating the missing tables ([`Self::new_tables`]), and whether it
    /// was just made (all its entries zero); remembered as the last table.
    /// Out of line: the walks that no last table saves (a fault in a new
    /// 2 MiB region) are few, and their callers keep their registers.
    #[inline(never)]
    fn walk_to_leaf_table<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        va: u64,
    ) -> Result<(u64, u64, bool), MapError> {
        let (mut table, mut parent_pa) = (self.root, 0);
        for level in [4, 3, 2] {
            let entry_pa = table + index(va, level) * 8;
            let e = mem.read_u64(entry_pa);
            // A PROT_NONE 2 MiB leaf is used though not present: it is a
            // huge conflict, not room for a new table.
            if !used(e) {
                // Every table below is missing too.
                let (table, parent_pa) =
                    self.new_tables(mem, frames, entry_pa, parent_pa, va, level, 1)?;
                self.remember_table(va, table, parent_pa);
                return Ok((table, parent_pa, true));
            }
            if e & pte::PS != 0 {
                return Err(MapError::HugeConflict(va));
            }
            parent_pa = entry_pa;
            table = e & pte::ADDR_MASK;
        }
        self.remember_table(va, table, parent_pa);
        Ok((table, parent_pa, false))
    }

    /// The address and parent entry of a last table that covers `va`
    /// (the newest first), if one does.
    #[inline]
    fn last_table(&self, va: u64) -> Option<(u64, u64)> {
        let region = va >> 21;
        let l = self.last[0].get();
        if l.region == region {
            return Some((l.table, l.parent_pa));
        }
        let l = self.last[1].get();
        if l.region == region {
            return Some((l.table, l.parent_pa));
        }
        let l = self.last[2].get();
        (l.region == region).then_some((l.table, l.parent_pa))
    }

    /// Remember `table` (pointed to by `parent_pa`) as the table of 4 KiB
    /// leaves for user `va`'s region, the newest of the last tables (the
    /// oldest is forgotten).
    fn remember_table(&self, va: u64, table: u64, parent_pa: u64) {
        if va < USER_HALF_END {
            self.last[2].set(self.last[1].get());
            self.last[1].set(self.last[0].get());
            self.last[0].set(LastTable {
                region: va >> 21,
                table,
                parent_pa,
            });
        }
    }

    /// [`Self::remember_table`] in the newest's place, the others not
    /// moved: for a table made where there was none, whose region no last
    /// table is of. The newest is forgotten (a walk finds it again), but
    /// an exec's new table has none before it.
    fn remember_table_in_place(&self, va: u64, table: u64, parent_pa: u64) {
        if va < USER_HALF_END {
            self.last[0].set(LastTable {
                region: va >> 21,
                table,
                parent_pa,
            });
        }
    }

    /// Forget the last tables (a table is being freed).
    fn forget_table(&self) {
        for l in &self.last {
            l.set(LastTable::NONE);
        }
    }

    /// Map `va` to the 4 KiB frame `pa` with `flags` in the free `slot`
    /// that [`Self::leaf_slot`] found for it (traced as PTE_SET).
    #[inline(always)]
    pub fn fill<M: PhysMem>(&mut self, mem: &mut M, slot: &LeafRef, va: u64, pa: u64, flags: u64) {
        debug_assert!(!slot.is_used() && slot.level == 1);
        debug_assert!(check_map_args(va, pa, PageSize::Size4K).is_ok());
        mem.write_u64(slot.entry_pa, pa | flags);
        trace_entry(mem, kind::PTE_SET, 1, va, pa | flags);
        inc_table_count(mem, slot.parent_pa);
    }

    /// Point the used leaf `slot` (from [`Self::lookup`]) at frame `pa`
    /// with `flags`, in one write (a copy-on-write fault: the new private
    /// frame replaces the shared one; or new rights for the same frame).
    /// Its size is kept; traced as PTE_SET. The caller deals with the old
    /// frame.
    pub fn rewrite<M: PhysMem>(
        &mut self,
        mem: &mut M,
        slot: &LeafRef,
        va: u64,
        pa: u64,
        flags: u64,
    ) {
        debug_assert!(slot.is_used());
        let e = pa | flags | (slot.entry & pte::PS);
        mem.write_u64(slot.entry_pa, e);
        trace_entry(mem, kind::PTE_SET, slot.level, va, e);
    }

    /// The entry of the 4 KiB leaf slot for user `va` in a last table that
    /// covers it (read without a walk; it may be unused), or `None` when no
    /// last table does: the quick look of system-call buffers, which
    /// [`Self::translate`] backs.
    #[inline(always)]
    pub fn cached_leaf<M: PhysMem>(&self, mem: &M, va: u64) -> Option<u64> {
        let (table, _) = self.last_table(va)?;
        Some(mem.read_u64(table + index(va, 1) * 8))
    }

    /// The entry of the 4 KiB leaf slot for user `va` found by a walk (its
    /// table then remembered as a lookup's; the slot may be unused), or
    /// `None` where no table of 4 KiB leaves covers `va` (a 2 MiB leaf
    /// included) or `va` is not in the user half: [`Self::cached_leaf`]'s
    /// answer where no last table covers `va` (a system-call buffer on the
    /// stack after faults elsewhere), without a translation's bookkeeping.
    #[inline]
    pub fn walked_leaf<M: PhysMem>(&self, mem: &M, va: u64) -> Option<u64> {
        if va >= USER_HALF_END {
            return None;
        }
        let (table, _) = self.find_leaf_table(mem, va)?.ok()?;
        Some(mem.read_u64(table + index(va, 1) * 8))
    }

    /// The leaf that maps `va`, if any.
    pub fn translate<M: PhysMem>(&self, mem: &M, va: u64) -> Option<Translation> {
        let l = self.find_leaf(mem, va)?;
        Some(Translation {
            frame: l.frame(),
            size: l.size(),
            flags: leaf_flags(l.entry),
        })
    }

    /// The leaf that maps `va` and the physical address of its entry (so
    /// that a caller can read the following entries of the same table).
    pub fn translate_entry<M: PhysMem>(&self, mem: &M, va: u64) -> Option<(Translation, u64)> {
        let l = self.find_leaf(mem, va)?;
        let t = Translation {
            frame: l.frame(),
            size: l.size(),
            flags: leaf_flags(l.entry),
        };
        Some((t, l.entry_pa))
    }

    /// Whether no leaf or table is present in the 2 MiB region holding `va`.
    pub fn is_2m_region_empty<M: PhysMem>(&self, mem: &M, va: u64) -> bool {
        let mut table = self.root;
        for level in [4, 3] {
            let e = mem.read_u64(table + index(va, level) * 8);
            if e & pte::P == 0 {
                return true;
            }
            if e & pte::PS != 0 {
                return false;
            }
            table = e & pte::ADDR_MASK;
        }
        let pde = mem.read_u64(table + index(va, 2) * 8);
        !used(pde) || (pde & pte::PS == 0 && count(pde) == 0)
    }

    /// Replace the flags of the leaf mapping `va` (address and PS are
    /// kept); returns the old flags.
    pub fn set_flags<M: PhysMem>(&mut self, mem: &mut M, va: u64, flags: u64) -> Option<u64> {
        let l = self.find_leaf(mem, va)?;
        let ps = l.entry & pte::PS;
        mem.write_u64(l.entry_pa, l.frame() | flags | ps);
        trace_entry(mem, kind::PTE_SET, l.level, va, l.frame() | flags | ps);
        Some(leaf_flags(l.entry))
    }

    /// Clear the leaf mapping `va`; returns its frame, size and flags. Table
    /// pages are kept (see [`Self::unmap_range`] for freeing them).
    pub fn unmap<M: PhysMem>(&mut self, mem: &mut M, va: u64) -> Option<(u64, PageSize, u64)> {
        let l = self.find_leaf(mem, va)?;
        mem.write_u64(l.entry_pa, 0);
        trace_entry(mem, kind::PTE_CLEAR, l.level, va, l.entry);
        add_count(mem, l.parent_pa, u64::MAX);
        Some((l.frame(), l.size(), leaf_flags(l.entry)))
    }

    /// Turn the 2 MiB leaf covering `va` (if any) into a page table of 512
    /// 4 KiB leaves with the same frames and flags.
    pub fn split_huge<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        va: u64,
    ) -> Result<(), MapError> {
        let Some(l) = self.find_leaf(mem, va) else {
            return Ok(());
        };
        if l.level != 2 {
            return Ok(());
        }
        let pt = frames.alloc_uninit(mem).ok_or(MapError::OutOfMemory)?;
        let flags = leaf_flags(l.entry);
        for i in 0..ENTRIES {
            mem.write_u64(pt + i * 8, (l.frame() + i * PAGE_SIZE) | flags);
        }
        mem.write_u64(l.entry_pa, with_count(pt | table_flags(va), ENTRIES));
        self.tables += 1;
        trace_table(mem, kind::PT_ALLOC, 1, va, pt);
        Ok(())
    }

    /// Copy the 4 KiB leaves in `[start, end)` (page aligned) into `child`
    /// (fork), one page table at a time: one lookup of this table and one
    /// walk of the child's per 2 MiB region, then a pass over the entries.
    /// `f` is given each run of leaves that map consecutive frames
    /// ([`Leaf::pages`]) and returns the masks of the flags each of its
    /// entries keeps here and in the child; or `None` to be given the
    /// run's leaves one by one (a single leaf must have its masks); or an
    /// error that stops the copy (the leaves copied so far stay). A 2 MiB
    /// leaf in the range is split first.
    pub fn copy_leaves<M, F>(
        &mut self,
        child: &mut PageTable,
        mem: &mut M,
        frames: &mut FrameAllocator,
        (start, end): (u64, u64),
        mut f: F,
    ) -> Result<(), MapError>
    where
        M: PhysMem,
        F: FnMut(&mut M, &mut FrameAllocator, Leaf) -> Result<Option<(u64, u64)>, MapError>,
    {
        let traced = trace::on(mem, category::PAGE_TABLES);
        let mut va = start;
        while va < end {
            let region = va & !(HUGE_PAGE_SIZE - 1);
            let stop = (region + HUGE_PAGE_SIZE).min(end);
            let table = match self.find_leaf_table(mem, va) {
                None => {
                    va = stop;
                    continue;
                }
                Some(Err(_)) => {
                    self.split_huge(mem, frames, va)?;
                    continue;
                }
                Some(Ok((table, _))) => table,
            };
            let (to, to_parent, _) = child.walk_create(mem, frames, va, 1)?;
            let mut copied = 0;
            let mut failed = None;
            let (mut k, last) = (index(va, 1), index(stop - 1, 1));
            loop {
                let e;
                (k, e) = next_used(mem, table, k, last);
                if k > last {
                    break;
                }
                let pages = frame_run(mem, table, k, last, e);
                let leaf = Leaf {
                    va: region + k * PAGE_SIZE,
                    frame: e & pte::ADDR_MASK,
                    size: PageSize::Size4K,
                    flags: leaf_flags(e),
                    pages,
                };
                let whole = match f(mem, frames, leaf) {
                    Ok(masks) => masks,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                };
                if let Some(masks) = whole {
                    copy_run(mem, (table, to), region, (k, pages), masks, traced);
                    copied += pages;
                } else {
                    // One by one, each with its own masks (a single leaf
                    // without them is copied as it is).
                    for i in k..k + pages {
                        let e = mem.read_u64(table + i * 8);
                        let one = Leaf {
                            va: region + i * PAGE_SIZE,
                            frame: e & pte::ADDR_MASK,
                            size: PageSize::Size4K,
                            flags: leaf_flags(e),
                            pages: 1,
                        };
                        match f(mem, frames, one) {
                            Ok(masks) => {
                                let masks = masks.unwrap_or((!0, !0));
                                copy_run(mem, (table, to), region, (i, 1), masks, traced);
                                copied += 1;
                            }
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    if failed.is_some() {
                        break;
                    }
                }
                k += pages;
            }
            if copied > 0 {
                add_count(mem, to_parent, copied);
            }
            if let Some(e) = failed {
                return Err(e);
            }
            va = stop;
        }
        Ok(())
    }

    /// Fork's copy of page-cache leaves into a leaf table it copies
    /// anyway: the parent's entries under each of `spans` (`[start, end)`
    /// pairs, sorted, each
    /// inside one area whose frames are all the page cache's) that lies
    /// in the 2 MiB region at `region` are given to `child` as they are
    /// (no mask, nothing counted: page-cache frames are never released
    /// through a mapping). Every other used entry of that table must
    /// already be copied: the child's table then takes the parent's count
    /// of used entries. Nothing is done where the parent has no table of
    /// 4 KiB leaves there. A long run of entries may be copied as late as
    /// the caller's [`PhysMem::flush_copies`] (fork's, at its end).
    pub fn copy_cache_leaves<M: PhysMem>(
        &mut self,
        child: &mut PageTable,
        mem: &mut M,
        frames: &mut FrameAllocator,
        region: u64,
        spans: impl Iterator<Item = (u64, u64)>,
    ) -> Result<(), MapError> {
        let Some(Ok((table, parent_pa))) = self.find_leaf_table(mem, region) else {
            return Ok(());
        };
        let (to, to_parent, _) = child.walk_create(mem, frames, region, 1)?;
        let traced = trace::on(mem, category::PAGE_TABLES);
        let stop = region + HUGE_PAGE_SIZE;
        let spans = spans.skip_while(|r| r.1 <= region);
        for (s, e) in spans.take_while(|r| r.0 < stop) {
            let (first, last) = (index(s.max(region), 1), index(e.min(stop) - 1, 1));
            if !traced {
                mem.copy_words_deferred(table + first * 8, to + first * 8, last + 1 - first);
                continue;
            }
            for k in first..=last {
                let e = mem.read_u64(table + k * 8);
                if used(e) {
                    mem.write_u64(to + k * 8, e);
                    trace_entry(mem, kind::PTE_SET, 1, region + k * PAGE_SIZE, e);
                }
            }
        }
        let n = count(mem.read_u64(parent_pa));
        let e = mem.read_u64(to_parent);
        mem.write_u64(to_parent, with_count(e, n));
        Ok(())
    }

    /// Visit every used leaf in `[start, end)` (page aligned) and apply the
    /// callback's [`LeafAction`]. 2 MiB leaves that straddle `start` or
    /// `end` are split first, so the callback only sees leaves wholly
    /// inside the range. Tables that become empty are freed.
    pub fn update_range<M: PhysMem, F: FnMut(&mut M, &mut FrameAllocator, Leaf) -> LeafAction>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        start: u64,
        end: u64,
        mut f: F,
    ) -> Result<(), MapError> {
        if start >= end {
            return Ok(());
        }
        self.split_straddling(mem, frames, start)?;
        self.split_straddling(mem, frames, end)?;
        self.walk(mem, frames, self.root, 4, start, end, u64::MAX, &mut f);
        Ok(())
    }

    /// Give each used leaf in `[start, end)` (page aligned) the flags
    /// `f` returns for it (as [`Self::update_range`] with
    /// [`LeafAction::SetFlags`]). A range inside one page table, the usual
    /// mprotect, is rewritten in one pass over that table, without the
    /// recursive walk or the checks for straddling 2 MiB leaves (a page
    /// table maps none).
    pub fn set_flags_range<M: PhysMem, F: FnMut(&mut M, &mut FrameAllocator, Leaf) -> u64>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        start: u64,
        end: u64,
        mut f: F,
    ) -> Result<(), MapError> {
        let table = match start < end && (start ^ (end - 1)) < HUGE_PAGE_SIZE {
            true => self.page_table_of(mem, start),
            false => None,
        };
        let Some(table) = table else {
            let set =
                |m: &mut M, fr: &mut FrameAllocator, l: Leaf| LeafAction::SetFlags(f(m, fr, l));
            return self.update_range(mem, frames, start, end, set);
        };
        // Each used entry rewritten in place, as `visit_leaf` would (the
        // frame and the PAT bit kept), without its call per leaf; whether
        // entries are traced is asked once for the range.
        let traced = trace::on(mem, category::PAGE_TABLES);
        for i in index(start, 1)..index(end - 1, 1) + 1 {
            let entry_pa = table + i * 8;
            let e = mem.read_u64(entry_pa);
            if used(e) {
                let leaf = Leaf {
                    va: (start & !(HUGE_PAGE_SIZE - 1)) + i * PAGE_SIZE,
                    frame: e & pte::ADDR_MASK,
                    size: PageSize::Size4K,
                    flags: leaf_flags(e),
                    pages: 1,
                };
                let new = leaf.frame | f(mem, frames, leaf) | (e & pte::PS);
                mem.write_u64(entry_pa, new);
                if traced {
                    trace_entry(mem, kind::PTE_SET, 1, leaf.va, new);
                }
            }
        }
        Ok(())
    }

    /// [`Self::set_flags_range`] giving every used leaf the same `flags`
    /// (an mprotect without write rights): a range inside one page table,
    /// its entries not traced, is rewritten in one pass over the table's
    /// words in the range, reached with one range check, not one per
    /// entry read and written.
    pub fn set_same_flags_range<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        start: u64,
        end: u64,
        flags: u64,
    ) -> Result<(), MapError> {
        let one_table = start < end && (start ^ (end - 1)) < HUGE_PAGE_SIZE;
        let table = match one_table && !trace::on(mem, category::PAGE_TABLES) {
            true => self.page_table_of(mem, start),
            false => None,
        };
        let Some(table) = table else {
            return self.set_flags_range(mem, frames, start, end, move |_, _, _| flags);
        };
        let (first, last) = (index(start, 1), index(end - 1, 1));
        let words = mem.bytes_mut(table + first * 8, (last - first + 1) * 8);
        for w in words.chunks_exact_mut(8) {
            let Ok(bytes) = <[u8; 8]>::try_from(&*w) else {
                continue;
            };
            let e = u64::from_le_bytes(bytes);
            if used(e) {
                let new = (e & pte::ADDR_MASK) | flags | (e & pte::PS);
                w.copy_from_slice(&new.to_le_bytes());
            }
        }
        Ok(())
    }

    /// The page table (level 1) that maps `va`, if there is one (not a
    /// 2 MiB leaf, nor nothing): the last table, or [`Self::find_leaf_table`]'s.
    fn page_table_of<M: PhysMem>(&self, mem: &M, va: u64) -> Option<u64> {
        match self.last_table(va) {
            Some((table, _)) => Some(table),
            None => self.find_leaf_table(mem, va)?.ok().map(|(table, _)| table),
        }
    }

    /// Unmap every leaf in `[start, end)` (page aligned), calling
    /// `on_leaf` for each (to release its frame), and free the tables that
    /// become empty (or are met empty). The cost follows the tables
    /// present: one descent from the root per page table or 2 MiB leaf in
    /// the range, a free entry at any level passing everything it covers
    /// (with the free entries after it, in one scan), and one pass over
    /// each page table's entries in the range. A 2 MiB leaf straddling
    /// `start` or `end` is split first.
    pub fn unmap_range<M: PhysMem, F: FnMut(&mut M, &mut FrameAllocator, Leaf)>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        start: u64,
        end: u64,
        mut on_leaf: F,
    ) -> Result<(), MapError> {
        let mut va = start;
        while va < end {
            va = self.unmap_step(mem, frames, va, end, &mut on_leaf)?;
        }
        Ok(())
    }

    /// One step of [`Self::unmap_range`] at `va` (below `end`): descend
    /// towards `va`'s page table; pass a free entry and the free ones
    /// after it, or free an empty table, or unmap a 2 MiB leaf, or clear
    /// the page table's used entries up to its region's end or `end`.
    /// Returns where the next step starts.
    fn unmap_step<M: PhysMem, F: FnMut(&mut M, &mut FrameAllocator, Leaf)>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        va: u64,
        end: u64,
        on_leaf: &mut F,
    ) -> Result<u64, MapError> {
        // path[l]: the entry at level l on the way to `va`.
        let mut path = [0u64; 5];
        let mut table = self.root;
        for level in [4, 3, 2] {
            let entry_pa = table + index(va, level) * 8;
            let e = mem.read_u64(entry_pa);
            let span = span(level);
            let next = (va & !(span - 1)) + span;
            path[level as usize] = entry_pa;
            if !used(e) {
                let table_end = (va & !(span * ENTRIES - 1)) + span * ENTRIES;
                let after = index(end.min(table_end) - 1, level) - index(va, level);
                let free = mem.free_words(entry_pa + 8, after, USED);
                return Ok(next + free * span);
            }
            if e & pte::PS != 0 {
                if level != 2 {
                    // No leaf above 2 MiB is made: none to unmap.
                    return Ok(next);
                }
                if va & (span - 1) != 0 || next > end {
                    self.split_huge(mem, frames, va)?;
                    return Ok(va);
                }
                on_leaf(
                    mem,
                    frames,
                    Leaf {
                        va,
                        frame: e & pte::ADDR_MASK_2M,
                        size: PageSize::Size2M,
                        flags: leaf_flags(e),
                        pages: 1,
                    },
                );
                mem.write_u64(entry_pa, 0);
                trace_entry(mem, kind::PTE_CLEAR, 2, va, e);
                self.one_fewer(mem, frames, &path, 2, va);
                return Ok(next);
            }
            if count(e) == 0 {
                self.free_table(mem, frames, &path, level - 1, va);
                return Ok(next);
            }
            table = e & pte::ADDR_MASK;
        }
        let stop = end.min((va | (HUGE_PAGE_SIZE - 1)) + 1);
        self.unmap_leaves(mem, frames, table, &path, va, stop, on_leaf);
        Ok(stop)
    }

    /// Clear the used entries of the page `table` (under `path`) in
    /// `[va, stop)`, inside one 2 MiB region; free the table if that
    /// empties it.
    #[allow(clippy::too_many_arguments)]
    fn unmap_leaves<M: PhysMem, F: FnMut(&mut M, &mut FrameAllocator, Leaf)>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        table: u64,
        path: &[u64; 5],
        va: u64,
        stop: u64,
        on_leaf: &mut F,
    ) {
        let region = va & !(HUGE_PAGE_SIZE - 1);
        let n = count(mem.read_u64(path[2]));
        let (mut i, last) = (index(va, 1), index(stop - 1, 1));
        let traced = trace::on(mem, category::PAGE_TABLES);
        let mut cleared = 0;
        while i <= last && cleared < n {
            let entry_pa = table + i * 8;
            let e = mem.read_u64(entry_pa);
            if !used(e) {
                i += 1;
                i += mem.free_words(table + i * 8, last + 1 - i, USED);
                continue;
            }
            // The entries after it that map the next frames go with it:
            // one release and one clearing for the run.
            let pages = frame_run(mem, table, i, last, e);
            let leaf_va = region + i * PAGE_SIZE;
            let leaf = Leaf {
                va: leaf_va,
                frame: e & pte::ADDR_MASK,
                size: PageSize::Size4K,
                flags: leaf_flags(e),
                pages,
            };
            if traced {
                trace_run_cleared(mem, entry_pa, leaf_va, pages);
            }
            on_leaf(mem, frames, leaf);
            mem.clear_words(entry_pa, pages);
            i += pages;
            cleared += pages;
        }
        if cleared == n {
            self.free_table(mem, frames, path, 1, va);
        } else if cleared > 0 {
            let e = mem.read_u64(path[2]);
            mem.write_u64(path[2], with_count(e, n - cleared));
        }
    }

    /// Free the table at `level` that `path[level + 1]` points to, and
    /// count the entry gone in the table above (freeing that if emptied).
    fn free_table<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        path: &[u64; 5],
        level: u32,
        va: u64,
    ) {
        let entry_pa = path[level as usize + 1];
        let table = mem.read_u64(entry_pa) & pte::ADDR_MASK;
        frames.free(mem, table);
        self.tables -= 1;
        self.forget_table();
        mem.write_u64(entry_pa, 0);
        trace_table(mem, kind::PT_FREE, level, va, table);
        self.one_fewer(mem, frames, path, level + 1, va);
    }

    /// One used entry fewer in the table at `level` on `path`: lower the
    /// count above it, or free it if that was its last (the root keeps no
    /// count and stays).
    fn one_fewer<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        path: &[u64; 5],
        level: u32,
        va: u64,
    ) {
        if level == 4 {
            return;
        }
        let entry_pa = path[level as usize + 1];
        let e = mem.read_u64(entry_pa);
        match count(e) {
            0 | 1 => self.free_table(mem, frames, path, level, va),
            n => mem.write_u64(entry_pa, with_count(e, n - 1)),
        }
    }

    /// Unmap the whole user half (PML4 entries 0..256) and free all its
    /// table pages; the PML4 itself stays.
    ///
    /// Only the entries under `ranges` (each `[start, end)` in the user
    /// half, in ascending order and apart, e.g. the areas of the address
    /// space, which hold every leaf) are read, so the cost follows what is
    /// mapped, not the 256 PML4 entries and the 512 entries of each table;
    /// the used-entry counts stop each table's scan early. Each table is
    /// freed whole, its entries left as they are (a table is zeroed when
    /// it is handed out again); each leaf goes to `on_leaf` once, except
    /// the 4 KiB leaves of a range whose flag says none of its frames
    /// needs releasing (page-cache pages), which are only counted unless
    /// page-table records are traced. A table holding used entries outside
    /// the ranges (a leaf no area covers) is read whole.
    pub fn free_user_half<M, F, R>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        ranges: R,
        on_leaf: F,
    ) where
        M: PhysMem,
        F: FnMut(&mut M, &mut FrameAllocator, Leaf),
        R: IntoIterator<Item = (u64, u64, bool)>,
    {
        // One allocation for the ranges, of as many as the caller says it
        // gives at most (an address space's areas: a collect would grow
        // the vector three or four times).
        let ranges = ranges.into_iter();
        let mut list: Vec<(u64, u64, bool)> = Vec::new();
        let (least, most) = ranges.size_hint();
        let _ = list.try_reserve_exact(most.unwrap_or(least));
        list.extend(
            ranges
                .map(|(s, e, r)| (s, e.min(USER_HALF_END), r))
                .filter(|&(s, e, _)| s < e),
        );
        let sorted = list.windows(2).all(|w| w[0].1 <= w[1].0);
        if !sorted {
            list.clear();
            list.push((0, USER_HALF_END, true));
        }
        self.free_user_half_of_areas(mem, frames, list, on_leaf);
    }

    /// [`Self::free_user_half`] under the areas of an address space, as
    /// they are: in the user half, not empty, in ascending order and apart
    /// (no pass to clip, drop or check them). In line in the teardown,
    /// whose two copies (frames shared by a fork or not) each make it a
    /// call otherwise.
    #[inline(always)]
    pub fn free_user_half_of_areas<M, F>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        ranges: Vec<(u64, u64, bool)>,
        mut on_leaf: F,
    ) where
        M: PhysMem,
        F: FnMut(&mut M, &mut FrameAllocator, Leaf),
    {
        debug_assert!(ranges.iter().all(|&(s, e, _)| s < e && e <= USER_HALF_END));
        debug_assert!(ranges.windows(2).all(|w| w[0].1 <= w[1].0));
        let traced = trace::on(mem, category::PAGE_TABLES);
        let whole = [(0, USER_HALF_END, true)];
        let mut free = Freeing {
            mem,
            frames,
            traced,
            on_leaf: &mut on_leaf,
        };
        // The PML4's entries have no count: every range's are read, each
        // once (`next`: the first not read yet; a range starting in the
        // entry the one before ended in starts after it).
        let mut next = 0;
        for (r, &(s, e, _)) in ranges.iter().enumerate() {
            let last = index(e - 1, 4);
            let mut i = index(s, 4).max(next);
            while i <= last {
                let entry_pa = self.root + i * 8;
                let ent = free.mem.read_u64(entry_pa);
                if used(ent) {
                    let t = (ent & pte::ADDR_MASK, i * span(4), count(ent));
                    self.free_upper::<3, M, F>(&mut free, t, &ranges[r..]);
                    free.mem.write_u64(entry_pa, 0);
                }
                i += 1;
            }
            next = next.max(last + 1);
        }
        self.forget_table();
        if self.tables > 1 {
            // Tables under no range: read the whole user half.
            for i in 0..ENTRIES / 2 {
                let entry_pa = self.root + i * 8;
                let ent = free.mem.read_u64(entry_pa);
                if used(ent) {
                    let t = (ent & pte::ADDR_MASK, i * span(4), count(ent));
                    self.free_upper::<3, M, F>(&mut free, t, &whole);
                    free.mem.write_u64(entry_pa, 0);
                }
            }
        }
    }

    /// [`Self::free_user_half`] below one PML4 or PDPT entry: free the
    /// tables below each used entry of `table` (entries at `LEVEL` 3 or
    /// 2, mapping from `base`, `used_entries` of them in use) and hand
    /// their leaves (and a 2 MiB leaf of its own) to `on_leaf`, then free
    /// it. The entries under `ranges` are read first; if some used ones
    /// are not among them, the rest of the table. Apart from
    /// [`Self::free_leaf_table`]: these tables hold one or two used
    /// entries, and a short loop finds them with a short set-up; the
    /// level a constant, so that each level's copy has its shifts and
    /// its child's kind known.
    fn free_upper<const LEVEL: u32, M, F>(
        &mut self,
        free: &mut Freeing<'_, M, F>,
        (table, base, used_entries): (u64, u64, u64),
        ranges: &[(u64, u64, bool)],
    ) where
        M: PhysMem,
        F: FnMut(&mut M, &mut FrameAllocator, Leaf),
    {
        let level = LEVEL;
        let top = base + span(level) * ENTRIES;
        // `next`: the first entry not read yet (an entry two ranges share
        // is read under the first).
        let (mut seen, mut next) = (0, 0);
        // A table with one used entry (most of them): that entry is most
        // often the first one the first range covers, taken without the
        // loop over the ranges (which then ends at once); else, out of
        // line, the first one the second range covers (a stack's PD where
        // the vDSO's table is not made).
        let first = ranges.first().filter(|r| r.0 < top && r.1 > base);
        if let (1, Some(&(s, _, _))) = (used_entries, first) {
            let k = index(s.max(base), level);
            let ent = free.mem.read_u64(table + k * 8);
            if used(ent) && ent & pte::PS == 0 {
                self.free_below::<LEVEL, M, F>(free, ent, base + k * span(level), ranges);
                seen = 1;
            } else {
                seen = self.free_second::<LEVEL, M, F>(free, (table, base), ranges);
            }
        }
        for (r, &(s, e, _)) in ranges.iter().enumerate() {
            if s >= top || seen >= used_entries {
                // Every used entry is found, or the ranges left lie past
                // the table.
                break;
            }
            if e <= base {
                continue;
            }
            let last = index(e.min(top) - 1, level);
            let mut k = index(s.max(base), level).max(next);
            next = next.max(last + 1);
            while seen < used_entries {
                let ent;
                (k, ent) = next_used(free.mem, table, k, last);
                if k > last {
                    break;
                }
                // The ranges from this one on: those before it end at or
                // below the entry's base (so the tables of an address
                // space are read with one pass over its ranges, not one
                // a table).
                let (below, va) = (&ranges[r..], base + k * span(level));
                if ent & pte::PS != 0 {
                    self.free_used(free, (table, level, base), k, ent, below);
                } else {
                    self.free_below::<LEVEL, M, F>(free, ent, va, below);
                }
                seen += 1;
                k += 1;
            }
        }
        if seen < used_entries {
            self.free_uncovered(free, (table, level, base), ranges);
        }
        free.frames.free(free.mem, table);
        self.tables -= 1;
        trace_table(free.mem, kind::PT_FREE, level, base, table);
    }

    /// [`Self::free_upper`]'s guess at its one used entry under the second
    /// range, when the first range had it not at its start: the first
    /// entry the second range covers, if it is used and the first range
    /// ends at or below its base; its table freed with everything below
    /// it under the ranges from that range on, and 1; else 0, nothing
    /// done.
    #[cold]
    #[inline(never)]
    fn free_second<const LEVEL: u32, M, F>(
        &mut self,
        free: &mut Freeing<'_, M, F>,
        (table, base): (u64, u64),
        ranges: &[(u64, u64, bool)],
    ) -> u64
    where
        M: PhysMem,
        F: FnMut(&mut M, &mut FrameAllocator, Leaf),
    {
        let top = base + span(LEVEL) * ENTRIES;
        let Some(&(s, _, _)) = ranges.get(1).filter(|r| r.0 < top) else {
            return 0;
        };
        let k = index(s, LEVEL);
        let va = base + k * span(LEVEL);
        if ranges[0].1 > va {
            // The first range reaches into the entry too: the loop's.
            return 0;
        }
        let ent = free.mem.read_u64(table + k * 8);
        if !used(ent) || ent & pte::PS != 0 {
            return 0;
        }
        self.free_below::<LEVEL, M, F>(free, ent, va, &ranges[1..]);
        1
    }

    /// The table that entry `ent` of a table at `LEVEL` (mapping from `va`)
    /// points to, freed with everything below it under `ranges`.
    #[inline(always)]
    fn free_below<const LEVEL: u32, M, F>(
        &mut self,
        free: &mut Freeing<'_, M, F>,
        ent: u64,
        va: u64,
        ranges: &[(u64, u64, bool)],
    ) where
        M: PhysMem,
        F: FnMut(&mut M, &mut FrameAllocator, Leaf),
    {
        let t = (ent & pte::ADDR_MASK, va, count(ent));
        match LEVEL {
            2 => self.free_leaf_table(free, t, ranges),
            _ => self.free_upper::<2, M, F>(free, t, ranges),
        }
    }

    /// [`Self::free_upper`] for a table of 4 KiB leaves: hand each leaf of
    /// `table` (mapping from `base`, `used_entries` of its entries in use)
    /// to `on_leaf`, then free it. The entries under `ranges` are read
    /// first; if some used ones are not among them, the rest of the table.
    #[inline(never)]
    fn free_leaf_table<M, F>(
        &mut self,
        free: &mut Freeing<'_, M, F>,
        (table, base, used_entries): (u64, u64, u64),
        ranges: &[(u64, u64, bool)],
    ) where
        M: PhysMem,
        F: FnMut(&mut M, &mut FrameAllocator, Leaf),
    {
        debug_assert!(ranges.first().is_none_or(|r| r.1 > base));
        let level = 1;
        let mut seen = 0;
        // Entries under ranges whose leaves are only counted (the page
        // cache's), not counted yet, and entries under any range.
        let (mut uncounted, mut covered) = (0, 0);
        for (first, last, release) in spans(ranges, level, base) {
            if seen >= used_entries {
                // Every used entry is found: the ranges after it have
                // nothing left (most tables hold a few, under the first).
                break;
            }
            if first > last {
                continue;
            }
            covered += last + 1 - first;
            if !release && !free.traced {
                // Leaves nothing is done for: counted below, or not at
                // all if reading the entries under no range costs less.
                uncounted += last + 1 - first;
            } else if !free.traced {
                // 4 KiB leaves to release, handed over as they are read.
                let mut k = first;
                while seen < used_entries {
                    let e;
                    (k, e) = next_used(free.mem, table, k, last);
                    if k > last {
                        break;
                    }
                    // With the leaves after it that map the next frames.
                    let pages = frame_run(free.mem, table, k, last, e);
                    let leaf = Leaf {
                        va: base + k * PAGE_SIZE,
                        frame: e & pte::ADDR_MASK,
                        size: PageSize::Size4K,
                        flags: leaf_flags(e),
                        pages,
                    };
                    (free.on_leaf)(free.mem, free.frames, leaf);
                    seen += pages;
                    k += pages;
                }
            } else {
                let mut k = first;
                while seen < used_entries {
                    let e;
                    (k, e) = next_used(free.mem, table, k, last);
                    if k > last {
                        break;
                    }
                    self.free_used(free, (table, level, base), k, e, ranges);
                    seen += 1;
                    k += 1;
                }
            }
        }
        // With every used entry found, nothing lies under no range.
        if seen < used_entries {
            if uncounted > 0 && ENTRIES - covered < uncounted {
                // Fewer entries under no range than leaves to count (a
                // table of program text, its areas end to end): those are
                // read instead, one test a run of them when all are free
                // (every leaf lies in an area), else entry by entry.
                if !uncovered_free(free.mem, (table, level, base), ranges) {
                    self.free_uncovered(free, (table, level, base), ranges);
                }
            } else {
                if uncounted > 0 {
                    for (first, last, release) in spans(ranges, level, base) {
                        if !release && first <= last {
                            let n = last + 1 - first;
                            seen += free.mem.used_words(table + first * 8, n, USED);
                        }
                    }
                }
                if seen < used_entries {
                    self.free_uncovered(free, (table, level, base), ranges);
                }
            }
        }
        free.frames.free(free.mem, table);
        self.tables -= 1;
        trace_table(free.mem, kind::PT_FREE, level, base, table);
    }

    /// Free the used entries of `table` (at `level`, mapping from
    /// `base`) under none of `ranges` (as [`spans`] takes them), each as under a range
    /// that releases everything: what no area covers is found all the
    /// same (a leak otherwise). The free runs are skipped eight entries to
    /// a test. Out of line: rare, and its loops would cost the table
    /// walks' set-up.
    #[inline(never)]
    fn free_uncovered<M, F>(
        &mut self,
        free: &mut Freeing<'_, M, F>,
        (table, level, base): (u64, u32, u64),
        ranges: &[(u64, u64, bool)],
    ) where
        M: PhysMem,
        F: FnMut(&mut M, &mut FrameAllocator, Leaf),
    {
        let mut from = 0;
        for (first, last, _) in spans(ranges, level, base) {
            self.free_run(free, (table, level, base), (from, first));
            from = from.max(last + 1);
        }
        self.free_run(free, (table, level, base), (from, ENTRIES));
    }

    /// Free the used entries `[lo, hi)` of `table` (at `level`, mapping
    /// from `base`) as under a range that releases everything.
    fn free_run<M, F>(
        &mut self,
        free: &mut Freeing<'_, M, F>,
        (table, level, base): (u64, u32, u64),
        (lo, hi): (u64, u64),
    ) where
        M: PhysMem,
        F: FnMut(&mut M, &mut FrameAllocator, Leaf),
    {
        let all = [(0, USER_HALF_END, true)];
        let mut k = lo;
        while k < hi {
            let e;
            (k, e) = next_used(free.mem, table, k, hi - 1);
            if k >= hi {
                break;
            }
            self.free_used(free, (table, level, base), k, e, &all);
            k += 1;
        }
    }

    /// Used entry `k` of `table` (at `level`, mapping from `base`), `e`:
    /// its leaf to `on_leaf`, or the table it points to freed. Out of
    /// line: the walks' own loops take the common entries (tables, runs
    /// of 4 KiB leaves); this one the rest.
    #[inline(never)]
    fn free_used<M, F>(
        &mut self,
        free: &mut Freeing<'_, M, F>,
        (table, level, base): (u64, u32, u64),
        k: u64,
        e: u64,
        ranges: &[(u64, u64, bool)],
    ) where
        M: PhysMem,
        F: FnMut(&mut M, &mut FrameAllocator, Leaf),
    {
        debug_assert!(used(e) && e == free.mem.read_u64(table + k * 8));
        let va = base + k * span(level);
        if !is_leaf(e, level) {
            // A PDPT's entry points to a PD (the PML4's are walked by
            // the caller).
            let t = (e & pte::ADDR_MASK, va, count(e));
            match level {
                2 => self.free_leaf_table(free, t, ranges),
                _ => self.free_upper::<2, M, F>(free, t, ranges),
            }
            return;
        }
        let (size, mask) = match level {
            1 => (PageSize::Size4K, pte::ADDR_MASK),
            2 => (PageSize::Size2M, pte::ADDR_MASK_2M),
            // No larger leaf is ever made.
            _ => return,
        };
        if free.traced {
            trace_entry(free.mem, kind::PTE_CLEAR, level, va, e);
        }
        let leaf = Leaf {
            va,
            frame: e & mask,
            size,
            flags: leaf_flags(e),
            pages: 1,
        };
        (free.on_leaf)(free.mem, free.frames, leaf);
    }

    /// Free the PML4 (after [`Self::free_user_half`]).
    pub fn free_root<M: PhysMem>(&mut self, mem: &mut M, frames: &mut FrameAllocator) {
        if self.tables > 0 {
            frames.free(mem, self.root);
            self.tables -= 1;
            trace_table(mem, kind::PT_FREE, 4, 0, self.root);
        }
        self.forget_table();
        self.root = 0;
    }

    /// The used leaf mapping `va`: a walk written out level by level (the
    /// page-table lookup of every fault, system-call buffer and futex).
    #[inline]
    fn find_leaf<M: PhysMem>(&self, mem: &M, va: u64) -> Option<LeafRef> {
        let (table, parent_pa) = match self.last_table(va) {
            Some(t) => t,
            None => match self.find_leaf_table(mem, va)? {
                Ok(t) => t,
                Err(huge) => return Some(huge),
            },
        };
        let entry_pa = table + index(va, 1) * 8;
        let entry = mem.read_u64(entry_pa);
        used(entry).then_some(LeafRef {
            entry_pa,
            entry,
            level: 1,
            parent_pa,
        })
    }

    /// The table of 4 KiB leaves for `va` and the entry pointing to it
    /// (remembered as the last table), or the 2 MiB leaf mapping `va`;
    /// `None` if neither is there.
    #[allow(clippy::type_complexity)]
    #[inline(never)]
    fn find_leaf_table<M: PhysMem>(&self, mem: &M, va: u64) -> Option<Result<(u64, u64), LeafRef>> {
        if !is_canonical(va) || self.root == 0 {
            return None;
        }
        let (mut table, mut parent_pa) = (self.root, 0);
        for level in [4, 3, 2] {
            let entry_pa = table + index(va, level) * 8;
            let entry = mem.read_u64(entry_pa);
            if !used(entry) {
                return None;
            }
            if entry & pte::PS != 0 {
                // Only 2 MiB leaves are made (PS above them is not a leaf
                // this kernel knows).
                return (level == 2).then_some(Err(LeafRef {
                    entry_pa,
                    entry,
                    level,
                    parent_pa,
                }));
            }
            parent_pa = entry_pa;
            table = entry & pte::ADDR_MASK;
        }
        self.remember_table(va, table, parent_pa);
        Some(Ok((table, parent_pa)))
    }

    /// Walk down to the table at `level` for `va`, creating tables; returns
    /// it, the entry pointing to it, and whether it was just created (so
    /// all its entries are zero). A table of 4 KiB leaves is the last table
    /// if that covers `va` (no walk: a remembered table is not fresh), else
    /// [`Self::walk_to_leaf_table`]'s, which remembers it.
    #[inline(always)]
    fn walk_create<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        va: u64,
        level: u32,
    ) -> Result<(u64, u64, bool), MapError> {
        if level == 1 {
            if let Some((table, parent_pa)) = self.last_table(va) {
                return Ok((table, parent_pa, false));
            }
            return self.walk_to_leaf_table(mem, frames, va);
        }
        let (mut table, mut parent_pa) = (self.root, 0);
        for l in (level + 1..=4).rev() {
            let entry_pa = table + index(va, l) * 8;
            let e = mem.read_u64(entry_pa);
            if !used(e) {
                let (table, parent_pa) =
                    self.new_tables_cold(mem, frames, entry_pa, parent_pa, va, l, level)?;
                return Ok((table, parent_pa, true));
            }
            if e & pte::PS != 0 {
                return Err(MapError::HugeConflict(va));
            }
            parent_pa = entry_pa;
            table = e & pte::ADDR_MASK;
        }
        Ok((table, parent_pa, false))
    }

    /// The `level - last` zeroed tables for `va` from the free entry at
    /// `entry_pa` (in the table at `level`) down to the table at `last`;
    /// returns the last one and the entry pointing to it. They (a fresh
    /// stack's or mapping's first fault needs three) are made in one step
    /// from a run of never-used frames if one is free, else one by one.
    /// In line in the walks, which pass their constants (`last`) on.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn new_tables<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        entry_pa: u64,
        parent_pa: u64,
        va: u64,
        level: u32,
        last: u32,
    ) -> Result<(u64, u64), MapError> {
        match frames.alloc_fresh_run(u64::from(level - last)) {
            Some(run) => Ok(self.link_chain(mem, run, entry_pa, parent_pa, va, level, last)),
            None => self.new_tables_one_by_one(mem, frames, entry_pa, parent_pa, va, level, last),
        }
    }

    /// [`Self::new_tables`] out of line, for the walks to a 2 MiB leaf's
    /// table (which seldom make tables), so that they keep their registers.
    #[allow(clippy::too_many_arguments)]
    #[cold]
    #[inline(never)]
    fn new_tables_cold<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        entry_pa: u64,
        parent_pa: u64,
        va: u64,
        level: u32,
        last: u32,
    ) -> Result<(u64, u64), MapError> {
        self.new_tables(mem, frames, entry_pa, parent_pa, va, level, last)
    }

    /// [`Self::new_tables`] when no run of never-used frames is left: a
    /// zeroed frame for each table.
    #[allow(clippy::too_many_arguments)]
    #[cold]
    #[inline(never)]
    fn new_tables_one_by_one<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        entry_pa: u64,
        parent_pa: u64,
        va: u64,
        level: u32,
        last: u32,
    ) -> Result<(u64, u64), MapError> {
        let (mut at, mut parent_pa, mut l) = (entry_pa, parent_pa, level);
        loop {
            let table = self.new_table(mem, frames, at, parent_pa, va, l)? & pte::ADDR_MASK;
            l -= 1;
            if l == last {
                return Ok((table, at));
            }
            parent_pa = at;
            at = table + index(va, l) * 8;
        }
    }

    /// [`Self::new_tables`] in the consecutive zero frames from `run`:
    /// each table linked into the one above with its count (one used
    /// entry: the next table's; none in the last) written with it, one
    /// write a table, the trace records after.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn link_chain<M: PhysMem>(
        &mut self,
        mem: &mut M,
        run: u64,
        entry_pa: u64,
        parent_pa: u64,
        va: u64,
        level: u32,
        last: u32,
    ) -> (u64, u64) {
        let n = level - last;
        self.tables += u64::from(n);
        if level == 4 && va >= KERNEL_HALF {
            self.kernel.note(index(va, 4));
        }
        if parent_pa != 0 {
            inc_table_count(mem, parent_pa);
        }
        let flags = table_flags(va);
        let (mut at, mut table) = (entry_pa, run);
        for l in (last + 1..level).rev() {
            mem.write_u64(at, table | flags | 1 << pte::COUNT_SHIFT);
            at = table + index(va, l) * 8;
            table += PAGE_SIZE;
        }
        mem.write_u64(at, table | flags);
        if trace::on(mem, category::PAGE_TABLES) {
            trace_chain(mem, va, level, run, n);
        }
        (table, at)
    }

    /// A zeroed table for the free entry at `entry_pa` (at `level`, for
    /// `va`), linked in; returns the new entry.
    #[inline(never)]
    fn new_table<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        entry_pa: u64,
        parent_pa: u64,
        va: u64,
        level: u32,
    ) -> Result<u64, MapError> {
        let new = frames.alloc_table(mem).ok_or(MapError::OutOfMemory)?;
        self.tables += 1;
        trace_table(mem, kind::PT_ALLOC, level - 1, va, new);
        let e = new | table_flags(va);
        mem.write_u64(entry_pa, e);
        add_count(mem, parent_pa, 1);
        if level == 4 && va >= KERNEL_HALF {
            self.kernel.note(index(va, 4));
        }
        Ok(e)
    }

    /// Free the empty table an entry points to so a leaf can take its place.
    fn drop_empty_table<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        entry_pa: u64,
        e: u64,
        va: u64,
        level: u32,
    ) -> Result<(), MapError> {
        if count(e) != 0 {
            return Err(MapError::AlreadyMapped(va));
        }
        frames.free(mem, e & pte::ADDR_MASK);
        self.tables -= 1;
        self.forget_table();
        mem.write_u64(entry_pa, 0);
        trace_table(mem, kind::PT_FREE, level, va, e & pte::ADDR_MASK);
        Ok(())
    }

    fn split_straddling<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        va: u64,
    ) -> Result<(), MapError> {
        if va & (HUGE_PAGE_SIZE - 1) == 0 || !is_canonical(va) {
            return Ok(());
        }
        self.split_huge(mem, frames, va)
    }

    /// Apply `f` to the used leaves of `table` (at `level`) within
    /// `[start, end)`; returns how many entries of `table` were cleared.
    /// `used_hint` bounds the used entries of `table` (stop early).
    #[allow(clippy::too_many_arguments)]
    fn walk<M: PhysMem, F: FnMut(&mut M, &mut FrameAllocator, Leaf) -> LeafAction>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        table: u64,
        level: u32,
        start: u64,
        end: u64,
        used_hint: u64,
        f: &mut F,
    ) -> u64 {
        let span = span(level);
        let base = start & !(span * ENTRIES - 1);
        let (mut cleared, mut seen) = (0, 0);
        let (mut i, last) = (index(start, level), index(end - 1, level));
        while i <= last && seen < used_hint {
            let entry_pa = table + i * 8;
            let e = mem.read_u64(entry_pa);
            i += 1;
            if !used(e) {
                // Most of a range being unmapped is free (a few pages were
                // faulted in): pass its free entries in one scan.
                i += mem.free_words(table + i * 8, last + 1 - i, USED);
                continue;
            }
            seen += 1;
            let eva = base + (i - 1) * span;
            let gone = if is_leaf(e, level) {
                self.visit_leaf(mem, frames, entry_pa, e, level, eva, f)
            } else {
                let (s, t) = (start.max(eva), end.min(eva + span));
                self.visit_table(mem, frames, entry_pa, e, level, s, t, f)
            };
            cleared += gone as u64;
        }
        cleared
    }

    #[allow(clippy::too_many_arguments)]
    fn visit_leaf<M: PhysMem, F: FnMut(&mut M, &mut FrameAllocator, Leaf) -> LeafAction>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        entry_pa: u64,
        e: u64,
        level: u32,
        va: u64,
        f: &mut F,
    ) -> bool {
        if level > 2 {
            return false;
        }
        let (size, mask) = match level {
            2 => (PageSize::Size2M, pte::ADDR_MASK_2M),
            _ => (PageSize::Size4K, pte::ADDR_MASK),
        };
        let leaf = Leaf {
            va,
            frame: e & mask,
            size,
            flags: leaf_flags(e),
            pages: 1,
        };
        match f(mem, frames, leaf) {
            LeafAction::Keep => false,
            LeafAction::SetFlags(fl) => {
                mem.write_u64(entry_pa, (e & mask) | fl | (e & pte::PS));
                trace_entry(
                    mem,
                    kind::PTE_SET,
                    level,
                    va,
                    (e & mask) | fl | (e & pte::PS),
                );
                false
            }
            LeafAction::Unmap => {
                mem.write_u64(entry_pa, 0);
                trace_entry(mem, kind::PTE_CLEAR, level, va, e);
                true
            }
        }
    }

    /// Recurse into the table `e` points to; free it if it is empty after.
    #[allow(clippy::too_many_arguments)]
    fn visit_table<M: PhysMem, F: FnMut(&mut M, &mut FrameAllocator, Leaf) -> LeafAction>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        entry_pa: u64,
        e: u64,
        level: u32,
        start: u64,
        end: u64,
        f: &mut F,
    ) -> bool {
        let child = e & pte::ADDR_MASK;
        let n = count(e);
        let cleared = self.walk(mem, frames, child, level - 1, start, end, n, f);
        let left = n.saturating_sub(cleared);
        if left > 0 {
            if cleared > 0 {
                mem.write_u64(entry_pa, with_count(e, left));
            }
            return false;
        }
        // Empty now, or already empty (left so by `unmap`): free it.
        frames.free(mem, child);
        self.tables -= 1;
        self.forget_table();
        mem.write_u64(entry_pa, 0);
        trace_table(mem, kind::PT_FREE, level - 1, start, child);
        true
    }
}

/// What [`PageTable::free_user_half`] carries down its tables.
struct Freeing<'a, M, F> {
    mem: &'a mut M,
    frames: &'a mut FrameAllocator,
    /// Whether page-table records are traced.
    traced: bool,
    on_leaf: &'a mut F,
}

/// Trace a table page of `level` covering `va` being allocated or freed.
fn trace_table<M: PhysMem>(mem: &mut M, kind: u32, level: u32, va: u64, frame: u64) {
    if trace::on(mem, category::PAGE_TABLES) {
        let covers = span(level) * ENTRIES;
        let start = va & !(covers - 1);
        trace::emit(
            mem,
            category::PAGE_TABLES,
            kind,
            0,
            [
                u64::from(level),
                start,
                start.wrapping_add(covers),
                frame,
                0,
                0,
            ],
        );
    }
}

/// Trace the `n` tables from `run` that [`PageTable::link_chain`] made
/// for `va` below `level` (out of line: the chain's registers stay free).
#[cold]
#[inline(never)]
fn trace_chain<M: PhysMem>(mem: &mut M, va: u64, level: u32, run: u64, n: u32) {
    for k in 0..n {
        trace_table(
            mem,
            kind::PT_ALLOC,
            level - 1 - k,
            va,
            run + u64::from(k) * PAGE_SIZE,
        );
    }
}

/// Trace an entry at `level` for `va` being set to `e` (or cleared, `old`).
#[inline(always)]
fn trace_entry<M: PhysMem>(mem: &mut M, kind: u32, level: u32, va: u64, e: u64) {
    trace::emit(
        mem,
        category::PAGE_TABLES,
        kind,
        0,
        [va, u64::from(level), e & pte::ADDR_MASK, e, 0, 0],
    );
}

/// Trace the clearing of the `pages` entries from `entry_pa` (mapping
/// from `va`), before they are cleared: one record an entry, as for
/// entries cleared one by one.
#[inline(never)]
fn trace_run_cleared<M: PhysMem>(mem: &mut M, entry_pa: u64, va: u64, pages: u64) {
    for k in 0..pages {
        let e = mem.read_u64(entry_pa + k * 8);
        trace_entry(mem, kind::PTE_CLEAR, 1, va + k * PAGE_SIZE, e);
    }
}

/// Trace the entries of a run at `at` that hold what the run wrote there
/// (`first` value for virtual address `va`, advancing by `step`); entries
/// it skipped because they were in use hold something else.
#[inline(never)]
fn trace_run<M: PhysMem>(
    mem: &mut M,
    at: u64,
    (va, first): (u64, u64),
    step: u64,
    n: u64,
    level: u32,
) {
    for k in 0..n {
        let want = first + k * step;
        if mem.read_u64(at + k * 8) == want {
            trace_entry(mem, kind::PTE_SET, level, va + k * step, want);
        }
    }
}

/// A run of 4 KiB leaves that [`PageTable::map_in_free_region`] maps
/// with its first: `n` pages from user `va` to the frames from `pa`, with
/// `flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecondRun {
    /// First user address.
    pub va: u64,
    /// First frame.
    pub pa: u64,
    /// Leaves.
    pub n: u64,
    /// Leaf flags.
    pub flags: u64,
}

impl SecondRun {
    /// Whether it can go with a first run from `va`: pages in one table,
    /// in `va`'s 1 GiB region (one directory) but not its 2 MiB one.
    pub fn fits_with(&self, va: u64) -> bool {
        let aligned = (self.va | self.pa) & (PAGE_SIZE - 1) == 0 && self.pa & !pte::ADDR_MASK == 0;
        aligned
            && self.n > 0
            && self.va < USER_HALF_END
            && (self.va ^ va) >> 30 == 0
            && index(self.va, 2) != index(va, 2)
            && index(self.va, 1) + self.n <= ENTRIES
    }
}

/// Whether `va` and `pa` can be mapped with a leaf of `size`; in line, as
/// every map's first step (a call and its result cost as much as the
/// checks).
#[inline(always)]
fn check_map_args(va: u64, pa: u64, size: PageSize) -> Result<(), MapError> {
    if !is_canonical(va) {
        return Err(MapError::NonCanonical(va));
    }
    let align = size.bytes() - 1;
    if va & align != 0 || pa & align != 0 || pa & !pte::ADDR_MASK != 0 {
        return Err(MapError::Misaligned(va));
    }
    Ok(())
}

/// Add `delta` (wrapping: `u64::MAX` is -1) to the used-entry count kept in
/// the entry at `entry_pa` (0: the root, which keeps no count).
#[inline(always)]
fn add_count<M: PhysMem>(mem: &mut M, entry_pa: u64, delta: u64) {
    if entry_pa == 0 {
        return;
    }
    let e = mem.read_u64(entry_pa);
    let n = count(e).wrapping_add(delta) & (pte::COUNT_MASK >> pte::COUNT_SHIFT);
    mem.write_u64(entry_pa, with_count(e, n));
}

/// [`PageTable::fill_free_packed`]'s `n` entries from `at` (for `va`) in
/// a table that may hold used entries, the k-th free one taking frame k
/// from `first` (an entry's value): free whole (an unmapped stretch of a
/// used table), found with one test of the entries ORed together and
/// written as one run, else packed around the used ones (a heap's block
/// with its first pages mapped). Returns the entries written.
#[inline(always)]
fn fill_packed<M: PhysMem>(mem: &mut M, at: u64, (va, first): (u64, u64), n: u64) -> u64 {
    let written = if mem.all_free(at, n, USED) {
        mem.write_run(at, first, PAGE_SIZE, n);
        n
    } else {
        mem.write_run_packed(at, first, PAGE_SIZE, n, USED)
    };
    if trace::on(mem, category::PAGE_TABLES) {
        // The run's frames are new: an entry holding the next of them is
        // one this fill wrote.
        let mut next = first;
        for k in 0..n {
            if mem.read_u64(at + k * 8) == next {
                trace_entry(mem, kind::PTE_SET, 1, va + k * PAGE_SIZE, next);
                next += PAGE_SIZE;
            }
        }
    }
    written
}

/// `n` more used entries in the table of 4 KiB leaves below the entry at
/// `entry_pa`: that entry is never the root, and the count, at most 512
/// after, cannot carry out of its bits, so one add to the entry does what
/// [`add_count`] does.
#[inline(always)]
fn add_leaf_count<M: PhysMem>(mem: &mut M, entry_pa: u64, n: u64) {
    debug_assert!(entry_pa != 0);
    let e = mem.read_u64(entry_pa);
    debug_assert!(count(e) + n <= ENTRIES);
    mem.write_u64(entry_pa, e + (n << pte::COUNT_SHIFT));
}

/// One more used entry in the table below the entry at `entry_pa` (a
/// fault's fill of a free 4 KiB entry, a new table linked into a free
/// entry): that entry is never the root, and the count, below 512 before,
/// cannot carry out of its bits, so one add to the entry does what
/// [`add_count`] does.
#[inline(always)]
fn inc_table_count<M: PhysMem>(mem: &mut M, entry_pa: u64) {
    debug_assert!(entry_pa != 0);
    let e = mem.read_u64(entry_pa);
    debug_assert!(count(e) < 512);
    mem.write_u64(entry_pa, e + (1 << pte::COUNT_SHIFT));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::testmem::TestMem;
    use vmrun_contract::layout::DIRECT_MAP_BASE;

    #[test]
    fn uncovered_free_sees_a_used_entry_in_any_gap_between_the_ranges() {
        // A table of 4 KiB leaves mapping from 2 MiB; two ranges cover
        // entries 16..32 and 100..200.
        let (table, base) = (0x1000, 0x20_0000);
        let ranges = [
            (base + 16 * PAGE_SIZE, base + 32 * PAGE_SIZE, false),
            (base + 100 * PAGE_SIZE, base + 200 * PAGE_SIZE, true),
        ];
        let mut mem = TestMem::new(0x2000);
        for k in [16, 31, 100, 150, 199] {
            mem.write_u64(table + k * 8, 0x5000 | pte::P);
        }
        assert!(uncovered_free(&mem, (table, 1, base), &ranges));
        for k in [0, 15, 32, 99, 200, 511] {
            mem.write_u64(table + k * 8, 0x6000 | pte::PROTNONE);
            assert!(
                !uncovered_free(&mem, (table, 1, base), &ranges),
                "entry {k}"
            );
            mem.write_u64(table + k * 8, 0);
        }
        // No range: the whole table is read.
        assert!(!uncovered_free(&mem, (table, 1, base), &[]));
    }

    const MIB: u64 = 1 << 20;
    const UF: u64 = pte::P | pte::RW | pte::US;

    fn setup() -> (TestMem, FrameAllocator, PageTable) {
        let mut mem = TestMem::new(64 * MIB);
        let mut fa = FrameAllocator::new(MIB, 64 * MIB);
        let pt = PageTable::new(&mut mem, &mut fa).unwrap();
        (mem, fa, pt)
    }

    #[test]
    fn mapping_and_unmapping_emit_table_and_entry_records() {
        use vmrun_contract::trace::{category, kind};
        let (mut mem, mut fa, mut pt) = setup();
        mem.trace_mask = category::PAGE_TABLES;
        let frame = fa.alloc_zeroed(&mut mem).unwrap();
        let va = 0x40_1000;
        pt.map(
            &mut mem,
            &mut fa,
            va,
            frame,
            PageSize::Size4K,
            pte::P | pte::US,
        )
        .unwrap();
        assert_eq!(
            mem.record_kinds(),
            [
                kind::PT_ALLOC,
                kind::PT_ALLOC,
                kind::PT_ALLOC,
                kind::PTE_SET
            ]
        );
        let pt_rec = mem.records[2];
        assert_eq!(pt_rec.a[0], 1, "the last table allocated is a level-1 PT");
        assert_eq!((pt_rec.a[1], pt_rec.a[2]), (0x40_0000, 0x60_0000));
        assert_eq!(mem.records[3].a[0], va);
        assert_eq!(mem.records[3].a[2], frame);
        mem.records.clear();
        pt.unmap_range(&mut mem, &mut fa, va, va + PAGE_SIZE, |_, _, _| {})
            .unwrap();
        let kinds = mem.record_kinds();
        assert_eq!(kinds[0], kind::PTE_CLEAR);
        assert_eq!(kinds.iter().filter(|k| **k == kind::PT_FREE).count(), 3);
    }

    #[test]
    fn missing_tables_are_made_as_one_run_and_freed_one_by_one() {
        let (mut mem, mut fa, mut pt) = setup();
        let before = fa.in_use();
        pt.map(
            &mut mem,
            &mut fa,
            0x40_1000,
            0x20_0000,
            PageSize::Size4K,
            UF,
        )
        .unwrap();
        let pdpt = mem.read_u64(pt.root()) & pte::ADDR_MASK;
        let pd = mem.read_u64(pdpt) & pte::ADDR_MASK;
        let leaf = mem.read_u64(pd + index(0x40_1000, 2) * 8) & pte::ADDR_MASK;
        assert_eq!((pd, leaf), (pdpt + PAGE_SIZE, pdpt + 2 * PAGE_SIZE));
        // The PML4 entry is there: the next 1 GiB region needs two tables.
        let far = 0x4000_1000;
        pt.map(&mut mem, &mut fa, far, 0x30_0000, PageSize::Size4K, UF)
            .unwrap();
        assert_eq!((pt.table_pages(), fa.in_use() - before), (6, 5));
        assert_eq!(pt.translate(&mem, far).map(|t| t.frame), Some(0x30_0000));
        pt.unmap_range(&mut mem, &mut fa, 0, 0x8000_0000, |_, _, _| {})
            .unwrap();
        assert_eq!((pt.table_pages(), fa.in_use()), (1, before));
    }

    #[test]
    fn with_no_run_of_frames_free_the_tables_are_made_one_by_one() {
        let (mut mem, mut fa, mut pt) = setup();
        let mut taken = Vec::new();
        while let Some(f) = fa.alloc_zeroed(&mut mem) {
            taken.push(f);
        }
        for f in [taken[0], taken[2], taken[4]] {
            fa.free(&mut mem, f);
        }
        pt.map(
            &mut mem,
            &mut fa,
            0x40_1000,
            0x20_0000,
            PageSize::Size4K,
            UF,
        )
        .unwrap();
        assert_eq!(pt.table_pages(), 4);
        let t = pt.translate(&mem, 0x40_1000);
        assert_eq!(t.map(|t| t.frame), Some(0x20_0000));
        pt.unmap_range(&mut mem, &mut fa, 0, 0x60_0000, |_, _, _| {})
            .unwrap();
        assert_eq!(pt.table_pages(), 1);
    }

    #[test]
    fn with_too_few_frames_free_one_by_one_a_walk_is_out_of_memory() {
        let (mut mem, mut fa, mut pt) = setup();
        let mut taken = Vec::new();
        while let Some(f) = fa.alloc_zeroed(&mut mem) {
            taken.push(f);
        }
        fa.free(&mut mem, taken[0]);
        let made = pt.map(
            &mut mem,
            &mut fa,
            0x40_1000,
            0x20_0000,
            PageSize::Size4K,
            UF,
        );
        assert!(matches!(made, Err(MapError::OutOfMemory)));
        assert!(pt.translate(&mem, 0x40_1000).is_none());
    }

    #[test]
    fn tracing_off_emits_nothing() {
        let (mut mem, mut fa, mut pt) = setup();
        let frame = fa.alloc_zeroed(&mut mem).unwrap();
        pt.map(
            &mut mem,
            &mut fa,
            0x40_1000,
            frame,
            PageSize::Size4K,
            pte::P,
        )
        .unwrap();
        assert!(mem.records.is_empty());
    }

    #[test]
    fn map_then_translate_returns_frame_and_flags() {
        let (mut mem, mut fa, mut pt) = setup();
        pt.map(
            &mut mem,
            &mut fa,
            0x40_1000,
            0x20_0000,
            PageSize::Size4K,
            UF,
        )
        .unwrap();
        let t = pt.translate(&mem, 0x40_1234).unwrap();
        assert_eq!(
            t,
            Translation {
                frame: 0x20_0000,
                size: PageSize::Size4K,
                flags: UF
            }
        );
        assert_eq!(t.pa(0x40_1234), 0x20_0234);
        assert_eq!(pt.translate(&mem, 0x40_2000), None);
        assert_eq!(pt.table_pages(), 4, "PML4 + PDPT + PD + PT");
    }

    #[test]
    fn intermediate_entries_of_user_addresses_are_user_writable() {
        let (mut mem, mut fa, mut pt) = setup();
        pt.map(
            &mut mem,
            &mut fa,
            0x1000,
            0x10_0000,
            PageSize::Size4K,
            pte::P | pte::US,
        )
        .unwrap();
        let pml4e = mem.read_u64(pt.root());
        assert_eq!(
            pml4e & (pte::P | pte::RW | pte::US),
            pte::P | pte::RW | pte::US
        );
        let k = DIRECT_MAP_BASE;
        pt.map(&mut mem, &mut fa, k, 0, PageSize::Size2M, pte::P | pte::RW)
            .unwrap();
        let kpml4e = mem.read_u64(pt.root() + index(k, 4) * 8);
        assert_eq!(kpml4e & pte::US, 0);
    }

    #[test]
    fn leaf_slot_fill_and_rewrite_map_in_one_walk_as_map_does() {
        let (mut mem, mut fa, mut pt) = setup();
        let slot = pt.leaf_slot(&mut mem, &mut fa, 0x7000).unwrap();
        assert!(!slot.is_used());
        assert_eq!(pt.table_pages(), 4, "the PML4 and three new tables");
        pt.fill(&mut mem, &slot, 0x7000, 0x10_0000, UF);
        let mut other = PageTable::new(&mut mem, &mut fa).unwrap();
        other
            .map(&mut mem, &mut fa, 0x7000, 0x10_0000, PageSize::Size4K, UF)
            .unwrap();
        assert_eq!(pt.translate(&mem, 0x7000), other.translate(&mem, 0x7000));
        let again = pt.leaf_slot(&mut mem, &mut fa, 0x7000).unwrap();
        assert!(again.is_used());
        assert_eq!(again.translation().frame, 0x10_0000);
        let found = pt.lookup(&mem, 0x7000).unwrap();
        pt.rewrite(&mut mem, &found, 0x7000, 0x20_0000, UF | pte::D);
        let t = pt.translate(&mem, 0x7000).unwrap();
        assert_eq!((t.frame, t.flags), (0x20_0000, UF | pte::D));
        // The count above the leaf saw one fill and no rewrite: unmapping
        // the one leaf frees every table below the PML4.
        pt.unmap_range(&mut mem, &mut fa, 0, 0x20_0000, |_, _, _| {})
            .unwrap();
        assert_eq!(pt.table_pages(), 1);
    }

    #[test]
    fn maps_of_4k_pages_remember_their_table_and_use_it_until_it_is_freed() {
        let (mut mem, mut fa, mut pt) = setup();
        pt.map_pages(
            &mut mem,
            &mut fa,
            0x40_1000,
            0x10_0000,
            2,
            PageSize::Size4K,
            UF,
        )
        .unwrap();
        let slot = pt.lookup(&mem, 0x40_1000).unwrap();
        assert_eq!(
            pt.last_table(0x40_5000),
            Some((slot.entry_pa - 8, slot.parent_pa))
        );
        let frames = fa.in_use();
        // The remembered table is not fresh: a used entry is kept.
        let n = pt
            .map_pages(
                &mut mem,
                &mut fa,
                0x40_0000,
                0x20_0000,
                4,
                PageSize::Size4K,
                UF,
            )
            .unwrap();
        assert_eq!(n, 2, "two of the four entries were used");
        assert_eq!(pt.translate(&mem, 0x40_1000).unwrap().frame, 0x10_0000);
        assert_eq!(pt.translate(&mem, 0x40_3000).unwrap().frame, 0x20_3000);
        pt.map(
            &mut mem,
            &mut fa,
            0x40_5000,
            0x30_0000,
            PageSize::Size4K,
            UF,
        )
        .unwrap();
        assert_eq!(
            pt.map(
                &mut mem,
                &mut fa,
                0x40_5000,
                0x30_0000,
                PageSize::Size4K,
                UF
            ),
            Err(MapError::AlreadyMapped(0x40_5000))
        );
        assert_eq!(fa.in_use(), frames, "no table made in the region");
        // A map elsewhere remembers its own table.
        pt.map(
            &mut mem,
            &mut fa,
            0x80_0000,
            0x30_1000,
            PageSize::Size4K,
            UF,
        )
        .unwrap();
        assert!(pt.last_table(0x40_0000).is_some(), "one of the last three");
        assert!(pt.last_table(0x80_0000).is_some());
        // Freeing the table forgets it: a 2 MiB leaf may take the region,
        // and a 4 KiB map there is then refused.
        pt.unmap_range(&mut mem, &mut fa, 0x80_0000, 0xa0_0000, |_, _, _| {})
            .unwrap();
        assert_eq!(pt.last_table(0x80_0000), None);
        pt.map(
            &mut mem,
            &mut fa,
            0x80_0000,
            0x40_0000,
            PageSize::Size2M,
            UF,
        )
        .unwrap();
        assert_eq!(
            pt.map_pages(
                &mut mem,
                &mut fa,
                0x80_1000,
                0x10_0000,
                1,
                PageSize::Size4K,
                UF
            ),
            Err(MapError::HugeConflict(0x80_1000))
        );
        pt.unmap_range(&mut mem, &mut fa, 0, 0xa0_0000, |_, _, _| {})
            .unwrap();
        assert_eq!(pt.table_pages(), 1, "counts stayed exact");
    }

    #[test]
    fn the_last_three_tables_walks_reached_are_kept_whichever_kind_of_walk() {
        let (mut mem, mut fa, mut pt) = setup();
        for va in [0x40_0000, 0x80_0000, 0xc0_0000, 0x100_0000] {
            pt.map(&mut mem, &mut fa, va, 0x10_0000, PageSize::Size4K, UF)
                .unwrap();
        }
        assert_eq!(pt.last_table(0x40_0000), None, "the oldest of four");
        // A lookup (a system call's user memory) pushes out the oldest...
        assert!(pt.translate(&mem, 0x40_0000).is_some());
        assert_eq!(pt.last_table(0x80_0000), None);
        for va in [0x40_0000, 0xc0_0000, 0x100_0000] {
            assert!(pt.last_table(va).is_some(), "{va:#x}");
        }
        // ... and so does a mapping walk (a fault).
        pt.map(
            &mut mem,
            &mut fa,
            0x80_1000,
            0x10_1000,
            PageSize::Size4K,
            UF,
        )
        .unwrap();
        assert_eq!(pt.last_table(0xc0_0000), None);
        for va in [0x40_0000, 0x80_0000, 0x100_0000] {
            assert!(pt.last_table(va).is_some(), "{va:#x}");
        }
        assert_eq!(
            pt.cached_leaf(&mem, 0x80_0000),
            Some(0x10_0000 | UF),
            "the live entry"
        );
        assert_eq!(pt.cached_leaf(&mem, 0x80_2000), Some(0), "an unused slot");
        assert_eq!(pt.cached_leaf(&mem, 0xc0_0000), None, "no last table");
        // Freeing any table forgets them all.
        pt.unmap_range(&mut mem, &mut fa, 0x40_0000, 0x60_0000, |_, _, _| {})
            .unwrap();
        for va in [0x80_0000, 0xc0_0000, 0x100_0000] {
            assert_eq!(pt.last_table(va), None);
            assert_eq!(pt.cached_leaf(&mem, va), None);
        }
    }

    #[test]
    fn walked_leaf_finds_the_entry_where_no_last_table_covers_and_remembers_the_table() {
        let (mut mem, mut fa, mut pt) = setup();
        for va in [0x40_0000, 0x80_0000, 0xc0_0000, 0x100_0000] {
            pt.map(&mut mem, &mut fa, va, 0x10_0000, PageSize::Size4K, UF)
                .unwrap();
        }
        assert_eq!(pt.last_table(0x40_0000), None);
        assert_eq!(pt.cached_leaf(&mem, 0x40_0000), None);
        assert_eq!(pt.walked_leaf(&mem, 0x40_0000), Some(0x10_0000 | UF));
        assert!(pt.last_table(0x40_0000).is_some(), "remembered");
        assert_eq!(pt.walked_leaf(&mem, 0x40_1000), Some(0), "an unused slot");
        assert_eq!(pt.walked_leaf(&mem, 0x4000_0000), None, "no table");
        // A 2 MiB leaf has no 4 KiB slot; a kernel address is not looked up.
        pt.map(
            &mut mem,
            &mut fa,
            0x20_0000,
            0x40_0000,
            PageSize::Size2M,
            UF,
        )
        .unwrap();
        assert_eq!(pt.walked_leaf(&mem, 0x20_0000), None);
        let k = KERNEL_HALF + 0x20_0000;
        pt.map(&mut mem, &mut fa, k, 0x10_0000, PageSize::Size4K, UF)
            .unwrap();
        assert_eq!(pt.walked_leaf(&mem, k), None);
        // Freeing a table forgets the remembered ones; a walk finds the
        // entries still there.
        pt.unmap_range(&mut mem, &mut fa, 0x80_0000, 0xa0_0000, |_, _, _| {})
            .unwrap();
        assert_eq!(pt.walked_leaf(&mem, 0x80_0000), None, "freed");
        assert_eq!(pt.walked_leaf(&mem, 0xc0_0000), Some(0x10_0000 | UF));
    }

    #[test]
    fn walks_in_the_last_table_region_use_it_until_a_table_is_freed() {
        let (mut mem, mut fa, mut pt) = setup();
        let slot = pt.leaf_slot(&mut mem, &mut fa, 0x7000).unwrap();
        pt.fill(&mut mem, &slot, 0x7000, 0x10_0000, UF);
        let frames = fa.in_use();
        // Same 2 MiB region: the remembered table, no new one.
        let next = pt.leaf_slot(&mut mem, &mut fa, 0x8000).unwrap();
        assert_eq!(next.entry_pa, slot.entry_pa + 8);
        assert_eq!(next.parent_pa, slot.parent_pa);
        assert_eq!(fa.in_use(), frames);
        assert_eq!(
            pt.lookup(&mem, 0x7000).map(|l| l.entry_pa),
            Some(slot.entry_pa)
        );
        // Freeing the tables forgets it: a 2 MiB leaf now covers the region.
        pt.unmap_range(&mut mem, &mut fa, 0, 0x20_0000, |_, _, _| {})
            .unwrap();
        assert_eq!(pt.table_pages(), 1);
        pt.map(&mut mem, &mut fa, 0, 0x40_0000, PageSize::Size2M, UF)
            .unwrap();
        assert!(matches!(
            pt.leaf_slot(&mut mem, &mut fa, 0x7000),
            Err(MapError::HugeConflict(_))
        ));
        let t = pt.translate(&mem, 0x7000).unwrap();
        assert_eq!((t.frame, t.size), (0x40_0000, PageSize::Size2M));
    }

    #[test]
    fn a_table_freed_and_made_again_is_walked_to_afresh() {
        let (mut mem, mut fa, mut pt) = setup();
        pt.map(&mut mem, &mut fa, 0x7000, 0x10_0000, PageSize::Size4K, UF)
            .unwrap();
        pt.translate(&mem, 0x7000).unwrap();
        pt.unmap_range(&mut mem, &mut fa, 0x7000, 0x8000, |_, _, _| {})
            .unwrap();
        assert_eq!(pt.translate(&mem, 0x7000), None);
        // A table taken by another address space in between.
        let mut other = PageTable::new(&mut mem, &mut fa).unwrap();
        other
            .map(&mut mem, &mut fa, 0x9000, 0x30_0000, PageSize::Size4K, UF)
            .unwrap();
        let slot = pt.leaf_slot(&mut mem, &mut fa, 0x8000).unwrap();
        assert!(!slot.is_used());
        pt.fill(&mut mem, &slot, 0x8000, 0x20_0000, UF);
        assert_eq!(pt.translate(&mem, 0x8000).map(|t| t.frame), Some(0x20_0000));
        assert_eq!(pt.translate(&mem, 0x9000), None);
        assert_eq!(
            other.translate(&mem, 0x9000).map(|t| t.frame),
            Some(0x30_0000)
        );
        assert_eq!(other.translate(&mem, 0x8000), None);
        pt.free_user_half(&mut mem, &mut fa, [(0, 0x20_0000, true)], |_, _, _| {});
        pt.free_root(&mut mem, &mut fa);
        assert_eq!(pt.translate(&mem, 0x8000), None);
    }

    #[test]
    fn leaf_slot_under_a_huge_leaf_is_a_huge_conflict() {
        let (mut mem, mut fa, mut pt) = setup();
        pt.map(
            &mut mem,
            &mut fa,
            0x60_0000,
            0x40_0000,
            PageSize::Size2M,
            UF,
        )
        .unwrap();
        let r = pt.leaf_slot(&mut mem, &mut fa, 0x60_1000);
        assert!(matches!(r, Err(MapError::HugeConflict(0x60_1000))));
    }

    #[test]
    fn mapping_twice_fails_with_already_mapped() {
        let (mut mem, mut fa, mut pt) = setup();
        pt.map(&mut mem, &mut fa, 0x1000, 0x10_0000, PageSize::Size4K, UF)
            .unwrap();
        let r = pt.map(&mut mem, &mut fa, 0x1000, 0x11_0000, PageSize::Size4K, UF);
        assert_eq!(r, Err(MapError::AlreadyMapped(0x1000)));
    }

    #[test]
    fn bad_addresses_are_rejected() {
        let (mut mem, mut fa, mut pt) = setup();
        let r = pt.map(&mut mem, &mut fa, 0x1001, 0x10_0000, PageSize::Size4K, UF);
        assert_eq!(r, Err(MapError::Misaligned(0x1001)));
        let r = pt.map(
            &mut mem,
            &mut fa,
            0x20_1000,
            0x40_0000,
            PageSize::Size2M,
            UF,
        );
        assert_eq!(r, Err(MapError::Misaligned(0x20_1000)));
        let r = pt.map(&mut mem, &mut fa, 1 << 47, 0x10_0000, PageSize::Size4K, UF);
        assert_eq!(r, Err(MapError::NonCanonical(1 << 47)));
    }

    #[test]
    fn huge_page_translates_with_offset_and_blocks_4k_map() {
        let (mut mem, mut fa, mut pt) = setup();
        pt.map(
            &mut mem,
            &mut fa,
            0x60_0000,
            0x40_0000,
            PageSize::Size2M,
            UF,
        )
        .unwrap();
        let t = pt.translate(&mem, 0x6f_f123).unwrap();
        assert_eq!(
            (t.frame, t.size, t.flags),
            (0x40_0000, PageSize::Size2M, UF)
        );
        assert_eq!(t.pa(0x6f_f123), 0x4f_f123);
        let r = pt.map(
            &mut mem,
            &mut fa,
            0x60_1000,
            0x10_0000,
            PageSize::Size4K,
            UF,
        );
        assert_eq!(r, Err(MapError::HugeConflict(0x60_1000)));
        assert!(!pt.is_2m_region_empty(&mem, 0x60_0000));
        assert!(pt.is_2m_region_empty(&mem, 0x80_0000));
    }

    /// Found by prop_page_table_matches_a_model_of_its_mappings: a 4 KiB
    /// map inside a PROT_NONE 2 MiB leaf replaced the leaf with a new table.
    #[test]
    fn prot_none_huge_page_blocks_4k_map() {
        let (mut mem, mut fa, mut pt) = setup();
        let none = pte::PROTNONE | pte::US;
        pt.map(
            &mut mem,
            &mut fa,
            0x60_0000,
            0x40_0000,
            PageSize::Size2M,
            none,
        )
        .unwrap();
        let tables = pt.table_pages();
        let r = pt.map(
            &mut mem,
            &mut fa,
            0x60_1000,
            0x10_0000,
            PageSize::Size4K,
            UF,
        );
        assert_eq!(r, Err(MapError::HugeConflict(0x60_1000)));
        assert_eq!(pt.table_pages(), tables);
        let t = pt.translate(&mem, 0x60_1000).unwrap();
        assert_eq!(
            (t.frame, t.size, t.flags),
            (0x40_0000, PageSize::Size2M, none)
        );
    }

    #[test]
    fn unmap_returns_leaf_and_clears_it() {
        let (mut mem, mut fa, mut pt) = setup();
        pt.map(&mut mem, &mut fa, 0x1000, 0x10_0000, PageSize::Size4K, UF)
            .unwrap();
        assert_eq!(
            pt.unmap(&mut mem, 0x1000),
            Some((0x10_0000, PageSize::Size4K, UF))
        );
        assert_eq!(pt.translate(&mem, 0x1000), None);
        assert_eq!(pt.unmap(&mut mem, 0x1000), None);
        assert!(
            pt.is_2m_region_empty(&mem, 0x1000),
            "empty PT counts as empty"
        );
        pt.map(&mut mem, &mut fa, 0, 0x40_0000, PageSize::Size2M, UF)
            .unwrap();
        assert_eq!(
            pt.table_pages(),
            3,
            "the empty PT was freed for the huge leaf"
        );
    }

    #[test]
    fn set_flags_changes_leaf_in_place() {
        let (mut mem, mut fa, mut pt) = setup();
        pt.map(
            &mut mem,
            &mut fa,
            0x20_0000,
            0x20_0000,
            PageSize::Size2M,
            UF,
        )
        .unwrap();
        let old = pt.set_flags(&mut mem, 0x20_0000, pte::P | pte::US | pte::NX);
        assert_eq!(old, Some(UF));
        let t = pt.translate(&mem, 0x21_0000).unwrap();
        assert_eq!(
            (t.size, t.flags),
            (PageSize::Size2M, pte::P | pte::US | pte::NX)
        );
    }

    #[test]
    fn unmap_hands_consecutive_frames_over_as_one_run_and_clears_every_entry() {
        let (mut mem, mut fa, mut pt) = setup();
        let base_frames = fa.in_use();
        let va0 = 0x7fff_f7ef_7000;
        for i in 0..300 {
            let va = va0 + i * PAGE_SIZE;
            // Two runs: frames 0..100 and 100..300 apart.
            let pa = 0x100_0000 + i * PAGE_SIZE + if i >= 100 { 0x10_0000 } else { 0 };
            pt.map(&mut mem, &mut fa, va, pa, PageSize::Size4K, UF)
                .unwrap();
        }
        mem.trace_mask = category::PAGE_TABLES;
        let mut runs = Vec::new();
        pt.unmap_range(&mut mem, &mut fa, va0, va0 + 300 * PAGE_SIZE, |_, _, l| {
            runs.push((l.va, l.frame, l.pages))
        })
        .unwrap();
        for i in 0..300 {
            assert_eq!(pt.translate(&mem, va0 + i * PAGE_SIZE), None, "page {i}");
        }
        // The first run, then the second cut where the page table ends.
        let second = va0 + 100 * PAGE_SIZE;
        let split = (va0 | (HUGE_PAGE_SIZE - 1)) + 1;
        let first_of = |va: u64| 0x110_0000 + (va - va0);
        assert_eq!(
            runs,
            [
                (va0, 0x100_0000, 100),
                (second, first_of(second), (split - second) / PAGE_SIZE),
                (
                    split,
                    first_of(split),
                    (va0 + 300 * PAGE_SIZE - split) / PAGE_SIZE
                ),
            ]
        );
        // Every entry cleared has its record, as when cleared one by one.
        let cleared: Vec<u64> = mem
            .records
            .iter()
            .filter(|r| r.kind == kind::PTE_CLEAR)
            .map(|r| r.a[0])
            .collect();
        let want: Vec<u64> = (0..300).map(|i| va0 + i * PAGE_SIZE).collect();
        assert_eq!(cleared, want);
        assert_eq!(pt.table_pages(), 1);
        assert_eq!(fa.in_use(), base_frames);
    }

    #[test]
    fn a_teardown_hands_consecutive_frames_over_as_one_run() {
        let (mut mem, mut fa, mut pt) = setup();
        let base = fa.in_use();
        map_block(&mut mem, &mut fa, &mut pt, 0x40_0000);
        // A lone page after a gap: a run of its own.
        let lone = fa.alloc_zeroed(&mut mem).unwrap();
        pt.map(&mut mem, &mut fa, 0x41_1000, lone, PageSize::Size4K, UF)
            .unwrap();
        let mut runs = Vec::new();
        pt.free_user_half(
            &mut mem,
            &mut fa,
            [(0x40_0000, 0x42_0000, true)],
            |m, fr, l| {
                runs.push((l.va, l.pages));
                assert_eq!(fr.release_run(m, l.frame, l.pages), Some(l.pages));
            },
        );
        assert_eq!(runs, [(0x40_0000, 16), (0x41_1000, 1)]);
        assert_eq!(pt.table_pages(), 1);
        assert_eq!(fa.in_use(), base);
    }

    #[test]
    fn unmap_range_frees_emptied_tables_back_to_baseline() {
        let (mut mem, mut fa, mut pt) = setup();
        let base_frames = fa.in_use();
        for i in 0..600 {
            let va = 0x7fff_0000_0000 + i * PAGE_SIZE;
            pt.map(&mut mem, &mut fa, va, 0x10_0000, PageSize::Size4K, UF)
                .unwrap();
        }
        pt.map(
            &mut mem,
            &mut fa,
            0x40_0000,
            0x40_0000,
            PageSize::Size2M,
            UF,
        )
        .unwrap();
        assert_eq!(pt.table_pages(), 1 + 2 + 2 + 2);
        let mut seen = (0, 0);
        pt.unmap_range(&mut mem, &mut fa, 0, USER_HALF_END, |_, _, l| {
            match l.size {
                PageSize::Size4K => seen.0 += l.pages,
                PageSize::Size2M => seen.1 += 1,
            }
        })
        .unwrap();
        assert_eq!(seen, (600, 1));
        assert_eq!(pt.table_pages(), 1);
        assert_eq!(fa.in_use(), base_frames);
        assert_eq!(mem.read_u64(pt.root()), 0);
    }

    #[test]
    fn unmap_range_passes_holes_at_every_level_and_frees_tables_met_empty() {
        let (mut mem, mut fa, mut pt) = setup();
        let base_frames = fa.in_use();
        // Leaves in two 2 MiB regions 1 GiB apart, and one in another PML4
        // slot: the range between them has no tables at all.
        let vas = [0x20_1000, 0x20_3000, 0x4000_0000, 0x80_0000_0000];
        for (k, va) in vas.into_iter().enumerate() {
            let pa = 0x10_0000 + k as u64 * PAGE_SIZE;
            pt.map(&mut mem, &mut fa, va, pa, PageSize::Size4K, UF)
                .unwrap();
        }
        // A page table left empty by `unmap` is freed when a range meets it.
        pt.map(
            &mut mem,
            &mut fa,
            0x60_0000,
            0x20_0000,
            PageSize::Size4K,
            UF,
        )
        .unwrap();
        pt.unmap(&mut mem, 0x60_0000).unwrap();
        let mut seen = Vec::new();
        pt.unmap_range(&mut mem, &mut fa, 0x20_2000, 0x80_0000_1000, |_, _, l| {
            seen.extend((0..l.pages).map(|k| l.va + k * PAGE_SIZE))
        })
        .unwrap();
        assert_eq!(seen, [0x20_3000, 0x4000_0000, 0x80_0000_0000]);
        assert!(pt.translate(&mem, 0x20_1000).is_some());
        assert_eq!(pt.table_pages(), 4, "root and the first leaf's tables");
        pt.unmap_range(&mut mem, &mut fa, 0, USER_HALF_END, |_, _, _| ())
            .unwrap();
        assert_eq!(pt.table_pages(), 1);
        assert_eq!(fa.in_use(), base_frames);
    }

    #[test]
    fn partial_unmap_range_keeps_other_leaves_and_tables() {
        let (mut mem, mut fa, mut pt) = setup();
        for i in 0..4 {
            pt.map(
                &mut mem,
                &mut fa,
                i * PAGE_SIZE,
                0x10_0000 + i * PAGE_SIZE,
                PageSize::Size4K,
                UF,
            )
            .unwrap();
        }
        let mut n = 0;
        pt.unmap_range(&mut mem, &mut fa, PAGE_SIZE, 3 * PAGE_SIZE, |_, _, l| {
            n += l.pages
        })
        .unwrap();
        assert_eq!(n, 2);
        assert!(pt.translate(&mem, 0).is_some());
        assert!(pt.translate(&mem, PAGE_SIZE).is_none());
        assert!(pt.translate(&mem, 3 * PAGE_SIZE).is_some());
        pt.unmap_range(&mut mem, &mut fa, 0, PAGE_SIZE, |_, _, _| ())
            .unwrap();
        assert_eq!(pt.table_pages(), 4);
        pt.unmap_range(
            &mut mem,
            &mut fa,
            3 * PAGE_SIZE,
            4 * PAGE_SIZE,
            |_, _, _| (),
        )
        .unwrap();
        assert_eq!(pt.table_pages(), 1, "last leaf gone: PT, PD, PDPT freed");
    }

    #[test]
    fn unmapping_middle_of_huge_leaf_splits_it() {
        let (mut mem, mut fa, mut pt) = setup();
        pt.map(
            &mut mem,
            &mut fa,
            0x20_0000,
            0x40_0000,
            PageSize::Size2M,
            UF,
        )
        .unwrap();
        let mut gone = Vec::new();
        pt.unmap_range(&mut mem, &mut fa, 0x20_1000, 0x20_3000, |_, _, l| {
            gone.extend((0..l.pages).map(|k| (l.frame + k * PAGE_SIZE, l.size)))
        })
        .unwrap();
        assert_eq!(
            gone,
            vec![(0x40_1000, PageSize::Size4K), (0x40_2000, PageSize::Size4K)]
        );
        let t = pt.translate(&mem, 0x20_0000).unwrap();
        assert_eq!(
            (t.frame, t.size, t.flags),
            (0x40_0000, PageSize::Size4K, UF)
        );
        assert_eq!(pt.translate(&mem, 0x3f_f000).unwrap().frame, 0x5f_f000);
        assert!(pt.translate(&mem, 0x20_2000).is_none());
    }

    #[test]
    fn update_range_sets_flags_on_covered_part_of_huge_leaf() {
        let (mut mem, mut fa, mut pt) = setup();
        pt.map(
            &mut mem,
            &mut fa,
            0x20_0000,
            0x40_0000,
            PageSize::Size2M,
            UF,
        )
        .unwrap();
        pt.update_range(&mut mem, &mut fa, 0x30_0000, 0x40_0000, |_, _, l| {
            LeafAction::SetFlags(l.flags & !pte::RW)
        })
        .unwrap();
        assert_eq!(pt.translate(&mem, 0x2f_f000).unwrap().flags, UF);
        assert_eq!(
            pt.translate(&mem, 0x30_0000).unwrap().flags,
            pte::P | pte::US
        );
    }

    #[test]
    fn set_flags_range_rewrites_the_used_leaves_inside_one_table_or_across_tables() {
        let (mut mem, mut fa, mut pt) = setup();
        for va in [0x1f_e000, 0x20_0000, 0x20_1000, 0x20_3000, 0x20_4000] {
            let frame = fa.alloc_zeroed(&mut mem).unwrap();
            pt.map(&mut mem, &mut fa, va, frame, PageSize::Size4K, UF)
                .unwrap();
        }
        let ro = |_: &mut TestMem, _: &mut FrameAllocator, l: Leaf| l.flags & !pte::RW;
        pt.set_flags_range(&mut mem, &mut fa, 0x20_1000, 0x20_4000, ro)
            .unwrap();
        let flags = |pt: &PageTable, mem: &TestMem, va| pt.translate(mem, va).map(|t| t.flags);
        assert_eq!(flags(&pt, &mem, 0x20_0000), Some(UF));
        assert_eq!(flags(&pt, &mem, 0x20_1000), Some(pte::P | pte::US));
        assert_eq!(flags(&pt, &mem, 0x20_2000), None, "holes stay holes");
        assert_eq!(flags(&pt, &mem, 0x20_3000), Some(pte::P | pte::US));
        assert_eq!(flags(&pt, &mem, 0x20_4000), Some(UF));
        pt.set_flags_range(&mut mem, &mut fa, 0x1f_e000, 0x20_1000, ro)
            .unwrap();
        assert_eq!(flags(&pt, &mem, 0x1f_e000), Some(pte::P | pte::US));
        assert_eq!(flags(&pt, &mem, 0x20_0000), Some(pte::P | pte::US));
        pt.set_flags_range(&mut mem, &mut fa, 0x60_0000, 0x60_2000, ro)
            .unwrap();
        assert_eq!(flags(&pt, &mem, 0x60_0000), None, "no table: nothing");
    }

    #[test]
    fn set_same_flags_range_writes_what_set_flags_range_writes() {
        let pages = [0x1f_e000, 0x20_0000, 0x20_1000, 0x20_3000, 0x20_4000];
        let ranges = [
            (0x20_1000, 0x20_4000),
            (0x20_0000, 0x20_5000),
            (0x1f_e000, 0x20_1000),
            (0x60_0000, 0x60_2000),
        ];
        let ro = pte::P | pte::US | pte::NX;
        let mapped = || {
            let (mut mem, mut fa, mut pt) = setup();
            for va in pages {
                let frame = fa.alloc_zeroed(&mut mem).unwrap();
                pt.map(&mut mem, &mut fa, va, frame, PageSize::Size4K, UF)
                    .unwrap();
            }
            (mem, fa, pt)
        };
        for (start, end) in ranges {
            let (mut mem, mut fa, mut pt) = mapped();
            let (mut mem2, mut fa2, mut pt2) = mapped();
            pt.set_same_flags_range(&mut mem, &mut fa, start, end, ro)
                .unwrap();
            pt2.set_flags_range(&mut mem2, &mut fa2, start, end, |_, _, _| ro)
                .unwrap();
            for va in (0x1f_c000..0x20_8000).step_by(0x1000) {
                let t = |pt: &PageTable, mem: &TestMem| {
                    pt.translate(mem, va).map(|t| (t.flags, t.pa(va)))
                };
                assert_eq!(
                    t(&pt, &mem),
                    t(&pt2, &mem2),
                    "{start:#x}..{end:#x} at {va:#x}"
                );
            }
        }
    }

    #[test]
    fn kernel_direct_map_uses_2m_pages() {
        let (mut mem, mut fa, mut pt) = setup();
        let fl = pte::P | pte::RW | pte::G | pte::NX;
        pt.map_range(
            &mut mem,
            &mut fa,
            DIRECT_MAP_BASE,
            0,
            64 * MIB,
            PageSize::Size2M,
            fl,
        )
        .unwrap();
        let t = pt.translate(&mem, DIRECT_MAP_BASE + 0x123_4567).unwrap();
        assert_eq!(
            (t.pa(DIRECT_MAP_BASE + 0x123_4567), t.size),
            (0x123_4567, PageSize::Size2M)
        );
        assert_eq!(pt.table_pages(), 3);
    }

    #[test]
    fn copied_kernel_half_is_visible_and_survives_user_teardown() {
        let (mut mem, mut fa, mut kpt) = setup();
        let fl = pte::P | pte::RW;
        kpt.map(&mut mem, &mut fa, DIRECT_MAP_BASE, 0, PageSize::Size2M, fl)
            .unwrap();
        let before = fa.in_use();
        let mut upt = PageTable::new(&mut mem, &mut fa).unwrap();
        upt.copy_kernel_half(&mut mem, &kpt.kernel_half());
        assert_eq!(
            upt.translate(&mem, DIRECT_MAP_BASE + 5)
                .unwrap()
                .pa(DIRECT_MAP_BASE + 5),
            5
        );
        upt.map(&mut mem, &mut fa, 0x1000, 0x10_0000, PageSize::Size4K, UF)
            .unwrap();
        upt.free_user_half(&mut mem, &mut fa, [(0x1000, 0x2000, true)], |_, _, _| ());
        upt.free_root(&mut mem, &mut fa);
        assert_eq!(fa.in_use(), before);
        assert!(kpt.translate(&mem, DIRECT_MAP_BASE).is_some());
    }

    #[test]
    fn map_run_maps_free_slots_up_to_table_end() {
        let (mut mem, mut fa, mut pt) = setup();
        pt.map(
            &mut mem,
            &mut fa,
            0x1f_e000,
            0x50_0000,
            PageSize::Size4K,
            UF,
        )
        .unwrap();
        let n = pt
            .map_pages(
                &mut mem,
                &mut fa,
                0x1f_c000,
                0x10_0000,
                16,
                PageSize::Size4K,
                UF,
            )
            .unwrap();
        assert_eq!(n, 3, "4 slots to the table end, one used");
        assert_eq!(pt.translate(&mem, 0x1f_d000).unwrap().frame, 0x10_1000);
        assert_eq!(pt.translate(&mem, 0x1f_e000).unwrap().frame, 0x50_0000);
        assert_eq!(pt.translate(&mem, 0x1f_f000).unwrap().frame, 0x10_3000);
        pt.unmap_range(&mut mem, &mut fa, 0x1f_c000, 0x20_0000, |_, _, _| ())
            .unwrap();
        assert_eq!(pt.table_pages(), 1, "counts stayed exact");
    }

    #[test]
    fn leaf_table_fills_runs_around_the_first_and_keeps_used_entries() {
        let (mut mem, mut fa, mut pt) = setup();
        let ro = pte::P | pte::US;
        let mut t = pt.leaf_table(&mut mem, &mut fa, 0x40_5000).unwrap();
        assert_eq!(t.fill_free(&mut mem, 0x40_4000, 0x10_0000, 4, UF), 4);
        // Below and above the first run: a fresh table's free entries.
        assert_eq!(t.fill_free(&mut mem, 0x40_0000, 0x20_0000, 4, ro), 4);
        assert_eq!(t.fill_free(&mut mem, 0x40_8000, 0x30_0000, 2, ro), 2);
        // Over entries filled before: only the free ones are written.
        assert_eq!(t.fill_free(&mut mem, 0x40_7000, 0x50_0000, 4, ro), 1);
        // Outside the table's region, or not a page address: nothing.
        assert_eq!(t.fill_free(&mut mem, 0x60_0000, 0x50_0000, 1, ro), 0);
        assert_eq!(t.fill_free(&mut mem, 0x5f_f000, 0x50_0000, 2, ro), 0);
        assert_eq!(t.fill_free(&mut mem, 0x41_0000, 0x50_0008, 1, ro), 0);
        let frame = |va| pt.translate(&mem, va).unwrap().frame;
        assert_eq!(frame(0x40_5000), 0x10_1000);
        assert_eq!(frame(0x40_3000), 0x20_3000);
        assert_eq!(frame(0x40_7000), 0x10_3000, "kept");
        assert_eq!(frame(0x40_9000), 0x30_1000, "kept");
        assert_eq!(frame(0x40_a000), 0x50_3000);
        assert_eq!(
            pt.translate(&mem, 0x40_5000).unwrap().flags & pte::RW,
            pte::RW
        );
        assert_eq!(pt.translate(&mem, 0x40_0000).unwrap().flags & pte::RW, 0);
        let mut n = 0;
        pt.unmap_range(&mut mem, &mut fa, 0x40_0000, 0x60_0000, |_, _, l| {
            n += l.pages
        })
        .unwrap();
        assert_eq!((n, pt.table_pages()), (11, 1), "counts stayed exact");
    }

    #[test]
    fn runs_filled_in_address_order_are_written_whole_in_a_fresh_table_and_around_used_entries_in_another(
    ) {
        let (mut mem, mut fa, mut pt) = setup();
        let ro = pte::P | pte::US;
        let mut t = pt.leaf_table(&mut mem, &mut fa, 0x40_5000).unwrap();
        let mut n = t.fill_next_uncounted(&mut mem, 0x40_0000, 0x20_0000 | ro, (1, || false));
        n += t.fill_next_uncounted(&mut mem, 0x40_1000, 0x20_1000 | UF, (3, || false));
        n += t.fill_next_uncounted(&mut mem, 0x5f_e000, 0x30_0000 | ro, (2, || false));
        t.add_to_count(&mut mem, n);
        assert_eq!(n, 6);
        let frame = |pt: &PageTable, mem: &TestMem, va| pt.translate(mem, va).unwrap().frame;
        assert_eq!(frame(&pt, &mem, 0x40_3000), 0x20_3000);
        assert_eq!(frame(&pt, &mem, 0x5f_f000), 0x30_1000);
        // A table in use: its used entries are kept.
        let mut t = pt.leaf_table(&mut mem, &mut fa, 0x40_0000).unwrap();
        let n = t.fill_next_uncounted(&mut mem, 0x40_2000, 0x50_2000 | ro, (4, || false));
        t.add_to_count(&mut mem, n);
        assert_eq!(n, 2, "two of the four were used");
        assert_eq!(frame(&pt, &mem, 0x40_3000), 0x20_3000, "kept");
        assert_eq!(frame(&pt, &mem, 0x40_5000), 0x50_5000);
        let mut n = 0;
        pt.unmap_range(&mut mem, &mut fa, 0x40_0000, 0x60_0000, |_, _, l| {
            n += l.pages
        })
        .unwrap();
        assert_eq!((n, pt.table_pages()), (8, 1), "counts stayed exact");
    }

    #[test]
    fn leaf_table_of_a_used_table_reads_every_entry() {
        let (mut mem, mut fa, mut pt) = setup();
        pt.map(
            &mut mem,
            &mut fa,
            0x40_2000,
            0x50_0000,
            PageSize::Size4K,
            UF,
        )
        .unwrap();
        let mut t = pt.leaf_table(&mut mem, &mut fa, 0x40_0000).unwrap();
        assert_eq!(t.fill_free(&mut mem, 0x40_0000, 0x10_0000, 4, UF), 3);
        assert_eq!(pt.translate(&mem, 0x40_2000).unwrap().frame, 0x50_0000);
        assert_eq!(pt.translate(&mem, 0x40_3000).unwrap().frame, 0x10_3000);
        let mut n = 0;
        pt.unmap_range(&mut mem, &mut fa, 0x40_0000, 0x60_0000, |_, _, l| {
            n += l.pages
        })
        .unwrap();
        assert_eq!((n, pt.table_pages()), (4, 1));
    }

    #[test]
    fn fill_free_packed_fills_a_fresh_table_and_packs_around_used_entries() {
        let (mut mem, mut fa, mut pt) = setup();
        let fresh = pt.fill_free_packed(&mut mem, &mut fa, 0x40_0000, 0x10_0000, 4, UF);
        assert_eq!(fresh, Ok(4), "a new table: every entry free");
        for k in 0..4 {
            let t = pt.translate(&mem, 0x40_0000 + k * PAGE_SIZE).unwrap();
            assert_eq!(t.frame, 0x10_0000 + k * PAGE_SIZE);
        }
        let packed = pt.fill_free_packed(&mut mem, &mut fa, 0x40_2000, 0x20_0000, 4, UF);
        assert_eq!(packed, Ok(2), "two of the four entries were used");
        assert_eq!(pt.translate(&mem, 0x40_2000).unwrap().frame, 0x10_2000);
        assert_eq!(pt.translate(&mem, 0x40_4000).unwrap().frame, 0x20_0000);
        assert_eq!(pt.translate(&mem, 0x40_5000).unwrap().frame, 0x20_1000);
        pt.unmap_range(&mut mem, &mut fa, 0x40_0000, 0x40_6000, |_, _, _| ())
            .unwrap();
        assert_eq!(pt.table_pages(), 1, "counts stayed exact");
    }

    #[test]
    fn fill_free_packed_in_a_used_table_writes_free_stretches_and_traces_each_entry() {
        use vmrun_contract::trace::kind;
        let (mut mem, mut fa, mut pt) = setup();
        pt.map(
            &mut mem,
            &mut fa,
            0x40_0000,
            0x50_0000,
            PageSize::Size4K,
            UF,
        )
        .unwrap();
        mem.trace_mask = category::PAGE_TABLES;
        // Free whole in a table already there: one run.
        let free = pt.fill_free_packed(&mut mem, &mut fa, 0x41_0000, 0x10_0000, 16, UF);
        assert_eq!(free, Ok(16));
        for k in 0..16 {
            let t = pt.translate(&mem, 0x41_0000 + k * PAGE_SIZE).unwrap();
            assert_eq!(t.frame, 0x10_0000 + k * PAGE_SIZE);
        }
        let sets = |mem: &TestMem| {
            let kinds = mem.record_kinds();
            assert!(kinds.iter().all(|&k| k == kind::PTE_SET));
            mem.records.iter().map(|r| r.a[0]).collect::<Vec<_>>()
        };
        let want: Vec<u64> = (0..16).map(|k| 0x41_0000 + k * PAGE_SIZE).collect();
        assert_eq!(sets(&mem), want, "one record per entry written");
        mem.records.clear();
        // Its first pages and one in the middle used: packed around them.
        let used = [0x42_0000, 0x42_1000, 0x42_5000];
        for (k, &va) in used.iter().enumerate() {
            let pa = 0x60_0000 + k as u64 * PAGE_SIZE;
            pt.map(&mut mem, &mut fa, va, pa, PageSize::Size4K, UF)
                .unwrap();
        }
        mem.records.clear();
        let packed = pt.fill_free_packed(&mut mem, &mut fa, 0x42_0000, 0x20_0000, 8, UF);
        assert_eq!(packed, Ok(5));
        let frame = |va| pt.translate(&mem, va).unwrap().frame;
        assert_eq!(frame(0x42_1000), 0x60_1000, "kept");
        assert_eq!(frame(0x42_2000), 0x20_0000);
        assert_eq!(frame(0x42_4000), 0x20_2000);
        assert_eq!(frame(0x42_5000), 0x60_2000, "kept");
        assert_eq!(frame(0x42_6000), 0x20_3000);
        assert_eq!(frame(0x42_7000), 0x20_4000);
        let want = [0x42_2000, 0x42_3000, 0x42_4000, 0x42_6000, 0x42_7000];
        assert_eq!(sets(&mem), want);
        let mut n = 0;
        pt.unmap_range(&mut mem, &mut fa, 0x40_0000, 0x60_0000, |_, _, l| {
            n += l.pages
        })
        .unwrap();
        assert_eq!((n, pt.table_pages()), (25, 1), "counts stayed exact");
    }

    #[test]
    fn protnone_leaf_is_not_present_but_keeps_frame() {
        let (mut mem, mut fa, mut pt) = setup();
        pt.map(&mut mem, &mut fa, 0x1000, 0x10_0000, PageSize::Size4K, UF)
            .unwrap();
        pt.set_flags(&mut mem, 0x1000, pte::PROTNONE | pte::US);
        let t = pt.translate(&mem, 0x1000).unwrap();
        assert_eq!((t.frame, t.flags & pte::P), (0x10_0000, 0));
        let mut n = 0;
        pt.unmap_range(&mut mem, &mut fa, 0, 0x2000, |_, _, l| n += l.pages)
            .unwrap();
        assert_eq!((n, pt.table_pages()), (1, 1));
    }

    #[test]
    fn map_pages_of_2m_fills_one_directory_per_walk() {
        let (mut mem, mut fa, mut pt) = setup();
        let fl = pte::P | pte::RW | pte::NX;
        let va = DIRECT_MAP_BASE + 1020 * MIB; // 2 MiB slot 510 of its PD
        let n = pt
            .map_pages(&mut mem, &mut fa, va, 0, 8, PageSize::Size2M, fl)
            .unwrap();
        assert_eq!(n, 2, "stops at the end of the page directory");
        assert_eq!(pt.table_pages(), 3);
        let t = pt.translate(&mem, va + 2 * MIB + 5).unwrap();
        assert_eq!(
            (t.pa(va + 2 * MIB + 5), t.size),
            (2 * MIB + 5, PageSize::Size2M)
        );
        assert!(pt.translate(&mem, va + 4 * MIB).is_none());
        pt.unmap(&mut mem, va);
        let n = pt
            .map_pages(&mut mem, &mut fa, va, 0x4000_0000, 2, PageSize::Size2M, fl)
            .unwrap();
        assert_eq!(n, 1, "used slot skipped, freed slot refilled");
        assert_eq!(pt.translate(&mem, va).unwrap().frame, 0x4000_0000);
        assert_eq!(
            pt.map_pages(&mut mem, &mut fa, va + 4096, 0, 1, PageSize::Size2M, fl),
            Err(MapError::Misaligned(va + 4096))
        );
    }

    #[test]
    fn map_range_crosses_directories_and_keeps_counts_exact() {
        let (mut mem, mut fa, mut pt) = setup();
        let fl = pte::P | pte::RW | pte::NX;
        let (va, len) = (0x3000_0000, 1536 * MIB); // PDPT slots 0..=2
        pt.map_range(&mut mem, &mut fa, va, 0, len, PageSize::Size2M, fl)
            .unwrap();
        assert_eq!(pt.table_pages(), 1 + 1 + 3);
        for off in [0, 2 * MIB, 1022 * MIB, 1024 * MIB, len - 2 * MIB] {
            let t = pt.translate(&mem, va + off).unwrap();
            assert_eq!((t.frame, t.size), (off, PageSize::Size2M));
        }
        assert!(pt.translate(&mem, va + len).is_none());
        let r = pt.map_range(
            &mut mem,
            &mut fa,
            va - 4 * MIB,
            0,
            8 * MIB,
            PageSize::Size2M,
            fl,
        );
        assert_eq!(r, Err(MapError::AlreadyMapped(va)));
        let mut n = 0;
        pt.unmap_range(&mut mem, &mut fa, 0, USER_HALF_END, |_, _, l| n += l.pages)
            .unwrap();
        // 768 leaves, and the 2 mapped below `va` before the conflict.
        assert_eq!((n, pt.table_pages()), (768 + 2, 1), "counts stayed exact");
    }

    #[test]
    fn map_range_of_4k_pages_uses_runs() {
        let (mut mem, mut fa, mut pt) = setup();
        pt.map_range(
            &mut mem,
            &mut fa,
            0x1f_e000,
            0x10_0000,
            0x3001,
            PageSize::Size4K,
            UF,
        )
        .unwrap();
        assert_eq!(pt.table_pages(), 1 + 1 + 1 + 2);
        for i in 0..4 {
            let t = pt.translate(&mem, 0x1f_e000 + i * PAGE_SIZE).unwrap();
            assert_eq!(t.frame, 0x10_0000 + i * PAGE_SIZE);
        }
        assert!(pt.translate(&mem, 0x20_2000).is_none());
    }

    /// Map a fresh 4 KiB frame at each of `vas`.
    /// Map a 64 KiB block at `va` to 16 consecutive frames, as an
    /// anonymous block fault does; the first frame.
    fn map_block(mem: &mut TestMem, fa: &mut FrameAllocator, pt: &mut PageTable, va: u64) -> u64 {
        let frames = fa.alloc_run_zeroed(mem, 16).unwrap();
        for k in 0..16 {
            let (va, pa) = (va + k * PAGE_SIZE, frames + k * PAGE_SIZE);
            pt.map(mem, fa, va, pa, PageSize::Size4K, UF).unwrap();
        }
        frames
    }

    fn populate(mem: &mut TestMem, fa: &mut FrameAllocator, pt: &mut PageTable, vas: &[u64]) {
        for &va in vas {
            let frame = fa.alloc_zeroed(mem).unwrap();
            pt.map(mem, fa, va, frame, PageSize::Size4K, UF).unwrap();
        }
    }

    #[test]
    fn free_user_half_walks_only_the_ranges_and_frees_every_table() {
        let (mut mem, mut fa, mut pt) = setup();
        let base = fa.in_use();
        let stack_top = 0x7fff_ffff_f000;
        let vas = [
            0x40_0000,
            0x40_1000,
            0x60_0000,
            stack_top - 0x1000,
            stack_top - 0x2_1000,
        ];
        populate(&mut mem, &mut fa, &mut pt, &vas);
        let huge = fa.alloc_huge_zeroed(&mut mem).unwrap();
        pt.map(&mut mem, &mut fa, 0x4000_0000, huge, PageSize::Size2M, UF)
            .unwrap();
        assert!(pt.table_pages() > 1);
        let areas = [
            (0x40_0000, 0x40_2000, true),
            (0x60_0000, 0x60_1000, true),
            (0x4000_0000, 0x4020_0000, true),
            (stack_top - 0x2_2000, stack_top, true),
        ];
        let mut seen = Vec::new();
        pt.free_user_half(&mut mem, &mut fa, areas, |m, fr, l| {
            seen.extend((0..l.pages).map(|k| l.va + k * PAGE_SIZE));
            match l.size {
                PageSize::Size4K => {
                    (0..l.pages).for_each(|k| assert!(fr.free(m, l.frame + k * PAGE_SIZE)))
                }
                PageSize::Size2M => assert!(fr.free_huge(m, l.frame)),
            }
        });
        seen.sort();
        let mut want = vas.to_vec();
        want.push(0x4000_0000);
        want.sort();
        assert_eq!(seen, want);
        assert_eq!(pt.table_pages(), 1, "only the PML4 is left");
        assert_eq!(fa.in_use(), base);
        for i in 0..256 {
            assert_eq!(mem.read_u64(pt.root() + i * 8), 0);
        }
    }

    #[test]
    fn free_user_half_finds_every_leaf_under_many_ranges_in_many_tables() {
        // Ranges in three leaf tables under two PML4 entries, each table
        // reached with ranges before its base (which it skips): every
        // leaf is handed over once, one under no range among them too.
        let (mut mem, mut fa, mut pt) = setup();
        let base = fa.in_use();
        let regions = [0x40_0000u64, 0x80_0000, 0x7f00_0000_0000];
        let mut areas = Vec::new();
        let mut vas = Vec::new();
        for r in regions {
            for k in 0..12u64 {
                let start = r + k * 0x4000;
                areas.push((start, start + 0x2000, true));
                vas.push(start);
                vas.push(start + 0x1000);
            }
        }
        // Between two ranges of the second table, under none.
        vas.push(0x80_0000 + 0x2000);
        populate(&mut mem, &mut fa, &mut pt, &vas);
        let mut seen = Vec::new();
        pt.free_user_half(&mut mem, &mut fa, areas, |m, fr, l| {
            seen.extend((0..l.pages).map(|k| l.va + k * PAGE_SIZE));
            (0..l.pages).for_each(|k| assert!(fr.free(m, l.frame + k * PAGE_SIZE)));
        });
        seen.sort();
        vas.sort();
        assert_eq!(seen, vas);
        assert_eq!(pt.table_pages(), 1, "only the PML4 is left");
        assert_eq!(fa.in_use(), base);
    }

    #[test]
    fn a_fork_copy_takes_a_run_at_once_and_each_entry_keeps_its_own_flags() {
        let (mut mem, mut fa, mut pt) = setup();
        let region = 0x60_0000;
        let frames = map_block(&mut mem, &mut fa, &mut pt, region);
        // The CPU set dirty bits on some: they stay, entry by entry.
        let table = pt.page_table_of(&mem, region).unwrap();
        for k in [1, 7] {
            let e = mem.read_u64(table + k * 8);
            mem.write_u64(table + k * 8, e | pte::A | pte::D);
        }
        let mut child = PageTable::new(&mut mem, &mut fa).unwrap();
        let mut runs = Vec::new();
        let span = (region, region + 16 * PAGE_SIZE);
        pt.copy_leaves(&mut child, &mut mem, &mut fa, span, |_, _, l| {
            runs.push((l.va, l.pages));
            Ok(Some((!pte::RW, !pte::RW)))
        })
        .unwrap();
        assert_eq!(runs, [(region, 16)]);
        for k in 0..16 {
            let va = region + k * PAGE_SIZE;
            let (mine, theirs) = (pt.translate(&mem, va), child.translate(&mem, va));
            let (mine, theirs) = (mine.unwrap(), theirs.unwrap());
            assert_eq!(
                (mine.frame, theirs.frame),
                (frames + k * PAGE_SIZE, mine.frame)
            );
            let dirty = [1, 7].contains(&k);
            for t in [mine, theirs] {
                assert_eq!(t.flags & pte::RW, 0, "copy-on-write in both");
                assert_eq!(t.flags & pte::D != 0, dirty, "page {k}");
            }
        }
        // Asked for them one by one, each comes by itself.
        let mut again = PageTable::new(&mut mem, &mut fa).unwrap();
        let mut ones = Vec::new();
        pt.copy_leaves(&mut again, &mut mem, &mut fa, span, |_, _, l| {
            ones.push(l.pages);
            Ok((l.pages == 1).then_some((!0, !0)))
        })
        .unwrap();
        assert_eq!(ones.len(), 17);
        assert!(ones[1..].iter().all(|&n| n == 1));
        assert!((0..16).all(|k| again.translate(&mem, region + k * PAGE_SIZE).is_some()));
    }

    #[test]
    fn sparse_tables_are_copied_and_freed_entry_for_entry() {
        // Used entries at a table's first and last index, in a dense run,
        // and alone between long free runs (fork and exit skip free runs
        // eight entries a test, and each range may end inside a run).
        let (mut mem, mut fa, mut pt) = setup();
        let region = 0x60_0000;
        let idx = [
            0u64, 1, 2, 3, 4, 5, 6, 7, 8, 9, 17, 100, 101, 255, 256, 510, 511,
        ];
        let vas: Vec<u64> = idx.iter().map(|k| region + k * PAGE_SIZE).collect();
        populate(&mut mem, &mut fa, &mut pt, &vas);
        let mut child = PageTable::new(&mut mem, &mut fa).unwrap();
        // Two ranges, the second starting inside the dense run's free tail
        // and ending on a used entry.
        let ranges = [
            (region, region + 3 * PAGE_SIZE),
            (region + 9 * PAGE_SIZE, region + 257 * PAGE_SIZE),
        ];
        let mut copied = Vec::new();
        for r in ranges {
            pt.copy_leaves(&mut child, &mut mem, &mut fa, r, |_, _, l| {
                copied.extend((0..l.pages).map(|k| l.va + k * PAGE_SIZE));
                Ok(Some((!0, !0)))
            })
            .unwrap();
        }
        let want: Vec<u64> = vas
            .iter()
            .copied()
            .filter(|&va| ranges.iter().any(|&(s, e)| (s..e).contains(&va)))
            .collect();
        assert_eq!(copied, want);
        for va in (region..region + HUGE_PAGE_SIZE).step_by(PAGE_SIZE as usize) {
            let mapped = child.translate(&mem, va).is_some();
            assert_eq!(mapped, want.contains(&va), "{va:#x}");
        }
        // Exit: the leaves under a released range go to `on_leaf`, the
        // others are counted; all are found, every table is freed.
        let areas = [
            (region, region + 3 * PAGE_SIZE, false),
            (region + 3 * PAGE_SIZE, region + 101 * PAGE_SIZE, true),
            (region + 101 * PAGE_SIZE, region + HUGE_PAGE_SIZE, false),
        ];
        let mut released = Vec::new();
        pt.free_user_half(&mut mem, &mut fa, areas, |_, _, l| {
            released.extend((0..l.pages).map(|k| l.va + k * PAGE_SIZE))
        });
        let want: Vec<u64> = vas
            .iter()
            .copied()
            .filter(|&va| (region + 3 * PAGE_SIZE..region + 101 * PAGE_SIZE).contains(&va))
            .collect();
        assert_eq!(released, want);
        assert_eq!(pt.table_pages(), 1, "only the PML4 is left");
        // The default count of used words, over a free run and a used one.
        let table = child.find_leaf_table(&mem, region).unwrap().unwrap().0;
        assert_eq!(
            mem.used_words(table, ENTRIES, USED),
            want_len(&ranges, &vas)
        );
        assert_eq!(mem.used_words(table + 10 * 8, 7, USED), 0);
    }

    #[test]
    fn leaves_under_no_range_are_freed_whether_counted_or_read() {
        // Page-cache leaves are only counted; a used entry under no range
        // is freed all the same, found by reading the entries under no
        // range (fewer than the counted ones) or after the count.
        let region = 0x60_0000;
        let page = |k: u64| region + k * PAGE_SIZE;
        let cases = [
            // Areas end to end but for a 20-page hole holding a leaf.
            vec![(page(0), page(290), false), (page(310), page(512), false)],
            // A small area: the rest of the table is read after the count.
            vec![(page(0), page(3), false)],
        ];
        for areas in cases {
            let (mut mem, mut fa, mut pt) = setup();
            let base = fa.in_use();
            populate(
                &mut mem,
                &mut fa,
                &mut pt,
                &[page(0), page(1), page(300), page(311)],
            );
            let mut released = Vec::new();
            pt.free_user_half(&mut mem, &mut fa, areas.clone(), |m, fr, l| {
                released.extend((0..l.pages).map(|k| l.va + k * PAGE_SIZE));
                (0..l.pages).for_each(|k| _ = fr.free(m, l.frame + k * PAGE_SIZE));
            });
            assert!(released.contains(&page(300)), "{areas:x?}: {released:x?}");
            assert_eq!(pt.table_pages(), 1, "only the PML4 is left");
            // The counted leaves stay allocated (the caller's page cache).
            let counted = 4 - released.len() as u64;
            assert_eq!(fa.in_use(), base + counted);
        }
    }

    /// How many of `vas` lie in `ranges`.
    fn want_len(ranges: &[(u64, u64)], vas: &[u64]) -> u64 {
        vas.iter()
            .filter(|&&va| ranges.iter().any(|&(s, e)| (s..e).contains(&va)))
            .count() as u64
    }

    #[test]
    fn free_user_half_finds_a_pds_one_table_under_the_second_range_or_by_the_loop() {
        // As a stack's PD where the vDSO's table was never made: the one
        // used entry is the second range's first; then one under neither
        // range's start (the loop's); then one the first range reaches
        // into too, where only the second range's leaf is handed over
        // (the first's are page-cache leaves, only counted).
        let (vdso, stack) = (0x7fff_f7ff_7000, 0x7fff_fffd_e000);
        let top = 0x7fff_ffff_f000;
        // (the areas, the pages mapped, the pages handed over)
        type Case<'a> = (&'a [(u64, u64, bool)], &'a [u64], &'a [u64]);
        let cases: [Case; 3] = [
            (
                &[(vdso, vdso + 0x8000, false), (stack, top, true)],
                &[top - 0x1000, top - 0x2000],
                &[top - 0x2000, top - 0x1000],
            ),
            (
                &[(0x40_0000, 0x80_0000, true), (0x100_0000, 0x140_0000, true)],
                &[0x120_0000],
                &[0x120_0000],
            ),
            (
                &[(0x3f_f000, 0x40_1000, false), (0x40_2000, 0x40_4000, true)],
                &[0x40_0000, 0x40_2000],
                &[0x40_2000],
            ),
        ];
        for (areas, vas, want) in cases {
            let (mut mem, mut fa, mut pt) = setup();
            let base = fa.in_use();
            populate(&mut mem, &mut fa, &mut pt, vas);
            let mut seen = Vec::new();
            pt.free_user_half(&mut mem, &mut fa, areas.iter().copied(), |m, fr, l| {
                seen.extend((0..l.pages).map(|k| l.va + k * PAGE_SIZE));
                (0..l.pages).for_each(|k| assert!(fr.free(m, l.frame + k * PAGE_SIZE)));
            });
            seen.sort();
            assert_eq!(seen, want, "areas {areas:x?}");
            assert_eq!(pt.table_pages(), 1, "only the PML4 is left");
            let kept = (vas.len() - want.len()) as u64;
            assert_eq!(fa.in_use(), base + kept, "the counted leaves' frames stay");
        }
    }

    #[test]
    fn free_user_half_hands_over_a_2m_leaf_under_no_range_once() {
        // A 2 MiB leaf in a PD the range does not reach, and one in a PD
        // it does, beside a 4 KiB leaf: each handed over once, with its
        // size, and every table freed.
        let (mut mem, mut fa, mut pt) = setup();
        let base = fa.in_use();
        populate(&mut mem, &mut fa, &mut pt, &[0x1000]);
        let (outside, inside) = (0x4000_0000, 0x20_0000);
        for va in [outside, inside] {
            let huge = fa.alloc_huge_zeroed(&mut mem).unwrap();
            pt.map(&mut mem, &mut fa, va, huge, PageSize::Size2M, UF)
                .unwrap();
        }
        let mut seen = Vec::new();
        let areas = [(0, 0x2000, true), (inside, inside + 0x20_0000, true)];
        pt.free_user_half(&mut mem, &mut fa, areas, |m, fr, l| {
            seen.push((l.va, l.size, l.pages));
            match l.size {
                PageSize::Size4K => assert!(fr.free(m, l.frame)),
                PageSize::Size2M => assert!(fr.free_huge(m, l.frame)),
            }
        });
        seen.sort_by_key(|s| s.0);
        let want = [
            (0x1000, PageSize::Size4K, 1),
            (inside, PageSize::Size2M, 1),
            (outside, PageSize::Size2M, 1),
        ];
        assert_eq!(seen, want);
        assert_eq!(pt.table_pages(), 1, "only the PML4 is left");
        assert_eq!(fa.in_use(), base);
    }

    #[test]
    fn free_user_half_finds_leaves_outside_the_ranges_and_empty_tables() {
        let (mut mem, mut fa, mut pt) = setup();
        let base = fa.in_use();
        populate(
            &mut mem,
            &mut fa,
            &mut pt,
            &[0x1000, 0x7f00_0000_0000, 0x5000_0000],
        );
        // An empty page table left behind by `unmap` (which keeps tables).
        let (frame, _, _) = pt.unmap(&mut mem, 0x5000_0000).unwrap();
        fa.free(&mut mem, frame);
        let mut n = 0;
        pt.free_user_half(&mut mem, &mut fa, [(0, 0x2000, true)], |m, fr, l| {
            n += l.pages;
            (0..l.pages).for_each(|k| _ = fr.free(m, l.frame + k * PAGE_SIZE));
        });
        assert_eq!(n, 2, "the leaf outside the range is found too");
        assert_eq!(pt.table_pages(), 1);
        assert_eq!(fa.in_use(), base);
    }

    #[test]
    fn kernel_half_lists_the_entries_the_kernel_created() {
        let (mut mem, mut fa, mut kpt) = setup();
        let fl = pte::P | pte::RW;
        kpt.map_range(
            &mut mem,
            &mut fa,
            DIRECT_MAP_BASE,
            0,
            8 * MIB,
            PageSize::Size2M,
            fl,
        )
        .unwrap();
        kpt.map(
            &mut mem,
            &mut fa,
            0xffff_ffff_8000_0000,
            0x10_0000,
            PageSize::Size4K,
            fl,
        )
        .unwrap();
        kpt.map(
            &mut mem,
            &mut fa,
            0xffff_ffff_ff5f_f000,
            0x11_0000,
            PageSize::Size4K,
            fl,
        )
        .unwrap();
        let k = kpt.kernel_half();
        assert_eq!(k.root(), kpt.root());
        assert_eq!(
            k,
            KernelHalf::new(kpt.root(), &[index(DIRECT_MAP_BASE, 4), 511])
        );
        // A stray entry the list does not name is not copied.
        mem.write_u64(kpt.root() + 300 * 8, 0x5000 | pte::P);
        let mut upt = PageTable::new(&mut mem, &mut fa).unwrap();
        upt.copy_kernel_half(&mut mem, &k);
        for i in 256..512 {
            let want = match i {
                300 => 0,
                _ => mem.read_u64(kpt.root() + i * 8),
            };
            assert_eq!(mem.read_u64(upt.root() + i * 8), want, "entry {i}");
        }
        assert!(upt.translate(&mem, 0xffff_ffff_ff5f_f000).is_some());
    }

    #[test]
    fn kernel_half_with_too_many_entries_copies_all() {
        let (mut mem, mut fa, kpt) = setup();
        for i in 256..512 {
            mem.write_u64(kpt.root() + i * 8, (i << 12) | pte::P);
        }
        let many: Vec<u64> = (256..256 + KERNEL_TOP_MAX as u64 + 1).collect();
        for used in [many.as_slice(), &[5]] {
            let k = KernelHalf::new(kpt.root(), used);
            let mut upt = PageTable::new(&mut mem, &mut fa).unwrap();
            upt.copy_kernel_half(&mut mem, &k);
            for i in 256..512 {
                assert_eq!(mem.read_u64(upt.root() + i * 8), (i << 12) | pte::P);
            }
            assert_eq!(mem.read_u64(upt.root()), 0, "user half untouched");
        }
    }
}
