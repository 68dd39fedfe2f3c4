//! Open file descriptions (Linux's `struct file`) and the fd table.
//!
//! An [`OpenFile`] is what `open` creates: the node it refers to, the
//! status flags and the offset. `dup` and `fork` share it (an
//! `Rc<RefCell<_>>`, the kernel runs on one CPU); the fd table maps small
//! numbers to shared open files plus the per-fd close-on-exec flag. When
//! the last reference goes, the caller releases the node (closes the host
//! handle, drops the page-cache user): see [`FdTable::close`].

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::dev::DevNode;
use crate::errno::{Errno, KResult};

/// Open flags (Linux x86-64 values).
pub mod o {
    #![allow(missing_docs)]
    pub const ACCMODE: u32 = 0o3;
    pub const RDONLY: u32 = 0o0;
    pub const WRONLY: u32 = 0o1;
    pub const RDWR: u32 = 0o2;
    pub const CREAT: u32 = 0o100;
    pub const EXCL: u32 = 0o200;
    pub const NOCTTY: u32 = 0o400;
    pub const TRUNC: u32 = 0o1000;
    pub const APPEND: u32 = 0o2000;
    pub const NONBLOCK: u32 = 0o4000;
    pub const DSYNC: u32 = 0o10000;
    pub const ASYNC: u32 = 0o20000;
    pub const DIRECT: u32 = 0o40000;
    pub const LARGEFILE: u32 = 0o100000;
    pub const DIRECTORY: u32 = 0o200000;
    pub const NOFOLLOW: u32 = 0o400000;
    pub const NOATIME: u32 = 0o1000000;
    pub const CLOEXEC: u32 = 0o2000000;
    pub const SYNC: u32 = 0o4010000;
    pub const PATH: u32 = 0o10000000;
    pub const TMPFILE: u32 = 0o20200000;
    /// Flags F_SETFL may change (Linux's SETFL_MASK).
    pub const SETFL_MASK: u32 = APPEND | ASYNC | NONBLOCK | DIRECT | NOATIME;
}

/// What an open file refers to.
#[derive(Debug)]
pub enum Node {
    /// One of the host's stdio fds (0, 1, 2), as vmrun was given them.
    Stdio(u8),
    /// A host file or directory.
    Host {
        /// The host handle.
        handle: u64,
        /// The page-cache inode of a regular file.
        inode: Option<u16>,
        /// Whether the page cache owns `handle` (it closes it).
        cache_owns_handle: bool,
        /// `st_mode` at open.
        mode: u32,
        /// Canonical guest path.
        path: Vec<u8>,
    },
    /// A `/dev` node.
    Dev(DevNode),
    /// A `/proc` file: its contents, generated at open (as seq_file
    /// programs see them after their first read).
    Generated {
        /// The bytes.
        data: Vec<u8>,
        /// Guest path.
        path: Vec<u8>,
    },
    /// One end of a pipe.
    Pipe {
        /// The pipe.
        pipe: super::pipe::PipeRef,
        /// Whether this is the write end.
        write: bool,
    },
    /// An epoll instance.
    Epoll(EpollRef),
    /// An eventfd: its counter, and whether it counts as a semaphore.
    EventFd(alloc::rc::Rc<RefCell<u64>>, bool),
    /// A signalfd: the signals it reads (bit `sig - 1`), shared by the fds
    /// of the description so that `signalfd` on one of them changes it.
    SignalFd(alloc::rc::Rc<core::cell::Cell<u64>>),
    /// A directory the kernel serves (`/dev`, `/proc`, `/proc/self/fd`...).
    SynthDir {
        /// Guest path.
        path: Vec<u8>,
        /// Entries: name and `d_type`.
        entries: Vec<(Vec<u8>, u8)>,
    },
}

impl Node {
    /// The node's guest path, for `/proc/self/fd` and getcwd.
    pub fn path(&self) -> &[u8] {
        match self {
            Node::Stdio(_)
            | Node::Pipe { .. }
            | Node::Epoll(_)
            | Node::EventFd(..)
            | Node::SignalFd(_) => b"",
            Node::Host { path, .. }
            | Node::Generated { path, .. }
            | Node::SynthDir { path, .. } => path,
            Node::Dev(d) => d.path(),
        }
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        match self {
            Node::Host { mode, .. } => mode & super::stat::S_IFMT == super::stat::S_IFDIR,
            Node::SynthDir { .. } => true,
            _ => false,
        }
    }
}

/// An open file description.
#[derive(Debug)]
pub struct OpenFile {
    /// What it refers to.
    pub node: Node,
    /// Access mode and status flags (`O_*`).
    pub flags: u32,
    /// File offset (directory cookie for directories).
    pub pos: u64,
    /// A host directory's: the host said that no entry follows `pos`, so
    /// the next getdents64 gives 0 without asking it (POSIX leaves open
    /// whether a listing shows entries made after it began). An lseek
    /// clears it.
    pub dir_end: bool,
}

impl OpenFile {
    /// A description of `node` with `flags`, at offset 0.
    pub fn new(node: Node, flags: u32) -> FileRef {
        Rc::new(RefCell::new(OpenFile {
            node,
            flags,
            pos: 0,
            dir_end: false,
        }))
    }

    /// Whether it was opened for reading.
    pub fn readable(&self) -> bool {
        self.flags & o::PATH == 0 && self.flags & o::ACCMODE != o::WRONLY
    }

    /// Whether it was opened for writing.
    pub fn writable(&self) -> bool {
        self.flags & o::PATH == 0 && matches!(self.flags & o::ACCMODE, o::WRONLY | o::RDWR)
    }
}

/// An epoll instance's interest list: each watched fd with its event mask
/// and user data.
pub type EpollRef = alloc::rc::Rc<RefCell<Vec<(u64, u32, u64)>>>;

/// `poll` event bits.
pub mod pollev {
    #![allow(missing_docs)]
    pub const IN: u16 = 0x1;
    pub const OUT: u16 = 0x4;
    pub const ERR: u16 = 0x8;
    pub const HUP: u16 = 0x10;
    pub const NVAL: u16 = 0x20;
}

impl OpenFile {
    /// What `poll` would report for it now (before masking by the events
    /// asked for): pipes and eventfds by their state, a signalfd by the
    /// polling thread's pending signals `sig_pending`, everything else
    /// ready for what it was opened for (a read of the host's stdin may
    /// then wait for the host).
    pub fn readiness(&self, sig_pending: u64) -> u16 {
        use pollev::*;
        match &self.node {
            Node::Pipe { pipe, write } => {
                let p = pipe.borrow();
                if *write {
                    if p.readers == 0 {
                        OUT | ERR
                    } else if p.room() > 0 {
                        OUT
                    } else {
                        0
                    }
                } else if !p.is_empty() {
                    IN | if p.writers == 0 { HUP } else { 0 }
                } else if p.writers == 0 {
                    HUP
                } else {
                    0
                }
            }
            Node::EventFd(c, _) => {
                let v = *c.borrow();
                (if v > 0 { IN } else { 0 }) | if v < u64::MAX - 1 { OUT } else { 0 }
            }
            Node::SignalFd(mask) => {
                if sig_pending & mask.get() != 0 {
                    IN
                } else {
                    0
                }
            }
            Node::Epoll(_) => 0,
            _ => {
                let mut r = 0;
                if self.readable() {
                    r |= IN;
                }
                if self.writable() {
                    r |= OUT;
                }
                r
            }
        }
    }
}

/// A shared open file description.
pub type FileRef = Rc<RefCell<OpenFile>>;

/// One fd: its description and close-on-exec flag.
#[derive(Clone, Debug)]
pub struct Fd {
    /// The open file.
    pub file: FileRef,
    /// `FD_CLOEXEC`.
    pub cloexec: bool,
}

/// Default `RLIMIT_NOFILE` (Linux's soft limit).
pub const NOFILE_DEFAULT: u64 = 1024;
/// Largest `RLIMIT_NOFILE` (Linux's `nr_open`).
pub const NR_OPEN: u64 = 1 << 20;

/// The fd table.
#[derive(Debug)]
pub struct FdTable {
    fds: Vec<Option<Fd>>,
    /// `RLIMIT_NOFILE` (soft, hard).
    pub limit: (u64, u64),
}

impl Default for FdTable {
    fn default() -> Self {
        Self::new()
    }
}

/// The fds a first process's table has room for before it grows.
const STDIO_TABLE_ROOM: usize = 8;

impl FdTable {
    /// An empty table.
    pub const fn new() -> FdTable {
        FdTable {
            fds: Vec::new(),
            limit: (NOFILE_DEFAULT, NR_OPEN),
        }
    }

    /// A table of `files` at fds 0, 1 and 2 (a first process's stdio)
    /// under `limit`: one allocation, where three installs cost a growth of
    /// the table, with room for the program's first few files (its first
    /// open would grow an exact-size table).
    pub fn stdio(files: [FileRef; 3], limit: (u64, u64)) -> FdTable {
        let fd = |file| {
            Some(Fd {
                file,
                cloexec: false,
            })
        };
        let mut fds = Vec::with_capacity(STDIO_TABLE_ROOM);
        fds.extend(files.map(fd));
        FdTable { fds, limit }
    }

    /// The fd `fd`.
    pub fn get(&self, fd: u64) -> KResult<&Fd> {
        let i = usize::try_from(fd).map_err(|_| Errno::EBADF)?;
        self.fds.get(i).and_then(Option::as_ref).ok_or(Errno::EBADF)
    }

    /// The fd `fd`, mutable (for its flags).
    pub fn get_mut(&mut self, fd: u64) -> KResult<&mut Fd> {
        let i = usize::try_from(fd).map_err(|_| Errno::EBADF)?;
        self.fds
            .get_mut(i)
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)
    }

    /// The open file of `fd`.
    pub fn file(&self, fd: u64) -> KResult<FileRef> {
        Ok(self.get(fd)?.file.clone())
    }

    /// Install `file` at the lowest free fd not below `min`. EMFILE at the
    /// limit.
    pub fn alloc_from(&mut self, min: u64, file: FileRef, cloexec: bool) -> KResult<u64> {
        let limit = self.limit.0;
        if min >= limit {
            return Err(Errno::EMFILE);
        }
        let min = min as usize;
        let free = (min..self.fds.len()).find(|&i| self.fds[i].is_none());
        let i = free.unwrap_or(self.fds.len().max(min));
        if i as u64 >= limit {
            return Err(Errno::EMFILE);
        }
        let fd = Some(Fd { file, cloexec });
        match i.checked_sub(self.fds.len()) {
            Some(gap) => {
                // A new highest fd (the usual open): the free slots below
                // it, if any, then one push (a resize clones its filler
                // into each new slot).
                self.fds.extend(core::iter::repeat_n(None, gap));
                self.fds.push(fd);
            }
            None => self.fds[i] = fd,
        }
        Ok(i as u64)
    }

    /// Install `file` at the lowest free fd.
    pub fn alloc(&mut self, file: FileRef, cloexec: bool) -> KResult<u64> {
        self.alloc_from(0, file, cloexec)
    }

    /// Put `file` at exactly `fd` (dup2), returning what was there.
    pub fn install_at(&mut self, fd: u64, file: FileRef, cloexec: bool) -> KResult<Option<Fd>> {
        if fd >= self.limit.0 {
            return Err(Errno::EBADF);
        }
        let i = fd as usize;
        if i >= self.fds.len() {
            self.fds.resize(i + 1, None);
        }
        Ok(self.fds[i].replace(Fd { file, cloexec }))
    }

    /// Remove `fd`; returns its open file, which the caller releases if it
    /// was the last reference ([`is_last`]).
    pub fn close(&mut self, fd: u64) -> KResult<FileRef> {
        let i = usize::try_from(fd).map_err(|_| Errno::EBADF)?;
        let slot = self.fds.get_mut(i).ok_or(Errno::EBADF)?;
        let f = slot.take().ok_or(Errno::EBADF)?;
        while self.fds.last().is_some_and(Option::is_none) {
            self.fds.pop();
        }
        Ok(f.file)
    }

    /// The fds in use, ascending.
    pub fn fds(&self) -> impl Iterator<Item = (u64, &Fd)> {
        self.fds
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().map(|f| (i as u64, f)))
    }

    /// A copy for a forked child: the same open file descriptions.
    pub fn fork(&self) -> FdTable {
        FdTable {
            fds: self.fds.clone(),
            limit: self.limit,
        }
    }

    /// Remove every fd (exit); the open files are handed out for release
    /// as the table's own vector is gone through (no list of them made).
    pub fn take_all(&mut self) -> impl Iterator<Item = FileRef> {
        core::mem::take(&mut self.fds)
            .into_iter()
            .flatten()
            .map(|f| f.file)
    }
}

/// Whether `f` is the last reference to its description (so closing it
/// releases the node).
pub fn is_last(f: &FileRef) -> bool {
    Rc::strong_count(f) == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> FileRef {
        OpenFile::new(Node::Stdio(1), o::WRONLY)
    }

    #[test]
    fn alloc_takes_the_lowest_free_fd() {
        let mut t = FdTable::new();
        assert_eq!(t.alloc(file(), false), Ok(0));
        assert_eq!(t.alloc(file(), false), Ok(1));
        assert_eq!(t.alloc(file(), false), Ok(2));
        t.close(1).unwrap();
        assert_eq!(t.alloc(file(), true), Ok(1));
        assert!(t.get(1).unwrap().cloexec);
        assert_eq!(t.alloc_from(10, file(), false), Ok(10));
        assert_eq!(t.alloc(file(), false), Ok(3));
        assert_eq!(t.alloc_from(5, file(), true), Ok(5));
        assert_eq!(t.alloc(file(), false), Ok(4));
        let fds = t.fds().map(|(n, f)| (n, f.cloexec)).collect::<Vec<_>>();
        assert_eq!(fds, [0, 1, 2, 3, 4, 5, 10].map(|n| (n, n == 1 || n == 5)));
        assert_eq!(t.get(6).unwrap_err(), Errno::EBADF);
    }

    #[test]
    fn a_stdio_table_holds_fds_0_to_2_and_allocates_from_3() {
        let files = [file(), file(), file()];
        let mut t = FdTable::stdio(files.clone(), (64, 128));
        assert_eq!(t.limit, (64, 128));
        assert_eq!(t.fds().map(|(n, _)| n).collect::<Vec<_>>(), [0, 1, 2]);
        for (n, f) in files.iter().enumerate() {
            let fd = t.get(n as u64).unwrap();
            assert!(Rc::ptr_eq(&fd.file, f) && !fd.cloexec);
        }
        assert_eq!(t.alloc(file(), false), Ok(3));
    }

    #[test]
    fn closing_a_free_fd_is_ebadf_and_limit_is_emfile() {
        let mut t = FdTable::new();
        assert_eq!(t.close(0).unwrap_err(), Errno::EBADF);
        t.limit = (2, 2);
        t.alloc(file(), false).unwrap();
        t.alloc(file(), false).unwrap();
        assert_eq!(t.alloc(file(), false), Err(Errno::EMFILE));
        assert_eq!(t.alloc_from(5, file(), false), Err(Errno::EMFILE));
    }

    #[test]
    fn dup_shares_the_description_until_the_last_close() {
        let mut t = FdTable::new();
        let f = file();
        t.alloc(f.clone(), false).unwrap();
        t.alloc(f, false).unwrap();
        let a = t.close(0).unwrap();
        assert!(!is_last(&a));
        drop(a);
        let b = t.close(1).unwrap();
        assert!(is_last(&b));
    }

    #[test]
    fn install_at_replaces_and_returns_the_old_fd() {
        let mut t = FdTable::new();
        t.alloc(file(), false).unwrap();
        let old = t.install_at(0, file(), true).unwrap();
        assert!(old.is_some());
        assert!(t.install_at(7, file(), false).unwrap().is_none());
        assert_eq!(t.fds().map(|(n, _)| n).collect::<Vec<_>>(), [0, 7]);
    }
}
