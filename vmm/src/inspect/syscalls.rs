//! Linux x86-64 system-call names, how strace prints their arguments and
//! results, and errno names with their `strerror` texts.
//!
//! The table covers the calls static programs commonly make (and those the
//! guest kernel serves); any other number prints as `syscall_NNN` with six
//! hex arguments, as strace does for calls it does not know.

/// How one argument is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A file descriptor or other `int`, in decimal (signed 32-bit).
    Int,
    /// A size or count, in decimal (unsigned).
    Size,
    /// An offset, in decimal (signed 64-bit).
    Off,
    /// A pointer: `NULL` or hex.
    Ptr,
    /// A number strace shows in hex (flags it cannot decode here).
    Hex,
    /// A NUL-terminated string (a path).
    Str,
    /// A buffer the call reads, its length in argument `n`.
    BufIn(u8),
    /// A buffer the call fills, its length the call's result.
    BufOut,
    /// `PROT_*` flags.
    Prot,
    /// `MAP_*` flags.
    MapFlags,
    /// `O_*` flags.
    OpenFlags,
    /// A file mode, in octal.
    Mode,
    /// `AT_FDCWD` or a directory fd.
    DirFd,
    /// A signal number: `SIGSEGV`.
    Signal,
    /// An `ARCH_*` code of `arch_prctl`.
    ArchCode,
    /// A clock id: `CLOCK_MONOTONIC`.
    Clock,
    /// A resource of `prlimit64`/`getrlimit`: `RLIMIT_STACK`.
    Resource,
    /// `AT_*` flags of the `*at` calls.
    AtFlags,
    /// `GRND_*` flags of `getrandom`.
    GrndFlags,
    /// `SIG_BLOCK`, `SIG_UNBLOCK` or `SIG_SETMASK`.
    SigHow,
    /// An `F_*` command of `fcntl`.
    FcntlCmd,
    /// An `ioctl` request: `TCGETS`.
    IoctlReq,
}

/// How a result is printed (errors are always `-1 ENAME (text)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    /// Decimal.
    Int,
    /// Hex (an address).
    Hex,
    /// The call does not return (`= ?`).
    None,
}

/// A known system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syscall {
    /// Linux x86-64 number.
    pub nr: u32,
    /// Its name.
    pub name: &'static str,
    /// Its arguments.
    pub args: &'static [Arg],
    /// Its result.
    pub ret: Ret,
}

const fn sc(nr: u32, name: &'static str, args: &'static [Arg], ret: Ret) -> Syscall {
    Syscall {
        nr,
        name,
        args,
        ret,
    }
}

use Arg::*;

/// The known calls, by number.
pub const SYSCALLS: &[Syscall] = &[
    sc(0, "read", &[Int, BufOut, Size], Ret::Int),
    sc(1, "write", &[Int, BufIn(2), Size], Ret::Int),
    sc(2, "open", &[Str, OpenFlags, Mode], Ret::Int),
    sc(3, "close", &[Int], Ret::Int),
    sc(4, "stat", &[Str, Ptr], Ret::Int),
    sc(5, "fstat", &[Int, Ptr], Ret::Int),
    sc(6, "lstat", &[Str, Ptr], Ret::Int),
    sc(7, "poll", &[Ptr, Size, Int], Ret::Int),
    sc(8, "lseek", &[Int, Off, Int], Ret::Int),
    sc(9, "mmap", &[Ptr, Size, Prot, MapFlags, Int, Hex], Ret::Hex),
    sc(10, "mprotect", &[Ptr, Size, Prot], Ret::Int),
    sc(11, "munmap", &[Ptr, Size], Ret::Int),
    sc(12, "brk", &[Ptr], Ret::Hex),
    sc(13, "rt_sigaction", &[Signal, Ptr, Ptr, Size], Ret::Int),
    sc(14, "rt_sigprocmask", &[SigHow, Ptr, Ptr, Size], Ret::Int),
    sc(16, "ioctl", &[Int, IoctlReq, Ptr], Ret::Int),
    sc(17, "pread64", &[Int, BufOut, Size, Off], Ret::Int),
    sc(18, "pwrite64", &[Int, BufIn(2), Size, Off], Ret::Int),
    sc(19, "readv", &[Int, Ptr, Int], Ret::Int),
    sc(20, "writev", &[Int, Ptr, Int], Ret::Int),
    sc(21, "access", &[Str, Int], Ret::Int),
    sc(24, "sched_yield", &[], Ret::Int),
    sc(25, "mremap", &[Ptr, Size, Size, Hex, Ptr], Ret::Hex),
    sc(26, "msync", &[Ptr, Size, Hex], Ret::Int),
    sc(27, "mincore", &[Ptr, Size, Ptr], Ret::Int),
    sc(28, "madvise", &[Ptr, Size, Int], Ret::Int),
    sc(32, "dup", &[Int], Ret::Int),
    sc(33, "dup2", &[Int, Int], Ret::Int),
    sc(34, "pause", &[], Ret::Int),
    sc(35, "nanosleep", &[Ptr, Ptr], Ret::Int),
    sc(39, "getpid", &[], Ret::Int),
    sc(56, "clone", &[Hex, Ptr, Ptr, Ptr, Hex], Ret::Int),
    sc(57, "fork", &[], Ret::Int),
    sc(59, "execve", &[Str, Ptr, Ptr], Ret::Int),
    sc(60, "exit", &[Int], Ret::None),
    sc(61, "wait4", &[Int, Ptr, Hex, Ptr], Ret::Int),
    sc(62, "kill", &[Int, Signal], Ret::Int),
    sc(63, "uname", &[Ptr], Ret::Int),
    sc(72, "fcntl", &[Int, FcntlCmd, Hex], Ret::Int),
    sc(74, "fsync", &[Int], Ret::Int),
    sc(75, "fdatasync", &[Int], Ret::Int),
    sc(76, "truncate", &[Str, Off], Ret::Int),
    sc(77, "ftruncate", &[Int, Off], Ret::Int),
    sc(79, "getcwd", &[Ptr, Size], Ret::Int),
    sc(80, "chdir", &[Str], Ret::Int),
    sc(81, "fchdir", &[Int], Ret::Int),
    sc(82, "rename", &[Str, Str], Ret::Int),
    sc(83, "mkdir", &[Str, Mode], Ret::Int),
    sc(84, "rmdir", &[Str], Ret::Int),
    sc(85, "creat", &[Str, Mode], Ret::Int),
    sc(86, "link", &[Str, Str], Ret::Int),
    sc(87, "unlink", &[Str], Ret::Int),
    sc(88, "symlink", &[Str, Str], Ret::Int),
    sc(89, "readlink", &[Str, BufOut, Size], Ret::Int),
    sc(90, "chmod", &[Str, Mode], Ret::Int),
    sc(91, "fchmod", &[Int, Mode], Ret::Int),
    sc(95, "umask", &[Mode], Ret::Int),
    sc(96, "gettimeofday", &[Ptr, Ptr], Ret::Int),
    sc(97, "getrlimit", &[Resource, Ptr], Ret::Int),
    sc(102, "getuid", &[], Ret::Int),
    sc(104, "getgid", &[], Ret::Int),
    sc(107, "geteuid", &[], Ret::Int),
    sc(108, "getegid", &[], Ret::Int),
    sc(110, "getppid", &[], Ret::Int),
    sc(127, "rt_sigpending", &[Ptr, Size], Ret::Int),
    sc(128, "rt_sigtimedwait", &[Ptr, Ptr, Ptr, Size], Ret::Int),
    sc(130, "rt_sigsuspend", &[Ptr, Size], Ret::Int),
    sc(131, "sigaltstack", &[Ptr, Ptr], Ret::Int),
    sc(149, "mlock", &[Ptr, Size], Ret::Int),
    sc(150, "munlock", &[Ptr, Size], Ret::Int),
    sc(158, "arch_prctl", &[ArchCode, Hex], Ret::Int),
    sc(186, "gettid", &[], Ret::Int),
    sc(200, "tkill", &[Int, Signal], Ret::Int),
    sc(201, "time", &[Ptr], Ret::Int),
    sc(202, "futex", &[Ptr, Int, Int, Ptr, Ptr, Int], Ret::Int),
    sc(217, "getdents64", &[Int, Ptr, Size], Ret::Int),
    sc(218, "set_tid_address", &[Ptr], Ret::Int),
    sc(221, "fadvise64", &[Int, Off, Size, Int], Ret::Int),
    sc(222, "timer_create", &[Clock, Ptr, Ptr], Ret::Int),
    sc(223, "timer_settime", &[Int, Int, Ptr, Ptr], Ret::Int),
    sc(224, "timer_gettime", &[Int, Ptr], Ret::Int),
    sc(225, "timer_getoverrun", &[Int], Ret::Int),
    sc(226, "timer_delete", &[Int], Ret::Int),
    sc(228, "clock_gettime", &[Clock, Ptr], Ret::Int),
    sc(229, "clock_getres", &[Clock, Ptr], Ret::Int),
    sc(230, "clock_nanosleep", &[Clock, Int, Ptr, Ptr], Ret::Int),
    sc(231, "exit_group", &[Int], Ret::None),
    sc(234, "tgkill", &[Int, Int, Signal], Ret::Int),
    sc(257, "openat", &[DirFd, Str, OpenFlags, Mode], Ret::Int),
    sc(258, "mkdirat", &[DirFd, Str, Mode], Ret::Int),
    sc(262, "newfstatat", &[DirFd, Str, Ptr, AtFlags], Ret::Int),
    sc(263, "unlinkat", &[DirFd, Str, AtFlags], Ret::Int),
    sc(264, "renameat", &[DirFd, Str, DirFd, Str], Ret::Int),
    sc(265, "linkat", &[DirFd, Str, DirFd, Str, AtFlags], Ret::Int),
    sc(266, "symlinkat", &[Str, DirFd, Str], Ret::Int),
    sc(267, "readlinkat", &[DirFd, Str, BufOut, Size], Ret::Int),
    sc(268, "fchmodat", &[DirFd, Str, Mode], Ret::Int),
    sc(269, "faccessat", &[DirFd, Str, Int], Ret::Int),
    sc(273, "set_robust_list", &[Ptr, Size], Ret::Int),
    sc(280, "utimensat", &[DirFd, Str, Ptr, AtFlags], Ret::Int),
    sc(282, "signalfd", &[Int, Ptr, Size], Ret::Int),
    sc(289, "signalfd4", &[Int, Ptr, Size, Hex], Ret::Int),
    sc(292, "dup3", &[Int, Int, OpenFlags], Ret::Int),
    sc(295, "preadv", &[Int, Ptr, Int, Off], Ret::Int),
    sc(296, "pwritev", &[Int, Ptr, Int, Off], Ret::Int),
    sc(302, "prlimit64", &[Int, Resource, Ptr, Ptr], Ret::Int),
    sc(316, "renameat2", &[DirFd, Str, DirFd, Str, Hex], Ret::Int),
    sc(318, "getrandom", &[BufOut, Size, GrndFlags], Ret::Int),
    sc(324, "membarrier", &[Int, Hex, Int], Ret::Int),
    sc(332, "statx", &[DirFd, Str, AtFlags, Hex, Ptr], Ret::Int),
    sc(334, "rseq", &[Ptr, Size, Int, Hex], Ret::Int),
    sc(435, "clone3", &[Ptr, Size], Ret::Int),
    sc(439, "faccessat2", &[DirFd, Str, Int, AtFlags], Ret::Int),
];

/// The known call with number `nr`.
pub fn lookup(nr: u32) -> Option<&'static Syscall> {
    SYSCALLS.iter().find(|s| s.nr == nr)
}

/// The call's name, or `syscall_NNN`.
pub fn name(nr: u32) -> String {
    lookup(nr).map_or_else(|| format!("syscall_{nr}"), |s| s.name.to_string())
}

/// Errno names and `strerror` texts (glibc's), by number.
const ERRNOS: &[(i64, &str, &str)] = &[
    (1, "EPERM", "Operation not permitted"),
    (2, "ENOENT", "No such file or directory"),
    (3, "ESRCH", "No such process"),
    (4, "EINTR", "Interrupted system call"),
    (5, "EIO", "Input/output error"),
    (6, "ENXIO", "No such device or address"),
    (7, "E2BIG", "Argument list too long"),
    (8, "ENOEXEC", "Exec format error"),
    (9, "EBADF", "Bad file descriptor"),
    (10, "ECHILD", "No child processes"),
    (11, "EAGAIN", "Resource temporarily unavailable"),
    (12, "ENOMEM", "Cannot allocate memory"),
    (13, "EACCES", "Permission denied"),
    (14, "EFAULT", "Bad address"),
    (16, "EBUSY", "Device or resource busy"),
    (17, "EEXIST", "File exists"),
    (18, "EXDEV", "Invalid cross-device link"),
    (19, "ENODEV", "No such device"),
    (20, "ENOTDIR", "Not a directory"),
    (21, "EISDIR", "Is a directory"),
    (22, "EINVAL", "Invalid argument"),
    (23, "ENFILE", "Too many open files in system"),
    (24, "EMFILE", "Too many open files"),
    (25, "ENOTTY", "Inappropriate ioctl for device"),
    (27, "EFBIG", "File too large"),
    (28, "ENOSPC", "No space left on device"),
    (29, "ESPIPE", "Illegal seek"),
    (30, "EROFS", "Read-only file system"),
    (32, "EPIPE", "Broken pipe"),
    (33, "EDOM", "Numerical argument out of domain"),
    (34, "ERANGE", "Numerical result out of range"),
    (35, "EDEADLK", "Resource deadlock avoided"),
    (36, "ENAMETOOLONG", "File name too long"),
    (38, "ENOSYS", "Function not implemented"),
    (39, "ENOTEMPTY", "Directory not empty"),
    (40, "ELOOP", "Too many levels of symbolic links"),
    (61, "ENODATA", "No data available"),
    (75, "EOVERFLOW", "Value too large for defined data type"),
    (95, "EOPNOTSUPP", "Operation not supported"),
    (110, "ETIMEDOUT", "Connection timed out"),
];

/// strace's rendering of error `errno`: `ENOSYS (Function not implemented)`.
pub fn errno_text(errno: i64) -> String {
    match ERRNOS.iter().find(|e| e.0 == errno) {
        Some((_, name, text)) => format!("{name} ({text})"),
        None => format!("errno {errno} (Unknown error {errno})"),
    }
}

/// Signal names, by number.
const SIGNALS: &[&str] = &[
    "0",
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// `SIGSEGV` for 11; `SIGRT_n` for real-time signals; the number otherwise.
pub fn signal_name(sig: u64) -> String {
    match usize::try_from(sig).ok().and_then(|i| SIGNALS.get(i)) {
        Some(name) => name.to_string(),
        None if (34..=64).contains(&sig) => format!("SIGRT_{}", sig - 32),
        None => sig.to_string(),
    }
}

/// Render `bits` as `A|B|0x..` from a table of named bits; `zero` if none.
pub fn flag_names(bits: u64, table: &[(u64, &str)], zero: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut rest = bits;
    for &(b, name) in table {
        if b != 0 && rest & b == b {
            parts.push(name.to_string());
            rest &= !b;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    if parts.is_empty() {
        zero.to_string()
    } else {
        parts.join("|")
    }
}

/// `PROT_*` bits.
pub const PROT_FLAGS: &[(u64, &str)] = &[
    (0x1, "PROT_READ"),
    (0x2, "PROT_WRITE"),
    (0x4, "PROT_EXEC"),
    (0x0100_0000, "PROT_GROWSDOWN"),
];

/// `MAP_*` bits (the sharing type is the low two bits).
pub const MAP_FLAGS: &[(u64, &str)] = &[
    (0x3, "MAP_SHARED_VALIDATE"),
    (0x1, "MAP_SHARED"),
    (0x2, "MAP_PRIVATE"),
    (0x10, "MAP_FIXED"),
    (0x20, "MAP_ANONYMOUS"),
    (0x100, "MAP_GROWSDOWN"),
    (0x800, "MAP_DENYWRITE"),
    (0x1000, "MAP_EXECUTABLE"),
    (0x2000, "MAP_LOCKED"),
    (0x4000, "MAP_NORESERVE"),
    (0x8000, "MAP_POPULATE"),
    (0x10000, "MAP_NONBLOCK"),
    (0x20000, "MAP_STACK"),
    (0x40000, "MAP_HUGETLB"),
    (0x100000, "MAP_FIXED_NOREPLACE"),
];

/// `O_*` bits other than the access mode.
pub const OPEN_FLAGS: &[(u64, &str)] = &[
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o4010000, "O_SYNC"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
    (0o100000, "O_LARGEFILE"),
];

/// `O_RDONLY|O_CLOEXEC`-style rendering of open flags.
pub fn open_flags(bits: u64) -> String {
    let mode = match bits & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    };
    let rest = bits & !3;
    if rest == 0 {
        return mode.to_string();
    }
    format!("{mode}|{}", flag_names(rest, OPEN_FLAGS, "0"))
}

/// `arch_prctl` codes.
pub fn arch_code(code: u64) -> String {
    match code {
        0x1001 => "ARCH_SET_GS".into(),
        0x1002 => "ARCH_SET_FS".into(),
        0x1003 => "ARCH_GET_FS".into(),
        0x1004 => "ARCH_GET_GS".into(),
        0x1011 => "ARCH_GET_CPUID".into(),
        0x1012 => "ARCH_SET_CPUID".into(),
        0x3001 => "ARCH_CET_STATUS".into(),
        _ => format!("{code:#x}"),
    }
}

/// `AT_*` flags.
pub const AT_FLAGS: &[(u64, &str)] = &[
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x200, "AT_REMOVEDIR"),
    (0x400, "AT_SYMLINK_FOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"),
];

/// `GRND_*` flags.
pub const GRND_FLAGS: &[(u64, &str)] = &[
    (0x1, "GRND_NONBLOCK"),
    (0x2, "GRND_RANDOM"),
    (0x4, "GRND_INSECURE"),
];

/// A name from `names` indexed by `v`, or `v` in decimal.
fn indexed(v: u64, names: &[&str]) -> String {
    match usize::try_from(v).ok().and_then(|i| names.get(i)) {
        Some(n) => n.to_string(),
        None => (v as i32).to_string(),
    }
}

/// Resource limits: `RLIMIT_STACK`.
pub fn resource_name(r: u64) -> String {
    const NAMES: &[&str] = &[
        "RLIMIT_CPU",
        "RLIMIT_FSIZE",
        "RLIMIT_DATA",
        "RLIMIT_STACK",
        "RLIMIT_CORE",
        "RLIMIT_RSS",
        "RLIMIT_NPROC",
        "RLIMIT_NOFILE",
        "RLIMIT_MEMLOCK",
        "RLIMIT_AS",
        "RLIMIT_LOCKS",
        "RLIMIT_SIGPENDING",
        "RLIMIT_MSGQUEUE",
        "RLIMIT_NICE",
        "RLIMIT_RTPRIO",
        "RLIMIT_RTTIME",
    ];
    indexed(r, NAMES)
}

/// `rt_sigprocmask`'s `how`.
pub fn sighow_name(how: u64) -> String {
    indexed(how, &["SIG_BLOCK", "SIG_UNBLOCK", "SIG_SETMASK"])
}

/// `fcntl` commands.
pub fn fcntl_name(cmd: u64) -> String {
    match cmd {
        1030 => "F_DUPFD_CLOEXEC".into(),
        _ => indexed(
            cmd,
            &[
                "F_DUPFD", "F_GETFD", "F_SETFD", "F_GETFL", "F_SETFL", "F_GETLK", "F_SETLK",
            ],
        ),
    }
}

/// Common terminal `ioctl` requests; others in hex.
pub fn ioctl_name(req: u64) -> String {
    match req {
        0x5401 => "TCGETS".into(),
        0x5402 => "TCSETS".into(),
        0x540f => "TIOCGPGRP".into(),
        0x5413 => "TIOCGWINSZ".into(),
        0x5414 => "TIOCSWINSZ".into(),
        0x541b => "FIONREAD".into(),
        _ => format!("{req:#x}"),
    }
}

/// Clock ids.
pub fn clock_name(id: u64) -> String {
    const CLOCKS: &[&str] = &[
        "CLOCK_REALTIME",
        "CLOCK_MONOTONIC",
        "CLOCK_PROCESS_CPUTIME_ID",
        "CLOCK_THREAD_CPUTIME_ID",
        "CLOCK_MONOTONIC_RAW",
        "CLOCK_REALTIME_COARSE",
        "CLOCK_MONOTONIC_COARSE",
        "CLOCK_BOOTTIME",
    ];
    indexed(id, CLOCKS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(SYSCALLS.windows(2).all(|w| w[0].nr < w[1].nr));
    }

    #[test]
    fn names_and_errors_read_like_strace() {
        assert_eq!(name(1), "write");
        assert_eq!(name(999), "syscall_999");
        assert_eq!(errno_text(38), "ENOSYS (Function not implemented)");
        assert_eq!(signal_name(11), "SIGSEGV");
        assert_eq!(signal_name(40), "SIGRT_8");
    }

    #[test]
    fn flags_render_with_leftovers_in_hex() {
        assert_eq!(
            flag_names(3, PROT_FLAGS, "PROT_NONE"),
            "PROT_READ|PROT_WRITE"
        );
        assert_eq!(flag_names(0, PROT_FLAGS, "PROT_NONE"), "PROT_NONE");
        assert_eq!(
            flag_names(0x22, MAP_FLAGS, "0"),
            "MAP_PRIVATE|MAP_ANONYMOUS"
        );
        assert_eq!(flag_names(0x80, PROT_FLAGS, "0"), "0x80");
        assert_eq!(open_flags(0o2000000), "O_RDONLY|O_CLOEXEC");
        assert_eq!(open_flags(0o1101), "O_WRONLY|O_CREAT|O_TRUNC");
    }
}
