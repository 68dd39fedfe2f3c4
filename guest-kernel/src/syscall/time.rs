//! clock_gettime, clock_getres, gettimeofday, time, nanosleep,
//! clock_nanosleep.

use super::{Ctx, HostIo};
use crate::errno::{Errno, KResult};
use crate::mm::phys::PhysMem;
use crate::uaccess::{copy_from_user, copy_to_user};

/// The clocks the kernel keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Wall-clock time since the epoch.
    Realtime,
    /// Time since an arbitrary start that never goes back.
    Monotonic,
}

/// Linux clock ids mapped onto the two clocks (coarse, raw and boottime
/// variants read the same source; CPU-time clocks read the monotonic one,
/// which is what the single process has been running for at most).
/// The calling process's CPU-time clock.
const CLOCK_PROCESS_CPUTIME_ID: u64 = 2;
/// The calling thread's CPU-time clock.
const CLOCK_THREAD_CPUTIME_ID: u64 = 3;

fn clock_of(id: u64) -> KResult<Clock> {
    match id {
        0 | 5 | 8 | 11 => Ok(Clock::Realtime),
        1 | 2 | 3 | 4 | 6 | 7 | 9 => Ok(Clock::Monotonic),
        _ => Err(Errno::EINVAL),
    }
}

fn timespec(ns: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
    b[8..].copy_from_slice(&(ns % 1_000_000_000).to_le_bytes());
    b
}

/// clock_gettime(clockid, tp)
pub fn clock_gettime<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    id: u64,
    tp: u64,
) -> KResult<i64> {
    let ns = match id {
        CLOCK_PROCESS_CPUTIME_ID => {
            let now = cx.host.cpu_ns();
            super::task::group_cpu_ns(cx, now)
        }
        CLOCK_THREAD_CPUTIME_ID => {
            let now = cx.host.cpu_ns();
            cx.p.running_cpu_ns(now)
        }
        _ => cx.host.now_ns(clock_of(id)?),
    };
    copy_to_user(&mut cx.p.mm, cx.env, tp, &timespec(ns))?;
    Ok(0)
}

/// clock_getres(clockid, res): 1 ns (the TSC is finer).
pub fn clock_getres<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    id: u64,
    res: u64,
) -> KResult<i64> {
    clock_of(id)?;
    if res != 0 {
        copy_to_user(&mut cx.p.mm, cx.env, res, &timespec(1))?;
    }
    Ok(0)
}

/// gettimeofday(tv, tz): tz is ignored, as Linux mostly does.
pub fn gettimeofday<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    tv: u64,
) -> KResult<i64> {
    if tv != 0 {
        let ns = cx.host.now_ns(Clock::Realtime);
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
        b[8..].copy_from_slice(&((ns % 1_000_000_000) / 1000).to_le_bytes());
        copy_to_user(&mut cx.p.mm, cx.env, tv, &b)?;
    }
    Ok(0)
}

/// time(tloc)
pub fn time<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, tloc: u64) -> KResult<i64> {
    let secs = cx.host.now_ns(Clock::Realtime) / 1_000_000_000;
    if tloc != 0 {
        copy_to_user(&mut cx.p.mm, cx.env, tloc, &secs.to_le_bytes())?;
    }
    Ok(secs as i64)
}

/// `TIMER_ABSTIME` for clock_nanosleep.
const TIMER_ABSTIME: u64 = 1;

/// The user `struct timespec` at `va` in nanoseconds; EINVAL if it is not
/// a valid duration (negative, or 10^9 nanoseconds or more).
pub(super) fn read_timespec<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    va: u64,
) -> KResult<u64> {
    let mut b = [0u8; 16];
    copy_from_user(&mut cx.p.mm, cx.env, va, &mut b)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    let sec = i64::from_le_bytes(w);
    w.copy_from_slice(&b[8..]);
    let nsec = i64::from_le_bytes(w);
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok((sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(nsec as u64))
}

/// nanosleep(req, rem): the host sleeps; never interrupted, so `rem` is
/// left alone.
pub fn nanosleep<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, req: u64) -> KResult<i64> {
    let ns = read_timespec(cx, req)?;
    sleep_ns(cx, ns)
}

/// Sleep `ns`: the host sleeps when nothing else can run; otherwise the
/// process waits with a deadline and the others run meanwhile.
pub fn sleep_ns<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, ns: u64) -> KResult<i64> {
    if core::mem::take(&mut cx.p.timed_out) {
        cx.p.deadline = None;
        return Ok(0);
    }
    if cx.p.deadline.is_some() {
        return Err(Errno::ERESTARTSYS);
    }
    let end = cx.host.now_ns(Clock::Monotonic).saturating_add(ns);
    // The host sleeps for the whole of it only if no other process could
    // run meanwhile: none is runnable, and none wakes before the end.
    if !cx.tasks.any_runnable() && cx.tasks.first_wake().is_none_or(|w| w >= end) {
        loop {
            let now = cx.host.now_ns(Clock::Monotonic);
            let Some(at) = cx.p.alarm_at.filter(|&at| at < end) else {
                cx.host.sleep(end.saturating_sub(now));
                return Ok(0);
            };
            // The alarm comes first: it interrupts the sleep if its
            // SIGALRM is to be delivered (not ignored, not blocked).
            cx.host.sleep(at.saturating_sub(now));
            cx.p.fire_alarm(at);
            if cx.p.next_signal().is_some() {
                return Err(Errno::EINTR);
            }
        }
    }
    cx.p.deadline = Some(end);
    Err(Errno::ERESTARTSYS)
}

/// clock_nanosleep(clockid, flags, req, rem): relative, or until an
/// absolute time on `clockid` with TIMER_ABSTIME.
pub fn clock_nanosleep<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    id: u64,
    flags: u64,
    req: u64,
) -> KResult<i64> {
    let clock = clock_of(id)?;
    let ns = read_timespec(cx, req)?;
    let wait = if flags & TIMER_ABSTIME != 0 {
        ns.saturating_sub(cx.host.now_ns(clock))
    } else {
        ns
    };
    sleep_ns(cx, wait)
}

/// alarm(seconds): SIGALRM after that many seconds (0 cancels); returns
/// the seconds that were left of the previous alarm.
pub fn alarm<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, secs: u64) -> i64 {
    let now = cx.host.now_ns(Clock::Monotonic);
    let left =
        cx.p.alarm_at
            .map_or(0, |at| at.saturating_sub(now).div_ceil(1_000_000_000));
    cx.p.alarm_interval = 0;
    cx.p.alarm_at = (secs > 0).then(|| now + secs * 1_000_000_000);
    left as i64
}

fn timeval_ns(b: &[u8]) -> u64 {
    let mut s = [0u8; 8];
    let mut u = [0u8; 8];
    s.copy_from_slice(&b[..8]);
    u.copy_from_slice(&b[8..16]);
    (u64::from_le_bytes(s)).saturating_mul(1_000_000_000)
        + u64::from_le_bytes(u).min(999_999) * 1000
}

fn timeval_bytes(ns: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
    b[8..].copy_from_slice(&(ns % 1_000_000_000 / 1000).to_le_bytes());
    b
}

/// The current ITIMER_REAL as `struct itimerval` (interval, value).
fn itimer_now<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>) -> [u8; 32] {
    let now = cx.host.now_ns(Clock::Monotonic);
    let value =
        cx.p.alarm_at
            .map_or(0, |at| at.saturating_sub(now).max(1000));
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(&timeval_bytes(cx.p.alarm_interval));
    b[16..].copy_from_slice(&timeval_bytes(value));
    b
}

/// ITIMER_VIRTUAL (1) or ITIMER_PROF (2) as `struct itimerval`: the
/// interval, and the group CPU time left before it fires.
fn cpu_itimer_now<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, which: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    if let Some((at, interval)) = cx.p.cpu_timers[which as usize - 1] {
        let now = cx.host.cpu_ns();
        let cpu = super::task::group_cpu_ns(cx, now);
        b[..16].copy_from_slice(&timeval_bytes(interval));
        b[16..].copy_from_slice(&timeval_bytes(at.saturating_sub(cpu).max(1000)));
    }
    b
}

/// Post SIGVTALRM or SIGPROF for each CPU-time itimer the caller's thread
/// group has used up (at the timer interrupt, so within a tick of CPU
/// time); an interval timer is set again, skipping periods already past.
pub fn fire_cpu_timers<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>) {
    const SIGNALS: [u64; 2] = [crate::signal::nr::SIGVTALRM, crate::signal::nr::SIGPROF];
    let now = cx.host.cpu_ns();
    let cpu = super::task::group_cpu_ns(cx, now);
    for (i, sig) in SIGNALS.into_iter().enumerate() {
        let Some((at, interval)) = cx.p.cpu_timers[i] else {
            continue;
        };
        if cpu < at {
            continue;
        }
        cx.p.cpu_timers[i] = next_expiry(at, interval, cpu).map(|at| (at, interval));
        let info = crate::signal::frame::SigInfo {
            signo: sig as i32,
            code: 0x80,
            ..Default::default()
        };
        cx.p.post_signal(sig, info);
    }
}

/// When a timer that expired at `at` with `interval` fires next, past
/// `now` (None: a one-shot).
pub fn next_expiry(at: u64, interval: u64, now: u64) -> Option<u64> {
    if interval == 0 {
        return None;
    }
    let behind = now.saturating_sub(at) / interval + 1;
    Some(at.saturating_add(behind.saturating_mul(interval)))
}

/// getitimer(which, value): ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF.
pub fn getitimer<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    which: u64,
    out: u64,
) -> KResult<i64> {
    let b = match which {
        0 => itimer_now(cx),
        1 | 2 => cpu_itimer_now(cx, which),
        _ => return Err(Errno::EINVAL),
    };
    copy_to_user(&mut cx.p.mm, cx.env, out, &b)?;
    Ok(0)
}

/// setitimer(which, new, old): ITIMER_REAL delivers SIGALRM; ITIMER_VIRTUAL
/// (SIGVTALRM) and ITIMER_PROF (SIGPROF) count the thread group's CPU time
/// by the guest's CPU clock (which does not tell user from kernel time, so
/// the two count alike) and fire at the timer interrupt.
pub fn setitimer<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    which: u64,
    new: u64,
    old: u64,
) -> KResult<i64> {
    if which > 2 {
        return Err(Errno::EINVAL);
    }
    let prev = if which == 0 {
        itimer_now(cx)
    } else {
        cpu_itimer_now(cx, which)
    };
    if new != 0 {
        let mut b = [0u8; 32];
        copy_from_user(&mut cx.p.mm, cx.env, new, &mut b)?;
        if which == 0 {
            let interval = timeval_ns(&b[..16]);
            let value = timeval_ns(&b[16..]);
            let now = cx.host.now_ns(Clock::Monotonic);
            cx.p.alarm_interval = interval;
            cx.p.alarm_at = (value > 0).then(|| now + value);
        } else {
            let interval = timeval_ns(&b[..16]);
            let value = timeval_ns(&b[16..]);
            let now = cx.host.cpu_ns();
            let cpu = super::task::group_cpu_ns(cx, now);
            cx.p.cpu_timers[which as usize - 1] = (value > 0).then(|| (cpu + value, interval));
        }
    }
    if old != 0 {
        copy_to_user(&mut cx.p.mm, cx.env, old, &prev)?;
    }
    Ok(0)
}

/// Clock ticks (USER_HZ, 100 a second) in `ns`.
fn clock_ticks(ns: u64) -> u64 {
    ns / 10_000_000
}

/// times(buf): clock ticks since boot; the process's CPU time and its
/// reaped children's as user time (the guest's CPU clock does not tell
/// user from kernel time), system times 0.
pub fn times<M: PhysMem, H: HostIo>(cx: &mut Ctx<'_, '_, '_, M, H>, buf: u64) -> KResult<i64> {
    if buf != 0 {
        let now = cx.host.cpu_ns();
        let mine = super::task::group_cpu_ns(cx, now);
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(&clock_ticks(mine).to_le_bytes());
        b[16..24].copy_from_slice(&clock_ticks(cx.p.children_ns).to_le_bytes());
        copy_to_user(&mut cx.p.mm, cx.env, buf, &b)?;
    }
    Ok(clock_ticks(cx.host.now_ns(Clock::Monotonic)) as i64)
}

/// getrusage(who, usage): RUSAGE_SELF (the thread group), RUSAGE_CHILDREN
/// (reaped children) or RUSAGE_THREAD, CPU time as user time; `ru_minflt`
/// counts the calling thread's page faults from user mode.
pub fn getrusage<M: PhysMem, H: HostIo>(
    cx: &mut Ctx<'_, '_, '_, M, H>,
    who: u64,
    buf: u64,
) -> KResult<i64> {
    let now = cx.host.cpu_ns();
    let ns = match who as i32 {
        0 => super::task::group_cpu_ns(cx, now),
        -1 => cx.p.children_ns,
        1 => cx.p.running_cpu_ns(now),
        _ => return Err(Errno::EINVAL),
    };
    let mut usage = super::task::rusage_bytes(ns);
    if who as i32 != -1 {
        // ru_minflt: the calling thread's faults (other threads' are not
        // summed for RUSAGE_SELF yet).
        usage[64..72].copy_from_slice(&cx.p.min_flt.to_le_bytes());
    }
    copy_to_user(&mut cx.p.mm, cx.env, buf, &usage)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::next_expiry;

    #[test]
    fn an_interval_timer_fires_next_past_the_time_already_used() {
        assert_eq!(next_expiry(100, 0, 150), None, "one shot");
        assert_eq!(next_expiry(100, 20, 100), Some(120));
        assert_eq!(next_expiry(100, 20, 119), Some(120));
        assert_eq!(
            next_expiry(100, 20, 120),
            Some(140),
            "periods already past are skipped"
        );
        assert_eq!(next_expiry(100, 20, 175), Some(180));
    }
}
