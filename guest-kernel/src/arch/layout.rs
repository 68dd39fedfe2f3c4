//! The kernel image's own layout, from the linker script's symbols.

use vmrun_contract::layout::KERNEL_VIRT_BASE;

extern "C" {
    static __kernel_start: u8;
    static __trampoline_start: u8;
    static __trampoline_end: u8;
    static __rodata_start: u8;
    static __data_start: u8;
    static __kernel_end: u8;
}

/// Virtual ranges of the kernel image's parts.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    /// Text start.
    pub text: u64,
    /// The syscall trampoline page.
    pub trampoline: u64,
    /// End of the trampoline page (end of text).
    pub trampoline_end: u64,
    /// Read-only data.
    pub rodata: u64,
    /// Data and bss.
    pub data: u64,
    /// End of the image (page aligned).
    pub end: u64,
}

impl ImageLayout {
    /// The layout the linker produced.
    pub fn get() -> ImageLayout {
        ImageLayout {
            text: core::ptr::addr_of!(__kernel_start) as u64,
            trampoline: core::ptr::addr_of!(__trampoline_start) as u64,
            trampoline_end: core::ptr::addr_of!(__trampoline_end) as u64,
            rodata: core::ptr::addr_of!(__rodata_start) as u64,
            data: core::ptr::addr_of!(__data_start) as u64,
            end: core::ptr::addr_of!(__kernel_end) as u64,
        }
    }

    /// Physical address of a kernel-image virtual address.
    pub fn phys(va: u64) -> u64 {
        va - KERNEL_VIRT_BASE
    }
}
