//! fork, vfork and clone (without shared memory), wait4 and waitid, the
//! exit of a process, and signals to other processes.

use alloc::boxed::Box;

use super::{Action, Ctx, HostIo};
use crate::errno::{Errno, KResult};
use crate::mm::phys::PhysMem;
use crate::process::task::{self, TaskState};
use crate::process::Process;
use crate::signal::frame::{self, SigInfo};
use crate::signal::{self, SIG_IGN};
use crate::uaccess::copy_to_user;

type Cx<'p, 'e, 'a, M, H> = Ctx<'p, 'e, 'a, M, H>;

/// clone flags.
pub mod clone_flags {
    #![allow(missing_docs)]
    pub const CSIGNAL: u64 = 0xff;
    pub const VM: u64 = 0x100;
    pub const FS: u64 = 0x200;
    pub const FILES: u64 = 0x400;
    pub const SIGHAND: u64 = 0x800;
    pub const PIDFD: u64 = 0x1000;
    pub const VFORK: u64 = 0x4000;
    pub const PARENT: u64 = 0x8000;
    pub const THREAD: u64 = 0x1_0000;
    pub const SYSVSEM: u64 = 0x4_0000;
    pub const SETTLS: u64 = 0x8_0000;
    pub const PARENT_SETTID: u64 = 0x10_0000;
    pub const CHILD_CLEARTID: u64 = 0x20_0000;
    pub const CHILD_SETTID: u64 = 0x100_0000;
}

use clone_flags as cf;

/// How the kernel starts a new child.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpawnInfo {
    /// The child's stack pointer (0: the parent's).
    pub stack: u64,
    /// vfork: the parent waits until the child execs or exits.
    pub vfork: bool,
}

/// The action that starts `child` as `info` says.
fn spawn(mut child: Box<Process>, info: SpawnInfo) -> Action {
    child.spawn = info;
    Action::Spawn(child)
}

/// clone(flags, stack, parent_tid, child_tid, tls); fork and vfork too.
/// A thread (CLONE_VM | CLONE_THREAD) joins the caller's group; a vfork
/// child (CLONE_VM | CLONE_VFORK) borrows the parent's address space until
/// it execs or exits; CLONE_VM alone is ENOSYS (docs/processes.md, Limits).
pub fn clone<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    flags: u64,
    stack: u64,
    ptid: u64,
    ctid: u64,
    tls: u64,
) -> Action {
    match do_clone(cx, flags, stack, ptid, ctid, tls) {
        Ok((child, info)) => spawn(child, info),
        Err(e) => Action::Return(e.to_ret()),
    }
}

/// clone3(args, size): clone with a `struct clone_args` of `size` bytes
/// (Linux's versions 0 to 2: 64, 80 or 88; a larger one must be zero
/// beyond what is known).
pub fn clone3<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    args: u64,
    size: u64,
) -> Action {
    let r = read_clone_args(cx, args, size).and_then(|a| {
        let (mut child, info) = do_clone(cx, a.flags, a.stack, a.parent_tid, a.child_tid, a.tls)?;
        if a.clear_sighand {
            signal::flush_handlers(&mut child.sigactions, &mut child.sigactions_set);
        }
        Ok((child, info))
    });
    match r {
        Ok((child, info)) => spawn(child, info),
        Err(e) => Action::Return(e.to_ret()),
    }
}

fn read_clone_args<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    args: u64,
    size: u64,
) -> KResult<CloneArgs> {
    const KNOWN: u64 = 88;
    if size < 64 {
        return Err(Errno::EINVAL);
    }
    if size > vmrun_contract::layout::PAGE_SIZE {
        return Err(Errno::E2BIG);
    }
    let mut b = [0u8; KNOWN as usize];
    let n = size.min(KNOWN) as usize;
    crate::uaccess::copy_from_user(&mut cx.p.mm, cx.env, args, &mut b[..n])?;
    let mut at = args + KNOWN;
    while at < args + size {
        let mut tail = [0u8; 64];
        let len = (args + size - at).min(64) as usize;
        crate::uaccess::copy_from_user(&mut cx.p.mm, cx.env, at, &mut tail[..len])?;
        if tail.iter().any(|&x| x != 0) {
            return Err(Errno::E2BIG);
        }
        at += len as u64;
    }
    CloneArgs::parse(&b)
}

/// What `clone3` takes from a `struct clone_args`, in `clone`'s terms.
#[derive(Debug, PartialEq, Eq)]
pub struct CloneArgs {
    /// `clone` flags, with the exit signal in the low byte.
    pub flags: u64,
    /// The child's stack pointer: the top of the given stack (0: the
    /// parent's).
    pub stack: u64,
    /// Where CLONE_PARENT_SETTID writes the child's tid.
    pub parent_tid: u64,
    /// Where CLONE_CHILD_SETTID/CLEARTID point.
    pub child_tid: u64,
    /// The child's FS base with CLONE_SETTLS.
    pub tls: u64,
    /// CLONE_CLEAR_SIGHAND: the child's handlers are reset to SIG_DFL
    /// (ignored signals stay ignored), as posix_spawn asks.
    pub clear_sighand: bool,
}

impl CloneArgs {
    /// Parse the 88 bytes of a `struct clone_args` (zeros past the size
    /// the caller gave), checking them as Linux's `copy_clone_args_from_user`
    /// does; `set_tid` (pid namespaces) and `cgroup` are refused.
    pub fn parse(b: &[u8; 88]) -> KResult<CloneArgs> {
        let word = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        let (flags, child_tid, parent_tid, exit_signal) = (word(0), word(2), word(3), word(4));
        let (stack, stack_size, tls, set_tid, set_tid_size) =
            (word(5), word(6), word(7), word(8), word(9));
        const CLEAR_SIGHAND: u64 = 1 << 32;
        let clear_sighand = flags & CLEAR_SIGHAND != 0;
        if flags & cf::CSIGNAL != 0
            || exit_signal & !cf::CSIGNAL != 0
            || (flags & !CLEAR_SIGHAND) >> 32 != 0
            || clear_sighand && flags & cf::SIGHAND != 0
        {
            return Err(Errno::EINVAL);
        }
        let flags = flags & !CLEAR_SIGHAND;
        if set_tid != 0 || set_tid_size != 0 {
            return Err(Errno::EINVAL);
        }
        if (stack == 0) != (stack_size == 0) {
            return Err(Errno::EINVAL);
        }
        Ok(CloneArgs {
            flags: flags | exit_signal,
            stack: if stack == 0 {
                0
            } else {
                stack.wrapping_add(stack_size)
            },
            parent_tid,
            child_tid,
            tls,
            clear_sighand,
        })
    }
}

fn do_clone<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    flags: u64,
    stack: u64,
    ptid: u64,
    ctid: u64,
    tls: u64,
) -> KResult<(Box<Process>, SpawnInfo)> {
    let vfork = flags & cf::VFORK != 0;
    if flags & cf::THREAD != 0 && flags & cf::SIGHAND == 0
        || flags & cf::SIGHAND != 0 && flags & cf::VM == 0
    {
        return Err(Errno::EINVAL);
    }
    if flags & cf::THREAD != 0 {
        return new_thread(cx, flags, stack, ptid, ctid, tls);
    }
    if flags & cf::VM != 0 && !vfork {
        // Shared memory without a thread group is not served.
        return Err(Errno::ENOSYS);
    }
    let pid = cx.tasks.next_pid()?;
    let mut child = cx.tasks.new_process();
    let kernel = cx.tasks.kernel;
    let shares_mm = vfork && flags & cf::VM != 0;
    // The caller's stack pointer: fork copies the page it is in at once.
    let sp = cx.p.user_sp;
    if shares_mm {
        // vfork with CLONE_VM: the child runs in the parent's address
        // space (the parent waits), and gives it back at exec or exit.
        core::mem::swap(&mut cx.p.mm, &mut child.mm);
        child.borrowed_mm = true;
    } else if let Err(e) = cx.p.mm.fork_copy(cx.env, &kernel, &mut child.mm, sp) {
        if child.mm.pt.root() != 0 {
            child.mm.teardown(cx.env.mem, cx.env.frames);
        }
        return Err(e);
    }
    inherit(cx.p, &mut child, pid);
    if flags & cf::SETTLS != 0 {
        child.fs_base = tls;
    }
    if flags & cf::PARENT_SETTID != 0 {
        copy_to_user(&mut cx.p.mm, cx.env, ptid, &(pid as u32).to_le_bytes())?;
    }
    if flags & cf::CHILD_SETTID != 0 {
        copy_to_user(&mut child.mm, cx.env, ctid, &(pid as u32).to_le_bytes())?;
    }
    if flags & cf::CHILD_CLEARTID != 0 {
        child.clear_child_tid = ctid;
    }
    if vfork {
        child.vfork_parent = Some(cx.p.pid);
        cx.p.vfork_child = Some(pid);
    }
    cx.tasks.forks += 1;
    Ok((child, SpawnInfo { stack, vfork }))
}

/// A thread of the caller's group (pthread_create): it shares the address
/// space, fds and handlers (which the running thread holds) and starts on
/// `stack` with `tls`.
fn new_thread<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    flags: u64,
    stack: u64,
    ptid: u64,
    ctid: u64,
    tls: u64,
) -> KResult<(Box<Process>, SpawnInfo)> {
    let tid = cx.tasks.next_pid()?;
    let mut t = Box::new(Process::empty());
    t.pid = tid;
    t.tgid = cx.p.tgid;
    t.is_thread = true;
    t.holds_group = false;
    t.ppid = cx.p.ppid;
    t.pgid = cx.p.pgid;
    t.sid = cx.p.sid;
    t.sigmask = cx.p.sigmask;
    // A thread has no exe of its own to make its name from.
    t.comm = cx.p.comm();
    t.fs_base = if flags & cf::SETTLS != 0 {
        tls
    } else {
        cx.p.fs_base
    };
    t.gs_base = cx.p.gs_base;
    t.bases_changed = true;
    if flags & cf::PARENT_SETTID != 0 {
        copy_to_user(&mut cx.p.mm, cx.env, ptid, &(tid as u32).to_le_bytes())?;
    }
    if flags & cf::CHILD_SETTID != 0 {
        copy_to_user(&mut cx.p.mm, cx.env, ctid, &(tid as u32).to_le_bytes())?;
    }
    if flags & cf::CHILD_CLEARTID != 0 {
        t.clear_child_tid = ctid;
    }
    Ok((
        t,
        SpawnInfo {
            stack,
            vfork: false,
        },
    ))
}

/// A thread ends with others of its group left: its clear_child_tid word
/// is zeroed and its waiter woken (pthread_join), and the group's state
/// goes to another thread. Returns false if it is the group's last thread
/// (the process exits then).
pub fn exit_thread<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>) -> bool {
    let tgid = cx.p.tgid;
    let Some(i) = cx
        .tasks
        .others
        .iter()
        .position(|t| t.tgid == tgid && !matches!(t.state, TaskState::Zombie(_)))
    else {
        return false;
    };
    let (tid, head) = (cx.p.pid, core::mem::take(&mut cx.p.robust_list));
    super::process::exit_robust_list(cx, tid, head);
    let ctid = core::mem::take(&mut cx.p.clear_child_tid);
    if ctid != 0 && copy_to_user(&mut cx.p.mm, cx.env, ctid, &0u32.to_le_bytes()).is_ok() {
        let _ = super::process::futex_wake_pub(cx, ctid, 1);
    }
    let now = cx.host.cpu_ns();
    cx.p.dead_threads_ns += cx.p.running_cpu_ns(now);
    let mut heir = cx.tasks.others.remove(i);
    cx.p.pass_group(&mut heir);
    cx.tasks.others.insert(i, heir);
    cx.tasks.wake_all();
    true
}

/// exit_group: the caller's other threads go (the caller holds the
/// group's state, so they hold nothing).
pub fn end_other_threads<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>) {
    let (tgid, me) = (cx.p.tgid, cx.p.pid);
    cx.p.dead_threads_ns += other_threads_cpu_ns(cx.tasks, tgid);
    cx.tasks
        .others
        .retain(|t| t.tgid != tgid || t.pid == me || matches!(t.state, TaskState::Zombie(_)));
}

/// What a forked child takes from its parent.
fn inherit(parent: &Process, child: &mut Process, pid: u64) {
    child.pid = pid;
    child.tgid = pid;
    child.ppid = parent.tgid;
    child.pgid = parent.pgid;
    child.sid = parent.sid;
    child.fs_base = parent.fs_base;
    child.gs_base = parent.gs_base;
    child.bases_changed = true;
    copy_set_actions(parent, child);
    child.sigmask = parent.sigmask;
    child.altstack = parent.altstack;
    child.exe = parent.exe;
    child.exe_len = parent.exe_len;
    child.stdio_modes = parent.stdio_modes;
    child.fds = parent.fds.fork();
    child.cwd = parent.cwd.clone();
    child.umask = parent.umask;
    child.image_inode = parent.image_inode;
    child.mapped_files = parent.mapped_files.clone();
    child.layout = parent.layout;
    child.comm = parent.comm;
    child.vdso = parent.vdso;
}

/// The parent's signal dispositions for a fork's child, whose table is
/// all default: only the entries from the lowest to the highest signal
/// whose action was set are copied (a shell's few, not the table's
/// 2 KiB).
fn copy_set_actions(parent: &Process, child: &mut Process) {
    let set = parent.sigactions_set;
    child.sigactions_set = set;
    if set == 0 {
        return;
    }
    let (lo, hi) = (
        set.trailing_zeros() as usize,
        64 - set.leading_zeros() as usize,
    );
    if let (Some(to), Some(from)) = (
        child.sigactions.get_mut(lo..hi),
        parent.sigactions.get(lo..hi),
    ) {
        to.copy_from_slice(from);
    }
}

/// The process ends with wait status `status`: its files and address
/// space are released now; it stays a zombie for its parent.
pub fn exit_task<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, status: i32) {
    super::process::exit_group_robust_lists(cx);
    cx.tasks.timers.exit_group(cx.p.tgid);
    super::exit_files(cx);
    release_vfork_parent(cx);
    if cx.p.mm.pt.root() != 0 {
        hand_writes_to_parent(cx);
        cx.p.mm.teardown(cx.env.mem, cx.env.frames);
    }
    end_other_threads(cx);
    // The zombie keeps its group's CPU time for the parent's wait.
    let now = cx.host.cpu_ns();
    cx.p.cpu_ns = cx.p.running_cpu_ns(now) + cx.p.dead_threads_ns;
    cx.p.state = TaskState::Zombie(status);
    // The process's zombie is known by its thread group's id.
    cx.p.pid = cx.p.tgid;
    let pid = cx.p.pid;
    cx.tasks.reparent(pid);
    release_vfork_parent(cx);
    // SIGCHLD to the parent; one that ignores it never sees zombies
    // (Linux reaps them).
    let ppid = cx.p.ppid;
    let (code, st) = if status & 0x7f == 0 {
        (1, (status >> 8) & 0xff)
    } else {
        (2, status & 0x7f)
    };
    let info = crate::signal::frame::SigInfo {
        signo: signal::nr::SIGCHLD as i32,
        code,
        addr_or_pid: pid,
        status: st,
        ..Default::default()
    };
    if let Some(parent) = cx.tasks.find(ppid) {
        if parent.sigactions[signal::nr::SIGCHLD as usize - 1].handler == SIG_IGN {
            cx.p.ppid = 0;
        } else {
            parent.post_signal(signal::nr::SIGCHLD, info);
        }
    }
    cx.tasks.wake_all();
}

/// The run ends without a teardown (the host discards the VM): what the
/// process leaves that outlives the VM is saved as its exit saves it, and
/// nothing is freed. With `robust`, its threads' robust futex lists are
/// marked first (as a killed process's are); then its shared writable file
/// mappings are written back.
pub fn save_at_run_end<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, robust: bool) {
    if robust {
        super::process::exit_group_robust_lists(cx);
    }
    // Only a file mapped through a writable description can back a shared
    // writable mapping (and `writeback` writes only through such a one):
    // a dynamically linked program's read-only libraries need no walk.
    if cx.p.mapped_files.iter().any(|f| f.borrow().writable()) {
        super::memory::writeback_all(cx);
    }
}

/// A forked child about to exec or exit without having exec'd since its
/// fork: the pages it wrote go to its parent's next fork, which copies
/// them for that child at once (`Mm::child_written`). Before its address
/// space is torn down.
pub fn hand_writes_to_parent<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>) {
    let Some(pages) = cx.p.mm.writes_since_fork(cx.env.mem) else {
        return;
    };
    // The parent's address space is with the thread holding its group.
    if let Some(parent) = cx.tasks.group_holder(cx.p.ppid) {
        parent.mm.child_written = pages;
    }
}

/// A vfork child exec'd or exited: its parent goes on.
pub fn release_vfork_parent<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>) {
    if let Some(ppid) = cx.p.vfork_parent.take() {
        if let Some(parent) = cx.tasks.find(ppid) {
            if core::mem::take(&mut cx.p.borrowed_mm) {
                core::mem::swap(&mut cx.p.mm, &mut parent.mm);
            }
            parent.vfork_child = None;
            parent.state = TaskState::Runnable;
            cx.tasks.woke = true;
        }
    }
}

/// What a wait found: a child's pid, its wait status, and its CPU time
/// (ns, for the rusage of an exit).
struct Waited {
    pid: u64,
    status: i32,
    cpu_ns: u64,
}

/// wait options (wait4's and waitid's share the bits).
pub mod wopt {
    pub const WNOHANG: u64 = 1;
    /// WUNTRACED for wait4, WSTOPPED for waitid.
    pub const WSTOPPED: u64 = 2;
    pub const WEXITED: u64 = 4;
    pub const WCONTINUED: u64 = 8;
    pub const WNOWAIT: u64 = 0x0100_0000;
}

/// The first child matching `pid` with something the wait's `options`
/// ask for: an exit (reaped unless WNOWAIT, when `exited`), a stop or a
/// continue (reported once unless WNOWAIT). None: nothing yet.
fn take_waited<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    pid: i64,
    options: u64,
    exited: bool,
) -> Option<Waited> {
    let (me, pgid) = (cx.p.tgid, cx.p.pgid);
    let keep = options & wopt::WNOWAIT != 0;
    if exited {
        if let Some(i) = cx.tasks.zombie_child(me, pgid, pid) {
            let t = &cx.tasks.others[i];
            let TaskState::Zombie(status) = t.state else {
                return None;
            };
            let w = Waited {
                pid: t.pid,
                status,
                cpu_ns: t.cpu_ns + t.children_ns,
            };
            if !keep {
                let block = cx.tasks.others.remove(i);
                cx.tasks.retire(block);
                cx.p.children_ns += w.cpu_ns;
                cx.tasks.reaped += 1;
            }
            return Some(w);
        }
    }
    let stopped = options & wopt::WSTOPPED != 0;
    let continued = options & wopt::WCONTINUED != 0;
    if !stopped && !continued {
        // An exit is all it waits for (a shell's wait4): no pass over the
        // children for a stop or a continue to report.
        return None;
    }
    let i = cx
        .tasks
        .reportable_child(me, pgid, pid, stopped, continued)?;
    let t = &mut cx.tasks.others[i];
    let status = if stopped && t.stop_report != 0 {
        let sig = t.stop_report;
        if !keep {
            t.stop_report = 0;
        }
        task::stopped(sig)
    } else {
        if !keep {
            t.cont_report = false;
        }
        task::CONTINUED
    };
    Some(Waited {
        pid: t.pid,
        status,
        cpu_ns: 0,
    })
}

/// wait4(pid, wstatus, options, rusage): WNOHANG, WUNTRACED, WCONTINUED,
/// __WALL/__WCLONE/__WNOTHREAD accepted.
pub fn wait4<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    pid: u64,
    wstatus: u64,
    options: u64,
    rusage: u64,
) -> KResult<i64> {
    if options & !WAIT4_OPTIONS != 0 {
        return Err(Errno::EINVAL);
    }
    let pid = pid as i32 as i64;
    let Some(w) = take_waited(cx, pid, options, true) else {
        if !cx.tasks.has_child(cx.p.tgid, cx.p.pgid, pid) {
            return Err(Errno::ECHILD);
        }
        return if options & wopt::WNOHANG != 0 {
            Ok(0)
        } else {
            Err(Errno::ERESTARTSYS)
        };
    };
    if wstatus != 0 {
        copy_to_user(&mut cx.p.mm, cx.env, wstatus, &w.status.to_le_bytes())?;
    }
    if rusage != 0 {
        copy_to_user(&mut cx.p.mm, cx.env, rusage, &rusage_bytes(w.cpu_ns))?;
    }
    Ok(w.pid as i64)
}

/// The options wait4 takes (WNOHANG, WUNTRACED, WCONTINUED, __WNOTHREAD,
/// __WALL, __WCLONE).
const WAIT4_OPTIONS: u64 =
    wopt::WNOHANG | wopt::WSTOPPED | wopt::WCONTINUED | 0x2000_0000 | 0x4000_0000 | 0x8000_0000;

/// wait4(pid, _, options, _) on the system-call stub's short path
/// (`run::short_wait4`) by `p` among `tasks`: ECHILD, nothing done, where
/// [`wait4`] answers so (valid options and no child `pid` matches: a
/// shell's WNOHANG wait after it reaped its job); None, for the full
/// path, for any other.
pub fn wait4_short(tasks: &task::Tasks, p: &Process, pid: u64, options: u64) -> Option<i64> {
    let pid = pid as i32 as i64;
    if options & !WAIT4_OPTIONS != 0 || tasks.has_child(p.tgid, p.pgid, pid) {
        return None;
    }
    Some(Errno::ECHILD.to_ret())
}

/// A `struct rusage` with `cpu_ns` as its user time (the guest's CPU clock
/// does not tell user from kernel time; the other fields are 0).
pub fn rusage_bytes(cpu_ns: u64) -> [u8; 144] {
    let mut b = [0u8; 144];
    b[0..8].copy_from_slice(&(cpu_ns / 1_000_000_000).to_le_bytes());
    b[8..16].copy_from_slice(&(cpu_ns % 1_000_000_000 / 1000).to_le_bytes());
    b
}

/// CPU time of the caller's whole thread group at CPU clock `now`: its
/// own, its other threads', and its ended threads'.
pub fn group_cpu_ns<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, now: u64) -> u64 {
    let others = other_threads_cpu_ns(cx.tasks, cx.p.tgid);
    cx.p.running_cpu_ns(now) + others + cx.p.dead_threads_ns
}

/// CPU time of the live threads of group `tgid` that are not running (the
/// running one is not among the others).
fn other_threads_cpu_ns(tasks: &crate::process::task::Tasks, tgid: u64) -> u64 {
    tasks
        .others
        .iter()
        .filter(|t| t.tgid == tgid && !matches!(t.state, TaskState::Zombie(_)))
        .map(|t| t.cpu_ns)
        .sum()
}

/// waitid(idtype, id, infop, options, rusage): P_ALL, P_PID, P_PGID;
/// WEXITED, WSTOPPED, WCONTINUED, WNOHANG, WNOWAIT.
pub fn waitid<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    idtype: u64,
    id: u64,
    infop: u64,
    options: u64,
) -> KResult<i64> {
    const KNOWN: u64 = wopt::WNOHANG
        | wopt::WSTOPPED
        | wopt::WEXITED
        | wopt::WCONTINUED
        | wopt::WNOWAIT
        | 0x2000_0000
        | 0x4000_0000
        | 0x8000_0000;
    let wants = wopt::WEXITED | wopt::WSTOPPED | wopt::WCONTINUED;
    if options & !KNOWN != 0 || options & wants == 0 {
        return Err(Errno::EINVAL);
    }
    let pid: i64 = match idtype {
        0 => -1,
        1 if id as i32 > 0 => id as i32 as i64,
        // P_PGID: 0 means the caller's group.
        2 if id == 0 => 0,
        2 if id as i32 > 0 => -(id as i32 as i64),
        _ => return Err(Errno::EINVAL),
    };
    let exited = options & wopt::WEXITED != 0;
    let Some(w) = take_waited(cx, pid, options, exited) else {
        if !cx.tasks.has_child(cx.p.tgid, cx.p.pgid, pid) {
            return Err(Errno::ECHILD);
        }
        if options & wopt::WNOHANG != 0 {
            if infop != 0 {
                copy_to_user(&mut cx.p.mm, cx.env, infop, &[0u8; 128])?;
            }
            return Ok(0);
        }
        return Err(Errno::ERESTARTSYS);
    };
    if infop != 0 {
        // si_code: CLD_EXITED, CLD_KILLED, CLD_STOPPED or CLD_CONTINUED.
        let status = w.status;
        let (code, value): (i32, i32) = if status == task::CONTINUED {
            (6, signal::nr::SIGCONT as i32)
        } else if status & 0xff == 0x7f {
            (5, (status >> 8) & 0xff)
        } else if status & 0x7f == 0 {
            (1, (status >> 8) & 0xff)
        } else {
            (2, status & 0x7f)
        };
        let mut si = [0u8; 128];
        si[0..4].copy_from_slice(&17i32.to_le_bytes());
        si[8..12].copy_from_slice(&code.to_le_bytes());
        si[16..20].copy_from_slice(&(w.pid as u32).to_le_bytes());
        si[24..28].copy_from_slice(&value.to_le_bytes());
        copy_to_user(&mut cx.p.mm, cx.env, infop, &si)?;
    }
    Ok(0)
}

/// The leader (pid == tgid) of group `tgid`: the caller or another task.
fn leader<'a, M: PhysMem, H: HostIo>(
    cx: &'a mut Cx<'_, '_, '_, M, H>,
    tgid: u64,
) -> Option<&'a mut Process> {
    if cx.p.pid == tgid {
        return Some(&mut *cx.p);
    }
    cx.tasks.find(tgid).map(|t| &mut **t)
}

/// SIGCHLD with `code` (CLD_STOPPED or CLD_CONTINUED) and `status` to the
/// parent of group `tgid`, unless it asked for none (SA_NOCLDSTOP).
fn notify_parent_stop<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    tgid: u64,
    ppid: u64,
    code: i32,
    status: i32,
) {
    const SA_NOCLDSTOP: u64 = 1;
    let info = crate::signal::frame::SigInfo {
        signo: signal::nr::SIGCHLD as i32,
        code,
        addr_or_pid: tgid,
        status,
        ..Default::default()
    };
    let parent = if cx.p.tgid == ppid && cx.p.holds_group {
        Some(&mut *cx.p)
    } else {
        cx.tasks.group_holder(ppid).map(|t| &mut **t)
    };
    if let Some(parent) = parent {
        if parent.sigactions[signal::nr::SIGCHLD as usize - 1].flags & SA_NOCLDSTOP == 0 {
            parent.post_signal(signal::nr::SIGCHLD, info);
        }
    }
}

/// The caller takes stop signal `sig` (default action): every other
/// thread of its group stops (the caller stops itself), the leader keeps
/// the stop for a WUNTRACED wait, and the parent hears of it.
pub fn stop_group<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, sig: u64) {
    let tgid = cx.p.tgid;
    for t in cx.tasks.others.iter_mut() {
        if t.tgid == tgid && !matches!(t.state, TaskState::Zombie(_)) {
            t.state = TaskState::Stopped;
        }
    }
    let Some(l) = leader(cx, tgid) else {
        return;
    };
    l.stop_report = sig;
    l.cont_report = false;
    let ppid = l.ppid;
    notify_parent_stop(cx, tgid, ppid, 5, sig as i32);
    cx.tasks.wake_all();
}

/// What sending `sig` to group `tgid` does at once, before it is posted
/// (Linux's prepare_signal): SIGCONT and SIGKILL resume a stopped group
/// (SIGCONT also drops its pending stop signals, reports the continue to
/// the parent); a stop signal drops a pending SIGCONT.
pub fn prepare_signal<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, tgid: u64, sig: u64) {
    let cont_bit = 1u64 << (signal::nr::SIGCONT - 1);
    if signal::is_stop(sig) {
        for t in cx.tasks.others.iter_mut().filter(|t| t.tgid == tgid) {
            t.sig_pending &= !cont_bit;
        }
        if cx.p.tgid == tgid {
            cx.p.sig_pending &= !cont_bit;
        }
        return;
    }
    if sig != signal::nr::SIGCONT && sig != signal::nr::SIGKILL {
        return;
    }
    let mut was_stopped = false;
    for t in cx.tasks.others.iter_mut().filter(|t| t.tgid == tgid) {
        if sig == signal::nr::SIGCONT {
            t.sig_pending &= !signal::STOP_MASK;
        }
        if t.state == TaskState::Stopped {
            t.state = TaskState::Runnable;
            was_stopped = true;
        }
    }
    if was_stopped {
        cx.tasks.woke = true;
    }
    if sig != signal::nr::SIGCONT {
        return;
    }
    if cx.p.tgid == tgid {
        cx.p.sig_pending &= !signal::STOP_MASK;
    }
    let Some(l) = leader(cx, tgid) else {
        return;
    };
    if !was_stopped && l.stop_report == 0 {
        return;
    }
    l.stop_report = 0;
    l.cont_report = true;
    let ppid = l.ppid;
    notify_parent_stop(cx, tgid, ppid, 6, signal::nr::SIGCONT as i32);
    cx.tasks.wake_all();
}

/// kill(pid, sig) to another process (or a group: every process in it).
pub fn kill_other<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    pid: i64,
    sig: u64,
) -> KResult<i64> {
    let targets: alloc::vec::Vec<u64> = cx
        .tasks
        .others
        .iter()
        // The thread holding a group's state stands for the process; a
        // zombie is still found (signal 0) until it is reaped.
        .filter(|t| t.holds_group || matches!(t.state, TaskState::Zombie(_)))
        .filter(|t| {
            if pid < -1 {
                t.pgid == (-pid) as u64
            } else {
                t.tgid == pid as u64
            }
        })
        .map(|t| t.pid)
        .collect();
    if targets.is_empty() {
        return Err(Errno::ESRCH);
    }
    if sig == 0 {
        return Ok(0);
    }
    for t in targets {
        let Some(i) = cx.tasks.others.iter().position(|x| x.pid == t) else {
            continue;
        };
        if matches!(cx.tasks.others[i].state, TaskState::Zombie(_)) {
            continue;
        }
        let tgid = cx.tasks.others[i].tgid;
        prepare_signal(cx, tgid, sig);
        let Some(i) = cx.tasks.others.iter().position(|x| x.pid == t) else {
            continue;
        };
        let act = cx.tasks.others[i].sigactions[sig as usize - 1];
        let route = signal::route(sig, &act, cx.tasks.others[i].sigmask);
        if route == signal::Route::Drop {
            continue;
        }
        // Posted, also when its default action kills: as on Linux, the
        // target dies when it next runs (woken if it waits), not inside
        // the sender's call, so a WNOHANG wait just after kill() does not
        // find it dead yet.
        let info = SigInfo::sent(sig, frame::SI_USER, cx.p.pid);
        cx.tasks.others[i].post_signal(sig, info);
        cx.tasks.wake_all();
    }
    Ok(0)
}

/// kill(-1, sig): every process but pid 1 and the caller.
pub fn kill_group<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    pgid: i64,
    sig: u64,
) -> KResult<i64> {
    if pgid == -1 {
        return kill_matching(cx, sig, |t| t.pid != 1);
    }
    kill_pgrp(cx, pgid.unsigned_abs(), sig)
}

/// Signal `sig` to every process of group `pgid` other than the caller's
/// own (which the caller signals itself).
pub fn kill_pgrp<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    pgid: u64,
    sig: u64,
) -> KResult<i64> {
    kill_matching(cx, sig, |t| t.pgid == pgid)
}

/// kill_other to each process (not thread, not zombie) that `pick` takes,
/// whatever happens to the others.
fn kill_matching<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    sig: u64,
    pick: impl Fn(&Process) -> bool,
) -> KResult<i64> {
    let me = cx.p.tgid;
    let pids: alloc::vec::Vec<u64> = cx
        .tasks
        .others
        .iter()
        .filter(|t| !matches!(t.state, TaskState::Zombie(_)) && !t.is_thread)
        .filter(|t| t.tgid != me && pick(t))
        .map(|t| t.tgid)
        .collect();
    for p in pids {
        let _ = kill_other(cx, p as i64, sig);
    }
    Ok(0)
}

/// The process group and session calls.
pub fn setpgid<M: PhysMem, H: HostIo>(
    cx: &mut Cx<'_, '_, '_, M, H>,
    pid: u64,
    pgid: u64,
) -> KResult<i64> {
    let pid = if pid == 0 { cx.p.pid } else { pid };
    let pgid = if pgid == 0 { pid } else { pgid };
    if pid == cx.p.pid {
        cx.p.pgid = pgid;
        return Ok(0);
    }
    match cx.tasks.find(pid) {
        Some(t) if t.ppid == cx.p.pid => {
            t.pgid = pgid;
            Ok(0)
        }
        _ => Err(Errno::ESRCH),
    }
}

/// getpgid(pid)
pub fn getpgid<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>, pid: u64) -> KResult<i64> {
    if pid == 0 || pid == cx.p.pid {
        return Ok(cx.p.pgid as i64);
    }
    cx.tasks
        .find(pid)
        .map(|t| t.pgid as i64)
        .ok_or(Errno::ESRCH)
}

/// setsid()
pub fn setsid<M: PhysMem, H: HostIo>(cx: &mut Cx<'_, '_, '_, M, H>) -> KResult<i64> {
    let pid = cx.p.pid;
    if cx.p.pgid == pid || cx.tasks.others.iter().any(|t| t.pgid == pid) {
        return Err(Errno::EPERM);
    }
    cx.p.sid = pid;
    cx.p.pgid = pid;
    Ok(pid as i64)
}

#[cfg(test)]
mod wait4_short_tests {
    use super::*;

    fn child_of(parent: u64, pid: u64, pgid: u64, state: TaskState) -> Box<Process> {
        let mut t = Box::new(Process::empty());
        (t.pid, t.tgid, t.ppid, t.pgid, t.state) = (pid, pid, parent, pgid, state);
        t
    }

    #[test]
    fn a_wait_with_no_matching_child_is_echild_and_any_other_goes_to_the_full_path() {
        let mut tasks = task::Tasks::new();
        let mut me = Process::empty();
        (me.pid, me.tgid, me.pgid) = (5, 5, 5);
        let echild = Some(Errno::ECHILD.to_ret());
        assert_eq!(wait4_short(&tasks, &me, u64::MAX, wopt::WNOHANG), echild);
        assert_eq!(wait4_short(&tasks, &me, u64::MAX, 0), echild);
        assert_eq!(
            wait4_short(&tasks, &me, u64::MAX, 0x10),
            None,
            "EINVAL: full path"
        );
        tasks.others.push(child_of(5, 7, 5, TaskState::Zombie(0)));
        tasks.others.push(child_of(3, 8, 9, TaskState::Runnable));
        assert_eq!(wait4_short(&tasks, &me, u64::MAX, wopt::WNOHANG), None);
        assert_eq!(wait4_short(&tasks, &me, 7, 0), None);
        assert_eq!(
            wait4_short(&tasks, &me, 8, wopt::WNOHANG),
            echild,
            "not a child"
        );
        assert_eq!(wait4_short(&tasks, &me, 0, 0), None, "child 7 in my group");
        assert_eq!(wait4_short(&tasks, &me, (-9i64) as u64, 0), echild);
    }
}

#[cfg(test)]
mod clone3_tests {
    use super::*;

    fn args(words: &[(usize, u64)]) -> [u8; 88] {
        let mut b = [0u8; 88];
        for &(i, v) in words {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    #[test]
    fn clone3_args_become_clones() {
        // posix_spawn's: CLONE_VM | CLONE_VFORK, SIGCHLD, a stack.
        let a = CloneArgs::parse(&args(&[
            (0, 0x4100),
            (4, 17),
            (5, 0x7000_0000),
            (6, 0x9000),
        ]))
        .unwrap();
        assert_eq!(a.flags, 0x4111);
        assert_eq!(a.stack, 0x7000_9000, "the top of the stack");
        // A thread's: no exit signal, TLS and the tid words.
        let a = CloneArgs::parse(&args(&[(0, 0x3d0f00), (2, 0x10), (3, 0x20), (7, 0x30)])).unwrap();
        assert_eq!(
            a,
            CloneArgs {
                flags: 0x3d0f00,
                stack: 0,
                parent_tid: 0x20,
                child_tid: 0x10,
                tls: 0x30,
                clear_sighand: false,
            }
        );
        // posix_spawn's with CLONE_CLEAR_SIGHAND.
        let a = CloneArgs::parse(&args(&[(0, (1 << 32) | 0x4100), (4, 17)])).unwrap();
        assert_eq!((a.flags, a.clear_sighand), (0x4111, true));
    }

    #[test]
    fn clone3_refuses_what_linux_refuses() {
        let bad = [
            args(&[(0, 17)]),                        // exit signal in the flags
            args(&[(4, 0x100)]),                     // exit signal out of range
            args(&[(5, 0x7000_0000)]),               // stack without a size
            args(&[(6, 0x1000)]),                    // size without a stack
            args(&[(8, 0x10), (9, 1)]),              // set_tid
            args(&[(0, 1 << 33), (10, 3)]),          // CLONE_INTO_CGROUP
            args(&[(0, (1 << 32) | 0x800 | 0x100)]), // CLEAR_SIGHAND with SIGHAND
        ];
        for b in bad {
            assert_eq!(CloneArgs::parse(&b), Err(Errno::EINVAL));
        }
    }
}

#[cfg(test)]
mod inherit_tests {
    use super::*;
    use crate::signal::{SigAction, SIG_IGN};

    #[test]
    fn a_forks_child_gets_every_set_action_and_defaults_elsewhere() {
        let mut parent = Box::new(Process::empty());
        let handler = |h: u64| SigAction {
            handler: h,
            flags: 0x0400_0000,
            restorer: 0x40_2000,
            mask: 1 << 3,
        };
        for (i, h) in [(1, SIG_IGN), (16, 0x40_1000), (40, 0x40_1100)] {
            parent.sigactions[i] = handler(h);
            parent.sigactions_set |= 1 << i;
        }
        let mut child = Box::new(Process::empty());
        inherit(&parent, &mut child, 2);
        assert_eq!(child.sigactions, parent.sigactions);
        assert_eq!(child.sigactions_set, parent.sigactions_set);
        let mut none = Box::new(Process::empty());
        let clean = Box::new(Process::empty());
        inherit(&clean, &mut none, 3);
        assert_eq!(none.sigactions, clean.sigactions);
        assert_eq!(none.sigactions_set, 0);
    }
}
