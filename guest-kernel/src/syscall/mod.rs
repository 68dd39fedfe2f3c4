//! System calls, with Linux x86-64 numbers and `-errno` results.
//!
//! [`dispatch`] decodes the number and arguments and calls one small
//! function per system call (grouped in files by subject: `io`, `memory`,
//! `process`, `info`). Everything is generic over [`PhysMem`] and over the
//! host's stdio ([`HostIo`]), so the whole layer runs in host unit tests.
//! Every user pointer goes through `uaccess` or `Mm::user_buffer_pieces`: a
//! bad one is EFAULT, never a kernel fault.

pub mod exec;
pub mod files;
mod fsmeta;
mod info;
mod memory;
mod misc;
mod process;
mod procfs;
pub mod random_pool;
pub mod signal;
mod signalfd;
pub mod task;
pub mod time;
mod timer;

use crate::errno::Errno;
use crate::mm::phys::PhysMem;
use crate::mm::space::MmEnv;
use crate::process::Process;
use vmrun_contract::IoVec;

pub use fsmeta::{access_short, newfstatat_host_short, newfstatat_short, readlink_short};
pub use memory::{mmap_anon_short, mmap_short, mprotect_short, munmap_short};
pub use misc::{getrandom_short, prlimit64_short};
pub use process::set_base;

const ENOSYS: i64 = Errno::ENOSYS.to_ret();

/// What system calls need from outside the kernel: the host's stdio and
/// randomness, and the time.
pub trait HostIo {
    /// Write the gathered pieces to host fd `fd`; bytes written or -errno.
    fn write(&mut self, fd: u64, iov: &[IoVec]) -> i64;
    /// Read into the pieces from host fd `fd`; bytes read or -errno.
    fn read(&mut self, fd: u64, iov: &[IoVec]) -> i64;
    /// Fill the pieces with random bytes; bytes filled or -errno.
    fn random(&mut self, iov: &[IoVec]) -> i64;
    /// Move the offset of host fd `fd` (0 to 2, a regular file) as
    /// lseek(2); the new offset or -errno.
    fn seek(&mut self, _fd: u64, _offset: u64, _whence: u64) -> i64 {
        -(crate::errno::Errno::ESPIPE as i64)
    }
    /// execve's argv and envp (user addresses `arrays`, 0 for none) in
    /// the address space at `root`, gathered by the host onto the ends of
    /// `block` and `lens` (a LE u32 length each, NUL included) at a cost
    /// of at most `budget` (each string its length plus 8): how many of
    /// each, or None when the kernel must read them itself (the default;
    /// see `arch::hypercall`).
    fn user_strings(
        &mut self,
        _root: u64,
        _arrays: [u64; 2],
        _budget: u64,
        _block: &mut alloc::vec::Vec<u8>,
        _lens: &mut alloc::vec::Vec<u8>,
    ) -> Option<[u64; 2]> {
        None
    }
    /// Nanoseconds on `clock` (CLOCK_REALTIME or CLOCK_MONOTONIC).
    fn now_ns(&mut self, clock: time::Clock) -> u64;
    /// The wall-clock time of the host's boot, ns: CLOCK_REALTIME less
    /// CLOCK_MONOTONIC, the same for the whole run.
    fn boot_realtime_ns(&mut self) -> u64 {
        let real = self.now_ns(time::Clock::Realtime);
        real.saturating_sub(self.now_ns(time::Clock::Monotonic))
    }
    /// Block for `ns` nanoseconds.
    fn sleep(&mut self, ns: u64);
    /// The guest's CPU clock, ns: time the vCPU computed (user and kernel
    /// code), without the host's time serving hypercalls. Tasks are
    /// charged by it while they are current.
    fn cpu_ns(&mut self) -> u64 {
        self.now_ns(time::Clock::Monotonic)
    }
}

/// What the kernel does after a system call.
pub enum Action {
    /// Return this value in RAX to the program.
    Return(i64),
    /// The process exits with this status, 0 to 255 (`exit_group`).
    Exit(u64),
    /// The process is killed by this signal (a fatal signal sent to itself).
    Kill(u64),
    /// execve passed its checks: replace the image (the caller runs
    /// [`exec::commit`], which needs the kernel's page tables).
    Exec(alloc::boxed::Box<exec::ExecPlan>),
    /// fork/vfork/clone made this child: the kernel starts it as its
    /// `spawn` says (the caller gets its pid). One word, as every other
    /// action's payload (the exit statuses too), so that an action is two
    /// registers, returned without a trip through memory.
    Spawn(alloc::boxed::Box<Process>),
    /// The call must wait: the process sleeps and runs the call again
    /// when woken.
    Block,
    /// Return this value, and let the other processes run first.
    Yield(i64),
    /// The calling thread exits (`exit`) with this status, 0 to 255; the
    /// process too if it was the last of its group.
    ExitThread(u64),
    /// Return this value; the process's timers changed (`alarm`,
    /// `setitimer`, `timer_settime`), so the kernel may need timer
    /// interrupts now.
    TimersChanged(i64),
}

// Two words, every payload one (see `Action::Spawn`): returned in two
// registers.
const _: () = assert!(core::mem::size_of::<Action>() == 16);

impl PartialEq for Action {
    fn eq(&self, other: &Action) -> bool {
        match (self, other) {
            (Action::Return(a), Action::Return(b))
            | (Action::TimersChanged(a), Action::TimersChanged(b)) => a == b,
            (Action::Exit(a), Action::Exit(b)) | (Action::ExitThread(a), Action::ExitThread(b)) => {
                a == b
            }
            (Action::Kill(a), Action::Kill(b)) => a == b,
            (Action::Block, Action::Block) => true,
            _ => false,
        }
    }
}

impl core::fmt::Debug for Action {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Action::Return(v) => f.debug_tuple("Return").field(v).finish(),
            Action::Exit(s) => f.debug_tuple("Exit").field(s).finish(),
            Action::Kill(s) => f.debug_tuple("Kill").field(s).finish(),
            Action::Exec(_) => f.write_str("Exec(..)"),
            Action::Spawn(c) => write!(f, "Spawn(pid {})", c.pid),
            Action::Block => f.write_str("Block"),
            Action::Yield(v) => f.debug_tuple("Yield").field(v).finish(),
            Action::ExitThread(s) => f.debug_tuple("ExitThread").field(s).finish(),
            Action::TimersChanged(v) => f.debug_tuple("TimersChanged").field(v).finish(),
        }
    }
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
    pub const SETRLIMIT: u64 = 160;
    pub const GETUID: u64 = 102;
    pub const GETGID: u64 = 104;
    pub const GETEUID: u64 = 107;
    pub const GETEGID: u64 = 108;
    pub const GETGROUPS: u64 = 115;
    pub const GETRESUID: u64 = 118;
    pub const GETRESGID: u64 = 120;
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
    pub const RSEQ: u64 = 334;
    pub const OPEN: u64 = 2;
    pub const CLOSE: u64 = 3;
    pub const STAT: u64 = 4;
    pub const LSTAT: u64 = 6;
    pub const LSEEK: u64 = 8;
    pub const PREAD64: u64 = 17;
    pub const PWRITE64: u64 = 18;
    pub const READV: u64 = 19;
    pub const ACCESS: u64 = 21;
    pub const MREMAP: u64 = 25;
    pub const MSYNC: u64 = 26;
    pub const MINCORE: u64 = 27;
    pub const MADVISE: u64 = 28;
    pub const DUP: u64 = 32;
    pub const DUP2: u64 = 33;
    pub const FSYNC: u64 = 74;
    pub const FDATASYNC: u64 = 75;
    pub const TRUNCATE: u64 = 76;
    pub const FTRUNCATE: u64 = 77;
    pub const GETCWD: u64 = 79;
    pub const CHDIR: u64 = 80;
    pub const FCHDIR: u64 = 81;
    pub const RENAME: u64 = 82;
    pub const MKDIR: u64 = 83;
    pub const RMDIR: u64 = 84;
    pub const CREAT: u64 = 85;
    pub const LINK: u64 = 86;
    pub const UNLINK: u64 = 87;
    pub const SYMLINK: u64 = 88;
    pub const CHMOD: u64 = 90;
    pub const FCHMOD: u64 = 91;
    pub const UMASK: u64 = 95;
    pub const MLOCK: u64 = 149;
    pub const MUNLOCK: u64 = 150;
    pub const MLOCKALL: u64 = 151;
    pub const MUNLOCKALL: u64 = 152;
    pub const GETDENTS64: u64 = 217;
    pub const FADVISE64: u64 = 221;
    pub const OPENAT: u64 = 257;
    pub const MKDIRAT: u64 = 258;
    pub const UNLINKAT: u64 = 263;
    pub const RENAMEAT: u64 = 264;
    pub const LINKAT: u64 = 265;
    pub const SYMLINKAT: u64 = 266;
    pub const FCHMODAT: u64 = 268;
    pub const FACCESSAT: u64 = 269;
    pub const UTIMENSAT: u64 = 280;
    pub const DUP3: u64 = 292;
    pub const PREADV: u64 = 295;
    pub const PWRITEV: u64 = 296;
    pub const RENAMEAT2: u64 = 316;
    pub const STATX: u64 = 332;
    pub const FACCESSAT2: u64 = 439;
    pub const MLOCK2: u64 = 325;
    pub const FUTEX: u64 = 202;
    pub const SENDFILE: u64 = 40;
    pub const EXECVE: u64 = 59;
    pub const SELECT: u64 = 23;
    pub const ALARM: u64 = 37;
    pub const GETITIMER: u64 = 36;
    pub const SETITIMER: u64 = 38;
    pub const TIMES: u64 = 100;
    pub const GETRUSAGE: u64 = 98;
    pub const PSELECT6: u64 = 270;
    pub const PPOLL: u64 = 271;
    pub const EPOLL_CREATE: u64 = 213;
    pub const EPOLL_WAIT: u64 = 232;
    pub const EPOLL_CTL: u64 = 233;
    pub const EPOLL_PWAIT: u64 = 281;
    pub const EVENTFD: u64 = 284;
    pub const EVENTFD2: u64 = 290;
    pub const EPOLL_CREATE1: u64 = 291;
    pub const RT_SIGSUSPEND: u64 = 130;
    pub const RT_SIGTIMEDWAIT: u64 = 128;
    pub const PAUSE: u64 = 34;
    pub const RT_SIGPENDING: u64 = 127;
    pub const RT_SIGRETURN: u64 = 15;
    pub const PIPE: u64 = 22;
    pub const CLONE: u64 = 56;
    pub const CLONE3: u64 = 435;
    pub const MEMBARRIER: u64 = 324;
    pub const FORK: u64 = 57;
    pub const VFORK: u64 = 58;
    pub const WAIT4: u64 = 61;
    pub const WAITID: u64 = 247;
    pub const PIPE2: u64 = 293;
    pub const SOCKET: u64 = 41;
    pub const GETPEERNAME: u64 = 52;
    pub const SYSINFO: u64 = 99;
    pub const GETPGRP: u64 = 111;
    pub const SETPGID: u64 = 109;
    pub const GETPGID: u64 = 121;
    pub const GETSID: u64 = 124;
    pub const SETSID: u64 = 112;
    pub const STATFS: u64 = 137;
    pub const FSTATFS: u64 = 138;
    pub const PRCTL: u64 = 157;
    pub const GETXATTR: u64 = 191;
    pub const LGETXATTR: u64 = 192;
    pub const FGETXATTR: u64 = 193;
    pub const LISTXATTR: u64 = 194;
    pub const LLISTXATTR: u64 = 195;
    pub const FLISTXATTR: u64 = 196;
    pub const SCHED_SETAFFINITY: u64 = 203;
    pub const SCHED_GETAFFINITY: u64 = 204;
    pub const GETCPU: u64 = 309;
    pub const EXECVEAT: u64 = 322;
    pub const TIMER_CREATE: u64 = 222;
    pub const TIMER_SETTIME: u64 = 223;
    pub const TIMER_GETTIME: u64 = 224;
    pub const TIMER_GETOVERRUN: u64 = 225;
    pub const TIMER_DELETE: u64 = 226;
    pub const SIGNALFD: u64 = 282;
    pub const SIGNALFD4: u64 = 289;
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
        nr::SETRLIMIT => "setrlimit",
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
        nr::GETGROUPS => "getgroups",
        nr::GETRESUID => "getresuid",
        nr::GETRESGID => "getresgid",
        nr::GETPPID => "getppid",
        nr::ARCH_PRCTL => "arch_prctl",
        nr::GETTID => "gettid",
        nr::SET_TID_ADDRESS => "set_tid_address",
        nr::EXIT_GROUP => "exit_group",
        nr::OPEN => "open",
        nr::CLOSE => "close",
        nr::STAT => "stat",
        nr::LSTAT => "lstat",
        nr::LSEEK => "lseek",
        nr::PREAD64 => "pread64",
        nr::PWRITE64 => "pwrite64",
        nr::READV => "readv",
        nr::ACCESS => "access",
        nr::MREMAP => "mremap",
        nr::MSYNC => "msync",
        nr::MINCORE => "mincore",
        nr::MADVISE => "madvise",
        nr::DUP => "dup",
        nr::DUP2 => "dup2",
        nr::FSYNC => "fsync",
        nr::FDATASYNC => "fdatasync",
        nr::TRUNCATE => "truncate",
        nr::FTRUNCATE => "ftruncate",
        nr::GETCWD => "getcwd",
        nr::CHDIR => "chdir",
        nr::FCHDIR => "fchdir",
        nr::RENAME => "rename",
        nr::MKDIR => "mkdir",
        nr::RMDIR => "rmdir",
        nr::CREAT => "creat",
        nr::LINK => "link",
        nr::UNLINK => "unlink",
        nr::SYMLINK => "symlink",
        nr::CHMOD => "chmod",
        nr::FCHMOD => "fchmod",
        nr::UMASK => "umask",
        nr::MLOCK => "mlock",
        nr::MUNLOCK => "munlock",
        nr::MLOCKALL => "mlockall",
        nr::MUNLOCKALL => "munlockall",
        nr::GETDENTS64 => "getdents64",
        nr::FADVISE64 => "fadvise64",
        nr::OPENAT => "openat",
        nr::MKDIRAT => "mkdirat",
        nr::UNLINKAT => "unlinkat",
        nr::RENAMEAT => "renameat",
        nr::LINKAT => "linkat",
        nr::SYMLINKAT => "symlinkat",
        nr::FCHMODAT => "fchmodat",
        nr::FACCESSAT => "faccessat",
        nr::UTIMENSAT => "utimensat",
        nr::DUP3 => "dup3",
        nr::PREADV => "preadv",
        nr::PWRITEV => "pwritev",
        nr::RENAMEAT2 => "renameat2",
        nr::STATX => "statx",
        nr::FACCESSAT2 => "faccessat2",
        nr::MLOCK2 => "mlock2",
        nr::FUTEX => "futex",
        nr::SENDFILE => "sendfile",
        nr::EXECVE => "execve",
        nr::SELECT => "select",
        nr::ALARM => "alarm",
        nr::GETITIMER => "getitimer",
        nr::SETITIMER => "setitimer",
        nr::TIMES => "times",
        nr::GETRUSAGE => "getrusage",
        nr::PSELECT6 => "pselect6",
        nr::PPOLL => "ppoll",
        nr::EPOLL_CREATE => "epoll_create",
        nr::EPOLL_WAIT => "epoll_wait",
        nr::EPOLL_CTL => "epoll_ctl",
        nr::EPOLL_PWAIT => "epoll_pwait",
        nr::EVENTFD => "eventfd",
        nr::EVENTFD2 => "eventfd2",
        nr::EPOLL_CREATE1 => "epoll_create1",
        nr::RT_SIGSUSPEND => "rt_sigsuspend",
        nr::RT_SIGTIMEDWAIT => "rt_sigtimedwait",
        nr::PAUSE => "pause",
        nr::RT_SIGPENDING => "rt_sigpending",
        nr::RT_SIGRETURN => "rt_sigreturn",
        nr::PIPE => "pipe",
        nr::CLONE => "clone",
        nr::CLONE3 => "clone3",
        nr::MEMBARRIER => "membarrier",
        nr::FORK => "fork",
        nr::VFORK => "vfork",
        nr::WAIT4 => "wait4",
        nr::WAITID => "waitid",
        nr::PIPE2 => "pipe2",
        nr::SOCKET => "socket",
        nr::GETPEERNAME => "getpeername",
        nr::SYSINFO => "sysinfo",
        nr::GETPGRP => "getpgrp",
        nr::SETPGID => "setpgid",
        nr::GETPGID => "getpgid",
        nr::GETSID => "getsid",
        nr::SETSID => "setsid",
        nr::STATFS => "statfs",
        nr::FSTATFS => "fstatfs",
        nr::PRCTL => "prctl",
        nr::GETXATTR => "getxattr",
        nr::LGETXATTR => "lgetxattr",
        nr::FGETXATTR => "fgetxattr",
        nr::LISTXATTR => "listxattr",
        nr::LLISTXATTR => "llistxattr",
        nr::FLISTXATTR => "flistxattr",
        nr::SCHED_SETAFFINITY => "sched_setaffinity",
        nr::SCHED_GETAFFINITY => "sched_getaffinity",
        nr::GETCPU => "getcpu",
        nr::EXECVEAT => "execveat",
        nr::TIMER_CREATE => "timer_create",
        nr::TIMER_SETTIME => "timer_settime",
        nr::TIMER_GETTIME => "timer_gettime",
        nr::TIMER_GETOVERRUN => "timer_getoverrun",
        nr::TIMER_DELETE => "timer_delete",
        nr::SIGNALFD => "signalfd",
        nr::SIGNALFD4 => "signalfd4",
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
    /// The other processes.
    pub tasks: &'e mut crate::process::task::Tasks,
}

/// `AT_FDCWD` as a raw argument.
const AT_FDCWD: u64 = files::AT_FDCWD as u64;

fn ret(r: Result<i64, Errno>) -> Action {
    match r {
        Err(Errno::ERESTARTSYS) => Action::Block,
        r => Action::Return(r.unwrap_or_else(|e| e.to_ret())),
    }
}

/// The result of a call that set a timer: as [`ret`], telling the kernel
/// that the timers changed when it succeeded.
fn timers_changed(r: Result<i64, Errno>) -> Action {
    match r {
        Ok(v) => Action::TimersChanged(v),
        Err(e) => Action::Return(e.to_ret()),
    }
}

/// A write's result: EPIPE also sends SIGPIPE (which kills by default).
/// In line, so that every other result is [`ret`]'s test in the caller,
/// without a call.
#[inline(always)]
pub fn write_ret<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    r: Result<i64, Errno>,
) -> Action {
    match r {
        Err(Errno::EPIPE) => broken_pipe(cx),
        r => ret(r),
    }
}

/// A write to a pipe with no reader: EPIPE, and SIGPIPE sent.
#[inline(never)]
fn broken_pipe<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>) -> Action {
    match signal::send_self(cx, crate::signal::nr::SIGPIPE) {
        Action::Return(_) => Action::Return(Errno::EPIPE.to_ret()),
        other => other,
    }
}

/// sched_yield: the other processes run first. Out of line: as a constant
/// arm of [`dispatch_in_line`]'s jump table, its action would be set up
/// before the jump, for every call.
#[inline(never)]
fn sched_yield() -> Action {
    Action::Yield(0)
}

/// write(fd, buf, count) to the host's stdio on the syscall stub's short
/// path (`run::short_call`), by process `p`, `a` the call's three
/// arguments ([`files::write_stdio`]): `Some(Ok(v))`, the call's answer;
/// `Some(Err(e))`, the write done but its error asking for more than a
/// return (EPIPE's SIGPIPE: [`write_ret`] makes the call's action); None
/// (nothing done) for any other write, which the full path serves.
#[inline(always)]
pub fn write_short<M: PhysMem, H: HostIo>(
    p: &Process,
    mem: &M,
    host: &mut H,
    a: [u64; 3],
) -> Option<Result<i64, Errno>> {
    Some(match files::write_stdio(p, mem, host, a[0], a[1], a[2])? {
        Err(e @ (Errno::EPIPE | Errno::ERESTARTSYS)) => Err(e),
        r => Ok(r.unwrap_or_else(|e| e.to_ret())),
    })
}

/// read on the syscall stub's short path: a read of the host's stdio
/// into a buffer mapped as it needs (`files::read_stdio`); its result,
/// or, for an error the full path acts on (ERESTARTSYS), the error to act
/// on; None, with nothing done, for any other read.
#[inline(always)]
pub fn read_short<M: PhysMem, H: HostIo>(
    p: &Process,
    mem: &M,
    host: &mut H,
    a: [u64; 3],
) -> Option<Result<i64, Errno>> {
    Some(match files::read_stdio(p, mem, host, a[0], a[1], a[2])? {
        Err(e @ Errno::ERESTARTSYS) => Err(e),
        r => Ok(r.unwrap_or_else(|e| e.to_ret())),
    })
}

/// The action of a call's result `r` as the full path takes it.
pub fn result_action(r: Result<i64, Errno>) -> Action {
    ret(r)
}

/// Where the syscall stub's short path (`run::short_call`) sends a call,
/// read from one table ([`short_route`]) so that every call, the ones the
/// full path serves too, is sorted by one load and one jump instead of a
/// chain of comparisons of its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ShortRoute {
    /// Served by [`dispatch`] on the stub's stack (`run::full_call`).
    Full,
    /// Left to the run loop before anything is done: rt_sigreturn, which
    /// rewrites the whole frame, and sigaltstack and the fork calls
    /// (clone, clone3, fork, vfork), which read the user's stack pointer
    /// (`Process::user_sp`, which only the loop records; a fork copies the
    /// page it is in at once, see `Mm::fork_copy`).
    Loop,
    /// brk ([`brk_short`]).
    Brk,
    /// arch_prctl (`process::set_base`).
    Bases,
    /// exit_group (`run::short_exit`).
    ExitGroup,
    /// getpid: the thread group's id.
    Tgid,
    /// gettid: the thread's id.
    Pid,
    /// getppid.
    Ppid,
    /// getpgrp.
    Pgid,
    /// getuid, getgid, geteuid, getegid: all 0.
    Root,
    /// set_tid_address.
    SetTidAddress,
    /// set_robust_list.
    SetRobustList,
    /// rseq (not provided: ENOSYS).
    Rseq,
    /// prlimit64 ([`prlimit64_short`]).
    Prlimit,
    /// getrandom ([`getrandom_short`]).
    Getrandom,
    /// readlink ([`readlink_short`]; another path's as [`Self::Path`]).
    Readlink,
    /// readlinkat ([`readlink_short`]; the same).
    Readlinkat,
    /// newfstatat ([`newfstatat_short`]; a path's opens the fast call of
    /// the calls of a path, `run::full_call_path`).
    Newfstatat,
    /// access ([`access_short`]; another path's as [`Self::Path`]).
    Access,
    /// statx, getxattr, lgetxattr, access, faccessat and faccessat2:
    /// served by [`dispatch`] on the stub's stack, and open the fast call
    /// of the calls of a path (`run::full_call_path`).
    Path,
    /// close (`files::close_short`).
    Close,
    /// mprotect ([`mprotect_short`]).
    Mprotect,
    /// mmap ([`mmap_anon_short`] if anonymous, else [`mmap_short`]).
    Mmap,
    /// munmap ([`munmap_short`]).
    Munmap,
    /// write ([`write_short`]).
    Write,
    /// writev: served by [`dispatch`] on the stub's stack, and of the
    /// host's stdio opened to the VMM's fast call (`run::full_call_stdio`).
    Writev,
    /// read ([`read_short`]).
    Read,
    /// pread64 (`files::pread64_cached_short`).
    Pread,
    /// rt_sigaction ([`signal::rt_sigaction_short`]).
    Sigaction,
    /// wait4 ([`task::wait4_short`]).
    Wait4,
    /// fcntl: F_GETFD, F_SETFD and F_GETFL on the short path
    /// ([`fcntl_short`]), any other command as [`Self::Neutral`].
    Fcntl,
    /// getdents64: the read that ends a host directory's listing on the
    /// short path ([`getdents_end_short`]), any other as [`Self::Neutral`].
    Getdents,
    /// open, openat, getdents64, lseek and fstat (and the fcntls and
    /// getdents64s the short path leaves): served by [`dispatch`] on the
    /// stub's stack with the VMM's fast-call table left open, and closed
    /// after the call only where [`keeps_fast_calls`] says it changed
    /// what the table's openings rely on (`run::full_call_neutral`): `du`
    /// and `find` stat each entry of a directory between such calls.
    Neutral,
}

/// Whether system call `nr` on fd `fd` with second argument `a1`, which
/// returned `ret`, left alone everything an opening of the VMM's
/// fast-call table relies on (`run::close_fast_calls`): what fds 0 to 2
/// are and how they read, and the fd a path's calls were published for
/// (which no call here can replace: an open or a dup takes a free
/// number, and a close of it forgets it, `run::short_close`). An open or
/// a dup whose new fd is 0, 1 or 2 does not, nor does a change of fd 0
/// to 2's flags (O_NONBLOCK, O_APPEND); any call not named here does not
/// either.
pub fn keeps_fast_calls(nr: u64, fd: u64, a1: u64, ret: i64) -> bool {
    use fcntl_cmd::F_SETFL;
    let new_fd_above_stdio = !(0..=2).contains(&ret);
    match nr {
        nr::GETDENTS64 | nr::LSEEK | nr::FSTAT => true,
        nr::OPEN | nr::OPENAT => new_fd_above_stdio,
        nr::FCNTL if a1 == F_SETFL => fd > 2,
        nr::FCNTL if is_dupfd(a1) => new_fd_above_stdio,
        nr::FCNTL => true,
        _ => false,
    }
}

/// fcntl(fd, cmd, arg) on the syscall stub's short path (`run::short_call`)
/// by process `p`, as [`fsmeta::fcntl`] serves it, for the commands that
/// only read or set a flag of the fd or its description's: F_GETFD,
/// F_SETFD and F_GETFL (`du` and `find` ask two of them of each directory
/// they open). None, with nothing done, for any other command or a bad fd
/// (the full path's EBADF).
pub fn fcntl_short(p: &mut Process, fd: u64, cmd: u64, arg: u64) -> Option<i64> {
    use fcntl_cmd::{F_GETFD, F_GETFL, F_SETFD};
    match cmd {
        F_GETFD => Some(i64::from(p.fds.get(fd).ok()?.cloexec)),
        F_SETFD => {
            p.fds.get_mut(fd).ok()?.cloexec = arg & 1 != 0;
            Some(0)
        }
        F_GETFL => Some(i64::from(p.fds.get(fd).ok()?.file.try_borrow().ok()?.flags)),
        _ => None,
    }
}

/// getdents64 of fd `fd` on the syscall stub's short path by process `p`:
/// 0 for a host directory whose listing the host said is at its end
/// (`OpenFile::dir_end`), as [`fsmeta::getdents64`] answers it, whatever
/// the buffer; None, with nothing done, for any other read (a bad fd, a
/// file, a listing not at its end), which the full path serves.
pub fn getdents_end_short(p: &Process, fd: u64) -> Option<i64> {
    let b = p.fds.get(fd).ok()?.file.try_borrow().ok()?;
    match (&b.node, b.dir_end) {
        (crate::fs::file::Node::Host { .. }, true) => Some(0),
        _ => None,
    }
}

/// Whether call `nr` with arguments `a1` and `a2` (the second and third)
/// that returned `ret` may have made the new fd `ret` a directory's: an
/// open or openat with O_DIRECTORY (as `du`, `find` and `ls` open the
/// directories they read), or fcntl's F_DUPFD or F_DUPFD_CLOEXEC, that
/// succeeded.
pub fn may_make_dir_fd(nr: u64, a1: u64, a2: u64, ret: i64) -> bool {
    let directory = u64::from(crate::fs::file::o::DIRECTORY);
    ret >= 0
        && match nr {
            nr::OPEN => a1 & directory != 0,
            nr::OPENAT => a2 & directory != 0,
            nr::FCNTL => is_dupfd(a1),
            _ => false,
        }
}

/// Whether fcntl command `cmd` is F_DUPFD or F_DUPFD_CLOEXEC.
fn is_dupfd(cmd: u64) -> bool {
    matches!(cmd, fcntl_cmd::F_DUPFD | fcntl_cmd::F_DUPFD_CLOEXEC)
}

/// fcntl's commands other than the locks (Linux's numbers), for
/// [`fsmeta::fcntl`], its short path and the fast-call table's check.
mod fcntl_cmd {
    pub const F_DUPFD: u64 = 0;
    pub const F_GETFD: u64 = 1;
    pub const F_SETFD: u64 = 2;
    pub const F_GETFL: u64 = 3;
    pub const F_SETFL: u64 = 4;
    pub const F_DUPFD_CLOEXEC: u64 = 1030;
}

/// The calls [`short_route`]'s table covers; every call above is
/// [`ShortRoute::Full`].
const SHORT_ROUTES_LEN: usize = 512;

/// [`ShortRoute`] of each call number below [`SHORT_ROUTES_LEN`].
static SHORT_ROUTES: [ShortRoute; SHORT_ROUTES_LEN] = {
    let mut t = [ShortRoute::Full; SHORT_ROUTES_LEN];
    t[nr::RT_SIGRETURN as usize] = ShortRoute::Loop;
    t[nr::SIGALTSTACK as usize] = ShortRoute::Loop;
    t[nr::CLONE as usize] = ShortRoute::Loop;
    t[nr::FORK as usize] = ShortRoute::Loop;
    t[nr::VFORK as usize] = ShortRoute::Loop;
    t[nr::CLONE3 as usize] = ShortRoute::Loop;
    t[nr::BRK as usize] = ShortRoute::Brk;
    t[nr::ARCH_PRCTL as usize] = ShortRoute::Bases;
    t[nr::EXIT_GROUP as usize] = ShortRoute::ExitGroup;
    t[nr::GETPID as usize] = ShortRoute::Tgid;
    t[nr::GETTID as usize] = ShortRoute::Pid;
    t[nr::GETPPID as usize] = ShortRoute::Ppid;
    t[nr::GETPGRP as usize] = ShortRoute::Pgid;
    t[nr::GETUID as usize] = ShortRoute::Root;
    t[nr::GETGID as usize] = ShortRoute::Root;
    t[nr::GETEUID as usize] = ShortRoute::Root;
    t[nr::GETEGID as usize] = ShortRoute::Root;
    t[nr::SET_TID_ADDRESS as usize] = ShortRoute::SetTidAddress;
    t[nr::SET_ROBUST_LIST as usize] = ShortRoute::SetRobustList;
    t[nr::RSEQ as usize] = ShortRoute::Rseq;
    t[nr::PRLIMIT64 as usize] = ShortRoute::Prlimit;
    t[nr::GETRANDOM as usize] = ShortRoute::Getrandom;
    t[nr::READLINK as usize] = ShortRoute::Readlink;
    t[nr::READLINKAT as usize] = ShortRoute::Readlinkat;
    t[nr::NEWFSTATAT as usize] = ShortRoute::Newfstatat;
    t[nr::STATX as usize] = ShortRoute::Path;
    t[nr::GETXATTR as usize] = ShortRoute::Path;
    t[nr::LGETXATTR as usize] = ShortRoute::Path;
    t[nr::ACCESS as usize] = ShortRoute::Access;
    t[nr::FACCESSAT as usize] = ShortRoute::Path;
    t[nr::FACCESSAT2 as usize] = ShortRoute::Path;
    t[nr::CLOSE as usize] = ShortRoute::Close;
    t[nr::MPROTECT as usize] = ShortRoute::Mprotect;
    t[nr::MMAP as usize] = ShortRoute::Mmap;
    t[nr::MUNMAP as usize] = ShortRoute::Munmap;
    t[nr::WRITE as usize] = ShortRoute::Write;
    t[nr::WRITEV as usize] = ShortRoute::Writev;
    t[nr::READ as usize] = ShortRoute::Read;
    t[nr::PREAD64 as usize] = ShortRoute::Pread;
    t[nr::RT_SIGACTION as usize] = ShortRoute::Sigaction;
    t[nr::WAIT4 as usize] = ShortRoute::Wait4;
    t[nr::OPEN as usize] = ShortRoute::Neutral;
    t[nr::OPENAT as usize] = ShortRoute::Neutral;
    t[nr::GETDENTS64 as usize] = ShortRoute::Getdents;
    t[nr::LSEEK as usize] = ShortRoute::Neutral;
    t[nr::FSTAT as usize] = ShortRoute::Neutral;
    t[nr::FCNTL as usize] = ShortRoute::Fcntl;
    t
};

/// Where the syscall stub's short path sends call `n`.
#[inline(always)]
pub fn short_route(n: u64) -> ShortRoute {
    match SHORT_ROUTES.get(n as usize) {
        Some(&r) => r,
        None => ShortRoute::Full,
    }
}

impl ShortRoute {
    /// The answer of a system call that only reads the caller's identity
    /// (getpid, gettid, getppid, getpgrp, and the ids, all 0), by the
    /// process `p`: no argument, no side effect, no way to block or fail.
    /// The kernel answers these on its short path, before it builds the
    /// context [`dispatch`] needs (which answers them the same way);
    /// `None` for every other route.
    #[inline(always)]
    pub fn identity(self, p: &Process) -> Option<i64> {
        match self {
            ShortRoute::Tgid => Some(p.tgid as i64),
            ShortRoute::Pid => Some(p.pid as i64),
            ShortRoute::Ppid => Some(p.ppid as i64),
            ShortRoute::Pgid => Some(p.pgid as i64),
            ShortRoute::Root => Some(0),
            _ => None,
        }
    }

    /// The calls that only record something about the caller `p` itself,
    /// on the syscall stub's short path, which every C program's start-up
    /// makes: set_tid_address and set_robust_list (as
    /// [`process::set_tid_address`] and [`process::set_robust_list`]
    /// serve them), and rseq, which is not provided (ENOSYS, as on the
    /// full path: glibc then goes on without it). `a` holds the first two
    /// arguments. The result, or None for every other route.
    #[inline(always)]
    pub fn own_state(self, p: &mut Process, a: [u64; 2]) -> Option<i64> {
        match self {
            ShortRoute::SetTidAddress => {
                p.clear_child_tid = a[0];
                Some(p.pid as i64)
            }
            ShortRoute::SetRobustList => Some(match a[1] {
                process::ROBUST_LIST_HEAD_SIZE => {
                    p.robust_list = a[0];
                    0
                }
                _ => Errno::EINVAL.to_ret(),
            }),
            ShortRoute::Rseq => Some(Errno::ENOSYS.to_ret()),
            _ => None,
        }
    }
}

/// [`ShortRoute::identity`] of call `n`.
pub fn identity(p: &Process, n: u64) -> Option<i64> {
    short_route(n).identity(p)
}

/// brk(new) on the syscall stub's short path (see `run::short_call`),
/// which serves the identity calls and this: a brk that does not lower
/// the break within the heap ([`crate::mm::space::Mm::brk_up`]; `ram_pages` is the RAM its
/// overcommit check uses), unless the VMA changes are journaled for the
/// trace (the full path hands them over on its way back to user mode).
/// The new break, or None (and no change) for the full path to serve it.
#[inline]
pub fn brk_short(p: &mut Process, new: u64, ram_pages: u64) -> Option<i64> {
    if p.mm.vmas.journaling() {
        return None;
    }
    p.mm.brk_up(new, ram_pages).map(|b| b as i64)
}

/// Serve system call `n` with arguments `a` (rdi, rsi, rdx, r10, r8, r9).
/// Out of line, so that the run loop's callers keep their own frames
/// small.
#[inline(never)]
pub fn dispatch<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    n: u64,
    a: &[u64; 6],
) -> Action {
    dispatch_in_line(cx, n, a)
}

/// [`dispatch`] in line in its caller: the syscall stub's full path
/// (`run::full_call`), where the handler's result goes straight to the
/// return's test, without a frame and a conversion of its own.
#[inline(always)]
pub fn dispatch_in_line<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    n: u64,
    a: &[u64; 6],
) -> Action {
    match n {
        nr::READ => ret(files::read(cx, a[0], a[1], a[2])),
        nr::WRITE => {
            let r = files::write(cx, a[0], a[1], a[2]);
            write_ret(cx, r)
        }
        nr::WRITEV => {
            let r = files::writev(cx, a[0], a[1], a[2], None);
            write_ret(cx, r)
        }
        nr::READV => ret(files::readv(cx, a[0], a[1], a[2], None)),
        nr::PREADV => ret(files::readv(cx, a[0], a[1], a[2], Some(a[3]))),
        nr::PWRITEV => ret(files::writev(cx, a[0], a[1], a[2], Some(a[3]))),
        nr::PREAD64 => ret(files::pread64(cx, a[0], a[1], a[2], a[3])),
        nr::PWRITE64 => ret(files::pwrite64(cx, a[0], a[1], a[2], a[3])),
        nr::OPEN => ret(files::openat(cx, AT_FDCWD, a[0], a[1], a[2])),
        nr::CREAT => ret(files::openat(cx, AT_FDCWD, a[0], 0o1101, a[1])),
        nr::OPENAT => ret(files::openat(cx, a[0], a[1], a[2], a[3])),
        nr::CLOSE => ret(files::close(cx, a[0])),
        nr::LSEEK => ret(files::lseek(cx, a[0], a[1], a[2])),
        nr::STAT => ret(fsmeta::newfstatat(cx, AT_FDCWD, a[0], a[1], 0)),
        nr::LSTAT => ret(fsmeta::newfstatat(cx, AT_FDCWD, a[0], a[1], 0x100)),
        nr::STATX => ret(fsmeta::statx(cx, a[0], a[1], a[2], a[3], a[4])),
        nr::ACCESS => ret(fsmeta::faccessat(cx, AT_FDCWD, a[0], a[1], 0)),
        nr::FACCESSAT => ret(fsmeta::faccessat(cx, a[0], a[1], a[2], 0)),
        nr::FACCESSAT2 => ret(fsmeta::faccessat(cx, a[0], a[1], a[2], a[3])),
        nr::GETDENTS64 => ret(fsmeta::getdents64(cx, a[0], a[1], a[2])),
        nr::GETCWD => ret(fsmeta::getcwd(cx, a[0], a[1])),
        nr::CHDIR => ret(fsmeta::chdir(cx, a[0])),
        nr::FCHDIR => ret(fsmeta::fchdir(cx, a[0])),
        nr::DUP => ret(fsmeta::dup(cx, a[0])),
        nr::DUP2 => ret(fsmeta::dup3(cx, a[0], a[1], 0, true)),
        nr::DUP3 => ret(fsmeta::dup3(cx, a[0], a[1], a[2], false)),
        nr::UMASK => Action::Return(fsmeta::umask(cx, a[0])),
        nr::FSYNC => ret(fsmeta::fsync(cx, a[0], false)),
        nr::FDATASYNC => ret(fsmeta::fsync(cx, a[0], true)),
        nr::FADVISE64 => ret(cx.p.fds.get(a[0]).map(|_| 0)),
        nr::FTRUNCATE => ret(fsmeta::ftruncate(cx, a[0], a[1])),
        nr::TRUNCATE => ret(fsmeta::truncate(cx, a[0], a[1])),
        nr::UNLINK => ret(fsmeta::unlinkat(cx, AT_FDCWD, a[0], 0)),
        nr::RMDIR => ret(fsmeta::unlinkat(cx, AT_FDCWD, a[0], 0x200)),
        nr::UNLINKAT => ret(fsmeta::unlinkat(cx, a[0], a[1], a[2])),
        nr::MKDIR => ret(fsmeta::mkdirat(cx, AT_FDCWD, a[0], a[1])),
        nr::MKDIRAT => ret(fsmeta::mkdirat(cx, a[0], a[1], a[2])),
        nr::RENAME => ret(fsmeta::renameat2(cx, AT_FDCWD, a[0], AT_FDCWD, a[1], 0)),
        nr::RENAMEAT => ret(fsmeta::renameat2(cx, a[0], a[1], a[2], a[3], 0)),
        nr::RENAMEAT2 => ret(fsmeta::renameat2(cx, a[0], a[1], a[2], a[3], a[4])),
        nr::SYMLINK => ret(fsmeta::symlinkat(cx, a[0], AT_FDCWD, a[1])),
        nr::SYMLINKAT => ret(fsmeta::symlinkat(cx, a[0], a[1], a[2])),
        nr::LINK => ret(fsmeta::linkat(cx, AT_FDCWD, a[0], AT_FDCWD, a[1], 0)),
        nr::LINKAT => ret(fsmeta::linkat(cx, a[0], a[1], a[2], a[3], a[4])),
        nr::CHMOD => ret(fsmeta::fchmodat(cx, AT_FDCWD, a[0], a[1], 0)),
        nr::FCHMOD => ret(fsmeta::fchmod(cx, a[0], a[1])),
        nr::FCHMODAT => ret(fsmeta::fchmodat(cx, a[0], a[1], a[2], 0)),
        nr::UTIMENSAT => ret(fsmeta::utimensat(cx, a[0], a[1], a[2], a[3])),
        nr::MREMAP => ret(memory::mremap(cx, *a)),
        nr::MSYNC => ret(memory::msync(cx, a[0], a[1], a[2])),
        nr::MINCORE => ret(memory::mincore(cx, a[0], a[1], a[2])),
        nr::MADVISE => ret(memory::madvise(cx, a[0], a[1], a[2])),
        nr::MLOCK | nr::MUNLOCK | nr::MLOCK2 => ret(memory::mlock(cx, a[0], a[1])),
        nr::MLOCKALL | nr::MUNLOCKALL => Action::Return(0),
        nr::FUTEX => ret(process::futex(cx, *a)),
        nr::SENDFILE => {
            let r = files::sendfile(cx, a[0], a[1], a[2], a[3]);
            write_ret(cx, r)
        }
        nr::SOCKET => Action::Return(Errno::EAFNOSUPPORT.to_ret()),
        nr::GETPEERNAME => ret(cx.p.fds.get(a[0]).and(Err(Errno::ENOTSOCK))),
        nr::SYSINFO => ret(info::sysinfo(cx, a[0])),
        nr::GETPGRP => Action::Return(identity(cx.p, n).unwrap_or(ENOSYS)),
        nr::GETPGID => ret(task::getpgid(cx, a[0])),
        nr::GETSID => Action::Return(cx.p.sid as i64),
        nr::SETPGID => ret(task::setpgid(cx, a[0], a[1])),
        nr::SETSID => ret(task::setsid(cx)),
        nr::PIPE => ret(files::pipe2(cx, a[0], 0)),
        nr::PIPE2 => ret(files::pipe2(cx, a[0], a[1])),
        nr::FORK => task::clone(cx, 17, 0, 0, 0, 0),
        nr::VFORK => task::clone(cx, 0x4000 | 0x100 | 17, 0, 0, 0, 0),
        nr::CLONE => task::clone(cx, a[0], a[1], a[2], a[3], a[4]),
        nr::CLONE3 => task::clone3(cx, a[0], a[1]),
        nr::MEMBARRIER => ret(process::membarrier(
            a[0],
            a[1],
            &mut cx.p.membarrier_registered,
        )),
        nr::WAIT4 => match task::wait4(cx, a[0], a[1], a[2], a[3]) {
            // WNOHANG with children still running: let them run.
            Ok(0) => Action::Yield(0),
            r => ret(r),
        },
        nr::WAITID => ret(task::waitid(cx, a[0], a[1], a[2], a[3])),
        nr::STATFS => ret(fsmeta::statfs(cx, 0, a[0], a[1])),
        nr::FSTATFS => ret(fsmeta::statfs(cx, a[0], 0, a[1])),
        nr::PRCTL => ret(info::prctl(cx, a[0], a[1])),
        nr::GETXATTR => ret(fsmeta::xattr(cx, false, a[0], true, false)),
        nr::LGETXATTR => ret(fsmeta::xattr(cx, false, a[0], false, false)),
        nr::FGETXATTR => ret(fsmeta::xattr(cx, true, a[0], true, false)),
        nr::LISTXATTR => ret(fsmeta::xattr(cx, false, a[0], true, true)),
        nr::LLISTXATTR => ret(fsmeta::xattr(cx, false, a[0], false, true)),
        nr::FLISTXATTR => ret(fsmeta::xattr(cx, true, a[0], true, true)),
        nr::SCHED_SETAFFINITY => Action::Return(0),
        nr::SCHED_GETAFFINITY => ret(info::sched_getaffinity(cx, a[0], a[1], a[2])),
        nr::GETCPU => ret(process::getcpu(cx, a[0], a[1])),
        nr::EXECVE | nr::EXECVEAT => {
            let (dirfd, path, argv, envp, flags) = match n {
                nr::EXECVE => (AT_FDCWD, a[0], a[1], a[2], 0),
                _ => (a[0], a[1], a[2], a[3], a[4]),
            };
            let layout = cx.p.layout;
            match exec::execveat(cx, dirfd, path, argv, envp, flags, layout) {
                Ok(plan) => Action::Exec(plan),
                Err(e) => Action::Return(e.errno.to_ret()),
            }
        }
        nr::MMAP => ret(memory::mmap(cx, *a)),
        nr::MPROTECT => ret(memory::mprotect(cx, a[0], a[1], a[2])),
        nr::MUNMAP => ret(memory::munmap(cx, a[0], a[1])),
        nr::BRK => Action::Return(memory::brk(cx, a[0])),
        nr::EXIT => Action::ExitThread(a[0] & 0xff),
        nr::EXIT_GROUP => Action::Exit(a[0] & 0xff),
        nr::GETPID
        | nr::GETTID
        | nr::GETPPID
        | nr::GETUID
        | nr::GETGID
        | nr::GETEUID
        | nr::GETEGID => Action::Return(identity(cx.p, n).unwrap_or(ENOSYS)),
        nr::SET_TID_ADDRESS => Action::Return(process::set_tid_address(cx, a[0])),
        nr::ARCH_PRCTL => ret(process::arch_prctl(cx, a[0], a[1])),
        nr::UNAME => ret(info::uname(cx, a[0])),
        nr::GETGROUPS => ret(info::getgroups(a[0])),
        nr::GETRESUID | nr::GETRESGID => ret(info::getres_ids(cx, [a[0], a[1], a[2]])),
        nr::POLL => ret(misc::poll(cx, a[0], a[1], a[2] as i32 as i64)),
        nr::EPOLL_CREATE => ret(if (a[0] as i32) <= 0 {
            Err(Errno::EINVAL)
        } else {
            files::epoll_create1(cx, 0)
        }),
        nr::EPOLL_CREATE1 => ret(files::epoll_create1(cx, a[0])),
        nr::EPOLL_CTL => ret(files::epoll_ctl(cx, a[0], a[1], a[2], a[3])),
        nr::EPOLL_WAIT | nr::EPOLL_PWAIT => {
            ret(files::epoll_wait(cx, a[0], a[1], a[2], a[3] as i32 as i64))
        }
        nr::EVENTFD => ret(files::eventfd2(cx, a[0], 0)),
        nr::ALARM => Action::TimersChanged(time::alarm(cx, a[0] & 0xffff_ffff)),
        nr::GETITIMER => ret(time::getitimer(cx, a[0], a[1])),
        nr::SETITIMER => timers_changed(time::setitimer(cx, a[0], a[1], a[2])),
        nr::TIMER_CREATE => ret(timer::timer_create(cx, a[0], a[1], a[2])),
        nr::TIMER_SETTIME => timers_changed(timer::timer_settime(cx, a[0], a[1], a[2], a[3])),
        nr::TIMER_GETTIME => ret(timer::timer_gettime(cx, a[0], a[1])),
        nr::TIMER_GETOVERRUN => ret(timer::timer_getoverrun(cx, a[0])),
        nr::TIMER_DELETE => ret(timer::timer_delete(cx, a[0])),
        nr::SIGNALFD => ret(signalfd::signalfd4(cx, a[0], a[1], a[2], 0)),
        nr::SIGNALFD4 => ret(signalfd::signalfd4(cx, a[0], a[1], a[2], a[3])),
        nr::TIMES => ret(time::times(cx, a[0])),
        nr::GETRUSAGE => ret(time::getrusage(cx, a[0], a[1])),
        nr::SELECT => ret(misc::timeout_ms(cx, a[4], true)
            .and_then(|t| misc::select(cx, a[0], [a[1], a[2], a[3]], t))),
        nr::PSELECT6 => ret(misc::timeout_ms(cx, a[4], false)
            .and_then(|t| misc::select(cx, a[0], [a[1], a[2], a[3]], t))),
        nr::PPOLL => {
            ret(misc::timeout_ms(cx, a[2], false).and_then(|t| misc::poll(cx, a[0], a[1], t)))
        }
        nr::EVENTFD2 => ret(files::eventfd2(cx, a[0], a[1])),
        nr::FSTAT => ret(fsmeta::fstat(cx, a[0], a[1])),
        nr::NEWFSTATAT => ret(fsmeta::newfstatat(cx, a[0], a[1], a[2], a[3])),
        nr::IOCTL => ret(misc::ioctl(cx, a[0], a[1], a[2])),
        nr::FCNTL => ret(fsmeta::fcntl(cx, a[0], a[1], a[2])),
        nr::SCHED_YIELD => sched_yield(),
        nr::RT_SIGSUSPEND => ret(signal::rt_sigsuspend(cx, a[0], a[1])),
        nr::RT_SIGTIMEDWAIT => ret(signal::rt_sigtimedwait(cx, a[0], a[1], a[2], a[3])),
        nr::PAUSE => ret(signal::pause(cx)),
        nr::RT_SIGPENDING => ret(signal::rt_sigpending(cx, a[0], a[1])),
        nr::READLINK => ret(fsmeta::readlinkat(cx, AT_FDCWD, a[0], a[1], a[2])),
        nr::READLINKAT => ret(fsmeta::readlinkat(cx, a[0], a[1], a[2], a[3])),
        nr::GETRLIMIT => ret(misc::prlimit64(cx, 0, a[0], 0, a[1])),
        nr::SETRLIMIT => ret(misc::prlimit64(cx, 0, a[0], a[1], 0)),
        nr::PRLIMIT64 => ret(misc::prlimit64(cx, a[0], a[1], a[2], a[3])),
        nr::GETRANDOM => ret(misc::getrandom(cx, a[0], a[1], a[2])),
        nr::SET_ROBUST_LIST => ret(process::set_robust_list(cx, a[0], a[1])),
        nr::RT_SIGACTION => ret(signal::rt_sigaction(cx, a[0], a[1], a[2], a[3])),
        nr::RT_SIGPROCMASK => ret(signal::rt_sigprocmask(cx, a[0], a[1], a[2], a[3])),
        nr::SIGALTSTACK => ret(signal::sigaltstack(cx, a[0], a[1])),
        nr::KILL => signal::kill(cx, a[0], a[1]),
        nr::TKILL => signal::tkill(cx, a[0], a[1]),
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

/// The legacy vsyscall page (0xffffffffff600000), emulated as Linux's
/// `vsyscall=xonly` does: an instruction fetch at one of its three entry
/// points is the system call it stands for, and returns to the caller.
pub mod vsyscall {
    /// The page's address.
    pub const PAGE: u64 = 0xffff_ffff_ff60_0000;

    /// The system call an instruction fetch at `ip` (faulting at `addr`
    /// with `error`) stands for: gettimeofday, time or getcpu.
    pub fn call_at(addr: u64, ip: u64, error: u64) -> Option<u64> {
        use crate::mm::fault::pf;
        if addr != ip || error & (pf::USER | pf::INSTR) != (pf::USER | pf::INSTR) {
            return None;
        }
        match addr.checked_sub(PAGE)? {
            0x000 => Some(super::nr::GETTIMEOFDAY),
            0x400 => Some(super::nr::TIME),
            0x800 => Some(super::nr::GETCPU),
            _ => None,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::mm::fault::pf;

        #[test]
        fn only_fetches_of_the_three_entry_points_are_calls() {
            let ue = pf::USER | pf::INSTR;
            assert_eq!(call_at(PAGE, PAGE, ue), Some(96));
            assert_eq!(call_at(PAGE + 0x400, PAGE + 0x400, ue), Some(201));
            assert_eq!(call_at(PAGE + 0x800, PAGE + 0x800, ue | pf::P), Some(309));
            assert_eq!(call_at(PAGE + 0x10, PAGE + 0x10, ue), None);
            assert_eq!(call_at(PAGE, 0x401000, pf::USER), None, "a data read");
            assert_eq!(call_at(PAGE, PAGE, pf::INSTR), None, "from the kernel");
        }
    }
}

/// The process is exiting: write shared file mappings back and release
/// every open file.
pub fn exit_files<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>) {
    memory::writeback_all(cx);
    for f in cx.p.fds.take_all() {
        files::release(cx, f);
    }
    for f in core::mem::take(&mut cx.p.mapped_files) {
        files::release(cx, f);
    }
}

#[cfg(test)]
mod tests;
