//! The GDT and TSS, laid out as Linux's x86-64 GDT so that SYSCALL's STAR
//! selectors and the user selectors (CS 0x33, SS 0x2b) match native runs.

use core::arch::asm;
use core::cell::UnsafeCell;

/// Kernel 64-bit code selector.
pub const KERNEL_CS: u16 = 0x10;
/// Kernel data selector.
pub const KERNEL_DS: u16 = 0x18;
/// User 32-bit code selector (STAR base for SYSRET), RPL 3.
pub const USER_CS32: u16 = 0x23;
/// User data selector, RPL 3.
pub const USER_DS: u16 = 0x2b;
/// User 64-bit code selector, RPL 3.
pub const USER_CS: u16 = 0x33;
/// TSS selector.
pub const TSS_SEL: u16 = 0x38;

/// The 64-bit TSS: stack pointers for privilege changes and IST entries.
#[repr(C, packed(4))]
pub struct Tss {
    _reserved0: u32,
    /// RSP0..RSP2.
    pub rsp: [u64; 3],
    _reserved1: u64,
    /// IST1..IST7.
    pub ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    /// Offset of the I/O bitmap, which follows the TSS ([`IOMAP`]).
    pub iomap_base: u16,
}

const TSS_SIZE: u64 = core::mem::size_of::<Tss>() as u64;

/// Bytes of the I/O permission bitmap: through the fast-call port's byte,
/// and the byte of ones the CPU requires after the last.
const IOMAP_BYTES: usize = vmrun_contract::FAST_CALL_PORT as usize / 8 + 2;

/// The I/O permission bitmap: every port refused outside ring 0 but the
/// syscall trampoline's fast-call port (`vmrun_contract::FAST_CALL_PORT`).
/// On kvm_pvm the trampoline runs with user rights, and its `out` to that
/// port must reach the VMM; a program's own `out` there is ignored by the
/// VMM (it checks where it came from). Every other port, the hypercall
/// port among them, stays ring 0's.
const IOMAP: [u8; IOMAP_BYTES] = {
    let mut map = [0xff; IOMAP_BYTES];
    let port = vmrun_contract::FAST_CALL_PORT as usize;
    map[port / 8] &= !(1 << (port % 8));
    map
};

#[repr(C, align(16))]
struct Tables {
    gdt: [u64; 9],
    tss: Tss,
    iomap: [u8; IOMAP_BYTES],
}

struct Shared(UnsafeCell<Tables>);
// SAFETY: one CPU; written only by `init` before any trap can happen.
unsafe impl Sync for Shared {}

static TABLES: Shared = Shared(UnsafeCell::new(Tables {
    gdt: [
        0,
        0x00cf_9b00_0000_ffff, // 0x08 kernel code 32 (unused)
        0x00af_9b00_0000_ffff, // 0x10 kernel code 64
        0x00cf_9300_0000_ffff, // 0x18 kernel data
        0x00cf_fb00_0000_ffff, // 0x20 user code 32
        0x00cf_f300_0000_ffff, // 0x28 user data
        0x00af_fb00_0000_ffff, // 0x30 user code 64
        0,                     // 0x38 TSS (low), filled by init
        0,                     // TSS (high)
    ],
    tss: Tss {
        _reserved0: 0,
        rsp: [0; 3],
        _reserved1: 0,
        ist: [0; 7],
        _reserved2: 0,
        _reserved3: 0,
        iomap_base: TSS_SIZE as u16,
    },
    iomap: IOMAP,
}));

fn tss_descriptor(base: u64) -> [u64; 2] {
    let limit = TSS_SIZE + IOMAP_BYTES as u64 - 1;
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x89 << 40)
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    [low, base >> 32]
}

/// Load the GDT and TSS. `rsp0` is where the CPU pushes a trap frame when
/// user mode is interrupted; `ist` are the IST stacks (IST1 first).
pub fn init(rsp0: u64, ist: &[u64]) {
    let t = TABLES.0.get();
    // SAFETY: called once at boot on the only CPU, before the IDT exists, so
    // nothing else reads the tables while they are written. The far return
    // reloads CS with the kernel code selector this GDT defines.
    unsafe {
        let tss_base = core::ptr::addr_of!((*t).tss) as u64;
        let [lo, hi] = tss_descriptor(tss_base);
        (*t).gdt[7] = lo;
        (*t).gdt[8] = hi;
        (*t).tss.rsp[0] = rsp0;
        let mut ists = [0u64; 7];
        for (slot, top) in ists.iter_mut().zip(ist) {
            *slot = *top;
        }
        (*t).tss.ist = ists;
        let gdtr: [u16; 5] = pointer(core::ptr::addr_of!((*t).gdt) as u64, 9 * 8 - 1);
        asm!(
            "lgdt [{gdtr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:e}",
            "mov es, {ds:e}",
            "mov ss, {ds:e}",
            "xor {tmp:e}, {tmp:e}",
            "mov fs, {tmp:e}",
            "mov gs, {tmp:e}",
            "ltr {tss:x}",
            gdtr = in(reg) gdtr.as_ptr(),
            cs = const KERNEL_CS as u64,
            ds = in(reg) u32::from(KERNEL_DS),
            tss = in(reg) TSS_SEL,
            tmp = out(reg) _,
        );
    }
}

/// A descriptor-table pointer (limit, then base) as LGDT/LIDT take it.
pub fn pointer(base: u64, limit: u16) -> [u16; 5] {
    [
        limit,
        base as u16,
        (base >> 16) as u16,
        (base >> 32) as u16,
        (base >> 48) as u16,
    ]
}
