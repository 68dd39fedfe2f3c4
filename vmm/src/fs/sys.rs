//! The host system calls the file service makes, as safe functions over
//! borrowed fds and C strings: the only `unsafe` code of [`super`].
//!
//! Every function returns the host's errno (positive) on failure, which
//! the service passes on to the guest unchanged. Names given to the
//! `*at` calls are single path components chosen by the walker, never
//! paths.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// A host errno (positive).
pub type Errno = i32;
/// A host call's result.
pub type SysResult<T> = Result<T, Errno>;

/// Linux's `struct statx`, as the 256 bytes the contract carries.
pub type StatxBytes = [u64; 32];

/// `statfs.f_type` of the host's kernel pseudo file systems, which no view
/// may reach: procfs, sysfs, debugfs, tracefs, securityfs, cgroup (v1 and
/// v2), bpffs, configfs, efivarfs.
pub const PSEUDO_FS_MAGICS: [i64; 10] = [
    0x9fa0,
    0x6265_6572,
    0x6462_6720,
    0x7472_6163,
    0x7363_6673,
    0x0027_e0eb,
    0x6367_7270,
    0xcafe_4a11,
    0x6265_6570,
    0xde5e_81e4,
];

fn errno() -> Errno {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// -1 → the errno, else the value.
fn check(ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

fn check_int(ret: libc::c_int) -> SysResult<()> {
    check(ret.into()).map(|_| ())
}

/// Take ownership of an fd a call just returned.
fn own(fd: libc::c_long) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call, so it is an
    // open descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }
}

/// Linux's `struct open_how` (openat2's argument).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Set once openat2 turned out to be missing (Linux before 5.6).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Open the single component `name` below `dir`, never following a symlink
/// and never leaving `dir` (openat2 with RESOLVE_BENEATH and
/// RESOLVE_NO_MAGICLINKS; openat with O_NOFOLLOW where openat2 is missing).
/// O_NOFOLLOW and O_CLOEXEC are always added.
pub fn open_beneath(dir: BorrowedFd<'_>, name: &CStr, flags: i32, mode: u32) -> SysResult<OwnedFd> {
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let how = OpenHow {
            flags: flags as u64,
            mode: if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
                u64::from(mode)
            } else {
                0
            },
            resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: openat2 reads the NUL-terminated `name` and the `how`
        // struct of the size passed; both outlive the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                name.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match check(ret) {
            Ok(fd) => return Ok(own(fd)),
            Err(libc::ENOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            Err(e) => return Err(e),
        }
    }
    // SAFETY: openat reads the NUL-terminated `name`; `dir` is open.
    let ret = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode) };
    check(ret.into()).map(own)
}

/// `fstat` (works on O_PATH fds too).
pub fn fstat(fd: BorrowedFd<'_>) -> SysResult<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one `stat` into the valid `st`.
    check_int(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// The file system type (`statfs.f_type`) `fd` lies on.
pub fn fs_type(fd: BorrowedFd<'_>) -> SysResult<i64> {
    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct.
    let mut sf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs writes one `statfs` into the valid `sf`.
    check_int(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut sf) })?;
    Ok(sf.f_type)
}

/// The target of the symlink `fd` (an O_PATH|O_NOFOLLOW fd of the link).
pub fn readlink(fd: BorrowedFd<'_>) -> SysResult<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: readlinkat writes at most `buf.len()` bytes into `buf`; the
    // empty name is a valid C string.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = check(n as libc::c_long)? as usize;
    buf.truncate(n);
    Ok(buf)
}

/// statx of `name` in `dir` (`flags`: AT_EMPTY_PATH with an empty name for
/// `dir` itself, AT_SYMLINK_NOFOLLOW), as Linux's 256-byte struct.
pub fn statx(dir: BorrowedFd<'_>, name: &CStr, flags: i32) -> SysResult<StatxBytes> {
    let mut buf: StatxBytes = [0; 32];
    const _: () = assert!(std::mem::size_of::<libc::statx>() == 256);
    // SAFETY: `buf` is 256 bytes, 8-aligned: room for one `struct statx`,
    // which statx fills; `name` is NUL-terminated.
    let ret = unsafe {
        libc::statx(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::AT_STATX_SYNC_AS_STAT,
            libc::STATX_BASIC_STATS | libc::STATX_BTIME,
            buf.as_mut_ptr().cast::<libc::statx>(),
        )
    };
    check_int(ret)?;
    Ok(buf)
}

/// Directory entries of `fd` from its current position, as Linux
/// `linux_dirent64` records, into `buf`: bytes written (0 at the end).
pub fn getdents(fd: BorrowedFd<'_>, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`.
    let n = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    check(n).map(|n| n as usize)
}

/// `lseek`.
pub fn lseek(fd: BorrowedFd<'_>, offset: i64, whence: i32) -> SysResult<i64> {
    // SAFETY: lseek touches no memory of ours.
    let ret = unsafe { libc::lseek(fd.as_raw_fd(), offset, whence) };
    check(ret)
}

/// `read` into `buf` (at most `buf.len()` bytes: one system call, no
/// read-ahead).
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: read writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    check(n as libc::c_long).map(|n| n as usize)
}

/// Whether a read of `fd` would not block now (data, end of file or an
/// error waiting): poll(2) with no timeout.
pub fn readable_now(fd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one pollfd, which outlives the call.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents != 0
}

/// `pread` into `buf`.
pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: i64) -> SysResult<usize> {
    // SAFETY: pread writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset) };
    check(n as libc::c_long).map(|n| n as usize)
}

/// `pwrite` of `buf` at `offset`, or at the end of the file when `append`
/// (pwritev2 with RWF_APPEND).
pub fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: i64, append: bool) -> SysResult<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let (offset, flags) = if append {
        (-1, libc::RWF_APPEND)
    } else {
        (offset, 0)
    };
    // SAFETY: pwritev2 reads `iov_len` bytes from `buf` through the one
    // iovec, which outlives the call.
    let n = unsafe { libc::pwritev2(fd.as_raw_fd(), &iov, 1, offset, flags) };
    check(n as libc::c_long).map(|n| n as usize)
}

/// `mkdirat`.
pub fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> SysResult<()> {
    // SAFETY: mkdirat reads the NUL-terminated `name`.
    check_int(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) })
}

/// `unlinkat` (`flags`: AT_REMOVEDIR).
pub fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: i32) -> SysResult<()> {
    // SAFETY: unlinkat reads the NUL-terminated `name`.
    check_int(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) })
}

/// `renameat2`.
pub fn renameat2(
    from_dir: BorrowedFd<'_>,
    from: &CStr,
    to_dir: BorrowedFd<'_>,
    to: &CStr,
    flags: u32,
) -> SysResult<()> {
    // SAFETY: renameat2 reads the two NUL-terminated names.
    check_int(unsafe {
        libc::renameat2(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
            flags,
        )
    })
}

/// `symlinkat`: make `name` in `dir` a symlink to `target`.
pub fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> SysResult<()> {
    // SAFETY: symlinkat reads the two NUL-terminated strings.
    check_int(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })
}

/// `linkat` without following a symlink at `from`.
pub fn linkat(
    from_dir: BorrowedFd<'_>,
    from: &CStr,
    to_dir: BorrowedFd<'_>,
    to: &CStr,
) -> SysResult<()> {
    // SAFETY: linkat reads the two NUL-terminated names.
    check_int(unsafe {
        libc::linkat(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
            0,
        )
    })
}

/// `fchmodat2` (`flags`: AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH; Linux 6.6);
/// on older kernels, the object is opened O_PATH without following and
/// changed through its /proc/self/fd entry (what glibc's fchmodat does).
pub fn fchmodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32, flags: i32) -> SysResult<()> {
    // SAFETY: fchmodat2 reads the NUL-terminated `name`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            dir.as_raw_fd(),
            name.as_ptr(),
            mode,
            flags,
        )
    };
    match check(ret) {
        Err(libc::ENOSYS) => chmod_by_proc(dir, name, mode),
        r => r.map(|_| ()),
    }
}

fn chmod_by_proc(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> SysResult<()> {
    let path =
        |fd: i32| std::ffi::CString::new(format!("/proc/self/fd/{fd}")).map_err(|_| libc::EINVAL);
    if name.to_bytes().is_empty() {
        let p = path(dir.as_raw_fd())?;
        // SAFETY: chmod reads the NUL-terminated path.
        return check_int(unsafe { libc::chmod(p.as_ptr(), mode) });
    }
    // SAFETY: openat reads the NUL-terminated `name`; the fd is owned below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    // SAFETY: `fd` was just opened and is ours to close.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat writes one struct stat.
    check_int(unsafe { libc::fstat(owned.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so the struct is filled.
    if unsafe { st.assume_init() }.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(libc::EOPNOTSUPP);
    }
    let p = path(owned.as_raw_fd())?;
    // SAFETY: chmod reads the NUL-terminated path.
    check_int(unsafe { libc::chmod(p.as_ptr(), mode) })
}

/// `fchmod` of an fd opened for reading or writing.
pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> SysResult<()> {
    // SAFETY: fchmod touches no memory of ours.
    check_int(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })
}

/// `utimensat` (`flags`: AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH).
pub fn utimensat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    times: &[libc::timespec; 2],
    flags: i32,
) -> SysResult<()> {
    // SAFETY: utimensat reads the NUL-terminated `name` and two timespecs.
    check_int(unsafe { libc::utimensat(dir.as_raw_fd(), name.as_ptr(), times.as_ptr(), flags) })
}

/// `ftruncate`.
pub fn ftruncate(fd: BorrowedFd<'_>, len: i64) -> SysResult<()> {
    // SAFETY: ftruncate touches no memory of ours.
    check_int(unsafe { libc::ftruncate(fd.as_raw_fd(), len) })
}

/// `fsync`, or `fdatasync` when `data_only`.
pub fn fsync(fd: BorrowedFd<'_>, data_only: bool) -> SysResult<()> {
    // SAFETY: fsync and fdatasync touch no memory of ours.
    check_int(unsafe {
        if data_only {
            libc::fdatasync(fd.as_raw_fd())
        } else {
            libc::fsync(fd.as_raw_fd())
        }
    })
}

/// `faccessat2` (`flags`: AT_SYMLINK_NOFOLLOW, AT_EACCESS, AT_EMPTY_PATH).
pub fn faccessat(dir: BorrowedFd<'_>, name: &CStr, mode: i32, flags: i32) -> SysResult<()> {
    // SAFETY: faccessat2 reads the NUL-terminated `name`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            dir.as_raw_fd(),
            name.as_ptr(),
            mode,
            flags,
        )
    };
    check(ret).map(|_| ())
}

/// The process's file-creation mask (read without changing it for good).
pub fn umask() -> u32 {
    // SAFETY: umask only swaps the process's mask; the old one is put back
    // at once.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old);
        old
    }
}

/// Raise this process's soft limit on open files to its hard limit: each
/// guest handle holds a host fd. Advisory: a failure is ignored.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the valid `lim`; setrlimit reads it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// `mknodat`, for tests that need a FIFO or a device node.
#[cfg(test)]
pub fn mknodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32, dev: u64) -> SysResult<()> {
    // SAFETY: mknodat reads the NUL-terminated `name`.
    check_int(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, dev) })
}
