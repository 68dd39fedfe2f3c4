//! poll, ioctl, prlimit64, getrandom: what runtimes ask at start.

use super::{Ctx, HostIo};
use crate::errno::{Errno, KResult};
use crate::fs::file::NR_OPEN;
use crate::mm::phys::PhysMem;
use crate::mm::rlimit::{self, Rlimit};
use crate::process::Process;
use crate::uaccess::{copy_from_user, copy_to_user};

const POLLNVAL: u16 = 0x20;
/// Most pollfds one call takes (Linux's RLIMIT_NOFILE default).
const MAX_POLLFDS: u64 = 1024;

/// poll(fds, nfds, timeout): what each fd is ready for now (pipes by
/// their state; files and the host's stdio always); with nothing ready,
/// wait until something is or the timeout runs out.
pub fn poll<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    fds: u64,
    nfds: u64,
    timeout_ms: i64,
) -> KResult<i64> {
    // poll takes nfds as an unsigned int.
    let nfds = nfds & 0xffff_ffff;
    if nfds > MAX_POLLFDS {
        return Err(Errno::EINVAL);
    }
    let mut ready = 0;
    let mut out = alloc::vec::Vec::with_capacity(nfds as usize);
    for i in 0..nfds {
        let mut pfd = [0u8; 8];
        copy_from_user(&mut cx.p.mm, cx.env, fds + i * 8, &mut pfd)?;
        let fd = i32::from_le_bytes([pfd[0], pfd[1], pfd[2], pfd[3]]);
        let events = u16::from_le_bytes([pfd[4], pfd[5]]);
        let revents = match fd {
            _ if fd < 0 => 0,
            _ => match cx.p.fds.file(fd as u64) {
                // POLLERR, POLLHUP and POLLNVAL are always reported.
                Ok(f) => f.borrow().readiness(cx.p.sig_pending) & (events | 0x38),
                Err(_) => POLLNVAL,
            },
        };
        out.push(revents);
        ready += i64::from(revents != 0);
    }
    if ready == 0 {
        return super::files::timed_wait(cx, timeout_ms);
    }
    cx.p.deadline = None;
    cx.p.timed_out = false;
    for (i, r) in out.iter().enumerate() {
        copy_to_user(
            &mut cx.p.mm,
            cx.env,
            fds + i as u64 * 8 + 6,
            &r.to_le_bytes(),
        )?;
    }
    Ok(ready)
}

/// ioctl(fd, request, arg): the requests Linux serves for every fd
/// (FIOCLEX, FIONCLEX, FIONBIO; FIONREAD of a pipe), and ENOTTY for the
/// rest: no fd is a terminal inside the VM (isatty is false).
pub fn ioctl<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    fd: u64,
    request: u64,
    arg: u64,
) -> KResult<i64> {
    const FIONREAD: u64 = 0x541b;
    const FIONBIO: u64 = 0x5421;
    const FIONCLEX: u64 = 0x5450;
    const FIOCLEX: u64 = 0x5451;
    let file = cx.p.fds.file(fd)?;
    match request & 0xffff_ffff {
        FIOCLEX | FIONCLEX => {
            cx.p.fds.get_mut(fd)?.cloexec = request & 0xffff_ffff == FIOCLEX;
            Ok(0)
        }
        FIONBIO => {
            let mut v = [0u8; 4];
            crate::uaccess::copy_from_user(&mut cx.p.mm, cx.env, arg, &mut v)?;
            let on = u32::from_le_bytes(v) != 0;
            let mut b = file.borrow_mut();
            b.flags = match on {
                true => b.flags | crate::fs::file::o::NONBLOCK,
                false => b.flags & !crate::fs::file::o::NONBLOCK,
            };
            Ok(0)
        }
        FIONREAD => {
            let unread = match &file.borrow().node {
                crate::fs::file::Node::Pipe { pipe, write: false } => pipe.borrow().len(),
                _ => return Err(Errno::ENOTTY),
            };
            let v = (unread as u32).to_le_bytes();
            copy_to_user(&mut cx.p.mm, cx.env, arg, &v)?;
            Ok(0)
        }
        _ => Err(Errno::ENOTTY),
    }
}

/// The limit of process `p` on `resource`: the fd table's for
/// `RLIMIT_NOFILE`, the address space's for the rest.
fn rlimit(p: &Process, resource: u64) -> KResult<Rlimit> {
    if resource == rlimit::resource::NOFILE {
        let (cur, max) = p.fds.limit;
        return Ok(Rlimit { cur, max });
    }
    p.mm.rlim.get(resource)
}

/// Set the limit on `resource` (see [`rlimit::Rlimits::set`]; `RLIMIT_NOFILE`
/// also may not exceed `nr_open`).
fn set_rlimit<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    resource: u64,
    new: Rlimit,
) -> KResult<()> {
    if resource == rlimit::resource::NOFILE {
        let old = rlimit(cx.p, resource)?;
        if new.cur > new.max {
            return Err(Errno::EINVAL);
        }
        if new.max > old.max || new.max > NR_OPEN {
            return Err(Errno::EPERM);
        }
        cx.p.fds.limit = (new.cur, new.max);
        return Ok(());
    }
    cx.p.mm.rlim.set(resource, new)
}

/// prlimit64(pid, resource, new, old), getrlimit and setrlimit: the old
/// limit is written to `old`, then `new` (if given) is set; limits are
/// kept over exec and copied by fork.
pub fn prlimit64<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    pid: u64,
    resource: u64,
    new: u64,
    old: u64,
) -> KResult<i64> {
    // The caller's own limit read (getrlimit, glibc's start): one copy.
    if pid == 0 && new == 0 && old != 0 {
        let cur = rlimit(cx.p, resource)?;
        copy_to_user(&mut cx.p.mm, cx.env, old, &rlimit_bytes(cur))?;
        return Ok(0);
    }
    prlimit64_set(cx, pid, resource, new, old)
}

/// [`prlimit64`]'s read of the caller's own limit on the syscall stub's
/// short path (`run::short_call`; glibc's start reads RLIMIT_STACK), by
/// process `p`, `a` the call's first four arguments: the same answer,
/// when `old` lies in one page mapped writable. None (nothing done) for
/// anything else, which the full path serves.
#[inline(always)]
pub fn prlimit64_short<M: PhysMem>(p: &Process, mem: &mut M, a: [u64; 4]) -> Option<i64> {
    let [pid, resource, new, old] = a;
    if pid != 0 || new != 0 {
        return None;
    }
    let cur = rlimit(p, resource).ok()?;
    match crate::uaccess::copy_to_mapped_page(&p.mm, mem, old, &rlimit_bytes(cur)) {
        Some(()) => Some(0),
        None => prlimit64_walked(p, mem, old, cur),
    }
}

/// [`prlimit64_short`]'s copy where no last table covers `old` (a struct
/// on the stack after faults elsewhere, as ld.so's call): one walk.
#[inline(never)]
fn prlimit64_walked<M: PhysMem>(p: &Process, mem: &mut M, old: u64, cur: Rlimit) -> Option<i64> {
    crate::uaccess::copy_to_walked_page(&p.mm, mem, old, &rlimit_bytes(cur))?;
    Some(0)
}

/// The size of `struct rlimit64`.
const RLIMIT_SIZE: u64 = 16;

/// `struct rlimit64` as the user reads it.
#[inline(always)]
fn rlimit_bytes(r: Rlimit) -> [u8; RLIMIT_SIZE as usize] {
    let mut b = [0u8; RLIMIT_SIZE as usize];
    b[..8].copy_from_slice(&r.cur.to_le_bytes());
    b[8..].copy_from_slice(&r.max.to_le_bytes());
    b
}

/// [`prlimit64`] of another pid, or with a new limit (or no old one to
/// write), out of line.
#[inline(never)]
fn prlimit64_set<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    pid: u64,
    resource: u64,
    new: u64,
    old: u64,
) -> KResult<i64> {
    if pid != 0 && pid != cx.p.pid && pid != cx.p.tgid {
        return Err(Errno::ESRCH);
    }
    let cur = rlimit(cx.p, resource)?;
    let wanted = if new != 0 {
        let mut b = [0u8; 16];
        copy_from_user(&mut cx.p.mm, cx.env, new, &mut b)?;
        let word = |k: usize| u64::from_le_bytes(b[k..k + 8].try_into().unwrap_or([0; 8]));
        Some(Rlimit {
            cur: word(0),
            max: word(8),
        })
    } else {
        None
    };
    if let Some(w) = wanted {
        set_rlimit(cx, resource, w)?;
    }
    // Like Linux, the old limit is written only once the call succeeded.
    if old != 0 {
        copy_to_user(&mut cx.p.mm, cx.env, old, &rlimit_bytes(cur))?;
    }
    Ok(0)
}

/// Largest getrandom request served in one call (Linux caps at 32 MiB).
const MAX_RANDOM: u64 = 32 << 20;

/// The flags getrandom knows: GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE.
const GRND_KNOWN: u64 = 0x1 | 0x2 | 0x4;

/// getrandom(buf, len, flags): bytes from the host's getrandom.
pub fn getrandom<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    buf: u64,
    len: u64,
    flags: u64,
) -> KResult<i64> {
    if flags & !GRND_KNOWN != 0 {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return Ok(0);
    }
    if let Some(v) = random_in_one_page(cx.p, cx.env.mem, cx.host, buf, len) {
        return Ok(v);
    }
    getrandom_pieces(cx, buf, len)
}

/// [`getrandom`] on the syscall stub's short path (`run::short_call`;
/// glibc's start asks for a seed), by process `p`, `a` the call's first
/// four arguments: the same answer for a buffer in one page mapped
/// writable. None (nothing done) for anything else, which the full path
/// serves.
#[inline(always)]
pub fn getrandom_short<M: PhysMem, H: HostIo>(
    p: &Process,
    mem: &M,
    host: &mut H,
    a: [u64; 4],
) -> Option<i64> {
    let [buf, len, flags, _] = a;
    if flags & !GRND_KNOWN != 0 {
        return None;
    }
    random_in_one_page(p, mem, host, buf, len)
}

/// Random bytes for the buffer `[buf, buf + len)` of process `p` when it
/// lies in one page mapped writable (a seed, a canary; not empty, below
/// the user range's end, so its checks pass): one piece, without the
/// frame of the pieces' array. None (nothing done) otherwise.
#[inline(always)]
fn random_in_one_page<M: PhysMem, H: HostIo>(
    p: &Process,
    mem: &M,
    host: &mut H,
    buf: u64,
    len: u64,
) -> Option<i64> {
    let piece = p.mm.mapped_user_piece(mem, buf, len, true)?;
    Some(host.random(&[piece]))
}

/// [`getrandom`] of a buffer not in one mapped page, out of line.
#[inline(never)]
fn getrandom_pieces<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    buf: u64,
    len: u64,
) -> KResult<i64> {
    // Linux caps the length at INT_MAX, then checks the whole buffer.
    crate::mm::space::check_user_range(buf, len.min(i32::MAX as u64))?;
    super::files::with_pieces(cx, buf, len.min(MAX_RANDOM), true, |cx, iov| {
        Ok(cx.host.random(iov))
    })
}

/// select/pselect6(nfds, readfds, writefds, exceptfds, timeout): the fd
/// sets as poll sees them; `timeout_ms` < 0 waits without limit.
pub fn select<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    nfds: u64,
    sets: [u64; 3],
    timeout_ms: i64,
) -> KResult<i64> {
    use crate::fs::file::pollev;
    if nfds > 1024 {
        return Err(Errno::EINVAL);
    }
    let bytes = nfds.div_ceil(64) as usize * 8;
    let mut inp = [[0u8; 128]; 3];
    for (k, &p) in sets.iter().enumerate() {
        if p != 0 && bytes > 0 {
            copy_from_user(&mut cx.p.mm, cx.env, p, &mut inp[k][..bytes])?;
        }
    }
    let mut outp = [[0u8; 128]; 3];
    let mut ready = 0;
    for fd in 0..nfds as usize {
        let want = [0, 1, 2].map(|k| inp[k][fd / 8] & (1 << (fd % 8)) != 0);
        if !want.iter().any(|&w| w) {
            continue;
        }
        let r =
            cx.p.fds
                .file(fd as u64)?
                .borrow()
                .readiness(cx.p.sig_pending);
        let got = [
            want[0] && r & (pollev::IN | pollev::HUP | pollev::ERR) != 0,
            want[1] && r & (pollev::OUT | pollev::ERR) != 0,
            false,
        ];
        for k in 0..3 {
            if got[k] {
                outp[k][fd / 8] |= 1 << (fd % 8);
                ready += 1;
            }
        }
    }
    if ready == 0 {
        let r = super::files::timed_wait(cx, timeout_ms)?;
        for (k, &p) in sets.iter().enumerate() {
            if p != 0 && bytes > 0 {
                copy_to_user(&mut cx.p.mm, cx.env, p, &outp[k][..bytes])?;
            }
        }
        return Ok(r);
    }
    cx.p.deadline = None;
    cx.p.timed_out = false;
    for (k, &p) in sets.iter().enumerate() {
        if p != 0 && bytes > 0 {
            copy_to_user(&mut cx.p.mm, cx.env, p, &outp[k][..bytes])?;
        }
    }
    Ok(ready)
}

/// A timeout in ms from a user `struct timeval` (`usec`) or `struct
/// timespec` (else) at `p`; -1 (no limit) for a NULL pointer.
pub fn timeout_ms<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    p: u64,
    usec: bool,
) -> KResult<i64> {
    if p == 0 {
        return Ok(-1);
    }
    let mut b = [0u8; 16];
    copy_from_user(&mut cx.p.mm, cx.env, p, &mut b)?;
    let sec = i64::from_le_bytes(b[..8].try_into().map_err(|_| Errno::EFAULT)?);
    let frac = i64::from_le_bytes(b[8..].try_into().map_err(|_| Errno::EFAULT)?);
    if sec < 0 || frac < 0 {
        return Err(Errno::EINVAL);
    }
    let frac_ms = if usec {
        (frac + 999) / 1000
    } else {
        (frac + 999_999) / 1_000_000
    };
    Ok(sec.saturating_mul(1000).saturating_add(frac_ms))
}
