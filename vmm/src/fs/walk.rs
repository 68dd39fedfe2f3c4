//! Path resolution inside a [`View`], one component at a time.
//!
//! The walker keeps a stack of directories from the guest's root to where
//! it is, each with its host O_PATH fd and its guest path. `.` is skipped;
//! `..` pops the stack (and at the root stays there: an escape attempt,
//! counted); a name is first checked against the guest kernel's own
//! directories and the mount points, then opened *alone* relative to the
//! directory on top of the stack, with openat2's RESOLVE_BENEATH,
//! RESOLVE_NO_MAGICLINKS and O_NOFOLLOW. A symlink to follow is read from
//! the fd just opened and its text spliced into the rest of the path: an
//! absolute target restarts from the *guest's* root, a relative one goes on
//! from the current directory, at most [`MAX_SYMLINKS`] times.
//!
//! So `..` past a granted root, absolute or relative symlinks pointing out
//! of the view, magic links and a symlink swapped in while a call runs all
//! stay inside the view: the host kernel never resolves more than one
//! component, and never a symlink. No string prefix check decides anything.

use super::stats::{Escape, FsStats};
use super::sys::{self, Errno};
use super::view::View;
use std::collections::VecDeque;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use vmrun_contract::fs::{synthetic, PATH_MAX};

/// Linux's limit on symlinks followed in one lookup.
pub const MAX_SYMLINKS: u32 = 40;
/// Linux's longest file name.
pub const NAME_MAX: usize = 255;
/// The guest's empty virtual `/sys`.
pub const SYS: &[u8] = b"/sys";

/// What a directory on the walk's stack is.
#[derive(Debug)]
pub enum Dir {
    /// A host directory, O_PATH.
    Host(OwnedFd),
    /// The root of mount `m` (its fd is the view's).
    Mount(usize),
    /// A virtual read-only directory (the isolated root, an ancestor of a
    /// mount point, `/sys`).
    Virtual,
    /// At or below `/proc` or `/dev`: the guest kernel's.
    Synthetic,
}

/// A directory on the walk's stack.
#[derive(Debug)]
pub struct Frame {
    /// What it is.
    pub dir: Dir,
    /// Its canonical guest path.
    pub guest: Vec<u8>,
    /// The mount it lies in (None: virtual or synthetic).
    pub mount: Option<usize>,
    /// Its host device number (to notice host mount points).
    pub dev: u64,
}

impl Frame {
    fn root(view: &View) -> Frame {
        match view.mount_at(b"/") {
            Some(m) => Frame::mount(view, m, b"/".to_vec()),
            None => Frame::other(Dir::Virtual, b"/".to_vec()),
        }
    }

    fn mount(view: &View, m: usize, guest: Vec<u8>) -> Frame {
        Frame {
            dir: Dir::Mount(m),
            guest,
            mount: Some(m),
            dev: view.mounts()[m].dev,
        }
    }

    fn other(dir: Dir, guest: Vec<u8>) -> Frame {
        Frame {
            dir,
            guest,
            mount: None,
            dev: 0,
        }
    }

    /// Its host fd (None for virtual and synthetic directories).
    pub fn fd<'a>(&'a self, view: &'a View) -> Option<BorrowedFd<'a>> {
        match &self.dir {
            Dir::Host(fd) => Some(fd.as_fd()),
            Dir::Mount(m) => Some(view.root_fd(*m)),
            Dir::Virtual | Dir::Synthetic => None,
        }
    }

    /// Whether changes may be made in it.
    pub fn writable(&self, view: &View) -> bool {
        self.mount.is_some_and(|m| view.writable(m))
    }

    /// Whether it is a mount root or virtual: it cannot be removed or
    /// renamed (EBUSY).
    pub fn is_fixed(&self) -> bool {
        matches!(self.dir, Dir::Mount(_) | Dir::Virtual) || self.guest == b"/"
    }
}

/// A host object a walk found, O_PATH|O_NOFOLLOW, with its fstat.
#[derive(Debug)]
pub struct Obj {
    /// The fd.
    pub fd: OwnedFd,
    /// Its fstat.
    pub st: libc::stat,
}

impl Obj {
    /// Its file type bits.
    pub fn kind(&self) -> u32 {
        self.st.st_mode & libc::S_IFMT
    }
}

/// Where a path led.
#[derive(Debug)]
pub enum Target {
    /// `name` exists in directory `dir`.
    Entry {
        /// The directory holding it.
        dir: Frame,
        /// Its name there (one component).
        name: CString,
        /// The object.
        obj: Obj,
        /// Its canonical guest path.
        guest: Vec<u8>,
    },
    /// `name` does not exist in directory `dir` (only the last component
    /// may be missing).
    Missing {
        /// The directory it would be made in.
        dir: Frame,
        /// The name.
        name: CString,
        /// Its would-be canonical guest path.
        guest: Vec<u8>,
    },
    /// A directory reached as a whole: the root, a mount root, a virtual
    /// directory, or a path ending in `.` or `..`.
    Dir(Frame),
    /// At or below `/proc` or `/dev`: the canonical guest path.
    Synthetic(Vec<u8>),
}

impl Target {
    /// Its canonical guest path.
    pub fn guest(&self) -> &[u8] {
        match self {
            Target::Entry { guest, .. } | Target::Missing { guest, .. } => guest,
            Target::Dir(f) => &f.guest,
            Target::Synthetic(p) => p,
        }
    }

    /// The mount it lies in.
    pub fn mount(&self) -> Option<usize> {
        match self {
            Target::Entry { dir, .. } | Target::Missing { dir, .. } => dir.mount,
            Target::Dir(f) => f.mount,
            Target::Synthetic(_) => None,
        }
    }

    /// Whether it may be changed.
    pub fn writable(&self, view: &View) -> bool {
        self.mount().is_some_and(|m| view.writable(m))
    }
}

/// What one step of the walk found.
enum Step {
    Push(Frame),
    Link(Vec<u8>),
    Entry(Obj),
    Missing,
}

/// Resolve `path` inside `view`, relative to the directory whose guest
/// path is `start` (ignored for an absolute path), following a symlink in
/// the last component only if `follow_last`.
pub fn resolve(
    view: &View,
    stats: &mut FsStats,
    start: &[u8],
    path: &[u8],
    follow_last: bool,
) -> Result<Target, Errno> {
    stats.lookups += 1;
    if path.is_empty() {
        return Err(libc::ENOENT);
    }
    let mut rest = VecDeque::new();
    if path[0] != b'/' {
        rest = components(start)?;
    }
    rest.extend(components(path)?);
    Walker {
        view,
        stats,
        stack: vec![Frame::root(view)],
        links: 0,
    }
    .run(rest, follow_last)
}

/// The components of `path`, with a final `.` if it ends in `/` (so the
/// last name must be a directory, as Linux wants).
fn components(path: &[u8]) -> Result<VecDeque<Vec<u8>>, Errno> {
    let mut out = VecDeque::new();
    for c in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        if c.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        out.push_back(c.to_vec());
    }
    if path.len() > 1 && path.ends_with(b"/") && !out.is_empty() {
        out.push_back(b".".to_vec());
    }
    Ok(out)
}

/// `dir` + `/` + `name` as a guest path.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if p != b"/" {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

struct Walker<'a> {
    view: &'a View,
    stats: &'a mut FsStats,
    stack: Vec<Frame>,
    links: u32,
}

impl Walker<'_> {
    fn run(mut self, mut rest: VecDeque<Vec<u8>>, follow_last: bool) -> Result<Target, Errno> {
        while let Some(name) = rest.pop_front() {
            match &name[..] {
                b"." => continue,
                b".." => {
                    self.up();
                    continue;
                }
                _ => {}
            }
            let last = rest.is_empty();
            let child = join(&self.top().guest, &name);
            match self.step(&name, &child, last, !last || follow_last)? {
                Step::Push(frame) => self.stack.push(frame),
                Step::Link(target) => self.splice(&mut rest, &target)?,
                Step::Entry(obj) => {
                    return Ok(Target::Entry {
                        dir: self.pop_top(),
                        name: cstring(name)?,
                        obj,
                        guest: child,
                    })
                }
                Step::Missing => {
                    return Ok(Target::Missing {
                        dir: self.pop_top(),
                        name: cstring(name)?,
                        guest: child,
                    })
                }
            }
        }
        let top = self.pop_top();
        Ok(match top.dir {
            Dir::Synthetic => Target::Synthetic(top.guest),
            _ => Target::Dir(top),
        })
    }

    fn top(&self) -> &Frame {
        &self.stack[self.stack.len() - 1]
    }

    fn pop_top(&mut self) -> Frame {
        match self.stack.pop() {
            Some(f) => f,
            None => Frame::root(self.view),
        }
    }

    /// `..`: one directory up, never above the guest's root.
    fn up(&mut self) {
        if self.stack.len() > 1 {
            self.stack.pop();
        } else {
            self.stats.escape(Escape::DotDotAtRoot);
        }
    }

    /// Put the symlink text `target` in front of the rest of the path.
    fn splice(&mut self, rest: &mut VecDeque<Vec<u8>>, target: &[u8]) -> Result<(), Errno> {
        self.links += 1;
        self.stats.symlinks += 1;
        if self.links > MAX_SYMLINKS {
            return Err(libc::ELOOP);
        }
        if target.is_empty() || target.len() >= PATH_MAX {
            return Err(if target.is_empty() {
                libc::ENOENT
            } else {
                libc::ENAMETOOLONG
            });
        }
        for c in components(target)?.into_iter().rev() {
            rest.push_front(c);
        }
        if target[0] == b'/' {
            self.stack.truncate(1);
        }
        Ok(())
    }

    /// Look up `name` (guest path `child`) in the directory on top.
    fn step(&mut self, name: &[u8], child: &[u8], last: bool, follow: bool) -> Result<Step, Errno> {
        let top = &self.stack[self.stack.len() - 1];
        // A mount first: `/dev/shm` is one, below the guest's own `/dev`.
        if let Some(m) = self.view.mount_at(child) {
            return Ok(Step::Push(Frame::mount(self.view, m, child.to_vec())));
        }
        if matches!(top.dir, Dir::Synthetic) || child == synthetic::PROC || child == synthetic::DEV
        {
            return Ok(Step::Push(Frame::other(Dir::Synthetic, child.to_vec())));
        }
        let virtual_here = child == SYS || self.view.has_mount_below(child);
        let virtual_dir = || Step::Push(Frame::other(Dir::Virtual, child.to_vec()));
        if child == SYS {
            return Ok(virtual_dir());
        }
        let Some(fd) = top.fd(self.view) else {
            return match (virtual_here, last) {
                (true, _) => Ok(virtual_dir()),
                (false, true) => Ok(Step::Missing),
                (false, false) => Err(libc::ENOENT),
            };
        };
        self.stats.components += 1;
        let obj = match open_obj(fd, name) {
            Ok(obj) => obj,
            Err(libc::ENOENT) if virtual_here => return Ok(virtual_dir()),
            Err(libc::ENOENT) if last => return Ok(Step::Missing),
            Err(e) => return Err(e),
        };
        if obj.st.st_dev != top.dev && on_pseudo_fs(&obj) {
            self.stats.escape(Escape::PseudoFs);
            return Err(libc::ENOENT);
        }
        let kind = obj.kind();
        if kind == libc::S_IFLNK && follow {
            return Ok(Step::Link(sys::readlink(obj.fd.as_fd())?));
        }
        if last {
            return Ok(Step::Entry(obj));
        }
        if kind != libc::S_IFDIR {
            return Err(libc::ENOTDIR);
        }
        Ok(Step::Push(Frame {
            dev: obj.st.st_dev,
            dir: Dir::Host(obj.fd),
            guest: child.to_vec(),
            mount: top.mount,
        }))
    }
}

/// Open the single component `name` in `dir`, O_PATH, without following.
fn open_obj(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Obj, Errno> {
    let c = CString::new(name).map_err(|_| libc::EINVAL)?;
    let fd = sys::open_beneath(dir, &c, libc::O_PATH, 0)?;
    let st = sys::fstat(fd.as_fd())?;
    Ok(Obj { fd, st })
}

/// Whether `obj` lies on one of the host kernel's pseudo file systems.
fn on_pseudo_fs(obj: &Obj) -> bool {
    sys::fs_type(obj.fd.as_fd()).is_ok_and(|t| sys::PSEUDO_FS_MAGICS.contains(&t))
}

fn cstring(name: Vec<u8>) -> Result<CString, Errno> {
    CString::new(name).map_err(|_| libc::EINVAL)
}
