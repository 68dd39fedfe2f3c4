//! vmrun's guest kernel binary: the hardware layer (`arch`) plus the glue
//! that boots the machine ([`boot`]), loads the program and serves its
//! traps ([`run`]) with the logic of the `guest_kernel` library.
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod boot;
mod host;
mod run;

use arch::hypercall;
use guest_kernel::fmt::MsgBuf;

pub use boot::kmain;

/// A physical access outside RAM: a kernel bug.
pub fn kpanic_phys(pa: u64, len: u64) -> ! {
    let mut m = MsgBuf::<128>::new();
    m.str("physical access outside RAM: ")
        .hex(pa)
        .str(" len ")
        .hex(len);
    hypercall::panic(m.as_bytes())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let mut m = MsgBuf::<256>::new();
    m.str("kernel panic");
    if let Some(loc) = info.location() {
        m.str(" at ")
            .str(loc.file())
            .str(":")
            .dec(u64::from(loc.line()));
    }
    if let Some(msg) = info.message().as_str() {
        m.str(": ").str(msg);
    }
    hypercall::panic(m.as_bytes())
}

/// The precompiled `core` refers to this symbol; the kernel never unwinds.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
