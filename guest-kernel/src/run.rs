//! The kernel's main loop: run the program until it traps, serve the trap
//! (system call, page fault, or a fatal exception), repeat until it exits.

use crate::arch::phys::DirectMap;
use crate::arch::trap::{self, TrapFrame, UserMode};
use crate::arch::{cpu, gdt, hypercall};
use crate::host::{Host, HostFs};
use core::sync::atomic::{AtomicU64, Ordering};
use guest_kernel::fs::cache::PageCache;
use guest_kernel::mm::export;
use guest_kernel::mm::fault::{self, FaultError, FaultKind, FaultOutcome, SegvCode};
use guest_kernel::mm::frame::FrameAllocator;
use guest_kernel::mm::mmap::map;
use guest_kernel::mm::paging::KernelHalf;
use guest_kernel::mm::space::Mm;
use guest_kernel::mm::space::MmEnv;
use guest_kernel::mm::vma::{Backing, VmFlags};
use guest_kernel::process::exec::EntryState;
use guest_kernel::process::lifecycle;
use guest_kernel::process::task::{self as task, SavedContext, TaskState, Tasks};
use guest_kernel::process::Process;
use guest_kernel::syscall::exec::ExecPlan;
use guest_kernel::syscall::{self, Action, Ctx, ShortRoute};
use guest_kernel::trace::{self, category, kind};
use vmrun_contract::layout::{
    DIRECT_MAP_BASE, PAGE_SIZE, STATS_PHYS, SYSCALL_TRAMPOLINE_PHYS, TASK_SIZE,
};
use vmrun_contract::trace::exec_phase;
use vmrun_contract::trace::{resolution, vma_kind};
use vmrun_contract::{
    boot_flags, event, exit_kind, hc, kill_cause, BootInfo, GuestStats, BOOT_MAGIC,
};
use vmrun_contract::{trampoline, FAST_CR3_OFFSET};

use guest_kernel::signal::nr as sig;

mod debug;
mod timers;

use debug::After;

/// RFLAGS bits user mode may set (CF PF AF ZF SF TF DF OF AC ID); IF and
/// the reserved bit 1 are forced on, IOPL/NT/RF/VM stay clear.
const USER_RFLAGS_MASK: u64 = 0x24_0dd5;
const RFLAGS_FIXED: u64 = 0x202;

/// How long a task that keeps entering the kernel may hold the CPU while
/// others wait, in ns (one that stays in user mode goes after a period of
/// the host's timer, see `Kernel::timer_tick`).
const SLICE_NS: u64 = 50_000_000;

/// The least time between two timer interrupts without a kernel entry
/// that shows a task spinning in user mode (the host's period is 10 ms).
const MIN_SPIN_NS: u64 = 8_000_000;

/// Everything the kernel owns.
pub struct Kernel {
    /// The boot info, copied.
    pub info: BootInfo,
    /// The boot program's exec plan, [`ExecPlan::EMPTY`] as the kernel
    /// image holds it (a static's initial value: nothing made at run time).
    pub boot_plan: ExecPlan,
    /// Physical frames.
    pub frames: FrameAllocator,
    /// The page cache.
    pub cache: PageCache,
    /// The host's file service.
    pub fs: HostFs,
    /// The kernel's page tables as address spaces share them.
    pub kernel: KernelHalf,
    /// Frames the kernel holds for good (its tables), for the leak check.
    pub frames_kernel: u64,
    /// The running process.
    pub process: Current,
    /// The other processes.
    pub tasks: Tasks,
    /// Counters reported to the host.
    pub stats: GuestStats,
    /// Stdio, randomness and clocks for system calls.
    pub host: Host,
    /// `AT_HWCAP` and `AT_HWCAP2` for every exec.
    pub hwcap: (u64, u64),
    /// State of the generator of `AT_RANDOM` bytes for in-guest execs
    /// (seeded from the host's randomness at boot).
    pub random_state: u64,
    /// Whether the host was asked for timer interrupts
    /// ([`GuestStats::timer_wanted`]).
    timer_on: bool,
    /// The task that took the last timer interrupt (0 after a switch).
    tick_pid: u64,
    /// When (host monotonic ns) that task's slice began: its first tick.
    slice_start: u64,
    /// When the last timer interrupt came.
    tick_time: u64,
    /// System calls and page faults so far at the last timer interrupt.
    tick_entries: u64,
    /// Trap number, error code and CR2 of the fault whose signal is
    /// pending (for the signal frame).
    fault_detail: [u64; 3],
    /// The tasks as the TASKS trace last showed them.
    traced_tasks: alloc::vec::Vec<lifecycle::Seen>,
    /// Whether the syscall entry path was logged (`-v`).
    syscall_entry_logged: bool,
    /// Whether system calls are traced, logged or stopped at (fixed for
    /// the run, see [`Kernel::calls_short`]): one test on each call's way
    /// in and out stands for the several checks this means.
    calls_watched: bool,
    /// Whether the short path opens stdio reads and writes to the VMM's
    /// fast call (see [`open_fast_call`]): when calls take the short path
    /// and no debugger stops the program (fixed for the run).
    fast_calls: bool,
    /// Whether a process woken in a blocked call runs it again in the
    /// kernel ([`Kernel::woken_call_again`]): not under a debugger.
    call_again: bool,
    /// A signal waits for the program to leave the syscall trampoline
    /// (see [`Kernel::defer_signal`]); the ticks stay on until it has.
    signal_deferred: bool,
    /// The page-fault handler `UserMode::run` arms: [`fast_fault`], or
    /// [`no_fast_fault`] while page faults are traced or stopped at
    /// (fixed for the run, see [`Kernel::watch_faults`]), which leaves
    /// each to the loop: chosen once, not tested on each fault's way.
    fault_handler: trap::FaultHandler<Kernel, DirectMap>,
    /// When (TSC) the current call came in, for its SYSCALL_EXIT record
    /// (set only while calls are traced).
    call_tsc: u64,
    /// The action of a system call that [`short_call`]'s full path
    /// dispatched but left to the loop (anything but a plain return, or a
    /// return with a signal to deliver on the way back).
    served: Option<Action>,
    /// What is left of a page fault that [`fast_fault`] resolved (or found
    /// unresolvable) but left to the loop.
    fault_left: Option<FaultEnd>,
    user: Option<UserMode>,
}

impl Kernel {
    /// The state before boot.
    pub const fn empty() -> Kernel {
        Kernel {
            info: BootInfo::zeroed(),
            boot_plan: ExecPlan::EMPTY,
            frames: FrameAllocator::empty(),
            cache: PageCache::new(),
            fs: HostFs::empty(),
            kernel: KernelHalf::empty(),
            frames_kernel: 0,
            process: Current(None),
            tasks: Tasks::new(),
            stats: GuestStats {
                magic: 0,
                frames_total: 0,
                frames_in_use: 0,
                frames_kernel: 0,
                user_frames: 0,
                user_table_pages: 0,
                page_faults: 0,
                syscalls: 0,
                peak_user_frames: 0,
                forks: 0,
                context_switches: 0,
                zombies_reaped: 0,
                cow_copies: 0,
                cache_pages_read: 0,
                cache_fills: 0,
                timer_ticks: 0,
                timer_wanted: 0,
                host_signal: 0,
                phase_tsc: [0; 4],
                fast_cr3: 0,
            },
            host: Host {
                tsc0: 0,
                tsc_khz: 0,
                realtime0: 0,
                monotonic0: 0,
                last_stream: 0,
                random_pool: guest_kernel::syscall::random_pool::RandomPool::full(),
                mem_size: 0,
            },
            hwcap: (0, 0),
            random_state: 0,
            timer_on: false,
            tick_pid: 0,
            slice_start: 0,
            tick_time: 0,
            tick_entries: 0,
            fault_detail: [0; 3],
            traced_tasks: alloc::vec::Vec::new(),
            syscall_entry_logged: false,
            calls_watched: false,
            fast_calls: false,
            call_again: false,
            signal_deferred: false,
            fault_handler: fast_fault,
            call_tsc: 0,
            served: None,
            fault_left: None,
            user: None,
        }
    }

    /// Prepare user mode to start at `entry` with a fresh register file.
    /// The first program's registers are all zero already, as the token
    /// that guards them is handed out (see [`UserMode::take`]): only the
    /// entry's are written; a later exec's are cleared first.
    pub fn enter_user(&mut self, entry: EntryState) {
        let (um, first) = match self.user.take() {
            Some(um) => (um, false),
            None => match UserMode::take() {
                Some(um) => (um, true),
                None => hypercall::panic(b"user mode token lost"),
            },
        };
        let um = self.user.insert(um);
        um.reset_fpu();
        let regs = um.regs();
        if !first {
            *regs = TrapFrame::default();
        }
        regs.rip = entry.ip;
        regs.rsp = entry.sp;
        regs.cs = u64::from(gdt::USER_CS);
        regs.ss = u64::from(gdt::USER_DS);
        regs.rflags = RFLAGS_FIXED;
        cpu::load_process_tables(&self.process.mm.pt);
    }

    /// The program is loaded: trace what exec did, and stop for the host
    /// if it asked to inspect each exec.
    /// (Inlined, each test made here first, as the last exit's are: the
    /// untraced exec pays no calls.)
    #[inline(always)]
    pub fn exec_event(&mut self, mem: &mut DirectMap) {
        self.trace_cr3(mem);
        self.flush_vma_journal(mem);
        if self.info.flags & boot_flags::NOTIFY_EXEC_EXIT != 0 {
            self.event(mem, event::EXEC, 0, 0);
        }
    }

    /// Trace a CR3 load of the process's PML4.
    fn trace_cr3(&self, mem: &mut DirectMap) {
        trace_cr3_of(&self.process, mem);
    }

    /// A system call's return records: its SYSCALL_EXIT, and the task
    /// state changes it made (a reap, a kill, a stop). Out of line, so that
    /// the untraced return path stays as short as before.
    #[cold]
    #[inline(never)]
    fn trace_return(&mut self, mem: &mut DirectMap, nr: u64, result: u64) {
        if trace::on(mem, category::SYSCALLS) {
            let a = [result, cpu::rdtsc().wrapping_sub(self.call_tsc), 0, 0, 0, 0];
            let aux = nr as u32 | (self.process.pid as u32) << 16;
            trace::emit(mem, category::SYSCALLS, kind::SYSCALL_EXIT, aux, a);
        }
        self.trace_tasks(mem);
    }

    /// A context switch's records: the CR3 load and the task state changes
    /// (one test of the mask when tracing is off, as for the CR3 load
    /// alone).
    #[inline(always)]
    fn trace_switch(&mut self, mem: &mut DirectMap) {
        if trace::on(mem, category::PAGE_TABLES | category::TASKS) {
            self.trace_switch_records(mem);
        }
    }

    #[cold]
    #[inline(never)]
    fn trace_switch_records(&mut self, mem: &mut DirectMap) {
        self.trace_cr3(mem);
        self.trace_tasks(mem);
    }

    /// TASK_STATE records for the tasks that changed state since the last
    /// look (see `process::lifecycle`).
    fn trace_tasks(&mut self, mem: &mut DirectMap) {
        if !trace::on(mem, category::TASKS) {
            return;
        }
        let current = self.process.0.as_deref().map(|p| (p, true));
        let others = self.tasks.others.iter().map(|t| (&**t, false));
        let now = current.into_iter().chain(others);
        for c in lifecycle::changes(&mut self.traced_tasks, now) {
            emit_task(mem, c);
        }
    }

    /// Hand the VMA changes journaled since the last call to the trace
    /// (the test inline, as every return to user mode makes it).
    #[inline(always)]
    fn flush_vma_journal(&mut self, mem: &mut DirectMap) {
        flush_vma_journal_of(&mut self.process, mem);
    }

    /// Stop at an inspection point: `kind_` with its two arguments, the
    /// user frames and table pages held, and (for exec, exit and fault
    /// stops, which the host inspects) the VMAs exported first.
    fn event(&mut self, mem: &mut DirectMap, kind_: u64, a: u64, b: u64) {
        let inspects = kind_ != event::SYSCALL;
        if inspects && self.info.flags & boot_flags::NOTIFY_EXEC_EXIT == 0 {
            return;
        }
        if inspects {
            let bits = self.frames.cache_bits_info();
            let at = self.info.vma_export_phys;
            export::export_vmas(&self.process.mm, mem, at, bits);
            self.export_spaces(mem, at);
        }
        let mm = &self.process.mm;
        hypercall::call(
            hc::EVENT,
            [kind_, a, b, mm.user_frames, mm.user_table_pages(), 0],
        );
    }

    /// Every live address space for the host's views and checker (the
    /// running one first, then each held by another task: a process, a
    /// thread group's holder, a vfork child), the files they map, and
    /// where the copy-on-write counts live.
    fn export_spaces(&self, mem: &mut DirectMap, at: u64) {
        let others = self.tasks.others.iter().filter(|t| t.mm.pt.root() != 0);
        let spaces = || {
            let others = others.clone().map(|t| (t.tgid, &*t.mm));
            core::iter::once((self.process.tgid, &*self.process.mm)).chain(others)
        };
        export::export_files(spaces().map(|s| s.1), &self.cache, mem, at);
        let [counts, first, n] = self.frames.share_counts_info();
        let counts = counts.saturating_sub(DIRECT_MAP_BASE);
        export::export_spaces(spaces(), mem, at, [counts, first, n]);
    }

    /// Run the program until it exits; never returns. Inlined into its one
    /// caller, which reaches the kernel at its static's fixed address.
    #[inline(always)]
    pub fn run(&mut self, mem: &mut DirectMap) -> ! {
        self.calls_watched = !self.calls_short(mem);
        self.fast_calls = !self.calls_watched && self.info.flags & boot_flags::DEBUGGER == 0;
        if !self.fast_calls {
            trap::close_quick_answers(mem);
        }
        let handler: trap::SyscallHandler<Kernel, DirectMap> = if self.calls_watched {
            no_short_path
        } else {
            short_call
        };
        RAM_PAGES.store(self.frames.total(), Ordering::Relaxed);
        self.call_again = self.info.flags & boot_flags::DEBUGGER == 0;
        loop {
            if self.before_user_mode(mem) {
                continue;
            }
            // The token out of the kernel while user mode runs, so that the
            // handlers may borrow the whole kernel.
            let Some(mut um) = self.user.take() else {
                hypercall::panic(b"no user context")
            };
            let t = um.run(self, mem, handler, self.fault_handler);
            close_fast_calls(mem);
            let rip = um.regs().rip;
            self.user = Some(um);
            match t.vector {
                14 => self.page_fault_rest(mem, [t.fault_addr, t.error_code, rip]),
                _ if trap::is_syscall_entry(t.vector, rip) => self.syscall(mem, t.vector),
                trap::SYSCALL_VECTOR => self.int80(),
                trap::TIMER_VECTOR => self.timer_tick(mem),
                v => self.exception(mem, v, t.error_code),
            }
        }
    }

    /// A process woken in a system call it blocked in (`block` left its RIP
    /// at the SYSCALL and the call's number in RAX), with no signal to
    /// deliver first (which decides the call's restart or EINTR), runs the
    /// call again here, as the SYSCALL would on its return to user mode,
    /// without that return and the kernel entry after it (tens of
    /// microseconds on kvm_pvm; an IRET and a SYSCALL on VMX/SVM). It is
    /// counted and traced as that SYSCALL's call would be. Not under a
    /// debugger ([`Kernel::call_again`]), which may stop at the SYSCALL.
    #[inline(never)]
    fn woken_call_again(&mut self, mem: &mut DirectMap) {
        // The vector the platform's SYSCALL enters by (#UD on kvm_pvm).
        let vector = match self.info.flags & boot_flags::PLATFORM_PVM {
            0 => trap::SYSCALL_VECTOR,
            _ => 6,
        };
        self.syscall(mem, vector);
    }

    /// What is due before user mode runs again: a signal to deliver (true:
    /// delivered, look again), new FS/GS bases, a TLB flush, the VMA
    /// changes to trace.
    #[inline(always)]
    fn before_user_mode(&mut self, mem: &mut DirectMap) -> bool {
        if self.process.next_signal().is_some() {
            if !self.at_trampoline() {
                self.deliver_signal(mem);
                return true;
            }
            self.defer_signal(mem);
        } else if self.process.blocked_nr.is_some() && self.call_again {
            self.woken_call_again(mem);
            return true;
        }
        self.ready_user_mode(mem);
        false
    }

    /// The checks before user mode past the signals: new FS/GS bases, a
    /// TLB flush, the VMA changes to trace.
    #[inline(always)]
    fn ready_user_mode(&mut self, mem: &mut DirectMap) {
        ready_user_mode(&mut self.process, mem);
    }

    /// Note whether page faults are traced or the host stops at every
    /// n-th (fixed for the run: set at boot, once the trace ring is), in
    /// the fault handler to arm.
    pub fn watch_faults(&mut self, mem: &DirectMap) {
        let every = self.info.notify_fault_every > 0;
        let notify = self.info.flags & boot_flags::NOTIFY_FAULTS != 0 && every;
        let watched = trace::on(mem, category::FAULTS) || notify;
        self.fault_handler = if watched { no_fast_fault } else { fast_fault };
    }

    /// Whether calls may take the short path of [`short_call`]: not when
    /// their records are traced, the host stops at each system call, or
    /// `-v` logs the entry (all fixed for the run).
    fn calls_short(&self, mem: &DirectMap) -> bool {
        let stop = boot_flags::NOTIFY_SYSCALLS | boot_flags::VERBOSE;
        !trace::on(mem, category::SYSCALLS | category::TASKS) && self.info.flags & stop == 0
    }

    /// Whether the program was stopped in the syscall trampoline (see
    /// [`trap::in_trampoline`]): it goes back there before any signal or
    /// other task.
    fn at_trampoline(&mut self) -> bool {
        trap::in_trampoline(self.regs().rip)
    }

    /// A signal due while the program is in the syscall trampoline waits
    /// for the next timer tick, which this asks for, or its next kernel
    /// entry, whichever comes first.
    #[cold]
    fn defer_signal(&mut self, mem: &mut DirectMap) {
        self.signal_deferred = true;
        self.want_timer(mem);
    }

    fn regs(&mut self) -> &mut TrapFrame {
        match self.user.as_mut() {
            Some(um) => um.regs(),
            None => hypercall::panic(b"no user context"),
        }
    }

    /// Say once, in `vmrun -v`'s log, which way SYSCALL arrived (see
    /// docs/platforms.md): the SVM test lane checks it.
    fn note_syscall_entry(&mut self, vector: u64) {
        if self.info.flags & boot_flags::VERBOSE == 0 || self.syscall_entry_logged {
            return;
        }
        self.syscall_entry_logged = true;
        hypercall::log(if vector == trap::SYSCALL_VECTOR {
            b"syscall entry: vector 0x80 (SYSCALL entered the trampoline in ring 0)"
        } else {
            b"syscall entry: #UD at the trampoline (SYSCALL kept user rights: kvm_pvm)"
        });
    }

    /// `int 0x80` from the program itself: the 32-bit ABI is not served.
    fn int80(&mut self) {
        self.regs().rax = guest_kernel::errno::Errno::ENOSYS.to_ret() as u64;
    }

    fn syscall(&mut self, mem: &mut DirectMap, vector: u64) {
        let action = match self.served.take() {
            Some(action) => action,
            None => match self.dispatch_call(mem, vector) {
                Some(action) => action,
                None => return,
            },
        };
        let f = self.regs();
        let r = SyscallRegs {
            rax: f.rax,
            rcx: f.rcx,
        };
        self.act(mem, r, action);
        // After the action: an exec releases a vfork parent there.
        self.ticks_after_call(mem);
    }

    /// Count and dispatch the system call in the user frame (None: it was
    /// a sigreturn, done here).
    #[inline(always)]
    fn dispatch_call(&mut self, mem: &mut DirectMap, vector: u64) -> Option<Action> {
        self.stats.syscalls += 1;
        // Only the registers a call uses: copying the whole frame costs an
        // emulated string instruction of 22 iterations.
        let (nr, args, sp) = {
            let f = self.regs();
            (f.rax, [f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9], f.rsp)
        };
        if nr == syscall::nr::RT_SIGRETURN {
            self.sigreturn(mem);
            return None;
        }
        let p = &mut *self.process;
        p.user_sp = sp;
        p.blocked_nr = None;
        if p.alarm_at.is_some() {
            self.check_alarm();
        }
        if self.calls_watched {
            self.watch_entry(mem, vector, nr, args);
        }
        Some(self.with_cx(mem, |cx| syscall::dispatch(cx, nr, &args)))
    }

    /// Do what a system call's `action` asks, its registers `r`.
    #[inline(always)]
    fn act(&mut self, mem: &mut DirectMap, r: SyscallRegs, action: Action) {
        match action {
            Action::Return(v) => self.syscall_return(mem, r, v),
            Action::TimersChanged(v) => {
                self.syscall_return(mem, r, v);
                self.want_timer(mem);
            }
            Action::Exit(status) => self.exit(mem, exit_kind::EXITED, status, [0; 4]),
            Action::ExitThread(status) => self.exit_thread(mem, status as u8),
            Action::Exec(plan) => {
                let ip = r.rcx;
                self.exec(mem, plan, ip)
            }
            Action::Spawn(child) => {
                if trace::on(mem, category::SYSCALLS | category::TASKS) {
                    self.trace_return(mem, r.rax, child.pid);
                    let c = lifecycle::spawned(&mut self.traced_tasks, &child, self.process.tgid);
                    emit_task(mem, c);
                }
                self.spawn(mem, child)
            }
            Action::Block => self.block(mem, r),
            Action::Yield(v) => {
                self.sysret(mem, v as u64);
                if self.tasks.any_runnable() {
                    self.switch_away(mem);
                }
            }
            Action::Kill(signal) => self.kill_sent(mem, signal),
        }
    }

    /// A call comes in while calls are watched: log the entry path once
    /// and trace the call (noting when it started).
    fn watch_entry(&mut self, mem: &mut DirectMap, vector: u64, nr: u64, args: [u64; 6]) {
        self.note_syscall_entry(vector);
        if !trace::on(mem, category::SYSCALLS) {
            return;
        }
        let aux = nr as u32 | (self.process.pid as u32) << 16;
        trace::emit(mem, category::SYSCALLS, kind::SYSCALL_ENTER, aux, args);
        self.call_tsc = cpu::rdtsc();
    }

    /// A call returns `v`: log, trace and stop for the host as asked, then
    /// return to user mode.
    #[inline(always)]
    fn syscall_return(&mut self, mem: &mut DirectMap, r: SyscallRegs, v: i64) {
        if self.calls_watched {
            self.watch_return(mem, r, v);
        }
        self.sysret(mem, v as u64);
    }

    /// A call returns `v` while calls are watched: log, trace and stop for
    /// the host as asked.
    fn watch_return(&mut self, mem: &mut DirectMap, r: SyscallRegs, v: i64) {
        if v == ENOSYS && self.info.flags & boot_flags::VERBOSE != 0 {
            log_unimplemented(r.rax);
        }
        if trace::on(mem, category::SYSCALLS | category::TASKS) {
            self.trace_return(mem, r.rax, v as u64);
        }
        if self.info.flags & boot_flags::NOTIFY_SYSCALLS != 0 {
            // After the call, so that the host reads the buffers it
            // used (faulted in, and as the call left them).
            self.flush_vma_journal(mem);
            self.event(mem, event::SYSCALL, r.rax, v as u64);
        }
    }

    /// Replace the program (execve past its checks): load the kernel's own
    /// page tables while the old ones are torn down, load the new image,
    /// and start it. A failure past this point kills the process.
    pub fn exec(&mut self, mem: &mut DirectMap, mut plan: alloc::boxed::Box<ExecPlan>, ip: u64) {
        cpu::load_kernel_tables(&self.kernel);
        let random = self.next_random();
        let (kernel, hwcap) = (self.kernel, self.hwcap);
        let done = self.with_cx(mem, |cx| {
            syscall::exec::commit(cx, &kernel, &mut plan, hwcap, random)
        });
        // The block serves the next exec (the shell's next child).
        plan.recycle();
        self.tasks.spare_plan = Some(plan);
        match done {
            Ok(entry) => {
                self.enter_user(entry);
                trace::emit(
                    mem,
                    category::EXEC,
                    kind::EXEC_PHASE,
                    0,
                    [exec_phase::ENTER_USER, 0, 0, 0, 0, 0],
                );
                self.exec_event(mem);
            }
            Err(_) => self.kill(mem, sig::SIGSEGV, 0, ip, 0),
        }
    }

    /// The first program's exec failed past the point of no return: it
    /// dies of SIGSEGV, as [`Self::exec`] kills any other.
    pub fn kill_after_failed_exec(
        &mut self,
        mem: &mut DirectMap,
        e: guest_kernel::errno::Errno,
    ) -> ! {
        let fault = [e as u64, 0, 0, kill_cause::EXEC_FAILED];
        self.exit(mem, exit_kind::SIGNALED, sig::SIGSEGV, fault);
        hypercall::panic(b"pid 1 outlived its SIGSEGV")
    }

    /// 16 bytes for `AT_RANDOM` (SplitMix64 over the boot seed and the TSC).
    fn next_random(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for half in out.chunks_exact_mut(8) {
            self.random_state =
                self.random_state.wrapping_add(0x9e37_79b9_7f4a_7c15) ^ cpu::rdtsc();
            let mut z = self.random_state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            half.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        out
    }

    /// Emulate a call into the vsyscall page: system call `nr` with the
    /// program's argument registers, then a `ret` to its caller.
    fn vsyscall(&mut self, mem: &mut DirectMap, nr: u64, ip: u64) {
        self.stats.syscalls += 1;
        let (args, sp) = {
            let f = self.regs();
            ([f.rdi, f.rsi, f.rdx, 0, 0, 0], f.rsp)
        };
        let (ret, back) = self.with_cx(mem, |cx| {
            let ret = match syscall::dispatch(cx, nr, &args) {
                Action::Return(v) => v,
                _ => guest_kernel::errno::Errno::ENOSYS.to_ret(),
            };
            (
                ret,
                guest_kernel::uaccess::get_user_u64(&mut cx.p.mm, cx.env, sp),
            )
        });
        let Ok(back) = back else {
            self.kill(mem, sig::SIGSEGV, sp, ip, 0);
            return;
        };
        let f = self.regs();
        f.rax = ret as u64;
        f.rip = back;
        f.rsp = sp + 8;
    }

    /// Return from SYSCALL the way SYSRET would: to RCX with RFLAGS from R11.
    fn sysret(&mut self, mem: &mut DirectMap, rax: u64) {
        let f = self.regs();
        f.rax = rax;
        f.rip = f.rcx;
        f.rflags = (f.r11 & USER_RFLAGS_MASK) | RFLAGS_FIXED;
        f.cs = u64::from(gdt::USER_CS);
        f.ss = u64::from(gdt::USER_DS);
        if f.rip >= TASK_SIZE {
            // A non-canonical or kernel return address: Linux's IRET path
            // would take #GP; the program gets SIGSEGV.
            let ip = f.rip;
            self.kill(mem, sig::SIGSEGV, 0, ip, 0);
        }
    }

    /// A page fault at `addr` with `error` by the instruction at `ip` that
    /// came back from user mode: the rest of what [`fast_fault`] left in
    /// `fault_left`, or the whole of one it did not take.
    #[inline(never)]
    fn page_fault_rest(&mut self, mem: &mut DirectMap, [addr, error, ip]: [u64; 3]) {
        let end = match self.fault_left.take() {
            Some(end) => end,
            None => self.page_fault(mem, addr, error, ip),
        };
        self.fault_end(mem, end, [addr, error, ip]);
    }

    /// Count a page fault: the run's and the process's (minflt).
    #[inline(always)]
    fn count_fault(&mut self) {
        self.stats.page_faults += 1;
        self.process.min_flt += 1;
    }

    /// A page fault [`fast_fault`] did not take (nothing here reads or
    /// changes the user's registers): a call into the vsyscall page, any
    /// other fault in the kernel half, or any fault while faults are
    /// traced or stopped at: counted and resolved as there, then traced,
    /// then the host's stop for every n-th.
    fn page_fault(&mut self, mem: &mut DirectMap, addr: u64, error: u64, ip: u64) -> FaultEnd {
        if let Some(nr) = syscall::vsyscall::call_at(addr, ip, error) {
            return FaultEnd::Vsyscall(nr);
        }
        self.count_fault();
        let traced = trace::on(mem, category::FAULTS);
        let t0 = if traced { cpu::rdtsc() } else { 0 };
        let result = self.with_env(mem, |p, env| p.mm.handle_page_fault(env, addr, error));
        if traced {
            self.trace_fault(mem, [addr, error, ip], &result, t0);
        }
        let end = match result {
            Ok(out) if !out.stack_grown => FaultEnd::Quiet,
            Ok(_) => FaultEnd::Checks,
            Err(e) => return FaultEnd::Failed(e),
        };
        if self.notify_fault(mem, addr) {
            return FaultEnd::Checks;
        }
        end
    }

    /// The rest of a page fault at `addr` with `error` by the instruction
    /// at `ip` left as `end` (see [`Self::page_fault_rest`]), with the
    /// user-mode token back: the vsyscall page's call, or the signal, kill
    /// or stop of a fault that failed (then the host's stop for every n-th
    /// fault).
    fn fault_end(&mut self, mem: &mut DirectMap, end: FaultEnd, [addr, error, ip]: [u64; 3]) {
        match end {
            FaultEnd::Vsyscall(nr) => self.vsyscall(mem, nr, ip),
            FaultEnd::Failed(_) if trap::in_trampoline(ip) => {
                // The stdin ring's probe of a bad buffer goes back to the
                // kernel's read; any other fault there is a kernel bug,
                // which kills as an uncaught SIGSEGV (a handler could not
                // run there: see `before_user_mode`).
                if !self.ring_rewind() {
                    self.kill(mem, sig::SIGSEGV, addr, ip, error);
                }
            }
            FaultEnd::Failed(e) => {
                if !self.fault_failed(mem, e, [addr, error, ip]) {
                    self.notify_fault(mem, addr);
                }
            }
            FaultEnd::Quiet | FaultEnd::Checks => {}
        }
    }

    /// A fault that failed in the stdin ring's code (its probe of a bad
    /// buffer): back to the trampoline's `int 0x80` as the program's
    /// read(0, ...) came in, for the kernel to serve (see
    /// [`trap::ring_rewind`]); true if so.
    fn ring_rewind(&mut self) -> bool {
        let f = self.regs();
        trap::ring_rewind(&mut f.rip, &mut f.rax, &mut f.rdi)
    }

    /// Stop for the host at every n-th fault (the last at `addr`) if it
    /// asked to (true: stopped).
    #[inline(always)]
    fn notify_fault(&mut self, mem: &mut DirectMap, addr: u64) -> bool {
        let every = u64::from(self.info.notify_fault_every);
        let notify = self.info.flags & boot_flags::NOTIFY_FAULTS != 0 && every > 0;
        if notify && self.stats.page_faults.is_multiple_of(every) {
            self.flush_vma_journal(mem);
            self.event(mem, event::FAULT, self.stats.page_faults, addr);
            return true;
        }
        false
    }

    /// The FAULT trace record of a fault at `addr` with `error` by the
    /// instruction at `ip`, resolved as `result`, which began at TSC `t0`.
    #[inline(never)]
    fn trace_fault(
        &self,
        mem: &mut DirectMap,
        [addr, error, ip]: [u64; 3],
        result: &Result<FaultOutcome, FaultError>,
        t0: u64,
    ) {
        let how = resolution_of(result);
        let vma = vma_kind(&self.process.mm, addr);
        let cycles = cpu::rdtsc().wrapping_sub(t0);
        trace::emit(
            mem,
            category::FAULTS,
            kind::FAULT,
            0,
            [addr, error, ip, vma, how, cycles],
        );
    }

    /// A fault the memory manager could not resolve: the debugger's stop,
    /// a signal, or the end of the program. True if the debugger resumed
    /// the program as it was.
    #[inline(never)]
    fn fault_failed(
        &mut self,
        mem: &mut DirectMap,
        e: FaultError,
        [addr, error, ip]: [u64; 3],
    ) -> bool {
        if self.debugger() && self.debug_fault(mem, &e, addr) == After::Resume {
            return true;
        }
        let error = fault::reported_error_code(addr, error);
        match e {
            FaultError::Segv(code) if self.catches(sig::SIGSEGV) => {
                self.post_fault(sig::SIGSEGV, code as i32, addr, [14, error, addr]);
            }
            FaultError::Segv(SegvCode::MapErr | SegvCode::AccErr) => {
                self.kill(mem, sig::SIGSEGV, addr, ip, error);
            }
            FaultError::PastEof if self.catches(sig::SIGBUS) => {
                // si_code BUS_ADRERR.
                self.post_fault(sig::SIGBUS, 2, addr, [14, error, addr]);
            }
            FaultError::PastEof => self.kill(mem, sig::SIGBUS, addr, ip, error),
            FaultError::OutOfMemory => {
                let fault = [addr, ip, error, kill_cause::OUT_OF_MEMORY];
                self.exit(mem, exit_kind::SIGNALED, sig::SIGKILL, fault)
            }
        }
        false
    }

    fn exception(&mut self, mem: &mut DirectMap, vector: u64, error: u64) {
        let signal = match vector {
            0 | 16 | 19 => sig::SIGFPE,
            1 | 3 => sig::SIGTRAP,
            6 => sig::SIGILL,
            12 | 17 => sig::SIGBUS,
            _ => sig::SIGSEGV,
        };
        if self.debugger() {
            let after = match vector {
                1 | 3 => self.debug_trap(mem, vector),
                _ => self.debug_signal(mem, signal, 0),
            };
            if after == After::Resume {
                return;
            }
        }
        let ip = self.regs().rip;
        // A handler could not run from the middle of the trampoline, where
        // signals wait (`before_user_mode`): the trampoline has no such
        // fault but by a kernel bug, which kills rather than loops.
        if self.catches(signal) && !trap::in_trampoline(ip) {
            // si_code as Linux's traps give it: ILL_ILLOPN 2, FPE_INTDIV 1,
            // BUS_ADRERR 2, TRAP_TRACE 2 for a single step (the trap flag's
            // #DB, at the next instruction); SI_KERNEL 0x80 without an
            // address for a #GP and for int3 (Linux's do_int3_user).
            let (code, addr) = match vector {
                3 => (0x80, 0),
                1 => (2, ip),
                _ => match signal {
                    sig::SIGSEGV => (0x80, 0),
                    sig::SIGILL | sig::SIGBUS => (2, ip),
                    _ => (1, ip),
                },
            };
            self.post_fault(signal, code, addr, [vector, error, 0]);
            return;
        }
        self.kill(mem, signal, 0, ip, error)
    }

    /// The timer interrupt (vector [`trap::TIMER_VECTOR`]), which the host
    /// injects every few milliseconds while [`Self::want_timer`] says so:
    /// a due alarm posts its signal, sleepers whose time has come wake,
    /// and the running process, if another can run, goes to the back of
    /// the queue. This is how a process that never enters the kernel
    /// shares the CPU (time slices are the tick's period).
    fn timer_tick(&mut self, mem: &mut DirectMap) {
        // (Should a platform deliver it between SYSCALL and the
        // trampoline's trap, returning to the trampoline makes that trap
        // and the call is served then.)
        self.stats.timer_ticks += 1;
        self.signal_deferred = false;
        self.take_host_signal(mem);
        self.check_alarm();
        self.fire_timers();
        if self.process.cpu_timers.iter().any(Option::is_some) {
            self.with_cx(mem, syscall::time::fire_cpu_timers);
        }
        if !self.tasks.others.is_empty() {
            let now = self.host_now();
            self.wake_due(now);
            // The running task goes to the back of the queue if it spent
            // most of a period in user mode (no system call, no fault since
            // the last tick, which came at least MIN_SPIN_NS ago: two ticks
            // can arrive back to back when one came due while the kernel
            // worked), or has held the CPU for SLICE_NS. A task that enters
            // the kernel often keeps the CPU for a while as on Linux, where
            // the parent of a fresh child goes on first: every entry here
            // is a hundred times slower than natively, and so is every
            // window between two of them.
            let entries =
                self.stats.syscalls + SHORT_CALLS.load(Ordering::Relaxed) + self.stats.page_faults;
            let pid = self.process.pid;
            let spun = self.tick_pid == pid
                && entries == self.tick_entries
                && now.saturating_sub(self.tick_time) >= MIN_SPIN_NS;
            if self.tick_pid != pid {
                self.tick_pid = pid;
                self.slice_start = now;
            }
            self.tick_time = now;
            self.tick_entries = entries;
            let slice_over = now.saturating_sub(self.slice_start) >= SLICE_NS;
            // Not from the middle of the trampoline's code: the stdin
            // ring's copy must finish before another task may read it.
            if (spun || slice_over) && self.tasks.any_runnable() && !self.at_trampoline() {
                self.switch_away(mem);
            }
        }
        self.want_timer(mem);
    }

    /// A signal vmrun received for the guest (its host_signal word): SIGINT
    /// and SIGQUIT go to pid 1's process group, as a terminal sends them to
    /// its foreground group; SIGTERM and SIGHUP to pid 1.
    fn take_host_signal(&mut self, mem: &mut DirectMap) {
        use guest_kernel::mm::phys::PhysMem;
        let at = STATS_PHYS + vmrun_contract::HOST_SIGNAL_OFFSET;
        let signal = mem.read_u64(at);
        if signal == 0 {
            return;
        }
        mem.write_u64(at, 0);
        if signal == vmrun_contract::debug::INTERRUPT_REQUEST {
            return self.debug_interrupt(mem);
        }
        let action = self.with_cx(mem, |cx| syscall::signal::from_host(cx, signal));
        if let Action::Kill(s) = action {
            self.kill_sent(mem, s);
        }
    }

    /// Ask the host for timer interrupts while they have work: another
    /// task can run (it may need the CPU from one that spins) or wakes by
    /// itself (a timed wait, an alarm), an alarm is armed, or a POSIX timer
    /// that posts a signal. Other tasks that only another's action wakes
    /// (a parent in wait4, a pipe's reader) need none: a shell's child runs
    /// without ticks while the shell waits for it. Written only when the
    /// answer changes, and asked where it can become true (a fork, a task
    /// switch, a system call that woke another task, alarm, setitimer and
    /// the timer calls); where it becomes false (a reap, a block, an alarm
    /// that fired) the next tick turns the ticks off.
    fn want_timer(&mut self, mem: &mut DirectMap) {
        let want = self.others_need_ticks()
            || self.signal_deferred
            || self.process.alarm_at.is_some()
            || self.process.cpu_timers.iter().any(Option::is_some)
            || self.tasks.timers.armed();
        if want == self.timer_on {
            return;
        }
        self.timer_on = want;
        use guest_kernel::mm::phys::PhysMem;
        mem.write_u64(
            STATS_PHYS + vmrun_contract::TIMER_WANTED_OFFSET,
            u64::from(want),
        );
    }

    /// Whether another task can run, or wakes by itself (a timed wait, an
    /// alarm): the ticks' work among the other tasks.
    fn others_need_ticks(&self) -> bool {
        self.tasks.others.iter().any(|t| match t.state {
            TaskState::Runnable => true,
            TaskState::Blocked | TaskState::Stopped => t.wake_time().is_some(),
            TaskState::Zombie(_) => false,
        })
    }

    /// After a system call served in full: if it woke another process (a
    /// pipe's reader, a futex waiter, a vfork parent at the child's exec:
    /// `Tasks::woke`), that one needs the ticks if none are on.
    #[inline(always)]
    fn ticks_after_call(&mut self, mem: &mut DirectMap) {
        if self.tasks.woke {
            self.tasks.woke = false;
            if !self.timer_on {
                self.want_timer(mem);
            }
        }
    }

    /// A due alarm (alarm, setitimer) posts SIGALRM (checked at each system
    /// call: a process that never makes one is not interrupted).
    fn check_alarm(&mut self) {
        if self.process.alarm_at.is_none() {
            return;
        }
        let now = self.host_now();
        self.process.fire_alarm(now);
    }

    /// Whether the program has a handler for fault signal `signal` that it
    /// does not block (else the fault kills it, as Linux's force_sig does).
    fn catches(&self, signal: u64) -> bool {
        let a = self.process.sigactions[(signal - 1) as usize];
        let blocked = self.process.sigmask & (1 << (signal - 1)) != 0;
        a.handler != guest_kernel::signal::SIG_DFL
            && a.handler != guest_kernel::signal::SIG_IGN
            && !blocked
    }

    /// Queue a fault signal with its siginfo and the trap's details.
    fn post_fault(&mut self, signal: u64, code: i32, addr: u64, fault: [u64; 3]) {
        let info = guest_kernel::signal::frame::SigInfo {
            signo: signal as i32,
            code,
            addr_or_pid: addr,
            ..Default::default()
        };
        self.process.post_signal(signal, info);
        self.fault_detail = fault;
    }

    /// Deliver the lowest pending, unblocked signal: its handler runs on a
    /// signal frame, or its default action is taken.
    fn deliver_signal(&mut self, mem: &mut DirectMap) {
        use guest_kernel::signal::frame;
        let Some(signal) = self.process.next_signal() else {
            return;
        };
        let i = (signal - 1) as usize;
        self.process.sig_pending &= !(1 << i);
        let act = self.process.sigactions[i];
        let mut info = self.process.sig_info[i];
        self.tasks.timers.dequeued(self.process.tgid, &mut info);
        let fault = core::mem::take(&mut self.fault_detail);
        if act.handler == guest_kernel::signal::SIG_IGN && signal != sig::SIGKILL {
            return;
        }
        if act.handler == guest_kernel::signal::SIG_DFL || signal == sig::SIGKILL {
            use guest_kernel::signal::Disposition;
            match guest_kernel::signal::default_action(signal) {
                _ if signal == sig::SIGKILL => {}
                Disposition::Terminate => {}
                Disposition::Stop => return self.stop(mem, signal),
                Disposition::Ignore => return,
            }
            let ip = self.regs().rip;
            // A trap number says the signal comes from a fault; a signal
            // sent with kill() has none.
            match fault[0] {
                0 => self.kill_sent(mem, signal),
                _ => self.kill(mem, signal, fault[2], ip, fault[1]),
            }
            return;
        }
        if let Some(nr) = self.process.blocked_nr.take() {
            self.interrupt_call(nr, act.flags);
        }
        let blocked = self
            .process
            .sigmask_after_handler
            .take()
            .unwrap_or(self.process.sigmask);
        // The FPU state is saved straight into the process's spare saved
        // context, and the frame is written from there.
        let spare = self.process.spare_context.take();
        let mut block = spare.unwrap_or_else(|| alloc::boxed::Box::new(SavedContext::EMPTY));
        let um = self.user_mode();
        let regs = user_regs_of(um.regs());
        um.save_fpu(&mut block.fpu);
        let altstack = self.process.altstack;
        let fpu = &mut block.fpu.0;
        let built = self.with_env(mem, |p, env| {
            frame::setup_rt_frame(
                &mut p.mm, env, &regs, fpu, &info, &act, blocked, altstack, fault,
            )
        });
        self.process.spare_context = Some(block);
        match built {
            Ok(new) => {
                let p = &mut *self.process;
                p.sigmask = frame::blocked_in_handler(blocked, signal, &act);
                if act.flags & frame::sa::RESETHAND != 0 {
                    p.sigactions[i].handler = guest_kernel::signal::SIG_DFL;
                }
                let um = self.user_mode();
                set_user_regs(um.regs(), &new);
                // The handler starts with the initial FPU state
                // (`frame::init_fpu`, which the power-on image is), loaded
                // from where it lies: no image built and copied.
                um.reset_fpu();
            }
            Err(_) => {
                let ip = regs.rip;
                self.kill(mem, sig::SIGSEGV, 0, ip, 0);
            }
        }
    }

    /// A stop signal's default action: the process (every thread of it)
    /// stops until SIGCONT, its parent hears of it (SIGCHLD, a WUNTRACED
    /// wait), and another task runs. pid 1 ignores it, as Linux's init
    /// does: nothing could continue it.
    fn stop(&mut self, mem: &mut DirectMap, signal: u64) {
        if self.process.tgid == guest_kernel::process::INIT_PID {
            return;
        }
        self.with_cx(mem, |cx| syscall::task::stop_group(cx, signal));
        self.process.state = TaskState::Stopped;
        self.switch_away(mem);
    }

    /// rt_sigreturn: the registers, FPU state, mask and alternate stack the
    /// signal frame at the user's stack saved.
    fn sigreturn(&mut self, mem: &mut DirectMap) {
        use guest_kernel::signal::frame;
        let rsp = self.regs().rsp;
        // The image is read straight into a block the FPU then loads from:
        // the process's spare saved context (no zeroed buffer, no copy).
        let spare = self.process.spare_context.take();
        let mut block = spare.unwrap_or_else(|| alloc::boxed::Box::new(SavedContext::EMPTY));
        let fpu = &mut block.fpu.0;
        let restored = self.with_env(mem, |p, env| {
            frame::restore_rt_frame(&mut p.mm, env, rsp, fpu)
        });
        match restored {
            Ok((regs, mask, uc_stack)) => {
                let p = &mut *self.process;
                p.sigmask = mask;
                p.altstack = frame::restore_altstack(p.altstack, uc_stack, regs.rsp);
                let um = self.user_mode();
                set_user_regs(um.regs(), &regs);
                // Its MXCSR was checked.
                um.load_saved_fpu(&block.fpu);
                self.process.spare_context = Some(block);
            }
            Err(_) => {
                let ip = self.regs().rip;
                self.kill(mem, sig::SIGSEGV, 0, ip, 0);
            }
        }
    }

    /// Kill the program with the fatal signal of a fault at `addr`.
    fn kill(&mut self, mem: &mut DirectMap, signal: u64, addr: u64, ip: u64, error: u64) {
        let fault = [addr, ip, error, kill_cause::FAULT];
        self.exit(mem, exit_kind::SIGNALED, signal, fault)
    }

    /// Kill the program with a fatal signal that was sent, not a fault's.
    fn kill_sent(&mut self, mem: &mut DirectMap, signal: u64) {
        let ip = self.regs().rip;
        let fault = [0, ip, 0, kill_cause::SENT];
        self.exit(mem, exit_kind::SIGNALED, signal, fault)
    }

    /// The current process ends: pid 1's end is the run's end; any other
    /// becomes a zombie and the next process runs.
    /// `fault` is the address, ip, error code and [`kill_cause`] of a
    /// kill.
    fn exit(&mut self, mem: &mut DirectMap, kind: u64, status: u64, fault: [u64; 4]) {
        if self.process.tgid != guest_kernel::process::INIT_PID {
            let ws = if kind == exit_kind::SIGNALED {
                task::signaled(status)
            } else {
                task::exited(status as u8)
            };
            self.exit_task(mem, ws);
            return;
        }
        self.end_run(mem, kind, status, fault)
    }

    /// End the run with pid 1's status: save what outlives the VM, tear
    /// every process down if the host asked for the leak check, report the
    /// counters.
    fn end_run(&mut self, mem: &mut DirectMap, kind: u64, status: u64, fault: [u64; 4]) -> ! {
        // (Each checked here first: the last exit's budget is a few
        // hundred instructions, and a call costs a dozen.)
        if trace::on(mem, category::VMAS) {
            self.flush_vma_journal(mem);
        }
        if self.info.flags & boot_flags::NOTIFY_EXEC_EXIT != 0 {
            self.event(mem, event::EXIT, 0, 0);
        }
        if self.info.flags & boot_flags::LEAK_CHECK != 0 {
            self.tear_everything_down(mem);
        } else {
            self.save_what_outlives_the_vm(mem);
        }
        self.write_stats(mem);
        hypercall::exit([kind, status, fault[0], fault[1], fault[2], fault[3]])
    }
}

impl Kernel {
    /// At exit: shared file mappings are written back and every open file
    /// is released (host handles closed), as the exiting task's files are.
    fn close_files(&mut self, mem: &mut DirectMap) {
        self.with_cx(mem, syscall::exit_files);
    }

    /// Run `f` with the running process and the machine as system calls
    /// see them.
    fn with_cx<R>(
        &mut self,
        mem: &mut DirectMap,
        f: impl FnOnce(&mut Ctx<'_, '_, '_, DirectMap, Host>) -> R,
    ) -> R {
        let mut env = MmEnv {
            mem,
            frames: &mut self.frames,
            cache: &mut self.cache,
            host: &mut self.fs,
        };
        let mut cx = Ctx {
            p: &mut self.process,
            env: &mut env,
            host: &mut self.host,
            tasks: &mut self.tasks,
        };
        f(&mut cx)
    }

    /// Run `f` with the running process and its memory environment.
    fn with_env<R>(
        &mut self,
        mem: &mut DirectMap,
        f: impl FnOnce(&mut Process, &mut MmEnv<'_, DirectMap>) -> R,
    ) -> R {
        let mut env = MmEnv {
            mem,
            frames: &mut self.frames,
            cache: &mut self.cache,
            host: &mut self.fs,
        };
        f(&mut self.process, &mut env)
    }
}

/// The running process (a box, so that switching moves a pointer).
pub struct Current(pub Option<alloc::boxed::Box<Process>>);

impl core::ops::Deref for Current {
    type Target = Process;
    fn deref(&self) -> &Process {
        match &self.0 {
            Some(p) => p,
            None => hypercall::panic(b"no current process"),
        }
    }
}

impl core::ops::DerefMut for Current {
    fn deref_mut(&mut self) -> &mut Process {
        match &mut self.0 {
            Some(p) => p,
            None => hypercall::panic(b"no current process"),
        }
    }
}

/// The registers a signal frame saves, from the trap frame.
fn user_regs_of(f: &TrapFrame) -> guest_kernel::signal::frame::UserRegs {
    guest_kernel::signal::frame::UserRegs {
        r8: f.r8,
        r9: f.r9,
        r10: f.r10,
        r11: f.r11,
        r12: f.r12,
        r13: f.r13,
        r14: f.r14,
        r15: f.r15,
        rdi: f.rdi,
        rsi: f.rsi,
        rbp: f.rbp,
        rbx: f.rbx,
        rdx: f.rdx,
        rax: f.rax,
        rcx: f.rcx,
        rsp: f.rsp,
        rip: f.rip,
        rflags: f.rflags,
    }
}

/// Load user registers into the trap frame (user selectors, user flags).
fn set_user_regs(f: &mut TrapFrame, r: &guest_kernel::signal::frame::UserRegs) {
    f.r8 = r.r8;
    f.r9 = r.r9;
    f.r10 = r.r10;
    f.r11 = r.r11;
    f.r12 = r.r12;
    f.r13 = r.r13;
    f.r14 = r.r14;
    f.r15 = r.r15;
    f.rdi = r.rdi;
    f.rsi = r.rsi;
    f.rbp = r.rbp;
    f.rbx = r.rbx;
    f.rdx = r.rdx;
    f.rax = r.rax;
    f.rcx = r.rcx;
    f.rsp = r.rsp;
    f.rip = r.rip;
    f.rflags = (r.rflags & USER_RFLAGS_MASK) | RFLAGS_FIXED;
    f.cs = u64::from(gdt::USER_CS);
    f.ss = u64::from(gdt::USER_DS);
}

/// The trap frame as the words a [`SavedContext`] keeps.
fn frame_words(f: &TrapFrame) -> [u64; 22] {
    [
        f.r15,
        f.r14,
        f.r13,
        f.r12,
        f.r11,
        f.rbp,
        f.rdi,
        f.rsi,
        f.rdx,
        f.r10,
        f.r8,
        f.r9,
        f.rcx,
        f.rbx,
        f.rax,
        f.vector,
        f.error_code,
        f.rip,
        f.cs,
        f.rflags,
        f.rsp,
        f.ss,
    ]
}

fn frame_of(w: &[u64; 22]) -> TrapFrame {
    TrapFrame {
        r15: w[0],
        r14: w[1],
        r13: w[2],
        r12: w[3],
        r11: w[4],
        rbp: w[5],
        rdi: w[6],
        rsi: w[7],
        rdx: w[8],
        r10: w[9],
        r8: w[10],
        r9: w[11],
        rcx: w[12],
        rbx: w[13],
        rax: w[14],
        vector: w[15],
        error_code: w[16],
        rip: w[17],
        cs: w[18],
        rflags: w[19],
        rsp: w[20],
        ss: w[21],
    }
}

impl Kernel {
    /// A new child from fork/vfork/clone: it resumes where the parent
    /// returns from the call, with 0 in RAX (and its own stack if given);
    /// the parent gets its pid (and, for vfork, waits for it).
    fn spawn(&mut self, mem: &mut DirectMap, mut child: alloc::boxed::Box<Process>) {
        let (pid, info) = (child.pid, child.spawn);
        let mut saved = alloc::boxed::Box::new(SavedContext::EMPTY);
        let um = self.user_mode();
        let mut words = frame_words(um.regs());
        um.save_fpu(&mut saved.fpu);
        // The child returns from the system call as SYSRET would.
        words[14] = 0; // rax
        words[17] = words[12]; // rip = rcx
        words[19] = (words[4] & USER_RFLAGS_MASK) | RFLAGS_FIXED; // rflags from r11
        words[18] = u64::from(gdt::USER_CS);
        words[21] = u64::from(gdt::USER_DS);
        if info.stack != 0 {
            words[20] = info.stack;
        }
        saved.words = words;
        child.saved = Some(saved);
        self.tasks.others.push(child);
        // The parent's slice starts afresh: it goes on after fork (and the
        // fork, slow here, does not count against it).
        self.tick_pid = 0;
        self.want_timer(mem);
        self.sysret(mem, pid);
        if info.vfork {
            self.process.state = TaskState::Blocked;
            self.switch_away(mem);
        }
    }

    /// The current call must wait: run it again (same registers) when the
    /// process is woken, and let another process run.
    fn block(&mut self, mem: &mut DirectMap, r: SyscallRegs) {
        {
            let f = self.regs();
            f.rax = r.rax;
            // Back to the SYSCALL instruction (2 bytes) the program ran.
            f.rip = r.rcx.wrapping_sub(2);
        }
        self.process.state = TaskState::Blocked;
        self.process.blocked_nr = Some(r.rax);
        self.switch_away(mem);
    }

    /// A handler is about to run for a process that was waiting in system
    /// call `nr`: the call returns EINTR (rather than running again after
    /// the handler) unless it restarts (SA_RESTART, and not a call Linux
    /// never restarts: the sleeps and the polls).
    fn interrupt_call(&mut self, nr: u64, act_flags: u64) {
        use guest_kernel::syscall::nr as n;
        const SA_RESTART: u64 = 0x1000_0000;
        let never = [
            n::PAUSE,
            n::RT_SIGSUSPEND,
            n::RT_SIGTIMEDWAIT,
            n::POLL,
            n::PPOLL,
            n::SELECT,
            n::PSELECT6,
            n::EPOLL_WAIT,
            n::EPOLL_PWAIT,
            n::NANOSLEEP,
            n::CLOCK_NANOSLEEP,
        ];
        if act_flags & SA_RESTART != 0 && !never.contains(&nr) {
            return;
        }
        let p = &mut *self.process;
        p.deadline = None;
        p.timed_out = false;
        p.futex_wait = None;
        p.futex_woken = false;
        let f = self.regs();
        f.rax = guest_kernel::errno::Errno::EINTR.to_ret() as u64;
        f.rip = f.rip.wrapping_add(2);
    }

    fn user_mode(&mut self) -> &mut UserMode {
        match self.user.as_mut() {
            Some(um) => um,
            None => hypercall::panic(b"no user context"),
        }
    }

    /// The calling thread exits: with other threads in its group it just
    /// goes (its group's state passes on); the last one ends the process.
    fn exit_thread(&mut self, mem: &mut DirectMap, status: u8) {
        let more = self.with_cx(mem, syscall::task::exit_thread);
        if !more {
            return self.exit(mem, exit_kind::EXITED, u64::from(status), [0; 4]);
        }
        // Gone for good: no zombie for a thread.
        self.process.state = TaskState::Zombie(0);
        let Some(next) = self.next_to_run() else {
            self.deadlock(mem)
        };
        self.process.0 = None;
        self.enter_task(mem, next);
    }

    /// The next process to run: a runnable one, else (sleeping the host
    /// until then) the one whose timed wait ends first. A POSIX timer that
    /// expires before that makes the host sleep until it and look again:
    /// `None` if its signal woke the current process.
    fn next_to_run(&mut self) -> Option<alloc::boxed::Box<Process>> {
        let (now, (i, d)) = loop {
            let now = self.host_now();
            self.wake_due(now);
            if let Some(t) = self.tasks.take_runnable() {
                return Some(t);
            }
            if self.current_woken_by_timer() {
                return None;
            }
            let first = self
                .tasks
                .others
                .iter()
                .enumerate()
                .filter(|(_, t)| t.state == TaskState::Blocked)
                .filter_map(|(i, t)| t.wake_time().map(|d| (i, d)))
                .min_by_key(|&(_, d)| d);
            let mine = self.current_blocked_until();
            let bound = first.map(|(_, d)| d).into_iter().chain(mine).min();
            if self.sleep_until_timer(now, bound) {
                continue;
            }
            if mine.is_some() && mine == bound {
                self.wait_current();
                return None;
            }
            break (now, first?);
        };
        hypercall::sleep(d.saturating_sub(now));
        let now = self.host_now();
        let mut t = self.tasks.others.remove(i);
        if t.deadline.is_some_and(|dl| dl <= now) {
            t.deadline = None;
            t.timed_out = true;
        }
        t.fire_alarm(now);
        t.state = TaskState::Runnable;
        Some(t)
    }

    /// Wake the other processes whose timed wait ended or whose alarm
    /// fired by `now`.
    fn wake_due(&mut self, now: u64) {
        self.fire_timers_at(now);
        for t in self.tasks.others.iter_mut() {
            if t.state == TaskState::Blocked && t.deadline.is_some_and(|d| d <= now) {
                t.deadline = None;
                t.timed_out = true;
                t.state = TaskState::Runnable;
            }
            if !matches!(t.state, TaskState::Zombie(_)) && t.fire_alarm(now) {
                t.state = TaskState::Runnable;
            }
        }
    }

    /// When the current (blocked) process wakes by itself: its timed wait
    /// or its alarm, whichever is first.
    fn current_wake_time(&self) -> Option<u64> {
        self.process.wake_time()
    }

    /// Whether nothing else can run before the current process wakes.
    fn current_wakes_first(&mut self) -> bool {
        let Some(mine) = self.current_wake_time() else {
            return false;
        };
        let now = self.host_now();
        let others = self.tasks.others.iter().filter_map(|t| match t.state {
            TaskState::Runnable => Some(now),
            TaskState::Blocked => t.wake_time(),
            TaskState::Zombie(_) | TaskState::Stopped => None,
        });
        let timers = self.tasks.timers.next_expiry();
        others.chain(timers).min().is_none_or(|o| mine <= o)
    }

    /// Sleep the host until the current process's wait ends or its alarm
    /// is due; it then runs its call again (or takes the signal).
    fn wait_current(&mut self) {
        let now = self.host_now();
        if let Some(t) = self.current_wake_time() {
            hypercall::sleep(t.saturating_sub(now));
        }
        let now = self.host_now();
        if self.process.deadline.is_some_and(|d| d <= now) {
            self.process.deadline = None;
            self.process.timed_out = true;
        }
        self.check_alarm();
        self.fire_timers_at(now);
        self.process.state = TaskState::Runnable;
    }

    fn host_now(&mut self) -> u64 {
        use guest_kernel::syscall::HostIo;
        self.host
            .now_ns(guest_kernel::syscall::time::Clock::Monotonic)
    }

    /// Make `next` the running process: its group's state, registers, FPU
    /// state and page tables.
    fn enter_task(&mut self, mem: &mut DirectMap, mut next: alloc::boxed::Box<Process>) {
        if !next.holds_group {
            match self.tasks.group_holder(next.tgid) {
                Some(h) => h.pass_group(&mut next),
                None => hypercall::panic(b"a thread group lost its address space"),
            }
        }
        let Some(saved) = next.saved.take() else {
            hypercall::panic(b"a process to run has no saved state")
        };
        next.bases_changed = true;
        next.run_start = guest_kernel::syscall::HostIo::cpu_ns(&mut self.host);
        self.process.0 = Some(next);
        self.tasks.switches += 1;
        let um = self.user_mode();
        *um.regs() = frame_of(&saved.words);
        um.load_saved_fpu(&saved.fpu);
        self.process.spare_context = Some(saved);
        cpu::load_process_tables(&self.process.mm.pt);
        self.trace_switch(mem);
        self.tick_pid = 0;
        self.want_timer(mem);
    }

    /// The current process cannot go on (blocked, a zombie, or waiting for
    /// a vfork child): save it and switch to the next runnable one.
    fn switch_away(&mut self, mem: &mut DirectMap) {
        if self.process.state == TaskState::Blocked && self.current_wakes_first() {
            self.wait_current();
            return;
        }
        let Some(mut next) = self.next_to_run() else {
            if self.process.state == TaskState::Runnable {
                return;
            }
            self.deadlock(mem)
        };
        let spare = self.process.spare_context.take();
        let mut saved = spare.unwrap_or_else(|| alloc::boxed::Box::new(SavedContext::EMPTY));
        let um = self.user_mode();
        saved.words = frame_words(um.regs());
        um.save_fpu(&mut saved.fpu);
        let Some(mut cur) = self.process.0.take() else {
            hypercall::panic(b"no current process")
        };
        cur.saved = Some(saved);
        cur.cpu_ns = cur.running_cpu_ns(guest_kernel::syscall::HostIo::cpu_ns(&mut self.host));
        if cur.tgid == next.tgid && cur.holds_group {
            cur.pass_group(&mut next);
        }
        self.tasks.others.push(cur);
        self.enter_task(mem, next);
    }

    /// Every process waits for another: none can ever run again.
    fn deadlock(&mut self, mem: &mut DirectMap) -> ! {
        hypercall::log(b"every process is blocked: deadlock");
        let why = [0, 0, 0, kill_cause::DEADLOCK];
        self.end_run(mem, exit_kind::SIGNALED, sig::SIGKILL, why)
    }

    /// A process other than pid 1 ends: it becomes a zombie and another
    /// runs.
    fn exit_task(&mut self, mem: &mut DirectMap, status: i32) {
        cpu::load_kernel_tables(&self.kernel);
        self.with_cx(mem, |cx| syscall::task::exit_task(cx, status));
        if self.tasks.others.is_empty() && self.process.tgid != guest_kernel::process::INIT_PID {
            hypercall::panic(b"a process exited with no other left");
        }
        self.switch_away(mem);
    }

    /// The counters at the end of the run, into the contract's stats page
    /// (in `GuestStats`'s field order, up to `timer_ticks`: `want_timer`
    /// keeps `timer_wanted` there current and the host owns
    /// `host_signal`). Inlined into `end_run`, its one caller, which saves
    /// the call and the registers this many words take.
    #[inline(always)]
    fn write_stats(&self, mem: &mut DirectMap) {
        let (s, mm) = (&self.stats, &self.process.mm);
        let words = [
            BOOT_MAGIC,
            self.frames.total(),
            self.frames.in_use(),
            self.frames_kernel,
            mm.user_frames,
            mm.user_table_pages(),
            s.page_faults,
            // With the calls the syscall stub answered itself.
            s.syscalls + SHORT_CALLS.load(Ordering::Relaxed),
            mm.peak_user_frames(),
            self.tasks.forks,
            self.tasks.switches,
            self.tasks.reaped,
            self.frames.cow_copies,
            self.cache.pages_read,
            self.cache.fills,
            s.timer_ticks,
        ];
        mem.write_words(STATS_PHYS, &words);
    }

    /// The leak check's end of the run: every process goes (its files and
    /// memory) and the page cache is emptied, so that the counters show
    /// any frame or table page the kernel failed to free.
    fn tear_everything_down(&mut self, mem: &mut DirectMap) {
        self.end_others(mem);
        self.close_files(mem);
        self.process.mm.teardown(mem, &mut self.frames);
        self.cache.clear(mem, &mut self.frames);
        self.flush_vma_journal(mem);
    }

    /// The ordinary end of the run: the host discards the VM, so nothing is
    /// freed; only the data that outlives it is saved, as each process's
    /// exit would save it (robust futex lists of the other processes
    /// marked, then shared writable file mappings written back). Writes
    /// and closes have already reached the host's files.
    fn save_what_outlives_the_vm(&mut self, mem: &mut DirectMap) {
        self.for_each_live_other(mem, |cx| syscall::task::save_at_run_end(cx, true));
        if !self.process.mapped_files.is_empty() {
            self.with_cx(mem, |cx| syscall::task::save_at_run_end(cx, false));
        }
    }

    /// Run `f` on each other process that is not a zombie, as its own
    /// context (out of the task list while it runs, as the running
    /// process is).
    fn for_each_live_other(
        &mut self,
        mem: &mut DirectMap,
        mut f: impl FnMut(&mut Ctx<'_, '_, '_, DirectMap, Host>),
    ) {
        // Alone, the list is not taken out and put back (the placeholder's
        // drop alone costs a score of instructions at the last exit).
        if self.tasks.others.is_empty() {
            return;
        }
        let mut others = core::mem::take(&mut self.tasks.others);
        for t in others.iter_mut() {
            if matches!(t.state, TaskState::Zombie(_)) {
                continue;
            }
            let mut env = MmEnv {
                mem,
                frames: &mut self.frames,
                cache: &mut self.cache,
                host: &mut self.fs,
            };
            let mut cx = Ctx {
                p: t,
                env: &mut env,
                host: &mut self.host,
                tasks: &mut self.tasks,
            };
            f(&mut cx);
        }
        self.tasks.others = others;
    }

    /// At the end of the run: every other process goes (its files and
    /// memory), so that the leak check covers them all.
    fn end_others(&mut self, mem: &mut DirectMap) {
        self.for_each_live_other(mem, |cx| {
            syscall::task::exit_task(cx, task::signaled(sig::SIGKILL));
        });
        self.tasks.others.clear();
    }
}

const ENOSYS: i64 = guest_kernel::errno::Errno::ENOSYS.to_ret();

/// The short path of a system call that only reads the caller's identity
/// (`ShortRoute::identity`: getpid, gettid...), moves the break up
/// (`syscall::brk_short`), records something about the caller
/// (`ShortRoute::own_state`), sets its FS or GS base
/// (`syscall::set_base`) or writes a reply into one mapped user page
/// ([`short_reply`]), by the running process `p`, in the user frame
/// `f`: the arch layer's syscall stub calls it before saving the whole
/// frame (see `UserMode::run`), and if it answers, returns to the program
/// at once (as SYSRET would), without the checks `Kernel::run` makes on
/// the way back to user mode: such a call changes nothing they look at
/// (no signal, no TLB flush, no journaled VMA change; a new FS/GS base is
/// loaded on the way).
/// The call number is sorted by one table (`syscall::short_route`); any
/// other call goes to [`full_call`], sigreturn (which rewrites the whole
/// frame), sigaltstack and the fork calls (which read the stack pointer
/// the loop records) to the loop.
/// Whether the call was served (else the loop's full path serves it, and
/// the frame and the process are left as they were). A due alarm is
/// checked at each system call, so with one armed every call takes the
/// loop's full path.
extern "C" fn short_call(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    use ShortRoute as R;
    // Each short call's route spelled out, so that the answer is one load
    // past the table's jump.
    match syscall::short_route(f.rax) {
        R::Full => full_call(k, f, mem),
        R::Loop => false,
        R::Brk => short_brk(k, f, mem),
        R::Bases => short_bases(k, f, mem),
        R::ExitGroup => short_exit(k, f, mem),
        R::Tgid => short_answer(k, f, R::Tgid),
        R::Pid => short_answer(k, f, R::Pid),
        R::Ppid => short_answer(k, f, R::Ppid),
        R::Pgid => short_answer(k, f, R::Pgid),
        R::Root => short_answer(k, f, R::Root),
        R::SetTidAddress => short_answer(k, f, R::SetTidAddress),
        R::SetRobustList => short_answer(k, f, R::SetRobustList),
        R::Rseq => short_answer(k, f, R::Rseq),
        R::Prlimit => short_reply(k, f, mem, |p, mem, _, a| {
            syscall::prlimit64_short(p, mem, a)
        }),
        R::Getrandom => short_reply(k, f, mem, |p, mem, host, a| {
            syscall::getrandom_short(p, mem, host, a)
        }),
        R::Readlink => short_reply_or::<_, { left::PATH }>(k, f, mem, |p, mem, _, a| {
            syscall::readlink_short(p, mem, a[0], a[1], a[2])
        }),
        R::Readlinkat => short_reply_or::<_, { left::PATH }>(k, f, mem, |p, mem, _, a| {
            syscall::readlink_short(p, mem, a[1], a[2], a[3])
        }),
        // glibc's fstat of a stdio fd; a path's stat (dirfd AT_FDCWD) or
        // another fd's goes to the full path at once.
        R::Newfstatat if f.rdi <= 2 => short_reply(k, f, mem, |p, mem, _, a| {
            syscall::newfstatat_short(p, mem, a)
        }),
        // An fstat of another fd (AT_EMPTY_PATH) opens nothing; a host
        // file's is served here.
        R::Newfstatat if f.r10 & syscall::files::AT_EMPTY_PATH != 0 => short_fstat_host(k, f, mem),
        R::Newfstatat | R::Path => full_call_path(k, f, mem),
        R::Access => short_access(k, f, mem),
        R::Close => short_close(k, f, mem),
        R::Mprotect => short_mprotect(k, f, mem),
        // An anonymous mmap (flags, the fourth argument, in r10) has a
        // path of its own, with no fd table's and file's code in the way.
        R::Mmap if f.r10 & map::ANONYMOUS != 0 => short_mmap::<true>(k, f, mem),
        R::Mmap => short_mmap::<false>(k, f, mem),
        R::Munmap => short_munmap(k, f, mem),
        R::Write => short_write(k, f, mem),
        // A writev of the host's stdio (musl's stdio flushes with it) is
        // served in full, and opens its fast call.
        R::Writev if f.rdi <= 2 => full_call_stdio(k, f, mem, StdioCall::Writev),
        R::Writev => full_call(k, f, mem),
        // The host's stdio is at fds 0 to 2 (see `files::read_stdio`): a
        // read of another fd (a pipe's, a file's) goes to the full path at
        // once, which serves stdio moved elsewhere too.
        R::Read if f.rdi <= 2 => short_read(k, f, mem),
        R::Read => short_read_file(k, f, mem),
        // A read of more than a page (the count in rdx) goes to the full
        // path at once.
        R::Pread if f.rdx <= PAGE_SIZE => short_pread_file(k, f, mem),
        R::Pread => full_call(k, f, mem),
        // A new action changes nothing the checks of `Kernel::run` look
        // at (no signal becomes deliverable by it).
        R::Sigaction => short_reply(k, f, mem, |p, mem, _, a| {
            syscall::signal::rt_sigaction_short(p, mem, a)
        }),
        // A WNOHANG wait (its options in rdx) may find no child at all: a
        // blocking one has a child to wait for, and goes to the full path
        // at once.
        R::Wait4 if f.rdx & syscall::task::wopt::WNOHANG != 0 => short_wait4(k, f, mem),
        R::Wait4 => full_call(k, f, mem),
        // F_GETFD, F_SETFD and F_GETFL here, with the fast-call table left
        // open (they change nothing it relies on); the rest as the other
        // calls that keep it open.
        R::Fcntl => short_reply_or::<_, { left::NEUTRAL }>(k, f, mem, |p, _, _, a| {
            syscall::fcntl_short(p, a[0], a[1], a[2])
        }),
        // The read that ends a host directory's listing (the host said no
        // entry follows: `du`, `find` and `ls` make one a directory).
        R::Getdents => short_reply_or::<_, { left::NEUTRAL }>(k, f, mem, |p, _, _, a| {
            syscall::getdents_end_short(p, a[0])
        }),
        R::Neutral => full_call_neutral(k, f, mem),
    }
}

/// A call that usually changes nothing an opening of the fast-call table
/// relies on (open, openat, getdents64, lseek, fstat, fcntl), served in
/// full as [`full_call`] serves a call, but with the table left open;
/// after it the table is closed if `syscall::keeps_fast_calls` says this
/// one did change something, and a directory it opened or dupped is
/// published for the calls of a path if they are open. `du` and `find`
/// read a directory, open the next and ask fcntl about it between the
/// stats of its entries, Python opens and reads a module between the
/// stats of its search: with the table closed by each of those calls, the
/// next stat entered the kernel to open it again. A call that leaves its
/// action to the loop (it blocks, or a signal is to be delivered) has the
/// table closed there, as every entry but a short call has.
#[inline(never)]
fn full_call_neutral(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    full_call_in::<true>(k, f, mem)
}

/// After [`full_call_neutral`]'s call `nr` (first three arguments `a`)
/// returned `ret` to process `p`: the fast-call table closed unless the
/// call kept what its openings rely on, and a directory it opened or
/// dupped published while the calls of a path are open.
#[inline(always)]
fn keep_fast_calls(p: &Process, mem: &mut DirectMap, nr: u64, a: [u64; 3], ret: i64) {
    use guest_kernel::mm::phys::PhysMem;
    if !syscall::keeps_fast_calls(nr, a[0], a[1], ret) {
        close_fast_calls(mem);
        return;
    }
    if syscall::may_make_dir_fd(nr, a[1], a[2], ret) {
        let shift = 8 * (trampoline::PATH_BYTE - trampoline::WRITEV_BYTES);
        if mem.read_u64(FAST_TABLE_WRITEV) >> shift & u64::from(trampoline::OPEN) != 0 {
            publish_dirfd(p, mem, ret as u64);
        }
    }
}

/// wait4 on [`short_call`]'s path: the ECHILD of a caller with no child
/// to wait for answered (`syscall::task::wait4_short`), nothing else
/// done; any other wait takes the full path.
#[inline(never)]
fn short_wait4(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    let Some(p) = k.process.0.as_deref() else {
        return false;
    };
    if p.alarm_at.is_some() || f.rcx >= TASK_SIZE {
        return false;
    }
    match syscall::task::wait4_short(&k.tasks, p, f.rdi, f.rdx) {
        Some(v) => {
            short_return(f, v);
            true
        }
        None => full_call(k, f, mem),
    }
}

/// read of the host's stdio on [`short_call`]'s path (out of line, as
/// [`short_brk`]): the read done and its answer returned
/// (`syscall::read_short`); an error the full path acts on is acted on as
/// [`full_call`] would; any other read, untouched, takes the full path.
#[inline(never)]
extern "C" fn short_read(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    let Some(p) = k.process.0.as_deref() else {
        return false;
    };
    if p.alarm_at.is_some() || f.rcx >= TASK_SIZE {
        return false;
    }
    match syscall::read_short(p, mem, &mut k.host, [f.rdi, f.rsi, f.rdx]) {
        Some(Ok(v)) => {
            if k.fast_calls {
                open_read_fast_call(k.info.flags, p, mem, f.rdi, k.host.last_stream);
            }
            short_return(f, v);
            true
        }
        Some(Err(e)) => serve_in_full(k, f, mem, |_, _| syscall::result_action(Err(e))),
        None => full_call_stdio(k, f, mem, StdioCall::Read),
    }
}

/// Open reads of `fd` from the host's stdio stream `stream` to the fast
/// call ([`open_fast_call`]); a read of fd 0 from the host's stdin to the
/// stdin ring too, where the VMM turned it on (kvm_pvm, a pipe).
#[inline(always)]
fn open_read_fast_call(flags: u32, p: &Process, mem: &mut DirectMap, fd: u64, stream: u64) {
    let on = boot_flags::STDIN_RING | boot_flags::PLATFORM_PVM;
    let ring = if fd == 0 && stream == 0 && flags & on == on {
        u64::from(trampoline::RING)
    } else {
        0
    };
    open_fast_call(p, mem, fd, false, stream | ring);
}

/// Which stdio call [`full_call_stdio`] serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StdioCall {
    Read,
    Write,
    Writev,
}

/// A read (or a write) that [`short_read`] (or [`short_write`]) left to
/// the full path, or a writev of fds 0 to 2, served there; if it was one
/// of the host's stdio through fds 0 to 2 (in a buffer over more pages
/// than the short path looks at) and it went well, its fast call is
/// opened as the short path opens a read's or a write's: the VMM serves a
/// buffer over any pages, and a writev, so the next such call enters the
/// kernel no more. The full path closed the fast-call table; what was
/// open before is open again after such a call, which changed nothing an
/// opening relies on (the fds, the task, its page-table root; an alarm or
/// a signal makes the full path leave the call to the loop, which keeps
/// it closed). Else a program that reads and writes large buffers in turn
/// (`cat`) would close one direction with the other at every call.
#[inline(never)]
fn full_call_stdio(
    k: &mut Kernel,
    f: &mut TrapFrame,
    mem: &mut DirectMap,
    call: StdioCall,
) -> bool {
    use guest_kernel::mm::phys::PhysMem;
    let fd = f.rdi;
    let table = [mem.read_u64(FAST_TABLE), mem.read_u64(FAST_TABLE_WRITEV)];
    let served = match call {
        StdioCall::Write => full_call_write_file(k, f, mem),
        StdioCall::Read | StdioCall::Writev => full_call(k, f, mem),
    };
    if !served || !k.fast_calls || fd > 2 || (f.rax as i64) < 0 {
        return served;
    }
    let Some(p) = k.process.0.as_deref() else {
        return served;
    };
    if let Some(stream) = syscall::files::stdio_stream(p, fd, call != StdioCall::Read) {
        mem.write_u64(FAST_TABLE, table[0]);
        mem.write_u64(FAST_TABLE_WRITEV, table[1]);
        match call {
            StdioCall::Read => open_read_fast_call(k.info.flags, p, mem, fd, stream),
            StdioCall::Write => open_fast_call(p, mem, fd, true, stream),
            StdioCall::Writev => open_fast_call_at(p, mem, FAST_TABLE_WRITEV, fd, stream),
        }
    }
    served
}

/// A call of a path (newfstatat, statx, readlink, readlinkat, getxattr,
/// lgetxattr, access, faccessat, faccessat2) that the short path does not
/// serve, served in full; then
/// the calls of a path are opened to the VMM's fast call
/// (`trampoline::PATH_BYTE`), with the working directory published for
/// it, and the call's dirfd if it named a directory ([`publish_dirs`]):
/// the VMM serves the next of a path that the host resolves (a lookup the
/// kernel only passes on) and declines the others. Not after a call the
/// kernel served without the host, or by another fd (an fstat): the VMM
/// would decline the next such. The table
/// is put back as it was before, and stays open across such calls: none
/// changes anything an opening relies on (see [`full_call_stdio`]).
/// Python stats every file its imports look for, `ls -l` each file it
/// lists (and asks for its extended attributes, and reads its link), `du`
/// each entry of a directory by its fd, in runs.
#[inline(never)]
fn full_call_path(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    use guest_kernel::mm::phys::PhysMem;
    use syscall::nr;
    let table = [mem.read_u64(FAST_TABLE), mem.read_u64(FAST_TABLE_WRITEV)];
    let dirfd = match f.rax {
        nr::NEWFSTATAT | nr::STATX | nr::READLINKAT | nr::FACCESSAT | nr::FACCESSAT2 => f.rdi,
        _ => syscall::files::AT_FDCWD as u64,
    };
    // The call's request to the host, if it makes one: a path the kernel
    // served itself (in /proc or /dev, or landing there) opens nothing, as
    // the VMM would decline the next such.
    use guest_kernel::fs::host::FsHost;
    use vmrun_contract::fs::{op, SYNTHETIC};
    k.fs.req().op = 0;
    let served = full_call(k, f, mem);
    if !served || !k.fast_calls {
        return served;
    }
    let r = k.fs.req();
    let by_host = matches!(r.op, op::STAT | op::READLINK | op::ACCESS) && r.out_handle != SYNTHETIC;
    let Some(p) = k.process.0.as_deref().filter(|_| by_host) else {
        return served;
    };
    if !publish_dirs(p, mem, dirfd) {
        return served;
    }
    mem.write_u64(FAST_TABLE, table[0]);
    mem.write_u64(FAST_TABLE_WRITEV, table[1]);
    let byte = trampoline::PATH_BYTE - trampoline::WRITEV_BYTES;
    open_fast_call_at(p, mem, FAST_TABLE_WRITEV, byte, 0);
    served
}

/// access of an absolute host path on [`short_call`]'s path: served by
/// `syscall::access_short` with the host's file service, and the fast
/// call of the calls of a path opened after it as [`full_call_path`]
/// opens it after a call the host served; any other access, untouched, by
/// `full_call_path`.
#[inline(never)]
extern "C" fn short_access(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    use guest_kernel::fs::host::FsHost;
    let Some(p) = k.process.0.as_deref() else {
        return false;
    };
    if p.alarm_at.is_some() || f.rcx >= TASK_SIZE {
        return false;
    }
    let Some(v) = syscall::access_short(p, mem, &mut k.fs, f.rdi, f.rsi) else {
        return full_call_path(k, f, mem);
    };
    let by_host = k.fs.req().out_handle != vmrun_contract::fs::SYNTHETIC;
    if k.fast_calls && by_host && publish_dirs(p, mem, syscall::files::AT_FDCWD as u64) {
        let byte = trampoline::PATH_BYTE - trampoline::WRITEV_BYTES;
        open_fast_call_at(p, mem, FAST_TABLE_WRITEV, byte, 0);
    }
    short_return(f, v);
    true
}

/// Publish for the fast call of a path what process `p` resolves a
/// relative path from: its working directory (contract `FAST_CWD_PHYS`:
/// length 0, none, if longer than `FAST_CWD_MAX`) and, unless `dirfd` is
/// `AT_FDCWD`, that fd's directory (`FAST_DIRFD_PHYS`). False (nothing
/// to open) if `dirfd` is no directory with a path that fits.
#[inline(always)]
fn publish_dirs(p: &Process, mem: &mut DirectMap, dirfd: u64) -> bool {
    use guest_kernel::mm::phys::PhysMem;
    use vmrun_contract::layout::{FAST_CWD_MAX, FAST_CWD_PHYS};
    if dirfd as i32 as i64 != syscall::files::AT_FDCWD && !publish_dirfd(p, mem, dirfd) {
        return false;
    }
    let cwd: &[u8] = &p.cwd;
    if cwd.len() as u64 > FAST_CWD_MAX {
        mem.write_u64(FAST_CWD_PHYS, 0);
        return true;
    }
    mem.write_bytes(FAST_CWD_PHYS + 8, cwd);
    mem.write_u64(FAST_CWD_PHYS, cwd.len() as u64);
    true
}

/// Publish `dirfd` of process `p` in its slot for the fast call of a path
/// (contract `fast_dirfd_slot`): its number and its directory's path.
/// False (nothing written) if it is no directory, or one whose path does
/// not fit.
#[inline(always)]
fn publish_dirfd(p: &Process, mem: &mut DirectMap, dirfd: u64) -> bool {
    use guest_kernel::mm::phys::PhysMem;
    use vmrun_contract::layout::{fast_dirfd_slot, FAST_DIRFD_MAX};
    let Ok(entry) = p.fds.get(dirfd) else {
        return false;
    };
    let file = entry.file.borrow();
    if !file.node.is_dir() {
        return false;
    }
    let dir = file.node.path();
    if dir.len() as u64 > FAST_DIRFD_MAX {
        return false;
    }
    let slot = fast_dirfd_slot(dirfd);
    mem.write_bytes(slot + 16, dir);
    mem.write_u64(slot + 8, dir.len() as u64);
    mem.write_u64(slot, dirfd + 1);
    true
}

/// read of a regular file from the page cache on [`short_call`]'s path
/// (out of line, as [`short_brk`]): served by
/// `files::read_cached_short`, else, untouched, by the full path.
#[inline(never)]
extern "C" fn short_read_file(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    let Some(p) = k.process.0.as_deref() else {
        return false;
    };
    if p.alarm_at.is_some() || f.rcx >= TASK_SIZE {
        return false;
    }
    match syscall::files::read_cached_short(p, &k.cache, mem, f.rdi, f.rsi, f.rdx) {
        Some(n) => {
            short_return(f, n as i64);
            true
        }
        None => full_call(k, f, mem),
    }
}

/// pread64 of a regular file from the page cache on [`short_call`]'s path,
/// as [`short_read_file`]: served by `files::pread64_cached_short`, else,
/// untouched, by the full path.
#[inline(never)]
extern "C" fn short_pread_file(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    let Some(p) = k.process.0.as_deref() else {
        return false;
    };
    if p.alarm_at.is_some() || f.rcx >= TASK_SIZE {
        return false;
    }
    let a = [f.rdi, f.rsi, f.rdx, f.r10];
    match syscall::files::pread64_cached_short(p, &k.cache, mem, a) {
        Some(n) => {
            short_return(f, n as i64);
            true
        }
        None => full_call(k, f, mem),
    }
}

/// close of a host file's fd on [`short_call`]'s path: served by
/// `files::close_short` with the page cache and the host's file service,
/// else, untouched, by the full path.
#[inline(never)]
extern "C" fn short_close(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    let Some(p) = k.process.0.as_deref_mut() else {
        return false;
    };
    if p.alarm_at.is_some() || f.rcx >= TASK_SIZE {
        return false;
    }
    match syscall::files::close_short(p, &mut k.cache, &mut k.fs, f.rdi) {
        Some(v) => {
            forget_published_dirfd(mem, f.rdi);
            short_return(f, v);
            true
        }
        None => full_call(k, f, mem),
    }
}

/// A close of `fd` on the short path, which leaves the fast-call table
/// open: if `fd` is the directory fd published for the calls of a path
/// ([`publish_dirs`]), it is published no more, so that the VMM declines
/// a path relative to it, which the kernel then resolves from whatever
/// the number names next (an open after the close may take it, and
/// [`full_call_neutral`] keeps the table open across that open).
#[inline(always)]
fn forget_published_dirfd(mem: &mut DirectMap, fd: u64) {
    use guest_kernel::mm::phys::PhysMem;
    let slot = vmrun_contract::layout::fast_dirfd_slot(fd);
    if mem.read_u64(slot) == fd.wrapping_add(1) {
        mem.write_u64(slot, 0);
    }
}

/// fstat (newfstatat with `AT_EMPTY_PATH`) of a host file on
/// [`short_call`]'s path, as [`short_pread_file`]: served by
/// `syscall::newfstatat_host_short` with the host's file service, else by
/// the full path.
#[inline(never)]
extern "C" fn short_fstat_host(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    let Some(p) = k.process.0.as_deref() else {
        return false;
    };
    if p.alarm_at.is_some() || f.rcx >= TASK_SIZE {
        return false;
    }
    let a = [f.rdi, f.rsi, f.rdx, f.r10];
    match syscall::newfstatat_host_short(p, mem, &mut k.fs, a) {
        Some(v) => {
            short_return(f, v);
            true
        }
        None => full_call(k, f, mem),
    }
}

/// write to the host's stdio on [`short_call`]'s path (out of line, as
/// [`short_brk`]): the write done and its answer returned
/// (`syscall::write_short`); an error that asks for more (EPIPE's
/// SIGPIPE) is acted on as [`full_call`] acts on a call's result
/// ([`full_call_after_write`]); any other write, untouched, goes on
/// past the stdio test on the full path ([`full_call_write_file`]).
#[inline(never)]
extern "C" fn short_write(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    let Some(p) = k.process.0.as_deref() else {
        return false;
    };
    if p.alarm_at.is_some() || f.rcx >= TASK_SIZE {
        return false;
    }
    match syscall::write_short(p, mem, &mut k.host, [f.rdi, f.rsi, f.rdx]) {
        Some(Ok(v)) => {
            if k.fast_calls && f.rdi <= 2 {
                open_fast_call(p, mem, f.rdi, true, k.host.last_stream);
            }
            short_return(f, v);
            true
        }
        Some(Err(e)) => full_call_after_write(k, f, mem, e),
        None => full_call_stdio(k, f, mem, StdioCall::Write),
    }
}

/// A write that [`short_write`] left to the full path, served there as
/// the dispatcher serves it past its stdio test, which found nothing to do
/// (`files::write_file`).
#[inline(never)]
fn full_call_write_file(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    serve_in_full(k, f, mem, |cx, f| {
        let r = syscall::files::write_file(cx, f.rdi, f.rsi, f.rdx);
        syscall::write_ret(cx, r)
    })
}

/// A call on [`short_call`]'s path that the address space serves alone
/// (with the fds and the page cache for a file's mmap): `serve` answers it
/// from the running process and its memory, or gives None to have the
/// full path serve it; the answer goes back to the program with the one
/// check of `Kernel::run` such a call needs, the TLB flush (it raises no
/// signal and sets no FS or GS base). With the VMA changes journaled for
/// the trace, the full path serves it (and hands them over). In line in
/// each call's own out-of-line copy.
#[inline(always)]
fn short_mm_call(
    k: &mut Kernel,
    f: &mut TrapFrame,
    mem: &mut DirectMap,
    serve: impl FnOnce(&mut Process, &mut MmEnv<'_, DirectMap>, &TrapFrame) -> Option<i64>,
) -> bool {
    let Some(p) = k.process.0.as_deref_mut() else {
        return false;
    };
    if p.alarm_at.is_some() || f.rcx >= TASK_SIZE {
        return false;
    }
    if p.mm.vmas.journaling() {
        return full_call(k, f, mem);
    }
    let mut env = MmEnv {
        mem,
        frames: &mut k.frames,
        cache: &mut k.cache,
        host: &mut k.fs,
    };
    let Some(v) = serve(p, &mut env, f) else {
        return full_call(k, f, mem);
    };
    flush_tlb_of(p, env.mem);
    short_return(f, v);
    true
}

/// mprotect on [`short_call`]'s path (out of line, as [`short_brk`]):
/// served by the address space alone (`syscall::mprotect_short`; see
/// [`short_mm_call`]).
#[inline(never)]
extern "C" fn short_mprotect(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    short_mm_call(k, f, mem, |p, env, f| {
        Some(syscall::mprotect_short(
            &mut p.mm,
            env,
            [f.rdi, f.rsi, f.rdx],
        ))
    })
}

/// mmap on [`short_call`]'s path (out of line, as [`short_brk`]; one
/// copy for an anonymous mapping, `ANON`, and one for a file's): served
/// by the fds, the address space and the page cache alone
/// (`syscall::mmap_short`; an anonymous one by the address space,
/// `syscall::mmap_anon_short`; see [`short_mm_call`]).
#[inline(never)]
fn short_mmap<const ANON: bool>(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    short_mm_call(k, f, mem, |p, env, f| {
        let a = [f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9];
        Some(match ANON {
            true => syscall::mmap_anon_short(&mut p.mm, env, a),
            false => syscall::mmap_short(p, env, a),
        })
    })
}

/// munmap on [`short_call`]'s path (out of line, as [`short_brk`]): served
/// by the address space alone when no mapped file is open for writing
/// (`syscall::munmap_short`; else [`full_call`] writes back first; see
/// [`short_mm_call`]).
#[inline(never)]
extern "C" fn short_munmap(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    short_mm_call(k, f, mem, |p, env, f| {
        syscall::munmap_short(p, env, [f.rdi, f.rsi])
    })
}

/// A call that reads the caller's state (or the host's random bytes) into
/// one user buffer, or sets a signal action from one, on [`short_call`]'s
/// path: `serve` answers it from the running process, memory, the host and
/// the call's first four arguments when its buffers lie in pages mapped as
/// the call needs (no fault to resolve, so nothing the checks of
/// `Kernel::run` look at changes), or gives None, having done nothing, and
/// [`full_call`] serves it ([`short_reply_or`], out of line).
#[inline(always)]
fn short_reply<F>(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap, serve: F) -> bool
where
    F: FnOnce(&mut Process, &mut DirectMap, &mut Host, [u64; 4]) -> Option<i64>,
{
    short_reply_or::<F, { left::FULL }>(k, f, mem, serve)
}

/// Which full path serves what [`short_reply_or`]'s `serve` leaves.
mod left {
    /// [`super::full_call`].
    pub const FULL: u8 = 0;
    /// [`super::full_call_path`]: a call of a path.
    pub const PATH: u8 = 1;
    /// [`super::full_call_neutral`]: a call that keeps the fast-call
    /// table open.
    pub const NEUTRAL: u8 = 2;
}

/// [`short_reply`], with what `serve` leaves served by the full path
/// `LEFT` names ([`left`]). Out of line, one copy per call, as
/// [`short_brk`].
#[inline(never)]
fn short_reply_or<F, const LEFT: u8>(
    k: &mut Kernel,
    f: &mut TrapFrame,
    mem: &mut DirectMap,
    serve: F,
) -> bool
where
    F: FnOnce(&mut Process, &mut DirectMap, &mut Host, [u64; 4]) -> Option<i64>,
{
    let Some(p) = k.process.0.as_deref_mut() else {
        return false;
    };
    if p.alarm_at.is_some() || f.rcx >= TASK_SIZE {
        return false;
    }
    let Some(v) = serve(p, mem, &mut k.host, [f.rdi, f.rsi, f.rdx, f.r10]) else {
        return match LEFT {
            left::PATH => full_call_path(k, f, mem),
            left::NEUTRAL => full_call_neutral(k, f, mem),
            _ => full_call(k, f, mem),
        };
    };
    short_return(f, v);
    true
}

/// An identity or own-state call (`route`) on [`short_call`]'s path: the
/// checks come before `ShortRoute::own_state` changes anything.
#[inline(always)]
fn short_answer(k: &mut Kernel, f: &mut TrapFrame, route: ShortRoute) -> bool {
    let Some(p) = k.process.0.as_deref_mut() else {
        return false;
    };
    if p.alarm_at.is_some() || f.rcx >= TASK_SIZE {
        // A bad return address: the full path kills the program.
        return false;
    }
    let v = match route.identity(p) {
        Some(v) => v,
        None => match route.own_state(p, [f.rdi, f.rsi]) {
            Some(v) => v,
            None => return false,
        },
    };
    short_return(f, v);
    true
}

/// Any system call but the short ones, sigreturn and sigaltstack, served on
/// [`short_call`]'s stack: counted and dispatched as `Kernel::syscall`
/// does, and if it returns a value with no signal to deliver, back to the
/// program with the checks of `Kernel::run` on the way
/// (`Kernel::ready_user_mode`), without the rest of the frame saved and
/// restored and the loop's round. Any other action (a block, a spawn, an
/// exit...) or a signal to deliver is left in `Kernel::served` for the
/// loop, with the frame as it was. A bad return address and an armed
/// alarm go to the loop before anything is done (and exit_group, see
/// [`short_exit`]).
#[inline(never)]
fn full_call(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    full_call_in::<false>(k, f, mem)
}

/// [`full_call`], or with `KEEP` [`full_call_neutral`]: the fast-call
/// table closed first, or left open and closed after the call unless it
/// kept what the table's openings rely on ([`keep_fast_calls`]).
#[inline(always)]
fn full_call_in<const KEEP: bool>(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    let nr = f.rax;
    let Some(p) = k.process.0.as_deref_mut() else {
        return false;
    };
    if f.rcx >= TASK_SIZE || p.alarm_at.is_some() {
        return false;
    }
    if !KEEP {
        close_fast_calls(mem);
    }
    k.stats.syscalls += 1;
    p.blocked_nr = None;
    let mut env = MmEnv {
        mem,
        frames: &mut k.frames,
        cache: &mut k.cache,
        host: &mut k.fs,
    };
    let mut cx = Ctx {
        p,
        env: &mut env,
        host: &mut k.host,
        tasks: &mut k.tasks,
    };
    let action = syscall::dispatch_in_line(&mut cx, nr, f.syscall_args());
    let p = cx.p;
    match action {
        Action::Return(v) if p.next_signal().is_none() => {
            // A plain return holds nothing: forgotten, as the drop glue
            // of an action is a call.
            core::mem::forget(action);
            if KEEP {
                keep_fast_calls(p, env.mem, nr, [f.rdi, f.rsi, f.rdx], v);
            }
            ready_user_mode(p, env.mem);
            sysret_frame(f, v);
            k.ticks_after_call(mem);
            true
        }
        action => {
            // Stored before the old one (none, as the loop took it) is
            // dropped: the action's registers need not outlive a call.
            drop(k.served.replace(action));
            false
        }
    }
}

/// The error `e` of a write that [`short_write`] did, acted on as
/// [`full_call`] acts on the call's result (`syscall::write_ret`: EPIPE
/// sends SIGPIPE). Out of line: rare.
#[inline(never)]
fn full_call_after_write(
    k: &mut Kernel,
    f: &mut TrapFrame,
    mem: &mut DirectMap,
    e: guest_kernel::errno::Errno,
) -> bool {
    serve_in_full(k, f, mem, |cx, _| syscall::write_ret(cx, Err(e)))
}

/// [`full_call`] with the call served by `serve`, given the context and
/// the user frame: where [`short_write`] leaves a write to the full path.
/// (`full_call` spells the same steps out rather than being this with
/// the dispatcher: as that, it takes an instruction more on every call's
/// way back.)
#[inline(always)]
fn serve_in_full<F>(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap, serve: F) -> bool
where
    F: FnOnce(&mut Ctx<'_, '_, '_, DirectMap, Host>, &TrapFrame) -> Action,
{
    let Some(p) = k.process.0.as_deref_mut() else {
        return false;
    };
    if f.rcx >= TASK_SIZE || p.alarm_at.is_some() {
        return false;
    }
    close_fast_calls(mem);
    k.stats.syscalls += 1;
    p.blocked_nr = None;
    let mut env = MmEnv {
        mem,
        frames: &mut k.frames,
        cache: &mut k.cache,
        host: &mut k.fs,
    };
    let mut cx = Ctx {
        p,
        env: &mut env,
        host: &mut k.host,
        tasks: &mut k.tasks,
    };
    let action = serve(&mut cx, f);
    let p = cx.p;
    match action {
        Action::Return(v) if p.next_signal().is_none() => {
            // A plain return holds nothing: forgotten, as the drop glue
            // of an action is a call.
            core::mem::forget(action);
            ready_user_mode(p, env.mem);
            sysret_frame(f, v);
            k.ticks_after_call(mem);
            true
        }
        action => {
            // Stored before the old one (none, as the loop took it) is
            // dropped: the action's registers need not outlive a call.
            drop(k.served.replace(action));
            false
        }
    }
}

/// brk on [`short_call`]'s path (out of line, so that the identity calls'
/// path saves no registers).
#[inline(never)]
extern "C" fn short_brk(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    let Some(p) = k.process.0.as_deref_mut() else {
        return false;
    };
    if p.alarm_at.is_some() || f.rcx >= TASK_SIZE {
        return false;
    }
    let ram_pages = RAM_PAGES.load(Ordering::Relaxed);
    let Some(v) = syscall::brk_short(p, f.rdi, ram_pages) else {
        return full_call(k, f, mem);
    };
    trap::publish_brk(p.mm.brk);
    short_return(f, v);
    true
}

/// arch_prctl's SET_FS and SET_GS on [`short_call`]'s path (out of line,
/// as [`short_brk`]): the new base is loaded here, as the full path's
/// return would load it.
#[inline(never)]
extern "C" fn short_bases(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    let Some(p) = k.process.0.as_deref_mut() else {
        return false;
    };
    if p.alarm_at.is_some() || f.rcx >= TASK_SIZE {
        return false;
    }
    let Some(v) = syscall::set_base(p, f.rdi, f.rsi) else {
        return full_call(k, f, mem);
    };
    load_bases(p);
    short_return(f, v);
    true
}

/// Load the process's FS and GS bases into the CPU if they changed.
#[inline(always)]
fn load_bases(p: &mut Process) {
    if p.bases_changed {
        cpu::wrmsr(cpu::MSR_FS_BASE, p.fs_base);
        cpu::wrmsr(cpu::MSR_GS_BASE, p.gs_base);
        p.bases_changed = false;
    }
}

/// exit_group on [`short_call`]'s path: pid 1's ends the run here, as the
/// loop's full path would (`Kernel::exit`), counted as it counts it, but
/// without the rest of the frame saved and the loop's round: `end_run`
/// never returns and reads none of the registers the stub left unsaved.
/// Any other process's exit goes to [`full_call`], which leaves its action
/// to the loop (a zombie, another task to run); so the call is a jump from
/// [`short_call`], whose answer is never a constant false. Out of line, so
/// that [`short_call`]'s other calls keep a path with no stack frame.
#[inline(never)]
fn short_exit(k: &mut Kernel, f: &mut TrapFrame, mem: &mut DirectMap) -> bool {
    if k.process.tgid != guest_kernel::process::INIT_PID {
        return full_call(k, f, mem);
    }
    k.stats.syscalls += 1;
    k.end_run(mem, exit_kind::EXITED, f.rdi & 0xff, [0; 4])
}

/// The fast-call table in the trampoline page (`trampoline::TABLE`).
const FAST_TABLE: u64 = SYSCALL_TRAMPOLINE_PHYS + trampoline::TABLE;

/// The word of the table that holds its `writev` bytes.
const FAST_TABLE_WRITEV: u64 = FAST_TABLE + trampoline::WRITEV_BYTES;

/// Withdraw every call the fast-call table opened. Every kernel entry but
/// the short path's calls does it first (`Kernel::run`'s loop,
/// [`full_call`], [`serve_in_full`]): only such an entry can change what
/// the table's opening relied on (what fds 0 to 2 are, the running task
/// and its page tables, an alarm that makes every call take the full
/// path). One store.
#[inline(always)]
fn close_fast_calls(mem: &mut DirectMap) {
    use guest_kernel::mm::phys::PhysMem;
    mem.write_u64(FAST_TABLE, 0);
    mem.write_u64(FAST_TABLE_WRITEV, 0);
}

/// Open `fd`'s reads (or writes, `write`) to the VMM's fast call
/// (contract `trampoline`), once the short path has served one of them
/// through the host's stdio stream `stream`: the stream in the
/// trampoline's table, and the running task's page-table root in the
/// stats page, through which the VMM finds the buffers. Until
/// [`close_fast_calls`], the trampoline offers the VMM each such call,
/// which it serves as `files::read_stdio` or `write_stdio` would (its
/// buffer mapped as the call needs, no error) or declines, leaving it to
/// the kernel. Already open, as when the VMM declined the call (an
/// unmapped buffer, an error, a single-stepped run), it costs a test.
#[inline(always)]
fn open_fast_call(p: &Process, mem: &mut DirectMap, fd: u64, write: bool, stream: u64) {
    open_fast_call_at(p, mem, FAST_TABLE, fd + if write { 4 } else { 0 }, stream);
}

/// Open byte `byte` of the table word at `word` for the host's stdio
/// stream `stream` (see [`open_fast_call`]).
#[inline(always)]
fn open_fast_call_at(p: &Process, mem: &mut DirectMap, word: u64, byte: u64, stream: u64) {
    use guest_kernel::mm::phys::PhysMem;
    let shift = 8 * byte;
    let table = mem.read_u64(word);
    if table >> shift & u64::from(trampoline::OPEN) == 0 {
        let open = (u64::from(trampoline::OPEN) | stream) << shift;
        mem.write_u64(STATS_PHYS + FAST_CR3_OFFSET, p.mm.pt.root());
        mem.write_u64(word, table | open);
    }
}

/// Return `v` from the system call in `f` as SYSRET would, counting the
/// call.
#[inline(always)]
fn short_return(f: &mut TrapFrame, v: i64) {
    sysret_frame(f, v);
    SHORT_CALLS.store(SHORT_CALLS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Return `v` from the system call in `f` as SYSRET would (the return
/// address checked by the caller).
#[inline(always)]
fn sysret_frame(f: &mut TrapFrame, v: i64) {
    f.rax = v as u64;
    f.rip = f.rcx;
    f.rflags = (f.r11 & USER_RFLAGS_MASK) | RFLAGS_FIXED;
    f.cs = u64::from(gdt::USER_CS);
    f.ss = u64::from(gdt::USER_DS);
}

/// The syscall handler when calls take the full path (see
/// `Kernel::calls_short`).
extern "C" fn no_short_path(_: &mut Kernel, _: &mut TrapFrame, _: &mut DirectMap) -> bool {
    false
}

/// The fault handler while faults are watched: every fault takes the
/// loop's path (`Kernel::page_fault`), which traces it and stops for the
/// host.
extern "C" fn no_fast_fault(_: &mut Kernel, _: u64, _: &mut DirectMap, _: u64) -> bool {
    false
}

/// A page fault at `addr` with `error` from user mode: the arch layer's
/// fault entry calls it before saving the whole frame (see
/// `UserMode::run`). A fault in the user half is counted and resolved
/// here; if that is all (`FaultEnd::Quiet`: no signal, no stop, no area
/// grew), the program retries the instruction at once, without the checks
/// of `Kernel::run` on the way back: nothing they look at changed.
/// Anything else is left in `Kernel::fault_left` for the loop. A fault in
/// the kernel half (a call into the vsyscall page among them, whose
/// emulation rewrites the frame) goes to the loop untouched
/// (`Kernel::page_fault`). Armed unless faults are watched (see
/// `Kernel::watch_faults`).
extern "C" fn fast_fault(k: &mut Kernel, error: u64, mem: &mut DirectMap, addr: u64) -> bool {
    if addr >= TASK_SIZE {
        return false;
    }
    k.count_fault();
    let end = match k.with_env(mem, |p, env| p.mm.handle_page_fault(env, addr, error)) {
        Ok(out) if !out.stack_grown => return true,
        Ok(_) => FaultEnd::Checks,
        Err(e) => FaultEnd::Failed(e),
    };
    k.fault_left = Some(end);
    false
}

/// System calls served by [`short_call`] (one CPU: a plain load and
/// store), counted with `Kernel::stats.syscalls` where entries count.
static SHORT_CALLS: AtomicU64 = AtomicU64::new(0);

/// The RAM in pages, for the overcommit check of a brk that
/// [`short_call`] serves (set when the kernel starts running programs).
static RAM_PAGES: AtomicU64 = AtomicU64::new(0);

/// What is left of a page fault once [`fast_fault`] or
/// `Kernel::page_fault` resolved it (or found it unresolvable) without the
/// user-mode token.
#[derive(Clone, Copy)]
enum FaultEnd {
    /// Resolved and nothing else happened: no signal, no stop, no area
    /// grew (a VMA trace record to flush), so user mode resumes without
    /// the loop's checks.
    Quiet,
    /// Resolved (or not a fault): the loop's checks before user mode.
    Checks,
    /// Not resolved: a signal, a kill or the debugger's stop.
    Failed(FaultError),
    /// A call into the vsyscall page, system call `nr`.
    Vsyscall(u64),
}

/// The two registers a system call's return needs after the call.
#[derive(Clone, Copy)]
struct SyscallRegs {
    rax: u64,
    rcx: u64,
}

/// The checks before user mode past the signals, for the running process
/// `p`: its break where the syscall trampoline answers brk(0) from, new
/// FS/GS bases, a TLB flush, the VMA changes to trace.
#[inline(always)]
fn ready_user_mode(p: &mut Process, mem: &mut DirectMap) {
    trap::publish_brk(p.mm.brk);
    load_bases(p);
    flush_tlb_of(p, mem);
    flush_vma_journal_of(p, mem);
}

/// Flush the TLB of the running process `p` if its page tables changed in
/// a way that needs it.
#[inline(always)]
fn flush_tlb_of(p: &mut Process, mem: &mut DirectMap) {
    if p.mm.take_tlb_flush() {
        cpu::load_process_tables(&p.mm.pt);
        // The test in line: a call only when loads are traced.
        if trace::on(mem, category::PAGE_TABLES) {
            trace_cr3_of(p, mem);
        }
    }
}

/// Trace a CR3 load of `p`'s PML4.
fn trace_cr3_of(p: &Process, mem: &mut DirectMap) {
    let root = p.mm.pt.root();
    trace::emit(
        mem,
        category::PAGE_TABLES,
        kind::CR3_LOAD,
        0,
        [root, 0, 0, 0, 0, 0],
    );
}

/// Hand the VMA changes `p` journaled since the last call to the trace
/// (the test inline, as every return to user mode makes it).
#[inline(always)]
fn flush_vma_journal_of(p: &mut Process, mem: &mut DirectMap) {
    if trace::on(mem, category::VMAS) {
        trace_vma_journal(p, mem);
    }
}

#[cold]
#[inline(never)]
fn trace_vma_journal(p: &mut Process, mem: &mut DirectMap) {
    let lost = p.mm.vmas.take_journal(|c| {
        let (file, offset) = export::file_of(&c.vma);
        let a = [
            c.vma.start,
            c.vma.end,
            export::flags_of(&c.vma),
            file,
            offset,
            c.at,
        ];
        trace::emit(mem, category::VMAS, c.kind, 0, a);
    });
    if lost > 0 {
        mem.count_lost(lost);
    }
}

/// One TASK_STATE record: `aux` the thread id, then state, process id,
/// detail.
fn emit_task(mem: &mut DirectMap, c: lifecycle::Change) {
    let a = [c[1], c[2], c[3], 0, 0, 0];
    trace::emit(mem, category::TASKS, kind::TASK_STATE, c[0] as u32, a);
}

/// The trace's name for how a fault ended.
fn resolution_of(r: &Result<FaultOutcome, FaultError>) -> u64 {
    match r {
        Ok(o) => match o.kind {
            FaultKind::AnonZero => resolution::ZERO_FILL,
            FaultKind::AnonHuge => resolution::ZERO_FILL_HUGE,
            FaultKind::AnonBlock => resolution::ZERO_FILL_64K,
            FaultKind::FileMapped => resolution::FILE_MAP,
            FaultKind::FileCopied => resolution::FILE_COPY,
            FaultKind::FileCopiedBlock => resolution::FILE_COPY_64K,
            FaultKind::FileZero => resolution::FILE_ZERO,
            FaultKind::CopyOnWrite => resolution::COW,
            FaultKind::MadeWritable => resolution::MADE_WRITABLE,
            FaultKind::Spurious => resolution::SPURIOUS,
        },
        Err(FaultError::OutOfMemory) => resolution::OOM,
        Err(FaultError::PastEof) => resolution::SIGBUS,
        Err(FaultError::Segv(_)) => resolution::SIGSEGV,
    }
}

/// The kind of area `addr` lies in now (after a stack grew to it).
fn vma_kind(mm: &Mm, addr: u64) -> u64 {
    let Some(v) = mm.vmas.find(addr).and_then(|i| mm.vmas.get(i)) else {
        return vma_kind::NONE;
    };
    if v.flags.contains(VmFlags::GROWSDOWN) {
        vma_kind::STACK
    } else if v.start < mm.brk && v.end > mm.start_brk {
        vma_kind::HEAP
    } else if matches!(v.backing, Backing::File { .. }) {
        vma_kind::FILE
    } else {
        vma_kind::ANON
    }
}

fn log_unimplemented(nr: u64) {
    let mut m = guest_kernel::fmt::MsgBuf::<64>::new();
    m.str("system call ")
        .dec(nr)
        .str(" (")
        .str(syscall::name(nr))
        .str(") is not implemented: ENOSYS");
    hypercall::log(m.as_bytes());
}
