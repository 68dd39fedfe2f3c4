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

/// The IDT: every gate but the two system-call ones is a constant (see
/// [`TABLE`]), so boot writes two gates instead of thirty-five.
static IDT: Shared = Shared(UnsafeCell::new(Idt(TABLE)));

const fn gate(handler: u64, ist: u8, dpl: u8) -> [u64; 2] {
    let attr = 0x8e | ((dpl as u64) << 5); // present interrupt gate
    let low = (handler & 0xffff)
        | ((KERNEL_CS as u64) << 16)
        | ((ist as u64) << 32)
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

/// The gates of the exceptions (but #UD, a system-call entry) and of the
/// timer, from the stubs' fixed places (`trap::STUBS_VIRT`): built by
/// the compiler, where filling them at boot was most of the CPU set-up's
/// emulated instructions. The timer's gate has DPL 0: it is injected by
/// the host, never raised by an instruction (a user's `int 0x20` faults).
const TABLE: [u64; 512] = {
    let mut t = [0u64; 512];
    let mut v = 0;
    while v < 32 {
        if v != 6 {
            let [lo, hi] = gate(trap::STUBS_VIRT + v as u64 * trap::STUB_STRIDE, IST_USER, 0);
            t[v * 2] = lo;
            t[v * 2 + 1] = hi;
        }
        v += 1;
    }
    let mut i = 0;
    while i < SPECIAL.len() {
        let (v, ist, dpl) = SPECIAL[i];
        let [lo, hi] = gate(trap::STUBS_VIRT + v as u64 * trap::STUB_STRIDE, ist, dpl);
        t[v * 2] = lo;
        t[v * 2 + 1] = hi;
        i += 1;
    }
    let v = trap::TIMER_VECTOR as usize;
    let [lo, hi] = gate(trap::STUBS_VIRT + v as u64 * trap::STUB_STRIDE, IST_USER, 0);
    t[v * 2] = lo;
    t[v * 2 + 1] = hi;
    t
};

/// Fill in the system-call gates (#UD and `int 0x80`, whose stubs are
/// not in the fixed slots) and load the IDT.
pub fn init() {
    if !trap::stubs_in_place() {
        super::hypercall::panic(b"the trap stubs are not where the IDT expects them");
    }
    let [ud, int80] = trap::syscall_stubs();
    let idt = IDT.0.get();
    // SAFETY: called once at boot with interrupts off; nothing reads the IDT
    // while it is written, and LIDT gets a pointer to the static table.
    unsafe {
        let table = &mut (*idt).0;
        [table[12], table[13]] = gate(ud, IST_USER, 0);
        let v = trap::SYSCALL_VECTOR as usize;
        [table[v * 2], table[v * 2 + 1]] = gate(int80, IST_USER, 3);
        let idtr = super::gdt::pointer(idt as u64, 256 * 16 - 1);
        asm!("lidt [{}]", in(reg) idtr.as_ptr(), options(nostack));
    }
}
