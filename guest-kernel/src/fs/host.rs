//! The host's file service as the kernel sees it: one request block
//! ([`FsRequest`]) filled in place and submitted with a hypercall.
//!
//! The block is large (two paths), so it is never built on the stack:
//! [`FsHost::req`] hands out the one block, the caller sets the fields its
//! operation uses, and [`FsHost::submit`] sends it with a scatter/gather
//! list (on the kernel stack) for the data, if any.

use vmrun_contract::fs::{op, FsRequest, PATH_MAX};
use vmrun_contract::IoVec;

use crate::errno::{Errno, KResult};

/// The host's file service.
pub trait FsHost {
    /// The request block (its outputs hold the last call's results).
    fn req(&mut self) -> &mut FsRequest;
    /// Send the request with `iov` as its data pieces; returns `ret`.
    fn submit(&mut self, iov: &[IoVec]) -> i64;
}

/// A host that has no files (for unit tests).
pub struct NoHost {
    req: FsRequest,
}

impl NoHost {
    /// A host whose every path is missing (ENOENT).
    pub fn new() -> NoHost {
        NoHost {
            req: FsRequest::zeroed(),
        }
    }
}

impl Default for NoHost {
    fn default() -> Self {
        Self::new()
    }
}

impl FsHost for NoHost {
    fn req(&mut self) -> &mut FsRequest {
        &mut self.req
    }
    fn submit(&mut self, _iov: &[IoVec]) -> i64 {
        Errno::ENOENT.to_ret()
    }
}

/// Start a request: clear the inputs every op reads.
pub fn begin(host: &mut dyn FsHost, operation: u32, handle: u64) -> &mut FsRequest {
    let r = host.req();
    r.op = operation;
    r.flags = 0;
    r.handle = handle;
    r.handle2 = 0;
    r.mode = 0;
    r.offset = 0;
    r.path_len = 0;
    r.path2_len = 0;
    r.ret = 0;
    r
}

/// Put `path` (no NUL) into the request's first or second path slot.
pub fn set_path(r: &mut FsRequest, second: bool, path: &[u8]) -> KResult<()> {
    if path.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if second {
        r.path2[..path.len()].copy_from_slice(path);
        r.path2_len = path.len() as u32;
    } else {
        r.path[..path.len()].copy_from_slice(path);
        r.path_len = path.len() as u32;
    }
    Ok(())
}

/// Submit and turn `ret` into a result (in line: a call of its own costs
/// more than its test).
#[inline(always)]
pub fn call(host: &mut dyn FsHost, iov: &[IoVec]) -> KResult<u64> {
    let r = host.submit(iov);
    if r < 0 {
        Err(Errno::from_ret(r))
    } else {
        Ok(r as u64)
    }
}

/// Close host handle `h` (errors are of no use to anyone here).
pub fn close(host: &mut dyn FsHost, h: u64) {
    begin(host, op::CLOSE, h);
    let _ = host.submit(&[]);
}

/// Read from handle `h` at `offset` into the physical pieces.
pub fn pread(host: &mut dyn FsHost, h: u64, offset: u64, iov: &[IoVec]) -> KResult<u64> {
    begin(host, op::PREAD, h).offset = offset;
    call(host, iov)
}
