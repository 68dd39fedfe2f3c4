//! Physical memory through the direct map, with bulk work done by the host.
//!
//! All guest RAM is mapped at `DIRECT_MAP_BASE` (by the VMM's boot tables
//! first, then by the kernel's own). Single words are read and written in
//! place; zeroing and copying pages are hypercalls, because the host does in
//! a microsecond what emulated ring 0 does in a few hundred.

use super::hypercall;
use core::sync::atomic::{AtomicBool, Ordering};
use guest_kernel::mm::phys::PhysMem;
use vmrun_contract::layout::DIRECT_MAP_BASE;

/// Guest RAM as seen through the direct map. Only one exists (see [`take`]).
pub struct DirectMap {
    mem_size: u64,
}

static TAKEN: AtomicBool = AtomicBool::new(false);

/// Hand out the one [`DirectMap`] for RAM of `mem_size` bytes.
pub fn take(mem_size: u64) -> Option<DirectMap> {
    if TAKEN.swap(true, Ordering::Relaxed) {
        return None;
    }
    Some(DirectMap { mem_size })
}

impl DirectMap {
    fn ptr(&self, pa: u64, len: u64) -> *mut u8 {
        // A bad physical address is a kernel bug: stop before touching it.
        if pa.checked_add(len).is_none_or(|end| end > self.mem_size) {
            crate::kpanic_phys(pa, len);
        }
        (DIRECT_MAP_BASE + pa) as *mut u8
    }
}

impl PhysMem for DirectMap {
    fn read_u64(&self, pa: u64) -> u64 {
        // SAFETY: `ptr` checked the range lies in RAM, which the direct map
        // covers; u64 accesses are 8-aligned by the callers' contract.
        unsafe { core::ptr::read_volatile(self.ptr(pa, 8) as *const u64) }
    }

    fn write_u64(&mut self, pa: u64, val: u64) {
        // SAFETY: as in read_u64; the memory manager owns the frame it writes.
        unsafe { core::ptr::write_volatile(self.ptr(pa, 8) as *mut u64, val) }
    }

    fn read_bytes(&self, pa: u64, buf: &mut [u8]) {
        let src = self.ptr(pa, buf.len() as u64);
        // SAFETY: the source range is RAM (checked) and cannot overlap a
        // kernel stack or static buffer, which live in the kernel image.
        unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) }
    }

    fn write_bytes(&mut self, pa: u64, buf: &[u8]) {
        let dst = self.ptr(pa, buf.len() as u64);
        // SAFETY: as in read_bytes, in the other direction.
        unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), dst, buf.len()) }
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
