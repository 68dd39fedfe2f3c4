//! A process: its address space and the per-thread state system calls
//! change (FS base, clear_child_tid). The file images its mappings refer
//! to belong to the kernel (they are the page cache).

pub mod exec;

use crate::mm::space::Mm;

/// The one process the kernel runs (Linux's task plus its mm).
#[derive(Debug)]
pub struct Process {
    /// Address space.
    pub mm: Mm,
    /// Process (and thread) id.
    pub pid: u64,
    /// User FS base (`arch_prctl(ARCH_SET_FS)`), loaded into the MSR by the
    /// arch glue when `bases_changed` is set.
    pub fs_base: u64,
    /// User GS base.
    pub gs_base: u64,
    /// Set when `fs_base` or `gs_base` changed and the MSRs need loading.
    pub bases_changed: bool,
    /// `set_tid_address` pointer.
    pub clear_child_tid: u64,
}

/// The pid vmrun's program gets (it is the VM's only, init-like process).
pub const INIT_PID: u64 = 1;

impl Process {
    /// A process with no address space yet (for statics).
    pub const fn empty() -> Process {
        Process {
            mm: Mm::empty(),
            pid: INIT_PID,
            fs_base: 0,
            gs_base: 0,
            bases_changed: false,
            clear_child_tid: 0,
        }
    }
}
