//! The scheduler's side of POSIX timers (the logic is in
//! `guest_kernel::process::timer`): firing the due ones, and sleeping the
//! host until the next one when nothing can run.

use super::Kernel;
use crate::arch::hypercall;
use guest_kernel::process::task::TaskState;
use guest_kernel::process::timer;

impl Kernel {
    /// Fire the POSIX timers due now (the timer interrupt).
    pub(super) fn fire_timers(&mut self) {
        if self.tasks.timers.next_expiry().is_none() {
            return;
        }
        let now = self.host_now();
        self.fire_timers_at(now);
    }

    /// Fire the POSIX timers due at `now`: their signals go to their
    /// processes or threads, waking them if they wait.
    pub(super) fn fire_timers_at(&mut self, now: u64) {
        let Some(current) = self.process.0.as_deref_mut() else {
            return;
        };
        timer::fire_due(&mut self.tasks, current, now);
    }

    /// Whether the current process, blocked while the scheduler looked for
    /// another, was made runnable (by a timer's signal).
    pub(super) fn current_woken_by_timer(&self) -> bool {
        self.process
            .0
            .as_deref()
            .is_some_and(|p| p.state == TaskState::Runnable)
    }

    /// When the current process, if blocked, wakes by itself (only asked
    /// while POSIX timers may come first, see `next_to_run`).
    pub(super) fn current_blocked_until(&self) -> Option<u64> {
        let p = self.process.0.as_deref()?;
        if p.state != TaskState::Blocked {
            return None;
        }
        p.wake_time()
    }

    /// Nothing is runnable: if a POSIX timer expires before `wake` (the
    /// first timed wait of a blocked process, if any), sleep the host
    /// until it and return true (the caller fires it and looks again).
    pub(super) fn sleep_until_timer(&mut self, now: u64, wake: Option<u64>) -> bool {
        let Some(at) = self.tasks.timers.next_expiry() else {
            return false;
        };
        if wake.is_some_and(|w| w <= at) {
            return false;
        }
        hypercall::sleep(at.saturating_sub(now));
        true
    }
}
