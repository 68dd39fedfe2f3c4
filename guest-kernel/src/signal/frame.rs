//! The x86-64 Linux signal frame: what `x64_setup_rt_frame` (Linux 6.x,
//! arch/x86/kernel/signal_64.c, with `get_sigframe` of signal.c) writes on
//! the user stack when a handler is entered, and what `rt_sigreturn` reads
//! back.
//!
//! Below the interrupted `rsp` (less the 128-byte red zone), or at the top
//! of the alternate stack, Linux puts:
//!
//! ```text
//!   fpstate   512-byte FXSAVE image, 64-byte aligned
//!   ...       padding
//!   rt_sigframe (440 bytes), at round_down(fpstate - 440, 16) - 8:
//!     +0    pretcode   sa_restorer: the handler's `ret` pops it
//!     +8    ucontext   uc_flags, uc_link, uc_stack, uc_mcontext
//!                      (struct sigcontext, 256 bytes), uc_sigmask
//!     +312  siginfo    128 bytes
//! ```
//!
//! so that `(rsp + 8) % 16 == 0` at handler entry, as after a `call`.
//!
//! FPU state: vmrun's kernel saves only FXSAVE state (CR4.OSXSAVE is off),
//! so the frame is the one Linux writes on a CPU with FXSR and without
//! XSAVE: a plain 512-byte FXSAVE image whose software-reserved bytes
//! (464..512) hold `struct _fpx_sw_bytes` with `FP_XSTATE_MAGIC1`,
//! `extended_size` 516, `xfeatures` 0 (Linux's `user_xfeatures` without
//! XSAVE), `xstate_size` 512, and no `FP_XSTATE_MAGIC2`; `uc_flags` is
//! `UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS` (no `UC_FP_XSTATE`). Linux's
//! `rt_sigreturn` treats such an image as FXSAVE-only (its `xstate_size` is
//! below FXSAVE + xsave header), and so does [`restore_rt_frame`].
//!
//! Like Linux, only the fields Linux stores are written: the padding after
//! `uc_stack.ss_flags`, `sigcontext.reserved1` and (without `SA_SIGINFO`)
//! the siginfo keep whatever the stack held. `uc_stack` is the task's
//! sigaltstack setting as `sigaltstack` stored it (Linux ≥ 4.7 writes
//! `sas_ss_flags`, not `SS_ONSTACK`).
//!
//! What the caller does around these functions (Linux's `handle_signal`,
//! `signal_delivered`, `rt_sigreturn`): after [`setup_rt_frame`] succeeds,
//! reset the FPU to [`init_fpu`] (`fpu__clear_user_states`), block
//! [`blocked_in_handler`], and with `SA_RESETHAND` set the handler to
//! `SIG_DFL`; on failure, force SIGSEGV. After [`restore_rt_frame`], apply
//! the mask, the registers (merge `rflags` with [`FIX_EFLAGS`] if the
//! current flags are wanted for the other bits), the FPU image, and the
//! altstack through [`restore_altstack`]; the system call returns the
//! restored `rax`. On failure (`badframe`), force SIGSEGV.

use crate::errno::{Errno, KResult};
use crate::mm::phys::PhysMem;
use crate::mm::space::{check_user_range, Mm, MmEnv};
use crate::signal::{nr, SigAction};
use crate::uaccess::{copy_from_user, copy_to_user};

/// The user registers a signal frame saves and restores (the same order as
/// Linux's `struct sigcontext`, r8 first).
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserRegs {
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub rdx: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rsp: u64,
    pub rip: u64,
    pub rflags: u64,
}

/// What `siginfo_t` carries (the fields vmrun fills).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigInfo {
    /// `si_signo`.
    pub signo: i32,
    /// `si_errno`.
    pub errno: i32,
    /// `si_code` (SI_USER 0, SI_KERNEL 0x80, SI_TKILL -6, CLD_EXITED 1, ...).
    pub code: i32,
    /// `si_pid`, or `si_addr` (for SIGSEGV/SIGBUS/SIGILL/SIGFPE/SIGTRAP with
    /// a kernel code: the fault address).
    pub addr_or_pid: u64,
    /// `si_uid`.
    pub uid: u32,
    /// SIGCHLD: `si_status`; queued signals (negative codes): `sival_int`;
    /// a POSIX timer's (SI_TIMER) generation, which is kernel-private
    /// (Linux's `si_sys_private`) and never written out.
    pub status: i32,
    /// SI_TIMER: `si_value` (the timer's `sigev_value`); for SI_TIMER,
    /// `addr_or_pid` is `si_timerid` and `uid` is `si_overrun`.
    pub value: u64,
}

/// `si_code` of a signal sent by `kill`.
pub const SI_USER: i32 = 0;
/// `si_code` of a signal sent by `tkill`/`tgkill`.
pub const SI_TKILL: i32 = -6;

impl SigInfo {
    /// The `siginfo_t` of signal `sig` sent by process `from` with `code`.
    pub fn sent(sig: u64, code: i32, from: u64) -> SigInfo {
        SigInfo {
            signo: sig as i32,
            code,
            addr_or_pid: from,
            ..Default::default()
        }
    }
}

/// `sa_flags` bits (x86-64 values).
pub mod sa {
    /// The handler takes (signo, siginfo, ucontext).
    pub const SIGINFO: u64 = 4;
    /// `sa_restorer` is valid (required on x86-64).
    pub const RESTORER: u64 = 0x0400_0000;
    /// Run the handler on the alternate stack.
    pub const ONSTACK: u64 = 0x0800_0000;
    /// Restart interrupted system calls.
    pub const RESTART: u64 = 0x1000_0000;
    /// Do not block the signal in its handler.
    pub const NODEFER: u64 = 0x4000_0000;
    /// Reset the handler to SIG_DFL on delivery.
    pub const RESETHAND: u64 = 0x8000_0000;
}

/// `stack_t.ss_flags` values.
pub mod ss {
    /// Currently on the alternate stack (sigaltstack's old value).
    pub const ONSTACK: u64 = 1;
    /// The alternate stack is disabled.
    pub const DISABLE: u64 = 2;
    /// Disarm the alternate stack on handler entry.
    pub const AUTODISARM: u64 = 1 << 31;
}

/// `uc_flags` bits.
pub mod uc {
    /// The fpstate is in XSAVE format (with FP_XSTATE_MAGIC2).
    pub const FP_XSTATE: u64 = 1;
    /// `sigcontext.ss` holds the saved SS.
    pub const SIGCONTEXT_SS: u64 = 2;
    /// `rt_sigreturn` restores SS exactly.
    pub const STRICT_RESTORE_SS: u64 = 4;
}

/// RFLAGS bits.
pub mod eflags {
    /// Carry.
    pub const CF: u64 = 1 << 0;
    /// Reserved, always 1.
    pub const FIXED: u64 = 1 << 1;
    /// Parity.
    pub const PF: u64 = 1 << 2;
    /// Auxiliary carry.
    pub const AF: u64 = 1 << 4;
    /// Zero.
    pub const ZF: u64 = 1 << 6;
    /// Sign.
    pub const SF: u64 = 1 << 7;
    /// Trap (single step).
    pub const TF: u64 = 1 << 8;
    /// Interrupts enabled.
    pub const IF: u64 = 1 << 9;
    /// Direction.
    pub const DF: u64 = 1 << 10;
    /// Overflow.
    pub const OF: u64 = 1 << 11;
    /// I/O privilege level (two bits).
    pub const IOPL: u64 = 3 << 12;
    /// Nested task.
    pub const NT: u64 = 1 << 14;
    /// Resume.
    pub const RF: u64 = 1 << 16;
    /// Alignment check.
    pub const AC: u64 = 1 << 18;
    /// CPUID available.
    pub const ID: u64 = 1 << 21;
}

/// The RFLAGS bits `rt_sigreturn` takes from the frame (Linux's
/// `FIX_EFLAGS`); the others keep their current value.
pub const FIX_EFLAGS: u64 = eflags::AC
    | eflags::OF
    | eflags::DF
    | eflags::TF
    | eflags::SF
    | eflags::ZF
    | eflags::AF
    | eflags::PF
    | eflags::CF
    | eflags::RF;

/// RFLAGS outside [`FIX_EFLAGS`] after [`restore_rt_frame`]: IF and the
/// reserved bit, as user mode runs.
pub const USER_EFLAGS_BASE: u64 = eflags::IF | eflags::FIXED;

/// Bytes below the interrupted `rsp` the frame leaves alone.
pub const REDZONE: u64 = 128;
/// `sizeof(struct rt_sigframe)`.
pub const FRAME_SIZE: u64 = 440;
/// Size of the fpstate (an FXSAVE image).
pub const FPSTATE_SIZE: u64 = 512;
/// Alignment of the fpstate.
pub const FPSTATE_ALIGN: u64 = 64;
/// `MINSIGSTKSZ`, the smallest altstack `rt_sigreturn` re-installs.
pub const MINSIGSTKSZ: u64 = 2048;
/// `FP_XSTATE_MAGIC1` ("XSFP"), in the FXSAVE software-reserved bytes.
pub const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
/// `FP_XSTATE_MAGIC2` ("EXFP"), after an XSAVE-format fpstate.
pub const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
/// User code selector saved in `sigcontext.cs` (Linux's `__USER_CS`).
pub const USER_CS: u16 = 0x33;
/// User stack selector saved in `sigcontext.ss` (Linux's `__USER_DS`).
pub const USER_DS: u16 = 0x2b;
/// MXCSR bits FXRSTOR accepts (others raise #GP: a bad frame).
pub const MXCSR_MASK: u32 = 0xffff;

/// Byte offsets of the frame's fields (from the Linux uapi headers).
pub mod off {
    /// `rt_sigframe.pretcode`.
    pub const PRETCODE: usize = 0;
    /// `rt_sigframe.uc`.
    pub const UC: usize = 8;
    /// `rt_sigframe.info`.
    pub const INFO: usize = 312;

    /// `ucontext.uc_flags` (from `UC`).
    pub const UC_FLAGS: usize = 0;
    /// `ucontext.uc_link`.
    pub const UC_LINK: usize = 8;
    /// `ucontext.uc_stack` (`stack_t`: ss_sp, ss_flags (int), ss_size).
    pub const UC_STACK: usize = 16;
    /// `ucontext.uc_mcontext` (`struct sigcontext`).
    pub const UC_MCONTEXT: usize = 40;
    /// `ucontext.uc_sigmask`.
    pub const UC_SIGMASK: usize = 296;
    /// `sizeof(struct ucontext)`.
    pub const UC_SIZE: usize = 304;

    /// `stack_t.ss_sp`.
    pub const SS_SP: usize = 0;
    /// `stack_t.ss_flags` (int).
    pub const SS_FLAGS: usize = 8;
    /// `stack_t.ss_size`.
    pub const SS_SIZE: usize = 16;

    /// `sigcontext.r8`; r9..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp,
    /// rip, eflags follow, 8 bytes each.
    pub const SC_R8: usize = 0;
    /// `sigcontext.rdi`.
    pub const SC_RDI: usize = 64;
    /// `sigcontext.rsp`.
    pub const SC_RSP: usize = 120;
    /// `sigcontext.rip`.
    pub const SC_RIP: usize = 128;
    /// `sigcontext.eflags`.
    pub const SC_EFLAGS: usize = 136;
    /// `sigcontext.cs` (u16).
    pub const SC_CS: usize = 144;
    /// `sigcontext.gs` (u16).
    pub const SC_GS: usize = 146;
    /// `sigcontext.fs` (u16).
    pub const SC_FS: usize = 148;
    /// `sigcontext.ss` (u16).
    pub const SC_SS: usize = 150;
    /// `sigcontext.err`.
    pub const SC_ERR: usize = 152;
    /// `sigcontext.trapno`.
    pub const SC_TRAPNO: usize = 160;
    /// `sigcontext.oldmask`.
    pub const SC_OLDMASK: usize = 168;
    /// `sigcontext.cr2`.
    pub const SC_CR2: usize = 176;
    /// `sigcontext.fpstate`.
    pub const SC_FPSTATE: usize = 184;
    /// `sigcontext.reserved1[8]`.
    pub const SC_RESERVED1: usize = 192;
    /// `sizeof(struct sigcontext)`.
    pub const SC_SIZE: usize = 256;

    /// `si_signo`.
    pub const SI_SIGNO: usize = 0;
    /// `si_errno`.
    pub const SI_ERRNO: usize = 4;
    /// `si_code`.
    pub const SI_CODE: usize = 8;
    /// `si_pid` (kill, rt, chld).
    pub const SI_PID: usize = 16;
    /// `si_uid` (kill, rt, chld).
    pub const SI_UID: usize = 20;
    /// `si_status` (chld).
    pub const SI_STATUS: usize = 24;
    /// `si_value` (rt).
    pub const SI_VALUE: usize = 24;
    /// `si_addr` (fault).
    pub const SI_ADDR: usize = 16;
    /// `sizeof(siginfo_t)`.
    pub const SI_SIZE: usize = 128;

    /// FXSAVE `mxcsr`.
    pub const FX_MXCSR: usize = 24;
    /// FXSAVE `sw_reserved` (`struct _fpx_sw_bytes`).
    pub const FX_SW_RESERVED: usize = 464;
}

/// `si_code` values.
pub mod si {
    /// Sent by kill().
    pub const USER: i32 = 0;
    /// Sent by the kernel.
    pub const KERNEL: i32 = 0x80;
    /// Sent by tkill()/tgkill().
    pub const TKILL: i32 = -6;
    /// Sent by a POSIX timer's expiry.
    pub const TIMER: i32 = -2;
}

/// Where a frame goes: Linux's `get_sigframe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    /// Address of `struct rt_sigframe` (the handler's rsp).
    pub frame: u64,
    /// Address of the fpstate.
    pub fpstate: u64,
}

/// sigaltstack state normalised as Linux keeps it: (sp, flags, size), with
/// sp and size 0 when disabled.
fn altstack_state(altstack: [u64; 3]) -> [u64; 3] {
    let flags = altstack[1] & 0xffff_ffff;
    if flags & !ss::AUTODISARM == ss::DISABLE || altstack[2] == 0 {
        [0, flags, 0]
    } else {
        [altstack[0], flags, altstack[2]]
    }
}

/// Linux's `__on_sig_stack`: `sp` is inside (ss_sp, ss_sp + ss_size].
fn on_altstack_raw(st: [u64; 3], sp: u64) -> bool {
    sp > st[0] && sp - st[0] <= st[2]
}

/// Linux's `on_sig_stack` (false with SS_AUTODISARM).
fn on_altstack(st: [u64; 3], sp: u64) -> bool {
    st[1] & ss::AUTODISARM == 0 && on_altstack_raw(st, sp)
}

/// Where the frame for a handler installed with `flags` goes when the
/// program was interrupted at `rsp` (Linux's `get_sigframe`); EFAULT when
/// it would overflow the alternate stack.
pub fn frame_layout(rsp: u64, flags: u64, altstack: [u64; 3]) -> KResult<FrameLayout> {
    let st = altstack_state(altstack);
    let nested = on_altstack(st, rsp);
    let mut sp = rsp.wrapping_sub(REDZONE);
    let mut entering = false;
    // sas_ss_flags(sp) == 0: enabled and not on it.
    if flags & sa::ONSTACK != 0 && st[2] != 0 && !on_altstack(st, sp) {
        sp = st[0].wrapping_add(st[2]);
        entering = true;
    }
    let fpstate = sp.wrapping_sub(FPSTATE_SIZE) & !(FPSTATE_ALIGN - 1);
    let frame = (fpstate.wrapping_sub(FRAME_SIZE) & !15).wrapping_sub(8);
    if (nested || entering) && !on_altstack_raw(st, frame) {
        return Err(Errno::EFAULT);
    }
    Ok(FrameLayout { frame, fpstate })
}

/// The FXSAVE image of the initial FPU state (`fninit` plus the default
/// MXCSR): FCW 0x37f, MXCSR 0x1f80, all else 0. Also the state exec and a
/// signal handler start with, which the kernel loads from a static it
/// builds with this.
pub const fn init_fpu() -> [u8; 512] {
    let mut f = [0u8; 512];
    let fcw = 0x37fu16.to_le_bytes();
    let mxcsr = 0x1f80u32.to_le_bytes();
    (f[0], f[1]) = (fcw[0], fcw[1]);
    let m = off::FX_MXCSR;
    (f[m], f[m + 1], f[m + 2], f[m + 3]) = (mxcsr[0], mxcsr[1], mxcsr[2], mxcsr[3]);
    f
}

/// The mask blocked while the handler of `signo` runs (Linux's
/// `signal_delivered`): `blocked`, plus `act.mask`, plus `signo` unless
/// `SA_NODEFER`; SIGKILL and SIGSTOP are never blocked.
pub fn blocked_in_handler(blocked: u64, signo: u64, act: &SigAction) -> u64 {
    let mut m = blocked | act.mask;
    if act.flags & sa::NODEFER == 0 && crate::signal::valid(signo) {
        m |= bit(signo);
    }
    m & !unblockable()
}

/// The altstack after `rt_sigreturn` re-installs `uc_stack` (Linux's
/// `restore_altstack` → `do_sigaltstack`, errors ignored): unchanged when
/// `sp` (the restored rsp) is on the `current` one, when the mode is
/// invalid, or when an enabled stack is smaller than MINSIGSTKSZ; a
/// disabled one is stored with sp and size 0.
pub fn restore_altstack(current: [u64; 3], uc_stack: [u64; 3], sp: u64) -> [u64; 3] {
    let cur = altstack_state(current);
    if on_altstack(cur, sp) {
        return current;
    }
    let flags = uc_stack[1] & 0xffff_ffff;
    let mode = flags & !ss::AUTODISARM;
    if mode != ss::DISABLE && mode != ss::ONSTACK && mode != 0 {
        return current;
    }
    if mode == ss::DISABLE {
        return [0, flags, 0];
    }
    if uc_stack[2] < MINSIGSTKSZ {
        return current;
    }
    [uc_stack[0], flags, uc_stack[2]]
}

/// Build the frame for delivering `info` to the handler installed with
/// `act`, with the interrupted `regs`, the FXSAVE image `fpu` (its
/// software-reserved bytes are filled in place before it is copied out:
/// the caller's block, not a copy of it), the mask
/// `blocked` to restore on return, the `altstack` (sp, flags, size) and
/// `fault` (trapno, err, cr2). Returns the registers to enter the handler
/// with: rsp = frame, rip = handler, rdi = signo, rsi = &siginfo, rdx =
/// &ucontext, rax = 0, rflags without DF, RF and TF; the others as in
/// `regs`. EFAULT without `SA_RESTORER`, on altstack overflow, or when the
/// stack cannot be written (ENOMEM when out of memory).
#[allow(clippy::too_many_arguments)]
pub fn setup_rt_frame<M: PhysMem>(
    mm: &mut Mm,
    env: &mut MmEnv<'_, M>,
    regs: &UserRegs,
    fpu: &mut [u8; 512],
    info: &SigInfo,
    act: &SigAction,
    blocked: u64,
    altstack: [u64; 3],
    fault: [u64; 3],
) -> KResult<UserRegs> {
    // x86-64 should always use SA_RESTORER.
    if act.flags & sa::RESTORER == 0 {
        return Err(Errno::EFAULT);
    }
    let lay = frame_layout(regs.rsp, act.flags, altstack)?;
    check_user_range(lay.frame, FRAME_SIZE)?;
    check_user_range(lay.fpstate, FPSTATE_SIZE)?;

    // The fpstate: FXSAVE image plus the software-reserved bytes.
    let sw = &mut fpu[off::FX_SW_RESERVED..];
    sw.fill(0);
    put32(sw, 0, FP_XSTATE_MAGIC1);
    put32(sw, 4, FPSTATE_SIZE as u32 + 4); // extended_size
    put64(sw, 8, 0); // xfeatures (user_xfeatures without XSAVE)
    put32(sw, 16, FPSTATE_SIZE as u32); // xstate_size
    copy_to_user(mm, env, lay.fpstate, fpu)?;

    let mut f = [0u8; FRAME_SIZE as usize];
    put64(&mut f, off::PRETCODE, act.restorer);
    let u = off::UC;
    put64(
        &mut f,
        u + off::UC_FLAGS,
        uc::SIGCONTEXT_SS | uc::STRICT_RESTORE_SS,
    );
    put64(&mut f, u + off::UC_LINK, 0);
    let st = altstack_state(altstack);
    put64(&mut f, u + off::UC_STACK + off::SS_SP, st[0]);
    put32(&mut f, u + off::UC_STACK + off::SS_FLAGS, st[1] as u32);
    put64(&mut f, u + off::UC_STACK + off::SS_SIZE, st[2]);
    let sc = u + off::UC_MCONTEXT;
    for (i, v) in regs_to_words(regs).iter().enumerate() {
        put64(&mut f, sc + off::SC_R8 + 8 * i, *v);
    }
    put16(&mut f, sc + off::SC_CS, USER_CS);
    put16(&mut f, sc + off::SC_GS, 0);
    put16(&mut f, sc + off::SC_FS, 0);
    put16(&mut f, sc + off::SC_SS, USER_DS);
    put64(&mut f, sc + off::SC_ERR, fault[1]);
    put64(&mut f, sc + off::SC_TRAPNO, fault[0]);
    put64(&mut f, sc + off::SC_OLDMASK, blocked);
    put64(&mut f, sc + off::SC_CR2, fault[2]);
    put64(&mut f, sc + off::SC_FPSTATE, lay.fpstate);
    put64(&mut f, u + off::UC_SIGMASK, blocked);

    // Write what Linux writes: skip the ss_flags padding and reserved1.
    let pad = u + off::UC_STACK + off::SS_FLAGS + 4;
    let res = sc + off::SC_RESERVED1;
    let runs = [(0, pad), (pad + 4, res), (sc + off::SC_SIZE, off::INFO)];
    for (a, b) in runs {
        copy_to_user(mm, env, lay.frame + a as u64, &f[a..b])?;
    }
    if act.flags & sa::SIGINFO != 0 {
        let si = siginfo_bytes(info);
        copy_to_user(mm, env, lay.frame + off::INFO as u64, &si)?;
    }

    let mut r = *regs;
    r.rdi = info.signo as u32 as u64;
    r.rax = 0;
    r.rsi = lay.frame + off::INFO as u64;
    r.rdx = lay.frame + off::UC as u64;
    r.rip = act.handler;
    r.rsp = lay.frame;
    r.rflags &= !(eflags::DF | eflags::RF | eflags::TF);
    Ok(r)
}

/// rt_sigreturn: read the frame whose ucontext is at `rsp` (the handler's
/// rsp after its `ret` popped pretcode, i.e. frame + 8) and return the
/// registers to resume with (rflags: [`USER_EFLAGS_BASE`] plus the frame's
/// [`FIX_EFLAGS`] bits), the FXSAVE image in `fpu` (bytes 464..512 zeroed;
/// the initial state when the fpstate pointer is NULL; read straight into
/// the caller's block, which holds anything on an error), the signal mask
/// (without SIGKILL and SIGSTOP) and the saved `uc_stack` (sp, flags,
/// size; see [`restore_altstack`]). EFAULT when the frame or fpstate cannot
/// be read, the fpstate is not 16-byte aligned, or its MXCSR has reserved
/// bits set (FXRSTOR would fault). `sigcontext.cs`/`ss` are not used:
/// user mode is always 64-bit here.
pub fn restore_rt_frame<M: PhysMem>(
    mm: &mut Mm,
    env: &mut MmEnv<'_, M>,
    rsp: u64,
    fpu: &mut [u8; 512],
) -> KResult<(UserRegs, u64, [u64; 3])> {
    let frame = rsp.wrapping_sub(8);
    check_user_range(frame, FRAME_SIZE)?;
    let mut ucb = [0u8; off::UC_SIZE];
    copy_from_user(mm, env, rsp, &mut ucb).map_err(|_| Errno::EFAULT)?;

    let mask = get64(&ucb, off::UC_SIGMASK) & !unblockable();
    let sc = off::UC_MCONTEXT;
    let mut w = [0u64; 18];
    for (i, v) in w.iter_mut().enumerate() {
        *v = get64(&ucb, sc + off::SC_R8 + 8 * i);
    }
    let mut regs = words_to_regs(&w);
    regs.rflags = USER_EFLAGS_BASE | (regs.rflags & FIX_EFLAGS);

    let fp = get64(&ucb, sc + off::SC_FPSTATE);
    if fp == 0 {
        *fpu = init_fpu();
    } else {
        if !fp.is_multiple_of(16) {
            return Err(Errno::EFAULT);
        }
        check_user_range(fp, FPSTATE_SIZE)?;
        copy_from_user(mm, env, fp, fpu).map_err(|_| Errno::EFAULT)?;
        if get32(fpu, off::FX_MXCSR) & !MXCSR_MASK != 0 {
            return Err(Errno::EFAULT);
        }
        fpu[off::FX_SW_RESERVED..].fill(0);
    }

    let st = off::UC_STACK;
    let altstack = [
        get64(&ucb, st + off::SS_SP),
        get32(&ucb, st + off::SS_FLAGS) as u64,
        get64(&ucb, st + off::SS_SIZE),
    ];
    Ok((regs, mask, altstack))
}

/// The 128-byte `siginfo_t` for `info`, laid out by Linux's
/// `siginfo_layout`: a fault (si_addr) for SIGILL/SIGFPE/SIGSEGV/SIGBUS/
/// SIGTRAP with a kernel code (1..0x7f), SIGCHLD's (pid, uid, status) with
/// such a code, queued (pid, uid, sival_int) for negative codes, and
/// kill's (pid, uid) otherwise.
pub fn siginfo_bytes(info: &SigInfo) -> [u8; 128] {
    let mut b = [0u8; 128];
    put32(&mut b, off::SI_SIGNO, info.signo as u32);
    put32(&mut b, off::SI_ERRNO, info.errno as u32);
    put32(&mut b, off::SI_CODE, info.code as u32);
    let sig = info.signo as u64;
    let kernel_code = info.code > si::USER && info.code < si::KERNEL;
    let fault = matches!(
        sig,
        nr::SIGILL | nr::SIGFPE | nr::SIGSEGV | nr::SIGBUS | nr::SIGTRAP
    );
    if kernel_code && fault {
        put64(&mut b, off::SI_ADDR, info.addr_or_pid);
    } else if info.code == si::TIMER {
        // _timer: si_tid (the timer id), si_overrun, si_value.
        put32(&mut b, off::SI_PID, info.addr_or_pid as u32);
        put32(&mut b, off::SI_UID, info.uid);
        put64(&mut b, off::SI_STATUS, info.value);
    } else {
        put32(&mut b, off::SI_PID, info.addr_or_pid as u32);
        put32(&mut b, off::SI_UID, info.uid);
        if (kernel_code && sig == nr::SIGCHLD) || info.code < 0 {
            put32(&mut b, off::SI_STATUS, info.status as u32);
        }
    }
    b
}

/// The 128-byte `struct signalfd_siginfo` a `read` of a signalfd returns
/// for `info`, filled as Linux's `signalfd_copyinfo` does by the same
/// layouts as [`siginfo_bytes`].
pub fn signalfd_siginfo_bytes(info: &SigInfo) -> [u8; 128] {
    // ssi_signo 0, ssi_errno 4, ssi_code 8, ssi_pid 12, ssi_uid 16,
    // ssi_tid 24, ssi_overrun 32, ssi_status 40, ssi_int 44, ssi_ptr 48,
    // ssi_addr 72.
    let mut b = [0u8; 128];
    put32(&mut b, 0, info.signo as u32);
    put32(&mut b, 4, info.errno as u32);
    put32(&mut b, 8, info.code as u32);
    let sig = info.signo as u64;
    let kernel_code = info.code > si::USER && info.code < si::KERNEL;
    let fault = matches!(
        sig,
        nr::SIGILL | nr::SIGFPE | nr::SIGSEGV | nr::SIGBUS | nr::SIGTRAP
    );
    if kernel_code && fault {
        put64(&mut b, 72, info.addr_or_pid);
    } else if info.code == si::TIMER {
        put32(&mut b, 24, info.addr_or_pid as u32);
        put32(&mut b, 32, info.uid);
        put32(&mut b, 44, info.value as u32);
        put64(&mut b, 48, info.value);
    } else {
        put32(&mut b, 12, info.addr_or_pid as u32);
        put32(&mut b, 16, info.uid);
        if kernel_code && sig == nr::SIGCHLD {
            put32(&mut b, 40, info.status as u32);
        } else if info.code < 0 {
            put32(&mut b, 44, info.status as u32);
        }
    }
    b
}

fn bit(sig: u64) -> u64 {
    1 << (sig - 1)
}

fn unblockable() -> u64 {
    bit(nr::SIGKILL) | bit(nr::SIGSTOP)
}

fn regs_to_words(r: &UserRegs) -> [u64; 18] {
    [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx,
        r.rax, r.rcx, r.rsp, r.rip, r.rflags,
    ]
}

fn words_to_regs(w: &[u64; 18]) -> UserRegs {
    UserRegs {
        r8: w[0],
        r9: w[1],
        r10: w[2],
        r11: w[3],
        r12: w[4],
        r13: w[5],
        r14: w[6],
        r15: w[7],
        rdi: w[8],
        rsi: w[9],
        rbp: w[10],
        rbx: w[11],
        rdx: w[12],
        rax: w[13],
        rcx: w[14],
        rsp: w[15],
        rip: w[16],
        rflags: w[17],
    }
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn get64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::mmap::{map, prot};
    use crate::mm::testmem::Fixture;
    use vmrun_contract::layout::TASK_SIZE;

    const STACK_LEN: u64 = 16 * 4096;
    const HANDLER: u64 = 0x40_2000;
    const RESTORER: u64 = 0x40_3000;
    const NO_ALTSTACK: [u64; 3] = [0, ss::DISABLE, 0];
    const FAULT: [u64; 3] = [14, 6, 0xdead_b000];
    const SIGUSR1: i32 = 10;

    struct T {
        fx: Fixture,
        mm: Mm,
        /// Lowest address of the mapped stack area.
        base: u64,
        /// One past its end.
        top: u64,
    }

    impl T {
        fn new() -> Self {
            let mut fx = Fixture::new();
            let mut mm = fx.mm();
            let base = mm
                .mmap(
                    &mut fx.env(),
                    0,
                    STACK_LEN,
                    prot::READ | prot::WRITE,
                    map::PRIVATE | map::ANONYMOUS,
                    None,
                    0,
                )
                .unwrap();
            Self {
                fx,
                mm,
                base,
                top: base + STACK_LEN,
            }
        }

        fn read(&mut self, va: u64, len: usize) -> Vec<u8> {
            let mut b = vec![0u8; len];
            copy_from_user(&mut self.mm, &mut self.fx.env(), va, &mut b).unwrap();
            b
        }

        fn write(&mut self, va: u64, data: &[u8]) {
            copy_to_user(&mut self.mm, &mut self.fx.env(), va, data).unwrap();
        }

        fn u64_at(&mut self, va: u64) -> u64 {
            get64(&self.read(va, 8), 0)
        }

        fn setup(
            &mut self,
            regs: &UserRegs,
            info: &SigInfo,
            act: &SigAction,
            blocked: u64,
            altstack: [u64; 3],
        ) -> KResult<UserRegs> {
            setup_rt_frame(
                &mut self.mm,
                &mut self.fx.env(),
                regs,
                &mut sample_fpu(),
                info,
                act,
                blocked,
                altstack,
                FAULT,
            )
        }

        fn restore(&mut self, rsp: u64) -> KResult<(UserRegs, [u8; 512], u64, [u64; 3])> {
            let mut fpu = [0xa5; 512];
            let (regs, mask, altstack) =
                restore_rt_frame(&mut self.mm, &mut self.fx.env(), rsp, &mut fpu)?;
            Ok((regs, fpu, mask, altstack))
        }
    }

    fn sample_regs(rsp: u64) -> UserRegs {
        UserRegs {
            r8: 0x0808,
            r9: 0x0909,
            r10: 0x1010,
            r11: 0x1111,
            r12: 0x1212,
            r13: 0x1313,
            r14: 0x1414,
            r15: 0x1515,
            rdi: 0xd1d1,
            rsi: 0x5151,
            rbp: 0xb9b9,
            rbx: 0xb0b0,
            rdx: 0xd0d0,
            rax: 0xa0a0,
            rcx: 0xc0c0,
            rsp,
            rip: 0x40_1234,
            rflags: USER_EFLAGS_BASE | eflags::CF | eflags::ZF | eflags::DF | eflags::TF,
        }
    }

    /// An FXSAVE image with a valid MXCSR and junk in the reserved bytes.
    fn sample_fpu() -> [u8; 512] {
        let mut f = [0u8; 512];
        for (i, b) in f.iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        put32(&mut f, off::FX_MXCSR, 0x1f80);
        f
    }

    fn act(flags: u64) -> SigAction {
        SigAction {
            handler: HANDLER,
            flags: flags | sa::RESTORER,
            restorer: RESTORER,
            mask: 0,
        }
    }

    fn segv_info() -> SigInfo {
        SigInfo {
            signo: nr::SIGSEGV as i32,
            errno: 0,
            code: 1, // SEGV_MAPERR
            addr_or_pid: 0xdead_beef,
            uid: 0,
            status: 0,
            value: 0,
        }
    }

    fn expected_frame(rsp: u64) -> (u64, u64) {
        let fp = (rsp - 128 - 512) & !63;
        (((fp - 440) & !15) - 8, fp)
    }

    #[test]
    fn offsets_match_linux_headers() {
        // struct sigcontext (64-bit): 18 u64 registers, 4 u16 selectors,
        // err, trapno, oldmask, cr2, fpstate, reserved1[8].
        assert_eq!(off::SC_RDI, 8 * 8);
        assert_eq!(off::SC_RSP, 15 * 8);
        assert_eq!(off::SC_RIP, 16 * 8);
        assert_eq!(off::SC_EFLAGS, 17 * 8);
        assert_eq!(off::SC_CS, 18 * 8);
        assert_eq!(off::SC_ERR, 18 * 8 + 8);
        assert_eq!(off::SC_FPSTATE, 23 * 8);
        assert_eq!(off::SC_SIZE, off::SC_RESERVED1 + 64);
        // struct ucontext: flags, link, stack_t (24), sigcontext, sigset.
        assert_eq!(off::UC_MCONTEXT, 8 + 8 + 24);
        assert_eq!(off::UC_SIGMASK, off::UC_MCONTEXT + off::SC_SIZE);
        assert_eq!(off::UC_SIZE, off::UC_SIGMASK + 8);
        // struct rt_sigframe: pretcode, uc, info.
        assert_eq!(off::INFO, off::UC + off::UC_SIZE);
        assert_eq!(FRAME_SIZE as usize, off::INFO + off::SI_SIZE);
        // uc_mcontext.rip within the frame: 8 + 40 + 128.
        assert_eq!(off::UC + off::UC_MCONTEXT + off::SC_RIP, 176);
        assert_eq!(off::UC + off::UC_MCONTEXT + off::SC_FPSTATE, 232);
        assert_eq!(off::UC + off::UC_SIGMASK, 304);
        assert_eq!(FIX_EFLAGS, 0x50dd5);
    }

    #[test]
    fn frame_sits_below_the_red_zone_aligned_like_a_call() {
        for rsp in [0x7fff_f000u64, 0x7fff_eff8, 0x7fff_eff3, 0x7fff_e001] {
            let lay = frame_layout(rsp, sa::RESTORER, NO_ALTSTACK).unwrap();
            let (frame, fp) = expected_frame(rsp);
            assert_eq!(lay, FrameLayout { frame, fpstate: fp });
            assert_eq!((lay.frame + 8) % 16, 0);
            assert_eq!(lay.fpstate % 64, 0);
            assert!(lay.frame + FRAME_SIZE <= lay.fpstate);
            assert!(lay.fpstate + FPSTATE_SIZE <= rsp - REDZONE);
        }
    }

    #[test]
    fn setup_writes_linux_layout() {
        let mut t = T::new();
        let rsp = t.top - 0x100 - 3; // misaligned on purpose
        let regs = sample_regs(rsp);
        let blocked = bit(2) | bit(15);
        let a = act(sa::SIGINFO);
        let r = t
            .setup(&regs, &segv_info(), &a, blocked, NO_ALTSTACK)
            .unwrap();
        let (frame, fp) = expected_frame(rsp);

        // Entry registers.
        assert_eq!(r.rsp, frame);
        assert_eq!((r.rsp + 8) % 16, 0);
        assert_eq!(r.rip, HANDLER);
        assert_eq!(r.rdi, 11);
        assert_eq!(r.rsi, frame + 312);
        assert_eq!(r.rdx, frame + 8);
        assert_eq!(r.rax, 0);
        assert_eq!(r.rflags, USER_EFLAGS_BASE | eflags::CF | eflags::ZF);
        assert_eq!(
            (r.rbx, r.rbp, r.r12, r.rcx),
            (0xb0b0, 0xb9b9, 0x1212, 0xc0c0)
        );

        let f = t.read(frame, FRAME_SIZE as usize);
        assert_eq!(get64(&f, 0), RESTORER);
        assert_eq!(get64(&f, 8), uc::SIGCONTEXT_SS | uc::STRICT_RESTORE_SS);
        assert_eq!(get64(&f, 16), 0); // uc_link
        assert_eq!(get64(&f, 24), 0); // ss_sp
        assert_eq!(get32(&f, 32), ss::DISABLE as u32);
        assert_eq!(get64(&f, 40), 0); // ss_size
                                      // uc_mcontext at 48.
        let words = [
            0x0808,
            0x0909,
            0x1010,
            0x1111,
            0x1212,
            0x1313,
            0x1414,
            0x1515,
            0xd1d1,
            0x5151,
            0xb9b9,
            0xb0b0,
            0xd0d0,
            0xa0a0,
            0xc0c0,
            rsp,
            0x40_1234,
            regs.rflags,
        ];
        for (i, w) in words.iter().enumerate() {
            assert_eq!(get64(&f, 48 + 8 * i), *w, "sigcontext word {i}");
        }
        assert_eq!(get64(&f, 176), 0x40_1234); // rip
        assert_eq!(get64(&f, 184), regs.rflags);
        assert_eq!(&f[192..200], &[0x33, 0, 0, 0, 0, 0, 0x2b, 0]); // cs gs fs ss
        assert_eq!(get64(&f, 200), 6); // err
        assert_eq!(get64(&f, 208), 14); // trapno
        assert_eq!(get64(&f, 216), blocked); // oldmask
        assert_eq!(get64(&f, 224), 0xdead_b000); // cr2
        assert_eq!(get64(&f, 232), fp); // fpstate
        assert_eq!(get64(&f, 304), blocked); // uc_sigmask
                                             // siginfo at 312.
        assert_eq!(get32(&f, 312), 11);
        assert_eq!(get32(&f, 316), 0);
        assert_eq!(get32(&f, 320), 1);
        assert_eq!(get64(&f, 312 + 16), 0xdead_beef);
        assert!(f[312 + 24..].iter().all(|&b| b == 0));

        // fpstate: the image, then _fpx_sw_bytes.
        let x = t.read(fp, 512);
        assert_eq!(&x[..464], &sample_fpu()[..464]);
        assert_eq!(get32(&x, 464), FP_XSTATE_MAGIC1);
        assert_eq!(get32(&x, 468), 516);
        assert_eq!(get64(&x, 472), 0);
        assert_eq!(get32(&x, 480), 512);
        assert!(x[484..].iter().all(|&b| b == 0));
    }

    #[test]
    fn round_trip_restores_everything() {
        let mut t = T::new();
        let rsp = t.top - 0x800;
        let mut regs = sample_regs(rsp);
        regs.rflags = USER_EFLAGS_BASE | eflags::CF | eflags::DF | eflags::AC | eflags::OF;
        let blocked = bit(3) | bit(20) | bit(64);
        let alt = [t.base, 0, 0x4000];
        let r = t
            .setup(&regs, &segv_info(), &act(sa::SIGINFO), blocked, alt)
            .unwrap();
        // The handler's `ret` pops pretcode.
        assert_eq!(t.u64_at(r.rsp), RESTORER);
        let (back, fpu, mask, uc_stack) = t.restore(r.rsp + 8).unwrap();
        assert_eq!(back, regs);
        assert_eq!(&fpu[..464], &sample_fpu()[..464]);
        assert!(fpu[464..].iter().all(|&b| b == 0));
        assert_eq!(mask, blocked);
        assert_eq!(uc_stack, alt);
    }

    #[test]
    fn restore_takes_handler_edits_and_sanitises() {
        let mut t = T::new();
        let regs = sample_regs(t.top - 0x800);
        let r = t
            .setup(&regs, &segv_info(), &act(0), 0, NO_ALTSTACK)
            .unwrap();
        let uc = r.rsp + 8;
        let sc = uc + off::UC_MCONTEXT as u64;
        // A handler skipping the faulting instruction, clearing IF, setting
        // IOPL/NT/ID and RF, and blocking SIGKILL.
        t.write(sc + off::SC_RIP as u64, &0x40_1240u64.to_le_bytes());
        t.write(sc + (off::SC_R8 + 13 * 8) as u64, &7u64.to_le_bytes());
        let fl = eflags::IOPL | eflags::NT | eflags::ID | eflags::RF | eflags::SF;
        t.write(sc + off::SC_EFLAGS as u64, &fl.to_le_bytes());
        let m = bit(9) | bit(19) | bit(5);
        t.write(uc + off::UC_SIGMASK as u64, &m.to_le_bytes());
        let (back, _, mask, _) = t.restore(uc).unwrap();
        assert_eq!(back.rip, 0x40_1240);
        assert_eq!(back.rax, 7);
        assert_eq!(back.rflags, USER_EFLAGS_BASE | eflags::RF | eflags::SF);
        assert_eq!(mask, bit(5));
    }

    #[test]
    fn without_siginfo_the_info_and_holes_are_left_alone() {
        let mut t = T::new();
        let rsp = t.top - 0x800;
        let junk = vec![0xaau8; 0x800];
        t.write(rsp - 0x800, &junk);
        let r = t
            .setup(&sample_regs(rsp), &segv_info(), &act(0), 0, NO_ALTSTACK)
            .unwrap();
        let f = t.read(r.rsp, FRAME_SIZE as usize);
        assert!(f[312..].iter().all(|&b| b == 0xaa), "siginfo untouched");
        assert_eq!(&f[36..40], &[0xaa; 4], "ss_flags padding untouched");
        assert!(
            f[240..304].iter().all(|&b| b == 0xaa),
            "reserved1 untouched"
        );
        assert_eq!(get64(&f, 0), RESTORER);
        assert_eq!(r.rsi, r.rsp + 312);
        // The red zone is untouched too.
        assert!(t.read(rsp - 128, 128).iter().all(|&b| b == 0xaa));
    }

    #[test]
    fn timer_and_signalfd_layouts() {
        let timer = SigInfo {
            signo: 34,
            code: si::TIMER,
            addr_or_pid: 3,
            uid: 2,
            status: 9,
            value: 0x1_0000_0005,
            ..Default::default()
        };
        let b = siginfo_bytes(&timer);
        assert_eq!(
            (get32(&b, 8), get32(&b, 16), get32(&b, 20)),
            (-2i32 as u32, 3, 2)
        );
        assert_eq!(get64(&b, 24), 0x1_0000_0005, "si_value");
        assert_eq!(get32(&b, 32), 0, "the generation stays private");
        let s = signalfd_siginfo_bytes(&timer);
        assert_eq!((get32(&s, 0), get32(&s, 24), get32(&s, 32)), (34, 3, 2));
        assert_eq!((get32(&s, 44), get64(&s, 48)), (5, 0x1_0000_0005));
        let chld = SigInfo {
            signo: nr::SIGCHLD as i32,
            code: 1,
            addr_or_pid: 42,
            status: 3,
            ..Default::default()
        };
        let s = signalfd_siginfo_bytes(&chld);
        assert_eq!((get32(&s, 12), get32(&s, 40)), (42, 3));
        let segv = SigInfo {
            signo: nr::SIGSEGV as i32,
            code: 1,
            addr_or_pid: 0xdead_beef_0000,
            ..Default::default()
        };
        let s = signalfd_siginfo_bytes(&segv);
        assert_eq!((get32(&s, 12), get64(&s, 72)), (0, 0xdead_beef_0000));
    }

    #[test]
    fn siginfo_layouts() {
        let chld = SigInfo {
            signo: nr::SIGCHLD as i32,
            errno: 0,
            code: 1, // CLD_EXITED
            addr_or_pid: 42,
            uid: 1000,
            status: 3,
            value: 0,
        };
        let b = siginfo_bytes(&chld);
        assert_eq!((get32(&b, 0), get32(&b, 8)), (17, 1));
        assert_eq!((get32(&b, 16), get32(&b, 20), get32(&b, 24)), (42, 1000, 3));
        assert!(b[28..].iter().all(|&x| x == 0));

        let kill = SigInfo {
            signo: SIGUSR1,
            code: si::USER,
            addr_or_pid: 7,
            uid: 5,
            status: 99,
            ..Default::default()
        };
        let b = siginfo_bytes(&kill);
        assert_eq!((get32(&b, 16), get32(&b, 20)), (7, 5));
        assert!(b[24..].iter().all(|&x| x == 0));

        let tkill = SigInfo {
            code: si::TKILL,
            ..kill
        };
        let b = siginfo_bytes(&tkill);
        assert_eq!(get32(&b, 8), (-6i32) as u32);
        assert_eq!((get32(&b, 16), get32(&b, 20), get32(&b, 24)), (7, 5, 99));

        // SIGSEGV sent with kill(): the kill layout, not si_addr.
        let b = siginfo_bytes(&SigInfo {
            signo: nr::SIGSEGV as i32,
            code: si::USER,
            addr_or_pid: 0x1_0000_0007,
            uid: 5,
            ..Default::default()
        });
        assert_eq!((get32(&b, 16), get32(&b, 20)), (7, 5));
        // SI_KERNEL SIGSEGV (e.g. #GP): also no address.
        let b = siginfo_bytes(&SigInfo {
            signo: nr::SIGSEGV as i32,
            code: si::KERNEL,
            addr_or_pid: 0,
            ..Default::default()
        });
        assert!(b[16..].iter().all(|&x| x == 0));
        // SIGFPE FPE_INTDIV: si_addr is the full 64-bit address.
        let b = siginfo_bytes(&SigInfo {
            signo: nr::SIGFPE as i32,
            code: 1,
            addr_or_pid: 0x7fff_1234_5678,
            ..Default::default()
        });
        assert_eq!(get64(&b, 16), 0x7fff_1234_5678);
    }

    #[test]
    fn no_restorer_is_efault() {
        let mut t = T::new();
        let mut a = act(sa::SIGINFO);
        a.flags &= !sa::RESTORER;
        let regs = sample_regs(t.top - 0x800);
        assert_eq!(
            t.setup(&regs, &segv_info(), &a, 0, NO_ALTSTACK),
            Err(Errno::EFAULT)
        );
    }

    #[test]
    fn onstack_switches_to_the_top_of_the_altstack() {
        let mut t = T::new();
        let alt = [t.base, 0, 0x4000];
        let rsp = t.top - 0x100;
        let r = t
            .setup(&sample_regs(rsp), &segv_info(), &act(sa::ONSTACK), 0, alt)
            .unwrap();
        let fp = (t.base + 0x4000 - 512) & !63;
        assert_eq!(r.rsp, ((fp - 440) & !15) - 8);
        assert_eq!(t.u64_at(r.rsp + 8 + 40 + off::SC_FPSTATE as u64), fp);
        // uc_stack records the setting; sigcontext the interrupted rsp.
        let f = t.read(r.rsp, FRAME_SIZE as usize);
        assert_eq!(
            (get64(&f, 24), get32(&f, 32), get64(&f, 40)),
            (t.base, 0, 0x4000)
        );
        assert_eq!(get64(&f, 48 + off::SC_RSP), rsp);
    }

    #[test]
    fn altstack_is_used_only_with_sa_onstack_and_when_enabled() {
        let alt = [0x1000_0000, 0, 0x4000];
        let rsp = 0x7fff_f000;
        let normal = frame_layout(rsp, 0, NO_ALTSTACK).unwrap();
        assert_eq!(frame_layout(rsp, 0, alt).unwrap(), normal);
        let disabled = [0x1000_0000, ss::DISABLE, 0x4000];
        assert_eq!(frame_layout(rsp, sa::ONSTACK, disabled).unwrap(), normal);
        assert_eq!(frame_layout(rsp, sa::ONSTACK, NO_ALTSTACK).unwrap(), normal);
        let lay = frame_layout(rsp, sa::ONSTACK, alt).unwrap();
        assert_eq!(lay.fpstate, 0x1000_4000 - 512);
    }

    #[test]
    fn nested_signal_on_the_altstack_stays_below_rsp() {
        let alt = [0x1000_0000, 0, 0x4000];
        let rsp = 0x1000_3000;
        let lay = frame_layout(rsp, sa::ONSTACK, alt).unwrap();
        assert_eq!(lay, {
            let (frame, fpstate) = expected_frame(rsp);
            FrameLayout { frame, fpstate }
        });
    }

    #[test]
    fn altstack_overflow_is_efault() {
        let alt = [0x1000_0000, 0, 0x4000];
        // Nested, near the bottom: the frame would go below ss_sp.
        assert_eq!(
            frame_layout(0x1000_0400, sa::ONSTACK, alt),
            Err(Errno::EFAULT)
        );
        // Nested even without SA_ONSTACK.
        assert_eq!(frame_layout(0x1000_0400, 0, alt), Err(Errno::EFAULT));
        // Entering a stack too small for the frame.
        let tiny = [0x1000_0000, 0, 512];
        assert_eq!(
            frame_layout(0x7fff_f000, sa::ONSTACK, tiny),
            Err(Errno::EFAULT)
        );
        // With SS_AUTODISARM a nested signal is not "on" the stack.
        let auto = [0x1000_0000, ss::AUTODISARM, 0x4000];
        assert!(frame_layout(0x1000_0400, 0, auto).is_ok());
    }

    #[test]
    fn unmapped_or_bad_stack_is_efault() {
        let mut t = T::new();
        let info = segv_info();
        let a = act(sa::SIGINFO);
        // Below the mapping: nothing there.
        let regs = sample_regs(t.base - 0x10_0000);
        assert_eq!(
            t.setup(&regs, &info, &a, 0, NO_ALTSTACK),
            Err(Errno::EFAULT)
        );
        // Just above the bottom: the frame would straddle into unmapped memory.
        let regs = sample_regs(t.base + 0x300);
        assert_eq!(
            t.setup(&regs, &info, &a, 0, NO_ALTSTACK),
            Err(Errno::EFAULT)
        );
        // Kernel half, non-canonical, and wrap-around below zero.
        for rsp in [0xffff_8000_0000_1000, TASK_SIZE + 0x1000, 0x100] {
            let regs = sample_regs(rsp);
            assert_eq!(
                t.setup(&regs, &info, &a, 0, NO_ALTSTACK),
                Err(Errno::EFAULT)
            );
        }
        // Read-only stack.
        t.mm.mprotect(&mut t.fx.env(), t.base, STACK_LEN, prot::READ)
            .unwrap();
        let regs = sample_regs(t.top - 0x100);
        assert_eq!(
            t.setup(&regs, &info, &a, 0, NO_ALTSTACK),
            Err(Errno::EFAULT)
        );
    }

    #[test]
    fn restore_rejects_bad_frames() {
        let mut t = T::new();
        assert_eq!(t.restore(t.base - 0x1000).err(), Some(Errno::EFAULT));
        assert_eq!(t.restore(4).err(), Some(Errno::EFAULT));
        assert_eq!(t.restore(TASK_SIZE - 8).err(), Some(Errno::EFAULT));

        let regs = sample_regs(t.top - 0x800);
        let r = t
            .setup(&regs, &segv_info(), &act(0), 0, NO_ALTSTACK)
            .unwrap();
        let uc = r.rsp + 8;
        let fpp = uc + (off::UC_MCONTEXT + off::SC_FPSTATE) as u64;
        let fp = t.u64_at(fpp);
        // Misaligned fpstate: FXRSTOR would fault.
        t.write(fpp, &(fp + 8).to_le_bytes());
        assert_eq!(t.restore(uc).err(), Some(Errno::EFAULT));
        // Unmapped fpstate.
        t.write(fpp, &(t.base - 0x1000).to_le_bytes());
        assert_eq!(t.restore(uc).err(), Some(Errno::EFAULT));
        // Reserved MXCSR bits.
        t.write(fpp, &fp.to_le_bytes());
        t.write(fp + off::FX_MXCSR as u64, &0x1_1f80u32.to_le_bytes());
        assert_eq!(t.restore(uc).err(), Some(Errno::EFAULT));
        // NULL fpstate: the initial FPU state.
        t.write(fpp, &0u64.to_le_bytes());
        let (back, fpu, _, _) = t.restore(uc).unwrap();
        assert_eq!(fpu, init_fpu());
        assert_eq!(back.rip, regs.rip);
    }

    #[test]
    fn restore_reads_only_the_ucontext() {
        // Linux reads uc_* only: a frame whose siginfo would lie past the end
        // of the mapping still restores.
        let mut t = T::new();
        let fp = t.top - 512;
        let uc = t.top - 512 - off::UC_SIZE as u64 - 64;
        let mut ucb = [0u8; off::UC_SIZE];
        put64(&mut ucb, off::UC_MCONTEXT + off::SC_RIP, 0x1234);
        put64(&mut ucb, off::UC_MCONTEXT + off::SC_FPSTATE, fp);
        t.write(uc, &ucb);
        t.write(fp, &init_fpu());
        let (back, _, _, _) = t.restore(uc).unwrap();
        assert_eq!(back.rip, 0x1234);
        let uc = t.top - off::UC_SIZE as u64;
        t.write(uc, &ucb);
        assert!(t.restore(uc).is_ok());
    }

    #[test]
    fn restore_altstack_follows_do_sigaltstack() {
        let cur = [0x1000_0000, 0, 0x4000];
        let new = [0x2000_0000, 0, 0x8000];
        assert_eq!(restore_altstack(cur, new, 0x7fff_0000), new);
        // Still on the current one: unchanged (EPERM ignored).
        assert_eq!(restore_altstack(cur, new, 0x1000_1000), cur);
        // Disable clears sp and size.
        assert_eq!(
            restore_altstack(cur, [5, ss::DISABLE, 9], 0x7fff_0000),
            [0, ss::DISABLE, 0]
        );
        // Invalid mode or too small: unchanged.
        assert_eq!(restore_altstack(cur, [5, 4, 0x8000], 0x7fff_0000), cur);
        assert_eq!(restore_altstack(cur, [5, 0, 100], 0x7fff_0000), cur);
        // The frame's own uc_stack round-trips.
        assert_eq!(restore_altstack(cur, cur, 0x7fff_0000), cur);
    }

    #[test]
    fn handler_mask_adds_sa_mask_and_the_signal() {
        let a = SigAction {
            handler: HANDLER,
            flags: sa::RESTORER,
            restorer: RESTORER,
            mask: bit(2) | bit(9),
        };
        assert_eq!(
            blocked_in_handler(bit(3), 10, &a),
            bit(2) | bit(3) | bit(10)
        );
        let nodefer = SigAction {
            flags: sa::RESTORER | sa::NODEFER,
            ..a
        };
        assert_eq!(blocked_in_handler(0, 10, &nodefer), bit(2));
    }

    #[test]
    fn init_fpu_is_fninit_state() {
        let f = init_fpu();
        assert_eq!(&f[..2], &[0x7f, 0x03]);
        assert_eq!(get32(&f, 24), 0x1f80);
        assert_eq!(
            f.iter().map(|&b| b as u32).sum::<u32>(),
            0x7f + 3 + 0x80 + 0x1f
        );
    }
}
