//! The kernel's first instructions: the VMM enters `_start` in 64-bit mode
//! on the kernel's page tables (written by the VMM) with the boot-info
//! address in RDI.

use core::arch::global_asm;
use core::cell::UnsafeCell;

/// Size of the kernel stack (the only one besides the IST stacks).
pub const KERNEL_STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
struct Stack(UnsafeCell<[u8; KERNEL_STACK_SIZE]>);
// SAFETY: used only as the stack of the one CPU.
unsafe impl Sync for Stack {}

static KERNEL_STACK: Stack = Stack(UnsafeCell::new([0; KERNEL_STACK_SIZE]));

global_asm!(
    r#"
    .section .text.entry, "ax"
    .global _start
    _start:
        lea rsp, [rip + {stack} + {size}]
        xor ebp, ebp
        call {kmain}
        ud2
    "#,
    stack = sym KERNEL_STACK,
    size = const KERNEL_STACK_SIZE,
    kmain = sym crate::kmain,
);
