//! The few host OS calls the standard library does not offer.

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
