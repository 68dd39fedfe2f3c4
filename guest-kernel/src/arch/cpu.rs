//! Privileged CPU operations: control registers, MSRs, TLB, timestamps.

use core::arch::asm;
use guest_kernel::mm::paging::{KernelHalf, PageTable};

/// IA32_EFER.
pub const MSR_EFER: u32 = 0xc000_0080;
/// SYSCALL target segments.
pub const MSR_STAR: u32 = 0xc000_0081;
/// SYSCALL target RIP in 64-bit mode.
pub const MSR_LSTAR: u32 = 0xc000_0082;
/// SYSCALL RFLAGS mask.
pub const MSR_SFMASK: u32 = 0xc000_0084;
/// User GS base.
pub const MSR_GS_BASE: u32 = 0xc000_0101;
/// User FS base (thread pointer).
pub const MSR_FS_BASE: u32 = 0xc000_0100;

/// EFER.SCE: SYSCALL enable.
pub const EFER_SCE: u64 = 1 << 0;
/// EFER.NXE: no-execute enable.
pub const EFER_NXE: u64 = 1 << 11;

/// CR4.OSFXSR.
pub const CR4_OSFXSR: u64 = 1 << 9;
/// CR4.OSXMMEXCPT.
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
/// CR4.SMAP.
pub const CR4_SMAP: u64 = 1 << 21;
/// CR4.PGE: global pages.
pub const CR4_PGE: u64 = 1 << 7;

/// Read a model-specific register.
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reading the architectural MSRs named above has no side effects.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Write a model-specific register.
pub fn wrmsr(msr: u32, val: u64) {
    // SAFETY: the kernel writes only the SYSCALL, EFER and FS-base MSRs, with
    // values that keep the CPU in long mode and the kernel in control.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") val as u32, in("edx") (val >> 32) as u32,
             options(nomem, nostack))
    };
}

/// Read CR2, the faulting address of the last page fault.
pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack)) };
    v
}

/// Read CR4.
pub fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack)) };
    v
}

/// Turn on the CR4 features the kernel relies on: FXSAVE/SSE for user
/// mode (OSFXSR, OSXMMEXCPT), global pages (PGE), and SMAP where CPUID
/// offers it. SMEP stays off: where ring 0 is native it executes the
/// user-accessible syscall trampoline page.
pub fn enable_features() {
    let smap = cpuid(7, 0)[1] & (1 << 20) != 0;
    let mut cr4 = read_cr4() | CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_PGE;
    if smap {
        cr4 |= CR4_SMAP;
    }
    // SAFETY: PAE stays on (it is in the value read); SMAP cannot break the
    // kernel, which never touches user pages by their user addresses (only
    // through the direct map); PGE and the FXSR bits only add features.
    unsafe { asm!("mov cr4, {}", in(reg) cr4, options(nostack)) };
}

/// Switch to the kernel's own page tables.
pub fn load_kernel_tables(kernel: &KernelHalf) {
    // SAFETY: the one `KernelHalf` is made by `boot::adopt_kernel_tables`
    // from the tables the kernel has run on since its first instruction
    // (the VMM's, by the contract): they map the kernel image, its stacks
    // and the direct map.
    unsafe { write_cr3(kernel.root()) };
}

/// Switch to (or reload, flushing the TLB) a process's page tables.
pub fn load_process_tables(pt: &PageTable) {
    // SAFETY: every process PML4 is made by `Mm::init`, which copies the
    // kernel half of the kernel's PML4 into it, so the kernel stays mapped
    // exactly as before.
    unsafe { write_cr3(pt.root()) };
}

/// Load CR3.
///
/// # Safety
/// The tables must map the kernel image, its stacks and the direct map
/// exactly as the current ones do.
unsafe fn write_cr3(pml4: u64) {
    // SAFETY: the caller guarantees the new tables map the running kernel.
    unsafe { asm!("mov cr3, {}", in(reg) pml4, options(nostack)) };
}

/// Read the time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC has no side effects.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Execute CPUID for `leaf`/`subleaf`, returning eax, ebx, ecx, edx.
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let (eax, ebx, ecx, edx): (u32, u64, u32, u32);
    // SAFETY: CPUID only reads processor information; RBX, which LLVM
    // reserves, is saved and restored around it.
    unsafe {
        asm!("mov {tmp}, rbx", "cpuid", "xchg {tmp}, rbx", tmp = out(reg) ebx,
             inout("eax") leaf => eax, inout("ecx") subleaf => ecx, out("edx") edx,
             options(nomem, nostack))
    };
    [eax, ebx as u32, ecx, edx]
}

/// Write a 32-bit value to an I/O port.
pub fn outl(port: u16, val: u32) {
    // SAFETY: the kernel only writes the contract's hypercall port, which the
    // VMM handles; the write has no effect on guest memory safety by itself.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") val, options(nostack)) };
}

/// Stop the CPU for good (the VMM sees a HLT exit).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: HLT with interrupts off just stops this CPU.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}
