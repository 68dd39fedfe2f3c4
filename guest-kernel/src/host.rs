//! What system calls need from outside the kernel: stdio and randomness
//! through hypercalls, time from the TSC.

use crate::arch::{cpu, hypercall, phys};
use guest_kernel::syscall::random_pool::RandomPool;
use guest_kernel::syscall::time::Clock;
use guest_kernel::syscall::HostIo;
use vmrun_contract::layout::{RANDOM_POOL_BYTES, RANDOM_POOL_PHYS};
use vmrun_contract::IoVec;

/// The host, as system calls see it; the iovec arrays live on the kernel
/// stack, whose physical address the hypercall layer computes.
pub struct Host {
    /// TSC at boot, when the host's clocks were sampled.
    pub tsc0: u64,
    /// TSC ticks per millisecond (kHz).
    pub tsc_khz: u64,
    /// Host CLOCK_REALTIME at boot, ns.
    pub realtime0: u64,
    /// Host CLOCK_MONOTONIC at boot, ns.
    pub monotonic0: u64,
    /// The host stdio stream of the last read or write: the stream the
    /// short path's call just used, which it opens to the VMM's fast call
    /// (see `run::open_fast_call`).
    pub last_stream: u64,
    /// The random bytes handed out of the pool the VMM filled.
    pub random_pool: RandomPool,
    /// Bytes of RAM (the pool's copies check their pieces against it).
    pub mem_size: u64,
}

impl Host {
    /// Nanoseconds per TSC tick, 32.32 fixed point (what the vDSO uses,
    /// so that the kernel's clocks and the vDSO's agree to the ns).
    pub fn mult(&self) -> u64 {
        if self.tsc_khz == 0 {
            return 0;
        }
        ((1_000_000u128 << 32) / u128::from(self.tsc_khz)) as u64
    }

    /// Nanoseconds since boot by the TSC (0 if its frequency is unknown).
    fn since_boot_ns(&self) -> u64 {
        let ticks = u128::from(cpu::rdtsc().wrapping_sub(self.tsc0));
        ((ticks * u128::from(self.mult())) >> 32) as u64
    }

    /// Nanoseconds the guest has computed since boot: the TSC's time less
    /// what the host spent serving hypercalls.
    fn cpu_since_boot_ns(&self) -> u64 {
        let ticks = cpu::rdtsc()
            .wrapping_sub(self.tsc0)
            .saturating_sub(hypercall::host_ticks());
        ((u128::from(ticks) * u128::from(self.mult())) >> 32) as u64
    }
}

impl HostIo for Host {
    fn write(&mut self, fd: u64, iov: &[IoVec]) -> i64 {
        self.last_stream = fd;
        hypercall::write(fd, iov)
    }

    fn read(&mut self, fd: u64, iov: &[IoVec]) -> i64 {
        self.last_stream = fd;
        hypercall::read(fd, iov)
    }

    fn random(&mut self, iov: &[IoVec]) -> i64 {
        let n = iov.iter().map(|v| v.len).sum();
        let Some(draw) = self.random_pool.take(n).filter(|_| n > 0) else {
            return hypercall::random(iov);
        };
        if draw.refill {
            let pool = IoVec {
                phys: RANDOM_POOL_PHYS,
                len: RANDOM_POOL_BYTES,
            };
            if hypercall::random(&[pool]) < 0 {
                self.random_pool.spoil();
                return hypercall::random(iov);
            }
        }
        let mut from = draw.phys;
        for v in iov {
            phys::copy_from_pool(v.phys, from, v.len, self.mem_size);
            from += v.len;
        }
        n as i64
    }

    fn seek(&mut self, fd: u64, offset: u64, whence: u64) -> i64 {
        hypercall::seek(fd, offset, whence)
    }

    fn user_strings(
        &mut self,
        root: u64,
        arrays: [u64; 2],
        budget: u64,
        block: &mut alloc::vec::Vec<u8>,
        lens: &mut alloc::vec::Vec<u8>,
    ) -> Option<[u64; 2]> {
        // Where ring 0 is native (VMX/SVM), the kernel's loop costs less
        // than an exit to the VMM, as bulk copies do.
        if !crate::arch::mem::host_bulk_on() {
            return None;
        }
        hypercall::user_strings(root, arrays, budget, block, lens)
    }

    fn sleep(&mut self, ns: u64) {
        hypercall::sleep(ns);
    }

    fn now_ns(&mut self, clock: Clock) -> u64 {
        let base = match clock {
            Clock::Realtime => self.realtime0,
            Clock::Monotonic => self.monotonic0,
        };
        base + self.since_boot_ns()
    }

    fn cpu_ns(&mut self) -> u64 {
        self.cpu_since_boot_ns()
    }

    fn boot_realtime_ns(&mut self) -> u64 {
        self.realtime0.saturating_sub(self.monotonic0)
    }
}

/// The host's file service through the one request block.
pub struct HostFs {
    req: Option<&'static mut vmrun_contract::fs::FsRequest>,
}

impl HostFs {
    /// Not connected yet (for statics).
    pub const fn empty() -> HostFs {
        HostFs { req: None }
    }

    /// Connect to the request block (at boot).
    pub fn connect(&mut self) {
        self.req = hypercall::fs_block();
    }

    fn block(&mut self) -> &mut vmrun_contract::fs::FsRequest {
        match self.req.as_deref_mut() {
            Some(r) => r,
            None => hypercall::panic(b"file-system request block missing"),
        }
    }
}

impl guest_kernel::fs::host::FsHost for HostFs {
    fn req(&mut self) -> &mut vmrun_contract::fs::FsRequest {
        self.block()
    }

    fn submit(&mut self, iov: &[IoVec]) -> i64 {
        hypercall::fs(self.block(), iov)
    }
}
