//! The checker: the host's own page-table walk held against the guest's
//! VMAs and frame accounting.
//!
//! Rules (each broken one is a [`Violation`] naming the address, the entry,
//! the VMA and the rule):
//!
//! - the VMA list itself is sane: page-aligned, non-empty, sorted, disjoint,
//!   below `TASK_SIZE`;
//! - every present user-half leaf is user-accessible and lies wholly inside
//!   a VMA that is accessible (not `PROT_NONE`); it is writable only if the
//!   VMA is, and executable only if the VMA is; a `PROT_NONE` leaf that
//!   keeps its frame also lies inside a VMA;
//! - no leaf of the kernel half is user-accessible except the syscall
//!   trampoline page, which is user-accessible, read-only and executable,
//!   and the stdin ring's pages below it (when the ring is on), each on its
//!   own frame, writable and no-execute;
//! - no frame is mapped twice in the user half unless it is in the page
//!   cache (the program file's image), and a page-cache frame is never
//!   mapped writable;
//! - every user frame lies in guest RAM;
//! - the distinct 4 KiB frames mapped in the user half outside the page cache
//!   number exactly the guest's user-frame count (a 2 MiB leaf counts 512),
//!   and the user-half table pages (the PML4 excluded) the guest's
//!   table-page count: a difference is a leak or a double count.
//!
//! Problems of the walk itself (a table outside RAM, a loop) are violations
//! too.
//!
//! With several address spaces (after fork), each is checked by the rules
//! above on its own, and [`check_sharing`] holds them together:
//!
//! - a frame mapped more than once across all spaces is read-only in every
//!   private (not `MAP_SHARED`) mapping of it: copy-on-write; a private
//!   writable mapping of a shared frame is a violation;
//! - the guest's reference count of every frame (its copy-on-write count
//!   plus one) equals the mappings of it found in all spaces, and a frame
//!   it counts as shared is mapped somewhere;
//! - the spaces' user-frame counts add up to the reference counts of the
//!   frames found, and no page-table page belongs to two spaces.

use super::maps::perms;
use super::pagetable::{Leaf, Walk, WalkProblem};
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use vmrun_contract::layout::{PAGE_SIZE, TASK_SIZE};
use vmrun_contract::{vma_flags, VmaRecord};

/// What the checker compares the walk against.
#[derive(Clone, Debug)]
pub struct CheckInput<'a> {
    /// The walk (of both halves, for the kernel-half rules).
    pub walk: &'a Walk,
    /// The guest's VMAs, sorted by address.
    pub vmas: &'a [VmaRecord],
    /// User frames the guest says it holds, in 4 KiB units.
    pub user_frames: u64,
    /// User page-table pages the guest says it holds (the PML4 excluded).
    pub user_table_pages: u64,
    /// Guest-physical range of the page cache (the program file's image,
    /// page aligned): frames there may be mapped many times, read-only.
    pub page_cache: Range<u64>,
    /// The guest's page-cache frames outside that range (file pages the
    /// guest read from the host into frames of its allocator).
    pub cache_frames: &'a CacheBitmap,
    /// The one user-accessible page of the kernel half.
    pub trampoline: u64,
}

/// The guest's page-cache bitmap (one bit per frame of its allocator), as
/// read from guest memory at a stop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheBitmap {
    /// Physical address of the frame bit 0 stands for.
    pub first: u64,
    /// The bitmap's words.
    pub words: Vec<u64>,
}

impl CacheBitmap {
    /// Read the bitmap the export's `cache_bits` describe (empty if none
    /// or if it does not lie in guest RAM).
    pub fn read(ram: &crate::memory::GuestRam, cache_bits: [u64; 3]) -> CacheBitmap {
        let [phys, first, frames] = cache_bits;
        let n = frames.div_ceil(64);
        if phys == 0 || n > 1 << 24 {
            return CacheBitmap::default();
        }
        let mut bytes = vec![0u8; (n * 8) as usize];
        if ram.read_bytes(phys, &mut bytes).is_err() {
            return CacheBitmap::default();
        }
        let words = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        CacheBitmap { first, words }
    }

    /// Whether frame `pa` is a page-cache frame.
    pub fn contains(&self, pa: u64) -> bool {
        let Some(n) = pa.checked_sub(self.first).map(|d| d / PAGE_SIZE) else {
            return false;
        };
        self.words
            .get((n / 64) as usize)
            .is_some_and(|w| w & (1 << (n % 64)) != 0)
    }
}

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// The walk could not follow an entry.
    Walk(WalkProblem),
    /// A VMA is malformed or out of order.
    BadVma {
        /// Its index in the export.
        index: usize,
        /// The area.
        vma: VmaRecord,
        /// What is wrong.
        what: &'static str,
    },
    /// A present user-half leaf is not user-accessible.
    NotUser(LeafAt),
    /// A user-half leaf lies (wholly or partly) outside every VMA.
    OutsideVma(LeafAt),
    /// A present leaf lies in a `PROT_NONE` VMA.
    InInaccessibleVma(LeafAt, VmaRecord),
    /// A writable leaf lies in a VMA that is not writable.
    WritableNotAllowed(LeafAt, VmaRecord),
    /// An executable leaf lies in a VMA that is not executable.
    ExecutableNotAllowed(LeafAt, VmaRecord),
    /// A kernel-half leaf other than the trampoline is user-accessible.
    KernelPageUser(LeafAt),
    /// The trampoline page is writable, not executable or not user
    /// accessible, or missing.
    BadTrampoline {
        /// Its virtual address.
        va: u64,
        /// Its entry (0 if missing).
        pte: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// A frame outside the page cache is mapped at two user addresses.
    FrameMappedTwice {
        /// The frame (the first shared one).
        frame: u64,
        /// How many 4 KiB frames the two leaves share.
        frames: u64,
        /// The earlier leaf.
        first: LeafAt,
        /// The later leaf.
        second: LeafAt,
    },
    /// A page-cache frame is mapped writable.
    PageCacheWritable(LeafAt),
    /// A user leaf maps memory beyond guest RAM.
    FrameOutsideRam(LeafAt),
    /// The user frames found differ from the guest's count.
    UserFrameCount {
        /// The guest's count.
        guest: u64,
        /// Distinct frames found by the walk.
        found: u64,
    },
    /// The user table pages found differ from the guest's count.
    TablePageCount {
        /// The guest's count.
        guest: u64,
        /// Table pages found by the walk.
        found: u64,
    },
    /// A violation in the address space of process `pid` (one of several).
    InSpace(u64, Box<Violation>),
    /// Sharing across address spaces is broken.
    Sharing(SharingViolation),
}

/// A broken rule of sharing across address spaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SharingViolation {
    /// A frame mapped more than once is writable in a private mapping.
    SharedWritable {
        /// The frame.
        frame: u64,
        /// Mappings of it found in all spaces.
        mappings: u64,
        /// The process whose mapping is writable.
        pid: u64,
        /// That mapping.
        leaf: LeafAt,
    },
    /// The guest's reference count of a frame differs from the mappings
    /// found.
    RefCount {
        /// The frame.
        frame: u64,
        /// The guest's count (its copy-on-write count plus one).
        guest: u64,
        /// Mappings found in all spaces.
        found: u64,
        /// The processes mapping it.
        pids: Vec<u64>,
    },
    /// The spaces' user-frame counts do not add up to the reference counts
    /// of the frames found.
    TotalFrames {
        /// The sum of the spaces' counts.
        guest: u64,
        /// The sum of the found frames' reference counts.
        counted: u64,
    },
    /// A page-table page belongs to two spaces.
    TableShared {
        /// The table page.
        table: u64,
        /// The two processes.
        pids: [u64; 2],
    },
}

impl fmt::Display for SharingViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SharingViolation::*;
        match self {
            SharedWritable {
                frame,
                mappings,
                pid,
                leaf,
            } => write!(
                f,
                "frame {frame:#x} has {mappings} mappings but pid {pid} maps it writable and private (copy-on-write broken): {leaf}"
            ),
            RefCount {
                frame,
                guest,
                found,
                pids,
            } => write!(
                f,
                "frame {frame:#x}: the guest counts {guest} mappings, the walks find {found} (pids {pids:?})"
            ),
            TotalFrames { guest, counted } => write!(
                f,
                "user frames of all spaces: the guest counts {guest}, the reference counts of the frames found add up to {counted}"
            ),
            TableShared { table, pids } => write!(
                f,
                "page-table page {table:#x} belongs to pid {} and pid {}",
                pids[0], pids[1]
            ),
        }
    }
}

/// One address space for [`check_sharing`].
#[derive(Clone, Copy, Debug)]
pub struct SpaceCheck<'a> {
    /// The process holding it.
    pub pid: u64,
    /// Its walk.
    pub walk: &'a Walk,
    /// Its areas.
    pub vmas: &'a [VmaRecord],
    /// The user frames the guest says it maps.
    pub user_frames: u64,
}

/// What [`check_sharing`] compares.
#[derive(Clone, Debug)]
pub struct SharingInput<'a> {
    /// Every live address space.
    pub spaces: &'a [SpaceCheck<'a>],
    /// The guest's copy-on-write counts.
    pub shares: &'a super::spaces::ShareCounts,
    /// As [`CheckInput::page_cache`].
    pub page_cache: Range<u64>,
    /// As [`CheckInput::cache_frames`].
    pub cache_frames: &'a CacheBitmap,
}

/// One mapping of a frame.
struct Mapping {
    pid: u64,
    leaf: LeafAt,
    writable: bool,
    private: bool,
}

/// Check sharing across address spaces (see the module's rules).
pub fn check_sharing(input: &SharingInput) -> Vec<SharingViolation> {
    let mut out = Vec::new();
    let frames = mappings_of(input);
    for (&frame, maps) in &frames {
        let found = maps.len() as u64;
        for m in maps.iter().filter(|m| found > 1 && m.writable && m.private) {
            out.push(SharingViolation::SharedWritable {
                frame,
                mappings: found,
                pid: m.pid,
                leaf: m.leaf,
            });
        }
        let guest = input.shares.mappings(frame);
        if guest != found {
            let pids = maps.iter().map(|m| m.pid).collect();
            out.push(SharingViolation::RefCount {
                frame,
                guest,
                found,
                pids,
            });
        }
    }
    for (frame, guest) in input.shares.shared() {
        if !frames.contains_key(&frame) {
            out.push(SharingViolation::RefCount {
                frame,
                guest,
                found: 0,
                pids: vec![],
            });
        }
    }
    let guest = input.spaces.iter().map(|s| s.user_frames).sum();
    let counted = frames.keys().map(|&f| input.shares.mappings(f)).sum();
    if guest != counted {
        out.push(SharingViolation::TotalFrames { guest, counted });
    }
    check_tables_apart(input.spaces, &mut out);
    out.sort_by_key(frame_of_violation);
    out
}

/// Every frame outside the page cache mapped in any space, with its
/// mappings.
fn mappings_of(input: &SharingInput) -> std::collections::BTreeMap<u64, Vec<Mapping>> {
    let mut frames: std::collections::BTreeMap<u64, Vec<Mapping>> = Default::default();
    for s in input.spaces {
        for leaf in s.walk.user_leaves() {
            let end = leaf.pa + leaf.size.bytes();
            let image = leaf.pa >= input.page_cache.start && end <= input.page_cache.end;
            if image || frames_of(leaf).all(|f| input.cache_frames.contains(f)) {
                continue;
            }
            let private = vma_at(s.vmas, leaf.va).is_none_or(|v| v.flags & vma_flags::SHARED == 0);
            let present = leaf.pte & super::pagetable::bits::P != 0;
            for frame in frames_of(leaf) {
                frames.entry(frame).or_default().push(Mapping {
                    pid: s.pid,
                    leaf: leaf.into(),
                    writable: present && leaf.flags.writable,
                    private,
                });
            }
        }
    }
    frames
}

fn check_tables_apart(spaces: &[SpaceCheck], out: &mut Vec<SharingViolation>) {
    let mut owner: HashMap<u64, u64> = HashMap::new();
    for s in spaces {
        for t in s.walk.tables.iter().filter(|t| t.is_user_half()) {
            if let Some(other) = owner.insert(t.phys, s.pid) {
                out.push(SharingViolation::TableShared {
                    table: t.phys,
                    pids: [other, s.pid],
                });
            }
        }
    }
}

fn frame_of_violation(v: &SharingViolation) -> u64 {
    match v {
        SharingViolation::SharedWritable { frame, .. }
        | SharingViolation::RefCount { frame, .. } => *frame,
        SharingViolation::TableShared { table, .. } => *table,
        SharingViolation::TotalFrames { .. } => u64::MAX,
    }
}

/// A leaf, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafAt {
    /// Virtual address.
    pub va: u64,
    /// Physical address of the frame.
    pub pa: u64,
    /// Size in bytes.
    pub size: u64,
    /// The raw entry.
    pub pte: u64,
    /// Guest-physical address of the entry.
    pub entry_phys: u64,
}

impl From<&Leaf> for LeafAt {
    fn from(l: &Leaf) -> LeafAt {
        LeafAt {
            va: l.va,
            pa: l.pa,
            size: l.size.bytes(),
            pte: l.pte,
            entry_phys: l.entry_phys,
        }
    }
}

impl fmt::Display for LeafAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "leaf {:#x}-{:#x} -> {:#x} (PTE {:#018x} at phys {:#x})",
            self.va,
            u128::from(self.va) + u128::from(self.size),
            self.pa,
            self.pte,
            self.entry_phys
        )
    }
}

/// A VMA, for messages: `[0x400000-0x401000 r-xp]`.
struct VmaText<'a>(&'a VmaRecord);

impl fmt::Display for VmaText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(f, "VMA {:#x}-{:#x} {}", v.start, v.end, perms(v.flags))
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Violation::*;
        match self {
            Walk(p) => write!(f, "page-table walk: {p}"),
            BadVma { index, vma, what } => write!(f, "{} (#{index}): {what}", VmaText(vma)),
            NotUser(l) => write!(f, "{l}: user-half page is not user-accessible (U/S clear)"),
            OutsideVma(l) => write!(f, "{l}: lies outside every VMA"),
            InInaccessibleVma(l, v) => {
                write!(f, "{l}: present in {} which is PROT_NONE", VmaText(v))
            }
            WritableNotAllowed(l, v) => {
                write!(f, "{l}: writable but {} is not writable", VmaText(v))
            }
            ExecutableNotAllowed(l, v) => {
                write!(f, "{l}: executable (NX clear) but {} is not executable", VmaText(v))
            }
            KernelPageUser(l) => write!(f, "{l}: kernel-half page is user-accessible"),
            BadTrampoline { va, pte, what } => {
                write!(f, "syscall trampoline {va:#x} (PTE {pte:#018x}): {what}")
            }
            FrameMappedTwice {
                frame,
                frames,
                first,
                second,
            } => write!(
                f,
                "frame {frame:#x} ({frames} frames) mapped twice outside the page cache: {first} and {second}"
            ),
            PageCacheWritable(l) => write!(f, "{l}: page-cache frame mapped writable"),
            FrameOutsideRam(l) => write!(f, "{l}: frame lies outside guest RAM"),
            UserFrameCount { guest, found } => write!(
                f,
                "user frames: the guest counts {guest}, its page tables map {found} (4 KiB units, page cache excluded)"
            ),
            TablePageCount { guest, found } => write!(
                f,
                "user page-table pages: the guest counts {guest}, the walk finds {found} (PML4 excluded)"
            ),
            InSpace(pid, v) => write!(f, "pid {pid}: {v}"),
            Sharing(v) => write!(f, "{v}"),
        }
    }
}

/// Check everything; an empty list means the address space is consistent.
pub fn check(input: &CheckInput) -> Vec<Violation> {
    let mut out: Vec<Violation> = input
        .walk
        .problems
        .iter()
        .cloned()
        .map(Violation::Walk)
        .collect();
    check_vmas(input.vmas, &mut out);
    for leaf in input.walk.leaves.iter().filter(|l| l.is_user_half()) {
        check_user_leaf(input, leaf, &mut out);
    }
    for leaf in input.walk.protnone.iter().filter(|l| l.is_user_half()) {
        if vma_containing(input.vmas, leaf).is_none() {
            out.push(Violation::OutsideVma(leaf.into()));
        }
    }
    check_kernel_half(input, &mut out);
    check_frames(input, &mut out);
    check_tables(input, &mut out);
    out
}

fn check_vmas(vmas: &[VmaRecord], out: &mut Vec<Violation>) {
    let mut prev_end = 0;
    for (index, v) in vmas.iter().enumerate() {
        let what = if v.start % PAGE_SIZE != 0 || v.end % PAGE_SIZE != 0 {
            Some("not page aligned")
        } else if v.start >= v.end {
            Some("empty or inverted")
        } else if v.end > TASK_SIZE {
            Some("ends above TASK_SIZE")
        } else if v.start < prev_end {
            Some("overlaps or precedes the VMA before it")
        } else {
            None
        };
        if let Some(what) = what {
            out.push(Violation::BadVma {
                index,
                vma: *v,
                what,
            });
        }
        prev_end = prev_end.max(v.end);
    }
}

/// The VMA holding all of `leaf`, if any.
fn vma_containing<'a>(vmas: &'a [VmaRecord], leaf: &Leaf) -> Option<&'a VmaRecord> {
    let end = leaf.va.checked_add(leaf.size.bytes())?;
    vmas.iter().find(|v| v.start <= leaf.va && end <= v.end)
}

fn check_user_leaf(input: &CheckInput, leaf: &Leaf, out: &mut Vec<Violation>) {
    let at = LeafAt::from(leaf);
    if !leaf.flags.user {
        out.push(Violation::NotUser(at));
    }
    if leaf.pa + leaf.size.bytes() > input.walk.mem_size {
        out.push(Violation::FrameOutsideRam(at));
    }
    let Some(v) = vma_containing(input.vmas, leaf) else {
        out.push(Violation::OutsideVma(at));
        return;
    };
    if v.flags & (vma_flags::READ | vma_flags::WRITE | vma_flags::EXEC) == 0 {
        out.push(Violation::InInaccessibleVma(at, *v));
    }
    if leaf.flags.writable && v.flags & vma_flags::WRITE == 0 {
        out.push(Violation::WritableNotAllowed(at, *v));
    }
    if !leaf.flags.nx && v.flags & vma_flags::EXEC == 0 {
        out.push(Violation::ExecutableNotAllowed(at, *v));
    }
}

fn check_kernel_half(input: &CheckInput, out: &mut Vec<Violation>) {
    let kernel = input.walk.leaves.iter().filter(|l| !l.is_user_half());
    let mut walked_kernel = input
        .walk
        .tables
        .iter()
        .any(|t| t.level < 4 && !t.is_user_half());
    for leaf in kernel {
        if leaf.va == input.trampoline {
            check_trampoline(leaf, out);
            walked_kernel = false;
        } else if leaf.flags.user && !is_stdin_ring(leaf) {
            out.push(Violation::KernelPageUser(leaf.into()));
        }
    }
    if walked_kernel {
        out.push(Violation::BadTrampoline {
            va: input.trampoline,
            pte: 0,
            what: "not mapped",
        });
    }
}

/// Whether a user-accessible kernel-half leaf is one of the stdin ring's
/// pages (contract `stdin_ring`): 4 KiB, at its address, on its own frame,
/// writable and no-execute.
fn is_stdin_ring(leaf: &Leaf) -> bool {
    use vmrun_contract::layout::{PAGE_SIZE, STDIN_RING_HEADER_PHYS, STDIN_RING_HEADER_VIRT};
    let at = leaf.va.wrapping_sub(STDIN_RING_HEADER_VIRT);
    at < vmrun_contract::stdin_ring::PAGES * PAGE_SIZE
        && leaf.size.bytes() == PAGE_SIZE
        && leaf.pa == STDIN_RING_HEADER_PHYS + at
        && leaf.flags.writable
        && leaf.flags.nx
}

fn check_trampoline(leaf: &Leaf, out: &mut Vec<Violation>) {
    let what = if !leaf.flags.user {
        Some("not user-accessible")
    } else if leaf.flags.writable {
        Some("writable (must be read-only)")
    } else if leaf.flags.nx {
        Some("not executable")
    } else {
        None
    };
    if let Some(what) = what {
        out.push(Violation::BadTrampoline {
            va: leaf.va,
            pte: leaf.pte,
            what,
        });
    }
}

/// Frame rules: page-cache frames read-only, others mapped once, and their
/// number equal to the guest's count.
fn check_frames(input: &CheckInput, out: &mut Vec<Violation>) {
    let mut owner: HashMap<u64, usize> = HashMap::new();
    let leaves: Vec<&Leaf> = input.walk.user_leaves().collect();
    for (i, leaf) in leaves.iter().enumerate() {
        if in_cache(input, leaf) {
            let shared =
                vma_at(input.vmas, leaf.va).is_some_and(|v| v.flags & vma_flags::SHARED != 0);
            if leaf.flags.writable && leaf.pte & super::pagetable::bits::P != 0 && !shared {
                out.push(Violation::PageCacheWritable((*leaf).into()));
            }
            continue;
        }
        let mut shared: Vec<(usize, u64, u64)> = Vec::new();
        for frame in frames_of(leaf) {
            match owner.insert(frame, i) {
                Some(j) => note_shared(&mut shared, j, frame),
                None => continue,
            }
        }
        for (j, frame, frames) in shared {
            out.push(Violation::FrameMappedTwice {
                frame,
                frames,
                first: leaves[j].into(),
                second: (*leaf).into(),
            });
        }
    }
    let found = owner.len() as u64;
    if found != input.user_frames {
        out.push(Violation::UserFrameCount {
            guest: input.user_frames,
            found,
        });
    }
}

fn note_shared(shared: &mut Vec<(usize, u64, u64)>, j: usize, frame: u64) {
    match shared.iter_mut().find(|s| s.0 == j) {
        Some(s) => s.2 += 1,
        None => shared.push((j, frame, 1)),
    }
}

fn in_cache(input: &CheckInput, leaf: &Leaf) -> bool {
    let end = leaf.pa + leaf.size.bytes();
    let image = leaf.pa >= input.page_cache.start && end <= input.page_cache.end;
    image || frames_of(leaf).all(|f| input.cache_frames.contains(f))
}

/// The area holding `va`.
fn vma_at(vmas: &[VmaRecord], va: u64) -> Option<&VmaRecord> {
    let i = vmas.partition_point(|v| v.end <= va);
    vmas.get(i).filter(|v| v.start <= va)
}

fn frames_of(leaf: &Leaf) -> impl Iterator<Item = u64> {
    let pa = leaf.pa;
    (0..leaf.size.frames()).map(move |i| pa + i * PAGE_SIZE)
}

fn check_tables(input: &CheckInput, out: &mut Vec<Violation>) {
    let found = input
        .walk
        .tables
        .iter()
        .filter(|t| t.is_user_half())
        .count() as u64;
    if found != input.user_table_pages {
        out.push(Violation::TablePageCount {
            guest: input.user_table_pages,
            found,
        });
    }
}

#[cfg(test)]
mod tests;
