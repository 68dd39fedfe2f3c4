//! The memory functions the compiler and `core` call (`memcpy` and kin).
//!
//! There is no libc in the guest. These use string instructions, which the
//! emulator of ring 0 on kvm_pvm runs per iteration, so the word-sized forms
//! are used wherever the length allows. Bulk work on user pages never comes
//! here: it is delegated to the host (see `phys`).

use core::arch::asm;

/// Copy `n` bytes forward.
///
/// # Safety
/// As C's memcpy: valid, non-overlapping ranges.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller passes valid, non-overlapping ranges of n bytes.
    unsafe {
        asm!("rep movsq", "mov ecx, {rem:e}", "rep movsb",
             rem = in(reg) n & 7, inout("rcx") n >> 3 => _,
             inout("rdi") dst => _, inout("rsi") src => _, options(nostack));
    }
    dst
}

/// Copy `n` bytes, correct for overlapping ranges.
///
/// # Safety
/// As C's memmove: valid ranges.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // dst - src wraps round to a large distance when dst is below src: a
    // distance of n or more, one comparison, tells a forward copy is safe.
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // SAFETY: a forward copy is correct when dst is below src or the
        // ranges do not overlap; the caller passes valid ranges.
        return unsafe { memcpy(dst, src, n) };
    }
    if n & 7 == 0 {
        // SAFETY: as below, without the bytes: n is a non-zero multiple
        // of 8 here (n = 0 took the forward copy), the quadwords moved
        // from the top down (an array's tail moved up one place to
        // insert, its elements a multiple of 8 bytes, is the usual case).
        unsafe {
            asm!("std", "rep movsq", "cld",
                 inout("rcx") n >> 3 => _, inout("rdi") dst.wrapping_add(n - 8) => _,
                 inout("rsi") src.wrapping_add(n - 8) => _, options(nostack));
        }
        return dst;
    }
    // SAFETY: backward copy with the direction flag set and cleared again,
    // over the caller's valid ranges: the n % 8 top bytes one by one, then
    // the rest a quadword at a time (each ring-0 iteration is emulated, so
    // eight times fewer of them; moving a sorted array's tail up to insert
    // is the common case). A backward copy is correct for any dst > src.
    unsafe {
        asm!("std", "rep movsb", "sub rdi, 7", "sub rsi, 7", "mov rcx, {q}", "rep movsq", "cld",
             q = in(reg) n >> 3,
             inout("rcx") n & 7 => _, inout("rdi") dst.add(n).wrapping_sub(1) => _,
             inout("rsi") src.add(n).wrapping_sub(1) => _, options(nostack));
    }
    dst
}

/// Fill `n` bytes with `c`.
///
/// # Safety
/// As C's memset: a valid range.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    let byte = c as u8 as u64;
    let word = byte * 0x0101_0101_0101_0101;
    // SAFETY: the caller passes a valid range of n bytes.
    unsafe {
        asm!("rep stosq", "mov ecx, {rem:e}", "rep stosb",
             rem = in(reg) n & 7, inout("rcx") n >> 3 => _,
             inout("rdi") dst => _, in("rax") word, options(nostack));
    }
    dst
}

/// Compare `n` bytes.
///
/// # Safety
/// As C's memcmp: valid ranges.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n and the caller passes valid ranges of n bytes.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// Compare `n` bytes for equality only.
///
/// # Safety
/// As memcmp.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}
