//! Trace records: what the kernel tells the host it did.
//!
//! Every site calls [`emit`] (or checks [`on`] first when building the
//! record costs work). With tracing off, a site costs one predictable
//! branch: `PhysMem::trace_on` is a load and a test in the kernel and a
//! constant `false` in host tests. The kernel's `PhysMem` appends records
//! to the ring the host drains (see `contract::trace`).

use crate::mm::phys::PhysMem;
pub use vmrun_contract::trace::{category, kind, Record};

/// Whether records of `cat` are wanted.
#[inline(always)]
pub fn on<M: PhysMem>(mem: &M, cat: u32) -> bool {
    mem.trace_on(cat)
}

/// Record an event of category `cat` (the sink stamps the TSC).
#[inline(always)]
pub fn emit<M: PhysMem>(mem: &mut M, cat: u32, kind: u32, aux: u32, a: [u64; 6]) {
    if mem.trace_on(cat) {
        mem.trace(&Record {
            kind,
            aux,
            tsc: 0,
            a,
        });
    }
}
