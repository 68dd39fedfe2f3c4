//! Hypercalls: requests to the VMM through the contract's I/O port.
//!
//! One request block lives in the kernel's bss; its physical address is
//! written to [`HYPERCALL_PORT`] with a 32-bit `out`, which exits to the VMM.
//! The VMM reads the block, does the work and writes the result into it
//! before the guest resumes.

use core::cell::UnsafeCell;
use core::ptr::{addr_of_mut, read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, Ordering};
use vmrun_contract::fs::FsRequest;
use vmrun_contract::{
    hc,
    layout::{DIRECT_MAP_BASE, KERNEL_VIRT_BASE},
    CopyItem, Hypercall, IoVec, UserStrings, HYPERCALL_PORT,
};

struct Block(UnsafeCell<Hypercall>);
// SAFETY: the kernel runs on one CPU with interrupts off; the block is only
// touched inside `call`, which is never re-entered.
unsafe impl Sync for Block {}

static BLOCK: Block = Block(UnsafeCell::new(Hypercall {
    nr: 0,
    args: [0; 6],
    ret: 0,
}));

/// Physical address of a kernel virtual address (image or direct map).
pub fn kernel_phys<T>(p: *const T) -> u64 {
    let va = p as u64;
    if va >= KERNEL_VIRT_BASE {
        va - KERNEL_VIRT_BASE
    } else {
        va - DIRECT_MAP_BASE
    }
}

/// TSC ticks spent in the host serving hypercalls (sleeps, blocking reads,
/// file requests): not the guest's CPU time.
static HOST_TICKS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// TSC ticks the host has spent serving hypercalls so far.
pub fn host_ticks() -> u64 {
    HOST_TICKS.load(core::sync::atomic::Ordering::Relaxed)
}

/// Issue hypercall `nr` with `args` (the first `N` of its six arguments:
/// a call the VMM reads fewer of leaves the rest unwritten); returns the
/// VMM's result.
pub fn call<const N: usize>(nr: u64, args: [u64; N]) -> i64 {
    let t0 = super::cpu::rdtsc();
    let r = call_raw(nr, args);
    let spent = super::cpu::rdtsc().wrapping_sub(t0);
    // One CPU: a load and a store, no locked add.
    HOST_TICKS.store(host_ticks() + spent, core::sync::atomic::Ordering::Relaxed);
    r
}

fn call_raw<const N: usize>(nr: u64, args: [u64; N]) -> i64 {
    const { assert!(N <= 6) };
    let b = BLOCK.0.get();
    // SAFETY: `b` points at the static block; single CPU, no re-entry (see
    // the Sync impl), and the VMM only touches it while the vCPU is stopped.
    unsafe {
        write_volatile(addr_of_mut!((*b).nr), nr);
        // Word by word: a volatile write of the whole array goes through
        // a copy on the stack, a dozen more emulated instructions.
        let words = addr_of_mut!((*b).args).cast::<u64>();
        for (k, w) in args.into_iter().enumerate() {
            write_volatile(words.add(k), w);
        }
        write_volatile(addr_of_mut!((*b).ret), 0);
        // The block is a static of the kernel image.
        super::cpu::outl(HYPERCALL_PORT, (b as u64 - KERNEL_VIRT_BASE) as u32);
        read_volatile(addr_of_mut!((*b).ret))
    }
}

struct FsBlock(UnsafeCell<FsRequest>);
// SAFETY: as `Block`; handed out once by `fs_block`.
unsafe impl Sync for FsBlock {}

static FS_BLOCK: FsBlock = FsBlock(UnsafeCell::new(FsRequest::zeroed()));
static FS_TAKEN: AtomicBool = AtomicBool::new(false);

/// The file-system request block, handed out once.
#[allow(clippy::mut_from_ref)]
pub fn fs_block() -> Option<&'static mut FsRequest> {
    if FS_TAKEN.swap(true, Ordering::Relaxed) {
        return None;
    }
    // SAFETY: the flag makes this the only borrow ever made.
    Some(unsafe { &mut *FS_BLOCK.0.get() })
}

/// Send the file-system request `req` (the block from [`fs_block`]) with
/// the data pieces `iov`.
pub fn fs(req: &mut FsRequest, iov: &[IoVec]) -> i64 {
    req.iov_phys = kernel_phys(iov.as_ptr());
    req.iov_count = iov.len() as u64;
    let r = call(hc::FS, [kernel_phys(req as *const FsRequest)]);
    // The host wrote the outputs; make the compiler read them afresh.
    // SAFETY: `req` is a valid, exclusive reference.
    unsafe { core::ptr::read_volatile(&req.ret) };
    r
}

/// Ask the host to write the pieces of `iov` to its fd `fd`.
pub fn write(fd: u64, iov: &[IoVec]) -> i64 {
    call(hc::WRITE, [fd, kernel_phys(iov.as_ptr()), iov.len() as u64])
}

/// Ask the host to read from its fd `fd` into the pieces of `iov`.
pub fn read(fd: u64, iov: &[IoVec]) -> i64 {
    call(hc::READ, [fd, kernel_phys(iov.as_ptr()), iov.len() as u64])
}

/// Ask the host to move the offset of its fd `fd` (0 to 2) as lseek(2).
pub fn seek(fd: u64, offset: u64, whence: u64) -> i64 {
    call(hc::SEEK, [fd, offset, whence])
}

/// Ask the host to fill the pieces of `iov` with random bytes.
pub fn random(iov: &[IoVec]) -> i64 {
    call(hc::RANDOM, [kernel_phys(iov.as_ptr()), iov.len() as u64])
}

/// Block for `ns` nanoseconds on the host.
pub fn sleep(ns: u64) {
    call(hc::SLEEP, [ns]);
}

/// Send a log line (shown with `vmrun --verbose`).
pub fn log(msg: &[u8]) {
    call(hc::LOG, [kernel_phys(msg.as_ptr()), msg.len() as u64]);
}

/// Zero guest-physical memory on the host.
pub fn zero(pa: u64, len: u64) {
    call(hc::ZERO, [pa, len]);
}

/// Copy guest-physical memory on the host.
pub fn copy(dst: u64, src: u64, len: u64) {
    call(hc::COPY, [dst, src, len]);
}

/// Have the host make the copies `items` (at most
/// [`vmrun_contract::COPY_LIST_MAX`]) in one exit.
pub fn copy_list(items: &[CopyItem]) {
    call(
        hc::COPY_LIST,
        [kernel_phys(items.as_ptr()), items.len() as u64],
    );
}

/// The list of copies put off for one [`copy_list`] (in the bss: nothing
/// to set up at boot).
pub type CopyList = [CopyItem; vmrun_contract::COPY_LIST_MAX as usize];

struct CopyBlock(UnsafeCell<CopyList>);
// SAFETY: as `Block`; handed out once by `copy_block`.
unsafe impl Sync for CopyBlock {}

static COPY_BLOCK: CopyBlock = CopyBlock(UnsafeCell::new(
    [CopyItem {
        dst: 0,
        src: 0,
        len: 0,
    }; vmrun_contract::COPY_LIST_MAX as usize],
));
static COPY_TAKEN: AtomicBool = AtomicBool::new(false);

struct StringsBlock(UnsafeCell<UserStrings>);
// SAFETY: as `Block`: only touched inside `user_strings`, never re-entered.
unsafe impl Sync for StringsBlock {}

static STRINGS_BLOCK: StringsBlock = StringsBlock(UnsafeCell::new(UserStrings {
    root: 0,
    arrays: [0; 2],
    block: 0,
    block_room: 0,
    lens: 0,
    lens_room: 0,
    budget: 0,
    counts: [0; 2],
    bytes: 0,
}));

/// execve's argv and envp (user addresses `arrays`, 0 for none) in the
/// address space at `root`, gathered by the host ([`hc::USER_STRINGS`])
/// onto the ends of `block` and `lens` (one LE u32 length each); `budget`
/// is what they may cost (each its length plus 8). Returns how many of
/// each, or None when the kernel must read them itself (the host found a
/// page not mapped for the user, a string too long, or the budget
/// passed). Room the host asks for is reserved once and the call made
/// again.
pub fn user_strings(
    root: u64,
    arrays: [u64; 2],
    budget: u64,
    block: &mut alloc::vec::Vec<u8>,
    lens: &mut alloc::vec::Vec<u8>,
) -> Option<[u64; 2]> {
    use vmrun_contract::user_strings::ROOM;
    let req = STRINGS_BLOCK.0.get();
    for _ in 0..2 {
        let room = (block.capacity() - block.len(), lens.capacity() - lens.len());
        let want = UserStrings {
            root,
            arrays,
            block: kernel_phys(block.as_ptr().wrapping_add(block.len())),
            block_room: room.0 as u64,
            lens: kernel_phys(lens.as_ptr().wrapping_add(lens.len())),
            lens_room: (room.1 / 4) as u64,
            budget,
            counts: [0; 2],
            bytes: 0,
        };
        // SAFETY: the static block, one CPU, never re-entered; the VMM
        // writes it only while the vCPU is stopped in the call.
        let (r, done) = unsafe {
            write_volatile(req, want);
            let r = call(hc::USER_STRINGS, [kernel_phys(req)]);
            (r, read_volatile(req))
        };
        let count = done.counts[0].checked_add(done.counts[1])?;
        if r == ROOM {
            // The host's budget keeps this under Linux's limit; a heap
            // too full for it leaves the strings to the kernel's path.
            block.try_reserve(done.bytes as usize).ok()?;
            lens.try_reserve(4 * count as usize).ok()?;
            continue;
        }
        if r != 0 || done.bytes > want.block_room || count > want.lens_room {
            return None;
        }
        // SAFETY: the host wrote `bytes` and `4 * count` bytes into the
        // two vectors' spare capacity (checked against the room above),
        // u8s that any bytes initialise.
        unsafe {
            block.set_len(block.len() + done.bytes as usize);
            lens.set_len(lens.len() + 4 * count as usize);
        }
        return Some(done.counts);
    }
    None
}

/// The list of put-off copies, handed out once (to the direct map).
#[allow(clippy::mut_from_ref)]
pub fn copy_block() -> Option<&'static mut CopyList> {
    if COPY_TAKEN.swap(true, Ordering::Relaxed) {
        return None;
    }
    // SAFETY: the flag makes this the only borrow ever made.
    Some(unsafe { &mut *COPY_BLOCK.0.get() })
}

/// [`copy`] for the kernel's bulk moves (see `mem`), whether the host did
/// it (both ranges lie in RAM): the host's time counts as the kernel's
/// own, as a copy's does natively (no TSC reads around it).
pub fn bulk_copy(dst: u64, src: u64, len: u64) -> bool {
    call_raw(hc::COPY, [dst, src, len]) == 0
}

/// [`zero`] for `memset`, as [`bulk_copy`].
pub fn bulk_zero(pa: u64, len: u64) -> bool {
    call_raw(hc::ZERO, [pa, len]) == 0
}

/// End the run: the program exited or was killed. Never returns (so the
/// host's time is not counted as [`call`] counts it), and inlined into its
/// one caller, which then writes the arguments straight into the block.
#[inline(always)]
pub fn exit(args: [u64; 6]) -> ! {
    call_raw(hc::EXIT, args);
    super::cpu::halt_forever()
}

/// The initial exec failed with `errno` and a message. Never returns.
pub fn exec_failed(errno: u64, msg: &[u8]) -> ! {
    call(
        hc::EXEC_FAILED,
        [errno, kernel_phys(msg.as_ptr()), msg.len() as u64],
    );
    super::cpu::halt_forever()
}

/// Report a kernel panic. Never returns.
pub fn panic(msg: &[u8]) -> ! {
    call(hc::PANIC, [kernel_phys(msg.as_ptr()), msg.len() as u64]);
    super::cpu::halt_forever()
}
