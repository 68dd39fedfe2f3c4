//! The IDT: a gate for every CPU exception, one for the syscall
//! trampoline and one for the host's timer interrupt, all on IST stacks so that no trap ever lands on the kernel's
//! own stack (the precompiled `core` uses the red zone).

use super::{gdt::KERNEL_CS, trap};
use core::arch::asm;
use core::cell::UnsafeCell;

/// IST index for traps from user mode (points at the user trap frame).
const IST_USER: u8 = 1;
/// IST index for double faults, NMIs and machine checks.
const IST_FATAL: u8 = 2;

#[repr(C, align(16))]
struct Idt([u64; 512]);

struct Shared(UnsafeCell<Idt>);
// SAFETY: one CPU; written once by `init` before interrupts can happen.
unsafe impl Sync for Shared {}

static IDT: Shared = Shared(UnsafeCell::new(Idt([0; 512])));

fn gate(handler: u64, ist: u8, dpl: u8) -> [u64; 2] {
    let attr = 0x8e | (u64::from(dpl) << 5); // present interrupt gate
    let low = (handler & 0xffff)
        | (u64::from(KERNEL_CS) << 16)
        | (u64::from(ist) << 32)
        | (attr << 40)
        | (((handler >> 16) & 0xffff) << 48);
    [low, handler >> 32]
}

fn ist_for(vector: usize) -> u8 {
    match vector {
        2 | 8 | 18 => IST_FATAL,
        _ => IST_USER,
    }
}

/// Fill and load the IDT.
pub fn init() {
    let stubs = trap::stubs();
    let idt = IDT.0.get();
    // SAFETY: called once at boot with interrupts off; nothing reads the IDT
    // while it is written, and LIDT gets a pointer to the static table.
    unsafe {
        for (vector, stub) in stubs[..32].iter().enumerate() {
            // #BP and #OF may be raised by user instructions (int3, into).
            let dpl = if vector == 3 || vector == 4 { 3 } else { 0 };
            let [lo, hi] = gate(*stub, ist_for(vector), dpl);
            (*idt).0[vector * 2] = lo;
            (*idt).0[vector * 2 + 1] = hi;
        }
        let v = trap::SYSCALL_VECTOR as usize;
        let [lo, hi] = gate(stubs[32], IST_USER, 3);
        (*idt).0[v * 2] = lo;
        (*idt).0[v * 2 + 1] = hi;
        // The timer interrupt: injected by the host, never raised by an
        // instruction (DPL 0 refuses a user's `int 0x20`).
        let v = trap::TIMER_VECTOR as usize;
        let [lo, hi] = gate(stubs[33], IST_USER, 0);
        (*idt).0[v * 2] = lo;
        (*idt).0[v * 2 + 1] = hi;
        let idtr = super::gdt::pointer(idt as u64, 256 * 16 - 1);
        asm!("lidt [{}]", in(reg) idtr.as_ptr(), options(nostack));
    }
}
