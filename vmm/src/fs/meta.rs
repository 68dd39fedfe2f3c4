//! STAT, FSTAT, READLINK, CHMOD, UTIMENS and ACCESS: the metadata of the
//! object a path or a handle names.
//!
//! A found object is acted on by its one name in its directory's fd with
//! AT_SYMLINK_NOFOLLOW (a symlink raced in is changed itself, never
//! followed), or, for directories reached as a whole and for handles, on
//! the exact fd with AT_EMPTY_PATH.

use super::walk::{Frame, Obj, Target};
use super::{sys, virtual_dir, Call, FsResult, HostFs};
use crate::hypercall::transfer;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd};
use vmrun_contract::fs::{ROOT_HANDLE, STDIO_HANDLE};

/// What a metadata op acts on.
enum Subject {
    /// `name` in `dir`, found as `obj`.
    Entry { dir: Frame, name: CString, obj: Obj },
    /// A directory reached as a whole.
    Frame(Frame),
    /// An open handle.
    Handle(u64),
}

/// Where a host call on a [`Subject`] is aimed.
enum Place<'a> {
    /// One name in a directory (with AT_SYMLINK_NOFOLLOW).
    At(BorrowedFd<'a>, &'a CStr),
    /// An fd itself (with AT_EMPTY_PATH).
    Fd(BorrowedFd<'a>),
    /// A virtual directory at this guest path.
    Virtual(&'a [u8]),
}

impl Place<'_> {
    /// (dirfd, name, flags) for an `*at` call.
    fn at(&self) -> Option<(BorrowedFd<'_>, &CStr, i32)> {
        match self {
            Place::At(dir, name) => Some((*dir, name, libc::AT_SYMLINK_NOFOLLOW)),
            Place::Fd(fd) => Some((*fd, c"", libc::AT_EMPTY_PATH)),
            Place::Virtual(_) => None,
        }
    }
}

impl HostFs {
    /// What a path op (or, with AT_EMPTY_PATH and an empty path, a handle
    /// op) acts on and whether it may be changed; None when the path was
    /// the guest kernel's (the answer is already in `call`).
    fn subject(&mut self, call: &mut Call, follow: bool) -> FsResult<Option<(Subject, bool)>> {
        let path = call.path()?;
        let id = call.req.handle;
        if path.is_empty() && call.req.flags as i32 & libc::AT_EMPTY_PATH != 0 {
            if id == ROOT_HANDLE {
                return self.subject_of_path(call, b"/", follow);
            }
            let writable = self.handle(id)?.writable;
            return Ok(Some((Subject::Handle(id), writable)));
        }
        self.subject_of_path(call, &path, follow)
    }

    fn subject_of_path(
        &mut self,
        call: &mut Call,
        path: &[u8],
        follow: bool,
    ) -> FsResult<Option<(Subject, bool)>> {
        Ok(Some(match self.resolve(call.req.handle, path, follow)? {
            Target::Synthetic(p) => {
                call.synthetic(&p);
                return Ok(None);
            }
            Target::Missing { .. } => return Err(libc::ENOENT),
            Target::Entry { dir, name, obj, .. } => {
                let w = dir.writable(&self.view);
                (Subject::Entry { dir, name, obj }, w)
            }
            Target::Dir(frame) => {
                let w = frame.writable(&self.view);
                (Subject::Frame(frame), w)
            }
        }))
    }

    fn place<'a>(&'a self, s: &'a Subject) -> FsResult<Place<'a>> {
        Ok(match s {
            Subject::Entry { dir, name, .. } => {
                Place::At(dir.fd(&self.view).ok_or(libc::ENOENT)?, name)
            }
            Subject::Frame(f) => f.fd(&self.view).map_or(Place::Virtual(&f.guest), Place::Fd),
            Subject::Handle(id) => {
                let h = self.handle(*id)?;
                h.fd().map_or(Place::Virtual(&h.guest), Place::Fd)
            }
        })
    }

    /// statx of a subject (an entry by the exact fd the walk opened).
    fn statx_subject(&self, s: &Subject) -> FsResult<[u64; 32]> {
        if let Subject::Entry { obj, .. } = s {
            return self.statx_of(Some(obj.fd.as_fd()), b"");
        }
        match self.place(s)? {
            Place::Virtual(guest) => Ok(virtual_dir::statx(guest)),
            Place::Fd(fd) => self.statx_of(Some(fd), b""),
            Place::At(..) => Err(libc::EINVAL),
        }
    }

    pub(super) fn stat_op(&mut self, call: &mut Call) -> FsResult<i64> {
        let follow = call.req.flags as i32 & libc::AT_SYMLINK_NOFOLLOW == 0;
        let Some((s, _)) = self.subject(call, follow)? else {
            return Ok(0);
        };
        call.req.statx = self.statx_subject(&s)?;
        Ok(0)
    }

    pub(super) fn fstat_op(&mut self, call: &mut Call) -> FsResult<i64> {
        call.req.statx = if call.req.handle == ROOT_HANDLE {
            self.root_statx()?
        } else if let Some(k) = call.req.handle.checked_sub(STDIO_HANDLE) {
            // vmrun's own stdin, stdout or stderr.
            match k {
                0 => self.statx_of(Some(std::io::stdin().as_fd()), b"")?,
                1 => self.statx_of(Some(std::io::stdout().as_fd()), b"")?,
                _ => self.statx_of(Some(std::io::stderr().as_fd()), b"")?,
            }
        } else {
            self.statx_subject(&Subject::Handle(call.req.handle))?
        };
        Ok(0)
    }

    /// READLINK: the link's text into the pieces, as far as they hold it
    /// (all of them: a buffer across two pages gets the whole text).
    pub(super) fn readlink_op(&mut self, call: &mut Call) -> FsResult<i64> {
        let path = call.path()?;
        let text = match self.link_text(call.req.handle, &path)? {
            Ok(text) => text,
            Err(synthetic) => return Ok(call.synthetic(&synthetic)),
        };
        let mut rest = &text[..];
        let ret = transfer(call.ram, call.req.iov_phys, call.req.iov_count, |buf| {
            let n = buf.len().min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            Ok(n)
        });
        if ret < 0 {
            return Err(-ret as i32);
        }
        Ok(ret)
    }

    /// The text of the symlink at `path` (from directory handle `handle`),
    /// or Err of the canonical guest path where it lands in a tree the
    /// guest kernel serves.
    pub(super) fn link_text(
        &mut self,
        handle: u64,
        path: &[u8],
    ) -> FsResult<std::result::Result<Vec<u8>, Vec<u8>>> {
        let obj = match self.resolve(handle, path, false)? {
            Target::Synthetic(p) => return Ok(Err(p)),
            Target::Missing { .. } => return Err(libc::ENOENT),
            Target::Dir(_) => return Err(libc::EINVAL),
            Target::Entry { obj, .. } => obj,
        };
        if obj.kind() != libc::S_IFLNK {
            return Err(libc::EINVAL);
        }
        Ok(Ok(sys::readlink(obj.fd.as_fd())?))
    }

    pub(super) fn chmod_op(&mut self, call: &mut Call) -> FsResult<i64> {
        let follow = call.req.flags as i32 & libc::AT_SYMLINK_NOFOLLOW == 0;
        let Some((s, writable)) = self.subject(call, follow)? else {
            return Ok(0);
        };
        self.require_writable(writable)?;
        let place = self.place(&s)?;
        let (dir, name, flags) = place.at().ok_or(libc::EROFS)?;
        sys::fchmodat(dir, name, call.req.mode as u32 & 0o7777, flags)?;
        Ok(0)
    }

    pub(super) fn utimens_op(&mut self, call: &mut Call) -> FsResult<i64> {
        let follow = call.req.flags as i32 & libc::AT_SYMLINK_NOFOLLOW == 0;
        let Some((s, writable)) = self.subject(call, follow)? else {
            return Ok(0);
        };
        self.require_writable(writable)?;
        let t = call.req.times;
        let times = [
            libc::timespec {
                tv_sec: t[0],
                tv_nsec: t[1],
            },
            libc::timespec {
                tv_sec: t[2],
                tv_nsec: t[3],
            },
        ];
        let place = self.place(&s)?;
        let (dir, name, flags) = place.at().ok_or(libc::EROFS)?;
        sys::utimensat(dir, name, &times, flags)?;
        Ok(0)
    }

    pub(super) fn access_op(&mut self, call: &mut Call) -> FsResult<i64> {
        let flags = call.req.flags as i32;
        let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
        let Some((s, writable)) = self.subject(call, follow)? else {
            return Ok(0);
        };
        let mode = call.req.mode as i32 & (libc::R_OK | libc::W_OK | libc::X_OK);
        let place = self.place(&s)?;
        if let Some((dir, name, at)) = place.at() {
            sys::faccessat(dir, name, mode, at | (flags & libc::AT_EACCESS))?;
        }
        if mode & libc::W_OK != 0 && !writable {
            return Err(libc::EROFS);
        }
        Ok(0)
    }
}
