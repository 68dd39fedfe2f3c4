//! Many processes: the table of the ones not running now, the life cycle
//! (fork, exit, zombie, reap) and how one process learns of another.
//!
//! The running process is the kernel's `current` one; every other lives in
//! [`Tasks::others`] with its user registers and FPU state saved. A process
//! that exits releases its files and address space at once and stays a
//! zombie, holding only its exit status, until its parent waits for it
//! (orphans are handed to pid 1 and reaped at once, as an init would).

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::Process;
use crate::errno::{Errno, KResult};

/// Most processes and threads at once, whatever the memory (fork and clone
/// give EAGAIN past it; see [`Tasks::max_tasks`]).
pub const MAX_TASKS: usize = 512;

/// Kernel heap bytes each task may need (its `Process`, saved registers
/// and FPU state, fd table and VMA set): the task limit is the heap's size
/// over this, and a fork or clone needs at least this much free.
pub const TASK_HEAP_BYTES: usize = 32 * 1024;

fn unlimited_heap() -> usize {
    usize::MAX
}

/// Where a process is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TaskState {
    /// Running or ready to run.
    #[default]
    Runnable,
    /// Waiting for something (a child, a pipe): its system call runs again
    /// when it is woken.
    Blocked,
    /// Exited; the wait status its parent will get.
    Zombie(i32),
    /// Stopped by a stop signal until SIGCONT (or SIGKILL).
    Stopped,
}

/// The user state of a process that is not running: the trap frame's
/// words in the arch layer's order, and the FXSAVE image, which FXSAVE
/// writes and FXRSTOR reads in place (no copy through a buffer of their
/// own: where ring 0 is emulated, each 8 bytes copied are an emulated
/// iteration).
#[derive(Clone, Debug)]
#[repr(C, align(16))]
pub struct SavedContext {
    /// The registers.
    pub words: [u64; 22],
    /// The x87/SSE state.
    pub fpu: FxImage,
}

impl SavedContext {
    /// All zero, to be filled.
    pub const EMPTY: SavedContext = SavedContext {
        words: [0; 22],
        fpu: FxImage([0; 512]),
    };
}

/// An FXSAVE image: 512 bytes, 16-byte aligned as FXSAVE64 and FXRSTOR64
/// need.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct FxImage(pub [u8; 512]);

/// The processes that are not running.
#[derive(Debug)]
pub struct Tasks {
    /// Them, in creation order.
    pub others: Vec<Box<Process>>,
    /// The last pid handed out.
    pub last_pid: u64,
    /// Processes forked in all.
    pub forks: u64,
    /// Context switches.
    pub switches: u64,
    /// Zombies reaped.
    pub reaped: u64,
    /// The kernel half every new address space shares.
    pub kernel: crate::mm::paging::KernelHalf,
    /// Most tasks at once (Linux's threads-max: set at boot from the
    /// kernel heap's size, at most [`MAX_TASKS`]).
    pub max_tasks: usize,
    /// Free kernel heap bytes now (the kernel's allocator; unlimited in
    /// host tests).
    pub heap_free: fn() -> usize,
    /// Every process's POSIX timers.
    pub timers: super::timer::Timers,
    /// A system call made another process runnable (a wake): the kernel
    /// then asks for timer ticks if none are on. Every place that makes
    /// another task runnable outside the timer tick and the task switch
    /// sets it.
    pub woke: bool,
    /// The last exec's plan block, made ready for the next exec
    /// ([`ExecPlan::recycle`](crate::syscall::exec::ExecPlan::recycle)):
    /// a shell's children each exec once, and a new block would be
    /// allocated, copied from the empty plan (2 KiB, some 250 emulated
    /// `rep movs` iterations) and freed at each.
    pub spare_plan: Option<Box<crate::syscall::exec::ExecPlan>>,
    /// A reaped zombie's block, made empty again
    /// ([`Process::renew`]) for the next fork's child: a shell's or a
    /// fork loop's children come and go one at a time, and a block from
    /// the heap is zeroed whole (5 KiB: a VM exit) unless it is fresh.
    pub spare_process: Option<Box<Process>>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    /// No other process yet.
    pub const fn new() -> Tasks {
        Tasks {
            others: Vec::new(),
            last_pid: 1,
            forks: 0,
            switches: 0,
            reaped: 0,
            kernel: crate::mm::paging::KernelHalf::empty(),
            max_tasks: MAX_TASKS,
            heap_free: unlimited_heap,
            timers: super::timer::Timers::new(),
            woke: false,
            spare_plan: None,
            spare_process: None,
        }
    }

    /// A block for a new process: the spare one if any, else a new one.
    pub fn new_process(&mut self) -> Box<Process> {
        self.spare_process
            .take()
            .unwrap_or_else(|| Box::new(Process::empty()))
    }

    /// A reaped process's block: kept, made empty, as the spare if there
    /// is none (else freed).
    pub fn retire(&mut self, mut block: Box<Process>) {
        if self.spare_process.is_none() {
            block.renew();
            self.spare_process = Some(block);
        }
    }

    /// A fresh pid, or EAGAIN at the task limit or when the kernel heap
    /// could not hold another task.
    pub fn next_pid(&mut self) -> KResult<u64> {
        if self.others.len() + 1 >= self.max_tasks || (self.heap_free)() < 4 * TASK_HEAP_BYTES {
            return Err(Errno::EAGAIN);
        }
        self.last_pid += 1;
        Ok(self.last_pid)
    }

    /// The process `pid` among the others.
    pub fn find(&mut self, pid: u64) -> Option<&mut Box<Process>> {
        self.others.iter_mut().find(|t| t.pid == pid)
    }

    /// The thread of group `tgid` among the others that holds the group's
    /// state (its address space, fds, handlers: [`Process::pass_group`]).
    pub fn group_holder(&mut self, tgid: u64) -> Option<&mut Box<Process>> {
        self.others
            .iter_mut()
            .find(|t| t.tgid == tgid && t.holds_group)
    }

    /// Mark every blocked process runnable (something happened that may
    /// let it go on; it tries its system call again).
    pub fn wake_all(&mut self) {
        for t in &mut self.others {
            if t.state == TaskState::Blocked {
                t.state = TaskState::Runnable;
                self.woke = true;
            }
        }
    }

    /// Whether any other process can run.
    pub fn any_runnable(&self) -> bool {
        self.others.iter().any(|t| t.state == TaskState::Runnable)
    }

    /// When the first of the other blocked processes wakes by itself (a
    /// deadline or an alarm), or a POSIX timer expires, if any does.
    pub fn first_wake(&self) -> Option<u64> {
        self.others
            .iter()
            .filter(|t| t.state == TaskState::Blocked)
            .filter_map(|t| t.wake_time())
            .chain(self.timers.next_expiry())
            .min()
    }

    /// Take the next runnable process out (round robin: the first
    /// runnable one, moved to the end when it is put back).
    pub fn take_runnable(&mut self) -> Option<Box<Process>> {
        let i = self
            .others
            .iter()
            .position(|t| t.state == TaskState::Runnable)?;
        Some(self.others.remove(i))
    }

    /// The first zombie child of `parent` matching `pid` as wait4 does
    /// (see [`child_matches`]); `pgid` is the parent's process group.
    pub fn zombie_child(&self, parent: u64, pgid: u64, pid: i64) -> Option<usize> {
        self.others.iter().position(|t| {
            child_matches(t, parent, pgid, pid) && matches!(t.state, TaskState::Zombie(_))
        })
    }

    /// The first child matching `pid` with a stop (`stopped`) or a
    /// continue to report to a WUNTRACED or WCONTINUED wait.
    pub fn reportable_child(
        &self,
        parent: u64,
        pgid: u64,
        pid: i64,
        stopped: bool,
        continued: bool,
    ) -> Option<usize> {
        self.others.iter().position(|t| {
            child_matches(t, parent, pgid, pid)
                && ((stopped && t.stop_report != 0) || (continued && t.cont_report))
        })
    }

    /// Whether `parent` has children matching `pid`.
    pub fn has_child(&self, parent: u64, pgid: u64, pid: i64) -> bool {
        self.others
            .iter()
            .any(|t| child_matches(t, parent, pgid, pid))
    }

    /// Hand `dead`'s children to pid 1 (and reap those that are zombies
    /// already, as an init would).
    pub fn reparent(&mut self, dead: u64) {
        self.others
            .retain(|t| !(t.ppid == dead && matches!(t.state, TaskState::Zombie(_))));
        for t in &mut self.others {
            if t.ppid == dead {
                t.ppid = super::INIT_PID;
            }
        }
    }
}

/// Whether `t` is a child of `parent` (whose process group is `pgid`) that
/// a wait for `pid` takes: -1 any child, 0 one in the parent's group,
/// less than -1 one in group `-pid`, more than 0 that one.
pub fn child_matches(t: &Process, parent: u64, pgid: u64, pid: i64) -> bool {
    t.ppid == parent
        && !t.is_thread
        && match pid {
            -1 => true,
            0 => t.pgid == pgid,
            p if p < -1 => t.pgid == p.unsigned_abs(),
            p => t.pid == p as u64,
        }
}

/// The wait status of a stop by `sig` (WIFSTOPPED).
pub fn stopped(sig: u64) -> i32 {
    ((sig as i32 & 0xff) << 8) | 0x7f
}

/// The wait status of a continue (WIFCONTINUED).
pub const CONTINUED: i32 = 0xffff;

/// The wait status of an exit with `code`.
pub fn exited(code: u8) -> i32 {
    i32::from(code) << 8
}

/// The wait status of a death by signal `sig`.
pub fn signaled(sig: u64) -> i32 {
    (sig & 0x7f) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(pid: u64, ppid: u64, state: TaskState) -> Box<Process> {
        let mut p = Box::new(Process::empty());
        p.pid = pid;
        p.ppid = ppid;
        p.state = state;
        p
    }

    #[test]
    fn a_reaped_block_is_kept_empty_for_the_next_process() {
        let mut t = Tasks::new();
        let mut z = task(2, 1, TaskState::Zombie(exited(0)));
        z.sigactions[1].handler = 0x40_1000;
        z.sigactions_set = 1 << 1;
        z.set_exe(b"/bin/true");
        let at = &*z as *const Process;
        t.retire(z);
        // A second one is freed: one spare is enough.
        t.retire(task(3, 1, TaskState::Zombie(exited(0))));
        let p = t.new_process();
        assert_eq!(&*p as *const Process, at);
        assert_eq!(format!("{p:?}"), format!("{:?}", Process::empty()));
        // None left: the next one is new.
        assert!(t.spare_process.is_none());
        assert_eq!(format!("{:?}", t.new_process()), format!("{p:?}"));
    }

    #[test]
    fn zombies_are_found_by_parent_and_pid_and_orphans_go_to_init() {
        let mut t = Tasks::new();
        t.others.push(task(2, 1, TaskState::Zombie(exited(3))));
        t.others.push(task(3, 1, TaskState::Runnable));
        t.others.push(task(4, 3, TaskState::Zombie(0)));
        t.others.push(task(5, 3, TaskState::Blocked));
        assert_eq!(t.zombie_child(1, 1, -1), Some(0));
        assert_eq!(t.zombie_child(1, 1, 3), None);
        assert!(t.has_child(1, 1, 3));
        assert!(!t.has_child(2, 1, -1));
        t.reparent(3);
        assert!(t.find(4).is_none(), "a zombie orphan is reaped at once");
        assert_eq!(t.find(5).unwrap().ppid, 1);
        t.wake_all();
        assert_eq!(t.take_runnable().unwrap().pid, 3);
    }

    #[test]
    fn wait_statuses_encode_as_linux() {
        assert_eq!(exited(42), 0x2a00);
        assert_eq!(signaled(9), 9);
        assert_eq!(stopped(19), 0x137f);
        assert_eq!(CONTINUED, 0xffff);
    }

    #[test]
    fn waits_match_children_by_pid_and_process_group() {
        let mut a = task(5, 1, TaskState::Runnable);
        a.pgid = 5;
        let mut b = task(6, 1, TaskState::Runnable);
        b.pgid = 1;
        assert!(child_matches(&a, 1, 1, -1));
        assert!(!child_matches(&a, 1, 1, 0), "another group");
        assert!(child_matches(&b, 1, 1, 0), "the parent's group");
        assert!(child_matches(&a, 1, 1, -5));
        assert!(!child_matches(&b, 1, 1, -5));
        assert!(child_matches(&b, 1, 1, 6));
        assert!(!child_matches(&b, 2, 1, 6), "not its parent");
        b.is_thread = true;
        assert!(!child_matches(&b, 1, 1, -1), "a thread is no child");
    }

    #[test]
    fn the_task_limit_and_a_short_heap_give_eagain() {
        let mut t = Tasks::new();
        t.max_tasks = 3;
        assert!(t.next_pid().is_ok());
        t.others.push(task(2, 1, TaskState::Runnable));
        assert!(t.next_pid().is_ok());
        t.others.push(task(3, 1, TaskState::Runnable));
        assert_eq!(t.next_pid(), Err(Errno::EAGAIN));
        let mut t = Tasks::new();
        fn short() -> usize {
            TASK_HEAP_BYTES
        }
        t.heap_free = short;
        assert_eq!(t.next_pid(), Err(Errno::EAGAIN));
    }

    #[test]
    fn stopped_tasks_neither_run_nor_wake() {
        let mut t = Tasks::new();
        t.others.push(task(2, 1, TaskState::Stopped));
        t.wake_all();
        assert!(!t.any_runnable());
        assert!(t.take_runnable().is_none());
    }
}
