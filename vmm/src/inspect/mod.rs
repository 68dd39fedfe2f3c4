//! The inspector: what the host can see of the guest's work, read from
//! guest memory alone and never trusting it.
//!
//! Every function here is pure: it takes [`GuestRam`](crate::memory::GuestRam)
//! or contract structures and returns data or text, so each is unit-tested
//! on synthetic guest memory. The parts, in the order a run uses them:
//!
//! 1. [`pagetable`] walks the 4-level page tables from a CR3 value (a second
//!    implementation of the SDM walk, independent of the guest's), lists every
//!    table page and leaf, coalesces leaves into mappings, and renders them
//!    as a tree, a mapping list, or JSON.
//! 2. [`maps`] prints the guest's exported VMAs exactly as Linux prints
//!    `/proc/PID/maps`.
//! 3. [`check`] holds the walk against the VMAs and the guest's frame
//!    accounting, and reports each broken invariant precisely; with several
//!    processes, [`spaces`] reads every live address space and the checker
//!    verifies copy-on-write sharing across them.
//! 4. [`trace`] drains the trace ring and renders records as lines or JSON;
//!    [`strace`] pairs system-call records into strace-style lines, with
//!    names and errno texts from [`syscalls`].
//! 5. [`stats`] aggregates records into latency percentiles (an HDR
//!    histogram) and counts, with VM exits and boot phases from the host.
//! 6. [`svg`] draws the page-table tree and a fault-latency histogram.

pub mod check;
pub mod maps;
pub mod pagetable;
pub mod spaces;
pub mod stats;
pub mod strace;
pub mod svg;
pub mod syscalls;
pub mod trace;

#[cfg(test)]
pub(crate) mod testspace;

/// Format `v` as a JSON-safe hex string (`"0x401000"`): JSON numbers lose
/// precision above 2^53, and addresses are read in hex anyway.
fn hex(v: u64) -> String {
    format!("{v:#x}")
}
