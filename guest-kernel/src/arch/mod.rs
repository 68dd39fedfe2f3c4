//! The hardware layer: the only part of the kernel with `unsafe` and asm.
//!
//! Everything the rest of the kernel needs from the CPU is behind a few safe
//! calls: [`trap::run_user`] ("run user mode until it traps, say why"),
//! [`hypercall`] (talk to the VMM), [`phys::DirectMap`] (physical memory),
//! [`cpu`] (CR3, MSRs, TLB) and [`gdt`]/[`idt`] setup. Platform differences
//! between kvm_pvm and hardware virtualisation live here and nowhere else;
//! see docs/architecture.md, "Platforms".

pub mod cpu;
pub mod entry;
pub mod gdt;
pub mod global;
pub mod heap;
pub mod hypercall;
pub mod idt;
pub mod layout;
pub mod mem;
pub mod phys;
pub mod trap;
