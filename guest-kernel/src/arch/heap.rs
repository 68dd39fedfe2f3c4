//! The kernel heap: Fd tables, open files, the page cache's index and
//! `/proc` texts live here, in a run of frames taken at boot and reached
//! through the direct map.
//!
//! Ring-0 instructions are what every kernel path costs (each is emulated
//! on kvm_pvm), so small blocks come from size classes with free lists
//! (power-of-two sizes from 16 bytes to 2 KiB): allocation and freeing are
//! a few instructions, whatever the heap's history. Larger blocks (rare:
//! big vectors) come from a first-fit allocator (the
//! `linked_list_allocator` crate) over the rest of the region.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::{null_mut, NonNull};
use linked_list_allocator::Heap;

/// Size classes: 16 << i for i in 0..CLASSES.
const CLASSES: usize = 8;
/// Largest size served from a class.
const MAX_SMALL: usize = 16 << (CLASSES - 1);
/// Bytes the small classes are refilled with at a time.
const REFILL: usize = 64 * 1024;

struct State {
    /// Heads of the free lists (the link word lives in the free block).
    free: [usize; CLASSES],
    /// The current refill chunk: next free byte and end.
    bump: usize,
    bump_end: usize,
    large: Heap,
}

struct KernelHeap(UnsafeCell<State>);

// SAFETY: one CPU, interrupts off, and the allocator is never re-entered
// (nothing allocates from a trap taken inside the allocator).
unsafe impl Sync for KernelHeap {}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(UnsafeCell::new(State {
    free: [0; CLASSES],
    bump: 0,
    bump_end: 0,
    large: Heap::empty(),
}));

/// The class of a layout, if small.
fn class(layout: &Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(16);
    if size > MAX_SMALL {
        return None;
    }
    Some((size.next_power_of_two().trailing_zeros() - 4) as usize)
}

impl State {
    /// A block of class `c`: from its free list, else cut from the
    /// current chunk. Inlined into `alloc` with the refill and the large
    /// blocks apart, so that this path saves no registers.
    #[inline(always)]
    fn alloc_small(&mut self, c: usize) -> *mut u8 {
        let head = self.free[c];
        if head != 0 {
            // SAFETY: a free block of this class holds the next link.
            self.free[c] = unsafe { *(head as *const usize) };
            return head as *mut u8;
        }
        let size = 16usize << c;
        // Blocks are aligned to their size: align the bump pointer.
        let at = (self.bump + size - 1) & !(size - 1);
        if at + size > self.bump_end {
            return self.refill(c);
        }
        self.bump = at + size;
        at as *mut u8
    }

    /// A block of class `c` from a fresh chunk (the current one is used up).
    #[cold]
    #[inline(never)]
    fn refill(&mut self, c: usize) -> *mut u8 {
        let Ok(chunk) = self.large.allocate_first_fit(
            Layout::from_size_align(REFILL, MAX_SMALL).unwrap_or(Layout::new::<u8>()),
        ) else {
            return null_mut();
        };
        self.bump = chunk.as_ptr() as usize;
        self.bump_end = self.bump + REFILL;
        self.alloc_small(c)
    }

    /// A block too large for the classes, by a first-fit search.
    #[inline(never)]
    fn alloc_large(&mut self, layout: Layout) -> *mut u8 {
        self.large
            .allocate_first_fit(layout)
            .map_or(null_mut(), |p| p.as_ptr())
    }

    /// Give back a block [`Self::alloc_large`] handed out.
    #[inline(never)]
    fn free_large(&mut self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: `ptr` came from `alloc_large` with `layout`.
            unsafe { self.large.deallocate(p, layout) };
        }
    }
}

// SAFETY: blocks handed out are disjoint parts of the heap region, each
// at least as large and as aligned as asked; freed blocks go back to the
// list or allocator they came from (decided by the same layout).
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single CPU, no re-entry (see the Sync impl).
        let st = unsafe { &mut *self.0.get() };
        match class(&layout) {
            Some(c) => st.alloc_small(c),
            None => st.alloc_large(layout),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above; `ptr` came from `alloc` with `layout`.
        unsafe {
            let st = &mut *self.0.get();
            match class(&layout) {
                Some(c) => {
                    *(ptr as *mut usize) = st.free[c];
                    st.free[c] = ptr as usize;
                }
                None => st.free_large(ptr, layout),
            }
        }
    }
}

/// Give the heap `size` bytes of RAM at kernel virtual address `start`
/// (direct map); called once at boot, before anything allocates.
/// Bytes the heap can still hand out in fresh space (its large region's
/// free space and the current small-object chunk; freed small objects,
/// kept for reuse by their size, are not counted).
pub fn free_bytes() -> usize {
    // SAFETY: one CPU and no allocation in progress while this runs (it
    // is not called from inside the allocator); a read of the state.
    unsafe {
        let st = &*HEAP.0.get();
        st.large.free() + (st.bump_end - st.bump)
    }
}

pub fn init(start: u64, size: u64) {
    // SAFETY: the region is RAM the frame allocator handed over for good;
    // nothing else refers to it, and nothing has allocated yet.
    unsafe {
        let st = &mut *HEAP.0.get();
        // The small classes' first chunk is the region's start, so that
        // boot's small allocations need no first-fit search for it.
        let refill = REFILL.min(size as usize);
        st.bump = start as usize;
        st.bump_end = st.bump + refill;
        st.large
            .init((start as usize + refill) as *mut u8, size as usize - refill);
    }
}
