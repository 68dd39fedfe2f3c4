//! PREAD, PWRITE, GETDENTS, SEEK, FSYNC and TRUNCATE: data moved directly
//! between a handle's host fd and the guest's memory pieces.

use super::handles::Kind;
use super::walk::Target;
use super::{sys, virtual_dir, Call, FsResult, HostFs};
use crate::hypercall::transfer;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

/// Largest directory piece filled in one GETDENTS.
const MAX_DENTS: u64 = 1 << 20;

fn io_err(e: sys::Errno) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// A guest offset as a host one.
fn offset(off: u64) -> FsResult<i64> {
    i64::try_from(off).map_err(|_| libc::EINVAL)
}

impl HostFs {
    /// The host fd of handle `id`; a virtual directory is EISDIR.
    fn data_fd(&self, id: u64) -> FsResult<BorrowedFd<'_>> {
        self.handle(id)?.fd().ok_or(libc::EISDIR)
    }

    pub(super) fn pread_op(&mut self, call: &mut Call) -> FsResult<i64> {
        let mut pos = offset(call.req.offset)?;
        let fd = self.data_fd(call.req.handle)?;
        let ret = transfer(call.ram, call.req.iov_phys, call.req.iov_count, |buf| {
            let n = sys::pread(fd, buf, pos).map_err(io_err)?;
            pos += n as i64;
            Ok(n)
        });
        if ret < 0 {
            return Err(-ret as i32);
        }
        self.stats.bytes_read += ret as u64;
        Ok(ret)
    }

    pub(super) fn pwrite_op(&mut self, call: &mut Call) -> FsResult<i64> {
        let append = call.req.offset == u64::MAX;
        let mut pos = if append { 0 } else { offset(call.req.offset)? };
        let fd = self.data_fd(call.req.handle)?;
        let ret = transfer(call.ram, call.req.iov_phys, call.req.iov_count, |buf| {
            let n = sys::pwrite(fd, buf, pos, append).map_err(io_err)?;
            pos += n as i64;
            Ok(n)
        });
        if ret < 0 {
            return Err(-ret as i32);
        }
        call.req.out_offset = sys::fstat(fd)?.st_size as u64;
        self.stats.bytes_written += ret as u64;
        Ok(ret)
    }

    pub(super) fn getdents_op(&mut self, call: &mut Call) -> FsResult<i64> {
        let piece = call.first_piece()?;
        let buf = call
            .ram
            .slice_mut(piece.phys, piece.len.min(MAX_DENTS))
            .map_err(|_| libc::EFAULT)?;
        let h = self.handle(call.req.handle)?;
        let (n, next, end) = match &h.kind {
            Kind::Dir(fd) => {
                let fd = fd.as_fd();
                sys::lseek(fd, offset(call.req.offset)?, libc::SEEK_SET)?;
                let n = sys::getdents(fd, buf)?;
                let next = sys::lseek(fd, 0, libc::SEEK_CUR)?;
                (n, next as u64, n == 0 || at_end(fd, next)?)
            }
            Kind::Virtual => {
                let (n, next) = virtual_dir::getdents(&self.view, &h.guest, call.req.offset, buf)?;
                (n, next, n == 0)
            }
            Kind::File(_) => return Err(libc::ENOTDIR),
            Kind::Path(_) => return Err(libc::EBADF),
        };
        call.req.out_offset = next;
        call.req.out_handle = u64::from(end);
        Ok(n as i64)
    }

    pub(super) fn seek_op(&mut self, call: &mut Call) -> FsResult<i64> {
        let whence = call.req.mode as i32;
        if whence != libc::SEEK_DATA && whence != libc::SEEK_HOLE {
            return Err(libc::EINVAL);
        }
        let fd = self.data_fd(call.req.handle)?;
        sys::lseek(fd, offset(call.req.offset)?, whence)
    }

    pub(super) fn fsync_op(&mut self, call: &mut Call) -> FsResult<i64> {
        let fd = self.data_fd(call.req.handle)?;
        sys::fsync(fd, call.req.flags & 1 != 0)?;
        Ok(0)
    }

    /// TRUNCATE of a handle, or of `path` when `path_len` > 0 (opened for
    /// writing by its one name in its directory, O_NOFOLLOW|O_NONBLOCK,
    /// after the walk found a regular file there).
    pub(super) fn truncate_op(&mut self, call: &mut Call) -> FsResult<i64> {
        let len = offset(call.req.offset)?;
        if call.req.path_len == 0 {
            let h = self.handle(call.req.handle)?;
            let writable = h.writable;
            self.require_writable(writable)?;
            sys::ftruncate(self.data_fd(call.req.handle)?, len)?;
            return Ok(0);
        }
        let path = call.path()?;
        let (dir, name, obj) = match self.resolve(call.req.handle, &path, true)? {
            Target::Synthetic(p) => return Ok(call.synthetic(&p)),
            Target::Missing { .. } => return Err(libc::ENOENT),
            Target::Dir(_) => return Err(libc::EISDIR),
            Target::Entry { dir, name, obj, .. } => (dir, name, obj),
        };
        match obj.kind() {
            libc::S_IFREG => {}
            libc::S_IFDIR => return Err(libc::EISDIR),
            _ => return Err(libc::EINVAL),
        }
        self.require_writable(dir.writable(&self.view))?;
        let dir_fd = dir.fd(&self.view).ok_or(libc::EROFS)?;
        let flags = libc::O_WRONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
        let fd = sys::open_beneath(dir_fd, &name, flags, 0)?;
        if sys::fstat(fd.as_fd())?.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(libc::EINVAL);
        }
        sys::ftruncate(fd.as_fd(), len)?;
        Ok(0)
    }
}

/// Whether directory `fd` has no entry from cookie `at` on: one more read
/// there (into a buffer that holds any one record) gives nothing. The
/// offset is put back at `at`. So that the guest answers the read that
/// ends a listing (`du`, `ls` and `find` make one per directory) without
/// asking the host again.
fn at_end(fd: std::os::fd::BorrowedFd<'_>, at: i64) -> FsResult<bool> {
    let mut probe = [0u8; 512];
    let n = sys::getdents(fd, &mut probe)?;
    if n > 0 {
        sys::lseek(fd, at, libc::SEEK_SET)?;
    }
    Ok(n == 0)
}
