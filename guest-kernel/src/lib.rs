//! The logic of vmrun's guest kernel, free of hardware access.
//!
//! The guest kernel is split in two. This library holds everything that can
//! be expressed as plain Rust over small interfaces: the VMA set, the frame
//! allocator, the 4-level page-table code (over [`mm::phys::PhysMem`]), page
//! fault resolution, `mmap`/`munmap`/`mprotect`/`brk`, the ELF load plan, and
//! the initial process stack. It is `no_std` in the guest and is compiled
//! for the host by `cargo test`, where its unit tests run over memory kept in
//! a `Vec`. The binary (`src/main.rs`) adds `arch` — entry, descriptor
//! tables, trap handling, port I/O — and the glue that drives these parts.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod errno;
pub mod exec;
pub mod fmt;
pub mod fs;
pub mod mm;
pub mod process;
pub mod signal;
pub mod syscall;
pub mod trace;
pub mod uaccess;

#[cfg(test)]
mod proptests;
