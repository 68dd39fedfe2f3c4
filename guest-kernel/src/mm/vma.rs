//! Virtual memory areas (Linux's `vm_area_struct`) and the sorted set of
//! them that describes an address space.
//!
//! [`VmaSet`] keeps the areas sorted by address, with no overlaps, in a
//! B+-tree in the kernel heap ([`super::vma_tree`]): areas are reached by
//! address or by position, and every operation costs the logarithm of the
//! number of areas, up to Linux's 65,530. Adjacent compatible areas are merged the way Linux's `vma_merge`
//! does (same protection and flags, both anonymous or the same file at
//! contiguous offsets, compatible anonymous memory), so that a maps listing
//! matches Linux's.

use super::vma_tree::{self, VmaTree};
use crate::errno::{Errno, KResult};
use alloc::vec::Vec;
use core::ops::BitOr;
use vmrun_contract::layout::PAGE_SIZE;
use vmrun_contract::trace::kind as trace_kind;

/// Most areas one address space may have (Linux's default
/// `vm.max_map_count`). As in Linux, `mmap` refuses a new area once there
/// are more than this many, and a split is refused once there are this
/// many.
pub const MAX_VMAS: usize = 65_530;
/// Gap kept below a stack (`stack_guard_gap`, 256 pages).
pub const STACK_GUARD_GAP: u64 = 256 * PAGE_SIZE;

/// Access rights of an area (the `PROT_*` bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prot(pub u8);

impl Prot {
    /// No access.
    pub const NONE: Prot = Prot(0);
    /// `PROT_READ`.
    pub const READ: Prot = Prot(1);
    /// `PROT_WRITE`.
    pub const WRITE: Prot = Prot(2);
    /// `PROT_EXEC`.
    pub const EXEC: Prot = Prot(4);
    /// Read and write.
    pub const RW: Prot = Prot(3);

    /// The R/W/X bits of a Linux `prot` argument (other bits ignored).
    pub const fn from_linux(prot: u64) -> Prot {
        Prot((prot & 7) as u8)
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Prot) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any access is allowed (Linux's `vma_is_accessible`).
    pub const fn is_accessible(self) -> bool {
        self.0 != 0
    }
}

impl BitOr for Prot {
    type Output = Prot;
    fn bitor(self, rhs: Prot) -> Prot {
        Prot(self.0 | rhs.0)
    }
}

/// Area flags beyond protection (a subset of Linux's `VM_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmFlags(pub u8);

impl VmFlags {
    /// No flags.
    pub const NONE: VmFlags = VmFlags(0);
    /// `VM_GROWSDOWN`: a stack that grows on faults below it.
    pub const GROWSDOWN: VmFlags = VmFlags(1);
    /// `VM_SHARED`: mapped `MAP_SHARED` (behaves as private while there is
    /// one process; kept for the maps listing).
    pub const SHARED: VmFlags = VmFlags(2);
    /// `VM_ACCOUNT`: a private area that has been writable (its memory is
    /// committed). Set when a private area is created or made writable and
    /// never cleared, so, as in Linux, an area made read-only again does
    /// not merge with one that never was writable.
    pub const ACCOUNT: VmFlags = VmFlags(4);
    /// No page has been mapped in the area since `mmap` made it (Linux's
    /// zap of an unpopulated range finds no page tables either): replacing
    /// or unmapping it needs no page-table walk. Set only for the area an
    /// `mmap` makes, whose range it has just found or made empty, and for
    /// the interpreter's file areas an exec makes in a new space; kept by
    /// splits, and by a merge only when both parts have it; cleared by the
    /// first fault in the area and by anything else that maps a page in it
    /// ([`VmaSet::mark_mapped`]). A fact about the page tables, not the
    /// area: [`Self::kind`] leaves it out, and no merge, listing or export
    /// looks at it. A flag bit rather than a field of its own, so that an
    /// area is made with the stores it took before.
    pub const FRESH: VmFlags = VmFlags(8);
    /// No page has been mapped in the area of a forked child since the
    /// fork, which left its entries uncopied (an area that never had a
    /// private page: text, read-only data; see `fork.rs`): as
    /// [`Self::FRESH`] for everything that asks whether pages are mapped
    /// ([`Vma::is_fresh`]), cleared with it; apart from it only for the
    /// boot image's fault-around, which maps such a read-only neighbour as
    /// it mapped it in the parent (and leaves one that `mmap` made fresh to
    /// its own fault).
    pub const UNCOPIED: VmFlags = VmFlags(16);
    /// The bits saying that no page is mapped in the area.
    const NO_PAGES: u8 = Self::FRESH.0 | Self::UNCOPIED.0;

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: VmFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags that make an area what it is: all but [`Self::FRESH`]
    /// and [`Self::UNCOPIED`] (areas whose flags differ only there merge,
    /// and are equal).
    #[inline(always)]
    pub const fn kind(self) -> VmFlags {
        VmFlags(self.0 & !Self::NO_PAGES)
    }

    /// These flags merged with those of the area that follows, `next`:
    /// no page is mapped in the merged area only if neither part has one.
    #[inline(always)]
    pub const fn merged(self, next: VmFlags) -> VmFlags {
        VmFlags(self.0 & (next.0 | !Self::NO_PAGES))
    }
}

/// What fills an area's pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Zero-filled anonymous memory.
    Anon,
    /// A file image (private mapping).
    File {
        /// Index into the [`super::space::FileTable`].
        file: u16,
        /// File offset of the area's start (page aligned).
        offset: u64,
        /// File offset where the data ends: bytes at and after it read as
        /// zero (bss sharing a page with data); `u64::MAX` if none.
        data_end: u64,
    },
}

/// One virtual memory area: `[start, end)`, page aligned.
///
/// Two areas are equal when they describe the same memory:
/// [`VmFlags::FRESH`], a fact about the page tables rather than the area,
/// is not compared.
#[derive(Clone, Copy, Debug, Eq)]
pub struct Vma {
    /// First address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// Access rights.
    pub prot: Prot,
    /// Flags.
    pub flags: VmFlags,
    /// Page contents.
    pub backing: Backing,
    /// Identity of the anonymous memory attached (Linux's `anon_vma`), 0
    /// until the first private page is created; pieces of a split share it.
    pub anon: u32,
}

impl PartialEq for Vma {
    fn eq(&self, other: &Vma) -> bool {
        self.start == other.start
            && self.end == other.end
            && self.prot == other.prot
            && self.flags.kind() == other.flags.kind()
            && self.backing == other.backing
            && self.anon == other.anon
    }
}

impl Vma {
    pub(super) const EMPTY: Vma = Vma::anon(0, 0, Prot::NONE, VmFlags::NONE);

    /// An anonymous area.
    pub const fn anon(start: u64, end: u64, prot: Prot, flags: VmFlags) -> Vma {
        Vma {
            start,
            end,
            prot,
            flags,
            backing: Backing::Anon,
            anon: 0,
        }
    }

    /// A private area of the file image `file` from its start, with no
    /// data end (a special mapping's: the vDSO and its data pages).
    #[inline(always)]
    pub const fn whole_file(start: u64, end: u64, prot: Prot, file: u16) -> Vma {
        Vma {
            backing: Backing::File {
                file,
                offset: 0,
                data_end: u64::MAX,
            },
            ..Vma::anon(start, end, prot, VmFlags::NONE)
        }
    }

    /// Whether no page has been mapped in the area since mmap made it
    /// ([`VmFlags::FRESH`]) or since a fork left its entries uncopied
    /// ([`VmFlags::UNCOPIED`]).
    #[inline(always)]
    pub const fn is_fresh(&self) -> bool {
        self.flags.0 & VmFlags::NO_PAGES != 0
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the area is empty (never true for an area in a set).
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether the area counts as data for `RLIMIT_DATA` (Linux's
    /// `is_data_mapping`: private, writable, not a stack).
    pub fn is_data(&self) -> bool {
        self.prot.contains(Prot::WRITE)
            && !self.flags.contains(VmFlags::SHARED)
            && !self.flags.contains(VmFlags::GROWSDOWN)
    }

    /// Whether `addr` lies inside.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr < self.end
    }

    /// File offset of `addr` for a file-backed area.
    pub fn file_offset(&self, addr: u64) -> Option<u64> {
        match self.backing {
            Backing::File { offset, .. } => Some(offset + (addr - self.start)),
            Backing::Anon => None,
        }
    }

    /// Lowest address the area's guard gap allows a mapping to end at
    /// (Linux's `vm_start_gap`).
    pub fn start_gap(&self) -> u64 {
        if self.flags.contains(VmFlags::GROWSDOWN) {
            self.start.saturating_sub(STACK_GUARD_GAP)
        } else {
            self.start
        }
    }

    /// Split at `addr` (strictly inside): `self` keeps the low part, the
    /// high part is returned with its file offset adjusted.
    fn split_off(&mut self, addr: u64) -> Vma {
        let mut high = *self;
        high.start_at(addr);
        self.end = addr;
        high
    }

    /// Move the start up to `addr` (strictly inside), the file offset
    /// with it: the high part of a split, made in place.
    #[inline(always)]
    pub(super) fn start_at(&mut self, addr: u64) {
        if let Backing::File { offset, .. } = &mut self.backing {
            *offset += addr - self.start;
        }
        self.start = addr;
    }

    /// Whether `self`, lying inside `whole`, is `whole`'s part over its
    /// range (what [`Self::start_at`] and a lower end would cut from it,
    /// [`PartialEq`]'s way: the rights, the anonymous memory and the
    /// backing at the same file offset), compared field by field, with no
    /// copy of `whole` cut.
    #[inline(always)]
    pub(super) fn is_part_of(&self, whole: &Vma) -> bool {
        debug_assert!(whole.start <= self.start && self.end <= whole.end);
        // The rights first: a segment with rights of its own, the common
        // case, is told apart there.
        let same = self.prot == whole.prot && self.flags.kind() == whole.flags.kind();
        if !same || self.anon != whole.anon {
            return false;
        }
        match (self.backing, whole.backing) {
            (Backing::Anon, Backing::Anon) => true,
            (
                Backing::File {
                    file,
                    offset,
                    data_end,
                },
                Backing::File {
                    file: f,
                    offset: o,
                    data_end: d,
                },
            ) => file == f && data_end == d && offset == o.wrapping_add(self.start - whole.start),
            _ => false,
        }
    }

    /// Whether `next` (starting at `self.end`) can be merged into `self`.
    #[inline(always)]
    pub(super) fn can_merge_with(&self, next: &Vma) -> bool {
        self.end == next.start
            && self.prot == next.prot
            && self.flags.kind() == next.flags.kind()
            && (self.anon == 0 || next.anon == 0 || self.anon == next.anon)
            && (matches!((self.backing, next.backing), (Backing::Anon, Backing::Anon))
                || self.merged_backing(next).is_some())
    }

    /// `self` with `next`, which [`Self::can_merge_with`] allows, merged
    /// into it (the merged backing, `next`'s end, the anonymous identity
    /// either has).
    pub(super) fn merged_with(&self, next: &Vma) -> Vma {
        let mut cur = *self;
        if let Some(b) = cur.merged_backing(next) {
            cur.backing = b;
        }
        cur.end = next.end;
        if cur.anon == 0 {
            cur.anon = next.anon;
        }
        // Fresh only if both parts are.
        cur.flags = self.flags.merged(next.flags);
        cur
    }

    /// Whether the backings of `self` and the following `next` are
    /// compatible (both anonymous, or the same file at contiguous offsets).
    pub(crate) fn backing_mergeable(&self, next: &Vma) -> bool {
        self.merged_backing(next).is_some()
    }

    fn merged_backing(&self, next: &Vma) -> Option<Backing> {
        match (self.backing, next.backing) {
            (Backing::Anon, Backing::Anon) => Some(Backing::Anon),
            (
                Backing::File {
                    file: f1,
                    offset: o1,
                    data_end: d1,
                },
                Backing::File {
                    file: f2,
                    offset: o2,
                    data_end: d2,
                },
            ) => {
                let contiguous = f1 == f2 && o1.checked_add(self.len()) == Some(o2);
                let ends_ok = d1 == d2 || (d1 >= o2 && d2 >= o2);
                (contiguous && ends_ok).then_some(Backing::File {
                    file: f1,
                    offset: o1,
                    data_end: d2,
                })
            }
            _ => None,
        }
    }
}

/// The anonymous-memory identity after `last` (never 0, which means
/// none), which becomes the last given out.
#[inline(always)]
pub(super) fn next_anon(last: &mut u32) -> u32 {
    *last = last.wrapping_add(1).max(1);
    *last
}

/// The identity the middle one of three areas in a row (`[prev, v,
/// next]`, as [`VmaSet::around`] reads them) takes from a neighbour it
/// could merge with but for protection, as Linux's
/// `find_mergeable_anon_vma` does: the next area's if that one could
/// merge (none if it has none yet), else the previous area's. A
/// neighbour that does not touch the area (most) is passed with one
/// comparison.
#[inline(always)]
pub(super) fn mergeable_anon([prev, v, next]: [Option<&Vma>; 3]) -> Option<u32> {
    let v = v?;
    if let Some(next) = next.filter(|n| n.start == v.end) {
        if reusable(v, next) {
            return (next.anon != 0).then_some(next.anon);
        }
    }
    let prev = prev.filter(|p| p.end == v.start)?;
    (prev.anon != 0 && reusable(prev, v)).then_some(prev.anon)
}

/// Whether `a` and the following `b` could share anonymous memory: they
/// could merge but for their protection and identities.
#[inline(always)]
fn reusable(a: &Vma, b: &Vma) -> bool {
    a.end == b.start && a.flags.kind() == b.flags.kind() && a.backing_mergeable(b)
}

/// `flags` with [`VmFlags::ACCOUNT`] added if `prot` makes a private area
/// writable (Linux's `accountable_mapping`).
fn accounted(flags: VmFlags, prot: Prot) -> VmFlags {
    if prot.contains(Prot::WRITE) && !flags.contains(VmFlags::SHARED) {
        VmFlags(flags.0 | VmFlags::ACCOUNT.0)
    } else {
        flags
    }
}

/// Areas gathered for [`VmaSet::append`], each checked as it is added,
/// while its fields are still in registers (a second pass over them cost
/// an exec a load and a test per field): in ascending order apart, page
/// aligned, not empty, with [`VmFlags::ACCOUNT`] set as an insert sets it,
/// and the bytes they add summed.
pub struct VmaBatch {
    /// The areas, in the leaf the set takes whole when it is empty.
    leaf: vma_tree::LooseLeaf,
    /// End of the last area added (0 before the first).
    end: u64,
    /// The (total, data) bytes the areas add.
    weight: (u64, u64),
}

impl VmaBatch {
    /// An empty batch.
    pub const fn new() -> Self {
        VmaBatch {
            leaf: vma_tree::LooseLeaf::new(),
            end: 0,
            weight: (0, 0),
        }
    }

    /// Allocate the leaf now, where the caller has few values to keep
    /// across the call, not with the first area (if it cannot be, the
    /// first area tries again, as with none allocated).
    #[inline]
    pub fn allocate(&mut self) {
        self.leaf.reserve(1);
    }

    /// Add the area `make` builds, which spans `[start, end)`, if it lies
    /// past the last area added, is page aligned and not empty, and a leaf
    /// has room for it (and, for the first, can be allocated); false, with
    /// nothing changed, if not (inlined, so that the caller's area is
    /// built in registers).
    #[inline(always)]
    pub fn push_with(&mut self, start: u64, end: u64, make: impl FnOnce() -> Vma) -> bool {
        let bad = start >= end || (start | end) & (PAGE_SIZE - 1) != 0;
        if start < self.end || bad {
            return false;
        }
        let mut vma = Vma {
            start,
            end,
            ..make()
        };
        vma.flags = accounted(vma.flags, vma.prot);
        if !self.leaf.push(vma) {
            return false;
        }
        let len = end - start;
        self.weight.0 += len;
        if vma.is_data() {
            self.weight.1 += len;
        }
        self.end = end;
        true
    }

    /// Add, as [`Self::push_with`] would one by one, the read-only areas
    /// of whole files (the vDSO's: neither accounted nor data) that
    /// `parts` gives, their sizes, rights and files, end to end from
    /// `start`, if they lie past the last area added, page aligned and
    /// not empty, and a leaf has room for them all; false, with nothing
    /// changed, if not. Inlined: with the caller's sizes and rights fixed,
    /// most tests fold away, and the areas are made in their slots.
    #[inline(always)]
    pub fn push_files<const N: usize>(&mut self, start: u64, parts: [(u64, Prot, u16); N]) -> bool {
        let fits = |&(size, prot, _): &(u64, Prot, u16)| {
            size != 0 && size & (PAGE_SIZE - 1) == 0 && !prot.contains(Prot::WRITE)
        };
        let len: u64 = parts.iter().map(|p| p.0).sum();
        let bad = start & (PAGE_SIZE - 1) != 0 || start.checked_add(len).is_none();
        if start < self.end || bad || !parts.iter().all(fits) || !self.leaf.reserve(N) {
            return false;
        }
        let mut at = start;
        for (size, prot, file) in parts {
            self.leaf
                .push_reserved(Vma::whole_file(at, at + size, prot, file));
            at += size;
        }
        self.weight.0 += len;
        self.end = at;
        true
    }

    /// [`Self::push_with`] of `vma`.
    pub fn push(&mut self, vma: Vma) -> bool {
        self.push_with(vma.start, vma.end, || vma)
    }

    /// The areas added, in order.
    #[inline]
    pub fn areas(&self) -> &[Vma] {
        self.leaf.areas()
    }

    /// End of the last area added, 0 if none, `u64::MAX` once closed.
    #[inline]
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Whether no area was added.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.areas().is_empty()
    }

    /// Take no more areas (until [`Self::clear`]): each later one lies
    /// before the end of the last, as for an area out of order.
    #[inline]
    pub fn close(&mut self) {
        self.end = u64::MAX;
    }

    /// Drop the areas added (the batch starts over).
    #[inline]
    pub fn clear(&mut self) {
        self.leaf.clear();
        (self.end, self.weight) = (0, (0, 0));
    }
}

impl Default for VmaBatch {
    fn default() -> Self {
        VmaBatch::new()
    }
}

/// `v` with the protection `prot` and the accounting that goes with it.
fn reprotected(v: Vma, prot: Prot) -> Vma {
    Vma {
        prot,
        flags: accounted(v.flags, prot),
        ..v
    }
}

/// Changes kept between two [`VmaSet::take_journal`] calls.
const JOURNAL: usize = 16;

/// One change to the set, kept for tracing (a `contract::trace::kind`
/// VMA_* kind, the area after the change, and the split address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmaChange {
    /// `VMA_INSERT`, `VMA_SPLIT`, `VMA_MERGE`, `VMA_RESIZE` or `VMA_REMOVE`.
    pub kind: u32,
    /// The area concerned (for a split: the original, before it).
    pub vma: Vma,
    /// The split address (0 for other kinds).
    pub at: u64,
}

/// The sorted, non-overlapping areas of one address space.
#[derive(Debug)]
pub struct VmaSet {
    t: VmaTree,
    /// The changes journaled, in a block of room for [`JOURNAL`] taken at
    /// the first (none while nothing is traced: an address space's set is
    /// made at every fork and boot, and a kilobyte of journal in it cost
    /// some 130 emulated iterations of `rep movs` each time it was made or
    /// moved).
    journal: Vec<VmaChange>,
    journal_lost: u64,
    journaling: bool,
}

impl Default for VmaSet {
    fn default() -> Self {
        Self::new()
    }
}

impl core::ops::Index<usize> for VmaSet {
    type Output = Vma;

    /// The area at position `i` (panics past the end, like a slice).
    #[inline(always)]
    fn index(&self, i: usize) -> &Vma {
        match self.t.get(i) {
            Some(v) => v,
            None => panic!("VMA index {i} out of range"),
        }
    }
}

impl VmaSet {
    /// An empty set.
    pub const fn new() -> Self {
        Self {
            t: VmaTree::new(),
            journal: Vec::new(),
            journal_lost: 0,
            journaling: false,
        }
    }

    /// A copy for a forked child, without its journal (ENOMEM if the areas
    /// do not fit in the kernel heap's budget for them).
    pub fn try_clone(&self) -> KResult<VmaSet> {
        let mut c = VmaSet::new();
        self.copy_into(&mut c)?;
        Ok(c)
    }

    /// Make `to` such a copy in place (ENOMEM, and `to` unchanged, as
    /// [`Self::try_clone`]): as `*to = self.try_clone()?`, without a whole
    /// set built apart and moved in (a fork's child's).
    pub fn copy_into(&self, to: &mut VmaSet) -> KResult<()> {
        self.t.copy_into(&mut to.t)?;
        to.journal = Vec::new();
        to.journal_lost = 0;
        to.journaling = false;
        Ok(())
    }

    /// Whether changes are journaled.
    pub fn journaling(&self) -> bool {
        self.journaling
    }

    /// Keep a journal of changes for tracing (off by default).
    pub fn set_journaling(&mut self, on: bool) {
        self.journaling = on;
    }

    /// Journal a change, if changes are journaled (a test in line, the
    /// rest apart: rare, only while VMAs are traced).
    #[inline(always)]
    fn note(&mut self, kind: u32, vma: Vma, at: u64) {
        if self.journaling {
            self.note_journaled(kind, vma, at);
        }
    }

    #[cold]
    #[inline(never)]
    fn note_journaled(&mut self, kind: u32, vma: Vma, at: u64) {
        // Room for all of them at the first (after it, a push within
        // JOURNAL never grows the block).
        let full = self.journal.len() >= JOURNAL;
        let room = self.journal.capacity() != 0 || self.journal.try_reserve_exact(JOURNAL).is_ok();
        if full || !room {
            self.journal_lost += 1;
            return;
        }
        self.journal.push(VmaChange { kind, vma, at });
    }

    /// Record that area `i` changed its bounds or rights in place.
    pub fn note_resized(&mut self, i: usize) {
        if self.journaling {
            if let Some(v) = self.get(i).copied() {
                self.note(trace_kind::VMA_RESIZE, v, 0);
            }
        }
    }

    /// Hand the journaled changes to `f`, oldest first, and clear them;
    /// returns how many were dropped because the journal was full.
    pub fn take_journal<F: FnMut(&VmaChange)>(&mut self, mut f: F) -> u64 {
        for c in &self.journal {
            f(c);
        }
        self.journal.clear();
        core::mem::take(&mut self.journal_lost)
    }

    /// Number of areas.
    pub fn len(&self) -> usize {
        self.t.len()
    }

    /// Bytes all areas span (Linux's `total_vm`, for `RLIMIT_AS`).
    pub fn total_bytes(&self) -> u64 {
        self.t.bytes()
    }

    /// Bytes the private writable areas other than stacks span (Linux's
    /// `data_vm`, for `RLIMIT_DATA`).
    pub fn data_bytes(&self) -> u64 {
        self.t.data_bytes()
    }

    /// (total, data) bytes of the areas inside `[start, end)`.
    pub fn bytes_in(&self, start: u64, end: u64) -> (u64, u64) {
        let (mut total, mut data) = (0, 0);
        let Some(mut i) = self.find_next(start) else {
            return (0, 0);
        };
        while let Some(v) = self.get(i) {
            if v.start >= end {
                break;
            }
            let len = v.end.min(end) - v.start.max(start);
            total += len;
            if v.is_data() {
                data += len;
            }
            i += 1;
        }
        (total, data)
    }

    /// Whether there are no areas.
    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }

    /// Remove every area.
    pub fn clear(&mut self) {
        self.t.clear();
    }

    /// Iterate over the areas in address order.
    pub fn iter(&self) -> vma_tree::Iter<'_> {
        self.t.iter()
    }

    /// Hand the areas to `f` a leaf of the area tree at a time, in order
    /// (see [`VmaTree::for_each_leaf`]): for the passes over every area.
    #[inline]
    pub fn for_each_leaf(&self, f: impl FnMut(&[Vma])) {
        self.t.for_each_leaf(f)
    }

    /// Clear [`VmFlags::UNCOPIED`] of the areas from position `i` on (in
    /// its leaf of the tree) that start below `hi` (see
    /// [`VmaTree::clear_uncopied`]).
    pub fn clear_uncopied(&mut self, i: usize, hi: u64) {
        self.t.clear_uncopied(i, hi)
    }

    /// Hand every area to `f` in order and mark [`VmFlags::UNCOPIED`]
    /// those it says true for (see [`VmaTree::mark_uncopied_where`]).
    pub fn mark_uncopied_where(&mut self, f: impl FnMut(&Vma) -> bool) {
        self.t.mark_uncopied_where(f)
    }

    /// The area at index `i`.
    #[inline(always)]
    pub fn get(&self, i: usize) -> Option<&Vma> {
        self.t.get(i)
    }

    /// The areas at indexes `i - 1`, `i` and `i + 1` (see
    /// [`VmaTree::around`]).
    #[inline(always)]
    pub fn around(&self, i: usize) -> [Option<&Vma>; 3] {
        self.t.around(i)
    }

    /// The areas of the tree leaf holding index `i` and the index of its
    /// first (see [`VmaTree::leaf_of`]); in line, as that is.
    #[inline(always)]
    pub fn leaf_of(&self, i: usize) -> (&[Vma], usize) {
        self.t.leaf_of(i)
    }

    /// Change area `i` with `f`, which keeps it page aligned and inside
    /// its neighbours' gap.
    pub fn update<F: FnOnce(&mut Vma)>(&mut self, i: usize, f: F) {
        self.t.update(i, f);
    }

    /// Give area `i` an anonymous-memory identity (see
    /// [`VmaTree::attach_anon`]; this changes neither its bounds nor its
    /// order).
    #[inline(always)]
    pub fn attach_anon(&mut self, i: usize, last: &mut u32) {
        self.t.attach_anon(i, last);
    }

    /// Record that a page is mapped in area `i`, which is no longer
    /// [`Vma::is_fresh`] (see [`VmaTree::mark_mapped`]).
    #[inline(always)]
    pub fn mark_mapped(&mut self, i: usize) {
        self.t.mark_mapped(i);
    }

    /// Whether `[start, end)` lies wholly in [`Vma::is_fresh`] areas: no page
    /// is mapped in it, so unmapping it needs no page-table walk. Looks at
    /// the areas of one leaf of the tree only (false if the range reaches
    /// past it, or into a hole).
    pub fn all_fresh(&self, start: u64, end: u64) -> bool {
        self.t.all_fresh(start, end)
    }

    /// [`Self::all_fresh`] of a range inside the hot area only (see
    /// [`VmaTree::hot_fresh`]): two comparisons, no lookup.
    #[inline(always)]
    pub fn hot_fresh(&self, start: u64, end: u64) -> bool {
        self.t.hot_fresh(start, end)
    }

    /// Grow the area that ends at `end` to `new_end`, if an anonymous area
    /// there with `prot` and `flags` could merge with it, it starts at or
    /// above `floor`, and `new_end` lies `room` bytes or more below the
    /// next area's guard gap (false, and no change, otherwise): the
    /// growing heap's path, one descent instead of a lookup, an insert and
    /// a merge.
    #[inline(always)]
    pub fn grow_anon(
        &mut self,
        end: u64,
        new_end: u64,
        (prot, flags): (Prot, VmFlags),
        floor: u64,
        room: u64,
    ) -> bool {
        debug_assert!((end | new_end) & (PAGE_SIZE - 1) == 0);
        let like = (prot, accounted(flags, prot));
        if !self.t.grow_anon(end, new_end, like, floor, room) {
            return false;
        }
        if self.journaling {
            if let Some(i) = self.find(end - 1) {
                self.note_resized(i);
            }
        }
        true
    }

    /// Make area `i` (a new heap area) the one [`Self::grow_anon`] tries
    /// before a search.
    pub fn hint_growth(&mut self, i: usize) {
        self.t.hint_growth(i);
    }

    /// The position of the first area ending after `addr` (`len()` if
    /// none), and that area: one lookup for both.
    #[inline]
    pub fn seek(&self, addr: u64) -> (usize, Option<&Vma>) {
        self.t.seek(addr)
    }

    /// Index of the first area ending after `addr` (Linux's `find_vma`).
    pub fn find_next(&self, addr: u64) -> Option<usize> {
        let (i, v) = self.t.seek(addr);
        v.map(|_| i)
    }

    /// Index of the area containing `addr` and the area, for the fault
    /// path: a copy is kept, so that the next lookup in the same area and
    /// [`Self::get`] of its index cost a comparison or two (any change to
    /// the set drops the copy).
    #[inline]
    pub fn find_hot(&mut self, addr: u64) -> Option<(usize, &Vma)> {
        self.t.find_hot(addr)
    }

    /// [`Self::find_hot`] for a fault, which may map pages in the area
    /// found: that area is marked mapped ([`Self::mark_mapped`]); with
    /// `word`, `fresh` added to it if the area was [`Vma::is_fresh`]
    /// before.
    #[inline(always)]
    pub fn find_hot_mapping(
        &mut self,
        addr: u64,
        word: u64,
        fresh: u64,
    ) -> Option<(usize, &Vma, u64)> {
        self.t.find_hot_mapping(addr, word, fresh)
    }

    /// Index of the area containing `addr`.
    pub fn find(&self, addr: u64) -> Option<usize> {
        match self.t.seek(addr) {
            (i, Some(v)) if v.start <= addr => Some(i),
            _ => None,
        }
    }

    /// The area containing `addr` (as [`Self::find`], without a second
    /// search for the area of the index, and leaving the hot area as it
    /// is).
    pub fn area_at(&self, addr: u64) -> Option<&Vma> {
        self.t.seek(addr).1.filter(|v| v.start <= addr)
    }

    /// Whether any area intersects `[start, end)`.
    pub fn intersects(&self, start: u64, end: u64) -> bool {
        self.t.seek(start).1.is_some_and(|v| v.start < end)
    }

    /// Insert an area that overlaps none (EEXIST if it does, EINVAL if it
    /// is empty or unaligned, ENOMEM if the set already holds more than
    /// [`MAX_VMAS`], as Linux's `mmap` checks, or the kernel heap's budget
    /// for areas is used up); returns its index.
    pub fn insert(&mut self, vma: Vma) -> KResult<usize> {
        let i = self.free_position(&vma)?;
        self.insert_at(i, vma)
    }

    /// Keep area `i` hot (see [`VmaTree::make_hot`]): for an area faulted
    /// in at once.
    #[inline]
    pub fn make_hot(&mut self, i: usize) {
        if !self.t.is_hot(i) {
            self.t.make_hot(i);
        }
    }

    /// Where `vma` goes: EINVAL if it is empty or unaligned, EEXIST if it
    /// overlaps an area.
    #[inline(always)]
    fn free_position(&self, vma: &Vma) -> KResult<usize> {
        if vma.is_empty() || (vma.start | vma.end) & (PAGE_SIZE - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        // Past the last area (an exec adds its areas in address order):
        // no search.
        let past_last = self.t.last_end().is_none_or(|end| end <= vma.start);
        if past_last {
            return Ok(self.len());
        }
        // In the gap a top-down search just found (an mmap's): no search.
        if let Some(i) = self.t.hinted_slot(vma.start, vma.end) {
            return Ok(i);
        }
        let (i, next) = self.t.seek(vma.start);
        if next.is_some_and(|v| v.start < vma.end) {
            return Err(Errno::EEXIST);
        }
        Ok(i)
    }

    /// [`Self::insert`] of a page-aligned `vma` at position `i`, which the
    /// caller's own lookup ([`Self::seek`] of `vma.start`) found free
    /// room at: no search.
    #[inline(always)]
    pub fn insert_at(&mut self, i: usize, mut vma: Vma) -> KResult<usize> {
        debug_assert_eq!(self.t.seek(vma.start).0, i);
        debug_assert!(!self.intersects(vma.start, vma.end));
        vma.flags = accounted(vma.flags, vma.prot);
        if self.len() > MAX_VMAS {
            return Err(Errno::ENOMEM);
        }
        self.t.insert_at(i, vma)?;
        self.note(trace_kind::VMA_INSERT, vma, 0);
        Ok(i)
    }

    /// Insert the areas of `batch` as [`Self::insert`] would one by one,
    /// without a search per area, when they lie past the last area and
    /// the set is empty (it takes the batch's leaf whole: exec's segments,
    /// vDSO and stack) or one leaf with room for them; the batch is then
    /// empty and the last area hot. False, with nothing inserted,
    /// otherwise (the caller inserts them one at a time, which reports
    /// what is wrong).
    #[inline]
    pub fn append(&mut self, batch: &mut VmaBatch) -> bool {
        let Some(first) = batch.areas().first() else {
            return true;
        };
        if self.t.last_end().is_some_and(|end| end > first.start) {
            return false;
        }
        let n = batch.areas().len();
        if !self.t.append_leaf(&mut batch.leaf, batch.weight) {
            return false;
        }
        if self.journaling {
            self.note_appended(n);
        }
        batch.clear();
        true
    }

    /// Journal the insertion of the last `n` areas (out of line: the
    /// journal is kept only while VMAs are traced).
    #[inline(never)]
    fn note_appended(&mut self, n: usize) {
        for i in self.len() - n..self.len() {
            if let Some(&v) = self.t.get(i) {
                self.note(trace_kind::VMA_INSERT, v, 0);
            }
        }
    }

    /// [`Self::insert`], then merge with compatible neighbours; returns the
    /// index of the area now containing `vma.start`.
    #[inline]
    pub fn insert_merged(&mut self, vma: Vma) -> KResult<usize> {
        // Into a one-leaf tree with room (a fresh mmap's, as a rule): put
        // in or merged in place (see [`VmaTree::insert_merged_in_leaf`]);
        // with the journal on, the steps record each change.
        let aligned = (vma.start | vma.end) & (PAGE_SIZE - 1) == 0;
        if !self.journaling && vma.start < vma.end && aligned {
            let new = Vma {
                flags: accounted(vma.flags, vma.prot),
                ..vma
            };
            if let Some(i) = self.t.insert_merged_in_leaf(new) {
                return Ok(i);
            }
        }
        self.insert_merged_by_steps(vma)
    }

    /// [`Self::insert_merged`] by an insert and merges, each a step of its
    /// own (out of line: the one leaf's path saves no registers for it).
    #[inline(never)]
    fn insert_merged_by_steps(&mut self, vma: Vma) -> KResult<usize> {
        let i = self.insert(vma)?;
        Ok(self.merge_around(i))
    }

    fn can_merge(&self, i: usize) -> bool {
        match self.t.pair(i) {
            (Some(a), Some(b)) => a.can_merge_with(b),
            _ => false,
        }
    }

    /// Merge area `i` with compatible neighbours; returns the index of the
    /// area now holding area `i`'s range.
    pub fn merge_around(&mut self, i: usize) -> usize {
        if self.can_merge(i) {
            self.merge_pair(i);
        }
        if i > 0 && self.can_merge(i - 1) {
            self.merge_pair(i - 1);
            return i - 1;
        }
        i
    }

    /// Merge compatible neighbours among areas `lo..=hi` (clamped).
    pub fn merge_range(&mut self, lo: usize, hi: usize) {
        let hi = hi.min(self.len().saturating_sub(1));
        let mut j = hi;
        while j > lo {
            if self.can_merge(j - 1) {
                self.merge_pair(j - 1);
            }
            j -= 1;
        }
    }

    /// Make `addr` an area boundary, splitting the area it lies strictly
    /// inside (ENOMEM if the set already holds [`MAX_VMAS`] areas, as
    /// Linux's `split_vma` checks, or the heap's budget is used up).
    pub fn split_at(&mut self, addr: u64) -> KResult<()> {
        if self.len() >= MAX_VMAS && self.splits_needed(addr, addr) > 0 {
            return Err(Errno::ENOMEM);
        }
        self.split_unchecked(addr).map(|_| ())
    }

    /// [`Self::split_at`] without the count limit; whether it split.
    fn split_unchecked(&mut self, addr: u64) -> KResult<bool> {
        let Some(i) = self.find(addr) else {
            return Ok(false);
        };
        let v = self[i];
        if v.start == addr {
            return Ok(false);
        }
        self.split_area(i, v, addr).map(|_| true)
    }

    /// Make `addr` an area boundary as [`Self::split_unchecked`] does;
    /// returns whether it split and the index of the first area past
    /// `addr` after it (found by the same lookup).
    fn split_below(&mut self, addr: u64) -> KResult<(bool, Option<usize>)> {
        let (i, v) = match self.t.seek(addr) {
            (i, Some(&v)) => (i, v),
            (_, None) => return Ok((false, None)),
        };
        if v.start >= addr {
            return Ok((false, Some(i)));
        }
        self.split_area(i, v, addr)?;
        Ok((true, Some(i + 1)))
    }

    /// Split area `i` (`v`) at `addr`, strictly inside it; returns the
    /// high part (now area `i + 1`).
    fn split_area(&mut self, i: usize, v: Vma, addr: u64) -> KResult<Vma> {
        self.t.split_in_two(i, addr)?;
        self.note(trace_kind::VMA_SPLIT, v, addr);
        let mut high = v;
        high.start_at(addr);
        Ok(high)
    }

    /// Slots splits at `start` and at `end` would need (0, 1 or 2; one
    /// split when they are equal).
    pub fn splits_needed(&self, start: u64, end: u64) -> usize {
        let inside = |a: u64| self.find(a).is_some_and(|i| self[i].start != a);
        inside(start) as usize + (end != start && inside(end)) as usize
    }

    /// Remove `[start, end)` from the set, splitting areas that straddle
    /// its ends, and report each removed piece. ENOMEM (and no change) if
    /// a hole punched in one area would exceed [`MAX_VMAS`] or the heap's
    /// budget for areas. Returns the position an area of `[start, end)`
    /// now takes (for [`Self::insert_at`]: a MAP_FIXED mapping's).
    pub fn remove_range<F: FnMut(&Vma)>(
        &mut self,
        start: u64,
        end: u64,
        mut on_removed: F,
    ) -> KResult<usize> {
        if start >= end {
            return Ok(self.t.seek(start).0);
        }
        if self.len() >= MAX_VMAS && self.punches_hole(start, end) {
            return Err(Errno::ENOMEM);
        }
        // The range inside one area of a one-leaf tree (a whole mapping
        // unmapped, or an end of one): cut in place, with no split to
        // find (with the journal on, the steps below record each change).
        if !self.journaling {
            if let Some(i) = self.t.remove_in_one_area(start, end, &mut on_removed) {
                return Ok(i);
            }
        }
        let Some(lo) = self.split_ends(start, end)? else {
            return Ok(self.len());
        };
        while let Some(v) = self.t.get(lo).copied() {
            if v.start >= end {
                break;
            }
            on_removed(&v);
            self.note(trace_kind::VMA_REMOVE, v, 0);
            self.t.remove_at(lo);
        }
        Ok(lo)
    }

    /// Put `vma` (page aligned, not empty) in place of what its range
    /// holds, as [`Self::remove_range`] and [`Self::insert_at`] do, with
    /// the same records (a MAP_FIXED mapping, once its pages are gone);
    /// returns its position. When one area (after the splits) spans the
    /// range exactly, it is changed in place: nothing moves in the tree.
    pub fn replace_range(&mut self, vma: Vma) -> KResult<usize> {
        if self.len() >= MAX_VMAS && self.punches_hole(vma.start, vma.end) {
            return Err(Errno::ENOMEM);
        }
        let lo = self.split_ends(vma.start, vma.end)?;
        let old = lo.and_then(|i| Some((i, *self.t.get(i)?)));
        if let Some((i, old)) = old.filter(|(_, o)| o.start == vma.start && o.end == vma.end) {
            let mut new = vma;
            new.flags = accounted(vma.flags, vma.prot);
            self.note(trace_kind::VMA_REMOVE, old, 0);
            self.t.replace_at(i, new);
            self.note(trace_kind::VMA_INSERT, new, 0);
            return Ok(i);
        }
        let i = self.remove_range(vma.start, vma.end, |_| ())?;
        self.insert_at(i, vma)
    }

    /// [`Self::replace_range`] and [`Self::merge_around`] of `vma` in one
    /// step, when its range lies inside one [`Vma::is_fresh`] area of a
    /// one-leaf tree with room (see [`VmaTree::replace_in_fresh_area`]):
    /// no page is mapped there, so none needs unmapping first. The
    /// position of the area now holding `vma.start`; None, with nothing
    /// changed, otherwise (and while the journal is on, so that the
    /// general path records each step).
    #[inline]
    pub fn replace_in_fresh_area(&mut self, vma: Vma) -> Option<usize> {
        if self.journaling {
            return None;
        }
        let new = Vma {
            flags: accounted(vma.flags, vma.prot),
            ..vma
        };
        self.t.replace_in_fresh_area(new)
    }

    /// Make `start` and `end` area boundaries (ENOMEM, and no change, if
    /// a split fails); returns the position of the first area past
    /// `start`, if any.
    fn split_ends(&mut self, start: u64, end: u64) -> KResult<Option<usize>> {
        let (split, lo) = self.split_below(start)?;
        let Some(lo) = lo else {
            return Ok(None);
        };
        // The area holding `end`, if any, is at or past `lo` (which
        // stays): found by stepping from it, not searched for.
        let mut j = lo;
        while let Some(v) = self.t.get(j).copied() {
            if v.end > end {
                if v.start < end {
                    if let Err(e) = self.split_area(j, v, end) {
                        // Undo the first split so that a failure changes
                        // nothing.
                        if split && lo > 0 {
                            self.merge_pair_quiet(lo - 1);
                        }
                        return Err(e);
                    }
                }
                break;
            }
            j += 1;
        }
        Ok(Some(lo))
    }

    /// Whether `[start, end)` lies strictly inside one area.
    pub fn punches_hole(&self, start: u64, end: u64) -> bool {
        self.find(start)
            .is_some_and(|i| self[i].start < start && self[i].end > end)
    }

    /// Set `prot` on `[start, end)`, splitting at its ends and merging
    /// afterwards. Like Linux's mprotect it works through the areas from
    /// `start` and stops at the first hole: returns the address where it
    /// stopped (`end` when the range is fully covered). ENOMEM (no change)
    /// if `start` is not mapped or the splits need slots that are not free.
    #[inline]
    pub fn set_prot(&mut self, start: u64, end: u64, prot: Prot) -> KResult<u64> {
        // The head, tail or whole of one area in a one-leaf tree: changed
        // in place, in line (with the journal on, the general path records
        // each step).
        if !self.journaling
            && self
                .t
                .reprotect_one_area(start, end, |v| (prot, accounted(v.flags, prot)))
        {
            return Ok(end);
        }
        self.set_prot_general(start, end, prot)
    }

    /// [`Self::set_prot`] by splits, changes and merges, each a step of
    /// its own.
    #[inline(never)]
    fn set_prot_general(&mut self, start: u64, end: u64, prot: Prot) -> KResult<u64> {
        if let (i, Some(&v)) = self.t.seek(start) {
            if v.start <= start && end <= v.end {
                return self.set_prot_inside(i, v, start, end, prot).map(|_| end);
            }
        }
        if self.find(start).is_none() || self.len() + self.splits_needed(start, end) > MAX_VMAS {
            return Err(Errno::ENOMEM);
        }
        self.split_at(start)?;
        // Split at `end` only if the areas reach it: like Linux, an
        // mprotect that stops at a hole leaves the areas past it whole.
        if self.covered_until(start, end) >= end {
            self.split_at(end)?;
        }
        let first = self.find(start).ok_or(Errno::ENOMEM)?;
        let (mut i, mut reached) = (first, start);
        while let Some(v) = self.t.get(i).copied() {
            if v.start != reached || reached >= end {
                break;
            }
            self.reprotect(i, v, prot);
            reached = v.end;
            i += 1;
        }
        self.merge_range(first.saturating_sub(1), i);
        Ok(reached)
    }

    /// [`Self::set_prot`] of `[start, end)` inside area `i` (`v`): the same
    /// splits, change and merges, found without looking the area up again.
    fn set_prot_inside(
        &mut self,
        i: usize,
        v: Vma,
        start: u64,
        end: u64,
        prot: Prot,
    ) -> KResult<()> {
        let splits = usize::from(start > v.start) + usize::from(end < v.end);
        if self.len() + splits > MAX_VMAS {
            return Err(Errno::ENOMEM);
        }
        let i = match (start > v.start, end < v.end) {
            // One split (RELRO's mprotect of a segment's head, a guard
            // page at an end): the changed part goes into the set changed.
            (true, false) => {
                self.split_reprotect(i, v, start, prot, false)?;
                i + 1
            }
            (false, true) => {
                self.split_reprotect(i, v, end, prot, true)?;
                i
            }
            (false, false) => {
                self.reprotect(i, v, prot);
                i
            }
            (true, true) => {
                let mid = self.split_area(i, v, start)?;
                self.split_area(i + 1, mid, end)?;
                self.reprotect(i + 1, Vma { end, ..mid }, prot);
                i + 1
            }
        };
        // A part split off keeps the old protection: it cannot merge back
        // unless that is the new one too. Only the neighbours can.
        let changed = reprotected(v, prot);
        let same = changed.prot == v.prot && changed.flags.kind() == v.flags.kind();
        let lo = match start > v.start && !same {
            true => i,
            false => i.saturating_sub(1),
        };
        let hi = if end < v.end && !same { i } else { i + 1 };
        self.merge_range(lo, hi);
        Ok(())
    }

    /// Give area `i` (`v`) the protection `prot` (and the accounting that
    /// goes with it), journaled as a resize.
    fn reprotect(&mut self, i: usize, v: Vma, prot: Prot) {
        let changed = reprotected(v, prot);
        self.t.update(i, |a| *a = changed);
        self.note(trace_kind::VMA_RESIZE, changed, 0);
    }

    /// [`Self::split_area`] of area `i` (`v`) at `addr`, then
    /// [`Self::reprotect`] of its low part if `low`, else of its high part,
    /// with the same result and journal, each part written once.
    fn split_reprotect(
        &mut self,
        i: usize,
        v: Vma,
        addr: u64,
        prot: Prot,
        low: bool,
    ) -> KResult<()> {
        let mut lo = v;
        let mut hi = lo.split_off(addr);
        let changed = if low { &mut lo } else { &mut hi };
        *changed = reprotected(*changed, prot);
        self.t.split_at(i, lo, hi)?;
        if self.journaling {
            self.note(trace_kind::VMA_SPLIT, v, addr);
            self.note(trace_kind::VMA_RESIZE, if low { lo } else { hi }, 0);
        }
        Ok(())
    }

    /// Where the areas running without a hole from the one holding
    /// `start` stop (at most `end`; `start` if none holds it).
    fn covered_until(&self, start: u64, end: u64) -> u64 {
        let mut reached = start;
        let Some(mut i) = self.find(start) else {
            return start;
        };
        while let Some(v) = self.t.get(i) {
            if v.start > reached || reached >= end {
                break;
            }
            reached = v.end;
            i += 1;
        }
        reached.min(end)
    }

    /// The highest `len`-byte free range in `[low, high)` that respects
    /// stack guard gaps (Linux's `unmapped_area_topdown`); `len` is page
    /// aligned. Returns its start.
    pub fn find_gap_top_down(&self, len: u64, low: u64, high: u64) -> Option<u64> {
        self.t.find_gap_top_down(len, low, high)
    }

    /// Merge area `i + 1` into area `i`.
    fn merge_pair(&mut self, i: usize) {
        if let Some(m) = self.merge_pair_quiet(i) {
            self.note(trace_kind::VMA_MERGE, m, 0);
        }
    }

    /// Merge area `i + 1` into area `i` without journaling; returns the
    /// merged area.
    fn merge_pair_quiet(&mut self, i: usize) -> Option<Vma> {
        let next = self.t.get(i + 1).copied()?;
        let cur = self.t.get(i)?.merged_with(&next);
        self.t.remove_at(i + 1);
        self.t.update(i, |a| *a = cur);
        Some(cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exec-like areas: file text, writable data, bss, far-off stack.
    fn exec_areas() -> [Vma; 4] {
        let file = Backing::File {
            file: 3,
            offset: 0,
            data_end: u64::MAX,
        };
        [
            Vma {
                backing: file,
                ..Vma::anon(0x40_0000, 0x40_2000, Prot::READ, VmFlags::NONE)
            },
            Vma {
                backing: file,
                ..Vma::anon(0x40_2000, 0x40_3000, Prot::RW, VmFlags::NONE)
            },
            Vma::anon(0x40_3000, 0x40_5000, Prot::RW, VmFlags::NONE),
            Vma::anon(0x7fff_0000, 0x7fff_2000, Prot::RW, VmFlags::GROWSDOWN),
        ]
    }

    fn journal(set: &mut VmaSet) -> alloc::vec::Vec<VmaChange> {
        let mut out = alloc::vec::Vec::new();
        set.take_journal(|c| out.push(*c));
        out
    }

    #[test]
    fn is_part_of_matches_the_cut_piece_compared_whole() {
        let whole = Vma {
            anon: 3,
            ..exec_areas()[1]
        };
        let whole = Vma {
            end: 0x40_6000,
            ..whole
        };
        let file = |offset, data_end| Backing::File {
            file: 3,
            offset,
            data_end,
        };
        let cut = |start, end| {
            let mut piece = whole;
            piece.start_at(start);
            piece.end = end;
            piece
        };
        let fresh = VmFlags(whole.flags.0 | VmFlags::FRESH.0);
        let cases = [
            cut(0x40_3000, 0x40_5000),
            cut(0x40_2000, 0x40_6000),
            Vma {
                flags: fresh,
                ..cut(0x40_4000, 0x40_5000)
            },
            Vma {
                backing: file(0, u64::MAX),
                ..cut(0x40_3000, 0x40_4000)
            },
            Vma {
                backing: file(0x1000, 0x9000),
                ..cut(0x40_3000, 0x40_4000)
            },
            Vma {
                backing: Backing::File {
                    file: 4,
                    offset: 0x1000,
                    data_end: u64::MAX,
                },
                ..cut(0x40_3000, 0x40_4000)
            },
            Vma {
                backing: Backing::Anon,
                ..cut(0x40_3000, 0x40_4000)
            },
            Vma {
                prot: Prot::READ,
                ..cut(0x40_3000, 0x40_4000)
            },
            Vma {
                flags: VmFlags::SHARED,
                ..cut(0x40_3000, 0x40_4000)
            },
            Vma {
                anon: 0,
                ..cut(0x40_3000, 0x40_4000)
            },
        ];
        let expect = [
            true, true, true, false, false, false, false, false, false, false,
        ];
        for (v, want) in cases.iter().zip(expect) {
            let piece = cut(v.start, v.end);
            assert_eq!(v.is_part_of(&whole), piece == *v, "{v:?}");
            assert_eq!(v.is_part_of(&whole), want, "{v:?}");
        }
        let anon = Vma::anon(0x1000, 0x5000, Prot::RW, VmFlags::NONE);
        let inner = Vma::anon(0x2000, 0x3000, Prot::RW, VmFlags::NONE);
        assert!(inner.is_part_of(&anon));
        assert!(!Vma { anon: 7, ..inner }.is_part_of(&anon));
    }

    #[test]
    fn append_matches_inserts_one_by_one() {
        let (mut one, mut batch) = (VmaSet::new(), VmaSet::new());
        one.set_journaling(true);
        batch.set_journaling(true);
        for v in exec_areas() {
            one.insert(v).unwrap();
        }
        let areas = exec_areas();
        let (low, high) = areas.split_at(2);
        assert!(batch.append(&mut batch_of(low)), "into the empty set");
        assert!(batch.append(&mut batch_of(high)), "past the last area");
        assert_eq!(
            one.iter().collect::<alloc::vec::Vec<_>>(),
            batch.iter().collect::<alloc::vec::Vec<_>>()
        );
        assert_eq!(
            (one.len(), one.total_bytes(), one.data_bytes()),
            (batch.len(), batch.total_bytes(), batch.data_bytes())
        );
        assert!(batch.get(1).unwrap().flags.contains(VmFlags::ACCOUNT));
        assert_eq!(journal(&mut one), journal(&mut batch));
        // The set goes on as one built by inserts.
        let heap = Vma::anon(0x40_5000, 0x40_6000, Prot::RW, VmFlags::NONE);
        assert_eq!(batch.insert_merged(heap), one.insert_merged(heap));
        assert_eq!(batch.find(0x40_5800), one.find(0x40_5800));
    }

    /// A batch of `areas`, all of which it takes.
    fn batch_of(areas: &[Vma]) -> VmaBatch {
        let mut b = VmaBatch::new();
        for v in areas {
            assert!(b.push(*v), "{v:?}");
        }
        b
    }

    #[test]
    fn a_batch_refuses_disorder_overlap_bad_areas_and_more_than_a_leaf() {
        let refused = |f: fn(&mut [Vma; 4])| {
            let mut a = exec_areas();
            f(&mut a);
            let mut b = VmaBatch::new();
            let taken = a.iter().take_while(|v| b.push(**v)).count();
            assert!(taken < a.len(), "{a:?}");
            assert_eq!(b.areas().len(), taken, "a refused area changes nothing");
        };
        refused(|a| a.swap(0, 3));
        refused(|a| a[2].start = 0x40_2000);
        refused(|a| a[1].end = a[1].start);
        refused(|a| a[3].end += 1);
        let mut many = [Vma::anon(0, 0, Prot::RW, VmFlags::NONE); vma_tree::LEAF_CAP + 1];
        for (k, v) in many.iter_mut().enumerate() {
            (v.start, v.end) = ((k as u64 + 1) << 12, (k as u64 + 2) << 12);
        }
        let mut b = VmaBatch::new();
        let taken = many.iter().take_while(|v| b.push(**v)).count();
        assert_eq!(taken, vma_tree::LEAF_CAP, "a leaf's worth");
        b.clear();
        assert!(b.is_empty() && b.end() == 0);
        assert!(b.push(many[0]), "a cleared batch starts over");
    }

    #[test]
    fn whole_files_join_a_batch_as_one_by_one_or_not_at_all() {
        let code = Prot(Prot::READ.0 | Prot::EXEC.0);
        let parts = [
            (0x4000, Prot::READ, 7),
            (0x2000, Prot::READ, 8),
            (0x2000, code, 9),
        ];
        let base = 0x7fff_f7ff_7000;
        let mut b = batch_of(&exec_areas());
        assert!(b.push_files(base, parts));
        let mut at = base;
        let mut one = batch_of(&exec_areas());
        for (size, prot, file) in parts {
            assert!(one.push(Vma::whole_file(at, at + size, prot, file)));
            at += size;
        }
        assert_eq!(b.areas(), one.areas());
        assert_eq!((b.end(), b.weight), (one.end(), one.weight));
        let refused = |start: u64, parts: [(u64, Prot, u16); 3]| {
            let mut b = batch_of(&exec_areas());
            let before = (b.areas().len(), b.end(), b.weight);
            assert!(!b.push_files(start, parts), "{start:#x} {parts:?}");
            assert_eq!((b.areas().len(), b.end(), b.weight), before);
        };
        refused(0x40_1000, parts);
        refused(base + 8, parts);
        refused(base, [parts[0], (0, Prot::READ, 8), parts[2]]);
        refused(base, [parts[0], (0x1800, Prot::READ, 8), parts[2]]);
        refused(base, [parts[0], (0x2000, Prot::RW, 8), parts[2]]);
        refused(!0xfff, parts);
        let mut full = VmaBatch::new();
        for k in 0..vma_tree::LEAF_CAP as u64 - 2 {
            assert!(full.push(Vma::anon(k << 12, (k + 1) << 12, Prot::RW, VmFlags::NONE)));
        }
        assert!(!full.push_files(base, parts), "room for two only");
        assert_eq!(full.areas().len(), vma_tree::LEAF_CAP - 2);
    }

    #[test]
    fn a_closed_batch_takes_nothing_until_cleared() {
        let mut b = batch_of(&exec_areas()[..2]);
        b.close();
        let areas = exec_areas();
        assert!(!b.push(areas[2]));
        assert!(!b.push_files(0x7fff_f7ff_7000, [(0x1000, Prot::READ, 1)]));
        assert_eq!(b.areas().len(), 2);
        b.clear();
        assert!(b.push(areas[0]), "cleared, it starts over");
    }

    #[test]
    fn append_leaves_areas_below_the_last_and_a_full_leaf_to_inserts() {
        let mut set = VmaSet::new();
        set.insert(exec_areas()[3]).unwrap();
        let mut below = batch_of(&exec_areas()[..3]);
        assert!(!set.append(&mut below), "below");
        assert_eq!(below.areas().len(), 3, "the batch is kept for inserts");
        assert_eq!(set.len(), 1);
        let mut many = [Vma::anon(0, 0, Prot::RW, VmFlags::NONE); vma_tree::LEAF_CAP + 1];
        for (k, v) in many.iter_mut().enumerate() {
            (v.start, v.end) = ((k as u64 + 1) << 12, (k as u64 + 2) << 12);
        }
        let mut set = VmaSet::new();
        let (leaf, more) = many.split_at(vma_tree::LEAF_CAP);
        assert!(set.append(&mut batch_of(leaf)));
        assert!(!set.append(&mut batch_of(more)), "the leaf is full");
        assert_eq!(set.len(), vma_tree::LEAF_CAP);
        set.insert(more[0]).unwrap();
        assert_eq!(set.len(), vma_tree::LEAF_CAP + 1, "a full leaf splits");
    }

    #[test]
    fn area_made_read_only_does_not_merge_with_one_never_writable() {
        let mut set = VmaSet::new();
        set.insert(Vma::anon(0x1000, 0x2000, Prot::READ, VmFlags::NONE))
            .unwrap();
        set.insert(Vma::anon(0x2000, 0x3000, Prot::RW, VmFlags::NONE))
            .unwrap();
        set.set_prot(0x2000, 0x3000, Prot::READ).unwrap();
        assert_eq!(set.len(), 2, "VM_ACCOUNT keeps them apart, as in Linux");
        assert!(set.get(1).unwrap().flags.contains(VmFlags::ACCOUNT));
        assert!(!set.get(0).unwrap().flags.contains(VmFlags::ACCOUNT));
    }

    #[test]
    fn set_prot_inside_one_area_is_the_splits_then_the_change() {
        let file = |offset| Backing::File {
            file: 3,
            offset,
            data_end: u64::MAX,
        };
        let areas = [
            Vma {
                backing: file(0),
                ..Vma::anon(0x40_0000, 0x40_1000, Prot::READ, VmFlags::NONE)
            },
            Vma {
                backing: file(0x1000),
                ..Vma::anon(0x40_1000, 0x40_4000, Prot::RW, VmFlags::NONE)
            },
            Vma::anon(0x40_4000, 0x40_6000, Prot::RW, VmFlags::NONE),
        ];
        // In the data area: its head, its tail, its middle, all of it; to
        // a protection the neighbours have or not.
        let ranges = [
            (0x40_1000, 0x40_2000),
            (0x40_3000, 0x40_4000),
            (0x40_2000, 0x40_3000),
            (0x40_1000, 0x40_4000),
        ];
        for (start, end) in ranges {
            for prot in [Prot::READ, Prot::RW, Prot::READ | Prot::EXEC, Prot::NONE] {
                let (mut one, mut split) = (VmaSet::new(), VmaSet::new());
                for set in [&mut one, &mut split] {
                    for v in areas {
                        set.insert(v).unwrap();
                    }
                    set.set_journaling(true);
                }
                assert_eq!(one.set_prot(start, end, prot), Ok(end));
                split.split_at(start).unwrap();
                split.split_at(end).unwrap();
                assert_eq!(split.set_prot(start, end, prot), Ok(end));
                let all = |s: &VmaSet| s.iter().copied().collect::<alloc::vec::Vec<_>>();
                let what = (start, end, prot);
                assert_eq!(all(&one), all(&split), "{what:x?}");
                assert_eq!(journal(&mut one), journal(&mut split), "{what:x?}");
                assert_eq!(
                    (one.total_bytes(), one.data_bytes()),
                    (split.total_bytes(), split.data_bytes()),
                    "{what:x?}"
                );
            }
        }
    }

    #[test]
    fn set_prot_in_place_matches_the_journaled_steps() {
        let file = |offset| Backing::File {
            file: 3,
            offset,
            data_end: u64::MAX,
        };
        let account = VmFlags::ACCOUNT;
        // Neighbours that merge with a changed part or not: a read-only
        // file area once writable, the data at the next offsets, bss with
        // anonymous memory attached, read-only anonymous areas once
        // writable (one with other anonymous memory), a hole, a stack.
        let areas = [
            Vma {
                backing: file(0),
                ..Vma::anon(0x40_0000, 0x40_2000, Prot::READ, account)
            },
            Vma {
                backing: file(0x2000),
                ..Vma::anon(0x40_2000, 0x40_6000, Prot::RW, VmFlags::NONE)
            },
            Vma {
                anon: 5,
                ..Vma::anon(0x40_6000, 0x40_8000, Prot::RW, VmFlags::NONE)
            },
            Vma::anon(0x40_8000, 0x40_9000, Prot::READ, account),
            Vma {
                anon: 6,
                ..Vma::anon(0x40_9000, 0x40_a000, Prot::READ, account)
            },
            Vma::anon(0x7fff_0000, 0x7fff_4000, Prot::RW, VmFlags::GROWSDOWN),
        ];
        let mut ranges = alloc::vec::Vec::new();
        for v in &areas {
            let mid = v.start + 0x1000;
            ranges.extend([(v.start, v.end), (v.start, mid), (mid, v.end)]);
            ranges.extend([(mid, mid + 0x1000), (v.start, v.end + 0x1000)]);
        }
        ranges.extend([(0x40_1000, 0x40_3000), (0x40_a000, 0x40_b000)]);
        ranges.push((0x3f_f000, 0x40_1000));
        let prots = [Prot::READ, Prot::RW, Prot::READ | Prot::EXEC, Prot::NONE];
        // The tree as one small leaf, and as a full one (the general path
        // for both sets).
        for filler in [0, vma_tree::LEAF_CAP - areas.len()] {
            for &(start, end) in &ranges {
                for prot in prots {
                    let (mut fast, mut steps) = (VmaSet::new(), VmaSet::new());
                    for set in [&mut fast, &mut steps] {
                        for k in 0..filler as u64 {
                            let at = 0x1000_0000 + k * 0x2000;
                            set.insert(Vma::anon(at, at + 0x1000, Prot::READ, VmFlags::NONE))
                                .unwrap();
                        }
                        for v in areas {
                            set.insert(v).unwrap();
                        }
                        // Some lookups first, so that a stale hot area or
                        // finger would show.
                        set.find_hot(0x40_6000);
                        set.find(0x40_2000);
                    }
                    steps.set_journaling(true);
                    let what = (start, end, prot, filler);
                    assert_eq!(
                        fast.set_prot(start, end, prot),
                        steps.set_prot(start, end, prot),
                        "{what:x?}"
                    );
                    let all = |s: &VmaSet| s.iter().copied().collect::<alloc::vec::Vec<_>>();
                    assert_eq!(all(&fast), all(&steps), "{what:x?}");
                    assert_eq!(fast.len(), steps.len(), "{what:x?}");
                    assert_eq!(
                        (fast.total_bytes(), fast.data_bytes()),
                        (steps.total_bytes(), steps.data_bytes()),
                        "{what:x?}"
                    );
                    for addr in [0x40_0000, 0x40_2000, 0x40_5000, 0x40_6000, 0x7fff_3000] {
                        let found = |s: &mut VmaSet| s.find_hot(addr).map(|(i, v)| (i, *v));
                        assert_eq!(found(&mut fast), found(&mut steps), "{what:x?} {addr:x}");
                        assert_eq!(fast.find(addr), steps.find(addr), "{what:x?} {addr:x}");
                    }
                }
            }
        }
    }

    #[test]
    fn journal_records_insert_split_remove_and_merge() {
        use vmrun_contract::trace::kind;
        let mut set = VmaSet::new();
        set.set_journaling(true);
        set.insert(Vma::anon(0x1000, 0x5000, Prot::RW, VmFlags::NONE))
            .unwrap();
        set.remove_range(0x2000, 0x3000, |_| {}).unwrap();
        set.insert_merged(Vma::anon(0x2000, 0x3000, Prot::RW, VmFlags::NONE))
            .unwrap();
        let mut kinds = Vec::new();
        let lost = set.take_journal(|c| kinds.push((c.kind, c.vma.start, c.vma.end, c.at)));
        assert_eq!(lost, 0);
        assert_eq!(
            kinds,
            [
                (kind::VMA_INSERT, 0x1000, 0x5000, 0),
                (kind::VMA_SPLIT, 0x1000, 0x5000, 0x2000),
                (kind::VMA_SPLIT, 0x2000, 0x5000, 0x3000),
                (kind::VMA_REMOVE, 0x2000, 0x3000, 0),
                (kind::VMA_INSERT, 0x2000, 0x3000, 0),
                (kind::VMA_MERGE, 0x2000, 0x5000, 0),
                (kind::VMA_MERGE, 0x1000, 0x5000, 0),
            ]
        );
        assert_eq!(set.take_journal(|_| panic!("journal not cleared")), 0);
    }

    #[test]
    fn full_journal_counts_lost_changes_and_off_journal_keeps_none() {
        let mut set = VmaSet::new();
        set.insert(Vma::anon(0x1000, 0x2000, Prot::RW, VmFlags::NONE))
            .unwrap();
        assert_eq!(set.take_journal(|_| panic!("journaling is off")), 0);
        set.set_journaling(true);
        for i in 0..20u64 {
            let start = 0x10_0000 + i * 0x2000;
            set.insert(Vma::anon(start, start + 0x1000, Prot::RW, VmFlags::NONE))
                .unwrap();
        }
        // One block of room for the whole journal, taken at the first
        // change and kept, never grown.
        assert_eq!(set.journal.capacity(), JOURNAL);
        let mut n = 0;
        assert_eq!(set.take_journal(|_| n += 1), 4);
        assert_eq!(n, JOURNAL);
        set.insert(Vma::anon(0x1_0000, 0x1_1000, Prot::RW, VmFlags::NONE))
            .unwrap();
        assert_eq!(set.journal.capacity(), JOURNAL);
        assert_eq!(set.take_journal(|_| ()), 0);
    }

    const P: u64 = PAGE_SIZE;

    fn anon(s: u64, e: u64) -> Vma {
        Vma::anon(s * P, e * P, Prot::RW, VmFlags::NONE)
    }

    fn file(s: u64, e: u64, off: u64) -> Vma {
        Vma {
            backing: Backing::File {
                file: 0,
                offset: off * P,
                data_end: u64::MAX,
            },
            ..Vma::anon(s * P, e * P, Prot::READ, VmFlags::NONE)
        }
    }

    fn ranges(set: &VmaSet) -> Vec<(u64, u64)> {
        set.iter().map(|v| (v.start / P, v.end / P)).collect()
    }

    #[test]
    fn insert_keeps_order_and_find_uses_containment() {
        let mut s = VmaSet::new();
        s.insert(file(10, 20, 0)).unwrap();
        s.insert(file(1, 2, 5)).unwrap();
        s.insert(file(30, 31, 9)).unwrap();
        assert_eq!(ranges(&s), vec![(1, 2), (10, 20), (30, 31)]);
        assert_eq!(s.find(15 * P), Some(1));
        assert_eq!(s.find(20 * P), None);
        assert_eq!(s.find_next(20 * P), Some(2));
        assert_eq!(s.find_next(31 * P), None);
        // `area_at` finds the same areas.
        assert_eq!(s.area_at(15 * P).map(|v| v.start), Some(10 * P));
        assert_eq!(s.area_at(30 * P).map(|v| v.end), Some(31 * P));
        assert!(s.area_at(20 * P).is_none() && s.area_at(0).is_none());
    }

    #[test]
    fn insert_overlapping_fails_with_eexist() {
        let mut s = VmaSet::new();
        s.insert(anon(10, 20)).unwrap();
        assert_eq!(s.insert(anon(19, 21)), Err(Errno::EEXIST));
        assert_eq!(s.insert(anon(5, 11)), Err(Errno::EEXIST));
        assert_eq!(s.insert(anon(5, 5)), Err(Errno::EINVAL));
    }

    #[test]
    fn insert_past_max_map_count_fails_with_enomem_as_in_linux() {
        let mut s = VmaSet::new();
        // Linux's mmap refuses only when map_count > max_map_count: the
        // set reaches MAX_VMAS + 1.
        for i in 0..=MAX_VMAS as u64 {
            s.insert(file(3 * i, 3 * i + 2, 0)).unwrap();
        }
        assert_eq!(s.len(), MAX_VMAS + 1);
        let past = 3 * (MAX_VMAS as u64 + 10);
        assert_eq!(s.insert(file(past, past + 1, 0)), Err(Errno::ENOMEM));
        assert_eq!(
            s.split_at(3 * P),
            Ok(()),
            "split at a boundary needs no slot"
        );
        assert_eq!(s.split_at(P), Err(Errno::ENOMEM));
    }

    #[test]
    fn adjacent_anonymous_areas_merge_on_insert() {
        let mut s = VmaSet::new();
        s.insert_merged(anon(10, 20)).unwrap();
        s.insert_merged(anon(30, 40)).unwrap();
        assert_eq!(s.insert_merged(anon(20, 30)), Ok(0));
        assert_eq!(ranges(&s), vec![(10, 40)]);
    }

    #[test]
    fn areas_with_different_prot_or_anon_identity_do_not_merge() {
        let mut s = VmaSet::new();
        s.insert_merged(Vma {
            anon: 1,
            ..anon(10, 20)
        })
        .unwrap();
        s.insert_merged(Vma {
            anon: 2,
            ..anon(20, 30)
        })
        .unwrap();
        s.insert_merged(Vma {
            prot: Prot::READ,
            ..anon(30, 40)
        })
        .unwrap();
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn contiguous_file_areas_merge_and_gapped_offsets_do_not() {
        let mut s = VmaSet::new();
        s.insert_merged(file(10, 12, 0)).unwrap();
        s.insert_merged(file(12, 13, 2)).unwrap();
        s.insert_merged(file(13, 14, 7)).unwrap();
        assert_eq!(ranges(&s), vec![(10, 13), (13, 14)]);
    }

    #[test]
    fn munmap_middle_of_vma_splits_it_in_two_with_file_offsets() {
        let mut s = VmaSet::new();
        s.insert(file(10, 20, 3)).unwrap();
        let mut gone = Vec::new();
        s.remove_range(12 * P, 15 * P, |v| gone.push(*v)).unwrap();
        assert_eq!(ranges(&s), vec![(10, 12), (15, 20)]);
        assert_eq!(s.get(1).unwrap().file_offset(15 * P), Some(8 * P));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].file_offset(12 * P), Some(5 * P));
    }

    #[test]
    fn remove_range_spanning_several_areas_reports_each_piece() {
        let mut s = VmaSet::new();
        for (a, b) in [(1, 3), (4, 6), (7, 9), (10, 12)] {
            s.insert(file(a, b, a)).unwrap();
        }
        let mut gone = Vec::new();
        s.remove_range(2 * P, 8 * P, |v| gone.push((v.start / P, v.end / P)))
            .unwrap();
        assert_eq!(gone, vec![(2, 3), (4, 6), (7, 8)]);
        assert_eq!(ranges(&s), vec![(1, 2), (8, 9), (10, 12)]);
    }

    #[test]
    fn remove_range_splitting_full_set_fails_with_enomem_unchanged() {
        let mut s = VmaSet::new();
        for i in 0..MAX_VMAS as u64 {
            s.insert(file(4 * i, 4 * i + 3, 0)).unwrap();
        }
        assert_eq!(s.remove_range(P, 2 * P, |_| ()), Err(Errno::ENOMEM));
        assert_eq!(s.len(), MAX_VMAS);
        s.remove_range(0, P, |_| ()).unwrap();
        assert_eq!(s.get(0).unwrap().start, P);
        s.remove_range(2 * P, 5 * P, |_| ()).unwrap();
        assert_eq!(ranges(&s)[..2], [(1, 2), (5, 7)]);
    }

    #[test]
    fn set_prot_on_middle_splits_then_restoring_merges_back() {
        let mut s = VmaSet::new();
        s.insert(anon(10, 20)).unwrap();
        assert_eq!(s.set_prot(12 * P, 14 * P, Prot::READ), Ok(14 * P));
        assert_eq!(ranges(&s), vec![(10, 12), (12, 14), (14, 20)]);
        assert_eq!(s.get(1).unwrap().prot, Prot::READ);
        assert_eq!(s.set_prot(12 * P, 14 * P, Prot::RW), Ok(14 * P));
        assert_eq!(ranges(&s), vec![(10, 20)]);
    }

    #[test]
    fn set_prot_stops_at_hole_after_changing_first_part() {
        let mut s = VmaSet::new();
        s.insert(file(10, 12, 0)).unwrap();
        s.insert(file(13, 15, 3)).unwrap();
        assert_eq!(s.set_prot(10 * P, 15 * P, Prot::RW), Ok(12 * P));
        assert_eq!(s.get(0).unwrap().prot, Prot::RW);
        assert_eq!(s.get(1).unwrap().prot, Prot::READ);
        assert_eq!(s.set_prot(5 * P, 11 * P, Prot::RW), Err(Errno::ENOMEM));
    }

    /// Found by prop_address_space_matches_a_page_model: the area past
    /// the hole was split at `end` and left in two.
    #[test]
    fn set_prot_stopped_by_a_hole_leaves_the_area_past_it_whole() {
        let mut s = VmaSet::new();
        s.insert(anon(10, 12)).unwrap();
        s.insert(anon(13, 17)).unwrap();
        assert_eq!(s.set_prot(10 * P, 15 * P, Prot::READ), Ok(12 * P));
        assert_eq!(ranges(&s), vec![(10, 12), (13, 17)]);
    }

    #[test]
    fn gap_search_goes_top_down_and_skips_stack_guard() {
        let mut s = VmaSet::new();
        s.insert(anon(100, 110)).unwrap();
        s.insert(Vma::anon(500 * P, 510 * P, Prot::RW, VmFlags::GROWSDOWN))
            .unwrap();
        assert_eq!(s.find_gap_top_down(10 * P, 16 * P, 200 * P), Some(190 * P));
        assert_eq!(
            s.find_gap_top_down(10 * P, 16 * P, 510 * P),
            Some(490 * P - STACK_GUARD_GAP)
        );
        assert_eq!(s.find_gap_top_down(10 * P, 16 * P, 600 * P), Some(590 * P));
        assert_eq!(s.find_gap_top_down(90 * P, 16 * P, 105 * P), None);
        assert_eq!(s.find_gap_top_down(84 * P, 16 * P, 105 * P), Some(16 * P));
        assert_eq!(s.find_gap_top_down(5 * P, 100 * P, 115 * P), Some(110 * P));
    }

    /// Found by prop_vma_set_matches_a_page_model: with the tree's root
    /// full of full leaves, an mprotect of the last area's last page split
    /// it (a new leaf, alone under a new inner node) and merged it back,
    /// which left that leaf empty with a summary ending at 0, so the gap
    /// search took every address below `high` for free.
    #[test]
    fn gap_search_after_a_split_and_merge_at_the_end_of_a_full_tree() {
        let mut s = VmaSet::new();
        let areas = (vma_tree::LEAF_CAP * 12) as u64;
        for k in 0..areas {
            s.insert(anon(3 * k + 1, 3 * k + 3)).unwrap();
        }
        let last = 3 * areas - 1;
        let r = s.set_prot(last * P, (last + 1) * P, Prot::RW);
        assert_eq!((r, s.len()), (Ok((last + 1) * P), areas as usize));
        // Only the 1-page holes between the areas, page 0 and the space
        // above are free.
        let high = (last - 1) * P;
        assert_eq!(s.find_gap_top_down(P, 0, high), Some(high - P));
        assert_eq!(s.find_gap_top_down(2 * P, 0, high), None);
        let top = (last + 3) * P;
        assert_eq!(s.find_gap_top_down(2 * P, 0, top), Some(top - 2 * P));
        assert_eq!(s.find_gap_top_down(3 * P, 0, top), None);
    }

    #[test]
    fn replace_range_changes_one_spanned_area_in_place_with_the_records_of_remove_and_insert() {
        use vmrun_contract::trace::kind as tk;
        let sums = |s: &VmaSet| {
            let data = s.iter().filter(|v| v.is_data()).map(|v| v.len()).sum();
            (s.total_bytes(), s.data_bytes()) == (s.iter().map(|v| v.len()).sum(), data)
        };
        let kinds = |s: &mut VmaSet| {
            let mut k = Vec::new();
            s.take_journal(|c| k.push((c.kind, c.vma.start / P, c.vma.end / P)));
            k
        };
        let mut s = VmaSet::new();
        s.insert(file(10, 40, 0)).unwrap();
        s.insert(anon(50, 60)).unwrap();
        s.set_journaling(true);
        // Inside one area: two splits, then the middle piece is replaced.
        let i = s.replace_range(anon(20, 30)).unwrap();
        assert_eq!(i, 1);
        assert_eq!(ranges(&s), vec![(10, 20), (20, 30), (30, 40), (50, 60)]);
        assert_eq!(s[1].backing, Backing::Anon);
        assert_eq!(
            s.find_hot(25 * P).map(|(i, v)| (i, v.start)),
            Some((1, 20 * P))
        );
        assert!(sums(&s));
        assert_eq!(
            kinds(&mut s),
            vec![
                (tk::VMA_SPLIT, 10, 40),
                (tk::VMA_SPLIT, 20, 40),
                (tk::VMA_REMOVE, 20, 30),
                (tk::VMA_INSERT, 20, 30),
            ]
        );
        // Over several areas and a hole: removed, then inserted.
        let i = s.replace_range(file(25, 55, 0)).unwrap();
        assert_eq!(i, 2);
        assert_eq!(ranges(&s), vec![(10, 20), (20, 25), (25, 55), (55, 60)]);
        assert_eq!(s.total_bytes(), 50 * P);
        assert!(sums(&s));
        // Over nothing: inserted where it goes.
        assert_eq!(s.replace_range(anon(70, 71)), Ok(4));
        assert_eq!(s.len(), 5);
    }

    #[test]
    fn gap_search_passes_touching_areas_to_the_gap_below_them() {
        let mut s = VmaSet::new();
        s.insert(anon(20, 30)).unwrap();
        // Touching areas of different rights stay apart, as a library's
        // segments do: no room between them.
        for (k, prot) in [Prot::READ, Prot::RW, Prot::READ, Prot::RW]
            .into_iter()
            .enumerate()
        {
            let at = (40 + 2 * k as u64) * P;
            s.insert(Vma::anon(at, at + 2 * P, prot, VmFlags::NONE))
                .unwrap();
        }
        s.insert(Vma::anon(48 * P, 60 * P, Prot::RW, VmFlags::GROWSDOWN))
            .unwrap();
        assert_eq!(s.len(), 6);
        assert_eq!(s.find_gap_top_down(P, 16 * P, 60 * P), Some(39 * P));
        assert_eq!(s.find_gap_top_down(10 * P, 16 * P, 60 * P), Some(30 * P));
        assert_eq!(s.find_gap_top_down(11 * P, 16 * P, 60 * P), None);
    }
}

/// How an mmap-like step (gap search, insert, merge attempt) costs at 100
/// and at 60,000 areas, on the host: `cargo test --release -p guest-kernel
/// --lib mmap_step_cost -- --ignored --nocapture` (docs/benchmarks.md).
#[cfg(test)]
mod cost {
    use super::*;

    fn step(s: &mut VmaSet, k: u64) {
        let prot = if k.is_multiple_of(2) {
            Prot::READ
        } else {
            Prot::NONE
        };
        let top = 0x7fff_0000_0000;
        let at = s.find_gap_top_down(PAGE_SIZE, 0x1_0000, top).unwrap();
        s.insert_merged(Vma::anon(at, at + PAGE_SIZE, prot, VmFlags::NONE))
            .unwrap();
    }

    #[test]
    #[ignore = "a measurement, not a check"]
    fn mmap_step_cost() {
        for n in [100u64, 60_000] {
            let mut s = VmaSet::new();
            s.insert(Vma::anon(0x40_0000, 0x40_1000, Prot::RW, VmFlags::NONE))
                .unwrap();
            for k in 0..n {
                step(&mut s, k);
            }
            let t = std::time::Instant::now();
            for k in n..n + 1000 {
                step(&mut s, k);
            }
            let per = t.elapsed() / 1000;
            println!("{n} areas: {per:?} per gap search + insert");
        }
    }
}
