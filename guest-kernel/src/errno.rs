//! Linux errno values, returned to the program as `-errno`.

/// A Linux error number (positive; system calls return its negation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
pub enum Errno {
    /// Operation not permitted.
    EPERM = 1,
    /// No such file or directory.
    ENOENT = 2,
    /// No such process.
    ESRCH = 3,
    /// Interrupted system call.
    EINTR = 4,
    /// I/O error.
    EIO = 5,
    /// Argument list too long.
    E2BIG = 7,
    /// Exec format error.
    ENOEXEC = 8,
    /// Bad file descriptor.
    EBADF = 9,
    /// No child processes.
    ECHILD = 10,
    /// Try again.
    EAGAIN = 11,
    /// Out of memory.
    ENOMEM = 12,
    /// Permission denied.
    EACCES = 13,
    /// Bad address.
    EFAULT = 14,
    /// File exists (e.g. MAP_FIXED_NOREPLACE over a mapping).
    EEXIST = 17,
    /// Not a directory.
    ENOTDIR = 20,
    /// Is a directory.
    EISDIR = 21,
    /// Invalid argument.
    EINVAL = 22,
    /// Not a typewriter.
    ENOTTY = 25,
    /// Illegal seek.
    ESPIPE = 29,
    /// Broken pipe.
    EPIPE = 32,
    /// Result too large.
    ERANGE = 34,
    /// File name too long.
    ENAMETOOLONG = 36,
    /// Function not implemented.
    ENOSYS = 38,
    /// No such device or address.
    ENXIO = 6,
    /// Device or resource busy.
    EBUSY = 16,
    /// Cross-device link.
    EXDEV = 18,
    /// No such device.
    ENODEV = 19,
    /// File table overflow.
    ENFILE = 23,
    /// Too many open files.
    EMFILE = 24,
    /// Text file busy.
    ETXTBSY = 26,
    /// File too large.
    EFBIG = 27,
    /// No space left on device.
    ENOSPC = 28,
    /// Read-only file system.
    EROFS = 30,
    /// Too many links.
    EMLINK = 31,
    /// Directory not empty.
    ENOTEMPTY = 39,
    /// Too many symbolic links.
    ELOOP = 40,
    /// No data available.
    ENODATA = 61,
    /// Value too large for defined data type.
    EOVERFLOW = 75,
    /// Operation not supported.
    EOPNOTSUPP = 95,
    /// Stale file handle.
    ESTALE = 116,
    /// Quota exceeded.
    EDQUOT = 122,
    /// Timer expired.
    ETIMEDOUT = 110,
    /// Socket operation on non-socket.
    ENOTSOCK = 88,
    /// Accessing a corrupted shared library.
    ELIBBAD = 80,
    /// Kernel-internal, never seen by a program: the call must wait; it
    /// runs again when the process is woken (Linux's ERESTARTSYS).
    ERESTARTSYS = 512,
    /// Address family not supported by protocol.
    EAFNOSUPPORT = 97,
}

impl Errno {
    /// The value a system call returns for this error: `-errno`.
    pub const fn to_ret(self) -> i64 {
        -(self as i64)
    }

    /// The error a `-errno` value (from the host) stands for; unknown
    /// numbers become EIO.
    pub const fn from_ret(ret: i64) -> Errno {
        match -ret {
            1 => Errno::EPERM,
            2 => Errno::ENOENT,
            3 => Errno::ESRCH,
            4 => Errno::EINTR,
            5 => Errno::EIO,
            6 => Errno::ENXIO,
            7 => Errno::E2BIG,
            8 => Errno::ENOEXEC,
            9 => Errno::EBADF,
            10 => Errno::ECHILD,
            11 => Errno::EAGAIN,
            12 => Errno::ENOMEM,
            13 => Errno::EACCES,
            14 => Errno::EFAULT,
            16 => Errno::EBUSY,
            17 => Errno::EEXIST,
            18 => Errno::EXDEV,
            19 => Errno::ENODEV,
            20 => Errno::ENOTDIR,
            21 => Errno::EISDIR,
            22 => Errno::EINVAL,
            23 => Errno::ENFILE,
            24 => Errno::EMFILE,
            25 => Errno::ENOTTY,
            26 => Errno::ETXTBSY,
            27 => Errno::EFBIG,
            28 => Errno::ENOSPC,
            29 => Errno::ESPIPE,
            30 => Errno::EROFS,
            31 => Errno::EMLINK,
            32 => Errno::EPIPE,
            34 => Errno::ERANGE,
            36 => Errno::ENAMETOOLONG,
            38 => Errno::ENOSYS,
            39 => Errno::ENOTEMPTY,
            40 => Errno::ELOOP,
            61 => Errno::ENODATA,
            75 => Errno::EOVERFLOW,
            95 => Errno::EOPNOTSUPP,
            80 => Errno::ELIBBAD,
            512 => Errno::ERESTARTSYS,
            88 => Errno::ENOTSOCK,
            97 => Errno::EAFNOSUPPORT,
            110 => Errno::ETIMEDOUT,
            116 => Errno::ESTALE,
            122 => Errno::EDQUOT,
            _ => Errno::EIO,
        }
    }

    /// The symbolic name, as strace prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::ESRCH => "ESRCH",
            Errno::EINTR => "EINTR",
            Errno::EIO => "EIO",
            Errno::E2BIG => "E2BIG",
            Errno::ENOEXEC => "ENOEXEC",
            Errno::EBADF => "EBADF",
            Errno::ECHILD => "ECHILD",
            Errno::EAGAIN => "EAGAIN",
            Errno::ENOMEM => "ENOMEM",
            Errno::EACCES => "EACCES",
            Errno::EFAULT => "EFAULT",
            Errno::EEXIST => "EEXIST",
            Errno::ENOTDIR => "ENOTDIR",
            Errno::EISDIR => "EISDIR",
            Errno::EINVAL => "EINVAL",
            Errno::ENOTTY => "ENOTTY",
            Errno::ESPIPE => "ESPIPE",
            Errno::EPIPE => "EPIPE",
            Errno::ERANGE => "ERANGE",
            Errno::ENAMETOOLONG => "ENAMETOOLONG",
            Errno::ENOSYS => "ENOSYS",
            Errno::ENXIO => "ENXIO",
            Errno::EBUSY => "EBUSY",
            Errno::EXDEV => "EXDEV",
            Errno::ENODEV => "ENODEV",
            Errno::ENFILE => "ENFILE",
            Errno::EMFILE => "EMFILE",
            Errno::ETXTBSY => "ETXTBSY",
            Errno::EFBIG => "EFBIG",
            Errno::ENOSPC => "ENOSPC",
            Errno::EROFS => "EROFS",
            Errno::EMLINK => "EMLINK",
            Errno::ENOTEMPTY => "ENOTEMPTY",
            Errno::ELOOP => "ELOOP",
            Errno::ENODATA => "ENODATA",
            Errno::EOVERFLOW => "EOVERFLOW",
            Errno::EOPNOTSUPP => "EOPNOTSUPP",
            Errno::ESTALE => "ESTALE",
            Errno::EDQUOT => "EDQUOT",
            Errno::ETIMEDOUT => "ETIMEDOUT",
            Errno::ENOTSOCK => "ENOTSOCK",
            Errno::ELIBBAD => "ELIBBAD",
            Errno::ERESTARTSYS => "ERESTARTSYS",
            Errno::EAFNOSUPPORT => "EAFNOSUPPORT",
        }
    }
}

/// Result of a kernel operation that can fail with an errno.
pub type KResult<T> = Result<T, Errno>;
