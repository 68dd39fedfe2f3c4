//! The task life cycle as the trace shows it: which tasks changed state
//! since the kernel last looked (TASK_STATE records, category TASKS).
//!
//! The kernel does not trace each state change where it happens (that
//! would add a test to every such site, traced or not). Where it already
//! tests the trace mask, at a context switch and at a system call's
//! return, it compares the tasks with what it traced last and records the
//! differences; so a task seen blocked and then running again shows both,
//! and one that came and went between two looks shows neither.

use alloc::vec::Vec;

use super::task::TaskState;
use super::Process;
use vmrun_contract::trace::task_state;

/// A task as last traced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Its thread id.
    pub pid: u64,
    /// Its process id.
    pub tgid: u64,
    /// Its [`task_state`] then.
    pub state: u64,
}

/// One TASK_STATE record's content: thread id, state, process id, and
/// the state's detail (the wait status of a zombie, the parent of a new
/// task).
pub type Change = [u64; 4];

/// The traced state of `t`; `running` if it is the current task.
pub fn state_of(t: &Process, running: bool) -> (u64, u64) {
    match t.state {
        TaskState::Zombie(ws) => (task_state::ZOMBIE, ws as u32 as u64),
        _ if running => (task_state::RUNNING, 0),
        TaskState::Runnable => (task_state::RUNNABLE, 0),
        TaskState::Blocked => (task_state::BLOCKED, 0),
        TaskState::Stopped => (task_state::STOPPED, 0),
    }
}

/// A new task (fork, vfork, clone) by `parent` (its process id): its
/// record, and it is remembered as ready to run.
pub fn spawned(seen: &mut Vec<Seen>, child: &Process, parent: u64) -> Change {
    seen.push(Seen {
        pid: child.pid,
        tgid: child.tgid,
        state: task_state::RUNNABLE,
    });
    [child.pid, task_state::NEW, child.tgid, parent]
}

/// The changes from `seen` to `now` (each task and whether it runs), and
/// `seen` brought up to date. A task no longer there was reaped if it was
/// a zombie, and is dead otherwise (an exited thread).
pub fn changes<'a>(
    seen: &mut Vec<Seen>,
    now: impl Iterator<Item = (&'a Process, bool)>,
) -> Vec<Change> {
    let mut out = Vec::new();
    let mut next = Vec::new();
    for (t, running) in now {
        let (state, detail) = state_of(t, running);
        let before = seen.iter().find(|s| s.pid == t.pid).map(|s| s.state);
        if before != Some(state) {
            out.push([t.pid, state, t.tgid, detail]);
        }
        next.push(Seen {
            pid: t.pid,
            tgid: t.tgid,
            state,
        });
    }
    for s in seen.iter() {
        if !next.iter().any(|n| n.pid == s.pid) {
            let end = match s.state {
                task_state::ZOMBIE => task_state::REAPED,
                _ => task_state::DEAD,
            };
            out.push([s.pid, end, s.tgid, 0]);
        }
    }
    *seen = next;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;

    fn task(pid: u64, state: TaskState) -> Box<Process> {
        let mut t = Box::new(Process::empty());
        t.pid = pid;
        t.tgid = pid;
        t.state = state;
        t
    }

    #[test]
    fn a_fork_a_switch_an_exit_and_a_reap_are_each_traced_once() {
        let mut seen = Vec::new();
        let init = task(1, TaskState::Runnable);
        let first = changes(&mut seen, [(&*init, true)].into_iter());
        assert_eq!(first, [[1, task_state::RUNNING, 1, 0]]);
        let child = task(2, TaskState::Runnable);
        assert_eq!(spawned(&mut seen, &child, 1), [2, task_state::NEW, 2, 1]);
        // Nothing changed: no records.
        let same = changes(&mut seen, [(&*init, true), (&*child, false)].into_iter());
        assert_eq!(same, Vec::<Change>::new());
        // The parent blocks in wait, the child runs.
        let waiting = task(1, TaskState::Blocked);
        let switch = changes(&mut seen, [(&*waiting, false), (&*child, true)].into_iter());
        assert_eq!(
            switch,
            [
                [1, task_state::BLOCKED, 1, 0],
                [2, task_state::RUNNING, 2, 0]
            ]
        );
        // The child exits with 3; the parent runs again.
        let zombie = task(2, TaskState::Zombie(0x300));
        let exit = changes(&mut seen, [(&*init, true), (&*zombie, false)].into_iter());
        assert_eq!(
            exit,
            [
                [1, task_state::RUNNING, 1, 0],
                [2, task_state::ZOMBIE, 2, 0x300]
            ]
        );
        // The wait reaps it.
        let reap = changes(&mut seen, [(&*init, true)].into_iter());
        assert_eq!(reap, [[2, task_state::REAPED, 2, 0]]);
    }

    #[test]
    fn a_task_gone_without_being_a_zombie_is_dead_and_stops_are_seen() {
        let mut seen = Vec::new();
        let init = task(1, TaskState::Runnable);
        let thread = task(5, TaskState::Stopped);
        let c = changes(&mut seen, [(&*init, true), (&*thread, false)].into_iter());
        assert_eq!(c[1], [5, task_state::STOPPED, 5, 0]);
        let c = changes(&mut seen, [(&*init, true)].into_iter());
        assert_eq!(c, [[5, task_state::DEAD, 5, 0]]);
    }
}
