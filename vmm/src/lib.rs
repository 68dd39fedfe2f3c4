//! vmrun's host side: run an unmodified x86-64 Linux program in a KVM
//! virtual machine whose kernel is vmrun's own guest kernel.
//!
//! How the parts fit, in the order a run uses them:
//!
//! 1. [`kvm`] opens /dev/kvm, checks it, and tells which platform it is.
//! 2. [`memory`] maps guest RAM and registers it with KVM; every access the
//!    VMM makes on the guest's behalf is bounds-checked there.
//! 3. [`loader`] loads the embedded guest kernel ELF (with linux-loader),
//!    copies the program file and its argument block in, and writes the
//!    boot info; [`boot`] writes the boot GDT and page tables and the vCPU's
//!    64-bit entry state.
//! 4. [`vm`] runs the vCPU; each exit is classified, and hypercalls are
//!    served by [`hypercall`] (stdio, host-side copy/zero, exit) and the
//!    host's files by [`fs`], inside the view the user granted.
//! 5. [`inspect`] reads what the guest built, from guest memory alone: an
//!    independent page-table walk and checker, the VMAs in /proc/PID/maps
//!    form, the trace ring (with an strace view), statistics and SVG plots.
//!
//! ```no_run
//! use vmm::{vm::{Vm, VmConfig}, stdio::Stdio};
//! let config = VmConfig::for_program("hello");
//! let report = Vm::new(&config)?.run(&mut Stdio::new(false))?;
//! println!("{:?}", report.outcome);
//! # Ok::<(), vmm::error::Error>(())
//! ```
#![deny(missing_docs)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod bench;
pub mod boot;
pub mod console;
pub mod error;
pub mod fastcall;
pub mod fs;
pub mod gdb;
pub mod handoff;
pub mod hypercall;
pub mod inspect;
pub mod interrupt;
pub mod kvm;
pub mod loader;
pub mod memory;
pub mod session;
pub mod stdin_ring;
pub mod stdio;
pub mod sys;
pub mod tick;
pub mod vm;
