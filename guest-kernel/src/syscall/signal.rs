//! rt_sigaction, rt_sigprocmask, sigaltstack, kill, tkill, tgkill.
//!
//! Dispositions and the mask are recorded as Linux records them; a signal
//! posted here is delivered on the way back to user mode (run.rs), to a
//! handler on an `rt_sigframe` or by its default action.

use super::{Action, Ctx, HostIo};
use crate::errno::{Errno, KResult};
use crate::mm::phys::PhysMem;
use crate::process::Process;
use crate::signal::frame::{SigInfo, SI_TKILL, SI_USER};
use crate::signal::{self, Route, SigAction};
use crate::uaccess::{copy_from_user, copy_to_user};

/// `sigsetsize` the x86-64 ABI uses.
const SIGSET_SIZE: u64 = 8;
const SIG_BLOCK: u64 = 0;
const SIG_UNBLOCK: u64 = 1;
const SIG_SETMASK: u64 = 2;
/// Signals that cannot be blocked or caught.
const UNBLOCKABLE: u64 = (1 << (signal::nr::SIGKILL - 1)) | (1 << (signal::nr::SIGSTOP - 1));

fn words(raw: &[u8; 32]) -> [u64; 4] {
    let w = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    [w(0), w(1), w(2), w(3)]
}

/// The action a user `struct sigaction` (x86-64: handler, flags,
/// restorer, mask, four u64) sets; SIGKILL and SIGSTOP stay unblockable.
fn action_of(raw: &[u8; 32]) -> SigAction {
    let [handler, flags, restorer, mask] = words(raw);
    SigAction {
        handler,
        flags,
        restorer,
        mask: mask & !UNBLOCKABLE,
    }
}

/// `a` as a user `struct sigaction`.
fn action_bytes(a: &SigAction) -> [u8; 32] {
    let mut raw = [0u8; 32];
    for (i, w) in [a.handler, a.flags, a.restorer, a.mask].iter().enumerate() {
        raw[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    raw
}

/// rt_sigaction(sig, act, oact, sigsetsize): `struct sigaction` on x86-64
/// is handler, flags, restorer, mask (four u64).
pub fn rt_sigaction<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    sig: u64,
    act: u64,
    oact: u64,
    size: u64,
) -> KResult<i64> {
    if size != SIGSET_SIZE || !signal::valid(sig) {
        return Err(Errno::EINVAL);
    }
    let slot = (sig - 1) as usize;
    let old = cx.p.sigactions[slot];
    if act != 0 {
        if sig == signal::nr::SIGKILL || sig == signal::nr::SIGSTOP {
            return Err(Errno::EINVAL);
        }
        let mut raw = [0u8; 32];
        copy_from_user(&mut cx.p.mm, cx.env, act, &mut raw)?;
        cx.p.sigactions[slot] = action_of(&raw);
        cx.p.sigactions_set |= 1 << slot;
    }
    if oact != 0 {
        copy_to_user(&mut cx.p.mm, cx.env, oact, &action_bytes(&old))?;
    }
    Ok(0)
}

/// [`rt_sigaction`] of the process `p` on the syscall stub's short path
/// (`a`: sig, act, oact, sigsetsize): served as it serves a valid call
/// whose buffers each lie in one page mapped as they need (no fault to
/// resolve); None, with nothing changed, for any other (an error
/// included), which the full path then serves. A program's start-up sets
/// or reads dozens of actions (python3's, 66).
pub fn rt_sigaction_short<M: PhysMem>(p: &mut Process, mem: &mut M, a: [u64; 4]) -> Option<i64> {
    let [sig, act, oact, size] = a;
    if size != SIGSET_SIZE || !signal::valid(sig) {
        return None;
    }
    let uncatchable = sig == signal::nr::SIGKILL || sig == signal::nr::SIGSTOP;
    let read = match act {
        0 => None,
        _ if uncatchable => return None,
        _ => Some(p.mm.mapped_user_piece(mem, act, 32, false)?.phys),
    };
    let write = match oact {
        0 => None,
        _ => Some(p.mm.mapped_user_piece(mem, oact, 32, true)?.phys),
    };
    let slot = (sig - 1) as usize;
    let old = p.sigactions[slot];
    if let Some(pa) = read {
        let mut raw = [0u8; 32];
        mem.read_bytes(pa, &mut raw);
        p.sigactions[slot] = action_of(&raw);
        p.sigactions_set |= 1 << slot;
    }
    if let Some(pa) = write {
        mem.write_bytes(pa, &action_bytes(&old));
    }
    Some(0)
}

/// rt_sigprocmask(how, set, oset, sigsetsize)
pub fn rt_sigprocmask<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    how: u64,
    set: u64,
    oset: u64,
    size: u64,
) -> KResult<i64> {
    if size != SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    let old = cx.p.sigmask;
    if set != 0 {
        let mut b = [0u8; 8];
        copy_from_user(&mut cx.p.mm, cx.env, set, &mut b)?;
        let s = u64::from_le_bytes(b);
        cx.p.sigmask = match how {
            SIG_BLOCK => old | s,
            SIG_UNBLOCK => old & !s,
            SIG_SETMASK => s,
            _ => return Err(Errno::EINVAL),
        } & !UNBLOCKABLE;
    }
    if oset != 0 {
        copy_to_user(&mut cx.p.mm, cx.env, oset, &old.to_le_bytes())?;
    }
    Ok(0)
}

/// sigaltstack(ss, old_ss): `stack_t` is base, flags (int, padded), size.
pub fn sigaltstack<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    ss: u64,
    old: u64,
) -> KResult<i64> {
    let mut prev = cx.p.altstack;
    // Running on the alternate stack: reported, and it cannot change.
    let sp = cx.p.user_sp;
    let on = prev[1] & 2 == 0 && sp > prev[0] && sp <= prev[0].wrapping_add(prev[2]);
    if on {
        prev[1] |= 1; // SS_ONSTACK
    }
    if ss != 0 {
        if on {
            return Err(Errno::EPERM);
        }
        let mut raw = [0u8; 24];
        copy_from_user(&mut cx.p.mm, cx.env, ss, &mut raw)?;
        let mut w = [0u64; 3];
        for (i, v) in w.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&raw[i * 8..i * 8 + 8]);
            *v = u64::from_le_bytes(b);
        }
        const SS_DISABLE: u64 = 2;
        const MINSIGSTKSZ: u64 = 2048;
        let flags = w[1] & 0xffff_ffff;
        if flags & !SS_DISABLE != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & SS_DISABLE == 0 && w[2] < MINSIGSTKSZ {
            return Err(Errno::ENOMEM);
        }
        cx.p.altstack = [w[0], flags, w[2]];
    }
    if old != 0 {
        let mut raw = [0u8; 24];
        for (i, v) in prev.iter().enumerate() {
            raw[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        copy_to_user(&mut cx.p.mm, cx.env, old, &raw)?;
    }
    Ok(0)
}

/// Send `sig` to this process: 0 checks only; a terminating disposition
/// ends it.
pub fn send_self<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, sig: u64) -> Action {
    if sig == 0 {
        return Action::Return(0);
    }
    if !signal::valid(sig) {
        return Action::Return(Errno::EINVAL.to_ret());
    }
    let tgid = cx.p.tgid;
    super::task::prepare_signal(cx, tgid, sig);
    let action = cx.p.sigactions[(sig - 1) as usize];
    match signal::route(sig, &action, cx.p.sigmask) {
        Route::Post => {
            let info = SigInfo::sent(sig, SI_USER, cx.p.pid);
            cx.p.post_signal(sig, info);
            Action::Return(0)
        }
        Route::Drop => Action::Return(0),
        Route::Kill => Action::Kill(sig),
    }
}

/// rt_sigsuspend(mask, size): wait with `mask` until a signal comes; it
/// returns EINTR once one is pending (delivered on the way out, with the
/// caller's own mask back).
pub fn rt_sigsuspend<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    set: u64,
    size: u64,
) -> KResult<i64> {
    let mask = read_sigset(cx, set, size)?;
    if cx.p.sig_pending & !mask != 0 {
        // Deliver what the temporary mask lets through (the rest stays
        // pending under the caller's mask).
        let through = cx.p.sig_pending & !mask & cx.p.sigmask;
        cx.p.sigmask &= !through;
        cx.p.sigmask_after_handler = Some(cx.p.sigmask | through);
        return Err(Errno::EINTR);
    }
    Err(Errno::ERESTARTSYS)
}

/// The user signal set at `set` of `size` bytes (EINVAL unless the
/// ABI's 8), without SIGKILL and SIGSTOP.
fn read_sigset<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    set: u64,
    size: u64,
) -> KResult<u64> {
    if size != SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    let mut b = [0u8; 8];
    copy_from_user(&mut cx.p.mm, cx.env, set, &mut b)?;
    Ok(u64::from_le_bytes(b) & !UNBLOCKABLE)
}

/// rt_sigtimedwait(set, info, timeout, size): take the lowest pending
/// signal of `set` (which the caller normally blocks) without running its
/// handler, writing its `siginfo_t` to `info`; wait for one until
/// `timeout` (NULL: for ever), then EAGAIN. A signal outside `set` that
/// is delivered meanwhile makes it return EINTR.
pub fn rt_sigtimedwait<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    set: u64,
    info: u64,
    timeout: u64,
    size: u64,
) -> KResult<i64> {
    let which = read_sigset(cx, set, size)?;
    let ready = cx.p.sig_pending & which;
    if ready != 0 {
        let i = ready.trailing_zeros() as usize;
        let mut si = cx.p.sig_info[i];
        cx.tasks.timers.dequeued(cx.p.tgid, &mut si);
        if info != 0 {
            let bytes = crate::signal::frame::siginfo_bytes(&si);
            copy_to_user(&mut cx.p.mm, cx.env, info, &bytes)?;
        }
        cx.p.sig_pending &= !(1u64 << i);
        cx.p.deadline = None;
        cx.p.timed_out = false;
        return Ok(i as i64 + 1);
    }
    if core::mem::take(&mut cx.p.timed_out) {
        cx.p.deadline = None;
        return Err(Errno::EAGAIN);
    }
    if cx.p.deadline.is_none() && timeout != 0 {
        let ns = super::time::read_timespec(cx, timeout)?;
        if ns == 0 {
            return Err(Errno::EAGAIN);
        }
        let now = cx.host.now_ns(super::time::Clock::Monotonic);
        cx.p.deadline = Some(now.saturating_add(ns));
    }
    Err(Errno::ERESTARTSYS)
}

/// pause(): wait for a signal.
pub fn pause<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>) -> KResult<i64> {
    if cx.p.next_signal().is_some() {
        return Err(Errno::EINTR);
    }
    Err(Errno::ERESTARTSYS)
}

/// rt_sigpending(set, size)
pub fn rt_sigpending<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    set: u64,
    size: u64,
) -> KResult<i64> {
    if size != SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    let pending = cx.p.sig_pending & cx.p.sigmask;
    copy_to_user(&mut cx.p.mm, cx.env, set, &pending.to_le_bytes())?;
    Ok(0)
}

/// kill(pid, sig) and tkill(tid, sig): only this process exists.
pub fn kill<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, pid: u64, sig: u64) -> Action {
    let pid = pid as i32 as i64;
    if sig != 0 && !crate::signal::valid(sig) {
        return Action::Return(Errno::EINVAL.to_ret());
    }
    if pid == cx.p.tgid as i64 {
        return send_self(cx, sig);
    }
    if pid == -1 {
        // Everyone but pid 1 and the caller's own process, as Linux.
        let _ = super::task::kill_group(cx, -1, sig);
        return Action::Return(0);
    }
    if pid == 0 || pid == -(cx.p.pgid as i64) {
        // The caller's group: the others first, then itself.
        let pgid = cx.p.pgid;
        let _ = super::task::kill_pgrp(cx, pgid, sig);
        return send_self(cx, sig);
    }
    match super::task::kill_other(cx, pid, sig) {
        Ok(v) => Action::Return(v),
        Err(e) => Action::Return(e.to_ret()),
    }
}

/// A signal from outside the VM (vmrun got it): SIGINT, SIGQUIT and
/// SIGTSTP to pid 1's process group, as a terminal sends them to its
/// foreground group; any other to pid 1. The caller is whichever task
/// runs when it arrives; Kill means the caller dies of it.
pub fn from_host<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, sig: u64) -> Action {
    use crate::process::INIT_PID;
    if !signal::valid(sig) {
        return Action::Return(0);
    }
    let to_group = matches!(
        sig,
        signal::nr::SIGINT | signal::nr::SIGQUIT | signal::nr::SIGTSTP
    );
    if !to_group {
        return if cx.p.tgid == INIT_PID {
            send_self(cx, sig)
        } else {
            let _ = super::task::kill_other(cx, INIT_PID as i64, sig);
            Action::Return(0)
        };
    }
    let pgid = if cx.p.tgid == INIT_PID {
        cx.p.pgid
    } else {
        match cx.tasks.find(INIT_PID) {
            Some(t) => t.pgid,
            None => return Action::Return(0),
        }
    };
    let _ = super::task::kill_pgrp(cx, pgid, sig);
    if cx.p.pgid == pgid {
        return send_self(cx, sig);
    }
    Action::Return(0)
}

/// tgkill(tgid, tid, sig): to the thread `tid` of group `tgid`; the
/// group's leader (`tid == tgid`) of another group stands for its process.
pub fn tgkill<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    tgid: u64,
    tid: u64,
    sig: u64,
) -> Action {
    if sig != 0 && !signal::valid(sig) {
        return Action::Return(Errno::EINVAL.to_ret());
    }
    if tgid == cx.p.tgid && tid == cx.p.pid {
        return send_self(cx, sig);
    }
    if tgid != cx.p.tgid && tgid == tid {
        return match super::task::kill_other(cx, tid as i32 as i64, sig) {
            Ok(v) => Action::Return(v),
            Err(e) => Action::Return(e.to_ret()),
        };
    }
    signal_thread(cx, tgid, tid, sig)
}

/// tkill(tid, sig): tgkill to whichever group `tid` belongs to.
pub fn tkill<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, tid: u64, sig: u64) -> Action {
    let tgid = if tid == cx.p.pid {
        cx.p.tgid
    } else {
        match cx.tasks.find(tid) {
            Some(t) => t.tgid,
            None => return Action::Return(Errno::ESRCH.to_ret()),
        }
    };
    tgkill(cx, tgid, tid, sig)
}

/// A signal to thread `tid` of group `tgid`, not the caller: pending on
/// that thread if the group handles it or the thread blocks it (the
/// group's handlers are with the thread holding the group: the caller
/// for its own group); otherwise the default action, for the whole group.
fn signal_thread<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    tgid: u64,
    tid: u64,
    sig: u64,
) -> Action {
    use crate::process::task::TaskState;
    if sig != 0 {
        super::task::prepare_signal(cx, tgid, sig);
    }
    let i = sig.saturating_sub(1) as usize;
    let act = if tgid == cx.p.tgid {
        cx.p.sigactions[i]
    } else {
        match cx
            .tasks
            .others
            .iter()
            .find(|t| t.holds_group && t.tgid == tgid)
        {
            Some(h) => h.sigactions[i],
            None => return Action::Return(Errno::ESRCH.to_ret()),
        }
    };
    let from = cx.p.tgid;
    let Some(t) = cx
        .tasks
        .others
        .iter_mut()
        .find(|t| t.pid == tid && t.tgid == tgid && !matches!(t.state, TaskState::Zombie(_)))
    else {
        return Action::Return(Errno::ESRCH.to_ret());
    };
    if sig == 0 {
        return Action::Return(0);
    }
    match signal::route(sig, &act, t.sigmask) {
        Route::Post => {
            // Not post_signal: the handlers that decide are the holder's.
            t.pend(i, SigInfo::sent(sig, SI_TKILL, from));
            cx.tasks.wake_all();
            Action::Return(0)
        }
        Route::Drop => Action::Return(0),
        Route::Kill if tgid == cx.p.tgid => Action::Kill(sig),
        Route::Kill => match super::task::kill_other(cx, tgid as i64, sig) {
            Ok(v) => Action::Return(v),
            Err(e) => Action::Return(e.to_ret()),
        },
    }
}
