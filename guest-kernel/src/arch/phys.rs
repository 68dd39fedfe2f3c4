//! Physical memory through the direct map, with bulk work done by the host.
//!
//! All guest RAM is mapped at `DIRECT_MAP_BASE` (by the VMM's direct map,
//! which the kernel adopts at boot). Single words are read and written in
//! place; zeroing and copying pages are hypercalls, because the host does in
//! a microsecond what emulated ring 0 does in a few hundred.

use super::hypercall;
use super::mem::{host_bulk_on, host_move, HOST_BULK_MIN};
use core::sync::atomic::{AtomicBool, Ordering};
use guest_kernel::mm::phys::PhysMem;
use vmrun_contract::layout::{DIRECT_MAP_BASE, PAGE_SIZE};
use vmrun_contract::{hc, trace, CopyItem};

/// Guest RAM as seen through the direct map. Only one exists (see [`take`]).
/// It is also the kernel's trace sink: records go into the ring the host
/// placed in RAM (see `contract::trace`).
pub struct DirectMap {
    mem_size: u64,
    /// The highest physical address an 8-byte access may start at
    /// (`mem_size - 8`): page-table reads and writes check against it with
    /// one comparison.
    last_word: u64,
    ring: Ring,
    /// The copies [`PhysMem::copy_deferred`] put off, the first
    /// `pending_n`.
    pending: &'static mut hypercall::CopyList,
    pending_n: usize,
}

/// The trace ring as the writer sees it.
#[derive(Clone, Copy, Default)]
struct Ring {
    phys: u64,
    capacity: u64,
    mask: u32,
    written: u64,
}

static TAKEN: AtomicBool = AtomicBool::new(false);

/// Hand out the one [`DirectMap`] for RAM of `mem_size` bytes.
pub fn take(mem_size: u64) -> Option<DirectMap> {
    if TAKEN.swap(true, Ordering::Relaxed) {
        return None;
    }
    let pending = hypercall::copy_block()?;
    Some(DirectMap {
        mem_size,
        last_word: mem_size.saturating_sub(8),
        ring: Ring::default(),
        pending,
        pending_n: 0,
    })
}

impl DirectMap {
    /// Start writing trace records of the `mask` categories to the ring at
    /// `phys` (`len` bytes, header included), as the boot info describes.
    pub fn enable_trace(&mut self, phys: u64, len: u64, mask: u32) {
        if phys == 0 || len <= trace::RECORDS_OFFSET {
            return;
        }
        let capacity = (len - trace::RECORDS_OFFSET) / trace::RECORD_SIZE;
        self.ring = Ring {
            phys,
            capacity,
            mask,
            written: 0,
        };
    }

    /// Count `n` records lost before they reached the ring.
    pub fn count_lost(&mut self, n: u64) {
        if self.ring.phys != 0 {
            let lost = self.read_u64(self.ring.phys + 16);
            self.write_u64(self.ring.phys + 16, lost + n);
        }
    }

    /// Room for one more record, draining through the host if the ring is
    /// full; false if it stays full (the record is then counted as lost).
    fn ring_room(&mut self) -> bool {
        let r = self.ring;
        if r.written - self.read_u64(r.phys + 8) < r.capacity {
            return true;
        }
        hypercall::call(hc::TRACE_DRAIN, [0; 6]);
        if r.written - self.read_u64(r.phys + 8) < r.capacity {
            return true;
        }
        let lost = self.read_u64(r.phys + 16);
        self.write_u64(r.phys + 16, lost + 1);
        false
    }

    /// Write `words` to consecutive words from `pa` (8-aligned), with one
    /// range check for all of them (inlined: with the length known the
    /// stores are unrolled).
    #[inline(always)]
    pub fn write_words(&mut self, pa: u64, words: &[u64]) {
        let p = self.ptr(pa, 8 * words.len() as u64) as *mut u64;
        for (k, w) in words.iter().enumerate() {
            // SAFETY: `ptr` checked that the words lie in RAM; the caller
            // owns them (a contract area such as the stats page).
            unsafe { core::ptr::write_volatile(p.add(k), *w) };
        }
    }

    fn ptr(&self, pa: u64, len: u64) -> *mut u8 {
        // A bad physical address is a kernel bug: stop before touching it.
        if pa.checked_add(len).is_none_or(|end| end > self.mem_size) {
            crate::kpanic_phys(pa, len);
        }
        (DIRECT_MAP_BASE + pa) as *mut u8
    }

    /// [`Self::ptr`] for one 8-byte word, with a single comparison (the
    /// page-table walks make most of the kernel's memory accesses).
    #[inline(always)]
    fn word(&self, pa: u64) -> *mut u64 {
        if pa > self.last_word {
            crate::kpanic_phys(pa, 8);
        }
        (DIRECT_MAP_BASE + pa) as *mut u64
    }
}

impl PhysMem for DirectMap {
    fn read_u64(&self, pa: u64) -> u64 {
        // SAFETY: `ptr` checked the range lies in RAM, which the direct map
        // covers; u64 accesses are 8-aligned by the callers' contract.
        unsafe { core::ptr::read_volatile(self.word(pa)) }
    }

    fn write_u64(&mut self, pa: u64, val: u64) {
        // SAFETY: as in read_u64; the memory manager owns the frame it writes.
        unsafe { core::ptr::write_volatile(self.word(pa), val) }
    }

    fn read_bytes(&self, pa: u64, buf: &mut [u8]) {
        let src = self.ptr(pa, buf.len() as u64);
        if host_move(buf.as_mut_ptr() as u64, src as u64, buf.len() as u64) {
            return;
        }
        // SAFETY: the source range is RAM (checked) and cannot overlap a
        // kernel stack or static buffer, which live in the kernel image.
        unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) }
    }

    fn write_bytes(&mut self, pa: u64, buf: &[u8]) {
        let dst = self.ptr(pa, buf.len() as u64);
        if host_move(dst as u64, buf.as_ptr() as u64, buf.len() as u64) {
            return;
        }
        // SAFETY: as in read_bytes, in the other direction.
        unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), dst, buf.len()) }
    }

    fn bytes_mut(&mut self, pa: u64, len: u64) -> &mut [u8] {
        let p = self.ptr(pa, len);
        // SAFETY: `ptr` checked that the range lies in RAM, which the
        // direct map covers; the slice borrows the one `DirectMap` mutably,
        // so nothing else writes RAM through it while the slice lives, and
        // the caller owns the range (a user page it has just mapped).
        unsafe { core::slice::from_raw_parts_mut(p, len as usize) }
    }

    fn clear_words(&mut self, pa: u64, n: u64) {
        let p = self.ptr(pa, 8 * n);
        // SAFETY: `ptr` checked that the n words lie in RAM; the memory
        // manager owns the table they are entries of.
        unsafe { crate::arch::mem::zero_here(p, 8 * n as usize) };
    }

    fn zero(&mut self, pa: u64, len: u64) {
        self.ptr(pa, len);
        hypercall::zero(pa, len);
    }

    fn copy(&mut self, dst: u64, src: u64, len: u64) {
        self.ptr(dst, len);
        self.ptr(src, len);
        hypercall::copy(dst, src, len);
    }

    fn copy_deferred(&mut self, dst: u64, src: u64, len: u64) {
        self.ptr(dst, len);
        self.ptr(src, len);
        if self.pending_n == self.pending.len() {
            self.flush_copies();
        }
        self.pending[self.pending_n] = CopyItem { dst, src, len };
        self.pending_n += 1;
    }

    fn flush_copies(&mut self) {
        match self.pending_n {
            0 => return,
            1 => {
                let c = self.pending[0];
                hypercall::copy(c.dst, c.src, c.len);
            }
            n => hypercall::copy_list(&self.pending[..n]),
        }
        self.pending_n = 0;
    }

    fn copy_local(&mut self, dst: u64, src: u64, len: u64) {
        let (d, s) = (self.ptr(dst, len), self.ptr(src, len));
        if host_move(d as u64, s as u64, len) {
            return;
        }
        // SAFETY: both ranges were checked against RAM by `ptr`; callers
        // copy between distinct frames (a page-cache page and a user page).
        unsafe { core::ptr::copy_nonoverlapping(s, d, len as usize) }
    }

    /// One COPY_LIST for two moves or more of a kilobyte or more in all,
    /// where bulk work goes to the host.
    fn copy_local_list(&mut self, moves: &[CopyItem]) {
        let total: u64 = moves.iter().map(|m| m.len).sum();
        if moves.len() > 1 && total >= HOST_BULK_MIN as u64 && host_bulk_on() {
            for m in moves {
                self.ptr(m.dst, m.len);
                self.ptr(m.src, m.len);
            }
            hypercall::copy_list(moves);
            return;
        }
        for m in moves {
            self.copy_local(m.dst, m.src, m.len);
        }
    }

    /// In line: its callers are the faults' runs of entries, whose calls'
    /// moved arguments and spilled registers cost more than the copies.
    #[inline(always)]
    fn write_run(&mut self, pa: u64, first: u64, step: u64, n: u64) {
        let p = self.ptr(pa, 8 * n) as *mut u64;
        if step == PAGE_SIZE {
            // SAFETY: as below; `write_pages` writes exactly the n words.
            unsafe { write_pages(p, first, n) };
            return;
        }
        for k in 0..n as usize {
            // SAFETY: `ptr` checked that the n words lie in RAM; page-table
            // pages are 8-aligned and owned by the memory manager.
            unsafe { core::ptr::write_volatile(p.add(k), first + k as u64 * step) };
        }
    }

    /// Out of line: the teardown's loop over runs of leaves, in which
    /// the frame allocator's `release_run` is in line, keeps its registers.
    #[inline(never)]
    fn link_frames(&mut self, pa: u64, n: u64, head: u64) -> u64 {
        let last = pa + (n - 1) * PAGE_SIZE;
        let p = self.ptr(pa, last - pa + 8);
        // SAFETY: `ptr` checked that the run's last frame's first word
        // lies in RAM, and so do the frames below it; the allocator owns
        // the freed frames it links.
        unsafe { core::ptr::write_volatile(p as *mut u64, head) };
        for k in 1..n as usize {
            let off = k * PAGE_SIZE as usize;
            // SAFETY: as above, frame k lies between the first and last.
            unsafe {
                core::ptr::write_volatile(p.add(off) as *mut u64, pa + off as u64 - PAGE_SIZE)
            };
        }
        last
    }

    fn copy_words_masked(&mut self, src: u64, dst: u64, n: u64, (mine, theirs): (u64, u64)) {
        let (s, d) = (
            self.ptr(src, 8 * n) as *mut u64,
            self.ptr(dst, 8 * n) as *mut u64,
        );
        for k in 0..n as usize {
            // SAFETY: `ptr` checked that both runs of n words lie in RAM;
            // they are entries of two page tables the memory manager owns
            // (8-aligned, apart).
            unsafe {
                let e = core::ptr::read_volatile(s.add(k));
                if e & mine != e {
                    core::ptr::write_volatile(s.add(k), e & mine);
                }
                core::ptr::write_volatile(d.add(k), e & theirs);
            }
        }
    }

    fn copy_words_deferred(&mut self, src: u64, dst: u64, n: u64) {
        if 8 * n >= HOST_BULK_MIN as u64 && host_bulk_on() {
            self.copy_deferred(dst, src, 8 * n);
        } else {
            self.copy_words(src, dst, n);
        }
    }

    fn copy_words(&mut self, src: u64, dst: u64, n: u64) {
        let (s, d) = (
            self.ptr(src, 8 * n) as *const u64,
            self.ptr(dst, 8 * n) as *mut u64,
        );
        // A text's few hundred entries (1 KiB and more): the host's, one
        // exit for some two instructions an entry. Safe where kvm_pvm
        // shadows the tables: the entries written were free (the trait's
        // `copy_words`), so no shadow translation of them can go stale.
        if host_move(d as u64, s as u64, 8 * n) {
            return;
        }
        // A load and a store a word, 32 words to a round, then eight, then
        // one: one test a round.
        let copy = |k: usize, m: usize| {
            for j in k..k + m {
                // SAFETY: `ptr` checked that both runs of n words lie in
                // RAM (j < n); they are entries of two page tables the
                // memory manager owns (8-aligned, apart).
                unsafe { core::ptr::write_volatile(d.add(j), core::ptr::read_volatile(s.add(j))) };
            }
        };
        let mut k = 0;
        while k + 32 <= n as usize {
            copy(k, 32);
            k += 32;
        }
        while k + 8 <= n as usize {
            copy(k, 8);
            k += 8;
        }
        copy(k, n as usize - k);
    }

    fn write_run_free(&mut self, pa: u64, first: u64, step: u64, n: u64, busy: u64) -> u64 {
        let p = self.ptr(pa, 8 * n) as *mut u64;
        let mut written = 0;
        for k in 0..n as usize {
            // SAFETY: as in `write_run`.
            unsafe {
                if core::ptr::read_volatile(p.add(k)) & busy == 0 {
                    core::ptr::write_volatile(p.add(k), first + k as u64 * step);
                    written += 1;
                }
            }
        }
        written
    }

    fn write_run_packed(&mut self, pa: u64, first: u64, step: u64, n: u64, busy: u64) -> u64 {
        let p = self.ptr(pa, 8 * n) as *mut u64;
        let mut next = first;
        for k in 0..n as usize {
            // SAFETY: as in `write_run`.
            unsafe {
                if core::ptr::read_volatile(p.add(k)) & busy == 0 {
                    core::ptr::write_volatile(p.add(k), next);
                    next += step;
                }
            }
        }
        (next - first) / step
    }

    // Out of line: a tight loop of its own, not one among the walker's
    // values (inlined, it spilled them: 4 more instructions a word).
    #[inline(never)]
    fn run_words(&self, pa: u64, n: u64, (first, step): (u64, u64), mask: u64, busy: u64) -> u64 {
        let words = self.ptr(pa, 8 * n) as *const u64;
        // SAFETY: `ptr` checked that the n words lie in RAM (k < n);
        // page-table pages are 8-aligned.
        let word = |k: u64| unsafe { core::ptr::read_volatile(words.add(k as usize)) };
        if n == 0 || word(0) & busy == 0 || word(0) & mask != first {
            return 0;
        }
        // The words that equal the first with `step` added once more each
        // (its bits outside `mask` alike: a block's entries) pass with one
        // compare, two to a round (frame addresses in RAM never carry
        // past the mask's top).
        let mut whole = word(0) + step;
        let mut k = 1;
        while k + 2 <= n && word(k) == whole && word(k + 1) == whole + step {
            whole += 2 * step;
            k += 2;
        }
        // The rest one by one, each under `mask`.
        let mut want = first + k * step;
        while k < n {
            let w = word(k);
            if w & busy == 0 || w & mask != want {
                break;
            }
            want += step;
            k += 1;
        }
        k
    }

    fn free_words(&self, pa: u64, n: u64, busy: u64) -> u64 {
        let p = self.ptr(pa, 8 * n) as *const u64;
        let word = |k: u64| {
            // SAFETY: `ptr` checked that the n words lie in RAM (k < n);
            // page-table pages are 8-aligned.
            unsafe { core::ptr::read_volatile(p.add(k as usize)) }
        };
        // Eight words to a test, read as plain loads so that each folds
        // into its OR: one range check and one branch per eight words
        // (an unmapped range's page table is mostly free).
        let eight = |k: u64| {
            // SAFETY: as in `word` (k + 8 <= n); nothing writes the table
            // while it is read (the CPU's accessed and dirty bits are not
            // among the `busy` ones).
            let w = unsafe { core::ptr::read(p.add(k as usize) as *const [u64; 8]) };
            w.iter().fold(0, |a, &x| a | x)
        };
        let mut k = 0;
        while k + 8 <= n && eight(k) & busy == 0 {
            k += 8;
            // Past eight free words, a long free run is likely (a large
            // bss's or heap's untouched middle): 32 words a test.
            while k + 32 <= n
                && (eight(k) | eight(k + 8) | eight(k + 16) | eight(k + 24)) & busy == 0
            {
                k += 32;
            }
        }
        while k < n && word(k) & busy == 0 {
            k += 1;
        }
        k
    }

    /// The words ORed together eight, four, two and one to a load run
    /// (a block's 5 to 16 entries: about one instruction a word), one
    /// test at the end: most runs asked about are free whole.
    #[inline(always)]
    fn all_free(&self, pa: u64, n: u64, busy: u64) -> bool {
        let p = self.ptr(pa, 8 * n) as *const u64;
        let fold = |k: u64, m: usize| {
            // SAFETY: `ptr` checked that the n words lie in RAM (k + m <= n);
            // page-table pages are 8-aligned, and nothing writes the table
            // while it is read (the CPU's accessed and dirty bits are not
            // among the `busy` ones).
            let w = unsafe { core::slice::from_raw_parts(p.add(k as usize), m) };
            w.iter().fold(0, |a, &x| a | x)
        };
        let (mut k, mut seen) = (0, 0);
        while k + 8 <= n {
            seen |= fold(k, 8);
            k += 8;
        }
        // Fewer than eight left: n's low bits say which groups.
        if n & 7 != 0 {
            if n & 4 != 0 {
                seen |= fold(k, 4);
                k += 4;
            }
            if n & 2 != 0 {
                seen |= fold(k, 2);
                k += 2;
            }
            if n & 1 != 0 {
                seen |= fold(k, 1);
            }
        }
        seen & busy == 0
    }

    /// One range check for the run; eight words ORed to a test, so that a
    /// free group costs about one instruction a word and a used word
    /// about three (a load, a test and an add), where a loop of checked
    /// reads takes twice that.
    fn used_words(&self, pa: u64, n: u64, busy: u64) -> u64 {
        let p = self.ptr(pa, 8 * n) as *const u64;
        // SAFETY: `ptr` checked that the n words lie in RAM (each slice
        // below ends at or before word n); page-table pages are 8-aligned,
        // and nothing writes the table while it is read (the CPU's accessed
        // and dirty bits are not among the `busy` ones).
        let words = |k: u64, m: usize| unsafe { core::slice::from_raw_parts(p.add(k as usize), m) };
        let count = |w: &[u64]| w.iter().filter(|&&x| x & busy != 0).count() as u64;
        let (mut k, mut used) = (0, 0);
        while k + 8 <= n {
            let w = words(k, 8);
            if w.iter().fold(0, |a, &x| a | x) & busy != 0 {
                used += count(w);
            }
            k += 8;
        }
        used + count(words(k, (n - k) as usize))
    }

    #[inline(always)]
    fn trace_on(&self, category: u32) -> bool {
        self.ring.mask & category != 0
    }

    fn trace(&mut self, rec: &trace::Record) {
        if !self.ring_room() {
            return;
        }
        let r = self.ring;
        let at = r.phys + trace::RECORDS_OFFSET + (r.written % r.capacity) * trace::RECORD_SIZE;
        self.write_u64(at, u64::from(rec.kind) | (u64::from(rec.aux) << 32));
        self.write_u64(at + 8, super::cpu::rdtsc());
        for (i, a) in rec.a.iter().enumerate() {
            self.write_u64(at + 16 + 8 * i as u64, *a);
        }
        self.ring.written += 1;
        self.write_u64(r.phys, self.ring.written);
    }
}

/// Write `words` consecutive words from `p`: `first`, `first` + 4 KiB, ...
/// (a run of 4 KiB leaves). Unrolled with constant offsets, 32 words a
/// round and the rest in 16, 8, 4, 2 and 1: about two instructions a word
/// (a store and an add), where a loop of computed words takes nearly three.
///
/// # Safety
/// The `words` words from `p` must lie in RAM through the direct map,
/// 8-aligned, and be the caller's to write.
#[inline(always)]
unsafe fn write_pages(p: *mut u64, first: u64, words: u64) {
    /// Write `$n` words from `$q` from `$v` on, then move both past them.
    macro_rules! round {
        ($q:ident, $v:ident, $n:literal) => {
            for k in 0..$n {
                // SAFETY: the caller's words (`$q` + k lies before the end).
                unsafe { core::ptr::write_volatile($q.add(k), $v + k as u64 * PAGE_SIZE) };
            }
            // SAFETY: at most one past the caller's last word.
            $q = unsafe { $q.add($n) };
            $v += $n * PAGE_SIZE;
        };
    }
    let (mut q, mut v) = (p, first);
    let mut left = words;
    while left >= 32 {
        round!(q, v, 32);
        left -= 32;
    }
    if left & 16 != 0 {
        round!(q, v, 16);
    }
    if left & 8 != 0 {
        round!(q, v, 8);
    }
    if left & 4 != 0 {
        round!(q, v, 4);
    }
    if left & 2 != 0 {
        round!(q, v, 2);
    }
    if left & 1 != 0 {
        // SAFETY: the caller's last word.
        unsafe { core::ptr::write_volatile(q, v) };
    }
}

/// A read-only view of `len` bytes of RAM at `pa` that nothing writes any
/// more (the program's file image, the argument block).
pub fn bytes(mem: &DirectMap, pa: u64, len: u64) -> &'static [u8] {
    let p = mem.ptr(pa, len);
    // SAFETY: `ptr` checked that the range lies in RAM, which the direct map
    // covers for the whole run; the callers pass regions the VMM filled
    // before boot and that the kernel never writes (page-cache frames are
    // mapped read-only and never handed to the allocator).
    unsafe { core::slice::from_raw_parts(p, len as usize) }
}

/// Copy `len` bytes from the kernel's random pool at `src` to the piece
/// of RAM at `dst` (a frame a system call resolved from the caller's page
/// tables), when both lie below `mem_size`: a few bytes, so in place,
/// without a hypercall.
pub fn copy_from_pool(dst: u64, src: u64, len: u64, mem_size: u64) {
    let inside = |pa: u64| pa.checked_add(len).is_some_and(|end| end <= mem_size);
    if !inside(dst) || !inside(src) {
        return;
    }
    let (d, s) = (DIRECT_MAP_BASE + dst, DIRECT_MAP_BASE + src);
    // SAFETY: both ranges lie in RAM, which the direct map covers for the
    // whole run; the pool's page is the kernel's alone (no program maps
    // it), so it does not overlap a program's frame.
    unsafe { core::ptr::copy_nonoverlapping(s as *const u8, d as *mut u8, len as usize) }
}

/// The boot info the VMM wrote at `BOOT_INFO_PHYS` (unchecked: the caller
/// checks its magic, version and ranges).
pub fn boot_info() -> vmrun_contract::BootInfo {
    let p = (DIRECT_MAP_BASE + vmrun_contract::layout::BOOT_INFO_PHYS)
        as *const vmrun_contract::BootInfo;
    // SAFETY: the VMM's direct map maps low RAM at DIRECT_MAP_BASE and it
    // wrote a BootInfo (plain integers: any bits are a valid value) at
    // BOOT_INFO_PHYS before the first instruction. A plain read is one
    // block copy, where a volatile one reads field by field.
    unsafe { core::ptr::read(p) }
}
