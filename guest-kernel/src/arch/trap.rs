//! Entering user mode and coming back: "run user mode until it traps".
//!
//! The user's registers live in one [`TrapFrame`] whose end is both the TSS's
//! RSP0 and IST1, so when user mode traps (an exception, or the syscall
//! trampoline's `int 0x80`) the CPU pushes its frame straight into it and
//! the entry stub pushes the general registers below that: no copying. The
//! stub then switches to the kernel stack saved by [`UserMode::run`] and
//! returns from it. The user's FPU/SSE state is not saved on entry: the
//! kernel uses no x87/SSE instruction, so the state stays in the registers
//! while the kernel runs, and [`UserMode::save_fpu`] and
//! [`UserMode::load_saved_fpu`] save and load it, in the task's own block,
//! when the running task changes (or a fork or sigreturn needs it;
//! [`UserMode::fpu`] reads it for a signal frame). `UserMode::run` declares r12-r15 clobbered, so the stubs
//! keep only the two callee-saved registers the compiler cannot give up
//! (rbx, rbp). A system call first goes to the handler `run` was given,
//! called from the stub with only the C ABI's scratch registers saved (see
//! `SYSCALL_STUB`): the getpid kind is answered there without saving or
//! restoring the rest. A page fault goes the same way to the fault handler
//! `run` was given (`vmrun_fault_entry`), which resolves an ordinary one
//! there. A trap taken in ring 0 (other than
//! the trampoline's, which ring 0 runs on hardware-virtualised hosts) is a
//! kernel bug and goes to [`kernel_trap`], which panics with the frame.

use super::cpu;
use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use guest_kernel::process::task::FxImage;
use guest_kernel::syscall::nr;
use vmrun_contract::trampoline;

/// Vector of the gate the syscall trampoline enters through.
pub const SYSCALL_VECTOR: u64 = 0x80;

/// Vector of the timer interrupt the host injects.
pub const TIMER_VECTOR: u64 = vmrun_contract::TIMER_VECTOR as u64;

/// Registers of the interrupted user context, in the order the entry stub
/// and the CPU push them (lowest address first). The six system-call
/// argument registers come together in their ABI order, so that a call
/// reads them in place ([`TrapFrame::syscall_args`]).
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default)]
#[allow(missing_docs)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub r10: u64,
    pub r8: u64,
    pub r9: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Interrupt vector.
    pub vector: u64,
    /// CPU error code (0 for vectors without one).
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// The system call's arguments: rdi, rsi, rdx, r10, r8, r9, read in
    /// place (copying them costs a load and a store each on every call).
    #[inline(always)]
    pub fn syscall_args(&self) -> &[u64; 6] {
        const _: () = assert!(
            core::mem::offset_of!(TrapFrame, rsi) == core::mem::offset_of!(TrapFrame, rdi) + 8
                && core::mem::offset_of!(TrapFrame, rdx)
                    == core::mem::offset_of!(TrapFrame, rdi) + 16
                && core::mem::offset_of!(TrapFrame, r10)
                    == core::mem::offset_of!(TrapFrame, rdi) + 24
                && core::mem::offset_of!(TrapFrame, r8)
                    == core::mem::offset_of!(TrapFrame, rdi) + 32
                && core::mem::offset_of!(TrapFrame, r9)
                    == core::mem::offset_of!(TrapFrame, rdi) + 40
        );
        // SAFETY: the frame is `repr(C)` with the six u64 fields rdi, rsi,
        // rdx, r10, r8, r9 adjacent in this order (asserted above), so
        // they form one `[u64; 6]` (same alignment), borrowed with `self`.
        unsafe { &*core::ptr::addr_of!(self.rdi).cast::<[u64; 6]>() }
    }
}

/// The FXSAVE image of the user's x87/SSE state.
#[repr(C, align(16))]
struct FpuArea([u8; 512]);

#[repr(C, align(16))]
struct Stack<const N: usize>([u8; N]);

const EMERGENCY_STACK_SIZE: usize = 16384;

struct Cell<T>(UnsafeCell<T>);
// SAFETY: one CPU; each cell is touched by the entry asm and by the holder
// of the unique `UserMode` token (or boot code), never concurrently.
unsafe impl<T> Sync for Cell<T> {}

static USER_FRAME: Cell<TrapFrame> = Cell(UnsafeCell::new(TrapFrame {
    r15: 0,
    r14: 0,
    r13: 0,
    r12: 0,
    r11: 0,
    r10: 0,
    r9: 0,
    r8: 0,
    rbp: 0,
    rdi: 0,
    rsi: 0,
    rdx: 0,
    rcx: 0,
    rbx: 0,
    rax: 0,
    vector: 0,
    error_code: 0,
    rip: 0,
    cs: 0,
    rflags: 0,
    rsp: 0,
    ss: 0,
}));
/// The armed system-call handler's context and address; set by each
/// [`UserMode::run`] before user mode runs (so always set when a stub
/// reads them: traps from user mode come only inside `run`).
static FAST_CX: Cell<u64> = Cell(UnsafeCell::new(0));
static FAST_FN: Cell<u64> = Cell(UnsafeCell::new(0));
static FAST_AUX: Cell<u64> = Cell(UnsafeCell::new(0));
/// The armed page-fault handler's address (with `FAST_CX` and `FAST_AUX`),
/// set by each [`UserMode::run`] as `FAST_FN` is.
static FAULT_FN: Cell<u64> = Cell(UnsafeCell::new(0));
static FPU: Cell<FpuArea> = Cell(UnsafeCell::new(FpuArea([0; 512])));
static KERNEL_RSP: Cell<u64> = Cell(UnsafeCell::new(0));
static KERNEL_RBP: Cell<u64> = Cell(UnsafeCell::new(0));
static EMERGENCY_STACK: Cell<Stack<EMERGENCY_STACK_SIZE>> =
    Cell(UnsafeCell::new(Stack([0; EMERGENCY_STACK_SIZE])));
static DOUBLE_FAULT_STACK: Cell<Stack<8192>> = Cell(UnsafeCell::new(Stack([0; 8192])));

global_asm!(
    r#"
    .section .text.trap, "ax"
    .macro TRAP_NOERR v
    trap_stub_\v:
        push 0
        push \v
        jmp trap_common
    .endm
    .macro TRAP_ERR v
    trap_stub_\v:
        push \v
        jmp trap_common
    .endm
    // The stubs of the exceptions and the timer, each at the start of its
    // slot of `{stride}` bytes (slot = vector) from the page after the
    // trampoline (the linker script puts this section first in .text), so
    // that the IDT is a constant (`idt::TABLE`); `.org` refuses a stub
    // that outgrows its slot. Vector 6 is a system-call stub, below.
    .pushsection .text.trap_stubs, "ax"
    .global vmrun_trap_slots
    vmrun_trap_slots:
    .macro SLOT v, kind
    .org vmrun_trap_slots + \v * {stride}
    TRAP_\kind \v
    .endm
    .irp v, 0,1,2,3,4,5
    SLOT \v, NOERR
    .endr
    SLOT 7, NOERR
    SLOT 8, ERR
    SLOT 9, NOERR
    .irp v, 10,11,12,13
    SLOT \v, ERR
    .endr
    .org vmrun_trap_slots + 14 * {stride}
    trap_stub_14:
        cld
        jmp vmrun_fault_entry
    .irp v, 15,16
    SLOT \v, NOERR
    .endr
    SLOT 17, ERR
    .irp v, 18,19,20
    SLOT \v, NOERR
    .endr
    SLOT 21, ERR
    .irp v, 22,23,24,25,26,27,28
    SLOT \v, NOERR
    .endr
    .irp v, 29,30
    SLOT \v, ERR
    .endr
    .irp v, 31,32
    SLOT \v, NOERR
    .endr
    .popsection

    // The end of a fast entry (a system call's or a page fault's) whose
    // handler served it: the scratch registers back from the frame, where
    // the entry stored them (the handler may have changed rax), and
    // straight back to the program.
    .macro RESUME_USER
        mov r11, [rip + {frame} + 32]
        mov rdi, [rip + {frame} + 48]
        mov rsi, [rip + {frame} + 56]
        mov rdx, [rip + {frame} + 64]
        mov r10, [rip + {frame} + 72]
        mov r8, [rip + {frame} + 80]
        mov r9, [rip + {frame} + 88]
        mov rcx, [rip + {frame} + 96]
        mov rax, [rip + {frame} + 112]
        lea rsp, [rip + {frame} + 136]
        iretq
    .endm
    // The end of a fast entry whose handler left the trap to the loop: the
    // registers a C function keeps, still the user's, go into the frame
    // beside the scratch ones, and `UserMode::run` returns as from any
    // trap (its frame and saved rbx, as `trap_common` ends).
    .macro BACK_TO_LOOP
        mov [rip + {frame} + 104], rbx
        mov [rip + {frame} + 40], rbp
        mov [rip + {frame} + 24], r12
        mov [rip + {frame} + 16], r13
        mov [rip + {frame} + 8], r14
        mov [rip + {frame}], r15
        mov rsp, [rip + {krsp}]
        mov rbp, [rip + {krbp}]
        pop rbx
        ret
    .endm

    // The two ways a system call arrives (see `is_syscall_entry`): #UD
    // at the trampoline (kvm_pvm), `int 0x80` just after it (VMX/SVM).
    // Such a trap saves only the registers a C function may clobber and
    // calls the handler `UserMode::run` armed, on the kernel stack:
    // the user's rbx, rbp and r12-r15 stay in their registers, preserved
    // by the handler as the C ABI requires. If the handler served the
    // call, the program goes straight back; else the rest of the frame
    // is stored and the trap continues as any other.
    .macro SYSCALL_STUB v, at
    trap_stub_\v:
        cmp qword ptr [rsp], \at
        je syscall_fast_\v
        push 0
        push \v
        jmp trap_common
    // A symbol of its own: `vmrun bench` counts a kernel entry from the
    // first instruction in a `trap_stub_N`, so the way back must not be
    // inside one. No `cld`: SYSCALL cleared DF (boot's SFMASK), and only
    // a SYSCALL reaches the trampoline.
    syscall_fast_\v:
        mov [rsp - 24], rax
        mov [rsp - 40], rcx
        mov [rsp - 48], r9
        mov [rsp - 56], r8
        mov [rsp - 64], r10
        mov [rsp - 72], rdx
        mov [rsp - 80], rsi
        mov [rsp - 88], rdi
        mov [rsp - 104], r11
        mov rdi, [rip + {fastcx}]
        mov rdx, [rip + {fastaux}]
        lea rsi, [rsp - 136]
        mov rsp, [rip + {krsp}]
        call [rip + {fastfn}]
        test al, al
        jz 3f
        RESUME_USER
    3:
        mov qword ptr [rip + {frame} + 120], \v
        mov qword ptr [rip + {frame} + 128], 0
        BACK_TO_LOOP
    .endm
    SYSCALL_STUB 6, {tramp} + {slow}
    SYSCALL_STUB 128, {tramp} + {slow} + 2

    // A page fault from user mode first goes to the fault handler
    // `UserMode::run` armed, as a system call goes to its handler: only
    // the registers a C function may clobber are saved, and the handler
    // gets the error code and the faulting address (CR2). If it
    // resolved the fault, the program goes straight back; else the rest
    // of the frame is stored and the fault returns from `run` as any
    // trap. A fault in ring 0 goes to `trap_common` (a kernel bug). The
    // stub (in its slot, `cld` then the jump: `vmrun bench` needs two
    // instructions there to see an entry) clears DF, which the program
    // may have set. The entry and the way back are symbols of their own
    // (see the syscall stubs), which `vmrun bench`'s single-step check
    // counts.
    .global vmrun_fault_entry
    vmrun_fault_entry:
        test byte ptr [rsp + 16], 3
        jz 4f
        mov [rsp - 16], rax
        mov [rsp - 32], rcx
        mov [rsp - 40], r9
        mov [rsp - 48], r8
        mov [rsp - 56], r10
        mov [rsp - 64], rdx
        mov [rsp - 72], rsi
        mov [rsp - 80], rdi
        mov [rsp - 96], r11
        mov rdi, [rip + {fastcx}]
        mov rsi, [rsp]
        mov rdx, [rip + {fastaux}]
        mov rcx, cr2
        mov rsp, [rip + {krsp}]
        call [rip + {faultfn}]
    .global vmrun_fault_return
    vmrun_fault_return:
        test al, al
        jz 3f
        RESUME_USER
    3:
        mov qword ptr [rip + {frame} + 120], 14
        BACK_TO_LOOP
    4:
        push 14
        jmp trap_common

    trap_common:
        cld
        push rax
        push rbx
        push rcx
        push r9
        push r8
        push r10
        push rdx
        push rsi
        push rdi
        push rbp
        push r11
        push r12
        push r13
        push r14
        push r15
        test byte ptr [rsp + 144], 3
        jnz 2f
        cmp qword ptr [rsp + 120], 0x80
        jne 3f
    2:
        mov rsp, [rip + {krsp}]
        mov rbp, [rip + {krbp}]
        pop rbx
        ret
    3:
        mov rdi, rsp
        lea rsp, [rip + {emergency} + {emergency_size}]
        call {kernel_trap}
        ud2

    .global vmrun_run_user
    // The kernel's rbp is kept in a cell, not pushed, so that the saved
    // stack pointer is 16-byte aligned (the asm that calls this starts
    // on an aligned stack, and the call and one push make 16 bytes): the
    // syscall stubs call their handler right on it, and its return
    // address goes below the saved rbx.
    vmrun_run_user:
        push rbx
        mov [rip + {krsp}], rsp
        mov [rip + {krbp}], rbp
        lea rsp, [rip + {frame}]
        pop r15
        pop r14
        pop r13
        pop r12
        pop r11
        pop rbp
        pop rdi
        pop rsi
        pop rdx
        pop r10
        pop r8
        pop r9
        pop rcx
        pop rbx
        pop rax
        add rsp, 16
        iretq

    .section .rodata.trap, "a"
    .global vmrun_syscall_stubs
    vmrun_syscall_stubs:
        .quad trap_stub_6
        .quad trap_stub_128

    // SYSCALL lands here (LSTAR). A read of fds 0 to 2 or a write or
    // writev to them that the kernel opened in the fast-call table
    // (`trampoline::TABLE`, indexed by call number times four plus fd;
    // the bytes of calls 2 to 19 are 0;
    // flags only are clobbered, which SYSRET and the kernel's return take
    // from R11 anyway) is offered to the VMM by the `out`: it answers and
    // returns to the program, or declines and the vCPU goes on at the
    // `int 0x80`, the way into the kernel for every other call. A read of
    // fd 0 whose table byte also has `trampoline::RING` (kvm_pvm only)
    // first goes to the stdin ring (below the table). A call of a path
    // (newfstatat, statx, readlink, readlinkat, getxattr, lgetxattr,
    // access, faccessat, faccessat2), whatever its arguments, is offered
    // to the VMM the same way when the table's `trampoline::PATH_BYTE` is
    // open (the VMM serves a path the host resolves and declines the
    // rest). `.org` keeps the offsets the contract names
    // (`trampoline::SLOW` and `SYSRET`) and the first two tests'
    // displacements where boot can patch them (it finds the others by
    // their labels); the table's address in the tests is the
    // user-readable one, which boot changes to the image's
    // supervisor-only view of the same page where ring 0 runs the
    // trampoline (SMAP refuses the other).
    .section .trampoline, "ax"
    .global vmrun_syscall_trampoline
    .global vmrun_trampoline_ring
    .global vmrun_trampoline_ring_copy
    .global vmrun_trampoline_path_test
    .global vmrun_trampoline_class_test
    .global vmrun_trampoline_quick_test
    .global vmrun_trampoline_quick_return
    .global vmrun_trampoline_brk_test
    .global vmrun_trampoline_brk_load
    vmrun_syscall_trampoline:
        cmp rax, 20
        ja 3f
        cmp rdi, 2
        ja 2f
    .org vmrun_syscall_trampoline + {table_test}, 0x90
        test byte ptr [rdi + rax * 4 + {table}], {open}
        jz 4f
    .org vmrun_syscall_trampoline + {ring_test}, 0x90
        test byte ptr [rdi + rax * 4 + {table}], {ring}
        jnz vmrun_trampoline_ring
    .org vmrun_syscall_trampoline + {out}, 0x90
    7:
        out {port}, al
    2:
    .org vmrun_syscall_trampoline + {slow}
        int 0x80
        ud2
    .org vmrun_syscall_trampoline + {sysret}
        sysretq
    // A call above 20 (and up to faccessat2's, the class table's last):
    // its class byte's `QUICK` first (a call answered here, below), then
    // the table's `PATH_BYTE` (closed, as nearly always outside runs of
    // such calls, two instructions more than the way straight to the
    // `int 0x80`), then whether the call is one of a path (its class
    // byte's bit 1).
    3:
        cmp rax, {faccessat2}
        ja 2b
    vmrun_trampoline_quick_test:
        test byte ptr [rax + {classes}], {quick}
        jnz 5f
    vmrun_trampoline_path_test:
        test byte ptr [{table} + {path_byte}], {open}
        jz 2b
    vmrun_trampoline_class_test:
        test byte ptr [rax + {classes}], 1
        jz 2b
    // An fstat by fd (newfstatat or statx with AT_EMPTY_PATH: flags in
    // R10, or RDX for statx) goes to the kernel at once, which the VMM
    // would decline: glibc's fstat after an open that left the table
    // open (`run::full_call_neutral`).
        cmp eax, {newfstatat}
        je 6f
        cmp eax, {statx}
        jne 7b
        test edx, {at_empty_path}
        jnz 2b
        jmp 7b
    6:
        test r10d, {at_empty_path}
        jnz 2b
        jmp 7b
    // The calls whose answer the kernel never changes: rseq, which it
    // does not provide (ENOSYS whatever the arguments), and getuid,
    // getgid, geteuid and getegid (0: the guest's one user is root),
    // answered here without entering it. Their class bytes have `QUICK`
    // unless the run's calls are watched (`close_quick_answers`). A return
    // address that is not a user one goes to the kernel (which kills the
    // program). The return: on kvm_pvm, where the trampoline runs in user
    // mode, a jump to RCX (RFLAGS as the tests left them, TF, DF and AC
    // clear as SYSCALL left them, as the stdin ring's return); where it
    // runs in ring 0 (VMX/SVM) boot makes it a `sysretq`
    // (`table_test_in_ring0`).
    5:
        bt rcx, 47
        jc 2b
        cmp eax, {rseq}
        mov rax, -{enosys}
        je vmrun_trampoline_quick_return
        xor eax, eax
    vmrun_trampoline_quick_return:
        jmp rcx
        nop
    // brk(0): the running address space's break, which the kernel writes
    // in the page's `BRK_WORD` at every return to user mode but the short
    // ones of calls that do not change it (`publish_brk`). Its class byte
    // has `QUICK` as the others'.
    4:
        test rdi, rdi
        jnz 2b
        cmp eax, {brk}
        jne 2b
    vmrun_trampoline_brk_test:
        test byte ptr [{classes} + {brk}], {quick}
        jz 2b
        bt rcx, 47
        jc 2b
    vmrun_trampoline_brk_load:
        // mov rax, qword ptr [disp32] (spelled out: boot patches the
        // displacement at +4)
        .byte 0x48, 0x8b, 0x04, 0x25
        .long {brk_word}
        jmp vmrun_trampoline_quick_return
    .org vmrun_syscall_trampoline + {table_off}
        .quad 0
    .org vmrun_syscall_trampoline + {table_off} + {table_span}, 0

    // The stdin ring (`vmrun_contract::stdin_ring`), reached with the
    // user's rights on kvm_pvm only, for read(0, rsi, rdx): RAX and RDI
    // are 0 here (only byte 0 of the table has the bit). Up to the copy
    // only RAX and RDI change, and the one instruction that may fault is
    // the probe of the user's buffer: a fault there that the kernel
    // cannot resolve (a bad buffer) sets both back to 0 and resumes at
    // the `int 0x80`, where the kernel serves the read
    // (`trap::ring_rewind`). From the copy on nothing faults: every page
    // of the buffer was written by a probe, and the ring is mapped. An
    // interrupt anywhere in the trampoline returns to it as it was
    // (`trap::in_trampoline`). An empty ring goes to the VMM through the
    // `out`; a garbled header or a buffer the range checks refuse to the
    // kernel. RCX and R11 both come back holding the return address and
    // RFLAGS as the copy left it (DF, TF and AC clear, as SYSCALL left
    // them), which a system call may clobber.
    vmrun_trampoline_ring:
        mov rax, qword ptr [{ring_head}]
        sub rax, qword ptr [{ring_tail}]
        jz 7b
        cmp rax, {ring_size}
        ja 8f
        cmp rax, rdx
        cmova rax, rdx
        mov rdi, qword ptr [{ring_tail}]
        and edi, {ring_mask}
        neg rdi
        add rdi, {ring_size}
        cmp rax, rdi
        cmova rax, rdi
        test rax, rax
        jz 8f
        mov rdi, rsi
        add rdi, rax
        jc 8f
        sub rdi, 1
        shr rdi, 47
        jnz 8f
        mov rdi, rsi
    9:
        or byte ptr [rdi], 0
        or rdi, 0xfff
        add rdi, 1
        sub rdi, rsi
        cmp rdi, rax
        jae vmrun_trampoline_ring_copy
        add rdi, rsi
        jmp 9b
    vmrun_trampoline_ring_copy:
        mov r11, rcx
        mov rdi, rsi
        mov rsi, qword ptr [{ring_tail}]
        and esi, {ring_mask}
        add rsi, {ring_data}
        mov rcx, rax
        rep movsb
        sub rdi, rax
        mov rsi, rdi
        xor edi, edi
        add qword ptr [{ring_tail}], rax
        mov rcx, r11
        jmp rcx
    8:
        xor eax, eax
        xor edi, edi
        jmp 2b

    // The class of each call, by number (0 to faccessat2's): 1 for the
    // calls of a path (access, readlink, getxattr, lgetxattr, newfstatat,
    // readlinkat, faccessat, statx and faccessat2), `QUICK` for those the
    // trampoline answers (brk of 0, getuid, getgid, geteuid, getegid and
    // rseq: the calls of `QUICK_CALLS`, which must list the same).
    .org vmrun_syscall_trampoline + {classes_off}, 0
        .fill {brk}, 1, 0
        .byte {quick}
        .fill {access} - {brk} - 1, 1, 0
        .byte 1
        .fill {readlink} - {access} - 1, 1, 0
        .byte 1
        .fill {getuid} - {readlink} - 1, 1, 0
        .byte {quick}, 0, {quick}, 0, 0, {quick}, {quick}
        .fill {getxattr} - {getegid} - 1, 1, 0
        .byte 1, 1
        .fill {newfstatat} - {lgetxattr} - 1, 1, 0
        .byte 1
        .fill {readlinkat} - {newfstatat} - 1, 1, 0
        .byte 1
        .fill {faccessat} - {readlinkat} - 1, 1, 0
        .byte 1
        .fill {statx} - {faccessat} - 1, 1, 0
        .byte 1, 0, {quick}
        .fill {faccessat2} - {rseq} - 1, 1, 0
        .byte 1

    // The break that brk(0) answers (`BRK_WORD`): the page's last word,
    // kept for it (an assembler error if the page's contents reach it).
    .org vmrun_syscall_trampoline + {brk_word_off}, 0
        .quad 0
    "#,
    krsp = sym KERNEL_RSP,
    krbp = sym KERNEL_RBP,
    frame = sym USER_FRAME,
    emergency = sym EMERGENCY_STACK,
    emergency_size = const EMERGENCY_STACK_SIZE,
    kernel_trap = sym kernel_trap,
    fastcx = sym FAST_CX,
    fastfn = sym FAST_FN,
    fastaux = sym FAST_AUX,
    faultfn = sym FAULT_FN,
    tramp = const vmrun_contract::layout::SYSCALL_TRAMPOLINE_VIRT as i64,
    stride = const STUB_STRIDE,
    table_test = const TABLE_TEST,
    table = const (vmrun_contract::layout::SYSCALL_TRAMPOLINE_VIRT + trampoline::TABLE) as i64,
    open = const trampoline::OPEN,
    slow = const trampoline::SLOW,
    out = const trampoline::OUT,
    sysret = const trampoline::SYSRET,
    table_off = const trampoline::TABLE,
    ring_test = const RING_TEST,
    path_byte = const trampoline::PATH_BYTE,
    classes = const (vmrun_contract::layout::SYSCALL_TRAMPOLINE_VIRT + PATH_CLASSES) as i64,
    classes_off = const PATH_CLASSES,
    access = const guest_kernel::syscall::nr::ACCESS,
    readlink = const guest_kernel::syscall::nr::READLINK,
    getxattr = const guest_kernel::syscall::nr::GETXATTR,
    lgetxattr = const guest_kernel::syscall::nr::LGETXATTR,
    newfstatat = const guest_kernel::syscall::nr::NEWFSTATAT,
    readlinkat = const guest_kernel::syscall::nr::READLINKAT,
    statx = const guest_kernel::syscall::nr::STATX,
    faccessat = const guest_kernel::syscall::nr::FACCESSAT,
    faccessat2 = const guest_kernel::syscall::nr::FACCESSAT2,
    at_empty_path = const guest_kernel::syscall::files::AT_EMPTY_PATH,
    rseq = const guest_kernel::syscall::nr::RSEQ,
    brk = const guest_kernel::syscall::nr::BRK,
    brk_word_off = const BRK_WORD,
    brk_word = const (vmrun_contract::layout::SYSCALL_TRAMPOLINE_VIRT + BRK_WORD) as i64 as i32,
    getuid = const guest_kernel::syscall::nr::GETUID,
    getegid = const guest_kernel::syscall::nr::GETEGID,
    quick = const QUICK,
    enosys = const guest_kernel::errno::Errno::ENOSYS as i64,
    table_span = const trampoline::TABLE_SPAN,
    ring = const trampoline::RING,
    ring_head = const (vmrun_contract::layout::STDIN_RING_HEADER_VIRT + vmrun_contract::stdin_ring::HEAD) as i64,
    ring_tail = const (vmrun_contract::layout::STDIN_RING_HEADER_VIRT + vmrun_contract::stdin_ring::TAIL) as i64,
    ring_data = const vmrun_contract::layout::STDIN_RING_DATA_VIRT as i64,
    ring_size = const vmrun_contract::stdin_ring::SIZE,
    ring_mask = const vmrun_contract::stdin_ring::SIZE - 1,
    port = const vmrun_contract::FAST_CALL_PORT,
);

extern "C" {
    static vmrun_trap_slots: u8;
    static vmrun_syscall_stubs: [u64; 2];
}

/// Where the linker script puts the exception and timer stubs: the page
/// after the trampoline, the start of the image's text.
pub const STUBS_VIRT: u64 = vmrun_contract::layout::KERNEL_VIRT_BASE
    + vmrun_contract::layout::SYSCALL_TRAMPOLINE_PHYS
    + vmrun_contract::layout::PAGE_SIZE;

/// Bytes from one stub's start to the next's (the stub of vector `v`, or
/// of the timer's 0x20, is at `STUBS_VIRT + v * STUB_STRIDE`).
pub const STUB_STRIDE: u64 = 16;

/// Whether the stubs lie where [`STUBS_VIRT`] says (the linker script's
/// placement; the assembler checks the slots within).
pub fn stubs_in_place() -> bool {
    core::ptr::addr_of!(vmrun_trap_slots) as u64 == STUBS_VIRT
}

/// Entry addresses of the two system-call stubs: #UD (vector 6) and
/// vector 0x80.
pub fn syscall_stubs() -> [u64; 2] {
    // SAFETY: a read-only table emitted by the asm above.
    unsafe { vmrun_syscall_stubs }
}

/// Offset of the instruction after the trampoline's `int 0x80`.
pub const TRAMPOLINE_RETURN_OFFSET: u64 = trampoline::SLOW_RETURN;

/// Offset in the trampoline of its `test` of the fast-call table
/// (`test byte ptr [rdi + rax * 4 + disp32], imm8`: opcode, ModRM and SIB,
/// then the displacement, which this puts at an offset of 16, in the low
/// half of an aligned word).
const TABLE_TEST: u64 = 13;

/// Offset of its second `test` of the table (of the ring bit), laid out
/// the same way: the displacement at 32.
const RING_TEST: u64 = 29;

/// Offset in the trampoline page of its byte per call number that says
/// which calls are calls of a path (up to faccessat2's, 439), past the
/// stdin ring's code.
const PATH_CLASSES: u64 = 0xc00;

/// Point the trampoline's tests of the fast-call table at the image's
/// supervisor-only view of the trampoline page: where SYSCALL enters ring
/// 0 (VMX/SVM), SMAP refuses ring 0 the user-readable address they are
/// assembled with. At boot, before any program runs; through the direct
/// map (`mem`), as the image's text is mapped read-only.
pub fn table_test_in_ring0(mem: &mut super::phys::DirectMap) {
    use guest_kernel::mm::phys::PhysMem;
    use vmrun_contract::layout::{KERNEL_VIRT_BASE, SYSCALL_TRAMPOLINE_PHYS};
    // The trampoline page in the image, and its table there.
    let image = KERNEL_VIRT_BASE + SYSCALL_TRAMPOLINE_PHYS;
    let view = image + trampoline::TABLE;
    const { assert!((TABLE_TEST + 3).is_multiple_of(8) && (RING_TEST + 3).is_multiple_of(8)) };
    for test in [TABLE_TEST, RING_TEST] {
        let at = SYSCALL_TRAMPOLINE_PHYS + test + 3;
        let old = mem.read_u64(at);
        let disp = u64::from(view as u32);
        mem.write_u64(at, (old & !0xffff_ffff) | disp);
    }
    // The tests of the calls of a path: `test byte ptr [disp32], imm8`
    // (opcode, ModRM, SIB, displacement) and `test byte ptr [rax +
    // disp32], imm8` (opcode, ModRM, displacement).
    let (path_test, class_test, quick_test) = path_tests();
    for (at, disp) in [
        (path_test + 3, view + trampoline::PATH_BYTE),
        (class_test + 2, image + PATH_CLASSES),
        (quick_test + 2, image + PATH_CLASSES),
    ] {
        mem.write_bytes(SYSCALL_TRAMPOLINE_PHYS + at, &(disp as u32).to_le_bytes());
    }
    // brk's tests: `test byte ptr [disp32], imm8` and `mov rax, qword ptr
    // [disp32]` (opcode, ModRM, SIB, displacement; REX first for the mov).
    let base = core::ptr::addr_of!(vmrun_syscall_trampoline) as u64;
    let brk_test = core::ptr::addr_of!(vmrun_trampoline_brk_test) as u64 - base;
    let brk_load = core::ptr::addr_of!(vmrun_trampoline_brk_load) as u64 - base;
    for (at, disp) in [
        (brk_test + 3, image + PATH_CLASSES + nr::BRK),
        (brk_load + 4, image + BRK_WORD),
    ] {
        mem.write_bytes(SYSCALL_TRAMPOLINE_PHYS + at, &(disp as u32).to_le_bytes());
    }
    // The quick answers return with `sysretq` (48 0f 07) in place of the
    // `jmp rcx` and `nop` that return to user mode on kvm_pvm.
    let ret = core::ptr::addr_of!(vmrun_trampoline_quick_return) as u64 - base;
    mem.write_bytes(SYSCALL_TRAMPOLINE_PHYS + ret, &[0x48, 0x0f, 0x07]);
}

/// Offsets in the trampoline page of its tests of the calls of a path
/// and of its test of rseq's class byte.
fn path_tests() -> (u64, u64, u64) {
    let base = core::ptr::addr_of!(vmrun_syscall_trampoline) as u64;
    let path = core::ptr::addr_of!(vmrun_trampoline_path_test) as u64 - base;
    let class = core::ptr::addr_of!(vmrun_trampoline_class_test) as u64 - base;
    let quick = core::ptr::addr_of!(vmrun_trampoline_quick_test) as u64 - base;
    (path, class, quick)
}

/// The bit of a call's class byte (at [`PATH_CLASSES`]) with which the
/// trampoline answers the call itself, without entering the kernel: the
/// calls whose answer never changes (rseq's ENOSYS; getuid, getgid,
/// geteuid and getegid's 0) and brk(0) (the break the kernel publishes).
/// Assembled set.
const QUICK: u8 = 2;

/// The calls the trampoline answers itself ([`QUICK`]), by number (brk
/// only for 0): those whose class byte the trampoline's assembly sets,
/// which must be the same.
pub const QUICK_CALLS: [u64; 6] = [
    nr::BRK,
    nr::GETUID,
    nr::GETGID,
    nr::GETEUID,
    nr::GETEGID,
    nr::RSEQ,
];

/// Offset in the trampoline page of the word holding the running address
/// space's break, with which the trampoline answers brk(0)
/// ([`publish_brk`]).
const BRK_WORD: u64 = 0xff8;

/// Write `brk`, the running address space's break, where the trampoline
/// answers brk(0) from ([`BRK_WORD`]): at every return to user mode that
/// may follow a change of it or of the running process (every return but
/// the short ones of calls that change neither), and after a brk call
/// on the short path. A few instructions; the answer costs no kernel
/// entry (glibc asks twice as a program starts).
#[inline(always)]
pub fn publish_brk(brk: u64) {
    use vmrun_contract::layout::{DIRECT_MAP_BASE, SYSCALL_TRAMPOLINE_PHYS};
    let word = (DIRECT_MAP_BASE + SYSCALL_TRAMPOLINE_PHYS + BRK_WORD) as *mut u64;
    // SAFETY: the trampoline page is part of the kernel image, in RAM,
    // which the direct map maps writable; the word is aligned and nothing
    // but this store and the trampoline's load touch it. One store, with
    // no range check (a return to user mode makes it).
    unsafe { core::ptr::write_volatile(word, brk) }
}

/// Send the calls the trampoline would answer itself ([`QUICK`]) to the
/// kernel after all: for a run whose system calls are watched (`--strace`,
/// `--stats`, `-v`, traced calls) or stopped at by a debugger, which must
/// see every call enter it. Elsewhere they cost no kernel entry, which on
/// kvm_pvm is tens of microseconds (every glibc program calls rseq at
/// start-up, bash the four others). Through the direct map, as the
/// image's text is mapped read-only.
pub fn close_quick_answers(mem: &mut super::phys::DirectMap) {
    use guest_kernel::mm::phys::PhysMem;
    use vmrun_contract::layout::SYSCALL_TRAMPOLINE_PHYS;
    for n in QUICK_CALLS {
        mem.write_bytes(SYSCALL_TRAMPOLINE_PHYS + PATH_CLASSES + n, &[0]);
    }
}

extern "C" {
    static vmrun_syscall_trampoline: u8;
    static vmrun_trampoline_ring: u8;
    static vmrun_trampoline_ring_copy: u8;
    static vmrun_trampoline_path_test: u8;
    static vmrun_trampoline_class_test: u8;
    static vmrun_trampoline_quick_test: u8;
    static vmrun_trampoline_quick_return: u8;
    static vmrun_trampoline_brk_test: u8;
    static vmrun_trampoline_brk_load: u8;
}

/// Offsets in the trampoline page of the stdin ring's code, `[start,
/// copy)`: where RAX and RDI alone have changed and the probe of the
/// user's buffer may fault.
fn ring_rewind_range() -> (u64, u64) {
    let base = core::ptr::addr_of!(vmrun_syscall_trampoline) as u64;
    let start = core::ptr::addr_of!(vmrun_trampoline_ring) as u64 - base;
    let copy = core::ptr::addr_of!(vmrun_trampoline_ring_copy) as u64 - base;
    (start, copy)
}

/// Whether user-mode `rip` is in the syscall trampoline: a SYSCALL whose
/// trampoline code (the fast-call tests, the stdin ring's copy) an
/// interrupt or a fault came in the middle of. Where the trampoline runs
/// with user rights (kvm_pvm) such an entry returns to it as it was: no
/// signal is delivered there and no other task runs before it has
/// finished (the stdin ring's copy must not be interleaved with another).
pub fn in_trampoline(rip: u64) -> bool {
    rip.wrapping_sub(vmrun_contract::layout::SYSCALL_TRAMPOLINE_VIRT)
        < vmrun_contract::layout::PAGE_SIZE
}

/// A fault the kernel could not resolve at user-mode `rip`: if it is the
/// stdin ring's probe of a bad buffer (or anything else before its copy),
/// set RAX and RDI back to 0 (read, fd 0) and `rip` to the trampoline's
/// `int 0x80`, so that the kernel serves the read (and fails it with
/// EFAULT as natively), and say so. The other registers are as the
/// program's SYSCALL left them.
pub fn ring_rewind(rip: &mut u64, rax: &mut u64, rdi: &mut u64) -> bool {
    let t = vmrun_contract::layout::SYSCALL_TRAMPOLINE_VIRT;
    let (start, copy) = ring_rewind_range();
    let at = rip.wrapping_sub(t);
    if !(start..copy).contains(&at) {
        return false;
    }
    *rip = t + trampoline::SLOW;
    *rax = 0;
    *rdi = 0;
    true
}

/// Whether a trap is the program's SYSCALL arriving through the trampoline.
///
/// Where ring 0 runs natively (VMX/SVM), SYSCALL lands on the trampoline in
/// ring 0 and its `int 0x80` arrives as vector 0x80 just after it. On
/// kvm_pvm, code entered by SYSCALL runs in a mode where that `int` raises
/// #UD instead, delivered through the IDT at the trampoline's first byte.
/// Either way the user's return address is in RCX and its RFLAGS in R11.
pub fn is_syscall_entry(vector: u64, rip: u64) -> bool {
    let t = vmrun_contract::layout::SYSCALL_TRAMPOLINE_VIRT;
    (vector == SYSCALL_VECTOR && rip == t + TRAMPOLINE_RETURN_OFFSET)
        || (vector == 6 && rip == t + trampoline::SLOW)
}

/// Where the CPU starts pushing a trap frame from user mode (RSP0 and IST1).
pub fn user_frame_top() -> u64 {
    USER_FRAME.0.get() as u64 + core::mem::size_of::<TrapFrame>() as u64
}

/// Top of the double-fault stack (IST2).
pub fn double_fault_stack_top() -> u64 {
    DOUBLE_FAULT_STACK.0.get() as u64 + 8192
}

/// A fast system-call handler (see [`UserMode::run`]): its context, the
/// user frame and a second context; true if it served the call.
pub type SyscallHandler<T, A> = extern "C" fn(&mut T, &mut TrapFrame, &mut A) -> bool;

/// A fast page-fault handler (see [`UserMode::run`]): its context, the
/// CPU's error code, a second context and the faulting address (CR2);
/// true if it resolved the fault.
pub type FaultHandler<T, A> = extern "C" fn(&mut T, u64, &mut A, u64) -> bool;

/// Why user mode stopped.
#[derive(Clone, Copy, Debug)]
pub struct Trap {
    /// Interrupt vector.
    pub vector: u64,
    /// CPU error code.
    pub error_code: u64,
    /// CR2 for page faults, else 0.
    pub fault_addr: u64,
}

/// The right to run user mode; exactly one exists.
pub struct UserMode {
    _private: (),
}

static TAKEN: AtomicBool = AtomicBool::new(false);

/// The power-on FXSAVE image (FCW and MXCSR at their defaults, all else
/// zero: a signal handler's initial state too), loaded as it is by
/// [`UserMode::reset_fpu`].
static FPU_DEFAULT: FpuArea = FpuArea(guest_kernel::signal::frame::init_fpu());

impl UserMode {
    /// Hand out the one token (None if already taken). The FPU holds
    /// what boot left in it: the holder gives the program its initial
    /// state with [`Self::reset_fpu`] before it runs, as every exec does.
    /// The registers ([`Self::regs`]) are all zero, as the kernel image
    /// holds them: only the token's holder writes them, through `regs`
    /// and inside [`Self::run`].
    pub fn take() -> Option<UserMode> {
        if TAKEN.swap(true, Ordering::Relaxed) {
            return None;
        }
        Some(UserMode { _private: () })
    }

    /// The user's registers, to read and change between traps.
    pub fn regs(&mut self) -> &mut TrapFrame {
        // SAFETY: the token is unique and borrowed mutably, and the asm only
        // touches the frame inside `run`, so this is the only live reference.
        unsafe { &mut *USER_FRAME.0.get() }
    }

    /// The user's FXSAVE image, read from the FPU: the state stays in the
    /// registers while the kernel runs (it uses no x87/SSE), so this is
    /// the state at the last trap. Called when the running task changes
    /// and for signal frames and forks, not on every entry.
    pub fn fpu(&mut self) -> &[u8; 512] {
        // SAFETY: as in `regs`, the token guards the FPU area; the area is
        // 16-byte aligned and 512 bytes, as FXSAVE64 needs; the instruction
        // only reads the FPU state.
        unsafe {
            let area = FPU.0.get();
            asm!("fxsave64 [{}]", in(reg) area, options(nostack, preserves_flags));
            &(*area).0
        }
    }

    /// FXSAVE the user's FPU/SSE state straight into `out` (a task that
    /// stops running, a forked child): [`Self::fpu`] without the copy out
    /// of the FPU area.
    pub fn save_fpu(&mut self, out: &mut FxImage) {
        // SAFETY: the token guards the FPU; `out` is a live, exclusively
        // borrowed FXSAVE image, 16-byte aligned and 512 bytes by its type,
        // which the instruction only writes.
        unsafe {
            asm!("fxsave64 [{}]", in(reg) out.0.as_mut_ptr(), options(nostack, preserves_flags));
        }
    }

    /// FXRSTOR the user's FPU/SSE state straight from `image`, which
    /// [`Self::save_fpu`] wrote or whose MXCSR the caller checked (no
    /// reserved bit set, else FXRSTOR raises #GP in ring 0): a task switch,
    /// sigreturn.
    pub fn load_saved_fpu(&mut self, image: &FxImage) {
        // SAFETY: the token guards the FPU; `image` is a 16-byte aligned
        // 512-byte FXSAVE image by its type, with a valid MXCSR (above),
        // which the instruction only reads; the kernel itself keeps no
        // x87/SSE state.
        unsafe {
            asm!("fxrstor64 [{}]", in(reg) image.0.as_ptr(),
                 options(nostack, preserves_flags, readonly));
        }
    }

    /// Put the FPU/SSE state in its power-on form, as exec and a signal
    /// handler's entry do.
    /// The image is loaded from where it lies, not copied into the FPU
    /// area first: the state lives in the FPU, the area only passes it.
    pub fn reset_fpu(&mut self) {
        // SAFETY: the token guards the FPU; the image is a static aligned
        // for FXRSTOR64 that FXRSTOR64 only reads; the kernel itself keeps
        // no x87/SSE state.
        unsafe {
            let image = &FPU_DEFAULT;
            asm!("fxrstor64 [{}]", in(reg) image, options(nostack, preserves_flags, readonly));
        }
    }

    /// Run user mode with the registers in [`regs`](Self::regs) until it
    /// traps; the registers then hold the user state at the trap.
    ///
    /// Each system call first goes to `handler(cx, frame, aux)` on the
    /// kernel stack, with only the registers the C ABI lets it clobber saved in
    /// the frame (the others are stale there) and the frame's RIP, CS,
    /// RFLAGS, RSP and SS as the CPU pushed them. If it returns true it
    /// has served the call (set the frame's RAX and the SYSRET-like return
    /// in RIP, CS, RFLAGS, SS) and user mode goes on without `run`
    /// returning; if false it must have left the frame alone, and the call
    /// comes back from `run` as a trap with the whole frame saved.
    ///
    /// Each page fault from user mode first goes to
    /// `fault(cx, error_code, aux, address)` the same way (it gets no
    /// frame: the registers are not all saved yet). If it returns true it
    /// has resolved the fault and the program retries the instruction
    /// without `run` returning; if false, the fault comes back from `run`
    /// as a trap with the whole frame saved.
    #[inline(always)]
    pub fn run<T, A>(
        &mut self,
        cx: &mut T,
        aux: &mut A,
        handler: SyscallHandler<T, A>,
        fault: FaultHandler<T, A>,
    ) -> Trap {
        let cx = cx as *mut T as u64;
        let aux = aux as *mut A as u64;
        let handler = handler as usize as u64;
        let fault = fault as usize as u64;
        // SAFETY: the token guards the four cells (the stubs read them
        // only while user mode runs, inside the asm below); `cx` and `aux`
        // are borrowed mutably for this whole call, so the handler the
        // stubs call with them (one call at a time) sees live exclusive
        // references, and its frame argument is the user frame, which
        // nothing else references while `run` holds the token mutably; the
        // handlers' types take exactly the arguments the stubs pass (RDI,
        // RSI, RDX: the call's two contexts and the frame, the fault's
        // context, error code and second context; RCX: the fault's CR2)
        // and return a bool in AL.
        unsafe {
            *FAST_CX.0.get() = cx;
            *FAST_AUX.0.get() = aux;
            *FAST_FN.0.get() = handler;
            *FAULT_FN.0.get() = fault;
        }
        // SAFETY: the frame holds a user context built by the kernel with
        // user selectors (checked by the callers that set CS/SS/RFLAGS); the
        // entry stub comes back here on the stack saved by `vmrun_run_user`
        // with rbx and rbp restored; every other register is declared
        // clobbered (user mode ran with them), and the kernel's own code
        // uses no x87/SSE state, so the user's stays live for it.
        unsafe {
            asm!(
                "call vmrun_run_user",
                out("r12") _,
                out("r13") _,
                out("r14") _,
                out("r15") _,
                clobber_abi("C"),
            )
        };
        let f = self.regs();
        let fault_addr = if f.vector == 14 { cpu::read_cr2() } else { 0 };
        Trap {
            vector: f.vector,
            error_code: f.error_code,
            fault_addr,
        }
    }
}

/// A trap in ring 0: a kernel bug. Report it and stop.
extern "C" fn kernel_trap(frame: &TrapFrame) -> ! {
    let cr2 = cpu::read_cr2();
    let mut m = guest_kernel::fmt::MsgBuf::<256>::new();
    m.str("kernel trap: vector ")
        .dec(frame.vector)
        .str(" error ")
        .hex(frame.error_code)
        .str(" rip ")
        .hex(frame.rip)
        .str(" rsp ")
        .hex(frame.rsp)
        .str(" cr2 ")
        .hex(cr2);
    super::hypercall::panic(m.as_bytes())
}
