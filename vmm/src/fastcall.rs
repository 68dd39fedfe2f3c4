//! Fast calls: a program's `read` of the host's stdin and `write` to its
//! stdout or stderr, and the calls of a host path ([`path_call`]: a stat,
//! a link's text, extended attributes, access), served by the VMM
//! straight from the syscall trampoline, with no kernel entry.
//!
//! On kvm_pvm a kernel entry costs tens of microseconds before the kernel
//! runs anything, and every ring-0 instruction about one more; code that
//! SYSCALL enters runs at native speed. So the trampoline that SYSCALL
//! enters tests the call against a table the guest kernel keeps in the
//! trampoline page (`vmrun_contract::trampoline::TABLE`) and, for a read
//! or write the kernel opened there, writes AL to
//! [`vmrun_contract::FAST_CALL_PORT`]. The VMM then either answers, as the
//! kernel's short path would, or declines, and the vCPU goes on into the
//! kernel as for every other call.
//!
//! What the kernel opens: an fd from 0 to 2 that is one of the host's
//! stdio streams, open for that direction, once its short path has served
//! such a call; and only while calls take the short path (not traced, not
//! logged, no debugger). Every kernel entry but the short path's calls
//! closes the whole table first, so nothing the opening relied on (what
//! the fd is, the running task and its page tables, an armed alarm) can
//! have changed while it is open.
//!
//! What the VMM checks itself, from nothing but guest memory and the
//! registers: RIP is at the trampoline's `out` (where KVM on VMX/SVM
//! stops; it moves past the `out` when the vCPU resumes unless the VMM has
//! set RIP) or right after it (where kvm_pvm stops), and a program's own
//! `out` to the port elsewhere is ignored, as by hardware with no device
//! there; the call is a read or a write of fd 0 to 2 that the table
//! opens; the return address is a user address; the buffer lies in user
//! pages mapped as the call needs (writable for a read), through the
//! page-table root the kernel recorded when it opened the table. Anything
//! else, an empty or a very large buffer, any error of the host's read
//! (which consumed nothing), and a write's EPIPE (the kernel raises
//! SIGPIPE) are declined: the kernel then serves the call, which for an
//! error means trying it once more. Any other error of a write is the
//! answer, as the kernel's short path gives it: part of the buffer may have
//! gone out before it, which a second try would write again.
//!
//! The answer returns to the program as SYSRET would: RAX the result, RIP
//! the return address from RCX, RFLAGS from R11 with only the flags a
//! program may set. On kvm_pvm, where the trampoline runs with user rights,
//! the VMM sets RIP and RFLAGS itself; where SYSCALL enters ring 0 (VMX,
//! SVM), RIP goes to the trampoline's `sysretq`.

use crate::fs::{HostFs, PathError};
use crate::hypercall::{read_pieces, write_pieces, HostIo};
use crate::inspect::pagetable::{read_user, translate};
use crate::memory::GuestRam;
use kvm_bindings::kvm_regs;
use vmrun_contract::fs::PATH_MAX;
use vmrun_contract::layout::{
    fast_dirfd_slot, FAST_CWD_MAX, FAST_CWD_PHYS, FAST_DIRFD_MAX, PAGE_SIZE, STATS_PHYS,
    SYSCALL_TRAMPOLINE_PHYS, SYSCALL_TRAMPOLINE_VIRT, TASK_SIZE,
};
use vmrun_contract::{trampoline, IoVec, FAST_CR3_OFFSET};

/// Largest buffer a fast call serves (a larger one is the kernel's, which
/// serves it in pieces).
pub const MAX_BYTES: u64 = 1 << 20;

/// The RFLAGS bits a program may set (CF, PF, AF, ZF, SF, TF, DF, OF, AC,
/// ID), as the kernel's SYSRET-like return keeps them.
const USER_RFLAGS_MASK: u64 = 0x24_0dd5;
/// IF and the always-one bit 1.
const RFLAGS_FIXED: u64 = 0x202;

/// How an answered call returns to the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Return {
    /// kvm_pvm: the trampoline runs with user rights, so the VMM sets RIP
    /// and RFLAGS as SYSRET would.
    UserRights,
    /// VMX/SVM: the trampoline runs in ring 0 and returns through its own
    /// `sysretq`.
    Sysret,
}

/// Serve the fast call in `r` (the vCPU's registers at the trampoline's
/// `out`) with the host's stdio `io` and files `fs`: true if answered
/// (`r` holds the registers to resume with), false if declined (`r`
/// unchanged: resume as it is and the kernel serves the call).
pub fn serve(
    ram: &GuestRam,
    io: &mut impl HostIo,
    fs: &mut HostFs,
    r: &mut kvm_regs,
    ret: Return,
) -> bool {
    let path = matches!(
        r.rax,
        ACCESS
            | READLINK
            | GETXATTR
            | LGETXATTR
            | NEWFSTATAT
            | READLINKAT
            | FACCESSAT
            | STATX
            | FACCESSAT2
    );
    let n = if path {
        match path_call(ram, fs, r) {
            Some(n) => n,
            None => return false,
        }
    } else {
        match stdio(ram, io, r) {
            Some(n) => n,
            None => return false,
        }
    };
    r.rax = n as u64;
    match ret {
        Return::UserRights => {
            r.rip = r.rcx;
            r.rflags = (r.r11 & USER_RFLAGS_MASK) | RFLAGS_FIXED;
        }
        Return::Sysret => r.rip = SYSCALL_TRAMPOLINE_VIRT + trampoline::SYSRET,
    }
    true
}

/// The answer to the read, write or writev of the host's stdio in `r`,
/// or None: declined.
fn stdio(ram: &GuestRam, io: &mut impl HostIo, r: &kvm_regs) -> Option<i64> {
    let (stream, write, pieces) = accept(ram, r)?;
    let n = if write {
        write_pieces(ram, io, stream, &pieces)
    } else {
        read_pieces(ram, io, stream, &pieces)
    };
    match n {
        n if n >= 0 => Some(n),
        e if write && -e != i64::from(libc::EPIPE) && -e != i64::from(libc::EINTR) => {
            Some(write_error(-e))
        }
        _ => None,
    }
}

/// The answer to a write that failed with host errno `errno` (neither
/// EPIPE nor EINTR, which are declined). Part of the buffer may have gone
/// out before the error (a host stdout that would block, a full disk), so
/// the kernel must not write it again: the error is the answer, as the
/// kernel's short path gives it (the errnos a write gives are in its
/// table; any other is EIO there).
fn write_error(errno: i64) -> i64 {
    const AS_THEY_ARE: [i32; 9] = [
        libc::EAGAIN,
        libc::EBADF,
        libc::EDQUOT,
        libc::EFAULT,
        libc::EFBIG,
        libc::EINVAL,
        libc::EIO,
        libc::ENOSPC,
        libc::EPERM,
    ];
    match AS_THEY_ARE.iter().find(|&&e| i64::from(e) == errno) {
        Some(&e) => -i64::from(e),
        None => -i64::from(libc::EIO),
    }
}

/// The system call number of writev, a fast call like write.
const WRITEV: u64 = 20;

/// The calls of a path the trampoline offers when the table opens them
/// (`trampoline::PATH_BYTE`).
const ACCESS: u64 = 21;
const READLINK: u64 = 89;
const GETXATTR: u64 = 191;
const LGETXATTR: u64 = 192;
const NEWFSTATAT: u64 = 262;
const READLINKAT: u64 = 267;
const FACCESSAT: u64 = 269;
const STATX: u64 = 332;
const FACCESSAT2: u64 = 439;

/// faccessat2's flags the fast call serves: AT_SYMLINK_NOFOLLOW and
/// AT_EACCESS (any other is the kernel's).
const ACCESS_FLAGS: u64 = AT_SYMLINK_NOFOLLOW | 0x200;

/// `AT_FDCWD`, as the low half of a dirfd register.
const AT_FDCWD: i32 = -100;

/// `AT_SYMLINK_NOFOLLOW`.
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;

/// The flags of a path's stat the fast call serves: AT_SYMLINK_NOFOLLOW,
/// AT_NO_AUTOMOUNT and AT_EMPTY_PATH (no matter with a path); any other
/// is the kernel's (EINVAL).
const STAT_FLAGS: u64 = AT_SYMLINK_NOFOLLOW | 0x800 | 0x1000;

/// statx's flags beside those: either sync type alone (a host file is
/// always in sync; both together are EINVAL).
const STATX_SYNC_TYPES: [u64; 3] = [0, 0x2000, 0x4000];

/// statx's reserved mask bit (EINVAL).
const STATX_RESERVED: u64 = 0x8000_0000;

/// The errors of a path's lookup that the fast call answers as they are
/// (the kernel passes them on unchanged); any other is declined.
const LOOKUP_ERRNOS: [i32; 5] = [
    libc::ENOENT,
    libc::ENOTDIR,
    libc::EACCES,
    libc::ELOOP,
    libc::ENAMETOOLONG,
];

/// The answer to a call of a path whose op had none: the host's error
/// if it is one of [`LOOKUP_ERRNOS`] or `also`, else None (declined).
fn lookup_error(e: PathError, also: Option<i32>) -> Option<i64> {
    match e {
        PathError::Failed(e) if LOOKUP_ERRNOS.contains(&e) || Some(e) == also => {
            Some(-i64::from(e))
        }
        PathError::Failed(_) | PathError::Guest => None,
    }
}

/// The longest answer of a readlink the kernel gives (it hands the host a
/// buffer of at most a page).
const READLINK_MAX: u64 = 4096;

/// What a call of a path does with the object, once found.
enum PathOp {
    /// newfstatat's `struct stat` or statx's `struct statx` into `buf`.
    Stat { buf: u64, statx: bool },
    /// readlink's text into `buf`, at most `size` bytes.
    Readlink { buf: u64, size: u64 },
    /// getxattr and lgetxattr: the object looked up, then ENODATA (the
    /// kernel keeps no extended attributes).
    Xattr,
    /// access, faccessat and faccessat2: the host's answer (EROFS too,
    /// for a write in a read-only mount).
    Access { mode: u64, flags: u64 },
}

/// The answer to the call of a path in `r` (newfstatat, statx, readlink,
/// readlinkat, getxattr, lgetxattr, access, faccessat, faccessat2), or
/// None: declined. Served where the
/// kernel would only pass the lookup on to the host: the table opens the
/// calls of a path (`trampoline::PATH_BYTE`), the return address is a
/// user one, the path is readable from user pages through `fast_cr3`,
/// not empty and shorter than PATH_MAX, absolute, or relative to
/// `AT_FDCWD` or to the directory fd the kernel published (joined to the
/// working directory or that directory as the kernel published them,
/// `layout::FAST_CWD_PHYS` and `FAST_DIRFD_PHYS`, as the kernel joins
/// them), cannot lie in
/// `/proc` or `/dev` ([`maybe_guest_served`]), the flags are ones the
/// kernel accepts, and the host resolves it to a host object (not into a
/// tree the kernel serves). A lookup that fails with one of
/// [`LOOKUP_ERRNOS`] (or, for readlink, EINVAL: not a link) is that error;
/// otherwise the call's answer ([`PathOp`]) is written to a buffer in
/// user pages mapped writable.
fn path_call(ram: &GuestRam, fs: &mut HostFs, r: &kvm_regs) -> Option<i64> {
    let at = r.rip.wrapping_sub(SYSCALL_TRAMPOLINE_VIRT);
    if at != trampoline::OUT && at != trampoline::SLOW || r.rcx >= TASK_SIZE {
        return None;
    }
    let mut byte = [0u8];
    let table = SYSCALL_TRAMPOLINE_PHYS + trampoline::TABLE + trampoline::PATH_BYTE;
    ram.read_bytes(table, &mut byte).ok()?;
    if byte[0] & trampoline::OPEN == 0 {
        return None;
    }
    let cwd_fd = AT_FDCWD as u64;
    // (dirfd, path, follow a last symlink, what to do)
    let (dirfd, upath, follow, op) = match r.rax {
        NEWFSTATAT | STATX => {
            let statx = r.rax == STATX;
            let (flags, buf) = if statx { (r.rdx, r.r8) } else { (r.r10, r.rdx) };
            let sync = match statx {
                false => 0,
                true if r.r10 & STATX_RESERVED != 0 => return None,
                true => flags & 0x6000,
            };
            if flags & !STAT_FLAGS != sync || !STATX_SYNC_TYPES.contains(&sync) {
                return None;
            }
            let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
            (r.rdi, r.rsi, follow, PathOp::Stat { buf, statx })
        }
        READLINK => (
            cwd_fd,
            r.rdi,
            false,
            PathOp::Readlink {
                buf: r.rsi,
                size: r.rdx,
            },
        ),
        READLINKAT => (
            r.rdi,
            r.rsi,
            false,
            PathOp::Readlink {
                buf: r.rdx,
                size: r.r10,
            },
        ),
        GETXATTR | LGETXATTR => (cwd_fd, r.rdi, r.rax == GETXATTR, PathOp::Xattr),
        ACCESS | FACCESSAT | FACCESSAT2 => {
            let (dirfd, upath, mode, flags) = match r.rax {
                ACCESS => (cwd_fd, r.rdi, r.rsi, 0),
                FACCESSAT => (r.rdi, r.rsi, r.rdx, 0),
                _ => (r.rdi, r.rsi, r.rdx, r.r10),
            };
            if mode & !7 != 0 || flags & !ACCESS_FLAGS != 0 {
                return None;
            }
            let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
            (dirfd, upath, follow, PathOp::Access { mode, flags })
        }
        _ => return None,
    };
    let cr3: u64 = ram.read_pod(STATS_PHYS + FAST_CR3_OFFSET).ok()?;
    let path = user_path(ram, cr3, upath)?;
    let abs = match path.first() {
        Some(b'/') => path,
        Some(_) if dirfd as i32 == AT_FDCWD => join(&published_cwd(ram)?, &path),
        Some(_) => join(&published_dirfd(ram, dirfd)?, &path),
        None => return None,
    };
    // A joined path too long for the kernel's request is its ENAMETOOLONG.
    if abs.len() >= PATH_MAX || maybe_guest_served(&abs) {
        return None;
    }
    match op {
        PathOp::Stat { buf, statx } => {
            let words = match fs.stat_path(ram, &abs, follow) {
                Ok(words) => words,
                Err(e) => return lookup_error(e, None),
            };
            let bytes = match statx {
                false => stat_of_statx(&words).to_vec(),
                true => words.iter().flat_map(|w| w.to_le_bytes()).collect(),
            };
            write_user(ram, cr3, buf, &bytes)?;
            Some(0)
        }
        PathOp::Readlink { buf, size } => {
            // The kernel finds the buffer first (EFAULT before a lookup).
            let len = (size as i64 > 0).then_some(size.min(READLINK_MAX))?;
            user_pieces(ram, cr3, buf, len, true)?;
            let text = match fs.readlink_path(&abs) {
                Ok(text) => text,
                Err(e) => return lookup_error(e, Some(libc::EINVAL)),
            };
            let n = text.len().min(len as usize);
            if n > 0 {
                write_user(ram, cr3, buf, &text[..n])?;
            }
            Some(n as i64)
        }
        PathOp::Xattr => match fs.stat_path(ram, &abs, follow) {
            Ok(_) => Some(-i64::from(libc::ENODATA)),
            Err(e) => lookup_error(e, None),
        },
        PathOp::Access { mode, flags } => match fs.access_path(ram, &abs, mode, flags as u32) {
            Ok(()) => Some(0),
            Err(e) => lookup_error(e, Some(libc::EROFS)),
        },
    }
}

/// Write `bytes` to user address `va` through the page tables at `cr3`,
/// if they lie in user pages mapped writable; None (nothing written)
/// otherwise.
fn write_user(ram: &GuestRam, cr3: u64, va: u64, bytes: &[u8]) -> Option<()> {
    let pieces = user_pieces(ram, cr3, va, bytes.len() as u64, true)?;
    let mut done = 0;
    for p in pieces {
        let n = p.len as usize;
        ram.write_bytes(p.phys, &bytes[done..done + n]).ok()?;
        done += n;
    }
    Some(())
}

/// The working directory the kernel published when it opened the calls
/// of a path, if it did (see `layout::FAST_CWD_PHYS`).
fn published_cwd(ram: &GuestRam) -> Option<Vec<u8>> {
    let len: u64 = ram.read_pod(FAST_CWD_PHYS).ok()?;
    if len == 0 || len > FAST_CWD_MAX {
        return None;
    }
    let mut cwd = vec![0u8; len as usize];
    ram.read_bytes(FAST_CWD_PHYS + 8, &mut cwd).ok()?;
    Some(cwd)
}

/// The directory of `dirfd` as the kernel published it when it opened the
/// calls of a path, if that is the fd it published (see
/// `layout::FAST_DIRFD_PHYS`).
fn published_dirfd(ram: &GuestRam, dirfd: u64) -> Option<Vec<u8>> {
    let slot = fast_dirfd_slot(dirfd);
    let fd: u64 = ram.read_pod(slot).ok()?;
    let len: u64 = ram.read_pod(slot + 8).ok()?;
    if fd != dirfd.checked_add(1)? || len == 0 || len > FAST_DIRFD_MAX {
        return None;
    }
    let mut dir = vec![0u8; len as usize];
    ram.read_bytes(slot + 16, &mut dir).ok()?;
    Some(dir)
}

/// `rel` (relative) in directory `dir`, as the kernel's `fs::path::join`
/// makes it: a `/` between them unless `dir` ends with one.
fn join(dir: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if dir.last() != Some(&b'/') {
        p.push(b'/');
    }
    p.extend_from_slice(rel);
    p
}

/// The NUL-terminated string at user address `va` through the page tables
/// at `cr3`, without its NUL, if it lies in user pages and is shorter than
/// PATH_MAX.
fn user_path(ram: &GuestRam, cr3: u64, va: u64) -> Option<Vec<u8>> {
    let mut path = Vec::new();
    let mut at = va;
    let mut chunk = [0u8; PAGE_SIZE as usize];
    while path.len() < PATH_MAX {
        let to_page_end = (PAGE_SIZE - (at & (PAGE_SIZE - 1))) as usize;
        let n = to_page_end.min(PATH_MAX - path.len());
        if read_user(ram, cr3, at, &mut chunk[..n]) < n {
            return None;
        }
        if let Some(z) = chunk[..n].iter().position(|&b| b == 0) {
            path.extend_from_slice(&chunk[..z]);
            return Some(path);
        }
        path.extend_from_slice(&chunk[..n]);
        at = at.checked_add(n as u64)?;
    }
    None
}

/// Whether the absolute `path` may lie in `/dev` or `/proc`, which the
/// guest kernel serves itself (its `fs::path::maybe_served`, the test it
/// makes before it passes a path on to the host as it is): the first
/// component other than `.` starts with `dev` or `proc` or a dot, or
/// there is none.
fn maybe_guest_served(path: &[u8]) -> bool {
    let mut rest = path;
    while let [b'/', r @ ..] | [b'.', b'/', r @ ..] = rest {
        rest = r;
    }
    matches!(
        rest,
        [] | [b'.', ..] | [b'd', b'e', b'v', ..] | [b'p', b'r', b'o', b'c', ..]
    )
}

/// Linux's `struct stat` (x86-64) of the host's statx words, as the guest
/// kernel makes it (its `fs::stat::stat_from_statx_words`, Linux's
/// `cp_new_stat`).
fn stat_of_statx(w: &[u64; 32]) -> [u8; 144] {
    let lo = |k: usize| w[k] as u32;
    let hi = |k: usize| (w[k] >> 32) as u32;
    let dev = |major: u32, minor: u32| {
        let (major, minor) = (u64::from(major), u64::from(minor));
        (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32)
    };
    let mut st = [0u8; 144];
    let mut put = |off: usize, v: u64| st[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(0, dev(lo(17), hi(17)));
    put(8, w[4]);
    put(16, u64::from(lo(2)));
    // st_mode and st_uid, then st_gid and the padding (0).
    put(24, u64::from(hi(3) & 0xffff) | u64::from(hi(2)) << 32);
    put(32, u64::from(lo(3)));
    put(40, dev(lo(16), hi(16)));
    put(48, w[5]);
    put(56, u64::from(hi(0)));
    put(64, w[6]);
    // atime, mtime, ctime: seconds then nanoseconds.
    for (k, src) in [8usize, 14, 12].into_iter().enumerate() {
        put(72 + 16 * k, w[src]);
        put(80 + 16 * k, u64::from(lo(src + 1)));
    }
    st
}

/// Most iovecs a writev may give (Linux's UIO_MAXIOV).
const MAX_IOVECS: u64 = 1024;

/// The call's host stream, direction (true: write or writev) and buffer
/// pieces, if it is one the VMM may serve (see the module's text).
fn accept(ram: &GuestRam, r: &kvm_regs) -> Option<(u64, bool, Vec<IoVec>)> {
    let at = r.rip.wrapping_sub(SYSCALL_TRAMPOLINE_VIRT);
    let at_trampoline = at == trampoline::OUT || at == trampoline::SLOW;
    let call_ok = r.rax <= 1 || r.rax == WRITEV;
    if !at_trampoline || !call_ok || r.rdi > 2 || r.rcx >= TASK_SIZE {
        return None;
    }
    let write = r.rax != 0;
    let at = SYSCALL_TRAMPOLINE_PHYS + trampoline::TABLE + r.rdi + 4 * r.rax;
    let mut entry = [0u8];
    ram.read_bytes(at, &mut entry).ok()?;
    let entry = entry[0];
    if entry & trampoline::OPEN == 0 {
        return None;
    }
    let cr3: u64 = ram.read_pod(STATS_PHYS + FAST_CR3_OFFSET).ok()?;
    let pieces = if r.rax == WRITEV {
        iovec_pieces(ram, cr3, r.rsi, r.rdx)?
    } else {
        user_pieces(ram, cr3, r.rsi, r.rdx, !write)?
    };
    Some((u64::from(entry & 3), write, pieces))
}

/// The guest-physical pieces of a writev's `count` iovecs at user address
/// `iov`, in order, if the array and every buffer lie in user pages
/// mapped for reading, `count` is 1 to [`MAX_IOVECS`] and the buffers hold
/// 1 to [`MAX_BYTES`] bytes in all (empty iovecs are skipped).
fn iovec_pieces(ram: &GuestRam, cr3: u64, iov: u64, count: u64) -> Option<Vec<IoVec>> {
    if count == 0 || count > MAX_IOVECS {
        return None;
    }
    let mut array = vec![0u8; (count * 16) as usize];
    let mut done = 0;
    for piece in user_pieces(ram, cr3, iov, count * 16, false)? {
        ram.read_bytes(piece.phys, &mut array[done..done + piece.len as usize])
            .ok()?;
        done += piece.len as usize;
    }
    let mut pieces: Vec<IoVec> = Vec::new();
    let mut total = 0u64;
    for v in array.chunks_exact(16) {
        let base = u64::from_le_bytes(v[..8].try_into().ok()?);
        let len = u64::from_le_bytes(v[8..].try_into().ok()?);
        if len == 0 {
            continue;
        }
        total = total.checked_add(len).filter(|&t| t <= MAX_BYTES)?;
        for p in user_pieces(ram, cr3, base, len, false)? {
            match pieces.last_mut() {
                Some(last) if last.phys + last.len == p.phys => last.len += p.len,
                _ => pieces.push(p),
            }
        }
    }
    (!pieces.is_empty()).then_some(pieces)
}

/// The guest-physical pieces of the user buffer `[va, va + len)` through
/// the page tables at `cr3`, neighbouring frames joined, if every page is
/// mapped for user access (and writable if `write`), the buffer is not
/// empty and at most [`MAX_BYTES`].
pub fn user_pieces(ram: &GuestRam, cr3: u64, va: u64, len: u64, write: bool) -> Option<Vec<IoVec>> {
    let end = va.checked_add(len)?;
    if len == 0 || len > MAX_BYTES || end > TASK_SIZE {
        return None;
    }
    let mut pieces: Vec<IoVec> = Vec::new();
    let mut at = va;
    while at < end {
        let leaf = translate(ram, cr3, at)?;
        if !leaf.flags.user || (write && !leaf.flags.writable) {
            return None;
        }
        let offset = at - leaf.va;
        let n = (leaf.size.bytes() - offset).min(end - at);
        let phys = leaf.pa + offset;
        match pieces.last_mut() {
            Some(last) if last.phys + last.len == phys => last.len += n,
            _ => pieces.push(IoVec { phys, len: n }),
        }
        at += n;
    }
    Some(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::pagetable::PageSize;
    use crate::inspect::testspace::{Space, USER_R, USER_RW};
    use std::io;

    /// The host's stdio as the fast call sees it: what was written, what
    /// is left to read, and whether the host's calls fail.
    #[derive(Default)]
    struct Stdio {
        out: Vec<(u64, Vec<u8>)>,
        input: Vec<u8>,
        fail: Option<i32>,
    }

    impl HostIo for Stdio {
        fn write(&mut self, fd: u64, data: &[u8]) -> io::Result<()> {
            if let Some(e) = self.fail {
                return Err(io::Error::from_raw_os_error(e));
            }
            self.out.push((fd, data.to_vec()));
            Ok(())
        }
        fn read(&mut self, _fd: u64, buf: &mut [u8]) -> io::Result<usize> {
            if let Some(e) = self.fail {
                return Err(io::Error::from_raw_os_error(e));
            }
            let n = buf.len().min(self.input.len());
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input.drain(..n);
            Ok(n)
        }
        fn random(&mut self, _buf: &mut [u8]) -> io::Result<()> {
            Ok(())
        }
        fn log(&mut self, _line: &[u8]) {}
    }

    /// [`serve`] on `s` with a file service that shows nothing (the stdio
    /// calls' tests).
    fn serve_stdio(s: &Space, io: &mut Stdio, r: &mut kvm_regs, ret: Return) -> bool {
        let files = &mut HostFs::open(&[], false).unwrap();
        serve(&s.ram, io, files, r, ret)
    }

    /// Everything `io` was given to write, checking it all went to `fd`.
    fn written_to(io: &Stdio, fd: u64) -> Vec<u8> {
        io.out
            .iter()
            .flat_map(|(to, d)| {
                assert_eq!(*to, fd);
                d.clone()
            })
            .collect()
    }

    const DATA: u64 = 0x40_0000;
    const TABLE_PHYS: u64 = SYSCALL_TRAMPOLINE_PHYS + trampoline::TABLE;

    /// Two writable user pages at `DATA` in frames apart, a read-only one
    /// after them, the kernel's table opening `opened` (fd, write, stream)
    /// and its page-table root recorded.
    fn space(opened: &[(u64, bool, u64)]) -> Space {
        let mut s = Space::new();
        s.map(DATA, 0x50_0000, PageSize::Size4K, USER_RW);
        s.map(DATA + 0x1000, 0x50_1000, PageSize::Size4K, USER_RW);
        s.map(DATA + 0x2000, 0x60_0000, PageSize::Size4K, USER_RW);
        s.map(DATA + 0x3000, 0x60_1000, PageSize::Size4K, USER_R);
        let mut table = 0u64;
        for &(fd, write, stream) in opened {
            let shift = 8 * (fd + if write { 4 } else { 0 });
            table |= (u64::from(trampoline::OPEN) | stream) << shift;
        }
        s.ram.write_pod(TABLE_PHYS, &table).unwrap();
        s.ram
            .write_pod(STATS_PHYS + FAST_CR3_OFFSET, &s.cr3)
            .unwrap();
        s
    }

    /// The registers at the trampoline's `out` for call `nr` (0 read, 1
    /// write) of `fd` with the buffer `[buf, buf + len)`.
    fn at_out(nr: u64, fd: u64, buf: u64, len: u64) -> kvm_regs {
        kvm_regs {
            rip: SYSCALL_TRAMPOLINE_VIRT + trampoline::SLOW,
            rax: nr,
            rdi: fd,
            rsi: buf,
            rdx: len,
            rcx: 0x40_1234,
            r11: 0x3246,
            rsp: 0x7fff_0000,
            ..Default::default()
        }
    }

    #[test]
    fn an_opened_write_is_served_and_returns_as_sysret_would() {
        let s = space(&[(1, true, 1)]);
        s.ram
            .slice_mut(0x50_0ff0, 16)
            .unwrap()
            .copy_from_slice(b"hello, world!\n..");
        s.ram
            .slice_mut(0x50_1000, 2)
            .unwrap()
            .copy_from_slice(b"ok");
        let mut io = Stdio::default();
        let mut r = at_out(1, 1, DATA + 0xff0, 18);
        assert!(serve_stdio(&s, &mut io, &mut r, Return::UserRights));
        let written = written_to(&io, 1);
        assert_eq!(written, b"hello, world!\n..ok");
        assert_eq!(io.out.len(), 1, "neighbouring frames are one piece");
        assert_eq!(r.rax, 18);
        assert_eq!(r.rip, 0x40_1234, "back to RCX");
        assert_eq!(r.rflags, 0x246, "R11's flags without IOPL, with IF");

        let mut r = at_out(1, 1, DATA, 2);
        assert!(serve_stdio(&s, &mut io, &mut r, Return::Sysret));
        assert_eq!(r.rip, SYSCALL_TRAMPOLINE_VIRT + trampoline::SYSRET);
        assert_eq!(r.rflags, 0, "left for the trampoline's sysretq");
    }

    #[test]
    fn an_opened_read_fills_the_buffer_from_stdin() {
        let s = space(&[(0, false, 0)]);
        let mut io = Stdio {
            input: b"from the host's stdin".to_vec(),
            ..Default::default()
        };
        let mut r = at_out(0, 0, DATA + 0x1ffc, 12);
        assert!(serve_stdio(&s, &mut io, &mut r, Return::UserRights));
        assert_eq!(r.rax, 12);
        assert_eq!(s.ram.slice(0x50_1ffc, 4).unwrap(), b"from");
        assert_eq!(
            s.ram.slice(0x60_0000, 8).unwrap(),
            b" the hos",
            "the next frame apart"
        );
        assert_eq!(io.input, b"t's stdin");
    }

    #[test]
    fn every_call_the_kernel_must_serve_is_declined_untouched() {
        let s = space(&[(0, false, 0), (1, true, 1), (2, true, 2)]);
        let mut at_elsewhere = at_out(1, 1, DATA, 4);
        at_elsewhere.rip = 0x40_1000;
        let mut kernel_return = at_out(1, 1, DATA, 4);
        kernel_return.rcx = TASK_SIZE;
        let cases = [
            ("an `out` to the port from elsewhere", at_elsewhere),
            ("a return address outside user space", kernel_return),
            ("another call", at_out(2, 1, DATA, 4)),
            ("a write of an fd above 2", at_out(1, 3, DATA, 4)),
            ("a write the table does not open", at_out(1, 0, DATA, 4)),
            ("a read the table does not open", at_out(0, 1, DATA, 4)),
            ("an empty buffer", at_out(1, 1, DATA, 0)),
            (
                "a buffer larger than MAX_BYTES",
                at_out(1, 1, DATA, MAX_BYTES + 1),
            ),
            (
                "a buffer running into an unmapped page",
                at_out(1, 1, DATA + 0x3ffc, 8),
            ),
            (
                "a read into a read-only page",
                at_out(0, 0, DATA + 0x2ffc, 8),
            ),
            (
                "a buffer past the user half",
                at_out(1, 1, TASK_SIZE - 2, 4),
            ),
            ("a buffer wrapping around", at_out(1, 1, u64::MAX - 1, 4)),
        ];
        for (what, regs) in cases {
            let mut io = Stdio {
                input: b"input".to_vec(),
                ..Default::default()
            };
            let mut r = regs;
            assert!(
                !serve_stdio(&s, &mut io, &mut r, Return::UserRights),
                "{what}"
            );
            assert_eq!(
                format!("{r:?}"),
                format!("{regs:?}"),
                "{what}: registers untouched"
            );
            assert!(
                io.out.is_empty() && io.input == b"input",
                "{what}: nothing done"
            );
        }
        let read_only_write = at_out(1, 2, DATA + 0x3000, 4);
        assert!(
            serve_stdio(
                &s,
                &mut Stdio::default(),
                &mut read_only_write.clone(),
                Return::Sysret
            ),
            "a write from a read-only page is a fast call"
        );
    }

    #[test]
    fn a_read_error_and_epipe_are_left_to_the_kernel_other_write_errors_answered() {
        let s = space(&[(0, false, 0), (1, true, 1)]);
        let declined = [
            (0, 0, libc::EAGAIN),
            (0, 0, libc::EINTR),
            (0, 0, libc::EIO),
            (1, 1, libc::EPIPE),
            (1, 1, libc::EINTR),
        ];
        for (nr, fd, errno) in declined {
            let mut io = Stdio {
                fail: Some(errno),
                ..Default::default()
            };
            let regs = at_out(nr, fd, DATA, 4);
            let mut r = regs;
            assert!(
                !serve_stdio(&s, &mut io, &mut r, Return::UserRights),
                "{errno}"
            );
            assert_eq!(format!("{r:?}"), format!("{regs:?}"));
        }
        let answered = [
            (libc::EAGAIN, -libc::EAGAIN),
            (libc::ENOSPC, -libc::ENOSPC),
            (libc::EIO, -libc::EIO),
            (libc::EDESTADDRREQ, -libc::EIO),
        ];
        for (errno, ret) in answered {
            let mut io = Stdio {
                fail: Some(errno),
                ..Default::default()
            };
            let mut r = at_out(1, 1, DATA, 4);
            assert!(
                serve_stdio(&s, &mut io, &mut r, Return::UserRights),
                "{errno}"
            );
            assert_eq!(r.rax as i64, i64::from(ret), "{errno}");
            assert_eq!(r.rip, 0x40_1234);
        }
    }

    #[test]
    fn rip_at_the_out_or_after_it_is_the_trampolines_call() {
        let s = space(&[(1, true, 1)]);
        for (at, served) in [
            (trampoline::OUT, true),
            (trampoline::SLOW, true),
            (trampoline::OUT - 1, false),
            (trampoline::SLOW + 2, false),
        ] {
            let mut r = at_out(1, 1, DATA, 3);
            r.rip = SYSCALL_TRAMPOLINE_VIRT + at;
            assert_eq!(
                serve_stdio(&s, &mut Stdio::default(), &mut r, Return::Sysret),
                served,
                "RIP at {at}"
            );
        }
    }

    /// The iovecs `(buffer, len)` written at `DATA` (frame 0x50_0000).
    fn iovecs(s: &Space, v: &[(u64, u64)]) {
        let bytes: Vec<u8> = v
            .iter()
            .flat_map(|&(b, l)| b.to_le_bytes().into_iter().chain(l.to_le_bytes()))
            .collect();
        s.ram
            .slice_mut(0x50_0000, bytes.len() as u64)
            .unwrap()
            .copy_from_slice(&bytes);
    }

    #[test]
    fn an_opened_writev_gathers_its_buffers_and_empty_ones_are_skipped() {
        let s = space(&[]);
        let open = u64::from(trampoline::OPEN) | 1;
        s.ram
            .write_pod(TABLE_PHYS + trampoline::WRITEV_BYTES, &(open << 8))
            .unwrap();
        s.ram
            .slice_mut(0x50_0800, 5)
            .unwrap()
            .copy_from_slice(b"hello");
        s.ram
            .slice_mut(0x50_1ffe, 2)
            .unwrap()
            .copy_from_slice(b", ");
        s.ram
            .slice_mut(0x60_0000, 6)
            .unwrap()
            .copy_from_slice(b"world\n");
        // The second crosses into a frame apart; the third is empty.
        iovecs(&s, &[(DATA + 0x800, 5), (DATA + 0x1ffe, 8), (DATA, 0)]);
        let mut io = Stdio::default();
        let mut r = at_out(WRITEV, 1, DATA, 3);
        assert!(serve_stdio(&s, &mut io, &mut r, Return::UserRights));
        assert_eq!(r.rax, 13);
        let written = written_to(&io, 1);
        assert_eq!(written, b"hello, world\n");
        // Only fd 1's writev is open; a write of fd 1 is not.
        let declined = [
            ("fd 2", at_out(WRITEV, 2, DATA, 3)),
            ("a write", at_out(1, 1, DATA + 0x800, 5)),
            ("no iovec", at_out(WRITEV, 1, DATA, 0)),
            ("too many iovecs", at_out(WRITEV, 1, DATA, MAX_IOVECS + 1)),
            ("only empty iovecs", at_out(WRITEV, 1, DATA + 32, 1)),
            (
                "an array in an unmapped page",
                at_out(WRITEV, 1, DATA + 0x3ff8, 2),
            ),
            (
                "an array outside user space",
                at_out(WRITEV, 1, TASK_SIZE - 8, 1),
            ),
        ];
        for (what, regs) in declined {
            let mut io = Stdio::default();
            let mut r = regs;
            assert!(
                !serve_stdio(&s, &mut io, &mut r, Return::UserRights),
                "{what}"
            );
            assert!(io.out.is_empty(), "{what}");
        }
        // A buffer running into an unmapped page, and buffers of more than
        // MAX_BYTES in all, are the kernel's.
        for v in [
            [(DATA + 0x800, 5), (DATA + 0x3ffc, 8)],
            [(DATA, MAX_BYTES), (DATA, 1)],
        ] {
            iovecs(&s, &v);
            let mut r = at_out(WRITEV, 1, DATA, 2);
            assert!(
                !serve_stdio(&s, &mut Stdio::default(), &mut r, Return::Sysret),
                "{v:?}"
            );
        }
    }

    #[test]
    fn the_stream_is_the_one_the_table_names() {
        let s = space(&[(1, true, 2)]);
        let mut io = Stdio::default();
        let mut r = at_out(1, 1, DATA, 3);
        assert!(serve_stdio(&s, &mut io, &mut r, Return::UserRights));
        assert_eq!(io.out[0].0, 2, "fd 1 moved to the host's stderr (2>&1)");
    }

    /// A host directory for the tests of the calls of a path, removed at
    /// the end: a file `f` ("abc"), a directory `d`, links `l` to `f` and
    /// `p` to /proc/self.
    struct Dir(std::path::PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let p =
                std::env::temp_dir().join(format!("vmrun-fastcall-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("f"), "abc").unwrap();
            std::fs::create_dir(p.join("d")).unwrap();
            std::os::unix::fs::symlink("f", p.join("l")).unwrap();
            std::os::unix::fs::symlink("/proc/self", p.join("p")).unwrap();
            Dir(p)
        }

        /// A file service showing the directory, read-only, at `/m` alone.
        fn files(&self) -> HostFs {
            let m = crate::fs::Mount::new(&self.0, b"/m", crate::fs::Access::ReadOnly).unwrap();
            HostFs::open(&[m], false).unwrap()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The user address of the path in [`path_space`] (the string itself is
    /// put there by [`put_path`]).
    const PATH: u64 = DATA + 0x100;
    /// A stat buffer across the two writable frames apart.
    const STAT_BUF: u64 = DATA + 0x1000 - 64;
    /// `AT_FDCWD` in a register.
    const CWD: u64 = -100i64 as u64;

    /// [`space`] with nothing of stdio open, and the calls of a path open
    /// if `open`.
    fn path_space(open: bool) -> Space {
        let s = space(&[]);
        let byte = SYSCALL_TRAMPOLINE_PHYS + trampoline::TABLE + trampoline::PATH_BYTE;
        let v = if open { trampoline::OPEN } else { 0 };
        s.ram.slice_mut(byte, 1).unwrap()[0] = v;
        s
    }

    /// Put the NUL-terminated `path` at user address `va` (in the first
    /// two writable pages of [`space`]).
    fn put_path(s: &Space, va: u64, path: &[u8]) {
        let mut bytes = path.to_vec();
        bytes.push(0);
        let pa = 0x50_0000 + (va - DATA);
        s.ram
            .slice_mut(pa, bytes.len() as u64)
            .unwrap()
            .copy_from_slice(&bytes);
    }

    /// Publish `cwd` as the kernel does when it opens the calls of a path.
    fn publish(s: &Space, cwd: &[u8]) {
        s.ram.write_pod(FAST_CWD_PHYS, &(cwd.len() as u64)).unwrap();
        s.ram.write_bytes(FAST_CWD_PHYS + 8, cwd).unwrap();
    }

    /// The registers at the trampoline's `out` for call `nr` with the
    /// argument registers `args` (RDI, RSI, RDX, R10).
    fn call_at(nr: u64, args: [u64; 4]) -> kvm_regs {
        kvm_regs {
            r10: args[3],
            ..at_out(nr, args[0], args[1], args[2])
        }
    }

    /// newfstatat(AT_FDCWD, path, buf, flags).
    fn newfstatat_at(path: u64, buf: u64, flags: u64) -> kvm_regs {
        call_at(NEWFSTATAT, [CWD, path, buf, flags])
    }

    /// Serve the call in `r` on `s` with `dir`'s files: Some(RAX) if
    /// answered (returning as SYSRET would), None if declined (the
    /// registers as they were).
    fn answer(s: &Space, dir: &Dir, r: kvm_regs) -> Option<i64> {
        let mut after = r;
        let files = &mut dir.files();
        if serve(
            &s.ram,
            &mut Stdio::default(),
            files,
            &mut after,
            Return::UserRights,
        ) {
            assert_eq!(after.rip, r.rcx, "returns as SYSRET would");
            Some(after.rax as i64)
        } else {
            assert_eq!(after, r, "declined: the registers as they were");
            None
        }
    }

    /// `-errno`, as a call's answer.
    fn err(errno: i32) -> Option<i64> {
        Some(-i64::from(errno))
    }

    /// The `len` bytes at the stat buffer.
    fn stat_buf(s: &Space, len: u64) -> Vec<u8> {
        let mut out = vec![0u8; len as usize];
        let first = 64.min(len);
        s.ram
            .read_bytes(0x50_0fc0, &mut out[..first as usize])
            .unwrap();
        s.ram
            .read_bytes(0x50_1000, &mut out[first as usize..])
            .unwrap();
        out
    }

    /// st_size of the `struct stat` at the stat buffer.
    fn stat_size(s: &Space) -> u64 {
        u64::from_le_bytes(stat_buf(s, 144)[48..56].try_into().unwrap())
    }

    #[test]
    fn a_path_the_host_resolves_is_statted_as_the_kernel_makes_its_stat() {
        let dir = Dir::new("found");
        let s = path_space(true);
        put_path(&s, PATH, b"/m/f");
        assert_eq!(answer(&s, &dir, newfstatat_at(PATH, STAT_BUF, 0)), Some(0));
        let words = dir.files().stat_path(&s.ram, b"/m/f", true).expect("/m/f");
        let want = guest_kernel::fs::stat::stat_from_statx_words(&words);
        assert_eq!(
            stat_buf(&s, 144),
            want.to_vec(),
            "the kernel's struct stat of the statx"
        );
        assert_eq!(stat_size(&s), 3, "st_size");
        // statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, mask, buf): the host's
        // statx as it is, of the link itself; VMX/SVM returns through the
        // trampoline's sysretq.
        put_path(&s, PATH, b"/m/l");
        let mut r = kvm_regs {
            r8: STAT_BUF,
            ..call_at(STATX, [CWD, PATH, 0x100, 0xfff])
        };
        let files = &mut dir.files();
        assert!(serve(
            &s.ram,
            &mut Stdio::default(),
            files,
            &mut r,
            Return::Sysret
        ));
        assert_eq!(r.rip, SYSCALL_TRAMPOLINE_VIRT + trampoline::SYSRET);
        let words = dir.files().stat_path(&s.ram, b"/m/l", false).expect("/m/l");
        let want: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(stat_buf(&s, 256), want);
        let mode = u16::from_le_bytes(want[28..30].try_into().unwrap());
        assert_eq!(
            u32::from(mode) & libc::S_IFMT,
            libc::S_IFLNK,
            "the link's own statx"
        );
    }

    #[test]
    fn a_failed_lookup_is_its_error_and_writes_nothing() {
        let dir = Dir::new("missing");
        let s = path_space(true);
        for (path, errno) in [(&b"/m/none"[..], libc::ENOENT), (b"/m/f/x", libc::ENOTDIR)] {
            put_path(&s, PATH, path);
            // The buffer is in no page at all: a failed lookup never reads it.
            let got = answer(&s, &dir, newfstatat_at(PATH, 0x7000_0000, 0));
            assert_eq!(got, err(errno), "{}", String::from_utf8_lossy(path));
        }
    }

    #[test]
    fn what_the_kernel_serves_itself_or_cannot_be_read_is_declined() {
        let dir = Dir::new("declined");
        let s = path_space(true);
        let cases: [(&str, &[u8], u64, u64); 11] = [
            ("relative, no directory published", b"m/f", STAT_BUF, 0),
            ("/proc", b"/proc/self/status", STAT_BUF, 0),
            ("/dev", b"/dev/null", STAT_BUF, 0),
            ("/proc after dots", b"//./proc", STAT_BUF, 0),
            ("a dot first", b"/../proc/1", STAT_BUF, 0),
            ("a link into /proc", b"/m/p", STAT_BUF, 0),
            ("a link into /proc, statted", b"/m/p/status", STAT_BUF, 0),
            ("an unknown flag", b"/m/f", STAT_BUF, 0x2),
            ("a read-only buffer", b"/m/f", DATA + 0x3000, 0),
            ("an unmapped buffer", b"/m/f", 0x7000_0000, 0),
            (
                "a buffer running into a read-only page",
                b"/m/f",
                DATA + 0x3000 - 8,
                0,
            ),
        ];
        for (what, path, buf, flags) in cases {
            put_path(&s, PATH, path);
            assert_eq!(
                answer(&s, &dir, newfstatat_at(PATH, buf, flags)),
                None,
                "{what}"
            );
        }
        // A path that runs into an unmapped page, or is PATH_MAX long.
        let edge = DATA + 0x4000 - 3;
        s.ram
            .slice_mut(0x60_2000 - 3, 3)
            .unwrap()
            .copy_from_slice(b"/ab");
        assert_eq!(answer(&s, &dir, newfstatat_at(edge, STAT_BUF, 0)), None);
        s.ram.slice_mut(0x50_0000, 0x1000).unwrap().fill(b'/');
        s.ram.slice_mut(0x50_1000, 0x1000).unwrap().fill(b'a');
        assert_eq!(answer(&s, &dir, newfstatat_at(DATA, STAT_BUF, 0)), None);
        // statx's both sync types or reserved mask bit (EINVAL).
        put_path(&s, PATH, b"/m/f");
        for (flags, mask) in [(0x6000, 0xfff), (0, 0x8000_0000)] {
            let r = kvm_regs {
                r8: STAT_BUF,
                ..call_at(STATX, [CWD, PATH, flags, mask])
            };
            assert_eq!(answer(&s, &dir, r), None, "{flags:#x} {mask:#x}");
        }
        // The table closed, or a return address in the kernel.
        let closed = path_space(false);
        put_path(&closed, PATH, b"/m/f");
        assert_eq!(
            answer(&closed, &dir, newfstatat_at(PATH, STAT_BUF, 0)),
            None
        );
        let r = kvm_regs {
            rcx: SYSCALL_TRAMPOLINE_VIRT,
            ..newfstatat_at(PATH, STAT_BUF, 0)
        };
        assert_eq!(answer(&s, &dir, r), None);
    }

    #[test]
    fn the_paths_left_to_the_kernel_are_the_ones_it_may_serve_itself() {
        let paths: [&[u8]; 16] = [
            b"/",
            b"//",
            b"/.",
            b"/./",
            b"/dev",
            b"/devices",
            b"/proc",
            b"/process/x",
            b"/./proc",
            b"//./dev/null",
            b"/..",
            b"/.hidden",
            b"/usr/lib",
            b"/d",
            b"/pro",
            b"/sys",
        ];
        for p in paths {
            assert_eq!(
                maybe_guest_served(p),
                guest_kernel::fs::path::maybe_served(p),
                "{}",
                String::from_utf8_lossy(p)
            );
        }
    }

    #[test]
    fn the_struct_stat_is_the_kernels() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..64 {
            let mut w = [0u64; 32];
            for v in &mut w {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *v = x;
            }
            assert_eq!(
                stat_of_statx(&w),
                guest_kernel::fs::stat::stat_from_statx_words(&w)
            );
        }
    }

    #[test]
    fn a_path_relative_to_the_working_directory_is_joined_to_the_published_one() {
        let dir = Dir::new("relative");
        let s = path_space(true);
        put_path(&s, PATH, b"f");
        // No working directory published: the kernel's.
        assert_eq!(answer(&s, &dir, newfstatat_at(PATH, STAT_BUF, 0)), None);
        for published in [&b"/m"[..], b"/m/"] {
            publish(&s, published);
            assert_eq!(answer(&s, &dir, newfstatat_at(PATH, STAT_BUF, 0)), Some(0));
            assert_eq!(stat_size(&s), 3, "{}/f", String::from_utf8_lossy(published));
        }
        // Relative to another dirfd, joined to PATH_MAX bytes or more (the
        // kernel's ENAMETOOLONG), or joined into /proc: the kernel's.
        let by_fd = call_at(NEWFSTATAT, [3, PATH, STAT_BUF, 0]);
        assert_eq!(answer(&s, &dir, by_fd), None);
        let mut long = b"/m/".to_vec();
        long.resize(FAST_CWD_MAX as usize, b'a');
        publish(&s, &long);
        put_path(&s, PATH, b"a-name-of-twenty-bytes");
        assert!(long.len() + 1 + 22 >= PATH_MAX);
        assert_eq!(answer(&s, &dir, newfstatat_at(PATH, STAT_BUF, 0)), None);
        put_path(&s, PATH, b"f");
        publish(&s, b"/");
        put_path(&s, PATH, b"proc/self");
        assert_eq!(answer(&s, &dir, newfstatat_at(PATH, STAT_BUF, 0)), None);
    }

    /// Publish directory fd `fd` as `path` in its slot, as the kernel does.
    fn publish_dirfd(s: &Space, fd: u64, path: &[u8]) {
        let slot = fast_dirfd_slot(fd);
        s.ram.write_pod(slot, &(fd + 1)).unwrap();
        s.ram.write_pod(slot + 8, &(path.len() as u64)).unwrap();
        s.ram.write_bytes(slot + 16, path).unwrap();
    }

    #[test]
    fn a_path_relative_to_a_published_dirfd_is_joined_to_its_directory() {
        let dir = Dir::new("dirfd");
        std::fs::create_dir(dir.0.join("sub")).unwrap();
        std::fs::write(dir.0.join("sub/f"), b"seven").unwrap();
        let s = path_space(true);
        put_path(&s, PATH, b"f");
        publish_dirfd(&s, 7, b"/m");
        publish_dirfd(&s, 4, b"/m/sub");
        let by_7 = call_at(NEWFSTATAT, [7, PATH, STAT_BUF, 0x100]);
        assert_eq!(answer(&s, &dir, by_7), Some(0));
        assert_eq!(stat_size(&s), 3, "/m/f by fd 7");
        let by_4 = call_at(NEWFSTATAT, [4, PATH, STAT_BUF, 0x100]);
        assert_eq!(answer(&s, &dir, by_4), Some(0));
        assert_eq!(stat_size(&s), 5, "/m/sub/f by fd 4");
        // Another fd (3 shares 7's slot, 6 has none), or a published
        // number with high bits set: the kernel's.
        for fd in [3, 6, 1 << 32 | 7] {
            let r = call_at(NEWFSTATAT, [fd, PATH, STAT_BUF, 0x100]);
            assert_eq!(answer(&s, &dir, r), None, "{fd:#x}");
        }
        // A slot the kernel cleared (its fd closed): the kernel's.
        s.ram.write_pod(fast_dirfd_slot(4), &0u64).unwrap();
        let by_4 = call_at(NEWFSTATAT, [4, PATH, STAT_BUF, 0x100]);
        assert_eq!(answer(&s, &dir, by_4), None);
    }

    #[test]
    fn readlink_of_a_host_link_gives_its_text_as_far_as_the_buffer_holds() {
        let dir = Dir::new("readlink");
        let s = path_space(true);
        put_path(&s, PATH, b"/m/l");
        let buf = DATA + 0x1000 - 1;
        // readlink(path, buf, size): the text "f".
        assert_eq!(
            answer(&s, &dir, call_at(READLINK, [PATH, buf, 100, 0])),
            Some(1)
        );
        assert_eq!(s.ram.slice_mut(0x50_0fff, 1).unwrap()[0], b'f');
        // readlinkat(AT_FDCWD, path, buf, size) of a file that is no link:
        // EINVAL; of a missing one: ENOENT.
        put_path(&s, PATH, b"/m/f");
        let r = call_at(READLINKAT, [CWD, PATH, buf, 100]);
        assert_eq!(answer(&s, &dir, r), err(libc::EINVAL));
        put_path(&s, PATH, b"/m/none");
        let r = call_at(READLINK, [PATH, buf, 100, 0]);
        assert_eq!(answer(&s, &dir, r), err(libc::ENOENT));
        // A size of 0 (EINVAL), a read-only buffer (EFAULT), a link into
        // /proc: the kernel's.
        put_path(&s, PATH, b"/m/l");
        for (what, buf, size) in [("size 0", buf, 0), ("read-only", DATA + 0x3000, 8)] {
            let r = call_at(READLINK, [PATH, buf, size, 0]);
            assert_eq!(answer(&s, &dir, r), None, "{what}");
        }
        put_path(&s, PATH, b"/m/p/exe");
        assert_eq!(
            answer(&s, &dir, call_at(READLINK, [PATH, buf, 100, 0])),
            None
        );
    }

    #[test]
    fn getxattr_looks_the_path_up_and_finds_no_attribute() {
        let dir = Dir::new("xattr");
        std::os::unix::fs::symlink("none", dir.0.join("dangling")).unwrap();
        let s = path_space(true);
        let cases: [(&[u8], u64, i32); 5] = [
            (b"/m/f", GETXATTR, libc::ENODATA),
            (b"/m/d", LGETXATTR, libc::ENODATA),
            (b"/m/none", GETXATTR, libc::ENOENT),
            (b"/m/dangling", LGETXATTR, libc::ENODATA),
            (b"/m/dangling", GETXATTR, libc::ENOENT),
        ];
        for (path, nr, errno) in cases {
            put_path(&s, PATH, path);
            let got = answer(&s, &dir, call_at(nr, [PATH, DATA, 0, 0]));
            assert_eq!(got, err(errno), "{}", String::from_utf8_lossy(path));
        }
    }

    #[test]
    fn access_is_the_hosts_answer_in_the_view() {
        let dir = Dir::new("access");
        let s = path_space(true);
        // (call, registers from RDI, errno; 0: allowed)
        let cases: [(u64, [u64; 4], &[u8], i32); 6] = [
            (ACCESS, [PATH, 4, 0, 0], b"/m/f", 0),
            (ACCESS, [PATH, 0, 0, 0], b"/m/none", libc::ENOENT),
            (FACCESSAT, [CWD, PATH, 4, 0], b"/m/d", 0),
            (FACCESSAT2, [CWD, PATH, 4, 0x100], b"/m/l", 0),
            // A write in a read-only mount.
            (FACCESSAT2, [CWD, PATH, 2, 0x200], b"/m/f", libc::EROFS),
            (ACCESS, [PATH, 0, 0, 0], b"/m/f/x", libc::ENOTDIR),
        ];
        for (nr, args, path, errno) in cases {
            put_path(&s, PATH, path);
            let got = answer(&s, &dir, call_at(nr, args));
            assert_eq!(got, err(errno), "{nr} {}", String::from_utf8_lossy(path));
        }
        // A bad mode, an unknown flag: the kernel's (EINVAL).
        put_path(&s, PATH, b"/m/f");
        assert_eq!(answer(&s, &dir, call_at(ACCESS, [PATH, 8, 0, 0])), None);
        let r = call_at(FACCESSAT2, [CWD, PATH, 4, 0x4]);
        assert_eq!(answer(&s, &dir, r), None);
    }
}
