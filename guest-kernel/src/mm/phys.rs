//! The one interface memory management has to physical memory.
//!
//! The kernel implements [`PhysMem`] over its direct map (with bulk zeroing
//! and copying delegated to the host, which is far cheaper than doing it in
//! emulated ring 0); unit tests implement it over a `Vec<u8>`. Everything in
//! `mm` that touches page tables or page contents goes through it, so the
//! page-table code is the same on the host and in the guest. It is also
//! where trace records go (`crate::trace`): the machine's event sink.

/// Guest-physical memory as the memory manager sees it.
pub trait PhysMem {
    /// Read the 8-byte little-endian word at physical address `pa` (8-aligned).
    fn read_u64(&self, pa: u64) -> u64;
    /// Write the 8-byte word at physical address `pa` (8-aligned).
    fn write_u64(&mut self, pa: u64, val: u64);
    /// Read bytes starting at `pa` into `buf`.
    fn read_bytes(&self, pa: u64, buf: &mut [u8]);
    /// Write `buf` at `pa`.
    fn write_bytes(&mut self, pa: u64, buf: &[u8]);
    /// The `len` bytes at `pa`, to be written in place (a page the caller
    /// fills piece by piece, without a buffer and a copy after).
    fn bytes_mut(&mut self, pa: u64, len: u64) -> &mut [u8];
    /// Set `len` bytes at `pa` to zero.
    fn zero(&mut self, pa: u64, len: u64);
    /// Set the `n` words from `pa` to zero with the CPU's own stores,
    /// never the host's: page-table entries, and page-table pages. Where
    /// the hypervisor shadows the guest's page tables (kvm_pvm), it sees
    /// only the guest's writes to them; a table the host cleared would
    /// keep its old translations there.
    fn clear_words(&mut self, pa: u64, n: u64) {
        for k in 0..n {
            self.write_u64(pa + 8 * k, 0);
        }
    }
    /// Copy `len` bytes from physical `src` to physical `dst` (no overlap).
    fn copy(&mut self, dst: u64, src: u64, len: u64);

    /// [`Self::copy`], made no later than the next
    /// [`Self::flush_copies`]: where the host copies, the copies between
    /// two flushes go to it in one hypercall (fork's eager page copies)
    /// instead of a VM exit each. Until the flush, nothing may read `dst`
    /// or write `src`.
    fn copy_deferred(&mut self, dst: u64, src: u64, len: u64) {
        self.copy(dst, src, len);
    }

    /// Make the copies [`Self::copy_deferred`] put off.
    fn flush_copies(&mut self) {}

    /// Copy `len` bytes from physical `src` to physical `dst` in the kernel
    /// itself, without the host (cheaper than [`Self::copy`] for small
    /// copies, and no VM exit).
    fn copy_local(&mut self, dst: u64, src: u64, len: u64) {
        let mut buf = [0u8; 256];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(256) as usize;
            self.read_bytes(src + done, &mut buf[..n]);
            self.write_bytes(dst + done, &buf[..n]);
            done += n as u64;
        }
    }

    /// The copies of `moves` (physical addresses, at most
    /// [`vmrun_contract::COPY_LIST_MAX`]), each as [`Self::copy_local`]
    /// makes it, or all by the host with one request where that pays: a
    /// read of a cached page into a buffer across two user pages is two
    /// moves, which would otherwise take a VM exit each (or run in ring 0
    /// for the shorter).
    fn copy_local_list(&mut self, moves: &[vmrun_contract::CopyItem]) {
        for m in moves {
            self.copy_local(m.dst, m.src, m.len);
        }
    }

    /// Write `n` consecutive words from `pa`: `first`, `first + step`, ...
    /// (a run of page-table entries). Implementations may do it faster than
    /// `n` calls of [`Self::write_u64`].
    fn write_run(&mut self, pa: u64, first: u64, step: u64, n: u64) {
        for k in 0..n {
            self.write_u64(pa + 8 * k, first + k * step);
        }
    }

    /// Link the `n` (at least one) frames from `pa` into a list, each
    /// frame's first word the address of the frame before it and the
    /// first frame's `head`; returns the last frame, the list's new head
    /// (a short freed run onto the 4 KiB free list). Implementations may
    /// do it faster than `n` calls of [`Self::write_u64`].
    fn link_frames(&mut self, pa: u64, n: u64, head: u64) -> u64 {
        let mut head = head;
        for k in 0..n {
            let f = pa + k * vmrun_contract::layout::PAGE_SIZE;
            self.write_u64(f, head);
            head = f;
        }
        head
    }

    /// Like [`Self::write_run`], but only where the word there has none of
    /// the `busy` bits set (a used entry is kept); returns the words written.
    fn write_run_free(&mut self, pa: u64, first: u64, step: u64, n: u64, busy: u64) -> u64 {
        let mut written = 0;
        for k in 0..n {
            if self.read_u64(pa + 8 * k) & busy == 0 {
                self.write_u64(pa + 8 * k, first + k * step);
                written += 1;
            }
        }
        written
    }

    /// Like [`Self::write_run_free`], but the words written take the run's
    /// values in order, packed: the k-th free word gets `first + k * step`
    /// (consecutive frames for the free entries of a block). Returns the
    /// words written.
    fn write_run_packed(&mut self, pa: u64, first: u64, step: u64, n: u64, busy: u64) -> u64 {
        let mut written = 0;
        for k in 0..n {
            if self.read_u64(pa + 8 * k) & busy == 0 {
                self.write_u64(pa + 8 * k, first + written * step);
                written += 1;
            }
        }
        written
    }

    /// Copy the `n` words from `src` to `dst` (another page's), each
    /// under the mask `theirs`, and write back each word at `src` that
    /// the mask `mine` changes, under it (fork's copy of a run of
    /// entries, write access taken away on both sides). The two ranges
    /// do not overlap. Implementations may do it with fewer checks than
    /// `n` reads and writes.
    fn copy_words_masked(&mut self, src: u64, dst: u64, n: u64, (mine, theirs): (u64, u64)) {
        for k in 0..n {
            let e = self.read_u64(src + 8 * k);
            if e & mine != e {
                self.write_u64(src + 8 * k, e & mine);
            }
            self.write_u64(dst + 8 * k, e & theirs);
        }
    }

    /// Copy the `n` words from `src` to `dst` (another page's) as they
    /// are: page-table entries into free entries of a table (fork's copy
    /// of a text's entries into the child's new table). Implementations
    /// may do it with fewer checks than `n` reads and writes, and may
    /// have the host make a long copy: unlike [`Self::clear_words`], which
    /// takes present entries away, this only fills entries that were free
    /// when the kernel last wrote them, so a hypervisor that shadows the
    /// table (kvm_pvm) holds no translation there to go stale, and finds
    /// the new entries at its first fault on them.
    fn copy_words(&mut self, src: u64, dst: u64, n: u64) {
        for k in 0..n {
            let e = self.read_u64(src + 8 * k);
            self.write_u64(dst + 8 * k, e);
        }
    }

    /// [`Self::copy_words`], made no later than the next
    /// [`Self::flush_copies`] where the host would make it anyway (a long
    /// run): with the other copies put off, in one exit.
    fn copy_words_deferred(&mut self, src: u64, dst: u64, n: u64) {
        self.copy_words(src, dst, n);
    }

    /// How many of the `n` words from `pa` have none of the `busy` bits
    /// set before the first that has one (a scan past free page-table
    /// entries). Implementations may do it faster than `n` reads.
    fn free_words(&self, pa: u64, n: u64, busy: u64) -> u64 {
        (0..n)
            .find(|&k| self.read_u64(pa + 8 * k) & busy != 0)
            .unwrap_or(n)
    }

    /// How many of the `n` words from `pa`, from the first, have one of
    /// the `busy` bits set and `first`, `first + step`, ... under `mask`
    /// (page-table entries mapping consecutive frames). Implementations
    /// may do it faster than `n` reads.
    fn run_words(&self, pa: u64, n: u64, (first, step): (u64, u64), mask: u64, busy: u64) -> u64 {
        (0..n)
            .find(|&k| {
                let w = self.read_u64(pa + 8 * k);
                w & busy == 0 || w & mask != first + k * step
            })
            .unwrap_or(n)
    }

    /// Whether none of the `n` words from `pa` has any of the `busy` bits
    /// set ([`Self::free_words`] is `n`): a run of free page-table
    /// entries. Implementations may do it faster than `n` tests.
    fn all_free(&self, pa: u64, n: u64, busy: u64) -> bool {
        self.free_words(pa, n, busy) == n
    }

    /// How many of the `n` words from `pa` have any of the `busy` bits set
    /// (the used entries of a run of page-table entries).
    /// Implementations may do it faster than `n` reads.
    fn used_words(&self, pa: u64, n: u64, busy: u64) -> u64 {
        (0..n)
            .filter(|&k| self.read_u64(pa + 8 * k) & busy != 0)
            .count() as u64
    }

    /// Whether trace records of `category` are wanted (see `crate::trace`).
    fn trace_on(&self, _category: u32) -> bool {
        false
    }

    /// Append a trace record (the sink stamps its TSC).
    fn trace(&mut self, _record: &vmrun_contract::trace::Record) {}
}

/// The guest-physical address of the kernel's virtual range `[va, va + n)`
/// if the host can reach it as one run of RAM: a range of the kernel image
/// (mapped linearly from `image_base`, below `image_end`) or of the direct
/// map (RAM's `ram` bytes from `direct_base`); `None` for any other range,
/// one that runs past either, or one that wraps. The kernel's moves of
/// physical memory hand such ranges to the host (`arch::mem`).
pub fn kernel_range_phys(
    va: u64,
    n: u64,
    (image_base, image_end): (u64, u64),
    (direct_base, ram): (u64, u64),
) -> Option<u64> {
    if va >= image_base {
        return (va.checked_add(n)? <= image_end).then_some(va - image_base);
    }
    let pa = va.checked_sub(direct_base)?;
    (pa < ram && n <= ram - pa).then_some(pa)
}

#[cfg(test)]
mod range_tests {
    use super::kernel_range_phys;

    const IMAGE: (u64, u64) = (0xffff_ffff_8000_0000, 0xffff_ffff_8030_0000);
    const DIRECT: (u64, u64) = (0xffff_8880_0000_0000, 256 << 20);

    #[test]
    fn image_and_direct_map_ranges_are_reached_and_nothing_else() {
        let at = |va, n| kernel_range_phys(va, n, IMAGE, DIRECT);
        // The image: linear from its base, up to its end.
        assert_eq!(at(0xffff_ffff_8010_0000, 4096), Some(0x10_0000));
        assert_eq!(at(0xffff_ffff_802f_f000, 4096), Some(0x2f_f000));
        assert_eq!(at(0xffff_ffff_802f_f001, 4096), None, "past the image");
        assert_eq!(at(0xffff_ffff_ff5f_f000, 8), None, "the trampoline's alias");
        assert_eq!(at(u64::MAX - 8, 4096), None, "wraps");
        // The direct map: all of RAM, not a byte more.
        assert_eq!(at(DIRECT.0, 4096), Some(0));
        assert_eq!(
            at(DIRECT.0 + (256 << 20) - 4096, 4096),
            Some((256 << 20) - 4096)
        );
        assert_eq!(at(DIRECT.0 + (256 << 20) - 4096, 4097), None, "past RAM");
        assert_eq!(at(DIRECT.0 + (256 << 20), 1), None);
        // Below the direct map: the user half, or anything else.
        assert_eq!(at(0x7fff_ffff_f000, 4096), None);
        assert_eq!(at(DIRECT.0 - 4096, 4096), None);
    }
}

#[cfg(test)]
mod word_tests {
    use super::PhysMem;
    use crate::mm::testmem::TestMem;

    #[test]
    fn copy_words_masked_copies_under_one_mask_and_writes_back_only_what_the_other_changes() {
        let mut mem = TestMem::new(0x3000);
        let words = [0x1067, 0x2065, 0, 0x3007, 0x8000_0000_0000_4067u64];
        for (k, &w) in words.iter().enumerate() {
            mem.write_u64(0x1000 + 8 * k as u64, w);
            mem.write_u64(0x2000 + 8 * k as u64, 0xdead);
        }
        let (mine, theirs) = (!2, !2 & !0x40);
        mem.copy_words_masked(0x1008, 0x2008, 3, (mine, theirs));
        let read = |mem: &TestMem, at: u64| -> alloc::vec::Vec<u64> {
            (0..5).map(|k| mem.read_u64(at + 8 * k)).collect()
        };
        assert_eq!(
            read(&mem, 0x1000),
            [0x1067, 0x2065, 0, 0x3005, 0x8000_0000_0000_4067]
        );
        assert_eq!(read(&mem, 0x2000), [0xdead, 0x2025, 0, 0x3005, 0xdead]);
    }
}
