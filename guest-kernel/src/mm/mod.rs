//! Memory management: frames, page tables, VMAs and page faults.
//!
//! - [`phys`]: the interface to physical memory everything else goes through.
//! - [`frame`]: the allocator of 4 KiB and 2 MiB physical frames.
//! - [`paging`]: x86-64 4-level page tables.
//! - [`vma`]: virtual memory areas and the sorted set of them.
//! - [`vma_tree`]: the B+-tree the set keeps its areas in.
//! - [`space`]: [`space::Mm`], one address space (Linux's `mm_struct`).
//! - [`fault`]: page-fault resolution and access to user memory.
//! - [`mmap`]: `mmap`, `munmap`, `mprotect` and `brk`.
//! - [`rlimit`]: the resource limits on an address space and the overcommit
//!   heuristic.

pub mod export;
pub mod fault;
pub mod fork;
pub mod frame;
pub mod mmap;
pub mod mremap;
pub mod paging;
pub mod phys;
pub mod rlimit;
pub mod space;
#[cfg(test)]
pub mod testmem;
pub mod vma;
pub mod vma_tree;
