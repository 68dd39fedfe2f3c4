//! Host facts the VMM passes to the guest: clocks and stdio file types.

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

/// `st_mode` of this process's fds 0, 1 and 2 (0 where fstat fails).
pub fn stdio_modes() -> [u32; 4] {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let mode = |fd: std::os::fd::BorrowedFd<'_>| {
        let owned = fd.try_clone_to_owned().ok()?;
        std::fs::File::from(owned).metadata().ok().map(|m| m.mode())
    };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    [
        mode(stdin.as_fd()).unwrap_or(0),
        mode(stdout.as_fd()).unwrap_or(0),
        mode(stderr.as_fd()).unwrap_or(0),
        0,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = clock_ns(libc::CLOCK_MONOTONIC);
        let b = clock_ns(libc::CLOCK_MONOTONIC);
        assert!(a > 0 && b >= a);
    }
}
