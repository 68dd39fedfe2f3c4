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

/// The exception vectors whose gate differs from the usual (DPL 0 on
/// [`IST_USER`]): NMI, #DF and #MC on [`IST_FATAL`]; #BP and #OF with DPL
/// 3, since user instructions (int3, into) raise them.
const SPECIAL: [(usize, u8, u8); 5] = [
    (2, IST_FATAL, 0),
    (3, IST_USER, 3),
    (4, IST_USER, 3),
    (8, IST_FATAL, 0),
    (18, IST_FATAL, 0),
];

/// Fill and load the IDT.
///
/// The 32 exception gates are written in one loop of the usual gate
/// (the handler's address bits merged into a fixed template: no per-vector
/// choice of IST or DPL inside it), then the five [`SPECIAL`] ones again:
/// boot runs in emulated ring 0, where the per-vector choice was most of
/// the CPU setup's instructions.
pub fn init() {
    let stubs = trap::stubs();
    let idt = IDT.0.get();
    let usual = gate(0, IST_USER, 0)[0];
    // SAFETY: called once at boot with interrupts off; nothing reads the IDT
    // while it is written, and LIDT gets a pointer to the static table.
    unsafe {
        let table = &mut (*idt).0;
        for (pair, &stub) in table[..64].chunks_exact_mut(2).zip(&stubs[..32]) {
            // gate(stub, IST_USER, 0) without rebuilding the template.
            pair[0] = usual | (stub & 0xffff) | ((stub & 0xffff_0000) << 32);
            pair[1] = stub >> 32;
        }
        for (vector, ist, dpl) in SPECIAL {
            let [lo, hi] = gate(stubs[vector], ist, dpl);
            table[vector * 2] = lo;
            table[vector * 2 + 1] = hi;
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
