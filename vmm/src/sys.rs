//! Host facts the VMM passes to the guest: clocks, random bytes and stdio
//! file types.

/// The host's `clock` (a libc clock id) in nanoseconds; 0 if unreadable.
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid `ts`.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `N` random bytes as /dev/urandom gives them, in one getrandom(2) call
/// (GRND_INSECURE: never waits for the entropy pool), or read from
/// /dev/urandom where the kernel lacks that flag (before Linux 5.6).
/// A failure of both leaves zeroes.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // SAFETY: getrandom writes at most `N` bytes into the valid `buf`.
    let got = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), N, libc::GRND_INSECURE) };
    if got != N as isize {
        let _ = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf));
    }
    buf
}

/// `st_mode` of this process's fds 0, 1 and 2 (0 where fstat fails).
pub fn stdio_modes() -> [u32; 4] {
    [fd_mode(0), fd_mode(1), fd_mode(2), 0]
}

/// `st_mode` of `fd` (0 if fstat fails, e.g. for a closed fd).
fn fd_mode(fd: libc::c_int) -> u32 {
    // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one stat into the valid `st`; it only reads the
    // fd number, which need not be open.
    match unsafe { libc::fstat(fd, &mut st) } {
        0 => st.st_mode,
        _ => 0,
    }
}

/// Let a helper process hold this process's memory and open files while
/// it exits, so that the exit the caller waits for does not include the
/// host kernel tearing down guest RAM and the VM (a few milliseconds,
/// longer than a small program's whole run): the helper shares both, and
/// dies of SIGKILL the moment this process is gone (`PR_SET_PDEATHSIG`),
/// which is when the teardown happens. Standard input, output and error
/// are closed first (call it after the last write), so that a reader of
/// vmrun's output sees its end as the exit status arrives. Best effort:
/// where the helper cannot be made, the exit tears down as before.
pub fn hand_off_teardown() {
    const STACK: usize = 16 * 1024;
    /// The helper's stack: it shares this process's memory.
    struct HelperStack(std::cell::UnsafeCell<[u8; STACK]>);
    // SAFETY: only the helper ever touches it, and only one is made.
    unsafe impl Sync for HelperStack {}
    static HELPER_STACK: HelperStack = HelperStack(std::cell::UnsafeCell::new([0; STACK]));
    static MADE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    extern "C" fn holder(parent: *mut libc::c_void) -> libc::c_int {
        // Raw system calls only: the helper runs on a borrowed stack with
        // this process's thread pointer, so nothing here may use the C
        // library's per-thread state.
        // SAFETY: prctl, getppid, pause and exit take no pointers.
        unsafe {
            libc::syscall(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::syscall(libc::SYS_getppid) as usize != parent as usize {
                libc::syscall(libc::SYS_exit, 0);
            }
            loop {
                libc::syscall(libc::SYS_pause);
            }
        }
    }

    if MADE.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let flags = libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_FS | libc::CLONE_SYSVSEM;
    // SAFETY: the helper runs `holder` on its own static stack (the top of
    // it, 16-byte aligned) and touches nothing else of this process's
    // memory; no exit signal is asked for, so nobody waits for it but its
    // eventual reaper.
    let pid = unsafe {
        let top = HELPER_STACK.0.get().cast::<u8>().add(STACK);
        let top = (top as usize & !15) as *mut libc::c_void;
        libc::clone(
            holder,
            top,
            flags,
            std::process::id() as usize as *mut libc::c_void,
        )
    };
    if pid > 0 {
        for fd in 0..3 {
            // SAFETY: closing fds the caller is done with; nothing uses
            // them after this.
            unsafe { libc::close(fd) };
        }
    }
}

/// Where the `len` bytes at `p`, part of this program's own loaded image
/// (a static), lie in its executable file: the offset, found through the
/// dynamic loader's program headers of the main program (no system call),
/// or None if they are not in one of its file-backed segments.
pub fn own_file_offset(p: *const u8, len: usize) -> Option<u64> {
    struct Find {
        addr: u64,
        len: u64,
        offset: Option<u64>,
    }
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid info for the call's duration,
        // and `data` is the `Find` that `own_file_offset` lent it.
        let (info, find) = unsafe { (&*info, &mut *data.cast::<Find>()) };
        let phdrs = match info.dlpi_phdr.is_null() {
            true => &[][..],
            // SAFETY: `dlpi_phnum` headers at `dlpi_phdr`, as the loader says.
            false => unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) },
        };
        for ph in phdrs.iter().filter(|ph| ph.p_type == libc::PT_LOAD) {
            let start = info.dlpi_addr.wrapping_add(ph.p_vaddr);
            let inside = find.addr >= start
                && find
                    .addr
                    .checked_add(find.len)
                    .is_some_and(|end| end <= start.saturating_add(ph.p_filesz));
            if inside {
                find.offset = Some(find.addr - start + ph.p_offset);
            }
        }
        // The main program comes first: stop there.
        1
    }
    let mut find = Find {
        addr: p as u64,
        len: len as u64,
        offset: None,
    };
    // SAFETY: the callback only reads what the loader hands it and writes
    // `find`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut find).cast()) };
    find.offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_are_not_all_zero() {
        // 32 zero bytes by chance: about one in 2^256.
        assert_ne!(random_bytes::<32>(), [0; 32]);
    }

    #[test]
    fn stdio_modes_are_fstats_of_fds_0_to_2() {
        use std::os::unix::fs::MetadataExt;
        let want =
            |fd: i32| std::fs::metadata(format!("/proc/self/fd/{fd}")).map_or(0, |m| m.mode());
        let modes = stdio_modes();
        assert_eq!(modes[3], 0);
        for fd in 0..3 {
            if std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok() {
                assert_eq!(modes[fd as usize], want(fd), "fd {fd}");
            }
        }
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = clock_ns(libc::CLOCK_MONOTONIC);
        let b = clock_ns(libc::CLOCK_MONOTONIC);
        assert!(a > 0 && b >= a);
    }
}
