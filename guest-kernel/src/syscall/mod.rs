//! System calls, with Linux x86-64 numbers and `-errno` results.
//!
//! [`dispatch`] decodes the number and arguments and calls one small
//! function per system call (grouped in files by subject: `io`, `memory`,
//! `process`, `info`). Everything is generic over [`PhysMem`] and over the
//! host's stdio ([`HostIo`]), so the whole layer runs in host unit tests.
//! Every user pointer goes through `uaccess` or `Mm::user_buffer_pieces`: a
//! bad one is EFAULT, never a kernel fault.

mod info;
mod io;
mod memory;
mod misc;
mod process;
mod signal;
mod stat;
pub mod time;

use crate::errno::Errno;
use crate::mm::phys::PhysMem;
use crate::mm::space::MmEnv;
use crate::process::Process;
use vmrun_contract::IoVec;

/// What system calls need from outside the kernel: the host's stdio and
/// randomness, and the time.
pub trait HostIo {
    /// Write the gathered pieces to host fd `fd`; bytes written or -errno.
    fn write(&mut self, fd: u64, iov: &[IoVec]) -> i64;
    /// Read into the pieces from host fd `fd`; bytes read or -errno.
    fn read(&mut self, fd: u64, iov: &[IoVec]) -> i64;
    /// Fill the pieces with random bytes; bytes filled or -errno.
    fn random(&mut self, iov: &[IoVec]) -> i64;
    /// Nanoseconds on `clock` (CLOCK_REALTIME or CLOCK_MONOTONIC).
    fn now_ns(&mut self, clock: time::Clock) -> u64;
    /// Block for `ns` nanoseconds.
    fn sleep(&mut self, ns: u64);
}

/// What the kernel does after a system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Return this value in RAX to the program.
    Return(i64),
    /// The process exits with this status (`exit`/`exit_group`).
    Exit(u8),
    /// The process is killed by this signal (a fatal signal sent to itself).
    Kill(u64),
}

/// Linux x86-64 system call numbers vmrun serves.
pub mod nr {
    #![allow(missing_docs)]
    pub const READ: u64 = 0;
    pub const WRITE: u64 = 1;
    pub const FSTAT: u64 = 5;
    pub const POLL: u64 = 7;
    pub const MMAP: u64 = 9;
    pub const MPROTECT: u64 = 10;
    pub const MUNMAP: u64 = 11;
    pub const BRK: u64 = 12;
    pub const RT_SIGACTION: u64 = 13;
    pub const RT_SIGPROCMASK: u64 = 14;
    pub const IOCTL: u64 = 16;
    pub const WRITEV: u64 = 20;
    pub const SCHED_YIELD: u64 = 24;
    pub const NANOSLEEP: u64 = 35;
    pub const GETPID: u64 = 39;
    pub const FCNTL: u64 = 72;
    pub const EXIT: u64 = 60;
    pub const KILL: u64 = 62;
    pub const UNAME: u64 = 63;
    pub const READLINK: u64 = 89;
    pub const GETTIMEOFDAY: u64 = 96;
    pub const GETRLIMIT: u64 = 97;
    pub const GETUID: u64 = 102;
    pub const GETGID: u64 = 104;
    pub const GETEUID: u64 = 107;
    pub const GETEGID: u64 = 108;
    pub const GETPPID: u64 = 110;
    pub const SIGALTSTACK: u64 = 131;
    pub const ARCH_PRCTL: u64 = 158;
    pub const GETTID: u64 = 186;
    pub const TKILL: u64 = 200;
    pub const TIME: u64 = 201;
    pub const SET_TID_ADDRESS: u64 = 218;
    pub const CLOCK_GETTIME: u64 = 228;
    pub const CLOCK_GETRES: u64 = 229;
    pub const CLOCK_NANOSLEEP: u64 = 230;
    pub const EXIT_GROUP: u64 = 231;
    pub const TGKILL: u64 = 234;
    pub const NEWFSTATAT: u64 = 262;
    pub const READLINKAT: u64 = 267;
    pub const SET_ROBUST_LIST: u64 = 273;
    pub const PRLIMIT64: u64 = 302;
    pub const GETRANDOM: u64 = 318;
}

/// The name of system call `n` as strace prints it, for those served.
pub fn name(n: u64) -> &'static str {
    match n {
        nr::READ => "read",
        nr::WRITE => "write",
        nr::FSTAT => "fstat",
        nr::POLL => "poll",
        nr::MMAP => "mmap",
        nr::MPROTECT => "mprotect",
        nr::MUNMAP => "munmap",
        nr::BRK => "brk",
        nr::RT_SIGACTION => "rt_sigaction",
        nr::RT_SIGPROCMASK => "rt_sigprocmask",
        nr::IOCTL => "ioctl",
        nr::WRITEV => "writev",
        nr::SCHED_YIELD => "sched_yield",
        nr::NANOSLEEP => "nanosleep",
        nr::GETPID => "getpid",
        nr::FCNTL => "fcntl",
        nr::EXIT => "exit",
        nr::KILL => "kill",
        nr::UNAME => "uname",
        nr::READLINK => "readlink",
        nr::GETTIMEOFDAY => "gettimeofday",
        nr::GETRLIMIT => "getrlimit",
        nr::SIGALTSTACK => "sigaltstack",
        nr::TKILL => "tkill",
        nr::TIME => "time",
        nr::CLOCK_GETTIME => "clock_gettime",
        nr::CLOCK_GETRES => "clock_getres",
        nr::CLOCK_NANOSLEEP => "clock_nanosleep",
        nr::TGKILL => "tgkill",
        nr::NEWFSTATAT => "newfstatat",
        nr::READLINKAT => "readlinkat",
        nr::SET_ROBUST_LIST => "set_robust_list",
        nr::PRLIMIT64 => "prlimit64",
        nr::GETRANDOM => "getrandom",
        nr::GETUID => "getuid",
        nr::GETGID => "getgid",
        nr::GETEUID => "geteuid",
        nr::GETEGID => "getegid",
        nr::GETPPID => "getppid",
        nr::ARCH_PRCTL => "arch_prctl",
        nr::GETTID => "gettid",
        nr::SET_TID_ADDRESS => "set_tid_address",
        nr::EXIT_GROUP => "exit_group",
        _ => "unknown",
    }
}

/// Everything a system call may use.
pub struct Ctx<'p, 'e, 'a, M: PhysMem, H: HostIo> {
    /// The calling process.
    pub p: &'p mut Process,
    /// Memory, frames and files.
    pub env: &'e mut MmEnv<'a, M>,
    /// Host stdio.
    pub host: &'e mut H,
}

fn ret(r: Result<i64, Errno>) -> Action {
    Action::Return(r.unwrap_or_else(|e| e.to_ret()))
}

/// Serve system call `n` with arguments `a` (rdi, rsi, rdx, r10, r8, r9).
pub fn dispatch<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    n: u64,
    a: [u64; 6],
) -> Action {
    match n {
        nr::READ => ret(io::read(cx, a[0], a[1], a[2])),
        nr::WRITE => ret(io::write(cx, a[0], a[1], a[2])),
        nr::WRITEV => ret(io::writev(cx, a[0], a[1], a[2])),
        nr::MMAP => ret(memory::mmap(cx, a)),
        nr::MPROTECT => ret(memory::mprotect(cx, a[0], a[1], a[2])),
        nr::MUNMAP => ret(memory::munmap(cx, a[0], a[1])),
        nr::BRK => Action::Return(memory::brk(cx, a[0])),
        nr::EXIT | nr::EXIT_GROUP => Action::Exit(a[0] as u8),
        nr::GETPID | nr::GETTID => Action::Return(cx.p.pid as i64),
        nr::GETPPID => Action::Return(0),
        nr::GETUID | nr::GETGID | nr::GETEUID | nr::GETEGID => Action::Return(0),
        nr::SET_TID_ADDRESS => Action::Return(process::set_tid_address(cx, a[0])),
        nr::ARCH_PRCTL => ret(process::arch_prctl(cx, a[0], a[1])),
        nr::UNAME => ret(info::uname(cx, a[0])),
        nr::POLL => ret(misc::poll(cx, a[0], a[1])),
        nr::FSTAT => ret(stat::fstat(cx, a[0], a[1])),
        nr::NEWFSTATAT => ret(stat::newfstatat(cx, a[0], a[1], a[2], a[3])),
        nr::IOCTL => ret(misc::ioctl(a[0])),
        nr::FCNTL => ret(misc::fcntl(a[0], a[1])),
        nr::SCHED_YIELD => Action::Return(0),
        nr::READLINK => ret(misc::readlink(cx, a[0], a[1], a[2])),
        nr::READLINKAT => ret(misc::readlinkat(cx, a[0], a[1], a[2], a[3])),
        nr::GETRLIMIT => ret(misc::prlimit64(cx, 0, a[0], 0, a[1])),
        nr::PRLIMIT64 => ret(misc::prlimit64(cx, a[0], a[1], a[2], a[3])),
        nr::GETRANDOM => ret(misc::getrandom(cx, a[0], a[1], a[2])),
        nr::SET_ROBUST_LIST => ret(process::set_robust_list(cx, a[0], a[1])),
        nr::RT_SIGACTION => ret(signal::rt_sigaction(cx, a[0], a[1], a[2], a[3])),
        nr::RT_SIGPROCMASK => ret(signal::rt_sigprocmask(cx, a[0], a[1], a[2], a[3])),
        nr::SIGALTSTACK => ret(signal::sigaltstack(cx, a[0], a[1])),
        nr::KILL => signal::kill(cx, a[0], a[1]),
        nr::TKILL => signal::kill(cx, a[0], a[1]),
        nr::TGKILL => signal::tgkill(cx, a[0], a[1], a[2]),
        nr::CLOCK_GETTIME => ret(time::clock_gettime(cx, a[0], a[1])),
        nr::CLOCK_GETRES => ret(time::clock_getres(cx, a[0], a[1])),
        nr::GETTIMEOFDAY => ret(time::gettimeofday(cx, a[0])),
        nr::TIME => ret(time::time(cx, a[0])),
        nr::NANOSLEEP => ret(time::nanosleep(cx, a[0])),
        nr::CLOCK_NANOSLEEP => ret(time::clock_nanosleep(cx, a[0], a[1], a[2])),
        _ => Action::Return(Errno::ENOSYS.to_ret()),
    }
}

#[cfg(test)]
mod tests;
