//! Program loading as Linux's `execve` does it, as pure logic.
//!
//! Two steps, each computed in full before anything is written:
//!
//! 1. [`elf`]: parse and check the ELF image and compute its [`LoadPlan`]
//!    (`load_elf_binary`): the biased `PT_LOAD` segments with their
//!    protections, the entry point, `AT_PHDR`, the interpreter path, the
//!    stack's executability, and the `mm_struct` fields (`start_code` …
//!    `start_brk`).
//! 2. [`stack`]: lay out the initial stack (`setup_arg_pages`,
//!    `create_elf_tables`) from an [`ArgBlock`] and [`AuxValues`] into a
//!    [`StackLayout`], then write it through a [`StackSink`].
//!
//! The kernel glue maps the segments and the stack VMA through `mm`, writes
//! the stack, and enters user mode at the plan's entry with the layout's
//! `sp`. Both steps are host tested over images and memory built in `Vec`s.

pub mod aslr;
pub mod elf;
pub mod script;
pub mod stack;

pub use elf::{ElfError, LoadPlan, Segment};
pub use stack::{ArgBlock, AuxValues, StackLayout, StackSink};
