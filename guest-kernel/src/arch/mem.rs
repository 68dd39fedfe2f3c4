//! The memory functions the compiler and `core` call (`memcpy` and kin).
//!
//! There is no libc in the guest. These use string instructions, which the
//! emulator of ring 0 on kvm_pvm runs per iteration, so the word-sized forms
//! are used wherever the length allows. Where ring 0 is emulated, a zeroing
//! of at least [`HOST_BULK_MIN`] bytes (`memset`) and the moves of that size
//! that `phys` makes between RAM and the kernel (a file's pages read from
//! the page cache into a program, a pipe's bytes to and from it) go to the
//! host instead, as ZERO and COPY hypercalls (see [`host_bulk`]). `memcpy`
//! stays in ring 0: its callers move the kernel's own structures.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use vmrun_contract::layout::{DIRECT_MAP_BASE, KERNEL_VIRT_BASE};

/// Copies and zeroings of at least this many bytes go to the host where
/// ring 0 is emulated. There a string instruction runs one emulated
/// iteration per 8 bytes (0.3-0.9 us each on the machines measured), so
/// 4 KiB cost 150-450 us; the host does it for one VM exit (about 40 us)
/// and the few dozen instructions of the call. Where ring 0 is native
/// (VMX/SVM) the string instructions are the cheaper and stay.
pub const HOST_BULK_MIN: usize = 1024;

/// Guest RAM's size where bulk work goes to the host; 0 where it does not.
static HOST_BULK_RAM: AtomicU64 = AtomicU64::new(0);

/// Send copies and zeroings of [`HOST_BULK_MIN`] bytes or more to the host
/// (boot calls it where ring 0 is emulated, with RAM's size: the direct
/// map's extent).
pub fn host_bulk(mem_size: u64) {
    HOST_BULK_RAM.store(mem_size, Relaxed);
}

extern "C" {
    static __kernel_end: u8;
}

/// Where the host can reach the kernel range `[va, va + n)`, if it can.
#[inline(always)]
fn bulk_phys(va: u64, n: u64, ram: u64) -> Option<u64> {
    let image_end = core::ptr::addr_of!(__kernel_end) as u64;
    guest_kernel::mm::phys::kernel_range_phys(
        va,
        n,
        (KERNEL_VIRT_BASE, image_end),
        (DIRECT_MAP_BASE, ram),
    )
}

/// A move of `n` bytes between the kernel ranges at `src` and `dst` (the
/// moves of `phys` between RAM and the kernel), made by the host if it is
/// of at least [`HOST_BULK_MIN`] bytes, bulk work goes there and both are
/// ranges it can reach; whether it was made. In line: a short move pays
/// the one comparison.
#[inline(always)]
pub fn host_move(dst: u64, src: u64, n: u64) -> bool {
    n >= HOST_BULK_MIN as u64 && host_copy(dst, src, n)
}

/// Whether bulk work goes to the host (where ring 0 is emulated).
#[inline(always)]
pub fn host_bulk_on() -> bool {
    bulk_ram().is_some()
}

/// Guest RAM's size, if bulk work goes to the host.
#[inline(always)]
fn bulk_ram() -> Option<u64> {
    Some(HOST_BULK_RAM.load(Relaxed)).filter(|&ram| ram != 0)
}

/// [`host_move`] past its length test.
#[inline(never)]
fn host_copy(dst: u64, src: u64, n: u64) -> bool {
    let Some(ram) = bulk_ram() else {
        return false;
    };
    match (bulk_phys(dst, n, ram), bulk_phys(src, n, ram)) {
        (Some(d), Some(s)) => super::hypercall::bulk_copy(d, s, n),
        _ => false,
    }
}

/// `memset`'s zeroing by the host, as [`host_copy`].
#[inline(never)]
fn host_zero(dst: u64, n: u64) -> bool {
    let Some(ram) = bulk_ram() else {
        return false;
    };
    bulk_phys(dst, n, ram).is_some_and(|d| super::hypercall::bulk_zero(d, n))
}

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

/// Fill `n` bytes with `c`. Naked, so that the test for a bulk zeroing
/// costs a short fill two instructions and no saved register.
///
/// # Safety
/// As C's memset: a valid range.
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    core::arch::naked_asm!(
        "cmp rdx, {min}",
        "jae {bulk}",
        "mov rcx, rdx",
        "mov rdx, rdi",
        "movzx esi, sil",
        "movabs rax, 0x0101010101010101",
        "imul rax, rsi",
        "mov esi, ecx",
        "and esi, 7",
        "shr rcx, 3",
        "rep stosq",
        "mov ecx, esi",
        "rep stosb",
        "mov rax, rdx",
        "ret",
        min = const HOST_BULK_MIN,
        bulk = sym memset_bulk,
    )
}

/// `memset` of [`HOST_BULK_MIN`] bytes or more: a zeroing by the host
/// where it can, else here.
///
/// # Safety
/// As memset.
unsafe extern "C" fn memset_bulk(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    if c as u8 != 0 || !host_zero(dst as u64, n as u64) {
        // SAFETY: as memset.
        unsafe { set_here(dst, c, n) };
    }
    dst
}

/// Zero `n` bytes at `dst` with the CPU's own stores, whatever their
/// length (page-table entries: see `PhysMem::clear_words`).
///
/// # Safety
/// As memset.
pub unsafe fn zero_here(dst: *mut u8, n: usize) {
    // SAFETY: as memset.
    unsafe { set_here(dst, 0, n) };
}

/// The fill in ring 0: quadwords, then the rest bytewise.
///
/// # Safety
/// As memset.
#[inline(always)]
unsafe fn set_here(dst: *mut u8, c: i32, n: usize) {
    let word = u64::from(c as u8) * 0x0101_0101_0101_0101;
    // SAFETY: the caller passes a valid range of n bytes.
    unsafe {
        asm!("rep stosq", "mov ecx, {rem:e}", "rep stosb",
             rem = in(reg) n & 7, inout("rcx") n >> 3 => _,
             inout("rdi") dst => _, in("rax") word, options(nostack));
    }
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
