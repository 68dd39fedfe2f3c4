//! Opening, reading and writing files: the fd-based system calls.
//!
//! Each fd names an [`OpenFile`]; what a call does depends on its node:
//! the host's stdio (through [`HostIo`], as before there were files), a
//! host file (through the host's file service and the page cache), a
//! `/dev` node or a generated `/proc` file. Paths are made absolute here
//! (from the cwd or a directory fd) and then either served by the kernel
//! (`/dev`, `/proc`) or resolved by the host inside the guest's view.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::{Ctx, HostIo};
use crate::errno::{Errno, KResult};
use crate::fs::cache::{FileInfo, InodeKey, PageCache};
use crate::fs::dev::{self, DevEntry, DevNode};
use crate::fs::file::{is_last, o, FileRef, Node, OpenFile};
use crate::fs::host::{self, begin, set_path};
use crate::fs::path::{self, Served};
use crate::fs::proc::{self, ProcEntry, ProcFile, ProcLink};
use crate::fs::stat::{self, StatxInfo, S_IFDIR, S_IFMT, S_IFREG};
use crate::mm::phys::PhysMem;
use crate::process::Process;
use crate::uaccess::copy_to_user;
use vmrun_contract::fs::{op, FsRequest, ROOT_HANDLE, SYNTHETIC};
use vmrun_contract::layout::PAGE_SIZE;
use vmrun_contract::{CopyItem, IoVec};

/// `AT_FDCWD`.
pub const AT_FDCWD: i64 = -100;
/// `AT_SYMLINK_NOFOLLOW`.
pub const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
/// `AT_REMOVEDIR`.
pub const AT_REMOVEDIR: u64 = 0x200;
/// `AT_SYMLINK_FOLLOW`.
pub const AT_SYMLINK_FOLLOW: u64 = 0x400;
/// `AT_EMPTY_PATH`.
pub const AT_EMPTY_PATH: u64 = 0x1000;
/// Reads at least this long go from the host straight into the user's
/// buffer; shorter ones are served from (and fill) the page cache.
pub const DIRECT_READ_MIN: u64 = 16 * 1024;
/// Most pieces one host transfer carries.
pub const MAX_PIECES: usize = 64;
/// Largest single transfer (Linux's MAX_RW_COUNT).
pub const MAX_RW_COUNT: u64 = 0x7fff_f000;

type Cx<'p, 'e, 'a, M, H> = Ctx<'p, 'e, 'a, M, H>;

/// The absolute guest path of `path` relative to `dirfd` (or the cwd).
pub fn absolute<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    dirfd: u64,
    path: &[u8],
) -> KResult<Vec<u8>> {
    if path.first() == Some(&b'/') {
        return Ok(path.to_vec());
    }
    if dirfd as i32 as i64 == AT_FDCWD {
        return Ok(path::join(&cx.p.cwd, path));
    }
    let f = cx.p.fds.file(dirfd)?;
    let f = f.borrow();
    if !f.node.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    Ok(path::join(f.node.path(), path))
}

/// [`absolute`] for a path the caller gives up: an absolute one is
/// returned as it is, without a copy.
pub fn into_absolute<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    dirfd: u64,
    path: Vec<u8>,
) -> KResult<Vec<u8>> {
    if path.first() == Some(&b'/') {
        return Ok(path);
    }
    absolute(cx, dirfd, &path)
}

/// Where a path leads after the kernel looked at it.
#[derive(Debug)]
pub enum Found {
    /// A `/dev` entry (with its canonical path).
    Dev(DevEntry, Vec<u8>),
    /// A `/proc` entry.
    Proc(ProcEntry, Vec<u8>),
    /// An open fd, reached through `/proc/self/fd/N` (followed).
    Fd(u64),
    /// A host path (absolute, not yet resolved).
    Host(Vec<u8>),
}

/// Sort an absolute path: the kernel's own trees are looked up here,
/// following their symlinks when `follow` (or when not last); everything
/// else is for the host.
pub fn find<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    abs: Vec<u8>,
    follow: bool,
) -> KResult<Found> {
    let mut cur = abs;
    for _ in 0..8 {
        if cur.first() == Some(&b'/') && !path::maybe_served(&cur) {
            return Ok(Found::Host(cur));
        }
        // A normal path is sorted as it is (normalising would give it
        // back); another is normalised only if the kernel serves it.
        if !path::is_normal(&cur) {
            match path::served_locally(b"/", &cur) {
                Some(canon) => cur = canon,
                None => return Ok(Found::Host(cur)),
            }
        }
        let link = match path::served(&cur) {
            Served::Dev(rest) => {
                if let Some(n) = rest.strip_prefix(b"/fd/") {
                    let mut p = b"/proc/self/fd/".to_vec();
                    p.extend_from_slice(n);
                    cur = p;
                    continue;
                }
                match dev::lookup(rest).ok_or_else(|| dev::missing(rest))? {
                    DevEntry::Link(t) if follow => t.to_vec(),
                    e => return Ok(Found::Dev(e, cur)),
                }
            }
            Served::Proc(rest) => {
                let fds: Vec<u64> = match proc::reads_fds(rest) {
                    true => cx.p.fds.fds().map(|(n, _)| n).collect(),
                    false => Vec::new(),
                };
                match proc::lookup(rest, cx.p.pid, &fds).ok_or(Errno::ENOENT)? {
                    ProcEntry::Link(l) if follow => match l {
                        ProcLink::Fd(n) => return Ok(Found::Fd(n)),
                        l => proc_link_target(cx, l),
                    },
                    e => return Ok(Found::Proc(e, cur)),
                }
            }
            Served::Host => return Ok(Found::Host(cur)),
        };
        cur = link;
    }
    Err(Errno::ELOOP)
}

/// The text of a `/proc` symlink.
pub fn proc_link_target<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    l: ProcLink,
) -> Vec<u8> {
    match l {
        ProcLink::SelfDir => proc::dec(cx.p.pid),
        ProcLink::Exe => cx.p.exe[..cx.p.exe_len].to_vec(),
        ProcLink::Cwd => cx.p.cwd.to_vec(),
        ProcLink::Root => b"/".to_vec(),
        ProcLink::Fd(n) => fd_link_text(cx, n),
    }
}

/// What `/proc/self/fd/N` reads as.
fn fd_link_text<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, n: u64) -> Vec<u8> {
    let Ok(f) = cx.p.fds.file(n) else {
        return Vec::new();
    };
    let f = f.borrow();
    match &f.node {
        Node::Stdio(k) => match cx.p.stdio_mode(*k) & S_IFMT {
            stat::S_IFIFO => b"pipe:[1]".to_vec(),
            stat::S_IFCHR | 0 => b"/dev/pts/0".to_vec(),
            _ => b"/dev/stdin".to_vec(),
        },
        node => node.path().to_vec(),
    }
}

/// What the host's OPEN gave: the handle, the fields of its statx the
/// kernel uses and the canonical path; or only the canonical path of a
/// place the kernel serves.
type HostOpened = Result<(u64, StatxInfo, Vec<u8>), Vec<u8>>;

/// Ask the host to open `abs` with `flags` and `mode`; `more` adds to the
/// request (see [`deny_running`]). Returns the handle and its statx
/// fields, or the canonical path when the host found it leads into `/dev`
/// or `/proc`.
#[inline(always)]
fn host_open(
    host: &mut dyn host::FsHost,
    abs: &[u8],
    flags: u32,
    mode: u32,
    more: impl FnOnce(&mut FsRequest),
) -> KResult<HostOpened> {
    let r = begin(host, op::OPEN, ROOT_HANDLE);
    r.flags = flags;
    r.mode = u64::from(mode);
    set_path(r, false, abs)?;
    more(r);
    host::call(host, &[])?;
    let r = host.req();
    let canon = r.path[..(r.path_len as usize).min(r.path.len())].to_vec();
    if r.out_handle == SYNTHETIC {
        return Ok(Err(canon));
    }
    Ok(Ok((r.out_handle, stat::statx_info_words(&r.statx), canon)))
}

/// openat(dirfd, path, flags, mode)
pub fn openat<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    dirfd: u64,
    upath: u64,
    flags: u64,
    mode: u64,
) -> KResult<i64> {
    let p = path::user_path(&mut cx.p.mm, cx.env, upath)?;
    let abs = into_absolute(cx, dirfd, p)?;
    let flags = flags as u32;
    let file = open_path(cx, abs, flags, mode as u32 & 0o7777 & !cx.p.umask)?;
    let fd = cx.p.fds.alloc(file.clone(), flags & o::CLOEXEC != 0);
    match fd {
        Ok(fd) => Ok(fd as i64),
        Err(e) => {
            release(cx, file);
            Err(e)
        }
    }
}

/// For an open that writes (O_WRONLY, O_RDWR or O_TRUNC): the host
/// identities of the programs the processes run (`current` and `others`),
/// as OPEN's `path2` of (device, inode) pairs, which the host refuses to
/// open so (ETXTBSY, as Linux's `deny_write_access`: the check must come
/// before the host opens, which may truncate). Out of line: most opens
/// only read.
#[inline(never)]
fn deny_running(current: &Process, others: &[Box<Process>], cache: &PageCache, r: &mut FsRequest) {
    let mut n = 0;
    let processes = core::iter::once(current).chain(others.iter().map(|p| &**p));
    for id in processes.filter_map(|p| p.image_inode) {
        let Some(key) = cache.get(id).map(|i| i.key) else {
            continue;
        };
        if key != InodeKey::UNKNOWN && n + 16 <= r.path2.len() {
            r.path2[n..n + 8].copy_from_slice(&key.dev.to_le_bytes());
            r.path2[n + 8..n + 16].copy_from_slice(&key.ino.to_le_bytes());
            n += 16;
        }
    }
    r.path2_len = n as u32;
}

/// Open the absolute path `abs` and return its new description.
pub fn open_path<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    abs: Vec<u8>,
    flags: u32,
    mode: u32,
) -> KResult<FileRef> {
    let follow = flags & o::NOFOLLOW == 0;
    // 64-bit Linux opens every file with O_LARGEFILE (force_o_largefile).
    let keep = (flags | o::LARGEFILE) & !(o::CLOEXEC | o::CREAT | o::EXCL | o::TRUNC | o::NOCTTY);
    match find(cx, abs, follow)? {
        Found::Host(abs) => {
            let env = &mut *cx.env;
            let (current, others, cache) = (&*cx.p, &cx.tasks.others, &env.cache);
            let host_flags = flags & !o::CLOEXEC;
            match host_open(&mut *env.host, &abs, host_flags, mode, |r| {
                // O_RDONLY is 0: one test tells an open that writes.
                if flags & (o::ACCMODE | o::TRUNC) != 0 {
                    deny_running(current, others, cache, r);
                }
            })? {
                Ok((h, info, canon)) => Ok(host_file(cx, h, info, canon, keep)),
                Err(canon) => match find(cx, canon, follow)? {
                    Found::Host(_) => Err(Errno::ENOENT),
                    f => open_local(cx, f, flags, keep),
                },
            }
        }
        f => open_local(cx, f, flags, keep),
    }
}

/// A description of an opened host file; regular files join the page
/// cache (which may take the handle to fill pages with).
fn host_file<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    handle: u64,
    info: StatxInfo,
    canon: Vec<u8>,
    flags: u32,
) -> FileRef {
    let mut inode = None;
    let mut owns = false;
    if info.mode & S_IFMT == S_IFREG && flags & o::PATH == 0 {
        let fi = FileInfo {
            key: InodeKey {
                dev: info.dev,
                ino: info.ino,
            },
            size: info.size,
            mtime: info.mtime,
        };
        let readable = flags & o::ACCMODE != o::WRONLY;
        let writable = flags & o::ACCMODE != o::RDONLY;
        let env = &mut *cx.env;
        let filler = readable.then_some(handle);
        if let Ok((id, took)) = env
            .cache
            .attach(env.mem, env.frames, fi, &canon, filler, writable)
        {
            inode = Some(id);
            owns = took;
            if writable {
                env.cache.count_writer(id, true);
            }
            env.cache.refresh(env.mem, &mut *env.host, id);
        }
    }
    OpenFile::new(
        Node::Host {
            handle,
            inode,
            cache_owns_handle: owns,
            mode: info.mode,
            path: canon,
        },
        flags,
    )
}

fn open_local<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    found: Found,
    flags: u32,
    keep: u32,
) -> KResult<FileRef> {
    let wants_write = matches!(flags & o::ACCMODE, o::WRONLY | o::RDWR);
    let node = match found {
        Found::Dev(DevEntry::Dir, p) => dir_node(
            p,
            dev::ENTRIES.iter().map(|(n, t)| (n.to_vec(), *t)).collect(),
            wants_write,
        )?,
        Found::Dev(DevEntry::Node(n), _) => {
            if flags & o::DIRECTORY != 0 {
                return Err(Errno::ENOTDIR);
            }
            Node::Dev(n)
        }
        Found::Dev(DevEntry::Link(_), _) | Found::Proc(ProcEntry::Link(_), _) => {
            // O_NOFOLLOW on a symlink (O_PATH would give the link itself).
            return Err(Errno::ELOOP);
        }
        Found::Proc(ProcEntry::Dir(entries), p) => dir_node(p, entries, wants_write)?,
        Found::Proc(ProcEntry::File(f), p) => {
            if wants_write {
                return Err(Errno::EACCES);
            }
            if flags & o::DIRECTORY != 0 {
                return Err(Errno::ENOTDIR);
            }
            proc_text_fits(cx, f)?;
            Node::Generated {
                data: generate(cx, f),
                path: p,
            }
        }
        Found::Fd(n) => return reopen_fd(cx, n, flags),
        Found::Host(_) => return Err(Errno::ENOENT),
    };
    Ok(OpenFile::new(node, keep))
}

fn dir_node(path: Vec<u8>, entries: Vec<(Vec<u8>, u8)>, wants_write: bool) -> KResult<Node> {
    if wants_write {
        return Err(Errno::EISDIR);
    }
    Ok(Node::SynthDir { path, entries })
}

/// Open `/proc/self/fd/N`: Linux opens the file again.
fn reopen_fd<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    n: u64,
    flags: u32,
) -> KResult<FileRef> {
    let f = cx.p.fds.file(n)?;
    let keep = flags & !(o::CLOEXEC | o::CREAT | o::EXCL | o::TRUNC | o::NOCTTY);
    let b = f.borrow();
    let node = match &b.node {
        Node::Stdio(k) => Node::Stdio(*k),
        Node::Epoll(e) => Node::Epoll(e.clone()),
        Node::EventFd(c, sem) => Node::EventFd(c.clone(), *sem),
        Node::SignalFd(m) => Node::SignalFd(m.clone()),
        Node::Pipe { pipe, write } => {
            // Reopening a pipe end: one more end of the same pipe.
            let mut pb = pipe.borrow_mut();
            if *write {
                pb.writers += 1;
            } else {
                pb.readers += 1;
            }
            Node::Pipe {
                pipe: pipe.clone(),
                write: *write,
            }
        }
        Node::Dev(d) => Node::Dev(*d),
        Node::Generated { data, path } => Node::Generated {
            data: data.clone(),
            path: path.clone(),
        },
        Node::SynthDir { path, entries } => Node::SynthDir {
            path: path.clone(),
            entries: entries.clone(),
        },
        Node::Host { path, .. } => {
            let p = path.clone();
            drop(b);
            return open_path(cx, p, flags & !o::NOFOLLOW, 0);
        }
    };
    Ok(OpenFile::new(node, keep))
}

/// Release a description whose last reference is `f`.
pub fn release<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, f: FileRef) {
    if !is_last(&f) {
        return;
    }
    let b = f.borrow();
    if let Node::Pipe { pipe, write } = &b.node {
        let mut p = pipe.borrow_mut();
        if *write {
            p.writers = p.writers.saturating_sub(1);
        } else {
            p.readers = p.readers.saturating_sub(1);
        }
        // Readers may see end of file now, writers EPIPE.
        cx.tasks.wake_all();
        return;
    }
    if let Node::Host {
        handle,
        inode,
        cache_owns_handle,
        ..
    } = b.node
    {
        if !cache_owns_handle {
            host::close(&mut *cx.env.host, handle, b.writable());
        }
        if let Some(id) = inode {
            if b.flags & o::PATH == 0 && b.flags & o::ACCMODE != o::RDONLY {
                cx.env.cache.count_writer(id, false);
            }
            cx.env.cache.release(&mut *cx.env.host, id);
        }
    }
}

/// [`release`] of a description whose last reference is `f`, if it is a
/// host file's: its handle closed unless the page cache owns it, and its
/// inode's use (and write) counts dropped. Nothing for any other. (The
/// same steps as `release`'s, spelled out there: a shared function moved
/// the code of exec's and exit's releases, +3 instructions an exec.)
#[inline(always)]
fn release_host(cache: &mut PageCache, host: &mut dyn host::FsHost, f: &FileRef) {
    let b = f.borrow();
    if let Node::Host {
        handle,
        inode,
        cache_owns_handle,
        ..
    } = b.node
    {
        if !cache_owns_handle {
            host::close(host, handle, b.writable());
        }
        if let Some(id) = inode {
            if b.flags & o::PATH == 0 && b.flags & o::ACCMODE != o::RDONLY {
                cache.count_writer(id, false);
            }
            cache.release(host, id);
        }
    }
}

/// close(fd)
pub fn close<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, fd: u64) -> KResult<i64> {
    let f = cx.p.fds.close(fd)?;
    release(cx, f);
    Ok(0)
}

/// [`close`] of a host file's fd (ld.so's of each library it mapped) on
/// the syscall stub's short path (`run::short_call`), by process `p`: the
/// fd removed and, if it held the last reference, the description
/// released as [`release`] releases it, with the page cache and the
/// host's file service `fs`. None (nothing done) for any other fd (a
/// pipe's wakes its other end), which the full path serves.
#[inline(always)]
pub fn close_short(
    p: &mut Process,
    cache: &mut PageCache,
    fs: &mut dyn host::FsHost,
    fd: u64,
) -> Option<i64> {
    let host = matches!(
        p.fds.get(fd).ok()?.file.try_borrow().ok()?.node,
        Node::Host { .. }
    );
    if !host {
        return None;
    }
    let f = p.fds.close(fd).ok()?;
    if is_last(&f) {
        release_host(cache, fs, &f);
    }
    Some(0)
}

/// Serve a transfer of the user buffer `[buf, buf + len)` (at most
/// [`MAX_RW_COUNT`] bytes of it) through `f`, which gets its physical
/// pieces: room for two where the buffer lies within two pages, as most
/// do, else for [`MAX_PIECES`] (clearing the room for them is a kilobyte
/// string store, slow in emulated ring 0, that a short transfer need not
/// pay).
pub(super) fn with_pieces<M: PhysMem, H: HostIo, R>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    buf: u64,
    len: u64,
    write: bool,
    f: impl FnOnce(&mut Cx<'_, '_, '_, M, H>, &[IoVec]) -> KResult<R>,
) -> KResult<R> {
    let len = len.min(MAX_RW_COUNT);
    if let Some(piece) = cx.p.mm.mapped_user_piece(cx.env.mem, buf, len, write) {
        return f(cx, &[piece]);
    }
    if (buf & (PAGE_SIZE - 1)) + len <= 2 * PAGE_SIZE {
        let mut iov = [IoVec::default(); 2];
        let (n, _) =
            cx.p.mm
                .user_buffer_pieces(cx.env, buf, len, write, &mut iov)?;
        return f(cx, &iov[..n]);
    }
    let mut iov = [IoVec::default(); MAX_PIECES];
    let (n, _) =
        cx.p.mm
            .user_buffer_pieces(cx.env, buf, len, write, &mut iov)?;
    f(cx, &iov[..n])
}

/// A host result: the bytes transferred, or the errno it carries.
#[inline]
fn host_ret(r: i64) -> KResult<u64> {
    if r < 0 {
        return Err(Errno::from_ret(r));
    }
    Ok(r as u64)
}

/// Read up to `len` bytes of `f` at `pos` into user `buf` (no offset
/// update). Returns the bytes read.
pub fn read_at<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    f: &FileRef,
    buf: u64,
    len: u64,
    pos: u64,
) -> KResult<u64> {
    let b = f.borrow();
    if !b.readable() {
        return Err(Errno::EBADF);
    }
    if len == 0 {
        return Ok(0);
    }
    match &b.node {
        Node::Epoll(_) => Err(Errno::EINVAL),
        Node::EventFd(c, sem) => {
            let (c, sem, nonblock) = (c.clone(), *sem, b.flags & o::NONBLOCK != 0);
            drop(b);
            eventfd_read(cx, &c, sem, nonblock, buf, len)
        }
        Node::SignalFd(mask) => {
            let (mask, nonblock) = (mask.get(), b.flags & o::NONBLOCK != 0);
            drop(b);
            super::signalfd::read(cx, mask, nonblock, buf, len)
        }
        Node::Stdio(k) => {
            let k = u64::from(*k);
            with_pieces(cx, buf, len, true, |cx, iov| host_ret(cx.host.read(k, iov)))
        }
        Node::Dev(DevNode::Null) => Ok(0),
        Node::Dev(DevNode::Zero | DevNode::Full) => with_pieces(cx, buf, len, true, |cx, iov| {
            let mut total = 0;
            for v in iov {
                cx.env.mem.zero(v.phys, v.len);
                total += v.len;
            }
            Ok(total)
        }),
        Node::Dev(DevNode::Random | DevNode::Urandom) => {
            with_pieces(cx, buf, len, true, |cx, iov| host_ret(cx.host.random(iov)))
        }
        Node::Dev(DevNode::Tty) => {
            with_pieces(cx, buf, len, true, |cx, iov| host_ret(cx.host.read(0, iov)))
        }
        Node::Generated { data, .. } => {
            let start = (pos as usize).min(data.len());
            let n = (len as usize).min(data.len() - start);
            copy_to_user(&mut cx.p.mm, cx.env, buf, &data[start..start + n])?;
            Ok(n as u64)
        }
        Node::SynthDir { .. } => Err(Errno::EISDIR),
        Node::Pipe { pipe, .. } => {
            let pipe = pipe.clone();
            let nonblock = b.flags & o::NONBLOCK != 0;
            drop(b);
            pipe_read(cx, &pipe, buf, len, nonblock)
        }
        Node::Host {
            handle,
            inode,
            mode,
            ..
        } => {
            if mode & S_IFMT == S_IFDIR {
                return Err(Errno::EISDIR);
            }
            let (handle, inode) = (*handle, *inode);
            drop(b);
            match inode {
                Some(id) if len < DIRECT_READ_MIN => read_cached(cx, id, handle, buf, len, pos),
                _ => with_pieces(cx, buf, len, true, |cx, iov| {
                    host::pread(&mut *cx.env.host, handle, pos, iov)
                }),
            }
        }
    }
}

/// A short read served from the page cache (filling it on a miss).
fn read_cached<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    id: u16,
    handle: u64,
    buf: u64,
    len: u64,
    pos: u64,
) -> KResult<u64> {
    let size = cx.env.cache.get(id).map_or(0, |i| i.size);
    if pos >= size {
        return Ok(0);
    }
    let len = len.min(size - pos);
    // The inode may have no filling handle yet (the first opener was
    // write-only): this opener's readable handle serves.
    cx.env.cache.offer_handle(id, handle);
    let mut done = 0;
    while done < len {
        let cur = pos + done;
        let off = cur % PAGE_SIZE;
        let env = &mut *cx.env;
        let idx = cur / PAGE_SIZE;
        // A resident page (the usual case) is found here, without the
        // fill's call.
        let frame = match env.cache.get(id).and_then(|i| i.resident(idx)) {
            Some(frame) => frame,
            None => (env.cache).fill_around(env.mem, env.frames, &mut *env.host, id, idx, idx)?,
        };
        let n = (PAGE_SIZE - off).min(len - done);
        let mut sub = 0;
        while sub < n {
            let va = buf + done + sub;
            let pa = crate::uaccess::user_page_quick(&mut cx.p.mm, cx.env, va, true)?;
            let m = (PAGE_SIZE - (va % PAGE_SIZE)).min(n - sub);
            cx.env.mem.copy_local(pa, frame + off + sub, m);
            sub += m;
        }
        done += n;
    }
    Ok(done)
}

/// Write `len` bytes from user `buf` to `f` at `pos` (`None`: append).
pub fn write_at<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    f: &FileRef,
    buf: u64,
    len: u64,
    pos: Option<u64>,
) -> KResult<u64> {
    if !f.borrow().writable() {
        return Err(Errno::EBADF);
    }
    if len == 0 {
        return Ok(0);
    }
    if matches!(f.borrow().node, Node::Dev(DevNode::Full)) {
        return Err(Errno::ENOSPC);
    }
    if let Node::EventFd(c, _) = &f.borrow().node {
        return eventfd_write(cx, c, buf, len);
    }
    if let Node::Pipe { pipe, .. } = &f.borrow().node {
        let nonblock = f.borrow().flags & o::NONBLOCK != 0;
        return pipe_write(cx, pipe, buf, len, nonblock);
    }
    with_pieces(cx, buf, len, false, |cx, iov| write_pieces(cx, f, iov, pos))
}

/// Write the physical pieces `iov` to `f` at `pos` (`None`: append).
pub fn write_pieces<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    f: &FileRef,
    iov: &[IoVec],
    pos: Option<u64>,
) -> KResult<u64> {
    let b = f.borrow();
    let total: u64 = iov.iter().map(|v| v.len).sum();
    let stdio = match &b.node {
        Node::Stdio(k) => Some(u64::from(*k)),
        Node::Dev(DevNode::Tty) => Some(2),
        _ => None,
    };
    if let Some(k) = stdio {
        let r = cx.host.write(k, iov);
        if r < 0 {
            return Err(Errno::from_ret(r));
        }
        return Ok(r as u64);
    }
    match &b.node {
        Node::Dev(DevNode::Full) => Err(Errno::ENOSPC),
        Node::Dev(_) => Ok(total),
        Node::Generated { .. }
        | Node::SynthDir { .. }
        | Node::Stdio(_)
        | Node::Pipe { .. }
        | Node::Epoll(_)
        | Node::EventFd(..)
        | Node::SignalFd(_) => Err(Errno::EINVAL),
        Node::Host { handle, inode, .. } => {
            let (handle, inode) = (*handle, *inode);
            drop(b);
            let r = begin(&mut *cx.env.host, op::PWRITE, handle);
            r.offset = pos.unwrap_or(u64::MAX);
            let written = host::call(&mut *cx.env.host, iov)?;
            let new_size = cx.env.host.req().out_offset;
            if let Some(id) = inode {
                let start = pos.unwrap_or(new_size.saturating_sub(written));
                let env = &mut *cx.env;
                env.cache
                    .written(env.mem, id, iov, (start, written), new_size);
            }
            Ok(written)
        }
    }
}

/// sendfile(out_fd, in_fd, offset, count): the input file's page-cache
/// frames go to the output in one host write (no copy in the guest). The
/// input must be a regular host file (else EINVAL, and programs fall back
/// to read and write, as on Linux).
pub fn sendfile<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    out_fd: u64,
    in_fd: u64,
    offp: u64,
    count: u64,
) -> KResult<i64> {
    let inf = cx.p.fds.file(in_fd)?;
    let outf = cx.p.fds.file(out_fd)?;
    if !inf.borrow().readable() || !outf.borrow().writable() {
        return Err(Errno::EBADF);
    }
    if outf.borrow().flags & o::APPEND != 0 {
        return Err(Errno::EINVAL);
    }
    let (handle, id) = match inf.borrow().node {
        Node::Host {
            handle,
            inode: Some(id),
            ..
        } => (handle, id),
        _ => return Err(Errno::EINVAL),
    };
    let pos = match offp {
        0 => inf.borrow().pos,
        p => crate::uaccess::get_user_u64(&mut cx.p.mm, cx.env, p)?,
    };
    if (pos as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let size = cx.env.cache.get(id).map_or(0, |i| i.size);
    let len = count.min(MAX_RW_COUNT).min(size.saturating_sub(pos));
    if len == 0 {
        return Ok(0);
    }
    cx.env.cache.offer_handle(id, handle);
    let out_pipe = match &outf.borrow().node {
        Node::Pipe { pipe, .. } => Some((pipe.clone(), outf.borrow().flags & o::NONBLOCK != 0)),
        _ => None,
    };
    if let Some((pipe, nonblock)) = out_pipe {
        let sent = sendfile_to_pipe(cx, &pipe, id, pos, len, nonblock)?;
        match offp {
            0 => inf.borrow_mut().pos = pos + sent,
            p => crate::uaccess::put_user_u64(&mut cx.p.mm, cx.env, p, pos + sent)?,
        }
        return Ok(sent as i64);
    }
    let mut iov = [IoVec::default(); MAX_PIECES];
    let mut n = 0;
    let mut done = 0;
    while done < len && n < MAX_PIECES {
        let cur = pos + done;
        let env = &mut *cx.env;
        let frame = env
            .cache
            .page(env.mem, env.frames, &mut *env.host, id, cur / PAGE_SIZE)?;
        let off = cur % PAGE_SIZE;
        let m = (PAGE_SIZE - off).min(len - done);
        iov[n] = IoVec {
            phys: frame + off,
            len: m,
        };
        n += 1;
        done += m;
    }
    let out_pos = {
        let b = outf.borrow();
        seekable(&b).then_some(b.pos)
    };
    let sent = write_pieces(cx, &outf, &iov[..n], Some(out_pos.unwrap_or(0)))?;
    if let Some(p) = out_pos {
        outf.borrow_mut().pos = p + sent;
    }
    match offp {
        0 => inf.borrow_mut().pos = pos + sent,
        p => crate::uaccess::put_user_u64(&mut cx.p.mm, cx.env, p, pos + sent)?,
    }
    Ok(sent as i64)
}

/// `sendfile` into a pipe, as Linux allows: up to `len` bytes of cached
/// file `id` from `pos`, as a write of them would put them in (EPIPE with
/// no reader, all or nothing up to PIPE_BUF, or wait for room), copied
/// from the page cache into the ring with no user buffer between.
fn sendfile_to_pipe<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    pipe: &crate::fs::pipe::PipeRef,
    id: u16,
    pos: u64,
    len: u64,
    nonblock: bool,
) -> KResult<u64> {
    pipe_put(cx, pipe, len, nonblock, |cx, a, b| {
        let k = a.len() as u64;
        fill_from_cache(cx.env, id, pos, a)?;
        fill_from_cache(cx.env, id, pos + k, b)
    })
}

/// Fill `dst` with cached file `id`'s bytes from `pos` (within its size),
/// a page at a time.
fn fill_from_cache<M: PhysMem>(
    env: &mut crate::syscall::MmEnv<'_, M>,
    id: u16,
    pos: u64,
    dst: &mut [u8],
) -> KResult<()> {
    let mut done = 0;
    while done < dst.len() {
        let cur = pos + done as u64;
        let frame = env
            .cache
            .page(env.mem, env.frames, &mut *env.host, id, cur / PAGE_SIZE)?;
        let off = cur % PAGE_SIZE;
        let m = ((PAGE_SIZE - off) as usize).min(dst.len() - done);
        env.mem.read_bytes(frame + off, &mut dst[done..done + m]);
        done += m;
    }
    Ok(())
}

/// Read from a pipe: what is there, end of file when no writer is left,
/// or wait (EAGAIN with O_NONBLOCK).
fn pipe_read<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    pipe: &crate::fs::pipe::PipeRef,
    buf: u64,
    len: u64,
    nonblock: bool,
) -> KResult<u64> {
    let mut p = pipe.borrow_mut();
    if p.is_empty() {
        return match p.writers {
            0 => Ok(0),
            _ => Err(must_wait(nonblock)),
        };
    }
    // Straight from the ring to the program's pages, in its two parts.
    let (a, b) = p.unread(len as usize);
    let n = a.len() + b.len();
    copy_to_user(&mut cx.p.mm, cx.env, buf, a)?;
    if !b.is_empty() {
        copy_to_user(&mut cx.p.mm, cx.env, buf + a.len() as u64, b)?;
    }
    p.consume(n);
    drop(p);
    cx.tasks.wake_all();
    Ok(n as u64)
}

/// What a call that must wait answers: EAGAIN for a non-blocking file,
/// else ERESTARTSYS (the task sleeps and the call runs again).
fn must_wait(nonblock: bool) -> Errno {
    if nonblock {
        Errno::EAGAIN
    } else {
        Errno::ERESTARTSYS
    }
}

/// Kernel heap bytes pipes leave to everything else (tasks, fd tables).
const HEAP_RESERVE: usize = 4 * crate::process::task::TASK_HEAP_BYTES;

/// Write to a pipe: EPIPE with no reader, as much as fits (a write of at
/// most PIPE_BUF bytes whole or not at all), or wait for room.
fn pipe_write<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    pipe: &crate::fs::pipe::PipeRef,
    buf: u64,
    len: u64,
    nonblock: bool,
) -> KResult<u64> {
    // Straight from the program's pages into the ring, in its two parts.
    pipe_put(cx, pipe, len, nonblock, |cx, a, b| {
        let k = a.len() as u64;
        crate::uaccess::copy_from_user(&mut cx.p.mm, cx.env, buf, a)?;
        if !b.is_empty() {
            crate::uaccess::copy_from_user(&mut cx.p.mm, cx.env, buf + k, b)?;
        }
        Ok(())
    })
}

/// Put up to `len` bytes into `pipe` as a write does (see [`pipe_write`]):
/// `fill` writes the ring's room for them, in its two parts; nothing is
/// put in if it fails. The bytes put in.
fn pipe_put<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    pipe: &crate::fs::pipe::PipeRef,
    len: u64,
    nonblock: bool,
    fill: impl FnOnce(&mut Cx<'_, '_, '_, M, H>, &mut [u8], &mut [u8]) -> KResult<()>,
) -> KResult<u64> {
    let mut p = pipe.borrow_mut();
    if p.readers == 0 {
        return Err(Errno::EPIPE);
    }
    let n = pipe_room(&p, len, (cx.tasks.heap_free)());
    if n == 0 {
        return Err(must_wait(nonblock));
    }
    let (a, b) = p.space(n);
    fill(cx, a, b)?;
    p.commit(n);
    drop(p);
    cx.tasks.wake_all();
    Ok(n as u64)
}

/// How many of `len` bytes a write may put in pipe `p` now (0: it must
/// wait), with `heap_free` bytes of kernel heap left. Pipe contents live
/// in the kernel heap: where the ring would have to grow with too little
/// of it left (many full pipes), only what the ring holds counts as room.
/// A third of the free space, as the old ring lives while the new one is
/// filled.
fn pipe_room(p: &crate::fs::pipe::Pipe, len: u64, heap_free: usize) -> usize {
    let len = len.min(MAX_RW_COUNT) as usize;
    let n = p.writable_now(len);
    if p.growth_for(n) <= heap_free.saturating_sub(HEAP_RESERVE) / 3 {
        return n;
    }
    let fits = p.capacity() - p.len();
    if len <= crate::fs::pipe::PIPE_BUF && fits < len {
        0
    } else {
        n.min(fits)
    }
}

/// Read an eventfd: its counter (or 1 as a semaphore), which is then
/// reset (or decremented); wait while it is 0.
fn eventfd_read<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    c: &alloc::rc::Rc<core::cell::RefCell<u64>>,
    sem: bool,
    nonblock: bool,
    buf: u64,
    len: u64,
) -> KResult<u64> {
    if len < 8 {
        return Err(Errno::EINVAL);
    }
    let v = *c.borrow();
    if v == 0 {
        return Err(must_wait(nonblock));
    }
    let out = if sem { 1 } else { v };
    copy_to_user(&mut cx.p.mm, cx.env, buf, &out.to_le_bytes())?;
    *c.borrow_mut() = v - out;
    cx.tasks.wake_all();
    Ok(8)
}

/// Add to an eventfd's counter.
fn eventfd_write<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    c: &alloc::rc::Rc<core::cell::RefCell<u64>>,
    buf: u64,
    len: u64,
) -> KResult<u64> {
    if len < 8 {
        return Err(Errno::EINVAL);
    }
    let add = crate::uaccess::get_user_u64(&mut cx.p.mm, cx.env, buf)?;
    if add == u64::MAX {
        return Err(Errno::EINVAL);
    }
    let v = *c.borrow();
    if v.checked_add(add).is_none_or(|n| n == u64::MAX) {
        return Err(Errno::EAGAIN);
    }
    *c.borrow_mut() = v + add;
    cx.tasks.wake_all();
    Ok(8)
}

/// eventfd2(initval, flags) and eventfd(initval).
pub fn eventfd2<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    init: u64,
    flags: u64,
) -> KResult<i64> {
    const EFD_SEMAPHORE: u64 = 1;
    let flags32 = flags as u32;
    if flags & !(EFD_SEMAPHORE | u64::from(o::CLOEXEC | o::NONBLOCK)) != 0 {
        return Err(Errno::EINVAL);
    }
    let node = Node::EventFd(
        alloc::rc::Rc::new(core::cell::RefCell::new(init & 0xffff_ffff)),
        flags & EFD_SEMAPHORE != 0,
    );
    let f = OpenFile::new(node, o::RDWR | (flags32 & o::NONBLOCK));
    Ok(cx.p.fds.alloc(f, flags32 & o::CLOEXEC != 0)? as i64)
}

/// epoll_create1(flags) and epoll_create(size).
pub fn epoll_create1<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    flags: u64,
) -> KResult<i64> {
    if flags & !u64::from(o::CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let node = Node::Epoll(alloc::rc::Rc::new(core::cell::RefCell::new(
        alloc::vec::Vec::new(),
    )));
    let f = OpenFile::new(node, o::RDWR);
    Ok(cx.p.fds.alloc(f, flags != 0)? as i64)
}

fn epoll_of<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    epfd: u64,
) -> KResult<crate::fs::file::EpollRef> {
    match &cx.p.fds.file(epfd)?.borrow().node {
        Node::Epoll(e) => Ok(e.clone()),
        _ => Err(Errno::EINVAL),
    }
}

/// epoll_ctl(epfd, op, fd, event)
pub fn epoll_ctl<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    epfd: u64,
    op: u64,
    fd: u64,
    ev: u64,
) -> KResult<i64> {
    const ADD: u64 = 1;
    const DEL: u64 = 2;
    const MOD: u64 = 3;
    let e = epoll_of(cx, epfd)?;
    let f = cx.p.fds.file(fd)?;
    if fd == epfd {
        return Err(Errno::EINVAL);
    }
    if matches!(
        f.borrow().node,
        Node::Host { .. } | Node::Generated { .. } | Node::SynthDir { .. }
    ) {
        // Regular files and directories cannot be polled (Linux: EPERM).
        return Err(Errno::EPERM);
    }
    let (events, data) = if op == DEL {
        (0, 0)
    } else {
        let mut raw = [0u8; 12];
        crate::uaccess::copy_from_user(&mut cx.p.mm, cx.env, ev, &mut raw)?;
        let events = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let mut d = [0u8; 8];
        d.copy_from_slice(&raw[4..12]);
        (events, u64::from_le_bytes(d))
    };
    let mut list = e.borrow_mut();
    let at = list.iter().position(|x| x.0 == fd);
    match (op, at) {
        (ADD, Some(_)) => Err(Errno::EEXIST),
        (ADD, None) => {
            list.push((fd, events, data));
            Ok(0)
        }
        (MOD, Some(i)) => {
            list[i] = (fd, events, data);
            Ok(0)
        }
        (DEL, Some(i)) => {
            list.remove(i);
            Ok(0)
        }
        (MOD | DEL, None) => Err(Errno::ENOENT),
        _ => Err(Errno::EINVAL),
    }
}

/// epoll_wait(epfd, events, maxevents, timeout ms) and epoll_pwait: the
/// watched fds that are ready; with none, wait (until the timeout).
pub fn epoll_wait<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    epfd: u64,
    out: u64,
    max: u64,
    timeout_ms: i64,
) -> KResult<i64> {
    if max == 0 || max > 1 << 20 {
        return Err(Errno::EINVAL);
    }
    let e = epoll_of(cx, epfd)?;
    let list = e.borrow().clone();
    let mut got = alloc::vec::Vec::new();
    for (fd, events, data) in list {
        let Ok(f) = cx.p.fds.file(fd) else { continue };
        let r = u32::from(f.borrow().readiness(cx.p.sig_pending));
        // EPOLLERR and EPOLLHUP are always reported.
        let hit = r & (events | 0x18);
        if hit != 0 && (got.len() as u64) < max {
            got.push((hit, data));
        }
    }
    if got.is_empty() {
        return timed_wait(cx, timeout_ms);
    }
    cx.p.deadline = None;
    cx.p.timed_out = false;
    let mut bytes = alloc::vec::Vec::with_capacity(got.len() * 12);
    for (ev, data) in &got {
        bytes.extend_from_slice(&ev.to_le_bytes());
        bytes.extend_from_slice(&data.to_le_bytes());
    }
    copy_to_user(&mut cx.p.mm, cx.env, out, &bytes)?;
    Ok(got.len() as i64)
}

/// Nothing is ready: 0 at once for a zero timeout, 0 when the timeout ran
/// out, else wait (with a deadline for a positive timeout).
pub fn timed_wait<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    timeout_ms: i64,
) -> KResult<i64> {
    if timeout_ms == 0 || core::mem::take(&mut cx.p.timed_out) {
        cx.p.deadline = None;
        return Ok(0);
    }
    if timeout_ms > 0 && cx.p.deadline.is_none() {
        let now = cx.host.now_ns(super::time::Clock::Monotonic);
        cx.p.deadline = Some(now.saturating_add(timeout_ms as u64 * 1_000_000));
    }
    Err(Errno::ERESTARTSYS)
}

/// pipe2(fds, flags) and pipe(fds).
pub fn pipe2<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    ufds: u64,
    flags: u64,
) -> KResult<i64> {
    let flags = flags as u32;
    if flags & !(o::CLOEXEC | o::NONBLOCK | o::DIRECT) != 0 {
        return Err(Errno::EINVAL);
    }
    let pipe = crate::fs::pipe::Pipe::new();
    let keep = flags & o::NONBLOCK;
    let r = OpenFile::new(
        Node::Pipe {
            pipe: pipe.clone(),
            write: false,
        },
        o::RDONLY | keep,
    );
    let w = OpenFile::new(Node::Pipe { pipe, write: true }, o::WRONLY | keep);
    let cloexec = flags & o::CLOEXEC != 0;
    let rfd = cx.p.fds.alloc(r, cloexec)?;
    let wfd = match cx.p.fds.alloc(w, cloexec) {
        Ok(fd) => fd,
        Err(e) => {
            let f = cx.p.fds.close(rfd)?;
            release(cx, f);
            return Err(e);
        }
    };
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(rfd as u32).to_le_bytes());
    out[4..].copy_from_slice(&(wfd as u32).to_le_bytes());
    if let Err(e) = copy_to_user(&mut cx.p.mm, cx.env, ufds, &out) {
        for fd in [rfd, wfd] {
            let f = cx.p.fds.close(fd)?;
            release(cx, f);
        }
        return Err(e);
    }
    Ok(0)
}

/// Whether reads and writes of `f` move an offset (not for stdio, pipes
/// and character devices).
fn seekable(f: &OpenFile) -> bool {
    matches!(f.node, Node::Host { .. } | Node::Generated { .. })
}

/// read(fd, buf, count)
pub fn read<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
    buf: u64,
    count: u64,
) -> KResult<i64> {
    let f = cx.p.fds.file(fd)?;
    // Linux's access_ok on the whole buffer, before the length is capped
    // (a bad fd is still EBADF first).
    let bad = crate::mm::space::check_user_range(buf, count).is_err();
    if bad && count != 0 && f.borrow().readable() {
        return Err(Errno::EFAULT);
    }
    let pos = f.borrow().pos;
    let n = read_at(cx, &f, buf, count, pos)?;
    let mut b = f.borrow_mut();
    if seekable(&b) {
        b.pos = pos + n;
    }
    Ok(n as i64)
}

/// write(fd, buf, count)
pub fn write<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
    buf: u64,
    count: u64,
) -> KResult<i64> {
    if let Some(r) = write_stdio(cx.p, cx.env.mem, cx.host, fd, buf, count) {
        return r;
    }
    write_file(cx, fd, buf, count)
}

/// [`write`] past its stdio fast path ([`write_stdio`], which found
/// nothing to do), out of line (its frame and saved registers are not the
/// fast path's to pay).
#[inline(never)]
pub fn write_file<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
    buf: u64,
    count: u64,
) -> KResult<i64> {
    let f = cx.p.fds.file(fd)?;
    let (pos, append) = {
        let b = f.borrow();
        (b.pos, b.flags & o::APPEND != 0)
    };
    let n = write_at(cx, &f, buf, count, (!append).then_some(pos))?;
    let mut b = f.borrow_mut();
    if seekable(&b) {
        b.pos = if append {
            cx.env.host.req().out_offset
        } else {
            pos + n
        };
    }
    Ok(n as i64)
}

/// [`write`] by process `p` to the host's stdio (a program's stdout or
/// stderr, open for writing) of a buffer that lies in one mapped page:
/// [`write_at`]'s answer, without its tests of the other nodes, its
/// pieces and the offset that stdio has not. The file is looked at in the
/// fd table, not held by a reference of its own. `None` (nothing done):
/// any other write (a bad fd included, which [`write`] then reports).
/// The syscall stub's short path serves a call with it too.
#[inline(always)]
pub fn write_stdio<M: PhysMem, H: HostIo>(
    p: &Process,
    mem: &M,
    host: &mut H,
    fd: u64,
    buf: u64,
    count: u64,
) -> Option<KResult<i64>> {
    let k = stdio_at(p, fd, true)?;
    let len = count.min(MAX_RW_COUNT);
    let piece = p.mm.mapped_user_piece(mem, buf, len, false)?;
    let r = host.write(k, &[piece]);
    Some(host_ret(r).map(|n| n as i64))
}

/// The host's stdio stream that `fd` of `p` is, if it is one open for
/// writing (`write`) or for reading.
pub fn stdio_stream(p: &Process, fd: u64, write: bool) -> Option<u64> {
    stdio_at(p, fd, write)
}

/// [`stdio_stream`], in line.
#[inline(always)]
fn stdio_at(p: &Process, fd: u64, write: bool) -> Option<u64> {
    let b = p.fds.get(fd).ok()?.file.borrow();
    match b.node {
        Node::Stdio(k) if (write && b.writable()) || (!write && b.readable()) => Some(u64::from(k)),
        _ => None,
    }
}

/// [`read`] of the host's stdio (a readable [`Node::Stdio`] at `fd`) into
/// a user buffer in one page or two, each mapped writable where a last
/// page table finds it ([`Mm::mapped_user_piece`]): the host reads into
/// the same memory as the full path's pieces. None, with nothing done,
/// for any other read (a bad fd included, which [`read`] then reports).
/// The syscall stub's short path serves a call of fds 0 to 2 with it (the
/// host's stdio unless a program moved it; any other read goes to the
/// full path at once): a program reading a pipe or a file on vmrun's stdin
/// makes one such call per buffer.
#[inline(always)]
pub fn read_stdio<M: PhysMem, H: HostIo>(
    p: &Process,
    mem: &M,
    host: &mut H,
    fd: u64,
    buf: u64,
    count: u64,
) -> Option<KResult<i64>> {
    let k = stdio_at(p, fd, false)?;
    let len = count.min(MAX_RW_COUNT);
    let head_len = len.min(PAGE_SIZE - (buf & (PAGE_SIZE - 1)));
    let head = p.mm.mapped_user_piece(mem, buf, head_len, true)?;
    let r = if head_len == len {
        host.read(k, &[head])
    } else {
        let tail =
            p.mm.mapped_user_piece(mem, buf + head_len, len - head_len, true)?;
        host.read(k, &[head, tail])
    };
    Some(host_ret(r).map(|n| n as i64))
}

/// [`read`] of a regular file whose bytes are all in the page cache, on
/// the syscall stub's short path (`run::short_call`): the bytes copied
/// into the user buffer, mapped writable where a last page table finds it
/// ([`Mm::mapped_user_page`]), and the file's position moved, as the full
/// path's [`read_cached`] does; `Some(0)` at or past the end of the file.
/// `None`, with nothing done, for any other read (another kind of file, a
/// bad fd, a read of [`DIRECT_READ_MIN`] or more, one longer than a page,
/// a page not cached, a buffer not mapped), which the full path serves.
/// The file's size is the cache's, as [`read_cached`] takes it.
pub fn read_cached_short<M: PhysMem>(
    p: &Process,
    cache: &crate::fs::cache::PageCache,
    mem: &mut M,
    fd: u64,
    buf: u64,
    count: u64,
) -> Option<u64> {
    cached_short::<M, false>(p, cache, mem, [fd, buf, count, 0])
}

/// [`pread64`] of a regular file whose bytes are all in the page cache, on
/// the syscall stub's short path, as [`read_cached_short`] serves a read
/// (at offset `off`, the file's position untouched): ld.so reads a
/// library's program headers so. `None`, with nothing done, for what the
/// full path serves (a negative offset among them: EINVAL).
pub fn pread64_cached_short<M: PhysMem>(
    p: &Process,
    cache: &crate::fs::cache::PageCache,
    mem: &mut M,
    a: [u64; 4],
) -> Option<u64> {
    if (a[3] as i64) < 0 {
        return None;
    }
    cached_short::<M, true>(p, cache, mem, a)
}

/// [`read_cached_short`] (`fd, buf, count` of `a`) and, if `PREAD`,
/// [`pread64_cached_short`] (at `a[3]`).
#[inline(always)]
fn cached_short<M: PhysMem, const PREAD: bool>(
    p: &Process,
    cache: &crate::fs::cache::PageCache,
    mem: &mut M,
    [fd, buf, count, off]: [u64; 4],
) -> Option<u64> {
    // The cheapest tests first: a read the full path serves (a first read
    // of a file, which fills the cache) pays for as few as it can.
    if count == 0 || count > PAGE_SIZE {
        return None;
    }
    let file = &p.fds.get(fd).ok()?.file;
    let mut b = file.try_borrow_mut().ok()?;
    let Node::Host {
        inode: Some(id),
        mode,
        ..
    } = b.node
    else {
        return None;
    };
    let ino = cache.get(id)?;
    let pos = if PREAD { off } else { b.pos };
    if pos < ino.size {
        ino.resident(pos / PAGE_SIZE)?;
    }
    if !b.readable() || mode & S_IFMT != S_IFREG {
        return None;
    }
    // The full path's access_ok on the whole buffer comes first, at the
    // end of the file too.
    crate::mm::space::check_user_range(buf, count).ok()?;
    let n = count.min(ino.size.saturating_sub(pos));
    // At most two cache pages and two user pages: at most three moves,
    // all found before any is made, then made together.
    let at = |done: u64| -> Option<CopyItem> {
        let (cur, va) = (pos + done, buf + done);
        let src = ino.resident(cur / PAGE_SIZE)? + cur % PAGE_SIZE;
        let dst = p.mm.mapped_user_page(mem, va, true)?;
        let len = (PAGE_SIZE - cur % PAGE_SIZE)
            .min(PAGE_SIZE - va % PAGE_SIZE)
            .min(n - done);
        Some(CopyItem { dst, src, len })
    };
    if n > 0 {
        let a = at(0)?;
        if a.len == n {
            mem.copy_local(a.dst, a.src, a.len);
        } else {
            let b = at(a.len)?;
            match a.len + b.len == n {
                true => mem.copy_local_list(&[a, b]),
                false => {
                    let c = at(a.len + b.len)?;
                    mem.copy_local_list(&[a, b, c]);
                }
            }
        }
    }
    if !PREAD {
        b.pos = pos + n;
    }
    Some(n)
}

/// pread64(fd, buf, count, offset)
pub fn pread64<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
    buf: u64,
    count: u64,
    off: u64,
) -> KResult<i64> {
    let f = cx.p.fds.file(fd)?;
    if !seekable(&f.borrow()) {
        return Err(Errno::ESPIPE);
    }
    if (off as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(read_at(cx, &f, buf, count, off)? as i64)
}

/// pwrite64(fd, buf, count, offset)
pub fn pwrite64<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
    buf: u64,
    count: u64,
    off: u64,
) -> KResult<i64> {
    let f = cx.p.fds.file(fd)?;
    if !seekable(&f.borrow()) {
        return Err(Errno::ESPIPE);
    }
    if (off as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(write_at(cx, &f, buf, count, Some(off))? as i64)
}

/// The iovec array at `uiov` (`cnt` entries).
fn user_iovecs<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    uiov: u64,
    cnt: u64,
) -> KResult<Vec<(u64, u64)>> {
    // import_iovec takes the count as an unsigned int.
    let cnt = cnt & 0xffff_ffff;
    if cnt > 1024 {
        return Err(Errno::EINVAL);
    }
    let mut v = Vec::with_capacity(cnt as usize);
    let mut total: u64 = 0;
    for i in 0..cnt {
        let mut raw = [0u8; 16];
        crate::uaccess::copy_from_user(&mut cx.p.mm, cx.env, uiov + i * 16, &mut raw)?;
        let base = u64::from_le_bytes(raw[..8].try_into().map_err(|_| Errno::EFAULT)?);
        let len = u64::from_le_bytes(raw[8..].try_into().map_err(|_| Errno::EFAULT)?);
        if (len as i64) < 0 {
            return Err(Errno::EINVAL);
        }
        total = total.saturating_add(len);
        v.push((base, len));
    }
    if total > MAX_RW_COUNT && (total as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(v)
}

/// readv/preadv (`off` None: at the file offset).
pub fn readv<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
    uiov: u64,
    cnt: u64,
    off: Option<u64>,
) -> KResult<i64> {
    let f = cx.p.fds.file(fd)?;
    let iov = user_iovecs(cx, uiov, cnt)?;
    let seek = seekable(&f.borrow());
    if off.is_some() && !seek {
        return Err(Errno::ESPIPE);
    }
    let mut pos = off.unwrap_or(f.borrow().pos);
    let mut total = 0u64;
    for (base, len) in iov {
        if len == 0 {
            continue;
        }
        let n = match read_at(cx, &f, base, len, pos) {
            Ok(n) => n,
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        };
        total += n;
        pos += n;
        if n < len || !seek && n > 0 {
            break;
        }
    }
    if off.is_none() && seek {
        f.borrow_mut().pos = pos;
    }
    Ok(total as i64)
}

/// writev/pwritev (`off` None: at the file offset).
pub fn writev<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
    uiov: u64,
    cnt: u64,
    off: Option<u64>,
) -> KResult<i64> {
    let f = cx.p.fds.file(fd)?;
    let iov = user_iovecs(cx, uiov, cnt)?;
    let seek = seekable(&f.borrow());
    if off.is_some() && !seek {
        return Err(Errno::ESPIPE);
    }
    let append = off.is_none() && f.borrow().flags & o::APPEND != 0;
    // Stdio: one gathered host write, so lines are not split.
    if !seek {
        return writev_gather(cx, &f, &iov);
    }
    let mut pos = off.unwrap_or(f.borrow().pos);
    let mut total = 0u64;
    for (base, len) in iov {
        if len == 0 {
            continue;
        }
        let n = match write_at(cx, &f, base, len, (!append).then_some(pos)) {
            Ok(n) => n,
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        };
        total += n;
        pos = if append {
            cx.env.host.req().out_offset
        } else {
            pos + n
        };
        if n < len {
            break;
        }
    }
    if off.is_none() {
        f.borrow_mut().pos = pos;
    }
    Ok(total as i64)
}

fn writev_gather<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    f: &FileRef,
    iov: &[(u64, u64)],
) -> KResult<i64> {
    let k = match &f.borrow().node {
        Node::Stdio(k) => Some(u64::from(*k)),
        Node::Dev(DevNode::Tty) => Some(2),
        _ => None,
    };
    let Some(k) = k.filter(|_| f.borrow().writable()) else {
        let mut total = 0;
        for &(base, len) in iov {
            total += write_at(cx, f, base, len, None)?;
        }
        return Ok(total as i64);
    };
    // Room for the pieces: a few where the buffers span few pages, as a
    // stdio library's do, else MAX_PIECES (clearing their kilobyte is a
    // ZERO hypercall where ring 0 is emulated).
    if pages_spanned(iov) <= FEW_PIECES as u64 {
        gather_to_host(cx, k, iov, &mut [IoVec::default(); FEW_PIECES])
    } else {
        gather_to_host(cx, k, iov, &mut [IoVec::default(); MAX_PIECES])
    }
}

/// Room for the pieces of a writev whose buffers span at most this many
/// pages.
const FEW_PIECES: usize = 4;

/// How many pages the buffers of `iov` span in all (an upper bound of
/// their physical pieces).
pub(super) fn pages_spanned(iov: &[(u64, u64)]) -> u64 {
    iov.iter()
        .filter(|&&(_, len)| len != 0)
        .map(|&(base, len)| ((base & (PAGE_SIZE - 1)).saturating_add(len)).div_ceil(PAGE_SIZE))
        .fold(0, u64::saturating_add)
}

/// Gather the buffers of `iov` into `pieces` (as many as fit) and write
/// them to host stdio fd `k` at once.
#[inline(always)]
fn gather_to_host<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    k: u64,
    iov: &[(u64, u64)],
    pieces: &mut [IoVec],
) -> KResult<i64> {
    let mut used = 0;
    for &(base, len) in iov {
        if len == 0 {
            continue;
        }
        if used == pieces.len() {
            break;
        }
        let (n, done) =
            cx.p.mm
                .user_buffer_pieces(cx.env, base, len, false, &mut pieces[used..])?;
        used += n;
        if done < len {
            break;
        }
    }
    if used == 0 {
        return Ok(0);
    }
    let r = cx.host.write(k, &pieces[..used]);
    if r < 0 {
        return Err(Errno::from_ret(r));
    }
    Ok(r)
}

/// lseek(fd, offset, whence)
pub fn lseek<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    fd: u64,
    off: u64,
    whence: u64,
) -> KResult<i64> {
    let f = cx.p.fds.file(fd)?;
    let (handle, size, is_dir, cur) = {
        let b = f.borrow();
        match &b.node {
            Node::Host { handle, mode, .. } => {
                (Some(*handle), None, mode & S_IFMT == S_IFDIR, b.pos)
            }
            Node::Generated { data, .. } => (None, Some(data.len() as u64), false, b.pos),
            Node::SynthDir { .. } => (None, Some(0), true, b.pos),
            Node::Dev(_) => return Ok(0),
            Node::Stdio(k) => return seek_stdio(cx, *k, off, whence),
            Node::Pipe { .. } | Node::Epoll(_) | Node::EventFd(..) | Node::SignalFd(_) => {
                return Err(Errno::ESPIPE)
            }
        }
    };
    let off = off as i64;
    let new = match whence {
        0 => off,
        1 => (cur as i64).checked_add(off).ok_or(Errno::EOVERFLOW)?,
        2 => {
            if is_dir {
                return Err(Errno::EINVAL);
            }
            let size = match size {
                Some(s) => s,
                None => host_size(cx, handle.unwrap_or(0))?,
            };
            (size as i64).checked_add(off).ok_or(Errno::EOVERFLOW)?
        }
        3 | 4 => {
            let Some(h) = handle else {
                return Err(Errno::EINVAL);
            };
            let r = begin(&mut *cx.env.host, op::SEEK, h);
            r.mode = whence;
            r.offset = off as u64;
            host::call(&mut *cx.env.host, &[])? as i64
        }
        _ => return Err(Errno::EINVAL),
    };
    if new < 0 {
        return Err(Errno::EINVAL);
    }
    let mut b = f.borrow_mut();
    (b.pos, b.dir_end) = (new as u64, false);
    Ok(new)
}

/// lseek of the host's stdio stream `k`: the host moves its own fd's
/// offset when that fd is a regular file or a block device (as `{ prog;
/// cat; } < file` shares one offset between the processes), and reads
/// and writes of the stream go on from there. Anything else (a pipe, a
/// terminal) cannot seek.
fn seek_stdio<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    k: u8,
    off: u64,
    whence: u64,
) -> KResult<i64> {
    if !cx.p.stdio_is_file(k) {
        return Err(Errno::ESPIPE);
    }
    if whence > 4 {
        return Err(Errno::EINVAL);
    }
    let r = cx.host.seek(u64::from(k), off, whence);
    if r < 0 {
        return Err(Errno::from_ret(r));
    }
    Ok(r)
}

/// The size of host handle `h` now.
fn host_size<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, h: u64) -> KResult<u64> {
    begin(&mut *cx.env.host, op::FSTAT, h);
    host::call(&mut *cx.env.host, &[])?;
    let sx = stat::statx_bytes(&cx.env.host.req().statx);
    Ok(stat::statx_info(&sx).size)
}

/// ENOMEM if the text of `f` (the maps and smaps of an address space with
/// very many areas) would not fit in the kernel heap: three times its size
/// (a growing vector holds the old and the doubled copy), and for smaps
/// its per-area fields and a copy of the areas.
fn proc_text_fits<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    f: ProcFile,
) -> KResult<()> {
    let maps = || proc::maps_size(&cx.p.mm, cx.env.cache);
    let areas = cx.p.mm.vmas.len();
    let need = match f {
        ProcFile::Maps => maps(),
        ProcFile::Smaps => maps() + areas * 800,
        ProcFile::SmapsRollup => areas * 48 + 1024,
        _ => return Ok(()),
    };
    if need.saturating_mul(3) > (cx.tasks.heap_free)() {
        return Err(Errno::ENOMEM);
    }
    Ok(())
}

/// The contents of a `/proc` file for the calling process.
pub fn generate<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, f: ProcFile) -> Vec<u8> {
    let mut t = proc::Text::default();
    match f {
        ProcFile::Maps => {
            super::procfs::fill_image_identity(cx);
            return proc::maps(&cx.p.mm, cx.env.cache);
        }
        ProcFile::Smaps => return super::procfs::smaps(cx, false),
        ProcFile::SmapsRollup => return super::procfs::smaps(cx, true),
        ProcFile::Comm => {
            let c = cx.p.comm();
            let n = c.iter().position(|&b| b == 0).unwrap_or(16);
            t.s(&c[..n]).s(b"\n");
        }
        ProcFile::Cmdline => {
            return super::procfs::user_range(cx, cx.p.mm.arg_start, cx.p.mm.arg_end)
        }
        ProcFile::Environ => {
            return super::procfs::user_range(cx, cx.p.mm.env_start, cx.p.mm.env_end)
        }
        ProcFile::Auxv => return super::procfs::auxv(cx),
        ProcFile::Status => super::procfs::status(cx, &mut t),
        ProcFile::Stat => super::procfs::stat(cx, &mut t),
        ProcFile::Cpuinfo => super::procfs::cpuinfo(cx, &mut t),
        ProcFile::Meminfo => super::procfs::meminfo(cx, &mut t),
        ProcFile::Osrelease => {
            t.s(proc::OSRELEASE).s(b"\n");
        }
        ProcFile::Version => {
            t.s(b"Linux version ")
                .s(proc::OSRELEASE)
                .s(b" (vmrun) #1 SMP\n");
        }
        ProcFile::Uptime => super::procfs::uptime(cx, &mut t),
        ProcFile::Mounts => {
            t.s(b"vmrun / vmrun rw 0 0\nproc /proc proc rw 0 0\ndevtmpfs /dev devtmpfs rw 0 0\n");
        }
    }
    t.0
}
