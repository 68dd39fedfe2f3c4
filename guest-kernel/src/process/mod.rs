//! A process: its address space and the per-thread state system calls
//! change (FS base, clear_child_tid). The file images its mappings refer
//! to belong to the kernel (they are the page cache).

pub mod exec;
pub mod lifecycle;
pub mod robust;
pub mod task;
pub mod timer;

use alloc::borrow::Cow;
use alloc::vec::Vec;

use crate::fs::file::{o, FdTable, Node, OpenFile};
use crate::mm::space::Mm;
use crate::signal::{SigAction, NSIG};

/// A task the kernel runs: a process or a thread (Linux's task_struct with
/// its mm, files and signal state; threads of a group pass the shared
/// parts along with `pass_group`).
#[derive(Debug)]
pub struct Process {
    /// Address space (boxed: the threads of a group pass it to whichever
    /// of them runs).
    pub mm: alloc::boxed::Box<Mm>,
    /// Process (and thread) id.
    pub pid: u64,
    /// Thread group (the process id every thread of it shares).
    pub tgid: u64,
    /// Made by clone with CLONE_THREAD (never a zombie, not a child).
    pub is_thread: bool,
    /// Whether this thread holds its group's shared state (address space,
    /// fds, cwd, handlers): the running thread always does.
    pub holds_group: bool,
    /// The futex address it waits on.
    pub futex_wait: Option<u64>,
    /// A FUTEX_WAKE chose it.
    pub futex_woken: bool,
    /// Monotonic ns when its timed wait (futex, nanosleep) ends.
    pub deadline: Option<u64>,
    /// Its timed wait ran out.
    pub timed_out: bool,
    /// Parent's pid (0 for pid 1).
    pub ppid: u64,
    /// Process group.
    pub pgid: u64,
    /// Session.
    pub sid: u64,
    /// Where it is in its life.
    pub state: task::TaskState,
    /// Its user state while it is not running.
    pub saved: Option<alloc::boxed::Box<task::SavedContext>>,
    /// The block its state was last restored from, kept for the next
    /// switch away (a process that blocks blocks again: no allocation and
    /// no zeroing each time).
    pub spare_context: Option<alloc::boxed::Box<task::SavedContext>>,
    /// A vfork child: its parent waits until it execs or exits.
    pub vfork_parent: Option<u64>,
    /// A CLONE_VM vfork child runs in its parent's address space until it
    /// execs or exits.
    pub borrowed_mm: bool,
    /// The parent waits for this vfork child (blocked in vfork).
    pub vfork_child: Option<u64>,
    /// User FS base (`arch_prctl(ARCH_SET_FS)`), loaded into the MSR by the
    /// arch glue when `bases_changed` is set.
    pub fs_base: u64,
    /// User GS base.
    pub gs_base: u64,
    /// Set when `fs_base` or `gs_base` changed and the MSRs need loading.
    pub bases_changed: bool,
    /// `set_tid_address` pointer.
    pub clear_child_tid: u64,
    /// `set_robust_list` head.
    pub robust_list: u64,
    /// Signal dispositions, index = signal number - 1.
    pub sigactions: [SigAction; NSIG],
    /// The system call it waits in (its registers point back at it).
    pub blocked_nr: Option<u64>,
    /// The user stack pointer at the current system call, recorded by the
    /// run loop's full path (the syscall stub leaves sigaltstack and the
    /// fork calls, which read it, to the loop).
    pub user_sp: u64,
    /// How the kernel starts it, when fork/vfork/clone just made it.
    pub spawn: crate::syscall::task::SpawnInfo,
    /// Monotonic ns when SIGALRM is due (alarm, setitimer ITIMER_REAL).
    pub alarm_at: Option<u64>,
    /// The ITIMER_REAL interval, ns (0: one shot).
    pub alarm_interval: u64,
    /// Blocked signals.
    pub sigmask: u64,
    /// The mask to put back after the next handler (rt_sigsuspend's
    /// caller's own), if any.
    pub sigmask_after_handler: Option<u64>,
    /// Signals sent and not delivered yet (bit `sig - 1`).
    pub sig_pending: u64,
    /// What each pending signal carries, by signal number - 1: write it
    /// with [`Process::pend`].
    pub sig_info: [crate::signal::frame::SigInfo; NSIG],
    /// The signals whose `sig_info` entry may not be zero (bit `sig - 1`;
    /// set by [`Process::pend`]): what [`Process::renew`] clears.
    pub sig_info_set: u64,
    /// `sigaltstack`: base, flags, size.
    pub altstack: [u64; 3],
    /// The exec file name (what /proc/self/exe reads as), without NUL.
    pub exe: [u8; 256],
    /// Length of `exe`.
    pub exe_len: usize,
    /// `st_mode` of the host's stdio fds 0, 1, 2 (0: unknown).
    pub stdio_modes: [u32; 3],
    /// Open files.
    pub fds: FdTable,
    /// Working directory (absolute, canonical guest path): the boot
    /// program's is borrowed from the boot block, which nothing writes for
    /// the whole run, not copied.
    pub cwd: Cow<'static, [u8]>,
    /// File-creation mask.
    pub umask: u32,
    /// The page-cache inode of the program's own ELF (the boot program's
    /// image, or the file its last execve loaded): no open may write it
    /// while the process runs it (ETXTBSY, Linux's `deny_write_access`).
    pub image_inode: Option<u16>,
    /// The page-cache images of [vvar], [vvar_vclock] and [vdso], mapped
    /// into every new image (None: no vDSO).
    pub vdso: Option<[u16; 3]>,
    /// The thread name (`PR_SET_NAME`, `/proc/self/comm`), NUL-padded, or
    /// [`COMM_OF_EXE`] from an exec until it is asked for or set: read it
    /// through [`Process::comm`].
    pub comm: [u8; 16],
    /// Where exec puts the parts of an image (fixed or randomised at boot).
    pub layout: crate::exec::aslr::Layout,
    /// Open files that mappings use (kept until exit).
    pub mapped_files: Vec<crate::fs::file::FileRef>,
    /// The stop signal its parent's WUNTRACED wait has yet to see (0: none;
    /// kept on the group's leader).
    pub stop_report: u64,
    /// A continue its parent's WCONTINUED wait has yet to see.
    pub cont_report: bool,
    /// ITIMER_VIRTUAL and ITIMER_PROF: when (the thread group's CPU time,
    /// ns) each fires next, and its interval (group state; kept by exec,
    /// not inherited by fork).
    pub cpu_timers: [Option<(u64, u64)>; 2],
    /// The membarrier commands registered for this address space (group
    /// state; cleared by exec, not inherited by fork).
    pub membarrier_registered: u64,
    /// CPU time (ns of the guest's CPU clock) of this thread before its
    /// current run; a zombie's is its whole group's.
    pub cpu_ns: u64,
    /// The CPU clock when its current run began.
    pub run_start: u64,
    /// CPU time of the group's threads that ended (group state).
    pub dead_threads_ns: u64,
    /// CPU time of the children it reaped, their own children's included
    /// (group state).
    pub children_ns: u64,
    /// Page faults this thread took from user mode (`ru_minflt`; kept by
    /// exec, 0 in a forked child).
    pub min_flt: u64,
    /// The signals whose disposition may not be the default (bit `sig -
    /// 1`; every other's entry is all zero): what an exec resets
    /// ([`crate::signal::flush_handlers`]). Whatever sets an entry sets
    /// its bit.
    pub sigactions_set: u64,
}

/// The pid vmrun's program gets (it is the VM's only, init-like process).
pub const INIT_PID: u64 = 1;

/// The signal information of a new process: a constant, so that it is
/// one block copy (a repeat expression of a struct with padding becomes a
/// store per field, 320 of them, in the emulated ring 0).
const NO_SIG_INFO: [crate::signal::frame::SigInfo; NSIG] = [crate::signal::frame::SigInfo {
    signo: 0,
    errno: 0,
    code: 0,
    addr_or_pid: 0,
    uid: 0,
    status: 0,
    value: 0,
}; NSIG];

/// The tables of a process that start all zero (the signal actions and
/// information, the exe name): [`Process::renew`] clears only what of
/// them was set.
pub trait ZeroInit: Sized {
    /// The all-zero value.
    const ZERO: Self;
}

impl ZeroInit for [SigAction; NSIG] {
    const ZERO: Self = [SigAction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    }; NSIG];
}

impl ZeroInit for [crate::signal::frame::SigInfo; NSIG] {
    const ZERO: Self = NO_SIG_INFO;
}

impl<const N: usize> ZeroInit for [u8; N] {
    const ZERO: Self = [0; N];
}

/// Defines [`Process::empty`] and [`Process::renew`] from one list of
/// the fields with their empty values: the `set` ones are written, the
/// `zero` ones ([`ZeroInit`] types) are all zero (`renew` clears what
/// [`Process::clear_tables`] knows was written). The struct expression
/// of `empty` names every field once, so a field added to [`Process`] and
/// left out here does not compile.
macro_rules! empty_process {
    (set { mm: $mm:expr, $($f:ident: $v:expr,)* } zero { $($z:ident,)* }) => {
        impl Process {
            /// A process with no address space yet (for statics).
            /// Inlined, so that `Box::new(Process::empty())` builds its
            /// 5 KiB in the box: made apart and copied in, it cost some
            /// 680 iterations of `rep movs`.
            #[inline(always)]
            pub fn empty() -> Process {
                Process { mm: alloc::boxed::Box::new($mm), $($f: $v,)* $($z: ZeroInit::ZERO,)* }
            }

            /// This block made [`Process::empty`] again (a reaped zombie's,
            /// kept for the next fork: see
            /// [`Tasks::spare_process`](task::Tasks::spare_process)): what
            /// it holds is dropped, and of its 5 KiB of tables only the
            /// entries that were set are cleared, where a new block would
            /// be zeroed whole (a VM exit, the host zeroing it).
            pub fn renew(&mut self) {
                self.clear_tables();
                *self.mm = $mm;
                $(self.$f = $v;)*
            }
        }
    };
}

/// The entries from the lowest to the highest bit set in `set` (empty for
/// none), as a range of table indexes.
pub fn set_range(set: u64) -> (usize, usize) {
    if set == 0 {
        return (0, 0);
    }
    (
        set.trailing_zeros() as usize,
        64 - set.leading_zeros() as usize,
    )
}

empty_process! {
    set {
        mm: Mm::empty(),
        pid: INIT_PID,
        tgid: INIT_PID,
        is_thread: false,
        holds_group: true,
        futex_wait: None,
        futex_woken: false,
        deadline: None,
        timed_out: false,
        ppid: 0,
        pgid: INIT_PID,
        sid: INIT_PID,
        state: task::TaskState::Runnable,
        saved: None,
        spare_context: None,
        vfork_parent: None,
        vfork_child: None,
        borrowed_mm: false,
        fs_base: 0,
        gs_base: 0,
        bases_changed: false,
        clear_child_tid: 0,
        robust_list: 0,
        blocked_nr: None,
        user_sp: 0,
        spawn: crate::syscall::task::SpawnInfo {
            stack: 0,
            vfork: false,
        },
        alarm_at: None,
        alarm_interval: 0,
        sigmask: 0,
        sigmask_after_handler: None,
        sig_pending: 0,
        altstack: [0, 2, 0],
        exe_len: 0,
        stdio_modes: [0; 3],
        fds: FdTable::new(),
        cwd: Cow::Borrowed(&[]),
        umask: 0o022,
        image_inode: None,
        mapped_files: Vec::new(),
        layout: crate::exec::aslr::Layout::FIXED,
        comm: [0; 16],
        vdso: None,
        cpu_timers: [None; 2],
        membarrier_registered: 0,
        stop_report: 0,
        cont_report: false,
        cpu_ns: 0,
        run_start: 0,
        dead_threads_ns: 0,
        children_ns: 0,
        min_flt: 0,
        sigactions_set: 0,
        sig_info_set: 0,
    }
    zero {
        sigactions,
        sig_info,
        exe,
    }
}

impl Process {
    /// This thread's CPU time at CPU clock `now` (it is running).
    pub fn running_cpu_ns(&self, now: u64) -> u64 {
        self.cpu_ns + now.saturating_sub(self.run_start)
    }

    /// Post `sig` with `info` (Linux's `__send_signal`): dropped when it
    /// would be ignored and is not blocked; otherwise pending until it is
    /// delivered on the way back to user mode. Returns whether it is
    /// pending.
    pub fn post_signal(&mut self, sig: u64, info: crate::signal::frame::SigInfo) -> bool {
        use crate::signal::{disposition, Disposition};
        let i = (sig - 1) as usize;
        let bit = 1u64 << i;
        let act = self.sigactions[i];
        let blocked = self.sigmask & bit != 0;
        let handler =
            act.handler != crate::signal::SIG_DFL && act.handler != crate::signal::SIG_IGN;
        let ignored_now = disposition(sig, &act) == Disposition::Ignore && !blocked;
        let ignored = act.handler == crate::signal::SIG_IGN && sig != crate::signal::nr::SIGKILL;
        if (ignored || ignored_now) && (blocked || !handler) {
            return false;
        }
        self.pend(i, info);
        true
    }

    /// Make signal `i + 1` pending with `info` (its decision taken).
    #[inline(always)]
    pub fn pend(&mut self, i: usize, info: crate::signal::frame::SigInfo) {
        let bit = 1u64 << i;
        self.sig_pending |= bit;
        self.sig_info_set |= bit;
        self.sig_info[i] = info;
    }

    /// Zero the table entries that were set ([`Process::renew`]'s part of
    /// the `zero` fields): the signal actions from the lowest to the
    /// highest set (as fork copies them), the signal information of the
    /// signals ever pending, and the exe name.
    fn clear_tables(&mut self) {
        let (lo, hi) = set_range(self.sigactions_set);
        if let Some(set) = self.sigactions.get_mut(lo..hi) {
            set.fill(SigAction::default());
        }
        let mut used = self.sig_info_set;
        while used != 0 {
            let i = used.trailing_zeros() as usize;
            if let Some(info) = self.sig_info.get_mut(i) {
                *info = Default::default();
            }
            used &= used - 1;
        }
        self.exe = [0; 256];
    }

    /// When a blocked process wakes by itself: its timed wait or its
    /// alarm, whichever is first.
    pub fn wake_time(&self) -> Option<u64> {
        match (self.deadline, self.alarm_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Post SIGALRM if the alarm is due at `now` (monotonic ns), and set
    /// the next one for an interval timer; returns whether it fired.
    pub fn fire_alarm(&mut self, now: u64) -> bool {
        let Some(at) = self.alarm_at.filter(|&at| at <= now) else {
            return false;
        };
        let interval = self.alarm_interval;
        self.alarm_at = (interval > 0).then(|| at + interval);
        let info = crate::signal::frame::SigInfo {
            signo: crate::signal::nr::SIGALRM as i32,
            code: 0x80,
            ..Default::default()
        };
        self.post_signal(crate::signal::nr::SIGALRM, info);
        true
    }

    /// `st_mode` of the host's stdio stream `k` as vmrun gave it at boot
    /// (0: unknown, or no such stream).
    #[inline(always)]
    pub fn stdio_mode(&self, k: u8) -> u32 {
        self.stdio_modes.get(usize::from(k)).copied().unwrap_or(0)
    }

    /// Whether the host's stdio stream `k` is a regular file or a block
    /// device: one that can seek, and whose stat is the host's.
    #[inline(always)]
    pub fn stdio_is_file(&self, k: u8) -> bool {
        use crate::fs::stat::{S_IFBLK, S_IFMT, S_IFREG};
        matches!(self.stdio_mode(k) & S_IFMT, S_IFREG | S_IFBLK)
    }

    /// The lowest pending signal not blocked, if any.
    pub fn next_signal(&self) -> Option<u64> {
        let ready = self.sig_pending & !self.sigmask;
        (ready != 0).then(|| u64::from(ready.trailing_zeros()) + 1)
    }

    /// Move the state the threads of a group share (address space, fds,
    /// cwd, umask, handlers, exe) from `self` (which holds it) to `to`.
    pub fn pass_group(&mut self, to: &mut Process) {
        core::mem::swap(&mut self.mm, &mut to.mm);
        core::mem::swap(&mut self.fds, &mut to.fds);
        core::mem::swap(&mut self.cwd, &mut to.cwd);
        core::mem::swap(&mut self.mapped_files, &mut to.mapped_files);
        to.umask = self.umask;
        to.sigactions = self.sigactions;
        to.sigactions_set = self.sigactions_set;
        to.exe = self.exe;
        to.exe_len = self.exe_len;
        to.layout = self.layout;
        to.image_inode = self.image_inode;
        to.vdso = self.vdso;
        to.stdio_modes = self.stdio_modes;
        to.dead_threads_ns = self.dead_threads_ns;
        to.membarrier_registered = self.membarrier_registered;
        to.cpu_timers = self.cpu_timers;
        to.children_ns = self.children_ns;
        self.holds_group = false;
        to.holds_group = true;
    }

    /// Give the process, which has no fds yet, fds 0, 1 and 2: the
    /// host's stdio.
    pub fn init_stdio(&mut self) {
        let stdio = |k, flags| OpenFile::new(Node::Stdio(k), flags);
        let files = [
            stdio(0, o::RDONLY),
            stdio(1, o::WRONLY),
            stdio(2, o::WRONLY),
        ];
        self.fds = FdTable::stdio(files, self.fds.limit);
        if self.cwd.is_empty() {
            self.cwd = Cow::Borrowed(b"/");
        }
    }
}

/// [`Process::comm`]'s mark for a name an exec gave and nothing has asked
/// for yet: the base name of `exe`. Byte 15 of a name is its NUL, never
/// 0xff.
pub const COMM_OF_EXE: [u8; 16] = {
    let mut c = [0; 16];
    c[15] = 0xff;
    c
};

/// `name`'s first 15 bytes, NUL-padded: a thread name.
fn comm_of(name: &[u8]) -> [u8; 16] {
    let mut c = [0; 16];
    let n = name.len().min(15);
    c[..n].copy_from_slice(&name[..n]);
    c
}

impl Process {
    /// The thread name, NUL-padded. After an exec it is the base name of
    /// the file, made here when first asked for (few programs ask), not at
    /// every exec.
    pub fn comm(&self) -> [u8; 16] {
        if self.comm != COMM_OF_EXE {
            return self.comm;
        }
        comm_of(crate::fs::path::basename(&self.exe[..self.exe_len]))
    }

    /// Name the thread `name` (its first 15 bytes, as `PR_SET_NAME`).
    pub fn set_comm(&mut self, name: &[u8]) {
        self.comm = comm_of(name);
    }

    /// Name the process after the file `exe` it execs: `exe` is kept
    /// (truncated to 256 bytes) and the thread name, its base name, is
    /// made from it when asked for, unless the truncation cut it. Inlined
    /// into the exec, its one caller (a call's set-up and return cost as
    /// much as the rest).
    #[inline]
    pub fn set_exe_and_comm(&mut self, exe: &[u8]) {
        self.set_exe(exe);
        if exe.len() <= self.exe.len() {
            self.comm = COMM_OF_EXE;
        } else {
            self.set_comm(crate::fs::path::basename(exe));
        }
    }

    /// Remember the exec file name (truncated to 256 bytes).
    pub fn set_exe(&mut self, name: &[u8]) {
        let n = name.len().min(self.exe.len());
        self.exe[..n].copy_from_slice(&name[..n]);
        self.exe_len = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &[u8]) -> [u8; 16] {
        let mut c = [0; 16];
        c[..s.len()].copy_from_slice(s);
        c
    }

    /// A process that used every kind of table entry and much else.
    fn used_process() -> Box<Process> {
        let mut p = Box::new(Process::empty());
        for (sig, handler) in [(2, 0x40_1000), (17, 1), (34, 0x40_2000)] {
            p.sigactions[sig - 1] = SigAction {
                handler,
                flags: 0x0400_0000,
                restorer: 0x40_3000,
                mask: 1 << 9,
            };
            p.sigactions_set |= 1 << (sig - 1);
        }
        let info = crate::signal::frame::SigInfo {
            signo: 10,
            code: -6,
            addr_or_pid: 7,
            ..Default::default()
        };
        assert!(p.post_signal(10, info));
        p.pend(40, info);
        p.sig_pending = 0;
        p.set_exe(b"/usr/bin/a-rather-long-program-name");
        p.set_exe(b"/bin/sh");
        p.pid = 9;
        p.altstack = [0x7000, 0, 0x2000];
        p.umask = 0o077;
        p.cwd = Cow::Owned(b"/tmp".to_vec());
        p.deadline = Some(5);
        p.state = task::TaskState::Zombie(0);
        p
    }

    #[test]
    fn renew_of_a_used_process_equals_empty() {
        let mut p = used_process();
        p.renew();
        assert_eq!(format!("{:?}", *p), format!("{:?}", Process::empty()));
        assert_eq!(p.exe, [0; 256]);
        assert!(p.sig_info.iter().all(|i| *i == Default::default()));
    }

    #[test]
    fn pend_marks_the_signal_information_to_clear() {
        let mut p = Process::empty();
        p.pend(4, Default::default());
        p.pend(63, Default::default());
        assert_eq!(p.sig_info_set, 1 << 4 | 1 << 63);
        assert_eq!(p.sig_pending, 1 << 4 | 1 << 63);
    }

    #[test]
    fn set_range_spans_the_lowest_to_the_highest_bit() {
        assert_eq!(set_range(0), (0, 0));
        assert_eq!(set_range(1 << 1 | 1 << 16), (1, 17));
        assert_eq!(set_range(1 << 63), (63, 64));
    }

    #[test]
    fn an_exec_names_the_thread_after_the_file_when_asked() {
        let mut p = Process::empty();
        p.set_exe_and_comm(b"/usr/bin/a-rather-long-program-name");
        assert_eq!(p.comm, COMM_OF_EXE, "made when asked for");
        assert_eq!(p.comm(), name(b"a-rather-long-p"));
        p.set_exe_and_comm(b"prog");
        assert_eq!(p.comm(), name(b"prog"));
        p.set_exe_and_comm(b"/dir/");
        assert_eq!(p.comm(), name(b""), "as basename gives it");
    }

    #[test]
    fn a_set_name_stays_until_the_next_exec() {
        let mut p = Process::empty();
        p.set_exe_and_comm(b"/bin/sh");
        p.set_comm(b"worker-thread-number-7");
        assert_eq!(p.comm(), name(b"worker-thread-n"));
        p.set_comm(b"");
        assert_eq!(p.comm(), [0; 16], "an empty name is a name");
        p.set_exe_and_comm(b"/bin/true");
        assert_eq!(p.comm(), name(b"true"));
    }

    #[test]
    fn a_file_name_longer_than_exe_keeps_is_named_at_once() {
        let mut p = Process::empty();
        let mut long = alloc::vec![b'd'; 300];
        long[250] = b'/';
        long.extend_from_slice(b"/tail");
        p.set_exe_and_comm(&long);
        assert_eq!(p.exe_len, 256);
        assert_eq!(p.comm(), name(b"tail"), "not the truncated exe's");
    }
}
