//! The page cache: file pages kept in guest frames, keyed by (inode, page
//! index), shared by every `read` and every mapping of the file.
//!
//! Each cached file is an [`Inode`] with a small index (what file-backed
//! VMAs name). Its pages are frames from the frame allocator marked as
//! page-cache frames there, so that unmapping never frees them and a write
//! through a private mapping copies them. A missing page is read from the
//! host together with the next few ([`READAHEAD_PAGES`]) in one hypercall.
//! The program's own ELF, which the VMM placed in RAM at boot, is an inode
//! whose pages are that contiguous image.
//!
//! Writes go through to the host first; the cached pages they touch are
//! then read again, so the cache never disagrees with the file. Pages stay
//! cached after the last close (a second `cat` costs no VM exit); when the
//! file changed on the host meanwhile (size or mtime differ at the next
//! open), its unmapped pages are dropped. A change the guest made itself
//! (a write, a truncation, a shared mapping written back) is not one: the
//! pages already hold it, and a shared mapping's stores not yet written
//! back must not be read over at the next open.

/// [`Inode::mtime`] after the guest changed the file itself: the host's
/// new modification time is not known, and is taken at the next open.
const CHANGED_HERE: (i64, u32) = (i64::MIN, u32::MAX);

use alloc::borrow::Cow;
use alloc::collections::btree_map::Entry;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::host::{self, FsHost};
use crate::errno::{Errno, KResult};
use crate::mm::frame::FrameAllocator;
use crate::mm::phys::PhysMem;
use vmrun_contract::layout::PAGE_SIZE;
use vmrun_contract::IoVec;

/// Pages read from the host on a miss, at most (2 MiB): a host file's
/// fault-around window ([`crate::mm::fault::HOST_FAULT_AROUND_PAGES`]).
/// ld.so's read of a library's headers reads the whole of a library of up
/// to 2 MiB (glibc's is 1.9 MiB), so its faults find their pages cached.
pub const READAHEAD_PAGES: u64 = 512;

/// The frames of one file's cached pages, by page index, in one of two
/// forms. First as runs: each a stretch of pages held in physically
/// consecutive frames, in page order and apart. A fill reads up to
/// [`READAHEAD_PAGES`] pages into a run of frames, and runs that continue
/// one another in pages and in frames are one, so a library read in a few
/// fills is a run or two, and every question a fault asks of its window
/// (the next resident run, the first page held after a hole, the last
/// before it) is one search among a few runs. A file whose pages make more
/// than [`DENSE_RUNS`] runs (one read at random in many places) goes over
/// to a dense array of frame numbers by page index: a page's frame is one
/// load there, a fill's record never moves the others, and a window's
/// questions read its entries eight at a time (ring-0 instructions are
/// what a fault or a read costs).
#[derive(Debug, Default)]
pub struct PageIndex {
    /// The runs, while the index is in that form (empty once dense).
    runs: Vec<Run>,
    /// Frame number by page index (0: not cached), up to the last page
    /// cached, once the index is dense (empty until then).
    pfns: Vec<u32>,
    count: usize,
}

/// Runs a file's pages may make before its index goes over to the dense
/// array: a search among this many costs a few instructions more than the
/// array's load, and libraries stay below it.
pub const DENSE_RUNS: usize = 16;

/// Pages `idx..idx + len` of a file, in the frames from `pa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    idx: u64,
    pa: u64,
    len: u64,
}

impl Run {
    /// The page after the run.
    #[inline(always)]
    fn end(&self) -> u64 {
        self.idx + self.len
    }

    /// The frame of page `idx`, which the run holds.
    #[inline(always)]
    fn frame(&self, idx: u64) -> u64 {
        self.pa + (idx - self.idx) * PAGE_SIZE
    }
}

impl PageIndex {
    /// Whether the index is the dense array.
    #[inline(always)]
    fn dense(&self) -> bool {
        !self.pfns.is_empty()
    }

    /// The position of the first run that ends after page `idx` (the
    /// number of runs if none does): the run holding `idx` if one does.
    /// The first and the last run are asked before any search: a file
    /// read from its start, or on through its last fill, asks them most.
    #[inline(always)]
    fn first_ending_after(&self, idx: u64) -> usize {
        let [first, .., last] = self.runs[..] else {
            return usize::from(self.runs.first().is_some_and(|r| r.end() <= idx));
        };
        let n = self.runs.len();
        if first.end() > idx {
            0
        } else if last.idx <= idx {
            n - 1 + usize::from(last.end() <= idx)
        } else {
            1 + self.runs[1..n - 1].partition_point(|r| r.end() <= idx)
        }
    }

    /// The frame of page `idx`.
    #[inline]
    pub fn get(&self, idx: u64) -> Option<u64> {
        if self.dense() {
            let pfn = *self.pfns.get(usize::try_from(idx).ok()?)?;
            return (pfn != 0).then_some(u64::from(pfn) * PAGE_SIZE);
        }
        let r = self.runs.get(self.first_ending_after(idx))?;
        (r.idx <= idx).then(|| r.frame(idx))
    }

    /// Record `frame` for page `idx`, in place of the frame it had.
    #[cfg(test)]
    pub fn insert(&mut self, idx: u64, frame: u64) {
        if self.get(idx).is_some() {
            self.count -= 1;
            if self.dense() {
                self.pfns[idx as usize] = 0;
            } else {
                self.split_at(idx);
                self.split_at(idx + 1);
                let p = self.first_ending_after(idx);
                self.runs.remove(p);
            }
        }
        self.insert_absent_run(idx, frame, 1);
    }

    /// Record the `n` (> 0) consecutive frames from `frame` for the pages
    /// from `idx`, none of which is cached (a fill's run, which
    /// [`Self::absent_run`] found): a run of its own, or the end or start
    /// of the run it continues in pages and frames; in the dense array,
    /// written without a read of the entries it replaces.
    #[inline]
    pub fn insert_absent_run(&mut self, idx: u64, frame: u64, n: u64) {
        debug_assert!(n > 0 && self.absent_run(idx, n) == n);
        self.count += n as usize;
        if self.dense() {
            return self.write_pfns(idx, frame, n);
        }
        let p = self.runs.partition_point(|r| r.idx < idx);
        let after = |r: &Run| r.end() == idx && r.pa + r.len * PAGE_SIZE == frame;
        let before = |r: &Run| idx + n == r.idx && frame + n * PAGE_SIZE == r.pa;
        let joins_prev = p > 0 && after(&self.runs[p - 1]);
        let joins_next = self.runs.get(p).is_some_and(before);
        match (joins_prev, joins_next) {
            (true, true) => {
                let next = self.runs.remove(p);
                self.runs[p - 1].len += n + next.len;
            }
            (true, false) => self.runs[p - 1].len += n,
            (false, true) => {
                let r = &mut self.runs[p];
                (r.idx, r.pa, r.len) = (idx, frame, r.len + n);
            }
            (false, false) => self.runs.insert(
                p,
                Run {
                    idx,
                    pa: frame,
                    len: n,
                },
            ),
        }
        if self.runs.len() > DENSE_RUNS {
            self.make_dense();
        }
    }

    /// Go over to the dense array (out of line: a file's index does it
    /// once, if ever).
    #[inline(never)]
    fn make_dense(&mut self) {
        let runs = core::mem::take(&mut self.runs);
        for r in &runs {
            self.write_pfns(r.idx, r.pa, r.len);
        }
    }

    /// In the dense array: the frame numbers from `frame`'s for the `n`
    /// (> 0) pages from `idx`, none of them cached (the array grows once,
    /// and the entries are written unread).
    fn write_pfns(&mut self, idx: u64, frame: u64, n: u64) {
        let (i, n) = (idx as usize, n as usize);
        if i + n > self.pfns.len() {
            self.pfns.resize(i + n, 0);
        }
        let run = &mut self.pfns[i..i + n];
        // Eight to a step, two frame numbers to a word (a fill's run is up
        // to READAHEAD_PAGES pages): four word stores and four adds, where
        // each number on its own costs an add and a store. No half carries
        // into the other: the frames of a run exist, so their numbers fit.
        let mut pfn = (frame / PAGE_SIZE) as u32;
        let mut q = u64::from(pfn) | u64::from(pfn.wrapping_add(1)) << 32;
        let mut eights = run.chunks_exact_mut(8);
        for c in &mut eights {
            for k in 0..4 {
                let w = q.wrapping_add(k as u64 * TWO);
                c[2 * k] = w as u32;
                c[2 * k + 1] = (w >> 32) as u32;
            }
            q = q.wrapping_add(4 * TWO);
        }
        pfn = q as u32;
        for (k, slot) in eights.into_remainder().iter_mut().enumerate() {
            *slot = pfn.wrapping_add(k as u32);
        }
    }

    /// How many of the pages from `idx`, at most `max`, are not cached
    /// (a fill reads them together).
    #[inline]
    pub fn absent_run(&self, idx: u64, max: u64) -> u64 {
        if self.dense() {
            let len = self.pfns.len();
            let start = (idx as usize).min(len);
            let end = (idx.saturating_add(max) as usize).min(len);
            if end <= start {
                return max;
            }
            return first_held(&self.pfns[start..end]).map_or(max, |k| k as u64);
        }
        match self.runs.get(self.first_ending_after(idx)) {
            Some(r) => r.idx.saturating_sub(idx).min(max),
            None => max,
        }
    }

    /// The first page of the run of uncached pages that ends at `idx`
    /// (exclusive), not below `first` (a read-around's start).
    #[inline]
    pub fn absent_from(&self, idx: u64, first: u64) -> u64 {
        if self.dense() {
            let end = (idx as usize).min(self.pfns.len());
            let start = (first as usize).min(end);
            return last_held(&self.pfns[start..end]).map_or(first, |k| (start + k + 1) as u64);
        }
        let p = self.runs.partition_point(|r| r.idx < idx);
        match p.checked_sub(1).map(|q| &self.runs[q]) {
            Some(r) => r.end().min(idx).max(first),
            None => first,
        }
    }

    /// The first cached page in `[idx, end)` and the run of physically
    /// consecutive cached pages from it: its page index, first frame and
    /// length.
    #[inline]
    pub fn next_run(&self, idx: u64, end: u64) -> Option<(u64, u64, u64)> {
        if self.dense() {
            return self.next_run_dense(idx, end);
        }
        let r = self.runs.get(self.first_ending_after(idx))?;
        let from = r.idx.max(idx);
        (from < end).then(|| (from, r.frame(from), r.end().min(end) - from))
    }

    /// [`Self::next_run`] in the dense array: one pass over the array from
    /// `idx`, whatever lies uncached before the run.
    fn next_run_dense(&self, idx: u64, end: u64) -> Option<(u64, u64, u64)> {
        let end = (end as usize).min(self.pfns.len());
        let s = self.pfns.get(idx as usize..end)?;
        let k = first_held(s)?;
        let first = s[k];
        let more = run_len(&s[k + 1..], first.wrapping_add(1));
        Some((
            idx + k as u64,
            u64::from(first) * PAGE_SIZE,
            1 + more as u64,
        ))
    }

    /// [`Self::next_run`] for each run in `[idx, end)` in turn, handed to
    /// `f`: among runs, one search for the first and then the runs after
    /// it.
    #[inline]
    pub fn each_run(&self, idx: u64, end: u64, mut f: impl FnMut(u64, u64, u64)) {
        if self.dense() {
            let mut at = idx;
            while let Some((i, pa, n)) = self.next_run_dense(at, end) {
                f(i, pa, n);
                at = i + n;
            }
            return;
        }
        let from = self.first_ending_after(idx);
        for r in &self.runs[from..] {
            let at = r.idx.max(idx);
            if at >= end {
                break;
            }
            f(at, r.frame(at), r.end().min(end) - at);
        }
    }

    /// Pages held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The (index, frame) pairs in `[first, last]` (the tests' view of
    /// the index; the kernel asks for runs).
    #[cfg(test)]
    pub fn range(&self, first: u64, last: u64) -> Vec<(u64, u64)> {
        if self.dense() {
            return (first..=last.min(self.pfns.len() as u64))
                .filter_map(|i| self.get(i).map(|f| (i, f)))
                .collect();
        }
        let from = self.first_ending_after(first);
        self.runs[from..]
            .iter()
            .take_while(|r| r.idx <= last)
            .flat_map(|r| {
                (r.idx.max(first)..r.end().min(last.saturating_add(1))).map(|i| (i, r.frame(i)))
            })
            .collect()
    }

    /// Among runs: make page `idx` the first of its run if a run holds it.
    fn split_at(&mut self, idx: u64) {
        let p = self.first_ending_after(idx);
        let Some(r) = self.runs.get_mut(p) else {
            return;
        };
        if r.idx < idx {
            let tail = Run {
                idx,
                pa: r.frame(idx),
                len: r.end() - idx,
            };
            r.len = idx - r.idx;
            self.runs.insert(p + 1, tail);
        }
    }

    /// Remove the pages from index `keep` on; their frames.
    pub fn split_off(&mut self, keep: u64) -> Vec<u64> {
        let gone: Vec<u64> = if self.dense() {
            let keep = (keep as usize).min(self.pfns.len());
            let gone = self.pfns[keep..]
                .iter()
                .filter(|&&p| p != 0)
                .map(|&p| u64::from(p) * PAGE_SIZE)
                .collect();
            self.pfns.truncate(keep);
            gone
        } else {
            self.split_at(keep);
            let from = self.first_ending_after(keep);
            self.runs
                .drain(from..)
                .flat_map(|r| (0..r.len).map(move |k| r.pa + k * PAGE_SIZE))
                .collect()
        };
        self.count -= gone.len();
        gone
    }

    /// Remove every page; their frames.
    pub fn take_all(&mut self) -> Vec<u64> {
        self.split_off(0)
    }
}

/// What a word of two consecutive frame numbers ([`pair`]) grows by over
/// the next two.
const TWO: u64 = 2 | 2 << 32;

/// Frame numbers `k` and `k + 1` of `c` as one word (one load).
#[inline(always)]
fn pair(c: &[u32], k: usize) -> u64 {
    u64::from(c[k]) | u64::from(c[k + 1]) << 32
}

/// Whether the eight frame numbers of `c` are all 0 (four words).
#[inline(always)]
fn none_held(c: &[u32]) -> bool {
    pair(c, 0) | pair(c, 2) | pair(c, 4) | pair(c, 6) == 0
}

/// Where the first nonzero frame number of `s` is; eight to a test.
fn first_held(s: &[u32]) -> Option<usize> {
    let skipped = s.chunks_exact(8).take_while(|c| none_held(c)).count() * 8;
    s[skipped..]
        .iter()
        .position(|&p| p != 0)
        .map(|k| skipped + k)
}

/// Where the last nonzero frame number of `s` is; eight to a test.
fn last_held(s: &[u32]) -> Option<usize> {
    let skipped = s.rchunks_exact(8).take_while(|c| none_held(c)).count() * 8;
    s[..s.len() - skipped].iter().rposition(|&p| p != 0)
}

/// How many frame numbers at the start of `s` go on one by one from
/// `next`; eight to a test, two to a word (a carry between a word's halves
/// only ends the fast part early).
fn run_len(s: &[u32], next: u32) -> usize {
    let mut q = u64::from(next) | u64::from(next.wrapping_add(1)) << 32;
    let whole = s
        .chunks_exact(8)
        .take_while(|c| {
            let step = |k: usize| pair(c, 2 * k) ^ q.wrapping_add(k as u64 * TWO);
            let same = step(0) | step(1) | step(2) | step(3) == 0;
            q = q.wrapping_add(4 * TWO);
            same
        })
        .count()
        * 8;
    let mut q = next.wrapping_add(whole as u32);
    whole
        + s[whole..]
            .iter()
            .take_while(|&&p| {
                let same = p == q;
                q = q.wrapping_add(1);
                same
            })
            .count()
}

/// Identity of a host file: `st_dev` and `st_ino`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct InodeKey {
    /// Device.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

impl InodeKey {
    /// The identity of a file whose host identity is not known (the boot
    /// image's, until it is given): no host file has it.
    pub const UNKNOWN: InodeKey = InodeKey { dev: 0, ino: 0 };
}

/// One cached file.
#[derive(Debug)]
pub struct Inode {
    /// Host identity.
    pub key: InodeKey,
    /// Size in bytes as last seen.
    pub size: u64,
    /// Modification time as last seen (seconds, nanoseconds).
    pub mtime: (i64, u32),
    /// Canonical guest path (for maps listings); a kernel-provided
    /// image's static name.
    pub path: Cow<'static, [u8]>,
    /// The file lies contiguously in RAM here (the boot program's image,
    /// the vDSO and its data pages).
    image: Option<u64>,
    /// A kernel-provided mapping ([vdso], [vvar]): maps listings show its
    /// path as a name, with offset, device and inode 0.
    pub special: bool,
    /// Page index -> frame.
    pages: PageIndex,
    /// A readable host handle for filling pages, held while `users` > 0.
    handle: Option<u64>,
    /// Open files and mappings using the inode.
    pub users: u32,
    /// Open files that may write it (exec refuses it then: ETXTBSY).
    pub writers: u32,
    /// The file was found changed while in use: its cached pages below the
    /// end are to be read again ([`PageCache::refresh`]).
    stale: bool,
}

impl Inode {
    /// Zero the cached pages wholly past `size` and the tail of the page
    /// `size` falls in: what the file holds there if it grows over them
    /// again is a hole.
    fn zero_past<M: PhysMem>(&self, mem: &mut M, size: u64) {
        let keep = size.div_ceil(PAGE_SIZE);
        self.pages
            .each_run(keep, u64::MAX, |_, pa, n| mem.zero(pa, n * PAGE_SIZE));
        if !size.is_multiple_of(PAGE_SIZE) {
            if let Some(f) = self.pages.get(size / PAGE_SIZE) {
                mem.zero(f + size % PAGE_SIZE, PAGE_SIZE - size % PAGE_SIZE);
            }
        }
    }

    /// Whether the file `info` describes has this inode's size and
    /// modification time (unchanged since it was read, for an image).
    fn same_as(&self, info: &FileInfo) -> bool {
        self.size == info.size && self.mtime == info.mtime
    }

    /// The frame of page `idx` if it is in RAM.
    #[inline]
    pub fn resident(&self, idx: u64) -> Option<u64> {
        if let Some(base) = self.image {
            let off = idx.checked_mul(PAGE_SIZE)?;
            return (off < self.size).then_some(base + off);
        }
        self.pages.get(idx)
    }

    /// The first resident page in `[idx, end)` and the run of physically
    /// consecutive resident pages from it: its page index, first frame and
    /// length (`None` if no page there is resident). A file lying in RAM
    /// whole is one run.
    #[inline]
    pub fn next_resident_run(&self, idx: u64, end: u64) -> Option<(u64, u64, u64)> {
        if let Some(base) = self.image {
            let end = end.min(self.size.div_ceil(PAGE_SIZE));
            return (idx < end).then(|| (idx, base + idx * PAGE_SIZE, end - idx));
        }
        self.pages.next_run(idx, end)
    }

    /// [`Self::next_resident_run`] for each run of resident pages in
    /// `[idx, end)` in turn, handed to `f` (index, first frame, length).
    #[inline]
    pub fn each_resident_run(&self, idx: u64, end: u64, mut f: impl FnMut(u64, u64, u64)) {
        if let Some(base) = self.image {
            let end = end.min(self.size.div_ceil(PAGE_SIZE));
            if idx < end {
                f(idx, base + idx * PAGE_SIZE, end - idx);
            }
            return;
        }
        self.pages.each_run(idx, end, f);
    }

    /// Pages held in RAM.
    pub fn cached_pages(&self) -> usize {
        self.pages.len()
    }

    /// Whether the file is the boot image (never changed, never freed).
    pub fn is_image(&self) -> bool {
        self.image.is_some()
    }

    /// Where the boot image lies in RAM whole: the frame of its page 0
    /// (its page `k` is `k` pages on; `None` for other files).
    #[inline]
    pub fn image_base(&self) -> Option<u64> {
        self.image
    }

    /// How the file lies in RAM, for a fault to choose its mapping: two
    /// words, as [`Self::image_base`]'s answer is.
    #[inline(always)]
    pub fn residence(&self) -> Residence {
        match self.image {
            Some(base) if self.special => Residence::Special(base),
            Some(base) => Residence::Image(base),
            None => Residence::Pages,
        }
    }
}

/// How a cached file lies in RAM ([`Inode::residence`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residence {
    /// The boot image, whole from this frame.
    Image(u64),
    /// A kernel-provided image ([vvar], [vdso]), whole from this frame.
    Special(u64),
    /// Page by page, in the page index (a host file).
    Pages,
}

/// All cached files, by index.
#[derive(Debug)]
pub struct PageCache {
    inodes: Vec<Option<Inode>>,
    by_key: BTreeMap<InodeKey, u16>,
    /// Pages read from the host in all.
    pub pages_read: u64,
    /// Host reads done to fill pages.
    pub fills: u64,
    /// The boot image, when its host identity is known: a read-only open
    /// of that same file (identity, size and modification time) finds it
    /// ([`Self::attach`]) instead of a new inode filled from the host.
    boot_image: Option<u16>,
    /// The host pieces of a fill, kept from one to the next (in the
    /// kernel's static state, zero from the start): an array of them on
    /// the stack was zeroed at every fill (by a ZERO hypercall, being over
    /// 1 KiB).
    iov: [IoVec; READAHEAD_PAGES as usize],
}

/// Inode `id` of `inodes` (for a look while the key index is borrowed).
fn inode(inodes: &[Option<Inode>], id: u16) -> Option<&Inode> {
    inodes.get(usize::from(id))?.as_ref()
}

/// What [`PageCache::attach`] learnt about a file.
#[derive(Clone, Copy, Debug)]
pub struct FileInfo {
    /// Identity.
    pub key: InodeKey,
    /// Size.
    pub size: u64,
    /// Modification time.
    pub mtime: (i64, u32),
}

/// Inodes the page cache has room for from the start, besides the
/// kernel-provided images: the boot image, a dynamic program's interpreter
/// and its first libraries, before the list grows (all of them in one of
/// the kernel heap's size classes, not a first-fit block).
const FIRST_FILES: usize = 8;

impl Default for PageCache {
    fn default() -> Self {
        Self::new()
    }
}

impl PageCache {
    /// An empty cache.
    pub const fn new() -> PageCache {
        PageCache {
            inodes: Vec::new(),
            by_key: BTreeMap::new(),
            pages_read: 0,
            fills: 0,
            boot_image: None,
            iov: [IoVec { phys: 0, len: 0 }; READAHEAD_PAGES as usize],
        }
    }

    /// The inode at `id`.
    pub fn get(&self, id: u16) -> Option<&Inode> {
        self.inodes.get(usize::from(id))?.as_ref()
    }

    fn get_mut(&mut self, id: u16) -> KResult<&mut Inode> {
        self.inodes
            .get_mut(usize::from(id))
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)
    }

    /// Add `ino` at the end (an inode stays until [`Self::clear`], so
    /// there is no freed slot to look for); its id. Inlined: the inode is
    /// made in its slot, not copied there.
    #[inline(always)]
    fn push(inodes: &mut Vec<Option<Inode>>, ino: Inode) -> KResult<u16> {
        let id = inodes.len();
        if id >= usize::from(u16::MAX) {
            return Err(Errno::ENFILE);
        }
        inodes.push(Some(ino));
        Ok(id as u16)
    }

    /// Add the boot program's image (`size` bytes at `phys`, page
    /// aligned), with the host file's identity `key` and modification time
    /// when the VMM read it (device and inode 0 if unknown, until
    /// [`Self::set_key`] gives them). Its `path` is borrowed, not copied:
    /// it lies in the argument block, which nothing writes for the whole
    /// run. The image is not listed by its key: a read-only open of the
    /// same file, unchanged, finds it through [`Self::attach`], and any
    /// other open gets an inode of its own. Inlined into the boot exec,
    /// its one caller.
    #[inline(always)]
    pub fn add_image(
        &mut self,
        size: u64,
        path: &'static [u8],
        (phys, key, mtime): (u64, InodeKey, (i64, u32)),
    ) -> KResult<u16> {
        if phys & (PAGE_SIZE - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let ino = Inode {
            key,
            size,
            mtime,
            path: Cow::Borrowed(path),
            image: Some(phys),
            special: false,
            pages: PageIndex::default(),
            handle: None,
            users: 1,
            writers: 0,
            stale: false,
        };
        let id = Self::push(&mut self.inodes, ino)?;
        self.boot_image = Some(id);
        Ok(id)
    }

    /// Find or create the inode for an opened file and count one more
    /// user; `handle` (a readable host handle of the opener, or None) may
    /// become the inode's filling handle, in which case the opener must not
    /// close it but [`PageCache::release`] does. Returns the inode and
    /// whether it took the handle.
    ///
    /// The boot image holds a file whole in RAM as the VMM read it: a
    /// read-only open (`writable` false) of that file while it is
    /// unchanged (identity, size and modification time) gets the image's
    /// inode, so that a program exec'ing itself or its shell's binary
    /// again reads and maps it from RAM, with no host read. An open that
    /// may write it, or finds it changed, gets an inode of its own filled
    /// from the host (from then on every open of it does): the image is
    /// the file as it was, never written.
    pub fn attach<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        info: FileInfo,
        path: &[u8],
        handle: Option<u64>,
        writable: bool,
    ) -> KResult<(u16, bool)> {
        // One search of the index by identity, whether the file is new
        // or not.
        let id = match self.by_key.entry(info.key) {
            Entry::Occupied(mut e) => {
                let id = *e.get();
                let image = inode(&self.inodes, id).filter(|i| i.image.is_some());
                if image.is_some_and(|i| writable || !i.same_as(&info)) {
                    let id = Self::new_inode(&mut self.inodes, info, path)?;
                    e.insert(id);
                    id
                } else {
                    id
                }
            }
            Entry::Vacant(e) => {
                let image = self.boot_image.filter(|&img| {
                    let known = |i: &Inode| i.key != InodeKey::UNKNOWN && i.key == info.key;
                    !writable
                        && inode(&self.inodes, img).is_some_and(|i| known(i) && i.same_as(&info))
                });
                match image {
                    Some(img) => *e.insert(img),
                    None => *e.insert(Self::new_inode(&mut self.inodes, info, path)?),
                }
            }
        };
        let ino = self.get_mut(id)?;
        let changed =
            ino.size != info.size || (ino.mtime != info.mtime && ino.mtime != CHANGED_HERE);
        if changed && ino.image.is_none() {
            if ino.users == 0 {
                for frame in ino.pages.take_all() {
                    frames.set_cache(mem, frame, false);
                    frames.free(mem, frame);
                }
            } else {
                // In use (a mapping may hold the pages): they stay, zero
                // past the new end, the rest to be read again.
                ino.zero_past(mem, info.size);
                ino.stale = !ino.pages.is_empty();
            }
        }
        ino.size = info.size;
        ino.mtime = info.mtime;
        ino.users += 1;
        let took = ino.handle.is_none() && handle.is_some() && ino.image.is_none();
        if took {
            ino.handle = handle;
        }
        Ok((id, took))
    }

    /// A host file's inode for `info`, opened by `path`, at the end (an
    /// inode stays until [`Self::clear`]: there is no freed slot to look
    /// for). Inlined, so that it is written in its slot, not copied there.
    #[inline(always)]
    fn new_inode(inodes: &mut Vec<Option<Inode>>, info: FileInfo, path: &[u8]) -> KResult<u16> {
        let id = inodes.len();
        if id >= usize::from(u16::MAX) {
            return Err(Errno::ENFILE);
        }
        inodes.push(Some(Inode {
            key: info.key,
            size: info.size,
            mtime: info.mtime,
            path: Cow::Owned(path.to_vec()),
            image: None,
            special: false,
            pages: PageIndex::default(),
            handle: None,
            users: 0,
            writers: 0,
            stale: false,
        }));
        Ok(id as u16)
    }

    /// Add the kernel-provided images ([vvar], [vdso] and kin) in one go:
    /// `(name, phys, len)` each (`phys` page aligned; the name is kept as
    /// it is, not copied to the heap), with private
    /// identities (inode numbers 1, 2, ... in that order). Returns their
    /// ids. They are appended with room made once, not placed in free
    /// slots (boot adds them, when there are none), and not entered in the
    /// index by identity: no host file has their device (`u64::MAX`), so
    /// no lookup would find them there.
    pub fn add_specials<const N: usize>(
        &mut self,
        images: [(&'static [u8], u64, u64); N],
    ) -> KResult<[u16; N]> {
        if images
            .iter()
            .any(|&(_, phys, _)| phys & (PAGE_SIZE - 1) != 0)
        {
            return Err(Errno::EINVAL);
        }
        if self.inodes.len() + N > usize::from(u16::MAX) {
            return Err(Errno::ENFILE);
        }
        // The boot's images come first: room for them and for the files a
        // program opens first (a dynamic one's interpreter and libraries),
        // in the one allocation that is made anyway.
        self.inodes.reserve(N + FIRST_FILES);
        let mut ids = [0; N];
        for (n, (name, phys, len)) in images.into_iter().enumerate() {
            ids[n] = self.inodes.len() as u16;
            self.inodes.push(Some(Inode {
                key: InodeKey {
                    dev: u64::MAX,
                    ino: n as u64 + 1,
                },
                size: len,
                mtime: (0, 0),
                path: Cow::Borrowed(name),
                image: Some(phys),
                special: true,
                pages: PageIndex::default(),
                handle: None,
                users: 1,
                writers: 0,
                stale: false,
            }));
        }
        Ok(ids)
    }

    /// Set the host identity of `id` (the boot image learns it late).
    pub fn set_key(&mut self, id: u16, key: InodeKey) {
        if let Ok(ino) = self.get_mut(id) {
            let old = core::mem::replace(&mut ino.key, key);
            self.by_key.remove(&old);
            self.by_key.insert(key, id);
        }
    }

    /// One more (`up`) or one fewer writer of `id`.
    pub fn count_writer(&mut self, id: u16, up: bool) {
        if let Ok(ino) = self.get_mut(id) {
            ino.writers = if up {
                ino.writers + 1
            } else {
                ino.writers.saturating_sub(1)
            };
        }
    }

    /// Count one more user of `id` (a new mapping of it).
    pub fn get_ref(&mut self, id: u16) {
        if let Ok(ino) = self.get_mut(id) {
            ino.users += 1;
        }
    }

    /// One user of `id` is gone; when none is left, its filling handle is
    /// closed (the pages stay cached).
    pub fn release(&mut self, host: &mut dyn FsHost, id: u16) {
        let Ok(ino) = self.get_mut(id) else { return };
        ino.users = ino.users.saturating_sub(1);
        if ino.users == 0 {
            if let Some(h) = ino.handle.take() {
                host::close(host, h, false);
            }
        }
    }

    /// Give `id` a filling handle if it has none (the caller hands it
    /// over); returns whether it was taken.
    pub fn offer_handle(&mut self, id: u16, handle: u64) -> bool {
        match self.get_mut(id) {
            Ok(ino) if ino.handle.is_none() && ino.image.is_none() => {
                ino.handle = Some(handle);
                true
            }
            _ => false,
        }
    }

    /// The frame holding page `idx` of `id`, read from the host (with the
    /// following pages, up to [`READAHEAD_PAGES`] or the end of the file)
    /// if it is not cached. The bytes past the end of the file in the last
    /// page are zero. EIO past the end of the file or without a handle.
    pub fn page<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        host: &mut dyn FsHost,
        id: u16,
        idx: u64,
    ) -> KResult<u64> {
        let ino = self.get(id).ok_or(Errno::EBADF)?;
        if let Some(f) = ino.resident(idx) {
            return Ok(f);
        }
        self.fill_around(mem, frames, host, id, idx, idx)
    }

    /// Page `idx` of `id`, which its caller found not resident (a fault
    /// or a read looks first, without a call), read from the host as
    /// [`Self::page`] reads it, together with the missing pages just
    /// before it, back to page `first` (a fault's fault-around window's
    /// start; `idx` for a read), as Linux's mmap read-around reads around
    /// the faulting page. A program runs through a library's text
    /// downwards as often as upwards: reading only forwards, each fault
    /// below the last one's run reads (and maps) a page or two.
    #[allow(clippy::too_many_arguments)]
    pub fn fill_around<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        host: &mut dyn FsHost,
        id: u16,
        idx: u64,
        first: u64,
    ) -> KResult<u64> {
        let ino = self.get(id).ok_or(Errno::EBADF)?;
        let pages_in_file = ino.size.div_ceil(PAGE_SIZE);
        if idx >= pages_in_file {
            return Err(Errno::EIO);
        }
        let handle = ino.handle.ok_or(Errno::EIO)?;
        // The read holds `idx`: it starts at most READAHEAD_PAGES - 1 below.
        let first = first.clamp((idx + 1).saturating_sub(READAHEAD_PAGES), idx);
        let start = match first < idx {
            true => ino.pages.absent_from(idx, first),
            false => idx,
        };
        let max = READAHEAD_PAGES.min(pages_in_file - start);
        let n = ino.pages.absent_run(start, max).max(1);
        self.fill(mem, frames, host, id, handle, start, n)?;
        self.get(id).and_then(|i| i.resident(idx)).ok_or(Errno::EIO)
    }

    /// Read pages `[idx, idx + n)` of `id` from the host into new frames:
    /// runs of consecutive frames where the allocator has them (one host
    /// piece and one index update each, and the fault-around maps a run
    /// in one pass), single frames from its free list.
    #[allow(clippy::too_many_arguments)]
    fn fill<M: PhysMem>(
        &mut self,
        mem: &mut M,
        frames: &mut FrameAllocator,
        host: &mut dyn FsHost,
        id: u16,
        handle: u64,
        idx: u64,
        n: u64,
    ) -> KResult<()> {
        // Whether each of the first 64 pieces is a run whose frames never
        // held data, a bit each (the few fills of more pieces count the
        // others as used frames, which are zeroed where it matters).
        let (mut clean, mut pieces, mut got) = (0u64, 0, 0);
        while got < n && pieces < self.iov.len() {
            let Some((pa, k, fresh)) = frames.alloc_run_uninit(mem, n - got) else {
                break;
            };
            if pieces < 64 {
                clean |= u64::from(fresh) << pieces;
            }
            self.iov[pieces] = IoVec {
                phys: pa,
                len: k * PAGE_SIZE,
            };
            pieces += 1;
            got += k;
        }
        if got == 0 {
            return Err(Errno::ENOMEM);
        }
        let iov = &self.iov[..pieces];
        let read = match host::pread(host, handle, idx * PAGE_SIZE, iov) {
            Ok(r) => r,
            Err(e) => {
                for v in iov {
                    for k in 0..v.len / PAGE_SIZE {
                        frames.free(mem, v.phys + k * PAGE_SIZE);
                    }
                }
                return Err(e);
            }
        };
        self.fills += 1;
        let ino = self
            .inodes
            .get_mut(usize::from(id))
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)?;
        // Pages holding file data; the last may be partial.
        let keep = read.div_ceil(PAGE_SIZE);
        let mut at = 0;
        for (p, v) in iov.iter().enumerate() {
            let fresh = p < 64 && clean >> p & 1 != 0;
            let len = v.len / PAGE_SIZE;
            let kept = keep.saturating_sub(at).min(len);
            if kept < len {
                // Past the end of what was read: untouched, and still zero
                // if the run was.
                let rest = v.phys + kept * PAGE_SIZE;
                if fresh {
                    frames.give_back_run_end(mem, rest, len - kept);
                } else {
                    (0..len - kept).for_each(|k| _ = frames.free(mem, rest + k * PAGE_SIZE));
                }
            }
            if kept > 0 {
                let part = read % PAGE_SIZE;
                if at + kept == keep && part != 0 && !fresh {
                    mem.zero(v.phys + (kept - 1) * PAGE_SIZE + part, PAGE_SIZE - part);
                }
                frames.set_cache_run(mem, v.phys, kept, true);
                ino.pages.insert_absent_run(idx + at, v.phys, kept);
            }
            at += len;
        }
        self.pages_read += keep;
        if read == 0 {
            return Err(Errno::EIO);
        }
        Ok(())
    }

    /// After a write of `len` bytes at `off` through to the host, from
    /// the physical pieces `data` (their first `len` bytes): the new size,
    /// and the bytes copied into the cached pages the write touched, in
    /// place, so that the cache and every mapping see them. The copy needs
    /// no read of the host, and no readable handle: the writer's may be
    /// write-only. Where the write starts past the old end, the cached
    /// bytes past that end are zeroed first ([`Inode::zero_past`]), as the
    /// hole between reads.
    pub fn written<M: PhysMem>(
        &mut self,
        mem: &mut M,
        id: u16,
        data: &[IoVec],
        (off, len): (u64, u64),
        new_size: u64,
    ) {
        let Ok(ino) = self.get_mut(id) else { return };
        let old_size = ino.size;
        ino.size = new_size;
        if ino.image.is_some() || len == 0 {
            return;
        }
        ino.mtime = CHANGED_HERE;
        if off > old_size {
            ino.zero_past(mem, old_size);
        }
        // The bytes come from the writer's pages, which may be these very
        // cached pages (a write from a shared mapping of the file): then
        // they are all taken first, as the host took them, and copied in
        // from there.
        let (first, last) = (off / PAGE_SIZE, (off + len - 1) / PAGE_SIZE);
        let mut aliased = false;
        ino.pages.each_run(first, last + 1, |_, pa, n| {
            let hit = |p: &IoVec| p.phys < pa + n * PAGE_SIZE && pa < p.phys + p.len;
            aliased |= data.iter().any(hit);
        });
        let (mut at, end) = (off, off + len);
        if aliased {
            let mut bytes = alloc::vec![0u8; len as usize];
            let mut k = 0;
            for p in data {
                let n = (p.len as usize).min(bytes.len() - k);
                mem.read_bytes(p.phys, &mut bytes[k..k + n]);
                k += n;
                if k == bytes.len() {
                    break;
                }
            }
            while at < end {
                let n = (PAGE_SIZE - at % PAGE_SIZE).min(end - at);
                if let Some(f) = ino.pages.get(at / PAGE_SIZE) {
                    let k = (at - off) as usize;
                    mem.write_bytes(f + at % PAGE_SIZE, &bytes[k..k + n as usize]);
                }
                at += n;
            }
            return;
        }
        for piece in data {
            let mut src = piece.phys;
            let piece_end = (at + piece.len).min(end);
            while at < piece_end {
                let n = (PAGE_SIZE - at % PAGE_SIZE).min(piece_end - at);
                if let Some(f) = ino.pages.get(at / PAGE_SIZE) {
                    mem.copy(f + at % PAGE_SIZE, src, n);
                }
                (at, src) = (at + n, src + n);
            }
            if at >= end {
                break;
            }
        }
    }

    /// The file `id` shrank or grew to `size` (ftruncate): the cached
    /// bytes past the smaller of the old and the new end are zeroed in
    /// place (a grown file's old last page may hold what a mapping stored
    /// past the old end: the hole reads zeros). They stay cached (a
    /// mapping may hold them: the kernel keeps no map from a frame to the
    /// entries that map it), and zero is what they hold if the file grows
    /// over them again, as a hole reads: a shrink then a write further on
    /// (or a larger `ftruncate`) must not bring back the bytes cut off. A mapping that reads them meanwhile
    /// sees zeros where Linux, which unmaps them, would raise SIGBUS.
    pub fn truncated<M: PhysMem>(&mut self, mem: &mut M, id: u16, size: u64) {
        let Ok(ino) = self.get_mut(id) else { return };
        let old_size = core::mem::replace(&mut ino.size, size);
        if ino.image.is_some() {
            return;
        }
        ino.mtime = CHANGED_HERE;
        ino.zero_past(mem, size.min(old_size));
    }

    /// A shared mapping's pages of `id` were written back to the host:
    /// its new modification time is the guest's own change, not one to
    /// read the pages again for at the next open.
    pub fn written_back(&mut self, id: u16) {
        if let Ok(ino) = self.get_mut(id) {
            if ino.image.is_none() {
                ino.mtime = CHANGED_HERE;
            }
        }
    }

    /// Read again the cached pages of `id` below its end if it was found
    /// changed while in use ([`Self::attach`]), by its filling handle, in
    /// place (mappings see the new bytes); a page the file no longer
    /// fills reads as zeros. Nothing if it is not stale or has no
    /// readable handle yet (a later readable open gives it one).
    pub fn refresh<M: PhysMem>(&mut self, mem: &mut M, host: &mut dyn FsHost, id: u16) {
        let Ok(ino) = self.get_mut(id) else { return };
        let Some(handle) = ino.handle.filter(|_| ino.stale) else {
            return;
        };
        ino.stale = false;
        let keep = ino.size.div_ceil(PAGE_SIZE);
        ino.pages.each_run(0, keep, |idx, pa, n| {
            mem.zero(pa, n * PAGE_SIZE);
            let iov = [IoVec {
                phys: pa,
                len: n * PAGE_SIZE,
            }];
            let _ = host::pread(host, handle, idx * PAGE_SIZE, &iov);
        });
    }

    /// Frames held by the cache.
    pub fn frames_held(&self) -> u64 {
        self.inodes
            .iter()
            .flatten()
            .map(|i| i.pages.len() as u64)
            .sum()
    }

    /// Drop every page and inode (at the end of the run).
    pub fn clear<M: PhysMem>(&mut self, mem: &mut M, frames: &mut FrameAllocator) {
        for ino in self.inodes.iter_mut().flatten() {
            for frame in ino.pages.take_all() {
                frames.set_cache(mem, frame, false);
                frames.free(mem, frame);
            }
        }
        self.inodes.clear();
        self.by_key.clear();
        self.boot_image = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::testmem::TestMem;
    use vmrun_contract::fs::{op, FsRequest};

    /// A host whose one file has `size` bytes; records each request's op,
    /// offset and pieces (it cannot write guest memory: the frames are
    /// checked by address).
    struct FakeFile {
        req: FsRequest,
        size: u64,
        calls: Vec<(u32, u64, Vec<IoVec>)>,
    }

    impl FsHost for FakeFile {
        fn req(&mut self) -> &mut FsRequest {
            &mut self.req
        }
        fn submit(&mut self, iov: &[IoVec]) -> i64 {
            let r = &self.req;
            self.calls.push((r.op, r.offset, iov.to_vec()));
            match r.op {
                op::PREAD => {
                    let want: u64 = iov.iter().map(|v| v.len).sum();
                    want.min(self.size.saturating_sub(r.offset)) as i64
                }
                _ => 0,
            }
        }
    }

    #[test]
    fn specials_get_consecutive_ids_their_pages_and_no_place_in_the_identity_index() {
        let (_, _, mut cache, _, file) = setup(PAGE_SIZE);
        let ids = cache
            .add_specials([
                (b"[vvar]", 0x20_0000, 2 * PAGE_SIZE),
                (b"[vdso]", 0x30_0000, PAGE_SIZE),
            ])
            .unwrap();
        assert_eq!(ids, [file + 1, file + 2]);
        let vvar = cache.get(ids[0]).unwrap();
        assert!(vvar.special);
        assert_eq!(&*vvar.path, b"[vvar]");
        assert_eq!(vvar.resident(1), Some(0x20_1000));
        assert_eq!(vvar.resident(2), None);
        assert_eq!(
            cache.get(ids[1]).unwrap().key,
            InodeKey {
                dev: u64::MAX,
                ino: 2
            }
        );
        assert!(!cache.by_key.contains_key(&InodeKey {
            dev: u64::MAX,
            ino: 1
        }));
        assert_eq!(cache.add_specials([(b"x", 0x1234, 1)]), Err(Errno::EINVAL));
    }

    #[test]
    fn the_boot_images_leave_room_for_the_first_files_in_one_allocation() {
        let mut cache = PageCache::new();
        let specials = [(&b"[vvar]"[..], 0x20_0000, PAGE_SIZE); 3];
        cache.add_specials(specials).unwrap();
        assert!(cache.inodes.capacity() >= 3 + FIRST_FILES);
        // In one of the kernel heap's size classes (2 KiB at most).
        let bytes = cache.inodes.capacity() * core::mem::size_of::<Option<Inode>>();
        assert!(bytes <= 2048, "{bytes}");
    }

    fn setup(size: u64) -> (TestMem, FrameAllocator, PageCache, FakeFile, u16) {
        let mut mem = TestMem::new(16 << 20);
        let mut frames = FrameAllocator::new(1 << 20, 16 << 20);
        let bits = frames.alloc_zeroed(&mut mem).unwrap();
        frames.use_cache_bits(bits);
        let mut cache = PageCache::new();
        let info = FileInfo {
            key: InodeKey { dev: 8, ino: 42 },
            size,
            mtime: (1, 2),
        };
        let (id, took) = cache
            .attach(&mut mem, &mut frames, info, b"/f", Some(7), false)
            .unwrap();
        assert!(took, "the first readable opener's handle fills pages");
        let host = FakeFile {
            req: FsRequest::zeroed(),
            size,
            calls: Vec::new(),
        };
        (mem, frames, cache, host, id)
    }

    #[test]
    fn a_read_only_open_of_the_unchanged_boot_file_finds_its_image() {
        let (key, mtime, size) = (InodeKey { dev: 8, ino: 43 }, (5, 6), 3 * PAGE_SIZE + 5);
        let info = |mtime| FileInfo { key, size, mtime };
        // A cache holding the boot image of identity `key` (or `image_key`).
        let cache_with = |image_key| {
            let (mem, frames, mut cache, host, _) = setup(PAGE_SIZE);
            let img = cache
                .add_image(size, b"/bin/prog", (0x40_0000, image_key, mtime))
                .unwrap();
            (mem, frames, cache, host, img)
        };
        fn open(
            (mem, frames, cache): (&mut TestMem, &mut FrameAllocator, &mut PageCache),
            info: FileInfo,
            writable: bool,
        ) -> (u16, bool) {
            let r = cache.attach(mem, frames, info, b"/p", Some(9), writable);
            r.unwrap()
        }

        let (mut mem, mut frames, mut cache, mut host, img) = cache_with(key);
        // Unchanged and read-only: the image, its pages in RAM already.
        for _ in 0..2 {
            let got = open((&mut mem, &mut frames, &mut cache), info(mtime), false);
            assert_eq!(got, (img, false));
        }
        assert_eq!(
            cache.get(img).unwrap().users,
            3,
            "the boot exec's and two opens'"
        );
        let page = cache.page(&mut mem, &mut frames, &mut host, img, 1);
        assert_eq!(page, Ok(0x40_1000));
        assert!(host.calls.is_empty(), "no host read");
        // Changed since the VMM read it: a host inode, and from then on
        // every open of the file gets that one.
        let (newer, took) = open((&mut mem, &mut frames, &mut cache), info((5, 7)), false);
        assert!(newer != img && took);
        let again = open((&mut mem, &mut frames, &mut cache), info((5, 7)), false);
        assert_eq!(again.0, newer);
        assert_eq!(
            cache.get(img).unwrap().key,
            key,
            "the image keeps its identity"
        );

        // An open that may write the file never gets the image, nor does
        // a read-only one after it.
        let (mut mem, mut frames, mut cache, _, img) = cache_with(key);
        let written = open((&mut mem, &mut frames, &mut cache), info(mtime), true).0;
        assert_ne!(written, img);
        let read = open((&mut mem, &mut frames, &mut cache), info(mtime), false).0;
        assert_eq!(read, written);

        // An image of unknown identity is never found.
        let (mut mem, mut frames, mut cache, _, img) = cache_with(InodeKey::UNKNOWN);
        let unknown = FileInfo {
            key: InodeKey::UNKNOWN,
            ..info(mtime)
        };
        let got = open((&mut mem, &mut frames, &mut cache), unknown, false).0;
        assert_ne!(got, img);
    }

    #[test]
    fn a_miss_reads_ahead_in_one_host_call_and_a_hit_reads_nothing() {
        let (mut mem, mut frames, mut cache, mut host, id) = setup(10 * PAGE_SIZE);
        let f = cache.page(&mut mem, &mut frames, &mut host, id, 2).unwrap();
        assert_eq!(host.calls.len(), 1);
        let (o, off, iov) = &host.calls[0];
        assert_eq!((*o, *off), (op::PREAD, 2 * PAGE_SIZE));
        assert_eq!(iov.len(), 1, "eight never-used frames in one run");
        assert_eq!((iov[0].phys, iov[0].len), (f, 8 * PAGE_SIZE));
        assert!(frames.is_cache(&mem, f) && !frames.is_private(&mem, f));
        for idx in 2..10 {
            cache
                .page(&mut mem, &mut frames, &mut host, id, idx)
                .unwrap();
        }
        assert_eq!(host.calls.len(), 1, "pages 2..10 came with the first read");
        assert_eq!(cache.get(id).unwrap().cached_pages(), 8);
        assert_eq!(
            cache.page(&mut mem, &mut frames, &mut host, id, 10),
            Err(Errno::EIO)
        );
    }

    #[test]
    fn a_fault_reads_around_back_to_the_last_cached_page_or_its_window_start() {
        // Three readaheads and an eighth of one.
        const R: u64 = READAHEAD_PAGES;
        let pages = 3 * R + R / 8;
        let (mut mem, mut frames, mut cache, mut host, id) = setup(pages * PAGE_SIZE);
        let f = cache
            .fill_around(&mut mem, &mut frames, &mut host, id, R + 6, R)
            .unwrap();
        let (_, off, iov) = &host.calls[0];
        assert_eq!(*off, R * PAGE_SIZE, "from the window's start");
        assert_eq!(iov[0].len, R * PAGE_SIZE);
        assert_eq!(f, iov[0].phys + 6 * PAGE_SIZE);
        // Below: back to the window start, up to the first cached page.
        cache
            .fill_around(&mut mem, &mut frames, &mut host, id, R / 2 + 8, 0)
            .unwrap();
        let (_, off, iov) = &host.calls[1];
        assert_eq!((*off, iov[0].len), (0, R * PAGE_SIZE));
        // A cached page below stops it; so does the readahead's reach.
        cache
            .fill_around(&mut mem, &mut frames, &mut host, id, 3 * R - 2, 0)
            .unwrap();
        let (_, off, iov) = &host.calls[2];
        assert_eq!((*off, iov[0].len), (2 * R * PAGE_SIZE, R * PAGE_SIZE));
        cache
            .fill_around(&mut mem, &mut frames, &mut host, id, 3 * R + 3, R + 36)
            .unwrap();
        let (_, off, iov) = &host.calls[3];
        assert_eq!((*off, iov[0].len), (3 * R * PAGE_SIZE, R / 8 * PAGE_SIZE));
        assert_eq!(cache.get(id).unwrap().cached_pages(), pages as usize);
    }

    #[test]
    fn the_index_finds_absent_pages_and_the_next_run_of_consecutive_frames() {
        let mut ix = PageIndex::default();
        ix.insert_absent_run(2, 0x10_0000, 3);
        ix.insert(5, 0x20_0000);
        ix.insert_absent_run(6, 0x20_1000, 2);
        assert_eq!(ix.len(), 6);
        ix.insert(3, 0x10_1000);
        assert_eq!(ix.len(), 6, "a page recorded again is not counted again");
        assert_eq!(ix.absent_run(0, 64), 2);
        assert_eq!(ix.absent_run(0, 1), 1);
        assert_eq!(ix.absent_run(2, 64), 0);
        assert_eq!(ix.absent_run(8, 64), 64, "past the index: all absent");
        assert_eq!(ix.absent_from(2, 0), 0);
        assert_eq!(ix.absent_from(4, 0), 4, "page 3 is cached");
        assert_eq!(ix.absent_from(20, 3), 8, "from the last cached page on");
        assert_eq!(ix.absent_from(30, 25), 25, "past the index: from `first`");
        // From a gap: the run starts at the first cached page.
        assert_eq!(ix.next_run(0, 100), Some((2, 0x10_0000, 3)));
        // A gap in the frames ends a run; consecutive frames go on.
        assert_eq!(ix.next_run(3, 100), Some((3, 0x10_1000, 2)));
        assert_eq!(ix.next_run(5, 100), Some((5, 0x20_0000, 3)));
        assert_eq!(
            ix.next_run(5, 7),
            Some((5, 0x20_0000, 2)),
            "the end bounds it"
        );
        assert_eq!(ix.next_run(8, 100), None);
        assert_eq!(ix.next_run(0, 2), None);
        ix.insert_absent_run(20, 0x30_0000, 9);
        assert_eq!(ix.len(), 15, "past the index's end: it grows");
        assert_eq!(ix.next_run(9, 100), Some((20, 0x30_0000, 9)));
        assert_eq!(ix.next_run(21, 28), Some((21, 0x30_1000, 7)));
        assert_eq!(ix.absent_from(20, 0), 8);
        assert_eq!(ix.absent_run(9, 64), 11);
    }

    #[test]
    fn a_fill_takes_runs_and_zeroes_only_a_used_frames_tail() {
        let (mut mem, mut frames, mut cache, mut host, id) = setup(PAGE_SIZE + 100);
        let a = frames.alloc_zeroed(&mut mem).unwrap();
        let b = frames.alloc_zeroed(&mut mem).unwrap();
        // With no run of frames left (every huge frame and the bump
        // taken), a fill takes frames that held data from the free list,
        // one at a time.
        while frames.alloc_huge_zeroed(&mut mem).is_some() {}
        while frames.alloc_run_uninit(&mut mem, 512).is_some() {}
        mem.fill(a, PAGE_SIZE, 0xaa);
        mem.fill(b, PAGE_SIZE, 0xbb);
        frames.free(&mut mem, a);
        frames.free(&mut mem, b);
        cache.page(&mut mem, &mut frames, &mut host, id, 0).unwrap();
        let ino = cache.get(id).unwrap();
        assert_eq!((ino.resident(0), ino.resident(1)), (Some(b), Some(a)));
        assert_eq!(host.calls[0].2.len(), 2);
        // The last page holds 100 bytes of the file: the rest is zeroed.
        assert_eq!(
            mem.byte(a + 99),
            0xaa,
            "the file's bytes (as the host left them)"
        );
        assert_eq!(mem.byte(a + 100), 0);
        assert_eq!(mem.byte(a + PAGE_SIZE - 1), 0);
        assert_eq!(mem.zero_calls, 1);
    }

    #[test]
    fn a_fill_of_more_than_64_pieces_zeroes_the_last_used_frames_tail() {
        const PAGES: u64 = 71;
        let size = (PAGES - 1) * PAGE_SIZE + 100;
        let (mut mem, mut frames, mut cache, mut host, id) = setup(size);
        let used: Vec<u64> = (0..PAGES)
            .map(|_| frames.alloc_zeroed(&mut mem).unwrap())
            .collect();
        while frames.alloc_huge_zeroed(&mut mem).is_some() {}
        while frames.alloc_run_uninit(&mut mem, 512).is_some() {}
        for &f in &used {
            mem.fill(f, PAGE_SIZE, 0xcc);
            frames.free(&mut mem, f);
        }
        cache.page(&mut mem, &mut frames, &mut host, id, 0).unwrap();
        assert_eq!(host.calls[0].2.len(), PAGES as usize, "a piece a frame");
        let ino = cache.get(id).unwrap();
        assert_eq!(ino.cached_pages(), PAGES as usize);
        let last = ino.resident(PAGES - 1).unwrap();
        assert_eq!((mem.byte(last + 99), mem.byte(last + 100)), (0xcc, 0));
        assert_eq!(mem.byte(last + PAGE_SIZE - 1), 0);
        assert_eq!(mem.zero_calls, 1);
    }

    #[test]
    fn pages_the_host_did_not_fill_go_back_to_the_allocator() {
        let (mut mem, mut frames, mut cache, mut host, id) = setup(4 * PAGE_SIZE);
        // The file shrank on the host: only 1 page and 10 bytes come back.
        host.size = PAGE_SIZE + 10;
        let before = frames.in_use();
        let f = cache.page(&mut mem, &mut frames, &mut host, id, 0).unwrap();
        assert_eq!(host.calls[0].2[0].len, 4 * PAGE_SIZE);
        assert_eq!(cache.get(id).unwrap().cached_pages(), 2);
        assert_eq!(frames.in_use(), before + 2);
        assert_eq!(mem.zero_calls, 0, "never-used frames are zero already");
        assert_eq!(
            frames.alloc_uninit(&mut mem),
            Some(f + 2 * PAGE_SIZE),
            "the unread end went back to the bump"
        );
        assert_eq!(
            cache.page(&mut mem, &mut frames, &mut host, id, 3),
            Err(Errno::EIO)
        );
    }

    #[test]
    fn a_file_in_ram_is_one_resident_run() {
        let (_, _, mut cache, _, _) = setup(PAGE_SIZE);
        let img = cache
            .add_image(
                3 * PAGE_SIZE + 5,
                b"/img",
                (0x40_0000, InodeKey::UNKNOWN, (0, 0)),
            )
            .unwrap();
        let listed = cache.by_key.values().any(|&v| v == img);
        assert!(!listed, "its identity is not known yet");
        let key = InodeKey { dev: 8, ino: 43 };
        cache.set_key(img, key);
        assert_eq!(cache.by_key.get(&key), Some(&img));
        assert_eq!(cache.get(img).unwrap().key, key);
        let ino = cache.get(img).unwrap();
        assert_eq!(ino.next_resident_run(1, 100), Some((1, 0x40_1000, 3)));
        assert_eq!(ino.next_resident_run(1, 3), Some((1, 0x40_1000, 2)));
        assert_eq!(ino.next_resident_run(3, 100), Some((3, 0x40_3000, 1)));
        assert_eq!(ino.next_resident_run(4, 100), None);
    }

    #[test]
    fn readahead_stops_at_the_file_end_and_zeroes_the_last_page_tail() {
        let (mut mem, mut frames, mut cache, mut host, id) = setup(PAGE_SIZE + 100);
        let f = cache.page(&mut mem, &mut frames, &mut host, id, 0).unwrap();
        let iov = &host.calls[0].2;
        assert_eq!((iov.len(), iov[0].len), (1, 2 * PAGE_SIZE));
        let last = cache.get(id).unwrap().resident(1).unwrap();
        assert_eq!(last, f + PAGE_SIZE);
        // Never-used frames: the tail past byte 100 is zero already (a
        // used frame's is zeroed, as the test above shows).
        assert_eq!(mem.byte(last + 100), 0);
        assert_eq!(mem.zero_calls, 0);
    }

    #[test]
    fn the_handle_is_closed_with_the_last_user_and_pages_stay() {
        let (mut mem, mut frames, mut cache, mut host, id) = setup(3 * PAGE_SIZE);
        cache.page(&mut mem, &mut frames, &mut host, id, 0).unwrap();
        let calls = host.calls.len();
        cache.release(&mut host, id);
        // The handle goes with the next request (it was not opened for
        // writing): no request of its own.
        assert_eq!(host.calls.len(), calls);
        assert_eq!(host.req.close_count, 1);
        assert_eq!(host.req.closes[0], 7);
        assert_eq!(cache.get(id).unwrap().cached_pages(), 3);
        let before = frames.in_use();
        cache.clear(&mut mem, &mut frames);
        assert_eq!(frames.in_use(), before - 3);
    }

    #[test]
    fn a_changed_file_loses_its_pages_at_the_next_open() {
        let (mut mem, mut frames, mut cache, mut host, id) = setup(2 * PAGE_SIZE);
        cache.page(&mut mem, &mut frames, &mut host, id, 0).unwrap();
        cache.release(&mut host, id);
        let changed = FileInfo {
            key: InodeKey { dev: 8, ino: 42 },
            size: 2 * PAGE_SIZE,
            mtime: (9, 9),
        };
        let (again, _) = cache
            .attach(&mut mem, &mut frames, changed, b"/f", Some(8), false)
            .unwrap();
        assert_eq!(again, id, "same inode, same index");
        assert_eq!(cache.get(id).unwrap().cached_pages(), 0);
    }

    #[test]
    fn a_write_is_copied_into_the_cached_pages_it_touched_without_a_host_read() {
        let (mut mem, mut frames, mut cache, mut host, id) = setup(2 * PAGE_SIZE + 100);
        cache.page(&mut mem, &mut frames, &mut host, id, 0).unwrap();
        let frame = |c: &PageCache, k: u64| c.get(id).unwrap().resident(k).unwrap();
        let (p0, p1, p2) = (frame(&cache, 0), frame(&cache, 1), frame(&cache, 2));
        [p0, p1, p2]
            .iter()
            .for_each(|&f| mem.fill(f, PAGE_SIZE, 0xab));
        // The written bytes, in two pieces elsewhere in RAM (the user's
        // pages): 10 of 0x11 then 20 of 0x22, across pages 0 and 1.
        let (a, b) = (0x80_0000, 0x90_0000);
        mem.fill(a, 10, 0x11);
        mem.fill(b, 20, 0x22);
        let pieces = [IoVec { phys: a, len: 10 }, IoVec { phys: b, len: 20 }];
        let calls = host.calls.len();
        cache.written(
            &mut mem,
            id,
            &pieces,
            (PAGE_SIZE - 15, 30),
            2 * PAGE_SIZE + 100,
        );
        assert_eq!(host.calls.len(), calls, "no host read");
        assert_eq!(mem.byte(p0 + PAGE_SIZE - 16), 0xab);
        assert!((PAGE_SIZE - 15..PAGE_SIZE - 5).all(|k| mem.byte(p0 + k) == 0x11));
        assert!((PAGE_SIZE - 5..PAGE_SIZE).all(|k| mem.byte(p0 + k) == 0x22));
        assert!((0..15).all(|k| mem.byte(p1 + k) == 0x22));
        assert_eq!(mem.byte(p1 + 15), 0xab);
        // A short write counts only the bytes written: 5 of 10.
        cache.written(
            &mut mem,
            id,
            &pieces,
            (PAGE_SIZE + 100, 5),
            2 * PAGE_SIZE + 100,
        );
        assert!((100..105).all(|k| mem.byte(p1 + k) == 0x11));
        assert_eq!(mem.byte(p1 + 105), 0xab);
        // Past the old end (2 pages and 100 bytes): the last page's bytes
        // up to the write are a hole, zero; the write lands after them.
        cache.written(
            &mut mem,
            id,
            &pieces[1..],
            (2 * PAGE_SIZE + 300, 20),
            2 * PAGE_SIZE + 320,
        );
        assert!((0..100).all(|k| mem.byte(p2 + k) == 0xab));
        assert!((100..300).all(|k| mem.byte(p2 + k) == 0));
        assert!((300..320).all(|k| mem.byte(p2 + k) == 0x22));
        assert_eq!(cache.get(id).unwrap().size, 2 * PAGE_SIZE + 320);
        // From the cached page itself (a shared mapping of the file), ten
        // bytes on: a move, not a copy that reads what it wrote.
        (0..40).for_each(|k| mem.fill(p1 + 1000 + k, 1, k as u8));
        let own = [IoVec {
            phys: p1 + 1000,
            len: 30,
        }];
        cache.written(
            &mut mem,
            id,
            &own,
            (PAGE_SIZE + 1010, 30),
            2 * PAGE_SIZE + 320,
        );
        assert!((0..30).all(|k| mem.byte(p1 + 1010 + k) == k as u8));
    }

    /// [`setup`] of a file of `pages` pages, all read in and their frames
    /// filled with 0xab; those frames last.
    #[allow(clippy::type_complexity)]
    fn filled(pages: u64) -> (TestMem, FrameAllocator, PageCache, FakeFile, u16, Vec<u64>) {
        let (mut mem, mut frames, mut cache, mut host, id) = setup(pages * PAGE_SIZE);
        cache.page(&mut mem, &mut frames, &mut host, id, 0).unwrap();
        let ino = cache.get(id).unwrap();
        let frames_of: Vec<u64> = (0..pages).map(|k| ino.resident(k).unwrap()).collect();
        frames_of.iter().for_each(|&f| mem.fill(f, PAGE_SIZE, 0xab));
        (mem, frames, cache, host, id, frames_of)
    }

    #[test]
    fn a_truncation_zeroes_the_cached_pages_past_the_end_and_the_last_tail() {
        let (mut mem, _, mut cache, _, id, pages) = filled(6);
        let frame = |c: &PageCache, k: u64| c.get(id).unwrap().resident(k).unwrap();
        cache.truncated(&mut mem, id, PAGE_SIZE + 100);
        assert_eq!(cache.get(id).unwrap().size, PAGE_SIZE + 100);
        // The pages stay cached (a mapping may hold them), zeroed past the
        // end: the file growing over them again reads a hole.
        assert_eq!(cache.get(id).unwrap().cached_pages(), 6);
        assert!((0..PAGE_SIZE).all(|b| mem.byte(pages[0] + b) == 0xab));
        assert!((0..100).all(|b| mem.byte(pages[1] + b) == 0xab));
        assert!((100..PAGE_SIZE).all(|b| mem.byte(pages[1] + b) == 0));
        for &f in &pages[2..] {
            assert!((0..PAGE_SIZE).all(|b| mem.byte(f + b) == 0));
        }
        // A mapping stored past the end in the last page: growing the file
        // turns those bytes into the hole's zeros.
        mem.fill(pages[1] + 200, 10, 0xcd);
        cache.truncated(&mut mem, id, 10 * PAGE_SIZE);
        assert!((100..PAGE_SIZE).all(|b| mem.byte(pages[1] + b) == 0));
        assert_eq!(frame(&cache, 5), pages[5], "growing keeps the pages");
    }

    #[test]
    fn a_file_found_changed_while_in_use_keeps_its_pages_brought_up_to_it() {
        let (mut mem, mut frames, mut cache, mut host, id, pages) = filled(4);
        // Shrunk to a page and a half by another opener (O_TRUNC, then a
        // write), while the first still uses the file.
        let changed = FileInfo {
            key: InodeKey { dev: 8, ino: 42 },
            size: PAGE_SIZE + PAGE_SIZE / 2,
            mtime: (3, 4),
        };
        let (again, took) = cache
            .attach(&mut mem, &mut frames, changed, b"/f", None, true)
            .unwrap();
        assert_eq!((again, took), (id, false));
        assert_eq!(cache.get(id).unwrap().cached_pages(), 4, "in use: kept");
        assert!((PAGE_SIZE / 2..PAGE_SIZE).all(|b| mem.byte(pages[1] + b) == 0));
        assert!(pages[2..]
            .iter()
            .all(|&f| (0..PAGE_SIZE).all(|b| mem.byte(f + b) == 0)));
        // The pages below the end are read again, once, by the filling
        // handle (7, the first opener's), as one run from the start.
        let calls = host.calls.len();
        cache.refresh(&mut mem, &mut host, id);
        let reads: Vec<(u64, u64)> = host.calls[calls..]
            .iter()
            .map(|(_, off, iov)| (*off, iov.iter().map(|v| v.len).sum()))
            .collect();
        assert_eq!(reads, [(0, 2 * PAGE_SIZE)]);
        assert_eq!(
            mem.byte(pages[0]),
            0,
            "zeroed, then read (the fake reads nothing in)"
        );
        cache.refresh(&mut mem, &mut host, id);
        assert_eq!(host.calls.len(), calls + 1, "no longer stale");
    }

    #[test]
    fn the_guests_own_changes_are_not_taken_for_the_hosts_at_the_next_open() {
        let info = |size, mtime| FileInfo {
            key: InodeKey { dev: 8, ino: 42 },
            size,
            mtime,
        };
        // A shared mapping's store (not written back) survives an open
        // after the guest's own truncation, write or write-back, each of
        // which gave the host file a new mtime.
        type Change = fn(&mut PageCache, &mut TestMem, u16, u64);
        let changes: [(&str, Change); 3] = [
            ("truncation", |c, mem, id, _| {
                c.truncated(mem, id, 3 * PAGE_SIZE)
            }),
            ("write", |c, mem, id, pa| {
                let iov = [IoVec { phys: pa, len: 4 }];
                c.written(mem, id, &iov, (PAGE_SIZE, 4), 3 * PAGE_SIZE);
            }),
            ("write-back", |c, _, id, _| c.written_back(id)),
        ];
        for (what, change) in changes {
            let (mut mem, mut frames, mut cache, mut host, id, pages) = filled(3);
            change(&mut cache, &mut mem, id, pages[1]);
            mem.fill(pages[0], 5, 0x11);
            let (again, _) = cache
                .attach(
                    &mut mem,
                    &mut frames,
                    info(3 * PAGE_SIZE, (7, 8)),
                    b"/f",
                    None,
                    true,
                )
                .unwrap();
            assert_eq!(again, id);
            let calls = host.calls.len();
            cache.refresh(&mut mem, &mut host, id);
            assert_eq!(host.calls.len(), calls, "{what}: nothing read again");
            assert_eq!(mem.byte(pages[0] + 4), 0x11, "{what}: the store kept");
            // The host's time is taken then: a later change by another
            // is seen again.
            cache
                .attach(
                    &mut mem,
                    &mut frames,
                    info(3 * PAGE_SIZE, (7, 9)),
                    b"/f",
                    None,
                    false,
                )
                .unwrap();
            cache.refresh(&mut mem, &mut host, id);
            assert_eq!(host.calls.len(), calls + 1, "{what}: then a change is seen");
        }
    }

    #[test]
    fn the_word_scans_agree_with_one_entry_at_a_time() {
        // Runs and holes of every length around the eight-entry steps.
        for len in 0..40usize {
            for hole in 0..=len {
                for brk in 0..=len {
                    let s: Vec<u32> = (0..len)
                        .map(|k| match k {
                            k if k < hole => 0,
                            k if k == brk => 7,
                            k => 100 + k as u32,
                        })
                        .collect();
                    assert_eq!(first_held(&s), s.iter().position(|&p| p != 0));
                    assert_eq!(last_held(&s), s.iter().rposition(|&p| p != 0));
                    let from = hole.min(len.saturating_sub(1));
                    let t = &s[from.min(s.len())..];
                    let next = 100 + from as u32;
                    let naive = (0..t.len())
                        .take_while(|&k| t[k] == next + k as u32)
                        .count();
                    assert_eq!(run_len(t, next), naive, "len {len} hole {hole} brk {brk}");
                }
            }
        }
    }

    #[test]
    fn a_run_is_recorded_page_by_page_whatever_its_length() {
        for n in [1, 7, 8, 9, 16, 21, 128] {
            let mut ix = PageIndex::default();
            ix.insert_absent_run(3, 0x40_0000, n);
            assert_eq!(ix.len(), n as usize);
            assert_eq!((ix.get(2), ix.get(3 + n)), (None, None), "n = {n}");
            for k in 0..n {
                assert_eq!(ix.get(3 + k), Some(0x40_0000 + k * PAGE_SIZE), "n = {n}");
            }
            assert_eq!(ix.next_run(0, 200), Some((3, 0x40_0000, n)));
        }
    }

    #[test]
    fn page_index_counts_and_splits() {
        let mut p = PageIndex::default();
        p.insert(3, 0x5000);
        p.insert(0, 0x9000);
        assert_eq!((p.get(3), p.get(1), p.len()), (Some(0x5000), None, 2));
        assert_eq!(p.range(0, 10), [(0, 0x9000), (3, 0x5000)]);
        assert_eq!(p.split_off(1), [0x5000]);
        assert_eq!(p.take_all(), [0x9000]);
        assert!(p.is_empty());
    }
}
