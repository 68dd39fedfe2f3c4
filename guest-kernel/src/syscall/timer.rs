//! timer_create, timer_settime, timer_gettime, timer_getoverrun,
//! timer_delete: POSIX per-process timers (the logic is in
//! [`crate::process::timer`]).

use super::time::Clock;
use super::{Ctx, HostIo};
use crate::errno::{Errno, KResult};
use crate::mm::phys::PhysMem;
use crate::process::task::TaskState;
use crate::process::timer::{self, Notify};
use crate::uaccess::{copy_from_user, copy_to_user};

/// `sigev_notify` values.
mod sigev {
    pub const SIGNAL: u32 = 0;
    pub const NONE: u32 = 1;
    pub const THREAD: u32 = 2;
    pub const THREAD_ID: u32 = 4;
}

/// `TIMER_ABSTIME` for timer_settime.
const TIMER_ABSTIME: u64 = 1;

const NS: u64 = 1_000_000_000;

/// Whether clock `id` keeps absolute times on CLOCK_REALTIME (true) or on
/// the monotonic clock (false; CLOCK_BOOTTIME is the same here, the VM
/// never suspends). The CPU-time clocks are EINVAL (no timer counts
/// down a task's CPU time), the clocks Linux has no timers for
/// EOPNOTSUPP.
fn timer_clock(id: u64) -> KResult<bool> {
    match id {
        0 => Ok(true),
        1 | 7 => Ok(false),
        4..=6 => Err(Errno::EOPNOTSUPP),
        _ => Err(Errno::EINVAL),
    }
}

fn word32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn word64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The notification and value a user `struct sigevent` asks for (Linux's
/// `good_sigevent`): sigev_value +0, sigev_signo +8, sigev_notify +12,
/// the thread id +16. A `SIGEV_THREAD_ID` thread must be one of the
/// caller's group.
fn read_sigevent<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    sevp: u64,
) -> KResult<(Notify, u64)> {
    let mut b = [0u8; 64];
    copy_from_user(&mut cx.p.mm, cx.env, sevp, &mut b)?;
    let (value, signo, how) = (word64(&b, 0), u64::from(word32(&b, 8)), word32(&b, 12));
    let thread = match how {
        sigev::NONE => return Ok((Notify::None, value)),
        sigev::SIGNAL | sigev::THREAD => None,
        sigev::THREAD_ID => {
            let tid = u64::from(word32(&b, 16));
            let ours = tid == cx.p.pid
                || cx.tasks.others.iter().any(|t| {
                    t.pid == tid && t.tgid == cx.p.tgid && !matches!(t.state, TaskState::Zombie(_))
                });
            if !ours {
                return Err(Errno::EINVAL);
            }
            Some(tid)
        }
        _ => return Err(Errno::EINVAL),
    };
    if !crate::signal::valid(signo) {
        return Err(Errno::EINVAL);
    }
    Ok((Notify::Signal { signo, thread }, value))
}

/// timer_create(clockid, sevp, timerid): a disarmed timer; NULL `sevp`
/// means SIGALRM to the process with the timer id as value.
pub fn timer_create<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    clock: u64,
    sevp: u64,
    out: u64,
) -> KResult<i64> {
    let realtime = timer_clock(clock)?;
    let (notify, value) = if sevp == 0 {
        let n = Notify::Signal {
            signo: crate::signal::nr::SIGALRM,
            thread: None,
        };
        (n, None)
    } else {
        let (n, v) = read_sigevent(cx, sevp)?;
        (n, Some(v))
    };
    let tgid = cx.p.tgid;
    let id = cx.tasks.timers.create(tgid, realtime, notify, value)?;
    if let Err(e) = copy_to_user(&mut cx.p.mm, cx.env, out, &id.to_le_bytes()) {
        let _ = cx.tasks.timers.delete(tgid, id as u64);
        return Err(e);
    }
    Ok(0)
}

/// A `struct timespec` in ns; EINVAL unless 0 <= tv_nsec < 10^9 and
/// tv_sec >= 0.
fn timespec_ns(b: &[u8]) -> KResult<u64> {
    let (sec, nsec) = (word64(b, 0) as i64, word64(b, 8) as i64);
    if sec < 0 || !(0..NS as i64).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok((sec as u64).saturating_mul(NS).saturating_add(nsec as u64))
}

/// `struct itimerspec` (it_interval, it_value) for `(interval, value)`.
fn itimerspec(interval: u64, value: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, ns) in [interval, value].into_iter().enumerate() {
        b[i * 16..i * 16 + 8].copy_from_slice(&(ns / NS).to_le_bytes());
        b[i * 16 + 8..i * 16 + 16].copy_from_slice(&(ns % NS).to_le_bytes());
    }
    b
}

/// timer_settime(timerid, flags, new, old): arm (relative, or absolute on
/// the timer's clock with TIMER_ABSTIME) or disarm (a zero it_value);
/// `old` gets the previous setting. An expiry already due fires now.
pub fn timer_settime<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    id: u64,
    flags: u64,
    new: u64,
    old: u64,
) -> KResult<i64> {
    if new == 0 {
        return Err(Errno::EINVAL);
    }
    let mut b = [0u8; 32];
    copy_from_user(&mut cx.p.mm, cx.env, new, &mut b)?;
    let (interval, value) = (timespec_ns(&b[..16])?, timespec_ns(&b[16..])?);
    let now = cx.host.now_ns(Clock::Monotonic);
    let real = cx.host.now_ns(Clock::Realtime);
    let tgid = cx.p.tgid;
    let t = cx.tasks.timers.get_mut(tgid, id)?;
    let prev = t.get(now);
    let at = match (value, flags & TIMER_ABSTIME != 0) {
        (0, _) => None,
        (v, false) => Some(now.saturating_add(v)),
        (v, true) if t.realtime => Some(now.saturating_add(v.saturating_sub(real))),
        (v, true) => Some(v),
    };
    t.set(at, interval);
    timer::fire_due(cx.tasks, cx.p, now);
    if old != 0 {
        copy_to_user(&mut cx.p.mm, cx.env, old, &itimerspec(prev.0, prev.1))?;
    }
    Ok(0)
}

/// timer_gettime(timerid, cur): the period and the time to the next
/// expiry.
pub fn timer_gettime<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    id: u64,
    out: u64,
) -> KResult<i64> {
    let now = cx.host.now_ns(Clock::Monotonic);
    let (interval, value) = cx.tasks.timers.get_mut(cx.p.tgid, id)?.get(now);
    copy_to_user(&mut cx.p.mm, cx.env, out, &itimerspec(interval, value))?;
    Ok(0)
}

/// timer_getoverrun(timerid): the overruns of its last signal taken.
pub fn timer_getoverrun<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    id: u64,
) -> KResult<i64> {
    Ok(i64::from(
        cx.tasks.timers.get_mut(cx.p.tgid, id)?.overrun_last,
    ))
}

/// timer_delete(timerid)
pub fn timer_delete<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    id: u64,
) -> KResult<i64> {
    cx.tasks.timers.delete(cx.p.tgid, id)?;
    Ok(0)
}
