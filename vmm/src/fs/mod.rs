//! The host's sandboxed file service: the [`hc::FS`] hypercall.
//!
//! The guest kernel names host files only through *handles* this service
//! hands out, and through guest paths it resolves inside the guest's
//! [`View`] (the mounts the user granted). How the parts fit:
//!
//! 1. [`view`]: the mounts, their host directories opened once at start.
//! 2. [`walk`]: one guest path to a [`walk::Target`], one component at a
//!    time on host O_PATH fds (`..`, symlinks and mount points interpreted
//!    in the guest's namespace), so nothing outside the view can be named.
//! 3. [`handles`]: the open handles and their canonical guest paths.
//! 4. The operations, one file per concern: `open` (OPEN, CLOSE), `data`
//!    (PREAD, PWRITE, GETDENTS, SEEK, FSYNC, TRUNCATE), `meta` (STAT,
//!    FSTAT, READLINK, CHMOD, UTIMENS, ACCESS), `names` (UNLINK, MKDIR,
//!    RENAME, SYMLINK, LINK). Each final host call is made relative to the
//!    parent directory's fd with a single-component name and
//!    AT_SYMLINK_NOFOLLOW/O_NOFOLLOW, or on the exact fd the walk opened.
//! 5. [`sys`]: the host calls, the only `unsafe` code here.
//!
//! Rules the guest can rely on:
//! - A path op whose path lands at or below `/proc` or `/dev` does nothing
//!   and answers ret 0, `out_handle` [`SYNTHETIC`], `path` the canonical
//!   guest path (`..` and `.` applied lexically; `self` not interpreted).
//!   For OPEN and every other one-path op (and SYMLINK's `path2`) the guest
//!   must check `out_handle`; LINK and RENAME answer EXDEV instead.
//! - `/sys` is an empty read-only virtual directory.
//! - Modes are used as given: the guest applies its umask, the host's is
//!   undone.
//! - Host errnos pass through unchanged; EROFS for a change in a read-only
//!   mount, EXDEV for LINK and RENAME across mounts, EACCES for opening a
//!   device node, FIFO or socket.
//!
//! [`hc::FS`]: vmrun_contract::hc::FS

mod data;
pub mod handles;
mod meta;
mod names;
mod open;
pub mod stats;
pub mod sys;
pub mod view;
mod virtual_dir;
pub mod walk;

#[cfg(test)]
mod tests;

use crate::error::Result;
use crate::memory::{pod_bytes_mut, GuestRam};
use handles::{Handle, Handles};
pub use stats::{Escape, FsStats};
use std::os::unix::ffi::OsStrExt;
use sys::Errno;
pub use view::{Access, Mount, View};
use vmrun_contract::fs::{op, FsRequest, PATH_MAX, ROOT_HANDLE, SYNTHETIC};
use vmrun_contract::IoVec;
use walk::Target;

/// An operation's result: its `ret`, or a host errno.
pub type FsResult<T> = std::result::Result<T, Errno>;

/// Why a path op of the fast call of a path ([`HostFs::stat_path`],
/// [`HostFs::access_path`], [`HostFs::readlink_path`]) has no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// The op failed with this host errno.
    Failed(Errno),
    /// The path leads into a tree the guest kernel serves itself.
    Guest,
}

/// The file service of one VM.
#[derive(Debug)]
pub struct HostFs {
    view: View,
    handles: Handles,
    stats: FsStats,
    /// The VMM's umask, undone on the modes of new files.
    umask: u32,
}

/// One request being served.
pub(crate) struct Call<'a> {
    ram: &'a GuestRam,
    req: &'a mut FsRequest,
    /// `path`/`path_len` were set and must be written back.
    path_out: bool,
}

impl Call<'_> {
    /// The request's `path` (stopping at a NUL).
    fn path(&self) -> FsResult<Vec<u8>> {
        path_of(&self.req.path, self.req.path_len)
    }

    /// The request's `path2`.
    fn path2(&self) -> FsResult<Vec<u8>> {
        path_of(&self.req.path2, self.req.path2_len)
    }

    /// Return `p` in `path`.
    fn set_path(&mut self, p: &[u8]) {
        let n = p.len().min(PATH_MAX - 1);
        self.req.path[..n].copy_from_slice(&p[..n]);
        self.req.path[n] = 0;
        self.req.path_len = n as u32;
        self.path_out = true;
    }

    /// The answer to a path that is the guest kernel's own.
    fn synthetic(&mut self, p: &[u8]) -> i64 {
        self.req.out_handle = SYNTHETIC;
        self.set_path(p);
        0
    }

    /// The first IoVec of the request's array.
    fn first_piece(&self) -> FsResult<IoVec> {
        if self.req.iov_count == 0 {
            return Err(libc::EINVAL);
        }
        self.ram
            .read_pod::<IoVec>(self.req.iov_phys)
            .map_err(|_| libc::EFAULT)
    }
}

fn path_of(buf: &[u8; PATH_MAX], len: u32) -> FsResult<Vec<u8>> {
    let len = len as usize;
    if len >= PATH_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    let p = &buf[..len];
    Ok(p[..p.iter().position(|&c| c == 0).unwrap_or(len)].to_vec())
}

impl HostFs {
    /// Serve the files of `view`.
    pub fn new(view: View) -> HostFs {
        sys::raise_fd_limit();
        HostFs {
            view,
            handles: Handles::default(),
            stats: FsStats::default(),
            umask: sys::umask(),
        }
    }

    /// Open the view of `mounts` (after the default view if
    /// `default_view`) and serve it.
    pub fn open(mounts: &[Mount], default_view: bool) -> Result<HostFs> {
        Ok(HostFs::new(View::open(mounts, default_view)?))
    }

    /// The view served.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// The counters so far.
    pub fn stats(&self) -> &FsStats {
        &self.stats
    }

    /// Handles open now.
    pub fn open_handles(&self) -> usize {
        self.handles.len()
    }

    /// Serve the [`FsRequest`] at guest-physical `gpa`: its `ret` (also
    /// written into it with the other outputs), -EFAULT if the request
    /// does not lie in guest RAM.
    pub fn serve(&mut self, ram: &GuestRam, gpa: u64) -> i64 {
        let mut req = FsRequest::zeroed();
        if ram.read_bytes(gpa, pod_bytes_mut(&mut req)).is_err() {
            return -i64::from(libc::EFAULT);
        }
        self.close_deferred(&mut req);
        let (ret, path_out) = self.serve_request(ram, &mut req);
        let end = if path_out {
            std::mem::offset_of!(FsRequest, path2)
        } else {
            std::mem::offset_of!(FsRequest, path)
        };
        match ram.write_bytes(gpa, &pod_bytes_mut(&mut req)[..end]) {
            Ok(()) => ret,
            Err(_) => -i64::from(libc::EFAULT),
        }
    }

    /// Close the handles `req` carries (`FsRequest::close_count`), each
    /// counted as a CLOSE request, and clear its list.
    fn close_deferred(&mut self, req: &mut FsRequest) {
        let n = (req.close_count as usize).min(req.closes.len());
        for &h in &req.closes[..n] {
            let done = self.handles.remove(h).map(|_| ());
            let _ = self.counted(op::CLOSE, done);
        }
        req.close_count = 0;
    }

    /// Serve `req` (its outputs cleared first), counted: its `ret` (also
    /// set in it), and whether its `path` was set as an output.
    fn serve_request(&mut self, ram: &GuestRam, req: &mut FsRequest) -> (i64, bool) {
        req.out_handle = 0;
        req.out_offset = 0;
        req.statx = [0; 32];
        let mut call = Call {
            ram,
            req,
            path_out: false,
        };
        let done = self.dispatch(&mut call);
        let ret = match self.counted(call.req.op, done) {
            Ok(v) => v,
            Err(e) => -i64::from(e),
        };
        call.req.ret = ret;
        (ret, call.path_out)
    }

    /// `done`, the result of an `op`, counted: a call of the op, and an
    /// error if it failed.
    fn counted<T>(&mut self, op: u32, done: FsResult<T>) -> FsResult<T> {
        *self.stats.calls.entry(op_name(op)).or_default() += 1;
        if done.is_err() {
            self.stats.errors += 1;
        }
        done
    }

    /// The stat of the absolute guest path `path` (following a last
    /// symlink if `follow`), served and counted as the guest kernel's STAT
    /// request of it is: for the fast call of a path's stat
    /// (`crate::fastcall`), which the VMM serves from the program's
    /// registers.
    pub fn stat_path(
        &mut self,
        ram: &GuestRam,
        path: &[u8],
        follow: bool,
    ) -> std::result::Result<[u64; 32], PathError> {
        let flags = if follow {
            0
        } else {
            libc::AT_SYMLINK_NOFOLLOW as u32
        };
        let mut req = FsRequest::zeroed();
        self.path_request(ram, &mut req, op::STAT, path, flags, 0)?;
        Ok(req.statx)
    }

    /// Whether the absolute guest path `path` allows access `mode` (with
    /// faccessat2's `flags`), asked and counted as the guest kernel's
    /// ACCESS request of it is: for the fast call of a path.
    pub fn access_path(
        &mut self,
        ram: &GuestRam,
        path: &[u8],
        mode: u64,
        flags: u32,
    ) -> std::result::Result<(), PathError> {
        let mut req = FsRequest::zeroed();
        self.path_request(ram, &mut req, op::ACCESS, path, flags, mode)
    }

    /// Serve `op` of the absolute guest path `path` from the root, in
    /// `req`: Err of how it failed or landed in the guest's own trees.
    fn path_request(
        &mut self,
        ram: &GuestRam,
        req: &mut FsRequest,
        op: u32,
        path: &[u8],
        flags: u32,
        mode: u64,
    ) -> std::result::Result<(), PathError> {
        if path.len() >= PATH_MAX {
            return Err(PathError::Failed(libc::ENAMETOOLONG));
        }
        req.op = op;
        req.handle = ROOT_HANDLE;
        req.flags = flags;
        req.mode = mode;
        req.path[..path.len()].copy_from_slice(path);
        req.path_len = path.len() as u32;
        match self.serve_request(ram, req).0 {
            r if r < 0 => Err(PathError::Failed((-r) as Errno)),
            _ if req.out_handle == SYNTHETIC => Err(PathError::Guest),
            _ => Ok(()),
        }
    }

    /// The text of the symlink at the absolute guest path `path`, counted
    /// as the guest kernel's READLINK request of it is: for the fast call
    /// of a path.
    pub fn readlink_path(&mut self, path: &[u8]) -> std::result::Result<Vec<u8>, PathError> {
        let text = self.link_text(ROOT_HANDLE, path);
        match self.counted(op::READLINK, text) {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(_)) => Err(PathError::Guest),
            Err(e) => Err(PathError::Failed(e)),
        }
    }

    fn dispatch(&mut self, call: &mut Call) -> FsResult<i64> {
        match call.req.op {
            op::OPEN => self.open_op(call),
            op::CLOSE => self.close_op(call),
            op::PREAD => self.pread_op(call),
            op::PWRITE => self.pwrite_op(call),
            op::FSTAT => self.fstat_op(call),
            op::STAT => self.stat_op(call),
            op::GETDENTS => self.getdents_op(call),
            op::READLINK => self.readlink_op(call),
            op::UNLINK => self.unlink_op(call),
            op::MKDIR => self.mkdir_op(call),
            op::RENAME => self.rename_op(call),
            op::SYMLINK => self.symlink_op(call),
            op::LINK => self.link_op(call),
            op::CHMOD => self.chmod_op(call),
            op::UTIMENS => self.utimens_op(call),
            op::TRUNCATE => self.truncate_op(call),
            op::FSYNC => self.fsync_op(call),
            op::ACCESS => self.access_op(call),
            op::SEEK => self.seek_op(call),
            _ => Err(libc::ENOSYS),
        }
    }

    /// Resolve `path` from directory handle `handle` (ignored for an
    /// absolute path).
    fn resolve(&mut self, handle: u64, path: &[u8], follow_last: bool) -> FsResult<Target> {
        let start = if path.first() == Some(&b'/') || handle == ROOT_HANDLE {
            b"/".to_vec()
        } else {
            let h = self.handles.get(handle)?;
            if !h.is_dir {
                return Err(libc::ENOTDIR);
            }
            h.guest.clone()
        };
        let target = walk::resolve(&self.view, &mut self.stats, &start, path, follow_last)?;
        if matches!(target, Target::Synthetic(_)) {
            self.stats.synthetic += 1;
        }
        Ok(target)
    }

    /// EROFS (counted) unless `writable`.
    fn require_writable(&mut self, writable: bool) -> FsResult<()> {
        if writable {
            Ok(())
        } else {
            self.stats.escape(Escape::ReadOnly);
            Err(libc::EROFS)
        }
    }

    /// Handle `id`.
    fn handle(&self, id: u64) -> FsResult<&Handle> {
        self.handles.get(id)
    }

    /// The guest path of the initial working directory: the host's current
    /// directory at its own path if the view shows it there, else at the
    /// guest path of a mount that holds it, else `/`.
    pub fn initial_cwd(&mut self) -> Vec<u8> {
        let Ok(cwd) = std::env::current_dir() else {
            return b"/".to_vec();
        };
        let Ok(st) = std::fs::metadata(&cwd) else {
            return b"/".to_vec();
        };
        let id = {
            use std::os::unix::fs::MetadataExt;
            (st.dev(), st.ino())
        };
        let mut candidates = vec![cwd.as_os_str().as_bytes().to_vec()];
        for m in self.view.mounts().iter().rev() {
            if let Ok(rest) = cwd.strip_prefix(&m.mount.host) {
                let mut p = m.mount.guest.clone();
                for c in rest.components() {
                    p = walk::join(&p, c.as_os_str().as_bytes());
                }
                candidates.push(p);
            }
        }
        let before = self.stats.clone();
        let found = candidates
            .into_iter()
            .find(|p| self.dir_identity(p) == Some(id));
        self.stats = before;
        found.unwrap_or_else(|| b"/".to_vec())
    }

    /// (device, inode) of the directory at guest path `p`.
    fn dir_identity(&mut self, p: &[u8]) -> Option<(u64, u64)> {
        let st = match self.resolve(ROOT_HANDLE, p, true).ok()? {
            Target::Entry { obj, .. } => obj.st,
            Target::Dir(frame) => sys::fstat(frame.fd(&self.view)?).ok()?,
            _ => return None,
        };
        (st.st_mode & libc::S_IFMT == libc::S_IFDIR).then_some((st.st_dev, st.st_ino))
    }

    /// statx of the object behind `fd` (None: a virtual directory at
    /// `guest`).
    fn statx_of(
        &self,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
        guest: &[u8],
    ) -> FsResult<[u64; 32]> {
        match fd {
            Some(fd) => sys::statx(fd, c"", libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW),
            None => Ok(virtual_dir::statx(guest)),
        }
    }

    fn count_open(&mut self) {
        self.stats.opens += 1;
        self.stats.handles_peak = self.stats.handles_peak.max(self.handles.len() as u64);
    }

    /// The root directory's statx (FSTAT of [`ROOT_HANDLE`]).
    fn root_statx(&mut self) -> FsResult<[u64; 32]> {
        match self.resolve(ROOT_HANDLE, b"/", true)? {
            Target::Dir(frame) => self.statx_of(frame.fd(&self.view), &frame.guest),
            _ => Err(libc::ENOENT),
        }
    }
}

/// The name of operation `op` in the statistics.
pub fn op_name(op: u32) -> &'static str {
    match op {
        op::OPEN => "open",
        op::CLOSE => "close",
        op::PREAD => "pread",
        op::PWRITE => "pwrite",
        op::FSTAT => "fstat",
        op::STAT => "stat",
        op::GETDENTS => "getdents",
        op::READLINK => "readlink",
        op::UNLINK => "unlink",
        op::MKDIR => "mkdir",
        op::RENAME => "rename",
        op::SYMLINK => "symlink",
        op::LINK => "link",
        op::CHMOD => "chmod",
        op::UTIMENS => "utimens",
        op::TRUNCATE => "truncate",
        op::FSYNC => "fsync",
        op::ACCESS => "access",
        op::SEEK => "seek",
        _ => "unknown",
    }
}
