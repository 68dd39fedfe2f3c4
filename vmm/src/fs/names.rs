//! UNLINK, MKDIR, RENAME, SYMLINK and LINK: changes to directories, each
//! made by one name in the directory fd the walk opened, after the checks
//! of the view: EROFS in a read-only mount, EXDEV between two mounts (as
//! Linux across mounts; it also keeps a read-only file from being linked
//! into a writable view), EBUSY for a mount point or virtual directory.

use super::walk::{Frame, Target};
use super::{sys, Call, Escape, FsResult, HostFs};
use std::ffi::CString;
use std::os::fd::BorrowedFd;

/// `path` without its trailing slashes (but `/` stays `/`).
fn strip_slashes(mut p: Vec<u8>) -> Vec<u8> {
    while p.len() > 1 && p.ends_with(b"/") {
        p.pop();
    }
    p
}

/// An existing or missing name in a host directory.
struct Slot {
    dir: Frame,
    name: CString,
    exists: bool,
}

impl HostFs {
    /// Resolve a path whose last component is to be changed (not
    /// followed). Synthetic, missing-when-required and whole-directory
    /// results become errors.
    fn slot(&mut self, handle: u64, path: &[u8], follow: bool) -> FsResult<Result<Slot, Target>> {
        Ok(match self.resolve(handle, path, follow)? {
            Target::Entry { dir, name, .. } => Ok(Slot {
                dir,
                name,
                exists: true,
            }),
            Target::Missing { dir, name, .. } => Ok(Slot {
                dir,
                name,
                exists: false,
            }),
            other => Err(other),
        })
    }

    /// EXDEV (counted) when two slots lie in different mounts, EROFS when
    /// their mount is read-only.
    fn same_writable_mount(&mut self, a: &Slot, b: &Slot) -> FsResult<()> {
        if a.dir.mount != b.dir.mount {
            self.stats.escape(Escape::CrossMount);
            return Err(libc::EXDEV);
        }
        self.require_writable(a.dir.writable(&self.view))
    }

    pub(super) fn unlink_op(&mut self, call: &mut Call) -> FsResult<i64> {
        let flags = call.req.flags as i32 & libc::AT_REMOVEDIR;
        let mut path = call.path()?;
        if flags != 0 {
            path = strip_slashes(path);
        }
        let slot = match self.slot(call.req.handle, &path, false)? {
            Ok(slot) if slot.exists => slot,
            Ok(_) => return Err(libc::ENOENT),
            Err(Target::Synthetic(p)) => return Ok(call.synthetic(&p)),
            Err(Target::Dir(f)) if flags != 0 && f.is_fixed() => return Err(libc::EBUSY),
            Err(_) if flags != 0 => return Err(libc::EINVAL),
            Err(_) => return Err(libc::EISDIR),
        };
        self.require_writable(slot.dir.writable(&self.view))?;
        sys::unlinkat(self.dir_fd(&slot)?, &slot.name, flags)?;
        Ok(0)
    }

    fn dir_fd<'a>(&'a self, slot: &'a Slot) -> FsResult<BorrowedFd<'a>> {
        slot.dir.fd(&self.view).ok_or(libc::EROFS)
    }

    pub(super) fn mkdir_op(&mut self, call: &mut Call) -> FsResult<i64> {
        let path = strip_slashes(call.path()?);
        let slot = match self.slot(call.req.handle, &path, false)? {
            Ok(slot) if !slot.exists => slot,
            Err(Target::Synthetic(p)) => return Ok(call.synthetic(&p)),
            _ => return Err(libc::EEXIST),
        };
        self.require_writable(slot.dir.writable(&self.view))?;
        let mode = call.req.mode as u32 & 0o7777;
        let dir = self.dir_fd(&slot)?;
        sys::mkdirat(dir, &slot.name, mode)?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY;
        if let Ok(fd) = sys::open_beneath(dir, &slot.name, flags, 0) {
            self.undo_umask(&fd, mode);
        }
        Ok(0)
    }

    pub(super) fn rename_op(&mut self, call: &mut Call) -> FsResult<i64> {
        let from = strip_slashes(call.path()?);
        let to = strip_slashes(call.path2()?);
        let from = match self.slot(call.req.handle, &from, false)? {
            Ok(slot) if slot.exists => slot,
            Ok(_) => return Err(libc::ENOENT),
            Err(Target::Synthetic(_)) => return Err(libc::EXDEV),
            Err(_) => return Err(libc::EBUSY),
        };
        let to = match self.slot(call.req.handle2, &to, false)? {
            Ok(slot) => slot,
            Err(Target::Synthetic(_)) => return Err(libc::EXDEV),
            Err(_) => return Err(libc::EBUSY),
        };
        self.same_writable_mount(&from, &to)?;
        sys::renameat2(
            self.dir_fd(&from)?,
            &from.name,
            self.dir_fd(&to)?,
            &to.name,
            call.req.flags,
        )?;
        Ok(0)
    }

    pub(super) fn symlink_op(&mut self, call: &mut Call) -> FsResult<i64> {
        let target = call.path()?;
        if target.is_empty() {
            return Err(libc::ENOENT);
        }
        let target = CString::new(target).map_err(|_| libc::EINVAL)?;
        let path = call.path2()?;
        let slot = match self.slot(call.req.handle2, &path, false)? {
            Ok(slot) if !slot.exists => slot,
            Err(Target::Synthetic(p)) => return Ok(call.synthetic(&p)),
            _ => return Err(libc::EEXIST),
        };
        self.require_writable(slot.dir.writable(&self.view))?;
        sys::symlinkat(&target, self.dir_fd(&slot)?, &slot.name)?;
        Ok(0)
    }

    pub(super) fn link_op(&mut self, call: &mut Call) -> FsResult<i64> {
        let follow = call.req.flags as i32 & libc::AT_SYMLINK_FOLLOW != 0;
        let (from, to) = (call.path()?, call.path2()?);
        let from = match self.slot(call.req.handle, &from, follow)? {
            Ok(slot) if slot.exists => slot,
            Ok(_) => return Err(libc::ENOENT),
            Err(Target::Synthetic(_)) => return Err(libc::EXDEV),
            Err(_) => return Err(libc::EPERM),
        };
        let to = match self.slot(call.req.handle2, &to, false)? {
            Ok(slot) if !slot.exists => slot,
            Err(Target::Synthetic(_)) => return Err(libc::EXDEV),
            _ => return Err(libc::EEXIST),
        };
        self.same_writable_mount(&from, &to)?;
        sys::linkat(self.dir_fd(&from)?, &from.name, self.dir_fd(&to)?, &to.name)?;
        Ok(0)
    }
}
