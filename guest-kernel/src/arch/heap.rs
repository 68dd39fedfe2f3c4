//! The kernel heap: a first-fit allocator (the `linked_list_allocator`
//! crate) over a run of frames taken at boot, reached through the direct
//! map. Fd tables, open files, the page cache's index and `/proc` texts
//! live here.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::{null_mut, NonNull};
use linked_list_allocator::Heap;

struct KernelHeap(UnsafeCell<Heap>);

// SAFETY: one CPU, interrupts off, and the allocator is never re-entered
// (nothing allocates from a trap taken inside the allocator).
unsafe impl Sync for KernelHeap {}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(UnsafeCell::new(Heap::empty()));

// SAFETY: `alloc` and `dealloc` forward to the heap, which hands out
// disjoint blocks of its region and takes back exactly what it gave.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single CPU, no re-entry (see the Sync impl).
        let heap = unsafe { &mut *self.0.get() };
        heap.allocate_first_fit(layout)
            .map_or(null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above; `ptr` came from `alloc` with `layout`.
        unsafe {
            let heap = &mut *self.0.get();
            if let Some(p) = NonNull::new(ptr) {
                heap.deallocate(p, layout);
            }
        }
    }
}

/// Give the heap `size` bytes of RAM at kernel virtual address `start`
/// (direct map); called once at boot, before anything allocates.
pub fn init(start: u64, size: u64) {
    // SAFETY: the region is RAM the frame allocator handed over for good;
    // nothing else refers to it, and nothing has allocated yet.
    unsafe {
        let heap = &mut *HEAP.0.get();
        heap.init(start as *mut u8, size as usize);
    }
}
