//! The kernel's main loop: run the program until it traps, serve the trap
//! (system call, page fault, or a fatal exception), repeat until it exits.

use crate::arch::phys::DirectMap;
use crate::arch::trap::{self, TrapFrame, UserMode};
use crate::arch::{cpu, gdt, hypercall};
use crate::host::{Host, HostFs};
use guest_kernel::fs::cache::PageCache;
use guest_kernel::mm::export;
use guest_kernel::mm::fault::{FaultError, FaultKind, FaultOutcome, SegvCode};
use guest_kernel::mm::frame::FrameAllocator;
use guest_kernel::mm::paging::KernelHalf;
use guest_kernel::mm::space::Mm;
use guest_kernel::mm::space::MmEnv;
use guest_kernel::mm::vma::{Backing, VmFlags};
use guest_kernel::process::exec::EntryState;
use guest_kernel::process::Process;
use guest_kernel::syscall::exec::ExecPlan;
use guest_kernel::syscall::{self, Action, Ctx};
use guest_kernel::trace::{self, category, kind};
use vmrun_contract::layout::{STATS_PHYS, TASK_SIZE};
use vmrun_contract::trace::exec_phase;
use vmrun_contract::trace::{resolution, vma_kind};
use vmrun_contract::{boot_flags, event, exit_kind, hc, BootInfo, GuestStats, BOOT_MAGIC};

use guest_kernel::signal::nr as sig;

/// RFLAGS bits user mode may set (CF PF AF ZF SF TF DF OF AC ID); IF and
/// the reserved bit 1 are forced on, IOPL/NT/RF/VM stay clear.
const USER_RFLAGS_MASK: u64 = 0x24_0dd5;
const RFLAGS_FIXED: u64 = 0x202;

/// Everything the kernel owns.
pub struct Kernel {
    /// The boot info, copied.
    pub info: BootInfo,
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
    /// The program.
    pub process: Process,
    /// Counters reported to the host.
    pub stats: GuestStats,
    /// Stdio, randomness and clocks for system calls.
    pub host: Host,
    /// `AT_HWCAP` and `AT_HWCAP2` for every exec.
    pub hwcap: (u64, u64),
    /// State of the generator of `AT_RANDOM` bytes for in-guest execs
    /// (seeded from the host's randomness at boot).
    pub random_state: u64,
    /// Whether the syscall entry path was logged (`-v`).
    syscall_entry_logged: bool,
    user: Option<UserMode>,
}

impl Kernel {
    /// The state before boot.
    pub const fn empty() -> Kernel {
        Kernel {
            info: BootInfo::zeroed(),
            frames: FrameAllocator::empty(),
            cache: PageCache::new(),
            fs: HostFs::empty(),
            kernel: KernelHalf::empty(),
            frames_kernel: 0,
            process: Process::empty(),
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
            },
            host: Host {
                tsc0: 0,
                tsc_khz: 0,
                realtime0: 0,
                monotonic0: 0,
            },
            hwcap: (0, 0),
            random_state: 0,
            syscall_entry_logged: false,
            user: None,
        }
    }

    /// Prepare user mode to start at `entry` with a fresh register file.
    pub fn enter_user(&mut self, entry: EntryState) {
        let Some(um) = self.user.take().or_else(UserMode::take) else {
            hypercall::panic(b"user mode token lost")
        };
        let um = self.user.insert(um);
        um.reset_fpu();
        *um.regs() = TrapFrame {
            rip: entry.ip,
            rsp: entry.sp,
            cs: u64::from(gdt::USER_CS),
            ss: u64::from(gdt::USER_DS),
            rflags: RFLAGS_FIXED,
            ..TrapFrame::default()
        };
        cpu::load_process_tables(&self.process.mm.pt);
    }

    /// The program is loaded: trace what exec did, and stop for the host
    /// if it asked to inspect each exec.
    pub fn exec_event(&mut self, mem: &mut DirectMap) {
        self.trace_cr3(mem);
        self.flush_vma_journal(mem);
        self.event(mem, event::EXEC, 0, 0);
    }

    /// Trace a CR3 load of the process's PML4.
    fn trace_cr3(&self, mem: &mut DirectMap) {
        let root = self.process.mm.pt.root();
        trace::emit(
            mem,
            category::PAGE_TABLES,
            kind::CR3_LOAD,
            0,
            [root, 0, 0, 0, 0, 0],
        );
    }

    /// Hand the VMA changes journaled since the last call to the trace.
    fn flush_vma_journal(&mut self, mem: &mut DirectMap) {
        if !trace::on(mem, category::VMAS) {
            return;
        }
        let lost = self.process.mm.vmas.take_journal(|c| {
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
            export::export_files(&self.process.mm, &self.cache, mem, at);
        }
        let mm = &self.process.mm;
        hypercall::call(
            hc::EVENT,
            [kind_, a, b, mm.user_frames, mm.user_table_pages(), 0],
        );
    }

    /// Run the program until it exits; never returns.
    pub fn run(&mut self, mem: &mut DirectMap) -> ! {
        loop {
            if self.process.bases_changed {
                cpu::wrmsr(cpu::MSR_FS_BASE, self.process.fs_base);
                cpu::wrmsr(cpu::MSR_GS_BASE, self.process.gs_base);
                self.process.bases_changed = false;
            }
            if self.process.mm.take_tlb_flush() {
                cpu::load_process_tables(&self.process.mm.pt);
                self.trace_cr3(mem);
            }
            self.flush_vma_journal(mem);
            let Some(um) = self.user.as_mut() else {
                hypercall::panic(b"no user context")
            };
            let t = um.run();
            let rip = um.regs().rip;
            match t.vector {
                _ if trap::is_syscall_entry(t.vector, rip) => {
                    self.note_syscall_entry(t.vector);
                    self.syscall(mem)
                }
                trap::SYSCALL_VECTOR => self.int80(),
                14 => self.page_fault(mem, t.fault_addr, t.error_code),
                v => self.exception(mem, v, t.error_code),
            }
        }
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
        if self.syscall_entry_logged || self.info.flags & boot_flags::VERBOSE == 0 {
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

    fn syscall(&mut self, mem: &mut DirectMap) {
        self.stats.syscalls += 1;
        // Only the registers a call uses: copying the whole frame costs an
        // emulated string instruction of 22 iterations.
        let (nr, args, ret_ip) = {
            let f = self.regs();
            (f.rax, [f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9], f.rcx)
        };
        let r = SyscallRegs {
            rax: nr,
            rcx: ret_ip,
        };
        trace::emit(
            mem,
            category::SYSCALLS,
            kind::SYSCALL_ENTER,
            r.rax as u32,
            args,
        );
        let t0 = timestamp(mem, category::SYSCALLS);
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
        };
        match syscall::dispatch(&mut cx, nr, args) {
            Action::Return(v) => {
                if v == ENOSYS && self.info.flags & boot_flags::VERBOSE != 0 {
                    log_unimplemented(r.rax);
                }
                if trace::on(mem, category::SYSCALLS) {
                    let a = [v as u64, cpu::rdtsc().wrapping_sub(t0), 0, 0, 0, 0];
                    trace::emit(mem, category::SYSCALLS, kind::SYSCALL_EXIT, r.rax as u32, a);
                }
                if self.info.flags & boot_flags::NOTIFY_SYSCALLS != 0 {
                    // After the call, so that the host reads the buffers it
                    // used (faulted in, and as the call left them).
                    self.flush_vma_journal(mem);
                    self.event(mem, event::SYSCALL, r.rax, v as u64);
                }
                self.sysret(mem, v as u64)
            }
            Action::Exit(status) => self.exit(mem, exit_kind::EXITED, u64::from(status), [0; 3]),
            Action::Exec(plan) => {
                let ip = r.rcx;
                self.exec(mem, plan, ip)
            }
            Action::Kill(signal) => {
                let ip = r.rcx;
                self.kill(mem, signal, 0, ip, 0)
            }
        }
    }

    /// Replace the program (execve past its checks): load the kernel's own
    /// page tables while the old ones are torn down, load the new image,
    /// and start it. A failure past this point kills the process.
    pub fn exec(&mut self, mem: &mut DirectMap, plan: alloc::boxed::Box<ExecPlan>, ip: u64) {
        cpu::load_kernel_tables(&self.kernel);
        let random = self.next_random();
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
        };
        match syscall::exec::commit(&mut cx, &self.kernel, plan, self.hwcap, random) {
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
        };
        let ret = match syscall::dispatch(&mut cx, nr, args) {
            Action::Return(v) => v,
            _ => guest_kernel::errno::Errno::ENOSYS.to_ret(),
        };
        let back = guest_kernel::uaccess::get_user_u64(&mut cx.p.mm, cx.env, sp);
        let Ok(back) = back else {
            self.kill(mem, sig::SIGSEGV, sp, ip, 0)
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

    fn page_fault(&mut self, mem: &mut DirectMap, addr: u64, error: u64) {
        let ip = self.regs().rip;
        if let Some(nr) = syscall::vsyscall::call_at(addr, ip, error) {
            return self.vsyscall(mem, nr, ip);
        }
        self.stats.page_faults += 1;
        let t0 = timestamp(mem, category::FAULTS);
        let mut env = MmEnv {
            mem,
            frames: &mut self.frames,
            cache: &mut self.cache,
            host: &mut self.fs,
        };
        let result = self.process.mm.handle_page_fault(&mut env, addr, error);
        let ip = self.regs().rip;
        if trace::on(mem, category::FAULTS) {
            let how = resolution_of(&result);
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
        match result {
            Ok(_) => {}
            Err(FaultError::Segv(SegvCode::MapErr | SegvCode::AccErr)) => {
                self.kill(mem, sig::SIGSEGV, addr, ip, error);
            }
            Err(FaultError::OutOfMemory) => self.kill(mem, sig::SIGKILL, addr, ip, error),
            Err(FaultError::Reserved) => hypercall::panic(b"page fault with RSVD set"),
        }
        let every = u64::from(self.info.notify_fault_every);
        let notify = self.info.flags & boot_flags::NOTIFY_FAULTS != 0 && every > 0;
        if notify && self.stats.page_faults.is_multiple_of(every) {
            self.flush_vma_journal(mem);
            self.event(mem, event::FAULT, self.stats.page_faults, addr);
        }
    }

    fn exception(&mut self, mem: &mut DirectMap, vector: u64, error: u64) -> ! {
        let signal = match vector {
            0 | 16 | 19 => sig::SIGFPE,
            1 | 3 => sig::SIGTRAP,
            6 => sig::SIGILL,
            12 | 17 => sig::SIGBUS,
            _ => sig::SIGSEGV,
        };
        let ip = self.regs().rip;
        self.kill(mem, signal, 0, ip, error)
    }

    /// Kill the program with a fatal signal (no handlers yet).
    fn kill(&mut self, mem: &mut DirectMap, signal: u64, addr: u64, ip: u64, error: u64) -> ! {
        self.exit(mem, exit_kind::SIGNALED, signal, [addr, ip, error])
    }

    /// Tear the process down, report the counters, and end the run.
    fn exit(&mut self, mem: &mut DirectMap, kind: u64, status: u64, fault: [u64; 3]) -> ! {
        self.flush_vma_journal(mem);
        self.event(mem, event::EXIT, 0, 0);
        self.close_files(mem);
        let mm = &mut self.process.mm;
        self.stats.peak_user_frames = mm.peak_user_frames;
        mm.teardown(mem, &mut self.frames);
        self.stats.user_frames = mm.user_frames;
        self.stats.user_table_pages = mm.user_table_pages();
        self.cache.clear(mem, &mut self.frames);
        self.flush_vma_journal(mem);
        self.stats.frames_total = self.frames.total();
        self.stats.frames_in_use = self.frames.in_use();
        self.stats.frames_kernel = self.frames_kernel;
        self.stats.magic = BOOT_MAGIC;
        write_stats(mem, &self.stats);
        hypercall::exit([kind, status, fault[0], fault[1], fault[2]])
    }
}

impl Kernel {
    /// At exit: shared file mappings are written back and every open file
    /// is released (host handles closed), as the exiting task's files are.
    fn close_files(&mut self, mem: &mut DirectMap) {
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
        };
        syscall::exit_files(&mut cx);
    }
}

const ENOSYS: i64 = guest_kernel::errno::Errno::ENOSYS.to_ret();

/// The two registers a system call's return needs after the call.
#[derive(Clone, Copy)]
struct SyscallRegs {
    rax: u64,
    rcx: u64,
}

/// The TSC, if `category` is traced (the records carry cycles); 0 if not,
/// sparing the emulated RDTSC.
fn timestamp(mem: &DirectMap, category: u32) -> u64 {
    if trace::on(mem, category) {
        cpu::rdtsc()
    } else {
        0
    }
}

/// The trace's name for how a fault ended.
fn resolution_of(r: &Result<FaultOutcome, FaultError>) -> u64 {
    match r {
        Ok(o) => match o.kind {
            FaultKind::AnonZero => resolution::ZERO_FILL,
            FaultKind::AnonHuge => resolution::ZERO_FILL_HUGE,
            FaultKind::FileMapped => resolution::FILE_MAP,
            FaultKind::FileCopied => resolution::FILE_COPY,
            FaultKind::FileZero => resolution::FILE_ZERO,
            FaultKind::CopyOnWrite => resolution::COW,
            FaultKind::MadeWritable => resolution::MADE_WRITABLE,
            FaultKind::Spurious => resolution::SPURIOUS,
        },
        Err(FaultError::OutOfMemory) => resolution::OOM,
        Err(_) => resolution::SIGSEGV,
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

fn write_stats(mem: &mut DirectMap, s: &GuestStats) {
    use guest_kernel::mm::phys::PhysMem;
    let words = [
        s.magic,
        s.frames_total,
        s.frames_in_use,
        s.frames_kernel,
        s.user_frames,
        s.user_table_pages,
        s.page_faults,
        s.syscalls,
        s.peak_user_frames,
    ];
    for (i, w) in words.iter().enumerate() {
        mem.write_u64(STATS_PHYS + 8 * i as u64, *w);
    }
}
