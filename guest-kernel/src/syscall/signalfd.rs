//! signalfd and signalfd4: a file descriptor whose reads take the
//! reader's pending signals of its mask, as `struct signalfd_siginfo`.
//!
//! The fd's mask lives in its open file description (`Node::SignalFd`),
//! so `signalfd(fd, mask, ...)` on an existing signalfd changes it for
//! every fd sharing the description. A read, like `sigwaitinfo`, takes the
//! signals from the *reading* thread's pending set (lowest first, as many
//! as fit), and blocks while none is pending unless the fd is
//! non-blocking. `poll`, `select` and `epoll` see it readable while one
//! of its signals is pending on the polling thread.

use alloc::rc::Rc;
use core::cell::Cell;

use super::{Ctx, HostIo};
use crate::errno::{Errno, KResult};
use crate::fs::file::{o, Node, OpenFile};
use crate::mm::phys::PhysMem;
use crate::uaccess::{copy_from_user, copy_to_user};

/// `sizeof(struct signalfd_siginfo)`.
pub const SIGINFO_SIZE: u64 = 128;

/// SIGKILL and SIGSTOP, which a signalfd never takes.
const UNBLOCKABLE: u64 =
    (1 << (crate::signal::nr::SIGKILL - 1)) | (1 << (crate::signal::nr::SIGSTOP - 1));

/// signalfd4(fd, mask, sizemask, flags) and signalfd(fd, mask, sizemask):
/// a new signalfd for `fd` -1, or a new mask for the signalfd `fd`.
pub fn signalfd4<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    fd: u64,
    mask: u64,
    size: u64,
    flags: u64,
) -> KResult<i64> {
    let known = u64::from(o::CLOEXEC | o::NONBLOCK);
    if flags & !known != 0 || size != 8 {
        return Err(Errno::EINVAL);
    }
    let mut b = [0u8; 8];
    copy_from_user(&mut cx.p.mm, cx.env, mask, &mut b)?;
    let set = u64::from_le_bytes(b) & !UNBLOCKABLE;
    if fd as i32 != -1 {
        let f = cx.p.fds.file(fd)?;
        let b = f.borrow();
        let Node::SignalFd(m) = &b.node else {
            return Err(Errno::EINVAL);
        };
        m.set(set);
        return Ok(fd as i64);
    }
    let flags32 = flags as u32;
    let node = Node::SignalFd(Rc::new(Cell::new(set)));
    let f = OpenFile::new(node, o::RDWR | (flags32 & o::NONBLOCK));
    Ok(cx.p.fds.alloc(f, flags32 & o::CLOEXEC != 0)? as i64)
}

/// A read of a signalfd with `mask`: the pending signals of the mask, one
/// `signalfd_siginfo` each, as many as `len` holds (EINVAL below one).
pub fn read<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    mask: u64,
    nonblock: bool,
    buf: u64,
    len: u64,
) -> KResult<u64> {
    if len < SIGINFO_SIZE {
        return Err(Errno::EINVAL);
    }
    let mut done = 0;
    while done + SIGINFO_SIZE <= len {
        let ready = cx.p.sig_pending & mask;
        if ready == 0 {
            break;
        }
        let i = ready.trailing_zeros() as usize;
        let mut info = cx.p.sig_info[i];
        cx.tasks.timers.dequeued(cx.p.tgid, &mut info);
        let bytes = crate::signal::frame::signalfd_siginfo_bytes(&info);
        copy_to_user(&mut cx.p.mm, cx.env, buf + done, &bytes)?;
        cx.p.sig_pending &= !(1u64 << i);
        done += SIGINFO_SIZE;
    }
    match done {
        0 if nonblock => Err(Errno::EAGAIN),
        0 => Err(Errno::ERESTARTSYS),
        n => Ok(n),
    }
}
