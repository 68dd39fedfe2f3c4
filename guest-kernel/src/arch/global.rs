//! One-time access to the kernel's large statics without moving them.
//!
//! The kernel state (frame allocator, the process with its VMA array) is
//! big; moving it would cost thousands of emulated instructions. It lives
//! in a static and is handed out once as `&'static mut`.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// A static that can be borrowed mutably exactly once.
pub struct Once<T> {
    value: UnsafeCell<T>,
    taken: AtomicBool,
}

// SAFETY: the value is reachable only through the single `&'static mut`
// that `take` hands out.
unsafe impl<T> Sync for Once<T> {}

impl<T> Once<T> {
    /// Wrap `value`.
    pub const fn new(value: T) -> Self {
        Once {
            value: UnsafeCell::new(value),
            taken: AtomicBool::new(false),
        }
    }

    /// The borrow [`Self::take`] handed out, given back as one made from
    /// the static itself: code inlined after this reaches the value at its
    /// fixed address instead of through a register.
    #[inline(always)]
    pub fn rebind(&'static self, borrow: &'static mut T) -> &'static mut T {
        debug_assert!(core::ptr::eq(borrow, self.value.get()));
        let _ = borrow;
        // SAFETY: `borrow`, the only one ever made (see `take`), is
        // consumed here: the new one replaces it.
        unsafe { &mut *self.value.get() }
    }

    /// The one mutable borrow; None if already taken.
    #[allow(clippy::mut_from_ref)] // guarded by `taken`: handed out once
    pub fn take(&'static self) -> Option<&'static mut T> {
        if self.taken.swap(true, Ordering::Relaxed) {
            return None;
        }
        // SAFETY: the flag guarantees this is the only borrow ever made.
        Some(unsafe { &mut *self.value.get() })
    }
}
