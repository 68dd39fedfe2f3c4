//! POSIX per-process timers (`timer_create` and friends), Linux's
//! `k_itimer`.
//!
//! Every timer of every process is in one kernel-wide list ([`Timers`],
//! kept in [`super::task::Tasks`]), each tagged with its process (thread
//! group). An armed timer has an expiry on the monotonic clock (a
//! `CLOCK_REALTIME` absolute time is converted when it is set); the kernel
//! fires the due ones ([`fire_due`]) from the timer interrupt, from the
//! scheduler when it looks for work, and when nothing runs the host sleeps
//! until [`Timers::next_expiry`].
//!
//! An expiry posts the timer's signal (`si_code` SI_TIMER, `si_timerid`,
//! `si_value`) to the process (the thread holding its group) or, for
//! `SIGEV_THREAD_ID`, to one thread. While that signal is still pending an
//! expiry only counts an overrun; when the signal is taken
//! ([`Timers::dequeued`]: delivery, `sigwaitinfo`, a signalfd read) the
//! overruns so far become its `si_overrun` and what `timer_getoverrun`
//! reports, as on Linux. An interval timer that expires late counts the
//! periods it missed as overruns too.

use alloc::vec::Vec;

use super::task::{TaskState, Tasks};
use super::Process;
use crate::errno::{Errno, KResult};
use crate::signal::frame::{si, SigInfo};
use crate::signal::{self, Route};

/// Most timers one process may hold (Linux bounds them by
/// `RLIMIT_SIGPENDING`); `timer_create` gives EAGAIN past it.
pub const MAX_TIMERS_PER_PROCESS: usize = 1024;

/// What an expiry does (`sigev_notify`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notify {
    /// `SIGEV_NONE`: nothing; the program polls with `timer_gettime`.
    None,
    /// `SIGEV_SIGNAL` (and `SIGEV_THREAD`, which the C library builds on
    /// it): signal `signo` to the process, or with `SIGEV_THREAD_ID` to
    /// thread `thread`.
    Signal {
        /// The signal.
        signo: u64,
        /// The one thread it goes to (`SIGEV_THREAD_ID`).
        thread: Option<u64>,
    },
}

/// One timer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PosixTimer {
    /// The process (thread group) that owns it.
    pub tgid: u64,
    /// Its id (`timer_t` as the kernel hands it out).
    pub id: i32,
    /// Whether absolute times are on `CLOCK_REALTIME` (else on the
    /// monotonic clock, which `CLOCK_BOOTTIME` equals here).
    pub realtime: bool,
    /// What an expiry does.
    pub notify: Notify,
    /// `sigev_value`, handed over as `si_value`.
    pub value: u64,
    /// The next expiry (monotonic ns); `None` while disarmed.
    pub expires: Option<u64>,
    /// The period (ns); 0 for a one-shot timer.
    pub interval: u64,
    /// Expiries since its pending signal was posted (Linux's `it_overrun`).
    pub overrun: u64,
    /// The overrun count of the last signal taken (`timer_getoverrun`).
    pub overrun_last: i32,
    /// Bumped by every `timer_settime`, so that a signal posted before it
    /// does not count the new setting's overruns.
    pub generation: i32,
}

impl PosixTimer {
    /// Arm it to expire at `at` (monotonic ns) and then every `interval`
    /// ns, or disarm it (`at` None).
    pub fn set(&mut self, at: Option<u64>, interval: u64) {
        self.expires = at;
        self.interval = if at.is_some() { interval } else { 0 };
        self.overrun = 0;
        self.overrun_last = 0;
        self.generation = self.generation.wrapping_add(1) & i32::MAX;
    }

    /// `(it_interval, it_value)` at `now`: the period and the time left
    /// to the next expiry (0, 0 when disarmed). A signal timer whose last
    /// expiry is past but not yet handled reports 1 ns, as Linux does.
    pub fn get(&self, now: u64) -> (u64, u64) {
        let Some(at) = self.expires else {
            return (0, 0);
        };
        let left = if at > now {
            at - now
        } else if self.interval > 0 {
            self.interval - (now - at) % self.interval
        } else if self.notify == Notify::None {
            0
        } else {
            1
        };
        (self.interval, left)
    }

    /// Whether an expiry of this timer is due at `now` (SIGEV_NONE timers
    /// never need firing: `get` computes their state).
    pub fn due(&self, now: u64) -> bool {
        self.fires() && self.expires.is_some_and(|at| at <= now)
    }

    /// Whether it is armed and posts a signal when it expires.
    pub fn fires(&self) -> bool {
        self.expires.is_some() && matches!(self.notify, Notify::Signal { .. })
    }

    /// After the expiry due at or before `now`: the next expiry of an
    /// interval timer past `now` (one-shot: disarmed). Returns the periods
    /// that went by unseen (missed because the expiry came late).
    pub fn forward(&mut self, now: u64) -> u64 {
        let Some(at) = self.expires else {
            return 0;
        };
        if self.interval == 0 {
            self.expires = None;
            return 0;
        }
        let missed = now.saturating_sub(at) / self.interval;
        let step = (missed + 1).saturating_mul(self.interval);
        self.expires = Some(at.saturating_add(step));
        missed
    }

    /// The `siginfo_t` of its signal `signo`.
    pub fn info(&self, signo: u64) -> SigInfo {
        SigInfo {
            signo: signo as i32,
            code: si::TIMER,
            addr_or_pid: self.id as u32 as u64,
            status: self.generation,
            value: self.value,
            ..Default::default()
        }
    }

    /// Whether `info` is this timer's signal under its current setting.
    fn owns(&self, info: &SigInfo) -> bool {
        info.code == si::TIMER
            && info.addr_or_pid == self.id as u32 as u64
            && info.status == self.generation
    }
}

/// Every process's timers.
#[derive(Debug, Default)]
pub struct Timers {
    list: Vec<PosixTimer>,
    /// The id each process hands out next (Linux's
    /// `next_posix_timer_id`: counting up from 0, never reset by exec).
    next_ids: Vec<(u64, i32)>,
}

impl Timers {
    /// None yet.
    pub const fn new() -> Timers {
        Timers {
            list: Vec::new(),
            next_ids: Vec::new(),
        }
    }

    /// A new disarmed timer of process `tgid`; its `sigev_value` is
    /// `value`, or its own id when `None` (timer_create without a
    /// sigevent). Returns the id; EAGAIN past the per-process limit.
    pub fn create(
        &mut self,
        tgid: u64,
        realtime: bool,
        notify: Notify,
        value: Option<u64>,
    ) -> KResult<i32> {
        if self.list.iter().filter(|t| t.tgid == tgid).count() >= MAX_TIMERS_PER_PROCESS {
            return Err(Errno::EAGAIN);
        }
        let slot = match self.next_ids.iter().position(|&(g, _)| g == tgid) {
            Some(i) => i,
            None => {
                self.next_ids.push((tgid, 0));
                self.next_ids.len() - 1
            }
        };
        let mut id = self.next_ids[slot].1;
        while self.list.iter().any(|t| t.tgid == tgid && t.id == id) {
            id = id.wrapping_add(1) & i32::MAX;
        }
        self.next_ids[slot].1 = id.wrapping_add(1) & i32::MAX;
        self.list.push(PosixTimer {
            tgid,
            id,
            realtime,
            notify,
            value: value.unwrap_or(id as u64),
            expires: None,
            interval: 0,
            overrun: 0,
            overrun_last: 0,
            generation: 0,
        });
        Ok(id)
    }

    /// Timer `id` of process `tgid`; EINVAL if there is none.
    pub fn get_mut(&mut self, tgid: u64, id: u64) -> KResult<&mut PosixTimer> {
        self.list
            .iter_mut()
            .find(|t| t.tgid == tgid && u64::from(t.id as u32) == id)
            .ok_or(Errno::EINVAL)
    }

    /// Delete timer `id` of `tgid` (a signal it posted stays pending, as
    /// on Linux); EINVAL if there is none.
    pub fn delete(&mut self, tgid: u64, id: u64) -> KResult<()> {
        let i = self
            .list
            .iter()
            .position(|t| t.tgid == tgid && u64::from(t.id as u32) == id)
            .ok_or(Errno::EINVAL)?;
        self.list.remove(i);
        Ok(())
    }

    /// exec: the process's timers are deleted (its id counter goes on).
    pub fn exec(&mut self, tgid: u64) {
        self.list.retain(|t| t.tgid != tgid);
    }

    /// The process ended: its timers and its id counter go.
    pub fn exit_group(&mut self, tgid: u64) {
        self.exec(tgid);
        self.next_ids.retain(|&(g, _)| g != tgid);
    }

    /// The earliest expiry of a timer that posts a signal, if any.
    pub fn next_expiry(&self) -> Option<u64> {
        self.list
            .iter()
            .filter(|t| t.fires())
            .filter_map(|t| t.expires)
            .min()
    }

    /// Whether some timer will post a signal (the kernel then wants timer
    /// interrupts, so that a process that never enters the kernel gets it).
    pub fn armed(&self) -> bool {
        self.list.iter().any(PosixTimer::fires)
    }

    /// The timers of `tgid`, for tests and `/proc`-like views.
    pub fn of(&self, tgid: u64) -> impl Iterator<Item = &PosixTimer> {
        self.list.iter().filter(move |t| t.tgid == tgid)
    }

    /// A thread of `tgid` takes signal `info` off its pending set: for a
    /// timer's signal, the overruns counted since it was posted become its
    /// `si_overrun` and the timer's `timer_getoverrun` value (Linux's
    /// `posixtimer_rearm`). Other signals are left alone.
    pub fn dequeued(&mut self, tgid: u64, info: &mut SigInfo) {
        if info.code != si::TIMER {
            return;
        }
        let Some(t) = self
            .list
            .iter_mut()
            .find(|t| t.tgid == tgid && t.owns(info))
        else {
            return;
        };
        let overrun = t.overrun.min(i32::MAX as u64) as i32;
        t.overrun_last = overrun;
        t.overrun = 0;
        info.uid = overrun as u32;
    }
}

/// What became of one expiry's signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Posted {
    /// Pending on its target now (which was woken if it waited).
    New,
    /// Its previous signal is still pending: an overrun.
    Overrun,
    /// Ignored by the process, or no such target (any more): nothing.
    Dropped,
}

/// Fire every timer due at `now` (monotonic ns): post its signal to its
/// target, among the running process `current` and the others in
/// `tasks`, and set its next expiry.
pub fn fire_due(tasks: &mut Tasks, current: &mut Process, now: u64) {
    if tasks.timers.next_expiry().is_none_or(|at| at > now) {
        return;
    }
    for k in 0..tasks.timers.list.len() {
        let t = &mut tasks.timers.list[k];
        if !t.due(now) {
            continue;
        }
        let Notify::Signal { signo, thread } = t.notify else {
            continue;
        };
        let (tgid, info) = (t.tgid, t.info(signo));
        let missed = t.forward(now);
        let posted = post(&mut tasks.others, current, tgid, thread, info);
        let t = &mut tasks.timers.list[k];
        match posted {
            Posted::New => t.overrun = missed,
            Posted::Overrun => t.overrun = t.overrun.saturating_add(1 + missed),
            Posted::Dropped => {}
        }
    }
}

/// Post a timer's signal `info` to thread `thread` of group `tgid`, or to
/// the thread holding the group; the group's handlers (with its holder)
/// decide whether it is ignored.
fn post(
    others: &mut [alloc::boxed::Box<Process>],
    current: &mut Process,
    tgid: u64,
    thread: Option<u64>,
    info: SigInfo,
) -> Posted {
    let alive = |p: &Process| p.tgid == tgid && !matches!(p.state, TaskState::Zombie(_));
    let sig = info.signo as u64;
    let i = (sig - 1) as usize;
    let act = if alive(current) && current.holds_group {
        current.sigactions[i]
    } else {
        match others.iter().find(|t| alive(t) && t.holds_group) {
            Some(h) => h.sigactions[i],
            None => return Posted::Dropped,
        }
    };
    let wanted = |p: &Process| alive(p) && thread.map_or(p.holds_group, |tid| p.pid == tid);
    let target = if wanted(current) {
        current
    } else {
        match others.iter_mut().find(|t| wanted(t)) {
            Some(t) => &mut **t,
            None => return Posted::Dropped,
        }
    };
    if signal::route(sig, &act, target.sigmask) == Route::Drop {
        return Posted::Dropped;
    }
    let bit = 1u64 << i;
    if target.sig_pending & bit != 0 && target.sig_info[i] == info {
        return Posted::Overrun;
    }
    target.pend(i, info);
    if target.state == TaskState::Blocked {
        target.state = TaskState::Runnable;
    }
    Posted::New
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::nr;
    use alloc::boxed::Box;

    const MS: u64 = 1_000_000;

    fn signal_timer(t: &mut Timers, tgid: u64, thread: Option<u64>) -> i32 {
        let notify = Notify::Signal {
            signo: nr::SIGALRM,
            thread,
        };
        t.create(tgid, false, notify, Some(0x1234)).unwrap()
    }

    fn process(pid: u64, tgid: u64, holds: bool, state: TaskState) -> Box<Process> {
        let mut p = Box::new(Process::empty());
        p.pid = pid;
        p.tgid = tgid;
        p.holds_group = holds;
        p.state = state;
        p
    }

    fn handle(p: &mut Process, sig: u64) {
        p.sigactions[(sig - 1) as usize].handler = 0x401000;
    }

    #[test]
    fn ids_count_up_per_process_and_exit_forgets_them() {
        let mut t = Timers::new();
        assert_eq!(signal_timer(&mut t, 1, None), 0);
        assert_eq!(signal_timer(&mut t, 1, None), 1);
        assert_eq!(signal_timer(&mut t, 2, None), 0, "another process");
        t.delete(1, 1).unwrap();
        assert_eq!(
            signal_timer(&mut t, 1, None),
            2,
            "ids are not reused at once"
        );
        assert_eq!(t.delete(1, 1), Err(Errno::EINVAL));
        t.exec(1);
        assert_eq!(t.of(1).count(), 0);
        assert_eq!(signal_timer(&mut t, 1, None), 3, "exec keeps the counter");
        t.exit_group(1);
        assert_eq!(signal_timer(&mut t, 1, None), 0);
        assert_eq!(t.of(2).count(), 1);
    }

    #[test]
    fn a_timer_without_a_sigevent_carries_its_id_as_value() {
        let mut t = Timers::new();
        let n = Notify::Signal {
            signo: nr::SIGALRM,
            thread: None,
        };
        t.create(1, false, n, None).unwrap();
        let id = t.create(1, false, n, None).unwrap();
        assert_eq!(t.get_mut(1, id as u64).unwrap().value, 1);
    }

    #[test]
    fn forward_skips_missed_periods_and_get_reports_time_left() {
        let mut t = Timers::new();
        let id = signal_timer(&mut t, 1, None) as u64;
        let tm = t.get_mut(1, id).unwrap();
        tm.set(Some(100 * MS), 10 * MS);
        assert_eq!(tm.get(95 * MS), (10 * MS, 5 * MS));
        assert!(!tm.due(99 * MS));
        assert!(tm.due(100 * MS));
        assert_eq!(tm.forward(100 * MS), 0);
        assert_eq!(tm.expires, Some(110 * MS));
        assert_eq!(
            tm.forward(135 * MS),
            2,
            "110 fired late: 120 and 130 missed"
        );
        assert_eq!(tm.expires, Some(140 * MS));
        assert_eq!(tm.get(143 * MS), (10 * MS, 7 * MS), "1 period pending");
        tm.set(Some(200 * MS), 0);
        assert_eq!(tm.get(150 * MS), (0, 50 * MS));
        assert_eq!(tm.forward(250 * MS), 0);
        assert_eq!(tm.expires, None, "a one-shot timer disarms");
        assert_eq!(tm.get(250 * MS), (0, 0));
    }

    #[test]
    fn setting_a_zero_value_disarms_and_drops_the_interval() {
        let mut tm = PosixTimer {
            tgid: 1,
            id: 0,
            realtime: false,
            notify: Notify::None,
            value: 0,
            expires: None,
            interval: 0,
            overrun: 3,
            overrun_last: 0,
            generation: 0,
        };
        tm.set(None, 5 * MS);
        assert_eq!(tm.get(0), (0, 0));
        assert_eq!(tm.overrun, 0);
        tm.set(Some(10), 0);
        assert_eq!(tm.get(20), (0, 0), "an expired SIGEV_NONE one-shot reads 0");
        assert!(!tm.due(20), "SIGEV_NONE never fires");
    }

    #[test]
    fn an_expiry_posts_once_then_counts_overruns_until_dequeued() {
        let mut tasks = Tasks::new();
        let mut cur = process(1, 1, true, TaskState::Runnable);
        handle(&mut cur, nr::SIGALRM);
        cur.sigmask = 1 << (nr::SIGALRM - 1);
        let id = signal_timer(&mut tasks.timers, 1, None);
        tasks
            .timers
            .get_mut(1, id as u64)
            .unwrap()
            .set(Some(10 * MS), 10 * MS);
        fire_due(&mut tasks, &mut cur, 5 * MS);
        assert_eq!(cur.sig_pending, 0, "not due yet");
        fire_due(&mut tasks, &mut cur, 10 * MS);
        assert_ne!(cur.sig_pending, 0);
        let mut info = cur.sig_info[(nr::SIGALRM - 1) as usize];
        assert_eq!((info.code, info.value), (si::TIMER, 0x1234));
        fire_due(&mut tasks, &mut cur, 20 * MS);
        fire_due(&mut tasks, &mut cur, 45 * MS);
        // 20 is one overrun; at 45, 30 fired late and 40 was missed.
        tasks.timers.dequeued(1, &mut info);
        assert_eq!(info.uid, 3, "si_overrun");
        assert_eq!(tasks.timers.get_mut(1, id as u64).unwrap().overrun_last, 3);
        assert_eq!(tasks.timers.next_expiry(), Some(50 * MS));
    }

    #[test]
    fn a_stale_signal_does_not_take_the_new_settings_overruns() {
        let mut tasks = Tasks::new();
        let mut cur = process(1, 1, true, TaskState::Runnable);
        handle(&mut cur, nr::SIGALRM);
        let id = signal_timer(&mut tasks.timers, 1, None) as u64;
        tasks.timers.get_mut(1, id).unwrap().set(Some(MS), MS);
        fire_due(&mut tasks, &mut cur, MS);
        let mut stale = cur.sig_info[(nr::SIGALRM - 1) as usize];
        tasks.timers.get_mut(1, id).unwrap().set(Some(2 * MS), MS);
        fire_due(&mut tasks, &mut cur, 2 * MS);
        fire_due(&mut tasks, &mut cur, 3 * MS);
        tasks.timers.dequeued(1, &mut stale);
        assert_eq!(stale.uid, 0);
        let mut fresh = cur.sig_info[(nr::SIGALRM - 1) as usize];
        tasks.timers.dequeued(1, &mut fresh);
        assert_eq!(fresh.uid, 1);
    }

    #[test]
    fn thread_id_timers_reach_their_thread_and_wake_it() {
        let mut tasks = Tasks::new();
        let mut cur = process(1, 1, true, TaskState::Runnable);
        handle(&mut cur, nr::SIGALRM);
        tasks.others.push(process(2, 1, false, TaskState::Blocked));
        tasks.others.push(process(3, 3, true, TaskState::Blocked));
        let id = signal_timer(&mut tasks.timers, 1, Some(2)) as u64;
        tasks.timers.get_mut(1, id).unwrap().set(Some(MS), 0);
        fire_due(&mut tasks, &mut cur, MS);
        assert_eq!(cur.sig_pending, 0);
        let t2 = tasks.find(2).unwrap();
        assert_eq!(t2.sig_pending, 1 << (nr::SIGALRM - 1));
        assert_eq!(t2.state, TaskState::Runnable);
        assert_eq!(tasks.find(3).unwrap().state, TaskState::Blocked);
        assert_eq!(tasks.timers.next_expiry(), None, "one-shot: disarmed");
    }

    #[test]
    fn a_process_timer_goes_to_the_holder_of_a_group_not_running() {
        let mut tasks = Tasks::new();
        let mut cur = process(1, 1, true, TaskState::Runnable);
        let mut holder = process(5, 5, true, TaskState::Blocked);
        handle(&mut holder, nr::SIGTERM);
        tasks.others.push(process(6, 5, false, TaskState::Blocked));
        tasks.others.push(holder);
        let n = Notify::Signal {
            signo: nr::SIGTERM,
            thread: None,
        };
        let id = tasks.timers.create(5, false, n, None).unwrap() as u64;
        tasks.timers.get_mut(5, id).unwrap().set(Some(MS), 0);
        fire_due(&mut tasks, &mut cur, 2 * MS);
        assert_eq!(tasks.find(5).unwrap().state, TaskState::Runnable);
        assert_eq!(tasks.find(6).unwrap().sig_pending, 0);
    }

    #[test]
    fn an_ignored_signal_is_dropped_and_the_timer_goes_on() {
        let mut tasks = Tasks::new();
        let mut cur = process(1, 1, true, TaskState::Runnable);
        cur.sigactions[(nr::SIGALRM - 1) as usize].handler = crate::signal::SIG_IGN;
        let id = signal_timer(&mut tasks.timers, 1, None) as u64;
        tasks.timers.get_mut(1, id).unwrap().set(Some(MS), MS);
        fire_due(&mut tasks, &mut cur, MS);
        assert_eq!(cur.sig_pending, 0);
        assert_eq!(tasks.timers.next_expiry(), Some(2 * MS));
    }
}
