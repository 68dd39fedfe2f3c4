//! The table of host handles the guest holds.
//!
//! A handle is a number > 0 standing for one host file or directory the
//! service opened inside the view (or a virtual directory), with its
//! canonical guest path. Relative lookups from a directory handle walk
//! that path again from the view's root, so a directory renamed after it
//! was opened keeps its old path for them (as its `getcwd` would).

use super::sys::Errno;
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use vmrun_contract::fs::{ROOT_HANDLE, SYNTHETIC};

/// Most handles open at once (then EMFILE).
pub const MAX_HANDLES: usize = 65536;

/// How a handle's host file is open.
#[derive(Debug)]
pub enum Kind {
    /// A file opened for reading and/or writing.
    File(OwnedFd),
    /// A directory opened O_RDONLY|O_DIRECTORY (for getdents).
    Dir(OwnedFd),
    /// An O_PATH open.
    Path(OwnedFd),
    /// A virtual directory.
    Virtual,
}

/// One open handle.
#[derive(Debug)]
pub struct Handle {
    /// The host file.
    pub kind: Kind,
    /// Its canonical guest path.
    pub guest: Vec<u8>,
    /// The mount it lies in (None: virtual).
    pub mount: Option<usize>,
    /// Whether its mount is writable.
    pub writable: bool,
    /// Whether it is a directory.
    pub is_dir: bool,
}

impl Handle {
    /// Its host fd (None: virtual).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.kind {
            Kind::File(fd) | Kind::Dir(fd) | Kind::Path(fd) => Some(fd.as_fd()),
            Kind::Virtual => None,
        }
    }
}

/// The open handles.
#[derive(Debug, Default)]
pub struct Handles {
    map: HashMap<u64, Handle>,
    next: u64,
}

impl Handles {
    /// Add `h`: its number, or EMFILE.
    pub fn insert(&mut self, h: Handle) -> Result<u64, Errno> {
        if self.map.len() >= MAX_HANDLES {
            return Err(libc::EMFILE);
        }
        self.next += 1;
        while self.next == ROOT_HANDLE
            || self.next == SYNTHETIC
            || self.map.contains_key(&self.next)
        {
            self.next = self.next.wrapping_add(1);
        }
        self.map.insert(self.next, h);
        Ok(self.next)
    }

    /// Handle `id`, or EBADF.
    pub fn get(&self, id: u64) -> Result<&Handle, Errno> {
        self.map.get(&id).ok_or(libc::EBADF)
    }

    /// Close handle `id`, or EBADF.
    pub fn remove(&mut self, id: u64) -> Result<Handle, Errno> {
        self.map.remove(&id).ok_or(libc::EBADF)
    }

    /// Handles open.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
