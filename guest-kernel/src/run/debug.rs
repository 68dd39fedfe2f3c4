//! Stops for the host's debugger (`vmrun --gdb`).
//!
//! With [`boot_flags::DEBUGGER`] the kernel stops the program for the host
//! with [`hc::DEBUG_STOP`] before its first instruction, at an `int3`
//! (#BP), after a single step (#DB), before a fault signal is delivered,
//! and when the host asks (gdb's Ctrl-C, through the host-signal word).
//! The host reads and may change the user's registers where they are
//! saved (the trap frame and the FXSAVE image), then answers: continue,
//! step (the kernel sets RFLAGS.TF on the user frame, so that the next
//! user instruction traps with #DB: the same on kvm_pvm, whose KVM does
//! not report ring-3 single steps, as on VMX/SVM), or detach; with a
//! signal to deliver or none.
//!
//! None of this runs without a debugger: the hooks sit on paths that are
//! already rare (exec, fatal exceptions, failed faults, the host-signal
//! word), and each checks the boot flag once.

use super::Kernel;
use crate::arch::gdt;
use crate::arch::hypercall::{self, kernel_phys};
use crate::arch::phys::DirectMap;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use guest_kernel::mm::export;
use vmrun_contract::debug::{reason, resume, TaskRecord};
use vmrun_contract::layout::TASK_SIZE;
use vmrun_contract::{boot_flags, hc};

/// A page-fault error code: a read from user mode of a page not present.
const PF_USER: u64 = 4;

/// RFLAGS.TF, the trap flag.
const TF: u64 = 1 << 8;

/// The host detached (or never attached).
static DETACHED: AtomicBool = AtomicBool::new(false);
/// The kernel set TF for a step the host asked for.
static STEPPING: AtomicBool = AtomicBool::new(false);

/// What the program does after a stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum After {
    /// Resume without a signal.
    Resume,
    /// Deliver this signal as it would have been without the debugger.
    Deliver(u64),
}

impl Kernel {
    /// Whether a debugger is attached.
    pub(super) fn debugger(&self) -> bool {
        self.info.flags & boot_flags::DEBUGGER != 0 && !DETACHED.load(Ordering::Relaxed)
    }

    /// The first program is loaded: stop before its first instruction.
    pub fn debug_first_stop(&mut self, mem: &mut DirectMap) {
        if self.debugger() {
            self.debug_stop(mem, reason::EXEC, 0, 0);
        }
    }

    /// #DB (vector 1) or #BP (vector 3) while a debugger is attached:
    /// report it; a signal the host passes on is delivered.
    pub(super) fn debug_trap(&mut self, mem: &mut DirectMap, vector: u64) -> After {
        let why = match vector {
            3 => reason::BREAKPOINT,
            _ => reason::STEP,
        };
        self.debug_stop(mem, why, guest_kernel::signal::nr::SIGTRAP, 0)
    }

    /// A fault signal is about to be delivered (or to kill): let the
    /// debugger see it first.
    pub(super) fn debug_signal(&mut self, mem: &mut DirectMap, signal: u64, addr: u64) -> After {
        self.debug_stop(mem, reason::SIGNAL, signal, addr)
    }

    /// The host asked for a stop (gdb's interrupt).
    pub(super) fn debug_interrupt(&mut self, mem: &mut DirectMap) {
        if !self.debugger() {
            return;
        }
        let sigint = guest_kernel::signal::nr::SIGINT;
        if let After::Deliver(s) = self.debug_stop(mem, reason::INTERRUPT, sigint, 0) {
            self.with_cx(mem, |cx| guest_kernel::syscall::signal::from_host(cx, s));
        }
    }

    /// Stop for the host: export the VMAs, hand over where the registers
    /// are, and apply its answer.
    fn debug_stop(&mut self, mem: &mut DirectMap, why: u64, signal: u64, addr: u64) -> After {
        let at = self.info.vma_export_phys;
        if at != 0 {
            let bits = self.frames.cache_bits_info();
            export::export_vmas(&self.process.mm, mem, at, bits);
            self.export_spaces(mem, at);
        }
        let pid = self.process.pid;
        let um = self.user_mode();
        let f = um.regs();
        if STEPPING.swap(false, Ordering::Relaxed) {
            f.rflags &= !TF;
        }
        let old_rip = f.rip;
        let frame = kernel_phys(f as *const _);
        let fpu = kernel_phys(um.fpu() as *const _);
        let tasks = self.task_records(frame, fpu);
        let word = why | (signal & 0xff) << 8 | pid << 32;
        let table = kernel_phys(tasks.as_ptr());
        let args = [word, addr, frame, fpu, table, tasks.len() as u64];
        let mut answer = hypercall::call(hc::DEBUG_STOP, args) as u64;
        while answer & 0xff == resume::FAULT_IN {
            // The host wants to write into a page the program has not
            // touched yet: map it as the program's own read would.
            let page = answer & !0xfff;
            let _ = self.with_env(mem, |p, env| p.mm.handle_page_fault(env, page, PF_USER));
            answer = hypercall::call(hc::DEBUG_STOP, args) as u64;
        }
        drop(tasks);
        // The host may have changed any register: keep the frame one that
        // returns to user mode.
        let f = self.user_mode().regs();
        f.cs = u64::from(gdt::USER_CS);
        f.ss = u64::from(gdt::USER_DS);
        f.rflags = (f.rflags & super::USER_RFLAGS_MASK) | super::RFLAGS_FIXED;
        if f.rip >= TASK_SIZE {
            f.rip = old_rip;
        }
        match answer & 0xff {
            resume::STEP => {
                f.rflags |= TF;
                STEPPING.store(true, Ordering::Relaxed);
            }
            resume::DETACH => DETACHED.store(true, Ordering::Relaxed),
            _ => {}
        }
        match (answer >> 8) & 0xff {
            0 => After::Resume,
            s => After::Deliver(s),
        }
    }
}

impl Kernel {
    /// Every task for the debugger: the stopped one (its registers at
    /// `frame` and `fpu`), then each other with saved registers.
    fn task_records(&self, frame: u64, fpu: u64) -> Vec<TaskRecord> {
        let p = &self.process;
        let first = TaskRecord {
            pid: p.pid,
            tgid: p.tgid,
            frame_phys: frame,
            fpu_phys: fpu,
            fs_base: p.fs_base,
            gs_base: p.gs_base,
        };
        let others = self.tasks.others.iter().filter_map(|t| {
            let saved = t.saved.as_deref()?;
            Some(TaskRecord {
                pid: t.pid,
                tgid: t.tgid,
                frame_phys: kernel_phys(saved.words.as_ptr()),
                fpu_phys: kernel_phys(saved.fpu.0.as_ptr()),
                fs_base: t.fs_base,
                gs_base: t.gs_base,
            })
        });
        core::iter::once(first).chain(others).collect()
    }

    /// A page fault that will not be resolved: the debugger sees its
    /// signal first (an out-of-memory kill is not shown).
    pub(super) fn debug_fault(
        &mut self,
        mem: &mut DirectMap,
        e: &guest_kernel::mm::fault::FaultError,
        addr: u64,
    ) -> After {
        use guest_kernel::mm::fault::FaultError;
        use guest_kernel::signal::nr;
        let signal = match e {
            FaultError::OutOfMemory => return After::Deliver(nr::SIGKILL),
            FaultError::PastEof => nr::SIGBUS,
            _ => nr::SIGSEGV,
        };
        self.debug_signal(mem, signal, addr)
    }
}

// The host reads and writes the trap frame as the contract's UserFrame:
// the same size, and every field at the same offset.
const _: () = {
    use crate::arch::trap::TrapFrame as T;
    use core::mem::{offset_of, size_of};
    use vmrun_contract::debug::UserFrame as U;
    assert!(size_of::<T>() == size_of::<U>());
    macro_rules! same {
        ($($f:ident),*) => { $(assert!(offset_of!(T, $f) == offset_of!(U, $f));)* };
    }
    same!(r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax);
    same!(vector, error_code, rip, cs, rflags, rsp, ss);
};
