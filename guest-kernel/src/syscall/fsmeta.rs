//! Names and metadata: stat, access, readlink, directories, the cwd, fd
//! flags and duplication, and the calls that change the file tree.

use alloc::borrow::Cow;
use alloc::vec::Vec;

use super::files::{
    self, find, into_absolute, release, Found, AT_EMPTY_PATH, AT_REMOVEDIR, AT_SYMLINK_FOLLOW,
    AT_SYMLINK_NOFOLLOW,
};
use super::{Ctx, HostIo};
use crate::errno::{Errno, KResult};
use crate::fs::dev::{self, DevEntry};
use crate::fs::file::{o, FileRef, Node};
use crate::fs::host::{self, begin, set_path};
use crate::fs::path;
use crate::fs::proc::{self, ProcEntry, ProcLink};
use crate::fs::stat::{self, Attr, STATX_SIZE, STAT_SIZE, S_IFCHR, S_IFDIR, S_IFMT};
use crate::mm::phys::PhysMem;
use crate::process::Process;
use crate::uaccess::{copy_from_user, copy_to_user};
use vmrun_contract::fs::{op, ROOT_HANDLE, SYNTHETIC};
use vmrun_contract::IoVec;

type Cx<'p, 'e, 'a, M, H> = Ctx<'p, 'e, 'a, M, H>;

/// The time the kernel's own nodes (in `/proc` and `/dev`) are dated, in
/// seconds: the host's boot, the same at every stat, as Linux dates the
/// nodes it made at boot (it was the time of the stat, so that a node's
/// stat changed every second).
fn boot_time<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>) -> i64 {
    (cx.host.boot_realtime_ns() / 1_000_000_000) as i64
}

/// The raw statx of what `abs` names.
fn statx_path<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    abs: Vec<u8>,
    follow: bool,
) -> KResult<[u8; STATX_SIZE]> {
    path_meta(cx, abs, follow, stat::statx_bytes, |b| b)
}

/// The `struct stat` of what `abs` names: a host file's made from the
/// host's statx words in place.
fn stat_path<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    abs: Vec<u8>,
    follow: bool,
) -> KResult<[u8; STAT_SIZE]> {
    path_meta(cx, abs, follow, stat::stat_from_statx_words, |b| {
        stat::stat_from_statx(&b)
    })
}

/// The metadata of what `abs` names, as `host` makes it of a host file's
/// statx words, or `local` of a kernel node's statx.
fn path_meta<M: PhysMem, H: HostIo, T>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    abs: Vec<u8>,
    follow: bool,
    host: fn(&[u64; 32]) -> T,
    local: fn([u8; STATX_SIZE]) -> T,
) -> KResult<T> {
    match find(cx, abs, follow)? {
        Found::Host(abs) => {
            let r = begin(&mut *cx.env.host, op::STAT, ROOT_HANDLE);
            r.flags = if follow {
                0
            } else {
                AT_SYMLINK_NOFOLLOW as u32
            };
            set_path(r, false, &abs)?;
            host::call(&mut *cx.env.host, &[])?;
            let r = cx.env.host.req();
            if r.out_handle == SYNTHETIC {
                let canon = r.path[..r.path_len as usize].to_vec();
                return match find(cx, canon, follow)? {
                    Found::Host(_) => Err(Errno::ENOENT),
                    f => local_statx(cx, f).map(local),
                };
            }
            Ok(host(&r.statx))
        }
        f => local_statx(cx, f).map(local),
    }
}

fn local_statx<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    f: Found,
) -> KResult<[u8; STATX_SIZE]> {
    let t = boot_time(cx);
    Ok(match f {
        Found::Dev(e, _) => stat::statx_of(&dev::attr(e, t)),
        Found::Proc(e, p) => stat::statx_of(&proc::attr(&e, 1000 + p.len() as u64, t)),
        Found::Fd(n) => return statx_fd(cx, n),
        Found::Host(_) => return Err(Errno::ENOENT),
    })
}

/// The raw statx of what fd `fd` refers to.
pub fn statx_fd<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
) -> KResult<[u8; STATX_SIZE]> {
    match fd_meta(cx, fd)? {
        FdMeta::Kernel(a) => Ok(stat::statx_of(&a)),
        FdMeta::Host(h) => host_statx(cx, h),
    }
}

/// Where the metadata of an fd comes from.
enum FdMeta {
    /// A node the kernel serves: its attributes.
    Kernel(Attr),
    /// A host file: its handle.
    Host(u64),
}

/// The metadata of what fd `fd` refers to.
fn fd_meta<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, fd: u64) -> KResult<FdMeta> {
    let f = cx.p.fds.file(fd)?;
    let b = f.borrow();
    Ok(FdMeta::Kernel(match &b.node {
        Node::Epoll(_) | Node::EventFd(..) | Node::SignalFd(_) => Attr {
            mode: 0o600,
            nlink: 1,
            dev: (0, 15),
            ..Attr::default()
        },
        Node::Pipe { .. } => Attr {
            mode: stat::S_IFIFO | 0o600,
            nlink: 1,
            dev: (0, 14),
            ..Attr::default()
        },
        // A regular file or a block device: its size and times are the
        // host's (gzip and `wc -c` read them), asked by the stream's handle.
        Node::Stdio(k) if cx.p.stdio_is_file(*k) => {
            return Ok(FdMeta::Host(
                vmrun_contract::fs::STDIO_HANDLE + u64::from(*k),
            ))
        }
        Node::Stdio(k) => stdio_attr(cx.p, *k),
        Node::Dev(d) => dev::attr(DevEntry::Node(*d), boot_time(cx)),
        Node::Generated { path, data } => {
            let mut a = proc::attr(
                &ProcEntry::File(proc::ProcFile::Uptime),
                1000 + path.len() as u64,
                boot_time(cx),
            );
            a.size = if path.starts_with(b"/proc") {
                0
            } else {
                data.len() as u64
            };
            a
        }
        Node::SynthDir { path, .. } => {
            let t = boot_time(cx);
            if path.starts_with(b"/dev") {
                dev::attr(DevEntry::Dir, t)
            } else {
                proc::attr(&ProcEntry::Dir(Vec::new()), 1000 + path.len() as u64, t)
            }
        }
        Node::Host { handle, .. } => return Ok(FdMeta::Host(*handle)),
    }))
}

/// The attributes of the host's stdio stream `k` that is no file (its
/// mode from the host, a character device where the host did not tell).
#[inline(always)]
fn stdio_attr(p: &Process, k: u8) -> Attr {
    let mode = match p.stdio_mode(k) {
        0 => S_IFCHR | 0o620,
        mode => mode,
    };
    Attr {
        mode,
        nlink: 1,
        ..Attr::default()
    }
}

/// The raw statx of the host file open as `handle`.
fn host_statx<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    handle: u64,
) -> KResult<[u8; STATX_SIZE]> {
    begin(&mut *cx.env.host, op::FSTAT, handle);
    host::call(&mut *cx.env.host, &[])?;
    Ok(stat::statx_bytes(&cx.env.host.req().statx))
}

/// The `struct stat` of the host file open as `handle`.
fn host_stat<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    handle: u64,
) -> KResult<[u8; STAT_SIZE]> {
    begin(&mut *cx.env.host, op::FSTAT, handle);
    host::call(&mut *cx.env.host, &[])?;
    Ok(stat::stat_from_statx_words(&cx.env.host.req().statx))
}

/// fstat(fd, buf)
pub fn fstat<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
    buf: u64,
) -> KResult<i64> {
    if let Some(st) = stdio_stat(cx.p, fd) {
        copy_to_user(&mut cx.p.mm, cx.env, buf, &st)?;
        return Ok(0);
    }
    fstat_meta(cx, fd, buf)
}

/// The `struct stat` of `fd` of process `p` if it is the host's stdio
/// and no file (fstat of stdout is in every program's start): the file
/// looked at in the fd table, without a reference of its own, and its
/// `struct stat` folded from [`stdio_attr`]'s constants and mode, the
/// bytes `fd_meta`'s way gives. None for any other fd, a stream that is a
/// file among them (its stat is the host's, [`fd_meta`]).
#[inline(always)]
fn stdio_stat(p: &Process, fd: u64) -> Option<[u8; STAT_SIZE]> {
    let k = match p.fds.get(fd).ok()?.file.borrow().node {
        Node::Stdio(k) if !p.stdio_is_file(k) => k,
        _ => return None,
    };
    Some(stat::stat_of(&stdio_attr(p, k)))
}

/// [`fstat`] of any fd: a kernel node's straight from its attributes,
/// without a statx between.
#[inline(never)]
fn fstat_meta<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
    buf: u64,
) -> KResult<i64> {
    let st = match fd_meta(cx, fd)? {
        FdMeta::Kernel(a) => stat::stat_of(&a),
        FdMeta::Host(h) => host_stat(cx, h)?,
    };
    copy_to_user(&mut cx.p.mm, cx.env, buf, &st)?;
    Ok(0)
}

/// What (dirfd, path, flags) of the stat family names.
enum StatTarget {
    /// An open fd (an empty path with `AT_EMPTY_PATH`).
    Fd(u64),
    /// An absolute path, and whether a last symlink is followed.
    Path(Vec<u8>, bool),
}

/// Sort (dirfd, path, flags) for the stat family.
fn stat_target<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    dirfd: u64,
    upath: u64,
    flags: u64,
) -> KResult<StatTarget> {
    let p = path::user_string(&mut cx.p.mm, cx.env, upath, vmrun_contract::fs::PATH_MAX)?;
    if p.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        if dirfd as i32 as i64 == files::AT_FDCWD {
            return Ok(StatTarget::Path(cx.p.cwd.to_vec(), true));
        }
        return Ok(StatTarget::Fd(dirfd));
    }
    let abs = into_absolute(cx, dirfd, p)?;
    Ok(StatTarget::Path(abs, flags & AT_SYMLINK_NOFOLLOW == 0))
}

/// The statx of (dirfd, path, flags) for the stat family.
fn statx_at<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    dirfd: u64,
    upath: u64,
    flags: u64,
) -> KResult<[u8; STATX_SIZE]> {
    match stat_target(cx, dirfd, upath, flags)? {
        StatTarget::Fd(fd) => statx_fd(cx, fd),
        StatTarget::Path(abs, follow) => statx_path(cx, abs, follow),
    }
}

/// The flags of newfstatat (and of statx, with [`AT_STATX_SYNC_TYPE`]):
/// AT_SYMLINK_NOFOLLOW, AT_NO_AUTOMOUNT (no automounts here) and
/// AT_EMPTY_PATH. Any other is EINVAL, as in Linux's `vfs_fstatat`.
const STAT_FLAGS: u64 = AT_SYMLINK_NOFOLLOW | 0x800 | AT_EMPTY_PATH;

/// statx's two sync-type flags (AT_STATX_FORCE_SYNC, AT_STATX_DONT_SYNC):
/// either alone says nothing to a host file, both together are EINVAL.
const AT_STATX_SYNC_TYPE: u64 = 0x6000;

/// statx's reserved mask bit (STATX__RESERVED): EINVAL.
const STATX_RESERVED: u64 = 0x8000_0000;

/// faccessat2's flags: AT_EACCESS, AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH.
/// Any other is EINVAL, as in Linux.
const ACCESS_FLAGS: u64 = 0x200 | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH;

/// newfstatat(dirfd, path, buf, flags); stat and lstat too.
pub fn newfstatat<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    dirfd: u64,
    upath: u64,
    buf: u64,
    flags: u64,
) -> KResult<i64> {
    if flags & !STAT_FLAGS != 0 {
        return Err(Errno::EINVAL);
    }
    if stats_fd(cx.p, cx.env.mem, dirfd, upath, flags) {
        return fstat(cx, dirfd, buf);
    }
    newfstatat_path(cx, dirfd, upath, buf, flags)
}

/// Whether [`newfstatat`] by process `p` asks for the stat of `dirfd`
/// itself (glibc's fstat): `AT_EMPTY_PATH` with a dirfd and an empty path,
/// read in place.
#[inline(always)]
fn stats_fd<M: PhysMem>(p: &Process, mem: &M, dirfd: u64, upath: u64, flags: u64) -> bool {
    let of_fd = flags & !STAT_FLAGS == 0
        && flags & AT_EMPTY_PATH != 0
        && dirfd as i32 as i64 != files::AT_FDCWD;
    of_fd && path::user_string_is(&p.mm, mem, upath, b"")
}

/// [`newfstatat`] of the host's stdio by fd (glibc's fstat of stdout
/// before its first write) on the syscall stub's short path
/// (`run::short_call`), by process `p`, `a` the call's four arguments: the
/// same `struct stat`, when `buf` lies in one page mapped writable. None
/// (nothing done) for any other call, which the full path serves.
#[inline(always)]
pub fn newfstatat_short<M: PhysMem>(p: &Process, mem: &mut M, a: [u64; 4]) -> Option<i64> {
    let [dirfd, upath, buf, flags] = a;
    if !stats_fd(p, mem, dirfd, upath, flags) {
        return None;
    }
    let st = stdio_stat(p, dirfd)?;
    crate::uaccess::copy_to_mapped_page(&p.mm, mem, buf, &st)?;
    Some(0)
}

/// [`newfstatat`] of a host file by fd (`AT_EMPTY_PATH` and an empty
/// path: ld.so's fstat of each library it opens) on the syscall stub's
/// short path (`run::short_call`), by process `p`, `a` the call's four
/// arguments: the host's statx of the file's handle asked through `fs`
/// and folded into the same `struct stat` as [`fstat`]'s, when `buf` lies
/// in one page mapped writable (looked at before the host is asked). None,
/// nothing changed, for any other call and for a host error, which the
/// full path serves (asking the host again).
#[inline(always)]
pub fn newfstatat_host_short<M: PhysMem>(
    p: &Process,
    mem: &mut M,
    fs: &mut dyn host::FsHost,
    a: [u64; 4],
) -> Option<i64> {
    let [dirfd, upath, buf, flags] = a;
    if !stats_fd(p, mem, dirfd, upath, flags) {
        return None;
    }
    let Node::Host { handle, .. } = p.fds.get(dirfd).ok()?.file.borrow().node else {
        return None;
    };
    let piece = p.mm.mapped_user_piece(mem, buf, STAT_SIZE as u64, true)?;
    begin(fs, op::FSTAT, handle);
    host::call(fs, &[]).ok()?;
    mem.write_bytes(piece.phys, &stat::stat_from_statx_words(&fs.req().statx));
    Some(0)
}

/// [`newfstatat`] past glibc's fstat: the path read and looked up, out of
/// line (its frame and saved registers are not the fstat's to pay).
#[inline(never)]
fn newfstatat_path<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    dirfd: u64,
    upath: u64,
    buf: u64,
    flags: u64,
) -> KResult<i64> {
    let st = match stat_target(cx, dirfd, upath, flags)? {
        StatTarget::Fd(fd) => return fstat(cx, fd, buf),
        StatTarget::Path(abs, follow) => stat_path(cx, abs, follow)?,
    };
    copy_to_user(&mut cx.p.mm, cx.env, buf, &st)?;
    Ok(0)
}

/// statx(dirfd, path, flags, mask, buf)
pub fn statx<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    dirfd: u64,
    upath: u64,
    flags: u64,
    mask: u64,
    buf: u64,
) -> KResult<i64> {
    let sync = flags & AT_STATX_SYNC_TYPE;
    let bad_flags = flags & !(STAT_FLAGS | AT_STATX_SYNC_TYPE) != 0 || sync == AT_STATX_SYNC_TYPE;
    if bad_flags || mask & STATX_RESERVED != 0 {
        return Err(Errno::EINVAL);
    }
    let sx = statx_at(cx, dirfd, upath, flags)?;
    copy_to_user(&mut cx.p.mm, cx.env, buf, &sx)?;
    Ok(0)
}

/// faccessat2(dirfd, path, mode, flags); access and faccessat too.
pub fn faccessat<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    dirfd: u64,
    upath: u64,
    mode: u64,
    flags: u64,
) -> KResult<i64> {
    if mode & !7 != 0 || flags & !ACCESS_FLAGS != 0 {
        return Err(Errno::EINVAL);
    }
    let p = path::user_path(&mut cx.p.mm, cx.env, upath)?;
    let abs = into_absolute(cx, dirfd, p)?;
    match find(cx, abs, flags & AT_SYMLINK_NOFOLLOW == 0)? {
        Found::Host(abs) => {
            let r = begin(&mut *cx.env.host, op::ACCESS, ROOT_HANDLE);
            r.mode = mode;
            r.flags = flags as u32;
            set_path(r, false, &abs)?;
            host::call(&mut *cx.env.host, &[])?;
            Ok(0)
        }
        Found::Proc(ProcEntry::File(_), _) if mode & 2 != 0 => Err(Errno::EACCES),
        _ if mode & 1 != 0 => Err(Errno::EACCES),
        _ => Ok(0),
    }
}

/// access(path, mode) of an absolute path that the host resolves (ld.so's
/// of `/etc/ld.so.preload`) on the syscall stub's short path
/// (`run::short_call`), by process `p`: the host asked through `fs` as
/// [`faccessat`] asks it (the path read into the request in place), and
/// its answer. None (only the request begun) for any other call (a path
/// the kernel serves, a relative one, one of more than 255 bytes or not
/// within one mapped page), which the full path serves.
#[inline(always)]
pub fn access_short<M: PhysMem>(
    p: &Process,
    mem: &M,
    fs: &mut dyn host::FsHost,
    upath: u64,
    mode: u64,
) -> Option<i64> {
    if mode & !7 != 0 {
        return None;
    }
    let r = begin(fs, op::ACCESS, ROOT_HANDLE);
    let abs = path::user_string_in_page(&p.mm, mem, upath, &mut r.path, 4)?;
    if abs.first() != Some(&b'/') || path::maybe_served(abs) {
        return None;
    }
    r.path_len = abs.len() as u32;
    r.mode = mode;
    Some(match host::call(fs, &[]) {
        Ok(_) => 0,
        Err(e) => e.to_ret(),
    })
}

/// readlinkat(dirfd, path, buf, size); readlink too.
pub fn readlinkat<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    dirfd: u64,
    upath: u64,
    buf: u64,
    size: u64,
) -> KResult<i64> {
    // How a program finds itself (glibc's static startup, interpreters):
    // the one link that needs no lookup, always the caller's own (an
    // absolute path ignores `dirfd`), and its path is read in place.
    if names_self_exe(cx.p, cx.env.mem, upath, size) {
        return readlink_exe(cx, buf, size);
    }
    readlinkat_path(cx, dirfd, upath, buf, size)
}

/// Whether [`readlinkat`] by process `p` reads `/proc/self/exe` (its
/// path read in place) into a buffer of a valid `size`.
#[inline(always)]
fn names_self_exe<M: PhysMem>(p: &Process, mem: &M, upath: u64, size: u64) -> bool {
    path::user_string_is(&p.mm, mem, upath, SELF_EXE) && (size as i64) > 0
}

/// [`readlinkat`] of `/proc/self/exe` (glibc's static start) on the
/// syscall stub's short path (`run::short_call`), by process `p`: the
/// same answer, when `buf` (of `size` bytes) lies in one page mapped
/// writable. None (nothing done) for any other call, which the full path
/// serves.
#[inline(always)]
pub fn readlink_short<M: PhysMem>(
    p: &Process,
    mem: &mut M,
    upath: u64,
    buf: u64,
    size: u64,
) -> Option<i64> {
    if !names_self_exe(p, mem, upath, size) {
        return None;
    }
    let exe = &p.exe[..p.exe_len];
    let n = exe.len().min(size as usize);
    crate::uaccess::copy_to_mapped_page(&p.mm, mem, buf, &exe[..n])?;
    Some(n as i64)
}

/// The path of the process's own `exe` link.
const SELF_EXE: &[u8] = b"/proc/self/exe";

/// [`readlinkat`] of a path read from the user (the rest of the calls),
/// out of line (its frame and saved registers are not the quick case's to
/// pay).
#[inline(never)]
fn readlinkat_path<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    dirfd: u64,
    upath: u64,
    buf: u64,
    size: u64,
) -> KResult<i64> {
    let p = path::user_path(&mut cx.p.mm, cx.env, upath)?;
    if (size as i64) <= 0 {
        return Err(Errno::EINVAL);
    }
    if p == SELF_EXE {
        return readlink_exe(cx, buf, size);
    }
    let abs = into_absolute(cx, dirfd, p)?;
    let text = match find(cx, abs, false)? {
        Found::Proc(ProcEntry::Link(ProcLink::Exe), _) => return readlink_exe(cx, buf, size),
        Found::Dev(DevEntry::Link(t), _) => t.to_vec(),
        Found::Proc(ProcEntry::Link(l), _) => files::proc_link_target(cx, l),
        Found::Host(abs) => {
            // The host writes the target straight into the user's buffer.
            // A bad buffer is EFAULT once the lookup has found a link, as
            // in Linux (a path that is none fails as it fails).
            let mut iov = [IoVec::default(); 2];
            let pieces =
                cx.p.mm
                    .user_buffer_pieces(cx.env, buf, size.min(4096), true, &mut iov);
            let n = pieces.map_or(0, |(n, _)| n);
            let r = begin(&mut *cx.env.host, op::READLINK, ROOT_HANDLE);
            set_path(r, false, &abs)?;
            let got = host::call(&mut *cx.env.host, &iov[..n])?;
            if cx.env.host.req().out_handle == SYNTHETIC {
                return Err(Errno::EINVAL);
            }
            pieces?;
            return Ok(got as i64);
        }
        _ => return Err(Errno::EINVAL),
    };
    let n = text.len().min(size as usize);
    copy_to_user(&mut cx.p.mm, cx.env, buf, &text[..n])?;
    Ok(n as i64)
}

/// readlink of the process's `exe` link: straight from its own copy.
fn readlink_exe<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    buf: u64,
    size: u64,
) -> KResult<i64> {
    let exe = &cx.p.exe[..cx.p.exe_len];
    let n = exe.len().min(size as usize);
    copy_to_user(&mut cx.p.mm, cx.env, buf, &exe[..n])?;
    Ok(n as i64)
}

/// getdents64(fd, buf, count)
pub fn getdents64<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
    buf: u64,
    count: u64,
) -> KResult<i64> {
    let f = cx.p.fds.file(fd)?;
    let mut b = f.borrow_mut();
    match &b.node {
        Node::Host { handle, mode, .. } => {
            if mode & S_IFMT != S_IFDIR {
                return Err(Errno::ENOTDIR);
            }
            if b.dir_end {
                // Whatever the buffer, as Linux at a directory's end.
                return Ok(0);
            }
            let (h, pos) = (*handle, b.pos);
            let mut iov = [IoVec::default(); 1];
            let (n, _) =
                cx.p.mm
                    .user_buffer_pieces(cx.env, buf, count.min(1 << 16), true, &mut iov)?;
            if n == 0 {
                return Err(Errno::EINVAL);
            }
            // One physically contiguous piece (at most the rest of a page
            // run): the host writes whole records into it.
            let r = begin(&mut *cx.env.host, op::GETDENTS, h);
            r.offset = pos;
            let got = host::call(&mut *cx.env.host, &iov[..1])?;
            let r = cx.env.host.req();
            (b.pos, b.dir_end) = (r.out_offset, r.out_handle == 1);
            Ok(got as i64)
        }
        Node::SynthDir { entries, path } => {
            let mut all: Vec<(Vec<u8>, u8)> = alloc::vec![(b".".to_vec(), 4), (b"..".to_vec(), 4)];
            if path.ends_with(b"/fd") && path.starts_with(b"/proc/") {
                // The fds now, this directory's own included.
                all.extend(
                    cx.p.fds
                        .fds()
                        .map(|(n, _)| (proc::dec(n), crate::fs::dev::dt::LNK)),
                );
            } else {
                all.extend(entries.iter().cloned());
            }
            let base = 1000 + path.len() as u64;
            let mut out = Vec::new();
            let mut i = b.pos as usize;
            while i < all.len() {
                let (name, ty) = &all[i];
                let reclen = (19 + name.len() + 1).next_multiple_of(8);
                if out.len() + reclen > count as usize {
                    break;
                }
                out.extend_from_slice(&(base + i as u64).to_le_bytes());
                out.extend_from_slice(&((i + 1) as u64).to_le_bytes());
                out.extend_from_slice(&(reclen as u16).to_le_bytes());
                out.push(*ty);
                out.extend_from_slice(name);
                out.resize(out.len() + reclen - 19 - name.len(), 0);
                i += 1;
            }
            if out.is_empty() && i < all.len() {
                return Err(Errno::EINVAL);
            }
            b.pos = i as u64;
            drop(b);
            copy_to_user(&mut cx.p.mm, cx.env, buf, &out)?;
            Ok(out.len() as i64)
        }
        _ => Err(Errno::ENOTDIR),
    }
}

/// getcwd(buf, size)
pub fn getcwd<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    buf: u64,
    size: u64,
) -> KResult<i64> {
    let mut c = cx.p.cwd.to_vec();
    c.push(0);
    if (size as usize) < c.len() {
        return Err(Errno::ERANGE);
    }
    copy_to_user(&mut cx.p.mm, cx.env, buf, &c)?;
    Ok(c.len() as i64)
}

/// chdir(path)
pub fn chdir<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, upath: u64) -> KResult<i64> {
    let p = path::user_path(&mut cx.p.mm, cx.env, upath)?;
    let abs = into_absolute(cx, files::AT_FDCWD as u64, p)?;
    let f = files::open_path(cx, abs, o::PATH | o::DIRECTORY, 0)?;
    let new = f.borrow().node.path().to_vec();
    let is_dir = f.borrow().node.is_dir();
    release(cx, f);
    if !is_dir {
        return Err(Errno::ENOTDIR);
    }
    cx.p.cwd = Cow::Owned(new);
    Ok(0)
}

/// fchdir(fd)
pub fn fchdir<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, fd: u64) -> KResult<i64> {
    let f = cx.p.fds.file(fd)?;
    let b = f.borrow();
    if !b.node.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    cx.p.cwd = Cow::Owned(b.node.path().to_vec());
    Ok(0)
}

/// fcntl(fd, cmd, arg)
pub fn fcntl<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
    cmd: u64,
    arg: u64,
) -> KResult<i64> {
    use super::fcntl_cmd::{F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_GETFL, F_SETFD, F_SETFL};
    const F_GETLK: u64 = 5;
    const F_SETLK: u64 = 6;
    const F_SETLKW: u64 = 7;
    const F_OFD_GETLK: u64 = 36;
    const F_OFD_SETLK: u64 = 37;
    const F_OFD_SETLKW: u64 = 38;
    let file = cx.p.fds.file(fd)?;
    match cmd {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            if arg >= cx.p.fds.limit.0 {
                return Err(Errno::EINVAL);
            }
            Ok(cx.p.fds.alloc_from(arg, file, cmd == F_DUPFD_CLOEXEC)? as i64)
        }
        F_GETFD => Ok(i64::from(cx.p.fds.get(fd)?.cloexec)),
        F_SETFD => {
            cx.p.fds.get_mut(fd)?.cloexec = arg & 1 != 0;
            Ok(0)
        }
        F_GETFL => Ok(i64::from(file.borrow().flags)),
        F_SETFL => {
            let mut b = file.borrow_mut();
            b.flags = (b.flags & !o::SETFL_MASK) | (arg as u32 & o::SETFL_MASK);
            Ok(0)
        }
        F_GETLK | F_OFD_GETLK => {
            // Uncontended: every lock could be taken; l_type = F_UNLCK.
            copy_to_user(&mut cx.p.mm, cx.env, arg, &2u16.to_le_bytes())?;
            Ok(0)
        }
        F_SETLK | F_SETLKW | F_OFD_SETLK | F_OFD_SETLKW => {
            let mut l = [0u8; 2];
            copy_from_user(&mut cx.p.mm, cx.env, arg, &mut l)?;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// dup(fd)
pub fn dup<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, fd: u64) -> KResult<i64> {
    let f = cx.p.fds.file(fd)?;
    Ok(cx.p.fds.alloc(f, false)? as i64)
}

/// dup3(old, new, flags); dup2 with `dup2` set.
pub fn dup3<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    old: u64,
    new: u64,
    flags: u64,
    dup2: bool,
) -> KResult<i64> {
    if flags & !u64::from(o::CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let f = cx.p.fds.file(old)?;
    if old == new {
        return if dup2 {
            Ok(new as i64)
        } else {
            Err(Errno::EINVAL)
        };
    }
    if let Some(prev) = cx.p.fds.install_at(new, f, flags != 0)? {
        release(cx, prev.file);
    }
    Ok(new as i64)
}

/// umask(mask)
pub fn umask<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, mask: u64) -> i64 {
    let old = cx.p.umask;
    cx.p.umask = mask as u32 & 0o777;
    i64::from(old)
}

/// The host handle of fd `fd`, or EINVAL for nodes the host does not hold.
fn host_handle<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
) -> KResult<(u64, Option<u16>)> {
    host_node(&cx.p.fds.file(fd)?)
}

/// The host handle and page-cache inode of open file `f`, or EINVAL for
/// nodes the host does not hold.
fn host_node(f: &FileRef) -> KResult<(u64, Option<u16>)> {
    match f.borrow().node {
        Node::Host { handle, inode, .. } => Ok((handle, inode)),
        _ => Err(Errno::EINVAL),
    }
}

/// fsync(fd) / fdatasync(fd)
pub fn fsync<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
    data_only: bool,
) -> KResult<i64> {
    let (h, _) = host_handle(cx, fd)?;
    begin(&mut *cx.env.host, op::FSYNC, h).flags = u32::from(data_only);
    host::call(&mut *cx.env.host, &[])?;
    Ok(0)
}

/// ftruncate(fd, length)
pub fn ftruncate<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
    len: u64,
) -> KResult<i64> {
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let f = cx.p.fds.file(fd)?;
    if !f.borrow().writable() {
        return Err(Errno::EINVAL);
    }
    truncate_open(cx, &f, len)
}

/// Truncate the open host file `f` to `len` bytes, on the host and in its
/// page cache (the cached pages past the end are zeroed: the file may
/// grow over them again).
fn truncate_open<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    f: &FileRef,
    len: u64,
) -> KResult<i64> {
    let (h, inode) = host_node(f)?;
    begin(&mut *cx.env.host, op::TRUNCATE, h).offset = len;
    host::call(&mut *cx.env.host, &[])?;
    if let Some(id) = inode {
        let env = &mut *cx.env;
        env.cache.truncated(env.mem, id, len);
    }
    Ok(0)
}

/// A path operation on the host: `path` (and `path2`) made absolute.
#[allow(clippy::too_many_arguments)]
fn host_path_op<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    operation: u32,
    dirfd: u64,
    upath: u64,
    second: Option<(u64, u64)>,
    flags: u64,
    mode: u64,
    offset: u64,
) -> KResult<i64> {
    let p = path::user_path(&mut cx.p.mm, cx.env, upath)?;
    let abs = if operation == op::SYMLINK {
        p
    } else {
        into_absolute(cx, dirfd, p)?
    };
    let abs2 = match second {
        Some((d2, u2)) => {
            let p2 = path::user_path(&mut cx.p.mm, cx.env, u2)?;
            Some(into_absolute(cx, d2, p2)?)
        }
        None => None,
    };
    for a in core::iter::once(&abs).chain(abs2.iter()) {
        let named = operation != op::SYMLINK || Some(a) == abs2.as_ref();
        if named && path::served_locally(b"/", a).is_some() {
            return Err(if operation == op::UNLINK {
                Errno::EPERM
            } else {
                Errno::EACCES
            });
        }
    }
    let r = begin(&mut *cx.env.host, operation, ROOT_HANDLE);
    r.flags = flags as u32;
    r.mode = mode;
    r.offset = offset;
    set_path(r, false, &abs)?;
    if let Some(a2) = &abs2 {
        set_path(r, true, a2)?;
    }
    host::call(&mut *cx.env.host, &[])?;
    if cx.env.host.req().out_handle == SYNTHETIC {
        return Err(Errno::EACCES);
    }
    Ok(0)
}

/// unlinkat(dirfd, path, flags); unlink and rmdir too.
pub fn unlinkat<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    dirfd: u64,
    upath: u64,
    flags: u64,
) -> KResult<i64> {
    if flags & !AT_REMOVEDIR != 0 {
        return Err(Errno::EINVAL);
    }
    host_path_op(cx, op::UNLINK, dirfd, upath, None, flags, 0, 0)
}

/// mkdirat(dirfd, path, mode); mkdir too.
pub fn mkdirat<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    dirfd: u64,
    upath: u64,
    mode: u64,
) -> KResult<i64> {
    let mode = mode & 0o7777 & !u64::from(cx.p.umask);
    host_path_op(cx, op::MKDIR, dirfd, upath, None, 0, mode, 0)
}

/// renameat2(olddir, old, newdir, new, flags); rename and renameat too.
pub fn renameat2<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    od: u64,
    old: u64,
    nd: u64,
    new: u64,
    flags: u64,
) -> KResult<i64> {
    host_path_op(cx, op::RENAME, od, old, Some((nd, new)), flags, 0, 0)
}

/// symlinkat(target, newdir, linkpath); symlink too.
pub fn symlinkat<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    target: u64,
    nd: u64,
    link: u64,
) -> KResult<i64> {
    host_path_op(
        cx,
        op::SYMLINK,
        files::AT_FDCWD as u64,
        target,
        Some((nd, link)),
        0,
        0,
        0,
    )
}

/// linkat(olddir, old, newdir, new, flags); link too.
pub fn linkat<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    od: u64,
    old: u64,
    nd: u64,
    new: u64,
    flags: u64,
) -> KResult<i64> {
    if flags & !(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    host_path_op(cx, op::LINK, od, old, Some((nd, new)), flags, 0, 0)
}

/// fchmodat(dirfd, path, mode, flags); chmod too.
pub fn fchmodat<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    dirfd: u64,
    upath: u64,
    mode: u64,
    flags: u64,
) -> KResult<i64> {
    host_path_op(cx, op::CHMOD, dirfd, upath, None, flags, mode & 0o7777, 0)
}

/// fchmod(fd, mode): by the fd's path.
pub fn fchmod<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
    mode: u64,
) -> KResult<i64> {
    let f = cx.p.fds.file(fd)?;
    let p = match &f.borrow().node {
        Node::Host { path, .. } => path.clone(),
        _ => return Err(Errno::EPERM),
    };
    let r = begin(&mut *cx.env.host, op::CHMOD, ROOT_HANDLE);
    r.mode = mode & 0o7777;
    set_path(r, false, &p)?;
    host::call(&mut *cx.env.host, &[])?;
    Ok(0)
}

/// truncate(path, length)
pub fn truncate<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    upath: u64,
    len: u64,
) -> KResult<i64> {
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    // Opened for writing and truncated as `ftruncate` does, so that the
    // file's cached pages, which other descriptors and mappings share,
    // learn the new end (a path operation on the host alone left them
    // reading the bytes cut off).
    let p = path::user_path(&mut cx.p.mm, cx.env, upath)?;
    let abs = into_absolute(cx, files::AT_FDCWD as u64, p)?;
    let f = files::open_path(cx, abs, o::WRONLY, 0)?;
    let r = truncate_open(cx, &f, len);
    release(cx, f);
    r
}

/// utimensat(dirfd, path, times, flags)
pub fn utimensat<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    dirfd: u64,
    upath: u64,
    times: u64,
    flags: u64,
) -> KResult<i64> {
    const UTIME_NOW: i64 = (1 << 30) - 1;
    let mut t = [0i64, UTIME_NOW, 0, UTIME_NOW];
    if times != 0 {
        let mut raw = [0u8; 32];
        copy_from_user(&mut cx.p.mm, cx.env, times, &mut raw)?;
        for (k, v) in t.iter_mut().enumerate() {
            *v = i64::from_le_bytes(
                raw[k * 8..k * 8 + 8]
                    .try_into()
                    .map_err(|_| Errno::EFAULT)?,
            );
        }
    }
    let p = if upath == 0 {
        Vec::new()
    } else {
        path::user_string(&mut cx.p.mm, cx.env, upath, vmrun_contract::fs::PATH_MAX)?
    };
    let abs = if p.is_empty() {
        let f = cx.p.fds.file(dirfd)?;
        let b = f.borrow();
        b.node.path().to_vec()
    } else {
        into_absolute(cx, dirfd, p)?
    };
    let r = begin(&mut *cx.env.host, op::UTIMENS, ROOT_HANDLE);
    r.flags = (flags & AT_SYMLINK_NOFOLLOW) as u32;
    r.times = t;
    set_path(r, false, &abs)?;
    host::call(&mut *cx.env.host, &[])?;
    Ok(0)
}

/// statfs(path, buf) and fstatfs(fd, buf) (`path` 0: `fd`'s).
pub fn statfs<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
    upath: u64,
    buf: u64,
) -> KResult<i64> {
    if upath != 0 {
        let p = path::user_path(&mut cx.p.mm, cx.env, upath)?;
        let abs = into_absolute(cx, files::AT_FDCWD as u64, p)?;
        statx_path(cx, abs, true)?;
    } else {
        cx.p.fds.get(fd)?;
    }
    let total = cx.env.frames.total();
    let free = total - cx.env.frames.in_use();
    let b = super::info::statfs_buf(total, free);
    copy_to_user(&mut cx.p.mm, cx.env, buf, &b)?;
    Ok(0)
}

/// getxattr/lgetxattr/fgetxattr: no file has extended attributes
/// (ENODATA, after the file is found); listxattr and kin list none.
pub fn xattr<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    by_fd: bool,
    a0: u64,
    follow: bool,
    list: bool,
) -> KResult<i64> {
    if by_fd {
        cx.p.fds.get(a0)?;
    } else {
        let p = path::user_path(&mut cx.p.mm, cx.env, a0)?;
        let abs = into_absolute(cx, files::AT_FDCWD as u64, p)?;
        statx_path(cx, abs, follow)?;
    }
    if list {
        Ok(0)
    } else {
        Err(Errno::ENODATA)
    }
}
