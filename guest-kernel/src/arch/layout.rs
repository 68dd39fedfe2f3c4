//! The kernel image's own layout, from the linker script's symbols.

use vmrun_contract::layout::KERNEL_VIRT_BASE;

extern "C" {
    static __trampoline_start: u8;
}

/// Physical address of the syscall trampoline page, as linked (the VMM
/// maps the page the contract names; boot checks that the two agree).
pub fn trampoline_phys() -> u64 {
    core::ptr::addr_of!(__trampoline_start) as u64 - KERNEL_VIRT_BASE
}
