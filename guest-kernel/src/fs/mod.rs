//! Files: the page cache, open files and the fd table, the nodes the
//! kernel serves itself (`/dev`, `/proc`), and the host's file service.
//!
//! - [`host`]: the request block and hypercall to the host's files.
//! - [`cache`]: the page cache, shared by `read` and file mappings.
//! - [`file`]: open file descriptions and the fd table.
//! - [`path`]: user paths, and which of them the kernel serves itself.
//! - [`stat`]: `struct stat` and `struct statx` as Linux lays them out.
//! - [`dev`], [`proc`]: the kernel's own `/dev` and `/proc`.

pub mod cache;
pub mod dev;
pub mod file;
pub mod host;
pub mod path;
pub mod pipe;
pub mod proc;
pub mod stat;
