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
    /// Copy `len` bytes from physical `src` to physical `dst` (no overlap).
    fn copy(&mut self, dst: u64, src: u64, len: u64);

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

    /// Write `n` consecutive words from `pa`: `first`, `first + step`, ...
    /// (a run of page-table entries). Implementations may do it faster than
    /// `n` calls of [`Self::write_u64`].
    fn write_run(&mut self, pa: u64, first: u64, step: u64, n: u64) {
        for k in 0..n {
            self.write_u64(pa + 8 * k, first + k * step);
        }
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

    /// How many of the `n` words from `pa` have none of the `busy` bits
    /// set before the first that has one (a scan past free page-table
    /// entries). Implementations may do it faster than `n` reads.
    fn free_words(&self, pa: u64, n: u64, busy: u64) -> u64 {
        (0..n)
            .find(|&k| self.read_u64(pa + 8 * k) & busy != 0)
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
