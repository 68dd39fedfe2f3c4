//! poll, ioctl, readlink, prlimit64, getrandom: what runtimes ask at start.

use super::{Ctx, HostIo};
use crate::errno::{Errno, KResult};
use crate::mm::phys::PhysMem;
use crate::uaccess::{copy_from_user, copy_to_user};
use vmrun_contract::IoVec;

const POLLIN: u16 = 0x1;
const POLLOUT: u16 = 0x4;
const POLLNVAL: u16 = 0x20;
/// Most pollfds one call takes (Linux's RLIMIT_NOFILE default).
const MAX_POLLFDS: u64 = 1024;

/// poll(fds, nfds, timeout): fds 0-2 are the host's stdio, always ready
/// (a read of fd 0 may then wait for the host); others are POLLNVAL.
pub fn poll<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    fds: u64,
    nfds: u64,
) -> KResult<i64> {
    if nfds > MAX_POLLFDS {
        return Err(Errno::EINVAL);
    }
    let mut ready = 0;
    for i in 0..nfds {
        let mut pfd = [0u8; 8];
        copy_from_user(&mut cx.p.mm, cx.env, fds + i * 8, &mut pfd)?;
        let fd = i32::from_le_bytes([pfd[0], pfd[1], pfd[2], pfd[3]]);
        let events = u16::from_le_bytes([pfd[4], pfd[5]]);
        let revents = match fd {
            0 => events & POLLIN,
            1 | 2 => events & POLLOUT,
            _ if fd < 0 => 0,
            _ => POLLNVAL,
        };
        copy_to_user(
            &mut cx.p.mm,
            cx.env,
            fds + i * 8 + 6,
            &revents.to_le_bytes(),
        )?;
        ready += i64::from(revents != 0);
    }
    Ok(ready)
}

/// ioctl(fd, ...): the stdio fds are not terminals inside the VM.
pub fn ioctl(fd: u64) -> KResult<i64> {
    match fd {
        0..=2 => Err(Errno::ENOTTY),
        _ => Err(Errno::EBADF),
    }
}

/// fcntl(fd, cmd, arg) on the stdio fds: descriptor flags (no FD_CLOEXEC)
/// and status flags (fd 0 read-only, 1 and 2 write-only) can be read;
/// setting them is accepted and has no effect on the host's stdio.
pub fn fcntl(fd: u64, cmd: u64) -> KResult<i64> {
    const F_GETFD: u64 = 1;
    const F_SETFD: u64 = 2;
    const F_GETFL: u64 = 3;
    const F_SETFL: u64 = 4;
    const O_WRONLY: i64 = 1;
    if fd > 2 {
        return Err(Errno::EBADF);
    }
    match cmd {
        F_GETFD | F_SETFD | F_SETFL => Ok(0),
        F_GETFL => Ok(if fd == 0 { 0 } else { O_WRONLY }),
        _ => Err(Errno::EINVAL),
    }
}

/// readlink(path, buf, size): only /proc/self/exe exists; it reads as the
/// path vmrun was given.
pub fn readlink<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    path: u64,
    buf: u64,
    size: u64,
) -> KResult<i64> {
    const SELF_EXE: &[u8] = b"/proc/self/exe\0";
    let mut name = [0u8; 15];
    let n = copy_prefix(cx, path, &mut name);
    if n == 0 {
        return Err(Errno::EFAULT);
    }
    if n != SELF_EXE.len() || name != *SELF_EXE {
        return Err(Errno::ENOENT);
    }
    if (size as i64) <= 0 {
        return Err(Errno::EINVAL);
    }
    let len = cx.p.exe_len.min(size as usize);
    let exe = cx.p.exe;
    copy_to_user(&mut cx.p.mm, cx.env, buf, &exe[..len])?;
    Ok(len as i64)
}

/// Copy the user string at `va` into `out` up to its NUL (included) or
/// the buffer's end; returns the bytes copied.
fn copy_prefix<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    va: u64,
    out: &mut [u8],
) -> usize {
    for i in 0..out.len() {
        if copy_from_user(&mut cx.p.mm, cx.env, va + i as u64, &mut out[i..i + 1]).is_err() {
            return i;
        }
        if out[i] == 0 {
            return i + 1;
        }
    }
    out.len()
}

/// readlinkat(dirfd, path, buf, size): as readlink (the path is absolute).
pub fn readlinkat<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    _dirfd: u64,
    path: u64,
    buf: u64,
    size: u64,
) -> KResult<i64> {
    readlink(cx, path, buf, size)
}

const RLIM_INFINITY: u64 = u64::MAX;
const RLIMIT_STACK: u64 = 3;
const RLIMIT_NOFILE: u64 = 7;
const RLIMIT_NLIMITS: u64 = 16;

/// The limits the process runs under (soft, hard).
fn rlimit(resource: u64) -> (u64, u64) {
    match resource {
        RLIMIT_STACK => (crate::mm::space::STACK_LIMIT, RLIM_INFINITY),
        RLIMIT_NOFILE => (1024, 1024),
        _ => (RLIM_INFINITY, RLIM_INFINITY),
    }
}

/// prlimit64(pid, resource, new, old) and getrlimit: limits can be read;
/// changing them is refused (EPERM), as for an unprivileged raise.
pub fn prlimit64<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    pid: u64,
    resource: u64,
    new: u64,
    old: u64,
) -> KResult<i64> {
    if pid != 0 && pid != cx.p.pid {
        return Err(Errno::ESRCH);
    }
    if resource >= RLIMIT_NLIMITS {
        return Err(Errno::EINVAL);
    }
    if new != 0 {
        return Err(Errno::EPERM);
    }
    if old != 0 {
        let (cur, max) = rlimit(resource);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&cur.to_le_bytes());
        b[8..].copy_from_slice(&max.to_le_bytes());
        copy_to_user(&mut cx.p.mm, cx.env, old, &b)?;
    }
    Ok(0)
}

/// Largest getrandom request served in one call (Linux caps at 32 MiB).
const MAX_RANDOM: u64 = 32 << 20;

/// getrandom(buf, len, flags): bytes from the host's getrandom.
pub fn getrandom<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    buf: u64,
    len: u64,
    flags: u64,
) -> KResult<i64> {
    const KNOWN: u64 = 0x1 | 0x2 | 0x4; // GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE
    if flags & !KNOWN != 0 {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return Ok(0);
    }
    let mut iov = [IoVec::default(); super::io::MAX_PIECES];
    let (n, _) =
        cx.p.mm
            .user_buffer_pieces(cx.env, buf, len.min(MAX_RANDOM), true, &mut iov)?;
    Ok(cx.host.random(&iov[..n]))
}
