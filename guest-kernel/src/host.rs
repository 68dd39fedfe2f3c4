//! The program's stdio through hypercalls.

use crate::arch::hypercall;
use guest_kernel::syscall::HostIo;
use vmrun_contract::IoVec;

/// Host stdio; the iovec arrays live on the kernel stack, whose physical
/// address the hypercall layer computes.
pub struct HostStdio;

impl HostIo for HostStdio {
    fn write(&mut self, fd: u64, iov: &[IoVec]) -> i64 {
        hypercall::write(fd, iov)
    }

    fn read(&mut self, fd: u64, iov: &[IoVec]) -> i64 {
        hypercall::read(fd, iov)
    }
}
